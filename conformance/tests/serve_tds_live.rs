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
use std::io::Write;
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

/// Runs `text` (a BACKUP to VIRTUAL_DEVICE `dev`) in a SQL batch while a
/// VDI client streams the device; the batch's tokens and the session.
fn backup_over_tds(
    s: &Server,
    c: std::net::TcpStream,
    dev: &str,
    text: &'static str,
) -> (std::net::TcpStream, Vec<Tok>) {
    let set = set_at(s.path());
    assert_eq!(create(&set, dev, 1), vdi_spec::Hresult::NOERROR);
    let answer = std::thread::spawn(move || {
        let mut c = c;
        let t = batch(&mut c, text);
        (c, t)
    });
    let devs = open_all(&set, dev, 1).expect("configured and opened");
    let media = vec![std::sync::Arc::default()];
    let (ends, _) = run_devices(&devs, &media, remote_client::Sink::Discard);
    assert_eq!(ends, vec![vdi_spec::Hresult::VD_E_CLOSE]);
    set.close();
    answer.join().unwrap()
}

fn rows(t: &[Tok]) -> Vec<Vec<Option<String>>> {
    t.iter()
        .filter_map(|t| match t {
            Tok::Row(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// msdb's history as products read it: the latest full backup of a
/// database (backupset filtered by name and type, newest first, TOP 1),
/// its device (backupmediafamily, device type 7), and sys.databases'
/// columns; other shapes on these views get a clear error.
#[test]
fn msdb_history_is_answered_from_the_servers_backups() {
    let d = Scratch::new("msdb");
    let (s, addr) = start(&d);
    let c = logged_in(addr);
    let (c, t) = backup_over_tds(&s, c, "m1", "BACKUP DATABASE sales TO VIRTUAL_DEVICE='m1'");
    assert_eq!(last_done(&t), (0, 0), "{t:?}");
    let (c, t) = backup_over_tds(
        &s,
        c,
        "m2",
        "BACKUP DATABASE sales TO VIRTUAL_DEVICE='m2' WITH CHECKSUM, COPY_ONLY",
    );
    assert_eq!(last_done(&t), (0, 0), "{t:?}");
    let mut c = c;
    let q = "SELECT TOP 1 bs.backup_set_id, bs.media_set_id, bs.database_name, bs.type, \
             bs.is_copy_only, bs.has_backup_checksums, bs.server_name, bs.backup_size, \
             bs.first_lsn, bs.last_lsn, bs.backup_start_date, bs.backup_finish_date \
             FROM msdb.dbo.backupset bs WHERE bs.database_name = N'sales' AND bs.type = 'D' \
             ORDER BY bs.backup_finish_date DESC";
    let t = batch(&mut c, q);
    let Tok::Columns(cols) = &t[0] else {
        panic!("COLMETADATA first: {t:?}")
    };
    let types: Vec<u8> = cols.iter().map(|c| c.0).collect();
    assert_eq!(
        types,
        [
            0x26, 0x26, 0xE7, 0xAF, 0x68, 0x68, 0xE7, 0x6A, 0x6A, 0x6A, 0x6F, 0x6F
        ],
        "INT, NVARCHAR, CHAR(1), BIT, NUMERIC, DATETIME as SQL Server types them"
    );
    let r = rows(&t);
    assert_eq!(r.len(), 1, "TOP 1");
    let v = |k: usize| r[0][k].clone().unwrap();
    assert_eq!((v(0), v(1)), ("2".into(), "2".into()), "the newest backup");
    assert_eq!(
        (v(2), v(3), v(4), v(5)),
        ("sales".into(), "D".into(), "1".into(), "1".into())
    );
    assert!(!v(6).is_empty(), "server_name");
    assert!(v(7).parse::<u64>().unwrap() >= 16 * 65536, "backup_size");
    assert!(
        v(9).parse::<u64>().unwrap() >= v(8).parse::<u64>().unwrap(),
        "LSNs"
    );
    let day_ticks = |x: String| {
        let (d, t) = x.split_once(':').unwrap();
        (d.parse::<i64>().unwrap(), t.parse::<i64>().unwrap())
    };
    assert!(
        day_ticks(v(11)) >= day_ticks(v(10)),
        "finished after it started"
    );
    assert_eq!(
        t.last(),
        Some(&Tok::Done {
            token: 0xFD,
            status: 0x10,
            cur_cmd: 0xC1,
            rows: 1
        })
    );
    // Both backups, oldest first; a type with none.
    let t = batch(
        &mut c,
        "SELECT backup_set_id FROM msdb.dbo.backupset WHERE database_name = 'SALES'",
    );
    assert_eq!(
        rows(&t),
        vec![vec![Some("1".into())], vec![Some("2".into())]]
    );
    let t = batch(&mut c, "SELECT * FROM msdb.dbo.backupset WHERE type = 'L'");
    assert_eq!(rows(&t), Vec::<Vec<Option<String>>>::new());
    // The device of each family.
    let t = batch(
        &mut c,
        "SELECT media_set_id, family_sequence_number, physical_device_name, device_type FROM msdb.dbo.backupmediafamily WHERE media_set_id = 2",
    );
    let want: Vec<Option<String>> = ["2", "1", "m2", "7"]
        .iter()
        .map(|x| Some(x.to_string()))
        .collect();
    assert_eq!(rows(&t), vec![want]);
    // sys.databases and DB_ID.
    let t = batch(
        &mut c,
        "SELECT name, database_id, state_desc, recovery_model_desc FROM sys.databases",
    );
    let want: Vec<Option<String>> = ["sales", "5", "ONLINE", "SIMPLE"]
        .iter()
        .map(|x| Some(x.to_string()))
        .collect();
    assert_eq!(rows(&t), vec![want]);
    assert_eq!(
        rows(&batch(&mut c, "SELECT DB_ID()")),
        vec![vec![Some("5".into())]]
    );
    // Other shapes: errors, the session goes on.
    let t = batch(&mut c, "SELECT nope FROM msdb.dbo.backupset");
    assert_eq!(messages(&t), vec![(true, 207)]);
    assert_eq!(last_done(&t).0 & 2, 2, "DONE_ERROR");
    let t = batch(
        &mut c,
        "SELECT * FROM msdb.dbo.backupset bs JOIN msdb.dbo.backupmediafamily f ON bs.media_set_id = f.media_set_id",
    );
    assert_eq!(messages(&t), vec![(true, 50002)]);
    let t = batch(&mut c, "SELECT 1");
    assert_eq!(rows(&t), vec![vec![Some("1".into())]]);
    // Parameterized, as ODBC sends it (sp_prepexec): the result set inside
    // the RPC, then RETURNSTATUS, the handle, DONEPROC.
    let t = rpc(
        &mut c,
        13,
        &[
            ("", 1, Param::Int(None)),
            ("", 0, Param::Text("@P1 nvarchar(128),@P2 int")),
            (
                "",
                0,
                Param::Text(
                    "SELECT TOP (@P2) backup_set_id FROM msdb.dbo.backupset WHERE database_name = @P1 ORDER BY backup_finish_date DESC",
                ),
            ),
            ("", 0, Param::Text("sales")),
            ("", 0, Param::Int(Some(1))),
        ],
    );
    assert_eq!(rows(&t), vec![vec![Some("2".into())]], "{t:?}");
    let n = t.len();
    assert_eq!(
        t[n - 4],
        Tok::Done {
            token: 0xFF,
            status: 0x11,
            cur_cmd: 0xC1,
            rows: 1
        }
    );
    assert!(
        matches!(
            &t[n - 3..],
            [
                Tok::ReturnStatus(0),
                Tok::ReturnValue(..),
                Tok::Done {
                    token: 0xFE,
                    status: 0,
                    ..
                }
            ]
        ),
        "{t:?}"
    );
    // sp_executesql with an unknown column: the error inside the RPC.
    let t = rpc(
        &mut c,
        10,
        &[
            (
                "",
                0,
                Param::Text("SELECT nope FROM msdb.dbo.backupset WHERE type = @t"),
            ),
            ("", 0, Param::Text("@t char(1)")),
            ("@t", 0, Param::Text("D")),
        ],
    );
    assert_eq!(messages(&t), vec![(true, 207)]);
    assert!(matches!(
        t.last(),
        Some(Tok::Done {
            token: 0xFE,
            status: 2,
            ..
        })
    ));
}

/// OUTPUT parameters come back as RETURNVALUE tokens (after RETURNSTATUS,
/// with their ordinals: sp_prepexec's handle first); several RPCs in one
/// message get one DONEPROC each, all but the last with MORE|RPCINBATCH.
#[test]
fn rpc_output_parameters_and_several_rpcs_in_one_message() {
    let d = Scratch::new("rpcs");
    let (_s, addr) = start(&d);
    let mut c = logged_in(addr);
    let t = rpc(
        &mut c,
        10,
        &[
            ("", 0, Param::Text("USE sales")),
            ("", 0, Param::Text("@db nvarchar(20), @n int OUTPUT")),
            ("@db", 0, Param::Text("sales")),
            ("@n", 1, Param::Int(Some(7))),
        ],
    );
    assert_eq!(
        t[1..],
        [
            Tok::ReturnStatus(0),
            Tok::ReturnValue("@n".into(), 7),
            Tok::Done {
                token: 0xFE,
                status: 0,
                cur_cmd: 0xE0,
                rows: 0
            }
        ],
        "{t:?}"
    );
    // sp_prepexec: the handle (ordinal 0), then the OUTPUT parameter.
    let t = rpc(
        &mut c,
        13,
        &[
            ("@h", 1, Param::Int(None)),
            ("", 0, Param::Text("@n int OUTPUT")),
            ("", 0, Param::Text("USE sales")),
            ("@n", 1, Param::Int(Some(3))),
        ],
    );
    let values: Vec<&Tok> = t
        .iter()
        .filter(|t| matches!(t, Tok::ReturnValue(..)))
        .collect();
    assert_eq!(values.len(), 2, "{t:?}");
    assert!(matches!(values[0], Tok::ReturnValue(n, h) if n == "@h" && *h >= 1));
    assert_eq!(values[1], &Tok::ReturnValue("@n".into(), 3));
    // Three RPCs in one message: a statement, an unprepare, an unknown
    // procedure.
    let stmt: &[RpcParam] = &[("", 0, Param::Text("USE sales"))];
    let unprep: &[RpcParam] = &[("", 0, Param::Int(Some(99)))];
    let t = rpcs(&mut c, &[(10, stmt), (15, unprep), (14, &[])]);
    let dones: Vec<u16> = t
        .iter()
        .filter_map(|t| match t {
            Tok::Done {
                token: 0xFE,
                status,
                ..
            } => Some(*status),
            _ => None,
        })
        .collect();
    assert_eq!(dones, vec![0x81, 0x81, 0x02], "{t:?}");
    assert_eq!(messages(&t), vec![(true, 2812)]);
    // A statement that is not text: one error, the session goes on.
    let t = rpcs(&mut c, &[(10, &[("", 0, Param::Int(Some(1)))])]);
    assert_eq!(messages(&t), vec![(true, 50002)]);
    assert_eq!(last_done(&batch(&mut c, "USE sales")).0, 0);
}

fn env(t: &[Tok], kind: u8) -> Option<(Vec<u8>, Vec<u8>)> {
    t.iter().find_map(|t| match t {
        Tok::Env { kind: k, new, old } if *k == kind => Some((new.clone(), old.clone())),
        _ => None,
    })
}

/// Transaction-manager requests as drivers send them with autocommit
/// off: BEGIN answered with ENVCHANGE 8 (an 8-byte descriptor), COMMIT
/// with ENVCHANGE 9 naming it, ROLLBACK with 10; nesting counts; COMMIT
/// without a transaction is Msg 3902; DTC requests are not served.
#[test]
fn transaction_manager_requests_get_envchange_tokens() {
    let d = Scratch::new("tm");
    let (_s, addr) = start(&d);
    let mut c = logged_in(addr);
    let begin = [0x00, 0x00]; // read uncommitted-ish isolation 0, no name
    let t = tm(&mut c, 5, &begin);
    let (new, old) = env(&t, 8).expect("ENVCHANGE 8");
    assert_eq!((new.len(), old.len()), (8, 0));
    assert_eq!(last_done(&t), (0, 0));
    // Nested: counted, no ENVCHANGE; the inner COMMIT neither.
    assert_eq!(env(&tm(&mut c, 5, &begin), 8), None);
    assert_eq!(env(&tm(&mut c, 7, &[0, 0]), 9), None);
    let t = tm(&mut c, 7, &[0, 0]);
    assert_eq!(env(&t, 9), Some((vec![], new.clone())), "COMMIT names it");
    let t = tm(&mut c, 7, &[0, 0]);
    assert_eq!(messages(&t), vec![(true, 3902)]);
    assert_eq!(last_done(&t).0 & 2, 2);
    // ROLLBACK that begins the next one: ENVCHANGE 10 then 8, a new
    // descriptor.
    tm(&mut c, 5, &begin);
    let t = tm(&mut c, 8, &[0, 0x01, 0x00, 0x00]);
    let (_, rolled) = env(&t, 10).expect("ENVCHANGE 10");
    let (next, _) = env(&t, 8).expect("ENVCHANGE 8");
    assert_ne!(rolled, next);
    assert_eq!(messages(&tm(&mut c, 0, &[])), vec![(true, 50002)]);
    // Statements go on inside the transaction.
    assert_eq!(last_done(&batch(&mut c, "USE sales")).0, 0);
    let t = tm(&mut c, 8, &[0, 0]);
    assert!(env(&t, 10).is_some());
}

/// An ATTENTION after progress has come: the running BACKUP is aborted
/// (3204, 3013, never a success), the response already begun ends with a
/// DONE without the attention bit, then the acknowledgement follows as a
/// message of its own.
#[test]
fn an_attention_after_progress_aborts_the_backup() {
    let d = Scratch::new("live-attn");
    let (s, addr) = start(&d);
    let set = set_at(s.path());
    assert_eq!(create(&set, "la", 1), vdi_spec::Hresult::NOERROR);
    let mut c = logged_in(addr);
    send_batch(
        &mut c,
        "BACKUP DATABASE sales TO VIRTUAL_DEVICE='la' WITH STATS = 5",
    );
    let dev = open_all(&set, "la", 1)
        .expect("configured and opened")
        .remove(0);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let device = std::thread::spawn(move || {
        let mut written = 0u64;
        loop {
            let Ok(cmd) = dev.get_command(Timeout::Ms(30_000)) else {
                return;
            };
            if written >= 4 * 65536 {
                // Hold until the response has ended.
                let _ = go_rx.recv();
            }
            let bytes = if cmd.code == CommandCode::Write {
                u64::from(cmd.size)
            } else {
                0
            };
            written += bytes;
            if dev.complete(&cmd, Win32::ERROR_SUCCESS, bytes) != vdi_spec::Hresult::NOERROR {
                return;
            }
        }
    });
    let mut early = Vec::new();
    while percents(&tokens(&early)).is_empty() {
        let (status, body) = read_packet(&mut c).expect("a part of the response");
        assert_eq!(status & 1, 0);
        early.extend(body);
    }
    // The device holds its command: the attention, not the end of the
    // stream, ends the statement.
    c.write_all(&packets(0x06, &[])).unwrap();
    let (_, _, rest) = read_reply(&mut c).expect("the end of the response");
    drop(go_tx);
    early.extend(rest);
    let t = tokens(&early);
    let tail: Vec<(bool, u32)> = messages(&t).into_iter().filter(|m| m.1 != 3211).collect();
    assert_eq!(tail, vec![(true, 3204), (true, 3013)], "{t:?}");
    assert_eq!(last_done(&t).0 & 0x22, 0x02, "DONE_ERROR, not the ack");
    let (_, _, ack) = read_reply(&mut c).expect("the acknowledgement");
    assert_eq!(last_done(&tokens(&ack)), (0x20, 0));
    device.join().unwrap();
    set.close();
    assert_eq!(s.status().backups, 0, "a cancelled backup is not recorded");
    assert_eq!(last_done(&batch(&mut c, "USE sales")).0, 0);
}
