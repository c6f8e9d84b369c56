//! Grading by the device shape the program chose (its CreateEx features in
//! the call log): disk-like, tape-like, snapshot, and the processes that
//! served the set. The client obligations (`vdi_model::checks::
//! obligations`) hold for every shape; this adds what only a shape shows:
//!
//! - a statement that fails where a correct client's succeeds is named by
//!   the shape's clause: a disk-like restore of the program's own media
//!   that finds bad media (`disk.positioned-io`: Writes not stored at their
//!   positions, shown by `disk-header-order = last`), a tape-like one whose
//!   positioning or reads fail (`tape.filemarks`), a snapshot the program
//!   refused (`snapshot.abort`);
//! - a VDC_Snapshot the program fetched and never completed holds the
//!   database frozen (`snapshot.freeze-time`), whatever ended the
//!   statement;
//! - a program that refused the snapshot (completed VDC_Snapshot with an
//!   error, as ERROR_OPERATION_ABORTED) made the BACKUP fail
//!   (`snapshot.abort`): it must report failure — then the case passes,
//!   the refusal being the program's to make — and reporting success is a
//!   violation even where the devices closed cleanly;
//! - notes: the shape, the processes, and the freeze time the server
//!   reported (Msg 3198).

use super::case_run::OpRun;
use super::cases::{ClientCase, DeviceShape};
use super::exec::ProgramEnd;
use std::collections::BTreeSet;
use vdi_model::calllog::{Api, CallRecord};
use vdi_model::checks::Violation;
use vdi_model::outcome::FailReason;
use vdi_spec::{Features, id};

/// What the call log shows of the program's set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub device: DeviceShape,
    /// VDF_SnapshotPrepare was set.
    pub snapshot: bool,
    /// Processes that called the library (a primary and its secondaries).
    pub processes: usize,
}

/// The shape of the first set the log shows created, if any.
pub fn shape_of(calls: &[CallRecord]) -> Option<Shape> {
    let cfg = calls
        .iter()
        .filter(|c| matches!(c.method, Api::Create | Api::CreateEx))
        .find_map(|c| c.args.config.as_ref())?;
    let f = cfg.cfg.features;
    let pids: BTreeSet<u32> = calls.iter().map(|c| c.pid).collect();
    Some(Shape {
        device: DeviceShape::from_features(f),
        snapshot: Features(f).contains(Features::SnapshotPrepare),
        processes: pids.len(),
    })
}

/// The clauses a passing case of this shape checked besides the
/// obligations (the report's coverage).
pub fn clauses(shape: Option<Shape>, case: &ClientCase) -> Vec<vdi_spec::ClauseId> {
    let Some(s) = shape else { return Vec::new() };
    let restore = case.op == super::cases::Op::Restore;
    let mut v = Vec::new();
    match s.device {
        DeviceShape::Disk => {
            v.push(id::DISK_POSITIONED_IO);
            if case.disk_header_last {
                v.push(id::DISK_HEADER_ORDER);
            }
            if case.stale_media {
                v.push(id::FLUSH_DISK_SETS_EOF);
            }
        }
        DeviceShape::Tape => {
            v.extend([id::TAPE_SEQUENCE, id::TAPE_FILEMARKS, id::TAPE_POSITION]);
            if case.media_name || case.wrong_media_name {
                v.push(id::TAPE_MEDIA_NAME);
            }
            if case.no_rewind {
                v.push(id::TAPE_END_REWIND);
            }
            if case.skip_blocks && restore {
                v.push(id::TAPE_SKIP_BLOCKS);
            }
        }
        DeviceShape::Removable if case.volume_bytes.is_some() => v.push(id::MEDIA_NEXT_VOLUME),
        _ => {}
    }
    if s.snapshot && case.snapshot {
        v.extend([
            id::SNAPSHOT_SEQUENCE,
            id::SNAPSHOT_FREEZE_TIME,
            id::SNAPSHOT_ABORT,
        ]);
        if restore {
            v.push(id::SNAPSHOT_MOUNT);
        }
    }
    v
}

/// The freeze time the statement's Msg 3198 reports, in ms.
pub fn freeze_ms(run: &OpRun) -> Option<u64> {
    let o = run.outcomes.last()?;
    let m = o.outcome.messages.iter().find(|m| m.number == 3198)?;
    let tail = m.text.split("Frozen for ").nth(1)?;
    tail.split(' ').next()?.parse().ok()
}

/// Notes on the shape, the processes and the freeze time.
pub fn notes(
    shape: Option<Shape>,
    case: &ClientCase,
    run: &OpRun,
    calls: &[CallRecord],
    out: &mut Vec<String>,
) {
    let Some(s) = shape else { return };
    if s.device != DeviceShape::Pipe {
        out.push(format!("device shape {}", s.device.name()));
    }
    if s.snapshot {
        out.push("snapshot client (VDF_SnapshotPrepare)".into());
    }
    if s.processes > 1 {
        out.push(format!(
            "{} processes served the set (their call logs graded together)",
            s.processes
        ));
    }
    if let Some((_, code)) = refused_snapshot(calls) {
        out.push(format!(
            "the program refused the snapshot (VDC_Snapshot completed with {code}): the BACKUP failed and the program reported failure (clause snapshot.abort)"
        ));
    }
    if case.snapshot
        && let Some(ms) = freeze_ms(run)
    {
        // Msg 3198 counts the server's (scaled) clock: the program's own
        // time is that divided by the case's time scale.
        let scale = u64::from(run.time_scale.max(1));
        out.push(format!(
            "the database was frozen {ms} ms of the server's clock, about {} ms of the program's at time scale {scale} (Msg 3198, clause snapshot.freeze-time)",
            ms / scale
        ));
    }
}

/// The shape's own findings, besides `already` (the obligations').
pub fn findings(
    shape: Option<Shape>,
    case: &ClientCase,
    run: &OpRun,
    calls: &[CallRecord],
    already: &[Violation],
) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(s) = shape else { return out };
    let killed = matches!(run.record.end, ProgramEnd::KilledByFault);
    if s.snapshot && case.expects_success() && !killed {
        out.extend(unanswered_snapshot(calls, run));
    }
    if s.device == DeviceShape::Disk
        && case.stale_media
        && let Some(v) = file_end(run, calls)
    {
        out.push(v);
    }
    if let Some(refusal) = refused_snapshot(calls) {
        if run.record.end == ProgramEnd::Exited(0) {
            out.push(Violation {
                clause: id::SNAPSHOT_ABORT.to_string(),
                what: format!(
                    "the program refused the snapshot (it completed VDC_Snapshot with {}), which fails the BACKUP, and still exited 0 (success)",
                    refusal.1
                ),
                at: Some(refusal.0),
            });
        }
    } else if let Some(v) = failed_statement(s, case, run, killed) {
        out.push(v);
    }
    out.retain(|v| !already.iter().any(|a| a.clause == v.clause));
    out
}

/// After a disk-like backup over a longer file that succeeded: the file
/// must end where the device's Writes ended (clause `flush.disk-sets-eof`).
fn file_end(run: &OpRun, calls: &[CallRecord]) -> Option<Violation> {
    if run.op != super::cases::Op::Backup || !run.outcomes.last()?.outcome.succeeded() {
        return None;
    }
    let size = run.media_bytes?;
    let end = calls
        .iter()
        .filter(|c| c.method == Api::CompleteCommand && c.args.device == Some(0))
        .filter_map(|c| {
            let (k, done) = (c.args.command.as_ref()?, c.args.completion.as_ref()?);
            (k.name == "VDC_Write").then(|| k.position.saturating_add(done.bytes))
        })
        .max()?;
    (size > end).then(|| Violation {
        clause: id::FLUSH_DISK_SETS_EOF.to_string(),
        what: format!(
            "device 0's file holds {size} bytes after the backup, whose Writes ended at byte {end}: what the file held before lies beyond the backup (on a disk-like device a Flush sets end-of-file at the last written position)"
        ),
        at: None,
    })
}

/// The program's CompleteCommand of VDC_Snapshot with an error, if any:
/// (its call-log seq, the code's name).
pub fn refused_snapshot(calls: &[CallRecord]) -> Option<(u64, String)> {
    calls.iter().find_map(|c| {
        let (Api::CompleteCommand, Some(k), Some(done)) =
            (c.method, &c.args.command, &c.args.completion)
        else {
            return None;
        };
        (k.name == "VDC_Snapshot" && done.code != 0).then(|| {
            (
                c.seq,
                done.name.clone().unwrap_or_else(|| done.code.to_string()),
            )
        })
    })
}

/// A VDC_Snapshot fetched and never completed (clause
/// `snapshot.freeze-time`).
fn unanswered_snapshot(calls: &[CallRecord], run: &OpRun) -> Option<Violation> {
    let done: BTreeSet<(u32, u64)> = calls
        .iter()
        .filter(|c| c.method == Api::CompleteCommand)
        .filter_map(|c| c.args.command.as_ref().map(|k| (c.pid, k.id)))
        .collect();
    let (call, cmd) = calls.iter().find_map(|c| {
        let k = c.fetched()?;
        (k.name == "VDC_Snapshot" && !done.contains(&(c.pid, k.id))).then_some((c, k))
    })?;
    let frozen = match freeze_ms(run) {
        Some(ms) => format!(" ({ms} ms, Msg 3198)"),
        None => String::new(),
    };
    Some(Violation {
        clause: id::SNAPSHOT_FREEZE_TIME.to_string(),
        what: format!(
            "VDC_Snapshot (id {}) was fetched and never completed: the database's writes stayed suspended until the statement ended{frozen}; complete it once the snapshot is taken (ERROR_SUCCESS) or refused (ERROR_OPERATION_ABORTED)",
            cmd.id
        ),
        at: Some(call.seq),
    })
}

/// A statement that failed where a correct client's succeeds, named by the
/// shape's clause.
fn failed_statement(s: Shape, case: &ClientCase, run: &OpRun, killed: bool) -> Option<Violation> {
    if !case.expects_success() || killed {
        return None;
    }
    let last = run.outcomes.last()?;
    if last.outcome.succeeded() {
        return None;
    }
    let msgs: Vec<String> = last
        .outcome
        .messages
        .iter()
        .map(|m| format!("Msg {}: {}", m.number, m.text))
        .collect();
    let msgs = msgs.join(" / ");
    let reason = last.outcome.reason;
    let (clause, what) = match (s.device, reason) {
        (DeviceShape::Disk, Some(FailReason::BadMedia)) => (
            id::DISK_POSITIONED_IO,
            format!(
                "the restore of the program's own disk-like media failed ({msgs}){}: a disk-like client stores each VDC_Write at its position and answers each VDC_Read from its position, not from a running cursor",
                if case.disk_header_last {
                    " with the media header written last at position 0 (disk-header-order = last)"
                } else {
                    ""
                }
            ),
        ),
        (
            DeviceShape::Tape,
            Some(FailReason::BadMedia | FailReason::DeviceError | FailReason::ShortTransfer),
        ) => (
            id::TAPE_FILEMARKS,
            format!(
                "the statement failed on the program's tape-like device ({msgs}): a tape-like client writes a filemark for each VDC_WriteMark, skips them for VDC_SkipMarks and stops a VDC_Read at one with ERROR_FILEMARK_DETECTED"
            ),
        ),
        (
            DeviceShape::Removable,
            Some(FailReason::BadMedia | FailReason::DeviceError | FailReason::ShortTransfer),
        ) => (
            id::MEDIA_NEXT_VOLUME,
            format!(
                "the statement failed on the program's removable device ({msgs}){}: a removable client answers a Write that fills its volume with ERROR_END_OF_MEDIA and the bytes it kept, starts the next volume on VDC_Load, and on restore stops a Read at a volume's end with ERROR_HANDLE_EOF and opens the next on VDC_Load",
                match case.volume_bytes {
                    Some(b) =>
                        format!(" with volumes of {b} bytes (the program's file-size limit)"),
                    None => String::new(),
                }
            ),
        ),
        _ if case.snapshot && reason == Some(FailReason::ClientAbort) => (
            id::SNAPSHOT_ABORT,
            format!("the program refused the snapshot and the statement failed ({msgs})"),
        ),
        _ => return None,
    };
    Some(Violation {
        clause: clause.to_string(),
        what,
        at: None,
    })
}

/// Replays a tape-like program's answers through the model's tape
/// (`vdi_model::tape`): the backup's Writes and WriteMarks build each
/// device's tape as the program acknowledged them, and every Read,
/// SkipMarks, SkipBlocks, GetPosition and SetPosition answer of the backup
/// and the restore that follows is compared with what that tape answers.
/// The first answer that differs is a violation of `tape.filemarks` or
/// `tape.position`, pointing at the call. Answers with an error of the
/// program's own media (a read or write fault) are not judged, and nothing
/// after them on that device. Returns the index of the run with the call.
pub fn tape_replay(runs: &[&[CallRecord]]) -> Option<(usize, Violation)> {
    use std::collections::BTreeMap;
    use vdi_model::content::Content;
    use vdi_model::tape::{Head, Tape};
    let mut tapes: BTreeMap<u16, (Content, Vec<u64>, Head, bool)> = BTreeMap::new();
    for (run, calls) in runs.iter().enumerate() {
        let block = block_size(calls);
        for t in tapes.values_mut() {
            t.2 = Head::default();
        }
        for c in calls.iter().filter(|c| c.method == Api::CompleteCommand) {
            let (Some(dev), Some(cmd), Some(done)) =
                (c.args.device, &c.args.command, &c.args.completion)
            else {
                continue;
            };
            let (data, marks, head, broken) = tapes.entry(dev).or_default();
            if *broken {
                continue;
            }
            let mut t = Tape::new(data, marks, head);
            let at = t.position(block);
            let code = vdi_spec::Win32(done.code);
            let own_fault = [
                vdi_spec::Win32::ERROR_READ_FAULT,
                vdi_spec::Win32::ERROR_WRITE_FAULT,
                vdi_spec::Win32::ERROR_DISK_FULL,
                vdi_spec::Win32::ERROR_END_OF_MEDIA,
            ]
            .contains(&code);
            if own_fault {
                *broken = true;
                continue;
            }
            let (want, clause) = match cmd.name.as_str() {
                "VDC_Write" => {
                    t.write(&Content::stream(1, 0, done.bytes));
                    continue;
                }
                "VDC_WriteMark" if code == vdi_spec::Win32::ERROR_SUCCESS => {
                    t.write_mark();
                    continue;
                }
                "VDC_Rewind" | "VDC_Load" => {
                    t.rewind();
                    continue;
                }
                "VDC_Read" => {
                    let (w, got) = t.read(u64::from(cmd.size));
                    if (w, got.len()) == (code, done.bytes) {
                        continue;
                    }
                    (format!("{w} with {} bytes", got.len()), id::TAPE_FILEMARKS)
                }
                "VDC_SkipMarks" | "VDC_SkipBlocks" => {
                    let w = if cmd.name == "VDC_SkipMarks" {
                        t.skip_marks(cmd.size)
                    } else {
                        t.skip_blocks(cmd.size, block)
                    };
                    if w == code {
                        continue;
                    }
                    (w.to_string(), id::TAPE_FILEMARKS)
                }
                "VDC_GetPosition" => {
                    let p = t.position(block);
                    if p == done.position {
                        continue;
                    }
                    (format!("position {p}"), id::TAPE_POSITION)
                }
                "VDC_SetPosition" => {
                    let p = t.set_position(cmd.position, block);
                    if p == done.position {
                        continue;
                    }
                    (format!("position {p}"), id::TAPE_POSITION)
                }
                _ => continue,
            };
            let got = match cmd.name.as_str() {
                "VDC_GetPosition" | "VDC_SetPosition" => format!("position {}", done.position),
                "VDC_Read" => format!("{code} with {} bytes", done.bytes),
                _ => code.to_string(),
            };
            return Some((
                run,
                Violation {
                    clause: clause.to_string(),
                    what: format!(
                        "device {dev}: {} (size {}) at block address {at}: the tape the program's own answers wrote (its Writes and WriteMarks, {} filemark(s)) answers {want}; the program answered {got}",
                        cmd.name,
                        cmd.size,
                        t.marks.len()
                    ),
                    at: Some(c.seq),
                },
            ));
        }
    }
    None
}

/// The BLOCKSIZE the server configured (tape block addresses count it).
fn block_size(calls: &[CallRecord]) -> u32 {
    calls
        .iter()
        .filter(|c| c.method == Api::GetConfiguration)
        .filter_map(|c| c.args.config.as_ref())
        .map(|v| v.cfg.block_size)
        .rfind(|b| *b > 0)
        .unwrap_or(512)
}
