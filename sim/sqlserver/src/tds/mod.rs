//! TDS 7.4, the server side: what `vdisim serve --tds ADDR` speaks so that
//! real SQL Server drivers (ODBC, FreeTDS, python-tds, tedious, tiberius,
//! go-mssqldb) can log in and run T-SQL.
//!
//! The codec is written here by hand (no maintained crate offers a
//! server-side TDS codec; `../shared/tds-notes.md` compares them):
//!
//! - [`packet`]: the 8-byte packet header, messages reassembled from
//!   packets under bounds, and responses split into packets of the
//!   negotiated size.
//! - [`prelogin`]: the PRELOGIN option table and the server's answer.
//! - [`tls`]: TLS inside PRELOGIN (rustls, TLS 1.2): the negotiation
//!   table, the handshake carried in PRELOGIN packets, the certificate.
//! - [`login7`]: LOGIN7 (bounded offsets and lengths, the password's
//!   obfuscation undone).
//! - [`token`]: the tokens a server sends (LOGINACK, ENVCHANGE, INFO,
//!   ERROR, DONE, DONEPROC, DONEINPROC, RETURNSTATUS, RETURNVALUE).
//! - [`rpc`]: RPC requests (parameterized statements) and the T-SQL they
//!   become.
//! - [`query`]: the few queries answered with result sets (COLMETADATA,
//!   ROW).
//! - [`session`]: one connection, from PRELOGIN to its end, running each
//!   SQL batch through the serve process's T-SQL (the same statement
//!   handling as its control socket, `Inner::run_batch`).
//!
//! ## What is served
//!
//! - PRELOGIN: VERSION (16.0.1000), ENCRYPTION, INSTOPT, THREADID, MARS (0).
//! - Encryption ([`tls`]): TLS 1.2 (never 1.3: TDS 7.x clients fail on
//!   it) carried in PRELOGIN packets, with a self-signed certificate made
//!   at start (`localhost`, `127.0.0.1`; clients connect with
//!   TrustServerCertificate=yes or the equivalent) or `--tls-cert FILE
//!   --tls-key FILE` (PEM). A client asking for encryption (ENCRYPT_ON,
//!   ENCRYPT_REQ: ODBC 18's default `Encrypt=yes`, FreeTDS `require`,
//!   pytds with `cafile`, tedious `encrypt: true`, tiberius `Required`)
//!   is answered ON and the whole session is encrypted; one offering
//!   ENCRYPT_OFF (ODBC `Encrypt=no`, FreeTDS' default `request`, pytds
//!   `enc_login_only`, tiberius `Off`) is answered OFF and only LOGIN7 is
//!   encrypted, as SQL Server does; ENCRYPT_NOT_SUP goes on in plaintext.
//!   With `--tls-required` NOT_SUP is answered REQ and closed, and OFF
//!   gets the whole session encrypted. A server started without TLS
//!   (`ServeConfig::tls` `None`) answers NOT_SUP and closes a client that
//!   requires encryption.
//! - TDS 8 (`Encrypt=strict`: a TLS ClientHello first, ALPN `tds/8.0`):
//!   TLS 1.3 or 1.2 straight on the socket, then PRELOGIN (answered
//!   ENCRYPT_NOT_SUP: it is inside TLS already), LOGIN7 and the session
//!   inside TLS. Strict clients validate the certificate (ODBC:
//!   `ServerCertificate=cert.pem`, or a CA they trust): give one with
//!   `--tls-cert/--tls-key`, or in-process take
//!   `Server::tds_certificate_pem`.
//! - LOGIN7: SQL authentication against the configured logins
//!   (`--login NAME:PASSWORD`; default `sa` / `vdisim`, see
//!   `crate::serve::DEFAULT_LOGINS`). A wrong name or password gets Msg
//!   18456 (class 14, state 1, "Login failed for user 'x'.") and the
//!   connection is closed, as SQL Server does; integrated (SSPI)
//!   authentication is refused the same way. An initial database that
//!   does not exist gets Msg 4060 then 18456. Success: ENVCHANGE
//!   database, INFO 5701, ENVCHANGE collation
//!   (SQL_Latin1_General_CP1_CI_AS), ENVCHANGE language, INFO 5703,
//!   LOGINACK (TDS 7.4, "Microsoft SQL Server" 16.0.1000), ENVCHANGE
//!   packet size, DONE.
//! - SQL batches (ALL_HEADERS skipped): run as the control socket runs
//!   them; each message is an INFO (class ≤ 10) or ERROR token with SQL
//!   Server's number, state, class and text, the server name and the
//!   batch line; a USE that changed the database adds ENVCHANGE database
//!   and INFO 5701; then one DONE (DONE_ERROR when an ERROR was sent). The
//!   batch is answered when it has finished.
//! - ATTENTION: cancels the running batch through the same switch as the
//!   control socket's Cancel (a running BACKUP or RESTORE is aborted: Msg
//!   3204 and 3013, never a success); the batch's answer is finished, then
//!   a separate DONE(DONE_ATTN) acknowledges the attention.
//! - RPC requests: `sp_executesql`, `sp_prepexec`, `sp_prepare`,
//!   `sp_execute`, `sp_unprepare` (by id or by name), with string, integer
//!   and bit parameters (PLP included): the statement runs as a batch that
//!   DECLAREs each parameter first (on the statement's line), so
//!   `BACKUP DATABASE [x] TO VIRTUAL_DEVICE = @device` behaves as it does
//!   with the value written in; answered with the statement's messages,
//!   DONEINPROC, RETURNSTATUS 0, the prepared handle as RETURNVALUE, and
//!   DONEPROC. Another procedure gets Msg 2812; another parameter type an
//!   error that says so. At most `session::PREPARED_MAX` statements stay
//!   prepared per session.
//! - Result sets for a batch that is exactly one of the queries drivers
//!   and products send around a backup: `SELECT @@VERSION`, `@@SPID`,
//!   `@@SERVERNAME`, `DB_NAME()`, `SERVERPROPERTY('…')`, `SELECT name FROM
//!   sys.databases` ([`query`] has the list); any other SELECT gets the
//!   T-SQL parser's "not served" error.
//! - Transaction-manager requests are acknowledged with a DONE (vdisim has
//!   no transactions); RESETCONNECTION returns the session to its login
//!   database and is acknowledged with ENVCHANGE 18.
//!
//! ## Not yet served
//!
//! Client certificates, result sets beyond [`query`]'s
//! (`msdb.dbo.backupset`, `sys.databases` columns other than `name`, a
//! served query inside `sp_executesql`), progress messages sent while a
//! statement runs (they arrive with its answer), KILL, OUTPUT
//! parameters other than the prepared handle, several RPCs in one
//! message, bulk load, MARS.
//!
//! ## Bounds
//!
//! Packets are 8 bytes (a header alone) to the negotiated packet size
//! (4096 before login; 512..=32767 after, as LOGIN7 asks, 4096 if it asks
//! for 0 or out of range). A message is at most [`packet::PACKETS_MAX`]
//! packets and [`packet::MESSAGE_BYTES_MAX`] bytes (PRELOGIN and LOGIN7:
//! [`packet::LOGIN_BYTES_MAX`]); more closes the connection. PRELOGIN and
//! LOGIN7 must each arrive within the server's frame deadline (default
//! 10 s) of the connection's previous step, and any message whose first
//! byte has arrived must be whole within it; an idle logged-in connection
//! is kept. No byte sequence panics the reader (the parsers check every
//! offset and length). The TLS handshake: at most
//! [`tls::HANDSHAKE_FLIGHTS_MAX`] PRELOGIN-sized flights, within the
//! frame deadline; after it, a read takes at most [`tls::RECORD_READ_MAX`]
//! bytes off the socket.
//!
//! ## Drivers checked
//!
//! `conformance/tests/serve_tds_drivers.rs` backs up and restores through
//! ODBC Driver 18 (mssql-python 1.16), FreeTDS (pymssql 2.4), python-tds
//! 1.17, tedious 19 and tiberius 0.13, each with and without encryption
//! (ODBC also with `Encrypt=strict`),
//! the statement parameterized (an RPC). Known driver limits: mssql-python
//! shows no messages of a parameterized statement and its errors carry no
//! message number (SQLSTATE and text only); tiberius hands INFO tokens to
//! no caller; a served query (`SELECT @@VERSION`…) must be a SQL batch,
//! not inside `sp_executesql` (tedious' `execSql`).

use thiserror::Error;

pub mod login7;
pub mod packet;
pub mod prelogin;
pub mod query;
pub mod rpc;
#[cfg(unix)]
pub(crate) mod session;
pub mod tls;
pub mod token;

/// What is wrong with bytes a client sent.
#[derive(Debug, Error)]
pub enum TdsError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the connection ended in the middle of a message")]
    Truncated,
    #[error("packet length {length}: a packet is 8..={max} bytes")]
    PacketLength { length: usize, max: usize },
    #[error("a message of more than {0} bytes")]
    MessageTooLarge(usize),
    #[error("a message of more than {0} packets")]
    TooManyPackets(usize),
    #[error("packet type 0x{got:02x} inside a message of type 0x{first:02x}")]
    MixedMessage { first: u8, got: u8 },
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
}

impl TdsError {
    pub(crate) fn malformed(what: &'static str, why: impl Into<String>) -> TdsError {
        TdsError::Malformed {
            what,
            why: why.into(),
        }
    }
}

/// Decodes UTF-16LE bytes (a trailing odd byte is ignored; invalid
/// surrogates become U+FFFD).
pub fn utf16le(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// The version the server announces (PRELOGIN and LOGINACK): SQL Server
/// 2022, 16.0.1000.
pub const SERVER_VERSION: (u8, u8, u16) = (16, 0, 1000);
/// TDS 7.4, as LOGIN7 and LOGINACK carry it.
pub const TDS_74: u32 = 0x7400_0004;
/// TDS 7.2, the oldest version served (4-byte line numbers, 8-byte DONE
/// row counts).
pub const TDS_72: u32 = 0x7209_0002;
