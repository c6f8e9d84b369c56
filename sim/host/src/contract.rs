//! The harness contract: what the conformance harness, the stand-in
//! library and the `vdisim serve` process exchange to run one case. It is
//! JSON on the wire (`vdisim_harness_reset` and `vdisim_harness_finish`
//! through the library's C ABI, `Reset` and `Finish` requests on a control
//! connection), defined once here.
//!
//! - [`CaseSetup`]: everything fixed before a case starts.
//! - [`Observation`]: what the server side observed when it ends.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vdi_model::fault::{FaultPlan, Trigger};
use vdi_model::outcome::Outcome;
use vdi_model::server::ServerDevSummary;
use vdi_model::statement::{BackupRecord, Statement};
use vdi_spec::Profile;

/// Everything fixed before a case starts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CaseSetup {
    pub seed: u64,
    pub profile: Profile,
    /// Backups the server's history holds before the case (and the client
    /// media that go with them).
    pub seed_backups: Vec<BackupRecord>,
    /// Virtual-time budget of the case (ms); real-time hosts wait for the
    /// server to become idle at most until it is spent.
    pub budget_ms: u64,
    /// Virtual milliseconds per real millisecond (0 or 1: real time). The
    /// server's clock (the server half's `now`, its deadlines, stalls,
    /// planned faults at a time) reads real elapsed time × this; set
    /// objects made during the case scale their timeouts by it too. The
    /// model ignores it.
    #[serde(default = "one")]
    pub time_scale: u32,
    /// Faults planned for the whole case. A real-time server host fires the
    /// server-side ones triggered `at-ms` (on its scaled clock); the rest
    /// are the client side's to apply, at the client's fetch (the model's
    /// meaning of `on-command`), through events and the client's death.
    pub faults: FaultPlan,
    /// Keep the full trace (not only its hash).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub record_trace: bool,
    /// The model's scheduler step bound, when a case sets one; real-time
    /// hosts have no steps and ignore it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
}

fn one() -> u32 {
    1
}

impl CaseSetup {
    /// The scale as a divisor (at least 1).
    pub fn scale(&self) -> u32 {
        self.time_scale.max(1)
    }

    /// The faults a real-time server host of this case fires itself: the
    /// server-side ones triggered at a virtual time.
    pub fn server_timed_faults(&self) -> FaultPlan {
        FaultPlan {
            name: self.faults.name.clone(),
            faults: self
                .faults
                .faults
                .iter()
                .filter(|pf| {
                    matches!(pf.trigger, Trigger::AtMs { .. }) && pf.fault.is_server_side()
                })
                .cloned()
                .collect(),
        }
    }
}

/// What the server side of a case observed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Observation {
    /// Every statement started, with its outcome, in order.
    pub statements: Vec<(Statement, Outcome)>,
    /// The server's per-device summaries of the last statement.
    pub devices: Vec<ServerDevSummary>,
    /// Clause ids cited by the client half (calls, notes) and the server half.
    pub clauses: BTreeMap<String, u64>,
    /// FNV-1a hash of the server half's trace (hex).
    pub trace_hash: String,
    /// Virtual milliseconds since the case started.
    pub elapsed_ms: u64,
    /// Whether the server was idle (no statement running) at the end.
    pub idle: bool,
    /// Server-side events applied.
    pub faults_fired: Vec<String>,
    /// Backups the case's statements added to the history.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub new_backups: Vec<BackupRecord>,
    /// The server half's trace as JSONL, when the host records one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub trace_jsonl: String,
}
