//! In-process harness cases: one [`ServerHost`] per conformance case inside
//! the client's process, reaching each set incarnation directly (messages
//! into its runtime, liveness from the process namespace, buffers on the
//! heap).

use crate::buffers::{BufferMap, Pool};
use crate::contract::{CaseSetup, Observation};
use crate::harness::{CaseControl, HarnessError};
use crate::local::{self, LocalTransport};
use crate::runtime::{Connection, Connector, NewSet, SetRuntime, Tally};
use crate::server::{HostMsg, HostSetup, ServerHost};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use vdi_model::fault::Fault;
use vdi_model::outcome::Outcome;
use vdi_model::statement::Statement;
use vdi_spec::Profile;

/// Buffer data bytes of a case's sets: the largest MAXTRANSFERSIZE, since
/// the statement (and so its MAXTRANSFERSIZE) is not known when the set is
/// created. Pages are only touched up to each command's size.
const POOL_BYTES: u32 = 4 * 1024 * 1024;
/// Data-zone alignment of a case's sets (at least the largest BLOCKSIZE).
const POOL_ALIGN: u32 = 65536;

/// One active case.
struct Case {
    profile: Arc<Profile>,
    host: Arc<ServerHost>,
    connector: Arc<CaseConnector>,
}

/// The in-process cases of this process (at most one active).
#[derive(Default)]
pub struct CaseHost {
    case: Mutex<Option<Arc<Case>>>,
    tally: Arc<Tally>,
}

impl CaseHost {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<Case>>> {
        self.case.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn need(&self) -> Result<Arc<Case>, HarnessError> {
        self.slot().clone().ok_or(HarnessError::NoCase)
    }

    /// The connector set objects use (the active case's), if a case has
    /// been started. After `finish` the case stays: sets still connect, to
    /// a stopped server.
    pub fn connector(&self) -> Option<Arc<dyn Connector>> {
        self.slot()
            .as_ref()
            .map(|c| c.connector.clone() as Arc<dyn Connector>)
    }

    /// The active case's profile.
    pub fn profile(&self) -> Option<Arc<Profile>> {
        self.slot().as_ref().map(|c| c.profile.clone())
    }

    /// The active case's time scale (1 without a case).
    pub fn time_scale(&self) -> u32 {
        self.slot().as_ref().map_or(1, |c| c.host.time_scale())
    }

    /// Where set objects count the clauses they cite.
    pub fn tally(&self) -> Arc<Tally> {
        self.tally.clone()
    }
}

impl CaseControl for CaseHost {
    fn reset(&self, setup: CaseSetup) -> Result<(), HarnessError> {
        let old = self.slot().take();
        if let Some(c) = old {
            c.host.stop();
        }
        self.tally.take();
        let profile = Arc::new(setup.profile.clone());
        let host = ServerHost::start(HostSetup::for_case(&setup));
        let case = Arc::new(Case {
            profile,
            connector: Arc::new(CaseConnector {
                tx: Mutex::new(host.sender()),
                runtimes: Mutex::new(Vec::new()),
            }),
            host,
        });
        *self.slot() = Some(case);
        Ok(())
    }

    fn start_statement(&self, stmt: Statement) -> Result<(), HarnessError> {
        self.need()?.host.start_statement(stmt);
        Ok(())
    }

    fn event(&self, fault: Fault) -> Result<(), HarnessError> {
        self.need()?
            .host
            .event(fault)
            .map_err(HarnessError::Unsupported)
    }

    fn wait_statement(&self, timeout_ms: Option<u64>) -> Result<Option<Outcome>, HarnessError> {
        let c = self.need()?;
        let t = timeout_ms.map(|ms| c.host.real(ms));
        Ok(c.host.wait_statement(t))
    }

    fn client_death(&self) -> Result<(), HarnessError> {
        let c = self.need()?;
        for rt in c.connector.live_runtimes() {
            rt.die();
        }
        Ok(())
    }

    fn now_ms(&self) -> Result<u64, HarnessError> {
        Ok(self.need()?.host.now_ms())
    }

    fn finish(&self, settle: Duration) -> Result<Observation, HarnessError> {
        let c = self.need()?;
        let mut obs = c.host.finish(settle);
        for (k, v) in self.tally.take() {
            *obs.clauses.entry(k.to_string()).or_default() += v;
        }
        Ok(obs)
    }
}

/// Connects each set incarnation to the case's server host.
struct CaseConnector {
    tx: Mutex<Sender<HostMsg>>,
    /// Every set runtime connected during the case (for the client death).
    runtimes: Mutex<Vec<Weak<SetRuntime>>>,
}

impl CaseConnector {
    fn live_runtimes(&self) -> Vec<Arc<SetRuntime>> {
        self.runtimes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

impl Connector for CaseConnector {
    fn connect(&self, runtime: Weak<SetRuntime>, set: &NewSet) -> Connection {
        let key = local::key_of(&runtime, set);
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
        let _ = tx.send(local::connect(runtime, set, &pool));
        Connection {
            transport: Arc::new(LocalTransport::new(tx, key)),
            buffers: Some(pool as Arc<dyn BufferMap>),
        }
    }
}
