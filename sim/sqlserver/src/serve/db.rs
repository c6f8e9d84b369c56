//! A database as `vdisim serve` keeps it (and saves it in the data
//! directory): size, content identity, state, recovery model and LSNs.

use crate::tsql::RecoveryModel;
use serde::{Deserialize, Serialize};
use vdi_model::outcome::SqlMessage;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Db {
    pub(super) size: u64,
    /// The content's identity: what a backup copies and a restore sets.
    pub(super) content: u64,
    pub(super) state: String,
    pub(super) restored_from: Option<u32>,
    /// The log sequence number: where the log ends; advances with
    /// simulated activity (`rules`); a backup's header carries it.
    #[serde(default)]
    pub(super) lsn: u64,
    /// `FULL`, `SIMPLE` or `BULK_LOGGED`.
    #[serde(default = "simple")]
    pub(super) recovery: String,
    /// The last full backup's LSN (not COPY_ONLY): a differential's base.
    #[serde(default)]
    pub(super) full_lsn: Option<u64>,
    /// The log chain's end: where the next log backup starts (none under
    /// SIMPLE, or before the first full backup).
    #[serde(default)]
    pub(super) log_lsn: Option<u64>,
    /// Restoring: the LSN the restores so far reached.
    #[serde(default)]
    pub(super) restored_lsn: Option<u64>,
    /// Restoring: the full backup the restores started from.
    #[serde(default)]
    pub(super) restored_base: Option<u64>,
}

fn simple() -> String {
    RecoveryModel::Simple.desc().into()
}

impl Db {
    /// A new online database of `size` bytes and content `content`, under
    /// the SIMPLE recovery model (vdisim's model database; `ALTER DATABASE
    /// … SET RECOVERY FULL` for the log chain).
    pub(super) fn new(size: u64, content: u64) -> Db {
        Db {
            size,
            content,
            state: "online".into(),
            restored_from: None,
            lsn: FIRST_LSN,
            recovery: simple(),
            full_lsn: None,
            log_lsn: None,
            restored_lsn: None,
            restored_base: None,
        }
    }
}

/// The LSN a new database starts at.
pub(super) const FIRST_LSN: u64 = 10_000;

/// Msg 911: the database does not exist.
pub(super) fn no_database(db: &str) -> SqlMessage {
    SqlMessage::error(
        911,
        format!("Database '{db}' does not exist. Make sure that the name is entered correctly."),
    )
}

/// A restore msdb's restore history keeps (`restorehistory`): which backup
/// set went onto which database, and how it left it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RestoreRecord {
    pub(super) database: String,
    /// The backup set restored (its GUID) and its number on the server
    /// that made it.
    pub(super) backup_set: String,
    pub(super) backup_number: u32,
    /// `D` (database), `I` (differential), `L` (log).
    pub(super) restore_type: char,
    /// `online`, `restoring` or `standby`: the database after it.
    pub(super) state: String,
    pub(super) ended_unix_ms: u64,
}

/// What msdb keeps of a backup beyond its media headers
/// (`backupset.backup_finish_date`, `backupmediafamily.physical_device_name`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Finished {
    /// When the BACKUP statement ended (Unix ms; 0 for a backup saved
    /// before this was kept: its start then stands for it).
    pub(crate) unix_ms: u64,
    /// The VIRTUAL_DEVICE names, family by family.
    pub(crate) devices: Vec<String>,
}
