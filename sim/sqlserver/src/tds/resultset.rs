//! Result sets as TDS sends them: the column types and cells of the
//! answered queries ([`super::query`], [`super::tables`]) and their
//! encoding (COLMETADATA, ROW, DONE).

use super::token;

/// A result set's column type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// INT (INTN(4)).
    Int,
    /// TINYINT (INTN(1)).
    TinyInt,
    /// NVARCHAR of at most this many characters.
    NVarChar(u16),
    /// CHAR of this many single-byte characters (BIGCHAR).
    Char(u16),
    /// BIT (BITN).
    Bit,
    /// DATETIME (DATETIMN(8)).
    DateTime,
    /// NUMERIC(p, 0) (DECIMALN), p at most 28.
    Numeric(u8),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Str(String),
    Bit(bool),
    /// Unix milliseconds.
    DateTime(u64),
    Numeric(u64),
}

impl Cell {
    /// The order of ORDER BY: NULL first, then by value (text without
    /// regard to ASCII case).
    pub fn order(&self, other: &Cell) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (self, other) {
            (Cell::Null, Cell::Null) => Ordering::Equal,
            (Cell::Null, _) => Ordering::Less,
            (_, Cell::Null) => Ordering::Greater,
            (Cell::Int(a), Cell::Int(b)) => a.cmp(b),
            (Cell::Str(a), Cell::Str(b)) => a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase()),
            (Cell::Bit(a), Cell::Bit(b)) => a.cmp(b),
            (Cell::DateTime(a), Cell::DateTime(b)) | (Cell::Numeric(a), Cell::Numeric(b)) => {
                a.cmp(b)
            }
            _ => Ordering::Equal,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<(String, Type)>,
    pub rows: Vec<Vec<Cell>>,
}

/// COLMETADATA, a ROW per row, then DONE with the row count (COUNT,
/// CurCmd SELECT).
pub fn encode(o: &mut Vec<u8>, rs: &ResultSet) {
    encode_rows(o, rs);
    token::done(
        o,
        token::id::DONE,
        token::done::COUNT,
        0xC1,
        rs.rows.len() as u64,
    );
}

/// COLMETADATA and a ROW per row (the caller ends them: DONE, or
/// DONEINPROC inside an RPC).
pub fn encode_rows(o: &mut Vec<u8>, rs: &ResultSet) {
    o.push(0x81);
    o.extend((rs.columns.len() as u16).to_le_bytes());
    for (name, ty) in &rs.columns {
        o.extend(0u32.to_le_bytes());
        // Nullable, read-only.
        o.extend(1u16.to_le_bytes());
        type_info(o, *ty);
        let u: Vec<u16> = name.encode_utf16().take(128).collect();
        o.push(u.len() as u8);
        o.extend(u.iter().flat_map(|c| c.to_le_bytes()));
    }
    for row in &rs.rows {
        o.push(0xD1);
        for (cell, (_, ty)) in row.iter().zip(&rs.columns) {
            value(o, cell, *ty);
        }
    }
}

/// DECIMALN's length for precision `p`: a sign byte and the magnitude.
fn numeric_len(p: u8) -> u8 {
    match p {
        0..=9 => 5,
        10..=19 => 9,
        _ => 13,
    }
}

fn type_info(o: &mut Vec<u8>, ty: Type) {
    match ty {
        Type::Int => o.extend([0x26, 4]),
        Type::TinyInt => o.extend([0x26, 1]),
        Type::NVarChar(n) => {
            o.push(0xE7);
            o.extend((n * 2).to_le_bytes());
            o.extend(token::COLLATION);
        }
        Type::Char(n) => {
            o.push(0xAF);
            o.extend(n.to_le_bytes());
            o.extend(token::COLLATION);
        }
        Type::Bit => o.extend([0x68, 1]),
        Type::DateTime => o.extend([0x6F, 8]),
        Type::Numeric(p) => o.extend([0x6A, numeric_len(p), p.min(28), 0]),
    }
}

/// Days from 1900-01-01 (DATETIME's day 0) to 1970-01-01.
const DAYS_1900_TO_1970: i64 = 25_567;

/// DATETIME's days since 1900-01-01 and 1/300 s ticks since midnight,
/// rounded to the nearest tick as SQL Server rounds.
pub fn datetime(unix_ms: u64) -> (i32, u32) {
    let day_ms = 86_400_000u64;
    let mut days = (unix_ms / day_ms) as i64 + DAYS_1900_TO_1970;
    let mut ticks = ((unix_ms % day_ms) * 3 + 5) / 10;
    if ticks >= 300 * 86_400 {
        ticks = 0;
        days += 1;
    }
    (i32::try_from(days).unwrap_or(i32::MAX), ticks as u32)
}

fn value(o: &mut Vec<u8>, cell: &Cell, ty: Type) {
    match (cell, ty) {
        (Cell::Int(n), Type::Int) => {
            o.push(4);
            o.extend((*n as i32).to_le_bytes());
        }
        (Cell::Int(n), Type::TinyInt) => o.extend([1, *n as u8]),
        (Cell::Str(s), Type::NVarChar(max)) => {
            let u: Vec<u16> = s.encode_utf16().take(usize::from(max)).collect();
            o.extend(((u.len() * 2) as u16).to_le_bytes());
            o.extend(u.iter().flat_map(|c| c.to_le_bytes()));
        }
        (Cell::Str(s), Type::Char(n)) => {
            let b: Vec<u8> = s
                .chars()
                .map(|c| u8::try_from(c).unwrap_or(b'?'))
                .chain(std::iter::repeat(b' '))
                .take(usize::from(n))
                .collect();
            o.extend((b.len() as u16).to_le_bytes());
            o.extend(b);
        }
        (Cell::Bit(b), Type::Bit) => o.extend([1, u8::from(*b)]),
        (Cell::DateTime(ms), Type::DateTime) => {
            let (days, ticks) = datetime(*ms);
            o.push(8);
            o.extend(days.to_le_bytes());
            o.extend(ticks.to_le_bytes());
        }
        (Cell::Numeric(n), Type::Numeric(p)) => {
            let len = numeric_len(p);
            o.extend([len, 1]);
            let mag = u128::from(*n).to_le_bytes();
            o.extend(&mag[..usize::from(len - 1)]);
        }
        (_, Type::NVarChar(_) | Type::Char(_)) => o.extend([0xFF, 0xFF]),
        (_, _) => o.push(0),
    }
}
