//! Randomized scenarios: client programs, fault plans and schedules drawn
//! from a seed (swarm style: each seed enables a random subset of fault
//! kinds and client flaws), the oracle that judges them, and the scenario
//! file a failure is written to so anyone can replay it.
//!
//! The oracle is the model plus invariants:
//! - every call returns a code documented for its method and state (checked
//!   by the world on every call);
//! - no command is delivered after an abort (checked by the world);
//! - with the reference client, every device ends in VD_E_CLOSE or
//!   VD_E_ABORT within bounded virtual time;
//! - a BACKUP that reports success had every byte delivered (the world),
//!   and a RESTORE that reports success read back exactly what was written
//!   (the server verifies every byte it reads).

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use vdi_model::fault::{Fault, FaultPlan, Phase, PlannedFault, Trigger};
use vdi_model::mutation::Mutation;
use vdi_model::programs::{ClientSpec, Flaw, Operation};
use vdi_model::statement::ReadSizes;
use vdi_model::trace::Trace;
use vdi_sim::simulate;
use vdi_sim::world::{End, RunResult, WorldConfig};
use vdi_spec::id;
use vdi_spec::{Hresult, TransferOptions};

/// One randomized case: everything needed to run and replay it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomCase {
    pub seed: u64,
    pub spec: ClientSpec,
    pub faults: Vec<PlannedFault>,
    /// A deliberately broken model rule the case runs on (test-only:
    /// `vdisim fuzz --mutant`; none by default).
    #[serde(default, skip_serializing_if = "Mutation::is_none")]
    pub mutant: Mutation,
}

fn pick(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    rng.next_u64() % n.max(1)
}

/// The case drawn from `seed`.
pub fn from_seed(seed: u64) -> RandomCase {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_CA5E);
    let devices = [1u16, 1, 2, 3, 4, 8][pick(&mut rng, 6) as usize];
    let mut spec = ClientSpec {
        operation: [Operation::Backup, Operation::Restore, Operation::Roundtrip]
            [pick(&mut rng, 3) as usize],
        devices,
        request_complete: pick(&mut rng, 2) == 0,
        server_timeout_ms: [0u32, 1_000, 5_000, 60_000][pick(&mut rng, 4) as usize],
        get_command_timeout_ms: [0u32, 50, 1_000, 0xFFFF_FFFF][pick(&mut rng, 4) as usize],
        set_name: format!("rnd-{seed:x}"),
        options: TransferOptions {
            block_size: [512u32, 4096, 65536][pick(&mut rng, 3) as usize],
            max_transfer_size: 65536 * (1 + pick(&mut rng, 4) as u32),
            buffer_count: if pick(&mut rng, 2) == 0 {
                None
            } else {
                Some(1 + pick(&mut rng, 8) as u32)
            },
        },
        ..ClientSpec::default()
    };
    spec.plan.data_bytes = 1 + pick(&mut rng, 1 << 20);
    spec.plan.mid_flushes = pick(&mut rng, 3) as u32;
    spec.plan.read_sizes = if pick(&mut rng, 2) == 0 {
        ReadSizes::Seeded(seed)
    } else {
        ReadSizes::Max
    };
    // Swarm: each flaw is enabled for a quarter of the seeds.
    for f in Flaw::ALL {
        if pick(&mut rng, 8) == 0 {
            spec.flaws.insert(f);
        }
    }
    let cx = spec.plan_context();
    let faults = vdi_sim::plans::random(&cx, seed).faults;
    RandomCase {
        seed,
        spec,
        faults,
        mutant: Mutation::None,
    }
}

/// The world configuration of a case.
pub fn config(c: &RandomCase) -> WorldConfig {
    let mut cfg = WorldConfig::new(c.seed);
    cfg.mutation = c.mutant;
    cfg.faults = FaultPlan {
        name: format!("random:{}", c.seed),
        faults: c.faults.clone(),
    };
    // Bounded virtual time: every timeout, stall and watchdog of a random
    // case fits in ten minutes; a run still going then is a hang the oracle judges.
    cfg.budget_ms = 600_000;
    // A polling client backs off to 64 ms while nothing arrives, so a long
    // stall costs a few thousand steps, not one per millisecond per thread
    // (the campaign's long tail); every timeout of a random case is 0, 50
    // ms or at least 1 s, and a watchdog at least 1 s.
    cfg.poll_backoff_max_ms = 64;
    // The step bound is a safety net that must never end a run before its
    // budget: a client whose threads all poll (timeout 0) while nothing can
    // change takes one step per polling thread per poll interval, so the
    // bound covers every thread (the devices, the controller, a spare)
    // polling for the whole budget.
    let threads = u64::from(c.spec.devices) + 2;
    cfg.max_steps =
        2_000_000u64.max(threads * (cfg.budget_ms / cfg.poll_interval_ms.max(1)) + 100_000);
    cfg
}

/// Runs a case.
pub fn run(c: &RandomCase, trace: Trace) -> RunResult {
    simulate::simulate(&c.spec, config(c), trace)
}

/// An invariant a randomized run broke.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Broken {
    pub clause: String,
    pub what: String,
}

/// The oracle for randomized runs.
pub fn check(c: &RandomCase, r: &RunResult) -> Vec<Broken> {
    let mut v: Vec<Broken> = r
        .violations
        .iter()
        .map(|x| Broken {
            clause: x.clause.clone(),
            what: x.what.clone(),
        })
        .collect();
    let reference_like = !c.spec.flaws.iter().any(|f| {
        matches!(
            f,
            Flaw::ReadsUntilFull
                | Flaw::ClosesBeforeClose
                | Flaw::TimeoutIsFatal
                | Flaw::IgnoresUnknownCommands
                | Flaw::ClosesWhileDevicesWait
        )
    });
    let stalls_forever = c.faults.iter().any(|f| {
        matches!(
            f.fault,
            Fault::ClientStall { .. } | Fault::ServerStall { .. }
        )
    });
    if reference_like && r.end == End::Finished {
        for (i, d) in r.client.devices.iter().enumerate() {
            if let Some(e) = d.end
                && e != Hresult::VD_E_CLOSE
                && e != Hresult::VD_E_ABORT
                && !r.faults_fired.iter().any(|f| f == "client-death")
            {
                v.push(Broken {
                    clause: id::TERM_CLOSE_DEVICE.into(),
                    what: format!("dev{i} ended its loop with {e}, not VD_E_CLOSE or VD_E_ABORT"),
                });
            }
        }
    }
    if reference_like && !stalls_forever && matches!(r.end, End::Hang | End::StepLimit) {
        v.push(Broken {
            clause: id::WATCHDOG_FIRES.into(),
            what: format!(
                "the run did not end by itself ({:?} at {} ms)",
                r.end, r.now_ms
            ),
        });
    }
    v
}

/// The scenario file that replays `c` (written when a randomized run fails).
pub fn to_scenario(c: &RandomCase, id: &str, broken: &[Broken]) -> String {
    let s = &c.spec;
    let mut t = String::new();
    t.push_str("# Written by a failing randomized run; replay: vdisim replay <this file>\n");
    if !c.mutant.is_none() {
        t.push_str(&format!(
            "# Found on the mutant model {} (vdisim fuzz --mutant, test-only): the replay runs the unbroken model.\n",
            c.mutant.name()
        ));
    }
    t.push_str(&format!("id = \"{id}\"\n"));
    let clauses: Vec<String> = {
        let mut k: Vec<String> = broken.iter().map(|b| b.clause.clone()).collect();
        k.sort();
        k.dedup();
        k.retain(|x| vdi_spec::clauses::all().iter().any(|c| c.id == *x));
        if k.is_empty() {
            k.push(id::TERM_OUTCOME_DECIDES.into());
        }
        k
    };
    let what: Vec<String> = broken.iter().map(|b| b.what.replace('"', "'")).collect();
    t.push_str(&format!(
        "summary = \"randomized seed {}: {}\"\n",
        c.seed,
        what.join("; ")
    ));
    t.push_str(&format!(
        "clauses = [{}]\nseeds = [{}]\nbudget-ms = 600000\n\n",
        clauses
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", "),
        c.seed
    ));
    let stmt = if s.operation == Operation::Restore {
        "restore-database"
    } else {
        "backup-database"
    };
    let rs = match &s.plan.read_sizes {
        ReadSizes::Seeded(_) => "\"seeded\"".to_string(),
        ReadSizes::Fixed(n) => n.to_string(),
        _ => "\"max\"".to_string(),
    };
    t.push_str(&format!(
        "[server]\nstatement = \"{stmt}\"\ndevices = {}\nblock-size = {}\nmax-transfer-size = {}\n{}data-bytes = {}\nmid-flushes = {}\nread-sizes = {rs}\n\n",
        s.devices,
        s.options.block_size,
        s.options.max_transfer_size,
        s.options.buffer_count.map_or(String::new(), |b| format!("buffer-count = {b}\n")),
        s.plan.data_bytes,
        s.plan.mid_flushes,
    ));
    let op = match s.operation {
        Operation::Backup => "backup",
        Operation::Restore => "restore",
        Operation::Roundtrip => "roundtrip",
    };
    let flaws: Vec<String> = s
        .flaws
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .collect();
    t.push_str(&format!(
        "[client]\nprogram = \"reference\"\noperation = \"{op}\"\nflaws = [{}]\nrequest-complete = {}\nserver-timeout-ms = {}\nget-command-timeout-ms = {}\n\n",
        flaws.join(", "),
        s.request_complete,
        s.server_timeout_ms,
        s.get_command_timeout_ms
    ));
    for f in &c.faults {
        let phase = match f.phase {
            Phase::Any => "any",
            Phase::Backup => "backup",
            Phase::Restore => "restore",
        };
        let trig = match &f.trigger {
            Trigger::AtMs { ms } => format!("{{ on = \"at-ms\", ms = {ms} }}"),
            Trigger::AtStep { step } => format!("{{ on = \"at-step\", step = {step} }}"),
            Trigger::AfterCompletions { nth } => {
                format!("{{ on = \"after-completions\", nth = {nth} }}")
            }
            Trigger::OnCommand { dev, nth, code } => format!(
                "{{ on = \"on-command\", dev = {dev}, nth = {nth}{} }}",
                code.map_or(String::new(), |c| format!(
                    ", code = \"{}\"",
                    c.name().trim_start_matches("VDC_")
                ))
            ),
        };
        let fault = match &f.fault {
            Fault::ServerStall { ms } => format!("{{ fault = \"server-stall\", ms = {ms} }}"),
            Fault::ClientStall { ms } => format!("{{ fault = \"client-stall\", ms = {ms} }}"),
            Fault::CompleteWithError { code } => {
                format!("{{ fault = \"complete-with-error\", code = {} }}", code.0)
            }
            Fault::EarlyCloseDevice { dev } => {
                format!("{{ fault = \"early-close-device\", dev = {dev} }}")
            }
            Fault::TruncateMedia { dev, bytes } => {
                format!("{{ fault = \"truncate-media\", dev = {dev}, bytes = {bytes} }}")
            }
            other => format!("{{ fault = \"{}\" }}", other.kind()),
        };
        t.push_str(&format!(
            "[[faults.list]]\nphase = \"{phase}\"\ntrigger = {trig}\nfault = {fault}\n\n"
        ));
    }
    t
}

/// The case a fuzzer's bytes describe: every field of a randomized case
/// (program, options, flaws, up to four planned faults, the scheduler seed)
/// decoded from `bytes` with `arbitrary`, over the same ranges as the
/// property test `conformance/tests/randomized.rs` draws from, so coverage
/// guidance can steer every dimension (the `world` fuzz target). Any bytes
/// make a case; too few make the smallest values.
pub fn from_bytes(bytes: &[u8]) -> RandomCase {
    let mut u = arbitrary::Unstructured::new(bytes);
    structured(&mut u).unwrap_or_else(|_| from_seed(0))
}

fn structured(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<RandomCase> {
    let devices: u16 = u.int_in_range(1..=6)?;
    let seed: u64 = u.arbitrary()?;
    let mut spec = ClientSpec {
        operation: *u.choose(&[Operation::Backup, Operation::Restore, Operation::Roundtrip])?,
        devices,
        request_complete: u.arbitrary()?,
        server_timeout_ms: *u.choose(&[0u32, 1_000, 60_000])?,
        get_command_timeout_ms: *u.choose(&[0u32, 100, 10_000, 0xFFFF_FFFF])?,
        set_name: "fuzz".into(),
        options: TransferOptions {
            block_size: *u.choose(&[512u32, 4096, 65536])?,
            max_transfer_size: 65536 * u.int_in_range(1u32..=8)?,
            buffer_count: if u.arbitrary()? {
                Some(u.int_in_range(1u32..=12)?)
            } else {
                None
            },
        },
        ..ClientSpec::default()
    };
    spec.plan.data_bytes = u.int_in_range(1u64..=(1 << 20) - 1)?;
    spec.plan.mid_flushes = u.int_in_range(0u32..=2)?;
    spec.plan.read_sizes = if u.arbitrary()? {
        ReadSizes::Seeded(seed)
    } else {
        ReadSizes::Max
    };
    for _ in 0..u.int_in_range(0..=2)? {
        spec.flaws.insert(*u.choose(&Flaw::ALL)?);
    }
    let mut faults = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        faults.push(planned(u, devices)?);
    }
    Ok(RandomCase {
        seed,
        spec,
        faults,
        mutant: Mutation::None,
    })
}

fn planned(u: &mut arbitrary::Unstructured<'_>, devices: u16) -> arbitrary::Result<PlannedFault> {
    let phase = *u.choose(&[Phase::Any, Phase::Backup, Phase::Restore])?;
    let trigger = if u.arbitrary()? {
        Trigger::AtStep {
            step: u.int_in_range(0u64..=299)?,
        }
    } else {
        Trigger::OnCommand {
            dev: u.int_in_range(0..=devices - 1)?,
            nth: u.int_in_range(1u64..=15)?,
            code: *u.choose(&[
                None,
                Some(vdi_spec::CommandCode::Write),
                Some(vdi_spec::CommandCode::Read),
                Some(vdi_spec::CommandCode::Flush),
            ])?,
        }
    };
    let dev = u.int_in_range(0..=devices - 1)?;
    let fault = match u.int_in_range(0u8..=8)? {
        0 => Fault::ClientSignalAbort,
        1 => Fault::ServerSignalAbort,
        2 => Fault::ClientDeath,
        3 => Fault::ServerDeath,
        4 => Fault::ServerStall {
            ms: u.int_in_range(1u64..=199_999)?,
        },
        5 => Fault::ClientStall {
            ms: u.int_in_range(1u64..=199_999)?,
        },
        6 => Fault::CompleteWithError {
            code: *u.choose(&[
                vdi_spec::Win32::ERROR_DISK_FULL,
                vdi_spec::Win32::ERROR_EOM_OVERFLOW,
                vdi_spec::Win32::ERROR_WRITE_FAULT,
                vdi_spec::Win32::ERROR_READ_FAULT,
                vdi_spec::Win32::ERROR_HANDLE_EOF,
                vdi_spec::Win32::ERROR_END_OF_MEDIA,
                vdi_spec::Win32::ERROR_NOT_SUPPORTED,
            ])?,
        },
        7 => Fault::EarlyCloseDevice { dev },
        _ => Fault::TruncateMedia {
            dev,
            bytes: u.int_in_range(0u64..=(1 << 20) - 1)?,
        },
    };
    Ok(PlannedFault {
        phase,
        trigger,
        fault,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte strings decode to cases over the whole space, deterministically,
    /// and the cases hold the oracle (as the property test's do).
    #[test]
    fn bytes_make_cases_that_hold_the_oracle() {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let mut devices = std::collections::BTreeSet::new();
        let mut with_faults = 0;
        for n in 0..400 {
            let len = (n % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let c = from_bytes(&bytes);
            assert_eq!(c, from_bytes(&bytes));
            devices.insert(c.spec.devices);
            with_faults += usize::from(!c.faults.is_empty());
            let r = run(&c, Trace::off());
            assert_eq!(check(&c, &r), [], "{c:?}");
        }
        assert!(devices.len() >= 4, "{devices:?}");
        assert!(with_faults > 50, "{with_faults}");
        assert_eq!(from_bytes(&[]).spec.devices, 1);
    }
}
