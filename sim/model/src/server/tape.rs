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
//! Under `tape-restore-positioning = address` (clause `tape.set-position`)
//! a BACKUP sends VDC_GetPosition right after the header's VDC_WriteMark
//! (the data set's block address: [`data_address`]), and a RESTORE sends
//! VDC_SetPosition to that address where it would send VDC_SkipMarks 1.
//!
//! Under `tape-restore-positioning = blocks` (clause `tape.skip-blocks`) a
//! RESTORE on a device that announces VDF_SkipBlocks reads only the
//! header's first blocks ([`header_probe`]: the identifying part, as an MTF
//! reader reads the tape header block and skips the rest), then sends
//! VDC_SkipBlocks over the header's remaining blocks at the statement's
//! BLOCKSIZE. A skip stops at a filemark, so the client's head ends on the
//! mark after the header without passing it; VDC_SkipBlocks has no
//! position output (§3.6), so the server asks VDC_GetPosition and requires
//! the mark's address (the header's blocks, [`header_blocks`]), then
//! crosses the mark with VDC_SkipMarks 1. Every tape-like device of the
//! model announces VDF_SkipBlocks (VDF_LikeTape = 0x173 includes it and
//! the mode table admits no tape without it), so the guard only matters to
//! a caller that builds other features; such a device, and a BLOCKSIZE
//! whose first block is the whole header (64 KiB), are positioned as under
//! `marks`.
//!
//! Under `marks` and `address` VDC_SkipBlocks is not sent: the data sets
//! are bracketed by filemarks and read whole, so the skip crosses a mark or
//! goes to an address. VDI has no reverse-positioning command
//! (VDF_ReversePosition is a feature bit; negative SkipMarks counts are
//! undocumented, §5.6), so none is sent. The reference client answers all
//! of these (module `vdi_model::tape`).
//!
//! A tape is removable (VDF_LikeTape includes VDF_Removable): a family may
//! span tapes (clause `tape.next-volume`, module `volume`).
//!
//! Each positioning command is a barrier on its device (nothing else is
//! outstanding there); any answer but ERROR_SUCCESS fails the statement
//! (Msg 18210), as a Flush's does.

use super::*;
use crate::media::{HEADER_BYTES, MediaHeader};
use std::sync::Arc;
use vdi_spec::profile::TapeRestorePositioning;
use vdi_spec::{DeviceMode, Features};

/// The block address of a tape's data set: the media header's blocks plus
/// one address for the filemark after it (clause `tape.set-position`; the
/// address a BACKUP's VDC_GetPosition must report there and a RESTORE's
/// VDC_SetPosition goes to).
pub(super) fn data_address(block: u32) -> u64 {
    HEADER_BYTES / u64::from(block.max(1)) + 1
}

/// The longest encoded media header (prefix, fixed fields and three names
/// of at most `NAME_BYTES_MAX` bytes each: 3204 bytes) rounded up to a
/// page: the identifying part a RESTORE reads under
/// `tape-restore-positioning = blocks` (clause `tape.skip-blocks`).
pub(super) const HEADER_IDENTIFIES: u64 = 4096;

/// Bytes of the media header a RESTORE reads under
/// `tape-restore-positioning = blocks`: [`HEADER_IDENTIFIES`] in whole
/// blocks of `block` bytes (one block when BLOCKSIZE is larger), at most
/// the whole header.
pub(super) fn header_probe(block: u32) -> u64 {
    let b = u64::from(block.max(1));
    HEADER_IDENTIFIES
        .div_ceil(b)
        .saturating_mul(b)
        .min(HEADER_BYTES)
}

/// The media header's blocks: the block address of the filemark after it,
/// where VDC_SkipBlocks over the header leaves the head (clause
/// `tape.skip-blocks`).
pub(super) fn header_blocks(block: u32) -> u64 {
    HEADER_BYTES / u64::from(block.max(1))
}

/// The media header in `buf`, `len` bytes of its region read from the
/// start: the whole region, or (clause `tape.skip-blocks`) a prefix that
/// holds the whole encoded header.
pub(super) fn header_in(buf: &Content, len: u64) -> Option<Arc<MediaHeader>> {
    if len == HEADER_BYTES {
        return buf.as_header().cloned();
    }
    match buf {
        Content::One(Extent::Header {
            header,
            skip: 0,
            len: l,
        }) if *l == len && header.encode().len() as u64 <= len => Some(header.clone()),
        _ => None,
    }
}

/// Where a tape-like device stands in its positioning sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TapeStep {
    /// Not a tape, or a device with nothing to read.
    Off,
    Rewind,
    Position,
    /// The media header is being written or read.
    Header,
    /// BACKUP under `tape-restore-positioning = address`: VDC_GetPosition
    /// after the header's filemark.
    Address,
    /// RESTORE under `tape-restore-positioning = blocks`: VDC_GetPosition
    /// after VDC_SkipBlocks over the header (clause `tape.skip-blocks`).
    Skipped,
    /// RESTORE under `blocks`: VDC_SkipMarks 1 over the header's filemark.
    Cross,
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

    /// Whether this RESTORE skips the rest of the media header with
    /// VDC_SkipBlocks (clause `tape.skip-blocks`): a tape-like device that
    /// announces VDF_SkipBlocks, under `tape-restore-positioning = blocks`,
    /// with a header of more than one read.
    pub(super) fn skips_blocks(&self) -> bool {
        !self.kind.is_backup()
            && self.tape()
            && self.profile.tape_restore_positioning == TapeRestorePositioning::Blocks
            && self.features.contains(Features::SkipBlocks)
            && header_probe(self.block) < HEADER_BYTES
    }

    /// Bytes of the media header the first read of a RESTORE asks for.
    pub(super) fn header_read_bytes(&self) -> u64 {
        if self.skips_blocks() {
            header_probe(self.block)
        } else {
            HEADER_BYTES
        }
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
        let by_address = self.profile.tape_restore_positioning == TapeRestorePositioning::Address;
        let by_blocks = self.skips_blocks();
        let (code, size, pos, next) = match dev.tape {
            TapeStep::Off | TapeStep::Done => return None,
            TapeStep::Rewind => (CommandCode::Rewind, 0, 0, TapeStep::Position),
            TapeStep::Position => (CommandCode::GetPosition, 0, 0, TapeStep::Header),
            TapeStep::Header if dev.issued < self.header_read_bytes() => return None,
            TapeStep::Header if dev.outstanding > 0 => return Some(false),
            TapeStep::Header if by_blocks => {
                // clause tape.skip-blocks: the rest of the header.
                let rest = (HEADER_BYTES - dev.issued) / u64::from(self.block.max(1));
                let n = u32::try_from(rest).unwrap_or(u32::MAX);
                let dev = &mut self.devs[d];
                dev.skipped = HEADER_BYTES - dev.issued;
                dev.issued = HEADER_BYTES;
                dev.done = HEADER_BYTES;
                (CommandCode::SkipBlocks, n, 0, TapeStep::Skipped)
            }
            TapeStep::Header if self.kind.is_backup() && by_address => {
                (CommandCode::WriteMark, 0, 0, TapeStep::Address)
            }
            TapeStep::Header if self.kind.is_backup() => {
                (CommandCode::WriteMark, 0, 0, TapeStep::Data)
            }
            TapeStep::Header if by_address => (
                CommandCode::SetPosition,
                0,
                data_address(self.block),
                TapeStep::Done,
            ),
            TapeStep::Header => (CommandCode::SkipMarks, 1, 0, TapeStep::Done),
            TapeStep::Skipped => (CommandCode::GetPosition, 0, 0, TapeStep::Cross),
            TapeStep::Cross => (CommandCode::SkipMarks, 1, 0, TapeStep::Done),
            TapeStep::Address => (CommandCode::GetPosition, 0, 0, TapeStep::Data),
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
                (CommandCode::WriteMark, 0, 0, TapeStep::Done)
            }
        };
        let dev = &self.devs[d];
        let clause = match code {
            CommandCode::SkipBlocks => id::TAPE_SKIP_BLOCKS,
            _ if dev.tape == TapeStep::Skipped => id::TAPE_SKIP_BLOCKS,
            CommandCode::GetPosition if dev.tape == TapeStep::Address => id::TAPE_SET_POSITION,
            CommandCode::SetPosition => id::TAPE_SET_POSITION,
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
            pos,
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
        if matches!(
            slot.code,
            CommandCode::GetPosition | CommandCode::SetPosition
        ) {
            self.check_tape_address(now, d, slot, c, out, tr);
        }
        if slot.kind == Kind::EndRewind {
            self.devs[d].stage_done = true;
        }
    }

    /// A VDC_GetPosition or VDC_SetPosition answered with ERROR_SUCCESS:
    /// the address must be the one expected there (0 after the first
    /// Rewind, clause `tape.position`; the data set's address after the
    /// header's filemark or as the SetPosition's target, clause
    /// `tape.set-position`), else the media cannot be trusted and the
    /// statement fails.
    fn check_tape_address(
        &mut self,
        now: u64,
        d: usize,
        slot: &Slot,
        c: &Completion,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        let (want, clause, what) = match (slot.code, self.devs[d].tape) {
            (CommandCode::GetPosition, TapeStep::Header) => {
                (0, id::TAPE_POSITION, "after VDC_Rewind")
            }
            (CommandCode::GetPosition, TapeStep::Cross) => (
                header_blocks(self.block),
                id::TAPE_SKIP_BLOCKS,
                "after VDC_SkipBlocks over the media header (its filemark's address)",
            ),
            (CommandCode::SetPosition, _) => (
                slot.pos,
                id::TAPE_SET_POSITION,
                "after VDC_SetPosition to the data set",
            ),
            _ => (
                data_address(self.block),
                id::TAPE_SET_POSITION,
                "after the header's filemark (the data set's address)",
            ),
        };
        ev!(
            tr,
            now,
            "Position",
            Some(clause),
            "dev={d} block address {} {what}",
            c.position
        );
        if c.position != want {
            let name = self.devs[d].name.clone();
            let op = "BackupVirtualDeviceFile::PositionMedia";
            let m = messages::vdi_failure(op, slot.code.name(), &name, c.code);
            self.fail(now, None, FailReason::BadMedia, m, c.code, out, tr);
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
