//! Statements over TDS: the statement control ([`StatementControl`]) the
//! `sqlserver` backend (Linux) and the `windows` backend (with
//! `--sql-server`) give their ABI driver. Plain std TCP through the in-repo
//! client (`vdi_sqlserver::tds::client`), so it builds wherever the
//! backends do.
//!
//! - **Statements**: each BACKUP or RESTORE runs as its T-SQL
//!   ([`crate::sqlserver::statement_text`]) on a connection of its own,
//!   whose session id is learnt first (`SELECT @@SPID`).
//! - **Server-side abort** (the script's `server-signal-abort` event):
//!   `KILL <spid>` from a second connection ([`Tds::kill`]). An attention
//!   event sends a TDS ATTENTION on the statement's connection.
//! - **Outcomes**: from the answer's INFO and ERROR messages
//!   ([`crate::sqlserver::outcome_of_messages`]): a success carries its
//!   3014 text.
//!
//! The endpoint: [`configure`] (`vdisim run --sql-server tcp:HOST,PORT
//! [--login NAME:PASSWORD]`), else `$VDISIM_SQLSERVER`: `tcp:HOST,PORT`,
//! `HOST,PORT`, or an ADO.NET string (`server=tcp:HOST,PORT;user
//! id=..;password=..;database=..`). The login defaults to `sa` / `vdisim`,
//! `vdisim serve`'s default.
//!
//! What a TDS server cannot be asked to stage is answered
//! [`BackendError::Unsupported`] with the reason (graded *unimplemented*,
//! never wrong): see the `sqlserver` backend's module doc for the list.
//! The states of the server's databases, which decide whether a BACKUP or
//! a RESTORE LOG can be staged, are asked of the `vdisim serve` behind the
//! endpoint when the library is the stand-in (over its socket, or on
//! Windows its TCP bridge: `$VDISIM_SERVER`, `$VDISIM_SERVER_SECRET`); on
//! a real server they are not known, and those cases are not run.

use super::abi::harness::StatementControl;
use super::abi::{self};
use crate::backend::{BackendError, CaseSetup};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vdi_host::remote::wire::DatabaseInfo;
use vdi_model::msg::Timeout;
use vdi_model::outcome::{Outcome, SqlMessage, Status};
use vdi_model::statement::{ReadSizes, Statement, StatementKind};
use vdi_sqlserver::tds::client::{Canceller, Client, Item, Options};

/// The environment variable naming the SQL Server (see the module doc).
pub const ENV_SQLSERVER: &str = "VDISIM_SQLSERVER";
/// The environment variable giving the server's clock: virtual ms per
/// real ms (`vdisim serve --time-scale`; 1, real time, for a real SQL
/// Server and by default).
pub const ENV_TIME_SCALE: &str = "VDISIM_SQLSERVER_TIME_SCALE";

/// The server's time scale ([`ENV_TIME_SCALE`], 1..=1000).
pub(crate) fn server_scale() -> Result<u32, BackendError> {
    match std::env::var(ENV_TIME_SCALE) {
        Err(_) => Ok(1),
        Ok(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                BackendError::Failed(format!(
                    "{ENV_TIME_SCALE}={v:?}: give the server's --time-scale, a whole number 1..=1000"
                ))
            }),
    }
}
/// The login when none is given: `vdisim serve`'s default.
pub const DEFAULT_LOGIN: (&str, &str) = ("sa", "vdisim");
/// Longest wait for a connection and login.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait, at the end of a case, for a statement's answer once the
/// client's set is closed.
const SETTLE: Duration = Duration::from_secs(10);

/// Where the server is and how to log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The initial database (empty: the login's default).
    pub database: String,
}

static CONFIGURED: OnceLock<Endpoint> = OnceLock::new();

/// Sets the endpoint for this process (before the first case); `false` if
/// one was already set.
pub fn configure(e: Endpoint) -> bool {
    CONFIGURED.set(e).is_ok()
}

/// Parses `tcp:HOST,PORT`, `HOST,PORT` or an ADO.NET connection string.
pub fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let mut e = Endpoint {
        host: String::new(),
        port: 1433,
        user: DEFAULT_LOGIN.0.into(),
        password: DEFAULT_LOGIN.1.into(),
        database: String::new(),
    };
    let server = if s.contains('=') {
        let mut server = None;
        for part in s.split(';').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' in the connection string is not key=value"))?;
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "server" | "data source" | "address" | "addr" => server = Some(v),
                "user" | "user id" | "uid" => e.user = v,
                "password" | "pwd" => e.password = v,
                "database" | "initial catalog" => e.database = v,
                _ => {}
            }
        }
        server.ok_or("the connection string names no server (server=tcp:HOST,PORT)")?
    } else {
        s.trim().to_string()
    };
    let with_tcp = if server.contains(',') || server.to_ascii_lowercase().starts_with("tcp:") {
        server
    } else {
        format!("tcp:{server}")
    };
    let (host, port) = tcp_endpoint(&with_tcp)?;
    e.host = host;
    e.port = port;
    Ok(e)
}

/// `tcp:HOST[,PORT]` or `HOST,PORT` (`vdisim sqlcmd -S`'s forms; port
/// 1433 when not given).
fn tcp_endpoint(server: &str) -> Result<(String, u16), String> {
    let rest = match server.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("tcp:") => &server[4..],
        _ => server,
    };
    let (host, port) = match rest.split_once(',') {
        Some((h, p)) => match p.trim().parse::<u16>() {
            Ok(n) if n > 0 => (h.trim(), n),
            _ => return Err(format!("'{p}' is not a TCP port (1..=65535) in {server}")),
        },
        None => (rest.trim(), 1433),
    };
    if host.is_empty() {
        return Err(format!("no host in {server}: give tcp:HOST,PORT"));
    }
    Ok((host.to_string(), port))
}

/// Whether a SQL Server is given: [`configure`]d, or `$VDISIM_SQLSERVER`
/// set and not empty.
pub fn requested() -> bool {
    CONFIGURED.get().is_some() || std::env::var_os(ENV_SQLSERVER).is_some_and(|v| !v.is_empty())
}

/// The endpoint: [`configure`]d, else `$VDISIM_SQLSERVER`.
pub(crate) fn endpoint() -> Result<Endpoint, BackendError> {
    if let Some(e) = CONFIGURED.get() {
        return Ok(e.clone());
    }
    let s = std::env::var(ENV_SQLSERVER).map_err(|_| {
        BackendError::Failed(format!(
            "the sqlserver backend needs a server: vdisim run --sql-server tcp:HOST,PORT, or {ENV_SQLSERVER}=tcp:HOST,PORT (or an ADO.NET string)"
        ))
    })?;
    parse_endpoint(&s).map_err(|e| BackendError::Failed(format!("{ENV_SQLSERVER}: {e}")))
}

pub(crate) fn connect(e: &Endpoint) -> Result<Client, BackendError> {
    let o = Options {
        user: e.user.clone(),
        password: e.password.clone(),
        database: e.database.clone(),
        timeout: Some(CONNECT_TIMEOUT),
    };
    let c = Client::connect(&e.host, e.port, &o).map_err(|err| {
        BackendError::Failed(format!(
            "cannot reach SQL Server at {}:{}: {err}",
            e.host, e.port
        ))
    })?;
    c.set_read_timeout(None)
        .map_err(|err| BackendError::Failed(err.to_string()))?;
    Ok(c)
}

/// A logged-in connection and its session id.
type Session = (Client, u16);

/// A logged-in connection and its session id (`SELECT @@SPID`, asked
/// first, as the statement's KILL will name it).
fn open_session(e: &Endpoint) -> Result<Session, BackendError> {
    let mut c = connect(e)?;
    let r = c
        .batch(crate::sqlserver::SESSION_ID_QUERY)
        .map_err(|e| BackendError::Failed(format!("@@SPID: {e}")))?;
    let spid = r
        .items
        .iter()
        .find_map(|i| match i {
            Item::Rows(rs) => rs.rows.first()?.first()?.as_deref()?.parse::<u16>().ok(),
            _ => None,
        })
        .ok_or_else(|| BackendError::Failed("the server answered no @@SPID".into()))?;
    Ok((c, spid))
}

/// The messages of an answer.
fn messages(r: &vdi_sqlserver::tds::client::Reply) -> Vec<SqlMessage> {
    r.items
        .iter()
        .filter_map(|i| match i {
            Item::Message(m) => Some(SqlMessage {
                number: m.number,
                level: m.class,
                state: m.state,
                text: m.text.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Longest wait for the `vdisim serve` behind the endpoint to answer a
/// Status request.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// The status of the `vdisim serve` the stand-in is pointed at
/// (`$VDISIM_SERVER`: its socket, or `tcp:HOST:PORT` of its TCP bridge with
/// `$VDISIM_SERVER_SECRET`; else the per-user default socket), asked on a
/// control connection.
fn serve_status() -> std::io::Result<vdi_host::remote::wire::ServerStatus> {
    use vdi_host::remote::wire::{self, Frame, PROTOCOL, Request, Response};
    let mut s = vdi_host::remote::server_address().connect()?;
    s.set_timeouts(Some(STATUS_TIMEOUT))?;
    wire::write_frame(
        &mut s,
        &Frame::HelloControl {
            protocol: PROTOCOL,
            client: "vdisim statements over TDS".into(),
        },
    )?;
    wire::write_frame(&mut s, &Frame::Request(Request::Status))?;
    match wire::read_frame(&mut s)? {
        Some(Frame::Response(Response::Status { status })) => Ok(status),
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("vdisim serve answered Status with {other:?}"),
        )),
    }
}

/// A statement sent and not yet answered: its session, its connection.
struct Running {
    spid: u16,
    canceller: Canceller,
}

/// What a case's statements have come to.
#[derive(Default)]
struct TdsState {
    running: Option<Running>,
    /// The running statement's answer, when it comes.
    answer: Option<Receiver<Outcome>>,
    /// The statements and their outcomes (`None`: no answer yet).
    statements: Vec<(Statement, Option<Outcome>)>,
    /// A second connection, for KILL.
    killer: Option<Client>,
}

/// Statements over TDS: the driver's statement control.
pub(crate) struct Tds {
    endpoint: Result<Endpoint, BackendError>,
    /// The library is the stand-in: a `vdisim serve` socket answers Status.
    pub(crate) standin: bool,
    t0: Mutex<Instant>,
    st: Mutex<TdsState>,
    /// The next statement's connection, being made.
    ready: Mutex<Option<JoinHandle<Result<Session, BackendError>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Tds {
    /// Statements to the [`endpoint`] (an error there surfaces at the
    /// first case); `standin`: the library is the stand-in, pointed at the
    /// `vdisim serve` behind the endpoint.
    pub(crate) fn new(standin: bool) -> Tds {
        Tds {
            endpoint: endpoint(),
            standin,
            t0: Mutex::new(Instant::now()),
            st: Mutex::default(),
            ready: Mutex::new(None),
        }
    }

    pub(crate) fn endpoint(&self) -> Result<Endpoint, BackendError> {
        self.endpoint.clone()
    }

    /// A new case.
    pub(crate) fn reset(&self) {
        let mut g = lock(&self.st);
        let killer = g.killer.take();
        *g = TdsState {
            killer,
            ..TdsState::default()
        };
        drop(g);
        *lock(&self.t0) = Instant::now();
        if lock(&self.ready).is_none() {
            self.prepare();
        }
    }

    /// Why `stmt` cannot be run as T-SQL on the server, if it cannot.
    fn unstageable(&self, stmt: &Statement) -> Option<String> {
        let p = &stmt.plan;
        if p.mid_flushes != 0 || !p.extra_commands.is_empty() || p.read_sizes != ReadSizes::Max {
            return Some(
                "a server plan T-SQL cannot ask for (mid-stream Flushes, probe commands or restore read sizes)".into(),
            );
        }
        if stmt.kind.is_metadata_only() && p.metadata_bytes != 64 * 1024 {
            return Some(format!(
                "a HEADERONLY/FILELISTONLY read of {} bytes: the server reads what it reads",
                p.metadata_bytes
            ));
        }
        self.refused_by_state(stmt, self.database(&stmt.database).as_ref())
    }

    /// Why the server would refuse `stmt` before it reads or writes the
    /// media the case is about, given its database `db` (from the `vdisim
    /// serve` socket; `None`: not known), if it would — the checks of
    /// `vdisim serve`'s T-SQL (`sim/sqlserver/src/serve/rules.rs`), which a
    /// case's server half does not make: then the case cannot be staged.
    fn refused_by_state(&self, stmt: &Statement, db: Option<&DatabaseInfo>) -> Option<String> {
        let name = &stmt.database;
        let unknown = || {
            Some(format!(
                "the state of the server's database '{name}' is not known (known only from a vdisim serve socket)"
            ))
        };
        match stmt.kind {
            StatementKind::RestoreLog => match db {
                Some(d) if d.state == "restoring" || d.state == "standby" => None,
                Some(d) => Some(format!(
                    "a RESTORE LOG onto a database that is {}: the server refuses it (Msg 3117) before reading the media",
                    d.state
                )),
                None if self.standin => Some(format!(
                    "a RESTORE LOG onto '{name}', which the server does not have (Msg 3117)"
                )),
                None => unknown(),
            },
            StatementKind::RestoreDatabase => match db {
                Some(d)
                    if d.state == "online"
                        && d.recovery_model != "SIMPLE"
                        && d.log_chain_lsn != Some(d.lsn) =>
                {
                    Some(format!(
                        "a RESTORE DATABASE over '{name}', whose log tail is not backed up: the server refuses it (Msg 3159) before reading the media"
                    ))
                }
                Some(_) => None,
                // No such database: the restore creates it.
                None if self.standin => None,
                // The client serves the case's seed backup: media in
                // vdisim's self-describing format (docs/MEDIA.md), which
                // `vdisim serve` restores (clause `media.header`) and a
                // real server cannot.
                None => Some(
                    "a RESTORE: the case's seed media are vdisim's format, which only vdisim serve reads".into(),
                ),
            },
            k if k.is_backup() => {
                let Some(d) = db else {
                    return if self.standin {
                        Some(format!("a BACKUP of '{name}', which the server does not have (Msg 911)"))
                    } else {
                        unknown()
                    };
                };
                if d.size != stmt.plan.data_bytes || d.state != "online" {
                    return Some(format!(
                        "a BACKUP of {} bytes: the server's database '{name}' holds {} and is {}",
                        stmt.plan.data_bytes, d.size, d.state
                    ));
                }
                let log_refused = k == StatementKind::BackupLog
                    && (d.recovery_model == "SIMPLE" || d.log_chain_lsn.is_none());
                log_refused.then(|| {
                    format!(
                        "a BACKUP LOG of '{name}', whose log chain has not started: the server refuses it (Msg 4208/4214)"
                    )
                })
            }
            // HEADERONLY, FILELISTONLY, VERIFYONLY: no database.
            _ => (!self.standin).then(|| {
                "a RESTORE: the case's seed media are vdisim's format, which only vdisim serve reads".into()
            }),
        }
    }

    /// The `vdisim serve` behind the endpoint's view of `db`, when the
    /// library is the stand-in (its socket answers Status).
    fn database(&self, db: &str) -> Option<DatabaseInfo> {
        if !self.standin {
            return None;
        }
        serve_status()
            .ok()?
            .databases
            .into_iter()
            .find(|d| d.name == db)
    }

    /// Sends `stmt` on a connection of its own, its session id learnt first.
    /// A connection for the next statement, logged in and its session id
    /// learnt, made ahead of time (at reset, and after each statement is
    /// sent) so that sending a statement costs no login: a case's clock
    /// runs scaled, and a login's real milliseconds would be many of its.
    fn prepare(&self) {
        let endpoint = self.endpoint.clone();
        let h = std::thread::Builder::new()
            .name("sqlserver-connect".into())
            .spawn(move || open_session(&endpoint?));
        *lock(&self.ready) = h.ok();
    }

    /// The prepared connection, or a new one.
    fn session(&self) -> Result<Session, BackendError> {
        let h = lock(&self.ready).take();
        match h.map(|h| h.join()) {
            Some(Ok(Ok(s))) => Ok(s),
            _ => open_session(&self.endpoint()?),
        }
    }

    fn send(&self, stmt: &Statement) -> Result<(Running, Receiver<Outcome>), BackendError> {
        let text = crate::sqlserver::statement_text(stmt)
            .map_err(|e| BackendError::Failed(e.to_string()))?;
        let (mut c, spid) = self.session()?;
        let canceller = c
            .canceller()
            .map_err(|e| BackendError::Failed(e.to_string()))?;
        let (tx, answer) = mpsc::channel();
        let t0 = *lock(&self.t0);
        std::thread::Builder::new()
            .name("sqlserver-statement".into())
            .spawn(move || {
                let outcome = match c.batch(&text) {
                    Ok(r) => crate::sqlserver::outcome_of_messages(
                        &messages(&r),
                        t0.elapsed().as_millis() as u64,
                    ),
                    // The connection ended without an answer: never a
                    // success.
                    Err(e) => Outcome {
                        status: Status::Failed,
                        reason: Some(vdi_model::outcome::FailReason::ServerDied),
                        messages: vec![SqlMessage::error(
                            10054,
                            format!("the connection ended without an answer: {e}"),
                        )],
                        ..Outcome::default()
                    },
                };
                let _ = tx.send(outcome);
            })
            .map_err(|e| BackendError::Failed(format!("no thread for the statement: {e}")))?;
        Ok((Running { spid, canceller }, answer))
    }

    /// Takes the running statement's answer if it comes within `wait`
    /// (waiting without holding the state: a KILL may come meanwhile).
    fn settle(&self, wait: Duration) -> Option<Outcome> {
        let answer = lock(&self.st).answer.take()?;
        let got = match answer.recv_timeout(wait) {
            Ok(o) => Some(o),
            Err(RecvTimeoutError::Timeout) => {
                lock(&self.st).answer = Some(answer);
                return None;
            }
            Err(RecvTimeoutError::Disconnected) => None,
        };
        let mut g = lock(&self.st);
        g.running = None;
        if let Some((_, slot)) = g.statements.last_mut() {
            slot.clone_from(&got);
        }
        got
    }

    /// `KILL` of the running statement's session from a second connection.
    pub(crate) fn kill(&self) -> Result<(), BackendError> {
        let mut g = lock(&self.st);
        let Some(spid) = g.running.as_ref().map(|r| r.spid) else {
            // Nothing running: SQL Server's SignalAbort is ignored.
            return Ok(());
        };
        if g.killer.is_none() {
            g.killer = Some(connect(&self.endpoint()?)?);
        }
        let text = crate::sqlserver::kill_statement(i32::from(spid))
            .map_err(|e| BackendError::Failed(e.to_string()))?;
        let k = g
            .killer
            .as_mut()
            .ok_or_else(|| BackendError::Failed("no KILL connection".into()))?;
        match k.batch(&text) {
            Ok(r) if !r.failed() => Ok(()),
            Ok(r) => Err(BackendError::Failed(format!(
                "KILL {spid} failed: {:?}",
                messages(&r)
            ))),
            Err(e) => {
                g.killer = None;
                Err(BackendError::Failed(format!("KILL {spid}: {e}")))
            }
        }
    }

    /// A TDS ATTENTION on the running statement's connection.
    pub(crate) fn attention(&self) -> Result<(), BackendError> {
        match lock(&self.st).running.as_mut() {
            Some(r) => r
                .canceller
                .cancel()
                .map_err(|e| BackendError::Failed(format!("ATTENTION: {e}"))),
            None => Ok(()),
        }
    }
}

impl StatementControl for Tds {
    fn start_statement(&self, stmt: &Statement) -> Result<(), BackendError> {
        if let Some(why) = self.unstageable(stmt) {
            return Err(BackendError::Unsupported(why));
        }
        // The previous statement's answer, if it is still awaited.
        self.settle(SETTLE);
        let (r, answer) = self.send(stmt)?;
        self.prepare();
        let mut g = lock(&self.st);
        g.running = Some(r);
        g.answer = Some(answer);
        g.statements.push((stmt.clone(), None));
        Ok(())
    }

    fn wait_statement(&self, t: Timeout, scale: u32) -> Result<Option<Outcome>, BackendError> {
        if lock(&self.st).running.is_none() {
            return Ok(lock(&self.st)
                .statements
                .last()
                .and_then(|(_, o)| o.clone()));
        }
        let wait = match t {
            Timeout::Infinite => abi::HANG_AFTER,
            Timeout::Ms(ms) => vdi_host::clock::scaled_wait(ms, scale),
        };
        match self.settle(wait) {
            Some(o) => Ok(Some(o)),
            None if t == Timeout::Infinite => Err(BackendError::Ended("Hang".into())),
            None => Ok(None),
        }
    }

    fn finish(&self) -> Vec<(Statement, Outcome)> {
        self.settle(SETTLE);
        let mut g = lock(&self.st);
        if let Some(r) = g.running.take() {
            // No answer within the settle time: the statement's connection
            // is closed, so its reader ends (the outcome stays Running).
            r.canceller.close();
        }
        g.answer = None;
        g.statements
            .drain(..)
            .map(|(s, o)| {
                let o = o.unwrap_or(Outcome {
                    status: Status::Running,
                    ..Outcome::default()
                });
                (s, o)
            })
            .collect()
    }
}

/// Why a case's setup cannot be staged over TDS with a server whose clock
/// runs `scale` virtual ms per real ms, if it cannot.
pub(crate) fn unstageable_setup(setup: &CaseSetup, scale: u32) -> Option<String> {
    if setup.profile != vdi_spec::Profile::default() {
        return Some("a profile other than the default: the server's behaviour is its own".into());
    }
    if setup.time_scale.max(1) != scale {
        return Some(format!(
            "a clock of {} virtual ms per real ms: the server's runs {scale} ({ENV_TIME_SCALE})",
            setup.time_scale.max(1)
        ));
    }
    let server_side = setup
        .faults
        .faults
        .iter()
        .find(|f| f.fault.is_server_side());
    server_side.map(|f| {
        format!(
            "a planned server-side fault ({}): over TDS only KILL and an attention are staged",
            f.fault.kind()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_from_the_forms_a_user_gives() {
        let e = parse_endpoint("tcp:127.0.0.1,14330").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 14330));
        assert_eq!((e.user.as_str(), e.password.as_str()), DEFAULT_LOGIN);
        let e = parse_endpoint(
            "Server=tcp:db,1533;User ID=backup;Password=p;Initial Catalog=sales;TrustServerCertificate=true",
        )
        .unwrap();
        assert_eq!(
            e,
            Endpoint {
                host: "db".into(),
                port: 1533,
                user: "backup".into(),
                password: "p".into(),
                database: "sales".into()
            }
        );
        assert_eq!(parse_endpoint("server=localhost").unwrap().port, 1433);
        assert!(parse_endpoint("user=sa;password=x").is_err());
        assert!(parse_endpoint("tcp:h,notaport").is_err());
    }
}
