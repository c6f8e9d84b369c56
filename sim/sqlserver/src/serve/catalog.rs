//! Databases, msdb's backup history, and running T-SQL against them.

pub(super) use super::db::{Db, Finished, RestoreRecord, no_database};
use super::rules;
use super::*;
use crate::tsql::{self, ParsedStatement, With};
use vdi_model::media::SetId;

/// The databases and msdb's backup history (each backup's record carries
/// what its media headers say: the database's content, size and LSNs).
#[derive(Default)]
pub(super) struct Catalog {
    pub(super) databases: BTreeMap<String, Db>,
    /// Each backup with when it finished and on which devices.
    pub(super) history: History<Finished>,
    /// msdb's restore history, oldest first, the latest
    /// `vdi_spec::bounds::HISTORY_MAX` kept.
    pub(super) restores: std::collections::VecDeque<RestoreRecord>,
}

impl Catalog {
    /// Keeps a successful restore in the restore history.
    fn restored(&mut self, db: &str, rec: &BackupRecord, state: &str) {
        if self.restores.len() >= vdi_spec::bounds::HISTORY_MAX {
            self.restores.pop_front();
        }
        self.restores.push_back(RestoreRecord {
            database: db.to_string(),
            backup_set: rec.meta.set_id.to_string(),
            backup_number: rec.number,
            restore_type: rec.meta.backup_type.code(),
            state: state.to_string(),
            ended_unix_ms: unix_ms(),
        });
    }
}

/// How a batch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BatchEnd {
    /// Every statement ran.
    Done,
    /// The connection cancelled it (an attention).
    Cancelled,
    /// The simulated server process died under a statement: the connection
    /// is dropped without an answer, as a client of a dying SQL Server
    /// loses its connection.
    ServerDied,
    /// Another session KILLed this one (`super::sessions`): the answer
    /// ends with Msg 596, then the connection ends.
    Killed,
}

/// A batch's messages and how it ended.
pub(crate) struct Batch {
    pub(crate) messages: Vec<LineMessage>,
    pub(crate) end: BatchEnd,
}

/// The attention switch of one control or TDS connection: the connection's
/// reader sets it (a `Cancel` frame or a TDS ATTENTION, or the connection ending under the profile's
/// `disconnect-without-attention = abort`), the running batch obeys it.
#[derive(Default)]
pub(crate) struct Attention {
    cancelled: AtomicBool,
    running: Mutex<Option<Arc<ServerHost>>>,
    /// The session's id (`@@SPID`; 0: a switch of no registered session).
    spid: u32,
    /// Whether a batch is running, and whether the session was KILLed.
    kill: Mutex<KillState>,
}

#[derive(Default)]
struct KillState {
    in_batch: bool,
    killed: bool,
}

impl Attention {
    /// Cancels the running batch: the statement running now is aborted
    /// (clause `abort.attention`), no later statement starts.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let host = lock(&self.running).clone();
        if let Some(h) = host {
            let _ = h.event(Fault::Attention);
        }
    }

    /// The connection ended under the running batch without a cancel:
    /// the server half applies the profile (clause `abort.disconnect`); no
    /// later statement of the batch starts.
    pub(crate) fn disconnected(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let host = lock(&self.running).clone();
        if let Some(h) = host {
            let _ = h.event(Fault::Disconnect);
        }
    }

    /// The switch of session `spid`.
    pub(crate) fn for_session(spid: u32) -> Attention {
        Attention {
            spid,
            ..Attention::default()
        }
    }

    /// The session's id.
    pub(crate) fn spid(&self) -> u32 {
        self.spid
    }

    /// KILL (`super::sessions`): the running statement is aborted by the
    /// server (clause `abort.server-signal`), no later statement starts,
    /// and no later batch runs. Whether a batch is running (its end then
    /// closes the connection).
    pub(crate) fn kill(&self) -> bool {
        let busy = {
            let mut k = lock(&self.kill);
            k.killed = true;
            k.in_batch
        };
        self.cancelled.store(true, Ordering::SeqCst);
        let host = lock(&self.running).clone();
        if let Some(h) = host {
            let _ = h.event(Fault::ServerSignalAbort);
        }
        busy
    }

    fn killed(&self) -> bool {
        lock(&self.kill).killed
    }

    /// A batch starts (`in` true) or ends; whether the session was killed.
    fn batch(&self, running: bool) -> bool {
        let mut k = lock(&self.kill);
        k.in_batch = running;
        k.killed
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// A new batch starts: the switch is reset.
    pub(crate) fn reset(&self) {
        self.cancelled.store(false, Ordering::SeqCst);
    }

    /// `host` runs the statement now (`None`: it ended). A cancel that came
    /// just before the host was known is applied to it now.
    fn running(&self, host: Option<Arc<ServerHost>>) {
        let apply = host.clone().filter(|_| self.is_cancelled());
        *lock(&self.running) = host;
        if let Some(h) = apply {
            let _ = h.event(if self.killed() {
                Fault::ServerSignalAbort
            } else {
                Fault::Attention
            });
        }
    }
}

/// Where a batch's messages go as the batch produces them: a TDS session
/// sends each at once (`STATS` progress while the statement runs); the
/// control socket ignores them and answers with [`Batch::messages`], which
/// holds them all, in the same order.
pub(crate) type Emit<'a> = &'a mut dyn FnMut(&[LineMessage]);

/// A batch's messages so far: kept, and told to the batch's [`Emit`] as
/// they come.
struct Sink<'a> {
    out: Vec<LineMessage>,
    emit: Emit<'a>,
}

impl Sink<'_> {
    fn push(&mut self, messages: Vec<SqlMessage>, line: u32) {
        let from = self.out.len();
        self.out.extend(
            messages
                .into_iter()
                .map(|message| LineMessage { message, line }),
        );
        if self.out.len() > from {
            (self.emit)(&self.out[from..]);
        }
    }

    fn end(self, end: BatchEnd) -> Batch {
        Batch {
            messages: self.out,
            end,
        }
    }
}

/// Msg 596: what a killed session's batch ends with.
pub(crate) fn kill_state() -> SqlMessage {
    SqlMessage {
        number: 596,
        level: 21,
        state: 1,
        text: "Cannot continue the execution because the session is in the kill state.".into(),
    }
}

/// How often a running statement's progress is looked at for its `STATS`
/// messages (real time).
const PROGRESS_POLL: Duration = Duration::from_millis(20);

impl Inner {
    // ----- T-SQL -------------------------------------------------------------------------

    /// Runs a batch for the session `attention` belongs to: its messages
    /// (each also told to `emit` as it is produced) and how it ended. A
    /// session KILLed before or while it runs (`super::sessions`) gets its
    /// messages then Msg 596, and [`BatchEnd::Killed`]: the connection's
    /// worker closes it once they are sent.
    pub(crate) fn run_batch(
        &self,
        text: &str,
        database: &mut Option<String>,
        attention: &Attention,
        emit: Emit<'_>,
    ) -> Batch {
        let mut sink = Sink {
            out: Vec::new(),
            emit,
        };
        if attention.batch(true) {
            return sink.end(BatchEnd::Killed);
        }
        let mut end = self.run_statements(text, database, attention, &mut sink);
        if attention.batch(false) {
            sink.push(vec![kill_state()], 0);
            end = BatchEnd::Killed;
        }
        sink.end(end)
    }

    fn run_statements(
        &self,
        text: &str,
        database: &mut Option<String>,
        attention: &Attention,
        sink: &mut Sink<'_>,
    ) -> BatchEnd {
        let parsed = match tsql::parse_batch_located(text) {
            Ok(p) => p,
            Err(e) => {
                sink.push(vec![e.to_message()], e.line.max(1));
                return BatchEnd::Done;
            }
        };
        for p in parsed {
            if attention.is_cancelled() {
                return BatchEnd::Cancelled;
            }
            // Lines are relative to the batch, as SQL Server reports them.
            let line = p.line.max(1);
            match p.statement {
                ParsedStatement::Use(db) => {
                    if lock(&self.catalog).databases.contains_key(&db) {
                        *database = Some(db);
                    } else {
                        sink.push(vec![no_database(&db)], line);
                    }
                }
                ParsedStatement::Kill(victim) => {
                    sink.push(self.sessions.kill(attention.spid(), victim), line);
                }
                ParsedStatement::Database(st) => {
                    let messages = self.database_statement(st);
                    sink.push(messages, line);
                }
                ParsedStatement::Run(stmt, with) => {
                    let mut live = |m: SqlMessage| sink.push(vec![m], line);
                    let (messages, end) = self.run_statement(stmt, &with, attention, &mut live);
                    sink.push(messages, line);
                    if end != BatchEnd::Done {
                        return end;
                    }
                }
            }
        }
        BatchEnd::Done
    }

    /// Runs one BACKUP or RESTORE to its end and returns its messages and
    /// how it ended (cancelled by `attention`, or under a server death).
    /// `STATS = n` progress ("n percent processed.", Msg 3211) goes to
    /// `live` while the statement runs, as the transfer crosses each step
    /// (the steps not yet reached when it succeeds go first in its
    /// messages); the returned messages are the others.
    pub(super) fn run_statement(
        &self,
        mut stmt: Statement,
        with: &With,
        attention: &Attention,
        live: &mut dyn FnMut(SqlMessage),
    ) -> (Vec<SqlMessage>, BatchEnd) {
        let ordinal = self.statements.fetch_add(1, Ordering::Relaxed) + 1;
        let backups_before = match self.prepare(&mut stmt, with) {
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
            seed_backups: Vec::new(),
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
        let steps = rules::progress(with.stats);
        let mut sent = 0;
        let outcome = loop {
            // Polled while progress steps remain to tell; then (and
            // without STATS) waited for.
            let poll = (sent < steps.len()).then_some(PROGRESS_POLL);
            if let Some(o) = host.wait_statement(poll) {
                break Some(o);
            }
            if poll.is_none() || host.is_stopped() {
                break None;
            }
            let (done, total) = host.progress();
            let reached = rules::progress_steps(with.stats, done, total);
            while sent < reached.min(steps.len()) {
                live(steps[sent].clone());
                sent += 1;
            }
        }
        .unwrap_or_else(|| Outcome {
            status: Status::Failed,
            ..Outcome::default()
        });
        attention.running(None);
        let obs = host.finish(Duration::from_secs(1));
        if let Some(e) = end {
            *lock(&e.route) = None;
        }
        self.write_trace(&stmt, &outcome, &obs.trace_jsonl);
        let mut outcome = outcome;
        self.record(&stmt, with, &mut outcome, &obs.new_backups, sent);
        if let Err(m) = self.persist() {
            outcome.status = Status::Failed;
            outcome.messages.push(m);
            outcome
                .messages
                .push(vdi_model::server::messages::terminating(stmt.kind));
        }
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
    /// it: `Ok` with the number of backups before the first one this
    /// statement may add; `Err` with the messages the statement fails with.
    /// A BACKUP's plan carries what its media headers will say (this
    /// server, the database's content, size and LSNs, a fresh backup set
    /// id); a RESTORE needs nothing from the history: it reads the media
    /// (clause `media.header`).
    fn prepare(&self, stmt: &mut Statement, with: &With) -> Result<u32, Vec<SqlMessage>> {
        if let Some(o) = &*lock(&self.plan) {
            o.apply(&mut stmt.plan);
        }
        let kind = stmt.kind;
        let fail = |m: SqlMessage| vec![m, vdi_model::server::messages::terminating(kind)];
        let mut c = lock(&self.catalog);
        rules::check_before(c.databases.get(&stmt.database), stmt, with).map_err(fail)?;
        if stmt.kind.is_backup() {
            match c.databases.get_mut(&stmt.database) {
                Some(db) if db.state == "online" => {
                    let meta = &mut stmt.plan.media;
                    meta.set_id = fresh_set_id(&self.cfg.server_name);
                    meta.server = self.cfg.server_name.clone();
                    meta.started_unix_ms = unix_ms();
                    rules::plan_backup(db, stmt, with);
                }
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
        if let Err(e) = stmt.check_bounds(None) {
            return Err(fail(out_of_bounds(&e)));
        }
        if !stmt.kind.is_backup() {
            return Ok(0);
        }
        Ok(c.history.seeds_for(stmt).backups_before)
    }

    /// Records what a statement did: a backup in the history and its
    /// database's chains; a restore's database content and state (from the
    /// media it read), after the checks that need the media's headers
    /// (`rules::check_after`), which may fail the statement; a successful
    /// statement's `STATS` progress (the steps after the `progress_sent`
    /// already told while it ran) and a HEADERONLY / FILELISTONLY row.
    fn record(
        &self,
        stmt: &Statement,
        with: &With,
        outcome: &mut Outcome,
        new_backups: &[BackupRecord],
        progress_sent: usize,
    ) {
        let mut c = lock(&self.catalog);
        if outcome.succeeded() {
            for rec in new_backups {
                let finished = Finished {
                    unix_ms: unix_ms(),
                    devices: stmt.devices.clone(),
                };
                c.history.add(rec.clone(), finished);
                if let Some(db) = c.databases.get_mut(&rec.database) {
                    rules::backed_up(db, rec);
                }
            }
        }
        if outcome.succeeded()
            && let Some(rec) = outcome.media.as_deref()
            && let Err(m) = rules::check_after(c.databases.get(&stmt.database), stmt, with, rec)
        {
            outcome.status = Status::Failed;
            outcome.reason = Some(FailReason::BadMedia);
            outcome.messages = vec![m, vdi_model::server::messages::terminating(stmt.kind)];
        }
        if outcome.succeeded() {
            let mut msgs = rules::progress(with.stats);
            msgs.drain(..progress_sent.min(msgs.len()));
            if stmt.kind.is_metadata_only()
                && let Some(rec) = outcome.media.as_deref()
            {
                msgs.extend(rules::media_rows(stmt.kind, rec));
            }
            msgs.append(&mut outcome.messages);
            outcome.messages = msgs;
        }
        if !matches!(
            stmt.kind,
            StatementKind::RestoreDatabase | StatementKind::RestoreLog
        ) {
            return;
        }
        if stmt.kind == StatementKind::RestoreLog && !c.databases.contains_key(&stmt.database) {
            return;
        }
        let db = c
            .databases
            .entry(stmt.database.clone())
            .or_insert_with(|| Db {
                state: "restoring".into(),
                ..Db::new(0, 0)
            });
        match (outcome.succeeded(), outcome.media.as_deref()) {
            (true, Some(rec)) => {
                rules::restored(db, stmt, with, rec);
                let state = db.state.clone();
                c.restored(&stmt.database, rec, &state);
            }
            (true, None) => db.state = "online".into(),
            (false, _) => db.state = "restoring".into(),
        }
    }

    /// CREATE / DROP / ALTER DATABASE, RESTORE … WITH RECOVERY: their
    /// messages (the state is saved like a statement's).
    fn database_statement(&self, st: tsql::DatabaseStatement) -> Vec<SqlMessage> {
        let seed = self.cfg.seed;
        let mut msgs = {
            let mut c = lock(&self.catalog);
            rules::database_statement(&mut c.databases, st, |name| {
                Db::new(
                    rules::CREATED_BYTES,
                    digest(&[
                        name.as_bytes(),
                        &seed.to_le_bytes(),
                        &unix_ms().to_le_bytes(),
                    ]),
                )
            })
        };
        if let Err(m) = self.persist() {
            msgs.push(m);
        }
        msgs
    }

    /// Saves the state to the data directory, if there is one, before the
    /// statement's outcome is answered. A failed save is the server's own
    /// error: the statement's record would not survive a restart, so its
    /// success is not reported (never a false success).
    fn persist(&self) -> Result<(), SqlMessage> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let c = lock(&self.catalog);
        store
            .save(&c)
            .map_err(|e| SqlMessage::error(50000, format!("vdisim: {e}")))
    }
}
/// A backup set id no other backup of any server shares: this server's
/// name, its process, the clock and a counter, mixed.
fn fresh_set_id(server: &str) -> SetId {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let a = digest(&[
        server.as_bytes(),
        &std::process::id().to_le_bytes(),
        &nanos.to_le_bytes(),
        &n.to_le_bytes(),
    ]);
    let b = vdi_model::content::origin_of(&[a, n, nanos]);
    SetId((u128::from(a) << 64) | u128::from(b))
}

/// Wall-clock milliseconds since the Unix epoch.
pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
