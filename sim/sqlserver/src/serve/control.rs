//! Control connections: T-SQL batches and harness case control.

use super::catalog::{Attention, BatchEnd};
use super::*;

/// A harness case on the server.
pub(super) struct CaseEntry {
    pub(super) host: Arc<ServerHost>,
    /// Sets bound to its statements (unrouted when it finishes).
    pub(super) bound: Mutex<Vec<Arc<RemoteEnd>>>,
}

/// What one control connection holds between requests.
#[derive(Default)]
struct ControlState {
    /// The case this connection created or attached to, if any. A case
    /// lives until it is finished or the connection that created it ends;
    /// other connections may attach to it (concurrent requests).
    case: Option<(u64, Arc<CaseEntry>)>,
    owned: Vec<u64>,
    /// The session's current database (USE), shared with its batch worker.
    database: Arc<Mutex<Option<String>>>,
}

impl Inner {
    // ----- control connections -----------------------------------------------------------

    /// Serves one control connection. Requests are answered one at a time,
    /// in order; a `Sql` batch runs on a worker thread so that this thread
    /// keeps reading and a `Cancel` (a TDS attention) reaches the running
    /// statement. Any other request waits for the running batch first.
    pub(super) fn control_connection(self: &Arc<Self>, s: UnixStream) {
        let Ok(writer) = s.try_clone() else { return };
        let writer = Arc::new(Mutex::new(writer));
        let mut reader = s;
        let mut st = ControlState::default();
        // A session id, for KILL (`super::sessions`), from either side.
        let spid = u32::from(self.new_spid());
        let attention = Arc::new(Attention::for_session(spid));
        let closer: super::sessions::Closer = match reader.try_clone() {
            Ok(c) => Box::new(move || {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }),
            Err(_) => return,
        };
        let _registered = self.sessions.register(spid, attention.clone(), closer);
        let mut batch: Option<std::thread::JoinHandle<()>> = None;
        // Anything but a request (a frame too large, a frame that stopped
        // arriving, the end) drops the connection.
        while let Ok(Some(Frame::Request(req))) = super::frames::read_frame_budgeted(
            &mut reader,
            wire::MAX_FRAME,
            self.cfg.frame_deadline,
            &self.partial,
        ) {
            if matches!(req, Request::Cancel) {
                if batch.as_ref().is_some_and(|b| !b.is_finished()) {
                    attention.cancel();
                }
                continue;
            }
            if let Some(b) = batch.take() {
                let _ = b.join();
            }
            if let Request::Sql { text, database, .. } = req {
                if database.is_some() {
                    *lock(&st.database) = database;
                }
                attention.reset();
                match self.spawn_batch(text, &st.database, &attention, &writer) {
                    Some(b) => batch = Some(b),
                    None => break,
                }
                continue;
            }
            let shutdown = matches!(req, Request::Shutdown);
            let resp = self.control_request(req, &mut st);
            if wire::write_frame(&mut *lock(&writer), &Frame::Response(resp)).is_err() || shutdown {
                if shutdown {
                    self.request_stop();
                }
                break;
            }
        }
        if let Some(b) = batch.take() {
            // The connection ended under a running batch without a cancel:
            // the profile decides (clause abort.disconnect).
            if !b.is_finished() {
                attention.disconnected();
            }
            let _ = b.join();
        }
        for id in st.owned {
            if let Some(c) = lock(&self.cases).remove(&id) {
                c.host.stop();
            }
        }
    }

    /// Runs a batch on a worker thread that answers it: its messages, or
    /// (the simulated server died under it) no answer and the connection
    /// dropped. `None` if no thread could be started (the connection is
    /// then dropped).
    fn spawn_batch(
        self: &Arc<Self>,
        text: String,
        database: &Arc<Mutex<Option<String>>>,
        attention: &Arc<Attention>,
        writer: &Arc<Mutex<UnixStream>>,
    ) -> Option<std::thread::JoinHandle<()>> {
        let (me, db, att, w) = (
            self.clone(),
            database.clone(),
            attention.clone(),
            writer.clone(),
        );
        std::thread::Builder::new()
            .name("vdisim-serve-batch".into())
            .spawn(move || {
                let mut current = lock(&db).clone();
                // The control socket answers once, with every message (its
                // frames are one answer per request: STATS progress is not
                // streamed live here, only over TDS).
                let b = me.run_batch(&text, &mut current, &att, &mut |_| {});
                *lock(&db) = current;
                let w = &mut *lock(&w);
                if b.end == BatchEnd::ServerDied {
                    let _ = w.shutdown(std::net::Shutdown::Both);
                    return;
                }
                let resp = Response::Sql {
                    messages: b.messages,
                    cancelled: b.end == BatchEnd::Cancelled,
                };
                let _ = wire::write_frame(w, &Frame::Response(resp));
                if b.end == BatchEnd::Killed {
                    // A KILLed session's connection ends after its answer.
                    let _ = w.shutdown(std::net::Shutdown::Both);
                }
            })
            .ok()
    }

    /// Answers one request other than `Sql` and `Cancel`.
    fn control_request(self: &Arc<Self>, req: Request, st: &mut ControlState) -> Response {
        match req {
            Request::Reset { setup } => {
                for id in st.owned.drain(..) {
                    if let Some(old) = lock(&self.cases).remove(&id) {
                        old.host.stop();
                    }
                }
                let id = self.new_case_id();
                let entry = Arc::new(CaseEntry {
                    host: ServerHost::start(HostSetup::for_case(&setup)),
                    bound: Mutex::new(Vec::new()),
                });
                lock(&self.cases).insert(id, entry.clone());
                st.owned.push(id);
                st.case = Some((id, entry));
                Response::Case { id }
            }
            Request::Attach { case: id } => match lock(&self.cases).get(&id).cloned() {
                Some(e) => {
                    st.case = Some((id, e));
                    Response::Ok
                }
                None => Response::Error {
                    message: format!("no case {id} on this server"),
                },
            },
            Request::Statement { stmt } => match &st.case {
                Some((_, c)) => {
                    let name = stmt.devices.first().cloned().unwrap_or_default();
                    if let Some(e) = self.bind(&c.host, &name) {
                        lock(&c.bound).push(e);
                    }
                    c.host.start_statement(stmt);
                    Response::Ok
                }
                None => no_case(),
            },
            Request::Event { fault } => match &st.case {
                Some((_, c)) => match c.host.event(fault) {
                    Ok(()) => Response::Ok,
                    Err(message) => Response::Error { message },
                },
                None => no_case(),
            },
            Request::Wait { timeout_ms } => match &st.case {
                Some((_, c)) => Response::Outcome {
                    outcome: c.host.wait_statement(timeout_ms.map(Duration::from_millis)),
                },
                None => no_case(),
            },
            Request::Finish { settle_ms } => match st.case.take() {
                Some((id, c)) => {
                    let obs = c.host.finish(Duration::from_millis(settle_ms));
                    for e in lock(&c.bound).drain(..) {
                        *lock(&e.route) = None;
                    }
                    lock(&self.cases).remove(&id);
                    st.owned.retain(|x| *x != id);
                    Response::Observation { obs: Box::new(obs) }
                }
                None => no_case(),
            },
            Request::SetFaults { spec, plan } => self.set_faults_request(&spec, plan),
            Request::Status => Response::Status {
                status: self.status(),
            },
            Request::Shutdown => Response::Ok,
            Request::Sql { .. } | Request::Cancel => Response::Error {
                message: "internal: batches are run by the connection's worker".into(),
            },
        }
    }

    /// `SetFaults`: checks `spec` (its selector and parameters) and the
    /// plan's bounds, then puts the plan in force for the statements that
    /// start from now on. A plan none of whose faults the server applies
    /// is refused, as `--faults` refuses it.
    fn set_faults_request(&self, spec: &str, plan: FaultPlan) -> Response {
        let parts = match super::faults::parse_spec(spec) {
            Ok(p) => p,
            Err(e) => {
                return Response::Error {
                    message: e.to_string(),
                };
            }
        };
        let plan = if parts.plan == "none" {
            FaultPlan::none()
        } else {
            super::faults::apply_params(plan, &parts)
        };
        for pf in &plan.faults {
            if let Err(e) = pf.check_bounds() {
                return Response::Error {
                    message: format!("fault spec {spec:?}: {e}"),
                };
            }
        }
        if !plan.faults.is_empty() && !plan.faults.iter().any(|pf| self.applies(&pf.fault)) {
            return Response::Error {
                message: format!(
                    "fault spec {spec:?}: its faults are all the client's to apply; a server process applies only server-abort, server-death, server-stall, early-close, cancel and disconnect (`--faults help` lists each plan's side)"
                ),
            };
        }
        let scope = super::faults::FaultScope::of(spec, &parts);
        let in_force = self.set_faults(plan, scope);
        Response::Faults {
            in_force,
            statements: self.statements.load(Ordering::Relaxed),
        }
    }

    /// A case id no other connection can guess (cases are attached by id).
    fn new_case_id(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let n = self.next_case.fetch_add(1, Ordering::Relaxed);
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        // Never 0, and distinct from every earlier id by its counter bits.
        (h.finish() << 20) | (n & 0xF_FFFF) | 1 << 63
    }
}

pub(super) fn no_case() -> Response {
    Response::Error {
        message: "no case on this connection: send reset (or attach) first".into(),
    }
}
