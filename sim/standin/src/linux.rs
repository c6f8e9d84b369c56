//! The SQL Server on Linux class ABI of `libsqlvdi.so`: the Itanium-mangled
//! members of `ClientVirtualDeviceSet` and `ClientVirtualDevice`
//! (vdi-abi-and-field-notes.md §1.2; `vdi_spec::abi::LINUX_SYMBOLS`).
//!
//! Object layout: the client allocates 8 bytes (one pointer) and runs the
//! constructor, which stores the address of the private implementation
//! ([`SetCore`]) there; the destructor forgets it. The implementation is
//! found again through a process registry, so a never-constructed,
//! destroyed or forged object answers `VD_E_INVALID` instead of being
//! dereferenced. Device objects returned by OpenDevice are one-pointer
//! objects owned by the set object: they stay valid (and answer the
//! use-after-close code) after Close, until the set object is destroyed.
//!
//! Methods return `int`: 0 or a `VD_E_*` code as a negative number.
//! Timeouts are `time_t` milliseconds, negative = forever. Names are
//! NUL-terminated UTF-8. `RegisterDeviceClosed` is a documented no-op.

// `c_long` / `c_ulong` are 64-bit on Linux but 32-bit on Windows, where this
// module also compiles: the widening conversions are not useless there.
#![allow(clippy::useless_conversion)]

use crate::objects::{self as api, DevCore, NAME_MAX, SetCore};
use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use vdi_host::runtime::CreateKind;
use vdi_spec::{Hresult, VdConfig, VdcCommand};

/// The object a `ClientVirtualDevice*` points to: one pointer, like the
/// real class (`CVD* cvd`).
#[repr(C)]
#[derive(Debug)]
pub struct LinuxDevObj {
    imp: *const DevCore,
}

// SAFETY: the pointer is only used as a registry key, never dereferenced.
unsafe impl Send for LinuxDevObj {}

const INVALID: c_int = Hresult::VD_E_INVALID.0 as c_int;
const UNEXPECTED: c_int = Hresult::VD_E_UNEXPECTED.0 as c_int;

fn rc(h: Hresult) -> c_int {
    h.as_linux()
}

/// Runs `f`, turning a panic into VD_E_UNEXPECTED (no unwinding into C).
fn guard(f: impl FnOnce() -> Result<c_int, c_int>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) | Ok(Err(v)) => v,
        Err(_) => UNEXPECTED,
    }
}

/// Runs `f` for a `void` member, swallowing a panic.
fn guard_void(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// The set implementation behind a `ClientVirtualDeviceSet*`.
///
/// # Safety
/// `this` must be null or point to 8 readable bytes (the client's object).
unsafe fn set_of(this: *mut *const c_void) -> Result<Arc<SetCore>, c_int> {
    if this.is_null() {
        return Err(INVALID);
    }
    // SAFETY: non-null and, per the caller, the client's one-pointer object.
    let k = unsafe { this.read_unaligned() } as usize;
    api::lookup_set(k).ok_or(INVALID)
}

/// The device implementation behind a `ClientVirtualDevice*`.
///
/// # Safety
/// `this` must be null or point to 8 readable bytes.
unsafe fn dev_of(this: *mut LinuxDevObj) -> Result<Arc<DevCore>, c_int> {
    if this.is_null() {
        return Err(INVALID);
    }
    // SAFETY: non-null and, per the caller, a one-pointer object.
    let k = unsafe { this.read_unaligned() }.imp as usize;
    api::lookup_device(k).ok_or(INVALID)
}

/// Reads a NUL-terminated UTF-8 name of at most [`NAME_MAX`] bytes.
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string.
unsafe fn name_of(p: *const c_char) -> Result<String, c_int> {
    if p.is_null() {
        return Err(INVALID);
    }
    let mut units = Vec::new();
    for i in 0..=NAME_MAX {
        // SAFETY: `p` is a NUL-terminated string (caller) and we stop at
        // its NUL, so every byte read lies within it.
        let b = unsafe { p.add(i).read() } as u8;
        if b == 0 {
            return api::name_from_utf8(&units).map_err(rc);
        }
        units.push(b);
    }
    Err(INVALID)
}

/// Reads the client's configuration.
///
/// # Safety
/// `cfg` must be null or point to a readable `VDConfig`.
unsafe fn read_cfg(cfg: *const VdConfig) -> Result<VdConfig, c_int> {
    if cfg.is_null() {
        return Err(INVALID);
    }
    // SAFETY: non-null, a VDConfig per the caller; read unaligned to be
    // tolerant of packed client structs.
    Ok(unsafe { cfg.read_unaligned() })
}

// ----- ClientVirtualDeviceSet ----------------------------------------------------------

fn set_ctor(this: *mut *const c_void) {
    guard_void(|| {
        if this.is_null() {
            return;
        }
        let k = api::register_set(SetCore::new());
        // SAFETY: the client passes its 8-byte object to construct.
        unsafe { this.write_unaligned(k as *const c_void) };
    });
}

fn set_dtor(this: *mut *const c_void) {
    guard_void(|| {
        if this.is_null() {
            return;
        }
        // SAFETY: the client's object, constructed by `set_ctor` (or not:
        // an unknown value is simply not found in the registry).
        let k = unsafe { this.read_unaligned() } as usize;
        api::unregister_set(k);
        // SAFETY: as above; a second destructor then finds null.
        unsafe { this.write_unaligned(std::ptr::null()) };
    });
}

/// `ClientVirtualDeviceSet::ClientVirtualDeviceSet()` (complete object).
///
/// # Safety
/// `this` must be null or point to 8 writable bytes.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSetC1Ev")]
pub unsafe extern "C" fn cvds_ctor_c1(this: *mut *const c_void) {
    set_ctor(this)
}

/// `ClientVirtualDeviceSet::ClientVirtualDeviceSet()` (base object).
///
/// # Safety
/// `this` must be null or point to 8 writable bytes.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSetC2Ev")]
pub unsafe extern "C" fn cvds_ctor_c2(this: *mut *const c_void) {
    set_ctor(this)
}

/// `ClientVirtualDeviceSet::~ClientVirtualDeviceSet()` (complete object).
/// Releases a live set as Close does; device objects become invalid.
///
/// # Safety
/// `this` must be null or point to the client's 8-byte object.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSetD1Ev")]
pub unsafe extern "C" fn cvds_dtor_d1(this: *mut *const c_void) {
    set_dtor(this)
}

/// `ClientVirtualDeviceSet::~ClientVirtualDeviceSet()` (base object).
///
/// # Safety
/// `this` must be null or point to the client's 8-byte object.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSetD2Ev")]
pub unsafe extern "C" fn cvds_dtor_d2(this: *mut *const c_void) {
    set_dtor(this)
}

/// `int ClientVirtualDeviceSet::Create(char* name, VDConfig* cfg)`.
///
/// # Safety
/// Pointers must be null or valid as the Linux header describes.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet6CreateEPcP8VDConfig")]
pub unsafe extern "C" fn cvds_create(
    this: *mut *const c_void,
    name: *const c_char,
    cfg: *mut VdConfig,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contracts.
        let s = unsafe { set_of(this) }?;
        // SAFETY: as above.
        let name = unsafe { name_of(name) }?;
        // SAFETY: as above.
        let cfg = unsafe { read_cfg(cfg) }?;
        Ok(rc(s.create(CreateKind::Create, &name, &cfg)))
    })
}

/// `int ClientVirtualDeviceSet::GetConfiguration(time_t timeout, VDConfig* cfg)`.
///
/// # Safety
/// Pointers must be null or valid as the Linux header describes.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet16GetConfigurationElP8VDConfig")]
pub unsafe extern "C" fn cvds_get_configuration(
    this: *mut *const c_void,
    timeout: c_long,
    cfg: *mut VdConfig,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let s = unsafe { set_of(this) }?;
        if cfg.is_null() {
            return Err(INVALID);
        }
        match s.get_configuration(api::linux_timeout(i64::from(timeout))) {
            Ok(c) => {
                // SAFETY: non-null VDConfig* from the client.
                unsafe { cfg.write_unaligned(c) };
                Ok(0)
            }
            Err(e) => Err(rc(e)),
        }
    })
}

/// `int ClientVirtualDeviceSet::OpenDevice(char* name, ClientVirtualDevice** dev)`.
///
/// # Safety
/// Pointers must be null or valid as the Linux header describes.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet10OpenDeviceEPcPP19ClientVirtualDevice")]
pub unsafe extern "C" fn cvds_open_device(
    this: *mut *const c_void,
    name: *const c_char,
    dev: *mut *mut LinuxDevObj,
) -> c_int {
    guard(|| {
        if dev.is_null() {
            return Err(INVALID);
        }
        // SAFETY: non-null out-pointer from the client.
        unsafe { dev.write_unaligned(std::ptr::null_mut()) };
        // SAFETY: forwarded caller contracts.
        let s = unsafe { set_of(this) }?;
        // SAFETY: as above.
        let name = unsafe { name_of(name) }?;
        let d = s.open_device(&name).map_err(rc)?;
        let mut obj = Box::new(LinuxDevObj {
            imp: Arc::as_ptr(&d),
        });
        let p: *mut LinuxDevObj = &mut *obj;
        s.keep(obj);
        // SAFETY: as above; the object lives as long as the set object.
        unsafe { dev.write_unaligned(p) };
        Ok(0)
    })
}

/// `int ClientVirtualDeviceSet::Close()`.
///
/// # Safety
/// `this` must be null or the client's object.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet5CloseEv")]
pub unsafe extern "C" fn cvds_close(this: *mut *const c_void) -> c_int {
    // SAFETY: forwarded caller contract.
    guard(|| Ok(rc(unsafe { set_of(this) }?.close())))
}

/// `int ClientVirtualDeviceSet::SignalAbort()`.
///
/// # Safety
/// `this` must be null or the client's object.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet11SignalAbortEv")]
pub unsafe extern "C" fn cvds_signal_abort(this: *mut *const c_void) -> c_int {
    // SAFETY: forwarded caller contract.
    guard(|| Ok(rc(unsafe { set_of(this) }?.signal_abort())))
}

/// `int ClientVirtualDeviceSet::OpenInSecondary(char* setName)`.
///
/// # Safety
/// Pointers must be null or valid as the Linux header describes.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet15OpenInSecondaryEPc")]
pub unsafe extern "C" fn cvds_open_in_secondary(
    this: *mut *const c_void,
    name: *const c_char,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contracts.
        let s = unsafe { set_of(this) }?;
        // SAFETY: as above.
        let name = unsafe { name_of(name) }?;
        Ok(rc(s.open_in_secondary(&name)))
    })
}

/// `int ClientVirtualDeviceSet::GetBufferHandle(uint8_t* buf, unsigned int* handle)`.
///
/// # Safety
/// Pointers must be null or valid as the Linux header describes.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet15GetBufferHandleEPhPj")]
pub unsafe extern "C" fn cvds_get_buffer_handle(
    this: *mut *const c_void,
    buf: *mut u8,
    handle: *mut c_uint,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let s = unsafe { set_of(this) }?;
        if handle.is_null() {
            return Err(INVALID);
        }
        let h = s.get_buffer_handle(buf as usize).map_err(rc)?;
        // SAFETY: non-null out-pointer from the client.
        unsafe { handle.write_unaligned(h) };
        Ok(0)
    })
}

/// `int ClientVirtualDeviceSet::MapBufferHandle(int handle, uint8_t** buf)`.
///
/// # Safety
/// Pointers must be null or valid as the Linux header describes.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet15MapBufferHandleEiPPh")]
pub unsafe extern "C" fn cvds_map_buffer_handle(
    this: *mut *const c_void,
    handle: c_int,
    buf: *mut *mut u8,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let s = unsafe { set_of(this) }?;
        if buf.is_null() {
            return Err(INVALID);
        }
        // SAFETY: non-null out-pointer from the client.
        unsafe { buf.write_unaligned(std::ptr::null_mut()) };
        let a = s.map_buffer_handle(handle as u32).map_err(rc)?;
        // SAFETY: as above.
        unsafe { buf.write_unaligned(a as *mut u8) };
        Ok(0)
    })
}

/// `void ClientVirtualDeviceSet::RegisterDeviceClosed()`: public but
/// undocumented in Microsoft's header; a no-op here.
///
/// # Safety
/// Never dereferences `this`.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet20RegisterDeviceClosedEv")]
pub unsafe extern "C" fn cvds_register_device_closed(_this: *mut *const c_void) {}

// ----- ClientVirtualDevice ---------------------------------------------------------------

fn dev_init(this: *mut LinuxDevObj) {
    guard_void(|| {
        if !this.is_null() {
            // SAFETY: the client's 8-byte object; a device the client
            // constructs itself is not one of the set's and stays invalid.
            unsafe {
                this.write_unaligned(LinuxDevObj {
                    imp: std::ptr::null(),
                })
            };
        }
    });
}

/// `ClientVirtualDevice::ClientVirtualDevice()` (complete object): an
/// object not obtained from OpenDevice; every method answers VD_E_INVALID.
///
/// # Safety
/// `this` must be null or point to 8 writable bytes.
#[unsafe(export_name = "_ZN19ClientVirtualDeviceC1Ev")]
pub unsafe extern "C" fn cvd_ctor_c1(this: *mut LinuxDevObj) {
    dev_init(this)
}

/// `ClientVirtualDevice::ClientVirtualDevice()` (base object).
///
/// # Safety
/// `this` must be null or point to 8 writable bytes.
#[unsafe(export_name = "_ZN19ClientVirtualDeviceC2Ev")]
pub unsafe extern "C" fn cvd_ctor_c2(this: *mut LinuxDevObj) {
    dev_init(this)
}

/// `ClientVirtualDevice::~ClientVirtualDevice()` (complete object): device
/// objects belong to their set; this only clears the object.
///
/// # Safety
/// `this` must be null or point to 8 writable bytes.
#[unsafe(export_name = "_ZN19ClientVirtualDeviceD1Ev")]
pub unsafe extern "C" fn cvd_dtor_d1(this: *mut LinuxDevObj) {
    dev_init(this)
}

/// `ClientVirtualDevice::~ClientVirtualDevice()` (base object).
///
/// # Safety
/// `this` must be null or point to 8 writable bytes.
#[unsafe(export_name = "_ZN19ClientVirtualDeviceD2Ev")]
pub unsafe extern "C" fn cvd_dtor_d2(this: *mut LinuxDevObj) {
    dev_init(this)
}

/// `int ClientVirtualDevice::GetCommand(time_t timeout, VDC_Command** cmd)`.
///
/// # Safety
/// Pointers must be null or valid as the Linux header describes.
#[unsafe(export_name = "_ZN19ClientVirtualDevice10GetCommandElPP11VDC_Command")]
pub unsafe extern "C" fn cvd_get_command(
    this: *mut LinuxDevObj,
    timeout: c_long,
    cmd: *mut *mut VdcCommand,
) -> c_int {
    guard(|| {
        if cmd.is_null() {
            return Err(INVALID);
        }
        // SAFETY: non-null out-pointer from the client.
        unsafe { cmd.write_unaligned(std::ptr::null_mut()) };
        // SAFETY: forwarded caller contract.
        let d = unsafe { dev_of(this) }?;
        let p = d
            .get_command(api::linux_timeout(i64::from(timeout)))
            .map_err(rc)?;
        // SAFETY: as above.
        unsafe { cmd.write_unaligned(p) };
        Ok(0)
    })
}

/// `int ClientVirtualDevice::CompleteCommand(VDC_Command* cmd, int code,
/// unsigned long bytes, int64_t position)`. A pointer that is not an
/// outstanding command of this device is never dereferenced.
///
/// # Safety
/// `this` must be null or a device object.
#[unsafe(export_name = "_ZN19ClientVirtualDevice15CompleteCommandEP11VDC_Commandiml")]
pub unsafe extern "C" fn cvd_complete_command(
    this: *mut LinuxDevObj,
    cmd: *mut VdcCommand,
    code: c_int,
    bytes: c_ulong,
    position: i64,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let d = unsafe { dev_of(this) }?;
        Ok(rc(d.complete_command(
            cmd as usize,
            code as u32,
            u64::from(bytes),
            position as u64,
        )))
    })
}
