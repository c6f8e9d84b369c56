//! The client API as data: a call ([`Call`]), which method it is
//! ([`Method`]), and what it returned ([`Reply`], [`Value`]). Programs
//! produce calls; the world, the ABI drivers and the hosts perform them and
//! hand back replies.

use crate::client::DeviceHandle;
use crate::content::Content;
use crate::msg::{BufId, Cmd, DevIx, Timeout};
use crate::outcome::Outcome;
use vdi_spec::{ClauseId, Hresult, VdConfig, Win32};

/// A client API call. Its serde form (a JSON object tagged `op`, kebab
/// case) is the line protocol of the ABI backends' secondary process.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Call {
    Create {
        name: String,
        cfg: VdConfig,
    },
    CreateEx {
        instance: Option<String>,
        name: String,
        cfg: VdConfig,
    },
    GetConfiguration {
        timeout: Timeout,
    },
    OpenDevice {
        name: String,
    },
    Close,
    SignalAbort,
    OpenInSecondary {
        secondary: u32,
        name: String,
    },
    GetBufferHandle {
        buf: Option<BufId>,
    },
    MapBufferHandle {
        handle: u32,
    },
    GetCommand {
        dev: DeviceHandle,
        timeout: Timeout,
    },
    CompleteCommand {
        dev: DeviceHandle,
        cmd: Cmd,
        code: Win32,
        bytes: u64,
        position: u64,
        data: Content,
    },
}

impl Call {
    /// Which API method this is.
    pub fn method(&self) -> Method {
        match self {
            Call::Create { .. } => Method::Create,
            Call::CreateEx { .. } => Method::CreateEx,
            Call::GetConfiguration { .. } => Method::GetConfiguration,
            Call::OpenDevice { .. } => Method::OpenDevice,
            Call::Close => Method::Close,
            Call::SignalAbort => Method::SignalAbort,
            Call::OpenInSecondary { .. } => Method::OpenInSecondary,
            Call::GetBufferHandle { .. } => Method::GetBufferHandle,
            Call::MapBufferHandle { .. } => Method::MapBufferHandle,
            Call::GetCommand { .. } => Method::GetCommand,
            Call::CompleteCommand { .. } => Method::CompleteCommand,
        }
    }

    /// For a CompleteCommand, the device index and the bytes it reports.
    pub fn completion(&self) -> Option<(DevIx, u64)> {
        match self {
            Call::CompleteCommand { dev, bytes, .. } => Some((dev.index, *bytes)),
            _ => None,
        }
    }

    /// Whether the call waits until something else ends it (an INFINITE
    /// GetCommand or GetConfiguration).
    pub fn waits_forever(&self) -> bool {
        matches!(
            self,
            Call::GetCommand {
                timeout: Timeout::Infinite,
                ..
            } | Call::GetConfiguration {
                timeout: Timeout::Infinite
            }
        )
    }
}

/// A client API method (of `IClientVirtualDeviceSet2` or
/// `IClientVirtualDevice`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
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
}

impl Method {
    /// The method's name ("GetCommand", ...).
    pub fn name(self) -> &'static str {
        match self {
            Method::Create => "Create",
            Method::CreateEx => "CreateEx",
            Method::GetConfiguration => "GetConfiguration",
            Method::OpenDevice => "OpenDevice",
            Method::Close => "Close",
            Method::SignalAbort => "SignalAbort",
            Method::OpenInSecondary => "OpenInSecondary",
            Method::GetBufferHandle => "GetBufferHandle",
            Method::MapBufferHandle => "MapBufferHandle",
            Method::GetCommand => "GetCommand",
            Method::CompleteCommand => "CompleteCommand",
        }
    }
}

/// The value a call produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    None,
    Config(VdConfig),
    Device(DeviceHandle),
    Command(Cmd),
    Handle(u32),
    Buffer(BufId),
    Outcome(Outcome),
}

/// The reply to an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: Hresult,
    /// The clause that decided the result, when the model decided it (a
    /// real library reports none).
    pub clause: Option<ClauseId>,
    pub value: Value,
}

impl Reply {
    /// A reply with only a code.
    pub fn code(code: Hresult, clause: Option<ClauseId>) -> Reply {
        Reply {
            code,
            clause,
            value: Value::None,
        }
    }
}
