//! The faults of a case that the client side of an ABI backend applies:
//! those a command fetch triggers (the model's meaning of `on-command`:
//! when GetCommand returns the command), media truncations when a restore
//! starts, and the client's own SignalAbort or death at a virtual time.
//! Server-side faults at a time (and after a number of completions) are
//! fired by the library's server host itself.
//!
//! This is state only: which faults are due (asked of the model's one
//! matcher, [`FaultSchedule`]), the completion overrides and stalls they
//! leave, whether the client died. The driver applies what it is told.

use std::collections::BTreeMap;
use vdi_model::fault::{Fault, FaultPlan, FaultSchedule, Trigger};
use vdi_model::msg::Cmd;
use vdi_spec::Win32;

/// The client side's faults of one case.
#[derive(Debug, Default)]
pub struct ClientFaults {
    schedule: FaultSchedule,
    /// Completion overrides by the driver's command id.
    overrides: BTreeMap<u64, Win32>,
    /// Stalls owed by threads (name → virtual ms) before their next action.
    stalls: BTreeMap<String, u64>,
    /// The client process died.
    pub dead: bool,
    /// Kinds of the faults fired here, in order.
    pub fired: Vec<String>,
}

/// Whether the client side applies `f` triggered by `t`.
fn client_applies(t: &Trigger, f: &Fault) -> bool {
    match (t, f) {
        (_, Fault::TruncateMedia { .. }) | (Trigger::OnCommand { .. }, _) => true,
        (Trigger::AtMs { .. }, Fault::ClientSignalAbort | Fault::ClientDeath) => true,
        // Server-side faults at a time or after completions fire in the
        // library's server host; a stall or completion override at a time
        // concerns no thread or command (the model applies it to none).
        _ => false,
    }
}

impl ClientFaults {
    /// The client side's share of `plan`.
    pub fn new(plan: &FaultPlan) -> ClientFaults {
        let mine = FaultPlan {
            name: plan.name.clone(),
            faults: plan
                .faults
                .iter()
                .filter(|pf| client_applies(&pf.trigger, &pf.fault))
                .cloned()
                .collect(),
        };
        ClientFaults {
            schedule: FaultSchedule::new(&mine),
            ..ClientFaults::default()
        }
    }

    /// A statement starts (its kind sets the phase faults match in).
    pub fn statement_starts(&mut self, backup: bool) {
        self.schedule.statement_starts(backup);
    }

    /// Whether the latest statement is a backup.
    pub fn after_backup(&self) -> bool {
        self.schedule.phase() == vdi_model::fault::Phase::Backup
    }

    fn fire(&mut self, i: usize) -> Fault {
        let f = self.schedule.fire(i);
        self.fired.push(f.kind().to_string());
        f
    }

    /// Thread `who` fetched `cmd`: the faults it triggers, fired. A
    /// completion override or a stall is recorded here as well.
    pub fn on_fetch(&mut self, who: &str, cmd: &Cmd) -> Vec<Fault> {
        if self.dead {
            return Vec::new();
        }
        let due = self.schedule.on_fetch(cmd.dev, cmd.code);
        let mut out = Vec::new();
        for i in due {
            let f = self.fire(i);
            match &f {
                Fault::CompleteWithError { code } => {
                    self.overrides.insert(cmd.id.0, *code);
                }
                Fault::ClientStall { ms } => {
                    *self.stalls.entry(who.to_string()).or_default() += ms;
                }
                _ => {}
            }
            out.push(f);
        }
        out
    }

    /// The client's own faults due at virtual time `now`, fired.
    pub fn due_at_ms(&mut self, now: u64) -> Vec<Fault> {
        let due = self.schedule.due_at_ms(now);
        due.into_iter().map(|i| self.fire(i)).collect()
    }

    /// A restore starts: the media truncations planned for it, fired.
    pub fn restore_starts(&mut self) -> Vec<Fault> {
        let due = self.schedule.restore_starts();
        due.into_iter().map(|i| self.fire(i)).collect()
    }

    /// Whether a completion of command `id` is overridden.
    pub fn overridden(&self, id: u64) -> bool {
        self.overrides.contains_key(&id)
    }

    /// The code and byte count a completion of command `id` reports: a
    /// planned `complete-with-error` replaces them (code, 0 bytes), as in
    /// the model. `Some` when it did.
    pub fn take_override(&mut self, id: u64) -> Option<Win32> {
        self.overrides.remove(&id)
    }

    /// The stall thread `who` owes before its next action, if any.
    pub fn take_stall(&mut self, who: &str) -> Option<u64> {
        self.stalls.remove(who)
    }
}

/// Why `plan` cannot be staged on a real library, if it cannot.
pub fn unstageable(plan: &FaultPlan) -> Option<String> {
    plan.faults
        .iter()
        .find_map(|pf| match (&pf.trigger, &pf.fault) {
            (_, Fault::TruncateMedia { .. }) => None,
            (Trigger::AtStep { step }, f) => Some(format!(
                "planned fault {} at scheduler step {step}: a real library has no scheduler steps to count",
                f.kind()
            )),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vdi_model::fault::{Phase, PlannedFault};
    use vdi_spec::CommandCode;

    #[test]
    fn plans_split_between_client_and_library() {
        let plan = FaultPlan {
            name: "t".into(),
            faults: vec![
                PlannedFault {
                    phase: Phase::Any,
                    trigger: Trigger::OnCommand {
                        dev: 0,
                        nth: 2,
                        code: Some(CommandCode::Write),
                    },
                    fault: Fault::CompleteWithError {
                        code: Win32::ERROR_DISK_FULL,
                    },
                },
                PlannedFault {
                    phase: Phase::Restore,
                    trigger: Trigger::AtStep { step: 0 },
                    fault: Fault::TruncateMedia { dev: 0, bytes: 1 },
                },
                PlannedFault {
                    phase: Phase::Any,
                    trigger: Trigger::AtMs { ms: 5 },
                    fault: Fault::ServerSignalAbort,
                },
            ],
        };
        assert_eq!(unstageable(&plan), None, "truncation ignores its trigger");
        let mut f = ClientFaults::new(&plan);
        assert!(f.due_at_ms(10).is_empty(), "the server host fires it");
        assert_eq!(f.restore_starts().len(), 1);
        let step = FaultPlan {
            name: "t".into(),
            faults: vec![PlannedFault {
                phase: Phase::Any,
                trigger: Trigger::AtStep { step: 9 },
                fault: Fault::ServerSignalAbort,
            }],
        };
        assert!(unstageable(&step).is_some_and(|m| m.contains("scheduler step")));
    }
}
