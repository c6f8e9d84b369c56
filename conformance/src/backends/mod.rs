//! One file per backend.

pub mod model;

use crate::backend::{Backend, BackendError};

/// Names accepted by `--backend`.
pub const NAMES: &[&str] = &["model"];

/// Builds the backend named `name`.
pub fn by_name(name: &str) -> Result<Box<dyn Backend>, BackendError> {
    match name {
        "model" => Ok(Box::new(model::ModelBackend::default())),
        other => Err(BackendError::Failed(format!(
            "unknown backend '{other}': available here: {}",
            NAMES.join(", ")
        ))),
    }
}
