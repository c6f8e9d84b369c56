//! Set connections: one per set incarnation in a client process.

use super::secondary::Joined;
use super::*;

/// The host a set's messages go to while one statement holds it.
pub(super) struct Route {
    /// Which host (its address: one host per statement or case).
    host: usize,
    tx: Sender<HostMsg>,
}

/// A set incarnation in a client process, reached over its connection.
pub(super) struct RemoteEnd {
    pub(super) key: SetKey,
    pub(super) cfg: VdConfig,
    /// The creator's process id (from the connection's credentials).
    pub(super) pid: u32,
    pub(super) writer: Mutex<UnixStream>,
    pub(super) pool: ServerPool,
    pub(super) closed: AtomicBool,
    pub(super) dead: AtomicBool,
    /// The host its messages go to, while a statement is bound to it.
    pub(super) route: Mutex<Option<Route>>,
    /// Secondary processes joined to it, and what a new one is replayed
    /// (`secondary.rs`).
    pub(super) joined: Mutex<Joined>,
}

impl RemoteEnd {
    pub(super) fn forward(&self, msg: ToServer) {
        if let Some(r) = &*self.route.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = r.tx.send(HostMsg::Client { key: self.key, msg });
        }
    }

    /// The library reported a fetch (only when the Welcome asked).
    pub(super) fn fetched(&self, dev: DevIx, code: CommandCode) {
        if let Some(r) = &*self.route.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = r.tx.send(HostMsg::Fetched {
                key: self.key,
                dev,
                code,
            });
        }
    }
}

impl SetEnd for RemoteEnd {
    fn deliver(&self, msg: ToClient) {
        // Joins wait while a message goes out, so a secondary gets each
        // message once: in its replay or as it comes.
        let mut j = lock(&self.joined);
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut maps = Vec::new();
        let msg = match msg {
            ToClient::Command(mut c) => {
                if c.buffer.is_some() {
                    maps = self.pool.take_announcements();
                    for m in &maps {
                        let _ = wire::write_frame(&mut *w, &Frame::Map(m.clone()));
                    }
                }
                // The bytes are in the shared buffer; the socket carries
                // only the command block.
                c.data = Content::Empty;
                ToClient::Command(c)
            }
            m => m,
        };
        let _ = wire::write_frame(&mut *w, &Frame::ToClient { msg: msg.clone() });
        drop(w);
        j.broadcast(maps, msg);
    }
    fn live(&self) -> Option<VdConfig> {
        (!self.closed.load(Ordering::SeqCst) && !self.dead.load(Ordering::SeqCst))
            .then_some(self.cfg)
    }
    fn buffers(&self) -> &dyn ServerBuffers {
        &self.pool
    }
}

impl Inner {
    // ----- set connections ---------------------------------------------------------------

    pub(super) fn set_connection(
        self: &Arc<Self>,
        s: UnixStream,
        name: String,
        cfg: VdConfig,
        pid: u32,
    ) {
        let Ok(mut read) = s.try_clone() else { return };
        let key = (self.next_conn.fetch_add(1, Ordering::Relaxed), 0);
        let geo = Geometry::new(
            cfg.prefix_zone_size,
            BUFFER_BYTES,
            cfg.alignment.max(BUFFER_ALIGN),
        );
        let end = Arc::new(RemoteEnd {
            key,
            cfg,
            pid,
            writer: Mutex::new(s),
            pool: ServerPool::new(geo),
            closed: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            route: Mutex::new(None),
            joined: Mutex::new(Joined::default()),
        });
        // Known before the client hears back: a statement sent right after
        // Create returns must find the set. A live set of another process
        // keeps its name (clause create.name-in-use); within one process
        // the library has already checked, and the latest incarnation wins
        // (its Close may still be on the way).
        {
            let mut sets = lock(&self.sets);
            let holder = sets
                .get(&name)
                .filter(|other| other.pid != pid && other.live().is_some())
                .map(|other| other.pid);
            if let Some(holder) = holder {
                drop(sets);
                let mut w = lock(&end.writer);
                let _ = wire::write_frame(
                    &mut *w,
                    &Frame::Refused {
                        reason: format!(
                            "a set named '{name}' is live in process {holder}: choose another name (a GUID is unique)"
                        ),
                        why: Refusal::NameInUse,
                    },
                );
                self.trace_set("name-in-use", &name, pid);
                return;
            }
            sets.insert(name.clone(), end.clone());
        }
        let welcomed = {
            let mut w = lock(&end.writer);
            wire::write_frame(
                &mut *w,
                &Frame::Welcome {
                    server: self.cfg.server_name.clone(),
                    fetches: self.wants_fetches(),
                },
            )
            .is_ok()
        };
        let forget = |me: &Self| {
            let mut sets = lock(&me.sets);
            if sets.get(&name).is_some_and(|e| Arc::ptr_eq(e, &end)) {
                sets.remove(&name);
            }
        };
        if !welcomed {
            forget(self);
            return;
        }
        self.trace_set("created", &name, pid);
        loop {
            match read_frame_timed(
                &mut read,
                wire::MAX_SET_FRAME,
                None,
                self.cfg.frame_deadline,
            ) {
                Ok(Some(Frame::ToServer { msg })) => {
                    if msg == ToServer::Closed {
                        end.closed.store(true, Ordering::SeqCst);
                        forget(self);
                        self.trace_set("closed", &name, pid);
                    } else if msg == ToServer::Died {
                        self.trace_set("client-died", &name, pid);
                    }
                    end.primary_said(&msg);
                    end.forward(msg);
                }
                // The buffer files stay while the set is live, for a
                // secondary that joins later to map (`secondary.rs`).
                Ok(Some(Frame::Mapped { .. })) => {}
                Ok(Some(Frame::Fetched { dev, code })) => end.fetched(dev, code),
                // Only the frames above belong on a set connection: any
                // other is a peer that does not speak the protocol, and
                // ends the connection like a lost one.
                Ok(Some(_)) | Ok(None) | Err(_) => {
                    if !end.closed.load(Ordering::SeqCst) {
                        // The client process died (or dropped the set
                        // without Close): clause abort.client-death.
                        end.dead.store(true, Ordering::SeqCst);
                        end.primary_said(&ToServer::Died);
                        end.forward(ToServer::Died);
                        self.trace_set("connection-lost", &name, pid);
                    }
                    forget(self);
                    end.pool.unlink_all();
                    return;
                }
            }
        }
    }

    /// Binds the live set `name` to `host`: the host learns of it and
    /// its client messages go there.
    pub(super) fn bind(&self, host: &ServerHost, name: &str) -> Option<Arc<RemoteEnd>> {
        let end = lock(&self.sets).get(name).cloned()?;
        let id = std::ptr::from_ref(host) as usize;
        {
            // SQL Server opens a set for one statement at a time: a set
            // another statement's host holds is not there for this one (it
            // fails to open it, Msg 3201), and nothing of it reaches the set.
            let mut route = lock(&end.route);
            if route.as_ref().is_some_and(|r| r.host != id) {
                return None;
            }
            *route = Some(Route {
                host: id,
                tx: host.sender(),
            });
        }
        host.send(HostMsg::Connect {
            key: end.key,
            name: name.to_string(),
            end: end.clone(),
        });
        Some(end)
    }
}
