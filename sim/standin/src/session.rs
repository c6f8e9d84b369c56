//! A server session: one thread hosting the model's [`ServerHalf`] that runs
//! the statements it is handed against the live sets it is told about, with
//! real buffer memory, in real time.
//!
//! Two hosts use it. The harness ([`crate::harness`]) runs one session per
//! conformance case inside the client's process; `vdisim serve` runs
//! sessions in a separate process and reaches each set over a socket, with
//! the buffers in shared memory. What differs between them is only the
//! [`ClientEnd`]: how a message reaches a set's client half, whether the set
//! is still live, and where its buffers are.
//!
//! The session binds a statement to the set named by its first
//! VIRTUAL_DEVICE (the latest [`SessionMsg::Connect`] under that name, if it
//! is still live; none: the statement fails as `server.open-missing-set`
//! says), feeds the client's messages of that incarnation to the server half,
//! materialises each Write's content into its buffer before delivering the
//! command, and parses each Read's buffer back into content at completion.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use vdi_sim::data;
use vdi_sim::fault::{Fault, FaultPlan, Phase, PlannedFault, Trigger};
use vdi_sim::msg::{BufId, CmdId, DevIx, ToClient, ToServer};
use vdi_sim::outcome::{Outcome, Status};
use vdi_sim::server::{ServerDevSummary, ServerHalf, SetInfo};
use vdi_sim::statement::{BackupRecord, Statement};
use vdi_sim::trace::Trace;
use vdi_spec::{CommandCode, Profile, VdConfig};

/// Identity of one set incarnation as a session knows it (host-chosen).
pub type SetKey = (usize, u32);

/// The server's buffer memory for one set incarnation.
pub trait ServerBuffers: Send + Sync {
    /// Makes buffer `id` exist (the client will be handed its address).
    fn prepare(&self, id: BufId);
    /// Runs `f` on the first `n` data bytes of buffer `id` (clamped to the
    /// buffer). The caller owns the buffer under the protocol.
    fn with_bytes(&self, id: BufId, n: usize, f: &mut dyn FnMut(&mut [u8]));
}

/// One set incarnation's client side, as the session reaches it.
pub trait ClientEnd: Send + Sync {
    /// Delivers `msg` to the incarnation's client half.
    fn deliver(&self, msg: ToClient);
    /// The set's client configuration while it is live (created and not yet
    /// closed), as `IServerVirtualDeviceSet2::Open` would find it.
    fn live(&self) -> Option<VdConfig>;
    /// The incarnation's buffer memory.
    fn buffers(&self) -> &dyn ServerBuffers;
}

/// What a session is told.
pub enum SessionMsg {
    /// A set incarnation was created (the latest under a name wins).
    Connect {
        key: SetKey,
        name: String,
        end: Arc<dyn ClientEnd>,
    },
    /// A message from an incarnation's client half.
    Client { key: SetKey, msg: ToServer },
    /// Run a statement.
    Statement(Box<Statement>),
    /// Apply a server-side event now; the sender is told when it is applied.
    Fault(Fault, Sender<()>),
    /// End the session.
    Stop,
}

/// The setup of one session.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionSetup {
    pub seed: u64,
    pub profile: Profile,
    pub seed_backups: Vec<BackupRecord>,
    /// Virtual-time budget of the case (ms): [`Session::finish`] waits for
    /// the server to become idle at most until the budget is spent.
    pub budget_ms: u64,
    /// Virtual milliseconds per real millisecond (0 or 1: real time). The
    /// session's clock (the server half's `now`, its deadlines, stalls,
    /// planned faults at a time) reads real elapsed time × this; set
    /// objects made during the case scale their timeouts by it too.
    #[serde(default = "one")]
    pub time_scale: u32,
    /// Faults planned for the case. The session fires the server-side ones
    /// triggered `at-ms` (on its scaled clock); faults triggered by a
    /// command fetch, and client-side ones, are the client's to apply (in
    /// the model they fire when the client *fetches* the command), which it
    /// does through [`Session::event`] and the harness's client death.
    pub faults: FaultPlan,
    /// Fire the plan's server-side `on-command` faults when the server
    /// *sends* the triggering command (a server process has no view of the
    /// client's fetch; the harness fires them at the fetch instead and
    /// leaves this off).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fire_on_send: bool,
}

fn one() -> u32 {
    1
}

impl SessionSetup {
    /// The scale as a divisor (at least 1).
    pub fn scale(&self) -> u32 {
        self.time_scale.max(1)
    }
}

/// What a session observed.
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
    /// Backups the session's statements added to the history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_backups: Vec<BackupRecord>,
    /// The server half's trace as JSONL, when the session records one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trace_jsonl: String,
}

#[derive(Default)]
struct Published {
    statements: Vec<(Statement, Outcome)>,
    devices: Vec<ServerDevSummary>,
    clauses: BTreeMap<String, u64>,
    trace_hash: String,
    idle: bool,
    faults: Vec<String>,
    new_backups: Vec<BackupRecord>,
    trace_jsonl: String,
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

/// A running session: the handle its host keeps.
pub struct Session {
    tx: Mutex<Sender<SessionMsg>>,
    shared: Arc<Shared>,
    started: Instant,
    scale: u32,
    budget_ms: u64,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Session {
    /// Starts a session thread for `setup`; with `record`, the server half's
    /// trace is kept whole (else only hashed).
    pub fn start(setup: SessionSetup, record: bool) -> Arc<Session> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let started = Instant::now();
        let profile = Arc::new(setup.profile.clone());
        let (scale, budget_ms) = (setup.scale(), setup.budget_ms);
        let server = Server::new(setup, profile, rx, shared.clone(), started, record);
        let handle = std::thread::Builder::new()
            .name("vdisim-session".into())
            .spawn(move || server.run())
            .ok();
        Arc::new(Session {
            tx: Mutex::new(tx),
            shared,
            started,
            scale,
            budget_ms,
            thread: Mutex::new(handle),
        })
    }

    /// A sender for messages to the session (connections, client messages).
    pub fn sender(&self) -> Sender<SessionMsg> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends `m` to the session thread.
    pub fn send(&self, m: SessionMsg) {
        let _ = self.tx.lock().unwrap_or_else(|e| e.into_inner()).send(m);
    }

    /// When the session started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Virtual milliseconds per real millisecond (at least 1).
    pub fn time_scale(&self) -> u32 {
        self.scale
    }

    /// Virtual milliseconds since the session started.
    pub fn now_ms(&self) -> u64 {
        scaled_now(self.started, self.scale)
    }

    /// The real wait for `ms` of virtual time.
    pub fn real(&self, ms: u64) -> Duration {
        real_wait(ms, self.scale)
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
        self.send(SessionMsg::Statement(Box::new(stmt)));
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
        self.send(SessionMsg::Fault(f, ack));
        let _ = done.recv_timeout(Duration::from_secs(10));
        Ok(())
    }

    /// Waits up to `timeout` (`None`: forever) for the latest statement's
    /// outcome; `Some` when final, `None` on timeout (or no statement, or
    /// the session stopped).
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

    /// Ends the session: waits up to `settle` (and no longer than what is
    /// left of the case's virtual-time budget, as the model drains a run
    /// only up to its budget) for the server to become idle, stops the
    /// thread, and returns what was observed.
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

    /// Stops the session thread (idempotent).
    pub fn stop(&self) {
        self.send(SessionMsg::Stop);
        let h = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = h {
            let _ = h.join();
        }
        let mut g = self.shared.lock();
        g.stopped = true;
        self.shared.cond.notify_all();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.send(SessionMsg::Stop);
    }
}

// ----- the scaled clock --------------------------------------------------------------

/// Virtual ms since `started` at `scale` virtual ms per real ms.
fn scaled_now(started: Instant, scale: u32) -> u64 {
    let real = started.elapsed().as_micros();
    u64::try_from(real.saturating_mul(u128::from(scale.max(1))) / 1000).unwrap_or(u64::MAX)
}

/// The real wait for `ms` virtual ms: rounded up to whole real
/// milliseconds, at least 1 for `ms > 0` (as the set objects' timeouts).
fn real_wait(ms: u64, scale: u32) -> Duration {
    crate::runtime::scaled_wait(ms, scale)
}

// ----- the session thread ------------------------------------------------------------

#[derive(Clone)]
struct Conn {
    key: SetKey,
    end: Arc<dyn ClientEnd>,
}

struct Server {
    server: ServerHalf,
    rx: Receiver<SessionMsg>,
    shared: Arc<Shared>,
    started: Instant,
    tr: Trace,
    /// Latest connection per set name.
    conns: BTreeMap<String, Conn>,
    bound: Option<Conn>,
    reads: BTreeMap<CmdId, (BufId, u32)>,
    /// History length at the start (what follows is new).
    known: usize,
    stalled_until: u64,
    stalled: VecDeque<(SetKey, ToServer)>,
    alive: bool,
    statements: Vec<(Statement, Outcome)>,
    faults: Vec<String>,
    out: Vec<ToClient>,
    scale: u32,
    /// Server-side faults planned at a virtual time: (ms, fault), not yet fired.
    timed: Vec<(u64, Fault)>,
    /// Server-side faults fired when the server sends their command.
    on_send: Vec<PlannedFault>,
    /// Commands sent per (device, code or any) in this statement.
    sent: BTreeMap<(DevIx, Option<CommandCode>), u64>,
    /// Whether the running statement is a BACKUP (fault phases).
    phase_backup: bool,
    /// When the server died (virtual ms), if it did.
    died_at: Option<u64>,
}

impl Server {
    fn new(
        setup: SessionSetup,
        profile: Arc<Profile>,
        rx: Receiver<SessionMsg>,
        shared: Arc<Shared>,
        started: Instant,
        record: bool,
    ) -> Server {
        let mut server = ServerHalf::new(profile);
        let known = setup.seed_backups.len();
        let scale = setup.scale();
        let timed = setup
            .faults
            .faults
            .iter()
            .filter_map(|pf| match pf.trigger {
                Trigger::AtMs { ms } if pf.fault.is_server_side() => Some((ms, pf.fault.clone())),
                _ => None,
            })
            .collect();
        let on_send = if setup.fire_on_send {
            setup
                .faults
                .faults
                .iter()
                .filter(|pf| {
                    matches!(pf.trigger, Trigger::OnCommand { .. }) && pf.fault.is_server_side()
                })
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        for rec in setup.seed_backups {
            server.add_backup(rec);
        }
        Server {
            server,
            rx,
            shared,
            started,
            tr: if record {
                Trace::recording()
            } else {
                Trace::hashing()
            },
            conns: BTreeMap::new(),
            bound: None,
            reads: BTreeMap::new(),
            known,
            stalled_until: 0,
            stalled: VecDeque::new(),
            alive: true,
            statements: Vec::new(),
            faults: Vec::new(),
            out: Vec::new(),
            scale,
            timed,
            on_send,
            sent: BTreeMap::new(),
            phase_backup: true,
            died_at: None,
        }
    }

    fn now(&self) -> u64 {
        scaled_now(self.started, self.scale)
    }

    /// Fires the planned server-side faults whose time has come.
    fn fire_timed(&mut self) {
        let now = self.now();
        let due: Vec<Fault> = self
            .timed
            .iter()
            .filter(|(ms, _)| *ms <= now)
            .map(|(_, f)| f.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        self.timed.retain(|(ms, _)| *ms > now);
        for f in due {
            self.fault(f);
        }
    }

    fn run(mut self) {
        let ok = catch_unwind(AssertUnwindSafe(|| self.serve()));
        if ok.is_err() {
            eprintln!("vdisim: the server session thread panicked");
            if let Some(b) = &self.bound {
                b.end.deliver(ToClient::Died);
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
        let died = !self.alive && !self.server.outcome().status.is_final();
        if let Some(last) = self.statements.last_mut() {
            last.1 = if died {
                Outcome::server_died(self.died_at)
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
        g.idle = !self.alive || self.server.is_idle();
        g.faults = self.faults.clone();
        self.shared.cond.notify_all();
    }

    /// Sends the server half's output to the bound incarnation.
    fn flush(&mut self) {
        let msgs: Vec<ToClient> = std::mem::take(&mut self.out);
        let mut due = Vec::new();
        for m in msgs {
            if self.bound.is_none() {
                continue;
            }
            if let ToClient::Command(c) = &m
                && !self.on_send.is_empty()
            {
                due.extend(self.due_on_send(c.dev, c.code));
            }
            let Some(b) = &self.bound else { continue };
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
                            data::materialize(&c.data.slice(0, n as u64), &mut bytes[..n]);
                        });
                }
            }
            b.end.deliver(m);
        }
        for f in due {
            self.fault(f);
        }
    }

    /// Counts a command sent to `dev`; returns the planned faults it
    /// triggers (`fire_on_send`), removed from the plan.
    fn due_on_send(&mut self, dev: DevIx, code: CommandCode) -> Vec<Fault> {
        let all = {
            let n = self.sent.entry((dev, None)).or_default();
            *n += 1;
            *n
        };
        let of_code = {
            let n = self.sent.entry((dev, Some(code))).or_default();
            *n += 1;
            *n
        };
        let backup = self.phase_backup;
        let (fired, keep): (Vec<PlannedFault>, Vec<PlannedFault>) =
            std::mem::take(&mut self.on_send)
                .into_iter()
                .partition(|pf| {
                    let phase_ok = match pf.phase {
                        Phase::Any => true,
                        Phase::Backup => backup,
                        Phase::Restore => !backup,
                    };
                    match &pf.trigger {
                        Trigger::OnCommand {
                            dev: d,
                            nth,
                            code: want,
                        } if *d == dev && phase_ok => match want {
                            None => all == *nth,
                            Some(w) => *w == code && of_code == *nth,
                        },
                        _ => false,
                    }
                });
        self.on_send = keep;
        fired.into_iter().map(|pf| pf.fault).collect()
    }

    fn on_client(&mut self, key: SetKey, msg: ToServer) {
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
                    let mut parsed = vdi_sim::data::Content::Empty;
                    conn.end
                        .buffers()
                        .with_bytes(b, n, &mut |buf| parsed = data::parse_tagged(buf));
                    c.data = parsed;
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
        let conn = self.conns.get(&name).cloned();
        let live = conn.as_ref().and_then(|c| c.end.live());
        let set = live.map(|cfg| SetInfo {
            name: name.clone(),
            cfg,
        });
        self.bound = if set.is_some() { conn } else { None };
        self.reads.clear();
        self.phase_backup = stmt.kind.is_backup();
        self.sent.clear();
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
                self.died_at = Some(now);
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
            let mut wake: Option<u64> = None;
            if self.alive {
                if let Some(d) = self.server.next_deadline() {
                    wake = Some(d.max(self.stalled_until));
                }
                if !self.stalled.is_empty() {
                    wake = Some(wake.map_or(self.stalled_until, |w| w.min(self.stalled_until)));
                }
                if let Some(t) = self.timed.iter().map(|(ms, _)| *ms).min() {
                    wake = Some(wake.map_or(t, |w| w.min(t)));
                }
            }
            let r = match wake {
                Some(w) => self
                    .rx
                    .recv_timeout(real_wait(w.saturating_sub(now), self.scale)),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match r {
                Ok(SessionMsg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(SessionMsg::Connect { key, name, end }) => {
                    self.conns.insert(name, Conn { key, end });
                }
                Ok(SessionMsg::Client { key, msg }) => self.on_client(key, msg),
                Ok(SessionMsg::Statement(s)) => self.start(*s),
                Ok(SessionMsg::Fault(f, ack)) => {
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
