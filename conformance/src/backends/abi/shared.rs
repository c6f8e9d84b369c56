//! The state of a case in progress and the library it runs through, shared
//! by the driver and its worker threads: the set object, its devices,
//! command blocks, buffers, the client side's faults, the trace.

use super::client_faults::ClientFaults;
use super::harness::Harness;
use crate::backend::BackendError;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Instant;
use vdi_model::call::{Reply, Value};
use vdi_model::client::DeviceHandle;
use vdi_model::content::Content;
use vdi_model::fault::Fault;
use vdi_model::msg::{BufId, Cmd, CmdId, Timeout};
use vdi_model::statement::Statement;
use vdi_model::trace::Trace;
use vdi_spec::id;
use vdi_spec::{ClauseId, CommandCode, Hresult, VdConfig, Win32};

/// An address in the library's memory (objects, command blocks, buffers).
pub type Ptr = usize;

/// What an out-pointer holds before the library is called: not NULL and
/// no object, so a library that does not write it is seen (clause
/// `open-device.null-on-failure`: a failing OpenDevice sets
/// `*ppVirtualDevice` to NULL).
pub const OUT_UNSET: Ptr = usize::MAX;

/// The client API of one binary interface, over raw addresses.
pub trait Abi: Send + Sync {
    /// A new set object.
    fn new_set(&self) -> Result<Ptr, BackendError>;
    /// Destroys (Linux) or releases (COM) a set object.
    fn drop_set(&self, set: Ptr);
    /// Releases a device object (COM); nothing on Linux (owned by the set).
    fn drop_device(&self, dev: Ptr);
    /// `Create` (instance `None`) or `CreateEx` (instance `Some`).
    fn create(
        &self,
        set: Ptr,
        instance: Option<Option<&str>>,
        name: &str,
        cfg: &VdConfig,
    ) -> Result<Hresult, BackendError>;
    fn get_configuration(&self, set: Ptr, t: Timeout, out: &mut VdConfig) -> Hresult;
    /// `OpenDevice`: the code and `*ppVirtualDevice` as the library left
    /// it, the out-pointer initialised to [`OUT_UNSET`] before the call.
    fn open_device(&self, set: Ptr, name: &str) -> (Hresult, Ptr);
    fn close(&self, set: Ptr) -> Hresult;
    fn signal_abort(&self, set: Ptr) -> Hresult;
    fn open_in_secondary(&self, set: Ptr, name: &str) -> Hresult;
    fn get_buffer_handle(&self, set: Ptr, buf: Ptr) -> (Hresult, u32);
    fn map_buffer_handle(&self, set: Ptr, handle: u32) -> (Hresult, Ptr);
    fn get_command(&self, dev: Ptr, t: Timeout) -> (Hresult, Ptr);
    fn complete_command(&self, dev: Ptr, cmd: Ptr, code: u32, bytes: u64, pos: u64) -> Hresult;
    /// The library's harness control, when it has one.
    fn harness(&self) -> Option<&Harness>;
    /// How a secondary client process reaches this library's server, when
    /// another process can (a `vdisim serve` shared by processes; see
    /// [`super::secondary`]).
    fn secondary_launch(&self) -> Option<super::secondary::wire::Launch> {
        None
    }
}

/// A reply with no clause (a real library reports none).
pub fn reply(code: Hresult, value: Value) -> Reply {
    Reply {
        code,
        clause: None,
        value,
    }
}

/// What the driver knows of the case in progress.
#[derive(Default)]
pub struct CaseState {
    pub set: Ptr,
    devices: BTreeMap<(u32, u16), Ptr>,
    pub(super) all_devices: Vec<Ptr>,
    /// Local command id → (device object, block, the Cmd as first seen).
    cmds: BTreeMap<u64, (Ptr, Ptr, Cmd)>,
    /// Commands fetched and not yet handed back, of the current set
    /// incarnation: only their Read buffers are the client's to fill (a new
    /// Create frees the previous incarnation's buffers).
    outstanding: BTreeSet<u64>,
    next_cmd: u64,
    buf_ids: BTreeMap<Ptr, u32>,
    buf_addrs: BTreeMap<u32, Ptr>,
    incarnation: u32,
    set_name: String,
    pub stmt_devices: Vec<String>,
    /// Media of asynchronous drains (the script keeps its own).
    pub(super) media: Vec<Content>,
    pub(super) trace: Option<Trace>,
    pub t0: Option<Instant>,
    /// Virtual ms per real ms of the case (trace times are virtual).
    pub scale: u32,
    /// The faults the client side applies.
    pub faults: ClientFaults,
}

impl CaseState {
    /// The state of a new case: set object `set`, its trace, its time
    /// scale, the client side's faults, the drains' media.
    pub fn new(
        set: Ptr,
        trace: Trace,
        scale: u32,
        faults: ClientFaults,
        media: Vec<Content>,
    ) -> CaseState {
        CaseState {
            set,
            trace: Some(trace),
            t0: Some(Instant::now()),
            scale,
            faults,
            media,
            ..CaseState::default()
        }
    }

    /// The local id of buffer address `addr` (assigned on first sight).
    pub fn buf_id(&mut self, addr: Ptr) -> Option<BufId> {
        if addr == 0 {
            return None;
        }
        if let Some(id) = self.buf_ids.get(&addr) {
            return Some(BufId(*id));
        }
        let id = self.buf_ids.len() as u32 + 1;
        self.buf_ids.insert(addr, id);
        self.buf_addrs.insert(id, addr);
        Some(BufId(id))
    }

    /// The address of buffer `id`, if it has been seen.
    pub fn buffer_address(&self, id: u32) -> Option<Ptr> {
        self.buf_addrs.get(&id).copied()
    }

    /// The device object behind `dev` (0: none).
    pub fn device(&self, dev: DeviceHandle) -> Ptr {
        self.devices
            .get(&(dev.incarnation, dev.index))
            .copied()
            .unwrap_or(0)
    }

    /// The next local command id.
    pub fn next_command_id(&mut self) -> u64 {
        self.next_cmd += 1;
        self.next_cmd
    }

    /// Command `id` was fetched as `block` on device object `dev`.
    pub fn fetched_block(&mut self, id: u64, dev: Ptr, block: Ptr, cmd: Cmd) {
        self.cmds.insert(id, (dev, block, cmd));
        self.outstanding.insert(id);
    }

    /// The block and first view of command `id`, if it was fetched.
    pub fn block_of(&self, id: u64) -> Option<(Ptr, Cmd)> {
        self.cmds.get(&id).map(|(_, b, c)| (*b, c.clone()))
    }

    /// Command `id` is handed back; whether it was outstanding.
    pub fn hand_back(&mut self, id: u64) -> bool {
        self.outstanding.remove(&id)
    }

    /// The reference client's answer to `c` on the drains' media.
    pub fn reference_answer(&mut self, c: &Cmd) -> (Win32, u64, Content) {
        let d = usize::from(c.dev);
        if self.media.len() <= d {
            self.media.resize(d + 1, Content::Empty);
        }
        match c.code {
            CommandCode::Write => {
                self.media[d].append(&c.data);
                (Win32::ERROR_SUCCESS, u64::from(c.size), Content::Empty)
            }
            CommandCode::Read => {
                let data = self.media[d].slice(c.position, u64::from(c.size));
                let code = if data.len() < u64::from(c.size) {
                    Win32::ERROR_HANDLE_EOF
                } else {
                    Win32::ERROR_SUCCESS
                };
                (code, data.len(), data)
            }
            CommandCode::Flush | CommandCode::ClearError | CommandCode::Complete => {
                (Win32::ERROR_SUCCESS, 0, Content::Empty)
            }
            _ => (Win32::ERROR_NOT_SUPPORTED, 0, Content::Empty),
        }
    }

    /// Records a trace event at the case's virtual time.
    pub fn emit(&mut self, who: &str, what: &str, detail: String, clause: Option<ClauseId>) {
        let t = self.t0.map_or(0, |t| {
            u64::try_from(t.elapsed().as_millis())
                .unwrap_or(0)
                .saturating_mul(u64::from(self.scale.max(1)))
        });
        if let Some(tr) = &mut self.trace {
            tr.emit(t, who, what, detail, clause);
        }
    }

    /// The index of device `name` in the set (statement's device list).
    fn dev_index(&self, name: &str) -> u16 {
        if let Some(i) = self.stmt_devices.iter().position(|d| d == name) {
            return i as u16;
        }
        if name == self.set_name {
            return 0;
        }
        name.rsplit_once("-dev")
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0)
    }

    /// A statement starts: the phase its faults match in, its device names,
    /// fresh media for a backup.
    pub fn statement_starts(&mut self, stmt: &Statement) {
        self.stmt_devices = stmt.devices.clone();
        self.faults.statement_starts(stmt.kind.is_backup());
        if stmt.kind.is_backup() {
            self.media = vec![Content::Empty; stmt.devices.len()];
        }
    }
}

/// The driver's state and library, shared with its worker threads.
pub struct Shared {
    pub abi: std::sync::Arc<dyn Abi>,
    st: Mutex<CaseState>,
}

impl Shared {
    /// The state of no case, over `abi`.
    pub fn new(abi: std::sync::Arc<dyn Abi>) -> Shared {
        Shared {
            abi,
            st: Mutex::new(CaseState::default()),
        }
    }

    pub fn st(&self) -> std::sync::MutexGuard<'_, CaseState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A Create returned `code` for set `name`.
    pub fn created(&self, code: Hresult, name: String) {
        if code == Hresult::NOERROR {
            let mut st = self.st();
            st.incarnation += 1;
            st.set_name = name;
            st.outstanding.clear();
        }
    }

    /// OpenDevice `name` returned device object `dev`: its handle.
    pub fn opened(&self, name: &str, dev: Ptr) -> DeviceHandle {
        let mut st = self.st();
        let h = DeviceHandle {
            incarnation: st.incarnation,
            index: st.dev_index(name),
        };
        st.devices.insert((h.incarnation, h.index), dev);
        st.all_devices.push(dev);
        h
    }

    /// The handle the primary's numbering gives device `name` of the
    /// current set incarnation (a device another process opened).
    pub fn handle_for(&self, name: &str) -> DeviceHandle {
        let st = self.st();
        DeviceHandle {
            incarnation: st.incarnation,
            index: st.dev_index(name),
        }
    }

    /// Thread `who` fetched `cmd`: fires the planned faults the fetch
    /// triggers, as the model's world does.
    pub fn fetched(&self, who: &str, cmd: &Cmd) {
        let fire = {
            let mut st = self.st();
            let fire = st.faults.on_fetch(who, cmd);
            for f in &fire {
                st.emit("world", "Fault", format!("{f:?}"), None);
            }
            fire
        };
        for f in fire {
            self.apply(f);
        }
    }

    /// The code and byte count a completion of command `id` reports: a
    /// planned `complete-with-error` replaces them (code, 0 bytes).
    pub fn completion(&self, id: CmdId, code: Win32, bytes: u64) -> (Win32, u64) {
        let mut st = self.st();
        match st.faults.take_override(id.0) {
            Some(c) => {
                st.emit(
                    "world",
                    "Override",
                    format!("id={} completion {c} (fault plan)", id.0),
                    None,
                );
                (c, 0)
            }
            None => (code, bytes),
        }
    }

    /// Applies a fault now: client-side ones here, server-side ones through
    /// the library's server host.
    pub fn apply(&self, f: Fault) {
        match f {
            Fault::ClientSignalAbort => {
                if self.st().faults.dead {
                    return;
                }
                let set = self.st().set;
                let code = self.abi.signal_abort(set);
                self.st().emit(
                    "ctl",
                    "SignalAbort",
                    format!("-> {code} (fault plan)"),
                    None,
                );
            }
            Fault::ClientDeath => self.client_death(),
            f if f.is_server_side() => {
                if let Some(h) = self.abi.harness() {
                    let _ = h.event(&f);
                }
            }
            // Applied where the fetching thread acts next, at completion,
            // or when the restore starts.
            _ => {}
        }
    }

    /// The client process dies: no thread acts again, and the library
    /// tells the server (clause `abort.client-death`).
    pub fn client_death(&self) {
        {
            let mut st = self.st();
            if st.faults.dead {
                return;
            }
            st.faults.dead = true;
            st.emit(
                "world",
                "ClientDied",
                String::new(),
                Some(id::ABORT_CLIENT_DEATH),
            );
        }
        // The library this backend loaded (its own copy, for the serve backend).
        if let Some(f) = self.abi.harness().and_then(|h| h.client_death) {
            // SAFETY: the stand-in exports `vdisim_harness_client_death` as
            // `extern "C" fn() -> i32` (sim/standin/src/harness.rs).
            let _ = unsafe { f() };
        }
    }

    /// Applies the media truncations planned for a restore to `media`.
    pub fn truncate_for_restore(&self, media: &mut [Content]) {
        let mut st = self.st();
        for f in st.faults.restore_starts() {
            if let Fault::TruncateMedia { dev, bytes } = f
                && let Some(m) = media.get_mut(usize::from(dev))
            {
                *m = m.slice(0, bytes);
            }
            st.emit("world", "Fault", format!("{f:?}"), None);
        }
    }
}
