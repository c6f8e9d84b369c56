//! Fault plans: what goes wrong, and when (virtual time, scheduler step, or
//! the n-th command a device fetches). Named plans cover the field problems;
//! `random` draws a swarm subset from the seed.

use crate::msg::DevIx;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
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
    /// When device `dev` fetches its `nth` command (1-based), counting only
    /// commands of `code` if given.
    OnCommand {
        dev: DevIx,
        nth: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<CommandCode>,
    },
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

    /// A named plan (see [`NAMED_PLANS`]), `none`, or `random` (a swarm
    /// subset drawn from `seed`).
    pub fn named(name: &str, cx: &PlanContext, seed: u64) -> Result<FaultPlan, UnknownPlan> {
        let last = cx.devices.saturating_sub(1);
        let w = Some(CommandCode::Write);
        let r = Some(CommandCode::Read);
        Ok(match name {
            "none" => FaultPlan::none(),
            "random" => FaultPlan::random(cx, seed),
            "client-abort" => one(name, Phase::Any, on(0, 3, None), Fault::ClientSignalAbort),
            "server-abort" => one(
                name,
                Phase::Any,
                on(last, 3, None),
                Fault::ServerSignalAbort,
            ),
            "client-death" => one(name, Phase::Any, on(0, 3, None), Fault::ClientDeath),
            "server-death" => one(name, Phase::Any, on(0, 3, None), Fault::ServerDeath),
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
                    bytes: (cx.family_bytes / 2) / 512 * 512 + 100,
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

    /// Swarm testing: the seed enables a random subset of fault kinds, each
    /// at a random trigger.
    pub fn random(cx: &PlanContext, seed: u64) -> FaultPlan {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xFA01_7000);
        let mut faults = Vec::new();
        let devs = u64::from(cx.devices.max(1));
        let pick = |rng: &mut ChaCha8Rng, n: u64| rng.next_u64() % n.max(1);
        for kind in 0..9u64 {
            if pick(&mut rng, 4) != 0 {
                continue;
            }
            let dev = pick(&mut rng, devs) as DevIx;
            let nth = 1 + pick(&mut rng, 12);
            let phase = match pick(&mut rng, 3) {
                0 => Phase::Any,
                1 => Phase::Backup,
                _ => Phase::Restore,
            };
            let trigger = if pick(&mut rng, 4) == 0 {
                Trigger::AtStep {
                    step: pick(&mut rng, 400),
                }
            } else {
                Trigger::OnCommand {
                    dev,
                    nth,
                    code: None,
                }
            };
            let codes = [
                Win32::ERROR_DISK_FULL,
                Win32::ERROR_WRITE_FAULT,
                Win32::ERROR_READ_FAULT,
                Win32::ERROR_HANDLE_EOF,
                Win32::ERROR_END_OF_MEDIA,
                Win32::ERROR_NOT_SUPPORTED,
            ];
            let fault = match kind {
                0 => Fault::ClientSignalAbort,
                1 => Fault::ServerSignalAbort,
                2 => Fault::ClientDeath,
                3 => Fault::ServerDeath,
                4 => Fault::ServerStall {
                    ms: 1 + pick(&mut rng, cx.longest_timeout_ms.max(1) * 3),
                },
                5 => Fault::ClientStall {
                    ms: 1 + pick(&mut rng, cx.server_timeout_ms.max(1000) * 3),
                },
                6 => Fault::CompleteWithError {
                    code: codes[pick(&mut rng, codes.len() as u64) as usize],
                },
                7 => Fault::EarlyCloseDevice { dev },
                _ => Fault::TruncateMedia {
                    dev,
                    bytes: pick(&mut rng, cx.family_bytes.max(1)),
                },
            };
            faults.push(PlannedFault {
                phase,
                trigger,
                fault,
            });
        }
        FaultPlan {
            name: format!("random:{seed}"),
            faults,
        }
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
            let p = FaultPlan::named(n, &cx(), 1).unwrap();
            assert_eq!(p.name, *n);
            assert_eq!(p.faults.len(), 1);
        }
        let e = FaultPlan::named("bogus", &cx(), 1).unwrap_err();
        assert!(e.to_string().contains("client-abort"), "{e}");
    }

    #[test]
    fn random_plans_are_seeded() {
        assert_eq!(FaultPlan::random(&cx(), 7), FaultPlan::random(&cx(), 7));
        let distinct: std::collections::BTreeSet<_> = (0..50)
            .map(|s| FaultPlan::random(&cx(), s))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|p| format!("{:?}", p.faults))
            .collect();
        assert!(distinct.len() > 30);
    }
}
