//! The client-test environment through the built `libsqlvdi.so`, as a
//! vendor's program meets it: `VDISIM_CLIENT_LOG` logs the program's calls,
//! `VDISIM_TIME_SCALE` and `VDISIM_PROFILE` apply to sets connected to
//! `vdisim serve`, bad values are one line on stderr each and the defaults;
//! and a real client (the C++ Linux sample) is graded from its log.
//!
//! Needs gcc (and g++ for the sample); without them each test prints
//! `SKIPPED: <why>`.
#![cfg(target_os = "linux")]

mod common;

use common::{crate_dir, have};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use vdi_host::calllog::parse_log;
use vdi_model::calllog::{Api, CallRecord, ProcessLine};
use vdi_model::checks::obligations::{self, Context, ProgramEnd, StatementEnd};
use vdi_model::outcome::{FailReason, Outcome, Status};
use vdi_spec::id;

fn out_dir() -> PathBuf {
    common::out_dir("standin-calllog")
}

fn lib_dir() -> &'static PathBuf {
    common::lib_dir("standin-calllog")
}

fn compile(compiler: &str, src: &Path, std: &str, out: &str) -> PathBuf {
    let exe = out_dir().join(out);
    let o = Command::new(compiler)
        .args([std, "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(src)
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(lib_dir())
        .args(["-lsqlvdi", "-lpthread"])
        .output()
        .expect("run compiler");
    assert!(
        o.status.success(),
        "{compiler} {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    exe
}

/// Runs `exe` with only the `env` given of the client-test variables, and
/// never a `vdisim serve` that happens to run here.
fn run(exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(exe);
    c.args(args).env("LD_LIBRARY_PATH", lib_dir()).env(
        "VDISIM_SERVER",
        std::env::temp_dir().join(format!("vdisim-no-server-{}.sock", std::process::id())),
    );
    for k in [
        "VDISIM_PLAN",
        "VDISIM_CLIENT_LOG",
        "VDISIM_TIME_SCALE",
        "VDISIM_PROFILE",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run program")
}

/// The value printed after `key` on its own line.
fn printed<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).map(str::trim))
        .unwrap_or_else(|| panic!("no {key} line in:\n{out}"))
}

fn fresh(name: &str) -> PathBuf {
    let p = out_dir().join(name);
    let _ = std::fs::remove_file(&p);
    p
}

fn read_log(path: &Path) -> (Vec<ProcessLine>, Vec<CallRecord>) {
    let text = std::fs::read_to_string(path).expect("the call log");
    parse_log(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// `tests/c/client_env.c`, built as `out` (one per test: tests run at
/// once, and a file being written cannot be run).
fn client_env(out: &str) -> Option<PathBuf> {
    if !have("gcc") {
        println!("SKIPPED: gcc not found");
        return None;
    }
    let src = crate_dir().join("tests/c/client_env.c");
    Some(compile("gcc", &src, "-std=c11", out))
}

/// Serve mode (no plan): the log holds the program's calls with the
/// timeout it passed, on a clock 100 times faster; the profile decides the
/// code of an illegal name; graded, the second Close is the program's.
#[test]
fn log_scale_and_profile_apply_to_sets_of_vdisim_serve() {
    let Some(exe) = client_env("client_env_serve") else {
        return;
    };
    let log = fresh("serve.jsonl");
    let profile = out_dir().join("client-test-profile.toml");
    std::fs::write(
        &profile,
        "name = \"client-test\"\ncreate-illegal-name-code = \"VD_E_NOTSUPPORTED\"\n",
    )
    .unwrap();
    let o = run(
        &exe,
        &["5000"],
        &[
            ("VDISIM_CLIENT_LOG", log.to_str().unwrap()),
            ("VDISIM_TIME_SCALE", "100"),
            ("VDISIM_PROFILE", profile.to_str().unwrap()),
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && out.contains("OK"), "{out}\n{err}");
    assert_eq!(printed(&out, "getconfiguration"), "0x80770003");
    let ms: f64 = printed(&out, "elapsed_ms").parse().unwrap();
    assert!(ms < 2500.0, "5000 virtual ms at 100x took {ms} real ms");
    assert_eq!(
        printed(&out, "illegal_name"),
        "0x80770009",
        "the profile's code"
    );
    assert_eq!(err.lines().count(), 1, "only the no-server line: {err}");

    let (procs, calls) = read_log(&log);
    assert_eq!(procs.len(), 1);
    assert_eq!(
        (procs[0].scale, procs[0].profile.as_str()),
        (100, "client-test")
    );
    assert!(procs[0].mode.contains("vdisim serve"), "{:?}", procs[0]);
    let methods: Vec<Api> = calls.iter().map(|c| c.method).collect();
    use Api::*;
    assert_eq!(
        methods,
        [
            CreateEx,
            GetConfiguration,
            Create,
            SignalAbort,
            Close,
            Close
        ]
    );
    let g = &calls[1];
    assert_eq!(g.args.timeout.unwrap().raw, 5000);
    assert!(g.end_ms - g.start_ms >= 5000, "{g:?}");
    assert_eq!((calls[0].object, calls[2].object), (1, 2));
    assert_eq!(calls[2].ret.name, "VD_E_NOTSUPPORTED");

    let cx = Context {
        statements: Vec::new(),
        end: ProgramEnd::Exited { code: 0 },
        unimplemented_code: None,
    };
    let found: Vec<String> = obligations::check(&calls, &cx)
        .into_iter()
        .map(|v| v.clause)
        .collect();
    assert_eq!(found, [id::CLOSE_EXACTLY_ONCE.as_str()]);
}

/// Unusable values: one line each on stderr (naming the variable and the
/// fix) and the defaults — real time, the default profile, no log.
#[test]
fn bad_values_are_one_line_each_and_the_defaults() {
    let Some(exe) = client_env("client_env_bad") else {
        return;
    };
    let missing = out_dir().join("no-such-dir/calls.jsonl");
    let o = run(
        &exe,
        &["50"],
        &[
            ("VDISIM_CLIENT_LOG", missing.to_str().unwrap()),
            ("VDISIM_TIME_SCALE", "fast"),
            ("VDISIM_PROFILE", "/no/such/profile.toml"),
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && out.contains("OK"), "{out}\n{err}");
    let ms: f64 = printed(&out, "elapsed_ms").parse().unwrap();
    assert!(ms >= 49.0, "real time: {ms} ms");
    assert_eq!(
        printed(&out, "illegal_name"),
        "0x80770006",
        "the default profile"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    for var in ["VDISIM_TIME_SCALE", "VDISIM_PROFILE", "VDISIM_CLIENT_LOG"] {
        let l = lines
            .iter()
            .find(|l| l.contains(var) && !l.contains("no server"))
            .unwrap_or_else(|| panic!("no line about {var}: {err}"));
        assert!(l.starts_with("vdisim: "), "{l}");
    }
    assert!(!missing.exists());
}

/// The sample's plan: a BACKUP with a mid-stream Flush (and for
/// `roundtrip` a RESTORE).
fn plan(mode: &str) -> PathBuf {
    let backup = "[[statement]]\nkind = \"backup-database\"\ndatabase = \"sales\"\n\
                  data-bytes = 1048576\nmid-flushes = 1\n";
    let text = if mode == "roundtrip" {
        format!("{backup}\n[[statement]]\nkind = \"restore-database\"\ndatabase = \"sales\"\n")
    } else {
        backup.to_string()
    };
    let p = out_dir().join(format!("sample-{mode}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn statement(status: Status, reason: Option<FailReason>) -> StatementEnd {
    StatementEnd {
        set: None,
        kind: None,
        outcome: Outcome {
            status,
            reason,
            ..Outcome::default()
        },
        ended_ms: None,
        mid_stream_flushes: 1,
    }
}

/// The C++ Linux sample's calls, from its threads, logged and graded: its
/// roundtrip keeps every obligation; its deliberate Close with devices
/// open, its use of the devices after it and its second Close are found.
#[test]
fn the_linux_sample_graded_from_its_log() {
    if !have("g++") {
        println!("SKIPPED: g++ not found");
        return;
    }
    let src = crate_dir().join("samples/cpp_linux_client.cpp");
    let exe = compile("g++", &src, "-std=c++17", "cpp_linux_client_calllog");
    let graded = |mode: &str, code: i32, statements: Vec<StatementEnd>| -> Vec<String> {
        let log = fresh(&format!("sample-{mode}.jsonl"));
        let plan = plan(mode);
        let o = run(
            &exe,
            &[mode],
            &[
                ("VDISIM_PLAN", plan.to_str().unwrap()),
                ("VDISIM_CLIENT_LOG", log.to_str().unwrap()),
            ],
        );
        assert_eq!(
            o.status.code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        let (procs, calls) = read_log(&log);
        assert_eq!(procs.len(), 1);
        let threads: std::collections::BTreeSet<u64> = calls.iter().map(|c| c.thread).collect();
        assert!(
            threads.len() >= 4,
            "main and three device threads: {threads:?}"
        );
        let cx = Context {
            statements,
            end: ProgramEnd::Exited { code },
            unimplemented_code: None,
        };
        obligations::check(&calls, &cx)
            .into_iter()
            .map(|v| format!("{}: {}", v.clause, v.what))
            .collect()
    };
    let ok = || statement(Status::Succeeded, None);
    let found = graded("roundtrip", 0, vec![ok(), ok()]);
    assert!(found.is_empty(), "{found:#?}");
    let found = graded(
        "close-open",
        3,
        vec![statement(Status::Failed, Some(FailReason::ClientAbort))],
    );
    let clauses: Vec<&str> = found.iter().map(|f| f.split(':').next().unwrap()).collect();
    assert_eq!(
        clauses,
        [
            id::CLOSE_WAIT_FOR_CLOSE.as_str(),
            id::CLOSE_EXACTLY_ONCE.as_str(),
            id::CLOSE_EXACTLY_ONCE.as_str()
        ],
        "{found:#?}"
    );
    assert!(found[2].contains("GetCommand on device 0"), "{}", found[2]);
}
