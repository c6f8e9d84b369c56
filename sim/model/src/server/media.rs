//! RESTORE's media headers (clause `media.header`): the first read on each
//! device holds that family's header; when every device's is in, the
//! headers must describe one media set, all of it, each family once, of a
//! backup this RESTORE can use. Then the backup to restore is known and the
//! data reads begin.

use super::*;
use crate::media::{BackupType, HEADER_BYTES, MediaHeader};
use std::sync::Arc;
use vdi_spec::id;

impl ServerHalf {
    /// Checks device `d`'s header read: one whole media header (gathered
    /// over short reads when the profile reissues them), or the statement
    /// fails (an empty device with Msg 3254, anything else with Msg 3241).
    pub(super) fn verify_header(
        &mut self,
        now: u64,
        d: usize,
        slot: &ReadSlot,
        (code, bytes, data): (Win32, u64, &Content),
        out: &mut Vec<ToClient>,
        tr: &mut Trace,
    ) {
        let name = self.devs[d].name.clone();
        let fits = bytes <= u64::from(slot.size) && data.len() == bytes;
        if !fits {
            super::completion::trace_bad_count(now, d, slot, bytes, data, tr);
        }
        let dev = &mut self.devs[d];
        if fits {
            dev.header_buf.append(data);
            dev.done += bytes;
            dev.bytes += bytes;
            self.outcome.bytes += bytes;
        }
        let dev = &self.devs[d];
        // The whole region, or its identifying part (clause tape.skip-blocks).
        let whole = fits && dev.done == self.header_read_bytes();
        if fits && !whole && !is_eof(code) && bytes < u64::from(slot.size) && bytes > 0 {
            self.short_read(now, d, slot, bytes, code, out, tr);
            return;
        }
        let header = whole
            .then(|| super::tape::header_in(&dev.header_buf, dev.done))
            .flatten();
        let Some(h) = header else {
            let empty = dev.done == 0 && bytes == 0 && is_eof(code);
            ev!(
                tr,
                now,
                "MediaHeader",
                Some(id::MEDIA_HEADER),
                "dev={d} id={} bytes={bytes} {code}: {}",
                slot.id.0,
                if empty {
                    "the device is empty"
                } else {
                    "not a media header"
                }
            );
            let (reason, msg) = if empty {
                (FailReason::NoBackup, messages::empty_volume(&name))
            } else {
                (FailReason::BadMedia, messages::bad_family(&name))
            };
            self.fail(now, None, reason, msg, code, out, tr);
            return;
        };
        ev!(
            tr,
            now,
            "MediaHeader",
            Some(id::MEDIA_HEADER),
            "dev={d} id={} set={} database=\"{}\" number={} family {} of {} type={:?} bytes={}",
            slot.id.0,
            h.set_id,
            h.database,
            h.number,
            h.family,
            h.families,
            h.backup_type,
            h.family_bytes
        );
        let dev = &mut self.devs[d];
        dev.header_buf = Content::Empty;
        dev.header = Some(h);
        let waiting = self.devs.iter().any(|v| v.target > 0 && v.header.is_none());
        if !waiting {
            self.media_found(now, out, tr);
        }
    }

    /// Every header is in: checks them as one media set and, when they are,
    /// takes the backup they describe and sizes each device's reads.
    fn media_found(&mut self, now: u64, out: &mut Vec<ToClient>, tr: &mut Trace) {
        let headers: Vec<(usize, Arc<MediaHeader>)> = self
            .devs
            .iter()
            .enumerate()
            .filter_map(|(k, v)| v.header.clone().map(|h| (k, h)))
            .collect();
        if let Some((d, reason, msg)) = self.media_problem(&headers) {
            ev!(
                tr,
                now,
                "MediaRefused",
                Some(id::MEDIA_HEADER),
                "dev={d}: {}",
                msg.text
            );
            let clause = (self.devs[d].header.as_ref().map(|h| h.block_size))
                .filter(|b| *b != self.block)
                .map(|_| id::RESTORE_READ_SIZES);
            if let Some(c) = clause {
                ev!(
                    tr,
                    now,
                    "BlockSizeMismatch",
                    Some(c),
                    "restore BLOCKSIZE={}",
                    self.block
                );
            }
            self.fail(now, None, reason, msg, Win32::ERROR_SUCCESS, out, tr);
            return;
        }
        let hs: Vec<Arc<MediaHeader>> = headers.iter().map(|(_, h)| h.clone()).collect();
        let Some(rec) = BackupRecord::from_headers(&hs) else {
            // Headers `media_problem` let through but that describe no
            // backup: refused like any malformed family, never waited on.
            let name = headers
                .first()
                .and_then(|(d, _)| self.devs.get(*d))
                .map(|v| v.name.clone())
                .unwrap_or_default();
            let m = messages::bad_family(&name);
            self.fail(
                now,
                None,
                FailReason::BadMedia,
                m,
                Win32::ERROR_SUCCESS,
                out,
                tr,
            );
            return;
        };
        let metadata = self.kind.is_metadata_only();
        let b = u64::from(self.block.max(1));
        let prefix = self.metadata_bytes.div_ceil(b).saturating_mul(b);
        for v in &mut self.devs {
            let Some(h) = v.header.clone() else {
                continue;
            };
            v.origin = h.origin;
            v.len = HEADER_BYTES + h.family_bytes;
            v.target = if metadata {
                prefix.clamp(HEADER_BYTES, v.len)
            } else {
                v.len
            };
            if v.done >= v.target && v.reads.is_empty() {
                v.ended = true;
            }
        }
        ev!(
            tr,
            now,
            "MediaFound",
            Some(id::MEDIA_HEADER),
            "backup set {} of database \"{}\" (number {} on server \"{}\"): {} families, {} data bytes",
            rec.meta.set_id,
            rec.database,
            rec.number,
            rec.meta.server,
            rec.families.len(),
            rec.total_bytes()
        );
        self.outcome.media = Some(Box::new(rec.clone()));
        self.record = Some(rec);
        // Every device waited for the others' headers: all read on now.
        self.pump(now, out, tr);
    }

    /// What is wrong with the headers `headers` (device, header) as this
    /// RESTORE's media: the device it shows on, the reason and the message.
    fn media_problem(
        &self,
        headers: &[(usize, Arc<MediaHeader>)],
    ) -> Option<(usize, FailReason, SqlMessage)> {
        let (d0, first) = headers.first()?;
        let name = |d: usize| self.devs[d].name.clone();
        let bad = |d: usize| Some((d, FailReason::BadMedia, messages::bad_family(&name(d))));
        let mut seen: Vec<Option<usize>> = vec![None; usize::from(first.families)];
        for (d, h) in headers {
            if h.set_id != first.set_id || h.families != first.families {
                return bad(*d);
            }
            if h.block_size != self.block {
                return bad(*d);
            }
            let smallest = self.read_sizes_smallest();
            let too_big = h.family_bytes > vdi_spec::bounds::DATA_BYTES_MAX
                || h.family_bytes / u64::from(smallest.max(1))
                    > vdi_spec::bounds::DATA_COMMANDS_MAX;
            if too_big {
                return bad(*d);
            }
            let slot = usize::from(h.family).checked_sub(1)?;
            match seen.get(slot).copied().flatten() {
                Some(other) => {
                    let m = messages::duplicate_family(&name(*d), h.family, &name(other));
                    return Some((*d, FailReason::BadMedia, m));
                }
                None => seen[slot] = Some(*d),
            }
        }
        let (families, devices) = (usize::from(first.families), self.devs.len());
        if !self.kind.is_metadata_only() {
            if families > devices {
                let m = messages::missing_families(families, devices);
                return Some((*d0, FailReason::BadMedia, m));
            }
            if families < devices {
                let m = messages::family_count(&name(*d0), families, devices);
                return Some((*d0, FailReason::BadMedia, m));
            }
        }
        if let Some(want) = &self.media_name
            && first.media_name != *want
        {
            let m = messages::media_name(&name(*d0), want, &first.media_name);
            return Some((*d0, FailReason::BadMedia, m));
        }
        let log = first.backup_type == BackupType::Log;
        let wants_log = self.kind == StatementKind::RestoreLog;
        let wants_db = self.kind == StatementKind::RestoreDatabase;
        if (wants_log && !log) || (wants_db && log) {
            let made = if log { "BACKUP LOG" } else { "BACKUP DATABASE" };
            let m = messages::wrong_backup_type(made, self.kind.verb());
            return Some((*d0, FailReason::BadMedia, m));
        }
        None
    }

    /// The smallest read this RESTORE asks for.
    fn read_sizes_smallest(&self) -> u32 {
        let o = vdi_spec::TransferOptions {
            block_size: self.block,
            max_transfer_size: self.mts,
            buffer_count: None,
        };
        self.read_sizes.smallest(&o)
    }
}
