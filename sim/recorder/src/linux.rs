//! The exported class members: each forwards to the real library's member
//! of the same name with the same arguments, returns what it returned,
//! and records the call when a recording is open.
//!
//! Nothing here writes to memory the program or the real library owns,
//! except through the real library's own members; the recorder reads the
//! program's names and VDConfig (as the real library does) and the command
//! blocks the real library delivered and has not yet had back.

// `c_long` / `c_ulong` widen to i64 / u64 on Linux already.
#![allow(clippy::useless_conversion)]

use crate::real::{Real, real};
use crate::record::{
    Call, completion_fields, fetched_fields, field_config, field_num, field_ret, field_set,
    field_str, read_name, recorder,
};
use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use vdi_spec::{Hresult, VdConfig, VdcCommand};

const UNEXPECTED: c_int = Hresult::VD_E_UNEXPECTED.0 as c_int;

/// The real member `f`, or VD_E_UNEXPECTED when there is none.
fn member<T: Copy>(f: impl FnOnce(&Real) -> Option<T>) -> Result<T, c_int> {
    real().and_then(f).ok_or(UNEXPECTED)
}

/// Records a name argument.
///
/// # Safety
/// As [`read_name`].
unsafe fn field_name(l: &mut String, p: *const c_char) -> String {
    // SAFETY: forwarded contract.
    match unsafe { read_name(p) } {
        Some((n, cut)) => {
            field_str(l, "name", &n);
            if cut {
                l.push_str(",\"name_cut\":true");
            }
            n
        }
        None => {
            l.push_str(",\"name\":null");
            String::new()
        }
    }
}

// ----- ClientVirtualDeviceSet ------------------------------------------------------------

fn set_ctor(this: *mut c_void, f: Option<crate::real::Ctor>, variant: &'static str) {
    let Some(f) = real().and(f) else {
        if !this.is_null() {
            // SAFETY: the program's 8-byte object, left null (never a
            // half-made set).
            unsafe {
                this.cast::<*const c_void>()
                    .write_unaligned(std::ptr::null())
            };
        }
        return;
    };
    let call = recorder().map(|r| (r, Call::begin(r, variant)));
    // SAFETY: forwarded unchanged to the real constructor.
    unsafe { f(this) };
    if let Some((r, call)) = call {
        let obj = r.constructed(this as usize);
        r.write(&call, |l| field_set(l, obj, 0));
    }
}

fn set_dtor(this: *mut c_void, f: Option<crate::real::Ctor>, variant: &'static str) {
    let Some(f) = real().and(f) else { return };
    let call = recorder().map(|r| (r, Call::begin(r, variant)));
    // SAFETY: forwarded unchanged to the real destructor.
    unsafe { f(this) };
    if let Some((r, call)) = call {
        let (obj, inc) = r.destroyed(this as usize);
        r.write(&call, |l| field_set(l, obj, inc));
    }
}

/// `ClientVirtualDeviceSet::ClientVirtualDeviceSet()` (complete object).
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSetC1Ev")]
pub unsafe extern "C" fn cvds_ctor_c1(this: *mut c_void) {
    set_ctor(this, real().and_then(|r| r.set_c1), "Construct")
}

/// `ClientVirtualDeviceSet::ClientVirtualDeviceSet()` (base object).
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSetC2Ev")]
pub unsafe extern "C" fn cvds_ctor_c2(this: *mut c_void) {
    set_ctor(this, real().and_then(|r| r.set_c2), "Construct")
}

/// `ClientVirtualDeviceSet::~ClientVirtualDeviceSet()` (complete object).
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSetD1Ev")]
pub unsafe extern "C" fn cvds_dtor_d1(this: *mut c_void) {
    set_dtor(this, real().and_then(|r| r.set_d1), "Destruct")
}

/// `ClientVirtualDeviceSet::~ClientVirtualDeviceSet()` (base object).
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSetD2Ev")]
pub unsafe extern "C" fn cvds_dtor_d2(this: *mut c_void) {
    set_dtor(this, real().and_then(|r| r.set_d2), "Destruct")
}

/// `int ClientVirtualDeviceSet::Create(char* name, VDConfig* cfg)`.
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet6CreateEPcP8VDConfig")]
pub unsafe extern "C" fn cvds_create(
    this: *mut c_void,
    name: *const c_char,
    cfg: *mut VdConfig,
) -> c_int {
    let f = match member(|r| r.create) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let Some(r) = recorder() else {
        // SAFETY: forwarded unchanged.
        return unsafe { f(this, name, cfg) };
    };
    let call = Call::begin(r, "Create");
    let mut fields = String::new();
    // SAFETY: the name as the real library reads it.
    let n = unsafe { field_name(&mut fields, name) };
    if !cfg.is_null() {
        // SAFETY: a non-null VDConfig* the real library reads too.
        field_config(&mut fields, &unsafe { cfg.read_unaligned() });
    }
    // SAFETY: forwarded unchanged.
    let ret = unsafe { f(this, name, cfg) };
    let (obj, inc) = if ret == 0 {
        r.created(this as usize, &n)
    } else {
        r.set_of(this as usize)
    };
    r.write(&call, |l| {
        field_set(l, obj, inc);
        l.push_str(&fields);
        field_ret(l, ret);
    });
    ret
}

/// `int ClientVirtualDeviceSet::GetConfiguration(time_t timeout, VDConfig* cfg)`.
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet16GetConfigurationElP8VDConfig")]
pub unsafe extern "C" fn cvds_get_configuration(
    this: *mut c_void,
    timeout: c_long,
    cfg: *mut VdConfig,
) -> c_int {
    let f = match member(|r| r.get_configuration) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let Some(r) = recorder() else {
        // SAFETY: forwarded unchanged.
        return unsafe { f(this, timeout, cfg) };
    };
    let call = Call::begin(r, "GetConfiguration");
    // SAFETY: forwarded unchanged.
    let ret = unsafe { f(this, timeout, cfg) };
    let (obj, inc) = r.set_of(this as usize);
    r.write(&call, |l| {
        field_set(l, obj, inc);
        field_num(l, "timeout", i64::from(timeout));
        field_ret(l, ret);
        if ret == 0 && !cfg.is_null() {
            // SAFETY: the real library filled this VDConfig.
            field_config(l, &unsafe { cfg.read_unaligned() });
        }
    });
    ret
}

/// `int ClientVirtualDeviceSet::OpenDevice(char* name, ClientVirtualDevice** dev)`.
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet10OpenDeviceEPcPP19ClientVirtualDevice")]
pub unsafe extern "C" fn cvds_open_device(
    this: *mut c_void,
    name: *const c_char,
    dev: *mut *mut c_void,
) -> c_int {
    let f = match member(|r| r.open_device) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let Some(r) = recorder() else {
        // SAFETY: forwarded unchanged.
        return unsafe { f(this, name, dev) };
    };
    let call = Call::begin(r, "OpenDevice");
    let mut fields = String::new();
    // SAFETY: the name as the real library reads it.
    let n = unsafe { field_name(&mut fields, name) };
    // SAFETY: forwarded unchanged.
    let ret = unsafe { f(this, name, dev) };
    let (obj, inc) = r.set_of(this as usize);
    let opened = if ret == 0 && !dev.is_null() {
        // SAFETY: the real library wrote the device pointer there.
        let d = unsafe { dev.read_unaligned() } as usize;
        r.opened(this as usize, &n, d).map(|i| (i, d))
    } else {
        None
    };
    r.write(&call, |l| {
        field_set(l, obj, inc);
        l.push_str(&fields);
        field_ret(l, ret);
        if let Some((i, d)) = opened {
            field_num(l, "dev", i);
            field_str(l, "dev_addr", &format!("{d:#x}"));
        }
    });
    ret
}

/// Records a set member that takes no argument.
fn no_arg(this: *mut c_void, f: Result<crate::real::NoArg, c_int>, method: &'static str) -> c_int {
    let f = match f {
        Ok(f) => f,
        Err(e) => return e,
    };
    let Some(r) = recorder() else {
        // SAFETY: forwarded unchanged.
        return unsafe { f(this) };
    };
    let call = Call::begin(r, method);
    // SAFETY: forwarded unchanged.
    let ret = unsafe { f(this) };
    let (obj, inc) = r.set_of(this as usize);
    r.write(&call, |l| {
        field_set(l, obj, inc);
        field_ret(l, ret);
    });
    ret
}

/// `int ClientVirtualDeviceSet::Close()`.
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet5CloseEv")]
pub unsafe extern "C" fn cvds_close(this: *mut c_void) -> c_int {
    no_arg(this, member(|r| r.close), "Close")
}

/// `int ClientVirtualDeviceSet::SignalAbort()`.
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet11SignalAbortEv")]
pub unsafe extern "C" fn cvds_signal_abort(this: *mut c_void) -> c_int {
    no_arg(this, member(|r| r.signal_abort), "SignalAbort")
}

/// `int ClientVirtualDeviceSet::OpenInSecondary(char* setName)`.
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet15OpenInSecondaryEPc")]
pub unsafe extern "C" fn cvds_open_in_secondary(this: *mut c_void, name: *const c_char) -> c_int {
    let f = match member(|r| r.open_in_secondary) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let Some(r) = recorder() else {
        // SAFETY: forwarded unchanged.
        return unsafe { f(this, name) };
    };
    let call = Call::begin(r, "OpenInSecondary");
    let mut fields = String::new();
    // SAFETY: the name as the real library reads it.
    unsafe { field_name(&mut fields, name) };
    // SAFETY: forwarded unchanged.
    let ret = unsafe { f(this, name) };
    let (obj, inc) = r.set_of(this as usize);
    r.write(&call, |l| {
        field_set(l, obj, inc);
        l.push_str(&fields);
        field_ret(l, ret);
    });
    ret
}

/// `int ClientVirtualDeviceSet::GetBufferHandle(uint8_t* buf, unsigned int* handle)`.
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet15GetBufferHandleEPhPj")]
pub unsafe extern "C" fn cvds_get_buffer_handle(
    this: *mut c_void,
    buf: *mut u8,
    handle: *mut c_uint,
) -> c_int {
    let f = match member(|r| r.get_buffer_handle) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let Some(r) = recorder() else {
        // SAFETY: forwarded unchanged.
        return unsafe { f(this, buf, handle) };
    };
    let call = Call::begin(r, "GetBufferHandle");
    // SAFETY: forwarded unchanged.
    let ret = unsafe { f(this, buf, handle) };
    let (obj, inc) = r.set_of(this as usize);
    r.write(&call, |l| {
        field_set(l, obj, inc);
        field_str(l, "buf", &format!("{:#x}", buf as usize));
        field_ret(l, ret);
        if ret == 0 && !handle.is_null() {
            // SAFETY: the real library wrote the handle there.
            field_num(l, "handle", unsafe { handle.read_unaligned() });
        }
    });
    ret
}

/// `int ClientVirtualDeviceSet::MapBufferHandle(int handle, uint8_t** buf)`.
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet15MapBufferHandleEiPPh")]
pub unsafe extern "C" fn cvds_map_buffer_handle(
    this: *mut c_void,
    handle: c_int,
    buf: *mut *mut u8,
) -> c_int {
    let f = match member(|r| r.map_buffer_handle) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let Some(r) = recorder() else {
        // SAFETY: forwarded unchanged.
        return unsafe { f(this, handle, buf) };
    };
    let call = Call::begin(r, "MapBufferHandle");
    // SAFETY: forwarded unchanged.
    let ret = unsafe { f(this, handle, buf) };
    let (obj, inc) = r.set_of(this as usize);
    r.write(&call, |l| {
        field_set(l, obj, inc);
        field_num(l, "handle", handle);
        field_ret(l, ret);
        if ret == 0 && !buf.is_null() {
            // SAFETY: the real library wrote the address there.
            let a = unsafe { buf.read_unaligned() } as usize;
            field_str(l, "buf", &format!("{a:#x}"));
        }
    });
    ret
}

/// `void ClientVirtualDeviceSet::RegisterDeviceClosed()`.
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN22ClientVirtualDeviceSet20RegisterDeviceClosedEv")]
pub unsafe extern "C" fn cvds_register_device_closed(this: *mut c_void) {
    let Ok(f) = member(|r| r.register_device_closed) else {
        return;
    };
    let call = recorder().map(|r| (r, Call::begin(r, "RegisterDeviceClosed")));
    // SAFETY: forwarded unchanged.
    unsafe { f(this) };
    if let Some((r, call)) = call {
        let (obj, inc) = r.set_of(this as usize);
        r.write(&call, |l| field_set(l, obj, inc));
    }
}

// ----- ClientVirtualDevice ---------------------------------------------------------------

fn dev_plain(this: *mut c_void, f: Option<crate::real::Ctor>, method: &'static str) {
    let Some(f) = real().and(f) else { return };
    let call = recorder().map(|r| (r, Call::begin(r, method)));
    // SAFETY: forwarded unchanged.
    unsafe { f(this) };
    if let Some((r, call)) = call {
        r.write(&call, |l| {
            field_str(l, "dev_addr", &format!("{:#x}", this as usize))
        });
    }
}

/// `ClientVirtualDevice::ClientVirtualDevice()` (complete object).
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN19ClientVirtualDeviceC1Ev")]
pub unsafe extern "C" fn cvd_ctor_c1(this: *mut c_void) {
    dev_plain(this, real().and_then(|r| r.dev_c1), "DeviceConstruct")
}

/// `ClientVirtualDevice::ClientVirtualDevice()` (base object).
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN19ClientVirtualDeviceC2Ev")]
pub unsafe extern "C" fn cvd_ctor_c2(this: *mut c_void) {
    dev_plain(this, real().and_then(|r| r.dev_c2), "DeviceConstruct")
}

/// `ClientVirtualDevice::~ClientVirtualDevice()` (complete object).
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN19ClientVirtualDeviceD1Ev")]
pub unsafe extern "C" fn cvd_dtor_d1(this: *mut c_void) {
    dev_plain(this, real().and_then(|r| r.dev_d1), "DeviceDestruct")
}

/// `ClientVirtualDevice::~ClientVirtualDevice()` (base object).
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN19ClientVirtualDeviceD2Ev")]
pub unsafe extern "C" fn cvd_dtor_d2(this: *mut c_void) {
    dev_plain(this, real().and_then(|r| r.dev_d2), "DeviceDestruct")
}

/// The device fields `obj`, `inc`, `dev` (unknown device: obj 0, no dev).
fn field_dev(l: &mut String, d: Option<crate::record::DevRec>, this: *mut c_void) {
    match d {
        Some(d) => {
            field_set(l, d.obj, d.inc);
            field_num(l, "dev", d.index);
        }
        None => {
            field_set(l, 0, 0);
            field_str(l, "dev_addr", &format!("{:#x}", this as usize));
        }
    }
}

/// `int ClientVirtualDevice::GetCommand(time_t timeout, VDC_Command** cmd)`.
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN19ClientVirtualDevice10GetCommandElPP11VDC_Command")]
pub unsafe extern "C" fn cvd_get_command(
    this: *mut c_void,
    timeout: c_long,
    cmd: *mut *mut VdcCommand,
) -> c_int {
    let f = match member(|r| r.get_command) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let Some(r) = recorder() else {
        // SAFETY: forwarded unchanged.
        return unsafe { f(this, timeout, cmd) };
    };
    let mut call = Call::begin(r, "GetCommand");
    // SAFETY: forwarded unchanged.
    let ret = unsafe { f(this, timeout, cmd) };
    call.batch = ret == 0;
    let d = r.device(this as usize);
    // SAFETY: `cmd` as the program passed it, written by the real library
    // when it answered success.
    let cmd_fields = unsafe { fetched_fields(r, this as usize, d, ret == 0, cmd) };
    r.write(&call, |l| {
        field_dev(l, d, this);
        field_num(l, "timeout", i64::from(timeout));
        field_ret(l, ret);
        l.push_str(&cmd_fields);
    });
    ret
}

/// `int ClientVirtualDevice::CompleteCommand(VDC_Command* cmd, int code,
/// unsigned long bytes, int64_t position)`.
///
/// # Safety
/// As the real member.
#[unsafe(export_name = "_ZN19ClientVirtualDevice15CompleteCommandEP11VDC_Commandiml")]
pub unsafe extern "C" fn cvd_complete_command(
    this: *mut c_void,
    cmd: *mut VdcCommand,
    code: c_int,
    bytes: c_ulong,
    position: i64,
) -> c_int {
    let f = match member(|r| r.complete_command) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let Some(r) = recorder() else {
        // SAFETY: forwarded unchanged.
        return unsafe { f(this, cmd, code, bytes, position) };
    };
    let mut call = Call::begin(r, "CompleteCommand");
    let d = r.device(this as usize);
    let (fields, known) = completion_fields(r, this as usize, cmd, code == 0, bytes);
    // SAFETY: forwarded unchanged.
    let ret = unsafe { f(this, cmd, code, bytes, position) };
    call.batch = ret == 0;
    if known && Hresult::from_linux(ret) != Hresult::VD_E_INVALID {
        r.completed(this as usize, cmd as usize);
    }
    r.write(&call, |l| {
        field_dev(l, d, this);
        l.push_str(&fields);
        let _ = std::fmt::Write::write_fmt(
            l,
            format_args!(
                ",\"completion\":{{\"code\":{},\"bytes\":{},\"position\":{}}}",
                code as u32,
                u64::from(bytes),
                position as u64
            ),
        );
        field_ret(l, ret);
    });
    ret
}
