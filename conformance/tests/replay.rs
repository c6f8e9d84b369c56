//! `vdisim run --backend replay --recording DIR`: the in-repo C++ client
//! (correct) is recorded through the recording library in front of the
//! stand-in under `vdisim client-test`; the catalog cases whose shape
//! matches a recording are graded from it (pass: the stand-in is the
//! model), every other case is unimplemented ("no recording of this
//! shape"). A hand-altered server reply in a recording turns the cases of
//! its shape into model deviations naming the clause.

#![cfg(unix)]

#[path = "support/clients.rs"]
mod clients;
#[path = "support/recording.rs"]
mod recording;
#[path = "support/scratch.rs"]
mod scratch;

use clients::{BuildError, Lang};
use recording::record;
use scratch::Scratch;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");

/// Runs the catalog on the replay backend: exit code, report, output.
fn replay(recs: &Path, report_dir: &Path) -> (i32, Value, String) {
    let out = Command::new(VDISIM)
        .args(["run", "--backend", "replay", "--jobs", "1", "--recording"])
        .arg(recs)
        .arg("--report-dir")
        .arg(report_dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let report = std::fs::read_to_string(report_dir.join("report.json"))
        .map(|s| serde_json::from_str(&s).unwrap())
        .unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report, text)
}

/// A result's case file and seed (a case id may have several files).
fn key(c: &Value) -> String {
    format!("{} {}", s(c, "file"), c["seed"])
}

/// Whether some result of case `id` was graded from `rec`.
fn graded_from(graded: &std::collections::BTreeMap<String, &str>, id: &str, rec: &str) -> bool {
    graded
        .iter()
        .any(|(k, r)| k.contains(&format!("/{id}.")) && *r == rec)
}

fn cases(report: &Value) -> &Vec<Value> {
    report["cases"].as_array().expect("cases in the report")
}

fn s<'a>(c: &'a Value, k: &str) -> &'a str {
    c[k].as_str().unwrap_or("")
}

/// The recordings: a one-device backup without VDC_Complete and a
/// two-device backup, each with its `.outcome`.
fn recordings(dir: &Path) -> Option<std::path::PathBuf> {
    let prog = match clients::build(Lang::Cpp, None) {
        Ok(p) => p,
        Err(BuildError::Unavailable(why)) => {
            println!("SKIPPED: {why}");
            return None;
        }
        Err(BuildError::Failed(e)) => panic!("building the client: {e}"),
    };
    let recs = dir.join("recs");
    std::fs::create_dir_all(&recs).unwrap();
    // Two devices is not in client-test's default matrix: a case file.
    let two = dir.join("devices-2.toml");
    std::fs::write(&two, "op = \"backup\"\ndevices = 2\n").unwrap();
    let two = two.display().to_string();
    for (case, arg) in [
        ("backup.no-complete", "backup.no-complete"),
        ("backup.devices-2", two.as_str()),
    ] {
        let sub = dir.join(case);
        std::fs::create_dir_all(&sub).unwrap();
        let r = record(&prog, arg, &sub);
        assert_eq!(r.verdict, "pass", "{case}: {}", r.detail);
        std::fs::copy(&r.recording, recs.join(format!("{case}.jsonl"))).unwrap();
        std::fs::write(recs.join(format!("{case}.outcome")), &r.outcome).unwrap();
    }
    Some(recs)
}

#[test]
fn recordings_grade_the_cases_of_their_shape() {
    let dir = Scratch::new("replay");
    let Some(recs) = recordings(&dir.0) else {
        return;
    };
    let (code, report, text) = replay(&recs, &dir.path("report"));
    assert_eq!(code, 0, "{text}");
    let all = cases(&report);
    let mut graded = std::collections::BTreeMap::new();
    for c in all {
        let (v, d) = (s(c, "verdict"), s(c, "detail"));
        match v {
            "pass" => {
                assert!(d.contains("graded from the recording"), "{c}");
                let from = if d.contains("backup.no-complete.jsonl") {
                    "backup.no-complete"
                } else {
                    assert!(d.contains("backup.devices-2.jsonl"), "{c}");
                    "backup.devices-2"
                };
                graded.insert(key(c), from);
            }
            "unimplemented" => assert!(
                d.contains("no recording of this shape") || d.contains("cannot stage this case"),
                "{c}"
            ),
            other => panic!("{other}: only pass or unimplemented expected: {c}"),
        }
    }
    // A plain one-device backup, and VDC_Complete negotiated on two
    // devices, each graded by its own recording.
    assert!(
        graded_from(&graded, "disk.header-order", "backup.no-complete"),
        "{graded:?}"
    );
    assert!(
        graded_from(&graded, "complete.negotiation", "backup.devices-2"),
        "{graded:?}"
    );
    // Restores, aborts and faults have no recording here.
    for id in ["field.client-abort-mid-backup", "complete.veto"] {
        assert!(
            !graded.keys().any(|k| k.contains(&format!("/{id}."))),
            "{id} graded from {graded:?}"
        );
        assert!(
            all.iter().any(|c| s(c, "case") == id),
            "{id} in the catalog"
        );
    }

    // A CompleteCommand answered VD_E_NOTOPEN in Active (the shape is
    // unchanged: a completion's answer is not part of it): the cases of
    // this shape become model deviations naming the table cell.
    let recs2 = dir.path("recs-altered");
    std::fs::create_dir_all(&recs2).unwrap();
    for f in std::fs::read_dir(&recs).unwrap().flatten() {
        std::fs::copy(f.path(), recs2.join(f.file_name())).unwrap();
    }
    let p = recs2.join("backup.no-complete.jsonl");
    let mut v: Vec<Value> = std::fs::read_to_string(&p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let i = v
        .iter()
        .position(|l| l["method"] == "CompleteCommand" && l["ret"] == 0)
        .expect("a completion");
    v[i]["ret"] = Value::from(0x8077_0002u32);
    v[i]["ret_name"] = Value::from("VD_E_NOTOPEN");
    let text: String = v.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, text).unwrap();
    let (code, report, text) = replay(&recs2, &dir.path("report-altered"));
    assert_eq!(code, 1, "{text}");
    for c in cases(&report) {
        match graded.get(&key(c)) {
            Some(&"backup.no-complete") => {
                assert_eq!(s(c, "verdict"), "violation", "{c}");
                assert!(s(c, "detail").starts_with("model deviation"), "{c}");
                assert!(
                    s(c, "detail").contains("table.complete-command.active"),
                    "{c}"
                );
                assert_eq!(
                    c["divergence"]["clause"], "table.complete-command.active",
                    "{c}"
                );
            }
            Some(_) => assert_eq!(s(c, "verdict"), "pass", "{c}"),
            None => assert_eq!(s(c, "verdict"), "unimplemented", "{c}"),
        }
    }
    // A result's repro command names the recordings and reproduces it.
    let bad = cases(&report)
        .iter()
        .find(|c| s(c, "verdict") == "violation")
        .expect("a violation");
    let repro = s(bad, "repro");
    assert!(repro.contains("--recording"), "{repro}");
    let out = Command::new("sh")
        .arg("-c")
        .arg(repro.replacen("vdisim", &format!("'{VDISIM}'"), 1))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains(": violation"), "{repro}: {shown}");
    assert!(shown.contains("table.complete-command.active"), "{shown}");
}

/// Bad input: the flag without the backend, the backend without the flag,
/// a directory that is not there, a recording that is not one.
#[test]
fn replay_input_errors() {
    let dir = Scratch::new("replay-errors");
    let run = |args: &[&str]| {
        let out = Command::new(VDISIM)
            .arg("run")
            .args(args)
            .arg("--report-dir")
            .arg(dir.path("report"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(&["--backend", "replay"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--recording DIR"), "{err}");
    let here = dir.0.display().to_string();
    let (code, err) = run(&["--backend", "model", "--recording", &here]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--backend replay"), "{err}");
    let gone = dir.path("gone").display().to_string();
    let (code, err) = run(&["--backend", "replay", "--recording", &gone]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read the directory"), "{err}");
    std::fs::write(dir.path("x.jsonl"), "not json\n").unwrap();
    let (code, err) = run(&["--backend", "replay", "--recording", &here]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("x.jsonl:1"), "{err}");
    std::fs::write(
        dir.path("x.jsonl"),
        "{\"rec\":\"header\",\"format\":\"vdisim-recording\",\"v\":1,\"pid\":1,\"unix_ms\":0}\n",
    )
    .unwrap();
    std::fs::write(dir.path("x.outcome"), "maybe").unwrap();
    let (code, err) = run(&["--backend", "replay", "--recording", &here]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not an outcome"), "{err}");
}
