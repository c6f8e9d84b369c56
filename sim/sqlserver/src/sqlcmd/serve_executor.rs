//! `vdisim sqlcmd`'s transport to `vdisim serve`: a control connection
//! (`vdi_host::remote::wire` frames over the server's Unix socket).
//!
//! Answers are read on a thread of their own, so that while a batch runs
//! the executor can still act: when the `-t` deadline passes, or when the
//! interrupt flag it watches is set (Ctrl-C), it writes
//! [`Request::Cancel`] on the same connection and goes on waiting for the
//! batch's one answer. If none comes within the cancel grace (10 s by
//! default), the connection is treated as lost. A connection that ends
//! (end of stream, reset) while an answer is awaited is
//! [`ExecError::Lost`].

use super::{BatchResult, ExecError, ServerMessage};
use std::io;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vdi_host::remote::wire::{self, Frame, PROTOCOL, Request, Response};

/// How long the executor waits for a cancelled batch's answer before it
/// treats the connection as lost.
pub const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// How long the executor waits for the server's name at start-up.
pub const STATUS_WAIT: Duration = Duration::from_secs(10);

/// How often a running batch looks at the interrupt flag.
const INTERRUPT_POLL: Duration = Duration::from_millis(20);

/// `vdisim sqlcmd`'s transport: each batch goes to a `vdisim serve` over a
/// control connection. `-S` names the server: a value containing `/` (or
/// prefixed `unix:`) is the socket path; any other value (`localhost`,
/// `tcp:host,1433`, `.\INSTANCE`) means the server the environment names
/// (`VDISIM_SERVER`, else the per-user default).
pub struct ServeExecutor {
    server: String,
    path: PathBuf,
    conn: Option<Conn>,
    interrupt: Option<&'static AtomicBool>,
    cancel_grace: Duration,
}

/// One control connection: the writing half, and the frames its reader
/// thread has read.
struct Conn {
    stream: UnixStream,
    frames: Receiver<io::Result<Option<Frame>>>,
    reader: Option<JoinHandle<()>>,
}

/// What waiting for an answer gave.
enum Next {
    Answer(Response),
    Waiting,
    Ended(String),
}

impl Conn {
    fn open(path: &std::path::Path) -> io::Result<Conn> {
        let mut stream = UnixStream::connect(path)?;
        wire::write_frame(
            &mut stream,
            &Frame::HelloControl {
                protocol: PROTOCOL,
                client: "sqlcmd".to_string(),
            },
        )?;
        let mut read_half = stream.try_clone()?;
        let (tx, frames) = mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("sqlcmd-answers".into())
            .spawn(move || {
                loop {
                    let f = wire::read_frame(&mut read_half);
                    let end = !matches!(f, Ok(Some(_)));
                    if tx.send(f).is_err() || end {
                        break;
                    }
                }
            })?;
        Ok(Conn {
            stream,
            frames,
            reader: Some(reader),
        })
    }

    fn send(&mut self, r: Request) -> io::Result<()> {
        wire::write_frame(&mut self.stream, &Frame::Request(r))
    }

    /// The next answer, waiting at most `wait` (`None`: until one comes or
    /// the connection ends).
    fn next(&self, wait: Option<Duration>) -> Next {
        let got = match wait {
            Some(w) => self.frames.recv_timeout(w),
            None => self
                .frames
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(Ok(Some(Frame::Response(r)))) => Next::Answer(r),
            Ok(Ok(Some(other))) => Next::Ended(format!(
                "the server sent a frame that is not an answer: {other:?}"
            )),
            Ok(Ok(None)) => Next::Ended("the server closed the connection".into()),
            Ok(Err(e)) => Next::Ended(e.to_string()),
            Err(RecvTimeoutError::Timeout) => Next::Waiting,
            Err(RecvTimeoutError::Disconnected) => {
                Next::Ended("the server closed the connection".into())
            }
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Ends the reader's read, so the thread can be joined.
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl ServeExecutor {
    /// An executor for `-S server` (or none).
    pub fn new(server: Option<&str>) -> ServeExecutor {
        let s = server.unwrap_or("localhost");
        let path = match s.strip_prefix("unix:") {
            Some(p) => PathBuf::from(p),
            None if s.contains('/') => PathBuf::from(s),
            None => vdi_host::remote::address(),
        };
        ServeExecutor {
            server: s.to_string(),
            path,
            conn: None,
            interrupt: None,
            cancel_grace: CANCEL_GRACE,
        }
    }

    /// Cancels the running batch when `flag` is set (the front end's
    /// Ctrl-C; see [`super::interrupt`]), answering
    /// [`ExecError::Cancelled`].
    pub fn watch_interrupt(&mut self, flag: &'static AtomicBool) {
        self.interrupt = Some(flag);
    }

    /// How long to wait for a cancelled batch's answer before the
    /// connection counts as lost ([`CANCEL_GRACE`] by default).
    pub fn set_cancel_grace(&mut self, grace: Duration) {
        self.cancel_grace = grace;
    }

    /// The server's name (`@@SERVERNAME`, what its messages show), if it
    /// can be reached and answers within [`STATUS_WAIT`].
    pub fn server_name(&mut self) -> Option<String> {
        let c = self.conn().ok()?;
        if c.send(Request::Status).is_err() {
            self.conn = None;
            return None;
        }
        match c.next(Some(STATUS_WAIT)) {
            Next::Answer(Response::Status { status }) => Some(status.server),
            // An answer that may still come would be taken for the first
            // batch's: start again on a fresh connection.
            _ => {
                self.conn = None;
                None
            }
        }
    }

    fn conn(&mut self) -> Result<&mut Conn, ExecError> {
        if self.conn.is_none() {
            let c = Conn::open(&self.path).map_err(|e| ExecError::Connect {
                server: self.server.clone(),
                reason: format!("no vdisim serve at {} ({e})", self.path.display()),
            })?;
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| ExecError::Lost("no connection".into()))
    }

    /// Waits for the answer to the batch just sent, cancelling it on the
    /// deadline or the interrupt flag.
    fn await_batch(&mut self, deadline: Option<Instant>) -> Result<BatchResult, ExecError> {
        let interrupt = self.interrupt;
        let grace = self.cancel_grace;
        let c = self
            .conn
            .as_mut()
            .ok_or_else(|| ExecError::Lost("no connection".into()))?;
        // Once a cancel is sent: when, and what the batch's end reports.
        let mut cancel: Option<(Instant, ExecError)> = None;
        loop {
            let now = Instant::now();
            let until = match &cancel {
                Some((at, _)) => Some(*at + grace),
                None => {
                    let poll = interrupt.map(|_| now + INTERRUPT_POLL);
                    match (deadline, poll) {
                        (Some(d), Some(p)) => Some(d.min(p)),
                        (d, p) => d.or(p),
                    }
                }
            };
            match c.next(until.map(|u| u.saturating_duration_since(now))) {
                Next::Answer(Response::Sql { messages, .. }) => {
                    // A cancelled batch's messages are not shown, as sqlcmd
                    // discards a batch's results once it has cancelled it.
                    if let Some((_, why)) = cancel {
                        return Err(why);
                    }
                    return Ok(BatchResult {
                        messages: messages
                            .into_iter()
                            .map(|m| ServerMessage {
                                msg: m.message,
                                line: m.line,
                            })
                            .collect(),
                        ..BatchResult::default()
                    });
                }
                Next::Answer(Response::Error { message }) => {
                    return Err(ExecError::Refused(message));
                }
                Next::Answer(other) => {
                    self.conn = None;
                    return Err(ExecError::Lost(format!(
                        "the server answered a batch with {other:?}"
                    )));
                }
                Next::Ended(reason) => {
                    self.conn = None;
                    return Err(ExecError::Lost(reason));
                }
                Next::Waiting => {}
            }
            let now = Instant::now();
            if let Some((at, _)) = &cancel {
                if now >= *at + grace {
                    self.conn = None;
                    return Err(ExecError::Lost(format!(
                        "no answer within {} ms of the cancel",
                        grace.as_millis()
                    )));
                }
                continue;
            }
            let why = if interrupt.is_some_and(|f| f.load(Ordering::SeqCst)) {
                ExecError::Cancelled
            } else if deadline.is_some_and(|d| now >= d) {
                ExecError::Timeout
            } else {
                continue;
            };
            if let Err(e) = c.send(Request::Cancel) {
                self.conn = None;
                return Err(ExecError::Lost(e.to_string()));
            }
            cancel = Some((Instant::now(), why));
        }
    }
}

impl super::Executor for ServeExecutor {
    fn connect(&mut self, _database: Option<&str>) -> Result<(), ExecError> {
        self.conn().map(|_| ())
    }

    fn execute(
        &mut self,
        batch: &str,
        database: Option<&str>,
        first_line: u32,
        timeout: Option<Duration>,
    ) -> Result<BatchResult, ExecError> {
        let c = self.conn()?;
        let sent = c.send(Request::Sql {
            text: batch.to_string(),
            database: database.map(str::to_string),
            first_line,
        });
        match sent {
            Ok(()) => {}
            // Refused before a byte was written (the frame's JSON is over
            // the protocol's cap): the connection is still in step.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(ExecError::Refused(format!(
                    "the batch does not fit in one control frame ({e}); split it with GO"
                )));
            }
            Err(e) => {
                self.conn = None;
                return Err(ExecError::Lost(e.to_string()));
            }
        }
        self.await_batch(timeout.map(|t| Instant::now() + t))
    }
}
