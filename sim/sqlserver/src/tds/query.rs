//! The few queries drivers and backup products send around a backup,
//! answered with result sets: a batch that is exactly one of
//!
//! - `SELECT @@VERSION`, `SELECT @@SPID`, `SELECT @@SERVERNAME`,
//!   `SELECT DB_NAME()`, `SELECT SERVERPROPERTY('…')` (ProductVersion,
//!   ProductLevel, Edition, EngineEdition, MachineName, ServerName,
//!   InstanceName, IsClustered; another property is NULL, as SQL Server
//!   answers), each optionally inside `CAST(… AS type)` and with `AS
//!   alias`;
//! - `SELECT name FROM sys.databases` (optionally `ORDER BY name`).
//!
//! Anything else goes to the T-SQL parser, which says what is not served
//! (no query engine here). Values are INT or NVARCHAR (SERVERPROPERTY's
//! sql_variant is answered as NVARCHAR, which every driver reads).

use super::token;

/// A result set's column type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Int,
    /// NVARCHAR of at most this many characters.
    NVarChar(u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i32),
    Str(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<(String, Type)>,
    pub rows: Vec<Vec<Cell>>,
}

/// What the answers draw on.
pub struct Context<'a> {
    pub spid: u16,
    pub server_name: &'a str,
    /// The session's database.
    pub database: &'a str,
    /// The server's databases, by name.
    pub databases: Vec<String>,
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
        "@@SPID" => (Cell::Int(i32::from(cx.spid)), Type::Int),
        "@@SERVERNAME" => (Cell::Str(cx.server_name.into()), Type::NVarChar(128)),
        "DB_NAME()" => (Cell::Str(cx.database.into()), Type::NVarChar(128)),
        _ => {
            let arg = strip_ci(e, "SERVERPROPERTY(")?.strip_suffix(')')?.trim();
            let arg = arg.strip_prefix(['N', 'n']).unwrap_or(arg);
            let name = arg.strip_prefix('\'')?.strip_suffix('\'')?;
            (server_property(name, cx), Type::NVarChar(128))
        }
    })
}

/// The result set `text` asks for, if it is one of the served queries.
pub fn answer(text: &str, cx: &Context) -> Option<ResultSet> {
    let t = normalize(text);
    let rest = strip_ci(&t, "SELECT ")?.trim();
    let u = rest.to_ascii_uppercase();
    if u == "NAME FROM SYS.DATABASES" || u == "NAME FROM SYS.DATABASES ORDER BY NAME" {
        let mut names = cx.databases.clone();
        names.sort();
        return Some(ResultSet {
            columns: vec![("name".into(), Type::NVarChar(128))],
            rows: names.into_iter().map(|n| vec![Cell::Str(n)]).collect(),
        });
    }
    let (expr, alias) = split_alias(rest);
    let (expr, cast) = split_cast(expr.trim());
    let (cell, natural) = scalar(expr, cx)?;
    let ty = cast.unwrap_or(natural);
    let cell = match (cell, ty) {
        (Cell::Str(s), Type::Int) => s.parse().map(Cell::Int).unwrap_or(Cell::Null),
        (Cell::Int(n), Type::NVarChar(_)) => Cell::Str(n.to_string()),
        (c, _) => c,
    };
    Some(ResultSet {
        columns: vec![(alias.unwrap_or_default(), ty)],
        rows: vec![vec![cell]],
    })
}

/// COLMETADATA, a ROW per row, then DONE with the row count (COUNT,
/// CurCmd SELECT).
pub fn encode(o: &mut Vec<u8>, rs: &ResultSet) {
    o.push(0x81);
    o.extend((rs.columns.len() as u16).to_le_bytes());
    for (name, ty) in &rs.columns {
        o.extend(0u32.to_le_bytes());
        // Nullable, read-only.
        o.extend(1u16.to_le_bytes());
        match ty {
            Type::Int => o.extend([0x26, 4]),
            Type::NVarChar(n) => {
                o.push(0xE7);
                o.extend((n * 2).to_le_bytes());
                o.extend(token::COLLATION);
            }
        }
        let u: Vec<u16> = name.encode_utf16().take(128).collect();
        o.push(u.len() as u8);
        o.extend(u.iter().flat_map(|c| c.to_le_bytes()));
    }
    for row in &rs.rows {
        o.push(0xD1);
        for (cell, (_, ty)) in row.iter().zip(&rs.columns) {
            match (cell, ty) {
                (Cell::Int(n), _) => {
                    o.push(4);
                    o.extend(n.to_le_bytes());
                }
                (Cell::Str(s), Type::NVarChar(max)) => {
                    let u: Vec<u16> = s.encode_utf16().take(usize::from(*max)).collect();
                    o.extend(((u.len() * 2) as u16).to_le_bytes());
                    o.extend(u.iter().flat_map(|c| c.to_le_bytes()));
                }
                (_, Type::Int) => o.push(0),
                (_, Type::NVarChar(_)) => o.extend([0xFF, 0xFF]),
            }
        }
    }
    token::done(
        o,
        token::id::DONE,
        token::done::COUNT,
        0xC1,
        rs.rows.len() as u64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context<'static> {
        Context {
            spid: 53,
            server_name: "VDISIM",
            database: "sales",
            databases: vec!["sales".into(), "inventory".into()],
        }
    }

    #[test]
    fn served_queries() {
        let one = |q: &str| answer(q, &cx()).map(|r| (r.columns, r.rows));
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
        for q in [
            "SELECT 1",
            "SELECT * FROM t",
            "BACKUP DATABASE x",
            "SELECT @@SPID, 1",
        ] {
            assert_eq!(one(q), None, "{q}");
        }
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
