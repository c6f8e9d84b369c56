//! Fault plans that need a generator: `random` (swarm testing: the seed
//! enables a subset of fault kinds, each at a random trigger). Named plans
//! are the model's (`vdi_model::fault::FaultPlan::named`).

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use vdi_model::fault::{Fault, FaultPlan, Phase, PlanContext, PlannedFault, Trigger, UnknownPlan};
use vdi_model::msg::DevIx;
use vdi_spec::Win32;

/// A `--faults` value: `none`, `random` (drawn from `seed`), or a named
/// plan.
pub fn fault_plan(name: &str, cx: &PlanContext, seed: u64) -> Result<FaultPlan, UnknownPlan> {
    if name == "random" {
        return Ok(random(cx, seed));
    }
    FaultPlan::named(name, cx)
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
    fn random_plans_are_seeded() {
        assert_eq!(random(&cx(), 7), random(&cx(), 7));
        let distinct: std::collections::BTreeSet<_> = (0..50)
            .map(|s| format!("{:?}", random(&cx(), s).faults))
            .collect();
        assert!(distinct.len() > 30);
        assert_eq!(fault_plan("random", &cx(), 7).unwrap(), random(&cx(), 7));
        assert!(fault_plan("bogus", &cx(), 7).is_err());
        assert_eq!(fault_plan("none", &cx(), 7).unwrap(), FaultPlan::none());
    }
}
