//! The client half's state invariants: what holds between any two public
//! transitions of [`ClientSet`], checked before and after each of them in
//! debug builds. The checks only read state; with `debug_assertions` off
//! they compile to nothing.

use super::*;
use vdi_spec::layout::limits;

impl ClientSet {
    /// Runs `f`, a public transition, between two checks of the invariants;
    /// also checks that the incarnation only grows (debug builds only).
    #[inline(always)]
    pub(super) fn transition<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        self.check_invariants();
        let incarnation = self.incarnation;
        let r = f(self);
        debug_assert!(
            self.incarnation >= incarnation,
            "the set incarnation only grows"
        );
        self.check_invariants();
        r
    }

    /// Asserts the invariants of the client half.
    #[inline(always)]
    pub(super) fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        self.check_set();
        self.check_devices();
        self.check_commands();
    }

    /// The set: what each state implies about the configuration and the
    /// devices.
    fn check_set(&self) {
        let st = self.state;
        debug_assert!(
            self.incarnation > 0 || st == ClientState::Dne,
            "a set that was never created is DNE"
        );
        debug_assert!(
            st != ClientState::Dne || self.devices.is_empty(),
            "a DNE set has no devices"
        );
        debug_assert!(
            st != ClientState::Dne || self.server_cfg.is_none(),
            "a DNE set has no server configuration"
        );
        debug_assert!(
            st != ClientState::Dne || self.secondaries.is_empty(),
            "a DNE set has no secondaries"
        );
        debug_assert!(
            self.devices.is_empty() || self.server_cfg.is_some(),
            "devices come with the server's configuration"
        );
        debug_assert!(
            self.devices.len() <= limits::DEVICE_COUNT_MAX as usize,
            "at most DEVICE_COUNT_MAX devices"
        );
        debug_assert!(
            self.devices.len() <= self.cfg.device_count as usize,
            "no more devices than the client's deviceCount"
        );
        let configured = matches!(
            st,
            ClientState::Initializing | ClientState::Active | ClientState::NormallyTerminated
        );
        debug_assert!(
            !configured || self.server_cfg.is_some(),
            "past GetConfiguration the set has the server's configuration"
        );
        debug_assert!(
            !self.abort_sent || matches!(st, ClientState::Abort | ClientState::Dne),
            "after the client's abort the set is Abort or DNE"
        );
        debug_assert!(
            !self.server_gone || matches!(st, ClientState::Abort | ClientState::Dne),
            "once the server is gone the set is Abort or DNE"
        );
    }

    /// The devices: open flags and close flags against the set state.
    fn check_devices(&self) {
        let st = self.state;
        let any_open = self.devices.iter().any(|d| d.opened);
        debug_assert!(
            !matches!(st, ClientState::Configurable | ClientState::Initializing) || !any_open,
            "no device is open before the set is Active"
        );
        debug_assert!(
            st != ClientState::Active || any_open,
            "an Active set has an open device"
        );
        debug_assert!(
            st != ClientState::NormallyTerminated || !self.devices.is_empty(),
            "a NormallyTerminated set has devices"
        );
        debug_assert!(
            st != ClientState::NormallyTerminated || self.devices.iter().all(|d| d.close_seen),
            "a NormallyTerminated set returned VD_E_CLOSE on every device"
        );
        for (i, d) in self.devices.iter().enumerate() {
            debug_assert!(
                !d.close_seen || d.server_closed,
                "dev={i}: VD_E_CLOSE only after the server's CloseDevice"
            );
            debug_assert!(
                !d.close_seen || d.opened,
                "dev={i}: VD_E_CLOSE only on an open device"
            );
            debug_assert!(
                d.outstanding.is_empty() || d.opened,
                "dev={i}: commands are fetched only on an open device"
            );
            // NormallyTerminated too: GetCommand returns VD_E_CLOSE after the
            // server's CloseDevice even while commands fetched on that device
            // are still outstanding (a server that closes a device early).
            let fetching = matches!(
                st,
                ClientState::Active | ClientState::Abort | ClientState::NormallyTerminated
            );
            debug_assert!(
                d.outstanding.is_empty() || fetching,
                "dev={i}: outstanding commands only in Active, Abort or NormallyTerminated"
            );
            debug_assert!(
                st != ClientState::Abort || d.queue.is_empty(),
                "dev={i}: no command is queued after an abort"
            );
            debug_assert!(
                st != ClientState::Abort || d.held_clear_error.is_none(),
                "dev={i}: no ClearError is held after an abort"
            );
            debug_assert!(
                !d.io_error || d.queue.is_empty(),
                "dev={i}: a device in IO-ERROR queues nothing"
            );
            debug_assert!(
                d.held_clear_error
                    .as_ref()
                    .is_none_or(|c| c.code == CommandCode::ClearError),
                "dev={i}: only a ClearError is held"
            );
        }
    }

    /// The commands the client holds: each on its own device, each id and
    /// each buffer held once, every fetched data buffer known to
    /// GetBufferHandle.
    fn check_commands(&self) {
        let mut ids = BTreeSet::new();
        let mut bufs = BTreeSet::new();
        let (mut ids_once, mut bufs_once, mut on_own_device) = (true, true, true);
        for (i, d) in self.devices.iter().enumerate() {
            let held = d
                .queue
                .iter()
                .chain(&d.outstanding)
                .chain(&d.held_clear_error);
            for c in held {
                on_own_device &= c.dev as usize == i;
                ids_once &= ids.insert(c.id);
                if let Some(b) = c.buffer {
                    bufs_once &= bufs.insert(b);
                }
            }
        }
        debug_assert!(on_own_device, "a command is held by the device it names");
        debug_assert!(ids_once, "a command is held once");
        debug_assert!(bufs_once, "a buffer is held by at most one command");
        // A held ClearError is handed out without registering a buffer (it
        // carries none from the server).
        let fetched_known = self.devices.iter().all(|d| {
            d.outstanding
                .iter()
                .filter(|c| c.code != CommandCode::ClearError)
                .filter_map(|c| c.buffer)
                .all(|b| self.buffers_seen.contains(&b))
        });
        debug_assert!(
            fetched_known,
            "every fetched data command's buffer has a handle"
        );
    }
}
