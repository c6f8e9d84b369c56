//! Fault plans per statement in `vdisim serve`: a plan for some statements
//! only, changed over the control connection (`vdisim serve --set-faults`),
//! and a client's Close during a server stall ending the statement at once
//! (clause `abort.during-server-stall`).

#![cfg(unix)]

#[path = "support/remote_client.rs"]
mod remote_client;

use remote_client::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use vdi_host::remote::control::Control;
use vdi_host::remote::wire::{LineMessage, Request, Response};
use vdi_model::fault::{Fault, FaultPlan, Phase, PlannedFault, Trigger};
use vdi_model::msg::Timeout;
use vdi_model::outcome::FailReason;
use vdi_spec::{Hresult, Win32};
use vdi_sqlserver::serve::{ServeConfig, Server};

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");

fn temp_path(tag: &str, ext: &str) -> PathBuf {
    std::env::temp_dir().join(format!("vdisim-test-{}-{tag}.{ext}", std::process::id()))
}

fn numbers(m: &[LineMessage]) -> Vec<u32> {
    m.iter().map(|m| m.message.number).collect()
}

/// Runs `text` on another thread while the client works.
fn sql_async(path: &Path, text: String) -> std::thread::JoinHandle<Vec<LineMessage>> {
    let path = path.to_path_buf();
    std::thread::spawn(move || sql_at(&path, &text))
}

/// `vdisim serve --listen PATH --set-faults SPEC`: status, stdout, stderr.
fn set_faults(path: &Path, spec: &str) -> (i32, String, String) {
    let out = Command::new(VDISIM)
        .args(["serve", "--listen"])
        .arg(path)
        .args(["--set-faults", spec])
        .output()
        .expect("vdisim runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One statement through set `name` (one device) on the server at `path`:
/// the device ends and the statement's messages.
fn one_statement(
    path: &Path,
    name: &str,
    text: String,
    media: &Arc<Mutex<Vec<u8>>>,
) -> (Hresult, Vec<LineMessage>) {
    let set = set_at(path);
    assert_eq!(create(&set, name, 1), Hresult::NOERROR);
    let stmt = sql_async(path, text);
    let devs = open_all(&set, name, 1).expect("configured and opened");
    let (ends, _) = run_devices(&devs, std::slice::from_ref(media), Sink::Keep);
    set.close();
    (ends[0], stmt.join().unwrap())
}

/// "Clean backup, then faulty restore" is two commands: the backup runs
/// under no plan; `--set-faults server-abort@restore` puts a plan in force
/// for restores only; the restore fails with the server abort's messages
/// while the backup stays good; `--set-faults none` clears it and the same
/// restore succeeds.
#[test]
fn a_plan_set_over_the_control_connection_applies_to_the_selected_statements() {
    let mut cfg = ServeConfig::new(temp_path("setfaults", "sock"));
    cfg.databases = vec![("sales".into(), 16 * 65536)];
    let s = Server::start(cfg).expect("server starts");
    let media: Arc<Mutex<Vec<u8>>> = Arc::default();
    let (end, m) = one_statement(
        s.path(),
        "sf-b",
        "BACKUP DATABASE sales TO VIRTUAL_DEVICE='sf-b'".into(),
        &media,
    );
    assert_eq!((end, numbers(&m)), (Hresult::VD_E_CLOSE, vec![4035, 3014]));
    assert_eq!(s.status().backups, 1);

    let (code, out, err) = set_faults(s.path(), "server-abort@restore");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "from #2 on: server-abort@restore: server-signal-abort on restore (others run clean)"
        ),
        "{out}"
    );
    // A backup is not selected: it runs clean.
    let other: Arc<Mutex<Vec<u8>>> = Arc::default();
    let (end, m) = one_statement(
        s.path(),
        "sf-b2",
        "BACKUP DATABASE sales TO VIRTUAL_DEVICE='sf-b2'".into(),
        &other,
    );
    assert_eq!((end, numbers(&m)), (Hresult::VD_E_CLOSE, vec![4035, 3014]));
    // The restore is: the server aborts it at the planned command.
    let (end, m) = one_statement(
        s.path(),
        "sf-r",
        "RESTORE DATABASE sales FROM VIRTUAL_DEVICE='sf-r'".into(),
        &other,
    );
    assert_eq!(end, Hresult::VD_E_ABORT, "{m:?}");
    assert_eq!(m.last().map(|l| l.message.number), Some(3013), "{m:?}");
    let outcomes = s.outcomes();
    let restore = outcomes.last().unwrap();
    assert_eq!(
        restore.outcome.reason,
        Some(FailReason::ServerAbort),
        "{restore:?}"
    );
    assert!(outcomes[..2].iter().all(|o| o.outcome.succeeded()));
    assert_eq!(s.status().backups, 2, "the backups stay recorded");

    let (code, out, err) = set_faults(s.path(), "none");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("no faults: every statement runs clean"),
        "{out}"
    );
    let (end, m) = one_statement(
        s.path(),
        "sf-r2",
        "RESTORE DATABASE sales FROM VIRTUAL_DEVICE='sf-r2'".into(),
        &other,
    );
    assert_eq!(end, Hresult::VD_E_CLOSE, "{m:?}");
    assert_eq!(m.last().map(|l| l.message.number), Some(3014), "{m:?}");
}

/// Bad specs are refused before anything is sent, with what, where and how
/// to fix; a server-only check (bounds) answers with an error; the plan in
/// force is unchanged.
#[test]
fn bad_specs_are_refused_and_change_nothing() {
    let mut cfg = ServeConfig::new(temp_path("setfaults-bad", "sock"));
    cfg.databases = vec![("sales".into(), 4 * 65536)];
    let s = Server::start(cfg).expect("server starts");
    for (spec, says) in [
        ("server-abort@bakup", "unknown statement kind \"bakup\""),
        ("server-abort@#0", "numbered from 1"),
        ("read-fault:ms=3", "takes no parameters"),
        ("bogus@restore", "unknown fault plan 'bogus'"),
        ("disk-full", "all the client's"),
    ] {
        let (code, out, err) = set_faults(s.path(), spec);
        assert_eq!(code, 2, "{spec}: {out}{err}");
        assert!(err.contains(says), "{spec}: {err}");
        assert!(out.is_empty(), "{spec}: {out}");
    }
    // Straight to the server, past the command line's checks.
    let mut c = Control::connect(s.path(), "test").unwrap();
    let r = c
        .request(Request::SetFaults {
            spec: "server-stall@restore,".into(),
            plan: FaultPlan::none(),
        })
        .unwrap();
    match r {
        Response::Error { message } => {
            assert!(message.contains("at character 22"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
    let media: Arc<Mutex<Vec<u8>>> = Arc::default();
    let (end, m) = one_statement(
        s.path(),
        "bad-b",
        "BACKUP DATABASE sales TO VIRTUAL_DEVICE='bad-b'".into(),
        &media,
    );
    assert_eq!((end, numbers(&m)), (Hresult::VD_E_CLOSE, vec![4035, 3014]));
}

/// A client's Close during a long server stall ends the statement at once
/// (clause `abort.during-server-stall`): the statement's recorded end is a
/// small fraction of the stall into it, nothing is sent to the client after
/// the Close, and the completions the stall held are not taken.
#[test]
fn close_during_a_server_stall_ends_the_statement_at_once() {
    const STALL_MS: u64 = 600_000;
    let trace = temp_path("stall-trace", "jsonl");
    let _ = std::fs::remove_file(&trace);
    let mut cfg = ServeConfig::new(temp_path("stall", "sock"));
    cfg.databases = vec![("sales".into(), 64 * 65536)];
    cfg.trace = Some(trace.clone());
    // The server stalls from the statement's start: every completion the
    // client sends is held.
    cfg.faults = FaultPlan {
        name: "stall".into(),
        faults: vec![PlannedFault {
            phase: Phase::Any,
            trigger: Trigger::AtMs { ms: 0 },
            fault: Fault::ServerStall { ms: STALL_MS },
        }],
    };
    let s = Server::start(cfg).expect("server starts");
    let set = set_at(s.path());
    assert_eq!(create(&set, "stall", 1), Hresult::NOERROR);
    let stmt = sql_async(
        s.path(),
        "BACKUP DATABASE sales TO VIRTUAL_DEVICE='stall'".into(),
    );
    let devs = open_all(&set, "stall", 1).expect("configured and opened");
    // The commands sent before anything completed: complete them (held by
    // the stall) until none is waiting.
    let mut fetched = 0;
    while let Ok(c) = devs[0].get_command(Timeout::Ms(200)) {
        fetched += 1;
        assert_eq!(
            devs[0].complete(&c, Win32::ERROR_SUCCESS, u64::from(c.size)),
            Hresult::NOERROR
        );
    }
    assert!(
        fetched >= 1,
        "the server sent commands before the stall held them"
    );
    // Close with the device open: VD_E_OPEN, the set aborted and released.
    assert_eq!(set.close().code(), Hresult::VD_E_OPEN);
    // A safety net only (the statement ends at once, or a 10-minute stall
    // would hold it): the assertions are on the recorded outcome below.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(stmt.join());
    });
    let msgs = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the statement ended after the client's Close, not after the stall")
        .unwrap();
    assert_eq!(
        msgs.last().map(|l| l.message.number),
        Some(3013),
        "{msgs:?}"
    );
    let o = &s.outcomes()[0].outcome;
    assert_eq!(o.reason, Some(FailReason::ClientAbort), "{o:?}");
    let ended = o.ended_ms.expect("ended");
    assert!(
        ended * 20 < STALL_MS,
        "the statement ended {ended} ms into a {STALL_MS} ms stall"
    );
    // The trace: the interruption is recorded, with nothing sent after it
    // and no held completion taken.
    drop(s);
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("\"StallInterrupted\""))
        .unwrap_or_else(|| panic!("no StallInterrupted in {text}"));
    assert!(
        lines[at].contains("abort.during-server-stall"),
        "{}",
        lines[at]
    );
    let after = &lines[at + 1..];
    // (The abort's own effects complete what was outstanding server-side.)
    assert!(
        !after.iter().any(|l| l.contains("\"SendCommand\"")
            || (l.contains("\"Completion\"") && !l.contains("server-side"))),
        "sent or took something after the Close: {after:#?}"
    );
    let sent = lines[..at]
        .iter()
        .filter(|l| l.contains("\"SendCommand\""))
        .count();
    assert_eq!(
        sent, fetched,
        "every command sent was fetched before the Close"
    );
    let _ = std::fs::remove_file(&trace);
}

/// A stall's length is virtual time, on the server's scaled clock
/// (`--time-scale`): a 600,000 ms stall of a server at 1000 virtual ms per
/// real ms holds the backup 600,000 virtual ms (its recorded end is past
/// it), and the backup succeeds; the restore, not selected, runs clean.
#[test]
fn a_stall_of_a_selected_statement_runs_on_the_scaled_clock() {
    const STALL_MS: u64 = 600_000;
    let mut cfg = ServeConfig::new(temp_path("scaled", "sock"));
    cfg.databases = vec![("sales".into(), 8 * 65536)];
    cfg.time_scale = 1000;
    let s = Server::start(cfg).expect("server starts");
    let (plan, scope) = vdi_sqlserver::serve::faults::resolve_spec(
        &format!("server-stall:ms={STALL_MS}@backup"),
        |name| {
            let cx = vdi_model::fault::PlanContext {
                devices: 1,
                longest_timeout_ms: 60_000,
                server_timeout_ms: 60_000,
                family_bytes: 0,
            };
            FaultPlan::named(name, &cx).map_err(|e| e.to_string())
        },
    )
    .unwrap();
    let said = s.set_faults(plan, scope);
    assert!(
        said.contains("server-stall (600000 ms) on backup"),
        "{said}"
    );
    let media: Arc<Mutex<Vec<u8>>> = Arc::default();
    let (end, m) = one_statement(
        s.path(),
        "sc-b",
        "BACKUP DATABASE sales TO VIRTUAL_DEVICE='sc-b'".into(),
        &media,
    );
    assert_eq!((end, numbers(&m)), (Hresult::VD_E_CLOSE, vec![4035, 3014]));
    let (end, m) = one_statement(
        s.path(),
        "sc-r",
        "RESTORE DATABASE sales FROM VIRTUAL_DEVICE='sc-r'".into(),
        &media,
    );
    assert_eq!(end, Hresult::VD_E_CLOSE, "{m:?}");
    let o = s.outcomes();
    let backup_end = o[0].outcome.ended_ms.expect("ended");
    let restore_end = o[1].outcome.ended_ms.expect("ended");
    assert!(
        backup_end >= STALL_MS,
        "the backup ended at {backup_end} ms"
    );
    assert!(
        restore_end * 10 < STALL_MS,
        "the restore (not selected) ended at {restore_end} ms"
    );
}
