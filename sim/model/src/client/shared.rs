//! A set whose devices are served by several client processes (a secondary
//! joined it from another process through `vdisim serve`; vdi-spec.md
//! §1.5, Process Model). The model's own secondary shares one
//! [`ClientSet`]; these are for the stand-in, where each process has its
//! own half of the same set.

use super::ClientSet;
use crate::msg::{CmdId, DevIx};

impl ClientSet {
    /// The set's devices are served by more than one client process
    /// (clause `open-in-secondary.ok`: a secondary opens the devices the
    /// primary leaves). From now on a Close in this process counts a device
    /// it never opened as finished once the server has closed it: that
    /// device's VD_E_CLOSE is returned in the process that serves it. Only
    /// a set whose processes are real processes (the stand-in with `vdisim
    /// serve`) calls this; the model's secondary shares this object.
    pub fn share_devices(&mut self) {
        self.shared = true;
    }

    /// A command reached this process's view of a shared set: its buffer
    /// is a buffer of the set here too, whichever process fetches the
    /// command, so a handle to it maps here (clause
    /// `buffer-handle.roundtrip`: MapBufferHandle "in any process with the
    /// same set open"). An unshared set knows a buffer once it fetched it.
    pub(super) fn note_shared_buffer(&mut self, c: &crate::msg::Cmd) {
        if self.shared
            && let Some(b) = c.buffer
        {
            self.buffers_seen.insert(b);
        }
    }

    /// Command `id` of device `dev` was completed by another process of a
    /// shared set ([`ClientSet::share_devices`]): if this process has not
    /// opened the device, the command leaves its queue (and its buffer is
    /// no longer held here, so the server may reuse it).
    pub fn completed_elsewhere(&mut self, dev: DevIx, id: CmdId) {
        if !self.shared {
            return;
        }
        if let Some(d) = self.devices.get_mut(dev as usize)
            && !d.opened
        {
            d.queue.retain(|c| c.id != id);
        }
    }

    /// Every device this process opened returned VD_E_CLOSE, and every
    /// other one was closed by the server.
    pub(super) fn finished_here(&self) -> bool {
        self.devices
            .iter()
            .all(|d| d.close_seen || (!d.opened && d.server_closed))
    }

    /// A Close now would find this process done (every device it opened
    /// returned VD_E_CLOSE) but a device of another process not yet closed
    /// by the server as this process has heard: the relay lags behind the
    /// other process (the runtime waits a bounded time for it).
    pub fn shared_close_pending(&self) -> bool {
        self.shared
            && self.state == vdi_spec::ClientState::Active
            && self.devices.iter().all(|d| !d.opened || d.close_seen)
            && !self.finished_here()
    }
}
