//! Exploration throughput on the 2-device configuration of `vdisim
//! explore` (`backup2-client-abort`: a 2-device BACKUP of two writes and a
//! Flush per device, the client's SignalAbort at device 0's third fetch),
//! tracing off.
//!
//! - `states_pruned`: the whole space at 2 preemptions with state hashing;
//!   the counter is distinct states, so divan reports states/s.
//! - `steps_unpruned`: the first 500 schedules without pruning, every run
//!   to its end; the counter is world steps (re-executed prefixes
//!   included), so divan reports steps/s.
//!
//! Run: `cargo bench -p vdi-sim --bench explore`.

use divan::counter::ItemsCount;
use vdi_model::fault::FaultPlan;
use vdi_model::programs::{ClientSpec, Operation};
use vdi_model::trace::Trace;
use vdi_sim::explore::{Limits, Stats, explore};
use vdi_sim::scheduler::Scheduler;
use vdi_sim::world::{World, WorldConfig};

fn main() {
    divan::main();
}

fn spec() -> ClientSpec {
    let mut s = ClientSpec {
        operation: Operation::Backup,
        devices: 2,
        set_name: "explore".into(),
        ..ClientSpec::default()
    };
    s.plan.data_bytes = 256 << 10;
    s
}

fn build(s: Box<dyn Scheduler>, t: Trace) -> World {
    let spec = spec();
    let mut cfg = WorldConfig::new(1);
    cfg.faults = FaultPlan::named("client-abort", &spec.plan_context()).expect("a named plan");
    cfg.budget_ms = 600_000;
    cfg.max_steps = 20_000;
    World::with_scheduler(cfg, spec.controller(), t, s)
}

fn run(limits: Limits) -> Stats {
    let e = explore(&build, limits).expect("explores");
    assert!(e.violation.is_none());
    e.stats
}

const PRUNED: Limits = Limits {
    bound: 2,
    max_schedules: 1_000_000,
    prune: true,
};

const UNPRUNED: Limits = Limits {
    bound: 2,
    max_schedules: 500,
    prune: false,
};

#[divan::bench(sample_count = 10)]
fn states_pruned(b: divan::Bencher) {
    let states = run(PRUNED).states;
    b.counter(ItemsCount::new(states))
        .bench_local(|| run(PRUNED));
}

#[divan::bench(sample_count = 10)]
fn steps_unpruned(b: divan::Bencher) {
    let steps = run(UNPRUNED).steps;
    b.counter(ItemsCount::new(steps))
        .bench_local(|| run(UNPRUNED));
}
