//! `vdisim judge RECORDING`: checks a recording of a real deployment (the
//! recording `libsqlvdi.so`, `sim/recorder`, docs/RECORDING.md) against
//! the specification, and says which side broke which clause.
//!
//! - The client side: the recording becomes the client call log `vdisim
//!   client-test` grades ([`parse`]), and the same obligations
//!   (`vdi_model::checks::obligations`) judge it, with what the vendor's
//!   harness knows besides (`--outcome`, `--exit-code`, `--ended-unix-ms`).
//! - The server side: the recorded answers replayed through the client
//!   transition table and the command rules ([`server`]); what the model
//!   does not allow, or a profile choice that is not the default
//!   profile's, is a *model deviation* naming the profile value the
//!   recording supports.
//!
//! Results and reports are `vdisim run`'s and `vdisim client-test`'s: one
//! result for each side, `report.json`, `junit.xml`, `summary.md`,
//! `index.html`.

pub mod infer;
pub mod parse;
pub mod server;

use crate::client_test::grade::OBLIGATIONS;
use std::path::PathBuf;
use thiserror::Error;
use vdi_model::calllog::CallRecord;
use vdi_model::checks::Violation;
use vdi_model::checks::obligations::{self, Context, ProgramEnd, StatementEnd};
use vdi_model::outcome::{FailReason, Outcome, SqlMessage, Status};
use vdi_model::statement::StatementKind;
use vdi_reports::schema::{
    BackendInfo, CaseResult, Coverage, Divergence, RunReport, TimelineEvent, ToolInfo, Verdict,
};

/// The largest recording read, in bytes.
pub const RECORDING_BYTES_MAX: u64 = 4 << 30;

/// Arguments of `vdisim judge`.
#[derive(clap::Args, Debug, Clone)]
pub struct JudgeArgs {
    /// The recording (VDISIM_RECORD_FILE of the recording library).
    pub recording: PathBuf,
    /// The T-SQL outcome of the statement: `success`, or the error text
    /// sqlcmd printed (`Msg 3013, Level 16, ...`; every `Msg N` is kept).
    #[arg(long, value_name = "success|'Msg N…'")]
    pub outcome: Option<String>,
    /// Why the statement failed, in the model's words (e.g. client-abort,
    /// watchdog, server-abort, bad-media). Without it a failure the
    /// recording shows as the client's abort or the watchdog's is taken as
    /// such (`infer`); otherwise the reason is unknown.
    #[arg(long, value_name = "REASON")]
    pub reason: Option<String>,
    /// When the statement ended (ms since the Unix epoch).
    #[arg(long, value_name = "MS")]
    pub ended_unix_ms: Option<u64>,
    /// The statement: backup or restore.
    #[arg(long, value_name = "backup|restore")]
    pub kind: Option<String>,
    /// The set the statement named (default: the first set created).
    #[arg(long, value_name = "NAME")]
    pub set: Option<String>,
    /// The program's exit code (0: it believed the operation succeeded).
    /// Without it the program's belief is not graded.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub exit_code: Option<i32>,
    /// The program did not exit: the harness killed it, still running MS
    /// after the statement ended (graded as a hang).
    #[arg(long, value_name = "MS", conflicts_with_all = ["exit_code", "signal"])]
    pub hung_ms: Option<u64>,
    /// The program died of signal N the harness did not send.
    #[arg(long, value_name = "N", conflicts_with_all = ["exit_code", "hung_ms"])]
    pub signal: Option<i32>,
    /// Where report.json, junit.xml, summary.md and index.html go.
    #[arg(long, default_value = "vdisim-judge-report")]
    pub report_dir: PathBuf,
}

/// Bad input to `judge`: what, where, how to fix.
#[derive(Debug, Error)]
pub enum JudgeError {
    #[error("{file}:{line}: {why}")]
    Recording {
        file: String,
        line: usize,
        why: String,
    },
    #[error("cannot read the recording {0}: {1}")]
    Open(String, String),
    #[error("--{0} {1:?}: {2}")]
    Arg(&'static str, String, String),
    #[error("cannot write the reports: {0}")]
    Reports(String),
}

/// What a judge run found.
pub struct Judged {
    pub results: Vec<CaseResult>,
    pub text: String,
}

impl Judged {
    /// Whether any result fails the run.
    pub fn failed(&self) -> bool {
        self.results.iter().any(|r| r.verdict.is_failure())
    }
}

/// Runs `vdisim judge`.
pub fn run(a: &JudgeArgs) -> Result<Judged, JudgeError> {
    let shown = a.recording.display().to_string();
    let f = std::fs::File::open(&a.recording)
        .map_err(|e| JudgeError::Open(shown.clone(), e.to_string()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > RECORDING_BYTES_MAX {
        return Err(JudgeError::Open(
            shown,
            format!(
                "{len} bytes, more than the {RECORDING_BYTES_MAX} a recording may have; judge one process's recording at a time"
            ),
        ));
    }
    let rec = parse::read(std::io::BufReader::new(f), &shown)?;
    let log = rec.call_log();
    let cx = context(a, &rec, &log)?;
    let stem = a
        .recording
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("recording")
        .to_string();
    let profile = vdi_spec::Profile::default();
    let client = client_result(&stem, &log, &cx);
    let server = server_result(&stem, &log, &profile);
    let results = vec![client, server];
    let rep = report(a, &rec, &results, &profile);
    vdi_reports::write_all(&rep, &a.report_dir).map_err(|e| JudgeError::Reports(e.to_string()))?;
    Ok(Judged {
        text: text(a, &results),
        results,
    })
}

/// What the harness knows besides the recording.
fn context(
    a: &JudgeArgs,
    rec: &parse::Recording,
    log: &[CallRecord],
) -> Result<Context, JudgeError> {
    let kind = match a.kind.as_deref() {
        None => None,
        Some("backup") => Some(StatementKind::BackupDatabase),
        Some("restore") => Some(StatementKind::RestoreDatabase),
        Some(k) => {
            return Err(JudgeError::Arg(
                "kind",
                k.into(),
                "use backup or restore".into(),
            ));
        }
    };
    let reason = match &a.reason {
        None => None,
        Some(r) => Some(
            serde_json::from_value::<FailReason>(serde_json::Value::String(r.clone())).map_err(
                |_| {
                    JudgeError::Arg(
                        "reason",
                        r.clone(),
                        "use one of open-failed, device-count-mismatch, bad-options, client-abort, server-abort, watchdog, device-error, short-transfer, vetoed, bad-media, no-backup, server-died, cancelled".into(),
                    )
                },
            )?,
        ),
    };
    let mut statements = Vec::new();
    if let Some(o) = &a.outcome {
        let mut outcome = outcome_of(o, reason)?;
        if outcome.status == Status::Failed && outcome.reason.is_none() {
            outcome.reason = infer::reason(log);
        }
        let set = a.set.clone().or_else(|| {
            log.iter()
                .find(|c| c.method == vdi_model::calllog::Api::Create && c.code().0 == 0)
                .and_then(|c| c.args.name.clone())
        });
        let pid = log.first().map_or(0, |c| c.pid);
        statements.push(StatementEnd {
            set,
            kind,
            ended_ms: a.ended_unix_ms.and_then(|u| rec.log_ms_at(pid, u)),
            outcome,
            mid_stream_flushes: 0,
        });
    }
    let end = match (a.exit_code, a.hung_ms, a.signal, &a.outcome) {
        (Some(code), ..) => ProgramEnd::Exited { code },
        (_, Some(bound_ms), ..) => ProgramEnd::Hung { bound_ms },
        (_, _, Some(signal), _) => ProgramEnd::Crashed { signal },
        // Unknown: taken to agree with the outcome (not graded).
        (.., Some(o)) if o.trim().eq_ignore_ascii_case("success") => ProgramEnd::Exited { code: 0 },
        _ => ProgramEnd::Exited { code: 1 },
    };
    Ok(Context {
        statements,
        end,
        unimplemented_code: None,
    })
}

/// `--outcome`: `success` or sqlcmd's text with its `Msg N`s.
fn outcome_of(text: &str, reason: Option<FailReason>) -> Result<Outcome, JudgeError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("success") {
        return Ok(Outcome {
            status: Status::Succeeded,
            ..Outcome::default()
        });
    }
    let starts: Vec<usize> = t.match_indices("Msg ").map(|(i, _)| i).collect();
    let messages: Vec<SqlMessage> = starts
        .iter()
        .enumerate()
        .filter_map(|(k, &i)| {
            let seg = t[i..starts.get(k + 1).copied().unwrap_or(t.len())].trim();
            let digits: String = seg[4..].chars().take_while(char::is_ascii_digit).collect();
            let n = digits.parse::<u32>().ok()?;
            let words = seg.split_once(':').map_or(seg, |(_, w)| w.trim());
            Some(SqlMessage::error(n, words.to_string()))
        })
        .collect();
    if messages.is_empty() {
        return Err(JudgeError::Arg(
            "outcome",
            text.into(),
            "give success, or the error sqlcmd printed (it names at least one Msg N, e.g. 'Msg 3013, Level 16, State 1: BACKUP DATABASE is terminating abnormally.')".into(),
        ));
    }
    Ok(Outcome {
        status: Status::Failed,
        reason,
        messages,
        ..Outcome::default()
    })
}

fn timeline(log: &[CallRecord]) -> Vec<TimelineEvent> {
    const EVENTS_MAX: usize = 2000;
    log.iter()
        .take(EVENTS_MAX)
        .enumerate()
        .map(|(i, c)| TimelineEvent {
            seq: i as u64,
            t: c.end_ms,
            who: match c.args.device {
                Some(d) if c.method.on_device() => format!("dev{d}"),
                _ => "ctl".to_string(),
            },
            what: c.method.name().to_string(),
            detail: match c.fetched() {
                Some(cmd) => format!(
                    "-> {} {} size={} id={}",
                    c.ret.name, cmd.name, cmd.size, cmd.id
                ),
                None => format!("-> {}", c.ret.name),
            },
            clause: None,
        })
        .collect()
}

fn result(
    stem: &str,
    side: &str,
    log: &[CallRecord],
    verdict: Verdict,
    detail: String,
    clauses: Vec<String>,
    first: Option<(&Violation, &str)>,
) -> CaseResult {
    let timeline = timeline(log);
    let divergence = first.map(|(v, expected)| Divergence {
        seq: v
            .at
            .and_then(|at| log.iter().position(|c| c.seq == at))
            .map_or(timeline.len() as u64, |i| i as u64),
        clause: Some(v.clause.clone()),
        expected: expected.to_string(),
        actual: v.what.clone(),
    });
    let hash = vdi_model::trace::fnv1a(0xcbf2_9ce4_8422_2325, detail.as_bytes());
    CaseResult {
        case: format!("{stem}.{side}"),
        file: String::new(),
        summary: format!("the {side} side of the recording {stem}"),
        clauses,
        backend: "recording".into(),
        seed: 0,
        verdict,
        detail,
        divergence,
        trace_hash: format!("{hash:016x}"),
        virtual_ms: log.iter().map(|c| c.end_ms).max().unwrap_or(0),
        steps: log.len() as u64,
        repro: String::new(),
        deviation_reason: None,
        timeline,
    }
}

fn client_result(stem: &str, log: &[CallRecord], cx: &Context) -> CaseResult {
    let findings = obligations::check(log, cx);
    let (verdict, detail) = if findings.is_empty() {
        (
            Verdict::Pass,
            "the program did what a correct client does".to_string(),
        )
    } else {
        (
            Verdict::Violation,
            findings
                .iter()
                .map(|v| format!("{}: {}", v.clause, v.what))
                .collect::<Vec<_>>()
                .join("; "),
        )
    };
    let mut clauses: Vec<String> = findings.iter().map(|v| v.clause.clone()).collect();
    if clauses.is_empty() {
        clauses = OBLIGATIONS.iter().map(|c| c.to_string()).collect();
    }
    clauses.dedup();
    let first = findings
        .first()
        .map(|v| (v, "a correct client's behaviour (see the clause)"));
    result(stem, "client", log, verdict, detail, clauses, first)
}

fn server_result(stem: &str, log: &[CallRecord], p: &vdi_spec::Profile) -> CaseResult {
    let found = server::check(log, p);
    let deviations: Vec<&server::ServerFinding> = found.iter().filter(|f| !f.agrees).collect();
    let words = |f: &server::ServerFinding| match &f.profile {
        Some((param, value)) => format!(
            "{}: {} (call {}); the recording supports profile {param} = \"{value}\"",
            f.clause, f.what, f.at
        ),
        None => format!("{}: {} (call {})", f.clause, f.what, f.at),
    };
    let verdict = if deviations.is_empty() {
        Verdict::Pass
    } else if deviations.iter().all(|f| f.profile.is_some()) {
        Verdict::Lenient
    } else {
        Verdict::Violation
    };
    let agreed: Vec<String> = found.iter().filter(|f| f.agrees).map(words).collect();
    let detail = if deviations.is_empty() {
        let mut d = "the recorded server did what the model allows".to_string();
        if !agreed.is_empty() {
            d.push_str(&format!(
                " (profile choices seen, as the default profile makes them: {})",
                agreed.join("; ")
            ));
        }
        d
    } else {
        format!(
            "model deviation: {}",
            deviations
                .iter()
                .map(|f| words(f))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    let mut clauses: Vec<String> = found.iter().map(|f| f.clause.clone()).collect();
    clauses.dedup();
    let first = deviations
        .first()
        .map(|f| Violation::new(f.clause.clone(), words(f)).at(f.at));
    result(
        stem,
        "server",
        log,
        verdict,
        detail,
        clauses,
        first
            .as_ref()
            .map(|v| (v, "what the model allows the server to answer")),
    )
}

fn report(
    a: &JudgeArgs,
    rec: &parse::Recording,
    results: &[CaseResult],
    p: &vdi_spec::Profile,
) -> RunReport {
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
    let real = rec.headers.values().next().map(|h| h.real.clone());
    RunReport::new(
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
            name: "recording".into(),
            description: format!("the recording {}", a.recording.display()),
            library: real,
            profile: p.name.clone(),
            profile_params: serde_json::to_value(p).unwrap_or_default(),
        }],
        vec![0],
        results.to_vec(),
        coverage,
    )
}

fn text(a: &JudgeArgs, results: &[CaseResult]) -> String {
    let mut t = String::new();
    for r in results {
        t.push_str(&format!(
            "{} {}: {}\n",
            r.verdict.label().to_uppercase(),
            r.case,
            r.detail
        ));
    }
    t.push_str(&format!(
        "\nreports written to {}\n",
        a.report_dir.display()
    ));
    t
}

#[cfg(test)]
mod tests;
