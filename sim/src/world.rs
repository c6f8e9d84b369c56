//! The deterministic world: a virtual millisecond clock, a seeded ChaCha
//! scheduler that interleaves the client's threads (a controller and one per
//! device) with message deliveries and the server, timeouts in virtual time,
//! and fault plans.
//!
//! Each step the scheduler picks, uniformly with the seeded generator, one
//! of: a ready client thread (it makes one API call), the head message
//! towards the client, the head message towards the server. Time advances
//! only when nothing can step: the clock jumps to the next deadline (a
//! call's timeout, a sleep, the watchdog, a planned fault, a stall's end).
//! If nothing can step and nothing is due, the run ends as a hang, which the
//! harness reports instead of hanging itself.

use crate::channel::Link;
use crate::client::{ClientSet, DeviceHandle, Namespace, Poll, Ret};
use crate::data::Content;
use crate::fault::{Fault, FaultPlan, Phase, PlannedFault, Trigger};
use crate::msg::{BufId, Cmd, DevIx, ToClient, ToServer};
use crate::outcome::Outcome;
use crate::program::{Action, Call, Program, Reply, Value};
use crate::server::{ServerHalf, SetInfo};
use crate::statement::{BackupRecord, Statement};
use crate::trace::Trace;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use vdi_spec::{ClientState, CommandCode, Hresult, Profile, TableMethod, VdConfig, Win32};

/// A client API timeout: a number of milliseconds, or forever (Windows
/// `INFINITE`, Linux any negative value; clauses `get-command.infinite`,
/// `get-command.linux-negative`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Timeout {
    Ms(u64),
    Infinite,
}

impl Timeout {
    /// A Windows DWORD timeout: `0xFFFFFFFF` is INFINITE.
    pub fn from_dword(v: u32) -> Timeout {
        if v == vdi_spec::layout::limits::INFINITE {
            Timeout::Infinite
        } else {
            Timeout::Ms(u64::from(v))
        }
    }
    /// A Linux `time_t` timeout: negative waits forever. (0xFFFFFFFF is not
    /// special on Linux: it waits about 49.7 days.)
    pub fn from_linux(v: i64) -> Timeout {
        if v < 0 {
            Timeout::Infinite
        } else {
            Timeout::Ms(v as u64)
        }
    }
    fn deadline(self, now: u64) -> Option<u64> {
        match self {
            Timeout::Ms(ms) => Some(now.saturating_add(ms)),
            Timeout::Infinite => None,
        }
    }
}

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

/// A named invariant that did not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub clause: String,
    pub what: String,
}

#[derive(Debug)]
enum TState {
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

impl TState {
    fn is_done(&self) -> bool {
        matches!(self, TState::Done | TState::Idle)
    }
}

#[derive(Debug, Clone, Copy)]
enum Wait {
    GetConfiguration,
    GetCommand(DeviceHandle, bool),
    Statement,
    Join,
}

struct Thread {
    who: String,
    prog: Box<dyn Program>,
    state: TState,
    reply: Option<Reply>,
    /// Completion code override for one command id (fault CompleteWithError).
    pending_stall: u64,
    dev: Option<DevIx>,
    scripted: bool,
}

/// What the client process shares between its threads: media, device
/// handles, the statement outcome, and reports.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ClientProcess {
    /// Bytes the client stored per device (media family), by phase name.
    pub media: Vec<Content>,
    /// Read cursors into `media` during a restore.
    #[serde(skip)]
    pub cursors: Vec<u64>,
    /// Device handles of the current set, by device index.
    #[serde(skip)]
    pub handles: Vec<Option<DeviceHandle>>,
    /// The configuration GetConfiguration returned.
    pub config: Option<VdConfig>,
    /// What each device thread saw.
    pub devices: Vec<DeviceReport>,
    /// Lines the client program logs about itself (what it decided and why).
    pub log: Vec<String>,
    /// Whether the client believes the operation succeeded.
    pub believes_success: Option<bool>,
}

/// A device thread's view of the run.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceReport {
    pub commands: BTreeMap<String, u64>,
    pub bytes: u64,
    pub timeouts: u64,
    /// The code that ended the thread's GetCommand loop.
    pub end: Option<Hresult>,
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
    pub server_devices: Vec<crate::server::ServerDevSummary>,
    pub trace: Trace,
    pub faults_fired: Vec<String>,
}

impl RunResult {
    pub fn trace_hash(&self) -> String {
        self.trace.hash_hex()
    }
}

#[derive(Default)]
struct Ns {
    sets: BTreeMap<String, VdConfig>,
}

impl Namespace for Ns {
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
    now: u64,
    step: u64,
    rng: ChaCha8Rng,
    cfg: WorldConfig,
    client: ClientSet,
    client_alive: bool,
    server: ServerHalf,
    server_alive: bool,
    server_stalled_until: u64,
    /// Incarnation of the client set the running statement is bound to.
    bound: u32,
    link: Link,
    ns: Ns,
    threads: Vec<Thread>,
    proc_: ClientProcess,
    trace: Trace,
    pending_start: Option<(u64, Statement)>,
    statements: Vec<(Statement, Outcome)>,
    faults: Vec<(PlannedFault, bool)>,
    fired: Vec<String>,
    fetched: BTreeMap<(DevIx, Option<CommandCode>), u64>,
    overrides: BTreeMap<u64, Win32>,
    violations: Vec<Violation>,
    cells: BTreeMap<(TableMethod, ClientState), u64>,
    clauses: BTreeMap<&'static str, u64>,
    out_buf: Vec<ToClient>,
    aborted_seen: bool,
}

impl World {
    /// A world with one client object running `controller` (the client's
    /// main thread).
    pub fn new(cfg: WorldConfig, controller: Box<dyn Program>, trace: Trace) -> World {
        let profile = Arc::new(cfg.profile.clone());
        let mut server = ServerHalf::new(profile.clone());
        for b in &cfg.seed_backups {
            server.add_backup(b.clone());
        }
        let mut client = ClientSet::new(profile);
        client.tracing = trace.on();
        let faults = cfg
            .faults
            .faults
            .iter()
            .cloned()
            .map(|f| (f, false))
            .collect();
        let mut proc_ = ClientProcess::default();
        if let Some(b) = cfg.seed_backups.last() {
            proc_.media = b
                .families
                .iter()
                .map(|f| Content::stream(f.origin, 0, f.len))
                .collect();
        }
        World {
            now: 0,
            step: 0,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            link: Link::new(cfg.link_capacity),
            cfg,
            client,
            client_alive: true,
            server,
            server_alive: true,
            server_stalled_until: 0,
            bound: 0,
            ns: Ns::default(),
            threads: vec![Thread {
                who: "ctl".to_string(),
                prog: controller,
                state: TState::Ready,
                reply: None,
                pending_stall: 0,
                dev: None,
                scripted: false,
            }],
            proc_,
            trace,
            pending_start: None,
            statements: Vec::new(),
            faults,
            fired: Vec::new(),
            fetched: BTreeMap::new(),
            overrides: BTreeMap::new(),
            violations: Vec::new(),
            cells: BTreeMap::new(),
            clauses: BTreeMap::new(),
            out_buf: Vec::new(),
            aborted_seen: false,
        }
    }

    fn emit(
        &mut self,
        who: &str,
        what: &str,
        detail: impl FnOnce() -> String,
        clause: Option<&'static str>,
    ) {
        if self.trace.on() {
            let d = detail();
            self.trace.emit(self.now, who, what, d, clause);
        }
    }

    fn count<T>(&mut self, r: &Ret<T>) {
        if let Some(c) = r.cell {
            *self.cells.entry(c).or_default() += 1;
            let code = r.code();
            if !self.documented(c.0, c.1, code, r.clause) {
                self.violations.push(Violation {
                    clause: vdi_spec::tables::client_cell(c.0, c.1).clause.to_string(),
                    what: format!("{} in {} returned {code}, which is documented neither for the method nor the state", c.0.name(), c.1.name()),
                });
            }
        }
        // With tracing on, the call's trace event cites the clause (counted there).
        if !self.trace.on() {
            *self.clauses.entry(r.clause).or_default() += 1;
        }
    }

    /// Invariant: every call returns a code documented for its method and
    /// state (the table cell, the method's page, or a profile parameter).
    fn documented(&self, m: TableMethod, st: ClientState, code: Hresult, clause: &str) -> bool {
        let p = &self.cfg.profile;
        vdi_spec::tables::client_cell(m, st).allows(code)
            || (vdi_spec::tables::documented_codes(m).contains(&code)
                && !matches!(
                    code,
                    Hresult::NOERROR
                        | Hresult::VD_E_PROTOCOL
                        | Hresult::VD_E_ABORT
                        | Hresult::VD_E_CLOSE
                ))
            || (clause == "close.invalidates-devices" && code == p.use_after_close_code)
            || (clause == "get-command.after-device-closed" && code == Hresult::VD_E_PROTOCOL)
            || (clause == "create.illegal-name" && code == p.create_illegal_name_code)
            || (clause == "create.name-in-use" && code == p.create_name_in_use_code)
    }

    fn drain_notes(&mut self) {
        if self.client.notes.is_empty() {
            return;
        }
        let notes = std::mem::take(&mut self.client.notes);
        for n in notes {
            if !self.trace.on() {
                *self.clauses.entry(n.clause).or_default() += 1;
            }
            if self.trace.on() {
                self.trace
                    .emit(self.now, "client", n.what, n.detail, Some(n.clause));
            }
        }
    }

    fn flush_client_out(&mut self) {
        let inc = self.client.incarnation();
        for m in self.client.out.drain(..) {
            self.link.send_to_server(inc, m);
        }
        self.drain_notes();
    }

    fn flush_server_out(&mut self) {
        let bound = self.bound;
        let msgs: Vec<ToClient> = self.out_buf.drain(..).collect();
        for m in msgs {
            if matches!(m, ToClient::Abort | ToClient::Died) {
                // Abort is shared state in real VDI (a flag and a semaphore
                // in shared memory), not a queued message: the client sees it
                // at once, ahead of commands still in flight (clauses
                // abort.server-signal, abort.no-commands-after).
                self.aborted_seen = true;
                self.abort_client_now(bound, m);
            } else {
                self.link.send_to_client(bound, m);
            }
        }
    }

    /// Applies a server-side abort or death to the client half immediately
    /// and drops what was in flight towards it.
    fn abort_client_now(&mut self, incarnation: u32, m: ToClient) {
        self.link.to_client.retain(|x| x.incarnation != incarnation);
        if !self.client_alive || incarnation != self.client.incarnation() {
            return;
        }
        if self.trace.on() {
            let d = brief_to_client(&m);
            self.trace
                .emit(self.now, "link", "ToClient", d, Some("abort.server-signal"));
        }
        self.client.deliver(m);
        self.flush_client_out();
        self.wake_blocked();
    }

    fn phase(&self) -> Phase {
        match self.statements.last() {
            Some((s, _)) if s.kind.is_backup() => Phase::Backup,
            Some(_) => Phase::Restore,
            None => Phase::Any,
        }
    }

    /// Runs to the end.
    pub fn run(mut self) -> RunResult {
        let mut choices: Vec<u32> = Vec::with_capacity(70);
        let end = loop {
            if let Some(end) = self.step_once(&mut choices) {
                break end;
            }
        };
        self.finish(end)
    }

    /// One scheduling decision, or `Some(end)` when the run cannot go on.
    fn step_once(&mut self, choices: &mut Vec<u32>) -> Option<End> {
        const TO_CLIENT: u32 = u32::MAX;
        const TO_SERVER: u32 = u32::MAX - 1;
        self.fire_step_faults();
        if self.step >= self.cfg.max_steps {
            return Some(End::StepLimit);
        }
        choices.clear();
        for (i, t) in self.threads.iter().enumerate() {
            if matches!(t.state, TState::Ready) {
                choices.push(i as u32);
            }
        }
        if !self.link.to_client.is_empty() {
            choices.push(TO_CLIENT);
        }
        if !self.link.to_server.is_empty()
            && self.server_alive
            && self.now >= self.server_stalled_until
        {
            choices.push(TO_SERVER);
        }
        if choices.is_empty() {
            if self.finished() {
                return Some(End::Finished);
            }
            return match self.next_deadline() {
                None => Some(End::Hang),
                Some(t) if t > self.cfg.budget_ms => {
                    self.now = self.cfg.budget_ms;
                    Some(End::Budget)
                }
                Some(t) => {
                    self.now = self.now.max(t);
                    self.fire_timers();
                    None
                }
            };
        }
        self.step += 1;
        let pick = choices[(self.rng.next_u64() % choices.len() as u64) as usize];
        match pick {
            TO_CLIENT => self.deliver_to_client(),
            TO_SERVER => self.deliver_to_server(),
            i => self.run_thread(i as usize),
        }
        None
    }

    fn make_ready(&mut self, i: usize) {
        self.threads[i].state = if self.threads[i].scripted {
            TState::Idle
        } else {
            TState::Ready
        };
    }

    // ----- driven use: calls injected from outside (the model backend) -------------------

    /// A world with no program: its threads are scripted, their calls
    /// injected with [`World::start_call`] and collected with
    /// [`World::wait_call`]. Programs may still be spawned into it.
    pub fn new_driven(cfg: WorldConfig, trace: Trace) -> World {
        let mut w = World::new(cfg, Box::new(Idle), trace);
        w.threads.clear();
        w
    }

    /// Makes room in the client process's reports for device `dev`.
    fn ensure_device_report(&mut self, dev: Option<DevIx>) {
        if let Some(d) = dev
            && self.proc_.devices.len() <= d as usize
        {
            self.proc_
                .devices
                .resize(d as usize + 1, DeviceReport::default());
        }
    }

    /// Adds a scripted thread named `who` (e.g. `ctl`, `dev0`) and returns its index.
    pub fn add_thread(&mut self, who: &str, dev: Option<DevIx>) -> usize {
        self.ensure_device_report(dev);
        self.threads.push(Thread {
            who: who.to_string(),
            prog: Box::new(Idle),
            state: TState::Idle,
            reply: None,
            pending_stall: 0,
            dev,
            scripted: true,
        });
        self.threads.len() - 1
    }

    /// Starts `call` on scripted thread `t`; it may complete at once or
    /// block (collect it with [`World::wait_call`]).
    pub fn start_call(&mut self, t: usize, call: Call) {
        let who = self.threads[t].who.clone();
        self.threads[t].reply = None;
        self.call(t, &who, call);
    }

    /// Lets the world run until thread `t`'s call has returned.
    pub fn wait_call(&mut self, t: usize) -> Result<Reply, End> {
        let mut choices = Vec::with_capacity(70);
        loop {
            if matches!(self.threads[t].state, TState::Idle)
                && let Some(r) = self.threads[t].reply.take()
            {
                return Ok(r);
            }
            if let Some(end) = self.step_once(&mut choices) {
                return Err(end);
            }
        }
    }

    /// Starts `prog` as a thread of the client process (for device `dev`).
    pub fn spawn_program(
        &mut self,
        who: &str,
        dev: Option<DevIx>,
        prog: Box<dyn Program>,
    ) -> usize {
        self.ensure_device_report(dev);
        self.threads.push(Thread {
            who: who.to_string(),
            prog,
            state: TState::Ready,
            reply: None,
            pending_stall: 0,
            dev,
            scripted: false,
        });
        self.threads.len() - 1
    }

    /// Lets the world run until program thread `t` has exited; returns the
    /// code that ended its device loop (NOERROR if it recorded none).
    pub fn wait_thread(&mut self, t: usize) -> Result<Hresult, End> {
        let mut choices = Vec::with_capacity(70);
        loop {
            if matches!(self.threads[t].state, TState::Done) {
                let code = self.threads[t]
                    .dev
                    .and_then(|d| self.proc_.devices.get(d as usize))
                    .and_then(|r| r.end)
                    .unwrap_or(Hresult::NOERROR);
                return Ok(code);
            }
            if let Some(end) = self.step_once(&mut choices) {
                return Err(end);
            }
        }
    }

    /// Sends a statement as the client's SQL connection would.
    pub fn send_statement(&mut self, stmt: Statement) {
        self.emit("sql", "StartStatement", || stmt.to_tsql(), None);
        self.pending_start = Some((self.now + self.cfg.statement_delay_ms, stmt));
    }

    /// Runs until the statement ends or `timeout` passes; `Ok(None)` on timeout.
    pub fn wait_statement(&mut self, timeout: Timeout) -> Result<Option<Outcome>, End> {
        let until = timeout.deadline(self.now);
        let t = self.add_thread("sql-wait", None);
        self.threads[t].state = TState::Blocked {
            wait: Wait::Statement,
            deadline: until,
        };
        self.wake_statement_waiters();
        let r = self.wait_call(t);
        self.threads[t].state = TState::Done;
        match r? {
            Reply {
                value: Value::Outcome(o),
                ..
            } => Ok(Some(o)),
            _ => Ok(None),
        }
    }

    /// Lets `ms` of virtual time pass, running whatever is due.
    pub fn sleep(&mut self, ms: u64) -> Result<(), End> {
        let t = self.add_thread("sleep", None);
        self.threads[t].state = TState::Sleeping {
            until: self.now.saturating_add(ms),
        };
        self.threads[t].reply = Some(Reply::code(Hresult::NOERROR, ""));
        let r = self.wait_call(t).map(|_| ());
        self.threads[t].state = TState::Done;
        r
    }

    /// Fires `fault` now (server-side events and process deaths).
    pub fn inject(&mut self, fault: Fault) {
        self.faults.push((
            PlannedFault {
                phase: Phase::Any,
                trigger: Trigger::AtStep { step: u64::MAX },
                fault,
            },
            false,
        ));
        let i = self.faults.len() - 1;
        self.fire_fault(i, None);
    }

    /// The client process state (media, handles, reports).
    pub fn process(&mut self) -> &mut ClientProcess {
        &mut self.proc_
    }

    /// The virtual time now.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Ends a driven world: drains what is left (bounded by the budget) and
    /// returns the result.
    pub fn finish_driven(mut self) -> RunResult {
        let mut choices = Vec::with_capacity(70);
        let end = loop {
            if let Some(end) = self.step_once(&mut choices) {
                break end;
            }
        };
        self.finish(end)
    }

    fn finished(&self) -> bool {
        self.threads.iter().all(|t| t.state.is_done())
            && self.pending_start.is_none()
            && (!self.server_alive || self.server.is_idle())
    }

    fn next_deadline(&self) -> Option<u64> {
        let mut best: Option<u64> = None;
        let mut consider = |t: u64| best = Some(best.map_or(t, |b| b.min(t)));
        for t in &self.threads {
            match t.state {
                TState::Blocked {
                    deadline: Some(d), ..
                } => consider(d),
                TState::Sleeping { until } => consider(until),
                _ => {}
            }
        }
        if let Some((t, _)) = &self.pending_start {
            consider(*t);
        }
        if self.server_alive {
            if let Some(d) = self.server.next_deadline() {
                consider(d.max(self.server_stalled_until));
            }
            if self.server_stalled_until > self.now && !self.link.to_server.is_empty() {
                consider(self.server_stalled_until);
            }
        }
        for (f, done) in &self.faults {
            if let (false, Trigger::AtMs { ms }) = (done, &f.trigger)
                && *ms > self.now
            {
                consider(*ms);
            }
        }
        best
    }

    fn fire_timers(&mut self) {
        let now = self.now;
        // Planned faults at this time.
        let due: Vec<usize> = (0..self.faults.len())
            .filter(|&i| {
                !self.faults[i].1
                    && matches!(self.faults[i].0.trigger, Trigger::AtMs { ms } if ms <= now)
            })
            .collect();
        for i in due {
            self.fire_fault(i, None);
        }
        if let Some((t, _)) = &self.pending_start
            && *t <= now
            && let Some((_, stmt)) = self.pending_start.take()
        {
            self.start_statement(stmt);
        }
        if self.server_alive
            && now >= self.server_stalled_until
            && self.server.next_deadline().is_some_and(|d| d <= now)
        {
            self.server.on_time(now, &mut self.out_buf, &mut self.trace);
            self.flush_server_out();
        }
        for i in 0..self.threads.len() {
            match self.threads[i].state {
                TState::Sleeping { until } if until <= now => self.make_ready(i),
                TState::Blocked {
                    wait,
                    deadline: Some(d),
                } if d <= now => self.time_out(i, wait, false),
                _ => {}
            }
        }
    }

    fn time_out(&mut self, i: usize, wait: Wait, poll: bool) {
        let (reply, what, detail, clause) = match wait {
            Wait::GetConfiguration => {
                let r = self.client.get_configuration_timeout();
                self.count(&r);
                (
                    Reply::code(r.code(), r.clause),
                    "GetConfiguration",
                    String::new(),
                    r.clause,
                )
            }
            Wait::GetCommand(h, poll) => {
                let r = self.client.get_command_timeout(poll);
                self.count(&r);
                if let Some(d) = self.threads[i].dev
                    && let Some(rep) = self.proc_.devices.get_mut(d as usize)
                {
                    rep.timeouts += 1;
                }
                (
                    Reply::code(r.code(), r.clause),
                    "GetCommand",
                    format!("dev={}", h.index),
                    r.clause,
                )
            }
            Wait::Statement => (
                Reply {
                    code: Hresult::VD_E_TIMEOUT,
                    clause: "server.outcome-messages",
                    value: Value::None,
                },
                "WaitStatement",
                String::new(),
                "server.outcome-messages",
            ),
            Wait::Join => (
                Reply::code(Hresult::VD_E_TIMEOUT, ""),
                "Join",
                String::new(),
                "",
            ),
        };
        let who = self.threads[i].who.clone();
        let code = reply.code;
        self.emit(
            &who,
            what,
            || format!("{detail} -> {code} (timed out)"),
            if clause.is_empty() {
                None
            } else {
                Some(clause)
            },
        );
        self.threads[i].reply = Some(reply);
        self.make_ready(i);
        if poll && !self.threads[i].scripted && self.cfg.poll_interval_ms > 0 {
            self.threads[i].state = TState::Sleeping {
                until: self.now.saturating_add(self.cfg.poll_interval_ms),
            };
        }
    }

    fn deliver_to_client(&mut self) {
        let Some(m) = self.link.to_client.pop_front() else {
            return;
        };
        if !self.client_alive {
            return;
        }
        if m.incarnation != self.client.incarnation() {
            let cur = self.client.incarnation();
            self.emit(
                "link",
                "Drop",
                || format!("to-client for incarnation {} (now {cur})", m.incarnation),
                Some("close.reuse"),
            );
            return;
        }
        if self.trace.on() {
            let d = brief_to_client(&m.msg);
            self.trace.emit(self.now, "link", "ToClient", d, None);
        }
        self.client.deliver(m.msg);
        self.flush_client_out();
        self.wake_blocked();
    }

    fn deliver_to_server(&mut self) {
        let Some(m) = self.link.to_server.pop_front() else {
            return;
        };
        if m.incarnation != self.bound || self.server.is_idle() {
            let why = if m.incarnation != self.bound {
                format!(
                    "it concerns set incarnation {}, the server's statement incarnation {}",
                    m.incarnation, self.bound
                )
            } else {
                "no statement is running".to_string()
            };
            let what = brief_to_server(&m.msg);
            self.emit("link", "Drop", || format!("{what}: {why}"), None);
            return;
        }
        if self.trace.on() {
            let d = brief_to_server(&m.msg);
            self.trace.emit(self.now, "link", "ToServer", d, None);
        }
        self.server
            .on_message(self.now, m.msg, &mut self.out_buf, &mut self.trace);
        self.flush_server_out();
        self.wake_statement_waiters();
    }

    fn wake_statement_waiters(&mut self) {
        if !self.server.outcome().status.is_final() && self.server_alive {
            return;
        }
        for i in 0..self.threads.len() {
            if let TState::Blocked {
                wait: Wait::Statement,
                ..
            } = self.threads[i].state
            {
                let o = self.current_outcome();
                self.threads[i].reply = Some(Reply {
                    code: Hresult::NOERROR,
                    clause: "server.outcome-messages",
                    value: Value::Outcome(o),
                });
                self.make_ready(i);
            }
        }
    }

    fn current_outcome(&self) -> Outcome {
        if !self.server_alive && !self.server.outcome().status.is_final() {
            return Outcome::server_died(Some(self.now));
        }
        self.server.outcome().clone()
    }

    /// Re-polls every thread blocked in GetConfiguration or GetCommand.
    fn wake_blocked(&mut self) {
        for i in 0..self.threads.len() {
            let TState::Blocked { wait, .. } = self.threads[i].state else {
                continue;
            };
            match wait {
                Wait::GetConfiguration => {
                    if let Poll::Ready(r) = self.client.get_configuration() {
                        self.finish_call_config(i, r);
                    }
                }
                Wait::GetCommand(h, _) => {
                    if let Poll::Ready(r) = self.client.get_command(h) {
                        self.finish_get_command(i, h, r);
                    }
                }
                _ => {}
            }
        }
    }

    fn finish_call_config(&mut self, i: usize, r: Ret<VdConfig>) {
        self.count(&r);
        if let Ok(c) = &r.result {
            self.proc_.config = Some(*c);
        }
        let who = self.threads[i].who.clone();
        let code = r.code();
        self.emit(
            &who,
            "GetConfiguration",
            || match &r.result {
                Ok(c) => format!(
                    "-> {code} features={} blockSize={} maxTransferSize={}",
                    vdi_spec::Features(c.features),
                    c.block_size,
                    c.max_transfer_size
                ),
                Err(_) => format!("-> {code}"),
            },
            Some(r.clause),
        );
        let value = match r.result {
            Ok(c) => Value::Config(c),
            Err(_) => Value::None,
        };
        self.threads[i].reply = Some(Reply {
            code,
            clause: r.clause,
            value,
        });
        self.make_ready(i);
        self.flush_client_out();
    }

    fn finish_get_command(&mut self, i: usize, h: DeviceHandle, r: Ret<Cmd>) {
        self.count(&r);
        let who = self.threads[i].who.clone();
        let code = r.code();
        let mut fire: Vec<usize> = Vec::new();
        if let Ok(c) = &r.result {
            if self.aborted_seen && self.client.state() == ClientState::Abort {
                self.violations.push(Violation {
                    clause: "abort.no-commands-after".into(),
                    what: format!("dev{} received {} after abort", h.index, c.code.name()),
                });
            }
            if let Some(rep) = self.proc_.devices.get_mut(h.index as usize) {
                *rep.commands.entry(c.code.name().to_string()).or_default() += 1;
            }
            for key in [(h.index, None), (h.index, Some(c.code))] {
                let n = self.fetched.entry(key).or_default();
                *n += 1;
                let n = *n;
                let phase = self.phase();
                for (fi, (pf, done)) in self.faults.iter().enumerate() {
                    // Truncation acts on the media a restore reads: it fires
                    // when the restore starts, whatever its trigger says.
                    if *done
                        || !(pf.phase == Phase::Any || pf.phase == phase)
                        || matches!(pf.fault, Fault::TruncateMedia { .. })
                    {
                        continue;
                    }
                    if let Trigger::OnCommand { dev, nth, code } = pf.trigger
                        && dev == h.index
                        && nth == n
                        && code == key.1
                    {
                        fire.push(fi);
                    }
                }
            }
            let cid = c.id.0;
            self.emit(
                &who,
                "GetCommand",
                || {
                    format!(
                        "dev={} -> {code} id={cid} {} size={} pos={}",
                        h.index, c.code, c.size, c.position
                    )
                },
                Some(r.clause),
            );
            for fi in &fire {
                if let Fault::CompleteWithError { code } = self.faults[*fi].0.fault {
                    self.overrides.insert(cid, code);
                }
            }
        } else {
            self.emit(
                &who,
                "GetCommand",
                || format!("dev={} -> {code}", h.index),
                Some(r.clause),
            );
        }
        let value = match r.result {
            Ok(c) => Value::Command(c),
            Err(_) => Value::None,
        };
        self.threads[i].reply = Some(Reply {
            code,
            clause: r.clause,
            value,
        });
        self.make_ready(i);
        for fi in fire {
            self.fire_fault(fi, Some(i));
        }
        self.flush_client_out();
    }

    fn fire_step_faults(&mut self) {
        if self.faults.iter().all(|f| f.1) {
            return;
        }
        let phase = self.phase();
        let due: Vec<usize> = (0..self.faults.len())
            .filter(|&i| {
                let (pf, done) = &self.faults[i];
                !done
                    && matches!(pf.trigger, Trigger::AtStep { step } if step <= self.step)
                    && (pf.phase == Phase::Any || pf.phase == phase)
                    && !matches!(pf.fault, Fault::TruncateMedia { .. })
            })
            .collect();
        for i in due {
            self.fire_fault(i, None);
        }
    }

    fn fire_fault(&mut self, i: usize, thread: Option<usize>) {
        self.faults[i].1 = true;
        let f = self.faults[i].0.fault.clone();
        self.fired.push(f.kind().to_string());
        self.emit("world", "Fault", || format!("{f:?}"), None);
        match f {
            Fault::ClientSignalAbort => {
                if self.client_alive {
                    let r = self.client.signal_abort();
                    self.count(&r);
                    self.emit(
                        "ctl",
                        "SignalAbort",
                        || format!("-> {} (fault plan)", r.code()),
                        Some(r.clause),
                    );
                    self.flush_client_out();
                    self.wake_blocked_abort();
                }
            }
            Fault::ServerSignalAbort => {
                if self.server_alive {
                    self.server
                        .signal_abort(self.now, &mut self.out_buf, &mut self.trace);
                    self.flush_server_out();
                    self.wake_statement_waiters();
                }
            }
            Fault::ClientDeath => self.kill_client(),
            Fault::ServerDeath => {
                if self.server_alive {
                    self.server.die(self.now, &mut self.trace);
                    self.server_alive = false;
                    self.link.to_server.clear();
                    self.aborted_seen = true;
                    self.abort_client_now(self.bound, ToClient::Died);
                    self.wake_statement_waiters();
                }
            }
            Fault::ServerStall { ms } => self.server_stalled_until = self.now.saturating_add(ms),
            Fault::ClientStall { ms } => {
                if let Some(t) = thread {
                    self.threads[t].pending_stall = ms;
                }
            }
            Fault::CompleteWithError { .. } => {}
            Fault::EarlyCloseDevice { dev } => {
                if self.server_alive {
                    self.server.close_device_early(
                        self.now,
                        dev,
                        &mut self.out_buf,
                        &mut self.trace,
                    );
                    self.flush_server_out();
                }
            }
            Fault::TruncateMedia { dev, bytes } => {
                if let Some(m) = self.proc_.media.get_mut(dev as usize) {
                    *m = m.slice(0, bytes);
                }
            }
        }
    }

    /// After a client-side abort, blocked calls return VD_E_ABORT.
    fn wake_blocked_abort(&mut self) {
        self.wake_blocked();
    }

    fn kill_client(&mut self) {
        if !self.client_alive {
            return;
        }
        self.client_alive = false;
        for t in &mut self.threads {
            t.state = TState::Done;
        }
        self.emit(
            "world",
            "ClientDied",
            String::new,
            Some("abort.client-death"),
        );
        let inc = self.client.incarnation();
        if self.client.state() != ClientState::Dne {
            self.link.send_to_server(inc, ToServer::Died);
            let name = self.client.name().to_string();
            self.ns.release(&name);
        }
        self.link.to_client.clear();
    }

    /// A BACKUP that reports success had every byte delivered: the client
    /// media holds exactly the families the server recorded. Checked when
    /// the backup ends, before anything (a truncation fault) touches the media.
    fn check_backup(&mut self) {
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
        for (k, fam) in rec.families.iter().enumerate() {
            let got = self.proc_.media.get(k).cloned().unwrap_or_default();
            if !got.is_stream(fam.origin, 0, fam.len) {
                self.violations.push(Violation {
                    clause: "restore.byte-identical".into(),
                    what: format!(
                        "backup succeeded but device {k} holds {} bytes that are not the family's {} bytes",
                        got.len(),
                        fam.len
                    ),
                });
            }
        }
    }

    fn start_statement(&mut self, stmt: Statement) {
        self.check_backup();
        // Truncation faults apply to the media the restore will read.
        if !stmt.kind.is_backup() {
            let due: Vec<usize> = (0..self.faults.len())
                .filter(|&i| {
                    !self.faults[i].1
                        && matches!(self.faults[i].0.fault, Fault::TruncateMedia { .. })
                })
                .filter(|&i| matches!(self.faults[i].0.phase, Phase::Any | Phase::Restore))
                .collect();
            for i in due {
                self.fire_fault(i, None);
            }
        }
        let name = stmt.devices.first().cloned().unwrap_or_default();
        let set = self.ns.sets.get(&name).map(|cfg| SetInfo {
            name: name.clone(),
            cfg: *cfg,
        });
        self.bound = if set.is_some() {
            self.client.incarnation()
        } else {
            0
        };
        self.emit("sql", "Statement", || stmt.to_tsql(), None);
        if let Some(last) = self.statements.last_mut()
            && self.server.outcome().status.is_final()
        {
            last.1 = self.server.outcome().clone();
        }
        self.statements.push((stmt.clone(), Outcome::default()));
        if !self.server_alive {
            return;
        }
        self.server
            .start(self.now, stmt, set, &mut self.out_buf, &mut self.trace);
        self.flush_server_out();
        self.wake_statement_waiters();
    }

    fn run_thread(&mut self, i: usize) {
        if self.threads[i].pending_stall > 0 {
            let ms = std::mem::take(&mut self.threads[i].pending_stall);
            self.threads[i].state = TState::Sleeping {
                until: self.now.saturating_add(ms),
            };
            let who = self.threads[i].who.clone();
            self.emit(&who, "Stall", || format!("{ms} ms (fault plan)"), None);
            return;
        }
        let reply = self.threads[i].reply.take();
        let action = self.threads[i].prog.next(reply, &mut self.proc_);
        let who = self.threads[i].who.clone();
        match action {
            Action::Call(call) => self.call(i, &who, call),
            Action::StartStatement(stmt) => {
                self.emit(&who, "StartStatement", || stmt.to_tsql(), None);
                self.pending_start = Some((self.now + self.cfg.statement_delay_ms, stmt));
                self.threads[i].reply = Some(Reply::code(Hresult::NOERROR, ""));
            }
            Action::WaitStatement { timeout } => {
                let final_ = self.server.outcome().status.is_final() || !self.server_alive;
                if final_ && self.pending_start.is_none() {
                    let o = self.current_outcome();
                    self.emit(
                        &who,
                        "WaitStatement",
                        || format!("-> {:?}", o.status),
                        Some("term.outcome-decides"),
                    );
                    self.threads[i].reply = Some(Reply {
                        code: Hresult::NOERROR,
                        clause: "term.outcome-decides",
                        value: Value::Outcome(o),
                    });
                } else {
                    self.threads[i].state = TState::Blocked {
                        wait: Wait::Statement,
                        deadline: timeout.deadline(self.now),
                    };
                }
            }
            Action::Sleep(ms) => {
                self.threads[i].state = TState::Sleeping {
                    until: self.now.saturating_add(ms),
                }
            }
            Action::Spawn { who: w, dev, prog } => {
                self.emit(&who, "Spawn", || w.clone(), None);
                self.spawn_program(&w, dev, prog);
                self.threads[i].reply = Some(Reply::code(Hresult::NOERROR, ""));
            }
            Action::Join => {
                if self
                    .threads
                    .iter()
                    .enumerate()
                    .all(|(k, t)| k == i || t.state.is_done())
                {
                    self.threads[i].reply = Some(Reply::code(Hresult::NOERROR, ""));
                } else {
                    self.threads[i].state = TState::Blocked {
                        wait: Wait::Join,
                        deadline: None,
                    };
                }
            }
            Action::Exit => {
                self.threads[i].state = TState::Done;
                self.emit(&who, "Exit", String::new, None);
                self.wake_joiners();
            }
            Action::Die => self.kill_client(),
        }
    }

    fn wake_joiners(&mut self) {
        for k in 0..self.threads.len() {
            if let TState::Blocked {
                wait: Wait::Join, ..
            } = self.threads[k].state
            {
                let others_done = self
                    .threads
                    .iter()
                    .enumerate()
                    .all(|(j, t)| j == k || t.state.is_done());
                if others_done {
                    self.threads[k].reply = Some(Reply::code(Hresult::NOERROR, ""));
                    self.make_ready(k);
                }
            }
        }
    }

    fn call(&mut self, i: usize, who: &str, call: Call) {
        match call {
            Call::Create { name, cfg } => {
                let r = self.client.create(&name, &cfg, &mut self.ns);
                self.simple(
                    i,
                    who,
                    "Create",
                    || {
                        format!(
                            "name={name:?} deviceCount={} features={}",
                            cfg.device_count,
                            vdi_spec::Features(cfg.features)
                        )
                    },
                    r,
                );
            }
            Call::CreateEx {
                instance,
                name,
                cfg,
            } => {
                let r = self
                    .client
                    .create_ex(instance.as_deref(), &name, &cfg, &mut self.ns);
                self.simple(
                    i,
                    who,
                    "CreateEx",
                    || {
                        format!(
                            "instance={instance:?} name={name:?} deviceCount={} features={}",
                            cfg.device_count,
                            vdi_spec::Features(cfg.features)
                        )
                    },
                    r,
                );
            }
            Call::GetConfiguration { timeout } => match self.client.get_configuration() {
                Poll::Ready(r) => self.finish_call_config(i, r),
                Poll::Pending => {
                    if timeout == Timeout::Ms(0) {
                        self.time_out(i, Wait::GetConfiguration, true);
                    } else {
                        self.threads[i].state = TState::Blocked {
                            wait: Wait::GetConfiguration,
                            deadline: timeout.deadline(self.now),
                        };
                    }
                }
            },
            Call::OpenDevice { name } => {
                let r = self.client.open_device(&name);
                self.count(&r);
                let code = r.code();
                self.emit(
                    who,
                    "OpenDevice",
                    || format!("name={name:?} -> {code}"),
                    Some(r.clause),
                );
                let value = match r.result {
                    Ok(h) => {
                        let ix = h.index as usize;
                        if self.proc_.handles.len() <= ix {
                            self.proc_.handles.resize(ix + 1, None);
                        }
                        self.proc_.handles[ix] = Some(h);
                        Value::Device(h)
                    }
                    Err(_) => Value::None,
                };
                self.threads[i].reply = Some(Reply {
                    code,
                    clause: r.clause,
                    value,
                });
            }
            Call::Close => {
                let r = self.client.close(&mut self.ns);
                self.simple(i, who, "Close", String::new, r);
            }
            Call::SignalAbort => {
                let r = self.client.signal_abort();
                self.simple(i, who, "SignalAbort", String::new, r);
                self.wake_blocked_abort();
            }
            Call::OpenInSecondary { secondary, name } => {
                let r = self.client.open_in_secondary(secondary, &name);
                self.simple(
                    i,
                    who,
                    "OpenInSecondary",
                    || format!("secondary={secondary} name={name:?}"),
                    r,
                );
            }
            Call::GetBufferHandle { buf } => {
                let r = self.client.get_buffer_handle(buf);
                self.count(&r);
                let code = r.code();
                self.emit(
                    who,
                    "GetBufferHandle",
                    || format!("buf={buf:?} -> {code}"),
                    Some(r.clause),
                );
                let value = r.result.map(Value::Handle).unwrap_or(Value::None);
                self.threads[i].reply = Some(Reply {
                    code,
                    clause: r.clause,
                    value,
                });
            }
            Call::MapBufferHandle { handle } => {
                let r = self.client.map_buffer_handle(handle);
                self.count(&r);
                let code = r.code();
                self.emit(
                    who,
                    "MapBufferHandle",
                    || format!("handle={handle} -> {code}"),
                    Some(r.clause),
                );
                let value = r
                    .result
                    .map(|b: BufId| Value::Buffer(b))
                    .unwrap_or(Value::None);
                self.threads[i].reply = Some(Reply {
                    code,
                    clause: r.clause,
                    value,
                });
            }
            Call::GetCommand { dev, timeout } => match self.client.get_command(dev) {
                Poll::Ready(r) => self.finish_get_command(i, dev, r),
                Poll::Pending => {
                    let poll = timeout == Timeout::Ms(0);
                    if poll {
                        self.time_out(i, Wait::GetCommand(dev, true), true);
                    } else {
                        self.threads[i].state = TState::Blocked {
                            wait: Wait::GetCommand(dev, false),
                            deadline: timeout.deadline(self.now),
                        };
                    }
                }
            },
            Call::CompleteCommand {
                dev,
                cmd,
                code,
                bytes,
                position,
                data,
            } => {
                let (code, bytes) = match self.overrides.remove(&cmd.id.0) {
                    Some(c) => {
                        self.emit(
                            "world",
                            "Override",
                            || format!("id={} completion {c} (fault plan)", cmd.id.0),
                            None,
                        );
                        (c, 0)
                    }
                    None => (code, bytes),
                };
                let r = self
                    .client
                    .complete_command(dev, &cmd, code, bytes, position, data);
                if r.result.is_ok()
                    && let Some(rep) = self.proc_.devices.get_mut(dev.index as usize)
                {
                    rep.bytes += bytes;
                }
                let id = cmd.id.0;
                self.simple(
                    i,
                    who,
                    "CompleteCommand",
                    || {
                        format!(
                            "dev={} id={id} {} code={code} bytes={bytes}",
                            dev.index,
                            cmd.code.name()
                        )
                    },
                    r,
                );
            }
        }
    }

    fn simple(
        &mut self,
        i: usize,
        who: &str,
        what: &str,
        detail: impl FnOnce() -> String,
        r: Ret<()>,
    ) {
        self.count(&r);
        let code = r.code();
        self.emit(
            who,
            what,
            || {
                let d = detail();
                if d.is_empty() {
                    format!("-> {code}")
                } else {
                    format!("{d} -> {code}")
                }
            },
            Some(r.clause),
        );
        self.threads[i].reply = Some(Reply::code(code, r.clause));
        self.flush_client_out();
    }

    fn finish(mut self, end: End) -> RunResult {
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
            client: self.proc_,
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
                clause: "world.bounded".into(),
                what: "the step bound was reached".into(),
            });
        }
    }
}

/// The program of a scripted thread: it never acts on its own.
struct Idle;

impl Program for Idle {
    fn next(&mut self, _last: Option<Reply>, _p: &mut ClientProcess) -> Action {
        Action::Exit
    }
}

fn brief_to_client(m: &ToClient) -> String {
    match m {
        ToClient::Configured { cfg, devices } => format!(
            "Configured devices={devices:?} blockSize={} maxTransferSize={}",
            cfg.block_size, cfg.max_transfer_size
        ),
        ToClient::Command(c) => format!("Command dev={} id={} {}", c.dev, c.id.0, c.code.name()),
        ToClient::CloseDevice { dev } => format!("CloseDevice dev={dev}"),
        ToClient::Abort => "Abort".into(),
        ToClient::Died => "Died".into(),
    }
}

fn brief_to_server(m: &ToServer) -> String {
    match m {
        ToServer::Completed(c) => format!(
            "Completed dev={} id={} code={} bytes={}{}",
            c.dev,
            c.id.0,
            c.code,
            c.bytes,
            if c.auto { " auto" } else { "" }
        ),
        ToServer::Abort => "Abort".into(),
        ToServer::Closed => "Closed".into(),
        ToServer::Died => "Died".into(),
    }
}
