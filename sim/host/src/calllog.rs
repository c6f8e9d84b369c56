//! The library's side of the client call log ([`vdi_model::calllog`]), and
//! the environment a client-test case runs the library under.
//!
//! # Variables
//!
//! Read once per process, when it makes its first set object:
//!
//! - `VDISIM_CLIENT_LOG=<path>`: every call through [`SetRuntime`]'s API
//!   appends one JSON line to `<path>` (created with mode 0600 if missing,
//!   opened `O_APPEND`); each line is written whole by one `write`, straight
//!   to the file (no buffer a kill would lose), so the lines of several
//!   threads and processes never interleave. Calls an ABI face refuses
//!   before they reach the runtime (a NULL pointer, an object that is not
//!   one) are not logged.
//! - `VDISIM_TIME_SCALE=<N>` (1..=1000): with sets connected to `vdisim
//!   serve`, GetConfiguration and GetCommand timeouts run on a clock N
//!   times faster than real time (a timeout of T ms waits T / N real ms),
//!   and the log's times are virtual ms on that clock.
//! - `VDISIM_PROFILE=<path>`: with sets connected to `vdisim serve`, the
//!   profile the client half runs under — a table of the keys `vdisim list
//!   --profile` prints (e.g. `close-with-open-devices = "noerror"`), in
//!   JSON (a file whose first non-blank character is `{`) or TOML; keys
//!   left out take their defaults, unknown keys are refused.
//!
//! A value that cannot be used is reported on stderr in one line (what is
//! wrong, which variable, how to fix it) and the default is used instead:
//! no log, real time, the default profile. Nothing here panics or aborts
//! the program the library is loaded into. In other modes (a plan file,
//! harness cases) the time scale and the profile come from there, and the
//! two variables, if set, are reported as ignored.
//!
//! [`SetRuntime`]: crate::runtime::SetRuntime

use crate::clock::scaled_now;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use vdi_model::calllog::{
    Api, Args, CallRecord, Code, CommandView, FORMAT_VERSION, LogLine, ProcessLine, Produced,
};
use vdi_model::msg::Cmd;
use vdi_spec::{ClauseId, Hresult, Profile};

/// Names the call-log file.
pub const ENV_CLIENT_LOG: &str = "VDISIM_CLIENT_LOG";
/// Virtual ms per real ms for sets connected to `vdisim serve`.
pub const ENV_TIME_SCALE: &str = "VDISIM_TIME_SCALE";
/// Names the client half's profile for sets connected to `vdisim serve`.
pub const ENV_PROFILE: &str = "VDISIM_PROFILE";
/// The largest time scale accepted.
pub const TIME_SCALE_MAX: u32 = 1000;
/// The largest profile file read (a profile is a few hundred bytes).
pub const PROFILE_BYTES_MAX: u64 = 64 * 1024;

/// A variable whose value cannot be used. Each message is one line: what is
/// wrong, which variable, how to fix it, and what the library does instead.
#[derive(Debug, Error)]
pub enum EnvError {
    #[error(
        "vdisim: {ENV_TIME_SCALE}={0:?} is not a time scale: give a whole number from 1 to {TIME_SCALE_MAX} (virtual ms per real ms); running in real time"
    )]
    Scale(String),
    #[error(
        "vdisim: cannot open the call log {path} named by {ENV_CLIENT_LOG}: {reason}; give the path of a file this process may create or append to; no call log is written"
    )]
    Log { path: String, reason: String },
    #[error(
        "vdisim: cannot use the profile {path} named by {ENV_PROFILE}: {reason}; give a JSON or TOML table of the keys `vdisim list --profile` prints; running under the default profile"
    )]
    Profile { path: String, reason: String },
    #[error(
        "vdisim: {var} applies only to sets connected to vdisim serve, and this process serves {mode}: it is ignored (unset it, or leave {other} unset)"
    )]
    Ignored {
        var: &'static str,
        mode: &'static str,
        other: &'static str,
    },
}

/// `VDISIM_TIME_SCALE`: a whole number 1..=1000.
pub fn parse_scale(s: &str) -> Result<u32, EnvError> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=TIME_SCALE_MAX).contains(&n) => Ok(n),
        _ => Err(EnvError::Scale(s.to_string())),
    }
}

/// A profile table in JSON (first non-blank character `{`) or TOML.
pub fn parse_profile(text: &str) -> Result<Profile, String> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("not a JSON profile table: {e}"))
    } else {
        toml::from_str(text).map_err(|e| {
            let m = e.message().trim().to_string();
            format!("not a TOML profile table: {m}")
        })
    }
}

/// Reads the profile file at `path`.
pub fn load_profile(path: &str) -> Result<Profile, EnvError> {
    let err = |reason: String| EnvError::Profile {
        path: path.to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > PROFILE_BYTES_MAX {
        return Err(err(format!(
            "{} bytes, more than a profile's bound of {PROFILE_BYTES_MAX}",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    parse_profile(&text).map_err(err)
}

/// What the environment asks of the client half of this process.
pub struct ClientEnv {
    /// `VDISIM_CLIENT_LOG`, if set.
    log_path: Option<String>,
    /// The log, once opened (or `None` if it could not be).
    log: OnceLock<Option<Arc<CallLog>>>,
    /// `VDISIM_TIME_SCALE` (1 when unset or unusable).
    pub scale: u32,
    /// `VDISIM_PROFILE`, when set and usable.
    pub profile: Option<Arc<Profile>>,
}

impl ClientEnv {
    /// The environment as `var` reports it, for a process that serves
    /// `mode` (`serve`: sets connected to `vdisim serve`, the only mode the
    /// time scale and the profile apply to), with the lines to print about
    /// unusable or ignored values.
    pub fn read(
        var: impl Fn(&str) -> Option<String>,
        serve: bool,
        mode: &'static str,
    ) -> (ClientEnv, Vec<EnvError>) {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let mut notes = Vec::new();
        let mut scale = 1;
        let mut profile = None;
        let (s, p) = (get(ENV_TIME_SCALE), get(ENV_PROFILE));
        if serve {
            if let Some(s) = s {
                match parse_scale(&s) {
                    Ok(n) => scale = n,
                    Err(e) => notes.push(e),
                }
            }
            if let Some(p) = p {
                match load_profile(&p) {
                    Ok(pr) => profile = Some(Arc::new(pr)),
                    Err(e) => notes.push(e),
                }
            }
        } else {
            for (var, set, other) in [
                (ENV_TIME_SCALE, s, ENV_PROFILE),
                (ENV_PROFILE, p, ENV_TIME_SCALE),
            ] {
                if set.is_some() {
                    notes.push(EnvError::Ignored { var, mode, other });
                }
            }
        }
        let env = ClientEnv {
            log_path: get(ENV_CLIENT_LOG),
            log: OnceLock::new(),
            scale,
            profile,
        };
        (env, notes)
    }

    /// The process's environment; unusable values reported on stderr.
    pub fn from_process(serve: bool, mode: &'static str) -> ClientEnv {
        let (env, notes) = ClientEnv::read(|k| std::env::var(k).ok(), serve, mode);
        for n in notes {
            eprintln!("{n}");
        }
        env
    }

    /// The call log, opened at the first call (with the scale, mode and
    /// profile of the first set object, for its process line); `None` when
    /// none is asked for or it cannot be opened (said once on stderr).
    pub fn log(&self, scale: u32, mode: &str, profile: &str) -> Option<Arc<CallLog>> {
        let path = self.log_path.as_deref()?;
        self.log
            .get_or_init(
                || match CallLog::open(Path::new(path), scale, mode, profile) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        eprintln!("{e}");
                        None
                    }
                },
            )
            .clone()
    }
}

// ----- the writer ---------------------------------------------------------------------------

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);
static NEXT_OBJECT: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static THREAD: Cell<u64> = const { Cell::new(0) };
}

/// This thread's number in the log (assigned at its first logged call).
fn thread_id() -> u64 {
    THREAD.with(|t| {
        if t.get() == 0 {
            t.set(NEXT_THREAD.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

/// An open call log: appends whole lines, numbers the calls.
pub struct CallLog {
    file: std::fs::File,
    path: PathBuf,
    epoch: Instant,
    pid: u32,
    /// Held while a line is written: the `seq` of the last line written.
    written: Mutex<u64>,
    /// The `seq` of the last call that returned (for `after`).
    last: AtomicU64,
    failed: AtomicBool,
}

impl std::fmt::Debug for CallLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl CallLog {
    /// Opens (creating, mode 0600) the log at `path` for appending, and
    /// writes the process line. Its clock starts now.
    pub fn open(
        path: &Path,
        scale: u32,
        mode: &str,
        profile: &str,
    ) -> Result<Arc<CallLog>, EnvError> {
        let mut o = std::fs::OpenOptions::new();
        o.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let file = o.open(path).map_err(|e| EnvError::Log {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let log = Arc::new(CallLog {
            file,
            path: path.to_path_buf(),
            epoch: Instant::now(),
            pid: std::process::id(),
            written: Mutex::new(0),
            last: AtomicU64::new(0),
            failed: AtomicBool::new(false),
        });
        let line = LogLine::Process(ProcessLine {
            v: FORMAT_VERSION,
            pid: log.pid,
            unix_ms,
            scale: scale.max(1),
            mode: mode.to_string(),
            profile: profile.to_string(),
        });
        let g = log.written.lock().unwrap_or_else(|e| e.into_inner());
        log.append(&line);
        drop(g);
        Ok(log)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `line` and a newline with one `write` (the lock is held by the
    /// caller). A failure is said once on stderr; the program goes on.
    fn append(&self, line: &LogLine) {
        let mut buf = match serde_json::to_vec(line) {
            Ok(b) => b,
            Err(e) => return self.failed(&e.to_string()),
        };
        buf.push(b'\n');
        let mut rest = &buf[..];
        while !rest.is_empty() {
            match (&self.file).write(rest) {
                Ok(0) => return self.failed("the file takes no more bytes"),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return self.failed(&e.to_string()),
            }
        }
    }

    fn failed(&self, why: &str) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            eprintln!(
                "vdisim: writing the call log {} ({ENV_CLIENT_LOG}) failed: {why}; calls from now on may be missing from it",
                self.path.display()
            );
        }
    }
}

/// A call begun: when, and what had returned by then.
#[derive(Clone, Copy, Debug)]
pub struct Began {
    start_ms: u64,
    after: u64,
    thread: u64,
}

/// What a call returned, for its record.
pub struct Returned {
    /// The set incarnation the call concerns.
    pub incarnation: u32,
    /// Its code.
    pub code: Hresult,
    /// The clause the half cited.
    pub clause: ClauseId,
    /// What it produced.
    pub value: Option<Produced>,
    /// CompleteCommand: whether the block was modified.
    pub block_modified: Option<bool>,
}

/// Fetched commands kept per set object (a bound: a program that never
/// completes commands must not grow the library without end).
pub const FETCHED_MAX: usize = 4096;

/// One set object's log: its number, its clock, and the commands its
/// devices fetched and have not completed (CompleteCommand logs the
/// command as delivered, whatever the program wrote into the block).
pub struct ObjectLog {
    log: Arc<CallLog>,
    object: u64,
    scale: u32,
    fetched: Mutex<BTreeMap<(u32, u16, u64), CommandView>>,
}

impl ObjectLog {
    /// The log of a new set object whose timeouts run at `scale`.
    pub fn new(log: Arc<CallLog>, scale: u32) -> ObjectLog {
        ObjectLog {
            log,
            object: NEXT_OBJECT.fetch_add(1, Ordering::Relaxed),
            scale: scale.max(1),
            fetched: Mutex::new(BTreeMap::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        scaled_now(self.log.epoch, self.scale)
    }

    /// A call begins.
    pub fn begin(&self) -> Began {
        Began {
            start_ms: self.now_ms(),
            after: self.log.last.load(Ordering::Acquire),
            thread: thread_id(),
        }
    }

    /// Writes the record of a call of `method` that began at `b`.
    pub fn record(&self, b: Began, method: Api, args: Args, r: Returned) {
        let log = &self.log;
        let mut g = log.written.lock().unwrap_or_else(|e| e.into_inner());
        let seq = *g + 1;
        let rec = CallRecord {
            pid: log.pid,
            seq,
            after: b.after,
            thread: b.thread,
            object: self.object,
            incarnation: r.incarnation,
            start_ms: b.start_ms,
            end_ms: self.now_ms(),
            method,
            args,
            ret: Code::of(r.code),
            value: r.value,
            block_modified: r.block_modified,
            clause: Some(r.clause.as_str().to_string()),
        };
        log.append(&LogLine::Call(Box::new(rec)));
        *g = seq;
        log.last.store(seq, Ordering::Release);
    }

    fn fetched(&self) -> std::sync::MutexGuard<'_, BTreeMap<(u32, u16, u64), CommandView>> {
        self.fetched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Device `dev` of incarnation `inc` fetched `c`.
    pub fn fetch(&self, inc: u32, dev: u16, c: &Cmd) {
        let mut m = self.fetched();
        // Commands of earlier incarnations will never be completed.
        while m.first_key_value().is_some_and(|(k, _)| k.0 < inc) || m.len() >= FETCHED_MAX {
            m.pop_first();
        }
        m.insert((inc, dev, c.id.0), CommandView::of(c));
    }

    /// The command `id` device `dev` of incarnation `inc` fetched, if it is
    /// outstanding; forgotten when `done`.
    pub fn command(&self, inc: u32, dev: u16, id: u64, done: bool) -> Option<CommandView> {
        let mut m = self.fetched();
        if done {
            m.remove(&(inc, dev, id))
        } else {
            m.get(&(inc, dev, id)).cloned()
        }
    }
}

// ----- reading a log back -------------------------------------------------------------------

/// A line of a call log that is not a [`LogLine`].
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("line {line} of the call log is not a call-log line ({reason}): {text}")]
pub struct LogError {
    /// The line number, from 1.
    pub line: usize,
    /// The line's first 120 characters.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Reads a whole call log: its process lines and its call records, in file
/// order. Blank lines are skipped; a last line without its newline (a
/// writer killed mid-line cannot leave one: each line is one `write`) is
/// read like the others.
pub fn parse_log(text: &str) -> Result<(Vec<ProcessLine>, Vec<CallRecord>), LogError> {
    let mut procs = Vec::new();
    let mut calls = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        match serde_json::from_str::<LogLine>(t) {
            Ok(LogLine::Process(p)) => procs.push(p),
            Ok(LogLine::Call(c)) => calls.push(*c),
            Err(e) => {
                return Err(LogError {
                    line: k + 1,
                    text: t.chars().take(120).collect(),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok((procs, calls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("vdisim-calllog-{}-{name}", std::process::id()))
    }

    #[test]
    fn scale_parses_within_bounds() {
        assert_eq!(parse_scale("1").unwrap(), 1);
        assert_eq!(parse_scale(" 250 ").unwrap(), 250);
        assert_eq!(parse_scale("1000").unwrap(), 1000);
        for bad in ["0", "1001", "-5", "2.5", "fast", ""] {
            let e = parse_scale(bad).unwrap_err().to_string();
            assert!(
                e.contains("VDISIM_TIME_SCALE")
                    && e.contains("1 to 1000")
                    && e.contains("real time"),
                "{e}"
            );
        }
    }

    #[test]
    fn profiles_parse_from_json_and_toml() {
        let p = parse_profile(r#"{"close-with-open-devices": "noerror", "watchdog-factor": 3}"#)
            .unwrap();
        assert_eq!(p.watchdog_factor, 3);
        let p = parse_profile("name = \"strict\"\ncompletion-order = \"in-order\"\n").unwrap();
        assert_eq!(p.name, "strict");
        assert_eq!(
            p.completion_order,
            vdi_spec::profile::CompletionOrder::InOrder
        );
        assert_eq!(parse_profile("").unwrap(), Profile::default());
        let e = parse_profile(r#"{"no-such-knob": 1}"#).unwrap_err();
        assert!(e.contains("JSON") && e.contains("no-such-knob"), "{e}");
        let e = parse_profile("watchdog-factor = \"two\"").unwrap_err();
        assert!(e.contains("TOML"), "{e}");
    }

    #[test]
    fn the_environment_in_serve_mode() {
        let path = temp("profile.toml");
        std::fs::write(&path, "watchdog-factor = 5\n").unwrap();
        let (e, notes) = ClientEnv::read(
            env(&[
                (ENV_TIME_SCALE, "100"),
                (ENV_PROFILE, path.to_str().unwrap()),
            ]),
            true,
            "serve",
        );
        assert!(notes.is_empty());
        assert_eq!(e.scale, 100);
        assert_eq!(e.profile.as_ref().unwrap().watchdog_factor, 5);
        assert!(e.log(1, "m", "p").is_none(), "no log asked for");
        // Bad values: one line each, and the defaults.
        let (e, notes) = ClientEnv::read(
            env(&[
                (ENV_TIME_SCALE, "0"),
                (ENV_PROFILE, "/no/such/profile.json"),
            ]),
            true,
            "serve",
        );
        assert_eq!((e.scale, e.profile.is_none()), (1, true));
        let lines: Vec<String> = notes.iter().map(|n| n.to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[1].contains("/no/such/profile.json") && lines[1].contains("default profile"));
        assert!(lines.iter().all(|l| !l.contains('\n')));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn scale_and_profile_are_ignored_elsewhere() {
        let (e, notes) = ClientEnv::read(
            env(&[(ENV_TIME_SCALE, "100"), (ENV_PROFILE, "x.toml")]),
            false,
            "the in-process plan server (VDISIM_PLAN)",
        );
        assert_eq!(e.scale, 1);
        assert!(e.profile.is_none());
        assert_eq!(notes.len(), 2);
        assert!(notes[0].to_string().contains("ignored"), "{}", notes[0]);
    }

    #[test]
    fn an_unopenable_log_is_said_and_skipped() {
        let (e, _) = ClientEnv::read(
            env(&[(ENV_CLIENT_LOG, "/no/such/dir/calls.jsonl")]),
            true,
            "serve",
        );
        assert!(e.log(1, "m", "p").is_none());
        let err = CallLog::open(Path::new("/no/such/dir/calls.jsonl"), 1, "m", "p").unwrap_err();
        let s = err.to_string();
        assert!(
            s.contains("VDISIM_CLIENT_LOG") && s.contains("no call log is written"),
            "{s}"
        );
    }

    #[test]
    fn the_log_file_is_private_and_starts_with_the_process_line() {
        let path = temp("private.jsonl");
        let _ = std::fs::remove_file(&path);
        let log = CallLog::open(&path, 7, "serve", "default").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let o = ObjectLog::new(log, 7);
        let b = o.begin();
        o.record(
            b,
            Api::Close,
            Args::default(),
            Returned {
                incarnation: 0,
                code: Hresult::VD_E_PROTOCOL,
                clause: vdi_spec::id::CLOSE_NOT_OPEN,
                value: None,
                block_modified: None,
            },
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let (procs, calls) = parse_log(&text).unwrap();
        assert_eq!(procs.len(), 1);
        assert_eq!((procs[0].scale, procs[0].pid), (7, std::process::id()));
        assert_eq!(calls.len(), 1);
        assert_eq!((calls[0].seq, calls[0].after), (1, 0));
        assert_eq!(calls[0].ret.name, "VD_E_PROTOCOL");
        let e = parse_log(&format!("{text}{{\"line\":\"call\"}}\n")).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        std::fs::remove_file(&path).unwrap();
    }
}
