//! Harness mode: the conformance harness controls the in-process server case
//! by case through exported C functions (JSON in and out), instead of a plan
//! file.
//!
//! - [`vdisim_harness_reset`] starts a case: `{seed, profile, seed_backups,
//!   budget_ms, time_scale, faults}`. Under `time_scale` S (virtual ms per
//!   real ms; 0 or 1 = real time) the server's clock runs S times faster
//!   than real time and every set object made during the case waits T/S
//!   real ms for a timeout of T ms. Every set object made afterwards in this process runs
//!   under that profile and is connected to one server thread per case,
//!   hosting one [`ServerHalf`] that **waits for statements** (the plan file,
//!   `VDISIM_PLAN`, is ignored while a case is active). msdb history is
//!   seeded from `seed_backups`.
//! - [`vdisim_harness_start_statement`] hands the server a
//!   [`Statement`]; it opens the live set named by `devices[0]` (none: the
//!   statement fails as `server.open-missing-set` says).
//! - [`vdisim_harness_event`] applies a server-side [`Fault`] now.
//! - [`vdisim_harness_wait_statement`] waits for the statement's outcome.
//! - [`vdisim_harness_client_death`] makes the client process "die":
//!   every live set tells the server and stops answering.
//! - [`vdisim_harness_now_ms`] reads the case's scaled clock.
//! - [`vdisim_harness_finish`] ends the case and returns what was observed:
//!   every statement with its outcome, the server's per-device summaries,
//!   the clauses the client and server halves cited, the server trace hash.
//!
//! The harness is process-global: one case at a time per process.
//!
//! Return codes: [`OK`] (0), [`TIMED_OUT`] (1), [`ERR_JSON`] (-1),
//! [`ERR_NO_CASE`] (-2), [`ERR_UNSUPPORTED`] (-3), [`ERR_BUFFER`] (-4),
//! [`ERR_PANIC`] (-5).

use crate::inproc::Pool;
use crate::runtime::{self, Connection, Connector, NewSet, SetRuntime, Transport};
pub use crate::session::Observation;
use crate::session::{ClientEnd, ServerBuffers, Session, SessionMsg, SessionSetup, SetKey};
use serde::Deserialize;
use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use thiserror::Error;
use vdi_sim::fault::Fault;
use vdi_sim::msg::{ToClient, ToServer};
use vdi_sim::outcome::Outcome;
use vdi_sim::statement::Statement;
use vdi_spec::{Profile, VdConfig};

/// Success / final.
pub const OK: i32 = 0;
/// The wait timed out before the outcome was final.
pub const TIMED_OUT: i32 = 1;
/// The JSON argument is malformed (or a null pointer).
pub const ERR_JSON: i32 = -1;
/// No case is active (call `vdisim_harness_reset` first).
pub const ERR_NO_CASE: i32 = -2;
/// The event cannot be applied by the in-process server.
pub const ERR_UNSUPPORTED: i32 = -3;
/// The output buffer is too small (`needed` says how big it must be).
pub const ERR_BUFFER: i32 = -4;
/// The library caught a panic.
pub const ERR_PANIC: i32 = -5;

/// Buffer data bytes in harness mode: the largest MAXTRANSFERSIZE, since
/// the statement (and so its MAXTRANSFERSIZE) is not known when the set is
/// created. Pages are only touched up to each command's size.
const POOL_BYTES: u32 = 4 * 1024 * 1024;
/// Data-zone alignment in harness mode (at least the largest BLOCKSIZE).
const POOL_ALIGN: u32 = 65536;

/// The setup of one case.
pub type HarnessSetup = SessionSetup;

/// Why a harness call failed.
#[derive(Debug, Error)]
pub enum HarnessError {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("no harness case is active")]
    NoCase,
    #[error("unsupported by the in-process server: {0}")]
    Unsupported(String),
}

impl HarnessError {
    fn code(&self) -> i32 {
        match self {
            HarnessError::Json(_) => ERR_JSON,
            HarnessError::NoCase => ERR_NO_CASE,
            HarnessError::Unsupported(_) => ERR_UNSUPPORTED,
        }
    }
}

/// One active case.
pub struct Case {
    profile: Arc<Profile>,
    session: Arc<Session>,
    connector: Arc<HarnessConnector>,
}

impl Case {
    /// Virtual ms per real ms of the case (at least 1).
    pub fn time_scale(&self) -> u32 {
        self.session.time_scale()
    }

    /// The profile of the case.
    pub fn profile(&self) -> Arc<Profile> {
        self.profile.clone()
    }

    /// The connector every set object of the case uses.
    pub fn connector(&self) -> Arc<dyn Connector> {
        self.connector.clone()
    }
}

static CASE: Mutex<Option<Arc<Case>>> = Mutex::new(None);

fn case_slot() -> std::sync::MutexGuard<'static, Option<Arc<Case>>> {
    CASE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The active case, if the harness has started one.
pub fn active() -> Option<Arc<Case>> {
    case_slot().clone()
}

struct HarnessTransport {
    tx: Mutex<Sender<SessionMsg>>,
    key: SetKey,
}

impl Transport for HarnessTransport {
    fn send(&self, msg: ToServer) {
        let _ = self
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(SessionMsg::Client { key: self.key, msg });
    }
}

/// A set incarnation of this process, as the session reaches it: messages
/// go straight into its runtime, liveness is the process namespace, the
/// buffers are a heap [`Pool`].
struct InprocEnd {
    rt: Weak<SetRuntime>,
    incarnation: u32,
    name: String,
    pool: Arc<Pool>,
}

impl ClientEnd for InprocEnd {
    fn deliver(&self, msg: ToClient) {
        if let Some(rt) = self.rt.upgrade() {
            rt.deliver_from(self.incarnation, msg);
        }
    }
    fn live(&self) -> Option<VdConfig> {
        runtime::ProcessNamespace::lookup(&self.name)
    }
    fn buffers(&self) -> &dyn ServerBuffers {
        &*self.pool
    }
}

/// Connects each set incarnation to the case's session.
pub struct HarnessConnector {
    tx: Mutex<Sender<SessionMsg>>,
    /// Every set runtime connected during the case (for the client death).
    runtimes: Mutex<Vec<Weak<SetRuntime>>>,
}

impl Connector for HarnessConnector {
    fn connect(&self, runtime: Weak<SetRuntime>, set: &NewSet) -> Connection {
        let key = (runtime.as_ptr() as usize, set.incarnation);
        let pool = Arc::new(Pool::new(
            set.cfg.prefix_zone_size,
            POOL_BYTES,
            set.cfg.alignment.max(POOL_ALIGN),
        ));
        {
            let mut rts = self.runtimes.lock().unwrap_or_else(|e| e.into_inner());
            rts.retain(|w| w.strong_count() > 0);
            if !rts.iter().any(|w| w.ptr_eq(&runtime)) {
                rts.push(runtime.clone());
            }
        }
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _ = tx.send(SessionMsg::Connect {
            key,
            name: set.name.clone(),
            end: Arc::new(InprocEnd {
                rt: runtime,
                incarnation: set.incarnation,
                name: set.name.clone(),
                pool: pool.clone(),
            }),
        });
        Connection {
            transport: Arc::new(HarnessTransport {
                tx: Mutex::new(tx),
                key,
            }),
            buffers: Some(pool),
        }
    }
}

// ----- the Rust API --------------------------------------------------------------------

/// Starts a case (ending any previous one).
pub fn reset(setup: HarnessSetup) {
    #[cfg(unix)]
    if let Some(r) = crate::remote::forward::reset(&setup) {
        runtime::tally_reset(true);
        *LAST_OBSERVATION.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Err(e) = r {
            eprintln!("vdisim: harness reset on the server failed: {e}");
        }
        return;
    }
    let old = case_slot().take();
    if let Some(c) = old {
        c.session.stop();
    }
    runtime::tally_reset(true);
    *LAST_OBSERVATION.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let profile = Arc::new(setup.profile.clone());
    let session = Session::start(setup, false);
    let case = Arc::new(Case {
        profile,
        connector: Arc::new(HarnessConnector {
            tx: Mutex::new(session.sender()),
            runtimes: Mutex::new(Vec::new()),
        }),
        session,
    });
    *case_slot() = Some(case);
}

fn need() -> Result<Arc<Case>, HarnessError> {
    active().ok_or(HarnessError::NoCase)
}

/// Starts `stmt` on the case's server.
pub fn start_statement(stmt: Statement) -> Result<(), HarnessError> {
    #[cfg(unix)]
    if let Some(r) = crate::remote::forward::start_statement(&stmt) {
        return r.map_err(HarnessError::Unsupported);
    }
    need()?.session.start_statement(stmt);
    Ok(())
}

/// Applies a server-side event now.
pub fn event(f: Fault) -> Result<(), HarnessError> {
    #[cfg(unix)]
    if let Some(r) = crate::remote::forward::event(&f) {
        return r.map_err(HarnessError::Unsupported);
    }
    need()?.session.event(f).map_err(HarnessError::Unsupported)
}

/// Waits up to `timeout` (`None`: forever) for the latest statement's
/// outcome; `Ok(Some)` when final, `Ok(None)` on timeout (or no statement).
pub fn wait_statement(timeout: Option<Duration>) -> Result<Option<Outcome>, HarnessError> {
    #[cfg(unix)]
    if let Some(r) = crate::remote::forward::wait_statement(timeout) {
        return r.map_err(HarnessError::Unsupported);
    }
    Ok(need()?.session.wait_statement(timeout))
}

/// As [`wait_statement`], the timeout in virtual ms of the case's clock.
pub fn wait_statement_virtual(timeout_ms: Option<u64>) -> Result<Option<Outcome>, HarnessError> {
    #[cfg(unix)]
    if crate::remote::forward::server_path().is_some() {
        let scale = crate::remote::forward::time_scale();
        let t = timeout_ms.map(|ms| runtime::scaled_wait(ms, scale));
        return wait_statement(t);
    }
    let c = need()?;
    let t = timeout_ms.map(|ms| c.session.real(ms));
    Ok(c.session.wait_statement(t))
}

/// The client process dies (clause `abort.client-death`): every live set
/// of the case tells the server [`ToServer::Died`] (as the OS would when
/// the process exits), releases its name, and stops hearing from the
/// server, as `vdi_sim::world` applies a client death.
pub fn client_death() -> Result<(), HarnessError> {
    #[cfg(unix)]
    if let Some(r) = crate::remote::forward::client_death() {
        return r.map_err(HarnessError::Unsupported);
    }
    let c = need()?;
    let rts: Vec<Arc<SetRuntime>> = c
        .connector
        .runtimes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for rt in rts {
        rt.die();
    }
    Ok(())
}

/// Virtual milliseconds since the case started (its scaled clock).
pub fn now_ms() -> Result<u64, HarnessError> {
    #[cfg(unix)]
    if let Some(ms) = crate::remote::forward::now_ms() {
        return Ok(ms);
    }
    Ok(need()?.session.now_ms())
}

/// Ends the case: waits up to `settle` for the server to become idle, stops
/// it, and returns what was observed (with the clauses the client half
/// cited in this process). The case stays "active" (sets still connect, to
/// a stopped server) until the next reset, so objects destroyed afterwards
/// do not fall back to the plan file.
pub fn finish(settle: Duration) -> Result<Observation, HarnessError> {
    #[cfg(unix)]
    if let Some(r) = crate::remote::forward::finish(settle) {
        let mut obs = r.map_err(|e| {
            eprintln!("vdisim: finishing the case on the server failed: {e}");
            HarnessError::Unsupported(e)
        })?;
        for (k, v) in runtime::tally_take() {
            *obs.clauses.entry(k.to_string()).or_default() += v;
        }
        return Ok(obs);
    }
    let c = need()?;
    let mut obs = c.session.finish(settle);
    for (k, v) in runtime::tally_take() {
        *obs.clauses.entry(k.to_string()).or_default() += v;
    }
    Ok(obs)
}

// ----- the C ABI ---------------------------------------------------------------------

fn guard(f: impl FnOnce() -> i32) -> i32 {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(ERR_PANIC)
}

/// # Safety
/// `p` must be null or a NUL-terminated string.
unsafe fn json_arg<T: for<'de> Deserialize<'de>>(p: *const c_char) -> Result<T, HarnessError> {
    if p.is_null() {
        return Err(HarnessError::Json("null pointer".into()));
    }
    // SAFETY: non-null and NUL-terminated per the caller.
    let s = unsafe { CStr::from_ptr(p) };
    let s = s
        .to_str()
        .map_err(|e| HarnessError::Json(format!("not UTF-8: {e}")))?;
    serde_json::from_str(s).map_err(|e| HarnessError::Json(e.to_string()))
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

/// Starts a harness case: `setup_json` is a [`HarnessSetup`].
///
/// # Safety
/// `setup_json` must be null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_harness_reset(setup_json: *const c_char) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        match unsafe { json_arg::<HarnessSetup>(setup_json) } {
            Ok(s) => {
                reset(s);
                OK
            }
            Err(e) => e.code(),
        }
    })
}

/// Starts a statement (`statement_json`: a `vdi_sim::statement::Statement`).
///
/// # Safety
/// `statement_json` must be null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_harness_start_statement(statement_json: *const c_char) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        match unsafe { json_arg::<Statement>(statement_json) }.and_then(start_statement) {
            Ok(()) => OK,
            Err(e) => e.code(),
        }
    })
}

/// Applies a server-side event now (`fault_json`: a `vdi_sim::fault::Fault`).
/// Client-side faults answer [`ERR_UNSUPPORTED`].
///
/// # Safety
/// `fault_json` must be null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_harness_event(fault_json: *const c_char) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        match unsafe { json_arg::<Fault>(fault_json) }.and_then(event) {
            Ok(()) => OK,
            Err(e) => e.code(),
        }
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
    guard(|| {
        let t = u64::try_from(timeout_ms).ok();
        match wait_statement_virtual(t) {
            Ok(o) => {
                let text = serde_json::to_string(&o).unwrap_or_else(|_| "null".into());
                // SAFETY: forwarded from the caller.
                let w = unsafe { write_out(&text, buf, len, needed) };
                if w != OK {
                    w
                } else if o.is_some() {
                    OK
                } else {
                    TIMED_OUT
                }
            }
            Err(e) => e.code(),
        }
    })
}

/// Ends the case and writes the [`Observation`] JSON. Waits up to 5 s for
/// a running statement to end first. If the buffer is too small the case
/// is still ended; call again with a larger buffer to get the same JSON.
///
/// # Safety
/// `buf` must be null or hold `len` writable bytes; `needed` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_harness_finish(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> i32 {
    guard(|| {
        let text = {
            let mut last = LAST_OBSERVATION.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_none() {
                match finish(Duration::from_secs(5)) {
                    Ok(o) => *last = Some(serde_json::to_string(&o).unwrap_or_default()),
                    Err(e) => return e.code(),
                }
            }
            last.clone().unwrap_or_default()
        };
        // SAFETY: forwarded from the caller.
        let w = unsafe { write_out(&text, buf, len, needed) };
        if w == OK {
            *LAST_OBSERVATION.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        w
    })
}

/// The client process dies, as clause `abort.client-death` describes:
/// every live set of the case tells the server it died, releases its name
/// and stops answering (blocked calls stay blocked until the object is torn
/// down). Returns [`OK`] or [`ERR_NO_CASE`].
#[unsafe(no_mangle)]
pub extern "C" fn vdisim_harness_client_death() -> i32 {
    guard(|| match client_death() {
        Ok(()) => OK,
        Err(e) => e.code(),
    })
}

/// Virtual milliseconds since the case started, on its scaled clock
/// (negative: no case is active).
#[unsafe(no_mangle)]
pub extern "C" fn vdisim_harness_now_ms() -> i64 {
    catch_unwind(now_ms)
        .ok()
        .and_then(Result::ok)
        .map_or(-1, |ms| i64::try_from(ms).unwrap_or(i64::MAX))
}

/// The finished case's JSON, kept until it has been read whole.
static LAST_OBSERVATION: Mutex<Option<String>> = Mutex::new(None);
