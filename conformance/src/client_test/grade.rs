//! Verdicts: what a case left (the library's call log, how the program
//! ended, the server's statements) graded against the client's obligations
//! (`vdi_model::checks::obligations`), plus what the runner knows of the
//! case (a correct client's statement succeeds here), into the same
//! results and reports `vdisim run` writes.

use super::ClientTestArgs;
use super::case_run::{Behaviour, CaseRun, Harness, OpRun};
use super::cases::{ClientCase, DeviceShape, Op};
use super::exec::ProgramEnd;
use vdi_model::calllog::{Api, CallRecord, LogLine, ProcessLine};
use vdi_model::checks::Violation;
use vdi_model::checks::obligations::{self, Context, StatementEnd};
use vdi_model::outcome::FailReason;
use vdi_reports::schema::{
    BackendInfo, CaseResult, Coverage, Divergence, RunReport, TimelineEvent, ToolInfo, Verdict,
};
use vdi_spec::{ClauseId, id};

/// The clauses every case checks (the client obligations).
pub const OBLIGATIONS: &[ClauseId] = &[
    id::TERM_OUTCOME_DECIDES,
    id::GET_COMMAND_TIMEOUT,
    id::CLOSE_WAIT_FOR_CLOSE,
    id::ABORT_ONLY_CLOSE,
    id::COMMAND_UNANSWERED,
    id::COMMAND_NOT_SUPPORTED,
    id::COMPLETE_COMMAND_READ_ONLY_BLOCK,
    id::FLUSH_SEVERAL,
    id::COMPLETE_NEGOTIATION,
    id::COMMAND_SHORT_TRANSFER,
    id::RESTORE_BYTE_IDENTICAL,
];

/// The log of one run, parsed.
struct Log {
    calls: Vec<CallRecord>,
    process: Option<ProcessLine>,
    /// Lines that did not parse (a library of another version?).
    bad: usize,
}

fn parse(lines: &[String]) -> Log {
    let mut l = Log {
        calls: Vec::new(),
        process: None,
        bad: 0,
    };
    for line in lines {
        match serde_json::from_str::<LogLine>(line) {
            Ok(LogLine::Call(c)) => l.calls.push(*c),
            Ok(LogLine::Process(p)) => {
                if l.process.is_none() {
                    l.process = Some(p);
                }
            }
            Err(_) => l.bad += 1,
        }
    }
    l
}

/// What the plain backup shows of the program's timeouts.
pub fn behaviour(r: &CaseRun) -> Option<Behaviour> {
    let b = r.backup.as_ref()?;
    let log = parse(&b.record.log_lines);
    let mut out = Behaviour {
        get_command_timeout_ms: None,
        server_timeout_ms: 0,
        shape: DeviceShape::Pipe,
    };
    let mut created = false;
    for c in &log.calls {
        match c.method {
            Api::Create | Api::CreateEx => {
                if let Some(cfg) = &c.args.config {
                    out.server_timeout_ms = u64::from(cfg.cfg.server_time_out);
                    out.shape = DeviceShape::from_features(cfg.cfg.features);
                    created = true;
                }
            }
            Api::GetCommand => {
                if let Some(ms) = c.args.timeout.and_then(|t| t.ms) {
                    out.get_command_timeout_ms =
                        Some(out.get_command_timeout_ms.map_or(ms, |m| m.max(ms)));
                }
            }
            _ => {}
        }
    }
    created.then_some(out)
}

/// The graded result of one case run.
pub fn grade(h: &Harness, r: &CaseRun, repro: &str) -> CaseResult {
    let mut findings: Vec<Violation> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut unimplemented = r.unimplemented.clone();
    let mut timeline: Vec<TimelineEvent> = Vec::new();
    // Where the first finding points in `timeline`.
    let mut diverged: Option<u64> = None;
    let mut calls = 0u64;
    let mut virtual_ms = 0u64;
    // Each graded op's first timeline index and its events' call seqs.
    let mut op_seqs: Vec<(u64, Vec<Option<u64>>)> = Vec::new();
    for (op, run) in [(Op::Backup, &r.backup), (Op::Restore, &r.restore)] {
        let Some(run) = run else { continue };
        // The backup before a restore is graded as a backup without the
        // case's faults.
        let case = if op == Op::Backup && r.case.op == Op::Restore {
            r.case.backup_before()
        } else {
            r.case.clone()
        };
        let g = grade_op(h, &case, run);
        calls += g.calls;
        virtual_ms = virtual_ms.max(g.virtual_ms);
        let offset = timeline.len() as u64;
        if diverged.is_none() && !g.findings.is_empty() {
            diverged = g.divergence_index().map(|i| offset + i as u64);
        }
        op_seqs.push((offset, g.call_seqs.clone()));
        timeline.extend(g.timeline.into_iter().map(|mut e| {
            e.seq += offset;
            e
        }));
        findings.extend(g.findings);
        for n in g.notes {
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
        if let Some(u) = g.unimplemented {
            unimplemented.get_or_insert(u);
        }
    }
    if let Some((run, v)) = tape_replay(r) {
        // The first finding: the timeline event of the answer that
        // differs (a failed statement follows from it).
        if let Some((offset, seqs)) = op_seqs.get(run) {
            diverged = seqs
                .iter()
                .position(|s| s.is_some() && *s == v.at)
                .map(|i| offset + i as u64)
                .or(diverged);
        }
        findings.insert(0, v);
    }
    let verdict = if !findings.is_empty() {
        Verdict::Violation
    } else if unimplemented.is_some() {
        Verdict::Unimplemented
    } else {
        Verdict::Pass
    };
    let detail = match (&findings[..], &unimplemented) {
        ([], None) => format!(
            "the program did what a correct client does{}",
            join_notes(&notes)
        ),
        ([], Some(u)) => u.clone(),
        (f, _) => f
            .iter()
            .map(|v| format!("{}: {}", v.clause, v.what))
            .collect::<Vec<_>>()
            .join("; "),
    };
    let divergence = findings.first().map(|v| Divergence {
        seq: diverged.unwrap_or(timeline.len() as u64),
        clause: Some(v.clause.clone()),
        expected: "a correct client's behaviour (see the clause)".into(),
        actual: v.what.clone(),
    });
    let mut clauses: Vec<String> = findings.iter().map(|v| v.clause.clone()).collect();
    if clauses.is_empty() {
        clauses = OBLIGATIONS.iter().map(|c| c.to_string()).collect();
        let shape = r
            .backup
            .as_ref()
            .and_then(|b| super::shapes::shape_of(&parse(&b.record.log_lines).calls));
        clauses.extend(
            super::shapes::clauses(shape, &r.case)
                .into_iter()
                .map(|c| c.to_string()),
        );
    }
    clauses.dedup();
    let hash = vdi_model::trace::fnv1a(0xcbf2_9ce4_8422_2325, detail.as_bytes());
    CaseResult {
        case: r.case.id.clone(),
        file: String::new(),
        summary: describe(&r.case),
        clauses,
        backend: "client".into(),
        seed: r.seed,
        verdict,
        detail,
        divergence,
        trace_hash: format!("{hash:016x}"),
        virtual_ms,
        steps: calls,
        repro: repro.to_string(),
        deviation_reason: None,
        timeline,
    }
}

/// A tape-like program's answers replayed through the model's tape, over
/// its backup and the restore that reads it (not after a media fault):
/// the violation and which of the runs its call is in.
fn tape_replay(r: &CaseRun) -> Option<(usize, Violation)> {
    let logs: Vec<Log> = [&r.backup, &r.restore]
        .into_iter()
        .flatten()
        .map(|run| parse(&run.record.log_lines))
        .collect();
    let shape = super::shapes::shape_of(&logs.first()?.calls)?;
    if shape.device != DeviceShape::Tape || r.case.media_fault.is_some() {
        return None;
    }
    let calls: Vec<&[CallRecord]> = logs.iter().map(|l| l.calls.as_slice()).collect();
    super::shapes::tape_replay(&calls)
}

fn join_notes(notes: &[String]) -> String {
    if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    }
}

/// What one operation's run shows.
struct OpGrade {
    findings: Vec<Violation>,
    notes: Vec<String>,
    unimplemented: Option<String>,
    timeline: Vec<TimelineEvent>,
    /// The call-log `seq` of each timeline event (`None`: a statement end).
    call_seqs: Vec<Option<u64>>,
    calls: u64,
    virtual_ms: u64,
}

impl OpGrade {
    /// The timeline event the first finding is about: the call it names,
    /// else the statement's end.
    fn divergence_index(&self) -> Option<usize> {
        let first = self.findings.first()?;
        if let Some(at) = first.at
            && let Some(i) = self.call_seqs.iter().position(|s| *s == Some(at))
        {
            return Some(i);
        }
        self.call_seqs.iter().rposition(Option::is_none)
    }
}

fn grade_op(h: &Harness, case: &ClientCase, run: &OpRun) -> OpGrade {
    let log = parse(&run.record.log_lines);
    let (timeline, call_seqs) = timeline(run.op, &log, run);
    let mut g = OpGrade {
        findings: Vec::new(),
        notes: Vec::new(),
        unimplemented: None,
        timeline,
        call_seqs,
        calls: log.calls.len() as u64,
        virtual_ms: log.calls.iter().map(|c| c.end_ms).max().unwrap_or(0),
    };
    let what = op_word(run.op);
    if !run.record.escaped.is_empty() {
        g.notes.push(format!(
            "the {what} left {} process(es) running outside its process group after it ended, killed by the runner: {}",
            run.record.escaped.len(),
            run.record.escaped.join(", ")
        ));
    }
    if log.bad > 0 {
        g.notes.push(format!(
            "{} line(s) of the call log did not parse: is the program loading this vdisim's libsqlvdi.so?",
            log.bad
        ));
    }
    let end = match &run.record.end {
        ProgramEnd::SpawnFailed(e) => {
            g.findings
                .push(plain(format!("the {what} could not start: {e}")));
            return g;
        }
        ProgramEnd::NeverReady { waited_ms } => {
            g.findings.push(plain(format!(
                "the {what} never printed its ready line ({:?}) in {waited_ms} ms; stderr ends: {}",
                h.ready_line.as_deref().unwrap_or(""),
                last_lines(&run.record.stderr_tail, 3)
            )));
            return g;
        }
        ProgramEnd::Exited(c) if *c == h.unimplemented_code => {
            g.unimplemented = Some(format!(
                "the program says it cannot do this case (its {what} exited {c})"
            ));
            return g;
        }
        ProgramEnd::Exited(c) => obligations::ProgramEnd::Exited { code: *c },
        ProgramEnd::Signaled(s) => obligations::ProgramEnd::Crashed { signal: *s },
        ProgramEnd::Hung { after_ms } => obligations::ProgramEnd::Hung {
            bound_ms: *after_ms,
        },
        ProgramEnd::KilledByFault => obligations::ProgramEnd::Killed,
    };
    if log.calls.is_empty() && run.outcomes.is_empty() {
        g.findings.push(plain(format!(
            "the {what} made no VDI call and ran no statement ({:?} after {} ms): is it loading vdisim's libsqlvdi.so (LD_LIBRARY_PATH; under --wine, the registered sqlvdi.dll), and does it run sqlcmd from PATH? stderr ends: {}",
            run.record.end,
            run.record.real_ms,
            last_lines(&run.record.stderr_tail, 3)
        )));
        return g;
    }
    let at = |unix: u64| log.process.as_ref().map(|p| p.log_ms_at(unix));
    let cx = Context {
        statements: run
            .outcomes
            .iter()
            .map(|o| StatementEnd {
                set: o.statement.devices.first().cloned(),
                kind: Some(o.statement.kind),
                outcome: o.outcome.clone(),
                ended_ms: at(o.ended_unix_ms),
                mid_stream_flushes: if run.op == Op::Backup {
                    case.mid_flushes
                } else {
                    0
                },
            })
            .collect(),
        end,
        unimplemented_code: Some(h.unimplemented_code),
    };
    g.findings = obligations::check(&log.calls, &cx);
    let shape = super::shapes::shape_of(&log.calls);
    super::shapes::notes(shape, case, run, &log.calls, &mut g.notes);
    let shaped = super::shapes::findings(shape, case, run, &log.calls, &g.findings);
    g.findings.extend(shaped);
    if h.ready_line.is_some() && vdi_side_clean(&log.calls) {
        // The runner, not the program, ran the statement: a failure that
        // left every device closing cleanly is invisible to a worker that
        // sees only the VDI side (its caller must check the statement).
        let before = g.findings.len();
        g.findings.retain(|v| {
            !(v.clause == id::TERM_OUTCOME_DECIDES.as_str()
                && cx.end == obligations::ProgramEnd::Exited { code: 0 })
        });
        if g.findings.len() < before {
            g.notes.push(format!(
                "the {what} statement failed after every device closed cleanly; a --ready-line worker cannot see that, so its success report is not graded (the program that runs the statement must check its result)"
            ));
        }
        return g;
    }
    // A program that refused its snapshot chose the failure (graded in
    // `shapes`).
    if g.findings.is_empty() && super::shapes::refused_snapshot(&log.calls).is_none() {
        expected_outcome(case, run, &mut g);
    }
    g
}

/// Whether the VDI side showed the program nothing but success: no call
/// returned VD_E_ABORT, each device's last GetCommand returned VD_E_CLOSE,
/// and every Close returned NOERROR.
fn vdi_side_clean(calls: &[CallRecord]) -> bool {
    use std::collections::BTreeMap;
    let abort = vdi_spec::Hresult::VD_E_ABORT;
    if calls.iter().any(|c| c.code() == abort) {
        return false;
    }
    let mut last: BTreeMap<(u32, u64, u32, u16), vdi_spec::Hresult> = BTreeMap::new();
    for c in calls {
        if c.method == Api::GetCommand
            && let Some(d) = c.args.device
        {
            last.insert((c.pid, c.object, c.incarnation, d), c.code());
        }
        if c.method == Api::Close && c.code() != vdi_spec::Hresult::NOERROR {
            return false;
        }
    }
    last.values().all(|h| *h == vdi_spec::Hresult::VD_E_CLOSE)
}

/// A finding with no clause of its own (the harness could not grade).
fn plain(what: String) -> Violation {
    Violation::new(id::TERM_OUTCOME_DECIDES, what)
}

/// Where a correct client's statement succeeds, a failed one is a finding
/// even when no single obligation names it: the clause the server's
/// failure reason points at.
fn expected_outcome(case: &ClientCase, run: &OpRun, g: &mut OpGrade) {
    if !case.expects_success() || matches!(run.record.end, ProgramEnd::KilledByFault) {
        return;
    }
    let what = op_word(run.op);
    let Some(last) = run.outcomes.last() else {
        g.findings.push(Violation {
            clause: id::TERM_OUTCOME_DECIDES.to_string(),
            what: format!(
                "no {what} statement ran: a program that runs its own T-SQL must run it through sqlcmd -S {{server}} naming set {{device}}"
            ),
         at: None, });
        return;
    };
    if last.outcome.succeeded() {
        return;
    }
    let clause = match last.outcome.reason {
        Some(FailReason::ShortTransfer) => id::COMMAND_SHORT_TRANSFER,
        Some(FailReason::Watchdog) => id::COMMAND_UNANSWERED,
        Some(FailReason::BadMedia) => id::RESTORE_BYTE_IDENTICAL,
        Some(FailReason::ClientAbort) => id::ABORT_CLIENT_SIGNAL,
        Some(FailReason::Vetoed) => id::COMPLETE_NEGOTIATION,
        _ => id::TERM_OUTCOME_DECIDES,
    };
    let msgs: Vec<String> = last
        .outcome
        .messages
        .iter()
        .map(|m| format!("Msg {}: {}", m.number, m.text))
        .collect();
    g.findings.push(Violation {
        clause: clause.to_string(),
        what: format!(
            "the {what} failed where a correct client's succeeds ({:?}): {}",
            last.outcome.reason,
            msgs.join(" / ")
        ),
        at: None,
    });
}

fn op_word(op: Op) -> &'static str {
    match op {
        Op::Backup => "backup",
        Op::Restore => "restore",
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(n);
    let s = lines[from..].join(" | ");
    if s.is_empty() { "(nothing)".into() } else { s }
}

/// The client's calls and the server's statement ends, as lanes, with the
/// call-log `seq` of each event (`None` for a statement's end).
fn timeline(op: Op, log: &Log, run: &OpRun) -> (Vec<TimelineEvent>, Vec<Option<u64>>) {
    const EVENTS_MAX: usize = 2000;
    let mut ev: Vec<(u64, Option<u64>, TimelineEvent)> = log
        .calls
        .iter()
        .take(EVENTS_MAX)
        .map(|c| {
            let who = match c.args.device {
                Some(d) if c.method.on_device() => format!("dev{d}"),
                _ => "ctl".to_string(),
            };
            let mut detail = format!("{} -> {}", args_text(c), c.ret.name);
            if let Some(cmd) = c.fetched() {
                detail.push_str(&format!(" {} size={} id={}", cmd.name, cmd.size, cmd.id));
            }
            (
                c.end_ms,
                Some(c.seq),
                TimelineEvent {
                    seq: 0,
                    t: c.end_ms,
                    who,
                    what: c.method.name().to_string(),
                    detail,
                    clause: c.clause.clone(),
                },
            )
        })
        .collect();
    for o in &run.outcomes {
        let t = log
            .process
            .as_ref()
            .map_or(0, |p| p.log_ms_at(o.ended_unix_ms));
        let msgs: Vec<String> = o
            .outcome
            .messages
            .iter()
            .map(|m| m.number.to_string())
            .collect();
        ev.push((
            t,
            None,
            TimelineEvent {
                seq: 0,
                t,
                who: "sql".into(),
                what: format!("{} {:?}", op_word(op), o.outcome.status),
                detail: format!("{} messages [{}]", o.statement.to_tsql(), msgs.join(", ")),
                clause: None,
            },
        ));
    }
    ev.sort_by_key(|(t, _, _)| *t);
    ev.into_iter()
        .enumerate()
        .map(|(i, (_, seq, mut e))| {
            e.seq = i as u64;
            (e, seq)
        })
        .unzip()
}

fn args_text(c: &CallRecord) -> String {
    let a = &c.args;
    let mut parts = Vec::new();
    if let Some(n) = &a.name {
        parts.push(format!("name={n}"));
    }
    if let Some(t) = a.timeout {
        parts.push(match t.ms {
            Some(ms) => format!("timeout={ms}"),
            None => "timeout=INFINITE".into(),
        });
    }
    if let (Some(cmd), Some(done)) = (&a.command, &a.completion) {
        parts.push(format!(
            "{} id={} code={} bytes={}",
            cmd.name,
            cmd.id,
            done.name.clone().unwrap_or_else(|| done.code.to_string()),
            done.bytes
        ));
    }
    if c.block_modified == Some(true) {
        parts.push("BLOCK MODIFIED".into());
    }
    parts.join(" ")
}

/// One line saying what the case does.
pub fn describe(c: &ClientCase) -> String {
    let mut s = match c.op {
        Op::Backup => format!("a BACKUP over {} device(s)", c.devices),
        Op::Restore => format!(
            "a BACKUP then a RESTORE of the program's own media over {} device(s)",
            c.devices
        ),
    };
    if c.mid_flushes > 0 {
        s.push_str(&format!(", {} mid-stream Flush(es)", c.mid_flushes));
    }
    if !c.probes.is_empty() {
        s.push_str(", probe commands");
    }
    if let Some(f) = c.server_fault {
        s.push_str(&format!(", server fault {f:?} at command {}", c.at));
    }
    if let Some(f) = c.process_fault {
        s.push_str(&format!(", process fault {f:?}"));
    }
    if let Some(f) = c.media_fault {
        s.push_str(&format!(", media {f:?}"));
    }
    s
}

/// The run's report.
pub fn run_report(a: &ClientTestArgs, h: &Harness, results: &[CaseResult]) -> RunReport {
    let mut seeds: Vec<u64> = results.iter().map(|r| r.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let hits: std::collections::BTreeMap<String, u64> = results
        .iter()
        .flat_map(|r| r.clauses.iter())
        .fold(Default::default(), |mut m, c| {
            *m.entry(c.clone()).or_default() += 1;
            m
        });
    let coverage = Coverage::from_hits(
        results
            .iter()
            .flat_map(|r| r.clauses.iter().map(String::as_str)),
        &hits,
        &Default::default(),
    );
    let profile = vdi_spec::Profile::default();
    let mut rep = RunReport::new(
        ToolInfo {
            name: "vdisim".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            git_commit: option_env!("VDISIM_GIT_COMMIT").map(str::to_string),
            build_profile: if cfg!(debug_assertions) {
                "debug".into()
            } else {
                "release".into()
            },
            rustc: None,
        },
        vec![BackendInfo {
            name: "client".into(),
            description: format!("the program `{}`", a.program),
            library: h
                .library_dir
                .as_ref()
                .map(|d| d.join("libsqlvdi.so").display().to_string()),
            profile: profile.name.clone(),
            profile_params: serde_json::to_value(&profile).unwrap_or_default(),
        }],
        seeds,
        results.to_vec(),
        coverage,
    );
    rep.expected_deviations_file = a.exclude.as_ref().map(|p| p.display().to_string());
    rep
}
