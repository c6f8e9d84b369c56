//! Invariant: a BACKUP that reports success delivered every byte — the
//! client's media hold exactly the families the server recorded, each its
//! media header and its data (clause
//! `restore.byte-identical`: what a restore of them reads back is what was
//! backed up). Checked when the backup ends, before anything (a truncation
//! fault) touches the media.

use super::Violation;
use crate::content::Content;
use crate::statement::BackupRecord;
use vdi_spec::id;

/// The violations of a backup recorded as `rec` whose client media are
/// `media`, when the backup `succeeded`.
pub fn backup_delivered(succeeded: bool, media: &[Content], rec: &BackupRecord) -> Vec<Violation> {
    if !succeeded {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (k, fam) in rec.families.iter().enumerate() {
        let got = media.get(k).cloned().unwrap_or_default();
        if got != rec.family_media(k) {
            out.push(Violation {
                clause: id::RESTORE_BYTE_IDENTICAL.into(),
                what: format!(
                    "backup succeeded but device {k} holds {} bytes that are not the family's {} bytes (its media header and data)",
                    got.len(),
                    fam.media_len()
                ),
                at: None,
            });
        }
    }
    out
}
