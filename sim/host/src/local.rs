//! A set incarnation of this process, as an in-process server host reaches
//! it: messages go straight into its runtime, liveness is the process
//! namespace, the buffers are a heap [`Pool`]. Harness cases and the plan
//! server both connect sets this way.

use crate::buffers::{Pool, ServerBuffers};
use crate::runtime::{NewSet, ProcessNamespace, SetRuntime, Transport};
use crate::server::{HostMsg, SetEnd, SetKey};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, Weak};
use vdi_model::msg::{ToClient, ToServer};
use vdi_spec::VdConfig;

/// The client half's messages to the host, tagged with the incarnation.
pub(crate) struct LocalTransport {
    tx: Mutex<Sender<HostMsg>>,
    key: SetKey,
}

impl LocalTransport {
    pub(crate) fn new(tx: Sender<HostMsg>, key: SetKey) -> LocalTransport {
        LocalTransport {
            tx: Mutex::new(tx),
            key,
        }
    }
}

impl Transport for LocalTransport {
    fn send(&self, msg: ToServer) {
        // A host that has finished no longer listens: drop.
        let _ = self
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(HostMsg::Client { key: self.key, msg });
    }
}

/// The key a host knows set incarnation `set` of `runtime` by.
pub(crate) fn key_of(runtime: &Weak<SetRuntime>, set: &NewSet) -> SetKey {
    (runtime.as_ptr() as usize, set.incarnation)
}

/// Tells a host of set incarnation `set` of `runtime`, whose buffers are
/// `pool`.
pub(crate) fn connect(runtime: Weak<SetRuntime>, set: &NewSet, pool: &Arc<Pool>) -> HostMsg {
    HostMsg::Connect {
        key: key_of(&runtime, set),
        name: set.name.clone(),
        end: Arc::new(LocalEnd {
            rt: runtime,
            incarnation: set.incarnation,
            name: set.name.clone(),
            pool: pool.clone(),
        }),
    }
}

/// The host's view of a set incarnation of this process.
struct LocalEnd {
    rt: Weak<SetRuntime>,
    incarnation: u32,
    name: String,
    pool: Arc<Pool>,
}

impl SetEnd for LocalEnd {
    fn deliver(&self, msg: ToClient) {
        if let Some(rt) = self.rt.upgrade() {
            rt.deliver_from(self.incarnation, msg);
        }
    }
    fn live(&self) -> Option<VdConfig> {
        ProcessNamespace::lookup(&self.name)
    }
    fn buffers(&self) -> &dyn ServerBuffers {
        &*self.pool
    }
}
