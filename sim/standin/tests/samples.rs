//! The sample clients in `sim/standin/samples/` — a C client over the
//! COM-shaped interface and a C++ client over the Linux class API — built
//! with the machine's gcc/g++ (`-Wall -Werror`) against the freshly built
//! `libsqlvdi.so`, and run in every mode against the in-process server with
//! a matching plan file. Each mode's exit status and key output lines are
//! checked; both clients must print the same observations.
//!
//! Needs gcc and g++; without them each test prints `SKIPPED: <why>`.
#![cfg(target_os = "linux")]

mod common;

use common::{crate_dir, have};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// 4 MiB over 3 devices with 64 KiB transfers: about 21 writes per device,
/// so a device that stops after 2 completions leaves the stream unfinished.
const DATA_BYTES: u64 = 4 * 1024 * 1024;

fn compile(compiler: &str, src: &str, std: &str, out: &str) -> PathBuf {
    let exe = out_dir().join(out);
    let o = Command::new(compiler)
        .args([std, "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(crate_dir().join("samples").join(src))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(lib_dir())
        .args(["-lsqlvdi", "-lpthread"])
        .output()
        .expect("run compiler");
    assert!(
        o.status.success(),
        "{compiler} {src} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    exe
}

/// The plan each mode needs: BACKUP (+ RESTORE for the modes that restore).
fn plan(mode: &str) -> PathBuf {
    let backup = format!(
        "[[statement]]\nkind = \"backup-database\"\ndatabase = \"sales\"\n\
         data-bytes = {DATA_BYTES}\nmid-flushes = 1\n"
    );
    let text = match mode {
        "roundtrip" | "reuse" => format!(
            "{backup}\n[[statement]]\nkind = \"restore-database\"\ndatabase = \"sales\"\n\
             read-sizes = {{ cycle = [4096, 65536, 512] }}\n"
        ),
        // The server aborts once the client has completed 6 commands.
        "server-abort" => format!("{backup}abort-after-commands = 6\n"),
        _ => backup,
    };
    let p = out_dir().join(format!("{mode}.toml"));
    std::fs::write(&p, text).expect("write plan");
    p
}

fn run(exe: &Path, mode: &str) -> Output {
    Command::new(exe)
        .arg(mode)
        .env("LD_LIBRARY_PATH", lib_dir())
        .env("VDISIM_PLAN", plan(mode))
        .env("VDISIM_SEED", "7")
        .output()
        .expect("run sample")
}

const MODES: [&str; 5] = ["roundtrip", "reuse", "close-open", "abort", "server-abort"];

/// Exit status and the lines every run of `mode` must print (in order).
fn expected(mode: &str) -> (i32, Vec<String>) {
    // The data and a 64 KiB media header per family (3 devices).
    let total = DATA_BYTES + 3 * vdi_model::media::HEADER_BYTES;
    let devs = |phase: &str, code: &str| -> Vec<String> {
        (0..3)
            .map(|i| format!("{phase}: dev{i} end = {code}"))
            .collect()
    };
    let mut l: Vec<String> = vec![
        "backup: GetConfiguration = NOERROR".into(),
        "backup: deviceCount=3 blockSize=512 maxTransferSize=65536 WriteMedia".into(),
    ];
    let restore = |l: &mut Vec<String>| {
        l.push("restore: GetConfiguration = NOERROR".into());
        l.push("restore: deviceCount=3 blockSize=512 maxTransferSize=65536 ReadMedia".into());
        l.extend(devs("restore", "VD_E_CLOSE"));
        l.push("restore: Close = NOERROR".into());
        l.push("restore: statement = SUCCEEDED messages 4035 3014".into());
        l.push(format!("restore: read back {total} bytes"));
    };
    let code = match mode {
        "roundtrip" | "reuse" => {
            l.extend(devs("backup", "VD_E_CLOSE"));
            l.push("backup: Close = NOERROR".into());
            l.push("backup: statement = SUCCEEDED messages 4035 3014".into());
            l.push(format!(
                "backup: stored {total} bytes on 3 devices, its media header and every block tagged with its stream and offset"
            ));
            if mode == "reuse" {
                l.push("reuse: create again on the same object = NOERROR".into());
                for i in 0..3 {
                    l.push(format!("reuse: old dev{i} GetCommand = VD_E_PROTOCOL"));
                }
            }
            restore(&mut l);
            0
        }
        "close-open" => {
            l.push("backup: every device completed 2 commands".into());
            l.push("backup: Close with devices open = VD_E_OPEN".into());
            l.extend(devs("backup", "VD_E_PROTOCOL"));
            l.push("backup: Close again = VD_E_PROTOCOL".into());
            3
        }
        "abort" => {
            l.push("backup: every device completed 2 commands".into());
            l.push("backup: SignalAbort = NOERROR".into());
            l.extend(devs("backup", "VD_E_ABORT"));
            l.push("backup: Close after abort = NOERROR".into());
            3
        }
        "server-abort" => {
            l.extend(devs("backup", "VD_E_ABORT"));
            l.push("backup: Close after abort = NOERROR".into());
            l.push("backup: statement = FAILED messages 3204 3013".into());
            3
        }
        _ => unreachable!("{mode}"),
    };
    let result = if code == 0 { "SUCCEEDED" } else { "FAILED" };
    l.push(format!("RESULT {mode} {result}"));
    (code, l)
}

/// Runs every mode of one sample, checks exit status and lines; returns
/// the observations (all lines but the banner) per mode.
fn check_sample(exe: &Path, banner: &str) -> Vec<Vec<String>> {
    MODES
        .iter()
        .map(|mode| {
            let o = run(exe, mode);
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            let err = String::from_utf8_lossy(&o.stderr);
            let ctx = format!(
                "{banner} {mode} ({:?})\nstdout:\n{out}\nstderr:\n{err}",
                o.status
            );
            let lines: Vec<String> = out.lines().map(str::to_owned).collect();
            assert_eq!(
                lines.first().map(String::as_str),
                Some(format!("sample {banner} mode={mode} devices=3").as_str()),
                "{ctx}"
            );
            assert!(!out.contains("UNEXPECTED"), "{ctx}");
            let (code, want) = expected(mode);
            assert_eq!(o.status.code(), Some(code), "exit status: {ctx}");
            // The wanted lines appear in order.
            let mut at = 0;
            for w in &want {
                match lines[at..].iter().position(|l| l == w) {
                    Some(k) => at += k + 1,
                    None => panic!("missing (in order) {w:?}: {ctx}"),
                }
            }
            if matches!(*mode, "close-open" | "abort") {
                // The statement fails as a client abort: 18210 (OS error
                // 995) for the devices' outstanding I/O, then 3013.
                let st = lines
                    .iter()
                    .find(|l| l.starts_with("backup: statement = "))
                    .unwrap_or_else(|| panic!("no statement line: {ctx}"));
                assert!(
                    st.starts_with("backup: statement = FAILED messages 18210")
                        && st.ends_with(" 3013"),
                    "{ctx}"
                );
            }
            lines[1..].to_vec()
        })
        .collect()
}

/// What both languages must agree on: the Linux class API has Create, the
/// COM one CreateEx; how many devices had I/O in flight when the client
/// aborted (one 18210 each) is the server's business.
fn observations(v: Vec<Vec<String>>) -> Vec<Vec<String>> {
    v.into_iter()
        .map(|m| {
            m.into_iter()
                .map(|l| {
                    if l.starts_with("backup: statement = FAILED messages 18210") {
                        "backup: statement = FAILED messages 18210... 3013".into()
                    } else {
                        l.replace(": CreateEx = ", ": Create = ")
                    }
                })
                .collect()
        })
        .collect()
}

/// Both samples in every mode; they see the same thing through either ABI.
#[test]
fn c_and_cpp_samples_every_mode() {
    let (gcc, gxx) = (have("gcc"), have("g++"));
    let mut seen = Vec::new();
    if gcc {
        let exe = compile("gcc", "c_com_client.c", "-std=c11", "c_com_client");
        seen.push(observations(check_sample(&exe, "c-com")));
    } else {
        println!("SKIPPED: gcc not found: the C sample was not built");
    }
    if gxx {
        let exe = compile(
            "g++",
            "cpp_linux_client.cpp",
            "-std=c++17",
            "cpp_linux_client",
        );
        seen.push(observations(check_sample(&exe, "cpp-linux")));
    } else {
        println!("SKIPPED: g++ not found: the C++ sample was not built");
    }
    if let [c, cpp] = &seen[..] {
        assert_eq!(c, cpp, "the C and C++ samples observed different things");
    }
}

/// A bad mode is a usage error (exit 2), not a silent success.
#[test]
fn sample_usage_error() {
    if !have("gcc") {
        println!("SKIPPED: gcc not found");
        return;
    }
    let exe = compile("gcc", "c_com_client.c", "-std=c11", "c_com_client_usage");
    let o = run(&exe, "nonsense");
    assert_eq!(o.status.code(), Some(2));
}

fn out_dir() -> PathBuf {
    common::out_dir("standin-samples")
}

fn lib_dir() -> &'static PathBuf {
    common::lib_dir("standin-samples")
}
