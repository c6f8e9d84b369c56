//! Databases, msdb's backup history, and running T-SQL against them.

use super::*;
use crate::tsql::{self, ParsedStatement};

#[derive(Clone, Debug)]
pub(super) struct Db {
    pub(super) size: u64,
    pub(super) content: u64,
    pub(super) state: &'static str,
    pub(super) restored_from: Option<u32>,
}

/// The databases and msdb's backup history (each backup with the content
/// digest and size of the database it copied).
#[derive(Default)]
pub(super) struct Catalog {
    pub(super) databases: BTreeMap<String, Db>,
    pub(super) history: History<Option<(u64, u64)>>,
}

/// The backup a RESTORE reads, with what it copied.
pub(super) type Taken = (BackupRecord, Option<(u64, u64)>);

/// How a batch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BatchEnd {
    /// Every statement ran.
    Done,
    /// The connection cancelled it (an attention).
    Cancelled,
    /// The simulated server process died under a statement: the connection
    /// is dropped without an answer, as a client of a dying SQL Server
    /// loses its connection.
    ServerDied,
}

/// A batch's messages and how it ended.
pub(super) struct Batch {
    pub(super) messages: Vec<LineMessage>,
    pub(super) end: BatchEnd,
}

/// The attention switch of one control connection: the connection's reader
/// sets it (a `Cancel` frame, or the connection ending under the profile's
/// `disconnect-without-attention = abort`), the running batch obeys it.
#[derive(Default)]
pub(super) struct Attention {
    cancelled: AtomicBool,
    running: Mutex<Option<Arc<ServerHost>>>,
}

impl Attention {
    /// Cancels the running batch: the statement running now is aborted
    /// (clause `abort.attention`), no later statement starts.
    pub(super) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let host = lock(&self.running).clone();
        if let Some(h) = host {
            let _ = h.event(Fault::Attention);
        }
    }

    /// The connection ended under the running batch without a cancel:
    /// the server half applies the profile (clause `abort.disconnect`); no
    /// later statement of the batch starts.
    pub(super) fn disconnected(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let host = lock(&self.running).clone();
        if let Some(h) = host {
            let _ = h.event(Fault::Disconnect);
        }
    }

    pub(super) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// A new batch starts: the switch is reset.
    pub(super) fn reset(&self) {
        self.cancelled.store(false, Ordering::SeqCst);
    }

    /// `host` runs the statement now (`None`: it ended). A cancel that came
    /// just before the host was known is applied to it now.
    fn running(&self, host: Option<Arc<ServerHost>>) {
        let apply = host.clone().filter(|_| self.is_cancelled());
        *lock(&self.running) = host;
        if let Some(h) = apply {
            let _ = h.event(Fault::Attention);
        }
    }
}

impl Inner {
    // ----- T-SQL -------------------------------------------------------------------------

    pub(super) fn run_batch(
        &self,
        text: &str,
        database: &mut Option<String>,
        attention: &Attention,
    ) -> Batch {
        let parsed = match tsql::parse_batch_located(text) {
            Ok(p) => p,
            Err(e) => {
                return Batch {
                    messages: vec![LineMessage {
                        message: e.to_message(),
                        line: e.line.max(1),
                    }],
                    end: BatchEnd::Done,
                };
            }
        };
        let mut out = Vec::new();
        for p in parsed {
            if attention.is_cancelled() {
                return Batch {
                    messages: out,
                    end: BatchEnd::Cancelled,
                };
            }
            // Lines are relative to the batch, as SQL Server reports them.
            let line = p.line.max(1);
            match p.statement {
                ParsedStatement::Use(db) => {
                    if lock(&self.catalog).databases.contains_key(&db) {
                        *database = Some(db);
                    } else {
                        out.push(LineMessage {
                            message: no_database(&db),
                            line,
                        });
                    }
                }
                ParsedStatement::Run(stmt) => {
                    let (messages, end) = self.run_statement(stmt, attention);
                    for m in messages {
                        out.push(LineMessage { message: m, line });
                    }
                    if end != BatchEnd::Done {
                        return Batch { messages: out, end };
                    }
                }
            }
        }
        Batch {
            messages: out,
            end: BatchEnd::Done,
        }
    }

    /// Runs one BACKUP or RESTORE to its end and returns its messages and
    /// how it ended (cancelled by `attention`, or under a server death).
    pub(super) fn run_statement(
        &self,
        mut stmt: Statement,
        attention: &Attention,
    ) -> (Vec<SqlMessage>, BatchEnd) {
        let ordinal = self.statements.fetch_add(1, Ordering::Relaxed) + 1;
        let (seed, backups_before) = match self.prepare(&mut stmt) {
            Ok(p) => p,
            Err(messages) => {
                self.log_outcome(
                    &stmt,
                    &Outcome {
                        status: Status::Failed,
                        messages: messages.clone(),
                        ..Outcome::default()
                    },
                );
                return (messages, BatchEnd::Done);
            }
        };
        let setup = HostSetup {
            profile: self.cfg.profile.clone(),
            seed_backups: seed.iter().map(|(r, _)| r.clone()).collect(),
            time_scale: self.cfg.time_scale,
            budget_ms: 0,
            faults: self.statement_faults(&stmt, ordinal),
            record: self.cfg.trace.is_some(),
            client_faults: self.cfg.client_faults.clone(),
            backups_before,
        };
        let host = ServerHost::start(setup);
        let name = stmt.devices.first().cloned().unwrap_or_default();
        let end = self.bind(&host, &name);
        host.start_statement(stmt.clone());
        attention.running(Some(host.clone()));
        let outcome = host.wait_statement(None).unwrap_or_else(|| Outcome {
            status: Status::Failed,
            ..Outcome::default()
        });
        attention.running(None);
        let obs = host.finish(Duration::from_secs(1));
        if let Some(e) = end {
            *lock(&e.route) = None;
        }
        self.write_trace(&stmt, &outcome, &obs.trace_jsonl);
        self.record(&stmt, &outcome, &obs.new_backups, seed);
        self.log_outcome(&stmt, &outcome);
        let end = match outcome.reason {
            Some(FailReason::ServerDied) => BatchEnd::ServerDied,
            Some(FailReason::Cancelled) => BatchEnd::Cancelled,
            _ => BatchEnd::Done,
        };
        (outcome.messages, end)
    }

    /// Keeps the statement's outcome for [`Server::outcomes`] (the latest
    /// [`OUTCOMES_KEPT`]).
    fn log_outcome(&self, stmt: &Statement, outcome: &Outcome) {
        let mut g = lock(&self.outcomes);
        if g.len() >= OUTCOMES_KEPT {
            g.pop_front();
        }
        g.push_back(StatementOutcome {
            statement: stmt.clone(),
            outcome: outcome.clone(),
            ended_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        });
    }

    /// Checks a statement against the databases and the bounds and sizes
    /// it: `Ok` with the backup a RESTORE reads and the number of backups
    /// before the first one this statement may add; `Err` with the
    /// messages the statement fails with.
    fn prepare(&self, stmt: &mut Statement) -> Result<(Option<Taken>, u32), Vec<SqlMessage>> {
        if let Some(o) = &*lock(&self.plan) {
            o.apply(&mut stmt.plan);
        }
        let fail = |m: SqlMessage| vec![m, vdi_model::server::messages::terminating(stmt.kind)];
        let mut c = lock(&self.catalog);
        if stmt.kind.is_backup() {
            match c.databases.get(&stmt.database) {
                Some(db) if db.state == "online" => stmt.plan.data_bytes = db.size,
                Some(_) => {
                    return Err(fail(SqlMessage::error(
                        927,
                        format!(
                            "Database '{}' cannot be opened. It is in the middle of a restore.",
                            stmt.database
                        ),
                    )));
                }
                None => return Err(fail(no_database(&stmt.database))),
            }
        }
        let seed = if stmt.kind.is_backup() {
            None
        } else {
            c.history.to_restore(&stmt.database).cloned()
        };
        let restore_bytes = seed.as_ref().map(|(r, _)| r.total_bytes());
        if let Err(e) = stmt.check_bounds(restore_bytes) {
            return Err(fail(out_of_bounds(&e)));
        }
        let seeds = c.history.seeds_for(stmt);
        Ok((seed, seeds.backups_before))
    }

    /// Records what a statement did: a backup in the history, a restore's
    /// database content and state.
    fn record(
        &self,
        stmt: &Statement,
        outcome: &Outcome,
        new_backups: &[BackupRecord],
        restored: Option<Taken>,
    ) {
        let mut c = lock(&self.catalog);
        if outcome.succeeded() {
            for rec in new_backups {
                let copied = c.databases.get(&rec.database).map(|d| (d.content, d.size));
                c.history.add(rec.clone(), copied);
            }
        }
        if stmt.kind != StatementKind::RestoreDatabase {
            return;
        }
        let Some(from) = restored else { return };
        let db = c.databases.entry(stmt.database.clone()).or_insert(Db {
            size: 0,
            content: 0,
            state: "restoring",
            restored_from: None,
        });
        let number = from.0.number;
        match (outcome.succeeded(), from.1) {
            (true, Some((content, size))) => {
                *db = Db {
                    size,
                    content,
                    state: "online",
                    restored_from: Some(number),
                };
            }
            (true, None) => {
                db.state = "online";
                db.restored_from = Some(number);
            }
            (false, _) => db.state = "restoring",
        }
    }
}

/// A statement beyond one of the simulator's bounds (`vdi_spec::bounds`):
/// a buffer pool beyond 2 GiB is SQL Server's Msg 701; any other bound is
/// the simulator's own, reported as a user-range Msg 50000 that names it.
fn out_of_bounds(e: &vdi_spec::bounds::BoundError) -> SqlMessage {
    if e.what.starts_with("BUFFERCOUNT") {
        SqlMessage::error(
            701,
            "There is insufficient system memory in resource pool 'default' to run this query.",
        )
    } else {
        SqlMessage::error(50000, format!("vdisim: {e}"))
    }
}

/// Msg 911: the database does not exist.
pub(super) fn no_database(db: &str) -> SqlMessage {
    SqlMessage::error(
        911,
        format!("Database '{db}' does not exist. Make sure that the name is entered correctly."),
    )
}
