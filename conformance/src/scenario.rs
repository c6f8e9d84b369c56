//! Scenario files: one case per TOML file under `conformance/scenarios/`,
//! named by the clause it checks (`close.devices-open.toml`).
//!
//! ```toml
//! id = "close.devices-open"            # must equal the file name
//! summary = "Close with a device open returns VD_E_OPEN and aborts"
//! clauses = ["close.devices-open"]     # clause ids of vdi-spec's catalog
//! seeds = [1, 2]                       # default [1]
//! budget-ms = 600000                   # virtual-time budget, default 3600000
//!
//! [profile]                            # overrides of the default profile
//! completion-order = "in-order"
//!
//! [server]                             # the statement and the server's plan
//! statement = "backup-database"        # or restore-database, restore-headeronly, ...
//! devices = 2                          # VIRTUAL_DEVICE clauses
//! data-bytes = 262144
//!
//! [faults]                             # a named plan, or an explicit list
//! plan = "client-abort"
//!
//! [client]                             # a built-in program ...
//! program = "reference"
//! flaws = ["closes-before-close"]
//!
//! [[step]]                             # ... or a script of calls
//! do = "create-ex"
//! expect = "NOERROR"
//!
//! [expect]                             # how the case must end
//! outcome = "failed"
//! hits = ["close.devices-open"]
//! ```
//!
//! Unknown keys are errors; a malformed file is reported as
//! `file:line:col: what is wrong` with how to fix it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;
use vdi_model::fault::{Fault, FaultPlan, PlannedFault};
use vdi_model::outcome::FailReason;
use vdi_model::programs::{ClientProgram, ClientSpec};
use vdi_model::statement::{ServerPlan, StatementSpec};
use vdi_spec::{ClauseId, CommandCode, Hresult, Profile, TransferOptions, Win32};

/// A malformed or unreadable scenario.
#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("{path}: cannot read: {err}")]
    Read { path: String, err: String },
    #[error("{path}:{line}:{col}: {msg}\n  fix: {hint}")]
    Parse {
        path: String,
        line: usize,
        col: usize,
        msg: String,
        hint: String,
    },
    #[error("{path}: {msg}\n  fix: {hint}")]
    Invalid {
        path: String,
        msg: String,
        hint: String,
    },
}

/// Expected result of one step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Expect {
    /// `"model"` (as the model predicts, the default), `"any"`, or a code name.
    One(String),
    /// Any of these code names.
    AnyOf(Vec<String>),
    /// A preferred code, and codes accepted as lenient.
    Graded { code: String, lenient: Vec<String> },
}

impl Default for Expect {
    fn default() -> Self {
        Expect::One("model".into())
    }
}

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Do {
    Create,
    CreateEx,
    GetConfiguration,
    OpenDevice,
    /// OpenDevice for every device in order (handles 0..n).
    OpenAll,
    Close,
    SignalAbort,
    OpenInSecondary,
    GetBufferHandle,
    MapBufferHandle,
    GetCommand,
    CompleteCommand,
    /// GetCommand + complete, as the reference client does, until the
    /// device returns something other than NOERROR (or `count` commands).
    Drain,
    /// Send the `[server]` statement.
    StartStatement,
    WaitStatement,
    Sleep,
    /// A server-side event or a process death (`fault = {...}`).
    Event,
    /// Wait for an `async` step.
    Await,
}

/// One step of a script. Which fields apply depends on `do`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Step {
    #[serde(rename = "do")]
    pub action: Option<Do>,
    /// Client thread: `ctl` (default) or `dev<N>`.
    pub thread: Option<String>,
    /// Set or device name; `{set}` and `{dev<N>}` are replaced.
    pub name: Option<String>,
    /// CreateEx instance; absent = NULL (the default instance).
    pub instance: Option<String>,
    /// VDConfig client fields (`device-count`, `features`, `server-time-out`, ...).
    pub config: Option<ConfigSpec>,
    /// Timeout in ms (DWORD); `timeout = "infinite"` waits forever.
    pub timeout: Option<TimeoutSpec>,
    /// Device index: which OpenDevice handle (or, with `from-set`, of which
    /// earlier set incarnation the handle is).
    pub device: Option<u16>,
    /// Use the handle saved by `save-handle` instead of the current one.
    pub handle: Option<String>,
    /// Save the handle this step uses under a name.
    pub save_handle: Option<String>,
    /// CompleteCommand: which command (`last` on the device, default; or
    /// `saved:<name>`; or `foreign`, a command of another device).
    pub cmd: Option<String>,
    /// Save the command this step fetched under a name.
    pub save_cmd: Option<String>,
    /// Completion code name (`ERROR_SUCCESS` default).
    pub code: Option<String>,
    /// Bytes transferred (default: what the reference client would report).
    pub bytes: Option<u64>,
    /// Modify the read-only command block before completing.
    pub tamper: Option<bool>,
    /// Drain: at most this many commands.
    pub count: Option<u64>,
    /// Sleep / wait-statement: ms.
    pub ms: Option<u64>,
    /// Event: the fault.
    pub fault: Option<Fault>,
    /// Secondary process id (OpenInSecondary).
    pub secondary: Option<u32>,
    /// GetBufferHandle: `last` (the last command's buffer) or `bogus`.
    pub buffer: Option<String>,
    /// MapBufferHandle: the handle value, or `saved` (from GetBufferHandle).
    pub map: Option<String>,
    /// Start without waiting, under this label.
    #[serde(rename = "async")]
    pub async_label: Option<String>,
    /// Await: the label.
    pub label: Option<String>,
    /// Expected result.
    #[serde(default)]
    pub expect: Expect,
    /// Clause the expectation checks (for the divergence report).
    pub clause: Option<String>,
}

/// A timeout in a scenario.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimeoutSpec {
    Ms(i64),
    Word(String),
}

/// The client fields of VDConfig.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigSpec {
    pub device_count: Option<u32>,
    pub features: Option<u32>,
    pub prefix_zone_size: Option<u32>,
    pub alignment: Option<u32>,
    pub soft_file_mark_block_size: Option<u32>,
    pub eom_warning_size: Option<u32>,
    pub server_time_out: Option<u32>,
}

/// Faults: a named plan and/or an explicit list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FaultSpec {
    pub plan: Option<String>,
    #[serde(default)]
    pub list: Vec<PlannedFault>,
}

/// How the case must end.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EndSpec {
    /// `succeeded`, `failed`, `not-started`, or absent (any). For a
    /// roundtrip, every statement.
    pub outcome: Option<String>,
    /// The model's reason for a failure.
    pub reason: Option<FailReason>,
    /// SQL message numbers the outcome must include.
    #[serde(default)]
    pub messages: Vec<u32>,
    /// How each device's loop ended (program cases), by code name.
    pub devices: Option<Vec<String>>,
    /// `finished` (default), `hang`, `budget`.
    pub end: Option<String>,
    /// Clause ids the run must cite (the model decided something by them).
    #[serde(default)]
    pub hits: Vec<String>,
    /// Invariant violations the run must report (their clause ids); by
    /// default none may be reported.
    #[serde(default)]
    pub violations: Vec<String>,
    /// What the client must believe (program cases).
    pub client_believes_success: Option<bool>,
}

/// A scenario file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scenario {
    pub id: String,
    pub summary: String,
    pub clauses: Vec<String>,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    #[serde(default = "default_budget")]
    pub budget_ms: u64,
    /// The model's scheduler step bound (default 50,000,000); needs the
    /// `scheduler-steps` capability.
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Capabilities a backend needs to stage this case (see
    /// [`CAPABILITIES`]); a backend without one grades it unimplemented.
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub profile: Option<toml::Table>,
    /// For restores: seed the server's history and the client's media with
    /// a backup of the statement's database before the case starts
    /// (default: true for restore statements).
    #[serde(default)]
    pub seed_backup: Option<bool>,
    /// The statement (`vdi_model::statement::StatementSpec`, the schema
    /// plan files share).
    #[serde(default)]
    pub server: StatementSpec,
    #[serde(default)]
    pub faults: FaultSpec,
    /// A built-in client program.
    pub client: Option<ClientProgram>,
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub expect: EndSpec,
    /// Where it was loaded from (not in the file).
    #[serde(skip)]
    pub path: PathBuf,
}

/// Capabilities a case may require:
/// - `abi`: calls through a real binary interface (C ABI, COM vtable,
///   Linux class symbols), e.g. Release after Close, struct layouts seen by C.
/// - `disk-mode`: disk-like (VDF_RandomAccess) devices with positioned I/O.
/// - `tape-mode`: tape-like (VDF_LikeTape) devices: positioning commands
///   and filemarks.
/// - `removable-media`: removable pipe-like devices whose families span
///   volumes (ERROR_END_OF_MEDIA, VDC_Load).
/// - `snapshot`: snapshot backups (WITH SNAPSHOT: VDC_PrepareToFreeze,
///   VDC_Snapshot, VDC_MountSnapshot).
/// - `secondary-process`: a second client process (OpenInSecondary across
///   processes) with its own death; the model has it, the ABI and serve
///   backends (one client process) do not.
/// - `windows-security`: process DACLs and elevation (E_ACCESSDENIED, VD_E_SECURITY).
/// - `scheduler-steps`: the model's scheduler (a step bound, faults at a
///   step); real implementations have no steps.
pub const CAPABILITIES: &[&str] = &[
    "abi",
    "disk-mode",
    "tape-mode",
    "removable-media",
    "snapshot",
    "secondary-process",
    "windows-security",
    "scheduler-steps",
];

/// What a capability stands for and which built-in backends have it: the
/// hint an *unimplemented* verdict gives with the capability's name.
pub fn capability_meaning(cap: &str) -> &'static str {
    match cap {
        "abi" => {
            "a binary interface: linux-abi, com, serve, windows and sqlserver call one; the model runs these cases through the stand-in built into vdisim"
        }
        "disk-mode" | "tape-mode" | "removable-media" | "snapshot" => {
            "served by the model's server half: model, linux-abi, com, serve"
        }
        "secondary-process" => {
            "a second client process that joins the set by name: model and serve (linux-abi and com keep their server in this process, which no other process can join)"
        }
        "windows-security" => {
            "Windows security (the DACLs of the set's named objects): no backend stages it"
        }
        "scheduler-steps" => "the deterministic scheduler's steps: model only",
        _ => "not a capability vdisim knows",
    }
}

fn default_seeds() -> Vec<u64> {
    vec![1]
}

fn default_budget() -> u64 {
    3_600_000
}

/// Parses an HRESULT name (`VD_E_OPEN`, `NOERROR`) or hex (`0x8077000D`).
pub fn parse_hresult(s: &str) -> Option<Hresult> {
    Hresult::from_name(s).or_else(|| {
        s.strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .map(Hresult)
    })
}

/// Parses a Win32 code name or number.
pub fn parse_win32(s: &str) -> Option<Win32> {
    Win32::from_name(s).or_else(|| s.parse().ok().map(Win32))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

fn hint_for(msg: &str) -> String {
    if msg.contains("unknown field") {
        "remove or rename the key; the message lists the keys allowed here".into()
    } else if msg.contains("unknown variant") {
        "use one of the values the message lists".into()
    } else if msg.contains("missing field") {
        "add the missing key (id, summary and clauses are required)".into()
    } else if msg.contains("invalid type") {
        "check the value's type: strings are quoted, numbers are not, lists use [ ]".into()
    } else {
        "see conformance/README.md for the scenario format".into()
    }
}

impl Scenario {
    /// Parses `text` (from `path`, for messages) and checks it.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let p = path.display().to_string();
        let mut s: Scenario = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map_or((1, 1), |r| line_col(text, r.start));
            let msg = e.message().to_string();
            ScenarioError::Parse {
                path: p.clone(),
                line,
                col,
                hint: hint_for(&msg),
                msg,
            }
        })?;
        s.path = path.to_path_buf();
        s.check(&p)?;
        Ok(s)
    }

    /// Loads one file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Read {
            path: path.display().to_string(),
            err: e.to_string(),
        })?;
        Scenario::parse(&text, path)
    }

    fn invalid(p: &str, msg: impl Into<String>, hint: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid {
            path: p.to_string(),
            msg: msg.into(),
            hint: hint.into(),
        }
    }

    fn check(&self, p: &str) -> Result<(), ScenarioError> {
        self.check_names(p)?;
        self.check_shape(p)?;
        self.check_server(p)?;
        self.check_bounds(p)?;
        for (i, st) in self.steps.iter().enumerate() {
            check_step(p, i + 1, st)?;
        }
        self.check_faults(p)
    }

    /// The id matches the file; clauses and capabilities exist.
    fn check_names(&self, p: &str) -> Result<(), ScenarioError> {
        if let Some(stem) = self.path.file_stem().and_then(|s| s.to_str())
            && !stem.starts_with(&self.id)
        {
            return Err(Self::invalid(
                p,
                format!("id '{}' does not match the file name '{stem}'", self.id),
                "name the file <id>.toml (a suffix like <id>.2.toml is allowed)",
            ));
        }
        for c in &self.clauses {
            if ClauseId::parse(c).is_none() {
                return Err(Self::invalid(
                    p,
                    format!("clause '{c}' is not in the catalog"),
                    "use an id from `vdisim list --clauses`",
                ));
            }
        }
        for r in &self.requires {
            if !CAPABILITIES.contains(&r.as_str()) {
                return Err(Self::invalid(
                    p,
                    format!("requires '{r}' is not a capability"),
                    format!("use one of {}", CAPABILITIES.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// Times, counts and seeds within `vdi_spec::bounds`.
    fn check_bounds(&self, p: &str) -> Result<(), ScenarioError> {
        use vdi_spec::bounds::{self, at_most};
        let bad = |e: bounds::BoundError| Self::invalid(p, e.to_string(), "see vdi_spec::bounds");
        at_most(
            "budget-ms",
            self.budget_ms,
            bounds::VIRTUAL_MS_MAX,
            "use at most 30 days",
        )
        .map_err(bad)?;
        if let Some(n) = self.max_steps {
            at_most(
                "max-steps",
                n,
                bounds::SCENARIO_STEPS_MAX,
                "use fewer steps",
            )
            .map_err(bad)?;
        }
        at_most(
            "seeds (entries)",
            self.seeds.len(),
            bounds::SCENARIO_SEEDS_MAX,
            "list fewer seeds",
        )
        .map_err(bad)?;
        for (i, st) in self.steps.iter().enumerate() {
            let at = |what: &str| format!("step {}: {what}", i + 1);
            if let Some(ms) = st.ms {
                at_most(&at("ms"), ms, bounds::VIRTUAL_MS_MAX, "use at most 30 days")
                    .map_err(bad)?;
            }
            if let Some(c) = st.count {
                at_most(
                    &at("count"),
                    c,
                    bounds::DATA_COMMANDS_MAX,
                    "drain fewer commands",
                )
                .map_err(bad)?;
            }
            if let Some(b) = st.bytes {
                at_most(
                    &at("bytes"),
                    b,
                    u64::from(u32::MAX),
                    "a completion reports a DWORD",
                )
                .map_err(bad)?;
            }
            if let Some(f) = &st.fault {
                PlannedFault {
                    phase: Default::default(),
                    trigger: vdi_model::fault::Trigger::AtMs { ms: 0 },
                    fault: f.clone(),
                }
                .check_bounds()
                .map_err(&bad)?;
            }
        }
        for f in &self.faults.list {
            f.check_bounds().map_err(bad)?;
        }
        Ok(())
    }

    /// A program or a script; clauses named; bounds that need the model.
    fn check_shape(&self, p: &str) -> Result<(), ScenarioError> {
        if self.max_steps.is_some() && !self.requires.iter().any(|r| r == "scheduler-steps") {
            return Err(Self::invalid(
                p,
                "max-steps bounds the model's scheduler, which only the model has",
                "add requires = [\"scheduler-steps\"]",
            ));
        }
        if self.clauses.is_empty() {
            return Err(Self::invalid(
                p,
                "clauses is empty",
                "name at least one clause id the case checks",
            ));
        }
        if self.client.is_some() != self.steps.is_empty() && self.requires.is_empty() {
            return Err(Self::invalid(
                p,
                "give either [client] (a built-in program) or [[step]]s (a script), not both or neither",
                "keep one of them",
            ));
        }
        Ok(())
    }

    /// The statement's devices, options and read sizes; the profile.
    fn check_server(&self, p: &str) -> Result<(), ScenarioError> {
        let n = self.server.device_names(&self.set_name(), 1).len();
        if !(1..=64).contains(&n) {
            return Err(Self::invalid(
                p,
                format!("server.devices: {n} devices; a statement names 1 to 64"),
                "set server.devices between 1 and 64 (a count or a list of names)",
            ));
        }
        self.options()
            .validate()
            .map_err(|e| Self::invalid(p, format!("server: {e}"), "fix the option's value"))?;
        let plan = self
            .server
            .plan(0)
            .map_err(|e| Self::invalid(p, format!("server.{e}"), "fix server.read-sizes"))?;
        for kind in [
            vdi_model::statement::StatementKind::BackupDatabase,
            vdi_model::statement::StatementKind::RestoreDatabase,
        ] {
            plan.check_bounds(&self.options(), n, kind, None)
                .map_err(|e| Self::invalid(p, format!("server: {e}"), "see vdi_spec::bounds"))?;
        }
        self.profile().map_err(|e| {
            Self::invalid(
                p,
                format!("[profile]: {e}"),
                "use the keys of `vdisim list --profile`",
            )
        })?;
        Ok(())
    }

    /// The named fault plan exists.
    fn check_faults(&self, p: &str) -> Result<(), ScenarioError> {
        if let Some(plan) = &self.faults.plan
            && plan != "none"
            && plan != "random"
            && !vdi_model::fault::NAMED_PLANS.contains(&plan.as_str())
        {
            return Err(Self::invalid(
                p,
                format!("faults.plan '{plan}' unknown"),
                format!(
                    "use none, random, or one of {}",
                    vdi_model::fault::NAMED_PLANS.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The profile: defaults with `[profile]` applied.
    pub fn profile(&self) -> Result<Profile, String> {
        match &self.profile {
            None => Ok(Profile::default()),
            Some(t) => {
                let mut p: Profile = t
                    .clone()
                    .try_into()
                    .map_err(|e: toml::de::Error| e.message().to_string())?;
                if p.name == "default" {
                    p.name = format!("{}-profile", self.id);
                }
                Ok(p)
            }
        }
    }

    pub fn options(&self) -> TransferOptions {
        self.server.options()
    }

    /// The server's plan at `seed` (checked when the file was loaded).
    pub fn plan(&self, seed: u64) -> ServerPlan {
        self.server.plan(seed).unwrap_or_default()
    }

    /// The set name for this case.
    pub fn set_name(&self) -> String {
        format!("vdisim-{}", self.id.replace('.', "-"))
    }

    /// How many devices the statement names.
    pub fn devices(&self) -> u16 {
        self.server.device_count(1)
    }

    /// Device names of the statement.
    pub fn device_names(&self) -> Vec<String> {
        self.server.device_names(&self.set_name(), 1)
    }

    /// The fault plan at `seed`.
    pub fn fault_plan(&self, seed: u64) -> FaultPlan {
        let spec = self.client_spec(seed);
        let mut plan = match &self.faults.plan {
            Some(name) => vdi_sim::simulate::fault_plan(name, &spec, seed)
                .unwrap_or_else(|_| FaultPlan::none()),
            None => FaultPlan::none(),
        };
        if !self.faults.list.is_empty() {
            plan.faults.extend(self.faults.list.iter().cloned());
            if plan.name == "none" {
                plan.name = "listed".into();
            }
        }
        plan
    }

    /// The client program of a program case (also used for plan context).
    pub fn client_spec(&self, seed: u64) -> ClientSpec {
        let program = self.client.clone().unwrap_or_default();
        ClientSpec::new(&program, &self.server, &self.set_name(), seed).unwrap_or_default()
    }

    /// Whether the case seeds a backup before it starts.
    pub fn seeds_backup(&self) -> bool {
        self.seed_backup
            .unwrap_or(!self.server.statement.is_backup())
    }
}

/// One script step's names and combinations (`n`: its 1-based index).
fn check_step(p: &str, n: usize, st: &Step) -> Result<(), ScenarioError> {
    let Some(_) = st.action else {
        return Err(Scenario::invalid(
            p,
            format!("step {n}: no `do`"),
            "say what the step does: do = \"create-ex\", ...",
        ));
    };
    for name in expect_names(&st.expect) {
        if name != "model" && name != "any" && parse_hresult(&name).is_none() {
            return Err(Scenario::invalid(
                p,
                format!("step {n}: expect '{name}' is not a code"),
                "use a code name such as VD_E_OPEN, NOERROR, 0x8077000D, or \"model\"",
            ));
        }
    }
    if st.async_label.is_some()
        && matches!(
            st.action,
            Some(
                Do::OpenAll
                    | Do::StartStatement
                    | Do::WaitStatement
                    | Do::Sleep
                    | Do::Event
                    | Do::Await
            )
        )
    {
        return Err(Scenario::invalid(
            p,
            format!(
                "step {n}: `async` is not supported with do = {:?}",
                st.action
            ),
            "make the step synchronous, or use async on a single call or on drain",
        ));
    }
    if st.save_handle.is_some() && st.action == Some(Do::OpenAll) {
        return Err(Scenario::invalid(
            p,
            format!("step {n}: save-handle on open-all"),
            "open-all keeps handles by device index; use open-device with save-handle",
        ));
    }
    if let Some(c) = &st.code
        && parse_win32(c).is_none()
    {
        return Err(Scenario::invalid(
            p,
            format!("step {n}: code '{c}' is not a Win32 code"),
            "use a name such as ERROR_SUCCESS or a number",
        ));
    }
    if let Some(t) = &st.thread
        && t != "ctl"
        && t.strip_prefix("dev")
            .and_then(|d| d.parse::<u16>().ok())
            .is_none()
    {
        return Err(Scenario::invalid(
            p,
            format!("step {n}: thread '{t}'"),
            "use ctl or dev<N>",
        ));
    }
    Ok(())
}

/// The code names an expectation mentions.
pub fn expect_names(e: &Expect) -> Vec<String> {
    match e {
        Expect::One(s) => vec![s.clone()],
        Expect::AnyOf(v) => v.clone(),
        Expect::Graded { code, lenient } => std::iter::once(code.clone())
            .chain(lenient.iter().cloned())
            .collect(),
    }
}

/// A `VDC_` command by its name without the prefix.
pub fn command_by_name(s: &str) -> Option<CommandCode> {
    let s = s.strip_prefix("VDC_").unwrap_or(s);
    CommandCode::ALL
        .iter()
        .copied()
        .find(|c| c.name().strip_prefix("VDC_") == Some(s))
}

/// Loads every `*.toml` under `dir` and its area folders, sorted by id. Errors are collected,
/// not fatal to the others.
pub fn load_dir(dir: &Path) -> (Vec<Scenario>, Vec<ScenarioError>) {
    let mut files = Vec::new();
    if let Err(e) = toml_files(dir, 0, &mut files) {
        return (
            Vec::new(),
            vec![ScenarioError::Read {
                path: dir.display().to_string(),
                err: e.to_string(),
            }],
        );
    }
    files.sort();
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    for f in files {
        match Scenario::load(&f) {
            Ok(s) => ok.push(s),
            Err(e) => errs.push(e),
        }
    }
    ok.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.path.cmp(&b.path)));
    (ok, errs)
}

/// How deep area folders may nest under a scenario directory.
const MAX_DEPTH: usize = 4;

/// Every `*.toml` under `dir` (area folders included, at most
/// [`MAX_DEPTH`] deep; links are not followed).
fn toml_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let kind = e.file_type()?;
        if kind.is_dir() && depth < MAX_DEPTH {
            toml_files(&p, depth + 1, out)?;
        } else if kind.is_file() && p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
    Ok(())
}

/// Where the catalog lives: `$VDISIM_SCENARIOS`, else `conformance/scenarios`
/// of this source tree.
pub fn default_dir() -> PathBuf {
    std::env::var_os("VDISIM_SCENARIOS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"))
}

/// Counts of what a scenario set covers.
pub fn clause_index(cases: &[Scenario]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in cases {
        for k in &c.clauses {
            m.entry(k.clone()).or_default().push(c.id.clone());
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(t, Path::new("scenarios/close.not-open.toml"))
    }

    /// Every capability a case may require has its own hint for the
    /// unimplemented verdict; an unknown name gets the fallback.
    #[test]
    fn every_capability_has_a_meaning() {
        let unknown = capability_meaning("no-such-capability");
        for c in CAPABILITIES {
            assert_ne!(capability_meaning(c), unknown, "{c}");
        }
    }

    const OK: &str = r#"
id = "close.not-open"
summary = "Close without a set"
clauses = ["close.not-open"]

[[step]]
do = "close"
expect = "VD_E_PROTOCOL"
"#;

    #[test]
    fn parses_a_script_case() {
        let s = parse(OK).unwrap();
        assert_eq!(s.steps.len(), 1);
        assert_eq!(s.steps[0].action, Some(Do::Close));
        assert_eq!(s.seeds, vec![1]);
    }

    #[test]
    fn unknown_key_gets_file_line_col_and_fix() {
        let bad = OK.replace(
            "expect = \"VD_E_PROTOCOL\"",
            "expect = \"VD_E_PROTOCOL\"\nbogus = 1",
        );
        let e = parse(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("scenarios/close.not-open.toml:9:1: unknown field `bogus`"),
            "{e}"
        );
        assert!(e.contains("fix:"), "{e}");
    }

    #[test]
    fn bad_code_and_clause_are_refused() {
        let e = parse(&OK.replace("VD_E_PROTOCOL", "VD_E_NOPE"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a code"), "{e}");
        let e = parse(&OK.replace("clauses = [\"close.not-open\"]", "clauses = [\"no.such\"]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not in the catalog"), "{e}");
        let e = Scenario::parse(OK, Path::new("x/other.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not match the file name"), "{e}");
    }
}
