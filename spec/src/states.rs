//! States and methods named by the transition tables (vdi-spec.md §4.1, §4.4).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Client-side virtual device set states (vdi-spec.md §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientState {
    /// No set exists on this object.
    Dne,
    Configurable,
    Initializing,
    Active,
    NormallyTerminated,
    /// "Abort", also called "Abnormally Terminated".
    Abort,
}

impl ClientState {
    pub const ALL: [ClientState; 6] = [
        ClientState::Dne,
        ClientState::Configurable,
        ClientState::Initializing,
        ClientState::Active,
        ClientState::NormallyTerminated,
        ClientState::Abort,
    ];
    pub fn name(self) -> &'static str {
        match self {
            ClientState::Dne => "DNE",
            ClientState::Configurable => "Configurable",
            ClientState::Initializing => "Initializing",
            ClientState::Active => "Active",
            ClientState::NormallyTerminated => "NormallyTerminated",
            ClientState::Abort => "Abort",
        }
    }
}

impl fmt::Display for ClientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The seven rows of the client transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TableMethod {
    /// Create and CreateEx share a row.
    Create,
    GetConfiguration,
    OpenDevice,
    GetCommand,
    CompleteCommand,
    SignalAbort,
    Close,
}

impl TableMethod {
    pub const ALL: [TableMethod; 7] = [
        TableMethod::Create,
        TableMethod::GetConfiguration,
        TableMethod::OpenDevice,
        TableMethod::GetCommand,
        TableMethod::CompleteCommand,
        TableMethod::SignalAbort,
        TableMethod::Close,
    ];
    pub fn name(self) -> &'static str {
        match self {
            TableMethod::Create => "Create",
            TableMethod::GetConfiguration => "GetConfiguration",
            TableMethod::OpenDevice => "OpenDevice",
            TableMethod::GetCommand => "GetCommand",
            TableMethod::CompleteCommand => "CompleteCommand",
            TableMethod::SignalAbort => "SignalAbort",
            TableMethod::Close => "Close",
        }
    }
    /// The kebab-case slug used in clause ids (`table.get-command.active`).
    pub fn slug(self) -> &'static str {
        match self {
            TableMethod::Create => "create",
            TableMethod::GetConfiguration => "get-configuration",
            TableMethod::OpenDevice => "open-device",
            TableMethod::GetCommand => "get-command",
            TableMethod::CompleteCommand => "complete-command",
            TableMethod::SignalAbort => "signal-abort",
            TableMethod::Close => "close",
        }
    }
}

impl ClientState {
    /// The kebab-case slug used in clause ids.
    pub fn slug(self) -> &'static str {
        match self {
            ClientState::Dne => "dne",
            ClientState::Configurable => "configurable",
            ClientState::Initializing => "initializing",
            ClientState::Active => "active",
            ClientState::NormallyTerminated => "normally-terminated",
            ClientState::Abort => "abort",
        }
    }
}

/// Server-side set states (vdi-spec.md §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerState {
    Dne,
    Connected,
    Configurable,
    Initializing,
    Active,
    NormallyTerminated,
    AbnormallyTerminated,
}

impl ServerState {
    pub const ALL: [ServerState; 7] = [
        ServerState::Dne,
        ServerState::Connected,
        ServerState::Configurable,
        ServerState::Initializing,
        ServerState::Active,
        ServerState::NormallyTerminated,
        ServerState::AbnormallyTerminated,
    ];
    pub fn slug(self) -> &'static str {
        match self {
            ServerState::Dne => "dne",
            ServerState::Connected => "connected",
            ServerState::Configurable => "configurable",
            ServerState::Initializing => "initializing",
            ServerState::Active => "active",
            ServerState::NormallyTerminated => "normally-terminated",
            ServerState::AbnormallyTerminated => "abnormally-terminated",
        }
    }
}

/// Methods of `IServerVirtualDeviceSet2` and `IServerVirtualDevice` that the
/// server table covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerMethod {
    Open,
    GetConfiguration,
    BeginConfiguration,
    RequestBuffers,
    QueryAvailableBuffers,
    EndConfiguration,
    OpenDevice,
    ExecuteCompletionAgent,
    AllocateBuffer,
    FreeBuffer,
    SendCommand,
    CloseDevice,
    SignalAbort,
    Close,
}

impl ServerMethod {
    pub const ALL: [ServerMethod; 14] = [
        ServerMethod::Open,
        ServerMethod::GetConfiguration,
        ServerMethod::BeginConfiguration,
        ServerMethod::RequestBuffers,
        ServerMethod::QueryAvailableBuffers,
        ServerMethod::EndConfiguration,
        ServerMethod::OpenDevice,
        ServerMethod::ExecuteCompletionAgent,
        ServerMethod::AllocateBuffer,
        ServerMethod::FreeBuffer,
        ServerMethod::SendCommand,
        ServerMethod::CloseDevice,
        ServerMethod::SignalAbort,
        ServerMethod::Close,
    ];
    pub fn slug(self) -> &'static str {
        match self {
            ServerMethod::Open => "open",
            ServerMethod::GetConfiguration => "get-configuration",
            ServerMethod::BeginConfiguration => "begin-configuration",
            ServerMethod::RequestBuffers => "request-buffers",
            ServerMethod::QueryAvailableBuffers => "query-available-buffers",
            ServerMethod::EndConfiguration => "end-configuration",
            ServerMethod::OpenDevice => "open-device",
            ServerMethod::ExecuteCompletionAgent => "execute-completion-agent",
            ServerMethod::AllocateBuffer => "allocate-buffer",
            ServerMethod::FreeBuffer => "free-buffer",
            ServerMethod::SendCommand => "send-command",
            ServerMethod::CloseDevice => "close-device",
            ServerMethod::SignalAbort => "signal-abort",
            ServerMethod::Close => "close",
        }
    }
}
