//! The invariants every run is held to, one file per family. Each check is
//! a pure function of what a driver observed; the world, the ABI drivers
//! and client-test call the same functions.
//!
//! - [`codes`]: every call returns a code documented for its method and
//!   state (the transition table, the method's page, or a profile choice).
//! - [`abort`]: no command reaches the client after an abort.
//! - [`media`]: a BACKUP that reports success delivered every byte.
//! - [`obligations`]: what a client program must do, graded from the call
//!   log its library wrote (`vdisim client-test`).

pub mod abort;
pub mod codes;
pub mod media;
pub mod obligations;

use serde::{Deserialize, Serialize};

/// A named invariant that did not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The clause the invariant comes from.
    pub clause: String,
    /// What happened, in words.
    pub what: String,
    /// The call the finding is about, when it is about one: its `seq` in
    /// the client's call log (`vdi_model::calllog`); reports highlight it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
}

impl Violation {
    /// A finding about no call in particular.
    pub fn new(clause: impl Into<String>, what: impl Into<String>) -> Violation {
        Violation {
            clause: clause.into(),
            what: what.into(),
            at: None,
        }
    }

    /// The same finding, about the call with log sequence number `seq`.
    #[must_use]
    pub fn at(mut self, seq: u64) -> Violation {
        self.at = Some(seq);
        self
    }
}
