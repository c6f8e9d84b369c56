//! # vdi-sqlserver — the simulated SQL Server process
//!
//! What a backup program meets when it points at `vdisim serve` instead of
//! SQL Server:
//!
//! - [`serve`]: the long-running server process — simulated databases,
//!   msdb's backup history, set connections from the stand-in library (the
//!   model's server half per statement, on the one server host of
//!   `vdi-host`), and control connections carrying T-SQL or harness case
//!   control.
//! - [`tsql`]: the T-SQL a backup program sends (BACKUP, RESTORE, USE),
//!   parsed into the model's statements, with SQL Server-style errors.
//! - [`tds`]: TDS 7.4, the server side (`vdisim serve --tds`): real SQL
//!   Server drivers log in and run the same T-SQL as the control socket.
//! - [`sqlcmd`]: a `sqlcmd` look-alike: options, batches, output and exit
//!   codes, over a transport-agnostic executor.
//!
//! ## What this crate must not do
//!
//! It does not restate the model: a statement's behaviour is the server
//! half's (`vdi-model`), hosted by `vdi-host`'s server host; this crate adds
//! only what a SQL Server process has around it (databases, history, T-SQL,
//! connections). It does not load or link the stand-in library.

#[cfg(unix)]
pub mod serve;
pub mod sqlcmd;
pub mod tds;
pub mod tsql;
