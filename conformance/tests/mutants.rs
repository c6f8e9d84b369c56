//! A deliberately broken model rule is found by both `vdisim explore` and
//! `vdisim fuzz` within their bounds, and the unbroken model is clean under
//! the same bounds: the harness catches what it claims to catch.
//!
//! The mutant (`vdi_model::mutation::Mutation::CloseLeavesGetCommandBlocked`):
//! Close does not answer a GetCommand waiting on a device of the set it
//! closes. A client whose device 0 closes the set while device 1 is in its
//! loop (`backup2-client-close`, flaw `closes-while-devices-wait`) then
//! leaves device 1 waiting. Bounds are schedule and case counts, never
//! wall time.

#[path = "support/scratch.rs"]
mod scratch;

use scratch::Scratch;
use std::path::Path;
use std::process::Command;
use vdi_conformance::explore::{self, config};
use vdi_model::mutation::Mutation;
use vdi_sim::explore::Limits;
use vdi_spec::id;

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");
const MUTANT: &str = "close-leaves-getcommand-blocked";
const CONFIG: &str = "backup2-client-close";

/// The clauses the world's checks name for the mutant: a GetCommand that
/// waits on a closed set, or one left blocked across Close.
fn caught(clause: &str) -> bool {
    clause == id::CLOSE_INVALIDATES_DEVICES.as_str() || clause == id::GET_COMMAND_ABORT.as_str()
}

fn vdisim(args: &[&str], dir: &Path) -> (i32, String) {
    let out = Command::new(VDISIM)
        .args(args)
        .arg(dir)
        .output()
        .expect("vdisim runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn explore_finds_the_mutant_at_the_default_bound_and_its_schedule_replays() {
    let clean = config(CONFIG).expect("a configuration");
    assert!(!clean.flawed, "explored by default");
    let limits = Limits {
        bound: clean.bound,
        max_schedules: 1_000_000,
        prune: true,
    };
    let e = clean.explore(limits).expect("explores");
    assert!(e.violation.is_none(), "{:?}", e.violation);
    assert!(e.stats.exhausted, "{:?}", e.stats);

    let broken = config(CONFIG)
        .expect("a configuration")
        .with_mutant(Mutation::CloseLeavesGetCommandBlocked);
    let e = broken.explore(limits).expect("explores");
    let found = e
        .violation
        .expect("the mutant is found within the default bound");
    let first = &found.result.violations[0];
    assert!(caught(&first.clause), "{:?}", found.result.violations);
    let (r, taken) = broken.replay(&found.schedule).expect("replays");
    assert_eq!(taken, found.schedule);
    assert_eq!(r.violations, found.result.violations);
    // The same schedule on the unbroken model holds.
    let (r, _) = clean.replay(&found.schedule).expect("replays");
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

/// Under the seeded random scheduler, some runs leave device 1 blocked in
/// GetCommand when Close returns; the check after Close names it (clause
/// get-command.abort). The unbroken model holds in every run.
#[test]
fn a_getcommand_blocked_across_close_is_named() {
    let broken = config(CONFIG)
        .expect("a configuration")
        .with_mutant(Mutation::CloseLeavesGetCommandBlocked);
    let clean = config(CONFIG).expect("a configuration");
    let mut blocked = 0;
    for seed in 0..64 {
        let r = clean.run_random(seed).expect("runs");
        assert!(r.violations.is_empty(), "seed {seed}: {:?}", r.violations);
        // Device 1 may be between fetching and completing a command when
        // Close comes (its CompleteCommand is answered): no wait, no finding.
        let r = broken.run_random(seed).expect("runs");
        assert!(
            r.violations
                .iter()
                .all(|v| caught(&v.clause) || v.clause == id::WATCHDOG_FIRES.as_str()),
            "seed {seed}: {:?}",
            r.violations
        );
        let named = |v: &vdi_model::checks::Violation| v.clause == id::GET_COMMAND_ABORT.as_str();
        blocked += usize::from(r.violations.iter().any(named));
    }
    assert!(blocked > 0, "no seed blocked device 1 across Close");
}

#[test]
fn the_explore_command_reports_the_mutant_and_writes_a_replayable_schedule() {
    let s = Scratch::new("explore");
    let (code, text) = vdisim(&["explore", CONFIG, "--out-dir"], &s.0);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("no violation"), "{text}");
    let (code, text) = vdisim(&["explore", CONFIG, "--mutant", MUTANT, "--out-dir"], &s.0);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("{CONFIG} on the mutant model {MUTANT}")),
        "{text}"
    );
    let file = s.0.join(format!("explore-{CONFIG}.json"));
    let f = explore::read_schedule(&file).expect("a schedule file");
    assert_eq!(f.mutant, Mutation::CloseLeavesGetCommandBlocked);
    assert!(caught(&f.clause), "{f:?}");
    assert!(text.contains(&format!(
        "replay: vdisim explore --replay {}",
        file.display()
    )));
    let out = Command::new(VDISIM)
        .arg("replay")
        .arg(&file)
        .output()
        .expect("vdisim runs");
    let replayed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{replayed}");
    assert!(replayed.contains(&format!("[{}]", f.clause)), "{replayed}");
    // `vdisim explore` with no configuration runs every one at its default
    // bound: only the one where Close races a device loop breaks.
    let (code, text) = vdisim(&["explore", "--mutant", MUTANT, "--out-dir"], &s.0);
    assert_eq!(code, 1, "{text}");
    let clean = text.lines().filter(|l| l.ends_with("no violation")).count();
    assert_eq!(
        clean,
        explore::configs().iter().filter(|c| !c.flawed).count() - 1,
        "{text}"
    );
    assert!(
        text.contains(&format!("configuration {CONFIG} on the mutant model")),
        "{text}"
    );
    // An unknown mutant is refused with the list.
    let (code, text) = vdisim(&["explore", CONFIG, "--mutant", "nope", "--out-dir"], &s.0);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(MUTANT), "{text}");
}

/// A short campaign (a case budget, one job: a function of its seed) finds
/// the mutant and shrinks it; the same campaign on the unbroken model is
/// clean; a state directory keeps to its mutant.
#[test]
fn fuzz_finds_the_mutant_within_a_short_campaign() {
    let cases = [
        "fuzz", "--cases", "2000", "--time", "1h", "--jobs", "1", "--seed", "0",
    ];
    let clean = Scratch::new("fuzz-clean");
    let mut args = cases.to_vec();
    args.push("--state");
    let (code, text) = vdisim(&args, &clean.0);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("2000 cases in all"), "{text}");

    let broken = Scratch::new("fuzz-mutant");
    let mut args = cases.to_vec();
    args.extend(["--mutant", MUTANT, "--state"]);
    let (code, text) = vdisim(&args, &broken.0);
    assert_eq!(code, 1, "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("FAILURE"))
        .unwrap_or_else(|| panic!("a failure: {text}"));
    assert!(
        line.contains(&format!("[{}]", id::CLOSE_INVALIDATES_DEVICES))
            || line.contains(&format!("[{}]", id::GET_COMMAND_ABORT)),
        "{text}"
    );
    assert!(
        text.contains(&format!("found on the mutant model {MUTANT}")),
        "{text}"
    );
    let files: Vec<_> = std::fs::read_dir(broken.0.join("failures"))
        .expect("a failures directory")
        .collect();
    assert_eq!(files.len(), 1, "one shrunk failure");
    // Resuming the mutant campaign without the mutant is refused.
    let mut args = cases.to_vec();
    args.push("--state");
    let (code, text) = vdisim(&args, &broken.0);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--mutant"), "{text}");
}
