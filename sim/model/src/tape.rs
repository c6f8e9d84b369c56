//! A tape as a tape-like (VDF_LikeTape) client keeps it: the bytes of the
//! medium, the filemarks between them and the head's position.
//!
//! The bytes are [`Content`] (the same as any other device's media, so the
//! backup checks compare them unchanged); the filemarks are byte offsets
//! into them. The head is a byte position plus the number of filemarks
//! before it (a mark and the first byte after it share an offset).
//!
//! What the operations do (vdi-spec.md §5.1, §5.4–§5.10):
//! - a Write or a WriteMark at the head erases everything after it, as a
//!   tape drive does (clause `tape.filemarks`);
//! - a Read stops at the next filemark: bytes before it are returned with
//!   ERROR_FILEMARK_DETECTED and the head passes the mark; a Read at the
//!   end of the data returns ERROR_NO_DATA_DETECTED (clause
//!   `tape.filemarks`);
//! - SkipMarks(n) moves just past the n-th filemark ahead (size = n);
//!   SkipBlocks(n) moves n blocks forward, at most to the next filemark
//!   without passing it: ERROR_SUCCESS when the n blocks end at or before
//!   the mark, ERROR_FILEMARK_DETECTED when the mark stopped it short
//!   (clause `tape.skip-blocks`; no bytes or position are reported);
//! - GetPosition and SetPosition speak in block addresses: bytes before the
//!   head divided by BLOCKSIZE, plus one address per filemark passed
//!   (clause `tape.position`); Rewind goes to address 0.
//!
//! A tape client whose volumes hold `volume-bytes` each (VDF_LikeTape
//! includes VDF_Removable; clause `tape.next-volume`) keeps its volumes end
//! to end in the same [`Content`], `p.volumes[d]` where each after the first
//! begins: a Write that does not fit the current volume stores what does and
//! answers ERROR_END_OF_MEDIA; a Read stops at the end of the current
//! volume with ERROR_NO_DATA_DETECTED (no filemark there); VDC_Load starts
//! a blank volume (BACKUP) or moves to the next one (RESTORE; none left:
//! ERROR_NO_DATA_DETECTED; so a tape without a capacity, which has one
//! volume, answers a RESTORE's VDC_Load that way); Rewind and block
//! addresses are the current volume's. A filemark belongs to the volume it
//! was written on.

use crate::content::Content;
use crate::flaw::Flaw;
use crate::msg::Cmd;
use crate::process::ClientProcess;
pub use crate::process::Head;
use std::collections::BTreeSet;
use vdi_spec::{CommandCode, Win32};

/// How a client answers a command: (code, bytes, data, position).
pub type Answer = (Win32, u64, Content, u64);

/// A command on a tape-like client's device `d` (volumes of `capacity`
/// bytes, `None`: one volume): what [`perform`] answers, or what the
/// client's `flaws` answer instead (flaws `ignores-set-position`,
/// `ignores-skip-blocks`: the client claims the move and stays put, clauses
/// `tape.set-position`, `tape.skip-blocks`).
pub fn answer(
    c: &Cmd,
    d: usize,
    flaws: &BTreeSet<Flaw>,
    capacity: Option<u64>,
    p: &mut ClientProcess,
) -> Option<Answer> {
    match c.code {
        CommandCode::SetPosition if flaws.contains(&Flaw::IgnoresSetPosition) => {
            Some((Win32::ERROR_SUCCESS, 0, Content::Empty, c.position))
        }
        CommandCode::SkipBlocks if flaws.contains(&Flaw::IgnoresSkipBlocks) => {
            Some((Win32::ERROR_SUCCESS, 0, Content::Empty, 0))
        }
        _ => perform(c, d, capacity, p),
    }
}

/// A command on a tape-like client's device `d` (clauses
/// `tape.filemarks`, `tape.position`), or `None` for the commands every
/// mode shares (Flush, ClearError, Complete, ...).
pub fn perform(c: &Cmd, d: usize, capacity: Option<u64>, p: &mut ClientProcess) -> Option<Answer> {
    let block = p.config.map_or(512, |g| g.block_size);
    let reading = p.reading;
    let (Some(data), Some(marks), Some(head), Some(starts), Some(vol)) = (
        p.media.get_mut(d),
        p.marks.get_mut(d),
        p.heads.get_mut(d),
        p.volumes.get_mut(d),
        p.volume.get_mut(d),
    ) else {
        return None;
    };
    let ok = Win32::ERROR_SUCCESS;
    let done = |code| Some((code, 0, Content::Empty, 0));
    if c.code == CommandCode::Load {
        // clause tape.next-volume
        if !reading {
            starts.push(data.len());
            *vol += 1;
        } else if *vol < starts.len() {
            *vol += 1;
        } else {
            return done(Win32::ERROR_NO_DATA_DETECTED);
        }
        let mut t = Tape::on_volume(data, marks, head, starts, *vol, capacity);
        t.rewind();
        return done(ok);
    }
    let mut t = Tape::on_volume(data, marks, head, starts, *vol, capacity);
    match c.code {
        CommandCode::Write => {
            let n = t.write(&c.data.slice(0, u64::from(c.size)));
            let code = if n < u64::from(c.size) {
                Win32::ERROR_END_OF_MEDIA
            } else {
                ok
            };
            Some((code, n, Content::Empty, 0))
        }
        CommandCode::Read => {
            let (code, got) = t.read(u64::from(c.size));
            Some((code, got.len(), got, 0))
        }
        CommandCode::WriteMark => {
            t.write_mark();
            done(ok)
        }
        CommandCode::SkipMarks => done(t.skip_marks(c.size)),
        CommandCode::SkipBlocks => done(t.skip_blocks(c.size, block)),
        CommandCode::Rewind => {
            t.rewind();
            done(ok)
        }
        CommandCode::GetPosition => Some((ok, 0, Content::Empty, t.position(block))),
        CommandCode::SetPosition => {
            let at = t.set_position(c.position, block);
            Some((ok, 0, Content::Empty, at))
        }
        _ => None,
    }
}

/// A Write, Read or Load on a removable pipe-like client's device `d`
/// whose volumes hold `capacity` bytes each (clause `media.next-volume`):
/// the device's media are the volumes end to end, `p.volumes[d]` where
/// each after the first begins. A Write that does not fit stores what does
/// and answers ERROR_END_OF_MEDIA; a Read stops at the end of the current
/// volume (ERROR_HANDLE_EOF); VDC_Load starts the next volume (BACKUP) or
/// moves to it (RESTORE).
pub fn perform_volume(c: &Cmd, d: usize, capacity: u64, p: &mut ClientProcess) -> Option<Answer> {
    let (Some(media), Some(starts), Some(vol)) = (
        p.media.get_mut(d),
        p.volumes.get_mut(d),
        p.volume.get_mut(d),
    ) else {
        return None;
    };
    match c.code {
        CommandCode::Write => {
            let begun = starts.last().copied().unwrap_or(0);
            let room = capacity.saturating_sub(media.len() - begun);
            let n = u64::from(c.size).min(room);
            media.append(&c.data.slice(0, n));
            let code = if n < u64::from(c.size) {
                Win32::ERROR_END_OF_MEDIA
            } else {
                Win32::ERROR_SUCCESS
            };
            Some((code, n, Content::Empty, 0))
        }
        CommandCode::Read => {
            let cur = p.cursors.get(d).copied().unwrap_or(0);
            let end = starts.get(*vol).copied().unwrap_or(media.len());
            let got = media.slice(cur, u64::from(c.size).min(end.saturating_sub(cur)));
            if let Some(cu) = p.cursors.get_mut(d) {
                *cu += got.len();
            }
            let code = if got.len() < u64::from(c.size) {
                Win32::ERROR_HANDLE_EOF
            } else {
                Win32::ERROR_SUCCESS
            };
            Some((code, got.len(), got, 0))
        }
        CommandCode::Load => {
            if p.reading {
                *vol += 1;
            } else {
                starts.push(media.len());
            }
            Some((Win32::ERROR_SUCCESS, 0, Content::Empty, 0))
        }
        _ => None,
    }
}

/// A tape medium as the client holds it, borrowed for one operation: the
/// current volume of it (the whole medium when it has one volume).
pub struct Tape<'a> {
    pub data: &'a mut Content,
    /// Filemarks, as byte offsets into `data`, ascending.
    pub marks: &'a mut Vec<u64>,
    pub head: &'a mut Head,
    /// Where the current volume begins (the head after a Rewind).
    pub base: Head,
    /// Where the current volume's recorded data ends for a read (the next
    /// volume's first byte; `u64::MAX`: the end of the data).
    pub end: u64,
    /// How many bytes the current volume holds (`u64::MAX`: no limit).
    pub capacity: u64,
}

impl<'a> Tape<'a> {
    /// A medium of one volume without a capacity.
    pub fn new(data: &'a mut Content, marks: &'a mut Vec<u64>, head: &'a mut Head) -> Tape<'a> {
        Tape {
            data,
            marks,
            head,
            base: Head::default(),
            end: u64::MAX,
            capacity: u64::MAX,
        }
    }

    /// Volume `vol` of a medium whose volumes after the first begin at
    /// `starts`, each holding `capacity` bytes (`None`: one volume, no
    /// limit).
    pub fn on_volume(
        data: &'a mut Content,
        marks: &'a mut Vec<u64>,
        head: &'a mut Head,
        starts: &[u64],
        vol: usize,
        capacity: Option<u64>,
    ) -> Tape<'a> {
        let begin = vol
            .checked_sub(1)
            .and_then(|i| starts.get(i))
            .copied()
            .unwrap_or(0);
        let passed = marks
            .iter()
            .take_while(|&&m| m <= begin && begin > 0)
            .count();
        let end = starts.get(vol).copied().unwrap_or(u64::MAX);
        Tape {
            data,
            marks,
            head,
            base: Head { pos: begin, passed },
            end,
            capacity: capacity.unwrap_or(u64::MAX),
        }
    }
}

impl Tape<'_> {
    /// Erases everything from the head on (a tape is written in sequence).
    fn erase_ahead(&mut self) {
        self.data.truncate(self.head.pos);
        self.marks.truncate(self.head.passed);
    }

    /// VDC_Write: stores `bytes` at the head, as many as the volume holds,
    /// and moves past them: the count stored.
    pub fn write(&mut self, bytes: &Content) -> u64 {
        self.erase_ahead();
        let used = self.head.pos - self.base.pos;
        let n = bytes.len().min(self.capacity.saturating_sub(used));
        self.data.append(&bytes.slice(0, n));
        self.head.pos += n;
        n
    }

    /// VDC_WriteMark: one filemark at the head.
    pub fn write_mark(&mut self) {
        self.erase_ahead();
        self.marks.push(self.head.pos);
        self.head.passed += 1;
    }

    /// The next filemark ahead on this volume, if any.
    fn next_mark(&self) -> Option<u64> {
        self.marks
            .get(self.head.passed)
            .copied()
            .filter(|&m| m < self.end)
    }

    /// Where the data ends for a read from the head: the next filemark, or
    /// the end of the volume.
    fn limit(&self) -> u64 {
        self.next_mark().unwrap_or(self.data.len().min(self.end))
    }

    /// VDC_Read of `size` bytes: (code, bytes read).
    pub fn read(&mut self, size: u64) -> (Win32, Content) {
        let limit = self.limit();
        let n = size.min(limit.saturating_sub(self.head.pos));
        let bytes = self.data.slice(self.head.pos, n);
        self.head.pos += bytes.len();
        if bytes.len() == size {
            return (Win32::ERROR_SUCCESS, bytes);
        }
        if self.next_mark().is_some() {
            self.head.passed += 1;
            return (Win32::ERROR_FILEMARK_DETECTED, bytes);
        }
        (Win32::ERROR_NO_DATA_DETECTED, bytes)
    }

    /// VDC_SkipMarks: past the next `n` filemarks.
    pub fn skip_marks(&mut self, n: u32) -> Win32 {
        for _ in 0..n {
            let Some(m) = self.next_mark() else {
                self.head.pos = self.data.len().min(self.end);
                return Win32::ERROR_NO_DATA_DETECTED;
            };
            self.head.pos = m;
            self.head.passed += 1;
        }
        Win32::ERROR_SUCCESS
    }

    /// VDC_SkipBlocks: `n` blocks forward, at most to the next filemark.
    pub fn skip_blocks(&mut self, n: u32, block: u32) -> Win32 {
        let want = self
            .head
            .pos
            .saturating_add(u64::from(n) * u64::from(block.max(1)));
        let limit = self.limit();
        self.head.pos = want.min(limit);
        if want > limit {
            Win32::ERROR_FILEMARK_DETECTED
        } else {
            Win32::ERROR_SUCCESS
        }
    }

    /// VDC_Rewind: to the beginning of the volume.
    pub fn rewind(&mut self) {
        *self.head = self.base;
    }

    /// VDC_GetPosition: the head's block address on its volume (each
    /// filemark takes one address, as on a tape).
    pub fn position(&self, block: u32) -> u64 {
        (self.head.pos - self.base.pos) / u64::from(block.max(1))
            + (self.head.passed - self.base.passed) as u64
    }

    /// VDC_SetPosition to block address `addr` (one GetPosition returned):
    /// the resulting address.
    pub fn set_position(&mut self, addr: u64, block: u32) -> u64 {
        let b = u64::from(block.max(1));
        let (base, first) = (self.base.pos, self.base.passed);
        let mut passed = first;
        for (i, m) in self.marks.iter().enumerate().skip(first) {
            if *m >= self.end || (m - base) / b + (i - first) as u64 >= addr {
                break;
            }
            passed = i + 1;
        }
        let pos = base.saturating_add((addr - (passed - first) as u64).saturating_mul(b));
        self.head.pos = pos.min(self.data.len()).min(self.end);
        self.head.passed = passed;
        self.position(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clauses `tape.filemarks` and `tape.position`: a header, a mark, the
    /// data, a mark; reads stop at marks with ERROR_FILEMARK_DETECTED;
    /// SkipMarks passes them; positions are block addresses; writing after
    /// a rewind erases what lay ahead.
    #[test]
    fn tape_marks_reads_and_positions() {
        let (mut data, mut marks, mut head) = (Content::Empty, Vec::new(), Head::default());
        let mut t = Tape::new(&mut data, &mut marks, &mut head);
        t.write(&Content::stream(1, 0, 1024));
        t.write_mark();
        t.write(&Content::stream(1, 1024, 2048));
        t.write_mark();
        assert_eq!(t.position(512), 8);
        assert_eq!(*t.marks, vec![1024, 3072]);
        t.rewind();
        assert_eq!(t.position(512), 0);
        let (code, got) = t.read(4096);
        assert_eq!(code, Win32::ERROR_FILEMARK_DETECTED);
        assert!(got.is_stream(1, 0, 1024));
        let (code, got) = t.read(1024);
        assert_eq!(code, Win32::ERROR_SUCCESS);
        assert!(got.is_stream(1, 1024, 1024));
        assert_eq!(t.skip_blocks(1, 512), Win32::ERROR_SUCCESS);
        let (code, got) = t.read(1024);
        assert_eq!(code, Win32::ERROR_FILEMARK_DETECTED);
        assert_eq!(got.len(), 512);
        assert_eq!(t.read(512).0, Win32::ERROR_NO_DATA_DETECTED);
        t.rewind();
        assert_eq!(t.skip_marks(1), Win32::ERROR_SUCCESS);
        assert_eq!(t.head.pos, 1024);
        assert_eq!(t.skip_marks(2), Win32::ERROR_NO_DATA_DETECTED);
        assert_eq!(t.set_position(2, 512), 2);
        assert_eq!(
            *t.head,
            Head {
                pos: 1024,
                passed: 0
            }
        );
        assert_eq!(t.set_position(3, 512), 3);
        assert_eq!(t.head.passed, 1);
        t.write(&Content::stream(2, 0, 512));
        assert_eq!(t.data.len(), 1536);
        assert_eq!(*t.marks, vec![1024]);
    }

    /// Clause `tape.next-volume`: a tape of two 1 KiB volumes. A Write that
    /// does not fit stores what does (ERROR_END_OF_MEDIA is the caller's);
    /// on the next volume reads stop at the volume's end with
    /// ERROR_NO_DATA_DETECTED, not at a filemark; Rewind and addresses
    /// are the volume's; a filemark belongs to the volume it was written
    /// on.
    #[test]
    fn tape_volumes() {
        let (mut data, mut marks, mut head) = (Content::Empty, Vec::new(), Head::default());
        let mut starts = Vec::new();
        let mut t = Tape::on_volume(&mut data, &mut marks, &mut head, &starts, 0, Some(1024));
        t.write(&Content::stream(1, 0, 512));
        t.write_mark();
        assert_eq!(
            t.write(&Content::stream(1, 512, 1024)),
            512,
            "the volume is full"
        );
        starts.push(1024);
        let mut t = Tape::on_volume(&mut data, &mut marks, &mut head, &starts, 1, Some(1024));
        assert_eq!(t.position(512), 0, "a blank volume begins at 0");
        assert_eq!(t.write(&Content::stream(1, 1024, 512)), 512);
        t.write_mark();
        assert_eq!(t.position(512), 2);
        t.rewind();
        assert_eq!(
            *t.head,
            Head {
                pos: 1024,
                passed: 1
            }
        );
        let (code, got) = t.read(1024);
        assert_eq!(code, Win32::ERROR_FILEMARK_DETECTED);
        assert!(got.is_stream(1, 1024, 512));
        // Volume 0 from its start: the header, the mark, then its end.
        let mut head0 = Head::default();
        let mut t = Tape::on_volume(&mut data, &mut marks, &mut head0, &starts, 0, Some(1024));
        assert_eq!(t.read(1024).0, Win32::ERROR_FILEMARK_DETECTED);
        let (code, got) = t.read(1024);
        assert_eq!(
            code,
            Win32::ERROR_NO_DATA_DETECTED,
            "the volume ends, no mark"
        );
        assert!(got.is_stream(1, 512, 512));
        assert_eq!(t.skip_marks(1), Win32::ERROR_NO_DATA_DETECTED);
        assert_eq!(t.head.pos, 1024);
        assert_eq!(t.set_position(1, 512), 1);
        assert_eq!(
            *t.head,
            Head {
                pos: 512,
                passed: 0
            }
        );
    }
}
