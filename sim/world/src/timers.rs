//! Virtual time: the next deadline of anything waiting, and what happens
//! when the clock reaches it (planned faults at a time, the delayed
//! statement start, the server's watchdog, sleeps and call timeouts).

use crate::world::{ThreadState, Wait, World};
use vdi_model::call::Method;
use vdi_model::call::{Reply, Value};
use vdi_model::process::CallMark;
use vdi_spec::Hresult;
use vdi_spec::id;

impl World {
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        let mut best: Option<u64> = None;
        let mut consider = |t: u64| best = Some(best.map_or(t, |b| b.min(t)));
        for t in &self.threads {
            match t.state {
                ThreadState::Blocked {
                    deadline: Some(d), ..
                } => consider(d),
                ThreadState::Sleeping { until } => consider(until),
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
        if let Some(ms) = self.faults.next_at_ms(self.now) {
            consider(ms);
        }
        best
    }

    pub(crate) fn fire_timers(&mut self) {
        let now = self.now;
        for i in self.faults.due_at_ms(now) {
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
                ThreadState::Sleeping { until } if until <= now => self.make_ready(i),
                ThreadState::Blocked {
                    wait,
                    deadline: Some(d),
                } if d <= now => self.time_out(i, wait, false),
                _ => {}
            }
        }
    }

    /// Ends thread `i`'s wait `wait` with its timeout; `poll`: the call
    /// was a poll (timeout 0) that found nothing.
    pub(crate) fn time_out(&mut self, i: usize, wait: Wait, poll: bool) {
        let (reply, what, detail) = match wait {
            Wait::GetConfiguration => {
                let r = self.client.get_configuration_timeout();
                self.count(&r);
                (
                    Reply::code(r.code(), Some(r.clause)),
                    "GetConfiguration",
                    String::new(),
                )
            }
            Wait::GetCommand(h, poll) => {
                let r = self.client.get_command_timeout(poll);
                self.count(&r);
                let reply = Reply::code(r.code(), Some(r.clause));
                let mark = CallMark {
                    method: Method::GetCommand,
                    thread_dev: self.threads[i].dev,
                    completion: None,
                };
                self.process.absorb(&mark, &reply);
                (reply, "GetCommand", format!("dev={}", h.index))
            }
            Wait::Statement => (
                Reply {
                    code: Hresult::VD_E_TIMEOUT,
                    clause: Some(id::SERVER_OUTCOME_MESSAGES),
                    value: Value::None,
                },
                "WaitStatement",
                String::new(),
            ),
            Wait::Join => (
                Reply::code(Hresult::VD_E_TIMEOUT, None),
                "Join",
                String::new(),
            ),
        };
        let clause = reply.clause;
        let who = self.threads[i].who.clone();
        let code = reply.code;
        self.emit(
            &who,
            what,
            || format!("{detail} -> {code} (timed out)"),
            clause,
        );
        self.threads[i].reply = Some(reply);
        self.make_ready(i);
        if poll && !self.threads[i].scripted && self.cfg.poll_interval_ms > 0 {
            let base = self.cfg.poll_interval_ms;
            let shift = self.threads[i].polls.min(20);
            let wait = base
                .saturating_mul(1 << shift)
                .min(self.cfg.poll_backoff_max_ms.max(base));
            self.threads[i].polls = self.threads[i].polls.saturating_add(1);
            self.threads[i].state = ThreadState::Sleeping {
                until: self.now.saturating_add(wait),
            };
        } else {
            self.threads[i].polls = 0;
        }
    }
}
