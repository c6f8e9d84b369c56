//! A thread's next action, and the client API calls it makes: each call is
//! one transition of the client half, counted against the transition
//! table, checked (`vdi_model::checks`), traced, recorded in the client
//! process (`ClientProcess::absorb`) and answered to the thread.

use crate::world::{ThreadState, Wait, World};
use vdi_model::call::{Call, Method, Reply, Value};
use vdi_model::checks;
use vdi_model::client::{Blocking, DeviceHandle, Ret};
use vdi_model::msg::{Cmd, Timeout};
use vdi_model::process::CallMark;
use vdi_model::programs::Action;
use vdi_spec::id;
use vdi_spec::{ClauseId, Hresult, VdConfig};

impl World {
    /// Counts a call's table cell and clause, and checks its code.
    pub(crate) fn count<T>(&mut self, r: &Ret<T>) {
        if let Some(c) = r.cell {
            *self.cells.entry(c).or_default() += 1;
            if let Some(v) = checks::codes::check(&self.cfg.profile, c, r.code(), r.clause) {
                self.violations.push(v);
            }
        }
        // With tracing on, the call's trace event cites the clause (counted there).
        if !self.trace.on() {
            *self.clauses.entry(r.clause.as_str()).or_default() += 1;
        }
    }

    /// Hands `reply` to thread `i`, recording it in the client process.
    fn answer(&mut self, i: usize, mark: CallMark, reply: Reply) {
        self.process.absorb(&mark, &reply);
        self.threads[i].reply = Some(reply);
        self.threads[i].polls = 0;
    }

    /// Answers thread `i`'s blocking call of `method` (which returned
    /// `code` under `clause`, with `value`) when its wait ends.
    pub(crate) fn answer_wait(
        &mut self,
        i: usize,
        method: Method,
        code: Hresult,
        clause: ClauseId,
        value: Value,
    ) {
        let mark = CallMark {
            method,
            thread_dev: self.threads[i].dev,
            completion: None,
        };
        let reply = Reply {
            code,
            clause: Some(clause),
            value,
        };
        self.answer(i, mark, reply);
    }

    pub(crate) fn run_thread(&mut self, i: usize) {
        if self.threads[i].pending_stall > 0 {
            let ms = std::mem::take(&mut self.threads[i].pending_stall);
            self.threads[i].state = ThreadState::Sleeping {
                until: self.now.saturating_add(ms),
            };
            let who = self.threads[i].who.clone();
            self.emit(&who, "Stall", || format!("{ms} ms (fault plan)"), None);
            return;
        }
        let reply = self.threads[i].reply.take();
        let action = self.threads[i].prog.next(reply, &mut self.process);
        let who = self.threads[i].who.clone();
        match action {
            Action::Call(call) => self.call(i, &who, call),
            Action::StartStatement(stmt) => {
                self.emit(&who, "StartStatement", || stmt.to_tsql(), None);
                self.pending_start = Some((self.now + self.cfg.statement_delay_ms, stmt));
                self.threads[i].reply = Some(Reply::code(Hresult::NOERROR, None));
            }
            Action::WaitStatement { timeout } => self.wait_statement_action(i, &who, timeout),
            Action::Sleep(ms) => {
                self.threads[i].state = ThreadState::Sleeping {
                    until: self.now.saturating_add(ms),
                }
            }
            Action::Spawn { who: w, dev, prog } => {
                self.emit(&who, "Spawn", || w.clone(), None);
                // A thread named `secondary` starts a new client process;
                // any other belongs to its spawner's.
                let process = if w == vdi_model::secondary::SECONDARY_PROCESS {
                    1 + self.threads.iter().map(|t| t.process).max().unwrap_or(0)
                } else {
                    self.threads[i].process
                };
                let t = self.spawn_program(&w, dev, prog);
                self.threads[t].process = process;
                self.threads[i].reply = Some(Reply::code(Hresult::NOERROR, None));
            }
            Action::Join => {
                if self
                    .threads
                    .iter()
                    .enumerate()
                    .all(|(k, t)| k == i || t.state.is_done())
                {
                    self.threads[i].reply = Some(Reply::code(Hresult::NOERROR, None));
                } else {
                    self.threads[i].state = ThreadState::Blocked {
                        wait: Wait::Join,
                        deadline: None,
                    };
                }
            }
            Action::Exit => {
                self.threads[i].state = ThreadState::Done;
                self.emit(&who, "Exit", String::new, None);
                self.wake_joiners();
            }
            Action::Die if self.threads[i].process != 0 => {
                self.kill_secondary(self.threads[i].process);
            }
            Action::Die => self.kill_client(),
        }
    }

    fn wait_statement_action(&mut self, i: usize, who: &str, timeout: Timeout) {
        let final_ = self.server.outcome().status.is_final() || !self.server_alive;
        if final_ && self.pending_start.is_none() {
            let o = self.current_outcome();
            self.emit(
                who,
                "WaitStatement",
                || format!("-> {:?}", o.status),
                Some(id::TERM_OUTCOME_DECIDES),
            );
            self.threads[i].reply = Some(Reply {
                code: Hresult::NOERROR,
                clause: Some(id::TERM_OUTCOME_DECIDES),
                value: Value::Outcome(o),
            });
        } else {
            self.threads[i].state = ThreadState::Blocked {
                wait: Wait::Statement,
                deadline: timeout.deadline(self.now),
            };
        }
    }

    /// Performs `call` for thread `i` (named `who`).
    pub(crate) fn call(&mut self, i: usize, who: &str, call: Call) {
        let mark = CallMark::of(&call, self.threads[i].dev);
        match call {
            Call::Create { name, cfg } => {
                let r = self.client.create(&name, &cfg, &mut self.names);
                self.simple(
                    i,
                    mark,
                    who,
                    "Create",
                    || create_detail(None, &name, &cfg),
                    r,
                );
            }
            Call::CreateEx {
                instance,
                name,
                cfg,
            } => {
                let r = self
                    .client
                    .create_ex(instance.as_deref(), &name, &cfg, &mut self.names);
                let inst = Some(instance);
                self.simple(
                    i,
                    mark,
                    who,
                    "CreateEx",
                    || create_detail(inst, &name, &cfg),
                    r,
                );
            }
            Call::GetConfiguration { timeout } => match self.client.get_configuration() {
                Blocking::Ready(r) => self.finish_call_config(i, r),
                Blocking::Pending => self.block(i, Wait::GetConfiguration, timeout),
            },
            Call::OpenDevice { name } => {
                let r = self.client.open_device(&name);
                let value = r.result.as_ref().map_or(Value::None, |h| Value::Device(*h));
                self.valued(
                    i,
                    mark,
                    who,
                    "OpenDevice",
                    format!("name={name:?}"),
                    &r,
                    value,
                );
            }
            Call::Close => {
                let closed = self.client.incarnation();
                let r = self.client.close(&mut self.names);
                self.simple(i, mark, who, "Close", String::new, r);
                // Close answers every call waiting on the set (as the
                // stand-in library's runtime does), then none may wait.
                self.wake_blocked();
                self.check_none_waits_on(closed);
            }
            Call::SignalAbort => {
                let r = self.client.signal_abort();
                self.simple(i, mark, who, "SignalAbort", String::new, r);
                self.wake_blocked();
            }
            Call::OpenInSecondary { secondary, name } => {
                let r = self.client.open_in_secondary(secondary, &name);
                let d = || format!("secondary={secondary} name={name:?}");
                self.simple(i, mark, who, "OpenInSecondary", d, r);
            }
            Call::GetBufferHandle { buf } => {
                let r = self.client.get_buffer_handle(buf);
                let value = r.result.as_ref().map_or(Value::None, |h| Value::Handle(*h));
                self.valued(
                    i,
                    mark,
                    who,
                    "GetBufferHandle",
                    format!("buf={buf:?}"),
                    &r,
                    value,
                );
            }
            Call::MapBufferHandle { handle } => {
                let r = self.client.map_buffer_handle(handle);
                let value = r.result.as_ref().map_or(Value::None, |b| Value::Buffer(*b));
                let d = format!("handle={handle}");
                self.valued(i, mark, who, "MapBufferHandle", d, &r, value);
            }
            Call::GetCommand { dev, timeout } => match self.client.get_command(dev) {
                Blocking::Ready(r) => self.finish_get_command(i, dev, r),
                Blocking::Pending => {
                    self.check_closed_set_answers(i, dev);
                    self.block(i, Wait::GetCommand(dev, false), timeout);
                }
            },
            Call::CompleteCommand {
                dev,
                cmd,
                code,
                bytes,
                position,
                data,
            } => self.complete_command(i, who, dev, cmd, (code, bytes, position), data),
        }
    }

    /// The invariant of a GetCommand about to wait: its device is not one
    /// of a set closed since (clause `close.invalidates-devices`: a device
    /// interface of a closed set gets the use-after-close code at once; a
    /// client thread that calls it after another thread's Close must not
    /// hang).
    fn check_closed_set_answers(&mut self, i: usize, dev: DeviceHandle) {
        let closed = self.client.state() == vdi_spec::ClientState::Dne
            || dev.incarnation != self.client.incarnation();
        if !closed {
            return;
        }
        let what = format!(
            "{}: GetCommand on device {} of a closed set waits instead of getting the use-after-close code",
            self.threads[i].who, dev.index
        );
        // Once per thread and device: a polling thread would repeat it.
        if !self.violations.iter().any(|v| v.what == what) {
            self.violations.push(checks::Violation {
                clause: id::CLOSE_INVALIDATES_DEVICES.into(),
                what,
                at: None,
            });
        }
    }

    /// A blocking call found nothing: a poll (timeout 0) times out at once,
    /// any other waits until its deadline or a wake.
    fn block(&mut self, i: usize, wait: Wait, timeout: Timeout) {
        if timeout == Timeout::Ms(0) {
            let wait = match wait {
                Wait::GetCommand(h, _) => Wait::GetCommand(h, true),
                w => w,
            };
            self.time_out(i, wait, true);
        } else {
            self.threads[i].state = ThreadState::Blocked {
                wait,
                deadline: timeout.deadline(self.now),
            };
        }
    }

    fn complete_command(
        &mut self,
        i: usize,
        who: &str,
        dev: DeviceHandle,
        cmd: Cmd,
        (code, bytes, position): (vdi_spec::Win32, u64, u64),
        data: vdi_model::content::Content,
    ) {
        let (code, bytes) = match self.overrides.remove(&cmd.id.0) {
            Some(c) => {
                self.emit(
                    "world",
                    "Override",
                    || format!("id={} completion {c} (fault plan)", cmd.id.0),
                    None,
                );
                (c, 0)
            }
            None => (code, bytes),
        };
        let r = self
            .client
            .complete_command(dev, &cmd, code, bytes, position, data);
        let mark = CallMark {
            method: Method::CompleteCommand,
            thread_dev: self.threads[i].dev,
            completion: Some((dev.index, bytes)),
        };
        let id = cmd.id.0;
        let name = cmd.code.name();
        let detail = || format!("dev={} id={id} {name} code={code} bytes={bytes}", dev.index);
        self.simple(i, mark, who, "CompleteCommand", detail, r);
    }

    /// A call whose reply is only a code.
    fn simple(
        &mut self,
        i: usize,
        mark: CallMark,
        who: &str,
        what: &str,
        detail: impl FnOnce() -> String,
        r: Ret<()>,
    ) {
        self.count(&r);
        let code = r.code();
        self.emit(
            who,
            what,
            || {
                let d = detail();
                if d.is_empty() {
                    format!("-> {code}")
                } else {
                    format!("{d} -> {code}")
                }
            },
            Some(r.clause),
        );
        self.answer(i, mark, Reply::code(code, Some(r.clause)));
        self.flush_client_out();
    }

    /// A call that returns a value besides its code (OpenDevice, buffer
    /// handles).
    #[allow(clippy::too_many_arguments)]
    fn valued<T>(
        &mut self,
        i: usize,
        mark: CallMark,
        who: &str,
        what: &str,
        detail: String,
        r: &Ret<T>,
        value: Value,
    ) {
        self.count(r);
        let code = r.code();
        self.emit(who, what, || format!("{detail} -> {code}"), Some(r.clause));
        let reply = Reply {
            code,
            clause: Some(r.clause),
            value,
        };
        self.answer(i, mark, reply);
    }

    pub(crate) fn finish_call_config(&mut self, i: usize, r: Ret<VdConfig>) {
        self.count(&r);
        let who = self.threads[i].who.clone();
        let code = r.code();
        self.emit(
            &who,
            "GetConfiguration",
            || match &r.result {
                Ok(c) => format!(
                    "-> {code} features={} blockSize={} maxTransferSize={}",
                    vdi_spec::Features(c.features),
                    c.block_size,
                    c.max_transfer_size
                ),
                Err(_) => format!("-> {code}"),
            },
            Some(r.clause),
        );
        let value = r.result.map_or(Value::None, Value::Config);
        self.answer_wait(i, Method::GetConfiguration, code, r.clause, value);
        self.make_ready(i);
        self.flush_client_out();
    }

    pub(crate) fn finish_get_command(&mut self, i: usize, h: DeviceHandle, r: Ret<Cmd>) {
        self.count(&r);
        let who = self.threads[i].who.clone();
        let code = r.code();
        let mut fire: Vec<usize> = Vec::new();
        if let Ok(c) = &r.result {
            if let Some(v) = checks::abort::command_after_abort(
                self.aborted_seen,
                self.client.state(),
                h.index,
                c.code,
            ) {
                self.violations.push(v);
            }
            fire = self.faults.on_fetch(h.index, c.code);
            let cid = c.id.0;
            self.emit(
                &who,
                "GetCommand",
                || {
                    format!(
                        "dev={} -> {code} id={cid} {} size={} pos={}",
                        h.index, c.code, c.size, c.position
                    )
                },
                Some(r.clause),
            );
            for fi in &fire {
                if let vdi_model::fault::Fault::CompleteWithError { code } = self.faults.fault(*fi)
                {
                    self.overrides.insert(cid, *code);
                }
            }
        } else {
            self.emit(
                &who,
                "GetCommand",
                || format!("dev={} -> {code}", h.index),
                Some(r.clause),
            );
        }
        let value = r.result.map_or(Value::None, Value::Command);
        self.answer_wait(i, Method::GetCommand, code, r.clause, value);
        self.make_ready(i);
        for fi in fire {
            self.fire_fault(fi, Some(i));
        }
        self.flush_client_out();
    }
}

fn create_detail(instance: Option<Option<String>>, name: &str, cfg: &VdConfig) -> String {
    let inst = match instance {
        Some(i) => format!("instance={i:?} "),
        None => String::new(),
    };
    format!(
        "{inst}name={name:?} deviceCount={} features={}",
        cfg.device_count,
        vdi_spec::Features(cfg.features)
    )
}
