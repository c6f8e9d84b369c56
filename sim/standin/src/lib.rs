//! # vdi-standin — a drop-in VDI client library backed by the vdisim model
//!
//! Real backup programs reach SQL Server's Virtual Device Interface through a
//! library: `libsqlvdi.so` on Linux (two C++ classes) or the COM object behind
//! `sqlvdi.dll` on Windows (`IClientVirtualDeviceSet2`). This crate builds a
//! library with those exact binary interfaces (`libsqlvdi.so` /
//! `sqlvdi.dll`) whose behaviour is the model's client half, so an unmodified
//! client can run against the simulated server.
//!
//! How the pieces fit, from the C boundary inwards:
//!
//! - [`linux`]: the Itanium-mangled class members of Microsoft's Linux
//!   `vdi.h` (`ClientVirtualDeviceSet`, `ClientVirtualDevice`).
//! - [`com`]: objects with the `IClientVirtualDeviceSet2` and
//!   `IClientVirtualDevice` vtables, the exported factory
//!   `vdisim_CreateClientVirtualDeviceSet`, the outcome query
//!   `vdisim_statement_outcome`; on Windows also COM activation
//!   (`windows.rs`: `DllGetClassObject`, `DllCanUnloadNow`,
//!   `DllRegisterServer`, `DllUnregisterServer`).
//! - [`api`]: what both ABIs share — set and device objects, the command
//!   blocks handed to C (owned by the library until completed, checked for
//!   client writes at completion), name decoding, and a registry that lets
//!   the ABI check a pointer before trusting it.
//! - [`runtime`]: the client half ([`vdi_sim::client::ClientSet`]) on real
//!   threads — blocking calls with real millisecond timeouts, Close and
//!   SignalAbort from other threads, messages to a [`runtime::Transport`].
//! - [`inproc`]: the optional in-process server: when `VDISIM_PLAN` names a
//!   plan file, each set created gets a thread hosting the model's server
//!   half with a real buffer pool, running the planned BACKUP or RESTORE.
//! - [`remote`]: the channel to a `vdisim serve` process — a socket for
//!   messages, shared memory for buffers — used when no in-process server is
//!   configured.
//! - [`session`]: a server session — a thread hosting the model's server
//!   half for statements it is handed, reaching each set through a
//!   [`session::ClientEnd`]; the harness runs one per case in process.
//! - [`sync`]: the lock and condition variable, swapped for loom's under
//!   `--cfg loom`.
//!
//! The C header for clients is `include/vdisim_vdi.h`; the README says how
//! to build, how to point a client at the library, and the plan format.
//!
//! Every exported function catches panics (answering `VD_E_UNEXPECTED`), and
//! `unsafe` appears only where the C ABI demands it, each block with a
//! `SAFETY` note.
//!
//! ## Limitations
//!
//! - OpenInSecondary cannot join a set of another process (there is no
//!   shared memory); it answers as the model does for this object.
//! - The in-process server runs one planned statement per set created; there
//!   is no T-SQL.
//! - Device objects of the Linux ABI live until their set object is
//!   destroyed; after that, using them is undefined (as with the real
//!   library).

pub mod api;
pub mod com;
pub mod harness;
pub mod inproc;
pub mod linux;
pub mod remote;
pub mod runtime;
pub mod session;
pub mod sync;
#[cfg(windows)]
pub mod windows;
