//! `vdisim judge` against `vdisim client-test`: the in-repo C++ client
//! (Linux class API, sqlcmd mode), correct and flawed, runs under
//! client-test with the recording library (`sim/recorder`) in front of the
//! stand-in; the recording of the case's run, judged with the statement's
//! outcome and the program's exit code, gets the verdict and the clause
//! client-test gave. A recording with a hand-altered server reply is a
//! model deviation on the server side. Bad recordings are refused with
//! the line that is wrong.
//!
//! (The C client uses vdisim's COM-shaped interface, which the recorder
//! does not forward: docs/RECORDING.md, Limits.)

#![cfg(unix)]

#[path = "support/clients.rs"]
mod clients;
#[path = "support/recording.rs"]
mod recording;
#[path = "support/scratch.rs"]
mod scratch;

use clients::{BuildError, Lang};
use recording::{Recorded, record, recorder_library};
use scratch::Scratch;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use vdi_conformance::backends::abi::library_path;

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");

/// Runs `vdisim judge`: its exit code, report.json and output.
fn judge(rec: &Path, extra: &[String], dir: &Path) -> (i32, Value, String) {
    let report_dir = dir.join("judge");
    let out = Command::new(VDISIM)
        .arg("judge")
        .arg(rec)
        .args(extra)
        .arg("--report-dir")
        .arg(&report_dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let report = std::fs::read_to_string(report_dir.join("report.json"))
        .map(|s| serde_json::from_str(&s).unwrap())
        .unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report, text)
}

fn judge_recorded(r: &Recorded, dir: &Path) -> (i32, Value, String) {
    let mut args = vec![
        "--outcome".to_string(),
        r.outcome.clone(),
        "--ended-unix-ms".to_string(),
        r.ended_unix_ms.to_string(),
    ];
    match r.exit_code {
        Some(c) => args.extend(["--exit-code".to_string(), c.to_string()]),
        // The runner's --exit-timeout-ms.
        None => args.extend(["--hung-ms".to_string(), "2000".to_string()]),
    }
    judge(&r.recording, &args, dir)
}

/// (verdict, detail) of the result whose case ends with `.side`.
fn side(report: &Value, side: &str) -> (String, String) {
    let c = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case"].as_str().unwrap().ends_with(&format!(".{side}")))
        .unwrap_or_else(|| panic!("a {side} result in {report}"));
    (
        c["verdict"].as_str().unwrap().to_string(),
        c["detail"].as_str().unwrap().to_string(),
    )
}

fn program(flaw: Option<&str>) -> Option<PathBuf> {
    match clients::build(Lang::Cpp, flaw) {
        Ok(p) => Some(p),
        Err(BuildError::Unavailable(why)) => {
            println!("SKIPPED: {why}");
            None
        }
        Err(BuildError::Failed(e)) => panic!("building the client: {e}"),
    }
}

/// The correct client passes and each flawed one breaks its clause, in
/// client-test and in the judge of the same run's recording alike.
#[test]
fn judge_agrees_with_client_test() {
    let table: &[(Option<&str>, &str, Option<&str>)] = &[
        (None, "backup", None),
        (None, "backup.devices-3", None),
        (None, "backup.devices-3.flushes-1.abort", None),
        (None, "backup.no-complete", None),
        (None, "restore", None),
        (
            Some("TIMEOUT_FATAL"),
            "backup.stall",
            Some("get-command.timeout"),
        ),
        (
            Some("FLUSH_UNANSWERED"),
            "backup",
            Some("command.unanswered"),
        ),
        (
            Some("SUCCESS_ALWAYS"),
            "backup.abort",
            Some("term.outcome-decides"),
        ),
        (Some("NO_CLOSE"), "backup", Some("close.exactly-once")),
        (
            Some("TAMPER_BLOCK"),
            "backup",
            Some("complete-command.read-only-block"),
        ),
        (Some("CLOSE_EARLY"), "backup", Some("close.wait-for-close")),
        (
            Some("WAIT_AFTER_ABORT"),
            "backup.abort",
            Some("abort.only-close"),
        ),
        (
            Some("TIMEOUT_SECONDS"),
            "backup.stall",
            Some("timeout.milliseconds"),
        ),
        (
            Some("SHORT_READ_SUCCESS"),
            "restore.truncate",
            Some("command.short-transfer"),
        ),
        (
            Some("CLOSE_IS_SUCCESS"),
            "restore.corrupt",
            Some("term.outcome-decides"),
        ),
    ];
    for (flaw, case, clause) in table {
        let Some(prog) = program(*flaw) else { return };
        let dir = Scratch::new(&format!("judge-{}", flaw.unwrap_or("correct")));
        let r = record(&prog, case, &dir.0);
        let (code, report, text) = judge_recorded(&r, &dir.0);
        let (verdict, detail) = side(&report, "client");
        let what = format!(
            "{flaw:?} in {case}: client-test {} ({}); judge: {text}",
            r.verdict, r.detail
        );
        assert_eq!(verdict, r.verdict, "{what}");
        match clause {
            None => {
                assert_eq!(verdict, "pass", "{what}");
                assert_eq!(code, 0, "{what}");
            }
            Some(c) => {
                assert!(r.detail.contains(c), "client-test names {c}: {what}");
                assert!(detail.contains(c), "the judge names {c}: {what}");
                assert_eq!(code, 1, "{what}");
            }
        }
        let (sv, sd) = side(&report, "server");
        assert_eq!(sv, "pass", "the stand-in is the model: {sd}\n{what}");
    }
}

/// The lines of a recording, parsed.
fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_lines(p: &Path, v: &[Value]) {
    let text: String = v.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(p, text).unwrap();
}

/// A hand-altered server reply is a model deviation on the server side.
#[test]
fn altered_server_replies_are_model_deviations() {
    let Some(prog) = program(None) else { return };
    let dir = Scratch::new("judge-altered");
    let r = record(&prog, "backup", &dir.0);
    let (code, _, text) = judge_recorded(&r, &dir.0);
    assert_eq!(code, 0, "{text}");
    let orig = lines(&r.recording);

    // A CompleteCommand answered VD_E_PROTOCOL in Active: no cell allows it.
    let mut v = orig.clone();
    let i = v
        .iter()
        .position(|l| l["method"] == "CompleteCommand" && l["ret"] == 0)
        .expect("a completion");
    v[i]["ret"] = Value::from(0x8077_0002u32);
    v[i]["ret_name"] = Value::from("VD_E_PROTOCOL");
    let altered = dir.0.join("protocol.jsonl");
    write_lines(&altered, &v);
    let (code, report, text) = judge(&altered, &[], &dir.0);
    let (sv, sd) = side(&report, "server");
    assert_eq!(sv, "violation", "{text}");
    assert!(sd.starts_with("model deviation"), "{sd}");
    assert!(sd.contains("table.complete-command.active"), "{sd}");
    assert_eq!(side(&report, "client").0, "pass", "{text}");
    assert_eq!(code, 1, "{text}");

    // A command delivered on a device after its VD_E_CLOSE.
    let mut v = orig.clone();
    let i = v
        .iter()
        .position(|l| l["method"] == "GetCommand" && l["ret_name"] == "VD_E_CLOSE")
        .expect("a VD_E_CLOSE");
    let seq = v[i]["seq"].as_u64().unwrap();
    for l in v.iter_mut().skip(i + 1) {
        l["seq"] = Value::from(l["seq"].as_u64().unwrap() + 1);
        l["after"] = Value::from(l["after"].as_u64().unwrap() + 1);
    }
    let mut extra = v[i].clone();
    extra["seq"] = Value::from(seq + 1);
    extra["after"] = Value::from(seq);
    extra["ret"] = Value::from(0);
    extra["ret_name"] = Value::from("NOERROR");
    extra["cmd"] = serde_json::json!({"id": 9999, "code": 2, "name": "VDC_Write", "size": 65536, "position": 0});
    v.insert(i + 1, extra);
    let altered = dir.0.join("after-close.jsonl");
    write_lines(&altered, &v);
    let (_, report, text) = judge(&altered, &[], &dir.0);
    let (sv, sd) = side(&report, "server");
    assert_eq!(sv, "violation", "{text}");
    assert!(sd.contains("get-command.after-device-closed"), "{sd}");

    // Close with the device not yet at VD_E_CLOSE answered NOERROR: the
    // matrix's branch of close-with-open-devices, not the default
    // profile's (VD_E_OPEN): lenient, naming the value.
    let v: Vec<Value> = orig
        .iter()
        .filter(|l| !(l["method"] == "GetCommand" && l["ret_name"] == "VD_E_CLOSE"))
        .cloned()
        .collect();
    let altered = dir.0.join("close-open.jsonl");
    write_lines(&altered, &v);
    let (_, report, text) = judge(&altered, &[], &dir.0);
    let (sv, sd) = side(&report, "server");
    assert_eq!(sv, "lenient", "{text}");
    assert!(
        sd.contains(r#"close-with-open-devices = "noerror""#),
        "{sd}"
    );
}

/// Bad recordings: exit 2, naming the file and line, and how to fix it.
#[test]
fn bad_recordings_are_refused_with_their_line() {
    let dir = Scratch::new("judge-bad");
    let header = r#"{"rec":"header","format":"vdisim-recording","v":1,"pid":7,"unix_ms":0,"time_scale":1,"digest":"none","real":"/x","recorder":"0.1.0"}"#;
    let cases: &[(&str, String, &str)] = &[
        ("empty", String::new(), "no header line"),
        (
            "garbage",
            format!("{header}\nnot json\n"),
            ":2: not a recording line",
        ),
        (
            "version",
            header.replace(r#""v":1"#, r#""v":9"#) + "\n",
            ":1: a header of format",
        ),
        (
            "orphan",
            format!("{}\n", header.replace(r#""pid":7"#, r#""pid":8"#))
                + r#"{"rec":"call","pid":7,"thread":1,"seq":1,"after":0,"t0_us":0,"t1_us":1,"method":"Close","obj":1,"inc":1,"ret":0}"#,
            ":2: a call of process 7 before",
        ),
        (
            "long",
            format!("{header}\n{}\n", "x".repeat(70_000)),
            ":2: a line longer than",
        ),
    ];
    for (name, text, want) in cases {
        let p = dir.0.join(format!("{name}.jsonl"));
        std::fs::write(&p, text).unwrap();
        let (code, _, out) = judge(&p, &[], &dir.0);
        assert_eq!(code, 2, "{name}: {out}");
        assert!(out.contains(want), "{name}: wants {want:?}: {out}");
    }
    let p = dir.0.join("ok.jsonl");
    std::fs::write(&p, format!("{header}\n")).unwrap();
    let (code, _, out) = judge(&p, &["--outcome".into(), "maybe".into()], &dir.0);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--outcome \"maybe\""), "{out}");
    let (code, _, out) = judge(&dir.0.join("missing.jsonl"), &[], &dir.0);
    assert_eq!(code, 2, "{out}");
}

/// The recorder never invents a success: without a real library every
/// call fails (the program's Create fails, it says so and exits 1), and a
/// recording it cannot open is reported while the calls still reach the
/// real library.
#[test]
fn the_recorder_without_its_real_library_or_file() {
    let Some(prog) = program(None) else { return };
    let dir = Scratch::new("judge-recorder-env");
    let lib = dir.0.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::os::unix::fs::symlink(recorder_library(), lib.join("libsqlvdi.so")).unwrap();
    let run = |envs: &[(&str, PathBuf)]| {
        let mut c = Command::new(&prog);
        c.args(["backup", "db", "rec-env", "1"])
            .arg(dir.0.join("media"))
            .arg("no-server")
            .env("LD_LIBRARY_PATH", &lib)
            .env("VDICLIENT_CONFIG_WAIT_MS", "300")
            .env("VDISIM_SERVER", dir.0.join("no-such.sock"))
            .env_remove("VDISIM_RECORD_REAL")
            .env_remove("VDISIM_RECORD_FILE");
        for (k, v) in envs {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (code, err) = run(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("VDISIM_RECORD_REAL is not set"), "{err}");
    // The program's own words: Create returned VD_E_UNEXPECTED.
    assert!(
        err.contains(&format!("Create 'rec-env' = {:#x}", 0x8077_000Bu32)),
        "{err}"
    );

    let real = library_path().expect("the stand-in library");
    let (code, err) = run(&[
        ("VDISIM_RECORD_REAL", real),
        ("VDISIM_RECORD_FILE", dir.0.clone()),
    ]);
    assert_ne!(code, Some(0), "no server: the backup cannot succeed: {err}");
    assert!(err.contains("cannot open the recording"), "{err}");
    // The stand-in's own words: the calls reached it.
    assert!(err.contains("vdisim: no server at"), "{err}");
}
