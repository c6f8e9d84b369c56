//! BACKUP and RESTORE statements as the server half runs them, the
//! server-side plan a scenario sets, and the backup history (msdb) that lets
//! a RESTORE know what the media must hold.

use crate::content::origin_of;
use crate::media::{BackupType, HEADER_BYTES, MediaHeader, SetId};
use crate::msg::DevIx;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vdi_spec::bounds::{self, BoundError};
use vdi_spec::{CommandCode, TransferOptions};

/// The statement forms vdisim runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatementKind {
    BackupDatabase,
    BackupLog,
    RestoreDatabase,
    RestoreLog,
    RestoreHeaderOnly,
    RestoreFilelistOnly,
    RestoreVerifyOnly,
}

impl StatementKind {
    pub fn is_backup(self) -> bool {
        matches!(
            self,
            StatementKind::BackupDatabase | StatementKind::BackupLog
        )
    }
    /// HEADERONLY and FILELISTONLY read a prefix, then close (clause `restore.early-close`).
    pub fn is_metadata_only(self) -> bool {
        matches!(
            self,
            StatementKind::RestoreHeaderOnly | StatementKind::RestoreFilelistOnly
        )
    }
    /// The words SQL Server uses in messages: "BACKUP DATABASE", "RESTORE HEADERONLY", ...
    pub fn verb(self) -> &'static str {
        match self {
            StatementKind::BackupDatabase => "BACKUP DATABASE",
            StatementKind::BackupLog => "BACKUP LOG",
            StatementKind::RestoreDatabase => "RESTORE DATABASE",
            StatementKind::RestoreLog => "RESTORE LOG",
            StatementKind::RestoreHeaderOnly => "RESTORE HEADERONLY",
            StatementKind::RestoreFilelistOnly => "RESTORE FILELISTONLY",
            StatementKind::RestoreVerifyOnly => "RESTORE VERIFYONLY",
        }
    }
}

/// How the server sizes restore reads (clause `restore.read-sizes`). Every
/// size is clamped into `BLOCKSIZE..=MAXTRANSFERSIZE` and rounded down to a
/// multiple of BLOCKSIZE.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadSizes {
    /// Always MAXTRANSFERSIZE.
    Max,
    /// Always this many bytes.
    Fixed(u32),
    /// These sizes in turn.
    Cycle(Vec<u32>),
    /// A pseudo-random multiple of BLOCKSIZE per read, a pure function of
    /// this seed and the read's index.
    Seeded(u64),
}

/// A command the server sends besides the data stream, to probe how the
/// client answers commands it may not support (clause `command.not-supported`).
/// In files: `{ dev = 0, after-data-commands = 2, code = "GetError" }`
/// (command names without the `VDC_` prefix).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExtraCommand {
    #[serde(default)]
    pub dev: DevIx,
    /// Sent once this many data commands have been sent on the device.
    #[serde(default, alias = "after_data_commands")]
    pub after_data_commands: u32,
    pub code: CommandCode,
}

/// The tape WITH options of a statement: `MEDIANAME = name`,
/// `REWIND | NOREWIND` (BACKUP) and `UNLOAD | NOUNLOAD`. They matter on
/// tape-like (VDF_LikeTape) devices only (clause `tape.end-rewind`): at
/// the statement's end the server rewinds the tape with VDC_Rewind unless
/// a BACKUP says NOREWIND (which implies NOUNLOAD) or a RESTORE says
/// NOUNLOAD. VDI has no command that unloads a medium, so UNLOAD shows as
/// that rewind alone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct TapeOptions {
    /// `MEDIANAME`: the media set's name (at most 128 characters).
    pub media_name: Option<String>,
    /// `REWIND` (the default) or `NOREWIND`.
    pub rewind: bool,
    /// `UNLOAD` (the default) or `NOUNLOAD`.
    pub unload: bool,
}

impl Default for TapeOptions {
    fn default() -> Self {
        TapeOptions {
            media_name: None,
            rewind: true,
            unload: true,
        }
    }
}

impl TapeOptions {
    pub fn is_default(&self) -> bool {
        *self == TapeOptions::default()
    }
    // The signature serde's `skip_serializing_if` needs for a boxed field.
    #[allow(clippy::borrowed_box)]
    fn is_default_boxed(t: &Box<TapeOptions>) -> bool {
        t.is_default()
    }

    /// Whether a statement of `kind` ends with VDC_Rewind on a tape-like
    /// device: a BACKUP unless NOREWIND, a RESTORE unless NOUNLOAD.
    pub fn rewinds_at_end(&self, kind: StatementKind) -> bool {
        if kind.is_backup() {
            self.rewind
        } else {
            self.unload
        }
    }

    /// The WITH items these options add to a statement's text (none for
    /// the defaults).
    pub fn tsql(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(n) = &self.media_name {
            v.push(format!("MEDIANAME={}", quote_literal(n)));
        }
        if !self.rewind {
            v.push("NOREWIND".into());
        }
        if !self.unload {
            v.push("NOUNLOAD".into());
        }
        v
    }
}

/// Server-side behaviour that is not T-SQL: how much data, how many
/// Flushes, read sizes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct ServerPlan {
    /// BACKUP: bytes of database data to stream, rounded up to BLOCKSIZE.
    pub data_bytes: u64,
    /// BACKUP: Flushes sent mid-stream on each device (FILESTREAM-style;
    /// clause `flush.several`), evenly spaced.
    pub mid_flushes: u32,
    /// RESTORE: read sizes.
    pub read_sizes: ReadSizes,
    /// RESTORE HEADERONLY/FILELISTONLY: bytes read from the first device
    /// before the server closes every device.
    pub metadata_bytes: u64,
    /// Extra commands to send.
    pub extra_commands: Vec<ExtraCommand>,
    /// BACKUP: what the media header says beyond the layout (the server
    /// process's database identity, LSNs, clock); the deterministic world
    /// leaves it default.
    #[serde(default, skip_serializing_if = "BackupMeta::is_default_boxed")]
    pub media: Box<BackupMeta>,
    /// The statement's tape options (T-SQL, applied here by the parser as
    /// the media's meta is).
    #[serde(default, skip_serializing_if = "TapeOptions::is_default_boxed")]
    pub tape: Box<TapeOptions>,
    /// `WITH SNAPSHOT` (or `METADATA_ONLY`): a snapshot BACKUP or RESTORE
    /// (clauses `snapshot.*`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub snapshot: bool,
}

impl Default for ServerPlan {
    fn default() -> Self {
        ServerPlan {
            data_bytes: 4 * 1024 * 1024,
            mid_flushes: 0,
            read_sizes: ReadSizes::Max,
            metadata_bytes: 64 * 1024,
            extra_commands: Vec::new(),
            media: Box::default(),
            tape: Box::default(),
            snapshot: false,
        }
    }
}

impl ReadSizes {
    /// The smallest read these sizes can ask for (after the clamp into
    /// `BLOCKSIZE..=MAXTRANSFERSIZE`).
    pub fn smallest(&self, o: &TransferOptions) -> u32 {
        let block = o.block_size.max(1);
        let clamp = |n: u32| n.clamp(block, o.max_transfer_size.max(block));
        match self {
            ReadSizes::Max => o.max_transfer_size.max(block),
            ReadSizes::Fixed(n) => clamp(*n),
            ReadSizes::Cycle(v) => v.iter().map(|n| clamp(*n)).min().unwrap_or(block),
            ReadSizes::Seeded(_) => block,
        }
    }
}

impl ServerPlan {
    /// Checks the plan against the project's bounds (`vdi_spec::bounds`)
    /// for a statement with these options over `devices` devices: a BACKUP
    /// of `data_bytes`, or a RESTORE reading `restore_bytes` (the backup's
    /// size; `data_bytes` when unknown). Within them every count the server
    /// half computes fits in a `u64`.
    pub fn check_bounds(
        &self,
        o: &TransferOptions,
        devices: usize,
        kind: StatementKind,
        restore_bytes: Option<u64>,
    ) -> Result<(), BoundError> {
        bounds::at_most(
            "data-bytes",
            self.data_bytes,
            bounds::DATA_BYTES_MAX,
            "use a smaller database (1 TiB at most)",
        )?;
        bounds::at_most(
            "mid-flushes",
            self.mid_flushes,
            bounds::MID_FLUSHES_MAX,
            "ask for fewer Flushes per device",
        )?;
        bounds::at_most(
            "metadata-bytes",
            self.metadata_bytes,
            bounds::METADATA_BYTES_MAX,
            "read a smaller header",
        )?;
        bounds::at_most(
            "extra-commands",
            self.extra_commands.len(),
            bounds::EXTRA_COMMANDS_MAX,
            "probe with fewer extra commands",
        )?;
        if let ReadSizes::Cycle(v) = &self.read_sizes {
            bounds::at_most(
                "read-sizes (entries)",
                v.len(),
                bounds::READ_SIZE_CYCLE_MAX,
                "use a shorter cycle",
            )?;
        }
        if let Some(c) = o.buffer_count {
            bounds::at_most(
                "BUFFERCOUNT x MAXTRANSFERSIZE",
                u64::from(c) * u64::from(o.max_transfer_size),
                bounds::BUFFER_AREA_BYTES_MAX,
                "lower BUFFERCOUNT or MAXTRANSFERSIZE (2 GiB of buffers at most)",
            )?;
        }
        let (bytes, unit, what) = if kind.is_backup() {
            (self.data_bytes, o.max_transfer_size, "backup")
        } else {
            let bytes = restore_bytes.unwrap_or(self.data_bytes);
            (bytes, self.read_sizes.smallest(o), "restore")
        };
        bounds::at_most(
            "data-bytes",
            bytes,
            bounds::DATA_BYTES_MAX,
            "use a smaller database (1 TiB at most)",
        )?;
        let commands =
            bytes.div_ceil(u64::from(unit.max(1))) + u64::from(self.mid_flushes) * devices as u64;
        bounds::at_most(
            &format!("data commands of this {what} ({bytes} bytes in transfers of {unit})"),
            commands,
            bounds::DATA_COMMANDS_MAX,
            "use a larger MAXTRANSFERSIZE (or read size), or fewer data bytes",
        )?;
        Ok(())
    }
}

/// The statement to run, as files write it: a scenario's `[server]` table
/// and a plan file's `[[statement]]` entries share this one schema.
/// [`StatementSpec::resolve`] turns it into the [`Statement`] the server
/// half runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct StatementSpec {
    /// `backup-database`, `backup-log`, `restore-database`, `restore-log`,
    /// `restore-header-only`, `restore-filelist-only`, `restore-verify-only`.
    #[serde(alias = "kind")]
    pub statement: StatementKind,
    /// The database (default `sales`).
    pub database: String,
    /// The VIRTUAL_DEVICE clauses: a count (names `{set}`, `{set}-dev1`,
    /// ...), or the names themselves (`{set}` is replaced by the set's
    /// name). Absent: as many as the set's deviceCount, where the set is
    /// known when the statement is resolved (a plan), else 1.
    pub devices: Option<DeviceList>,
    /// BLOCKSIZE (default 512).
    pub block_size: u32,
    /// MAXTRANSFERSIZE (default 65536).
    pub max_transfer_size: u32,
    /// BUFFERCOUNT (default: the profile's rule).
    pub buffer_count: Option<u32>,
    /// BACKUP: bytes of database data (default 256 KiB), rounded up to
    /// BLOCKSIZE.
    pub data_bytes: u64,
    /// BACKUP: Flushes sent mid-stream on each device (default 0).
    pub mid_flushes: u32,
    /// RESTORE read sizes (default `"max"`).
    pub read_sizes: ReadSizeSpec,
    /// HEADERONLY / FILELISTONLY: bytes read before closing (default 64 KiB).
    pub metadata_bytes: u64,
    /// Probes: commands sent besides the data stream.
    pub extra_commands: Vec<ExtraCommand>,
    /// MEDIANAME, REWIND | NOREWIND, UNLOAD | NOUNLOAD (default: no name,
    /// REWIND, UNLOAD).
    pub tape: TapeOptions,
    /// WITH SNAPSHOT (default false).
    pub snapshot: bool,
}

/// VIRTUAL_DEVICE clauses in a file: how many, or which names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DeviceList {
    Count(u16),
    Names(Vec<String>),
}

/// Restore read sizes in a file: `"max"`, `"seeded"` (from the run's
/// seed), a byte count, a list of byte counts taken in turn, or the
/// tagged forms `{ fixed = n }`, `{ cycle = [..] }`, `{ seeded = s }` (`s`
/// XORed with the run's seed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReadSizeSpec {
    Word(String),
    Bytes(u32),
    Cycle(Vec<u32>),
    Tagged(ReadSizes),
}

impl Default for StatementSpec {
    fn default() -> Self {
        StatementSpec {
            statement: StatementKind::BackupDatabase,
            database: "sales".into(),
            devices: None,
            block_size: 512,
            max_transfer_size: 65536,
            buffer_count: None,
            data_bytes: 256 * 1024,
            mid_flushes: 0,
            read_sizes: ReadSizeSpec::Word("max".into()),
            metadata_bytes: 64 * 1024,
            extra_commands: Vec::new(),
            tape: TapeOptions::default(),
            snapshot: false,
        }
    }
}

/// Why a statement in a file cannot be run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("read-sizes \"{0}\": use \"max\", \"seeded\", a byte count or a list of them")]
    ReadSizes(String),
    #[error("devices: a statement names 1 to 64 virtual devices, not {0}")]
    Devices(usize),
    #[error(transparent)]
    Bound(#[from] BoundError),
}

impl ReadSizeSpec {
    /// The read sizes at `seed`.
    pub fn resolve(&self, seed: u64) -> Result<ReadSizes, SpecError> {
        Ok(match self {
            ReadSizeSpec::Word(w) if w == "max" => ReadSizes::Max,
            ReadSizeSpec::Word(w) if w == "seeded" => ReadSizes::Seeded(seed),
            ReadSizeSpec::Word(w) => return Err(SpecError::ReadSizes(w.clone())),
            ReadSizeSpec::Bytes(b) => ReadSizes::Fixed(*b),
            ReadSizeSpec::Cycle(v) => ReadSizes::Cycle(v.clone()),
            ReadSizeSpec::Tagged(ReadSizes::Seeded(s)) => ReadSizes::Seeded(s ^ seed),
            ReadSizeSpec::Tagged(r) => r.clone(),
        })
    }
}

impl StatementSpec {
    /// The WITH options.
    pub fn options(&self) -> TransferOptions {
        TransferOptions {
            block_size: self.block_size,
            max_transfer_size: self.max_transfer_size,
            buffer_count: self.buffer_count,
        }
    }

    /// The server's plan at `seed`.
    pub fn plan(&self, seed: u64) -> Result<ServerPlan, SpecError> {
        Ok(ServerPlan {
            data_bytes: self.data_bytes,
            mid_flushes: self.mid_flushes,
            read_sizes: self.read_sizes.resolve(seed)?,
            metadata_bytes: self.metadata_bytes,
            extra_commands: self.extra_commands.clone(),
            media: Box::default(),
            tape: Box::new(self.tape.clone()),
            snapshot: self.snapshot,
        })
    }

    /// The VIRTUAL_DEVICE names for set `set` whose deviceCount is
    /// `device_count` (used when the file names none).
    pub fn device_names(&self, set: &str, device_count: u16) -> Vec<String> {
        match &self.devices {
            Some(DeviceList::Names(v)) => v.iter().map(|n| n.replace("{set}", set)).collect(),
            Some(DeviceList::Count(n)) => default_device_names(set, *n),
            None => default_device_names(set, device_count.max(1)),
        }
    }

    /// How many devices the statement names (`device_count` when the file
    /// names none).
    pub fn device_count(&self, device_count: u16) -> u16 {
        match &self.devices {
            Some(DeviceList::Names(v)) => u16::try_from(v.len()).unwrap_or(u16::MAX),
            Some(DeviceList::Count(n)) => *n,
            None => device_count.max(1),
        }
    }

    /// The statement for set `set` (deviceCount `device_count`) at `seed`.
    pub fn resolve(&self, set: &str, device_count: u16, seed: u64) -> Result<Statement, SpecError> {
        let devices = self.device_names(set, device_count);
        if devices.is_empty() || devices.len() > 64 {
            return Err(SpecError::Devices(devices.len()));
        }
        let stmt = Statement {
            kind: self.statement,
            database: self.database.clone(),
            devices,
            options: self.options(),
            plan: self.plan(seed)?,
        };
        stmt.check_bounds(None)?;
        Ok(stmt)
    }
}

/// `set`, `set-dev1`, ... (`n` names): the first device is named like the
/// set (clause `open-device.first-is-set-name`).
pub fn default_device_names(set: &str, n: u16) -> Vec<String> {
    (0..n)
        .map(|i| {
            if i == 0 {
                set.to_string()
            } else {
                format!("{set}-dev{i}")
            }
        })
        .collect()
}

/// A BACKUP or RESTORE statement.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Statement {
    pub kind: StatementKind,
    pub database: String,
    /// VIRTUAL_DEVICE names in clause order; the first names the set.
    pub devices: Vec<String>,
    pub options: TransferOptions,
    pub plan: ServerPlan,
}

impl Statement {
    /// The T-SQL text of this statement, with the database quoted as an
    /// identifier (`]` doubled) and device names as string literals (`'`
    /// doubled), so any name round-trips safely.
    pub fn to_tsql(&self) -> String {
        let devs: Vec<String> = self
            .devices
            .iter()
            .map(|d| format!("VIRTUAL_DEVICE={}", quote_literal(d)))
            .collect();
        let o = &self.options;
        let mut with = vec![
            format!("BLOCKSIZE={}", o.block_size),
            format!("MAXTRANSFERSIZE={}", o.max_transfer_size),
        ];
        if let Some(c) = o.buffer_count {
            with.push(format!("BUFFERCOUNT={c}"));
        }
        with.extend(self.plan.tape.tsql());
        if self.plan.snapshot {
            with.push("SNAPSHOT".into());
        }
        let prep = if self.kind.is_backup() { "TO" } else { "FROM" };
        let db = match self.kind {
            StatementKind::RestoreHeaderOnly
            | StatementKind::RestoreFilelistOnly
            | StatementKind::RestoreVerifyOnly => String::new(),
            _ => format!(" {}", quote_ident(&self.database)),
        };
        format!(
            "{}{db} {prep} {} WITH {}",
            self.kind.verb(),
            devs.join(", "),
            with.join(", ")
        )
    }
}

impl Statement {
    /// Checks the statement against the project's bounds: names of at most
    /// 128 characters (`sysname`), and its plan (see
    /// [`ServerPlan::check_bounds`]). `restore_bytes` is the size of the
    /// backup a RESTORE reads, when known.
    pub fn check_bounds(&self, restore_bytes: Option<u64>) -> Result<(), BoundError> {
        let media_name = self.plan.tape.media_name.iter();
        for name in std::iter::once(&self.database)
            .chain(&self.devices)
            .chain(media_name)
        {
            bounds::at_most(
                "name length",
                name.chars().count(),
                bounds::NAME_CHARS_MAX,
                "use a name of at most 128 characters",
            )?;
        }
        self.plan
            .check_bounds(&self.options, self.devices.len(), self.kind, restore_bytes)
    }
}

/// A T-SQL delimited identifier: `[name]` with `]` doubled.
pub fn quote_ident(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// A T-SQL Unicode string literal: `N'text'` with `'` doubled.
pub fn quote_literal(text: &str) -> String {
    format!("N'{}'", text.replace('\'', "''"))
}

/// The backup a RESTORE of `database` reads: the latest in msdb history of
/// that database (any database for HEADERONLY / FILELISTONLY / VERIFYONLY,
/// which name none).
pub fn backup_to_restore<'a>(
    history: &'a [BackupRecord],
    database: &str,
) -> Option<&'a BackupRecord> {
    history
        .iter()
        .rev()
        .find(|r| database.is_empty() || r.database == database)
}

/// One media family of a backup: the bytes one device received after the
/// family's media header (at media positions `HEADER_BYTES..`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Family {
    pub origin: u64,
    /// Data bytes (the media hold `HEADER_BYTES` more).
    pub len: u64,
}

impl Family {
    /// Bytes of the family's media: the header region and the data.
    pub fn media_len(&self) -> u64 {
        HEADER_BYTES + self.len
    }
}

/// What a backup's media headers say beyond its layout: the identity and
/// state of the database it copied, as the server running it knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct BackupMeta {
    /// The backup set's identity; [`BackupRecord::plan`] derives one from
    /// the database and the backup's number, which a server plan's 0 keeps.
    pub set_id: SetId,
    pub server: String,
    pub backup_type: BackupType,
    pub checksum: bool,
    pub copy_only: bool,
    /// The database content identity the backup copies.
    pub content: u64,
    /// The database's size (the data streamed is this, rounded up to
    /// BLOCKSIZE).
    pub database_bytes: u64,
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub checkpoint_lsn: u64,
    pub database_backup_lsn: u64,
    pub started_unix_ms: u64,
    /// The media set's name (MEDIANAME; empty: none).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub media_name: String,
}

impl BackupMeta {
    pub fn is_default(&self) -> bool {
        *self == BackupMeta::default()
    }
    // The signature serde's `skip_serializing_if` needs for a boxed field.
    #[allow(clippy::borrowed_box)]
    fn is_default_boxed(m: &Box<BackupMeta>) -> bool {
        m.is_default()
    }
}

/// A finished backup, as msdb records it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BackupRecord {
    pub database: String,
    pub kind: StatementKind,
    /// 1-based backup number within this server.
    pub number: u32,
    pub block_size: u32,
    pub max_transfer_size: u32,
    pub families: Vec<Family>,
    #[serde(default)]
    pub meta: BackupMeta,
}

impl BackupRecord {
    /// The layout a backup of `data_bytes` (rounded up to `block_size`) over
    /// `devices` devices produces (clause `stripe.distribution`): the stream
    /// is cut into MAXTRANSFERSIZE chunks dealt round-robin, and family `k`
    /// is its own stream of the bytes device `k` received.
    pub fn plan(
        database: &str,
        kind: StatementKind,
        number: u32,
        devices: usize,
        data_bytes: u64,
        options: &TransferOptions,
    ) -> BackupRecord {
        let block = u64::from(options.block_size.max(1));
        let total = data_bytes.div_ceil(block) * block;
        let chunk = u64::from(options.max_transfer_size).max(block);
        let n = devices.max(1) as u64;
        let full_chunks = total / chunk;
        let tail = total % chunk;
        let db = crate::trace::fnv1a(0xcbf2_9ce4_8422_2325, database.as_bytes());
        let families = (0..n)
            .map(|k| {
                let mut len = (full_chunks / n + u64::from(k < full_chunks % n)) * chunk;
                if tail > 0 && full_chunks % n == k {
                    len += tail;
                }
                Family {
                    origin: origin_of(&[db, u64::from(number), k, n]),
                    len,
                }
            })
            .collect();
        BackupRecord {
            database: database.to_string(),
            kind,
            number,
            block_size: options.block_size,
            max_transfer_size: options.max_transfer_size,
            families,
            meta: BackupMeta {
                set_id: SetId(
                    (u128::from(origin_of(&[db, u64::from(number), 0x5E7])) << 64)
                        | u128::from(origin_of(&[db, u64::from(number), 0x1D])),
                ),
                database_bytes: data_bytes,
                ..BackupMeta::default()
            },
        }
    }

    /// Data bytes over every family (the media hold a header more each).
    pub fn total_bytes(&self) -> u64 {
        self.families.iter().map(|f| f.len).sum()
    }

    /// Media bytes over every family: headers and data.
    pub fn media_bytes(&self) -> u64 {
        self.families.iter().map(Family::media_len).sum()
    }

    /// The media header of family `k` (0-based).
    pub fn header(&self, k: usize) -> MediaHeader {
        let f = self
            .families
            .get(k)
            .copied()
            .unwrap_or(Family { origin: 0, len: 0 });
        let m = &self.meta;
        MediaHeader {
            set_id: m.set_id,
            number: self.number,
            family: (k + 1).min(usize::from(u16::MAX)) as u16,
            families: self.families.len().min(usize::from(u16::MAX)) as u16,
            backup_type: m.backup_type,
            checksum: m.checksum,
            copy_only: m.copy_only,
            block_size: self.block_size,
            max_transfer_size: self.max_transfer_size,
            family_bytes: f.len,
            database_bytes: m.database_bytes,
            origin: f.origin,
            content: m.content,
            first_lsn: m.first_lsn,
            last_lsn: m.last_lsn,
            checkpoint_lsn: m.checkpoint_lsn,
            database_backup_lsn: m.database_backup_lsn,
            started_unix_ms: m.started_unix_ms,
            database: self.database.clone(),
            server: m.server.clone(),
            media_name: m.media_name.clone(),
        }
    }

    /// Family `k`'s media: its header region, then its data stream at
    /// media positions `HEADER_BYTES..`.
    pub fn family_media(&self, k: usize) -> crate::content::Content {
        let f = self
            .families
            .get(k)
            .copied()
            .unwrap_or(Family { origin: 0, len: 0 });
        let mut c = crate::content::Content::header(Arc::new(self.header(k)));
        c.append(&crate::content::Content::stream(
            f.origin,
            HEADER_BYTES,
            f.len,
        ));
        c
    }

    /// What a client that took this backup holds: one medium per family,
    /// each exactly the family's media.
    pub fn media(&self) -> Vec<crate::content::Content> {
        (0..self.families.len())
            .map(|k| self.family_media(k))
            .collect()
    }

    /// The backup a set of family headers (one per device, in device
    /// order) describes, families in family order.
    pub fn from_headers(headers: &[Arc<MediaHeader>]) -> Option<BackupRecord> {
        let first = headers.first()?;
        let mut families = vec![Family { origin: 0, len: 0 }; usize::from(first.families)];
        for h in headers {
            *families.get_mut(usize::from(h.family).checked_sub(1)?)? = Family {
                origin: h.origin,
                len: h.family_bytes,
            };
        }
        let kind = match first.backup_type {
            BackupType::Log => StatementKind::BackupLog,
            BackupType::Full | BackupType::Differential => StatementKind::BackupDatabase,
        };
        Some(BackupRecord {
            database: first.database.clone(),
            kind,
            number: first.number,
            block_size: first.block_size,
            max_transfer_size: first.max_transfer_size,
            families,
            meta: BackupMeta {
                set_id: first.set_id,
                server: first.server.clone(),
                backup_type: first.backup_type,
                checksum: first.checksum,
                copy_only: first.copy_only,
                content: first.content,
                database_bytes: first.database_bytes,
                first_lsn: first.first_lsn,
                last_lsn: first.last_lsn,
                checkpoint_lsn: first.checkpoint_lsn,
                database_backup_lsn: first.database_backup_lsn,
                started_unix_ms: first.started_unix_ms,
                media_name: first.media_name.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bounds (`vdi_spec::bounds`): sizes that would wrap, and work without
    /// end, are refused; the largest accepted values leave room in a u64.
    #[test]
    fn bounds_refuse_wrapping_and_endless_plans() {
        let o = TransferOptions {
            block_size: 512,
            max_transfer_size: 4 * 1024 * 1024,
            buffer_count: None,
        };
        let ok = |p: &ServerPlan, kind| p.check_bounds(&o, 64, kind, None);
        let mut p = ServerPlan {
            data_bytes: vdi_spec::bounds::DATA_BYTES_MAX,
            read_sizes: ReadSizes::Max,
            ..ServerPlan::default()
        };
        assert!(ok(&p, StatementKind::BackupDatabase).is_ok());
        assert!(ok(&p, StatementKind::RestoreDatabase).is_ok());
        p.read_sizes = ReadSizes::Seeded(1);
        let e = ok(&p, StatementKind::RestoreDatabase).unwrap_err();
        assert!(e.what.contains("restore"), "{e}");
        p.data_bytes = u64::MAX;
        assert_eq!(
            ok(&p, StatementKind::BackupDatabase).unwrap_err().what,
            "data-bytes"
        );
        p.data_bytes = 1;
        p.mid_flushes = u32::MAX;
        assert_eq!(
            ok(&p, StatementKind::BackupDatabase).unwrap_err().what,
            "mid-flushes"
        );
        p.mid_flushes = 0;
        // A restore of a backup whose size is known.
        p.read_sizes = ReadSizes::Max;
        assert!(
            p.check_bounds(&o, 1, StatementKind::RestoreDatabase, Some(u64::MAX))
                .is_err()
        );
    }

    #[test]
    fn stripe_distribution_round_robin() {
        let o = TransferOptions {
            block_size: 512,
            max_transfer_size: 65536,
            buffer_count: None,
        };
        let r = BackupRecord::plan(
            "db",
            StatementKind::BackupDatabase,
            1,
            3,
            5 * 65536 + 1000,
            &o,
        );
        let lens: Vec<u64> = r.families.iter().map(|f| f.len).collect();
        // chunks 0..4 full, chunk 5 = 1024 bytes (1000 rounded up to 512s): devs get 2,2,1 full + tail on dev 2.
        assert_eq!(lens, vec![2 * 65536, 2 * 65536, 65536 + 1024]);
        assert_eq!(r.total_bytes(), 5 * 65536 + 1024);
        assert_ne!(r.families[0].origin, r.families[1].origin);
    }

    #[test]
    fn tsql_text() {
        let s = Statement {
            kind: StatementKind::BackupDatabase,
            database: "sales".into(),
            devices: vec!["set1".into(), "dev2".into()],
            options: TransferOptions {
                block_size: 512,
                max_transfer_size: 65536,
                buffer_count: Some(8),
            },
            plan: ServerPlan::default(),
        };
        assert_eq!(
            s.to_tsql(),
            "BACKUP DATABASE [sales] TO VIRTUAL_DEVICE=N'set1', VIRTUAL_DEVICE=N'dev2' WITH BLOCKSIZE=512, MAXTRANSFERSIZE=65536, BUFFERCOUNT=8"
        );
        let odd = Statement {
            kind: StatementKind::RestoreHeaderOnly,
            database: "x".into(),
            devices: vec!["it's".into()],
            ..s.clone()
        };
        assert!(
            odd.to_tsql()
                .starts_with("RESTORE HEADERONLY FROM VIRTUAL_DEVICE=N'it''s' WITH")
        );
        assert_eq!(quote_ident("a]b"), "[a]]b]");
    }
}
