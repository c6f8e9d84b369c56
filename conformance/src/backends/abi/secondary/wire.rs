//! The line protocol between the program runner and a secondary client
//! process (`vdisim __abi-secondary`): one JSON object per line, each way.
//!
//! Parent → child: a [`Request`] (a call for one program thread of the
//! secondary). Child → parent: a [`Response`] for that thread (the reply,
//! or an error). Lines are at most [`MAX_LINE`] bytes; a longer one is an
//! error naming it. Command data travels as [`Content`] (the tagged,
//! compact form the model keeps), both for a Write the child read from the
//! buffer and for a Read the child must fill.

use serde::{Deserialize, Serialize};
use vdi_model::call::{Call, Reply, Value};
use vdi_model::client::DeviceHandle;
use vdi_model::content::Content;
use vdi_model::msg::{BufId, Cmd};
use vdi_spec::{Hresult, VdConfig};

/// How a secondary process reaches the primary's server.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The `vdisim` executable (run as `vdisim __abi-secondary`).
    pub exe: std::path::PathBuf,
    /// The VDI library the child loads.
    pub library: std::path::PathBuf,
    /// The `vdisim serve` socket the primary's sets live on.
    pub server: std::path::PathBuf,
}

/// Longest line either side accepts (bytes). Command data is [`Content`]
/// (a few descriptors per block), so a line is small; anything this long is
/// a broken peer.
pub const MAX_LINE: usize = 1 << 20;

/// Program threads one secondary process runs at most (one OS thread
/// each): a thread id at or past this is refused.
pub const MAX_THREADS: u32 = 256;

/// The thread id of the child's first line: a [`Response`] with neither
/// reply nor error, once it loaded the library and made its set object
/// (ready for calls). Program threads have smaller ids.
pub const READY: u32 = u32::MAX;

/// What a call through the library produced, as [`Value`] (a library call
/// never produces an outcome).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum WireValue {
    None,
    Config { cfg: VdConfig },
    Device { dev: DeviceHandle },
    Command { cmd: Cmd },
    Handle { handle: u32 },
    Buffer { buf: BufId },
}

/// A reply, as [`Reply`] (a real library cites no clause).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireReply {
    pub code: Hresult,
    pub value: WireValue,
}

impl From<Reply> for WireReply {
    fn from(r: Reply) -> WireReply {
        let value = match r.value {
            Value::Config(cfg) => WireValue::Config { cfg },
            Value::Device(dev) => WireValue::Device { dev },
            Value::Command(cmd) => WireValue::Command { cmd },
            Value::Handle(handle) => WireValue::Handle { handle },
            Value::Buffer(buf) => WireValue::Buffer { buf },
            Value::None | Value::Outcome(_) => WireValue::None,
        };
        WireReply {
            code: r.code,
            value,
        }
    }
}

impl From<WireReply> for Reply {
    fn from(r: WireReply) -> Reply {
        let value = match r.value {
            WireValue::None => Value::None,
            WireValue::Config { cfg } => Value::Config(cfg),
            WireValue::Device { dev } => Value::Device(dev),
            WireValue::Command { cmd } => Value::Command(cmd),
            WireValue::Handle { handle } => Value::Handle(handle),
            WireValue::Buffer { buf } => Value::Buffer(buf),
        };
        Reply {
            code: r.code,
            clause: None,
            value,
        }
    }
}

/// Bytes of one buffer a [`BufferOp`] may touch: VDI's largest transfer
/// (MAXTRANSFERSIZE 4 MiB).
pub const MAX_BUFFER_BYTES: u32 = 4 << 20;

/// Parent → child: an access to a buffer the child's library handed it
/// (by MapBufferHandle, or as a command's buffer), by the child's buffer id
/// (the `Buffer` value MapBufferHandle answered). The length must lie
/// within the buffer (a command's size): the child cannot check it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum BufferOp {
    /// The first `len` bytes, parsed as [`Content`].
    Read { buf: BufId, len: u32 },
    /// Writes `data` at the start of the buffer.
    Fill { buf: BufId, data: Content },
}

/// Parent → child: perform `call` (or `buffer`) on program thread `thread`
/// (named `who` in the child's trace).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub thread: u32,
    pub who: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<Call>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<BufferOp>,
}

/// Child → parent: the answer for program thread `thread`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub thread: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<WireReply>,
    /// What a [`BufferOp::Read`] read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Content>,
    /// The call could not be performed (what, and why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads one line of at most [`MAX_LINE`] bytes (without its newline);
/// `Ok(None)` at the end of the stream.
pub fn read_line(r: &mut impl std::io::BufRead, who: &str) -> Result<Option<String>, String> {
    use std::io::{BufRead, Read};
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)
        .map_err(|e| format!("{who}: read error: {e}"))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > MAX_LINE {
        return Err(format!(
            "{who}: a line longer than {MAX_LINE} bytes (the protocol's bound)"
        ));
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| format!("{who}: a line that is not UTF-8"))
}
