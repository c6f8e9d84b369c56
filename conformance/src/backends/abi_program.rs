//! Built-in client programs on the ABI backends, and the planned faults the
//! client side applies.
//!
//! # Programs
//!
//! [`AbiDriver::run_program`] runs a [`ClientSpec`]'s controller, and every
//! thread it spawns, each on its own OS thread. Every [`Action::Call`] goes
//! through the same [`perform`] path as a script's calls (the real binary
//! interface of the library); the replies are absorbed into one
//! [`ClientProcess`] exactly as `vdi_sim::world` does for the model
//! (OpenDevice → `handles`, GetConfiguration → `config`, GetCommand →
//! the device report's command counts and timeouts, CompleteCommand →
//! bytes), and the program's own `next` keeps the media, read cursors,
//! `believes_success` and log. StartStatement / WaitStatement go to the
//! library's in-process server (`vdisim_harness_*`); Sleep waits on the
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
//! # Planned faults
//!
//! The model fires an `on-command` fault when the client *fetches* the
//! n-th command of a device (counting per device, and per device and
//! command code, over the whole run; phase = the latest statement's kind),
//! so the client side does it here, in [`fetched`], called by [`perform`]
//! right after a GetCommand returned a command — for program threads and
//! script threads alike. Server-side faults are applied at once through
//! `vdisim_harness_event` (the session acknowledges before the fetch
//! returns, as the model applies them before the fetching thread acts
//! again); client-side ones here: SignalAbort on the set, the client's
//! death, a stall before the fetching thread's next action, an override
//! of the command's completion (code, 0 bytes; [`completion`]). Media
//! truncation acts when a restore starts, whatever its trigger. `at-ms`
//! faults: server-side ones fire inside the library's session on its
//! scaled clock, client-side ones from the program's supervisor loop.
//! `at-step` triggers count the model's scheduler steps, which a real
//! library has no counterpart for: such cases are graded unimplemented.

use super::abi_common::{AbiDriver, HANG_AFTER, Harness, Shared, perform};
use crate::backend::{BackendError, CaseSetup};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vdi_sim::data::Content;
use vdi_sim::fault::{Fault, FaultPlan, Phase, PlannedFault, Trigger};
use vdi_sim::msg::{Cmd, CmdId, DevIx};
use vdi_sim::program::{Action, Call, ClientSpec, Operation, Program, Reply, Value};
use vdi_sim::statement::{BackupRecord, Statement};
use vdi_sim::summary;
use vdi_sim::world::{ClientProcess, DeviceReport, End, RunResult, Timeout, Violation};
use vdi_spec::{CommandCode, Hresult, Win32};

/// Real milliseconds for `ms` virtual ones at `scale` virtual ms per real
/// ms: rounded up, at least 1 for `ms > 0` (as the library's timeouts).
pub fn real_ms(ms: u64, scale: u32) -> u64 {
    if scale <= 1 || ms == 0 {
        ms
    } else {
        ms.div_ceil(u64::from(scale)).max(1)
    }
}

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

// ----- the client side's planned faults ------------------------------------------------

/// Faults of the case's plan that the client side applies.
#[derive(Debug, Default)]
pub(super) struct ClientFaults {
    /// Faults triggered by a command fetch, and media truncations.
    planned: Vec<(PlannedFault, bool)>,
    /// Client-side faults at a virtual time (SignalAbort, death).
    timed: Vec<(u64, Fault, bool)>,
    /// Commands fetched per (device, None) and (device, Some(code)).
    fetched: BTreeMap<(DevIx, Option<CommandCode>), u64>,
    /// Completion overrides by the driver's command id.
    overrides: BTreeMap<u64, Win32>,
    /// The latest statement's phase.
    pub(super) phase: Phase,
    /// Stalls owed by threads (name → virtual ms) before their next action.
    stalls: BTreeMap<String, u64>,
    /// The client process died.
    pub(super) dead: bool,
    /// Kinds of the faults fired here, in order.
    pub(super) fired: Vec<String>,
}

impl ClientFaults {
    pub(super) fn new(plan: &FaultPlan) -> ClientFaults {
        let mut f = ClientFaults::default();
        for pf in &plan.faults {
            match (&pf.trigger, &pf.fault) {
                (_, Fault::TruncateMedia { .. }) | (Trigger::OnCommand { .. }, _) => {
                    f.planned.push((pf.clone(), false));
                }
                (Trigger::AtMs { ms }, Fault::ClientSignalAbort | Fault::ClientDeath) => {
                    f.timed.push((*ms, pf.fault.clone(), false));
                }
                // Server-side `at-ms` faults fire in the library's session;
                // a stall or completion override at a time concerns no
                // thread or command (the model applies it to none).
                _ => {}
            }
        }
        f
    }
}

/// Why a plan cannot be staged on a real library, if it cannot.
pub(super) fn unstageable_faults(plan: &FaultPlan) -> Option<String> {
    plan.faults.iter().find_map(|pf| match (&pf.trigger, &pf.fault) {
        (_, Fault::TruncateMedia { .. }) => None,
        (Trigger::AtStep { step }, f) => Some(format!(
            "planned fault {} at scheduler step {step}: a real library has no scheduler steps to count",
            f.kind()
        )),
        _ => None,
    })
}

/// The client side's hook after GetCommand returned `cmd` on thread `who`:
/// fires the planned faults the fetch triggers, as the model's world does.
pub(super) fn fetched(sh: &Shared, who: &str, cmd: &Cmd) {
    let fire: Vec<Fault> = {
        let mut st = sh.st();
        let f = &mut st.faults;
        if f.dead || f.planned.is_empty() {
            return;
        }
        let phase = f.phase;
        let mut due = Vec::new();
        for key in [(cmd.dev, None), (cmd.dev, Some(cmd.code))] {
            let n = f.fetched.entry(key).or_default();
            *n += 1;
            let n = *n;
            for (i, (pf, done)) in f.planned.iter().enumerate() {
                if *done
                    || !(pf.phase == Phase::Any || pf.phase == phase)
                    || matches!(pf.fault, Fault::TruncateMedia { .. })
                {
                    continue;
                }
                if let Trigger::OnCommand { dev, nth, code } = pf.trigger
                    && dev == cmd.dev
                    && nth == n
                    && code == key.1
                {
                    due.push(i);
                }
            }
        }
        let mut fire = Vec::new();
        for i in due {
            f.planned[i].1 = true;
            let fault = f.planned[i].0.fault.clone();
            f.fired.push(fault.kind().to_string());
            match &fault {
                Fault::CompleteWithError { code } => {
                    f.overrides.insert(cmd.id.0, *code);
                }
                Fault::ClientStall { ms } => {
                    *f.stalls.entry(who.to_string()).or_default() += ms;
                }
                _ => {}
            }
            fire.push(fault);
        }
        for fault in &fire {
            st.emit("world", "Fault", format!("{fault:?}"), None);
        }
        fire
    };
    for f in fire {
        apply(sh, f);
    }
}

/// Applies a fault now (client-side ones here, server-side ones through
/// the library's session).
fn apply(sh: &Shared, f: Fault) {
    match f {
        Fault::ClientSignalAbort => {
            if sh.st().faults.dead {
                return;
            }
            let set = sh.st().set;
            let code = sh.abi.signal_abort(set);
            sh.st().emit(
                "ctl",
                "SignalAbort",
                format!("-> {code} (fault plan)"),
                None,
            );
        }
        Fault::ClientDeath => client_death(sh),
        Fault::ServerSignalAbort
        | Fault::ServerDeath
        | Fault::ServerStall { .. }
        | Fault::EarlyCloseDevice { .. } => {
            if let Some(h) = sh.abi.harness() {
                let _ = h.event(&f);
            }
        }
        // Applied where the fetching thread acts next, or at completion,
        // or when the restore starts.
        Fault::ClientStall { .. }
        | Fault::CompleteWithError { .. }
        | Fault::TruncateMedia { .. } => {}
    }
}

/// The code and byte count a completion of command `id` reports: a planned
/// `complete-with-error` replaces them (code, 0 bytes), as in the model.
pub(super) fn completion(
    sh: &Shared,
    _who: &str,
    id: CmdId,
    code: Win32,
    bytes: u64,
) -> (Win32, u64) {
    let mut st = sh.st();
    match st.faults.overrides.remove(&id.0) {
        Some(c) => {
            st.emit(
                "world",
                "Override",
                format!("id={} completion {c} (fault plan)", id.0),
                None,
            );
            (c, 0)
        }
        None => (code, bytes),
    }
}

/// Applies the media truncations planned for a restore to `media` (once).
fn truncate_for_restore(sh: &Shared, media: &mut [Content]) {
    let mut st = sh.st();
    let mut emitted = Vec::new();
    for (pf, done) in &mut st.faults.planned {
        if *done || !matches!(pf.phase, Phase::Any | Phase::Restore) {
            continue;
        }
        if let Fault::TruncateMedia { dev, bytes } = pf.fault {
            *done = true;
            if let Some(m) = media.get_mut(dev as usize) {
                *m = m.slice(0, bytes);
            }
            emitted.push(pf.fault.clone());
        }
    }
    for f in emitted {
        st.faults.fired.push(f.kind().to_string());
        st.emit("world", "Fault", format!("{f:?}"), None);
    }
}

// ----- library extras ------------------------------------------------------------------

/// The client process dies: no thread acts again, and the library tells
/// the server (clause `abort.client-death`).
pub(super) fn client_death(sh: &Shared) {
    {
        let mut st = sh.st();
        if st.faults.dead {
            return;
        }
        st.faults.dead = true;
        st.emit(
            "world",
            "ClientDied",
            String::new(),
            Some("abort.client-death"),
        );
    }
    // The library this backend loaded (its own copy, for the serve backend).
    if let Some(f) = sh.abi.harness().and_then(|h| h.client_death) {
        // SAFETY: the stand-in exports `vdisim_harness_client_death` as
        // `extern "C" fn() -> i32` (sim/standin/src/harness.rs).
        let _ = unsafe { f() };
    }
}

/// The model's backup invariant (`vdi_sim::world`): a BACKUP that reports
/// success had every byte delivered — the client's media (as the backup
/// left them) hold exactly the families the server recorded.
fn check_backup(r: &mut RunResult, media: Option<&[Content]>, rec: Option<&BackupRecord>) {
    let succeeded = r
        .statements
        .iter()
        .rev()
        .find(|(s, _)| s.kind.is_backup())
        .is_some_and(|(_, o)| o.succeeded());
    let (Some(media), Some(rec), true) = (media, rec, succeeded) else {
        return;
    };
    for (k, fam) in rec.families.iter().enumerate() {
        let got = media.get(k).cloned().unwrap_or_default();
        if !got.is_stream(fam.origin, 0, fam.len) {
            r.violations.push(Violation {
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

// ----- the program executor ------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ts {
    /// Acting, or in a call or wait that ends by itself.
    Busy,
    /// In a wait only something else can end (INFINITE call, Join, an
    /// unbounded WaitStatement).
    Forever,
    Done,
}

struct Ctl {
    threads: Vec<Ts>,
    stop: bool,
    error: Option<BackendError>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

struct Exec {
    sh: Arc<Shared>,
    harness: Harness,
    scale: u32,
    t0: Instant,
    budget_ms: u64,
    proc_: Mutex<ClientProcess>,
    /// The media as the backup left them, taken when a restore starts
    /// (before any truncation), for the backup invariant.
    backup_media: Mutex<Option<Vec<Content>>>,
    ctl: Mutex<Ctl>,
    cond: Condvar,
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

    fn set(&self, i: usize, s: Ts) {
        let mut c = lock(&self.ctl);
        if let Some(t) = c.threads.get_mut(i) {
            *t = s;
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
        let real = Duration::from_millis(real_ms(ms.min(left.saturating_add(1)), self.scale));
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

    fn spawn(self: &Arc<Self>, who: String, dev: Option<DevIx>, prog: Box<dyn Program>) {
        if let Some(d) = dev {
            let mut p = lock(&self.proc_);
            if p.devices.len() <= d as usize {
                p.devices.resize(d as usize + 1, DeviceReport::default());
            }
        }
        let mut c = lock(&self.ctl);
        if c.stop {
            return;
        }
        c.threads.push(Ts::Busy);
        let i = c.threads.len() - 1;
        let ex = self.clone();
        let name = who.clone();
        match std::thread::Builder::new()
            .name(format!("prog-{name}"))
            .spawn(move || ex.run_thread(i, who, dev, prog))
        {
            Ok(h) => c.handles.push(h),
            Err(e) => {
                c.threads[i] = Ts::Done;
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
    ) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.thread_body(i, &who, dev, prog)
        }));
        if r.is_err() {
            self.fail(BackendError::Failed(format!(
                "program thread {who} panicked"
            )));
        }
        self.set(i, Ts::Done);
    }

    fn thread_body(
        self: &Arc<Self>,
        i: usize,
        who: &str,
        dev: Option<DevIx>,
        mut prog: Box<dyn Program>,
    ) {
        let mut last: Option<Reply> = None;
        loop {
            if self.halted() {
                return;
            }
            let stall = self.sh.st().faults.stalls.remove(who);
            if let Some(ms) = stall {
                self.sh
                    .st()
                    .emit(who, "Stall", format!("{ms} ms (fault plan)"), None);
                self.sleep_v(ms);
                continue;
            }
            let action = {
                let mut p = lock(&self.proc_);
                if self.halted() {
                    return;
                }
                prog.next(last.take(), &mut p)
            };
            match action {
                Action::Call(call) => match self.call(i, who, dev, call) {
                    Some(r) => last = Some(r),
                    None => return,
                },
                Action::StartStatement(stmt) => {
                    if let Err(e) = self.start_statement(who, &stmt) {
                        self.fail(e);
                        return;
                    }
                    last = Some(Reply::code(Hresult::NOERROR, ""));
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
                    self.spawn(w, d, p);
                    last = Some(Reply::code(Hresult::NOERROR, ""));
                }
                Action::Join => {
                    self.set(i, Ts::Forever);
                    let mut c = lock(&self.ctl);
                    while !c.stop
                        && c.threads
                            .iter()
                            .enumerate()
                            .any(|(k, t)| k != i && *t != Ts::Done)
                    {
                        c = self
                            .cond
                            .wait_timeout(c, WAIT_SLICE)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    drop(c);
                    self.set(i, Ts::Busy);
                    last = Some(Reply::code(Hresult::NOERROR, ""));
                }
                Action::Exit => {
                    self.sh.st().emit(who, "Exit", String::new(), None);
                    return;
                }
                Action::Die => {
                    client_death(&self.sh);
                    return;
                }
            }
        }
    }

    /// One call through the library, absorbed into the client process as
    /// the model's world absorbs it; `None` when the run has ended.
    fn call(&self, i: usize, who: &str, dev: Option<DevIx>, call: Call) -> Option<Reply> {
        let forever = matches!(
            call,
            Call::GetCommand {
                timeout: Timeout::Infinite,
                ..
            } | Call::GetConfiguration {
                timeout: Timeout::Infinite
            }
        );
        let completed = match &call {
            Call::CompleteCommand {
                dev, cmd, bytes, ..
            } => {
                let overridden = self.sh.st().faults.overrides.contains_key(&cmd.id.0);
                Some((dev.index, if overridden { 0 } else { *bytes }))
            }
            _ => None,
        };
        let is_get_command = matches!(call, Call::GetCommand { .. });
        // Programs tell a call's reply from StartStatement's by its clause;
        // the library reports none, so the reply names the method.
        let method = call.method();
        if forever {
            self.set(i, Ts::Forever);
        }
        let r = perform(&self.sh, who, call);
        if forever {
            self.set(i, Ts::Busy);
        }
        let mut r = match r {
            Ok(r) => r,
            Err(e) => {
                self.fail(e);
                return None;
            }
        };
        if r.clause.is_empty() {
            r.clause = method;
        }
        if self.halted() {
            return None;
        }
        let mut p = lock(&self.proc_);
        match &r.value {
            Value::Device(h) => {
                let ix = h.index as usize;
                if p.handles.len() <= ix {
                    p.handles.resize(ix + 1, None);
                }
                p.handles[ix] = Some(*h);
            }
            Value::Config(c) => p.config = Some(*c),
            Value::Command(c) => {
                if let Some(rep) = p.devices.get_mut(c.dev as usize) {
                    *rep.commands.entry(c.code.name().to_string()).or_default() += 1;
                }
            }
            _ => {}
        }
        if is_get_command
            && r.code == Hresult::VD_E_TIMEOUT
            && let Some(d) = dev
            && let Some(rep) = p.devices.get_mut(d as usize)
        {
            rep.timeouts += 1;
        }
        if let Some((d, bytes)) = completed
            && r.code == Hresult::NOERROR
            && let Some(rep) = p.devices.get_mut(d as usize)
        {
            rep.bytes += bytes;
        }
        Some(r)
    }

    fn start_statement(&self, who: &str, stmt: &Statement) -> Result<(), BackendError> {
        if !stmt.kind.is_backup() {
            let mut p = lock(&self.proc_);
            let after_backup = self.sh.st().faults.phase == Phase::Backup;
            if after_backup {
                *lock(&self.backup_media) = Some(p.media.clone());
            }
            truncate_for_restore(&self.sh, &mut p.media);
        }
        {
            let mut st = self.sh.st();
            st.stmt_devices = stmt.devices.clone();
            st.faults.phase = if stmt.kind.is_backup() {
                Phase::Backup
            } else {
                Phase::Restore
            };
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
            self.set(i, Ts::Forever);
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
                        clause: "server.outcome-messages",
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
                        Some("term.outcome-decides"),
                    );
                    break Some(Reply {
                        code: Hresult::NOERROR,
                        clause: "term.outcome-decides",
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
        self.set(i, Ts::Busy);
        r
    }
}

impl AbiDriver {
    /// Runs a built-in client program for the whole case (see the module
    /// documentation).
    pub fn run_program(
        &mut self,
        setup: &CaseSetup,
        spec: &ClientSpec,
    ) -> Result<RunResult, BackendError> {
        let harness = self.shared.abi.harness().copied().ok_or_else(|| {
            BackendError::Unsupported(
                "built-in client programs need server control: the library has no vdisim_harness_* symbols".into(),
            )
        })?;
        if let Some(why) = unstageable_faults(&setup.faults) {
            return Err(BackendError::Unsupported(why));
        }
        if harness.client_death.is_none() {
            return Err(BackendError::Unsupported(
                "built-in client programs need vdisim_harness_client_death in the library".into(),
            ));
        }
        // As `summary::simulate`: a restore-only run gets a seeded backup.
        let mut setup = setup.clone();
        if spec.operation == Operation::Restore && setup.seed_backups.is_empty() {
            setup.seed_backups.push(summary::backup_layout(spec));
        }
        self.reset(&setup)?;
        let scale = self.scale;
        let mut proc_ = ClientProcess::default();
        if let Some(b) = setup.seed_backups.last() {
            proc_.media = b
                .families
                .iter()
                .map(|f| Content::stream(f.origin, 0, f.len))
                .collect();
        }
        // Longest the server may wait on its own (watchdog, stalls): a
        // hang is declared only after that much quiet, plus a margin.
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
        let quiet = QUIET + Duration::from_millis(real_ms(longest, scale));
        let ex = Arc::new(Exec {
            sh: self.shared.clone(),
            harness,
            scale,
            t0: self.shared.st().t0.unwrap_or_else(Instant::now),
            budget_ms: setup.budget_ms,
            proc_: Mutex::new(proc_),
            backup_media: Mutex::new(None),
            ctl: Mutex::new(Ctl {
                threads: Vec::new(),
                stop: false,
                error: None,
                handles: Vec::new(),
            }),
            cond: Condvar::new(),
        });
        ex.spawn("ctl".into(), None, spec.controller());
        let started = Instant::now();
        let mut quiet_since: Option<Instant> = None;
        let end = loop {
            // Client-side faults planned at a time.
            let now_v = ex.now_v();
            let due: Vec<Fault> = {
                let mut st = ex.sh.st();
                let mut due = Vec::new();
                for (ms, f, done) in &mut st.faults.timed {
                    if !*done && *ms <= now_v {
                        *done = true;
                        due.push(f.clone());
                    }
                }
                for f in &due {
                    st.faults.fired.push(f.kind().to_string());
                    st.emit("world", "Fault", format!("{f:?}"), None);
                }
                due
            };
            for f in due {
                apply(&ex.sh, f);
            }
            let dead = ex.sh.st().faults.dead;
            let c = lock(&ex.ctl);
            if c.error.is_some() {
                break End::Finished;
            }
            if dead || c.threads.iter().all(|t| *t == Ts::Done) {
                break End::Finished;
            }
            if ex.now_v() >= setup.budget_ms {
                break End::Budget;
            }
            if c.threads.iter().all(|t| *t != Ts::Busy) {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= quiet {
                    break End::Hang;
                }
            } else {
                quiet_since = None;
            }
            if started.elapsed() >= MAX_REAL.max(HANG_AFTER) {
                break End::Hang;
            }
            drop(
                ex.cond
                    .wait_timeout(c, TICK)
                    .unwrap_or_else(|e| e.into_inner()),
            );
        };
        let (error, handles) = {
            let mut c = lock(&ex.ctl);
            c.stop = true;
            ex.cond.notify_all();
            (c.error.take(), std::mem::take(&mut c.handles))
        };
        // Threads still inside a library call are joined by the teardown
        // (after the set is aborted and closed) before objects are freed.
        self.handles.extend(handles);
        let fired = std::mem::take(&mut self.shared.st().faults.fired);
        let mut r = self.finish()?;
        if let Some(e) = error {
            return Err(e);
        }
        r.end = match end {
            End::Finished if !r.end.eq(&End::Finished) => End::Hang,
            End::Budget => {
                r.now_ms = setup.budget_ms;
                End::Budget
            }
            e => e,
        };
        r.client = std::mem::take(&mut *lock(&ex.proc_));
        r.faults_fired.extend(fired);
        let media = match r.statements.last() {
            Some((s, _)) if s.kind.is_backup() => Some(r.client.media.clone()),
            _ => lock(&ex.backup_media).take(),
        };
        check_backup(&mut r, media.as_deref(), self.new_backups.last());
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vdi_sim::outcome::{Outcome, Status};
    use vdi_sim::statement::{ServerPlan, StatementKind};
    use vdi_sim::trace::Trace;
    use vdi_spec::TransferOptions;

    fn run(status: Status) -> RunResult {
        let stmt = Statement {
            kind: StatementKind::BackupDatabase,
            database: "t".into(),
            devices: vec!["t".into(), "t-dev1".into()],
            options: TransferOptions::default(),
            plan: ServerPlan::default(),
        };
        RunResult {
            end: End::Finished,
            now_ms: 0,
            steps: 0,
            statements: vec![(
                stmt,
                Outcome {
                    status,
                    ..Outcome::default()
                },
            )],
            client: ClientProcess::default(),
            violations: Vec::new(),
            cells: BTreeMap::new(),
            clauses: BTreeMap::new(),
            server_devices: Vec::new(),
            trace: Trace::off(),
            faults_fired: Vec::new(),
        }
    }

    fn record() -> BackupRecord {
        BackupRecord::plan(
            "t",
            StatementKind::BackupDatabase,
            1,
            2,
            256 * 1024,
            &TransferOptions::default(),
        )
    }

    #[test]
    fn backup_invariant_holds_for_whole_families_only() {
        let rec = record();
        let whole: Vec<Content> = rec
            .families
            .iter()
            .map(|f| Content::stream(f.origin, 0, f.len))
            .collect();
        let mut r = run(Status::Succeeded);
        check_backup(&mut r, Some(&whole), Some(&rec));
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        let mut cut = whole.clone();
        cut[1] = cut[1].slice(0, 512);
        check_backup(&mut r, Some(&cut), Some(&rec));
        assert_eq!(r.violations.len(), 1);
        assert_eq!(r.violations[0].clause, "restore.byte-identical");
        // A failed backup promises nothing.
        let mut r = run(Status::Failed);
        check_backup(&mut r, Some(&cut), Some(&rec));
        assert!(r.violations.is_empty());
    }

    #[test]
    fn plans_split_between_client_and_library() {
        let plan = FaultPlan {
            name: "t".into(),
            faults: vec![
                PlannedFault {
                    phase: Phase::Any,
                    trigger: Trigger::OnCommand {
                        dev: 0,
                        nth: 2,
                        code: Some(CommandCode::Write),
                    },
                    fault: Fault::CompleteWithError {
                        code: Win32::ERROR_DISK_FULL,
                    },
                },
                PlannedFault {
                    phase: Phase::Restore,
                    trigger: Trigger::AtStep { step: 0 },
                    fault: Fault::TruncateMedia { dev: 0, bytes: 1 },
                },
            ],
        };
        assert_eq!(
            unstageable_faults(&plan),
            None,
            "truncation ignores its trigger"
        );
        let f = ClientFaults::new(&plan);
        assert_eq!(f.planned.len(), 2);
        let step = FaultPlan {
            name: "t".into(),
            faults: vec![PlannedFault {
                phase: Phase::Any,
                trigger: Trigger::AtStep { step: 9 },
                fault: Fault::ServerSignalAbort,
            }],
        };
        assert!(unstageable_faults(&step).is_some_and(|m| m.contains("scheduler step")));
        assert_eq!(real_ms(0, 300), 0);
        assert_eq!(real_ms(1, 300), 1);
        assert_eq!(real_ms(120_000, 300), 400);
        assert_eq!(real_ms(5, 1), 5);
    }
}
