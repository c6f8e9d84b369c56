//! Pinned trace hashes of `vdisim simulate`: the same arguments on the same
//! model give the same trace hash, across refactorings of the code that
//! runs them. A change that alters a hash here changed the model's
//! behaviour (or its trace format) and must say so in its commit.

use std::process::Command;

/// `(arguments, trace hash)`.
const PINS: &[(&str, &str)] = &[
    ("--seed 1", "17b1978ca8e7eca4"),
    (
        "--seed 42 --devices 4 --faults client-abort",
        "aca95c0eb00f1da6",
    ),
    (
        "--seed 7 --devices 3 --operation backup --faults server-stall",
        "a54e3c0bd70480b4",
    ),
    (
        "--seed 9 --devices 2 --faults random --client timeout-is-fatal",
        "e706035c61b88c51",
    ),
    (
        "--seed 3 --devices 2 --operation restore --faults read-fault --read-sizes seeded",
        "7264907d24aec306",
    ),
    (
        "--seed 5 --mid-flushes 2 --request-complete --client closes-before-close",
        "1ceff51ecbac6587",
    ),
    (
        "--seed 11 --devices 8 --faults server-death --data-bytes 1048576",
        "c0902bfa75d08bb9",
    ),
    (
        "--seed 13 --faults truncated-media --client reads-until-full",
        "275bf2be46285b5e",
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
