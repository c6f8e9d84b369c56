//! The few queries drivers and backup products send around a backup,
//! answered with result sets: a batch that is exactly one of
//!
//! - `SELECT @@VERSION`, `SELECT @@SPID`, `SELECT @@SERVERNAME`,
//!   `SELECT DB_NAME()`, `DB_NAME(id)`, `DB_ID()`, `DB_ID('name')`,
//!   `SELECT <integer>` (drivers' ping), `SELECT SERVERPROPERTY('…')`
//!   (ProductVersion, ProductLevel, Edition, EngineEdition, MachineName,
//!   ServerName, InstanceName, IsClustered; another property is NULL, as
//!   SQL Server answers), each optionally inside `CAST(… AS type)` and
//!   with `AS alias`;
//! - a SELECT from `sys.databases`, `msdb.dbo.backupset` or
//!   `msdb.dbo.backupmediafamily` in the shape [`tables`] serves.
//!
//! Anything else goes to the T-SQL parser, which says what is not served
//! (no query engine here). SERVERPROPERTY's sql_variant is answered as
//! NVARCHAR, which every driver reads; the views' columns have SQL
//! Server's types (INT, TINYINT, NVARCHAR, CHAR, BIT, DATETIME,
//! NUMERIC(p, 0)).

pub use super::resultset::{Cell, ResultSet, Type, datetime, encode, encode_rows};
use super::tables::{self, Refusal, Tables};

/// What the answers draw on.
pub struct Context<'a> {
    pub spid: u16,
    pub server_name: &'a str,
    /// The session's database.
    pub database: &'a str,
    /// The server's databases and msdb's history.
    pub tables: &'a dyn Tables,
}

/// The product version every answer gives (`SERVER_VERSION`).
pub const PRODUCT_VERSION: &str = "16.0.1000.6";

/// `text` with runs of whitespace made one space, trimmed, without a
/// trailing semicolon.
fn normalize(text: &str) -> String {
    let t = text.split_whitespace().collect::<Vec<_>>().join(" ");
    t.trim_end_matches(';').trim().to_string()
}

/// Strips a prefix without regard to ASCII case.
fn strip_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `expr AS alias` → (expr, alias); an alias in brackets or quotes too.
fn split_alias(s: &str) -> (&str, Option<String>) {
    let upper = s.to_ascii_uppercase();
    match upper.rfind(" AS ") {
        // Not the AS of a CAST: the alias follows the last parenthesis.
        Some(i) if !s[i..].contains(')') => {
            let alias = s[i + 4..]
                .trim()
                .trim_matches(|c| matches!(c, '[' | ']' | '"' | '\''));
            (&s[..i], Some(alias.to_string()))
        }
        _ => (s, None),
    }
}

/// `CAST(expr AS type)` → (expr, type); otherwise (s, None).
fn split_cast(s: &str) -> (&str, Option<Type>) {
    let Some(inner) = strip_ci(s, "CAST(").and_then(|r| r.strip_suffix(')')) else {
        return (s, None);
    };
    let upper = inner.to_ascii_uppercase();
    let Some(i) = upper.rfind(" AS ") else {
        return (s, None);
    };
    let ty = upper[i + 4..].trim();
    let t = if ty == "INT" || ty == "BIGINT" {
        Type::Int
    } else {
        Type::NVarChar(128)
    };
    (inner[..i].trim(), Some(t))
}

fn server_property(name: &str, cx: &Context) -> Cell {
    let s = |v: &str| Cell::Str(v.to_string());
    match name.to_ascii_lowercase().as_str() {
        "productversion" => s(PRODUCT_VERSION),
        "productlevel" => s("RTM"),
        "edition" => s("Developer Edition (64-bit)"),
        "engineedition" => s("3"),
        "machinename" | "servername" => s(cx.server_name),
        "isclustered" | "ishadrenabled" => s("0"),
        _ => Cell::Null,
    }
}

/// A string literal's text: `'x'` or `N'x'` (quotes doubled inside).
fn literal(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s.strip_prefix(['N', 'n']).unwrap_or(s);
    Some(s.strip_prefix('\'')?.strip_suffix('\'')?.replace("''", "'"))
}

/// `DB_ID(name)`: the database's id; master is 1, msdb 4 (SQL Server's
/// system databases); NULL for a database the server does not have.
fn db_id(cx: &Context, name: &str) -> Cell {
    if name.eq_ignore_ascii_case("master") {
        return Cell::Int(1);
    }
    if name.eq_ignore_ascii_case("msdb") {
        return Cell::Int(4);
    }
    cx.tables
        .databases()
        .into_iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
        .map_or(Cell::Null, |d| Cell::Int(d.id.into()))
}

/// One scalar expression's value and natural type.
fn scalar(expr: &str, cx: &Context) -> Option<(Cell, Type)> {
    let e = expr.trim();
    let u = e.to_ascii_uppercase();
    Some(match u.as_str() {
        "@@VERSION" => (
            Cell::Str(format!(
                "Microsoft SQL Server 2022 (RTM) - {PRODUCT_VERSION} (X64) \n\tvdisim serve: a simulated SQL Server for VDI backup programs (no real data)\n"
            )),
            Type::NVarChar(300),
        ),
        "@@SPID" => (Cell::Int(i64::from(cx.spid)), Type::Int),
        "@@SERVERNAME" => (Cell::Str(cx.server_name.into()), Type::NVarChar(128)),
        "DB_NAME()" => (Cell::Str(cx.database.into()), Type::NVarChar(128)),
        "DB_ID()" => (db_id(cx, cx.database), Type::Int),
        _ if e.parse::<i32>().is_ok() => (Cell::Int(e.parse().unwrap_or(0)), Type::Int),
        _ if strip_ci(e, "DB_ID(").is_some() => {
            let name = literal(strip_ci(e, "DB_ID(")?.strip_suffix(')')?)?;
            (db_id(cx, &name), Type::Int)
        }
        _ if strip_ci(e, "DB_NAME(").is_some() => {
            let id: i64 = strip_ci(e, "DB_NAME(")?
                .strip_suffix(')')?
                .trim()
                .parse()
                .ok()?;
            let name = cx
                .tables
                .databases()
                .into_iter()
                .find(|d| i64::from(d.id) == id)
                .map_or(Cell::Null, |d| Cell::Str(d.name));
            (name, Type::NVarChar(128))
        }
        _ => {
            let arg = strip_ci(e, "SERVERPROPERTY(")?.strip_suffix(')')?.trim();
            let arg = arg.strip_prefix(['N', 'n']).unwrap_or(arg);
            let name = arg.strip_prefix('\'')?.strip_suffix('\'')?;
            (server_property(name, cx), Type::NVarChar(128))
        }
    })
}

/// The result set `text` asks for, if it is one of the served queries;
/// `Err` with the error SQL Server would send for a served view asked in
/// a shape not served ([`tables`]).
pub fn answer(text: &str, cx: &Context) -> Option<Result<ResultSet, Refusal>> {
    if let Some(r) = tables::answer(text, cx.tables) {
        return Some(r);
    }
    let t = normalize(text);
    let rest = strip_ci(&t, "SELECT ")?.trim();
    let (expr, alias) = split_alias(rest);
    let (expr, cast) = split_cast(expr.trim());
    let (cell, natural) = scalar(expr, cx)?;
    let ty = cast.unwrap_or(natural);
    let cell = match (cell, ty) {
        (Cell::Str(s), Type::Int) => s.parse().map(Cell::Int).unwrap_or(Cell::Null),
        (Cell::Int(n), Type::NVarChar(_)) => Cell::Str(n.to_string()),
        (c, _) => c,
    };
    Some(Ok(ResultSet {
        columns: vec![(alias.unwrap_or_default(), ty)],
        rows: vec![vec![cell]],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T;
    impl Tables for T {
        fn databases(&self) -> Vec<super::tables::DbRow> {
            ["inventory", "sales"]
                .iter()
                .enumerate()
                .map(|(k, n)| super::tables::DbRow {
                    name: (*n).into(),
                    id: 5 + k as i32,
                    state_desc: "ONLINE".into(),
                    recovery_model_desc: "SIMPLE".into(),
                })
                .collect()
        }
        fn backups(&self) -> Vec<super::tables::BackupRow> {
            Vec::new()
        }
    }

    fn cx() -> Context<'static> {
        Context {
            spid: 53,
            server_name: "VDISIM",
            database: "sales",
            tables: &T,
        }
    }

    #[test]
    fn served_queries() {
        let one = |q: &str| answer(q, &cx()).map(|r| r.map(|r| (r.columns, r.rows)).unwrap());
        assert_eq!(
            one("SELECT CAST(@@SPID AS int)"),
            Some((vec![(String::new(), Type::Int)], vec![vec![Cell::Int(53)]]))
        );
        assert_eq!(
            one("select db_name() as db;"),
            Some((
                vec![("db".into(), Type::NVarChar(128))],
                vec![vec![Cell::Str("sales".into())]]
            ))
        );
        assert_eq!(
            one("SELECT SERVERPROPERTY(N'ProductVersion')").unwrap().1,
            vec![vec![Cell::Str(PRODUCT_VERSION.into())]]
        );
        assert_eq!(
            one("SELECT CAST(SERVERPROPERTY('EngineEdition') AS int)")
                .unwrap()
                .1,
            vec![vec![Cell::Int(3)]]
        );
        assert_eq!(
            one("SELECT SERVERPROPERTY('InstanceName')").unwrap().1,
            vec![vec![Cell::Null]]
        );
        assert_eq!(
            one("SELECT name FROM sys.databases").unwrap().1,
            vec![
                vec![Cell::Str("inventory".into())],
                vec![Cell::Str("sales".into())]
            ]
        );
        assert!(one("SELECT @@VERSION").is_some());
        assert_eq!(one("SELECT 1").unwrap().1, vec![vec![Cell::Int(1)]]);
        assert_eq!(one("SELECT DB_ID()").unwrap().1, vec![vec![Cell::Int(6)]]);
        assert_eq!(
            one("SELECT DB_ID(N'msdb')").unwrap().1,
            vec![vec![Cell::Int(4)]]
        );
        assert_eq!(
            one("SELECT DB_NAME(5)").unwrap().1,
            vec![vec![Cell::Str("inventory".into())]]
        );
        assert_eq!(
            one("SELECT DB_ID('nope')").unwrap().1,
            vec![vec![Cell::Null]]
        );
        for q in [
            "SELECT 1 + 1",
            "SELECT * FROM t",
            "BACKUP DATABASE x",
            "SELECT @@SPID, 1",
        ] {
            assert_eq!(one(q), None, "{q}");
        }
    }

    /// tds-notes.md §9's worked DATETIME: 2024-01-02 03:04:05.500.
    #[test]
    fn datetime_days_and_ticks() {
        let ms = 1_704_164_645_500;
        let (days, ticks) = datetime(ms);
        let mut v = days.to_le_bytes().to_vec();
        v.extend(ticks.to_le_bytes());
        assert_eq!(v, [0xEB, 0xB0, 0x00, 0x00, 0xF2, 0x8F, 0x32, 0x00]);
        // The last tick of a day rounds into the next day.
        assert_eq!(datetime(86_399_999), (25_568, 0));
    }

    /// tds-notes.md §8's verified `SELECT 1` bytes, with INTN(4).
    #[test]
    fn encodes_an_int_result() {
        let rs = ResultSet {
            columns: vec![(String::new(), Type::Int)],
            rows: vec![vec![Cell::Int(1)]],
        };
        let mut o = Vec::new();
        encode(&mut o, &rs);
        assert_eq!(
            o,
            vec![
                0x81, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x26, 0x04, 0x00, 0xD1, 0x04,
                0x01, 0x00, 0x00, 0x00, 0xFD, 0x10, 0x00, 0xC1, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x00
            ]
        );
    }
}
