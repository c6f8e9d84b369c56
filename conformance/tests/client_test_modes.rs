//! `vdisim client-test` against the device shapes of the in-repo C client
//! (`conformance/tests/clients/vdi_client.c`, ready-line mode): disk-like
//! (`VDICLIENT_MODE=disk`), tape-like (`VDICLIENT_MODE=tape`), removable
//! (`VDICLIENT_MODE=removable`), snapshot
//! (`VDICLIENT_SNAPSHOT=1`, `--snapshot`) and two processes
//! (`VDICLIENT_SECONDARY=K`). The runner learns the shape from the
//! program's CreateEx features and adds the shape's cases to the default
//! matrix; the correct program passes them, and each shape's flawed build
//! gets a violation naming the shape's clause.
//!
//! Cost: the whole file took 8 s in a debug build on two shared cores
//! (cases run with `--jobs 2`; 16:45 UTC run, after the build).

#![cfg(unix)]

#[path = "support/clients.rs"]
mod clients;
#[path = "support/scratch.rs"]
mod scratch;

use clients::{BuildError, Lang};
use scratch::Scratch;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");

/// The C program with `flaw`, or `None` (and a SKIPPED line) without gcc.
fn program(flaw: Option<&str>) -> Option<PathBuf> {
    match clients::build(Lang::C, flaw) {
        Ok(p) => Some(p),
        Err(BuildError::Unavailable(why)) => {
            println!("SKIPPED: {why}");
            None
        }
        Err(BuildError::Failed(e)) => panic!("building the client: {e}"),
    }
}

/// One result: (case, verdict, detail).
type Row = (String, String, String);

/// Runs client-test on `prog` in ready-line mode with `env` set for the
/// program; its exit code, results and output.
fn client_test(
    prog: &Path,
    env: &[(&str, &str)],
    extra: &[&str],
    dir: &Path,
) -> (i32, Vec<Row>, String) {
    let t = format!(
        "'{}' {{op}} {{database}} {{device}} {{devices}} {{file}} {{server}}",
        prog.display()
    );
    let out = Command::new(VDISIM)
        .args(["client-test", "--program", &t, "--ready-line", "READY"])
        .args(["--jobs", "2", "--exit-timeout-ms", "2000", "--report-dir"])
        .arg(dir)
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = std::fs::read_to_string(dir.join("report.json"))
        .map(|s| serde_json::from_str(&s).unwrap())
        .unwrap_or(Value::Null);
    let rows = report["cases"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|c| {
                    let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
                    (s("case"), s("verdict"), s("detail"))
                })
                .collect()
        })
        .unwrap_or_default();
    (out.status.code().unwrap_or(-1), rows, text)
}

fn assert_all_pass(rows: &[Row], code: i32, text: &str, what: &str) {
    assert!(!rows.is_empty(), "{what}: no results\n{text}");
    let bad: Vec<_> = rows.iter().filter(|r| r.1 != "pass").collect();
    assert!(bad.is_empty(), "{what}: not pass: {bad:#?}\n{text}");
    assert_eq!(code, 0, "{what}: {text}");
}

fn ids(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r.0.as_str()).collect()
}

/// The correct program in disk, tape and removable mode passes the
/// default matrix, which the runner widened with the shape's cases once
/// the probe showed the shape; each result names the shape.
#[test]
fn disk_tape_and_removable_samples_pass_their_shape_matrix() {
    let Some(prog) = program(None) else { return };
    let table: &[(&str, &str, &[&str])] = &[
        (
            "disk",
            "disk-like",
            &[
                "restore.disk-header-last",
                "backup.over-longer-file",
                "restore.devices-3.disk-header-last",
            ],
        ),
        (
            "tape",
            "tape-like",
            &[
                "restore.skip-blocks",
                "restore.medianame",
                "restore.wrong-medianame",
                "backup.norewind",
                "restore.norewind",
            ],
        ),
        (
            "removable",
            "removable pipe-like",
            &["backup.volumes-262144", "restore.volumes-262144"],
        ),
    ];
    for (mode, shape, want) in table {
        let dir = Scratch::new(&format!("shape-{mode}"));
        let (code, rows, text) = client_test(&prog, &[("VDICLIENT_MODE", mode)], &[], &dir.0);
        assert_all_pass(&rows, code, &text, mode);
        for w in *want {
            assert!(ids(&rows).contains(w), "{mode}: {w} in {:?}", ids(&rows));
        }
        assert!(
            rows.iter().all(|r| r.2.contains(shape)),
            "{mode}: {rows:#?}"
        );
    }
    // A pipe-like program gets none of them.
    let dir = Scratch::new("shape-pipe");
    let (code, rows, text) = client_test(&prog, &[], &["--filter", "restore"], &dir.0);
    assert_all_pass(&rows, code, &text, "pipe");
    assert!(
        !rows
            .iter()
            .any(|r| r.0.contains("disk-header") || r.0.contains("medianame")),
        "{:?}",
        ids(&rows)
    );
}

/// `--filter` may keep only a shape's cases: it is judged once the probe
/// showed the shape.
#[test]
fn a_filter_may_name_the_shape_cases() {
    let Some(prog) = program(None) else { return };
    let dir = Scratch::new("shape-filter");
    let (code, rows, text) = client_test(
        &prog,
        &[("VDICLIENT_MODE", "disk")],
        &["--filter", "disk-header"],
        &dir.0,
    );
    assert_all_pass(&rows, code, &text, "filter");
    assert!(
        rows.len() >= 2 && rows.iter().all(|r| r.0.contains("disk-header-last")),
        "{:?}",
        ids(&rows)
    );
}

/// The snapshot sample passes the snapshot matrix; the freeze time the
/// server reports is in each backup's result, and a slow snapshot shows a
/// freeze at least as long as it took.
#[test]
fn snapshot_sample_passes_and_reports_its_freeze_time() {
    let Some(prog) = program(None) else { return };
    let dir = Scratch::new("snapshot");
    let env = [("VDICLIENT_SNAPSHOT", "1")];
    let (code, rows, text) = client_test(&prog, &env, &["--snapshot"], &dir.0);
    assert_all_pass(&rows, code, &text, "snapshot");
    assert!(
        rows.len() >= 5 && rows.iter().all(|r| r.0.contains("snapshot")),
        "{rows:#?}"
    );
    let plain = rows.iter().find(|r| r.0 == "backup.snapshot").unwrap();
    assert!(
        plain.2.contains("frozen") && plain.2.contains("Msg 3198"),
        "{plain:?}"
    );
    // A snapshot that takes 300 ms: the freeze lasts at least that long
    // (virtual ms run at least as fast as real ones).
    let dir = Scratch::new("snapshot-slow");
    let env = [
        ("VDICLIENT_SNAPSHOT", "1"),
        ("VDICLIENT_SNAPSHOT_MS", "300"),
    ];
    let (code, rows, text) = client_test(
        &prog,
        &env,
        &["--snapshot", "--case", "backup.snapshot"],
        &dir.0,
    );
    assert_all_pass(&rows, code, &text, "slow snapshot");
    // The note gives the server's clock and the program's (divided by the
    // case's time scale): the program held the snapshot 300 ms of its own.
    let after = |key: &str| -> u64 {
        rows[0]
            .2
            .split(key)
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{key:?} and a number in {:?}", rows[0]))
    };
    let server_ms = after("frozen ");
    let program_ms = after("about ");
    assert!(
        program_ms >= 290 && server_ms >= program_ms,
        "frozen {server_ms} ms of the server's clock, {program_ms} ms of the program's, for a 300 ms snapshot"
    );
}

/// A program that refuses its snapshot (VDC_Snapshot completed with 995)
/// fails the BACKUP: reporting that failure passes, reporting success is a
/// violation of `snapshot.abort`, even in ready-line mode where the devices
/// closed cleanly.
#[test]
fn a_refused_snapshot_must_be_reported_as_a_failure() {
    let env = [
        ("VDICLIENT_SNAPSHOT", "1"),
        ("VDICLIENT_SNAPSHOT_FAIL", "1"),
    ];
    let args = ["--snapshot", "--case", "backup.snapshot"];
    let Some(prog) = program(None) else { return };
    let dir = Scratch::new("refuse");
    let (code, rows, text) = client_test(&prog, &env, &args, &dir.0);
    assert_all_pass(&rows, code, &text, "refusing client");
    assert!(rows[0].2.contains("refused the snapshot"), "{rows:?}");
    let Some(liar) = program(Some("SUCCESS_ALWAYS")) else {
        return;
    };
    let dir = Scratch::new("refuse-liar");
    let (code, rows, text) = client_test(&liar, &env, &args, &dir.0);
    assert_eq!(rows.len(), 1, "{text}");
    assert_eq!(rows[0].1, "violation", "{text}");
    assert!(
        rows[0].2.contains("snapshot.abort") && rows[0].2.contains("exited 0"),
        "{rows:?}"
    );
    assert_eq!(code, 1, "{text}");
}

/// The two-process client (a secondary process serves the last device)
/// passes the striped cases; the result says both processes' calls were
/// graded.
#[test]
fn two_process_sample_passes_striped_cases() {
    let Some(prog) = program(None) else { return };
    let dir = Scratch::new("two-process");
    let (code, rows, text) = client_test(
        &prog,
        &[("VDICLIENT_SECONDARY", "1")],
        &["--filter", "devices-3"],
        &dir.0,
    );
    assert_all_pass(&rows, code, &text, "two processes");
    assert!(rows.len() >= 3, "{rows:#?}");
    assert!(
        rows.iter().all(|r| r.2.contains("2 processes")),
        "{rows:#?}"
    );
}

/// Each shape's flawed build, in the case that shows its bug, gets a
/// violation naming the shape's clause.
#[test]
fn each_shape_flaw_gets_its_clause() {
    // (flaw, the program's environment, client-test's arguments, clause,
    // what the detail says)
    type Row<'a> = (&'a str, (&'a str, &'a str), &'a [&'a str], &'a str, &'a str);
    let table: &[Row] = &[
        (
            "IGNORES_POSITION",
            ("VDICLIENT_MODE", "disk"),
            &["--case", "restore.disk-header-last"],
            "disk.positioned-io",
            "media header written last",
        ),
        (
            "NO_END_OF_FILE",
            ("VDICLIENT_MODE", "disk"),
            &["--case", "backup.over-longer-file"],
            "flush.disk-sets-eof",
            "lies beyond the backup",
        ),
        (
            "IGNORES_FILEMARKS",
            ("VDICLIENT_MODE", "tape"),
            &["--case", "restore"],
            "tape.filemarks",
            // The replay of its answers through the model's tape names the
            // call.
            "VDC_SkipMarks (size 1) at block address",
        ),
        (
            "SNAPSHOT_UNANSWERED",
            ("VDICLIENT_SNAPSHOT", "1"),
            &["--snapshot", "--case", "backup.snapshot"],
            "snapshot.freeze-time",
            "VDC_Snapshot (id",
        ),
        (
            "VOLUME_FULL_FATAL",
            ("VDICLIENT_MODE", "removable"),
            &["--case", "backup.volumes-262144"],
            "media.next-volume",
            "volumes of 262144 bytes",
        ),
    ];
    for (flaw, env, args, clause, says) in table {
        let Some(prog) = program(Some(flaw)) else {
            return;
        };
        let dir = Scratch::new(&format!("flaw-{flaw}"));
        let (code, rows, text) = client_test(&prog, &[*env], args, &dir.0);
        assert_eq!(rows.len(), 1, "{flaw}: {text}");
        assert_eq!(rows[0].1, "violation", "{flaw}: {text}");
        assert!(
            rows[0].2.contains(clause) && rows[0].2.contains(says),
            "{flaw} names {clause} and says {says:?}: {}",
            rows[0].2
        );
        assert_eq!(code, 1, "{text}");
    }
    // The disk flaw is invisible while the server writes in sequence.
    let Some(prog) = program(Some("IGNORES_POSITION")) else {
        return;
    };
    let dir = Scratch::new("flaw-disk-first");
    let (code, rows, text) = client_test(
        &prog,
        &[("VDICLIENT_MODE", "disk")],
        &["--case", "restore"],
        &dir.0,
    );
    assert_all_pass(&rows, code, &text, "IGNORES_POSITION, header first");
}
