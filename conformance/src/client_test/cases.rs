//! The case space `vdisim client-test` walks: what the server does
//! (statement options, read sizes, mid-stream Flushes, probe commands,
//! faults, a stall sized from the program's own timeouts), what the runner
//! does to the program (kill it, stop it, fill its disk), and the profile.
//! A case is data: the default matrix is a list of them, random mode draws
//! them, shrinking simplifies them, and a case file holds one.
//!
//! The device shape is the program's choice (its CreateEx features), not a
//! dimension the runner can set: the runner learns it from the probe and
//! adds the server behaviours that only mean something for that shape
//! ([`shape_cases`]): the media header written last on a disk-like device,
//! MEDIANAME and NOREWIND/NOUNLOAD on a tape-like one. A snapshot client is
//! declared (`--snapshot`): every statement is then `WITH SNAPSHOT`
//! ([`snapshot_matrix`]).

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use vdi_spec::CommandCode;

/// What the case's operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// The program backs up.
    Backup,
    /// The program backs up (as the case says, without its faults), then
    /// restores its own media under the case.
    Restore,
}

/// A server-side fault, triggered when the client fetches its `at`-th
/// command on device 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerFault {
    /// SignalAbort, as after KILL (clause `abort.server-signal`).
    Abort,
    /// The SQL Server process dies (clause `abort.server-death`).
    Death,
    /// The server closes device 0 early (clause `restore.early-close`).
    EarlyClose,
    /// The statement's connection cancels it (clause `abort.attention`).
    Cancel,
    /// The server stalls longer than the program's GetCommand timeout and
    /// shorter than its watchdog (clause `get-command.timeout`): sized from
    /// the program's own calls.
    Stall,
}

/// What the runner does to the program's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessFault {
    /// SIGKILL when the program fetches its `at`-th command (clause
    /// `abort.client-death`).
    Kill,
    /// SIGSTOP when it fetches its `at`-th command, SIGCONT after `ms`
    /// virtual ms (a stall of the whole process).
    Stop { ms: u64 },
    /// The program's files may not grow beyond this many bytes
    /// (RLIMIT_FSIZE, SIGXFSZ ignored): its writes fail as on a full disk.
    DiskFull { bytes: u64 },
}

/// What happens to the program's media between its backup and restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MediaFault {
    /// Device 0's file is cut to half and 777 bytes, so the last read is a
    /// partial one (clause `restore.truncated`).
    Truncate,
    /// One byte of device 0's file is flipped (clause
    /// `restore.byte-identical`).
    Corrupt,
}

/// One case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClientCase {
    /// Stable id (derived from the fields when a file gives none).
    #[serde(default)]
    pub id: String,
    pub op: Op,
    /// Devices (needs `{devices}` in the template to be more than 1).
    #[serde(default = "one")]
    pub devices: u16,
    /// Bytes of the case's database.
    #[serde(default = "default_bytes")]
    pub data_bytes: u64,
    /// WITH BLOCKSIZE / MAXTRANSFERSIZE / BUFFERCOUNT (the runner's
    /// statement only: `--ready-line` mode).
    #[serde(default)]
    pub block_size: Option<u32>,
    #[serde(default)]
    pub max_transfer_size: Option<u32>,
    #[serde(default)]
    pub buffer_count: Option<u32>,
    /// Restore read sizes: `max`, `seeded`, or bytes.
    #[serde(default)]
    pub read_sizes: Option<String>,
    /// Flushes mid-stream per device (backup).
    #[serde(default)]
    pub mid_flushes: u32,
    /// Probe commands sent besides the data stream.
    #[serde(default)]
    pub probes: Vec<CommandCode>,
    #[serde(default)]
    pub server_fault: Option<ServerFault>,
    #[serde(default)]
    pub process_fault: Option<ProcessFault>,
    #[serde(default)]
    pub media_fault: Option<MediaFault>,
    /// The fetched command (1-based, device 0) a fault fires at.
    #[serde(default = "three")]
    pub at: u64,
    /// The server does not grant VDF_RequestComplete
    /// (`server-supports-complete = false`).
    #[serde(default)]
    pub no_complete: bool,
    /// The server ends a failed statement with SignalAbort at once
    /// (`error-termination = abort`).
    #[serde(default)]
    pub abort_at_once: bool,
    /// `WITH SNAPSHOT`: a snapshot BACKUP (VDC_PrepareToFreeze,
    /// VDC_Snapshot) or RESTORE (VDC_MountSnapshot) over one device (clauses
    /// `snapshot.*`); faults fire at VDC_Snapshot / VDC_MountSnapshot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub snapshot: bool,
    /// On a disk-like device the server writes the data first and the
    /// media header last, at position 0 (`disk-header-order = last`,
    /// clause `disk.header-order`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disk_header_last: bool,
    /// A tape RESTORE reads the header's first blocks and skips the rest
    /// with VDC_SkipBlocks (`tape-restore-positioning = blocks`, clause
    /// `tape.skip-blocks`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_blocks: bool,
    /// The BACKUP says `MEDIANAME = 'vdisim-ct'` and the RESTORE checks it
    /// (clause `tape.media-name`; the runner's statement only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub media_name: bool,
    /// The BACKUP says `MEDIANAME = 'vdisim-ct'`, the RESTORE names another:
    /// the RESTORE fails (Msg 3264) and the program must not report success.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wrong_media_name: bool,
    /// BACKUP `WITH NOREWIND`, RESTORE `WITH NOUNLOAD`: no VDC_Rewind at the
    /// statement's end on a tape-like device (clause `tape.end-rewind`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_rewind: bool,
    /// Small volumes for a removable client: the program's files may not
    /// grow beyond this many bytes (RLIMIT_FSIZE, as `disk-full`), so each
    /// volume ends there and the backup spans several (END_OF_MEDIA,
    /// VDC_ClearError, VDC_Load; clause `media.next-volume`). Unlike
    /// `disk-full` a correct removable client's backup succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_bytes: Option<u64>,
    /// Before the backup `{file}` holds a longer file (twice the database
    /// of 0xEE bytes): a disk-like client that writes over it must end the
    /// file where its backup ends (a Flush sets end-of-file, clause
    /// `flush.disk-sets-eof`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale_media: bool,
}

/// The device shape a program chose in its CreateEx features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceShape {
    /// VDF_LikePipe: a byte stream.
    Pipe,
    /// VDF_LikeDisk (VDF_RandomAccess): positioned Reads and Writes.
    Disk,
    /// VDF_LikeTape (VDF_FileMarks): Rewind, filemarks, block addresses.
    Tape,
    /// VDF_LikePipe | VDF_Removable: a stream over volumes.
    Removable,
}

impl DeviceShape {
    /// The shape `features` (VDConfig.features) declare; random access
    /// wins over filemarks as it does in the server.
    pub fn from_features(features: u32) -> DeviceShape {
        use vdi_spec::Features as F;
        let f = F(features);
        if f.contains(F::RandomAccess) {
            DeviceShape::Disk
        } else if f.contains(F::FileMarks) {
            DeviceShape::Tape
        } else if f.contains(F::Removable) {
            DeviceShape::Removable
        } else {
            DeviceShape::Pipe
        }
    }

    /// How reports name it.
    pub fn name(self) -> &'static str {
        match self {
            DeviceShape::Pipe => "pipe-like (VDF_LikePipe)",
            DeviceShape::Disk => "disk-like (VDF_LikeDisk)",
            DeviceShape::Tape => "tape-like (VDF_LikeTape)",
            DeviceShape::Removable => "removable pipe-like (VDF_Removable)",
        }
    }
}

/// The volume size of the removable cases.
pub const VOLUME_BYTES: u64 = 256 << 10;

/// The media set name the tape cases write.
pub const MEDIA_NAME: &str = "vdisim-ct";
/// The name a wrong-MEDIANAME restore asks for.
pub const OTHER_MEDIA_NAME: &str = "vdisim-ct-other";

fn one() -> u16 {
    1
}
fn three() -> u64 {
    3
}
fn default_bytes() -> u64 {
    1 << 20
}

impl ClientCase {
    /// A plain case: `op` on `devices` devices, nothing else.
    pub fn plain(op: Op, devices: u16) -> ClientCase {
        ClientCase {
            id: String::new(),
            op,
            devices,
            data_bytes: default_bytes(),
            block_size: None,
            max_transfer_size: None,
            buffer_count: None,
            read_sizes: None,
            mid_flushes: 0,
            probes: Vec::new(),
            server_fault: None,
            process_fault: None,
            media_fault: None,
            at: 3,
            no_complete: false,
            abort_at_once: false,
            snapshot: false,
            disk_header_last: false,
            skip_blocks: false,
            media_name: false,
            wrong_media_name: false,
            no_rewind: false,
            volume_bytes: None,
            stale_media: false,
        }
        .named()
    }

    /// The case with its id derived from its fields (kept if set).
    pub fn named(mut self) -> ClientCase {
        if self.id.is_empty() {
            self.id = self.derived_id();
        }
        self
    }

    /// `backup`, `restore.devices-3.truncate`, ...: the op and every field
    /// that differs from a plain case.
    pub fn derived_id(&self) -> String {
        let mut parts = vec![match self.op {
            Op::Backup => "backup".to_string(),
            Op::Restore => "restore".to_string(),
        }];
        if self.snapshot {
            parts.push("snapshot".into());
        }
        if self.devices != 1 {
            parts.push(format!("devices-{}", self.devices));
        }
        if self.data_bytes != default_bytes() {
            parts.push(format!("bytes-{}", self.data_bytes));
        }
        for (name, v) in [
            ("bs", self.block_size),
            ("mts", self.max_transfer_size),
            ("bc", self.buffer_count),
        ] {
            if let Some(v) = v {
                parts.push(format!("{name}-{v}"));
            }
        }
        if let Some(r) = &self.read_sizes {
            parts.push(format!("reads-{r}"));
        }
        if self.mid_flushes > 0 {
            parts.push(format!("flushes-{}", self.mid_flushes));
        }
        for p in &self.probes {
            let name = p.name().trim_start_matches("VDC_");
            parts.push(format!("probe-{}", kebab(name)));
        }
        let at = if self.at != 3 {
            format!("-at-{}", self.at)
        } else {
            String::new()
        };
        if let Some(f) = self.server_fault {
            parts.push(format!("{}{at}", kebab(&format!("{f:?}"))));
        }
        match self.process_fault {
            Some(ProcessFault::Kill) => parts.push(format!("kill{at}")),
            Some(ProcessFault::Stop { ms }) => parts.push(format!("stop-{ms}ms{at}")),
            Some(ProcessFault::DiskFull { bytes }) => parts.push(format!("disk-full-{bytes}")),
            None => {}
        }
        if let Some(m) = self.media_fault {
            parts.push(kebab(&format!("{m:?}")));
        }
        if self.no_complete {
            parts.push("no-complete".into());
        }
        if self.abort_at_once {
            parts.push("abort-at-once".into());
        }
        if let Some(b) = self.volume_bytes {
            parts.push(format!("volumes-{b}"));
        }
        for (on, name) in [
            (self.disk_header_last, "disk-header-last"),
            (self.skip_blocks, "skip-blocks"),
            (self.media_name, "medianame"),
            (self.wrong_media_name, "wrong-medianame"),
            (self.no_rewind, "norewind"),
            (self.stale_media, "over-longer-file"),
        ] {
            if on {
                parts.push(name.into());
            }
        }
        parts.join(".")
    }

    /// Whether the case needs the runner to send the statement (options
    /// only the runner's T-SQL can carry).
    pub fn needs_runner_statement(&self) -> bool {
        self.block_size.is_some()
            || self.max_transfer_size.is_some()
            || self.buffer_count.is_some()
            || self.media_name
            || self.wrong_media_name
            || self.no_rewind
    }

    /// Whether a correct program's statement is expected to succeed.
    pub fn expects_success(&self) -> bool {
        self.server_fault.is_none_or(|f| f == ServerFault::Stall)
            && !matches!(
                self.process_fault,
                Some(ProcessFault::Kill | ProcessFault::DiskFull { .. })
            )
            && self.media_fault.is_none()
            && !self.wrong_media_name
    }

    /// The case the backup before a restore runs: the same server and
    /// statement options, no faults (its media is what the restore reads).
    pub fn backup_before(&self) -> ClientCase {
        ClientCase {
            id: String::new(),
            op: Op::Backup,
            read_sizes: None,
            probes: Vec::new(),
            server_fault: None,
            process_fault: match self.process_fault {
                Some(ProcessFault::DiskFull { bytes }) => Some(ProcessFault::DiskFull { bytes }),
                _ => None,
            },
            media_fault: None,
            media_name: self.media_name || self.wrong_media_name,
            wrong_media_name: false,
            ..self.clone()
        }
        .named()
    }
}

fn kebab(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// What the template allows the runner to vary.
#[derive(Clone, Copy, Debug)]
pub struct Space {
    /// The largest device count (1 unless the template uses `{devices}`).
    pub max_devices: u16,
    /// Whether the runner sends the statement (`--ready-line`).
    pub runner_statement: bool,
    /// The program is a snapshot client (`--snapshot`): every case is a
    /// `WITH SNAPSHOT` one.
    pub snapshot: bool,
    /// The device shape the probe saw (`None`: not known yet).
    pub shape: Option<DeviceShape>,
}

/// The default matrix: every behaviour once, on 1 device and (when the
/// template allows) on 3, and the cases of the program's device shape; for
/// a snapshot client the snapshot matrix.
pub fn default_matrix(space: Space) -> Vec<ClientCase> {
    if space.snapshot {
        return snapshot_matrix();
    }
    let mut v = pipe_matrix(space);
    v.extend(shape_cases(space, space.shape));
    v
}

/// Every case `--case ID` may name: the default matrix and the cases of
/// every shape.
pub fn known_cases(space: Space) -> Vec<ClientCase> {
    let mut v = pipe_matrix(space);
    for s in [DeviceShape::Disk, DeviceShape::Tape, DeviceShape::Removable] {
        v.extend(shape_cases(space, Some(s)));
    }
    v.extend(snapshot_matrix());
    v
}

/// The server behaviours that only mean something for a device shape.
pub fn shape_cases(space: Space, shape: Option<DeviceShape>) -> Vec<ClientCase> {
    let with = |op: Op, f: &dyn Fn(&mut ClientCase)| {
        let mut c = ClientCase::plain(op, 1);
        c.id.clear();
        f(&mut c);
        c.named()
    };
    let mut v = Vec::new();
    match shape {
        Some(DeviceShape::Disk) => {
            v.push(with(Op::Backup, &|c| c.stale_media = true));
            v.push(with(Op::Backup, &|c| c.disk_header_last = true));
            v.push(with(Op::Restore, &|c| c.disk_header_last = true));
            if space.max_devices >= 3 {
                v.push(with(Op::Restore, &|c| {
                    c.devices = 3;
                    c.disk_header_last = true;
                }));
            }
        }
        Some(DeviceShape::Removable) => {
            // 1 MiB over 256 KiB volumes: five of them.
            v.push(with(Op::Backup, &|c| c.volume_bytes = Some(VOLUME_BYTES)));
            v.push(with(Op::Restore, &|c| c.volume_bytes = Some(VOLUME_BYTES)));
        }
        Some(DeviceShape::Tape) => {
            v.push(with(Op::Restore, &|c| c.skip_blocks = true));
            if space.runner_statement {
                v.push(with(Op::Restore, &|c| c.media_name = true));
                v.push(with(Op::Restore, &|c| c.wrong_media_name = true));
                v.push(with(Op::Backup, &|c| c.no_rewind = true));
                v.push(with(Op::Restore, &|c| c.no_rewind = true));
            }
        }
        _ => {}
    }
    v
}

/// A snapshot client's cases: a snapshot BACKUP; the RESTORE of it
/// (VDC_MountSnapshot); the program stopped when VDC_Snapshot arrives (a
/// slow snapshot: the freeze time grows, clause `snapshot.freeze-time`);
/// the server's SignalAbort and the program's death at VDC_Snapshot, and a
/// SignalAbort at VDC_MountSnapshot.
pub fn snapshot_matrix() -> Vec<ClientCase> {
    let with = |op: Op, f: &dyn Fn(&mut ClientCase)| {
        let mut c = ClientCase::plain(op, 1);
        c.id.clear();
        c.snapshot = true;
        f(&mut c);
        c.named()
    };
    vec![
        with(Op::Backup, &|_| {}),
        with(Op::Restore, &|_| {}),
        with(Op::Backup, &|c| {
            c.process_fault = Some(ProcessFault::Stop { ms: 2_000 })
        }),
        with(Op::Backup, &|c| c.server_fault = Some(ServerFault::Abort)),
        with(Op::Backup, &|c| c.process_fault = Some(ProcessFault::Kill)),
        with(Op::Restore, &|c| c.server_fault = Some(ServerFault::Abort)),
    ]
}

/// The pipe matrix: what every shape gets.
fn pipe_matrix(space: Space) -> Vec<ClientCase> {
    use ServerFault as S;
    let b = |f: &dyn Fn(&mut ClientCase)| {
        let mut c = ClientCase::plain(Op::Backup, 1);
        c.id.clear();
        f(&mut c);
        c.named()
    };
    let r = |f: &dyn Fn(&mut ClientCase)| {
        let mut c = ClientCase::plain(Op::Restore, 1);
        c.id.clear();
        f(&mut c);
        c.named()
    };
    let mut v = vec![
        b(&|_| {}),
        b(&|c| c.mid_flushes = 2),
        b(&|c| c.probes = vec![CommandCode::GetError, CommandCode::FileInfoBegin]),
        b(&|c| c.no_complete = true),
        b(&|c| c.server_fault = Some(S::Abort)),
        b(&|c| c.server_fault = Some(S::Death)),
        b(&|c| c.server_fault = Some(S::Cancel)),
        b(&|c| c.server_fault = Some(S::Stall)),
        b(&|c| c.process_fault = Some(ProcessFault::Kill)),
        b(&|c| c.process_fault = Some(ProcessFault::Stop { ms: 2_000 })),
        b(&|c| c.process_fault = Some(ProcessFault::DiskFull { bytes: 256 << 10 })),
        r(&|_| {}),
        r(&|c| c.read_sizes = Some("seeded".into())),
        r(&|c| c.probes = vec![CommandCode::GetError, CommandCode::FileInfoEnd]),
        r(&|c| c.server_fault = Some(S::Abort)),
        r(&|c| c.server_fault = Some(S::EarlyClose)),
        r(&|c| c.server_fault = Some(S::Stall)),
        r(&|c| c.media_fault = Some(MediaFault::Truncate)),
        r(&|c| c.media_fault = Some(MediaFault::Corrupt)),
        r(&|c| c.abort_at_once = true),
    ];
    if space.runner_statement {
        v.push(b(&|c| {
            c.block_size = Some(4096);
            c.max_transfer_size = Some(4 << 20);
            c.buffer_count = Some(2);
        }));
        v.push(r(&|c| {
            c.max_transfer_size = Some(128 << 10);
            c.read_sizes = Some("seeded".into());
        }));
    }
    if space.max_devices >= 3 {
        v.push(b(&|c| c.devices = 3));
        v.push(b(&|c| {
            c.devices = 3;
            c.mid_flushes = 1;
            c.server_fault = Some(S::Abort);
        }));
        v.push(r(&|c| {
            c.devices = 3;
            c.read_sizes = Some("seeded".into());
        }));
    }
    v
}

/// `n` cases drawn from the space with `seed` (swarm: each case turns on a
/// random subset of the dimensions).
pub fn random_cases(space: Space, n: usize, seed: u64) -> Vec<ClientCase> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| draw(&mut rng, space)).collect()
}

/// A uniform draw from `lo..=hi`.
fn range(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> u64 {
    lo + rng.next_u64() % (hi - lo + 1)
}

/// True with probability `p`.
fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
}

fn draw(rng: &mut ChaCha8Rng, space: Space) -> ClientCase {
    let op = if chance(rng, 0.5) {
        Op::Backup
    } else {
        Op::Restore
    };
    if space.snapshot {
        return draw_snapshot(rng, op);
    }
    let mut c = ClientCase::plain(op, 1);
    c.id.clear();
    if space.max_devices > 1 && chance(rng, 0.4) {
        c.devices = range(rng, 2, u64::from(space.max_devices.min(4))) as u16;
    }
    c.data_bytes = 64 * 1024 * range(rng, 1, 32);
    if space.runner_statement && chance(rng, 0.3) {
        c.block_size = Some(512 << range(rng, 0, 7) as u32);
        c.max_transfer_size = Some(65536 * range(rng, 1, 16) as u32);
        if chance(rng, 0.5) {
            c.buffer_count = Some(range(rng, 1, 8) as u32);
        }
    }
    if op == Op::Restore && chance(rng, 0.4) {
        c.read_sizes = Some("seeded".into());
    }
    if op == Op::Backup && chance(rng, 0.3) {
        c.mid_flushes = range(rng, 1, 3) as u32;
    }
    if chance(rng, 0.25) {
        let all = [
            CommandCode::GetError,
            CommandCode::FileInfoBegin,
            CommandCode::FileInfoEnd,
        ];
        c.probes = vec![all[range(rng, 0, all.len() as u64 - 1) as usize]];
    }
    c.at = range(rng, 1, 6);
    match range(rng, 0, 9) {
        0 => c.server_fault = Some(ServerFault::Abort),
        1 => c.server_fault = Some(ServerFault::Death),
        2 => c.server_fault = Some(ServerFault::Stall),
        3 if op == Op::Restore => c.server_fault = Some(ServerFault::EarlyClose),
        4 => c.server_fault = Some(ServerFault::Cancel),
        5 => c.process_fault = Some(ProcessFault::Kill),
        6 => {
            c.process_fault = Some(ProcessFault::Stop {
                ms: 500 * range(rng, 1, 4),
            })
        }
        7 if op == Op::Restore => {
            c.media_fault = Some(if chance(rng, 0.5) {
                MediaFault::Truncate
            } else {
                MediaFault::Corrupt
            })
        }
        _ => {}
    }
    c.no_complete = chance(rng, 0.15);
    c.abort_at_once = chance(rng, 0.15);
    match space.shape {
        Some(DeviceShape::Disk) => {
            c.disk_header_last = chance(rng, 0.4);
            c.stale_media = chance(rng, 0.3);
        }
        Some(DeviceShape::Removable) if c.process_fault.is_none() && chance(rng, 0.4) => {
            c.volume_bytes = Some(64 * 1024 * range(rng, 2, 8));
        }
        Some(DeviceShape::Tape) if space.runner_statement => match range(rng, 0, 3) {
            0 => c.media_name = true,
            1 if op == Op::Restore => c.wrong_media_name = true,
            2 => c.no_rewind = true,
            _ => {}
        },
        _ => {}
    }
    c.named()
}

/// A snapshot case: one device, a fault at VDC_Snapshot / VDC_MountSnapshot
/// or none.
fn draw_snapshot(rng: &mut ChaCha8Rng, op: Op) -> ClientCase {
    let mut c = ClientCase::plain(op, 1);
    c.id.clear();
    c.snapshot = true;
    match range(rng, 0, 5) {
        0 => c.server_fault = Some(ServerFault::Abort),
        1 => c.server_fault = Some(ServerFault::Death),
        2 => c.process_fault = Some(ProcessFault::Kill),
        3 => {
            c.process_fault = Some(ProcessFault::Stop {
                ms: 500 * range(rng, 1, 4),
            })
        }
        _ => {}
    }
    c.named()
}

/// Simpler cases than `c`, simplest first: each drops or resets one
/// dimension. Shrinking keeps the first that still fails and repeats.
pub fn simpler(c: &ClientCase) -> Vec<ClientCase> {
    let mut out = Vec::new();
    let mut push = |f: &dyn Fn(&mut ClientCase)| {
        let mut s = c.clone();
        s.id.clear();
        f(&mut s);
        let s = s.named();
        if s != c.clone().named() && !out.contains(&s) {
            out.push(s);
        }
    };
    push(&|s| s.op = Op::Backup);
    push(&|s| s.devices = 1);
    push(&|s| s.server_fault = None);
    push(&|s| s.process_fault = None);
    push(&|s| s.media_fault = None);
    push(&|s| s.probes.clear());
    push(&|s| s.mid_flushes = 0);
    push(&|s| s.read_sizes = None);
    push(&|s| {
        s.block_size = None;
        s.max_transfer_size = None;
        s.buffer_count = None;
    });
    push(&|s| s.no_complete = false);
    push(&|s| s.abort_at_once = false);
    push(&|s| s.disk_header_last = false);
    push(&|s| s.skip_blocks = false);
    push(&|s| {
        s.media_name = false;
        s.wrong_media_name = false;
    });
    push(&|s| s.no_rewind = false);
    push(&|s| s.volume_bytes = None);
    push(&|s| s.stale_media = false);
    push(&|s| s.data_bytes = default_bytes());
    push(&|s| s.at = 3);
    out
}

/// Reads a case file (TOML, the fields of [`ClientCase`]).
pub fn load(path: &std::path::Path) -> Result<ClientCase, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read case file {}: {e}", path.display()))?;
    let c: ClientCase =
        toml::from_str(&text).map_err(|e| format!("case file {}: {e}", path.display()))?;
    c.check()
        .map_err(|e| format!("case file {}: {e}", path.display()))?;
    Ok(c.named())
}

impl ClientCase {
    /// The case as a case file.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks the case's values against the bounds.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=64).contains(&self.devices) {
            return Err(format!("devices = {}: a set has 1 to 64", self.devices));
        }
        if self.snapshot && self.devices != 1 {
            return Err(format!(
                "devices = {} with snapshot = true: a snapshot statement uses exactly one device (clause {})",
                self.devices,
                vdi_spec::id::SNAPSHOT_ONE_DEVICE
            ));
        }
        let b = vdi_spec::bounds::DATA_BYTES_MAX;
        if self.data_bytes == 0 || self.data_bytes > b {
            return Err(format!("data-bytes = {}: 1 to {b}", self.data_bytes));
        }
        if self.mid_flushes > vdi_spec::bounds::MID_FLUSHES_MAX {
            return Err(format!("mid-flushes = {}: at most 1024", self.mid_flushes));
        }
        if self.at == 0 || self.at > vdi_spec::bounds::DATA_COMMANDS_MAX {
            return Err(format!("at = {}: 1 to 4194304", self.at));
        }
        match self.process_fault {
            Some(ProcessFault::Stop { ms }) if ms > 600_000 => {
                return Err(format!("stop ms = {ms}: at most 600000"));
            }
            Some(ProcessFault::DiskFull { bytes: 0 }) => {
                return Err("disk-full bytes = 0: at least 1".into());
            }
            _ => {}
        }
        match self.volume_bytes {
            Some(b) if b < 4096 => {
                return Err(format!("volume-bytes = {b}: at least 4096"));
            }
            Some(_) if self.process_fault.is_some() => {
                return Err("volume-bytes with a process fault: give one or the other".into());
            }
            _ => {}
        }
        let o = vdi_spec::TransferOptions {
            block_size: self.block_size.unwrap_or(512),
            max_transfer_size: self.max_transfer_size.unwrap_or(65536),
            buffer_count: self.buffer_count,
        };
        o.validate().map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: Space = Space {
        max_devices: 64,
        runner_statement: true,
        snapshot: false,
        shape: None,
    };

    #[test]
    fn ids_name_what_differs_and_are_unique_in_the_matrix() {
        assert_eq!(ClientCase::plain(Op::Backup, 1).id, "backup");
        let m = default_matrix(FULL);
        let mut ids: Vec<&str> = m.iter().map(|c| c.id.as_str()).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "{ids:?}");
        assert!(ids.contains(&"restore.truncate"), "{ids:?}");
        assert!(ids.contains(&"backup.stall"), "{ids:?}");
        for c in &m {
            c.check().unwrap();
        }
    }

    #[test]
    fn the_matrix_follows_the_template() {
        let narrow = default_matrix(Space {
            max_devices: 1,
            runner_statement: false,
            snapshot: false,
            shape: None,
        });
        assert!(narrow.iter().all(|c| c.devices == 1));
        assert!(narrow.iter().all(|c| !c.needs_runner_statement()));
        assert!(default_matrix(FULL).len() > narrow.len());
    }

    #[test]
    fn random_cases_are_seeded_and_valid() {
        let a = random_cases(FULL, 200, 7);
        assert_eq!(a, random_cases(FULL, 200, 7));
        assert_ne!(a, random_cases(FULL, 200, 8));
        for c in &a {
            c.check().unwrap();
        }
    }

    #[test]
    fn case_files_round_trip() {
        for c in default_matrix(FULL) {
            let text = c.to_toml();
            let back: ClientCase = toml::from_str(&text).unwrap();
            assert_eq!(back, c, "{text}");
        }
    }

    #[test]
    fn shrinking_reaches_the_plain_case() {
        let mut c = random_cases(FULL, 50, 3)
            .into_iter()
            .max_by_key(|c| c.id.len())
            .unwrap();
        for _ in 0..40 {
            match simpler(&c).into_iter().next() {
                Some(s) => c = s,
                None => break,
            }
        }
        assert_eq!(c.id, "backup");
    }

    #[test]
    fn shapes_add_their_cases_and_every_known_case_is_valid() {
        let disk = default_matrix(Space {
            shape: Some(DeviceShape::Disk),
            ..FULL
        });
        assert!(disk.iter().any(|c| c.id == "restore.disk-header-last"));
        let tape = default_matrix(Space {
            shape: Some(DeviceShape::Tape),
            ..FULL
        });
        let ids: Vec<&str> = tape.iter().map(|c| c.id.as_str()).collect();
        for want in [
            "restore.skip-blocks",
            "restore.wrong-medianame",
            "backup.norewind",
            "restore.medianame",
        ] {
            assert!(ids.contains(&want), "{ids:?}");
        }
        let extra = tape.len() - default_matrix(FULL).len();
        assert!(extra <= 10, "{extra} tape cases in the default matrix");
        let snap = default_matrix(Space {
            snapshot: true,
            ..FULL
        });
        assert!(snap.iter().all(|c| c.snapshot && c.devices == 1));
        assert!(snap.iter().any(|c| c.id == "backup.snapshot.stop-2000ms"));
        let all = known_cases(FULL);
        for c in &all {
            c.check().unwrap();
            let back: ClientCase = toml::from_str(&c.to_toml()).unwrap();
            assert_eq!(&back, c);
        }
        assert!(
            !ClientCase {
                wrong_media_name: true,
                ..ClientCase::plain(Op::Restore, 1)
            }
            .expects_success()
        );
        let b = ClientCase {
            wrong_media_name: true,
            ..ClientCase::plain(Op::Restore, 1)
        }
        .backup_before();
        assert!(b.media_name && !b.wrong_media_name);
        let mut bad = ClientCase::plain(Op::Backup, 2);
        bad.snapshot = true;
        assert!(
            bad.check()
                .unwrap_err()
                .contains(vdi_spec::id::SNAPSHOT_ONE_DEVICE.as_str())
        );
    }

    #[test]
    fn random_shape_cases_are_valid_and_shrink_to_plain() {
        for shape in [DeviceShape::Disk, DeviceShape::Tape, DeviceShape::Removable] {
            let space = Space {
                shape: Some(shape),
                ..FULL
            };
            let v = random_cases(space, 300, 9);
            assert_eq!(v, random_cases(space, 300, 9));
            for c in &v {
                c.check()
                    .unwrap_or_else(|e| panic!("{shape:?} {}: {e}", c.id));
            }
            let mut c = v.iter().max_by_key(|c| c.id.len()).unwrap().clone();
            for _ in 0..60 {
                match simpler(&c).into_iter().next() {
                    Some(s) => c = s,
                    None => break,
                }
            }
            assert_eq!(c.id, "backup", "{shape:?}");
        }
        // Each shape's own dimension is drawn.
        let disk = random_cases(
            Space {
                shape: Some(DeviceShape::Disk),
                ..FULL
            },
            100,
            1,
        );
        assert!(disk.iter().any(|c| c.disk_header_last) && disk.iter().any(|c| c.stale_media));
        let removable = random_cases(
            Space {
                shape: Some(DeviceShape::Removable),
                ..FULL
            },
            100,
            1,
        );
        assert!(removable.iter().any(|c| c.volume_bytes.is_some()));
    }

    #[test]
    fn random_snapshot_cases_stay_snapshot_cases() {
        let space = Space {
            snapshot: true,
            ..FULL
        };
        for c in random_cases(space, 100, 5) {
            assert!(c.snapshot && c.devices == 1, "{c:?}");
            c.check().unwrap();
        }
    }

    #[test]
    fn shapes_come_from_the_features() {
        assert_eq!(DeviceShape::from_features(0x2000), DeviceShape::Pipe);
        assert_eq!(
            DeviceShape::from_features(0x200 | 0x2000),
            DeviceShape::Disk
        );
        assert_eq!(DeviceShape::from_features(0x173), DeviceShape::Tape);
        assert_eq!(
            DeviceShape::from_features(0x1 | 0x2000),
            DeviceShape::Removable
        );
        let r = default_matrix(Space {
            shape: Some(DeviceShape::Removable),
            ..FULL
        });
        assert!(r.iter().any(|c| c.id == "restore.volumes-262144"), "{r:?}");
    }
}
