//! The harness control API (`vdisim_harness_*`): a case is reset, a set
//! created through the library waits for a statement, the statement runs a
//! backup through real buffers, the outcome and the observation come back
//! as JSON through the exported C functions.

use sqlvdi::SetCore;
use sqlvdi::harness;
use std::ffi::CString;
use vdi_host::contract::{CaseSetup as HarnessSetup, Observation};
use vdi_host::harness::CaseControl;
use vdi_host::runtime::CreateKind;
use vdi_model::msg::Timeout;
use vdi_model::outcome::{Outcome, Status};
use vdi_model::statement::{ServerPlan, Statement, StatementKind};
use vdi_spec::id;
use vdi_spec::{CommandCode, Features, Hresult, TransferOptions, VdConfig, Win32};

fn statement(set: &str) -> Statement {
    Statement {
        kind: StatementKind::BackupDatabase,
        database: "hx".into(),
        devices: vec![set.to_string()],
        options: TransferOptions {
            block_size: 512,
            max_transfer_size: 65536,
            buffer_count: None,
        },
        plan: ServerPlan {
            data_bytes: 64 * 1024,
            ..ServerPlan::default()
        },
    }
}

fn cases() -> &'static dyn CaseControl {
    vdi_host::mode::cases().expect("harness cases in process")
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn read_json(f: impl Fn(*mut std::ffi::c_char, usize, *mut usize) -> i32) -> (i32, String) {
    let mut needed = 0usize;
    // A too-small buffer first: the size comes back in `needed`.
    let rc = f(std::ptr::null_mut(), 0, &mut needed);
    assert!(rc == harness::ERR_BUFFER || rc == harness::OK || rc == harness::TIMED_OUT);
    let mut buf = vec![0u8; needed.max(1)];
    let rc = f(buf.as_mut_ptr().cast(), buf.len(), &mut needed);
    let n = buf.iter().position(|b| *b == 0).unwrap();
    (rc, String::from_utf8(buf[..n].to_vec()).unwrap())
}

/// One test function: the harness is process-global.
#[test]
fn harness_round_trip_and_errors() {
    // Bad JSON and no case.
    // SAFETY: NUL-terminated strings alive for each call.
    unsafe {
        assert_eq!(
            harness::vdisim_harness_reset(std::ptr::null()),
            harness::ERR_JSON
        );
        assert_eq!(
            harness::vdisim_harness_reset(c("{nope").as_ptr()),
            harness::ERR_JSON
        );
        assert_eq!(
            harness::vdisim_harness_start_statement(c("{}").as_ptr()),
            harness::ERR_JSON
        );
    }
    let setup = serde_json::to_string(&HarnessSetup::default()).unwrap();
    // SAFETY: as above.
    assert_eq!(
        unsafe { harness::vdisim_harness_reset(c(&setup).as_ptr()) },
        harness::OK
    );

    // A set waits for its statement (no plan file).
    let name = format!("hx-{}", std::process::id());
    let set = SetCore::new();
    let cfg = VdConfig::client(1, Features::LikePipe);
    assert_eq!(
        set.create(CreateKind::Create, &name, &cfg),
        Hresult::NOERROR
    );
    assert_eq!(
        set.get_configuration(Timeout::Ms(50)).unwrap_err(),
        Hresult::VD_E_TIMEOUT
    );
    let j = serde_json::to_string(&statement(&name)).unwrap();
    // SAFETY: as above.
    assert_eq!(
        unsafe { harness::vdisim_harness_start_statement(c(&j).as_ptr()) },
        harness::OK
    );
    // A client-side fault is refused with its own code.
    // SAFETY: as above.
    assert_eq!(
        unsafe { harness::vdisim_harness_event(c(r#"{"fault":"client-death"}"#).as_ptr()) },
        harness::ERR_UNSUPPORTED
    );
    set.get_configuration(Timeout::Ms(10_000)).unwrap();
    let dev = set.open_device(&name).unwrap();
    let mut writes = 0;
    loop {
        let p = match dev.get_command(Timeout::Ms(10_000)) {
            Ok(p) => p,
            Err(code) => {
                assert_eq!(code, Hresult::VD_E_CLOSE);
                break;
            }
        };
        // SAFETY: a live block the library handed out.
        let b = unsafe { p.read() };
        if b.command_code == CommandCode::Write as u32 {
            writes += 1;
        }
        let r = dev.complete_command(
            p as usize,
            Win32::ERROR_SUCCESS.0,
            u64::from(b.size),
            b.position,
        );
        assert_eq!(r, Hresult::NOERROR);
    }
    assert!(writes > 0);
    assert_eq!(set.close(), Hresult::NOERROR);
    let (rc, text) = read_json(|b, l, n| {
        // SAFETY: `b` holds `l` bytes (or is null with l = 0); `n` writable.
        unsafe { harness::vdisim_harness_wait_statement(10_000, b, l, n) }
    });
    assert_eq!(rc, harness::OK, "{text}");
    let o: Outcome = serde_json::from_str(&text).unwrap();
    assert_eq!(o.status, Status::Succeeded, "{o:?}");
    let (rc, text) = read_json(|b, l, n| {
        // SAFETY: as above.
        unsafe { harness::vdisim_harness_finish(b, l, n) }
    });
    assert_eq!(rc, harness::OK);
    let obs: Observation = serde_json::from_str(&text).unwrap();
    assert_eq!(obs.statements.len(), 1);
    assert_eq!(obs.statements[0].1.status, Status::Succeeded);
    assert!(obs.idle);
    assert_eq!(obs.devices.len(), 1);
    assert!(obs.devices[0].bytes >= 64 * 1024);
    assert!(
        obs.clauses.contains_key(id::CREATE_OK.as_str()),
        "{:?}",
        obs.clauses
    );
    drop(set);

    // A statement naming no live set fails as open-missing-set says.
    cases().reset(HarnessSetup::default()).unwrap();
    cases().start_statement(statement("hx-nobody")).unwrap();
    let o = cases()
        .wait_statement(Some(10_000))
        .unwrap()
        .expect("final");
    assert_eq!(o.status, Status::Failed);
    let obs = cases().finish(std::time::Duration::from_secs(1)).unwrap();
    assert!(
        obs.clauses
            .contains_key(id::SERVER_OPEN_MISSING_SET.as_str()),
        "{:?}",
        obs.clauses
    );

    // A scaled case: a 5 s timeout elapses on the case's clock (virtual
    // ms), and the client's death fails the statement.
    cases()
        .reset(HarnessSetup {
            time_scale: 1000,
            ..HarnessSetup::default()
        })
        .unwrap();
    let name = format!("hx-scaled-{}", std::process::id());
    let set = SetCore::new();
    assert_eq!(
        set.create(CreateKind::Create, &name, &cfg),
        Hresult::NOERROR
    );
    assert_eq!(
        set.get_configuration(Timeout::Ms(5_000)).unwrap_err(),
        Hresult::VD_E_TIMEOUT
    );
    assert!(cases().now_ms().unwrap() >= 5_000, "the scaled clock ran");
    cases().start_statement(statement(&name)).unwrap();
    set.get_configuration(Timeout::Ms(10_000_000)).unwrap();
    let dev = set.open_device(&name).unwrap();
    let p = dev.get_command(Timeout::Ms(10_000_000)).unwrap();
    assert_ne!(p as usize, 0);
    assert_eq!(harness::vdisim_harness_client_death(), harness::OK);
    let o = cases()
        .wait_statement(Some(10_000_000))
        .unwrap()
        .expect("final");
    assert_eq!(o.status, Status::Failed, "{o:?}");
    let obs = cases().finish(std::time::Duration::from_secs(1)).unwrap();
    assert!(
        obs.clauses.contains_key(id::ABORT_CLIENT_DEATH.as_str()),
        "{:?}",
        obs.clauses
    );
    assert!(obs.elapsed_ms >= 5_000, "elapsed is virtual");
    drop(dev);
    drop(set);
}
