//! Harness control forwarded to a `vdisim serve` process.
//!
//! After [`vdisim_use_server`] names a server's socket, every set object the
//! process creates connects to that server (not to an in-process session),
//! and the `vdisim_harness_*` functions drive a case on the server over a
//! control connection instead of an in-process session. This is how the
//! conformance harness runs its catalog across a real process boundary with
//! the same calls it uses in process.

use super::client::RemoteConnector;
use super::control::Control;
use super::wire::{Request, Response};
use crate::runtime::{Connection, Connector, NewSet, SetRuntime};
use crate::session::{Observation, SessionSetup};
use std::ffi::{CStr, c_char};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::{Arc, Weak};
use std::time::Duration;
use vdi_sim::fault::Fault;
use vdi_sim::outcome::Outcome;
use vdi_sim::statement::Statement;

struct Remote {
    path: PathBuf,
    /// The case this process drives on the server.
    case: Option<u64>,
    /// The time scale of that case.
    scale: u32,
    /// When that case started (here).
    started: std::time::Instant,
    /// The set objects connected since, for a simulated client death.
    runtimes: Vec<Weak<SetRuntime>>,
    /// The profile of that case (the client half runs under it here).
    profile: Arc<vdi_spec::Profile>,
}

static REMOTE: Mutex<Option<Remote>> = Mutex::new(None);

/// The connection that started the case (the case lives as long as it).
static OWNER: Mutex<Option<Control>> = Mutex::new(None);

/// Idle control connections attached to a case: requests may run
/// concurrently (a statement wait on one thread, a server event on
/// another), each on its own connection.
static POOL: Mutex<Vec<(u64, Control)>> = Mutex::new(Vec::new());

fn slot() -> std::sync::MutexGuard<'static, Option<Remote>> {
    REMOTE.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(m: &'static Mutex<T>) -> std::sync::MutexGuard<'static, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The server sets connect to, when one was named.
pub fn server_path() -> Option<PathBuf> {
    slot().as_ref().map(|r| r.path.clone())
}

/// Names the server (`None`: back to in-process hosting).
pub fn use_server(path: Option<PathBuf>) {
    let mut g = slot();
    if g.as_ref().map(|r| &r.path) == path.as_ref() {
        // Named again (another backend object of the same harness): the
        // case in progress stays.
        return;
    }
    *g = path.map(|path| Remote {
        path,
        case: None,
        scale: 1,
        started: std::time::Instant::now(),
        runtimes: Vec::new(),
        profile: Arc::new(vdi_spec::Profile::default()),
    });
    drop(g);
    lock(&POOL).clear();
    *lock(&OWNER) = None;
}

/// Runs `req` on a connection attached to the current case; `None` when
/// no server is named.
fn request(req: Request) -> Option<Result<Response, String>> {
    let (path, case) = {
        let g = slot();
        let r = g.as_ref()?;
        (r.path.clone(), r.case)
    };
    let Some(case) = case else {
        return Some(Err("no case on the server: reset first".into()));
    };
    let pooled = {
        let mut p = lock(&POOL);
        p.iter()
            .position(|(c, _)| *c == case)
            .map(|i| p.swap_remove(i).1)
    };
    let mut control = match pooled {
        Some(c) => c,
        None => {
            let mut c = match Control::connect(&path, "vdisim harness") {
                Ok(c) => c,
                Err(e) => return Some(Err(format!("no server at {}: {e}", path.display()))),
            };
            match c.request(Request::Attach { case }) {
                Ok(Response::Ok) => {}
                Ok(other) => return Some(Err(format!("attach refused: {other:?}"))),
                Err(e) => return Some(Err(e.to_string())),
            }
            c
        }
    };
    let out = control.request(req).map_err(|e| e.to_string());
    if out.is_ok() {
        lock(&POOL).push((case, control));
    }
    Some(out)
}

/// Connects set objects to the named server and remembers them.
pub struct ForwardConnector(PathBuf);

impl Connector for ForwardConnector {
    fn connect(&self, runtime: Weak<SetRuntime>, set: &NewSet) -> Connection {
        if let Some(r) = slot().as_mut() {
            r.runtimes.retain(|w| w.strong_count() > 0);
            r.runtimes.push(runtime.clone());
        }
        RemoteConnector::at(self.0.clone()).connect(runtime, set)
    }
}

/// The connector for set objects while a server is named.
pub fn connector() -> Option<Arc<dyn Connector>> {
    let p = server_path()?;
    Some(Arc::new(ForwardConnector(p)))
}

/// The client process "dies" (clause `abort.client-death`): every set
/// object connected since the case started tells the server it died and
/// stops hearing from it.
pub fn client_death() -> Option<Result<(), String>> {
    let rts: Vec<Arc<SetRuntime>> = slot()
        .as_ref()?
        .runtimes
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for rt in rts {
        rt.die();
    }
    Some(Ok(()))
}

/// Virtual ms since the case started on the server (its scaled clock, as
/// seen from here).
pub fn now_ms() -> Option<u64> {
    let g = slot();
    let r = g.as_ref()?;
    let ms = u64::try_from(r.started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Some(ms.saturating_mul(u64::from(r.scale.max(1))))
}

fn ok(r: Result<Response, String>) -> Result<(), String> {
    match r? {
        Response::Ok => Ok(()),
        Response::Error { message } => Err(message),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// The profile set objects run under (that of the case on the server).
pub fn profile() -> Option<Arc<vdi_spec::Profile>> {
    slot().as_ref().map(|r| r.profile.clone())
}

/// The time scale set objects use (that of the case on the server).
pub fn time_scale() -> u32 {
    slot().as_ref().map_or(1, |r| r.scale)
}

/// `reset` on the server, on a new owner connection (ending the previous
/// case); `None` when no server is named.
pub fn reset(setup: &SessionSetup) -> Option<Result<(), String>> {
    let path = {
        let mut g = slot();
        let r = g.as_mut()?;
        r.scale = setup.scale();
        r.started = std::time::Instant::now();
        r.runtimes.clear();
        r.profile = Arc::new(setup.profile.clone());
        r.case = None;
        r.path.clone()
    };
    lock(&POOL).clear();
    *lock(&OWNER) = None;
    let mut c = match Control::connect(&path, "vdisim harness") {
        Ok(c) => c,
        Err(e) => return Some(Err(format!("no server at {}: {e}", path.display()))),
    };
    let id = match c.request(Request::Reset {
        setup: setup.clone(),
    }) {
        Ok(Response::Case { id }) => id,
        Ok(Response::Error { message }) => return Some(Err(message)),
        Ok(other) => return Some(Err(format!("unexpected answer {other:?}"))),
        Err(e) => return Some(Err(e.to_string())),
    };
    if let Some(r) = slot().as_mut() {
        r.case = Some(id);
    }
    *lock(&OWNER) = Some(c);
    Some(Ok(()))
}

/// `start_statement` on the server.
pub fn start_statement(stmt: &Statement) -> Option<Result<(), String>> {
    request(Request::Statement { stmt: stmt.clone() }).map(ok)
}

/// `event` on the server.
pub fn event(f: &Fault) -> Option<Result<(), String>> {
    request(Request::Event { fault: f.clone() }).map(ok)
}

/// `wait_statement` on the server.
pub fn wait_statement(timeout: Option<Duration>) -> Option<Result<Option<Outcome>, String>> {
    let ms = timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
    request(Request::Wait { timeout_ms: ms }).map(|r| match r? {
        Response::Outcome { outcome } => Ok(outcome),
        Response::Error { message } => Err(message),
        other => Err(format!("unexpected answer {other:?}")),
    })
}

/// `finish` on the server.
pub fn finish(settle: Duration) -> Option<Result<Observation, String>> {
    let ms = u64::try_from(settle.as_millis()).unwrap_or(u64::MAX);
    request(Request::Finish { settle_ms: ms }).map(|r| match r? {
        Response::Observation { obs } => Ok(*obs),
        Response::Error { message } => Err(message),
        other => Err(format!("unexpected answer {other:?}")),
    })
}

/// Names the `vdisim serve` socket every set object created afterwards
/// connects to, and which the `vdisim_harness_*` functions then drive;
/// null or empty goes back to in-process hosting. Returns 0.
///
/// # Safety
/// `path` must be null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vdisim_use_server(path: *const c_char) -> i32 {
    let p = if path.is_null() {
        None
    } else {
        // SAFETY: non-null and NUL-terminated per the caller.
        let s = unsafe { CStr::from_ptr(path) };
        Some(PathBuf::from(s.to_string_lossy().into_owned())).filter(|p| !p.as_os_str().is_empty())
    };
    use_server(p);
    0
}
