//! Running the vendor's program once: its command line from the template,
//! its environment (the case's server, the library's call log and clock,
//! `sqlcmd` on PATH), its process group (so every process it starts is
//! stopped or killed with it), the ready line, and the bounds that turn a
//! hang into a finding.

use super::template::Template;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vdi_host::remote::control::Control;
use vdi_host::remote::wire::{LineMessage, Request, Response};

/// Bytes of the program's standard output and error kept (the last ones).
pub const TAIL_BYTES: usize = 16 * 1024;

/// How the program's run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgramEnd {
    /// It exited with this code.
    Exited(i32),
    /// A signal the runner did not send ended it.
    Signaled(i32),
    /// The runner killed it: it had not exited `after_ms` real ms after
    /// its statement ended (or, with no statement, after it started).
    Hung { after_ms: u64 },
    /// The case's process fault killed it on purpose.
    KilledByFault,
    /// In ready-line mode it never printed the ready line.
    NeverReady { waited_ms: u64 },
    /// It could not be started.
    SpawnFailed(String),
}

/// What one run of the program left.
#[derive(Clone, Debug)]
pub struct RunRecord {
    pub end: ProgramEnd,
    /// The command line run.
    pub argv: Vec<String>,
    pub stdout_tail: String,
    pub stderr_tail: String,
    /// The library's call log, one JSON object per line.
    pub log_lines: Vec<String>,
    /// In ready-line mode: the messages the runner's statement got.
    pub runner_statement: Option<Result<Vec<LineMessage>, String>>,
    /// Real time the run took.
    pub real_ms: u64,
    /// When the program ended: wall-clock ms since the Unix epoch.
    pub ended_unix_ms: u64,
    /// Processes the program left running outside its process group
    /// (`setsid`, double fork), found and killed after it ended: "pid
    /// (name)".
    pub escaped: Vec<String>,
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Everything one run needs.
pub struct RunSetup<'a> {
    pub template: &'a Template,
    /// The template's placeholder values.
    pub values: BTreeMap<&'static str, String>,
    /// The server's socket.
    pub socket: &'a Path,
    /// A directory holding `sqlcmd` (a link to vdisim), put first on PATH.
    pub bin_dir: &'a Path,
    /// The call log file (created fresh).
    pub log: PathBuf,
    /// `--ready-line`: the line to wait for, and the T-SQL to send then.
    pub ready: Option<(&'a str, String)>,
    pub time_scale: u32,
    /// The directory of the stand-in library, put first on
    /// LD_LIBRARY_PATH.
    pub library_dir: Option<&'a Path>,
    /// A profile file for the library (`VDISIM_PROFILE`).
    pub profile: Option<&'a Path>,
    /// RLIMIT_FSIZE for the program.
    pub file_size_limit: Option<u64>,
    /// How long the program may take to print its ready line.
    pub ready_bound: Duration,
    /// How long it may run on after its statement ended.
    pub exit_bound: Duration,
    /// How long the whole run may take.
    pub run_bound: Duration,
    /// Whether the statement has ended (read from the server).
    pub statement_ended: &'a (dyn Fn() -> bool + Sync),
    /// The program's process group, for the case's process faults.
    pub group: Arc<AtomicI32>,
    /// A Windows program: run it with this prefix's Wine loader.
    pub wine: Option<&'a super::wine::Wine>,
    /// More environment (a Windows program's way to the server: the TCP
    /// bridge's address and secret).
    pub extra_env: &'a [(&'static str, String)],
    /// Set by a process fault that killed the program on purpose.
    pub killed_by_fault: Arc<AtomicBool>,
}

/// Runs the program once and waits for it (within the bounds).
pub fn run(s: &RunSetup<'_>) -> RunRecord {
    let t0 = Instant::now();
    let argv = s.template.fill(&s.values);
    let _ = std::fs::remove_file(&s.log);
    let mut child = match spawn(s, &argv) {
        Ok(c) => c,
        Err(e) => {
            return RunRecord {
                end: ProgramEnd::SpawnFailed(format!("cannot start `{}`: {e}", argv[0])),
                argv,
                stdout_tail: String::new(),
                stderr_tail: String::new(),
                log_lines: Vec::new(),
                runner_statement: None,
                real_ms: 0,
                ended_unix_ms: unix_ms(),
                escaped: Vec::new(),
            };
        }
    };
    let pgid = child.id() as i32;
    s.group.store(pgid, Ordering::SeqCst);
    // Held open until the program ends: some programs take EOF on their
    // standard input as a cancel.
    let stdin = child.stdin.take();
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let out_tail = Arc::new(Mutex::new(Vec::new()));
    let err_tail = Arc::new(Mutex::new(Vec::new()));
    let out_t = child
        .stdout
        .take()
        .map(|o| reader(o, out_tail.clone(), Some(lines_tx)));
    let err_t = child
        .stderr
        .take()
        .map(|e| reader(e, err_tail.clone(), None));
    let mut statement = None;
    let mut end = None;
    if let Some((line, sql)) = &s.ready {
        match wait_ready(&mut child, &lines_rx, line, s.ready_bound) {
            Ok(()) => statement = Some(send_statement(s.socket, sql.clone())),
            Err(e) => end = Some(e),
        }
    }
    let end = end.unwrap_or_else(|| wait_exit(&mut child, s, t0));
    let ended_unix_ms = unix_ms();
    // Nothing the program started outlives the run.
    kill_group(pgid, libc::SIGKILL);
    let _ = child.wait();
    s.group.store(0, Ordering::SeqCst);
    let escaped = reap_escaped(&s.log);
    drop(stdin);
    for t in [out_t, err_t].into_iter().flatten() {
        let _ = t.join();
    }
    let runner_statement = statement.map(|h| {
        h.join()
            .unwrap_or_else(|_| Err("the statement's thread failed".into()))
    });
    let end = if s.killed_by_fault.load(Ordering::SeqCst) {
        ProgramEnd::KilledByFault
    } else {
        end
    };
    RunRecord {
        end,
        argv,
        stdout_tail: tail(&out_tail),
        stderr_tail: tail(&err_tail),
        log_lines: read_log(&s.log),
        runner_statement,
        real_ms: t0.elapsed().as_millis() as u64,
        ended_unix_ms,
        escaped,
    }
}

/// Makes this process the reaper of the programs' orphans (Linux
/// PR_SET_CHILD_SUBREAPER), so that a process a program started in a
/// session or group of its own becomes our child when its parent ends, and
/// [`reap_escaped`] can find it. Elsewhere, nothing.
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers and only
    // changes how this process's orphaned descendants are reparented.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Finds the processes a run's program left behind outside its process
/// group — our children (see [`become_subreaper`]) whose environment names
/// this run's call log — kills and reaps them; "pid (name)" of each. A
/// process that cleared its environment is not recognised.
fn reap_escaped(log: &Path) -> Vec<String> {
    let mut found = Vec::new();
    #[cfg(target_os = "linux")]
    {
        let mark = format!("{}={}", crate::client_test::LOG_ENV, log.display()).into_bytes();
        let me = std::process::id().to_string();
        // A killed escapee's own children reach us only once it has
        // ended: a few rounds.
        for i in 0..20 {
            let mut round = 0;
            let Ok(dir) = std::fs::read_dir("/proc") else {
                break;
            };
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                // "pid (comm) state ppid ...": comm may hold spaces.
                let Some((name, rest)) = stat.rsplit_once(')') else {
                    continue;
                };
                let ppid = rest.split_whitespace().nth(1).unwrap_or("");
                if ppid != me {
                    continue;
                }
                let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                if !env.split(|b| *b == 0).any(|v| v == mark.as_slice()) {
                    continue;
                }
                // SAFETY: kill and waitpid on a child of ours, by pid; no
                // memory is passed but the status word, a local.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    let mut st = 0;
                    libc::waitpid(pid, &mut st, 0);
                }
                let name = name.split_once('(').map_or("", |(_, n)| n);
                found.push(format!("{pid} ({name})"));
                round += 1;
            }
            if round == 0 && i > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = log;
    found
}

fn spawn(s: &RunSetup<'_>, argv: &[String]) -> std::io::Result<Child> {
    let mut c = match s.wine {
        Some(w) => {
            let mut c = Command::new(&w.wine);
            c.args(argv).envs(w.env()).env_remove("DISPLAY");
            c
        }
        None => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env(vdi_host::remote::ENV_SERVER, s.socket)
        .env(crate::client_test::LOG_ENV, &s.log)
        .env("VDISIM_TIME_SCALE", s.time_scale.to_string())
        .env_remove("VDISIM_PLAN");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![s.bin_dir.to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    if let Ok(p) = std::env::join_paths(dirs) {
        c.env("PATH", p);
    }
    if let Some(d) = s.library_dir {
        let old = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
        let mut dirs = vec![d.to_path_buf()];
        dirs.extend(std::env::split_paths(&old));
        if let Ok(p) = std::env::join_paths(dirs) {
            c.env("LD_LIBRARY_PATH", p);
        }
    }
    match s.profile {
        Some(p) => c.env("VDISIM_PROFILE", p),
        None => c.env_remove("VDISIM_PROFILE"),
    };
    // Last: a bridge's address replaces the socket path.
    c.envs(s.extra_env.iter().map(|(k, v)| (*k, v)));
    let fsize = s.file_size_limit;
    // SAFETY: the closure runs in the child between fork and exec and
    // calls only async-signal-safe functions (setpgid, setrlimit, signal).
    unsafe {
        c.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(bytes) = fsize {
                let lim = libc::rlimit {
                    rlim_cur: bytes as libc::rlim_t,
                    rlim_max: bytes as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Writes past the limit fail with EFBIG, as on a full disk,
                // instead of killing the program.
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    c.spawn()
}

/// Keeps the last [`TAIL_BYTES`] of a stream; sends whole lines to
/// `lines` when given.
fn reader(
    mut r: impl Read + Send + 'static,
    keep: Arc<Mutex<Vec<u8>>>,
    lines: Option<mpsc::Sender<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        if let Some(tx) = lines {
            let mut br = BufReader::new(r);
            let mut line = Vec::new();
            while let Ok(n) = br.read_until(b'\n', &mut line) {
                if n == 0 {
                    break;
                }
                push_tail(&keep, &line);
                let text = String::from_utf8_lossy(&line);
                let _ = tx.send(text.trim_end_matches(['\r', '\n']).to_string());
                line.clear();
            }
        } else {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                push_tail(&keep, &buf[..n]);
            }
        }
    })
}

fn push_tail(keep: &Mutex<Vec<u8>>, bytes: &[u8]) {
    let mut k = keep.lock().unwrap_or_else(|e| e.into_inner());
    k.extend_from_slice(bytes);
    if k.len() > TAIL_BYTES {
        let cut = k.len() - TAIL_BYTES;
        k.drain(..cut);
    }
}

fn tail(keep: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&keep.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// Waits for the ready line (or the program's end, or the bound).
fn wait_ready(
    child: &mut Child,
    lines: &mpsc::Receiver<String>,
    want: &str,
    bound: Duration,
) -> Result<(), ProgramEnd> {
    let t0 = Instant::now();
    loop {
        match lines.recv_timeout(Duration::from_millis(20)) {
            Ok(l) if l.trim() == want => return Ok(()),
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Standard output closed: the program ended (or closed it).
                if let Some(e) = ended(child) {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(e) = ended(child) {
            return Err(e);
        }
        if t0.elapsed() > bound {
            return Err(ProgramEnd::NeverReady {
                waited_ms: t0.elapsed().as_millis() as u64,
            });
        }
    }
}

/// Sends the runner's statement on a control connection of its own.
fn send_statement(
    socket: &Path,
    sql: String,
) -> std::thread::JoinHandle<Result<Vec<LineMessage>, String>> {
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        let mut c = Control::connect(&socket, "vdisim client-test")
            .map_err(|e| format!("cannot reach the case's server: {e}"))?;
        match c.request(Request::Sql {
            text: sql,
            database: None,
            first_line: 1,
        }) {
            Ok(Response::Sql { messages, .. }) => Ok(messages),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            // A server death drops the statement's connection.
            Err(e) => Err(format!("the statement's connection ended: {e}")),
        }
    })
}

/// Waits for the program to exit: at most `exit_bound` after its
/// statement ended, and `run_bound` in all.
fn wait_exit(child: &mut Child, s: &RunSetup<'_>, t0: Instant) -> ProgramEnd {
    let mut ended_at: Option<Instant> = None;
    loop {
        if let Some(e) = ended(child) {
            return e;
        }
        if ended_at.is_none() && (s.statement_ended)() {
            ended_at = Some(Instant::now());
        }
        let over = match ended_at {
            Some(e) => e.elapsed() > s.exit_bound,
            None => t0.elapsed() > s.run_bound,
        };
        if over {
            let from = ended_at.unwrap_or(t0);
            kill_group(child.id() as i32, libc::SIGKILL);
            return ProgramEnd::Hung {
                after_ms: from.elapsed().as_millis() as u64,
            };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How the program ended, if it has — without reaping it, so its process
/// group stays reserved until the runner has killed what is left in it.
fn ended(child: &Child) -> Option<ProgramEnd> {
    // SAFETY: `info` is valid for a write of its size; waitid with
    // WNOHANG | WNOWAIT only reads the child's state.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            child.id(),
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        return Some(ProgramEnd::Exited(-1));
    }
    // SAFETY: waitid filled `info` for a child that changed state (si_pid
    // is 0 when none did).
    let (pid, status, code) = unsafe { (info.si_pid(), info.si_status(), info.si_code) };
    if pid == 0 {
        return None;
    }
    Some(if code == libc::CLD_EXITED {
        ProgramEnd::Exited(status)
    } else {
        ProgramEnd::Signaled(status)
    })
}

/// Sends `sig` to process group `pgid` (nothing if 0).
pub fn kill_group(pgid: i32, sig: i32) {
    if pgid > 0 {
        // SAFETY: kill has no memory-safety preconditions; a negative pid
        // names the process group.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// The call log's lines (at most a bounded number).
fn read_log(path: &Path) -> Vec<String> {
    const LINES_MAX: usize = 1 << 20;
    match std::fs::File::open(path) {
        Ok(f) => BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .take(LINES_MAX)
            .collect(),
        Err(_) => Vec::new(),
    }
}
