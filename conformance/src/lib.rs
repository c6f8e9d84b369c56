//! # vdi-conformance — the harness and the `vdisim` command
//!
//! It judges implementations of VDI against the model: it runs the
//! scenario catalog on backends, grades what they did, and writes reports.
//!
//! How the pieces fit:
//! - [`backend`]: the `Backend` trait — an implementation of VDI under
//!   test, seen from the client side; [`backends`] holds one file per
//!   backend: the model (`vdi-sim`), `linux-abi` and `com` (any library
//!   loaded by path, driven through its binary interface by
//!   [`backends::abi`]), `serve` (the stand-in with its sets on a
//!   `vdisim serve` process).
//! - [`scenario`]: the TOML scenario format (one case per file under
//!   `conformance/scenarios/<area>/`, named by the clause it checks).
//! - [`script`]: runs a scripted case against any backend, step by step.
//! - [`oracle`]: grades a case run (pass, violation with the clause and the
//!   first divergence, lenient, unimplemented).
//! - [`runner`]: every case × seed × backend on every core, merged in a
//!   deterministic order, expected deviations applied, the report built.
//! - [`random`]: randomized cases (swarm), their oracle, and the scenario
//!   file a failure is written to; [`campaign`]: `vdisim fuzz`, sharded,
//!   resumable, coverage-guided campaigns of them.
//! - [`explore`]: `vdisim explore`, bounded exhaustive exploration of
//!   named small worlds' interleavings.
//! - [`simulate`], [`commands`]: the `vdisim` subcommands (`serve` and
//!   `sqlcmd` are `vdi-sqlserver`'s); [`sqlserver`]: server control of a
//!   real SQL Server over TDS (feature `tds`).
//!
//! ## What this crate must not do
//!
//! It does not restate the model: predictions come from running the model
//! (`vdi-sim`), invariants from `vdi_model::checks`, fault triggers from the
//! model's matcher, and the harness contract from `vdi_host::contract`. It
//! does not link the stand-in library: real implementations are loaded by
//! path and driven through their C ABI, exactly as a vendor's would be.

pub mod backend;
pub mod backends;
pub mod campaign;
#[cfg(unix)]
pub mod client_test;
pub mod commands;
pub mod explore;
#[cfg(unix)]
pub mod judge;
pub mod oracle;
pub mod random;
pub mod runner;
pub mod scenario;
pub mod script;
pub mod simulate;
pub mod sqlserver;
