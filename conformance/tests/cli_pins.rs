//! Pinned trace hashes of `vdisim simulate`: the same arguments on the same
//! model give the same trace hash, across refactorings of the code that
//! runs them. A change that alters a hash here changed the model's
//! behaviour (or its trace format) and must say so in its commit.

use std::process::Command;

/// `(arguments, trace hash)`.
const PINS: &[(&str, &str)] = &[
    ("--seed 1", "246031bfbe0f5327"),
    (
        "--seed 42 --devices 4 --faults client-abort",
        "a41813f3457a8886",
    ),
    (
        "--seed 7 --devices 3 --operation backup --faults server-stall",
        "9ef364315abb84a2",
    ),
    (
        "--seed 9 --devices 2 --faults random --client timeout-is-fatal",
        "10c8bce5a2b7d1d7",
    ),
    (
        "--seed 3 --devices 2 --operation restore --faults read-fault --read-sizes seeded",
        "628ea4644d348ea9",
    ),
    (
        "--seed 5 --mid-flushes 2 --request-complete --client closes-before-close",
        "32221216b3c7545f",
    ),
    (
        "--seed 11 --devices 8 --faults server-death --data-bytes 1048576",
        "d7586d521b685e59",
    ),
    (
        "--seed 13 --faults truncated-media --client reads-until-full",
        "cdfa60124b54074b",
    ),
];

fn hash_of(args: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vdisim"))
        .arg("simulate")
        .args(args.split_whitespace())
        .output()
        .expect("vdisim runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("trace-hash "))
        .unwrap_or_else(|| panic!("no trace-hash line for {args}: {text}"))
        .trim()
        .to_string()
}

#[test]
fn simulate_hashes_are_pinned() {
    let mut wrong = Vec::new();
    for (args, want) in PINS {
        let got = hash_of(args);
        if got != *want {
            wrong.push(format!("{args}: pinned {want}, got {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
