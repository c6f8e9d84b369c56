//! The in-repo client programs (`tests/clients/`) against a `vdisim serve`
//! process, as the client-test suite will run them:
//!
//! - the correct C program in ready-line mode: the test reads `READY`, then
//!   sends the BACKUP (and later the RESTORE of the same files) itself
//!   through `vdisim sqlcmd`;
//! - the correct C++ program in sqlcmd mode: it runs `sqlcmd` (a link to
//!   `vdisim` on PATH) itself;
//!
//! each a backup then a restore of the same files, with 1 and 3 devices:
//! exit 0, the backup recorded, the media holding the whole database, and
//! the database restored from that backup with the backed-up content.
//! Then a flawed variant (SUCCESS_ALWAYS) against a server that aborts the
//! statement exits 0 where the correct program exits 1, and every variant
//! of both sources builds.
//!
//! Needs gcc and g++; without them the tests print `SKIPPED: <why>`.

#![cfg(target_os = "linux")]

#[path = "support/clients.rs"]
mod clients;

use clients::{BuildError, FLAWS, Lang, Op};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");
/// The longest any one program or sqlcmd may take before it is killed.
const BOUND: Duration = Duration::from_secs(60);
const DB_SIZE: u64 = 1 << 20;

/// Builds a program, or `None` after printing `SKIPPED:` when a compiler is
/// missing.
fn program(lang: Lang, flaw: Option<&str>) -> Option<PathBuf> {
    match clients::build(lang, flaw) {
        Ok(p) => Some(p),
        Err(BuildError::Unavailable(why)) => {
            println!("SKIPPED: {why}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// A private directory, removed with everything in it when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("vdisim-clients-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("bin")).unwrap();
        // `sqlcmd` on PATH is a link to vdisim.
        std::os::unix::fs::symlink(VDISIM, d.join("bin/sqlcmd")).unwrap();
        Scratch(d)
    }

    fn path(&self) -> String {
        format!(
            "{}:{}",
            self.0.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) when dropped.
struct Guard(Option<Child>);

impl Guard {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    /// Waits at most `bound`; kills the child and panics past it.
    fn wait(&mut self, what: &str, bound: Duration) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child().try_wait().unwrap() {
                self.0 = None;
                return s;
            }
            if t0.elapsed() > bound {
                let _ = self.child().kill();
                let _ = self.child().wait();
                self.0 = None;
                panic!("{what} did not end within {bound:?}: killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads a pipe to its end on a thread.
fn collect(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// A `vdisim serve` child on a private socket, stopped with the test (and,
/// through `--exit-with`, with the test process).
struct Serve {
    child: Guard,
    sock: PathBuf,
}

impl Drop for Serve {
    /// Asks the server to stop (it removes its socket and buffers), and
    /// kills it if it has not within 5 s.
    fn drop(&mut self) {
        use vdi_host::remote::{control::Control, wire::Request};
        if let Ok(mut c) = Control::connect(&self.sock, "client-programs") {
            let _ = c.request(Request::Shutdown);
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.child().try_wait() {
                self.child.0 = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Serve {
    fn start(dir: &Path, faults: Option<&str>) -> Serve {
        let sock = dir.join("serve.sock");
        let mut c = Command::new(VDISIM);
        c.args(["serve", "--ephemeral", "--listen"])
            .arg(&sock)
            .args(["--exit-with", &std::process::id().to_string()])
            .args(["--database", "sales=1MiB", "--database", "hr=256KiB"]);
        if let Some(f) = faults {
            c.args(["--faults", f]);
        }
        let child = Guard(Some(
            c.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("vdisim serve starts"),
        ));
        let t0 = Instant::now();
        while vdi_host::remote::control::Control::connect(&sock, "client-programs").is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "serve never listened"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Serve { child, sock }
    }

    fn server_arg(&self) -> String {
        self.sock.display().to_string()
    }

    fn status(&self) -> serde_json::Value {
        let o = Command::new(VDISIM)
            .args(["serve", "--status", "--listen"])
            .arg(&self.sock)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn database(&self, name: &str) -> serde_json::Value {
        let st = self.status();
        st["databases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no database {name} in {st}"))
    }

    /// `vdisim sqlcmd -S <socket> -E -b -Q <tsql>`: exit status and output.
    fn sqlcmd(&self, tsql: &str) -> (ExitStatus, String) {
        let mut g = Guard(Some(
            Command::new(VDISIM)
                .arg("sqlcmd")
                .arg("-S")
                .arg(&self.sock)
                .args(["-E", "-b", "-Q", tsql])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        ));
        let out = collect(g.child().stdout.take().unwrap());
        let err = collect(g.child().stderr.take().unwrap());
        let st = g.wait("sqlcmd", BOUND);
        (st, out.join().unwrap() + &err.join().unwrap())
    }
}

/// The command for a program of this suite: the contract's arguments, the
/// server's socket for the library, no plan, no LD_LIBRARY_PATH (the
/// programs carry a RUNPATH).
fn client_command(
    exe: &Path,
    serve: &Serve,
    scratch: &Scratch,
    op: Op,
    set: &str,
    devices: u32,
    file: &Path,
) -> Command {
    let mut c = Command::new(exe);
    c.args(clients::args(
        op,
        "sales",
        set,
        devices,
        file,
        &serve.server_arg(),
    ))
    .env("VDISIM_SERVER", &serve.sock)
    .env("PATH", scratch.path())
    .env_remove("VDISIM_PLAN")
    .env_remove("LD_LIBRARY_PATH")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

/// Runs a sqlcmd-mode program to its end: exit status, stdout, stderr.
fn run_sqlcmd_mode(mut c: Command) -> (ExitStatus, String, String) {
    let mut g = Guard(Some(c.spawn().expect("the program starts")));
    let out = collect(g.child().stdout.take().unwrap());
    let err = collect(g.child().stderr.take().unwrap());
    let st = g.wait("the client program", BOUND);
    (st, out.join().unwrap(), err.join().unwrap())
}

/// Runs a ready-line program: waits for `READY`, sends the statement
/// through `vdisim sqlcmd`, waits for the program. Exit status, sqlcmd's
/// exit status and output, the program's stderr.
fn run_ready_line(
    mut c: Command,
    serve: &Serve,
    tsql: &str,
) -> (ExitStatus, ExitStatus, String, String) {
    let mut g = Guard(Some(c.spawn().expect("the program starts")));
    let err = collect(g.child().stderr.take().unwrap());
    let stdout = g.child().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok);
        let _ = tx.send(first);
        lines.map_while(Result::ok).collect::<Vec<_>>()
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(l)) => assert_eq!(l, "READY", "the first line on stdout"),
        other => {
            drop(g);
            panic!(
                "no READY line ({other:?}); stderr:\n{}",
                err.join().unwrap()
            );
        }
    }
    let (sql_status, sql_out) = serve.sqlcmd(tsql);
    let st = g.wait("the client program", BOUND);
    let rest = reader.join().unwrap();
    assert!(rest.is_empty(), "stdout holds only READY, also: {rest:?}");
    (st, sql_status, sql_out, err.join().unwrap())
}

/// One backup then the restore of the same files with `lang`'s correct
/// program, checked against the server's status.
fn roundtrip(lang: Lang, exe: &Path, serve: &Serve, scratch: &Scratch, devices: u32) {
    roundtrip_split(lang, exe, serve, scratch, devices, 0);
}

/// [`roundtrip`] with the last `secondary` devices served by a secondary
/// process of the program (`VDICLIENT_SECONDARY`; 0: one process).
fn roundtrip_split(
    lang: Lang,
    exe: &Path,
    serve: &Serve,
    scratch: &Scratch,
    devices: u32,
    secondary: u32,
) {
    let tag = format!("{lang:?}-{devices}-{secondary}").to_lowercase();
    let file = scratch.0.join(format!("media-{tag}"));
    let before = serve.database("sales");
    let backups_before = serve.status()["backups"].as_u64().unwrap();
    for op in [Op::Backup, Op::Restore] {
        // A set name per run, as products make one per operation.
        let set = format!("vdisim-{tag}-{}", op.as_str());
        let mut c = client_command(exe, serve, scratch, op, &set, devices, &file);
        if secondary > 0 {
            c.env("VDICLIENT_SECONDARY", secondary.to_string());
        }
        let t0 = Instant::now();
        let (st, err) = match lang {
            Lang::C => {
                let tsql = clients::statement(op, "sales", &set, devices);
                let (st, sql, sql_out, err) = run_ready_line(c, serve, &tsql);
                assert!(sql.success(), "sqlcmd {tsql}: {sql_out}\nclient:\n{err}");
                assert!(sql_out.contains("successfully processed"), "{sql_out}");
                (st, err)
            }
            Lang::Cpp => {
                let (st, out, err) = run_sqlcmd_mode(c);
                assert!(out.is_empty(), "stdout stays empty in sqlcmd mode: {out}");
                assert!(err.contains("successfully processed"), "{err}");
                (st, err)
            }
        };
        println!(
            "{lang:?} {} on {devices} device(s): {st} in {:?}",
            op.as_str(),
            t0.elapsed()
        );
        assert!(st.success(), "{lang:?} {} failed: {st}\n{err}", op.as_str());
        assert!(err.contains(&format!("{} succeeded", op.as_str())), "{err}");
        if secondary > 0 {
            let first = devices - secondary;
            assert!(
                err.contains(&format!("secondary process: devices {first}..")),
                "the secondary process served the last devices:\n{err}"
            );
            assert_eq!(
                err.matches(&format!("{} succeeded", op.as_str())).count(),
                2,
                "both processes succeeded:\n{err}"
            );
        }
        let status = serve.status();
        assert_eq!(
            status["sets"].as_array().unwrap().len(),
            0,
            "every set closed: {status}"
        );
        if op == Op::Backup {
            assert_eq!(status["backups"].as_u64().unwrap(), backups_before + 1);
            let stored: u64 = clients::media_paths(&file, devices)
                .iter()
                .map(|p| std::fs::metadata(p).expect("media file").len())
                .sum();
            let headers = devices as u64 * vdi_model::media::HEADER_BYTES;
            assert_eq!(
                stored,
                DB_SIZE + headers,
                "the media hold the whole database and a media header per family"
            );
        }
    }
    let after = serve.database("sales");
    assert_eq!(after["state"], "online", "{after}");
    assert_eq!(
        after["restored_from"].as_u64(),
        Some(backups_before + 1),
        "restored from the backup just made: {after}"
    );
    assert_eq!(
        after["content"], before["content"],
        "the restored content is the backed-up content"
    );
    assert_eq!(after["size"], DB_SIZE);
}

#[test]
fn c_client_in_ready_line_mode_backs_up_and_restores() {
    let Some(exe) = program(Lang::C, None) else {
        return;
    };
    let scratch = Scratch::new("c");
    let serve = Serve::start(&scratch.0, None);
    let hr = serve.database("hr");
    for devices in [1, 3] {
        roundtrip(Lang::C, &exe, &serve, &scratch, devices);
    }
    assert_eq!(serve.database("hr"), hr, "hr untouched");
}

/// Issue 17: a two-process client (the secondary joins the set with
/// OpenInSecondaryEx through `vdisim serve` and maps the same shared
/// buffers) backs up a striped database and restores it byte-identically.
#[test]
fn c_client_with_a_secondary_process_backs_up_and_restores() {
    let Some(exe) = program(Lang::C, None) else {
        return;
    };
    let scratch = Scratch::new("c2");
    let serve = Serve::start(&scratch.0, None);
    roundtrip_split(Lang::C, &exe, &serve, &scratch, 4, 2);
    roundtrip_split(Lang::C, &exe, &serve, &scratch, 2, 1);
}

/// A secondary of a set that is not live on the server: OpenInSecondaryEx
/// answers VD_E_PROTOCOL (the set "has not been created"), the library says
/// why, and the program fails without touching another set.
#[test]
fn a_secondary_of_no_live_set_is_refused() {
    let Some(exe) = program(Lang::C, None) else {
        return;
    };
    let scratch = Scratch::new("c2-none");
    let serve = Serve::start(&scratch.0, None);
    let media = scratch.0.join("media-none");
    let mut c = Command::new(&exe);
    c.args(["--secondary", "backup", "no-such-set", "1", "2"])
        .arg(&media)
        .env("VDISIM_SERVER", &serve.sock)
        .env_remove("VDISIM_PLAN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (st, out, err) = run_sqlcmd_mode(c);
    assert_eq!(st.code(), Some(1), "the secondary fails: {err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("OpenInSecondaryEx 'no-such-set' = VD_E_PROTOCOL"),
        "{err}"
    );
    assert!(err.contains("no live set named 'no-such-set'"), "{err}");
    let status = serve.status();
    assert_eq!(status["sets"].as_array().unwrap().len(), 0, "{status}");
}

#[test]
fn cpp_client_in_sqlcmd_mode_backs_up_and_restores() {
    let Some(exe) = program(Lang::Cpp, None) else {
        return;
    };
    let scratch = Scratch::new("cpp");
    let serve = Serve::start(&scratch.0, None);
    for devices in [1, 3] {
        roundtrip(Lang::Cpp, &exe, &serve, &scratch, devices);
    }
}

/// The server aborts the BACKUP: the correct program says it failed (exit
/// 1), the SUCCESS_ALWAYS variant says it succeeded (exit 0) although no
/// backup was recorded.
#[test]
fn success_always_variant_reports_success_when_the_server_aborts() {
    let (Some(good), Some(bad)) = (
        program(Lang::Cpp, None),
        program(Lang::Cpp, Some("SUCCESS_ALWAYS")),
    ) else {
        return;
    };
    let scratch = Scratch::new("abort");
    let serve = Serve::start(&scratch.0, Some("server-abort"));
    for (exe, want) in [(&good, 1), (&bad, 0)] {
        let name = exe.file_name().unwrap().to_string_lossy().into_owned();
        let file = scratch.0.join(format!("media-{name}"));
        let c = client_command(exe, &serve, &scratch, Op::Backup, &name, 2, &file);
        let (st, _, err) = run_sqlcmd_mode(c);
        println!("{name} against server-abort: {st}");
        assert!(err.contains("VD_E_ABORT"), "{err}");
        assert!(err.contains("terminating abnormally"), "{err}");
        assert!(err.contains("backup FAILED"), "{err}");
        assert_eq!(st.code(), Some(want), "{name}: {err}");
    }
    let status = serve.status();
    assert_eq!(status["backups"], 0, "no backup was recorded: {status}");
    assert_eq!(status["sets"].as_array().unwrap().len(), 0, "{status}");
}

/// Every variant of both sources compiles with -Werror (the flaws are
/// compiled in only where their macro is defined, so a variant nobody built
/// could rot).
#[test]
fn every_variant_of_both_programs_builds() {
    let variants: Vec<(Lang, Option<&str>)> = Lang::ALL
        .iter()
        .flat_map(|&l| {
            std::iter::once(None)
                .chain(FLAWS.iter().map(|f| Some(*f)))
                .map(move |f| (l, f))
        })
        .collect();
    let t0 = Instant::now();
    let results: Vec<_> = std::thread::scope(|s| {
        // Two builders: the machine's cores are shared.
        let chunks: Vec<_> = variants.chunks(variants.len().div_ceil(2)).collect();
        let hs: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&(l, f)| (l, f, clients::build(l, f)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    println!("{} variants built in {:?}", results.len(), t0.elapsed());
    let mut names = std::collections::BTreeSet::new();
    for (l, f, r) in results {
        match r {
            Ok(p) => {
                assert!(p.is_file(), "{}", p.display());
                assert!(names.insert(p), "one executable per variant");
            }
            Err(BuildError::Unavailable(why)) => {
                println!("SKIPPED: {why}");
                return;
            }
            Err(e) => panic!("{l:?} {f:?}: {e}"),
        }
    }
    assert!(matches!(
        clients::build(Lang::C, Some("NOT_A_FLAW")),
        Err(BuildError::Failed(_))
    ));
}
