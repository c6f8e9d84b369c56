//! The harness face: case control (`vdi_host::harness`) exported as C
//! functions, JSON in and out, for the conformance harness's ABI backends.
//!
//! - [`vdisim_harness_reset`] starts a case (a `vdi_host::contract::CaseSetup`):
//!   every set object made afterwards runs under its profile and scaled
//!   clock and is connected to the case's server, which **waits for
//!   statements**.
//! - [`vdisim_harness_start_statement`] hands the server a statement; it
//!   opens the live set named by `devices[0]` (none: the statement fails as
//!   `server.open-missing-set` says).
//! - [`vdisim_harness_event`] applies a server-side fault now.
//! - [`vdisim_harness_wait_statement`] waits for the statement's outcome.
//! - [`vdisim_harness_client_death`] makes the client process "die".
//! - [`vdisim_harness_now_ms`] reads the case's scaled clock.
//! - [`vdisim_harness_finish`] ends the case and returns the
//!   `vdi_host::contract::Observation`.
//! - [`vdisim_use_server`] sends cases (and every set) to a `vdisim serve`
//!   instead of an in-process server.
//!
//! Which server cases run on is the process's mode (`vdi_host::mode`): the
//! first of `vdisim_harness_reset` (in process) or `vdisim_use_server` (a
//! server process) decides it. One case at a time per process.
//!
//! Return codes: [`OK`] (0), [`TIMED_OUT`] (1), [`ERR_JSON`] (-1),
//! [`ERR_NO_CASE`] (-2), [`ERR_UNSUPPORTED`] (-3), [`ERR_BUFFER`] (-4),
//! [`ERR_PANIC`] (-5).

use serde::Deserialize;
use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::time::Duration;
use vdi_host::contract::CaseSetup;
use vdi_host::harness::{CaseControl, HarnessError};
use vdi_model::fault::Fault;
use vdi_model::statement::Statement;

/// Success / final.
pub const OK: i32 = 0;
/// The wait timed out before the outcome was final.
pub const TIMED_OUT: i32 = 1;
/// The JSON argument is malformed (or a null pointer).
pub const ERR_JSON: i32 = -1;
/// No case is active (call `vdisim_harness_reset` first).
pub const ERR_NO_CASE: i32 = -2;
/// The request cannot be served (a client-side fault, a server that
/// refused, a process that serves another kind of server).
pub const ERR_UNSUPPORTED: i32 = -3;
/// The output buffer is too small (`needed` says how big it must be).
pub const ERR_BUFFER: i32 = -4;
/// The library caught a panic.
pub const ERR_PANIC: i32 = -5;

/// Why a harness call failed, as a return code.
enum Failure {
    Json(String),
    Harness(HarnessError),
    Mode(vdi_host::mode::ModeError),
}

impl Failure {
    fn code(&self) -> i32 {
        match self {
            Failure::Json(_) => ERR_JSON,
            Failure::Harness(HarnessError::NoCase) => ERR_NO_CASE,
            Failure::Harness(HarnessError::Unsupported(_)) | Failure::Mode(_) => ERR_UNSUPPORTED,
        }
    }

    /// The code, after saying on stderr what went wrong where a code alone
    /// would not tell.
    fn report(self) -> i32 {
        match &self {
            Failure::Mode(e) => eprintln!("vdisim: {e}"),
            Failure::Json(m) => eprintln!("vdisim: harness: malformed argument: {m}"),
            Failure::Harness(HarnessError::Unsupported(m)) => eprintln!("vdisim: harness: {m}"),
            Failure::Harness(HarnessError::NoCase) => {}
        }
        self.code()
    }
}

impl From<HarnessError> for Failure {
    fn from(e: HarnessError) -> Failure {
        Failure::Harness(e)
    }
}

impl From<vdi_host::mode::ModeError> for Failure {
    fn from(e: vdi_host::mode::ModeError) -> Failure {
        Failure::Mode(e)
    }
}

fn cases() -> Result<&'static dyn CaseControl, Failure> {
    Ok(vdi_host::mode::cases()?)
}

fn guard(f: impl FnOnce() -> i32) -> i32 {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(ERR_PANIC)
}

/// # Safety
/// `p` must be null or a NUL-terminated string.
unsafe fn json_arg<T: for<'de> Deserialize<'de>>(p: *const c_char) -> Result<T, Failure> {
    if p.is_null() {
        return Err(Failure::Json("null pointer".into()));
    }
    // SAFETY: non-null and NUL-terminated per the caller.
    let s = unsafe { CStr::from_ptr(p) };
    let s = s
        .to_str()
        .map_err(|e| Failure::Json(format!("not UTF-8: {e}")))?;
    serde_json::from_str(s).map_err(|e| Failure::Json(e.to_string()))
}

/// Writes `text` NUL-terminated into `buf` (`len` bytes) and its size with
/// the NUL into `needed`; `Err(ERR_BUFFER)` if it does not fit.
///
/// # Safety
/// `buf` must be null or hold `len` writable bytes; `needed` null or writable.
unsafe fn write_out(text: &str, buf: *mut c_char, len: usize, needed: *mut usize) -> i32 {
    let bytes = text.as_bytes();
    if !needed.is_null() {
        // SAFETY: writable per the caller.
        unsafe { needed.write_unaligned(bytes.len() + 1) };
    }
    if buf.is_null() || len < bytes.len() + 1 {
        return ERR_BUFFER;
    }
    // SAFETY: `buf` holds `len >= bytes.len() + 1` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
        buf.add(bytes.len()).write(0);
    }
    OK
}

/// Runs a harness call: its code, or the code of its failure (said on
/// stderr where the code alone would not tell).
fn call(f: impl FnOnce() -> Result<i32, Failure>) -> i32 {
    guard(|| f().unwrap_or_else(Failure::report))
}

/// Starts a harness case: `setup_json` is a `vdi_host::contract::CaseSetup`.
///
/// # Safety
/// `setup_json` must be null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_harness_reset(setup_json: *const c_char) -> i32 {
    call(|| {
        // SAFETY: forwarded from the caller.
        let setup = unsafe { json_arg::<CaseSetup>(setup_json) }?;
        *LAST_OBSERVATION.lock().unwrap_or_else(|e| e.into_inner()) = None;
        cases()?.reset(setup)?;
        Ok(OK)
    })
}

/// Starts a statement (`statement_json`: a `vdi_model::statement::Statement`).
///
/// # Safety
/// `statement_json` must be null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_harness_start_statement(statement_json: *const c_char) -> i32 {
    call(|| {
        // SAFETY: forwarded from the caller.
        let stmt = unsafe { json_arg::<Statement>(statement_json) }?;
        cases()?.start_statement(stmt)?;
        Ok(OK)
    })
}

/// Applies a server-side event now (`fault_json`: a `vdi_model::fault::Fault`).
/// Client-side faults answer [`ERR_UNSUPPORTED`].
///
/// # Safety
/// `fault_json` must be null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_harness_event(fault_json: *const c_char) -> i32 {
    call(|| {
        // SAFETY: forwarded from the caller.
        let fault = unsafe { json_arg::<Fault>(fault_json) }?;
        cases()?.event(fault)?;
        Ok(OK)
    })
}

/// Waits up to `timeout_ms` (virtual ms of the case's scaled clock;
/// negative: forever) for the statement's outcome; writes its JSON.
/// 0 = final, 1 = timed out (the JSON is then `null`).
///
/// # Safety
/// `buf` must be null or hold `len` writable bytes; `needed` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_harness_wait_statement(
    timeout_ms: i64,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> i32 {
    call(|| {
        let o = cases()?.wait_statement(u64::try_from(timeout_ms).ok())?;
        let text = serde_json::to_string(&o).unwrap_or_else(|_| "null".into());
        // SAFETY: forwarded from the caller.
        let w = unsafe { write_out(&text, buf, len, needed) };
        Ok(if w != OK {
            w
        } else if o.is_some() {
            OK
        } else {
            TIMED_OUT
        })
    })
}

/// Ends the case and writes the `vdi_host::contract::Observation` JSON.
/// Waits up to 5 s for a running statement to end first. If the buffer is
/// too small the case is still ended; call again with a larger buffer to
/// get the same JSON.
///
/// # Safety
/// `buf` must be null or hold `len` writable bytes; `needed` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_harness_finish(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> i32 {
    call(|| {
        let text = {
            let mut last = LAST_OBSERVATION.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_none() {
                let o = cases()?.finish(Duration::from_secs(5))?;
                *last = Some(serde_json::to_string(&o).unwrap_or_default());
            }
            last.clone().unwrap_or_default()
        };
        // SAFETY: forwarded from the caller.
        let w = unsafe { write_out(&text, buf, len, needed) };
        if w == OK {
            *LAST_OBSERVATION.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        Ok(w)
    })
}

/// The client process dies, as clause `abort.client-death` describes:
/// every live set of the case tells the server it died, releases its name
/// and stops answering (blocked calls stay blocked until the object is torn
/// down). Returns [`OK`] or [`ERR_NO_CASE`].
#[unsafe(no_mangle)]
pub extern "C" fn vdisim_harness_client_death() -> i32 {
    call(|| {
        cases()?.client_death()?;
        Ok(OK)
    })
}

/// Virtual milliseconds since the case started, on its scaled clock
/// (negative: no case is active).
#[unsafe(no_mangle)]
pub extern "C" fn vdisim_harness_now_ms() -> i64 {
    catch_unwind(|| cases().ok()?.now_ms().ok())
        .ok()
        .flatten()
        .map_or(-1, |ms| i64::try_from(ms).unwrap_or(i64::MAX))
}

/// Sends every set object and every harness case of this process to the
/// `vdisim serve` listening at `path` (instead of an in-process server).
/// Returns [`OK`]; [`ERR_UNSUPPORTED`] when this process already serves
/// another kind of server (in-process cases, a plan, another socket);
/// [`ERR_JSON`] when `path` is null or empty.
///
/// # Safety
/// `path` must be null or a NUL-terminated string.
#[cfg(unix)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_use_server(path: *const c_char) -> i32 {
    call(|| {
        if path.is_null() {
            return Err(Failure::Json("null socket path".into()));
        }
        // SAFETY: non-null and NUL-terminated per the caller.
        let s = unsafe { CStr::from_ptr(path) };
        let p = std::path::PathBuf::from(s.to_string_lossy().into_owned());
        if p.as_os_str().is_empty() {
            return Err(Failure::Json("empty socket path".into()));
        }
        vdi_host::mode::use_server(p)?;
        Ok(OK)
    })
}

/// The clauses the client half of this process's sets connected to a
/// `vdisim serve` (no harness case: `VDISIM_SERVER`) has cited since the
/// last read, as JSON (`{"clause.id": count, ...}`), for a harness whose
/// statements go to the server over TDS. Returns [`OK`] and clears the
/// counts once read whole; [`ERR_BUFFER`] (with `needed` set) when `buf`
/// is too small, the counts kept for the next read.
///
/// # Safety
/// `buf` must be null or hold `len` writable bytes; `needed` null or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_client_tally(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> i32 {
    guard(|| {
        let mut last = LAST_TALLY.lock().unwrap_or_else(|e| e.into_inner());
        let text = match last.take() {
            Some(t) => t,
            None => {
                let counts = vdi_host::mode::serve_tally().take();
                serde_json::to_string(&counts).unwrap_or_default()
            }
        };
        // SAFETY: forwarded from the caller.
        let w = unsafe { write_out(&text, buf, len, needed) };
        if w != OK {
            *last = Some(text);
        }
        w
    })
}

/// Client tally JSON not yet read whole.
static LAST_TALLY: Mutex<Option<String>> = Mutex::new(None);

/// The finished case's JSON, kept until it has been read whole.
static LAST_OBSERVATION: Mutex<Option<String>> = Mutex::new(None);
