//! Writes the sample report in every format, for a look at the renderers.
//!
//! ```text
//! cargo run -p vdi-reports --example render_sample -- [DIR] [--full-catalog]
//! ```
//!
//! `DIR` defaults to `vdisim-sample` in the current directory. With
//! `--full-catalog` the coverage section lists the whole clause catalog (as a
//! real run does) instead of the sample's trimmed one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use vdi_reports::{Coverage, sample, write_all};

fn main() -> ExitCode {
    let mut dir = PathBuf::from("vdisim-sample");
    let mut full = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--full-catalog" => full = true,
            "-h" | "--help" => {
                println!("usage: render_sample [DIR] [--full-catalog]");
                return ExitCode::SUCCESS;
            }
            _ => dir = PathBuf::from(arg),
        }
    }
    let mut report = sample::report();
    if full {
        // Re-derive coverage from the sample's own counts over the real catalog.
        let clause_hits: BTreeMap<String, u64> = report
            .coverage
            .clauses
            .iter()
            .map(|c| (c.id.clone(), c.hits))
            .collect();
        let cell_hits: BTreeMap<(String, String), u64> = report
            .coverage
            .cells
            .iter()
            .map(|c| ((c.method.clone(), c.state.clone()), c.hits))
            .collect();
        let mut named: Vec<String> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for c in &report.cases {
            if seen.insert(c.case.clone()) {
                named.extend(c.clauses.iter().cloned());
            }
        }
        report.coverage =
            Coverage::from_hits(named.iter().map(String::as_str), &clause_hits, &cell_hits);
    }
    match write_all(&report, &dir) {
        Ok(written) => {
            for p in written.paths() {
                println!("{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
