//! The command streams: the buffer pool, sending, round-robin pumping, and
//! the phases of a statement (data, final Flush, VDC_Complete).

use super::*;
use crate::media::HEADER_BYTES;
use vdi_spec::id;
use vdi_spec::profile::DiskHeaderOrder;

impl ServerHalf {
    // ------------------------------------------------------------------
    // sending
    // ------------------------------------------------------------------

    pub(super) fn alloc_buf(&mut self) -> Option<BufId> {
        if let Some(b) = self.buf_free.pop() {
            return Some(b);
        }
        if self.buf_next < self.buf_total {
            let b = BufId(self.buf_next);
            self.buf_next += 1;
            return Some(b);
        }
        self.buf_starved = true;
        None
    }

    pub(super) fn free_buf(&mut self, b: Option<BufId>) {
        if let Some(b) = b {
            debug_assert!(b.0 < self.buf_next, "only a buffer handed out is freed");
            debug_assert!(!self.buf_free.contains(&b), "a buffer is freed once");
            self.buf_free.push(b);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn send(
        &mut self,
        now: u64,
        d: usize,
        code: CommandCode,
        kind: Option<Kind>,
        size: u32,
        pos: u64,
        buf: Option<BufId>,
        data: Content,
        adv: u64,
        clause: Option<ClauseId>,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        debug_assert!(
            self.running,
            "commands are sent only while a statement runs"
        );
        debug_assert!(!self.abort_sent, "no command is sent after SignalAbort");
        debug_assert!(
            self.term == Term::None || kind == Some(Kind::ClearError),
            "while a failure is being terminated only VDC_ClearError is sent"
        );
        debug_assert!(
            match self.devs[d].state {
                DevState::Active => true,
                DevState::IoError => code == CommandCode::ClearError,
                DevState::Closed | DevState::Aborted => false,
            },
            "commands go to open devices, only VDC_ClearError to one in IO-ERROR"
        );
        debug_assert_eq!(
            buf.is_some(),
            code.has_buffer(),
            "a command carries a buffer exactly when it transfers data"
        );
        debug_assert!(
            match kind {
                None => code == CommandCode::Read,
                Some(Kind::Write) => code == CommandCode::Write,
                Some(Kind::MidFlush | Kind::FinalFlush) => code == CommandCode::Flush,
                Some(Kind::Complete) => code == CommandCode::Complete,
                Some(Kind::ClearError) => code == CommandCode::ClearError,
                Some(Kind::Extra) => true,
                Some(Kind::Tape) => matches!(
                    code,
                    CommandCode::Rewind
                        | CommandCode::GetPosition
                        | CommandCode::SetPosition
                        | CommandCode::WriteMark
                        | CommandCode::SkipMarks
                        | CommandCode::SkipBlocks
                ),
                Some(Kind::EndRewind) => code == CommandCode::Rewind,
                Some(Kind::Load) => code == CommandCode::Load,
                Some(Kind::Snapshot) => matches!(
                    code,
                    CommandCode::PrepareToFreeze
                        | CommandCode::Snapshot
                        | CommandCode::MountSnapshot
                ),
            },
            "a command's code matches what it is for"
        );
        let id = CmdId(self.next_id);
        self.next_id += 1;
        if self.outstanding == 0 {
            self.wd_anchor = now;
        }
        self.outstanding += 1;
        let dev = &mut self.devs[d];
        dev.counts[code as usize - 1] += 1;
        dev.outstanding += 1;
        match kind {
            None => dev.reads.push_back(ReadSlot {
                id,
                size,
                adv,
                pos,
                buf,
                result: None,
            }),
            Some(kind) => dev.others.push(Slot {
                id,
                code,
                kind,
                size,
                pos,
                buf,
            }),
        }
        if tr.on() {
            let b = buf.map(|b| format!(" buf={}", b.0)).unwrap_or_default();
            let k = kind.map(kind_name).unwrap_or("read");
            tr.emit(
                now,
                "server",
                "SendCommand",
                format!("dev={d} id={} {code} size={size} pos={pos}{b} ({k})", id.0),
                clause,
            );
        }
        out.push(ToClient::Command(Cmd {
            id,
            dev: d as DevIx,
            code,
            size,
            position: pos,
            buffer: buf,
            data,
        }));
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_plain(
        &mut self,
        now: u64,
        d: usize,
        code: CommandCode,
        kind: Kind,
        clause: Option<ClauseId>,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        self.send(
            now,
            d,
            code,
            Some(kind),
            0,
            0,
            None,
            Content::Empty,
            0,
            clause,
            out,
            tr,
        );
    }

    /// Whether the device's data stream is fully requested (extras still
    /// waiting for their trigger go out then).
    pub(super) fn stream_sent(&self, d: usize) -> bool {
        let dev = &self.devs[d];
        if self.kind.is_backup() {
            dev.issued >= dev.len
                && dev.reissue.is_empty()
                && dev.flushes_done >= self.mid_flushes
                && !dev.header_due
                && self.tape_done(d)
        } else {
            dev.issued >= dev.target || dev.ended
        }
    }

    /// Whether the device finished its data phase.
    pub(super) fn data_done(&self, d: usize) -> bool {
        let dev = &self.devs[d];
        if dev.outstanding > 0
            || !dev.extras.is_empty()
            || dev.io_error.is_some()
            || dev.load_due
            || !self.tape_done(d)
        {
            return false;
        }
        if self.kind.is_backup() {
            self.stream_sent(d) && dev.done >= dev.len
        } else {
            dev.ended || dev.done >= dev.target
        }
    }

    /// Sends at most one command on device `d`; `true` if one was sent.
    pub(super) fn try_issue(
        &mut self,
        now: u64,
        d: usize,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) -> bool {
        let qd = self.qd;
        let dev = &self.devs[d];
        if dev.state != DevState::Active
            || dev.barrier
            || dev.io_error.is_some()
            || dev.outstanding >= qd
        {
            return false;
        }
        if let Some(sent) = self.try_issue_load(now, d, out, tr) {
            return sent;
        }
        if let Some(sent) = self.try_issue_tape(now, d, out, tr) {
            return sent;
        }
        if let Some(sent) = self.try_issue_snapshot(now, d, out, tr) {
            return sent;
        }
        let dev = &self.devs[d];
        // Probes from the plan (clause command.not-supported).
        if let Some(&(after, code)) = dev.extras.first()
            && (after <= dev.data_cmds || self.stream_sent(d))
        {
            let (buf, size, data) = if code.has_buffer() {
                let Some(b) = self.alloc_buf() else {
                    return false;
                };
                let data = if code == CommandCode::Write {
                    Content::One(Extent::Garbage {
                        len: u64::from(self.block),
                    })
                } else {
                    Content::Empty
                };
                (Some(b), self.block, data)
            } else {
                (None, 0, Content::Empty)
            };
            self.devs[d].extras.remove(0);
            self.send(
                now,
                d,
                code,
                Some(Kind::Extra),
                size,
                0,
                buf,
                data,
                0,
                Some(id::COMMAND_NOT_SUPPORTED),
                out,
                tr,
            );
            return true;
        }
        if self.kind.is_backup() {
            self.try_issue_write(now, d, out, tr)
        } else {
            self.try_issue_read(now, d, out, tr)
        }
    }

    pub(super) fn try_issue_write(
        &mut self,
        now: u64,
        d: usize,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) -> bool {
        let dev = &self.devs[d];
        if let Some(&(pos, size)) = dev.reissue.front() {
            let Some(b) = self.alloc_buf() else {
                return false;
            };
            let data = self.media_content(d, pos, size);
            let dev = &mut self.devs[d];
            dev.reissue.pop_front();
            dev.data_cmds = dev.data_cmds.saturating_add(1);
            self.send(
                now,
                d,
                CommandCode::Write,
                Some(Kind::Write),
                size,
                pos,
                Some(b),
                data,
                0,
                Some(id::COMMAND_SHORT_TRANSFER),
                out,
                tr,
            );
            return true;
        }
        let m = self.mid_flushes;
        if dev.header_due && dev.issued >= dev.len && dev.flushes_done >= m && dev.outstanding == 0
        {
            // The seek back (clause disk.header-order): every data Write is
            // acknowledged; the header goes to position 0 last.
            let sent = self.issue_header_write(now, d, id::DISK_HEADER_ORDER, out, tr);
            if sent {
                self.devs[d].header_due = false;
            }
            return sent;
        }
        if dev.issued == 0 {
            if self.disk() && self.profile.disk_header_order == DiskHeaderOrder::Last {
                ev!(
                    tr,
                    now,
                    "HeaderDeferred",
                    Some(id::DISK_HEADER_ORDER),
                    "dev={d} disk-header-order=last: the data from position {HEADER_BYTES} first, the media header at 0 last"
                );
                let dev = &mut self.devs[d];
                dev.header_due = true;
                dev.issued = HEADER_BYTES;
                return self.try_issue_write(now, d, out, tr);
            }
            let sent = self.issue_header_write(now, d, id::MEDIA_HEADER, out, tr);
            if sent {
                self.devs[d].issued = HEADER_BYTES;
            }
            return sent;
        }
        let dev = &self.devs[d];
        let mut limit = dev.len;
        if dev.flushes_done < m {
            // Evenly spaced over the data, after the header.
            let data = dev.len.saturating_sub(HEADER_BYTES);
            let p = HEADER_BYTES + flush_point(data, m, dev.flushes_done + 1, self.block);
            if dev.issued >= p {
                if dev.outstanding > 0 {
                    return false;
                }
                self.devs[d].barrier = true;
                self.send_plain(
                    now,
                    d,
                    CommandCode::Flush,
                    Kind::MidFlush,
                    Some(id::FLUSH_SEVERAL),
                    out,
                    tr,
                );
                return true;
            }
            limit = p;
        }
        if dev.issued >= limit {
            return false;
        }
        let size = (limit - dev.issued).min(u64::from(self.mts)) as u32;
        let Some(b) = self.alloc_buf() else {
            return false;
        };
        let dev = &mut self.devs[d];
        let pos = dev.issued;
        dev.issued += u64::from(size);
        dev.data_cmds = dev.data_cmds.saturating_add(1);
        let data = Content::stream(dev.origin, pos, u64::from(size));
        self.send(
            now,
            d,
            CommandCode::Write,
            Some(Kind::Write),
            size,
            pos,
            Some(b),
            data,
            0,
            Some(id::STRIPE_DISTRIBUTION),
            out,
            tr,
        );
        true
    }

    /// The write of the family's media header at position 0, one whole
    /// transfer: the first write on each device (clause `media.header`), or
    /// the last under `disk-header-order = last`. The caller moves the
    /// request cursor.
    fn issue_header_write(
        &mut self,
        now: u64,
        d: usize,
        clause: ClauseId,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) -> bool {
        let Some(b) = self.alloc_buf() else {
            return false;
        };
        let size = HEADER_BYTES as u32;
        let data = self.media_content(d, 0, size);
        let dev = &mut self.devs[d];
        dev.data_cmds = dev.data_cmds.saturating_add(1);
        self.send(
            now,
            d,
            CommandCode::Write,
            Some(Kind::Write),
            size,
            0,
            Some(b),
            data,
            0,
            Some(clause),
            out,
            tr,
        );
        true
    }

    /// Bytes `pos..pos+size` of device `d`'s family media (a BACKUP).
    fn media_content(&self, d: usize, pos: u64, size: u32) -> Content {
        if pos >= HEADER_BYTES {
            return Content::stream(self.devs[d].origin, pos, u64::from(size));
        }
        match &self.record {
            Some(rec) => rec.family_media(d).slice(pos, u64::from(size)),
            None => Content::Empty,
        }
    }

    pub(super) fn try_issue_read(
        &mut self,
        now: u64,
        d: usize,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) -> bool {
        let dev = &self.devs[d];
        if dev.ended || dev.issued >= dev.target {
            return false;
        }
        // Until the media are known, the one read is the header's.
        let size = if self.record.is_none() {
            self.header_read_bytes() as u32
        } else {
            read_size(&self.read_sizes, self.block, self.mts, d, dev.read_ix)
        };
        let remaining = dev.target - dev.issued;
        let adv = u64::from(size).min(remaining);
        // On tape the data set ends at a filemark, not at EOF: no over-read.
        let overread = self.profile.restore_overread && dev.target == dev.len && !self.tape();
        let req = if adv < u64::from(size) && !overread {
            adv as u32
        } else {
            size
        };
        let Some(b) = self.alloc_buf() else {
            return false;
        };
        let dev = &mut self.devs[d];
        let pos = dev.issued;
        dev.issued += adv;
        dev.read_ix += 1;
        dev.data_cmds = dev.data_cmds.saturating_add(1);
        let clause = if pos < HEADER_BYTES {
            Some(id::MEDIA_HEADER)
        } else if req as u64 > adv {
            Some(id::RESTORE_EOF)
        } else {
            Some(id::RESTORE_READ_SIZES)
        };
        self.send(
            now,
            d,
            CommandCode::Read,
            None,
            req,
            pos,
            Some(b),
            Content::Empty,
            adv,
            clause,
            out,
            tr,
        );
        true
    }

    /// Sends what can be sent, round-robin over the devices so they share
    /// the buffer pool fairly (clause `stripe.shared-buffers`).
    pub(super) fn pump(&mut self, now: u64, out: &mut Vec<ToClient>, tr: &mut Trace) {
        let n = self.devs.len();
        if n == 0 {
            return;
        }
        loop {
            self.buf_starved = false;
            let mut progress = false;
            for k in 0..n {
                let d = (self.rr + k) % n;
                if self.try_issue(now, d, out, tr) {
                    progress = true;
                }
            }
            self.rr = (self.rr + 1) % n;
            if !progress {
                break;
            }
        }
    }

    /// After one device's completion: refill that device; refill everyone if
    /// a device was waiting for a buffer.
    pub(super) fn pump_after(
        &mut self,
        now: u64,
        d: usize,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        if self.buf_starved {
            self.pump(now, out, tr);
            return;
        }
        while self.try_issue(now, d, out, tr) {}
        if self.buf_starved {
            self.pump(now, out, tr);
        }
    }

    /// Moves the statement on: sends what can be sent, changes phase, ends it.
    pub(super) fn advance(&mut self, now: u64, out: &mut Vec<ToClient>, tr: &mut Trace) {
        self.advance_from(now, None, out, tr);
    }

    pub(super) fn advance_from(
        &mut self,
        now: u64,
        from: Option<usize>,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        if !self.running {
            return;
        }
        if self.term != Term::None {
            self.try_close_after_failure(now, out, tr);
            return;
        }
        match self.phase {
            Phase::Data => {
                match from {
                    Some(d) => self.pump_after(now, d, out, tr),
                    None => self.pump(now, out, tr),
                }
                if !self.running || self.term != Term::None {
                    return;
                }
                if !(0..self.devs.len()).all(|d| self.data_done(d)) {
                    return;
                }
                if self.snapshot && self.snapshot_step(now, out, tr) {
                    return;
                }
                if !self.kind.is_backup() {
                    self.finish_or_rewind(now, out, tr);
                    return;
                }
                if self.snapshot {
                    // The metadata stream ended at VDC_Snapshot: no Flush
                    // (clause snapshot.sequence).
                    self.finish_success(now, out, tr);
                    return;
                }
                debug_assert_eq!(
                    self.outstanding, 0,
                    "the final Flush waits for every data command"
                );
                self.phase = Phase::FinalFlush;
                ev!(
                    tr,
                    now,
                    "FinalFlush",
                    Some(id::TERM_BACKUP_SEQUENCE),
                    "every family written: final VDC_Flush on {} devices",
                    self.devs.len()
                );
                for d in 0..self.devs.len() {
                    self.devs[d].stage_done = false;
                    self.devs[d].barrier = true;
                    self.send_plain(
                        now,
                        d,
                        CommandCode::Flush,
                        Kind::FinalFlush,
                        Some(id::TERM_BACKUP_SEQUENCE),
                        out,
                        tr,
                    );
                }
                if self.devs.is_empty() {
                    self.finish_success(now, out, tr);
                }
            }
            Phase::FinalFlush => {
                if !self.devs.iter().all(|d| d.stage_done) {
                    return;
                }
                if self.complete_enabled {
                    debug_assert_eq!(
                        self.outstanding, 0,
                        "VDC_Complete waits for every final Flush"
                    );
                    self.phase = Phase::Complete;
                    for d in 0..self.devs.len() {
                        self.devs[d].stage_done = false;
                        self.devs[d].barrier = true;
                        self.send_plain(
                            now,
                            d,
                            CommandCode::Complete,
                            Kind::Complete,
                            Some(id::COMPLETE_NEGOTIATION),
                            out,
                            tr,
                        );
                    }
                } else {
                    ev!(
                        tr,
                        now,
                        "CompleteSkipped",
                        Some(id::COMPLETE_NEVER_UNREQUESTED),
                        "VDF_CompleteEnabled was not returned: no VDC_Complete"
                    );
                    self.finish_or_rewind(now, out, tr);
                }
            }
            Phase::Complete => {
                if self.devs.iter().all(|d| d.stage_done) {
                    self.finish_or_rewind(now, out, tr);
                }
            }
            Phase::Rewind => {
                if self.devs.iter().all(|d| d.stage_done) {
                    self.finish_success(now, out, tr);
                }
            }
        }
    }
}
