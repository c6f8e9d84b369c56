//! The T-SQL `WITH` options that shape a VDI configuration: BLOCKSIZE,
//! MAXTRANSFERSIZE, BUFFERCOUNT (vdi-spec.md §1.3, §3.8).

use crate::layout::limits;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Transfer options of a BACKUP or RESTORE statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferOptions {
    /// BLOCKSIZE in bytes: power of two, 512..65536; VDI default 512.
    pub block_size: u32,
    /// MAXTRANSFERSIZE in bytes: multiple of 64 KiB, 64 KiB..4 MiB; VDI default 64 KiB.
    pub max_transfer_size: u32,
    /// BUFFERCOUNT: buffers shared by all devices; `None` lets the server choose.
    pub buffer_count: Option<u32>,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            block_size: 512,
            max_transfer_size: 65536,
            buffer_count: None,
        }
    }
}

/// An out-of-range WITH option, with the message SQL Server's parser gives.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum OptionError {
    #[error("BLOCKSIZE = {0}: must be a power of 2 from 512 to 65536")]
    BlockSize(u32),
    #[error("MAXTRANSFERSIZE = {0}: must be a multiple of 65536 from 65536 to 4194304")]
    MaxTransfer(u32),
    #[error("BUFFERCOUNT = {0}: must be a positive integer")]
    BufferCount(u32),
}

impl TransferOptions {
    pub fn validate(&self) -> Result<(), OptionError> {
        let b = self.block_size;
        if !(limits::BLOCK_SIZE_MIN..=limits::BLOCK_SIZE_MAX).contains(&b) || !b.is_power_of_two() {
            return Err(OptionError::BlockSize(b));
        }
        let m = self.max_transfer_size;
        if !(limits::MAX_TRANSFER_MIN..=limits::MAX_TRANSFER_MAX).contains(&m)
            || !m.is_multiple_of(limits::MAX_TRANSFER_STEP)
        {
            return Err(OptionError::MaxTransfer(m));
        }
        if self.buffer_count == Some(0) {
            return Err(OptionError::BufferCount(0));
        }
        Ok(())
    }

    /// The buffer count in effect for `devices` devices: the explicit
    /// BUFFERCOUNT, else the profile's default rule (see
    /// [`crate::profile::Profile::default_buffer_count_per_device`]).
    pub fn effective_buffer_count(&self, devices: u32, per_device: u32) -> u32 {
        self.buffer_count
            .unwrap_or(devices.saturating_mul(per_device).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_ranges() {
        TransferOptions::default().validate().unwrap();
        let o = |b, m, c| TransferOptions {
            block_size: b,
            max_transfer_size: m,
            buffer_count: c,
        };
        assert_eq!(
            o(256, 65536, None).validate(),
            Err(OptionError::BlockSize(256))
        );
        assert_eq!(
            o(1000, 65536, None).validate(),
            Err(OptionError::BlockSize(1000))
        );
        assert_eq!(
            o(512, 65536 * 3 / 2, None).validate(),
            Err(OptionError::MaxTransfer(98304))
        );
        assert_eq!(
            o(512, 8 << 20, None).validate(),
            Err(OptionError::MaxTransfer(8 << 20))
        );
        assert_eq!(
            o(512, 65536, Some(0)).validate(),
            Err(OptionError::BufferCount(0))
        );
        o(65536, 4 << 20, Some(7)).validate().unwrap();
    }
}
