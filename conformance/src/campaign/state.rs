//! A campaign's state directory: `state.json` (where it stands, counts,
//! coverage, failures), `corpus.json` (the cases that brought new
//! coverage), `failures/<id>.toml` (each failure, shrunk, as a scenario
//! file). Files are written to a temporary name and renamed, so a kill at
//! any point leaves the previous state whole; a file of those names that
//! the campaign did not write is never replaced.

use crate::random::{self, Broken, RandomCase};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;
use vdi_model::mutation::Mutation;
use vdi_sim::world::RunResult;

/// The `format` of a state file this build reads and writes.
pub const FORMAT: &str = "vdisim-fuzz-state/1";
/// The first line of a failure file (how the campaign knows its own).
const FAILURE_MARK: &str = "# Written by a failing randomized run";

/// What is wrong with a state directory.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("{}: the campaign's state directory cannot be used (check --state)", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is not a vdisim fuzz state file ({why}); give --state a directory of its own",
        path.display()
    )]
    NotOurs { path: PathBuf, why: String },
    #[error(
        "{} holds campaign seed {found_seed}, shard {}/{}; this run asks for seed {seed}, shard {}/{}: use the same --seed and --shard to resume it, or another --state directory",
        path.display(), found_shard.0, found_shard.1, shard.0, shard.1
    )]
    Mismatch {
        path: PathBuf,
        found_seed: u64,
        found_shard: (u64, u64),
        seed: u64,
        shard: (u64, u64),
    },
    #[error(
        "{} holds a campaign on the model with mutant {found}; this run asks for mutant {asked}: use the same --mutant to resume it, or another --state directory",
        path.display()
    )]
    MutantMismatch {
        path: PathBuf,
        found: &'static str,
        asked: &'static str,
    },
}

/// One failure of a campaign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The failing case's scheduler seed.
    pub seed: u64,
    /// The first clause it broke.
    pub clause: String,
    pub what: String,
    /// The shrunk case's scenario file.
    pub file: String,
}

/// Where a campaign (one shard of it) stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignState {
    pub format: String,
    pub seed: u64,
    pub shard: (u64, u64),
    /// Every case below this index is done.
    pub next: u64,
    /// Cases run in all (a resumed batch may be counted twice).
    pub cases: u64,
    /// Clause id → cases that cited it.
    pub clause_hits: BTreeMap<String, u64>,
    /// "Method/State" → cases that exercised the client-table cell.
    pub cell_hits: BTreeMap<String, u64>,
    pub failures: Vec<Failure>,
    /// The deliberately broken model rule the campaign runs on (test-only:
    /// `--mutant`).
    #[serde(default, skip_serializing_if = "Mutation::is_none")]
    pub mutant: Mutation,
}

impl CampaignState {
    fn new(seed: u64, shard: (u64, u64)) -> CampaignState {
        CampaignState {
            format: FORMAT.to_string(),
            seed,
            shard,
            next: 0,
            cases: 0,
            clause_hits: BTreeMap::new(),
            cell_hits: BTreeMap::new(),
            failures: Vec::new(),
            mutant: Mutation::None,
        }
    }

    /// An empty tally (a worker's batch).
    pub fn counts_only() -> CampaignState {
        CampaignState::new(0, (0, 1))
    }

    /// Counts a run: one case, its clauses and cells.
    pub fn absorb(&mut self, r: &RunResult) {
        self.cases += 1;
        for k in r.clauses.keys() {
            *self.clause_hits.entry((*k).to_string()).or_default() += 1;
        }
        for (m, s) in r.cells.keys() {
            *self.cell_hits.entry(format!("{m:?}/{s:?}")).or_default() += 1;
        }
    }

    /// Whether the run cites a clause or exercises a cell this tally has
    /// not seen.
    pub fn is_new(&self, r: &RunResult) -> bool {
        r.clauses.keys().any(|k| !self.clause_hits.contains_key(*k))
            || r.cells
                .keys()
                .any(|(m, s)| !self.cell_hits.contains_key(&format!("{m:?}/{s:?}")))
    }

    /// Adds a batch's tally.
    pub fn merge(&mut self, b: &CampaignState) {
        self.cases += b.cases;
        for (k, v) in &b.clause_hits {
            *self.clause_hits.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &b.cell_hits {
            *self.cell_hits.entry(k.clone()).or_default() += v;
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The state in `dir` (checked against `seed` and `shard`) and its corpus,
/// or a new state when `dir` holds none.
pub fn load_or_new(
    dir: &Path,
    seed: u64,
    shard: (u64, u64),
    mutant: Mutation,
) -> Result<(CampaignState, Vec<RandomCase>), StateError> {
    std::fs::create_dir_all(dir.join("failures")).map_err(io(dir))?;
    let path = dir.join("state.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            check_ours(&dir.join("corpus.json"), "[")?;
            let st = CampaignState {
                mutant,
                ..CampaignState::new(seed, shard)
            };
            return Ok((st, Vec::new()));
        }
        Err(e) => return Err(io(&path)(e)),
    };
    let st: CampaignState = serde_json::from_str(&text).map_err(|e| StateError::NotOurs {
        path: path.clone(),
        why: e.to_string(),
    })?;
    if st.format != FORMAT {
        return Err(StateError::NotOurs {
            path,
            why: format!("format {:?}, this build reads {FORMAT:?}", st.format),
        });
    }
    if st.seed != seed || st.shard != shard {
        return Err(StateError::Mismatch {
            path,
            found_seed: st.seed,
            found_shard: st.shard,
            seed,
            shard,
        });
    }
    if st.mutant != mutant {
        return Err(StateError::MutantMismatch {
            path,
            found: st.mutant.name(),
            asked: mutant.name(),
        });
    }
    let cpath = dir.join("corpus.json");
    let corpus = match std::fs::read_to_string(&cpath) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| StateError::NotOurs {
            path: cpath,
            why: e.to_string(),
        })?,
        Err(_) => Vec::new(),
    };
    Ok((st, corpus))
}

/// Refuses a file at `path` that does not start with `mark`.
fn check_ours(path: &Path, mark: &str) -> Result<(), StateError> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim_start().starts_with(mark) => Err(StateError::NotOurs {
            path: path.to_path_buf(),
            why: "it was not written by vdisim fuzz".into(),
        }),
        _ => Ok(()),
    }
}

/// Writes `text` to `path` through a temporary file and a rename.
fn write_atomically(path: &Path, text: &str) -> Result<(), StateError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Saves the state and the corpus.
pub fn save(dir: &Path, st: &CampaignState, corpus: &[RandomCase]) -> Result<(), StateError> {
    write_atomically(&dir.join("corpus.json"), &pretty(corpus))?;
    write_atomically(&dir.join("state.json"), &pretty(st))
}

fn pretty<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into())
}

/// Shrinks a failing case, writes it to `dir/failures/`, and describes it.
pub fn record_failure(dir: &Path, case: &RandomCase, broken: &[Broken]) -> Failure {
    let clause = broken[0].clause.clone();
    let small = super::shrink(case, &clause);
    let again = random::check(&small, &random::run(&small, vdi_model::trace::Trace::off()));
    let id = format!("fuzz-{:016x}", case.seed);
    let path = dir.join("failures").join(format!("{id}.toml"));
    let text = random::to_scenario(&small, &id, if again.is_empty() { broken } else { &again });
    let file = match check_ours(&path, FAILURE_MARK).and_then(|()| write_atomically(&path, &text)) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(not written: {e})"),
    };
    Failure {
        seed: case.seed,
        clause,
        what: broken[0].what.clone(),
        file,
    }
}
