//! `vdisim fuzz`: a native swarm campaign over the model.
//!
//! Cases are the randomized cases of [`crate::random`] (a client program
//! with a swarm subset of flaws, a fault plan, a scheduler seed), judged by
//! the same oracle ([`crate::random::check`]). A campaign runs on every
//! core until its time or case budget is spent, and:
//! - **shards**: `--shard i/n` takes the cases whose index is `i` modulo
//!   `n`, so `n` machines or CI-matrix jobs split one campaign without
//!   overlap ([`case_seed`]);
//! - **resumes**: `--state DIR` keeps what was done (the next case index,
//!   the counts, coverage, the corpus, the failures) in `DIR/state.json`,
//!   written atomically every few seconds and at the end; the same command
//!   again goes on where it stopped;
//! - **is guided by coverage**: a case that hits a clause or a client-table
//!   cell no earlier case hit joins the corpus, and one case in four is a
//!   neighbour of a corpus entry (its program and faults, a new scheduler
//!   seed), so rarely reached behaviour is explored more;
//! - **shrinks failures**: each failing case is reduced ([`shrink`]) to the
//!   smallest case that still breaks the same clause and written as a
//!   scenario file `DIR/failures/<id>.toml` with its replay command.

pub mod shrink;
pub mod state;

pub use shrink::shrink;
pub use state::{CampaignState, Failure};

use crate::random::{self, RandomCase};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;
use vdi_model::mutation::Mutation;
use vdi_model::trace::Trace;

/// Longest `--time`: 30 days.
pub const TIME_MAX: Duration = Duration::from_secs(30 * 24 * 3600);
/// Largest `--cases`.
pub const CASES_MAX: u64 = 1 << 40;
/// Largest shard count.
pub const SHARDS_MAX: u64 = 1 << 20;
/// Cases a worker claims at a time.
const BATCH: u64 = 64;
/// Corpus entries kept (the earliest that brought new coverage).
pub const CORPUS_MAX: usize = 4096;
/// How often the state file is written.
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// Arguments of `vdisim fuzz`.
#[derive(clap::Args, Debug, Clone)]
pub struct FuzzArgs {
    /// How long to run: seconds, or with a unit (`90s`, `10m`, `2h`, `1d`);
    /// at most 30 days.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub time: String,
    /// Stop after this many cases in all (this shard's, counting a resumed
    /// campaign's earlier ones), whichever of --time and --cases comes first.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=CASES_MAX))]
    pub cases: Option<u64>,
    /// This job's share of the campaign: `i/n` takes every n-th case from
    /// the i-th (0-based); n jobs with i = 0..n-1 split it without overlap.
    #[arg(long, default_value = "0/1", value_name = "I/N")]
    pub shard: String,
    /// The campaign's seed: the same seed, shard and case count make the
    /// same cases.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where the campaign's state, corpus and failures live; the same
    /// command with the same directory resumes it.
    #[arg(long, default_value = "vdisim-fuzz", value_name = "DIR")]
    pub state: PathBuf,
    /// Go on after a failure (default: stop at the first, once it is shrunk).
    #[arg(long)]
    pub keep_going: bool,
    /// Worker threads (default: every core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub jobs: Option<u64>,
    /// Test-only: run the cases on a model with one rule deliberately
    /// broken, to see the campaign catch it (close-leaves-getcommand-blocked).
    /// A state directory keeps to the mutant it was started with.
    #[arg(long, value_name = "NAME", default_value = "none")]
    pub mutant: Mutation,
}

/// What is wrong with the arguments or the state directory.
#[derive(Debug, Error)]
pub enum FuzzError {
    #[error(
        "--time {0:?}: not a duration: give seconds or a number with s, m, h or d (e.g. 90s, 10m), at most 30 days"
    )]
    Time(String),
    #[error(
        "--shard {0:?}: give i/n with 0 <= i < n <= {SHARDS_MAX} (e.g. 0/4 for the first of four)"
    )]
    Shard(String),
    #[error(transparent)]
    State(#[from] state::StateError),
}

/// Parses `--time`.
pub fn parse_duration(s: &str) -> Result<Duration, FuzzError> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = num.parse().map_err(|_| FuzzError::Time(s.to_string()))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    };
    match secs.map(Duration::from_secs) {
        Some(d) if !d.is_zero() && d <= TIME_MAX => Ok(d),
        _ => Err(FuzzError::Time(s.to_string())),
    }
}

/// Parses `--shard i/n`.
pub fn parse_shard(s: &str) -> Result<(u64, u64), FuzzError> {
    let bad = || FuzzError::Shard(s.to_string());
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (u64, u64) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || n > SHARDS_MAX || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// The scheduler seed of case `k` (0-based, this shard's k-th) of shard
/// `i/n` of campaign `seed`: the campaign's global case index is
/// `k * n + i`, mixed with the campaign seed, so shards never share a case.
pub fn case_seed(seed: u64, (i, n): (u64, u64), k: u64) -> u64 {
    let global = k.wrapping_mul(n).wrapping_add(i);
    splitmix(seed ^ splitmix(global))
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The case of index `k`: a fresh swarm draw, or (one in four, once the
/// corpus has entries) a neighbour of a corpus entry.
pub fn case_at(seed: u64, shard: (u64, u64), k: u64, corpus: &[RandomCase]) -> RandomCase {
    let s = case_seed(seed, shard, k);
    if k % 4 == 3 && !corpus.is_empty() {
        let base = &corpus[(s % corpus.len() as u64) as usize];
        RandomCase {
            seed: s,
            ..base.clone()
        }
    } else {
        random::from_seed(s)
    }
}

/// How a campaign ended.
#[derive(Debug)]
pub struct Summary {
    pub state: CampaignState,
    pub new_failures: Vec<Failure>,
    pub elapsed: Duration,
    /// Cases run by this invocation.
    pub ran: u64,
    pub resumed_at: u64,
}

impl Summary {
    /// The closing lines.
    pub fn text(&self) -> String {
        let s = &self.state;
        let rate = self.ran as f64 / self.elapsed.as_secs_f64().max(1e-9);
        let mut t = format!(
            "fuzz: shard {}/{} of campaign seed {}: {} cases in all ({} now, {:.1} s, {:.0} cases/s); clauses hit {}/{}, client-table cells {}/42; {} failure(s)\n",
            s.shard.0,
            s.shard.1,
            s.seed,
            s.cases,
            self.ran,
            self.elapsed.as_secs_f64(),
            rate,
            s.clause_hits.len(),
            vdi_spec::clauses::all().len(),
            s.cell_hits.len(),
            s.failures.len()
        );
        if self.resumed_at > 0 {
            t.push_str(&format!("resumed at case {}\n", self.resumed_at));
        }
        for f in &self.new_failures {
            t.push_str(&format!(
                "FAILURE seed {:#x} [{}] {}\n  shrunk to {}\n  replay: vdisim replay {}\n",
                f.seed, f.clause, f.what, f.file, f.file
            ));
            if !s.mutant.is_none() {
                t.push_str(&format!(
                    "  (found on the mutant model {}: the replay runs the unbroken model)\n",
                    s.mutant.name()
                ));
            }
        }
        t
    }
}

/// Shared between the workers.
struct Shared {
    state: Mutex<CampaignState>,
    corpus: Mutex<Vec<RandomCase>>,
    next: AtomicU64,
    stop: AtomicBool,
    /// Batches claimed and not yet finished (their first index).
    in_flight: Mutex<std::collections::BTreeSet<u64>>,
    ran: AtomicU64,
    new_failures: Mutex<Vec<Failure>>,
}

/// Runs a campaign.
pub fn run(a: &FuzzArgs) -> Result<Summary, FuzzError> {
    let time = parse_duration(&a.time)?;
    let shard = parse_shard(&a.shard)?;
    let (st, corpus) = state::load_or_new(&a.state, a.seed, shard, a.mutant)?;
    let resumed_at = st.next;
    let shared = Arc::new(Shared {
        next: AtomicU64::new(st.next),
        state: Mutex::new(st),
        corpus: Mutex::new(corpus),
        stop: AtomicBool::new(false),
        in_flight: Mutex::new(Default::default()),
        ran: AtomicU64::new(0),
        new_failures: Mutex::new(Vec::new()),
    });
    let jobs = a.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| n.get()),
        |j| j as usize,
    );
    let t0 = Instant::now();
    let deadline = t0 + time;
    let limit = a.cases.unwrap_or(u64::MAX);
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let sh = shared.clone();
            let a = a.clone();
            std::thread::spawn(move || worker(&sh, &a, shard, deadline, limit))
        })
        .collect();
    let progress = std::io::stderr().is_terminal();
    let mut last_save = Instant::now();
    while workers.iter().any(|w| !w.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        if progress {
            progress_line(&shared, t0, time);
        }
        if last_save.elapsed() >= SAVE_EVERY {
            save(&shared, &a.state)?;
            last_save = Instant::now();
        }
    }
    for w in workers {
        let _ = w.join();
    }
    if progress {
        eprint!("\r\x1b[2K");
    }
    save(&shared, &a.state)?;
    let state = lock(&shared.state).clone();
    let new_failures = std::mem::take(&mut *lock(&shared.new_failures));
    Ok(Summary {
        state,
        new_failures,
        elapsed: t0.elapsed(),
        ran: shared.ran.load(Ordering::SeqCst),
        resumed_at,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes the state with the watermark below which every case is done.
fn save(sh: &Shared, dir: &Path) -> Result<(), FuzzError> {
    let mut st = lock(&sh.state).clone();
    let flight = lock(&sh.in_flight);
    st.next = flight
        .iter()
        .next()
        .copied()
        .unwrap_or_else(|| sh.next.load(Ordering::SeqCst));
    drop(flight);
    lock(&sh.state).next = st.next;
    let corpus = lock(&sh.corpus).clone();
    state::save(dir, &st, &corpus)?;
    Ok(())
}

fn progress_line(sh: &Shared, t0: Instant, time: Duration) {
    let st = lock(&sh.state);
    let ran = sh.ran.load(Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    eprint!(
        "\r\x1b[2Kfuzz: {} cases ({:.0}/s) · clauses {}/{} · cells {}/42 · corpus {} · failures {} · {:.0}/{} s",
        st.cases,
        ran as f64 / secs.max(1e-9),
        st.clause_hits.len(),
        vdi_spec::clauses::all().len(),
        st.cell_hits.len(),
        lock(&sh.corpus).len(),
        st.failures.len(),
        secs,
        time.as_secs()
    );
    let _ = std::io::stderr().flush();
}

fn worker(sh: &Shared, a: &FuzzArgs, shard: (u64, u64), deadline: Instant, limit: u64) {
    while !sh.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        // Claim the next batch, never past the case limit (the saved
        // watermark must not skip cases a later, larger --cases would run).
        let mut flight = lock(&sh.in_flight);
        let start = sh.next.load(Ordering::SeqCst);
        if start >= limit {
            break;
        }
        let end = start.saturating_add(BATCH).min(limit);
        sh.next.store(end, Ordering::SeqCst);
        flight.insert(start);
        drop(flight);
        let corpus = lock(&sh.corpus).clone();
        let mut local = CampaignState::counts_only();
        let mut found = Vec::new();
        let mut new_cov = Vec::new();
        for k in start..end {
            let mut case = case_at(a.seed, shard, k, &corpus);
            case.mutant = a.mutant;
            let r = random::run(&case, Trace::off());
            let broken = random::check(&case, &r);
            let new = local.is_new(&r) && lock(&sh.state).is_new(&r);
            local.absorb(&r);
            if new {
                new_cov.push(case.clone());
            }
            if !broken.is_empty() {
                found.push((case, broken));
                if !a.keep_going {
                    sh.stop.store(true, Ordering::SeqCst);
                    break;
                }
            }
        }
        let done = local.cases;
        {
            let mut st = lock(&sh.state);
            st.merge(&local);
        }
        {
            let mut c = lock(&sh.corpus);
            for case in new_cov {
                if c.len() < CORPUS_MAX {
                    c.push(case);
                }
            }
        }
        sh.ran.fetch_add(done, Ordering::SeqCst);
        for (case, broken) in found {
            let f = state::record_failure(&a.state, &case, &broken);
            lock(&sh.state).failures.push(f.clone());
            lock(&sh.new_failures).push(f);
        }
        lock(&sh.in_flight).remove(&start);
    }
}

#[cfg(test)]
mod tests;
