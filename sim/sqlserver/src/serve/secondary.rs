//! Secondary processes (vdi-spec.md §1.5, Process Model; clauses
//! `open-in-secondary.ok`, `abort.secondary-death-undetected`): a client
//! process that calls `OpenInSecondary` with the name of a live set of
//! another process connects here with [`Frame::HelloSecondary`] and joins
//! the set.
//!
//! What the server half sends the set goes to the primary and to every
//! secondary alike (as with real VDI, where both see the set's shared
//! memory): each process's library keeps the devices' queues, and a device
//! is served by the process that opened it. A secondary that joins late is
//! replayed the set's configuration, its buffer maps and the commands not
//! yet completed. Completions and aborts from a secondary go to the server
//! half as the primary's do; an abort of either side reaches the others. A
//! secondary's Close or death ends only its connection: VDI does not notice
//! a secondary that died (`abort.secondary-death-undetected`), and the
//! commands it held stay unanswered.
//!
//! Bounds: [`MAX_SECONDARIES`] processes per set; a set keeps at most
//! [`MAX_REPLAY`] messages for late joiners (beyond that a join is refused,
//! saying so).

use super::*;
use std::collections::HashSet;
use vdi_host::remote::wire::MapChunk;
use vdi_model::msg::CmdId;

/// Secondary processes a set accepts.
pub const MAX_SECONDARIES: usize = 64;

/// Messages a set keeps for the replay to a secondary that joins late.
pub const MAX_REPLAY: usize = 1 << 20;

/// A joined secondary process.
struct SecondaryEnd {
    writer: Mutex<UnixStream>,
    gone: AtomicBool,
}

impl SecondaryEnd {
    fn write(&self, f: &Frame) {
        let mut w = lock(&self.writer);
        if wire::write_frame(&mut *w, f).is_err() {
            self.gone.store(true, Ordering::SeqCst);
        }
    }
}

/// A set's secondaries and its replay.
#[derive(Default)]
pub(super) struct Joined {
    secondaries: Vec<Arc<SecondaryEnd>>,
    /// Every buffer chunk announced so far.
    maps: Vec<MapChunk>,
    /// The set's messages so far (commands without data).
    history: Vec<ToClient>,
    /// More than [`MAX_REPLAY`] messages: no replay is complete any more.
    overflow: bool,
    /// Commands completed (by any process): not replayed.
    completed: HashSet<CmdId>,
}

impl Joined {
    /// A message the primary was just sent (after `maps`, if any): to every
    /// secondary, and kept for the replay.
    pub(super) fn broadcast(&mut self, maps: Vec<MapChunk>, msg: ToClient) {
        self.secondaries.retain(|s| !s.gone.load(Ordering::SeqCst));
        for s in &self.secondaries {
            for m in &maps {
                s.write(&Frame::Map(m.clone()));
            }
            s.write(&Frame::ToClient { msg: msg.clone() });
        }
        self.maps.extend(maps);
        if self.history.len() < MAX_REPLAY {
            self.history.push(msg);
        } else {
            self.overflow = true;
        }
    }

    /// Tells every secondary but `except` that command `c` was completed.
    fn completed(&mut self, c: &vdi_model::msg::Completion, except: Option<*const SecondaryEnd>) {
        self.completed.insert(c.id);
        let f = Frame::CompletedElsewhere {
            dev: c.dev,
            id: c.id.0,
        };
        for s in &self.secondaries {
            if Some(Arc::as_ptr(s)) != except {
                s.write(&f);
            }
        }
    }

    /// Tells every secondary but `except` (a pointer to one) that the set
    /// was aborted.
    fn abort_others(&self, except: Option<*const SecondaryEnd>) {
        let f = Frame::ToClient {
            msg: ToClient::Abort,
        };
        for s in &self.secondaries {
            if Some(Arc::as_ptr(s)) != except {
                s.write(&f);
            }
        }
    }

    fn configured(&self) -> bool {
        self.history
            .iter()
            .any(|m| matches!(m, ToClient::Configured { .. }))
    }
}

impl RemoteEnd {
    /// What the primary's library sent the server half, as the secondaries
    /// must learn it: a completion is not replayed; an abort, a Close or
    /// the primary's death aborts their view of the set.
    pub(super) fn primary_said(&self, msg: &ToServer) {
        let mut j = lock(&self.joined);
        match msg {
            ToServer::Completed(c) => j.completed(c, None),
            ToServer::Abort | ToServer::Closed | ToServer::Died => {
                j.abort_others(None);
                if *msg != ToServer::Abort {
                    j.secondaries.clear();
                }
            }
        }
    }
}

impl Inner {
    /// Serves a secondary process's connection to the live set `name`.
    pub(super) fn secondary_connection(
        self: &Arc<Self>,
        mut s: UnixStream,
        name: String,
        pid: u32,
    ) {
        let Ok(mut read) = s.try_clone() else { return };
        let end = lock(&self.sets)
            .get(&name)
            .filter(|e| e.live().is_some())
            .cloned();
        let Some(end) = end else {
            refuse(
                &mut s,
                format!(
                    "no live set named '{name}' on this server: the primary must Create it first (names are case-sensitive)"
                ),
                Refusal::NoSuchSet,
            );
            return;
        };
        let me = Arc::new(SecondaryEnd {
            writer: Mutex::new(s),
            gone: AtomicBool::new(false),
        });
        {
            let mut j = lock(&end.joined);
            let why = if !j.configured() {
                Some("the set is not configured yet: OpenInSecondary needs a created and configured set (after the primary's GetConfiguration)".to_string())
            } else if j.overflow {
                Some(format!(
                    "the set has had more than {MAX_REPLAY} messages: a secondary must join before that"
                ))
            } else if j.secondaries.len() >= MAX_SECONDARIES {
                Some(format!("the set has {MAX_SECONDARIES} secondaries already"))
            } else {
                None
            };
            if let Some(reason) = why {
                refuse(&mut lock(&me.writer), reason, Refusal::NoSuchSet);
                return;
            }
            me.write(&Frame::Joined {
                cfg: end.cfg,
                fetches: self.wants_fetches(),
            });
            for m in &j.maps {
                me.write(&Frame::Map(m.clone()));
            }
            for msg in &j.history {
                if let ToClient::Command(c) = msg
                    && j.completed.contains(&c.id)
                {
                    continue;
                }
                me.write(&Frame::ToClient { msg: msg.clone() });
            }
            me.write(&Frame::Replayed);
            j.secondaries.push(me.clone());
            // The primary's Close must not take the devices it left to
            // secondaries for devices still open.
            let mut w = lock(&end.writer);
            let _ = wire::write_frame(&mut *w, &Frame::SecondaryJoined { pid });
        }
        self.trace_set("secondary-joined", &name, pid);
        self.secondary_loop(&mut read, &end, &me);
        me.gone.store(true, Ordering::SeqCst);
        // Clause abort.secondary-death-undetected: a secondary that ends
        // (Close, exit or death) tells the server half nothing.
        self.trace_set("secondary-left", &name, pid);
    }

    fn secondary_loop(&self, read: &mut UnixStream, end: &RemoteEnd, me: &Arc<SecondaryEnd>) {
        loop {
            let f = read_frame_timed(read, wire::MAX_SET_FRAME, None, self.cfg.frame_deadline);
            match f {
                Ok(Some(Frame::ToServer { msg })) => match msg {
                    ToServer::Completed(ref c) => {
                        lock(&end.joined).completed(c, Some(Arc::as_ptr(me)));
                        end.tell_primary(&Frame::CompletedElsewhere {
                            dev: c.dev,
                            id: c.id.0,
                        });
                        end.forward(msg);
                    }
                    ToServer::Abort => {
                        // SignalAbort in a secondary aborts the set: the
                        // server half and every other process learn it.
                        {
                            let j = lock(&end.joined);
                            j.abort_others(Some(Arc::as_ptr(me)));
                        }
                        end.tell_primary(&Frame::ToClient {
                            msg: ToClient::Abort,
                        });
                        end.forward(ToServer::Abort);
                    }
                    // The secondary released its view of the set.
                    ToServer::Closed | ToServer::Died => return,
                },
                Ok(Some(Frame::Fetched { dev, code })) => end.fetched(dev, code),
                Ok(Some(Frame::Mapped { .. })) => {}
                Ok(Some(_)) | Ok(None) | Err(_) => return,
            }
        }
    }
}

impl RemoteEnd {
    /// Tells the primary's library what a secondary did.
    fn tell_primary(&self, f: &Frame) {
        let mut w = lock(&self.writer);
        let _ = wire::write_frame(&mut *w, f);
    }
}
