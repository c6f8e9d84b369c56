//! Client programs for the world: what a backup application's threads do.
//!
//! A program is a state machine: given the reply to its last action, it
//! returns its next action (one API call, starting the T-SQL statement,
//! waiting for it, sleeping, spawning a thread, joining, exiting, dying).
//!
//! [`ClientSpec`] describes a client: the reference client does everything
//! the specification asks; each [`Flaw`] reproduces a mistake real products
//! have been seen to make (vdi-abi-and-field-notes.md Part 2).

use crate::call::{Call, Reply, Value};
use crate::client::DeviceHandle;
use crate::content::Content;
use crate::fault::PlanContext;
use crate::msg::{Cmd, DevIx, Timeout};
use crate::process::ClientProcess;
use crate::statement::{
    BackupRecord, ServerPlan, SpecError, Statement, StatementKind, StatementSpec,
    default_device_names,
};
use crate::tape::Head;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use vdi_spec::{CommandCode, Features, Hresult, TransferOptions, VdConfig, Win32};

/// What a thread does next.
pub enum Action {
    Call(Call),
    /// Send the T-SQL statement on another connection; returns at once.
    StartStatement(Statement),
    /// Wait for the statement's result.
    WaitStatement {
        timeout: Timeout,
    },
    Sleep(u64),
    Spawn {
        who: String,
        dev: Option<DevIx>,
        prog: Box<dyn Program>,
    },
    /// Wait until every other thread has exited.
    Join,
    Exit,
    /// The whole client process dies.
    Die,
}

/// One thread of a client program.
pub trait Program: Send {
    /// The next action, given the reply to the previous one (`None` first).
    fn next(&mut self, last: Option<Reply>, proc_: &mut ClientProcess) -> Action;

    /// Writes the program's private state — whatever decides its next
    /// actions besides the replies it is given and the client process — to
    /// `out`, for an explorer's state hashing (`vdi_sim::explore`), and
    /// returns `true`; `false` (the default) when the program cannot, and
    /// the explorer then counts states but prunes none.
    fn describe(&self, _out: &mut dyn std::fmt::Write) -> bool {
        false
    }
}

pub use crate::flaw::Flaw;

/// The operation a client program performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    Backup,
    Restore,
    /// Backup, then restore on the same set object (reuse after Close).
    Roundtrip,
}

/// A built-in client program as files write it (a scenario's `[client]`
/// table): which program and its own parameters. What it backs up or
/// restores comes from the statement; [`ClientSpec::new`] joins the two.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct ClientProgram {
    /// `"reference"` (flaws may be added).
    pub program: String,
    pub flaws: Vec<Flaw>,
    /// Default: a backup for a BACKUP statement, a restore for a RESTORE.
    pub operation: Option<Operation>,
    pub features: u32,
    pub request_complete: bool,
    pub server_timeout_ms: u32,
    pub get_configuration_timeout_ms: u32,
    pub get_configuration_attempts: u32,
    pub get_command_timeout_ms: u32,
    pub instance: Option<String>,
    /// How long taking a snapshot takes the client, in ms: it completes
    /// VDC_Snapshot that long after fetching it (the database stays frozen
    /// meanwhile; clause `snapshot.freeze-time`).
    pub snapshot_ms: u64,
    /// A removable pipe-like or tape-like client's medium capacity in bytes
    /// (0: no limit; else at least 64 KiB, so a media header fits one
    /// volume): a Write that does not fit is answered ERROR_END_OF_MEDIA
    /// (clauses `media.next-volume`, `tape.next-volume`).
    pub volume_bytes: u64,
    /// Devices served by a secondary client process (the set's last ones;
    /// 0: none; fewer than the statement's devices). Module `secondary`.
    pub secondary_devices: u16,
    /// The secondary process dies when one of its device threads has
    /// fetched this many commands (0: never; clause
    /// `abort.secondary-death-undetected`).
    pub secondary_dies_after: u32,
}

impl Default for ClientProgram {
    fn default() -> Self {
        let d = ClientSpec::default();
        ClientProgram {
            program: "reference".into(),
            flaws: Vec::new(),
            operation: None,
            features: d.features,
            request_complete: d.request_complete,
            server_timeout_ms: d.server_timeout_ms,
            get_configuration_timeout_ms: d.get_configuration_timeout_ms,
            get_configuration_attempts: d.get_configuration_attempts,
            get_command_timeout_ms: d.get_command_timeout_ms,
            instance: d.instance,
            snapshot_ms: d.snapshot_ms,
            volume_bytes: d.volume_bytes,
            secondary_devices: d.secondary_devices,
            secondary_dies_after: d.secondary_dies_after,
        }
    }
}

/// A client program's parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct ClientSpec {
    pub operation: Operation,
    pub database: String,
    pub devices: u16,
    /// VDConfig.features requested (client bits).
    pub features: u32,
    /// Ask for VDC_Complete (VDF_RequestComplete).
    pub request_complete: bool,
    /// VDConfig.serverTimeOut in ms (0 disables the watchdog).
    pub server_timeout_ms: u32,
    /// GetConfiguration timeout per attempt, and the number of attempts.
    pub get_configuration_timeout_ms: u32,
    pub get_configuration_attempts: u32,
    /// GetCommand timeout (DWORD ms; 0xFFFFFFFF = INFINITE).
    pub get_command_timeout_ms: u32,
    /// CreateEx instance (None = the default instance).
    pub instance: Option<String>,
    /// How long the client takes to take a snapshot (VDC_Snapshot), in ms.
    pub snapshot_ms: u64,
    /// A removable pipe-like or tape-like client's medium capacity (0: no
    /// limit).
    pub volume_bytes: u64,
    /// Devices served by a secondary client process (module `secondary`).
    pub secondary_devices: u16,
    /// Commands a secondary device thread fetches before its process dies
    /// (0: never).
    pub secondary_dies_after: u32,
    /// Set name stem; phase names append `-backup` / `-restore`.
    pub set_name: String,
    pub options: TransferOptions,
    pub plan: ServerPlan,
    /// Restore statement kind (RESTORE DATABASE by default).
    pub restore_kind: StatementKind,
    pub flaws: BTreeSet<Flaw>,
}

impl Default for ClientSpec {
    fn default() -> Self {
        ClientSpec {
            operation: Operation::Roundtrip,
            database: "sales".to_string(),
            devices: 1,
            features: 0,
            request_complete: false,
            server_timeout_ms: 60_000,
            get_configuration_timeout_ms: 1_000,
            get_configuration_attempts: 30,
            get_command_timeout_ms: 10_000,
            instance: None,
            snapshot_ms: 0,
            volume_bytes: 0,
            secondary_devices: 0,
            secondary_dies_after: 0,
            set_name: "vdisim-set".to_string(),
            options: TransferOptions::default(),
            plan: ServerPlan::default(),
            restore_kind: StatementKind::RestoreDatabase,
            flaws: BTreeSet::new(),
        }
    }
}

impl ClientSpec {
    /// The client `program` running `stmt` on set `set_name` at `seed`: a
    /// backup and (for a roundtrip) a restore of the statement's database
    /// over its devices.
    pub fn new(
        program: &ClientProgram,
        stmt: &StatementSpec,
        set_name: &str,
        seed: u64,
    ) -> Result<ClientSpec, SpecError> {
        let backup = stmt.statement.is_backup();
        Ok(ClientSpec {
            operation: program.operation.unwrap_or(if backup {
                Operation::Backup
            } else {
                Operation::Restore
            }),
            database: stmt.database.clone(),
            devices: stmt.device_count(1),
            features: program.features,
            request_complete: program.request_complete,
            server_timeout_ms: program.server_timeout_ms,
            get_configuration_timeout_ms: program.get_configuration_timeout_ms,
            get_configuration_attempts: program.get_configuration_attempts,
            get_command_timeout_ms: program.get_command_timeout_ms,
            instance: program.instance.clone(),
            snapshot_ms: program.snapshot_ms,
            volume_bytes: program.volume_bytes,
            secondary_devices: program.secondary_devices,
            secondary_dies_after: program.secondary_dies_after,
            set_name: set_name.to_string(),
            options: stmt.options(),
            plan: stmt.plan(seed)?,
            restore_kind: if backup {
                StatementKind::RestoreDatabase
            } else {
                stmt.statement
            },
            flaws: program.flaws.iter().copied().collect(),
        })
    }

    pub fn has(&self, f: Flaw) -> bool {
        self.flaws.contains(&f)
    }
    /// Whether the client declares a disk-like (VDF_RandomAccess) device.
    pub fn disk(&self) -> bool {
        Features(self.features).contains(Features::RandomAccess)
    }
    /// The capacity of each of a removable pipe-like client's volumes
    /// (`None`: one medium holds everything).
    pub fn volume(&self) -> Option<u64> {
        let removable = Features(self.features).mode() == Some(vdi_spec::DeviceMode::PipeRemovable);
        (removable && self.volume_bytes > 0)
            .then(|| self.volume_bytes.max(crate::media::HEADER_BYTES))
    }
    /// How many devices the primary process serves itself (the others
    /// are the secondary's).
    pub fn primary_devices(&self) -> u16 {
        if self.secondary_devices < self.devices {
            self.devices - self.secondary_devices
        } else {
            self.devices
        }
    }
    /// A tape-like client's volume capacity (clause `tape.next-volume`).
    pub fn tape_volume(&self) -> Option<u64> {
        (self.tape() && self.volume_bytes > 0)
            .then(|| self.volume_bytes.max(crate::media::HEADER_BYTES))
    }
    /// Whether the client declares a tape-like (VDF_LikeTape) device.
    pub fn tape(&self) -> bool {
        Features(self.features).mode() == Some(vdi_spec::DeviceMode::Tape)
    }
    fn config(&self) -> VdConfig {
        let mut f = Features(self.features);
        if self.request_complete {
            f = f.union(Features::RequestComplete);
        }
        let mut c = VdConfig::client(u32::from(self.devices), f);
        c.server_time_out = self.server_timeout_ms;
        c
    }
    /// Device names for a phase: the first is the set name.
    pub fn device_names(&self, set: &str) -> Vec<String> {
        default_device_names(set, self.devices)
    }
    fn phases(&self) -> Vec<StatementKind> {
        match self.operation {
            Operation::Backup => vec![StatementKind::BackupDatabase],
            Operation::Restore => vec![self.restore_kind],
            Operation::Roundtrip => vec![StatementKind::BackupDatabase, self.restore_kind],
        }
    }
    /// The controller thread of this client.
    pub fn controller(&self) -> Box<dyn Program> {
        Box::new(Controller {
            spec: self.clone(),
            phases: self.phases(),
            phase: 0,
            step: Step::Create,
            attempts: 0,
            opened: 0,
            started: false,
        })
    }

    /// The context named fault plans need for this client.
    pub fn plan_context(&self) -> PlanContext {
        let rec = self.backup_layout();
        PlanContext {
            devices: self.devices,
            longest_timeout_ms: u64::from(
                self.get_command_timeout_ms
                    .max(self.get_configuration_timeout_ms),
            )
            .min(600_000),
            server_timeout_ms: u64::from(self.server_timeout_ms),
            family_bytes: rec.families.first().map_or(0, |f| f.len),
        }
    }

    /// The backup this client produces (or, for a restore-only run, the
    /// backup a world seeds before it starts).
    pub fn backup_layout(&self) -> BackupRecord {
        BackupRecord::plan(
            &self.database,
            StatementKind::BackupDatabase,
            1,
            usize::from(self.devices),
            self.plan.data_bytes,
            &self.options,
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Create,
    Start,
    GetConfig,
    OpenDevices,
    Spawn,
    Join,
    Close,
    Wait,
    NextPhase,
    Done,
}

/// The controller: Create → start the statement → GetConfiguration →
/// OpenDevice × n → a thread per device → Join → Close → the statement's
/// result; for a roundtrip, again on the same object (clause `close.reuse`).
struct Controller {
    spec: ClientSpec,
    phases: Vec<StatementKind>,
    phase: usize,
    step: Step,
    attempts: u32,
    opened: u16,
    /// The next reply is the one to StartStatement.
    started: bool,
}

impl Controller {
    fn set_name(&self) -> String {
        let kind = self.phases[self.phase];
        let suffix = if kind.is_backup() {
            "backup"
        } else {
            "restore"
        };
        format!("{}-{suffix}", self.spec.set_name)
    }
    fn statement(&self) -> Statement {
        Statement {
            kind: self.phases[self.phase],
            database: self.spec.database.clone(),
            devices: self.spec.device_names(&self.set_name()),
            options: self.spec.options,
            plan: self.spec.plan.clone(),
        }
    }
    fn log(&self, p: &mut ClientProcess, s: String) {
        p.log.push(format!("phase {}: {s}", self.phase + 1));
    }
}

impl Controller {
    /// CreateEx for the current phase's set.
    fn create_call(&self) -> Action {
        Action::Call(Call::CreateEx {
            instance: self.spec.instance.clone(),
            name: self.set_name(),
            cfg: self.spec.config(),
        })
    }

    /// Step::Create: CreateEx, then start the statement once it succeeded;
    /// a failed CreateEx ends the program (clause `create.access-denied`).
    fn on_create(&mut self, last: Option<&Reply>, p: &mut ClientProcess) -> Option<Action> {
        if let Some(r) = last
            && r.code != Hresult::NOERROR
        {
            // clause create.access-denied: report and exit cleanly.
            self.log(p, format!("CreateEx failed with {}; giving up", r.code));
            p.believes_success = Some(false);
            self.step = Step::Done;
            return None;
        }
        if last.is_some() {
            self.step = Step::Start;
            return None;
        }
        Some(self.create_call())
    }

    /// Step::Start: resets what the process saw of devices and media, and
    /// sends the statement.
    fn start_statement(&mut self, p: &mut ClientProcess) -> Action {
        self.step = Step::GetConfig;
        self.attempts = 0;
        p.cursors = vec![0; self.spec.devices as usize];
        p.handles.clear();
        let n = self.spec.devices as usize;
        p.written = vec![0; n];
        p.volume = vec![0; n];
        p.reading = !self.phases[self.phase].is_backup();
        if p.reading {
            p.volumes.resize(n, Vec::new());
        } else {
            p.volumes = vec![Vec::new(); n];
        }
        if self.spec.tape() {
            self.load_tapes(p);
        }
        if self.phases[self.phase].is_backup() {
            if self.spec.disk() {
                // A disk-like device is a file that outlives the backup: the
                // backup writes over what it held (clause
                // `flush.disk-sets-eof`).
                p.media.resize(n, Content::Empty);
            } else {
                p.media = vec![Content::Empty; n];
            }
        }
        self.started = true;
        Action::StartStatement(self.statement())
    }

    /// A tape-like client's media at a statement's start: the heads at the
    /// beginning; a BACKUP's tapes blank; a RESTORE's tapes that hold a
    /// family but no filemarks (media seeded without them) get the marks
    /// the model's tape BACKUP writes, after the media header and at the
    /// end (clause `tape.sequence`).
    fn load_tapes(&self, p: &mut ClientProcess) {
        let n = self.spec.devices as usize;
        p.heads = vec![Head::default(); n];
        p.marks.resize(n, Vec::new());
        if self.phases[self.phase].is_backup() {
            p.marks = vec![Vec::new(); n];
            return;
        }
        for (m, data) in p.marks.iter_mut().zip(&p.media) {
            if m.is_empty() && data.len() >= crate::media::HEADER_BYTES {
                *m = vec![crate::media::HEADER_BYTES, data.len()];
            }
        }
    }

    /// Step::GetConfig: GetConfiguration until the server configured the
    /// set (or the attempts run out: Close), then the first OpenDevice.
    fn on_get_config(&mut self, last: Option<&Reply>, p: &mut ClientProcess) -> Option<Action> {
        let Some(r) = last else {
            return Some(Action::Exit);
        };
        if std::mem::take(&mut self.started) || r.code == Hresult::VD_E_TIMEOUT {
            // First attempt (reply to StartStatement) or a timeout: try again.
            if r.code == Hresult::VD_E_TIMEOUT {
                self.attempts += 1;
                if self.attempts >= self.spec.get_configuration_attempts {
                    self.log(
                        p,
                        "no configuration: the server never opened the set".into(),
                    );
                    self.step = Step::Close;
                    return Some(Action::Call(Call::Close));
                }
            }
            return Some(Action::Call(Call::GetConfiguration {
                timeout: Timeout::from_dword(self.spec.get_configuration_timeout_ms),
            }));
        }
        if r.code != Hresult::NOERROR {
            self.log(p, format!("GetConfiguration returned {}", r.code));
            self.step = Step::Close;
            return Some(Action::Call(Call::Close));
        }
        self.step = Step::OpenDevices;
        self.opened = 0;
        let names = self.spec.device_names(&self.set_name());
        Some(Action::Call(Call::OpenDevice {
            name: names[0].clone(),
        }))
    }

    /// Step::OpenDevices: OpenDevice for every device in turn; a failure
    /// closes the set (clause `open-device.abort`).
    fn on_open_device(&mut self, last: Option<&Reply>, p: &mut ClientProcess) -> Option<Action> {
        let Some(r) = last else {
            return Some(Action::Exit);
        };
        if r.code != Hresult::NOERROR {
            // clause open-device.abort (field row 1): do not hang; Close.
            self.log(p, format!("OpenDevice returned {}", r.code));
            self.step = Step::Close;
            return Some(Action::Call(Call::Close));
        }
        self.opened += 1;
        if self.opened < self.spec.primary_devices() {
            let names = self.spec.device_names(&self.set_name());
            return Some(Action::Call(Call::OpenDevice {
                name: names[self.opened as usize].clone(),
            }));
        }
        self.step = Step::Spawn;
        self.opened = 0;
        None
    }

    /// Step::Spawn: a device thread per opened device, then Join.
    fn spawn_device(&mut self, p: &mut ClientProcess) -> Option<Action> {
        let own = self.spec.primary_devices();
        if self.opened == own && own < self.spec.devices {
            // The secondary process serves the rest (module `secondary`).
            self.opened += 1;
            return Some(Action::Spawn {
                who: crate::secondary::SECONDARY_PROCESS.into(),
                dev: None,
                prog: crate::secondary::controller(
                    &self.spec,
                    self.phase as u32 + 1,
                    self.set_name(),
                    own,
                ),
            });
        }
        if self.opened >= own {
            self.step = Step::Join;
            return Some(Action::Join);
        }
        let d = self.opened;
        self.opened += 1;
        let h = p.handles.get(d as usize).copied().flatten()?;
        p.devices
            .resize(p.devices.len().max(d as usize + 1), Default::default());
        Some(Action::Spawn {
            who: format!("dev{d}"),
            dev: Some(d),
            prog: device_loop(&self.spec, h),
        })
    }

    /// Step::Close (the reply to Close): wait for the statement, or, with
    /// [`Flaw::IgnoresOutcome`], believe VD_E_CLOSE alone.
    fn after_close(&mut self, p: &mut ClientProcess) -> Option<Action> {
        self.step = Step::Wait;
        if self.spec.has(Flaw::IgnoresOutcome) {
            let all_closed = p.devices.iter().all(|d| d.end == Some(Hresult::VD_E_CLOSE));
            p.believes_success = Some(all_closed);
            self.log(
                p,
                format!("believes success = {all_closed} from VD_E_CLOSE alone"),
            );
            self.step = Step::NextPhase;
            return None;
        }
        Some(Action::WaitStatement {
            timeout: Timeout::Infinite,
        })
    }

    /// Step::Wait: the statement's outcome decides (clause
    /// `term.outcome-decides`): the next phase, or done.
    fn on_outcome(&mut self, last: Option<&Reply>, p: &mut ClientProcess) {
        let ok = matches!(last, Some(Reply { value: Value::Outcome(o), .. }) if o.succeeded());
        p.believes_success = Some(ok);
        self.log(
            p,
            format!("statement {}", if ok { "succeeded" } else { "failed" }),
        );
        self.step = if ok { Step::NextPhase } else { Step::Done };
    }

    /// Step::NextPhase: CreateEx again on the same object for the next
    /// phase (clause `close.reuse`), or done.
    fn next_phase(&mut self) -> Option<Action> {
        self.phase += 1;
        if self.phase >= self.phases.len() {
            self.step = Step::Done;
            return None;
        }
        self.step = Step::Create;
        Some(self.create_call())
    }
}

impl Program for Controller {
    fn next(&mut self, last: Option<Reply>, p: &mut ClientProcess) -> Action {
        let last = last.as_ref();
        loop {
            let action = match self.step {
                Step::Create => self.on_create(last, p),
                Step::Start => Some(self.start_statement(p)),
                Step::GetConfig => self.on_get_config(last, p),
                Step::OpenDevices => self.on_open_device(last, p),
                Step::Spawn => self.spawn_device(p),
                Step::Join => {
                    self.step = Step::Close;
                    Some(Action::Call(Call::Close))
                }
                Step::Close => self.after_close(p),
                Step::Wait => {
                    self.on_outcome(last, p);
                    None
                }
                Step::NextPhase => self.next_phase(),
                Step::Done => Some(Action::Exit),
            };
            if let Some(action) = action {
                return action;
            }
        }
    }

    fn describe(&self, out: &mut dyn std::fmt::Write) -> bool {
        // The spec and the phases are fixed for the program's life.
        write!(
            out,
            "ctl {} {:?} {} {} {}",
            self.phase, self.step, self.attempts, self.opened, self.started
        )
        .is_ok()
    }
}

/// The reference device loop for handle `dev`, as a program of its own
/// (the model backend runs a scripted `drain` with it).
pub fn device_loop(spec: &ClientSpec, dev: DeviceHandle) -> Box<dyn Program> {
    Box::new(DeviceLoop {
        spec: spec.clone(),
        dev,
        held: false,
        pending: None,
        done: false,
        fetched: 0,
    })
}

/// One device thread: GetCommand, perform, CompleteCommand, until VD_E_CLOSE
/// or VD_E_ABORT.
struct DeviceLoop {
    spec: ClientSpec,
    dev: DeviceHandle,
    /// A command fetched and not yet completed.
    pending: Option<Cmd>,
    /// The pending VDC_Snapshot is held while the snapshot is taken
    /// (`snapshot_ms`).
    held: bool,
    done: bool,
    /// Commands fetched (counted for [`Flaw::ClosesWhileDevicesWait`]).
    fetched: u32,
}

impl DeviceLoop {
    /// Whether Reads and Writes go to the commands' positions (a disk-like
    /// client that honours them; clause `disk.positioned-io`).
    fn positioned(&self) -> bool {
        self.spec.disk() && !self.spec.has(Flaw::IgnoresPosition)
    }

    /// Stores the first `n` bytes of Write `c`: at its position on a
    /// disk-like device, else at the end of the stream.
    fn store(&self, c: &Cmd, n: u64, p: &mut ClientProcess) {
        let d = self.dev.index as usize;
        let data = c.data.slice(0, n);
        let Some(m) = p.media.get_mut(d) else { return };
        let end = if self.positioned() {
            m.write_at(c.position, &data);
            c.position.saturating_add(n)
        } else {
            m.append(&data);
            m.len()
        };
        if let Some(w) = p.written.get_mut(d) {
            *w = (*w).max(end);
        }
    }

    fn get(&self) -> Action {
        Action::Call(Call::GetCommand {
            dev: self.dev,
            timeout: Timeout::from_dword(self.spec.get_command_timeout_ms),
        })
    }

    fn perform(&mut self, c: Cmd, p: &mut ClientProcess) -> Action {
        let d = self.dev.index as usize;
        let special = if self.spec.tape() {
            crate::tape::answer(&c, d, &self.spec.flaws, self.spec.tape_volume(), p)
        } else if let Some(cap) = self.spec.volume() {
            crate::tape::perform_volume(&c, d, cap, p)
        } else {
            None
        };
        if let Some((code, bytes, data, position)) = special {
            return Action::Call(Call::CompleteCommand {
                dev: self.dev,
                cmd: c,
                code,
                bytes,
                position,
                data,
            });
        }
        let short = self.spec.has(Flaw::ShortTransfers);
        let (code, bytes, data) = match c.code {
            CommandCode::Write => {
                let n = if short {
                    u64::from(c.size) / 2
                } else {
                    u64::from(c.size)
                };
                self.store(&c, n, p);
                (Win32::ERROR_SUCCESS, n, Content::Empty)
            }
            CommandCode::Read => {
                let cur = if self.positioned() {
                    // clause disk.positioned-io
                    c.position
                } else {
                    p.cursors.get(d).copied().unwrap_or(0)
                };
                let media = p.media.get(d).cloned().unwrap_or_default();
                let want = if short {
                    u64::from(c.size) / 2
                } else {
                    u64::from(c.size)
                };
                let data = media.slice(cur, want);
                let n = data.len();
                if let Some(cu) = p.cursors.get_mut(d) {
                    *cu += n;
                }
                if n < u64::from(c.size) && !short {
                    if self.spec.has(Flaw::ReadsUntilFull) {
                        // Waits for bytes that will never come.
                        self.done = true;
                        return Action::Sleep(u64::MAX / 4);
                    }
                    (Win32::ERROR_HANDLE_EOF, n, data)
                } else {
                    (Win32::ERROR_SUCCESS, n, data)
                }
            }
            CommandCode::Flush => {
                if self.spec.has(Flaw::FlushNotSupported) {
                    (Win32::ERROR_NOT_SUPPORTED, 0, Content::Empty)
                } else {
                    if self.spec.disk()
                        && !self.spec.has(Flaw::NoEndOfFile)
                        && let (Some(m), Some(&eof)) = (p.media.get_mut(d), p.written.get(d))
                    {
                        // clause flush.disk-sets-eof
                        m.truncate(eof);
                    }
                    (Win32::ERROR_SUCCESS, 0, Content::Empty)
                }
            }
            CommandCode::ClearError
            | CommandCode::Complete
            | CommandCode::PrepareToFreeze
            | CommandCode::MountSnapshot => (Win32::ERROR_SUCCESS, 0, Content::Empty),
            // clauses snapshot.freeze-time, snapshot.abort
            CommandCode::Snapshot if self.spec.snapshot_ms > 0 && !self.held => {
                self.held = true;
                return Action::Sleep(self.spec.snapshot_ms);
            }
            CommandCode::Snapshot if self.spec.has(Flaw::AbortsSnapshot) => {
                (Win32::ERROR_OPERATION_ABORTED, 0, Content::Empty)
            }
            CommandCode::Snapshot => (Win32::ERROR_SUCCESS, 0, Content::Empty),
            _ => {
                if self.spec.has(Flaw::IgnoresUnknownCommands) {
                    self.pending = None;
                    return self.get();
                }
                // clause command.not-supported
                (Win32::ERROR_NOT_SUPPORTED, 0, Content::Empty)
            }
        };
        let mut seen = c.clone();
        if self.spec.has(Flaw::TampersCommandBlock) {
            seen.size = bytes as u32;
        }
        if c.code == CommandCode::Flush && self.spec.has(Flaw::ClosesBeforeClose) {
            self.done = true;
        }
        Action::Call(Call::CompleteCommand {
            dev: self.dev,
            cmd: seen,
            code,
            bytes,
            position: c.position,
            data,
        })
    }
}

impl Program for DeviceLoop {
    fn describe(&self, out: &mut dyn std::fmt::Write) -> bool {
        write!(out, "dev {:?} {:?} {}", self.dev, self.pending, self.done).is_ok()
            && (!self.spec.has(Flaw::ClosesWhileDevicesWait)
                || write!(out, " {}", self.fetched).is_ok())
            && (!self.held || write!(out, " held").is_ok())
    }

    fn next(&mut self, last: Option<Reply>, p: &mut ClientProcess) -> Action {
        let d = self.dev.index as usize;
        if self.held
            && last.is_none()
            && let Some(c) = self.pending.clone()
        {
            // The snapshot is taken: complete the held VDC_Snapshot.
            return self.perform(c, p);
        }
        let Some(r) = last else { return self.get() };
        if self.done {
            p.devices[d].end.get_or_insert(r.code);
            return Action::Exit;
        }
        if let Some(_done) = self.pending.take() {
            self.held = false;
            // Reply to CompleteCommand.
            if r.code != Hresult::NOERROR {
                p.devices[d].end = Some(r.code);
                return Action::Exit;
            }
            return self.get();
        }
        match r.value {
            Value::Command(c) => {
                self.fetched = self.fetched.saturating_add(1);
                if self.spec.has(Flaw::ClosesWhileDevicesWait)
                    && self.dev.index == 0
                    && self.fetched == 2
                {
                    // Closes the set under the other device threads; the
                    // reply to Close ends this loop.
                    self.done = true;
                    return Action::Call(Call::Close);
                }
                self.pending = Some(c.clone());
                self.perform(c, p)
            }
            _ => match r.code {
                Hresult::VD_E_TIMEOUT => {
                    if self.spec.has(Flaw::TimeoutIsFatal) {
                        self.done = true;
                        return Action::Call(Call::SignalAbort);
                    }
                    self.get()
                }
                code => {
                    p.devices[d].end = Some(code);
                    Action::Exit
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flaw_names_roundtrip() {
        for f in Flaw::ALL.into_iter().chain(Flaw::DEVICE_MODES) {
            assert_eq!(Flaw::from_name(f.name()), Some(f));
        }
    }

    #[test]
    fn device_names_first_is_set_name() {
        let s = ClientSpec {
            devices: 3,
            ..ClientSpec::default()
        };
        assert_eq!(s.device_names("x"), vec!["x", "x-dev1", "x-dev2"]);
    }
}
