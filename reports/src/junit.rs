//! `junit.xml`: the report in the JUnit XML dialect CI systems read
//! (GitLab, Jenkins, GitHub test-report actions, Azure Pipelines).
//!
//! - one `<testsuite>` per backend, in [`RunReport::backend_names`] order,
//!   with the backend's description, library, profile and the run's seeds as
//!   `<property>` elements;
//! - one `<testcase classname="<backend>" name="<case> [seed N]">` per case
//!   result, in report order, with the scenario file as `file`;
//! - [`Verdict::Violation`] and [`Verdict::UnexpectedPass`] become
//!   `<failure type="violation|unexpected-pass" message="...">`, its body the
//!   detail, the first divergence, the declared reason, a window of the
//!   timeline and the repro command;
//! - [`Verdict::Unimplemented`] becomes `<skipped message="..."/>`;
//! - [`Verdict::ExpectedDeviation`] and [`Verdict::Lenient`] pass, with the
//!   reason in `<system-out>`.
//!
//! No timestamps and no `time` attributes (virtual time is not wall time):
//! the file is a pure function of the report.

use crate::escape::{attr, text};
use crate::schema::{CaseResult, RunReport, Verdict};
use crate::view;
use std::fmt::Write as _;

/// Longest `message` attribute, in characters; the body has the rest.
const MESSAGE_CHARS_MAX: usize = 300;
/// Timeline events shown in a failure body before / after the divergence.
const TIMELINE_BEFORE: usize = 20;
const TIMELINE_AFTER: usize = 10;

/// Renders `report` as JUnit XML.
pub fn render(report: &RunReport) -> String {
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let all = &report.totals;
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\">",
        attr(&format!("{} {}", report.tool.name, report.tool.version)),
        all.cases,
        all.failures(),
        all.unimplemented,
    );
    for backend in report.backend_names() {
        let results: Vec<&CaseResult> = report
            .cases
            .iter()
            .filter(|c| c.backend == backend)
            .collect();
        let t = view::totals(results.iter().copied());
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\">",
            attr(backend),
            t.cases,
            t.failures(),
            t.unimplemented,
        );
        properties(&mut out, report, backend);
        for r in results {
            testcase(&mut out, r);
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn properties(out: &mut String, report: &RunReport, backend: &str) {
    let mut props: Vec<(&str, String)> = Vec::new();
    if let Some(b) = report.backend(backend) {
        props.push(("description", b.description.clone()));
        if let Some(lib) = &b.library {
            props.push(("library", lib.clone()));
        }
        props.push(("profile", b.profile.clone()));
    }
    let seeds: Vec<String> = report.seeds.iter().map(u64::to_string).collect();
    props.push(("seeds", seeds.join(",")));
    props.push(("tool.version", report.tool.version.clone()));
    if let Some(commit) = &report.tool.git_commit {
        props.push(("tool.git_commit", commit.clone()));
    }
    props.push(("tool.build_profile", report.tool.build_profile.clone()));
    props.push(("schema_version", report.schema_version.to_string()));
    if let Some(f) = &report.expected_deviations_file {
        props.push(("expected_deviations_file", f.clone()));
    }
    out.push_str("    <properties>\n");
    for (name, value) in props {
        let _ = writeln!(
            out,
            "      <property name=\"{}\" value=\"{}\"/>",
            attr(name),
            attr(&value)
        );
    }
    out.push_str("    </properties>\n");
}

fn testcase(out: &mut String, r: &CaseResult) {
    let _ = write!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\"",
        attr(&r.backend),
        attr(&format!("{} [seed {}]", r.case, r.seed)),
        attr(&r.file),
    );
    match r.verdict {
        Verdict::Pass => out.push_str("/>\n"),
        Verdict::Violation | Verdict::UnexpectedPass => {
            out.push_str(">\n");
            let _ = writeln!(
                out,
                "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                attr(&view::truncate(&failure_message(r), MESSAGE_CHARS_MAX)),
                r.verdict.as_str(),
                text(&failure_body(r)),
            );
            out.push_str("    </testcase>\n");
        }
        Verdict::Unimplemented => {
            out.push_str(">\n");
            let _ = writeln!(
                out,
                "      <skipped message=\"{}\"/>",
                attr(&view::truncate(
                    &format!("unimplemented: {}", r.detail),
                    MESSAGE_CHARS_MAX
                )),
            );
            out.push_str("    </testcase>\n");
        }
        Verdict::ExpectedDeviation => {
            out.push_str(">\n");
            let mut s = format!(
                "expected deviation: {}\n{}\n",
                r.deviation_reason.as_deref().unwrap_or("(no reason given)"),
                r.detail
            );
            if let Some(d) = &r.divergence {
                divergence_text(&mut s, d);
            }
            let _ = writeln!(s, "reproduce:\n  {}", r.repro);
            let _ = writeln!(out, "      <system-out>{}</system-out>", text(&s));
            out.push_str("    </testcase>\n");
        }
        Verdict::Lenient => {
            out.push_str(">\n");
            let mut s = format!("lenient: {}\n", r.detail);
            if let Some(d) = &r.divergence {
                divergence_text(&mut s, d);
            }
            let _ = writeln!(out, "      <system-out>{}</system-out>", text(&s));
            out.push_str("    </testcase>\n");
        }
    }
}

/// One line for the `message` attribute.
fn failure_message(r: &CaseResult) -> String {
    match r.verdict {
        Verdict::UnexpectedPass => format!(
            "unexpected pass: declared deviation did not happen ({})",
            r.deviation_reason.as_deref().unwrap_or("no reason given")
        ),
        _ => match &r.divergence {
            Some(d) => format!(
                "{}: expected {}; actual {}",
                d.clause.as_deref().unwrap_or(&r.case),
                d.expected,
                d.actual
            ),
            None => first_line(&r.detail).to_string(),
        },
    }
}

fn failure_body(r: &CaseResult) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}\n", r.detail);
    if let Some(d) = &r.divergence {
        divergence_text(&mut s, d);
        s.push('\n');
    }
    if let Some(reason) = &r.deviation_reason {
        let _ = writeln!(s, "declared deviation: {reason}\n");
    }
    let _ = writeln!(s, "case: {} ({})", r.case, r.file);
    let _ = writeln!(s, "clauses: {}", r.clauses.join(", "));
    let _ = writeln!(
        s,
        "trace hash {}, {} ms virtual time, {} steps",
        r.trace_hash, r.virtual_ms, r.steps
    );
    let (window, skipped_before, skipped_after) = view::window(
        &r.timeline,
        r.divergence.as_ref().map(|d| d.seq),
        TIMELINE_BEFORE,
        TIMELINE_AFTER,
    );
    if !window.is_empty() {
        s.push_str("\ntimeline (seq  t/ms  who  what  detail  [clause]):\n");
        if skipped_before > 0 {
            let _ = writeln!(s, "  ... {skipped_before} earlier events");
        }
        let diverged = r.divergence.as_ref().map(|d| d.seq);
        for e in window {
            let mark = if Some(e.seq) == diverged { ">>" } else { "  " };
            let _ = write!(
                s,
                "{mark}{:>5} {:>7}  {:<6} {}  {}",
                e.seq, e.t, e.who, e.what, e.detail
            );
            if let Some(c) = &e.clause {
                let _ = write!(s, "  [{c}]");
            }
            s.push('\n');
        }
        if skipped_after > 0 {
            let _ = writeln!(s, "  ... {skipped_after} later events");
        }
    }
    let _ = writeln!(s, "\nreproduce:\n  {}", r.repro);
    s
}

fn divergence_text(s: &mut String, d: &crate::schema::Divergence) {
    let _ = write!(s, "first divergence at seq {}", d.seq);
    if let Some(c) = &d.clause {
        let _ = write!(s, " (clause {c})");
    }
    let _ = writeln!(s, ":\n  expected: {}\n  actual:   {}", d.expected, d.actual);
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
