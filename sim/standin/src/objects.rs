//! The part both binary interfaces share: a set object ([`SetCore`]) and its
//! device objects ([`DevCore`]) over a [`SetRuntime`], with the command
//! blocks handed to C, name decoding, and the process registry that lets
//! the ABI layers check a pointer before trusting it.
//!
//! Everything here is safe Rust taking Rust values; `linux.rs` and `com.rs`
//! only translate pointers and integers.

use std::cell::UnsafeCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use vdi_host::runtime::{BlockModification, CreateKind, SetRuntime, Wait};
use vdi_model::client::DeviceHandle;
use vdi_model::msg::{BufId, Cmd, CmdId};
use vdi_spec::{ClientState, CommandCode, Hresult, VdConfig, VdcCommand, Win32};

/// Completed command blocks kept alive (per device) before they are freed,
/// so a stale pointer handed back soon after completion cannot alias a new
/// block at the same address.
pub const QUARANTINE: usize = 256;

/// Longest name accepted, in code units (a bound on reading C strings).
pub const NAME_MAX: usize = 4096;

/// Command-block writes seen in this process (all set objects).
static MODIFICATIONS: AtomicU64 = AtomicU64::new(0);

/// How many writes into read-only command blocks this process has seen
/// (clause `complete-command.read-only-block`).
pub fn modifications_total() -> u64 {
    MODIFICATIONS.load(Ordering::Relaxed)
}

/// A command block owned by the library: the client gets its address.
struct Block {
    cell: Box<UnsafeCell<VdcCommand>>,
    delivered: VdcCommand,
    cmd: Cmd,
}

impl Block {
    fn addr(&self) -> usize {
        self.cell.get() as usize
    }
}

// SAFETY: a block is plain data (integers and an address into the buffer
// pool); the raw pointer inside `VdcCommand` is never dereferenced by the
// library through the block.
unsafe impl Send for Block {}

#[derive(Default)]
struct Blocks {
    outstanding: Vec<Block>,
    quarantine: VecDeque<Block>,
}

/// A device object: one device of one set incarnation. After Close it stays
/// valid memory and answers the profile's use-after-close code.
pub struct DevCore {
    rt: Arc<SetRuntime>,
    handle: DeviceHandle,
    blocks: Mutex<Blocks>,
}

impl std::fmt::Debug for DevCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCore")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

fn code_of<T>(r: &Result<T, Hresult>) -> Hresult {
    match r {
        Ok(_) => Hresult::NOERROR,
        Err(c) => *c,
    }
}

impl DevCore {
    /// The device's handle (set incarnation and index).
    pub fn handle(&self) -> DeviceHandle {
        self.handle
    }

    fn blocks(&self) -> std::sync::MutexGuard<'_, Blocks> {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `GetCommand`: on success, the address of a library-owned block.
    /// `timeout` is a [`Timeout`](vdi_model::msg::Timeout), or a [`Wait`]
    /// keeping the number the program passed (for the call log).
    pub fn get_command(&self, timeout: impl Into<Wait>) -> Result<*mut VdcCommand, Hresult> {
        let r = self.rt.get_command(self.handle, timeout);
        let cmd = r.result?;
        let buffer = self
            .rt
            .buffer_address(cmd.buffer)
            .map_or(std::ptr::null_mut(), |p| p.as_ptr());
        let block = VdcCommand {
            command_code: cmd.code as u32,
            size: cmd.size,
            position: cmd.position,
            buffer,
        };
        let b = Block {
            cell: Box::new(UnsafeCell::new(block)),
            delivered: block,
            cmd,
        };
        let p = b.cell.get();
        self.blocks().outstanding.push(b);
        Ok(p)
    }

    /// `CompleteCommand` with the block address the client handed back.
    /// Addresses that are not outstanding blocks of this device are never
    /// read.
    pub fn complete_command(&self, addr: usize, code: u32, bytes: u64, position: u64) -> Hresult {
        let mut g = self.blocks();
        let found = g.outstanding.iter().position(|b| b.addr() == addr);
        let Some(i) = found else {
            // Foreign, stale or already completed: let the half decide by
            // state (ABORT, use-after-close, INVALID) with an id that never
            // names a command.
            drop(g);
            let bogus = Cmd {
                id: CmdId(u64::MAX),
                dev: self.handle.index,
                code: CommandCode::Read,
                size: 0,
                position: 0,
                buffer: None,
                data: vdi_model::content::Content::Empty,
            };
            let r = self
                .rt
                .complete_command(self.handle, &bogus, Win32(code), bytes, position);
            return code_of(&r.result);
        };
        // SAFETY: the block is ours and alive (it is in `outstanding`); the
        // client may have written to it through the pointer we gave out, so
        // it is read through the UnsafeCell, volatile.
        let now: VdcCommand = unsafe { std::ptr::read_volatile(g.outstanding[i].cell.get()) };
        let b = &g.outstanding[i];
        let was = b.delivered;
        let mut seen = b.cmd.clone();
        if now != was {
            seen.size = now.size;
            seen.position = now.position;
            if let Some(c) = CommandCode::from_u32(now.command_code) {
                seen.code = c;
            }
            if now.buffer != was.buffer {
                seen.buffer = Some(BufId(u32::MAX));
            }
            MODIFICATIONS.fetch_add(1, Ordering::Relaxed);
            self.rt.record_modification(BlockModification {
                incarnation: self.handle.incarnation,
                dev: self.handle.index,
                id: b.cmd.id.0,
                delivered: (
                    was.command_code,
                    was.size,
                    was.position,
                    was.buffer as usize,
                ),
                completed: (
                    now.command_code,
                    now.size,
                    now.position,
                    now.buffer as usize,
                ),
            });
        }
        let r = self
            .rt
            .complete_command(self.handle, &seen, Win32(code), bytes, position);
        if r.result.is_ok() {
            let b = g.outstanding.remove(i);
            if g.quarantine.len() == QUARANTINE {
                g.quarantine.pop_front();
            }
            g.quarantine.push_back(b);
        }
        code_of(&r.result)
    }
}

/// A set object (`IClientVirtualDeviceSet2` / `ClientVirtualDeviceSet`).
pub struct SetCore {
    rt: Arc<SetRuntime>,
    /// Device objects handed out, kept until the set object is destroyed
    /// (tombstones: after Close they answer the use-after-close code).
    devices: Mutex<Vec<Arc<DevCore>>>,
    /// Objects an ABI face hands to C for this set's devices (the Linux
    /// one-pointer objects), kept until the set object is destroyed. Boxed:
    /// their addresses must not move when the Vec grows.
    kept: Mutex<Vec<Box<dyn std::any::Any + Send>>>,
}

impl std::fmt::Debug for SetCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetCore").finish_non_exhaustive()
    }
}

static SECONDARY_IDS: AtomicU32 = AtomicU32::new(1);

impl SetCore {
    /// A set object in state DNE, connected to the server the process's
    /// mode chose ([`vdi_host::mode`]).
    pub fn new() -> Arc<SetCore> {
        SetCore::with_runtime(SetRuntime::with_config(
            vdi_host::mode::current().runtime_config(),
        ))
    }

    /// A set object over a given runtime.
    pub fn with_runtime(rt: Arc<SetRuntime>) -> Arc<SetCore> {
        Arc::new(SetCore {
            rt,
            devices: Mutex::new(Vec::new()),
            kept: Mutex::new(Vec::new()),
        })
    }

    /// The runtime behind this object.
    pub fn runtime(&self) -> &Arc<SetRuntime> {
        &self.rt
    }

    /// `Create` / `CreateEx`. The configuration is validated by the half
    /// (VD_E_NOTSUPPORTED when out of range).
    pub fn create(&self, kind: CreateKind<'_>, name: &str, cfg: &VdConfig) -> Hresult {
        code_of(&self.rt.create(kind, name, cfg).result)
    }

    /// `GetConfiguration` (`timeout` as for [`DevCore::get_command`]).
    pub fn get_configuration(&self, timeout: impl Into<Wait>) -> Result<VdConfig, Hresult> {
        self.rt.get_configuration(timeout).result
    }

    /// `OpenDevice`: a new device object, registered.
    pub fn open_device(&self, name: &str) -> Result<Arc<DevCore>, Hresult> {
        let h = self.rt.open_device(name).result?;
        let d = Arc::new(DevCore {
            rt: self.rt.clone(),
            handle: h,
            blocks: Mutex::new(Blocks::default()),
        });
        self.devices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(d.clone());
        register_device(&d);
        Ok(d)
    }

    /// `Close`.
    pub fn close(&self) -> Hresult {
        code_of(&self.rt.close().result)
    }

    /// `SignalAbort`.
    pub fn signal_abort(&self) -> Hresult {
        code_of(&self.rt.signal_abort().result)
    }

    /// `OpenInSecondary(Ex)`. On an object with no set of its own, joins the
    /// live set `name` of another process through `vdisim serve` (its
    /// devices then open here, their buffers mapped from the server's
    /// shared memory); without a server that relays sets, VD_E_PROTOCOL (not
    /// created). On an object with a set, the half decides as documented
    /// (VD_E_PROTOCOL: already open here).
    pub fn open_in_secondary(&self, name: &str) -> Hresult {
        let id = SECONDARY_IDS.fetch_add(1, Ordering::Relaxed);
        code_of(&self.rt.open_in_secondary(id, name).result)
    }

    /// `GetBufferHandle`.
    pub fn get_buffer_handle(&self, addr: usize) -> Result<u32, Hresult> {
        self.rt.get_buffer_handle(addr).result
    }

    /// `MapBufferHandle`.
    pub fn map_buffer_handle(&self, handle: u32) -> Result<usize, Hresult> {
        self.rt.map_buffer_handle(handle).result
    }

    /// The set state (client view).
    pub fn state(&self) -> ClientState {
        self.rt.state()
    }

    /// Keeps `obj` (an object an ABI face handed to C for this set) alive
    /// until the set object is destroyed; its address does not move.
    pub fn keep<T: Send + 'static>(&self, obj: Box<T>) {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(obj);
    }
}

impl Drop for SetCore {
    fn drop(&mut self) {
        // Destroying the object with a live set releases it (as Close does,
        // aborting if devices are open), so the name is free again and the
        // server is told.
        self.rt.close_if_open();
        let devs = std::mem::take(&mut *self.devices.lock().unwrap_or_else(|e| e.into_inner()));
        let mut reg = registry_write();
        for d in devs {
            reg.devices.remove(&(Arc::as_ptr(&d) as usize));
        }
    }
}

// ----- the registry ------------------------------------------------------------------

#[derive(Default)]
struct Registry {
    sets: HashMap<usize, Arc<SetCore>>,
    devices: HashMap<usize, Arc<DevCore>>,
}

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(Default::default);

fn registry_write() -> std::sync::RwLockWriteGuard<'static, Registry> {
    REGISTRY.write().unwrap_or_else(|e| e.into_inner())
}

fn registry_read() -> std::sync::RwLockReadGuard<'static, Registry> {
    REGISTRY.read().unwrap_or_else(|e| e.into_inner())
}

/// Registers a set object under its address; returns the address (what the
/// Linux object holds).
pub fn register_set(s: Arc<SetCore>) -> usize {
    let k = Arc::as_ptr(&s) as usize;
    registry_write().sets.insert(k, s);
    k
}

/// Forgets a set object (Linux destructor); `true` if it was registered.
pub fn unregister_set(k: usize) -> bool {
    let s = registry_write().sets.remove(&k);
    // Dropped here, outside the registry lock: SetCore's Drop takes it.
    let found = s.is_some();
    drop(s);
    found
}

/// The registered set object at `k`.
pub fn lookup_set(k: usize) -> Option<Arc<SetCore>> {
    registry_read().sets.get(&k).cloned()
}

fn register_device(d: &Arc<DevCore>) {
    registry_write()
        .devices
        .insert(Arc::as_ptr(d) as usize, d.clone());
}

/// The registered device object at `k` (alive while its set object is).
pub fn lookup_device(k: usize) -> Option<Arc<DevCore>> {
    registry_read().devices.get(&k).cloned()
}

// ----- names -------------------------------------------------------------------------

/// Decodes UTF-8 code units (a Linux `char*` name, NUL excluded).
pub fn name_from_utf8(units: &[u8]) -> Result<String, Hresult> {
    std::str::from_utf8(units)
        .map(str::to_string)
        .map_err(|_| Hresult::VD_E_INVALID)
}

/// Decodes UTF-16 code units (a wide name, NUL excluded). Unpaired
/// surrogates are refused.
pub fn name_from_utf16(units: &[u16]) -> Result<String, Hresult> {
    String::from_utf16(units).map_err(|_| Hresult::VD_E_INVALID)
}

/// A Linux timeout (`time_t` ms; negative waits forever), with the number
/// as passed.
pub fn linux_timeout(v: i64) -> Wait {
    Wait::linux(v)
}

/// A Windows timeout (DWORD ms; `INFINITE` waits forever), with the number
/// as passed.
pub fn dword_timeout(v: u32) -> Wait {
    Wait::dword(v)
}
