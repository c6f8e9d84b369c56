//! # vdi-standin — a drop-in VDI client library backed by the vdisim model
//!
//! Real backup programs reach SQL Server's Virtual Device Interface through a
//! library: `libsqlvdi.so` on Linux (two C++ classes) or the COM object behind
//! `sqlvdi.dll` on Windows (`IClientVirtualDeviceSet2`). This crate builds a
//! library with those exact binary interfaces (`libsqlvdi.so` /
//! `sqlvdi.dll`) whose behaviour is the model's client half, so an unmodified
//! client can run against the simulated server.
//!
//! This crate is the library's faces only, from the C boundary inwards:
//!
//! - [`linux`]: the Itanium-mangled class members of Microsoft's Linux
//!   `vdi.h` (`ClientVirtualDeviceSet`, `ClientVirtualDevice`).
//! - [`com`]: objects with the `IClientVirtualDeviceSet2` and
//!   `IClientVirtualDevice` vtables, the exported factory
//!   `vdisim_CreateClientVirtualDeviceSet`, the outcome query
//!   `vdisim_statement_outcome`; on Windows also COM activation
//!   (`windows.rs`: `DllGetClassObject`, `DllCanUnloadNow`,
//!   `DllRegisterServer`, `DllUnregisterServer`).
//! - [`objects`]: what both ABIs share — set and device objects, the command
//!   blocks handed to C (owned by the library until completed, checked for
//!   client writes at completion), name decoding, and a registry that lets
//!   the ABI check a pointer before trusting it.
//! - [`harness`]: the `vdisim_harness_*` and `vdisim_use_server` exports the
//!   conformance harness drives cases with.
//!
//! Everything behind the faces is `vdi-host`: the client half on real
//! threads (`vdi_host::runtime`), the server the process talks to
//! (`vdi_host::mode`: an in-process plan server, harness cases, or a
//! `vdisim serve` process).
//!
//! The C header for clients is `include/vdisim_vdi.h`; the README says how
//! to build, how to point a client at the library, and the plan format.
//!
//! ## What this crate must not do
//!
//! It decides no VDI behaviour and hosts no server: it turns C calls into
//! calls on `vdi-host`'s runtime and back. Every exported function catches
//! panics (answering `VD_E_UNEXPECTED` or its documented error code), and
//! `unsafe` appears only where the C ABI demands it, each block with a
//! `SAFETY` note. Its internals are not an API for other crates: the
//! harness drives the library through its C exports only.
//!
//! ## Limitations
//!
//! - OpenInSecondary joins a set of another process only through `vdisim
//!   serve` (the server relays the set to every process that joined it;
//!   `vdi_host::runtime` `secondary.rs`); with the in-process plan server or
//!   harness cases it answers as the model does for this object.
//! - The in-process plan server runs one planned statement per set created;
//!   there is no T-SQL (that is `vdisim serve`).
//! - Device objects of the Linux ABI live until their set object is
//!   destroyed; after that, using them is undefined (as with the real
//!   library).

mod com;
pub mod harness;
mod linux;
mod objects;
#[cfg(windows)]
mod windows;

pub use objects::{DevCore, SetCore};
