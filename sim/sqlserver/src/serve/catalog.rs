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

#[derive(Default)]
pub(super) struct Catalog {
    pub(super) databases: BTreeMap<String, Db>,
    pub(super) history: Vec<BackupRecord>,
    /// Backup number → (content digest, size) of the database it copied.
    pub(super) backed_up: BTreeMap<u32, (u64, u64)>,
}

impl Inner {
    // ----- T-SQL -------------------------------------------------------------------------

    pub(super) fn run_batch(&self, text: &str, database: &mut Option<String>) -> Vec<LineMessage> {
        let parsed = match tsql::parse_batch_located(text) {
            Ok(p) => p,
            Err(e) => {
                return vec![LineMessage {
                    message: e.to_message(),
                    line: e.line.max(1),
                }];
            }
        };
        let mut out = Vec::new();
        for p in parsed {
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
                    for m in self.run_statement(stmt) {
                        out.push(LineMessage { message: m, line });
                    }
                }
            }
        }
        out
    }

    /// Runs one BACKUP or RESTORE to its end and returns its messages.
    pub(super) fn run_statement(&self, mut stmt: Statement) -> Vec<SqlMessage> {
        self.statements.fetch_add(1, Ordering::Relaxed);
        let history = {
            let c = lock(&self.catalog);
            if stmt.kind.is_backup() {
                match c.databases.get(&stmt.database) {
                    Some(db) if db.state == "online" => stmt.plan.data_bytes = db.size,
                    Some(_) => {
                        return vec![
                            SqlMessage::error(
                                927,
                                format!(
                                    "Database '{}' cannot be opened. It is in the middle of a restore.",
                                    stmt.database
                                ),
                            ),
                            vdi_model::server::messages::terminating(stmt.kind),
                        ];
                    }
                    None => {
                        return vec![
                            no_database(&stmt.database),
                            vdi_model::server::messages::terminating(stmt.kind),
                        ];
                    }
                }
            }
            c.history.clone()
        };
        // The backup the server half will read (its own rule).
        let restoring = (stmt.kind == StatementKind::RestoreDatabase)
            .then(|| vdi_model::statement::backup_to_restore(&history, &stmt.database))
            .flatten()
            .map(|r| r.number);
        let setup = HostSetup {
            profile: self.cfg.profile.clone(),
            seed_backups: history,
            time_scale: 1,
            budget_ms: 0,
            faults: self.server_faults(),
            record: self.cfg.trace.is_some(),
        };
        let host = ServerHost::start(setup);
        let name = stmt.devices.first().cloned().unwrap_or_default();
        let end = self.bind(&host, &name);
        host.start_statement(stmt.clone());
        let outcome = host.wait_statement(None).unwrap_or_else(|| Outcome {
            status: Status::Failed,
            ..Outcome::default()
        });
        let obs = host.finish(Duration::from_secs(1));
        if let Some(e) = end {
            *lock(&e.route) = None;
        }
        self.write_trace(&stmt, &outcome, &obs.trace_jsonl);
        let mut c = lock(&self.catalog);
        if outcome.succeeded() {
            for rec in &obs.new_backups {
                if let Some(db) = c.databases.get(&rec.database) {
                    let v = (db.content, db.size);
                    c.backed_up.insert(rec.number, v);
                }
                c.history.push(rec.clone());
            }
        }
        if let Some(number) = restoring {
            let from = c.backed_up.get(&number).copied();
            let db = c.databases.entry(stmt.database.clone()).or_insert(Db {
                size: 0,
                content: 0,
                state: "restoring",
                restored_from: None,
            });
            match (outcome.succeeded(), from) {
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
        outcome.messages
    }
}

/// Msg 911: the database does not exist.
pub(super) fn no_database(db: &str) -> SqlMessage {
    SqlMessage::error(
        911,
        format!("Database '{db}' does not exist. Make sure that the name is entered correctly."),
    )
}
