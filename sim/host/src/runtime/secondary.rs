//! `OpenInSecondary` across processes (vdi-spec.md §1.5, Process Model): a
//! set object with no set of its own joins the live set of another process
//! by name. The connector reaches the server the primary's set lives on
//! (`vdisim serve`); the server replays the set's configuration and the
//! commands not yet completed, then sends this process every message of the
//! set, so the local half sees the devices as the primary's half does and
//! the devices this process opens are served here. What the secondary
//! completes goes to the server half; its Close releases only its own view
//! (clause `open-in-secondary.ok`), and its death is not noticed by VDI
//! (clause `abort.secondary-death-undetected`).

use super::{Inner, ProcessNamespace, SetRuntime};
use std::sync::Arc;
use vdi_model::client::{Blocking, Namespace, Ret};
use vdi_model::msg::Timeout;
use vdi_spec::{ClientState, Hresult, VdConfig, id};

/// How long the replayed configuration, then the rest of the replay
/// (buffer maps, commands not yet completed), may each take to arrive
/// after the join.
pub const JOIN_TIMEOUT_MS: u64 = 5_000;

/// How long a Close in a set shared by several processes waits for the
/// server's CloseDevice of the other processes' devices, once this
/// process's own devices are done (the relay may lag behind the other
/// process; real VDI shares the set's memory and has no such lag).
pub const SHARED_CLOSE_SETTLE_MS: u64 = 2_000;

/// The namespace of a secondary's view of a set: the name is the
/// primary's (claimed in its process), so joining claims nothing and the
/// secondary's Close releases nothing.
struct Borrowed;

impl Namespace for Borrowed {
    fn claim(&mut self, _name: &str, _cfg: &VdConfig) -> bool {
        true
    }
    fn release(&mut self, _name: &str) {}
}

impl Inner {
    /// Close with the namespace this object's set belongs to.
    pub(super) fn close(&mut self) -> Ret<()> {
        if std::mem::take(&mut self.joined) {
            self.client.close(&mut Borrowed)
        } else {
            self.client.close(&mut ProcessNamespace)
        }
    }
}

impl SetRuntime {
    /// A secondary process joined incarnation `incarnation` of this set
    /// (the server says so): its devices are served by several processes
    /// ([`vdi_model::client::ClientSet::share_devices`]).
    pub fn share_devices(&self, incarnation: u32) {
        self.with(|g| {
            if g.client.incarnation() == incarnation && g.client.state() != ClientState::Dne {
                g.client.share_devices();
            }
        });
    }

    /// Another process of incarnation `incarnation` completed command `id`
    /// of device `dev` ([`vdi_model::client::ClientSet::completed_elsewhere`]).
    pub fn completed_elsewhere(&self, incarnation: u32, dev: vdi_model::msg::DevIx, id: u64) {
        self.with(|g| {
            if g.client.incarnation() == incarnation {
                g.client.completed_elsewhere(dev, vdi_model::msg::CmdId(id));
            }
        });
    }

    /// Before a Close: in a shared set whose own devices are done, waits
    /// (at most [`SHARED_CLOSE_SETTLE_MS`]) until the server's closing of
    /// the other processes' devices has reached this process.
    pub(super) fn settle_shared_close(&self) {
        if !self.lock().client.shared_close_pending() {
            // Not a shared set, or nothing to wait for: no clock read, no
            // wake-up (a single-process set's Close is as it was).
            return;
        }
        self.block_on(
            Timeout::Ms(SHARED_CLOSE_SETTLE_MS),
            |c| {
                if c.shared_close_pending() {
                    Blocking::Pending
                } else {
                    Blocking::Ready(())
                }
            },
            |_| (),
        );
    }

    /// [`SetRuntime::open_in_secondary`] without the call log.
    pub(super) fn open_in_secondary_inner(self: &Arc<Self>, secondary: u32, name: &str) -> Ret<()> {
        let mut g = self.lock();
        if g.client.state() != ClientState::Dne || g.dead {
            let r = g.client.open_in_secondary(secondary, name);
            self.finish(g);
            return r;
        }
        let mut ns = Borrowed;
        // A previous incarnation's connection is dropped when this call
        // returns, after the lock is released (its transport waits for its
        // reader thread, which may want the lock).
        let mut _replaced = None;
        let joined = self
            .connector
            .connect_secondary(Arc::downgrade(self), name, &mut |cfg| {
                let ok = g.client.create(name, &cfg, &mut ns).result.is_ok();
                g.client.share_devices();
                ok.then(|| g.client.incarnation())
            });
        let refused = match joined {
            Ok(c) => {
                _replaced = g.conn.replace(c);
                g.joined = true;
                None
            }
            Err(code) => Some(code),
        };
        if let Some(code) = refused {
            if g.client.state() != ClientState::Dne {
                // Created locally, then the connection failed: undo it
                // without a word to any server.
                let _ = g.client.close(&mut ns);
                g.client.out.clear();
            }
            self.finish(g);
            return Ret {
                result: Err(code),
                clause: id::OPEN_IN_SECONDARY_PROTOCOL,
                cell: None,
            };
        }
        self.finish(g);
        // The replay starts with the configuration: take it as the
        // primary's GetConfiguration did (the secondary's view of a
        // configured set).
        let cfg = self.block_on(
            Timeout::Ms(JOIN_TIMEOUT_MS),
            |c| c.get_configuration(),
            |c| c.get_configuration_timeout(),
        );
        if let Err(code) = cfg.result {
            return Ret {
                result: Err(if code == Hresult::VD_E_ABORT {
                    code
                } else {
                    Hresult::VD_E_PROTOCOL
                }),
                clause: id::OPEN_IN_SECONDARY_PROTOCOL,
                cell: None,
            };
        }
        // The replay (buffer maps, commands not yet completed) follows the
        // configuration: OpenInSecondary returns once it is here, so the
        // set's buffers are this process's too (clause
        // buffer-handle.roundtrip: a handle maps in any process of the set).
        let transport = self.lock().conn.as_ref().map(|c| c.transport.clone());
        if let Some(t) = transport {
            t.caught_up(std::time::Duration::from_millis(JOIN_TIMEOUT_MS));
        }
        self.with(|g| g.client.open_in_secondary(secondary, name))
    }
}
