//! Errors and the end of a statement: IO-ERROR, the error terminations,
//! SignalAbort from either side, and the outcome with its messages.

use super::*;
use vdi_spec::id;

impl ServerHalf {
    // ------------------------------------------------------------------
    // errors and termination
    // ------------------------------------------------------------------

    pub(super) fn enter_io_error(
        &mut self,
        now: u64,
        d: usize,
        code: Win32,
        why: IoErr,
        clause: Option<ClauseId>,
        tr: &mut Trace,
    ) {
        let dev = &mut self.devs[d];
        if why == IoErr::Fatal {
            dev.note_error(code);
        }
        if dev.io_error == Some(IoErr::Fatal) || (why != IoErr::Fatal && dev.io_error.is_some()) {
            return;
        }
        dev.io_error = Some(why);
        if dev.state == DevState::Active {
            dev.state = DevState::IoError;
        }
        ev!(
            tr,
            now,
            "IoError",
            clause.or(Some(id::IO_ERROR_ENTER)),
            "dev={d} {code}: device in IO-ERROR"
        );
        ev!(
            tr,
            now,
            "IoError",
            Some(id::IO_ERROR_REJECT_NEW),
            "dev={d}: nothing but VDC_ClearError is sent; {} outstanding",
            dev.outstanding
        );
    }

    /// A non-success completion on a Read/Write/Flush/Complete (or a probe):
    /// IO-ERROR, then the statement fails.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn device_error(
        &mut self,
        now: u64,
        d: usize,
        code: Win32,
        reason: FailReason,
        msg: SqlMessage,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        let clause = match code {
            Win32::ERROR_DISK_FULL | Win32::ERROR_EOM_OVERFLOW => Some(id::IO_ERROR_DISK_FULL),
            Win32::ERROR_END_OF_MEDIA => Some(id::IO_ERROR_END_OF_MEDIA),
            Win32::ERROR_NOT_SUPPORTED => Some(id::COMMAND_NOT_SUPPORTED),
            _ => Some(id::IO_ERROR_ENTER),
        };
        if code == Win32::ERROR_END_OF_MEDIA {
            ev!(
                tr,
                now,
                "EndOfMedia",
                Some(id::IO_ERROR_END_OF_MEDIA),
                "dev={d}: media continuation (VDC_Load) is not modelled; device error"
            );
        }
        self.enter_io_error(now, d, code, IoErr::Fatal, clause, tr);
        self.fail(now, Some(d), reason, msg, code, out, tr);
    }

    pub(super) fn send_clear_error(
        &mut self,
        now: u64,
        d: usize,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        if self.devs[d].clearing || self.devs[d].state == DevState::Closed {
            return;
        }
        ev!(
            tr,
            now,
            "ClearError",
            Some(id::IO_ERROR_CLEAR_ERROR_AFTER_OUTSTANDING),
            "dev={d}: the client delivers it after {} earlier outstanding commands",
            self.devs[d].outstanding
        );
        self.devs[d].clearing = true;
        self.send_plain(
            now,
            d,
            CommandCode::ClearError,
            Kind::ClearError,
            Some(id::IO_ERROR_CLEAR_ERROR_AFTER_OUTSTANDING),
            out,
            tr,
        );
    }

    /// The statement fails; end it per `profile.error_termination` (clause
    /// `io-error.close-or-abort`). `d` is the device in IO-ERROR, if any.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fail(
        &mut self,
        now: u64,
        d: Option<usize>,
        reason: FailReason,
        msg: SqlMessage,
        code: Win32,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        if !self.running {
            return;
        }
        if self.failure.is_none() {
            ev!(
                tr,
                now,
                "StatementFails",
                Some(id::TERM_OUTCOME_DECIDES),
                "{reason:?}: {}",
                msg.text
            );
            self.failure = Some(Failure {
                reason,
                msgs: vec![msg],
                code,
                dev: d,
            });
        }
        let reason = self.failure.as_ref().map(|f| f.reason).unwrap_or(reason);
        let io_dev = d.filter(|&d| {
            self.devs[d].io_error == Some(IoErr::Fatal) && self.devs[d].state != DevState::Closed
        });
        match self.profile.error_termination {
            ErrorTermination::Abort => {
                ev!(
                    tr,
                    now,
                    "ErrorTermination",
                    Some(id::IO_ERROR_CLOSE_OR_ABORT),
                    "abort at once"
                );
                self.server_abort(now, reason, Some(id::IO_ERROR_CLOSE_OR_ABORT), out, tr);
            }
            ErrorTermination::ClearErrorThenAbort => match io_dev {
                Some(d) => {
                    if self.term == Term::None {
                        self.term = Term::ClearThenAbort;
                        ev!(
                            tr,
                            now,
                            "ErrorTermination",
                            Some(id::IO_ERROR_CLOSE_OR_ABORT),
                            "dev={d}: VDC_ClearError, then SignalAbort"
                        );
                    }
                    self.send_clear_error(now, d, out, tr);
                }
                None if self.term == Term::None => {
                    ev!(
                        tr,
                        now,
                        "ErrorTermination",
                        Some(id::IO_ERROR_CLOSE_OR_ABORT),
                        "no device in IO-ERROR: SignalAbort at once"
                    );
                    self.server_abort(now, reason, Some(id::IO_ERROR_CLOSE_OR_ABORT), out, tr);
                }
                None => {}
            },
            ErrorTermination::DrainThenClose => {
                self.begin_drain_then_close(
                    now,
                    "drain outstanding commands, then CloseDevice on every device (no VDC_ClearError, no SignalAbort)",
                    tr,
                );
                self.try_close_after_failure(now, out, tr);
            }
            ErrorTermination::ClearErrorThenClose => {
                if let Some(d) = io_dev {
                    if self.term == Term::None || self.term == Term::DrainThenClose {
                        self.term = Term::ClearThenClose;
                    }
                    ev!(
                        tr,
                        now,
                        "ErrorTermination",
                        Some(id::IO_ERROR_CLOSE_OR_ABORT),
                        "dev={d}: VDC_ClearError, then CloseDevice on every device"
                    );
                    self.send_clear_error(now, d, out, tr);
                } else {
                    self.begin_drain_then_close(
                        now,
                        "drain outstanding commands, then CloseDevice on every device",
                        tr,
                    );
                }
                self.try_close_after_failure(now, out, tr);
            }
        }
    }

    /// A failure with no device to clear ends by draining what is
    /// outstanding, then closing every device (traced once, as `detail`).
    fn begin_drain_then_close(&mut self, now: u64, detail: &str, tr: &mut Trace) {
        if self.term == Term::None {
            self.term = Term::DrainThenClose;
            ev!(
                tr,
                now,
                "ErrorTermination",
                Some(id::IO_ERROR_CLOSE_OR_ABORT),
                "{detail}"
            );
        }
    }

    pub(super) fn try_close_after_failure(
        &mut self,
        now: u64,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        if !self.running || !matches!(self.term, Term::ClearThenClose | Term::DrainThenClose) {
            return;
        }
        // Under drain-then-close no VDC_ClearError is sent: a device in
        // IO-ERROR is closed as it is. Under the other choices it is closed
        // only once its ClearError is done.
        let clears = self.profile.error_termination != ErrorTermination::DrainThenClose;
        if self.outstanding > 0
            || (clears
                && self
                    .devs
                    .iter()
                    .any(|d| d.io_error == Some(IoErr::Fatal) && d.state != DevState::Closed))
        {
            return;
        }
        debug_assert!(
            self.failure.is_some(),
            "closing after a failure has the failure to report"
        );
        for d in 0..self.devs.len() {
            if self.devs[d].state != DevState::Closed {
                self.devs[d].state = DevState::Closed;
                ev!(
                    tr,
                    now,
                    "CloseDevice",
                    Some(id::TERM_CLOSE_DEVICE),
                    "dev={d} after failure"
                );
                out.push(ToClient::CloseDevice { dev: d as DevIx });
            }
        }
        self.state = ServerState::NormallyTerminated;
        ev!(
            tr,
            now,
            "NormallyTerminated",
            Some(id::TERM_NORMALLY_TERMINATED),
            "every device closed"
        );
        let reason = self
            .failure
            .as_ref()
            .map(|f| f.reason)
            .unwrap_or(FailReason::DeviceError);
        ev!(
            tr,
            now,
            "ClosedAfterFailure",
            Some(id::TERM_OUTCOME_DECIDES),
            "every device closed normally; the statement still fails ({reason:?})"
        );
        self.finish_failed(now, reason, Vec::new(), Some(id::TERM_OUTCOME_DECIDES), tr);
    }

    /// Server-side SignalAbort: every outstanding command completes with
    /// ERROR_OPERATION_ABORTED here, the client is told once, nothing is
    /// sent afterwards, the statement fails.
    pub(super) fn server_abort(
        &mut self,
        now: u64,
        reason: FailReason,
        clause: Option<ClauseId>,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        if !self.running {
            return;
        }
        ev!(
            tr,
            now,
            "SignalAbort",
            clause.or(Some(id::ABORT_SERVER_SIGNAL)),
            "server-side abort: {reason:?}"
        );
        if self.devs.len() > 1 && self.failure.as_ref().is_some_and(|f| f.dev.is_some()) {
            ev!(
                tr,
                now,
                "SignalAbort",
                Some(id::IO_ERROR_ONE_DEVICE_FAILS),
                "one device failed: the other {} devices see VD_E_ABORT",
                self.devs.len() - 1
            );
        }
        self.abort_effects(now, tr);
        if !self.abort_sent {
            self.abort_sent = true;
            out.push(ToClient::Abort);
            ev!(
                tr,
                now,
                "Abort",
                Some(id::ABORT_NO_COMMANDS_AFTER),
                "ToClient::Abort; no command is sent after it"
            );
        }
        self.finish_failed(now, reason, Vec::new(), Some(id::ABORT_STATEMENT_FAILS), tr);
    }

    /// The completion agent completes every outstanding command with
    /// ERROR_OPERATION_ABORTED; devices not closed are Aborted.
    pub(super) fn abort_effects(&mut self, now: u64, tr: &mut Trace) {
        self.state = ServerState::AbnormallyTerminated;
        for d in 0..self.devs.len() {
            let reads = std::mem::take(&mut self.devs[d].reads);
            for r in reads {
                if r.result.is_none() {
                    ev!(
                        tr,
                        now,
                        "Completion",
                        Some(id::SIGNAL_ABORT_EFFECTS),
                        "dev={d} id={} VDC_Read (1) ERROR_OPERATION_ABORTED (995) server-side",
                        r.id.0
                    );
                }
                self.free_buf(r.buf);
            }
            let others = std::mem::take(&mut self.devs[d].others);
            for s in others {
                ev!(
                    tr,
                    now,
                    "Completion",
                    Some(id::SIGNAL_ABORT_EFFECTS),
                    "dev={d} id={} {} ERROR_OPERATION_ABORTED (995) server-side",
                    s.id.0,
                    s.code
                );
                self.free_buf(s.buf);
            }
            let dev = &mut self.devs[d];
            dev.outstanding = 0;
            dev.barrier = false;
            dev.clearing = false;
            if dev.state != DevState::Closed {
                dev.state = DevState::Aborted;
            }
        }
        self.outstanding = 0;
        debug_assert_eq!(
            self.buf_free.len(),
            self.buf_next as usize,
            "after an abort every buffer is back in the pool"
        );
    }

    /// The 18210 lines for what was outstanding when the set was aborted
    /// from outside (one per device with something outstanding; the
    /// AllocateBuffer form when nothing was).
    pub(super) fn aborted_messages(&self) -> Vec<SqlMessage> {
        let code = Win32::ERROR_OPERATION_ABORTED;
        let mut v = Vec::new();
        for d in &self.devs {
            let Some((cc, kind, _)) = d.oldest_outstanding() else {
                continue;
            };
            let (op, what): (&str, String) = match (cc, kind) {
                (CommandCode::Write, _) => ("BackupMedium::ReportIoError", "write".into()),
                (CommandCode::Read, _) => ("BackupMedium::ReportIoError", "read".into()),
                (CommandCode::Flush, _) => (
                    "BackupVirtualDeviceFile::RequestDurableMedia",
                    "Flush".into(),
                ),
                (CommandCode::ClearError, Some(Kind::ClearError)) => {
                    ("BackupVirtualDeviceFile::ClearError", String::new())
                }
                (CommandCode::Complete, _) => (
                    "BackupVirtualDeviceFile::RequestDurableMedia",
                    "Complete".into(),
                ),
                (c, _) => (
                    "BackupVirtualDeviceFile::SendCommand",
                    c.name().trim_start_matches("VDC_").to_string(),
                ),
            };
            v.push(messages::vdi_failure(op, &what, &d.name, code));
        }
        if v.is_empty() {
            let name = self.devs.first().map(|d| d.name.as_str()).unwrap_or("");
            v.push(messages::vdi_failure(
                "BackupVirtualDeviceSet::AllocateBuffer",
                "",
                name,
                code,
            ));
        }
        v
    }

    pub(super) fn client_end(
        &mut self,
        now: u64,
        how: ClientEnd,
        _out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        let (what, clause) = match how {
            ClientEnd::Abort => ("ClientAbort", id::ABORT_CLIENT_SIGNAL),
            ClientEnd::Closed => ("ClientClosed", id::ABORT_CLIENT_SIGNAL),
            ClientEnd::Died => ("ClientDied", id::ABORT_CLIENT_DEATH),
        };
        if !self.running {
            ev!(tr, now, what, None, "ignored: no statement running");
            return;
        }
        ev!(
            tr,
            now,
            what,
            Some(clause),
            "the client ended the set with {} commands outstanding: server-side abort",
            self.outstanding
        );
        let extra = self.aborted_messages();
        self.abort_effects(now, tr);
        // A failure the client caused by aborting (995 completions) is the
        // client's abort; any other earlier failure stays the reason.
        let keep = self
            .failure
            .as_ref()
            .is_some_and(|f| f.code != Win32::ERROR_OPERATION_ABORTED);
        if !keep {
            self.failure = None;
        }
        self.finish_failed(
            now,
            FailReason::ClientAbort,
            extra,
            Some(id::ABORT_STATEMENT_FAILS),
            tr,
        );
    }

    // ------------------------------------------------------------------
    // outcome
    // ------------------------------------------------------------------

    /// Ends the statement as failed: the pending failure's reason and
    /// messages (else `reason` and `msgs`), then Msg 3013.
    pub(super) fn finish_failed(
        &mut self,
        now: u64,
        reason: FailReason,
        msgs: Vec<SqlMessage>,
        clause: Option<ClauseId>,
        tr: &mut Trace,
    ) {
        debug_assert!(self.running, "only a running statement fails");
        let (reason, failure_msgs) = match self.failure.take() {
            Some(f) => (f.reason, f.msgs),
            None => (reason, Vec::new()),
        };
        // A snapshot's freeze messages come first (module `snapshot`).
        let mut all = std::mem::take(&mut self.snap_msgs);
        all.extend(failure_msgs);
        all.extend(msgs);
        all.push(messages::terminating(self.kind));
        self.outcome.status = Status::Failed;
        self.outcome.reason = Some(reason);
        self.outcome.messages = all;
        self.outcome.ended_ms = Some(now);
        self.running = false;
        self.term = Term::None;
        if tr.on() {
            let texts: Vec<String> = self
                .outcome
                .messages
                .iter()
                .map(|m| m.to_string())
                .collect();
            tr.emit(
                now,
                "server",
                "Outcome",
                format!("Failed {reason:?}: {}", texts.join(" | ")),
                clause.or(Some(id::SERVER_OUTCOME_MESSAGES)),
            );
        }
    }

    pub(super) fn finish_success(&mut self, now: u64, out: &mut Vec<ToClient>, tr: &mut Trace) {
        debug_assert!(self.running, "only a running statement succeeds");
        debug_assert!(
            self.failure.is_none(),
            "a statement with a failure never succeeds"
        );
        debug_assert_eq!(
            self.term,
            Term::None,
            "a terminating statement never succeeds"
        );
        debug_assert_eq!(
            self.outstanding, 0,
            "a statement succeeds with nothing outstanding"
        );
        let meta = self.kind.is_metadata_only();
        let clause = if meta {
            Some(id::RESTORE_EARLY_CLOSE)
        } else {
            Some(id::TERM_CLOSE_DEVICE)
        };
        for d in 0..self.devs.len() {
            if self.devs[d].state != DevState::Closed {
                self.devs[d].state = DevState::Closed;
                ev!(tr, now, "CloseDevice", clause, "dev={d}");
                out.push(ToClient::CloseDevice { dev: d as DevIx });
            }
        }
        self.state = ServerState::NormallyTerminated;
        ev!(
            tr,
            now,
            "NormallyTerminated",
            Some(id::TERM_NORMALLY_TERMINATED),
            "every device closed"
        );
        // Pages and rates count the database's data, not the media headers.
        let bytes = self
            .record
            .as_ref()
            .map_or(self.outcome.bytes, BackupRecord::total_bytes);
        let pages = messages::pages(bytes);
        let ms = now.saturating_sub(self.started);
        let mut msgs = std::mem::take(&mut self.snap_msgs);
        match self.kind {
            StatementKind::BackupDatabase | StatementKind::BackupLog => {
                if let Some(rec) = self.record.take() {
                    // A VDI media set holds one backup set: it is file 1 on it.
                    msgs.push(messages::processed(pages, &self.database, 1));
                    self.history.push(rec);
                }
                msgs.push(messages::success(self.kind.verb(), pages, bytes, ms));
            }
            StatementKind::RestoreDatabase | StatementKind::RestoreLog => {
                msgs.push(messages::processed(pages, &self.database, 1));
                msgs.push(messages::success(self.kind.verb(), pages, bytes, ms));
            }
            StatementKind::RestoreVerifyOnly => msgs.push(messages::verify_ok()),
            StatementKind::RestoreHeaderOnly | StatementKind::RestoreFilelistOnly => {}
        }
        self.outcome.status = Status::Succeeded;
        self.outcome.reason = None;
        self.outcome.messages = msgs;
        self.outcome.ended_ms = Some(now);
        self.running = false;
        if tr.on() {
            let texts: Vec<String> = self
                .outcome
                .messages
                .iter()
                .map(|m| m.to_string())
                .collect();
            tr.emit(
                now,
                "server",
                "Outcome",
                format!("Succeeded bytes={bytes}: {}", texts.join(" | ")),
                Some(id::SERVER_OUTCOME_MESSAGES),
            );
        }
    }
}
