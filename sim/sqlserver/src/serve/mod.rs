//! `vdisim serve`: a long-running process that plays SQL Server.
//!
//! It keeps simulated databases (name → size and a content digest) and
//! msdb's backup history, accepts set connections from the stand-in library
//! in backup programs (one per set incarnation: the set's name and
//! configuration, then the model's messages; buffers in shared memory, see
//! `vdi_host::remote`), and control connections carrying T-SQL (from
//! `vdisim sqlcmd`) or harness case control (the `serve` backend).
//! With [`ServeConfig::tds`] it also serves TDS 7.4 on TCP (`crate::tds`):
//! real SQL Server drivers log in and run the same T-SQL (each batch
//! through the same `run_batch`, a TDS attention through the same
//! cancel), and their connections count toward the same
//! `max_connections`.
//!
//! Each BACKUP or RESTORE runs on its own [`ServerHost`] — the same server host
//! the in-process harness uses — given the one backup it reads (a RESTORE)
//! and the number its backup will take (a BACKUP), bound to the live set its
//! first VIRTUAL_DEVICE names, so many sets and clients run at once.
//! A client that dies mid-stream (its connection ends before Close) is an
//! abort for the statement (clause `abort.client-death`); the set is
//! forgotten and its buffer memory freed.
//!
//! Databases: `BACKUP DATABASE x` streams `size(x)` bytes, each family
//! after its media header (`vdi_model::media`, docs/MEDIA.md), which says
//! which server, database, backup set, content identity, size and LSNs it
//! holds; a successful `RESTORE DATABASE x` (every header and byte read
//! back verified by the server half) sets x's content, size and LSN to what
//! the media's headers say — any backup of any serve instance restores, the
//! history is not consulted (clause `media.header`); a failed one leaves x
//! `restoring`, as SQL Server does. The history (msdb) is indexed by
//! number and database and keeps the latest `vdi_spec::bounds::HISTORY_MAX`
//! backups.
//!
//! Faults: the plan in force ([`ServeConfig::faults`], replaced by a
//! control connection's `SetFaults`) applies to the statements its scope
//! selects (kinds, ordinals; [`faults`] has the syntax), the others run
//! clean; each statement's host gets the selected plan's server-side
//! faults when the statement starts, a stall sized from the set's
//! serverTimeOut unless the spec gave its length.
//!
//! ## Never a false success
//!
//! - **Server death** (`--faults server-death`): the statement's outcome is
//!   Msg 10054 (in the trace) and its control connection is dropped without
//!   an answer, as a SQL Server client loses its connection when the server
//!   dies; `vdisim sqlcmd` reports the communication-link failure and exits
//!   with status 1. The serve process itself goes on, as a restarted SQL
//!   Server would, with the history and databases the death left.
//! - **Cancel**: a `Cancel` frame on the control connection running a batch
//!   (sqlcmd's `-t` timeout and Ctrl-C send one, as drivers send a TDS
//!   attention) aborts the running statement (clause `abort.attention`: the
//!   set aborted, Msg 3204 and 3013, no backup recorded) and answers the
//!   batch once, marked `cancelled`. A connection that ends under a running
//!   batch without a cancel is the profile's `disconnect-without-attention`
//!   (clause `abort.disconnect`; default `run-to-end`).
//! - **Bounds**: a statement beyond `vdi_spec::bounds` fails before it
//!   starts: a buffer pool beyond 2 GiB with SQL Server's Msg 701, any other
//!   bound with Msg 50000 naming it; then Msg 3013.
//!
//! ## Trust and exhaustion
//!
//! - The socket replaces only a socket nothing listens on; any other file
//!   is refused and left alone; a missing directory is not made (except
//!   the per-user default directory, mode 0700). SIGINT and SIGTERM stop the
//!   server and remove the socket ([`Signals`]).
//! - Only processes of the server's own user (and root) are served
//!   (`SO_PEERCRED`). A set name live in one process is refused to another
//!   (clause `create.name-in-use`: the library's Create returns the profile's
//!   code, VD_E_BUSY), so a second hello never receives a waiting client's
//!   configuration, commands or buffer maps; each set's messages travel on
//!   the one connection that created it.
//! - A new connection has `frame_deadline` (10 s) to say hello, and any
//!   frame that has started must arrive within it (a peer that drips bytes
//!   or stops mid-frame is dropped). Hello and set frames are capped at
//!   64 KiB, control frames at 16 MiB; a length prefix alone allocates
//!   nothing. At most `max_connections` (256) connections are served at
//!   once, one thread each; one more is refused with a frame that says why.

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
use vdi_host::history::History;
use vdi_host::remote::shm::{Geometry, ServerPool};
use vdi_host::remote::wire::{
    self, DatabaseInfo, Frame, LineMessage, PROTOCOL, Refusal, Request, Response, ServerStatus,
};
use vdi_host::server::{ClientFaultHook, HostMsg, HostSetup, ServerHost, SetEnd, SetKey};
use vdi_model::content::Content;
use vdi_model::fault::{Fault, FaultPlan};
use vdi_model::msg::{DevIx, ToClient, ToServer};
use vdi_model::outcome::{FailReason, Outcome, SqlMessage, Status};
use vdi_model::statement::{BackupRecord, Statement, StatementKind};
use vdi_spec::{CommandCode, Profile, VdConfig};

mod catalog;
mod control;
mod db;
pub mod faults;
mod frames;
mod rules;
mod secondary;
mod sessions;
mod sets;
mod socket;
mod store;
mod tds_listen;

pub use socket::Signals;
pub use store::{StoreError, default_data_dir};

use frames::read_frame_timed;

use catalog::Catalog;
pub(crate) use catalog::{Attention, Batch, BatchEnd, Emit};
use control::CaseEntry;
use db::Db;
use sets::RemoteEnd;

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
    /// Faults applied to the statements `fault_scope` selects (the
    /// server-side ones; the library reports fetches when one of them is
    /// triggered by a fetch). A control connection may replace both
    /// (`Request::SetFaults`, `vdisim serve --set-faults`).
    pub faults: FaultPlan,
    /// Which statements `faults` applies to, and whether a server stall is
    /// sized from each statement's set ([`faults`] has the syntax).
    /// Default: every statement, stalls as planned.
    pub fault_scope: faults::FaultScope,
    /// Append each statement's server trace (JSONL) here.
    pub trace: Option<PathBuf>,
    /// Connections served at once; one more is refused with a message
    /// (`vdi_spec::bounds::CONNECTIONS_DEFAULT`, at most
    /// `CONNECTIONS_MAX`).
    pub max_connections: usize,
    /// How long a new connection may take to say hello, and a frame to
    /// arrive once its first byte has (default 10 s,
    /// `vdi_host::remote::wire::FRAME_DEADLINE`; 100 ms to 10 min).
    pub frame_deadline: Duration,
    /// Virtual milliseconds per real millisecond for every statement's
    /// server half (its watchdog, stalls, planned times): 1 (real time) to
    /// 1000. A client library run with the same `VDISIM_TIME_SCALE` waits
    /// its timeouts on the same clock.
    pub time_scale: u32,
    /// What every statement's server does besides the T-SQL (mid-stream
    /// Flushes, restore read sizes, probe commands): applied to each parsed
    /// statement; `None` keeps the statement's own plan.
    pub plan: Option<PlanOverlay>,
    /// Applies the client-side faults of `faults` when they fire (a runner
    /// that controls the client process: kills it, stops it); without it
    /// they are the client's own and the server does not fire them.
    pub client_faults: Option<ClientFaultHook>,
    /// Keep the databases and msdb history here across restarts (see
    /// `store`); `None`: they live and die with the process (`--ephemeral`).
    pub data_dir: Option<PathBuf>,
    /// Serve TDS 7.4 (real SQL Server drivers) at this address too
    /// (`--tds`; `crate::tds` says what is served). Port 0 picks a free
    /// port ([`Server::tds_addr`] tells which).
    pub tds: Option<std::net::SocketAddr>,
    /// The SQL logins TDS clients may use: name and password (the
    /// simulator's own, nothing to do with any real server's). Default
    /// [`DEFAULT_LOGINS`].
    pub logins: Vec<(String, String)>,
    /// TLS for TDS clients (inside PRELOGIN, `crate::tds::tls`): a
    /// self-signed certificate made at start by default, PEM files with
    /// `--tls-cert/--tls-key`; `None`: no TLS (every client is answered
    /// ENCRYPT_NOT_SUP).
    pub tls: Option<crate::tds::tls::TlsOptions>,
}

/// The TDS logins a server has when none are configured: `sa` with
/// password `vdisim`.
pub const DEFAULT_LOGINS: &[(&str, &str)] = &[("sa", "vdisim")];

/// The TDS address `--tds` without a value listens at: SQL Server's port
/// on the loopback interface.
pub const TDS_DEFAULT_ADDR: &str = "127.0.0.1:1433";

/// Statement outcomes a server keeps for [`Server::outcomes`].
pub const OUTCOMES_KEPT: usize = 10_000;

/// A statement the server ran, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementOutcome {
    pub statement: Statement,
    pub outcome: Outcome,
    /// When it ended: wall-clock milliseconds since the Unix epoch.
    pub ended_unix_ms: u64,
}

/// Server behaviour a statement's T-SQL cannot ask for, applied to every
/// statement a server runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOverlay {
    /// BACKUP: Flushes sent mid-stream on each device.
    pub mid_flushes: u32,
    /// RESTORE read sizes.
    pub read_sizes: Option<vdi_model::statement::ReadSizes>,
    /// Commands sent besides the data stream (probes).
    pub extra_commands: Vec<vdi_model::statement::ExtraCommand>,
}

impl PlanOverlay {
    fn apply(&self, plan: &mut vdi_model::statement::ServerPlan) {
        plan.mid_flushes = self.mid_flushes;
        if let Some(r) = &self.read_sizes {
            plan.read_sizes = r.clone();
        }
        plan.extra_commands = self.extra_commands.clone();
    }
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
            fault_scope: faults::FaultScope::default(),
            trace: None,
            max_connections: vdi_spec::bounds::CONNECTIONS_DEFAULT,
            frame_deadline: wire::FRAME_DEADLINE,
            time_scale: 1,
            plan: None,
            client_faults: None,
            data_dir: None,
            tds: None,
            logins: DEFAULT_LOGINS
                .iter()
                .map(|(n, p)| (n.to_string(), p.to_string()))
                .collect(),
            tls: Some(crate::tds::tls::TlsOptions::default()),
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
    #[error("{0}")]
    Bound(#[from] vdi_spec::bounds::BoundError),
    #[error("{0}")]
    DataDir(#[from] StoreError),
    #[error(
        "the TDS address {0} is taken (a SQL Server or another vdisim serve?): choose another with --tds ADDR, or --tds 127.0.0.1:0 for a free port"
    )]
    TdsInUse(std::net::SocketAddr),
    #[error("{0}")]
    Tls(#[from] crate::tds::tls::TlsSetupError),
    #[error("cannot serve TDS at {addr}: {err}")]
    TdsListen {
        addr: std::net::SocketAddr,
        err: io::Error,
    },
    #[error(
        "{path} exists and is not a socket: vdisim serve replaces only a socket that nothing listens on; remove the file yourself or choose another path with --listen or VDISIM_SERVER"
    )]
    NotASocket { path: PathBuf },
    #[error(
        "the directory {dir} does not exist: create it, or choose another path with --listen or VDISIM_SERVER"
    )]
    NoDirectory { dir: PathBuf },
}

impl ServeConfig {
    /// Checks the configuration against the bounds (`vdi_spec::bounds`):
    /// database count, names and sizes, connections.
    pub fn check(&self) -> Result<(), vdi_spec::bounds::BoundError> {
        use vdi_spec::bounds::{self, at_most};
        at_most(
            "databases",
            self.databases.len(),
            bounds::DATABASES_MAX,
            "serve fewer databases",
        )?;
        for (name, size) in &self.databases {
            at_most(
                &format!("database '{name}' name length"),
                name.chars().count(),
                bounds::NAME_CHARS_MAX,
                "use a name of at most 128 characters",
            )?;
            at_most(
                &format!("database '{name}' size"),
                *size,
                bounds::DATA_BYTES_MAX,
                "use a size of at most 1TiB",
            )?;
        }
        at_most(
            "--max-connections",
            self.max_connections,
            bounds::CONNECTIONS_MAX,
            "accept at most 65536 connections",
        )?;
        let ms = self.frame_deadline.as_millis();
        if !(100..=600_000).contains(&ms) {
            return Err(bounds::BoundError::new(
                "--frame-deadline-ms",
                ms,
                "100..=600000",
                "give a frame 100 ms to 10 minutes",
            ));
        }
        if !(1..=1000).contains(&self.time_scale) {
            return Err(bounds::BoundError::new(
                "--time-scale",
                self.time_scale,
                "1..=1000",
                "run at most 1000 virtual ms per real ms",
            ));
        }
        self.check_logins()?;
        if self.max_connections == 0 {
            return Err(bounds::BoundError::new(
                "--max-connections",
                0,
                "at least 1",
                "accept at least one connection",
            ));
        }
        Ok(())
    }
}

struct Inner {
    cfg: ServeConfig,
    cases: Mutex<BTreeMap<u64, Arc<CaseEntry>>>,
    next_case: AtomicU64,
    catalog: Mutex<Catalog>,
    sets: Mutex<BTreeMap<String, Arc<RemoteEnd>>>,
    next_conn: AtomicUsize,
    /// Connections being served now.
    live: AtomicUsize,
    /// The plan overlay in force (see [`Server::set_plan`]).
    plan: Mutex<Option<PlanOverlay>>,
    /// The fault plan in force and its scope (from the configuration,
    /// replaced by `Request::SetFaults`).
    faults: Mutex<Arc<(FaultPlan, faults::FaultScope)>>,
    /// The latest statements' outcomes.
    outcomes: Mutex<std::collections::VecDeque<StatementOutcome>>,
    /// Bytes of control frames being received, server-wide.
    partial: frames::Budget,
    /// Connections served at once: `max_connections`, or fewer if the
    /// process's descriptor limit allows fewer ([`fd_budget`]).
    max_connections: usize,
    statements: AtomicU64,
    stop: AtomicBool,
    trace: Mutex<Option<File>>,
    /// The data directory, when the state outlives the process.
    store: Option<store::Store>,
    /// The TDS listener's address, when TDS is served.
    tds_addr: Option<std::net::SocketAddr>,
    /// The next session id (51 and up, as SQL Server's user sessions), for
    /// TDS and control connections alike.
    next_spid: AtomicUsize,
    /// The live sessions by id (`KILL`).
    sessions: sessions::Sessions,
}

/// A running server.
pub struct Server {
    inner: Arc<Inner>,
    accept: Option<std::thread::JoinHandle<()>>,
    tds_accept: Option<std::thread::JoinHandle<()>>,
    tls: Option<Arc<crate::tds::tls::ServerTls>>,
}

fn digest(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, p| vdi_model::trace::fnv1a(h, p))
}

impl Server {
    /// Binds the socket and starts accepting connections.
    pub fn start(cfg: ServeConfig) -> Result<Server, ServeError> {
        cfg.check()?;
        let max_connections = fd_budget(cfg.max_connections);
        let tls = match (&cfg.tds, &cfg.tls) {
            (Some(_), Some(o)) => Some(Arc::new(crate::tds::tls::ServerTls::new(o)?)),
            _ => None,
        };
        let tds = cfg.tds.map(tds_listen::bind).transpose()?;
        let listener = socket::prepare_socket(&cfg.listen)?;
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
                Db::new(*size, digest(&[name.as_bytes(), &cfg.seed.to_le_bytes()])),
            );
        }
        let store = match &cfg.data_dir {
            Some(dir) => {
                let st = store::Store::open(dir)?;
                st.load(&mut catalog)?;
                Some(st)
            }
            None => None,
        };
        let plan = cfg.plan.clone();
        let in_force = Arc::new((cfg.faults.clone(), cfg.fault_scope.clone()));
        let inner = Arc::new(Inner {
            cfg,
            cases: Mutex::new(BTreeMap::new()),
            next_case: AtomicU64::new(1),
            catalog: Mutex::new(catalog),
            sets: Mutex::new(BTreeMap::new()),
            next_conn: AtomicUsize::new(1),
            live: AtomicUsize::new(0),
            plan: Mutex::new(plan),
            faults: Mutex::new(in_force),
            outcomes: Mutex::new(std::collections::VecDeque::new()),
            partial: frames::Budget::new(vdi_spec::bounds::PARTIAL_FRAME_BYTES_MAX),
            max_connections,
            statements: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            trace: Mutex::new(trace),
            store,
            tds_addr: tds.as_ref().and_then(|l| l.local_addr().ok()),
            next_spid: AtomicUsize::new(0),
            sessions: sessions::Sessions::default(),
        });
        let tds_accept = match tds {
            Some(l) => Some(inner.clone().start_tds(l, tls.clone())?),
            None => None,
        };
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
            tds_accept,
            tls,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.inner.cfg.listen
    }

    /// The address TDS is served at (the port chosen when the
    /// configuration gave port 0), if it is.
    pub fn tds_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.tds_addr
    }

    /// The certificate TDS clients are shown (PEM), when TDS is served with
    /// TLS: what a client that validates it must trust.
    pub fn tds_certificate_pem(&self) -> Option<&str> {
        self.tls.as_deref().map(|t| t.cert_pem.as_str())
    }

    /// Blocks until a `Shutdown` request (or [`Server::shutdown`]).
    pub fn wait(mut self) {
        self.join();
    }

    fn join(&mut self) {
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        if let Some(h) = self.tds_accept.take() {
            let _ = h.join();
        }
    }

    /// Stops accepting and removes the socket file.
    pub fn shutdown(&self) {
        self.inner.request_stop();
    }

    /// Connections served at once: the configured `max_connections`, or
    /// fewer when the process's descriptor limit allows fewer (each
    /// connection holds two descriptors).
    pub fn max_connections(&self) -> usize {
        self.inner.max_connections
    }

    /// Replaces the plan overlay for the statements that start from now on
    /// (a runner that backs up plainly, then restores under a plan).
    pub fn set_plan(&self, plan: Option<PlanOverlay>) {
        *lock(&self.inner.plan) = plan;
    }

    /// Replaces the fault plan and its scope for the statements that start
    /// from now on (what `Request::SetFaults` does); returns what is now in
    /// force, in one line.
    pub fn set_faults(&self, plan: FaultPlan, scope: faults::FaultScope) -> String {
        self.inner.set_faults(plan, scope)
    }

    /// The statements this server ran (the latest [`OUTCOMES_KEPT`]), in
    /// the order they ended, with their outcomes.
    pub fn outcomes(&self) -> Vec<StatementOutcome> {
        lock(&self.inner.outcomes).iter().cloned().collect()
    }

    /// What the server holds now.
    pub fn status(&self) -> ServerStatus {
        self.inner.status()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.inner.request_stop();
        self.join();
    }
}

/// Descriptors a server needs besides its connections' (the listener,
/// trace, buffer files being mapped, standard streams, the reserve).
const FDS_BESIDES: usize = 32;

/// The connections the process's descriptor limit allows, up to `wanted`:
/// each holds two descriptors. The soft limit is raised toward the hard
/// one as far as `wanted` needs.
fn fd_budget(wanted: usize) -> usize {
    let need = (wanted * 2 + FDS_BESIDES) as libc::rlim_t;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is valid for a write of its size.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return wanted;
    }
    if lim.rlim_cur < need && lim.rlim_max > lim.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: need.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit within the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    let have = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
    wanted.min(have.saturating_sub(FDS_BESIDES) / 2).max(1)
}

/// Refuses a connection with a frame that says why (written with a short
/// timeout: a peer that does not read is not waited for).
fn refuse(s: &mut UnixStream, reason: String, why: Refusal) {
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = wire::write_frame(s, &Frame::Refused { reason, why });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// A fresh session id: 51 and up, wrapping within `u16` (the TDS header
    /// carries it) and skipping ids still in use.
    pub(super) fn new_spid(&self) -> u16 {
        loop {
            let n = 51 + (self.next_spid.fetch_add(1, Ordering::Relaxed) % 30_000) as u16;
            if self.sessions.attention(u32::from(n)).is_none() {
                return n;
            }
        }
    }

    pub(super) fn request_stop(&self) {
        if !self.stop.swap(true, Ordering::SeqCst) {
            // Wake the accept loops.
            let _ = UnixStream::connect(&self.cfg.listen);
            self.wake_tds();
        }
    }

    fn accept_loop(self: Arc<Self>, listener: UnixListener) {
        let uid = frames::own_uid();
        // One descriptor kept in reserve: out of descriptors, it is given
        // up to accept the waiting connection and refuse it, instead of
        // leaving it unanswered while `accept` fails at once, again and
        // again.
        let mut reserve = std::fs::File::open("/dev/null").ok();
        while !self.stop.load(Ordering::SeqCst) {
            let mut s = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    drop(reserve.take());
                    if let Ok((mut s, _)) = listener.accept() {
                        refuse(
                            &mut s,
                            "vdisim serve is out of file descriptors: close some connections, or raise its limit (ulimit -n)".into(),
                            Refusal::Busy,
                        );
                    }
                    reserve = std::fs::File::open("/dev/null").ok();
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            // Only this user's processes (and root's) may use the server.
            let pid = match frames::peer(&s) {
                Ok((peer_uid, pid)) if peer_uid == uid || peer_uid == 0 => pid,
                Ok((peer_uid, _)) => {
                    refuse(
                        &mut s,
                        format!("user {peer_uid} may not use the vdisim serve of user {uid}"),
                        Refusal::Other,
                    );
                    continue;
                }
                Err(_) => continue,
            };
            let max = self.max_connections;
            if self.live.fetch_add(1, Ordering::SeqCst) >= max {
                self.live.fetch_sub(1, Ordering::SeqCst);
                refuse(
                    &mut s,
                    format!(
                        "vdisim serve is serving {max} connections, its limit: close some, or start it with a larger --max-connections"
                    ),
                    Refusal::Busy,
                );
                continue;
            }
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name("vdisim-serve-conn".into())
                .spawn(move || {
                    let inner = me.clone();
                    me.connection(s, u32::try_from(pid).unwrap_or(0));
                    inner.live.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                self.live.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _ = std::fs::remove_file(&self.cfg.listen);
    }

    /// Serves one connection: its hello (within `frame_deadline` of the connection)
    /// decides whether it is a set's or a control connection.
    fn connection(self: Arc<Self>, mut s: UnixStream, pid: u32) {
        let first = read_frame_timed(
            &mut s,
            wire::MAX_SET_FRAME,
            Some(self.cfg.frame_deadline),
            self.cfg.frame_deadline,
        );
        let _ = s.set_read_timeout(None);
        match first {
            Ok(Some(Frame::HelloSet {
                protocol,
                pid: _,
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
                } else if name.chars().count() > vdi_spec::bounds::NAME_CHARS_MAX {
                    Some(format!(
                        "set name of {} characters: the limit is {}",
                        name.chars().count(),
                        vdi_spec::bounds::NAME_CHARS_MAX
                    ))
                } else {
                    None
                };
                if let Some(reason) = refused {
                    refuse(&mut s, reason, Refusal::Other);
                    return;
                }
                self.set_connection(s, name, cfg, pid);
            }
            Ok(Some(Frame::HelloSecondary {
                protocol,
                pid: _,
                name,
            })) => {
                if protocol != PROTOCOL {
                    let reason = format!(
                        "protocol {protocol} is not this server's ({PROTOCOL}): use the library and vdisim of one build"
                    );
                    refuse(&mut s, reason, Refusal::Other);
                    return;
                }
                self.secondary_connection(s, name, pid);
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
                    state: d.state.clone(),
                    restored_from: d.restored_from,
                    recovery_model: d.recovery.clone(),
                    lsn: d.lsn,
                    log_chain_lsn: d.log_lsn,
                })
                .collect(),
            sets: lock(&self.sets).keys().cloned().collect(),
            backups: u32::try_from(c.history.len()).unwrap_or(u32::MAX),
            restores: u32::try_from(c.restores.len()).unwrap_or(u32::MAX),
            statements: self.statements.load(Ordering::Relaxed),
        }
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
