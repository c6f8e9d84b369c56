//! `vdisim client-test`: grades a vendor's own VDI client program.
//!
//! The program is started once per case and operation, from a command
//! template (`--program`), against a `vdisim serve` of the case's own (in
//! this process, on a private socket) with the stand-in library's call log
//! and clock set through the environment. What the library saw the program
//! call, how the program ended, and what the server's statement did are
//! graded against the client's obligations (`vdi_model::checks::
//! obligations`), each a catalog clause. See `conformance/CLIENT-TESTING.md`.
//!
//! - [`template`]: the command template and its placeholders.
//! - [`cases`]: the case space, the default matrix, random cases, shrinking.
//! - [`case_run`]: one case against its own server.
//! - [`exec`]: running the program once, within bounds.
//! - [`grade`]: verdicts from what a case left.

pub mod case_run;
pub mod cases;
pub mod exec;
pub mod grade;
pub mod shapes;
pub mod template;
pub mod wine;

use case_run::{Behaviour, CaseRun, Harness};
use cases::{ClientCase, Op, Space};
use serde::Deserialize;
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use template::Template;
use thiserror::Error;
use vdi_reports::schema::{CaseResult, Verdict};

/// The exit code by which a program says "I cannot do this case" (graded
/// unimplemented), unless `--unimplemented-code` says otherwise.
pub const UNIMPLEMENTED_CODE: i32 = 89;

/// The environment variable naming the call log the library writes; it
/// also marks the processes of a run (see `exec::reap_escaped`).
pub const LOG_ENV: &str = "VDISIM_CLIENT_LOG";

/// Arguments of `vdisim client-test`.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientTestArgs {
    /// The command that runs your program, split like a shell word list
    /// (no shell runs it). Placeholders: {op} {database} {device}
    /// {devices} {file} {server}.
    #[arg(long, value_name = "TEMPLATE")]
    pub program: String,
    /// The runner sends the BACKUP/RESTORE once the program prints this
    /// line (the program took {device} from its arguments). Without it the
    /// program runs the statement itself (`sqlcmd` on PATH).
    #[arg(long, value_name = "TEXT")]
    pub ready_line: Option<String>,
    /// The words {op} becomes for a backup and a restore.
    #[arg(long, value_name = "B,R", default_value = "backup,restore")]
    pub op_words: String,
    /// Run only these cases: ids of the default matrix, or case files.
    #[arg(long = "case", value_name = "ID|FILE")]
    pub cases: Vec<String>,
    /// Keep cases whose id contains any of these comma-separated words.
    #[arg(long, value_name = "WORDS")]
    pub filter: Option<String>,
    /// Run every case with seeds 1..=N (at most 1000).
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub seeds: u64,
    /// Random mode: N cases drawn from the space with --seed (at most
    /// 100000); a failure is shrunk to the smallest case that still fails.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub random: Option<u64>,
    /// The seed of random mode, or the one seed a --case runs with.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Known deviations: a TOML file of [[exclude]] case = "ID", reason =
    /// "..." entries; each turns a violation into an expected deviation,
    /// and fails the run when the case passes.
    #[arg(long, value_name = "FILE")]
    pub exclude: Option<PathBuf>,
    /// Where report.json, junit.xml, summary.md and index.html go.
    #[arg(long, default_value = "vdisim-client-report")]
    pub report_dir: PathBuf,
    /// Cases run at once (default: every core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Virtual ms per real ms in the server and the library: `auto` (from
    /// the program's own serverTimeOut) or 1..=1000.
    #[arg(long, default_value = "auto", value_name = "auto|N")]
    pub time_scale: String,
    /// The exit code by which the program says it cannot do a case.
    #[arg(long, default_value_t = UNIMPLEMENTED_CODE)]
    pub unimplemented_code: i32,
    /// How long the program may run on after its statement ended before it
    /// is killed and graded as hung (ms, 100..=600000).
    #[arg(long, default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub exit_timeout_ms: u64,
    /// Run the program under Wine (implied when it is a Windows `.exe`):
    /// a private Wine prefix with the Windows stand-in sqlvdi.dll
    /// registered, each case's server reached through a TCP bridge.
    #[arg(long)]
    pub wine: bool,
    /// The Windows stand-in DLL for --wine (default: VDISIM_SQLVDI_DLL,
    /// else sqlvdi.dll beside vdisim or in the target directory's
    /// x86_64-pc-windows-gnu build).
    #[arg(long, value_name = "PATH")]
    pub sqlvdi_dll: Option<PathBuf>,
    /// The Wine prefix for --wine: made there when absent and kept, reused
    /// when it is one already (making one takes ~20 s). Default: a private
    /// prefix in the run's directory, removed at the end. Never ~/.wine
    /// unless named here.
    #[arg(long, value_name = "DIR")]
    pub wine_prefix: Option<PathBuf>,
    /// The program is a snapshot client (it sets VDF_SnapshotPrepare): every
    /// statement is `WITH SNAPSHOT` over one device (the runner's, or the
    /// program's own), and the matrix is the snapshot matrix.
    #[arg(long)]
    pub snapshot: bool,
}

/// Bad input to `client-test`: what, where, how to fix.
#[derive(Debug, Error)]
pub enum ClientTestError {
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error(
        "--op-words {0:?}: give two words, for a backup and a restore: --op-words backup,restore"
    )]
    OpWords(String),
    #[error("--time-scale {0:?}: use auto or a number from 1 to 1000")]
    TimeScale(String),
    #[error("--case {0:?}: not a case of the default matrix ({1}) nor a case file")]
    UnknownCase(String, String),
    #[error("{0}")]
    CaseFile(String),
    #[error("--exclude {0}: {1}")]
    Exclude(String, String),
    #[error("--filter {0:?} keeps no case; the cases are: {1}")]
    NoCase(String, String),
    #[error("--random needs --seed S (the run is reproducible from it)")]
    RandomSeed,
    #[error("cannot prepare the run in {0}: {1}")]
    Setup(String, String),
    #[error("cannot write the reports: {0}")]
    Reports(String),
    #[error("--wine: {0}")]
    Wine(String),
}

/// What a client-test run found.
pub struct Summary {
    pub results: Vec<CaseResult>,
    pub report_dir: PathBuf,
    /// Lines for standard output (a summary and the failures' repros).
    pub text: String,
}

impl Summary {
    /// Whether any result fails the run.
    pub fn failed(&self) -> bool {
        self.results.iter().any(|r| r.verdict.is_failure())
    }
}

/// One known deviation.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclude {
    pub case: String,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExcludeFile {
    #[serde(default)]
    exclude: Vec<Exclude>,
}

fn load_excludes(path: &Path) -> Result<Vec<Exclude>, ClientTestError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientTestError::Exclude(p.clone(), e.to_string()))?;
    let f: ExcludeFile =
        toml::from_str(&text).map_err(|e| ClientTestError::Exclude(p.clone(), e.to_string()))?;
    for e in &f.exclude {
        if e.reason.trim().is_empty() {
            return Err(ClientTestError::Exclude(
                p,
                format!(
                    "the entry for {:?} has no reason; say why the deviation is known",
                    e.case
                ),
            ));
        }
    }
    Ok(f.exclude)
}

/// A run's private directory, removed when dropped.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `vdisim client-test`; `vdisim` is the executable `sqlcmd` links to.
pub fn run(a: &ClientTestArgs, vdisim: &Path) -> Result<Summary, ClientTestError> {
    let template = Template::parse(&a.program)?;
    if a.ready_line.is_some() && !template.uses("device") {
        return Err(template::TemplateError::NoDevice.into());
    }
    let windows = match template.program(std::env::var_os("PATH").as_deref()) {
        Ok(p) => a.wine || wine::is_windows_program(&p),
        // A Windows program need not carry Unix execute permission.
        Err(template::TemplateError::NotExecutable(p))
            if a.wine || wine::is_windows_program(Path::new(&p)) =>
        {
            true
        }
        Err(e) => return Err(e.into()),
    };
    let op_words = match a.op_words.split(',').collect::<Vec<_>>()[..] {
        [b, r] if !b.trim().is_empty() && !r.trim().is_empty() => {
            (b.trim().to_string(), r.trim().to_string())
        }
        _ => return Err(ClientTestError::OpWords(a.op_words.clone())),
    };
    let time_scale = match a.time_scale.as_str() {
        "auto" => None,
        n => match n.parse::<u32>() {
            Ok(v) if (1..=1000).contains(&v) => Some(v),
            _ => return Err(ClientTestError::TimeScale(n.to_string())),
        },
    };
    let mut space = Space {
        max_devices: if template.uses("devices") { 64 } else { 1 },
        runner_statement: a.ready_line.is_some(),
        snapshot: a.snapshot,
        shape: None,
    };
    let excludes = match &a.exclude {
        Some(p) => load_excludes(p)?,
        None => Vec::new(),
    };
    // Bad input is refused before any case runs; the matrix follows the
    // device shape the probe shows, so a --filter that keeps only a
    // shape's cases is judged after the probe.
    let mut planned = match plan(a, space) {
        Ok(p) => Some(p),
        Err(ClientTestError::NoCase(..)) if a.filter.is_some() && a.cases.is_empty() => None,
        Err(e) => return Err(e),
    };
    let work = make_work_dir(vdisim)?;
    let wine = if windows {
        let dll = match &a.sqlvdi_dll {
            Some(p) if p.is_file() => p.clone(),
            Some(p) => {
                return Err(ClientTestError::Wine(format!(
                    "--sqlvdi-dll {}: no such file",
                    p.display()
                )));
            }
            None => wine::find_dll(vdisim).map_err(ClientTestError::Wine)?,
        };
        Some(
            wine::Wine::setup(&work.0, a.wine_prefix.as_deref(), &dll)
                .map_err(ClientTestError::Wine)?,
        )
    } else {
        None
    };
    let mut h = Harness {
        template,
        ready_line: a.ready_line.clone(),
        op_words,
        bin_dir: work.0.join("bin"),
        library_dir: library_dir(vdisim),
        time_scale,
        unimplemented_code: a.unimplemented_code,
        behaviour: None,
        work: work.0.clone(),
        ready_bound: Duration::from_secs(30),
        exit_bound: Duration::from_millis(a.exit_timeout_ms),
        run_bound: Duration::from_secs(300),
        wine,
    };
    exec::become_subreaper();
    h.behaviour = probe(&h, a.snapshot);
    if let Some(b) = &h.behaviour
        && b.shape != cases::DeviceShape::Pipe
    {
        space.shape = Some(b.shape);
        planned = None;
    }
    let plan = match planned {
        Some(p) => p,
        None => self::plan(a, space)?,
    };
    let jobs = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .clamp(1, 64);
    let runs = run_all(&h, &plan, jobs);
    let mut results: Vec<CaseResult> = runs
        .iter()
        .map(|r| grade::grade(&h, r, &repro(a, r)))
        .collect();
    if a.random.is_some() {
        shrink_failures(a, &h, &mut results, &runs)?;
    }
    apply_excludes(&mut results, &excludes);
    let mut text = report(a, &h, &results)?;
    if let Some(w) = &h.wine {
        text = format!("{}\n{text}", w.note);
    }
    Ok(Summary {
        results,
        report_dir: a.report_dir.clone(),
        text,
    })
}

/// The (case, seed) pairs to run, in order.
fn plan(a: &ClientTestArgs, space: Space) -> Result<Vec<(ClientCase, u64)>, ClientTestError> {
    let matrix = cases::default_matrix(space);
    let known = cases::known_cases(space);
    let ids = || {
        known
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut chosen: Vec<ClientCase> = if let Some(n) = a.random {
        let seed = a.seed.ok_or(ClientTestError::RandomSeed)?;
        cases::random_cases(space, n as usize, seed)
    } else if a.cases.is_empty() {
        matrix.clone()
    } else {
        let mut v = Vec::new();
        for c in &a.cases {
            if let Some(m) = known.iter().find(|m| &m.id == c) {
                v.push(m.clone());
            } else if Path::new(c).is_file() {
                v.push(cases::load(Path::new(c)).map_err(ClientTestError::CaseFile)?);
            } else {
                return Err(ClientTestError::UnknownCase(c.clone(), ids()));
            }
        }
        v
    };
    if let Some(f) = &a.filter {
        let words: Vec<&str> = f
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .collect();
        chosen.retain(|c| words.iter().any(|w| c.id.contains(w)));
        if chosen.is_empty() {
            return Err(ClientTestError::NoCase(f.clone(), ids()));
        }
    }
    let seeds: Vec<u64> = match (a.random, a.seed) {
        (None, Some(s)) => vec![s],
        _ => (1..=a.seeds).collect(),
    };
    let mut out = Vec::new();
    for (i, c) in chosen.into_iter().enumerate() {
        match a.random {
            // Each random case runs once, with a seed of its own.
            Some(_) => out.push((c, a.seed.unwrap_or(0).wrapping_add(i as u64 + 1))),
            None => out.extend(seeds.iter().map(|s| (c.clone(), *s))),
        }
    }
    Ok(out)
}

/// Makes the run's private directory and `bin/sqlcmd` in it.
fn make_work_dir(vdisim: &Path) -> Result<WorkDir, ClientTestError> {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let dir = std::env::temp_dir().join(format!(
        "vdisim-client-test-{}-{:08x}",
        std::process::id(),
        h.finish() as u32
    ));
    let err = |e: std::io::Error| ClientTestError::Setup(dir.display().to_string(), e.to_string());
    std::fs::create_dir(&dir).map_err(err)?;
    let work = WorkDir(dir.clone());
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    std::fs::create_dir(dir.join("bin")).map_err(err)?;
    std::os::unix::fs::symlink(vdisim, dir.join("bin").join("sqlcmd")).map_err(err)?;
    Ok(work)
}

/// The directory of the stand-in library the program should load:
/// `VDISIM_LIBSQLVDI`'s, else the one beside `vdisim` if it holds one.
fn library_dir(vdisim: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VDISIM_LIBSQLVDI").filter(|p| !p.is_empty()) {
        return Path::new(&p).parent().map(Path::to_path_buf);
    }
    let dir = vdisim.parent()?;
    dir.join("libsqlvdi.so").exists().then(|| dir.to_path_buf())
}

/// Runs the plain backup (a snapshot one for a snapshot client) once to
/// learn the program's timeouts and device shape.
fn probe(h: &Harness, snapshot: bool) -> Option<Behaviour> {
    let dir = h.work.join("probe");
    let mut case = ClientCase::plain(Op::Backup, 1);
    case.snapshot = snapshot;
    let r = h.run_case(&case, 1, &dir);
    grade::behaviour(&r)
}

/// Runs every (case, seed) on `jobs` threads; results in plan order.
fn run_all(h: &Harness, plan: &[(ClientCase, u64)], jobs: usize) -> Vec<CaseRun> {
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..plan.len()).collect());
    let done: Mutex<Vec<Option<CaseRun>>> = Mutex::new(vec![None; plan.len()]);
    let progress = Progress::new(plan.len());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(plan.len().max(1)) {
            s.spawn(|| {
                loop {
                    let Some(i) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                    else {
                        break;
                    };
                    let (case, seed) = &plan[i];
                    let dir = h.work.join(format!("case-{i}"));
                    let r = h.run_case(case, *seed, &dir);
                    progress.tick(&case.id, *seed);
                    done.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    progress.finish();
    done.into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

/// A progress line on a terminal (nothing otherwise).
struct Progress {
    total: usize,
    n: Mutex<usize>,
    on: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            n: Mutex::new(0),
            on: std::io::stderr().is_terminal(),
        }
    }
    fn tick(&self, id: &str, seed: u64) {
        let mut n = self.n.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        if self.on {
            let w = 30;
            let filled = *n * w / self.total.max(1);
            eprint!(
                "\r[{}{}] {}/{} {id} seed {seed}\x1b[K",
                "#".repeat(filled),
                "-".repeat(w - filled),
                *n,
                self.total
            );
        }
    }
    fn finish(&self) {
        if self.on {
            eprintln!();
        }
    }
}

/// The command that reproduces one result.
fn repro(a: &ClientTestArgs, r: &CaseRun) -> String {
    let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut cmd = format!("vdisim client-test --program {}", q(&a.program));
    if let Some(l) = &a.ready_line {
        cmd.push_str(&format!(" --ready-line {}", q(l)));
    }
    if a.op_words != "backup,restore" {
        cmd.push_str(&format!(" --op-words {}", q(&a.op_words)));
    }
    if a.time_scale != "auto" {
        cmd.push_str(&format!(" --time-scale {}", a.time_scale));
    }
    if a.snapshot {
        cmd.push_str(" --snapshot");
    }
    let case = if a.random.is_some() {
        a.report_dir
            .join("cases")
            .join(format!("{}.toml", r.case.id))
            .display()
            .to_string()
    } else {
        r.case.id.clone()
    };
    cmd.push_str(&format!(" --case {} --seed {}", q(&case), r.seed));
    cmd
}

/// Shrinks each failing random case to the smallest that still fails,
/// and writes it as a case file its repro names.
fn shrink_failures(
    a: &ClientTestArgs,
    h: &Harness,
    results: &mut [CaseResult],
    runs: &[CaseRun],
) -> Result<(), ClientTestError> {
    let dir = a.report_dir.join("cases");
    for (res, run) in results.iter_mut().zip(runs) {
        let mut case = run.case.clone();
        if res.verdict == Verdict::Violation {
            let mut steps = 0;
            'outer: while steps < 64 {
                for s in cases::simpler(&case) {
                    steps += 1;
                    let d = h.work.join(format!("shrink-{steps}"));
                    let r = h.run_case(&s, run.seed, &d);
                    if grade::grade(h, &r, "").verdict == Verdict::Violation {
                        case = s;
                        continue 'outer;
                    }
                }
                break;
            }
            let shrunk = CaseRun {
                case: case.clone(),
                ..run.clone()
            };
            res.detail = format!(
                "{} (shrunk from {} to {})",
                res.detail, run.case.id, case.id
            );
            res.repro = repro(a, &shrunk);
        }
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join(format!("{}.toml", case.id)), case.to_toml()))
            .map_err(|e| ClientTestError::Reports(e.to_string()))?;
    }
    Ok(())
}

fn apply_excludes(results: &mut [CaseResult], excludes: &[Exclude]) {
    for r in results {
        if let Some(e) = excludes.iter().find(|e| e.case == r.case) {
            r.deviation_reason = Some(e.reason.clone());
            r.verdict = match r.verdict {
                Verdict::Violation => Verdict::ExpectedDeviation,
                Verdict::Pass | Verdict::Lenient => Verdict::UnexpectedPass,
                v => v,
            };
        }
    }
}

/// Writes the reports; the text for standard output.
fn report(
    a: &ClientTestArgs,
    h: &Harness,
    results: &[CaseResult],
) -> Result<String, ClientTestError> {
    let rep = grade::run_report(a, h, results);
    vdi_reports::write_all(&rep, &a.report_dir)
        .map_err(|e| ClientTestError::Reports(e.to_string()))?;
    let mut text = String::new();
    for v in Verdict::ALL {
        let n = results.iter().filter(|r| r.verdict == v).count();
        if n > 0 {
            text.push_str(&format!("{n} {}  ", v.label()));
        }
    }
    text.push('\n');
    for r in results.iter().filter(|r| r.verdict.is_failure()) {
        text.push_str(&format!(
            "\n{} {} (seed {}): {}\n  repro: {}\n",
            r.verdict.label().to_uppercase(),
            r.case,
            r.seed,
            r.detail,
            r.repro
        ));
    }
    text.push_str(&format!(
        "\nreports written to {}\n",
        a.report_dir.display()
    ));
    Ok(text)
}
