//! The result schema: what one `vdisim run` found, as data.
//!
//! A [`RunReport`] is written as `report.json` (see [`crate::json`]) and is
//! the single source every other format is rendered from. The schema is
//! versioned by [`SCHEMA_VERSION`]; `reports/SCHEMA.md` documents it field by
//! field for the people who read it without Rust.
//!
//! Compatibility rule: adding a field that readers may ignore keeps the
//! version; removing or renaming a field, or changing what a value means,
//! bumps it. [`crate::json::parse`] refuses any other version than this one
//! rather than guess.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use vdi_spec::clauses::{self, Basis};
use vdi_spec::tables::CLIENT_TABLE;
use vdi_spec::{ClientState, TableMethod};

/// The version of the report schema this crate writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything one run found: the top-level object of `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Always [`SCHEMA_VERSION`] when written by this crate.
    pub schema_version: u32,
    /// The program that produced the report.
    pub tool: ToolInfo,
    /// The implementations under test, in the order they were given.
    pub backends: Vec<BackendInfo>,
    /// The seeds the run used, in the order they were given.
    pub seeds: Vec<u64>,
    /// One result per case × backend (× seed when the run used several),
    /// sorted by (case id, backend, seed).
    pub cases: Vec<CaseResult>,
    /// Which clauses and client-table cells the run exercised.
    pub coverage: Coverage,
    /// Verdict counts over [`RunReport::cases`].
    pub totals: Totals,
    /// Path of the expected-deviations file the run applied, if any.
    pub expected_deviations_file: Option<String>,
}

/// The program that produced a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    /// Program name, `"vdisim"`.
    pub name: String,
    /// Program version (semver), e.g. `"0.1.0"`.
    pub version: String,
    /// Git commit the program was built from, when known.
    pub git_commit: Option<String>,
    /// Cargo build profile: `"debug"` or `"release"`.
    pub build_profile: String,
    /// `rustc --version` of the compiler that built the program, when known.
    pub rustc: Option<String>,
}

/// One implementation of VDI under test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// Backend name as results refer to it: `"model"`, `"linux-abi"`,
    /// `"com"`, `"replay"`, ...
    pub name: String,
    /// One line saying what this backend drives.
    pub description: String,
    /// Path of the library loaded (a `libsqlvdi.so`, a COM server DLL),
    /// when the backend loads one.
    pub library: Option<String>,
    /// Name of the profile the model used to judge this backend.
    pub profile: String,
    /// The profile's parameters, as the profile file spells them.
    pub profile_params: serde_json::Value,
}

/// The result of one case on one backend with one seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Scenario id, e.g. `"close.devices-open"`.
    pub case: String,
    /// Scenario file path, relative to the catalog root or working directory.
    pub file: String,
    /// One line saying what the case checks.
    pub summary: String,
    /// Ids of the clauses the case checks.
    pub clauses: Vec<String>,
    /// Name of the backend (one of [`RunReport::backends`]).
    pub backend: String,
    /// Seed of this run of the case.
    pub seed: u64,
    /// The graded outcome.
    pub verdict: Verdict,
    /// One paragraph: why this verdict.
    pub detail: String,
    /// The first point where the backend and the model disagreed, if they did.
    pub divergence: Option<Divergence>,
    /// Trace hash: FNV-1a 64 over the canonical JSONL trace, 16 lowercase
    /// hex digits.
    pub trace_hash: String,
    /// Virtual time the case took, in milliseconds.
    pub virtual_ms: u64,
    /// Scheduler steps the case took.
    pub steps: u64,
    /// One copy-paste shell command that reproduces this result.
    pub repro: String,
    /// Reason given in the expected-deviations file, for
    /// [`Verdict::ExpectedDeviation`] and [`Verdict::UnexpectedPass`].
    pub deviation_reason: Option<String>,
    /// Trace events, in `seq` order; may be empty (runs keep them for
    /// failures only, and cap their length).
    #[serde(default)]
    pub timeline: Vec<TimelineEvent>,
}

impl CaseResult {
    /// The key [`RunReport::cases`] is sorted by: (case id, backend, seed).
    pub fn sort_key(&self) -> (&str, &str, u64) {
        (&self.case, &self.backend, self.seed)
    }
}

/// The graded outcome of one case result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The backend did what the model predicts.
    Pass,
    /// The backend contradicted a clause. Fails the run.
    Violation,
    /// The backend differed from the model where the reference allows it
    /// (an inferred clause or a tolerated variation). Does not fail the run.
    Lenient,
    /// The backend does not implement what the case needs; the case was
    /// skipped. Does not fail the run.
    Unimplemented,
    /// A failure the expected-deviations file declares, with a reason,
    /// happened as declared. Does not fail the run.
    ExpectedDeviation,
    /// A declared deviation did not happen: the case passed. Fails the run,
    /// so that stale declarations get removed.
    UnexpectedPass,
}

impl Verdict {
    /// Every verdict, in the order reports list them.
    pub const ALL: [Verdict; 6] = [
        Verdict::Pass,
        Verdict::Violation,
        Verdict::Lenient,
        Verdict::Unimplemented,
        Verdict::ExpectedDeviation,
        Verdict::UnexpectedPass,
    ];

    /// Whether this verdict fails the run (Violation and UnexpectedPass).
    pub fn is_failure(self) -> bool {
        matches!(self, Verdict::Violation | Verdict::UnexpectedPass)
    }

    /// The kebab-case name used in `report.json`, e.g. `"expected-deviation"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Violation => "violation",
            Verdict::Lenient => "lenient",
            Verdict::Unimplemented => "unimplemented",
            Verdict::ExpectedDeviation => "expected-deviation",
            Verdict::UnexpectedPass => "unexpected-pass",
        }
    }

    /// The name for people, e.g. `"expected deviation"`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Violation => "violation",
            Verdict::Lenient => "lenient",
            Verdict::Unimplemented => "unimplemented",
            Verdict::ExpectedDeviation => "expected deviation",
            Verdict::UnexpectedPass => "unexpected pass",
        }
    }

    /// One line saying what the verdict means, for legends.
    pub fn meaning(self) -> &'static str {
        match self {
            Verdict::Pass => "the backend did what the model predicts",
            Verdict::Violation => "the backend contradicted a clause; fails the run",
            Verdict::Lenient => {
                "differs from the model where the reference allows it; does not fail the run"
            }
            Verdict::Unimplemented => {
                "the backend lacks what the case needs; skipped, does not fail the run"
            }
            Verdict::ExpectedDeviation => {
                "a declared deviation happened as declared; does not fail the run"
            }
            Verdict::UnexpectedPass => {
                "a declared deviation did not happen; fails the run until the declaration is removed"
            }
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first point where a backend and the model disagreed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    /// `seq` of the trace event where they first disagreed.
    pub seq: u64,
    /// The clause that decides the expected behaviour, when one does.
    pub clause: Option<String>,
    /// What the model predicted, e.g. `"Close returns VD_E_OPEN (0x80770005)"`.
    pub expected: String,
    /// What the backend did.
    pub actual: String,
}

/// One trace event: a line of the canonical trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// Event number, from 0.
    pub seq: u64,
    /// Virtual time in milliseconds.
    pub t: u64,
    /// The actor: `"ctl"` (the client's controller thread), `"dev0"` ..
    /// `"dev63"` (device threads), `"client"` (the client half), `"server"`,
    /// `"sql"` (the statement), `"link"` (a message delivery), `"world"`
    /// (faults, time).
    pub who: String,
    /// The API method, message or event name.
    pub what: String,
    /// Arguments and result, human-readable.
    pub detail: String,
    /// The clause that decides this behaviour, when one does.
    pub clause: Option<String>,
}

/// Which clauses and client-table cells a run exercised.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Every clause of the catalog, in catalog order, then any clause id a
    /// case or the model named that the catalog lacks.
    pub clauses: Vec<ClauseCoverage>,
    /// The 42 cells of the client transition table, row-major (methods ×
    /// states).
    pub cells: Vec<CellCoverage>,
}

/// How much one clause was exercised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClauseCoverage {
    /// Clause id, e.g. `"close.devices-open"`.
    pub id: String,
    /// The clause's one-line summary.
    pub summary: String,
    /// `"documented"` or `"inferred"`; `"unknown"` for an id the catalog lacks.
    pub basis: String,
    /// Number of cases naming this clause.
    pub cases: u32,
    /// Number of times the model's decisions cited this clause.
    pub hits: u64,
}

/// How often one cell of the client transition table was exercised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellCoverage {
    /// The row: method name, e.g. `"GetCommand"`.
    pub method: String,
    /// The column: state name, e.g. `"Active"`.
    pub state: String,
    /// The cell's clause id, e.g. `"table.get-command.active"`.
    pub clause: String,
    /// Number of method calls the model decided in this cell.
    pub hits: u64,
}

/// Verdict counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Number of case results.
    pub cases: u32,
    /// Results with [`Verdict::Pass`].
    pub pass: u32,
    /// Results with [`Verdict::Violation`].
    pub violation: u32,
    /// Results with [`Verdict::Lenient`].
    pub lenient: u32,
    /// Results with [`Verdict::Unimplemented`].
    pub unimplemented: u32,
    /// Results with [`Verdict::ExpectedDeviation`].
    pub expected_deviation: u32,
    /// Results with [`Verdict::UnexpectedPass`].
    pub unexpected_pass: u32,
}

impl Totals {
    /// Counts the verdicts of `cases` (saturating at `u32::MAX`).
    pub fn from_cases(cases: &[CaseResult]) -> Totals {
        let mut t = Totals::default();
        for c in cases {
            t.add(c.verdict);
        }
        t
    }

    /// Counts one more result with this verdict.
    pub fn add(&mut self, verdict: Verdict) {
        self.cases = self.cases.saturating_add(1);
        let slot = match verdict {
            Verdict::Pass => &mut self.pass,
            Verdict::Violation => &mut self.violation,
            Verdict::Lenient => &mut self.lenient,
            Verdict::Unimplemented => &mut self.unimplemented,
            Verdict::ExpectedDeviation => &mut self.expected_deviation,
            Verdict::UnexpectedPass => &mut self.unexpected_pass,
        };
        *slot = slot.saturating_add(1);
    }

    /// The count for one verdict.
    pub fn get(&self, verdict: Verdict) -> u32 {
        match verdict {
            Verdict::Pass => self.pass,
            Verdict::Violation => self.violation,
            Verdict::Lenient => self.lenient,
            Verdict::Unimplemented => self.unimplemented,
            Verdict::ExpectedDeviation => self.expected_deviation,
            Verdict::UnexpectedPass => self.unexpected_pass,
        }
    }

    /// Results that fail the run (violations and unexpected passes).
    pub fn failures(&self) -> u32 {
        self.violation.saturating_add(self.unexpected_pass)
    }
}

impl RunReport {
    /// Assembles a report: sets [`SCHEMA_VERSION`], sorts `cases` by
    /// [`CaseResult::sort_key`] and computes the totals.
    /// `expected_deviations_file` starts as `None`.
    pub fn new(
        tool: ToolInfo,
        backends: Vec<BackendInfo>,
        seeds: Vec<u64>,
        mut cases: Vec<CaseResult>,
        coverage: Coverage,
    ) -> RunReport {
        cases.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        let totals = Totals::from_cases(&cases);
        RunReport {
            schema_version: SCHEMA_VERSION,
            tool,
            backends,
            seeds,
            cases,
            coverage,
            totals,
            expected_deviations_file: None,
        }
    }

    /// Whether the run succeeded: no result is a [`Verdict::is_failure`].
    /// Judged from the case results themselves, not from
    /// [`RunReport::totals`]. A run with no cases is ok; whether an empty
    /// run is an error is the caller's decision.
    pub fn exit_ok(&self) -> bool {
        !self.cases.iter().any(|c| c.verdict.is_failure())
    }

    /// Backend names in display order: [`RunReport::backends`] first, then
    /// any backend a result names that the list lacks, sorted.
    pub fn backend_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for b in &self.backends {
            if seen.insert(b.name.as_str()) {
                names.push(b.name.as_str());
            }
        }
        let extra: BTreeSet<&str> = self
            .cases
            .iter()
            .map(|c| c.backend.as_str())
            .filter(|n| !seen.contains(n))
            .collect();
        names.extend(extra);
        names
    }

    /// The backend with this name, if the report lists it.
    pub fn backend(&self, name: &str) -> Option<&BackendInfo> {
        self.backends.iter().find(|b| b.name == name)
    }
}

/// Coverage counts, for headlines and percentages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoverageCounts {
    /// Clauses listed.
    pub clauses: u64,
    /// Clauses named by at least one case.
    pub clauses_checked: u64,
    /// Clauses cited by at least one model decision.
    pub clauses_hit: u64,
    /// Client-table cells listed (42 for a complete report).
    pub cells: u64,
    /// Cells with at least one hit.
    pub cells_hit: u64,
}

impl Coverage {
    /// Builds the coverage of a run.
    ///
    /// - `case_clauses`: the clause ids the run's cases name, each case's
    ///   list once per scenario (not once per backend or seed); an id named
    ///   by n cases appears n times.
    /// - `clause_hits`: clause id → number of model decisions citing it.
    /// - `cell_hits`: (method, state) → number of method calls the model
    ///   decided in that cell of the client table. Method and state may be
    ///   given by name (`"GetCommand"`, `"Active"`) or by slug
    ///   (`"get-command"`, `"active"`); keys naming no cell are ignored.
    ///
    /// Lists every clause of [`vdi_spec::clauses::all`] in catalog order
    /// (uncovered ones with zero counts), then ids the catalog lacks, sorted,
    /// with basis `"unknown"` so that typos show; and all 42 cells of
    /// [`CLIENT_TABLE`], row-major.
    pub fn from_hits<'a>(
        case_clauses: impl Iterator<Item = &'a str>,
        clause_hits: &BTreeMap<String, u64>,
        cell_hits: &BTreeMap<(String, String), u64>,
    ) -> Coverage {
        let mut named: BTreeMap<&str, u32> = BTreeMap::new();
        for id in case_clauses {
            let n = named.entry(id).or_insert(0);
            *n = n.saturating_add(1);
        }
        let catalog = clauses::all();
        let known: BTreeSet<&str> = catalog.iter().map(|c| c.id).collect();
        let mut out: Vec<ClauseCoverage> = catalog
            .iter()
            .map(|c| ClauseCoverage {
                id: c.id.to_string(),
                summary: c.summary.to_string(),
                basis: basis_name(c.basis).to_string(),
                cases: named.get(c.id).copied().unwrap_or(0),
                hits: clause_hits.get(c.id).copied().unwrap_or(0),
            })
            .collect();
        let unknown: BTreeSet<&str> = named
            .keys()
            .copied()
            .chain(clause_hits.keys().map(String::as_str))
            .filter(|id| !known.contains(id))
            .collect();
        for id in unknown {
            out.push(ClauseCoverage {
                id: id.to_string(),
                summary: "(not in the clause catalog)".to_string(),
                basis: "unknown".to_string(),
                cases: named.get(id).copied().unwrap_or(0),
                hits: clause_hits.get(id).copied().unwrap_or(0),
            });
        }

        let mut by_cell: BTreeMap<(TableMethod, ClientState), u64> = BTreeMap::new();
        for ((m, s), hits) in cell_hits {
            if let (Some(m), Some(s)) = (method_named(m), state_named(s)) {
                let n = by_cell.entry((m, s)).or_insert(0);
                *n = n.saturating_add(*hits);
            }
        }
        let cells = CLIENT_TABLE
            .iter()
            .map(|cell| CellCoverage {
                method: cell.method.name().to_string(),
                state: cell.state.name().to_string(),
                clause: cell.clause.to_string(),
                hits: by_cell
                    .get(&(cell.method, cell.state))
                    .copied()
                    .unwrap_or(0),
            })
            .collect();
        Coverage {
            clauses: out,
            cells,
        }
    }

    /// Counts for headlines: clauses checked and hit, cells hit.
    pub fn counts(&self) -> CoverageCounts {
        let len = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        CoverageCounts {
            clauses: len(self.clauses.len()),
            clauses_checked: len(self.clauses.iter().filter(|c| c.cases > 0).count()),
            clauses_hit: len(self.clauses.iter().filter(|c| c.hits > 0).count()),
            cells: len(self.cells.len()),
            cells_hit: len(self.cells.iter().filter(|c| c.hits > 0).count()),
        }
    }

    /// The entry for one clause id, if listed.
    pub fn clause(&self, id: &str) -> Option<&ClauseCoverage> {
        self.clauses.iter().find(|c| c.id == id)
    }
}

/// The schema's spelling of a [`Basis`].
pub fn basis_name(basis: Basis) -> &'static str {
    match basis {
        Basis::Documented => "documented",
        Basis::Inferred => "inferred",
    }
}

fn method_named(s: &str) -> Option<TableMethod> {
    TableMethod::ALL
        .into_iter()
        .find(|m| m.name() == s || m.slug() == s)
}

fn state_named(s: &str) -> Option<ClientState> {
    ClientState::ALL
        .into_iter()
        .find(|st| st.name() == s || st.slug() == s)
}

/// `n / d` as a percentage with one decimal, e.g. `"23.8%"`, computed with
/// integers (rounded half up); `"n/a"` when `d` is 0.
pub fn percent(n: u64, d: u64) -> String {
    if d == 0 {
        return "n/a".to_string();
    }
    let tenths = (u128::from(n) * 1000 + u128::from(d) / 2) / u128::from(d);
    format!("{}.{}%", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounds_with_integers() {
        assert_eq!(percent(0, 42), "0.0%");
        assert_eq!(percent(10, 42), "23.8%");
        assert_eq!(percent(42, 42), "100.0%");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(2, 3), "66.7%");
        assert_eq!(percent(5, 0), "n/a");
        assert_eq!(percent(u64::MAX, u64::MAX), "100.0%");
    }

    #[test]
    fn failure_verdicts() {
        let failing: Vec<Verdict> = Verdict::ALL
            .into_iter()
            .filter(|v| v.is_failure())
            .collect();
        assert_eq!(failing, [Verdict::Violation, Verdict::UnexpectedPass]);
    }

    #[test]
    fn verdict_names_match_serde() {
        for v in Verdict::ALL {
            let json = serde_json::to_string(&v).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", v.as_str()));
        }
    }

    #[test]
    fn cell_keys_by_name_or_slug() {
        let mut cells = BTreeMap::new();
        cells.insert(("GetCommand".to_string(), "Active".to_string()), 3);
        cells.insert(("get-command".to_string(), "active".to_string()), 2);
        cells.insert(("close".to_string(), "dne".to_string()), 1);
        cells.insert(("Nope".to_string(), "Active".to_string()), 9);
        let cov = Coverage::from_hits(std::iter::empty(), &BTreeMap::new(), &cells);
        let hits = |clause: &str| {
            cov.cells
                .iter()
                .find(|c| c.clause == clause)
                .map(|c| c.hits)
        };
        assert_eq!(
            hits(vdi_spec::id::TABLE_GET_COMMAND_ACTIVE.as_str()),
            Some(5)
        );
        assert_eq!(hits(vdi_spec::id::TABLE_CLOSE_DNE.as_str()), Some(1));
        assert_eq!(cov.counts().cells_hit, 2);
    }
}
