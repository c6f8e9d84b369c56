//! `vdisim sqlcmd -S tcp:HOST,PORT` (or `-S HOST,PORT`): batches sent over
//! TDS 7.4 ([`crate::tds::client`]) to any TDS server — `vdisim serve
//! --tds`, or a real SQL Server — instead of a `vdisim serve` control
//! socket.
//!
//! - Login: SQL authentication with `-U` (default `sa`) and `-P` (else
//!   `SQLCMDPASSWORD`, else `vdisim`, the password `vdisim serve` gives
//!   `sa` by default). `-E` (integrated authentication) is not spoken: the
//!   connection fails with a message that says to use `-U`/`-P`.
//! - **Plaintext only**: a server that requires encryption is refused with
//!   a message saying so (the client offers ENCRYPT_NOT_SUP).
//! - Messages: INFO and ERROR tokens as sqlcmd prints them, with the server
//!   name each token carries. Result sets print as column headers, a dash
//!   line, the rows, and `(N rows affected)` (column widths fitted to the
//!   values, not to the types' maximum widths as sqlcmd does).
//! - `-t` and Ctrl-C send a TDS ATTENTION and wait (at most
//!   [`super::CANCEL_GRACE`]) for its acknowledgement; the batch's own
//!   answer is discarded, as sqlcmd discards it.
//! - `-S tcp:HOST` (no port) is port 1433.

use super::{BatchResult, ExecError, ServerMessage};
use crate::tds::client::{Canceller, Client, ClientError, Item, Options, Reply};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vdi_model::outcome::SqlMessage;

/// The login `-U` defaults to.
pub const DEFAULT_USER: &str = "sa";
/// The password `-P` defaults to (when `SQLCMDPASSWORD` is not set): the
/// one `vdisim serve` gives `sa` by default.
pub const DEFAULT_PASSWORD: &str = "vdisim";
/// SQL Server's port, when `-S tcp:HOST` gives none.
pub const DEFAULT_PORT: u16 = 1433;
/// How long connecting and logging in may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How often a running batch looks at the deadline and the interrupt flag.
const POLL: Duration = Duration::from_millis(20);

/// A `-S` value that names a TDS endpoint: `tcp:HOST[,PORT]` or
/// `HOST,PORT`; `None` for any other value (a `vdisim serve` socket).
pub fn tds_endpoint(server: &str) -> Option<Result<(String, u16), String>> {
    let (rest, tcp) = match server.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("tcp:") => (&server[4..], true),
        _ => (server, false),
    };
    if !tcp && !server.contains(',') {
        return None;
    }
    let (host, port) = match rest.split_once(',') {
        Some((h, p)) => match p.trim().parse::<u16>() {
            Ok(n) if n > 0 => (h.trim(), n),
            _ => {
                return Some(Err(format!(
                    "'{p}' is not a TCP port (1..=65535) in -S {server}"
                )));
            }
        },
        None => (rest.trim(), DEFAULT_PORT),
    };
    if host.is_empty() {
        return Some(Err(format!("no host in -S {server}: give tcp:HOST,PORT")));
    }
    Some(Ok((host.to_string(), port)))
}

/// `vdisim sqlcmd`'s TDS transport.
pub struct TdsExecutor {
    server: String,
    host: String,
    port: u16,
    user: String,
    password: String,
    trusted: bool,
    client: Option<Client>,
    interrupt: Option<&'static AtomicBool>,
    cancel_grace: Duration,
}

impl TdsExecutor {
    /// An executor for `-S server` naming `host,port`, logging in as
    /// `user` with `password` (the defaults above when `None`).
    pub fn new(
        server: &str,
        (host, port): (String, u16),
        user: Option<&str>,
        password: Option<&str>,
        trusted: bool,
    ) -> TdsExecutor {
        let password = password
            .map(str::to_string)
            .or_else(|| std::env::var("SQLCMDPASSWORD").ok())
            .unwrap_or_else(|| DEFAULT_PASSWORD.to_string());
        TdsExecutor {
            server: server.to_string(),
            host,
            port,
            user: user.unwrap_or(DEFAULT_USER).to_string(),
            password,
            trusted: trusted && user.is_none(),
            client: None,
            interrupt: None,
            cancel_grace: super::CANCEL_GRACE,
        }
    }

    /// Cancels the running batch when `flag` is set (Ctrl-C).
    pub fn watch_interrupt(&mut self, flag: &'static AtomicBool) {
        self.interrupt = Some(flag);
    }

    /// The server's name as its login messages give it.
    pub fn server_name(&mut self, database: Option<&str>) -> Option<String> {
        let c = self.client(database).ok()?;
        c.login_messages
            .iter()
            .map(|m| m.server.clone())
            .find(|s| !s.is_empty())
    }

    fn client(&mut self, database: Option<&str>) -> Result<&mut Client, ExecError> {
        if self.client.is_none() {
            if self.trusted {
                return Err(self.connect_error(
                    "integrated authentication (-E) is not spoken over TCP by vdisim sqlcmd: give -U and -P (vdisim serve's default login is sa / vdisim)".into(),
                ));
            }
            let o = Options {
                user: self.user.clone(),
                password: self.password.clone(),
                database: database.unwrap_or_default().to_string(),
                timeout: Some(CONNECT_TIMEOUT),
            };
            let c = Client::connect(&self.host, self.port, &o)
                .map_err(|e| self.connect_error(e.to_string()))?;
            // A BACKUP takes as long as it takes: -t bounds it, not a read.
            c.set_read_timeout(None)
                .map_err(|e| self.connect_error(e.to_string()))?;
            self.client = Some(c);
        }
        self.client
            .as_mut()
            .ok_or_else(|| ExecError::Lost("no connection".into()))
    }

    fn connect_error(&self, reason: String) -> ExecError {
        ExecError::Connect {
            server: self.server.clone(),
            reason,
        }
    }

    /// Reads the answer on a thread of its own while this one watches the
    /// deadline and the interrupt flag; a cancel sends an ATTENTION and
    /// waits for its acknowledgement.
    fn await_batch(
        &mut self,
        mut client: Client,
        deadline: Option<Instant>,
    ) -> Result<BatchResult, ExecError> {
        let mut canceller: Canceller = client.canceller().map_err(|e| lost(&e))?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("sqlcmd-tds-answer".into())
            .spawn(move || {
                let r = client.read_reply();
                let _ = tx.send((client, r));
            })
            .map_err(|e| ExecError::Lost(format!("no thread to read the answer: {e}")))?;
        let mut cancel: Option<(Instant, ExecError)> = None;
        loop {
            match rx.recv_timeout(POLL) {
                Ok((client, Ok(reply))) => {
                    let Some((at, why)) = cancel else {
                        self.client = Some(client);
                        return Ok(result(&reply));
                    };
                    return self.drain_attention(client, reply, at, why);
                }
                Ok((_, Err(e))) => return Err(lost(&e)),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(ExecError::Lost("the answer's reader ended".into()));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if let Some((at, _)) = &cancel {
                if now >= *at + self.cancel_grace {
                    return Err(ExecError::Lost(format!(
                        "no answer within {} ms of the cancel",
                        self.cancel_grace.as_millis()
                    )));
                }
                continue;
            }
            let why = if self.interrupt.is_some_and(|f| f.load(Ordering::SeqCst)) {
                ExecError::Cancelled
            } else if deadline.is_some_and(|d| now >= d) {
                ExecError::Timeout
            } else {
                continue;
            };
            if let Err(e) = canceller.cancel() {
                return Err(ExecError::Lost(e.to_string()));
            }
            cancel = Some((now, why));
        }
    }

    /// After an ATTENTION: answers are read (and discarded) until the one
    /// acknowledging it, within the cancel grace.
    fn drain_attention(
        &mut self,
        mut client: Client,
        mut reply: Reply,
        at: Instant,
        why: ExecError,
    ) -> Result<BatchResult, ExecError> {
        while !reply.attention_acknowledged() {
            if Instant::now() >= at + self.cancel_grace {
                return Err(ExecError::Lost(
                    "the cancel was not acknowledged in time".into(),
                ));
            }
            reply = client.read_reply().map_err(|e| lost(&e))?;
        }
        self.client = Some(client);
        Err(why)
    }
}

fn lost(e: &ClientError) -> ExecError {
    ExecError::Lost(e.to_string())
}

/// The messages and result sets of an answer.
fn result(reply: &Reply) -> BatchResult {
    let mut r = BatchResult::default();
    for i in &reply.items {
        match i {
            Item::Message(m) => r.messages.push(ServerMessage {
                msg: SqlMessage {
                    number: m.number,
                    level: m.class,
                    state: m.state,
                    text: m.text.clone(),
                },
                line: m.line,
            }),
            Item::Rows(rs) => r.result_sets.push(rs.clone()),
            Item::Done { .. } => {}
        }
    }
    r
}

impl super::Executor for TdsExecutor {
    fn connect(&mut self, database: Option<&str>) -> Result<(), ExecError> {
        self.client(database).map(|_| ())
    }

    fn execute(
        &mut self,
        batch: &str,
        database: Option<&str>,
        _first_line: u32,
        timeout: Option<Duration>,
    ) -> Result<BatchResult, ExecError> {
        self.client(database)?;
        let Some(mut client) = self.client.take() else {
            return Err(ExecError::Lost("no connection".into()));
        };
        client.send_batch(batch).map_err(|e| lost(&e))?;
        self.await_batch(client, timeout.map(|t| Instant::now() + t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_and_comma_forms_name_a_tds_endpoint() {
        let ok = |s: &str| tds_endpoint(s).unwrap().unwrap();
        assert_eq!(ok("tcp:127.0.0.1,1533"), ("127.0.0.1".into(), 1533));
        assert_eq!(ok("TCP:db.example"), ("db.example".into(), 1433));
        assert_eq!(ok("host, 14330"), ("host".into(), 14330));
        assert!(tds_endpoint("localhost").is_none());
        assert!(tds_endpoint("/tmp/serve.sock").is_none());
        assert!(tds_endpoint(r".\SQLEXPRESS").is_none());
        assert!(tds_endpoint("tcp:host,0").unwrap().is_err());
        assert!(tds_endpoint("tcp:host,http").unwrap().is_err());
        assert!(tds_endpoint("tcp:,1433").unwrap().is_err());
    }
}
