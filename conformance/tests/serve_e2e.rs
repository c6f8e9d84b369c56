//! End to end with real processes: `vdisim serve` running as its own
//! process, the in-project C++ client (sim/standin/samples/cpp_linux_client.cpp)
//! linked against the stand-in `libsqlvdi.so`, starting its BACKUP and
//! RESTORE through `sqlcmd` — a link to `vdisim` on PATH — and the
//! database's content checked afterwards through `vdisim serve --status`.
//! Then the server process is killed mid-stream and the client sees the
//! abort (clause `abort.server-death`). With a data directory: two backups
//! the C++ client made before a server restart restore after it, the
//! newer and the older; and a server killed (SIGKILL) at random moments
//! loses no backup whose success a client saw.
//!
//! Needs g++; without it the C++ part prints `SKIPPED: <why>`.

#![cfg(unix)]

#[path = "support/remote_client.rs"]
mod remote_client;

use remote_client::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use vdi_conformance::backends::abi::library_path;
use vdi_host::remote::control::Control;
use vdi_host::remote::wire::{Request, Response};
use vdi_model::msg::Timeout;
use vdi_spec::Hresult;

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vdisim-e2e-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Serve {
    child: Child,
    sock: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_serve(dir: &Path, databases: &[&str]) -> Serve {
    let mut c = Command::new(VDISIM);
    c.args(["serve", "--ephemeral", "--trace"])
        .arg(dir.join("trace.jsonl"));
    spawn_serve(c, &dir.join("serve.sock"), databases)
}

/// A server keeping its state in `data` (not ephemeral), listening at `sock`.
fn start_serve_in(data: &Path, sock: &Path, databases: &[&str]) -> Serve {
    let mut c = Command::new(VDISIM);
    c.args(["serve", "--data-dir"]).arg(data);
    spawn_serve(c, sock, databases)
}

fn spawn_serve(mut c: Command, sock: &Path, databases: &[&str]) -> Serve {
    let sock = sock.to_path_buf();
    c.arg("--listen").arg(&sock);
    for d in databases {
        c.args(["--database", d]);
    }
    let child = c
        .stderr(Stdio::null())
        .spawn()
        .expect("vdisim serve starts");
    wait_listening(&sock);
    Serve { child, sock }
}

fn status(sock: &Path) -> serde_json::Value {
    let o = Command::new(VDISIM)
        .args(["serve", "--status", "--listen"])
        .arg(sock)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn database<'a>(st: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    st["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no database {name} in {st}"))
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The C++ sample built in a scratch directory, with `sqlcmd` (a link to
/// vdisim) on its PATH.
struct CppClient {
    exe: PathBuf,
    libdir: PathBuf,
    path: String,
}

impl CppClient {
    /// Runs the sample with `args` against the server at `sock`: whether
    /// it exited 0, and its standard output.
    fn run(&self, sock: &Path, args: &[&std::ffi::OsStr]) -> (bool, String) {
        let out = Command::new(&self.exe)
            .args(args)
            .env("VDISIM_SERVER", sock)
            .env("LD_LIBRARY_PATH", &self.libdir)
            .env("PATH", &self.path)
            .env_remove("VDISIM_PLAN")
            .output()
            .unwrap();
        let text = format!(
            "{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

/// Builds the C++ sample in `dir` (None, after saying SKIPPED, without g++).
fn build_cpp_client(dir: &Path) -> Option<CppClient> {
    if !have("g++") {
        println!("SKIPPED: g++ not found: the C++ client was not built");
        return None;
    }
    let lib = library_path().expect("the stand-in library");
    let libdir = lib.parent().unwrap();
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sim/standin");
    let exe = dir.join("cpp_linux_client");
    let o = Command::new("g++")
        .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("samples/cpp_linux_client.cpp"))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(libdir)
        .args(["-lsqlvdi", "-lpthread"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "g++: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // `sqlcmd` on PATH is a link to vdisim.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(VDISIM, bin.join("sqlcmd")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Some(CppClient {
        exe,
        libdir: libdir.to_path_buf(),
        path,
    })
}

#[test]
fn cpp_client_backs_up_and_restores_through_sqlcmd_on_path() {
    let dir = scratch("cpp");
    let Some(client) = build_cpp_client(&dir) else {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    let path = client.path.clone();
    let serve = start_serve(&dir, &["sales=1MiB", "hr=256KiB"]);
    let before = status(&serve.sock);
    let (ok, text) = client.run(
        &serve.sock,
        &["sqlcmd-roundtrip".as_ref(), "sales".as_ref()],
    );
    assert!(ok, "client failed:\n{text}");
    for want in [
        "backup: sqlcmd: Processed",
        "backup: sqlcmd: BACKUP DATABASE successfully processed",
        "backup: sqlcmd exit status = 0",
        "restore: sqlcmd: RESTORE DATABASE successfully processed",
        "restore: sqlcmd exit status = 0",
        "RESULT sqlcmd-roundtrip SUCCEEDED",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let after = status(&serve.sock);
    let (b, a) = (database(&before, "sales"), database(&after, "sales"));
    assert_eq!(a["state"], "online");
    assert_eq!(a["restored_from"], 1, "{after}");
    assert_eq!(
        a["content"], b["content"],
        "the restored content is the backed-up content"
    );
    assert_eq!(a["size"], 1 << 20);
    assert_eq!(
        database(&after, "hr"),
        database(&before, "hr"),
        "hr untouched"
    );
    assert_eq!(after["backups"], 1);
    assert_eq!(after["sets"].as_array().unwrap().len(), 0);

    // The trace saw both sets come and go and both statements, with the
    // server half's events.
    let trace = std::fs::read_to_string(dir.join("trace.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = trace
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |f: &dyn Fn(&serde_json::Value) -> bool| lines.iter().filter(|l| f(l)).count();
    assert_eq!(count(&|l| l["event"] == "created"), 2, "{trace}");
    assert_eq!(count(&|l| l["event"] == "closed"), 2, "{trace}");
    assert_eq!(
        count(&|l| l["statement"]
            .as_str()
            .is_some_and(|t| t.starts_with("BACKUP DATABASE [sales]"))),
        1
    );
    assert_eq!(
        count(&|l| l["statement"]
            .as_str()
            .is_some_and(|t| t.starts_with("RESTORE DATABASE [sales]"))),
        1
    );
    assert!(
        lines.len() > 20,
        "the server half's events follow each statement"
    );

    // sqlcmd's failure path, as a program on PATH would see it: a syntax
    // error with -b exits 1 and prints SQL Server's Msg 102 lines.
    let o = Command::new("sqlcmd")
        .env("PATH", &path)
        .env("VDISIM_SERVER", &serve.sock)
        .args([
            "-S",
            "localhost",
            "-E",
            "-b",
            "-Q",
            "BACKUP DATABSE sales TO VIRTUAL_DEVICE='x'",
        ])
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("Msg 102, Level 15"), "{t}");
    assert!(t.contains("Incorrect syntax near 'DATABSE'"), "{t}");
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killing_the_server_process_aborts_the_client() {
    let dir = scratch("kill");
    let mut serve = start_serve(&dir, &["sales=64MiB"]);
    let set = set_at(&serve.sock);
    assert_eq!(create(&set, "victim", 1), Hresult::NOERROR);
    let sock = serve.sock.clone();
    let stmt = std::thread::spawn(move || {
        let mut c = Control::connect(&sock, "e2e").unwrap();
        c.request(Request::Sql {
            text: "BACKUP DATABASE sales TO VIRTUAL_DEVICE='victim'".into(),
            database: None,
            first_line: 1,
        })
    });
    let devs = open_all(&set, "victim", 1).expect("configured");
    let c = devs[0]
        .get_command(Timeout::Ms(10_000))
        .expect("a first command");
    serve.child.kill().unwrap();
    serve.child.wait().unwrap();
    // The server is gone: once the commands it sent before dying are used
    // up, the client's calls see the abort (never a hang).
    let _ = devs[0].complete(&c, vdi_spec::Win32::ERROR_SUCCESS, u64::from(c.size));
    let mut end = None;
    for _ in 0..64 {
        match devs[0].get_command(Timeout::Ms(10_000)) {
            Ok(c) => {
                let _ = devs[0].complete(&c, vdi_spec::Win32::ERROR_SUCCESS, u64::from(c.size));
            }
            Err(e) => {
                end = Some(e);
                break;
            }
        }
    }
    assert_eq!(end, Some(Hresult::VD_E_ABORT));
    // Close in Abort releases the set (client table, Close × Abort).
    assert_eq!(set.close().code(), Hresult::NOERROR);
    assert!(
        stmt.join().unwrap().is_err(),
        "the SQL connection is lost too"
    );
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Stops `serve` as an operator would (`vdisim serve --stop`) and waits
/// for its process to end.
fn stop(mut serve: Serve) {
    let o = Command::new(VDISIM)
        .args(["serve", "--stop", "--listen"])
        .arg(&serve.sock)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st = serve.child.wait().unwrap();
    assert!(st.success(), "vdisim serve ended with {st}");
}

/// The `done when` of issue 12: two backups made by the C++ sample (through
/// `sqlcmd`) on one server, their media kept in files; a new server on the
/// same data directory still has the database and both backups in its
/// history, and restores the newer and then the older one, the database
/// taking the content it had at each.
#[test]
fn cpp_client_backups_restore_after_a_restart_newer_and_older() {
    let dir = scratch("restart");
    let Some(client) = build_cpp_client(&dir) else {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    let data = dir.join("data");
    let a = start_serve_in(&data, &dir.join("a.sock"), &["x=1MiB"]);
    let mut at_backup = Vec::new();
    for name in ["older", "newer"] {
        let media = dir.join(name);
        std::fs::create_dir_all(&media).unwrap();
        at_backup.push(database(&status(&a.sock), "x")["content"].clone());
        let (ok, text) = client.run(
            &a.sock,
            &["sqlcmd-backup".as_ref(), "x".as_ref(), media.as_os_str()],
        );
        assert!(ok, "{name}: client failed:\n{text}");
        for want in [
            "backup: sqlcmd: BACKUP DATABASE successfully processed",
            "backup: media saved in",
            "RESULT sqlcmd-backup SUCCEEDED",
        ] {
            assert!(text.contains(want), "{name}: missing {want:?} in:\n{text}");
        }
        for i in 0..3 {
            let f = media.join(format!("dev{i}.media"));
            let n = std::fs::metadata(&f).map_or(0, |m| m.len());
            assert!(
                n > vdi_model::media::HEADER_BYTES,
                "{}: {n} bytes",
                f.display()
            );
        }
    }
    assert_ne!(at_backup[0], at_backup[1], "the database lived on");
    let last = status(&a.sock);
    assert_eq!(last["backups"], 2, "{last}");
    let x = database(&last, "x").clone();
    stop(a);

    // A new server process, a new socket, the same data directory, no
    // --database: what it knows of x comes from the directory.
    let b = start_serve_in(&data, &dir.join("b.sock"), &[]);
    let st = status(&b.sock);
    assert_eq!(st["backups"], 2, "the history survived: {st}");
    assert_eq!(database(&st, "x"), &x, "x survived the restart");
    for (name, content) in [("newer", &at_backup[1]), ("older", &at_backup[0])] {
        let media = dir.join(name);
        let (ok, text) = client.run(
            &b.sock,
            &["sqlcmd-restore".as_ref(), "x".as_ref(), media.as_os_str()],
        );
        assert!(ok, "{name}: client failed:\n{text}");
        for want in [
            "restore: media loaded from",
            "restore: sqlcmd: RESTORE DATABASE successfully processed",
            "RESULT sqlcmd-restore SUCCEEDED",
        ] {
            assert!(text.contains(want), "{name}: missing {want:?} in:\n{text}");
        }
        let st = status(&b.sock);
        let db = database(&st, "x");
        assert_eq!(&db["content"], content, "{name}: {st}");
        assert_eq!(db["state"], "online", "{name}");
        assert_eq!(db["size"], 1 << 20, "{name}");
    }
    assert_eq!(status(&b.sock)["backups"], 2, "a restore adds no backup");
    stop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The next number of a splitmix64 sequence (a fixed seed gives the same
/// kill points on every run).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One BACKUP of `db` on a one-device set `name` through the client host,
/// its bytes dropped: `Some(numbers)` of the answer the client saw, `None`
/// when it saw none (the server is gone).
fn backup_once(sock: &Path, db: &str, name: &str) -> Option<Vec<u32>> {
    let set = set_at(sock);
    if create(&set, name, 1) != Hresult::NOERROR {
        return None;
    }
    let (s2, n2) = (set.clone(), name.to_string());
    let devices = std::thread::spawn(move || {
        if let Ok(devs) = open_all(&s2, &n2, 1) {
            run_devices(&devs, &[Arc::new(Mutex::new(Vec::new()))], Sink::Discard);
        }
    });
    let answer = Control::connect(sock, "e2e").ok().and_then(|mut c| {
        c.request(Request::Sql {
            text: format!("BACKUP DATABASE [{db}] TO VIRTUAL_DEVICE='{name}'"),
            database: None,
            first_line: 1,
        })
        .ok()
    });
    if answer.is_none() {
        // No answer: the devices must not wait for a configuration.
        let _ = set.signal_abort();
    }
    devices.join().unwrap();
    let _ = set.close();
    match answer {
        Some(Response::Sql { messages, .. }) => {
            Some(messages.iter().map(|m| m.message.number).collect())
        }
        _ => None,
    }
}

/// The temporary state files left in the data directory `data`.
fn leftover_temporaries(data: &Path) -> Vec<String> {
    std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// `state.json` in `data`, if any, read as a whole: it must parse (never
/// half-written). Returns its history's length.
fn saved_history(data: &Path) -> Option<usize> {
    let text = match std::fs::read_to_string(data.join("state.json")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("state.json: {e}"),
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("state.json half-written: {e}"));
    assert_eq!(v["format"], "vdisim-serve-state");
    Some(v["history"].as_array().expect("a history").len())
}

/// Crash safety of the data directory: a client backs up over and over
/// while the server process is killed (SIGKILL) at pseudo-random moments
/// (fixed seed). After each kill a new server starts on the same
/// directory: `state.json` parses, and its history holds every backup whose
/// success (Msg 3014) the client saw — plus at most the one statement in
/// flight at the kill, whose answer never arrived. The temporary files a
/// kill leaves do not stop the next start, which removes them.
#[test]
fn kill_9_at_random_moments_loses_no_seen_backup() {
    const KILLS: usize = 20;
    let dir = scratch("kill9");
    let data = dir.join("data");
    let mut seed = 0x6b69_6c6c_2d39_u64;
    // Backups the history held at the last start, and seen since.
    let (mut recorded, mut seen) = (0u64, 0u64);
    let mut seen_total = 0u64;
    let mut in_flight_kept = 0;
    let mut leftovers = 0;
    for kill in 0..=KILLS {
        let sock = dir.join(format!("s{kill}.sock"));
        let mut serve = start_serve_in(&data, &sock, &["k=256KiB"]);
        let st = status(&serve.sock);
        let backups = st["backups"].as_u64().unwrap();
        assert!(
            backups >= recorded + seen,
            "kill {kill}: {backups} backups recovered, but {recorded} were recorded and {seen} more seen"
        );
        assert!(
            backups <= recorded + seen + 1,
            "kill {kill}: {backups} backups recovered: more than {recorded} recorded, {seen} seen and one in flight"
        );
        in_flight_kept += backups - recorded - seen;
        let tmps = leftover_temporaries(&data);
        assert!(
            tmps.is_empty(),
            "kill {kill}: left after the start: {tmps:?}"
        );
        assert_eq!(database(&st, "k")["state"], "online", "{st}");
        recorded = backups;
        if kill == KILLS {
            // The last start: one more backup on the recovered directory,
            // then a clean stop.
            let m = backup_once(&serve.sock, "k", "last");
            assert_eq!(m.as_deref().and_then(|m| m.last()), Some(&3014), "{m:?}");
            assert_eq!(status(&serve.sock)["backups"], backups + 1);
            stop(serve);
            break;
        }
        let client = {
            let sock = serve.sock.clone();
            std::thread::spawn(move || {
                let (mut ok, mut other) = (0u64, Vec::new());
                for n in 0.. {
                    match backup_once(&sock, "k", &format!("k{kill}-{n}")) {
                        None => break,
                        Some(m) if m.last() == Some(&3014) => ok += 1,
                        Some(m) => other.push(m),
                    }
                }
                (ok, other)
            })
        };
        let after = splitmix(&mut seed) % 300;
        std::thread::sleep(std::time::Duration::from_millis(after));
        serve.child.kill().unwrap(); // SIGKILL, to this child only
        serve.child.wait().unwrap();
        let (ok, other) = client.join().unwrap();
        assert!(other.is_empty(), "kill {kill}: failed backups: {other:?}");
        seen = ok;
        seen_total += ok;
        // Whatever the moment, the state file on disk is whole.
        if let Some(n) = saved_history(&data) {
            assert!(n as u64 >= recorded + seen, "kill {kill}: {n} saved");
        }
        let tmps = leftover_temporaries(&data);
        leftovers += tmps.len();
        println!("kill {kill} after {after} ms: {ok} backups seen to succeed, leftovers {tmps:?}");
        if kill == KILLS / 2 {
            // A temporary file of another process, as a kill between its
            // write and its rename leaves: never read, never in the way.
            std::fs::write(data.join(".state.json.4000000000.tmp"), b"{\"half").unwrap();
        }
    }
    println!(
        "{KILLS} kills: {seen_total} backups seen to succeed, {recorded} recovered \
         ({in_flight_kept} whose answer the kill cut off), {leftovers} temporary files left by kills"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
