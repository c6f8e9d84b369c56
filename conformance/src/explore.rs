//! `vdisim explore`: every interleaving of a small world with at most k
//! preemptions (stateless model checking, `vdi_sim::explore`), for named
//! configurations small enough to enumerate.
//!
//! Each configuration is a client program, a statement and a fault plan
//! from the catalog of named plans (`vdi_model::fault::FaultPlan::named`),
//! with a few commands per device so the space is finite and small. A
//! violation of any invariant the world checks, or of [`oracle`] (the run
//! ends by itself, every device loop with VD_E_CLOSE or VD_E_ABORT), stops
//! the exploration of that configuration and writes a *schedule file* (JSON: the
//! configuration, the bound and the choice index of every step), which
//! `vdisim explore --replay FILE` runs again and prints with its trace.
//!
//! `--mutant NAME` (test-only) runs the configurations on a model with one
//! rule deliberately broken (`vdi_model::mutation`), to show that the
//! explorer finds it; the schedule file records the mutant, so its replay
//! runs the same broken model.
//!
//! `racy-staging` is a deliberately flawed client (a data race between its
//! device threads) that only some interleavings expose; it is run only
//! when named, to show what a found violation looks like.

use clap::Args;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use vdi_model::call::{Reply, Value};
use vdi_model::checks::Violation;
use vdi_model::content::Content;
use vdi_model::fault::{Fault, FaultPlan, Phase, PlannedFault, Trigger, UnknownPlan};
use vdi_model::mutation::Mutation;
use vdi_model::process::ClientProcess;
use vdi_model::programs::{Action, ClientSpec, Flaw, Operation, Program};
use vdi_model::trace::Trace;
use vdi_sim::explore::{self, Build, ExploreError, Explored, Limits, Schedule};
use vdi_sim::scheduler::Scheduler;
use vdi_sim::world::{End, RunResult, World, WorldConfig};
use vdi_spec::{CommandCode, Hresult, id};

use crate::commands::Output;

/// Arguments of `vdisim explore`.
#[derive(Args, Debug, Clone)]
pub struct ExploreArgs {
    /// Configurations to explore (default: every one but the deliberately
    /// flawed `racy-staging`). `vdisim explore --list` names them.
    pub configs: Vec<String>,
    /// Most preemptions per schedule, 0..=8 (default: each configuration's own).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=i64::from(vdi_spec::bounds::EXPLORE_BOUND_MAX)))]
    pub bound: Option<u32>,
    /// Most schedules run per configuration (each to its end, or to a
    /// state explored before), 1..=100000000.
    #[arg(long, default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=vdi_spec::bounds::EXPLORE_SCHEDULES_MAX))]
    pub max_schedules: u64,
    /// Run every schedule to its end instead of stopping at a state explored
    /// before (the same states, many more runs: a check on the pruning).
    #[arg(long)]
    pub no_prune: bool,
    /// Directory a violating schedule file is written to.
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// Run the schedule file FILE again and print its trace.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// List the configurations and exit.
    #[arg(long)]
    pub list: bool,
    /// Test-only: explore a model with one rule deliberately broken, to see
    /// the explorer catch it (close-leaves-getcommand-blocked).
    #[arg(long, value_name = "NAME", default_value = "none")]
    pub mutant: Mutation,
}

/// A bad `explore` argument or input, with how to fix it.
#[derive(Debug, Error)]
pub enum ExploreArgError {
    #[error("unknown configuration '{0}'; the configurations are: {1}")]
    UnknownConfig(String, String),
    #[error("--max-schedules 0: explore at least one schedule")]
    NoSchedules,
    #[error("cannot read the schedule file {0}: {1}")]
    Read(PathBuf, String),
    #[error("the schedule file {0} is not one `vdisim explore` wrote: {1}")]
    Parse(PathBuf, String),
    #[error("cannot write the schedule file {0}: {1}")]
    Write(PathBuf, String),
    #[error("configuration {0}: {1}")]
    Plan(String, UnknownPlan),
    #[error("configuration {0}: {1}")]
    Explore(String, ExploreError),
}

/// A named configuration: a client, its statement and a fault plan.
pub struct Config {
    pub name: &'static str,
    pub about: &'static str,
    /// The default preemption bound.
    pub bound: u32,
    /// A deliberately flawed client, explored only when named.
    pub flawed: bool,
    spec: ClientSpec,
    plan: Plan,
    /// A deliberately broken model rule (test-only; `--mutant`).
    pub mutant: Mutation,
}

/// A configuration's fault plan.
enum Plan {
    /// A named plan (`vdi_model::fault::FaultPlan::named`).
    Named(&'static str),
    /// The server aborts once it has taken the client's `nth` completion,
    /// while later completions may be on their way (the abort races them).
    AbortAfterCompletions(u64),
}

fn spec(op: Operation, devices: u16, data_bytes: u64, server_timeout_ms: u32) -> ClientSpec {
    let mut s = ClientSpec {
        operation: op,
        devices,
        server_timeout_ms,
        set_name: "explore".into(),
        ..ClientSpec::default()
    };
    s.plan.data_bytes = data_bytes;
    s
}

fn with_flaw(mut s: ClientSpec, f: Flaw) -> ClientSpec {
    s.flaws.insert(f);
    s
}

/// The named configurations, in the order `vdisim explore` runs them.
pub fn configs() -> Vec<Config> {
    vec![
        Config {
            name: "backup2-client-abort",
            about: "2-device BACKUP (2 writes and a Flush per device); the client calls SignalAbort when device 0 fetches its 3rd command, racing device 1's loop and the messages in flight (Close follows once both loops end)",
            bound: 2,
            flawed: false,
            spec: spec(Operation::Backup, 2, 256 << 10, 60_000),
            plan: Plan::Named("client-abort"),
            mutant: Mutation::None,
        },
        Config {
            name: "backup2-server-abort",
            about: "2-device BACKUP (2 writes and a Flush per device); the server aborts (KILL) when the last device fetches its 3rd command, racing device 0's loop and the messages in flight (Close follows once both loops end)",
            bound: 2,
            flawed: false,
            spec: spec(Operation::Backup, 2, 256 << 10, 60_000),
            plan: Plan::Named("server-abort"),
            mutant: Mutation::None,
        },
        Config {
            name: "backup2-client-close",
            about: "2-device BACKUP (2 writes and a Flush per device); device 0's thread calls Close (devices open) when it fetches its 2nd command, racing device 1's loop (perhaps blocked in GetCommand) and the messages in flight; every call must be answered",
            bound: 2,
            flawed: false,
            spec: with_flaw(
                spec(Operation::Backup, 2, 256 << 10, 60_000),
                Flaw::ClosesWhileDevicesWait,
            ),
            plan: Plan::Named("none"),
            mutant: Mutation::None,
        },
        Config {
            name: "backup1-abort-vs-complete",
            about: "1-device BACKUP (3 writes and a Flush); the server aborts once it has taken the first completion, racing the client's completion of the next writes",
            bound: 3,
            flawed: false,
            spec: spec(Operation::Backup, 1, 192 << 10, 60_000),
            plan: Plan::AbortAfterCompletions(1),
            mutant: Mutation::None,
        },
        Config {
            name: "restore2-read-fault",
            about: "2-device RESTORE; device 0's 2nd read completes with ERROR_READ_FAULT: IO-ERROR, VDC_ClearError, then the set is aborted",
            bound: 2,
            flawed: false,
            spec: spec(Operation::Restore, 2, 64 << 10, 60_000),
            plan: Plan::Named("read-fault"),
            mutant: Mutation::None,
        },
        Config {
            name: "backup3-watchdog",
            about: "3-device BACKUP with serverTimeOut 1000 ms; device 0 stalls 3000 ms at its 2nd command, so the server's watchdog aborts the set",
            bound: 1,
            flawed: false,
            spec: spec(Operation::Backup, 3, 64 << 10, 1_000),
            plan: Plan::Named("slow-client"),
            mutant: Mutation::None,
        },
        Config {
            name: "racy-staging",
            about: "deliberately flawed: 2-device BACKUP whose device threads stage their first write in one shared buffer (a data race); a preemption between staging and writing stores another device's data",
            bound: 1,
            flawed: true,
            spec: spec(Operation::Backup, 2, 128 << 10, 60_000),
            plan: Plan::Named("none"),
            mutant: Mutation::None,
        },
    ]
}

fn names() -> String {
    configs()
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The configuration named `name`.
pub fn config(name: &str) -> Result<Config, ExploreArgError> {
    configs()
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| ExploreArgError::UnknownConfig(name.to_string(), names()))
}

impl Config {
    /// This configuration on a model with `m` deliberately broken
    /// (test-only).
    pub fn with_mutant(self, m: Mutation) -> Config {
        Config { mutant: m, ..self }
    }

    /// The world configuration (seed 1: the seed names no interleaving
    /// here, the explorer's scheduler decides every step).
    pub fn world_config(&self) -> Result<WorldConfig, ExploreArgError> {
        let mut cfg = WorldConfig::new(1);
        cfg.faults = match self.plan {
            Plan::Named(n) => FaultPlan::named(n, &self.spec.plan_context())
                .map_err(|e| ExploreArgError::Plan(self.name.to_string(), e))?,
            Plan::AbortAfterCompletions(nth) => FaultPlan {
                name: format!("server-abort-after-completions:{nth}"),
                faults: vec![PlannedFault {
                    phase: Phase::Backup,
                    trigger: Trigger::AfterCompletions { nth },
                    fault: Fault::ServerSignalAbort,
                }],
            },
        };
        cfg.budget_ms = 600_000;
        cfg.max_steps = 20_000;
        cfg.mutation = self.mutant;
        if self.spec.operation == Operation::Restore {
            cfg.seed_backups.push(self.spec.backup_layout());
        }
        Ok(cfg)
    }

    /// The client's controller thread.
    pub fn controller(&self) -> Box<dyn Program> {
        if self.flawed {
            Box::new(RacyController {
                inner: self.spec.controller(),
                slot: Arc::new(Mutex::new(Content::Empty)),
            })
        } else {
            self.spec.controller()
        }
    }

    /// A builder of this configuration's world for the explorer.
    pub fn builder(
        &self,
    ) -> Result<impl Fn(Box<dyn Scheduler>, Trace) -> World + '_, ExploreArgError> {
        let cfg = self.world_config()?;
        Ok(move |s: Box<dyn Scheduler>, t: Trace| {
            World::with_scheduler(cfg.clone(), self.controller(), t, s)
        })
    }

    /// The configuration's world under the seeded random scheduler.
    pub fn run_random(&self, seed: u64) -> Result<RunResult, ExploreArgError> {
        let mut cfg = self.world_config()?;
        cfg.seed = seed;
        Ok(World::new(cfg, self.controller(), Trace::off()).run())
    }

    /// Explores this configuration; every run that ends is judged by the
    /// world's invariants and [`oracle`].
    pub fn explore(&self, limits: Limits) -> Result<Explored, ExploreArgError> {
        let b = self.builder()?;
        explore::explore_checked(&b as &Build<'_>, limits, &|r| self.judge(r))
            .map_err(|e| ExploreArgError::Explore(self.name.to_string(), e))
    }

    /// Replays `schedule` with a recorded trace, judged as [`Config::explore`]
    /// judges.
    pub fn replay(&self, schedule: &[u32]) -> Result<(RunResult, Schedule), ExploreArgError> {
        let b = self.builder()?;
        let (mut r, taken) = explore::replay(&b as &Build<'_>, schedule, Trace::recording())
            .map_err(|e| ExploreArgError::Explore(self.name.to_string(), e))?;
        let extra = self.judge(&r);
        r.violations.extend(extra);
        Ok((r, taken))
    }
}

impl Config {
    /// [`oracle`], but a client that closes the set under its device
    /// threads ([`Flaw::ClosesWhileDevicesWait`]) may see its loops end
    /// with Close's own code or the use-after-close code: only that the run
    /// ends by itself is asked of it.
    pub fn judge(&self, r: &RunResult) -> Vec<Violation> {
        let mut v = oracle(r);
        if self.spec.has(Flaw::ClosesWhileDevicesWait) {
            v.retain(|x| x.clause != id::TERM_CLOSE_DEVICE.as_str());
        }
        v
    }
}

/// What every configuration's client (the reference client, or one whose
/// flaw is a data race) must do beyond the world's invariants, as the
/// randomized oracle (`crate::random::check`) asks of reference-like
/// clients: the run ends by itself (no hang, no budget or step bound), and
/// every device loop ends with VD_E_CLOSE or VD_E_ABORT.
pub fn oracle(r: &RunResult) -> Vec<Violation> {
    let mut v = Vec::new();
    if r.end != End::Finished {
        v.push(Violation {
            clause: id::WATCHDOG_FIRES.into(),
            what: format!(
                "the run did not end by itself ({:?} at {} ms)",
                r.end, r.now_ms
            ),
            at: None,
        });
    }
    for (i, d) in r.client.devices.iter().enumerate() {
        if let Some(e) = d.end
            && e != Hresult::VD_E_CLOSE
            && e != Hresult::VD_E_ABORT
        {
            v.push(Violation {
                clause: id::TERM_CLOSE_DEVICE.into(),
                what: format!("dev{i} ended its loop with {e}, not VD_E_CLOSE or VD_E_ABORT"),
                at: None,
            });
        }
    }
    v
}

/// The controller of `racy-staging`: the reference controller, whose
/// device threads are [`RacyDevice`]s sharing one staging slot.
struct RacyController {
    inner: Box<dyn Program>,
    slot: Arc<Mutex<Content>>,
}

impl Program for RacyController {
    fn next(&mut self, last: Option<Reply>, p: &mut ClientProcess) -> Action {
        match self.inner.next(last, p) {
            Action::Spawn { who, dev, prog } => Action::Spawn {
                who,
                dev,
                prog: Box::new(RacyDevice {
                    inner: prog,
                    slot: self.slot.clone(),
                    held: None,
                    staged: false,
                }),
            },
            a => a,
        }
    }

    fn describe(&self, out: &mut dyn std::fmt::Write) -> bool {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        write!(out, "racy {slot:?} ").is_ok() && self.inner.describe(out)
    }
}

/// A reference device loop with a data race: its first VDC_Write's data
/// goes through a staging slot shared by every device thread. It copies
/// the data in, hands a copy job to a helper thread (a scheduling point),
/// then writes what the slot holds. If another device stages in between,
/// this device's media receives that device's data, and the backup
/// invariant (`vdi_model::checks::media`) finds the media wrong.
struct RacyDevice {
    inner: Box<dyn Program>,
    slot: Arc<Mutex<Content>>,
    /// The fetched command waiting for the helper.
    held: Option<Reply>,
    staged: bool,
}

/// The helper thread: exits at once.
struct Helper;

impl Program for Helper {
    fn next(&mut self, _last: Option<Reply>, _p: &mut ClientProcess) -> Action {
        Action::Exit
    }

    fn describe(&self, _out: &mut dyn std::fmt::Write) -> bool {
        true
    }
}

impl Program for RacyDevice {
    fn describe(&self, out: &mut dyn std::fmt::Write) -> bool {
        write!(out, "racy-dev {:?} {} ", self.held, self.staged).is_ok() && self.inner.describe(out)
    }

    fn next(&mut self, last: Option<Reply>, p: &mut ClientProcess) -> Action {
        if let Some(mut r) = self.held.take() {
            if let Value::Command(c) = &mut r.value {
                c.data = self.slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
            }
            return self.inner.next(Some(r), p);
        }
        if let Some(Reply {
            value: Value::Command(c),
            ..
        }) = &last
            && c.code == CommandCode::Write
            && !self.staged
        {
            self.staged = true;
            *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = c.data.clone();
            self.held = last;
            return Action::Spawn {
                who: "stager".into(),
                dev: None,
                prog: Box::new(Helper),
            };
        }
        self.inner.next(last, p)
    }
}

/// A schedule file: what `vdisim explore --replay` needs to run one
/// schedule again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScheduleFile {
    pub config: String,
    pub bound: u32,
    pub preemptions: u32,
    /// The clause the run broke first.
    pub clause: String,
    /// The choice index of every step.
    pub schedule: Vec<u32>,
    /// The deliberately broken model rule it was found with (test-only).
    #[serde(default, skip_serializing_if = "Mutation::is_none")]
    pub mutant: Mutation,
}

/// Runs `vdisim explore`: exit status 0 when nothing violated, 1 when a
/// schedule did.
pub fn run(a: &ExploreArgs) -> Result<Output, ExploreArgError> {
    if a.list {
        let mut text = String::new();
        for c in configs() {
            let _ = writeln!(text, "{:<26} bound {}  {}", c.name, c.bound, c.about);
        }
        return Ok(Output { text, status: 0 });
    }
    if let Some(file) = &a.replay {
        return replay_file(file);
    }
    if a.max_schedules == 0 {
        return Err(ExploreArgError::NoSchedules);
    }
    let chosen: Vec<Config> = if a.configs.is_empty() {
        configs().into_iter().filter(|c| !c.flawed).collect()
    } else {
        a.configs
            .iter()
            .map(|n| config(n))
            .collect::<Result<_, _>>()?
    };
    let chosen: Vec<Config> = chosen
        .into_iter()
        .map(|c| c.with_mutant(a.mutant))
        .collect();
    let mut text = String::new();
    let mut status = 0;
    for c in &chosen {
        let bound = a.bound.unwrap_or(c.bound);
        let limits = Limits {
            bound,
            max_schedules: a.max_schedules,
            prune: !a.no_prune,
        };
        let e = c.explore(limits)?;
        status = status.max(report(&mut text, c, bound, &e, &a.out_dir)?);
    }
    Ok(Output { text, status })
}

/// Appends one configuration's line (and its violation) to `text`; the
/// exit status it calls for.
fn report(
    text: &mut String,
    c: &Config,
    bound: u32,
    e: &Explored,
    out_dir: &Path,
) -> Result<u8, ExploreArgError> {
    let s = &e.stats;
    let name = if c.mutant.is_none() {
        c.name.to_string()
    } else {
        format!("{} on the mutant model {}", c.name, c.mutant.name())
    };
    let counts = format!(
        "{} schedules, {} states, max depth {}",
        s.schedules, s.states, s.max_depth
    );
    let Some(found) = &e.violation else {
        let scope = if s.exhausted {
            "all schedules"
        } else {
            "the first schedules (capped by --max-schedules)"
        };
        let _ = writeln!(
            text,
            "{scope} with ≤ {bound} preemptions of configuration {name}: {counts}, no violation"
        );
        return Ok(0);
    };
    let first = &found.result.violations[0];
    let file = ScheduleFile {
        config: c.name.to_string(),
        bound,
        preemptions: found.preemptions,
        clause: first.clause.clone(),
        schedule: found.schedule.clone(),
        mutant: c.mutant,
    };
    let path = out_dir.join(format!("explore-{}.json", c.name));
    let json = serde_json::to_string(&file).unwrap_or_default();
    // A file of that name is replaced only when it is a schedule file.
    if path.exists() && read_schedule(&path).is_err() {
        return Err(ExploreArgError::Write(
            path.clone(),
            "a file that is not a vdisim explore schedule is there; choose another --out-dir"
                .into(),
        ));
    }
    std::fs::create_dir_all(out_dir)
        .and_then(|()| std::fs::write(&path, json + "\n"))
        .map_err(|err| ExploreArgError::Write(path.clone(), err.to_string()))?;
    let _ = writeln!(
        text,
        "configuration {name} with ≤ {bound} preemptions: VIOLATION after {counts}"
    );
    for v in &found.result.violations {
        let _ = writeln!(text, "  [{}] {}", v.clause, v.what);
    }
    let _ = writeln!(
        text,
        "  schedule of {} steps with {} preemption{} written to {}\n  replay: vdisim explore --replay {}",
        found.schedule.len(),
        found.preemptions,
        if found.preemptions == 1 { "" } else { "s" },
        path.display(),
        path.display()
    );
    Ok(1)
}

/// Reads a schedule file.
pub fn read_schedule(file: &Path) -> Result<ScheduleFile, ExploreArgError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ExploreArgError::Read(file.to_path_buf(), e.to_string()))?;
    serde_json::from_str(&text)
        .map_err(|e| ExploreArgError::Parse(file.to_path_buf(), e.to_string()))
}

/// `vdisim explore --replay FILE`: the run's trace, its end and its
/// violations; exit status 1 when it violates.
pub fn replay_file(file: &Path) -> Result<Output, ExploreArgError> {
    let f = read_schedule(file)?;
    let c = config(&f.config)?.with_mutant(f.mutant);
    let (r, _) = c.replay(&f.schedule)?;
    let mut text = r.trace.to_jsonl();
    let _ = writeln!(
        text,
        "configuration {}, schedule of {} steps: end {:?} at {} ms after {} steps, trace-hash {}",
        c.name,
        f.schedule.len(),
        r.end,
        r.now_ms,
        r.steps,
        r.trace_hash()
    );
    if r.violations.is_empty() {
        let _ = writeln!(text, "invariants: hold");
        return Ok(Output { text, status: 0 });
    }
    let _ = writeln!(text, "invariants: {} violated", r.violations.len());
    for v in &r.violations {
        let _ = writeln!(text, "  [{}] {}", v.clause, v.what);
    }
    Ok(Output { text, status: 1 })
}
