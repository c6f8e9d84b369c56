//! The step loop: each step the scheduler picks one thing that can act;
//! when nothing can, the clock jumps to the next deadline, and when nothing
//! is due either, the run ends.

use crate::scheduler::Choice;
use crate::world::{End, ThreadState, Wait, World};
use vdi_model::call::{Reply, Value};
use vdi_model::checks::Violation;
use vdi_model::client::Blocking;
use vdi_model::msg::{ToClient, ToServer};
use vdi_spec::Hresult;
use vdi_spec::id;

impl World {
    /// One scheduling decision, or `Some(end)` when the run cannot go on.
    pub(crate) fn step_once(&mut self, choices: &mut Vec<Choice>) -> Option<End> {
        self.fire_step_faults();
        self.take_client_end_during_stall();
        if self.step >= self.cfg.max_steps {
            return Some(End::StepLimit);
        }
        choices.clear();
        for (i, t) in self.threads.iter().enumerate() {
            if matches!(t.state, ThreadState::Ready) {
                choices.push(Choice::Thread(i as u32));
            }
        }
        if !self.link.to_client.is_empty() {
            choices.push(Choice::ToClient);
        }
        if !self.link.to_server.is_empty()
            && self.server_alive
            && self.now >= self.server_stalled_until
        {
            choices.push(Choice::ToServer);
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
        let pick = choices[self.scheduler.pick(choices)];
        match pick {
            Choice::ToClient => self.deliver_to_client(),
            Choice::ToServer => self.deliver_to_server(),
            Choice::Thread(i) => self.run_thread(i as usize),
        }
        None
    }

    pub(crate) fn finished(&self) -> bool {
        self.threads.iter().all(|t| t.state.is_done())
            && self.pending_start.is_none()
            && (!self.server_alive || self.server.is_idle())
    }

    pub(crate) fn drain_notes(&mut self) {
        if self.client.notes.is_empty() {
            return;
        }
        let notes = std::mem::take(&mut self.client.notes);
        for n in notes {
            if !self.trace.on() {
                *self.clauses.entry(n.clause.as_str()).or_default() += 1;
            }
            if self.trace.on() {
                self.trace
                    .emit(self.now, "client", n.what, n.detail, Some(n.clause));
            }
        }
    }

    pub(crate) fn flush_client_out(&mut self) {
        let inc = self.client.incarnation();
        for m in self.client.out.drain(..) {
            self.link.send_to_server(inc, m);
        }
        self.drain_notes();
    }

    pub(crate) fn flush_server_out(&mut self) {
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
    pub(crate) fn abort_client_now(&mut self, incarnation: u32, m: ToClient) {
        self.link.to_client.retain(|x| x.incarnation != incarnation);
        if !self.client_alive || incarnation != self.client.incarnation() {
            return;
        }
        if self.trace.on() {
            let d = brief_to_client(&m);
            self.trace.emit(
                self.now,
                "link",
                "ToClient",
                d,
                Some(id::ABORT_SERVER_SIGNAL),
            );
        }
        self.client.deliver(m);
        self.flush_client_out();
        self.wake_blocked();
    }

    pub(crate) fn deliver_to_client(&mut self) {
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
                Some(id::CLOSE_REUSE),
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

    pub(crate) fn deliver_to_server(&mut self) {
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
        let completion = matches!(&m.msg, ToServer::Completed(c) if !c.auto);
        self.server
            .on_message(self.now, m.msg, &mut self.out_buf, &mut self.trace);
        self.flush_server_out();
        if completion {
            self.fire_completion_faults();
        }
        self.wake_statement_waiters();
    }

    pub(crate) fn wake_statement_waiters(&mut self) {
        if !self.server.outcome().status.is_final() && self.server_alive {
            return;
        }
        for i in 0..self.threads.len() {
            if let ThreadState::Blocked {
                wait: Wait::Statement,
                ..
            } = self.threads[i].state
            {
                let o = self.current_outcome();
                self.threads[i].reply = Some(Reply {
                    code: Hresult::NOERROR,
                    clause: Some(id::SERVER_OUTCOME_MESSAGES),
                    value: Value::Outcome(o),
                });
                self.make_ready(i);
            }
        }
    }

    /// Re-polls every thread blocked in GetConfiguration or GetCommand.
    pub(crate) fn wake_blocked(&mut self) {
        for i in 0..self.threads.len() {
            let ThreadState::Blocked { wait, .. } = self.threads[i].state else {
                continue;
            };
            match wait {
                Wait::GetConfiguration => {
                    if let Blocking::Ready(r) = self.client.get_configuration() {
                        self.finish_call_config(i, r);
                    }
                }
                Wait::GetCommand(h, _) => {
                    if let Blocking::Ready(r) = self.client.get_command(h) {
                        self.finish_get_command(i, h, r);
                    }
                }
                _ => {}
            }
        }
    }

    /// The invariant after a Close of set incarnation `closed`: no thread
    /// is still blocked in GetCommand on one of its devices. Close with
    /// devices open aborts the set (clause `close.devices-open`), and a
    /// GetCommand blocked on it must be answered, not left waiting (clause
    /// `get-command.abort`: "a blocked call included"); otherwise the
    /// device thread hangs, and with it a client that joins its threads.
    pub(crate) fn check_none_waits_on(&mut self, closed: u32) {
        for t in &self.threads {
            if let ThreadState::Blocked {
                wait: Wait::GetCommand(h, _),
                ..
            } = t.state
                && h.incarnation == closed
            {
                self.violations.push(Violation {
                    clause: id::GET_COMMAND_ABORT.into(),
                    what: format!(
                        "{} is still blocked in GetCommand on dev{} after Close released the set: Close must answer every call waiting on it",
                        t.who, h.index
                    ),
                    at: None,
                });
            }
        }
    }

    pub(crate) fn wake_joiners(&mut self) {
        for k in 0..self.threads.len() {
            if let ThreadState::Blocked {
                wait: Wait::Join, ..
            } = self.threads[k].state
            {
                let others_done = self
                    .threads
                    .iter()
                    .enumerate()
                    .all(|(j, t)| j == k || t.state.is_done());
                if others_done {
                    self.threads[k].reply = Some(Reply::code(Hresult::NOERROR, None));
                    self.make_ready(k);
                }
            }
        }
    }
}

pub(crate) fn brief_to_client(m: &ToClient) -> String {
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

pub(crate) fn brief_to_server(m: &ToServer) -> String {
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
