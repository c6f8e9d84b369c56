//! Reading a recording (docs/RECORDING.md, format version 1) into the
//! client call log `vdisim client-test` grades (`vdi_model::calllog`).
//!
//! Bounds: a line is at most [`LINE_MAX`] bytes and a recording at most
//! [`EVENTS_MAX`] lines; a longer line, a line that is not a recording
//! line, or a header of another format version is an error naming the
//! line. Construct/Destruct lines become the log's `Destroy` when the
//! object still had a set; lines the obligations do not use
//! (RegisterDeviceClosed, device constructors) are kept out of the log.

use super::JudgeError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::BufRead;
use vdi_model::calllog::{
    Api, Args, BlockView, CallRecord, Code, CommandView, CompletionArg, ConfigView, Produced,
    TimeoutArg,
};
use vdi_spec::{CommandCode, Hresult, VdConfig, Win32};

/// The longest line read, in bytes.
pub const LINE_MAX: usize = 64 * 1024;
/// The most lines read.
pub const EVENTS_MAX: usize = 2_000_000;
/// The format version this judge reads.
pub const FORMAT_VERSION: u32 = 1;
/// The `format` of a recording's header.
pub const FORMAT_NAME: &str = "vdisim-recording";

/// A header line.
#[derive(Clone, Debug, Deserialize)]
pub struct Header {
    pub format: String,
    pub v: u32,
    pub pid: u32,
    pub unix_ms: u64,
    #[serde(default = "one")]
    pub time_scale: u32,
    #[serde(default)]
    pub real: String,
}

fn one() -> u32 {
    1
}

/// A command block as recorded.
#[derive(Clone, Debug, Deserialize)]
pub struct RecCmd {
    pub id: u64,
    pub code: u32,
    pub size: u32,
    pub position: u64,
    #[serde(default)]
    pub digest: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
struct RecCompletion {
    code: u32,
    bytes: u64,
    position: u64,
}

#[derive(Clone, Debug, Deserialize)]
struct RecBlock {
    code: u32,
    size: u32,
    position: u64,
    #[serde(default)]
    buffer_changed: bool,
}

/// A call line.
#[derive(Clone, Debug, Deserialize)]
pub struct RecCall {
    pub pid: u32,
    #[serde(default)]
    pub tid: i64,
    pub thread: u64,
    pub seq: u64,
    pub after: u64,
    pub t0_us: u64,
    pub t1_us: u64,
    pub method: String,
    #[serde(default)]
    pub obj: u64,
    #[serde(default)]
    pub inc: u32,
    #[serde(default)]
    pub dev: Option<u16>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    config: Option<VdConfig>,
    #[serde(default)]
    timeout: Option<i64>,
    #[serde(default)]
    pub ret: Option<u32>,
    #[serde(default)]
    pub cmd: Option<RecCmd>,
    #[serde(default)]
    completion: Option<RecCompletion>,
    #[serde(default)]
    block_modified: Option<bool>,
    #[serde(default)]
    handed_back: Option<RecBlock>,
    #[serde(default)]
    handle: Option<u32>,
}

#[derive(Deserialize)]
#[serde(tag = "rec", rename_all = "kebab-case")]
enum Line {
    Header(Header),
    Call(Box<RecCall>),
}

/// A recording, read.
#[derive(Debug, Default)]
pub struct Recording {
    /// Each process's header.
    pub headers: BTreeMap<u32, Header>,
    /// Every call line, in file order.
    pub calls: Vec<RecCall>,
}

/// Reads a recording from `r`; `what` names it in errors.
pub fn read<R: BufRead>(mut r: R, what: &str) -> Result<Recording, JudgeError> {
    let mut out = Recording::default();
    let bad = |line: usize, why: String| JudgeError::Recording {
        file: what.to_string(),
        line,
        why,
    };
    let mut buf = Vec::new();
    for n in 1.. {
        buf.clear();
        let got = std::io::Read::take(&mut r, LINE_MAX as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| bad(n, format!("cannot read: {e}")))?;
        if got == 0 {
            break;
        }
        if n > EVENTS_MAX {
            return Err(bad(
                n,
                format!("more than {EVENTS_MAX} lines; judge one process's recording at a time"),
            ));
        }
        if buf.len() > LINE_MAX && buf.last() != Some(&b'\n') {
            return Err(bad(
                n,
                format!("a line longer than {LINE_MAX} bytes: not a recording line"),
            ));
        }
        let text = std::str::from_utf8(&buf).map_err(|_| bad(n, "not UTF-8".into()))?;
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(text) {
            Ok(Line::Header(h)) => {
                if h.format != FORMAT_NAME || h.v != FORMAT_VERSION {
                    return Err(bad(
                        n,
                        format!(
                            "a header of format {:?} version {}; this judge reads {:?} version {FORMAT_VERSION}",
                            h.format, h.v, FORMAT_NAME
                        ),
                    ));
                }
                out.headers.insert(h.pid, h);
            }
            Ok(Line::Call(c)) => {
                if !out.headers.contains_key(&c.pid) {
                    return Err(bad(
                        n,
                        format!(
                            "a call of process {} before that process's header line: is the file a whole recording?",
                            c.pid
                        ),
                    ));
                }
                out.calls.push(*c);
            }
            Err(e) => {
                return Err(bad(
                    n,
                    format!("not a recording line ({e}); docs/RECORDING.md describes the format"),
                ));
            }
        }
    }
    if out.headers.is_empty() {
        return Err(bad(
            0,
            "no header line: the file is empty or not a recording (VDISIM_RECORD_FILE writes one)"
                .into(),
        ));
    }
    Ok(out)
}

impl Recording {
    /// The log ms of `us` microseconds in process `pid`'s recording.
    fn ms(&self, pid: u32, us: u64) -> u64 {
        let scale = self.headers.get(&pid).map_or(1, |h| h.time_scale.max(1));
        (us / 1000).saturating_mul(u64::from(scale))
    }

    /// The log ms of wall-clock `unix_ms` in process `pid`'s recording.
    pub fn log_ms_at(&self, pid: u32, unix_ms: u64) -> Option<u64> {
        let h = self.headers.get(&pid)?;
        Some(
            unix_ms
                .saturating_sub(h.unix_ms)
                .saturating_mul(u64::from(h.time_scale.max(1))),
        )
    }

    /// The calls as the client call log: one record per call the
    /// obligations read.
    pub fn call_log(&self) -> Vec<CallRecord> {
        // (pid, obj) -> whether the object has a set not yet closed.
        let mut live: BTreeMap<(u32, u64), bool> = BTreeMap::new();
        let mut out = Vec::new();
        for c in &self.calls {
            let key = (c.pid, c.obj);
            let code = Hresult(c.ret.unwrap_or(0));
            let method = match c.method.as_str() {
                "Create" => {
                    if code == Hresult::NOERROR {
                        live.insert(key, true);
                    }
                    Api::Create
                }
                "Close" => {
                    if matches!(code, Hresult::NOERROR | Hresult::VD_E_OPEN) {
                        live.insert(key, false);
                    }
                    Api::Close
                }
                "Destruct" => {
                    if live.insert(key, false) != Some(true) {
                        continue;
                    }
                    Api::Destroy
                }
                "GetConfiguration" => Api::GetConfiguration,
                "OpenDevice" => Api::OpenDevice,
                "SignalAbort" => Api::SignalAbort,
                "OpenInSecondary" => Api::OpenInSecondary,
                "GetBufferHandle" => Api::GetBufferHandle,
                "MapBufferHandle" => Api::MapBufferHandle,
                "GetCommand" => Api::GetCommand,
                "CompleteCommand" => Api::CompleteCommand,
                _ => continue,
            };
            out.push(self.record(c, method, code));
        }
        out
    }

    fn record(&self, c: &RecCall, method: Api, code: Hresult) -> CallRecord {
        let view = |k: &RecCmd| CommandView {
            id: k.id,
            code: k.code,
            name: CommandCode::from_u32(k.code)
                .map_or_else(|| format!("unknown({})", k.code), |x| x.name().to_string()),
            size: k.size,
            position: k.position,
        };
        let mut args = Args {
            name: c.name.clone(),
            config: if method == Api::Create {
                c.config.as_ref().map(ConfigView::of)
            } else {
                None
            },
            device: if method.on_device() { c.dev } else { None },
            timeout: c.timeout.map(|raw| TimeoutArg {
                ms: u64::try_from(raw).ok(),
                raw,
            }),
            handle: if method == Api::MapBufferHandle {
                c.handle
            } else {
                None
            },
            ..Args::default()
        };
        let mut value = None;
        match method {
            Api::CompleteCommand => {
                args.command = c.cmd.as_ref().map(view);
                args.completion = c
                    .completion
                    .as_ref()
                    .map(|k| CompletionArg::new(Win32(k.code), k.bytes, k.position));
                args.handed_back = c.handed_back.as_ref().map(|b| BlockView {
                    code: b.code,
                    size: b.size,
                    position: b.position,
                    buffer_changed: b.buffer_changed,
                });
            }
            Api::GetCommand => value = c.cmd.as_ref().map(|k| Produced::Command(view(k))),
            Api::GetConfiguration => {
                value = c
                    .config
                    .as_ref()
                    .map(|k| Produced::Config(ConfigView::of(k)))
            }
            Api::OpenDevice => value = c.dev.map(Produced::Device),
            Api::GetBufferHandle => value = c.handle.map(Produced::Handle),
            _ => {}
        }
        CallRecord {
            pid: c.pid,
            seq: c.seq,
            after: c.after,
            thread: c.thread,
            object: c.obj,
            incarnation: c.inc,
            start_ms: self.ms(c.pid, c.t0_us),
            end_ms: self.ms(c.pid, c.t1_us),
            method,
            args,
            ret: Code::of(code),
            value,
            block_modified: if method == Api::CompleteCommand {
                c.block_modified
            } else {
                None
            },
            clause: None,
        }
    }
}
