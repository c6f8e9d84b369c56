//! # vdi-sim — two pure VDI half-machines and a deterministic world
//!
//! Real VDI is two halves of one protocol in two processes: the client half
//! inside the backup program, the server half inside SQL Server, joined by
//! shared memory. This crate models exactly that.
//!
//! - [`client`]: the client half — the set and its devices, every client API
//!   method as a pure state transition (`IClientVirtualDeviceSet2`,
//!   `IClientVirtualDevice`).
//! - [`server`]: the server half — configuration, the buffer pool, BACKUP and
//!   RESTORE command streams over 1..64 devices, Flush and VDC_Complete,
//!   IO-ERROR and ClearError, CloseDevice, SignalAbort, the watchdog, and the
//!   statement's outcome.
//! - [`msg`]: what crosses between them; [`channel`]: the in-memory link.
//! - [`data`]: virtual stream content, checkable byte for byte.
//! - [`world`]: a virtual clock, a seeded ChaCha scheduler over the client's
//!   threads and the server, fault plans ([`fault`]) and client programs
//!   ([`program`]).
//! - [`trace`]: the canonical JSONL trace and its hash.
//! - [`tsql`]: the T-SQL a backup program sends (BACKUP, RESTORE, USE),
//!   parsed into [`statement::Statement`]s, and `GO` batch splitting.
//!
//! Neither half reads a clock, spawns a thread or draws randomness: time,
//! scheduling and faults are inputs, so every run replays from its seed and
//! the same halves can run across a process boundary.

pub mod channel;
pub mod client;
pub mod data;
pub mod fault;
pub mod msg;
pub mod outcome;
pub mod program;
pub mod server;
pub mod statement;
pub mod summary;
pub mod trace;
pub mod tsql;
pub mod world;
