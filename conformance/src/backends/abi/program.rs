//! Built-in client programs on the ABI backends.
//!
//! [`AbiDriver::run_program`] runs a [`ClientSpec`]'s controller, and every
//! thread it spawns, each on its own OS thread. Every [`Action::Call`] goes
//! through the same `perform` path as a script's calls (the real binary
//! interface of the library); the replies are recorded in one
//! [`ClientProcess`] by `ClientProcess::absorb`, as the model's world
//! records them, and the program's own `next` keeps the media, read
//! cursors, `believes_success` and log. StartStatement / WaitStatement go
//! to the library's server host (`vdisim_harness_*`); Sleep waits on the
//! case's scaled clock; Die (and a planned client death) calls
//! `vdisim_harness_client_death`, after which no thread acts again (the
//! model marks every thread done).
//!
//! The run ends as the model's does: *finished* when every thread has
//! exited (or the client died) and the server is idle; *budget* when the
//! case's virtual budget has passed on the scaled clock; *hang* when every
//! live thread has waited forever (INFINITE GetCommand / GetConfiguration,
//! an unbounded WaitStatement, Join) for longer than anything the server
//! could still be waiting for (watchdog, stalls) plus a margin.
//!
//! Planned faults are the driver's ([`super::client_faults`]): those a
//! fetch triggers fire in `perform` right after GetCommand returned the
//! command, for program threads and script threads alike; the client's own
//! faults at a time fire from the supervisor loop here.

use super::HANG_AFTER;
use super::client_faults;
use super::driver::AbiDriver;
use super::harness::{Harness, StatementControl};
use super::perform::perform;
use super::secondary::{self, Launch, Process};
use super::shared::Shared;
use crate::backend::{BackendError, CaseSetup};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vdi_host::clock::scaled_wait;
use vdi_model::call::{Call, Reply, Value};
use vdi_model::checks;
use vdi_model::content::Content;
use vdi_model::fault::{Fault, FaultPlan};
use vdi_model::msg::{DevIx, Timeout};
use vdi_model::process::{CallMark, ClientProcess};
use vdi_model::programs::{Action, ClientSpec, Operation, Program};
use vdi_model::statement::Statement;
use vdi_sim::world::{End, RunResult};
use vdi_spec::Hresult;
use vdi_spec::id;

/// Longest real time a program case may run before it is ended as a hang.
const MAX_REAL: Duration = Duration::from_secs(60);

/// How long (real) every live thread must have waited forever, beyond the
/// longest server-side wait, before the run is a hang.
const QUIET: Duration = Duration::from_millis(300);

/// Supervisor tick.
const TICK: Duration = Duration::from_millis(5);

/// Real time of one WaitStatement slice (the thread rechecks for the end of
/// the run between slices).
const WAIT_SLICE: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ThreadRun {
    /// Acting, or in a call or wait that ends by itself.
    Busy,
    /// In a wait only something else can end (INFINITE call, Join, an
    /// unbounded WaitStatement).
    Forever,
    Done,
}

struct Ctl {
    threads: Vec<ThreadRun>,
    /// The case clock (virtual ms) when the last thread ended: a run whose
    /// threads all ended at or past the budget ends *budget*, as the
    /// model's would, however late the supervisor saw it.
    last_done_v: u64,
    stop: bool,
    error: Option<BackendError>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

struct Exec {
    sh: Arc<Shared>,
    /// Where statements go (the harness, or the driver's statement control).
    harness: Arc<dyn StatementControl>,
    scale: u32,
    t0: Instant,
    budget_ms: u64,
    process: Mutex<ClientProcess>,
    /// The media as the backup left them, taken when a restore starts
    /// (before any truncation), for the backup invariant.
    backup_media: Mutex<Option<Vec<Content>>>,
    ctl: Mutex<Ctl>,
    cond: Condvar,
    /// How a secondary client process is started (`None`: it cannot be).
    launch: Option<Launch>,
    /// The secondary processes started so far.
    procs: Mutex<Vec<Arc<Process>>>,
    /// Processes started before the case, ready to become secondaries
    /// (the model starts a process in no time: starting one here must not
    /// eat the case's scaled clock).
    spares: Mutex<Vec<Arc<Process>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Exec {
    fn now_v(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(self.scale))
    }

    fn halted(&self) -> bool {
        lock(&self.ctl).stop || self.sh.st().faults.dead
    }

    fn set(&self, i: usize, s: ThreadRun) {
        let now_v = self.now_v();
        let mut c = lock(&self.ctl);
        if let Some(t) = c.threads.get_mut(i) {
            *t = s;
        }
        if s == ThreadRun::Done {
            c.last_done_v = c.last_done_v.max(now_v);
        }
        self.cond.notify_all();
    }

    fn fail(&self, e: BackendError) {
        let mut c = lock(&self.ctl);
        c.error.get_or_insert(e);
        c.stop = true;
        self.cond.notify_all();
    }

    /// Waits `ms` virtual (interrupted when the run stops).
    fn sleep_v(&self, ms: u64) {
        // Past the budget the run ends anyway: wait no longer than that.
        let left = self.budget_ms.saturating_sub(self.now_v());
        let real = scaled_wait(ms.min(left.saturating_add(1)), self.scale);
        let dl = Instant::now() + real;
        let mut c = lock(&self.ctl);
        while !c.stop {
            let now = Instant::now();
            if now >= dl {
                break;
            }
            c = self
                .cond
                .wait_timeout(c, dl - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Whether thread of process `proc` (`None`: the primary) must stop.
    fn halted_in(&self, proc: Option<usize>) -> bool {
        self.halted() || proc.is_some_and(|k| self.proc(k).is_none_or(|p| p.killed()))
    }

    fn proc(&self, k: usize) -> Option<Arc<Process>> {
        lock(&self.procs).get(k).cloned()
    }

    /// Starts a secondary client process: its index.
    fn launch_secondary(&self) -> Result<usize, BackendError> {
        let launch = self.launch.as_ref().ok_or_else(|| {
            BackendError::Unsupported(
                "a secondary client process: the library's server runs inside this process, where no other process can join a set".into(),
            )
        })?;
        if lock(&self.procs).len() >= secondary::MAX_PROCESSES {
            return Err(BackendError::Failed(format!(
                "more than {} secondary client processes in one case",
                secondary::MAX_PROCESSES
            )));
        }
        let spare = lock(&self.spares).pop();
        let p = match spare {
            Some(p) => p,
            None => Process::start(launch, self.scale)?,
        };
        let mut procs = lock(&self.procs);
        procs.push(p);
        Ok(procs.len() - 1)
    }

    /// Secondary process `k` dies: SIGKILL, nothing tells VDI (clause
    /// `abort.secondary-death-undetected`); its threads end.
    fn kill_secondary(&self, k: usize) {
        let Some(p) = self.proc(k) else { return };
        if p.killed() {
            return;
        }
        p.kill();
        self.sh.st().emit(
            "world",
            "SecondaryDied",
            format!(
                "process {} (pid {}) killed; VDI is not told, the set stays open",
                k + 1,
                p.pid()
            ),
            Some(id::ABORT_SECONDARY_DEATH_UNDETECTED),
        );
        self.cond.notify_all();
    }

    /// Ends every secondary process still running.
    fn end_secondaries(&self) {
        let mut procs = std::mem::take(&mut *lock(&self.procs));
        procs.append(&mut lock(&self.spares));
        for p in procs {
            if !p.killed() {
                p.end();
            }
        }
    }

    fn spawn(
        self: &Arc<Self>,
        who: String,
        dev: Option<DevIx>,
        prog: Box<dyn Program>,
        proc: Option<usize>,
    ) {
        if let Some(d) = dev {
            lock(&self.process).ensure_device(d);
        }
        let mut c = lock(&self.ctl);
        if c.stop {
            return;
        }
        c.threads.push(ThreadRun::Busy);
        let i = c.threads.len() - 1;
        let ex = self.clone();
        let name = who.clone();
        match std::thread::Builder::new()
            .name(format!("prog-{name}"))
            .spawn(move || ex.run_thread(i, who, dev, prog, proc))
        {
            Ok(h) => c.handles.push(h),
            Err(e) => {
                c.threads[i] = ThreadRun::Done;
                c.error
                    .get_or_insert(BackendError::Failed(format!("spawn {name}: {e}")));
                c.stop = true;
            }
        }
        self.cond.notify_all();
    }

    fn run_thread(
        self: Arc<Self>,
        i: usize,
        who: String,
        dev: Option<DevIx>,
        prog: Box<dyn Program>,
        proc: Option<usize>,
    ) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.thread_body(i, &who, dev, prog, proc)
        }));
        if r.is_err() {
            self.fail(BackendError::Failed(format!(
                "program thread {who} panicked"
            )));
        }
        self.set(i, ThreadRun::Done);
    }

    fn thread_body(
        self: &Arc<Self>,
        i: usize,
        who: &str,
        dev: Option<DevIx>,
        mut prog: Box<dyn Program>,
        proc: Option<usize>,
    ) {
        let mut last: Option<Reply> = None;
        loop {
            if self.halted_in(proc) {
                return;
            }
            let stall = self.sh.st().faults.take_stall(who);
            if let Some(ms) = stall {
                self.sh
                    .st()
                    .emit(who, "Stall", format!("{ms} ms (fault plan)"), None);
                self.sleep_v(ms);
                continue;
            }
            let action = {
                let mut p = lock(&self.process);
                if self.halted_in(proc) {
                    return;
                }
                prog.next(last.take(), &mut p)
            };
            match action {
                Action::Call(call) => match self.call(i, who, dev, call, proc) {
                    Some(r) => last = Some(r),
                    None => return,
                },
                Action::StartStatement(stmt) => {
                    if let Err(e) = self.start_statement(who, &stmt) {
                        self.fail(e);
                        return;
                    }
                    last = Some(Reply::code(Hresult::NOERROR, None));
                }
                Action::WaitStatement { timeout } => match self.wait_statement(i, who, timeout) {
                    Some(r) => last = Some(r),
                    None => return,
                },
                Action::Sleep(ms) => {
                    self.sleep_v(ms);
                }
                Action::Spawn {
                    who: w,
                    dev: d,
                    prog: p,
                } => {
                    self.sh.st().emit(who, "Spawn", w.clone(), None);
                    // A thread named `secondary` starts a new client
                    // process; any other belongs to its spawner's.
                    let in_proc = if w == vdi_model::secondary::SECONDARY_PROCESS {
                        match self.launch_secondary() {
                            Ok(k) => Some(k),
                            Err(e) => {
                                self.fail(e);
                                return;
                            }
                        }
                    } else {
                        proc
                    };
                    self.spawn(w, d, p, in_proc);
                    last = Some(Reply::code(Hresult::NOERROR, None));
                }
                Action::Join => {
                    self.set(i, ThreadRun::Forever);
                    let mut c = lock(&self.ctl);
                    while !c.stop
                        && c.threads
                            .iter()
                            .enumerate()
                            .any(|(k, t)| k != i && *t != ThreadRun::Done)
                    {
                        c = self
                            .cond
                            .wait_timeout(c, WAIT_SLICE)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    drop(c);
                    self.set(i, ThreadRun::Busy);
                    last = Some(Reply::code(Hresult::NOERROR, None));
                }
                Action::Exit => {
                    self.sh.st().emit(who, "Exit", String::new(), None);
                    return;
                }
                Action::Die => {
                    match proc {
                        Some(k) => self.kill_secondary(k),
                        None => self.sh.client_death(),
                    }
                    return;
                }
            }
        }
    }

    /// One call through the library, absorbed into the client process as
    /// the model's world absorbs it; `None` when the run has ended.
    fn call(
        &self,
        i: usize,
        who: &str,
        dev: Option<DevIx>,
        call: Call,
        proc: Option<usize>,
    ) -> Option<Reply> {
        let forever = call.waits_forever();
        let mut mark = CallMark::of(&call, dev);
        if let Call::CompleteCommand { dev, cmd, .. } = &call
            && self.sh.st().faults.overridden(cmd.id.0)
        {
            mark.completion = Some((dev.index, 0));
        }
        if forever {
            self.set(i, ThreadRun::Forever);
        }
        let r = match proc.map(|k| self.proc(k)) {
            None => perform(&self.sh, who, call).map(Some),
            Some(None) => Ok(None),
            Some(Some(p)) => p.call(&self.sh, i, who, call, self.scale, &|| self.halted_in(proc)),
        };
        if forever {
            self.set(i, ThreadRun::Busy);
        }
        let r = match r {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                self.fail(e);
                return None;
            }
        };
        if self.halted_in(proc) {
            return None;
        }
        lock(&self.process).absorb(&mark, &r);
        Some(r)
    }

    fn start_statement(&self, who: &str, stmt: &Statement) -> Result<(), BackendError> {
        if !stmt.kind.is_backup() {
            let mut p = lock(&self.process);
            if self.sh.st().faults.after_backup() {
                *lock(&self.backup_media) = Some(p.media.clone());
            }
            self.sh.truncate_for_restore(&mut p.media);
        }
        {
            let mut st = self.sh.st();
            st.statement_starts(stmt);
            st.emit(who, "StartStatement", stmt.to_tsql(), None);
        }
        self.harness.start_statement(stmt)
    }

    fn wait_statement(&self, i: usize, who: &str, timeout: Timeout) -> Option<Reply> {
        let until = match timeout {
            Timeout::Infinite => None,
            Timeout::Ms(ms) => Some(self.now_v().saturating_add(ms)),
        };
        if until.is_none() {
            self.set(i, ThreadRun::Forever);
        }
        let slice = u64::try_from(WAIT_SLICE.as_millis()).unwrap_or(50) * u64::from(self.scale);
        let r = loop {
            if self.halted() {
                break None;
            }
            let now = self.now_v();
            let step = match until {
                Some(u) if now >= u => {
                    break Some(Reply {
                        code: Hresult::VD_E_TIMEOUT,
                        clause: Some(id::SERVER_OUTCOME_MESSAGES),
                        value: Value::None,
                    });
                }
                Some(u) => (u - now).min(slice),
                None => slice,
            };
            match self.harness.wait_statement(Timeout::Ms(step), self.scale) {
                Ok(Some(o)) => {
                    self.sh.st().emit(
                        who,
                        "WaitStatement",
                        format!("-> {:?}", o.status),
                        Some(id::TERM_OUTCOME_DECIDES),
                    );
                    break Some(Reply {
                        code: Hresult::NOERROR,
                        clause: Some(id::TERM_OUTCOME_DECIDES),
                        value: Value::Outcome(o),
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    self.fail(e);
                    break None;
                }
            }
        };
        self.set(i, ThreadRun::Busy);
        r
    }
}

impl Exec {
    /// Watches the run until it ends: fires the client's own faults planned
    /// at a time, and decides the end (every thread done or the client
    /// dead, the budget spent, a hang, a backend error).
    fn supervise(&self, budget_ms: u64, quiet: Duration) -> End {
        let started = Instant::now();
        let mut quiet_since: Option<Instant> = None;
        loop {
            let due = {
                let mut st = self.sh.st();
                let now_v = self.now_v();
                let due = st.faults.due_at_ms(now_v);
                for f in &due {
                    st.emit("world", "Fault", format!("{f:?}"), None);
                }
                due
            };
            for f in due {
                self.sh.apply(f);
            }
            let dead = self.sh.st().faults.dead;
            let c = lock(&self.ctl);
            if c.error.is_some() || dead {
                return End::Finished;
            }
            if c.threads.iter().all(|t| *t == ThreadRun::Done) {
                return if c.last_done_v >= budget_ms {
                    End::Budget
                } else {
                    End::Finished
                };
            }
            if self.now_v() >= budget_ms {
                return End::Budget;
            }
            if c.threads.iter().all(|t| *t != ThreadRun::Busy) {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= quiet {
                    return End::Hang;
                }
            } else {
                quiet_since = None;
            }
            if started.elapsed() >= MAX_REAL.max(HANG_AFTER) {
                return End::Hang;
            }
            drop(
                self.cond
                    .wait_timeout(c, TICK)
                    .unwrap_or_else(|e| e.into_inner()),
            );
        }
    }

    /// Stops every thread; the first error a thread met, and the threads
    /// that may still be inside a library call.
    fn stop(&self) -> (Option<BackendError>, Vec<std::thread::JoinHandle<()>>) {
        let mut c = lock(&self.ctl);
        c.stop = true;
        self.cond.notify_all();
        (c.error.take(), std::mem::take(&mut c.handles))
    }
}

/// How long (real) every live thread must have waited forever before the
/// run is a hang: the longest the server may wait on its own (watchdog,
/// stalls), scaled, plus a margin.
fn quiet_after(setup: &CaseSetup, spec: &ClientSpec, scale: u32) -> Duration {
    let longest = setup
        .faults
        .faults
        .iter()
        .filter_map(|pf| match pf.fault {
            Fault::ServerStall { ms } | Fault::ClientStall { ms } => Some(ms),
            _ => None,
        })
        .max()
        .unwrap_or(0)
        .max(u64::from(spec.server_timeout_ms) * u64::from(setup.profile.watchdog_factor));
    QUIET + scaled_wait(longest, scale)
}

/// The secondary processes `spec` starts (one per statement it runs, when
/// it has a secondary), started and ready before the case's clock runs.
fn spare_secondaries(
    launch: Option<&Launch>,
    spec: &ClientSpec,
    scale: u32,
) -> Result<Vec<Arc<Process>>, BackendError> {
    let Some(launch) = launch.filter(|_| spec.secondary_devices > 0) else {
        return Ok(Vec::new());
    };
    let n = if spec.operation == Operation::Roundtrip {
        2
    } else {
        1
    };
    (0..n).map(|_| Process::start(launch, scale)).collect()
}

impl AbiDriver {
    /// The library's harness, if it can host a built-in program with
    /// `faults`.
    fn program_harness(&self, faults: &FaultPlan) -> Result<Harness, BackendError> {
        let harness = self.shared.abi.harness().copied().ok_or_else(|| {
            BackendError::Unsupported(
                "built-in client programs need server control: the library has no vdisim_harness_* symbols".into(),
            )
        })?;
        if let Some(why) = client_faults::unstageable(faults) {
            return Err(BackendError::Unsupported(why));
        }
        if harness.client_death.is_none() {
            return Err(BackendError::Unsupported(
                "built-in client programs need vdisim_harness_client_death in the library".into(),
            ));
        }
        Ok(harness)
    }

    /// Runs a built-in client program for the whole case (see the module
    /// documentation).
    pub fn run_program(
        &mut self,
        setup: &CaseSetup,
        spec: &ClientSpec,
    ) -> Result<RunResult, BackendError> {
        self.program_harness(&setup.faults)?;
        let harness = self.statement_control()?;
        let launch = self.shared.abi.secondary_launch();
        let spares = spare_secondaries(launch.as_ref(), spec, setup.time_scale.max(1))?;
        // As `vdi_sim::simulate::simulate`: a restore-only run gets a
        // seeded backup.
        let mut setup = setup.clone();
        if spec.operation == Operation::Restore && setup.seed_backups.is_empty() {
            setup.seed_backups.push(spec.backup_layout());
        }
        self.reset(&setup)?;
        let process = ClientProcess::holding(setup.seed_backups.last());
        let ex = Arc::new(Exec {
            sh: self.shared.clone(),
            harness,
            scale: self.scale,
            t0: self.shared.st().t0.unwrap_or_else(Instant::now),
            budget_ms: setup.budget_ms,
            process: Mutex::new(process),
            backup_media: Mutex::new(None),
            ctl: Mutex::new(Ctl {
                threads: Vec::new(),
                last_done_v: 0,
                stop: false,
                error: None,
                handles: Vec::new(),
            }),
            cond: Condvar::new(),
            launch,
            procs: Mutex::new(Vec::new()),
            spares: Mutex::new(spares),
        });
        ex.spawn("ctl".into(), None, spec.controller(), None);
        let end = ex.supervise(setup.budget_ms, quiet_after(&setup, spec, self.scale));
        let (error, handles) = ex.stop();
        ex.end_secondaries();
        // Threads still inside a library call are joined by the teardown
        // (after the set is aborted and closed) before objects are freed.
        self.handles.extend(handles);
        let fired = std::mem::take(&mut self.shared.st().faults.fired);
        let mut r = self.finish()?;
        if let Some(e) = error {
            return Err(e);
        }
        r.end = match end {
            End::Finished if r.end != End::Finished => End::Hang,
            End::Budget => {
                r.now_ms = setup.budget_ms;
                End::Budget
            }
            e => e,
        };
        r.client = std::mem::take(&mut *lock(&ex.process));
        r.faults_fired.extend(fired);
        let media = match r.statements.last() {
            Some((s, _)) if s.kind.is_backup() => Some(r.client.media.clone()),
            _ => lock(&ex.backup_media).take(),
        };
        self.check_backup(&mut r, media.as_deref());
        Ok(r)
    }

    /// The model's backup invariant (`vdi_model::checks::media`) on what
    /// the program's media held when its backup ended.
    fn check_backup(&self, r: &mut RunResult, media: Option<&[Content]>) {
        let succeeded = r
            .statements
            .iter()
            .rev()
            .find(|(s, _)| s.kind.is_backup())
            .is_some_and(|(_, o)| o.succeeded());
        if let (Some(media), Some(rec)) = (media, self.new_backups.last()) {
            r.violations
                .extend(checks::media::backup_delivered(succeeded, media, rec));
        }
    }
}
