//! Server control for a real SQL Server (Linux or Windows): the T-SQL the
//! harness sends, and — with the `tds` feature — a blocking TDS client that
//! sends it.
//!
//! What a real-server backend needs from the server side, and how:
//! - start a BACKUP or RESTORE with the scenario's devices and options: the
//!   statement's T-SQL ([`Statement::to_tsql`]) on its own connection, whose
//!   session id is learnt first ([`SESSION_ID_QUERY`]) so it can be killed;
//! - a server-side abort: `KILL <session>` from a second connection
//!   ([`kill_statement`]);
//! - the statement's outcome: the server's error messages (number, class,
//!   state, text) or success.
//!
//! ## Running against a real server
//!
//! ```sh
//! cargo build --release -p vdi-conformance --features tds
//! export VDISIM_SQLSERVER='server=tcp:localhost,1433;user=sa;password=...;TrustServerCertificate=true'
//! ```
//!
//! The connection string is ADO.NET style (see `tiberius::Config::from_ado_string`).
//! The machine must also run the VDI client library next to that server
//! (`/opt/mssql/lib/libsqlvdi.so` on Linux, `sqlvdi.dll` on Windows), with
//! the permissions vdi-abi-and-field-notes §1.2 describes.
//!
//! The tiberius client below surfaces errors but not informational
//! messages (tiberius does not expose INFO tokens). The `sqlserver`
//! backend (`crate::backends::sqlserver`) therefore speaks TDS with the
//! in-repo client (`vdi_sqlserver::tds::client`), which reads INFO and
//! ERROR tokens alike: its outcomes come from [`outcome_of_messages`], and
//! a success carries its 3014 text.

use vdi_model::outcome::{FailReason, Outcome, SqlMessage, Status};
use vdi_model::statement::Statement;

/// Asks the server for the current connection's session id.
pub const SESSION_ID_QUERY: &str = "SELECT CAST(@@SPID AS int)";

/// Session ids SQL Server hands out (`@@SPID` is a smallint; user sessions
/// start above 50 but any positive id is accepted by KILL).
pub const SESSION_ID_RANGE: std::ops::RangeInclusive<i32> = 1..=32767;

/// A bad request for server control.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    #[error(
        "session id {0} is outside 1..=32767; KILL takes the @@SPID of the statement's connection"
    )]
    SessionId(i32),
    #[error(
        "the statement names no VIRTUAL_DEVICE; a VDI statement needs at least one (the set name)"
    )]
    NoDevice,
    #[error("cannot reach SQL Server: {0}")]
    Connect(String),
    #[error("SQL Server refused the request: {0}")]
    Server(String),
    #[error(
        "no connection string: set VDISIM_SQLSERVER (ADO.NET style, e.g. server=tcp:localhost,1433;user=sa;password=...)"
    )]
    NoConnectionString,
}

/// The statement to send for `stmt`, checked.
pub fn statement_text(stmt: &Statement) -> Result<String, ControlError> {
    if stmt.devices.is_empty() {
        return Err(ControlError::NoDevice);
    }
    Ok(stmt.to_tsql())
}

/// `KILL <session>`: the server-side abort of a running BACKUP/RESTORE.
pub fn kill_statement(session: i32) -> Result<String, ControlError> {
    if !SESSION_ID_RANGE.contains(&session) {
        return Err(ControlError::SessionId(session));
    }
    Ok(format!("KILL {session}"))
}

/// The outcome of a statement the server answered with `errors` (empty:
/// success). Errors are (number, class, state, text), in the order received.
pub fn outcome_from(errors: &[(u32, u8, u8, String)], ended_ms: u64) -> Outcome {
    if errors.is_empty() {
        return Outcome {
            status: Status::Succeeded,
            reason: None,
            messages: Vec::new(),
            bytes: 0,
            ended_ms: Some(ended_ms),
            media: None,
        };
    }
    let messages: Vec<SqlMessage> = errors
        .iter()
        .map(|(n, l, s, t)| SqlMessage {
            number: *n,
            level: *l,
            state: *s,
            text: t.clone(),
        })
        .collect();
    // Classify as the model does, from the message numbers SQL Server uses.
    let text = messages
        .iter()
        .map(|m| m.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let reason = if messages.iter().any(|m| m.number == 3201) {
        FailReason::OpenFailed
    } else if messages.iter().any(|m| m.number == 3204) || text.contains("KILL") {
        FailReason::ServerAbort
    } else if text.contains("995") || messages.iter().any(|m| m.number == 18210) {
        FailReason::ClientAbort
    } else if messages
        .iter()
        .any(|m| matches!(m.number, 3241 | 3231 | 3132 | 3227 | 3135))
    {
        FailReason::BadMedia
    } else if messages.iter().any(|m| m.number == 3254) {
        FailReason::NoBackup
    } else {
        FailReason::DeviceError
    };
    Outcome {
        status: Status::Failed,
        reason: Some(reason),
        messages,
        bytes: 0,
        ended_ms: Some(ended_ms),
        media: None,
    }
}

/// The outcome of a statement the server answered with `messages` (INFO
/// and ERROR alike, in order): failed when one is an error (class above
/// 10), classified as [`outcome_from`] does (596, the killed session's
/// message, is a server abort); the messages are kept whole, so a success
/// carries its 3014 text.
pub fn outcome_of_messages(messages: &[SqlMessage], ended_ms: u64) -> Outcome {
    let errors: Vec<(u32, u8, u8, String)> = messages
        .iter()
        .filter(|m| m.level > 10)
        .map(|m| (m.number, m.level, m.state, m.text.clone()))
        .collect();
    let mut o = outcome_from(&errors, ended_ms);
    if messages.iter().any(|m| m.number == 596) {
        o.reason = Some(FailReason::ServerAbort);
    }
    o.messages = messages.to_vec();
    o
}

/// The connection string from `VDISIM_SQLSERVER`.
pub fn connection_string() -> Result<String, ControlError> {
    std::env::var("VDISIM_SQLSERVER").map_err(|_| ControlError::NoConnectionString)
}

#[cfg(feature = "tds")]
pub use tds::SqlServer;

#[cfg(feature = "tds")]
mod tds {
    //! A blocking TDS client (tiberius on a current-thread tokio runtime).

    use super::{ControlError, SESSION_ID_QUERY, kill_statement, outcome_from, statement_text};
    use tiberius::{Client, Config};
    use tokio::net::TcpStream;
    use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};
    use vdi_model::outcome::Outcome;
    use vdi_model::statement::Statement;

    /// One connection to SQL Server.
    pub struct SqlServer {
        rt: tokio::runtime::Runtime,
        client: Client<Compat<TcpStream>>,
    }

    impl SqlServer {
        /// Connects with an ADO.NET-style connection string.
        pub fn connect(ado: &str) -> Result<SqlServer, ControlError> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| ControlError::Connect(e.to_string()))?;
            let config =
                Config::from_ado_string(ado).map_err(|e| ControlError::Connect(e.to_string()))?;
            let client = rt.block_on(async {
                let tcp = TcpStream::connect(config.get_addr())
                    .await
                    .map_err(|e| ControlError::Connect(e.to_string()))?;
                tcp.set_nodelay(true)
                    .map_err(|e| ControlError::Connect(e.to_string()))?;
                Client::connect(config, tcp.compat_write())
                    .await
                    .map_err(|e| ControlError::Connect(e.to_string()))
            })?;
            Ok(SqlServer { rt, client })
        }

        /// This connection's session id (for KILL).
        pub fn session_id(&mut self) -> Result<i32, ControlError> {
            let client = &mut self.client;
            self.rt.block_on(async {
                let row = client
                    .simple_query(SESSION_ID_QUERY)
                    .await
                    .map_err(|e| ControlError::Server(e.to_string()))?
                    .into_row()
                    .await
                    .map_err(|e| ControlError::Server(e.to_string()))?;
                row.and_then(|r| r.get::<i32, _>(0))
                    .ok_or_else(|| ControlError::Server("no @@SPID returned".into()))
            })
        }

        /// Runs a BACKUP or RESTORE to the end and reports its outcome.
        pub fn run_statement(&mut self, stmt: &Statement) -> Result<Outcome, ControlError> {
            let text = statement_text(stmt)?;
            let t0 = std::time::Instant::now();
            let client = &mut self.client;
            let errors = self.rt.block_on(async {
                match client.simple_query(text).await {
                    Ok(stream) => match stream.into_results().await {
                        Ok(_) => Vec::new(),
                        Err(e) => vec![server_error(e)],
                    },
                    Err(e) => vec![server_error(e)],
                }
            });
            Ok(outcome_from(&errors, t0.elapsed().as_millis() as u64))
        }

        /// Kills `session` (a server-side abort of its statement).
        pub fn kill(&mut self, session: i32) -> Result<(), ControlError> {
            let text = kill_statement(session)?;
            let client = &mut self.client;
            self.rt.block_on(async {
                client
                    .execute(text, &[])
                    .await
                    .map(|_| ())
                    .map_err(|e| ControlError::Server(e.to_string()))
            })
        }
    }

    fn server_error(e: tiberius::error::Error) -> (u32, u8, u8, String) {
        match e {
            tiberius::error::Error::Server(t) => {
                (t.code(), t.class(), t.state(), t.message().to_string())
            }
            other => (0, 20, 0, other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vdi_model::statement::{ServerPlan, StatementKind};
    use vdi_spec::TransferOptions;

    fn stmt(kind: StatementKind, devices: &[&str]) -> Statement {
        Statement {
            kind,
            database: "sales".into(),
            devices: devices.iter().map(|d| d.to_string()).collect(),
            options: TransferOptions {
                block_size: 65536,
                max_transfer_size: 4 << 20,
                buffer_count: Some(32),
            },
            plan: ServerPlan::default(),
        }
    }

    #[test]
    fn backup_and_restore_statements() {
        let b = statement_text(&stmt(
            StatementKind::BackupDatabase,
            &["{A1B2}", "{A1B2}-dev1"],
        ))
        .unwrap();
        assert_eq!(
            b,
            "BACKUP DATABASE [sales] TO VIRTUAL_DEVICE=N'{A1B2}', VIRTUAL_DEVICE=N'{A1B2}-dev1' WITH BLOCKSIZE=65536, MAXTRANSFERSIZE=4194304, BUFFERCOUNT=32"
        );
        let r = statement_text(&stmt(StatementKind::RestoreLog, &["s"])).unwrap();
        assert!(
            r.starts_with("RESTORE LOG [sales] FROM VIRTUAL_DEVICE=N's' WITH"),
            "{r}"
        );
        let h = statement_text(&stmt(StatementKind::RestoreHeaderOnly, &["s"])).unwrap();
        assert!(
            h.starts_with("RESTORE HEADERONLY FROM VIRTUAL_DEVICE=N's'"),
            "{h}"
        );
        assert_eq!(
            statement_text(&stmt(StatementKind::BackupLog, &[])),
            Err(ControlError::NoDevice)
        );
    }

    #[test]
    fn kill_statement_checks_the_session() {
        assert_eq!(kill_statement(57).unwrap(), "KILL 57");
        assert_eq!(kill_statement(0), Err(ControlError::SessionId(0)));
        assert_eq!(kill_statement(40000), Err(ControlError::SessionId(40000)));
    }

    #[test]
    fn outcomes_classify_server_messages() {
        assert!(outcome_from(&[], 5).succeeded());
        let o = outcome_from(
            &[
                (18210, 16, 1, "BackupVirtualDeviceFile::RequestDurableMedia: Flush failure on backup device 'x'. Operating system error 995(...).".into()),
                (3013, 16, 1, "BACKUP DATABASE is terminating abnormally.".into()),
            ],
            9,
        );
        assert_eq!(o.reason, Some(FailReason::ClientAbort));
        assert_eq!(o.messages.len(), 2);
        assert_eq!(
            outcome_from(&[(3201, 16, 1, "Cannot open backup device".into())], 1).reason,
            Some(FailReason::OpenFailed)
        );
    }
}
