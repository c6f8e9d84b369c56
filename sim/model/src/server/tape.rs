//! Tape-like devices (VDF_LikeTape): the positioning commands around each
//! family's stream (clause `tape.sequence`) and the rewind at the end
//! (clause `tape.end-rewind`).
//!
//! The reference gives only the command set ("positioning
//! (GetPosition/SetPosition/Rewind/SkipMarks/SkipBlocks), WriteMark between
//! MTF sets, Load for media change", vdi-spec.md §5.19); the order is the
//! model's:
//! - BACKUP, per device: VDC_Rewind, VDC_GetPosition (the client must
//!   report block address 0, clause `tape.position`), the media header, a
//!   VDC_WriteMark, the data (mid-stream Flushes as on any device), a
//!   VDC_WriteMark closing the data set, then the final Flush (and
//!   VDC_Complete);
//! - RESTORE, per device: VDC_Rewind, VDC_GetPosition, the header read, a
//!   VDC_SkipMarks of 1 (past the mark after the header, clause
//!   `tape.filemarks`), the data reads;
//! - at the end of a statement that succeeded: VDC_Rewind on every device
//!   unless a BACKUP says NOREWIND or a RESTORE says NOUNLOAD.
//!
//! Each positioning command is a barrier on its device (nothing else is
//! outstanding there); any answer but ERROR_SUCCESS fails the statement
//! (Msg 18210), as a Flush's does.

use super::*;
use crate::media::HEADER_BYTES;
use vdi_spec::DeviceMode;

/// Where a tape-like device stands in its positioning sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TapeStep {
    /// Not a tape, or a device with nothing to read.
    Off,
    Rewind,
    Position,
    /// The media header is being written or read.
    Header,
    /// The data stream.
    Data,
    /// Nothing more before the final Flush.
    Done,
}

impl ServerHalf {
    /// Whether the set's devices are tape-like (VDF_LikeTape).
    pub(super) fn tape(&self) -> bool {
        self.features.mode() == Some(DeviceMode::Tape)
    }

    /// The first step of a new device's sequence: a tape device that reads
    /// or writes anything starts with VDC_Rewind.
    pub(super) fn first_tape_step(&self, reads_or_writes: bool) -> TapeStep {
        if self.tape() && reads_or_writes {
            TapeStep::Rewind
        } else {
            TapeStep::Off
        }
    }

    /// Sends device `d`'s next positioning command if its sequence is at
    /// one: `Some(sent)`; `None` lets the data stream go on.
    pub(super) fn try_issue_tape(
        &mut self,
        now: u64,
        d: usize,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) -> Option<bool> {
        let dev = &self.devs[d];
        let (code, size, next) = match dev.tape {
            TapeStep::Off | TapeStep::Done => return None,
            TapeStep::Rewind => (CommandCode::Rewind, 0, TapeStep::Position),
            TapeStep::Position => (CommandCode::GetPosition, 0, TapeStep::Header),
            TapeStep::Header if dev.issued < HEADER_BYTES => return None,
            TapeStep::Header if dev.outstanding > 0 => return Some(false),
            TapeStep::Header if self.kind.is_backup() => {
                (CommandCode::WriteMark, 0, TapeStep::Data)
            }
            TapeStep::Header => (CommandCode::SkipMarks, 1, TapeStep::Done),
            TapeStep::Data => {
                let end = dev.issued >= dev.len
                    && dev.reissue.is_empty()
                    && dev.flushes_done >= self.mid_flushes;
                if !end {
                    return None;
                }
                if dev.outstanding > 0 {
                    return Some(false);
                }
                (CommandCode::WriteMark, 0, TapeStep::Done)
            }
        };
        let clause = match code {
            CommandCode::GetPosition => id::TAPE_POSITION,
            CommandCode::WriteMark | CommandCode::SkipMarks => id::TAPE_FILEMARKS,
            _ => id::TAPE_SEQUENCE,
        };
        let dev = &mut self.devs[d];
        dev.tape = next;
        dev.barrier = true;
        self.send(
            now,
            d,
            code,
            Some(Kind::Tape),
            size,
            0,
            None,
            Content::Empty,
            0,
            Some(clause),
            out,
            tr,
        );
        Some(true)
    }

    /// Whether device `d`'s positioning sequence is over (or it has none).
    pub(super) fn tape_done(&self, d: usize) -> bool {
        matches!(self.devs[d].tape, TapeStep::Off | TapeStep::Done)
    }

    /// A positioning command answered: ERROR_SUCCESS moves on (after a
    /// Rewind, GetPosition must report block address 0); anything else fails
    /// the statement.
    pub(super) fn on_tape_done(
        &mut self,
        now: u64,
        d: usize,
        slot: &Slot,
        c: &Completion,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        self.devs[d].barrier = false;
        let name = self.devs[d].name.clone();
        let op = "BackupVirtualDeviceFile::PositionMedia";
        if c.code != Win32::ERROR_SUCCESS {
            let m = messages::vdi_failure(op, slot.code.name(), &name, c.code);
            self.device_error(now, d, c.code, FailReason::DeviceError, m, out, tr);
            return;
        }
        if slot.code == CommandCode::GetPosition {
            ev!(
                tr,
                now,
                "Position",
                Some(id::TAPE_POSITION),
                "dev={d} block address {} after VDC_Rewind",
                c.position
            );
            if c.position != 0 {
                let m = messages::vdi_failure(op, "GetPosition", &name, c.code);
                self.fail(now, None, FailReason::BadMedia, m, c.code, out, tr);
            }
        }
        if slot.kind == Kind::EndRewind {
            self.devs[d].stage_done = true;
        }
    }

    /// The statement's stream is over and it succeeded: on tape devices
    /// VDC_Rewind first unless the options say otherwise (clause
    /// `tape.end-rewind`), then the outcome.
    pub(super) fn finish_or_rewind(&mut self, now: u64, out: &mut Vec<ToClient>, tr: &mut Trace) {
        if !self.tape() || self.phase == Phase::Rewind || !self.end_rewind {
            if self.tape() && self.phase != Phase::Rewind {
                ev!(
                    tr,
                    now,
                    "NoRewind",
                    Some(id::TAPE_END_REWIND),
                    "{}: the tapes stay where they are",
                    if self.kind.is_backup() {
                        "NOREWIND"
                    } else {
                        "NOUNLOAD"
                    }
                );
            }
            self.finish_success(now, out, tr);
            return;
        }
        self.phase = Phase::Rewind;
        for d in 0..self.devs.len() {
            self.devs[d].stage_done = false;
            self.devs[d].barrier = true;
            self.send_plain(
                now,
                d,
                CommandCode::Rewind,
                Kind::EndRewind,
                Some(id::TAPE_END_REWIND),
                out,
                tr,
            );
        }
        if self.devs.is_empty() {
            self.finish_success(now, out, tr);
        }
    }
}
