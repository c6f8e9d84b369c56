//! In-process server mode: a thread per set hosting the model's
//! [`ServerHalf`], with a real buffer pool, driven by a plan file.
//!
//! Enabled by the environment: `VDISIM_PLAN=<plan.toml>` (and optionally
//! `VDISIM_SEED=<n>`, default 0). The *k*-th set the process creates runs the
//! plan's *k*-th `[[statement]]`; sets beyond the plan get no server. Without
//! `VDISIM_PLAN` no server ever comes (GetConfiguration times out, as with
//! real VDI and no SQL Server) and one line on stderr says how to get one.
//!
//! The server thread's clock is milliseconds since the set was created
//! ([`Instant`]); it waits on its channel until the server half's next
//! deadline (the watchdog) or a planned fault. It owns the buffer pool:
//! before a Write reaches the client its content is materialised into the
//! buffer ([`data::materialize`]); when a Read completes, what the client
//! wrote is parsed back ([`data::parse_tagged`]) so the server half checks
//! it byte for byte. The statement's outcome (and msdb history, so a
//! RESTORE finds the BACKUP) is published on a [`Board`].
//!
//! Plan format: see the crate README.

use crate::runtime::{BufferMap, Connection, Connector, NewSet, SetRuntime, Transport};
use crate::session::ServerBuffers;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use thiserror::Error;
use vdi_sim::data;
use vdi_sim::msg::{BufId, CmdId, ToClient, ToServer};
use vdi_sim::outcome::{Outcome, Status};
use vdi_sim::server::{ServerDevSummary, ServerHalf, SetInfo};
use vdi_sim::statement::{
    BackupRecord, ExtraCommand, ReadSizes, ServerPlan, Statement, StatementKind,
};
use vdi_sim::trace::Trace;
use vdi_spec::{CommandCode, Profile, TransferOptions};

/// Environment variable naming the plan file.
pub const ENV_PLAN: &str = "VDISIM_PLAN";
/// Environment variable holding the seed (decimal or 0x-hex; default 0).
pub const ENV_SEED: &str = "VDISIM_SEED";

/// A plan file: an optional profile and the statements to run, one per set
/// created, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Plan {
    /// The model profile for client and server halves (vdi_spec::Profile
    /// keys); default profile when absent.
    #[serde(default)]
    pub profile: Option<Profile>,
    /// Statements, one per set created, in creation order.
    #[serde(default, rename = "statement")]
    pub statements: Vec<PlanStatement>,
}

/// One planned statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct PlanStatement {
    /// `backup-database`, `backup-log`, `restore-database`, `restore-log`,
    /// `restore-header-only`, `restore-filelist-only`, `restore-verify-only`.
    pub kind: StatementKind,
    /// Database name (default `vdisim`).
    pub database: String,
    /// VIRTUAL_DEVICE names; default: the set name, then `<set>-dev1`, ...
    /// (as many as the set's deviceCount).
    pub devices: Option<Vec<String>>,
    /// BLOCKSIZE (default 512).
    pub block_size: u32,
    /// MAXTRANSFERSIZE (default 65536).
    pub max_transfer_size: u32,
    /// BUFFERCOUNT (default: the profile's rule).
    pub buffer_count: Option<u32>,
    /// BACKUP: bytes of database data (default 1 MiB).
    pub data_bytes: u64,
    /// BACKUP: Flushes mid-stream per device (default 0).
    pub mid_flushes: u32,
    /// RESTORE read sizes: `"max"`, `{ fixed = n }`, `{ cycle = [..] }`,
    /// `{ seeded = s }` (s is XORed with VDISIM_SEED). Default `"max"`.
    pub read_sizes: ReadSizes,
    /// HEADERONLY/FILELISTONLY: bytes read before closing (default 64 KiB).
    pub metadata_bytes: u64,
    /// Extra commands (probes): `{ dev = 0, after_data_commands = 2, code =
    /// "GetPosition" }` (command names without the `VDC_` prefix).
    pub extra_commands: Vec<ExtraCommand>,
    /// Fault: the server calls SignalAbort once the client has completed
    /// this many commands (a KILL mid-stream).
    pub abort_after_commands: Option<u64>,
    /// Fault: the server calls SignalAbort this many ms after the set was
    /// created.
    pub abort_after_ms: Option<u64>,
    /// Fault: the server's Open does not find the set (wrong name): the
    /// statement fails and the client is never configured.
    pub open_fails: bool,
}

impl Default for PlanStatement {
    fn default() -> Self {
        let p = ServerPlan::default();
        PlanStatement {
            kind: StatementKind::BackupDatabase,
            database: "vdisim".into(),
            devices: None,
            block_size: 512,
            max_transfer_size: 65536,
            buffer_count: None,
            data_bytes: 1024 * 1024,
            mid_flushes: 0,
            read_sizes: ReadSizes::Max,
            metadata_bytes: p.metadata_bytes,
            extra_commands: Vec::new(),
            abort_after_commands: None,
            abort_after_ms: None,
            open_fails: false,
        }
    }
}

/// Why a plan could not be used.
#[derive(Debug, Error)]
pub enum PlanError {
    /// The file could not be read.
    #[error("cannot read plan file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid plan.
    #[error("invalid plan file {path}: {message}")]
    Parse {
        /// The path.
        path: String,
        /// The TOML error.
        message: String,
    },
    /// VDISIM_SEED is not a number.
    #[error("VDISIM_SEED={0:?} is not a number (decimal or 0x-hex)")]
    Seed(String),
}

impl Plan {
    /// Reads a plan from TOML text.
    pub fn from_toml(text: &str) -> Result<Plan, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Reads a plan file.
    pub fn load(path: &str) -> Result<Plan, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: path.into(),
            source,
        })?;
        Plan::from_toml(&text).map_err(|message| PlanError::Parse {
            path: path.into(),
            message,
        })
    }

    /// The profile both halves run under.
    pub fn profile(&self) -> Profile {
        self.profile.clone().unwrap_or_default()
    }
}

/// Parses a seed: decimal or `0x` hex.
pub fn parse_seed(s: &str) -> Result<u64, PlanError> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| PlanError::Seed(s.into()))
}

// ----- the board: outcomes and msdb history ------------------------------------------

/// One statement run by the in-process server, as published.
#[derive(Clone, Debug, Serialize)]
pub struct Published {
    /// The set the statement ran against.
    pub set: String,
    /// Its T-SQL text.
    pub statement: String,
    /// VDISIM_SEED.
    pub seed: u64,
    /// The outcome (status `running` until it ends).
    pub outcome: Outcome,
    /// Per-device summary from the server half.
    pub devices: Vec<ServerDevSummary>,
}

#[derive(Default)]
struct BoardInner {
    runs: Vec<Published>,
    history: Vec<BackupRecord>,
}

/// Where the in-process server publishes outcomes and backup history.
#[derive(Default)]
pub struct Board {
    inner: Mutex<BoardInner>,
    cond: Condvar,
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, BoardInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self, p: Published) -> usize {
        let mut g = self.lock();
        g.runs.push(p);
        self.cond.notify_all();
        g.runs.len() - 1
    }

    fn end(
        &self,
        ix: usize,
        outcome: Outcome,
        devices: Vec<ServerDevSummary>,
        new: &[BackupRecord],
    ) {
        let mut g = self.lock();
        g.history.extend_from_slice(new);
        if let Some(r) = g.runs.get_mut(ix) {
            r.outcome = outcome;
            r.devices = devices;
        }
        self.cond.notify_all();
    }

    /// msdb history so far.
    pub fn history(&self) -> Vec<BackupRecord> {
        self.lock().history.clone()
    }

    /// Every statement run so far, in start order.
    pub fn runs(&self) -> Vec<Published> {
        self.lock().runs.clone()
    }

    /// The latest statement, once its outcome is final or `timeout`
    /// (`None` = forever) has passed; `None` if no statement ever started.
    pub fn wait_latest(&self, timeout: Option<Duration>) -> Option<Published> {
        let dl = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut g = self.lock();
        loop {
            let last = g.runs.last()?;
            if last.outcome.status.is_final() {
                return Some(last.clone());
            }
            match dl {
                None => g = self.cond.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return g.runs.last().cloned();
                    }
                    g = self
                        .cond
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

// ----- the buffer pool ---------------------------------------------------------------

/// One buffer: a heap allocation handed to the client by address.
struct Buf {
    /// Start of the allocation (from `Box::<[u8]>::into_raw`).
    base: NonNull<u8>,
    len: usize,
    /// Offset of the data zone (after the prefix zone, aligned).
    data: usize,
}

/// The server's buffer pool for one statement: BUFFERCOUNT buffers of
/// prefixZoneSize + MAXTRANSFERSIZE bytes, allocated on first use, data
/// zones aligned to max(alignment, BLOCKSIZE). Freed when the pool drops
/// (after the set is closed and created again, or the object is gone).
pub struct Pool {
    bufs: Mutex<BTreeMap<u32, Buf>>,
    prefix: usize,
    size: usize,
    align: usize,
}

// SAFETY: the pool owns its allocations exclusively (raw pointers obtained
// from `Box::into_raw`, freed only in `Drop`); the map is behind a mutex.
// Who may touch a buffer's bytes when is the VDI protocol's rule (the client
// between GetCommand and CompleteCommand, the server otherwise), with the
// hand-over ordered by the runtime's lock and the server channel.
unsafe impl Send for Pool {}
// SAFETY: as for `Send`: shared access only goes through the mutex or
// through raw pointers whose use the protocol serialises.
unsafe impl Sync for Pool {}

impl Pool {
    /// A pool of buffers with `size` data bytes after a `prefix`-byte zone,
    /// data aligned to `align` (a power of two).
    pub fn new(prefix: u32, size: u32, align: u32) -> Pool {
        Pool {
            bufs: Mutex::new(BTreeMap::new()),
            prefix: prefix as usize,
            size: size as usize,
            align: (align.max(16) as usize).next_power_of_two(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Buf>> {
        self.bufs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Allocates buffer `id` if needed; returns its data-zone address.
    pub(crate) fn ensure(&self, id: BufId) -> NonNull<u8> {
        let mut g = self.lock();
        let b = g.entry(id.0).or_insert_with(|| {
            let len = self.prefix + self.align + self.size;
            let raw = Box::into_raw(vec![0u8; len].into_boxed_slice()) as *mut u8;
            let base = NonNull::new(raw).unwrap_or(NonNull::dangling());
            let addr = base.as_ptr() as usize + self.prefix;
            let data = self.prefix + (addr.next_multiple_of(self.align) - addr);
            Buf { base, len, data }
        });
        // SAFETY: `data + size <= len` by construction, so the offset stays
        // inside the allocation.
        unsafe { NonNull::new_unchecked(b.base.as_ptr().add(b.data)) }
    }

    /// Runs `f` on the first `n` data bytes of buffer `id` (clamped to the
    /// buffer). The caller must own the buffer under the protocol.
    pub(crate) fn with_bytes<T>(&self, id: BufId, n: usize, f: impl FnOnce(&mut [u8]) -> T) -> T {
        let p = self.ensure(id);
        let n = n.min(self.size);
        // SAFETY: `p` points to `size` initialised bytes owned by this pool
        // and alive while `self` is; under the protocol the server thread
        // (the only caller) owns the buffer now: the client got it only in a
        // command not yet delivered, or has completed that command.
        let s = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), n) };
        f(s)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (_, b) in std::mem::take(&mut *self.lock()) {
            let slice = std::ptr::slice_from_raw_parts_mut(b.base.as_ptr(), b.len);
            // SAFETY: `slice` is exactly the allocation `Box::into_raw` gave
            // in `ensure`, freed once here.
            drop(unsafe { Box::from_raw(slice) });
        }
    }
}

impl ServerBuffers for Pool {
    fn prepare(&self, id: BufId) {
        self.ensure(id);
    }
    fn with_bytes(&self, id: BufId, n: usize, f: &mut dyn FnMut(&mut [u8])) {
        Pool::with_bytes(self, id, n, |b| f(b));
    }
}

impl BufferMap for Pool {
    fn address(&self, id: BufId) -> Option<NonNull<u8>> {
        let g = self.lock();
        let b = g.get(&id.0)?;
        // SAFETY: in bounds of the allocation, as in `ensure`.
        Some(unsafe { NonNull::new_unchecked(b.base.as_ptr().add(b.data)) })
    }
    fn lookup(&self, addr: usize) -> Option<BufId> {
        self.lock()
            .iter()
            .find(|(_, b)| b.base.as_ptr() as usize + b.data == addr)
            .map(|(k, _)| BufId(*k))
    }
}

// ----- the transport and the connector -----------------------------------------------

struct ChannelTransport(Mutex<Sender<ToServer>>);

impl Transport for ChannelTransport {
    fn send(&self, msg: ToServer) {
        // A server thread that has finished no longer listens: drop.
        let _ = self.0.lock().unwrap_or_else(|e| e.into_inner()).send(msg);
    }
}

/// Hosts the planned statements, one server thread per set created.
pub struct InprocConnector {
    plan: Plan,
    profile: Arc<Profile>,
    seed: u64,
    next: AtomicUsize,
    board: Arc<Board>,
}

impl InprocConnector {
    /// A host for `plan` with `seed`, publishing on a fresh board.
    pub fn new(plan: Plan, seed: u64) -> InprocConnector {
        InprocConnector {
            profile: Arc::new(plan.profile()),
            plan,
            seed,
            next: AtomicUsize::new(0),
            board: Arc::new(Board::default()),
        }
    }

    /// Where outcomes are published.
    pub fn board(&self) -> Arc<Board> {
        self.board.clone()
    }

    /// The profile of the plan.
    pub fn profile(&self) -> Arc<Profile> {
        self.profile.clone()
    }

    fn statement(&self, p: &PlanStatement, set: &NewSet) -> Statement {
        let devices = p.devices.clone().unwrap_or_else(|| {
            (0..set.cfg.device_count.max(1))
                .map(|i| {
                    if i == 0 {
                        set.name.clone()
                    } else {
                        format!("{}-dev{i}", set.name)
                    }
                })
                .collect()
        });
        let read_sizes = match &p.read_sizes {
            ReadSizes::Seeded(s) => ReadSizes::Seeded(s ^ self.seed),
            other => other.clone(),
        };
        Statement {
            kind: p.kind,
            database: p.database.clone(),
            devices,
            options: TransferOptions {
                block_size: p.block_size,
                max_transfer_size: p.max_transfer_size,
                buffer_count: p.buffer_count,
            },
            plan: ServerPlan {
                data_bytes: p.data_bytes,
                mid_flushes: p.mid_flushes,
                read_sizes,
                metadata_bytes: p.metadata_bytes,
                extra_commands: p.extra_commands.clone(),
            },
        }
    }
}

impl Connector for InprocConnector {
    fn connect(&self, runtime: Weak<SetRuntime>, set: &NewSet) -> Connection {
        let k = self.next.fetch_add(1, Ordering::SeqCst);
        let Some(p) = self.plan.statements.get(k) else {
            eprintln!(
                "vdisim: the plan has {} statement(s); set #{} ({:?}) gets no server",
                self.plan.statements.len(),
                k + 1,
                set.name
            );
            return Connection::none();
        };
        let stmt = self.statement(p, set);
        let block = stmt.options.block_size;
        let pool = Arc::new(Pool::new(
            set.cfg.prefix_zone_size,
            stmt.options.max_transfer_size.max(block),
            set.cfg.alignment.max(block),
        ));
        let (tx, rx) = mpsc::channel();
        let job = Job {
            rt: runtime,
            incarnation: set.incarnation,
            set: set.name.clone(),
            stmt,
            p: p.clone(),
            rx,
            pool: pool.clone(),
            created: Instant::now(),
            profile: self.profile.clone(),
            board: self.board.clone(),
            seed: self.seed,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("vdisim-server-{}", set.name))
            .spawn(move || {
                let (rt, inc) = (job.rt.clone(), job.incarnation);
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run())).is_err() {
                    // A model bug must not leave the client waiting forever:
                    // it sees the server die (VD_E_ABORT).
                    eprintln!("vdisim: the in-process server thread panicked");
                    if let Some(rt) = rt.upgrade() {
                        rt.deliver_from(inc, ToClient::Died);
                    }
                }
            });
        if let Err(e) = spawned {
            eprintln!("vdisim: cannot start the in-process server thread: {e}");
            return Connection::none();
        }
        Connection {
            transport: Arc::new(ChannelTransport(Mutex::new(tx))),
            buffers: Some(pool),
        }
    }
}

/// One server thread's work.
struct Job {
    rt: Weak<SetRuntime>,
    incarnation: u32,
    set: String,
    stmt: Statement,
    p: PlanStatement,
    rx: Receiver<ToServer>,
    pool: Arc<Pool>,
    created: Instant,
    profile: Arc<Profile>,
    board: Arc<Board>,
    seed: u64,
}

impl Job {
    fn now(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn run(self) {
        let mut server = ServerHalf::new(self.profile.clone());
        for rec in self.board.history() {
            server.add_backup(rec);
        }
        let known = server.history().len();
        let mut tr = Trace::off();
        let mut out: Vec<ToClient> = Vec::new();
        let first = self.stmt.devices.first().cloned().unwrap_or_default();
        // IServerVirtualDeviceSet2::Open by the first device name.
        let set = if self.p.open_fails {
            None
        } else {
            crate::runtime::ProcessNamespace::lookup(&first).map(|cfg| SetInfo {
                name: first.clone(),
                cfg,
            })
        };
        let ix = self.board.begin(Published {
            set: self.set.clone(),
            statement: self.stmt.to_tsql(),
            seed: self.seed,
            outcome: Outcome {
                status: Status::Running,
                ..Outcome::default()
            },
            devices: Vec::new(),
        });
        server.start(self.now(), self.stmt.clone(), set, &mut out, &mut tr);
        // Reads in flight: command id -> (buffer, size).
        let mut reads: BTreeMap<CmdId, (BufId, u32)> = BTreeMap::new();
        let mut completed = 0u64;
        let mut aborted = false;
        let mut client_gone = false;
        loop {
            for m in out.drain(..) {
                if let ToClient::Command(c) = &m
                    && let Some(b) = c.buffer
                {
                    if c.code == CommandCode::Read {
                        self.pool.ensure(b);
                        reads.insert(c.id, (b, c.size));
                    } else {
                        // A Write's content is in the buffer before the
                        // client can see the command.
                        self.pool.with_bytes(b, c.size as usize, |buf| {
                            let n = (c.data.len() as usize).min(buf.len());
                            data::materialize(&c.data.slice(0, n as u64), &mut buf[..n]);
                        });
                    }
                }
                match self.rt.upgrade() {
                    Some(rt) => rt.deliver_from(self.incarnation, m),
                    None => client_gone = true,
                }
            }
            if server.is_idle() {
                break;
            }
            if client_gone {
                // The set object is gone without Close: the client died.
                client_gone = false;
                server.on_message(self.now(), ToServer::Died, &mut out, &mut tr);
                continue;
            }
            if !aborted && self.p.abort_after_commands.is_some_and(|n| completed >= n) {
                aborted = true;
                server.signal_abort(self.now(), &mut out, &mut tr);
                continue;
            }
            let mut wake = server.next_deadline();
            if !aborted && let Some(ms) = self.p.abort_after_ms {
                wake = Some(wake.map_or(ms, |w| w.min(ms)));
            }
            let r = match wake {
                Some(w) => self
                    .rx
                    .recv_timeout(Duration::from_millis(w.saturating_sub(self.now()))),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let now = self.now();
            match r {
                Ok(ToServer::Completed(mut c)) => {
                    if !c.auto {
                        completed += 1;
                    }
                    if let Some((b, size)) = reads.remove(&c.id)
                        && !c.auto
                        && c.bytes > 0
                    {
                        let n = c.bytes.min(u64::from(size)) as usize;
                        c.data = self.pool.with_bytes(b, n, |buf| data::parse_tagged(buf));
                    }
                    server.on_message(now, ToServer::Completed(c), &mut out, &mut tr);
                }
                Ok(m) => server.on_message(now, m, &mut out, &mut tr),
                Err(RecvTimeoutError::Timeout) => {
                    if !aborted && self.p.abort_after_ms.is_some_and(|ms| now >= ms) {
                        aborted = true;
                        server.signal_abort(now, &mut out, &mut tr);
                    }
                    server.on_time(now, &mut out, &mut tr);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // The runtime dropped this incarnation's transport.
                    server.on_message(now, ToServer::Died, &mut out, &mut tr);
                    if !server.is_idle() {
                        break;
                    }
                }
            }
        }
        let new = server.history().get(known..).unwrap_or_default().to_vec();
        self.board
            .end(ix, server.outcome().clone(), server.devices(), &new);
    }
}

// ----- the process-wide host ---------------------------------------------------------

/// What the environment asked for, read once per process.
pub struct ProcessHost {
    connector: Arc<dyn Connector>,
    board: Option<Arc<Board>>,
    profile: Arc<Profile>,
}

/// Tells, once per process, how to get an in-process server.
struct NoServerNotice {
    reason: String,
    said: std::sync::Once,
}

impl Connector for NoServerNotice {
    fn connect(&self, _rt: Weak<SetRuntime>, _set: &NewSet) -> Connection {
        self.said.call_once(|| eprintln!("{}", self.reason));
        Connection::none()
    }
}

static HOST: OnceLock<ProcessHost> = OnceLock::new();

/// The host the environment configures (`VDISIM_PLAN`, `VDISIM_SEED`).
pub fn process_host() -> &'static ProcessHost {
    HOST.get_or_init(|| {
        let plan = std::env::var(ENV_PLAN).ok().filter(|s| !s.is_empty());
        let seed = std::env::var(ENV_SEED).ok().filter(|s| !s.is_empty());
        let no_server = |reason: String| ProcessHost {
            connector: Arc::new(NoServerNotice {
                reason,
                said: std::sync::Once::new(),
            }),
            board: None,
            profile: Arc::new(Profile::default()),
        };
        let Some(path) = plan else {
            // No plan: connect to a `vdisim serve` process (it prints one
            // line if there is none).
            #[cfg(unix)]
            return ProcessHost {
                connector: Arc::new(crate::remote::client::RemoteConnector::from_env()),
                board: None,
                profile: Arc::new(Profile::default()),
            };
            #[cfg(not(unix))]
            return no_server(format!(
                "vdisim: no in-process server (GetConfiguration will time out); set {ENV_PLAN}=<plan.toml> and optionally {ENV_SEED}=<n> to run one"
            ));
        };
        let seed = match seed.as_deref().map(parse_seed).transpose() {
            Ok(s) => s.unwrap_or(0),
            Err(e) => return no_server(format!("vdisim: no in-process server: {e}")),
        };
        match Plan::load(&path) {
            Ok(plan) => {
                let c = InprocConnector::new(plan, seed);
                ProcessHost {
                    board: Some(c.board()),
                    profile: c.profile(),
                    connector: Arc::new(c),
                }
            }
            Err(e) => no_server(format!("vdisim: no in-process server: {e}")),
        }
    })
}

impl ProcessHost {
    /// The connector every set object of the process uses (the harness
    /// case's while one is active, see [`crate::harness`]).
    pub fn connector(&self) -> Arc<dyn Connector> {
        #[cfg(unix)]
        if let Some(c) = crate::remote::forward::connector() {
            return c;
        }
        match crate::harness::active() {
            Some(c) => c.connector(),
            None => self.connector.clone(),
        }
    }
    /// The profile every set object of the process runs under (the harness
    /// case's while one is active).
    pub fn profile(&self) -> Arc<Profile> {
        #[cfg(unix)]
        if let Some(p) = crate::remote::forward::profile() {
            return p;
        }
        match crate::harness::active() {
            Some(c) => c.profile(),
            None => self.profile.clone(),
        }
    }
    /// Virtual ms per real ms of the set objects' timeouts: the harness
    /// case's scale while one is active, else 1 (real time).
    pub fn time_scale(&self) -> u32 {
        #[cfg(unix)]
        if crate::remote::forward::server_path().is_some() {
            return crate::remote::forward::time_scale();
        }
        crate::harness::active().map_or(1, |c| c.time_scale())
    }
    /// Where outcomes are published (`None` without a plan).
    pub fn board(&self) -> Option<Arc<Board>> {
        self.board.clone()
    }
}

/// The latest statement's outcome in this process (Rust API of
/// `vdisim_statement_outcome`): waits until it is final or `timeout` passes.
pub fn latest_outcome(timeout: Option<Duration>) -> Option<Published> {
    process_host().board()?.wait_latest(timeout)
}
