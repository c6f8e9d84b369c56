//! Finding and loading a VDI library: `$VDISIM_LIBSQLVDI`, else the stand-in
//! built next to the running executable (built on demand, and rebuilt when
//! it is older than its sources: a stale stand-in runs an older server
//! model inside the `linux-abi` and `com` backends, and their verdicts would
//! disagree with the model's for no reason of the ABI).

use crate::backend::BackendError;
use libloading::Library;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// Environment variable naming the library to load.
pub const ENV_LIBRARY: &str = "VDISIM_LIBSQLVDI";

/// Libraries loaded in this process, by path; never unloaded (objects and
/// threads of the library may outlive a backend).
static LOADED: Mutex<BTreeMap<PathBuf, &'static Library>> = Mutex::new(BTreeMap::new());

/// Loads (once per process) the library at `path`.
pub fn load(path: &Path) -> Result<&'static Library, BackendError> {
    load_or_loader_error(path)
        .map_err(|e| BackendError::Failed(format!("cannot load {}: {e}", path.display())))
}

/// [`load`], failing with the dynamic loader's own words.
fn load_or_loader_error(path: &Path) -> Result<&'static Library, libloading::Error> {
    let mut g = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = g.get(path) {
        return Ok(l);
    }
    // SAFETY: loading a shared library runs its initialisers; the VDI
    // libraries this backend is meant for (the stand-in, Microsoft's) have
    // none with preconditions.
    let lib = unsafe { Library::new(path) }?;
    let lib: &'static Library = Box::leak(Box::new(lib));
    g.insert(path.to_path_buf(), lib);
    Ok(lib)
}

/// Checks, before any case runs, that the library the ABI backends load
/// ([`library_path`]) can be found and loaded, and returns its path. The
/// error names where the path came from, the loader's error, and the fix:
/// a `$VDISIM_LIBSQLVDI` that is not a loadable library is an input error,
/// not a failure of every case.
pub fn check_loadable() -> Result<PathBuf, String> {
    let from_env = std::env::var_os(ENV_LIBRARY).is_some_and(|p| !p.is_empty());
    let path = library_path().map_err(|e| {
        format!(
            "no VDI library to load ({e}); build the stand-in with `cargo build -p vdi-standin`, or set {ENV_LIBRARY} to a libsqlvdi.so"
        )
    })?;
    match load_or_loader_error(&path) {
        Ok(_) => Ok(path),
        Err(e) if from_env => Err(format!(
            "{ENV_LIBRARY}={}: the library cannot be loaded: {e}; point {ENV_LIBRARY} at a VDI library (libsqlvdi.so; `cargo build -p vdi-standin` builds the stand-in into target/<profile>/), or unset {ENV_LIBRARY} to use the stand-in built next to vdisim",
            path.display()
        )),
        Err(e) => Err(format!(
            "the stand-in library {} cannot be loaded: {e}; rebuild it with `cargo build -p vdi-standin`, or set {ENV_LIBRARY} to a VDI library",
            path.display()
        )),
    }
}

/// Looks up `name` in `lib` as a value of type `T` (a function pointer).
///
/// # Safety
/// `T` must be the symbol's real type.
pub unsafe fn symbol<T: Copy>(lib: &'static Library, name: &str) -> Option<T> {
    // SAFETY: per the caller, `T` is the symbol's type; the library is
    // never unloaded, so the copied pointer stays valid.
    unsafe { lib.get::<T>(name.as_bytes()).ok().map(|s| *s) }
}

/// The library to load: `$VDISIM_LIBSQLVDI`, else the stand-in built next
/// to the running executable (the newest of `target/<profile>/libsqlvdi.so`
/// and `target/<profile>/deps/libsqlvdi.so`), built with `cargo build -p
/// vdi-standin` when there is none.
pub fn library_path() -> Result<PathBuf, BackendError> {
    static FOUND: OnceLock<Result<PathBuf, BackendError>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            if let Some(p) = std::env::var_os(ENV_LIBRARY).filter(|p| !p.is_empty()) {
                return Ok(PathBuf::from(p));
            }
            let dir = profile_dir()?;
            if let Some(p) = newest(&dir) {
                return fresh(&dir, p);
            }
            build_standin(&dir)?;
            newest(&dir).ok_or_else(|| {
                BackendError::Failed(format!(
                    "no libsqlvdi.so in {} after cargo build -p vdi-standin",
                    dir.display()
                ))
            })
        })
        .clone()
}

/// `target/<profile>` of the running executable (`vdisim` lives there;
/// tests and benches in its `deps/`).
pub fn profile_dir() -> Result<PathBuf, BackendError> {
    let exe =
        std::env::current_exe().map_err(|e| BackendError::Failed(format!("current_exe: {e}")))?;
    let mut dir = exe
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| BackendError::Failed("executable has no directory".into()))?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// The workspace this executable was built from (the stand-in's sources
/// are looked for there; a `vdisim` installed elsewhere finds none and
/// checks nothing).
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// The crates the stand-in library is built from, relative to
/// [`WORKSPACE`].
const STANDIN_CRATES: &[&str] = &["spec", "sim/model", "sim/host", "sim/standin"];
/// At most this many directory entries are looked at for the sources'
/// newest time (the four crates hold about two hundred).
const SOURCE_ENTRIES_MAX: usize = 10_000;

/// The library `lib` found in `dir`, rebuilt first (`cargo build -p
/// vdi-standin`) when a source of the stand-in is newer than it: the
/// library embeds the server model, and an older one answers for an older
/// model. A rebuild that fails is an error that says so (a stale library is
/// never used silently); `$VDISIM_LIBSQLVDI` skips the check.
fn fresh(dir: &Path, lib: PathBuf) -> Result<PathBuf, BackendError> {
    let built = std::fs::metadata(&lib).and_then(|m| m.modified()).ok();
    let Some((changed, file)) = newest_source(Path::new(WORKSPACE)) else {
        return Ok(lib);
    };
    if built.is_some_and(|b| b >= changed) {
        return Ok(lib);
    }
    eprintln!(
        "vdisim: the stand-in {} is older than its source {}; rebuilding it (cargo build -p vdi-standin)",
        lib.display(),
        file.display()
    );
    build_standin(dir).map_err(|e| {
        BackendError::Failed(format!(
            "the stand-in {} is older than its source {} and could not be rebuilt ({e}); run `cargo build -p vdi-standin`, or set {ENV_LIBRARY} to a library to use it as it is",
            lib.display(),
            file.display()
        ))
    })?;
    // A source cargo does not build (a test module) may stay newer: the
    // library cargo left is the one to use.
    Ok(newest(dir).unwrap_or(lib))
}

/// The newest modification time among the stand-in's sources under `root`
/// (each crate's `Cargo.toml` and `src/` tree, `tests.rs` files aside, and
/// the workspace's `Cargo.toml` and `Cargo.lock`), with the file; `None`
/// when there are none (not a workspace).
fn newest_source(root: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut best: Option<(SystemTime, PathBuf)> = None;
    let mut consider = |p: PathBuf| {
        let t = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
        if let Some(t) = t
            && best.as_ref().is_none_or(|(b, _)| t > *b)
        {
            best = Some((t, p));
        }
    };
    let mut dirs = Vec::new();
    for f in ["Cargo.toml", "Cargo.lock"] {
        consider(root.join(f));
    }
    for c in STANDIN_CRATES {
        consider(root.join(c).join("Cargo.toml"));
        dirs.push(root.join(c).join("src"));
    }
    let mut seen = 0usize;
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > SOURCE_ENTRIES_MAX {
                return best;
            }
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs")
                && p.file_name().is_some_and(|n| n != "tests.rs")
            {
                consider(p);
            }
        }
    }
    best
}

fn newest(dir: &Path) -> Option<PathBuf> {
    [dir.join("deps/libsqlvdi.so"), dir.join("libsqlvdi.so")]
        .into_iter()
        .filter_map(|p| {
            let t = std::fs::metadata(&p).ok()?.modified().ok()?;
            Some((t, p))
        })
        .max()
        .map(|(_, p)| p)
}

fn build_standin(dir: &Path) -> Result<(), BackendError> {
    let release = dir.file_name().is_some_and(|n| n == "release");
    let target = dir.parent().map(Path::to_path_buf);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = std::process::Command::new(cargo);
    c.args(["build", "-p", "vdi-standin"]);
    if release {
        c.arg("--release");
    }
    if let Some(t) = target {
        c.env("CARGO_TARGET_DIR", t);
    }
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    let st = c
        .status()
        .map_err(|e| BackendError::Failed(format!("cargo build -p vdi-standin: {e}")))?;
    if !st.success() {
        return Err(BackendError::Failed(
            "cargo build -p vdi-standin failed".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stand-in's sources are found in this workspace, and the newest
    /// is one of them (a `.rs` file under a stand-in crate's `src/`, or a
    /// manifest).
    #[test]
    fn the_standin_sources_are_found() {
        let (_, file) = newest_source(Path::new(WORKSPACE)).expect("the workspace's sources");
        let f = file.to_string_lossy().replace('\\', "/");
        assert!(
            STANDIN_CRATES.iter().any(|c| f.contains(&format!("/{c}/")))
                || f.ends_with("Cargo.toml")
                || f.ends_with("Cargo.lock"),
            "{f}"
        );
        assert!(!f.ends_with("/tests.rs"), "{f}");
        assert!(newest_source(&std::env::temp_dir().join("no-such-workspace")).is_none());
    }
}
