//! Running a client program in a world, and the readable summary
//! `vdisim simulate` prints.

use crate::fault::{FaultPlan, PlanContext};
use crate::program::{ClientSpec, Operation};
use crate::statement::{BackupRecord, StatementKind};
use crate::trace::Trace;
use crate::world::{RunResult, World, WorldConfig};
use std::fmt::Write;

/// The context named fault plans need for `spec`.
pub fn plan_context(spec: &ClientSpec) -> PlanContext {
    let rec = backup_layout(spec);
    PlanContext {
        devices: spec.devices,
        longest_timeout_ms: u64::from(
            spec.get_command_timeout_ms
                .max(spec.get_configuration_timeout_ms),
        )
        .min(600_000),
        server_timeout_ms: u64::from(spec.server_timeout_ms),
        family_bytes: rec.families.first().map_or(0, |f| f.len),
    }
}

/// The backup `spec` produces (or, for a restore-only run, the backup the
/// world seeds).
pub fn backup_layout(spec: &ClientSpec) -> BackupRecord {
    BackupRecord::plan(
        &spec.database,
        StatementKind::BackupDatabase,
        1,
        spec.devices as usize,
        spec.plan.data_bytes,
        &spec.options,
    )
}

/// Runs `spec` in a world. A restore-only run gets a seeded backup: the
/// server's history and the client's media hold it before the run starts.
pub fn simulate(spec: &ClientSpec, mut cfg: WorldConfig, trace: Trace) -> RunResult {
    if spec.operation == Operation::Restore && cfg.seed_backups.is_empty() {
        cfg.seed_backups.push(backup_layout(spec));
    }
    World::new(cfg, spec.controller(), trace).run()
}

/// Resolves a `--faults` value for `spec`.
pub fn fault_plan(
    name: &str,
    spec: &ClientSpec,
    seed: u64,
) -> Result<FaultPlan, crate::fault::UnknownPlan> {
    FaultPlan::named(name, &plan_context(spec), seed)
}

/// The per-device, per-statement summary of a run (ends without the
/// trace-hash line, which the caller prints).
pub fn render(spec: &ClientSpec, cfg: &WorldConfig, r: &RunResult) -> String {
    let mut s = String::new();
    let flaws: Vec<&str> = spec.flaws.iter().map(|f| f.name()).collect();
    let _ = writeln!(
        s,
        "seed {}  devices {}  operation {:?}  faults {}  client {}  profile {}",
        cfg.seed,
        spec.devices,
        spec.operation,
        cfg.faults.name,
        if flaws.is_empty() {
            "reference".to_string()
        } else {
            flaws.join("+")
        },
        cfg.profile.name
    );
    for (i, (stmt, out)) in r.statements.iter().enumerate() {
        let _ = writeln!(s, "\nstatement {}: {}", i + 1, stmt.to_tsql());
        let _ = writeln!(
            s,
            "  outcome: {:?}{}",
            out.status,
            out.reason.map(|r| format!(" ({r:?})")).unwrap_or_default()
        );
        for m in &out.messages {
            let _ = writeln!(s, "    {m}");
        }
    }
    let _ = writeln!(s, "\ndevices (client view):");
    for (d, rep) in r.client.devices.iter().enumerate() {
        let cmds: Vec<String> = rep
            .commands
            .iter()
            .map(|(k, v)| format!("{k}×{v}"))
            .collect();
        let _ = writeln!(
            s,
            "  dev{d:<3} {:<44} bytes {:>12}  timeouts {:>3}  end {}",
            if cmds.is_empty() {
                "-".to_string()
            } else {
                cmds.join(" ")
            },
            rep.bytes,
            rep.timeouts,
            rep.end.map_or("-".to_string(), |c| c.to_string())
        );
    }
    if !r.client.log.is_empty() {
        let _ = writeln!(s, "\nclient:");
        for l in &r.client.log {
            let _ = writeln!(s, "  {l}");
        }
    }
    if !r.faults_fired.is_empty() {
        let _ = writeln!(s, "\nfaults fired: {}", r.faults_fired.join(", "));
    }
    if r.violations.is_empty() {
        let _ = writeln!(s, "\ninvariants: hold");
    } else {
        let _ = writeln!(s, "\ninvariants: {} violated", r.violations.len());
        for v in &r.violations {
            let _ = writeln!(s, "  [{}] {}", v.clause, v.what);
        }
    }
    let _ = writeln!(
        s,
        "end: {:?} at {} ms virtual after {} steps",
        r.end, r.now_ms, r.steps
    );
    s
}
