//! `vdisim serve` and the stand-in library across the socket and shared
//! memory: a striped backup and restore, a client that dies mid-stream, a
//! server that never opens the set, T-SQL errors.

#![cfg(unix)]

#[path = "support/remote_client.rs"]
mod remote_client;

use remote_client::*;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use vdi_host::remote::wire::LineMessage;
use vdi_model::msg::Timeout;
use vdi_spec::Hresult;
use vdi_sqlserver::serve::{ServeConfig, Server};

/// The media header at the start of every family (`vdi_model::media`).
const HEADER: u64 = vdi_model::media::HEADER_BYTES;

fn temp_socket(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("vdisim-test-{}-{tag}.sock", std::process::id()))
}

fn server(tag: &str) -> Server {
    let mut cfg = ServeConfig::new(temp_socket(tag));
    cfg.databases = vec![("sales".into(), 3 * 65536 + 4096)];
    Server::start(cfg).expect("server starts")
}

fn sql(server: &Server, text: &str) -> Vec<LineMessage> {
    sql_at(server.path(), text)
}

fn numbers(m: &[LineMessage]) -> Vec<u32> {
    m.iter().map(|m| m.message.number).collect()
}

/// Runs `text` on another thread while the client works, as a backup
/// program's SQL connection would.
fn sql_async(server: &Server, text: String) -> std::thread::JoinHandle<Vec<LineMessage>> {
    let path = server.path().to_path_buf();
    std::thread::spawn(move || sql_at(&path, &text))
}

#[test]
fn striped_backup_then_restore_across_processes_boundary() {
    let s = server("roundtrip");
    let media: Vec<Arc<Mutex<Vec<u8>>>> = (0..3).map(|_| Arc::default()).collect();
    let at_backup = s.status();
    // BACKUP over 3 devices.
    let set = set_at(s.path());
    assert_eq!(create(&set, "rt", 3), Hresult::NOERROR);
    let names = device_names("rt", 3)
        .iter()
        .map(|n| format!("VIRTUAL_DEVICE='{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let stmt = sql_async(
        &s,
        format!("BACKUP DATABASE sales TO {names} WITH MAXTRANSFERSIZE=65536, BUFFERCOUNT=6"),
    );
    let devs = open_all(&set, "rt", 3).expect("configured and opened");
    let (ends, bytes) = run_devices(&devs, &media, Sink::Keep);
    assert!(ends.iter().all(|e| *e == Hresult::VD_E_CLOSE), "{ends:?}");
    assert_eq!(set.close().code(), Hresult::NOERROR);
    let msgs = stmt.join().unwrap();
    assert_eq!(numbers(&msgs), vec![4035, 3014], "{msgs:?}");
    // The data, and a 64 KiB media header on each device.
    assert_eq!(bytes, 3 * 65536 + 4096 + 3 * HEADER);
    let before = s.status();
    assert_eq!(before.backups, 1);
    // RESTORE from the same bytes, with a fresh object.
    let set = set_at(s.path());
    assert_eq!(create(&set, "rs", 3), Hresult::NOERROR);
    let names = device_names("rs", 3)
        .iter()
        .map(|n| format!("VIRTUAL_DEVICE=N'{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let stmt = sql_async(&s, format!("RESTORE DATABASE [sales] FROM {names}"));
    let devs = open_all(&set, "rs", 3).unwrap();
    let (ends, _) = run_devices(&devs, &media, Sink::Keep);
    assert!(ends.iter().all(|e| *e == Hresult::VD_E_CLOSE), "{ends:?}");
    assert_eq!(set.close().code(), Hresult::NOERROR);
    let msgs = stmt.join().unwrap();
    assert_eq!(msgs.last().unwrap().message.number, 3014, "{msgs:?}");
    let after = s.status();
    let db = after.databases.iter().find(|d| d.name == "sales").unwrap();
    assert_eq!(db.state, "online");
    assert_eq!(db.restored_from, Some(1));
    let was = at_backup
        .databases
        .iter()
        .find(|d| d.name == "sales")
        .unwrap();
    let moved = before.databases.iter().find(|d| d.name == "sales").unwrap();
    assert_ne!(
        moved.content, was.content,
        "the database lives on after a backup"
    );
    assert_eq!(
        db.content, was.content,
        "restored content is the backed-up content"
    );
    // The server handles the Close frame on its own thread: wait for it.
    let t0 = std::time::Instant::now();
    while !s.status().sets.is_empty() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "closed sets are forgotten: {:?}",
            s.status().sets
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn corrupted_restore_fails_and_leaves_the_database_restoring() {
    let s = server("corrupt");
    let media: Vec<Arc<Mutex<Vec<u8>>>> = vec![Arc::default()];
    let set = set_at(s.path());
    create(&set, "c1", 1);
    let stmt = sql_async(&s, "BACKUP DATABASE sales TO VIRTUAL_DEVICE='c1'".into());
    let devs = open_all(&set, "c1", 1).unwrap();
    run_devices(&devs, &media, Sink::Keep);
    set.close();
    assert_eq!(numbers(&stmt.join().unwrap()), vec![4035, 3014]);
    media[0].lock().unwrap()[70_000] ^= 0xff;
    let set = set_at(s.path());
    create(&set, "c2", 1);
    let stmt = sql_async(&s, "RESTORE DATABASE sales FROM VIRTUAL_DEVICE='c2'".into());
    let devs = open_all(&set, "c2", 1).unwrap();
    run_devices(&devs, &media, Sink::Keep);
    set.close();
    let msgs = stmt.join().unwrap();
    assert_eq!(msgs.last().unwrap().message.number, 3013, "{msgs:?}");
    let st = s.status();
    let db = st.databases.iter().find(|d| d.name == "sales").unwrap();
    assert_eq!(db.state, "restoring");
    // A backup of a database in the middle of a restore is refused.
    let m = sql(&s, "BACKUP DATABASE sales TO VIRTUAL_DEVICE='nobody'");
    assert_eq!(numbers(&m), vec![927, 3013]);
}

/// The dying client: run as a child process by the test below (the test
/// binary re-executed with `VDISIM_TEST_DYING_CLIENT` set). It takes one
/// command and exits without Close, as a crashed backup program would.
#[test]
fn dying_client_child() {
    let Some(path) = std::env::var_os("VDISIM_TEST_DYING_CLIENT") else {
        return;
    };
    let set = set_at(std::path::Path::new(&path));
    assert_eq!(create(&set, "d1", 1), Hresult::NOERROR);
    let devs = open_all(&set, "d1", 1).unwrap();
    devs[0].get_command(Timeout::Ms(10_000)).unwrap();
    println!("child: holding one command, exiting");
    std::process::exit(0);
}

#[test]
fn a_client_process_that_dies_mid_stream_aborts_the_statement() {
    let s = server("death");
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "dying_client_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VDISIM_TEST_DYING_CLIENT", s.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the child's set exists before starting the statement.
    let t0 = std::time::Instant::now();
    while !s.status().sets.contains(&"d1".to_string()) {
        assert!(
            t0.elapsed().as_secs() < 20,
            "the child never created its set"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let m = sql(&s, "BACKUP DATABASE sales TO VIRTUAL_DEVICE='d1'");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(m.last().unwrap().message.number, 3013, "{m:?}");
    assert!(
        m.iter()
            .any(|x| x.message.text.contains("995") || x.message.number == 18210),
        "an abort's messages: {m:?}"
    );
    assert!(
        s.status().sets.is_empty(),
        "the dead client's set is forgotten"
    );
    assert_eq!(s.status().backups, 0);
}

#[test]
fn a_server_that_never_opens_the_set_means_get_configuration_times_out() {
    let s = server("noopen");
    let set = set_at(s.path());
    assert_eq!(create(&set, "lonely", 1), Hresult::NOERROR);
    assert_eq!(
        set.get_configuration(Timeout::Ms(200)).result.unwrap_err(),
        Hresult::VD_E_TIMEOUT
    );
    assert_eq!(s.status().sets, vec!["lonely".to_string()]);
    assert_eq!(set.close().code(), Hresult::NOERROR);
}

#[test]
fn no_server_means_the_set_is_created_and_never_configured() {
    let set = set_at(&temp_socket("nobody-listens"));
    assert_eq!(create(&set, "alone", 1), Hresult::NOERROR);
    assert_eq!(
        set.get_configuration(Timeout::Ms(50)).result.unwrap_err(),
        Hresult::VD_E_TIMEOUT
    );
}

#[test]
fn tsql_errors_and_unknown_databases() {
    let s = server("tsql");
    let m = sql(&s, "BACKUP DATABSE sales TO VIRTUAL_DEVICE='x'");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].message.number, 102, "{m:?}");
    let m = sql(&s, "BACKUP DATABASE nowhere TO VIRTUAL_DEVICE='x'");
    assert_eq!(numbers(&m), vec![911, 3013]);
    // The set does not exist: the statement fails as server.open-missing-set says.
    let m = sql(&s, "BACKUP DATABASE sales TO VIRTUAL_DEVICE='missing'");
    assert_eq!(numbers(&m), vec![3201, 3013], "{m:?}");
}

#[test]
fn a_second_server_on_the_same_path_is_refused() {
    let s = server("twice");
    let mut cfg = ServeConfig::new(s.path().to_path_buf());
    cfg.databases.clear();
    match Server::start(cfg) {
        Err(e) => assert!(e.to_string().contains("already listening"), "{e}"),
        Ok(_) => panic!("two servers on one path"),
    }
}

#[test]
fn a_server_fault_plan_aborts_at_the_planned_command() {
    let mut cfg = ServeConfig::new(temp_socket("faults"));
    cfg.databases = vec![("sales".into(), 16 * 65536)];
    let cx = vdi_model::fault::PlanContext {
        devices: 1,
        longest_timeout_ms: 60_000,
        server_timeout_ms: 60_000,
        family_bytes: 0,
    };
    cfg.faults = vdi_model::fault::FaultPlan::named("server-abort", &cx).unwrap();
    let s = Server::start(cfg).unwrap();
    let media: Vec<Arc<Mutex<Vec<u8>>>> = vec![Arc::default()];
    let set = set_at(s.path());
    create(&set, "f1", 1);
    let stmt = sql_async(&s, "BACKUP DATABASE sales TO VIRTUAL_DEVICE='f1'".into());
    let devs = open_all(&set, "f1", 1).unwrap();
    let (ends, bytes) = run_devices(&devs, &media, Sink::Keep);
    assert_eq!(ends, vec![Hresult::VD_E_ABORT]);
    assert!(bytes < 16 * 65536, "aborted before the end: {bytes}");
    assert_eq!(set.close().code(), Hresult::NOERROR);
    let m = stmt.join().unwrap();
    assert_eq!(m.last().unwrap().message.number, 3013, "{m:?}");
    assert_eq!(s.status().backups, 0);
}

#[test]
fn many_sets_and_clients_at_once() {
    let mut cfg = ServeConfig::new(temp_socket("many"));
    cfg.databases = vec![
        ("a".into(), 8 * 65536),
        ("b".into(), 12 * 65536),
        ("c".into(), 5 * 65536),
    ];
    let s = Server::start(cfg).unwrap();
    let path = s.path().to_path_buf();
    let clients: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|db| {
            let path = path.clone();
            std::thread::spawn(move || {
                let set = set_at(&path);
                let name = format!("set-{db}");
                assert_eq!(create(&set, &name, 2), Hresult::NOERROR);
                let p2 = path.clone();
                let text = format!(
                    "BACKUP DATABASE {db} TO VIRTUAL_DEVICE='{name}', VIRTUAL_DEVICE='{name}-dev1'"
                );
                let stmt = std::thread::spawn(move || sql_at(&p2, &text));
                let devs = open_all(&set, &name, 2).unwrap();
                let media: Vec<Arc<Mutex<Vec<u8>>>> = (0..2).map(|_| Arc::default()).collect();
                let (ends, bytes) = run_devices(&devs, &media, Sink::Discard);
                assert!(ends.iter().all(|e| *e == Hresult::VD_E_CLOSE), "{ends:?}");
                assert_eq!(set.close().code(), Hresult::NOERROR);
                (db, bytes, numbers(&stmt.join().unwrap()))
            })
        })
        .collect();
    let mut got: Vec<_> = clients.into_iter().map(|h| h.join().unwrap()).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("a", 8 * 65536 + 2 * HEADER, vec![4035, 3014]),
            ("b", 12 * 65536 + 2 * HEADER, vec![4035, 3014]),
            ("c", 5 * 65536 + 2 * HEADER, vec![4035, 3014]),
        ]
    );
    assert_eq!(s.status().backups, 3);
}

#[test]
fn bad_connections_are_refused_or_dropped_not_fatal() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use vdi_host::remote::wire::{self, Frame, PROTOCOL};
    let s = server("bad");
    // Garbage instead of a frame.
    let mut c = UnixStream::connect(s.path()).unwrap();
    c.write_all(&[0xff, 0xff, 0xff, 0x7f, 1, 2, 3]).unwrap();
    drop(c);
    // A hello with a configuration the library would never send.
    let mut c = UnixStream::connect(s.path()).unwrap();
    let mut cfg = vdi_spec::VdConfig::client(1, vdi_spec::Features(0));
    cfg.alignment = 0x8000_0001;
    wire::write_frame(
        &mut c,
        &Frame::HelloSet {
            protocol: PROTOCOL,
            pid: 1,
            name: "odd".into(),
            cfg,
        },
    )
    .unwrap();
    match wire::read_frame(&mut c).unwrap() {
        Some(Frame::Refused { reason, .. }) => assert!(reason.contains("VDConfig"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Another protocol version.
    let mut c = UnixStream::connect(s.path()).unwrap();
    wire::write_frame(
        &mut c,
        &Frame::HelloSet {
            protocol: PROTOCOL + 1,
            pid: 1,
            name: "future".into(),
            cfg: vdi_spec::VdConfig::client(1, vdi_spec::Features(0)),
        },
    )
    .unwrap();
    assert!(matches!(
        wire::read_frame(&mut c).unwrap(),
        Some(Frame::Refused { .. })
    ));
    // The server still serves.
    assert!(s.status().sets.is_empty());
    assert_eq!(
        numbers(&sql(&s, "BACKUP DATABASE sales TO VIRTUAL_DEVICE='x'")),
        vec![3201, 3013]
    );
}

/// The content identity `server` reports for `db`.
fn content_of(server: &Server, db: &str) -> String {
    let st = server.status();
    st.databases
        .iter()
        .find(|d| d.name == db)
        .map(|d| d.content.clone())
        .expect("the database exists")
}

/// Runs `text` (naming the VIRTUAL_DEVICE clauses of set `tag` where it
/// says `{devices}`) with the client serving `media`; the messages.
fn transfer(server: &Server, tag: &str, media: &[Arc<Mutex<Vec<u8>>>], text: &str) -> Vec<u32> {
    let set = set_at(server.path());
    let n = media.len() as u32;
    assert_eq!(create(&set, tag, n), Hresult::NOERROR);
    let names = device_names(tag, n)
        .iter()
        .map(|d| format!("VIRTUAL_DEVICE=N'{d}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let stmt = sql_async(server, text.replace("{devices}", &names));
    if let Ok(devs) = open_all(&set, tag, n) {
        run_devices(&devs, media, Sink::Keep);
    }
    set.close();
    numbers(&stmt.join().unwrap())
}

/// Clause `media.header`: backups restore on a server that never made them
/// (a new process: its history is empty) — the older as well as the newer,
/// each giving the database the content it had when it was backed up; the
/// families of two different backups together are refused (Msg 3241).
#[test]
fn backups_restore_on_a_new_server_older_and_newer() {
    let a = server("made-here");
    let fresh = || -> Vec<Arc<Mutex<Vec<u8>>>> { (0..2).map(|_| Arc::default()).collect() };
    let (old, new) = (fresh(), fresh());
    let old_content = content_of(&a, "sales");
    let backup = "BACKUP DATABASE sales TO {devices}";
    assert_eq!(transfer(&a, "b-old", &old, backup), vec![4035, 3014]);
    let new_content = content_of(&a, "sales");
    assert_ne!(old_content, new_content, "the database lived on");
    assert_eq!(transfer(&a, "b-new", &new, backup), vec![4035, 3014]);
    drop(a);

    let b = server("restarted");
    assert_eq!(b.status().backups, 0);
    let restore = "RESTORE DATABASE [sales] FROM {devices}";
    for (media, content, tag) in [(&new, &new_content, "r-new"), (&old, &old_content, "r-old")] {
        let m = transfer(&b, tag, media, restore);
        assert_eq!(m.last(), Some(&3014), "{tag}: {m:?}");
        assert_eq!(&content_of(&b, "sales"), content, "{tag}");
    }
    // One family of each backup: not one media set.
    let mixed = vec![old[0].clone(), new[1].clone()];
    let m = transfer(&b, "r-mixed", &mixed, restore);
    assert_eq!(m, vec![3241, 3013]);
    let st = b.status();
    let db = st.databases.iter().find(|d| d.name == "sales").unwrap();
    assert_eq!(
        db.state, "restoring",
        "a failed restore leaves it restoring"
    );
}

/// The data directory: a backup made before a restart restores after it,
/// on a new server over the same directory, whose history still holds it.
#[test]
fn state_survives_a_restart_in_the_data_dir() {
    let dir = std::env::temp_dir().join(format!("vdisim-test-{}-datadir", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A dropped server's connection threads end on their own; its data
    // directory's lock goes with the last of them.
    let start = |tag: &str| {
        let t0 = std::time::Instant::now();
        loop {
            let mut cfg = ServeConfig::new(temp_socket(tag));
            cfg.databases = vec![("sales".into(), 3 * 65536 + 4096)];
            cfg.data_dir = Some(dir.clone());
            match Server::start(cfg) {
                Ok(s) => return s,
                Err(e) if t0.elapsed() < std::time::Duration::from_secs(20) => {
                    assert!(e.to_string().contains("in use"), "{e}");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("server starts: {e}"),
            }
        }
    };
    let a = start("dd-a");
    let media: Vec<Arc<Mutex<Vec<u8>>>> = (0..2).map(|_| Arc::default()).collect();
    let content = content_of(&a, "sales");
    let m = transfer(&a, "dd-b", &media, "BACKUP DATABASE sales TO {devices}");
    assert_eq!(m, vec![4035, 3014]);
    let moved = content_of(&a, "sales");
    drop(a);
    let b = start("dd-b");
    assert_eq!(b.status().backups, 1, "the history survived");
    assert_eq!(content_of(&b, "sales"), moved, "the database survived");
    let m = transfer(
        &b,
        "dd-r",
        &media,
        "RESTORE DATABASE [sales] FROM {devices}",
    );
    assert_eq!(m.last(), Some(&3014), "{m:?}");
    assert_eq!(content_of(&b, "sales"), content);
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Clauses `open-in-secondary.ok` and `abort.secondary-death-undetected`
/// through `vdisim serve`: a second set object (as a secondary process
/// would) joins the live set by name, serves device 1 and dies holding a
/// command. The server is told nothing: the set stays live and the
/// statement keeps waiting until the primary aborts it.
#[test]
fn a_secondary_joins_by_name_and_its_death_goes_unnoticed() {
    let s = server("secondary");
    let primary = set_at(s.path());
    // Before the set exists (or is configured) there is nothing to join.
    let early = set_at(s.path());
    assert_eq!(
        early.open_in_secondary(1, "sec").code(),
        Hresult::VD_E_PROTOCOL
    );
    assert_eq!(create(&primary, "sec", 2), Hresult::NOERROR);
    let stmt = sql_async(
        &s,
        "BACKUP DATABASE sales TO VIRTUAL_DEVICE='sec', VIRTUAL_DEVICE='sec-dev1'".into(),
    );
    primary
        .get_configuration(Timeout::Ms(20_000))
        .result
        .expect("configured");
    let secondary = set_at(s.path());
    assert_eq!(
        secondary.open_in_secondary(1, "sec").code(),
        Hresult::NOERROR
    );
    // A second OpenInSecondary on the same object: already open here.
    assert_eq!(
        secondary.open_in_secondary(1, "sec").code(),
        Hresult::VD_E_PROTOCOL
    );
    let d1 = secondary
        .open_device("sec-dev1")
        .result
        .expect("dev1 opens in the secondary");
    let d0 = primary
        .open_device("sec")
        .result
        .expect("dev0 opens in the primary");
    // The secondary takes a command and dies with it.
    let held = secondary.get_command(d1, Timeout::Ms(20_000)).result;
    assert!(held.is_ok(), "the secondary got a command: {held:?}");
    secondary.die();
    // The primary serves device 0 for a while: the set stays live, the
    // statement unfinished (nothing told the server of the death).
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_millis(300) {
        if let Ok(c) = primary.get_command(d0, Timeout::Ms(50)).result {
            let bytes = u64::from(c.size);
            primary.complete_command(d0, &c, vdi_spec::Win32(0), bytes, c.position);
        }
    }
    assert!(
        !stmt.is_finished(),
        "the statement still waits for device 1"
    );
    assert_eq!(s.status().sets, vec!["sec".to_string()], "the set is live");
    // The primary, watching its secondary, aborts.
    assert_eq!(primary.signal_abort().code(), Hresult::NOERROR);
    let _ = primary.close();
    let msgs = stmt.join().unwrap();
    assert_eq!(msgs.last().unwrap().message.number, 3013, "{msgs:?}");
}
