//! `vdisim simulate`: one world on the built-in model.

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use thiserror::Error;
use vdi_model::programs::{ClientSpec, Flaw, Operation};
use vdi_model::statement::{ReadSizes, StatementKind};
use vdi_model::trace::Trace;
use vdi_sim::simulate;
use vdi_sim::world::{RunResult, WorldConfig};
use vdi_spec::TransferOptions;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OpArg {
    Backup,
    Restore,
    Roundtrip,
}

/// Arguments of `vdisim simulate`.
#[derive(Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Seed of the scheduler (and of `--faults random`).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of striped devices, 1..64.
    #[arg(long, default_value_t = 1)]
    pub devices: u16,
    #[arg(long, value_enum, default_value = "roundtrip")]
    pub operation: OpArg,
    /// `none`, `random`, or a named plan (see `--faults help`).
    #[arg(long, default_value = "none")]
    pub faults: String,
    /// Client flaws, comma-separated (`reference` for none): closes-before-close,
    /// ignores-unknown-commands, timeout-is-fatal, short-transfers,
    /// tampers-command-block, reads-until-full, ignores-outcome, flush-not-supported,
    /// closes-while-devices-wait.
    #[arg(long, default_value = "reference")]
    pub client: String,
    /// Bytes of database data the backup streams.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub data_bytes: u64,
    #[arg(long, default_value_t = 512)]
    pub block_size: u32,
    #[arg(long, default_value_t = 65536)]
    pub max_transfer_size: u32,
    #[arg(long)]
    pub buffer_count: Option<u32>,
    /// Restore read sizes: `max`, `seeded`, or a byte count.
    #[arg(long, default_value = "seeded")]
    pub read_sizes: String,
    /// Flushes mid-stream per device (FILESTREAM-style).
    #[arg(long, default_value_t = 0)]
    pub mid_flushes: u32,
    /// Ask for VDC_Complete (VDF_RequestComplete).
    #[arg(long)]
    pub request_complete: bool,
    /// VDConfig.serverTimeOut in ms (0 disables the watchdog).
    #[arg(long, default_value_t = 60_000)]
    pub server_timeout_ms: u32,
    /// The client's GetCommand timeout in ms (4294967295 = INFINITE).
    #[arg(long, default_value_t = 10_000)]
    pub get_command_timeout_ms: u32,
    /// Write the canonical JSONL trace to this file.
    #[arg(long)]
    pub trace: Option<PathBuf>,
}

/// A bad `simulate` argument, with how to fix it.
#[derive(Debug, Error)]
pub enum SimulateError {
    #[error("--devices {0}: a virtual device set has 1 to 64 devices")]
    Devices(u16),
    #[error("--client: unknown flaw '{0}'; use reference or a comma-separated list of: {1}")]
    Flaw(String, String),
    #[error(
        "--read-sizes '{0}': use max, seeded, or a number of bytes (a multiple of --block-size)"
    )]
    ReadSizes(String),
    #[error(transparent)]
    Options(#[from] vdi_spec::options::OptionError),
    #[error("--faults: {0}")]
    Faults(vdi_model::fault::UnknownPlan),
    #[error(transparent)]
    Bound(#[from] vdi_spec::bounds::BoundError),
}

/// What `simulate` produced.
pub struct SimulateOutput {
    pub text: String,
    pub trace_jsonl: String,
    pub trace_hash: String,
    pub violations: usize,
}

/// Builds the client spec and world configuration the arguments describe.
pub fn build(a: &SimulateArgs) -> Result<(ClientSpec, WorldConfig), SimulateError> {
    if !(1..=64).contains(&a.devices) {
        return Err(SimulateError::Devices(a.devices));
    }
    let mut spec = ClientSpec {
        operation: match a.operation {
            OpArg::Backup => Operation::Backup,
            OpArg::Restore => Operation::Restore,
            OpArg::Roundtrip => Operation::Roundtrip,
        },
        devices: a.devices,
        request_complete: a.request_complete,
        server_timeout_ms: a.server_timeout_ms,
        get_command_timeout_ms: a.get_command_timeout_ms,
        set_name: format!("vdisim-{:016x}", a.seed),
        options: TransferOptions {
            block_size: a.block_size,
            max_transfer_size: a.max_transfer_size,
            buffer_count: a.buffer_count,
        },
        restore_kind: StatementKind::RestoreDatabase,
        ..ClientSpec::default()
    };
    spec.options.validate()?;
    spec.plan.data_bytes = a.data_bytes;
    spec.plan.mid_flushes = a.mid_flushes;
    spec.plan.read_sizes = match a.read_sizes.as_str() {
        "max" => ReadSizes::Max,
        "seeded" => ReadSizes::Seeded(a.seed),
        n => match n.parse::<u32>() {
            Ok(v) if v > 0 && v % a.block_size == 0 => ReadSizes::Fixed(v),
            _ => return Err(SimulateError::ReadSizes(n.to_string())),
        },
    };
    let kinds: &[StatementKind] = match spec.operation {
        Operation::Backup => &[StatementKind::BackupDatabase],
        Operation::Restore => &[StatementKind::RestoreDatabase],
        _ => &[
            StatementKind::BackupDatabase,
            StatementKind::RestoreDatabase,
        ],
    };
    for kind in kinds {
        spec.plan
            .check_bounds(&spec.options, usize::from(a.devices), *kind, None)?;
    }
    if a.client != "reference" {
        for f in a.client.split(',') {
            let flaw = Flaw::from_name(f.trim()).ok_or_else(|| {
                let all: Vec<&str> = Flaw::ALL.iter().map(|f| f.name()).collect();
                SimulateError::Flaw(f.to_string(), all.join(", "))
            })?;
            spec.flaws.insert(flaw);
        }
    }
    if spec.flaws.contains(&Flaw::IgnoresUnknownCommands) {
        // Give the flaw something to ignore: a command pipe-like clients
        // answer with ERROR_NOT_SUPPORTED.
        spec.plan
            .extra_commands
            .push(vdi_model::statement::ExtraCommand {
                dev: 0,
                after_data_commands: 2,
                code: vdi_spec::CommandCode::GetError,
            });
    }
    let mut cfg = WorldConfig::new(a.seed);
    cfg.faults = simulate::fault_plan(&a.faults, &spec, a.seed).map_err(SimulateError::Faults)?;
    Ok((spec, cfg))
}

/// Runs `vdisim simulate`.
pub fn run_simulate(a: &SimulateArgs) -> Result<SimulateOutput, SimulateError> {
    let (spec, cfg) = build(a)?;
    let trace = if a.trace.is_some() {
        Trace::recording()
    } else {
        Trace::hashing()
    };
    let r = simulate::simulate(&spec, cfg.clone(), trace);
    Ok(SimulateOutput {
        text: render(&spec, &cfg, &r),
        trace_jsonl: r.trace.to_jsonl(),
        trace_hash: r.trace_hash(),
        violations: r.violations.len(),
    })
}

/// The per-device, per-statement summary of a run (ends without the
/// trace-hash line, which the caller prints).
pub fn render(spec: &ClientSpec, cfg: &WorldConfig, r: &RunResult) -> String {
    use std::fmt::Write;
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

/// What a correct client observes under each named fault plan
/// ([`vdi_model::fault::NAMED_PLANS`]), as the model plays it: the text
/// `--faults help` prints for `simulate` and `serve`. Which side applies a
/// plan's faults, and when they fire, are read from the plans themselves.
pub const PLAN_EFFECTS: &[(&str, &str)] = &[
    (
        "client-abort",
        "every device's next call returns VD_E_ABORT; the BACKUP fails with Msg 18210 (operating system error 995) per device and Msg 3013",
    ),
    (
        "server-abort",
        "as after KILL: every device's next call returns VD_E_ABORT; the statement fails with Msg 3204 and Msg 3013",
    ),
    (
        "client-death",
        "the server aborts the set (abort.client-death); the statement fails with Msg 18210 (operating system error 995) and Msg 3013",
    ),
    (
        "server-death",
        "every device call returns VD_E_ABORT (abort.server-death); the statement fails with the transport error Msg 10054 and its connection is dropped: vdisim sqlcmd reports the connection lost (Communication link failure) and exits 1",
    ),
    (
        "server-stall",
        "GetCommand returns VD_E_TIMEOUT while the server stalls (three times the longest timeout); a client that retries finishes and the statement succeeds",
    ),
    (
        "slow-client",
        "the device stalls three times serverTimeOut, so the server's watchdog fires: devices get VD_E_ABORT and the statement fails with Msg 18210 (995) and Msg 3013",
    ),
    (
        "disk-full",
        "the device enters IO-ERROR (the server sends VDC_ClearError), then the set is aborted (VD_E_ABORT); the BACKUP fails with Msg 3202 (112, not enough space) and Msg 3013",
    ),
    (
        "end-of-media",
        "as disk-full with error 1100: no media change is modelled, the BACKUP fails with Msg 3202 (1100) and Msg 3013",
    ),
    (
        "write-fault",
        "the set is aborted (VD_E_ABORT on every device); the BACKUP fails with Msg 3202 (29, cannot write) and Msg 3013",
    ),
    (
        "read-fault",
        "the set is aborted (VD_E_ABORT on every device); the RESTORE fails with Msg 3203 (30, cannot read) and Msg 3013",
    ),
    (
        "truncated-media",
        "the client answers the read past its media's end with ERROR_HANDLE_EOF; the RESTORE fails with Msg 3203 (38) and Msg 3013, devices get VD_E_ABORT",
    ),
    (
        "early-close",
        "GetCommand on the closed device returns VD_E_CLOSE and the client stops serving it; the RESTORE fails with Msg 3203 (6) and Msg 3013",
    ),
    (
        "cancel",
        "the statement's connection sends an attention (sqlcmd -t, Ctrl-C): as after KILL every device's next call returns VD_E_ABORT; the statement fails with Msg 3204 and Msg 3013 and no backup is recorded",
    ),
    (
        "disconnect",
        "the statement's connection ends without a cancel: by default (disconnect-without-attention = run-to-end) the statement runs to its end and devices end with VD_E_CLOSE; under `abort` it is cancelled as by `cancel`",
    ),
];

/// `--faults help`: every named plan, the side that applies its faults
/// (`server`, `client`, or `both`), what fires when, and what a correct
/// client observes.
pub fn faults_help() -> String {
    use std::fmt::Write;
    use vdi_model::fault::{FaultPlan, NAMED_PLANS, PlanContext};
    let cx = PlanContext {
        devices: 2,
        longest_timeout_ms: 10_000,
        server_timeout_ms: 60_000,
        family_bytes: 4 << 20,
    };
    let mut s = String::from(
        "Fault plans for --faults (`none`: no faults; `random`: a subset drawn from the seed).\n\
         side: who applies the faults. `vdisim simulate` applies both sides; `vdisim serve`\n\
         applies the server's and refuses a plan whose faults are all the client's.\n\n",
    );
    for name in NAMED_PLANS {
        let plan = match FaultPlan::named(name, &cx) {
            Ok(p) => p,
            Err(e) => {
                let _ = writeln!(s, "{name:<16} ?       {e}");
                continue;
            }
        };
        let server = plan
            .faults
            .iter()
            .filter(|f| f.fault.is_server_side())
            .count();
        let side = match (server, plan.faults.len() - server) {
            (0, _) => "client",
            (_, 0) => "server",
            _ => "both",
        };
        let when: Vec<String> = plan
            .faults
            .iter()
            .map(|f| describe_fault(f, cx.devices))
            .collect();
        let effect = PLAN_EFFECTS
            .iter()
            .find(|(n, _)| n == name)
            .map_or("(not described)", |(_, e)| *e);
        let _ = writeln!(s, "{name:<16} {side:<7} {}", when.join("; "));
        let _ = writeln!(s, "{:<24} {effect}\n", "");
    }
    s.push_str(SERVE_SPEC_HELP);
    s
}

/// The `vdisim serve --faults` / `--set-faults` syntax, after the plans.
const SERVE_SPEC_HELP: &str = "\
For vdisim serve (--faults and --set-faults): PLAN[:ms=N][@SELECTOR].
  SELECTOR  a comma list of statement kinds (backup, restore, backup-database,
            backup-log, restore-database, restore-log, restore-headeronly,
            restore-filelistonly, restore-verifyonly) and #N (the server's N-th
            BACKUP or RESTORE, from 1); statements not selected run clean.
  ms=N      the length of a server stall in virtual ms (1 to 30 days); without
            it a stall is 3 x the statement's set serverTimeOut + 1 ms
            (180001 ms when the set has none).
  e.g.      read-fault@restore, server-abort@#3, server-stall:ms=5000@backup;
            `vdisim serve --set-faults none` clears a running server's plan.
";

/// One planned fault as a person reads it: what, when, in which statement.
fn describe_fault(f: &vdi_model::fault::PlannedFault, devices: u16) -> String {
    use vdi_model::fault::{Fault, Phase, Trigger};
    let when = match (&f.fault, &f.trigger) {
        (Fault::TruncateMedia { .. }, _) => "when the restore starts".to_string(),
        (_, Trigger::OnCommand { dev, nth, code }) => {
            let device = if devices > 1 && *dev == devices - 1 && *dev != 0 {
                "the last device".to_string()
            } else {
                format!("device {dev}")
            };
            let what = code.map_or("command".to_string(), |c| c.name().to_string());
            format!("when {device} fetches its {} {what}", ordinal(*nth))
        }
        (_, Trigger::AtMs { ms }) => format!("at {ms} ms"),
        (_, Trigger::AtStep { step }) => format!("at scheduler step {step}"),
        (_, Trigger::AfterCompletions { nth }) => {
            format!("once the server has taken {nth} completions")
        }
    };
    let phase = match f.phase {
        Phase::Any => "any statement",
        Phase::Backup => "backup",
        Phase::Restore => "restore",
    };
    format!("{} {when} ({phase})", f.fault.kind())
}

fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_plan_is_described_once() {
        let named = vdi_model::fault::NAMED_PLANS;
        for n in named {
            assert_eq!(
                PLAN_EFFECTS.iter().filter(|(p, _)| p == n).count(),
                1,
                "{n}"
            );
        }
        assert_eq!(PLAN_EFFECTS.len(), named.len());
        assert!(!faults_help().contains("not described"));
    }

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101].map(ordinal).to_vec();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"
            ]
        );
    }
}
