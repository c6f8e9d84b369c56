//! The runner: every case × seed × backend, on every core, merged in a
//! deterministic order; expected deviations applied; the report assembled.

use crate::backends;
use crate::oracle::{self, CaseOptions, Graded};
use crate::scenario::Scenario;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use thiserror::Error;
use vdi_reports::schema::{BackendInfo, Coverage, RunReport, ToolInfo, Totals, Verdict};
use vdi_spec::{ClientState, Profile, TableMethod};

/// One entry of a backend's expected-deviations file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deviation {
    pub case: String,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviationFile {
    #[serde(default)]
    deviation: Vec<Deviation>,
}

/// A bad expected-deviations file.
#[derive(Debug, Error)]
pub enum DeviationError {
    #[error("{0}: {1}")]
    Parse(String, String),
    #[error("{0}: entry for '{1}' has an empty reason; every expected deviation needs one")]
    NoReason(String, String),
}

/// Loads `dir/<backend>.toml` (absent = no deviations).
pub fn load_deviations(dir: &Path, backend: &str) -> Result<Vec<Deviation>, DeviationError> {
    let path = dir.join(format!("{backend}.toml"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    let p = path.display().to_string();
    let f: DeviationFile =
        toml::from_str(&text).map_err(|e| DeviationError::Parse(p.clone(), e.to_string()))?;
    for d in &f.deviation {
        if d.reason.trim().is_empty() {
            return Err(DeviationError::NoReason(p, d.case.clone()));
        }
    }
    Ok(f.deviation)
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub backends: Vec<String>,
    /// Extra seeds 1..=n for every case, besides the case's own.
    pub extra_seeds: u64,
    pub workers: usize,
    pub case: CaseOptions,
    pub deviations_dir: Option<std::path::PathBuf>,
    /// The replay backend's recordings (`--recording DIR`).
    pub recording: Option<std::path::PathBuf>,
}

/// The jobs of a plan, in merge order.
fn jobs(cases: &[Scenario], plan: &RunConfig) -> Vec<(usize, String, u64)> {
    let mut v = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let mut seeds = c.seeds.clone();
        seeds.extend(1..=plan.extra_seeds);
        seeds.sort_unstable();
        seeds.dedup();
        for b in &plan.backends {
            for s in &seeds {
                v.push((i, b.clone(), *s));
            }
        }
    }
    v
}

/// Runs `cases` as `plan` says and assembles the report.
pub fn run(cases: &[Scenario], plan: &RunConfig) -> Result<RunReport, String> {
    let jobs = jobs(cases, plan);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Graded>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    let workers = plan.workers.max(1).min(jobs.len().max(1));
    let err: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut bk: BTreeMap<String, Box<dyn crate::backend::Backend>> = BTreeMap::new();
                let mut predictions: BTreeMap<(usize, u64), Vec<Option<vdi_spec::Hresult>>> =
                    BTreeMap::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some((ci, b, seed)) = jobs.get(k) else {
                        break;
                    };
                    let sc = &cases[*ci];
                    if !bk.contains_key(b) {
                        match backends::configured(b, plan.recording.as_deref()) {
                            Ok(x) => {
                                bk.insert(b.clone(), x);
                            }
                            Err(e) => {
                                *err.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(e.to_string());
                                break;
                            }
                        }
                    }
                    let predicted = if b == "model" || b == "replay" || sc.client.is_some() {
                        Vec::new()
                    } else {
                        predictions
                            .entry((*ci, *seed))
                            .or_insert_with(|| oracle::predict(sc, *seed))
                            .clone()
                    };
                    let Some(backend) = bk.get_mut(b) else { break };
                    let g = oracle::grade(backend.as_mut(), sc, *seed, &predicted, &plan.case);
                    results.lock().unwrap_or_else(|p| p.into_inner())[k] = Some(g);
                }
            });
        }
    });
    if let Some(e) = err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let graded: Vec<Graded> = results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect();
    assemble(cases, plan, graded)
}

fn assemble(
    cases: &[Scenario],
    plan: &RunConfig,
    graded: Vec<Graded>,
) -> Result<RunReport, String> {
    let mut clause_hits: BTreeMap<String, u64> = BTreeMap::new();
    let mut cell_hits: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut results = Vec::new();
    let mut devs: BTreeMap<String, Vec<Deviation>> = BTreeMap::new();
    for b in &plan.backends {
        let d = match &plan.deviations_dir {
            Some(dir) => load_deviations(dir, b).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        devs.insert(b.clone(), d);
    }
    for g in graded {
        for (k, v) in g.clause_hits {
            *clause_hits.entry(k).or_default() += v;
        }
        for ((m, s), v) in g.cell_hits {
            *cell_hits
                .entry((method_name(m), s.name().to_string()))
                .or_default() += v;
        }
        let mut r = g.result;
        if r.backend == "replay"
            && let Some(d) = &plan.recording
        {
            r.repro.push_str(&format!(" --recording '{}'", d.display()));
        }
        if let Some(d) = devs
            .get(&r.backend)
            .and_then(|v| v.iter().find(|d| d.case == r.case))
        {
            r.deviation_reason = Some(d.reason.clone());
            r.verdict = match r.verdict {
                Verdict::Violation => Verdict::ExpectedDeviation,
                Verdict::Pass | Verdict::Lenient => Verdict::UnexpectedPass,
                v => v,
            };
        }
        results.push(r);
    }
    results.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let mut seeds: Vec<u64> = results.iter().map(|r| r.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let case_clauses = cases
        .iter()
        .flat_map(|c| c.clauses.iter().map(String::as_str));
    let coverage = Coverage::from_hits(case_clauses, &clause_hits, &cell_hits);
    let profile = Profile::default();
    let backends = plan
        .backends
        .iter()
        .map(|b| {
            let info = backends::configured(b, plan.recording.as_deref()).map(|x| x.info());
            BackendInfo {
                name: b.clone(),
                description: info
                    .as_ref()
                    .map(|i| i.description.clone())
                    .unwrap_or_default(),
                library: info.ok().and_then(|i| i.library),
                profile: profile.name.clone(),
                profile_params: serde_json::to_value(&profile).unwrap_or_default(),
            }
        })
        .collect();
    let totals = Totals::from_cases(&results);
    Ok(RunReport {
        schema_version: vdi_reports::schema::SCHEMA_VERSION,
        tool: ToolInfo {
            name: "vdisim".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            git_commit: option_env!("VDISIM_GIT_COMMIT").map(str::to_string),
            build_profile: if cfg!(debug_assertions) {
                "debug".into()
            } else {
                "release".into()
            },
            rustc: None,
        },
        backends,
        seeds,
        cases: results,
        coverage,
        totals,
        expected_deviations_file: plan
            .deviations_dir
            .as_ref()
            .map(|d| d.display().to_string()),
    })
}

fn method_name(m: TableMethod) -> String {
    m.name().to_string()
}

/// Every cell of the client table, for coverage listings.
pub fn all_cells() -> Vec<(TableMethod, ClientState)> {
    TableMethod::ALL
        .iter()
        .flat_map(|m| ClientState::ALL.iter().map(move |s| (*m, *s)))
        .collect()
}
