//! The client half on real threads: one [`ClientSet`] behind a lock and a
//! condition variable, with blocking GetConfiguration / GetCommand that honour
//! real millisecond timeouts, and a [`Transport`] that carries the half's
//! messages to whatever hosts the server half.
//!
//! # How it blocks
//!
//! Every blocking call is *check, then wait, under the same lock*: the pure
//! half is polled with the lock held; if it answers `Pending`, the thread
//! waits on the condition variable, which atomically releases the lock. Every
//! call that can change what a waiter would see (a message delivered, Close,
//! SignalAbort, a completion, Create, OpenDevice) notifies *all* waiters
//! before releasing the lock, so no wakeup is lost; every waiter re-polls
//! after every wake, so spurious wakeups are harmless. A wait with a finite
//! timeout computes its deadline once, from the runtime's clock
//! ([`sync::Clock`]: `Instant` outside loom, a virtual clock moved by
//! `SetRuntime::advance_clock` under loom), and answers the half's
//! `*_timeout()` result once the deadline has passed.
//!
//! # How it talks
//!
//! The half's outgoing messages ([`ClientSet::out`]) are moved, under the
//! lock, to an outbox tagged with the transport of the set incarnation they
//! belong to. The outbox is flushed *after* the lock is released by one
//! thread at a time (the others leave their messages to it), so messages
//! reach the transport in the order the half produced them and a transport
//! may call straight back into [`SetRuntime::deliver`] without deadlock.
//! The only call made with the lock held is [`Connector::connect`], which
//! must therefore not call back synchronously (it gets a [`Weak`] handle and
//! typically spawns a thread).
//!
//! # What it logs
//!
//! With a call log ([`RuntimeConfig::log`], `VDISIM_CLIENT_LOG`), every
//! public API method (`create` ... `complete_command`, and `close_if_open`
//! when it closes a set) writes one record when it returns
//! ([`crate::calllog`]); the record is built outside the runtime's lock.
//! Without one, a call pays one test of an `Option`.

use crate::buffers::BufferMap;
use crate::calllog::{Began, CallLog, ObjectLog, Returned};
use crate::clock::scaled_wait;
use crate::sync::{self, Clock, Condvar, Instant, Mutex, MutexGuard};
use std::collections::{BTreeMap, VecDeque};
use std::ptr::NonNull;
use std::sync::{Arc, Weak};
use vdi_model::calllog::{Api, Args, BlockView, CompletionArg, ConfigView, Produced, TimeoutArg};
use vdi_model::client::{Blocking, ClientSet, DeviceHandle, Namespace, Note, Ret};
use vdi_model::msg::{BufId, Cmd, Timeout, ToClient, ToServer};
use vdi_spec::id;
use vdi_spec::{ClauseId, ClientState, Hresult, Profile, VdConfig, Win32};

/// Where the client half's messages go: the server half's host. `send` is
/// never called with the runtime's lock held, so it may call back into the
/// runtime (for instance deliver a reply at once).
pub trait Transport: Send + Sync {
    /// Sends one message to the server half.
    fn send(&self, msg: ToServer);
    /// Tells the server host that the client fetched `cmd` (GetCommand
    /// returned it), for faults triggered by a fetch. Most hosts do not
    /// listen.
    fn fetched(&self, cmd: &Cmd) {
        let _ = cmd;
    }
    /// A secondary's connection: waits at most `within` until the server's
    /// replay of the set so far has been delivered; whether it was. Other
    /// connections are caught up from the start.
    fn caught_up(&self, within: std::time::Duration) -> bool {
        let _ = within;
        true
    }
}

/// A transport that drops everything: a set with no server.
#[derive(Debug, Default)]
pub struct NullTransport;

impl Transport for NullTransport {
    fn send(&self, _msg: ToServer) {}
}

/// What a [`Connector`] hands back for a new set incarnation.
pub struct Connection {
    /// Where this incarnation's messages go.
    pub transport: Arc<dyn Transport>,
    /// The buffer memory of this incarnation, if it has any.
    pub buffers: Option<Arc<dyn BufferMap>>,
}

impl Connection {
    /// A connection to nowhere: no server will ever configure the set.
    pub fn none() -> Connection {
        Connection {
            transport: Arc::new(NullTransport),
            buffers: None,
        }
    }
}

/// A set that was just created.
#[derive(Clone, Debug)]
pub struct NewSet {
    /// Its incarnation in the runtime (messages from the server must carry it
    /// back through [`SetRuntime::deliver_from`]).
    pub incarnation: u32,
    /// The set's name.
    pub name: String,
    /// The client's configuration as given to Create.
    pub cfg: VdConfig,
}

/// Connects each new set incarnation to a server host. Called with the
/// runtime's lock held: it must not call back into the runtime
/// synchronously (spawn a thread, keep the [`Weak`]).
pub trait Connector: Send + Sync {
    /// The connection for `set`.
    fn connect(&self, runtime: Weak<SetRuntime>, set: &NewSet) -> Connection;

    /// As [`Connector::connect`], or [`NameInUse`] when the server refuses
    /// the set's name because a set in another process holds it (only a
    /// server that many processes share can; clause `create.name-in-use`).
    fn connect_named(
        &self,
        runtime: Weak<SetRuntime>,
        set: &NewSet,
    ) -> Result<Connection, NameInUse> {
        Ok(self.connect(runtime, set))
    }

    /// Joins the live set `name` of another process as a secondary
    /// (`OpenInSecondary` in a process where no set exists): `prepare`
    /// creates the local half with the primary's configuration and returns
    /// its incarnation, before any message of the set is delivered. Only a
    /// server that many processes share can; the others answer
    /// VD_E_PROTOCOL (the set "has not been created" in this process).
    fn connect_secondary(
        &self,
        _runtime: Weak<SetRuntime>,
        _name: &str,
        _prepare: &mut dyn FnMut(VdConfig) -> Option<u32>,
    ) -> Result<Connection, Hresult> {
        Err(Hresult::VD_E_PROTOCOL)
    }
}

/// The server refused a new set's name: a live set in another process has
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameInUse;

/// A connector that never connects: every set waits for a server that never
/// comes.
#[derive(Debug, Default)]
pub struct NoServer;

impl Connector for NoServer {
    fn connect(&self, _runtime: Weak<SetRuntime>, _set: &NewSet) -> Connection {
        Connection::none()
    }
}

/// A write into the read-only command block, seen at CompleteCommand (clause
/// `complete-command.read-only-block`). The call is not refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockModification {
    /// Set incarnation.
    pub incarnation: u32,
    /// Device index.
    pub dev: u16,
    /// Command id.
    pub id: u64,
    /// `(commandCode, size, position, buffer)` as delivered.
    pub delivered: (u32, u32, u64, usize),
    /// The same fields as the client handed the block back.
    pub completed: (u32, u32, u64, usize),
}

/// Modifications and notes kept per runtime (bounds).
pub const MAX_KEPT: usize = 1024;

/// How `Create` was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateKind<'a> {
    /// `Create` (legacy / Linux): no instance check.
    Create,
    /// `CreateEx(instance, ...)`: `None` is the default instance.
    CreateEx(Option<&'a str>),
}

/// A timeout as the program passed it: the wait, and the number itself
/// (a Linux `time_t`, negative for ever; a Windows DWORD, INFINITE for
/// ever), which the call log keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// How long to wait.
    pub timeout: Timeout,
    /// The number the program passed.
    pub raw: i64,
}

impl Wait {
    /// A Linux `time_t` timeout (negative waits forever).
    pub fn linux(v: i64) -> Wait {
        Wait {
            timeout: Timeout::from_linux(v),
            raw: v,
        }
    }

    /// A Windows DWORD timeout (`INFINITE` waits forever).
    pub fn dword(v: u32) -> Wait {
        Wait {
            timeout: Timeout::from_dword(v),
            raw: i64::from(v),
        }
    }
}

impl From<Timeout> for Wait {
    /// A timeout given as a value: its milliseconds, or -1 for ever.
    fn from(t: Timeout) -> Wait {
        let raw = match t {
            Timeout::Ms(ms) => i64::try_from(ms).unwrap_or(i64::MAX),
            Timeout::Infinite => -1,
        };
        Wait { timeout: t, raw }
    }
}

struct Inner {
    client: ClientSet,
    outbox: VecDeque<(Arc<dyn Transport>, Outgoing)>,
    flushing: bool,
    conn: Option<Connection>,
    mods: VecDeque<BlockModification>,
    mods_total: u64,
    notes: VecDeque<Note>,
    /// The client process "died" (harness `client_death`): nothing from
    /// the server reaches the half any more.
    dead: bool,
    /// The set is another process's, joined by OpenInSecondary: its name
    /// is the primary's, never claimed or released here.
    joined: bool,
}

/// What leaves the runtime for the server host, in order.
enum Outgoing {
    /// A message of the client half.
    Msg(ToServer),
    /// The client fetched a command (a report for fault triggers).
    Fetched(Cmd),
}

/// One client set object's half, shared by every thread that uses it.
pub struct SetRuntime {
    inner: Mutex<Inner>,
    cond: Condvar,
    clock: Clock,
    /// Virtual milliseconds per real millisecond for the set's timeouts
    /// (0 or 1: real time); see [`scaled_wait`].
    scale: u32,
    connector: Arc<dyn Connector>,
    tally: Option<Arc<Tally>>,
    /// This object's part of the call log, if one is written.
    log: Option<ObjectLog>,
}

impl std::fmt::Debug for SetRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetRuntime").finish_non_exhaustive()
    }
}

// ----- the process-wide namespace of set names ----------------------------------------

static NAMES: std::sync::Mutex<BTreeMap<String, VdConfig>> = std::sync::Mutex::new(BTreeMap::new());

fn names() -> std::sync::MutexGuard<'static, BTreeMap<String, VdConfig>> {
    NAMES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The namespace of set names shared by every set object of the process (the
/// stand-in's counterpart of the OS namespace of shared-memory objects).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessNamespace;

impl Namespace for ProcessNamespace {
    fn claim(&mut self, name: &str, cfg: &VdConfig) -> bool {
        let mut n = names();
        if n.contains_key(name) {
            return false;
        }
        n.insert(name.to_string(), *cfg);
        true
    }
    fn release(&mut self, name: &str) {
        names().remove(name);
    }
}

impl ProcessNamespace {
    /// The client configuration of the live set called `name`, as
    /// `IServerVirtualDeviceSet2::Open` would find it.
    pub fn lookup(name: &str) -> Option<VdConfig> {
        names().get(name).copied()
    }
}

// ----- clause tally (harness cases) -----------------------------------------------------

/// Where a runtime counts the clauses its client half cites (calls and
/// notes): the harness case's tally, reported in its observation.
#[derive(Debug, Default)]
pub struct Tally {
    counts: std::sync::Mutex<BTreeMap<&'static str, u64>>,
}

impl Tally {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, u64>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one citation of `clause`.
    pub fn cite(&self, clause: ClauseId) {
        *self.lock().entry(clause.as_str()).or_default() += 1;
    }

    /// Takes the counts so far (clause id → citations).
    pub fn take(&self) -> BTreeMap<&'static str, u64> {
        std::mem::take(&mut *self.lock())
    }
}

fn deadline(clock: &Clock, timeout: Timeout, scale: u32) -> Option<Instant> {
    match timeout {
        Timeout::Infinite => None,
        // A deadline too far to represent is forever.
        Timeout::Ms(ms) => clock.now().checked_add(scaled_wait(ms, scale)),
    }
}

/// How a runtime is connected and timed.
#[derive(Clone)]
pub struct RuntimeConfig {
    /// The model profile of the client half.
    pub profile: Arc<Profile>,
    /// Connects each set incarnation to a server host.
    pub connector: Arc<dyn Connector>,
    /// Virtual milliseconds per real millisecond for the set's timeouts
    /// (0 or 1: real time); see [`scaled_wait`].
    pub scale: u32,
    /// Where the clauses the half cites are counted, if anywhere.
    pub tally: Option<Arc<Tally>>,
    /// The call log every API call of the runtime is written to, if any
    /// (`VDISIM_CLIENT_LOG`).
    pub log: Option<Arc<CallLog>>,
}

impl SetRuntime {
    /// A runtime with no set (DNE) under `profile`; each Create is connected
    /// through `connector`; real time, no tally.
    pub fn new(profile: Arc<Profile>, connector: Arc<dyn Connector>) -> Arc<SetRuntime> {
        SetRuntime::with_config(RuntimeConfig {
            profile,
            connector,
            scale: 1,
            tally: None,
            log: None,
        })
    }

    /// A runtime as `c` says: GetConfiguration / GetCommand timeouts on a
    /// clock running `c.scale` virtual ms per real ms (a timeout of T ms
    /// waits [`scaled_wait`]`(T, scale)`; 0 still polls, INFINITE still
    /// waits forever).
    pub fn with_config(c: RuntimeConfig) -> Arc<SetRuntime> {
        let mut client = ClientSet::new(c.profile);
        client.tracing = true;
        Arc::new(SetRuntime {
            inner: Mutex::new(Inner {
                client,
                outbox: VecDeque::new(),
                flushing: false,
                conn: None,
                mods: VecDeque::new(),
                mods_total: 0,
                notes: VecDeque::new(),
                dead: false,
                joined: false,
            }),
            cond: Condvar::new(),
            clock: Clock::new(),
            scale: c.scale,
            connector: c.connector,
            tally: c.tally,
            log: c.log.map(|l| ObjectLog::new(l, c.scale)),
        })
    }

    fn counted<T>(&self, r: Ret<T>) -> Ret<T> {
        if let Some(t) = &self.tally {
            t.cite(r.clause);
        }
        r
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        sync::lock(&self.inner)
    }

    /// Ends a call: moves the half's messages and notes out, wakes every
    /// waiter, releases the lock, flushes the outbox.
    fn finish(&self, mut g: MutexGuard<'_, Inner>) {
        let g2 = &mut *g;
        if !g2.client.out.is_empty() {
            let t = g2
                .conn
                .as_ref()
                .map(|c| c.transport.clone())
                .unwrap_or_else(|| Arc::new(NullTransport));
            for m in g2.client.out.drain(..) {
                g2.outbox.push_back((t.clone(), Outgoing::Msg(m)));
            }
        }
        for n in g2.client.notes.drain(..) {
            if let Some(t) = &self.tally {
                t.cite(n.clause);
            }
            if g2.notes.len() == MAX_KEPT {
                g2.notes.pop_front();
            }
            g2.notes.push_back(n);
        }
        self.cond.notify_all();
        drop(g);
        self.flush();
    }

    /// Sends the outbox, one flusher at a time, without the lock.
    fn flush(&self) {
        loop {
            let batch: Vec<_> = {
                let mut g = self.lock();
                if g.flushing || g.outbox.is_empty() {
                    return;
                }
                g.flushing = true;
                g.outbox.drain(..).collect()
            };
            // A panicking transport must not leave `flushing` set (every
            // later message would stay in the outbox): reset, then re-raise.
            let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for (t, m) in batch {
                    match m {
                        Outgoing::Msg(m) => t.send(m),
                        Outgoing::Fetched(c) => t.fetched(&c),
                    }
                }
            }));
            self.lock().flushing = false;
            if let Err(p) = sent {
                std::panic::resume_unwind(p);
            }
        }
    }

    /// Runs `f` on the half under the lock, then ends the call.
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut g = self.lock();
        let v = f(&mut g);
        self.finish(g);
        v
    }

    /// Blocks until `poll` is ready or the timeout passes (then `expired`).
    /// `poll` runs with the lock held, first at once and again after every
    /// wake. Timeout 0 polls exactly once.
    pub fn block_on<T>(
        &self,
        timeout: Timeout,
        mut poll: impl FnMut(&mut ClientSet) -> Blocking<T>,
        expired: impl FnOnce(&ClientSet) -> T,
    ) -> T {
        self.block_on_inner(timeout, |g| poll(&mut g.client), |g| expired(&g.client))
    }

    /// [`SetRuntime::block_on`] with the whole locked state.
    fn block_on_inner<T>(
        &self,
        timeout: Timeout,
        mut poll: impl FnMut(&mut Inner) -> Blocking<T>,
        expired: impl FnOnce(&Inner) -> T,
    ) -> T {
        let dl = deadline(&self.clock, timeout, self.scale);
        let mut g = self.lock();
        loop {
            if let Blocking::Ready(v) = poll(&mut g) {
                self.finish(g);
                return v;
            }
            match dl {
                None => g = sync::wait(&self.cond, g),
                Some(d) => {
                    let now = self.clock.now();
                    if now >= d {
                        let v = expired(&g);
                        self.finish(g);
                        return v;
                    }
                    g = sync::wait_timeout(&self.cond, g, d - now);
                }
            }
        }
    }

    /// Loom models only: time passes by `d` on the virtual clock — the
    /// expiry of a timer. Done under the lock and followed by a wake of
    /// every waiter, as the OS timer of a real `wait_timeout` would wake its
    /// waiter: a waiter whose deadline has passed then answers its timeout.
    #[cfg(loom)]
    pub fn advance_clock(&self, d: std::time::Duration) {
        let g = self.lock();
        self.clock.advance(d);
        self.cond.notify_all();
        drop(g);
    }

    // ----- IClientVirtualDeviceSet2 ---------------------------------------------------

    /// `Create` / `CreateEx`. On success the new incarnation is connected
    /// through the connector.
    pub fn create(self: &Arc<Self>, kind: CreateKind<'_>, name: &str, cfg: &VdConfig) -> Ret<()> {
        let began = self.began();
        let mut g = self.lock();
        let mut ns = ProcessNamespace;
        let r = match kind {
            CreateKind::Create => g.client.create(name, cfg, &mut ns),
            CreateKind::CreateEx(i) => g.client.create_ex(i, name, cfg, &mut ns),
        };
        let mut r = r;
        let mut replaced = None;
        if r.result.is_ok() {
            let set = NewSet {
                incarnation: g.client.incarnation(),
                name: name.to_string(),
                cfg: *cfg,
            };
            match self.connector.connect_named(Arc::downgrade(self), &set) {
                Ok(c) => replaced = g.conn.replace(c),
                Err(NameInUse) => r = g.client.refuse_name(&mut ns),
            }
        }
        self.finish(g);
        // The previous incarnation's connection goes outside the lock: its
        // transport waits for its reader thread, which may be waiting for
        // the lock to deliver a last message.
        drop(replaced);
        let r = self.counted(r);
        if let Some(b) = began {
            let (method, instance) = match kind {
                CreateKind::Create => (Api::Create, None),
                CreateKind::CreateEx(i) => (Api::CreateEx, i.map(str::to_string)),
            };
            let args = Args {
                name: Some(name.to_string()),
                instance,
                config: Some(ConfigView::of(cfg)),
                ..Args::default()
            };
            self.log_set_call(b, method, args, &r, None);
        }
        r
    }

    /// `GetConfiguration`, waiting up to `timeout`.
    pub fn get_configuration(&self, timeout: impl Into<Wait>) -> Ret<VdConfig> {
        let w = timeout.into();
        let began = self.began();
        let r = self.counted(self.block_on(
            w.timeout,
            |c| c.get_configuration(),
            |c| c.get_configuration_timeout(),
        ));
        if let Some(b) = began {
            let args = Args {
                timeout: Some(TimeoutArg::new(w.timeout, w.raw)),
                ..Args::default()
            };
            let v = r
                .result
                .as_ref()
                .ok()
                .map(|c| Produced::Config(ConfigView::of(c)));
            self.log_set_call(b, Api::GetConfiguration, args, &r, v);
        }
        r
    }

    /// `OpenDevice`.
    pub fn open_device(&self, name: &str) -> Ret<DeviceHandle> {
        let began = self.began();
        let r = self.counted(self.with(|g| g.client.open_device(name)));
        if let Some(b) = began {
            let args = Args {
                name: Some(name.to_string()),
                ..Args::default()
            };
            let v = r.result.as_ref().ok().map(|h| Produced::Device(h.index));
            self.log_set_call(b, Api::OpenDevice, args, &r, v);
        }
        r
    }

    /// `Close`. Wakes every blocked call (they then see the set gone).
    pub fn close(&self) -> Ret<()> {
        let began = self.began();
        self.settle_shared_close();
        let r = self.counted(self.with(|g| g.close()));
        if let Some(b) = began {
            self.log_set_call(b, Api::Close, Args::default(), &r, None);
        }
        r
    }

    /// Closes the set if one exists (object destruction); `None` if there
    /// was nothing to close. Logged as `Destroy` when it closes one.
    pub fn close_if_open(&self) -> Option<Ret<()>> {
        let began = self.began();
        let r = self.with(|g| (g.client.state() != ClientState::Dne).then(|| g.close()));
        if let (Some(b), Some(r)) = (began, &r) {
            self.log_set_call(b, Api::Destroy, Args::default(), r, None);
        }
        r
    }

    /// `SignalAbort`. Wakes every blocked call (they then see VD_E_ABORT).
    pub fn signal_abort(&self) -> Ret<()> {
        let began = self.began();
        let r = self.counted(self.with(|g| g.client.signal_abort()));
        if let Some(b) = began {
            self.log_set_call(b, Api::SignalAbort, Args::default(), &r, None);
        }
        r
    }

    /// `OpenInSecondary(Ex)` as secondary `secondary`: of this object's set
    /// when it has one, else of another process's set through the server
    /// ([`Connector::connect_secondary`], `runtime/secondary.rs`).
    pub fn open_in_secondary(self: &Arc<Self>, secondary: u32, name: &str) -> Ret<()> {
        let began = self.began();
        let r = self.counted(self.open_in_secondary_inner(secondary, name));
        if let Some(b) = began {
            let args = Args {
                name: Some(name.to_string()),
                ..Args::default()
            };
            self.log_set_call(b, Api::OpenInSecondary, args, &r, None);
        }
        r
    }

    /// `GetBufferHandle` for a buffer address.
    pub fn get_buffer_handle(&self, addr: usize) -> Ret<u32> {
        let began = self.began();
        let r = self.counted(self.with(|g| {
            let id = g
                .conn
                .as_ref()
                .and_then(|c| c.buffers.as_ref())
                .and_then(|b| b.lookup(addr));
            // An address that is no buffer of ours maps to an id that never
            // names one, so the half answers VD_E_INVALID.
            g.client
                .get_buffer_handle(Some(id.unwrap_or(BufId(u32::MAX))))
        }));
        if let Some(b) = began {
            let v = r.result.as_ref().ok().map(|h| Produced::Handle(*h));
            self.log_set_call(b, Api::GetBufferHandle, Args::default(), &r, v);
        }
        r
    }

    /// `MapBufferHandle`: the address of the buffer behind `handle`.
    pub fn map_buffer_handle(&self, handle: u32) -> Ret<usize> {
        let began = self.began();
        let r = self.counted(self.with(|g| {
            let r = g.client.map_buffer_handle(handle);
            let addr = match &r.result {
                Ok(id) => g
                    .conn
                    .as_ref()
                    .and_then(|c| c.buffers.as_ref())
                    .and_then(|b| b.address(*id)),
                Err(_) => None,
            };
            match (r.result, addr) {
                (Ok(_), Some(a)) => Ret {
                    result: Ok(a.as_ptr() as usize),
                    clause: r.clause,
                    cell: r.cell,
                },
                (Ok(_), None) => Ret {
                    result: Err(Hresult::VD_E_INVALID),
                    clause: id::BUFFER_HANDLE_INVALID,
                    cell: r.cell,
                },
                (Err(e), _) => Ret {
                    result: Err(e),
                    clause: r.clause,
                    cell: r.cell,
                },
            }
        }));
        if let Some(b) = began {
            let args = Args {
                handle: Some(handle),
                ..Args::default()
            };
            self.log_set_call(b, Api::MapBufferHandle, args, &r, None);
        }
        r
    }

    // ----- IClientVirtualDevice -------------------------------------------------------

    /// `GetCommand` on device `h`, waiting up to `timeout`. A command
    /// fetched is reported to the server host (for faults a fetch
    /// triggers), ahead of anything the call itself sends.
    pub fn get_command(&self, h: DeviceHandle, timeout: impl Into<Wait>) -> Ret<Cmd> {
        let w = timeout.into();
        let began = self.began();
        let poll = w.timeout == Timeout::Ms(0);
        let r = self.block_on_inner(
            w.timeout,
            |g| {
                let r = g.client.get_command(h);
                if let Blocking::Ready(Ret { result: Ok(c), .. }) = &r
                    && let Some(conn) = &g.conn
                {
                    g.outbox
                        .push_back((conn.transport.clone(), Outgoing::Fetched(c.clone())));
                }
                r
            },
            |g| g.client.get_command_timeout(poll),
        );
        let r = self.counted(r);
        if let Some(b) = began {
            self.log_get_command(b, h, w, &r);
        }
        r
    }

    /// `CompleteCommand`: `seen` is the block as the client handed it back.
    pub fn complete_command(
        &self,
        h: DeviceHandle,
        seen: &Cmd,
        code: Win32,
        bytes: u64,
        position: u64,
    ) -> Ret<()> {
        let began = self.began();
        let r = self.counted(self.with(|g| {
            g.client.complete_command(
                h,
                seen,
                code,
                bytes,
                position,
                vdi_model::content::Content::Empty,
            )
        }));
        if let Some(b) = began {
            let k = CompletionArg::new(code, bytes, position);
            self.log_complete(b, h, seen, k, &r);
        }
        r
    }

    // ----- the call log ---------------------------------------------------------------

    /// A call begins: its log entry's start, when a log is written.
    #[inline]
    fn began(&self) -> Option<Began> {
        self.log.as_ref().map(ObjectLog::begin)
    }

    /// Logs a call on the set object (the incarnation is the object's now).
    #[cold]
    #[inline(never)]
    fn log_set_call<T>(
        &self,
        b: Began,
        method: Api,
        args: Args,
        r: &Ret<T>,
        value: Option<Produced>,
    ) {
        let Some(l) = &self.log else { return };
        let ret = Returned {
            incarnation: self.incarnation(),
            code: r.code(),
            clause: r.clause,
            value,
            block_modified: None,
        };
        l.record(b, method, args, ret);
    }

    #[cold]
    #[inline(never)]
    fn log_get_command(&self, b: Began, h: DeviceHandle, w: Wait, r: &Ret<Cmd>) {
        let Some(l) = &self.log else { return };
        let value = r.result.as_ref().ok().map(|c| {
            l.fetch(h.incarnation, h.index, c);
            Produced::Command(vdi_model::calllog::CommandView::of(c))
        });
        let args = Args {
            device: Some(h.index),
            timeout: Some(TimeoutArg::new(w.timeout, w.raw)),
            ..Args::default()
        };
        let ret = Returned {
            incarnation: h.incarnation,
            code: r.code(),
            clause: r.clause,
            value,
            block_modified: None,
        };
        l.record(b, Api::GetCommand, args, ret);
    }

    /// Logs a CompleteCommand: the command as delivered, the completion,
    /// and whether the block handed back differs from it (an ABI face marks
    /// a changed buffer pointer with buffer id `u32::MAX`).
    #[cold]
    #[inline(never)]
    fn log_complete(&self, b: Began, h: DeviceHandle, seen: &Cmd, k: CompletionArg, r: &Ret<()>) {
        let Some(l) = &self.log else { return };
        let done = r.code() == Hresult::NOERROR;
        let command = l.command(h.incarnation, h.index, seen.id.0, done);
        let moved = seen.buffer == Some(BufId(u32::MAX));
        let modified = match &command {
            Some(c) => {
                moved
                    || (c.code, c.size, c.position) != (seen.code as u32, seen.size, seen.position)
            }
            None => r.clause == id::COMPLETE_COMMAND_READ_ONLY_BLOCK,
        };
        let args = Args {
            device: Some(h.index),
            command,
            completion: Some(k),
            handed_back: modified.then_some(BlockView {
                code: seen.code as u32,
                size: seen.size,
                position: seen.position,
                buffer_changed: moved,
            }),
            ..Args::default()
        };
        let ret = Returned {
            incarnation: h.incarnation,
            code: r.code(),
            clause: r.clause,
            value: None,
            block_modified: Some(modified),
        };
        l.record(b, Api::CompleteCommand, args, ret);
    }

    // ----- the server side ------------------------------------------------------------

    /// A message from the server half for the current incarnation.
    pub fn deliver(&self, msg: ToClient) {
        self.with(|g| {
            if !g.dead {
                g.client.deliver(msg);
            }
        });
    }

    /// A message from the server half of incarnation `incarnation`; dropped
    /// if the set has been closed (and perhaps created again) since.
    pub fn deliver_from(&self, incarnation: u32, msg: ToClient) {
        self.with(|g| {
            if !g.dead && g.client.incarnation() == incarnation {
                g.client.deliver(msg);
            }
        });
    }

    /// The client process dies (clause `abort.client-death`, as the model's
    /// world applies it): if a set exists, the server is told
    /// ([`ToServer::Died`], as the OS would on process exit) and the name is
    /// released; from now on nothing from the server reaches the half.
    /// Calls still blocked are left to whoever tears the object down.
    pub fn die(&self) {
        let mut g = self.lock();
        if g.dead {
            return;
        }
        g.dead = true;
        if g.client.state() != ClientState::Dne {
            let name = g.client.name().to_string();
            if !g.joined {
                ProcessNamespace.release(&name);
            }
            let t = g
                .conn
                .as_ref()
                .map(|c| c.transport.clone())
                .unwrap_or_else(|| Arc::new(NullTransport));
            g.outbox.push_back((t, Outgoing::Msg(ToServer::Died)));
        }
        drop(g);
        self.flush();
    }

    // ----- introspection --------------------------------------------------------------

    /// The data-zone address of buffer `id` of the current incarnation.
    pub fn buffer_address(&self, id: Option<BufId>) -> Option<NonNull<u8>> {
        let g = self.lock();
        let b = g.conn.as_ref()?.buffers.as_ref()?;
        b.address(id?)
    }

    /// Whether `instance` names an instance CreateEx would accept (the
    /// profile's `instances`, `""` per `empty-instance-is-default`):
    /// NOERROR or VD_E_INSTANCE_NAME.
    pub fn check_instance(&self, instance: &str) -> Hresult {
        let g = self.lock();
        let p = g.client.profile();
        let ok = if instance.is_empty() {
            p.empty_instance_is_default
        } else {
            p.instances.iter().any(|k| k.eq_ignore_ascii_case(instance))
        };
        if ok {
            Hresult::NOERROR
        } else {
            Hresult::VD_E_INSTANCE_NAME
        }
    }

    /// The set state (client view).
    pub fn state(&self) -> ClientState {
        self.lock().client.state()
    }

    /// The current set incarnation.
    pub fn incarnation(&self) -> u32 {
        self.lock().client.incarnation()
    }

    /// The set's name (empty before the first Create).
    pub fn name(&self) -> String {
        self.lock().client.name().to_string()
    }

    /// Records a write into a read-only command block.
    pub fn record_modification(&self, m: BlockModification) {
        let mut g = self.lock();
        g.mods_total += 1;
        if g.mods.len() == MAX_KEPT {
            g.mods.pop_front();
        }
        g.mods.push_back(m);
    }

    /// The last [`MAX_KEPT`] command-block modifications, and how many
    /// there were in all.
    pub fn modifications(&self) -> (Vec<BlockModification>, u64) {
        let g = self.lock();
        (g.mods.iter().cloned().collect(), g.mods_total)
    }

    /// The half's last [`MAX_KEPT`] internal events (for traces and tests).
    pub fn notes(&self) -> Vec<Note> {
        self.lock().notes.iter().cloned().collect()
    }
}

mod secondary;
#[cfg(all(test, not(loom)))]
mod tests;
