//! Shrinking a failing randomized case: drop faults and flaws, fewer
//! devices, less data, no mid-stream Flushes, default options — each step
//! kept only if the smaller case still breaks the same clause.

use crate::random::{self, RandomCase};
use vdi_model::fault::{Fault, Trigger};
use vdi_model::trace::Trace;

/// Runs a shrink may make.
pub const SHRINK_RUNS_MAX: usize = 300;

/// Whether `c` breaks `clause`.
fn breaks(c: &RandomCase, clause: &str) -> bool {
    let r = random::run(c, Trace::off());
    random::check(c, &r).iter().any(|b| b.clause == clause)
}

/// The smallest case reached from `case` that still breaks `clause` (the
/// case itself when nothing smaller does), within [`SHRINK_RUNS_MAX`] runs.
pub fn shrink(case: &RandomCase, clause: &str) -> RandomCase {
    shrink_by(case, |c| breaks(c, clause))
}

/// [`shrink`] with any predicate (what "still fails" means).
pub fn shrink_by(case: &RandomCase, mut fails: impl FnMut(&RandomCase) -> bool) -> RandomCase {
    let mut best = case.clone();
    let mut runs = 0;
    'outer: loop {
        for cand in smaller(&best) {
            if runs >= SHRINK_RUNS_MAX {
                break 'outer;
            }
            runs += 1;
            if fails(&cand) {
                best = cand;
                continue 'outer;
            }
        }
        break;
    }
    best
}

/// The device a fault names, if any.
fn fault_device(f: &vdi_model::fault::PlannedFault) -> Option<u16> {
    let by_trigger = match f.trigger {
        Trigger::OnCommand { dev, .. } => Some(dev),
        _ => None,
    };
    let by_fault = match f.fault {
        Fault::EarlyCloseDevice { dev } | Fault::TruncateMedia { dev, .. } => Some(dev),
        _ => None,
    };
    by_trigger.max(by_fault)
}

/// One-step-smaller cases, the biggest reductions first.
fn smaller(c: &RandomCase) -> Vec<RandomCase> {
    let mut v = Vec::new();
    for i in 0..c.faults.len() {
        let mut d = c.clone();
        d.faults.remove(i);
        v.push(d);
    }
    for f in c.spec.flaws.iter() {
        let mut d = c.clone();
        d.spec.flaws.remove(f);
        v.push(d);
    }
    for n in [1, c.spec.devices / 2] {
        if n >= 1 && n < c.spec.devices {
            let mut d = c.clone();
            d.spec.devices = n;
            d.faults.retain(|f| fault_device(f).is_none_or(|x| x < n));
            v.push(d);
        }
    }
    if c.spec.plan.mid_flushes > 0 {
        let mut d = c.clone();
        d.spec.plan.mid_flushes = 0;
        v.push(d);
    }
    for bytes in [1, c.spec.plan.data_bytes / 2] {
        if bytes >= 1 && bytes < c.spec.plan.data_bytes {
            let mut d = c.clone();
            d.spec.plan.data_bytes = bytes;
            v.push(d);
        }
    }
    if c.spec.options.buffer_count.is_some() {
        let mut d = c.clone();
        d.spec.options.buffer_count = None;
        v.push(d);
    }
    if c.spec.request_complete {
        let mut d = c.clone();
        d.spec.request_complete = false;
        v.push(d);
    }
    v
}
