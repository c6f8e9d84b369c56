//! The model backend's binary half: `abi` cases (`requires = ["abi"]`:
//! struct layouts, vtable slots, the Linux class symbols, `*ppVirtualDevice`
//! set to NULL on failure, Release / delete after Close) are claims about a
//! binary interface, which the model has none of. The model backend stages
//! them twice: on the deterministic model (its verdict, trace and trace
//! hash), and through the binary interface of the stand-in library linked
//! into this executable (`vdi-standin`, as an rlib). Both must pass
//! (`crate::oracle` grades the halves; a failure of this one is a
//! violation whose detail names it).
//!
//! This half calls the stand-in exactly as the `linux-abi` and `com`
//! backends call a loaded library, through the same [`LinuxAbi`] /
//! [`ComAbi`] and [`AbiDriver`]; only the symbol table is filled by the
//! linker instead of the dynamic loader:
//!
//! - the Linux class API (Unix builds): the mangled members of
//!   `ClientVirtualDeviceSet` / `ClientVirtualDevice`, by name
//!   ([`linux_symbol`], handed to [`LinuxAbi::from_symbols`]);
//! - the COM-shaped interface: objects from the factory
//!   `vdisim_CreateClientVirtualDeviceSet`, called through their
//!   `IClientVirtualDeviceSet2` / `IClientVirtualDevice` vtables.
//!
//! Which half a case runs through ([`BuiltinAbi::for_case`]): a case citing
//! `abi.com-vtables` through COM only (it uses an instance name, which the
//! Linux class API has not), one citing `abi.linux-classes` through the
//! Linux classes only (on Windows it cannot be staged: *unimplemented*),
//! every other `abi` case through both (COM only on Windows). The two ABIs
//! share the library's objects and its one process-wide server host; the
//! driver's case lock runs one case at a time, so they never meet.
//!
//! Server control is the library's own in-process host
//! (`vdisim_harness_*`): `vdisim_harness_reset` comes before the first set
//! object, which fixes this executable's copy of the library to harness
//! cases in process for its life (`vdi_host::mode`), so `VDISIM_SERVER` /
//! `VDISIM_PLAN` never send it to another server. This half runs in real
//! time (scaled as for the `linux-abi` backend); its timing is not
//! deterministic, so nothing of it enters the case's trace or trace hash:
//! only its verdict does.

use super::abi::{AbiDriver, Harness};
use super::com::{ComAbi, Creator};
#[cfg(unix)]
use super::linux_abi::LinuxAbi;
use super::linux_abi::abi_backend;
use crate::backend::{Backend, BackendError, BackendInfo, BinaryHalf, CaseSetup, Ticket};
use crate::scenario::Scenario;
use std::ffi::c_void;
use std::sync::Arc;
use vdi_model::call::{Call, Reply};
use vdi_model::client::DeviceHandle;
use vdi_model::fault::Fault;
use vdi_model::msg::Timeout;
use vdi_model::outcome::Outcome;
use vdi_model::statement::Statement;
use vdi_sim::world::RunResult;
use vdi_spec::abi::Guid;
use vdi_spec::id;
// The stand-in is linked in for its exported symbols, declared below.
use sqlvdi as _;

/// The label of the Linux class half in verdict details.
pub const LINUX: &str = "Linux class API";
/// The label of the COM-shaped half in verdict details.
pub const COM: &str = "COM vtables";

// The stand-in's exports (sim/standin/src/linux.rs). Declared without
// parameters: only their addresses are taken here, and the members'
// signatures are applied where the table is built (`LinuxAbi::from_symbols`),
// as for a library loaded by path.
#[cfg(unix)]
unsafe extern "C" {
    #[link_name = "_ZN22ClientVirtualDeviceSetC1Ev"]
    fn set_ctor();
    #[link_name = "_ZN22ClientVirtualDeviceSetD1Ev"]
    fn set_dtor();
    #[link_name = "_ZN22ClientVirtualDeviceSet6CreateEPcP8VDConfig"]
    fn set_create();
    #[link_name = "_ZN22ClientVirtualDeviceSet16GetConfigurationElP8VDConfig"]
    fn set_get_configuration();
    #[link_name = "_ZN22ClientVirtualDeviceSet10OpenDeviceEPcPP19ClientVirtualDevice"]
    fn set_open_device();
    #[link_name = "_ZN22ClientVirtualDeviceSet5CloseEv"]
    fn set_close();
    #[link_name = "_ZN22ClientVirtualDeviceSet11SignalAbortEv"]
    fn set_signal_abort();
    #[link_name = "_ZN22ClientVirtualDeviceSet15OpenInSecondaryEPc"]
    fn set_open_in_secondary();
    #[link_name = "_ZN22ClientVirtualDeviceSet15GetBufferHandleEPhPj"]
    fn set_get_buffer_handle();
    #[link_name = "_ZN22ClientVirtualDeviceSet15MapBufferHandleEiPPh"]
    fn set_map_buffer_handle();
    #[link_name = "_ZN19ClientVirtualDevice10GetCommandElPP11VDC_Command"]
    fn dev_get_command();
    #[link_name = "_ZN19ClientVirtualDevice15CompleteCommandEP11VDC_Commandiml"]
    fn dev_complete_command();
}

// The stand-in's COM factory (sim/standin/src/com.rs), with the signature
// of its header (`include/vdisim_vdi.h`).
unsafe extern "C" {
    #[link_name = "vdisim_CreateClientVirtualDeviceSet"]
    fn create_set(iid: *const Guid, out: *mut *mut c_void) -> i32;
}

/// The address of the linked-in stand-in's export `name` (a mangled member
/// of the Linux classes), as `dlsym` would give it.
#[cfg(unix)]
pub fn linux_symbol(name: &str) -> Option<*const c_void> {
    let f: unsafe extern "C" fn() = match name {
        "_ZN22ClientVirtualDeviceSetC1Ev" => set_ctor,
        "_ZN22ClientVirtualDeviceSetD1Ev" => set_dtor,
        "_ZN22ClientVirtualDeviceSet6CreateEPcP8VDConfig" => set_create,
        "_ZN22ClientVirtualDeviceSet16GetConfigurationElP8VDConfig" => set_get_configuration,
        "_ZN22ClientVirtualDeviceSet10OpenDeviceEPcPP19ClientVirtualDevice" => set_open_device,
        "_ZN22ClientVirtualDeviceSet5CloseEv" => set_close,
        "_ZN22ClientVirtualDeviceSet11SignalAbortEv" => set_signal_abort,
        "_ZN22ClientVirtualDeviceSet15OpenInSecondaryEPc" => set_open_in_secondary,
        "_ZN22ClientVirtualDeviceSet15GetBufferHandleEPhPj" => set_get_buffer_handle,
        "_ZN22ClientVirtualDeviceSet15MapBufferHandleEiPPh" => set_map_buffer_handle,
        "_ZN19ClientVirtualDevice10GetCommandElPP11VDC_Command" => dev_get_command,
        "_ZN19ClientVirtualDevice15CompleteCommandEP11VDC_Commandiml" => dev_complete_command,
        _ => return None,
    };
    Some(f as *const c_void)
}

/// The linked-in stand-in's server control: its `vdisim_harness_*` exports.
pub fn harness() -> Harness {
    use sqlvdi::harness as h;
    Harness::linked(
        h::vdisim_harness_reset,
        h::vdisim_harness_start_statement,
        h::vdisim_harness_event,
        h::vdisim_harness_wait_statement,
        h::vdisim_harness_finish,
        h::vdisim_harness_client_death,
    )
}

/// The Linux class ABI of the linked-in stand-in, its members looked up by
/// `lookup` ([`linux_symbol`]; a test hands in a wrong entry).
///
/// # Safety
/// As [`LinuxAbi::from_symbols`]: every address `lookup` returns must be a
/// function with the named member's signature.
#[cfg(unix)]
pub unsafe fn linux_abi(
    lookup: &dyn Fn(&str) -> Option<*const c_void>,
) -> Result<LinuxAbi, BackendError> {
    // SAFETY: forwarded from the caller.
    unsafe { LinuxAbi::from_symbols(lookup, Some(harness())) }
}

#[cfg(unix)]
fn linked_linux() -> Result<LinuxAbi, BackendError> {
    // SAFETY: `linux_symbol` gives the stand-in's definitions of exactly
    // these members (sim/standin/src/linux.rs, same export names).
    unsafe { linux_abi(&linux_symbol) }
}

/// The COM-shaped ABI of the linked-in stand-in, set objects from `factory`
/// (the stand-in's own, or a test's wrapper of it).
pub fn com_abi(factory: unsafe extern "C" fn(*const Guid, *mut *mut c_void) -> i32) -> ComAbi {
    ComAbi::with(Creator::Factory(factory), Some(harness()))
}

fn linked_com() -> Result<ComAbi, BackendError> {
    Ok(com_abi(create_set))
}

#[cfg(unix)]
abi_backend!(
    /// The Linux class half: the linked-in stand-in's mangled members.
    LinuxHalf,
    linked_linux,
    "model",
    "the built-in stand-in's Linux class API, in process",
    library = None
);

abi_backend!(
    /// The COM-shaped half: the linked-in stand-in's vtables.
    ComHalf,
    linked_com,
    "model",
    "the built-in stand-in's COM vtables, in process",
    library = None
);

#[cfg(unix)]
impl LinuxHalf {
    /// The half over `abi` (a test's, with a wrong entry).
    pub fn over(abi: LinuxAbi) -> LinuxHalf {
        LinuxHalf {
            driver: Ok(AbiDriver::new(Arc::new(abi))),
            library: None,
        }
    }
}

impl ComHalf {
    /// The half over `abi` (a test's, with a wrong factory).
    pub fn over(abi: ComAbi) -> ComHalf {
        ComHalf {
            driver: Ok(AbiDriver::new(Arc::new(abi))),
            library: None,
        }
    }
}

/// Both halves, made once per model backend (no thread runs until a case
/// does).
#[derive(Default)]
pub struct BuiltinAbi {
    #[cfg(unix)]
    linux: LinuxHalf,
    com: ComHalf,
}

impl BuiltinAbi {
    /// Halves over the given ABIs (a test's fault injection).
    #[cfg(unix)]
    pub fn over(linux: LinuxAbi, com: ComAbi) -> BuiltinAbi {
        BuiltinAbi {
            linux: LinuxHalf::over(linux),
            com: ComHalf::over(com),
        }
    }

    /// The halves `sc` runs through (see the module's documentation), or
    /// why it cannot be staged here.
    pub fn for_case(&mut self, sc: &Scenario) -> Result<Vec<BinaryHalf<'_>>, String> {
        let cites = |c: vdi_spec::ClauseId| sc.clauses.iter().any(|x| c == *x);
        let com_only = cites(id::ABI_COM_VTABLES);
        let linux_only = cites(id::ABI_LINUX_CLASSES);
        if com_only && linux_only {
            return Err(format!(
                "{} cites both abi.com-vtables and abi.linux-classes: no one binary interface stages both",
                sc.id
            ));
        }
        let mut v = Vec::new();
        #[cfg(unix)]
        if !com_only {
            v.push(BinaryHalf {
                label: LINUX,
                backend: &mut self.linux,
            });
        }
        #[cfg(not(unix))]
        if linux_only {
            return Err(
                "the Linux class API is built into the stand-in on Unix only: run it on Linux"
                    .into(),
            );
        }
        if !linux_only {
            v.push(BinaryHalf {
                label: COM,
                backend: &mut self.com,
            });
        }
        Ok(v)
    }
}

#[cfg(all(test, unix))]
#[path = "builtin_abi_tests.rs"]
mod tests;
