//! What the `linux-abi` and `com` backends share: finding and loading a VDI
//! library, the stand-in's harness control symbols (`vdisim_harness_*`),
//! and a driver that turns the script's [`Call`]s into calls through an
//! [`Abi`] on real OS threads (one per script thread name).
//!
//! # How a case runs
//!
//! `reset` takes the process-wide case lock (the harness API of the library
//! is process-global, so ABI cases never overlap, whatever the runner's
//! worker count), calls `vdisim_harness_reset` and constructs a set object.
//! Calls run on one OS thread per script thread name, so a GetCommand
//! blocked on `dev0` does not hold up `ctl`'s Close. `finish` calls
//! `vdisim_harness_finish` *before* destroying the set objects (destroying a
//! live set closes it, which the server would see), then destroys them,
//! releases the device objects and the lock.
//!
//! # Commands
//!
//! GetCommand hands back a pointer to a library-owned `VDC_Command` block.
//! The driver keeps a map from a local command id to that block and builds
//! the [`Cmd`] the script sees from the block's fields; a Write's data is
//! parsed from the real buffer ([`data::parse_tagged`]) so the script's
//! media checks work, and a Read's data (the script's [`Content`]) is
//! materialised into the buffer before CompleteCommand. A script that
//! "tampers" with a command (a size that differs from the block) writes the
//! new field into the block, as a careless client would.
//!
//! # Without the harness symbols
//!
//! A library without `vdisim_harness_*` (Microsoft's `libsqlvdi.so`) still
//! runs every client call, but server control answers
//! [`BackendError::Unsupported`], so cases needing a statement are graded
//! *unimplemented*. Against a real SQL Server the statement would be sent
//! over TDS (`crate::sqlserver`, feature `tds`): BACKUP/RESTORE ... TO
//! VIRTUAL_DEVICE, KILL for a server-side abort.

use crate::backend::{BackendError, CaseSetup, Ticket};
use libloading::Library;
use std::collections::BTreeMap;
use std::ffi::{CString, c_char};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
use vdi_sim::client::DeviceHandle;
use vdi_sim::data::{self, Content};
use vdi_sim::fault::Fault;
use vdi_sim::msg::{BufId, Cmd, CmdId};
use vdi_sim::outcome::Outcome;
use vdi_sim::program::{Call, Reply, Value};
use vdi_sim::statement::{Statement, StatementKind};
use vdi_sim::trace::Trace;
use vdi_sim::world::{ClientProcess, End, RunResult, Timeout};
use vdi_spec::{CommandCode, Hresult, VdConfig, VdcCommand, Win32};

/// An address in the library's memory (objects, command blocks, buffers).
pub type Ptr = usize;

/// Environment variable naming the library to load.
pub const ENV_LIBRARY: &str = "VDISIM_LIBSQLVDI";

/// Longest a `join`, `wait_statement` or `finish` waits in real time before
/// the run is declared hung.
pub const HANG_AFTER: Duration = Duration::from_secs(20);

/// Longest `sleep` step staged in real time (longer ones: unsupported).
pub const MAX_SLEEP_MS: u64 = 5_000;

/// The client API of one binary interface, over raw addresses.
pub trait Abi: Send + Sync {
    /// A new set object.
    fn new_set(&self) -> Result<Ptr, BackendError>;
    /// Destroys (Linux) or releases (COM) a set object.
    fn drop_set(&self, set: Ptr);
    /// Releases a device object (COM); nothing on Linux (owned by the set).
    fn drop_device(&self, dev: Ptr);
    /// `Create` (instance `None`) or `CreateEx` (instance `Some`).
    fn create(
        &self,
        set: Ptr,
        instance: Option<Option<&str>>,
        name: &str,
        cfg: &VdConfig,
    ) -> Result<Hresult, BackendError>;
    fn get_configuration(&self, set: Ptr, t: Timeout, out: &mut VdConfig) -> Hresult;
    fn open_device(&self, set: Ptr, name: &str) -> (Hresult, Ptr);
    fn close(&self, set: Ptr) -> Hresult;
    fn signal_abort(&self, set: Ptr) -> Hresult;
    fn open_in_secondary(&self, set: Ptr, name: &str) -> Hresult;
    fn get_buffer_handle(&self, set: Ptr, buf: Ptr) -> (Hresult, u32);
    fn map_buffer_handle(&self, set: Ptr, handle: u32) -> (Hresult, Ptr);
    fn get_command(&self, dev: Ptr, t: Timeout) -> (Hresult, Ptr);
    fn complete_command(&self, dev: Ptr, cmd: Ptr, code: u32, bytes: u64, pos: u64) -> Hresult;
    /// The library's harness control, when it has one.
    fn harness(&self) -> Option<&Harness>;
}

// ----- loading -------------------------------------------------------------------------

/// Libraries loaded in this process, by path; never unloaded (objects and
/// threads of the library may outlive a backend).
static LOADED: Mutex<BTreeMap<PathBuf, &'static Library>> = Mutex::new(BTreeMap::new());

/// Loads (once per process) the library at `path`.
pub fn load(path: &Path) -> Result<&'static Library, BackendError> {
    let mut g = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = g.get(path) {
        return Ok(l);
    }
    // SAFETY: loading a shared library runs its initialisers; the VDI
    // libraries this backend is meant for (the stand-in, Microsoft's) have
    // none with preconditions.
    let lib = unsafe { Library::new(path) }
        .map_err(|e| BackendError::Failed(format!("cannot load {}: {e}", path.display())))?;
    let lib: &'static Library = Box::leak(Box::new(lib));
    g.insert(path.to_path_buf(), lib);
    Ok(lib)
}

/// Looks up `name` in `lib` as a value of type `T` (a function pointer).
///
/// # Safety
/// `T` must be the symbol's real type.
pub unsafe fn symbol<T: Copy>(lib: &'static Library, name: &str) -> Option<T> {
    // SAFETY: per the caller, `T` is the symbol's type; the library is
    // never unloaded, so the copied pointer stays valid.
    unsafe { lib.get::<T>(name.as_bytes()).ok().map(|s| *s) }
}

/// The library to load: `$VDISIM_LIBSQLVDI`, else the stand-in built next
/// to the running executable (the newest of `target/<profile>/libsqlvdi.so`
/// and `target/<profile>/deps/libsqlvdi.so`), built with `cargo build -p
/// vdi-standin` when there is none.
pub fn library_path() -> Result<PathBuf, BackendError> {
    static FOUND: OnceLock<Result<PathBuf, BackendError>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            if let Some(p) = std::env::var_os(ENV_LIBRARY).filter(|p| !p.is_empty()) {
                return Ok(PathBuf::from(p));
            }
            let dir = profile_dir()?;
            if let Some(p) = newest(&dir) {
                return Ok(p);
            }
            build_standin(&dir)?;
            newest(&dir).ok_or_else(|| {
                BackendError::Failed(format!(
                    "no libsqlvdi.so in {} after cargo build -p vdi-standin",
                    dir.display()
                ))
            })
        })
        .clone()
}

/// `target/<profile>` of the running executable (`vdisim` lives there;
/// tests and benches in its `deps/`).
pub(crate) fn profile_dir() -> Result<PathBuf, BackendError> {
    let exe =
        std::env::current_exe().map_err(|e| BackendError::Failed(format!("current_exe: {e}")))?;
    let mut dir = exe
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| BackendError::Failed("executable has no directory".into()))?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

fn newest(dir: &Path) -> Option<PathBuf> {
    [dir.join("deps/libsqlvdi.so"), dir.join("libsqlvdi.so")]
        .into_iter()
        .filter_map(|p| {
            let t = std::fs::metadata(&p).ok()?.modified().ok()?;
            Some((t, p))
        })
        .max()
        .map(|(_, p)| p)
}

fn build_standin(dir: &Path) -> Result<(), BackendError> {
    let release = dir.file_name().is_some_and(|n| n == "release");
    let target = dir.parent().map(Path::to_path_buf);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = std::process::Command::new(cargo);
    c.args(["build", "-p", "vdi-standin"]);
    if release {
        c.arg("--release");
    }
    if let Some(t) = target {
        c.env("CARGO_TARGET_DIR", t);
    }
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    let st = c
        .status()
        .map_err(|e| BackendError::Failed(format!("cargo build -p vdi-standin: {e}")))?;
    if !st.success() {
        return Err(BackendError::Failed(
            "cargo build -p vdi-standin failed".into(),
        ));
    }
    Ok(())
}

// ----- the harness symbols -------------------------------------------------------------

type JsonIn = unsafe extern "C" fn(*const c_char) -> i32;
type WaitFn = unsafe extern "C" fn(i64, *mut c_char, usize, *mut usize) -> i32;
type FinishFn = unsafe extern "C" fn(*mut c_char, usize, *mut usize) -> i32;

/// The stand-in's server control (`vdisim_harness_*`).
#[derive(Clone, Copy)]
pub struct Harness {
    reset: JsonIn,
    start_statement: JsonIn,
    event: JsonIn,
    wait: WaitFn,
    finish: FinishFn,
    /// `vdisim_harness_client_death`, when the library has it.
    pub client_death: Option<unsafe extern "C" fn() -> i32>,
}

/// What `vdisim_harness_finish` reports (see the stand-in's `harness.rs`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct Observation {
    pub statements: Vec<(Statement, Outcome)>,
    pub devices: Vec<vdi_sim::server::ServerDevSummary>,
    pub clauses: BTreeMap<String, u64>,
    pub trace_hash: String,
    pub elapsed_ms: u64,
    pub idle: bool,
    pub faults_fired: Vec<String>,
    /// Backups the case's statements added to the server's history.
    pub new_backups: Vec<vdi_sim::statement::BackupRecord>,
}

#[derive(serde::Serialize)]
struct SetupJson<'a> {
    seed: u64,
    profile: &'a vdi_spec::Profile,
    seed_backups: &'a [vdi_sim::statement::BackupRecord],
    budget_ms: u64,
    time_scale: u32,
    faults: &'a vdi_sim::fault::FaultPlan,
}

fn harness_code(what: &str, rc: i32) -> Result<(), BackendError> {
    match rc {
        0 => Ok(()),
        -3 => Err(BackendError::Unsupported(format!(
            "server control: {what} is not supported by the library's in-process server"
        ))),
        rc => Err(BackendError::Failed(format!("{what}: harness error {rc}"))),
    }
}

fn cstring(s: &str) -> Result<CString, BackendError> {
    CString::new(s).map_err(|e| BackendError::Failed(e.to_string()))
}

impl Harness {
    /// The harness symbols of `lib`, if it has all of them.
    pub fn load(lib: &'static Library) -> Option<Harness> {
        // SAFETY: the types are those of the stand-in's exported functions
        // (sim/standin/src/harness.rs).
        unsafe {
            Some(Harness {
                reset: symbol(lib, "vdisim_harness_reset")?,
                start_statement: symbol(lib, "vdisim_harness_start_statement")?,
                event: symbol(lib, "vdisim_harness_event")?,
                wait: symbol(lib, "vdisim_harness_wait_statement")?,
                finish: symbol(lib, "vdisim_harness_finish")?,
                client_death: symbol(lib, "vdisim_harness_client_death"),
            })
        }
    }

    fn json_in(&self, f: JsonIn, what: &str, json: &str) -> Result<(), BackendError> {
        let c = cstring(json)?;
        // SAFETY: `c` is a NUL-terminated string alive for the call.
        let rc = unsafe { f(c.as_ptr()) };
        harness_code(what, rc)
    }

    pub fn reset(&self, setup: &CaseSetup) -> Result<(), BackendError> {
        let j = serde_json::to_string(&SetupJson {
            seed: setup.seed,
            profile: &setup.profile,
            seed_backups: &setup.seed_backups,
            budget_ms: setup.budget_ms,
            time_scale: setup.time_scale.max(1),
            faults: &setup.faults,
        })
        .map_err(|e| BackendError::Failed(e.to_string()))?;
        self.json_in(self.reset, "reset", &j)
    }

    pub fn start_statement(&self, s: &Statement) -> Result<(), BackendError> {
        let j = serde_json::to_string(s).map_err(|e| BackendError::Failed(e.to_string()))?;
        self.json_in(self.start_statement, "start-statement", &j)
    }

    pub fn event(&self, f: &Fault) -> Result<(), BackendError> {
        let j = serde_json::to_string(f).map_err(|e| BackendError::Failed(e.to_string()))?;
        self.json_in(self.event, &format!("event {}", f.kind()), &j)
    }

    /// Reads a JSON answer, growing the buffer as `needed` says.
    fn read_json(
        &self,
        what: &str,
        mut call: impl FnMut(*mut c_char, usize, *mut usize) -> i32,
    ) -> Result<(i32, String), BackendError> {
        let mut buf = vec![0u8; 64 * 1024];
        for _ in 0..4 {
            let mut needed = 0usize;
            let rc = call(buf.as_mut_ptr().cast(), buf.len(), &mut needed);
            if rc == -4 && needed > buf.len() {
                buf.resize(needed, 0);
                continue;
            }
            if rc < 0 {
                return Err(BackendError::Failed(format!("{what}: harness error {rc}")));
            }
            let n = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            return Ok((rc, String::from_utf8_lossy(&buf[..n]).into_owned()));
        }
        Err(BackendError::Failed(format!("{what}: answer too large")))
    }

    /// Waits for the outcome; `t` is in virtual ms of the case's clock
    /// (`scale` virtual ms per real ms); forever is [`HANG_AFTER`] of real time.
    pub fn wait_statement(&self, t: Timeout, scale: u32) -> Result<Option<Outcome>, BackendError> {
        let ms = match t {
            Timeout::Infinite => HANG_AFTER.as_millis() as i64 * i64::from(scale.max(1)),
            Timeout::Ms(ms) => i64::try_from(ms).unwrap_or(i64::MAX),
        };
        let f = self.wait;
        // SAFETY: the buffer and `needed` are valid for the call.
        let (rc, text) = self.read_json("wait-statement", |b, l, n| unsafe { f(ms, b, l, n) })?;
        if rc == 1 {
            if t == Timeout::Infinite {
                return Err(BackendError::Ended("Hang".into()));
            }
            return Ok(None);
        }
        serde_json::from_str(&text).map_err(|e| BackendError::Failed(format!("outcome JSON: {e}")))
    }

    pub fn finish(&self) -> Result<Observation, BackendError> {
        let f = self.finish;
        // SAFETY: the buffer and `needed` are valid for the call.
        let (_, text) = self.read_json("finish", |b, l, n| unsafe { f(b, l, n) })?;
        serde_json::from_str(&text)
            .map_err(|e| BackendError::Failed(format!("observation JSON: {e}")))
    }
}

// ----- the process-wide case lock ------------------------------------------------------

static BUSY: Mutex<bool> = Mutex::new(false);
static FREE: Condvar = Condvar::new();

fn lock_case() {
    let mut g = BUSY.lock().unwrap_or_else(|e| e.into_inner());
    while *g {
        g = FREE.wait(g).unwrap_or_else(|e| e.into_inner());
    }
    *g = true;
}

fn unlock_case() {
    *BUSY.lock().unwrap_or_else(|e| e.into_inner()) = false;
    FREE.notify_one();
}

// ----- the driver ----------------------------------------------------------------------

#[derive(Default)]
pub(super) struct St {
    pub(super) set: Ptr,
    devices: BTreeMap<(u32, u16), Ptr>,
    all_devices: Vec<Ptr>,
    /// Local command id → (device object, block, the Cmd as first seen).
    cmds: BTreeMap<u64, (Ptr, Ptr, Cmd)>,
    /// Commands fetched and not yet handed back, of the current set
    /// incarnation: only their Read buffers are the client's to fill (a new
    /// Create frees the previous incarnation's buffers).
    outstanding: std::collections::BTreeSet<u64>,
    next_cmd: u64,
    buf_ids: BTreeMap<Ptr, u32>,
    buf_addrs: BTreeMap<u32, Ptr>,
    incarnation: u32,
    set_name: String,
    pub(super) stmt_devices: Vec<String>,
    /// Media of asynchronous drains (the script keeps its own).
    media: Vec<Content>,
    trace: Option<Trace>,
    pub(super) t0: Option<Instant>,
    /// Virtual ms per real ms of the case (trace times are virtual).
    pub(super) scale: u32,
    /// Planned faults the client side applies (command-fetch triggers).
    pub(super) faults: super::abi_program::ClientFaults,
}

impl St {
    fn buf_id(&mut self, addr: Ptr) -> Option<BufId> {
        if addr == 0 {
            return None;
        }
        if let Some(id) = self.buf_ids.get(&addr) {
            return Some(BufId(*id));
        }
        let id = self.buf_ids.len() as u32 + 1;
        self.buf_ids.insert(addr, id);
        self.buf_addrs.insert(id, addr);
        Some(BufId(id))
    }

    pub(super) fn emit(
        &mut self,
        who: &str,
        what: &str,
        detail: String,
        clause: Option<&'static str>,
    ) {
        let t = self.t0.map_or(0, |t| {
            u64::try_from(t.elapsed().as_millis())
                .unwrap_or(0)
                .saturating_mul(u64::from(self.scale.max(1)))
        });
        if let Some(tr) = &mut self.trace {
            tr.emit(t, who, what, detail, clause);
        }
    }

    /// The index of device `name` in the set (statement's device list).
    fn dev_index(&self, name: &str) -> u16 {
        if let Some(i) = self.stmt_devices.iter().position(|d| d == name) {
            return i as u16;
        }
        if name == self.set_name {
            return 0;
        }
        name.rsplit_once("-dev")
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0)
    }
}

pub(super) struct Shared {
    pub(super) abi: Arc<dyn Abi>,
    st: Mutex<St>,
}

impl Shared {
    pub(super) fn st(&self) -> std::sync::MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Job = Box<dyn FnOnce() -> Result<Reply, BackendError> + Send>;

struct Results {
    done: Mutex<BTreeMap<usize, Result<Reply, BackendError>>>,
    cond: Condvar,
}

/// A backend over an [`Abi`].
pub struct AbiDriver {
    pub(super) shared: Arc<Shared>,
    results: Arc<Results>,
    workers: BTreeMap<String, Sender<(usize, Job)>>,
    /// Threads that may be inside a library call: joined (within 5 s)
    /// before the case's objects are destroyed.
    pub(super) handles: Vec<std::thread::JoinHandle<()>>,
    next_ticket: usize,
    holding: bool,
    record: bool,
    unsupported: Option<String>,
    /// Virtual ms per real ms of the case.
    pub(super) scale: u32,
    /// Backups the last finished case added to the server's history.
    pub(super) new_backups: Vec<vdi_sim::statement::BackupRecord>,
}

fn reply(code: Hresult, value: Value) -> Reply {
    Reply {
        code,
        clause: "",
        value,
    }
}

/// One call through the ABI. Runs on a worker thread; the state lock is
/// never held across a call into the library.
pub(super) fn perform(sh: &Shared, who: &str, call: Call) -> Result<Reply, BackendError> {
    let abi = &sh.abi;
    let set = sh.st().set;
    let name = call.method();
    let r = match call {
        Call::Create { name, cfg } => {
            let code = abi.create(set, None, &name, &cfg)?;
            if code == Hresult::NOERROR {
                let mut st = sh.st();
                st.incarnation += 1;
                st.set_name = name;
                st.outstanding.clear();
            }
            reply(code, Value::None)
        }
        Call::CreateEx {
            instance,
            name,
            cfg,
        } => {
            let code = abi.create(set, Some(instance.as_deref()), &name, &cfg)?;
            if code == Hresult::NOERROR {
                let mut st = sh.st();
                st.incarnation += 1;
                st.set_name = name;
                st.outstanding.clear();
            }
            reply(code, Value::None)
        }
        Call::GetConfiguration { timeout } => {
            let mut cfg = VdConfig::default();
            let code = abi.get_configuration(set, timeout, &mut cfg);
            if code == Hresult::NOERROR {
                reply(code, Value::Config(cfg))
            } else {
                reply(code, Value::None)
            }
        }
        Call::OpenDevice { name } => {
            let (code, dev) = abi.open_device(set, &name);
            if code == Hresult::NOERROR && dev != 0 {
                let mut st = sh.st();
                let h = DeviceHandle {
                    incarnation: st.incarnation,
                    index: st.dev_index(&name),
                };
                st.devices.insert((h.incarnation, h.index), dev);
                st.all_devices.push(dev);
                reply(code, Value::Device(h))
            } else {
                reply(code, Value::None)
            }
        }
        Call::Close => reply(abi.close(set), Value::None),
        Call::SignalAbort => reply(abi.signal_abort(set), Value::None),
        Call::OpenInSecondary { name, .. } => reply(abi.open_in_secondary(set, &name), Value::None),
        Call::GetBufferHandle { buf } => {
            let addr = match buf {
                None => 0,
                Some(b) => sh.st().buf_addrs.get(&b.0).copied().unwrap_or(b.0 as Ptr),
            };
            let (code, h) = abi.get_buffer_handle(set, addr);
            if code == Hresult::NOERROR {
                reply(code, Value::Handle(h))
            } else {
                reply(code, Value::None)
            }
        }
        Call::MapBufferHandle { handle } => {
            let (code, addr) = abi.map_buffer_handle(set, handle);
            if code == Hresult::NOERROR {
                let id = sh.st().buf_id(addr);
                reply(code, id.map_or(Value::None, Value::Buffer))
            } else {
                reply(code, Value::None)
            }
        }
        Call::GetCommand { dev, timeout } => {
            let d = sh
                .st()
                .devices
                .get(&(dev.incarnation, dev.index))
                .copied()
                .unwrap_or(0);
            let (code, block) = abi.get_command(d, timeout);
            if code == Hresult::NOERROR && block != 0 {
                // SAFETY: the library returned NOERROR with this block: it
                // points to a live VDC_Command owned by the library until
                // completed (read only).
                let b: VdcCommand = unsafe { std::ptr::read(block as *const VdcCommand) };
                let code_ = CommandCode::from_u32(b.command_code).unwrap_or(CommandCode::Write);
                let data = if code_ == CommandCode::Write && !b.buffer.is_null() {
                    // SAFETY: a Write's buffer holds `size` bytes the server
                    // wrote, the client's to read until CompleteCommand.
                    let bytes = unsafe { std::slice::from_raw_parts(b.buffer, b.size as usize) };
                    data::parse_tagged(bytes)
                } else {
                    Content::Empty
                };
                let mut st = sh.st();
                st.next_cmd += 1;
                let cmd = Cmd {
                    id: CmdId(st.next_cmd),
                    dev: dev.index,
                    code: code_,
                    size: b.size,
                    position: b.position,
                    buffer: st.buf_id(b.buffer as Ptr),
                    data,
                };
                let id = st.next_cmd;
                st.cmds.insert(id, (d, block, cmd.clone()));
                st.outstanding.insert(id);
                drop(st);
                super::abi_program::fetched(sh, who, &cmd);
                reply(code, Value::Command(cmd))
            } else {
                reply(code, Value::None)
            }
        }
        Call::CompleteCommand {
            dev,
            cmd,
            code,
            bytes,
            position,
            data: content,
        } => {
            let (code, bytes) = super::abi_program::completion(sh, who, cmd.id, code, bytes);
            let (d, known) = {
                let st = sh.st();
                (
                    st.devices
                        .get(&(dev.incarnation, dev.index))
                        .copied()
                        .unwrap_or(0),
                    st.cmds.get(&cmd.id.0).cloned(),
                )
            };
            let block = match &known {
                Some((_, block, first)) => {
                    let outstanding = sh.st().outstanding.remove(&cmd.id.0);
                    if first.code == CommandCode::Read
                        && outstanding
                        && !content.is_empty()
                        && let Some(buf) = first
                            .buffer
                            .and_then(|b| sh.st().buf_addrs.get(&b.0).copied())
                    {
                        let n = content.len().min(u64::from(first.size)) as usize;
                        // SAFETY: the Read is outstanding in the current set
                        // incarnation, so its buffer is live and holds `size`
                        // bytes that are the client's to fill until
                        // CompleteCommand.
                        let s = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, n) };
                        data::materialize(&content.slice(0, n as u64), s);
                    }
                    if cmd.size != first.size || cmd.position != first.position {
                        // A careless client writing into the read-only block.
                        // SAFETY: the block is live (outstanding, or kept by
                        // the library after completion) and 24 bytes long.
                        unsafe {
                            let p = *block as *mut VdcCommand;
                            std::ptr::addr_of_mut!((*p).size).write(cmd.size);
                            std::ptr::addr_of_mut!((*p).position).write(cmd.position);
                        }
                    }
                    *block
                }
                None => 0,
            };
            reply(
                abi.complete_command(d, block, code.0, bytes, position),
                Value::None,
            )
        }
    };
    let detail = format!("-> {}", r.code);
    sh.st().emit(who, name, detail, None);
    Ok(r)
}

/// The reference device loop (what `drain` does), on the driver's media.
fn drain_loop(sh: &Shared, who: &str, dev: DeviceHandle, timeout: Timeout) -> Reply {
    let mut timeouts = 0u32;
    loop {
        let r = match perform(sh, who, Call::GetCommand { dev, timeout }) {
            Ok(r) => r,
            Err(_) => return reply(Hresult::VD_E_UNEXPECTED, Value::None),
        };
        let c = match r.value {
            Value::Command(c) => c,
            _ if r.code == Hresult::VD_E_TIMEOUT && timeouts < 10_000 => {
                timeouts += 1;
                continue;
            }
            _ => return reply(r.code, Value::None),
        };
        let (code, bytes, data) = {
            let mut st = sh.st();
            let d = c.dev as usize;
            if st.media.len() <= d {
                st.media.resize(d + 1, Content::Empty);
            }
            match c.code {
                CommandCode::Write => {
                    st.media[d].append(&c.data);
                    (Win32::ERROR_SUCCESS, u64::from(c.size), Content::Empty)
                }
                CommandCode::Read => {
                    let data = st.media[d].slice(c.position, u64::from(c.size));
                    let code = if data.len() < u64::from(c.size) {
                        Win32::ERROR_HANDLE_EOF
                    } else {
                        Win32::ERROR_SUCCESS
                    };
                    (code, data.len(), data)
                }
                CommandCode::Flush | CommandCode::ClearError | CommandCode::Complete => {
                    (Win32::ERROR_SUCCESS, 0, Content::Empty)
                }
                _ => (Win32::ERROR_NOT_SUPPORTED, 0, Content::Empty),
            }
        };
        let cr = perform(
            sh,
            who,
            Call::CompleteCommand {
                dev,
                position: c.position,
                cmd: c,
                code,
                bytes,
                data,
            },
        );
        match cr {
            Ok(r) if r.code == Hresult::NOERROR => {}
            Ok(r) => return reply(r.code, Value::None),
            Err(_) => return reply(Hresult::VD_E_UNEXPECTED, Value::None),
        }
    }
}

impl AbiDriver {
    pub fn new(abi: Arc<dyn Abi>) -> AbiDriver {
        AbiDriver {
            shared: Arc::new(Shared {
                abi,
                st: Mutex::new(St::default()),
            }),
            results: Arc::new(Results {
                done: Mutex::new(BTreeMap::new()),
                cond: Condvar::new(),
            }),
            workers: BTreeMap::new(),
            handles: Vec::new(),
            next_ticket: 0,
            holding: false,
            record: false,
            unsupported: None,
            scale: 1,
            new_backups: Vec::new(),
        }
    }

    fn harness(&self) -> Result<Harness, BackendError> {
        self.shared.abi.harness().copied().ok_or_else(|| {
            BackendError::Unsupported(
                "server control: the library has no vdisim_harness_* symbols; a real SQL Server is driven over TDS (feature `tds`, conformance/src/sqlserver.rs)".into(),
            )
        })
    }

    fn submit(&mut self, thread: &str, job: Job) -> Result<Ticket, BackendError> {
        if let Some(m) = &self.unsupported {
            return Err(BackendError::Unsupported(m.clone()));
        }
        self.next_ticket += 1;
        let t = self.next_ticket;
        if !self.workers.contains_key(thread) {
            let (tx, rx) = mpsc::channel::<(usize, Job)>();
            let results = self.results.clone();
            let h = std::thread::Builder::new()
                .name(format!("abi-{thread}"))
                .spawn(move || {
                    while let Ok((t, job)) = rx.recv() {
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                            .unwrap_or_else(|_| {
                                Err(BackendError::Failed("the call panicked".into()))
                            });
                        results
                            .done
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(t, r);
                        results.cond.notify_all();
                    }
                })
                .map_err(|e| BackendError::Failed(format!("spawn: {e}")))?;
            self.handles.push(h);
            self.workers.insert(thread.to_string(), tx);
        }
        let tx = self
            .workers
            .get(thread)
            .ok_or_else(|| BackendError::Failed("no worker".into()))?;
        tx.send((t, job))
            .map_err(|_| BackendError::Failed(format!("thread {thread} is gone")))?;
        Ok(Ticket(t))
    }

    /// Tears down the objects of the previous case (if any). The case is
    /// over (the harness has reported), so the set is aborted and closed
    /// first: that wakes any call still blocked on a worker thread. The
    /// objects are destroyed only once every worker has returned; a worker
    /// that does not return leaks them rather than risk a use after free.
    fn teardown(&mut self) {
        self.workers.clear();
        let set = self.shared.st().set;
        if set != 0 {
            self.shared.abi.signal_abort(set);
            self.shared.abi.close(set);
        }
        let dl = Instant::now() + Duration::from_secs(5);
        let mut stuck = false;
        for h in std::mem::take(&mut self.handles) {
            while !h.is_finished() && Instant::now() < dl {
                std::thread::sleep(Duration::from_millis(1));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                stuck = true;
            }
        }
        let (set, devs) = {
            let mut st = self.shared.st();
            let set = std::mem::take(&mut st.set);
            (set, std::mem::take(&mut st.all_devices))
        };
        if !stuck {
            if set != 0 {
                self.shared.abi.drop_set(set);
            }
            for d in devs {
                self.shared.abi.drop_device(d);
            }
        }
        self.results
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn reset(&mut self, setup: &CaseSetup) -> Result<(), BackendError> {
        if self.holding {
            self.teardown();
        } else {
            lock_case();
            self.holding = true;
        }
        // Planned faults: the library fires server-side ones at a time, the
        // client side (here) those triggered by a command fetch; a trigger
        // on a scheduler step has no real counterpart.
        self.unsupported = super::abi_program::unstageable_faults(&setup.faults);
        // Only the stand-in's harness scales the library's clock: a real
        // library (no harness symbols) runs in real time.
        self.scale = if self.shared.abi.harness().is_some() {
            setup.time_scale.max(1)
        } else {
            1
        };
        if let Some(h) = self.shared.abi.harness() {
            h.reset(setup)?;
        }
        let set = self.shared.abi.new_set()?;
        self.record = setup.record_trace;
        let mut st = self.shared.st();
        *st = St {
            set,
            trace: Some(if setup.record_trace {
                Trace::recording()
            } else {
                Trace::hashing()
            }),
            t0: Some(Instant::now()),
            scale: self.scale,
            faults: super::abi_program::ClientFaults::new(&setup.faults),
            media: setup
                .seed_backups
                .last()
                .map(|rec| {
                    rec.families
                        .iter()
                        .map(|f| Content::stream(f.origin, 0, f.len))
                        .collect()
                })
                .unwrap_or_default(),
            ..St::default()
        };
        Ok(())
    }

    pub fn start(&mut self, thread: &str, call: Call) -> Result<Ticket, BackendError> {
        let sh = self.shared.clone();
        let who = thread.to_string();
        self.submit(thread, Box::new(move || perform(&sh, &who, call)))
    }

    pub fn start_drain(
        &mut self,
        thread: &str,
        dev: DeviceHandle,
        timeout: Timeout,
    ) -> Result<Ticket, BackendError> {
        let sh = self.shared.clone();
        let who = format!("{thread}-drain");
        self.submit(
            thread,
            Box::new(move || Ok(drain_loop(&sh, &who, dev, timeout))),
        )
    }

    pub fn join(&mut self, t: Ticket) -> Result<Reply, BackendError> {
        let dl = Instant::now() + HANG_AFTER;
        let mut g = self.results.done.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = g.remove(&t.0) {
                return r;
            }
            let now = Instant::now();
            if now >= dl {
                return Err(BackendError::Ended("Hang".into()));
            }
            g = self
                .results
                .cond
                .wait_timeout(g, dl - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn start_statement(&mut self, stmt: &Statement) -> Result<(), BackendError> {
        if let Some(m) = &self.unsupported {
            return Err(BackendError::Unsupported(m.clone()));
        }
        let h = self.harness()?;
        {
            let mut st = self.shared.st();
            st.stmt_devices = stmt.devices.clone();
            st.faults.phase = if stmt.kind.is_backup() {
                vdi_sim::fault::Phase::Backup
            } else {
                vdi_sim::fault::Phase::Restore
            };
            if stmt.kind.is_backup() {
                st.media = vec![Content::Empty; stmt.devices.len()];
            }
            st.emit("sql", "StartStatement", stmt.to_tsql(), None);
        }
        let _ = StatementKind::BackupDatabase;
        h.start_statement(stmt)
    }

    pub fn event(&mut self, fault: Fault) -> Result<(), BackendError> {
        self.shared
            .st()
            .emit("world", "Fault", format!("{fault:?}"), None);
        match fault {
            // Client-side: the client itself calls SignalAbort.
            Fault::ClientSignalAbort => {
                let set = self.shared.st().set;
                self.shared.abi.signal_abort(set);
                Ok(())
            }
            Fault::ClientDeath if self.shared.abi.harness().is_some() => {
                super::abi_program::client_death(&self.shared);
                Ok(())
            }
            f => self.harness()?.event(&f),
        }
    }

    /// Lets `ms` of virtual time pass: `ms / scale` real ms.
    pub fn sleep(&mut self, ms: u64) -> Result<(), BackendError> {
        let real = super::abi_program::real_ms(ms, self.scale);
        if real > MAX_SLEEP_MS {
            return Err(BackendError::Unsupported(format!(
                "a sleep of {ms} ms: real backends stage at most {MAX_SLEEP_MS} ms of real time per sleep (here {real} ms at time scale {})",
                self.scale
            )));
        }
        std::thread::sleep(Duration::from_millis(real));
        Ok(())
    }

    pub fn wait_statement(&mut self, timeout: Timeout) -> Result<Option<Outcome>, BackendError> {
        self.harness()?.wait_statement(timeout, self.scale)
    }

    pub fn finish(&mut self) -> Result<RunResult, BackendError> {
        let obs = match self.shared.abi.harness() {
            Some(h) => h.finish(),
            None => Ok(Observation {
                idle: true,
                ..Observation::default()
            }),
        };
        self.teardown();
        if self.holding {
            self.holding = false;
            unlock_case();
        }
        let obs = obs?;
        self.new_backups = obs.new_backups.clone();
        let mut st = self.shared.st();
        let trace = st.trace.take().unwrap_or_else(Trace::off);
        let mut clauses: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (k, v) in &obs.clauses {
            if let Some(c) = vdi_spec::clauses::clause(k) {
                *clauses.entry(c.id).or_default() += v;
            }
        }
        for (k, v) in trace.clause_hits() {
            *clauses.entry(k).or_default() += v;
        }
        Ok(RunResult {
            end: if obs.idle { End::Finished } else { End::Hang },
            now_ms: obs.elapsed_ms,
            steps: 0,
            statements: obs.statements,
            client: ClientProcess::default(),
            violations: Vec::new(),
            cells: BTreeMap::new(),
            clauses,
            server_devices: obs.devices,
            trace,
            faults_fired: obs.faults_fired,
        })
    }
}

impl Drop for AbiDriver {
    fn drop(&mut self) {
        if self.holding {
            self.teardown();
            self.holding = false;
            unlock_case();
        }
    }
}
