//! Feature flags of `VDConfig.features` (vdi-spec.md §3.3).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A `VDF_*` mask. Client bits are requested in Create; the server adds
/// `VDF_WriteMedia`/`VDF_ReadMedia` and `VDF_CompleteEnabled` before
/// GetConfiguration returns.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Features(pub u32);

/// Every named single bit, in value order.
pub const FEATURE_BITS: &[(u32, &str)] = &[
    (0x0000_0001, "VDF_Removable"),
    (0x0000_0002, "VDF_Rewind"),
    (0x0000_0010, "VDF_Position"),
    (0x0000_0020, "VDF_SkipBlocks"),
    (0x0000_0040, "VDF_ReversePosition"),
    (0x0000_0080, "VDF_Discard"),
    (0x0000_0100, "VDF_FileMarks"),
    (0x0000_0200, "VDF_RandomAccess"),
    (0x0000_0400, "VDF_SnapshotPrepare"),
    (0x0000_0800, "VDF_EnumFrozenFiles"),
    (0x0000_1000, "VDF_VSSWriter"),
    (0x0000_2000, "VDF_RequestComplete"),
    (0x0001_0000, "VDF_WriteMedia"),
    (0x0002_0000, "VDF_ReadMedia"),
    (0x0004_0000, "VDF_CompleteEnabled"),
    (0x8000_0000, "VDF_LatchStats"),
];

#[allow(non_upper_case_globals)]
impl Features {
    pub const LikePipe: Features = Features(0);
    pub const Removable: Features = Features(0x1);
    pub const Rewind: Features = Features(0x2);
    pub const Position: Features = Features(0x10);
    pub const SkipBlocks: Features = Features(0x20);
    pub const ReversePosition: Features = Features(0x40);
    pub const Discard: Features = Features(0x80);
    pub const FileMarks: Features = Features(0x100);
    pub const RandomAccess: Features = Features(0x200);
    pub const SnapshotPrepare: Features = Features(0x400);
    pub const EnumFrozenFiles: Features = Features(0x800);
    pub const VSSWriter: Features = Features(0x1000);
    pub const RequestComplete: Features = Features(0x2000);
    /// Server-returned: the operation writes media (BACKUP).
    pub const WriteMedia: Features = Features(0x1_0000);
    /// Server-returned: the operation reads media (RESTORE).
    pub const ReadMedia: Features = Features(0x2_0000);
    /// Server-returned: the server will send VDC_Complete.
    pub const CompleteEnabled: Features = Features(0x4_0000);
    pub const LatchStats: Features = Features(0x8000_0000);
    /// `FileMarks | Removable | Rewind | Position | SkipBlocks | ReversePosition`.
    pub const LikeTape: Features = Features(0x173);
    /// `RandomAccess`.
    pub const LikeDisk: Features = Features(0x200);

    /// Bits only the server sets.
    pub const SERVER_BITS: Features = Features(0x1_0000 | 0x2_0000 | 0x4_0000);
    /// Bits that do not select a device mode and may accompany any mode:
    /// Discard, the snapshot/VSS bits and RequestComplete.
    pub const MODE_NEUTRAL: Features = Features(0x80 | 0x400 | 0x800 | 0x1000 | 0x2000);

    pub fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn intersects(self, other: Features) -> bool {
        self.0 & other.0 != 0
    }
    pub fn union(self, other: Features) -> Features {
        Features(self.0 | other.0)
    }
    pub fn without(self, other: Features) -> Features {
        Features(self.0 & !other.0)
    }

    /// The device mode the client bits select, or `None` for a combination the
    /// specification calls undefined (vdi-spec.md §3.3: only pipe-like,
    /// pipe-like + Removable, tape-like, disk-like, disk-like + Removable, each
    /// optionally with Discard).
    pub fn mode(self) -> Option<DeviceMode> {
        let m = self
            .without(Features::MODE_NEUTRAL)
            .without(Features::SERVER_BITS);
        match m.0 {
            0 => Some(DeviceMode::Pipe),
            0x1 => Some(DeviceMode::PipeRemovable),
            0x173 => Some(DeviceMode::Tape),
            0x200 => Some(DeviceMode::Disk),
            0x201 => Some(DeviceMode::DiskRemovable),
            _ => None,
        }
    }
}

/// The device modes the specification supports (vdi-spec.md §3.3, §5.0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceMode {
    Pipe,
    PipeRemovable,
    Tape,
    Disk,
    DiskRemovable,
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return write!(f, "VDF_LikePipe (0x00000000)");
        }
        let mut first = true;
        let mut rest = self.0;
        for (bit, name) in FEATURE_BITS {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !bit;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "0x{rest:X}")?;
        }
        write!(f, " (0x{:08X})", self.0)
    }
}

impl fmt::Debug for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_values_are_exact() {
        assert_eq!(Features::LikeTape.0, 0x173);
        assert_eq!(
            Features::LikeTape,
            Features::FileMarks
                .union(Features::Removable)
                .union(Features::Rewind)
                .union(Features::Position)
                .union(Features::SkipBlocks)
                .union(Features::ReversePosition)
        );
        assert_eq!(Features::LikeDisk, Features::RandomAccess);
        assert_eq!(Features::WriteMedia.0, 0x10000);
        assert_eq!(Features::ReadMedia.0, 0x20000);
        assert_eq!(Features::CompleteEnabled.0, 0x40000);
        assert_eq!(Features::RequestComplete.0, 0x2000);
    }

    #[test]
    fn features_supported_combinations() {
        assert_eq!(Features(0).mode(), Some(DeviceMode::Pipe));
        assert_eq!(Features(0x1).mode(), Some(DeviceMode::PipeRemovable));
        assert_eq!(Features(0x173 | 0x80).mode(), Some(DeviceMode::Tape));
        assert_eq!(Features(0x201).mode(), Some(DeviceMode::DiskRemovable));
        assert_eq!(Features(0x2000).mode(), Some(DeviceMode::Pipe));
        assert_eq!(
            Features(0x10).mode(),
            None,
            "Position alone is not a supported mode"
        );
        assert_eq!(Features(0x100).mode(), None);
    }

    #[test]
    fn features_print_names() {
        assert_eq!(
            Features::WriteMedia.to_string(),
            "VDF_WriteMedia (0x00010000)"
        );
        assert_eq!(
            Features(0x2000 | 0x1).to_string(),
            "VDF_Removable|VDF_RequestComplete (0x00002001)"
        );
        assert_eq!(Features(0).to_string(), "VDF_LikePipe (0x00000000)");
    }
}
