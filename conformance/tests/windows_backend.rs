//! The `windows` backend (`conformance/src/backends/windows.rs`) from a
//! Linux host: `vdisim.exe`, cross-built for x86_64-pc-windows-gnu, runs
//! the catalog under Wine with `--backend windows` — set objects from
//! `CoCreateInstance(CLSID_MSSQL_ClientVirtualDeviceSet)`, answered by the
//! stand-in `sqlvdi.dll` registered with `regsvr32` in a private prefix —
//! and every case gets the verdict the `com` backend gives it on Linux.
//!
//! By default the cases of the areas that cross the COM interface run
//! ([`COM_AREAS`]: the set's and the device's methods, the client table,
//! striping, restore), about half the catalog, to keep CI's time; with
//! `VDISIM_WINDOWS_FULL=1` the whole catalog runs (the full run took 112 s
//! on the CI machine, 2 cores).
//!
//! Missing tools (the rustup target x86_64-pc-windows-gnu,
//! x86_64-w64-mingw32-gcc, wine64): a loud `SKIPPED: <why>` line, and the
//! test passes.

#![cfg(target_os = "linux")]

#[path = "support/scratch.rs"]
mod scratch;
#[path = "support/wine.rs"]
mod wine;

use scratch::Scratch;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use vdi_conformance::client_test::wine::{Wine, dos_path};
use wine::{build_dll, cargo_build_windows, missing_tool, skipped, windows_out_dir};

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");

/// The case-id words (`vdisim run --filter`) of the areas run by default.
const COM_AREAS: &str = "abi,create,open-device,get-configuration,get-command,complete-command,close,signal-abort,buffer-handle,table,open-in-secondary,stripe,restore";

/// (case, seed) → verdict of a report.
fn verdicts(dir: &Path) -> BTreeMap<(String, u64), String> {
    let text = std::fs::read_to_string(dir.join("report.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let v: Value = serde_json::from_str(&text).expect("report.json");
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            (
                (
                    c["case"].as_str().unwrap_or("").to_string(),
                    c["seed"].as_u64().unwrap_or(0),
                ),
                c["verdict"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn the_windows_backend_under_wine_gives_the_com_verdicts() {
    if let Some(why) = missing_tool() {
        skipped(&format!(
            "the windows backend did not run under Wine: {why}"
        ));
        return;
    }
    let dir = Scratch::new("backend");
    let dll = build_dll(&dir.0);
    cargo_build_windows(&["-p", "vdi-conformance", "--bin", "vdisim"]);
    let exe = windows_out_dir().join("vdisim.exe");
    let wine = Wine::setup(&dir.0, None, &dll).expect("a Wine prefix with sqlvdi.dll registered");
    println!("{}", wine.note);

    let run = |tag: &str, filter: Option<&str>| {
        let win = dir.path(&format!("windows-{tag}"));
        let mut c = Command::new(&wine.wine);
        c.arg(&exe)
            .args(["run", "--backend", "windows", "--report-dir"])
            .arg(dos_path(&win))
            .envs(wine.env())
            .env_remove("DISPLAY");
        if let Some(f) = filter {
            c.args(["--filter", f]);
        }
        let o = c.output().expect("wine64 vdisim.exe");
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            win.join("report.json").is_file(),
            "vdisim.exe run --backend windows wrote no report: {text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let com = dir.path(&format!("com-{tag}"));
        let mut c = Command::new(VDISIM);
        c.args(["run", "--backend", "com", "--report-dir"])
            .arg(&com);
        if let Some(f) = filter {
            c.args(["--filter", f]);
        }
        let o2 = c.output().expect("vdisim run");
        (
            verdicts(&win),
            verdicts(&com),
            o.status.code(),
            o2.status.code(),
            text,
        )
    };
    let differing = |w: &BTreeMap<(String, u64), String>, c: &BTreeMap<(String, u64), String>| {
        w.keys()
            .chain(c.keys())
            .filter(|k| w.get(*k) != c.get(*k))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    let areas = match std::env::var_os("VDISIM_WINDOWS_FULL") {
        Some(v) if v == "1" => None,
        _ => Some(COM_AREAS),
    };
    let (w, c, win_code, com_code, win_text) = run("all", areas);
    assert!(!w.is_empty());
    let mut differ = differing(&w, &c);
    if !differ.is_empty() {
        // Both runs share a loaded machine: a case whose verdict differs is
        // run again on both sides, and must agree then.
        let names: Vec<&str> = differ.iter().map(|k| k.0.as_str()).collect();
        println!("verdicts differ in {names:?}; running them again on both backends");
        let (w2, c2, _, _, text) = run("again", Some(&names.join(",")));
        differ = differing(&w2, &c2);
        assert!(
            differ.is_empty(),
            "verdicts differ twice: {}\n{text}",
            differ
                .iter()
                .map(|k| format!("{k:?}: windows {:?}, com {:?}", w2.get(k), c2.get(k)))
                .collect::<Vec<_>>()
                .join("\n")
        );
    } else {
        assert_eq!(win_code, com_code, "{win_text}");
    }
    let passed = w.values().filter(|v| *v == "pass").count();
    println!(
        "windows backend under Wine: {} results, {passed} pass, the same verdicts as com",
        w.len()
    );
    drop(wine);
}
