//! Determinism: same seed, same scenario, same build → the same trace hash
//! (ARCHITECTURE.md, "Rules that keep it true"). Many seeds over 1..4
//! devices, every operation, fault plans (none, random, each named plan)
//! and client flaws, each run twice.

use std::collections::BTreeSet;
use vdi_model::fault::NAMED_PLANS;
use vdi_model::programs::{ClientSpec, Flaw, Operation};
use vdi_model::statement::{ReadSizes, ServerPlan};
use vdi_model::trace::{Trace, hash_text};
use vdi_sim::simulate;
use vdi_sim::world::{RunResult, WorldConfig};

const SEEDS: u64 = 200;

/// The scenario of seed `seed`: devices, operation, fault plan and flaw all
/// vary with it (small data so that 400 runs stay fast in debug builds).
fn case(seed: u64) -> (ClientSpec, WorldConfig) {
    let devices = (seed % 4) as u16 + 1;
    let operation = match (seed / 4) % 3 {
        0 => Operation::Backup,
        1 => Operation::Restore,
        _ => Operation::Roundtrip,
    };
    let mut spec = ClientSpec {
        operation,
        devices,
        request_complete: seed.is_multiple_of(5),
        server_timeout_ms: 5_000,
        get_command_timeout_ms: 2_000,
        plan: ServerPlan {
            data_bytes: 64 * 1024 * (2 + seed % 7),
            mid_flushes: (seed % 3) as u32,
            read_sizes: if seed.is_multiple_of(2) {
                ReadSizes::Max
            } else {
                ReadSizes::Seeded(seed)
            },
            ..ServerPlan::default()
        },
        ..ClientSpec::default()
    };
    // Every fourth seed has a flaw, cycling through all of them.
    if seed % 4 == 3 {
        spec.flaws
            .insert(Flaw::ALL[(seed / 4) as usize % Flaw::ALL.len()]);
    }
    let plans = NAMED_PLANS.len() as u64 + 2;
    let plan = match seed % plans {
        0 => "none",
        1 => "random",
        k => NAMED_PLANS[(k - 2) as usize],
    };
    let mut cfg = WorldConfig::new(seed);
    cfg.faults = simulate::fault_plan(plan, &spec, seed).expect("a known plan");
    (spec, cfg)
}

fn run(seed: u64, trace: Trace) -> RunResult {
    let (spec, cfg) = case(seed);
    simulate::simulate(&spec, cfg, trace)
}

/// Same seed twice → the same hash, the same end, the same statement
/// outcomes, the same virtual time and step count; different seeds → mostly
/// different hashes.
#[test]
fn same_seed_same_hash() {
    let mut hashes = BTreeSet::new();
    for seed in 0..SEEDS {
        let a = run(seed, Trace::hashing());
        let b = run(seed, Trace::hashing());
        assert_eq!(a.trace_hash(), b.trace_hash(), "seed {seed}");
        assert_eq!(a.trace.len(), b.trace.len(), "seed {seed}");
        assert_eq!(
            (a.end, a.now_ms, a.steps),
            (b.end, b.now_ms, b.steps),
            "seed {seed}"
        );
        assert_eq!(a.statements, b.statements, "seed {seed}");
        assert_eq!(a.violations, b.violations, "seed {seed}");
        assert_eq!(a.faults_fired, b.faults_fired, "seed {seed}");
        assert!(!a.trace.is_empty(), "seed {seed}: an empty trace");
        hashes.insert(a.trace_hash());
    }
    assert!(
        hashes.len() as u64 >= SEEDS * 95 / 100,
        "only {} distinct hashes over {SEEDS} seeds",
        hashes.len()
    );
}

/// The seed alone (same scenario otherwise) changes the interleaving, and
/// so the trace, in most runs.
#[test]
fn seed_changes_schedule() {
    let spec = ClientSpec {
        operation: Operation::Roundtrip,
        devices: 3,
        plan: ServerPlan {
            data_bytes: 512 * 1024,
            ..ServerPlan::default()
        },
        ..ClientSpec::default()
    };
    let hashes: BTreeSet<String> = (0..40)
        .map(|seed| {
            let r = simulate::simulate(&spec, WorldConfig::new(seed), Trace::hashing());
            assert!(
                r.statements.iter().all(|(_, o)| o.succeeded()),
                "seed {seed}"
            );
            r.trace_hash()
        })
        .collect();
    assert!(hashes.len() >= 38, "only {} distinct hashes", hashes.len());
}

/// Recording and hashing give the same hash; the hash is FNV-1a over the
/// JSONL text, so anyone can recompute it from a trace file.
#[test]
fn recording_equals_hashing() {
    for seed in (0..SEEDS).step_by(7) {
        let rec = run(seed, Trace::recording());
        let hash = run(seed, Trace::hashing());
        assert_eq!(rec.trace_hash(), hash.trace_hash(), "seed {seed}");
        assert_eq!(rec.trace.len(), hash.trace.len(), "seed {seed}");
        assert!(hash.trace.events().is_empty());
        let text = rec.trace.to_jsonl();
        assert_eq!(hash_text(&text), rec.trace.hash(), "seed {seed}");
        assert_eq!(format!("{:016x}", hash_text(&text)), rec.trace_hash());
        assert_eq!(text.lines().count() as u64, rec.trace.len(), "seed {seed}");
        // The recorded run decides exactly as the hashing one.
        assert_eq!(rec.statements, hash.statements, "seed {seed}");
        assert_eq!(rec.end, hash.end, "seed {seed}");
    }
}

/// A trace that is off changes nothing the run decides.
#[test]
fn tracing_off_changes_no_decision() {
    for seed in (0..SEEDS).step_by(11) {
        let off = run(seed, Trace::off());
        let on = run(seed, Trace::hashing());
        assert_eq!(off.statements, on.statements, "seed {seed}");
        assert_eq!(
            (off.end, off.now_ms, off.steps),
            (on.end, on.now_ms, on.steps)
        );
        assert_eq!(off.violations, on.violations, "seed {seed}");
        assert!(off.trace.is_empty());
    }
}

/// The hashes of every determinism case, folded into one: pinned, so a
/// refactoring that changes any run's trace fails here.
#[test]
fn pinned_hashes() {
    let mut all = String::new();
    for seed in 0..SEEDS {
        all.push_str(&run(seed, Trace::hashing()).trace_hash());
        all.push('\n');
    }
    assert_eq!(format!("{:016x}", hash_text(&all)), "b89d82edecdc7cd1");
}
