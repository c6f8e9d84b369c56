//! Deliberately broken model rules, for testing the harness itself.
//!
//! A [`Mutation`] switches one rule of the model off so that `vdisim
//! explore` and `vdisim fuzz` can be shown to find the breakage (a mutant
//! the checks do not catch is a missing check). It is **test-only**: no
//! profile, scenario or default carries one; the world takes it from
//! `vdi_sim::world::WorldConfig::mutation`, which `vdisim explore` and
//! `vdisim fuzz` set only from their `--mutant` flag. The default,
//! [`Mutation::None`], costs nothing: the switch is read only on the path
//! the mutated rule decides.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One deliberately broken rule of the model, or none.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mutation {
    /// The model as specified.
    #[default]
    None,
    /// Close does not answer a GetCommand waiting on a device of the set it
    /// closes: the call stays blocked (and a GetCommand on a device of the
    /// closed set waits instead of getting the use-after-close code), where
    /// the model answers it at once (clauses `close.devices-open`,
    /// `get-command.abort`, `close.invalidates-devices`).
    #[serde(rename = "close-leaves-getcommand-blocked")]
    CloseLeavesGetCommandBlocked,
}

/// An unknown `--mutant` name.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("unknown mutant '{0}': the mutants are: {list}", list = Mutation::names().join(", "))]
pub struct UnknownMutation(pub String);

impl Mutation {
    /// Every mutation but [`Mutation::None`].
    pub const ALL: [Mutation; 1] = [Mutation::CloseLeavesGetCommandBlocked];

    /// The name `--mutant` takes.
    pub fn name(self) -> &'static str {
        match self {
            Mutation::None => "none",
            Mutation::CloseLeavesGetCommandBlocked => "close-leaves-getcommand-blocked",
        }
    }

    /// What the mutant breaks, one line.
    pub fn about(self) -> &'static str {
        match self {
            Mutation::None => "the model as specified",
            Mutation::CloseLeavesGetCommandBlocked => {
                "Close leaves a device thread blocked in GetCommand waiting instead of answering it"
            }
        }
    }

    /// The names of every mutant.
    pub fn names() -> Vec<&'static str> {
        Mutation::ALL.iter().map(|m| m.name()).collect()
    }

    /// Whether this is [`Mutation::None`].
    pub fn is_none(&self) -> bool {
        *self == Mutation::None
    }
}

impl std::str::FromStr for Mutation {
    type Err = UnknownMutation;

    fn from_str(s: &str) -> Result<Mutation, UnknownMutation> {
        std::iter::once(Mutation::None)
            .chain(Mutation::ALL)
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownMutation(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in std::iter::once(Mutation::None).chain(Mutation::ALL) {
            assert_eq!(m.name().parse::<Mutation>(), Ok(m));
            let json = format!("\"{}\"", m.name());
            assert_eq!(serde_json::to_string(&m).unwrap(), json);
        }
        let e = "nope".parse::<Mutation>().unwrap_err();
        assert!(
            e.to_string().contains("close-leaves-getcommand-blocked"),
            "{e}"
        );
    }
}
