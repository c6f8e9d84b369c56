//! What crosses between the halves. In the simulator these travel through an
//! in-memory [`crate::channel::Link`]; across processes the same values travel
//! over a socket, with [`Content`] materialised into shared buffers.

use crate::content::Content;
use serde::{Deserialize, Serialize};
use vdi_spec::{CommandCode, VdConfig, Win32};

/// Index of a device within its set (0 = the device named like the set).
pub type DevIx = u16;

/// Identity of one command the server sent; unique within a set incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CmdId(pub u64);

/// A buffer of the server's pool. In real VDI this is an address in shared
/// memory; here an index. `u32::MAX` never names a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BufId(pub u32);

/// A command as the server issued it and as the client receives it
/// (`VDC_Command` plus identity). `data` is the buffer's content for a Write;
/// it is empty for every other command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cmd {
    pub id: CmdId,
    pub dev: DevIx,
    pub code: CommandCode,
    pub size: u32,
    pub position: u64,
    pub buffer: Option<BufId>,
    #[serde(skip_serializing_if = "Content::is_empty", default)]
    pub data: Content,
}

impl Cmd {
    /// The fields of the read-only command block, for tamper detection
    /// (clause `complete-command.read-only-block`).
    pub fn block(&self) -> (CommandCode, u32, u64, Option<BufId>) {
        (self.code, self.size, self.position, self.buffer)
    }
}

/// A completion as the server's completion routine sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub id: CmdId,
    pub dev: DevIx,
    pub code: Win32,
    pub bytes: u64,
    pub position: u64,
    /// For a Read: what the client put in the buffer (its first `bytes` bytes).
    #[serde(skip_serializing_if = "Content::is_empty", default)]
    pub data: Content,
    /// `true` when the VDI layer completed the command on the client's behalf
    /// (IO-ERROR auto-completion with ERROR_IO_DEVICE); the client never saw it.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub auto: bool,
}

/// Client half → server half.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "msg")]
pub enum ToServer {
    /// CompleteCommand (or an auto-completion).
    Completed(Completion),
    /// SignalAbort by the client, or the internal abort of Close with devices
    /// open (clause `close.devices-open`).
    Abort,
    /// The client released the set (Close).
    Closed,
    /// The primary client process died (clause `abort.client-death`).
    Died,
}

impl ToServer {
    /// Whether the message ends the client's side of the set (its
    /// SignalAbort, its Close, its death): shared state of the set that the
    /// server observes at once, even while it is stalled (clause
    /// `abort.during-server-stall`).
    pub fn ends_set(&self) -> bool {
        matches!(self, ToServer::Abort | ToServer::Closed | ToServer::Died)
    }
}

/// Server half → client half.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "msg")]
pub enum ToClient {
    /// EndConfiguration: the final configuration (client inputs plus server
    /// outputs) and the device names, in VIRTUAL_DEVICE clause order (the
    /// first is the set's name; clause `open-device.first-is-set-name`).
    Configured { cfg: VdConfig, devices: Vec<String> },
    /// SendCommand.
    Command(Cmd),
    /// CloseDevice: the device's next GetCommand returns VD_E_CLOSE once its
    /// queue is empty.
    CloseDevice { dev: DevIx },
    /// Server SignalAbort (including the watchdog).
    Abort,
    /// The server process died (clause `abort.server-death`).
    Died,
}

/// A client API timeout: a number of milliseconds, or forever (Windows
/// `INFINITE`, Linux any negative value; clauses `get-command.infinite`,
/// `get-command.linux-negative`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Timeout {
    Ms(u64),
    Infinite,
}

impl Timeout {
    /// A Windows DWORD timeout: `0xFFFFFFFF` is INFINITE.
    pub fn from_dword(v: u32) -> Timeout {
        if v == vdi_spec::layout::limits::INFINITE {
            Timeout::Infinite
        } else {
            Timeout::Ms(u64::from(v))
        }
    }

    /// A Linux `time_t` timeout: negative waits forever. (0xFFFFFFFF is not
    /// special on Linux: it waits about 49.7 days.)
    pub fn from_linux(v: i64) -> Timeout {
        if v < 0 {
            Timeout::Infinite
        } else {
            Timeout::Ms(v.unsigned_abs())
        }
    }

    /// The deadline of a wait that starts at `now` (`None`: forever).
    pub fn deadline(self, now: u64) -> Option<u64> {
        match self {
            Timeout::Ms(ms) => Some(now.saturating_add(ms)),
            Timeout::Infinite => None,
        }
    }
}
