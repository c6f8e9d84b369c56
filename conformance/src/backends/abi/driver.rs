//! The driver shared by the ABI backends: a case's state
//! ([`super::shared`]), one OS worker thread per script thread name (so a GetCommand
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
use super::harness::{Harness, StatementControl};
use super::perform::{drain_loop, perform};
use super::shared::{Abi, CaseState, Shared};
use super::{HANG_AFTER, MAX_SLEEP_MS};
use crate::backend::{BackendError, CaseSetup, Ticket};
use std::collections::BTreeMap;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use vdi_host::clock::scaled_wait;
use vdi_model::call::{Call, Reply};
use vdi_model::client::DeviceHandle;
use vdi_model::fault::Fault;
use vdi_model::msg::Timeout;
use vdi_model::outcome::{Outcome, Status};
use vdi_model::process::ClientProcess;
use vdi_model::statement::{BackupRecord, Statement};
use vdi_model::trace::Trace;
use vdi_sim::world::{End, RunResult};

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
    /// Statements go here instead of the library's harness.
    pub(super) control: Option<Arc<dyn StatementControl>>,
    /// The clock of a library without harness symbols, when it is not real
    /// time: a client of a server whose clock is scaled (see
    /// [`AbiDriver::set_library_scale`]).
    library_scale: Option<u32>,
}

impl AbiDriver {
    pub fn new(abi: Arc<dyn Abi>) -> AbiDriver {
        AbiDriver {
            shared: Arc::new(Shared::new(abi)),
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
            control: None,
            library_scale: None,
        }
    }

    /// The library (without harness symbols) runs its clock at `scale`
    /// virtual ms per real ms: the stand-in told so by `VDISIM_TIME_SCALE`,
    /// a client of a `vdisim serve --time-scale` of the same scale. Sleeps
    /// and statement waits are then scaled too.
    pub fn set_library_scale(&mut self, scale: u32) {
        self.library_scale = Some(scale.max(1));
    }

    /// Sends statements (and waits for their outcomes) through `c` instead
    /// of the library's harness, which still runs the case's client side.
    pub fn set_statement_control(&mut self, c: Arc<dyn StatementControl>) {
        self.control = Some(c);
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
        // library (no harness symbols) runs in real time, unless the
        // backend says it runs another (`set_library_scale`).
        self.scale = if self.shared.abi.harness().is_some() {
            setup.time_scale.max(1)
        } else {
            self.library_scale.unwrap_or(1)
        };
        if let Some(h) = self.shared.abi.harness() {
            h.reset(setup)?;
        }
        let set = self.shared.abi.new_set()?;
        let mut st = self.shared.st();
        let trace = if setup.record_trace {
            Trace::recording()
        } else {
            Trace::hashing()
        };
        let media = setup
            .seed_backups
            .last()
            .map(BackupRecord::media)
            .unwrap_or_default();
        *st = CaseState::new(
            set,
            trace,
            self.scale,
            ClientFaults::new(&setup.faults),
            media,
        );
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
        let c = self.statement_control()?;
        {
            let mut st = self.shared.st();
            st.statement_starts(stmt);
            st.emit("sql", "StartStatement", stmt.to_tsql(), None);
        }
        c.start_statement(stmt)
    }

    /// Where statements go: the set control, else the library's harness.
    pub(super) fn statement_control(&self) -> Result<Arc<dyn StatementControl>, BackendError> {
        match &self.control {
            Some(c) => Ok(c.clone()),
            None => Ok(Arc::new(self.harness()?)),
        }
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
        self.statement_control()?
            .wait_statement(timeout, self.scale)
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
        // Statements sent elsewhere end once the client's set is closed.
        let elsewhere = self.control.as_ref().map(|c| c.finish());
        if self.holding {
            self.holding = false;
            unlock_case();
        }
        let mut obs = obs?;
        if let Some(statements) = elsewhere {
            if statements.iter().any(|(_, o)| o.status == Status::Running) {
                obs.idle = false;
            }
            obs.statements = statements;
        }
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
