//! The Windows path, from a Linux host.
//!
//! - `windows_target_type_checks`: `cargo check --target
//!   x86_64-pc-windows-gnu` of the stand-in (COM activation, `cfg(windows)`
//!   code) and of the conformance crate (the COM backend), when the rustup
//!   target is installed.
//! - `wine_com_roundtrip`: where mingw-w64 and wine64 are installed, builds
//!   `sqlvdi.dll`, a stub `bcryptprimitives.dll` (Rust's std needs
//!   `ProcessPrng`, which Wine 8 lacks) and `samples/win_com_roundtrip.c`,
//!   registers the DLL with `regsvr32` in a fresh private WINEPREFIX, and
//!   runs the program under wine64: COM activation (CoCreateInstance; if
//!   registration fails, DllGetClassObject — the output says which path ran)
//!   and a 2-device BACKUP + RESTORE through the in-process server.
//!
//! Missing tools: the test prints a loud `SKIPPED: <why>` line and passes.
#![cfg(target_os = "linux")]

mod common;

use common::{crate_dir, have};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TARGET: &str = "x86_64-pc-windows-gnu";
const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";

fn workspace_dir() -> PathBuf {
    crate_dir()
        .parent()
        .and_then(Path::parent)
        .expect("workspace root")
        .to_path_buf()
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

/// The target directory for Windows builds, apart from the host's so the
/// outer `cargo test` lock is not involved.
fn windows_target_dir() -> PathBuf {
    tmp_dir("windows-target")
}

fn cargo() -> Command {
    let mut c = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    c.current_dir(workspace_dir())
        .env("CARGO_TARGET_DIR", windows_target_dir())
        .env_remove("RUSTFLAGS");
    c
}

fn target_installed() -> Result<(), String> {
    let o = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup not runnable ({e})"))?;
    let list = String::from_utf8_lossy(&o.stdout);
    if list.lines().any(|l| l.trim() == TARGET) {
        Ok(())
    } else {
        Err(format!(
            "rustup target {TARGET} not installed (rustup target add {TARGET})"
        ))
    }
}

/// wine64: on PATH, or where Debian's `wine64` package puts it.
fn wine64() -> Option<PathBuf> {
    ["wine64", "/usr/lib/wine/wine64", "/usr/lib64/wine/wine64"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

fn skipped(why: &str) {
    println!("\n==== SKIPPED: {why} ====\n");
    eprintln!("SKIPPED: {why}");
}

fn describe(o: &Output) -> String {
    format!(
        "{:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn windows_target_type_checks() {
    if let Err(why) = target_installed() {
        skipped(&format!("the Windows type-check did not run: {why}"));
        return;
    }
    let o = cargo()
        .args([
            "check",
            "-p",
            "vdi-standin",
            "--all-targets",
            "--target",
            TARGET,
        ])
        .output()
        .expect("cargo check");
    assert!(
        o.status.success(),
        "vdi-standin does not type-check for {TARGET}: {}",
        describe(&o)
    );
    // The conformance crate holds the COM backend; it type-checked for this
    // target when this test was written, so a failure is a regression.
    let o = cargo()
        .args([
            "check",
            "-p",
            "vdi-conformance",
            "--all-targets",
            "--target",
            TARGET,
        ])
        .output()
        .expect("cargo check");
    assert!(
        o.status.success(),
        "vdi-conformance does not type-check for {TARGET}: {}",
        describe(&o)
    );
}

/// Runs `c` with a deadline (a hung Wine must not hang the test suite);
/// the deadline is a safety net, not something the test measures.
fn run_with_deadline(mut c: Command, limit: Duration) -> Output {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().expect("output");
            panic!("killed after {limit:?}: {}", describe(&o));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn mingw(args: &[&str], src: &str, out: &Path, libs: &[&str]) {
    let o = Command::new(MINGW_GCC)
        .args(["-Wall", "-Wextra", "-Werror"])
        .args(args)
        .arg(crate_dir().join("samples").join(src))
        .arg("-o")
        .arg(out)
        .args(libs)
        .output()
        .expect("mingw gcc");
    assert!(o.status.success(), "{src}: {}", describe(&o));
}

#[test]
fn wine_com_roundtrip() {
    if let Err(why) = target_installed() {
        skipped(&format!("the Wine COM round trip did not run: {why}"));
        return;
    }
    if !have(MINGW_GCC) {
        skipped(&format!(
            "the Wine COM round trip did not run: {MINGW_GCC} not found (apt-get install gcc-mingw-w64-x86-64)"
        ));
        return;
    }
    let Some(wine) = wine64() else {
        skipped("the Wine COM round trip did not run: wine64 not found (apt-get install wine64)");
        return;
    };

    // sqlvdi.dll
    let o = cargo()
        .args(["build", "-p", "vdi-standin", "--target", TARGET])
        .output()
        .expect("cargo build");
    assert!(o.status.success(), "sqlvdi.dll: {}", describe(&o));
    let dll = windows_target_dir().join(TARGET).join("debug/sqlvdi.dll");

    let dir = tmp_dir("wine-com");
    let prefix = dir.join("wineprefix");
    let _ = std::fs::remove_dir_all(&prefix);
    std::fs::copy(&dll, dir.join("sqlvdi.dll")).expect("copy sqlvdi.dll");
    let stub = dir.join("bcryptprimitives.dll");
    mingw(
        &["-shared"],
        "bcryptprimitives_stub.c",
        &stub,
        &["-ladvapi32"],
    );
    let inc = crate_dir().join("include");
    let exe = dir.join("win_com_roundtrip.exe");
    mingw(
        &["-std=c11", "-I", inc.to_str().expect("utf-8 path")],
        "win_com_roundtrip.c",
        &exe,
        &["-lole32", "-luuid"],
    );
    let plan = dir.join("plan.toml");
    std::fs::write(
        &plan,
        "[[statement]]\nkind = \"backup-database\"\ndatabase = \"sales\"\n\
         data-bytes = 1000000\nmid-flushes = 1\n\n\
         [[statement]]\nkind = \"restore-database\"\ndatabase = \"sales\"\n\
         read-sizes = { cycle = [4096, 65536, 512] }\n",
    )
    .expect("write plan");

    let wine_cmd = |args: &[&str]| {
        let mut c = Command::new(&wine);
        c.args(args)
            .current_dir(&dir)
            .env("WINEPREFIX", &prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY");
        c
    };
    let limit = Duration::from_secs(300);
    // A fresh prefix, with the ProcessPrng stub in system32 so that every
    // loader (regsvr32, COM, the program) finds it.
    let o = run_with_deadline(wine_cmd(&["wineboot", "-i"]), limit);
    assert!(o.status.success(), "wineboot: {}", describe(&o));
    let sys32 = prefix.join("drive_c/windows/system32");
    std::fs::copy(&stub, sys32.join("bcryptprimitives.dll")).expect("install stub");

    let reg = run_with_deadline(wine_cmd(&["regsvr32", "/s", "sqlvdi.dll"]), limit);
    let registered = reg.status.success();
    if !registered {
        println!(
            "regsvr32 failed under Wine ({}); falling back to DllGetClassObject",
            describe(&reg)
        );
    }
    let mut c = wine_cmd(&["win_com_roundtrip.exe"]);
    if !registered {
        c.arg("fallback");
    }
    // Z: is the host's root in every Wine prefix.
    c.env("VDISIM_PLAN", format!("Z:{}", plan.display()));
    c.env("VDISIM_SEED", "7");
    let o = run_with_deadline(c, limit);
    let _ = run_with_deadline(wine_cmd(&["wineboot", "-e"]), limit);
    let out = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    println!("{out}");
    assert!(o.status.success(), "win_com_roundtrip: {}", describe(&o));
    let want_activation = if registered {
        "activation: CoCreateInstance = S_OK"
    } else {
        "activation: DllGetClassObject + IClassFactory::CreateInstance = S_OK"
    };
    for line in [
        want_activation,
        "backup: dev0 end = VD_E_CLOSE",
        "backup: dev1 end = VD_E_CLOSE",
        "backup: statement = SUCCEEDED",
        // 1,000,000 bytes rounded up to 512, and a 64 KiB media header on
        // each of the 2 devices.
        "backup: stored 1131520 bytes on 2 devices",
        "restore: dev0 end = VD_E_CLOSE",
        "restore: dev1 end = VD_E_CLOSE",
        "restore: statement = SUCCEEDED",
        "restore: read back 1131520 bytes",
        "set released (refs 0)",
        "OK",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?}: {}",
            describe(&o)
        );
    }
    println!(
        "wine COM round trip ran through {}",
        if registered {
            "regsvr32 + CoCreateInstance"
        } else {
            "LoadLibrary + DllGetClassObject (regsvr32 failed)"
        }
    );
}
