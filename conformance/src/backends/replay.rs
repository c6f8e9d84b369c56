//! The replay backend: `vdisim run --backend replay --recording DIR`.
//!
//! A directory of recordings of real deployments (the recording
//! `libsqlvdi.so`, docs/RECORDING.md) becomes a regression suite for the
//! model. Each case runs on the model (as the `model` backend runs it);
//! the model's run has a client-side call *shape* ([`Shape`]); a recorded
//! set with the same shape grades the case: the recorded server answers
//! are replayed through the client transition table and the command rules
//! (the judge's server side, `crate::judge::server`) under the case's
//! profile. The case is
//!
//! - *unimplemented* when no recording has its shape ("no recording of
//!   this shape"), whatever the model does;
//! - a *violation* (a model deviation) when the matching recording shows
//!   a server answer the model does not allow, or a profile choice the
//!   case's profile does not make where no profile value explains it;
//!   *lenient* when every such answer is another profile value's choice;
//! - otherwise graded as the model's run is, with the recording named.
//!
//! Bounds: at most [`FILES_MAX`] recordings (`*.jsonl`) are read from DIR,
//! each within the judge's bounds (`judge::parse`: lines, line length,
//! file size), with at most [`CALLS_MAX`] calls in all; they are read once
//! per process and shared by the run's workers.

use crate::backend::{Backend, BackendError, BackendInfo, CaseSetup, Review, Ticket};
use crate::backends::model::ModelBackend;
use crate::judge::{parse, server};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use vdi_model::call::{Call, Reply};
use vdi_model::calllog::{Api, CallRecord};
use vdi_model::client::DeviceHandle;
use vdi_model::fault::Fault;
use vdi_model::msg::Timeout;
use vdi_model::outcome::{Outcome, Status};
use vdi_model::process::ClientProcess;
use vdi_model::programs::ClientSpec;
use vdi_model::statement::Statement;
use vdi_reports::schema::Verdict;
use vdi_sim::world::RunResult;

/// The most recordings read from the directory.
pub const FILES_MAX: usize = 10_000;
/// The most call lines kept from all of them together (the judge's bound
/// for one recording): the recorded sets stay in memory while the catalog
/// runs, shared by the workers.
pub const CALLS_MAX: usize = parse::EVENTS_MAX;

/// The client-side call shape of one set's life, the key a case and a
/// recording match on (docs/RECORDING.md §4).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shape {
    /// `write` (the first command delivered was a VDC_Write), `read`, or
    /// `none` (no data command was delivered).
    pub direction: &'static str,
    /// The deviceCount the client created the set with.
    pub devices: u32,
    /// The controller's calls in order (Create / CreateEx as `Create`,
    /// GetConfiguration, OpenDevice, SignalAbort, Close), each with the
    /// code it returned.
    pub control: Vec<String>,
    /// Per device index: the commands delivered to it (GetCommand
    /// returning NOERROR) and the completion codes other than
    /// ERROR_SUCCESS the client reported (`!N`), in order, a run of the
    /// same token written once (how many data commands a stream took
    /// depends on its size, which a catalog case and a recording do not
    /// share); then `-> CODE`, the code of its last GetCommand or
    /// CompleteCommand (`-> -` when it made none).
    pub device_ends: Vec<String>,
    /// `succeeded` / `failed`, when known (a recording's outcome is known
    /// only from its `.outcome` file).
    pub outcome: Option<&'static str>,
}

impl Shape {
    /// Whether a recording of shape `rec` matches a case of shape `self`
    /// (a recording without an outcome matches either outcome).
    pub fn matched_by(&self, rec: &Shape) -> bool {
        self.direction == rec.direction
            && self.devices == rec.devices
            && self.control == rec.control
            && self.device_ends == rec.device_ends
            && (rec.outcome.is_none() || rec.outcome == self.outcome)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} device(s), data {}, control [{}], devices [{}], outcome {}",
            self.devices,
            self.direction,
            self.control.join(", "),
            self.device_ends.join("; "),
            self.outcome.unwrap_or("not recorded")
        )
    }
}

fn control_call(m: &str) -> Option<&'static str> {
    Some(match m {
        "Create" | "CreateEx" => "Create",
        "GetConfiguration" => "GetConfiguration",
        "OpenDevice" => "OpenDevice",
        "SignalAbort" => "SignalAbort",
        "Close" => "Close",
        _ => return None,
    })
}

fn direction(code_name: &str) -> &'static str {
    match code_name {
        "VDC_Write" => "write",
        "VDC_Read" => "read",
        _ => "none",
    }
}

fn status_word(s: Status) -> Option<&'static str> {
    match s {
        Status::Succeeded => Some("succeeded"),
        Status::Failed => Some("failed"),
        _ => None,
    }
}

/// The shape of one recorded set incarnation's calls (in `seq` order).
pub fn recorded_shape(calls: &[&CallRecord], outcome: Option<&'static str>) -> Shape {
    let mut s = Shape {
        direction: "none",
        devices: 0,
        control: Vec::new(),
        device_ends: Vec::new(),
        outcome,
    };
    let mut ends = Devices::default();
    for c in calls {
        if let Some(m) = control_call(c.method.name()) {
            if m == "Create"
                && let Some(cfg) = &c.args.config
            {
                s.devices = cfg.cfg.device_count;
            }
            s.control.push(format!("{m} {}", c.ret.name));
        }
        if matches!(c.method, Api::GetCommand | Api::CompleteCommand)
            && let Some(d) = c.args.device
        {
            if let Some(cmd) = c.fetched() {
                if s.direction == "none" {
                    s.direction = direction(&cmd.name);
                }
                ends.token(d, cmd.name.clone());
            }
            if c.method == Api::CompleteCommand
                && let Some(done) = &c.args.completion
                && done.code != 0
            {
                ends.token(d, format!("!{}", done.code));
            }
            ends.end(d, c.ret.name.clone());
        }
    }
    s.device_ends = ends.shape(s.devices);
    s
}

/// Per device: its tokens (see [`Shape::device_ends`]) and its last code.
#[derive(Default)]
struct Devices(BTreeMap<u16, (Vec<String>, String)>);

impl Devices {
    fn token(&mut self, d: u16, t: String) {
        let (tokens, _) = self.0.entry(d).or_default();
        if tokens.last() != Some(&t) {
            tokens.push(t);
        }
    }

    fn end(&mut self, d: u16, code: String) {
        self.0.entry(d).or_default().1 = code;
    }

    fn shape(&self, devices: u32) -> Vec<String> {
        let n = self
            .0
            .keys()
            .next_back()
            .map_or(0, |d| u32::from(*d) + 1)
            .max(devices)
            .min(64);
        (0..n)
            .map(
                |d| match u16::try_from(d).ok().and_then(|d| self.0.get(&d)) {
                    Some((tokens, end)) if tokens.is_empty() => format!("-> {end}"),
                    Some((tokens, end)) => format!("{} -> {end}", tokens.join(" ")),
                    None => "-> -".into(),
                },
            )
            .collect()
    }
}

/// The code a trace detail `... -> NAME (0x...) ...` reports.
fn traced_code(detail: &str) -> Option<String> {
    let after = detail.split_once("-> ")?.1;
    Some(after.split_whitespace().next()?.to_string())
}

/// The shape of the model's run, from its trace (the `ctl` and `devN`
/// lines) and its first statement's outcome.
pub fn model_shape(r: &RunResult) -> Shape {
    let mut s = Shape {
        direction: "none",
        devices: 0,
        control: Vec::new(),
        device_ends: Vec::new(),
        outcome: r
            .statements
            .first()
            .and_then(|(_, o)| status_word(o.status)),
    };
    let mut ends = Devices::default();
    for e in r.trace.events() {
        if e.who == "ctl"
            && let Some(m) = control_call(&e.what)
            && let Some(code) = traced_code(&e.detail)
        {
            if m == "Create"
                && let Some(n) = e.detail.split("deviceCount=").nth(1)
            {
                let digits: String = n.chars().take_while(char::is_ascii_digit).collect();
                s.devices = digits.parse().unwrap_or(0);
            }
            s.control.push(format!("{m} {code}"));
        }
        let dev = e
            .who
            .strip_prefix("dev")
            .and_then(|d| d.parse::<u16>().ok());
        if let Some(d) = dev
            && matches!(e.what.as_str(), "GetCommand" | "CompleteCommand")
            && let Some(code) = traced_code(&e.detail)
        {
            if e.what == "GetCommand" && code == "NOERROR" {
                // `-> NOERROR (0x00000000) id=N VDC_Name (code) ...`
                let name = e
                    .detail
                    .split_whitespace()
                    .find(|w| w.starts_with("VDC_"))
                    .unwrap_or("VDC_?");
                if s.direction == "none" {
                    s.direction = direction(name);
                }
                ends.token(d, name.to_string());
            }
            if e.what == "CompleteCommand"
                && let Some(done) = traced_completion(&e.detail)
                && done != 0
            {
                ends.token(d, format!("!{done}"));
            }
            ends.end(d, code);
        }
    }
    s.device_ends = ends.shape(s.devices);
    s
}

/// The completion code of a traced CompleteCommand, `... code=NAME (N) ...`.
fn traced_completion(detail: &str) -> Option<u32> {
    let after = detail.split_once(" code=")?.1;
    let open = after.split_once('(')?.1;
    open.split_once(')')?.0.trim().parse().ok()
}

/// One recorded set: where it is, its calls and its shape.
pub struct RecordedSet {
    /// `FILE (pid P, set object O, incarnation I)`.
    pub label: String,
    pub calls: Vec<CallRecord>,
    pub shape: Shape,
}

/// Reads every `*.jsonl` recording in `dir` (sorted by name), split into
/// its set incarnations. A recording's statement outcome is the optional
/// file beside it, `NAME.outcome`: `success`, or the `Msg N` text sqlcmd
/// printed (as `vdisim judge --outcome` takes it).
pub fn load(dir: &Path) -> Result<Vec<RecordedSet>, BackendError> {
    let bad = |what: String| BackendError::Failed(format!("--recording {}: {what}", dir.display()));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| bad(format!("cannot read the directory: {e}")))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    if files.len() > FILES_MAX {
        return Err(bad(format!(
            "{} recordings, more than the {FILES_MAX} read; split the directory",
            files.len()
        )));
    }
    let mut out = Vec::new();
    for f in files {
        let shown = f.display().to_string();
        let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        if len > crate::judge::RECORDING_BYTES_MAX {
            return Err(bad(format!("{shown}: {len} bytes, over the judge's bound")));
        }
        let file = std::fs::File::open(&f).map_err(|e| bad(format!("{shown}: {e}")))?;
        let rec = parse::read(std::io::BufReader::new(file), &shown)
            .map_err(|e| BackendError::Failed(e.to_string()))?;
        let outcome = outcome_beside(&f)?;
        split(&shown, &rec.call_log(), outcome, &mut out);
        let calls: usize = out.iter().map(|s| s.calls.len()).sum();
        if calls > CALLS_MAX {
            return Err(bad(format!(
                "more than {CALLS_MAX} calls in its recordings (reading {shown}); replay fewer or shorter recordings at a time"
            )));
        }
    }
    Ok(out)
}

fn outcome_beside(f: &Path) -> Result<Option<&'static str>, BackendError> {
    let p = f.with_extension("outcome");
    let Ok(text) = std::fs::read_to_string(&p) else {
        return Ok(None);
    };
    let t = text.trim();
    if t.eq_ignore_ascii_case("success") {
        Ok(Some("succeeded"))
    } else if t.contains("Msg ") {
        Ok(Some("failed"))
    } else {
        Err(BackendError::Failed(format!(
            "{}: {t:?} is not an outcome: write success, or the error sqlcmd printed (with its Msg N)",
            p.display()
        )))
    }
}

fn split(
    file: &str,
    log: &[CallRecord],
    outcome: Option<&'static str>,
    out: &mut Vec<RecordedSet>,
) {
    let mut sets: BTreeMap<(u32, u64, u32), Vec<&CallRecord>> = BTreeMap::new();
    for r in log.iter().filter(|r| r.incarnation > 0) {
        sets.entry((r.pid, r.object, r.incarnation))
            .or_default()
            .push(r);
    }
    for ((pid, obj, inc), mut calls) in sets {
        calls.sort_by_key(|r| r.seq);
        out.push(RecordedSet {
            label: format!("{file} (pid {pid}, set object {obj}, incarnation {inc})"),
            shape: recorded_shape(&calls, outcome),
            calls: calls.into_iter().cloned().collect(),
        });
    }
}

/// The recordings of `dir`, read once per process (every worker of a run
/// builds its own backend).
fn shared(dir: &Path) -> Result<Arc<Vec<RecordedSet>>, BackendError> {
    static READ: Mutex<Option<(PathBuf, Arc<Vec<RecordedSet>>)>> = Mutex::new(None);
    let mut g = READ.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((d, sets)) = g.as_ref()
        && d == dir
    {
        return Ok(Arc::clone(sets));
    }
    let sets = Arc::new(load(dir)?);
    *g = Some((dir.to_path_buf(), Arc::clone(&sets)));
    Ok(sets)
}

/// The replay backend: the model, graded by the recordings.
pub struct ReplayBackend {
    model: ModelBackend,
    dir: PathBuf,
    sets: Arc<Vec<RecordedSet>>,
    profile: vdi_spec::Profile,
    review: Option<Review>,
}

impl ReplayBackend {
    /// Reads the recordings in `dir`.
    pub fn open(dir: &Path) -> Result<ReplayBackend, BackendError> {
        Ok(ReplayBackend {
            model: ModelBackend::default(),
            dir: dir.to_path_buf(),
            sets: shared(dir)?,
            profile: vdi_spec::Profile::default(),
            review: None,
        })
    }

    /// Grades the model's run `r` by every recording of its shape.
    fn judge(&mut self, r: &RunResult) {
        let shape = model_shape(r);
        let matched: Vec<&RecordedSet> = self
            .sets
            .iter()
            .filter(|s| shape.matched_by(&s.shape))
            .collect();
        if matched.is_empty() {
            self.review = Some(Review {
                verdict: Some(Verdict::Unimplemented),
                note: format!(
                    "no recording of this shape in {}: {shape}",
                    self.dir.display()
                ),
                clause: None,
            });
            return;
        }
        let mut found = Vec::new();
        for set in &matched {
            for f in server::check(&set.calls, &self.profile) {
                found.push((set.label.as_str(), f));
            }
        }
        let labels: Vec<&str> = matched.iter().map(|s| s.label.as_str()).collect();
        self.review = Some(review_of(&labels, &found));
    }
}

/// The verdict the recordings give: as the judge's server side grades
/// each (`vdisim judge`'s `.server` result), the worst of them.
fn review_of(labels: &[&str], found: &[(&str, server::ServerFinding)]) -> Review {
    let deviations: Vec<&(&str, server::ServerFinding)> =
        found.iter().filter(|(_, f)| !f.agrees).collect();
    let words = |(label, f): &(&str, server::ServerFinding)| match &f.profile {
        Some((param, value)) => format!(
            "{label}: {}: {} (call {}); the recording supports profile {param} = \"{value}\"",
            f.clause, f.what, f.at
        ),
        None => format!("{label}: {}: {} (call {})", f.clause, f.what, f.at),
    };
    if deviations.is_empty() {
        return Review {
            verdict: None,
            note: format!(
                "graded from the recording {}: the recorded server did what the model allows",
                labels.join(", ")
            ),
            clause: None,
        };
    }
    let verdict = if deviations.iter().all(|(_, f)| f.profile.is_some()) {
        Verdict::Lenient
    } else {
        Verdict::Violation
    };
    Review {
        verdict: Some(verdict),
        note: format!(
            "model deviation in the recording of this shape: {}",
            deviations
                .iter()
                .map(|d| words(d))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        clause: deviations
            .iter()
            .find(|(_, f)| f.profile.is_none())
            .or(deviations.first())
            .map(|(_, f)| f.clause.clone()),
    }
}

impl Backend for ReplayBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: "replay".into(),
            description: format!(
                "the model, graded by the recordings in {} ({} recorded sets)",
                self.dir.display(),
                self.sets.len()
            ),
            library: None,
        }
    }

    fn capabilities(&self) -> &'static [&'static str] {
        self.model.capabilities()
    }

    fn reset(&mut self, setup: &CaseSetup) -> Result<(), BackendError> {
        self.review = None;
        self.profile = setup.profile.clone();
        let mut s = setup.clone();
        s.record_trace = true;
        self.model.reset(&s)
    }

    fn start(&mut self, thread: &str, call: Call) -> Result<Ticket, BackendError> {
        self.model.start(thread, call)
    }

    fn join(&mut self, t: Ticket) -> Result<Reply, BackendError> {
        self.model.join(t)
    }

    fn start_statement(&mut self, stmt: &Statement) -> Result<(), BackendError> {
        self.model.start_statement(stmt)
    }

    fn event(&mut self, fault: Fault) -> Result<(), BackendError> {
        self.model.event(fault)
    }

    fn sleep(&mut self, ms: u64) -> Result<(), BackendError> {
        self.model.sleep(ms)
    }

    fn wait_statement(&mut self, timeout: Timeout) -> Result<Option<Outcome>, BackendError> {
        self.model.wait_statement(timeout)
    }

    fn finish(&mut self) -> Result<RunResult, BackendError> {
        let r = self.model.finish()?;
        self.judge(&r);
        Ok(r)
    }

    fn client_process(&mut self) -> Option<&mut ClientProcess> {
        self.model.client_process()
    }

    fn start_drain(
        &mut self,
        thread: &str,
        dev: DeviceHandle,
        timeout: Timeout,
    ) -> Result<Ticket, BackendError> {
        self.model.start_drain(thread, dev, timeout)
    }

    fn run_program(
        &mut self,
        setup: &CaseSetup,
        spec: &ClientSpec,
    ) -> Result<RunResult, BackendError> {
        self.review = None;
        self.profile = setup.profile.clone();
        let mut s = setup.clone();
        s.record_trace = true;
        let r = self.model.run_program(&s, spec)?;
        self.judge(&r);
        Ok(r)
    }

    fn review(&mut self) -> Option<Review> {
        Some(self.review.take().unwrap_or_else(|| {
            Review {
                verdict: Some(Verdict::Unimplemented),
                note:
                    "the model's run of the case did not finish, so no recording was matched to it"
                        .into(),
                clause: None,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traced_codes_and_completions() {
        assert_eq!(
            traced_code("dev=0 -> VD_E_CLOSE (0x8077000E)").as_deref(),
            Some("VD_E_CLOSE")
        );
        assert_eq!(traced_code("dev0"), None);
        let done = "dev=0 id=2 VDC_Complete code=ERROR_OPERATION_ABORTED (995) bytes=0 -> NOERROR (0x00000000)";
        assert_eq!(traced_completion(done), Some(995));
        assert_eq!(traced_completion("dev=0 -> NOERROR (0x00000000)"), None);
    }

    #[test]
    fn device_tokens_collapse_runs_and_end_with_the_last_code() {
        let mut d = Devices::default();
        for t in ["VDC_Write", "VDC_Write", "VDC_Flush", "!29", "VDC_Write"] {
            d.token(0, t.into());
        }
        d.end(0, "VD_E_CLOSE".into());
        assert_eq!(
            d.shape(2),
            vec![
                "VDC_Write VDC_Flush !29 VDC_Write -> VD_E_CLOSE".to_string(),
                "-> -".to_string()
            ]
        );
    }

    #[test]
    fn a_recording_without_an_outcome_matches_either() {
        let case = Shape {
            direction: "write",
            devices: 1,
            control: vec!["Create NOERROR".into(), "Close NOERROR".into()],
            device_ends: vec!["VDC_Write -> VD_E_CLOSE".into()],
            outcome: Some("succeeded"),
        };
        let mut rec = case.clone();
        rec.outcome = None;
        assert!(case.matched_by(&rec));
        rec.outcome = Some("failed");
        assert!(!case.matched_by(&rec));
        rec.outcome = Some("succeeded");
        rec.device_ends = vec!["VDC_Write -> VD_E_ABORT".into()];
        assert!(!case.matched_by(&rec));
    }
}
