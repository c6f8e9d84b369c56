//! The `serve` backend: the catalog through the stand-in library's Linux
//! class ABI with every set connected to a real `vdisim serve` process —
//! commands over its socket, buffers in shared memory, server control
//! (statements, events, outcomes) over a control connection.
//!
//! The backend starts one `vdisim serve` child per harness process on a
//! private socket (`--exit-with` the harness's pid, so it never outlives
//! it), loads its own copy of the stand-in library (so its process-wide
//! choice of server cannot leak into the `linux-abi` backend's copy when
//! both run in one invocation), and tells that copy to use the server
//! (`vdisim_use_server`). Everything else is the `linux-abi` backend, but
//! for a built-in program's secondary client process: another process can
//! join a set on that server by name, so the program runner stages it as a
//! real second process (`vdisim __abi-secondary` on the stand-in, with
//! `VDISIM_SERVER` naming the socket; [`super::abi::secondary`]).

use super::abi::secondary::Launch;
use super::abi::{self, Abi, AbiDriver, Harness, Ptr};
use super::linux_abi::{LinuxAbi, abi_backend};
use crate::backend::{Backend, BackendError, BackendInfo, CaseSetup, Ticket};
use std::ffi::{CString, c_char};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use vdi_model::call::{Call, Reply};
use vdi_model::client::DeviceHandle;
use vdi_model::fault::Fault;
use vdi_model::msg::Timeout;
use vdi_model::outcome::Outcome;
use vdi_model::statement::Statement;
use vdi_sim::world::RunResult;
use vdi_spec::{Hresult, VdConfig};

/// The environment variable naming the `vdisim` executable to start (default:
/// the running `vdisim`, else the one next to the running test or bench).
pub const ENV_VDISIM: &str = "VDISIM_BIN";

struct ServeChild {
    _child: Mutex<Child>,
    sock: PathBuf,
}

/// The `vdisim` executable: `$VDISIM_BIN`, else the running one when it is
/// `vdisim`, else the one next to the running test or bench.
pub(crate) fn vdisim_exe() -> Result<PathBuf, BackendError> {
    if let Some(p) = std::env::var_os(ENV_VDISIM).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| BackendError::Failed(e.to_string()))?;
    if exe.file_stem().is_some_and(|s| s == "vdisim") {
        return Ok(exe);
    }
    let p = abi::profile_dir()?.join("vdisim");
    if p.exists() {
        Ok(p)
    } else {
        Err(BackendError::Failed(format!(
            "no vdisim executable at {}: build it (cargo build -p vdi-conformance) or set {ENV_VDISIM}",
            p.display()
        )))
    }
}

fn serve_child() -> Result<&'static ServeChild, BackendError> {
    static S: OnceLock<Result<ServeChild, BackendError>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("vdisim-serve-backend-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| BackendError::Failed(e.to_string()))?;
        let sock = dir.join("serve.sock");
        let child = Command::new(vdisim_exe()?)
            .args(["serve", "--ephemeral", "--listen"])
            .arg(&sock)
            .args(["--exit-with", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| BackendError::Failed(format!("cannot start vdisim serve: {e}")))?;
        let t0 = Instant::now();
        while vdi_host::remote::control::Control::connect(&sock, "serve backend").is_err() {
            if t0.elapsed() > Duration::from_secs(30) {
                return Err(BackendError::Failed(format!(
                    "vdisim serve never listened at {}",
                    sock.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(ServeChild {
            _child: Mutex::new(child),
            sock,
        })
    })
    .as_ref()
    .map_err(|e| e.clone())
}

/// The socket of this process's `vdisim serve` child (started on first
/// use): where another client process joins the backend's sets by name.
pub fn server_socket() -> Result<PathBuf, BackendError> {
    Ok(serve_child()?.sock.clone())
}

/// The private copy of the stand-in, made and loaded once per process (the
/// runner makes a backend object per job, on several threads). The copy is
/// written under a temporary name and renamed, so it is never loaded half
/// written, and removed once loaded: the loaded library stays mapped and
/// [`abi::load`] keeps it by path.
fn private_copy() -> Result<PathBuf, BackendError> {
    static COPY: OnceLock<Result<PathBuf, BackendError>> = OnceLock::new();
    COPY.get_or_init(|| {
        let serve = serve_child()?;
        let src = abi::library_path()?;
        let copy = serve
            .sock
            .with_file_name(format!("libsqlvdi-{}.so", std::process::id()));
        let partial = copy.with_extension("so.partial");
        let fail = |e: std::io::Error| {
            BackendError::Failed(format!(
                "cannot copy {} to {}: {e}",
                src.display(),
                copy.display()
            ))
        };
        std::fs::copy(&src, &partial).map_err(fail)?;
        std::fs::rename(&partial, &copy).map_err(fail)?;
        let loaded = abi::load(&copy);
        let _ = std::fs::remove_file(&copy);
        loaded.map(|_| copy)
    })
    .clone()
}

/// The Linux ABI of a private copy of the stand-in, pointed at the server,
/// and how a secondary process reaches that server.
pub struct ServeAbi {
    inner: LinuxAbi,
    launch: Launch,
}

impl Abi for ServeAbi {
    fn new_set(&self) -> Result<Ptr, BackendError> {
        self.inner.new_set()
    }
    fn drop_set(&self, set: Ptr) {
        self.inner.drop_set(set)
    }
    fn drop_device(&self, dev: Ptr) {
        self.inner.drop_device(dev)
    }
    fn create(
        &self,
        set: Ptr,
        instance: Option<Option<&str>>,
        name: &str,
        cfg: &VdConfig,
    ) -> Result<Hresult, BackendError> {
        self.inner.create(set, instance, name, cfg)
    }
    fn get_configuration(&self, set: Ptr, t: Timeout, out: &mut VdConfig) -> Hresult {
        self.inner.get_configuration(set, t, out)
    }
    fn open_device(&self, set: Ptr, name: &str) -> (Hresult, Ptr) {
        self.inner.open_device(set, name)
    }
    fn close(&self, set: Ptr) -> Hresult {
        self.inner.close(set)
    }
    fn signal_abort(&self, set: Ptr) -> Hresult {
        self.inner.signal_abort(set)
    }
    fn open_in_secondary(&self, set: Ptr, name: &str) -> Hresult {
        self.inner.open_in_secondary(set, name)
    }
    fn get_buffer_handle(&self, set: Ptr, buf: Ptr) -> (Hresult, u32) {
        self.inner.get_buffer_handle(set, buf)
    }
    fn map_buffer_handle(&self, set: Ptr, handle: u32) -> (Hresult, Ptr) {
        self.inner.map_buffer_handle(set, handle)
    }
    fn get_command(&self, dev: Ptr, t: Timeout) -> (Hresult, Ptr) {
        self.inner.get_command(dev, t)
    }
    fn complete_command(&self, dev: Ptr, cmd: Ptr, code: u32, bytes: u64, pos: u64) -> Hresult {
        self.inner.complete_command(dev, cmd, code, bytes, pos)
    }
    fn harness(&self) -> Option<&Harness> {
        self.inner.harness()
    }
    fn secondary_launch(&self) -> Option<Launch> {
        Some(self.launch.clone())
    }
}

/// The Linux ABI of a private copy of the stand-in, pointed at the server.
fn load() -> Result<ServeAbi, BackendError> {
    let serve = serve_child()?;
    let copy = private_copy()?;
    let abi = LinuxAbi::load_from(&copy)?;
    let lib = abi::load(&copy)?;
    type UseServer = unsafe extern "C" fn(*const c_char) -> i32;
    // SAFETY: `vdisim_use_server` has this signature (sim/standin/src/remote/forward.rs).
    let f: UseServer = unsafe { abi::symbol(lib, "vdisim_use_server") }.ok_or_else(|| {
        BackendError::Unsupported("the library has no vdisim_use_server (not the stand-in)".into())
    })?;
    let path = CString::new(serve.sock.display().to_string())
        .map_err(|_| BackendError::Failed("socket path with a NUL byte".into()))?;
    // SAFETY: a NUL-terminated string that outlives the call.
    unsafe { f(path.as_ptr()) };
    let launch = Launch {
        exe: vdisim_exe()?,
        // The secondary loads the stand-in itself (the private copy is
        // this process's alone, and already removed from disk).
        library: abi::library_path()?,
        server: serve.sock.clone(),
    };
    Ok(ServeAbi { inner: abi, launch })
}

abi_backend!(
    /// The `serve` backend.
    ServeBackend,
    load,
    "serve",
    "the stand-in's Linux class ABI with its sets connected to a vdisim serve process (socket + shared memory)",
    caps = &[
        "abi",
        "disk-mode",
        "tape-mode",
        "removable-media",
        "snapshot",
        "secondary-process"
    ]
);
