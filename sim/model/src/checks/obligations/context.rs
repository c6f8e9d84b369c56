//! What the runner knows besides the call log: the statements and how
//! they ended, and how the program ended.

use crate::outcome::Outcome;
use crate::statement::StatementKind;
use serde::{Deserialize, Serialize};

/// What the runner knows besides the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// The statements the case's server ran, in the order they started.
    pub statements: Vec<StatementEnd>,
    /// How the program ended.
    pub end: ProgramEnd,
    /// The exit code the program declares for "this client cannot do what
    /// the case asks": such an exit is not graded at all.
    #[serde(default)]
    pub unimplemented_code: Option<i32>,
}

/// One statement the server ran, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementEnd {
    /// The set it opened (its first VIRTUAL_DEVICE name). A statement is
    /// matched to the first set of that name the log shows being created
    /// and not yet matched; with `None`, to the first set not yet matched.
    #[serde(default)]
    pub set: Option<String>,
    /// BACKUP DATABASE, RESTORE DATABASE, ... (for the findings' words).
    #[serde(default)]
    pub kind: Option<StatementKind>,
    /// Its result (`Status::Running` or `NotStarted` if it never ended).
    pub outcome: Outcome,
    /// When it ended, on the log's clock of the process that created its
    /// set (`ProcessLine::log_ms_at` converts a wall-clock time); `None` if
    /// unknown (or it never ended).
    #[serde(default)]
    pub ended_ms: Option<u64>,
    /// The Flushes the server sent on each device in the middle of the
    /// stream, before the final one (the plan's mid-stream Flushes; 0 when
    /// none): the first this many Flushes a device fetches are mid-stream.
    #[serde(default)]
    pub mid_stream_flushes: u32,
}

/// How the program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "how")]
pub enum ProgramEnd {
    /// It exited by itself with `code`: 0 says it believes the operation
    /// succeeded, anything else that it failed (but see
    /// [`Context::unimplemented_code`]).
    Exited { code: i32 },
    /// The runner killed it: it was still running `bound_ms` after the
    /// statement ended (or after the runner's overall bound, if the
    /// statement never ended).
    Hung { bound_ms: u64 },
    /// The runner killed it on purpose (a client-process fault of the
    /// case): what it would have done next is not graded.
    Killed,
    /// It died of a signal the runner did not send.
    Crashed { signal: i32 },
}

/// How the program ended, in words ("exited with code 1").
pub(super) fn end_words(cx: &Context) -> String {
    match cx.end {
        ProgramEnd::Exited { code } => format!("exited with code {code}"),
        ProgramEnd::Hung { bound_ms } => {
            format!("hung and was killed after {bound_ms} ms")
        }
        ProgramEnd::Killed => "was killed by the case".to_string(),
        ProgramEnd::Crashed { signal } => format!("died of signal {signal}"),
    }
}
