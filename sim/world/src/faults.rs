//! Faults: the plan's faults fired when the model's trigger matcher
//! (`FaultSchedule`) says they are due, process deaths, and the start of a
//! statement (where media truncations act).

use crate::world::{ThreadState, World};
use vdi_model::fault::Fault;
use vdi_model::msg::{ToClient, ToServer};
use vdi_model::outcome::Outcome;
use vdi_model::server::SetInfo;
use vdi_model::statement::Statement;
use vdi_spec::ClientState;
use vdi_spec::id;

impl World {
    pub(crate) fn fire_step_faults(&mut self) {
        for i in self.faults.due_at_step(self.step) {
            self.fire_fault(i, None);
        }
    }

    pub(crate) fn fire_completion_faults(&mut self) {
        for i in self.faults.on_completion() {
            self.fire_fault(i, None);
        }
    }

    /// Fires fault `i` of the schedule; `thread`: the thread whose fetch
    /// triggered it (a client stall applies to that thread).
    pub(crate) fn fire_fault(&mut self, i: usize, thread: Option<usize>) {
        let f = self.faults.fire(i);
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
                    self.wake_blocked();
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
            Fault::Attention | Fault::Disconnect => {
                if self.server_alive {
                    let (now, out, tr) = (self.now, &mut self.out_buf, &mut self.trace);
                    if f == Fault::Attention {
                        self.server.attention(now, out, tr);
                    } else {
                        self.server.disconnected(now, out, tr);
                    }
                    self.flush_server_out();
                    self.wake_statement_waiters();
                }
            }
            Fault::ClientDeath => self.kill_client(),
            Fault::ServerDeath => self.kill_server(),
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
                if let Some(m) = self.process.media.get_mut(usize::from(dev)) {
                    *m = m.slice(0, bytes);
                }
            }
        }
    }

    /// Clause `abort.during-server-stall`: while the server is stalled, a
    /// client's SignalAbort, Close or death (in flight to the server for
    /// the statement's set) is taken at once, ahead of the completions the
    /// stall holds; the statement ends, and the stall with it (what it held
    /// is then delivered to a server with no statement, and dropped).
    pub(crate) fn take_client_end_during_stall(&mut self) {
        if !self.server_alive || self.now >= self.server_stalled_until || self.server.is_idle() {
            return;
        }
        let bound = self.bound;
        let Some(i) = self
            .link
            .to_server
            .iter()
            .position(|m| m.incarnation == bound && m.msg.ends_set())
        else {
            return;
        };
        let Some(m) = self.link.to_server.remove(i) else {
            return;
        };
        let (held, until) = (self.link.to_server.len(), self.server_stalled_until);
        let what = crate::step::brief_to_server(&m.msg);
        self.emit(
            "server",
            "StallInterrupted",
            || format!("{what} during a stall until {until} ms: taken at once, ahead of {held} held messages"),
            Some(id::ABORT_DURING_SERVER_STALL),
        );
        self.server
            .on_message(self.now, m.msg, &mut self.out_buf, &mut self.trace);
        self.flush_server_out();
        self.server_stalled_until = self.now;
        self.wake_statement_waiters();
    }

    fn kill_server(&mut self) {
        if !self.server_alive {
            return;
        }
        self.server.die(self.now, &mut self.trace);
        self.server_alive = false;
        self.link.to_server.clear();
        self.aborted_seen = true;
        self.abort_client_now(self.bound, ToClient::Died);
        self.wake_statement_waiters();
    }

    /// Secondary client process `process` dies: its threads stop. VDI is
    /// not told (clause `abort.secondary-death-undetected`): no message
    /// reaches the server, the set stays open, and what the secondary had
    /// fetched stays unanswered.
    pub(crate) fn kill_secondary(&mut self, process: u32) {
        let mut n = 0;
        for t in &mut self.threads {
            if t.process == process && !t.state.is_done() {
                t.state = ThreadState::Done;
                n += 1;
            }
        }
        self.emit(
            "world",
            "SecondaryDied",
            || format!("process {process}: {n} threads end; VDI is not told, the set stays open"),
            Some(id::ABORT_SECONDARY_DEATH_UNDETECTED),
        );
        self.wake_joiners();
    }

    pub(crate) fn kill_client(&mut self) {
        if !self.client_alive {
            return;
        }
        self.client_alive = false;
        for t in &mut self.threads {
            t.state = ThreadState::Done;
        }
        self.emit(
            "world",
            "ClientDied",
            String::new,
            Some(id::ABORT_CLIENT_DEATH),
        );
        let inc = self.client.incarnation();
        if self.client.state() != ClientState::Dne {
            self.link.send_to_server(inc, ToServer::Died);
            let name = self.client.name().to_string();
            vdi_model::client::Namespace::release(&mut self.names, &name);
        }
        self.link.to_client.clear();
    }

    /// The server starts `stmt`: it opens the live set its first
    /// VIRTUAL_DEVICE names (none: the statement fails as
    /// `server.open-missing-set` says).
    pub(crate) fn start_statement(&mut self, stmt: Statement) {
        self.check_backup();
        // Truncation faults apply to the media the restore will read.
        if !stmt.kind.is_backup() {
            for i in self.faults.restore_starts() {
                self.fire_fault(i, None);
            }
        }
        let name = stmt.devices.first().cloned().unwrap_or_default();
        let set = self.names.sets.get(&name).map(|cfg| SetInfo {
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
        self.faults.statement_starts(stmt.kind.is_backup());
        self.statements.push((stmt.clone(), Outcome::default()));
        if !self.server_alive {
            // Sent to a server that has died (clause abort.server-death):
            // it ends at once as the death's outcome, and whoever waits for
            // it learns so (found by the structure-aware world fuzz target:
            // a death before the delayed start left the controller waiting
            // forever).
            self.wake_statement_waiters();
            return;
        }
        self.server
            .start(self.now, stmt, set, &mut self.out_buf, &mut self.trace);
        self.flush_server_out();
        self.wake_statement_waiters();
    }
}
