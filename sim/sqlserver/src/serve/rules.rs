//! What SQL Server checks around a BACKUP or RESTORE besides the VDI
//! stream, as `vdisim serve` models it: recovery models, the log chain
//! (full → log → log; a differential's base), `NORECOVERY` / `RECOVERY` /
//! `STANDBY`, `REPLACE`, `COPY_ONLY`, `FILE`, `STATS`, and the statements
//! on databases themselves (`CREATE`, `DROP`, `ALTER … SET RECOVERY`,
//! `RESTORE … WITH RECOVERY`).
//!
//! LSNs: a database's LSN is where its log ends. Simulated activity moves
//! it (and the database's content) by [`ACTIVITY_LSNS`] after every backup,
//! so backups taken one after another differ. A full backup (not
//! COPY_ONLY) is the base of later differentials and, under the FULL or
//! BULK_LOGGED model, starts the log chain; each log backup (not
//! COPY_ONLY) covers the log from the chain's end to the database's LSN
//! and moves the chain's end there.
//!
//! Checks that need the media's headers (the backup's database, type and
//! LSNs) run when the statement has read them: the statement then fails
//! with SQL Server's message and the database is left restoring. SQL Server
//! checks right after reading the header; the client here has streamed the
//! whole backup by then, which changes nothing it must do: the statement's
//! outcome decides (clause `term.outcome-decides`).

use super::db::{Db, no_database};
use crate::tsql::{DatabaseStatement, Recovery, RecoveryModel, With};
use vdi_model::media::BackupType;
use vdi_model::outcome::SqlMessage;
use vdi_model::statement::{BackupRecord, Statement, StatementKind};

/// LSNs of simulated activity after each backup.
pub(super) const ACTIVITY_LSNS: u64 = 64;
/// Bytes of log per LSN of activity (a page).
const LOG_BYTES_PER_LSN: u64 = 8192;
/// The smallest log or differential backup (one extent... of 64 KiB).
const SMALLEST_BACKUP: u64 = 65536;
/// The size a `CREATE DATABASE` gets (SQL Server's model database: 8 MiB).
pub(super) const CREATED_BYTES: u64 = 8 * 1024 * 1024;

fn err(number: u32, text: String) -> SqlMessage {
    SqlMessage::error(number, text)
}

/// The checks a statement passes before it starts, given its database
/// (`None`: no such database). `Err` with the message it fails with.
pub(super) fn check_before(
    db: Option<&Db>,
    stmt: &Statement,
    with: &With,
) -> Result<(), SqlMessage> {
    let name = &stmt.database;
    if let Some(file) = with.file.filter(|f| *f != 1 && !stmt.kind.is_backup()) {
        let dev = stmt.devices.first().cloned().unwrap_or_default();
        return Err(err(
            4038,
            format!("Cannot find file ID {file} on device '{dev}'."),
        ));
    }
    match stmt.kind {
        StatementKind::BackupLog => {
            let Some(db) = db else { return Ok(()) };
            if db.recovery == RecoveryModel::Simple.desc() {
                return Err(err(
                    4208,
                    "The statement BACKUP LOG is not allowed while the recovery model is SIMPLE. Use BACKUP DATABASE or change the recovery model using ALTER DATABASE.".into(),
                ));
            }
            if db.log_lsn.is_none() {
                return Err(err(
                    4214,
                    "BACKUP LOG cannot be performed because there is no current database backup."
                        .into(),
                ));
            }
        }
        StatementKind::BackupDatabase
            if with.differential && db.is_some_and(|d| d.full_lsn.is_none()) =>
        {
            return Err(err(
                3035,
                format!(
                    "Cannot perform a differential backup for database \"{name}\", because a current database backup does not exist. Perform a full database backup by reissuing BACKUP DATABASE, omitting the WITH DIFFERENTIAL option."
                ),
            ));
        }
        StatementKind::RestoreLog
            if db.is_none_or(|d| d.state != "restoring" && d.state != "standby") =>
        {
            return Err(err(
                3117,
                "The log or differential backup cannot be restored because no files are ready to rollforward.".into(),
            ));
        }
        StatementKind::RestoreDatabase => {
            let tail_at_risk = db.is_some_and(|d| {
                d.state == "online"
                    && d.recovery != RecoveryModel::Simple.desc()
                    && d.log_lsn != Some(d.lsn)
            });
            if tail_at_risk && !with.replace {
                return Err(err(
                    3159,
                    format!(
                        "The tail of the log for the database \"{name}\" has not been backed up. Use BACKUP LOG WITH NORECOVERY to backup the log if it contains work you do not want to lose. Use the WITH REPLACE or WITH STOPAT clause of the RESTORE statement to just overwrite the contents of the log."
                    ),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Sizes a BACKUP of `db` and fills what its media headers say, then lets
/// the simulated activity move the database on.
pub(super) fn plan_backup(db: &mut Db, stmt: &mut Statement, with: &With) {
    let log = stmt.kind == StatementKind::BackupLog;
    let meta = &mut stmt.plan.media;
    if log {
        meta.backup_type = BackupType::Log;
    }
    let now = db.lsn;
    meta.content = db.content;
    meta.database_bytes = db.size;
    meta.checkpoint_lsn = now;
    meta.last_lsn = now;
    let changed = |from: u64| -> u64 {
        now.saturating_sub(from)
            .saturating_mul(LOG_BYTES_PER_LSN)
            .max(SMALLEST_BACKUP)
    };
    stmt.plan.data_bytes = match meta.backup_type {
        BackupType::Full => {
            meta.first_lsn = now;
            meta.database_backup_lsn = db.full_lsn.unwrap_or(0);
            db.size
        }
        BackupType::Differential => {
            let base = db.full_lsn.unwrap_or(0);
            meta.first_lsn = base;
            meta.database_backup_lsn = base;
            changed(base).min(db.size.max(SMALLEST_BACKUP))
        }
        BackupType::Log => {
            let from = db.log_lsn.unwrap_or(now);
            meta.first_lsn = from;
            meta.database_backup_lsn = db.full_lsn.unwrap_or(0);
            changed(from).min(vdi_spec::bounds::DATA_BYTES_MAX)
        }
    };
    let _ = with;
    db.lsn = db.lsn.saturating_add(ACTIVITY_LSNS);
    db.content = super::digest(&[&db.content.to_le_bytes(), &db.lsn.to_le_bytes()]);
}

/// A finished BACKUP's effect on its database's chains.
pub(super) fn backed_up(db: &mut Db, rec: &BackupRecord) {
    if rec.meta.copy_only {
        return;
    }
    match rec.meta.backup_type {
        BackupType::Full => {
            db.full_lsn = Some(rec.meta.last_lsn);
            if db.recovery != RecoveryModel::Simple.desc() && db.log_lsn.is_none() {
                db.log_lsn = Some(rec.meta.last_lsn);
            }
        }
        BackupType::Differential => {}
        BackupType::Log => db.log_lsn = Some(rec.meta.last_lsn),
    }
}

/// The checks a RESTORE passes once its media's headers are read (`rec`),
/// given its database before it (`None`: none).
pub(super) fn check_after(
    db: Option<&Db>,
    stmt: &Statement,
    with: &With,
    rec: &BackupRecord,
) -> Result<(), SqlMessage> {
    let name = &stmt.database;
    let restoring = db.filter(|d| d.state == "restoring" || d.state == "standby");
    match (stmt.kind, rec.meta.backup_type) {
        (StatementKind::RestoreDatabase, BackupType::Differential)
            if restoring.and_then(|d| d.restored_base) != Some(rec.meta.database_backup_lsn) =>
        {
            return Err(err(
                3136,
                "This differential backup cannot be restored because the database has not been restored to the correct earlier state.".into(),
            ));
        }
        (StatementKind::RestoreDatabase, BackupType::Differential) => {}
        (StatementKind::RestoreDatabase, _) => {
            let other = db.is_some_and(|d| d.state == "online") && rec.database != *name;
            if other && !with.replace {
                return Err(err(
                    3154,
                    format!(
                        "The backup set holds a backup of a database other than the existing '{name}' database."
                    ),
                ));
            }
        }
        (StatementKind::RestoreLog, _) => {
            let at = restoring.and_then(|d| d.restored_lsn).unwrap_or(0);
            if rec.meta.first_lsn > at {
                return Err(err(
                    4305,
                    format!(
                        "The log in this backup set begins at LSN {}, which is too recent to apply to the database. An earlier log backup that includes LSN {at} can be restored.",
                        rec.meta.first_lsn
                    ),
                ));
            }
            if rec.meta.last_lsn <= at {
                return Err(err(
                    4326,
                    format!(
                        "The log in this backup set terminates at LSN {}, which is too early to apply to the database. A more recent log backup that includes LSN {at} can be restored.",
                        rec.meta.last_lsn
                    ),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// A RESTORE that read `rec` and succeeded: the database's new state.
pub(super) fn restored(db: &mut Db, stmt: &Statement, with: &With, rec: &BackupRecord) {
    db.size = rec.meta.database_bytes;
    db.content = rec.meta.content;
    db.restored_from = Some(rec.number);
    db.restored_lsn = Some(rec.meta.last_lsn);
    if stmt.kind == StatementKind::RestoreDatabase && rec.meta.backup_type == BackupType::Full {
        db.restored_base = Some(rec.meta.last_lsn);
    }
    match with.recovery {
        Recovery::NoRecovery => db.state = "restoring".into(),
        Recovery::Standby => db.state = "standby".into(),
        Recovery::Recovery => recover(db),
    }
}

/// A restoring database comes online at the LSN its restores reached; its
/// log chain continues from there.
fn recover(db: &mut Db) {
    db.state = "online".into();
    if let Some(l) = db.restored_lsn {
        db.lsn = l;
        db.full_lsn = db.restored_base.or(db.full_lsn);
        db.log_lsn = (db.recovery != RecoveryModel::Simple.desc()).then_some(l);
    }
    db.restored_lsn = None;
    db.restored_base = None;
}

/// `STATS = n`: the progress messages of a statement that ran to its end.
pub(super) fn progress(stats: Option<u32>) -> Vec<SqlMessage> {
    let Some(n) = stats.filter(|n| *n > 0) else {
        return Vec::new();
    };
    (1..=100 / n)
        .map(|k| SqlMessage::info(3211, format!("{} percent processed.", k * n)))
        .collect()
}

/// How many of [`progress`]'s steps a transfer of `done` of `total` bytes
/// has reached (none while the total is unknown).
pub(super) fn progress_steps(stats: Option<u32>, done: u64, total: u64) -> usize {
    let Some(n) = stats.filter(|n| *n > 0) else {
        return 0;
    };
    if total == 0 {
        return 0;
    }
    let percent = u128::from(done.min(total)) * 100 / u128::from(total);
    usize::try_from(percent / u128::from(n)).unwrap_or(0)
}

/// What RESTORE HEADERONLY (or FILELISTONLY) found on the media: one line
/// per row, `column: value` (sqlcmd prints a result set; the control
/// channel carries messages, so the row travels as one).
pub(super) fn media_rows(kind: StatementKind, rec: &BackupRecord) -> Vec<SqlMessage> {
    let m = &rec.meta;
    let line = if kind == StatementKind::RestoreFilelistOnly {
        format!(
            "LogicalName: {db} | PhysicalName: {db}.mdf | Type: D | Size: {} | BackupSizeInBytes: {}",
            m.database_bytes,
            rec.total_bytes(),
            db = rec.database
        )
    } else {
        format!(
            "BackupType: {} | Position: 1 | DatabaseName: {} | ServerName: {} | BackupSetGUID: {} | FamilyCount: {} | FirstLSN: {} | LastLSN: {} | CheckpointLSN: {} | DatabaseBackupLSN: {} | BackupSize: {} | IsCopyOnly: {} | HasBackupChecksums: {}",
            match m.backup_type {
                BackupType::Full => 1,
                BackupType::Log => 2,
                BackupType::Differential => 5,
            },
            rec.database,
            m.server,
            m.set_id,
            rec.families.len(),
            m.first_lsn,
            m.last_lsn,
            m.checkpoint_lsn,
            m.database_backup_lsn,
            rec.total_bytes(),
            u8::from(m.copy_only),
            u8::from(m.checksum)
        )
    };
    vec![SqlMessage::info(0, line)]
}

/// Runs a statement on a database itself; its messages.
pub(super) fn database_statement(
    dbs: &mut std::collections::BTreeMap<String, Db>,
    st: DatabaseStatement,
    new: impl FnOnce(&str) -> Db,
) -> Vec<SqlMessage> {
    match st {
        DatabaseStatement::Create(name) => {
            if dbs.contains_key(&name) {
                return vec![err(
                    1801,
                    format!("Database '{name}' already exists. Choose a different database name."),
                )];
            }
            if dbs.len() >= vdi_spec::bounds::DATABASES_MAX {
                return vec![err(
                    1807,
                    format!(
                        "Could not create database '{name}': vdisim serves at most {} databases.",
                        vdi_spec::bounds::DATABASES_MAX
                    ),
                )];
            }
            let db = new(&name);
            dbs.insert(name, db);
            Vec::new()
        }
        DatabaseStatement::Drop {
            database,
            if_exists,
        } => {
            if dbs.remove(&database).is_none() && !if_exists {
                return vec![err(
                    3701,
                    format!(
                        "Cannot drop the database '{database}', because it does not exist or you do not have permission."
                    ),
                )];
            }
            Vec::new()
        }
        DatabaseStatement::SetRecovery { database, model } => match dbs.get_mut(&database) {
            None => vec![no_database(&database)],
            Some(db) => {
                if model == RecoveryModel::Simple {
                    db.log_lsn = None;
                }
                db.recovery = model.desc().into();
                Vec::new()
            }
        },
        DatabaseStatement::Recover(database) => match dbs.get_mut(&database) {
            None => vec![no_database(&database)],
            Some(db) => {
                if db.state == "restoring" || db.state == "standby" {
                    recover(db);
                }
                vec![SqlMessage::info(
                    3014,
                    "RESTORE DATABASE successfully processed 0 pages in 0.001 seconds (0.000 MB/sec).",
                )]
            }
        },
    }
}
