//! The in-process plan server: when `VDISIM_PLAN` names a plan file, the
//! *k*-th set the process creates runs the plan's *k*-th `[[statement]]`
//! on its own [`ServerHost`] (sets beyond the plan get no server), with a
//! heap buffer pool, on a real-time clock that starts when the set is
//! created. `VDISIM_SEED=<n>` (default 0) seeds seeded read sizes.
//!
//! The statement's outcome, and msdb history (so a RESTORE finds the
//! BACKUP), are published on a [`Board`] when the statement ends.
//!
//! PlanFile format: see the stand-in's README.

use crate::buffers::{BufferMap, Pool};
use crate::history::{History, Seeds};
use crate::local::{self, LocalTransport};
use crate::runtime::{Connection, Connector, NewSet, SetRuntime, Transport};
use crate::server::{HostMsg, HostSetup, ServerHost, StatementListener};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};
use thiserror::Error;
use vdi_model::fault::{Fault, FaultPlan, Phase, PlannedFault, Trigger};
use vdi_model::msg::ToServer;
use vdi_model::outcome::{Outcome, Status};
use vdi_model::server::ServerDevSummary;
use vdi_model::statement::{BackupRecord, Statement, StatementSpec};
use vdi_spec::Profile;

/// Environment variable naming the plan file.
pub const ENV_PLAN: &str = "VDISIM_PLAN";
/// Environment variable holding the seed (decimal or 0x-hex; default 0).
pub const ENV_SEED: &str = "VDISIM_SEED";

/// A plan file: an optional profile and the statements to run, one per set
/// created, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PlanFile {
    /// The model profile for client and server halves (vdi_spec::Profile
    /// keys); default profile when absent.
    #[serde(default)]
    pub profile: Option<Profile>,
    /// Statements, one per set created, in creation order.
    #[serde(default, rename = "statement")]
    pub statements: Vec<PlanStatement>,
}

/// One planned statement: the statement (the schema scenario files share,
/// `vdi_model::statement::StatementSpec`, whose keys sit directly in the
/// `[[statement]]` table), and the plan file's own server behaviours.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PlanStatement {
    /// What the server runs.
    #[serde(flatten)]
    pub spec: StatementSpec,
    /// Fault: the server calls SignalAbort once the client has completed
    /// this many commands (a KILL mid-stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort_after_commands: Option<u64>,
    /// Fault: the server calls SignalAbort this many ms after the set was
    /// created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort_after_ms: Option<u64>,
    /// Fault: the server's Open does not find the set (wrong name): the
    /// statement fails and the client is never configured.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub open_fails: bool,
}

impl<'de> Deserialize<'de> for PlanStatement {
    /// The plan's own keys are taken out of the table; the rest must be a
    /// statement (unknown keys are refused, as everywhere in the file).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut t = toml::Table::deserialize(d)?;
        let mut count = |key: &str| -> Result<Option<u64>, D::Error> {
            match t.remove(key) {
                None => Ok(None),
                Some(toml::Value::Integer(n)) => u64::try_from(n)
                    .map(Some)
                    .map_err(|_| D::Error::custom(format!("{key} = {n}: must be 0 or more"))),
                Some(v) => Err(D::Error::custom(format!(
                    "{key} = {v}: must be a whole number"
                ))),
            }
        };
        let abort_after_commands = count("abort-after-commands")?;
        let abort_after_ms = count("abort-after-ms")?;
        let open_fails = match t.remove("open-fails") {
            None => false,
            Some(toml::Value::Boolean(b)) => b,
            Some(v) => {
                return Err(D::Error::custom(format!(
                    "open-fails = {v}: must be true or false"
                )));
            }
        };
        let spec = toml::Value::Table(t)
            .try_into::<StatementSpec>()
            .map_err(|e| D::Error::custom(e.message()))?;
        Ok(PlanStatement {
            spec,
            abort_after_commands,
            abort_after_ms,
            open_fails,
        })
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

impl PlanFile {
    /// Reads a plan from TOML text.
    pub fn from_toml(text: &str) -> Result<PlanFile, String> {
        let plan: PlanFile = toml::from_str(text).map_err(|e| e.to_string())?;
        vdi_spec::bounds::at_most(
            "statements",
            plan.statements.len(),
            vdi_spec::bounds::PLAN_STATEMENTS_MAX,
            "list fewer [[statement]]s",
        )
        .map_err(|e| e.to_string())?;
        // Each statement within the bounds now, not when its set comes.
        for (i, p) in plan.statements.iter().enumerate() {
            p.spec
                .resolve("set", 1, 0)
                .map_err(|e| format!("statement #{}: {e}", i + 1))?;
        }
        Ok(plan)
    }

    /// Reads a plan file.
    pub fn load(path: &str) -> Result<PlanFile, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: path.into(),
            source,
        })?;
        PlanFile::from_toml(&text).map_err(|message| PlanError::Parse {
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

/// One statement run by the plan server, as published.
#[derive(Clone, Debug, Serialize)]
pub struct PlanRun {
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
    runs: Vec<PlanRun>,
    history: History,
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

    fn begin(&self, p: PlanRun) -> usize {
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
        for rec in new {
            g.history.add(rec.clone(), ());
        }
        if let Some(r) = g.runs.get_mut(ix) {
            r.outcome = outcome;
            r.devices = devices;
        }
        self.cond.notify_all();
    }

    /// What `stmt`'s server host starts with (the backup a RESTORE reads,
    /// the number a BACKUP takes).
    fn seeds_for(&self, stmt: &Statement) -> Seeds {
        self.lock().history.seeds_for(stmt)
    }

    /// Every statement run so far, in start order.
    pub fn runs(&self) -> Vec<PlanRun> {
        self.lock().runs.clone()
    }

    /// The latest statement, once its outcome is final or `timeout`
    /// (`None` = forever) has passed; `None` if no statement ever started.
    pub fn wait_latest(&self, timeout: Option<Duration>) -> Option<PlanRun> {
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

// ----- the connector -----------------------------------------------------------------

/// Runs the planned statements, one server host per set created.
pub struct PlanConnector {
    plan: PlanFile,
    profile: Arc<Profile>,
    seed: u64,
    next: AtomicUsize,
    board: Arc<Board>,
}

/// Publishes a statement's end on the board.
struct Publisher {
    board: Arc<Board>,
    ix: usize,
}

impl StatementListener for Publisher {
    fn ended(
        &self,
        _index: usize,
        outcome: &Outcome,
        devices: &[ServerDevSummary],
        new_backups: &[BackupRecord],
    ) {
        self.board
            .end(self.ix, outcome.clone(), devices.to_vec(), new_backups);
    }
}

/// A set's connection to its plan host: the client half's messages go to
/// the host; when the incarnation's connection is dropped (a new Create,
/// or the set object destroyed), a statement still running sees the
/// client gone (`ToServer::Died`) and the host ends once it is idle.
struct PlanTransport {
    inner: LocalTransport,
    host: Arc<ServerHost>,
}

impl Transport for PlanTransport {
    fn send(&self, msg: ToServer) {
        self.inner.send(msg);
    }
}

impl Drop for PlanTransport {
    fn drop(&mut self) {
        self.inner.send(ToServer::Died);
        self.host.send(HostMsg::Stop);
    }
}

impl PlanConnector {
    /// A host for `plan` with `seed`, publishing on a fresh board.
    pub fn new(plan: PlanFile, seed: u64) -> PlanConnector {
        PlanConnector {
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
    /// The statement `p` is for `set` (the set's deviceCount names the
    /// devices when the plan does not), or why it cannot run.
    fn statement(&self, p: &PlanStatement, set: &NewSet) -> Result<Statement, String> {
        let count = u16::try_from(set.cfg.device_count).unwrap_or(u16::MAX);
        p.spec
            .resolve(&set.name, count, self.seed)
            .map_err(|e| e.to_string())
    }
}

/// The server-side faults a planned statement asks for.
fn plan_faults(p: &PlanStatement) -> FaultPlan {
    let abort = |trigger| PlannedFault {
        phase: Phase::Any,
        trigger,
        fault: Fault::ServerSignalAbort,
    };
    let mut faults = Vec::new();
    match p.abort_after_commands {
        Some(0) => faults.push(abort(Trigger::AtMs { ms: 0 })),
        Some(n) => faults.push(abort(Trigger::AfterCompletions { nth: n })),
        None => {}
    }
    if let Some(ms) = p.abort_after_ms {
        faults.push(abort(Trigger::AtMs { ms }));
    }
    FaultPlan {
        name: "plan".into(),
        faults,
    }
}

impl Connector for PlanConnector {
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
        let stmt = match self.statement(p, set) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("vdisim: plan statement #{} cannot run: {e}", k + 1);
                return Connection::none();
            }
        };
        let block = stmt.options.block_size;
        let pool = Arc::new(Pool::new(
            set.cfg.prefix_zone_size,
            stmt.options.max_transfer_size.max(block),
            set.cfg.alignment.max(block),
        ));
        let ix = self.board.begin(PlanRun {
            set: set.name.clone(),
            statement: stmt.to_tsql(),
            seed: self.seed,
            outcome: Outcome {
                status: Status::Running,
                ..Outcome::default()
            },
            devices: Vec::new(),
        });
        let seeds = self.board.seeds_for(&stmt);
        let host = ServerHost::start_with(
            HostSetup {
                profile: (*self.profile).clone(),
                seed_backups: seeds.restore.into_iter().collect(),
                time_scale: 1,
                budget_ms: 0,
                faults: plan_faults(p),
                record: false,
                client_faults: None,
                backups_before: seeds.backups_before,
            },
            Some(Arc::new(Publisher {
                board: self.board.clone(),
                ix,
            })),
        );
        let key = local::key_of(&runtime, set);
        // IServerVirtualDeviceSet2::Open by the first device name; a plan
        // whose Open fails never tells the host of the set.
        if !p.open_fails {
            host.send(local::connect(runtime, set, &pool));
        }
        host.start_statement(stmt);
        Connection {
            transport: Arc::new(PlanTransport {
                inner: LocalTransport::new(host.sender(), key),
                host,
            }),
            buffers: Some(pool as Arc<dyn BufferMap>),
        }
    }
}
