//! Which server this process talks to, decided once.
//!
//! A library loaded into a process serves one kind of server for the
//! process's whole life, chosen by whichever comes first:
//!
//! - a harness case is started (`vdisim_harness_reset`): harness cases in
//!   process ([`Mode::Cases`]), one server host per case;
//! - a server is named for harness cases (`vdisim_use_server`): harness
//!   cases on that `vdisim serve` ([`Mode::Forward`]);
//! - a set object is made: the environment decides — `VDISIM_PLAN` names a
//!   plan file: the in-process plan server ([`Mode::Plan`]); otherwise each
//!   set connects to the `vdisim serve` that `VDISIM_SERVER` (or the
//!   per-user default) names ([`Mode::Serve`]); where neither can be had,
//!   no server ([`Mode::None`]: GetConfiguration times out, as with real VDI
//!   and no SQL Server, and one line on stderr says why).
//!
//! Everything that depends on the server — the connector a set incarnation
//! is connected through, the profile and time scale set objects run under,
//! where their cited clauses are counted, where case control goes — asks
//! the mode; nothing else holds process-wide server state. A later request
//! for another kind of server is refused with [`ModeError`].
//!
//! The client environment ([`ClientEnv`]) is read once too, at the first
//! set object: `VDISIM_CLIENT_LOG` (the call log, in every mode), and, for
//! sets connected to `vdisim serve`, `VDISIM_TIME_SCALE` and
//! `VDISIM_PROFILE` (a plan file and harness cases bring their own).

use crate::calllog::ClientEnv;
use crate::case::CaseHost;
use crate::harness::CaseControl;
use crate::plan::{self, Board, PlanConnector, PlanFile};
#[cfg(any(unix, windows))]
use crate::remote::connector::RemoteConnector;
#[cfg(unix)]
use crate::remote::forward::ForwardHost;
use crate::runtime::{Connection, Connector, NameInUse, NewSet, RuntimeConfig, SetRuntime};
#[cfg(unix)]
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, Weak};
use thiserror::Error;
use vdi_spec::Profile;

/// The server of this process.
pub enum Mode {
    /// `VDISIM_PLAN`: each set runs a planned statement in process.
    Plan(PlanConnector),
    /// No plan: each set connects to a `vdisim serve` process.
    #[cfg(any(unix, windows))]
    Serve(RemoteConnector),
    /// Harness cases in process.
    Cases(CaseHost),
    /// Harness cases on a `vdisim serve` process.
    #[cfg(unix)]
    Forward(Arc<ForwardHost>),
    /// No server: every set waits for one that never comes.
    None(NoServerNotice),
}

/// A request for a kind of server this process has not chosen.
#[derive(Debug, Error)]
#[error(
    "this process already serves {chosen}, not {wanted}: a library serves one kind of server per process (start another process, or load another copy of the library)"
)]
pub struct ModeError {
    /// What the process chose.
    pub chosen: &'static str,
    /// What was asked for.
    pub wanted: String,
}

static MODE: OnceLock<Mode> = OnceLock::new();
static CLIENT_ENV: OnceLock<ClientEnv> = OnceLock::new();
static SERVE_TALLY: OnceLock<Arc<crate::runtime::Tally>> = OnceLock::new();

/// The clauses the client half of sets connected to a `vdisim serve`
/// (no harness case) has cited since the last take: what a harness reads
/// when the statements go to the server by another path (over TDS).
pub fn serve_tally() -> Arc<crate::runtime::Tally> {
    SERVE_TALLY.get_or_init(Arc::default).clone()
}

/// The process's mode, decided from the environment if nothing decided it
/// before.
pub fn current() -> &'static Mode {
    MODE.get_or_init(from_environment)
}

/// Case control: harness cases in process, unless the process already
/// chose a server for its cases (then those).
pub fn cases() -> Result<&'static dyn CaseControl, ModeError> {
    match MODE.get_or_init(|| Mode::Cases(CaseHost::default())) {
        Mode::Cases(c) => Ok(c),
        #[cfg(unix)]
        Mode::Forward(f) => Ok(&**f),
        other => Err(ModeError {
            chosen: other.name(),
            wanted: "harness cases".into(),
        }),
    }
}

/// Harness cases on the `vdisim serve` at `path`. Naming the same server
/// again is harmless (the case in progress stays).
#[cfg(unix)]
pub fn use_server(path: PathBuf) -> Result<(), ModeError> {
    let m = MODE.get_or_init(|| Mode::Forward(Arc::new(ForwardHost::new(path.clone()))));
    match m {
        Mode::Forward(f) if f.path() == path => Ok(()),
        other => Err(ModeError {
            chosen: other.name(),
            wanted: format!("harness cases on the server at {}", path.display()),
        }),
    }
}

impl Mode {
    /// What the mode is, in words.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Plan(_) => "the in-process plan server (VDISIM_PLAN)",
            #[cfg(any(unix, windows))]
            Mode::Serve(_) => "sets connected to vdisim serve",
            Mode::Cases(_) => "harness cases in process",
            #[cfg(unix)]
            Mode::Forward(_) => "harness cases on a vdisim serve",
            Mode::None(_) => "no server",
        }
    }

    /// Whether sets connect to a `vdisim serve` process.
    fn is_serve(&self) -> bool {
        #[cfg(any(unix, windows))]
        return matches!(self, Mode::Serve(_));
        #[cfg(not(any(unix, windows)))]
        return false;
    }

    /// The client environment, read (and its unusable values reported on
    /// stderr) at the first call.
    pub fn client_env(&'static self) -> &'static ClientEnv {
        CLIENT_ENV.get_or_init(|| ClientEnv::from_process(self.is_serve(), self.name()))
    }

    /// How a new set object is connected, timed and logged.
    pub fn runtime_config(&'static self) -> RuntimeConfig {
        let env = self.client_env();
        let (profile, connector, scale, tally) = match self {
            Mode::Plan(p) => (p.profile(), connector_of(p), 1, None),
            #[cfg(any(unix, windows))]
            Mode::Serve(r) => (
                env.profile
                    .clone()
                    .unwrap_or_else(|| Arc::new(Profile::default())),
                connector_of(r),
                env.scale,
                Some(serve_tally()),
            ),
            Mode::Cases(c) => (
                c.profile().unwrap_or_default(),
                c.connector()
                    .unwrap_or_else(|| Arc::new(crate::runtime::NoServer)),
                c.time_scale(),
                Some(c.tally()),
            ),
            #[cfg(unix)]
            Mode::Forward(f) => (f.profile(), f.connector(), f.time_scale(), Some(f.tally())),
            Mode::None(n) => (Arc::new(Profile::default()), connector_of(n), 1, None),
        };
        let log = env.log(scale, self.name(), &profile.name);
        RuntimeConfig {
            profile,
            connector,
            scale,
            tally,
            log,
        }
    }

    /// Where the plan server publishes outcomes (`None` in other modes).
    pub fn board(&self) -> Option<Arc<Board>> {
        match self {
            Mode::Plan(p) => Some(p.board()),
            _ => None,
        }
    }
}

/// A connector that forwards to a connector owned by the mode (which lives
/// as long as the process).
struct Static(&'static dyn Connector);

impl Connector for Static {
    fn connect(&self, runtime: Weak<SetRuntime>, set: &NewSet) -> Connection {
        self.0.connect(runtime, set)
    }
    fn connect_named(
        &self,
        runtime: Weak<SetRuntime>,
        set: &NewSet,
    ) -> Result<Connection, NameInUse> {
        self.0.connect_named(runtime, set)
    }
    fn connect_secondary(
        &self,
        runtime: Weak<SetRuntime>,
        name: &str,
        prepare: &mut dyn FnMut(vdi_spec::VdConfig) -> Option<u32>,
    ) -> Result<Connection, vdi_spec::Hresult> {
        self.0.connect_secondary(runtime, name, prepare)
    }
}

fn connector_of(c: &'static dyn Connector) -> Arc<dyn Connector> {
    Arc::new(Static(c))
}

/// Tells, once per process, why there is no server and how to get one.
pub struct NoServerNotice {
    reason: String,
    said: std::sync::Once,
}

impl NoServerNotice {
    fn new(reason: String) -> NoServerNotice {
        NoServerNotice {
            reason,
            said: std::sync::Once::new(),
        }
    }
}

impl Connector for NoServerNotice {
    fn connect(&self, _rt: Weak<SetRuntime>, _set: &NewSet) -> Connection {
        self.said.call_once(|| eprintln!("{}", self.reason));
        Connection::none()
    }
}

/// The mode the environment asks for (`VDISIM_PLAN`, `VDISIM_SEED`,
/// `VDISIM_SERVER`).
fn from_environment() -> Mode {
    let plan = std::env::var(plan::ENV_PLAN).ok().filter(|s| !s.is_empty());
    let seed = std::env::var(plan::ENV_SEED).ok().filter(|s| !s.is_empty());
    let Some(path) = plan else {
        // No plan: connect to a `vdisim serve` process (it prints one line
        // if there is none).
        #[cfg(any(unix, windows))]
        return Mode::Serve(RemoteConnector::from_env());
        #[cfg(not(any(unix, windows)))]
        return Mode::None(NoServerNotice::new(format!(
            "vdisim: no in-process server (GetConfiguration will time out); set {}=<plan.toml> and optionally {}=<n> to run one",
            plan::ENV_PLAN,
            plan::ENV_SEED
        )));
    };
    let seed = match seed.as_deref().map(plan::parse_seed).transpose() {
        Ok(s) => s.unwrap_or(0),
        Err(e) => {
            return Mode::None(NoServerNotice::new(format!(
                "vdisim: no in-process server: {e}"
            )));
        }
    };
    match PlanFile::load(&path) {
        Ok(plan) => Mode::Plan(PlanConnector::new(plan, seed)),
        Err(e) => Mode::None(NoServerNotice::new(format!(
            "vdisim: no in-process server: {e}"
        ))),
    }
}
