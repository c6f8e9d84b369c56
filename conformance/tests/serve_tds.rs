//! `vdisim serve --tds`: a minimal TDS 7.4 client (`support/tds_client.rs`:
//! plain bytes over a TcpStream, independent of the server's codec) logs in,
//! runs T-SQL and reads the INFO/ERROR tokens and the DONE; a wrong
//! password gets Msg 18456; parameterized statements run as RPCs
//! (sp_executesql, sp_prepexec, sp_execute); an ATTENTION cancels a
//! running BACKUP; hostile bytes close the connection and leave the server
//! serving. A last test runs batches, a parameterized statement and a
//! query timeout through a real driver (python-tds) when one is installed
//! (`SKIPPED:` otherwise).

#![cfg(unix)]

#[path = "support/remote_client.rs"]
mod remote_client;
#[path = "support/scratch.rs"]
mod scratch;
#[path = "support/tds_client.rs"]
mod tds_client;

use remote_client::{raw_set, read_until};
use scratch::Scratch;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use tds_client::*;
use vdi_host::remote::wire::Frame;
use vdi_model::msg::ToClient;
use vdi_sqlserver::serve::{ServeConfig, Server};

fn start(d: &Scratch, tune: impl FnOnce(&mut ServeConfig)) -> (Server, SocketAddr) {
    let mut cfg = ServeConfig::new(d.0.join("s.sock"));
    cfg.databases = vec![("sales".into(), 8 * 65536)];
    cfg.tds = Some("127.0.0.1:0".parse().unwrap());
    cfg.logins = vec![("sa".into(), "Secr3t!".into())];
    tune(&mut cfg);
    let s = Server::start(cfg).expect("server starts");
    let addr = s.tds_addr().expect("TDS is served");
    assert_ne!(addr.port(), 0, "port 0 picks a free port");
    (s, addr)
}

// ----- the tests ---------------------------------------------------------------------------

#[test]
fn a_client_logs_in_and_runs_t_sql() {
    let d = Scratch::new("login");
    let (_s, addr) = start(&d, |_| {});
    let mut c = connect(addr);
    let t = login(&mut c, "SA", "Secr3t!", "sales");
    let env = |kind: u8| {
        t.iter()
            .find_map(|t| match t {
                Tok::Env { kind: k, new, .. } if *k == kind => Some(new.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("ENVCHANGE {kind} in {t:?}"))
    };
    assert_eq!(env(1), utf16("sales"), "database");
    assert_eq!(env(7), vec![0x09, 0x04, 0xD0, 0x00, 0x34], "collation");
    assert_eq!(env(4), utf16("4096"), "packet size");
    assert_eq!(messages(&t), vec![(false, 5701), (false, 5703)]);
    assert!(t.contains(&Tok::LoginAck {
        interface: 1,
        version: 0x7400_0004,
        program: "Microsoft SQL Server".into()
    }));
    assert_eq!(last_done(&t), (0, 0));

    // A statement with no messages: a DONE alone.
    let t = batch(&mut c, "CREATE DATABASE t1");
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(last_done(&t).0, 0);
    // USE: ENVCHANGE database and INFO 5701.
    let t = batch(&mut c, "USE t1");
    assert!(t.contains(&Tok::Env {
        kind: 1,
        new: utf16("t1"),
        old: utf16("sales")
    }));
    assert_eq!(messages(&t), vec![(false, 5701)]);
    // A BACKUP that fails before any device: 3201 then 3013 as ERROR
    // tokens, with the server name and the batch line, and DONE_ERROR.
    let t = batch(&mut c, "\nBACKUP DATABASE sales TO VIRTUAL_DEVICE='nope'");
    assert_eq!(messages(&t), vec![(true, 3201), (true, 3013)], "{t:?}");
    for m in &t[..2] {
        let Tok::Msg {
            class,
            server,
            line,
            state,
            ..
        } = m
        else {
            unreachable!()
        };
        assert_eq!((*class, server.as_str(), *line), (16, "VDISIM", 2));
        assert!(*state >= 1);
    }
    match &t[1] {
        Tok::Msg { text, .. } => assert_eq!(text, "BACKUP DATABASE is terminating abnormally."),
        _ => unreachable!(),
    }
    assert_eq!(last_done(&t).0 & 0x2, 0x2, "DONE_ERROR");
    // What vdisim does not serve gets its error, and the session goes on.
    let t = batch(&mut c, "SELECT * FROM msdb.dbo.backupfile");
    assert_eq!(messages(&t), vec![(true, 50002)]);
    let t = batch(&mut c, "USE sales");
    assert_eq!(last_done(&t).0, 0);
}

#[test]
fn a_wrong_password_gets_18456_and_the_connection_closes() {
    let d = Scratch::new("pw");
    let (_s, addr) = start(&d, |_| {});
    for (user, password) in [("sa", "wrong"), ("nobody", "Secr3t!")] {
        let mut c = connect(addr);
        let t = login(&mut c, user, password, "");
        assert_eq!(
            t[0],
            Tok::Msg {
                error: true,
                number: 18456,
                state: 1,
                class: 14,
                text: format!("Login failed for user '{user}'."),
                server: "VDISIM".into(),
                line: 1,
            }
        );
        assert_eq!(last_done(&t).0, 0x2);
        assert!(read_reply(&mut c).is_none(), "closed after a failed login");
    }
    // An initial database that does not exist: 4060, then 18456.
    let mut c = connect(addr);
    let t = login(&mut c, "sa", "Secr3t!", "nowhere");
    assert_eq!(messages(&t), vec![(true, 4060), (true, 18456)]);
}

/// A raw set connection the server welcomed.
fn welcomed_set(path: &std::path::Path, name: &str) -> UnixStream {
    let (s, answer) = raw_set(path, name);
    assert!(matches!(answer, Some(Frame::Welcome { .. })));
    s
}

/// Clause `abort.attention` over TDS: an ATTENTION while a BACKUP runs
/// aborts it (Msg 3204 and 3013, no backup recorded); the batch's answer
/// comes first, then a separate DONE(DONE_ATTN); the session goes on.
#[test]
fn an_attention_cancels_the_running_backup() {
    let d = Scratch::new("attn");
    let (s, addr) = start(&d, |_| {});
    let mut set = welcomed_set(s.path(), "cx");
    let mut c = logged_in(addr);
    let mut p = vec![
        0x16, 0, 0, 0, 0x12, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    ];
    p.extend(utf16("BACKUP DATABASE sales TO VIRTUAL_DEVICE='cx'"));
    c.write_all(&packets(0x01, &p)).unwrap();
    read_until(&mut set, |f| {
        matches!(
            f,
            Frame::ToClient {
                msg: ToClient::Configured { .. }
            }
        )
    });
    c.write_all(&packets(0x06, &[])).unwrap();
    let (_, _, first) = read_reply(&mut c).expect("the batch's answer");
    let t = tokens(&first);
    assert_eq!(messages(&t), vec![(true, 3204), (true, 3013)], "{t:?}");
    assert_eq!(last_done(&t).0 & 0x20, 0, "the batch's DONE is not the ack");
    let (_, _, ack) = read_reply(&mut c).expect("the acknowledgement");
    assert_eq!(
        tokens(&ack),
        vec![Tok::Done {
            token: 0xFD,
            status: 0x20,
            cur_cmd: 0,
            rows: 0
        }]
    );
    read_until(&mut set, |f| {
        matches!(
            f,
            Frame::ToClient {
                msg: ToClient::Abort
            }
        )
    });
    assert_eq!(s.status().backups, 0, "a cancelled backup is not recorded");
    // An attention with nothing running: the acknowledgement alone.
    c.write_all(&packets(0x06, &[])).unwrap();
    let (_, _, ack) = read_reply(&mut c).unwrap();
    assert_eq!(last_done(&tokens(&ack)), (0x20, 0));
    let t = batch(&mut c, "BACKUP DATABASE nowhere TO VIRTUAL_DEVICE='x'");
    assert_eq!(messages(&t), vec![(true, 911), (true, 3013)]);
}

/// The PRELOGIN ENCRYPTION answer a client offering `enc` gets.
fn encryption_answer(addr: SocketAddr, enc: u8) -> (u8, TcpStream) {
    let mut c = connect(addr);
    c.write_all(&packets(0x12, &prelogin(enc))).unwrap();
    let (_, _, reply) = read_reply(&mut c).unwrap();
    let at = usize::from(u16::from_be_bytes([reply[6], reply[7]]));
    (reply[at], c)
}

/// A server without TLS answers a client that requires encryption
/// ENCRYPT_NOT_SUP and closes the connection: it fails at once, it does
/// not hang. With TLS (the default) such a client is answered ENCRYPT_ON,
/// ENCRYPT_OFF is answered OFF (login-only encryption) and NOT_SUP
/// NOT_SUP; with --tls-required, NOT_SUP is answered REQ and closed. (The
/// TLS handshakes themselves run in serve_tds_drivers.rs, with real
/// drivers.)
#[test]
fn a_client_requiring_encryption_fails_cleanly() {
    let d = Scratch::new("enc");
    let (_s, addr) = start(&d, |cfg| cfg.tls = None);
    for enc in [1u8, 3] {
        let (answer, mut c) = encryption_answer(addr, enc);
        assert_eq!(answer, 2);
        assert!(read_reply(&mut c).is_none(), "closed");
    }
    let d2 = Scratch::new("enc-tls");
    let (_s2, tls) = start(&d2, |_| {});
    for (enc, want) in [(0u8, 0u8), (1, 1), (3, 1), (2, 2)] {
        assert_eq!(encryption_answer(tls, enc).0, want, "client {enc}");
    }
    let d3 = Scratch::new("enc-req");
    let (_s3, req) = start(&d3, |cfg| {
        cfg.tls = Some(vdi_sqlserver::tds::tls::TlsOptions {
            cert_key: None,
            required: true,
        })
    });
    assert_eq!(encryption_answer(req, 0).0, 3);
    let (answer, mut c) = encryption_answer(req, 2);
    assert_eq!(answer, 3);
    assert!(read_reply(&mut c).is_none(), "closed");
    // TDS 8 (a TLS ClientHello first) with a broken hello: closed.
    let mut c = connect(addr);
    c.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .unwrap();
    assert!(read_reply(&mut c).is_none());
}

/// Reads until the server closes the connection; panics if it is still
/// open after 10 s.
fn closed_soon(c: &mut TcpStream) {
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the connection is still open: {e}"),
        }
    }
}

/// A broken TLS handshake (junk records, another message where the
/// handshake belongs, a client that stops in the middle) closes the
/// connection within the frame deadline; the next client logs in.
#[test]
fn a_broken_tls_handshake_closes_the_connection() {
    let d = Scratch::new("badtls");
    let (_s, addr) = start(&d, |c| c.frame_deadline = Duration::from_millis(500));
    let (answer, mut c) = encryption_answer(addr, 1);
    assert_eq!(answer, 1, "ENCRYPT_ON: a TLS handshake is due");
    c.write_all(&packets(0x12, b"\x16\x03\x01\x00\x05junk!"))
        .unwrap();
    closed_soon(&mut c);
    let (_, mut c) = encryption_answer(addr, 1);
    c.write_all(&packets(0x10, &[0u8; 100])).unwrap();
    closed_soon(&mut c);
    let (answer, mut c) = encryption_answer(addr, 0);
    assert_eq!(answer, 0, "ENCRYPT_OFF: login-only TLS");
    closed_soon(&mut c);
    let mut c = connect(addr);
    login(&mut c, "sa", "Secr3t!", "sales");
}

/// Hostile input: bad packet lengths, a LOGIN7 with offsets out of range,
/// junk, a stalled peer, too many connections. Each is closed; the server
/// serves the next client.
#[test]
fn hostile_bytes_close_the_connection_and_the_server_goes_on() {
    let d = Scratch::new("hostile");
    let (_s, addr) = start(&d, |c| {
        c.frame_deadline = Duration::from_millis(500);
        c.max_connections = 4;
    });
    let closed = |bytes: &[u8]| {
        let mut c = connect(addr);
        let _ = c.write_all(bytes);
        let mut rest = Vec::new();
        let t0 = Instant::now();
        let _ = c.read_to_end(&mut rest);
        assert!(t0.elapsed() < Duration::from_secs(10), "closed promptly");
    };
    // A packet length below the header, one above 4096 before login.
    closed(&[0x12, 1, 0, 4, 0, 0, 0, 0]);
    closed(&[0x12, 1, 0x7F, 0xFF, 0, 0, 0, 0]);
    // Not a PRELOGIN first; a PRELOGIN with no terminator.
    closed(&packets(0x10, &login7("sa", "Secr3t!", "")));
    closed(&packets(0x12, &[0x00, 0x00, 0x40, 0x00, 0x06]));
    // A LOGIN7 whose user name points outside the message.
    let mut l = login7("sa", "Secr3t!", "");
    l[40..42].copy_from_slice(&0xFFF0u16.to_le_bytes());
    let mut bytes = packets(0x12, &prelogin(2));
    bytes.extend(packets(0x10, &l));
    closed(&bytes);
    // A peer that stops mid-message is dropped at the deadline.
    let mut c = connect(addr);
    c.write_all(&[0x12, 1, 0, 50, 0, 0]).unwrap();
    let t0 = Instant::now();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "a stalled peer is dropped"
    );
    // A logged-in client that starts a message and stalls.
    let mut c = logged_in(addr);
    c.write_all(&[0x01, 0, 0x10, 0, 0]).unwrap();
    assert!(read_reply(&mut c).is_none());
    // Past the connection limit: refused (closed unanswered). (The
    // connections above are given back first.)
    std::thread::sleep(Duration::from_millis(300));
    let held: Vec<TcpStream> = (0..4).map(|_| logged_in(addr)).collect();
    let mut extra = connect(addr);
    let _ = extra.write_all(&packets(0x12, &prelogin(2)));
    assert!(read_reply(&mut extra).is_none(), "refused past the limit");
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    // The server still serves.
    let mut c = logged_in(addr);
    let t = batch(&mut c, "USE sales");
    assert_eq!(last_done(&t).0, 0);
}

/// Parameterized statements: sp_executesql, sp_prepexec (the handle
/// returned), sp_execute on it, sp_unprepare; an unknown procedure.
#[test]
fn rpc_runs_parameterized_statements() {
    let d = Scratch::new("rpc");
    let (_s, addr) = start(&d, |_| {});
    let mut c = logged_in(addr);
    let stmt = "BACKUP DATABASE sales TO VIRTUAL_DEVICE = @device";
    let t = rpc(
        &mut c,
        10,
        &[
            ("", 0, Param::Text(stmt)),
            ("", 0, Param::Text("@device nvarchar(max)")),
            ("@device", 0, Param::Text("nope")),
        ],
    );
    assert_eq!(messages(&t), vec![(true, 3201), (true, 3013)], "{t:?}");
    match &t[0] {
        Tok::Msg { text, line, .. } => {
            assert!(text.contains("'nope'"), "{text}");
            assert_eq!(*line, 1);
        }
        _ => unreachable!(),
    }
    let n = t.len();
    assert!(matches!(
        t[n - 3],
        Tok::Done {
            token: 0xFF,
            status: 0x3,
            ..
        }
    ));
    assert_eq!(t[n - 2], Tok::ReturnStatus(0));
    assert!(matches!(
        t[n - 1],
        Tok::Done {
            token: 0xFE,
            status: 0x2,
            cur_cmd: 0xE0,
            ..
        }
    ));
    // sp_prepexec: unnamed values, named by the declarations; the handle
    // comes back as a RETURNVALUE.
    let t = rpc(
        &mut c,
        13,
        &[
            ("", 1, Param::Int(None)),
            ("", 0, Param::Text("@P1 nvarchar(max)")),
            ("", 0, Param::Text("CREATE DATABASE @P1")),
        ],
    );
    let handle = t.iter().find_map(|t| match t {
        Tok::ReturnValue(_, h) => Some(*h),
        _ => None,
    });
    let handle = handle.unwrap_or_else(|| panic!("a handle in {t:?}"));
    let t = rpc(
        &mut c,
        12,
        &[
            ("", 0, Param::Int(Some(handle))),
            ("", 0, Param::Text("sales")),
        ],
    );
    assert_eq!(messages(&t), vec![(true, 1801)], "sales exists: {t:?}");
    let t = rpc(&mut c, 15, &[("", 0, Param::Int(Some(handle)))]);
    assert!(t.contains(&Tok::ReturnStatus(0)));
    // An unknown procedure, and the session goes on.
    let t = rpc(&mut c, 2, &[]);
    assert_eq!(messages(&t), vec![(true, 2812)]);
    let t = batch(&mut c, "USE sales");
    assert_eq!(last_done(&t).0, 0);
}

/// The use case: a parameterized BACKUP over TDS (sp_executesql, as
/// products send it) to a VIRTUAL_DEVICE a VDI client streams, answered
/// with SQL Server's INFO 4035 and 3014 and a DONEPROC without error; then
/// a RESTORE in a SQL batch from the same bytes.
#[test]
fn a_backup_and_restore_over_tds_stream_through_a_virtual_device() {
    use remote_client::*;
    use std::sync::{Arc, Mutex};
    let d = Scratch::new("e2e");
    let (s, addr) = start(&d, |_| {});
    let media: Vec<Arc<Mutex<Vec<u8>>>> = vec![Arc::default()];
    let set = set_at(s.path());
    assert_eq!(create(&set, "tb", 1), vdi_spec::Hresult::NOERROR);
    let mut c = logged_in(addr);
    let answer = std::thread::spawn(move || {
        let t = rpc(
            &mut c,
            10,
            &[
                (
                    "",
                    0,
                    Param::Text("BACKUP DATABASE [sales] TO VIRTUAL_DEVICE = @device"),
                ),
                ("", 0, Param::Text("@device nvarchar(max)")),
                ("@device", 0, Param::Text("tb")),
            ],
        );
        (c, t)
    });
    let devs = open_all(&set, "tb", 1).expect("configured and opened");
    let (ends, _) = run_devices(&devs, &media, Sink::Keep);
    assert_eq!(ends, vec![vdi_spec::Hresult::VD_E_CLOSE]);
    set.close();
    let (mut c, t) = answer.join().unwrap();
    assert_eq!(messages(&t), vec![(false, 4035), (false, 3014)], "{t:?}");
    assert!(matches!(
        t.last(),
        Some(Tok::Done {
            token: 0xFE,
            status: 0,
            ..
        })
    ));
    assert_eq!(s.status().backups, 1);
    // RESTORE in a SQL batch.
    let set = set_at(s.path());
    assert_eq!(create(&set, "tr", 1), vdi_spec::Hresult::NOERROR);
    let answer = std::thread::spawn(move || {
        batch(
            &mut c,
            "RESTORE DATABASE sales FROM VIRTUAL_DEVICE='tr' WITH REPLACE",
        )
    });
    let devs = open_all(&set, "tr", 1).expect("configured and opened");
    let (ends, _) = run_devices(&devs, &media, Sink::Keep);
    assert_eq!(ends, vec![vdi_spec::Hresult::VD_E_CLOSE]);
    set.close();
    let t = answer.join().unwrap();
    assert_eq!(messages(&t).last(), Some(&(false, 3014)), "{t:?}");
    assert_eq!(last_done(&t), (0, 0));
}

/// The soft limit on open files of this process (from /proc).
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(1024)
}

/// 1,000 concurrent logins (fewer if the descriptor limit is lower) on a
/// server that serves 64 connections at once: each client is served or
/// refused (closed), none hangs, and the server serves afterwards.
#[test]
fn a_thousand_concurrent_logins() {
    let d = Scratch::new("many");
    let (_s, addr) = start(&d, |c| c.max_connections = 64);
    let n = 1000
        .min(open_files_limit().saturating_sub(300) / 2)
        .max(100);
    let t0 = Instant::now();
    let clients: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(move || -> bool {
                let Ok(mut c) = TcpStream::connect(addr) else {
                    return false;
                };
                c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                if c.write_all(&packets(0x12, &prelogin(2))).is_err()
                    || read_reply(&mut c).is_none()
                {
                    return false;
                }
                let _ = c.write_all(&packets(0x10, &login7("sa", "Secr3t!", "sales")));
                match read_reply(&mut c) {
                    Some((_, _, r)) => tokens(&r).iter().any(|t| matches!(t, Tok::LoginAck { .. })),
                    None => false,
                }
            })
        })
        .collect();
    let served = clients
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    eprintln!(
        "tds: {n} concurrent logins: {served} served, {} refused, {} ms",
        n - served,
        t0.elapsed().as_millis()
    );
    assert!(served >= 1, "some are served");
    assert!(t0.elapsed() < Duration::from_secs(120), "none hangs");
    std::thread::sleep(Duration::from_millis(300));
    let mut c = logged_in(addr);
    assert_eq!(last_done(&batch(&mut c, "USE sales")).0, 0);
}

/// The queries drivers and products send around a backup get result
/// sets: COLMETADATA, ROW, DONE with COUNT and the row count.
#[test]
fn served_queries_get_result_sets() {
    let d = Scratch::new("query");
    let (_s, addr) = start(&d, |_| {});
    let mut c = logged_in(addr);
    let rows = |t: &[Tok]| -> Vec<Vec<Option<String>>> {
        t.iter()
            .filter_map(|t| match t {
                Tok::Row(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    };
    let t = batch(&mut c, "SELECT CAST(@@SPID AS int)");
    assert_eq!(t[0], Tok::Columns(vec![(0x26, String::new())]));
    let spid: i32 = rows(&t)[0][0].as_ref().unwrap().parse().unwrap();
    assert!(spid >= 51);
    assert!(matches!(
        t.last(),
        Some(Tok::Done {
            token: 0xFD,
            status: 0x10,
            cur_cmd: 0xC1,
            rows: 1
        })
    ));
    let t = batch(&mut c, "SELECT name FROM sys.databases");
    assert_eq!(t[0], Tok::Columns(vec![(0xE7, "name".into())]));
    assert_eq!(rows(&t), vec![vec![Some("sales".to_string())]]);
    let t = batch(&mut c, "SELECT SERVERPROPERTY('ProductVersion') AS v");
    assert_eq!(rows(&t), vec![vec![Some("16.0.1000.6".to_string())]]);
    let t = batch(&mut c, "SELECT SERVERPROPERTY('InstanceName')");
    assert_eq!(rows(&t), vec![vec![None]]);
    let t = batch(&mut c, "SELECT DB_NAME()");
    assert_eq!(rows(&t), vec![vec![Some("sales".to_string())]]);
    // Other queries are not served: the parser's error.
    let t = batch(&mut c, "SELECT 1 + 1");
    assert_eq!(messages(&t), vec![(true, 50002)]);
}

/// The address is taken: the error says so.
#[test]
fn a_taken_port_is_reported() {
    let d = Scratch::new("taken");
    let (_s, addr) = start(&d, |_| {});
    let d2 = Scratch::new("taken2");
    let mut cfg = ServeConfig::new(d2.0.join("s.sock"));
    cfg.tds = Some(addr);
    let e = Server::start(cfg).err().expect("the port is taken");
    let text = e.to_string();
    assert!(
        text.contains("is taken") && text.contains("--tds"),
        "{text}"
    );
}

/// A real driver: python-tds (`pip install python-tds`), found through
/// `VDISIM_TDS_PYTHON` (default `python3`). Without it: a loud SKIPPED.
#[test]
fn python_tds_runs_a_batch() {
    let python = std::env::var("VDISIM_TDS_PYTHON").unwrap_or_else(|_| "python3".into());
    let have = std::process::Command::new(&python)
        .args(["-c", "import pytds"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        eprintln!(
            "SKIPPED: python_tds_runs_a_batch: `{python} -c 'import pytds'` failed; install python-tds (pip install python-tds) or point VDISIM_TDS_PYTHON at a python that has it"
        );
        return;
    }
    let d = Scratch::new("pytds");
    let (s, addr) = start(&d, |_| {});
    // A set whose peer never reads: the BACKUP on it runs until cancelled.
    let mut set = welcomed_set(s.path(), "py");
    let script = r#"
import sys, pytds
port = int(sys.argv[1])
c = pytds.connect(server="127.0.0.1", port=port, user="sa", password="Secr3t!",
                  database="sales", autocommit=True, login_timeout=10, timeout=30)
cur = c.cursor()
cur.execute("CREATE DATABASE t1")
cur.execute("USE t1")
try:
    cur.execute("BACKUP DATABASE sales TO VIRTUAL_DEVICE='nope'")
    print("no error")
except pytds.tds_base.OperationalError as e:
    print("error", e.msg_no)
try:
    cur.execute("BACKUP DATABASE sales TO VIRTUAL_DEVICE = %s", ("it's",))
    print("no error")
except pytds.tds_base.OperationalError as e:
    print("parameterized", e.msg_no, "'it''s'" in str(e) or "'it's'" in str(e))
c.close()
try:
    pytds.connect(server="127.0.0.1", port=port, user="sa", password="bad", login_timeout=10)
    print("login ok")
except pytds.tds_base.OperationalError as e:
    print("login error", e.msg_no)
c = pytds.connect(server="127.0.0.1", port=port, user="sa", password="Secr3t!", login_timeout=10)
c.cursor().execute("USE sales")
c.commit()
print("transactions ok")
# A query timeout: pytds sends an attention under the running BACKUP.
c = pytds.connect(server="127.0.0.1", port=port, user="sa", password="Secr3t!",
                  autocommit=True, login_timeout=10, timeout=2)
cur = c.cursor()
try:
    cur.execute("BACKUP DATABASE sales TO VIRTUAL_DEVICE='py'")
    print("backup finished")
except pytds.tds_base.TimeoutError:
    print("timeout")
cur.execute("USE sales")
print("connection reused")
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script, &addr.port().to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        vec![
            "error 3013",
            "parameterized 3013 True",
            "login error 18456",
            "transactions ok",
            "timeout",
            "connection reused"
        ]
    );
    read_until(&mut set, |f| {
        matches!(
            f,
            Frame::ToClient {
                msg: ToClient::Abort
            }
        )
    });
    assert_eq!(
        s.status().backups,
        0,
        "the cancelled backup is not recorded"
    );
}

/// The harness's `sqlserver` control path (tiberius, feature `tds`: the
/// code meant to drive a real SQL Server) against `vdisim serve --tds`: it
/// logs in without TLS and with it, reads `@@SPID`, and a BACKUP that
/// fails reports SQL Server's error.
#[cfg(feature = "tds")]
#[test]
fn the_tiberius_control_path_runs_against_serve() {
    use vdi_sqlserver::tsql::{ParsedStatement, parse_batch};
    let d = Scratch::new("tiberius");
    let (_s, addr) = start(&d, |_| {});
    let ado = format!(
        "server=tcp:127.0.0.1,{};user=sa;password=Secr3t!;database=sales;encrypt=DANGER_PLAINTEXT",
        addr.port()
    );
    let mut c = vdi_conformance::sqlserver::SqlServer::connect(&ado).expect("tiberius logs in");
    assert!(c.session_id().expect("@@SPID") >= 51);
    // The same over TLS (the self-signed certificate trusted), whole
    // session and login only.
    for enc in ["true", "false"] {
        let tls = format!(
            "server=tcp:127.0.0.1,{};user=sa;password=Secr3t!;database=sales;encrypt={enc};TrustServerCertificate=true",
            addr.port()
        );
        let mut t = vdi_conformance::sqlserver::SqlServer::connect(&tls)
            .unwrap_or_else(|e| panic!("tiberius logs in with encrypt={enc}: {e}"));
        assert!(t.session_id().expect("@@SPID") >= 51);
    }
    let Some(ParsedStatement::Run(stmt, _)) =
        parse_batch("BACKUP DATABASE sales TO VIRTUAL_DEVICE='nope'")
            .unwrap()
            .into_iter()
            .next()
    else {
        panic!("a BACKUP statement")
    };
    let o = c.run_statement(&stmt).expect("the statement runs");
    assert_eq!(o.messages.first().map(|m| m.number), Some(3201), "{o:?}");
}

/// `vdisim serve --tls-cert/--tls-key` with a file that is not PEM, or a
/// file missing, is a clear error at start (exit 2), not a server that
/// fails its clients later; one without the other is a usage error.
#[test]
fn bad_tls_files_are_clear_cli_errors() {
    let d = Scratch::new("tlscli");
    let junk = d.path("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let serve = |extra: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vdisim"))
            .args(["serve", "--ephemeral", "--tds", "127.0.0.1:0", "--listen"])
            .arg(d.path("s.sock"))
            .args(extra)
            .output()
            .unwrap()
    };
    let missing = d.path("missing.pem");
    for (cert, key, want) in [
        (&junk, &junk, "holds no usable PEM certificate"),
        (&missing, &junk, "cannot read the TLS certificate file"),
    ] {
        let o = serve(&[
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{err}");
        assert!(
            err.contains(&cert.display().to_string()),
            "names the file: {err}"
        );
    }
    let o = serve(&["--tls-cert".as_ref(), junk.as_os_str()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--tls-key"));
}
