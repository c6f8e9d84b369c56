//! msdb's backup history as a long-running server keeps it: indexed by
//! number and by database and bounded (`vdi_spec::bounds::HISTORY_MAX`, the
//! oldest forgotten), so each statement costs O(log n) however long the
//! server has run. A statement's server host is handed only what it needs:
//! the one backup a RESTORE reads, or the number a BACKUP will take.

use std::collections::{BTreeMap, HashMap};
use vdi_model::statement::{BackupRecord, Statement};

/// The backups a server has taken, each with what the server keeps beside
/// it (`T`: for `vdisim serve`, the content of the database it copied).
#[derive(Debug)]
pub struct History<T = ()> {
    by_number: BTreeMap<u32, (BackupRecord, T)>,
    latest: HashMap<String, u32>,
    /// Backup numbers handed out (a BACKUP reserves its number when it
    /// starts, so statements running at once never share one).
    reserved: u32,
}

impl<T> Default for History<T> {
    fn default() -> Self {
        History {
            by_number: BTreeMap::new(),
            latest: HashMap::new(),
            reserved: 0,
        }
    }
}

/// What a statement's server host starts with (see
/// [`crate::server::HostSetup`]'s `seed_backups` and `backups_before`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seeds {
    /// The backup a RESTORE reads (none for a BACKUP, or when there is no
    /// backup of the database).
    pub restore: Option<BackupRecord>,
    /// Backups numbered before the first one this statement may add.
    pub backups_before: u32,
}

impl<T: Clone> History<T> {
    /// What `stmt`'s host starts with; a BACKUP reserves its number.
    pub fn seeds_for(&mut self, stmt: &Statement) -> Seeds {
        if stmt.kind.is_backup() {
            self.reserved = self.reserved.saturating_add(1);
            return Seeds {
                restore: None,
                backups_before: self.reserved - 1,
            };
        }
        let restore = self.to_restore(&stmt.database).map(|(r, _)| r.clone());
        let backups_before = restore.as_ref().map_or(0, |r| r.number.saturating_sub(1));
        Seeds {
            restore,
            backups_before,
        }
    }

    /// The backup a RESTORE of `database` reads: the latest of that
    /// database (of any, for HEADERONLY / FILELISTONLY / VERIFYONLY, which
    /// name none) — the server half's rule
    /// (`vdi_model::statement::backup_to_restore`).
    pub fn to_restore(&self, database: &str) -> Option<&(BackupRecord, T)> {
        if database.is_empty() {
            return self.by_number.values().next_back();
        }
        self.by_number.get(self.latest.get(database)?)
    }

    /// Records a finished backup.
    pub fn add(&mut self, rec: BackupRecord, extra: T) {
        let n = rec.number;
        self.reserved = self.reserved.max(n);
        let latest = self.latest.entry(rec.database.clone()).or_insert(n);
        *latest = (*latest).max(n);
        self.by_number.insert(n, (rec, extra));
        while self.by_number.len() > vdi_spec::bounds::HISTORY_MAX {
            let Some((old, (r, _))) = self.by_number.pop_first() else {
                break;
            };
            if self.latest.get(&r.database) == Some(&old) {
                self.latest.remove(&r.database);
            }
        }
    }

    /// The backups held, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &BackupRecord> {
        self.by_number.values().map(|(r, _)| r)
    }

    /// The backups held with what the owner keeps of each, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &(BackupRecord, T)> {
        self.by_number.values()
    }

    /// Backup numbers handed out so far.
    pub fn numbered(&self) -> u32 {
        self.reserved
    }

    /// Numbers up to `n` are taken (a history restored from disk).
    pub fn reserve_through(&mut self, n: u32) {
        self.reserved = self.reserved.max(n);
    }

    /// Backups the history holds.
    pub fn len(&self) -> usize {
        self.by_number.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.by_number.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vdi_model::statement::StatementKind;
    use vdi_spec::TransferOptions;

    fn rec(db: &str, number: u32) -> BackupRecord {
        BackupRecord::plan(
            db,
            StatementKind::BackupDatabase,
            number,
            1,
            65536,
            &TransferOptions::default(),
        )
    }

    fn stmt(kind: StatementKind, db: &str) -> Statement {
        Statement {
            kind,
            database: db.into(),
            devices: vec!["d".into()],
            options: TransferOptions::default(),
            plan: Default::default(),
        }
    }

    /// The rule is the model's: the latest backup of the database, any
    /// database for the forms that name none.
    #[test]
    fn restore_reads_the_latest_backup_as_the_model_does() {
        let mut h = History::<()>::default();
        let mut all = Vec::new();
        for (i, db) in ["a", "b", "a", "c", "b"].iter().enumerate() {
            let n = h
                .seeds_for(&stmt(StatementKind::BackupDatabase, db))
                .backups_before
                + 1;
            assert_eq!(n as usize, i + 1, "numbers are handed out in order");
            h.add(rec(db, n), ());
            all.push(rec(db, n));
        }
        for db in ["a", "b", "c", "", "zzz"] {
            let model = vdi_model::statement::backup_to_restore(&all, db);
            assert_eq!(h.to_restore(db).map(|(r, _)| r), model, "{db:?}");
        }
        let s = h.seeds_for(&stmt(StatementKind::RestoreDatabase, "a"));
        assert_eq!(s.restore.as_ref().map(|r| r.number), Some(3));
        assert_eq!(s.backups_before, 2);
    }

    /// Bounded: the oldest backups are forgotten, the latest kept, and a
    /// database whose latest backup was forgotten has none.
    #[test]
    fn history_is_bounded() {
        let mut h = History::<()>::default();
        h.add(rec("old", 1), ());
        for n in 2..=(vdi_spec::bounds::HISTORY_MAX as u32 + 5) {
            h.add(rec("busy", n), ());
        }
        assert_eq!(h.len(), vdi_spec::bounds::HISTORY_MAX);
        assert!(h.to_restore("old").is_none());
        assert_eq!(
            h.to_restore("busy").map(|(r, _)| r.number),
            Some(vdi_spec::bounds::HISTORY_MAX as u32 + 5)
        );
    }

    /// Two BACKUPs that start before either ends get different numbers.
    #[test]
    fn concurrent_backups_never_share_a_number() {
        let mut h = History::<()>::default();
        let a = h.seeds_for(&stmt(StatementKind::BackupDatabase, "x"));
        let b = h.seeds_for(&stmt(StatementKind::BackupDatabase, "x"));
        assert_ne!(a.backups_before, b.backups_before);
    }
}
