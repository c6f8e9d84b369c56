//! One TDS connection: PRELOGIN and LOGIN7 (each within the frame
//! deadline), then requests until the client leaves. A SQL batch runs on a
//! worker thread so that this thread keeps reading and an ATTENTION
//! reaches the running statement, as on the control socket.

use super::packet::{self, Limits, kind, status};
use super::prelogin;
use super::rpc::{self, Value, proc_id};
use super::tables::Tables;
use super::tls::{self, Mode, Reader, ServerTls, Wire};
use super::token::{self, done, env, id};
use super::{SERVER_VERSION, TDS_72, TDS_74, TdsError, login7, utf16le};
use crate::serve::{Attention, Batch, BatchEnd, Emit};
use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vdi_host::remote::wire::LineMessage;

/// What a session needs of the server: its T-SQL and its databases.
pub(crate) trait Engine: Tables + Send + Sync + 'static {
    /// Runs a batch as the control socket runs it, telling `emit` each
    /// message as it is produced.
    fn run_batch(
        &self,
        text: &str,
        database: &mut Option<String>,
        attention: &Attention,
        emit: Emit<'_>,
    ) -> Batch;
    fn has_database(&self, name: &str) -> bool;
    /// The attention switch of session `spid` (the server's, so that a
    /// KILL from another session reaches it).
    fn session_attention(&self, spid: u16) -> Arc<Attention> {
        let _ = spid;
        Arc::default()
    }
}

/// A session's configuration.
pub(crate) struct Settings {
    /// The server name in INFO and ERROR tokens.
    pub(crate) server_name: String,
    /// SQL logins: name (matched without regard to ASCII case) and
    /// password.
    pub(crate) logins: Vec<(String, String)>,
    /// How long PRELOGIN and LOGIN7 may take, and a started message.
    pub(crate) frame_deadline: Duration,
    /// TLS inside PRELOGIN (`None`: every client is answered
    /// ENCRYPT_NOT_SUP).
    pub(crate) tls: Option<Arc<ServerTls>>,
}

/// The database a session shows when it has none of the server's (SQL
/// Server's default database).
const MASTER: &str = "master";
/// The program LOGINACK names (SNAC and others check it).
const PROGRAM: &str = "Microsoft SQL Server";

/// The stream, read with a deadline (`None`: wait as long as it takes).
struct Timed<'a> {
    s: &'a TcpStream,
    deadline: Option<Instant>,
    limit: Duration,
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let stalled = || {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client stalled: no whole message within {} ms",
                    self.limit.as_millis()
                ),
            )
        };
        let left = match self.deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(stalled());
                }
                Some(left)
            }
            None => None,
        };
        self.s.set_read_timeout(left)?;
        match (&mut &*self.s).read(buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(stalled())
            }
            r => r,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Session {
    engine: Arc<dyn Engine>,
    set: Arc<Settings>,
    peer: String,
    spid: u16,
    /// The write side (through TLS while it is on).
    writer: Arc<Mutex<Wire>>,
    /// The negotiated packet size (4096 until login completes).
    packet_size: usize,
    /// The database LOGIN7 chose (RESETCONNECTION returns to it).
    login_db: Option<String>,
    database: Arc<Mutex<Option<String>>>,
    attention: Arc<Attention>,
    /// Statements prepared (`sp_prepexec`, `sp_prepare`) by handle: their
    /// declaration list and text.
    prepared: HashMap<i32, (String, String)>,
    next_handle: i32,
    /// The open transaction (transaction-manager requests): its
    /// descriptor and nesting depth.
    tran: Option<(u64, u32)>,
    /// Transactions begun in this session.
    trans_begun: u32,
}

/// Statements one session may keep prepared.
pub(crate) const PREPARED_MAX: usize = 4096;

/// How a statement's answer ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// A SQL batch: DONE.
    Batch,
    /// An RPC: DONEINPROC, RETURNSTATUS 0, the handle as RETURNVALUE (its
    /// parameter's name and value) when one was prepared, each OUTPUT
    /// parameter's value as RETURNVALUE (ordinal and parameter), DONEPROC.
    Rpc {
        handle: Option<(String, i32)>,
        outputs: Vec<(u16, rpc::Param)>,
    },
}

/// Serves one TDS connection to its end. `spid` is the session id the
/// packets carry (FreeTDS takes `@@SPID` from it).
pub(crate) fn serve(engine: Arc<dyn Engine>, stream: TcpStream, set: Arc<Settings>, spid: u16) {
    let peer = stream
        .peer_addr()
        .map(|a: SocketAddr| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let _ = stream.set_nodelay(true);
    // A client that does not read its answers is not waited for forever.
    let _ = stream.set_write_timeout(Some(set.frame_deadline.max(Duration::from_secs(10))));
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let attention = engine.session_attention(spid);
    let mut s = Session {
        engine,
        set,
        peer,
        spid,
        writer: Arc::new(Mutex::new(Wire::new(writer))),
        packet_size: packet::PACKET_DEFAULT,
        login_db: None,
        database: Arc::default(),
        attention,
        prepared: HashMap::new(),
        next_handle: 1,
        tran: None,
        trans_begun: 0,
    };
    match s.handshake(&stream) {
        Ok(true) => s.requests(&stream),
        Ok(false) => {}
        Err(e) => s.log(format_args!("closed before login: {e}")),
    }
    lock(&s.writer).shutdown();
}

impl Session {
    fn log(&self, what: std::fmt::Arguments) {
        eprintln!("vdisim serve: tds client {}: {what}", self.peer);
    }

    /// Sends one response message.
    fn send(&self, payload: &[u8]) -> io::Result<()> {
        send(&self.writer, payload, self.packet_size, self.spid)
    }

    /// PRELOGIN and LOGIN7: whether the client logged in.
    fn handshake(&mut self, s: &TcpStream) -> Result<bool, TdsError> {
        let limit = self.set.frame_deadline;
        let wire = self.writer.clone();
        let mut r = Reader::new(
            Timed {
                s,
                deadline: Some(Instant::now() + limit),
                limit,
            },
            &wire,
        );
        let Some(first) = packet::read_byte(&mut r)? else {
            return Ok(false);
        };
        let strict = first == kind::TLS_HANDSHAKE;
        let first = if strict {
            // TDS 8 (Encrypt=strict): TLS first, then everything inside.
            let Some(t) = &self.set.tls else {
                self.log(format_args!(
                    "closed: it starts with TLS (TDS 8, Encrypt=strict) and this server was started without TLS"
                ));
                return Ok(false);
            };
            let mut raw_writer = s;
            let (conn, early) = tls::accept_strict(first, &mut r.raw, &mut raw_writer, t)?;
            lock(&self.writer).start_tls(conn);
            r.set_tls(true);
            r.push_plain(early);
            let Some(b) = packet::read_byte(&mut r)? else {
                return Ok(false);
            };
            b
        } else {
            first
        };
        let m = packet::read_message_after(&mut r, first, &Limits::LOGIN)?;
        if m.kind != kind::PRELOGIN {
            return Err(TdsError::malformed(
                "first message",
                format!("type 0x{:02x}, not PRELOGIN (0x12)", m.kind),
            ));
        }
        let pre = prelogin::parse(&m.payload)?;
        let (answer, mode) = if strict {
            // Already inside TLS: the PRELOGIN's encryption is moot (ODBC
            // 18 sends NOT_SUP and takes NOT_SUP).
            (prelogin::encrypt::NOT_SUP, Mode::Plain)
        } else {
            tls::negotiate(pre.encryption, self.set.tls.as_deref())
        };
        self.send(&prelogin::reply(answer))?;
        match (mode, &self.set.tls) {
            (Mode::Refused, None) => {
                self.log(format_args!(
                    "closed: the client requires encryption (PRELOGIN ENCRYPTION 0x{:02x}) and this server was started without TLS; it was answered ENCRYPT_NOT_SUP",
                    pre.encryption.unwrap_or(0)
                ));
                return Ok(false);
            }
            (Mode::Refused, Some(_)) => {
                self.log(format_args!(
                    "closed: the client does not support encryption (PRELOGIN ENCRYPTION 0x{:02x}) and this server requires it (--tls-required); it was answered ENCRYPT_REQ",
                    pre.encryption.unwrap_or(0)
                ));
                return Ok(false);
            }
            (Mode::LoginOnly | Mode::Full, Some(t)) => {
                r.raw.deadline = Some(Instant::now() + limit);
                let mut raw_writer = s;
                let conn = tls::accept(&mut r.raw, &mut raw_writer, t, self.spid)?;
                lock(&self.writer).start_tls(conn);
                r.set_tls(true);
            }
            _ => {}
        }
        r.raw.deadline = Some(Instant::now() + limit);
        let Some(first) = packet::read_byte(&mut r)? else {
            return Ok(false);
        };
        let m = packet::read_message_after(&mut r, first, &Limits::LOGIN)?;
        if m.kind != kind::LOGIN7 {
            return Err(TdsError::malformed(
                "login",
                format!("type 0x{:02x}, not LOGIN7 (0x10)", m.kind),
            ));
        }
        let login = login7::parse(&m.payload)?;
        if mode == Mode::LoginOnly {
            // ENCRYPT_OFF: the login only was encrypted (MS-TDS 2.2.6.5).
            if r.has_buffered() {
                return Err(TdsError::malformed(
                    "LOGIN7",
                    "more bytes after it inside TLS, in a login-only encrypted session",
                ));
            }
            lock(&self.writer).drop_tls();
            r.set_tls(false);
        }
        Ok(self.login(&login)?)
    }

    /// Answers LOGIN7: the login response, or Msg 18456 (after Msg 4060
    /// for a database that does not exist).
    fn login(&mut self, l: &login7::Login7) -> io::Result<bool> {
        let refusal = if l.sspi {
            Some((
                None,
                "it asks for integrated (SSPI) authentication; only SQL logins are served".into(),
            ))
        } else if l.tds_version < TDS_72 {
            Some((
                None,
                format!(
                    "it asks for TDS version 0x{:08x}; vdisim serve speaks TDS 7.2 to 7.4",
                    l.tds_version
                ),
            ))
        } else {
            match self
                .set
                .logins
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&l.user))
            {
                None => Some((None, "no such login".into())),
                Some((_, pw)) if *pw != l.password => {
                    Some((None, "the password does not match".into()))
                }
                Some(_) => None,
            }
        };
        let db = (!l.database.is_empty() && !l.database.eq_ignore_ascii_case(MASTER))
            .then(|| l.database.clone());
        let refusal =
            refusal.or_else(|| {
                db.as_ref().filter(|d| !self.engine.has_database(d)).map(|d| {
                (
                    Some(format!(
                        "Cannot open database \"{d}\" requested by the login. The login failed."
                    )),
                    format!("its database '{d}' does not exist"),
                )
            })
            });
        if let Some((first, why)) = refusal {
            self.log(format_args!("login failed for user '{}': {why}", l.user));
            let mut o = Vec::new();
            if let Some(text) = &first {
                self.error(&mut o, 4060, 1, 11, text, 1);
            }
            let text = format!("Login failed for user '{}'.", l.user);
            self.error(&mut o, 18456, 1, 14, &text, 1);
            token::done(&mut o, id::DONE, done::ERROR, 0, 0);
            self.send(&o)?;
            return Ok(false);
        }
        let size = usize::try_from(l.packet_size).unwrap_or(0);
        let size = if (packet::PACKET_MIN..=packet::PACKET_MAX).contains(&size) {
            size
        } else {
            packet::PACKET_DEFAULT
        };
        let version = l.tds_version.min(TDS_74);
        self.send(&self.login_response(db.as_deref(), version, size))?;
        self.packet_size = size;
        self.login_db = db.clone();
        *lock(&self.database) = db;
        Ok(true)
    }

    fn login_response(&self, db: Option<&str>, version: u32, size: usize) -> Vec<u8> {
        let db = db.unwrap_or(MASTER);
        let mut o = Vec::new();
        token::env_change(&mut o, env::DATABASE, db, MASTER);
        let text = format!("Changed database context to '{db}'.");
        self.error(&mut o, 5701, 2, 0, &text, 0);
        token::env_change_bytes(&mut o, env::COLLATION, &token::COLLATION, &[]);
        token::env_change(&mut o, env::LANGUAGE, "us_english", "");
        self.error(
            &mut o,
            5703,
            1,
            0,
            "Changed language setting to us_english.",
            0,
        );
        let (major, minor, build) = SERVER_VERSION;
        let b = build.to_be_bytes();
        token::login_ack(&mut o, version, PROGRAM, [major, minor, b[0], b[1]]);
        let old = packet::PACKET_DEFAULT.to_string();
        token::env_change(&mut o, env::PACKET_SIZE, &size.to_string(), &old);
        token::done(&mut o, id::DONE, done::FINAL, 0, 0);
        o
    }

    /// Appends an INFO or ERROR token (by class) from this server.
    fn error(&self, o: &mut Vec<u8>, number: u32, state: u8, class: u8, text: &str, line: u32) {
        token::message(
            o,
            &token::Message {
                number,
                state,
                class,
                text,
                server: &self.set.server_name,
                procedure: "",
                line,
            },
        );
    }

    /// Serves requests until the client leaves or breaks the protocol.
    fn requests(&mut self, s: &TcpStream) {
        let limit = self.set.frame_deadline;
        let wire = self.writer.clone();
        let mut r = Reader::new(
            Timed {
                s,
                deadline: None,
                limit,
            },
            &wire,
        );
        let mut batch: Option<JoinHandle<()>> = None;
        loop {
            r.raw.deadline = None;
            let first = match packet::read_byte(&mut r) {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    self.log(format_args!("closed: {e}"));
                    break;
                }
            };
            r.raw.deadline = Some(Instant::now() + limit);
            let m =
                match packet::read_message_after(&mut r, first, &Limits::session(self.packet_size))
                {
                    Ok(m) => m,
                    Err(e) => {
                        self.log(format_args!("closed: {e}"));
                        break;
                    }
                };
            if m.kind == kind::ATTENTION {
                // Cancel the running batch; its answer is finished first,
                // then the acknowledgement follows as a message of its own.
                if let Some(b) = batch.take() {
                    if !b.is_finished() {
                        self.attention.cancel();
                    }
                    let _ = b.join();
                }
                let mut o = Vec::new();
                token::done(&mut o, id::DONE, done::ATTN, 0, 0);
                if self.send(&o).is_err() {
                    break;
                }
                continue;
            }
            if let Some(b) = batch.take() {
                let _ = b.join();
            }
            match self.request(m) {
                Ok(Some(b)) => batch = Some(b),
                Ok(None) => {}
                Err(e) => {
                    self.log(format_args!("closed: {e}"));
                    break;
                }
            }
        }
        if let Some(b) = batch.take() {
            // The client left under a running batch without an attention:
            // the profile decides (clause abort.disconnect).
            if !b.is_finished() {
                self.attention.disconnected();
            }
            let _ = b.join();
        }
    }

    /// Answers one request other than an attention: a SQL batch starts on
    /// a worker (returned); the others are answered here.
    fn request(&mut self, m: packet::Message) -> Result<Option<JoinHandle<()>>, TdsError> {
        let reset = m.status & (status::RESET_CONNECTION | status::RESET_CONNECTION_SKIP_TRAN) != 0;
        let mut o = Vec::new();
        if m.ignored {
            // The client abandoned the message.
            token::done(&mut o, id::DONE, done::ERROR, 0, 0);
            self.send(&o)?;
            return Ok(None);
        }
        if m.status & status::RESET_CONNECTION != 0 {
            // RESETCONNECTION without SKIPTRAN ends the transaction.
            self.tran = None;
        }
        match m.kind {
            kind::SQL_BATCH => {
                let text = utf16le(skip_all_headers(&m.payload)?);
                if let Some(rs) = self.query(&text, reset) {
                    self.reset_session(&mut o, reset);
                    match rs {
                        Ok(rs) => super::query::encode(&mut o, &rs),
                        Err((number, text)) => {
                            self.error(&mut o, number, 1, 16, &text, 1);
                            token::done(&mut o, id::DONE, done::ERROR, 0xC1, 0);
                        }
                    }
                    self.send(&o)?;
                    return Ok(None);
                }
                self.spawn_batch(text, reset, End::Batch)
            }
            kind::TRANSACTION_MANAGER => {
                self.reset_session(&mut o, reset);
                self.transaction(skip_all_headers(&m.payload)?, &mut o);
                self.send(&o)?;
                Ok(None)
            }
            kind::RPC => {
                let steps = self.rpc_message(skip_all_headers(&m.payload)?);
                self.spawn_steps(steps, reset)
            }
            other => Err(TdsError::malformed(
                "request",
                format!("a message of type 0x{other:02x} after login"),
            )),
        }
    }

    /// The result set `text` asks for, if it is one of the queries
    /// `super::query` answers.
    fn query(
        &self,
        text: &str,
        reset: bool,
    ) -> Option<Result<super::query::ResultSet, super::tables::Refusal>> {
        let database = if reset {
            self.login_db.clone()
        } else {
            lock(&self.database).clone()
        };
        let cx = super::query::Context {
            spid: self.spid,
            server_name: &self.set.server_name,
            database: database.as_deref().unwrap_or(MASTER),
            tables: &*self.engine,
        };
        super::query::answer(text, &cx)
    }

    /// RESETCONNECTION: the session returns to its login database;
    /// acknowledged with ENVCHANGE 18.
    fn reset_session(&self, o: &mut Vec<u8>, reset: bool) {
        if reset {
            *lock(&self.database) = self.login_db.clone();
            token::env_change_bytes(o, env::RESET_ACK, &[], &[]);
        }
    }

    /// Runs a batch on a worker thread that answers it.
    fn spawn_batch(
        &self,
        text: String,
        reset: bool,
        end: End,
    ) -> Result<Option<JoinHandle<()>>, TdsError> {
        self.spawn_steps(vec![Step::Statement(text, end)], reset)
    }

    /// Runs `steps` (a batch, or the RPCs of one message) in order on a
    /// worker thread that answers them (or, the simulated server died
    /// under one, drops the connection without an answer). Every RPC's
    /// DONEPROC but the last says more follows (MORE, RPCINBATCH); an
    /// attention stops the steps after the running one, and a DONE ends
    /// the response.
    fn spawn_steps(
        &self,
        steps: Vec<Step>,
        reset: bool,
    ) -> Result<Option<JoinHandle<()>>, TdsError> {
        let mut head = Vec::new();
        self.reset_session(&mut head, reset);
        self.attention.reset();
        let (engine, set, db, att, w) = (
            self.engine.clone(),
            self.set.clone(),
            self.database.clone(),
            self.attention.clone(),
            self.writer.clone(),
        );
        let (size, spid) = (self.packet_size, self.spid);
        std::thread::Builder::new()
            .name("vdisim-tds-batch".into())
            .spawn(move || {
                let mut live = Live {
                    w: &w,
                    size,
                    spid,
                    server: &set.server_name,
                    pending: head,
                    next_id: 1,
                    error: false,
                    broken: false,
                };
                let last = steps.len().saturating_sub(1);
                let mut killed = false;
                for (k, step) in steps.into_iter().enumerate() {
                    if k > 0 && att.is_cancelled() {
                        token::done(&mut live.pending, id::DONE, done::FINAL, 0, 0);
                        break;
                    }
                    let more = k < last;
                    let ended = match step {
                        Step::Answer(mut o) => {
                            if more {
                                mark_more(&mut o);
                            }
                            live.pending.extend(o);
                            BatchEnd::Done
                        }
                        Step::Statement(text, end) => {
                            statement(&*engine, &mut live, &db, &att, &text, &end, more)
                        }
                    };
                    if ended == BatchEnd::ServerDied || live.broken {
                        // The simulated server died under the statement (the
                        // client loses its connection), or the client stopped
                        // taking its answer (within the write timeout).
                        lock(&w).shutdown();
                        return;
                    }
                    if ended == BatchEnd::Killed {
                        killed = true;
                        break;
                    }
                }
                let tail = std::mem::take(&mut live.pending);
                // A KILLed session's connection ends after its answer.
                if live.finish(&tail).is_err() || killed {
                    lock(&w).shutdown();
                }
            })
            .map(Some)
            .map_err(|e| TdsError::Io(io::Error::other(format!("no thread for the batch: {e}"))))
    }
}

/// What a request comes to: a statement to run as a batch and how its
/// answer ends, or an answer with nothing to run.
pub(crate) enum Step {
    Statement(String, End),
    Answer(Vec<u8>),
}

/// Runs one statement step of a response: its messages go out as they
/// come, its end tokens stay pending (MORE on an RPC's DONEPROC when
/// `more` and no attention came). Whether the simulated server died.
fn statement(
    engine: &dyn Engine,
    live: &mut Live,
    db: &Mutex<Option<String>>,
    att: &Attention,
    text: &str,
    end: &End,
    more: bool,
) -> BatchEnd {
    let before = lock(db).clone();
    let mut current = before.clone();
    live.error = false;
    let b = engine.run_batch(text, &mut current, att, &mut |m| live.messages(m));
    *lock(db) = current.clone();
    if b.end == BatchEnd::ServerDied {
        return b.end;
    }
    let more = more && b.end == BatchEnd::Done && !att.is_cancelled();
    let mut o = Vec::new();
    end_tokens(&mut o, live.error, &before, &current, live.server, end);
    if more {
        mark_more(&mut o);
    }
    live.pending.extend(o);
    b.end
}

/// Sets MORE and RPCINBATCH on the DONEPROC that ends `o` (an RPC's
/// answer that another RPC of the same message follows).
fn mark_more(o: &mut [u8]) {
    let n = o.len();
    if n >= 13 && o[n - 13] == id::DONEPROC {
        let st = u16::from_le_bytes([o[n - 12], o[n - 11]]) | done::MORE | done::RPC_IN_BATCH;
        o[n - 12..n - 10].copy_from_slice(&st.to_le_bytes());
    }
}

/// A response sent while its statement runs: each message as a token in
/// packets without EOM, written at once (the client surfaces it as it
/// comes: `STATS` progress), the end with EOM.
struct Live<'a> {
    w: &'a Mutex<Wire>,
    size: usize,
    spid: u16,
    server: &'a str,
    /// Tokens not yet written (the RESETCONNECTION acknowledgement first).
    pending: Vec<u8>,
    next_id: u8,
    /// An ERROR token was sent (the DONE says so).
    error: bool,
    /// A write failed: nothing more is sent.
    broken: bool,
}

impl Live<'_> {
    /// Sends `messages` as INFO or ERROR tokens in a part of the response.
    fn messages(&mut self, messages: &[LineMessage]) {
        if self.broken {
            return;
        }
        self.error |= message_tokens(&mut self.pending, messages, self.server);
        let (bytes, next) = packet::encode_packets(
            kind::REPLY,
            &self.pending,
            self.size,
            self.spid,
            self.next_id,
            false,
        );
        self.pending.clear();
        self.next_id = next;
        if lock(self.w).write_all(&bytes).is_err() {
            self.broken = true;
        }
    }

    /// Sends the response's last part, `tail`, ending it (EOM).
    fn finish(&mut self, tail: &[u8]) -> io::Result<()> {
        let (bytes, _) =
            packet::encode_packets(kind::REPLY, tail, self.size, self.spid, self.next_id, true);
        lock(self.w).write_all(&bytes)
    }
}

/// Writes `payload` as one reply message.
fn send(w: &Mutex<Wire>, payload: &[u8], size: usize, spid: u16) -> io::Result<()> {
    let bytes = packet::encode_message(kind::REPLY, payload, size, spid);
    lock(w).write_all(&bytes)
}

/// A SQL batch's text: the payload after ALL_HEADERS (whose total length
/// must lie within the payload).
pub(crate) fn skip_all_headers(payload: &[u8]) -> Result<&[u8], TdsError> {
    let Some(h) = payload.get(..4) else {
        return Err(TdsError::malformed(
            "SQL batch",
            "shorter than its ALL_HEADERS length",
        ));
    };
    let total = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    if total < 4 {
        return Err(TdsError::malformed(
            "SQL batch",
            format!("ALL_HEADERS of {total} bytes"),
        ));
    }
    payload.get(total..).ok_or_else(|| {
        TdsError::malformed(
            "SQL batch",
            format!(
                "ALL_HEADERS of {total} bytes in a message of {}",
                payload.len()
            ),
        )
    })
}

/// A batch's answer: its messages as INFO or ERROR tokens, then its end
/// ([`end_tokens`]).
#[cfg(test)]
pub(crate) fn batch_tokens(
    o: &mut Vec<u8>,
    messages: &[LineMessage],
    before: &Option<String>,
    after: &Option<String>,
    server: &str,
    end: &End,
) {
    let error = message_tokens(o, messages, server);
    end_tokens(o, error, before, after, server, end);
}

/// Appends `messages` as INFO or ERROR tokens: whether one was an ERROR.
pub(crate) fn message_tokens(o: &mut Vec<u8>, messages: &[LineMessage], server: &str) -> bool {
    let mut error = false;
    for m in messages {
        let t = token::Message {
            number: m.message.number,
            state: m.message.state,
            class: m.message.level,
            text: &m.message.text,
            server,
            procedure: "",
            line: m.line,
        };
        error |= t.is_error();
        token::message(o, &t);
    }
    error
}

/// A batch's answer after its messages: ENVCHANGE database and INFO 5701
/// when a USE changed the database, then DONE (DONE_ERROR when an ERROR
/// token was sent: `error`), or for an RPC its DONEINPROC, RETURNSTATUS,
/// RETURNVALUE and DONEPROC.
pub(crate) fn end_tokens(
    o: &mut Vec<u8>,
    error: bool,
    before: &Option<String>,
    after: &Option<String>,
    server: &str,
    end: &End,
) {
    let status = if error { done::ERROR } else { done::FINAL };
    if before != after {
        let new = after.as_deref().unwrap_or(MASTER);
        token::env_change(o, env::DATABASE, new, before.as_deref().unwrap_or(MASTER));
        let text = format!("Changed database context to '{new}'.");
        token::message(
            o,
            &token::Message {
                number: 5701,
                state: 1,
                class: 0,
                text: &text,
                server,
                procedure: "",
                line: 1,
            },
        );
    }
    match end {
        End::Batch => token::done(o, id::DONE, status, 0, 0),
        End::Rpc { .. } => {
            token::done(o, id::DONEINPROC, status | done::MORE, 0, 0);
            rpc_tail(o, status, end);
        }
    }
}

/// An RPC's answer after its statement's DONEINPROC: RETURNSTATUS 0, the
/// RETURNVALUE tokens, DONEPROC with `status`.
pub(crate) fn rpc_tail(o: &mut Vec<u8>, status: u16, end: &End) {
    token::return_status(o, 0);
    if let End::Rpc { handle, outputs } = end {
        if let Some((name, h)) = handle {
            token::return_value_int(o, 0, name, *h);
        }
        for (ordinal, p) in outputs {
            token::return_value(o, *ordinal, &p.name, &p.type_info, &p.value);
        }
    }
    token::done(o, id::DONEPROC, status, 0xE0, 0);
}

#[path = "calls.rs"]
mod calls;

#[cfg(test)]
mod tests {
    use super::*;
    use vdi_model::outcome::SqlMessage;

    #[test]
    fn all_headers_are_skipped_within_bounds() {
        let mut p = vec![
            0x16, 0, 0, 0, 0x12, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
        ];
        p.extend([b'G', 0, b'O', 0]);
        assert_eq!(utf16le(skip_all_headers(&p).unwrap()), "GO");
        assert!(skip_all_headers(&[1, 0]).is_err());
        assert!(skip_all_headers(&[2, 0, 0, 0]).is_err());
        assert!(skip_all_headers(&[0xFF, 0xFF, 0xFF, 0xFF, 0]).is_err());
        assert_eq!(skip_all_headers(&[4, 0, 0, 0]).unwrap(), &[] as &[u8]);
    }

    #[test]
    fn a_failed_batch_ends_with_done_error() {
        let msg = |number, level| LineMessage {
            message: SqlMessage {
                number,
                level,
                state: 1,
                text: "t".into(),
            },
            line: 2,
        };
        let mut o = Vec::new();
        batch_tokens(
            &mut o,
            &[msg(3201, 16), msg(3013, 16)],
            &None,
            &None,
            "S",
            &End::Batch,
        );
        assert_eq!(o[0], id::ERROR);
        let d = &o[o.len() - 13..];
        assert_eq!(d[0], id::DONE);
        assert_eq!(u16::from_le_bytes([d[1], d[2]]), done::ERROR);
        // Informational messages only, and a USE: INFO, ENVCHANGE, INFO
        // 5701, DONE without the error bit.
        let mut o = Vec::new();
        batch_tokens(
            &mut o,
            &[msg(4035, 0)],
            &None,
            &Some("sales".into()),
            "S",
            &End::Batch,
        );
        assert_eq!(o[0], id::INFO);
        let next = 3 + usize::from(u16::from_le_bytes([o[1], o[2]]));
        assert_eq!((o[next], o[next + 3]), (id::ENVCHANGE, env::DATABASE));
        let d = &o[o.len() - 13..];
        assert_eq!(u16::from_le_bytes([d[1], d[2]]), done::FINAL);
    }
}
