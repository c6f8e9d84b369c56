//! The mistakes real clients make, as flaws a [`crate::programs::ClientSpec`]
//! carries: each reproduces one seen in products (vdi-abi-and-field-notes.md
//! Part 2) or one a device mode invites (disk, tape, snapshot clients).

use serde::{Deserialize, Serialize};

/// A mistake real clients make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flaw {
    /// Leaves its device loop after a Flush and closes the set without
    /// waiting for VD_E_CLOSE (field rows 3, 14; clause `close.wait-for-close`).
    ClosesBeforeClose,
    /// Never completes commands it does not know (field row 13; clause
    /// `command.unanswered`).
    IgnoresUnknownCommands,
    /// Treats VD_E_TIMEOUT from GetCommand as fatal: SignalAbort and quit
    /// (field row 2; clause `get-command.timeout`).
    TimeoutIsFatal,
    /// Completes Read/Write with ERROR_SUCCESS but half the bytes (field row
    /// 12; clause `command.short-transfer`).
    ShortTransfers,
    /// Writes into the read-only command block before completing (field row
    /// 10; clause `complete-command.read-only-block`).
    TampersCommandBlock,
    /// During restore, waits for more data instead of answering
    /// ERROR_HANDLE_EOF (field row 11; clause `restore.truncated`).
    ReadsUntilFull,
    /// Believes the operation succeeded when every device saw VD_E_CLOSE,
    /// without looking at the statement (field row 20; clause
    /// `term.outcome-decides`).
    IgnoresOutcome,
    /// Answers VDC_Flush with ERROR_NOT_SUPPORTED (field row 18).
    FlushNotSupported,
    /// Device 0's thread calls Close (devices still open) when it fetches
    /// its 2nd command, while the other device threads are still in their
    /// loops, perhaps blocked in GetCommand (clause `close.wait-for-close`).
    /// The library must still answer every one of them: nothing hangs.
    ClosesWhileDevicesWait,
    /// A disk-like client that ignores the commands' positions: it appends
    /// each Write at its own end and answers each Read from a running
    /// cursor, as a pipe would (clause `disk.positioned-io`).
    IgnoresPosition,
    /// A disk-like client whose Flush does not set end-of-file: bytes an
    /// older, longer file held beyond the backup stay (clause
    /// `flush.disk-sets-eof`).
    NoEndOfFile,
    /// Completes VDC_Snapshot with ERROR_OPERATION_ABORTED: it could not
    /// take the snapshot (clause `snapshot.abort`).
    AbortsSnapshot,
    /// A tape-like client that answers VDC_SetPosition with ERROR_SUCCESS
    /// and the address it was given without moving its tape (clause
    /// `tape.set-position`).
    IgnoresSetPosition,
    /// A tape-like client that answers VDC_SkipBlocks with ERROR_SUCCESS
    /// without moving its tape (clause `tape.skip-blocks`).
    IgnoresSkipBlocks,
}

impl Flaw {
    pub const ALL: [Flaw; 9] = [
        Flaw::ClosesBeforeClose,
        Flaw::IgnoresUnknownCommands,
        Flaw::TimeoutIsFatal,
        Flaw::ShortTransfers,
        Flaw::TampersCommandBlock,
        Flaw::ReadsUntilFull,
        Flaw::IgnoresOutcome,
        Flaw::FlushNotSupported,
        Flaw::ClosesWhileDevicesWait,
    ];
    /// Flaws of disk-like and snapshot clients: they change nothing for a
    /// pipe-like one, so they are kept apart from [`Flaw::ALL`] (which the
    /// random pipe-client generators and the determinism pins draw from).
    pub const DEVICE_MODES: [Flaw; 5] = [
        Flaw::IgnoresPosition,
        Flaw::NoEndOfFile,
        Flaw::AbortsSnapshot,
        Flaw::IgnoresSetPosition,
        Flaw::IgnoresSkipBlocks,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Flaw::ClosesBeforeClose => "closes-before-close",
            Flaw::IgnoresUnknownCommands => "ignores-unknown-commands",
            Flaw::TimeoutIsFatal => "timeout-is-fatal",
            Flaw::ShortTransfers => "short-transfers",
            Flaw::TampersCommandBlock => "tampers-command-block",
            Flaw::ReadsUntilFull => "reads-until-full",
            Flaw::IgnoresOutcome => "ignores-outcome",
            Flaw::FlushNotSupported => "flush-not-supported",
            Flaw::ClosesWhileDevicesWait => "closes-while-devices-wait",
            Flaw::IgnoresPosition => "ignores-position",
            Flaw::NoEndOfFile => "no-end-of-file",
            Flaw::AbortsSnapshot => "aborts-snapshot",
            Flaw::IgnoresSetPosition => "ignores-set-position",
            Flaw::IgnoresSkipBlocks => "ignores-skip-blocks",
        }
    }
    pub fn from_name(s: &str) -> Option<Flaw> {
        Flaw::ALL
            .iter()
            .chain(Flaw::DEVICE_MODES.iter())
            .copied()
            .find(|f| f.name() == s)
    }
}
