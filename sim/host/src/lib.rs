//! # vdi-host — the real-time hosts of the VDI model
//!
//! The model's halves (`vdi-model`) are pure; this crate runs them on real
//! threads, in real (or scaled) time, over real memory. It is shared by
//! every real-time driver: the stand-in library (`vdi-standin`), the
//! simulated SQL Server process (`vdi-sqlserver`) and the conformance
//! harness (`vdi-conformance`).
//!
//! - [`runtime`]: the client host — the client half behind a lock and a
//!   condition variable, blocking calls with real millisecond timeouts,
//!   Close and SignalAbort racing them (checked with loom: [`sync`]).
//! - [`server`]: the one server host — a thread running the server half for
//!   the statements it is handed, against the sets it is told about.
//! - [`buffers`]: the server's buffer memory, on the heap ([`buffers::Pool`])
//!   or in shared memory mapped by two processes ([`remote::shm`]).
//! - [`remote`]: the channel to a `vdisim serve` process: frames on a Unix
//!   socket ([`remote::wire`]), the library's connector, control
//!   connections.
//! - [`contract`]: the harness contract — one case setup, one observation —
//!   as JSON between the harness, the library and the server process.
//! - [`history`]: msdb history as a long-running server keeps it (indexed,
//!   bounded).
//! - [`plan`]: the in-process server a plan file describes (`VDISIM_PLAN`).
//! - [`mode`]: which server this process talks to, decided once.
//! - [`calllog`]: the call log the client host writes of a program's calls
//!   (`VDISIM_CLIENT_LOG`), and the client environment of client-test
//!   cases (`VDISIM_TIME_SCALE`, `VDISIM_PROFILE`).
//! - [`harness`]: case control over whichever server the mode chose.
//!
//! ## What this crate must not do
//!
//! It does not decide VDI behaviour: every result, command and outcome
//! comes from the model's halves, and every fault trigger is matched by the
//! model's one matcher. It exports no C symbols (that is `vdi-standin`'s
//! face) and has no notion of scenarios or verdicts (the harness's).

pub mod buffers;
pub mod calllog;
pub mod case;
pub mod clock;
pub mod contract;
pub mod harness;
pub mod history;
mod local;
pub mod mode;
pub mod plan;
#[cfg(any(unix, windows))]
pub mod remote;
pub mod runtime;
pub mod server;
pub mod sync;
