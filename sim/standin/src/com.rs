//! The COM-shaped ABI: objects with the exact `IClientVirtualDeviceSet2`
//! vtable (13 slots) and devices with the `IClientVirtualDevice` vtable (5
//! slots), `extern "system"` (stdcall on x86 Windows, the platform C
//! convention elsewhere), on every platform through
//! [`vdisim_CreateClientVirtualDeviceSet`], and on Windows through COM
//! activation (`windows.rs`).
//!
//! Wide names are UTF-16 code units (`const uint16_t*`, NUL-terminated) on
//! every platform, as `LPCWSTR` is on Windows.
//!
//! Reference counting is atomic; an object is freed when its count drops to
//! zero. A device keeps its set's runtime alive, so a device released after
//! its set (or used after Close) answers codes instead of crashing.

use crate::objects::{self as api, DevCore, NAME_MAX, SetCore};
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use vdi_host::runtime::CreateKind;
use vdi_spec::abi::{DEVICE_QUERY_INTERFACE_IIDS, Guid, SET_QUERY_INTERFACE_IIDS};
use vdi_spec::{Hresult, VdConfig, VdcCommand};

/// COM objects (sets and devices) alive in this process, for
/// `DllCanUnloadNow`.
pub static OBJECTS: AtomicUsize = AtomicUsize::new(0);

/// The Windows name of a COM result code.
#[allow(clippy::upper_case_acronyms)]
type HRESULT = i32;

const fn hr(h: Hresult) -> HRESULT {
    h.0 as i32
}

const S_OK: HRESULT = 0;
const E_POINTER: HRESULT = hr(Hresult::E_POINTER);
const E_NOINTERFACE: HRESULT = hr(Hresult::E_NOINTERFACE);
const INVALID: HRESULT = hr(Hresult::VD_E_INVALID);
const UNEXPECTED: HRESULT = hr(Hresult::VD_E_UNEXPECTED);

fn guard(f: impl FnOnce() -> Result<HRESULT, HRESULT>) -> HRESULT {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) | Ok(Err(v)) => v,
        Err(_) => UNEXPECTED,
    }
}

/// The `IClientVirtualDeviceSet2` vtable, slots 0-12 in header order.
#[repr(C)]
#[allow(missing_docs)]
pub struct SetVtbl {
    pub query_interface:
        unsafe extern "system" fn(*mut ComSet, *const Guid, *mut *mut c_void) -> HRESULT,
    pub add_ref: unsafe extern "system" fn(*mut ComSet) -> u32,
    pub release: unsafe extern "system" fn(*mut ComSet) -> u32,
    pub create: unsafe extern "system" fn(*mut ComSet, *const u16, *mut VdConfig) -> HRESULT,
    pub get_configuration: unsafe extern "system" fn(*mut ComSet, u32, *mut VdConfig) -> HRESULT,
    pub open_device:
        unsafe extern "system" fn(*mut ComSet, *const u16, *mut *mut ComDev) -> HRESULT,
    pub close: unsafe extern "system" fn(*mut ComSet) -> HRESULT,
    pub signal_abort: unsafe extern "system" fn(*mut ComSet) -> HRESULT,
    pub open_in_secondary: unsafe extern "system" fn(*mut ComSet, *const u16) -> HRESULT,
    pub get_buffer_handle: unsafe extern "system" fn(*mut ComSet, *mut u8, *mut u32) -> HRESULT,
    pub map_buffer_handle: unsafe extern "system" fn(*mut ComSet, u32, *mut *mut u8) -> HRESULT,
    pub create_ex:
        unsafe extern "system" fn(*mut ComSet, *const u16, *const u16, *mut VdConfig) -> HRESULT,
    pub open_in_secondary_ex:
        unsafe extern "system" fn(*mut ComSet, *const u16, *const u16) -> HRESULT,
}

/// The `IClientVirtualDevice` vtable, slots 0-4.
#[repr(C)]
#[allow(missing_docs)]
pub struct DevVtbl {
    pub query_interface:
        unsafe extern "system" fn(*mut ComDev, *const Guid, *mut *mut c_void) -> HRESULT,
    pub add_ref: unsafe extern "system" fn(*mut ComDev) -> u32,
    pub release: unsafe extern "system" fn(*mut ComDev) -> u32,
    pub get_command: unsafe extern "system" fn(*mut ComDev, u32, *mut *mut VdcCommand) -> HRESULT,
    pub complete_command:
        unsafe extern "system" fn(*mut ComDev, *mut VdcCommand, u32, u32, u64) -> HRESULT,
}

/// A set object: the vtable pointer first, as COM requires.
#[repr(C)]
pub struct ComSet {
    vtbl: &'static SetVtbl,
    refs: AtomicU32,
    core: Arc<SetCore>,
}

/// A device object.
#[repr(C)]
pub struct ComDev {
    vtbl: &'static DevVtbl,
    refs: AtomicU32,
    core: Arc<DevCore>,
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

impl ComSet {
    /// A new set object with reference count 1, as a raw COM pointer.
    pub fn create_raw() -> *mut ComSet {
        OBJECTS.fetch_add(1, Ordering::SeqCst);
        Box::into_raw(Box::new(ComSet {
            vtbl: &SET_VTBL,
            refs: AtomicU32::new(1),
            core: SetCore::new(),
        }))
    }
}

/// Increments a reference count.
fn add_ref(refs: &AtomicU32) -> u32 {
    refs.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
}

/// Decrements a reference count without going below zero; `Some(0)` when
/// this call released the last reference.
fn release(refs: &AtomicU32) -> u32 {
    let mut cur = refs.load(Ordering::Relaxed);
    loop {
        if cur == 0 {
            // Over-release: nothing to free (the object is already gone or
            // was never counted); do not underflow.
            return 0;
        }
        match refs.compare_exchange_weak(cur, cur - 1, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return cur - 1,
            Err(v) => cur = v,
        }
    }
}

/// Reads a NUL-terminated UTF-16 name of at most [`NAME_MAX`] units.
///
/// # Safety
/// `p` must be null or point to a NUL-terminated UTF-16 string.
unsafe fn wide_name(p: *const u16) -> Result<String, HRESULT> {
    if p.is_null() {
        return Err(INVALID);
    }
    let mut units = Vec::new();
    for i in 0..=NAME_MAX {
        // SAFETY: a NUL-terminated string per the caller; we stop at NUL.
        let u = unsafe { p.add(i).read_unaligned() };
        if u == 0 {
            return api::name_from_utf16(&units).map_err(hr);
        }
        units.push(u);
    }
    Err(INVALID)
}

/// # Safety
/// `this` must be null or a live [`ComSet`].
unsafe fn set_ref<'a>(this: *mut ComSet) -> Result<&'a ComSet, HRESULT> {
    // SAFETY: per the caller, a live object (COM: the call came through
    // its vtable) or null.
    unsafe { this.as_ref() }.ok_or(INVALID)
}

/// # Safety
/// `this` must be null or a live [`ComDev`].
unsafe fn dev_ref<'a>(this: *mut ComDev) -> Result<&'a ComDev, HRESULT> {
    // SAFETY: as for `set_ref`.
    unsafe { this.as_ref() }.ok_or(INVALID)
}

/// # Safety
/// `riid` null or a GUID; `ppv` null or writable.
unsafe fn query(
    this: *mut c_void,
    riid: *const Guid,
    ppv: *mut *mut c_void,
    answers: &[Guid],
) -> Result<bool, HRESULT> {
    if ppv.is_null() {
        return Err(E_POINTER);
    }
    // SAFETY: non-null out-pointer.
    unsafe { ppv.write_unaligned(std::ptr::null_mut()) };
    if this.is_null() || riid.is_null() {
        return Err(E_POINTER);
    }
    // SAFETY: non-null GUID pointer from the caller.
    let iid = unsafe { riid.read_unaligned() };
    if !answers.contains(&iid) {
        return Err(E_NOINTERFACE);
    }
    // SAFETY: as above.
    unsafe { ppv.write_unaligned(this) };
    Ok(true)
}

// ----- IClientVirtualDeviceSet2 ----------------------------------------------------------

unsafe extern "system" fn set_query_interface(
    this: *mut ComSet,
    riid: *const Guid,
    ppv: *mut *mut c_void,
) -> HRESULT {
    guard(|| {
        // SAFETY: forwarded caller contracts.
        unsafe { query(this.cast(), riid, ppv, SET_QUERY_INTERFACE_IIDS) }?;
        // SAFETY: `query` checked `this` is non-null; a live object.
        add_ref(&unsafe { set_ref(this) }?.refs);
        Ok(S_OK)
    })
}

unsafe extern "system" fn set_add_ref(this: *mut ComSet) -> u32 {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: forwarded caller contract.
        unsafe { set_ref(this) }.map_or(0, |s| add_ref(&s.refs))
    }))
    .unwrap_or(0)
}

unsafe extern "system" fn set_release(this: *mut ComSet) -> u32 {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: forwarded caller contract.
        let Ok(s) = (unsafe { set_ref(this) }) else {
            return 0;
        };
        let had = s.refs.load(Ordering::Relaxed);
        let left = release(&s.refs);
        if had > 0 && left == 0 {
            // SAFETY: the last reference: `this` came from `Box::into_raw`
            // in `create_raw` and is freed exactly once here.
            drop(unsafe { Box::from_raw(this) });
            OBJECTS.fetch_sub(1, Ordering::SeqCst);
        }
        left
    }))
    .unwrap_or(0)
}

unsafe extern "system" fn set_create(
    this: *mut ComSet,
    name: *const u16,
    cfg: *mut VdConfig,
) -> HRESULT {
    guard(|| {
        // SAFETY: forwarded caller contracts.
        let s = unsafe { set_ref(this) }?;
        // SAFETY: as above.
        let name = unsafe { wide_name(name) }?;
        if cfg.is_null() {
            return Err(INVALID);
        }
        // SAFETY: non-null VDConfig*.
        let c = unsafe { cfg.read_unaligned() };
        // The legacy Create emulates instances through this variable.
        let inst = std::env::var("_VIRTUAL_SERVER_NAME_").ok();
        let kind = match inst.as_deref() {
            Some(i) => CreateKind::CreateEx(Some(i)),
            None => CreateKind::Create,
        };
        Ok(hr(s.core.create(kind, &name, &c)))
    })
}

unsafe extern "system" fn set_create_ex(
    this: *mut ComSet,
    instance: *const u16,
    name: *const u16,
    cfg: *mut VdConfig,
) -> HRESULT {
    guard(|| {
        // SAFETY: forwarded caller contracts.
        let s = unsafe { set_ref(this) }?;
        let inst = if instance.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { wide_name(instance) }?)
        };
        // SAFETY: as above.
        let name = unsafe { wide_name(name) }?;
        if cfg.is_null() {
            return Err(INVALID);
        }
        // SAFETY: non-null VDConfig*.
        let c = unsafe { cfg.read_unaligned() };
        Ok(hr(s.core.create(
            CreateKind::CreateEx(inst.as_deref()),
            &name,
            &c,
        )))
    })
}

unsafe extern "system" fn set_get_configuration(
    this: *mut ComSet,
    timeout: u32,
    cfg: *mut VdConfig,
) -> HRESULT {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let s = unsafe { set_ref(this) }?;
        if cfg.is_null() {
            return Err(INVALID);
        }
        let c = s
            .core
            .get_configuration(api::dword_timeout(timeout))
            .map_err(hr)?;
        // SAFETY: non-null VDConfig*.
        unsafe { cfg.write_unaligned(c) };
        Ok(S_OK)
    })
}

unsafe extern "system" fn set_open_device(
    this: *mut ComSet,
    name: *const u16,
    ppdev: *mut *mut ComDev,
) -> HRESULT {
    guard(|| {
        if ppdev.is_null() {
            return Err(INVALID);
        }
        // SAFETY: non-null out-pointer.
        unsafe { ppdev.write_unaligned(std::ptr::null_mut()) };
        // SAFETY: forwarded caller contracts.
        let s = unsafe { set_ref(this) }?;
        // SAFETY: as above.
        let name = unsafe { wide_name(name) }?;
        let d = s.core.open_device(&name).map_err(hr)?;
        OBJECTS.fetch_add(1, Ordering::SeqCst);
        let obj = Box::into_raw(Box::new(ComDev {
            vtbl: &DEV_VTBL,
            refs: AtomicU32::new(1),
            core: d,
        }));
        // SAFETY: as above.
        unsafe { ppdev.write_unaligned(obj) };
        Ok(S_OK)
    })
}

unsafe extern "system" fn set_close(this: *mut ComSet) -> HRESULT {
    // SAFETY: forwarded caller contract.
    guard(|| Ok(hr(unsafe { set_ref(this) }?.core.close())))
}

unsafe extern "system" fn set_signal_abort(this: *mut ComSet) -> HRESULT {
    // SAFETY: forwarded caller contract.
    guard(|| Ok(hr(unsafe { set_ref(this) }?.core.signal_abort())))
}

unsafe extern "system" fn set_open_in_secondary(this: *mut ComSet, name: *const u16) -> HRESULT {
    guard(|| {
        // SAFETY: forwarded caller contracts.
        let s = unsafe { set_ref(this) }?;
        // SAFETY: as above.
        let name = unsafe { wide_name(name) }?;
        Ok(hr(s.core.open_in_secondary(&name)))
    })
}

unsafe extern "system" fn set_open_in_secondary_ex(
    this: *mut ComSet,
    instance: *const u16,
    name: *const u16,
) -> HRESULT {
    guard(|| {
        // SAFETY: forwarded caller contracts.
        let s = unsafe { set_ref(this) }?;
        if !instance.is_null() {
            // SAFETY: as above.
            let i = unsafe { wide_name(instance) }?;
            let c = s.core.runtime().check_instance(&i);
            if c != Hresult::NOERROR {
                return Err(hr(c));
            }
        }
        // SAFETY: as above.
        let name = unsafe { wide_name(name) }?;
        Ok(hr(s.core.open_in_secondary(&name)))
    })
}

unsafe extern "system" fn set_get_buffer_handle(
    this: *mut ComSet,
    buf: *mut u8,
    handle: *mut u32,
) -> HRESULT {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let s = unsafe { set_ref(this) }?;
        if handle.is_null() {
            return Err(INVALID);
        }
        let h = s.core.get_buffer_handle(buf as usize).map_err(hr)?;
        // SAFETY: non-null out-pointer.
        unsafe { handle.write_unaligned(h) };
        Ok(S_OK)
    })
}

unsafe extern "system" fn set_map_buffer_handle(
    this: *mut ComSet,
    handle: u32,
    buf: *mut *mut u8,
) -> HRESULT {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let s = unsafe { set_ref(this) }?;
        if buf.is_null() {
            return Err(INVALID);
        }
        // SAFETY: non-null out-pointer.
        unsafe { buf.write_unaligned(std::ptr::null_mut()) };
        let a = s.core.map_buffer_handle(handle).map_err(hr)?;
        // SAFETY: as above.
        unsafe { buf.write_unaligned(a as *mut u8) };
        Ok(S_OK)
    })
}

// ----- IClientVirtualDevice ----------------------------------------------------------------

unsafe extern "system" fn dev_query_interface(
    this: *mut ComDev,
    riid: *const Guid,
    ppv: *mut *mut c_void,
) -> HRESULT {
    guard(|| {
        // SAFETY: forwarded caller contracts.
        unsafe { query(this.cast(), riid, ppv, DEVICE_QUERY_INTERFACE_IIDS) }?;
        // SAFETY: checked non-null by `query`.
        add_ref(&unsafe { dev_ref(this) }?.refs);
        Ok(S_OK)
    })
}

unsafe extern "system" fn dev_add_ref(this: *mut ComDev) -> u32 {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: forwarded caller contract.
        unsafe { dev_ref(this) }.map_or(0, |d| add_ref(&d.refs))
    }))
    .unwrap_or(0)
}

unsafe extern "system" fn dev_release(this: *mut ComDev) -> u32 {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: forwarded caller contract.
        let Ok(d) = (unsafe { dev_ref(this) }) else {
            return 0;
        };
        let had = d.refs.load(Ordering::Relaxed);
        let left = release(&d.refs);
        if had > 0 && left == 0 {
            // SAFETY: the last reference to a `Box::into_raw` object from
            // `set_open_device`, freed exactly once.
            drop(unsafe { Box::from_raw(this) });
            OBJECTS.fetch_sub(1, Ordering::SeqCst);
        }
        left
    }))
    .unwrap_or(0)
}

unsafe extern "system" fn dev_get_command(
    this: *mut ComDev,
    timeout: u32,
    ppcmd: *mut *mut VdcCommand,
) -> HRESULT {
    guard(|| {
        if ppcmd.is_null() {
            return Err(INVALID);
        }
        // SAFETY: non-null out-pointer.
        unsafe { ppcmd.write_unaligned(std::ptr::null_mut()) };
        // SAFETY: forwarded caller contract.
        let d = unsafe { dev_ref(this) }?;
        let p = d
            .core
            .get_command(api::dword_timeout(timeout))
            .map_err(hr)?;
        // SAFETY: as above.
        unsafe { ppcmd.write_unaligned(p) };
        Ok(S_OK)
    })
}

unsafe extern "system" fn dev_complete_command(
    this: *mut ComDev,
    cmd: *mut VdcCommand,
    code: u32,
    bytes: u32,
    position: u64,
) -> HRESULT {
    guard(|| {
        // SAFETY: forwarded caller contract.
        let d = unsafe { dev_ref(this) }?;
        Ok(hr(d.core.complete_command(
            cmd as usize,
            code,
            u64::from(bytes),
            position,
        )))
    })
}

// ----- the factory --------------------------------------------------------------------------

/// Creates a set object and returns the interface `riid` asks for
/// (IUnknown, IClientVirtualDeviceSet or IClientVirtualDeviceSet2, all the
/// same pointer) in `*ppv`: `S_OK`, `E_NOINTERFACE`, or `E_POINTER`.
///
/// # Safety
/// `riid` must be null or point to a GUID; `ppv` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_CreateClientVirtualDeviceSet(
    riid: *const Guid,
    ppv: *mut *mut c_void,
) -> HRESULT {
    guard(|| {
        if ppv.is_null() {
            return Err(E_POINTER);
        }
        let obj = ComSet::create_raw();
        // SAFETY: `obj` is a live object with one reference; QI adds one
        // on success, the Release drops ours (freeing it on failure).
        let r = unsafe { set_query_interface(obj, riid, ppv) };
        // SAFETY: as above.
        unsafe { set_release(obj) };
        Ok(r)
    })
}

/// Writes the latest in-process statement's outcome as JSON into `json`
/// (NUL-terminated, truncated to `json_len`; the full size with NUL goes to
/// `*json_needed` when that is non-null), after waiting up to `timeout_ms`
/// (negative: forever; 0: no wait) for it to end. Returns 0 when no
/// statement ran (no plan, or no set created yet), 1 while it still runs,
/// 2 when it succeeded, 3 when it failed; `VD_E_INVALID` for a null `json`
/// with a non-zero `json_len`.
///
/// # Safety
/// `json` must be null or hold `json_len` writable bytes; `json_needed`
/// null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_statement_outcome(
    timeout_ms: i64,
    json: *mut std::ffi::c_char,
    json_len: usize,
    json_needed: *mut usize,
) -> i32 {
    guard(|| {
        if json.is_null() && json_len > 0 {
            return Err(INVALID);
        }
        let timeout = u64::try_from(timeout_ms)
            .ok()
            .map(std::time::Duration::from_millis);
        let p = vdi_host::mode::current()
            .board()
            .and_then(|b| b.wait_latest(timeout));
        let text = match &p {
            Some(p) => serde_json::to_string(p).unwrap_or_else(|_| "{}".into()),
            None => "null".into(),
        };
        let bytes = text.as_bytes();
        if !json_needed.is_null() {
            // SAFETY: non-null, writable per the caller.
            unsafe { json_needed.write_unaligned(bytes.len() + 1) };
        }
        if json_len > 0 {
            let n = bytes.len().min(json_len - 1);
            // SAFETY: `json` holds `json_len` bytes; we write n + 1 <= json_len.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), json.cast::<u8>(), n);
                json.add(n).write(0);
            }
        }
        use vdi_model::outcome::Status;
        Ok(match p.map(|p| p.outcome.status) {
            None => 0,
            Some(Status::NotStarted | Status::Running) => 1,
            Some(Status::Succeeded) => 2,
            Some(Status::Failed) => 3,
        })
    })
}

/// How many writes into read-only command blocks this process has seen
/// (clause `complete-command.read-only-block`; the call is never refused).
#[unsafe(no_mangle)]
pub extern "C" fn vdisim_block_modifications() -> u64 {
    catch_unwind(api::modifications_total).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vdi_spec::abi::{IID_ICLIENT_VIRTUAL_DEVICE, IID_ICLIENT_VIRTUAL_DEVICE_SET2};

    /// abi: 13 set slots, 5 device slots, pointer-sized each.
    #[test]
    fn vtable_sizes_match_the_slot_lists() {
        let p = std::mem::size_of::<usize>();
        assert_eq!(
            std::mem::size_of::<SetVtbl>(),
            vdi_spec::abi::ICLIENT_VIRTUAL_DEVICE_SET2.slots.len() * p
        );
        assert_eq!(
            std::mem::size_of::<DevVtbl>(),
            vdi_spec::abi::ICLIENT_VIRTUAL_DEVICE.slots.len() * p
        );
    }

    /// QueryInterface answers the set IIDs, refuses the device IID, and
    /// counts references.
    #[test]
    fn query_interface_and_refcount() {
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: valid pointers to locals.
        let r = unsafe {
            vdisim_CreateClientVirtualDeviceSet(&IID_ICLIENT_VIRTUAL_DEVICE_SET2, &mut p)
        };
        assert_eq!(r, S_OK);
        let s = p.cast::<ComSet>();
        // SAFETY: `s` is a live set with one reference.
        unsafe {
            let mut q: *mut c_void = std::ptr::null_mut();
            assert_eq!(
                set_query_interface(s, &IID_ICLIENT_VIRTUAL_DEVICE, &mut q),
                E_NOINTERFACE
            );
            assert!(q.is_null());
            assert_eq!(set_query_interface(s, std::ptr::null(), &mut q), E_POINTER);
            assert_eq!(
                set_query_interface(s, &IID_ICLIENT_VIRTUAL_DEVICE_SET2, std::ptr::null_mut()),
                E_POINTER
            );
            for iid in SET_QUERY_INTERFACE_IIDS {
                assert_eq!(set_query_interface(s, iid, &mut q), S_OK);
                assert_eq!(q, s.cast());
            }
            assert_eq!(set_add_ref(s), 5);
            for left in (0..5).rev() {
                assert_eq!(set_release(s), left);
            }
        }
    }
}
