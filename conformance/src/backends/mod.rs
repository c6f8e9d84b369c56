//! One file per backend.

pub mod abi;
pub mod builtin_abi;
pub mod client_tally;
pub mod com;
pub mod linux_abi;
pub mod model;
#[cfg(unix)]
pub mod replay;
#[cfg(unix)]
pub mod serve;
#[cfg(unix)]
pub mod sqlserver;
pub mod tds_control;
#[cfg(windows)]
pub mod windows;

use crate::backend::{Backend, BackendError};

/// Names accepted by `--backend`.
#[cfg(not(windows))]
pub const NAMES: &[&str] = &["model", "linux-abi", "com", "serve", "sqlserver", "replay"];
/// Names accepted by `--backend` (Windows: `windows`, the registered COM
/// class, and no `serve`, `sqlserver` or `replay`).
#[cfg(windows)]
pub const NAMES: &[&str] = &["model", "linux-abi", "com", "windows"];

/// Builds the backend named `name`.
pub fn by_name(name: &str) -> Result<Box<dyn Backend>, BackendError> {
    match name {
        "model" => Ok(Box::new(model::ModelBackend::default())),
        "linux-abi" => Ok(Box::new(linux_abi::LinuxAbiBackend::new())),
        "com" => Ok(Box::new(com::ComBackend::new())),
        #[cfg(unix)]
        "serve" => Ok(Box::new(serve::ServeBackend::new())),
        #[cfg(unix)]
        "sqlserver" => Ok(Box::new(sqlserver::SqlServerBackend::configured()?)),
        #[cfg(windows)]
        "windows" => Ok(Box::new(windows::WindowsBackend::configured()?)),
        "replay" => Err(BackendError::Failed(
            "the replay backend grades by recordings: give --recording DIR".into(),
        )),
        other => Err(BackendError::Failed(format!(
            "unknown backend '{other}': available here: {}",
            NAMES.join(", ")
        ))),
    }
}

/// Builds the backend named `name`, the replay backend reading the
/// recordings in `recording` (`--recording DIR`, which only it takes).
pub fn configured(
    name: &str,
    recording: Option<&std::path::Path>,
) -> Result<Box<dyn Backend>, BackendError> {
    match (name, recording) {
        #[cfg(unix)]
        ("replay", Some(dir)) => Ok(Box::new(replay::ReplayBackend::open(dir)?)),
        // Recordings are parsed with `vdisim judge`'s reader (Unix only).
        #[cfg(not(unix))]
        ("replay", Some(_)) => Err(BackendError::Failed(
            "the replay backend is not built for Windows (it reads recordings with vdisim judge's parser): run it on Linux".into(),
        )),
        ("replay", None) | (_, None) => by_name(name),
        (other, Some(_)) => Err(BackendError::Failed(format!(
            "--recording is the replay backend's, not the {other} backend's: use --backend replay"
        ))),
    }
}
