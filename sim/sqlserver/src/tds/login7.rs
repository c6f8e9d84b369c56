//! LOGIN7: a 94-byte fixed part (lengths, version, flags, then offset and
//! length pairs) and the variable data the pairs point into.

use super::{TdsError, utf16le};

/// The fixed part's size (TDS 7.2 and later).
pub const FIXED_LEN: usize = 94;
/// The most characters of any string field (SQL Server's names and
/// passwords are at most 128).
pub const FIELD_CHARS_MAX: usize = 128;

/// What a client's LOGIN7 says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Login7 {
    pub tds_version: u32,
    /// The packet size the client asks for (0: the server's default).
    pub packet_size: u32,
    pub option_flags1: u8,
    pub option_flags2: u8,
    pub type_flags: u8,
    pub option_flags3: u8,
    pub host: String,
    pub user: String,
    /// De-obfuscated.
    pub password: String,
    pub app: String,
    pub server: String,
    /// The client library's name (`ODBC`, `Python TDS Library`, …).
    pub library: String,
    pub language: String,
    pub database: String,
    /// Integrated authentication asked for (SSPI data, or the flag).
    pub sspi: bool,
}

fn bad(why: impl Into<String>) -> TdsError {
    TdsError::malformed("LOGIN7", why)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The bytes of the string field whose (offset, characters) pair is at
/// `pair`, checked against the message and [`FIELD_CHARS_MAX`].
fn field<'a>(b: &'a [u8], pair: usize, name: &str) -> Result<&'a [u8], TdsError> {
    let off = usize::from(u16_at(b, pair));
    let chars = usize::from(u16_at(b, pair + 2));
    if chars > FIELD_CHARS_MAX {
        return Err(bad(format!(
            "{name} of {chars} characters (at most {FIELD_CHARS_MAX})"
        )));
    }
    if chars == 0 {
        return Ok(&[]);
    }
    b.get(off..off + 2 * chars)
        .ok_or_else(|| bad(format!("{name} points outside the message")))
}

/// Every (offset, length) pair of the fixed part lies within the message,
/// empty ones included (their offsets point at most at its end), and so
/// does the feature extension's block when fExtension is set: a LOGIN7
/// that says otherwise is refused, not partly read.
fn check_ranges(b: &[u8]) -> Result<(), TdsError> {
    // (pair, bytes per unit, name): characters for strings, bytes for the
    // extension and SSPI.
    const PAIRS: [(usize, usize, &str); 12] = [
        (36, 2, "HostName"),
        (40, 2, "UserName"),
        (44, 2, "Password"),
        (48, 2, "AppName"),
        (52, 2, "ServerName"),
        (56, 1, "Extension"),
        (60, 2, "CltIntName"),
        (64, 2, "Language"),
        (68, 2, "Database"),
        (78, 1, "SSPI"),
        (82, 2, "AtchDBFile"),
        (86, 2, "ChangePassword"),
    ];
    for (pair, unit, name) in PAIRS {
        let off = usize::from(u16_at(b, pair));
        let end = off + unit * usize::from(u16_at(b, pair + 2));
        if end > b.len() {
            return Err(bad(format!(
                "{name} (offset {off}, ending at {end}) lies outside the message of {} bytes",
                b.len()
            )));
        }
    }
    if b[27] & 0x10 != 0 {
        let at = usize::from(u16_at(b, 56));
        if usize::from(u16_at(b, 58)) < 4 {
            return Err(bad("fExtension set without the 4-byte FeatureExt offset"));
        }
        let block = usize::try_from(u32_at(b, at)).unwrap_or(usize::MAX);
        if block > b.len() {
            return Err(bad(format!(
                "its FeatureExt block (offset {block}) lies outside the message of {} bytes",
                b.len()
            )));
        }
    }
    Ok(())
}

/// Undoes the password obfuscation: each byte XOR 0xA5, then its nibbles
/// swapped (the client swapped, then XORed).
pub fn unscramble(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| (b ^ 0xA5).rotate_left(4)).collect()
}

/// The obfuscation a client applies (for tests and clients).
pub fn scramble(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| b.rotate_left(4) ^ 0xA5).collect()
}

/// Parses a LOGIN7 payload; every offset and length is checked.
pub fn parse(payload: &[u8]) -> Result<Login7, TdsError> {
    if payload.len() < FIXED_LEN {
        return Err(bad(format!(
            "{} bytes, shorter than the fixed part ({FIXED_LEN})",
            payload.len()
        )));
    }
    let declared = usize::try_from(u32_at(payload, 0)).unwrap_or(usize::MAX);
    if declared > payload.len() || declared < FIXED_LEN {
        return Err(bad(format!(
            "its length field says {declared} bytes, the message has {}",
            payload.len()
        )));
    }
    let b = &payload[..declared];
    check_ranges(b)?;
    let text = |pair, name| field(b, pair, name).map(utf16le);
    let sspi_len = u16_at(b, 80);
    Ok(Login7 {
        tds_version: u32_at(b, 4),
        packet_size: u32_at(b, 8),
        option_flags1: b[24],
        option_flags2: b[25],
        type_flags: b[26],
        option_flags3: b[27],
        host: text(36, "HostName")?,
        user: text(40, "UserName")?,
        password: utf16le(&unscramble(field(b, 44, "Password")?)),
        app: text(48, "AppName")?,
        server: text(52, "ServerName")?,
        library: text(60, "CltIntName")?,
        language: text(64, "Language")?,
        database: text(68, "Database")?,
        sspi: sspi_len != 0 || b[25] & 0x80 != 0,
    })
}

/// A LOGIN7 payload for `user`, `password` and `database` (TDS 7.4, packet
/// size 4096): what a minimal client sends (tests and clients).
pub fn build(user: &str, password: &str, database: &str) -> Vec<u8> {
    let enc = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect() };
    let fields: [(usize, Vec<u8>); 9] = [
        (36, enc("host")),
        (40, enc(user)),
        (44, scramble(&enc(password))),
        (48, enc("vdisim-test")),
        (52, enc("127.0.0.1")),
        (60, enc("vdisim")),
        (64, Vec::new()),
        (68, enc(database)),
        (82, Vec::new()),
    ];
    let mut b = vec![0u8; FIXED_LEN];
    b[4..8].copy_from_slice(&super::TDS_74.to_le_bytes());
    b[8..12].copy_from_slice(&4096u32.to_le_bytes());
    b[24] = 0xE0;
    b[25] = 0x03;
    let mut data = Vec::new();
    for (pair, bytes) in &fields {
        let off = (FIXED_LEN + data.len()) as u16;
        b[*pair..*pair + 2].copy_from_slice(&off.to_le_bytes());
        b[*pair + 2..*pair + 4].copy_from_slice(&((bytes.len() / 2) as u16).to_le_bytes());
        data.extend_from_slice(bytes);
    }
    b.extend(data);
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let l = parse(&build("sa", "Secr3t!", "sales")).unwrap();
        assert_eq!(l.tds_version, super::super::TDS_74);
        assert_eq!(l.packet_size, 4096);
        assert_eq!(l.user, "sa");
        assert_eq!(l.password, "Secr3t!");
        assert_eq!(l.database, "sales");
        assert_eq!(l.library, "vdisim");
        assert!(!l.sspi);
    }

    #[test]
    fn the_obfuscation_is_the_specs() {
        // MS-TDS 2.2.6.4: 'a' (0x61 0x00) → 0xB3 0xA5.
        assert_eq!(scramble(&[0x61, 0x00]), vec![0xB3, 0xA5]);
        assert_eq!(unscramble(&[0xB3, 0xA5]), vec![0x61, 0x00]);
        for b in 0..=255u8 {
            assert_eq!(unscramble(&scramble(&[b])), vec![b]);
        }
    }

    #[test]
    fn malformed_logins_are_errors() {
        let good = build("sa", "pw", "");
        // Too short; a length field beyond the message or below the fixed part.
        assert!(parse(&good[..50]).is_err());
        let mut l = good.clone();
        l[0..4].copy_from_slice(&10_000u32.to_le_bytes());
        assert!(parse(&l).is_err());
        l[0..4].copy_from_slice(&10u32.to_le_bytes());
        assert!(parse(&l).is_err());
        // A user name pointing outside the message.
        let mut l = good.clone();
        l[40..42].copy_from_slice(&0xFFF0u16.to_le_bytes());
        assert!(parse(&l).is_err());
        // A field longer than 128 characters.
        let mut l = good.clone();
        l[42..44].copy_from_slice(&129u16.to_le_bytes());
        assert!(parse(&l).is_err());
        // An empty field, the SSPI block or the change-password field
        // pointing past the end.
        for (at, v) in [(64, 0xFFF0u16), (78, 0xFFF0), (86, 0xFFF0)] {
            let mut l = good.clone();
            l[at..at + 2].copy_from_slice(&v.to_le_bytes());
            if at != 64 {
                l[at + 2..at + 4].copy_from_slice(&1u16.to_le_bytes());
            }
            assert!(parse(&l).is_err(), "{at}");
        }
        // fExtension: its offset DWORD out of range, or missing.
        let mut l = good.clone();
        l[27] |= 0x10;
        assert!(parse(&l).is_err(), "no FeatureExt offset");
        let n = l.len() as u16;
        l.extend(0xFFFF_u32.to_le_bytes());
        l[0..4].copy_from_slice(&u32::from(n + 4).to_le_bytes());
        l[56..58].copy_from_slice(&n.to_le_bytes());
        l[58..60].copy_from_slice(&4u16.to_le_bytes());
        assert!(parse(&l).is_err(), "FeatureExt beyond the end");
        let end = u32::from(n + 4);
        l[usize::from(n)..].copy_from_slice(&end.to_le_bytes());
        assert!(parse(&l).is_ok(), "FeatureExt at the end (empty)");
        // SSPI asked for.
        let mut l = good;
        l[25] |= 0x80;
        assert!(parse(&l).unwrap().sspi);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let base = build("user", "password", "db");
        let mut x: u64 = 7;
        for _ in 0..5000 {
            let mut b = base.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % b.len();
                b[i] = (x >> 32) as u8;
            }
            b.truncate((x as usize >> 8) % (base.len() + 1));
            let _ = parse(&b);
        }
    }
}
