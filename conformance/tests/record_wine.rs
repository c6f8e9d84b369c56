//! The recording `sqlvdi.dll` (sim/recorder, Windows build) under Wine:
//! registered over `CLSID_MSSQL_ClientVirtualDeviceSet` in a private
//! prefix in front of the stand-in `sqlvdi.dll` (`VDISIM_RECORD_REAL`, a
//! Windows path), it records the in-repo C client (`clients/vdi_client.c`
//! cross-built with mingw-w64, `CoCreateInstance` path) backing up through
//! `vdisim client-test`. The recording is well-formed (the Linux
//! library's format, docs/RECORDING.md) and `vdisim judge` grades it as
//! client-test graded the run: the correct client passes, a flawed one
//! (TAMPER_BLOCK) breaks the same clause.
//!
//! One Wine prefix for the file (made once, ~20 s; each run then takes a
//! few seconds). Missing tools (the rustup target x86_64-pc-windows-gnu,
//! x86_64-w64-mingw32-gcc, wine64): a loud `SKIPPED: <why>`, and the test
//! passes.

#![cfg(target_os = "linux")]

#[path = "support/clients.rs"]
mod clients;
#[path = "support/scratch.rs"]
mod scratch;
#[path = "support/windows_client.rs"]
mod windows_client;
#[path = "support/wine.rs"]
mod wine;

use scratch::Scratch;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use vdi_conformance::client_test::wine::{dos_path, find_wine};
use windows_client::windows_client;
use wine::{build_dll, cargo_build_windows, mingw, missing_tool, skipped, windows_out_dir};

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");

/// The recording DLL, built for Windows and put in `dir` with the helper
/// DLLs the stand-in's build left in `from` (client-test installs those
/// found beside the DLL it registers).
fn recorder_dll(from: &Path, dir: &Path) -> PathBuf {
    cargo_build_windows(&["-p", "vdi-recorder"]);
    std::fs::create_dir_all(dir).unwrap();
    let dll = dir.join("sqlvdi_record.dll");
    std::fs::copy(windows_out_dir().join("sqlvdi_record.dll"), &dll).expect("copy recorder");
    std::fs::copy(
        from.join("bcryptprimitives.dll"),
        dir.join("bcryptprimitives.dll"),
    )
    .expect("copy the ProcessPrng stub");
    dll
}

/// What one recorded run left: client-test's verdict and detail, the
/// statement's outcome (`success` or its `Msg N`s) and the recording.
struct Recorded {
    verdict: String,
    detail: String,
    outcome: String,
    recording: PathBuf,
}

/// Runs client-test's `case` on the Windows `exe` with the recorder
/// registered and the stand-in `real` behind it.
fn record(
    exe: &Path,
    case: &str,
    rec_dll: &Path,
    real: &Path,
    prefix: &Path,
    out: &Path,
) -> Recorded {
    let recording = out.join("recording.jsonl");
    std::fs::create_dir_all(out).unwrap();
    let report_dir = out.join("client-test");
    let template = format!(
        "'{}' {{op}} {{database}} {{device}} {{devices}} {{file}} {{server}}",
        exe.display()
    );
    let o = Command::new(VDISIM)
        .args([
            "client-test",
            "--program",
            &template,
            "--ready-line",
            "READY",
        ])
        .args(["--case", case, "--jobs", "1", "--exit-timeout-ms", "2000"])
        .arg("--report-dir")
        .arg(&report_dir)
        .arg("--sqlvdi-dll")
        .arg(rec_dll)
        .arg("--wine-prefix")
        .arg(prefix)
        .env("VDISIM_RECORD_REAL", dos_path(real))
        .env("VDISIM_RECORD_FILE", dos_path(&recording))
        .output()
        .expect("vdisim client-test");
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    let report: Value = std::fs::read_to_string(report_dir.join("report.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| panic!("client-test's report: {text}"));
    let c = &report["cases"][0];
    let sql = c["timeline"]
        .as_array()
        .and_then(|t| t.iter().rfind(|e| e["who"] == "sql"))
        .unwrap_or_else(|| panic!("a statement in {c}\n{text}"));
    let outcome = if sql["what"].as_str().unwrap_or("").ends_with("Succeeded") {
        "success".to_string()
    } else {
        let d = sql["detail"].as_str().unwrap_or("");
        let nums = &d[d.rfind('[').map_or(0, |i| i + 1)..d.len().saturating_sub(1)];
        nums.split(", ")
            .map(|n| format!("Msg {n}, Level 16, State 1: message {n}."))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(recording.is_file(), "no recording was written: {text}");
    let recording = last_process(&recording);
    Recorded {
        verdict: c["verdict"].as_str().unwrap_or("").to_string(),
        detail: c["detail"].as_str().unwrap_or("").to_string(),
        outcome,
        recording,
    }
}

/// The lines of the file's last process (client-test runs the program
/// once to size its cases before the case's own run), in a file of their
/// own beside it.
fn last_process(all: &Path) -> PathBuf {
    let text = std::fs::read_to_string(all).unwrap();
    let pid_of = |l: &str| {
        serde_json::from_str::<Value>(l)
            .ok()
            .and_then(|v| v["pid"].as_u64())
    };
    let last = text
        .lines()
        .rev()
        .filter(|l| l.contains("\"rec\":\"header\""))
        .find_map(pid_of)
        .unwrap_or_else(|| panic!("a header in {text}"));
    let mine: String = text
        .lines()
        .filter(|l| pid_of(l) == Some(last))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = all.with_file_name(format!("recording-{last}.jsonl"));
    std::fs::write(&out, mine).unwrap();
    out
}

/// Checks the recording's lines: the header first, then call lines in
/// `seq` order with the fields of the Linux library's format.
fn well_formed(p: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(p).unwrap();
    let v: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(v[0]["rec"], "header", "{text}");
    assert_eq!(v[0]["format"], "vdisim-recording");
    assert_eq!(v[0]["v"], 1);
    let calls = &v[1..];
    assert!(calls.iter().all(|c| c["rec"] == "call"), "{text}");
    let seqs: Vec<u64> = calls.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq in order: {seqs:?}"
    );
    let methods: Vec<&str> = calls
        .iter()
        .map(|c| c["method"].as_str().unwrap())
        .collect();
    for m in [
        "Construct",
        "Create",
        "GetConfiguration",
        "OpenDevice",
        "GetCommand",
        "CompleteCommand",
        "Close",
        "Destruct",
    ] {
        assert!(methods.contains(&m), "{m} recorded: {methods:?}");
    }
    let create = calls.iter().find(|c| c["method"] == "Create").unwrap();
    assert!(
        create["name"].as_str().is_some_and(|n| !n.is_empty()),
        "the set name as UTF-8: {create}"
    );
    assert!(
        create["instance"].is_null(),
        "CreateEx for the default instance: {create}"
    );
    assert!(
        create["config"]["deviceCount"].as_u64().is_some(),
        "{create}"
    );
    // Device 0's first Write (with several devices, another device's may
    // come first: one thread per device).
    let write = calls
        .iter()
        .find(|c| c["method"] == "GetCommand" && c["cmd"]["name"] == "VDC_Write" && c["dev"] == 0)
        .unwrap_or_else(|| panic!("a Write delivered on device 0: {text}"));
    assert!(
        write["cmd"]["digest"].as_str().is_some(),
        "the Write's buffer digest: {write}"
    );
    let done = calls
        .iter()
        .find(|c| c["method"] == "CompleteCommand" && c["cmd"]["id"] == write["cmd"]["id"])
        .unwrap_or_else(|| panic!("the Write completed: {text}"));
    assert_eq!(done["completion"]["code"], 0, "{done}");
    calls.to_vec()
}

/// Runs `vdisim judge`: its exit code, report.json and output.
fn judge(r: &Recorded, dir: &Path) -> (i32, Value, String) {
    let report_dir = dir.join("judge");
    let out = Command::new(VDISIM)
        .arg("judge")
        .arg(&r.recording)
        .args(["--outcome", &r.outcome, "--report-dir"])
        .arg(&report_dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let report = std::fs::read_to_string(report_dir.join("report.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report, text)
}

/// (verdict, detail) of the result whose case ends with `.side`.
fn side(report: &Value, side: &str) -> (String, String) {
    let c = report["cases"]
        .as_array()
        .and_then(|v| {
            v.iter().find(|c| {
                c["case"]
                    .as_str()
                    .is_some_and(|n| n.ends_with(&format!(".{side}")))
            })
        })
        .unwrap_or_else(|| panic!("a {side} result in {report}"));
    (
        c["verdict"].as_str().unwrap_or("").to_string(),
        c["detail"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn windows_recordings_are_judged_like_client_test() {
    if let Some(why) = missing_tool() {
        skipped(&format!(
            "the recording sqlvdi.dll was not tried under Wine: {why}"
        ));
        return;
    }
    let t0 = std::time::Instant::now();
    let dir = Scratch::new("record-wine");
    let real = build_dll(&dir.0);
    let rec_dll = recorder_dll(&dir.0, &dir.path("recorder"));
    let prefix = dir.path("wineprefix");
    let built = t0.elapsed();

    // (flaw, case, the clause client-test and the judge name).
    let table: &[(Option<&str>, &str, Option<&str>)] = &[
        (None, "backup", None),
        (
            Some("TAMPER_BLOCK"),
            "backup",
            Some("complete-command.read-only-block"),
        ),
    ];
    for (flaw, case, clause) in table {
        let exe = windows_client(&dir.0, *flaw);
        let out = dir.path(&format!("run-{}", flaw.unwrap_or("correct")));
        let r = record(&exe, case, &rec_dll, &real, &prefix, &out);
        let calls = well_formed(&r.recording);
        let (code, report, text) = judge(&r, &out);
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
                assert!(
                    calls.iter().any(|c| c["block_modified"] == true),
                    "the changed block recorded: {what}"
                );
                assert_eq!(code, 1, "{what}");
            }
        }
        let (sv, sd) = side(&report, "server");
        assert_eq!(sv, "pass", "the stand-in is the model: {sd}\n{what}");
        println!(
            "{flaw:?} in {case}: {verdict} in client-test and the judge ({} calls recorded)",
            calls.len()
        );
    }
    no_real_library_no_object(&dir.path("run-correct"), &prefix, &dir.0);
    two_devices_backup_and_restore(&dir.path("roundtrip"), &prefix);
    println!(
        "record_wine: built in {:.1} s, recorded and judged in {:.1} s",
        built.as_secs_f64(),
        (t0.elapsed() - built).as_secs_f64()
    );
}

/// Runs `exe` under Wine in `prefix` with `env` (and no
/// `VDISIM_RECORD_REAL` but the one given); its output. The wineserver
/// the run started goes with it.
fn wine_run(
    exe: &Path,
    args: &[String],
    env: &[(&str, String)],
    prefix: &Path,
) -> std::process::Output {
    let wine = find_wine().expect("wine was found before");
    let o = Command::new(&wine)
        .arg(exe)
        .args(args)
        .env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        .env_remove("DISPLAY")
        .env_remove("VDISIM_RECORD_REAL")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("wine runs the program");
    let ws = wine
        .parent()
        .map(|d| d.join("wineserver"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("wineserver"));
    for a in ["-k", "-w"] {
        let _ = Command::new(&ws).arg(a).env("WINEPREFIX", prefix).status();
    }
    o
}

/// The stand-in's own COM sample (`sim/standin/samples/win_com_roundtrip.c`:
/// a backup striped over two devices and a restore from them, one Win32
/// thread per device, against the stand-in's in-process server) runs
/// unchanged through the recorder, and the recording has both devices,
/// the Reads' digests, and one Construct and one Destruct (the wrapper's
/// reference counts end where the program's do).
fn two_devices_backup_and_restore(out: &Path, prefix: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let exe = out.join("win_com_roundtrip.exe");
    let samples = wine::workspace().join("sim/standin/samples");
    let inc = wine::workspace().join("sim/standin/include");
    mingw(
        &["-std=c11", "-I", inc.to_str().expect("utf-8 path")],
        &samples.join("win_com_roundtrip.c"),
        &exe,
        &["-lole32", "-luuid"],
    );
    let plan = out.join("plan.toml");
    std::fs::write(
        &plan,
        "[[statement]]\nkind = \"backup-database\"\ndatabase = \"sales\"\n\
         data-bytes = 1000000\nmid-flushes = 1\n\n\
         [[statement]]\nkind = \"restore-database\"\ndatabase = \"sales\"\n\
         read-sizes = { cycle = [4096, 65536, 512] }\n",
    )
    .unwrap();
    let real = out.parent().unwrap().join("sqlvdi.dll");
    let recording = out.join("roundtrip.jsonl");
    let env = [
        ("VDISIM_PLAN", dos_path(&plan)),
        ("VDISIM_SEED", "7".to_string()),
        ("VDISIM_RECORD_REAL", dos_path(&real)),
        ("VDISIM_RECORD_FILE", dos_path(&recording)),
    ];
    let o = wine_run(&exe, &[], &env, prefix);
    let text = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    let err = String::from_utf8_lossy(&o.stderr);
    for line in [
        "activation: CoCreateInstance = S_OK",
        "backup: statement = SUCCEEDED",
        "restore: statement = SUCCEEDED",
        "restore: read back 1131520 bytes",
        "set released (refs 0)",
        "OK",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?}: {text}{err}"
        );
    }
    let calls = well_formed(&recording);
    let count = |m: &str| calls.iter().filter(|c| c["method"] == m).count();
    assert_eq!((count("Construct"), count("Destruct")), (1, 1), "{calls:?}");
    let opened = calls
        .iter()
        .filter(|c| c["method"] == "OpenDevice" && c["ret"] == 0)
        .count();
    assert_eq!(
        opened,
        count("DeviceDestruct"),
        "every device wrapper freed"
    );
    for d in [0, 1] {
        assert!(
            calls.iter().any(|c| c["method"] == "CompleteCommand"
                && c["dev"] == d
                && c["cmd"]["name"] == "VDC_Read"
                && c["digest"].is_string()),
            "dev{d}'s Reads recorded with their digests"
        );
    }
}

/// Without `VDISIM_RECORD_REAL` the recorder makes no object: the
/// program's `CoCreateInstance` fails (CLASS_E_CLASSNOTAVAILABLE), the
/// program says it failed, nothing is recorded, and stderr says why.
fn no_real_library_no_object(out: &Path, prefix: &Path, dir: &Path) {
    let exe = dir.join("vdi_client.exe");
    let recording = out.join("no-real.jsonl");
    let args = ["backup", "db", "vdisim-no-real", "1"]
        .map(String::from)
        .into_iter()
        .chain([dos_path(&out.join("no-real.bak")), "default".to_string()])
        .collect::<Vec<_>>();
    let env = [("VDISIM_RECORD_FILE", dos_path(&recording))];
    let o = wine_run(&exe, &args, &env, prefix);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "the program believes it failed: {err}"
    );
    assert!(err.contains("cannot make a set object"), "{err}");
    assert!(
        err.contains("VDISIM_RECORD_REAL is not set"),
        "the recorder says why: {err}"
    );
    let calls = std::fs::read_to_string(&recording).unwrap_or_default();
    assert!(
        !calls.contains("\"rec\":\"call\""),
        "nothing recorded: {calls}"
    );
}
