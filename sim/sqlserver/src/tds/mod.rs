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
//!   ROW); [`tables`]: the catalog views among them (`sys.databases`,
//!   msdb's `backupset` and `backupmediafamily`).
//! - [`client`]: the other side, a small blocking client (plaintext
//!   only) for `vdisim sqlcmd -S tcp:HOST,PORT` and the harness's
//!   `sqlserver` backend, which speak to any TDS server with it.
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
//!   and INFO 5701; then one DONE (DONE_ERROR when an ERROR was sent).
//!   Each message goes out as the statement produces it, in packets
//!   without EOM of the response not yet ended (`STATS = n` progress,
//!   Msg 3211 "n percent processed.", while the BACKUP or RESTORE moves
//!   its data: the serve process looks at the transfer every 20 ms while
//!   steps remain to send); the DONE ends the response (EOM). The control socket answers a batch
//!   with one frame when it has finished (its protocol is one answer per
//!   request), the same messages in the same order.
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
//!   DONEINPROC, RETURNSTATUS 0, RETURNVALUE tokens (the prepared handle,
//!   ordinal 0, then each OUTPUT parameter with its ordinal, in the type
//!   the client sent: vdisim's statements assign no variable, so an
//!   OUTPUT parameter comes back with its value), and DONEPROC. Several
//!   RPCs in one message (separated by the batch flag 0xFF; at most
//!   [`rpc::RPCS_MAX`]) run in order, each answered with its own
//!   DONEPROC, all but the last with MORE and RPCINBATCH; an attention
//!   stops the ones not yet started. A parameterized statement that is
//!   one of the served queries once its parameters are written in (`…
//!   FROM msdb.dbo.backupset WHERE database_name = @P1`, as ODBC sends
//!   it) is answered with its result set inside the RPC (COLMETADATA,
//!   ROW, DONEINPROC with the count, then as above). Another procedure
//!   gets Msg 2812; another parameter type, the no-exec flag (0xFE) or a
//!   malformed request an error that says so. At most `session::PREPARED_MAX`
//!   statements stay prepared per session.
//! - Result sets for a batch that is exactly one of the queries drivers
//!   and products send around a backup: `SELECT @@VERSION`, `@@SPID`,
//!   `@@SERVERNAME`, `DB_NAME()`, `DB_ID()`, `SERVERPROPERTY('…')`,
//!   `SELECT 1`, and `SELECT [TOP n] … FROM sys.databases |
//!   msdb.dbo.backupset | msdb.dbo.backupmediafamily [WHERE c = v [AND
//!   …]] [ORDER BY c [DESC]]` from the server's real databases and
//!   history ([`query`] and [`tables`] have the lists); such a view in
//!   another shape gets Msg 50002 naming the served shape, an unknown
//!   column Msg 207; any other SELECT gets the T-SQL parser's "not
//!   served" error.
//! - Transaction-manager requests (drivers send them at connect and with
//!   autocommit off): BEGIN answered with ENVCHANGE 8 (an 8-byte
//!   descriptor), COMMIT with ENVCHANGE 9 and ROLLBACK with ENVCHANGE 10
//!   naming it (then ENVCHANGE 8 when the request begins the next one),
//!   then DONE; a nested BEGIN and an inner COMMIT only count (at most
//!   `TRAN_DEPTH_MAX` deep); COMMIT or ROLLBACK without one is Msg 3902 /
//!   3903; DTC requests are not served (Msg 50002). vdisim has no data to
//!   isolate, so a transaction changes nothing else: a BACKUP inside one
//!   runs (SQL Server refuses it, Msg 3021: not modelled).
//!   RESETCONNECTION returns the session to its login database, ends its
//!   transaction (not with RESETCONNECTIONSKIPTRAN) and is acknowledged
//!   with ENVCHANGE 18.
//! - `KILL <spid>` from any session (TDS or the control socket) ends the
//!   session with that id, aborting its running BACKUP or RESTORE; the
//!   killed batch's answer ends with Msg 596 (class 21) and its connection
//!   is closed (`crate::serve` module `sessions` has the rules and
//!   messages).
//!
//! ## Not yet served
//!
//! Client certificates, result sets beyond [`query`]'s
//! (joins of msdb's views), bulk load, MARS, Msg 3021 for a BACKUP
//! inside a transaction, `STATS` progress streamed on the control socket
//! (it answers each request with one frame).
//!
//! ## Bounds
//!
//! What a client can make the server hold, each checked by the
//! hostile-client test (`conformance/tests/serve_tds_hostile.rs`) and the
//! `tds` fuzz target:
//!
//! - Packets are 8 bytes (a header alone) to the negotiated packet size
//!   (4096 before login; 512..=32767 after, as LOGIN7 asks, 4096 if it
//!   asks for 0 or out of range); another length closes the connection.
//! - A message is at most [`packet::PACKETS_MAX`] packets and
//!   [`packet::MESSAGE_BYTES_MAX`] (16 MiB) bytes (PRELOGIN and LOGIN7:
//!   [`packet::LOGIN_BYTES_MAX`], 128 KiB); more closes the connection.
//!   The payload grows only as bytes arrive, so a session holds at most
//!   one message of 16 MiB being read, and the server at most
//!   `--max-connections` (default 256) of them; connections past that
//!   limit are closed unanswered.
//! - Time: PRELOGIN and LOGIN7 must each arrive within the server's frame
//!   deadline (`--frame-deadline-ms`, default 10 s) of the connection's
//!   previous step, and any message whose first byte has arrived must be
//!   whole within it: a client that stops in the middle of a packet or of
//!   a message is dropped at the deadline. An idle logged-in connection
//!   (no byte of a next message) is kept. A client that does not read its
//!   answers is dropped after the write timeout (the frame deadline, at
//!   least 10 s).
//! - LOGIN7: every (offset, length) pair lies within the message (empty
//!   fields included), each string is at most 128 characters
//!   ([`login7::FIELD_CHARS_MAX`]), the length field matches, and the
//!   FeatureExt offset lies within the message when fExtension is set;
//!   otherwise the connection is closed without a LOGINACK.
//! - Per session: [`rpc::RPCS_MAX`] RPCs per message, [`rpc::PARAMS_MAX`]
//!   parameters per RPC, `session::PREPARED_MAX` prepared statements,
//!   `calls::TRAN_DEPTH_MAX` nested transactions; result sets are bounded
//!   by the databases (`vdi_spec::bounds::DATABASES_MAX`) and the history
//!   (`vdi_spec::bounds::HISTORY_MAX`).
//! - The TLS handshake: at most [`tls::HANDSHAKE_FLIGHTS_MAX`]
//!   PRELOGIN-sized flights, within the frame deadline; after it, a read
//!   takes at most [`tls::RECORD_READ_MAX`] bytes off the socket.
//! - No byte sequence panics the reader (the parsers check every offset
//!   and length).
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
//! no caller.

use thiserror::Error;

pub mod client;
pub mod login7;
pub mod packet;
pub mod prelogin;
pub mod query;
pub mod resultset;
pub mod rpc;
#[cfg(unix)]
pub(crate) mod session;
pub mod tables;
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
