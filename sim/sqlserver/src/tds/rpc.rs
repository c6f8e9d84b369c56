//! RPC requests: the procedure (by id or name) and its parameters, and the
//! T-SQL a parameterized statement becomes. `sp_executesql`,
//! `sp_prepexec`, `sp_prepare`, `sp_execute` and `sp_unprepare` are
//! served: the statement runs as a batch that first DECLAREs each
//! parameter with its value (on the statement's first line, so message
//! line numbers stay the statement's), through the same T-SQL as every
//! batch. Parameters of string types (NVARCHAR, NCHAR, VARCHAR, CHAR,
//! PLP included), integers and bits are served; other types get an error.

use super::{TdsError, utf16le};

/// Procedure ids (`0xFFFF` then the id instead of a name).
pub mod proc_id {
    pub const SP_EXECUTESQL: u16 = 10;
    pub const SP_PREPARE: u16 = 11;
    pub const SP_EXECUTE: u16 = 12;
    pub const SP_PREPEXEC: u16 = 13;
    pub const SP_UNPREPARE: u16 = 15;
}

/// A parameter's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Str(String),
    Int(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// As the client named it (`@P1`, or empty).
    pub name: String,
    /// OUTPUT (by reference): its value comes back in a RETURNVALUE.
    pub output: bool,
    pub value: Value,
    /// Its TYPE_INFO as the client sent it (a RETURNVALUE answers in it).
    pub type_info: Vec<u8>,
}

/// One RPC request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rpc {
    /// The procedure: a well-known id, or `None` with `name`.
    pub id: Option<u16>,
    pub name: String,
    pub params: Vec<Param>,
}

impl Rpc {
    /// The well-known procedure this is, by id or by name.
    pub fn proc(&self) -> Option<u16> {
        if self.id.is_some() {
            return self.id;
        }
        let n = self.name.to_ascii_lowercase();
        let n = n.rsplit('.').next().unwrap_or("");
        Some(match n {
            "sp_executesql" => proc_id::SP_EXECUTESQL,
            "sp_prepare" => proc_id::SP_PREPARE,
            "sp_execute" => proc_id::SP_EXECUTE,
            "sp_prepexec" => proc_id::SP_PREPEXEC,
            "sp_unprepare" => proc_id::SP_UNPREPARE,
            _ => return None,
        })
    }
}

fn bad(why: impl Into<String>) -> TdsError {
    TdsError::malformed("RPC", why)
}

/// A cursor over the payload: every read is checked.
struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TdsError> {
        let s = self
            .b
            .get(self.at..self.at.saturating_add(n))
            .ok_or_else(|| bad("cut short"))?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, TdsError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, TdsError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, TdsError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn int(&mut self, n: usize) -> Result<i64, TdsError> {
        let s = self.take(n)?;
        Ok(match n {
            1 => i64::from(s[0]),
            2 => i64::from(i16::from_le_bytes([s[0], s[1]])),
            4 => i64::from(i32::from_le_bytes([s[0], s[1], s[2], s[3]])),
            8 => i64::from_le_bytes(s.try_into().map_err(|_| bad("integer"))?),
            _ => return Err(bad(format!("an integer of {n} bytes"))),
        })
    }
    /// PLP: total length (or unknown/NULL), then chunks up to a 0 chunk.
    fn plp(&mut self) -> Result<Option<Vec<u8>>, TdsError> {
        let total = self.take(8)?;
        if total == [0xFF; 8] {
            return Ok(None);
        }
        let mut out = Vec::new();
        loop {
            let n = self.u32()? as usize;
            if n == 0 {
                return Ok(Some(out));
            }
            out.extend_from_slice(self.take(n)?);
        }
    }
}

/// Characters of a single-byte string (Windows-1252 for the usual
/// collation; its ASCII range is all a statement needs).
fn single_byte(b: &[u8]) -> String {
    b.iter().map(|c| char::from(*c)).collect()
}

/// A parameter's TYPE_INFO (its bytes) and value.
fn typed_value(c: &mut Cur) -> Result<(Vec<u8>, Value), TdsError> {
    let start = c.at;
    let ty = c.b.get(start).copied().ok_or_else(|| bad("cut short"))?;
    let info_len = match ty {
        0x26 | 0x68 => 2,
        0xE7 | 0xEF | 0xA7 | 0xAF => 8,
        _ => 1,
    };
    let info =
        c.b.get(start..start.saturating_add(info_len))
            .map(<[u8]>::to_vec);
    let v = value(c)?;
    Ok((info.ok_or_else(|| bad("cut short"))?, v))
}

/// A parameter's TYPE_INFO and value.
fn value(c: &mut Cur) -> Result<Value, TdsError> {
    let ty = c.u8()?;
    Ok(match ty {
        // INT1, INT2, INT4, INT8, BIT (fixed).
        0x30 => Value::Int(c.int(1)?),
        0x34 => Value::Int(c.int(2)?),
        0x38 => Value::Int(c.int(4)?),
        0x7F => Value::Int(c.int(8)?),
        0x32 => Value::Int(c.int(1)?),
        // INTN, BITN.
        0x26 | 0x68 => {
            let _max = c.u8()?;
            match c.u8()? {
                0 => Value::Null,
                n => Value::Int(c.int(usize::from(n))?),
            }
        }
        // NVARCHAR, NCHAR, VARCHAR, CHAR (BIG* forms).
        0xE7 | 0xEF | 0xA7 | 0xAF => {
            let max = c.u16()?;
            c.take(5)?;
            let bytes = if max == 0xFFFF {
                c.plp()?
            } else {
                match c.u16()? {
                    0xFFFF => None,
                    n => Some(c.take(usize::from(n))?.to_vec()),
                }
            };
            match bytes {
                None => Value::Null,
                Some(b) if matches!(ty, 0xE7 | 0xEF) => Value::Str(utf16le(&b)),
                Some(b) => Value::Str(single_byte(&b)),
            }
        }
        other => {
            return Err(bad(format!(
                "a parameter of type 0x{other:02x} (vdisim serves strings, integers and bits)"
            )));
        }
    })
}

/// The most RPCs one message may carry.
pub const RPCS_MAX: usize = 256;
/// The most parameters one RPC may carry (SQL Server's limit).
pub const PARAMS_MAX: usize = 2100;

/// Parses an RPC payload after ALL_HEADERS: its first request.
pub fn parse(b: &[u8]) -> Result<Rpc, TdsError> {
    let mut c = Cur { b, at: 0 };
    one(&mut c)
}

/// Parses an RPC payload after ALL_HEADERS: every request, separated by
/// the batch flag 0xFF (TDS 7.2 and later; 0x80, the older flag, is a
/// parameter name's length there). At most [`RPCS_MAX`]; the no-exec
/// flag 0xFE is refused.
pub fn parse_all(b: &[u8]) -> Result<Vec<Rpc>, TdsError> {
    let mut c = Cur { b, at: 0 };
    let mut out = vec![one(&mut c)?];
    while c.at < b.len() {
        match c.u8()? {
            0xFF => {}
            0xFE => return Err(bad("the no-exec flag (0xFE) is not served")),
            other => return Err(bad(format!("0x{other:02x} between RPCs"))),
        }
        if out.len() >= RPCS_MAX {
            return Err(bad(format!("more than {RPCS_MAX} RPCs in one message")));
        }
        out.push(one(&mut c)?);
    }
    Ok(out)
}

/// One request, up to the end of the payload or a batch flag.
fn one(c: &mut Cur) -> Result<Rpc, TdsError> {
    let n = c.u16()?;
    let (id, name) = if n == 0xFFFF {
        (Some(c.u16()?), String::new())
    } else {
        if usize::from(n) > 1024 {
            return Err(bad("a procedure name of more than 1024 characters"));
        }
        (None, utf16le(c.take(usize::from(n) * 2)?))
    };
    let _options = c.u16()?;
    let mut params = Vec::new();
    while let Some(&len) = c.b.get(c.at) {
        if matches!(len, 0xFF | 0xFE) {
            break;
        }
        c.at += 1;
        if params.len() >= PARAMS_MAX {
            return Err(bad(format!("more than {PARAMS_MAX} parameters")));
        }
        let name = utf16le(c.take(usize::from(len) * 2)?);
        let status = c.u8()?;
        let (type_info, value) = typed_value(c)?;
        params.push(Param {
            name,
            output: status & 0x01 != 0,
            value,
            type_info,
        });
    }
    Ok(Rpc { id, name, params })
}

/// The names a declaration list (`@P1 nvarchar(4000),@P2 int`) gives, in
/// order (commas inside parentheses do not split).
pub fn declared_names(decls: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut item = String::new();
    for ch in decls.chars().chain(std::iter::once(',')) {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth <= 0 => {
                if let Some(n) = item.split_whitespace().next() {
                    out.push(n.to_string());
                }
                item.clear();
                continue;
            }
            _ => {}
        }
        item.push(ch);
    }
    out
}

/// `statement` with each parameter written in as a literal where its
/// name stands (`@db` → `N'sales'`, `@n` → `7`, NULL): the form a served
/// query (`super::query`) is recognized in. Names match without regard to
/// ASCII case and only as whole names; text inside quotes is left alone.
pub fn inline_values(statement: &str, decls: &str, values: &[Param]) -> String {
    let names = declared_names(decls);
    let lits: Vec<(String, String)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let name = if p.name.is_empty() {
                names.get(i)?.clone()
            } else {
                p.name.clone()
            };
            let name = name.strip_prefix('@').unwrap_or(&name).to_ascii_lowercase();
            let lit = match &p.value {
                Value::Null => "NULL".to_string(),
                Value::Int(n) => n.to_string(),
                Value::Str(s) => format!("N'{}'", s.replace('\'', "''")),
            };
            Some((name, lit))
        })
        .collect();
    let mut out = String::new();
    let mut chars = statement.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c != '@' || quoted {
            out.push(c);
            continue;
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_alphanumeric() || matches!(n, '_' | '@' | '#' | '$') {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let lower = name.to_ascii_lowercase();
        match lits.iter().find(|(n, _)| *n == lower) {
            Some((_, lit)) => out.push_str(lit),
            None => {
                out.push('@');
                out.push_str(&name);
            }
        }
    }
    out
}

/// `statement` preceded, on its first line, by a DECLARE of each value
/// under its name (the parameter's own, else the declaration list's).
pub fn with_values(statement: &str, decls: &str, values: &[Param]) -> String {
    let names = declared_names(decls);
    let mut parts = Vec::new();
    for (i, p) in values.iter().enumerate() {
        let name = if p.name.is_empty() {
            match names.get(i) {
                Some(n) => n.clone(),
                None => continue,
            }
        } else {
            p.name.clone()
        };
        let name = if name.starts_with('@') {
            name
        } else {
            format!("@{name}")
        };
        parts.push(match &p.value {
            Value::Null => format!("{name} NVARCHAR(MAX)"),
            Value::Int(n) => format!("{name} BIGINT = {n}"),
            Value::Str(s) => format!("{name} NVARCHAR(MAX) = N'{}'", s.replace('\'', "''")),
        });
    }
    if parts.is_empty() {
        statement.to_string()
    } else {
        format!("DECLARE {}; {statement}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
    }

    /// An NVARCHAR(MAX) PLP parameter of unknown length, as pytds and
    /// ODBC send them.
    fn plp_param(name: &str, v: &str) -> Vec<u8> {
        let mut p = vec![name.encode_utf16().count() as u8];
        p.extend(utf16(name));
        p.push(0);
        p.extend([0xE7, 0xFF, 0xFF, 0x09, 0x04, 0xD0, 0x00, 0x34]);
        p.extend([0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        let b = utf16(v);
        p.extend((b.len() as u32).to_le_bytes());
        p.extend(b);
        p.extend([0, 0, 0, 0]);
        p
    }

    #[test]
    fn parses_sp_executesql() {
        let mut b = vec![0xFF, 0xFF, 10, 0, 0, 0];
        b.extend(plp_param(
            "",
            "BACKUP DATABASE sales TO VIRTUAL_DEVICE = @P1",
        ));
        b.extend(plp_param("", "@P1 nvarchar(max)"));
        // tedious-style: NVARCHAR(n) with a named parameter.
        b.extend([3]);
        b.extend(utf16("@P1"));
        b.extend([0, 0xE7, 8, 0, 0, 0, 0, 0, 0, 6, 0]);
        b.extend(utf16("VD1"));
        // INTN 4, NULL INTN.
        b.extend([0, 0, 0x26, 4, 4, 7, 0, 0, 0, 0, 0, 0x26, 4, 0]);
        let r = parse(&b).unwrap();
        assert_eq!(r.proc(), Some(proc_id::SP_EXECUTESQL));
        assert_eq!(r.params.len(), 5);
        assert_eq!(r.params[2].value, Value::Str("VD1".into()));
        assert_eq!(r.params[3].value, Value::Int(7));
        assert_eq!(r.params[4].value, Value::Null);
        let text = with_values(
            "BACKUP DATABASE sales TO VIRTUAL_DEVICE = @P1",
            "@P1 nvarchar(max)",
            &r.params[2..3],
        );
        assert_eq!(
            text,
            "DECLARE @P1 NVARCHAR(MAX) = N'VD1'; BACKUP DATABASE sales TO VIRTUAL_DEVICE = @P1"
        );
    }

    #[test]
    fn values_written_in_for_a_served_query() {
        let ps = [
            Param {
                name: String::new(),
                output: false,
                value: Value::Str("o'k".into()),
                type_info: Vec::new(),
            },
            Param {
                name: "@N".into(),
                output: false,
                value: Value::Int(3),
                type_info: Vec::new(),
            },
        ];
        assert_eq!(
            inline_values(
                "SELECT TOP (@n) x FROM t WHERE a = @P1 AND b = '@P1' AND c = @P10",
                "@P1 nvarchar(9), @n int",
                &ps
            ),
            "SELECT TOP (3) x FROM t WHERE a = N'o''k' AND b = '@P1' AND c = @P10"
        );
        assert_eq!(inline_values("SELECT @@SPID", "", &[]), "SELECT @@SPID");
    }

    #[test]
    fn names_come_from_the_declarations_when_unnamed() {
        assert_eq!(
            declared_names("@P1 decimal(10,2), @P2 varchar(3)"),
            vec!["@P1", "@P2"]
        );
        let ps = [
            Param {
                name: String::new(),
                output: false,
                value: Value::Str("it's".into()),
                type_info: Vec::new(),
            },
            Param {
                name: String::new(),
                output: false,
                value: Value::Int(-3),
                type_info: Vec::new(),
            },
        ];
        assert_eq!(
            with_values("X", "@a nvarchar(9),@b int", &ps),
            "DECLARE @a NVARCHAR(MAX) = N'it''s', @b BIGINT = -3; X"
        );
        assert_eq!(with_values("X", "", &[]), "X");
    }

    /// Two RPCs separated by the batch flag; OUTPUT parameters keep their
    /// TYPE_INFO; the no-exec flag and stray bytes are errors.
    #[test]
    fn several_rpcs_in_one_message() {
        let mut b = vec![0xFF, 0xFF, 15, 0, 0, 0];
        b.extend([0, 0x01, 0x26, 4, 4, 9, 0, 0, 0]);
        b.push(0xFF);
        b.extend([0xFF, 0xFF, 10, 0, 0, 0]);
        b.extend(plp_param("", "SELECT 1"));
        let rs = parse_all(&b).unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].proc(), Some(proc_id::SP_UNPREPARE));
        assert!(rs[0].params[0].output);
        assert_eq!(rs[0].params[0].type_info, vec![0x26, 4]);
        assert_eq!(rs[1].params[0].value, Value::Str("SELECT 1".into()));
        assert_eq!(rs[1].params[0].type_info.len(), 8);
        assert_eq!(parse(&b).unwrap(), rs[0], "parse: the first");
        let mut no_exec = b.clone();
        no_exec[15] = 0xFE;
        assert!(parse_all(&no_exec).is_err());
        let mut stray = b.clone();
        stray.push(0x00);
        assert!(parse_all(&stray).is_err());
        assert!(parse_all(&b[..b.len() - 1]).is_err(), "cut short");
    }

    #[test]
    fn a_named_procedure_and_malformed_input() {
        let mut b = vec![13, 0];
        b.extend(utf16("sp_executesql"));
        b.extend([0, 0]);
        assert_eq!(parse(&b).unwrap().proc(), Some(proc_id::SP_EXECUTESQL));
        for bytes in [
            &[][..],
            &[0xFF, 0xFF, 10][..],
            &[0xFF, 0xFF, 10, 0, 0, 0, 5][..],
            &[0xFF, 0xFF, 10, 0, 0, 0, 0, 0, 0x99][..],
            &[
                0xFF, 0xFF, 10, 0, 0, 0, 0, 0, 0xE7, 0xFF, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0,
                0, 0, 0x10, 0, 0, 0,
            ][..],
        ] {
            assert!(parse(bytes).is_err(), "{bytes:?}");
        }
        let mut x: u64 = 99;
        for _ in 0..3000 {
            let bytes: Vec<u8> = (0..(x % 48))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = parse(&bytes);
            let _ = parse_all(&bytes);
        }
    }
}
