//! Runs the loom models (`tests/loom.rs`, built only with `--cfg loom`)
//! from the normal test run, so CI checks them:
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p vdi-host --test loom
//! ```
//!
//! in the dev profile: the models are small, so the build dominates, and a
//! cold dev build plus run took 23 s where `--release` (optimised, with
//! debug info) took 62 s for a 0.2 s instead of 0.3 s run. It runs
//! in a target directory of its own (`<target>/loom`: `--cfg loom` changes
//! every crate's flags, and sharing the normal target directory would
//! rebuild it back and forth and wait on its lock). The preemption bound is
//! 3 (CI; the models accept any bound ≥ 2) unless `LOOM_MAX_PREEMPTIONS` is set (the models raise anything lower
//! to 2). Prints the run time and each model's line (bound, interleavings,
//! time). Without a usable cargo it prints `SKIPPED: ...` and passes.
#![cfg(not(loom))]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest the nested build and run may take before the test fails.
const LIMIT: Duration = Duration::from_secs(30 * 60);

/// The target directory this test binary was built in
/// (`<target>[/<triple>]/<profile>/deps/loom_ci-*`), else `target` of the
/// workspace.
fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

#[test]
fn loom_models_pass() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    match Command::new(&cargo)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {}
        other => {
            println!("SKIPPED: loom models not run: cargo ({cargo:?}) is not usable: {other:?}");
            return;
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = target_dir().join("loom");
    let rustflags = match std::env::var("RUSTFLAGS") {
        Ok(f) if !f.trim().is_empty() => format!("{f} --cfg loom"),
        _ => "--cfg loom".to_string(),
    };
    let bound = std::env::var("LOOM_MAX_PREEMPTIONS").unwrap_or_else(|_| "3".into());
    let t0 = Instant::now();
    let mut child = Command::new(&cargo)
        .current_dir(&workspace)
        .args(["test", "-p", "vdi-host", "--test", "loom"])
        .args(["--", "--nocapture", "--test-threads=2"])
        .env("RUSTFLAGS", rustflags)
        // Would take precedence over RUSTFLAGS.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("LOOM_MAX_PREEMPTIONS", &bound)
        .env("CARGO_TARGET_DIR", &target)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cargo");
    // Drain both pipes on threads (a full pipe would block the child).
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for cargo") {
            break s;
        }
        if t0.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("loom suite did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = t0.elapsed();
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let mut models = 0;
    for l in out.lines() {
        if let Some(i) = l.find("loom model") {
            println!("{}", &l[i..]);
            models += 1;
        }
    }
    println!(
        "loom suite (LOOM_MAX_PREEMPTIONS={bound}, dev profile, target {}): {} in {:.1?} (build included)",
        target.display(),
        if status.success() { "passed" } else { "FAILED" },
        elapsed
    );
    assert!(
        status.success(),
        "loom suite failed ({status}):\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    // A build without `--cfg loom` would compile the suite to nothing and
    // pass: require the models to have run.
    assert!(
        out.contains("test result: ok. ") && models > 0,
        "no loom model ran (was --cfg loom applied?):\n{out}\n{err}"
    );
}
