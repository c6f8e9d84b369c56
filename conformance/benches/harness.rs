//! Harness throughput (issue: conformance harness).
//!
//! - `catalog_model`: the whole scripted catalog against the model, with
//!   the runner on every core, from loaded scenarios to the assembled report
//!   (goal: under 2 s wall on a 2-core machine).
//! - `randomized_2_cores`: randomized cases (draw, run, judge) on two
//!   worker threads (goal ≥ 5,000 per second).
//!
//! Run: `cargo bench -p vdi-conformance --bench harness`.

use divan::counter::ItemsCount;
use std::sync::atomic::{AtomicU64, Ordering};
use vdi_conformance::commands::load_catalog;
use vdi_conformance::oracle::CaseOptions;
use vdi_conformance::random;
use vdi_conformance::runner::{self, RunConfig};
use vdi_conformance::scenario;
use vdi_model::trace::Trace;

fn main() {
    divan::main();
}

#[divan::bench(sample_count = 10)]
fn catalog_model(b: divan::Bencher) {
    let cases = load_catalog(&scenario::default_dir()).expect("catalog");
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let plan = RunConfig {
        backends: vec!["model".into()],
        extra_seeds: 0,
        workers,
        case: CaseOptions::default(),
        deviations_dir: None,
        recording: None,
    };
    b.counter(ItemsCount::new(cases.len()))
        .bench(|| runner::run(&cases, &plan).expect("run").totals.cases);
}

const RANDOM_BATCH: u64 = 400;

#[divan::bench(sample_count = 10)]
fn randomized_2_cores(b: divan::Bencher) {
    let next = AtomicU64::new(1);
    b.counter(ItemsCount::new(RANDOM_BATCH)).bench(|| {
        let start = next.fetch_add(RANDOM_BATCH, Ordering::Relaxed);
        std::thread::scope(|s| {
            for w in 0..2u64 {
                s.spawn(move || {
                    let mut broken = 0usize;
                    for seed in (start + w..start + RANDOM_BATCH).step_by(2) {
                        let c = random::from_seed(seed);
                        let r = random::run(&c, Trace::off());
                        broken += random::check(&c, &r).len();
                    }
                    broken
                });
            }
        });
    });
}
