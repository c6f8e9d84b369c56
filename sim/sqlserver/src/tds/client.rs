//! A small blocking TDS 7.4 client: what `vdisim sqlcmd -S tcp:HOST,PORT`
//! and the `sqlserver` backend of the conformance harness speak to any TDS
//! server (`vdisim serve --tds`, a real SQL Server).
//!
//! It logs in with SQL authentication, runs SQL batches, sends an
//! ATTENTION, and reads the answer's tokens: INFO and ERROR messages
//! (both: a successful BACKUP's 3014 text is an INFO), ENVCHANGE, DONE
//! and its variants, and result sets whose columns are of the common
//! types (integers, bit, character and binary strings, GUIDs, decimals
//! and SQL_VARIANT holding one of those, as `SERVERPROPERTY` returns).
//! A column of any other type ends the reading with an error that names
//! it (the rest of that answer cannot be read).
//!
//! **Plaintext only**: PRELOGIN offers ENCRYPT_NOT_SUP. A server that
//! requires encryption (ENCRYPT_REQ, or ODBC 18-style forced encryption
//! on a real SQL Server) is refused with an error that says so; TDS 8
//! (strict) is not spoken.
//!
//! Bounds: an answer is read up to [`REPLY_BYTES_MAX`] bytes (more is an
//! error, the connection unusable); each packet is 8..=32767 bytes; a
//! read waits at most the configured timeout ([`Options::timeout`]).
//! Every length from the wire is checked before it is used: no byte
//! sequence panics the reader.

use super::packet::{HEADER_LEN, Header, PACKET_MAX, kind, status};
use super::prelogin::{encrypt, option};
use super::token::id;
use super::{login7, utf16le};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;
use thiserror::Error;

/// The most bytes of one server answer the client reads (result sets and
/// messages together): 64 MiB.
pub const REPLY_BYTES_MAX: usize = 64 << 20;

/// Why a TDS exchange failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {err}")]
    Connect { addr: String, err: std::io::Error },
    #[error("the connection to {0} failed: {1}")]
    Io(String, std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error(
        "the server requires encryption; this client speaks TDS without TLS only (use a server or login that allows unencrypted connections, e.g. vdisim serve --tds)"
    )]
    EncryptionRequired,
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    #[error("login failed: {0}")]
    Login(String),
}

/// A message the server sent: an INFO (class ≤ 10) or an ERROR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerMessage {
    pub number: u32,
    pub state: u8,
    pub class: u8,
    pub text: String,
    pub server: String,
    pub procedure: String,
    pub line: u32,
    /// Sent as an ERROR token (else an INFO token).
    pub error: bool,
}

/// A result set: column names, then rows of values as text (`None`: NULL).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// One item of an answer, in the order the server sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Message(ServerMessage),
    Rows(ResultSet),
    /// A DONE, DONEPROC or DONEINPROC: its status bits and row count.
    Done {
        status: u16,
        rows: u64,
    },
}

/// A whole answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub items: Vec<Item>,
    /// The database the session is in after it (ENVCHANGE 1), if it changed.
    pub database: Option<String>,
    /// A LOGINACK was sent (a login answer).
    pub logged_in: bool,
    /// The packet size an ENVCHANGE set, if one did.
    pub packet_size: Option<usize>,
}

impl Reply {
    /// The messages, in order.
    pub fn messages(&self) -> impl Iterator<Item = &ServerMessage> {
        self.items.iter().filter_map(|i| match i {
            Item::Message(m) => Some(m),
            _ => None,
        })
    }

    /// Whether an ERROR token of class above 10 was sent, or a DONE carried
    /// the error bit.
    pub fn failed(&self) -> bool {
        self.items.iter().any(|i| match i {
            Item::Message(m) => m.error && m.class > 10,
            Item::Done { status, .. } => status & super::token::done::ERROR != 0,
            _ => false,
        })
    }

    /// Whether the final DONE acknowledges an attention.
    pub fn attention_acknowledged(&self) -> bool {
        self.items.iter().any(
            |i| matches!(i, Item::Done { status, .. } if status & super::token::done::ATTN != 0),
        )
    }
}

/// How to connect.
#[derive(Clone, Debug)]
pub struct Options {
    pub user: String,
    pub password: String,
    /// The initial database (empty: the login's default).
    pub database: String,
    /// Longest wait for the connection and for each read (`None`: no limit).
    pub timeout: Option<Duration>,
}

/// A logged-in connection.
pub struct Client {
    stream: TcpStream,
    addr: String,
    /// The session id the server's packets carry (SQL Server's `@@SPID`).
    pub spid: u16,
    /// The login's messages (5701, 5703, ...).
    pub login_messages: Vec<ServerMessage>,
    /// The session's database (after login and each USE).
    pub database: String,
    packet_size: usize,
}

impl Client {
    /// Connects to `host:port` and logs in.
    pub fn connect(host: &str, port: u16, o: &Options) -> Result<Client, ClientError> {
        let addr = format!("{host}:{port}");
        let conn_err = |err| ClientError::Connect {
            addr: addr.clone(),
            err,
        };
        let addrs: Vec<_> = (host, port).to_socket_addrs().map_err(conn_err)?.collect();
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            let r = match o.timeout {
                Some(t) => TcpStream::connect_timeout(&a, t),
                None => TcpStream::connect(a),
            };
            match r {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = stream
            .ok_or_else(|| conn_err(last.unwrap_or_else(|| std::io::Error::other("no address"))))?;
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(o.timeout)
            .map_err(|e| ClientError::Io(addr.clone(), e))?;
        let mut c = Client {
            stream,
            addr,
            spid: 0,
            login_messages: Vec::new(),
            database: String::new(),
            packet_size: super::packet::PACKET_DEFAULT,
        };
        c.login(o)?;
        Ok(c)
    }

    fn io(&self, e: std::io::Error) -> ClientError {
        ClientError::Io(self.addr.clone(), e)
    }

    fn login(&mut self, o: &Options) -> Result<(), ClientError> {
        self.send(kind::PRELOGIN, &prelogin_request())?;
        let (_, answer) = self.read_message()?;
        if prelogin_encryption(&answer)? == encrypt::REQ {
            return Err(ClientError::EncryptionRequired);
        }
        self.send(
            kind::LOGIN7,
            &login7::build(&o.user, &o.password, &o.database),
        )?;
        let (spid, answer) = self.read_message()?;
        self.spid = spid;
        let reply = self.parse(&answer)?;
        let acked = reply.logged_in;
        let messages: Vec<ServerMessage> = reply.messages().cloned().collect();
        if !acked || reply.failed() {
            let why = messages
                .iter()
                .filter(|m| m.error)
                .map(|m| format!("Msg {}: {}", m.number, m.text))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ClientError::Login(if why.is_empty() {
                "the server sent no LOGINACK".into()
            } else {
                why
            }));
        }
        self.login_messages = messages;
        if let Some(db) = reply.database {
            self.database = db;
        }
        Ok(())
    }

    /// Runs a SQL batch and reads its whole answer.
    pub fn batch(&mut self, text: &str) -> Result<Reply, ClientError> {
        self.send_batch(text)?;
        self.read_reply()
    }

    /// Sends a SQL batch without waiting for its answer
    /// ([`Client::read_reply`] reads it).
    pub fn send_batch(&mut self, text: &str) -> Result<(), ClientError> {
        // ALL_HEADERS: the transaction descriptor header (no transaction).
        let mut p = vec![
            0x16, 0, 0, 0, 0x12, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
        ];
        p.extend(text.encode_utf16().flat_map(|u| u.to_le_bytes()));
        self.send(kind::SQL_BATCH, &p)
    }

    /// Reads one whole answer.
    pub fn read_reply(&mut self) -> Result<Reply, ClientError> {
        let (_, payload) = self.read_message()?;
        let r = self.parse(&payload)?;
        if let Some(db) = &r.database {
            self.database = db.clone();
        }
        Ok(r)
    }

    /// A second handle on the connection, for an ATTENTION sent while
    /// another thread waits for an answer.
    pub fn canceller(&self) -> Result<Canceller, ClientError> {
        Ok(Canceller(self.stream.try_clone().map_err(|e| self.io(e))?))
    }

    /// How long each read of an answer may wait (`None`: as long as the
    /// statement takes).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> Result<(), ClientError> {
        self.stream.set_read_timeout(t).map_err(|e| self.io(e))
    }

    /// Closes the connection.
    pub fn close(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    fn send(&mut self, k: u8, payload: &[u8]) -> Result<(), ClientError> {
        let bytes = super::packet::encode_message(k, payload, self.packet_size, 0);
        self.stream.write_all(&bytes).map_err(|e| self.io(e))
    }

    /// Reads one message: the SPID its packets carry and its payload.
    fn read_message(&mut self) -> Result<(u16, Vec<u8>), ClientError> {
        let mut payload = Vec::new();
        loop {
            let mut h = [0u8; HEADER_LEN];
            if let Err(e) = self.stream.read_exact(&mut h) {
                return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    ClientError::Closed
                } else {
                    self.io(e)
                });
            }
            let h = Header::parse(&h);
            let len = usize::from(h.length);
            if !(HEADER_LEN..=PACKET_MAX).contains(&len) {
                return Err(ClientError::Protocol(format!("a packet of {len} bytes")));
            }
            if payload.len() + len > REPLY_BYTES_MAX {
                return Err(ClientError::Protocol(format!(
                    "an answer of more than {REPLY_BYTES_MAX} bytes"
                )));
            }
            let at = payload.len();
            payload.resize(at + len - HEADER_LEN, 0);
            self.stream
                .read_exact(&mut payload[at..])
                .map_err(|e| self.io(e))?;
            if h.status & status::EOM != 0 {
                return Ok((h.spid, payload));
            }
        }
    }

    /// Parses an answer, taking the packet size it negotiates.
    fn parse(&mut self, b: &[u8]) -> Result<Reply, ClientError> {
        let reply = parse_reply(b)?;
        if let Some(n) = reply.packet_size {
            self.packet_size = n.clamp(super::packet::PACKET_MIN, PACKET_MAX);
        }
        Ok(reply)
    }
}

/// Parses one server answer's tokens (no byte sequence panics it; every
/// length is checked against what is left).
pub fn parse_reply(b: &[u8]) -> Result<Reply, ClientError> {
    let mut r = Reader { b, at: 0 };
    let mut reply = Reply::default();
    let mut columns: Vec<Column> = Vec::new();
    while r.at < b.len() {
        let t = r.u8()?;
        match t {
            id::ERROR | id::INFO => {
                let body = r.sized_u16()?;
                reply
                    .items
                    .push(Item::Message(message(body, t == id::ERROR)?));
            }
            id::ENVCHANGE => {
                let body = r.sized_u16()?;
                env_change(body, &mut reply)?;
            }
            id::DONE | id::DONEPROC | id::DONEINPROC => {
                let status = r.u16()?;
                let _cur = r.u16()?;
                let rows = r.u64()?;
                reply.items.push(Item::Done { status, rows });
            }
            id::RETURNSTATUS => {
                r.take(4)?;
            }
            COLMETADATA => {
                columns = colmetadata(&mut r)?;
                reply.items.push(Item::Rows(ResultSet {
                    columns: columns.iter().map(|c| c.name.clone()).collect(),
                    rows: Vec::new(),
                }));
            }
            ROW | NBCROW => {
                let row = read_row(&mut r, &columns, t == NBCROW)?;
                match reply.items.last_mut() {
                    Some(Item::Rows(rs)) => rs.rows.push(row),
                    _ => return Err(ClientError::Protocol("a ROW before COLMETADATA".into())),
                }
            }
            id::RETURNVALUE => {
                // Ordinal, name, status, user type, flags, TYPE_INFO, value.
                r.take(2)?;
                let n = usize::from(r.u8()?) * 2;
                r.take(n)?;
                r.take(1 + 4 + 2)?;
                let c = type_info(&mut r, String::new())?;
                value(&mut r, &c)?;
            }
            id::LOGINACK => {
                r.sized_u16()?;
                reply.logged_in = true;
            }
            ORDER | COLINFO | TABNAME | SSPI => {
                r.sized_u16()?;
            }
            SESSIONSTATE => {
                let n = r.u32()? as usize;
                r.take(n)?;
            }
            FEATUREEXTACK => loop {
                if r.u8()? == 0xFF {
                    break;
                }
                let n = r.u32()? as usize;
                r.take(n)?;
            },
            other => {
                return Err(ClientError::Protocol(format!(
                    "token 0x{other:02x} at byte {} is not read by this client",
                    r.at - 1
                )));
            }
        }
    }
    Ok(reply)
}

/// ENVCHANGE: the database and the packet size are kept.
fn env_change(body: &[u8], reply: &mut Reply) -> Result<(), ClientError> {
    let mut r = Reader { b: body, at: 0 };
    let k = r.u8()?;
    if k == super::token::env::DATABASE {
        let n = usize::from(r.u8()?) * 2;
        reply.database = Some(utf16le(r.take(n)?));
    } else if k == super::token::env::PACKET_SIZE {
        let n = usize::from(r.u8()?) * 2;
        reply.packet_size = utf16le(r.take(n)?).parse::<usize>().ok();
    }
    Ok(())
}

/// Sends an ATTENTION on a connection another thread reads.
pub struct Canceller(TcpStream);

impl Canceller {
    /// Sends the ATTENTION (the server answers it with a DONE carrying
    /// DONE_ATTN, read by the thread waiting for the batch's answer).
    pub fn cancel(&mut self) -> std::io::Result<()> {
        let bytes = super::packet::encode_message(kind::ATTENTION, &[], 4096, 0);
        self.0.write_all(&bytes)
    }

    /// Closes the connection (a thread waiting on it sees its end).
    pub fn close(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

const COLMETADATA: u8 = 0x81;
const ROW: u8 = 0xD1;
const NBCROW: u8 = 0xD2;
const ORDER: u8 = 0xA9;
const COLINFO: u8 = 0xA5;
const TABNAME: u8 = 0xA4;
const SSPI: u8 = 0xED;
const SESSIONSTATE: u8 = 0xE4;
const FEATUREEXTACK: u8 = 0xAE;

/// PRELOGIN: VERSION, ENCRYPTION (not supported), INSTOPT, THREADID, MARS off.
fn prelogin_request() -> Vec<u8> {
    let data: [(u8, Vec<u8>); 5] = [
        (option::VERSION, vec![16, 0, 0, 0, 0, 0]),
        (option::ENCRYPTION, vec![encrypt::NOT_SUP]),
        (option::INSTOPT, vec![0]),
        (option::THREADID, std::process::id().to_be_bytes().to_vec()),
        (option::MARS, vec![0]),
    ];
    let table = data.len() * 5 + 1;
    let mut head = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    for (o, d) in &data {
        head.push(*o);
        head.extend(((table + body.len()) as u16).to_be_bytes());
        head.extend((d.len() as u16).to_be_bytes());
        body.extend(d);
    }
    head.push(option::TERMINATOR);
    head.extend(body);
    head
}

/// The ENCRYPTION the server's PRELOGIN answer chose.
fn prelogin_encryption(b: &[u8]) -> Result<u8, ClientError> {
    let mut at = 0;
    while let Some(&o) = b.get(at) {
        if o == option::TERMINATOR {
            break;
        }
        let e = b
            .get(at + 1..at + 5)
            .ok_or_else(|| ClientError::Protocol("a PRELOGIN option table cut short".into()))?;
        let off = usize::from(u16::from_be_bytes([e[0], e[1]]));
        if o == option::ENCRYPTION {
            return b.get(off).copied().ok_or_else(|| {
                ClientError::Protocol("PRELOGIN ENCRYPTION beyond the message".into())
            });
        }
        at += 5;
    }
    Ok(encrypt::NOT_SUP)
}

/// An INFO or ERROR token's body.
fn message(body: &[u8], error: bool) -> Result<ServerMessage, ClientError> {
    let mut r = Reader { b: body, at: 0 };
    let number = r.u32()?;
    let state = r.u8()?;
    let class = r.u8()?;
    let n = usize::from(r.u16()?) * 2;
    let text = utf16le(r.take(n)?);
    let server = r.b_varchar()?;
    let procedure = r.b_varchar()?;
    let line = r.u32()?;
    Ok(ServerMessage {
        number,
        state,
        class,
        text,
        server,
        procedure,
        line,
        error,
    })
}

/// A column: its name, TDS type and the type's length/scale.
struct Column {
    name: String,
    ty: u8,
    /// Length byte count of the value's length prefix (0: fixed).
    len_bytes: u8,
    /// Fixed length (fixed types) or the maximum (0xFFFF: MAX, PLP).
    size: usize,
    scale: u8,
}

fn colmetadata(r: &mut Reader) -> Result<Vec<Column>, ClientError> {
    let n = r.u16()?;
    if n == 0xFFFF {
        return Ok(Vec::new());
    }
    let mut cols = Vec::with_capacity(usize::from(n).min(4096));
    for _ in 0..n {
        r.take(4 + 2)?; // user type, flags
        let mut c = type_info(r, String::new())?;
        if matches!(c.ty, 0x22 | 0x23 | 0x63) {
            // TEXT, IMAGE, NTEXT: table name parts.
            let parts = r.u8()?;
            for _ in 0..parts {
                let n = usize::from(r.u16()?) * 2;
                r.take(n)?;
            }
        }
        c.name = r.b_varchar()?;
        cols.push(c);
    }
    Ok(cols)
}

/// TYPE_INFO: the type byte and what its values' layout needs.
fn type_info(r: &mut Reader, name: String) -> Result<Column, ClientError> {
    let ty = r.u8()?;
    let mut c = Column {
        name,
        ty,
        len_bytes: 0,
        size: 0,
        scale: 0,
    };
    match ty {
        // Fixed: INT1, BIT, INT2, INT4, DATETIM4, FLT4, MONEY, DATETIME, FLT8, MONEY4, INT8.
        0x30 | 0x32 => c.size = 1,
        0x34 => c.size = 2,
        0x38 | 0x3A | 0x3B | 0x7A => c.size = 4,
        0x3C | 0x3D | 0x3E | 0x7F => c.size = 8,
        // INTN, BITN, FLTN, MONEYN, DATETIMN, GUID: 1-byte max length.
        0x26 | 0x68 | 0x6D | 0x6E | 0x6F | 0x24 => {
            c.size = usize::from(r.u8()?);
            c.len_bytes = 1;
        }
        // DECIMALN, NUMERICN: length, precision, scale.
        0x6A | 0x6C => {
            c.size = usize::from(r.u8()?);
            r.u8()?;
            c.scale = r.u8()?;
            c.len_bytes = 1;
        }
        // BIGVARCHR, BIGCHAR, NVARCHAR, NCHAR: length, collation.
        0xA7 | 0xAF | 0xE7 | 0xEF => {
            c.size = usize::from(r.u16()?);
            r.take(5)?;
            c.len_bytes = 2;
        }
        // BIGVARBIN, BIGBINARY.
        0xA5 | 0xAD => {
            c.size = usize::from(r.u16()?);
            c.len_bytes = 2;
        }
        // SSVARIANT: 4-byte max length.
        0x62 => {
            c.size = r.u32()? as usize;
            c.len_bytes = 4;
        }
        other => {
            return Err(ClientError::Protocol(format!(
                "a column of TDS type 0x{other:02x}, which this client does not decode"
            )));
        }
    }
    Ok(c)
}

fn read_row(
    r: &mut Reader,
    cols: &[Column],
    nbc: bool,
) -> Result<Vec<Option<String>>, ClientError> {
    let nulls = if nbc {
        r.take(cols.len().div_ceil(8))?.to_vec()
    } else {
        Vec::new()
    };
    let mut row = Vec::with_capacity(cols.len());
    for (i, c) in cols.iter().enumerate() {
        if nbc && nulls.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0) {
            row.push(None);
            continue;
        }
        row.push(value(r, c)?);
    }
    Ok(row)
}

/// One value of column `c`, as text.
fn value(r: &mut Reader, c: &Column) -> Result<Option<String>, ClientError> {
    let len = match c.len_bytes {
        0 => c.size,
        1 => usize::from(r.u8()?),
        2 if c.size == 0xFFFF => return plp(r, c.ty),
        2 => {
            let n = r.u16()?;
            if n == 0xFFFF {
                return Ok(None);
            }
            usize::from(n)
        }
        _ => r.u32()? as usize,
    };
    if len == 0 && c.len_bytes != 0 && !matches!(c.ty, 0xA7 | 0xAF | 0xE7 | 0xEF | 0xA5 | 0xAD) {
        return Ok(None);
    }
    let bytes = r.take(len)?;
    Ok(Some(render(c.ty, c.scale, bytes)?))
}

/// A PLP (MAX) value: chunks up to a zero-length terminator.
fn plp(r: &mut Reader, ty: u8) -> Result<Option<String>, ClientError> {
    let total = r.u64()?;
    if total == u64::MAX {
        return Ok(None);
    }
    let mut data = Vec::new();
    loop {
        let n = r.u32()? as usize;
        if n == 0 {
            break;
        }
        data.extend_from_slice(r.take(n)?);
    }
    Ok(Some(render(ty, 0, &data)?))
}

fn render(ty: u8, scale: u8, b: &[u8]) -> Result<String, ClientError> {
    let int = |b: &[u8]| -> i64 {
        let mut v = [0u8; 8];
        let n = b.len().min(8);
        v[..n].copy_from_slice(&b[..n]);
        let shift = 64 - 8 * n as u32;
        if n == 0 {
            0
        } else {
            (i64::from_le_bytes(v) << shift) >> shift
        }
    };
    Ok(match ty {
        0x30 => b.first().copied().unwrap_or(0).to_string(),
        0x32 | 0x68 => u8::from(b.first().is_some_and(|x| *x != 0)).to_string(),
        0x34 | 0x38 | 0x7F | 0x26 => int(b).to_string(),
        0x3B | 0x3E | 0x6D if b.len() == 4 => {
            f32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_string()
        }
        0x3E | 0x6D if b.len() == 8 => {
            let mut v = [0u8; 8];
            v.copy_from_slice(b);
            f64::from_le_bytes(v).to_string()
        }
        0xE7 | 0xEF => utf16le(b),
        0xA7 | 0xAF => String::from_utf8_lossy(b).into_owned(),
        0xA5 | 0xAD => {
            let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
            format!("0x{hex}")
        }
        0x24 if b.len() == 16 => format!(
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{}",
            b[3],
            b[2],
            b[1],
            b[0],
            b[5],
            b[4],
            b[7],
            b[6],
            b[8],
            b[9],
            b[10..]
                .iter()
                .map(|x| format!("{x:02X}"))
                .collect::<String>()
        ),
        0x6A | 0x6C if !b.is_empty() => {
            let mut mag = [0u8; 16];
            let n = (b.len() - 1).min(16);
            mag[..n].copy_from_slice(&b[1..1 + n]);
            let v = u128::from_le_bytes(mag).to_string();
            let s = usize::from(scale);
            let digits = if v.len() <= s {
                format!("{}{v}", "0".repeat(s + 1 - v.len()))
            } else {
                v
            };
            let (i, f) = digits.split_at(digits.len() - s);
            let sign = if b[0] == 0 { "-" } else { "" };
            if s == 0 {
                format!("{sign}{i}")
            } else {
                format!("{sign}{i}.{f}")
            }
        }
        0x62 => variant(b)?,
        other => {
            return Err(ClientError::Protocol(format!(
                "a value of TDS type 0x{other:02x} ({} bytes), which this client does not decode",
                b.len()
            )));
        }
    })
}

/// A SQL_VARIANT value: base type, property bytes, then the value.
fn variant(b: &[u8]) -> Result<String, ClientError> {
    let short = || ClientError::Protocol("a SQL_VARIANT value cut short".into());
    let (&ty, rest) = b.split_first().ok_or_else(short)?;
    let (&props, rest) = rest.split_first().ok_or_else(short)?;
    let data = rest.get(usize::from(props)..).ok_or_else(short)?;
    let scale = if matches!(ty, 0x6A | 0x6C) {
        rest.get(1).copied().unwrap_or(0)
    } else {
        0
    };
    render(ty, scale, data)
}

/// Bounds-checked reads from a payload.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ClientError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        let Some(end) = end else {
            return Err(ClientError::Protocol(format!(
                "{n} bytes wanted at byte {} of a {}-byte answer",
                self.at,
                self.b.len()
            )));
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ClientError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ClientError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, ClientError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, ClientError> {
        let s = self.take(8)?;
        let mut v = [0u8; 8];
        v.copy_from_slice(s);
        Ok(u64::from_le_bytes(v))
    }
    fn sized_u16(&mut self) -> Result<&'a [u8], ClientError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
    fn b_varchar(&mut self) -> Result<String, ClientError> {
        let n = usize::from(self.u8()?) * 2;
        Ok(utf16le(self.take(n)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tds::token;

    fn parse(b: &[u8]) -> Result<Reply, ClientError> {
        parse_reply(b)
    }

    #[test]
    fn messages_and_done_are_read_from_the_server_encoders() {
        let mut o = Vec::new();
        let m = token::Message {
            number: 3014,
            state: 1,
            class: 0,
            text: "BACKUP DATABASE successfully processed 1 pages.",
            server: "S",
            procedure: "",
            line: 1,
        };
        token::message(&mut o, &m);
        token::env_change(&mut o, token::env::DATABASE, "sales", "master");
        token::done(&mut o, token::id::DONE, token::done::FINAL, 0, 0);
        let r = parse(&o).unwrap();
        let msgs: Vec<_> = r.messages().collect();
        assert_eq!(msgs.len(), 1);
        assert_eq!((msgs[0].number, msgs[0].error), (3014, false));
        assert_eq!(r.database.as_deref(), Some("sales"));
        assert!(!r.failed());
    }

    #[test]
    fn no_byte_sequence_panics_the_parser() {
        let mut o = Vec::new();
        let m = token::Message {
            number: 3201,
            state: 1,
            class: 16,
            text: "Cannot open backup device 'x'.",
            server: "S",
            procedure: "",
            line: 1,
        };
        token::message(&mut o, &m);
        token::done(&mut o, token::id::DONE, token::done::ERROR, 0, 0);
        assert!(parse(&o).unwrap().failed());
        // Every prefix, and every single-byte corruption, parses or errs.
        for n in 0..o.len() {
            let _ = parse(&o[..n]);
            for v in [0u8, 0x7F, 0xFF] {
                let mut c = o.clone();
                c[n] = v;
                let _ = parse(&c);
            }
        }
    }

    #[test]
    fn result_sets_are_decoded() {
        use crate::tds::query::{Cell, ResultSet as Rs, Type, encode};
        let rs = Rs {
            columns: vec![
                ("spid".into(), Type::Int),
                ("name".into(), Type::NVarChar(128)),
            ],
            rows: vec![
                vec![Cell::Int(57), Cell::Str("sales".into())],
                vec![Cell::Null, Cell::Null],
            ],
        };
        let mut o = Vec::new();
        encode(&mut o, &rs);
        let r = parse(&o).unwrap();
        let Some(Item::Rows(got)) = r.items.first() else {
            panic!("{r:?}")
        };
        assert_eq!(got.columns, ["spid", "name"]);
        assert_eq!(
            got.rows,
            [
                vec![Some("57".to_string()), Some("sales".to_string())],
                vec![None, None]
            ]
        );
    }

    #[test]
    fn numbers_guids_and_variants_render_as_sql_server_prints_them() {
        assert_eq!(render(0x26, 0, &[0xFF, 0xFF]).unwrap(), "-1");
        assert_eq!(render(0x6C, 2, &[1, 0x39, 0x30, 0, 0]).unwrap(), "123.45");
        assert_eq!(render(0x6C, 2, &[0, 5, 0, 0, 0]).unwrap(), "-0.05");
        // SQL_VARIANT holding an NVARCHAR: type, 7 property bytes, value.
        let mut v = vec![0xE7, 7, 0, 1, 0x09, 0x04, 0xD0, 0, 0x34];
        v.extend("16".encode_utf16().flat_map(|u| u.to_le_bytes()));
        assert_eq!(render(0x62, 0, &v).unwrap(), "16");
        assert!(render(0x62, 0, &[0xE7, 9]).is_err());
        assert!(render(0xF1, 0, &[]).is_err());
    }

    proptest::proptest! {
        /// Arbitrary bytes, and tokens with arbitrary bodies, parse or
        /// are refused: never a panic.
        #[test]
        fn arbitrary_answers_never_panic(
            b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            t in proptest::sample::select(vec![0x81u8, 0xD1, 0xD2, 0xAA, 0xAB, 0xE3, 0xFD, 0xAC, 0xAE, 0xE4]),
        ) {
            let _ = parse_reply(&b);
            let mut with_token = vec![t];
            with_token.extend(&b);
            let _ = parse_reply(&with_token);
        }
    }
}
