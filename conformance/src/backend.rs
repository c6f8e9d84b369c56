//! The `Backend` trait: "an implementation of VDI under test", seen from the
//! client side.
//!
//! A backend offers every client API method (as [`Call`]s, blocking with
//! the call's own timeout), server control (start a BACKUP or RESTORE
//! statement, server-side events), and observation (the statement's outcome,
//! what the server saw, the trace). The harness drives scripted scenarios
//! through these methods only, so a new backend is one file in
//! [`crate::backends`]: the model (here), a Linux backend loading any
//! `libsqlvdi.so`, a COM backend driving an `IClientVirtualDeviceSet2`
//! vtable, a replay backend for recorded traces.
//!
//! Scenarios whose client is a built-in program (the reference client or a
//! flawed one) run through [`Backend::run_program`]; a backend that cannot
//! host a program answers [`BackendError::Unsupported`] and the case is
//! graded *unimplemented*.

use crate::scenario::Scenario;
use serde::Serialize;
use thiserror::Error;
use vdi_model::call::{Call, Reply};
use vdi_model::client::DeviceHandle;
use vdi_model::fault::Fault;
use vdi_model::msg::Timeout;
use vdi_model::outcome::Outcome;
use vdi_model::process::ClientProcess;
use vdi_model::programs::ClientSpec;
use vdi_model::statement::Statement;
use vdi_sim::world::RunResult;

/// What a backend is.
#[derive(Clone, Debug, Serialize)]
pub struct BackendInfo {
    pub name: String,
    pub description: String,
    /// The library it loads, when it loads one.
    pub library: Option<String>,
}

/// Why a backend could not do something.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BackendError {
    /// The backend cannot stage this (the case is graded unimplemented).
    #[error("unsupported by this backend: {0}")]
    Unsupported(String),
    /// The run ended (hang, budget, step limit) before the call returned.
    #[error("the run ended before the call returned: {0}")]
    Ended(String),
    /// The backend itself failed (library not loadable, crash, ...).
    #[error("backend failure: {0}")]
    Failed(String),
}

/// Everything fixed before a case starts: the harness contract's setup
/// (real-time backends send it to the library's server host as it is).
pub use vdi_host::contract::CaseSetup;

/// What a backend that grades a case by evidence besides its own run (the
/// replay backend: recordings of real deployments) says of the case just
/// run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Review {
    /// The verdict the evidence imposes (`None`: the run's own verdict
    /// stands).
    pub verdict: Option<vdi_reports::schema::Verdict>,
    /// What the evidence was and what it showed (added to the detail).
    pub note: String,
    /// The clause the evidence breaks, when it breaks one.
    pub clause: Option<String>,
}

/// A binary interface a backend stages a case through besides its own run
/// (see [`Backend::binary_halves`]).
pub struct BinaryHalf<'a> {
    /// What the interface is, for verdict details ("COM vtables").
    pub label: &'static str,
    /// The backend that drives it.
    pub backend: &'a mut dyn Backend,
}

/// A call started on another thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(pub usize);

/// The client side of VDI under test, plus control of and a view into its server.
pub trait Backend {
    fn info(&self) -> BackendInfo;

    /// Which of [`crate::scenario::CAPABILITIES`] this backend has.
    fn capabilities(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether the backend observes the server half: its clause hits and
    /// the reason a statement failed (a backend that sees only what a SQL
    /// Server sends its clients does not; the oracle then grades an end
    /// decided by those alone *unimplemented*).
    fn observes_server(&self) -> bool {
        true
    }

    /// Starts a fresh case: a new set object, a new server, `setup` applied.
    fn reset(&mut self, setup: &CaseSetup) -> Result<(), BackendError>;

    /// Makes `call` on the client thread named `thread` (`ctl`, `dev0`, ...)
    /// and returns its result; blocking calls wait up to their timeout.
    fn call(&mut self, thread: &str, call: Call) -> Result<Reply, BackendError> {
        let t = self.start(thread, call)?;
        self.join(t)
    }

    /// Starts `call` on thread `thread` without waiting for it.
    fn start(&mut self, thread: &str, call: Call) -> Result<Ticket, BackendError>;

    /// Waits for a started call.
    fn join(&mut self, t: Ticket) -> Result<Reply, BackendError>;

    /// Sends a BACKUP or RESTORE statement, as the client's SQL connection
    /// would; returns at once.
    fn start_statement(&mut self, stmt: &Statement) -> Result<(), BackendError>;

    /// A server-side event or a process death now.
    fn event(&mut self, fault: Fault) -> Result<(), BackendError>;

    /// Lets `ms` pass.
    fn sleep(&mut self, ms: u64) -> Result<(), BackendError>;

    /// Waits for the statement's outcome; `None` if `timeout` passed first.
    fn wait_statement(&mut self, timeout: Timeout) -> Result<Option<Outcome>, BackendError>;

    /// Ends the case and reports everything observed.
    fn finish(&mut self) -> Result<RunResult, BackendError>;

    /// The client process's state (media per device) when the backend models
    /// it; the harness's own client code (a script's completions, drains)
    /// then reads and writes it, so the backend's invariants see what the
    /// client stored. `None`: the harness keeps the media itself.
    fn client_process(&mut self) -> Option<&mut ClientProcess> {
        None
    }

    /// Starts the reference device loop on `thread` for device `dev`
    /// (GetCommand, perform, CompleteCommand, until something other than
    /// NOERROR); [`Backend::join`] returns the code that ended it.
    fn start_drain(
        &mut self,
        thread: &str,
        dev: DeviceHandle,
        timeout: Timeout,
    ) -> Result<Ticket, BackendError> {
        let _ = (thread, dev, timeout);
        Err(BackendError::Unsupported("concurrent drains".into()))
    }

    /// The evidence's verdict on the case just run, for a backend that
    /// grades by evidence besides its own run; asked once after each case.
    fn review(&mut self) -> Option<Review> {
        None
    }

    /// The binary interfaces `sc` is staged through besides this backend's
    /// own run, each graded as the case on its own, all of which must pass
    /// with the run (the model: `abi` cases, through the stand-in built
    /// into this executable, `crate::backends::builtin_abi`). `None`: the
    /// run is the whole case. `Some(Err(why))`: the case needs a staging
    /// this backend cannot give here (graded *unimplemented*).
    fn binary_halves(&mut self, sc: &Scenario) -> Option<Result<Vec<BinaryHalf<'_>>, String>> {
        let _ = sc;
        None
    }

    /// Runs a built-in client program for the whole case.
    fn run_program(
        &mut self,
        setup: &CaseSetup,
        spec: &ClientSpec,
    ) -> Result<RunResult, BackendError> {
        let _ = (setup, spec);
        Err(BackendError::Unsupported("built-in client programs".into()))
    }
}
