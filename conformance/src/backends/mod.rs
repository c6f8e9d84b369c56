//! One file per backend.

pub mod abi;
pub mod client_tally;
pub mod com;
pub mod linux_abi;
pub mod model;
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
/// class, and no `serve` or `sqlserver`).
#[cfg(windows)]
pub const NAMES: &[&str] = &["model", "linux-abi", "com", "windows", "replay"];

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
        ("replay", Some(dir)) => Ok(Box::new(replay::ReplayBackend::open(dir)?)),
        ("replay", None) | (_, None) => by_name(name),
        (other, Some(_)) => Err(BackendError::Failed(format!(
            "--recording is the replay backend's, not the {other} backend's: use --backend replay"
        ))),
    }
}
