//! The `windows` backend: the registered VDI class on Windows, the way a
//! Windows backup program gets it — `CoCreateInstance(CLSID_MSSQL_Client
//! VirtualDeviceSet, CLSCTX_INPROC_SERVER, IID_IClientVirtualDeviceSet2)` —
//! driven through the same vtables as the `com` backend ([`super::com`]).
//!
//! Which DLL answers is the registry's business: SQL Server's `sqlvdi.dll`
//! on a machine with SQL Server, or the stand-in registered with `regsvr32`
//! (under Wine, `conformance/tests/windows_backend.rs` does that). Server
//! control comes from the registered DLL: the stand-in exports
//! `vdisim_harness_*`, so every case runs; the real `sqlvdi.dll` has none, so only the
//! cases that need no statement run here and the others are unsupported
//! (their statements go to a real SQL Server over TDS: the `sqlserver`
//! control path, feature `tds`).

use super::abi::{self, AbiDriver, Harness};
use super::com::{ComAbi, Creator};
use super::linux_abi::abi_backend;
use crate::backend::{Backend, BackendError, BackendInfo, CaseSetup, Ticket};
use std::ffi::c_void;
use std::sync::Arc;
use vdi_model::call::{Call, Reply};
use vdi_model::client::DeviceHandle;
use vdi_model::fault::Fault;
use vdi_model::msg::Timeout;
use vdi_model::outcome::Outcome;
use vdi_model::statement::Statement;
use vdi_sim::world::RunResult;
use vdi_spec::abi::{CLSID_MSSQL_CLIENT_VIRTUAL_DEVICE_SET, IID_ICLIENT_VIRTUAL_DEVICE_SET2};
use windows_sys::Win32::System::Com::{
    CLSCTX_INPROC_SERVER, COINIT_MULTITHREADED, CoCreateInstance, CoInitializeEx,
};
use windows_sys::Win32::System::Registry::{HKEY_CLASSES_ROOT, RRF_RT_REG_SZ, RegGetValueW};

/// `CoCreateInstance` of the VDI class on the calling thread (joining the
/// multithreaded apartment first: VDI objects are free-threaded).
pub(super) fn co_create(p: &mut *mut c_void) -> i32 {
    // SAFETY: CoInitializeEx takes a reserved null; a thread already in the
    // MTA gets S_FALSE, which is fine. CoCreateInstance gets GUIDs with the
    // Windows GUID layout (`Guid` is repr(C) with the same fields) and a
    // writable out-pointer.
    unsafe {
        CoInitializeEx(std::ptr::null(), COINIT_MULTITHREADED as u32);
        CoCreateInstance(
            (&CLSID_MSSQL_CLIENT_VIRTUAL_DEVICE_SET as *const vdi_spec::abi::Guid).cast(),
            std::ptr::null_mut(),
            CLSCTX_INPROC_SERVER,
            (&IID_ICLIENT_VIRTUAL_DEVICE_SET2 as *const vdi_spec::abi::Guid).cast(),
            p,
        )
    }
}

/// The DLL that serves the class: its path, and its harness exports when
/// it has them.
static MODULE: std::sync::OnceLock<(String, Option<Harness>)> = std::sync::OnceLock::new();

/// The class's in-process server as registered
/// (`HKCR\CLSID\{40700425-...}\InprocServer32`, environment variables
/// expanded): the DLL `CoCreateInstance` loads. Loading it here first gives
/// the same module COM uses, without making an object (which would fix the
/// stand-in's server mode before a harness case could choose it).
fn registered_dll() -> Result<String, BackendError> {
    let key: Vec<u16> = format!(
        "CLSID\\{}\\InprocServer32",
        CLSID_MSSQL_CLIENT_VIRTUAL_DEVICE_SET
            .to_string()
            .to_uppercase()
    )
    .encode_utf16()
    .chain(std::iter::once(0))
    .collect();
    let mut buf = vec![0u16; 32768];
    let mut bytes = (buf.len() * 2) as u32;
    // SAFETY: a NUL-terminated key name, the default value (null name), and
    // a buffer of `bytes` writable bytes.
    let r = unsafe {
        RegGetValueW(
            HKEY_CLASSES_ROOT,
            key.as_ptr(),
            std::ptr::null(),
            // A REG_EXPAND_SZ value is expanded and accepted too.
            RRF_RT_REG_SZ,
            std::ptr::null_mut(),
            buf.as_mut_ptr().cast(),
            &mut bytes,
        )
    };
    if r != 0 {
        return Err(BackendError::Failed(format!(
            "CLSID_MSSQL_ClientVirtualDeviceSet is not registered (HKCR\\{}: error {r}): install SQL Server's client tools, or register the stand-in with `regsvr32 sqlvdi.dll`",
            String::from_utf16_lossy(&key[..key.len() - 1])
        )));
    }
    let n = (bytes as usize / 2).min(buf.len());
    let s = String::from_utf16_lossy(&buf[..n]);
    Ok(s.trim_end_matches('\0').to_string())
}

fn module() -> Result<&'static (String, Option<Harness>), BackendError> {
    if let Some(m) = MODULE.get() {
        return Ok(m);
    }
    let path = registered_dll()?;
    // The library is never unloaded (objects and threads of it may outlive
    // a backend), as with the other ABI backends.
    let lib = abi::load(std::path::Path::new(&path))?;
    Ok(MODULE.get_or_init(|| (path, Harness::load(lib))))
}

/// Checks, before any case runs, that the class can be made (a VDI DLL is
/// registered); its DLL's path.
pub fn check() -> Result<String, String> {
    module().map(|m| m.0.clone()).map_err(|e| e.to_string())
}

fn load() -> Result<ComAbi, BackendError> {
    let (_, harness) = module()?;
    Ok(ComAbi::with(Creator::CoCreate, *harness))
}

abi_backend!(
    /// The `windows` backend.
    WindowsBackend,
    load,
    "windows",
    "the registered VDI COM class (CoCreateInstance(CLSID_MSSQL_ClientVirtualDeviceSet)): SQL Server's sqlvdi.dll, or the stand-in",
    library = module().ok().map(|m| m.0.clone())
);
