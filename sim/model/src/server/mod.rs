//! The server half: SQL Server's side of VDI as a pure state machine.
//!
//! [`ServerHalf`] runs one BACKUP or RESTORE statement at a time against the
//! set the client created, and keeps msdb's backup history across
//! statements. It opens and configures the set, shares a buffer pool of
//! BUFFERCOUNT buffers over 1..64 devices, keeps several commands in flight
//! per device, sends Flushes (several, FILESTREAM-style) and VDC_Complete when
//! negotiated, handles IO-ERROR and ClearError, closes the devices, aborts,
//! runs the 2 × serverTimeOut watchdog, and decides the statement's outcome.
//!
//! The code: `start.rs` opens and configures the set and its devices,
//! `stream.rs` sends the command streams, `tape.rs` positions tape-like
//! devices, `snapshot.rs` runs snapshot backups and restores,
//! `completion.rs` takes the client's completions, `termination.rs` ends a
//! statement, and `invariants.rs` holds what every public transition keeps
//! (asserted in debug builds).
//!
//! Nothing here reads a clock, spawns a thread or draws randomness: time is
//! the `now` argument (virtual milliseconds), everything the server says to
//! the client is pushed onto `out`, and everything it decides is traced with
//! the clause that decides it (`who = "server"`). With tracing off no string
//! is formatted.
//!
//! Where the reference leaves a choice open, the [`Profile`] decides:
//!
//! | profile key | how the server honours it |
//! |---|---|
//! | `short-transfer` | `fail`: ERROR_SUCCESS with fewer bytes fails the statement (ShortTransfer) through the error termination; `reissue`: a Write's remainder is written again, a Read lowers the request cursor so more is read (at most [`MAX_ZERO_PROGRESS_REISSUES`] zero-byte answers in a row) |
//! | `eof-enters-io-error` | an EOF completion puts the device in IO-ERROR at once (as the client half does); VDC_ClearError follows; if the EOF was the family's normal end the restore goes on, else it fails (truncated) |
//! | `not-supported-enters-io-error` | a probe answered ERROR_NOT_SUPPORTED puts the device in IO-ERROR: VDC_ClearError, then the commands the client half auto-completed are redone and the statement goes on (on a required command ERROR_NOT_SUPPORTED is a device error either way) |
//! | `error-termination` | after a fatal device error: ClearError then SignalAbort / SignalAbort at once / ClearError then CloseDevice on every device once nothing is outstanding (statement still failed) |
//! | `server-supports-complete` | VDF_CompleteEnabled is returned (and VDC_Complete sent) only if the client asked with VDF_RequestComplete and this is `true` |
//! | `watchdog-factor` | the watchdog fires after factor × serverTimeOut ms with commands outstanding and nothing completing (0 disables it, as serverTimeOut 0 does) |
//! | `queue-depth-per-device` | commands in flight per device (at least 1) |
//! | `default-buffer-count-per-device` | BUFFERCOUNT = devices × this when the statement gives none |
//! | `device-count-mismatch-fails` | `true`: VIRTUAL_DEVICE count ≠ deviceCount aborts the set before configuration; `false`: the server uses the first min(both) devices |
//! | `restore-overread` | the last read of a family asks for a full read size instead of what remains |
//! | `snapshot-freeze-timeout-ms` | a snapshot's freeze longer than this ends with the server aborting the set (0: no limit) |
//! | `disk-header-order` | on a disk-like device (VDF_RandomAccess): `first` writes the family in sequence; `last` writes the data first and the media header at position 0 once every data Write is acknowledged, before the final Flush |
//! | `tape-restore-positioning` | on a tape-like device: `marks` skips the filemark after the header with VDC_SkipMarks 1; `address` has the BACKUP send VDC_GetPosition after the header's filemark (checked against the data set's address) and the RESTORE VDC_SetPosition to that address (the answer checked too); `blocks` has the RESTORE read the header's first blocks only (4 KiB, or one larger block), VDC_SkipBlocks over the rest, VDC_GetPosition (the header's filemark's address required) and VDC_SkipMarks 1, on devices announcing VDF_SkipBlocks (others: as `marks`) |
//!
//! Model choices the reference does not fix:
//!
//! - The server's idea of IO-ERROR follows the client half's rule (every
//!   non-success code, except ERROR_NOT_SUPPORTED and EOF unless the profile
//!   says so), so auto-completions (`auto: true`, ERROR_IO_DEVICE) are
//!   recognised: after a fatal error they are simply not done; after a
//!   non-fatal one (EOF, probe) a Write is sent again and a Read's share of
//!   the request cursor is taken back once the error is cleared.
//! - WITH options are checked before the set is opened: the client is never
//!   configured (its GetConfiguration times out, vdi-spec.md §7.1).
//! - Media are self-describing (clause `media.header`, module `media`): a
//!   BACKUP's first Write on each device is the family's 64 KiB header; a
//!   RESTORE reads every device's header first (one 64 KiB Read each) and
//!   takes its backup from them, never from the history: an empty device
//!   (NoBackup, Msg 3254), a header that is none or of another media set, a
//!   BLOCKSIZE other than the backup's (BadMedia, Msg 3241), a missing or
//!   repeated family (3132, 3227), too many devices (3231) or a backup of
//!   the wrong type (3135) fail the statement after configuration.
//! - HEADERONLY/FILELISTONLY read device 0's header, then up to
//!   `metadata_bytes` (rounded up to BLOCKSIZE, at most the family) from
//!   it; no family-count check.
//! - Restore read sizes: `Seeded(s)` hashes (s, device, read index).
//! - Mid-stream Flush `i` of `m` sits at `len × i / (m + 1)` rounded down to
//!   BLOCKSIZE; Writes are cut at that point.
//! - Final Flushes go out when every device's data is acknowledged; the
//!   VDC_Complete round starts when every final Flush is acknowledged.
//! - Probes (`ExtraCommand`) go out when their device has sent
//!   `after_data_commands` data commands, or when its stream is fully
//!   requested; they are not barriers; Read/Write probes carry a buffer of
//!   BLOCKSIZE bytes (a Write probe's data is garbage). A VDC_Complete probe
//!   is never sent without VDF_CompleteEnabled. Any answer other than
//!   ERROR_SUCCESS / ERROR_NOT_SUPPORTED is a device error.
//! - A failure that puts no device in IO-ERROR (wrong bytes, truncated
//!   stream, short transfer) under `clear-error-then-abort` aborts at once.
//! - Under `drain-then-close` (the default error termination, the Abnormal
//!   Termination page's usual path) a failing statement sends nothing new,
//!   waits until nothing is outstanding (a device in IO-ERROR drains by the
//!   client half's auto-completions), then CloseDevices every device; no
//!   VDC_ClearError, no SignalAbort; the statement fails with its messages.
//! - Client abort, watchdog and server abort keep an earlier failure's
//!   reason (a failure caused by ERROR_OPERATION_ABORTED completions becomes
//!   ClientAbort when the client's abort arrives).
//! - `close_device_early` on a device that still had work fails the
//!   statement (DeviceError, ERROR_INVALID_HANDLE as SendCommand would
//!   report) and closes the other devices once nothing is outstanding.
//! - Disk-like devices (VDF_RandomAccess; clause `disk.positioned-io`):
//!   every Read and Write carries its byte offset in the family (pipe-like
//!   ones carry it too, and their clients ignore it); a short Write's
//!   remainder under `reissue` goes out at its position even after later
//!   Writes (no stream order to keep); each acknowledged VDC_Flush is
//!   traced with the end-of-file it set: the furthest byte written
//!   (clause `flush.disk-sets-eof`).
//! - Message numbers/texts without a reference text are in [`messages`].

/// Records one trace event from the server when tracing is on; the detail is
/// only formatted then.
macro_rules! ev {
    ($tr:expr, $t:expr, $what:expr, $clause:expr, $($arg:tt)*) => {
        if $tr.on() {
            $tr.emit($t, "server", $what, format!($($arg)*), $clause);
        }
    };
}

mod completion;
mod invariants;
mod media;
pub mod messages;
mod snapshot;
mod start;
mod stream;
mod tape;
mod termination;
#[cfg(test)]
mod tests;
mod volume;

use crate::content::{Content, Extent};
use crate::msg::{BufId, Cmd, CmdId, Completion, DevIx, ToClient, ToServer};
use crate::outcome::{FailReason, Outcome, SqlMessage, Status};
use crate::statement::{BackupRecord, ReadSizes, Statement, StatementKind};
use crate::trace::Trace;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use vdi_spec::id;
use vdi_spec::layout::limits;
use vdi_spec::profile::{Disconnect, ErrorTermination, ShortTransfer};
use vdi_spec::{ClauseId, CommandCode, Features, Profile, ServerState, VdConfig, Win32};

/// Consecutive zero-byte short transfers tolerated on one device under
/// `short-transfer = reissue` before the server gives up (a bound, so a
/// client that always answers 0 bytes cannot loop the server forever).
pub const MAX_ZERO_PROGRESS_REISSUES: u32 = 8;

/// Errors kept per device in [`ServerDevSummary::errors`] (a bound; the count
/// of all errors is in [`ServerDevSummary::errors_total`]).
pub const MAX_ERRORS_KEPT: usize = 64;

/// What `IServerVirtualDeviceSet2::Open` found under the statement's first
/// device name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetInfo {
    /// The set's name.
    pub name: String,
    /// The client inputs as given to Create/CreateEx.
    pub cfg: VdConfig,
}

/// A device's state as the server sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DevState {
    /// Open; commands may be sent.
    Active,
    /// A command completed with an error; only VDC_ClearError may be sent.
    IoError,
    /// The server called CloseDevice.
    Closed,
    /// The set was aborted while the device was open.
    Aborted,
}

/// Per-device summary of what the server did (for reports and oracles).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerDevSummary {
    /// The VIRTUAL_DEVICE name.
    pub name: String,
    /// Commands sent, by command name (`"VDC_Write"`); only codes sent at least once.
    pub commands: BTreeMap<String, u64>,
    /// Bytes written and acknowledged (BACKUP) or read and verified (RESTORE).
    pub bytes: u64,
    /// The device's current (after the statement: final) state.
    pub state: DevState,
    /// Non-success completion codes the client reported, in order (at most
    /// [`MAX_ERRORS_KEPT`]).
    pub errors: Vec<Win32>,
    /// Number of non-success completions, including those not kept.
    pub errors_total: u64,
}

/// What an outstanding command is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A Write of the backup stream.
    Write,
    /// A Flush between writes (clause `flush.several`).
    MidFlush,
    /// The final Flush of a backup.
    FinalFlush,
    /// VDC_Complete.
    Complete,
    /// VDC_ClearError after IO-ERROR.
    ClearError,
    /// A probe from the plan (clause `command.not-supported`).
    Extra,
    /// A tape positioning command of the stream's sequence (clause
    /// `tape.sequence`; module `tape`).
    Tape,
    /// The VDC_Rewind that ends a statement on tape (clause
    /// `tape.end-rewind`).
    EndRewind,
    /// VDC_PrepareToFreeze, VDC_Snapshot or VDC_MountSnapshot (module
    /// `snapshot`).
    Snapshot,
    /// VDC_Load: the next volume of a removable device (module `volume`).
    Load,
}

/// An outstanding command other than a stream Read.
#[derive(Clone, Copy, Debug)]
struct Slot {
    id: CmdId,
    code: CommandCode,
    kind: Kind,
    size: u32,
    pos: u64,
    buf: Option<BufId>,
}

/// A stream Read, kept in issue order: completions are verified in that
/// order whatever order they arrive in.
#[derive(Clone, Debug)]
struct ReadSlot {
    id: CmdId,
    size: u32,
    /// How far this read moved the request cursor (less than `size` for an
    /// over-read past the end of the family).
    adv: u64,
    pos: u64,
    buf: Option<BufId>,
    /// The completion, once it arrived: code, bytes, data.
    result: Option<(Win32, u64, Content)>,
}

/// Why a device is in IO-ERROR. The server mirrors the client half's rule:
/// every non-success completion puts the device in IO-ERROR, except
/// ERROR_NOT_SUPPORTED (unless `not-supported-enters-io-error`) and
/// ERROR_HANDLE_EOF / ERROR_NO_DATA_DETECTED (unless `eof-enters-io-error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IoErr {
    /// A failure that ends the statement.
    Fatal,
    /// EOF on a read with `eof-enters-io-error` (clause `io-error.eof`):
    /// cleared with VDC_ClearError, then the restore goes on.
    Eof,
    /// ERROR_NOT_SUPPORTED on a probe with `not-supported-enters-io-error`
    /// (clause `io-error.not-supported`): cleared, commands the client half
    /// auto-completed are sent again, and the statement goes on.
    Probe,
    /// ERROR_END_OF_MEDIA on a removable device (clause
    /// `media.next-volume`): cleared, then VDC_Load, then the rest is
    /// written on the next volume.
    Volume,
}

#[derive(Clone, Debug)]
struct Dev {
    name: String,
    /// Stream origin of this device's family.
    origin: u64,
    /// RESTORE: the media header this device's first read held.
    header: Option<std::sync::Arc<crate::media::MediaHeader>>,
    /// RESTORE: the header bytes read so far (short reads gather).
    header_buf: Content,
    /// Family length.
    len: u64,
    /// RESTORE: bytes to read (the family, or the metadata prefix).
    target: u64,
    /// Request cursor: bytes written/read requested so far.
    issued: u64,
    /// Bytes acknowledged (BACKUP) or verified in order (RESTORE).
    done: u64,
    /// BACKUP on a disk-like device under `disk-header-order = last`: the
    /// media header still to be written, after the data (clause
    /// `disk.header-order`).
    header_due: bool,
    /// A tape-like device's positioning sequence (module `tape`).
    tape: tape::TapeStep,
    /// A removable device needs VDC_Load before its stream goes on (module
    /// `volume`).
    load_due: bool,
    /// The bytes acknowledged (BACKUP) or verified (RESTORE) when the
    /// current volume was loaded (`None`: still the first volume); a volume
    /// that takes or holds nothing fails the statement (module `volume`).
    volume_from: Option<u64>,
    /// BACKUP with `short-transfer = reissue`: remainders to write again.
    reissue: VecDeque<(u64, u32)>,
    data_cmds: u32,
    read_ix: u64,
    flushes_done: u32,
    /// Extra commands still to send: (after_data_commands, code), by trigger.
    extras: Vec<(u32, CommandCode)>,
    reads: VecDeque<ReadSlot>,
    others: Vec<Slot>,
    outstanding: u32,
    /// A barrier command (Flush, Complete) is outstanding.
    barrier: bool,
    state: DevState,
    io_error: Option<IoErr>,
    /// A ClearError is outstanding.
    clearing: bool,
    /// The read stream reached its end (EOF or target).
    ended: bool,
    /// FinalFlush / Complete stage acknowledged.
    stage_done: bool,
    stalls: u32,
    counts: [u64; 19],
    bytes: u64,
    /// Stream bytes passed over without a transfer (VDC_SkipBlocks over the
    /// media header, clause `tape.skip-blocks`): `done` counts them, `bytes`
    /// does not.
    skipped: u64,
    errors: Vec<Win32>,
    errors_total: u64,
}

impl Dev {
    fn new(name: String, origin: u64, len: u64, target: u64, qd: u32) -> Dev {
        let cap = qd.min(16) as usize;
        Dev {
            name,
            origin,
            header: None,
            header_buf: Content::Empty,
            len,
            target,
            issued: 0,
            done: 0,
            header_due: false,
            tape: tape::TapeStep::Off,
            load_due: false,
            volume_from: None,
            reissue: VecDeque::new(),
            data_cmds: 0,
            read_ix: 0,
            flushes_done: 0,
            extras: Vec::new(),
            reads: VecDeque::with_capacity(cap),
            others: Vec::with_capacity(cap),
            outstanding: 0,
            barrier: false,
            state: DevState::Active,
            io_error: None,
            clearing: false,
            ended: false,
            stage_done: false,
            stalls: 0,
            counts: [0; 19],
            bytes: 0,
            skipped: 0,
            errors: Vec::new(),
            errors_total: 0,
        }
    }

    fn note_error(&mut self, code: Win32) {
        self.errors_total += 1;
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push(code);
        }
    }

    /// The oldest outstanding command on this device: (code, kind).
    fn oldest_outstanding(&self) -> Option<(CommandCode, Option<Kind>, CmdId)> {
        let r = self
            .reads
            .iter()
            .find(|r| r.result.is_none())
            .map(|r| (CommandCode::Read, None, r.id));
        let o = self
            .others
            .iter()
            .map(|s| (s.code, Some(s.kind), s.id))
            .min_by_key(|x| x.2);
        match (r, o) {
            (Some(a), Some(b)) => Some(if a.2 < b.2 { a } else { b }),
            (a, b) => a.or(b),
        }
    }
}

/// Where the statement's stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Data,
    FinalFlush,
    Complete,
    /// The VDC_Rewind on every tape device after a successful stream.
    Rewind,
}

/// How a failing statement is being ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Term {
    None,
    /// Waiting for a ClearError to complete, then SignalAbort.
    ClearThenAbort,
    /// Waiting for ClearErrors and every outstanding command, then CloseDevice all.
    ClearThenClose,
    /// Waiting for every outstanding command, then CloseDevice all.
    DrainThenClose,
}

#[derive(Clone, Debug)]
struct Failure {
    reason: FailReason,
    msgs: Vec<SqlMessage>,
    code: Win32,
    dev: Option<usize>,
}

/// How the client ended things (for clause ids and traces).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientEnd {
    Abort,
    Closed,
    Died,
}

/// SQL Server's side of VDI. See the module docs.
#[derive(Debug)]
pub struct ServerHalf {
    profile: Arc<Profile>,
    history: Vec<BackupRecord>,
    /// Backups before `history` that it does not hold (numbering only).
    numbered_after: u32,
    next_id: u64,
    outcome: Outcome,
    state: ServerState,
    dead: bool,
    running: bool,
    // The current (or last) statement.
    kind: StatementKind,
    database: String,
    started: u64,
    mid_flushes: u32,
    /// HEADERONLY / FILELISTONLY: bytes read from device 0.
    metadata_bytes: u64,
    read_sizes: ReadSizes,
    features: Features,
    complete_enabled: bool,
    /// Tape-like devices are rewound when the statement succeeded
    /// (REWIND / UNLOAD; clause `tape.end-rewind`).
    end_rewind: bool,
    /// RESTORE WITH MEDIANAME: the name the media must carry (clause
    /// `tape.media-name`).
    media_name: Option<String>,
    /// WITH SNAPSHOT (module `snapshot`), where its freeze stands, the
    /// last freeze time and the messages the freeze adds to the outcome.
    snapshot: bool,
    freeze: snapshot::Freeze,
    freeze_ms: Option<u64>,
    snap_msgs: Vec<SqlMessage>,
    block: u32,
    mts: u32,
    qd: u32,
    buf_total: u32,
    buf_next: u32,
    buf_free: Vec<BufId>,
    buf_starved: bool,
    devs: Vec<Dev>,
    phase: Phase,
    record: Option<BackupRecord>,
    outstanding: u32,
    wd_anchor: u64,
    wd_period: u64,
    failure: Option<Failure>,
    term: Term,
    rr: usize,
    abort_sent: bool,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The size of restore read number `ix` on device `dev` (clause
/// `restore.read-sizes`): a multiple of `block` within `block..=mts`.
/// `Seeded(s)` is a pure function of `s`, the device and `ix`.
pub fn read_size(sizes: &ReadSizes, block: u32, mts: u32, dev: usize, ix: u64) -> u32 {
    let block = block.max(1);
    let mts = mts.max(block);
    let raw = match sizes {
        ReadSizes::Max => mts,
        ReadSizes::Fixed(n) => *n,
        ReadSizes::Cycle(v) if v.is_empty() => mts,
        ReadSizes::Cycle(v) => v[(ix % v.len() as u64) as usize],
        ReadSizes::Seeded(s) => {
            let blocks = u64::from(mts / block);
            let h = splitmix(*s ^ splitmix(((dev as u64) << 40) ^ ix));
            block.saturating_mul(1 + (h % blocks) as u32)
        }
    };
    let s = raw.clamp(block, mts);
    s - s % block
}

/// Mid-stream Flush `i` (1-based) of `m` on a family of `len` bytes sits at
/// this byte offset: evenly spaced, rounded down to a block.
fn flush_point(len: u64, m: u32, i: u32, block: u32) -> u64 {
    let p = (u128::from(len) * u128::from(i) / (u128::from(m) + 1)) as u64;
    p - p % u64::from(block.max(1))
}

fn is_eof(code: Win32) -> bool {
    code == Win32::ERROR_HANDLE_EOF || code == Win32::ERROR_NO_DATA_DETECTED
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Write => "write",
        Kind::MidFlush => "mid-flush",
        Kind::FinalFlush => "final-flush",
        Kind::Complete => "complete",
        Kind::ClearError => "clear-error",
        Kind::Extra => "extra",
        Kind::Tape => "tape",
        Kind::EndRewind => "end-rewind",
        Kind::Snapshot => "snapshot",
        Kind::Load => "load",
    }
}

impl ServerHalf {
    /// A server with empty msdb history, running nothing.
    pub fn new(profile: Arc<Profile>) -> ServerHalf {
        ServerHalf {
            profile,
            history: Vec::new(),
            numbered_after: 0,
            next_id: 1,
            outcome: Outcome::default(),
            state: ServerState::Dne,
            dead: false,
            running: false,
            kind: StatementKind::BackupDatabase,
            database: String::new(),
            started: 0,
            mid_flushes: 0,
            metadata_bytes: 0,
            read_sizes: ReadSizes::Max,
            features: Features(0),
            complete_enabled: false,
            end_rewind: false,
            media_name: None,
            snapshot: false,
            freeze: snapshot::Freeze::Idle,
            freeze_ms: None,
            snap_msgs: Vec::new(),
            block: 512,
            mts: 65536,
            qd: 1,
            buf_total: 0,
            buf_next: 0,
            buf_free: Vec::new(),
            buf_starved: false,
            devs: Vec::new(),
            phase: Phase::Data,
            record: None,
            outstanding: 0,
            wd_anchor: 0,
            wd_period: 0,
            failure: None,
            term: Term::None,
            rr: 0,
            abort_sent: false,
        }
    }

    /// Numbers this server's backups after `n` earlier ones that its
    /// history does not hold (a long-running server hands a statement only
    /// the backup it reads). Call before [`ServerHalf::add_backup`].
    pub fn number_backups_after(&mut self, n: u32) {
        self.numbered_after = n;
    }

    /// Seeds msdb history (a backup taken before this world started).
    pub fn add_backup(&mut self, rec: BackupRecord) {
        self.history.push(rec);
    }

    /// msdb backup history, oldest first.
    pub fn history(&self) -> &[BackupRecord] {
        &self.history
    }

    /// The profile this server runs under.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The current or last statement's outcome (`Status::NotStarted` before
    /// the first `start`).
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// The server-side set state (vdi-spec.md §4.4).
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// Whether no statement is running.
    pub fn is_idle(&self) -> bool {
        !self.running
    }

    /// Whether [`ServerHalf::die`] was called.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Commands sent to the client and not yet completed.
    pub fn outstanding(&self) -> u32 {
        self.outstanding
    }

    /// Whether the set's devices are disk-like (VDF_RandomAccess; clause
    /// `disk.positioned-io`).
    fn disk(&self) -> bool {
        self.features.contains(Features::RandomAccess)
    }

    /// The configuration returned to the client, features included, if the
    /// current statement got that far.
    pub fn returned_features(&self) -> Features {
        self.features
    }

    /// How far the current or last statement's data transfer is: bytes
    /// acknowledged (BACKUP) or verified (RESTORE) so far, and the bytes
    /// it will move, over all devices (a RESTORE knows its total once it
    /// has read the media headers; 0 before).
    pub fn progress(&self) -> (u64, u64) {
        let backup = self.kind.is_backup();
        self.devs
            .iter()
            .filter(|v| backup || v.header.is_some())
            .fold((0, 0), |(d, t), v| {
                let total = if backup { v.len } else { v.target };
                (d + v.done.min(total), t + total)
            })
    }

    /// Per-device summary of the current or last statement.
    pub fn devices(&self) -> Vec<ServerDevSummary> {
        self.devs
            .iter()
            .map(|d| ServerDevSummary {
                name: d.name.clone(),
                commands: CommandCode::ALL
                    .iter()
                    .zip(d.counts.iter())
                    .filter(|(_, n)| **n > 0)
                    .map(|(c, n)| (c.name().to_string(), *n))
                    .collect(),
                bytes: d.bytes,
                state: d.state,
                errors: d.errors.clone(),
                errors_total: d.errors_total,
            })
            .collect()
    }

    /// The earliest virtual time at which [`ServerHalf::on_time`] must be
    /// called: the watchdog deadline, when one is armed, or the end of a
    /// snapshot's allowed freeze.
    pub fn next_deadline(&self) -> Option<u64> {
        match (self.watchdog_deadline(), self.freeze_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn watchdog_deadline(&self) -> Option<u64> {
        if self.running && self.wd_period > 0 && self.outstanding > 0 {
            Some(self.wd_anchor.saturating_add(self.wd_period))
        } else {
            None
        }
    }

    // ------------------------------------------------------------------
    // messages from the client
    // ------------------------------------------------------------------

    /// A message from the client half.
    pub fn on_message(&mut self, now: u64, msg: ToServer, out: &mut Vec<ToClient>, tr: &mut Trace) {
        self.transition(now, |s| match msg {
            ToServer::Completed(c) => s.on_completion(now, c, out, tr),
            ToServer::Abort => s.client_end(now, ClientEnd::Abort, out, tr),
            ToServer::Closed => s.client_end(now, ClientEnd::Closed, out, tr),
            ToServer::Died => s.client_end(now, ClientEnd::Died, out, tr),
        });
    }

    // ------------------------------------------------------------------
    // time and faults
    // ------------------------------------------------------------------

    /// Checks the watchdog (clause `watchdog.fires`): with serverTimeOut > 0,
    /// commands outstanding and nothing completed for watchdog-factor ×
    /// serverTimeOut, the server aborts the set.
    pub fn on_time(&mut self, now: u64, out: &mut Vec<ToClient>, tr: &mut Trace) {
        self.transition(now, |s| {
            s.freeze_timeout(now, out, tr);
            s.watchdog(now, out, tr);
        });
    }

    /// [`ServerHalf::on_time`] without the invariant checks around it.
    fn watchdog(&mut self, now: u64, out: &mut Vec<ToClient>, tr: &mut Trace) {
        let Some(dl) = self.watchdog_deadline() else {
            return;
        };
        if now < dl {
            return;
        }
        ev!(
            tr,
            now,
            "Watchdog",
            Some(id::WATCHDOG_FIRES),
            "{} commands outstanding, nothing completed since {} ({} ms): SignalAbort",
            self.outstanding,
            self.wd_anchor,
            self.wd_period
        );
        ev!(
            tr,
            now,
            "Watchdog",
            Some(id::COMMAND_UNANSWERED),
            "unanswered commands stalled the set"
        );
        let extra = self.aborted_messages();
        match &mut self.failure {
            Some(f) => f.msgs.extend(extra),
            None => {
                self.failure = Some(Failure {
                    reason: FailReason::Watchdog,
                    msgs: extra,
                    code: Win32::ERROR_OPERATION_ABORTED,
                    dev: None,
                })
            }
        }
        self.server_abort(now, FailReason::Watchdog, Some(id::WATCHDOG_FIRES), out, tr);
    }

    /// Server-side SignalAbort requested by the fault plan (KILL).
    pub fn signal_abort(&mut self, now: u64, out: &mut Vec<ToClient>, tr: &mut Trace) {
        self.transition(now, |s| s.kill(now, out, tr));
    }

    /// [`ServerHalf::signal_abort`] without the invariant checks around it.
    fn kill(&mut self, now: u64, out: &mut Vec<ToClient>, tr: &mut Trace) {
        if !self.running {
            ev!(tr, now, "SignalAbortIgnored", None, "no statement running");
            return;
        }
        if self.failure.is_none() {
            self.failure = Some(Failure {
                reason: FailReason::ServerAbort,
                msgs: vec![messages::aborted()],
                code: Win32::ERROR_OPERATION_ABORTED,
                dev: None,
            });
        }
        self.server_abort(
            now,
            FailReason::ServerAbort,
            Some(id::ABORT_SERVER_SIGNAL),
            out,
            tr,
        );
    }

    /// The connection running the statement sent a TDS attention (a query
    /// timeout, Ctrl-C; clause `abort.attention`): the statement is aborted
    /// as by KILL — the set is aborted, outstanding commands complete with
    /// ERROR_OPERATION_ABORTED — and fails with Msg 3204 and 3013. Without a
    /// running statement the attention is only acknowledged.
    pub fn attention(&mut self, now: u64, out: &mut Vec<ToClient>, tr: &mut Trace) {
        self.transition(now, |s| s.cancel(now, out, tr));
        debug_assert!(!self.running, "an attention ends the statement");
    }

    /// [`ServerHalf::attention`] without the invariant checks around it.
    fn cancel(&mut self, now: u64, out: &mut Vec<ToClient>, tr: &mut Trace) {
        if !self.running {
            ev!(tr, now, "AttentionIgnored", None, "no statement running");
            return;
        }
        ev!(
            tr,
            now,
            "Attention",
            Some(id::ABORT_ATTENTION),
            "the client's connection cancelled the statement"
        );
        if self.failure.is_none() {
            self.failure = Some(Failure {
                reason: FailReason::Cancelled,
                msgs: vec![messages::aborted()],
                code: Win32::ERROR_OPERATION_ABORTED,
                dev: None,
            });
        }
        self.server_abort(
            now,
            FailReason::Cancelled,
            Some(id::ABORT_ATTENTION),
            out,
            tr,
        );
    }

    /// The connection running the statement ended without an attention
    /// (clause `abort.disconnect`): under the profile's
    /// `disconnect-without-attention = abort` the statement is cancelled as
    /// by [`ServerHalf::attention`]; under `run-to-end` it goes on, its
    /// result reaching no one.
    pub fn disconnected(&mut self, now: u64, out: &mut Vec<ToClient>, tr: &mut Trace) {
        if !self.running {
            return;
        }
        match self.profile.disconnect_without_attention {
            Disconnect::Abort => {
                ev!(
                    tr,
                    now,
                    "Disconnected",
                    Some(id::ABORT_DISCONNECT),
                    "the statement's connection ended: cancelled (disconnect-without-attention = abort)"
                );
                self.attention(now, out, tr);
            }
            Disconnect::RunToEnd => ev!(
                tr,
                now,
                "Disconnected",
                Some(id::ABORT_DISCONNECT),
                "the statement's connection ended: it runs to its end (disconnect-without-attention = run-to-end)"
            ),
        }
    }

    /// Fault: the server calls CloseDevice on `dev` early, as a metadata-only
    /// RESTORE does. If the device still had work to do, the statement
    /// fails (its next SendCommand would get ERROR_INVALID_HANDLE) and ends
    /// metadata-style: the remaining devices are closed once nothing is
    /// outstanding (model choice, whatever `error-termination` says; the
    /// client sees clean VD_E_CLOSEs while the statement fails).
    pub fn close_device_early(
        &mut self,
        now: u64,
        dev: DevIx,
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        self.transition(now, |s| s.close_early(now, dev, out, tr));
    }

    /// [`ServerHalf::close_device_early`] without the invariant checks
    /// around it.
    fn close_early(&mut self, now: u64, dev: DevIx, out: &mut Vec<ToClient>, tr: &mut Trace) {
        let d = usize::from(dev);
        if !self.running || d >= self.devs.len() || self.devs[d].state == DevState::Closed {
            ev!(
                tr,
                now,
                "CloseDeviceIgnored",
                None,
                "dev={dev}: not open or no statement running"
            );
            return;
        }
        debug_assert!(
            self.devs[d].state != DevState::Aborted,
            "a running statement has no Aborted device"
        );
        self.devs[d].state = DevState::Closed;
        ev!(
            tr,
            now,
            "CloseDevice",
            Some(id::RESTORE_EARLY_CLOSE),
            "dev={d} early; {} commands still outstanding on it",
            self.devs[d].outstanding
        );
        out.push(ToClient::CloseDevice { dev });
        let dv = &self.devs[d];
        // A RESTORE still reading media headers does not know how much each
        // family holds yet (clause `media.header`): any device it reads from
        // is one whose data it still needs.
        let needs_more = if self.kind.is_backup() || (self.record.is_none() && dv.target > 0) {
            true
        } else {
            !(dv.ended || dv.done >= dv.target) || !dv.extras.is_empty()
        };
        if !needs_more || self.term != Term::None {
            self.advance(now, out, tr);
            return;
        }
        let name = dv.name.clone();
        let code = Win32::ERROR_INVALID_HANDLE;
        let m = if self.kind.is_backup() {
            messages::write_failed(&name, code)
        } else {
            messages::read_failed(&name, code)
        };
        if self.failure.is_none() {
            ev!(
                tr,
                now,
                "SendCommandRejected",
                Some(id::SERVER_SEND_COMMAND_REJECTED),
                "dev={d} is closed but still had work: SendCommand would fail with ERROR_INVALID_HANDLE"
            );
            ev!(
                tr,
                now,
                "StatementFails",
                Some(id::TERM_OUTCOME_DECIDES),
                "DeviceError: {}",
                m.text
            );
            self.failure = Some(Failure {
                reason: FailReason::DeviceError,
                msgs: vec![m],
                code,
                dev: Some(d),
            });
        }
        self.term = Term::DrainThenClose;
        self.try_close_after_failure(now, out, tr);
    }

    /// The server process dies: everything stops, nothing more is sent (the
    /// world delivers `ToClient::Died` itself); a running statement fails
    /// with ServerDied and the transport error its connection gets, Msg
    /// 10054 ([`Outcome::server_died`]).
    pub fn die(&mut self, now: u64, tr: &mut Trace) {
        self.transition(now, |s| s.process_death(now, tr));
        debug_assert!(self.dead, "a server that died stays dead");
    }

    /// [`ServerHalf::die`] without the invariant checks around it.
    fn process_death(&mut self, now: u64, tr: &mut Trace) {
        if self.dead {
            return;
        }
        self.dead = true;
        ev!(
            tr,
            now,
            "Died",
            Some(id::ABORT_SERVER_DEATH),
            "server process death"
        );
        if !self.running {
            return;
        }
        self.abort_effects(now, tr);
        self.failure = None;
        self.running = false;
        self.term = Term::None;
        let died = Outcome::server_died(Some(now));
        self.outcome.status = died.status;
        self.outcome.reason = died.reason;
        self.outcome.messages = died.messages;
        self.outcome.ended_ms = died.ended_ms;
        ev!(
            tr,
            now,
            "Outcome",
            Some(id::ABORT_SERVER_DEATH),
            "Failed ServerDied"
        );
    }
}
