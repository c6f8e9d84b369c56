//! SCHEMA.md and the code agree: every object of a sample `report.json` has
//! exactly the fields its section of SCHEMA.md documents, and every verdict
//! value is documented.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use vdi_reports::{SCHEMA_VERSION, Verdict, json, sample};

const SCHEMA_MD: &str = include_str!("../SCHEMA.md");

/// Field names per jq path (`.`, `.tool`, `.cases[]`, ...) of every object in
/// `v`, skipping the free-form `profile_params`.
fn json_fields(v: &Value, path: &str, out: &mut BTreeMap<String, BTreeSet<String>>) {
    match v {
        Value::Object(map) => {
            let here = out.entry(path.to_string()).or_default();
            for k in map.keys() {
                here.insert(k.clone());
            }
            for (k, child) in map {
                if k == "profile_params" {
                    continue;
                }
                let p = if path == "." {
                    format!(".{k}")
                } else {
                    format!("{path}.{k}")
                };
                json_fields(child, &p, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                json_fields(item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

/// Field names per jq path as SCHEMA.md documents them: a heading whose first
/// code span is a jq path starts a section; rows of a table whose header's
/// first cell is `field` name its fields.
fn documented_fields(md: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut path: Option<String> = None;
    let mut in_field_table = false;
    for line in md.lines() {
        if line.starts_with('#') {
            path = line
                .split('`')
                .nth(1)
                .filter(|p| p.starts_with('.'))
                .map(str::to_string);
            in_field_table = false;
            continue;
        }
        if !line.starts_with('|') {
            in_field_table = false;
            continue;
        }
        let first = line
            .trim_start_matches('|')
            .split('|')
            .next()
            .unwrap_or("")
            .trim();
        if first == "field" {
            in_field_table = true;
            continue;
        }
        if in_field_table
            && let (Some(p), Some(name)) = (
                &path,
                first.strip_prefix('`').and_then(|f| f.strip_suffix('`')),
            )
        {
            out.entry(p.clone()).or_default().insert(name.to_string());
        }
    }
    out
}

#[test]
fn every_json_field_is_documented_and_every_documented_field_exists() {
    let value: Value = serde_json::from_str(&json::render(&sample::report())).expect("json");
    let mut actual = BTreeMap::new();
    json_fields(&value, ".", &mut actual);
    let documented = documented_fields(SCHEMA_MD);
    assert!(actual.len() >= 10, "{actual:?}");
    assert_eq!(
        documented, actual,
        "SCHEMA.md (left) and the JSON of the sample report (right) disagree"
    );
    // And the plain check: every key appears in SCHEMA.md as a code span.
    for fields in actual.values() {
        for f in fields {
            assert!(
                SCHEMA_MD.contains(&format!("`{f}`")),
                "{f} not in SCHEMA.md"
            );
        }
    }
}

#[test]
fn every_verdict_and_the_version_are_documented() {
    for v in Verdict::ALL {
        assert!(
            SCHEMA_MD.contains(&format!("| `{}` |", v.as_str())),
            "verdict {v} not in SCHEMA.md"
        );
    }
    assert!(SCHEMA_MD.starts_with(&format!(
        "# `report.json` — the vdisim result schema, version {SCHEMA_VERSION}\n"
    )));
}
