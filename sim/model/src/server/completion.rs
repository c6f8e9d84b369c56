//! Completions: finding the command, returning its buffer, verifying restore
//! reads in issue order, short transfers, probes and ClearError.

use super::*;
use vdi_spec::id;

impl ServerHalf {
    // ------------------------------------------------------------------
    // completions
    // ------------------------------------------------------------------

    /// Finds an outstanding command: (device, Some(index in reads) | None, index in others).
    pub(super) fn find(&self, hint: DevIx, id: CmdId) -> Option<(usize, Result<usize, usize>)> {
        let look = |d: usize| -> Option<Result<usize, usize>> {
            let dev = self.devs.get(d)?;
            if let Some(i) = dev
                .reads
                .iter()
                .position(|r| r.id == id && r.result.is_none())
            {
                return Some(Ok(i));
            }
            dev.others.iter().position(|s| s.id == id).map(Err)
        };
        let h = usize::from(hint);
        if let Some(l) = look(h) {
            return Some((h, l));
        }
        (0..self.devs.len())
            .filter(|&d| d != h)
            .find_map(|d| look(d).map(|l| (d, l)))
    }

    pub(super) fn on_completion(
        &mut self,
        now: u64,
        c: Completion,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        if !self.running {
            let clause = if self.state == ServerState::AbnormallyTerminated {
                Some(id::SIGNAL_ABORT_EFFECTS)
            } else {
                None
            };
            ev!(
                tr,
                now,
                "CompletionIgnored",
                clause,
                "dev={} id={} {} bytes={}: no statement running",
                c.dev,
                c.id.0,
                c.code,
                c.bytes
            );
            return;
        }
        let Some((d, at)) = self.find(c.dev, c.id) else {
            ev!(
                tr,
                now,
                "CompletionIgnored",
                None,
                "dev={} id={} {} bytes={}: unknown or already completed command",
                c.dev,
                c.id.0,
                c.code,
                c.bytes
            );
            return;
        };
        debug_assert!(self.outstanding > 0, "a command found is outstanding");
        debug_assert!(
            self.devs[d].outstanding > 0,
            "a command found is outstanding on its device"
        );
        self.outstanding = self.outstanding.saturating_sub(1);
        self.devs[d].outstanding = self.devs[d].outstanding.saturating_sub(1);
        self.wd_anchor = now;
        let id = c.id;
        if c.auto && self.devs[d].io_error.is_some() {
            self.on_auto_completion(now, d, at, c, out, tr);
        } else {
            match at {
                Ok(i) => self.on_read_completion(now, d, i, c, out, tr),
                Err(i) => {
                    let slot = self.devs[d].others.swap_remove(i);
                    self.free_buf(slot.buf);
                    self.on_slot_completion(now, d, slot, c, out, tr);
                }
            }
        }
        self.advance_from(now, Some(d), out, tr);
        if self.wd_period > 0 && self.running {
            ev!(
                tr,
                now,
                "Watchdog",
                Some(id::WATCHDOG_RESET_ON_COMPLETION),
                "completion id={}: deadline {}",
                id.0,
                match self.watchdog_deadline() {
                    Some(t) => t.to_string(),
                    None => "disarmed (nothing outstanding)".to_string(),
                }
            );
        }
    }

    pub(super) fn trace_completion(
        &self,
        now: u64,
        d: usize,
        code: CommandCode,
        c: &Completion,
        tr: &mut Trace,
    ) {
        if !tr.on() {
            return;
        }
        let clause = if code.has_buffer() && c.code == Win32::ERROR_SUCCESS {
            Some(id::COMPLETE_COMMAND_RETURNS_BUFFER)
        } else {
            None
        };
        let auto = if c.auto { " auto" } else { "" };
        tr.emit(
            now,
            "server",
            "Completion",
            format!(
                "dev={d} id={} {code} {} bytes={}{auto}",
                c.id.0, c.code, c.bytes
            ),
            clause,
        );
    }

    /// An auto-completion (ERROR_IO_DEVICE from the client half, clause
    /// `io-error.reject-new`) on a device in IO-ERROR: the command was not
    /// performed and its buffer comes back. After a fatal error nothing more
    /// is needed; after a non-fatal one (EOF, probe) the work is redone once
    /// the error is cleared: a Write is sent again, a Read's share of the
    /// request cursor is taken back (auto-completed commands are the newest
    /// ones on the device, so the stream stays in order).
    pub(super) fn on_auto_completion(
        &mut self,
        now: u64,
        d: usize,
        at: Result<usize, usize>,
        c: Completion,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        let fatal = self.devs[d].io_error == Some(IoErr::Fatal);
        match at {
            Ok(i) => {
                self.trace_completion(now, d, CommandCode::Read, &c, tr);
                let Some(r) = self.devs[d].reads.remove(i) else {
                    return;
                };
                self.free_buf(r.buf);
                if !fatal && self.term == Term::None {
                    let dev = &mut self.devs[d];
                    dev.issued = dev.issued.saturating_sub(r.adv);
                    ev!(
                        tr,
                        now,
                        "Redo",
                        Some(id::IO_ERROR_REJECT_NEW),
                        "dev={d} id={} read not performed: request cursor back to {}",
                        r.id.0,
                        dev.issued
                    );
                }
            }
            Err(i) => {
                let slot = self.devs[d].others.swap_remove(i);
                self.free_buf(slot.buf);
                self.trace_completion(now, d, slot.code, &c, tr);
                if fatal || self.term != Term::None {
                    match slot.kind {
                        Kind::MidFlush
                        | Kind::FinalFlush
                        | Kind::Complete
                        | Kind::Tape
                        | Kind::EndRewind
                        | Kind::Snapshot
                        | Kind::Load => {
                            self.devs[d].barrier = false;
                        }
                        // The ClearError is answered (on the client's
                        // behalf): the device may be sent another.
                        Kind::ClearError => self.devs[d].clearing = false,
                        _ => {}
                    }
                    return;
                }
                match slot.kind {
                    Kind::Write => {
                        self.devs[d].reissue.push_back((slot.pos, slot.size));
                        ev!(
                            tr,
                            now,
                            "Redo",
                            Some(id::IO_ERROR_REJECT_NEW),
                            "dev={d} id={} write not performed: {} bytes at {} sent again after ClearError",
                            slot.id.0,
                            slot.size,
                            slot.pos
                        );
                    }
                    Kind::Extra => {
                        ev!(
                            tr,
                            now,
                            "Redo",
                            Some(id::IO_ERROR_REJECT_NEW),
                            "dev={d} id={} probe {} not performed; not sent again",
                            slot.id.0,
                            slot.code
                        );
                    }
                    Kind::ClearError => {
                        self.devs[d].clearing = false;
                        self.on_clear_error(now, d, c.code, out, tr);
                    }
                    Kind::MidFlush
                    | Kind::FinalFlush
                    | Kind::Complete
                    | Kind::Tape
                    | Kind::EndRewind
                    | Kind::Snapshot
                    | Kind::Load => {
                        self.devs[d].barrier = false;
                        let name = self.devs[d].name.clone();
                        let (reason, m) = if slot.kind == Kind::MidFlush {
                            (
                                FailReason::DeviceError,
                                messages::write_failed(&name, c.code),
                            )
                        } else {
                            (FailReason::Vetoed, messages::write_failed(&name, c.code))
                        };
                        self.device_error(now, d, c.code, reason, m, out, tr);
                    }
                }
            }
        }
    }

    /// Whether the client half puts its device into IO-ERROR for `code`
    /// (the server's view must agree, or it would misread auto-completions).
    pub(super) fn client_enters_io_error(&self, code: Win32) -> bool {
        match code {
            Win32::ERROR_SUCCESS => false,
            Win32::ERROR_NOT_SUPPORTED => self.profile.not_supported_enters_io_error,
            c if is_eof(c) => self.profile.eof_enters_io_error,
            _ => true,
        }
    }

    pub(super) fn on_read_completion(
        &mut self,
        now: u64,
        d: usize,
        i: usize,
        c: Completion,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        self.trace_completion(now, d, CommandCode::Read, &c, tr);
        let buf = self.devs[d].reads[i].buf.take();
        self.free_buf(buf);
        if self.term != Term::None {
            self.devs[d].reads.remove(i);
            return;
        }
        let code = c.code;
        if is_eof(code) && self.client_enters_io_error(code) && self.devs[d].io_error.is_none() {
            // The client half is in IO-ERROR from now on; whether this EOF
            // is the normal end is decided when it is verified in order.
            self.enter_io_error(now, d, code, IoErr::Eof, Some(id::IO_ERROR_EOF), tr);
            self.send_clear_error(now, d, out, tr);
        }
        if code != Win32::ERROR_SUCCESS && !is_eof(code) {
            self.devs[d].reads.remove(i);
            let name = self.devs[d].name.clone();
            self.device_error(
                now,
                d,
                code,
                FailReason::DeviceError,
                messages::read_failed(&name, code),
                out,
                tr,
            );
            return;
        }
        self.devs[d].reads[i].result = Some((code, c.bytes, c.data));
        // Verify in issue order (clause restore.byte-identical).
        while self.running && self.term == Term::None {
            let Some(front) = self.devs[d].reads.front() else {
                break;
            };
            if front.result.is_none() {
                break;
            }
            let Some(slot) = self.devs[d].reads.pop_front() else {
                break;
            };
            self.verify_read(now, d, slot, out, tr);
        }
    }

    /// Verifies one read, in issue order, against the backup's stream
    /// (clause `restore.byte-identical`): counts its bytes, then ends the
    /// family at EOF or handles a short read.
    pub(super) fn verify_read(
        &mut self,
        now: u64,
        d: usize,
        mut slot: ReadSlot,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        let Some((code, bytes, data)) = slot.result.take() else {
            return;
        };
        let dev = &self.devs[d];
        let name = dev.name.clone();
        if self.record.is_none() && !dev.ended {
            self.verify_header(now, d, &slot, (code, bytes, &data), out, tr);
            return;
        }
        if dev.ended {
            ev!(
                tr,
                now,
                "ReadIgnored",
                None,
                "dev={d} id={}: after the end of the stream",
                slot.id.0
            );
            return;
        }
        if dev.load_due {
            ev!(
                tr,
                now,
                "ReadIgnored",
                Some(if self.tape() {
                    id::TAPE_NEXT_VOLUME
                } else {
                    id::MEDIA_NEXT_VOLUME
                }),
                "dev={d} id={}: after the end of a volume (read again after VDC_Load)",
                slot.id.0
            );
            return;
        }
        if bytes > u64::from(slot.size) || data.len() != bytes {
            trace_bad_count(now, d, &slot, bytes, &data, tr);
        }
        let fits = bytes <= u64::from(slot.size) && dev.done.saturating_add(bytes) <= dev.len;
        if !fits || !data.is_stream(dev.origin, dev.done, bytes) {
            ev!(
                tr,
                now,
                "BadMedia",
                Some(id::RESTORE_BYTE_IDENTICAL),
                "dev={d} id={} bytes={} at stream offset {}: not the bytes written",
                slot.id.0,
                bytes,
                dev.done
            );
            // A backup WITH CHECKSUM lets the server name the damaged page
            // (Msg 3183); without page checksums the family is just not
            // what it should be (Msg 3241).
            let m = match &self.record {
                Some(rec) if rec.meta.checksum => {
                    let page = self.devs[d].done.saturating_sub(crate::media::HEADER_BYTES) / 8192;
                    messages::damaged_page(page, &self.database)
                }
                _ => messages::bad_family(&name),
            };
            self.fail(now, None, FailReason::BadMedia, m, code, out, tr);
            return;
        }
        let dev = &mut self.devs[d];
        dev.done += bytes;
        dev.bytes += bytes;
        self.outcome.bytes += bytes;
        ev!(
            tr,
            now,
            "Verified",
            Some(id::RESTORE_BYTE_IDENTICAL),
            "dev={d} id={} pos={} bytes={} verified={}/{}",
            slot.id.0,
            slot.pos,
            bytes,
            dev.done,
            dev.target
        );
        if is_eof(code) {
            self.read_eof(now, d, code, &name, out, tr);
            return;
        }
        if bytes < u64::from(slot.size) {
            self.short_read(now, d, &slot, bytes, code, out, tr);
        } else {
            self.devs[d].stalls = 0;
        }
        let dev = &mut self.devs[d];
        if dev.done >= dev.target && dev.reads.is_empty() && self.running {
            dev.ended = true;
        }
    }

    /// A verified read answered EOF: the family's normal end if every byte
    /// was read (clause `restore.eof`), else a truncated family that fails
    /// the statement (clause `restore.truncated`).
    fn read_eof(
        &mut self,
        now: u64,
        d: usize,
        code: Win32,
        name: &str,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        if self.devs[d].done < self.devs[d].len && self.volume_end(now, d, code, tr) {
            return;
        }
        let dev = &mut self.devs[d];
        if dev.done == dev.len {
            dev.ended = true;
            ev!(
                tr,
                now,
                "EndOfStream",
                Some(id::RESTORE_EOF),
                "dev={d} {code}: family ended normally at {}",
                dev.done
            );
            return;
        }
        ev!(
            tr,
            now,
            "Truncated",
            Some(id::RESTORE_TRUNCATED),
            "dev={d} {code} at {} of {}",
            dev.done,
            dev.len
        );
        // With `eof-enters-io-error` the device is already in
        // IO-ERROR (a ClearError is on its way): now a fatal one.
        let io = if dev.io_error.is_some() {
            self.enter_io_error(now, d, code, IoErr::Fatal, Some(id::RESTORE_TRUNCATED), tr);
            Some(d)
        } else {
            None
        };
        self.fail(
            now,
            io,
            FailReason::BadMedia,
            messages::read_failed(name, code),
            code,
            out,
            tr,
        );
    }

    /// A verified read that returned `bytes`, fewer than asked, as success
    /// (clause `command.short-transfer`): fails the statement, or under
    /// `reissue` lowers the request cursor so the rest is read again.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn short_read(
        &mut self,
        now: u64,
        d: usize,
        slot: &ReadSlot,
        bytes: u64,
        code: Win32,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        match self.profile.short_transfer {
            ShortTransfer::Fail => {
                let size = slot.size;
                self.fail_short_transfer(
                    now, d, false, slot.id, bytes, size, "fail", code, out, tr,
                );
            }
            ShortTransfer::Reissue => {
                let dev = &mut self.devs[d];
                dev.issued = dev.issued.saturating_sub(slot.adv.saturating_sub(bytes));
                ev!(
                    tr,
                    now,
                    "ShortTransfer",
                    Some(id::COMMAND_SHORT_TRANSFER),
                    "dev={d} id={} read {bytes} of {} as success: request cursor back to {}",
                    slot.id.0,
                    slot.size,
                    dev.issued
                );
                self.note_progress(now, d, bytes, false, out, tr);
            }
        }
    }

    /// Fails the statement for a transfer reported as success with fewer
    /// bytes than asked (clause `command.short-transfer`).
    #[allow(clippy::too_many_arguments)]
    fn fail_short_transfer(
        &mut self,
        now: u64,
        d: usize,
        write: bool,
        id: CmdId,
        bytes: u64,
        size: u32,
        why: &str,
        code: Win32,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        let verb = if write { "wrote" } else { "read" };
        ev!(
            tr,
            now,
            "ShortTransfer",
            Some(id::COMMAND_SHORT_TRANSFER),
            "dev={d} id={} {verb} {bytes} of {size} as success: {why}",
            id.0
        );
        let name = self.devs[d].name.clone();
        let m = messages::short_transfer(write, &name, bytes, size);
        self.fail(now, None, FailReason::ShortTransfer, m, code, out, tr);
    }

    /// Under `reissue`, a short write's remainder can be written again only
    /// if that keeps the pipe's stream in order and every transfer a
    /// multiple of BLOCKSIZE (§1.3, §5.2): the short write must be the last
    /// write sent on its device, nothing else waiting to be reissued, and
    /// the bytes written a whole number of blocks.
    fn reissue_keeps_order(&self, d: usize, slot: &Slot, bytes: u64) -> bool {
        let dev = &self.devs[d];
        let block = u64::from(self.block.max(1));
        // Positioned writes keep no stream order (clause disk.positioned-io).
        let in_order = self.disk()
            || (slot.pos + u64::from(slot.size) == dev.issued && dev.reissue.is_empty());
        in_order && bytes.is_multiple_of(block)
    }

    /// A VDC_Flush acknowledged on a disk-like device set end-of-file at
    /// the furthest byte written (clause `flush.disk-sets-eof`).
    fn note_end_of_file(&self, now: u64, d: usize, tr: &mut Trace) {
        if self.disk() {
            ev!(
                tr,
                now,
                "EndOfFile",
                Some(id::FLUSH_DISK_SETS_EOF),
                "dev={d} VDC_Flush acknowledged on a disk-like device: end-of-file at byte {}",
                self.devs[d].issued
            );
        }
    }

    /// Under `reissue`: bounds zero-progress short transfers.
    pub(super) fn note_progress(
        &mut self,
        now: u64,
        d: usize,
        bytes: u64,
        write: bool,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        let dev = &mut self.devs[d];
        if bytes > 0 {
            dev.stalls = 0;
            return;
        }
        dev.stalls += 1;
        if dev.stalls > MAX_ZERO_PROGRESS_REISSUES {
            let name = dev.name.clone();
            ev!(
                tr,
                now,
                "ShortTransfer",
                Some(id::COMMAND_SHORT_TRANSFER),
                "dev={d}: {} zero-byte transfers in a row; giving up",
                dev.stalls
            );
            let m = messages::short_transfer(write, &name, 0, self.mts);
            self.fail(
                now,
                None,
                FailReason::ShortTransfer,
                m,
                Win32::ERROR_SUCCESS,
                out,
                tr,
            );
        }
    }

    /// The completion of a command other than a stream Read: a barrier or
    /// ClearError ends, a probe is answered, a failure fails the statement,
    /// a Write counts its bytes.
    pub(super) fn on_slot_completion(
        &mut self,
        now: u64,
        d: usize,
        slot: Slot,
        c: Completion,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        self.trace_completion(now, d, slot.code, &c, tr);
        let code = c.code;
        if matches!(
            slot.kind,
            Kind::MidFlush | Kind::FinalFlush | Kind::Complete
        ) {
            self.devs[d].barrier = false;
        }
        if slot.kind == Kind::ClearError {
            self.devs[d].clearing = false;
            return self.on_clear_error(now, d, code, out, tr);
        }
        // VDC_Flush is required in every device mode (§5.0): refusing it is a
        // client violation wherever it happens (field row 18), and a failure.
        let flush_refused = slot.code == CommandCode::Flush && code == Win32::ERROR_NOT_SUPPORTED;
        if flush_refused {
            ev!(
                tr,
                now,
                "ClientMisuse",
                Some(id::FLUSH_RESTORE_NOT_SUPPORTED_MISUSE),
                "dev={d} VDC_Flush -> {code}: every client must support VDC_Flush"
            );
        }
        if slot.kind == Kind::Extra && !flush_refused {
            return self.on_probe_answer(now, d, &slot, code, out, tr);
        }
        if matches!(slot.kind, Kind::Tape | Kind::EndRewind) {
            return self.on_tape_done(now, d, &slot, &c, out, tr);
        }
        if slot.kind == Kind::Snapshot {
            return self.on_snapshot_done(now, d, &slot, &c, out, tr);
        }
        if slot.kind == Kind::Load {
            return self.on_load_done(now, d, &c, out, tr);
        }
        if slot.kind == Kind::Write && code == Win32::ERROR_END_OF_MEDIA && self.removable() {
            return self.on_end_of_media(now, d, &slot, &c, out, tr);
        }
        if code != Win32::ERROR_SUCCESS {
            return self.on_slot_failure(now, d, &slot, code, out, tr);
        }
        match slot.kind {
            Kind::Write => self.on_write_done(now, d, &slot, &c, out, tr),
            Kind::MidFlush => {
                self.devs[d].flushes_done += 1;
                self.note_end_of_file(now, d, tr);
            }
            Kind::FinalFlush => {
                self.devs[d].stage_done = true;
                self.note_end_of_file(now, d, tr);
            }
            Kind::Complete => {
                self.devs[d].stage_done = true;
            }
            // Answered above.
            Kind::ClearError
            | Kind::Extra
            | Kind::Tape
            | Kind::EndRewind
            | Kind::Snapshot
            | Kind::Load => {}
        }
    }

    /// The answer to a probe (clause `command.not-supported`):
    /// ERROR_NOT_SUPPORTED under `not-supported-enters-io-error` puts the
    /// device in IO-ERROR until cleared; ERROR_SUCCESS or
    /// ERROR_NOT_SUPPORTED otherwise carries on; anything else is a device
    /// error.
    fn on_probe_answer(
        &mut self,
        now: u64,
        d: usize,
        slot: &Slot,
        code: Win32,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        if code == Win32::ERROR_NOT_SUPPORTED && self.client_enters_io_error(code) {
            ev!(
                tr,
                now,
                "ExtraAnswered",
                Some(id::COMMAND_NOT_SUPPORTED),
                "dev={d} {} -> {code}: not performed; the device is in IO-ERROR until cleared",
                slot.code
            );
            if self.devs[d].io_error.is_none() && self.term == Term::None {
                self.enter_io_error(
                    now,
                    d,
                    code,
                    IoErr::Probe,
                    Some(id::IO_ERROR_NOT_SUPPORTED),
                    tr,
                );
                self.send_clear_error(now, d, out, tr);
            }
            return;
        }
        if code == Win32::ERROR_SUCCESS || code == Win32::ERROR_NOT_SUPPORTED {
            ev!(
                tr,
                now,
                "ExtraAnswered",
                Some(id::COMMAND_NOT_SUPPORTED),
                "dev={d} {} -> {code}: carry on",
                slot.code
            );
            return;
        }
        let m = self.transfer_failed(d, code);
        self.device_error(now, d, code, FailReason::DeviceError, m, out, tr);
    }

    /// A Write, Flush or Complete answered with an error: IO-ERROR, and the
    /// statement fails; a final Flush or a Complete that fails is the
    /// client's veto (clauses `flush.final-veto`, `complete.veto`).
    fn on_slot_failure(
        &mut self,
        now: u64,
        d: usize,
        slot: &Slot,
        code: Win32,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        let (reason, clause) = match slot.kind {
            Kind::FinalFlush => (FailReason::Vetoed, id::FLUSH_FINAL_VETO),
            Kind::Complete => (FailReason::Vetoed, id::COMPLETE_VETO),
            _ => (FailReason::DeviceError, id::IO_ERROR_ENTER),
        };
        if clause != id::IO_ERROR_ENTER {
            ev!(
                tr,
                now,
                "Veto",
                Some(clause),
                "dev={d} {} -> {code}: the client vetoes the backup",
                slot.code
            );
        }
        let m = self.transfer_failed(d, code);
        self.device_error(now, d, code, reason, m, out, tr);
    }

    /// The message for a failed command on device `d`: Msg 3202 (write
    /// failed) for a BACKUP, Msg 3203 (read failed) for a RESTORE.
    fn transfer_failed(&self, d: usize, code: Win32) -> SqlMessage {
        let name = &self.devs[d].name;
        if self.kind.is_backup() {
            messages::write_failed(name, code)
        } else {
            messages::read_failed(name, code)
        }
    }

    /// A Write answered ERROR_SUCCESS: counts its bytes (at most its size);
    /// fewer than asked is a short transfer, failed or (under `reissue`, when
    /// the stream stays in order) written again.
    fn on_write_done(
        &mut self,
        now: u64,
        d: usize,
        slot: &Slot,
        c: &Completion,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        let code = c.code;
        let mut bytes = c.bytes;
        if bytes > u64::from(slot.size) {
            ev!(
                tr,
                now,
                "Anomaly",
                None,
                "dev={d} id={} reports {bytes} bytes for a {}-byte write; counted as {}",
                c.id.0,
                slot.size,
                slot.size
            );
            bytes = u64::from(slot.size);
        }
        let dev = &mut self.devs[d];
        dev.done += bytes;
        dev.bytes += bytes;
        self.outcome.bytes += bytes;
        if bytes >= u64::from(slot.size) {
            dev.stalls = 0;
            return;
        }
        match self.profile.short_transfer {
            ShortTransfer::Fail => {
                self.fail_short_transfer(
                    now, d, true, c.id, bytes, slot.size, "fail", code, out, tr,
                );
            }
            ShortTransfer::Reissue if !self.reissue_keeps_order(d, slot, bytes) => {
                let why = "the remainder cannot be reissued in stream order (later writes already sent, or not a BLOCKSIZE multiple): fail";
                self.fail_short_transfer(now, d, true, c.id, bytes, slot.size, why, code, out, tr);
            }
            ShortTransfer::Reissue => {
                let rest = slot.size - bytes as u32;
                let pos = slot.pos + bytes;
                self.devs[d].reissue.push_back((pos, rest));
                ev!(
                    tr,
                    now,
                    "ShortTransfer",
                    Some(id::COMMAND_SHORT_TRANSFER),
                    "dev={d} id={} wrote {bytes} of {} as success: reissue {rest} bytes at {pos}",
                    c.id.0,
                    slot.size
                );
                self.note_progress(now, d, bytes, true, out, tr);
            }
        }
    }

    pub(super) fn on_clear_error(
        &mut self,
        now: u64,
        d: usize,
        code: Win32,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        let was = self.devs[d].io_error;
        debug_assert!(was.is_some(), "a VDC_ClearError answers an IO-ERROR");
        if code != Win32::ERROR_SUCCESS {
            self.devs[d].note_error(code);
            ev!(
                tr,
                now,
                "ClearErrorFailed",
                Some(id::IO_ERROR_CLOSE_OR_ABORT),
                "dev={d} VDC_ClearError -> {code}: abort"
            );
            if self.failure.is_none() {
                let name = self.devs[d].name.clone();
                let m =
                    messages::vdi_failure("BackupVirtualDeviceFile::ClearError", "", &name, code);
                self.failure = Some(Failure {
                    reason: FailReason::DeviceError,
                    msgs: vec![m],
                    code,
                    dev: Some(d),
                });
            }
            return self.server_abort(
                now,
                FailReason::DeviceError,
                Some(id::IO_ERROR_CLOSE_OR_ABORT),
                out,
                tr,
            );
        }
        ev!(
            tr,
            now,
            "ClearErrorDone",
            Some(id::IO_ERROR_CLEAR_ERROR_SUCCESS),
            "dev={d} back to Active"
        );
        let dev = &mut self.devs[d];
        dev.io_error = None;
        if dev.state == DevState::IoError {
            dev.state = DevState::Active;
        }
        if was == Some(IoErr::Volume) {
            // The end of a volume: the next one, then the rest (module
            // `volume`).
            dev.load_due = true;
        }
        if matches!(was, Some(IoErr::Eof | IoErr::Probe | IoErr::Volume)) {
            // A non-fatal IO-ERROR: the statement goes on (what the client
            // half auto-completed is sent again by the next pump).
            return;
        }
        match self.term {
            Term::ClearThenAbort => {
                let reason = self
                    .failure
                    .as_ref()
                    .map(|f| f.reason)
                    .unwrap_or(FailReason::DeviceError);
                self.server_abort(now, reason, Some(id::IO_ERROR_CLOSE_OR_ABORT), out, tr);
            }
            Term::ClearThenClose | Term::DrainThenClose | Term::None => {}
        }
    }
}

/// Traces a read completed with a count that is not what its buffer holds
/// or more than it asked (clause `restore.report-actual-bytes`).
pub(super) fn trace_bad_count(
    now: u64,
    d: usize,
    slot: &ReadSlot,
    bytes: u64,
    data: &Content,
    tr: &mut Trace,
) {
    ev!(
        tr,
        now,
        "BadCount",
        Some(id::RESTORE_REPORT_ACTUAL_BYTES),
        "dev={d} id={} reports {} bytes for a {}-byte read holding {} bytes",
        slot.id.0,
        bytes,
        slot.size,
        data.len()
    );
}
