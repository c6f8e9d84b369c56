//! Standard in-process COM activation on Windows: a class factory for
//! `CLSID_MSSQL_ClientVirtualDeviceSet` (`DllGetClassObject`),
//! `DllCanUnloadNow`, and `DllRegisterServer` / `DllUnregisterServer`
//! (`HKEY_CLASSES_ROOT\CLSID\{40700425-...}\InprocServer32`, threading model
//! `Both`).
//!
//! Registering this DLL takes over the class id of the real `sqlvdi.dll`
//! on that machine; `regsvr32 /u` this DLL and re-register SQL Server's to
//! undo it.

use crate::com::OBJECTS;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use vdi_spec::Hresult;
use vdi_spec::abi::{CLSID_MSSQL_CLIENT_VIRTUAL_DEVICE_SET, Guid, IID_IUNKNOWN};
use windows_sys::Win32::Foundation::ERROR_SUCCESS;
use windows_sys::Win32::System::LibraryLoader::{
    GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS, GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
    GetModuleFileNameW, GetModuleHandleExW,
};
use windows_sys::Win32::System::Registry::{
    HKEY, HKEY_CLASSES_ROOT, KEY_WRITE, REG_OPTION_NON_VOLATILE, REG_SZ, RegCloseKey,
    RegCreateKeyExW, RegDeleteTreeW, RegSetValueExW,
};

/// The Windows name of a COM result code.
#[allow(clippy::upper_case_acronyms)]
type HRESULT = i32;

const S_OK: HRESULT = 0;
const S_FALSE: HRESULT = 1;
const E_POINTER: HRESULT = Hresult::E_POINTER.0 as i32;
const E_NOINTERFACE: HRESULT = Hresult::E_NOINTERFACE.0 as i32;
const CLASS_E_NOAGGREGATION: HRESULT = 0x8004_0110_u32 as i32;
const CLASS_E_CLASSNOTAVAILABLE: HRESULT = Hresult::CLASS_E_CLASSNOTAVAILABLE.0 as i32;
const SELFREG_E_CLASS: HRESULT = 0x8004_0201_u32 as i32;
const E_UNEXPECTED: HRESULT = 0x8000_FFFF_u32 as i32;

/// `IID_IClassFactory` `{00000001-0000-0000-c000-000000000046}`.
const IID_ICLASS_FACTORY: Guid = Guid::from_u128(0x00000001_0000_0000_c000_000000000046);

/// `LockServer` count.
static LOCKS: AtomicUsize = AtomicUsize::new(0);

#[repr(C)]
struct FactoryVtbl {
    query_interface:
        unsafe extern "system" fn(*mut Factory, *const Guid, *mut *mut c_void) -> HRESULT,
    add_ref: unsafe extern "system" fn(*mut Factory) -> u32,
    release: unsafe extern "system" fn(*mut Factory) -> u32,
    create_instance: unsafe extern "system" fn(
        *mut Factory,
        *mut c_void,
        *const Guid,
        *mut *mut c_void,
    ) -> HRESULT,
    lock_server: unsafe extern "system" fn(*mut Factory, i32) -> HRESULT,
}

/// The class factory: one static object, never freed.
#[repr(C)]
struct Factory {
    vtbl: &'static FactoryVtbl,
}

static FACTORY_VTBL: FactoryVtbl = FactoryVtbl {
    query_interface: factory_query_interface,
    add_ref: factory_add_ref,
    release: factory_release,
    create_instance: factory_create_instance,
    lock_server: factory_lock_server,
};

/// A `static` cannot hold a `*mut`, so the factory address is taken from
/// this immutable static and cast: no method writes through it.
static FACTORY: Factory = Factory {
    vtbl: &FACTORY_VTBL,
};

fn factory_ptr() -> *mut Factory {
    std::ptr::addr_of!(FACTORY).cast_mut()
}

fn guard(f: impl FnOnce() -> HRESULT) -> HRESULT {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(E_UNEXPECTED)
}

unsafe extern "system" fn factory_query_interface(
    this: *mut Factory,
    riid: *const Guid,
    ppv: *mut *mut c_void,
) -> HRESULT {
    guard(|| {
        if ppv.is_null() {
            return E_POINTER;
        }
        // SAFETY: non-null out-pointer from the caller.
        unsafe { ppv.write_unaligned(std::ptr::null_mut()) };
        if riid.is_null() {
            return E_POINTER;
        }
        // SAFETY: non-null GUID pointer.
        let iid = unsafe { riid.read_unaligned() };
        if iid == IID_IUNKNOWN || iid == IID_ICLASS_FACTORY {
            // SAFETY: as above.
            unsafe { ppv.write_unaligned(this.cast()) };
            S_OK
        } else {
            E_NOINTERFACE
        }
    })
}

unsafe extern "system" fn factory_add_ref(_this: *mut Factory) -> u32 {
    2
}

unsafe extern "system" fn factory_release(_this: *mut Factory) -> u32 {
    1
}

unsafe extern "system" fn factory_create_instance(
    _this: *mut Factory,
    outer: *mut c_void,
    riid: *const Guid,
    ppv: *mut *mut c_void,
) -> HRESULT {
    guard(|| {
        if ppv.is_null() {
            return E_POINTER;
        }
        if !outer.is_null() {
            // SAFETY: non-null out-pointer.
            unsafe { ppv.write_unaligned(std::ptr::null_mut()) };
            return CLASS_E_NOAGGREGATION;
        }
        // SAFETY: forwarded caller contracts.
        unsafe { crate::com::vdisim_CreateClientVirtualDeviceSet(riid, ppv) }
    })
}

unsafe extern "system" fn factory_lock_server(_this: *mut Factory, lock: i32) -> HRESULT {
    if lock != 0 {
        LOCKS.fetch_add(1, Ordering::SeqCst);
    } else {
        let _ = LOCKS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
    S_OK
}

/// `DllGetClassObject`: the class factory for
/// `CLSID_MSSQL_ClientVirtualDeviceSet`; `CLASS_E_CLASSNOTAVAILABLE` for
/// any other class.
///
/// # Safety
/// COM calling contract: GUID pointers readable, `ppv` writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DllGetClassObject(
    rclsid: *const Guid,
    riid: *const Guid,
    ppv: *mut *mut c_void,
) -> HRESULT {
    guard(|| {
        if ppv.is_null() || rclsid.is_null() {
            return E_POINTER;
        }
        // SAFETY: non-null GUID pointer.
        if unsafe { rclsid.read_unaligned() } != CLSID_MSSQL_CLIENT_VIRTUAL_DEVICE_SET {
            // SAFETY: non-null out-pointer.
            unsafe { ppv.write_unaligned(std::ptr::null_mut()) };
            return CLASS_E_CLASSNOTAVAILABLE;
        }
        // SAFETY: forwarded caller contracts.
        unsafe { factory_query_interface(factory_ptr(), riid, ppv) }
    })
}

/// `DllCanUnloadNow`: `S_OK` when no object and no server lock is alive.
#[unsafe(no_mangle)]
pub extern "system" fn DllCanUnloadNow() -> HRESULT {
    if OBJECTS.load(Ordering::SeqCst) == 0 && LOCKS.load(Ordering::SeqCst) == 0 {
        S_OK
    } else {
        S_FALSE
    }
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn clsid_key() -> String {
    // Registry form: upper-case with braces.
    format!(
        "CLSID\\{}",
        CLSID_MSSQL_CLIENT_VIRTUAL_DEVICE_SET
            .to_string()
            .to_uppercase()
    )
}

/// This DLL's path.
fn module_path() -> Option<Vec<u16>> {
    let mut module = std::ptr::null_mut();
    // SAFETY: FROM_ADDRESS takes any address inside the module (this
    // function's); UNCHANGED_REFCOUNT means nothing to release.
    let ok = unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            module_path as *const () as *const u16,
            &mut module,
        )
    };
    if ok == 0 {
        return None;
    }
    let mut buf = vec![0u16; 32768];
    // SAFETY: `buf` holds `buf.len()` writable units.
    let n = unsafe { GetModuleFileNameW(module, buf.as_mut_ptr(), buf.len() as u32) } as usize;
    if n == 0 || n >= buf.len() {
        return None;
    }
    buf.truncate(n);
    buf.push(0);
    Some(buf)
}

/// Creates `HKCR\<path>` and sets value `name` (None: the default value).
fn set_value(path: &str, name: Option<&str>, value: &[u16]) -> bool {
    let path = wide(path);
    let mut key: HKEY = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated strings and out-pointer.
    let r = unsafe {
        RegCreateKeyExW(
            HKEY_CLASSES_ROOT,
            path.as_ptr(),
            0,
            std::ptr::null(),
            REG_OPTION_NON_VOLATILE,
            KEY_WRITE,
            std::ptr::null(),
            &mut key,
            std::ptr::null_mut(),
        )
    };
    if r != ERROR_SUCCESS {
        return false;
    }
    let name = name.map(wide);
    // SAFETY: `key` is open; `value` is NUL-terminated UTF-16 of the given
    // byte length.
    let r = unsafe {
        RegSetValueExW(
            key,
            name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr()),
            0,
            REG_SZ,
            value.as_ptr().cast(),
            (value.len() * 2) as u32,
        )
    };
    // SAFETY: `key` was opened above.
    unsafe { RegCloseKey(key) };
    r == ERROR_SUCCESS
}

/// `DllRegisterServer`: registers this DLL as the in-process server of
/// `CLSID_MSSQL_ClientVirtualDeviceSet` (threading model Both).
#[unsafe(no_mangle)]
pub extern "system" fn DllRegisterServer() -> HRESULT {
    guard(|| {
        let Some(path) = module_path() else {
            return SELFREG_E_CLASS;
        };
        let key = clsid_key();
        let ok = set_value(&key, None, &wide("vdisim stand-in ClientVirtualDeviceSet"))
            && set_value(&format!("{key}\\InprocServer32"), None, &path)
            && set_value(
                &format!("{key}\\InprocServer32"),
                Some("ThreadingModel"),
                &wide("Both"),
            );
        if ok { S_OK } else { SELFREG_E_CLASS }
    })
}

/// `DllUnregisterServer`: removes the class registration (absent is fine).
#[unsafe(no_mangle)]
pub extern "system" fn DllUnregisterServer() -> HRESULT {
    guard(|| {
        let key = wide(&clsid_key());
        // SAFETY: valid NUL-terminated string.
        let r = unsafe { RegDeleteTreeW(HKEY_CLASSES_ROOT, key.as_ptr()) };
        // ERROR_FILE_NOT_FOUND (2): nothing registered.
        if r == ERROR_SUCCESS || r == 2 {
            S_OK
        } else {
            SELFREG_E_CLASS
        }
    })
}
