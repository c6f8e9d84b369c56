//! The in-repo VDI client programs (`conformance/tests/clients/`) for tests:
//! builds a program — the correct one or a flawed variant (`-DFLAW_<NAME>`)
//! of the C (ready-line mode) or C++ (sqlcmd mode) source — against the
//! built stand-in `libsqlvdi.so`, once per variant per test process, into
//! `target/<profile>/client-programs/<pid>/`, and helps run them (their
//! command line, media paths, device names, the statement a harness sends
//! for a ready-line program). See `clients/README.md` for what each program
//! and flaw does.
//!
//! The executables carry a RUNPATH to the library's directory, so they run
//! without `LD_LIBRARY_PATH`; one set in the environment still takes
//! precedence (RUNPATH, not RPATH).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use vdi_conformance::backends::abi::{library_path, profile_dir};

/// The flaws both sources honour (`-DFLAW_<NAME>`), one per build.
pub const FLAWS: &[&str] = &[
    "TIMEOUT_FATAL",
    "CLOSE_EARLY",
    "FLUSH_UNANSWERED",
    "SHORT_READ_SUCCESS",
    "SUCCESS_ALWAYS",
    "TIMEOUT_SECONDS",
    "NO_CLOSE",
    "TAMPER_BLOCK",
    "WAIT_AFTER_ABORT",
    "CLOSE_IS_SUCCESS",
];

/// The flaws of `vdi_client.c`'s device shapes (`VDICLIENT_MODE`,
/// `VDICLIENT_SNAPSHOT`): C only (`client_test_modes.rs` builds and grades
/// each).
pub const SHAPE_FLAWS: &[&str] = &[
    "IGNORES_POSITION",
    "NO_END_OF_FILE",
    "IGNORES_FILEMARKS",
    "SNAPSHOT_UNANSWERED",
    "VOLUME_FULL_FATAL",
];

/// Which program: each language is one start mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lang {
    /// `vdi_client.c`, COM-shaped interface, ready-line mode: prints
    /// `READY` after Create; the harness sends the statement.
    C,
    /// `vdi_client.cpp`, Linux class API, sqlcmd mode: runs `sqlcmd` from
    /// PATH itself.
    Cpp,
}

impl Lang {
    /// Both languages.
    pub const ALL: [Lang; 2] = [Lang::C, Lang::Cpp];

    /// The compiler the program is built with.
    pub fn compiler(self) -> &'static str {
        match self {
            Lang::C => "gcc",
            Lang::Cpp => "g++",
        }
    }

    /// The source file.
    pub fn source(self) -> PathBuf {
        sources_dir().join(match self {
            Lang::C => "vdi_client.c",
            Lang::Cpp => "vdi_client.cpp",
        })
    }

    fn std_flag(self) -> &'static str {
        match self {
            Lang::C => "-std=c11",
            Lang::Cpp => "-std=c++17",
        }
    }

    fn stem(self) -> &'static str {
        match self {
            Lang::C => "vdi_client",
            Lang::Cpp => "vdi_client_cpp",
        }
    }
}

/// Why a program could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// A tool is missing (no gcc / g++): the test prints `SKIPPED: <why>`.
    Unavailable(String),
    /// Anything else (unknown flaw, no stand-in library, compile error).
    Failed(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Unavailable(w) | BuildError::Failed(w) => f.write_str(w),
        }
    }
}

/// `conformance/tests/clients/`.
pub fn sources_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// `sim/standin/include` (the stand-in's `vdisim_vdi.h`).
pub fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sim/standin/include")
}

/// The directory of the stand-in `libsqlvdi.so` the programs link against
/// (found as the ABI backends find it: `$VDISIM_LIBSQLVDI`, else the one
/// built next to the test executable, built on demand).
pub fn library_dir() -> Result<PathBuf, BuildError> {
    let lib = library_path().map_err(|e| BuildError::Failed(format!("no libsqlvdi.so: {e}")))?;
    let dir = lib
        .parent()
        .ok_or_else(|| BuildError::Failed(format!("{} has no directory", lib.display())))?;
    Ok(dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()))
}

/// The executable's file name for a variant: `vdi_client`,
/// `vdi_client_cpp`, `vdi_client-close_early`, ...
pub fn program_name(lang: Lang, flaw: Option<&str>) -> String {
    match flaw {
        None => lang.stem().to_string(),
        Some(f) => format!("{}-{}", lang.stem(), f.to_ascii_lowercase()),
    }
}

/// This process's build directory, `target/<profile>/client-programs/<pid>`;
/// directories of processes that have ended are removed the first time.
pub fn cache_dir() -> Result<PathBuf, BuildError> {
    static DIR: OnceLock<Result<PathBuf, BuildError>> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = profile_dir()
            .map_err(|e| BuildError::Failed(format!("no target directory: {e}")))?
            .join("client-programs");
        if let Ok(entries) = std::fs::read_dir(&root) {
            for e in entries.flatten() {
                let stale = e
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if stale {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = root.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir)
            .map_err(|e| BuildError::Failed(format!("cannot make {}: {e}", dir.display())))?;
        Ok(dir)
    })
    .clone()
}

/// Whether `tool --version` runs.
pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

type Slot = Arc<OnceLock<Result<PathBuf, BuildError>>>;

/// Builds the program of `lang` with `flaw` (`None`: the correct one; else
/// one of [`FLAWS`], or for C of [`SHAPE_FLAWS`], case-insensitive) and returns the executable's path.
/// Each variant is built once per process (later calls return the same
/// path or the same error); different variants may build concurrently.
pub fn build(lang: Lang, flaw: Option<&str>) -> Result<PathBuf, BuildError> {
    static SLOTS: Mutex<BTreeMap<(Lang, Option<String>), Slot>> = Mutex::new(BTreeMap::new());
    let flaw = match flaw {
        None => None,
        Some(f) => {
            let up = f.to_ascii_uppercase();
            let shape = lang == Lang::C && SHAPE_FLAWS.contains(&up.as_str());
            if !FLAWS.contains(&up.as_str()) && !shape {
                return Err(BuildError::Failed(format!(
                    "unknown flaw {f:?}; the programs know {} (and the C program {})",
                    FLAWS.join(", "),
                    SHAPE_FLAWS.join(", ")
                )));
            }
            Some(up)
        }
    };
    let slot = {
        let mut g = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        g.entry((lang, flaw.clone())).or_default().clone()
    };
    slot.get_or_init(|| compile(lang, flaw.as_deref())).clone()
}

/// The compiler invocation for a variant, output to `out` (what [`build`]
/// runs).
pub fn compile_command(lang: Lang, flaw: Option<&str>, lib_dir: &Path, out: &Path) -> Command {
    let mut c = Command::new(lang.compiler());
    c.args([
        lang.std_flag(),
        "-Wall",
        "-Wextra",
        "-Werror",
        "-O1",
        "-pthread",
    ]);
    if let Some(f) = flaw {
        c.arg(format!("-DFLAW_{f}"));
    }
    c.arg("-I")
        .arg(include_dir())
        .arg(lang.source())
        .arg("-o")
        .arg(out)
        .arg("-L")
        .arg(lib_dir)
        .arg("-lsqlvdi")
        .arg(format!(
            "-Wl,--enable-new-dtags,-rpath,{}",
            lib_dir.display()
        ));
    c
}

fn compile(lang: Lang, flaw: Option<&str>) -> Result<PathBuf, BuildError> {
    if !have(lang.compiler()) {
        return Err(BuildError::Unavailable(format!(
            "{} not found: the {} client program was not built",
            lang.compiler(),
            program_name(lang, flaw)
        )));
    }
    let lib_dir = library_dir()?;
    let dir = cache_dir()?;
    let exe = dir.join(program_name(lang, flaw));
    let tmp = dir.join(format!("{}.tmp", program_name(lang, flaw)));
    let o = compile_command(lang, flaw, &lib_dir, &tmp)
        .output()
        .map_err(|e| BuildError::Failed(format!("cannot run {}: {e}", lang.compiler())))?;
    if !o.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(BuildError::Failed(format!(
            "{} {} (flaw {:?}) failed:\n{}",
            lang.compiler(),
            lang.source().display(),
            flaw,
            String::from_utf8_lossy(&o.stderr)
        )));
    }
    std::fs::rename(&tmp, &exe)
        .map_err(|e| BuildError::Failed(format!("cannot move {}: {e}", tmp.display())))?;
    Ok(exe)
}

/// BACKUP or RESTORE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Backup,
    Restore,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Backup => "backup",
            Op::Restore => "restore",
        }
    }
}

/// The programs' command line after the program:
/// `<op> <database> <device> <devices> <file> <server>`.
pub fn args(
    op: Op,
    database: &str,
    device: &str,
    devices: u32,
    file: &Path,
    server: &str,
) -> Vec<std::ffi::OsString> {
    vec![
        op.as_str().into(),
        database.into(),
        device.into(),
        devices.to_string().into(),
        file.as_os_str().to_owned(),
        server.into(),
    ]
}

/// The devices' names: `<device>`, `<device>-dev1`, ...
pub fn device_names(device: &str, devices: u32) -> Vec<String> {
    (0..devices)
        .map(|k| match k {
            0 => device.to_string(),
            k => format!("{device}-dev{k}"),
        })
        .collect()
}

/// The media files: `<file>`, `<file>.1`, ...
pub fn media_paths(file: &Path, devices: u32) -> Vec<PathBuf> {
    (0..devices)
        .map(|k| match k {
            0 => file.to_path_buf(),
            k => {
                let mut s = file.as_os_str().to_owned();
                s.push(format!(".{k}"));
                PathBuf::from(s)
            }
        })
        .collect()
}

/// The statement for a set, as the sqlcmd-mode program sends it (and a
/// harness sends it for a ready-line program).
pub fn statement(op: Op, database: &str, device: &str, devices: u32) -> String {
    let list = device_names(device, devices)
        .iter()
        .map(|n| format!("VIRTUAL_DEVICE='{}'", n.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    let db = database.replace(']', "]]");
    match op {
        Op::Backup => format!("BACKUP DATABASE [{db}] TO {list}"),
        Op::Restore => format!("RESTORE DATABASE [{db}] FROM {list}"),
    }
}
