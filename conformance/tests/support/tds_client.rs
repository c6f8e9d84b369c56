//! A minimal TDS 7.4 client for the `vdisim serve --tds` tests: plain
//! bytes over a TcpStream, written independently of the server's codec
//! (PRELOGIN, LOGIN7, SQL batches, RPC requests, and a reader of the tokens
//! the server sends).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

pub fn from_utf16(b: &[u8]) -> String {
    let u: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&u).unwrap()
}

/// One message of type `kind` in packets of at most 4096 bytes.
pub fn packets(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[]]
    } else {
        payload.chunks(4088).collect()
    };
    for (i, c) in chunks.iter().enumerate() {
        let eom = u8::from(i + 1 == chunks.len());
        let len = (c.len() + 8) as u16;
        out.extend([kind, eom]);
        out.extend(len.to_be_bytes());
        out.extend([0, 0, (i + 1) as u8, 0]);
        out.extend_from_slice(c);
    }
    out
}

/// Reads one server message: (packet type, SPID, payload); `None` if the
/// server closed the connection first.
pub fn read_reply(s: &mut TcpStream) -> Option<(u8, u16, Vec<u8>)> {
    let mut payload = Vec::new();
    loop {
        let mut h = [0u8; 8];
        if s.read_exact(&mut h).is_err() {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        assert!((8..=32767).contains(&len), "packet length {len}");
        let at = payload.len();
        payload.resize(at + len - 8, 0);
        s.read_exact(&mut payload[at..]).unwrap();
        if h[1] & 1 != 0 {
            return Some((h[0], u16::from_be_bytes([h[4], h[5]]), payload));
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// INFO (false) or ERROR (true).
    Msg {
        error: bool,
        number: u32,
        state: u8,
        class: u8,
        text: String,
        server: String,
        line: u32,
    },
    Env {
        kind: u8,
        new: Vec<u8>,
        old: Vec<u8>,
    },
    LoginAck {
        interface: u8,
        version: u32,
        program: String,
    },
    Done {
        token: u8,
        status: u16,
        cur_cmd: u16,
        rows: u64,
    },
    ReturnStatus(i32),
    /// COLMETADATA: each column's type byte and name.
    Columns(Vec<(u8, String)>),
    /// ROW: each value as text (`None`: NULL).
    Row(Vec<Option<String>>),
    /// RETURNVALUE of an INTN parameter: name, value.
    ReturnValue(String, i32),
}

pub fn b_varchar(b: &[u8], at: &mut usize) -> String {
    let n = usize::from(b[*at]) * 2;
    let s = from_utf16(&b[*at + 1..*at + 1 + n]);
    *at += 1 + n;
    s
}

/// Parses a reply's token stream (only the tokens this server sends).
pub fn tokens(b: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut types: Vec<u8> = Vec::new();
    while at < b.len() {
        let t = b[at];
        if t == 0x81 {
            let (cols, next) = columns(b, at);
            types = cols.iter().map(|c| c.0).collect();
            out.push(Tok::Columns(cols));
            at = next;
            continue;
        }
        if t == 0xD1 {
            let (r, next) = row(b, at, &types);
            out.push(Tok::Row(r));
            at = next;
            continue;
        }
        if matches!(t, 0xFD..=0xFF) {
            let f = &b[at + 1..at + 13];
            out.push(Tok::Done {
                token: t,
                status: u16::from_le_bytes([f[0], f[1]]),
                cur_cmd: u16::from_le_bytes([f[2], f[3]]),
                rows: u64::from_le_bytes(f[4..12].try_into().unwrap()),
            });
            at += 13;
            continue;
        }
        if t == 0x79 {
            let v = i32::from_le_bytes(b[at + 1..at + 5].try_into().unwrap());
            out.push(Tok::ReturnStatus(v));
            at += 5;
            continue;
        }
        if t == 0xAC {
            // Ordinal, name, status, user type, flags, INTN(4), value.
            let mut p = at + 3;
            let name = b_varchar(b, &mut p);
            assert_eq!(&b[p..p + 10], &[1, 0, 0, 0, 0, 1, 0, 0x26, 4, 4]);
            let v = i32::from_le_bytes(b[p + 10..p + 14].try_into().unwrap());
            out.push(Tok::ReturnValue(name, v));
            at = p + 14;
            continue;
        }
        let len = usize::from(u16::from_le_bytes([b[at + 1], b[at + 2]]));
        let body = &b[at + 3..at + 3 + len];
        out.push(match t {
            0xAA | 0xAB => {
                let tl = usize::from(u16::from_le_bytes([body[6], body[7]])) * 2;
                let mut p = 8 + tl;
                let server = b_varchar(body, &mut p);
                let _procedure = b_varchar(body, &mut p);
                Tok::Msg {
                    error: t == 0xAA,
                    number: u32::from_le_bytes(body[0..4].try_into().unwrap()),
                    state: body[4],
                    class: body[5],
                    text: from_utf16(&body[8..8 + tl]),
                    server,
                    line: u32::from_le_bytes(body[p..p + 4].try_into().unwrap()),
                }
            }
            0xE3 => {
                let kind = body[0];
                // B_VARCHAR values count characters, B_VARBYTE bytes.
                let unit = if matches!(kind, 7..=10 | 18) { 1 } else { 2 };
                let n = usize::from(body[1]) * unit;
                let new = body[2..2 + n].to_vec();
                let m = usize::from(body[2 + n]) * unit;
                let old = body[3 + n..3 + n + m].to_vec();
                assert_eq!(3 + n + m, len, "ENVCHANGE length");
                Tok::Env { kind, new, old }
            }
            0xAD => {
                let mut p = 5;
                let program = b_varchar(body, &mut p);
                assert_eq!(p + 4, len, "LOGINACK length");
                Tok::LoginAck {
                    interface: body[0],
                    version: u32::from_be_bytes(body[1..5].try_into().unwrap()),
                    program,
                }
            }
            other => panic!("unexpected token 0x{other:02x}"),
        });
        at += 3 + len;
    }
    out
}

/// COLMETADATA at `at`: count, then user type, flags, TYPE_INFO (INTN,
/// NVARCHAR, BIGCHAR, BITN, DATETIMN, DECIMALN), name per column; and
/// where the next token starts.
fn columns(b: &[u8], at: usize) -> (Vec<(u8, String)>, usize) {
    let n = usize::from(u16::from_le_bytes([b[at + 1], b[at + 2]]));
    let mut p = at + 3;
    let mut cols = Vec::new();
    for _ in 0..n {
        p += 6;
        let ty = b[p];
        p += match ty {
            0x26 | 0x68 | 0x6F => 2,
            0x6A => 4,
            0xE7 | 0xAF => 8,
            other => panic!("column type 0x{other:02x}"),
        };
        cols.push((ty, b_varchar(b, &mut p)));
    }
    (cols, p)
}

/// ROW at `at` for columns of `types`: each value as text (`None`: NULL;
/// DATETIME as `days:ticks`); and where the next token starts.
fn row(b: &[u8], at: usize, types: &[u8]) -> (Vec<Option<String>>, usize) {
    let mut p = at + 1;
    let mut row = Vec::new();
    for ty in types {
        if matches!(ty, 0xE7 | 0xAF) {
            let n = u16::from_le_bytes([b[p], b[p + 1]]);
            p += 2;
            if n == 0xFFFF {
                row.push(None);
            } else {
                let v = &b[p..p + usize::from(n)];
                row.push(Some(if *ty == 0xE7 {
                    from_utf16(v)
                } else {
                    v.iter().map(|&c| char::from(c)).collect()
                }));
                p += usize::from(n);
            }
            continue;
        }
        let n = usize::from(b[p]);
        let v = &b[p + 1..p + 1 + n];
        p += 1 + n;
        if n == 0 {
            row.push(None);
            continue;
        }
        row.push(Some(match ty {
            0x26 => {
                let mut x = [0u8; 8];
                x[..n].copy_from_slice(v);
                if n == 4 {
                    i32::from_le_bytes(v.try_into().unwrap()).to_string()
                } else {
                    i64::from_le_bytes(x).to_string()
                }
            }
            0x68 => v[0].to_string(),
            0x6F => format!(
                "{}:{}",
                i32::from_le_bytes(v[..4].try_into().unwrap()),
                u32::from_le_bytes(v[4..].try_into().unwrap())
            ),
            0x6A => {
                let mut x = [0u8; 16];
                x[..n - 1].copy_from_slice(&v[1..]);
                let m = u128::from_le_bytes(x);
                if v[0] == 1 {
                    m.to_string()
                } else {
                    format!("-{m}")
                }
            }
            other => panic!("value of type 0x{other:02x}"),
        }));
    }
    (row, p)
}

/// PRELOGIN with ENCRYPTION `enc` and MARS 0, as python-tds sends it.
pub fn prelogin(enc: u8) -> Vec<u8> {
    let mut p = vec![
        0x00, 0, 21, 0, 6, 0x01, 0, 27, 0, 1, 0x02, 0, 28, 0, 1, 0x04, 0, 29, 0, 1, 0xFF,
    ];
    p.extend([11, 0, 0, 0, 0, 0, enc, 0, 0]);
    p
}

/// LOGIN7 (TDS 7.4, packet size 4096) for `user`/`password`/`database`.
pub fn login7(user: &str, password: &str, database: &str) -> Vec<u8> {
    let scramble = |b: Vec<u8>| -> Vec<u8> { b.iter().map(|x| x.rotate_left(4) ^ 0xA5).collect() };
    let fields = [
        (36, utf16("testhost")),
        (40, utf16(user)),
        (44, scramble(utf16(password))),
        (48, utf16("serve_tds")),
        (52, utf16("127.0.0.1")),
        (60, utf16("test")),
        (64, Vec::new()),
        (68, utf16(database)),
    ];
    let mut b = vec![0u8; 94];
    b[4..8].copy_from_slice(&0x7400_0004u32.to_le_bytes());
    b[8..12].copy_from_slice(&4096u32.to_le_bytes());
    b[24] = 0xE0;
    b[25] = 0x03;
    let mut data = Vec::new();
    for (pair, v) in &fields {
        b[*pair..*pair + 2].copy_from_slice(&((94 + data.len()) as u16).to_le_bytes());
        b[*pair + 2..*pair + 4].copy_from_slice(&((v.len() / 2) as u16).to_le_bytes());
        data.extend_from_slice(v);
    }
    b.extend(data);
    let n = b.len() as u32;
    b[0..4].copy_from_slice(&n.to_le_bytes());
    b
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// PRELOGIN then LOGIN7; returns the login response's tokens.
pub fn login(s: &mut TcpStream, user: &str, password: &str, database: &str) -> Vec<Tok> {
    s.write_all(&packets(0x12, &prelogin(2))).unwrap();
    let (kind, _, reply) = read_reply(s).expect("a PRELOGIN reply");
    assert_eq!(kind, 4);
    // ENCRYPTION (2nd entry) answered NOT_SUP; MARS present.
    let enc_off = usize::from(u16::from_be_bytes([reply[6], reply[7]]));
    assert_eq!(reply[enc_off], 2, "ENCRYPT_NOT_SUP");
    assert!(reply.chunks(5).take(5).any(|e| e[0] == 4), "MARS answered");
    s.write_all(&packets(0x10, &login7(user, password, database)))
        .unwrap();
    let (kind, spid, reply) = read_reply(s).expect("a login response");
    assert_eq!(kind, 4);
    assert!(spid >= 51, "the session id is in the header: {spid}");
    tokens(&reply)
}

/// A SQL batch: ALL_HEADERS (transaction descriptor) + UTF-16LE text.
pub fn batch(s: &mut TcpStream, text: &str) -> Vec<Tok> {
    let mut p = vec![
        0x16, 0, 0, 0, 0x12, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    ];
    p.extend(utf16(text));
    s.write_all(&packets(0x01, &p)).unwrap();
    let (_, _, reply) = read_reply(s).expect("a batch answer");
    tokens(&reply)
}

pub fn messages(t: &[Tok]) -> Vec<(bool, u32)> {
    t.iter()
        .filter_map(|t| match t {
            Tok::Msg { error, number, .. } => Some((*error, *number)),
            _ => None,
        })
        .collect()
}

pub fn last_done(t: &[Tok]) -> (u16, u16) {
    match t.last() {
        Some(Tok::Done {
            token: 0xFD,
            status,
            cur_cmd,
            ..
        }) => (*status, *cur_cmd),
        other => panic!("a response ends with DONE: {other:?}"),
    }
}

pub fn logged_in(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    let t = login(&mut s, "sa", "Secr3t!", "sales");
    assert!(t.iter().any(|t| matches!(t, Tok::LoginAck { .. })), "{t:?}");
    s
}

/// An RPC request: ALL_HEADERS, the procedure id, options, then
/// parameters (name, status, TYPE_INFO, value).
pub fn rpc(s: &mut TcpStream, proc_id: u16, params: &[(&str, u8, Param)]) -> Vec<Tok> {
    rpcs(s, &[(proc_id, params)])
}

/// An RPC parameter: name, status (0x01 OUTPUT), value.
pub type RpcParam<'a> = (&'a str, u8, Param);

/// Several RPC requests in one message, separated by the batch flag 0xFF.
pub fn rpcs(s: &mut TcpStream, calls: &[(u16, &[RpcParam])]) -> Vec<Tok> {
    let mut p = vec![
        0x16, 0, 0, 0, 0x12, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    ];
    for (k, (proc_id, params)) in calls.iter().enumerate() {
        if k > 0 {
            p.push(0xFF);
        }
        rpc_body(&mut p, *proc_id, params);
    }
    s.write_all(&packets(0x03, &p)).unwrap();
    let (_, _, reply) = read_reply(s).expect("an RPC answer");
    tokens(&reply)
}

/// One RPC after ALL_HEADERS: the procedure id, options, parameters.
fn rpc_body(p: &mut Vec<u8>, proc_id: u16, params: &[(&str, u8, Param)]) {
    p.extend([0xFF, 0xFF]);
    p.extend(proc_id.to_le_bytes());
    p.extend([0, 0]);
    for (name, status, v) in params {
        p.push(name.encode_utf16().count() as u8);
        p.extend(utf16(name));
        p.push(*status);
        match v {
            // NVARCHAR(MAX) as PLP of unknown length (pytds, ODBC).
            Param::Text(t) => {
                p.extend([0xE7, 0xFF, 0xFF, 0x09, 0x04, 0xD0, 0x00, 0x34]);
                p.extend([0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
                let b = utf16(t);
                p.extend((b.len() as u32).to_le_bytes());
                p.extend(b);
                p.extend([0, 0, 0, 0]);
            }
            Param::Int(Some(n)) => {
                p.extend([0x26, 4, 4]);
                p.extend(n.to_le_bytes());
            }
            Param::Int(None) => p.extend([0x26, 4, 0]),
        }
    }
}

/// A transaction-manager request: ALL_HEADERS, the request type, its
/// payload.
pub fn tm(s: &mut TcpStream, request: u16, body: &[u8]) -> Vec<Tok> {
    let mut p = vec![
        0x16, 0, 0, 0, 0x12, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    ];
    p.extend(request.to_le_bytes());
    p.extend(body);
    s.write_all(&packets(0x0E, &p)).unwrap();
    let (_, _, reply) = read_reply(s).expect("a transaction-manager answer");
    tokens(&reply)
}

pub enum Param {
    Text(&'static str),
    Int(Option<i32>),
}

/// Reads one packet: (status, payload); `None` if the server closed the
/// connection first.
pub fn read_packet(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 8];
    s.read_exact(&mut h).ok()?;
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    assert!((8..=32767).contains(&len), "packet length {len}");
    let mut body = vec![0u8; len - 8];
    s.read_exact(&mut body).ok()?;
    Some((h[1], body))
}

/// Sends a SQL batch without waiting for its answer.
pub fn send_batch(s: &mut TcpStream, text: &str) {
    let mut p = vec![
        0x16, 0, 0, 0, 0x12, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    ];
    p.extend(utf16(text));
    s.write_all(&packets(0x01, &p)).unwrap();
}
