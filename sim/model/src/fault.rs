//! Fault plans: what goes wrong, and when (virtual time, scheduler step, or
//! the n-th command a device fetches). Named plans cover the field problems;
//! `random` draws a swarm subset from the seed.

use crate::msg::DevIx;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use vdi_spec::{CommandCode, Win32};

/// Which statement a trigger counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    #[default]
    Any,
    Backup,
    Restore,
}

/// When a fault fires.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "on")]
pub enum Trigger {
    /// At this virtual time.
    AtMs { ms: u64 },
    /// At this scheduler step.
    AtStep { step: u64 },
    /// When the client fetches (GetCommand returns) the `nth` command
    /// (1-based) of device `dev` in the run, counting only commands of
    /// `code` if given.
    OnCommand {
        dev: DevIx,
        nth: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<CommandCode>,
    },
    /// When the server has taken the client's `nth` completion (1-based,
    /// any device, completions the library made on the client's behalf not
    /// counted): a KILL once so much work is done.
    AfterCompletions { nth: u64 },
}

/// What goes wrong.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "fault")]
pub enum Fault {
    /// The client calls SignalAbort (clause `abort.client-signal`).
    ClientSignalAbort,
    /// The server calls SignalAbort, as after KILL (clause `abort.server-signal`).
    ServerSignalAbort,
    /// The client process dies (clause `abort.client-death`).
    ClientDeath,
    /// The server process dies (clause `abort.server-death`).
    ServerDeath,
    /// The server processes nothing for this long.
    ServerStall { ms: u64 },
    /// The device thread that fetched the triggering command pauses this
    /// long before completing it (slow target; clause `watchdog.fires`).
    ClientStall { ms: u64 },
    /// The triggering command is completed with this code and 0 bytes.
    CompleteWithError { code: Win32 },
    /// The server closes this device early (clause `restore.early-close`).
    EarlyCloseDevice { dev: DevIx },
    /// Before the restore, the client's media for `dev` is cut to `bytes`
    /// (clause `restore.truncated`).
    TruncateMedia { dev: DevIx, bytes: u64 },
    /// The connection running the statement sends a TDS attention (a query
    /// timeout, Ctrl-C): the server cancels the statement (clause
    /// `abort.attention`).
    Attention,
    /// The connection running the statement ends without an attention: the
    /// profile's `disconnect-without-attention` decides (clause
    /// `abort.disconnect`).
    Disconnect,
}

impl Fault {
    /// Whether the server applies this fault (SignalAbort after KILL, its
    /// death, a stall, an early CloseDevice); the others are the client's.
    pub fn is_server_side(&self) -> bool {
        matches!(
            self,
            Fault::ServerSignalAbort
                | Fault::ServerDeath
                | Fault::ServerStall { .. }
                | Fault::EarlyCloseDevice { .. }
                | Fault::Attention
                | Fault::Disconnect
        )
    }

    /// A short kebab-case name for summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::ClientSignalAbort => "client-signal-abort",
            Fault::ServerSignalAbort => "server-signal-abort",
            Fault::ClientDeath => "client-death",
            Fault::ServerDeath => "server-death",
            Fault::ServerStall { .. } => "server-stall",
            Fault::ClientStall { .. } => "client-stall",
            Fault::CompleteWithError { .. } => "complete-with-error",
            Fault::EarlyCloseDevice { .. } => "early-close-device",
            Fault::TruncateMedia { .. } => "truncate-media",
            Fault::Attention => "attention",
            Fault::Disconnect => "disconnect",
        }
    }
}

/// One planned fault.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedFault {
    #[serde(default)]
    pub phase: Phase,
    pub trigger: Trigger,
    pub fault: Fault,
}

impl PlannedFault {
    /// Checks the fault's times against `vdi_spec::bounds::VIRTUAL_MS_MAX`
    /// (a trigger time, a stall): a real backend sleeps them.
    pub fn check_bounds(&self) -> Result<(), vdi_spec::bounds::BoundError> {
        use vdi_spec::bounds::{VIRTUAL_MS_MAX, at_most};
        if let Trigger::AtMs { ms } = self.trigger {
            at_most(
                "trigger at-ms",
                ms,
                VIRTUAL_MS_MAX,
                "use a time within 30 days",
            )?;
        }
        if let Fault::ServerStall { ms } | Fault::ClientStall { ms } = self.fault {
            at_most("stall ms", ms, VIRTUAL_MS_MAX, "stall for at most 30 days")?;
        }
        Ok(())
    }
}

/// A named list of faults.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    pub name: String,
    #[serde(default)]
    pub faults: Vec<PlannedFault>,
}

/// An unknown plan name.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("unknown fault plan '{0}': use none, random, or one of: {list}", list = NAMED_PLANS.join(", "))]
pub struct UnknownPlan(pub String);

/// Every named plan, for `--faults` and documentation.
pub const NAMED_PLANS: &[&str] = &[
    "client-abort",
    "server-abort",
    "client-death",
    "server-death",
    "server-stall",
    "slow-client",
    "disk-full",
    "end-of-media",
    "write-fault",
    "read-fault",
    "truncated-media",
    "early-close",
    "cancel",
    "disconnect",
];

/// What the named plans need to know about the run.
#[derive(Clone, Copy, Debug)]
pub struct PlanContext {
    pub devices: u16,
    /// The longest timeout any party uses (client waits, serverTimeOut),
    /// so "longer than any timeout" can be computed.
    pub longest_timeout_ms: u64,
    /// The client's serverTimeOut.
    pub server_timeout_ms: u64,
    /// Bytes the restore family 0 holds (for truncation), if known.
    pub family_bytes: u64,
}

fn one(name: &str, phase: Phase, trigger: Trigger, fault: Fault) -> FaultPlan {
    FaultPlan {
        name: name.to_string(),
        faults: vec![PlannedFault {
            phase,
            trigger,
            fault,
        }],
    }
}

fn on(dev: DevIx, nth: u64, code: Option<CommandCode>) -> Trigger {
    Trigger::OnCommand { dev, nth, code }
}

impl FaultPlan {
    pub fn none() -> FaultPlan {
        FaultPlan {
            name: "none".to_string(),
            faults: Vec::new(),
        }
    }

    /// A named plan (see [`NAMED_PLANS`]) or `none`. (`random`, a swarm
    /// subset drawn from a seed, needs a generator: `vdi-sim` draws it.)
    pub fn named(name: &str, cx: &PlanContext) -> Result<FaultPlan, UnknownPlan> {
        let last = cx.devices.saturating_sub(1);
        let w = Some(CommandCode::Write);
        let r = Some(CommandCode::Read);
        Ok(match name {
            "none" => FaultPlan::none(),
            "client-abort" => one(name, Phase::Any, on(0, 3, None), Fault::ClientSignalAbort),
            "server-abort" => one(
                name,
                Phase::Any,
                on(last, 3, None),
                Fault::ServerSignalAbort,
            ),
            "client-death" => one(name, Phase::Any, on(0, 3, None), Fault::ClientDeath),
            "server-death" => one(name, Phase::Any, on(0, 3, None), Fault::ServerDeath),
            "cancel" => one(name, Phase::Any, on(0, 3, None), Fault::Attention),
            "disconnect" => one(name, Phase::Any, on(0, 3, None), Fault::Disconnect),
            "server-stall" => one(
                name,
                Phase::Any,
                on(0, 2, None),
                Fault::ServerStall {
                    ms: cx.longest_timeout_ms * 3 + 1,
                },
            ),
            "slow-client" => one(
                name,
                Phase::Any,
                on(0, 2, None),
                Fault::ClientStall {
                    ms: cx.server_timeout_ms.max(1) * 3,
                },
            ),
            "disk-full" => one(
                name,
                Phase::Backup,
                on(0, 3, w),
                Fault::CompleteWithError {
                    code: Win32::ERROR_DISK_FULL,
                },
            ),
            "end-of-media" => one(
                name,
                Phase::Backup,
                on(0, 3, w),
                Fault::CompleteWithError {
                    code: Win32::ERROR_END_OF_MEDIA,
                },
            ),
            "write-fault" => one(
                name,
                Phase::Backup,
                on(last, 2, w),
                Fault::CompleteWithError {
                    code: Win32::ERROR_WRITE_FAULT,
                },
            ),
            "read-fault" => one(
                name,
                Phase::Restore,
                on(0, 2, r),
                Fault::CompleteWithError {
                    code: Win32::ERROR_READ_FAULT,
                },
            ),
            "truncated-media" => one(
                name,
                Phase::Restore,
                Trigger::AtStep { step: 0 },
                Fault::TruncateMedia {
                    dev: 0,
                    // Halfway through the data, after the media header.
                    bytes: crate::media::HEADER_BYTES + (cx.family_bytes / 2) / 512 * 512 + 100,
                },
            ),
            "early-close" => one(
                name,
                Phase::Restore,
                on(0, 2, r),
                Fault::EarlyCloseDevice { dev: 0 },
            ),
            other => return Err(UnknownPlan(other.to_string())),
        })
    }
}

/// The one trigger matcher: a plan's faults, which have fired, and the
/// counts their triggers watch. Every driver — the world, the ABI drivers,
/// the server host — asks this when something happens and fires what it
/// answers; none matches triggers itself.
///
/// What a trigger means (one meaning everywhere):
/// - `on-command {dev, nth, code}`: the client *fetched* (GetCommand
///   returned) its `nth` command of device `dev` in the run (of `code`,
///   if given), in a statement of the fault's phase. The counts run over
///   the whole run, across statements.
/// - `at-ms {ms}`: virtual time `ms` has come (any phase).
/// - `at-step {step}`: the world's scheduler has made `step` decisions (in
///   the fault's phase); a real-time host has no steps.
/// - `after-completions {nth}`: the server has taken the client's `nth`
///   completion (in the fault's phase).
///
/// Media truncation acts on what a restore reads: it fires when a restore
/// starts ([`FaultSchedule::restore_starts`]), whatever its trigger says.
#[derive(Clone, Debug, Default)]
pub struct FaultSchedule {
    planned: Vec<(PlannedFault, bool)>,
    fetched: std::collections::BTreeMap<(DevIx, Option<CommandCode>), u64>,
    completions: u64,
    phase: Phase,
    /// Which kinds of trigger the plan has (the counts no trigger watches
    /// are not kept).
    watches: Watches,
}

/// Which trigger kinds a schedule holds.
#[derive(Clone, Copy, Debug, Default)]
struct Watches {
    fetches: bool,
    steps: bool,
    completions: bool,
}

impl Watches {
    fn of<'a>(faults: impl Iterator<Item = &'a PlannedFault>) -> Watches {
        let mut w = Watches::default();
        for pf in faults {
            match pf.trigger {
                Trigger::OnCommand { .. } => w.fetches = true,
                Trigger::AtStep { .. } => w.steps = true,
                Trigger::AfterCompletions { .. } => w.completions = true,
                Trigger::AtMs { .. } => {}
            }
        }
        w
    }
}

impl FaultSchedule {
    /// The schedule of `plan`, nothing fired.
    pub fn new(plan: &FaultPlan) -> FaultSchedule {
        FaultSchedule {
            planned: plan.faults.iter().cloned().map(|f| (f, false)).collect(),
            watches: Watches::of(plan.faults.iter()),
            ..FaultSchedule::default()
        }
    }

    /// The phase of the latest statement (`Any` before the first).
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// A statement starts: its kind sets the phase faults are matched in.
    pub fn statement_starts(&mut self, backup: bool) {
        self.phase = if backup {
            Phase::Backup
        } else {
            Phase::Restore
        };
    }

    fn in_phase(&self, pf: &PlannedFault) -> bool {
        pf.phase == Phase::Any || pf.phase == self.phase
    }

    /// Adds a fault to fire now (an injected event); returns its index.
    pub fn push_now(&mut self, fault: Fault) -> usize {
        self.planned.push((
            PlannedFault {
                phase: Phase::Any,
                trigger: Trigger::AtStep { step: u64::MAX },
                fault,
            },
            false,
        ));
        self.planned.len() - 1
    }

    /// The fault at `i`.
    pub fn fault(&self, i: usize) -> &Fault {
        &self.planned[i].0.fault
    }

    /// Every fault of the schedule with whether it has fired.
    pub fn faults(&self) -> impl Iterator<Item = (&PlannedFault, bool)> {
        self.planned.iter().map(|(f, d)| (f, *d))
    }

    /// Marks fault `i` fired and returns it.
    pub fn fire(&mut self, i: usize) -> Fault {
        debug_assert!(!self.planned[i].1, "a fault fires once");
        self.planned[i].1 = true;
        self.planned[i].0.fault.clone()
    }

    /// Whether every fault has fired.
    pub fn all_fired(&self) -> bool {
        self.planned.iter().all(|f| f.1)
    }

    /// The client fetched a command of `code` on device `dev`: counts it
    /// and returns the faults it triggers (not yet marked fired), in plan
    /// order, the any-code count first.
    pub fn on_fetch(&mut self, dev: DevIx, code: CommandCode) -> Vec<usize> {
        let mut due = Vec::new();
        if !self.watches.fetches {
            return due;
        }
        for key in [(dev, None), (dev, Some(code))] {
            let n = self.fetched.entry(key).or_default();
            *n += 1;
            let n = *n;
            for (i, (pf, done)) in self.planned.iter().enumerate() {
                if *done || !self.in_phase(pf) || matches!(pf.fault, Fault::TruncateMedia { .. }) {
                    continue;
                }
                if let Trigger::OnCommand {
                    dev: d,
                    nth,
                    code: c,
                } = pf.trigger
                    && d == dev
                    && nth == n
                    && c == key.1
                {
                    due.push(i);
                }
            }
        }
        due
    }

    /// The server took a completion from the client: counts it and returns
    /// the faults it triggers (not yet marked fired).
    pub fn on_completion(&mut self) -> Vec<usize> {
        if !self.watches.completions {
            return Vec::new();
        }
        self.completions += 1;
        let n = self.completions;
        (0..self.planned.len())
            .filter(|&i| {
                let (pf, done) = &self.planned[i];
                !done
                    && self.in_phase(pf)
                    && matches!(pf.trigger, Trigger::AfterCompletions { nth } if nth == n)
            })
            .collect()
    }

    /// Faults due at virtual time `now` (not yet marked fired).
    pub fn due_at_ms(&self, now: u64) -> Vec<usize> {
        (0..self.planned.len())
            .filter(|&i| {
                let (pf, done) = &self.planned[i];
                !done && matches!(pf.trigger, Trigger::AtMs { ms } if ms <= now)
            })
            .collect()
    }

    /// Faults due at scheduler step `step` (not yet marked fired).
    pub fn due_at_step(&self, step: u64) -> Vec<usize> {
        if !self.watches.steps || self.all_fired() {
            return Vec::new();
        }
        (0..self.planned.len())
            .filter(|&i| {
                let (pf, done) = &self.planned[i];
                !done
                    && matches!(pf.trigger, Trigger::AtStep { step: s } if s <= step)
                    && self.in_phase(pf)
                    && !matches!(pf.fault, Fault::TruncateMedia { .. })
            })
            .collect()
    }

    /// The earliest `at-ms` fault still to come after `now`.
    pub fn next_at_ms(&self, now: u64) -> Option<u64> {
        self.planned
            .iter()
            .filter_map(|(pf, done)| match (done, &pf.trigger) {
                (false, Trigger::AtMs { ms }) if *ms > now => Some(*ms),
                _ => None,
            })
            .min()
    }

    /// A restore starts: the media truncations planned for it (not yet
    /// marked fired).
    pub fn restore_starts(&self) -> Vec<usize> {
        (0..self.planned.len())
            .filter(|&i| {
                let (pf, done) = &self.planned[i];
                !done
                    && matches!(pf.fault, Fault::TruncateMedia { .. })
                    && matches!(pf.phase, Phase::Any | Phase::Restore)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> PlanContext {
        PlanContext {
            devices: 2,
            longest_timeout_ms: 1000,
            server_timeout_ms: 5000,
            family_bytes: 1 << 20,
        }
    }

    #[test]
    fn named_plans_all_resolve() {
        for n in NAMED_PLANS {
            let p = FaultPlan::named(n, &cx()).unwrap();
            assert_eq!(p.name, *n);
            assert_eq!(p.faults.len(), 1);
        }
        let e = FaultPlan::named("bogus", &cx()).unwrap_err();
        assert!(e.to_string().contains("client-abort"), "{e}");
    }
}
