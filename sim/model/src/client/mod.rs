//! The client half: one `IClientVirtualDeviceSet2` object and its devices,
//! every method a pure transition (vdi-spec.md §2.1, §2.2, §4.1-§4.3).
//!
//! Blocking methods (GetConfiguration, GetCommand) return [`Blocking::Pending`]
//! when they would wait; whoever runs the half (the simulator's world, or
//! the stand-in library's runtime) owns time and re-polls when a message
//! arrives or answers VD_E_TIMEOUT when the timeout elapses.
//!
//! Messages for the server accumulate in [`ClientSet::out`]; messages from
//! the server enter through [`ClientSet::deliver`]. Each method returns a
//! [`Ret`] naming the clause that decided the result and the transition-table
//! cell it exercised, for traces and coverage.
//!
//! Every public transition runs between two checks of the half's invariants
//! (`invariants.rs`, debug builds only).

use crate::content::Content;
use crate::msg::{BufId, Cmd, Completion, DevIx, ToClient, ToServer};
use crate::mutation::Mutation;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use vdi_spec::id;
use vdi_spec::profile::{
    AfterDeviceClosed, CloseWithOpenDevices, CompletionOrder, OpenDevicePrecedence,
};
use vdi_spec::{
    ClauseId, ClientState, CommandCode, Hresult, Profile, TableMethod, VdConfig, Win32,
};

mod invariants;
mod shared;

/// A device interface returned by OpenDevice. It names the set incarnation
/// it came from, so use after Close is detected (clause
/// `close.invalidates-devices`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct DeviceHandle {
    pub incarnation: u32,
    pub index: DevIx,
}

/// The result of a method that may wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocking<T> {
    Ready(T),
    Pending,
}

/// A method's result, the clause that decided it, and the client-table cell
/// (method, state before the call) it exercised, if it is a table method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ret<T> {
    pub result: Result<T, Hresult>,
    pub clause: ClauseId,
    pub cell: Option<(TableMethod, ClientState)>,
}

impl<T> Ret<T> {
    /// The HRESULT the method returns (`NOERROR` on success).
    pub fn code(&self) -> Hresult {
        match &self.result {
            Ok(_) => Hresult::NOERROR,
            Err(c) => *c,
        }
    }
}

/// Where set names live (the OS namespace of shared-memory objects): a name
/// can be held by one live set at a time.
pub trait Namespace {
    /// Claims `name` for a new set with client configuration `cfg`; `false`
    /// if a live set already holds it.
    fn claim(&mut self, name: &str, cfg: &VdConfig) -> bool;
    /// Releases `name` (Close).
    fn release(&mut self, name: &str);
}

/// An internal event of the half, for the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub what: &'static str,
    pub detail: String,
    pub clause: ClauseId,
}

#[derive(Clone, Debug, Default)]
struct Device {
    name: String,
    opened: bool,
    /// VD_E_CLOSE has been returned to the client.
    close_seen: bool,
    /// CloseDevice arrived from the server.
    server_closed: bool,
    /// Commands arrived and not yet fetched by GetCommand.
    queue: VecDeque<Cmd>,
    /// Commands fetched and not yet completed, as delivered.
    outstanding: Vec<Cmd>,
    io_error: bool,
    held_clear_error: Option<Cmd>,
}

/// The client half of one set object.
#[derive(Debug)]
pub struct ClientSet {
    profile: Arc<Profile>,
    state: ClientState,
    incarnation: u32,
    name: String,
    cfg: VdConfig,
    server_cfg: Option<VdConfig>,
    devices: Vec<Device>,
    abort_sent: bool,
    server_gone: bool,
    secondaries: BTreeSet<u32>,
    /// The set's devices are served by several processes (a secondary
    /// joined it from another process): see [`ClientSet::share_devices`].
    shared: bool,
    buffers_seen: BTreeSet<BufId>,
    /// Messages for the server, oldest first. The owner drains it.
    pub out: Vec<ToServer>,
    /// Internal events, when [`ClientSet::tracing`] is on. The owner drains it.
    pub notes: Vec<Note>,
    /// Whether to record [`Note`]s.
    pub tracing: bool,
    /// A deliberately broken rule (test-only; [`Mutation::None`] by default).
    mutation: Mutation,
}

fn ok<T>(v: T, clause: ClauseId, cell: Option<(TableMethod, ClientState)>) -> Ret<T> {
    Ret {
        result: Ok(v),
        clause,
        cell,
    }
}

fn err<T>(c: Hresult, clause: ClauseId, cell: Option<(TableMethod, ClientState)>) -> Ret<T> {
    Ret {
        result: Err(c),
        clause,
        cell,
    }
}

/// Whether a set name may name an OS object: not empty, no backslash (field
/// notes row 17; vdi-spec.md §1.2).
pub fn legal_set_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('\\')
}

impl ClientSet {
    /// A fresh object with no set (state DNE).
    pub fn new(profile: Arc<Profile>) -> ClientSet {
        ClientSet {
            profile,
            state: ClientState::Dne,
            incarnation: 0,
            name: String::new(),
            cfg: VdConfig::default(),
            server_cfg: None,
            devices: Vec::new(),
            abort_sent: false,
            server_gone: false,
            secondaries: BTreeSet::new(),
            shared: false,
            buffers_seen: BTreeSet::new(),
            out: Vec::new(),
            notes: Vec::new(),
            tracing: false,
            mutation: Mutation::None,
        }
    }

    /// Breaks one rule on purpose (test-only: see [`crate::mutation`]).
    pub fn set_mutation(&mut self, m: Mutation) {
        self.mutation = m;
    }

    pub fn state(&self) -> ClientState {
        self.state
    }
    pub fn profile(&self) -> &Profile {
        &self.profile
    }
    /// The current set incarnation (increments with each successful Create).
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The configuration the client gave to Create.
    pub fn client_config(&self) -> &VdConfig {
        &self.cfg
    }
    /// Device names, once configuration has arrived.
    pub fn device_names(&self) -> Vec<&str> {
        self.devices.iter().map(|d| d.name.as_str()).collect()
    }
    /// Commands fetched and not completed on device `dev`.
    pub fn outstanding(&self, dev: DevIx) -> usize {
        self.devices
            .get(dev as usize)
            .map_or(0, |d| d.outstanding.len())
    }
    /// Whether device `dev` is in IO-ERROR (client view).
    pub fn io_error(&self, dev: DevIx) -> bool {
        self.devices.get(dev as usize).is_some_and(|d| d.io_error)
    }

    fn note(&mut self, what: &'static str, clause: ClauseId, detail: impl FnOnce() -> String) {
        if self.tracing {
            self.notes.push(Note {
                what,
                detail: detail(),
                clause,
            });
        }
    }

    fn cell(&self, m: TableMethod) -> Option<(TableMethod, ClientState)> {
        Some((m, self.state))
    }

    // ----- IClientVirtualDeviceSet2 -------------------------------------------------------

    /// `Create` (and `CreateEx` after its instance check).
    pub fn create(&mut self, name: &str, cfg: &VdConfig, ns: &mut dyn Namespace) -> Ret<()> {
        self.transition(|s| s.create_inner(name, cfg, ns))
    }

    /// [`ClientSet::create`] without the invariant checks around it.
    fn create_inner(&mut self, name: &str, cfg: &VdConfig, ns: &mut dyn Namespace) -> Ret<()> {
        let cell = self.cell(TableMethod::Create);
        if self.state != ClientState::Dne {
            return err(Hresult::VD_E_PROTOCOL, id::CREATE_ALREADY_EXISTS, cell);
        }
        if cfg.validate_client().is_err() {
            return err(Hresult::VD_E_NOTSUPPORTED, id::CREATE_CONFIG_INVALID, cell);
        }
        if !legal_set_name(name) {
            return err(
                self.profile.create_illegal_name_code,
                id::CREATE_ILLEGAL_NAME,
                cell,
            );
        }
        if !ns.claim(name, cfg) {
            return err(
                self.profile.create_name_in_use_code,
                id::CREATE_NAME_IN_USE,
                cell,
            );
        }
        self.state = ClientState::Configurable;
        self.incarnation += 1;
        self.name = name.to_string();
        self.cfg = *cfg;
        self.server_cfg = None;
        self.devices.clear();
        self.abort_sent = false;
        self.server_gone = false;
        self.secondaries.clear();
        self.buffers_seen.clear();
        let clause = if self.incarnation > 1 {
            id::CLOSE_REUSE
        } else {
            id::CREATE_OK
        };
        ok((), clause, cell)
    }

    /// The server refused the name right after Create claimed it in this
    /// process: a live set in another process holds it (clause
    /// `create.name-in-use`). The Create fails as it does for a name in use
    /// in this process, and there is no set; the incarnation number stays
    /// used.
    pub fn refuse_name(&mut self, ns: &mut dyn Namespace) -> Ret<()> {
        self.transition(|s| {
            debug_assert_eq!(
                s.state,
                ClientState::Configurable,
                "a name is refused right after Create"
            );
            ns.release(&s.name);
            s.state = ClientState::Dne;
            s.name.clear();
            err(
                s.profile.create_name_in_use_code,
                id::CREATE_NAME_IN_USE,
                Some((TableMethod::Create, ClientState::Dne)),
            )
        })
    }

    /// `CreateEx`: `instance` `None` is the default instance (clause
    /// `create-ex.null-instance`).
    pub fn create_ex(
        &mut self,
        instance: Option<&str>,
        name: &str,
        cfg: &VdConfig,
        ns: &mut dyn Namespace,
    ) -> Ret<()> {
        self.transition(|s| s.create_ex_inner(instance, name, cfg, ns))
    }

    /// [`ClientSet::create_ex`] without the invariant checks around it.
    fn create_ex_inner(
        &mut self,
        instance: Option<&str>,
        name: &str,
        cfg: &VdConfig,
        ns: &mut dyn Namespace,
    ) -> Ret<()> {
        let cell = self.cell(TableMethod::Create);
        if self.state == ClientState::Dne {
            match instance {
                None => {}
                Some("") if self.profile.empty_instance_is_default => {}
                Some("") => {
                    return err(
                        Hresult::VD_E_INSTANCE_NAME,
                        id::CREATE_EX_EMPTY_INSTANCE,
                        cell,
                    );
                }
                Some(i)
                    if !self
                        .profile
                        .instances
                        .iter()
                        .any(|k| k.eq_ignore_ascii_case(i)) =>
                {
                    return err(
                        Hresult::VD_E_INSTANCE_NAME,
                        id::CREATE_EX_INSTANCE_NAME,
                        cell,
                    );
                }
                Some(_) => {}
            }
        }
        let r = self.create_inner(name, cfg, ns);
        if r.result.is_ok() {
            let clause = match instance {
                None => id::CREATE_EX_NULL_INSTANCE,
                Some("") => id::CREATE_EX_EMPTY_INSTANCE,
                Some(_) => id::CREATE_EX_NAMED_INSTANCE,
            };
            self.note("Instance", clause, || {
                format!("instance {instance:?} accepted")
            });
        }
        r
    }

    /// `GetConfiguration`. Pending while the server has not configured the set.
    pub fn get_configuration(&mut self) -> Blocking<Ret<VdConfig>> {
        self.transition(|s| s.get_configuration_inner())
    }

    /// [`ClientSet::get_configuration`] without the invariant checks around it.
    fn get_configuration_inner(&mut self) -> Blocking<Ret<VdConfig>> {
        let cell = self.cell(TableMethod::GetConfiguration);
        Blocking::Ready(match self.state {
            ClientState::Dne => err(
                Hresult::VD_E_PROTOCOL,
                id::TABLE_GET_CONFIGURATION_DNE,
                cell,
            ),
            ClientState::Abort => err(Hresult::VD_E_ABORT, id::GET_CONFIGURATION_ABORT, cell),
            ClientState::Configurable => match self.server_cfg {
                Some(c) => {
                    self.state = ClientState::Initializing;
                    ok(c, id::GET_CONFIGURATION_WAITS, cell)
                }
                None => return Blocking::Pending,
            },
            _ => match self.server_cfg {
                Some(c) => ok(c, id::GET_CONFIGURATION_REPEAT, cell),
                None => err(Hresult::VD_E_UNEXPECTED, id::GET_CONFIGURATION_REPEAT, cell),
            },
        })
    }

    /// What a GetConfiguration that waited `timeout` without result returns
    /// (clause `get-configuration.timeout`: the set stays Configurable).
    pub fn get_configuration_timeout(&self) -> Ret<VdConfig> {
        err(
            Hresult::VD_E_TIMEOUT,
            id::GET_CONFIGURATION_TIMEOUT,
            Some((TableMethod::GetConfiguration, self.state)),
        )
    }

    /// `OpenDevice`.
    pub fn open_device(&mut self, name: &str) -> Ret<DeviceHandle> {
        self.transition(|s| s.open_device_inner(name))
    }

    /// [`ClientSet::open_device`] without the invariant checks around it.
    fn open_device_inner(&mut self, name: &str) -> Ret<DeviceHandle> {
        // §4.2.1: the set is Initializing for OpenDevice purposes until every
        // device is open.
        let some_unopened = self.devices.iter().any(|d| !d.opened);
        let cell_state = if self.state == ClientState::Active && some_unopened {
            ClientState::Initializing
        } else {
            self.state
        };
        let cell = Some((TableMethod::OpenDevice, cell_state));
        match self.state {
            ClientState::Abort => return err(Hresult::VD_E_ABORT, id::OPEN_DEVICE_ABORT, cell),
            ClientState::Initializing | ClientState::Active => {}
            _ => return err(Hresult::VD_E_PROTOCOL, id::OPEN_DEVICE_WRONG_STATE, cell),
        }
        let idx = self.devices.iter().position(|d| d.name == name);
        let all_open = self.devices.iter().all(|d| d.opened);
        let this_open = idx.is_some_and(|i| self.devices[i].opened);
        match self.profile.open_device_precedence {
            OpenDevicePrecedence::AllOpenFirst => {
                if all_open {
                    return err(Hresult::VD_E_OPEN, id::OPEN_DEVICE_ALL_OPEN, cell);
                }
                if idx.is_none() {
                    return err(Hresult::VD_E_INVALID, id::OPEN_DEVICE_INVALID_NAME, cell);
                }
                if this_open {
                    return err(Hresult::VD_E_PROTOCOL, id::OPEN_DEVICE_ALREADY_OPEN, cell);
                }
            }
            OpenDevicePrecedence::ThisDeviceFirst => {
                if idx.is_none() {
                    return err(Hresult::VD_E_INVALID, id::OPEN_DEVICE_INVALID_NAME, cell);
                }
                if this_open {
                    return err(Hresult::VD_E_PROTOCOL, id::OPEN_DEVICE_ALREADY_OPEN, cell);
                }
                if all_open {
                    return err(Hresult::VD_E_OPEN, id::OPEN_DEVICE_ALL_OPEN, cell);
                }
            }
        }
        let i = idx.unwrap_or_default();
        debug_assert!(!self.devices[i].opened, "OpenDevice opens a device once");
        self.devices[i].opened = true;
        self.state = ClientState::Active;
        let clause = if i == 0 {
            id::OPEN_DEVICE_FIRST_IS_SET_NAME
        } else {
            id::OPEN_DEVICE_OK
        };
        ok(
            DeviceHandle {
                incarnation: self.incarnation,
                index: i as DevIx,
            },
            clause,
            cell,
        )
    }

    /// `Close`.
    pub fn close(&mut self, ns: &mut dyn Namespace) -> Ret<()> {
        self.transition(|s| s.close_inner(ns))
    }

    /// [`ClientSet::close`] without the invariant checks around it.
    fn close_inner(&mut self, ns: &mut dyn Namespace) -> Ret<()> {
        let cell = self.cell(TableMethod::Close);
        let (code, clause) = match self.state {
            ClientState::Dne => return err(Hresult::VD_E_PROTOCOL, id::CLOSE_NOT_OPEN, cell),
            ClientState::Active if self.shared && self.finished_here() => {
                (Hresult::NOERROR, id::OPEN_IN_SECONDARY_OK)
            }
            ClientState::Active => {
                // Some device has not returned VD_E_CLOSE yet (otherwise the
                // set would be NormallyTerminated).
                if !self.abort_sent {
                    self.abort_sent = true;
                    self.out.push(ToServer::Abort);
                }
                let code = match self.profile.close_with_open_devices {
                    CloseWithOpenDevices::VdEOpen => Hresult::VD_E_OPEN,
                    CloseWithOpenDevices::Noerror => Hresult::NOERROR,
                };
                self.note("InternalAbort", id::CLOSE_DEVICES_OPEN, || {
                    "Close with devices open signals abort".into()
                });
                (code, id::CLOSE_DEVICES_OPEN)
            }
            ClientState::NormallyTerminated => (Hresult::NOERROR, id::CLOSE_ALL_FINISHED),
            ClientState::Abort => (Hresult::NOERROR, id::CLOSE_WAIT_FOR_CLOSE),
            ClientState::Configurable => (Hresult::NOERROR, id::TABLE_CLOSE_CONFIGURABLE),
            ClientState::Initializing => (Hresult::NOERROR, id::TABLE_CLOSE_INITIALIZING),
        };
        self.out.push(ToServer::Closed);
        ns.release(&self.name);
        self.state = ClientState::Dne;
        self.devices.clear();
        self.server_cfg = None;
        self.secondaries.clear();
        self.shared = false;
        Ret {
            result: if code == Hresult::NOERROR {
                Ok(())
            } else {
                Err(code)
            },
            clause,
            cell,
        }
    }

    /// `SignalAbort`.
    pub fn signal_abort(&mut self) -> Ret<()> {
        self.transition(|s| s.signal_abort_inner())
    }

    /// [`ClientSet::signal_abort`] without the invariant checks around it.
    fn signal_abort_inner(&mut self) -> Ret<()> {
        let cell = self.cell(TableMethod::SignalAbort);
        match self.state {
            ClientState::Dne => err(Hresult::VD_E_PROTOCOL, id::SIGNAL_ABORT_DNE, cell),
            ClientState::Abort => ok((), id::SIGNAL_ABORT_OK, cell),
            _ => {
                self.enter_abort();
                if !self.abort_sent {
                    self.abort_sent = true;
                    self.out.push(ToServer::Abort);
                }
                ok((), id::SIGNAL_ABORT_OK, cell)
            }
        }
    }

    fn enter_abort(&mut self) {
        self.state = ClientState::Abort;
        for d in &mut self.devices {
            d.queue.clear();
            d.held_clear_error = None;
        }
    }

    /// `OpenInSecondary(Ex)` from secondary process `secondary`. The
    /// secondary shares this set's device table (a simplification: the
    /// model does not give secondaries their own view of buffers).
    pub fn open_in_secondary(&mut self, secondary: u32, name: &str) -> Ret<()> {
        self.transition(|s| s.open_in_secondary_inner(secondary, name))
    }

    /// [`ClientSet::open_in_secondary`] without the invariant checks around it.
    fn open_in_secondary_inner(&mut self, secondary: u32, name: &str) -> Ret<()> {
        match self.state {
            ClientState::Abort => err(Hresult::VD_E_ABORT, id::OPEN_IN_SECONDARY_ABORT, None),
            ClientState::Initializing | ClientState::Active if name == self.name => {
                if self.secondaries.insert(secondary) {
                    ok((), id::OPEN_IN_SECONDARY_OK, None)
                } else {
                    err(Hresult::VD_E_PROTOCOL, id::OPEN_IN_SECONDARY_PROTOCOL, None)
                }
            }
            _ => err(Hresult::VD_E_PROTOCOL, id::OPEN_IN_SECONDARY_PROTOCOL, None),
        }
    }

    /// `GetBufferHandle`: a process-independent handle for a buffer address.
    pub fn get_buffer_handle(&self, buf: Option<BufId>) -> Ret<u32> {
        if self.state == ClientState::Dne {
            return err(Hresult::VD_E_PROTOCOL, id::BUFFER_HANDLE_PROTOCOL, None);
        }
        match buf {
            Some(b) if self.buffers_seen.contains(&b) => {
                ok(b.0.wrapping_add(1), id::BUFFER_HANDLE_ROUNDTRIP, None)
            }
            _ => err(Hresult::VD_E_INVALID, id::BUFFER_HANDLE_INVALID, None),
        }
    }

    /// `MapBufferHandle`.
    pub fn map_buffer_handle(&self, handle: u32) -> Ret<BufId> {
        if self.state == ClientState::Dne {
            return err(Hresult::VD_E_PROTOCOL, id::BUFFER_HANDLE_PROTOCOL, None);
        }
        let b = BufId(handle.wrapping_sub(1));
        if handle != 0 && self.buffers_seen.contains(&b) {
            ok(b, id::BUFFER_HANDLE_ROUNDTRIP, None)
        } else {
            err(Hresult::VD_E_INVALID, id::BUFFER_HANDLE_INVALID, None)
        }
    }

    // ----- IClientVirtualDevice -----------------------------------------------------------

    fn device_check(&self, h: DeviceHandle, m: TableMethod) -> Result<usize, Ret<()>> {
        let cell = self.cell(m);
        let live = h.incarnation == self.incarnation && self.state != ClientState::Dne;
        if !live || h.index as usize >= self.devices.len() || !self.devices[h.index as usize].opened
        {
            return Err(err(
                self.profile.use_after_close_code,
                id::CLOSE_INVALIDATES_DEVICES,
                cell,
            ));
        }
        match self.state {
            ClientState::Abort => {
                let clause = if m == TableMethod::GetCommand {
                    id::GET_COMMAND_ABORT
                } else {
                    id::COMPLETE_COMMAND_ABORT
                };
                Err(err(Hresult::VD_E_ABORT, clause, cell))
            }
            ClientState::Active => Ok(h.index as usize),
            _ => {
                let clause = if m == TableMethod::GetCommand {
                    id::GET_COMMAND_WRONG_STATE
                } else {
                    id::COMPLETE_COMMAND_WRONG_STATE
                };
                Err(err(Hresult::VD_E_PROTOCOL, clause, cell))
            }
        }
    }

    /// `GetCommand`. Pending while nothing is queued and the device is open.
    pub fn get_command(&mut self, h: DeviceHandle) -> Blocking<Ret<Cmd>> {
        self.transition(|s| s.get_command_inner(h))
    }

    /// [`ClientSet::get_command`] without the invariant checks around it.
    fn get_command_inner(&mut self, h: DeviceHandle) -> Blocking<Ret<Cmd>> {
        let cell = self.cell(TableMethod::GetCommand);
        let i = match self.device_check(h, TableMethod::GetCommand) {
            Ok(i) => i,
            Err(_)
                if self.mutation == Mutation::CloseLeavesGetCommandBlocked
                    && self.state == ClientState::Dne
                    && h.incarnation == self.incarnation =>
            {
                // The mutant: a GetCommand on a device of the set just
                // closed waits (forever) instead of being answered.
                return Blocking::Pending;
            }
            Err(r) => {
                return Blocking::Ready(Ret {
                    result: Err(r.code()),
                    clause: r.clause,
                    cell: r.cell,
                });
            }
        };
        let d = &mut self.devices[i];
        if d.close_seen {
            return Blocking::Ready(match self.profile.get_command_after_device_closed {
                AfterDeviceClosed::Close => err(
                    Hresult::VD_E_CLOSE,
                    id::GET_COMMAND_AFTER_DEVICE_CLOSED,
                    cell,
                ),
                AfterDeviceClosed::Protocol => err(
                    Hresult::VD_E_PROTOCOL,
                    id::GET_COMMAND_AFTER_DEVICE_CLOSED,
                    cell,
                ),
            });
        }
        if d.outstanding.is_empty()
            && let Some(c) = d.held_clear_error.take()
        {
            d.outstanding.push(c.clone());
            return Blocking::Ready(ok(c, id::IO_ERROR_CLEAR_ERROR_AFTER_OUTSTANDING, cell));
        }
        if d.held_clear_error.is_none()
            && let Some(c) = d.queue.pop_front()
        {
            if let Some(b) = c.buffer {
                self.buffers_seen.insert(b);
            }
            let clause = if d.outstanding.is_empty() {
                id::GET_COMMAND_OK
            } else {
                id::GET_COMMAND_SEVERAL_OUTSTANDING
            };
            d.outstanding.push(c.clone());
            return Blocking::Ready(ok(c, clause, cell));
        }
        if d.server_closed && d.held_clear_error.is_none() {
            debug_assert!(
                d.queue.is_empty(),
                "VD_E_CLOSE only once the queue is drained"
            );
            d.close_seen = true;
            if self.devices.iter().all(|d| d.close_seen) {
                self.state = ClientState::NormallyTerminated;
                return Blocking::Ready(err(
                    Hresult::VD_E_CLOSE,
                    id::TERM_NORMALLY_TERMINATED,
                    cell,
                ));
            }
            return Blocking::Ready(err(Hresult::VD_E_CLOSE, id::GET_COMMAND_CLOSE, cell));
        }
        Blocking::Pending
    }

    /// What a GetCommand that waited its timeout without result returns
    /// (clause `get-command.timeout`; with timeout 0, `get-command.poll`).
    pub fn get_command_timeout(&self, poll: bool) -> Ret<Cmd> {
        let clause = if poll {
            id::GET_COMMAND_POLL
        } else {
            id::GET_COMMAND_TIMEOUT
        };
        err(
            Hresult::VD_E_TIMEOUT,
            clause,
            Some((TableMethod::GetCommand, self.state)),
        )
    }

    /// `CompleteCommand`. `seen` is the command block as the client holds it
    /// at completion; a difference from what was delivered is recorded
    /// (clause `complete-command.read-only-block`). `data` is what the client
    /// put into the buffer (Read).
    pub fn complete_command(
        &mut self,
        h: DeviceHandle,
        seen: &Cmd,
        code: Win32,
        bytes: u64,
        position: u64,
        data: Content,
    ) -> Ret<()> {
        self.transition(|s| s.complete_command_inner(h, seen, code, bytes, position, data))
    }

    /// [`ClientSet::complete_command`] without the invariant checks around it.
    fn complete_command_inner(
        &mut self,
        h: DeviceHandle,
        seen: &Cmd,
        code: Win32,
        bytes: u64,
        position: u64,
        data: Content,
    ) -> Ret<()> {
        let cell = self.cell(TableMethod::CompleteCommand);
        let i = match self.device_check(h, TableMethod::CompleteCommand) {
            Ok(i) => i,
            Err(r) => return r,
        };
        let d = &mut self.devices[i];
        let Some(pos) = d.outstanding.iter().position(|c| c.id == seen.id) else {
            return err(Hresult::VD_E_INVALID, id::COMPLETE_COMMAND_INVALID, cell);
        };
        if pos != 0 && self.profile.completion_order == CompletionOrder::InOrder {
            return err(Hresult::VD_E_INVALID, id::COMPLETE_COMMAND_ORDER, cell);
        }
        let orig = d.outstanding.remove(pos);
        debug_assert!(
            d.outstanding.iter().all(|c| c.id != orig.id),
            "a completed command is no longer outstanding"
        );
        let tampered = orig.block() != seen.block();
        let data = if orig.code == CommandCode::Read {
            data.slice(0, bytes)
        } else {
            Content::Empty
        };
        self.out.push(ToServer::Completed(Completion {
            id: orig.id,
            dev: orig.dev,
            code,
            bytes,
            position,
            data,
            auto: false,
        }));
        if tampered {
            self.note(
                "CommandBlockModified",
                id::COMPLETE_COMMAND_READ_ONLY_BLOCK,
                || {
                    format!(
                        "dev={i} id={} delivered {:?} completed-with {:?}",
                        orig.id.0,
                        orig.block(),
                        seen.block()
                    )
                },
            );
        }
        let enters = self.enters_io_error(code);
        let d = &mut self.devices[i];
        if orig.code == CommandCode::ClearError && code == Win32::ERROR_SUCCESS && d.io_error {
            d.io_error = false;
            self.note("IoErrorCleared", id::IO_ERROR_CLEAR_ERROR_SUCCESS, || {
                format!("dev={i}")
            });
        } else if enters && !d.io_error {
            d.io_error = true;
            let queued: Vec<Cmd> = d.queue.drain(..).collect();
            self.note("IoError", id::IO_ERROR_ENTER, || {
                format!("dev={i} code={code} queued={}", queued.len())
            });
            for c in queued {
                self.auto_complete(c);
            }
        }
        let clause = if tampered {
            id::COMPLETE_COMMAND_READ_ONLY_BLOCK
        } else {
            id::COMPLETE_COMMAND_OK
        };
        ok((), clause, cell)
    }

    fn enters_io_error(&self, code: Win32) -> bool {
        match code {
            Win32::ERROR_SUCCESS => false,
            Win32::ERROR_NOT_SUPPORTED => self.profile.not_supported_enters_io_error,
            Win32::ERROR_HANDLE_EOF | Win32::ERROR_NO_DATA_DETECTED => {
                self.profile.eof_enters_io_error
            }
            _ => true,
        }
    }

    /// Completes a command the client never saw with ERROR_IO_DEVICE (clause
    /// `io-error.reject-new`), or holds a ClearError.
    fn auto_complete(&mut self, c: Cmd) {
        let i = c.dev as usize;
        debug_assert!(
            self.devices[i].io_error,
            "only a device in IO-ERROR auto-completes"
        );
        if c.code == CommandCode::ClearError {
            self.devices[i].held_clear_error = Some(c);
            return;
        }
        self.note("AutoComplete", id::IO_ERROR_REJECT_NEW, || {
            format!(
                "dev={} id={} {} -> ERROR_IO_DEVICE",
                c.dev,
                c.id.0,
                c.code.name()
            )
        });
        self.out.push(ToServer::Completed(Completion {
            id: c.id,
            dev: c.dev,
            code: Win32::ERROR_IO_DEVICE,
            bytes: 0,
            position: 0,
            data: Content::Empty,
            auto: true,
        }));
    }

    // ----- messages from the server -------------------------------------------------------

    /// Takes one message from the server.
    pub fn deliver(&mut self, msg: ToClient) {
        self.transition(|s| s.deliver_inner(msg))
    }

    /// [`ClientSet::deliver`] without the invariant checks around it.
    fn deliver_inner(&mut self, msg: ToClient) {
        if self.state == ClientState::Dne {
            return;
        }
        match msg {
            ToClient::Configured { cfg, devices } => {
                if self.server_cfg.is_none() && devices.len() > self.cfg.device_count as usize {
                    // A server that names more devices than deviceCount
                    // (clause config.device-count) is not believed: the set
                    // stays unconfigured and GetConfiguration times out.
                    // Found by the `shm` fuzz target.
                    let (named, count) = (devices.len(), self.cfg.device_count);
                    self.note("ConfigurationRefused", id::CONFIG_DEVICE_COUNT, || {
                        format!("{named} devices named, deviceCount {count}")
                    });
                    return;
                }
                if self.server_cfg.is_none() {
                    self.server_cfg = Some(cfg);
                    self.devices = devices
                        .into_iter()
                        .map(|name| Device {
                            name,
                            ..Device::default()
                        })
                        .collect();
                }
            }
            ToClient::Command(c) => {
                if self.state == ClientState::Abort {
                    return;
                }
                if c.dev as usize >= self.devices.len() {
                    return;
                }
                if self.holds(&c) {
                    // A server that sends an id or a buffer the client still
                    // holds is not believed (clause
                    // complete-command.returns-buffer: a buffer is the
                    // client's until it completes the command). Found by
                    // the `shm` fuzz target.
                    let (dev, cid) = (c.dev, c.id.0);
                    self.note(
                        "CommandRefused",
                        id::COMPLETE_COMMAND_RETURNS_BUFFER,
                        || format!("dev={dev} id={cid}: its id or buffer is held"),
                    );
                    return;
                }
                self.note_shared_buffer(&c);
                let d = &mut self.devices[c.dev as usize];
                if d.io_error {
                    self.auto_complete(c);
                } else if c.code == CommandCode::ClearError && !d.outstanding.is_empty() {
                    d.held_clear_error = Some(c);
                } else {
                    d.queue.push_back(c);
                }
            }
            ToClient::CloseDevice { dev } => {
                if let Some(d) = self.devices.get_mut(dev as usize) {
                    d.server_closed = true;
                }
            }
            ToClient::Abort => {
                if self.state != ClientState::Abort {
                    self.note("ServerAbort", id::ABORT_SERVER_SIGNAL, String::new);
                    self.enter_abort();
                }
            }
            ToClient::Died => {
                self.server_gone = true;
                if self.state != ClientState::Abort {
                    self.note("ServerDied", id::ABORT_SERVER_DEATH, String::new);
                    self.enter_abort();
                }
            }
        }
    }

    /// Whether a command with `c`'s id or buffer is held (queued,
    /// outstanding or a held ClearError) by any device.
    fn holds(&self, c: &Cmd) -> bool {
        self.devices.iter().any(|d| {
            d.queue
                .iter()
                .chain(&d.outstanding)
                .chain(&d.held_clear_error)
                .any(|h| h.id == c.id || (c.buffer.is_some() && h.buffer == c.buffer))
        })
    }

    /// Whether the server process is known to be gone.
    pub fn server_gone(&self) -> bool {
        self.server_gone
    }
}

#[cfg(test)]
mod tests;
