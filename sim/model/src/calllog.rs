//! The client call log: one record per client API call as the library saw
//! it, written by the stand-in library (`VDISIM_CLIENT_LOG`, see
//! `vdi_host::calllog`, which also reads a log back) and read by `vdisim
//! client-test`, which grades the program that made the calls
//! ([`crate::checks::obligations`]).
//!
//! # The file
//!
//! JSON lines, UTF-8, one [`LogLine`] per line, each line written whole by
//! one `write` (several threads and several processes may append to one
//! file; their lines never interleave). A line's `"line"` key says what it
//! is:
//!
//! - `"process"` ([`ProcessLine`]): written once by each process, when it
//!   makes its first set object; it carries the format version, the pid,
//!   the wall-clock time of the log's origin and the time scale.
//! - `"call"` ([`CallRecord`]): one client API call, written when the call
//!   returns.
//!
//! A call line looks like this (one line in the file; wrapped here):
//!
//! ```text
//! {"line":"call","pid":4242,"seq":7,"after":6,"thread":2,"object":1,"incarnation":1,
//!  "start_ms":120,"end_ms":3120,"method":"GetCommand",
//!  "args":{"device":0,"timeout":{"ms":3000,"raw":3000}},
//!  "ret":{"code":2155282435,"name":"VD_E_TIMEOUT"},"clause":"get-command.timeout"}
//! ```
//!
//! Keys whose value is absent are left out (`args` fields a method does not
//! take, `value` of a call that produced none, `block_modified` outside
//! CompleteCommand); readers must accept unknown keys, so that later
//! versions may add some (a change of meaning bumps [`FORMAT_VERSION`]).
//!
//! # Time and order
//!
//! `start_ms` / `end_ms` are virtual milliseconds since the log's origin
//! (the moment the process made its first set object) on the runtime's
//! scaled clock: real elapsed time × the process line's `scale` (1 unless
//! `VDISIM_TIME_SCALE` says otherwise). `seq` numbers the calls of one
//! process in the order they returned (1, 2, ...; the file holds them in
//! that order per process), and `after` is the `seq` of the last call of
//! the same process that had returned when this one began (0: none), so
//! "call B began after call A returned" is exactly `B.after >= A.seq`,
//! whatever the clock's resolution.
//!
//! # Which set a call concerns
//!
//! A set is `(pid, object, incarnation)`: `object` numbers the set objects
//! of a process in the order they were made (1, 2, ...), and `incarnation`
//! counts the successful Create/CreateEx calls on that object (1 for the
//! first set, 0 before any). A call on the set object carries the object's
//! incarnation when the call returned (so a Create that succeeds carries its
//! new set's); a call on a device carries the incarnation of the set the
//! device was opened in — a device of a closed set keeps the old one.

use crate::msg::{Cmd, Timeout};
use serde::{Deserialize, Serialize};
use vdi_spec::features::FEATURE_BITS;
use vdi_spec::{CommandCode, Hresult, VdConfig, Win32};

/// The version of the log format this module reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "kebab-case")]
pub enum LogLine {
    /// The first line of a process.
    Process(ProcessLine),
    /// One call.
    Call(Box<CallRecord>),
}

/// What a process says about itself, once, before its first call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessLine {
    /// [`FORMAT_VERSION`] of the writer.
    pub v: u32,
    /// The process id.
    pub pid: u32,
    /// Wall-clock time of the log's origin (virtual 0 ms), in milliseconds
    /// since the Unix epoch.
    pub unix_ms: u64,
    /// Virtual milliseconds per real millisecond of the call times.
    pub scale: u32,
    /// Which server the process's sets talk to, in words.
    pub mode: String,
    /// The name of the profile the client half runs under.
    pub profile: String,
}

impl ProcessLine {
    /// The log time (virtual ms) of the wall-clock instant `unix_ms`, for
    /// placing an event the runner timed (a statement's end) among the
    /// calls; 0 for instants before the origin.
    pub fn log_ms_at(&self, unix_ms: u64) -> u64 {
        unix_ms
            .saturating_sub(self.unix_ms)
            .saturating_mul(u64::from(self.scale.max(1)))
    }
}

/// A client API method as the log names it: the API's own names, plus
/// `Destroy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Api {
    Create,
    CreateEx,
    GetConfiguration,
    OpenDevice,
    Close,
    SignalAbort,
    OpenInSecondary,
    GetBufferHandle,
    MapBufferHandle,
    GetCommand,
    CompleteCommand,
    /// The set object was destroyed (Linux `delete`, the COM object's last
    /// `Release`) while it still had a set: the library closed the set as
    /// Close would. Not a call the program made by name; logged because the
    /// program did not Close.
    Destroy,
}

impl Api {
    /// The method's name as the log writes it.
    pub fn name(self) -> &'static str {
        match self {
            Api::Create => "Create",
            Api::CreateEx => "CreateEx",
            Api::GetConfiguration => "GetConfiguration",
            Api::OpenDevice => "OpenDevice",
            Api::Close => "Close",
            Api::SignalAbort => "SignalAbort",
            Api::OpenInSecondary => "OpenInSecondary",
            Api::GetBufferHandle => "GetBufferHandle",
            Api::MapBufferHandle => "MapBufferHandle",
            Api::GetCommand => "GetCommand",
            Api::CompleteCommand => "CompleteCommand",
            Api::Destroy => "Destroy",
        }
    }

    /// Whether the method is called on a device interface.
    pub fn on_device(self) -> bool {
        matches!(self, Api::GetCommand | Api::CompleteCommand)
    }
}

/// One client API call, as the library saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The process that made the call.
    pub pid: u32,
    /// The order in which the process's calls returned: 1, 2, ...
    pub seq: u64,
    /// The `seq` of the process's last call that had returned when this
    /// one began (0: none had).
    pub after: u64,
    /// The calling thread: a small number per OS thread of the process, in
    /// the order of their first logged call (1, 2, ...).
    pub thread: u64,
    /// The set object: numbered per process in the order they were made.
    pub object: u64,
    /// The set incarnation the call concerns (see the module docs).
    pub incarnation: u32,
    /// When the call began, virtual ms since the log's origin.
    pub start_ms: u64,
    /// When it returned.
    pub end_ms: u64,
    /// Which method.
    pub method: Api,
    /// What the program passed.
    #[serde(default)]
    pub args: Args,
    /// What the method returned.
    pub ret: Code,
    /// What the call produced besides its code, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Produced>,
    /// CompleteCommand only: whether the program wrote into the read-only
    /// command block GetCommand handed it (clause
    /// `complete-command.read-only-block`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_modified: Option<bool>,
    /// The catalog clause that decided the result, as the library's model
    /// cited it (`vdisim list --clauses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clause: Option<String>,
}

impl CallRecord {
    /// The code the call returned.
    pub fn code(&self) -> Hresult {
        Hresult(self.ret.code)
    }

    /// The command GetCommand fetched, if it fetched one.
    pub fn fetched(&self) -> Option<&CommandView> {
        match &self.value {
            Some(Produced::Command(c)) if self.method == Api::GetCommand => Some(c),
            _ => None,
        }
    }

    /// The configuration GetConfiguration returned, if it returned one.
    pub fn config(&self) -> Option<&ConfigView> {
        match &self.value {
            Some(Produced::Config(c)) => Some(c),
            _ => None,
        }
    }

    /// The device index of a device call, or of the device OpenDevice
    /// opened.
    pub fn device(&self) -> Option<u16> {
        match (&self.value, self.args.device) {
            (_, Some(d)) => Some(d),
            (Some(Produced::Device(d)), None) => Some(*d),
            _ => None,
        }
    }
}

/// The arguments of a call. Each method fills only its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Args {
    /// Create / CreateEx / OpenInSecondary: the set name; OpenDevice: the
    /// device name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// CreateEx: the instance name; absent for NULL (the default instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Create / CreateEx: the VDConfig the program passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigView>,
    /// GetCommand / CompleteCommand: the device's index in its set (0 is
    /// the device named like the set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<u16>,
    /// GetConfiguration / GetCommand: the timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TimeoutArg>,
    /// CompleteCommand: the command as GetCommand delivered it; absent when
    /// the block handed back is not one of the device's outstanding
    /// commands (completed already, foreign, or of a closed set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandView>,
    /// CompleteCommand: the completion the program reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<CompletionArg>,
    /// CompleteCommand whose block was modified: the block's fields as the
    /// program handed it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_back: Option<BlockView>,
    /// MapBufferHandle: the handle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<u32>,
}

/// A timeout as the program passed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutArg {
    /// Milliseconds; `null` waits forever (INFINITE, or a negative Linux
    /// value).
    pub ms: Option<u64>,
    /// The number the program passed: a Linux `time_t` (negative waits
    /// forever) or a Windows DWORD (4294967295 is INFINITE).
    pub raw: i64,
}

impl TimeoutArg {
    /// The timeout `t` the program passed as `raw`.
    pub fn new(t: Timeout, raw: i64) -> TimeoutArg {
        TimeoutArg {
            ms: match t {
                Timeout::Ms(ms) => Some(ms),
                Timeout::Infinite => None,
            },
            raw,
        }
    }
}

/// A command as GetCommand delivered it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandView {
    /// The command's id, unique within its set.
    pub id: u64,
    /// `commandCode` (1 = VDC_Read, 2 = VDC_Write, ..., 19 = VDC_Complete).
    pub code: u32,
    /// The code's name (`VDC_Write`).
    pub name: String,
    /// `size`: bytes to transfer (Read, Write); overloaded for others.
    pub size: u32,
    /// `position`.
    pub position: u64,
}

impl CommandView {
    /// The view of `c`.
    pub fn of(c: &Cmd) -> CommandView {
        CommandView {
            id: c.id.0,
            code: c.code as u32,
            name: c.code.name().to_string(),
            size: c.size,
            position: c.position,
        }
    }

    /// The command code, if `code` names one.
    pub fn command_code(&self) -> Option<CommandCode> {
        CommandCode::from_u32(self.code)
    }
}

/// The fields of a command block as the program handed it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    /// `commandCode`.
    pub code: u32,
    /// `size`.
    pub size: u32,
    /// `position`.
    pub position: u64,
    /// Whether the `buffer` pointer differs from the one delivered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub buffer_changed: bool,
}

/// The completion CompleteCommand reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionArg {
    /// `dwCompletionCode`, a Win32 code.
    pub code: u32,
    /// Its name (`ERROR_HANDLE_EOF`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `dwBytesTransferred`.
    pub bytes: u64,
    /// `dwlPosition`.
    pub position: u64,
}

impl CompletionArg {
    /// The completion `code`, `bytes`, `position`.
    pub fn new(code: Win32, bytes: u64, position: u64) -> CompletionArg {
        CompletionArg {
            code: code.0,
            name: code.name().map(str::to_string),
            bytes,
            position,
        }
    }

    /// The completion code.
    pub fn win32(&self) -> Win32 {
        Win32(self.code)
    }
}

/// A VDConfig, with its feature bits named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigView {
    /// The eleven fields, in camelCase: `deviceCount`, `features`,
    /// `prefixZoneSize`, `alignment`, `softFileMarkBlockSize`,
    /// `EOMWarningSize`, `serverTimeOut`, `blockSize`, `maxIoDepth`,
    /// `maxTransferSize`, `bufferAreaSize`.
    #[serde(flatten)]
    pub cfg: VdConfig,
    /// The names of the bits set in `features` (`VDF_RequestComplete`,
    /// `VDF_WriteMedia`, `VDF_CompleteEnabled`, ...); unnamed bits as hex.
    pub feature_names: Vec<String>,
}

impl ConfigView {
    /// The view of `cfg`.
    pub fn of(cfg: &VdConfig) -> ConfigView {
        let mut names = Vec::new();
        let mut rest = cfg.features;
        for (bit, name) in FEATURE_BITS {
            if cfg.features & bit != 0 {
                names.push((*name).to_string());
                rest &= !bit;
            }
        }
        if rest != 0 {
            names.push(format!("0x{rest:08X}"));
        }
        ConfigView {
            cfg: *cfg,
            feature_names: names,
        }
    }

    /// The features word.
    pub fn features(&self) -> vdi_spec::Features {
        vdi_spec::Features(self.cfg.features)
    }
}

/// An HRESULT: its number and its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code {
    /// The HRESULT as an unsigned 32-bit number (the Linux library returns
    /// the same bits as a negative `int`).
    pub code: u32,
    /// Its name (`VD_E_TIMEOUT`), or `0x`-hex when it has none.
    pub name: String,
}

impl Code {
    /// The code `h`.
    pub fn of(h: Hresult) -> Code {
        Code {
            code: h.0,
            name: h
                .name()
                .map_or_else(|| format!("0x{:08X}", h.0), str::to_string),
        }
    }
}

/// What a call produced besides its code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Produced {
    /// GetCommand: the command fetched.
    Command(CommandView),
    /// GetConfiguration: the configuration returned.
    Config(ConfigView),
    /// OpenDevice: the index of the device opened.
    Device(u16),
    /// GetBufferHandle: the handle.
    Handle(u32),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::CmdId;
    use vdi_spec::Features;

    fn record() -> CallRecord {
        CallRecord {
            pid: 4242,
            seq: 7,
            after: 6,
            thread: 2,
            object: 1,
            incarnation: 1,
            start_ms: 120,
            end_ms: 3120,
            method: Api::GetCommand,
            args: Args {
                device: Some(0),
                timeout: Some(TimeoutArg::new(Timeout::Ms(3000), 3000)),
                ..Args::default()
            },
            ret: Code::of(Hresult::VD_E_TIMEOUT),
            value: None,
            block_modified: None,
            clause: Some(vdi_spec::id::GET_COMMAND_TIMEOUT.into()),
        }
    }

    /// The documented example line is what the type writes, and reads back.
    #[test]
    fn example_line_round_trips() {
        let line = serde_json::to_string(&LogLine::Call(Box::new(record()))).unwrap();
        assert_eq!(
            line,
            r#"{"line":"call","pid":4242,"seq":7,"after":6,"thread":2,"object":1,"incarnation":1,"start_ms":120,"end_ms":3120,"method":"GetCommand","args":{"device":0,"timeout":{"ms":3000,"raw":3000}},"ret":{"code":2155282435,"name":"VD_E_TIMEOUT"},"clause":"get-command.timeout"}"#
        );
        let back: LogLine = serde_json::from_str(&line).unwrap();
        assert_eq!(back, LogLine::Call(Box::new(record())));
    }

    #[test]
    fn every_value_round_trips() {
        let mut cfg = VdConfig::client(2, Features::RequestComplete);
        cfg.features |= Features::WriteMedia.0 | Features::CompleteEnabled.0 | 0x0800_0000;
        cfg.block_size = 512;
        let cmd = Cmd {
            id: CmdId(9),
            dev: 1,
            code: CommandCode::Write,
            size: 65536,
            position: 0,
            buffer: None,
            data: crate::content::Content::Empty,
        };
        let values = [
            Produced::Command(CommandView::of(&cmd)),
            Produced::Config(ConfigView::of(&cfg)),
            Produced::Device(1),
            Produced::Handle(5),
        ];
        for v in values {
            let mut r = record();
            r.method = Api::CompleteCommand;
            r.value = Some(v);
            r.block_modified = Some(true);
            r.args.command = Some(CommandView::of(&cmd));
            r.args.completion = Some(CompletionArg::new(Win32::ERROR_HANDLE_EOF, 100, 0));
            r.args.handed_back = Some(BlockView {
                code: 2,
                size: 100,
                position: 0,
                buffer_changed: true,
            });
            r.args.timeout = Some(TimeoutArg::new(Timeout::Infinite, -1));
            r.args.config = Some(ConfigView::of(&cfg));
            let s = serde_json::to_string(&LogLine::Call(Box::new(r.clone()))).unwrap();
            let back: LogLine = serde_json::from_str(&s).unwrap();
            assert_eq!(back, LogLine::Call(Box::new(r)), "{s}");
        }
        let v = ConfigView::of(&cfg);
        assert_eq!(
            v.feature_names,
            [
                "VDF_RequestComplete",
                "VDF_WriteMedia",
                "VDF_CompleteEnabled",
                "0x08000000"
            ]
        );
        let s = serde_json::to_string(&v).unwrap();
        assert!(s.contains(r#""deviceCount":2"#), "{s}");
        assert!(s.contains(r#""EOMWarningSize":0"#), "{s}");
    }

    #[test]
    fn process_line_and_unknown_keys() {
        let p = ProcessLine {
            v: FORMAT_VERSION,
            pid: 1,
            unix_ms: 1_000,
            scale: 100,
            mode: "sets connected to vdisim serve".into(),
            profile: "default".into(),
        };
        let s = serde_json::to_string(&LogLine::Process(p.clone())).unwrap();
        assert!(s.starts_with(r#"{"line":"process","v":1,"#), "{s}");
        let back: LogLine = serde_json::from_str(&s).unwrap();
        assert_eq!(back, LogLine::Process(p.clone()));
        assert_eq!(p.log_ms_at(1_250), 25_000);
        assert_eq!(p.log_ms_at(500), 0);
        // A later writer's extra key is accepted.
        let extra = s.replacen(r#""v":1,"#, r#""v":1,"new":true,"#, 1);
        assert!(serde_json::from_str::<LogLine>(&extra).is_ok(), "{extra}");
        assert!(serde_json::from_str::<LogLine>(r#"{"line":"nonsense"}"#).is_err());
    }

    #[test]
    fn codes_name_themselves() {
        assert_eq!(Code::of(Hresult::NOERROR).name, "NOERROR");
        assert_eq!(Code::of(Hresult(0x8077_0008)).name, "0x80770008");
        assert_eq!(CompletionArg::new(Win32(12345), 0, 0).name, None);
    }
}
