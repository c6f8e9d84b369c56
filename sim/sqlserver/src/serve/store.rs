//! The data directory (`vdisim serve --data-dir`): the databases and msdb's
//! backup history outlive the server process.
//!
//! One file holds the whole state, `state.json`, rewritten after every
//! statement before its outcome is answered: written to a temporary file of
//! this process, flushed to disk, renamed over `state.json`, and the
//! directory flushed. A rename is atomic, so a `kill -9` at any point
//! leaves the previous state or the new one, never half of one, and a
//! statement whose outcome a client saw is on disk. One server at a time
//! owns a directory (an exclusive lock on `serve.lock`, released by the
//! kernel when the process dies); the server that takes the lock removes
//! the temporary files killed servers left. A `state.json` that is not this
//! program's is refused and left alone.

use super::catalog::Catalog;
use super::db::{Db, Finished, RestoreRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use thiserror::Error;
use vdi_model::statement::BackupRecord;

/// What `state.json` says it is.
const FORMAT: &str = "vdisim-serve-state";
/// The state format this build writes and reads.
const VERSION: u32 = 1;
/// Largest `state.json` read back (the history is bounded by
/// `vdi_spec::bounds::HISTORY_MAX`, the databases by `DATABASES_MAX`).
const STATE_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Why the data directory cannot be used.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot use the data directory {dir}: {err}")]
    Io { dir: PathBuf, err: io::Error },
    #[error(
        "the data directory {dir} is in use by another vdisim serve: give each server its own --data-dir, or run with --ephemeral"
    )]
    Locked { dir: PathBuf },
    #[error(
        "{path} is not a vdisim serve state file ({why}); vdisim leaves it alone: choose another --data-dir, or move the file away yourself"
    )]
    NotOurs { path: PathBuf, why: String },
}

/// The state on disk.
#[derive(Serialize, Deserialize)]
struct State {
    format: String,
    version: u32,
    databases: BTreeMap<String, Db>,
    /// msdb's backups, oldest first.
    history: Vec<BackupRecord>,
    /// msdb's restores, oldest first.
    #[serde(default)]
    restores: Vec<RestoreRecord>,
    /// When each backup of `history` finished and on which devices, by
    /// backup number (absent in a state saved before it was kept).
    #[serde(default)]
    finished: BTreeMap<u32, Finished>,
    /// Backup numbers handed out (the next backup takes one more).
    numbered: u32,
}

/// An open data directory.
pub(super) struct Store {
    dir: PathBuf,
    /// Holds the directory's lock while the server runs.
    _lock: File,
}

fn io_err(dir: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |err| StoreError::Io {
        dir: dir.to_path_buf(),
        err,
    }
}

impl Store {
    /// Opens (making it, mode 0700, if missing) and locks `dir`.
    pub(super) fn open(dir: &Path) -> Result<Store, StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join("serve.lock"))
            .map_err(io_err(dir))?;
        // SAFETY: flock on a descriptor this function owns; no memory is
        // shared with the call.
        let r = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r != 0 {
            return Err(StoreError::Locked {
                dir: dir.to_path_buf(),
            });
        }
        remove_temporaries(dir).map_err(io_err(dir))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Loads the saved state into `catalog` (databases saved replace the
    /// configured ones of the same name; the history is the saved one).
    /// Nothing saved yet: `catalog` is left as it is.
    pub(super) fn load(&self, catalog: &mut Catalog) -> Result<(), StoreError> {
        let path = self.state_path();
        let not_ours = |why: String| StoreError::NotOurs {
            path: path.clone(),
            why,
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let len = file.metadata().map_err(io_err(&self.dir))?.len();
        if len > STATE_BYTES_MAX {
            return Err(not_ours(format!(
                "{len} bytes, more than {STATE_BYTES_MAX}"
            )));
        }
        let state: State = serde_json::from_reader(io::BufReader::new(file))
            .map_err(|e| not_ours(format!("not its JSON: {e}")))?;
        if state.format != FORMAT || state.version != VERSION {
            return Err(not_ours(format!(
                "format {:?} version {}, this build reads {FORMAT:?} version {VERSION}",
                state.format, state.version
            )));
        }
        catalog.databases.extend(state.databases);
        let mut finished = state.finished;
        for rec in state.history {
            let f = finished.remove(&rec.number).unwrap_or_default();
            catalog.history.add(rec, f);
        }
        catalog.history.reserve_through(state.numbered);
        catalog.restores = state.restores.into();
        Ok(())
    }

    /// Saves `catalog` atomically (see the module's documentation).
    pub(super) fn save(&self, catalog: &Catalog) -> Result<(), StoreError> {
        let state = State {
            format: FORMAT.into(),
            version: VERSION,
            databases: catalog.databases.clone(),
            history: catalog.history.records().cloned().collect(),
            restores: catalog.restores.iter().cloned().collect(),
            finished: catalog
                .history
                .entries()
                .map(|(r, f)| (r.number, f.clone()))
                .collect(),
            numbered: catalog.history.numbered(),
        };
        let tmp = self.dir.join(temporary_name(std::process::id()));
        let e = io_err(&self.dir);
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)?;
            let bytes = serde_json::to_vec(&state).map_err(io::Error::other)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, self.state_path())?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(e)
    }
}

/// The temporary file `save` writes before its rename.
fn temporary_name(pid: u32) -> String {
    format!(".state.json.{pid}.tmp")
}

/// Removes the temporary files that servers killed between a write and
/// its rename left in `dir` (only the lock holder writes there, so none is
/// in use).
fn remove_temporaries(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        let leftover = name
            .strip_prefix(".state.json.")
            .and_then(|n| n.strip_suffix(".tmp"))
            .is_some_and(|pid| pid.parse::<u32>().is_ok());
        if leftover {
            fs::remove_file(dir.join(&*name))?;
        }
    }
    Ok(())
}

/// The per-user default data directory: `$XDG_STATE_HOME/vdisim/serve`,
/// else `$HOME/.local/state/vdisim/serve`.
pub fn default_data_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })?;
    Some(base.join("vdisim").join("serve"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vdisim-store-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn db(content: u64) -> Db {
        Db {
            lsn: 7,
            log_lsn: Some(5),
            ..Db::new(65536, content)
        }
    }

    #[test]
    fn state_round_trips_and_the_directory_is_locked() {
        let d = dir("rt");
        let s = Store::open(&d).unwrap();
        assert!(matches!(Store::open(&d), Err(StoreError::Locked { .. })));
        let mut c = Catalog::default();
        c.databases.insert("x".into(), db(5));
        let rec = BackupRecord::plan(
            "x",
            vdi_model::statement::StatementKind::BackupDatabase,
            3,
            1,
            65536,
            &vdi_spec::TransferOptions::default(),
        );
        let finished = Finished {
            unix_ms: 7,
            devices: vec!["vd".into()],
        };
        c.history.add(rec.clone(), finished.clone());
        c.restores.push_back(super::super::db::RestoreRecord {
            database: "x".into(),
            backup_set: rec.meta.set_id.to_string(),
            backup_number: 3,
            restore_type: 'D',
            state: "online".into(),
            ended_unix_ms: 1,
        });
        s.save(&c).unwrap();
        drop(s);
        let s = Store::open(&d).unwrap();
        let mut back = Catalog::default();
        s.load(&mut back).unwrap();
        assert_eq!(back.databases, c.databases);
        assert_eq!(
            back.history.entries().cloned().collect::<Vec<_>>(),
            vec![(rec, finished)]
        );
        assert_eq!(back.history.numbered(), 3);
        assert_eq!(back.restores, c.restores);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn temporaries_left_by_killed_servers_are_removed_at_open() {
        let d = dir("tmps");
        fs::create_dir_all(&d).unwrap();
        for f in [temporary_name(4_000_000), ".state.json.x.tmp".into()] {
            fs::write(d.join(f), b"{\"half").unwrap();
        }
        let _s = Store::open(&d).unwrap();
        let mut left: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".state.json.x.tmp", "serve.lock"]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_foreign_state_file_is_refused_and_left_alone() {
        let d = dir("foreign");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("state.json"), b"{\"hello\": 1}").unwrap();
        let s = Store::open(&d).unwrap();
        let e = s.load(&mut Catalog::default()).unwrap_err();
        assert!(matches!(e, StoreError::NotOurs { .. }), "{e}");
        assert!(e.to_string().contains("leaves it alone"));
        assert_eq!(fs::read(d.join("state.json")).unwrap(), b"{\"hello\": 1}");
        let _ = fs::remove_dir_all(&d);
    }
}
