//! `vdisim client-test` grading Windows programs under Wine: the in-repo C
//! client (`clients/vdi_client.c`, ready-line mode) cross-built with
//! mingw-w64, getting its set object from COM
//! (`CoCreateInstance(CLSID_MSSQL_ClientVirtualDeviceSet)`, the stand-in
//! `sqlvdi.dll` registered in a private Wine prefix), reaching each case's
//! server through the TCP bridge and its buffers through Wine's `Z:` drive.
//! The correct client passes the default matrix with the same verdicts as
//! its Linux twin, and each flawed variant gets the same violation, naming
//! the same clause, as its Linux twin.
//!
//! One Wine prefix serves every run of the file (`--wine-prefix`): making
//! one takes ~20 s, reusing it well under 1 s. Missing tools (the rustup
//! target x86_64-pc-windows-gnu, x86_64-w64-mingw32-gcc, wine64): a loud
//! `SKIPPED: <why>` line, and the test passes.

#![cfg(target_os = "linux")]

#[path = "support/clients.rs"]
mod clients;
#[path = "support/scratch.rs"]
mod scratch;
#[path = "support/windows_client.rs"]
mod windows_client;
#[path = "support/wine.rs"]
mod wine;

use clients::{BuildError, Lang};
use scratch::Scratch;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use windows_client::windows_client;
use wine::{build_dll, missing_tool, skipped};

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");

/// (case, seed, verdict, detail) of every result.
fn results(report: &Value) -> Vec<(String, u64, String, String)> {
    report["cases"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|c| {
                    (
                        c["case"].as_str().unwrap_or("").to_string(),
                        c["seed"].as_u64().unwrap_or(0),
                        c["verdict"].as_str().unwrap_or("").to_string(),
                        c["detail"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs client-test on `prog` (ready-line mode); its exit code, report and
/// output. `wine`: the DLL and the shared prefix.
fn client_test(
    prog: &Path,
    extra: &[&str],
    report: &Path,
    wine: Option<(&Path, &Path)>,
) -> (i32, Value, String) {
    let t = format!(
        "'{}' {{op}} {{database}} {{device}} {{devices}} {{file}} {{server}}",
        prog.display()
    );
    let mut c = Command::new(VDISIM);
    c.args([
        "client-test",
        "--program",
        &t,
        "--ready-line",
        "READY",
        "--report-dir",
    ])
    .arg(report)
    .args(extra);
    if let Some((dll, prefix)) = wine {
        c.arg("--sqlvdi-dll")
            .arg(dll)
            .arg("--wine-prefix")
            .arg(prefix);
    }
    let out = c.output().expect("vdisim client-test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read_to_string(report.join("report.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report, text)
}

/// The clause a violation names first (`clause: ...`).
fn first_clause(detail: &str) -> &str {
    detail.split(':').next().unwrap_or("")
}

#[test]
fn windows_clients_are_graded_like_their_linux_twins() {
    if let Some(why) = missing_tool() {
        skipped(&format!(
            "the Windows clients under Wine were not graded: {why}"
        ));
        return;
    }
    let linux = |flaw: Option<&str>| match clients::build(Lang::C, flaw) {
        Ok(p) => Some(p),
        Err(BuildError::Unavailable(why)) => {
            skipped(&format!("no Linux twin to compare with: {why}"));
            None
        }
        Err(BuildError::Failed(e)) => panic!("building the Linux client: {e}"),
    };
    let dir = Scratch::new("wine");
    let dll = build_dll(&dir.0);
    let prefix = dir.path("wineprefix");
    let wine = Some((dll.as_path(), prefix.as_path()));

    // The correct client: the default matrix, two seeds.
    let exe = windows_client(&dir.0, None);
    let args = ["--seeds", "2"];
    let (code, report, text) = client_test(&exe, &args, &dir.path("correct-win"), wine);
    println!("{}", text.lines().next().unwrap_or(""));
    let win = results(&report);
    assert!(!win.is_empty(), "{text}");
    assert!(
        win.iter().all(|c| c.2 == "pass" || c.2 == "unimplemented"),
        "the correct Windows client was blamed: {:#?}\n{text}",
        win.iter().filter(|c| c.2 != "pass").collect::<Vec<_>>()
    );
    assert_eq!(code, 0, "{text}");
    if let Some(prog) = linux(None) {
        let (_, report, text) = client_test(&prog, &args, &dir.path("correct-linux"), None);
        let verdicts = |r: &[(String, u64, String, String)]| {
            r.iter()
                .map(|c| (c.0.clone(), c.1, c.2.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(verdicts(&win), verdicts(&results(&report)), "{text}");
    }

    // Each flaw in the case that shows it: the same violation and clause
    // as the Linux twin.
    let table: &[(&str, &str, &str)] = &[
        ("TIMEOUT_FATAL", "backup.stall", "get-command.timeout"),
        ("CLOSE_EARLY", "backup", "close.wait-for-close"),
        (
            "SHORT_READ_SUCCESS",
            "restore.truncate",
            "command.short-transfer",
        ),
        ("SUCCESS_ALWAYS", "backup.abort", "term.outcome-decides"),
        ("TIMEOUT_SECONDS", "backup.stall", "timeout.milliseconds"),
        ("TAMPER_BLOCK", "backup", "complete-command.read-only-block"),
        ("WAIT_AFTER_ABORT", "backup.abort", "abort.only-close"),
    ];
    for (flaw, case, clause) in table {
        let exe = windows_client(&dir.0, Some(flaw));
        let args = ["--case", case, "--exit-timeout-ms", "2000"];
        let (code, report, text) =
            client_test(&exe, &args, &dir.path(&format!("{flaw}-win")), wine);
        let r = results(&report);
        assert_eq!(r.len(), 1, "{flaw}: {text}");
        assert_eq!(r[0].2, "violation", "Windows {flaw} in {case}: {text}");
        assert!(
            r[0].3.contains(clause),
            "Windows {flaw} in {case} names {clause}: {}",
            r[0].3
        );
        assert_eq!(code, 1, "{text}");
        if let Some(prog) = linux(Some(flaw)) {
            let (_, report, text) =
                client_test(&prog, &args, &dir.path(&format!("{flaw}-linux")), None);
            let l = results(&report);
            assert_eq!(l.len(), 1, "{flaw}: {text}");
            assert_eq!(
                (l[0].2.as_str(), first_clause(&l[0].3)),
                (r[0].2.as_str(), first_clause(&r[0].3)),
                "{flaw} in {case}: Linux {} / Windows {}",
                l[0].3,
                r[0].3
            );
        }
        println!(
            "{flaw} in {case}: {} on Windows as on Linux",
            first_clause(&r[0].3)
        );
    }
    // The prefix's wineserver was stopped by each run; nothing of Wine's
    // outlives the test (the scratch directory goes with the prefix).
}
