//! PRELOGIN: an option table (token, big-endian offset and length) ended
//! by 0xFF, then the options' data.

use super::{SERVER_VERSION, TdsError};

/// Option tokens.
pub mod option {
    pub const VERSION: u8 = 0x00;
    pub const ENCRYPTION: u8 = 0x01;
    pub const INSTOPT: u8 = 0x02;
    pub const THREADID: u8 = 0x03;
    pub const MARS: u8 = 0x04;
    pub const TERMINATOR: u8 = 0xFF;
}

/// ENCRYPTION values.
pub mod encrypt {
    pub const OFF: u8 = 0x00;
    pub const ON: u8 = 0x01;
    pub const NOT_SUP: u8 = 0x02;
    pub const REQ: u8 = 0x03;
}

/// The most options a PRELOGIN may list.
pub const OPTIONS_MAX: usize = 64;

/// What a client's PRELOGIN says (unknown options are skipped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreLogin {
    /// Major, minor, build, sub-build.
    pub version: Option<(u8, u8, u16, u16)>,
    pub encryption: Option<u8>,
    /// The instance name, without its NUL.
    pub instance: Option<Vec<u8>>,
    pub thread_id: Option<u32>,
    pub mars: Option<u8>,
}

impl PreLogin {
    /// Whether the client requires encryption (ENCRYPT_ON or ENCRYPT_REQ;
    /// the 0x80 client-certificate bit aside).
    pub fn requires_encryption(&self) -> bool {
        matches!(
            self.encryption.map(|e| e & 0x7F),
            Some(encrypt::ON | encrypt::REQ)
        )
    }
}

fn bad(why: impl Into<String>) -> TdsError {
    TdsError::malformed("PRELOGIN", why)
}

/// Parses a client's PRELOGIN payload; every offset and length is checked.
pub fn parse(payload: &[u8]) -> Result<PreLogin, TdsError> {
    let mut p = PreLogin::default();
    let mut at = 0;
    for n in 0.. {
        let Some(&token) = payload.get(at) else {
            return Err(bad("the option table has no terminator"));
        };
        if token == option::TERMINATOR {
            return Ok(p);
        }
        if n >= OPTIONS_MAX {
            return Err(bad(format!("more than {OPTIONS_MAX} options")));
        }
        let e = payload
            .get(at + 1..at + 5)
            .ok_or_else(|| bad("an option entry is cut short"))?;
        let off = usize::from(u16::from_be_bytes([e[0], e[1]]));
        let len = usize::from(u16::from_be_bytes([e[2], e[3]]));
        let data = payload
            .get(off..off + len)
            .ok_or_else(|| bad(format!("option 0x{token:02x} points outside the message")))?;
        at += 5;
        match token {
            option::VERSION if len >= 6 => {
                p.version = Some((
                    data[0],
                    data[1],
                    u16::from_be_bytes([data[2], data[3]]),
                    u16::from_be_bytes([data[4], data[5]]),
                ))
            }
            option::ENCRYPTION if len >= 1 => p.encryption = Some(data[0]),
            option::INSTOPT => {
                let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
                p.instance = Some(data[..end].to_vec());
            }
            option::THREADID if len >= 4 => {
                p.thread_id = Some(u32::from_be_bytes([data[0], data[1], data[2], data[3]]))
            }
            option::MARS if len >= 1 => p.mars = Some(data[0]),
            _ => {}
        }
    }
    unreachable!("the option loop returns")
}

/// The server's PRELOGIN answer: VERSION, ENCRYPTION `encryption`,
/// INSTOPT 0 (the instance matches), THREADID empty, MARS 0 (FreeTDS
/// falls back to TDS 7.1 when MARS is missing).
pub fn reply(encryption: u8) -> Vec<u8> {
    let (major, minor, build) = SERVER_VERSION;
    let b = build.to_be_bytes();
    let options: [(u8, Vec<u8>); 5] = [
        (option::VERSION, vec![major, minor, b[0], b[1], 0, 0]),
        (option::ENCRYPTION, vec![encryption]),
        (option::INSTOPT, vec![0]),
        (option::THREADID, vec![]),
        (option::MARS, vec![0]),
    ];
    let mut table = Vec::new();
    let mut data = Vec::new();
    let mut off = options.len() * 5 + 1;
    for (token, d) in &options {
        table.push(*token);
        table.extend_from_slice(&(off as u16).to_be_bytes());
        table.extend_from_slice(&(d.len() as u16).to_be_bytes());
        data.extend_from_slice(d);
        off += d.len();
    }
    table.push(option::TERMINATOR);
    table.extend(data);
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PRELOGIN as pytds sends it (VERSION, ENCRYPTION NOT_SUP, INSTOPT
    /// "MSSQLServer", THREADID, MARS).
    fn client(encryption: u8) -> Vec<u8> {
        let opts: [(u8, Vec<u8>); 5] = [
            (0, vec![1, 17, 0, 1, 0, 0]),
            (1, vec![encryption]),
            (2, b"MSSQLServer\0".to_vec()),
            (3, vec![0, 0, 0x12, 0x34]),
            (4, vec![0]),
        ];
        let mut t = Vec::new();
        let mut d: Vec<u8> = Vec::new();
        let mut off = 26u16;
        for (k, v) in &opts {
            t.push(*k);
            t.extend(off.to_be_bytes());
            t.extend((v.len() as u16).to_be_bytes());
            d.extend(v);
            off += v.len() as u16;
        }
        t.push(0xFF);
        t.extend(d);
        t
    }

    #[test]
    fn parses_a_client_prelogin() {
        let p = parse(&client(encrypt::NOT_SUP)).unwrap();
        assert_eq!(p.version, Some((1, 17, 1, 0)));
        assert_eq!(p.encryption, Some(encrypt::NOT_SUP));
        assert_eq!(p.instance.as_deref(), Some(&b"MSSQLServer"[..]));
        assert_eq!(p.thread_id, Some(0x1234));
        assert_eq!(p.mars, Some(0));
        assert!(!p.requires_encryption());
        assert!(parse(&client(encrypt::ON)).unwrap().requires_encryption());
        assert!(parse(&client(encrypt::REQ)).unwrap().requires_encryption());
        assert!(!parse(&client(encrypt::OFF)).unwrap().requires_encryption());
    }

    #[test]
    fn the_reply_is_the_verified_one() {
        // tds-notes.md §4: the reply every tested client accepted.
        let want = [
            0x00, 0x00, 0x1A, 0x00, 0x06, 0x01, 0x00, 0x20, 0x00, 0x01, 0x02, 0x00, 0x21, 0x00,
            0x01, 0x03, 0x00, 0x22, 0x00, 0x00, 0x04, 0x00, 0x22, 0x00, 0x01, 0xFF, 0x10, 0x00,
            0x03, 0xE8, 0x00, 0x00, 0x02, 0x00, 0x00,
        ];
        assert_eq!(reply(encrypt::NOT_SUP), want);
        let p = parse(&reply(encrypt::NOT_SUP)).unwrap();
        assert_eq!(p.version, Some((16, 0, 1000, 0)));
        assert_eq!(p.mars, Some(0));
    }

    #[test]
    fn malformed_tables_are_errors() {
        // No terminator, an entry cut short, data out of range.
        for bytes in [
            &[][..],
            &[0x00, 0x00][..],
            &[0x01, 0x00, 0x10, 0x00, 0x01, 0xFF][..],
            &[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF][..],
        ] {
            assert!(parse(bytes).is_err(), "{bytes:?}");
        }
        // Too many options.
        let mut many = Vec::new();
        for _ in 0..100 {
            many.extend([0x09, 0, 0, 0, 0]);
        }
        many.push(0xFF);
        assert!(parse(&many).is_err());
        // Short option data is skipped, not read past.
        let p = parse(&[0x00, 0x00, 0x06, 0x00, 0x00, 0xFF]).unwrap();
        assert_eq!(p.version, None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u32 = 12345;
        for _ in 0..5000 {
            let n = (x % 40) as usize;
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = parse(&bytes);
        }
    }
}
