//! Harness cases on a `vdisim serve` process: after `vdisim_use_server`
//! names a server's socket, every set object the process creates connects
//! to that server, and case control goes to it over control connections
//! instead of to an in-process server host. This is how the conformance
//! harness runs its catalog across a real process boundary with the same
//! calls it uses in process.

use super::connector::RemoteConnector;
use super::control::Control;
use super::wire::{Request, Response};
use crate::clock::scaled_wait;
use crate::contract::{CaseSetup, Observation};
use crate::harness::{CaseControl, HarnessError};
use crate::runtime::{Connection, Connector, NameInUse, NewSet, SetRuntime, Tally};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use vdi_model::fault::Fault;
use vdi_model::outcome::Outcome;
use vdi_model::statement::Statement;
use vdi_spec::Profile;

/// The case this process drives on the server.
struct ActiveCase {
    /// Its id on the server.
    id: Option<u64>,
    /// Its time scale.
    scale: u32,
    /// When it started (here).
    started: Instant,
    /// The set objects connected since, for a simulated client death.
    runtimes: Vec<Weak<SetRuntime>>,
    /// Its profile (the client half runs under it here).
    profile: Arc<Profile>,
    /// The connection that started it (the case lives as long as it).
    owner: Option<Control>,
    /// Idle control connections attached to it: requests may run
    /// concurrently (a statement wait on one thread, a server event on
    /// another), each on its own connection.
    pool: Vec<Control>,
}

/// Harness cases on the server at a socket path.
pub struct ForwardHost {
    path: PathBuf,
    case: Mutex<ActiveCase>,
    tally: Arc<Tally>,
}

fn failed(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Unsupported(e.to_string())
}

fn ok(r: Response) -> Result<(), HarnessError> {
    match r {
        Response::Ok => Ok(()),
        Response::Error { message } => Err(HarnessError::Unsupported(message)),
        other => Err(failed(format!("unexpected answer {other:?}"))),
    }
}

impl ForwardHost {
    /// Cases on the server listening at `path`.
    pub fn new(path: PathBuf) -> ForwardHost {
        ForwardHost {
            path,
            case: Mutex::new(ActiveCase {
                id: None,
                scale: 1,
                started: Instant::now(),
                runtimes: Vec::new(),
                profile: Arc::new(Profile::default()),
                owner: None,
                pool: Vec::new(),
            }),
            tally: Arc::new(Tally::default()),
        }
    }

    /// The server's socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, ActiveCase> {
        self.case.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The profile set objects run under (that of the case on the server).
    pub fn profile(&self) -> Arc<Profile> {
        self.lock().profile.clone()
    }

    /// The time scale set objects use (that of the case on the server).
    pub fn time_scale(&self) -> u32 {
        self.lock().scale
    }

    /// Where set objects count the clauses they cite.
    pub fn tally(&self) -> Arc<Tally> {
        self.tally.clone()
    }

    /// The connector for set objects: each connects to the server and is
    /// remembered for a simulated client death.
    pub fn connector(self: &Arc<Self>) -> Arc<dyn Connector> {
        Arc::new(ForwardConnector(self.clone()))
    }

    /// Runs `req` on a connection attached to the current case.
    fn request(&self, req: Request) -> Result<Response, HarnessError> {
        let (case, pooled) = {
            let mut g = self.lock();
            let id = g.id.ok_or(HarnessError::NoCase)?;
            (id, g.pool.pop())
        };
        let mut control = match pooled {
            Some(c) => c,
            None => {
                let mut c = Control::connect(&self.path, "vdisim harness")
                    .map_err(|e| failed(format!("no server at {}: {e}", self.path.display())))?;
                match c.request(Request::Attach { case }).map_err(failed)? {
                    Response::Ok => {}
                    other => return Err(failed(format!("attach refused: {other:?}"))),
                }
                c
            }
        };
        let out = control.request(req).map_err(failed)?;
        let mut g = self.lock();
        if g.id == Some(case) {
            g.pool.push(control);
        }
        Ok(out)
    }
}

/// Connects set objects to the named server and remembers them.
struct ForwardConnector(Arc<ForwardHost>);

impl Connector for ForwardConnector {
    fn connect(&self, runtime: Weak<SetRuntime>, set: &NewSet) -> Connection {
        self.connect_named(runtime, set)
            .unwrap_or_else(|_| Connection::none())
    }
    fn connect_named(
        &self,
        runtime: Weak<SetRuntime>,
        set: &NewSet,
    ) -> Result<Connection, NameInUse> {
        {
            let mut g = self.0.lock();
            g.runtimes.retain(|w| w.strong_count() > 0);
            g.runtimes.push(runtime.clone());
        }
        RemoteConnector::at(self.0.path.clone()).connect_named(runtime, set)
    }
    fn connect_secondary(
        &self,
        runtime: Weak<SetRuntime>,
        name: &str,
        prepare: &mut dyn FnMut(vdi_spec::VdConfig) -> Option<u32>,
    ) -> Result<Connection, vdi_spec::Hresult> {
        {
            let mut g = self.0.lock();
            g.runtimes.retain(|w| w.strong_count() > 0);
            g.runtimes.push(runtime.clone());
        }
        RemoteConnector::at(self.0.path.clone()).connect_secondary(runtime, name, prepare)
    }
}

impl CaseControl for ForwardHost {
    /// `reset` on the server, on a new owner connection (ending the
    /// previous case).
    fn reset(&self, setup: CaseSetup) -> Result<(), HarnessError> {
        {
            let mut g = self.lock();
            g.scale = setup.scale();
            g.started = Instant::now();
            g.runtimes.clear();
            g.profile = Arc::new(setup.profile.clone());
            g.id = None;
            g.owner = None;
            g.pool.clear();
        }
        self.tally.take();
        let mut c = Control::connect(&self.path, "vdisim harness")
            .map_err(|e| failed(format!("no server at {}: {e}", self.path.display())))?;
        let id = match c.request(Request::Reset { setup }).map_err(failed)? {
            Response::Case { id } => id,
            Response::Error { message } => return Err(HarnessError::Unsupported(message)),
            other => return Err(failed(format!("unexpected answer {other:?}"))),
        };
        let mut g = self.lock();
        g.id = Some(id);
        g.owner = Some(c);
        Ok(())
    }

    fn start_statement(&self, stmt: Statement) -> Result<(), HarnessError> {
        ok(self.request(Request::Statement { stmt })?)
    }

    fn event(&self, fault: Fault) -> Result<(), HarnessError> {
        ok(self.request(Request::Event { fault })?)
    }

    fn wait_statement(&self, timeout_ms: Option<u64>) -> Result<Option<Outcome>, HarnessError> {
        let scale = self.time_scale();
        let real = timeout_ms
            .map(|ms| u64::try_from(scaled_wait(ms, scale).as_millis()).unwrap_or(u64::MAX));
        match self.request(Request::Wait { timeout_ms: real })? {
            Response::Outcome { outcome } => Ok(outcome),
            Response::Error { message } => Err(HarnessError::Unsupported(message)),
            other => Err(failed(format!("unexpected answer {other:?}"))),
        }
    }

    /// The client process "dies" (clause `abort.client-death`): every set
    /// object connected since the case started tells the server it died
    /// and stops hearing from it.
    fn client_death(&self) -> Result<(), HarnessError> {
        let rts: Vec<Arc<SetRuntime>> = self
            .lock()
            .runtimes
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for rt in rts {
            rt.die();
        }
        Ok(())
    }

    /// Virtual ms since the case started on the server (its scaled clock,
    /// as seen from here).
    fn now_ms(&self) -> Result<u64, HarnessError> {
        let g = self.lock();
        let ms = u64::try_from(g.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(ms.saturating_mul(u64::from(g.scale.max(1))))
    }

    fn finish(&self, settle: Duration) -> Result<Observation, HarnessError> {
        let ms = u64::try_from(settle.as_millis()).unwrap_or(u64::MAX);
        let mut obs = match self.request(Request::Finish { settle_ms: ms })? {
            Response::Observation { obs } => *obs,
            Response::Error { message } => return Err(HarnessError::Unsupported(message)),
            other => return Err(failed(format!("unexpected answer {other:?}"))),
        };
        for (k, v) in self.tally.take() {
            *obs.clauses.entry(k.to_string()).or_default() += v;
        }
        Ok(obs)
    }
}
