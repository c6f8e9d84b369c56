//! `summary.md`: a short Markdown summary for a CI step summary
//! (`$GITHUB_STEP_SUMMARY`, a GitLab merge-request note, a chat message).
//!
//! In order: a headline with the overall PASS/FAIL, a totals table, a
//! per-backend table, every failure with its clauses, first divergence and
//! repro command, the non-failing results that are not plain passes (folded,
//! capped), and clause and client-table coverage. Passes are only counted,
//! so the page stays short however large the catalog; `report.json` and
//! `index.html` have everything.
//!
//! All report text is escaped (see the crate's escaping rules): identifiers
//! and commands go in code spans, prose is backslash-escaped.

use crate::escape::{md, md_code};
use crate::schema::{CaseResult, CoverageCounts, RunReport, Verdict, percent};
use crate::view;
use std::fmt::Write as _;

/// Non-failing, non-pass results listed before the rest is left to
/// `report.json`.
const NOTABLE_ROWS_MAX: usize = 100;
/// Seeds named in the headline before the rest is counted.
const SEEDS_SHOWN_MAX: usize = 10;
/// Characters of a detail shown in a table cell.
const CELL_CHARS_MAX: usize = 200;

fn icon(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "✅",
        Verdict::Violation => "❌",
        Verdict::Lenient => "🟡",
        Verdict::Unimplemented => "⏭️",
        Verdict::ExpectedDeviation => "🔷",
        Verdict::UnexpectedPass => "❗",
    }
}

/// Renders the Markdown summary of `report`.
pub fn render(report: &RunReport) -> String {
    let mut out = String::new();
    headline(&mut out, report);
    totals(&mut out, report);
    backends(&mut out, report);
    failures(&mut out, report);
    notable(&mut out, report);
    coverage(&mut out, report);
    out
}

fn headline(out: &mut String, report: &RunReport) {
    let ok = report.exit_ok();
    let _ = writeln!(
        out,
        "# {} vdisim conformance: {}\n",
        if ok { "✅" } else { "❌" },
        if ok { "PASS" } else { "FAIL" }
    );
    let t = view::totals(report.cases.iter());
    let failing = t.failures();
    if failing == 0 {
        let _ = write!(out, "**No failing results** out of {}", t.cases);
    } else {
        let _ = write!(
            out,
            "**{failing} failing result{}** ({} violation{}, {} unexpected pass{}) out of {}",
            plural(u64::from(failing)),
            t.violation,
            plural(u64::from(t.violation)),
            t.unexpected_pass,
            if t.unexpected_pass == 1 { "" } else { "es" },
            t.cases
        );
    }
    let names: Vec<String> = report
        .backend_names()
        .iter()
        .map(|b| md_code(b, false))
        .collect();
    let _ = write!(
        out,
        " · backend{} {}",
        plural(names.len() as u64),
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    );
    let seeds: Vec<String> = report
        .seeds
        .iter()
        .take(SEEDS_SHOWN_MAX)
        .map(u64::to_string)
        .collect();
    let more = report.seeds.len().saturating_sub(SEEDS_SHOWN_MAX);
    let _ = write!(
        out,
        " · seed{} {}{}",
        plural(report.seeds.len() as u64),
        if seeds.is_empty() {
            "none".to_string()
        } else {
            seeds.join(", ")
        },
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
    out.push_str("\n\n");
    let tool = &report.tool;
    let mut built = vec![tool.build_profile.clone()];
    if let Some(c) = &tool.git_commit {
        built.insert(0, c.chars().take(12).collect());
    }
    let _ = write!(
        out,
        "{} {} ({}) · report schema {}",
        md(&tool.name),
        md(&tool.version),
        md(&built.join(", ")),
        report.schema_version
    );
    if let Some(f) = &report.expected_deviations_file {
        let _ = write!(out, " · expected deviations: {}", md_code(f, false));
    }
    out.push_str("\n\n");
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn totals(out: &mut String, report: &RunReport) {
    let t = view::totals(report.cases.iter());
    out.push_str("| verdict | results |\n|:--|--:|\n");
    for v in Verdict::ALL {
        let _ = writeln!(out, "| {} {} | {} |", icon(v), v.label(), t.get(v));
    }
    let _ = writeln!(out, "| **total** | **{}** |\n", t.cases);
}

fn backends(out: &mut String, report: &RunReport) {
    out.push_str("## By backend\n\n| backend | profile | results |");
    for v in Verdict::ALL {
        let _ = write!(out, " {} |", v.label());
    }
    out.push_str(" status |\n|:--|:--|--:|");
    for _ in Verdict::ALL {
        out.push_str("--:|");
    }
    out.push_str(":--|\n");
    for name in report.backend_names() {
        let t = view::totals(report.cases.iter().filter(|c| c.backend == name));
        let profile = report
            .backend(name)
            .map(|b| md_code(&b.profile, true))
            .unwrap_or_else(|| "—".to_string());
        let _ = write!(
            out,
            "| {} | {} | {} |",
            md_code(name, true),
            profile,
            t.cases
        );
        for v in Verdict::ALL {
            let _ = write!(out, " {} |", t.get(v));
        }
        let status = if t.failures() == 0 {
            "✅ PASS"
        } else {
            "❌ FAIL"
        };
        let _ = writeln!(out, " {status} |");
    }
    out.push('\n');
}

fn failures(out: &mut String, report: &RunReport) {
    let failing: Vec<&CaseResult> = report
        .cases
        .iter()
        .filter(|c| c.verdict.is_failure())
        .collect();
    if failing.is_empty() {
        out.push_str("## Failures\n\nNone.\n\n");
        return;
    }
    let _ = writeln!(out, "## Failures ({})\n", failing.len());
    for (i, r) in failing.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}. {} **{}** — {} on {}, seed {}",
            i + 1,
            icon(r.verdict),
            r.verdict.label(),
            md_code(&r.case, false),
            md_code(&r.backend, false),
            r.seed
        );
        let clauses: Vec<String> = r.clauses.iter().map(|c| md_code(c, false)).collect();
        let _ = writeln!(
            out,
            "   - clauses: {}",
            if clauses.is_empty() {
                "none named".to_string()
            } else {
                clauses.join(", ")
            }
        );
        match &r.divergence {
            Some(d) => {
                let _ = write!(out, "   - first divergence at seq {}", d.seq);
                if let Some(c) = &d.clause {
                    let _ = write!(out, " ({})", md_code(c, false));
                }
                let _ = writeln!(
                    out,
                    ": expected {}, actual {}",
                    md_code(&d.expected, false),
                    md_code(&d.actual, false)
                );
            }
            None => out.push_str("   - first divergence: none recorded\n"),
        }
        if let Some(reason) = &r.deviation_reason {
            let _ = writeln!(out, "   - declared deviation: {}", md(reason));
        }
        let _ = writeln!(out, "   - why: {}", md(&r.detail));
        let _ = writeln!(out, "   - reproduce: {}", md_code(&r.repro, false));
    }
    out.push('\n');
}

fn notable(out: &mut String, report: &RunReport) {
    let rows: Vec<&CaseResult> = report
        .cases
        .iter()
        .filter(|c| !c.verdict.is_failure() && c.verdict != Verdict::Pass)
        .collect();
    let t = view::totals(report.cases.iter());
    if !rows.is_empty() {
        let counts: Vec<String> = [
            Verdict::Lenient,
            Verdict::Unimplemented,
            Verdict::ExpectedDeviation,
        ]
        .into_iter()
        .filter(|v| t.get(*v) > 0)
        .map(|v| format!("{} {}", t.get(v), v.label()))
        .collect();
        let _ = writeln!(
            out,
            "## Not failing, worth a look ({})\n\n<details><summary>{}</summary>\n",
            rows.len(),
            counts.join(" · ")
        );
        out.push_str("| verdict | case | backend | seed | why |\n|:--|:--|:--|--:|:--|\n");
        for r in rows.iter().take(NOTABLE_ROWS_MAX) {
            let why = match (&r.verdict, &r.deviation_reason) {
                (Verdict::ExpectedDeviation, Some(reason)) => reason.as_str(),
                _ => r.detail.as_str(),
            };
            let _ = writeln!(
                out,
                "| {} {} | {} | {} | {} | {} |",
                icon(r.verdict),
                r.verdict.label(),
                md_code(&r.case, true),
                md_code(&r.backend, true),
                r.seed,
                md(&view::truncate(why, CELL_CHARS_MAX))
            );
        }
        if rows.len() > NOTABLE_ROWS_MAX {
            let _ = writeln!(
                out,
                "\n… and {} more in `report.json`.",
                rows.len() - NOTABLE_ROWS_MAX
            );
        }
        out.push_str("\n</details>\n\n");
    }
    let _ = writeln!(
        out,
        "{} result{} passed; they are listed in `report.json` and `index.html`.\n",
        t.pass,
        plural(u64::from(t.pass))
    );
}

fn coverage(out: &mut String, report: &RunReport) {
    let cov = &report.coverage;
    let CoverageCounts {
        clauses,
        clauses_checked,
        clauses_hit,
        cells,
        cells_hit,
    } = cov.counts();
    out.push_str("## Coverage\n\n| | covered | of | % |\n|:--|--:|--:|--:|\n");
    let _ = writeln!(
        out,
        "| clauses named by a case | {clauses_checked} | {clauses} | {} |",
        percent(clauses_checked, clauses)
    );
    let _ = writeln!(
        out,
        "| clauses cited by the model's decisions | {clauses_hit} | {clauses} | {} |",
        percent(clauses_hit, clauses)
    );
    let _ = writeln!(
        out,
        "| client transition table cells hit | {cells_hit} | {cells} | {} |\n",
        percent(cells_hit, cells)
    );
    if cov.cells.is_empty() {
        return;
    }
    // The grid, from the data: rows and columns in order of first appearance.
    let grid = view::CellGrid::new(&cov.cells);
    out.push_str(
        "<details><summary>Client transition table: model decisions per cell</summary>\n\n",
    );
    out.push_str("| method / state |");
    for s in &grid.states {
        let _ = write!(out, " {} |", md(s));
    }
    out.push_str("\n|:--|");
    for _ in &grid.states {
        out.push_str("--:|");
    }
    out.push('\n');
    for m in &grid.methods {
        let _ = write!(out, "| {} |", md(m));
        for s in &grid.states {
            match grid.get(m, s).map(|c| c.hits) {
                Some(0) => out.push_str(" · |"),
                Some(hits) => {
                    let _ = write!(out, " {hits} |");
                }
                None => out.push_str(" |"),
            }
        }
        out.push('\n');
    }
    out.push_str("\n· = never exercised.");
    if grid.omitted > 0 {
        let _ = write!(
            out,
            " {} more cells are not shown; see `report.json`.",
            grid.omitted
        );
    }
    out.push_str("\n\n</details>\n");
}
