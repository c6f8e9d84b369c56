//! The one error type of this crate.

use std::path::PathBuf;

/// What can go wrong reading or writing reports.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The text is not JSON, or not a report of the supported schema.
    #[error("report.json is not a valid vdisim report: {0}")]
    Json(#[from] serde_json::Error),
    /// The top-level object has no `schema_version` field.
    #[error(
        "report.json has no schema_version field; it was not written by vdisim, \
         or by a version older than schema {supported}"
    )]
    MissingSchemaVersion {
        /// The version this build reads.
        supported: u32,
    },
    /// `schema_version` is not the version this build reads.
    #[error(
        "report.json has schema_version {found}, but this build of vdisim reads only \
         schema_version {supported}; read it with a vdisim release that writes schema {found}"
    )]
    UnsupportedSchemaVersion {
        /// The value found, as JSON text.
        found: String,
        /// The version this build reads.
        supported: u32,
    },
    /// A file of a report's name exists and was not written by vdisim.
    #[error(
        "{} exists and was not written by vdisim; nothing was written: choose another report directory, or move that file away",
        path.display()
    )]
    NotOurs {
        /// The file.
        path: PathBuf,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}
