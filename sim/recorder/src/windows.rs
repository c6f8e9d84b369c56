//! The recording `sqlvdi.dll`: a COM in-process server for
//! `CLSID_MSSQL_ClientVirtualDeviceSet` whose objects wrap the real
//! library's. Its class factory loads the real DLL named by
//! `VDISIM_RECORD_REAL` (`LoadLibraryW`), asks the real DLL's
//! `DllGetClassObject` for its class factory, creates the real object and
//! hands the program a wrapper whose `IClientVirtualDeviceSet2` vtable (13
//! slots, vdi-abi-and-field-notes.md §1.1) forwards each call unchanged
//! and records it, in the recording format of the Linux library
//! (docs/RECORDING.md). `OpenDevice` wraps the returned device
//! (`IClientVirtualDevice`, 5 slots) likewise.
//!
//! Each wrapper holds one reference on the real object, taken when it is
//! made and given back when the wrapper's own count reaches zero (then
//! the wrapper is freed). Names are UTF-16 on Windows and are recorded as
//! UTF-8. `CreateEx` and `OpenInSecondaryEx` are recorded as `Create` and
//! `OpenInSecondary` with an `instance` field (null for the default
//! instance).
//!
//! Nothing here writes to memory the program or the real library owns,
//! except out-pointers the program passed, and only with what the real
//! object returned there (or the wrapper standing for it).

use crate::record::{
    Call, DevRec, Recorder, completion_fields, dword_timeout_ms, fetched_fields, field_config,
    field_num, field_ret, field_set, field_str, read_wide_name, recorder,
};
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU32, Ordering};
use vdi_spec::abi::{DEVICE_QUERY_INTERFACE_IIDS, Guid, SET_QUERY_INTERFACE_IIDS};
use vdi_spec::{Hresult, VdConfig, VdcCommand};

mod server;

/// The Windows name of a COM result code.
#[allow(clippy::upper_case_acronyms)]
type HRESULT = i32;

const S_OK: HRESULT = 0;
const E_POINTER: HRESULT = Hresult::E_POINTER.0 as i32;
const UNEXPECTED: HRESULT = Hresult::VD_E_UNEXPECTED.0 as i32;
const E_NOTIMPL: HRESULT = 0x8000_4001_u32 as i32;

type This = *mut c_void;

/// The `IClientVirtualDeviceSet2` vtable, slots 0-12 in header order (the
/// real object's and the wrapper's alike).
#[repr(C)]
pub struct SetVtbl {
    query_interface: unsafe extern "system" fn(This, *const Guid, *mut *mut c_void) -> HRESULT,
    add_ref: unsafe extern "system" fn(This) -> u32,
    release: unsafe extern "system" fn(This) -> u32,
    create: unsafe extern "system" fn(This, *const u16, *mut VdConfig) -> HRESULT,
    get_configuration: unsafe extern "system" fn(This, u32, *mut VdConfig) -> HRESULT,
    open_device: unsafe extern "system" fn(This, *const u16, *mut This) -> HRESULT,
    close: unsafe extern "system" fn(This) -> HRESULT,
    signal_abort: unsafe extern "system" fn(This) -> HRESULT,
    open_in_secondary: unsafe extern "system" fn(This, *const u16) -> HRESULT,
    get_buffer_handle: unsafe extern "system" fn(This, *mut u8, *mut u32) -> HRESULT,
    map_buffer_handle: unsafe extern "system" fn(This, u32, *mut *mut u8) -> HRESULT,
    create_ex: unsafe extern "system" fn(This, *const u16, *const u16, *mut VdConfig) -> HRESULT,
    open_in_secondary_ex: unsafe extern "system" fn(This, *const u16, *const u16) -> HRESULT,
}

/// The IUnknown slots every COM vtable begins with.
#[repr(C)]
struct UnkVtbl {
    query_interface: unsafe extern "system" fn(This, *const Guid, *mut *mut c_void) -> HRESULT,
    add_ref: unsafe extern "system" fn(This) -> u32,
    release: unsafe extern "system" fn(This) -> u32,
}

/// The `IClientVirtualDevice` vtable, slots 0-4.
#[repr(C)]
pub struct DevVtbl {
    query_interface: unsafe extern "system" fn(This, *const Guid, *mut *mut c_void) -> HRESULT,
    add_ref: unsafe extern "system" fn(This) -> u32,
    release: unsafe extern "system" fn(This) -> u32,
    get_command: unsafe extern "system" fn(This, u32, *mut *mut VdcCommand) -> HRESULT,
    complete_command: unsafe extern "system" fn(This, *mut VdcCommand, u32, u32, u64) -> HRESULT,
}

/// A wrapped set object: the vtable pointer first, as COM requires.
#[repr(C)]
struct WSet {
    vtbl: &'static SetVtbl,
    refs: AtomicU32,
    /// The real object (one reference held).
    real: This,
    /// Whether the real object answers `IClientVirtualDeviceSet2` (slots
    /// 11 and 12); otherwise they return `E_NOTIMPL`.
    v2: bool,
}

/// A wrapped device object.
#[repr(C)]
struct WDev {
    vtbl: &'static DevVtbl,
    refs: AtomicU32,
    /// The real device (one reference held).
    real: This,
}

static SET_VTBL: SetVtbl = SetVtbl {
    query_interface: set_query_interface,
    add_ref: set_add_ref,
    release: set_release,
    create: set_create,
    get_configuration: set_get_configuration,
    open_device: set_open_device,
    close: set_close,
    signal_abort: set_signal_abort,
    open_in_secondary: set_open_in_secondary,
    get_buffer_handle: set_get_buffer_handle,
    map_buffer_handle: set_map_buffer_handle,
    create_ex: set_create_ex,
    open_in_secondary_ex: set_open_in_secondary_ex,
};

static DEV_VTBL: DevVtbl = DevVtbl {
    query_interface: dev_query_interface,
    add_ref: dev_add_ref,
    release: dev_release,
    get_command: dev_get_command,
    complete_command: dev_complete_command,
};

fn guard(f: impl FnOnce() -> HRESULT) -> HRESULT {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(UNEXPECTED)
}

/// The wrapper behind `this` (a wrapper pointer handed out by this DLL).
///
/// # Safety
/// `this` must be a live wrapper set (the call came through its vtable).
unsafe fn wset<'a>(this: This) -> &'a WSet {
    // SAFETY: per the caller.
    unsafe { &*this.cast::<WSet>() }
}

/// # Safety
/// `this` must be a live wrapper device.
unsafe fn wdev<'a>(this: This) -> &'a WDev {
    // SAFETY: per the caller.
    unsafe { &*this.cast::<WDev>() }
}

/// The real set's vtable.
fn real_set(w: &WSet) -> &'static SetVtbl {
    // SAFETY: `w.real` is a live COM object (one reference held) whose
    // first word is its vtable pointer, laid out as `SetVtbl` (the first
    // 11 slots for a v1 object, which are all that is called then).
    unsafe { &**w.real.cast::<*const SetVtbl>() }
}

/// The real device's vtable.
fn real_dev(w: &WDev) -> &'static DevVtbl {
    // SAFETY: as `real_set`, for an `IClientVirtualDevice`.
    unsafe { &**w.real.cast::<*const DevVtbl>() }
}

/// A new wrapper for the real set `real` (whose reference it takes), with
/// count 1, recorded as `Construct`.
pub(crate) fn wrap_set(real: This, v2: bool) -> This {
    let w = Box::into_raw(Box::new(WSet {
        vtbl: &SET_VTBL,
        refs: AtomicU32::new(1),
        real,
        v2,
    }));
    if let Some(r) = recorder() {
        let call = Call::begin(r, "Construct");
        let obj = r.constructed(w as usize);
        r.write(&call, |l| field_set(l, obj, 0));
    }
    w.cast()
}

// ----- recording helpers -----------------------------------------------------------------

/// Records a wide name argument under `key`; the name ("" for null).
///
/// # Safety
/// As [`read_wide_name`].
unsafe fn field_wide(l: &mut String, key: &str, p: *const u16) -> String {
    // SAFETY: forwarded contract.
    match unsafe { read_wide_name(p) } {
        Some((n, cut)) => {
            field_str(l, key, &n);
            if cut {
                l.push_str(&format!(",\"{key}_cut\":true"));
            }
            n
        }
        None => {
            l.push_str(&format!(",\"{key}\":null"));
            String::new()
        }
    }
}

/// Records a set method: `before` adds the fields read before the real
/// call, `run` makes it, `after` adds the fields read after it.
fn set_call(
    this: This,
    method: &'static str,
    before: impl FnOnce(&mut String),
    run: impl FnOnce() -> HRESULT,
    after: impl FnOnce(&Recorder, HRESULT, &mut String),
) -> HRESULT {
    let Some(r) = recorder() else { return run() };
    let call = Call::begin(r, method);
    let mut fields = String::new();
    before(&mut fields);
    let ret = run();
    after(r, ret, &mut fields);
    let (obj, inc) = r.set_of(this as usize);
    r.write(&call, |l| {
        field_set(l, obj, inc);
        l.push_str(&fields);
        field_ret(l, ret);
    });
    ret
}

// ----- IUnknown --------------------------------------------------------------------------

/// `QueryInterface` on a wrapper: forwarded; when the real object answers
/// for one of `ours` (the interfaces the wrapper stands for), the wrapper
/// is handed out instead (so that the program never holds an unwrapped
/// set or device, even if the real object answers with another pointer
/// of its own); any other interface is handed out unchanged.
///
/// # Safety
/// COM contract: `riid` null or a GUID, `ppv` null or writable.
unsafe fn query(
    this: This,
    real: This,
    refs: &AtomicU32,
    riid: *const Guid,
    ppv: *mut *mut c_void,
    ours: &[Guid],
) -> HRESULT {
    // SAFETY: `real` is a live COM object (one reference held): its
    // vtable begins with the IUnknown slots.
    let qi = unsafe { &**real.cast::<*const UnkVtbl>() }.query_interface;
    // SAFETY: forwarded unchanged.
    let hr = unsafe { qi(real, riid, ppv) };
    if hr != S_OK || ppv.is_null() || riid.is_null() {
        return hr;
    }
    // SAFETY: the real object wrote its answer there; `riid` is a GUID.
    let (got, iid) = unsafe { (ppv.read_unaligned(), riid.read_unaligned()) };
    if !got.is_null() && ours.contains(&iid) {
        // The wrapper takes a reference of its own in place of the one
        // the real QueryInterface added, which is given back.
        refs.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `got` is a live interface pointer of the real object
        // (its vtable begins with the IUnknown slots) holding the
        // reference QueryInterface took; the out-pointer is non-null.
        unsafe {
            ((**got.cast::<*const UnkVtbl>()).release)(got);
            ppv.write_unaligned(this);
        }
    }
    hr
}

unsafe extern "system" fn set_query_interface(
    this: This,
    riid: *const Guid,
    ppv: *mut *mut c_void,
) -> HRESULT {
    guard(|| {
        // SAFETY: called through the wrapper's vtable.
        let w = unsafe { wset(this) };
        let ours: &[Guid] = if w.v2 {
            SET_QUERY_INTERFACE_IIDS
        } else {
            &SET_QUERY_INTERFACE_IIDS[..SET_QUERY_INTERFACE_IIDS.len().min(2)]
        };
        // SAFETY: forwarded COM contract.
        unsafe { query(this, w.real, &w.refs, riid, ppv, ours) }
    })
}

unsafe extern "system" fn set_add_ref(this: This) -> u32 {
    // SAFETY: called through the wrapper's vtable.
    let w = unsafe { wset(this) };
    w.refs.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
}

/// Decrements without going below zero; the new count.
fn release_count(refs: &AtomicU32) -> Option<u32> {
    refs.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .ok()
        .map(|n| n - 1)
}

unsafe extern "system" fn set_release(this: This) -> u32 {
    // SAFETY: called through the wrapper's vtable.
    let w = unsafe { wset(this) };
    match release_count(&w.refs) {
        Some(0) => {}
        Some(n) => return n,
        // Over-release: nothing to free (never counted below zero).
        None => return 0,
    }
    let vt = real_set(w);
    let call = recorder().map(|r| (r, Call::begin(r, "Destruct")));
    // SAFETY: gives back the wrapper's reference on the real object.
    unsafe { (vt.release)(w.real) };
    if let Some((r, call)) = call {
        let (obj, inc) = r.destroyed(this as usize);
        r.write(&call, |l| field_set(l, obj, inc));
        r.flush();
    }
    // SAFETY: the count reached zero: no reference to the wrapper is left;
    // it was made by `Box::into_raw` in `wrap_set`.
    drop(unsafe { Box::from_raw(this.cast::<WSet>()) });
    0
}

// ----- IClientVirtualDeviceSet2 ----------------------------------------------------------

/// Create and CreateEx (`instance`: `Some` for CreateEx).
fn create_common(
    this: This,
    instance: Option<*const u16>,
    name: *const u16,
    cfg: *mut VdConfig,
    run: impl FnOnce() -> HRESULT,
) -> HRESULT {
    let Some(r) = recorder() else { return run() };
    let call = Call::begin(r, "Create");
    let mut fields = String::new();
    // SAFETY: the names as the real library reads them.
    let n = unsafe { field_wide(&mut fields, "name", name) };
    if let Some(i) = instance {
        // SAFETY: as above.
        unsafe { field_wide(&mut fields, "instance", i) };
    }
    if !cfg.is_null() {
        // SAFETY: a non-null VDConfig* the real library reads too.
        field_config(&mut fields, &unsafe { cfg.read_unaligned() });
    }
    let ret = run();
    let (obj, inc) = if ret == S_OK {
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

unsafe extern "system" fn set_create(this: This, name: *const u16, cfg: *mut VdConfig) -> HRESULT {
    guard(|| {
        // SAFETY: called through the wrapper's vtable.
        let w = unsafe { wset(this) };
        // SAFETY: forwarded unchanged.
        create_common(this, None, name, cfg, || unsafe {
            (real_set(w).create)(w.real, name, cfg)
        })
    })
}

unsafe extern "system" fn set_create_ex(
    this: This,
    instance: *const u16,
    name: *const u16,
    cfg: *mut VdConfig,
) -> HRESULT {
    guard(|| {
        // SAFETY: called through the wrapper's vtable.
        let w = unsafe { wset(this) };
        if !w.v2 {
            return E_NOTIMPL;
        }
        // SAFETY: forwarded unchanged.
        create_common(this, Some(instance), name, cfg, || unsafe {
            (real_set(w).create_ex)(w.real, instance, name, cfg)
        })
    })
}

unsafe extern "system" fn set_get_configuration(
    this: This,
    timeout: u32,
    cfg: *mut VdConfig,
) -> HRESULT {
    guard(|| {
        // SAFETY: called through the wrapper's vtable.
        let w = unsafe { wset(this) };
        set_call(
            this,
            "GetConfiguration",
            |l| field_num(l, "timeout", dword_timeout_ms(timeout)),
            // SAFETY: forwarded unchanged.
            || unsafe { (real_set(w).get_configuration)(w.real, timeout, cfg) },
            |_, ret, l| {
                if ret == S_OK && !cfg.is_null() {
                    // SAFETY: the real library filled this VDConfig.
                    field_config(l, &unsafe { cfg.read_unaligned() });
                }
            },
        )
    })
}

unsafe extern "system" fn set_open_device(this: This, name: *const u16, dev: *mut This) -> HRESULT {
    guard(|| {
        // SAFETY: called through the wrapper's vtable.
        let w = unsafe { wset(this) };
        let n = std::cell::RefCell::new(String::new());
        set_call(
            this,
            "OpenDevice",
            // SAFETY: the name as the real library reads it.
            |l| *n.borrow_mut() = unsafe { field_wide(l, "name", name) },
            || {
                // SAFETY: forwarded unchanged.
                let ret = unsafe { (real_set(w).open_device)(w.real, name, dev) };
                if ret == S_OK && !dev.is_null() {
                    // SAFETY: the real library wrote its device there; the
                    // program gets the wrapper standing for it instead.
                    unsafe {
                        let real = dev.read_unaligned();
                        if !real.is_null() {
                            dev.write_unaligned(wrap_dev(real));
                        }
                    }
                }
                ret
            },
            |r, ret, l| {
                if ret != S_OK || dev.is_null() {
                    return;
                }
                // SAFETY: written just above.
                let d = unsafe { dev.read_unaligned() } as usize;
                if let Some(i) = r.opened(this as usize, &n.borrow(), d) {
                    field_num(l, "dev", i);
                    field_str(l, "dev_addr", &format!("{d:#x}"));
                }
            },
        )
    })
}

unsafe extern "system" fn set_close(this: This) -> HRESULT {
    guard(|| {
        // SAFETY: called through the wrapper's vtable.
        let w = unsafe { wset(this) };
        set_call(
            this,
            "Close",
            |_| {},
            // SAFETY: forwarded unchanged.
            || unsafe { (real_set(w).close)(w.real) },
            |_, _, _| {},
        )
    })
}

unsafe extern "system" fn set_signal_abort(this: This) -> HRESULT {
    guard(|| {
        // SAFETY: called through the wrapper's vtable.
        let w = unsafe { wset(this) };
        set_call(
            this,
            "SignalAbort",
            |_| {},
            // SAFETY: forwarded unchanged.
            || unsafe { (real_set(w).signal_abort)(w.real) },
            |_, _, _| {},
        )
    })
}

unsafe extern "system" fn set_open_in_secondary(this: This, name: *const u16) -> HRESULT {
    guard(|| {
        // SAFETY: called through the wrapper's vtable.
        let w = unsafe { wset(this) };
        set_call(
            this,
            "OpenInSecondary",
            // SAFETY: the name as the real library reads it.
            |l| drop(unsafe { field_wide(l, "name", name) }),
            // SAFETY: forwarded unchanged.
            || unsafe { (real_set(w).open_in_secondary)(w.real, name) },
            |_, _, _| {},
        )
    })
}

unsafe extern "system" fn set_open_in_secondary_ex(
    this: This,
    instance: *const u16,
    name: *const u16,
) -> HRESULT {
    guard(|| {
        // SAFETY: called through the wrapper's vtable.
        let w = unsafe { wset(this) };
        if !w.v2 {
            return E_NOTIMPL;
        }
        set_call(
            this,
            "OpenInSecondary",
            // SAFETY: the names as the real library reads them.
            |l| unsafe {
                field_wide(l, "name", name);
                field_wide(l, "instance", instance);
            },
            // SAFETY: forwarded unchanged.
            || unsafe { (real_set(w).open_in_secondary_ex)(w.real, instance, name) },
            |_, _, _| {},
        )
    })
}

unsafe extern "system" fn set_get_buffer_handle(
    this: This,
    buf: *mut u8,
    handle: *mut u32,
) -> HRESULT {
    guard(|| {
        // SAFETY: called through the wrapper's vtable.
        let w = unsafe { wset(this) };
        set_call(
            this,
            "GetBufferHandle",
            |l| field_str(l, "buf", &format!("{:#x}", buf as usize)),
            // SAFETY: forwarded unchanged.
            || unsafe { (real_set(w).get_buffer_handle)(w.real, buf, handle) },
            |_, ret, l| {
                if ret == S_OK && !handle.is_null() {
                    // SAFETY: the real library wrote the handle there.
                    field_num(l, "handle", unsafe { handle.read_unaligned() });
                }
            },
        )
    })
}

unsafe extern "system" fn set_map_buffer_handle(
    this: This,
    handle: u32,
    buf: *mut *mut u8,
) -> HRESULT {
    guard(|| {
        // SAFETY: called through the wrapper's vtable.
        let w = unsafe { wset(this) };
        set_call(
            this,
            "MapBufferHandle",
            |l| field_num(l, "handle", handle),
            // SAFETY: forwarded unchanged.
            || unsafe { (real_set(w).map_buffer_handle)(w.real, handle, buf) },
            |_, ret, l| {
                if ret == S_OK && !buf.is_null() {
                    // SAFETY: the real library wrote the address there.
                    let a = unsafe { buf.read_unaligned() } as usize;
                    field_str(l, "buf", &format!("{a:#x}"));
                }
            },
        )
    })
}

// ----- IClientVirtualDevice --------------------------------------------------------------

/// A new device wrapper for `real` (whose reference it takes), count 1.
fn wrap_dev(real: This) -> This {
    Box::into_raw(Box::new(WDev {
        vtbl: &DEV_VTBL,
        refs: AtomicU32::new(1),
        real,
    }))
    .cast()
}

unsafe extern "system" fn dev_query_interface(
    this: This,
    riid: *const Guid,
    ppv: *mut *mut c_void,
) -> HRESULT {
    guard(|| {
        // SAFETY: called through the wrapper's vtable.
        let w = unsafe { wdev(this) };
        // SAFETY: forwarded COM contract.
        unsafe {
            query(
                this,
                w.real,
                &w.refs,
                riid,
                ppv,
                DEVICE_QUERY_INTERFACE_IIDS,
            )
        }
    })
}

unsafe extern "system" fn dev_add_ref(this: This) -> u32 {
    // SAFETY: called through the wrapper's vtable.
    let w = unsafe { wdev(this) };
    w.refs.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
}

unsafe extern "system" fn dev_release(this: This) -> u32 {
    // SAFETY: called through the wrapper's vtable.
    let w = unsafe { wdev(this) };
    match release_count(&w.refs) {
        Some(0) => {}
        Some(n) => return n,
        None => return 0,
    }
    let call = recorder().map(|r| (r, Call::begin(r, "DeviceDestruct")));
    // SAFETY: gives back the wrapper's reference on the real device.
    unsafe { (real_dev(w).release)(w.real) };
    if let Some((r, call)) = call {
        r.write(&call, |l| {
            field_str(l, "dev_addr", &format!("{:#x}", this as usize))
        });
    }
    // SAFETY: the count reached zero; made by `Box::into_raw` in `wrap_dev`.
    drop(unsafe { Box::from_raw(this.cast::<WDev>()) });
    0
}

/// The device fields `obj`, `inc`, `dev` (unknown device: obj 0, no dev).
fn field_dev(l: &mut String, d: Option<DevRec>, this: This) {
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

unsafe extern "system" fn dev_get_command(
    this: This,
    timeout: u32,
    cmd: *mut *mut VdcCommand,
) -> HRESULT {
    guard(|| {
        // SAFETY: called through the wrapper's vtable.
        let w = unsafe { wdev(this) };
        let f = real_dev(w).get_command;
        let Some(r) = recorder() else {
            // SAFETY: forwarded unchanged.
            return unsafe { f(w.real, timeout, cmd) };
        };
        let mut call = Call::begin(r, "GetCommand");
        // SAFETY: forwarded unchanged.
        let ret = unsafe { f(w.real, timeout, cmd) };
        call.batch = ret == S_OK;
        let d = r.device(this as usize);
        // SAFETY: `cmd` as the program passed it, written by the real library
        // when it answered success.
        let cmd_fields = unsafe { fetched_fields(r, this as usize, d, ret == S_OK, cmd) };
        r.write(&call, |l| {
            field_dev(l, d, this);
            field_num(l, "timeout", dword_timeout_ms(timeout));
            field_ret(l, ret);
            l.push_str(&cmd_fields);
        });
        ret
    })
}

unsafe extern "system" fn dev_complete_command(
    this: This,
    cmd: *mut VdcCommand,
    code: u32,
    bytes: u32,
    position: u64,
) -> HRESULT {
    guard(|| {
        // SAFETY: called through the wrapper's vtable.
        let w = unsafe { wdev(this) };
        let f = real_dev(w).complete_command;
        let Some(r) = recorder() else {
            // SAFETY: forwarded unchanged.
            return unsafe { f(w.real, cmd, code, bytes, position) };
        };
        let mut call = Call::begin(r, "CompleteCommand");
        let d = r.device(this as usize);
        let (fields, known) = completion_fields(r, this as usize, cmd, code == 0, u64::from(bytes));
        // SAFETY: forwarded unchanged.
        let ret = unsafe { f(w.real, cmd, code, bytes, position) };
        call.batch = ret == S_OK;
        if known && Hresult(ret as u32) != Hresult::VD_E_INVALID {
            r.completed(this as usize, cmd as usize);
        }
        r.write(&call, |l| {
            field_dev(l, d, this);
            l.push_str(&fields);
            l.push_str(&format!(
                ",\"completion\":{{\"code\":{code},\"bytes\":{bytes},\"position\":{position}}}"
            ));
            field_ret(l, ret);
        });
        ret
    })
}
