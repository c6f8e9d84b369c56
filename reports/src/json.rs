//! `report.json`: the report as pretty-printed JSON, and back.
//!
//! Keys appear in the order the schema structs declare their fields (free-form
//! `profile_params` objects in sorted key order), every field is written, even
//! when `null` or empty, and the text ends with a newline, so two runs with the
//! same results produce byte-identical files.

use crate::error::ReportError;
use crate::schema::{RunReport, SCHEMA_VERSION};
use serde::Deserialize;

/// Renders `report` as pretty-printed JSON ending in a newline.
pub fn render(report: &RunReport) -> String {
    match try_render(report) {
        Ok(s) => s,
        // Serializing these types cannot fail (no maps with non-string keys,
        // no fallible Serialize impls); should it ever, say so in a form
        // `parse` rejects rather than panic.
        Err(e) => format!(
            "{{\n  \"error\": {}\n}}\n",
            serde_json::Value::String(format!("cannot serialize the report: {e}"))
        ),
    }
}

/// Renders `report` as pretty-printed JSON ending in a newline, reporting a
/// serialization error instead of hiding it.
pub fn try_render(report: &RunReport) -> Result<String, ReportError> {
    let mut s = serde_json::to_string_pretty(report)?;
    s.push('\n');
    Ok(s)
}

/// Just enough of a report to check its version before reading the rest.
#[derive(Deserialize)]
struct VersionProbe {
    schema_version: Option<serde_json::Value>,
}

/// Parses `report.json` text.
///
/// Checks `schema_version` first, so a report from another schema version
/// gets [`ReportError::UnsupportedSchemaVersion`] (or
/// [`ReportError::MissingSchemaVersion`]) rather than a confusing complaint
/// about some field. Unknown fields are ignored, as the schema's
/// compatibility rule allows.
pub fn parse(text: &str) -> Result<RunReport, ReportError> {
    let probe: VersionProbe = serde_json::from_str(text)?;
    match probe.schema_version {
        None | Some(serde_json::Value::Null) => {
            return Err(ReportError::MissingSchemaVersion {
                supported: SCHEMA_VERSION,
            });
        }
        Some(v) if v.as_u64() == Some(u64::from(SCHEMA_VERSION)) => {}
        Some(v) => {
            return Err(ReportError::UnsupportedSchemaVersion {
                found: v.to_string(),
                supported: SCHEMA_VERSION,
            });
        }
    }
    Ok(serde_json::from_str(text)?)
}
