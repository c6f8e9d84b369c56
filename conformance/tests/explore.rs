//! `vdisim explore`: the named configurations' spaces at their default
//! bounds, pinned (a change that shrinks or grows a space fails here);
//! exploration is deterministic; the deliberately flawed `racy-staging`
//! client is found within its bound, though the default seeded run misses
//! it, and the written schedule replays the violation; the command's exit
//! statuses.

use std::path::PathBuf;
use std::process::Command;
use vdi_conformance::explore::{self, ExploreArgs, config, configs};
use vdi_sim::explore::{Limits, Stats};

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");

fn limits(bound: u32) -> Limits {
    Limits {
        bound,
        max_schedules: 1_000_000,
        prune: true,
    }
}

fn stats(name: &str) -> Stats {
    let c = config(name).expect("a configuration");
    let e = c.explore(limits(c.bound)).expect("explores");
    assert!(e.violation.is_none(), "{name}: {:?}", e.violation);
    e.stats
}

/// (configuration, schedules, states, max depth) at the default bound.
const PINNED: &[(&str, u64, u64, u64)] = &[
    ("backup2-client-abort", 3971, 3615, 40),
    ("backup2-server-abort", 3827, 4818, 39),
    ("backup2-client-close", 2987, 2350, 37),
    ("backup1-abort-vs-complete", 365, 239, 29),
    ("restore2-read-fault", 458, 264, 31),
    ("backup3-watchdog", 717, 854, 36),
];

#[test]
fn every_clean_configuration_is_exhausted_without_violation_pinned() {
    let clean: Vec<&str> = configs()
        .iter()
        .filter(|c| !c.flawed)
        .map(|c| c.name)
        .collect();
    let pinned: Vec<&str> = PINNED.iter().map(|p| p.0).collect();
    assert_eq!(clean, pinned, "every clean configuration is pinned");
    for &(name, schedules, states, depth) in PINNED {
        let s = stats(name);
        assert!(s.exhausted, "{name}: {s:?}");
        assert_eq!(s.endings, 1, "{name}: every interleaving ends alike");
        assert_eq!(
            (s.schedules, s.states, s.max_depth),
            (schedules, states, depth),
            "{name}: {s:?}"
        );
    }
}

#[test]
fn exploration_is_deterministic() {
    for name in ["backup2-server-abort", "restore2-read-fault"] {
        assert_eq!(stats(name), stats(name), "{name}");
    }
}

#[test]
fn a_higher_bound_explores_more() {
    let c = config("backup1-abort-vs-complete").expect("a configuration");
    let mut last = 0;
    for bound in 0..=c.bound {
        let s = c.explore(limits(bound)).expect("explores").stats;
        assert!(s.exhausted);
        assert!(s.schedules > last, "bound {bound}: {s:?}");
        last = s.schedules;
    }
}

#[test]
fn pruning_keeps_every_state() {
    // Pruning is sound here: without it every schedule runs to its end and
    // reaches exactly the states the pruned search reached.
    for (name, bound) in [
        ("backup1-abort-vs-complete", 3),
        ("backup2-server-abort", 1),
        ("restore2-read-fault", 1),
        ("racy-staging", 0),
    ] {
        let c = config(name).expect("a configuration");
        let pruned = c.explore(limits(bound)).expect("explores").stats;
        let full = c
            .explore(Limits {
                prune: false,
                ..limits(bound)
            })
            .expect("explores")
            .stats;
        assert!(full.exhausted && pruned.exhausted);
        assert_eq!(full.pruned, 0);
        assert_eq!(
            (full.states, full.max_depth),
            (pruned.states, pruned.max_depth),
            "{name}: {full:?} {pruned:?}"
        );
        assert!(full.schedules > pruned.schedules, "{name}");
    }
}

#[test]
fn the_schedule_cap_stops_exploration() {
    let c = config("backup2-client-abort").expect("a configuration");
    let e = c
        .explore(Limits {
            bound: c.bound,
            max_schedules: 10,
            prune: true,
        })
        .expect("explores");
    assert_eq!(e.stats.schedules, 10);
    assert!(!e.stats.exhausted);
}

#[test]
fn the_racy_client_is_found_and_replayed() {
    let c = config("racy-staging").expect("a configuration");
    assert!(c.flawed);
    // The default run (the seeded random scheduler, seed 1) misses it.
    let r = c.run_random(1).expect("runs");
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    // No preemption, no race.
    let e0 = c.explore(limits(0)).expect("explores");
    assert!(e0.violation.is_none());
    assert!(e0.stats.exhausted);
    // One preemption finds it.
    let e = c.explore(limits(c.bound)).expect("explores");
    let found = e.violation.expect("a violation within the default bound");
    assert_eq!(found.preemptions, 1);
    assert_eq!(
        found.result.violations[0].clause, "restore.byte-identical",
        "{:?}",
        found.result.violations
    );
    assert_eq!(
        (e.stats.schedules, e.stats.states, e.stats.max_depth),
        (1005, 628, 47)
    );
    // Its schedule replays the same violation and the same steps.
    let (r, taken) = c.replay(&found.schedule).expect("replays");
    assert_eq!(taken, found.schedule);
    assert_eq!(r.violations, found.result.violations);
    assert_eq!(
        r.trace_hash(),
        c.replay(&found.schedule).unwrap().0.trace_hash()
    );
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vdisim-explore-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a temp dir");
    d
}

#[test]
fn the_command_writes_a_schedule_file_that_replays() {
    let dir = temp_dir("cli");
    let out = Command::new(VDISIM)
        .args(["explore", "racy-staging", "--out-dir"])
        .arg(&dir)
        .output()
        .expect("runs vdisim");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("[restore.byte-identical]"), "{text}");
    let file = dir.join("explore-racy-staging.json");
    let f = explore::read_schedule(&file).expect("a schedule file");
    assert_eq!(
        (f.config.as_str(), f.bound, f.preemptions),
        ("racy-staging", 1, 1)
    );
    let out = Command::new(VDISIM)
        .args(["explore", "--replay"])
        .arg(&file)
        .output()
        .expect("runs vdisim");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("invariants: 1 violated"), "{text}");
    assert!(
        text.contains("\"what\":\"End\""),
        "the trace is printed: {text}"
    );
    // `vdisim replay` takes the schedule file too.
    let out = Command::new(VDISIM)
        .arg("replay")
        .arg(&file)
        .output()
        .expect("runs vdisim");
    let replayed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{replayed}");
    assert_eq!(replayed, text);
    // A file of the schedule's name that is not a schedule is kept.
    std::fs::write(&file, "mine\n").unwrap();
    let out = Command::new(VDISIM)
        .args(["explore", "racy-staging", "--out-dir"])
        .arg(&dir)
        .output()
        .expect("runs vdisim");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine\n");
    // A missing output directory is made.
    let deeper = dir.join("a/b");
    let out = Command::new(VDISIM)
        .args(["explore", "racy-staging", "--out-dir"])
        .arg(&deeper)
        .output()
        .expect("runs vdisim");
    assert_eq!(out.status.code(), Some(1));
    assert!(deeper.join("explore-racy-staging.json").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_command_exit_statuses() {
    let out = Command::new(VDISIM)
        .args(["explore", "backup1-abort-vs-complete"])
        .output()
        .expect("runs vdisim");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(
        text,
        "all schedules with ≤ 3 preemptions of configuration backup1-abort-vs-complete: 365 schedules, 239 states, max depth 29, no violation\n"
    );
    let out = Command::new(VDISIM)
        .args(["explore", "--list"])
        .output()
        .expect("runs vdisim");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for c in configs() {
        assert!(text.contains(c.name), "{text}");
    }
    let out = Command::new(VDISIM)
        .args(["explore", "no-such-config"])
        .output()
        .expect("runs vdisim");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("backup3-watchdog"),
        "names the configurations: {err}"
    );
    for flag in [["--bound", "9"], ["--max-schedules", "0"]] {
        let out = Command::new(VDISIM)
            .arg("explore")
            .args(flag)
            .output()
            .expect("runs vdisim");
        assert_eq!(out.status.code(), Some(2), "{flag:?}");
    }
    let bad = temp_dir("bad").join("bad.json");
    std::fs::write(&bad, "{\"config\": \"racy-staging\"}").expect("writes");
    let out = Command::new(VDISIM)
        .args(["explore", "--replay"])
        .arg(&bad)
        .output()
        .expect("runs vdisim");
    assert_eq!(out.status.code(), Some(2));
    let a = ExploreArgs {
        configs: vec![],
        bound: None,
        max_schedules: 0,
        no_prune: false,
        out_dir: ".".into(),
        replay: None,
        list: false,
        mutant: Default::default(),
    };
    assert!(explore::run(&a).is_err(), "--max-schedules 0 is refused");
}
