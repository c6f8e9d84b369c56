//! The seed document's three scenarios, run in the deterministic world with
//! small data (4 × 64 KiB) and snapshotted as canonical JSONL traces: the
//! snapshots are the specification in action, one event per line, each
//! citing the clause that decides it.
//!
//! Regenerate with `INSTA_UPDATE=always cargo test -p vdi-sim --test
//! seed_scenarios`, then read the diff: a change in a snapshot is a change
//! in behaviour.

mod common;

use common::{CHUNK, Driver, handle, pipe, statement};
use vdi_model::call::Call;
use vdi_model::fault::Fault;
use vdi_model::msg::Timeout;
use vdi_model::outcome::{FailReason, Outcome, Status};
use vdi_model::programs::{ClientSpec, Operation};
use vdi_model::server::DevState;
use vdi_model::statement::{ServerPlan, StatementKind};
use vdi_model::trace::Trace;
use vdi_sim::simulate;
use vdi_sim::world::{End, RunResult, WorldConfig};
use vdi_spec::id;
use vdi_spec::{Hresult, TransferOptions};

const DATA: u64 = 4 * CHUNK;

fn has_msg(o: &Outcome, number: u32, text: &str) -> bool {
    o.messages
        .iter()
        .any(|m| m.number == number && m.text.contains(text))
}

fn messages(o: &Outcome) -> String {
    o.messages
        .iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every line of the trace is one JSON object with the canonical columns,
/// and the hash of the text is the trace's hash.
fn check_trace(r: &RunResult) -> String {
    let text = r.trace.to_jsonl();
    assert!(!r.trace.truncated());
    assert_eq!(text.lines().count() as u64, r.trace.len());
    assert_eq!(vdi_model::trace::hash_text(&text), r.trace.hash());
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        for key in ["seq", "t", "who", "what", "detail"] {
            assert!(v.get(key).is_some(), "{key} missing in {line}");
        }
    }
    assert!(
        text.lines().count() < 400,
        "snapshot too long to read: {} lines",
        text.lines().count()
    );
    text
}

/// Scenario 1 — Close with devices still open. The client creates a
/// 2-device set, starts a BACKUP, configures, opens both devices, handles a
/// command on each, then calls Close: Close returns VD_E_OPEN, triggers an
/// internal SignalAbort and still releases the set (→ DNE); the server sees
/// the abort (outstanding commands complete with ERROR_OPERATION_ABORTED)
/// and the statement fails with 18210 (995) and 3013.
///
/// Clauses: `close.devices-open`, `table.close.active`,
/// `abort.client-signal`, `signal-abort.effects`, `abort.statement-fails`,
/// `server.outcome-messages`, `open-device.first-is-set-name`,
/// `get-configuration.waits`.
#[test]
fn close_with_devices_open() {
    let mut d = Driver::new(WorldConfig::new(11), Trace::recording());
    let ctl = d.w.add_thread("ctl", None);
    let dev0 = d.w.add_thread("dev0", Some(0));
    let dev1 = d.w.add_thread("dev1", Some(1));

    let r = d.create(ctl, "seed-close", pipe(2));
    assert_eq!((r.code, r.clause), (Hresult::NOERROR, Some(id::CREATE_OK)));
    d.w.send_statement(statement(
        StatementKind::BackupDatabase,
        "seed-close",
        2,
        DATA,
    ));
    let r = d.get_configuration(ctl);
    assert_eq!(
        (r.code, r.clause),
        (Hresult::NOERROR, Some(id::GET_CONFIGURATION_WAITS))
    );
    let r0 = d.open(ctl, "seed-close");
    assert_eq!(
        (r0.code, r0.clause),
        (Hresult::NOERROR, Some(id::OPEN_DEVICE_FIRST_IS_SET_NAME))
    );
    let r1 = d.open(ctl, "seed-close-dev1");
    assert_eq!(
        (r1.code, r1.clause),
        (Hresult::NOERROR, Some(id::OPEN_DEVICE_OK))
    );
    let (h0, h1) = (handle(&r0), handle(&r1));

    // A couple of commands: one Write on each device.
    for (t, h) in [(dev0, h0), (dev1, h1)] {
        let g = d.get_command(t, h);
        assert_eq!(g.code, Hresult::NOERROR);
        let c = common::command(&g);
        assert_eq!(c.code, vdi_spec::CommandCode::Write);
        assert_eq!(d.perform(t, h, c).code, Hresult::NOERROR);
    }

    let r = d.call(ctl, Call::Close);
    assert_eq!(
        (r.code, r.clause),
        (Hresult::VD_E_OPEN, Some(id::CLOSE_DEVICES_OPEN)),
        "Close with devices open returns VD_E_OPEN"
    );
    // Released: the old handles are dead.
    let g = d.get_command(dev0, h0);
    assert_eq!(
        (g.code, g.clause),
        (Hresult::VD_E_PROTOCOL, Some(id::CLOSE_INVALIDATES_DEVICES))
    );

    let o =
        d.w.wait_statement(Timeout::Infinite)
            .expect("the statement ends")
            .expect("an outcome");
    assert_eq!(o.status, Status::Failed);
    assert_eq!(o.reason, Some(FailReason::ClientAbort));
    assert!(
        has_msg(&o, 18210, "Operating system error 995"),
        "{}",
        messages(&o)
    );
    assert!(has_msg(
        &o,
        3013,
        "BACKUP DATABASE is terminating abnormally"
    ));
    assert_eq!(o.messages.last().map(|m| m.number), Some(3013));

    let r = d.w.finish_driven();
    assert_eq!(r.end, End::Finished);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(
        r.server_devices
            .iter()
            .all(|s| s.state == DevState::Aborted),
        "{:?}",
        r.server_devices
    );
    let text = check_trace(&r);
    assert!(
        text.contains("\"what\":\"ClientAbort\""),
        "the server saw the abort"
    );
    assert!(text.contains("ERROR_OPERATION_ABORTED (995) server-side"));
    insta::assert_snapshot!(text);
}

/// A small backup/restore client for the abnormal-termination scenarios.
fn spec(operation: Operation, devices: u16) -> ClientSpec {
    ClientSpec {
        operation,
        devices,
        set_name: "seed".into(),
        options: TransferOptions::default(),
        plan: ServerPlan {
            data_bytes: DATA,
            ..ServerPlan::default()
        },
        ..ClientSpec::default()
    }
}

fn run_with(spec: &ClientSpec, plan: &str, seed: u64) -> RunResult {
    let mut cfg = WorldConfig::new(seed);
    cfg.faults = simulate::fault_plan(plan, spec, seed).expect("a named plan");
    simulate::simulate(spec, cfg, Trace::recording())
}

/// Scenario 2a — the client calls SignalAbort mid-backup (device 0's third
/// command). The set enters Abort; every device thread's next call returns
/// VD_E_ABORT; the server completes what was outstanding with
/// ERROR_OPERATION_ABORTED and fails the statement with 18210 (995) and 3013.
///
/// Clauses: `abort.client-signal`, `signal-abort.ok`, `signal-abort.effects`,
/// `get-command.abort`, `abort.only-close`, `abort.statement-fails`,
/// `close.wait-for-close` (the client closes without waiting for VD_E_CLOSE).
#[test]
fn abnormal_client_signal_abort_mid_backup() {
    let s = spec(Operation::Backup, 2);
    let r = run_with(&s, "client-abort", 21);
    assert_eq!(r.end, End::Finished);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.faults_fired, vec!["client-signal-abort"]);
    assert_eq!(r.statements.len(), 1);
    let o = &r.statements[0].1;
    assert_eq!(o.status, Status::Failed);
    assert_eq!(o.reason, Some(FailReason::ClientAbort));
    assert!(
        has_msg(o, 18210, "Operating system error 995"),
        "{}",
        messages(o)
    );
    assert!(has_msg(
        o,
        3013,
        "BACKUP DATABASE is terminating abnormally"
    ));
    for (k, dev) in r.client.devices.iter().enumerate() {
        assert_eq!(dev.end, Some(Hresult::VD_E_ABORT), "dev{k}");
    }
    assert!(
        r.server_devices
            .iter()
            .all(|d| d.state == DevState::Aborted)
    );
    assert_eq!(r.client.believes_success, Some(false));
    insta::assert_snapshot!(check_trace(&r));
}

/// Scenario 2b — the server aborts mid-restore (KILL: a server SignalAbort
/// on the last device's third command; reads of 32 KiB, four per device). The client's blocked and later
/// calls return VD_E_ABORT; the server completes its outstanding reads with
/// ERROR_OPERATION_ABORTED (995) itself; the statement fails with 3204 and
/// 3013.
///
/// Clauses: `abort.server-signal`, `abort.no-commands-after`,
/// `signal-abort.effects`, `get-command.abort`, `complete-command.abort`,
/// `abort.statement-fails`, `close.wait-for-close` (in Abort, Close follows
/// at once and returns NOERROR).
#[test]
fn abnormal_server_abort_mid_restore() {
    let mut s = spec(Operation::Restore, 2);
    s.plan.read_sizes = vdi_model::statement::ReadSizes::Fixed(32 * 1024);
    let r = run_with(&s, "server-abort", 22);
    assert_eq!(r.end, End::Finished);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.faults_fired, vec!["server-signal-abort"]);
    let o = &r.statements[0].1;
    assert_eq!(r.statements[0].0.kind, StatementKind::RestoreDatabase);
    assert_eq!(o.status, Status::Failed);
    assert_eq!(o.reason, Some(FailReason::ServerAbort));
    assert!(has_msg(o, 3204, "aborted"), "{}", messages(o));
    assert!(has_msg(
        o,
        3013,
        "RESTORE DATABASE is terminating abnormally"
    ));
    for (k, dev) in r.client.devices.iter().enumerate() {
        assert_eq!(dev.end, Some(Hresult::VD_E_ABORT), "dev{k}");
    }
    assert!(
        r.server_devices
            .iter()
            .all(|d| d.state == DevState::Aborted)
    );
    let text = check_trace(&r);
    assert!(
        text.contains("ERROR_OPERATION_ABORTED (995) server-side"),
        "the server completes its outstanding reads with 995"
    );
    assert!(text.contains("\"clause\":\"abort.server-signal\""));
    insta::assert_snapshot!(text);
}

/// Scenario 2c — the client process dies mid-backup (device 0's third
/// command). VDI detects it and aborts the set: the server's outstanding
/// I/O completes with ERROR_OPERATION_ABORTED and the statement fails with
/// 18210 (995) and 3013.
///
/// Clauses: `abort.client-death`, `abort.statement-fails`,
/// `signal-abort.effects`.
#[test]
fn abnormal_client_death() {
    let s = spec(Operation::Backup, 2);
    let r = run_with(&s, "client-death", 23);
    assert_eq!(r.end, End::Finished);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.faults_fired, vec!["client-death"]);
    let o = &r.statements[0].1;
    assert_eq!(o.status, Status::Failed);
    assert_eq!(o.reason, Some(FailReason::ClientAbort));
    assert!(
        has_msg(o, 18210, "Operating system error 995"),
        "{}",
        messages(o)
    );
    assert!(has_msg(
        o,
        3013,
        "BACKUP DATABASE is terminating abnormally"
    ));
    // The process is gone: its threads saw nothing more, the server's
    // devices are aborted.
    assert!(
        r.server_devices
            .iter()
            .all(|d| d.state == DevState::Aborted)
    );
    assert_eq!(r.client.believes_success, None);
    let text = check_trace(&r);
    assert!(text.contains("\"what\":\"ClientDied\""));
    insta::assert_snapshot!(text);
}

/// Scenario 3 — reuse after Close. Create → BACKUP → GetConfiguration →
/// OpenDevice → the device loop until VD_E_CLOSE (→ NormallyTerminated) →
/// Close returns NOERROR → Create again on the same object and name
/// succeeds (NOERROR, `close.reuse`) → the old device handle is refused with
/// the profile's use-after-close code.
///
/// Clauses: `close.reuse`, `close.invalidates-devices`, `close.all-finished`,
/// `term.normally-terminated`, `term.close-device`, `term.backup-sequence`,
/// `table.create.dne`.
#[test]
fn reuse_after_close() {
    let cfg = WorldConfig::new(31);
    let use_after_close = cfg.profile.use_after_close_code;
    let mut d = Driver::new(cfg, Trace::recording());
    let ctl = d.w.add_thread("ctl", None);
    let dev0 = d.w.add_thread("dev0", Some(0));

    let r = d.create(ctl, "seed-reuse", pipe(1));
    assert_eq!((r.code, r.clause), (Hresult::NOERROR, Some(id::CREATE_OK)));
    d.w.send_statement(statement(
        StatementKind::BackupDatabase,
        "seed-reuse",
        1,
        DATA,
    ));
    assert_eq!(d.get_configuration(ctl).code, Hresult::NOERROR);
    let h = handle(&d.open(ctl, "seed-reuse"));
    assert_eq!(d.serve(dev0, h), Hresult::VD_E_CLOSE);

    let r = d.call(ctl, Call::Close);
    assert_eq!(
        (r.code, r.clause),
        (Hresult::NOERROR, Some(id::CLOSE_ALL_FINISHED))
    );
    let o =
        d.w.wait_statement(Timeout::Infinite)
            .expect("ends")
            .expect("an outcome");
    assert_eq!(o.status, Status::Succeeded, "{}", messages(&o));
    assert!(has_msg(&o, 3014, "BACKUP DATABASE successfully processed"));
    assert_eq!(
        o.bytes,
        DATA + vdi_model::media::HEADER_BYTES,
        "the header and the data"
    );

    let r = d.create(ctl, "seed-reuse", pipe(1));
    assert_eq!(
        (r.code, r.clause),
        (Hresult::NOERROR, Some(id::CLOSE_REUSE)),
        "Create again on the same object after Close"
    );
    let g = d.get_command(dev0, h);
    assert_eq!(
        (g.code, g.clause),
        (use_after_close, Some(id::CLOSE_INVALIDATES_DEVICES)),
        "a device handle of the closed set is refused"
    );
    let r = d.call(ctl, Call::Close);
    assert_eq!(
        (r.code, r.clause),
        (Hresult::NOERROR, Some(id::TABLE_CLOSE_CONFIGURABLE))
    );

    let r = d.w.finish_driven();
    assert_eq!(r.end, End::Finished);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(
        r.server_devices.iter().all(
            |s| s.state == DevState::Closed && s.bytes == DATA + vdi_model::media::HEADER_BYTES
        )
    );
    insta::assert_snapshot!(check_trace(&r));
}

/// The fault can also be injected by hand through the driven API
/// (`World::inject`): a server SignalAbort while device 0 waits in
/// GetCommand wakes it with VD_E_ABORT.
///
/// Clauses: `abort.server-signal`, `get-command.abort`,
/// `get-configuration.abort`, `open-device.abort`, `abort.only-close`.
#[test]
fn injected_server_abort_wakes_blocked_get_command() {
    let mut d = Driver::new(WorldConfig::new(12), Trace::hashing());
    let ctl = d.w.add_thread("ctl", None);
    let dev0 = d.w.add_thread("dev0", Some(0));
    d.create(ctl, "seed-inject", pipe(2));
    d.w.send_statement(statement(
        StatementKind::BackupDatabase,
        "seed-inject",
        2,
        DATA,
    ));
    assert_eq!(d.get_configuration(ctl).code, Hresult::NOERROR);
    let h0 = handle(&d.open(ctl, "seed-inject"));
    // Let the server's first commands arrive, then take every command of
    // device 0 without completing it.
    d.w.sleep(100).expect("sleeps");
    loop {
        d.w.start_call(
            dev0,
            Call::GetCommand {
                dev: h0,
                timeout: Timeout::Ms(0),
            },
        );
        let g = d.w.wait_call(dev0).expect("returns");
        if g.code != Hresult::NOERROR {
            assert_eq!(g.code, Hresult::VD_E_TIMEOUT);
            break;
        }
    }
    d.w.start_call(
        dev0,
        Call::GetCommand {
            dev: h0,
            timeout: Timeout::Infinite,
        },
    );
    d.w.inject(Fault::ServerSignalAbort);
    let g = d.w.wait_call(dev0).expect("the blocked call returns");
    assert_eq!(
        (g.code, g.clause),
        (Hresult::VD_E_ABORT, Some(id::GET_COMMAND_ABORT))
    );
    let r = d.open(ctl, "seed-inject-dev1");
    assert_eq!(
        (r.code, r.clause),
        (Hresult::VD_E_ABORT, Some(id::OPEN_DEVICE_ABORT))
    );
    let r = d.get_configuration(ctl);
    assert_eq!(
        (r.code, r.clause),
        (Hresult::VD_E_ABORT, Some(id::GET_CONFIGURATION_ABORT))
    );
    let r = d.call(ctl, Call::Close);
    assert_eq!(r.code, Hresult::NOERROR, "only Close is useful, and works");
    let o = d.w.wait_statement(Timeout::Infinite).unwrap().unwrap();
    assert_eq!(o.reason, Some(FailReason::ServerAbort));
    let r = d.w.finish_driven();
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}
