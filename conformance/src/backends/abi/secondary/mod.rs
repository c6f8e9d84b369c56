//! A secondary client process of a built-in program, staged as a real
//! second OS process (vdi-spec.md §1.5, Process Model; the model's
//! `vdi_model::secondary`).
//!
//! When a program spawns the thread named
//! [`SECONDARY_PROCESS`](vdi_model::secondary::SECONDARY_PROCESS), the
//! runner ([`super::program`]) starts `vdisim __abi-secondary` ([`child`])
//! on the same library, connected to the same server, and every call of
//! that thread and of the threads it spawns is performed there
//! ([`Process::call`]); the program logic (`Program::next`) and the
//! [`ClientProcess`](vdi_model::process::ClientProcess) that absorbs the
//! replies stay in the runner, as in the model's world.
//!
//! The two processes name things differently: the child's command ids,
//! device handles and buffer ids are its own. The runner gives each command
//! the child fetched an id of its own set incarnation (so the fault plan
//! and the client process see one numbering), each device the handle the
//! primary's numbering gives its name, and translates back on the way in.
//! A Write's data comes back as the child read it from the shared buffer;
//! a Read's data goes to the child, which fills its mapped buffer.
//!
//! Only a server that several processes share can be joined: the `serve`
//! backend's `vdisim serve` ([`Launch`]). The `linux-abi` and `com`
//! backends host the server inside the test process, where no other
//! process can reach it.
//!
//! Bounds: lines of [`wire::MAX_LINE`] bytes, [`wire::MAX_THREADS`] threads
//! per process, [`MAX_PROCESSES`] processes per case; a call that ends by
//! itself (a finite timeout, or none) must be answered within its timeout
//! (scaled) plus [`ANSWER_MARGIN`], or the child is killed and the run is
//! an error naming it. A call that waits forever is bounded by the run.

pub mod child;
pub mod wire;

use super::shared::Shared;
use crate::backend::BackendError;
use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vdi_host::clock::scaled_wait;
use vdi_model::call::{Call, Reply, Value};
use vdi_model::client::DeviceHandle;
use vdi_model::msg::{CmdId, Timeout};
use vdi_spec::{Hresult, id};
pub use wire::Launch;
use wire::{Request, Response};

/// The hidden `vdisim` subcommand that runs a secondary process.
pub const SUBCOMMAND: &str = "__abi-secondary";

/// Secondary processes one case may start.
pub const MAX_PROCESSES: usize = 16;

/// Real time a call that ends by itself may take beyond its own timeout.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(15);

/// Real time a new process may take to load the library and say it is
/// ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Real time the runner waits for a process told to exit before killing it.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Bytes of the child's standard error kept for an error message.
const STDERR_TAIL: usize = 4096;

#[derive(Default)]
struct Answers {
    got: BTreeMap<u32, Response>,
    /// The child's standard output ended (it exited or was killed).
    gone: bool,
    /// The child wrote something the protocol does not allow.
    broken: Option<String>,
}

#[derive(Default)]
struct Names {
    /// The runner's command id → the child's id and device handle.
    cmds: BTreeMap<u64, (u64, DeviceHandle)>,
    /// The runner's device handle → the child's.
    devs: BTreeMap<(u32, u16), DeviceHandle>,
}

/// One secondary client process.
pub struct Process {
    pid: u32,
    child: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    answers: Mutex<Answers>,
    cond: Condvar,
    /// Killed by the program (a Die of one of its threads).
    killed: AtomicBool,
    names: Mutex<Names>,
    stderr: Arc<Mutex<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Process {
    /// Starts a secondary process on `launch`, its library's clock at
    /// `scale` virtual ms per real ms.
    pub fn start(launch: &Launch, scale: u32) -> Result<Arc<Process>, BackendError> {
        let mut child = Command::new(&launch.exe)
            .arg(SUBCOMMAND)
            .arg("--library")
            .arg(&launch.library)
            .env("VDISIM_SERVER", &launch.server)
            .env("VDISIM_TIME_SCALE", scale.clamp(1, 1000).to_string())
            .env_remove("VDISIM_PLAN")
            .env_remove("VDISIM_CLIENT_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                BackendError::Failed(format!(
                    "cannot start the secondary client process {} {SUBCOMMAND}: {e}",
                    launch.exe.display()
                ))
            })?;
        let fail = || BackendError::Failed("the secondary client process has no pipes".into());
        let stdin = child.stdin.take().ok_or_else(fail)?;
        let stdout = child.stdout.take().ok_or_else(fail)?;
        let stderr = child.stderr.take().ok_or_else(fail)?;
        let p = Arc::new(Process {
            pid: child.id(),
            child: Mutex::new(child),
            stdin: Mutex::new(Some(stdin)),
            answers: Mutex::new(Answers::default()),
            cond: Condvar::new(),
            killed: AtomicBool::new(false),
            names: Mutex::new(Names::default()),
            stderr: Arc::new(Mutex::new(String::new())),
        });
        let reader = p.clone();
        std::thread::Builder::new()
            .name(format!("secondary-out-{}", p.pid))
            .spawn(move || reader.read_answers(stdout))
            .map_err(|e| BackendError::Failed(format!("spawn: {e}")))?;
        let tail = p.stderr.clone();
        std::thread::Builder::new()
            .name(format!("secondary-err-{}", p.pid))
            .spawn(move || keep_tail(stderr, &tail))
            .map_err(|e| BackendError::Failed(format!("spawn: {e}")))?;
        match p.answer(
            wire::READY,
            "the process",
            "its start",
            Some(START_TIMEOUT),
            &|| false,
        )? {
            Some(_) => Ok(p),
            None => Err(p.error("ended before it was ready".into())),
        }
    }

    /// The child's operating-system process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the program killed this process.
    pub fn killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    fn read_answers(&self, stdout: std::process::ChildStdout) {
        let mut r = BufReader::new(stdout);
        let who = format!("secondary process {}: standard output", self.pid);
        loop {
            let line = wire::read_line(&mut r, &who);
            let mut a = lock(&self.answers);
            match line {
                Ok(Some(l)) => match serde_json::from_str::<Response>(&l) {
                    Ok(resp) => {
                        a.got.insert(resp.thread, resp);
                    }
                    Err(e) => {
                        a.broken
                            .get_or_insert(format!("{who}: a line that is no answer: {e}"));
                    }
                },
                Ok(None) => a.gone = true,
                Err(e) => {
                    a.broken.get_or_insert(e);
                    a.gone = true;
                }
            }
            let end = a.gone;
            drop(a);
            self.cond.notify_all();
            if end {
                return;
            }
        }
    }

    /// Kills the process (SIGKILL: nothing tells the library or the
    /// server) and reaps it.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        let mut c = lock(&self.child);
        let _ = c.kill();
        let _ = c.wait();
        self.cond.notify_all();
    }

    /// Ends the process: its standard input closes (it exits), and after
    /// [`EXIT_GRACE`] it is killed.
    pub fn end(&self) {
        drop(lock(&self.stdin).take());
        let dl = Instant::now() + EXIT_GRACE;
        let mut c = lock(&self.child);
        while Instant::now() < dl {
            if matches!(c.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    fn error(&self, what: String) -> BackendError {
        let tail = lock(&self.stderr).clone();
        let tail = tail.trim();
        if tail.is_empty() {
            BackendError::Failed(format!("secondary client process {}: {what}", self.pid))
        } else {
            BackendError::Failed(format!(
                "secondary client process {}: {what}; its standard error: {tail}",
                self.pid
            ))
        }
    }

    /// Performs `call` of program thread `thread` (named `who`) in this
    /// process: `Ok(None)` when the run stops (`halted`) or the process
    /// was killed before it answered.
    pub fn call(
        &self,
        sh: &Shared,
        thread: usize,
        who: &str,
        call: Call,
        scale: u32,
        halted: &dyn Fn() -> bool,
    ) -> Result<Option<Reply>, BackendError> {
        let method = call.method();
        let bound = match &call {
            _ if call.waits_forever() => None,
            Call::GetCommand {
                timeout: Timeout::Ms(ms),
                ..
            }
            | Call::GetConfiguration {
                timeout: Timeout::Ms(ms),
            } => Some(scaled_wait(*ms, scale) + ANSWER_MARGIN),
            _ => Some(ANSWER_MARGIN),
        };
        let (wire, ctx) = self.outgoing(sh, call);
        let Ok(thread) = u32::try_from(thread) else {
            return Err(self.error(format!("thread {thread}: too many threads")));
        };
        let req = Request {
            thread,
            who: who.to_string(),
            call: Some(wire),
            buffer: None,
        };
        let line = serde_json::to_string(&req).map_err(|e| self.error(e.to_string()))?;
        {
            let mut w = lock(&self.stdin);
            let sent = w
                .as_mut()
                .map(|w| writeln!(w, "{line}").and_then(|()| w.flush()));
            if !matches!(sent, Some(Ok(()))) {
                return if self.killed() {
                    Ok(None)
                } else {
                    Err(self.error(format!("{who}: cannot send {}", method.name())))
                };
            }
        }
        let Some(resp) = self.answer(thread, who, method.name(), bound, halted)? else {
            return Ok(None);
        };
        let r = match (resp.reply, resp.error) {
            (Some(r), _) => Reply::from(r),
            (None, e) => {
                return Err(self.error(format!(
                    "{who}: {} failed: {}",
                    method.name(),
                    e.unwrap_or_default()
                )));
            }
        };
        let r = self.incoming(sh, who, ctx, r);
        // The library's own tally of this clause is the child's: the runner
        // cites it for the call it saw succeed.
        let clause = (matches!(method, vdi_model::call::Method::OpenInSecondary)
            && r.code == Hresult::NOERROR)
            .then_some(id::OPEN_IN_SECONDARY_OK);
        sh.st().emit(
            who,
            method.name(),
            format!("-> {} (secondary {})", r.code, self.pid),
            clause,
        );
        Ok(Some(r))
    }

    fn answer(
        &self,
        thread: u32,
        who: &str,
        what: &str,
        bound: Option<Duration>,
        halted: &dyn Fn() -> bool,
    ) -> Result<Option<Response>, BackendError> {
        let dl = bound.map(|b| Instant::now() + b);
        let mut a = lock(&self.answers);
        loop {
            if let Some(r) = a.got.remove(&thread) {
                return Ok(Some(r));
            }
            if self.killed() || halted() {
                return Ok(None);
            }
            if let Some(b) = a.broken.clone() {
                drop(a);
                self.kill();
                return Err(self.error(b));
            }
            if a.gone {
                drop(a);
                return Err(self.error(format!("exited while {who} waited for {what}")));
            }
            if let Some(dl) = dl
                && Instant::now() >= dl
            {
                drop(a);
                self.kill();
                return Err(self.error(format!(
                    "did not answer {who}'s {what} within {} s: killed",
                    bound.unwrap_or_default().as_secs()
                )));
            }
            a = self
                .cond
                .wait_timeout(a, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The call in the child's names, and what the answer needs to be put
    /// back in the runner's.
    fn outgoing(&self, sh: &Shared, call: Call) -> (Call, Outgoing) {
        let n = lock(&self.names);
        let child_dev =
            |d: DeviceHandle| n.devs.get(&(d.incarnation, d.index)).copied().unwrap_or(d);
        match call {
            Call::GetCommand { dev, timeout } => (
                Call::GetCommand {
                    dev: child_dev(dev),
                    timeout,
                },
                Outgoing::Fetch(dev),
            ),
            Call::CompleteCommand {
                dev,
                mut cmd,
                code,
                bytes,
                position,
                data,
            } => {
                let (code, bytes) = sh.completion(cmd.id, code, bytes);
                if let Some((cid, cdev)) = n.cmds.get(&cmd.id.0) {
                    cmd.id = CmdId(*cid);
                    cmd.dev = cdev.index;
                }
                (
                    Call::CompleteCommand {
                        dev: child_dev(dev),
                        cmd,
                        code,
                        bytes,
                        position,
                        data,
                    },
                    Outgoing::Plain,
                )
            }
            Call::OpenDevice { name } => (
                Call::OpenDevice { name: name.clone() },
                Outgoing::Open(name),
            ),
            c => (c, Outgoing::Plain),
        }
    }

    fn incoming(&self, sh: &Shared, who: &str, ctx: Outgoing, mut r: Reply) -> Reply {
        match (ctx, &mut r.value) {
            (Outgoing::Open(name), Value::Device(d)) => {
                let mine = sh.handle_for(&name);
                lock(&self.names)
                    .devs
                    .insert((mine.incarnation, mine.index), *d);
                *d = mine;
            }
            (Outgoing::Fetch(dev), Value::Command(cmd)) => {
                let id = sh.st().next_command_id();
                let cdev = lock(&self.names)
                    .devs
                    .get(&(dev.incarnation, dev.index))
                    .copied()
                    .unwrap_or(dev);
                lock(&self.names).cmds.insert(id, (cmd.id.0, cdev));
                cmd.id = CmdId(id);
                cmd.dev = dev.index;
                let seen = cmd.clone();
                sh.fetched(who, &seen);
            }
            _ => {}
        }
        r
    }
}

impl Drop for Process {
    /// A process not ended yet (a run that stopped while it started) is
    /// killed and reaped: none outlives its runner.
    fn drop(&mut self) {
        let c = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if !matches!(c.try_wait(), Ok(Some(_))) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

enum Outgoing {
    Plain,
    Open(String),
    Fetch(DeviceHandle),
}

/// Keeps the last [`STDERR_TAIL`] bytes of the child's standard error.
fn keep_tail(mut r: impl std::io::Read, tail: &Mutex<String>) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            return;
        }
        let mut t = lock(tail);
        t.push_str(&String::from_utf8_lossy(&buf[..n]));
        if t.len() > STDERR_TAIL {
            let mut cut = t.len() - STDERR_TAIL;
            while !t.is_char_boundary(cut) {
                cut += 1;
            }
            t.drain(..cut);
        }
    }
}
