//! The catalog views backup products read around a backup, answered from
//! the serve process's real databases and msdb history:
//!
//! - `sys.databases` (also `master.sys.databases`): `name`,
//!   `database_id`, `state_desc`, `recovery_model_desc`;
//! - `msdb.dbo.backupset` (also `msdb..backupset`): `backup_set_id`,
//!   `media_set_id`, `database_name`, `type` (`D`, `I`, `L`),
//!   `backup_start_date`, `backup_finish_date`, `first_lsn`, `last_lsn`,
//!   `checkpoint_lsn`, `database_backup_lsn`, `is_copy_only`,
//!   `has_backup_checksums`, `backup_size`, `server_name`;
//! - `msdb.dbo.backupmediafamily`: `media_set_id`,
//!   `family_sequence_number`, `physical_device_name`, `device_type` (7,
//!   a virtual device).
//!
//! One shape is served, the one products send:
//!
//! ```text
//! SELECT [TOP n | TOP (n)] column [, column]… | *
//!   FROM view [alias]
//!   [WHERE column = literal [AND column = literal]…]
//!   [ORDER BY column [ASC | DESC]]
//! ```
//!
//! Columns may carry the alias or the view's name as a prefix; literals
//! are `'text'`, `N'text'` or integers; text compares without regard to
//! ASCII case (the server collation is case-insensitive). A column the
//! view does not have is Msg 207 "Invalid column name 'x'."; anything
//! else on these views (a join, another operator, an expression) is the
//! not-served error (Msg 50002) naming the shape above. This is not a
//! query engine: a statement is one of these shapes or an error.
//!
//! Model choices (SQL Server's values are not known to the simulator):
//! `database_id` is 5 for the first database by name, 6 for the next, …
//! (SQL Server numbers its four system databases 1..=4 and user databases
//! from 5 in creation order); `backup_set_id` and `media_set_id` are the
//! backup's number on this server (one media set per backup); a backup
//! kept from before its end was recorded has its start as its finish date
//! and NULL device names.

use super::resultset::{Cell, ResultSet, Type};

/// A database as `sys.databases` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbRow {
    pub name: String,
    pub id: i32,
    /// `ONLINE`, `RESTORING`, …
    pub state_desc: String,
    /// `FULL`, `SIMPLE`, `BULK_LOGGED`.
    pub recovery_model_desc: String,
}

/// A backup as msdb's `backupset` and `backupmediafamily` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupRow {
    /// The backup's number on this server (backup_set_id, media_set_id).
    pub number: u32,
    pub database_name: String,
    /// `D`, `I` or `L`.
    pub kind: char,
    pub start_unix_ms: u64,
    pub finish_unix_ms: u64,
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub checkpoint_lsn: u64,
    pub database_backup_lsn: u64,
    pub copy_only: bool,
    pub checksums: bool,
    pub size: u64,
    pub server_name: String,
    /// Each family's device (`None`: not known).
    pub devices: Vec<Option<String>>,
}

/// Where the views' rows come from.
pub trait Tables {
    /// The databases, by name.
    fn databases(&self) -> Vec<DbRow>;
    /// msdb's backups, oldest first.
    fn backups(&self) -> Vec<BackupRow>;
}

/// An error SQL Server would send instead of a result set: number, text.
pub type Refusal = (u32, String);

/// The most rows `TOP n` may ask for (a larger n is the same as none:
/// the history holds at most `vdi_spec::bounds::HISTORY_MAX` backups).
const TOP_MAX: u64 = u32::MAX as u64;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Int(i64),
    Punct(char),
}

/// Splits a statement into words (identifiers, brackets removed, dotted
/// names kept whole), literals and punctuation; `None` for anything else.
fn lex(text: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let c: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() || ch == ';' {
            i += 1;
        } else if ch == '\'' || ((ch == 'N' || ch == 'n') && c.get(i + 1) == Some(&'\'')) {
            i += if ch == '\'' { 1 } else { 2 };
            let mut s = String::new();
            loop {
                match (c.get(i), c.get(i + 1)) {
                    (Some('\''), Some('\'')) => {
                        s.push('\'');
                        i += 2;
                    }
                    (Some('\''), _) => break,
                    (Some(x), _) => {
                        s.push(*x);
                        i += 1;
                    }
                    (None, _) => return None,
                }
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if ch.is_ascii_digit() {
            let start = i;
            while c.get(i).is_some_and(char::is_ascii_digit) {
                i += 1;
            }
            let s: String = c[start..i].iter().collect();
            out.push(Tok::Int(s.parse().ok()?));
        } else if ch.is_alphanumeric() || matches!(ch, '_' | '[' | '@' | '#') {
            let mut s = String::new();
            while let Some(&x) = c.get(i) {
                if x == '[' {
                    let end = c[i..].iter().position(|&y| y == ']')? + i;
                    s.extend(&c[i + 1..end]);
                    i = end + 1;
                } else if x.is_alphanumeric() || matches!(x, '_' | '.' | '@' | '#' | '$') {
                    s.push(x);
                    i += 1;
                } else {
                    break;
                }
            }
            out.push(Tok::Word(s));
        } else {
            // `,` `=` `*` `(` `)` and any other sign: the shape decides.
            out.push(Tok::Punct(ch));
            i += 1;
        }
    }
    Some(out)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    Databases,
    BackupSet,
    MediaFamily,
}

fn view(name: &str) -> Option<View> {
    match name.to_ascii_lowercase().as_str() {
        "sys.databases" | "master.sys.databases" => Some(View::Databases),
        "msdb.dbo.backupset" | "msdb..backupset" => Some(View::BackupSet),
        "msdb.dbo.backupmediafamily" | "msdb..backupmediafamily" => Some(View::MediaFamily),
        _ => None,
    }
}

fn columns(v: View) -> &'static [(&'static str, Type)] {
    match v {
        View::Databases => &[
            ("name", Type::NVarChar(128)),
            ("database_id", Type::Int),
            ("state_desc", Type::NVarChar(60)),
            ("recovery_model_desc", Type::NVarChar(60)),
        ],
        View::BackupSet => &[
            ("backup_set_id", Type::Int),
            ("media_set_id", Type::Int),
            ("database_name", Type::NVarChar(128)),
            ("type", Type::Char(1)),
            ("backup_start_date", Type::DateTime),
            ("backup_finish_date", Type::DateTime),
            ("first_lsn", Type::Numeric(25)),
            ("last_lsn", Type::Numeric(25)),
            ("checkpoint_lsn", Type::Numeric(25)),
            ("database_backup_lsn", Type::Numeric(25)),
            ("is_copy_only", Type::Bit),
            ("has_backup_checksums", Type::Bit),
            ("backup_size", Type::Numeric(20)),
            ("server_name", Type::NVarChar(128)),
        ],
        View::MediaFamily => &[
            ("media_set_id", Type::Int),
            ("family_sequence_number", Type::TinyInt),
            ("physical_device_name", Type::NVarChar(260)),
            ("device_type", Type::TinyInt),
        ],
    }
}

/// Every row of `v`, its cells in [`columns`]' order.
fn rows(v: View, t: &dyn Tables) -> Vec<Vec<Cell>> {
    let s = |x: &str| Cell::Str(x.to_string());
    let n = |x: u64| Cell::Numeric(x);
    match v {
        View::Databases => t
            .databases()
            .into_iter()
            .map(|d| {
                vec![
                    s(&d.name),
                    Cell::Int(d.id.into()),
                    s(&d.state_desc),
                    s(&d.recovery_model_desc),
                ]
            })
            .collect(),
        View::BackupSet => t
            .backups()
            .into_iter()
            .map(|b| {
                vec![
                    Cell::Int(b.number.into()),
                    Cell::Int(b.number.into()),
                    s(&b.database_name),
                    s(&b.kind.to_string()),
                    Cell::DateTime(b.start_unix_ms),
                    Cell::DateTime(b.finish_unix_ms),
                    n(b.first_lsn),
                    n(b.last_lsn),
                    n(b.checkpoint_lsn),
                    n(b.database_backup_lsn),
                    Cell::Bit(b.copy_only),
                    Cell::Bit(b.checksums),
                    n(b.size),
                    s(&b.server_name),
                ]
            })
            .collect(),
        View::MediaFamily => t
            .backups()
            .into_iter()
            .flat_map(|b| {
                b.devices
                    .into_iter()
                    .enumerate()
                    .map(move |(k, d)| {
                        vec![
                            Cell::Int(b.number.into()),
                            Cell::Int(k as i64 + 1),
                            d.map_or(Cell::Null, Cell::Str),
                            Cell::Int(7),
                        ]
                    })
                    .collect::<Vec<_>>()
            })
            .collect(),
    }
}

fn shape_error(v: View) -> Refusal {
    let name = match v {
        View::Databases => "sys.databases",
        View::BackupSet => "msdb.dbo.backupset",
        View::MediaFamily => "msdb.dbo.backupmediafamily",
    };
    (
        crate::tsql::MSG_NOT_SERVED,
        format!(
            "vdisim serve answers {name} only as SELECT [TOP n] column, ... | * FROM {name} [alias] [WHERE column = literal [AND ...]] [ORDER BY column [ASC|DESC]]; rewrite the query in that shape, one query per batch (joins, expressions and a batch of several statements are not served)"
        ),
    )
}

fn is(t: Option<&Tok>, word: &str) -> bool {
    matches!(t, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word))
}

/// The parsed shape: TOP, the select list (`None`: `*`), the view and its
/// alias, the conditions and the order.
struct Shape {
    top: Option<u64>,
    list: Option<Vec<String>>,
    view: View,
    alias: Option<String>,
    conditions: Vec<(String, Tok)>,
    order: Option<(String, bool)>,
}

/// `SELECT … FROM view …`: `None` if `text` does not select from one of
/// the views; `Err` if it does in a shape not served.
fn parse(text: &str) -> Option<Result<Shape, Refusal>> {
    let toks = lex(text)?;
    if !is(toks.first(), "SELECT") {
        return None;
    }
    let from = toks.iter().position(|t| is(Some(t), "FROM"))?;
    let Some(Tok::Word(name)) = toks.get(from + 1) else {
        return None;
    };
    let v = view(name)?;
    Some(shape(&toks, from, v).ok_or_else(|| shape_error(v)))
}

fn shape(toks: &[Tok], from: usize, v: View) -> Option<Shape> {
    let mut i = 1;
    let mut top = None;
    if is(toks.get(i), "TOP") {
        let paren = toks.get(i + 1) == Some(&Tok::Punct('('));
        let at = if paren { i + 2 } else { i + 1 };
        let Some(Tok::Int(n)) = toks.get(at) else {
            return None;
        };
        top = Some(u64::try_from(*n).ok()?.min(TOP_MAX));
        i = at + 1;
        if paren {
            (toks.get(i) == Some(&Tok::Punct(')'))).then_some(())?;
            i += 1;
        }
    }
    let list = match &toks[i..from] {
        [Tok::Punct('*')] => None,
        items => {
            let mut names = Vec::new();
            for (k, t) in items.iter().enumerate() {
                match (k % 2, t) {
                    (0, Tok::Word(w)) => names.push(w.clone()),
                    (1, Tok::Punct(',')) => {}
                    _ => return None,
                }
            }
            (items.len() % 2 == 1).then_some(names)?.into()
        }
    };
    let mut i = from + 2;
    let mut alias = None;
    if let Some(Tok::Word(w)) = toks.get(i)
        && !["WHERE", "ORDER", "AS"]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k))
    {
        alias = Some(w.clone());
        i += 1;
    } else if is(toks.get(i), "AS")
        && let Some(Tok::Word(w)) = toks.get(i + 1)
    {
        alias = Some(w.clone());
        i += 2;
    }
    let mut conditions = Vec::new();
    if is(toks.get(i), "WHERE") {
        i += 1;
        loop {
            let (
                Some(Tok::Word(c)),
                Some(Tok::Punct('=')),
                Some(lit @ (Tok::Str(_) | Tok::Int(_))),
            ) = (toks.get(i), toks.get(i + 1), toks.get(i + 2))
            else {
                return None;
            };
            conditions.push((c.clone(), lit.clone()));
            i += 3;
            if !is(toks.get(i), "AND") {
                break;
            }
            i += 1;
        }
    }
    let mut order = None;
    if is(toks.get(i), "ORDER") && is(toks.get(i + 1), "BY") {
        let Some(Tok::Word(c)) = toks.get(i + 2) else {
            return None;
        };
        i += 3;
        let desc = is(toks.get(i), "DESC");
        if desc || is(toks.get(i), "ASC") {
            i += 1;
        }
        order = Some((c.clone(), desc));
    }
    (i == toks.len()).then_some(Shape {
        top,
        list,
        view: v,
        alias,
        conditions,
        order,
    })
}

/// Where column `name` (maybe prefixed by the alias or the view's name)
/// is in the view, or Msg 207.
fn column(s: &Shape, name: &str) -> Result<usize, Refusal> {
    let table = match s.view {
        View::Databases => "databases",
        View::BackupSet => "backupset",
        View::MediaFamily => "backupmediafamily",
    };
    let bare = match name.rsplit_once('.') {
        Some((prefix, c))
            if s.alias
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(prefix))
                || prefix
                    .rsplit('.')
                    .next()
                    .is_some_and(|last| last.eq_ignore_ascii_case(table)) =>
        {
            c
        }
        _ => name,
    };
    columns(s.view)
        .iter()
        .position(|(c, _)| c.eq_ignore_ascii_case(bare))
        .ok_or_else(|| (207, format!("Invalid column name '{name}'.")))
}

/// Whether `cell` equals the literal (text without regard to ASCII case).
fn matches(cell: &Cell, lit: &Tok) -> bool {
    match (cell, lit) {
        (Cell::Str(a), Tok::Str(b)) => a.eq_ignore_ascii_case(b),
        (Cell::Int(a), Tok::Int(b)) => a == b,
        (Cell::Numeric(a), Tok::Int(b)) => i64::try_from(*a).is_ok_and(|a| a == *b),
        (Cell::Bit(a), Tok::Int(b)) => i64::from(*a) == *b,
        (Cell::Int(a), Tok::Str(b)) => b.trim().parse::<i64>().is_ok_and(|b| *a == b),
        _ => false,
    }
}

/// The result set `text` asks of one of the views: `None` if it asks
/// none of them, `Err` with the message SQL Server would send instead.
pub fn answer(text: &str, t: &dyn Tables) -> Option<Result<ResultSet, Refusal>> {
    let s = match parse(text)? {
        Ok(s) => s,
        Err(e) => return Some(Err(e)),
    };
    Some(run(&s, t))
}

fn run(s: &Shape, t: &dyn Tables) -> Result<ResultSet, Refusal> {
    let cols = columns(s.view);
    let picked: Vec<usize> = match &s.list {
        None => (0..cols.len()).collect(),
        Some(names) => names
            .iter()
            .map(|n| column(s, n))
            .collect::<Result<_, _>>()?,
    };
    let conds: Vec<(usize, &Tok)> = s
        .conditions
        .iter()
        .map(|(c, lit)| Ok((column(s, c)?, lit)))
        .collect::<Result<_, Refusal>>()?;
    let order = match &s.order {
        Some((c, desc)) => Some((column(s, c)?, *desc)),
        None => None,
    };
    let mut rows: Vec<Vec<Cell>> = rows(s.view, t)
        .into_iter()
        .filter(|r| conds.iter().all(|(k, lit)| matches(&r[*k], lit)))
        .collect();
    if let Some((k, desc)) = order {
        rows.sort_by(|a, b| a[k].order(&b[k]));
        if desc {
            rows.reverse();
        }
    }
    if let Some(n) = s.top {
        rows.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    Ok(ResultSet {
        columns: picked
            .iter()
            .map(|&k| (cols[k].0.to_string(), cols[k].1))
            .collect(),
        rows: rows
            .into_iter()
            .map(|r| picked.iter().map(|&k| r[k].clone()).collect())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T;
    impl Tables for T {
        fn databases(&self) -> Vec<DbRow> {
            ["inventory", "sales"]
                .iter()
                .enumerate()
                .map(|(k, n)| DbRow {
                    name: (*n).into(),
                    id: 5 + k as i32,
                    state_desc: "ONLINE".into(),
                    recovery_model_desc: "FULL".into(),
                })
                .collect()
        }
        fn backups(&self) -> Vec<BackupRow> {
            (1..=3)
                .map(|n| BackupRow {
                    number: n,
                    database_name: if n == 2 { "inventory" } else { "sales" }.into(),
                    kind: if n == 3 { 'L' } else { 'D' },
                    start_unix_ms: 1000 * u64::from(n),
                    finish_unix_ms: 1000 * u64::from(n) + 500,
                    first_lsn: 10_000,
                    last_lsn: 10_000 + u64::from(n),
                    checkpoint_lsn: 10_000,
                    database_backup_lsn: 0,
                    copy_only: false,
                    checksums: n == 1,
                    size: 65536,
                    server_name: "S".into(),
                    devices: vec![Some(format!("vd{n}")), None],
                })
                .collect()
        }
    }

    fn ok(q: &str) -> ResultSet {
        answer(q, &T).expect("a view").expect("served")
    }

    #[test]
    fn products_queries_are_answered() {
        let r = ok(
            "SELECT TOP 1 bs.backup_set_id, bs.type FROM msdb.dbo.backupset bs WHERE bs.database_name = N'SALES' AND type = 'D' ORDER BY backup_finish_date DESC",
        );
        assert_eq!(r.rows, vec![vec![Cell::Int(1), Cell::Str("D".into())]]);
        assert_eq!(r.columns[1], ("type".into(), Type::Char(1)));
        let r = ok("select * from [msdb].[dbo].[backupset] order by backup_set_id desc;");
        assert_eq!(r.columns.len(), 14);
        assert_eq!(r.rows[0][0], Cell::Int(3));
        let r = ok(
            "SELECT TOP (2) physical_device_name FROM msdb..backupmediafamily WHERE media_set_id = 2",
        );
        assert_eq!(
            r.rows,
            vec![vec![Cell::Str("vd2".into())], vec![Cell::Null]]
        );
        let r = ok("SELECT name, database_id FROM sys.databases WHERE name = 'sales'");
        assert_eq!(r.rows, vec![vec![Cell::Str("sales".into()), Cell::Int(6)]]);
    }

    #[test]
    fn other_shapes_are_refused_clearly() {
        assert_eq!(answer("SELECT 1", &T), None);
        assert_eq!(answer("SELECT x FROM t", &T), None);
        let e = answer("SELECT nope FROM msdb.dbo.backupset", &T)
            .unwrap()
            .unwrap_err();
        assert_eq!(e, (207, "Invalid column name 'nope'.".into()));
        for q in [
            "SELECT * FROM msdb.dbo.backupset bs JOIN msdb.dbo.backupmediafamily f ON bs.media_set_id = f.media_set_id",
            "SELECT COUNT(*) FROM msdb.dbo.backupset",
            "SELECT * FROM msdb.dbo.backupset WHERE backup_size > 1",
            "SELECT TOP x * FROM sys.databases",
            "SELECT name FROM sys.databases WHERE name = 'a",
        ] {
            match answer(q, &T) {
                Some(Err((n, _))) => assert_eq!(n, crate::tsql::MSG_NOT_SERVED, "{q}"),
                None => assert!(q.ends_with("'a"), "{q}"),
                other => panic!("{q}: {other:?}"),
            }
        }
    }
}
