//! Harness mode: the conformance harness controls the in-process server case
//! by case through exported C functions (JSON in and out), instead of a plan
//! file.
//!
//! - [`vdisim_harness_reset`] starts a case: `{seed, profile, seed_backups,
//!   budget_ms}`. Every set object made afterwards in this process runs
//!   under that profile and is connected to one server thread per case,
//!   hosting one [`ServerHalf`] that **waits for statements** (the plan file,
//!   `VDISIM_PLAN`, is ignored while a case is active). msdb history is
//!   seeded from `seed_backups`.
//! - [`vdisim_harness_start_statement`] hands the server a
//!   [`Statement`]; it opens the live set named by `devices[0]` (none: the
//!   statement fails as `server.open-missing-set` says).
//! - [`vdisim_harness_event`] applies a server-side [`Fault`] now.
//! - [`vdisim_harness_wait_statement`] waits for the statement's outcome.
//! - [`vdisim_harness_finish`] ends the case and returns what was observed:
//!   every statement with its outcome, the server's per-device summaries,
//!   the clauses the client and server halves cited, the server trace hash.
//!
//! The harness is process-global: one case at a time per process.
//!
//! Return codes: [`OK`] (0), [`TIMED_OUT`] (1), [`ERR_JSON`] (-1),
//! [`ERR_NO_CASE`] (-2), [`ERR_UNSUPPORTED`] (-3), [`ERR_BUFFER`] (-4),
//! [`ERR_PANIC`] (-5).

use crate::inproc::Pool;
use crate::runtime::{self, Connection, Connector, NewSet, SetRuntime, Transport};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};
use thiserror::Error;
use vdi_sim::data;
use vdi_sim::fault::Fault;
use vdi_sim::msg::{BufId, CmdId, ToClient, ToServer};
use vdi_sim::outcome::{FailReason, Outcome, Status};
use vdi_sim::server::{ServerDevSummary, ServerHalf, SetInfo};
use vdi_sim::statement::{BackupRecord, Statement};
use vdi_sim::trace::Trace;
use vdi_spec::{CommandCode, Profile};

/// Success / final.
pub const OK: i32 = 0;
/// The wait timed out before the outcome was final.
pub const TIMED_OUT: i32 = 1;
/// The JSON argument is malformed (or a null pointer).
pub const ERR_JSON: i32 = -1;
/// No case is active (call `vdisim_harness_reset` first).
pub const ERR_NO_CASE: i32 = -2;
/// The event cannot be applied by the in-process server.
pub const ERR_UNSUPPORTED: i32 = -3;
/// The output buffer is too small (`needed` says how big it must be).
pub const ERR_BUFFER: i32 = -4;
/// The library caught a panic.
pub const ERR_PANIC: i32 = -5;

/// Buffer data bytes in harness mode: the largest MAXTRANSFERSIZE, since
/// the statement (and so its MAXTRANSFERSIZE) is not known when the set is
/// created. Pages are only touched up to each command's size.
const POOL_BYTES: u32 = 4 * 1024 * 1024;
/// Data-zone alignment in harness mode (at least the largest BLOCKSIZE).
const POOL_ALIGN: u32 = 65536;

/// The setup of one case.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HarnessSetup {
    pub seed: u64,
    pub profile: Profile,
    pub seed_backups: Vec<BackupRecord>,
    /// Virtual-time budget of the case (ms); informational.
    pub budget_ms: u64,
}

/// What a case observed (the JSON of `vdisim_harness_finish`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Observation {
    /// Every statement started, with its outcome, in order.
    pub statements: Vec<(Statement, Outcome)>,
    /// The server's per-device summaries of the last statement.
    pub devices: Vec<ServerDevSummary>,
    /// Clause ids cited by the client half (calls, notes) and the server half.
    pub clauses: BTreeMap<String, u64>,
    /// FNV-1a hash of the server half's trace (hex).
    pub trace_hash: String,
    /// Milliseconds since the case started.
    pub elapsed_ms: u64,
    /// Whether the server was idle (no statement running) at the end.
    pub idle: bool,
    /// Server-side events applied.
    pub faults_fired: Vec<String>,
}

/// Why a harness call failed.
#[derive(Debug, Error)]
pub enum HarnessError {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("no harness case is active")]
    NoCase,
    #[error("unsupported by the in-process server: {0}")]
    Unsupported(String),
}

impl HarnessError {
    fn code(&self) -> i32 {
        match self {
            HarnessError::Json(_) => ERR_JSON,
            HarnessError::NoCase => ERR_NO_CASE,
            HarnessError::Unsupported(_) => ERR_UNSUPPORTED,
        }
    }
}

enum Msg {
    Connect {
        rt: Weak<SetRuntime>,
        key: (usize, u32),
        name: String,
        pool: Arc<Pool>,
    },
    Client {
        key: (usize, u32),
        msg: ToServer,
    },
    Statement(Box<Statement>),
    Fault(Fault, Sender<()>),
    Stop,
}

#[derive(Default)]
struct Published {
    statements: Vec<(Statement, Outcome)>,
    devices: Vec<ServerDevSummary>,
    clauses: BTreeMap<String, u64>,
    trace_hash: String,
    idle: bool,
    faults: Vec<String>,
    stopped: bool,
}

#[derive(Default)]
struct Shared {
    st: Mutex<Published>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One active case.
pub struct Case {
    profile: Arc<Profile>,
    tx: Mutex<Sender<Msg>>,
    shared: Arc<Shared>,
    started: Instant,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    connector: Arc<HarnessConnector>,
}

impl Case {
    fn send(&self, m: Msg) {
        let _ = self.tx.lock().unwrap_or_else(|e| e.into_inner()).send(m);
    }

    /// The profile of the case.
    pub fn profile(&self) -> Arc<Profile> {
        self.profile.clone()
    }

    /// The connector every set object of the case uses.
    pub fn connector(&self) -> Arc<dyn Connector> {
        self.connector.clone()
    }
}

static CASE: Mutex<Option<Arc<Case>>> = Mutex::new(None);

fn case_slot() -> std::sync::MutexGuard<'static, Option<Arc<Case>>> {
    CASE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The active case, if the harness has started one.
pub fn active() -> Option<Arc<Case>> {
    case_slot().clone()
}

struct HarnessTransport {
    tx: Mutex<Sender<Msg>>,
    key: (usize, u32),
}

impl Transport for HarnessTransport {
    fn send(&self, msg: ToServer) {
        let _ = self
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Msg::Client { key: self.key, msg });
    }
}

/// Connects each set incarnation to the case's server thread.
pub struct HarnessConnector {
    tx: Mutex<Sender<Msg>>,
}

impl Connector for HarnessConnector {
    fn connect(&self, runtime: Weak<SetRuntime>, set: &NewSet) -> Connection {
        let key = (runtime.as_ptr() as usize, set.incarnation);
        let pool = Arc::new(Pool::new(
            set.cfg.prefix_zone_size,
            POOL_BYTES,
            set.cfg.alignment.max(POOL_ALIGN),
        ));
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _ = tx.send(Msg::Connect {
            rt: runtime,
            key,
            name: set.name.clone(),
            pool: pool.clone(),
        });
        Connection {
            transport: Arc::new(HarnessTransport {
                tx: Mutex::new(tx),
                key,
            }),
            buffers: Some(pool),
        }
    }
}

// ----- the Rust API --------------------------------------------------------------------

/// Starts a case (ending any previous one).
pub fn reset(setup: HarnessSetup) {
    let old = case_slot().take();
    if let Some(c) = old {
        stop(&c);
    }
    runtime::tally_reset(true);
    *LAST_OBSERVATION.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared::default());
    let profile = Arc::new(setup.profile.clone());
    let started = Instant::now();
    let server = Server::new(setup, profile.clone(), rx, shared.clone(), started);
    let handle = std::thread::Builder::new()
        .name("vdisim-harness-server".into())
        .spawn(move || server.run())
        .ok();
    let case = Arc::new(Case {
        profile,
        tx: Mutex::new(tx.clone()),
        shared,
        started,
        thread: Mutex::new(handle),
        connector: Arc::new(HarnessConnector { tx: Mutex::new(tx) }),
    });
    *case_slot() = Some(case);
}

fn need() -> Result<Arc<Case>, HarnessError> {
    active().ok_or(HarnessError::NoCase)
}

/// Starts `stmt` on the case's server.
pub fn start_statement(stmt: Statement) -> Result<(), HarnessError> {
    let c = need()?;
    // Mark it running at once, so a wait right after sees it.
    c.shared.lock().statements.push((
        stmt.clone(),
        Outcome {
            status: Status::Running,
            ..Outcome::default()
        },
    ));
    c.send(Msg::Statement(Box::new(stmt)));
    Ok(())
}

/// Applies a server-side event now.
pub fn event(f: Fault) -> Result<(), HarnessError> {
    let c = need()?;
    match f {
        Fault::ServerSignalAbort
        | Fault::ServerDeath
        | Fault::ServerStall { .. }
        | Fault::EarlyCloseDevice { .. } => {
            // Applied before this returns, as in the model: the client's
            // next call sees it.
            let (ack, done) = mpsc::channel();
            c.send(Msg::Fault(f, ack));
            let _ = done.recv_timeout(Duration::from_secs(10));
            Ok(())
        }
        other => Err(HarnessError::Unsupported(format!(
            "{} is a client-side fault: the client applies it itself",
            other.kind()
        ))),
    }
}

/// Waits up to `timeout` (`None`: forever) for the latest statement's
/// outcome; `Ok(Some)` when final, `Ok(None)` on timeout (or no statement).
pub fn wait_statement(timeout: Option<Duration>) -> Result<Option<Outcome>, HarnessError> {
    let c = need()?;
    let dl = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut g = c.shared.lock();
    loop {
        if let Some((_, o)) = g.statements.last()
            && o.status.is_final()
        {
            return Ok(Some(o.clone()));
        }
        if g.stopped {
            return Ok(None);
        }
        match dl {
            None => g = c.shared.cond.wait(g).unwrap_or_else(|e| e.into_inner()),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Ok(None);
                }
                g = c
                    .shared
                    .cond
                    .wait_timeout(g, d - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
}

/// Ends the case: waits up to `settle` for the server to become idle, stops
/// it, and returns what was observed. The case stays "active" (sets still
/// connect, to a stopped server) until the next reset, so objects destroyed
/// afterwards do not fall back to the plan file.
pub fn finish(settle: Duration) -> Result<Observation, HarnessError> {
    let c = need()?;
    let dl = Instant::now() + settle;
    {
        let mut g = c.shared.lock();
        while !g.idle && !g.stopped {
            let now = Instant::now();
            if now >= dl {
                break;
            }
            g = c
                .shared
                .cond
                .wait_timeout(g, dl - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
    stop(&c);
    let g = c.shared.lock();
    let mut clauses = g.clauses.clone();
    for (k, v) in runtime::tally_take() {
        *clauses.entry(k.to_string()).or_default() += v;
    }
    Ok(Observation {
        statements: g.statements.clone(),
        devices: g.devices.clone(),
        clauses,
        trace_hash: g.trace_hash.clone(),
        elapsed_ms: u64::try_from(c.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        idle: g.idle,
        faults_fired: g.faults.clone(),
    })
}

fn stop(c: &Case) {
    c.send(Msg::Stop);
    let h = c.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(h) = h {
        let _ = h.join();
    }
    let mut g = c.shared.lock();
    g.stopped = true;
    c.shared.cond.notify_all();
}

// ----- the server thread -------------------------------------------------------------

struct Conn {
    rt: Weak<SetRuntime>,
    key: (usize, u32),
    pool: Arc<Pool>,
}

struct Server {
    server: ServerHalf,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    started: Instant,
    tr: Trace,
    /// Latest connection per set name.
    conns: BTreeMap<String, Conn>,
    bound: Option<Conn>,
    reads: BTreeMap<CmdId, (BufId, u32)>,
    stalled_until: u64,
    stalled: VecDeque<((usize, u32), ToServer)>,
    alive: bool,
    statements: Vec<(Statement, Outcome)>,
    faults: Vec<String>,
    out: Vec<ToClient>,
}

impl Server {
    fn new(
        setup: HarnessSetup,
        profile: Arc<Profile>,
        rx: Receiver<Msg>,
        shared: Arc<Shared>,
        started: Instant,
    ) -> Server {
        let mut server = ServerHalf::new(profile);
        for rec in setup.seed_backups {
            server.add_backup(rec);
        }
        Server {
            server,
            rx,
            shared,
            started,
            tr: Trace::hashing(),
            conns: BTreeMap::new(),
            bound: None,
            reads: BTreeMap::new(),
            stalled_until: 0,
            stalled: VecDeque::new(),
            alive: true,
            statements: Vec::new(),
            faults: Vec::new(),
            out: Vec::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn run(mut self) {
        let ok = catch_unwind(AssertUnwindSafe(|| self.serve()));
        if ok.is_err() {
            eprintln!("vdisim: the harness server thread panicked");
            if let Some(b) = &self.bound
                && let Some(rt) = b.rt.upgrade()
            {
                rt.deliver_from(b.key.1, ToClient::Died);
            }
        }
        self.publish(true);
        let mut g = self.shared.lock();
        g.stopped = true;
        self.shared.cond.notify_all();
    }

    /// Publishes the statements' outcomes and idleness; with `full`, also
    /// the device summaries, clause hits and trace hash.
    fn publish(&mut self, full: bool) {
        if let Some(last) = self.statements.last_mut() {
            last.1 = if !self.alive && !self.server.outcome().status.is_final() {
                Outcome {
                    status: Status::Failed,
                    reason: Some(FailReason::ServerDied),
                    ..Outcome::default()
                }
            } else {
                self.server.outcome().clone()
            };
        }
        let mut g = self.shared.lock();
        // Statements the harness announced but the thread has not started
        // yet stay as announced.
        for (i, s) in self.statements.iter().enumerate() {
            if let Some(slot) = g.statements.get_mut(i) {
                *slot = s.clone();
            }
        }
        if full {
            g.devices = self.server.devices();
            g.clauses = self
                .tr
                .clause_hits()
                .iter()
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_string(), *v))
                .collect();
            g.trace_hash = self.tr.hash_hex();
        }
        g.idle = !self.alive || self.server.is_idle();
        g.faults = self.faults.clone();
        self.shared.cond.notify_all();
    }

    /// Sends the server half's output to the bound incarnation.
    fn flush(&mut self) {
        let msgs: Vec<ToClient> = std::mem::take(&mut self.out);
        for m in msgs {
            let Some(b) = &self.bound else { continue };
            if let ToClient::Command(c) = &m
                && let Some(buf) = c.buffer
            {
                if c.code == CommandCode::Read {
                    b.pool.ensure(buf);
                    self.reads.insert(c.id, (buf, c.size));
                } else {
                    b.pool.with_bytes(buf, c.size as usize, |bytes| {
                        let n = (c.data.len() as usize).min(bytes.len());
                        data::materialize(&c.data.slice(0, n as u64), &mut bytes[..n]);
                    });
                }
            }
            if let Some(rt) = b.rt.upgrade() {
                rt.deliver_from(b.key.1, m);
            }
        }
    }

    fn on_client(&mut self, key: (usize, u32), msg: ToServer) {
        let bound = self.bound.as_ref().map(|b| b.key);
        if bound != Some(key) || self.server.is_idle() || !self.alive {
            return;
        }
        let now = self.now();
        if now < self.stalled_until {
            self.stalled.push_back((key, msg));
            return;
        }
        let msg = match msg {
            ToServer::Completed(mut c) => {
                if let Some((b, size)) = self.reads.remove(&c.id)
                    && !c.auto
                    && c.bytes > 0
                    && let Some(conn) = &self.bound
                {
                    let n = c.bytes.min(u64::from(size)) as usize;
                    c.data = conn.pool.with_bytes(b, n, |buf| data::parse_tagged(buf));
                }
                ToServer::Completed(c)
            }
            m => m,
        };
        self.server
            .on_message(now, msg, &mut self.out, &mut self.tr);
        self.flush();
    }

    fn start(&mut self, stmt: Statement) {
        if let Some(last) = self.statements.last_mut()
            && self.server.outcome().status.is_final()
        {
            last.1 = self.server.outcome().clone();
        }
        self.statements.push((stmt.clone(), Outcome::default()));
        if !self.alive {
            return;
        }
        let name = stmt.devices.first().cloned().unwrap_or_default();
        let live = runtime::ProcessNamespace::lookup(&name);
        let set = live.map(|cfg| SetInfo {
            name: name.clone(),
            cfg,
        });
        self.bound = match (&set, self.conns.get(&name)) {
            (Some(_), Some(c)) => Some(Conn {
                rt: c.rt.clone(),
                key: c.key,
                pool: c.pool.clone(),
            }),
            _ => None,
        };
        let set = if self.bound.is_some() { set } else { None };
        self.reads.clear();
        let now = self.now();
        self.server
            .start(now, stmt, set, &mut self.out, &mut self.tr);
        self.flush();
    }

    fn fault(&mut self, f: Fault) {
        self.faults.push(f.kind().to_string());
        let now = self.now();
        if !self.alive {
            return;
        }
        match f {
            Fault::ServerSignalAbort => {
                self.server.signal_abort(now, &mut self.out, &mut self.tr);
                self.flush();
            }
            Fault::ServerDeath => {
                self.server.die(now, &mut self.tr);
                self.alive = false;
                self.stalled.clear();
                self.out.clear();
                self.out.push(ToClient::Died);
                self.flush();
            }
            Fault::ServerStall { ms } => self.stalled_until = now.saturating_add(ms),
            Fault::EarlyCloseDevice { dev } => {
                self.server
                    .close_device_early(now, dev, &mut self.out, &mut self.tr);
                self.flush();
            }
            _ => {}
        }
    }

    fn serve(&mut self) {
        loop {
            self.publish(false);
            let now = self.now();
            // Messages held by a stall, once it is over.
            if now >= self.stalled_until && !self.stalled.is_empty() {
                while let Some((k, m)) = self.stalled.pop_front() {
                    self.on_client(k, m);
                }
                continue;
            }
            let mut wake: Option<u64> = None;
            if self.alive {
                if let Some(d) = self.server.next_deadline() {
                    wake = Some(d.max(self.stalled_until));
                }
                if !self.stalled.is_empty() {
                    wake = Some(wake.map_or(self.stalled_until, |w| w.min(self.stalled_until)));
                }
            }
            let r = match wake {
                Some(w) => self
                    .rx
                    .recv_timeout(Duration::from_millis(w.saturating_sub(now))),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match r {
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Msg::Connect {
                    rt,
                    key,
                    name,
                    pool,
                }) => {
                    self.conns.insert(name, Conn { rt, key, pool });
                }
                Ok(Msg::Client { key, msg }) => self.on_client(key, msg),
                Ok(Msg::Statement(s)) => self.start(*s),
                Ok(Msg::Fault(f, ack)) => {
                    self.fault(f);
                    let _ = ack.send(());
                }
                Err(RecvTimeoutError::Timeout) => {
                    let now = self.now();
                    if self.alive
                        && now >= self.stalled_until
                        && self.server.next_deadline().is_some_and(|d| d <= now)
                    {
                        self.server.on_time(now, &mut self.out, &mut self.tr);
                        self.flush();
                    }
                }
            }
        }
    }
}

// ----- the C ABI ---------------------------------------------------------------------

fn guard(f: impl FnOnce() -> i32) -> i32 {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(ERR_PANIC)
}

/// # Safety
/// `p` must be null or a NUL-terminated string.
unsafe fn json_arg<T: for<'de> Deserialize<'de>>(p: *const c_char) -> Result<T, HarnessError> {
    if p.is_null() {
        return Err(HarnessError::Json("null pointer".into()));
    }
    // SAFETY: non-null and NUL-terminated per the caller.
    let s = unsafe { CStr::from_ptr(p) };
    let s = s
        .to_str()
        .map_err(|e| HarnessError::Json(format!("not UTF-8: {e}")))?;
    serde_json::from_str(s).map_err(|e| HarnessError::Json(e.to_string()))
}

/// Writes `text` NUL-terminated into `buf` (`len` bytes) and its size with
/// the NUL into `needed`; `Err(ERR_BUFFER)` if it does not fit.
///
/// # Safety
/// `buf` must be null or hold `len` writable bytes; `needed` null or writable.
unsafe fn write_out(text: &str, buf: *mut c_char, len: usize, needed: *mut usize) -> i32 {
    let bytes = text.as_bytes();
    if !needed.is_null() {
        // SAFETY: writable per the caller.
        unsafe { needed.write_unaligned(bytes.len() + 1) };
    }
    if buf.is_null() || len < bytes.len() + 1 {
        return ERR_BUFFER;
    }
    // SAFETY: `buf` holds `len >= bytes.len() + 1` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
        buf.add(bytes.len()).write(0);
    }
    OK
}

/// Starts a harness case: `setup_json` is a [`HarnessSetup`].
///
/// # Safety
/// `setup_json` must be null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_harness_reset(setup_json: *const c_char) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        match unsafe { json_arg::<HarnessSetup>(setup_json) } {
            Ok(s) => {
                reset(s);
                OK
            }
            Err(e) => e.code(),
        }
    })
}

/// Starts a statement (`statement_json`: a `vdi_sim::statement::Statement`).
///
/// # Safety
/// `statement_json` must be null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_harness_start_statement(statement_json: *const c_char) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        match unsafe { json_arg::<Statement>(statement_json) }.and_then(start_statement) {
            Ok(()) => OK,
            Err(e) => e.code(),
        }
    })
}

/// Applies a server-side event now (`fault_json`: a `vdi_sim::fault::Fault`).
/// Client-side faults answer [`ERR_UNSUPPORTED`].
///
/// # Safety
/// `fault_json` must be null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_harness_event(fault_json: *const c_char) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        match unsafe { json_arg::<Fault>(fault_json) }.and_then(event) {
            Ok(()) => OK,
            Err(e) => e.code(),
        }
    })
}

/// Waits up to `timeout_ms` (negative: forever) for the statement's outcome;
/// writes its JSON. 0 = final, 1 = timed out (the JSON is then `null`).
///
/// # Safety
/// `buf` must be null or hold `len` writable bytes; `needed` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_harness_wait_statement(
    timeout_ms: i64,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> i32 {
    guard(|| {
        let t = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        match wait_statement(t) {
            Ok(o) => {
                let text = serde_json::to_string(&o).unwrap_or_else(|_| "null".into());
                // SAFETY: forwarded from the caller.
                let w = unsafe { write_out(&text, buf, len, needed) };
                if w != OK {
                    w
                } else if o.is_some() {
                    OK
                } else {
                    TIMED_OUT
                }
            }
            Err(e) => e.code(),
        }
    })
}

/// Ends the case and writes the [`Observation`] JSON. Waits up to 5 s for
/// a running statement to end first. If the buffer is too small the case
/// is still ended; call again with a larger buffer to get the same JSON.
///
/// # Safety
/// `buf` must be null or hold `len` writable bytes; `needed` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_harness_finish(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> i32 {
    guard(|| {
        let text = {
            let mut last = LAST_OBSERVATION.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_none() {
                match finish(Duration::from_secs(5)) {
                    Ok(o) => *last = Some(serde_json::to_string(&o).unwrap_or_default()),
                    Err(e) => return e.code(),
                }
            }
            last.clone().unwrap_or_default()
        };
        // SAFETY: forwarded from the caller.
        let w = unsafe { write_out(&text, buf, len, needed) };
        if w == OK {
            *LAST_OBSERVATION.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        w
    })
}

/// The finished case's JSON, kept until it has been read whole.
static LAST_OBSERVATION: Mutex<Option<String>> = Mutex::new(None);
