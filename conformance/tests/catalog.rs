//! The scenario catalog: it parses, every case passes on the model, and it
//! covers every clause, every client-table cell and every field row.

use std::collections::BTreeSet;
use vdi_conformance::commands::load_catalog;
use vdi_conformance::oracle::CaseOptions;
use vdi_conformance::runner::{self, RunConfig};
use vdi_conformance::scenario::{self, Scenario};
use vdi_reports::schema::Verdict;
use vdi_spec::id;

fn catalog() -> Vec<Scenario> {
    load_catalog(&scenario::default_dir()).unwrap_or_else(|e| panic!("catalog does not load:\n{e}"))
}

#[test]
fn catalog_passes_on_model() {
    let cases = catalog();
    let plan = RunConfig {
        backends: vec!["model".into()],
        extra_seeds: 0,
        workers: 2,
        case: CaseOptions::default(),
        deviations_dir: Some(scenario::default_dir().parent().unwrap().join("deviations")),
        recording: None,
    };
    let report = runner::run(&cases, &plan).expect("runner");
    let bad: Vec<String> = report
        .cases
        .iter()
        .filter(|c| {
            !matches!(
                c.verdict,
                Verdict::Pass | Verdict::Lenient | Verdict::Unimplemented
            )
        })
        .map(|c| {
            format!(
                "{} seed {}: {} — {}\n    {}",
                c.case, c.seed, c.verdict, c.detail, c.repro
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} case(s) did not pass on the model:\n{}",
        bad.len(),
        bad.join("\n")
    );
    // Unimplemented on the model only where a case requires Windows
    // security (DACLs), which the model lacks; `abi` cases are staged on
    // the model and through the built-in stand-in's binary interface.
    for c in report
        .cases
        .iter()
        .filter(|c| c.verdict == Verdict::Unimplemented)
    {
        let sc = cases.iter().find(|s| s.id == c.case).unwrap();
        assert!(
            sc.requires.iter().any(|r| r == "windows-security"),
            "{} is unimplemented on the model without requiring windows-security: {}",
            c.case,
            c.detail
        );
    }
    for c in report.cases.iter().filter(|c| {
        cases
            .iter()
            .any(|s| s.id == c.case && s.requires.iter().any(|r| r == "abi"))
    }) {
        assert!(
            c.detail.contains(
                "staged on the model and through the built-in stand-in's binary interface (in process)"
            ),
            "{} seed {}: an abi case must say how it was staged: {}",
            c.case,
            c.seed,
            c.detail
        );
    }
}

#[test]
fn catalog_names_every_clause() {
    let named: BTreeSet<String> = catalog().iter().flat_map(|c| c.clauses.clone()).collect();
    let missing: Vec<&str> = vdi_spec::clauses::all()
        .iter()
        .map(|c| c.id)
        .filter(|id| !named.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} clause(s) have no case: {missing:?}",
        missing.len()
    );
}

#[test]
fn catalog_has_a_case_per_client_cell() {
    let ids: BTreeSet<String> = catalog().iter().map(|c| c.id.clone()).collect();
    for cell in vdi_spec::tables::CLIENT_TABLE.iter() {
        assert!(
            ids.iter()
                .any(|i| cell.clause == *i || i.starts_with(&format!("{}.", cell.clause))),
            "no case file named {}.toml",
            cell.clause
        );
    }
}

#[test]
fn catalog_has_a_case_per_close_rule() {
    let ids: BTreeSet<String> = catalog().iter().map(|c| c.id.clone()).collect();
    for id in [
        id::CLOSE_NOT_OPEN,
        id::CLOSE_ALL_FINISHED,
        id::CLOSE_DEVICES_OPEN,
        id::CLOSE_INVALIDATES_DEVICES,
        id::CLOSE_REUSE,
        id::CLOSE_WAIT_FOR_CLOSE,
    ] {
        assert!(ids.contains(id.as_str()), "no case {id}.toml");
    }
}

#[test]
fn catalog_has_a_case_per_field_row() {
    let ids: Vec<String> = catalog().iter().map(|c| c.id.clone()).collect();
    for row in 1..=20 {
        let prefix = format!("field.{row:02}");
        assert!(
            ids.iter().any(|i| i.starts_with(&prefix)),
            "no case for field row {row} (an id starting {prefix})"
        );
    }
}
