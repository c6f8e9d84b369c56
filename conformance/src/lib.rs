//! # vdi-conformance — the harness and the `vdisim` command
//!
//! How the pieces fit:
//! - [`backend`]: the `Backend` trait — an implementation of VDI under
//!   test, seen from the client side; [`backends`] holds one file per
//!   backend (today: the model).
//! - [`scenario`]: the TOML scenario format (one case per file under
//!   `conformance/scenarios/`, named by the clause it checks).
//! - [`script`]: runs a scripted case against any backend, step by step.
//! - [`oracle`]: grades a case run (pass, violation with the clause and the
//!   first divergence, lenient, unimplemented).
//! - [`runner`]: every case × seed × backend on every core, merged in a
//!   deterministic order, expected deviations applied, the report built.
//! - [`random`]: randomized cases (swarm), their oracle, and the scenario
//!   file a failure is written to.
//! - [`simulate`], [`commands`]: the `vdisim` subcommands.

pub mod backend;
pub mod backends;
pub mod commands;
pub mod oracle;
pub mod random;
pub mod runner;
pub mod scenario;
pub mod script;
pub mod simulate;
pub mod sqlserver;
