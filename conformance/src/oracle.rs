//! The oracle: runs one case on one backend at one seed and grades it.
//!
//! A case's verdict comes from (in order): the backend could not stage it
//! (*unimplemented*); a step's result differed from its expectation, or the
//! run's end differed from `[expect]`, or an invariant failed (*violation*,
//! with the clause and the first divergence); a step matched only a lenient
//! alternative (*lenient*); otherwise *pass*. Expected deviations are applied
//! by the runner.

use crate::backend::{Backend, BackendError, CaseSetup, Review};
use crate::scenario::{Scenario, parse_hresult};
use crate::script::{self, Grade, ScriptRun, StepOutcome};
use std::collections::BTreeMap;
use vdi_model::outcome::Status;
use vdi_reports::schema::{CaseResult, Divergence, TimelineEvent, Verdict};
use vdi_sim::world::{End, RunResult};
use vdi_spec::id;
use vdi_spec::{ClientState, Hresult, TableMethod};

/// What one case run produced, besides its report entry.
pub struct Graded {
    pub result: CaseResult,
    pub clause_hits: BTreeMap<String, u64>,
    pub cell_hits: BTreeMap<(TableMethod, ClientState), u64>,
}

/// Options of a run that shape each case.
#[derive(Clone, Debug)]
pub struct CaseOptions {
    /// Keep a timeline for passing results too (failures always keep one).
    pub keep_timeline: bool,
    /// Longest timeline kept for a passing result.
    pub timeline_cap: usize,
    /// Longest timeline kept for any other verdict.
    pub failure_timeline_cap: usize,
}

impl Default for CaseOptions {
    fn default() -> Self {
        CaseOptions {
            keep_timeline: true,
            timeline_cap: 150,
            failure_timeline_cap: 2000,
        }
    }
}

/// The setup of `sc` at `seed`.
pub fn setup(sc: &Scenario, seed: u64, record: bool) -> CaseSetup {
    CaseSetup {
        seed,
        profile: sc.profile().unwrap_or_default(),
        budget_ms: sc.budget_ms,
        seed_backups: script::seeded_backups(sc),
        faults: sc.fault_plan(seed),
        record_trace: record,
        time_scale: time_scale(sc, seed),
        max_steps: sc.max_steps,
    }
}

/// Real milliseconds the longest wait of a case should take at its scale.
pub const TARGET_REAL_MS: u64 = 400;
/// Real milliseconds the shortest time constant of a case may shrink to.
pub const MIN_REAL_MS: u64 = 2;
/// The largest time scale (virtual ms per real ms).
pub const MAX_TIME_SCALE: u32 = 1000;

/// The time scale (virtual ms per real ms) backends that run in real time
/// use for `sc` at `seed`.
///
/// The rule, from the case's own time constants (virtual ms):
///
/// - *longest*: the longest wait the run may sit through — every `sleep`
///   and `wait-statement` ms, every finite non-zero step timeout
///   (GetConfiguration, GetCommand, drain; 10 s when not given), the
///   watchdog (serverTimeOut × `watchdog-factor`, of the program's or a
///   step's configuration), a program's GetCommand and GetConfiguration
///   timeouts, every fault's ms (stalls, `at-ms`), and the budget when the
///   case expects to end by `hang` or `budget`. (A program's
///   GetConfiguration attempts × timeout is left out: it elapses only when
///   no server ever configures the set, and would coarsen the clock of
///   every case for it);
/// - *shortest*: the smallest non-zero finite one of the same constants,
///   taken singly (a step or program timeout, a sleep, serverTimeOut, a
///   fault's ms).
///
/// The scale makes the longest wait take about [`TARGET_REAL_MS`] real ms
/// (`ceil(longest / TARGET_REAL_MS)`), but never so much that the shortest
/// falls under [`MIN_REAL_MS`] real ms (`shortest / MIN_REAL_MS`), clamped
/// to `1..=`[`MAX_TIME_SCALE`]. A case whose longest wait is at most
/// [`TARGET_REAL_MS`] runs in real time (scale 1).
pub fn time_scale(sc: &Scenario, seed: u64) -> u32 {
    let (longest, shortest) = time_constants(sc, seed);
    scale_for(longest, shortest)
}

/// [`time_scale`]'s arithmetic: the scale for a longest wait and the
/// shortest meaningful constant (`None`: there is none).
pub fn scale_for(longest: u64, shortest: Option<u64>) -> u32 {
    let want = longest.div_ceil(TARGET_REAL_MS).max(1);
    let cap = shortest.map_or(u64::from(MAX_TIME_SCALE), |s| (s / MIN_REAL_MS).max(1));
    u32::try_from(want.min(cap).min(u64::from(MAX_TIME_SCALE)))
        .unwrap_or(MAX_TIME_SCALE)
        .max(1)
}

/// `(longest, shortest)` of [`time_scale`].
pub fn time_constants(sc: &Scenario, seed: u64) -> (u64, Option<u64>) {
    use crate::scenario::{Do, TimeoutSpec};
    use vdi_model::fault::{Fault, Trigger};
    const INFINITE: u64 = vdi_spec::layout::limits::INFINITE as u64;
    let profile = sc.profile().unwrap_or_default();
    let factor = u64::from(profile.watchdog_factor.max(1));
    let mut longest = 0u64;
    let mut shortest: Option<u64> = None;
    let mut single = |v: u64, longest: &mut u64| {
        if v > 0 && v != INFINITE {
            *longest = (*longest).max(v);
            shortest = Some(shortest.map_or(v, |s| s.min(v)));
        }
    };
    for s in &sc.steps {
        match s.action {
            Some(Do::Sleep | Do::WaitStatement) => single(s.ms.unwrap_or(0), &mut longest),
            Some(Do::GetConfiguration | Do::GetCommand | Do::Drain) => match &s.timeout {
                None => single(10_000, &mut longest),
                Some(TimeoutSpec::Ms(v)) if *v > 0 => single(*v as u64, &mut longest),
                Some(_) => {}
            },
            _ => {}
        }
        if let Some(t) = s.config.as_ref().and_then(|c| c.server_time_out) {
            single(u64::from(t), &mut longest);
            longest = longest.max(u64::from(t) * factor);
        }
        if let Some(Fault::ServerStall { ms } | Fault::ClientStall { ms }) = &s.fault {
            single(*ms, &mut longest);
        }
    }
    if sc.client.is_some() {
        let spec = sc.client_spec(seed);
        let gct = u64::from(spec.get_command_timeout_ms);
        let gcf = u64::from(spec.get_configuration_timeout_ms);
        single(gct, &mut longest);
        single(gcf, &mut longest);
        let st = u64::from(spec.server_timeout_ms);
        single(st, &mut longest);
        longest = longest.max(st * factor);
    }
    for pf in &sc.fault_plan(seed).faults {
        if let Trigger::AtMs { ms } = pf.trigger {
            single(ms, &mut longest);
        }
        if let Fault::ServerStall { ms } | Fault::ClientStall { ms } = pf.fault {
            single(ms, &mut longest);
        }
    }
    if matches!(sc.expect.end.as_deref(), Some("hang" | "budget")) {
        longest = longest.max(sc.budget_ms);
    }
    (longest, shortest)
}

/// The one-line command that reproduces a case run.
pub fn repro(sc: &Scenario, backend: &str, seed: u64) -> String {
    let b = if backend == "model" {
        String::new()
    } else {
        format!(" --backend {backend}")
    };
    format!("vdisim replay {}{b} --seed {seed}", sc.path.display())
}

/// The model's code for each step of a script case at `seed`.
pub fn predict(sc: &Scenario, seed: u64) -> Vec<Option<Hresult>> {
    let mut m = crate::backends::model::ModelBackend::default();
    let run = script::run(&mut m, sc, &setup(sc, seed, false), &[]);
    let mut out = vec![None; sc.steps.len()];
    for s in run.steps {
        if let Some(slot) = out.get_mut(s.index - 1) {
            *slot = s.code;
        }
    }
    out
}

fn end_name(e: End) -> &'static str {
    match e {
        End::Finished => "finished",
        End::Hang => "hang",
        End::Budget => "budget",
        End::StepLimit => "step-limit",
    }
}

/// A failed `[expect]` check: (clause, expected, actual).
type EndFailure = (String, String, String);

/// Checks `[expect]` against a run; the first failure as (clause, expected, actual).
fn check_end(sc: &Scenario, r: &RunResult) -> Option<EndFailure> {
    let first = sc.clauses.first().cloned().unwrap_or_default();
    check_run_end(sc, r, &first)
        .or_else(|| check_outcome(sc, r, &first))
        .or_else(|| check_reason(sc, r, &first))
        .or_else(|| check_messages(sc, r))
        .or_else(|| check_device_ends(sc, r, &first))
        .or_else(|| check_believed_success(sc, r))
        .or_else(|| check_cited_clauses(sc, r))
        .or_else(|| check_violations(sc, r))
}

/// `end`: how the run ended (`finished` when not given).
fn check_run_end(sc: &Scenario, r: &RunResult, first: &str) -> Option<EndFailure> {
    let want_end = sc.expect.end.clone().unwrap_or_else(|| "finished".into());
    if end_name(r.end) != want_end {
        return Some((
            first.into(),
            format!("run ends {want_end}"),
            format!("run ended {}", end_name(r.end)),
        ));
    }
    None
}

/// `outcome`: `not-started` means no statement ran; `succeeded` checks
/// every statement, `failed` (or any other word: running) the last one.
fn check_outcome(sc: &Scenario, r: &RunResult, first: &str) -> Option<EndFailure> {
    let o = sc.expect.outcome.as_ref()?;
    let want = match o.as_str() {
        "succeeded" => Some(Status::Succeeded),
        "failed" => Some(Status::Failed),
        "not-started" => None,
        _ => Some(Status::Running),
    };
    let Some(w) = want else {
        if !r.statements.is_empty() {
            return Some((
                first.into(),
                "no statement".into(),
                format!("{} statement(s)", r.statements.len()),
            ));
        }
        return None;
    };
    if r.statements.is_empty() {
        return Some((
            first.into(),
            format!("statement {o}"),
            "no statement ran".into(),
        ));
    }
    // "succeeded": every statement; "failed": the last one.
    let checked: Vec<_> = if w == Status::Succeeded {
        r.statements.iter().collect()
    } else {
        r.statements.iter().rev().take(1).collect()
    };
    for (s, out) in checked {
        if out.status != w {
            return Some((
                id::TERM_OUTCOME_DECIDES.into(),
                format!("{} {o}", s.kind.verb()),
                format!(
                    "{} {:?} {}",
                    s.kind.verb(),
                    out.status,
                    out.reason.map(|r| format!("({r:?})")).unwrap_or_default()
                ),
            ));
        }
    }
    None
}

/// `reason`: the failure reason of the last statement.
fn check_reason(sc: &Scenario, r: &RunResult, first: &str) -> Option<EndFailure> {
    let reason = sc.expect.reason?;
    let got = r.statements.last().and_then(|(_, o)| o.reason);
    if got != Some(reason) {
        return Some((
            first.into(),
            format!("failure reason {reason:?}"),
            format!("{got:?}"),
        ));
    }
    None
}

/// `messages`: each number is among some statement's messages.
fn check_messages(sc: &Scenario, r: &RunResult) -> Option<EndFailure> {
    for n in &sc.expect.messages {
        if !r
            .statements
            .iter()
            .any(|(_, o)| o.messages.iter().any(|m| m.number == *n))
        {
            return Some((
                id::SERVER_OUTCOME_MESSAGES.into(),
                format!("message {n}"),
                "absent".into(),
            ));
        }
    }
    None
}

/// `devices`: the code each of the client's devices ended with (`any`
/// matches every end).
fn check_device_ends(sc: &Scenario, r: &RunResult, first: &str) -> Option<EndFailure> {
    let devs = sc.expect.devices.as_ref()?;
    for (i, want) in devs.iter().enumerate() {
        let got = r.client.devices.get(i).and_then(|d| d.end);
        let want_c = parse_hresult(want);
        if want != "any" && got != want_c {
            return Some((
                first.into(),
                format!("dev{i} ends {want}"),
                format!("dev{i} ended {}", got.map_or("-".into(), |c| c.to_string())),
            ));
        }
    }
    None
}

/// `client-believes-success`: what the client concluded of the run.
fn check_believed_success(sc: &Scenario, r: &RunResult) -> Option<EndFailure> {
    let b = sc.expect.client_believes_success?;
    if r.client.believes_success != Some(b) {
        return Some((
            id::TERM_OUTCOME_DECIDES.into(),
            format!("client believes success = {b}"),
            format!("{:?}", r.client.believes_success),
        ));
    }
    None
}

/// `hits`: each clause is cited by the run.
fn check_cited_clauses(sc: &Scenario, r: &RunResult) -> Option<EndFailure> {
    for h in &sc.expect.hits {
        if !r.clauses.keys().any(|k| k == h) {
            return Some((
                h.clone(),
                format!("the run cites clause {h}"),
                "never cited".into(),
            ));
        }
    }
    None
}

/// `violations`: the invariant check reports exactly these clauses (an
/// unexpected violation first, then a missing one).
fn check_violations(sc: &Scenario, r: &RunResult) -> Option<EndFailure> {
    let e = &sc.expect;
    for v in &r.violations {
        if !e.violations.contains(&v.clause) {
            return Some((v.clause.clone(), "invariants hold".into(), v.what.clone()));
        }
    }
    for v in &e.violations {
        if !r.violations.iter().any(|x| &x.clause == v) {
            return Some((
                v.clone(),
                format!("the invariant check reports {v}"),
                "not reported".into(),
            ));
        }
    }
    None
}

fn timeline(r: &RunResult, cap: usize) -> Vec<TimelineEvent> {
    r.trace
        .events()
        .iter()
        .take(cap)
        .map(|e| TimelineEvent {
            seq: e.seq,
            t: e.t,
            who: e.who.clone(),
            what: e.what.clone(),
            detail: e.detail.clone(),
            clause: e.clause.map(String::from),
        })
        .collect()
}

/// What a case has shown so far: its verdict, the verdict's detail and the
/// first divergence.
struct Finding {
    verdict: Verdict,
    detail: String,
    divergence: Option<Divergence>,
}

impl Finding {
    fn pass() -> Self {
        Finding::of(Verdict::Pass, String::new())
    }

    fn of(verdict: Verdict, detail: String) -> Self {
        Finding {
            verdict,
            detail,
            divergence: None,
        }
    }
}

/// What a run leaves in its result record.
struct RunRecord {
    trace_hash: String,
    virtual_ms: u64,
    steps: u64,
    timeline: Vec<TimelineEvent>,
}

/// Runs `sc` on `b` at `seed` and grades it. `predicted` is the model's
/// code per step (script cases; empty for the model itself).
pub fn grade(
    b: &mut dyn Backend,
    sc: &Scenario,
    seed: u64,
    predicted: &[Option<Hresult>],
    opts: &CaseOptions,
) -> Graded {
    let name = b.info().name;
    let set = setup(sc, seed, true);
    let (run, mut finding) = match unimplemented(b, sc, &name) {
        Some(f) => (None, f),
        None if sc.client.is_some() => run_program(b, sc, seed, &set),
        None => run_script(b, sc, &set, predicted),
    };
    let (clause_hits, cell_hits) = hits(run.as_ref());
    let mut record = run_record(run.as_ref(), opts);
    if matches!(finding.verdict, Verdict::Pass | Verdict::Lenient)
        && let Some(r) = &run
        && let Some(f) = end_violation(sc, r)
    {
        finding = if b.observes_server() {
            f
        } else {
            unobserved(sc, r).unwrap_or(f)
        };
    }
    let staged = binary_halves(b, sc, seed, &mut finding);
    let note = b.review().map(|r| reviewed(&mut finding, r, sc));
    if finding.verdict == Verdict::Pass {
        finding.detail = pass_detail(sc);
        for n in staged.into_iter().chain(note) {
            finding.detail.push_str(&format!(" ({n})"));
        }
        if opts.keep_timeline {
            record.timeline.truncate(opts.timeline_cap);
        } else {
            record.timeline.clear();
        }
    }
    Graded {
        result: case_result(sc, &name, seed, finding, record),
        clause_hits,
        cell_hits,
    }
}

/// Grades the binary halves of a case `b` stages twice
/// ([`Backend::binary_halves`]) once its own run has passed: each half
/// runs the script as a case of its own (steps and `[expect]`); the first
/// that does not pass replaces the finding, its detail naming the half. A
/// case needing a half that cannot be staged is *unimplemented*. Returns
/// the staging note a *pass* carries. Nothing of a half enters the case's
/// trace, hits or hash: those are the run's.
fn binary_halves(b: &mut dyn Backend, sc: &Scenario, seed: u64, f: &mut Finding) -> Option<String> {
    let name = b.info().name;
    let halves = match b.binary_halves(sc)? {
        _ if !matches!(f.verdict, Verdict::Pass | Verdict::Lenient) => return None,
        Ok(h) => h,
        Err(why) => {
            *f = Finding::of(
                Verdict::Unimplemented,
                format!(
                    "the {name} backend stages this case also through the binary interface of the built-in stand-in, which it cannot here: {why}"
                ),
            );
            return None;
        }
    };
    let set = setup(sc, seed, false);
    let predicted = predict(sc, seed);
    let mut labels = Vec::new();
    for h in halves {
        let (run, mut hf) = run_script(h.backend, sc, &set, &predicted);
        if run.is_none() {
            // A reset that failed leaves the half's case open (and the
            // process-wide ABI case lock held): end it, so that the next
            // half, or the next case, can start.
            let _ = h.backend.finish();
        }
        if matches!(hf.verdict, Verdict::Pass | Verdict::Lenient)
            && let Some(r) = &run
            && let Some(e) = end_violation(sc, r)
        {
            hf = e;
        }
        let detail = format!(
            "binary interface of the built-in stand-in ({}, in process): {}",
            h.label, hf.detail
        );
        match hf.verdict {
            Verdict::Pass => {}
            Verdict::Lenient if f.verdict == Verdict::Pass => *f = Finding::of(hf.verdict, detail),
            Verdict::Lenient => {}
            v => {
                *f = Finding {
                    verdict: v,
                    detail,
                    divergence: hf.divergence,
                };
                return None;
            }
        }
        labels.push(h.label);
    }
    Some(format!(
        "staged on the model and through the built-in stand-in's binary interface (in process): {}",
        labels.join(" and ")
    ))
}

/// Applies a backend's [`Review`] (the evidence besides its run) to the
/// run's finding: an imposed *unimplemented* or *violation* replaces it, an
/// imposed *lenient* replaces a *pass*; returns the note a *pass* keeps.
fn reviewed(f: &mut Finding, r: Review, sc: &Scenario) -> String {
    if f.verdict == Verdict::Unimplemented {
        return r.note;
    }
    match r.verdict {
        Some(v @ (Verdict::Unimplemented | Verdict::Violation)) => {
            f.divergence = (v == Verdict::Violation).then(|| Divergence {
                seq: 0,
                clause: r.clause.clone().or_else(|| sc.clauses.first().cloned()),
                expected: "a server answer the model allows".into(),
                actual: r.note.clone(),
            });
            *f = Finding {
                verdict: v,
                detail: r.note.clone(),
                divergence: f.divergence.take(),
            };
        }
        Some(Verdict::Lenient) if f.verdict == Verdict::Pass => {
            *f = Finding::of(Verdict::Lenient, r.note.clone());
        }
        _ if f.verdict != Verdict::Pass => {
            f.detail.push_str(&format!(" ({})", r.note));
        }
        _ => {}
    }
    r.note
}

/// For a backend that does not observe the server half (its clause hits,
/// its failure reasons: over TDS both failure messages of a watchdog and
/// of a client's abort are the same 3013 family), an end that fails only
/// on `hits` or `reason` is *unimplemented*, not a violation; every other
/// expectation (the outcome above all) still holds it. `None`: it fails
/// on something else too.
fn unobserved(sc: &Scenario, r: &RunResult) -> Option<Finding> {
    let mut blind = sc.clone();
    blind.expect.hits.clear();
    blind.expect.reason = None;
    if end_violation(&blind, r).is_some() {
        return None;
    }
    Some(Finding::of(
        Verdict::Unimplemented,
        "the case's end is decided by the server's clause hits or failure reason, which this backend does not observe".into(),
    ))
}

/// *Unimplemented* when `b` lacks a capability the case requires.
fn unimplemented(b: &dyn Backend, sc: &Scenario, name: &str) -> Option<Finding> {
    let missing: Vec<&String> = sc
        .requires
        .iter()
        .filter(|r| !b.capabilities().contains(&r.as_str()))
        .collect();
    if missing.is_empty() {
        return None;
    }
    Some(Finding::of(
        Verdict::Unimplemented,
        format!(
            "the {name} backend cannot stage this case: it needs {}",
            missing
                .iter()
                .map(|s| format!("{s} ({})", crate::scenario::capability_meaning(s)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// Runs a program case: *unimplemented* when the backend cannot stage it,
/// a *violation* when it fails.
fn run_program(
    b: &mut dyn Backend,
    sc: &Scenario,
    seed: u64,
    set: &CaseSetup,
) -> (Option<RunResult>, Finding) {
    match b.run_program(set, &sc.client_spec(seed)) {
        Ok(r) => (Some(r), Finding::pass()),
        Err(BackendError::Unsupported(m)) => (
            None,
            Finding::of(
                Verdict::Unimplemented,
                format!("the backend cannot stage this case: {m}"),
            ),
        ),
        Err(e) => (
            None,
            Finding::of(Verdict::Violation, format!("the backend failed: {e}")),
        ),
    }
}

/// Runs a script case and grades its steps.
fn run_script(
    b: &mut dyn Backend,
    sc: &Scenario,
    set: &CaseSetup,
    predicted: &[Option<Hresult>],
) -> (Option<RunResult>, Finding) {
    let s = script::run(b, sc, set, predicted);
    let finding = grade_steps(sc, &s);
    (s.result, finding)
}

/// A script run's verdict from its steps: *unimplemented* if a step is; a
/// *violation* at the first mismatching step, or when the script could not
/// finish (unless it ended as `[expect]` says); *lenient* if a step matched
/// only a lenient alternative; else *pass*.
fn grade_steps(sc: &Scenario, s: &ScriptRun) -> Finding {
    if let Some(u) = s.steps.iter().find(|x| x.grade == Grade::Unimplemented) {
        Finding::of(Verdict::Unimplemented, u.note.clone())
    } else if let Some(BackendError::Unsupported(why)) = &s.error {
        // The backend could not stage the case at all (its reset said so).
        Finding::of(Verdict::Unimplemented, why.clone())
    } else if let Some(m) = s.steps.iter().find(|x| x.grade == Grade::Mismatch) {
        mismatch(sc, m)
    } else if let Some(e) = &s.error
        && !ended_as_expected(sc, e)
    {
        Finding::of(
            Verdict::Violation,
            format!("the script could not finish: {e}"),
        )
    } else if let Some(l) = s.steps.iter().find(|x| x.grade == Grade::Lenient) {
        Finding::of(
            Verdict::Lenient,
            format!(
                "step {} ({}): {} accepted as lenient; the reference prefers {}",
                l.index,
                l.action,
                l.code.map_or("-".into(), |c| c.to_string()),
                l.expected
            ),
        )
    } else {
        Finding::pass()
    }
}

/// Whether a script stopped because the run ended as `[expect]` says.
fn ended_as_expected(sc: &Scenario, e: &BackendError) -> bool {
    matches!(e, BackendError::Ended(x) if sc.expect.end.as_deref().is_some_and(|w| x.eq_ignore_ascii_case(w)))
}

/// The *violation* of a step whose result differs from its expectation.
fn mismatch(sc: &Scenario, m: &StepOutcome) -> Finding {
    let actual = m
        .code
        .map_or(format!("no result ({})", m.note), |c| c.to_string());
    Finding {
        verdict: Verdict::Violation,
        detail: format!(
            "step {} ({} on {}): expected {}, got {}",
            m.index, m.action, m.thread, m.expected, actual
        ),
        divergence: Some(Divergence {
            seq: m.index as u64,
            clause: m.clause.clone().or_else(|| sc.clauses.first().cloned()),
            expected: m.expected.clone(),
            actual,
        }),
    }
}

/// The clauses and table cells a run cited, with their counts.
fn hits(
    run: Option<&RunResult>,
) -> (
    BTreeMap<String, u64>,
    BTreeMap<(TableMethod, ClientState), u64>,
) {
    let mut clause_hits = BTreeMap::new();
    let mut cell_hits = BTreeMap::new();
    if let Some(r) = run {
        for (k, v) in &r.clauses {
            clause_hits.insert(k.to_string(), *v);
        }
        cell_hits = r.cells.clone();
    }
    (clause_hits, cell_hits)
}

/// The trace hash, virtual time, steps and timeline (at the longer of the
/// two caps) of a run; zeros when there was none.
fn run_record(run: Option<&RunResult>, opts: &CaseOptions) -> RunRecord {
    match run {
        Some(r) => RunRecord {
            trace_hash: r.trace_hash(),
            virtual_ms: r.now_ms,
            steps: r.steps,
            timeline: timeline(r, opts.failure_timeline_cap.max(opts.timeline_cap)),
        },
        None => RunRecord {
            trace_hash: String::from("0000000000000000"),
            virtual_ms: 0,
            steps: 0,
            timeline: Vec::new(),
        },
    }
}

/// A *violation* when the run's end differs from `[expect]`, its
/// divergence pointing at the first trace event citing the clause (or the
/// `End` event).
fn end_violation(sc: &Scenario, r: &RunResult) -> Option<Finding> {
    let (clause, expected, actual) = check_end(sc, r)?;
    // Point the divergence at the first trace event citing the clause, if any.
    let seq = r
        .trace
        .events()
        .iter()
        .find(|e| e.clause.is_some_and(|c| c == clause.as_str()) || e.what == "End")
        .map_or(0, |e| e.seq);
    Some(Finding {
        verdict: Verdict::Violation,
        detail: format!("[{clause}] expected {expected}; {actual}"),
        divergence: Some(Divergence {
            seq,
            clause: Some(clause),
            expected,
            actual,
        }),
    })
}

/// The detail of a passing case.
fn pass_detail(sc: &Scenario) -> String {
    format!(
        "{} as the model predicts",
        if sc.client.is_some() {
            "the program ran"
        } else {
            "every step returned"
        }
    )
}

/// The report entry of a graded case.
fn case_result(
    sc: &Scenario,
    name: &str,
    seed: u64,
    finding: Finding,
    record: RunRecord,
) -> CaseResult {
    CaseResult {
        case: sc.id.clone(),
        file: sc.path.display().to_string(),
        summary: sc.summary.clone(),
        clauses: sc.clauses.clone(),
        backend: name.to_string(),
        seed,
        verdict: finding.verdict,
        detail: finding.detail,
        divergence: finding.divergence,
        trace_hash: record.trace_hash,
        virtual_ms: record.virtual_ms,
        steps: record.steps,
        repro: repro(sc, name, seed),
        deviation_reason: None,
        timeline: record.timeline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn case(text: &str) -> Scenario {
        Scenario::parse(text, Path::new("test.toml")).expect("scenario")
    }

    #[test]
    fn scale_arithmetic() {
        // Short waits run in real time.
        assert_eq!(scale_for(0, None), 1);
        assert_eq!(scale_for(TARGET_REAL_MS, Some(10)), 1);
        // The longest wait is brought to about TARGET_REAL_MS.
        assert_eq!(scale_for(2_000, Some(1_000)), 5);
        assert_eq!(scale_for(120_000, Some(1_000)), 300);
        // The shortest constant stays at MIN_REAL_MS or more.
        assert_eq!(scale_for(120_000, Some(90)), 45);
        assert_eq!(scale_for(120_000, Some(1)), 1);
        // Clamped to MAX_TIME_SCALE.
        assert_eq!(scale_for(3_600_000, None), MAX_TIME_SCALE);
        assert_eq!(scale_for(u64::MAX, Some(u64::MAX)), MAX_TIME_SCALE);
    }

    const PROGRAM: &str = r#"
id = "t"
summary = "s"
clauses = ["watchdog.fires"]
[server]
statement = "backup-database"
[client]
program = "reference"
server-timeout-ms = 1000
"#;

    #[test]
    fn program_case_scales_to_its_watchdog_and_stalls() {
        // Watchdog 2 × 1000 ms; the 10 s GetCommand timeout is longer.
        let sc = case(PROGRAM);
        assert_eq!(time_constants(&sc, 1), (10_000, Some(1_000)));
        assert_eq!(time_scale(&sc, 1), 25);
        // A 300 s stall dominates; an INFINITE GetCommand timeout is no constant.
        let sc = case(&format!(
            "{PROGRAM}get-command-timeout-ms = 4294967295\n[[faults.list]]\ntrigger = {{ on = \"on-command\", dev = 0, nth = 2 }}\nfault = {{ fault = \"client-stall\", ms = 300000 }}\n"
        ));
        assert_eq!(time_constants(&sc, 1), (300_000, Some(1_000)));
        assert_eq!(time_scale(&sc, 1), 500);
    }

    #[test]
    fn expected_hang_counts_the_budget_and_short_timeouts_cap_the_scale() {
        let sc = case(&format!("{PROGRAM}[expect]\nend = \"hang\"\n"));
        assert_eq!(time_constants(&sc, 1).0, sc.budget_ms);
        assert_eq!(time_scale(&sc, 1), 500, "capped by the 1000 ms timeouts");
        let sc = case(&format!(
            "{PROGRAM}get-command-timeout-ms = 90\n[[faults.list]]\ntrigger = {{ on = \"on-command\", dev = 0, nth = 2 }}\nfault = {{ fault = \"server-stall\", ms = 30000 }}\n"
        ));
        assert_eq!(time_constants(&sc, 1), (30_000, Some(90)));
        assert_eq!(time_scale(&sc, 1), 45);
    }

    #[test]
    fn scripted_case_scales_to_its_sleeps_and_step_timeouts() {
        let script = r#"
id = "t"
summary = "s"
clauses = ["get-command.timeout"]
[[step]]
do = "create-ex"
[[step]]
do = "get-configuration"
timeout = 100
[[step]]
do = "sleep"
ms = 600000
"#;
        let sc = case(script);
        assert_eq!(time_constants(&sc, 1), (600_000, Some(100)));
        assert_eq!(time_scale(&sc, 1), 50);
        // Without the sleep: 100 ms fits in real time.
        let short = script.replace("ms = 600000", "ms = 10");
        assert_eq!(time_scale(&case(&short), 1), 1);
    }
}
