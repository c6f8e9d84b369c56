//! Case control: what the conformance harness asks of whichever server the
//! process's mode chose — an in-process server host per case
//! ([`crate::case::CaseHost`]) or a case on a `vdisim serve` process
//! ([`crate::remote::forward::ForwardHost`]). The stand-in library exports
//! it as the `vdisim_harness_*` C functions (JSON in and out).
//!
//! A case: [`CaseControl::reset`] with a [`CaseSetup`]; set objects made
//! afterwards run under its profile and scaled clock and connect to its
//! server, which waits for statements; [`CaseControl::start_statement`]
//! hands it a BACKUP or RESTORE (bound to the live set its first
//! VIRTUAL_DEVICE names); [`CaseControl::event`] applies a server-side
//! fault now; [`CaseControl::wait_statement`] waits for the outcome;
//! [`CaseControl::client_death`] makes the client process "die";
//! [`CaseControl::finish`] ends the case and returns the [`Observation`].
//! One case at a time per process.

use crate::contract::{CaseSetup, Observation};
use std::time::Duration;
use thiserror::Error;
use vdi_model::fault::Fault;
use vdi_model::outcome::Outcome;
use vdi_model::statement::Statement;

/// Why a case request failed.
#[derive(Debug, Error)]
pub enum HarnessError {
    /// No case is active (reset first).
    #[error("no harness case is active: reset first")]
    NoCase,
    /// The server cannot do this (a client-side fault, a server that
    /// refused, a server that cannot be reached).
    #[error("unsupported by the server: {0}")]
    Unsupported(String),
}

/// Case control over one kind of server.
pub trait CaseControl: Send + Sync {
    /// Starts a case, ending any previous one.
    fn reset(&self, setup: CaseSetup) -> Result<(), HarnessError>;
    /// Starts `stmt` on the case's server.
    fn start_statement(&self, stmt: Statement) -> Result<(), HarnessError>;
    /// Applies a server-side fault now.
    fn event(&self, fault: Fault) -> Result<(), HarnessError>;
    /// Waits up to `timeout_ms` virtual ms of the case's clock (`None`:
    /// forever) for the latest statement's outcome; `Ok(None)` on timeout.
    fn wait_statement(&self, timeout_ms: Option<u64>) -> Result<Option<Outcome>, HarnessError>;
    /// The client process dies (clause `abort.client-death`): every set
    /// object of the case tells the server and stops hearing from it.
    fn client_death(&self) -> Result<(), HarnessError>;
    /// Virtual milliseconds since the case started.
    fn now_ms(&self) -> Result<u64, HarnessError>;
    /// Ends the case: waits up to `settle` for the server to become idle,
    /// stops it, and returns what was observed.
    fn finish(&self, settle: Duration) -> Result<Observation, HarnessError>;
}
