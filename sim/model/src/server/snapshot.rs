//! Snapshot backups (`WITH SNAPSHOT` / `METADATA_ONLY`, vdi-spec.md
//! §5.13–§5.15): the freeze, VDC_PrepareToFreeze, VDC_Snapshot and
//! VDC_MountSnapshot on the statement's one device.
//!
//! A BACKUP writes the media header; then, with VDF_SnapshotPrepare,
//! VDC_PrepareToFreeze, whose acknowledgement freezes the database (clause
//! `snapshot.prepare-to-freeze`), else the freeze begins at once; the data
//! that follows is the metadata of the frozen state; once it is
//! acknowledged VDC_Snapshot goes out, and the freeze ends when the client
//! completes it (clauses `snapshot.sequence`, `snapshot.freeze-time`): the
//! freeze time is traced (`Thaw frozen_ms=`) and the outcome carries
//! Msg 3197 (frozen) and Msg 3198 (resumed, with the time — the model's
//! addition to SQL Server's text). No Flush follows: the devices close.
//! VDC_Snapshot answered with an error ends the freeze and fails the BACKUP
//! (clause `snapshot.abort`); under `snapshot-freeze-timeout-ms` a freeze
//! that lasts too long is ended by the server aborting the set (clause
//! `snapshot.freeze-timeout`). A RESTORE reads the metadata, then sends
//! VDC_MountSnapshot (clause `snapshot.mount`).

use super::*;
use crate::media::HEADER_BYTES;

/// Where a snapshot statement stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Freeze {
    /// Not frozen yet (or not a snapshot statement).
    Idle,
    /// VDC_PrepareToFreeze is outstanding.
    Preparing,
    /// Writes are suspended since `since`.
    Frozen { since: u64 },
    /// VDC_Snapshot is outstanding; frozen since `since`.
    Snapshotting { since: u64 },
    /// The freeze ended (the snapshot was taken, refused or timed out).
    Thawed,
    /// RESTORE: VDC_MountSnapshot is outstanding.
    Mounting,
    /// RESTORE: the files are in place.
    Mounted,
}

impl ServerHalf {
    /// The freeze time of the last snapshot BACKUP, in ms (clause
    /// `snapshot.freeze-time`).
    pub fn freeze_ms(&self) -> Option<u64> {
        self.freeze_ms
    }

    /// When a freeze must end under `snapshot-freeze-timeout-ms`.
    pub(super) fn freeze_deadline(&self) -> Option<u64> {
        let limit = self.profile.snapshot_freeze_timeout_ms;
        match self.freeze {
            Freeze::Frozen { since } | Freeze::Snapshotting { since }
                if self.running && limit > 0 && self.term == Term::None =>
            {
                Some(since.saturating_add(limit))
            }
            _ => None,
        }
    }

    /// Before device `d`'s data on a snapshot BACKUP: VDC_PrepareToFreeze
    /// or the freeze, once the header is acknowledged. `Some(sent)` holds
    /// the data back; `None` lets it go.
    pub(super) fn try_issue_snapshot(
        &mut self,
        now: u64,
        d: usize,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) -> Option<bool> {
        if !self.snapshot || !self.kind.is_backup() {
            return None;
        }
        match self.freeze {
            Freeze::Idle if self.devs[d].issued < HEADER_BYTES => None,
            Freeze::Idle if self.devs[d].outstanding > 0 => Some(false),
            Freeze::Idle if self.features.contains(Features::SnapshotPrepare) => {
                self.freeze = Freeze::Preparing;
                self.send_snapshot_command(now, d, CommandCode::PrepareToFreeze, out, tr);
                Some(true)
            }
            Freeze::Idle => {
                self.freeze_start(now, tr);
                None
            }
            Freeze::Preparing => Some(false),
            _ => None,
        }
    }

    fn send_snapshot_command(
        &mut self,
        now: u64,
        d: usize,
        code: CommandCode,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        let clause = match code {
            CommandCode::PrepareToFreeze => id::SNAPSHOT_PREPARE_TO_FREEZE,
            CommandCode::MountSnapshot => id::SNAPSHOT_MOUNT,
            _ => id::SNAPSHOT_SEQUENCE,
        };
        self.devs[d].barrier = true;
        self.send_plain(now, d, code, Kind::Snapshot, Some(clause), out, tr);
    }

    fn freeze_start(&mut self, now: u64, tr: &mut Trace) {
        self.freeze = Freeze::Frozen { since: now };
        self.snap_msgs.push(SqlMessage::info(
            3197,
            format!(
                "I/O is frozen on database {}. No user action is required. However, if I/O is not resumed promptly, you could cancel the backup.",
                self.database
            ),
        ));
        ev!(
            tr,
            now,
            "Freeze",
            Some(id::SNAPSHOT_FREEZE_TIME),
            "writes to database {} suspended",
            self.database
        );
    }

    /// Ends the freeze (if one is on) and records its time.
    fn thaw(&mut self, now: u64, why: &str, tr: &mut Trace) {
        let (Freeze::Frozen { since } | Freeze::Snapshotting { since }) = self.freeze else {
            return;
        };
        let ms = now.saturating_sub(since);
        self.freeze = Freeze::Thawed;
        self.freeze_ms = Some(ms);
        self.snap_msgs.push(SqlMessage::info(
            3198,
            format!(
                "I/O was resumed on database {}. No user action is required. (Frozen for {ms} ms.)",
                self.database
            ),
        ));
        ev!(
            tr,
            now,
            "Thaw",
            Some(id::SNAPSHOT_FREEZE_TIME),
            "frozen_ms={ms} ({why}): writes to database {} resume",
            self.database
        );
    }

    /// Once every device's data is done: VDC_Snapshot (BACKUP) or
    /// VDC_MountSnapshot (RESTORE) on device 0. `true` while the statement
    /// waits for it.
    pub(super) fn snapshot_step(
        &mut self,
        now: u64,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) -> bool {
        match self.freeze {
            Freeze::Frozen { since } => {
                self.freeze = Freeze::Snapshotting { since };
                self.send_snapshot_command(now, 0, CommandCode::Snapshot, out, tr);
                true
            }
            Freeze::Idle if !self.kind.is_backup() => {
                self.freeze = Freeze::Mounting;
                self.send_snapshot_command(now, 0, CommandCode::MountSnapshot, out, tr);
                true
            }
            Freeze::Thawed | Freeze::Mounted => false,
            _ => true,
        }
    }

    /// A snapshot command answered.
    pub(super) fn on_snapshot_done(
        &mut self,
        now: u64,
        d: usize,
        slot: &Slot,
        c: &Completion,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        self.devs[d].barrier = false;
        let ok = c.code == Win32::ERROR_SUCCESS;
        match slot.code {
            CommandCode::PrepareToFreeze if ok => self.freeze_start(now, tr),
            CommandCode::Snapshot => {
                self.thaw(
                    now,
                    if ok {
                        "snapshot taken"
                    } else {
                        "snapshot refused"
                    },
                    tr,
                );
                if !ok {
                    ev!(
                        tr,
                        now,
                        "SnapshotAborted",
                        Some(id::SNAPSHOT_ABORT),
                        "dev={d} VDC_Snapshot -> {}: the BACKUP fails",
                        c.code
                    );
                }
            }
            CommandCode::MountSnapshot if ok => {
                self.freeze = Freeze::Mounted;
                ev!(
                    tr,
                    now,
                    "Mounted",
                    Some(id::SNAPSHOT_MOUNT),
                    "dev={d} the snapshot's files are in place: no data laydown"
                );
            }
            _ => {}
        }
        if !ok {
            let reason = if c.code == Win32::ERROR_OPERATION_ABORTED {
                FailReason::ClientAbort
            } else {
                FailReason::DeviceError
            };
            let name = self.devs[d].name.clone();
            let m = messages::vdi_failure(
                "BackupVirtualDeviceSet::SnapshotDevice",
                slot.code.name(),
                &name,
                c.code,
            );
            self.device_error(now, d, c.code, reason, m, out, tr);
        }
    }

    /// Under `snapshot-freeze-timeout-ms`: a freeze past its limit ends;
    /// the server aborts the set and the BACKUP fails.
    pub(super) fn freeze_timeout(&mut self, now: u64, out: &mut Vec<ToClient>, tr: &mut Trace) {
        let Some(dl) = self.freeze_deadline() else {
            return;
        };
        if now < dl {
            return;
        }
        let limit = self.profile.snapshot_freeze_timeout_ms;
        ev!(
            tr,
            now,
            "FreezeTimeout",
            Some(id::SNAPSHOT_FREEZE_TIMEOUT),
            "database {} frozen for {limit} ms, the limit: SignalAbort",
            self.database
        );
        self.thaw(now, "freeze timeout", tr);
        if self.failure.is_none() {
            self.failure = Some(Failure {
                reason: FailReason::ServerAbort,
                msgs: vec![messages::aborted()],
                code: Win32::ERROR_OPERATION_ABORTED,
                dev: None,
            });
        }
        self.server_abort(
            now,
            FailReason::ServerAbort,
            Some(id::SNAPSHOT_FREEZE_TIMEOUT),
            out,
            tr,
        );
    }
}
