//! The real library: loaded once by path (`VDISIM_RECORD_REAL`), its
//! class members resolved by their mangled names.

use crate::ENV_REAL;
use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::sync::OnceLock;
use vdi_spec::{VdConfig, VdcCommand};

pub type Ctor = unsafe extern "C" fn(*mut c_void);
pub type Create = unsafe extern "C" fn(*mut c_void, *const c_char, *mut VdConfig) -> c_int;
pub type GetConfiguration = unsafe extern "C" fn(*mut c_void, c_long, *mut VdConfig) -> c_int;
pub type OpenDevice = unsafe extern "C" fn(*mut c_void, *const c_char, *mut *mut c_void) -> c_int;
pub type NoArg = unsafe extern "C" fn(*mut c_void) -> c_int;
pub type Named = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
pub type GetBufferHandle = unsafe extern "C" fn(*mut c_void, *mut u8, *mut c_uint) -> c_int;
pub type MapBufferHandle = unsafe extern "C" fn(*mut c_void, c_int, *mut *mut u8) -> c_int;
pub type GetCommand = unsafe extern "C" fn(*mut c_void, c_long, *mut *mut VdcCommand) -> c_int;
pub type CompleteCommand =
    unsafe extern "C" fn(*mut c_void, *mut VdcCommand, c_int, c_ulong, i64) -> c_int;

/// The real library's members (a member it lacks is `None`).
pub struct Real {
    pub set_c1: Option<Ctor>,
    pub set_c2: Option<Ctor>,
    pub set_d1: Option<Ctor>,
    pub set_d2: Option<Ctor>,
    pub create: Option<Create>,
    pub get_configuration: Option<GetConfiguration>,
    pub open_device: Option<OpenDevice>,
    pub close: Option<NoArg>,
    pub signal_abort: Option<NoArg>,
    pub open_in_secondary: Option<Named>,
    pub get_buffer_handle: Option<GetBufferHandle>,
    pub map_buffer_handle: Option<MapBufferHandle>,
    pub register_device_closed: Option<Ctor>,
    pub dev_c1: Option<Ctor>,
    pub dev_c2: Option<Ctor>,
    pub dev_d1: Option<Ctor>,
    pub dev_d2: Option<Ctor>,
    pub get_command: Option<GetCommand>,
    pub complete_command: Option<CompleteCommand>,
    /// Kept loaded for the life of the process.
    _lib: libloading::Library,
}

/// Resolves `name` in `lib` as a function of type `T`.
///
/// # Safety
/// `T` must be the function's true type.
unsafe fn sym<T: Copy>(lib: &libloading::Library, name: &str) -> Option<T> {
    // SAFETY: the caller names the member's C signature as `T`.
    unsafe { lib.get::<T>(name.as_bytes()).ok().map(|s| *s) }
}

/// The real library, loaded at the first call; `None` (said once on
/// stderr) when it cannot be.
pub fn real() -> Option<&'static Real> {
    static REAL: OnceLock<Option<Real>> = OnceLock::new();
    REAL.get_or_init(|| match load() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    })
    .as_ref()
}

fn load() -> Result<Real, String> {
    let path = std::env::var(ENV_REAL).map_err(|_| {
        format!(
            "vdisim recorder: {ENV_REAL} is not set: give the path of the real libsqlvdi.so to forward to; every call returns VD_E_UNEXPECTED"
        )
    })?;
    if !path.contains('/') {
        return Err(format!(
            "vdisim recorder: {ENV_REAL}={path:?} is not a path: give the real library's path (with a /), so that this library is not found again by name; every call returns VD_E_UNEXPECTED"
        ));
    }
    // SAFETY: loading a library runs its initialisers; the variable names
    // the VDI library the program would have loaded itself.
    let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| {
        format!(
            "vdisim recorder: cannot load the real library {path} named by {ENV_REAL}: {e}; every call returns VD_E_UNEXPECTED"
        )
    })?;
    // SAFETY (each `sym` below): the types are the members' signatures in
    // Microsoft's Linux vdi.h (vdi-abi-and-field-notes.md §1.2).
    unsafe {
        Ok(Real {
            set_c1: sym(&lib, "_ZN22ClientVirtualDeviceSetC1Ev"),
            set_c2: sym(&lib, "_ZN22ClientVirtualDeviceSetC2Ev"),
            set_d1: sym(&lib, "_ZN22ClientVirtualDeviceSetD1Ev"),
            set_d2: sym(&lib, "_ZN22ClientVirtualDeviceSetD2Ev"),
            create: sym(&lib, "_ZN22ClientVirtualDeviceSet6CreateEPcP8VDConfig"),
            get_configuration: sym(
                &lib,
                "_ZN22ClientVirtualDeviceSet16GetConfigurationElP8VDConfig",
            ),
            open_device: sym(
                &lib,
                "_ZN22ClientVirtualDeviceSet10OpenDeviceEPcPP19ClientVirtualDevice",
            ),
            close: sym(&lib, "_ZN22ClientVirtualDeviceSet5CloseEv"),
            signal_abort: sym(&lib, "_ZN22ClientVirtualDeviceSet11SignalAbortEv"),
            open_in_secondary: sym(&lib, "_ZN22ClientVirtualDeviceSet15OpenInSecondaryEPc"),
            get_buffer_handle: sym(&lib, "_ZN22ClientVirtualDeviceSet15GetBufferHandleEPhPj"),
            map_buffer_handle: sym(&lib, "_ZN22ClientVirtualDeviceSet15MapBufferHandleEiPPh"),
            register_device_closed: sym(
                &lib,
                "_ZN22ClientVirtualDeviceSet20RegisterDeviceClosedEv",
            ),
            dev_c1: sym(&lib, "_ZN19ClientVirtualDeviceC1Ev"),
            dev_c2: sym(&lib, "_ZN19ClientVirtualDeviceC2Ev"),
            dev_d1: sym(&lib, "_ZN19ClientVirtualDeviceD1Ev"),
            dev_d2: sym(&lib, "_ZN19ClientVirtualDeviceD2Ev"),
            get_command: sym(
                &lib,
                "_ZN19ClientVirtualDevice10GetCommandElPP11VDC_Command",
            ),
            complete_command: sym(
                &lib,
                "_ZN19ClientVirtualDevice15CompleteCommandEP11VDC_Commandiml",
            ),
            _lib: lib,
        })
    }
}
