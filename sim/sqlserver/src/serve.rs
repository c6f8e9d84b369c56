//! `vdisim serve`: a long-running process that plays SQL Server.
//!
//! It keeps simulated databases (name → size and a content digest) and
//! msdb's backup history, accepts set connections from the stand-in library
//! in backup programs (one per set incarnation: the set's name and
//! configuration, then the model's messages; buffers in shared memory, see
//! `vdi_host::remote`), and control connections carrying T-SQL (from
//! `vdisim sqlcmd`) or harness case control (the `serve` backend).
//!
//! Each BACKUP or RESTORE runs on its own [`ServerHost`] — the same server host
//! the in-process harness uses — seeded with the history, bound to the live
//! set its first VIRTUAL_DEVICE names, so many sets and clients run at once.
//! A client that dies mid-stream (its connection ends before Close) is an
//! abort for the statement (clause `abort.client-death`); the set is
//! forgotten and its buffer memory freed.
//!
//! Databases: `BACKUP DATABASE x` streams `size(x)` bytes and records the
//! digest of x's content with the backup; a successful `RESTORE DATABASE x`
//! (every byte read back verified by the server half) sets x's content to
//! the backup's; a failed one leaves x `restoring`, as SQL Server does.
//! A RESTORE uses the latest backup of its database in history (the model's
//! rule, `vdi_sim::server`).

use crate::tsql::{self, ParsedStatement};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use vdi_host::buffers::ServerBuffers;
use vdi_host::remote::shm::{Geometry, ServerPool};
use vdi_host::remote::wire::{
    self, DatabaseInfo, Frame, LineMessage, PROTOCOL, Request, Response, ServerStatus,
};
use vdi_host::server::{HostMsg, HostSetup, ServerHost, SetEnd, SetKey};
use vdi_model::content::Content;
use vdi_model::fault::{FaultPlan, Trigger};
use vdi_model::msg::{DevIx, ToClient, ToServer};
use vdi_model::outcome::{Outcome, SqlMessage, Status};
use vdi_model::statement::{BackupRecord, Statement, StatementKind};
use vdi_spec::{CommandCode, Profile, VdConfig};

/// Buffer data bytes per buffer: the largest MAXTRANSFERSIZE (the statement
/// is not known when the set connects); pages are touched only up to each
/// command's size.
const BUFFER_BYTES: u32 = 4 * 1024 * 1024;
/// Data-zone alignment (at least the largest BLOCKSIZE).
const BUFFER_ALIGN: u32 = 65536;

/// The databases a server has when none are configured.
pub const DEFAULT_DATABASES: &[(&str, u64)] =
    &[("sales", 8 * 1024 * 1024), ("inventory", 64 * 1024 * 1024)];

/// How `vdisim serve` runs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The socket path to listen on.
    pub listen: PathBuf,
    /// The name messages show (`@@SERVERNAME`).
    pub server_name: String,
    /// Databases: name and size in bytes.
    pub databases: Vec<(String, u64)>,
    pub profile: Profile,
    pub seed: u64,
    /// Faults applied to every statement (the server-side ones; the
    /// library reports fetches when one of them is triggered by a fetch).
    pub faults: FaultPlan,
    /// Append each statement's server trace (JSONL) here.
    pub trace: Option<PathBuf>,
}

impl ServeConfig {
    /// Defaults: the per-user socket, the default databases, the default
    /// profile, seed 0, no faults, no trace.
    pub fn new(listen: PathBuf) -> ServeConfig {
        ServeConfig {
            listen,
            server_name: "VDISIM".into(),
            databases: DEFAULT_DATABASES
                .iter()
                .map(|(n, s)| (n.to_string(), *s))
                .collect(),
            profile: Profile::default(),
            seed: 0,
            faults: FaultPlan::none(),
            trace: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error(
        "a server is already listening at {0}; stop it, or choose another path with --listen or VDISIM_SERVER"
    )]
    InUse(PathBuf),
    #[error("cannot listen at {path}: {err}")]
    Listen { path: PathBuf, err: io::Error },
    #[error("cannot open the trace file {path}: {err}")]
    Trace { path: PathBuf, err: io::Error },
}

#[derive(Clone, Debug)]
struct Db {
    size: u64,
    content: u64,
    state: &'static str,
    restored_from: Option<u32>,
}

#[derive(Default)]
struct Catalog {
    databases: BTreeMap<String, Db>,
    history: Vec<BackupRecord>,
    /// Backup number → (content digest, size) of the database it copied.
    backed_up: BTreeMap<u32, (u64, u64)>,
}

/// A set incarnation in a client process, reached over its connection.
struct RemoteEnd {
    key: SetKey,
    cfg: VdConfig,
    writer: Mutex<UnixStream>,
    pool: ServerPool,
    closed: AtomicBool,
    dead: AtomicBool,
    /// The host its messages go to, while a statement is bound to it.
    route: Mutex<Option<Sender<HostMsg>>>,
}

impl RemoteEnd {
    fn forward(&self, msg: ToServer) {
        if let Some(tx) = &*self.route.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = tx.send(HostMsg::Client { key: self.key, msg });
        }
    }

    /// The library reported a fetch (only when the Welcome asked).
    fn fetched(&self, dev: DevIx, code: CommandCode) {
        if let Some(tx) = &*self.route.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = tx.send(HostMsg::Fetched {
                key: self.key,
                dev,
                code,
            });
        }
    }
}

impl SetEnd for RemoteEnd {
    fn deliver(&self, msg: ToClient) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let msg = match msg {
            ToClient::Command(mut c) => {
                if c.buffer.is_some() {
                    for m in self.pool.take_announcements() {
                        let _ = wire::write_frame(&mut *w, &Frame::Map(m));
                    }
                }
                // The bytes are in the shared buffer; the socket carries
                // only the command block.
                c.data = Content::Empty;
                ToClient::Command(c)
            }
            m => m,
        };
        let _ = wire::write_frame(&mut *w, &Frame::ToClient { msg });
    }
    fn live(&self) -> Option<VdConfig> {
        (!self.closed.load(Ordering::SeqCst) && !self.dead.load(Ordering::SeqCst))
            .then_some(self.cfg)
    }
    fn buffers(&self) -> &dyn ServerBuffers {
        &self.pool
    }
}

/// A harness case on the server.
struct CaseEntry {
    host: Arc<ServerHost>,
    /// Sets bound to its statements (unrouted when it finishes).
    bound: Mutex<Vec<Arc<RemoteEnd>>>,
}

struct Inner {
    cfg: ServeConfig,
    cases: Mutex<BTreeMap<u64, Arc<CaseEntry>>>,
    next_case: AtomicU64,
    catalog: Mutex<Catalog>,
    sets: Mutex<BTreeMap<String, Arc<RemoteEnd>>>,
    next_conn: AtomicUsize,
    statements: AtomicU64,
    stop: AtomicBool,
    trace: Mutex<Option<File>>,
}

/// A running server.
pub struct Server {
    inner: Arc<Inner>,
    accept: Option<std::thread::JoinHandle<()>>,
}

fn digest(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, p| vdi_model::trace::fnv1a(h, p))
}

fn prepare_socket(path: &Path) -> Result<UnixListener, ServeError> {
    let err = |err| ServeError::Listen {
        path: path.to_path_buf(),
        err,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ServeError::InUse(path.to_path_buf()));
        }
        // A socket file left by a server that is gone.
        std::fs::remove_file(path).map_err(err)?;
    }
    UnixListener::bind(path).map_err(err)
}

impl Server {
    /// Binds the socket and starts accepting connections.
    pub fn start(cfg: ServeConfig) -> Result<Server, ServeError> {
        let listener = prepare_socket(&cfg.listen)?;
        let trace = match &cfg.trace {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|err| ServeError::Trace {
                        path: p.clone(),
                        err,
                    })?,
            ),
            None => None,
        };
        let mut catalog = Catalog::default();
        for (name, size) in &cfg.databases {
            catalog.databases.insert(
                name.clone(),
                Db {
                    size: *size,
                    content: digest(&[name.as_bytes(), &cfg.seed.to_le_bytes()]),
                    state: "online",
                    restored_from: None,
                },
            );
        }
        let inner = Arc::new(Inner {
            cfg,
            cases: Mutex::new(BTreeMap::new()),
            next_case: AtomicU64::new(1),
            catalog: Mutex::new(catalog),
            sets: Mutex::new(BTreeMap::new()),
            next_conn: AtomicUsize::new(1),
            statements: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            trace: Mutex::new(trace),
        });
        let i2 = inner.clone();
        let accept = std::thread::Builder::new()
            .name("vdisim-serve-accept".into())
            .spawn(move || i2.accept_loop(listener))
            .map_err(|err| ServeError::Listen {
                path: inner.cfg.listen.clone(),
                err,
            })?;
        Ok(Server {
            inner,
            accept: Some(accept),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.inner.cfg.listen
    }

    /// Blocks until a `Shutdown` request (or [`Server::shutdown`]).
    pub fn wait(mut self) {
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }

    /// Stops accepting and removes the socket file.
    pub fn shutdown(&self) {
        self.inner.request_stop();
    }

    /// What the server holds now.
    pub fn status(&self) -> ServerStatus {
        self.inner.status()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.inner.request_stop();
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn request_stop(&self) {
        if !self.stop.swap(true, Ordering::SeqCst) {
            // Wake the accept loop.
            let _ = UnixStream::connect(&self.cfg.listen);
        }
    }

    fn accept_loop(self: Arc<Self>, listener: UnixListener) {
        for conn in listener.incoming() {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(s) = conn else { continue };
            let me = self.clone();
            let _ = std::thread::Builder::new()
                .name("vdisim-serve-conn".into())
                .spawn(move || me.connection(s));
        }
        let _ = std::fs::remove_file(&self.cfg.listen);
    }

    fn connection(self: Arc<Self>, mut s: UnixStream) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let first = wire::read_frame(&mut s);
        let _ = s.set_read_timeout(None);
        match first {
            Ok(Some(Frame::HelloSet {
                protocol,
                pid,
                name,
                cfg,
            })) => {
                let refused = if protocol != PROTOCOL {
                    Some(format!(
                        "protocol {protocol} is not this server's ({PROTOCOL}): use the library and vdisim of one build"
                    ))
                } else if let Err(e) = cfg.validate_client() {
                    // The library validates at Create; anything else
                    // speaking the protocol gets the same check.
                    Some(format!("invalid VDConfig for set '{name}': {e}"))
                } else {
                    None
                };
                if let Some(reason) = refused {
                    let _ = wire::write_frame(&mut s, &Frame::Refused { reason });
                    return;
                }
                self.set_connection(s, name, cfg, pid);
            }
            Ok(Some(Frame::HelloControl { protocol, .. })) => {
                if protocol != PROTOCOL {
                    let _ = wire::write_frame(
                        &mut s,
                        &Frame::Response(Response::Error {
                            message: format!(
                                "protocol {protocol} is not this server's ({PROTOCOL})"
                            ),
                        }),
                    );
                    return;
                }
                self.control_connection(s);
            }
            _ => {}
        }
    }

    // ----- set connections ---------------------------------------------------------------

    fn set_connection(self: &Arc<Self>, s: UnixStream, name: String, cfg: VdConfig, pid: u32) {
        let Ok(mut read) = s.try_clone() else { return };
        let key = (self.next_conn.fetch_add(1, Ordering::Relaxed), 0);
        let geo = Geometry::new(
            cfg.prefix_zone_size,
            BUFFER_BYTES,
            cfg.alignment.max(BUFFER_ALIGN),
        );
        let end = Arc::new(RemoteEnd {
            key,
            cfg,
            writer: Mutex::new(s),
            pool: ServerPool::new(geo),
            closed: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            route: Mutex::new(None),
        });
        // Known before the client hears back: a statement sent right after
        // Create returns must find the set.
        lock(&self.sets).insert(name.clone(), end.clone());
        let welcomed = {
            let mut w = lock(&end.writer);
            wire::write_frame(
                &mut *w,
                &Frame::Welcome {
                    server: self.cfg.server_name.clone(),
                    fetches: self.wants_fetches(),
                },
            )
            .is_ok()
        };
        let forget = |me: &Self| {
            let mut sets = lock(&me.sets);
            if sets.get(&name).is_some_and(|e| Arc::ptr_eq(e, &end)) {
                sets.remove(&name);
            }
        };
        if !welcomed {
            forget(self);
            return;
        }
        self.trace_set("created", &name, pid);
        loop {
            match wire::read_frame(&mut read) {
                Ok(Some(Frame::ToServer { msg })) => {
                    if msg == ToServer::Closed {
                        end.closed.store(true, Ordering::SeqCst);
                        forget(self);
                        self.trace_set("closed", &name, pid);
                    } else if msg == ToServer::Died {
                        self.trace_set("client-died", &name, pid);
                    }
                    end.forward(msg);
                }
                Ok(Some(Frame::Mapped { chunk })) => end.pool.unlink(chunk),
                Ok(Some(Frame::Fetched { dev, code })) => end.fetched(dev, code),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    if !end.closed.load(Ordering::SeqCst) {
                        // The client process died (or dropped the set
                        // without Close): clause abort.client-death.
                        end.dead.store(true, Ordering::SeqCst);
                        end.forward(ToServer::Died);
                        self.trace_set("connection-lost", &name, pid);
                    }
                    forget(self);
                    return;
                }
            }
        }
    }

    /// Binds the live set `name` to `host`: the host learns of it and
    /// its client messages go there.
    fn bind(&self, host: &ServerHost, name: &str) -> Option<Arc<RemoteEnd>> {
        let end = lock(&self.sets).get(name).cloned()?;
        host.send(HostMsg::Connect {
            key: end.key,
            name: name.to_string(),
            end: end.clone(),
        });
        *lock(&end.route) = Some(host.sender());
        Some(end)
    }

    // ----- control connections -----------------------------------------------------------

    fn control_connection(self: &Arc<Self>, mut s: UnixStream) {
        // The case this connection created or attached to, if any. A case
        // lives until it is finished or the connection that created it ends;
        // other connections may attach to it (concurrent requests).
        let mut case: Option<(u64, Arc<CaseEntry>)> = None;
        let mut owned: Vec<u64> = Vec::new();
        let mut database: Option<String> = None;
        loop {
            let req = match wire::read_frame(&mut s) {
                Ok(Some(Frame::Request(r))) => r,
                Ok(Some(_)) => Request::Status,
                Ok(None) | Err(_) => break,
            };
            let resp = match req {
                Request::Sql {
                    text,
                    database: db,
                    first_line: _,
                } => {
                    if db.is_some() {
                        database = db;
                    }
                    Response::Sql {
                        messages: self.run_batch(&text, &mut database),
                    }
                }
                Request::Reset { setup } => {
                    for id in owned.drain(..) {
                        if let Some(old) = lock(&self.cases).remove(&id) {
                            old.host.stop();
                        }
                    }
                    let id = self.next_case.fetch_add(1, Ordering::Relaxed);
                    let entry = Arc::new(CaseEntry {
                        host: ServerHost::start(HostSetup::for_case(&setup)),
                        bound: Mutex::new(Vec::new()),
                    });
                    lock(&self.cases).insert(id, entry.clone());
                    owned.push(id);
                    case = Some((id, entry));
                    Response::Case { id }
                }
                Request::Attach { case: id } => match lock(&self.cases).get(&id).cloned() {
                    Some(e) => {
                        case = Some((id, e));
                        Response::Ok
                    }
                    None => Response::Error {
                        message: format!("no case {id} on this server"),
                    },
                },
                Request::Statement { stmt } => match &case {
                    Some((_, c)) => {
                        let name = stmt.devices.first().cloned().unwrap_or_default();
                        if let Some(e) = self.bind(&c.host, &name) {
                            lock(&c.bound).push(e);
                        }
                        c.host.start_statement(stmt);
                        Response::Ok
                    }
                    None => no_case(),
                },
                Request::Event { fault } => match &case {
                    Some((_, c)) => match c.host.event(fault) {
                        Ok(()) => Response::Ok,
                        Err(message) => Response::Error { message },
                    },
                    None => no_case(),
                },
                Request::Wait { timeout_ms } => match &case {
                    Some((_, c)) => Response::Outcome {
                        outcome: c.host.wait_statement(timeout_ms.map(Duration::from_millis)),
                    },
                    None => no_case(),
                },
                Request::Finish { settle_ms } => match case.take() {
                    Some((id, c)) => {
                        let obs = c.host.finish(Duration::from_millis(settle_ms));
                        for e in lock(&c.bound).drain(..) {
                            *lock(&e.route) = None;
                        }
                        lock(&self.cases).remove(&id);
                        owned.retain(|x| *x != id);
                        Response::Observation { obs: Box::new(obs) }
                    }
                    None => no_case(),
                },
                Request::Status => Response::Status {
                    status: self.status(),
                },
                Request::Shutdown => {
                    let _ = wire::write_frame(&mut s, &Frame::Response(Response::Ok));
                    self.request_stop();
                    break;
                }
            };
            if wire::write_frame(&mut s, &Frame::Response(resp)).is_err() {
                break;
            }
        }
        for id in owned {
            if let Some(c) = lock(&self.cases).remove(&id) {
                c.host.stop();
            }
        }
    }

    fn status(&self) -> ServerStatus {
        let c = lock(&self.catalog);
        ServerStatus {
            server: self.cfg.server_name.clone(),
            databases: c
                .databases
                .iter()
                .map(|(n, d)| DatabaseInfo {
                    name: n.clone(),
                    size: d.size,
                    content: format!("{:016x}", d.content),
                    state: d.state.to_string(),
                    restored_from: d.restored_from,
                })
                .collect(),
            sets: lock(&self.sets).keys().cloned().collect(),
            backups: u32::try_from(c.history.len()).unwrap_or(u32::MAX),
            statements: self.statements.load(Ordering::Relaxed),
        }
    }

    // ----- T-SQL -------------------------------------------------------------------------

    fn run_batch(&self, text: &str, database: &mut Option<String>) -> Vec<LineMessage> {
        let parsed = match tsql::parse_batch_located(text) {
            Ok(p) => p,
            Err(e) => {
                return vec![LineMessage {
                    message: e.to_message(),
                    line: e.line.max(1),
                }];
            }
        };
        let mut out = Vec::new();
        for p in parsed {
            // Lines are relative to the batch, as SQL Server reports them.
            let line = p.line.max(1);
            match p.statement {
                ParsedStatement::Use(db) => {
                    if lock(&self.catalog).databases.contains_key(&db) {
                        *database = Some(db);
                    } else {
                        out.push(LineMessage {
                            message: no_database(&db),
                            line,
                        });
                    }
                }
                ParsedStatement::Run(stmt) => {
                    for m in self.run_statement(stmt) {
                        out.push(LineMessage { message: m, line });
                    }
                }
            }
        }
        out
    }

    /// Runs one BACKUP or RESTORE to its end and returns its messages.
    fn run_statement(&self, mut stmt: Statement) -> Vec<SqlMessage> {
        self.statements.fetch_add(1, Ordering::Relaxed);
        let history = {
            let c = lock(&self.catalog);
            if stmt.kind.is_backup() {
                match c.databases.get(&stmt.database) {
                    Some(db) if db.state == "online" => stmt.plan.data_bytes = db.size,
                    Some(_) => {
                        return vec![
                            SqlMessage::error(
                                927,
                                format!(
                                    "Database '{}' cannot be opened. It is in the middle of a restore.",
                                    stmt.database
                                ),
                            ),
                            vdi_model::server::messages::terminating(stmt.kind),
                        ];
                    }
                    None => {
                        return vec![
                            no_database(&stmt.database),
                            vdi_model::server::messages::terminating(stmt.kind),
                        ];
                    }
                }
            }
            c.history.clone()
        };
        // The backup the server half will read (its own rule).
        let restoring = (stmt.kind == StatementKind::RestoreDatabase)
            .then(|| vdi_model::statement::backup_to_restore(&history, &stmt.database))
            .flatten()
            .map(|r| r.number);
        let setup = HostSetup {
            profile: self.cfg.profile.clone(),
            seed_backups: history,
            time_scale: 1,
            budget_ms: 0,
            faults: self.server_faults(),
            record: self.cfg.trace.is_some(),
        };
        let host = ServerHost::start(setup);
        let name = stmt.devices.first().cloned().unwrap_or_default();
        let end = self.bind(&host, &name);
        host.start_statement(stmt.clone());
        let outcome = host.wait_statement(None).unwrap_or_else(|| Outcome {
            status: Status::Failed,
            ..Outcome::default()
        });
        let obs = host.finish(Duration::from_secs(1));
        if let Some(e) = end {
            *lock(&e.route) = None;
        }
        self.write_trace(&stmt, &outcome, &obs.trace_jsonl);
        let mut c = lock(&self.catalog);
        if outcome.succeeded() {
            for rec in &obs.new_backups {
                if let Some(db) = c.databases.get(&rec.database) {
                    let v = (db.content, db.size);
                    c.backed_up.insert(rec.number, v);
                }
                c.history.push(rec.clone());
            }
        }
        if let Some(number) = restoring {
            let from = c.backed_up.get(&number).copied();
            let db = c.databases.entry(stmt.database.clone()).or_insert(Db {
                size: 0,
                content: 0,
                state: "restoring",
                restored_from: None,
            });
            match (outcome.succeeded(), from) {
                (true, Some((content, size))) => {
                    *db = Db {
                        size,
                        content,
                        state: "online",
                        restored_from: Some(number),
                    };
                }
                (true, None) => {
                    db.state = "online";
                    db.restored_from = Some(number);
                }
                (false, _) => db.state = "restoring",
            }
        }
        outcome.messages
    }

    /// The server-side faults of the configured plan: what each
    /// statement's host fires (the client's own faults are the client's).
    fn server_faults(&self) -> FaultPlan {
        FaultPlan {
            name: self.cfg.faults.name.clone(),
            faults: self
                .cfg
                .faults
                .faults
                .iter()
                .filter(|pf| pf.fault.is_server_side())
                .cloned()
                .collect(),
        }
    }

    /// Whether set connections must report the commands their client
    /// fetches: a server-side fault of the plan is triggered by a fetch.
    fn wants_fetches(&self) -> bool {
        self.cfg
            .faults
            .faults
            .iter()
            .any(|pf| pf.fault.is_server_side() && matches!(pf.trigger, Trigger::OnCommand { .. }))
    }

    /// Appends one line about a set connection to the trace file (if any).
    fn trace_set(&self, event: &str, name: &str, pid: u32) {
        let mut g = lock(&self.trace);
        let Some(f) = g.as_mut() else { return };
        #[derive(Serialize)]
        struct Line<'a> {
            set: &'a str,
            event: &'a str,
            pid: u32,
        }
        let l = Line {
            set: name,
            event,
            pid,
        };
        let _ = writeln!(f, "{}", serde_json::to_string(&l).unwrap_or_default());
        let _ = f.flush();
    }

    fn write_trace(&self, stmt: &Statement, outcome: &Outcome, jsonl: &str) {
        let mut g = lock(&self.trace);
        let Some(f) = g.as_mut() else { return };
        #[derive(Serialize)]
        struct Header<'a> {
            statement: String,
            status: Status,
            messages: Vec<u32>,
            trace: &'a str,
        }
        let h = Header {
            statement: stmt.to_tsql(),
            status: outcome.status,
            messages: outcome.messages.iter().map(|m| m.number).collect(),
            trace: "follows",
        };
        let _ = writeln!(f, "{}", serde_json::to_string(&h).unwrap_or_default());
        let _ = f.write_all(jsonl.as_bytes());
        let _ = f.flush();
    }
}

fn no_case() -> Response {
    Response::Error {
        message: "no case on this connection: send reset (or attach) first".into(),
    }
}

/// Msg 911: the database does not exist.
fn no_database(db: &str) -> SqlMessage {
    SqlMessage::error(
        911,
        format!("Database '{db}' does not exist. Make sure that the name is entered correctly."),
    )
}

/// `vdisim sqlcmd`'s transport: each batch goes to a `vdisim serve` over a
/// control connection. `-S` names the server: a value containing `/` (or
/// prefixed `unix:`) is the socket path; any other value (`localhost`,
/// `tcp:host,1433`, `.\INSTANCE`) means the server the environment names
/// (`VDISIM_SERVER`, else the per-user default).
pub struct ServeExecutor {
    server: String,
    path: std::path::PathBuf,
    conn: Option<vdi_host::remote::control::Control>,
}

impl ServeExecutor {
    /// An executor for `-S server` (or none).
    pub fn new(server: Option<&str>) -> ServeExecutor {
        let s = server.unwrap_or("localhost");
        let path = match s.strip_prefix("unix:") {
            Some(p) => PathBuf::from(p),
            None if s.contains('/') => PathBuf::from(s),
            None => vdi_host::remote::address(),
        };
        ServeExecutor {
            server: s.to_string(),
            path,
            conn: None,
        }
    }

    /// The server's name (`@@SERVERNAME`, what its messages show), if it
    /// can be reached.
    pub fn server_name(&mut self) -> Option<String> {
        match self.conn().ok()?.request(Request::Status) {
            Ok(Response::Status { status }) => Some(status.server),
            _ => None,
        }
    }

    fn conn(
        &mut self,
    ) -> Result<&mut vdi_host::remote::control::Control, crate::sqlcmd::ExecError> {
        if self.conn.is_none() {
            let c =
                vdi_host::remote::control::Control::connect(&self.path, "sqlcmd").map_err(|e| {
                    crate::sqlcmd::ExecError::Connect {
                        server: self.server.clone(),
                        reason: format!("no vdisim serve at {} ({e})", self.path.display()),
                    }
                })?;
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| crate::sqlcmd::ExecError::Lost("no connection".into()))
    }
}

impl crate::sqlcmd::Executor for ServeExecutor {
    fn connect(&mut self, _database: Option<&str>) -> Result<(), crate::sqlcmd::ExecError> {
        self.conn().map(|_| ())
    }

    fn execute(
        &mut self,
        batch: &str,
        database: Option<&str>,
        first_line: u32,
    ) -> Result<crate::sqlcmd::BatchResult, crate::sqlcmd::ExecError> {
        let c = self.conn()?;
        let r = c.request(Request::Sql {
            text: batch.to_string(),
            database: database.map(str::to_string),
            first_line,
        });
        match r {
            Ok(Response::Sql { messages }) => Ok(crate::sqlcmd::BatchResult {
                messages: messages
                    .into_iter()
                    .map(|m| crate::sqlcmd::ServerMessage {
                        msg: m.message,
                        line: m.line,
                    })
                    .collect(),
            }),
            Ok(Response::Error { message }) => Err(crate::sqlcmd::ExecError::Lost(message)),
            Ok(other) => Err(crate::sqlcmd::ExecError::Lost(format!(
                "unexpected answer {other:?}"
            ))),
            Err(e) => {
                self.conn = None;
                Err(crate::sqlcmd::ExecError::Lost(e.to_string()))
            }
        }
    }
}
