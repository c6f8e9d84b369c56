//! The judge's parts on hand-written recordings.

use super::parse::{self, Recording};
use super::{infer, outcome_of, server};
use vdi_model::calllog::Api;
use vdi_model::outcome::{FailReason, Status};
use vdi_spec::{ClientState, Hresult, Profile, TableMethod, id};

const HEADER: &str = r#"{"rec":"header","format":"vdisim-recording","v":1,"pid":7,"unix_ms":1000,"time_scale":10,"digest":"none","real":"/x","recorder":"0.1.0"}"#;

/// A recording of `calls`: (method, extra JSON fields, ret), one thread,
/// in order, 1 ms apart.
fn rec(calls: &[(&str, &str, u32)]) -> Recording {
    let mut text = format!("{HEADER}\n");
    for (i, (m, extra, ret)) in calls.iter().enumerate() {
        let seq = i + 1;
        let sep = if extra.is_empty() { "" } else { "," };
        text.push_str(&format!(
            r#"{{"rec":"call","pid":7,"tid":7,"thread":1,"seq":{seq},"after":{},"t0_us":{},"t1_us":{},"method":"{m}","obj":1,"inc":1{sep}{extra},"ret":{ret}}}"#,
            seq - 1,
            seq * 1000,
            seq * 1000 + 500,
        ));
        text.push('\n');
    }
    parse::read(text.as_bytes(), "test").unwrap()
}

const OK: u32 = 0;
const CLOSE: u32 = Hresult::VD_E_CLOSE.0;
const ABORT: u32 = Hresult::VD_E_ABORT.0;
const OPEN: u32 = Hresult::VD_E_OPEN.0;
const TIMEOUT: u32 = Hresult::VD_E_TIMEOUT.0;

fn setup() -> Vec<(&'static str, &'static str, u32)> {
    vec![
        (
            "Create",
            r#""name":"s","config":{"deviceCount":2,"serverTimeOut":1000}"#,
            OK,
        ),
        (
            "GetConfiguration",
            r#""timeout":-1,"config":{"deviceCount":2,"serverTimeOut":1000}"#,
            OK,
        ),
        ("OpenDevice", r#""name":"s","dev":0"#, OK),
        ("OpenDevice", r#""name":"s2","dev":1"#, OK),
    ]
}

#[test]
fn the_call_log_keeps_what_the_obligations_read() {
    let mut calls = setup();
    calls.push((
        "GetCommand",
        r#""dev":0,"timeout":-5,"cmd":{"id":1,"code":2,"size":512,"position":0}"#,
        OK,
    ));
    calls.push(("RegisterDeviceClosed", "", OK));
    calls.push(("Destruct", "", OK));
    let r = rec(&calls);
    let log = r.call_log();
    assert_eq!(log.len(), 6, "RegisterDeviceClosed is left out: {log:?}");
    let get = &log[4];
    assert_eq!(get.method, Api::GetCommand);
    assert_eq!(
        get.args.timeout.unwrap().ms,
        None,
        "a negative time_t waits forever"
    );
    assert_eq!(get.fetched().unwrap().name, "VDC_Write");
    // 5000 µs at time scale 10.
    assert_eq!(get.start_ms, 50);
    assert_eq!(log[5].method, Api::Destroy, "destroyed with a live set");
    assert_eq!(log[3].device(), Some(1));
    assert_eq!(r.log_ms_at(7, 1_250), Some(2_500));

    // After Close the destructor is no Destroy.
    let mut calls = setup();
    calls.push(("Close", "", OPEN));
    calls.push(("Destruct", "", OK));
    let log = rec(&calls).call_log();
    assert!(log.iter().all(|c| c.method != Api::Destroy), "{log:?}");
}

#[test]
fn a_profile_choice_is_named_and_compared_with_the_default() {
    let mut calls = setup();
    calls.push(("GetCommand", r#""dev":0,"timeout":10"#, CLOSE));
    calls.push(("Close", "", OPEN));
    let log = rec(&calls).call_log();
    let f = server::check(&log, &Profile::default());
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        f[0].profile,
        Some(("close-with-open-devices", "vd-e-open".to_string()))
    );
    assert!(f[0].agrees, "the default profile answers VD_E_OPEN");
    assert_eq!(
        f[0].clause,
        vdi_spec::tables::client_cell(TableMethod::Close, ClientState::Active)
            .clause
            .as_str()
    );

    let mut calls = setup();
    calls.push(("Close", "", OK));
    let f = server::check(&rec(&calls).call_log(), &Profile::default());
    assert!(!f[0].agrees, "{f:?}");
    assert_eq!(
        f[0].profile,
        Some(("close-with-open-devices", "noerror".to_string()))
    );
}

#[test]
fn commands_after_an_abort_or_a_close_are_deviations() {
    let mut calls = setup();
    calls.push(("GetCommand", r#""dev":1,"timeout":10"#, ABORT));
    calls.push((
        "GetCommand",
        r#""dev":0,"timeout":10,"cmd":{"id":1,"code":2,"size":512,"position":0}"#,
        OK,
    ));
    let f = server::check(&rec(&calls).call_log(), &Profile::default());
    assert!(
        f.iter()
            .any(|x| x.clause == id::ABORT_NO_COMMANDS_AFTER.as_str()),
        "{f:?}"
    );

    let mut calls = setup();
    calls.push(("GetCommand", r#""dev":1,"timeout":10"#, CLOSE));
    calls.push((
        "GetCommand",
        r#""dev":1,"timeout":10,"cmd":{"id":1,"code":2,"size":512,"position":0}"#,
        OK,
    ));
    let f = server::check(&rec(&calls).call_log(), &Profile::default());
    assert!(
        f.iter()
            .any(|x| x.clause == id::GET_COMMAND_AFTER_DEVICE_CLOSED.as_str() && !x.agrees),
        "{f:?}"
    );

    // VDC_Complete to a client that did not request it.
    let mut calls = setup();
    calls.push((
        "GetCommand",
        r#""dev":0,"timeout":10,"cmd":{"id":1,"code":19,"size":0,"position":0}"#,
        OK,
    ));
    let f = server::check(&rec(&calls).call_log(), &Profile::default());
    assert!(
        f.iter()
            .any(|x| x.clause == id::COMPLETE_NEVER_UNREQUESTED.as_str()),
        "{f:?}"
    );

    // A clean run has nothing to say.
    let mut calls = setup();
    calls.push(("GetCommand", r#""dev":0,"timeout":10"#, CLOSE));
    calls.push(("GetCommand", r#""dev":1,"timeout":10"#, CLOSE));
    calls.push(("Close", "", OK));
    let f = server::check(&rec(&calls).call_log(), &Profile::default());
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn reasons_are_inferred_from_evidence_only() {
    // The program's own SignalAbort.
    let mut calls = setup();
    calls.push(("SignalAbort", "", OK));
    calls.push(("Close", "", OK));
    assert_eq!(
        infer::reason(&rec(&calls).call_log()),
        Some(FailReason::ClientAbort)
    );

    // A command held past serverTimeOut (1000 virtual ms = 100 ms real at
    // scale 10), then VD_E_ABORT: the watchdog.
    let mut calls = setup();
    calls.push((
        "GetCommand",
        r#""dev":0,"timeout":10,"cmd":{"id":1,"code":2,"size":512,"position":0}"#,
        OK,
    ));
    for _ in 0..120 {
        calls.push(("GetCommand", r#""dev":1,"timeout":10"#, TIMEOUT));
    }
    calls.push(("GetCommand", r#""dev":1,"timeout":10"#, ABORT));
    assert_eq!(
        infer::reason(&rec(&calls).call_log()),
        Some(FailReason::Watchdog)
    );

    // An abort with nothing held: unknown.
    let mut calls = setup();
    calls.push(("GetCommand", r#""dev":1,"timeout":10"#, ABORT));
    assert_eq!(infer::reason(&rec(&calls).call_log()), None);
}

#[test]
fn outcomes_keep_every_message() {
    let o = outcome_of(
        "Msg 3201, Level 16, State 1: Cannot open backup device. Msg 3013, Level 16, State 1: BACKUP DATABASE is terminating abnormally.",
        None,
    )
    .unwrap();
    assert_eq!(o.status, Status::Failed);
    let n: Vec<u32> = o.messages.iter().map(|m| m.number).collect();
    assert_eq!(n, [3201, 3013]);
    assert_eq!(
        o.messages[1].text,
        "BACKUP DATABASE is terminating abnormally."
    );
    assert!(outcome_of(" Success ", None).unwrap().succeeded());
    assert!(outcome_of("it failed", None).is_err());
}
