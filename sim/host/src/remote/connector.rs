//! The library's side of the channel: each set incarnation connects to the
//! server process, says hello, and then a reader thread delivers the server
//! half's messages into the runtime while the transport writes the client
//! half's.

use super::shm::ClientMap;
use super::stream::{Address, Stream};
use super::wire::{self, Frame, PROTOCOL, Refusal};
use crate::runtime::{Connection, Connector, NameInUse, NewSet, SetRuntime, Transport};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::Duration;
use vdi_model::msg::{Cmd, ToClient, ToServer};
use vdi_spec::{Hresult, VdConfig};

/// How long the hello may take before the server counts as unreachable.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects every set incarnation to `vdisim serve`. With no server
/// reachable, the set is created anyway and no configuration ever arrives
/// (as VDI with no SQL Server), and one line on stderr says how to start one.
pub struct RemoteConnector {
    /// Fixed address; `None`: [`super::server_address`] at each connect.
    addr: Option<Address>,
    said: Once,
}

impl RemoteConnector {
    /// A connector reading the address from the environment at each Create.
    pub fn from_env() -> RemoteConnector {
        RemoteConnector {
            addr: None,
            said: Once::new(),
        }
    }

    /// A connector to the server socket at `path`.
    #[cfg(unix)]
    pub fn at(path: std::path::PathBuf) -> RemoteConnector {
        RemoteConnector::to(Address::Unix(path))
    }

    /// A connector to the server at `addr` (a socket, or a TCP bridge).
    pub fn to(addr: Address) -> RemoteConnector {
        RemoteConnector {
            addr: Some(addr),
            said: Once::new(),
        }
    }
}

struct Link {
    stream: Mutex<Stream>,
    /// The client is done with this incarnation (its transport dropped): an
    /// end of stream is not a server death.
    ending: AtomicBool,
    /// A secondary's replay has been delivered ([`Frame::Replayed`], or
    /// the stream ended); always true for a primary.
    replayed: Mutex<bool>,
    caught_up: std::sync::Condvar,
}

impl Link {
    fn new(stream: Stream, replayed: bool) -> Link {
        Link {
            stream: Mutex::new(stream),
            ending: AtomicBool::new(false),
            replayed: Mutex::new(replayed),
            caught_up: std::sync::Condvar::new(),
        }
    }

    fn replay_done(&self) {
        *self.replayed.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.caught_up.notify_all();
    }
}

struct RemoteTransport {
    link: Arc<Link>,
    /// The server asked for fetch reports.
    fetches: bool,
    /// The connection's reader thread, joined (for at most
    /// [`READER_JOIN`]) when the transport goes: the set's last Release
    /// returns with no thread of the library still running, so a program
    /// may exit (or COM unload the DLL) right after it.
    reader: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// How long dropping a transport waits for its reader thread to end after
/// shutting the socket down (the read returns at once; the bound only
/// covers a thread the system does not schedule).
const READER_JOIN: std::time::Duration = std::time::Duration::from_secs(2);

impl RemoteTransport {
    fn new(link: Arc<Link>, fetches: bool, reader: std::thread::JoinHandle<()>) -> RemoteTransport {
        RemoteTransport {
            link,
            fetches,
            reader: Mutex::new(Some(reader)),
        }
    }
}

impl Transport for RemoteTransport {
    fn send(&self, msg: ToServer) {
        let mut s = self.link.stream.lock().unwrap_or_else(|e| e.into_inner());
        // A write that fails means the server is gone; the reader sees the
        // end of stream and reports it.
        let _ = wire::write_frame(&mut *s, &Frame::ToServer { msg });
    }

    fn caught_up(&self, within: std::time::Duration) -> bool {
        let g = self.link.replayed.lock().unwrap_or_else(|e| e.into_inner());
        let (g, _) = self
            .link
            .caught_up
            .wait_timeout_while(g, within, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        *g
    }

    fn fetched(&self, cmd: &Cmd) {
        if !self.fetches {
            return;
        }
        let mut s = self.link.stream.lock().unwrap_or_else(|e| e.into_inner());
        let _ = wire::write_frame(
            &mut *s,
            &Frame::Fetched {
                dev: cmd.dev,
                code: cmd.code,
            },
        );
    }
}

impl Drop for RemoteTransport {
    fn drop(&mut self) {
        self.link.ending.store(true, Ordering::SeqCst);
        {
            let s = self.link.stream.lock().unwrap_or_else(|e| e.into_inner());
            let _ = s.shutdown();
        }
        let handle = self
            .reader
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // The reader itself may drop the last reference (through the
        // runtime it upgraded): it does not wait for itself.
        let Some(h) = handle.filter(|h| h.thread().id() != std::thread::current().id()) else {
            return;
        };
        let start = std::time::Instant::now();
        while !h.is_finished() && start.elapsed() < READER_JOIN {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if h.is_finished() {
            let _ = h.join();
        }
    }
}

/// Why a hello did not lead to a connection.
enum Hello {
    /// The server refused the name.
    NameInUse,
    /// No server, or it refused for another reason.
    Failed(io::Error),
}

impl From<io::Error> for Hello {
    fn from(e: io::Error) -> Hello {
        Hello::Failed(e)
    }
}

/// Says hello for `set`; the stream, and whether the server wants fetch
/// reports.
fn hello(addr: &Address, set: &NewSet) -> Result<(Stream, bool), Hello> {
    let mut s = addr.connect()?;
    s.set_timeouts(Some(HELLO_TIMEOUT))?;
    wire::write_frame(
        &mut s,
        &Frame::HelloSet {
            protocol: PROTOCOL,
            pid: std::process::id(),
            name: set.name.clone(),
            cfg: set.cfg,
        },
    )?;
    let fetches = match wire::read_frame(&mut s)? {
        Some(Frame::Welcome { fetches, .. }) => fetches,
        Some(Frame::Refused {
            why: Refusal::NameInUse,
            ..
        }) => return Err(Hello::NameInUse),
        Some(Frame::Refused { reason, .. }) => return Err(io::Error::other(reason).into()),
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected answer to hello: {other:?}"),
            )
            .into());
        }
    };
    s.set_timeouts(None)?;
    Ok((s, fetches))
}

fn reader(mut s: Stream, link: Arc<Link>, map: Arc<ClientMap>, rt: Weak<SetRuntime>, inc: u32) {
    loop {
        let f = wire::read_frame(&mut s);
        match f {
            Ok(Some(Frame::ToClient { msg })) => match rt.upgrade() {
                Some(rt) => rt.deliver_from(inc, msg),
                None => return,
            },
            Ok(Some(Frame::Map(m))) => {
                let chunk = m.chunk;
                if let Err(e) = map.add(m) {
                    eprintln!("vdisim: cannot map the server's buffer memory: {e}");
                }
                let mut w = link.stream.lock().unwrap_or_else(|e| e.into_inner());
                let _ = wire::write_frame(&mut *w, &Frame::Mapped { chunk });
            }
            Ok(Some(Frame::SecondaryJoined { .. })) => match rt.upgrade() {
                Some(rt) => rt.share_devices(inc),
                None => return,
            },
            Ok(Some(Frame::Replayed)) => link.replay_done(),
            Ok(Some(Frame::CompletedElsewhere { dev, id })) => match rt.upgrade() {
                Some(rt) => rt.completed_elsewhere(inc, dev, id),
                None => return,
            },
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                link.replay_done();
                if !link.ending.load(Ordering::SeqCst)
                    && let Some(rt) = rt.upgrade()
                {
                    // The server process is gone (clause abort.server-death).
                    rt.deliver_from(inc, ToClient::Died);
                }
                return;
            }
        }
    }
}

impl Connector for RemoteConnector {
    fn connect(&self, runtime: Weak<SetRuntime>, set: &NewSet) -> Connection {
        self.connect_named(runtime, set)
            .unwrap_or_else(|_| Connection::none())
    }

    fn connect_named(
        &self,
        runtime: Weak<SetRuntime>,
        set: &NewSet,
    ) -> Result<Connection, NameInUse> {
        let addr = self.addr.clone().unwrap_or_else(super::server_address);
        let (s, fetches) = match hello(&addr, set) {
            Ok(s) => s,
            Err(Hello::NameInUse) => return Err(NameInUse),
            Err(Hello::Failed(e)) => {
                self.said.call_once(|| {
                    eprintln!(
                        "vdisim: no server at {addr} ({e}); the set is created but no configuration will arrive. Start one with `vdisim serve` (or point {} at its socket), or set {}=<plan.toml> for an in-process server",
                        super::ENV_SERVER,
                        crate::plan::ENV_PLAN
                    )
                });
                return Ok(Connection::none());
            }
        };
        let (read, write) = match s.try_clone() {
            Ok(r) => (r, s),
            Err(_) => return Ok(Connection::none()),
        };
        let link = Arc::new(Link::new(write, true));
        let map = Arc::new(ClientMap::default());
        let (l2, m2, inc) = (link.clone(), map.clone(), set.incarnation);
        let spawned = std::thread::Builder::new()
            .name("vdisim-remote".into())
            .spawn(move || reader(read, l2, m2, runtime, inc));
        let Ok(handle) = spawned else {
            return Ok(Connection::none());
        };
        Ok(Connection {
            transport: Arc::new(RemoteTransport::new(link, fetches, handle)),
            buffers: Some(map),
        })
    }

    fn connect_secondary(
        &self,
        runtime: Weak<SetRuntime>,
        name: &str,
        prepare: &mut dyn FnMut(VdConfig) -> Option<u32>,
    ) -> Result<Connection, Hresult> {
        let addr = self.addr.clone().unwrap_or_else(super::server_address);
        // No server, no such set, a server too old to know secondaries:
        // from this process the set "has not been created".
        let (s, cfg, fetches) = hello_secondary(&addr, name).map_err(|e| {
            eprintln!("vdisim: OpenInSecondary('{name}') through {addr}: {e}");
            Hresult::VD_E_PROTOCOL
        })?;
        let inc = prepare(cfg).ok_or(Hresult::VD_E_PROTOCOL)?;
        let (read, write) = match s.try_clone() {
            Ok(r) => (r, s),
            Err(_) => return Err(Hresult::VD_E_PROTOCOL),
        };
        let link = Arc::new(Link::new(write, false));
        let map = Arc::new(ClientMap::default());
        let (l2, m2) = (link.clone(), map.clone());
        let handle = std::thread::Builder::new()
            .name("vdisim-secondary".into())
            .spawn(move || reader(read, l2, m2, runtime, inc))
            .map_err(|_| Hresult::VD_E_PROTOCOL)?;
        Ok(Connection {
            transport: Arc::new(RemoteTransport::new(link, fetches, handle)),
            buffers: Some(map),
        })
    }
}

/// Says hello as a secondary of the set `name`: the stream, the primary's
/// configuration, and whether the server wants fetch reports.
fn hello_secondary(addr: &Address, name: &str) -> io::Result<(Stream, VdConfig, bool)> {
    let mut s = addr.connect()?;
    s.set_timeouts(Some(HELLO_TIMEOUT))?;
    wire::write_frame(
        &mut s,
        &Frame::HelloSecondary {
            protocol: PROTOCOL,
            pid: std::process::id(),
            name: name.to_string(),
        },
    )?;
    let (cfg, fetches) = match wire::read_frame(&mut s)? {
        Some(Frame::Joined { cfg, fetches }) => (cfg, fetches),
        Some(Frame::Refused { reason, .. }) => return Err(io::Error::other(reason)),
        None => {
            return Err(io::Error::other(
                "the server ended the connection (a server older than secondary processes)",
            ));
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected answer to a secondary's hello: {other:?}"),
            ));
        }
    };
    s.set_timeouts(None)?;
    Ok((s, cfg, fetches))
}
