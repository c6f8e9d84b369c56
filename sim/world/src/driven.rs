//! Driven use: a world whose client calls are injected from outside (the
//! harness's model backend runs scripted cases this way), with programs
//! spawned into it where a script asks for a device loop.

use crate::world::{End, Idle, RunResult, Thread, ThreadState, Wait, World, WorldConfig};
use vdi_model::call::{Call, Reply, Value};
use vdi_model::fault::Fault;
use vdi_model::msg::{DevIx, Timeout};
use vdi_model::outcome::Outcome;
use vdi_model::process::ClientProcess;
use vdi_model::programs::Program;
use vdi_model::statement::Statement;
use vdi_model::trace::Trace;
use vdi_spec::Hresult;

impl World {
    /// A world with no program: its threads are scripted, their calls
    /// injected with [`World::start_call`] and collected with
    /// [`World::wait_call`]. Programs may still be spawned into it.
    pub fn new_driven(cfg: WorldConfig, trace: Trace) -> World {
        let mut w = World::new(cfg, Box::new(Idle), trace);
        w.threads.clear();
        w
    }

    /// Adds a scripted thread named `who` (e.g. `ctl`, `dev0`) and returns its index.
    pub fn add_thread(&mut self, who: &str, dev: Option<DevIx>) -> usize {
        if let Some(d) = dev {
            self.process.ensure_device(d);
        }
        self.threads.push(Thread {
            who: who.to_string(),
            prog: Box::new(Idle),
            state: ThreadState::Idle,
            reply: None,
            pending_stall: 0,
            dev,
            scripted: true,
            polls: 0,
            process: 0,
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
            if matches!(self.threads[t].state, ThreadState::Idle)
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
        if let Some(d) = dev {
            self.process.ensure_device(d);
        }
        self.threads.push(Thread {
            who: who.to_string(),
            prog,
            state: ThreadState::Ready,
            reply: None,
            pending_stall: 0,
            dev,
            scripted: false,
            polls: 0,
            process: 0,
        });
        self.threads.len() - 1
    }

    /// Lets the world run until program thread `t` has exited; returns the
    /// code that ended its device loop (NOERROR if it recorded none).
    pub fn wait_thread(&mut self, t: usize) -> Result<Hresult, End> {
        let mut choices = Vec::with_capacity(70);
        loop {
            if matches!(self.threads[t].state, ThreadState::Done) {
                let code = self.threads[t]
                    .dev
                    .and_then(|d| self.process.devices.get(usize::from(d)))
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
        self.threads[t].state = ThreadState::Blocked {
            wait: Wait::Statement,
            deadline: until,
        };
        self.wake_statement_waiters();
        let r = self.wait_call(t);
        self.threads[t].state = ThreadState::Done;
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
        self.threads[t].state = ThreadState::Sleeping {
            until: self.now.saturating_add(ms),
        };
        self.threads[t].reply = Some(Reply::code(Hresult::NOERROR, None));
        let r = self.wait_call(t).map(|_| ());
        self.threads[t].state = ThreadState::Done;
        r
    }

    /// Fires `fault` now (server-side events and process deaths).
    pub fn inject(&mut self, fault: Fault) {
        let i = self.faults.push_now(fault);
        self.fire_fault(i, None);
    }

    /// The client process state (media, handles, reports).
    pub fn process(&mut self) -> &mut ClientProcess {
        &mut self.process
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
}
