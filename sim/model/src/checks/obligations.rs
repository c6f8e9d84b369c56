//! Client obligations: what a backup program must do, graded from the call
//! log its library wrote ([`crate::calllog`]) and what the runner knows
//! besides ([`Context`]). `vdisim client-test` calls [`check`].
//!
//! Each obligation is a catalog clause; a finding's `what` says, for the
//! program's author, which call on which set, device and command broke it
//! and what the program should have done. [`check`] lists the worst kind
//! first: reporting success for a statement that failed.
//!
//! | clause | the program must |
//! |---|---|
//! | `term.outcome-decides` | exit 0 exactly when every statement succeeded |
//! | `get-command.timeout` (+ `timeout.milliseconds`) | keep serving a device after VD_E_TIMEOUT while the statement runs |
//! | `get-configuration.timeout` | neither give up on a running statement nor keep waiting after it failed |
//! | `close.wait-for-close` | Close only after VD_E_CLOSE on every opened device, unless the set aborted |
//! | `flush.several` | not finish at a mid-stream VDC_Flush |
//! | `complete.negotiation` | with VDF_CompleteEnabled wait for VDC_Complete; without it, not expect it |
//! | `abort.only-close` | after VD_E_ABORT, stop waiting and Close |
//! | `command.unanswered` / `command.not-supported` | complete every command it fetched, unsupported ones with ERROR_NOT_SUPPORTED |
//! | `flush.restore-not-supported-misuse` | never answer VDC_Flush with ERROR_NOT_SUPPORTED |
//! | `complete-command.read-only-block` | never write into a command block |
//! | `command.short-transfer` | not report ERROR_SUCCESS for fewer bytes than asked |
//! | `close.exactly-once` | Close each set once, then leave it and its devices alone |
//! | `term.exits` | exit (not hang, not crash) once the statement ended |
//!
//! # When the statement was still running
//!
//! Some obligations hold only while the statement runs. With the
//! statement's end on the log's clock ([`StatementEnd::ended_ms`]) that is
//! a comparison of times; without it, a statement counts as running when
//! it had not ended at all, or when it failed because of the client (the
//! client aborted it, or the watchdog fired because the client stopped
//! answering); in any other case the obligation is not judged (no finding
//! on a guess).

mod context;
mod sets;

pub use context::{Context, ProgramEnd, StatementEnd};

use super::Violation;
use crate::calllog::{Api, CallRecord, CommandView};
use crate::outcome::FailReason;
use context::end_words;
use sets::{
    Dev, SetView, command_words, messages, running_at, sets_of, statement_verb, stop_words,
};
use std::collections::BTreeMap;
use vdi_spec::id;
use vdi_spec::{ClauseId, CommandCode, Features, Hresult, Win32};

/// The violations of the client obligations in `log` (the library's call
/// records, any order) given what the runner knows (`cx`). Reporting
/// success for a statement that failed comes first.
pub fn check(log: &[CallRecord], cx: &Context) -> Vec<Violation> {
    if let ProgramEnd::Exited { code } = cx.end
        && cx.unimplemented_code == Some(code)
    {
        return Vec::new();
    }
    let sets = sets_of(log, &cx.statements);
    let mut out = Vec::new();
    belief(&sets, cx, &mut out);
    for s in &sets {
        timeouts(s, cx, &mut out);
        configuration_wait(s, cx, &mut out);
        close_wait(s, &mut out);
        flushes(s, cx, &mut out);
        after_abort(s, cx, &mut out);
        unanswered(s, cx, &mut out);
        completions(s, &mut out);
        close_once(s, cx, &mut out);
    }
    exits(log, cx, &mut out);
    out
}

fn violation(clause: ClauseId, what: String) -> Violation {
    Violation::new(clause, what)
}

// ----- the obligations --------------------------------------------------------------------

/// `term.outcome-decides`: exit 0 exactly when every statement succeeded
/// (and `complete.negotiation`, when a program that asked for VDC_Complete
/// and did not get it reports a successful backup as failed).
fn belief(sets: &[SetView<'_>], cx: &Context, out: &mut Vec<Violation>) {
    let ProgramEnd::Exited { code } = cx.end else {
        return;
    };
    if cx.statements.is_empty() {
        return;
    }
    if code == 0 {
        for st in &cx.statements {
            let verb = statement_verb(Some(st), None);
            let what = if !st.outcome.status.is_final() {
                format!(
                    "The program reported success (exit code 0) for a {verb} that had not finished: it was still running when the program exited. Only the statement's result says whether it succeeded: wait for it, and report success only if it succeeded."
                )
            } else if !st.outcome.succeeded() {
                format!(
                    "The program reported success (exit code 0) for a {verb} that failed ({}). A clean VD_E_CLOSE on every device does not mean the {verb} succeeded: only the statement's result does — check it before reporting success.",
                    messages(&st.outcome)
                )
            } else {
                continue;
            };
            out.push(violation(id::TERM_OUTCOME_DECIDES, what));
        }
        return;
    }
    if !cx.statements.iter().all(|s| s.outcome.succeeded()) {
        return;
    }
    let verbs: Vec<&str> = cx
        .statements
        .iter()
        .map(|s| statement_verb(Some(s), None))
        .collect();
    let last = cx.statements.last().map(|s| messages(&s.outcome));
    out.push(violation(
        id::TERM_OUTCOME_DECIDES,
        format!(
            "The program reported failure (exit code {code}) for a {} that succeeded ({}). The statement's result decides: when it succeeded the program must report success.",
            verbs.join(" and a "),
            last.unwrap_or_default()
        ),
    ));
    for s in sets {
        let asked = s.requested.contains(Features::RequestComplete);
        if asked
            && s.granted
                .is_some_and(|f| !f.contains(Features::CompleteEnabled))
        {
            out.push(violation(
                id::COMPLETE_NEGOTIATION,
                format!(
                    "{}: the program asked for VDC_Complete (VDF_RequestComplete) but GetConfiguration returned no VDF_CompleteEnabled, so the server ended the {} with VDC_Flush and VD_E_CLOSE and never sent VDC_Complete — and the program reported failure for it. Check VDF_CompleteEnabled after GetConfiguration; without it, the last VDC_Flush is the end of the backup.",
                    s.label(),
                    s.verb()
                ),
            ));
        }
    }
}

/// `get-command.timeout` (and `timeout.milliseconds`): a device whose last
/// GetCommand returned VD_E_TIMEOUT and which the program then stopped
/// serving while the statement ran.
fn timeouts(s: &SetView<'_>, cx: &Context, out: &mut Vec<Violation>) {
    for (&d, dev) in &s.devices {
        let Some(last) = dev.gets.last() else {
            continue;
        };
        if last.code() != Hresult::VD_E_TIMEOUT || dev.ended.is_some() || dev.aborted.is_some() {
            continue;
        }
        let stop = s.stop_after(last);
        if stop.is_none() && SetView::killed(cx) {
            continue;
        }
        // Another thread was already aborting the set (or saw it aborted)
        // when this timeout returned: the program stopped for that.
        if s.abort
            .is_some_and(|a| a.after < last.seq && a.thread != last.thread)
        {
            continue;
        }
        // A statement this program's own SignalAbort (after the timeout)
        // failed was running when the timeout returned, whatever the two
        // processes' clocks say of the same millisecond.
        let ended_by_this_abort = stop.is_some_and(|c| c.method == Api::SignalAbort)
            && s.stmt
                .is_some_and(|st| st.outcome.reason == Some(FailReason::ClientAbort));
        if !ended_by_this_abort && !running_at(s.stmt, Some(last.end_ms)) {
            continue;
        }
        let t = last.args.timeout;
        let given = match t.and_then(|t| t.ms) {
            Some(ms) => format!("timeout {ms} ms"),
            None => "timeout INFINITE".to_string(),
        };
        out.push(violation(
            id::GET_COMMAND_TIMEOUT,
            format!(
                "{}: GetCommand returned VD_E_TIMEOUT at {} ms ({given}) and the program called GetCommand on that device no more — it then {} — while the {} was still running. VD_E_TIMEOUT only means no command arrived in time: call GetCommand again until it returns VD_E_CLOSE or VD_E_ABORT.",
                s.dev_label(d),
                last.end_ms,
                stop_words(stop, cx),
                s.verb()
            ),
        ).at(last.seq));
        if let Some(t) = t
            && (1..1000).contains(&t.raw)
        {
            out.push(violation(
                id::TIMEOUT_MILLISECONDS,
                format!(
                    "{}: GetCommand was called with a timeout of {} — VDI timeouts are milliseconds, and {} looks like seconds passed as milliseconds (as in the Linux sample, whose 90 is commented \"seconds\"); pass {} for {} seconds.",
                    s.dev_label(d),
                    t.raw,
                    t.raw,
                    t.raw * 1000,
                    t.raw
                ),
            ).at(last.seq));
        }
    }
}

/// `get-configuration.timeout`: the program kept waiting for the
/// configuration after the statement failed, until it was killed; or it
/// gave up while the statement ran after a timeout that looks like
/// seconds passed as milliseconds (judged only with the statement's end
/// time; giving up after a long wait is the program's choice).
fn configuration_wait(s: &SetView<'_>, cx: &Context, out: &mut Vec<Violation>) {
    if s.granted.is_some() {
        return;
    }
    let Some(last) = s
        .calls
        .iter()
        .rev()
        .find(|c| c.method == Api::GetConfiguration)
    else {
        return;
    };
    if last.code() != Hresult::VD_E_TIMEOUT {
        return;
    }
    let Some(st) = s.stmt else { return };
    let stop = s.stop_after(last);
    let hung = matches!(cx.end, ProgramEnd::Hung { .. });
    if stop.is_none() && hung && st.outcome.status.is_final() && !st.outcome.succeeded() {
        out.push(violation(
            id::GET_CONFIGURATION_TIMEOUT,
            format!(
                "{}: the {} failed ({}) before the server configured the set, and the program kept waiting for the configuration (its last GetConfiguration returned VD_E_TIMEOUT at {} ms) until it was killed. When GetConfiguration times out, check whether the statement has ended; once it has failed, give up: Close the set and report the failure.",
                s.label(),
                s.verb(),
                messages(&st.outcome),
                last.end_ms
            ),
        ).at(last.seq));
        return;
    }
    let gave_up = stop.is_some() || matches!(cx.end, ProgramEnd::Exited { .. });
    let running =
        matches!((st.ended_ms, st.outcome.status.is_final()), (Some(e), true) if last.end_ms < e);
    let Some(t) = last.args.timeout.filter(|t| (1..1000).contains(&t.raw)) else {
        return;
    };
    if !gave_up || !running {
        return;
    }
    out.push(violation(
        id::GET_CONFIGURATION_TIMEOUT,
        format!(
            "{}: GetConfiguration returned VD_E_TIMEOUT at {} ms after waiting {} ms and the program gave up on the set — it then {} — while the {} was still running (it ended at {} ms). A timeout only means the server has not configured the set yet: call GetConfiguration again while the statement runs.",
            s.label(),
            last.end_ms,
            t.raw,
            stop_words(stop, cx),
            s.verb(),
            st.ended_ms.unwrap_or_default()
        ),
    ).at(last.seq));
    out.push(violation(
        id::TIMEOUT_MILLISECONDS,
        format!(
            "{}: GetConfiguration was called with a timeout of {} — VDI timeouts are milliseconds, and {} looks like seconds passed as milliseconds; pass {} for {} seconds.",
            s.label(),
            t.raw,
            t.raw,
            t.raw * 1000,
            t.raw
        ),
    ).at(last.seq));
}

/// `close.wait-for-close`: Close (or the object's destruction) while an
/// opened device had not seen VD_E_CLOSE and the set had not aborted.
fn close_wait(s: &SetView<'_>, out: &mut Vec<Violation>) {
    let Some(rel) = s.release() else { return };
    if s.aborted_before(Some(rel)) {
        return;
    }
    let open: Vec<(u16, &Dev<'_>)> = s
        .devices
        .iter()
        .filter(|(_, d)| d.opened.is_some_and(|o| o.seq < rel.seq))
        .filter(|(_, d)| d.ended.is_none_or(|e| e.seq >= rel.seq))
        .map(|(k, d)| (*k, d))
        .collect();
    let Some((d0, dev0)) = open.first() else {
        return;
    };
    let list: Vec<String> = open.iter().map(|(d, _)| d.to_string()).collect();
    let last = dev0
        .gets
        .iter()
        .rev()
        .find(|g| g.seq < rel.seq)
        .map_or_else(
            || format!("device {d0} never called GetCommand"),
            |g| {
                let got = g
                    .fetched()
                    .map_or_else(|| g.ret.name.clone(), command_words);
                format!(
                    "device {d0}'s last GetCommand returned {got} at {} ms",
                    g.end_ms
                )
            },
        );
    let how = if rel.method == Api::Destroy {
        "the set object was destroyed"
    } else {
        "Close was called"
    };
    out.push(violation(
        id::CLOSE_WAIT_FOR_CLOSE,
        format!(
            "{}: {how} at {} ms while device{} {} had not yet returned VD_E_CLOSE from GetCommand ({last}); closing a set with devices open aborts the {}. Call GetCommand on every device until it returns VD_E_CLOSE (or VD_E_ABORT), then Close.",
            s.label(),
            rel.start_ms,
            if open.len() > 1 { "s" } else { "" },
            list.join(", "),
            s.verb()
        ),
    ).at(rel.seq));
}

/// `flush.several` / `complete.negotiation`: a device whose last fetched
/// command was a VDC_Flush, after which the program stopped serving it
/// while the backup ran: a mid-stream Flush is not the end, and with
/// VDF_CompleteEnabled the end is VDC_Complete.
fn flushes(s: &SetView<'_>, cx: &Context, out: &mut Vec<Violation>) {
    let mid = s.stmt.map_or(0, |st| st.mid_stream_flushes);
    let enabled = s
        .granted
        .is_some_and(|f| f.contains(Features::CompleteEnabled));
    for (&d, dev) in &s.devices {
        let Some(last) = dev.gets.last() else {
            continue;
        };
        let Some(cmd) = last.fetched() else { continue };
        if cmd.command_code() != Some(CommandCode::Flush) {
            continue;
        }
        let k = dev
            .gets
            .iter()
            .filter_map(|g| g.fetched())
            .filter(|c| c.command_code() == Some(CommandCode::Flush))
            .count();
        let done = dev
            .completes
            .iter()
            .find(|c| c.args.command.as_ref().is_some_and(|v| v.id == cmd.id))
            .copied()
            .unwrap_or(last);
        let stop = s.stop_after(done);
        if stop.is_none() && SetView::killed(cx) {
            continue;
        }
        // The set aborted (another device saw VD_E_ABORT) before the
        // program stopped: stopping is then what `abort.only-close` asks.
        if s.aborted_before(stop) {
            continue;
        }
        if !running_at(s.stmt, Some(done.end_ms)) {
            continue;
        }
        let did = stop_words(stop, cx);
        let (clause, what) = if k as u64 <= u64::from(mid) {
            (
                id::FLUSH_SEVERAL,
                format!(
                    "{}: after {} — Flush {k} of the {mid} the server sends in the middle of this {} — the program stopped serving the device and {did} without waiting for VD_E_CLOSE. A backup may carry several Flushes (FILESTREAM): a Flush makes the data so far durable but is not the end; keep calling GetCommand (and with VDF_CompleteEnabled, finish at VDC_Complete).",
                    s.dev_label(d),
                    command_words(cmd),
                    s.verb()
                ),
            )
        } else if enabled {
            (
                id::COMPLETE_NEGOTIATION,
                format!(
                    "{}: GetConfiguration returned VDF_CompleteEnabled, so the {} ends with VDC_Complete, but after {} the program stopped serving the device and {did}. With VDC_Complete negotiated, acknowledge Flushes and keep calling GetCommand: finish the media at VDC_Complete.",
                    s.dev_label(d),
                    s.verb(),
                    command_words(cmd)
                ),
            )
        } else {
            continue;
        };
        out.push(violation(clause, what).at(stop.unwrap_or(done).seq));
    }
}

/// `abort.only-close`: after VD_E_ABORT the program kept calling, or never
/// called Close.
fn after_abort(s: &SetView<'_>, cx: &Context, out: &mut Vec<Violation>) {
    let Some(a) = s.abort else { return };
    let until = if matches!(cx.end, ProgramEnd::Hung { .. }) {
        ", until it was killed"
    } else {
        ""
    };
    for (&d, dev) in &s.devices {
        let Some(ab) = dev.aborted else { continue };
        let more = dev
            .gets
            .iter()
            .filter(|g| g.seq > ab.seq && g.after >= ab.seq)
            .count();
        if more >= 2 {
            out.push(violation(
                id::ABORT_ONLY_CLOSE,
                format!(
                    "{}: GetCommand returned VD_E_ABORT at {} ms and the program kept calling GetCommand on the device ({more} more calls{until}). After VD_E_ABORT no command and no VD_E_CLOSE will come: stop, and Close the set.",
                    s.dev_label(d),
                    ab.end_ms
                ),
            ).at(dev.gets.iter().find(|g| g.seq > ab.seq && g.after >= ab.seq).map_or(ab.seq, |g| g.seq)));
        }
    }
    if SetView::killed(cx) || s.closes.iter().any(|c| c.seq > a.seq) {
        return;
    }
    let sign = if a.method == Api::SignalAbort {
        format!("the program called SignalAbort at {} ms", a.start_ms)
    } else {
        let on = a
            .args
            .device
            .map_or_else(String::new, |d| format!(" on device {d}"));
        format!(
            "{}{on} returned VD_E_ABORT at {} ms",
            a.method.name(),
            a.end_ms
        )
    };
    let ending = match s.destroy {
        Some(d) => format!("destroyed the set object at {} ms", d.start_ms),
        None => end_words(cx),
    };
    out.push(violation(
        id::ABORT_ONLY_CLOSE,
        format!(
            "{} was aborted ({sign}) and the program {ending} without calling Close. After VD_E_ABORT only Close is useful: stop using the devices and call Close.",
            s.label()
        ),
    ).at(a.seq));
}

/// Whether a client in the set's mode must perform `code` (else it may
/// answer ERROR_NOT_SUPPORTED).
fn required(code: Option<CommandCode>, granted: Option<Features>) -> bool {
    let Some(code) = code else { return false };
    let f = granted.unwrap_or_default();
    if code == CommandCode::Complete {
        return f.contains(Features::CompleteEnabled);
    }
    match f.mode() {
        Some(m) => code.required_for(m),
        None => matches!(
            code,
            CommandCode::Read | CommandCode::Write | CommandCode::ClearError | CommandCode::Flush
        ),
    }
}

/// `command.unanswered` / `command.not-supported`: commands fetched and
/// never completed before the set was released (or the program ended),
/// unless the set aborted (an abort the client caused by not answering —
/// the watchdog — excuses nothing).
fn unanswered(s: &SetView<'_>, cx: &Context, out: &mut Vec<Violation>) {
    if SetView::killed(cx) {
        return;
    }
    let watchdog = s
        .stmt
        .is_some_and(|st| st.outcome.reason == Some(FailReason::Watchdog));
    if s.abort.is_some() && !watchdog {
        return;
    }
    let rel = s.release();
    let before = |c: &CallRecord| rel.is_none_or(|r| c.seq < r.seq);
    let by = match rel {
        Some(r) if r.method == Api::Destroy => "before the program destroyed the set object",
        Some(_) => "before the program closed the set",
        None => "before the program ended",
    };
    for (&d, dev) in &s.devices {
        let mut missed: BTreeMap<bool, Vec<(&CommandView, &CallRecord)>> = BTreeMap::new();
        for g in &dev.gets {
            let Some(c) = g.fetched() else { continue };
            let answered = dev.completes.iter().any(|x| {
                x.seq > g.seq && before(x) && x.args.command.as_ref().is_some_and(|v| v.id == c.id)
            });
            if !answered {
                let req = required(c.command_code(), s.granted);
                missed.entry(req).or_default().push((c, g));
            }
        }
        for (req, list) in missed {
            let (c, g) = list[0];
            let more = match list.len() - 1 {
                0 => String::new(),
                n => format!(" (and {n} more command{})", if n > 1 { "s" } else { "" }),
            };
            let (clause, advice) = if req {
                (
                    id::COMMAND_UNANSWERED,
                    "every command must be completed — ERROR_SUCCESS, or an error code — or the server waits for it until its watchdog aborts the statement (or forever, with serverTimeOut 0)",
                )
            } else {
                (
                    id::COMMAND_NOT_SUPPORTED,
                    "a command the program does not support must be completed with ERROR_NOT_SUPPORTED; ignoring it stalls the server until its watchdog aborts the statement",
                )
            };
            out.push(
                violation(
                    clause,
                    format!(
                        "{}: {} (fetched at {} ms){more} was never completed {by}; {advice}.",
                        s.dev_label(d),
                        command_words(c),
                        g.end_ms
                    ),
                )
                .at(g.seq),
            );
        }
    }
}

/// One kind of bad completion on one device: the first and how many.
struct Bad<'a> {
    first: &'a CallRecord,
    count: usize,
}

fn note_bad<'a>(m: &mut BTreeMap<u16, Bad<'a>>, d: u16, r: &'a CallRecord) {
    m.entry(d)
        .and_modify(|b| b.count += 1)
        .or_insert(Bad { first: r, count: 1 });
}

/// " (and 2 more blocks like it)" for `n` findings of `what` in all.
fn more_words(n: usize, what: &str) -> String {
    match n {
        0 | 1 => String::new(),
        2 => format!(" (and 1 more {what} like it)"),
        n => format!(" (and {} more {what}s like it)", n - 1),
    }
}

/// `complete-command.read-only-block`, `command.short-transfer`,
/// `flush.restore-not-supported-misuse`: what the completions reported.
fn completions(s: &SetView<'_>, out: &mut Vec<Violation>) {
    let mut tampered = BTreeMap::new();
    let mut short = BTreeMap::new();
    let mut flush = BTreeMap::new();
    for (&d, dev) in &s.devices {
        for r in &dev.completes {
            if r.block_modified == Some(true) {
                note_bad(&mut tampered, d, r);
            }
            let (Some(c), Some(k)) = (&r.args.command, &r.args.completion) else {
                continue;
            };
            let code = c.command_code();
            let io = matches!(code, Some(CommandCode::Read | CommandCode::Write));
            if io && k.win32() == Win32::ERROR_SUCCESS && k.bytes < u64::from(c.size) {
                note_bad(&mut short, d, r);
            }
            if code == Some(CommandCode::Flush) && k.win32() == Win32::ERROR_NOT_SUPPORTED {
                note_bad(&mut flush, d, r);
            }
        }
    }
    for (d, b) in tampered {
        out.push(violation(
            id::COMPLETE_COMMAND_READ_ONLY_BLOCK,
            format!(
                "{}: the program wrote into the read-only command block of {} before completing it ({}){}. The VDC_Command GetCommand returns belongs to VDI: read it, never write it, and hand it back unchanged.",
                s.dev_label(d),
                b.first
                    .args
                    .command
                    .as_ref()
                    .map_or_else(|| "a command".to_string(), command_words),
                changes(b.first),
                more_words(b.count, "block")
            ),
        ).at(b.first.seq));
    }
    for (d, b) in short {
        let (c, k) = match (&b.first.args.command, &b.first.args.completion) {
            (Some(c), Some(k)) => (c, k),
            _ => continue,
        };
        let fix = if c.command_code() == Some(CommandCode::Read) {
            "a Read that reaches the end of the data answers ERROR_HANDLE_EOF with the bytes it read"
        } else {
            "a Write that cannot store everything fails with an error code (ERROR_DISK_FULL, ERROR_END_OF_MEDIA, ...)"
        };
        out.push(violation(
            id::COMMAND_SHORT_TRANSFER,
            format!(
                "{}: {} (size {}) was completed with ERROR_SUCCESS and {} bytes{}. ERROR_SUCCESS means the whole size was transferred: report it, or an error — {fix}.",
                s.dev_label(d),
                command_words(c),
                c.size,
                k.bytes,
                more_words(b.count, "completion")
            ),
        ).at(b.first.seq));
    }
    for (d, b) in flush {
        out.push(violation(
            id::FLUSH_RESTORE_NOT_SUPPORTED_MISUSE,
            format!(
                "{}: {} was completed with ERROR_NOT_SUPPORTED{}. Every client must support VDC_Flush: make the data written so far durable (during a restore there is nothing to do) and complete it with ERROR_SUCCESS.",
                s.dev_label(d),
                b.first
                    .args
                    .command
                    .as_ref()
                    .map_or_else(|| "VDC_Flush".to_string(), command_words),
                more_words(b.count, "Flush")
            ),
        ).at(b.first.seq));
    }
}

/// "size 65536 → 32768, ..." for a modified block.
fn changes(r: &CallRecord) -> String {
    let (Some(c), Some(h)) = (&r.args.command, &r.args.handed_back) else {
        return "the block differs from the one delivered".to_string();
    };
    let mut v = Vec::new();
    if h.code != c.code {
        v.push(format!("commandCode {} → {}", c.code, h.code));
    }
    if h.size != c.size {
        v.push(format!("size {} → {}", c.size, h.size));
    }
    if h.position != c.position {
        v.push(format!("position {} → {}", c.position, h.position));
    }
    if h.buffer_changed {
        v.push("buffer pointer changed".to_string());
    }
    if v.is_empty() {
        "the block differs from the one delivered".to_string()
    } else {
        v.join(", ")
    }
}

/// `close.exactly-once`: each set closed once, and nothing called on it or
/// its devices after Close.
fn close_once(s: &SetView<'_>, cx: &Context, out: &mut Vec<Violation>) {
    let Some(first) = s.closes.first() else {
        // A hung program is reported as such (term.exits), an aborted set
        // by abort.only-close.
        let hung = matches!(cx.end, ProgramEnd::Hung { .. });
        if SetView::killed(cx) || hung || s.abort.is_some() {
            return;
        }
        let ending = match s.destroy {
            Some(d) => format!("destroyed the set object at {} ms", d.start_ms),
            None => end_words(cx),
        };
        out.push(violation(
            id::CLOSE_EXACTLY_ONCE,
            format!(
                "{} (created at {} ms) was never closed: the program {ending} without calling Close. Call Close once for every set, when every device has returned VD_E_CLOSE (or after VD_E_ABORT).",
                s.label(),
                s.create.start_ms
            ),
        ).at(s.create.seq));
        return;
    };
    if s.closes.len() > 1 {
        let at: Vec<String> = s
            .closes
            .iter()
            .map(|c| format!("{} ms", c.start_ms))
            .collect();
        out.push(violation(
            id::CLOSE_EXACTLY_ONCE,
            format!(
                "{}: Close was called {} times (at {}); the second returns VD_E_PROTOCOL. Call Close exactly once per set.",
                s.label(),
                s.closes.len(),
                at.join(", ")
            ),
        ).at(s.closes[1].seq));
    }
    let mut after: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for c in s.calls.iter().filter(|c| c.after >= first.seq) {
        if matches!(
            c.method,
            Api::Create | Api::CreateEx | Api::Close | Api::Destroy
        ) {
            continue;
        }
        let what = match c.args.device {
            Some(d) => format!("{} on device {d}", c.method.name()),
            None => c.method.name().to_string(),
        };
        after
            .entry(what)
            .and_modify(|e| e.0 += 1)
            .or_insert((1, c.start_ms));
    }
    if after.is_empty() {
        return;
    }
    let list: Vec<String> = after
        .iter()
        .map(|(w, (n, at))| match n {
            1 => format!("{w} at {at} ms"),
            n => format!("{w} from {at} ms ({n} calls)"),
        })
        .collect();
    out.push(violation(
        id::CLOSE_EXACTLY_ONCE,
        format!(
            "{}: after Close (at {} ms) the program called {}. Close ends the set and invalidates its device interfaces: make no call on them afterwards (Create a new set to start another operation).",
            s.label(),
            first.start_ms,
            list.join(", ")
        ),
    ).at(s.calls.iter().find(|c| c.after >= first.seq && !matches!(c.method, Api::Create | Api::CreateEx | Api::Close | Api::Destroy)).map_or(first.seq, |c| c.seq)));
}

/// `term.exits`: the program hung (and was killed) or crashed.
fn exits(log: &[CallRecord], cx: &Context, out: &mut Vec<Violation>) {
    let what = match cx.end {
        ProgramEnd::Hung { bound_ms } => {
            let when = if cx.statements.iter().all(|s| s.outcome.status.is_final()) {
                format!("was still running {bound_ms} ms after its statement ended")
            } else {
                format!(
                    "and its statement were still running when the runner's bound ({bound_ms} ms) ran out"
                )
            };
            format!(
                "The program {when}, and was killed. {} Once the statement's result has arrived and the set is closed, the program must exit.",
                last_calls(log)
            )
        }
        ProgramEnd::Crashed { signal } => format!(
            "The program died of signal {signal} instead of exiting. {}",
            last_calls(log)
        ),
        _ => return,
    };
    out.push(violation(id::TERM_EXITS, what));
}

/// "Its last calls: thread 1 GetCommand on device 0 → VD_E_ABORT at 5000
/// ms; ..." (the last call of each thread, up to four threads).
fn last_calls(log: &[CallRecord]) -> String {
    let mut last: BTreeMap<(u32, u64), &CallRecord> = BTreeMap::new();
    for r in log {
        let e = last.entry((r.pid, r.thread)).or_insert(r);
        if r.seq > e.seq {
            *e = r;
        }
    }
    if last.is_empty() {
        return "It made no VDI call.".to_string();
    }
    let mut v: Vec<&CallRecord> = last.into_values().collect();
    v.sort_by_key(|r| std::cmp::Reverse(r.end_ms));
    let shown: Vec<String> = v
        .iter()
        .take(4)
        .map(|r| {
            let on = r
                .device()
                .filter(|_| r.method.on_device())
                .map_or_else(String::new, |d| format!(" on device {d}"));
            format!(
                "thread {} {}{on} → {} at {} ms",
                r.thread,
                r.method.name(),
                r.ret.name,
                r.end_ms
            )
        })
        .collect();
    format!("Its last VDI calls: {}.", shown.join("; "))
}

#[cfg(test)]
mod tests;
