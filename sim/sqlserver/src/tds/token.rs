//! The tokens a server sends: LOGINACK, ENVCHANGE, INFO, ERROR, DONE.
//! Each encoder appends to a response buffer.

/// Token ids.
pub mod id {
    pub const RETURNSTATUS: u8 = 0x79;
    pub const ERROR: u8 = 0xAA;
    pub const INFO: u8 = 0xAB;
    pub const RETURNVALUE: u8 = 0xAC;
    pub const LOGINACK: u8 = 0xAD;
    pub const ENVCHANGE: u8 = 0xE3;
    pub const DONE: u8 = 0xFD;
    pub const DONEPROC: u8 = 0xFE;
    pub const DONEINPROC: u8 = 0xFF;
}

/// ENVCHANGE types.
pub mod env {
    pub const DATABASE: u8 = 1;
    pub const LANGUAGE: u8 = 2;
    pub const PACKET_SIZE: u8 = 4;
    pub const COLLATION: u8 = 7;
    pub const BEGIN_TRAN: u8 = 8;
    pub const COMMIT_TRAN: u8 = 9;
    pub const ROLLBACK_TRAN: u8 = 10;
    pub const RESET_ACK: u8 = 18;
}

/// DONE status bits.
pub mod done {
    pub const FINAL: u16 = 0x0000;
    pub const MORE: u16 = 0x0001;
    pub const ERROR: u16 = 0x0002;
    pub const INXACT: u16 = 0x0004;
    pub const COUNT: u16 = 0x0010;
    pub const ATTN: u16 = 0x0020;
    /// DONEPROC of an RPC that is not its message's last.
    pub const RPC_IN_BATCH: u16 = 0x0080;
}

/// SQL_Latin1_General_CP1_CI_AS, the collation drivers expect from a
/// default SQL Server install.
pub const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

/// `s` as UTF-16 code units, at most `max` (a surrogate pair is not split).
fn units(s: &str, max: usize) -> Vec<u16> {
    let mut u: Vec<u16> = s.encode_utf16().take(max).collect();
    if u.len() == max && u.last().is_some_and(|c| (0xD800..0xDC00).contains(c)) {
        u.pop();
    }
    u
}

/// B_VARCHAR: a 1-byte length in characters, then UTF-16LE (at most 255).
fn b_varchar(out: &mut Vec<u8>, s: &str) {
    let u = units(s, 255);
    out.push(u.len() as u8);
    out.extend(u.iter().flat_map(|c| c.to_le_bytes()));
}

/// US_VARCHAR: a 2-byte length in characters, then UTF-16LE (at most
/// 65535; a message text is cut at 4000 as SQL Server's are shorter).
fn us_varchar(out: &mut Vec<u8>, s: &str) {
    let u = units(s, 4000);
    out.extend((u.len() as u16).to_le_bytes());
    out.extend(u.iter().flat_map(|c| c.to_le_bytes()));
}

/// Appends a token with a 2-byte length after its id: `body` writes
/// what the length counts.
fn with_length(out: &mut Vec<u8>, token: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(token);
    let at = out.len();
    out.extend([0, 0]);
    body(out);
    let n = u16::try_from(out.len() - at - 2).unwrap_or(u16::MAX);
    out[at..at + 2].copy_from_slice(&n.to_le_bytes());
}

/// ENVCHANGE with B_VARCHAR values (database, language, packet size).
pub fn env_change(out: &mut Vec<u8>, kind: u8, new: &str, old: &str) {
    with_length(out, id::ENVCHANGE, |o| {
        o.push(kind);
        b_varchar(o, new);
        b_varchar(o, old);
    });
}

/// ENVCHANGE with B_VARBYTE values (collation, reset acknowledgement).
pub fn env_change_bytes(out: &mut Vec<u8>, kind: u8, new: &[u8], old: &[u8]) {
    with_length(out, id::ENVCHANGE, |o| {
        o.push(kind);
        o.push(new.len().min(255) as u8);
        o.extend_from_slice(&new[..new.len().min(255)]);
        o.push(old.len().min(255) as u8);
        o.extend_from_slice(&old[..old.len().min(255)]);
    });
}

/// An INFO or ERROR token's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub number: u32,
    pub state: u8,
    pub class: u8,
    pub text: &'a str,
    pub server: &'a str,
    /// Empty for ad-hoc SQL.
    pub procedure: &'a str,
    /// 1-based within the batch; 0 when none applies.
    pub line: u32,
}

impl Message<'_> {
    /// Class 11 and above are errors; 10 and below informational.
    pub fn is_error(&self) -> bool {
        self.class > 10
    }
}

/// INFO (class ≤ 10) or ERROR (class ≥ 11).
pub fn message(out: &mut Vec<u8>, m: &Message) {
    let token = if m.is_error() { id::ERROR } else { id::INFO };
    with_length(out, token, |o| {
        o.extend(m.number.to_le_bytes());
        o.push(m.state);
        o.push(m.class);
        us_varchar(o, m.text);
        b_varchar(o, m.server);
        b_varchar(o, m.procedure);
        o.extend(m.line.to_le_bytes());
    });
}

/// LOGINACK: interface 1 (SQL), the TDS version (big-endian on the wire),
/// the program name and its version.
pub fn login_ack(out: &mut Vec<u8>, tds_version: u32, program: &str, version: [u8; 4]) {
    with_length(out, id::LOGINACK, |o| {
        o.push(1);
        o.extend(tds_version.to_be_bytes());
        b_varchar(o, program);
        o.extend(version);
    });
}

/// RETURNSTATUS: a procedure's return value.
pub fn return_status(out: &mut Vec<u8>, value: i32) {
    out.push(id::RETURNSTATUS);
    out.extend(value.to_le_bytes());
}

/// RETURNVALUE of an INT OUTPUT parameter (the handle `sp_prepexec` and
/// `sp_prepare` return): ordinal, name, status 0x01, INTN(4).
pub fn return_value_int(out: &mut Vec<u8>, ordinal: u16, name: &str, value: i32) {
    out.push(id::RETURNVALUE);
    out.extend(ordinal.to_le_bytes());
    b_varchar(out, name);
    out.push(0x01);
    out.extend(0u32.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend([0x26, 4, 4]);
    out.extend(value.to_le_bytes());
}

/// RETURNVALUE of an OUTPUT parameter: its ordinal, name and value in the
/// TYPE_INFO the client sent it with (strings cut to the type's length;
/// an unknown or fixed type's NULL as zero bytes).
pub fn return_value(
    out: &mut Vec<u8>,
    ordinal: u16,
    name: &str,
    type_info: &[u8],
    value: &super::rpc::Value,
) {
    use super::rpc::Value;
    out.push(id::RETURNVALUE);
    out.extend(ordinal.to_le_bytes());
    b_varchar(out, name);
    out.push(0x01);
    out.extend(0u32.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(type_info);
    let ty = type_info.first().copied().unwrap_or(0);
    let int = match value {
        Value::Int(n) => Some(*n),
        Value::Str(s) => s.trim().parse().ok(),
        Value::Null => None,
    };
    let text = match value {
        Value::Int(n) => Some(n.to_string()),
        Value::Str(s) => Some(s.clone()),
        Value::Null => None,
    };
    match ty {
        0x26 | 0x68 => {
            let n = usize::from(type_info.get(1).copied().unwrap_or(4)).min(8);
            match int {
                Some(v) => {
                    out.push(n as u8);
                    out.extend(&v.to_le_bytes()[..n]);
                }
                None => out.push(0),
            }
        }
        0xE7 | 0xEF | 0xA7 | 0xAF => {
            let wide = matches!(ty, 0xE7 | 0xEF);
            let max = type_info
                .get(1..3)
                .map_or(0, |m| u16::from_le_bytes([m[0], m[1]]));
            let bytes = text.map(|t| -> Vec<u8> {
                if wide {
                    t.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
                } else {
                    t.chars().map(|c| u8::try_from(c).unwrap_or(b'?')).collect()
                }
            });
            if max == 0xFFFF {
                match bytes {
                    None => out.extend([0xFF; 8]),
                    Some(b) => {
                        out.extend((b.len() as u64).to_le_bytes());
                        if !b.is_empty() {
                            out.extend((b.len() as u32).to_le_bytes());
                            out.extend(&b);
                        }
                        out.extend(0u32.to_le_bytes());
                    }
                }
            } else {
                match bytes {
                    None => out.extend([0xFF, 0xFF]),
                    Some(mut b) => {
                        b.truncate(usize::from(max) & !usize::from(wide));
                        out.extend((b.len() as u16).to_le_bytes());
                        out.extend(&b);
                    }
                }
            }
        }
        _ => {
            // Fixed-length integers and bit.
            let n = match ty {
                0x30 | 0x32 => 1,
                0x34 => 2,
                0x38 => 4,
                0x7F => 8,
                _ => 0,
            };
            out.extend(&int.unwrap_or(0).to_le_bytes()[..n]);
        }
    }
}

/// DONE, DONEPROC or DONEINPROC: status, current command, row count.
pub fn done(out: &mut Vec<u8>, token: u8, status: u16, cur_cmd: u16, rows: u64) {
    out.push(token);
    out.extend(status.to_le_bytes());
    out.extend(cur_cmd.to_le_bytes());
    out.extend(rows.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect()
    }

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
    }

    /// The fixed pieces of the login response, as tds-notes.md §7 shows
    /// them verified on the wire.
    #[test]
    fn login_pieces_match_the_verified_bytes() {
        let mut o = Vec::new();
        env_change(&mut o, env::DATABASE, "master", "master");
        assert_eq!(
            o,
            hex(
                "E3 1B 00 01 06 6D 00 61 00 73 00 74 00 65 00 72 00 06 6D 00 61 00 73 00 74 00 65 00 72 00"
            )
        );
        let mut o = Vec::new();
        env_change_bytes(&mut o, env::COLLATION, &COLLATION, &[]);
        assert_eq!(o, hex("E3 08 00 07 05 09 04 D0 00 34 00"));
        let mut o = Vec::new();
        env_change(&mut o, env::LANGUAGE, "us_english", "");
        assert_eq!(
            o,
            hex("E3 17 00 02 0A 75 00 73 00 5F 00 65 00 6E 00 67 00 6C 00 69 00 73 00 68 00 00")
        );
        let mut o = Vec::new();
        env_change(&mut o, env::PACKET_SIZE, "4096", "4096");
        assert_eq!(
            o,
            hex("E3 13 00 04 04 34 00 30 00 39 00 36 00 04 34 00 30 00 39 00 36 00")
        );
        let mut o = Vec::new();
        login_ack(
            &mut o,
            super::super::TDS_74,
            "Microsoft SQL Server",
            [16, 0, 3, 0xE8],
        );
        let mut want = hex("AD 32 00 01 74 00 00 04 14");
        want.extend(utf16("Microsoft SQL Server"));
        want.extend([0x10, 0x00, 0x03, 0xE8]);
        assert_eq!(o, want);
        let mut o = Vec::new();
        done(&mut o, id::DONE, done::FINAL, 0, 0);
        assert_eq!(o, hex("FD 00 00 00 00 00 00 00 00 00 00 00 00"));
        let mut o = Vec::new();
        env_change_bytes(&mut o, env::RESET_ACK, &[], &[]);
        assert_eq!(o, hex("E3 03 00 12 00 00"));
        // tds-notes.md §8: RETURNSTATUS 0 and the verified RETURNVALUE.
        let mut o = Vec::new();
        return_status(&mut o, 0);
        return_value_int(&mut o, 0, "", 1);
        assert_eq!(
            o,
            hex("79 00 00 00 00 AC 00 00 00 01 00 00 00 00 01 00 26 04 04 01 00 00 00")
        );
    }

    /// tds-notes.md §8's ERROR 208 example.
    #[test]
    fn an_error_token() {
        let mut o = Vec::new();
        let m = Message {
            number: 208,
            state: 1,
            class: 16,
            text: "Invalid object name 'x'.",
            server: "MOCKSRV",
            procedure: "",
            line: 1,
        };
        message(&mut o, &m);
        let mut want = hex("AA 4C 00 D0 00 00 00 01 10 18 00");
        want.extend(utf16("Invalid object name 'x'."));
        want.push(7);
        want.extend(utf16("MOCKSRV"));
        want.extend(hex("00 01 00 00 00"));
        assert_eq!(o, want);
        // Class 10 and below is an INFO.
        let mut o = Vec::new();
        message(&mut o, &Message { class: 0, ..m });
        assert_eq!(o[0], id::INFO);
    }

    /// RETURNVALUE in the types clients send OUTPUT parameters with.
    #[test]
    fn return_values_in_the_clients_types() {
        use super::super::rpc::Value;
        let rv = |ti: &[u8], v: Value| {
            let mut o = Vec::new();
            return_value(&mut o, 3, "@p", ti, &v);
            // Token, ordinal, name (@p), status, user type, flags: 15 bytes.
            assert_eq!(&o[..4], &[id::RETURNVALUE, 3, 0, 2]);
            o[15..].to_vec()
        };
        // INTN(4) 7; INTN(8) NULL.
        assert_eq!(rv(&[0x26, 4], Value::Int(7)), [0x26, 4, 4, 7, 0, 0, 0]);
        assert_eq!(rv(&[0x26, 8], Value::Null), [0x26, 8, 0]);
        // NVARCHAR(10): length in bytes, UTF-16LE, cut to the type.
        let coll = [0x09, 0x04, 0xD0, 0x00, 0x34];
        let mut ti = vec![0xE7, 20, 0];
        ti.extend(coll);
        let got = rv(&ti, Value::Str("abcdefghijkl".into()));
        assert_eq!(&got[8..10], &20u16.to_le_bytes());
        assert_eq!(got.len(), 8 + 2 + 20);
        // NVARCHAR(MAX): PLP, one chunk then the terminator; NULL.
        let mut ti = vec![0xE7, 0xFF, 0xFF];
        ti.extend(coll);
        let got = rv(&ti, Value::Str("ab".into()));
        assert_eq!(
            &got[8..],
            &[
                4, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, b'a', 0, b'b', 0, 0, 0, 0, 0
            ]
        );
        assert_eq!(&rv(&ti, Value::Null)[8..], &[0xFF; 8]);
        // VARCHAR(3) from an integer; fixed INT4.
        let mut ti = vec![0xA7, 3, 0];
        ti.extend(coll);
        assert_eq!(&rv(&ti, Value::Int(42))[8..], &[2, 0, b'4', b'2']);
        assert_eq!(rv(&[0x38], Value::Int(-1)), [0x38, 0xFF, 0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn long_strings_are_cut_not_corrupted() {
        let mut o = Vec::new();
        env_change(&mut o, env::DATABASE, &"x".repeat(300), "");
        // 1 type + 1 + 255*2 + 1
        assert_eq!(u16::from_le_bytes([o[1], o[2]]), 1 + 1 + 510 + 1);
        assert_eq!(o[4], 255);
        // A surrogate pair at the cut is dropped whole.
        let s = format!("{}😀", "a".repeat(254));
        let mut o = Vec::new();
        env_change(&mut o, env::DATABASE, &s, "");
        assert_eq!(o[4], 254);
    }
}
