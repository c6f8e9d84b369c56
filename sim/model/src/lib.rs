//! # vdi-model — the pure VDI model
//!
//! Real VDI is two halves of one protocol in two processes: the client half
//! inside the backup program (the library behind `IClientVirtualDeviceSet2`)
//! and the server half inside SQL Server, joined by shared memory. This
//! crate models exactly that, and nothing that runs it.
//!
//! - [`client`]: the client half — the set and its devices, every client API
//!   method as a pure state transition.
//! - [`server`]: the server half — configuration, the buffer pool, BACKUP and
//!   RESTORE command streams over 1..64 devices, Flush and VDC_Complete,
//!   IO-ERROR and ClearError, CloseDevice, SignalAbort, the watchdog, and the
//!   statement's outcome.
//! - [`msg`]: what crosses between them (and [`msg::Timeout`], how long a
//!   client call may wait); [`channel`]: the in-memory link.
//! - [`content`]: virtual stream content, checkable byte for byte;
//!   [`media`]: the self-describing header every media family begins with.
//! - [`statement`]: BACKUP / RESTORE statements, the server's plan, the
//!   backup history; [`outcome`]: what the statement's connection reports.
//! - [`tape`]: a tape-like client's medium: bytes, filemarks, the head;
//!   [`secondary`]: a secondary client process (OpenInSecondary).
//! - [`trace`]: the canonical JSONL trace and its hash.
//! - [`fault`]: fault plans and the one trigger matcher
//!   ([`fault::FaultSchedule`]) every driver uses.
//! - [`process`]: what the client process saw ([`process::ClientProcess`]),
//!   absorbed call by call the same way by every driver.
//! - [`calllog`]: the call log a library writes of a real client program's
//!   calls ([`calllog::CallRecord`], JSON lines).
//! - [`checks`]: the invariants, one file per family, and the client
//!   obligations a call log is graded by ([`checks::obligations`]).
//! - [`programs`]: client programs — the reference client and the flawed
//!   clients real products have been seen to be.
//! - [`mutation`]: deliberately broken rules (test-only), to show the
//!   explorer and the fuzzer find a broken model.
//!
//! ## What this crate must not do
//!
//! Nothing here reads a clock, spawns a thread, touches a file, a socket or
//! the environment, or draws randomness: time, scheduling and faults are
//! inputs. `clippy.toml` in this directory forbids the std items that would
//! (`cargo clippy -p vdi-model`). That is what lets the deterministic world
//! (`vdi-sim`), the real-time hosts (`vdi-host`) and the fuzzers share one
//! truth: every driver runs this code, none restates it.

pub mod call;
pub mod calllog;
pub mod channel;
pub mod checks;
pub mod client;
pub mod content;
pub mod fault;
pub mod flaw;
pub mod media;
pub mod msg;
pub mod mutation;
pub mod outcome;
pub mod process;
pub mod programs;
pub mod secondary;
pub mod server;
pub mod statement;
pub mod tape;
pub mod trace;
