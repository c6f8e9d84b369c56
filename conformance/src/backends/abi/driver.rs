//! The driver shared by the ABI backends: a case's state (the set object,
//! its devices, command blocks, buffers, the client side's faults, the
//! trace), one OS worker thread per script thread name (so a GetCommand
//! blocked on `dev0` does not hold up `ctl`'s Close), and the case
//! lifecycle (reset, statements, events, finish).
//!
//! `reset` takes the process-wide case lock (the harness API of the library
//! is process-global, so ABI cases never overlap, whatever the runner's
//! worker count), calls `vdisim_harness_reset` and constructs a set object.
//! `finish` calls `vdisim_harness_finish` *before* destroying the set
//! objects (destroying a live set closes it, which the server would see),
//! then destroys them, releases the device objects and the lock.

use super::client_faults::{self, ClientFaults};
use super::harness::Harness;
use super::perform::{drain_loop, perform};
use super::{HANG_AFTER, MAX_SLEEP_MS};
use crate::backend::{BackendError, CaseSetup, Ticket};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use vdi_host::clock::scaled_wait;
use vdi_model::call::{Call, Reply, Value};
use vdi_model::client::DeviceHandle;
use vdi_model::content::Content;
use vdi_model::fault::Fault;
use vdi_model::msg::{BufId, Cmd, CmdId, Timeout};
use vdi_model::outcome::Outcome;
use vdi_model::process::ClientProcess;
use vdi_model::statement::{BackupRecord, Statement};
use vdi_model::trace::Trace;
use vdi_sim::world::{End, RunResult};
use vdi_spec::{CommandCode, Hresult, VdConfig, Win32};

/// An address in the library's memory (objects, command blocks, buffers).
pub type Ptr = usize;

/// The client API of one binary interface, over raw addresses.
pub trait Abi: Send + Sync {
    /// A new set object.
    fn new_set(&self) -> Result<Ptr, BackendError>;
    /// Destroys (Linux) or releases (COM) a set object.
    fn drop_set(&self, set: Ptr);
    /// Releases a device object (COM); nothing on Linux (owned by the set).
    fn drop_device(&self, dev: Ptr);
    /// `Create` (instance `None`) or `CreateEx` (instance `Some`).
    fn create(
        &self,
        set: Ptr,
        instance: Option<Option<&str>>,
        name: &str,
        cfg: &VdConfig,
    ) -> Result<Hresult, BackendError>;
    fn get_configuration(&self, set: Ptr, t: Timeout, out: &mut VdConfig) -> Hresult;
    fn open_device(&self, set: Ptr, name: &str) -> (Hresult, Ptr);
    fn close(&self, set: Ptr) -> Hresult;
    fn signal_abort(&self, set: Ptr) -> Hresult;
    fn open_in_secondary(&self, set: Ptr, name: &str) -> Hresult;
    fn get_buffer_handle(&self, set: Ptr, buf: Ptr) -> (Hresult, u32);
    fn map_buffer_handle(&self, set: Ptr, handle: u32) -> (Hresult, Ptr);
    fn get_command(&self, dev: Ptr, t: Timeout) -> (Hresult, Ptr);
    fn complete_command(&self, dev: Ptr, cmd: Ptr, code: u32, bytes: u64, pos: u64) -> Hresult;
    /// The library's harness control, when it has one.
    fn harness(&self) -> Option<&Harness>;
}

/// A reply with no clause (a real library reports none).
pub fn reply(code: Hresult, value: Value) -> Reply {
    Reply {
        code,
        clause: "",
        value,
    }
}

// ----- the process-wide case lock ------------------------------------------------------

static BUSY: Mutex<bool> = Mutex::new(false);
static FREE: Condvar = Condvar::new();

fn lock_case() {
    let mut g = BUSY.lock().unwrap_or_else(|e| e.into_inner());
    while *g {
        g = FREE.wait(g).unwrap_or_else(|e| e.into_inner());
    }
    *g = true;
}

fn unlock_case() {
    *BUSY.lock().unwrap_or_else(|e| e.into_inner()) = false;
    FREE.notify_one();
}

// ----- the case state -------------------------------------------------------------------

/// What the driver knows of the case in progress.
#[derive(Default)]
pub struct CaseState {
    pub set: Ptr,
    devices: BTreeMap<(u32, u16), Ptr>,
    all_devices: Vec<Ptr>,
    /// Local command id → (device object, block, the Cmd as first seen).
    cmds: BTreeMap<u64, (Ptr, Ptr, Cmd)>,
    /// Commands fetched and not yet handed back, of the current set
    /// incarnation: only their Read buffers are the client's to fill (a new
    /// Create frees the previous incarnation's buffers).
    outstanding: BTreeSet<u64>,
    next_cmd: u64,
    buf_ids: BTreeMap<Ptr, u32>,
    buf_addrs: BTreeMap<u32, Ptr>,
    incarnation: u32,
    set_name: String,
    pub stmt_devices: Vec<String>,
    /// Media of asynchronous drains (the script keeps its own).
    media: Vec<Content>,
    trace: Option<Trace>,
    pub t0: Option<Instant>,
    /// Virtual ms per real ms of the case (trace times are virtual).
    pub scale: u32,
    /// The faults the client side applies.
    pub faults: ClientFaults,
}

impl CaseState {
    /// The local id of buffer address `addr` (assigned on first sight).
    pub fn buf_id(&mut self, addr: Ptr) -> Option<BufId> {
        if addr == 0 {
            return None;
        }
        if let Some(id) = self.buf_ids.get(&addr) {
            return Some(BufId(*id));
        }
        let id = self.buf_ids.len() as u32 + 1;
        self.buf_ids.insert(addr, id);
        self.buf_addrs.insert(id, addr);
        Some(BufId(id))
    }

    /// The address of buffer `id`, if it has been seen.
    pub fn buffer_address(&self, id: u32) -> Option<Ptr> {
        self.buf_addrs.get(&id).copied()
    }

    /// The device object behind `dev` (0: none).
    pub fn device(&self, dev: DeviceHandle) -> Ptr {
        self.devices
            .get(&(dev.incarnation, dev.index))
            .copied()
            .unwrap_or(0)
    }

    /// The next local command id.
    pub fn next_command_id(&mut self) -> u64 {
        self.next_cmd += 1;
        self.next_cmd
    }

    /// Command `id` was fetched as `block` on device object `dev`.
    pub fn fetched_block(&mut self, id: u64, dev: Ptr, block: Ptr, cmd: Cmd) {
        self.cmds.insert(id, (dev, block, cmd));
        self.outstanding.insert(id);
    }

    /// The block and first view of command `id`, if it was fetched.
    pub fn block_of(&self, id: u64) -> Option<(Ptr, Cmd)> {
        self.cmds.get(&id).map(|(_, b, c)| (*b, c.clone()))
    }

    /// Command `id` is handed back; whether it was outstanding.
    pub fn hand_back(&mut self, id: u64) -> bool {
        self.outstanding.remove(&id)
    }

    /// The reference client's answer to `c` on the drains' media.
    pub fn reference_answer(&mut self, c: &Cmd) -> (Win32, u64, Content) {
        let d = usize::from(c.dev);
        if self.media.len() <= d {
            self.media.resize(d + 1, Content::Empty);
        }
        match c.code {
            CommandCode::Write => {
                self.media[d].append(&c.data);
                (Win32::ERROR_SUCCESS, u64::from(c.size), Content::Empty)
            }
            CommandCode::Read => {
                let data = self.media[d].slice(c.position, u64::from(c.size));
                let code = if data.len() < u64::from(c.size) {
                    Win32::ERROR_HANDLE_EOF
                } else {
                    Win32::ERROR_SUCCESS
                };
                (code, data.len(), data)
            }
            CommandCode::Flush | CommandCode::ClearError | CommandCode::Complete => {
                (Win32::ERROR_SUCCESS, 0, Content::Empty)
            }
            _ => (Win32::ERROR_NOT_SUPPORTED, 0, Content::Empty),
        }
    }

    /// Records a trace event at the case's virtual time.
    pub fn emit(&mut self, who: &str, what: &str, detail: String, clause: Option<&'static str>) {
        let t = self.t0.map_or(0, |t| {
            u64::try_from(t.elapsed().as_millis())
                .unwrap_or(0)
                .saturating_mul(u64::from(self.scale.max(1)))
        });
        if let Some(tr) = &mut self.trace {
            tr.emit(t, who, what, detail, clause);
        }
    }

    /// The index of device `name` in the set (statement's device list).
    fn dev_index(&self, name: &str) -> u16 {
        if let Some(i) = self.stmt_devices.iter().position(|d| d == name) {
            return i as u16;
        }
        if name == self.set_name {
            return 0;
        }
        name.rsplit_once("-dev")
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0)
    }

    /// A statement starts: the phase its faults match in, its device names,
    /// fresh media for a backup.
    pub fn statement_starts(&mut self, stmt: &Statement) {
        self.stmt_devices = stmt.devices.clone();
        self.faults.statement_starts(stmt.kind.is_backup());
        if stmt.kind.is_backup() {
            self.media = vec![Content::Empty; stmt.devices.len()];
        }
    }
}

/// The driver's state and library, shared with its worker threads.
pub struct Shared {
    pub abi: Arc<dyn Abi>,
    st: Mutex<CaseState>,
}

impl Shared {
    pub fn st(&self) -> std::sync::MutexGuard<'_, CaseState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A Create returned `code` for set `name`.
    pub fn created(&self, code: Hresult, name: String) {
        if code == Hresult::NOERROR {
            let mut st = self.st();
            st.incarnation += 1;
            st.set_name = name;
            st.outstanding.clear();
        }
    }

    /// OpenDevice `name` returned device object `dev`: its handle.
    pub fn opened(&self, name: &str, dev: Ptr) -> DeviceHandle {
        let mut st = self.st();
        let h = DeviceHandle {
            incarnation: st.incarnation,
            index: st.dev_index(name),
        };
        st.devices.insert((h.incarnation, h.index), dev);
        st.all_devices.push(dev);
        h
    }

    /// Thread `who` fetched `cmd`: fires the planned faults the fetch
    /// triggers, as the model's world does.
    pub fn fetched(&self, who: &str, cmd: &Cmd) {
        let fire = {
            let mut st = self.st();
            let fire = st.faults.on_fetch(who, cmd);
            for f in &fire {
                st.emit("world", "Fault", format!("{f:?}"), None);
            }
            fire
        };
        for f in fire {
            self.apply(f);
        }
    }

    /// The code and byte count a completion of command `id` reports: a
    /// planned `complete-with-error` replaces them (code, 0 bytes).
    pub fn completion(&self, id: CmdId, code: Win32, bytes: u64) -> (Win32, u64) {
        let mut st = self.st();
        match st.faults.take_override(id.0) {
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

    /// Applies a fault now: client-side ones here, server-side ones through
    /// the library's server host.
    pub fn apply(&self, f: Fault) {
        match f {
            Fault::ClientSignalAbort => {
                if self.st().faults.dead {
                    return;
                }
                let set = self.st().set;
                let code = self.abi.signal_abort(set);
                self.st().emit(
                    "ctl",
                    "SignalAbort",
                    format!("-> {code} (fault plan)"),
                    None,
                );
            }
            Fault::ClientDeath => self.client_death(),
            f if f.is_server_side() => {
                if let Some(h) = self.abi.harness() {
                    let _ = h.event(&f);
                }
            }
            // Applied where the fetching thread acts next, at completion,
            // or when the restore starts.
            _ => {}
        }
    }

    /// The client process dies: no thread acts again, and the library
    /// tells the server (clause `abort.client-death`).
    pub fn client_death(&self) {
        {
            let mut st = self.st();
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
        if let Some(f) = self.abi.harness().and_then(|h| h.client_death) {
            // SAFETY: the stand-in exports `vdisim_harness_client_death` as
            // `extern "C" fn() -> i32` (sim/standin/src/harness.rs).
            let _ = unsafe { f() };
        }
    }

    /// Applies the media truncations planned for a restore to `media`.
    pub fn truncate_for_restore(&self, media: &mut [Content]) {
        let mut st = self.st();
        for f in st.faults.restore_starts() {
            if let Fault::TruncateMedia { dev, bytes } = f
                && let Some(m) = media.get_mut(usize::from(dev))
            {
                *m = m.slice(0, bytes);
            }
            st.emit("world", "Fault", format!("{f:?}"), None);
        }
    }
}

// ----- the driver -----------------------------------------------------------------------

type Job = Box<dyn FnOnce() -> Result<Reply, BackendError> + Send>;

struct Results {
    done: Mutex<BTreeMap<usize, Result<Reply, BackendError>>>,
    cond: Condvar,
}

/// A backend over an [`Abi`].
pub struct AbiDriver {
    pub(super) shared: Arc<Shared>,
    results: Arc<Results>,
    workers: BTreeMap<String, Sender<(usize, Job)>>,
    /// Threads that may be inside a library call: joined (within 5 s)
    /// before the case's objects are destroyed.
    pub(super) handles: Vec<std::thread::JoinHandle<()>>,
    next_ticket: usize,
    holding: bool,
    unsupported: Option<String>,
    /// Virtual ms per real ms of the case.
    pub(super) scale: u32,
    /// Backups the last finished case added to the server's history.
    pub(super) new_backups: Vec<BackupRecord>,
}

impl AbiDriver {
    pub fn new(abi: Arc<dyn Abi>) -> AbiDriver {
        AbiDriver {
            shared: Arc::new(Shared {
                abi,
                st: Mutex::new(CaseState::default()),
            }),
            results: Arc::new(Results {
                done: Mutex::new(BTreeMap::new()),
                cond: Condvar::new(),
            }),
            workers: BTreeMap::new(),
            handles: Vec::new(),
            next_ticket: 0,
            holding: false,
            unsupported: None,
            scale: 1,
            new_backups: Vec::new(),
        }
    }

    pub(super) fn harness(&self) -> Result<Harness, BackendError> {
        self.shared.abi.harness().copied().ok_or_else(|| {
            BackendError::Unsupported(
                "server control: the library has no vdisim_harness_* symbols; a real SQL Server is driven over TDS (feature `tds`, conformance/src/sqlserver.rs)".into(),
            )
        })
    }

    fn submit(&mut self, thread: &str, job: Job) -> Result<Ticket, BackendError> {
        if let Some(m) = &self.unsupported {
            return Err(BackendError::Unsupported(m.clone()));
        }
        self.next_ticket += 1;
        let t = self.next_ticket;
        if !self.workers.contains_key(thread) {
            let tx = self.spawn_worker(thread)?;
            self.workers.insert(thread.to_string(), tx);
        }
        let tx = self
            .workers
            .get(thread)
            .ok_or_else(|| BackendError::Failed("no worker".into()))?;
        tx.send((t, job))
            .map_err(|_| BackendError::Failed(format!("thread {thread} is gone")))?;
        Ok(Ticket(t))
    }

    fn spawn_worker(&mut self, thread: &str) -> Result<Sender<(usize, Job)>, BackendError> {
        let (tx, rx) = mpsc::channel::<(usize, Job)>();
        let results = self.results.clone();
        let h = std::thread::Builder::new()
            .name(format!("abi-{thread}"))
            .spawn(move || {
                while let Ok((t, job)) = rx.recv() {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                        .unwrap_or_else(|_| Err(BackendError::Failed("the call panicked".into())));
                    results
                        .done
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(t, r);
                    results.cond.notify_all();
                }
            })
            .map_err(|e| BackendError::Failed(format!("spawn: {e}")))?;
        self.handles.push(h);
        Ok(tx)
    }

    /// Tears down the objects of the previous case (if any). The case is
    /// over (the harness has reported), so the set is aborted and closed
    /// first: that wakes any call still blocked on a worker thread. The
    /// objects are destroyed only once every worker has returned; a worker
    /// that does not return leaks them rather than risk a use after free.
    fn teardown(&mut self) {
        self.workers.clear();
        let set = self.shared.st().set;
        if set != 0 {
            self.shared.abi.signal_abort(set);
            self.shared.abi.close(set);
        }
        let dl = Instant::now() + Duration::from_secs(5);
        let mut stuck = false;
        for h in std::mem::take(&mut self.handles) {
            while !h.is_finished() && Instant::now() < dl {
                std::thread::sleep(Duration::from_millis(1));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                stuck = true;
            }
        }
        let (set, devs) = {
            let mut st = self.shared.st();
            let set = std::mem::take(&mut st.set);
            (set, std::mem::take(&mut st.all_devices))
        };
        if !stuck {
            if set != 0 {
                self.shared.abi.drop_set(set);
            }
            for d in devs {
                self.shared.abi.drop_device(d);
            }
        }
        self.results
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn reset(&mut self, setup: &CaseSetup) -> Result<(), BackendError> {
        if self.holding {
            self.teardown();
        } else {
            lock_case();
            self.holding = true;
        }
        // Planned faults: the library fires server-side ones at a time, the
        // client side (here) those triggered by a command fetch; a trigger
        // on a scheduler step has no real counterpart.
        self.unsupported = client_faults::unstageable(&setup.faults);
        // Only the stand-in's harness scales the library's clock: a real
        // library (no harness symbols) runs in real time.
        self.scale = if self.shared.abi.harness().is_some() {
            setup.time_scale.max(1)
        } else {
            1
        };
        if let Some(h) = self.shared.abi.harness() {
            h.reset(setup)?;
        }
        let set = self.shared.abi.new_set()?;
        let mut st = self.shared.st();
        *st = CaseState {
            set,
            trace: Some(if setup.record_trace {
                Trace::recording()
            } else {
                Trace::hashing()
            }),
            t0: Some(Instant::now()),
            scale: self.scale,
            faults: ClientFaults::new(&setup.faults),
            media: setup
                .seed_backups
                .last()
                .map(|rec| {
                    rec.families
                        .iter()
                        .map(|f| Content::stream(f.origin, 0, f.len))
                        .collect()
                })
                .unwrap_or_default(),
            ..CaseState::default()
        };
        Ok(())
    }

    pub fn start(&mut self, thread: &str, call: Call) -> Result<Ticket, BackendError> {
        let sh = self.shared.clone();
        let who = thread.to_string();
        self.submit(thread, Box::new(move || perform(&sh, &who, call)))
    }

    pub fn start_drain(
        &mut self,
        thread: &str,
        dev: DeviceHandle,
        timeout: Timeout,
    ) -> Result<Ticket, BackendError> {
        let sh = self.shared.clone();
        let who = format!("{thread}-drain");
        self.submit(
            thread,
            Box::new(move || Ok(drain_loop(&sh, &who, dev, timeout))),
        )
    }

    pub fn join(&mut self, t: Ticket) -> Result<Reply, BackendError> {
        let dl = Instant::now() + HANG_AFTER;
        let mut g = self.results.done.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = g.remove(&t.0) {
                return r;
            }
            let now = Instant::now();
            if now >= dl {
                return Err(BackendError::Ended("Hang".into()));
            }
            g = self
                .results
                .cond
                .wait_timeout(g, dl - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn start_statement(&mut self, stmt: &Statement) -> Result<(), BackendError> {
        if let Some(m) = &self.unsupported {
            return Err(BackendError::Unsupported(m.clone()));
        }
        let h = self.harness()?;
        {
            let mut st = self.shared.st();
            st.statement_starts(stmt);
            st.emit("sql", "StartStatement", stmt.to_tsql(), None);
        }
        h.start_statement(stmt)
    }

    pub fn event(&mut self, fault: Fault) -> Result<(), BackendError> {
        self.shared
            .st()
            .emit("world", "Fault", format!("{fault:?}"), None);
        match fault {
            // Client-side: the client itself calls SignalAbort.
            Fault::ClientSignalAbort => {
                let set = self.shared.st().set;
                self.shared.abi.signal_abort(set);
                Ok(())
            }
            Fault::ClientDeath if self.shared.abi.harness().is_some() => {
                self.shared.client_death();
                Ok(())
            }
            f => self.harness()?.event(&f),
        }
    }

    /// Lets `ms` of virtual time pass: `ms / scale` real ms.
    pub fn sleep(&mut self, ms: u64) -> Result<(), BackendError> {
        let real = scaled_wait(ms, self.scale);
        if real > Duration::from_millis(MAX_SLEEP_MS) {
            return Err(BackendError::Unsupported(format!(
                "a sleep of {ms} ms: real backends stage at most {MAX_SLEEP_MS} ms of real time per sleep (here {} ms at time scale {})",
                real.as_millis(),
                self.scale
            )));
        }
        std::thread::sleep(real);
        Ok(())
    }

    pub fn wait_statement(&mut self, timeout: Timeout) -> Result<Option<Outcome>, BackendError> {
        self.harness()?.wait_statement(timeout, self.scale)
    }

    pub fn finish(&mut self) -> Result<RunResult, BackendError> {
        let obs = match self.shared.abi.harness() {
            Some(h) => h.finish(),
            None => Ok(vdi_host::contract::Observation {
                idle: true,
                ..Default::default()
            }),
        };
        self.teardown();
        if self.holding {
            self.holding = false;
            unlock_case();
        }
        let obs = obs?;
        self.new_backups = obs.new_backups.clone();
        let mut st = self.shared.st();
        let trace = st.trace.take().unwrap_or_else(Trace::off);
        let mut clauses: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (k, v) in &obs.clauses {
            if let Some(c) = vdi_spec::clauses::clause(k) {
                *clauses.entry(c.id).or_default() += v;
            }
        }
        for (k, v) in trace.clause_hits() {
            *clauses.entry(k).or_default() += v;
        }
        Ok(RunResult {
            end: if obs.idle { End::Finished } else { End::Hang },
            now_ms: obs.elapsed_ms,
            steps: 0,
            statements: obs.statements,
            client: ClientProcess::default(),
            violations: Vec::new(),
            cells: BTreeMap::new(),
            clauses,
            server_devices: obs.devices,
            trace,
            faults_fired: obs.faults_fired,
        })
    }
}

impl Drop for AbiDriver {
    fn drop(&mut self) {
        if self.holding {
            self.teardown();
            self.holding = false;
            unlock_case();
        }
    }
}
