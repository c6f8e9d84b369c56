//! One file per backend.

pub mod abi;
pub mod client_tally;
pub mod com;
pub mod linux_abi;
pub mod model;
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
pub const NAMES: &[&str] = &["model", "linux-abi", "com", "serve", "sqlserver"];
/// Names accepted by `--backend` (Windows: `windows`, the registered COM
/// class, and no `serve` or `sqlserver`).
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
        other => Err(BackendError::Failed(format!(
            "unknown backend '{other}': available here: {}",
            NAMES.join(", ")
        ))),
    }
}
