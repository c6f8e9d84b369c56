//! Running a client program in a world.

use crate::plans;
use crate::world::{RunResult, World, WorldConfig};
use vdi_model::fault::{FaultPlan, UnknownPlan};
use vdi_model::programs::{ClientSpec, Operation};
use vdi_model::trace::Trace;

/// Runs `spec` in a world. A restore-only run gets a seeded backup: the
/// server's history and the client's media hold it before the run starts.
pub fn simulate(spec: &ClientSpec, mut cfg: WorldConfig, trace: Trace) -> RunResult {
    if spec.operation == Operation::Restore && cfg.seed_backups.is_empty() {
        cfg.seed_backups.push(spec.backup_layout());
    }
    World::new(cfg, spec.controller(), trace).run()
}

/// Resolves a `--faults` value (`none`, `random`, a named plan) for `spec`.
pub fn fault_plan(name: &str, spec: &ClientSpec, seed: u64) -> Result<FaultPlan, UnknownPlan> {
    plans::fault_plan(name, &spec.plan_context(), seed)
}
