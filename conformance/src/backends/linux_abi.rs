//! The `linux-abi` backend: any `libsqlvdi.so`, loaded by path and driven
//! through the Itanium-mangled members of `ClientVirtualDeviceSet` and
//! `ClientVirtualDevice` (vdi-abi-and-field-notes.md §1.2).
//!
//! The library is `$VDISIM_LIBSQLVDI` (on a machine with SQL Server on
//! Linux: `/opt/mssql/lib/libsqlvdi.so`), by default the stand-in built next
//! to the running executable. Server control goes through the stand-in's
//! `vdisim_harness_*` symbols; a library without them answers
//! *unsupported* for statements and events (see [`super::abi`]).
//!
//! Object layout: a set object is 8 client-allocated bytes on which the
//! backend runs the C1 constructor and, at the end of the case, the D1
//! destructor; device objects are owned by the set. Timeouts are `time_t`
//! milliseconds, [`Timeout::Infinite`] passed as -1. The Linux class has no
//! `CreateEx`: `CreateEx` without an instance name is `Create`; with one it
//! is unsupported.

use super::abi::{self, Abi, AbiDriver, Harness, Ptr};
use crate::backend::{Backend, BackendError, BackendInfo, CaseSetup, Ticket};
use std::ffi::{CString, c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::sync::Arc;
use vdi_model::call::{Call, Reply};
use vdi_model::client::DeviceHandle;
use vdi_model::fault::Fault;
use vdi_model::msg::Timeout;
use vdi_model::outcome::Outcome;
use vdi_model::statement::Statement;
use vdi_sim::world::RunResult;
use vdi_spec::{Hresult, VdConfig, VdcCommand};

type This = *mut c_void;

/// The class members, as function pointers (SysV: `this` first).
#[derive(Clone, Copy)]
struct Syms {
    ctor: unsafe extern "C" fn(This),
    dtor: unsafe extern "C" fn(This),
    create: unsafe extern "C" fn(This, *mut c_char, *mut VdConfig) -> c_int,
    get_configuration: unsafe extern "C" fn(This, c_long, *mut VdConfig) -> c_int,
    open_device: unsafe extern "C" fn(This, *mut c_char, *mut This) -> c_int,
    close: unsafe extern "C" fn(This) -> c_int,
    signal_abort: unsafe extern "C" fn(This) -> c_int,
    open_in_secondary: unsafe extern "C" fn(This, *mut c_char) -> c_int,
    get_buffer_handle: unsafe extern "C" fn(This, *mut u8, *mut c_uint) -> c_int,
    map_buffer_handle: unsafe extern "C" fn(This, c_int, *mut *mut u8) -> c_int,
    get_command: unsafe extern "C" fn(This, c_long, *mut *mut VdcCommand) -> c_int,
    complete_command: unsafe extern "C" fn(This, *mut VdcCommand, c_int, c_ulong, i64) -> c_int,
}

/// The Linux class ABI of one loaded library.
pub struct LinuxAbi {
    syms: Syms,
    harness: Option<Harness>,
}

fn missing(name: &str) -> BackendError {
    BackendError::Failed(format!("the library lacks {name}"))
}

impl LinuxAbi {
    /// Loads the library at [`abi::library_path`].
    pub fn load() -> Result<LinuxAbi, BackendError> {
        LinuxAbi::load_from(&abi::library_path()?)
    }

    /// Loads the library at `path`.
    pub fn load_from(path: &std::path::Path) -> Result<LinuxAbi, BackendError> {
        let lib = abi::load(path)?;
        // SAFETY: the addresses are the library's exports of those names,
        // which a VDI library defines with the members' signatures.
        unsafe {
            LinuxAbi::from_symbols(
                &|n| abi::symbol::<*const c_void>(lib, n),
                Harness::load(lib),
            )
        }
    }

    /// The class ABI from `lookup` (mangled member name → its address): a
    /// loaded library's exports, or the stand-in linked into this
    /// executable (`super::builtin_abi`).
    ///
    /// # Safety
    /// Every address `lookup` returns must be a function with the named
    /// member's signature under SysV (the field types of `Syms`).
    pub unsafe fn from_symbols(
        lookup: &dyn Fn(&str) -> Option<*const c_void>,
        harness: Option<Harness>,
    ) -> Result<LinuxAbi, BackendError> {
        macro_rules! sym {
            ($n:literal) => {{
                let p = lookup($n)
                    .filter(|p| !p.is_null())
                    .ok_or_else(|| missing($n))?;
                // SAFETY: per the caller, `p` is the member named in the
                // notes; the field type is its signature under SysV.
                unsafe { fn_at(p) }
            }};
        }
        let syms = Syms {
            ctor: sym!("_ZN22ClientVirtualDeviceSetC1Ev"),
            dtor: sym!("_ZN22ClientVirtualDeviceSetD1Ev"),
            create: sym!("_ZN22ClientVirtualDeviceSet6CreateEPcP8VDConfig"),
            get_configuration: sym!("_ZN22ClientVirtualDeviceSet16GetConfigurationElP8VDConfig"),
            open_device: sym!("_ZN22ClientVirtualDeviceSet10OpenDeviceEPcPP19ClientVirtualDevice"),
            close: sym!("_ZN22ClientVirtualDeviceSet5CloseEv"),
            signal_abort: sym!("_ZN22ClientVirtualDeviceSet11SignalAbortEv"),
            open_in_secondary: sym!("_ZN22ClientVirtualDeviceSet15OpenInSecondaryEPc"),
            get_buffer_handle: sym!("_ZN22ClientVirtualDeviceSet15GetBufferHandleEPhPj"),
            map_buffer_handle: sym!("_ZN22ClientVirtualDeviceSet15MapBufferHandleEiPPh"),
            get_command: sym!("_ZN19ClientVirtualDevice10GetCommandElPP11VDC_Command"),
            complete_command: sym!("_ZN19ClientVirtualDevice15CompleteCommandEP11VDC_Commandiml"),
        };
        Ok(LinuxAbi { syms, harness })
    }
}

/// The function at `p` as the function pointer type `F`.
///
/// # Safety
/// `F` must be a function pointer type and `p` a function of that type.
unsafe fn fn_at<F: Copy>(p: *const c_void) -> F {
    const { assert!(size_of::<F>() == size_of::<*const c_void>()) };
    // SAFETY: per the caller; the sizes are equal (checked above).
    unsafe { std::mem::transmute_copy::<*const c_void, F>(&p) }
}

fn hr(v: c_int) -> Hresult {
    Hresult::from_linux(v)
}

fn timeout(t: Timeout) -> c_long {
    match t {
        Timeout::Infinite => -1,
        Timeout::Ms(ms) => c_long::try_from(ms).unwrap_or(c_long::MAX),
    }
}

fn cname(s: &str) -> Option<CString> {
    CString::new(s).ok()
}

impl Abi for LinuxAbi {
    fn new_set(&self) -> Result<Ptr, BackendError> {
        // The client allocates the object (one pointer) and constructs it.
        let obj: *mut u64 = Box::into_raw(Box::new(0u64));
        // SAFETY: `obj` is 8 writable, aligned bytes: the object the C1
        // constructor initialises.
        unsafe { (self.syms.ctor)(obj.cast()) };
        Ok(obj as Ptr)
    }

    fn drop_set(&self, set: Ptr) {
        // SAFETY: `set` is an object made by `new_set`, destroyed once here
        // (D1), then its memory freed as it was allocated.
        unsafe {
            (self.syms.dtor)(set as This);
            drop(Box::from_raw(set as *mut u64));
        }
    }

    fn drop_device(&self, _dev: Ptr) {}

    fn create(
        &self,
        set: Ptr,
        instance: Option<Option<&str>>,
        name: &str,
        cfg: &VdConfig,
    ) -> Result<Hresult, BackendError> {
        if let Some(Some(i)) = instance {
            return Err(BackendError::Unsupported(format!(
                "CreateEx with instance name {i:?}: the Linux class API has no instance names"
            )));
        }
        let Some(n) = cname(name) else {
            return Ok(Hresult::VD_E_INVALID);
        };
        let mut c = *cfg;
        // SAFETY: `set` is a constructed object; `n` a NUL-terminated string
        // and `c` a VDConfig, both alive for the call (the library copies).
        Ok(hr(unsafe {
            (self.syms.create)(set as This, n.as_ptr().cast_mut(), &mut c)
        }))
    }

    fn get_configuration(&self, set: Ptr, t: Timeout, out: &mut VdConfig) -> Hresult {
        // SAFETY: `set` is a constructed object; `out` a writable VDConfig.
        hr(unsafe { (self.syms.get_configuration)(set as This, timeout(t), out) })
    }

    fn open_device(&self, set: Ptr, name: &str) -> (Hresult, Ptr) {
        let Some(n) = cname(name) else {
            return (Hresult::VD_E_INVALID, 0);
        };
        let mut dev = abi::OUT_UNSET as This;
        // SAFETY: as for create; `dev` is a writable out-pointer.
        let r = unsafe { (self.syms.open_device)(set as This, n.as_ptr().cast_mut(), &mut dev) };
        (hr(r), dev as Ptr)
    }

    fn close(&self, set: Ptr) -> Hresult {
        // SAFETY: `set` is a constructed object.
        hr(unsafe { (self.syms.close)(set as This) })
    }

    fn signal_abort(&self, set: Ptr) -> Hresult {
        // SAFETY: `set` is a constructed object.
        hr(unsafe { (self.syms.signal_abort)(set as This) })
    }

    fn open_in_secondary(&self, set: Ptr, name: &str) -> Hresult {
        let Some(n) = cname(name) else {
            return Hresult::VD_E_INVALID;
        };
        // SAFETY: `set` is a constructed object; `n` a NUL-terminated string.
        hr(unsafe { (self.syms.open_in_secondary)(set as This, n.as_ptr().cast_mut()) })
    }

    fn get_buffer_handle(&self, set: Ptr, buf: Ptr) -> (Hresult, u32) {
        let mut h: c_uint = 0;
        // SAFETY: `set` is a constructed object; the buffer address is only
        // compared by the library, never dereferenced unless it is one of
        // its buffers; `h` is writable.
        let r = unsafe { (self.syms.get_buffer_handle)(set as This, buf as *mut u8, &mut h) };
        (hr(r), h)
    }

    fn map_buffer_handle(&self, set: Ptr, handle: u32) -> (Hresult, Ptr) {
        let mut p: *mut u8 = std::ptr::null_mut();
        // SAFETY: `set` is a constructed object; `p` is writable.
        let r = unsafe { (self.syms.map_buffer_handle)(set as This, handle as c_int, &mut p) };
        (hr(r), p as Ptr)
    }

    fn get_command(&self, dev: Ptr, t: Timeout) -> (Hresult, Ptr) {
        let mut c: *mut VdcCommand = std::ptr::null_mut();
        // SAFETY: `dev` is a device object the set returned (or null, which
        // the library refuses); `c` is writable.
        let r = unsafe { (self.syms.get_command)(dev as This, timeout(t), &mut c) };
        (hr(r), c as Ptr)
    }

    fn complete_command(&self, dev: Ptr, cmd: Ptr, code: u32, bytes: u64, pos: u64) -> Hresult {
        // SAFETY: `dev` as for get_command; `cmd` is a block the library
        // handed out (or null / stale, which it checks before use).
        hr(unsafe {
            (self.syms.complete_command)(
                dev as This,
                cmd as *mut VdcCommand,
                code as c_int,
                bytes as c_ulong,
                pos as i64,
            )
        })
    }

    fn harness(&self) -> Option<&Harness> {
        self.harness.as_ref()
    }
}

/// Defines an ABI backend type over the library interface `$abi`, delegating
/// every [`Backend`] method to an [`AbiDriver`].
macro_rules! abi_backend {
    // What the report names as the library: the one `abi::library_path`
    // finds, unless the backend says.
    (@library) => { abi::library_path().ok().map(|p| p.display().to_string()) };
    (@library $e:expr) => { $e };
    // The capabilities: those of a library whose server runs in this
    // process, unless the backend says.
    (@caps) => {
        // The server behind the library is the model's server half, and
        // the built-in programs run unchanged over the ABI: the device
        // modes and snapshots are staged as on the model. A secondary
        // process is not: another process cannot join a set whose server
        // runs inside this one (the `serve` backend, whose server is a
        // `vdisim serve` process, stages it: `abi::secondary`).
        &["abi", "disk-mode", "tape-mode", "removable-media", "snapshot"]
    };
    (@caps $e:expr) => { $e };
    ($(#[$doc:meta])* $t:ident, $load:path, $name:literal, $desc:literal $(, library = $lib:expr)? $(, caps = $caps:expr)?) => {
        $(#[$doc])*
        pub struct $t {
            driver: Result<AbiDriver, BackendError>,
            library: Option<String>,
        }

        impl $t {
            /// Loads the library (errors surface at the first case).
            pub fn new() -> $t {
                let library = abi_backend!(@library $($lib)?);
                $t { driver: $load().map(|a| AbiDriver::new(Arc::new(a))), library }
            }

            fn driver(&mut self) -> Result<&mut AbiDriver, BackendError> {
                self.driver.as_mut().map_err(|e| e.clone())
            }
        }

        impl Default for $t {
            fn default() -> Self {
                $t::new()
            }
        }

        impl Backend for $t {
            fn info(&self) -> BackendInfo {
                BackendInfo {
                    name: $name.into(),
                    description: $desc.into(),
                    library: self.library.clone(),
                }
            }
            fn capabilities(&self) -> &'static [&'static str] {
                abi_backend!(@caps $($caps)?)
            }
            fn reset(&mut self, setup: &CaseSetup) -> Result<(), BackendError> {
                self.driver()?.reset(setup)
            }
            fn start(&mut self, thread: &str, call: Call) -> Result<Ticket, BackendError> {
                self.driver()?.start(thread, call)
            }
            fn join(&mut self, t: Ticket) -> Result<Reply, BackendError> {
                self.driver()?.join(t)
            }
            fn start_statement(&mut self, stmt: &Statement) -> Result<(), BackendError> {
                self.driver()?.start_statement(stmt)
            }
            fn event(&mut self, fault: Fault) -> Result<(), BackendError> {
                self.driver()?.event(fault)
            }
            fn sleep(&mut self, ms: u64) -> Result<(), BackendError> {
                self.driver()?.sleep(ms)
            }
            fn wait_statement(
                &mut self,
                timeout: Timeout,
            ) -> Result<Option<Outcome>, BackendError> {
                self.driver()?.wait_statement(timeout)
            }
            fn finish(&mut self) -> Result<RunResult, BackendError> {
                self.driver()?.finish()
            }
            fn start_drain(
                &mut self,
                thread: &str,
                dev: DeviceHandle,
                timeout: Timeout,
            ) -> Result<Ticket, BackendError> {
                self.driver()?.start_drain(thread, dev, timeout)
            }
            fn run_program(
                &mut self,
                setup: &CaseSetup,
                spec: &vdi_model::programs::ClientSpec,
            ) -> Result<RunResult, BackendError> {
                self.driver()?.run_program(setup, spec)
            }
        }
    };
}
pub(crate) use abi_backend;

abi_backend!(
    /// The `linux-abi` backend.
    LinuxAbiBackend,
    LinuxAbi::load,
    "linux-abi",
    "a libsqlvdi.so driven through the SQL Server on Linux class ABI (mangled C++ members)"
);
