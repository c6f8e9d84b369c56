//! Removable media (VDF_Removable on a pipe-like device): a family that
//! spans several volumes (clause `media.next-volume`; vdi-spec.md §5.1,
//! §5.2, §5.8).
//!
//! BACKUP: a Write answered ERROR_END_OF_MEDIA is the end of a volume. The
//! bytes it reports are stored; the client half is in IO-ERROR (its queued
//! commands come back auto-completed and are written again); the server
//! clears the error with VDC_ClearError, asks for the next medium with
//! VDC_Load, then writes the Write's remainder and everything after it on
//! the new volume. RESTORE: a Read answered ERROR_HANDLE_EOF (or
//! ERROR_NO_DATA_DETECTED) before the family's end is the end of a volume:
//! once nothing is outstanding the server sends VDC_Load and reads on from
//! the first byte not yet read. Either way a VDC_Load answered with an
//! error fails the statement, and so does a next volume that takes or
//! holds nothing (ERROR_END_OF_MEDIA, or EOF, with no byte acknowledged
//! since the Load; a RESTORE's is a truncated family): another VDC_Load
//! would follow for ever. Non-removable devices
//! keep their rule: end of media fails the BACKUP (clause
//! `io-error.end-of-media`), EOF before
//! the end is a truncated family (clause `restore.truncated`).
//!
//! Tape-like devices (VDF_LikeTape includes VDF_Removable) change volumes
//! the same way (clause `tape.next-volume`): the order ClearError, Load,
//! then the rest of the data is the model's, since the reference gives no
//! tape-specific one. The new volume gets no media header of its own and
//! no positioning commands: the data goes on at its first block, the
//! filemark closing the data set is written on the last volume, and a
//! RESTORE reads each volume to its end (ERROR_NO_DATA_DETECTED, no
//! filemark there) before VDC_Load.

use super::*;
use vdi_spec::DeviceMode;

impl ServerHalf {
    /// Whether the set's devices are removable pipes or tapes, whose
    /// families may span volumes.
    pub(super) fn removable(&self) -> bool {
        matches!(
            self.features.mode(),
            Some(DeviceMode::PipeRemovable | DeviceMode::Tape)
        )
    }

    /// The clause a volume change cites: `tape.next-volume` on tape-like
    /// devices, `media.next-volume` on removable pipes.
    fn volume_clause(&self) -> ClauseId {
        if self.tape() {
            id::TAPE_NEXT_VOLUME
        } else {
            id::MEDIA_NEXT_VOLUME
        }
    }

    /// A Write answered ERROR_END_OF_MEDIA on a removable device: keep what
    /// it stored, clear the error, then VDC_Load and write the rest.
    pub(super) fn on_end_of_media(
        &mut self,
        now: u64,
        d: usize,
        slot: &Slot,
        c: &Completion,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        let clause = self.volume_clause();
        let bytes = c.bytes.min(u64::from(slot.size));
        if bytes == 0 && self.devs[d].volume_from == Some(self.devs[d].done) {
            // A volume just loaded took nothing: asking for another would
            // go on for ever.
            ev!(
                tr,
                now,
                "EmptyVolume",
                Some(clause),
                "dev={d} id={}: the volume loaded at stream offset {} took nothing",
                c.id.0,
                self.devs[d].done
            );
            let name = self.devs[d].name.clone();
            let m = messages::vdi_failure("BackupVirtualDeviceFile::Write", "Write", &name, c.code);
            self.device_error(now, d, c.code, FailReason::DeviceError, m, out, tr);
            return;
        }
        let dev = &mut self.devs[d];
        dev.done += bytes;
        dev.bytes += bytes;
        self.outcome.bytes += bytes;
        if bytes < u64::from(slot.size) {
            dev.reissue
                .push_back((slot.pos + bytes, slot.size - bytes as u32));
        }
        ev!(
            tr,
            now,
            "EndOfMedia",
            Some(clause),
            "dev={d} id={} stored {bytes} of {} at {}: the volume is full; VDC_ClearError, then VDC_Load",
            c.id.0,
            slot.size,
            slot.pos
        );
        if self.devs[d].io_error.is_none() {
            self.enter_io_error(now, d, c.code, IoErr::Volume, None, tr);
            self.send_clear_error(now, d, out, tr);
        }
    }

    /// RESTORE: a read met the end of a volume before the family's end;
    /// `true` if the device is removable and goes on on the next volume.
    pub(super) fn volume_end(&mut self, now: u64, d: usize, code: Win32, tr: &mut Trace) -> bool {
        let clause = self.volume_clause();
        if !self.removable() || self.devs[d].volume_from == Some(self.devs[d].done) {
            // Not removable, or the volume just loaded held nothing: a
            // truncated family (another VDC_Load would follow for ever).
            return false;
        }
        let dev = &mut self.devs[d];
        dev.load_due = true;
        dev.issued = dev.done;
        ev!(
            tr,
            now,
            "EndOfVolume",
            Some(clause),
            "dev={d} {code} at {} of {}: VDC_Load, then reads on",
            dev.done,
            dev.len
        );
        true
    }

    /// Sends VDC_Load on device `d` when it is due and nothing else is
    /// outstanding there: `Some(sent)`; `None` when no Load is due.
    pub(super) fn try_issue_load(
        &mut self,
        now: u64,
        d: usize,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) -> Option<bool> {
        let clause = self.volume_clause();
        let dev = &self.devs[d];
        if !dev.load_due {
            return None;
        }
        if dev.outstanding > 0 {
            return Some(false);
        }
        self.devs[d].barrier = true;
        self.send_plain(now, d, CommandCode::Load, Kind::Load, Some(clause), out, tr);
        Some(true)
    }

    /// VDC_Load answered: the next volume is in (the stream goes on), or
    /// the statement fails.
    pub(super) fn on_load_done(
        &mut self,
        now: u64,
        d: usize,
        c: &Completion,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        let clause = self.volume_clause();
        let dev = &mut self.devs[d];
        dev.barrier = false;
        if c.code != Win32::ERROR_SUCCESS {
            let name = dev.name.clone();
            let m = messages::vdi_failure("BackupVirtualDeviceFile::Load", "Load", &name, c.code);
            self.device_error(now, d, c.code, FailReason::DeviceError, m, out, tr);
            return;
        }
        dev.load_due = false;
        dev.volume_from = Some(dev.done);
        ev!(
            tr,
            now,
            "NextVolume",
            Some(clause),
            "dev={d} the next volume is loaded at stream offset {}",
            dev.done
        );
    }
}
