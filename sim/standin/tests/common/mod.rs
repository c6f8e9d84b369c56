//! What the tests that compile and run C, C++ and Windows programs share:
//! the crate's directories, tool discovery, and a fresh `libsqlvdi.so`.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `tool --version` runs and succeeds.
pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `target/<profile>/`, found from the running test executable
/// (`target/<profile>/deps/<test>-*`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// The freshest built `libsqlvdi.so`: `cargo test` leaves the cdylib it
/// builds in `target/<profile>/deps/`, `cargo build` in `target/<profile>/`.
pub fn built_lib() -> Option<PathBuf> {
    let dir = profile_dir();
    [dir.join("deps/libsqlvdi.so"), dir.join("libsqlvdi.so")]
        .into_iter()
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
}

/// A scratch directory `name` under cargo's per-target temporary directory.
pub fn out_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

/// A directory holding a copy of the freshest `libsqlvdi.so` (built with
/// `cargo build -p vdi-standin` first if none exists), for `-L` and
/// `LD_LIBRARY_PATH`. `scratch` names the test's scratch directory; the
/// first call of a test binary decides it.
pub fn lib_dir(scratch: &str) -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if built_lib().is_none() {
            let dir = profile_dir();
            let mut c = Command::new(option_env!("CARGO").unwrap_or("cargo"));
            c.args(["build", "-p", "vdi-standin"]);
            if dir.file_name().is_some_and(|n| n == "release") {
                c.arg("--release");
            }
            if let Some(t) = dir.parent() {
                c.env("CARGO_TARGET_DIR", t);
            }
            assert!(
                c.status().expect("cargo build").success(),
                "cargo build -p vdi-standin failed"
            );
        }
        let src = built_lib().expect("libsqlvdi.so after cargo build");
        let dir = out_dir(scratch).join("lib");
        std::fs::create_dir_all(&dir).expect("lib dir");
        std::fs::copy(&src, dir.join("libsqlvdi.so")).expect("copy libsqlvdi.so");
        dir
    })
}
