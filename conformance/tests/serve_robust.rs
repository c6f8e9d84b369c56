//! `vdisim serve` under what real users and hostile peers do: a cancelled
//! statement, a server death, a client connection that goes away, a set
//! name taken by another process, a socket path that holds someone's file,
//! slow and oversized frames, too many connections, sizes beyond the
//! bounds. Each test failed before the behaviour it names was built.

#![cfg(unix)]

#[path = "support/remote_client.rs"]
mod remote_client;
#[path = "support/scratch.rs"]
mod scratch;

use remote_client::*;
use scratch::Scratch;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vdi_host::remote::control::Control;
use vdi_host::remote::wire::{self, Frame, PROTOCOL, Refusal, Request, Response};
use vdi_model::msg::{Timeout, ToClient};
use vdi_spec::profile::Disconnect;
use vdi_spec::{Hresult, Win32};
use vdi_sqlserver::serve::{ServeConfig, ServeError, Server};

fn config(sock: PathBuf) -> ServeConfig {
    let mut cfg = ServeConfig::new(sock);
    cfg.databases = vec![("sales".into(), 8 * 65536)];
    cfg
}

/// A raw control connection: the test writes frames and reads answers
/// itself (to send a Cancel while a batch runs).
fn raw_control(path: &Path) -> UnixStream {
    let mut s = UnixStream::connect(path).unwrap();
    wire::write_frame(
        &mut s,
        &Frame::HelloControl {
            protocol: PROTOCOL,
            client: "test".into(),
        },
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

fn send_sql(s: &mut UnixStream, text: &str) {
    wire::write_frame(
        s,
        &Frame::Request(Request::Sql {
            text: text.into(),
            database: None,
            first_line: 1,
        }),
    )
    .unwrap();
}

fn numbers(messages: &[wire::LineMessage]) -> Vec<u32> {
    messages.iter().map(|m| m.message.number).collect()
}

/// Clause `abort.attention`: a Cancel on the connection running a BACKUP
/// aborts it (the set gets the abort, the batch ends with Msg 3204 and
/// 3013, answered once with `cancelled`), and no backup is recorded.
#[test]
fn a_cancel_aborts_the_running_backup() {
    let d = Scratch::new("cancel");
    let s = Server::start(config(d.path("s.sock"))).unwrap();
    let (mut set, welcome) = raw_set(s.path(), "cx");
    assert!(
        matches!(welcome, Some(Frame::Welcome { .. })),
        "{welcome:?}"
    );
    let mut ctl = raw_control(s.path());
    send_sql(&mut ctl, "BACKUP DATABASE sales TO VIRTUAL_DEVICE='cx'");
    // The statement runs: the set is configured.
    read_until(&mut set, |f| {
        matches!(
            f,
            Frame::ToClient {
                msg: ToClient::Configured { .. }
            }
        )
    });
    wire::write_frame(&mut ctl, &Frame::Request(Request::Cancel)).unwrap();
    match wire::read_frame(&mut ctl).unwrap() {
        Some(Frame::Response(Response::Sql {
            messages,
            cancelled,
        })) => {
            assert!(cancelled);
            assert_eq!(numbers(&messages), vec![3204, 3013], "{messages:?}");
        }
        other => panic!("{other:?}"),
    }
    read_until(&mut set, |f| {
        matches!(
            f,
            Frame::ToClient {
                msg: ToClient::Abort
            }
        )
    });
    assert_eq!(s.status().backups, 0, "a cancelled backup is not recorded");
    // The connection goes on: the next batch runs.
    send_sql(&mut ctl, "BACKUP DATABASE nowhere TO VIRTUAL_DEVICE='x'");
    match wire::read_frame(&mut ctl).unwrap() {
        Some(Frame::Response(Response::Sql {
            messages,
            cancelled,
        })) => {
            assert!(!cancelled);
            assert_eq!(numbers(&messages), vec![911, 3013]);
        }
        other => panic!("{other:?}"),
    }
}

/// A server death under a statement: the statement's connection is
/// dropped without an answer (never an empty success), the outcome in the
/// trace carries Msg 10054, the client's devices see VD_E_ABORT, and no
/// backup is recorded. The server process itself goes on.
#[test]
fn a_server_death_drops_the_statement_connection() {
    let d = Scratch::new("death");
    let mut cfg = config(d.path("s.sock"));
    cfg.trace = Some(d.path("trace.jsonl"));
    let cx = vdi_model::fault::PlanContext {
        devices: 1,
        longest_timeout_ms: 60_000,
        server_timeout_ms: 60_000,
        family_bytes: 0,
    };
    cfg.faults = vdi_sim::plans::fault_plan("server-death", &cx, 0).unwrap();
    let s = Server::start(cfg).unwrap();
    let set = set_at(s.path());
    assert_eq!(create(&set, "dd", 1), Hresult::NOERROR);
    let path = s.path().to_path_buf();
    let stmt = std::thread::spawn(move || {
        let mut c = Control::connect(&path, "test").unwrap();
        c.request(Request::Sql {
            text: "BACKUP DATABASE sales TO VIRTUAL_DEVICE='dd'".into(),
            database: None,
            first_line: 1,
        })
    });
    let devs = open_all(&set, "dd", 1).unwrap();
    let media = vec![Arc::new(Mutex::new(Vec::new()))];
    let (ends, _) = run_devices(&devs, &media, Sink::Discard);
    assert_eq!(ends, vec![Hresult::VD_E_ABORT]);
    let answer = stmt.join().unwrap();
    let err = answer.expect_err("no answer, the connection is gone");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    set.close();
    let trace = std::fs::read_to_string(d.path("trace.jsonl")).unwrap();
    assert!(trace.contains("\"messages\":[10054]"), "{trace}");
    assert_eq!(s.status().backups, 0);
}

/// Clause `abort.disconnect`: a connection that goes away without a
/// cancel under `disconnect-without-attention = abort` aborts its
/// statement; under the default `run-to-end` the statement completes and
/// its backup is recorded.
#[test]
fn a_connection_that_goes_away_follows_the_profile() {
    for (rule, recorded) in [(Disconnect::Abort, 0), (Disconnect::RunToEnd, 1)] {
        let d = Scratch::new(&format!("disc-{rule:?}"));
        let mut cfg = config(d.path("s.sock"));
        cfg.profile.disconnect_without_attention = rule;
        let s = Server::start(cfg).unwrap();
        let set = set_at(s.path());
        assert_eq!(create(&set, "gone", 1), Hresult::NOERROR);
        let mut ctl = raw_control(s.path());
        send_sql(&mut ctl, "BACKUP DATABASE sales TO VIRTUAL_DEVICE='gone'");
        let devs = open_all(&set, "gone", 1).unwrap();
        // One command in hand, then the connection that ran the BACKUP ends.
        let first = devs[0].get_command(Timeout::Ms(10_000)).unwrap();
        drop(ctl);
        std::thread::sleep(Duration::from_millis(100));
        devs[0].complete(&first, Win32::ERROR_SUCCESS, u64::from(first.size));
        let media = vec![Arc::new(Mutex::new(Vec::new()))];
        let (ends, _) = run_devices(&devs, &media, Sink::Discard);
        set.close();
        let want = if recorded == 1 {
            Hresult::VD_E_CLOSE
        } else {
            Hresult::VD_E_ABORT
        };
        assert_eq!(ends, vec![want], "{rule:?}");
        let t0 = Instant::now();
        while s.status().statements == 0 || (recorded == 1 && s.status().backups == 0) {
            assert!(t0.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(s.status().backups, recorded, "{rule:?}");
    }
}

/// Run by the test below as a second process: creates the set `shared` and
/// holds it until its standard input closes.
#[test]
fn name_holder_child() {
    let Some(path) = std::env::var_os("VDISIM_TEST_NAME_HOLDER") else {
        return;
    };
    let set = set_at(Path::new(&path));
    assert_eq!(create(&set, "shared", 1), Hresult::NOERROR);
    println!("holding");
    let mut rest = String::new();
    let _ = std::io::stdin().read_to_string(&mut rest);
    set.close();
}

/// Clause `create.name-in-use` across processes: while another process
/// holds a live set named `shared`, this process's Create of that name
/// fails with the profile's code (VD_E_BUSY, as within one process), and a
/// raw hello for it is refused without a Welcome, configuration or buffer
/// map. Once the holder closes, the name is free.
#[test]
fn a_live_set_name_belongs_to_its_process() {
    let d = Scratch::new("names");
    let s = Server::start(config(d.path("s.sock"))).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "name_holder_child", "--nocapture"])
        .env("VDISIM_TEST_NAME_HOLDER", s.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !s.status().sets.contains(&"shared".to_string()) {
        assert!(t0.elapsed() < Duration::from_secs(20), "no holder");
        std::thread::sleep(Duration::from_millis(5));
    }
    let set = set_at(s.path());
    assert_eq!(create(&set, "shared", 1), Hresult::VD_E_BUSY);
    // No set: Create again is allowed (the failed one created nothing).
    assert_eq!(create(&set, "mine", 1), Hresult::NOERROR);
    set.close();
    let (_raw, answer) = raw_set(s.path(), "shared");
    match answer {
        Some(Frame::Refused { why, reason }) => {
            assert_eq!(why, Refusal::NameInUse);
            assert!(reason.contains("shared"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let t0 = Instant::now();
    while s.status().sets.contains(&"shared".to_string()) {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    let set = set_at(s.path());
    assert_eq!(create(&set, "shared", 1), Hresult::NOERROR);
    set.close();
}

/// The socket path: an existing regular file is never replaced (its bytes
/// stay), a missing directory is not made, a socket nobody listens on is
/// replaced, a live one is refused.
#[test]
fn the_socket_path_replaces_only_a_dead_socket() {
    let d = Scratch::new("path");
    let file = d.path("precious");
    std::fs::write(&file, b"keep me").unwrap();
    match Server::start(config(file.clone())) {
        Err(ServeError::NotASocket { path }) => assert_eq!(path, file),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a server started on a regular file"),
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    let missing = d.path("no/such/dir/s.sock");
    assert!(matches!(
        Server::start(config(missing.clone())),
        Err(ServeError::NoDirectory { .. })
    ));
    assert!(!d.path("no").exists(), "no directory was made");
    let stale = d.path("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let s = Server::start(config(stale.clone())).unwrap();
    assert!(matches!(
        Server::start(config(stale.clone())),
        Err(ServeError::InUse(_))
    ));
    drop(s);
    assert!(!stale.exists(), "a stopped server removes its socket");
}

/// SIGTERM and SIGINT stop `vdisim serve` and remove its socket.
#[test]
fn a_signal_stops_the_server_and_removes_its_socket() {
    for sig in ["TERM", "INT"] {
        let d = Scratch::new(&format!("sig-{sig}"));
        let sock = d.path("s.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vdisim"))
            .args(["serve", "--ephemeral", "--listen"])
            .arg(&sock)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(&sock);
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let t0 = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("SIG{sig} did not stop the server");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "SIG{sig}: {status:?}");
        assert!(!sock.exists(), "SIG{sig}: the socket is removed");
    }
}

/// A peer that drips its hello, or stops inside a frame, is dropped at the
/// frame deadline; a set frame beyond 64 KiB is refused at once, before
/// its body is read.
#[test]
fn slow_and_oversized_frames_are_dropped() {
    let d = Scratch::new("frames");
    let mut cfg = config(d.path("s.sock"));
    cfg.frame_deadline = Duration::from_millis(300);
    let s = Server::start(cfg).unwrap();
    // Dripping: one byte every 50 ms would take far longer than 300 ms.
    let mut drip = UnixStream::connect(s.path()).unwrap();
    let hello = serde_json::to_vec(&Frame::HelloControl {
        protocol: PROTOCOL,
        client: "x".repeat(200),
    })
    .unwrap();
    let mut bytes = (hello.len() as u32).to_le_bytes().to_vec();
    bytes.extend(hello);
    let t0 = Instant::now();
    let mut sent = 0;
    for b in &bytes {
        if drip.write_all(&[*b]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
        if t0.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    assert!(sent < bytes.len(), "the dripping peer was cut off");
    // Stopped after the control hello, inside a large frame.
    let mut stuck = raw_control(s.path());
    stuck.write_all(&(8u32 << 20).to_le_bytes()).unwrap();
    stuck.write_all(&[b'{'; 1000]).unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 16];
    let n = stuck.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "dropped, not answered");
    assert!(t0.elapsed() < Duration::from_secs(10));
    // A set frame over the cap: the connection ends without its body.
    let (mut set, welcome) = raw_set(s.path(), "big");
    assert!(matches!(welcome, Some(Frame::Welcome { .. })));
    set.write_all(&((wire::MAX_SET_FRAME as u32) + 1).to_le_bytes())
        .unwrap();
    assert_eq!(set.read(&mut buf).unwrap_or(0), 0);
    // The server is well.
    assert!(s.status().sets.is_empty(), "{:?}", s.status().sets);
}

/// Connections beyond `max_connections` are refused with a frame that says
/// why; once connections end there is room again.
#[test]
fn connections_beyond_the_cap_are_refused_with_a_reason() {
    let d = Scratch::new("cap");
    let mut cfg = config(d.path("s.sock"));
    cfg.max_connections = 4;
    let s = Server::start(cfg).unwrap();
    let held: Vec<UnixStream> = (0..4).map(|_| raw_control(s.path())).collect();
    // Wait until the four are being served.
    std::thread::sleep(Duration::from_millis(100));
    let mut extra = UnixStream::connect(s.path()).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    match wire::read_frame(&mut extra).unwrap() {
        Some(Frame::Refused { why, reason }) => {
            assert_eq!(why, Refusal::Busy);
            assert!(reason.contains("--max-connections"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    drop(held);
    let t0 = Instant::now();
    loop {
        let ok = Control::connect(s.path(), "t").and_then(|mut c| c.request(Request::Status));
        if matches!(ok, Ok(Response::Status { .. })) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{ok:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sizes beyond the bounds: a database over 1 TiB is refused at start, a
/// buffer pool over 2 GiB is SQL Server's Msg 701, and `vdisim serve
/// --database` with a wrapping size exits 2 with a message.
#[test]
fn sizes_beyond_the_bounds_are_refused() {
    let d = Scratch::new("bounds");
    let mut cfg = config(d.path("s.sock"));
    cfg.databases = vec![("huge".into(), u64::MAX)];
    match Server::start(cfg) {
        Err(ServeError::Bound(e)) => assert!(e.what.contains("huge"), "{e}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a server with a database of 2^64-1 bytes started"),
    }
    let s = Server::start(config(d.path("s.sock"))).unwrap();
    let mut c = raw_control(s.path());
    send_sql(
        &mut c,
        "BACKUP DATABASE sales TO VIRTUAL_DEVICE='b' WITH MAXTRANSFERSIZE=4194304, BUFFERCOUNT=100000",
    );
    match wire::read_frame(&mut c).unwrap() {
        Some(Frame::Response(Response::Sql { messages, .. })) => {
            assert_eq!(numbers(&messages), vec![701, 3013], "{messages:?}")
        }
        other => panic!("{other:?}"),
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vdisim"))
        .args(["serve", "--ephemeral", "--listen"])
        .arg(d.path("other.sock"))
        .args(["--database", "huge=18446744073709551615"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("huge") && err.contains("1099511627776"),
        "{err}"
    );
    assert!(!d.path("other.sock").exists());
}

/// `vdisim sqlcmd -t 1` against a BACKUP that cannot finish (its set never
/// takes a command): the timeout sends a cancel, the server aborts the
/// statement (the set gets the abort, no backup is recorded), and sqlcmd
/// says the query timed out and exits 1.
#[test]
fn sqlcmd_query_timeout_cancels_the_backup_on_the_server() {
    let d = Scratch::new("sqlcmd-t");
    let s = Server::start(config(d.path("s.sock"))).unwrap();
    let (mut set, welcome) = raw_set(s.path(), "idle");
    assert!(matches!(welcome, Some(Frame::Welcome { .. })));
    let out = Command::new(env!("CARGO_BIN_EXE_vdisim"))
        .args(["sqlcmd", "-S"])
        .arg(s.path())
        .args([
            "-b",
            "-t",
            "1",
            "-Q",
            "BACKUP DATABASE sales TO VIRTUAL_DEVICE='idle'",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Query timeout expired"), "{err}");
    read_until(&mut set, |f| {
        matches!(
            f,
            Frame::ToClient {
                msg: ToClient::Abort
            }
        )
    });
    assert_eq!(s.status().backups, 0);
}

/// A server death under `vdisim sqlcmd -Q "BACKUP ..."` (no `-b`): sqlcmd
/// reports the lost connection and exits 1 — a program that trusts the
/// exit status never records the lost backup as good.
#[test]
fn sqlcmd_reports_a_server_death_and_exits_1() {
    let d = Scratch::new("sqlcmd-death");
    let mut cfg = config(d.path("s.sock"));
    let cx = vdi_model::fault::PlanContext {
        devices: 1,
        longest_timeout_ms: 60_000,
        server_timeout_ms: 60_000,
        family_bytes: 0,
    };
    cfg.faults = vdi_sim::plans::fault_plan("server-death", &cx, 0).unwrap();
    let s = Server::start(cfg).unwrap();
    let set = set_at(s.path());
    assert_eq!(create(&set, "sd", 1), Hresult::NOERROR);
    let sqlcmd = Command::new(env!("CARGO_BIN_EXE_vdisim"))
        .args(["sqlcmd", "-S"])
        .arg(s.path())
        .args(["-Q", "BACKUP DATABASE sales TO VIRTUAL_DEVICE='sd'"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let devs = open_all(&set, "sd", 1).unwrap();
    let media = vec![Arc::new(Mutex::new(Vec::new()))];
    let (ends, _) = run_devices(&devs, &media, Sink::Discard);
    assert_eq!(ends, vec![Hresult::VD_E_ABORT]);
    set.close();
    let out = sqlcmd.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Communication link failure"), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("successfully"),
        "no success line"
    );
    assert_eq!(s.status().backups, 0);
}
