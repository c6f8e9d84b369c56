//! The statement's outcome as SQL Server reports it to the connection that
//! ran BACKUP or RESTORE (clause `server.outcome-messages`). Only this says
//! whether the operation succeeded (clause `term.outcome-decides`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// One message of the statement's result stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlMessage {
    pub number: u32,
    pub level: u8,
    pub state: u8,
    pub text: String,
}

impl SqlMessage {
    pub fn info(number: u32, text: impl Into<String>) -> SqlMessage {
        SqlMessage {
            number,
            level: 0,
            state: 1,
            text: text.into(),
        }
    }
    pub fn error(number: u32, text: impl Into<String>) -> SqlMessage {
        SqlMessage {
            number,
            level: 16,
            state: 1,
            text: text.into(),
        }
    }
    /// Whether this is an error (severity above 10).
    pub fn is_error(&self) -> bool {
        self.level > 10
    }
}

impl fmt::Display for SqlMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_error() {
            write!(
                f,
                "Msg {}, Level {}, State {}: {}",
                self.number, self.level, self.state, self.text
            )
        } else {
            f.write_str(&self.text)
        }
    }
}

/// Where a statement stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Not started.
    NotStarted,
    Running,
    Succeeded,
    Failed,
}

impl Status {
    pub fn is_final(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed)
    }
}

/// Why a statement failed, in the model's terms (messages carry SQL's terms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailReason {
    /// No set of the statement's first device name (`server.open-missing-set`).
    OpenFailed,
    /// deviceCount and VIRTUAL_DEVICE clauses differ.
    DeviceCountMismatch,
    /// Invalid WITH options.
    BadOptions,
    /// The client signalled abort, closed with devices open, or died.
    ClientAbort,
    /// Server-side SignalAbort requested by the plan (KILL).
    ServerAbort,
    /// The watchdog fired.
    Watchdog,
    /// A device reported an error (disk full, read/write fault, ...).
    DeviceError,
    /// A transfer reported fewer bytes than asked as success.
    ShortTransfer,
    /// The client vetoed at the final Flush or at VDC_Complete.
    Vetoed,
    /// A restore stream ended early or held the wrong bytes.
    BadMedia,
    /// No backup to restore.
    NoBackup,
    /// The server process died; the connection is gone.
    ServerDied,
    /// The client's connection sent an attention (a cancel; clause
    /// `abort.attention`), or ended and the profile aborts on that.
    Cancelled,
}

/// The statement's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<FailReason>,
    pub messages: Vec<SqlMessage>,
    /// Bytes moved to or from the devices and accepted by the server.
    pub bytes: u64,
    /// Virtual time the statement ended at.
    pub ended_ms: Option<u64>,
    /// RESTORE: the backup its media headers describe (clause
    /// `media.header`), once every header was read. In-process only: the
    /// outcome's JSON (the harness contract) keeps its shape.
    #[serde(skip)]
    pub media: Option<Box<crate::statement::BackupRecord>>,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            status: Status::NotStarted,
            reason: None,
            messages: Vec::new(),
            bytes: 0,
            ended_ms: None,
            media: None,
        }
    }
}

impl Outcome {
    /// What the connection that ran the statement gets when the server
    /// process dies before the statement ends (clause `abort.server-death`):
    /// the statement fails with a transport-level error, Msg 10054.
    pub fn server_died(ended_ms: Option<u64>) -> Outcome {
        Outcome {
            status: Status::Failed,
            reason: Some(FailReason::ServerDied),
            messages: vec![SqlMessage::error(
                10054,
                "A transport-level error has occurred when receiving results from the server.",
            )],
            bytes: 0,
            ended_ms,
            media: None,
        }
    }

    pub fn succeeded(&self) -> bool {
        self.status == Status::Succeeded
    }
}
