//! `vdisim serve --tds` seen through the in-repo TDS client
//! (`vdi_sqlserver::tds::client`): `vdisim sqlcmd -S tcp:HOST,PORT` runs
//! batches, prints messages and result sets as sqlcmd does and exits as
//! it does; `KILL <spid>` from another connection (TDS or the control
//! socket) aborts a session's running BACKUP and closes the session.

#![cfg(unix)]

#[path = "support/remote_client.rs"]
mod remote_client;
#[path = "support/scratch.rs"]
mod scratch;

use remote_client::*;
use scratch::Scratch;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use vdi_sqlserver::serve::{ServeConfig, Server};
use vdi_sqlserver::tds::client::{Client, Options};

fn start(d: &Scratch) -> (Server, SocketAddr) {
    let mut cfg = ServeConfig::new(d.0.join("s.sock"));
    cfg.databases = vec![("sales".into(), 8 * 65536)];
    cfg.tds = Some("127.0.0.1:0".parse().unwrap());
    cfg.logins = vec![("sa".into(), "Secr3t!".into())];
    let s = Server::start(cfg).expect("server starts");
    let addr = s.tds_addr().expect("TDS is served");
    (s, addr)
}

fn sqlcmd(addr: SocketAddr, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vdisim"))
        .arg("sqlcmd")
        .arg("-S")
        .arg(format!("tcp:{},{}", addr.ip(), addr.port()))
        .args(args)
        .env_remove("SQLCMDPASSWORD")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn client(addr: SocketAddr) -> Client {
    let o = Options {
        user: "sa".into(),
        password: "Secr3t!".into(),
        database: "sales".into(),
        timeout: Some(std::time::Duration::from_secs(30)),
    };
    Client::connect(&addr.ip().to_string(), addr.port(), &o).expect("logged in")
}

#[test]
fn sqlcmd_over_tds_prints_messages_and_result_sets_and_exits_as_sqlcmd() {
    let d = Scratch::new("sqlcmd");
    let (_s, addr) = start(&d);
    let pw = ["-U", "sa", "-P", "Secr3t!"];
    // A result set: header, dashes, the row, the count.
    let (code, out, err) = sqlcmd(addr, &[&pw[..], &["-Q", "SELECT DB_NAME() AS db"]].concat());
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "db\n------\nmaster\n\n(1 row affected)\n", "{out}");
    // An error: sqlcmd's two lines with the server's name; -b exits 1.
    let q = "BACKUP DATABASE nowhere TO VIRTUAL_DEVICE='x'";
    let (code, out, _) = sqlcmd(addr, &[&pw[..], &["-b", "-Q", q]].concat());
    assert_eq!(code, 1);
    assert!(
        out.starts_with("Msg 911, Level 16, State 1, Server VDISIM, Line 1\n"),
        "{out}"
    );
    assert!(out.contains("Msg 3013, Level 16"), "{out}");
    // Without -b the run ends with 0.
    let (code, _, _) = sqlcmd(addr, &[&pw[..], &["-Q", q]].concat());
    assert_eq!(code, 0);
    // A wrong password: no connection, exit 1, the server's 18456 text.
    let (code, _, err) = sqlcmd(addr, &["-U", "sa", "-P", "nope", "-Q", "SELECT 1"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Msg 18456") && err.contains("Login failed"),
        "{err}"
    );
    // -E is not spoken over TCP: said so.
    let (code, _, err) = sqlcmd(addr, &["-E", "-Q", "SELECT 1"]);
    assert_eq!(code, 1);
    assert!(err.contains("-U and -P"), "{err}");
    // Nothing listens: exit 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dead: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (code, _, err) = sqlcmd(dead, &[&pw[..], &["-Q", "SELECT 1"]].concat());
    assert_eq!(code, 1, "{err}");
}

/// A BACKUP through sqlcmd over TDS: the device is streamed by a client of
/// the serve socket; sqlcmd prints the INFO messages (4035, 3014).
#[test]
fn sqlcmd_over_tds_runs_a_backup_and_prints_its_informational_messages() {
    let d = Scratch::new("sqlcmd-backup");
    let (s, addr) = start(&d);
    let set = set_at(s.path());
    assert_eq!(create(&set, "sq", 1), vdi_spec::Hresult::NOERROR);
    let q = "BACKUP DATABASE sales TO VIRTUAL_DEVICE='sq'";
    let run =
        std::thread::spawn(move || sqlcmd(addr, &["-U", "sa", "-P", "Secr3t!", "-b", "-Q", q]));
    let media: Vec<Arc<Mutex<Vec<u8>>>> = vec![Arc::default()];
    let devs = open_all(&set, "sq", 1).expect("configured and opened");
    let (ends, _) = run_devices(&devs, &media, Sink::Keep);
    assert_eq!(ends, vec![vdi_spec::Hresult::VD_E_CLOSE]);
    set.close();
    let (code, out, err) = run.join().unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("BACKUP DATABASE successfully processed"),
        "{out}"
    );
    assert!(!out.contains("Msg "), "{out}");
    assert_eq!(s.status().backups, 1);
}

/// The client reads INFO messages as well as errors: a login's 5701/5703,
/// and its session id from the packets.
#[test]
fn the_client_reads_the_login_and_its_session_id() {
    let d = Scratch::new("client");
    let (_s, addr) = start(&d);
    let mut c = client(addr);
    assert!(c.spid >= 51, "{}", c.spid);
    let n: Vec<u32> = c.login_messages.iter().map(|m| m.number).collect();
    assert_eq!(n, [5701, 5703]);
    assert_eq!(c.database, "sales");
    let r = c.batch("SELECT @@SPID").unwrap();
    let Some(vdi_sqlserver::tds::client::Item::Rows(rs)) = r.items.first() else {
        panic!("{r:?}")
    };
    assert_eq!(rs.rows, [vec![Some(c.spid.to_string())]]);
}

fn numbers(r: &vdi_sqlserver::tds::client::Reply) -> Vec<(u32, u8)> {
    r.messages().map(|m| (m.number, m.class)).collect()
}

/// `KILL <spid>` from a second TDS connection while the first runs a
/// BACKUP: the set is aborted (clause `abort.server-signal`: the client
/// sees the abort), the statement fails with 3204 and 3013 and Msg 596
/// (class 21), no backup is recorded, and the victim's connection ends.
#[test]
fn kill_aborts_the_running_backup_of_another_session() {
    use vdi_host::remote::wire::Frame;
    use vdi_model::msg::ToClient;
    let d = Scratch::new("kill");
    let (s, addr) = start(&d);
    let (mut set, answer) = raw_set(s.path(), "kx");
    assert!(matches!(answer, Some(Frame::Welcome { .. })));
    let mut victim = client(addr);
    let victim_spid = victim.spid;
    victim
        .send_batch("BACKUP DATABASE sales TO VIRTUAL_DEVICE='kx'")
        .unwrap();
    read_until(&mut set, |f| {
        matches!(
            f,
            Frame::ToClient {
                msg: ToClient::Configured { .. }
            }
        )
    });
    let mut killer = client(addr);
    assert_ne!(killer.spid, victim_spid);
    let r = killer.batch(&format!("KILL {victim_spid}")).unwrap();
    assert!(numbers(&r).is_empty() && !r.failed(), "{r:?}");
    let r = victim.read_reply().expect("the killed batch's answer");
    assert_eq!(numbers(&r), [(3204, 16), (3013, 16), (596, 21)], "{r:?}");
    assert!(r.failed());
    read_until(&mut set, |f| {
        matches!(
            f,
            Frame::ToClient {
                msg: ToClient::Abort
            }
        )
    });
    let after = victim.batch("SELECT @@SPID");
    assert!(
        after.is_err(),
        "the killed session's connection is closed: {after:?}"
    );
    assert_eq!(s.status().backups, 0, "a killed backup is not recorded");
    let last = s.outcomes().pop().expect("the statement's outcome");
    assert_eq!(
        last.outcome.reason,
        Some(vdi_model::outcome::FailReason::ServerAbort)
    );
    // The killer's session goes on; the victim's id is free once its
    // connection's thread has ended (soon: polled, at most 10 s).
    let t0 = std::time::Instant::now();
    loop {
        let r = killer.batch(&format!("KILL {victim_spid}")).unwrap();
        if numbers(&r) == [(6106, 16)] {
            break;
        }
        assert!(numbers(&r).is_empty(), "{r:?}");
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "never freed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// KILL's refusals: the session itself (6104), a system session id
/// (6107), an id no session has (6106); and a KILL from the control
/// socket closes an idle TDS session.
#[test]
fn kill_refusals_and_an_idle_session_killed_from_the_control_socket() {
    let d = Scratch::new("kill-refusals");
    let (s, addr) = start(&d);
    let mut c = client(addr);
    let r = c.batch(&format!("KILL {}", c.spid)).unwrap();
    assert_eq!(numbers(&r), [(6104, 16)]);
    let r = c.batch("KILL 7").unwrap();
    assert_eq!(numbers(&r), [(6107, 14)]);
    let r = c.batch("KILL 30000").unwrap();
    let m = r.messages().next().unwrap();
    assert_eq!((m.number, m.state), (6106, 2));
    assert_eq!(m.text, "Process ID 30000 is not an active process ID.");
    let m = sql_at(s.path(), &format!("KILL {}", c.spid));
    assert!(m.is_empty(), "{m:?}");
    assert!(
        c.batch("SELECT @@SPID").is_err(),
        "a killed idle session's connection is closed"
    );
    // The server goes on serving.
    let mut c2 = client(addr);
    assert!(!c2.batch("USE sales").unwrap().failed());
}

/// `-t` over TDS: the running BACKUP is cancelled with an ATTENTION (the
/// server aborts the set: clause `abort.attention`), sqlcmd reports the
/// timeout and, with `-b`, exits 1; nothing is recorded.
#[test]
fn sqlcmd_over_tds_times_out_with_an_attention() {
    use vdi_host::remote::wire::Frame;
    use vdi_model::msg::ToClient;
    let d = Scratch::new("sqlcmd-timeout");
    let (s, addr) = start(&d);
    let (mut set, answer) = raw_set(s.path(), "tq");
    assert!(matches!(answer, Some(Frame::Welcome { .. })));
    let q = "BACKUP DATABASE sales TO VIRTUAL_DEVICE='tq'";
    let run = std::thread::spawn(move || {
        sqlcmd(
            addr,
            &["-U", "sa", "-P", "Secr3t!", "-b", "-t", "1", "-Q", q],
        )
    });
    read_until(&mut set, |f| {
        matches!(
            f,
            Frame::ToClient {
                msg: ToClient::Abort
            }
        )
    });
    let (code, out, err) = run.join().unwrap();
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("Query timeout expired"), "{err}");
    assert!(!out.contains("successfully processed"), "{out}");
    assert_eq!(s.status().backups, 0);
}
