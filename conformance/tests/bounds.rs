//! Every size, count and time that enters from outside has a bound
//! (`vdi_spec::bounds`); beyond it the command exits 2 with a message that
//! names the input, the bound and the fix, before it does any work.

use std::process::Command;

fn vdisim(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vdisim"))
        .args(args)
        .output()
        .expect("vdisim runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn refused(args: &[&str], words: &[&str]) {
    let (code, text) = vdisim(args);
    assert_eq!(code, 2, "{args:?} exits 2: {text}");
    for w in words {
        assert!(text.contains(w), "{args:?}: {w:?} in {text}");
    }
    assert!(!text.contains("trace-hash"), "{args:?} did no work: {text}");
}

#[test]
fn a_wrapping_data_size_is_refused() {
    refused(
        &["simulate", "--data-bytes", "18446744073709551615"],
        &["data-bytes = 18446744073709551615", "1099511627776"],
    );
}

#[test]
fn unbounded_work_is_refused() {
    refused(
        &["simulate", "--mid-flushes", "4294967295"],
        &["mid-flushes", "1024"],
    );
    refused(
        &[
            "simulate",
            "--data-bytes",
            "1099511627776",
            "--devices",
            "64",
        ],
        &["data commands", "MAXTRANSFERSIZE"],
    );
    refused(
        &[
            "simulate",
            "--buffer-count",
            "4000000",
            "--max-transfer-size",
            "4194304",
        ],
        &["BUFFERCOUNT x MAXTRANSFERSIZE"],
    );
}

#[test]
fn seeds_are_bounded() {
    refused(&["run", "--seeds", "4294967295"], &["--seeds", "10000"]);
    refused(
        &["check-determinism", "--seeds", "4294967295"],
        &["--seeds", "10000"],
    );
}

#[test]
fn a_scenario_beyond_a_bound_is_refused_with_its_file() {
    let dir = std::env::temp_dir().join(format!("vdisim-bounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("big.toml"),
        "id = \"big\"\nsummary = \"s\"\nclauses = [\"close.devices-open\"]\n\
         [server]\ndata-bytes = 4611686018427387904\n[client]\noperation = \"backup\"\n",
    )
    .unwrap();
    let (code, text) = vdisim(&["--scenarios", dir.to_str().unwrap(), "run"]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("big.toml") && text.contains("data-bytes"),
        "{text}"
    );
}

/// The clocks: `serve --time-scale` and `client-test --time-scale` take
/// 1..=1000, checked before a socket or a program is touched.
#[cfg(unix)]
#[test]
fn time_scales_are_bounded() {
    let dir = std::env::temp_dir().join(format!("vdisim-bounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("s.sock");
    let sock = sock.to_str().unwrap();
    refused(
        &["serve", "--listen", sock, "--time-scale", "0"],
        &["--time-scale", "1..=1000"],
    );
    refused(
        &["serve", "--listen", sock, "--time-scale", "1001"],
        &["--time-scale", "1..=1000"],
    );
    assert!(!std::path::Path::new(sock).exists(), "no socket left");
    refused(
        &[
            "client-test",
            "--program",
            "/bin/true {device}",
            "--ready-line",
            "READY",
            "--time-scale",
            "5000",
        ],
        &["--time-scale", "5000"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
