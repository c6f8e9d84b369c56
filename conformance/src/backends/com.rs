//! The `com` backend: any object with the `IClientVirtualDeviceSet2`
//! vtable (13 slots) and devices with the `IClientVirtualDevice` vtable
//! (5 slots), vdi-abi-and-field-notes.md §1.1.
//!
//! Here the object comes from the stand-in's exported factory
//! `vdisim_CreateClientVirtualDeviceSet(&IID_IClientVirtualDeviceSet2, &p)`
//! in the library [`super::abi::library_path`] names; on Windows the
//! real class would come from `CoCreateInstance(CLSID_MSSQL_ClientVirtual
//! DeviceSet)` with the same vtable. Names are passed as NUL-terminated
//! UTF-16, timeouts as DWORD ([`Timeout::Infinite`] = `INFINITE`), and every
//! object is Released at the end of the case.

use super::abi::{self, Abi, AbiDriver, Harness, Ptr};
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
use vdi_spec::abi::{Guid, IID_ICLIENT_VIRTUAL_DEVICE_SET2};
use vdi_spec::{Hresult, VdConfig, VdcCommand};

type ComResult = i32;

/// `IClientVirtualDeviceSet2`'s vtable, slot by slot.
// Every slot is declared so the layout is exact; not all are called.
#[allow(dead_code)]
#[repr(C)]
struct SetVtbl {
    query_interface:
        unsafe extern "system" fn(*mut Obj, *const Guid, *mut *mut c_void) -> ComResult,
    add_ref: unsafe extern "system" fn(*mut Obj) -> u32,
    release: unsafe extern "system" fn(*mut Obj) -> u32,
    create: unsafe extern "system" fn(*mut Obj, *const u16, *mut VdConfig) -> ComResult,
    get_configuration: unsafe extern "system" fn(*mut Obj, u32, *mut VdConfig) -> ComResult,
    open_device: unsafe extern "system" fn(*mut Obj, *const u16, *mut *mut Obj) -> ComResult,
    close: unsafe extern "system" fn(*mut Obj) -> ComResult,
    signal_abort: unsafe extern "system" fn(*mut Obj) -> ComResult,
    open_in_secondary: unsafe extern "system" fn(*mut Obj, *const u16) -> ComResult,
    get_buffer_handle: unsafe extern "system" fn(*mut Obj, *mut u8, *mut u32) -> ComResult,
    map_buffer_handle: unsafe extern "system" fn(*mut Obj, u32, *mut *mut u8) -> ComResult,
    create_ex:
        unsafe extern "system" fn(*mut Obj, *const u16, *const u16, *mut VdConfig) -> ComResult,
    open_in_secondary_ex: unsafe extern "system" fn(*mut Obj, *const u16, *const u16) -> ComResult,
}

/// `IClientVirtualDevice`'s vtable.
#[allow(dead_code)]
#[repr(C)]
struct DevVtbl {
    query_interface:
        unsafe extern "system" fn(*mut Obj, *const Guid, *mut *mut c_void) -> ComResult,
    add_ref: unsafe extern "system" fn(*mut Obj) -> u32,
    release: unsafe extern "system" fn(*mut Obj) -> u32,
    get_command: unsafe extern "system" fn(*mut Obj, u32, *mut *mut VdcCommand) -> ComResult,
    complete_command:
        unsafe extern "system" fn(*mut Obj, *mut VdcCommand, u32, u32, u64) -> ComResult,
}

/// A COM object: a pointer to its vtable.
#[repr(C)]
struct Obj {
    vtbl: *const c_void,
}

type Factory = unsafe extern "C" fn(*const Guid, *mut *mut c_void) -> ComResult;

/// Where set objects come from.
#[derive(Clone, Copy)]
pub enum Creator {
    /// The stand-in's exported factory.
    Factory(Factory),
    /// `CoCreateInstance(CLSID_MSSQL_ClientVirtualDeviceSet)`: the
    /// registered class (the `windows` backend).
    #[cfg(windows)]
    CoCreate,
}

/// The COM-shaped ABI of one loaded library.
pub struct ComAbi {
    creator: Creator,
    harness: Option<Harness>,
}

impl ComAbi {
    /// Loads the library and its factory.
    pub fn load() -> Result<ComAbi, BackendError> {
        let path = abi::library_path()?;
        let lib = abi::load(&path)?;
        // SAFETY: the factory's signature as the stand-in's header declares it.
        let factory: Factory = unsafe { abi::symbol(lib, "vdisim_CreateClientVirtualDeviceSet") }
            .ok_or_else(|| {
            BackendError::Failed(format!(
                "{} exports no vdisim_CreateClientVirtualDeviceSet",
                path.display()
            ))
        })?;
        Ok(ComAbi {
            creator: Creator::Factory(factory),
            harness: Harness::load(lib),
        })
    }

    /// Set objects from `creator`, server control through `harness` (the
    /// library's `vdisim_harness_*` exports, when it has them).
    pub fn with(creator: Creator, harness: Option<Harness>) -> ComAbi {
        ComAbi { creator, harness }
    }
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn dword(t: Timeout) -> u32 {
    match t {
        Timeout::Infinite => vdi_spec::layout::limits::INFINITE,
        Timeout::Ms(ms) => u32::try_from(ms).unwrap_or(u32::MAX - 1).min(u32::MAX - 1),
    }
}

fn hr(v: ComResult) -> Hresult {
    Hresult(v as u32)
}

/// The set's vtable.
///
/// # Safety
/// `set` must be a live object from the factory.
unsafe fn sv(set: Ptr) -> &'static SetVtbl {
    // SAFETY: per the caller, a live COM object whose first word points to
    // an IClientVirtualDeviceSet2 vtable, which lives as long as the library.
    unsafe { &*((*(set as *const Obj)).vtbl as *const SetVtbl) }
}

/// A device's vtable.
///
/// # Safety
/// `dev` must be a live device object returned by OpenDevice.
unsafe fn dv(dev: Ptr) -> &'static DevVtbl {
    // SAFETY: as for `sv`, with the IClientVirtualDevice vtable.
    unsafe { &*((*(dev as *const Obj)).vtbl as *const DevVtbl) }
}

impl Abi for ComAbi {
    fn new_set(&self) -> Result<Ptr, BackendError> {
        let mut p: *mut c_void = std::ptr::null_mut();
        let (r, what) = match self.creator {
            // SAFETY: valid IID and out-pointer for the call.
            Creator::Factory(f) => (
                unsafe { f(&IID_ICLIENT_VIRTUAL_DEVICE_SET2, &mut p) },
                "vdisim_CreateClientVirtualDeviceSet",
            ),
            #[cfg(windows)]
            Creator::CoCreate => (
                co_create(&mut p),
                "CoCreateInstance(CLSID_MSSQL_ClientVirtualDeviceSet)",
            ),
        };
        if r != 0 || p.is_null() {
            return Err(BackendError::Failed(format!("{what}: {}", hr(r))));
        }
        Ok(p as Ptr)
    }

    fn drop_set(&self, set: Ptr) {
        // SAFETY: our one reference to a live set, released once.
        unsafe { (sv(set).release)(set as *mut Obj) };
    }

    fn drop_device(&self, dev: Ptr) {
        // SAFETY: the reference OpenDevice gave us, released once.
        unsafe { (dv(dev).release)(dev as *mut Obj) };
    }

    fn create(
        &self,
        set: Ptr,
        instance: Option<Option<&str>>,
        name: &str,
        cfg: &VdConfig,
    ) -> Result<Hresult, BackendError> {
        let n = wide(name);
        let mut c = *cfg;
        // SAFETY: live set; NUL-terminated UTF-16 names and a VDConfig alive
        // for the call.
        let r = unsafe {
            match instance {
                None => (sv(set).create)(set as *mut Obj, n.as_ptr(), &mut c),
                Some(i) => {
                    let iw = i.map(wide);
                    let ip = iw.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
                    (sv(set).create_ex)(set as *mut Obj, ip, n.as_ptr(), &mut c)
                }
            }
        };
        Ok(hr(r))
    }

    fn get_configuration(&self, set: Ptr, t: Timeout, out: &mut VdConfig) -> Hresult {
        // SAFETY: live set; writable VDConfig.
        hr(unsafe { (sv(set).get_configuration)(set as *mut Obj, dword(t), out) })
    }

    fn open_device(&self, set: Ptr, name: &str) -> (Hresult, Ptr) {
        let n = wide(name);
        let mut d = abi::OUT_UNSET as *mut Obj;
        // SAFETY: live set; NUL-terminated name; writable out-pointer.
        let r = unsafe { (sv(set).open_device)(set as *mut Obj, n.as_ptr(), &mut d) };
        (hr(r), d as Ptr)
    }

    fn close(&self, set: Ptr) -> Hresult {
        // SAFETY: live set.
        hr(unsafe { (sv(set).close)(set as *mut Obj) })
    }

    fn signal_abort(&self, set: Ptr) -> Hresult {
        // SAFETY: live set.
        hr(unsafe { (sv(set).signal_abort)(set as *mut Obj) })
    }

    fn open_in_secondary(&self, set: Ptr, name: &str) -> Hresult {
        let n = wide(name);
        // SAFETY: live set; NUL-terminated name.
        hr(unsafe { (sv(set).open_in_secondary)(set as *mut Obj, n.as_ptr()) })
    }

    fn get_buffer_handle(&self, set: Ptr, buf: Ptr) -> (Hresult, u32) {
        let mut h = 0u32;
        // SAFETY: live set; the address is only compared by the library.
        let r = unsafe { (sv(set).get_buffer_handle)(set as *mut Obj, buf as *mut u8, &mut h) };
        (hr(r), h)
    }

    fn map_buffer_handle(&self, set: Ptr, handle: u32) -> (Hresult, Ptr) {
        let mut p: *mut u8 = std::ptr::null_mut();
        // SAFETY: live set; writable out-pointer.
        let r = unsafe { (sv(set).map_buffer_handle)(set as *mut Obj, handle, &mut p) };
        (hr(r), p as Ptr)
    }

    fn get_command(&self, dev: Ptr, t: Timeout) -> (Hresult, Ptr) {
        if dev == 0 {
            return (Hresult::VD_E_INVALID, 0);
        }
        let mut c: *mut VdcCommand = std::ptr::null_mut();
        // SAFETY: a live device object we hold a reference to.
        let r = unsafe { (dv(dev).get_command)(dev as *mut Obj, dword(t), &mut c) };
        (hr(r), c as Ptr)
    }

    fn complete_command(&self, dev: Ptr, cmd: Ptr, code: u32, bytes: u64, pos: u64) -> Hresult {
        if dev == 0 {
            return Hresult::VD_E_INVALID;
        }
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        // SAFETY: a live device object; `cmd` a block the library handed out
        // (or null / stale, which it checks before use).
        hr(unsafe {
            (dv(dev).complete_command)(dev as *mut Obj, cmd as *mut VdcCommand, code, bytes, pos)
        })
    }

    fn harness(&self) -> Option<&Harness> {
        self.harness.as_ref()
    }
}

abi_backend!(
    /// The `com` backend.
    ComBackend,
    ComAbi::load,
    "com",
    "an IClientVirtualDeviceSet2 object (COM vtables; here the stand-in's factory)"
);

/// `CoCreateInstance` of the VDI class on the calling thread (joining the
/// multithreaded apartment first: VDI objects are free-threaded).
#[cfg(windows)]
fn co_create(p: &mut *mut c_void) -> i32 {
    // SAFETY: CoInitializeEx takes a reserved null; a thread already in the
    // MTA gets S_FALSE, which is fine. CoCreateInstance gets GUIDs with the
    // Windows GUID layout (`Guid` is repr(C) with the same fields) and a
    // writable out-pointer.
    unsafe {
        windows_sys::Win32::System::Com::CoInitializeEx(
            std::ptr::null(),
            windows_sys::Win32::System::Com::COINIT_MULTITHREADED as u32,
        );
        windows_sys::Win32::System::Com::CoCreateInstance(
            (&vdi_spec::abi::CLSID_MSSQL_CLIENT_VIRTUAL_DEVICE_SET as *const vdi_spec::abi::Guid)
                .cast(),
            std::ptr::null_mut(),
            windows_sys::Win32::System::Com::CLSCTX_INPROC_SERVER,
            (&IID_ICLIENT_VIRTUAL_DEVICE_SET2 as *const vdi_spec::abi::Guid).cast(),
            p,
        )
    }
}
