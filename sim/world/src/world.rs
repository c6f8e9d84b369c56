//! The world's state: a virtual millisecond clock, the client object and
//! the server half joined by the in-memory link, the client program's
//! threads, the fault schedule, and what the run observed.
//!
//! Each step the scheduler picks one of: a ready client thread (it makes one
//! API call), the head message towards the client, the head message towards
//! the server. Time advances only when nothing can step: the clock jumps to
//! the next deadline (a call's timeout, a sleep, the watchdog, a planned
//! fault, a stall's end). If nothing can step and nothing is due, the run
//! ends as a hang, which the harness reports instead of hanging itself.

use crate::scheduler::{Picker, RandomScheduler, Scheduler};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use vdi_model::call::Reply;
use vdi_model::channel::Link;
use vdi_model::checks::Violation;
use vdi_model::client::{ClientSet, DeviceHandle, Namespace};
use vdi_model::fault::{FaultPlan, FaultSchedule};
use vdi_model::msg::{DevIx, ToClient};
use vdi_model::mutation::Mutation;
use vdi_model::outcome::Outcome;
use vdi_model::process::ClientProcess;
use vdi_model::programs::{Action, Program};
use vdi_model::server::{ServerDevSummary, ServerHalf};
use vdi_model::statement::{BackupRecord, Statement};
use vdi_model::trace::Trace;
use vdi_spec::id;
use vdi_spec::{ClauseId, ClientState, Profile, TableMethod, VdConfig, Win32};

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum End {
    /// Every client thread finished and the statement is final.
    Finished,
    /// Nothing could step and nothing was due: somebody waits forever.
    Hang,
    /// Virtual time passed the budget.
    Budget,
    /// The step bound was reached.
    StepLimit,
}

#[derive(Debug)]
pub(crate) enum ThreadState {
    Ready,
    /// Waiting in a blocking call or for the statement / spawned threads.
    Blocked {
        wait: Wait,
        deadline: Option<u64>,
    },
    Sleeping {
        until: u64,
    },
    Done,
    /// A scripted thread between calls: never scheduled, its calls are
    /// injected from outside (see [`World::start_call`]).
    Idle,
}

impl ThreadState {
    pub(crate) fn is_done(&self) -> bool {
        matches!(self, ThreadState::Done | ThreadState::Idle)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    GetConfiguration,
    GetCommand(DeviceHandle, bool),
    Statement,
    Join,
}

pub(crate) struct Thread {
    pub(crate) who: String,
    pub(crate) prog: Box<dyn Program>,
    pub(crate) state: ThreadState,
    pub(crate) reply: Option<Reply>,
    /// A stall owed before the thread's next action (fault ClientStall).
    pub(crate) pending_stall: u64,
    pub(crate) dev: Option<DevIx>,
    pub(crate) scripted: bool,
    /// Polls in a row that found nothing (see
    /// [`WorldConfig::poll_backoff_max_ms`]).
    pub(crate) polls: u32,
    /// The client process the thread belongs to: 0 the primary, else a
    /// secondary (`vdi_model::secondary`), which dies on its own.
    pub(crate) process: u32,
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    pub seed: u64,
    pub profile: Profile,
    pub faults: FaultPlan,
    /// Virtual-time budget in ms.
    pub budget_ms: u64,
    /// Scheduler step bound.
    pub max_steps: u64,
    /// Delay between StartStatement and the server opening the set.
    pub statement_delay_ms: u64,
    /// Backups the server's history holds before the run, and the client
    /// media that goes with them (a restore without a backup in the run).
    pub seed_backups: Vec<BackupRecord>,
    /// Bound on each link queue.
    pub link_capacity: usize,
    /// Virtual time a poll (GetCommand or GetConfiguration with timeout 0)
    /// that finds nothing costs the polling thread before it acts again: the
    /// client's loop overhead. Without it a busy-polling client would stop
    /// virtual time (and any stall or watchdog) from ever arriving.
    pub poll_interval_ms: u64,
    /// When above `poll_interval_ms`: each further poll in a row that finds
    /// nothing doubles the polling thread's interval, up to this (a client
    /// that backs off while idle). A campaign setting, not a model rule:
    /// it lets virtual time cross a long stall in a few hundred steps
    /// instead of one step per millisecond per polling thread. 0 (the
    /// default): every poll costs `poll_interval_ms`.
    pub poll_backoff_max_ms: u64,
    /// A deliberately broken model rule. **Test-only**: no profile or
    /// scenario sets it; `vdisim explore --mutant` and `vdisim fuzz
    /// --mutant` do, to show the harness finds a broken model
    /// (`vdi_model::mutation`). Default [`Mutation::None`].
    pub mutation: Mutation,
}

impl WorldConfig {
    pub fn new(seed: u64) -> WorldConfig {
        WorldConfig {
            seed,
            profile: Profile::default(),
            faults: FaultPlan::none(),
            budget_ms: 24 * 3_600_000,
            max_steps: 50_000_000,
            statement_delay_ms: 5,
            seed_backups: Vec::new(),
            link_capacity: 1 << 16,
            poll_interval_ms: 1,
            poll_backoff_max_ms: 0,
            mutation: Mutation::None,
        }
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct RunResult {
    pub end: End,
    pub now_ms: u64,
    pub steps: u64,
    /// Every statement the run started, with its outcome, in order.
    pub statements: Vec<(Statement, Outcome)>,
    pub client: ClientProcess,
    pub violations: Vec<Violation>,
    /// Client-table cells exercised: (method, state) → count.
    pub cells: BTreeMap<(TableMethod, ClientState), u64>,
    /// Clause ids that decided some result or event → count.
    pub clauses: BTreeMap<&'static str, u64>,
    pub server_devices: Vec<ServerDevSummary>,
    pub trace: Trace,
    pub faults_fired: Vec<String>,
}

impl RunResult {
    pub fn trace_hash(&self) -> String {
        self.trace.hash_hex()
    }
}

/// The namespace of set names in a world (one client process).
#[derive(Default)]
pub(crate) struct SetNames {
    pub(crate) sets: BTreeMap<String, VdConfig>,
}

impl Namespace for SetNames {
    fn claim(&mut self, name: &str, cfg: &VdConfig) -> bool {
        if self.sets.contains_key(name) {
            return false;
        }
        self.sets.insert(name.to_string(), *cfg);
        true
    }
    fn release(&mut self, name: &str) {
        self.sets.remove(name);
    }
}

/// A world being run.
pub struct World {
    pub(crate) now: u64,
    pub(crate) step: u64,
    pub(crate) scheduler: Picker,
    pub(crate) cfg: WorldConfig,
    pub(crate) client: ClientSet,
    pub(crate) client_alive: bool,
    pub(crate) server: ServerHalf,
    pub(crate) server_alive: bool,
    pub(crate) server_stalled_until: u64,
    /// Incarnation of the client set the running statement is bound to.
    pub(crate) bound: u32,
    pub(crate) link: Link,
    pub(crate) names: SetNames,
    pub(crate) threads: Vec<Thread>,
    pub(crate) process: ClientProcess,
    pub(crate) trace: Trace,
    pub(crate) pending_start: Option<(u64, Statement)>,
    pub(crate) statements: Vec<(Statement, Outcome)>,
    pub(crate) faults: FaultSchedule,
    pub(crate) fired: Vec<String>,
    pub(crate) overrides: BTreeMap<u64, Win32>,
    pub(crate) violations: Vec<Violation>,
    pub(crate) cells: BTreeMap<(TableMethod, ClientState), u64>,
    pub(crate) clauses: BTreeMap<&'static str, u64>,
    pub(crate) out_buf: Vec<ToClient>,
    pub(crate) aborted_seen: bool,
}

impl World {
    /// A world with one client object running `controller` (the client's
    /// main thread), scheduled by the seeded ChaCha scheduler.
    pub fn new(cfg: WorldConfig, controller: Box<dyn Program>, trace: Trace) -> World {
        let scheduler = Picker::Random(RandomScheduler::new(cfg.seed));
        World::build(cfg, controller, trace, scheduler)
    }

    /// A world whose scheduling decisions `scheduler` makes.
    pub fn with_scheduler(
        cfg: WorldConfig,
        controller: Box<dyn Program>,
        trace: Trace,
        scheduler: Box<dyn Scheduler>,
    ) -> World {
        World::build(cfg, controller, trace, Picker::Other(scheduler))
    }

    fn build(
        cfg: WorldConfig,
        controller: Box<dyn Program>,
        trace: Trace,
        scheduler: Picker,
    ) -> World {
        let profile = Arc::new(cfg.profile.clone());
        let mut server = ServerHalf::new(profile.clone());
        for b in &cfg.seed_backups {
            server.add_backup(b.clone());
        }
        let mut client = ClientSet::new(profile);
        client.tracing = trace.on();
        client.set_mutation(cfg.mutation);
        let process = ClientProcess::holding(cfg.seed_backups.last());
        World {
            now: 0,
            step: 0,
            scheduler,
            link: Link::new(cfg.link_capacity),
            faults: FaultSchedule::new(&cfg.faults),
            cfg,
            client,
            client_alive: true,
            server,
            server_alive: true,
            server_stalled_until: 0,
            bound: 0,
            names: SetNames::default(),
            threads: vec![Thread {
                who: "ctl".to_string(),
                prog: controller,
                state: ThreadState::Ready,
                reply: None,
                pending_stall: 0,
                dev: None,
                scripted: false,
                polls: 0,
                process: 0,
            }],
            process,
            trace,
            pending_start: None,
            statements: Vec::new(),
            fired: Vec::new(),
            overrides: BTreeMap::new(),
            violations: Vec::new(),
            cells: BTreeMap::new(),
            clauses: BTreeMap::new(),
            out_buf: Vec::new(),
            aborted_seen: false,
        }
    }

    pub(crate) fn emit(
        &mut self,
        who: &str,
        what: &str,
        detail: impl FnOnce() -> String,
        clause: Option<ClauseId>,
    ) {
        if self.trace.on() {
            let d = detail();
            self.trace.emit(self.now, who, what, d, clause);
        }
    }

    /// Runs to the end.
    pub fn run(mut self) -> RunResult {
        let mut choices = Vec::with_capacity(70);
        let end = loop {
            if let Some(end) = self.step_once(&mut choices) {
                break end;
            }
        };
        self.finish(end)
    }

    pub(crate) fn make_ready(&mut self, i: usize) {
        self.threads[i].state = if self.threads[i].scripted {
            ThreadState::Idle
        } else {
            ThreadState::Ready
        };
    }

    pub(crate) fn current_outcome(&self) -> Outcome {
        if !self.server_alive && !self.server.outcome().status.is_final() {
            return Outcome::server_died(Some(self.now));
        }
        self.server.outcome().clone()
    }

    pub(crate) fn finish(mut self, end: End) -> RunResult {
        // Record the last statement's outcome.
        let outcome = self.current_outcome();
        if let Some(last) = self.statements.last_mut() {
            last.1 = outcome;
        }
        self.check_invariants(end);
        for (c, n) in self.trace.clause_hits() {
            if !c.is_empty() {
                *self.clauses.entry(c).or_default() += n;
            }
        }
        let (now, step) = (self.now, self.step);
        self.emit(
            "world",
            "End",
            || format!("{end:?} at {now} ms after {step} steps"),
            None,
        );
        RunResult {
            end,
            now_ms: self.now,
            steps: self.step,
            statements: self.statements,
            client: self.process,
            violations: self.violations,
            cells: self.cells,
            clauses: self.clauses,
            server_devices: self.server.devices(),
            trace: self.trace,
            faults_fired: self.fired,
        }
    }

    fn check_invariants(&mut self, end: End) {
        if self
            .statements
            .last()
            .is_some_and(|(s, _)| s.kind.is_backup())
        {
            self.check_backup();
        }
        if end == End::StepLimit {
            self.violations.push(Violation {
                clause: id::WORLD_BOUNDED.into(),
                what: "the step bound was reached".into(),
                at: None,
            });
        }
    }

    /// The backup invariant (`vdi_model::checks::media`) for the latest
    /// statement, if it is a backup, against the record the server made.
    pub(crate) fn check_backup(&mut self) {
        let Some((s, o)) = self.statements.last() else {
            return;
        };
        let done = if o.status.is_final() {
            o.succeeded()
        } else {
            self.server.outcome().succeeded()
        };
        if !s.kind.is_backup() || !done {
            return;
        }
        let Some(rec) = self.server.history().last() else {
            return;
        };
        let v = vdi_model::checks::media::backup_delivered(true, &self.process.media, rec);
        self.violations.extend(v);
    }
}

/// The program of a scripted thread: it never acts on its own.
pub(crate) struct Idle;

impl Program for Idle {
    fn next(&mut self, _last: Option<Reply>, _p: &mut ClientProcess) -> Action {
        Action::Exit
    }

    fn describe(&self, _out: &mut dyn std::fmt::Write) -> bool {
        true
    }
}
