//! The stand-in's server control (`vdisim_harness_*`), called through the
//! loaded library with the harness contract (`vdi_host::contract`) as JSON.

use super::HANG_AFTER;
use super::library::symbol;
use crate::backend::{BackendError, CaseSetup};
use libloading::Library;
use std::ffi::{CString, c_char};
use vdi_host::contract::Observation;
use vdi_model::fault::Fault;
use vdi_model::msg::Timeout;
use vdi_model::outcome::Outcome;
use vdi_model::statement::Statement;

/// `int f(const char* json)`.
pub type JsonIn = unsafe extern "C" fn(*const c_char) -> i32;
/// `vdisim_harness_wait_statement`'s signature.
pub type WaitFn = unsafe extern "C" fn(i64, *mut c_char, usize, *mut usize) -> i32;
/// `vdisim_harness_finish`'s signature.
pub type FinishFn = unsafe extern "C" fn(*mut c_char, usize, *mut usize) -> i32;

/// The stand-in's server control (`vdisim_harness_*`).
#[derive(Clone, Copy)]
pub struct Harness {
    reset: JsonIn,
    start_statement: JsonIn,
    event: JsonIn,
    wait: WaitFn,
    finish: FinishFn,
    /// `vdisim_harness_client_death`, when the library has it.
    pub client_death: Option<unsafe extern "C" fn() -> i32>,
}

fn harness_code(what: &str, rc: i32) -> Result<(), BackendError> {
    match rc {
        0 => Ok(()),
        -3 => Err(BackendError::Unsupported(format!(
            "server control: {what} is not supported by the library's in-process server"
        ))),
        rc => Err(BackendError::Failed(format!("{what}: harness error {rc}"))),
    }
}

fn cstring(s: &str) -> Result<CString, BackendError> {
    CString::new(s).map_err(|e| BackendError::Failed(e.to_string()))
}

impl Harness {
    /// The harness symbols of `lib`, if it has all of them.
    pub fn load(lib: &'static Library) -> Option<Harness> {
        // SAFETY: the types are those of the stand-in's exported functions
        // (sim/standin/src/harness.rs).
        unsafe {
            Some(Harness {
                reset: symbol(lib, "vdisim_harness_reset")?,
                start_statement: symbol(lib, "vdisim_harness_start_statement")?,
                event: symbol(lib, "vdisim_harness_event")?,
                wait: symbol(lib, "vdisim_harness_wait_statement")?,
                finish: symbol(lib, "vdisim_harness_finish")?,
                client_death: symbol(lib, "vdisim_harness_client_death"),
            })
        }
    }

    /// The harness of a library linked into this executable (the model
    /// backend's in-process stand-in, `super::super::builtin_abi`): the same
    /// exports, taken by the linker instead of the dynamic loader.
    pub fn linked(
        reset: JsonIn,
        start_statement: JsonIn,
        event: JsonIn,
        wait: WaitFn,
        finish: FinishFn,
        client_death: unsafe extern "C" fn() -> i32,
    ) -> Harness {
        Harness {
            reset,
            start_statement,
            event,
            wait,
            finish,
            client_death: Some(client_death),
        }
    }

    fn json_in(&self, f: JsonIn, what: &str, json: &str) -> Result<(), BackendError> {
        let c = cstring(json)?;
        // SAFETY: `c` is a NUL-terminated string alive for the call.
        let rc = unsafe { f(c.as_ptr()) };
        harness_code(what, rc)
    }

    pub fn reset(&self, setup: &CaseSetup) -> Result<(), BackendError> {
        let setup = CaseSetup {
            time_scale: setup.time_scale.max(1),
            ..setup.clone()
        };
        let j = serde_json::to_string(&setup).map_err(|e| BackendError::Failed(e.to_string()))?;
        self.json_in(self.reset, "reset", &j)
    }

    pub fn start_statement(&self, s: &Statement) -> Result<(), BackendError> {
        let j = serde_json::to_string(s).map_err(|e| BackendError::Failed(e.to_string()))?;
        self.json_in(self.start_statement, "start-statement", &j)
    }

    pub fn event(&self, f: &Fault) -> Result<(), BackendError> {
        let j = serde_json::to_string(f).map_err(|e| BackendError::Failed(e.to_string()))?;
        self.json_in(self.event, &format!("event {}", f.kind()), &j)
    }

    /// Reads a JSON answer, growing the buffer as `needed` says.
    fn read_json(
        &self,
        what: &str,
        mut call: impl FnMut(*mut c_char, usize, *mut usize) -> i32,
    ) -> Result<(i32, String), BackendError> {
        let mut buf = vec![0u8; 64 * 1024];
        for _ in 0..4 {
            let mut needed = 0usize;
            let rc = call(buf.as_mut_ptr().cast(), buf.len(), &mut needed);
            if rc == -4 && needed > buf.len() {
                buf.resize(needed, 0);
                continue;
            }
            if rc < 0 {
                return Err(BackendError::Failed(format!("{what}: harness error {rc}")));
            }
            let n = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            return Ok((rc, String::from_utf8_lossy(&buf[..n]).into_owned()));
        }
        Err(BackendError::Failed(format!("{what}: answer too large")))
    }

    /// Waits for the outcome; `t` is in virtual ms of the case's clock
    /// (`scale` virtual ms per real ms); forever is [`HANG_AFTER`] of real time.
    pub fn wait_statement(&self, t: Timeout, scale: u32) -> Result<Option<Outcome>, BackendError> {
        let ms = match t {
            Timeout::Infinite => HANG_AFTER.as_millis() as i64 * i64::from(scale.max(1)),
            Timeout::Ms(ms) => i64::try_from(ms).unwrap_or(i64::MAX),
        };
        let f = self.wait;
        // SAFETY: the buffer and `needed` are valid for the call.
        let (rc, text) = self.read_json("wait-statement", |b, l, n| unsafe { f(ms, b, l, n) })?;
        if rc == 1 {
            if t == Timeout::Infinite {
                return Err(BackendError::Ended("Hang".into()));
            }
            return Ok(None);
        }
        serde_json::from_str(&text).map_err(|e| BackendError::Failed(format!("outcome JSON: {e}")))
    }

    pub fn finish(&self) -> Result<Observation, BackendError> {
        let f = self.finish;
        // SAFETY: the buffer and `needed` are valid for the call.
        let (_, text) = self.read_json("finish", |b, l, n| unsafe { f(b, l, n) })?;
        serde_json::from_str(&text)
            .map_err(|e| BackendError::Failed(format!("observation JSON: {e}")))
    }
}

/// Server control for statements: the library's harness, or another
/// (the `sqlserver` backend sends statements over TDS). Set on a driver
/// with [`super::AbiDriver::set_statement_control`].
pub trait StatementControl: Send + Sync {
    /// Starts `stmt` (returns at once).
    fn start_statement(&self, stmt: &Statement) -> Result<(), BackendError>;
    /// The running statement's outcome, waiting at most `t` (virtual ms at
    /// `scale` virtual ms per real ms; forever is [`HANG_AFTER`] of real
    /// time, then the run has hung).
    fn wait_statement(&self, t: Timeout, scale: u32) -> Result<Option<Outcome>, BackendError>;
    /// The case's statements and their outcomes, once the client's set is
    /// closed (a statement that never answered is `Running`).
    fn finish(&self) -> Vec<(Statement, Outcome)>;
}

impl StatementControl for Harness {
    fn start_statement(&self, stmt: &Statement) -> Result<(), BackendError> {
        Harness::start_statement(self, stmt)
    }
    fn wait_statement(&self, t: Timeout, scale: u32) -> Result<Option<Outcome>, BackendError> {
        Harness::wait_statement(self, t, scale)
    }
    /// The harness reports its statements in its observation.
    fn finish(&self) -> Vec<(Statement, Outcome)> {
        Vec::new()
    }
}
