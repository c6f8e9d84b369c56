//! `vdisim serve --tds`, what a session sends while a statement runs and
//! what products read around a backup: `STATS` progress (Msg 3211) arrives
//! in packets of a response not yet ended, while the BACKUP still waits on
//! its virtual device; msdb's history as result sets; RPC output
//! parameters, several RPCs in one message and transaction-manager
//! requests. Uses the raw TDS client of `support/tds_client.rs`.

#![cfg(unix)]

#[path = "support/remote_client.rs"]
mod remote_client;
#[path = "support/scratch.rs"]
mod scratch;
#[path = "support/tds_client.rs"]
mod tds_client;

use remote_client::*;
use scratch::Scratch;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;
use tds_client::*;
use vdi_model::msg::Timeout;
use vdi_spec::{CommandCode, Win32};
use vdi_sqlserver::serve::{ServeConfig, Server};

fn start(d: &Scratch) -> (Server, SocketAddr) {
    let mut cfg = ServeConfig::new(d.0.join("s.sock"));
    cfg.databases = vec![("sales".into(), 16 * 65536)];
    cfg.tds = Some("127.0.0.1:0".parse().unwrap());
    cfg.logins = vec![("sa".into(), "Secr3t!".into())];
    let s = Server::start(cfg).expect("server starts");
    let addr = s.tds_addr().expect("TDS is served");
    (s, addr)
}

/// The 3211 numbers and texts among `t`'s messages.
fn percents(t: &[Tok]) -> Vec<String> {
    t.iter()
        .filter_map(|t| match t {
            Tok::Msg {
                number: 3211, text, ..
            } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// A BACKUP WITH STATS = 10: the device completes Writes until half the
/// database is written, then holds its next command. Meanwhile the
/// session has sent "10 percent processed." (and the steps up to where
/// the transfer is) in packets without EOM and no DONE; once the device
/// goes on, the remaining steps, 4035, 3014 and the DONE end the response.
#[test]
fn stats_progress_arrives_while_the_backup_runs() {
    let d = Scratch::new("live");
    let (s, addr) = start(&d);
    let set = set_at(s.path());
    assert_eq!(create(&set, "lp", 1), vdi_spec::Hresult::NOERROR);
    let mut c = logged_in(addr);
    send_batch(
        &mut c,
        "BACKUP DATABASE sales TO VIRTUAL_DEVICE='lp' WITH STATS = 10",
    );
    let dev = open_all(&set, "lp", 1)
        .expect("configured and opened")
        .remove(0);
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let device = std::thread::spawn(move || {
        let mut written = 0u64;
        let mut held = false;
        loop {
            let cmd = match dev.get_command(Timeout::Ms(30_000)) {
                Ok(c) => c,
                Err(e) => return e,
            };
            if !held && written >= 8 * 65536 {
                held = true;
                held_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            }
            let bytes = if cmd.code == CommandCode::Write {
                u64::from(cmd.size)
            } else {
                0
            };
            written += bytes;
            let r = dev.complete(&cmd, Win32::ERROR_SUCCESS, bytes);
            if r != vdi_spec::Hresult::NOERROR {
                return r;
            }
        }
    });
    held_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the device wrote half the database");
    // Packets until one carries a 3211: all without EOM.
    let mut early = Vec::new();
    while percents(&tokens(&early)).is_empty() {
        let (status, body) = read_packet(&mut c).expect("a part of the response");
        assert_eq!(
            status & 1,
            0,
            "the response is not over while the backup waits"
        );
        early.extend(body);
    }
    let t = tokens(&early);
    assert!(
        !t.iter().any(|t| matches!(t, Tok::Done { .. })),
        "no DONE while the backup runs: {t:?}"
    );
    let first = percents(&t);
    assert_eq!(first[0], "10 percent processed.");
    assert!(first.len() <= 6, "at most half is done: {first:?}");
    go_tx.send(()).unwrap();
    assert_eq!(device.join().unwrap(), vdi_spec::Hresult::VD_E_CLOSE);
    set.close();
    let (_, _, rest) = read_reply(&mut c).expect("the end of the response");
    early.extend(rest);
    let t = tokens(&early);
    let all: Vec<String> = (1..=10)
        .map(|k| format!("{} percent processed.", k * 10))
        .collect();
    assert_eq!(percents(&t), all, "each step once, in order");
    let tail: Vec<(bool, u32)> = messages(&t).into_iter().filter(|m| m.1 != 3211).collect();
    assert_eq!(tail, vec![(false, 4035), (false, 3014)]);
    assert_eq!(last_done(&t), (0, 0));
    assert_eq!(s.status().backups, 1);
}
