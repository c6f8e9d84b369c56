//! Control connections: T-SQL batches and harness case control.

use super::*;

/// A harness case on the server.
pub(super) struct CaseEntry {
    pub(super) host: Arc<ServerHost>,
    /// Sets bound to its statements (unrouted when it finishes).
    pub(super) bound: Mutex<Vec<Arc<RemoteEnd>>>,
}

impl Inner {
    // ----- control connections -----------------------------------------------------------

    pub(super) fn control_connection(self: &Arc<Self>, mut s: UnixStream) {
        // The case this connection created or attached to, if any. A case
        // lives until it is finished or the connection that created it ends;
        // other connections may attach to it (concurrent requests).
        let mut case: Option<(u64, Arc<CaseEntry>)> = None;
        let mut owned: Vec<u64> = Vec::new();
        let mut database: Option<String> = None;
        loop {
            let req = match wire::read_frame(&mut s) {
                Ok(Some(Frame::Request(r))) => r,
                Ok(Some(_)) => Request::Status,
                Ok(None) | Err(_) => break,
            };
            let resp = match req {
                Request::Sql {
                    text,
                    database: db,
                    first_line: _,
                } => {
                    if db.is_some() {
                        database = db;
                    }
                    Response::Sql {
                        messages: self.run_batch(&text, &mut database),
                        cancelled: false,
                    }
                }
                Request::Reset { setup } => {
                    for id in owned.drain(..) {
                        if let Some(old) = lock(&self.cases).remove(&id) {
                            old.host.stop();
                        }
                    }
                    let id = self.next_case.fetch_add(1, Ordering::Relaxed);
                    let entry = Arc::new(CaseEntry {
                        host: ServerHost::start(HostSetup::for_case(&setup)),
                        bound: Mutex::new(Vec::new()),
                    });
                    lock(&self.cases).insert(id, entry.clone());
                    owned.push(id);
                    case = Some((id, entry));
                    Response::Case { id }
                }
                Request::Attach { case: id } => match lock(&self.cases).get(&id).cloned() {
                    Some(e) => {
                        case = Some((id, e));
                        Response::Ok
                    }
                    None => Response::Error {
                        message: format!("no case {id} on this server"),
                    },
                },
                Request::Statement { stmt } => match &case {
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
                Request::Event { fault } => match &case {
                    Some((_, c)) => match c.host.event(fault) {
                        Ok(()) => Response::Ok,
                        Err(message) => Response::Error { message },
                    },
                    None => no_case(),
                },
                Request::Wait { timeout_ms } => match &case {
                    Some((_, c)) => Response::Outcome {
                        outcome: c.host.wait_statement(timeout_ms.map(Duration::from_millis)),
                    },
                    None => no_case(),
                },
                Request::Finish { settle_ms } => match case.take() {
                    Some((id, c)) => {
                        let obs = c.host.finish(Duration::from_millis(settle_ms));
                        for e in lock(&c.bound).drain(..) {
                            *lock(&e.route) = None;
                        }
                        lock(&self.cases).remove(&id);
                        owned.retain(|x| *x != id);
                        Response::Observation { obs: Box::new(obs) }
                    }
                    None => no_case(),
                },
                // Nothing is running on this connection (batches run to
                // their end before the next frame is read).
                Request::Cancel => continue,
                Request::Status => Response::Status {
                    status: self.status(),
                },
                Request::Shutdown => {
                    let _ = wire::write_frame(&mut s, &Frame::Response(Response::Ok));
                    self.request_stop();
                    break;
                }
            };
            if wire::write_frame(&mut s, &Frame::Response(resp)).is_err() {
                break;
            }
        }
        for id in owned {
            if let Some(c) = lock(&self.cases).remove(&id) {
                c.host.stop();
            }
        }
    }
}

pub(super) fn no_case() -> Response {
    Response::Error {
        message: "no case on this connection: send reset (or attach) first".into(),
    }
}
