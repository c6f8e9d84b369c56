//! Command codes `VDC_*` 1..19 and whence values (vdi-spec.md §3.5, §5).

use crate::features::{DeviceMode, Features};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A `VDC_*` command code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u32)]
pub enum CommandCode {
    Read = 1,
    Write = 2,
    ClearError = 3,
    Rewind = 4,
    WriteMark = 5,
    SkipMarks = 6,
    SkipBlocks = 7,
    Load = 8,
    GetPosition = 9,
    SetPosition = 10,
    Discard = 11,
    Flush = 12,
    Snapshot = 13,
    MountSnapshot = 14,
    PrepareToFreeze = 15,
    FileInfoBegin = 16,
    FileInfoEnd = 17,
    /// Newer headers only; undocumented.
    GetError = 18,
    /// Newer headers only (KB3188454); sent only when negotiated.
    Complete = 19,
}

impl CommandCode {
    /// All codes in value order.
    pub const ALL: [CommandCode; 19] = [
        CommandCode::Read,
        CommandCode::Write,
        CommandCode::ClearError,
        CommandCode::Rewind,
        CommandCode::WriteMark,
        CommandCode::SkipMarks,
        CommandCode::SkipBlocks,
        CommandCode::Load,
        CommandCode::GetPosition,
        CommandCode::SetPosition,
        CommandCode::Discard,
        CommandCode::Flush,
        CommandCode::Snapshot,
        CommandCode::MountSnapshot,
        CommandCode::PrepareToFreeze,
        CommandCode::FileInfoBegin,
        CommandCode::FileInfoEnd,
        CommandCode::GetError,
        CommandCode::Complete,
    ];

    pub fn from_u32(v: u32) -> Option<CommandCode> {
        CommandCode::ALL.get((v as usize).wrapping_sub(1)).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            CommandCode::Read => "VDC_Read",
            CommandCode::Write => "VDC_Write",
            CommandCode::ClearError => "VDC_ClearError",
            CommandCode::Rewind => "VDC_Rewind",
            CommandCode::WriteMark => "VDC_WriteMark",
            CommandCode::SkipMarks => "VDC_SkipMarks",
            CommandCode::SkipBlocks => "VDC_SkipBlocks",
            CommandCode::Load => "VDC_Load",
            CommandCode::GetPosition => "VDC_GetPosition",
            CommandCode::SetPosition => "VDC_SetPosition",
            CommandCode::Discard => "VDC_Discard",
            CommandCode::Flush => "VDC_Flush",
            CommandCode::Snapshot => "VDC_Snapshot",
            CommandCode::MountSnapshot => "VDC_MountSnapshot",
            CommandCode::PrepareToFreeze => "VDC_PrepareToFreeze",
            CommandCode::FileInfoBegin => "VDC_FileInfoBegin",
            CommandCode::FileInfoEnd => "VDC_FileInfoEnd",
            CommandCode::GetError => "VDC_GetError",
            CommandCode::Complete => "VDC_Complete",
        }
    }

    /// Whether a client in `mode` must support this command (vdi-spec.md §5.0
    /// "Client Supported Commands"; X cells). Optional commands (Discard,
    /// Snapshot, Load on removable pipes, ...) return `false`: a client may
    /// answer them with ERROR_NOT_SUPPORTED.
    pub fn required_for(self, mode: DeviceMode) -> bool {
        use CommandCode::*;
        use DeviceMode::*;
        match self {
            Read | Write | ClearError | Flush => true,
            WriteMark | SkipMarks | SkipBlocks | Rewind => mode == Tape,
            Load => matches!(mode, Tape | DiskRemovable),
            GetPosition | SetPosition => matches!(mode, Tape | Disk | DiskRemovable),
            _ => false,
        }
    }

    /// Whether the server may send this command to a client whose features
    /// are `features` (what the client announced, plus what the server
    /// returned). VDC_Complete needs VDF_CompleteEnabled; VDC_Discard needs
    /// VDF_Discard; VDC_PrepareToFreeze needs VDF_SnapshotPrepare.
    pub fn sendable_to(self, features: Features) -> bool {
        use CommandCode::*;
        match self {
            Complete => features.contains(Features::CompleteEnabled),
            Discard => features.contains(Features::Discard),
            PrepareToFreeze => features.contains(Features::SnapshotPrepare),
            FileInfoBegin | FileInfoEnd => features.contains(Features::EnumFrozenFiles),
            _ => match features.mode() {
                Some(m) => {
                    self.required_for(m) || matches!(self, Snapshot | MountSnapshot | GetError)
                }
                None => false,
            },
        }
    }

    /// Whether the command carries a data buffer (Read and Write).
    pub fn has_buffer(self) -> bool {
        matches!(self, CommandCode::Read | CommandCode::Write)
    }
}

impl fmt::Display for CommandCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), *self as u32)
    }
}

impl fmt::Debug for CommandCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `VDWhence` for VDC_SetPosition in disk mode (carried in `size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u32)]
pub enum Whence {
    Beginning = 0,
    Current = 1,
    End = 2,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_codes_are_1_to_19() {
        for (i, c) in CommandCode::ALL.iter().enumerate() {
            assert_eq!(*c as u32, i as u32 + 1);
            assert_eq!(CommandCode::from_u32(i as u32 + 1), Some(*c));
        }
        assert_eq!(CommandCode::from_u32(0), None);
        assert_eq!(CommandCode::from_u32(20), None);
        assert_eq!(CommandCode::Complete.to_string(), "VDC_Complete (19)");
        assert_eq!(Whence::End as u32, 2);
    }

    #[test]
    fn command_pipe_requirements() {
        let pipe = DeviceMode::Pipe;
        assert!(CommandCode::Read.required_for(pipe));
        assert!(CommandCode::Flush.required_for(pipe));
        assert!(!CommandCode::Rewind.required_for(pipe));
        assert!(!CommandCode::Complete.sendable_to(Features(0)));
        assert!(CommandCode::Complete.sendable_to(Features::CompleteEnabled));
        assert!(CommandCode::SetPosition.required_for(DeviceMode::Disk));
    }
}
