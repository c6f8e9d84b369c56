//! Recording a client program through the recording library
//! (`sim/recorder`) in front of the stand-in, under `vdisim client-test`:
//! the judge and the replay backend tests share it.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use vdi_conformance::backends::abi::{library_path, profile_dir};

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");

/// The recording library, built with `cargo build -p vdi-recorder` into
/// this profile's directory when it is not there.
pub fn recorder_library() -> PathBuf {
    let dir = profile_dir().expect("a target directory");
    let find = || {
        [
            dir.join("libsqlvdi_record.so"),
            dir.join("deps/libsqlvdi_record.so"),
        ]
        .into_iter()
        .filter(|p| p.exists())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    };
    if let Some(p) = find() {
        return p;
    }
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(["build", "-p", "vdi-recorder"]);
    if dir.file_name().is_some_and(|n| n == "release") {
        c.arg("--release");
    }
    if let Some(t) = dir.parent() {
        c.env("CARGO_TARGET_DIR", t);
    }
    let st = c
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(st.success(), "cargo build -p vdi-recorder failed");
    find().expect("libsqlvdi_record.so after cargo build -p vdi-recorder")
}

/// What one recorded client-test run left.
pub struct Recorded {
    /// client-test's verdict and detail.
    pub verdict: String,
    pub detail: String,
    /// The case run's recording, exit code (`None`: killed by the
    /// runner) and end (ms since the epoch).
    pub recording: PathBuf,
    pub exit_code: Option<i32>,
    pub ended_unix_ms: u64,
    /// `success` or the statement's `Msg N`s.
    pub outcome: String,
}

/// Runs client-test's `case` on `prog` with the recorder in front of the
/// stand-in; each run of the program appends `start pid` then `end pid rc
/// end_ms` (not when it is killed) to `runs.txt` and records into
/// `rec-<pid>.jsonl`.
pub fn record(prog: &Path, case: &str, dir: &Path) -> Recorded {
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::os::unix::fs::symlink(recorder_library(), lib.join("libsqlvdi.so")).unwrap();
    let real = library_path().expect("the stand-in library");
    let wrap = dir.join("wrap.sh");
    let d = dir.display();
    std::fs::write(
        &wrap,
        format!(
            "#!/bin/sh\necho \"start $$ $(date +%s%3N)\" >> {d}/runs.txt\nVDISIM_RECORD_FILE={d}/rec-$$.jsonl \"$@\"\nrc=$?\necho \"end $$ $rc $(date +%s%3N)\" >> {d}/runs.txt\nexit $rc\n"
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrap, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let template = format!(
        "'{}' '{}' {{op}} {{database}} {{device}} {{devices}} {{file}} {{server}}",
        wrap.display(),
        prog.display()
    );
    let report_dir = dir.join("client-test");
    let out = Command::new(VDISIM)
        .args(["client-test", "--program", &template, "--case", case])
        .args(["--jobs", "1", "--exit-timeout-ms", "2000", "--report-dir"])
        .arg(&report_dir)
        .env("VDISIM_LIBSQLVDI", lib.join("libsqlvdi.so"))
        .env("VDISIM_RECORD_REAL", &real)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json")).unwrap())
            .unwrap_or_else(|e| panic!("client-test's report: {e}\n{text}"));
    let c = &report["cases"][0];
    let runs = std::fs::read_to_string(dir.join("runs.txt")).unwrap();
    let words = |l: &str| l.split(' ').map(str::to_string).collect::<Vec<_>>();
    let start = words(runs.lines().rfind(|l| l.starts_with("start")).unwrap());
    let end = runs
        .lines()
        .map(words)
        .find(|w| w[0] == "end" && w[1] == start[1]);
    let sql = c["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["who"] == "sql")
        .unwrap_or_else(|| panic!("a statement in {c}"));
    let outcome = if sql["what"].as_str().unwrap().ends_with("Succeeded") {
        "success".to_string()
    } else {
        let d = sql["detail"].as_str().unwrap();
        let nums = &d[d.rfind('[').unwrap() + 1..d.len() - 1];
        nums.split(", ")
            .map(|n| format!("Msg {n}, Level 16, State 1: message {n}."))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Recorded {
        verdict: c["verdict"].as_str().unwrap().to_string(),
        detail: c["detail"].as_str().unwrap().to_string(),
        recording: dir.join(format!("rec-{}.jsonl", start[1])),
        exit_code: end.as_ref().map(|w| w[2].parse().unwrap()),
        ended_unix_ms: match &end {
            Some(w) => w[3].parse().unwrap(),
            // Killed: the statement ended before the runner's bound ran out.
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
        },
        outcome,
    }
}
