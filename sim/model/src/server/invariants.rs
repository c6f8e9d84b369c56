//! The server half's state invariants: what holds between any two public
//! transitions of [`ServerHalf`], checked before and after each of them in
//! debug builds. The checks only read state; with `debug_assertions` off
//! they compile to nothing.

use super::*;
use std::collections::BTreeSet;

impl ServerHalf {
    /// Runs `f`, a public transition at virtual time `now`, between two
    /// checks of the invariants; also checks that command ids and msdb
    /// history only grow (debug builds only).
    #[inline(always)]
    pub(super) fn transition<R>(&mut self, now: u64, f: impl FnOnce(&mut Self) -> R) -> R {
        self.check_invariants(now);
        let (next_id, history) = (self.next_id, self.history.len());
        let r = f(self);
        debug_assert!(self.next_id >= next_id, "command ids only grow");
        debug_assert!(self.history.len() >= history, "msdb history only grows");
        self.check_invariants(now);
        r
    }

    /// Asserts the invariants of the server half at virtual time `now`.
    #[inline(always)]
    pub(super) fn check_invariants(&self, now: u64) {
        if !cfg!(debug_assertions) {
            return;
        }
        self.check_statement(now);
        self.check_watchdog(now);
        self.check_counts();
        self.check_buffers();
        for (d, dev) in self.devs.iter().enumerate() {
            self.check_device(d, dev);
        }
    }

    /// The statement: running, outcome, set state, failure and termination.
    fn check_statement(&self, now: u64) {
        let status = self.outcome.status;
        debug_assert!(!self.dead || !self.running, "a dead server runs nothing");
        debug_assert!(
            !self.running || status == Status::Running,
            "a running statement's outcome is Running"
        );
        debug_assert!(
            status != Status::Running || self.running,
            "an outcome is Running only while its statement runs"
        );
        debug_assert!(
            !self.running || self.state == ServerState::Active,
            "between transitions a running statement's set is Active"
        );
        debug_assert!(
            !self.running || self.started <= now,
            "a statement starts no later than now"
        );
        debug_assert!(
            self.running || self.outstanding == 0,
            "an ended statement has no command outstanding"
        );
        debug_assert!(
            self.running || self.term == Term::None,
            "an ended statement is not being terminated"
        );
        debug_assert!(
            self.running || self.failure.is_none(),
            "an ended statement has no pending failure"
        );
        debug_assert!(
            self.term == Term::None || self.failure.is_some(),
            "an error termination has a failure to report"
        );
        debug_assert!(
            self.failure.is_none() || self.term != Term::None,
            "a pending failure is being terminated"
        );
        debug_assert!(
            !self.abort_sent || self.state == ServerState::AbnormallyTerminated,
            "after SignalAbort the set is AbnormallyTerminated"
        );
        debug_assert!(
            self.state != ServerState::AbnormallyTerminated || !self.running,
            "an AbnormallyTerminated set runs no statement"
        );
        if matches!(status, Status::Succeeded | Status::Failed) {
            debug_assert!(
                self.outcome.ended_ms.is_some(),
                "a final outcome has an end time"
            );
            debug_assert!(
                (status == Status::Failed) == self.outcome.reason.is_some(),
                "a final outcome has a failure reason exactly when it failed"
            );
        }
        let all = |s: &[DevState]| self.devs.iter().all(|d| s.contains(&d.state));
        debug_assert!(
            status != Status::Succeeded || all(&[DevState::Closed]),
            "a statement succeeds with every device closed"
        );
        debug_assert!(
            status != Status::Failed || all(&[DevState::Closed, DevState::Aborted]),
            "a failed statement leaves every device closed or aborted"
        );
        let any_aborted = self.devs.iter().any(|d| d.state == DevState::Aborted);
        debug_assert!(
            !any_aborted || self.state == ServerState::AbnormallyTerminated,
            "a device is Aborted only in an AbnormallyTerminated set"
        );
        debug_assert!(
            matches!(self.phase, Phase::Data | Phase::Rewind) || self.kind.is_backup(),
            "only a BACKUP has final Flush and Complete phases"
        );
        debug_assert!(
            self.phase != Phase::Rewind || (self.tape() && self.end_rewind),
            "the end rewind is for tape devices whose statement rewinds"
        );
        debug_assert!(
            self.phase != Phase::Complete || self.complete_enabled,
            "the VDC_Complete phase needs VDF_CompleteEnabled"
        );
        debug_assert!(
            !self.complete_enabled || self.features.contains(Features::CompleteEnabled),
            "VDC_Complete is enabled only if VDF_CompleteEnabled was returned"
        );
        debug_assert!(
            !self.complete_enabled || self.profile.server_supports_complete,
            "VDC_Complete is enabled only under server-supports-complete"
        );
    }

    /// The watchdog: armed only while running, anchored in the past.
    fn check_watchdog(&self, now: u64) {
        debug_assert!(
            self.wd_period == 0 || self.profile.watchdog_factor > 0,
            "watchdog-factor 0 disables the watchdog"
        );
        let deadline = self.next_deadline();
        debug_assert!(
            deadline.is_none() || self.running,
            "a watchdog deadline only while a statement runs"
        );
        debug_assert!(
            deadline.is_none() || self.outstanding > 0,
            "a watchdog deadline only while commands are outstanding"
        );
        debug_assert!(
            deadline.is_none() || self.wd_anchor <= now,
            "the watchdog is anchored no later than now"
        );
    }

    /// Counts against their limits: devices, queue depth, outstanding
    /// commands, bytes and command ids.
    fn check_counts(&self) {
        debug_assert!(
            self.devs.len() <= limits::DEVICE_COUNT_MAX as usize,
            "at most DEVICE_COUNT_MAX devices"
        );
        debug_assert!(self.qd >= 1, "queue depth is at least 1");
        let per_device: u64 = self.devs.iter().map(|d| u64::from(d.outstanding)).sum();
        debug_assert_eq!(
            u64::from(self.outstanding),
            per_device,
            "the set's outstanding count is the sum of its devices'"
        );
        let bytes: u64 = self.devs.iter().map(|d| d.bytes).sum();
        debug_assert_eq!(
            self.outcome.bytes, bytes,
            "the outcome's bytes are the sum of the devices'"
        );
        let ids_below_next = self.devs.iter().all(|d| {
            d.reads.iter().all(|r| r.id.0 < self.next_id)
                && d.others.iter().all(|s| s.id.0 < self.next_id)
        });
        debug_assert!(ids_below_next, "every command id was handed out");
    }

    /// The buffer pool: every buffer handed out is either free or owned by
    /// exactly one outstanding command.
    fn check_buffers(&self) {
        debug_assert!(
            self.buf_next <= self.buf_total,
            "no more buffers handed out than BUFFERCOUNT"
        );
        let free: BTreeSet<BufId> = self.buf_free.iter().copied().collect();
        debug_assert_eq!(
            free.len(),
            self.buf_free.len(),
            "a buffer is free at most once"
        );
        debug_assert!(
            free.iter().all(|b| b.0 < self.buf_next),
            "a free buffer was handed out before"
        );
        let mut held = BTreeSet::new();
        let mut owned_once = true;
        for d in &self.devs {
            let bufs = d.reads.iter().filter_map(|r| r.buf);
            for b in bufs.chain(d.others.iter().filter_map(|s| s.buf)) {
                owned_once &= held.insert(b);
            }
        }
        debug_assert!(owned_once, "a buffer is owned by at most one command");
        debug_assert!(
            held.is_disjoint(&free),
            "a buffer owned by a command is not free"
        );
        debug_assert!(
            held.iter().all(|b| b.0 < self.buf_next),
            "an owned buffer was handed out before"
        );
        debug_assert_eq!(
            held.len() + free.len(),
            self.buf_next as usize,
            "every buffer handed out is owned or free"
        );
    }

    /// One device: state against IO-ERROR, outstanding commands against the
    /// queue depth and the barrier and ClearError flags, stream cursors.
    fn check_device(&self, d: usize, dev: &Dev) {
        debug_assert!(
            dev.state != DevState::Active || dev.io_error.is_none(),
            "dev={d}: an Active device is not in IO-ERROR"
        );
        debug_assert!(
            dev.state != DevState::IoError || dev.io_error.is_some(),
            "dev={d}: an IoError device has an IO-ERROR"
        );
        let pending = dev.reads.iter().filter(|r| r.result.is_none()).count();
        debug_assert_eq!(
            dev.outstanding as usize,
            pending + dev.others.len(),
            "dev={d}: outstanding counts pending reads and other commands"
        );
        let clears = dev.count_kind(|k| k == Kind::ClearError);
        debug_assert!(clears <= 1, "dev={d}: at most one ClearError outstanding");
        debug_assert_eq!(
            clears == 1,
            dev.clearing,
            "dev={d}: `clearing` exactly while a ClearError is outstanding"
        );
        let barriers = dev.count_kind(|k| {
            matches!(
                k,
                Kind::MidFlush
                    | Kind::FinalFlush
                    | Kind::Complete
                    | Kind::Tape
                    | Kind::EndRewind
                    | Kind::Snapshot
                    | Kind::Load
            )
        });
        debug_assert!(barriers <= 1, "dev={d}: at most one barrier outstanding");
        debug_assert_eq!(
            dev.barrier,
            barriers == 1,
            "dev={d}: `barrier` exactly while a Flush, Complete or tape command is outstanding"
        );
        debug_assert!(
            dev.outstanding.saturating_sub(u32::from(dev.clearing)) <= self.qd,
            "dev={d}: commands in flight within queue-depth-per-device (ClearError aside)"
        );
        debug_assert!(
            dev.reads
                .iter()
                .zip(dev.reads.iter().skip(1))
                .all(|(a, b)| a.id < b.id),
            "dev={d}: reads are kept in issue order"
        );
        debug_assert!(
            dev.reads
                .iter()
                .all(|r| r.result.is_none() || r.buf.is_none()),
            "dev={d}: a completed read no longer owns its buffer"
        );
        debug_assert!(
            dev.extras.windows(2).all(|w| w[0].0 <= w[1].0),
            "dev={d}: probes wait in trigger order"
        );
        debug_assert!(
            dev.errors.len() as u64 == dev.errors_total.min(MAX_ERRORS_KEPT as u64),
            "dev={d}: the first MAX_ERRORS_KEPT errors are kept"
        );
        debug_assert!(
            !dev.stage_done || self.phase != Phase::Data,
            "dev={d}: no stage is acknowledged in the data phase"
        );
        self.check_stream(d, dev);
    }

    /// One device's stream: what it may hold for the statement's kind, and
    /// its cursors within the family.
    fn check_stream(&self, d: usize, dev: &Dev) {
        debug_assert_eq!(
            dev.bytes + dev.skipped,
            dev.done,
            "dev={d}: bytes counts what is done, but what was skipped"
        );
        debug_assert!(dev.done <= dev.len, "dev={d}: no more done than the family");
        debug_assert!(
            dev.target <= dev.len,
            "dev={d}: the read target is within the family"
        );
        debug_assert!(
            dev.flushes_done <= self.mid_flushes,
            "dev={d}: no more mid-stream Flushes than planned"
        );
        if self.kind.is_backup() {
            debug_assert!(dev.reads.is_empty(), "dev={d}: a BACKUP sends no Read");
            debug_assert!(!dev.ended, "dev={d}: a BACKUP's stream has no read end");
            debug_assert!(
                dev.issued <= dev.len,
                "dev={d}: writes stay within the family"
            );
            debug_assert!(
                dev.reissue
                    .iter()
                    .all(|&(pos, size)| pos + u64::from(size) <= dev.issued),
                "dev={d}: a reissue rewrites bytes already requested"
            );
        } else {
            debug_assert!(
                dev.reissue.is_empty(),
                "dev={d}: a RESTORE reissues no Write"
            );
            debug_assert!(
                dev.issued <= dev.target,
                "dev={d}: reads stay within the read target"
            );
            let stream_slot = dev.count_kind(|k| {
                matches!(
                    k,
                    Kind::Write | Kind::MidFlush | Kind::FinalFlush | Kind::Complete
                )
            });
            debug_assert_eq!(
                stream_slot, 0,
                "dev={d}: a RESTORE sends no Write, Flush or Complete"
            );
        }
    }
}

impl Dev {
    /// Outstanding commands other than stream Reads whose kind matches.
    fn count_kind(&self, f: impl Fn(Kind) -> bool) -> usize {
        self.others.iter().filter(|s| f(s.kind)).count()
    }
}
