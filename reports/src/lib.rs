//! # vdi-reports — what a vdisim run found, in the formats people read
//!
//! `vdisim run` executes scenarios against one or more backends (the model,
//! a `libsqlvdi.so` through the Linux ABI, a COM object, a replayed trace)
//! and grades every result. This crate holds the result as data and renders
//! it for each audience.
//!
//! ## What this crate must not do
//!
//! It knows nothing about how results are produced: it depends on
//! `vdi-spec` only (for the clause catalog and the client transition
//! table), never on the model, the engine or the harness, which depend on
//! it; and a renderer never reads a clock or a hash map's order, so the same
//! report renders to the same bytes.
//!
//! ## How the pieces fit
//!
//! ```text
//!   runner ──► schema::RunReport ──► json::render      → report.json  (the record; machines)
//!                     │          ├─► junit::render     → junit.xml    (CI test tabs)
//!                     │          ├─► markdown::render  → summary.md   (CI step summary)
//!                     │          └─► html::render      → index.html   (people, offline)
//!   report.json ──► json::parse ─┘   write_all(report, dir) writes all four
//! ```
//!
//! - [`schema`]: the versioned result schema ([`SCHEMA_VERSION`]):
//!   [`RunReport`] with its [`CaseResult`]s, graded by [`Verdict`], the first
//!   [`Divergence`] and a [`TimelineEvent`] list per result, and
//!   [`Coverage`] of clauses and of the 42 client-table cells.
//!   `reports/SCHEMA.md` documents `report.json` field by field for vendors;
//!   a test keeps the two in sync.
//! - [`json`], [`junit`], [`markdown`], [`html`]: one renderer per format,
//!   each a pure function of the report: same report, same bytes (no
//!   timestamps, no hash-map order). The text formats are rendered from the
//!   report alone, so an old `report.json` renders the same later.
//! - [`write_all`]: writes the four files into a directory.
//! - [`sample`]: a fixed report with every verdict, used by the snapshot
//!   tests and the `render_sample` example.
//!
//! ## Using it
//!
//! ```
//! use std::collections::BTreeMap;
//! use vdi_reports::{Coverage, RunReport, ToolInfo};
//!
//! let tool = ToolInfo {
//!     name: "vdisim".into(),
//!     version: "0.1.0".into(),
//!     git_commit: None,
//!     build_profile: "debug".into(),
//!     rustc: None,
//! };
//! let coverage = Coverage::from_hits(std::iter::empty(), &BTreeMap::new(), &BTreeMap::new());
//! let report = RunReport::new(tool, vec![], vec![7], vec![], coverage);
//! assert!(report.exit_ok());
//! let text = vdi_reports::json::render(&report);
//! assert_eq!(vdi_reports::json::parse(&text).ok(), Some(report));
//! ```
//!
//! A run fails ([`RunReport::exit_ok`] is false) when any result is a
//! [`Verdict::Violation`] or a [`Verdict::UnexpectedPass`]; lenient,
//! unimplemented and expected-deviation results are reported, not failed.
//!
//! ## Limitations
//!
//! - `report.json` keeps whatever it is given; bounding timelines is the
//!   producer's job. The other formats bound what they show: the HTML page
//!   at most 2000 events per result, JUnit bodies a window of 31 events
//!   around the divergence, the coverage grids 32 × 32 cells, the Markdown
//!   "worth a look" table 100 rows.
//! - `summary.md` lists every failure in full; a run with many thousands of
//!   failures can exceed the 1 MiB GitHub step-summary limit.
//! - Seeds are JSON numbers up to 2^64 − 1; JavaScript readers need a
//!   big-integer aware parser to keep them exact.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod escape;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod sample;
pub mod schema;
mod view;

pub use error::ReportError;
pub use schema::{
    BackendInfo, CaseResult, CellCoverage, ClauseCoverage, Coverage, CoverageCounts, Divergence,
    RunReport, SCHEMA_VERSION, TimelineEvent, ToolInfo, Totals, Verdict,
};

use std::path::{Path, PathBuf};

/// File name of the JSON report.
pub const REPORT_JSON: &str = "report.json";
/// File name of the JUnit report.
pub const JUNIT_XML: &str = "junit.xml";
/// File name of the Markdown summary.
pub const SUMMARY_MD: &str = "summary.md";
/// File name of the HTML page.
pub const INDEX_HTML: &str = "index.html";

/// The files [`write_all`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// `<dir>/report.json`.
    pub report_json: PathBuf,
    /// `<dir>/junit.xml`.
    pub junit_xml: PathBuf,
    /// `<dir>/summary.md`.
    pub summary_md: PathBuf,
    /// `<dir>/index.html`.
    pub index_html: PathBuf,
}

impl Written {
    /// The four paths, in the order they were written.
    pub fn paths(&self) -> [&Path; 4] {
        [
            &self.report_json,
            &self.junit_xml,
            &self.summary_md,
            &self.index_html,
        ]
    }
}

/// What each report file starts with when vdisim wrote it (within its
/// first [`SIGNATURE_WINDOW`] bytes).
const SIGNATURES: [(&str, &str); 4] = [
    (REPORT_JSON, "\"name\": \"vdisim\""),
    (JUNIT_XML, "<testsuites name=\"vdisim"),
    (SUMMARY_MD, "vdisim conformance"),
    (INDEX_HTML, "<title>vdisim conformance"),
];

/// How much of an existing report file [`write_all`] reads to recognise it.
const SIGNATURE_WINDOW: u64 = 4096;

/// Renders `report` in every format and writes `report.json`, `junit.xml`,
/// `summary.md` and `index.html` into `dir`, creating it (and its parents)
/// if needed. Existing report files are replaced only when vdisim wrote
/// them (recognised by their first lines); any other file of those names
/// is left alone and the call fails with [`ReportError::NotOurs`] before
/// anything is written.
pub fn write_all(report: &RunReport, dir: &Path) -> Result<Written, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for (name, signature) in SIGNATURES {
        let path = dir.join(name);
        if let Some(false) = written_by_vdisim(&path, signature) {
            return Err(ReportError::NotOurs { path });
        }
    }
    let write = |name: &str, contents: String| -> Result<PathBuf, ReportError> {
        let path = dir.join(name);
        std::fs::write(&path, contents).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    };
    Ok(Written {
        report_json: write(REPORT_JSON, json::try_render(report)?)?,
        junit_xml: write(JUNIT_XML, junit::render(report))?,
        summary_md: write(SUMMARY_MD, markdown::render(report))?,
        index_html: write(INDEX_HTML, html::render(report))?,
    })
}

/// Whether the file at `path` holds `signature` near its start: `None`
/// when there is no such file.
fn written_by_vdisim(path: &Path, signature: &str) -> Option<bool> {
    use std::io::Read;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return Some(false);
    }
    let mut head = Vec::new();
    let ok = std::fs::File::open(path)
        .and_then(|f| f.take(SIGNATURE_WINDOW).read_to_end(&mut head))
        .is_ok();
    Some(ok && String::from_utf8_lossy(&head).contains(signature))
}
