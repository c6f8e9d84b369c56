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
