//! # vdi-spec — the SQL Server Virtual Device Interface as data
//!
//! Everything here is a fact about the protocol or a named choice where the
//! reference is silent, and nothing here runs the protocol: the model
//! (`vdi-model`), the engine (`vdi-sim`), the hosts, the stand-in library
//! and the conformance harness all read their truth from this crate.
//!
//! - [`codes`]: `VD_E_*` HRESULTs and Win32 completion codes, printed as
//!   `NAME (0xHEX)`.
//! - [`features`], [`command`]: `VDF_*` flags and device modes, `VDC_*` codes.
//! - [`layout`]: `#[repr(C)]` `VDConfig` and `VDC_Command` with pinned
//!   layouts, and validation of the client's configuration.
//! - [`options`]: BLOCKSIZE / MAXTRANSFERSIZE / BUFFERCOUNT.
//! - [`states`]: client and server set states and the methods of the tables.
//! - [`tables`]: the 42-cell client transition table and the server table,
//!   each cell with its clause id.
//! - [`clauses`]: the clause catalog — every normative statement the model
//!   implements, with a stable id, its source, and whether it is documented
//!   or inferred; [`clause_id`]: one typed constant per clause
//!   (`vdi_spec::id::CLOSE_DEVICES_OPEN`), so code never names a clause by
//!   a string.
//! - [`abi`]: COM vtable shapes and GUIDs, Linux class symbols.
//! - [`bounds`]: the largest size, count and time each input may carry.
//! - [`profile`]: the named parameters for everything the reference leaves
//!   open, with documented defaults.
//!
//! ## What this crate must not do
//!
//! It holds no behaviour: no state machine, no thread, no IO. It depends on
//! serde alone, and every other crate depends on it.
//!
//! References: `vdi-spec.md` (sections cited as §n.m) and
//! `vdi-abi-and-field-notes.md` (Part 1 for ABI, Part 2 rows for field
//! problems), which summarise Microsoft's VDI specification, headers and
//! samples.

pub mod abi;
pub mod bounds;
pub mod clause_id;
pub mod clauses;
pub mod codes;
pub mod command;
pub mod features;
pub mod layout;
pub mod options;
pub mod profile;
pub mod states;
pub mod tables;

pub use clause_id::{ClauseId, id};
pub use codes::{Hresult, Win32};
pub use command::CommandCode;
pub use features::{DeviceMode, Features};
pub use layout::{VdConfig, VdcCommand};
pub use options::TransferOptions;
pub use profile::Profile;
pub use states::{ClientState, ServerState, TableMethod};
