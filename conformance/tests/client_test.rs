//! `vdisim client-test` against the in-repo client programs
//! (`conformance/tests/clients/`): the correct ones in both start modes are
//! never blamed, over the default matrix with many seeds and over random
//! cases; each flawed variant — a real product bug — gets a violation
//! naming its clause; bad input exits 2; nothing is left behind.
//!
//! The seeds and random cases of the "never blamed" tests are
//! `VDISIM_CLIENT_TEST_SEEDS` (default 20) and `VDISIM_CLIENT_TEST_RANDOM`
//! (default 500): the whole file took 83 s in a debug build on two cores.

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

/// The program for `lang`/`flaw`, or `None` (and a SKIPPED line) when no
/// compiler is installed.
fn program(lang: Lang, flaw: Option<&str>) -> Option<PathBuf> {
    match clients::build(lang, flaw) {
        Ok(p) => Some(p),
        Err(BuildError::Unavailable(why)) => {
            println!("SKIPPED: {why}");
            None
        }
        Err(BuildError::Failed(e)) => panic!("building the client: {e}"),
    }
}

/// The `--program` template and `--ready-line` for a program.
fn template(lang: Lang, prog: &Path) -> (String, Option<&'static str>) {
    let t = format!(
        "'{}' {{op}} {{database}} {{device}} {{devices}} {{file}} {{server}}",
        prog.display()
    );
    (t, (lang == Lang::C).then_some("READY"))
}

/// Runs client-test; its exit code and report.json.
fn client_test(lang: Lang, prog: &Path, extra: &[&str], dir: &Path) -> (i32, Value, String) {
    let (code, report, text, _) = client_test_pid(lang, prog, extra, dir);
    (code, report, text)
}

/// As [`client_test`], with the runner's pid.
fn client_test_pid(
    lang: Lang,
    prog: &Path,
    extra: &[&str],
    dir: &Path,
) -> (i32, Value, String, u32) {
    let (t, ready) = template(lang, prog);
    let mut c = Command::new(VDISIM);
    c.args(["client-test", "--program", &t, "--report-dir"])
        .arg(dir)
        .args(extra);
    if let Some(r) = ready {
        c.args(["--ready-line", r]);
    }
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read_to_string(dir.join("report.json"))
        .map(|s| serde_json::from_str(&s).unwrap())
        .unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report, text, pid)
}

fn env_count(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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

fn assert_never_blamed(lang: Lang, extra: &[&str], tag: &str) {
    let Some(prog) = program(lang, None) else {
        return;
    };
    let dir = Scratch::new(tag);
    let (code, report, text) = client_test(lang, &prog, extra, &dir.0);
    let r = results(&report);
    let blamed: Vec<_> = r.iter().filter(|c| c.2 != "pass").collect();
    let unimpl: Vec<_> = r.iter().filter(|c| c.2 == "unimplemented").collect();
    println!(
        "{lang:?} {extra:?}: {} results, {} not pass ({} unimplemented)",
        r.len(),
        blamed.len(),
        unimpl.len()
    );
    assert!(!r.is_empty(), "{text}");
    assert!(
        r.iter().all(|c| c.2 == "pass" || c.2 == "unimplemented"),
        "a correct client was blamed: {:#?}\n{text}",
        blamed
    );
    assert_eq!(code, 0, "{text}");
}

/// A correct client in each start mode passes the whole default matrix
/// with every seed.
#[test]
fn correct_clients_pass_the_default_matrix() {
    let seeds = env_count("VDISIM_CLIENT_TEST_SEEDS", 20).to_string();
    for lang in Lang::ALL {
        assert_never_blamed(lang, &["--seeds", &seeds], &format!("matrix-{lang:?}"));
    }
}

/// ... and random cases drawn from the whole space.
#[test]
fn correct_clients_pass_random_cases() {
    let n = env_count("VDISIM_CLIENT_TEST_RANDOM", 500).to_string();
    for lang in Lang::ALL {
        assert_never_blamed(
            lang,
            &["--random", &n, "--seed", "1"],
            &format!("random-{lang:?}"),
        );
    }
}

/// Each flawed variant, in the case that shows its bug, is a violation
/// naming the clause it breaks; the run exits 1 and prints the repro.
#[test]
fn each_flawed_client_gets_its_clause() {
    let table: &[(Lang, &str, &str, &str)] = &[
        (
            Lang::C,
            "TIMEOUT_FATAL",
            "backup.stall",
            "get-command.timeout",
        ),
        (
            Lang::Cpp,
            "TIMEOUT_FATAL",
            "backup.stall",
            "get-command.timeout",
        ),
        (Lang::C, "CLOSE_EARLY", "backup", "close.wait-for-close"),
        (
            Lang::Cpp,
            "FLUSH_UNANSWERED",
            "backup",
            "command.unanswered",
        ),
        (
            Lang::C,
            "SHORT_READ_SUCCESS",
            "restore.truncate",
            "command.short-transfer",
        ),
        (
            Lang::C,
            "SUCCESS_ALWAYS",
            "backup.abort",
            "term.outcome-decides",
        ),
        (
            Lang::Cpp,
            "SUCCESS_ALWAYS",
            "backup.abort",
            "term.outcome-decides",
        ),
        (
            Lang::C,
            "TIMEOUT_SECONDS",
            "backup.stall",
            "timeout.milliseconds",
        ),
        (Lang::Cpp, "NO_CLOSE", "backup", "close.exactly-once"),
        (
            Lang::C,
            "TAMPER_BLOCK",
            "backup",
            "complete-command.read-only-block",
        ),
        (
            Lang::C,
            "WAIT_AFTER_ABORT",
            "backup.abort",
            "abort.only-close",
        ),
        // Under the default error termination (drain-then-close) the
        // server fails the restore of damaged media while every device
        // ends with VD_E_CLOSE: only sqlcmd's verdict tells.
        (
            Lang::Cpp,
            "CLOSE_IS_SUCCESS",
            "restore.corrupt",
            "term.outcome-decides",
        ),
    ];
    for (lang, flaw, case, clause) in table {
        let Some(prog) = program(*lang, Some(flaw)) else {
            return;
        };
        let dir = Scratch::new(&format!("flaw-{flaw}-{lang:?}"));
        let (code, report, text) = client_test(
            *lang,
            &prog,
            &["--case", case, "--exit-timeout-ms", "2000"],
            &dir.0,
        );
        let r = results(&report);
        assert_eq!(r.len(), 1, "{flaw}: {text}");
        assert_eq!(r[0].2, "violation", "{lang:?} {flaw} in {case}: {text}");
        assert!(
            r[0].3.contains(clause),
            "{lang:?} {flaw} in {case}: the violation names {clause}: {}",
            r[0].3
        );
        assert_eq!(code, 1, "{text}");
        // The report's first divergence is the violating call itself.
        if *flaw == "TAMPER_BLOCK" {
            let case = &report["cases"][0];
            let seq = &case["divergence"]["seq"];
            let ev = case["timeline"]
                .as_array()
                .and_then(|t| t.iter().find(|e| &e["seq"] == seq))
                .unwrap_or_else(|| panic!("the divergence {seq} is an event: {case}"));
            assert_eq!(ev["what"], "CompleteCommand", "{ev}");
            assert!(ev["detail"].as_str().unwrap().contains("MODIFIED"), "{ev}");
        }
        assert!(
            text.contains(&format!("--case {case}")) || text.contains(&format!("--case '{case}'")),
            "a repro line: {text}"
        );
    }
}

/// Bad input: exit 2 with what, where and how to fix, before any case.
#[test]
fn bad_input_exits_2_with_a_message() {
    let dir = Scratch::new("bad");
    let run = |args: &[&str]| {
        let out = Command::new(VDISIM)
            .arg("client-test")
            .args(args)
            .args(["--report-dir"])
            .arg(dir.0.join("r"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (c, e) = run(&["--program", "/nonexistent/backup {op}"]);
    assert_eq!(c, 2, "{e}");
    assert!(e.contains("not found"), "{e}");
    let plain = dir.0.join("plain.txt");
    std::fs::write(&plain, "x").unwrap();
    let (c, e) = run(&["--program", &format!("{} {{op}}", plain.display())]);
    assert_eq!(c, 2, "{e}");
    assert!(e.contains("not an executable"), "{e}");
    let (c, e) = run(&["--program", "sh -c true {dev}"]);
    assert_eq!(c, 2, "{e}");
    assert!(
        e.contains("unknown placeholder {dev}") && e.contains("{device}"),
        "{e}"
    );
    let (c, e) = run(&["--program", "sh -c true {op}", "--ready-line", "READY"]);
    assert_eq!(c, 2, "{e}");
    assert!(e.contains("--ready-line needs {device}"), "{e}");
    let (c, e) = run(&["--program", "sh -c true", "--case", "no-such-case"]);
    assert_eq!(c, 2, "{e}");
    assert!(e.contains("backup.stall"), "lists the cases: {e}");
    assert!(!dir.0.join("r").exists(), "no report for bad input");
}

/// A program that cannot do a case says so with exit 89: unimplemented,
/// the run passes. A program that does nothing VDI at all is a violation
/// that says to check the library.
#[test]
fn exit_89_is_unimplemented_and_a_program_without_vdi_is_named() {
    let dir = Scratch::new("89");
    let script = dir.0.join("cannot.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 89\n").unwrap();
    let nothing = dir.0.join("nothing.sh");
    std::fs::write(&nothing, "#!/bin/sh\nexit 0\n").unwrap();
    for s in [&script, &nothing] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(s, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let run = |prog: &Path| {
        let out = Command::new(VDISIM)
            .args(["client-test", "--program"])
            .arg(format!("{} {{op}}", prog.display()))
            .args(["--case", "backup", "--report-dir"])
            .arg(dir.0.join("r"))
            .output()
            .unwrap();
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.0.join("r/report.json")).unwrap())
                .unwrap();
        (out.status.code().unwrap_or(-1), results(&report))
    };
    let (code, r) = run(&script);
    assert_eq!(r[0].2, "unimplemented", "{r:?}");
    assert_eq!(code, 0);
    let (code, r) = run(&nothing);
    assert_eq!(r[0].2, "violation", "{r:?}");
    assert!(r[0].3.contains("libsqlvdi"), "{r:?}");
    assert_eq!(code, 1);
}

/// After cases that kill and stop the program and a hung one, no process
/// of the program, no runner directory and no shared-memory file of the
/// runner is left.
#[test]
fn nothing_is_left_behind() {
    let Some(prog) = program(Lang::Cpp, Some("WAIT_AFTER_ABORT")) else {
        return;
    };
    let dir = Scratch::new("left");
    let (_, report, text, runner) = client_test_pid(
        Lang::Cpp,
        &prog,
        &[
            "--case",
            "backup.abort",
            "--case",
            "backup.kill",
            "--case",
            "backup.stop-2000ms",
            "--exit-timeout-ms",
            "500",
        ],
        &dir.0,
    );
    assert_eq!(results(&report).len(), 3, "{text}");
    let name = prog.file_name().unwrap().to_string_lossy().to_string();
    let procs = Command::new("pgrep").args(["-f", &name]).output();
    if let Ok(p) = procs {
        assert!(
            p.stdout.is_empty(),
            "processes left: {}",
            String::from_utf8_lossy(&p.stdout)
        );
    }
    let left = |dir: &Path, prefix: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.starts_with(prefix))
                    .collect()
            })
            .unwrap_or_default()
    };
    let tmp = left(
        &std::env::temp_dir(),
        &format!("vdisim-client-test-{runner}-"),
    );
    assert!(tmp.is_empty(), "runner directories left: {tmp:?}");
    let shm = left(Path::new("/dev/shm"), &format!("vdisim-{runner}-"));
    assert!(shm.is_empty(), "shared memory left: {shm:?}");
}

/// A program that leaves a process in a session of its own (`setsid`, as a
/// daemonising helper does) does not leave it running: the runner, the
/// reaper of the programs' orphans, finds it by its environment, kills it
/// and says so in the result.
#[cfg(target_os = "linux")]
#[test]
fn a_process_that_escapes_its_group_is_killed() {
    let Some(prog) = program(Lang::C, None) else {
        return;
    };
    let dir = Scratch::new("escape");
    let marker = format!("{}.{}", 7_000_000 + std::process::id() % 1_000_000, 5);
    let script = dir.0.join("escape.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsetsid sleep {marker} </dev/null >/dev/null 2>&1 &\nexec {} \"$@\"\n",
            prog.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, report, text) = client_test(Lang::C, &script, &["--case", "backup"], &dir.0);
    assert_eq!(code, 0, "{text}");
    let r = results(&report);
    assert_eq!(r[0].2, "pass", "{text}");
    assert!(
        r[0].3.contains("outside its process group") && r[0].3.contains("(sleep)"),
        "{}",
        r[0].3
    );
    let p = Command::new("pgrep")
        .args(["-f", &format!("sleep {marker}")])
        .output();
    if let Ok(p) = p {
        assert!(
            p.stdout.is_empty(),
            "left running: {}",
            String::from_utf8_lossy(&p.stdout)
        );
    }
}
