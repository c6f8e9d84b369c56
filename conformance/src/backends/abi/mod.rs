//! What the `linux-abi`, `com` and `serve` backends share: finding and
//! loading a VDI library ([`library`]), the stand-in's harness control
//! symbols ([`harness`]), and a driver ([`driver`]) that turns the script's
//! calls into calls through an [`Abi`] on real OS threads (one per script
//! thread name), with built-in client programs ([`program`]) and the
//! faults the client side applies ([`client_faults`]). A program's
//! secondary client process runs in a real second process
//! ([`secondary`]) where the library's server can be shared.
//!
//! The layers import one way: `library`, `harness` and `client_faults` (pure
//! state) at the bottom; `shared` (a case's state and the library) above
//! them; `perform` (one call through the library); `driver` (workers and
//! the case lifecycle); `program` (built-in client programs) on top.
//!
//! # Without the harness symbols
//!
//! A library without `vdisim_harness_*` (Microsoft's `libsqlvdi.so`) still
//! runs every client call, but server control answers
//! [`BackendError::Unsupported`](crate::backend::BackendError), so cases
//! needing a statement are graded *unimplemented*. Against a real SQL
//! Server the statement would be sent over TDS (`crate::sqlserver`, feature
//! `tds`): BACKUP/RESTORE ... TO VIRTUAL_DEVICE, KILL for a server-side
//! abort.

pub mod client_faults;
pub mod driver;
pub mod harness;
pub mod library;
mod perform;
pub mod program;
pub mod secondary;
pub mod shared;

pub use driver::AbiDriver;
pub use harness::Harness;
pub use library::{ENV_LIBRARY, check_loadable, library_path, load, profile_dir, symbol};
pub use shared::{Abi, OUT_UNSET, Ptr};

use std::time::Duration;

/// Longest a `join`, `wait_statement` or `finish` waits in real time before
/// the run is declared hung.
pub const HANG_AFTER: Duration = Duration::from_secs(20);

/// Longest `sleep` step staged in real time (longer ones: unsupported).
pub const MAX_SLEEP_MS: u64 = 5_000;
