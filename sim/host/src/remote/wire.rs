//! Frames on the control socket: a 4-byte little-endian length, then that
//! many bytes of JSON. Frames are small (no buffer data ever travels here);
//! anything above [`MAX_FRAME`] is refused as corrupt.

use crate::contract::{CaseSetup, Observation};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use vdi_model::fault::{Fault, FaultPlan};
use vdi_model::msg::{DevIx, ToClient, ToServer};
use vdi_model::outcome::{Outcome, SqlMessage};
use vdi_model::statement::Statement;
use vdi_spec::{CommandCode, VdConfig};

/// The protocol version both sides must speak.
pub const PROTOCOL: u32 = 3;

/// The largest frame accepted on a control connection (bytes of JSON): a
/// T-SQL batch, a case setup, an observation.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// The largest frame accepted on a set connection: hellos, completions,
/// commands and buffer maps are a few hundred bytes.
pub const MAX_SET_FRAME: usize = 64 * 1024;

/// Longest a frame may take to arrive once its first byte has (a peer
/// that stops mid-frame, or drips a byte at a time, is dropped).
pub const FRAME_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the server refused a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// Anything but the reasons below (protocol, configuration, peer).
    #[default]
    Other,
    /// Another live set has this name (clause `create.name-in-use`): the
    /// library's Create fails as it does for a name in use in its process.
    NameInUse,
    /// The server holds as many connections as it accepts.
    Busy,
    /// A secondary asked for a set that is not live and configured there
    /// (`OpenInSecondary` answers VD_E_PROTOCOL: the set "has not been
    /// created").
    NoSuchSet,
}

/// One frame.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "t")]
pub enum Frame {
    // ----- a set connection (library ↔ server) -----
    /// Library → server, first frame: a set incarnation was created.
    HelloSet {
        protocol: u32,
        pid: u32,
        name: String,
        cfg: VdConfig,
    },
    /// Server → library: the set is known to the server. With `fetches`,
    /// the server wants a [`Frame::Fetched`] for every command the client
    /// fetches (it has faults a fetch triggers).
    Welcome {
        server: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        fetches: bool,
    },
    /// Server → library: the hello was refused (the reason says why).
    Refused {
        reason: String,
        /// Why, for the library to act on.
        #[serde(default)]
        why: Refusal,
    },
    /// Library → server, first frame of a secondary process's connection
    /// (`OpenInSecondary`): join the live set `name` of another process.
    /// Added after protocol 3 was fixed: a server older than it drops the
    /// connection, and the library answers VD_E_PROTOCOL.
    HelloSecondary {
        protocol: u32,
        pid: u32,
        name: String,
    },
    /// Server → library: the secondary joined; `cfg` is the configuration
    /// the primary created the set with. The buffer maps and the messages
    /// the set has had so far (its configuration, the commands not yet
    /// completed, CloseDevice) follow, then the set's messages as they come.
    Joined {
        cfg: VdConfig,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        fetches: bool,
    },
    /// Server → the primary's library: a secondary process joined the set
    /// (its devices are served by several processes).
    SecondaryJoined { pid: u32 },
    /// Server → a secondary's library: the replay that follows
    /// [`Frame::Joined`] (buffer maps, the set's messages so far) is
    /// complete. OpenInSecondary returns once it arrived, so the set's
    /// buffers and commands are known there as in the primary (a handle
    /// from GetBufferHandle maps at once).
    Replayed,
    /// Server → a process of a set with secondaries: another process
    /// completed command `id` of device `dev` (it leaves this process's
    /// queue of that device, if this process did not open it).
    CompletedElsewhere { dev: DevIx, id: u64 },
    /// Server → library: map this chunk of buffers before the next frame.
    Map(MapChunk),
    /// Library → server: chunk `chunk` is mapped (the server may unlink its file).
    Mapped { chunk: u32 },
    /// Server half → client half.
    ToClient { msg: ToClient },
    /// Client half → server half.
    ToServer { msg: ToServer },
    /// Library → server, when the Welcome asked: the client fetched a
    /// command of `code` on device `dev` (GetCommand returned it).
    Fetched { dev: DevIx, code: CommandCode },

    // ----- a control connection (sqlcmd, the harness) -----
    /// Client → server, first frame of a control connection.
    HelloControl { protocol: u32, client: String },
    /// A request; answered by exactly one [`Frame::Response`].
    Request(Request),
    /// The answer to a request.
    Response(Response),
}

/// Where a chunk of buffers lives and how it is laid out: buffer `i` of the
/// chunk starts at `i * stride`, its data zone at `i * stride + data_offset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapChunk {
    pub chunk: u32,
    pub path: String,
    pub len: u64,
    pub stride: u64,
    pub data_offset: u64,
    /// Buffers per chunk; buffer id `b` is in chunk `b / per_chunk`.
    pub per_chunk: u32,
    /// Alignment the mapping must have (a power of two).
    pub align: u64,
}

/// A control request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "req")]
pub enum Request {
    /// Run a T-SQL batch (what `sqlcmd` sends). `first_line` is the batch's
    /// first line in its script, informational only: message lines are
    /// relative to the batch, as SQL Server reports them.
    Sql {
        text: String,
        database: Option<String>,
        first_line: u32,
    },
    /// Cancel the batch this connection is running (a TDS attention: sqlcmd
    /// sends it on `-t` timeout or Ctrl-C). The running `Sql` request is
    /// answered once, with `cancelled` set; the cancel itself gets no
    /// answer. A running BACKUP or RESTORE ends with Msg 3204 and 3013 and
    /// its set aborted.
    Cancel,
    /// Start a harness case owned by this connection (ending the ones it
    /// started before); answered with its id.
    Reset { setup: CaseSetup },
    /// Make the case `case` (started by another connection) this
    /// connection's, so requests can run concurrently on several
    /// connections.
    Attach { case: u64 },
    /// Start a statement in this connection's case.
    Statement { stmt: Statement },
    /// Apply a server-side event in this connection's case.
    Event { fault: Fault },
    /// Wait for the case's statement; `None`: forever.
    Wait { timeout_ms: Option<u64> },
    /// End the case and report what it observed.
    Finish { settle_ms: u64 },
    /// Replace the server's fault plan for the statements that start from
    /// now on (`vdisim serve --set-faults`): `spec` as the user wrote it
    /// (its selector and parameters, which the server parses), `plan` the
    /// faults its plan name resolved to. Answered with
    /// [`Response::Faults`], or an error saying what is wrong with `spec`.
    /// Added after protocol 3 was fixed: a server older than it drops the
    /// connection without an answer.
    SetFaults { spec: String, plan: FaultPlan },
    /// The server's databases, live sets and sessions.
    Status,
    /// Stop the server.
    Shutdown,
}

/// One message of a batch's result, with the line it refers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineMessage {
    pub message: SqlMessage,
    pub line: u32,
}

/// A database as `vdisim serve` keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    pub name: String,
    pub size: u64,
    /// Digest of the database's content (changes when a restore replaces it).
    pub content: String,
    /// `online`; `restoring` after a failed restore or one WITH
    /// NORECOVERY; `standby`.
    pub state: String,
    /// The backup number it was last restored from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<u32>,
    /// `FULL`, `SIMPLE` or `BULK_LOGGED` (empty from a server that does not
    /// say).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub recovery_model: String,
    /// Where its log ends (0 from a server that does not say).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lsn: u64,
    /// The log chain's end: where the next BACKUP LOG starts, if a chain
    /// runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_chain_lsn: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What `Status` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub server: String,
    pub databases: Vec<DatabaseInfo>,
    /// Names of the live sets (created by a client, not yet closed).
    pub sets: Vec<String>,
    /// Backups in msdb history.
    pub backups: u32,
    /// Restores in msdb's restore history (0 from a server that does not
    /// say).
    #[serde(default)]
    pub restores: u32,
    /// Statements run so far (successful or not).
    pub statements: u64,
}

/// A control response.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "resp")]
pub enum Response {
    /// Done.
    Ok,
    /// A case was started.
    Case { id: u64 },
    /// The request could not be served (the text says why and what to do).
    Error { message: String },
    /// A batch's messages, in order; `cancelled` when a `Cancel` ended it.
    Sql {
        messages: Vec<LineMessage>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cancelled: bool,
    },
    /// A statement's outcome (`None`: not final before the timeout).
    Outcome { outcome: Option<Outcome> },
    /// What a case observed.
    Observation { obs: Box<Observation> },
    /// What the server holds.
    Status { status: ServerStatus },
    /// The fault plan now in force (after [`Request::SetFaults`]), said
    /// in one line, and the statements the server has run so far (a
    /// selector's `#N` counts from them).
    Faults { in_force: String, statements: u64 },
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, f: &Frame) -> io::Result<()> {
    let body = serde_json::to_vec(f).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "frame too large"))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` at a clean end of stream (before a length).
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Frame>> {
    read_frame_capped(r, MAX_FRAME)
}

/// Reads one frame of at most `max` bytes: `Ok(None)` at a clean end of
/// stream. The body is read as it arrives (a length prefix alone allocates
/// nothing), so a peer that announces a large frame and stops holds no
/// memory.
pub fn read_frame_capped(r: &mut impl Read, max: usize) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..])?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection ended inside a frame header",
            ));
        }
        got += n;
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {max}-byte limit"),
        ));
    }
    let mut body = Vec::new();
    r.take(len as u64).read_to_end(&mut body)?;
    if body.len() < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection ended inside a frame",
        ));
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad frame: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = vec![
            Frame::HelloSet {
                protocol: PROTOCOL,
                pid: 7,
                name: "set".into(),
                cfg: VdConfig::client(2, vdi_spec::Features(0)),
            },
            Frame::ToServer {
                msg: ToServer::Closed,
            },
            Frame::Request(Request::Sql {
                text: "BACKUP DATABASE x TO VIRTUAL_DEVICE='a'".into(),
                database: None,
                first_line: 1,
            }),
            Frame::Response(Response::Ok),
        ];
        let mut buf = Vec::new();
        for f in &frames {
            write_frame(&mut buf, f).unwrap();
        }
        let mut r = &buf[..];
        for f in &frames {
            let g = read_frame(&mut r).unwrap().unwrap();
            assert_eq!(format!("{f:?}"), format!("{g:?}"));
        }
        assert!(read_frame(&mut r).unwrap().is_none(), "clean end");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic stream of byte strings (xorshift).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 64) as usize;
            let mut bytes: Vec<u8> = (0..len)
                .map(|i| (x >> (i % 8 * 8)) as u8 ^ i as u8)
                .collect();
            if len >= 4 {
                // Small lengths, so the body is read and parsed.
                bytes[0..4].copy_from_slice(&((len as u32 - 4) % 60).to_le_bytes());
            }
            let mut r = &bytes[..];
            while let Ok(Some(_)) = read_frame(&mut r) {}
        }
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let mut r: &[u8] = &[1, 0];
        assert_eq!(
            read_frame(&mut r).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let huge = (MAX_FRAME as u32 + 1).to_le_bytes();
        let mut r: &[u8] = &huge;
        assert_eq!(
            read_frame(&mut r).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let mut buf = 3u32.to_le_bytes().to_vec();
        buf.extend_from_slice(b"{x}");
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
