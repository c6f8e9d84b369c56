//! The Windows path's tools for tests: the rustup target, mingw-w64 and
//! Wine (each missing one is a reason to print `SKIPPED`), the stand-in
//! `sqlvdi.dll` built for x86_64-pc-windows-gnu with the `ProcessPrng` stub
//! Wine 8 needs, and cross-built programs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "x86_64-pc-windows-gnu";
pub const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";

/// Whether `tool --version` runs.
pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The target directory of Windows builds: the one the stand-in's own
/// Windows test uses (`CARGO_TARGET_TMPDIR/windows-target`), so one build
/// serves both.
pub fn windows_target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("windows-target")
}

/// `cargo build -p PACKAGE [--bin BIN] --target x86_64-pc-windows-gnu`;
/// panics with cargo's output when it fails.
pub fn cargo_build_windows(args: &[&str]) {
    let o = Command::new(option_env!("CARGO").unwrap_or("cargo"))
        .current_dir(workspace())
        .env("CARGO_TARGET_DIR", windows_target_dir())
        .env_remove("RUSTFLAGS")
        .arg("build")
        .args(args)
        .args(["--target", TARGET])
        .output()
        .expect("cargo build");
    assert!(
        o.status.success(),
        "cargo build {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The Windows debug build's output directory.
pub fn windows_out_dir() -> PathBuf {
    windows_target_dir().join(TARGET).join("debug")
}

pub fn skipped(why: &str) {
    println!("\n==== SKIPPED: {why} ====\n");
    eprintln!("SKIPPED: {why}");
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Why the Windows path cannot run here, if it cannot.
pub fn missing_tool() -> Option<String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
        });
    if !installed {
        return Some(format!(
            "rustup target {TARGET} not installed (rustup target add {TARGET})"
        ));
    }
    if !have(MINGW_GCC) {
        return Some(format!(
            "{MINGW_GCC} not found (apt-get install gcc-mingw-w64-x86-64)"
        ));
    }
    if vdi_conformance::client_test::wine::find_wine().is_none() {
        return Some("wine64 not found (apt-get install wine64)".into());
    }
    None
}

/// Builds `sqlvdi.dll` (in the target directory the stand-in's own Windows
/// test uses, so one build serves both) and the `ProcessPrng` stub Wine 8
/// needs, into `dir`; the DLL's path.
pub fn build_dll(dir: &Path) -> PathBuf {
    cargo_build_windows(&["-p", "vdi-standin"]);
    let dll = dir.join("sqlvdi.dll");
    std::fs::copy(windows_out_dir().join("sqlvdi.dll"), &dll).expect("copy dll");
    mingw(
        &["-shared"],
        &workspace().join("sim/standin/samples/bcryptprimitives_stub.c"),
        &dir.join("bcryptprimitives.dll"),
        &["-ladvapi32"],
    );
    dll
}

pub fn mingw(args: &[&str], src: &Path, out: &Path, libs: &[&str]) {
    let o = Command::new(MINGW_GCC)
        .args(["-Wall", "-Wextra", "-Werror", "-O1"])
        .args(args)
        .arg(src)
        .arg("-o")
        .arg(out)
        .args(libs)
        .output()
        .expect("mingw gcc");
    assert!(
        o.status.success(),
        "{}: {}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}
