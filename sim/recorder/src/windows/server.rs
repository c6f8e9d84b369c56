//! In-process COM activation of the recording `sqlvdi.dll`: a class
//! factory for `CLSID_MSSQL_ClientVirtualDeviceSet` (`DllGetClassObject`)
//! that creates the real library's object and wraps it, `DllCanUnloadNow`,
//! and `DllRegisterServer` / `DllUnregisterServer`
//! (`HKEY_CLASSES_ROOT\CLSID\{40700425-...}\InprocServer32`, threading
//! model `Both`, as the stand-in and SQL Server's own DLL register).
//!
//! The real DLL is loaded once, by path, from `VDISIM_RECORD_REAL`
//! (`LoadLibraryW`), and its own `DllGetClassObject` gives the real class
//! factory, so the real DLL need not be registered (registering this DLL
//! takes its class id over; `regsvr32` the real DLL again to undo it).

use super::{E_POINTER, HRESULT, S_OK, This, guard, wrap_set};
use crate::ENV_REAL;
use std::ffi::c_void;
use std::sync::OnceLock;
use vdi_spec::Hresult;
use vdi_spec::abi::{
    CLSID_MSSQL_CLIENT_VIRTUAL_DEVICE_SET, Guid, IID_ICLIENT_VIRTUAL_DEVICE_SET2, IID_IUNKNOWN,
    SET_QUERY_INTERFACE_IIDS,
};
use windows_sys::Win32::Foundation::{ERROR_SUCCESS, HMODULE};
use windows_sys::Win32::System::LibraryLoader::{
    GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS, GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
    GetModuleFileNameW, GetModuleHandleExW, GetProcAddress, LoadLibraryW,
};
use windows_sys::Win32::System::Registry::{
    HKEY, HKEY_CLASSES_ROOT, KEY_WRITE, REG_OPTION_NON_VOLATILE, REG_SZ, RegCloseKey,
    RegCreateKeyExW, RegDeleteTreeW, RegSetValueExW,
};

const S_FALSE: HRESULT = 1;
const E_NOINTERFACE: HRESULT = Hresult::E_NOINTERFACE.0 as i32;
const CLASS_E_NOAGGREGATION: HRESULT = 0x8004_0110_u32 as i32;
const CLASS_E_CLASSNOTAVAILABLE: HRESULT = Hresult::CLASS_E_CLASSNOTAVAILABLE.0 as i32;
const SELFREG_E_CLASS: HRESULT = 0x8004_0201_u32 as i32;

/// `IID_IClassFactory` `{00000001-0000-0000-c000-000000000046}`.
const IID_ICLASS_FACTORY: Guid = Guid::from_u128(0x00000001_0000_0000_c000_000000000046);

type GetClassObject = unsafe extern "system" fn(*const Guid, *const Guid, *mut This) -> HRESULT;

/// The `IClassFactory` vtable (this DLL's factory's and the real one's).
#[repr(C)]
struct FactoryVtbl {
    query_interface: unsafe extern "system" fn(This, *const Guid, *mut This) -> HRESULT,
    add_ref: unsafe extern "system" fn(This) -> u32,
    release: unsafe extern "system" fn(This) -> u32,
    create_instance: unsafe extern "system" fn(This, This, *const Guid, *mut This) -> HRESULT,
    lock_server: unsafe extern "system" fn(This, i32) -> HRESULT,
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

/// No method writes through the factory pointer taken from this static.
static FACTORY: Factory = Factory {
    vtbl: &FACTORY_VTBL,
};

/// The real DLL's `DllGetClassObject` (the DLL stays loaded for the life
/// of the process), or why there is none.
fn real_class_object() -> Result<GetClassObject, &'static str> {
    static REAL: OnceLock<Result<usize, String>> = OnceLock::new();
    match REAL.get_or_init(load_real) {
        // SAFETY: the address GetProcAddress gave for `DllGetClassObject`,
        // whose signature is COM's.
        Ok(f) => Ok(unsafe { std::mem::transmute::<usize, GetClassObject>(*f) }),
        Err(e) => Err(e.as_str()),
    }
}

fn load_real() -> Result<usize, String> {
    use std::os::windows::ffi::OsStrExt;
    let path = std::env::var_os(ENV_REAL).filter(|p| !p.is_empty()).ok_or_else(|| {
        format!(
            "vdisim recorder: {ENV_REAL} is not set: give the full path of the real sqlvdi.dll to forward to; CoCreateInstance fails with CLASS_E_CLASSNOTAVAILABLE"
        )
    })?;
    let shown = std::path::Path::new(&path).display().to_string();
    let wide: Vec<u16> = path.encode_wide().chain(std::iter::once(0)).collect();
    // SAFETY: a NUL-terminated wide path; loading runs the DLL's
    // initialisers, and the variable names the VDI library the program
    // would have loaded itself.
    let module: HMODULE = unsafe { LoadLibraryW(wide.as_ptr()) };
    if module.is_null() {
        return Err(format!(
            "vdisim recorder: cannot load the real library {shown} named by {ENV_REAL} (error {}); give the full path of SQL Server's sqlvdi.dll; CoCreateInstance fails with CLASS_E_CLASSNOTAVAILABLE",
            std::io::Error::last_os_error()
        ));
    }
    if Some(module) == own_module() {
        return Err(format!(
            "vdisim recorder: {ENV_REAL}={shown} is this recording DLL itself: give the path of the real sqlvdi.dll; CoCreateInstance fails with CLASS_E_CLASSNOTAVAILABLE"
        ));
    }
    // SAFETY: a loaded module and a NUL-terminated ANSI name.
    let f = unsafe { GetProcAddress(module, c"DllGetClassObject".as_ptr().cast()) };
    match f {
        Some(f) => Ok(f as usize),
        None => Err(format!(
            "vdisim recorder: {shown} named by {ENV_REAL} exports no DllGetClassObject: give the path of the real sqlvdi.dll; CoCreateInstance fails with CLASS_E_CLASSNOTAVAILABLE"
        )),
    }
}

unsafe extern "system" fn factory_query_interface(
    this: This,
    riid: *const Guid,
    ppv: *mut This,
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
            unsafe { ppv.write_unaligned(this) };
            S_OK
        } else {
            E_NOINTERFACE
        }
    })
}

unsafe extern "system" fn factory_add_ref(_this: This) -> u32 {
    2
}

unsafe extern "system" fn factory_release(_this: This) -> u32 {
    1
}

unsafe extern "system" fn factory_lock_server(_this: This, _lock: i32) -> HRESULT {
    // The DLL never unloads (DllCanUnloadNow): nothing to count.
    S_OK
}

/// Creates the real object through the real class factory: asked for
/// `IClientVirtualDeviceSet2` first, then for `riid`; (object, is v2).
fn create_real(riid: *const Guid) -> Result<(This, bool), HRESULT> {
    let get = real_class_object().map_err(|e| {
        eprintln!("{e}");
        CLASS_E_CLASSNOTAVAILABLE
    })?;
    let mut factory: This = std::ptr::null_mut();
    // SAFETY: the real DLL's DllGetClassObject, with valid GUIDs and an
    // out-pointer.
    let hr = unsafe {
        get(
            &CLSID_MSSQL_CLIENT_VIRTUAL_DEVICE_SET,
            &IID_ICLASS_FACTORY,
            &mut factory,
        )
    };
    if hr != S_OK || factory.is_null() {
        return Err(if hr == S_OK {
            CLASS_E_CLASSNOTAVAILABLE
        } else {
            hr
        });
    }
    // SAFETY: a live IClassFactory (one reference, given back below).
    let vt = unsafe { &**factory.cast::<*const FactoryVtbl>() };
    let mut real: This = std::ptr::null_mut();
    let null = std::ptr::null_mut();
    // SAFETY: the real factory's CreateInstance with valid arguments.
    let mut hr =
        unsafe { (vt.create_instance)(factory, null, &IID_ICLIENT_VIRTUAL_DEVICE_SET2, &mut real) };
    let v2 = hr == S_OK;
    if hr == E_NOINTERFACE {
        // SAFETY: as above, for the interface the program asked for.
        hr = unsafe { (vt.create_instance)(factory, null, riid, &mut real) };
    }
    // SAFETY: gives back the reference DllGetClassObject returned.
    unsafe { (vt.release)(factory) };
    if hr != S_OK || real.is_null() {
        return Err(if hr == S_OK { E_NOINTERFACE } else { hr });
    }
    Ok((real, v2))
}

unsafe extern "system" fn factory_create_instance(
    _this: This,
    outer: This,
    riid: *const Guid,
    ppv: *mut This,
) -> HRESULT {
    guard(|| {
        if ppv.is_null() {
            return E_POINTER;
        }
        // SAFETY: non-null out-pointer.
        unsafe { ppv.write_unaligned(std::ptr::null_mut()) };
        if riid.is_null() {
            return E_POINTER;
        }
        if !outer.is_null() {
            return CLASS_E_NOAGGREGATION;
        }
        // SAFETY: non-null GUID pointer.
        let iid = unsafe { riid.read_unaligned() };
        if !SET_QUERY_INTERFACE_IIDS.contains(&iid) {
            // The wrapper stands for the set interfaces only.
            return E_NOINTERFACE;
        }
        let (real, v2) = match create_real(riid) {
            Ok(r) => r,
            Err(hr) => return hr,
        };
        // SAFETY: non-null out-pointer; the wrapper takes the real
        // object's reference.
        unsafe { ppv.write_unaligned(wrap_set(real, v2)) };
        S_OK
    })
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
    ppv: *mut This,
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
        let f = std::ptr::addr_of!(FACTORY).cast_mut().cast::<c_void>();
        // SAFETY: forwarded caller contracts.
        unsafe { factory_query_interface(f, riid, ppv) }
    })
}

/// `DllCanUnloadNow`: always `S_FALSE`. The recorder keeps the recording
/// open and the real DLL loaded for the life of the process.
#[unsafe(no_mangle)]
pub extern "system" fn DllCanUnloadNow() -> HRESULT {
    S_FALSE
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

/// This DLL's module handle.
fn own_module() -> Option<HMODULE> {
    let mut module = std::ptr::null_mut();
    // SAFETY: FROM_ADDRESS takes any address inside the module (this
    // function's); UNCHANGED_REFCOUNT means nothing to release.
    let ok = unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            own_module as *const () as *const u16,
            &mut module,
        )
    };
    (ok != 0).then_some(module)
}

/// This DLL's path, NUL-terminated.
fn module_path() -> Option<Vec<u16>> {
    let module = own_module()?;
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
        let server = format!("{key}\\InprocServer32");
        let ok = set_value(&key, None, &wide("vdisim recording ClientVirtualDeviceSet"))
            && set_value(&server, None, &path)
            && set_value(&server, Some("ThreadingModel"), &wide("Both"));
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
