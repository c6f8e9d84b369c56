//! The one server host: a thread running the model's server half for the
//! statements it is handed, against the set incarnations it is told about,
//! with real buffer memory, on a real (optionally scaled) clock.
//!
//! Every real-time driver uses it: the harness runs one per conformance
//! case inside the client's process ([`crate::case`]), the in-process plan
//! server one per set created ([`crate::plan`]), and `vdisim serve` one per
//! statement in a separate process. What differs between them is only the
//! [`SetEnd`]: how a message reaches a set's client half, whether the set
//! is still live, and where its buffers are.
//!
//! The host binds a statement to the set named by its first VIRTUAL_DEVICE
//! (the latest [`HostMsg::Connect`] under that name, if it is still live;
//! none: the statement fails as `server.open-missing-set` says), feeds the
//! client's messages of that incarnation to the server half, materialises
//! each Write's content into its buffer before delivering the command, and
//! parses each Read's buffer back into content at completion.
//!
//! Faults: the host fires the faults of its [`HostSetup::faults`] — chosen
//! by its creator, server-side only — when the model's matcher
//! ([`FaultSchedule`]) says: `at-ms` on the host's clock, `on-command` when
//! the client's fetch is reported ([`HostMsg::Fetched`]; across processes
//! the report may arrive after the client has moved on), and
//! `after-completions` when the server half takes a completion.

use crate::buffers::ServerBuffers;
use crate::clock::{scaled_now, scaled_wait};
use crate::contract::{CaseSetup, Observation};
use std::collections::{BTreeMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use vdi_model::content::{self, Content};
use vdi_model::fault::{Fault, FaultPlan, FaultSchedule};
use vdi_model::msg::{BufId, CmdId, DevIx, ToClient, ToServer};
use vdi_model::outcome::{Outcome, Status};
use vdi_model::server::{ServerDevSummary, ServerHalf, SetInfo};
use vdi_model::statement::{BackupRecord, Statement};
use vdi_model::trace::Trace;
use vdi_spec::{CommandCode, Profile, VdConfig};

/// Identity of one set incarnation as a host knows it (creator-chosen).
pub type SetKey = (usize, u32);

/// One set incarnation's client side, as the server host reaches it.
pub trait SetEnd: Send + Sync {
    /// Delivers `msg` to the incarnation's client half.
    fn deliver(&self, msg: ToClient);
    /// The set's client configuration while it is live (created and not yet
    /// closed), as `IServerVirtualDeviceSet2::Open` would find it.
    fn live(&self) -> Option<VdConfig>;
    /// The incarnation's buffer memory.
    fn buffers(&self) -> &dyn ServerBuffers;
}

/// What a host is told.
pub enum HostMsg {
    /// A set incarnation was created (the latest under a name wins).
    Connect {
        key: SetKey,
        name: String,
        end: Arc<dyn SetEnd>,
    },
    /// A message from an incarnation's client half.
    Client { key: SetKey, msg: ToServer },
    /// The incarnation's client fetched a command (GetCommand returned it).
    Fetched {
        key: SetKey,
        dev: DevIx,
        code: CommandCode,
    },
    /// Run a statement.
    Statement(Box<Statement>),
    /// Apply a server-side event now; the sender is told when it is applied.
    Fault(Fault, Sender<()>),
    /// End the host.
    Stop,
}

/// What a host runs with.
#[derive(Clone, Debug, Default)]
pub struct HostSetup {
    pub profile: Profile,
    /// msdb history before the first statement.
    pub seed_backups: Vec<BackupRecord>,
    /// Virtual ms per real ms (0 or 1: real time).
    pub time_scale: u32,
    /// Virtual-time budget (0: none): [`ServerHost::finish`] waits at most
    /// until it is spent.
    pub budget_ms: u64,
    /// The server-side faults this host fires itself.
    pub faults: FaultPlan,
    /// Keep the server half's trace whole (else only hashed).
    pub record: bool,
    /// Where the client-side faults of `faults` go when they fire (a
    /// runner that controls the client process applies them: kills it,
    /// stops it). Without a hook, client-side faults are not the host's.
    pub client_faults: Option<ClientFaultHook>,
    /// Backups taken before `seed_backups` that the host is not given
    /// (a long-running server passes only the backup a RESTORE reads):
    /// the first new backup is numbered after them and the seeds.
    pub backups_before: u32,
}

impl HostSetup {
    /// The host of a harness case: the case's profile, history, clock and
    /// budget; it fires the case's server-side faults planned at a time
    /// (the client side fires the rest at the client's fetch).
    pub fn for_case(setup: &CaseSetup) -> HostSetup {
        HostSetup {
            profile: setup.profile.clone(),
            seed_backups: setup.seed_backups.clone(),
            time_scale: setup.scale(),
            budget_ms: setup.budget_ms,
            faults: setup.server_timed_faults(),
            record: setup.record_trace,
            client_faults: None,
            backups_before: 0,
        }
    }

    fn scale(&self) -> u32 {
        self.time_scale.max(1)
    }
}

/// Applies the client-side faults a host's plan fires (see
/// [`HostSetup::client_faults`]): called on the host thread, it must not
/// block for long.
#[derive(Clone)]
pub struct ClientFaultHook(pub Arc<dyn Fn(&Fault) + Send + Sync>);

impl std::fmt::Debug for ClientFaultHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientFaultHook")
    }
}

/// Told when a statement the host ran has ended (the plan server publishes
/// outcomes and history this way).
pub trait StatementListener: Send + Sync {
    /// Statement `index` (0-based, in start order) ended with `outcome`;
    /// `new_backups` are the backups it added to the history.
    fn ended(
        &self,
        index: usize,
        outcome: &Outcome,
        devices: &[ServerDevSummary],
        new_backups: &[BackupRecord],
    );
}

#[derive(Default)]
struct Board {
    statements: Vec<(Statement, Outcome)>,
    devices: Vec<ServerDevSummary>,
    clauses: BTreeMap<String, u64>,
    trace_hash: String,
    idle: bool,
    faults: Vec<String>,
    new_backups: Vec<BackupRecord>,
    trace_jsonl: String,
    stopped: bool,
    /// The latest statement's transfer: bytes done and bytes in all.
    progress: (u64, u64),
}

#[derive(Default)]
struct Shared {
    board: Mutex<Board>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running server host: the handle its creator keeps.
pub struct ServerHost {
    tx: Mutex<Sender<HostMsg>>,
    shared: Arc<Shared>,
    started: Instant,
    scale: u32,
    budget_ms: u64,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl ServerHost {
    /// Starts a host thread for `setup`.
    pub fn start(setup: HostSetup) -> Arc<ServerHost> {
        ServerHost::start_with(setup, None)
    }

    /// As [`ServerHost::start`], telling `listener` when each statement ends.
    pub fn start_with(
        setup: HostSetup,
        listener: Option<Arc<dyn StatementListener>>,
    ) -> Arc<ServerHost> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let started = Instant::now();
        let (scale, budget_ms) = (setup.scale(), setup.budget_ms);
        let thread = HostThread::new(setup, rx, shared.clone(), started, listener);
        let handle = std::thread::Builder::new()
            .name("vdisim-server".into())
            .spawn(move || thread.run())
            .ok();
        Arc::new(ServerHost {
            tx: Mutex::new(tx),
            shared,
            started,
            scale,
            budget_ms,
            thread: Mutex::new(handle),
        })
    }

    /// A sender for messages to the host (connections, client messages).
    pub fn sender(&self) -> Sender<HostMsg> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends `m` to the host thread.
    pub fn send(&self, m: HostMsg) {
        let _ = self.tx.lock().unwrap_or_else(|e| e.into_inner()).send(m);
    }

    /// When the host started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Virtual milliseconds per real millisecond (at least 1).
    pub fn time_scale(&self) -> u32 {
        self.scale
    }

    /// Virtual milliseconds since the host started.
    pub fn now_ms(&self) -> u64 {
        scaled_now(self.started, self.scale)
    }

    /// The real wait for `ms` of virtual time.
    pub fn real(&self, ms: u64) -> Duration {
        scaled_wait(ms, self.scale)
    }

    /// Starts `stmt` (marked running at once, so a wait right after sees it).
    pub fn start_statement(&self, stmt: Statement) {
        self.shared.lock().statements.push((
            stmt.clone(),
            Outcome {
                status: Status::Running,
                ..Outcome::default()
            },
        ));
        self.send(HostMsg::Statement(Box::new(stmt)));
    }

    /// Applies a server-side event (server SignalAbort, death, stall, early
    /// CloseDevice) before returning, as in the model: the client's next
    /// call sees it. Other faults are the client's to apply: `Err` names it.
    pub fn event(&self, f: Fault) -> Result<(), String> {
        if !f.is_server_side() {
            return Err(format!(
                "{} is a client-side fault: the client applies it itself",
                f.kind()
            ));
        }
        let (ack, done) = mpsc::channel();
        self.send(HostMsg::Fault(f, ack));
        let _ = done.recv_timeout(Duration::from_secs(10));
        Ok(())
    }

    /// Waits up to `timeout` (`None`: forever) for the latest statement's
    /// outcome; `Some` when final, `None` on timeout (or no statement, or
    /// the host stopped).
    pub fn wait_statement(&self, timeout: Option<Duration>) -> Option<Outcome> {
        let dl = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut g = self.shared.lock();
        loop {
            if let Some((_, o)) = g.statements.last()
                && o.status.is_final()
            {
                return Some(o.clone());
            }
            if g.stopped {
                return None;
            }
            match dl {
                None => g = self.shared.cond.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    g = self
                        .shared
                        .cond
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// How far the latest statement's data transfer is: bytes acknowledged
    /// (BACKUP) or verified (RESTORE) and the bytes it moves in all, as of
    /// the host thread's latest step (`(0, 0)` before a RESTORE has read
    /// its media headers).
    pub fn progress(&self) -> (u64, u64) {
        self.shared.lock().progress
    }

    /// Whether the host thread has stopped.
    pub fn is_stopped(&self) -> bool {
        self.shared.lock().stopped
    }

    /// Ends the host: waits up to `settle` (and no longer than what is left
    /// of the budget, as the model drains a run only up to its budget) for
    /// the server to become idle, stops the thread, and returns what was
    /// observed.
    pub fn finish(&self, settle: Duration) -> Observation {
        let settle = if self.budget_ms > 0 {
            settle.min(self.real(self.budget_ms.saturating_sub(self.now_ms())))
        } else {
            settle
        };
        let dl = Instant::now() + settle;
        {
            let mut g = self.shared.lock();
            while !g.idle && !g.stopped {
                let now = Instant::now();
                if now >= dl {
                    break;
                }
                g = self
                    .shared
                    .cond
                    .wait_timeout(g, dl - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        self.stop();
        let g = self.shared.lock();
        Observation {
            statements: g.statements.clone(),
            devices: g.devices.clone(),
            clauses: g.clauses.clone(),
            trace_hash: g.trace_hash.clone(),
            elapsed_ms: self.now_ms(),
            idle: g.idle,
            faults_fired: g.faults.clone(),
            new_backups: g.new_backups.clone(),
            trace_jsonl: g.trace_jsonl.clone(),
        }
    }

    /// Stops the host thread (idempotent).
    pub fn stop(&self) {
        self.send(HostMsg::Stop);
        let h = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = h {
            let _ = h.join();
        }
        let mut g = self.shared.lock();
        g.stopped = true;
        self.shared.cond.notify_all();
    }
}

impl Drop for ServerHost {
    fn drop(&mut self) {
        self.send(HostMsg::Stop);
    }
}

// ----- the host thread ---------------------------------------------------------------

#[derive(Clone)]
struct Conn {
    key: SetKey,
    end: Arc<dyn SetEnd>,
}

struct HostThread {
    server: ServerHalf,
    rx: Receiver<HostMsg>,
    shared: Arc<Shared>,
    listener: Option<Arc<dyn StatementListener>>,
    started: Instant,
    tr: Trace,
    /// Latest connection per set name.
    conns: BTreeMap<String, Conn>,
    bound: Option<Conn>,
    reads: BTreeMap<CmdId, (BufId, u32)>,
    /// History length at the start of the current statement (what follows
    /// is new) and at the start of the host.
    known_stmt: usize,
    known: usize,
    stalled_until: u64,
    stalled: VecDeque<(SetKey, ToServer)>,
    alive: bool,
    statements: Vec<(Statement, Outcome)>,
    /// Whether the latest statement's end has been told to the listener.
    told: bool,
    fired: Vec<String>,
    out: Vec<ToClient>,
    scale: u32,
    faults: FaultSchedule,
    /// When the server died (virtual ms), if it did.
    died_at: Option<u64>,
    client_faults: Option<ClientFaultHook>,
}

impl HostThread {
    fn new(
        setup: HostSetup,
        rx: Receiver<HostMsg>,
        shared: Arc<Shared>,
        started: Instant,
        listener: Option<Arc<dyn StatementListener>>,
    ) -> HostThread {
        let mut server = ServerHalf::new(Arc::new(setup.profile.clone()));
        let known = setup.seed_backups.len();
        let scale = setup.scale();
        let faults = FaultSchedule::new(&setup.faults);
        server.number_backups_after(setup.backups_before);
        for rec in setup.seed_backups {
            server.add_backup(rec);
        }
        HostThread {
            server,
            rx,
            shared,
            listener,
            started,
            tr: if setup.record {
                Trace::recording()
            } else {
                Trace::hashing()
            },
            conns: BTreeMap::new(),
            bound: None,
            reads: BTreeMap::new(),
            known_stmt: known,
            known,
            stalled_until: 0,
            stalled: VecDeque::new(),
            alive: true,
            statements: Vec::new(),
            told: true,
            fired: Vec::new(),
            out: Vec::new(),
            scale,
            faults,
            died_at: None,
            client_faults: setup.client_faults,
        }
    }

    fn now(&self) -> u64 {
        scaled_now(self.started, self.scale)
    }

    /// Fires the planned faults whose time has come.
    fn fire_timed(&mut self) {
        let now = self.now();
        for i in self.faults.due_at_ms(now) {
            let f = self.faults.fire(i);
            self.fault(f);
        }
    }

    fn run(mut self) {
        let ok = catch_unwind(AssertUnwindSafe(|| self.serve()));
        if ok.is_err() {
            eprintln!("vdisim: the server host thread panicked");
            if let Some(b) = &self.bound {
                b.end.deliver(ToClient::Died);
            }
        }
        self.publish(true);
        let mut g = self.shared.lock();
        g.stopped = true;
        self.shared.cond.notify_all();
    }

    /// The latest statement's outcome as the host reports it.
    fn latest_outcome(&self) -> Outcome {
        let died = !self.alive && !self.server.outcome().status.is_final();
        if died {
            Outcome::server_died(self.died_at)
        } else {
            self.server.outcome().clone()
        }
    }

    /// Publishes the statements' outcomes and idleness; with `full`, also
    /// the device summaries, clause hits and trace hash. Tells the listener
    /// once the latest statement has ended (the server half is idle again,
    /// so its history holds what the statement added).
    fn publish(&mut self, full: bool) {
        let latest = self.latest_outcome();
        if let Some(last) = self.statements.last_mut() {
            last.1 = latest.clone();
        }
        let idle = !self.alive || self.server.is_idle();
        if !self.told && (idle || full) {
            self.told = true;
            if let Some(l) = &self.listener {
                let new = self
                    .server
                    .history()
                    .get(self.known_stmt..)
                    .unwrap_or_default();
                l.ended(
                    self.statements.len().saturating_sub(1),
                    &latest,
                    &self.server.devices(),
                    new,
                );
            }
        }
        let mut g = self.shared.lock();
        // Statements the creator announced but the thread has not started
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
            g.new_backups = self
                .server
                .history()
                .get(self.known..)
                .unwrap_or_default()
                .to_vec();
            if self.tr.on() && !self.tr.events().is_empty() {
                g.trace_jsonl = self.tr.to_jsonl();
            }
        }
        g.idle = idle;
        g.progress = self.server.progress();
        g.faults = self.fired.clone();
        self.shared.cond.notify_all();
    }

    /// Sends the server half's output to the bound incarnation.
    fn flush(&mut self) {
        let msgs: Vec<ToClient> = std::mem::take(&mut self.out);
        let Some(b) = &self.bound else { return };
        for m in msgs {
            if let ToClient::Command(c) = &m
                && let Some(buf) = c.buffer
            {
                if c.code == CommandCode::Read {
                    b.end.buffers().prepare(buf);
                    self.reads.insert(c.id, (buf, c.size));
                } else {
                    b.end
                        .buffers()
                        .with_bytes(buf, c.size as usize, &mut |bytes| {
                            let n = (c.data.len() as usize).min(bytes.len());
                            content::materialize(&c.data.slice(0, n as u64), &mut bytes[..n]);
                        });
                }
            }
            b.end.deliver(m);
        }
    }

    fn on_client(&mut self, key: SetKey, msg: ToServer) {
        let bound = self.bound.as_ref().map(|b| b.key);
        if bound != Some(key) || self.server.is_idle() || !self.alive {
            return;
        }
        let now = self.now();
        if now < self.stalled_until {
            if msg.ends_set() {
                self.end_during_stall(now, msg);
            } else {
                self.stalled.push_back((key, msg));
            }
            return;
        }
        let completion = matches!(&msg, ToServer::Completed(c) if !c.auto);
        let msg = match msg {
            ToServer::Completed(mut c) => {
                if let Some((b, size)) = self.reads.remove(&c.id)
                    && !c.auto
                    && c.bytes > 0
                    && let Some(conn) = &self.bound
                {
                    let n = c.bytes.min(u64::from(size)) as usize;
                    let mut parsed = Content::Empty;
                    conn.end
                        .buffers()
                        .with_bytes(b, n, &mut |buf| parsed = content::parse_tagged(buf));
                    c.data = parsed;
                }
                ToServer::Completed(c)
            }
            m => m,
        };
        self.server
            .on_message(now, msg, &mut self.out, &mut self.tr);
        self.flush();
        if completion {
            for i in self.faults.on_completion() {
                let f = self.faults.fire(i);
                self.fault(f);
            }
        }
    }

    /// Clause `abort.during-server-stall` (as the world does): the
    /// client's SignalAbort, Close or death during a stall is taken at
    /// once, ahead of the completions the stall holds; the statement ends,
    /// and the stall with it (what it held then finds no statement and is
    /// dropped).
    fn end_during_stall(&mut self, now: u64, msg: ToServer) {
        if self.tr.on() {
            self.tr.emit(
                now,
                "server",
                "StallInterrupted",
                format!(
                    "{msg:?} during a stall until {} ms: taken at once, ahead of {} held messages",
                    self.stalled_until,
                    self.stalled.len()
                ),
                Some(vdi_spec::id::ABORT_DURING_SERVER_STALL),
            );
        }
        self.server
            .on_message(now, msg, &mut self.out, &mut self.tr);
        self.flush();
        self.stalled_until = now;
    }

    fn on_fetched(&mut self, key: SetKey, dev: DevIx, code: CommandCode) {
        if self.bound.as_ref().map(|b| b.key) != Some(key) {
            return;
        }
        for i in self.faults.on_fetch(dev, code) {
            let f = self.faults.fire(i);
            self.fault(f);
        }
    }

    fn start(&mut self, stmt: Statement) {
        if let Some(last) = self.statements.last_mut()
            && self.server.outcome().status.is_final()
        {
            last.1 = self.server.outcome().clone();
        }
        self.statements.push((stmt.clone(), Outcome::default()));
        self.told = false;
        self.known_stmt = self.server.history().len();
        if !self.alive {
            return;
        }
        let name = stmt.devices.first().cloned().unwrap_or_default();
        let conn = self.conns.get(&name).cloned();
        let live = conn.as_ref().and_then(|c| c.end.live());
        let set = live.map(|cfg| SetInfo {
            name: name.clone(),
            cfg,
        });
        self.bound = if set.is_some() { conn } else { None };
        self.reads.clear();
        self.faults.statement_starts(stmt.kind.is_backup());
        let now = self.now();
        self.server
            .start(now, stmt, set, &mut self.out, &mut self.tr);
        self.flush();
    }

    fn fault(&mut self, f: Fault) {
        self.fired.push(f.kind().to_string());
        let now = self.now();
        if !self.alive {
            return;
        }
        if !f.is_server_side() {
            if let Some(h) = &self.client_faults {
                (h.0)(&f);
            }
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
                self.died_at = Some(now);
                self.stalled.clear();
                self.out.clear();
                self.out.push(ToClient::Died);
                self.flush();
            }
            Fault::Attention => {
                self.server.attention(now, &mut self.out, &mut self.tr);
                self.flush();
            }
            Fault::Disconnect => {
                self.server.disconnected(now, &mut self.out, &mut self.tr);
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

    /// When the thread must wake next (virtual ms), if anything is due.
    fn next_wake(&self) -> Option<u64> {
        if !self.alive {
            return None;
        }
        let mut wake: Option<u64> = None;
        let mut consider = |t: u64| wake = Some(wake.map_or(t, |w| w.min(t)));
        if let Some(d) = self.server.next_deadline() {
            consider(d.max(self.stalled_until));
        }
        if !self.stalled.is_empty() {
            consider(self.stalled_until);
        }
        if let Some(t) = self.faults.next_at_ms(0) {
            consider(t);
        }
        wake
    }

    fn serve(&mut self) {
        loop {
            self.fire_timed();
            self.publish(false);
            let now = self.now();
            // Messages held by a stall, once it is over.
            if now >= self.stalled_until && !self.stalled.is_empty() {
                while let Some((k, m)) = self.stalled.pop_front() {
                    self.on_client(k, m);
                }
                continue;
            }
            let r = match self.next_wake() {
                Some(w) => self
                    .rx
                    .recv_timeout(scaled_wait(w.saturating_sub(now), self.scale)),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match r {
                Ok(HostMsg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(HostMsg::Connect { key, name, end }) => {
                    self.conns.insert(name, Conn { key, end });
                }
                Ok(HostMsg::Client { key, msg }) => self.on_client(key, msg),
                Ok(HostMsg::Fetched { key, dev, code }) => self.on_fetched(key, dev, code),
                Ok(HostMsg::Statement(s)) => self.start(*s),
                Ok(HostMsg::Fault(f, ack)) => {
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
