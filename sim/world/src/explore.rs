//! Bounded exhaustive exploration of a world's interleavings: stateless
//! model checking with a preemption bound, as CHESS, loom and shuttle do.
//!
//! The explorer runs the world from scratch once per schedule, under a
//! replaying [`Scheduler`] that follows a prefix of choice indices and then
//! the default: the previous step's actor again while it can still act (no
//! preemption), else the first choice. Every run records the choice list
//! of each step. After a run the explorer backtracks to the deepest step
//! that has an untried alternative whose use keeps the schedule's
//! preemptions within the bound, and runs again with that prefix. It stops
//! when no such step is left (the space is exhausted), when a run breaks
//! an invariant, or at the schedule cap.
//!
//! A *preemption* is a step whose actor (a client thread, the link towards
//! the client, the link towards the server) differs from the previous
//! step's actor while that actor could still act. A step where the previous
//! actor blocked, slept or ran out of messages picks freely.
//!
//! Invariants are the world's own: every call's code is documented, no
//! command after an abort, a successful backup delivered every byte, the
//! step bound (`world.bounded`) — whatever lands in
//! [`RunResult::violations`] — and, with [`explore_checked`], an oracle's
//! judgement of every run that ends.
//!
//! States: after every step the explorer hashes [`World::fingerprint`]
//! and counts the distinct hashes. When every client program describes
//! its private state ([`Program::describe`]) the fingerprint is exact, and
//! a run that reaches a state already reached — with the same previous
//! actor and no more preemptions spent — stops there: every continuation
//! from it is explored from the first visit (state hashing, so equivalent
//! states are explored once). Otherwise states are counted and nothing is
//! pruned. What is left out of the fingerprint: the step number (unless a
//! fault fires at a step), so a pruned state may sit at another depth than
//! its first visit and a step-bound violation (`world.bounded`) that only
//! the deeper one reaches is not reported.
//!
//! A *schedule* in the counts is one run: to its end, or to a state
//! explored before ([`Stats::pruned`] of them). With pruning off every
//! schedule runs to its end; the distinct states are the same (the
//! conformance tests check it), the runs many more.
//!
//! Exploration is deterministic: the same world and bound give the same
//! schedules, states and depth. No sleep sets or partial-order reduction:
//! independent steps in either order are two schedules, and state hashing
//! is what folds them back together.
//!
//! [`Program::describe`]: vdi_model::programs::Program::describe

use crate::scheduler::{Choice, Scheduler};
use crate::world::{RunResult, ThreadState, World};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use thiserror::Error;
use vdi_model::checks::Violation;
use vdi_model::fault::Trigger;
use vdi_model::trace::Trace;

/// A schedule: the index picked at each step, in order. Steps past its end
/// take the default (the previous actor while it can act, else the first
/// choice).
pub type Schedule = Vec<u32>;

/// How far an exploration goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most preemptions in one schedule.
    pub bound: u32,
    /// Most schedules run (runs of the world).
    pub max_schedules: u64,
    /// Stop a run at a state explored before (when fingerprints are
    /// exact). Without it every schedule runs to its end: the same states,
    /// many more runs.
    pub prune: bool,
}

/// What an exploration counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Runs of the world: to its end, or to a state explored before.
    pub schedules: u64,
    /// Runs cut at a state explored before.
    pub pruned: u64,
    /// Distinct world fingerprints seen after a step (and at the start).
    pub states: u64,
    /// Most steps in one run.
    pub max_depth: u64,
    /// Steps taken over all runs (prefixes re-executed included).
    pub steps: u64,
    /// Distinct endings of the runs that ran to their end: how the run
    /// ended, each statement's outcome, each device loop's last code.
    pub endings: u64,
    /// Every schedule within the bound was run (not stopped by the cap or
    /// by a violation).
    pub exhausted: bool,
}

/// A run that broke an invariant.
#[derive(Debug)]
pub struct Found {
    /// The choice indices of every step of the run.
    pub schedule: Schedule,
    /// The preemptions in it.
    pub preemptions: u32,
    /// The run (its violations, end, outcome).
    pub result: RunResult,
}

/// The result of [`explore`].
#[derive(Debug)]
pub struct Explored {
    pub stats: Stats,
    /// The first schedule that broke an invariant, if any.
    pub violation: Option<Found>,
}

/// Why an exploration or a replay could not go on.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ExploreError {
    /// Re-running a prefix did not offer the same choices: something
    /// besides the scheduler decides the world's course.
    #[error(
        "the world is not deterministic: step {step} offered {now} choices ({now_list}), {before} the run before ({before_list})"
    )]
    Nondeterministic {
        step: usize,
        now: usize,
        now_list: String,
        before: usize,
        before_list: String,
    },
    /// A schedule names a choice a step did not have.
    #[error("the schedule picks choice {index} at step {step}, which offers only {count}")]
    BadSchedule {
        step: usize,
        index: u32,
        count: usize,
    },
}

/// Builds the world to explore with the given scheduler and trace. It is
/// called once per schedule and must build the same world each time.
pub type Build<'a> = dyn Fn(Box<dyn Scheduler>, Trace) -> World + 'a;

/// One step of a run as the scheduler saw it.
#[derive(Clone, Debug)]
struct Pick {
    choices: Vec<Choice>,
    taken: u32,
}

/// What a [`Replay`] scheduler shares with whoever runs the world.
#[derive(Debug, Default)]
struct Log {
    prefix: Vec<u32>,
    picks: Vec<Pick>,
    /// The first step where the prefix named a choice out of range.
    bad: Option<(usize, u32, usize)>,
    /// The actor of the last step and the preemptions so far.
    prev: Option<Choice>,
    preemptions: u32,
}

/// The explorer's scheduler: the prefix's choices, then the default.
struct Replay {
    log: Arc<Mutex<Log>>,
}

/// The default at a step: the previous actor while it can act, else the
/// first choice.
fn default_pick(prev: Option<Choice>, choices: &[Choice]) -> usize {
    prev.and_then(|p| choices.iter().position(|c| *c == p))
        .unwrap_or(0)
}

/// Whether picking `choices[j]` after `prev` is a preemption.
fn preempts(prev: Option<Choice>, choices: &[Choice], j: usize) -> bool {
    prev.is_some_and(|p| p != choices[j] && choices.contains(&p))
}

impl Scheduler for Replay {
    fn pick(&mut self, choices: &[Choice]) -> usize {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let step = log.picks.len();
        let prev = log.prev;
        let i = match log.prefix.get(step) {
            Some(&k) if (k as usize) < choices.len() => k as usize,
            Some(&k) => {
                log.bad.get_or_insert((step, k, choices.len()));
                default_pick(prev, choices)
            }
            None => default_pick(prev, choices),
        };
        log.picks.push(Pick {
            choices: choices.to_vec(),
            taken: i as u32,
        });
        log.preemptions += u32::from(preempts(prev, choices, i));
        log.prev = Some(choices[i]);
        i
    }
}

/// What the explorer remembers across runs.
#[derive(Default)]
struct Seen {
    prune: bool,
    /// Every fingerprint seen.
    states: HashSet<u64>,
    /// Endings of complete runs.
    endings: HashSet<String>,
    /// Exact fingerprints with the previous actor → the fewest preemptions
    /// spent on reaching them.
    explored: HashMap<(u64, Option<Choice>), u32>,
}

impl Seen {
    /// Records the state `w` is in; `true` when it was explored before
    /// with no more preemptions spent (the run can stop).
    fn visit(&mut self, w: &World, with_step: bool, log: &Mutex<Log>) -> bool {
        let (fp, exact) = w.fingerprint(with_step);
        self.states.insert(fp);
        if !exact || !self.prune {
            return false;
        }
        let (prev, spent) = {
            let l = log.lock().unwrap_or_else(|e| e.into_inner());
            (l.prev, l.preemptions)
        };
        match self.explored.get_mut(&(fp, prev)) {
            Some(best) if *best <= spent => true,
            Some(best) => {
                *best = spent;
                false
            }
            None => {
                self.explored.insert((fp, prev), spent);
                false
            }
        }
    }
}

/// Runs one world under `prefix`. With `seen`, records the states reached
/// by steps past the prefix's last-but-one (earlier ones were reached by an
/// earlier run with the same prefix) and stops at a state explored before:
/// then the result is `None`.
fn run_one(
    build: &Build<'_>,
    prefix: &[u32],
    trace: Trace,
    mut seen: Option<&mut Seen>,
) -> (Option<RunResult>, Log) {
    let log = Arc::new(Mutex::new(Log {
        prefix: prefix.to_vec(),
        ..Log::default()
    }));
    let mut w = build(Box::new(Replay { log: log.clone() }), trace);
    let with_step = w
        .cfg
        .faults
        .faults
        .iter()
        .any(|f| matches!(f.trigger, Trigger::AtStep { .. }));
    if prefix.is_empty()
        && let Some(s) = seen.as_deref_mut()
    {
        s.visit(&w, with_step, &log);
    }
    let mut choices = Vec::with_capacity(16);
    let result = loop {
        let before = w.step;
        if let Some(end) = w.step_once(&mut choices) {
            break Some(w.finish(end));
        }
        if w.step != before
            && w.step as usize >= prefix.len()
            && let Some(s) = seen.as_deref_mut()
            && s.visit(&w, with_step, &log)
        {
            break None;
        }
    };
    let log = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
    (result, log)
}

/// A step of the current path of the search.
struct Node {
    choices: Vec<Choice>,
    taken: u32,
    tried: Vec<bool>,
    /// The actor of the step before.
    prev: Option<Choice>,
    /// Preemptions in the steps before.
    preemptions: u32,
}

impl Node {
    /// The next untried alternative within `bound`, marked tried and taken.
    fn advance(&mut self, bound: u32) -> bool {
        for j in 0..self.choices.len() {
            if self.tried[j] {
                continue;
            }
            let cost = u32::from(preempts(self.prev, &self.choices, j));
            if self.preemptions + cost <= bound {
                self.tried[j] = true;
                self.taken = j as u32;
                return true;
            }
        }
        false
    }

    fn after(&self) -> (Option<Choice>, u32) {
        let j = self.taken as usize;
        let cost = u32::from(preempts(self.prev, &self.choices, j));
        (Some(self.choices[j]), self.preemptions + cost)
    }
}

fn list(c: &[Choice]) -> String {
    let v: Vec<String> = c.iter().map(|x| format!("{x:?}")).collect();
    v.join(" ")
}

/// Appends the run's steps past `path` to it, after checking that the
/// steps it shares with `path` offered the same choices.
fn extend(path: &mut Vec<Node>, picks: Vec<Pick>) -> Result<(), ExploreError> {
    for (k, (n, p)) in path.iter().zip(&picks).enumerate() {
        if n.choices != p.choices {
            return Err(ExploreError::Nondeterministic {
                step: k + 1,
                now: p.choices.len(),
                now_list: list(&p.choices),
                before: n.choices.len(),
                before_list: list(&n.choices),
            });
        }
    }
    if picks.len() < path.len() {
        return Err(ExploreError::Nondeterministic {
            step: picks.len() + 1,
            now: 0,
            now_list: "the run ended".into(),
            before: path[picks.len()].choices.len(),
            before_list: list(&path[picks.len()].choices),
        });
    }
    let start = path.len();
    for p in picks.into_iter().skip(start) {
        let (prev, preemptions) = path.last().map_or((None, 0), Node::after);
        let mut tried = vec![false; p.choices.len()];
        tried[p.taken as usize] = true;
        path.push(Node {
            choices: p.choices,
            taken: p.taken,
            tried,
            prev,
            preemptions,
        });
    }
    Ok(())
}

/// How a run ended, as [`Stats::endings`] tells endings apart.
fn ending(r: &RunResult) -> String {
    let outcomes: Vec<_> = r
        .statements
        .iter()
        .map(|(_, o)| (o.status, o.reason))
        .collect();
    let devices: Vec<_> = r.client.devices.iter().map(|d| d.end).collect();
    format!("{:?} {outcomes:?} {devices:?}", r.end)
}

/// Moves `path` to the deepest step with an untried alternative within
/// `bound` (taken); `false` when there is none left.
fn backtrack(path: &mut Vec<Node>, bound: u32) -> bool {
    while let Some(n) = path.last_mut() {
        if n.advance(bound) {
            return true;
        }
        path.pop();
    }
    false
}

/// Explores every schedule of the world `build` makes with at most
/// `limits.bound` preemptions (up to `limits.max_schedules` runs), in a
/// fixed order, and stops at the first run that breaks an invariant.
pub fn explore(build: &Build<'_>, limits: Limits) -> Result<Explored, ExploreError> {
    explore_checked(build, limits, &|_| Vec::new())
}

/// A check of a run that ended, beyond the world's own invariants (an
/// oracle): what it returns is added to the run's violations.
pub type Check<'a> = dyn Fn(&RunResult) -> Vec<Violation> + 'a;

/// [`explore`], with `check` judging every run that reaches its end as
/// well. The check must depend only on what the fingerprint holds (how the
/// run ended, the clock, the outcome, the client process), as the world's
/// end-of-run invariants do, for pruning to stay sound.
pub fn explore_checked(
    build: &Build<'_>,
    limits: Limits,
    check: &Check<'_>,
) -> Result<Explored, ExploreError> {
    let mut path: Vec<Node> = Vec::new();
    let mut seen = Seen {
        prune: limits.prune,
        ..Seen::default()
    };
    let mut stats = Stats::default();
    loop {
        let prefix: Vec<u32> = path.iter().map(|n| n.taken).collect();
        let (result, log) = run_one(build, &prefix, Trace::off(), Some(&mut seen));
        stats.schedules += 1;
        stats.steps += log.picks.len() as u64;
        stats.max_depth = stats.max_depth.max(log.picks.len() as u64);
        extend(&mut path, log.picks)?;
        let Some(mut result) = result else {
            stats.pruned += 1;
            if !backtrack(&mut path, limits.bound) {
                stats.exhausted = true;
                break;
            }
            if stats.schedules >= limits.max_schedules {
                break;
            }
            continue;
        };
        let extra = check(&result);
        result.violations.extend(extra);
        seen.endings.insert(ending(&result));
        if !result.violations.is_empty() {
            stats.states = seen.states.len() as u64;
            stats.endings = seen.endings.len() as u64;
            let preemptions = path.last().map_or(0, |n| n.after().1);
            return Ok(Explored {
                stats,
                violation: Some(Found {
                    schedule: path.iter().map(|n| n.taken).collect(),
                    preemptions,
                    result,
                }),
            });
        }
        if !backtrack(&mut path, limits.bound) {
            stats.exhausted = true;
            break;
        }
        if stats.schedules >= limits.max_schedules {
            break;
        }
    }
    stats.states = seen.states.len() as u64;
    stats.endings = seen.endings.len() as u64;
    Ok(Explored {
        stats,
        violation: None,
    })
}

/// Runs the world `build` makes under `schedule` (then the default), with
/// `trace`; returns the run and the full schedule it took.
pub fn replay(
    build: &Build<'_>,
    schedule: &[u32],
    trace: Trace,
) -> Result<(RunResult, Schedule), ExploreError> {
    let (r, log) = run_one(build, schedule, trace, None);
    if let Some((step, index, count)) = log.bad {
        return Err(ExploreError::BadSchedule {
            step: step + 1,
            index,
            count,
        });
    }
    let Some(r) = r else {
        unreachable!("a run without state hashing is never cut")
    };
    Ok((r, log.picks.iter().map(|p| p.taken).collect()))
}

/// The preemptions in `schedule` as the world `build` makes runs it.
pub fn preemptions(build: &Build<'_>, schedule: &[u32]) -> Result<u32, ExploreError> {
    let (_, log) = run_one(build, schedule, Trace::off(), None);
    let mut path = Vec::new();
    extend(&mut path, log.picks)?;
    Ok(path.last().map_or(0, |n| n.after().1))
}

/// FNV-1a over what is written to it.
struct Fnv(u64);

impl std::fmt::Write for Fnv {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for b in s.bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Ok(())
    }
}

impl World {
    /// A hash of what determines the world's future, short of the client
    /// programs' private state: the clock, both halves, the link, the set
    /// names, each thread's state, pending reply and stall, the client
    /// process record, the pending statement, the statements and their
    /// outcomes, the fault schedule and what fired, the violations so far.
    /// The trace, the counters and (unless `with_step`, for plans that fire
    /// at a step) the step number are left out, so two interleavings that
    /// reach the same situation hash alike.
    ///
    /// Each thread's program adds its private state
    /// ([`vdi_model::programs::Program::describe`]); the flag says whether
    /// every program did, so the hash is exact.
    pub fn fingerprint(&self, with_step: bool) -> (u64, bool) {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        let mut exact = true;
        let _ = write!(
            h,
            "{} {} {} {} {} {}|",
            self.now,
            self.client_alive,
            self.server_alive,
            self.server_stalled_until,
            self.bound,
            self.aborted_seen
        );
        if with_step {
            let _ = write!(h, "step {}|", self.step);
        }
        let _ = write!(
            h,
            "{:?}|{:?}|{:?}|",
            self.link, self.names.sets, self.client
        );
        let _ = write!(h, "{:?}|{:?}|", self.server, self.process);
        for t in &self.threads {
            let _ = write!(
                h,
                "{} {:?} {:?} {} {:?} {} {}|",
                t.who, t.state, t.reply, t.pending_stall, t.dev, t.scripted, t.polls
            );
            exact &= matches!(t.state, ThreadState::Done) || t.prog.describe(&mut h);
        }
        let _ = write!(
            h,
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.pending_start,
            self.statements,
            self.faults,
            self.fired,
            self.overrides,
            self.violations
        );
        (h.0, exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::WorldConfig;
    use std::sync::atomic::{AtomicU64, Ordering};
    use vdi_model::programs::{ClientSpec, Operation};

    fn spec(data_bytes: u64) -> ClientSpec {
        let mut s = ClientSpec {
            operation: Operation::Backup,
            devices: 2,
            ..ClientSpec::default()
        };
        s.plan.data_bytes = data_bytes;
        s
    }

    fn build(s: Box<dyn Scheduler>, t: Trace) -> World {
        World::with_scheduler(WorldConfig::new(1), spec(128 << 10).controller(), t, s)
    }

    fn limits(bound: u32) -> Limits {
        Limits {
            bound,
            max_schedules: 100_000,
            prune: true,
        }
    }

    #[test]
    fn a_small_backup_is_exhausted_the_same_way_twice() {
        let a = explore(&build, limits(1)).unwrap();
        let b = explore(&build, limits(1)).unwrap();
        assert!(a.violation.is_none());
        assert!(a.stats.exhausted);
        assert_eq!(a.stats, b.stats);
        assert!(a.stats.schedules > 1 && a.stats.states > a.stats.max_depth);
        let none = explore(&build, limits(0)).unwrap().stats;
        assert!(none.exhausted && none.schedules < a.stats.schedules);
    }

    #[test]
    fn the_empty_schedule_is_the_default_run() {
        let (r, taken) = replay(&build, &[], Trace::hashing()).unwrap();
        assert!(r.violations.is_empty());
        assert_eq!(taken.len() as u64, r.steps);
        assert_eq!(preemptions(&build, &taken).unwrap(), 0);
        let (again, _) = replay(&build, &taken, Trace::hashing()).unwrap();
        assert_eq!(again.trace_hash(), r.trace_hash());
    }

    #[test]
    fn a_check_stops_exploration_at_the_first_run_it_flags() {
        let flag = |r: &RunResult| {
            vec![Violation {
                clause: "test.flag".into(),
                what: format!("ended {:?}", r.end),
                at: None,
            }]
        };
        let e = explore_checked(&build, limits(1), &flag).unwrap();
        let found = e.violation.expect("flagged");
        assert_eq!((e.stats.schedules, found.preemptions), (1, 0));
        assert_eq!(found.result.violations[0].clause, "test.flag");
        assert_eq!(found.schedule.len() as u64, found.result.steps);
        assert!(!e.stats.exhausted);
    }

    #[test]
    fn a_choice_out_of_range_is_refused() {
        let e = replay(&build, &[7], Trace::off()).unwrap_err();
        assert_eq!(
            e,
            ExploreError::BadSchedule {
                step: 1,
                index: 7,
                count: 1
            }
        );
    }

    #[test]
    fn a_world_that_changes_between_runs_is_refused() {
        let runs = AtomicU64::new(0);
        let drifting = |s: Box<dyn Scheduler>, t: Trace| {
            let n = runs.fetch_add(1, Ordering::Relaxed);
            let data = if n == 0 { 128 << 10 } else { 512 << 10 };
            World::with_scheduler(WorldConfig::new(1), spec(data).controller(), t, s)
        };
        let e = explore(&drifting, limits(1)).unwrap_err();
        assert!(matches!(e, ExploreError::Nondeterministic { .. }), "{e}");
    }

    #[test]
    fn default_keeps_the_actor() {
        let c = [Choice::Thread(0), Choice::Thread(2), Choice::ToServer];
        assert_eq!(default_pick(Some(Choice::Thread(2)), &c), 1);
        assert_eq!(default_pick(Some(Choice::ToClient), &c), 0);
        assert_eq!(default_pick(None, &c), 0);
    }

    #[test]
    fn a_preemption_needs_the_previous_actor_enabled() {
        let c = [Choice::Thread(0), Choice::Thread(1)];
        assert!(preempts(Some(Choice::Thread(0)), &c, 1));
        assert!(!preempts(Some(Choice::Thread(0)), &c, 0));
        assert!(!preempts(Some(Choice::ToClient), &c, 1));
        assert!(!preempts(None, &c, 1));
    }

    #[test]
    fn advance_respects_the_bound() {
        let mut n = Node {
            choices: vec![Choice::Thread(0), Choice::Thread(1), Choice::ToServer],
            taken: 0,
            tried: vec![true, false, false],
            prev: Some(Choice::Thread(0)),
            preemptions: 1,
        };
        assert!(!n.advance(1), "every alternative preempts thread 0");
        assert!(n.advance(2));
        assert_eq!(n.taken, 1);
        assert_eq!(n.after(), (Some(Choice::Thread(1)), 2));
        assert!(n.advance(2));
        assert_eq!(n.taken, 2);
        assert!(!n.advance(2));
    }
}
