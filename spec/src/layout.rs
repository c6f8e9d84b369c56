//! `#[repr(C)]` structures shared with real clients (vdi-spec.md §3.4, §3.6;
//! vdi-abi-and-field-notes.md §1.3), and validation of the client's half of
//! `VDConfig` (§3.4, §3.8).

use crate::codes::Hresult;
use crate::features::Features;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// `VDConfig`: eleven consecutive 32-bit fields, 44 bytes, 4-byte aligned.
/// The first seven are client inputs; the last four are server outputs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct VdConfig {
    pub device_count: u32,
    pub features: u32,
    pub prefix_zone_size: u32,
    pub alignment: u32,
    pub soft_file_mark_block_size: u32,
    #[serde(rename = "EOMWarningSize")]
    pub eom_warning_size: u32,
    pub server_time_out: u32,
    pub block_size: u32,
    pub max_io_depth: u32,
    pub max_transfer_size: u32,
    pub buffer_area_size: u32,
}

/// `VDC_Command` as the client sees it: 24 bytes on x86-64, with `position`
/// at offset 8 and `buffer` at offset 16. Read-only for the client.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VdcCommand {
    pub command_code: u32,
    pub size: u32,
    pub position: u64,
    pub buffer: *mut u8,
}

/// Limits from vdi-spec.md §3.8.
pub mod limits {
    pub const DEVICE_COUNT_MIN: u32 = 1;
    pub const DEVICE_COUNT_MAX: u32 = 64;
    pub const BLOCK_SIZE_MIN: u32 = 512;
    pub const BLOCK_SIZE_MAX: u32 = 65536;
    pub const MAX_TRANSFER_MIN: u32 = 65536;
    pub const MAX_TRANSFER_MAX: u32 = 4 * 1024 * 1024;
    pub const MAX_TRANSFER_STEP: u32 = 65536;
    pub const ALIGNMENT_MAX: u32 = 65536;
    /// Reported in `maxIODepth`; deprecated, always 4.
    pub const MAX_IO_DEPTH_REPORTED: u32 = 4;
    /// `INFINITE` for Windows DWORD timeouts.
    pub const INFINITE: u32 = 0xFFFF_FFFF;
}

/// Why a client configuration was refused. Every variant maps to
/// `VD_E_NOTSUPPORTED`, the code Create/CreateEx document for an invalid or
/// unsupported configuration field (vdi-spec.md §2.1).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("VDConfig.deviceCount = {0}: must be 1..64 (one device per VIRTUAL_DEVICE clause)")]
    DeviceCount(u32),
    #[error(
        "VDConfig.features = 0x{0:08X}: not a supported combination; use VDF_LikePipe (0), \
         VDF_LikeTape (0x173) or VDF_LikeDisk (0x200), optionally with VDF_Removable (pipe, disk), \
         VDF_Discard or VDF_RequestComplete"
    )]
    Features(u32),
    #[error(
        "VDConfig.features = 0x{0:08X}: sets server-only bits (VDF_WriteMedia/ReadMedia/CompleteEnabled); clear them"
    )]
    ServerBits(u32),
    #[error("VDConfig.alignment = {0}: must be 0 or a power of two no larger than 65536")]
    Alignment(u32),
    #[error(
        "VDConfig.softFileMarkBlockSize = {0}: only meaningful with VDF_FileMarks; set it to 0 or request VDF_FileMarks"
    )]
    SoftFileMark(u32),
    #[error("VDConfig.prefixZoneSize = {0}: must be no larger than 65536")]
    PrefixZone(u32),
}

impl ConfigError {
    /// The documented code Create/CreateEx returns for this error.
    pub fn code(&self) -> Hresult {
        Hresult::VD_E_NOTSUPPORTED
    }
}

impl VdConfig {
    /// A zeroed configuration with `device_count` and `features` set, as the
    /// Microsoft samples initialise it.
    pub fn client(device_count: u32, features: Features) -> VdConfig {
        VdConfig {
            device_count,
            features: features.0,
            ..VdConfig::default()
        }
    }

    /// Checks the client inputs (clause `create.config-invalid`).
    pub fn validate_client(&self) -> Result<(), ConfigError> {
        use limits::*;
        if !(DEVICE_COUNT_MIN..=DEVICE_COUNT_MAX).contains(&self.device_count) {
            return Err(ConfigError::DeviceCount(self.device_count));
        }
        let f = Features(self.features);
        if f.intersects(Features::SERVER_BITS) {
            return Err(ConfigError::ServerBits(self.features));
        }
        if f.mode().is_none() {
            return Err(ConfigError::Features(self.features));
        }
        if self.alignment != 0
            && (!self.alignment.is_power_of_two() || self.alignment > ALIGNMENT_MAX)
        {
            return Err(ConfigError::Alignment(self.alignment));
        }
        if self.soft_file_mark_block_size != 0 && !f.contains(Features::FileMarks) {
            return Err(ConfigError::SoftFileMark(self.soft_file_mark_block_size));
        }
        if self.prefix_zone_size > ALIGNMENT_MAX {
            return Err(ConfigError::PrefixZone(self.prefix_zone_size));
        }
        Ok(())
    }

    /// The client's features as a typed mask.
    pub fn features(&self) -> Features {
        Features(self.features)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn layout_vdconfig_is_44_bytes() {
        assert_eq!(size_of::<VdConfig>(), 44);
        assert_eq!(align_of::<VdConfig>(), 4);
        let offsets = [
            offset_of!(VdConfig, device_count),
            offset_of!(VdConfig, features),
            offset_of!(VdConfig, prefix_zone_size),
            offset_of!(VdConfig, alignment),
            offset_of!(VdConfig, soft_file_mark_block_size),
            offset_of!(VdConfig, eom_warning_size),
            offset_of!(VdConfig, server_time_out),
            offset_of!(VdConfig, block_size),
            offset_of!(VdConfig, max_io_depth),
            offset_of!(VdConfig, max_transfer_size),
            offset_of!(VdConfig, buffer_area_size),
        ];
        assert_eq!(offsets, [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40]);
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn layout_vdc_command_is_24_bytes() {
        assert_eq!(size_of::<VdcCommand>(), 24);
        assert_eq!(offset_of!(VdcCommand, command_code), 0);
        assert_eq!(offset_of!(VdcCommand, size), 4);
        assert_eq!(offset_of!(VdcCommand, position), 8);
        assert_eq!(offset_of!(VdcCommand, buffer), 16);
    }

    #[test]
    fn config_device_count_1_to_64() {
        for n in [0, 65, 1000] {
            let e = VdConfig::client(n, Features::LikePipe)
                .validate_client()
                .unwrap_err();
            assert_eq!(e, ConfigError::DeviceCount(n));
            assert_eq!(e.code(), Hresult::VD_E_NOTSUPPORTED);
        }
        for n in [1, 2, 64] {
            VdConfig::client(n, Features::LikePipe)
                .validate_client()
                .unwrap();
        }
    }

    #[test]
    fn config_features_and_fields() {
        assert!(
            VdConfig::client(1, Features(0x10))
                .validate_client()
                .is_err()
        );
        assert!(
            VdConfig::client(1, Features::WriteMedia)
                .validate_client()
                .is_err()
        );
        VdConfig::client(1, Features::LikeTape)
            .validate_client()
            .unwrap();
        VdConfig::client(1, Features::RequestComplete)
            .validate_client()
            .unwrap();
        let mut c = VdConfig::client(1, Features::LikePipe);
        c.alignment = 3;
        assert_eq!(c.validate_client(), Err(ConfigError::Alignment(3)));
        c.alignment = 1024;
        c.validate_client().unwrap();
        c.soft_file_mark_block_size = 512;
        assert_eq!(c.validate_client(), Err(ConfigError::SoftFileMark(512)));
        let msg = ConfigError::DeviceCount(0).to_string();
        assert!(msg.contains("1..64"), "{msg}");
    }
}
