//! The project's bounds: the largest size, count and time each input may
//! carry (command-line flags, scenario and plan files, T-SQL WITH options,
//! `vdisim serve --database`, the control protocol). A value beyond its
//! bound is refused where it enters — exit status 2 and a message on the
//! command line, a SQL Server message from T-SQL — and arithmetic on values
//! within the bounds cannot overflow a `u64`.
//!
//! These are the simulator's limits, not SQL Server's: each is chosen so a
//! run stays within memory and a few minutes of CPU on one machine, and
//! each is far above what the catalog or a real backup flow needs. The
//! VDI's own limits (device count, BLOCKSIZE, MAXTRANSFERSIZE) are in
//! [`crate::layout::limits`].

use thiserror::Error;

/// Bytes of database data one statement streams (a BACKUP's size, a
/// database's size in `vdisim serve`): 1 TiB. Virtual content makes the
/// bytes cheap; the commands that carry them are bounded below.
pub const DATA_BYTES_MAX: u64 = 1 << 40;

/// Data commands (VDC_Write or VDC_Read) one statement may need, all
/// devices together: 2^22 (4,194,304). 1 TiB at MAXTRANSFERSIZE 4 MiB is
/// 262,144 commands; at 64 KiB it is 2^24 and is refused — raise
/// MAXTRANSFERSIZE or lower the data size.
pub const DATA_COMMANDS_MAX: u64 = 1 << 22;

/// Flushes sent mid-stream on each device: 1,024.
pub const MID_FLUSHES_MAX: u32 = 1024;

/// Bytes a RESTORE HEADERONLY / FILELISTONLY reads: 1 GiB.
pub const METADATA_BYTES_MAX: u64 = 1 << 30;

/// Extra (probe) commands per statement: 64.
pub const EXTRA_COMMANDS_MAX: usize = 64;

/// Entries of a read-size cycle: 1,024.
pub const READ_SIZE_CYCLE_MAX: usize = 1024;

/// BUFFERCOUNT × MAXTRANSFERSIZE: 2 GiB (VDConfig.bufferAreaSize is a
/// DWORD). SQL Server refuses a buffer pool it cannot allocate with Msg
/// 701 and 3013; the simulated server does the same beyond this bound.
pub const BUFFER_AREA_BYTES_MAX: u64 = 1 << 31;

/// Extra seeds per case in `vdisim run --seeds`: 10,000.
pub const RUN_SEEDS_MAX: u64 = 10_000;

/// Seeds `vdisim check-determinism --seeds` runs: 10,000.
pub const DETERMINISM_SEEDS_MAX: u64 = 10_000;

/// Preemptions per schedule in `vdisim explore --bound`: 8. The number
/// of schedules grows as the number of steps to the power of the bound;
/// the named configurations need 1 to 3.
pub const EXPLORE_BOUND_MAX: u32 = 8;

/// Schedules per configuration in `vdisim explore --max-schedules`:
/// 100,000,000 (hours of CPU at a few thousand schedules a second).
pub const EXPLORE_SCHEDULES_MAX: u64 = 100_000_000;

/// Characters of a database, set or device name: 128 (SQL Server's
/// `sysname`).
pub const NAME_CHARS_MAX: usize = 128;

/// Databases `vdisim serve` holds: 1,024.
pub const DATABASES_MAX: usize = 1024;

/// Bytes of one T-SQL batch or `-i` file sqlcmd sends: 16 MiB, the control
/// protocol's frame cap less room for the frame's own fields.
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024 - 4096;

/// Scheduler steps a scenario may allow itself (`max-steps`): 5 × 10^7,
/// the engine's default bound.
pub const SCENARIO_STEPS_MAX: u64 = 50_000_000;

/// Seeds a scenario lists: 1,000.
pub const SCENARIO_SEEDS_MAX: usize = 1000;

/// Virtual milliseconds any one time in a scenario or flag may name (a
/// sleep, an `at-ms` trigger, a budget): 30 days. `INFINITE`
/// (0xFFFFFFFF) timeouts are exempt: they mean "wait forever".
pub const VIRTUAL_MS_MAX: u64 = 30 * 24 * 3600 * 1000;

/// Bytes of control frames `vdisim serve` holds while they arrive, all
/// connections together: 256 MiB (a frame is at most 16 MiB; a frame the
/// budget cannot hold ends its connection).
pub const PARTIAL_FRAME_BYTES_MAX: usize = 256 << 20;

/// Statements a plan file (`VDISIM_PLAN`) lists: 100,000.
pub const PLAN_STATEMENTS_MAX: usize = 100_000;

/// Concurrent connections `vdisim serve` accepts by default
/// (`--max-connections`); a connection beyond it is refused with a message.
pub const CONNECTIONS_DEFAULT: usize = 256;

/// The largest `--max-connections`: 65,536.
pub const CONNECTIONS_MAX: usize = 65_536;

/// Backups `vdisim serve` keeps in its history; older ones are forgotten
/// (and a RESTORE of them fails like one of a backup that never was):
/// 100,000.
pub const HISTORY_MAX: usize = 100_000;

/// A value beyond its bound: what, the value, the bound, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{what} = {value}: the limit is {limit}; {fix}")]
pub struct BoundError {
    /// The input (a flag, a file key, a WITH option).
    pub what: String,
    /// The value given.
    pub value: String,
    /// The bound, as a person reads it.
    pub limit: String,
    /// How to get within it.
    pub fix: String,
}

impl BoundError {
    /// An error for `what = value` beyond `limit`.
    pub fn new(
        what: impl Into<String>,
        value: impl ToString,
        limit: impl ToString,
        fix: impl Into<String>,
    ) -> BoundError {
        BoundError {
            what: what.into(),
            value: value.to_string(),
            limit: limit.to_string(),
            fix: fix.into(),
        }
    }
}

/// Checks `value <= limit`.
pub fn at_most<T: PartialOrd + ToString>(
    what: &str,
    value: T,
    limit: T,
    fix: &str,
) -> Result<T, BoundError> {
    if value <= limit {
        Ok(value)
    } else {
        Err(BoundError::new(
            what,
            value.to_string(),
            limit.to_string(),
            fix,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_of_bounds_fit_in_u64() {
        // The arithmetic the model does on bounded values.
        assert!(DATA_BYTES_MAX.checked_add(65536).is_some());
        assert!(DATA_COMMANDS_MAX.checked_mul(4 * 1024 * 1024).is_some());
        assert!(u64::from(MID_FLUSHES_MAX).checked_mul(64).is_some());
        assert!(VIRTUAL_MS_MAX.checked_mul(1000).is_some());
    }

    #[test]
    fn at_most_names_the_input_and_the_fix() {
        assert_eq!(at_most("--seeds", 5u64, 10, "fewer"), Ok(5));
        let e = at_most("--seeds", 11u64, 10, "use fewer seeds").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--seeds = 11: the limit is 10; use fewer seeds"
        );
    }
}
