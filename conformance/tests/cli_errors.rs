//! The `vdisim` binary's clear errors, run as a user runs it: `vdisim
//! sqlcmd` against a fake `vdisim serve` (a Unix socket speaking the
//! control protocol's frames) for a lost connection, `-t` and Ctrl-C;
//! help; input encodings and sizes; missing scenario directories; a
//! library that does not load; `--faults`; a closed standard output.

#![cfg(unix)]

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vdi_host::remote::wire::{self, Frame, LineMessage, Request, Response, ServerStatus};
use vdi_model::outcome::SqlMessage;

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");

/// Longest any fake-server wait lasts (a client that never sends what is
/// awaited fails the test instead of hanging it).
const BOUND: Duration = Duration::from_secs(15);

const LOST: &str = "Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : TCP Provider: An existing connection was forcibly closed by the remote host.\n\
Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : Communication link failure.\n";

const BACKUP: &str = "BACKUP DATABASE sales TO VIRTUAL_DEVICE='v'";

/// A fresh directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "vdisim-cli-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the fake server does with a `Sql` request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnSql {
    /// Answers with a successful backup's messages.
    Succeed,
    /// Closes the connection without an answer (a server that died).
    Close,
    /// Waits for a `Cancel`, then answers the batch cancelled (Msg 3204
    /// and 3013); later batches succeed.
    AwaitCancel,
}

/// A fake `vdisim serve`: accepts connections one after another, reads
/// each one's `HelloControl`, answers `Status` (as server `FAKE`) and
/// treats `Sql` as `on_sql` says. It logs what it received (`sql <text>`,
/// `cancel`, `no cancel`) and signals every `Sql` on `got_sql`.
struct FakeServer {
    _dir: TempDir,
    path: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    got_sql: mpsc::Receiver<()>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn start(on_sql: OnSql) -> FakeServer {
        let dir = TempDir::new("fake");
        let path = dir.join("serve.sock");
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, got_sql) = mpsc::channel();
        let thread = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((s, _)) => serve_one(s, on_sql, &log, &tx),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        FakeServer {
            _dir: dir,
            path,
            log,
            got_sql,
            stop,
            thread: Some(thread),
        }
    }

    fn sock(&self) -> &str {
        self.path.to_str().unwrap()
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(s: &mut UnixStream, r: Response) -> bool {
    wire::write_frame(s, &Frame::Response(r)).is_ok()
}

fn backup_messages() -> Vec<LineMessage> {
    vec![LineMessage {
        message: SqlMessage::info(
            3014,
            "BACKUP DATABASE successfully processed 1 pages in 0.001 seconds (1.000 MB/sec).",
        ),
        line: 1,
    }]
}

fn serve_one(mut s: UnixStream, on_sql: OnSql, log: &Mutex<Vec<String>>, tx: &mpsc::Sender<()>) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    let say = |what: String| log.lock().unwrap().push(what);
    if !matches!(
        wire::read_frame(&mut s),
        Ok(Some(Frame::HelloControl { .. }))
    ) {
        say("no hello".into());
        return;
    }
    let mut cancel_pending = on_sql == OnSql::AwaitCancel;
    loop {
        let req = match wire::read_frame(&mut s) {
            Ok(Some(Frame::Request(r))) => r,
            _ => return,
        };
        match req {
            Request::Status => {
                let status = ServerStatus {
                    server: "FAKE".into(),
                    ..ServerStatus::default()
                };
                if !answer(&mut s, Response::Status { status }) {
                    return;
                }
            }
            Request::Sql { text, .. } => {
                say(format!("sql {text}"));
                let _ = tx.send(());
                match on_sql {
                    OnSql::Close => return,
                    OnSql::AwaitCancel if cancel_pending => {
                        cancel_pending = false;
                        match wire::read_frame(&mut s) {
                            Ok(Some(Frame::Request(Request::Cancel))) => say("cancel".into()),
                            _ => {
                                say("no cancel".into());
                                return;
                            }
                        }
                        let messages = vec![
                            LineMessage {
                                message: SqlMessage::error(
                                    3204,
                                    "The backup or restore was aborted.",
                                ),
                                line: 1,
                            },
                            LineMessage {
                                message: SqlMessage::error(
                                    3013,
                                    "BACKUP DATABASE is terminating abnormally.",
                                ),
                                line: 1,
                            },
                        ];
                        let cancelled = Response::Sql {
                            messages,
                            cancelled: true,
                        };
                        if !answer(&mut s, cancelled) {
                            return;
                        }
                    }
                    _ => {
                        let ok = Response::Sql {
                            messages: backup_messages(),
                            cancelled: false,
                        };
                        if !answer(&mut s, ok) {
                            return;
                        }
                    }
                }
            }
            Request::Cancel => say("cancel while idle".into()),
            other => say(format!("unexpected {other:?}")),
        }
    }
}

fn vdisim(args: &[&str]) -> Output {
    Command::new(VDISIM)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("vdisim runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn no_panic(o: &Output) {
    let err = text(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

// ----- 1. a lost connection --------------------------------------------------------------

#[test]
fn lost_connection_is_an_error_with_or_without_b() {
    for b in [false, true] {
        let fake = FakeServer::start(OnSql::Close);
        let mut args = vec!["sqlcmd", "-S", fake.sock(), "-Q", BACKUP];
        if b {
            args.push("-b");
        }
        let o = vdisim(&args);
        assert_eq!(o.status.code(), Some(1), "-b {b}");
        assert_eq!(text(&o.stderr), LOST, "-b {b}");
        assert_eq!(text(&o.stdout), "");
        assert_eq!(fake.log(), vec![format!("sql {BACKUP}")]);
    }
}

// ----- 2. -t and Ctrl-C --------------------------------------------------------------------

#[test]
fn query_timeout_cancels_the_batch() {
    let fake = FakeServer::start(OnSql::AwaitCancel);
    let o = vdisim(&["sqlcmd", "-S", fake.sock(), "-b", "-t", "1", "-Q", BACKUP]);
    assert_eq!(
        text(&o.stderr),
        "Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : Query timeout expired.\n"
    );
    assert_eq!(o.status.code(), Some(1));
    // The cancelled batch's messages are discarded, as sqlcmd does.
    assert_eq!(text(&o.stdout), "");
    assert_eq!(fake.log(), vec![format!("sql {BACKUP}"), "cancel".into()]);
}

#[test]
fn query_timeout_without_b_goes_on_with_the_next_batch() {
    let fake = FakeServer::start(OnSql::AwaitCancel);
    let q = format!("{BACKUP}\nGO\nBACKUP LOG sales TO VIRTUAL_DEVICE='w'");
    let o = vdisim(&["sqlcmd", "-S", fake.sock(), "-t1", "-Q", &q]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("Query timeout expired."));
    assert!(text(&o.stdout).contains("BACKUP DATABASE successfully processed"));
    let log = fake.log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[1], "cancel");
    assert!(log[2].starts_with("sql BACKUP LOG"), "{log:?}");
}

#[test]
fn query_timeout_out_of_range_is_a_usage_error() {
    for bad in ["65535", "-1", "99999999999"] {
        let o = vdisim(&["sqlcmd", "-t", bad, "-Q", BACKUP]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert_eq!(
            text(&o.stderr),
            format!(
                "Sqlcmd: '-t {bad}': value must be greater than or equal to 0 and less than or equal to 65534.\n"
            )
        );
    }
    let o = vdisim(&["sqlcmd", "-t", "soon", "-Q", BACKUP]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("'-t soon': Invalid argument"));
}

#[test]
fn ctrl_c_during_a_batch_cancels_it() {
    let fake = FakeServer::start(OnSql::AwaitCancel);
    let child = Command::new(VDISIM)
        .args(["sqlcmd", "-S", fake.sock(), "-Q", BACKUP])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    fake.got_sql
        .recv_timeout(BOUND)
        .expect("sqlcmd sends the batch");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        text(&o.stderr),
        "Sqlcmd: Warning: The last operation was terminated because the user pressed CTRL+C.\n"
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(fake.log(), vec![format!("sql {BACKUP}"), "cancel".into()]);
}

// ----- 3. help ---------------------------------------------------------------------------

#[test]
fn sqlcmd_help_in_every_form() {
    let dir = TempDir::new("help");
    let link = dir.join("sqlcmd");
    std::os::unix::fs::symlink(VDISIM, &link).unwrap();
    let runs = [
        Command::new(VDISIM).args(["sqlcmd", "--help"]).output(),
        Command::new(VDISIM).args(["sqlcmd", "-?"]).output(),
        Command::new(VDISIM)
            .args(["sqlcmd", "-S", "x", "--help"])
            .output(),
        Command::new(&link).arg("--help").output(),
        Command::new(&link).arg("-?").output(),
    ];
    for (i, o) in runs.into_iter().enumerate() {
        let o = o.unwrap();
        assert_eq!(o.status.code(), Some(0), "form {i}: {}", text(&o.stderr));
        assert!(
            text(&o.stdout).contains("usage: sqlcmd")
                && text(&o.stdout).contains("-t query timeout"),
            "form {i}: {}",
            text(&o.stdout)
        );
    }
}

// ----- 4. input ----------------------------------------------------------------------------

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let mut b = if big_endian {
        vec![0xFE, 0xFF]
    } else {
        vec![0xFF, 0xFE]
    };
    for u in text.encode_utf16() {
        b.extend_from_slice(&if big_endian {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        });
    }
    b
}

#[test]
fn input_files_in_utf16_and_utf8_with_a_mark_run() {
    let dir = TempDir::new("enc");
    let script = "BACKUP DATABASE café TO VIRTUAL_DEVICE='v'\r\nGO\r\n";
    let files = [
        ("le.sql", utf16(script, false)),
        ("be.sql", utf16(script, true)),
        (
            "bom8.sql",
            [&[0xEF, 0xBB, 0xBF][..], script.as_bytes()].concat(),
        ),
    ];
    for (name, bytes) in files {
        let fake = FakeServer::start(OnSql::Succeed);
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let o = vdisim(&["sqlcmd", "-S", fake.sock(), "-b", "-i", p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o.stderr));
        assert_eq!(
            fake.log(),
            vec!["sql BACKUP DATABASE café TO VIRTUAL_DEVICE='v'\r\n".to_string()],
            "{name}"
        );
    }
}

#[test]
fn input_files_in_other_encodings_are_named_and_refused() {
    let dir = TempDir::new("badenc");
    let latin1 = dir.join("latin1.sql");
    std::fs::write(&latin1, b"BACKUP DATABASE caf\xe9 TO VIRTUAL_DEVICE='v'").unwrap();
    let fake = FakeServer::start(OnSql::Succeed);
    let o = vdisim(&["sqlcmd", "-S", fake.sock(), "-i", latin1.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        format!(
            "Sqlcmd: '{}': the file is not UTF-8 (byte 0xE9 at offset 19) and has no UTF-16 byte order mark; save it as UTF-8 (with or without a byte order mark) or as UTF-16 with a byte order mark.\n",
            latin1.display()
        )
    );
    assert!(fake.log().is_empty(), "nothing runs");
    let missing = dir.join("absent.sql");
    let o = vdisim(&["sqlcmd", "-S", fake.sock(), "-i", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        format!("Sqlcmd: '{}': Invalid filename.\n", missing.display())
    );
}

#[test]
fn binary_standard_input_is_refused_with_a_message() {
    let fake = FakeServer::start(OnSql::Succeed);
    let mut child = Command::new(VDISIM)
        .args(["sqlcmd", "-S", fake.sock()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"BACKUP \x80\x81\xfe\nGO\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "Sqlcmd: Error: standard input is not UTF-8 text (line 1); pipe T-SQL as UTF-8, or save it to a file and pass it with -i (which also reads UTF-16 with a byte order mark).\n"
    );
    assert!(fake.log().is_empty());
}

#[test]
fn an_output_file_that_cannot_be_written_is_named() {
    let dir = TempDir::new("out");
    let bad = dir.join("no-such-dir").join("out.txt");
    let fake = FakeServer::start(OnSql::Succeed);
    let o = vdisim(&[
        "sqlcmd",
        "-S",
        fake.sock(),
        "-o",
        bad.to_str().unwrap(),
        "-Q",
        BACKUP,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        format!(
            "Sqlcmd: '{}': cannot open the output file for writing: No such file or directory (os error 2).\n",
            bad.display()
        )
    );
    assert!(fake.log().iter().all(|l| !l.starts_with("sql")));
}

#[test]
fn a_batch_over_the_bound_is_not_sent() {
    let limit = vdi_spec::bounds::BATCH_BYTES_MAX;
    let dir = TempDir::new("big");
    // Standard input: one batch of 64-byte lines, past the bound.
    let big = dir.join("big.sql");
    let line = format!("-- {}\n", "x".repeat(60));
    let lines = limit / line.len() + 2;
    std::fs::write(&big, line.repeat(lines)).unwrap();
    let fake = FakeServer::start(OnSql::Succeed);
    let o = Command::new(VDISIM)
        .args(["sqlcmd", "-S", fake.sock()])
        .stdin(std::fs::File::open(&big).unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.starts_with("Sqlcmd: Error: the batch starting at line 1 is ")
            && err.contains(&format!(
                "bytes; vdisim serve takes batches of at most {limit} bytes"
            ))
            && err.contains("split it with GO"),
        "{err}"
    );
    assert!(fake.log().is_empty(), "{:?}", fake.log());
}

// ----- 5. a scenario directory that is not there -------------------------------------------

#[test]
fn a_missing_scenario_directory_is_an_input_error_everywhere() {
    let dir = TempDir::new("noscen");
    let missing = dir.join("nonexistent");
    let m = missing.to_str().unwrap();
    for cmd in [
        &["list"][..],
        &["explain", "abort.client-death"],
        &["replay", "abort.client-death"],
        &["check-determinism", "--seeds", "1"],
        &["run", "--report-dir", dir.join("r").to_str().unwrap()],
    ] {
        let mut args = vec!["--scenarios", m];
        args.extend_from_slice(cmd);
        let o = vdisim(&args);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}: {}", text(&o.stdout));
        let err = text(&o.stderr);
        assert!(
            err.contains(&format!("scenario directory {m} does not exist")),
            "{cmd:?}: {err}"
        );
    }
}

// ----- 6. a library that does not load --------------------------------------------------------

#[test]
fn an_unloadable_library_is_an_input_error_up_front() {
    let dir = TempDir::new("lib");
    for backend in ["linux-abi", "com"] {
        let o = Command::new(VDISIM)
            .args([
                "run",
                "--backend",
                backend,
                "--filter",
                "create.illegal-name",
                "--report-dir",
                dir.join(backend).to_str().unwrap(),
            ])
            .env("VDISIM_LIBSQLVDI", VDISIM)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{backend}: {}", text(&o.stdout));
        let err = text(&o.stderr);
        for part in [
            &format!("VDISIM_LIBSQLVDI={VDISIM}")[..],
            "cannot be loaded",
            "cargo build -p vdi-standin",
            "unset VDISIM_LIBSQLVDI",
        ] {
            assert!(err.contains(part), "{backend}: no {part:?} in {err}");
        }
        assert!(!dir.join(backend).join("report.json").exists());
    }
}

// ----- 7. --faults -------------------------------------------------------------------------------

#[test]
fn faults_help_lists_every_plan_with_its_side() {
    let serve = vdisim(&["serve", "--faults", "help"]);
    let simulate = vdisim(&["simulate", "--faults", "help"]);
    for o in [&serve, &simulate] {
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    }
    assert_eq!(serve.stdout, simulate.stdout);
    let out = text(&serve.stdout);
    for plan in vdi_model::fault::NAMED_PLANS {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(plan))
            .unwrap_or_else(|| panic!("no line for {plan} in\n{out}"));
        let side = line.split_whitespace().nth(1).unwrap();
        assert!(["server", "client", "both"].contains(&side), "{line}");
    }
    let death = out
        .lines()
        .skip_while(|l| !l.starts_with("server-death"))
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        death.contains("server ")
            && death.contains("VD_E_ABORT")
            && death.contains("connection lost"),
        "{death}"
    );
}

/// Waits (bounded) until something listens at `sock`, or `child` ends.
fn wait_listening(sock: &Path, child: &mut std::process::Child) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < BOUND {
        if UnixStream::connect(sock).is_ok() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn serve_with_no_faults_says_nothing_of_client_faults() {
    let dir = TempDir::new("nofaults");
    let sock = dir.join("s.sock");
    let s = sock.to_str().unwrap();
    let mut child = Command::new(VDISIM)
        .args(["serve", "--ephemeral", "--listen", s, "--faults", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let listening = wait_listening(&sock, &mut child);
    if listening {
        let stop = vdisim(&["serve", "--stop", "--listen", s]);
        assert_eq!(stop.status.code(), Some(0), "{}", text(&stop.stderr));
    } else {
        let _ = child.kill();
    }
    let o = child.wait_with_output().unwrap();
    let err = text(&o.stderr);
    assert!(listening, "vdisim serve --faults none did not serve: {err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("client's"), "{err}");
}

// ----- 8. a closed standard output -----------------------------------------------------------

/// Runs vdisim with standard output a socket whose reader is gone, so
/// every write to it fails with a broken pipe.
fn with_closed_stdout(args: &[&str]) -> Output {
    let (w, r) = UnixStream::pair().unwrap();
    drop(r);
    Command::new(VDISIM)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(w)))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_pipe_ends_the_cli_quietly() {
    let fake = FakeServer::start(OnSql::Succeed);
    for args in [
        &["serve", "--status", "--listen", fake.sock()][..],
        &["list", "--clauses"],
        &["simulate", "--seed", "1"],
    ] {
        let o = with_closed_stdout(args);
        no_panic(&o);
        assert_eq!(text(&o.stderr), "", "{args:?}");
        assert_eq!(o.status.code(), Some(141), "{args:?}");
    }
}

// ----- the sqlserver backend's configuration --------------------------------------------

/// `--backend sqlserver` without a server, with a bad server clock, with a
/// server that cannot be reached, or `--login` without `--sql-server`: an
/// error that says what to give,
/// before any case runs (exit 2).
#[test]
fn sqlserver_backend_configuration_errors() {
    let d = TempDir::new("sqlserver");
    let report = d.0.join("r").display().to_string();
    let run = |extra: &[&str], scale: Option<&str>| {
        let mut c = Command::new(VDISIM);
        c.args([
            "run",
            "--filter",
            "abort.server-signal",
            "--report-dir",
            &report,
        ])
        .args(extra)
        .env_remove("VDISIM_SQLSERVER")
        .stdin(Stdio::null());
        match scale {
            Some(s) => c.env("VDISIM_SQLSERVER_TIME_SCALE", s),
            None => c.env_remove("VDISIM_SQLSERVER_TIME_SCALE"),
        };
        let o = c.output().expect("vdisim runs");
        no_panic(&o);
        (o.status.code(), text(&o.stderr))
    };
    let (code, err) = run(&["--backend", "sqlserver"], None);
    assert_eq!(code, Some(2));
    assert!(err.contains("--sql-server tcp:HOST,PORT"), "{err}");
    let (code, err) = run(
        &["--backend", "sqlserver", "--sql-server", "tcp:127.0.0.1,1"],
        Some("0"),
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("VDISIM_SQLSERVER_TIME_SCALE=\"0\""), "{err}");
    let (code, err) = run(
        &[
            "--backend",
            "sqlserver",
            "--sql-server",
            "tcp:127.0.0.1,notaport",
        ],
        None,
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("not a TCP port"), "{err}");
    // Nothing listens there: an error before any case runs, not a run of
    // cases all unimplemented.
    let (code, err) = run(
        &["--backend", "sqlserver", "--sql-server", "tcp:127.0.0.1,1"],
        None,
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("cannot reach SQL Server at 127.0.0.1:1") && err.contains("--sql-server"),
        "{err}"
    );
    let (code, err) = run(&["--backend", "model", "--login", "sa:x"], None);
    assert_eq!(code, Some(2));
    assert!(err.contains("give --sql-server"), "{err}");
}
