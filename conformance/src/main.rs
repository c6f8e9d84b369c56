//! `vdisim`: the command-line edge of the project. Errors become messages
//! and exit codes here (anyhow); the libraries use typed errors.
//!
//! Exit status: 0 when nothing violated the specification, 1 when something
//! did, 2 for bad arguments or unreadable input.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use vdi_conformance::commands;
use vdi_conformance::scenario;
use vdi_conformance::simulate::{SimulateArgs, run_simulate};

#[derive(Parser)]
#[command(
    name = "vdisim",
    version,
    about = "Deterministic simulator and conformance harness for the SQL Server Virtual Device Interface",
    after_help = "Exit status: 0 nothing violated the specification; 1 something did; 2 bad arguments or input."
)]
struct Cli {
    /// Scenario directory (default: $VDISIM_SCENARIOS or the built-in catalog).
    #[arg(long, global = true)]
    scenarios: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one simulated world on the built-in model and summarise it.
    Simulate(SimulateArgs),
    /// List the scenario catalog (or the clause catalog, or the profile parameters).
    List {
        /// Keep cases whose id or clauses contain any of these comma-separated words.
        #[arg(long)]
        filter: Option<String>,
        /// List the clause catalog instead.
        #[arg(long)]
        clauses: bool,
        /// List the profile parameters and their defaults instead.
        #[arg(long)]
        profile: bool,
    },
    /// Run the catalog against a backend and write the reports.
    Run {
        /// Backend(s) to run, comma-separated.
        #[arg(long, default_value = "model", value_delimiter = ',')]
        backend: Vec<String>,
        #[arg(long)]
        filter: Option<String>,
        /// Extra seeds 1..=N for every case, besides its own.
        #[arg(long, default_value_t = 0)]
        seeds: u64,
        /// Where report.json, junit.xml, summary.md and index.html go.
        #[arg(long, default_value = "vdisim-report")]
        report_dir: PathBuf,
        /// Worker threads (default: every core).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Explain a case: its clauses, what it checks, and the expected trace.
    Explain { case: String },
    /// Replay a case (by id or file) and print its trace and verdict.
    Replay {
        case: String,
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value = "model")]
        backend: String,
    },
    /// Run every case and many random worlds twice per seed; hashes must match.
    CheckDeterminism {
        #[arg(long, default_value_t = 3)]
        seeds: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("vdisim: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn emit(o: commands::Output) -> u8 {
    print!("{}", o.text);
    o.status
}

fn run(cli: Cli) -> Result<u8> {
    let dir = cli.scenarios.unwrap_or_else(scenario::default_dir);
    match cli.cmd {
        Cmd::Simulate(a) => {
            let out = run_simulate(&a)?;
            print!("{}", out.text);
            if let Some(path) = &a.trace {
                if path.as_os_str().is_empty() {
                    bail!("--trace needs a file name");
                }
                std::fs::write(path, &out.trace_jsonl)
                    .with_context(|| format!("cannot write the trace to {}", path.display()))?;
            }
            println!("trace-hash {}", out.trace_hash);
            Ok(if out.violations > 0 { 1 } else { 0 })
        }
        Cmd::List {
            filter,
            clauses,
            profile,
        } => Ok(emit(
            commands::list(&dir, filter.as_deref(), clauses, profile).map_err(|e| anyhow!(e))?,
        )),
        Cmd::Run {
            backend,
            filter,
            seeds,
            report_dir,
            jobs,
        } => {
            let (o, _) = commands::run(&dir, &backend, filter.as_deref(), seeds, &report_dir, jobs)
                .map_err(|e| anyhow!(e))?;
            Ok(emit(o))
        }
        Cmd::Explain { case } => Ok(emit(
            commands::explain(&dir, &case).map_err(|e| anyhow!(e))?,
        )),
        Cmd::Replay {
            case,
            seed,
            backend,
        } => Ok(emit(
            commands::replay(&dir, &case, seed, &backend).map_err(|e| anyhow!(e))?,
        )),
        Cmd::CheckDeterminism { seeds } => Ok(emit(
            commands::check_determinism(&dir, seeds).map_err(|e| anyhow!(e))?,
        )),
    }
}
