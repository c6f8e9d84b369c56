//! The transition tables as data (vdi-spec.md §4.1, §4.4).
//!
//! - [`CLIENT_TABLE`]: the documented client matrix (7 methods × 6 states =
//!   42 cells), refined by the per-method pages listed under it in §4.1 and
//!   by the §4.2 reconciliation. Every cell has its clause id,
//!   `table.<method>.<state>`.
//! - [`SERVER_TABLE`]: the server matrix (14 methods × 7 states = 98 cells).
//!   The recovered half of the reference table is [`Basis::Documented`]; the
//!   half the reference completes by analogy ("INFERRED completion", and the
//!   `Connected` column, which the recovered table names but does not show)
//!   is [`Basis::Inferred`]. Clause ids are `table.server.<method>.<state>`.
//!
//! Each cell lists its possible outcomes: a return code, the next state
//! (`None` = no change) and a short condition. The simulator's state
//! machines are checked against these tables; [`crate::clauses::all`] turns
//! every cell into a clause.

use crate::clause_id::ClauseId;
use crate::clauses::Basis;
use crate::codes::Hresult;
use crate::states::{ClientState, ServerMethod, ServerState, TableMethod};
use serde::Serialize;

/// One possible result of a client method in a given state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The HRESULT returned.
    pub code: Hresult,
    /// The next set state; `None` = no change.
    pub next: Option<ClientState>,
    /// Short condition under which this outcome happens (may be empty).
    pub when: &'static str,
}

/// One cell of the client transition table.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ClientCell {
    /// The row.
    pub method: TableMethod,
    /// The column.
    pub state: ClientState,
    /// Every outcome the reference allows here, the matrix entry first.
    pub outcomes: &'static [Outcome],
    /// The clause id, `table.<method slug>.<state slug>`.
    pub clause: ClauseId,
    /// Whether the cell is documented or (in part) inferred / profile-decided.
    pub basis: Basis,
}

/// One possible result of a server method in a given state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ServerOutcome {
    /// The HRESULT returned.
    pub code: Hresult,
    /// The next set state; `None` = no change.
    pub next: Option<ServerState>,
    /// Short condition under which this outcome happens (may be empty).
    pub when: &'static str,
}

/// One cell of the server transition table.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ServerCell {
    /// The row.
    pub method: ServerMethod,
    /// The column.
    pub state: ServerState,
    /// Every outcome the reference allows here, the matrix entry first.
    pub outcomes: &'static [ServerOutcome],
    /// The clause id, `table.server.<method slug>.<state slug>`.
    pub clause: ClauseId,
    /// Documented (recovered half) or inferred (completed half).
    pub basis: Basis,
}

const fn o(code: Hresult, next: Option<ClientState>, when: &'static str) -> Outcome {
    Outcome { code, next, when }
}

const fn so(code: Hresult, next: Option<ServerState>, when: &'static str) -> ServerOutcome {
    ServerOutcome { code, next, when }
}

use ClientState as C;
use ServerState as S;

const NOERROR: Hresult = Hresult::NOERROR;
const PROTOCOL: Hresult = Hresult::VD_E_PROTOCOL;
const ABORT: Hresult = Hresult::VD_E_ABORT;

/// "function cannot be called in this state".
const CP: Outcome = o(PROTOCOL, None, "cannot be called in this state");
/// "set is in Abort and only Close is useful".
const CA: Outcome = o(ABORT, None, "set is in Abort; only Close is useful");
/// Server: illegal in this state.
const SP: ServerOutcome = so(PROTOCOL, None, "cannot be called in this state");
/// Server: abort in effect.
const SA: ServerOutcome = so(ABORT, None, "set is abnormally terminated");

macro_rules! ccell {
    ($m:ident $ms:literal, $s:ident $ss:literal, $b:ident, [$($out:expr),+ $(,)?]) => {
        ClientCell {
            method: TableMethod::$m,
            state: ClientState::$s,
            outcomes: &[$($out),+],
            clause: ClauseId(concat!("table.", $ms, ".", $ss)),
            basis: Basis::$b,
        }
    };
}

macro_rules! scell {
    ($m:ident $ms:literal, $s:ident $ss:literal, $b:ident, [$($out:expr),+ $(,)?]) => {
        ServerCell {
            method: ServerMethod::$m,
            state: ServerState::$s,
            outcomes: &[$($out),+],
            clause: ClauseId(concat!("table.server.", $ms, ".", $ss)),
            basis: Basis::$b,
        }
    };
}

/// The client transition table, row-major: [`TableMethod::ALL`] order ×
/// [`ClientState::ALL`] order (vdi-spec.md §4.1 with its per-method
/// refinements and the §4.2 reconciliation).
pub static CLIENT_TABLE: [ClientCell; 42] = [
    // ---- Create / CreateEx ------------------------------------------------
    ccell!(Create "create", Dne "dne", Documented, [
        o(NOERROR, Some(C::Configurable), "set created"),
        o(Hresult::VD_E_NOTSUPPORTED, None, "a VDConfig field is invalid or unsupported"),
        o(Hresult::VD_E_INSTANCE_NAME, None, "CreateEx: instance name not recognised"),
    ]),
    ccell!(Create "create", Configurable "configurable", Documented, [
        o(PROTOCOL, None, "a set already exists on this object"),
    ]),
    ccell!(Create "create", Initializing "initializing", Documented, [
        o(PROTOCOL, None, "a set already exists on this object"),
    ]),
    ccell!(Create "create", Active "active", Documented, [
        o(PROTOCOL, None, "a set already exists on this object"),
    ]),
    ccell!(Create "create", NormallyTerminated "normally-terminated", Documented, [
        o(PROTOCOL, None, "a set already exists on this object"),
    ]),
    ccell!(Create "create", Abort "abort", Documented, [
        o(PROTOCOL, None, "a set already exists on this object"),
    ]),
    // ---- GetConfiguration -------------------------------------------------
    ccell!(GetConfiguration "get-configuration", Dne "dne", Documented, [CP]),
    ccell!(GetConfiguration "get-configuration", Configurable "configurable", Inferred, [
        o(NOERROR, Some(C::Initializing), "configuration arrives"),
        o(Hresult::VD_E_TIMEOUT, None, "timeout elapses; set stays Configurable, INFERRED"),
        o(ABORT, Some(C::Abort), "either side signals abort"),
    ]),
    ccell!(GetConfiguration "get-configuration", Initializing "initializing", Documented, [
        o(NOERROR, None, "configuration returned again"),
    ]),
    ccell!(GetConfiguration "get-configuration", Active "active", Documented, [
        o(NOERROR, None, "configuration returned again"),
    ]),
    ccell!(GetConfiguration "get-configuration", NormallyTerminated "normally-terminated", Documented, [
        o(NOERROR, None, "configuration returned again"),
    ]),
    ccell!(GetConfiguration "get-configuration", Abort "abort", Documented, [CA]),
    // ---- OpenDevice -------------------------------------------------------
    ccell!(OpenDevice "open-device", Dne "dne", Documented, [CP]),
    ccell!(OpenDevice "open-device", Configurable "configurable", Documented, [CP]),
    ccell!(OpenDevice "open-device", Initializing "initializing", Documented, [
        o(NOERROR, Some(C::Active), "device opened"),
        o(Hresult::VD_E_INVALID, None, "name is not a device of the set"),
        o(Hresult::VD_E_OPEN, None, "every device is already open"),
        o(PROTOCOL, None, "this device is already open"),
        o(ABORT, Some(C::Abort), "abort signalled, e.g. the server failed after configuration"),
    ]),
    ccell!(OpenDevice "open-device", Active "active", Inferred, [
        o(PROTOCOL, None, "matrix entry: this device already open; profile open-device-precedence"),
        o(Hresult::VD_E_OPEN, None, "every device already open, per the OpenDevice page; profile open-device-precedence"),
    ]),
    ccell!(OpenDevice "open-device", NormallyTerminated "normally-terminated", Documented, [CP]),
    ccell!(OpenDevice "open-device", Abort "abort", Documented, [CA]),
    // ---- GetCommand -------------------------------------------------------
    ccell!(GetCommand "get-command", Dne "dne", Documented, [CP]),
    ccell!(GetCommand "get-command", Configurable "configurable", Documented, [CP]),
    ccell!(GetCommand "get-command", Initializing "initializing", Documented, [CP]),
    ccell!(GetCommand "get-command", Active "active", Documented, [
        o(NOERROR, None, "command fetched"),
        o(Hresult::VD_E_CLOSE, None, "server closed this device; other devices still open"),
        o(Hresult::VD_E_CLOSE, Some(C::NormallyTerminated), "server closed this device, the last one open"),
        o(Hresult::VD_E_TIMEOUT, None, "nothing queued before the timeout elapses"),
        o(ABORT, Some(C::Abort), "either side signals abort"),
    ]),
    ccell!(GetCommand "get-command", NormallyTerminated "normally-terminated", Documented, [CP]),
    ccell!(GetCommand "get-command", Abort "abort", Documented, [CA]),
    // ---- CompleteCommand --------------------------------------------------
    ccell!(CompleteCommand "complete-command", Dne "dne", Documented, [CP]),
    ccell!(CompleteCommand "complete-command", Configurable "configurable", Documented, [CP]),
    ccell!(CompleteCommand "complete-command", Initializing "initializing", Documented, [CP]),
    ccell!(CompleteCommand "complete-command", Active "active", Documented, [
        o(NOERROR, None, "completion recorded"),
        o(Hresult::VD_E_INVALID, None, "pCmd is not an active command"),
        o(ABORT, Some(C::Abort), "abort signalled"),
    ]),
    ccell!(CompleteCommand "complete-command", NormallyTerminated "normally-terminated", Documented, [CP]),
    ccell!(CompleteCommand "complete-command", Abort "abort", Documented, [CA]),
    // ---- SignalAbort ------------------------------------------------------
    ccell!(SignalAbort "signal-abort", Dne "dne", Documented, [CP]),
    ccell!(SignalAbort "signal-abort", Configurable "configurable", Documented, [
        o(NOERROR, Some(C::Abort), "abort notification posted"),
    ]),
    ccell!(SignalAbort "signal-abort", Initializing "initializing", Documented, [
        o(NOERROR, Some(C::Abort), "abort notification posted"),
    ]),
    ccell!(SignalAbort "signal-abort", Active "active", Documented, [
        o(NOERROR, Some(C::Abort), "abort notification posted"),
    ]),
    ccell!(SignalAbort "signal-abort", NormallyTerminated "normally-terminated", Documented, [
        o(NOERROR, Some(C::Abort), "abort notification posted"),
    ]),
    ccell!(SignalAbort "signal-abort", Abort "abort", Documented, [
        o(NOERROR, None, "already aborting; idempotent"),
    ]),
    // ---- Close ------------------------------------------------------------
    ccell!(Close "close", Dne "dne", Documented, [
        o(PROTOCOL, None, "no set open; nothing done"),
    ]),
    ccell!(Close "close", Configurable "configurable", Documented, [
        o(NOERROR, Some(C::Dne), "set closed, resources released"),
    ]),
    ccell!(Close "close", Initializing "initializing", Documented, [
        o(NOERROR, Some(C::Dne), "set closed, resources released"),
    ]),
    ccell!(Close "close", Active "active", Inferred, [
        o(NOERROR, Some(C::Dne), "no device still open; the matrix entry"),
        o(Hresult::VD_E_OPEN, Some(C::Dne), "devices still open: internal SignalAbort, resources released; profile close-with-open-devices"),
    ]),
    ccell!(Close "close", NormallyTerminated "normally-terminated", Documented, [
        o(NOERROR, Some(C::Dne), "set closed, resources released"),
    ]),
    ccell!(Close "close", Abort "abort", Documented, [
        o(NOERROR, Some(C::Dne), "set closed, resources released"),
    ]),
];

/// The cell for `m` in state `s`.
pub fn client_cell(m: TableMethod, s: ClientState) -> &'static ClientCell {
    let mi = TableMethod::ALL.iter().position(|x| *x == m).unwrap_or(0);
    let si = ClientState::ALL.iter().position(|x| *x == s).unwrap_or(0);
    &CLIENT_TABLE[mi * ClientState::ALL.len() + si]
}

/// The profile parameter that decides part of a client cell, if any.
pub fn client_cell_profile(m: TableMethod, s: ClientState) -> Option<&'static str> {
    match (m, s) {
        (TableMethod::OpenDevice, ClientState::Active) => Some("open-device-precedence"),
        (TableMethod::Close, ClientState::Active) => Some("close-with-open-devices"),
        _ => None,
    }
}

/// The server transition table, row-major: [`ServerMethod::ALL`] order ×
/// [`ServerState::ALL`] order (vdi-spec.md §4.4, refined by the server method
/// pages of §2.3).
///
/// `VD_E_QUEUE_FULL` and `VD_E_IO_ERROR` (SendCommand) have no published
/// numeric value, so they are not listed as outcomes; clause
/// `server.send-command-rejected` describes them.
pub static SERVER_TABLE: [ServerCell; 98] = [
    // ---- Open ---------------------------------------------------------------
    scell!(Open "open", Dne "dne", Documented, [
        so(NOERROR, Some(S::Connected), "an accessible set of that name exists"),
        so(Hresult::VD_E_INVALID, None, "no accessible set of that name; the statement fails"),
    ]),
    scell!(Open "open", Connected "connected", Inferred, [SP]),
    scell!(Open "open", Configurable "configurable", Documented, [SP]),
    scell!(Open "open", Initializing "initializing", Documented, [SP]),
    scell!(Open "open", Active "active", Documented, [SP]),
    scell!(Open "open", NormallyTerminated "normally-terminated", Documented, [SP]),
    scell!(Open "open", AbnormallyTerminated "abnormally-terminated", Documented, [SP]),
    // ---- GetConfiguration ---------------------------------------------------
    scell!(GetConfiguration "get-configuration", Dne "dne", Documented, [SP]),
    scell!(GetConfiguration "get-configuration", Connected "connected", Inferred, [
        so(NOERROR, None, "client inputs read"),
    ]),
    scell!(GetConfiguration "get-configuration", Configurable "configurable", Documented, [
        so(NOERROR, None, "configuration read"),
    ]),
    scell!(GetConfiguration "get-configuration", Initializing "initializing", Documented, [
        so(NOERROR, None, "configuration read"),
    ]),
    scell!(GetConfiguration "get-configuration", Active "active", Documented, [
        so(NOERROR, None, "configuration read"),
    ]),
    scell!(GetConfiguration "get-configuration", NormallyTerminated "normally-terminated", Documented, [
        so(NOERROR, None, "configuration read"),
    ]),
    scell!(GetConfiguration "get-configuration", AbnormallyTerminated "abnormally-terminated", Documented, [SA]),
    // ---- BeginConfiguration -------------------------------------------------
    scell!(BeginConfiguration "begin-configuration", Dne "dne", Documented, [SP]),
    scell!(BeginConfiguration "begin-configuration", Connected "connected", Documented, [
        so(NOERROR, Some(S::Configurable), "basic configuration fixed"),
    ]),
    scell!(BeginConfiguration "begin-configuration", Configurable "configurable", Documented, [SP]),
    scell!(BeginConfiguration "begin-configuration", Initializing "initializing", Documented, [SP]),
    scell!(BeginConfiguration "begin-configuration", Active "active", Documented, [SP]),
    scell!(BeginConfiguration "begin-configuration", NormallyTerminated "normally-terminated", Documented, [SP]),
    scell!(BeginConfiguration "begin-configuration", AbnormallyTerminated "abnormally-terminated", Documented, [SP]),
    // ---- RequestBuffers -----------------------------------------------------
    scell!(RequestBuffers "request-buffers", Dne "dne", Documented, [SP]),
    scell!(RequestBuffers "request-buffers", Connected "connected", Inferred, [SP]),
    scell!(RequestBuffers "request-buffers", Configurable "configurable", Documented, [
        so(NOERROR, None, "request added; the area is allocated at EndConfiguration"),
    ]),
    scell!(RequestBuffers "request-buffers", Initializing "initializing", Documented, [
        so(NOERROR, None, "space allocated at once"),
        so(Hresult::VD_E_MEMORY, None, "the space is not available"),
    ]),
    scell!(RequestBuffers "request-buffers", Active "active", Documented, [
        so(NOERROR, None, "space allocated at once"),
        so(Hresult::VD_E_MEMORY, None, "the space is not available"),
    ]),
    scell!(RequestBuffers "request-buffers", NormallyTerminated "normally-terminated", Documented, [SP]),
    scell!(RequestBuffers "request-buffers", AbnormallyTerminated "abnormally-terminated", Documented, [SP]),
    // ---- QueryAvailableBuffers ----------------------------------------------
    scell!(QueryAvailableBuffers "query-available-buffers", Dne "dne", Documented, [SP]),
    scell!(QueryAvailableBuffers "query-available-buffers", Connected "connected", Inferred, [SP]),
    scell!(QueryAvailableBuffers "query-available-buffers", Configurable "configurable", Documented, [
        so(NOERROR, None, "count returned"),
    ]),
    scell!(QueryAvailableBuffers "query-available-buffers", Initializing "initializing", Documented, [
        so(NOERROR, None, "count returned"),
    ]),
    scell!(QueryAvailableBuffers "query-available-buffers", Active "active", Documented, [
        so(NOERROR, None, "count returned"),
    ]),
    scell!(QueryAvailableBuffers "query-available-buffers", NormallyTerminated "normally-terminated", Documented, [SP]),
    scell!(QueryAvailableBuffers "query-available-buffers", AbnormallyTerminated "abnormally-terminated", Documented, [SP]),
    // ---- EndConfiguration ---------------------------------------------------
    scell!(EndConfiguration "end-configuration", Dne "dne", Documented, [SP]),
    scell!(EndConfiguration "end-configuration", Connected "connected", Inferred, [SP]),
    scell!(EndConfiguration "end-configuration", Configurable "configurable", Documented, [
        so(NOERROR, Some(S::Initializing), "buffer area allocated; the client's GetConfiguration wakes"),
        so(Hresult::VD_E_MEMORY, None, "requested memory unavailable; no buffer space, set stays Configurable"),
    ]),
    scell!(EndConfiguration "end-configuration", Initializing "initializing", Documented, [SP]),
    scell!(EndConfiguration "end-configuration", Active "active", Inferred, [SP]),
    scell!(EndConfiguration "end-configuration", NormallyTerminated "normally-terminated", Inferred, [SP]),
    scell!(EndConfiguration "end-configuration", AbnormallyTerminated "abnormally-terminated", Inferred, [SA]),
    // ---- OpenDevice ---------------------------------------------------------
    scell!(OpenDevice "open-device", Dne "dne", Documented, [SP]),
    scell!(OpenDevice "open-device", Connected "connected", Inferred, [SP]),
    scell!(OpenDevice "open-device", Configurable "configurable", Documented, [SP]),
    scell!(OpenDevice "open-device", Initializing "initializing", Documented, [
        so(NOERROR, Some(S::Active), "next unopened device returned"),
    ]),
    scell!(OpenDevice "open-device", Active "active", Inferred, [
        so(NOERROR, None, "next unopened device returned"),
        so(Hresult::VD_E_OPEN, None, "every device already opened"),
    ]),
    scell!(OpenDevice "open-device", NormallyTerminated "normally-terminated", Inferred, [SP]),
    scell!(OpenDevice "open-device", AbnormallyTerminated "abnormally-terminated", Inferred, [SA]),
    // ---- ExecuteCompletionAgent ---------------------------------------------
    scell!(ExecuteCompletionAgent "execute-completion-agent", Dne "dne", Documented, [SP]),
    scell!(ExecuteCompletionAgent "execute-completion-agent", Connected "connected", Inferred, [SP]),
    scell!(ExecuteCompletionAgent "execute-completion-agent", Configurable "configurable", Documented, [SP]),
    scell!(ExecuteCompletionAgent "execute-completion-agent", Initializing "initializing", Documented, [
        so(NOERROR, Some(S::Active), "agent runs; returns after every device is closed, Close or SignalAbort"),
    ]),
    scell!(ExecuteCompletionAgent "execute-completion-agent", Active "active", Inferred, [
        so(NOERROR, None, "agent runs with devices already opened; returns after every device is closed, Close or SignalAbort"),
    ]),
    scell!(ExecuteCompletionAgent "execute-completion-agent", NormallyTerminated "normally-terminated", Inferred, [SP]),
    scell!(ExecuteCompletionAgent "execute-completion-agent", AbnormallyTerminated "abnormally-terminated", Inferred, [SA]),
    // ---- AllocateBuffer -----------------------------------------------------
    scell!(AllocateBuffer "allocate-buffer", Dne "dne", Documented, [SP]),
    scell!(AllocateBuffer "allocate-buffer", Connected "connected", Inferred, [SP]),
    scell!(AllocateBuffer "allocate-buffer", Configurable "configurable", Documented, [SP]),
    scell!(AllocateBuffer "allocate-buffer", Initializing "initializing", Documented, [
        so(NOERROR, None, "shared buffer handed out"),
        so(Hresult::VD_E_MEMORY, None, "no buffer space left"),
        so(Hresult::VD_E_INVALID, None, "size or alignment invalid"),
    ]),
    scell!(AllocateBuffer "allocate-buffer", Active "active", Inferred, [
        so(NOERROR, None, "shared buffer handed out"),
        so(Hresult::VD_E_MEMORY, None, "no buffer space left"),
        so(Hresult::VD_E_INVALID, None, "size or alignment invalid"),
    ]),
    scell!(AllocateBuffer "allocate-buffer", NormallyTerminated "normally-terminated", Inferred, [SP]),
    scell!(AllocateBuffer "allocate-buffer", AbnormallyTerminated "abnormally-terminated", Inferred, [SA]),
    // ---- FreeBuffer ---------------------------------------------------------
    scell!(FreeBuffer "free-buffer", Dne "dne", Documented, [SP]),
    scell!(FreeBuffer "free-buffer", Connected "connected", Inferred, [SP]),
    scell!(FreeBuffer "free-buffer", Configurable "configurable", Documented, [SP]),
    scell!(FreeBuffer "free-buffer", Initializing "initializing", Documented, [
        so(NOERROR, None, "buffer returned"),
        so(Hresult::VD_E_INVALID, None, "not a buffer of this set"),
    ]),
    scell!(FreeBuffer "free-buffer", Active "active", Inferred, [
        so(NOERROR, None, "buffer returned"),
        so(Hresult::VD_E_INVALID, None, "not a buffer of this set"),
    ]),
    scell!(FreeBuffer "free-buffer", NormallyTerminated "normally-terminated", Inferred, [SP]),
    scell!(FreeBuffer "free-buffer", AbnormallyTerminated "abnormally-terminated", Inferred, [SA]),
    // ---- SendCommand --------------------------------------------------------
    scell!(SendCommand "send-command", Dne "dne", Documented, [SP]),
    scell!(SendCommand "send-command", Connected "connected", Inferred, [SP]),
    scell!(SendCommand "send-command", Configurable "configurable", Documented, [SP]),
    scell!(SendCommand "send-command", Initializing "initializing", Documented, [SP]),
    scell!(SendCommand "send-command", Active "active", Inferred, [
        so(NOERROR, None, "command queued; see server.send-command-rejected for a full queue or IO-ERROR"),
        so(PROTOCOL, None, "this device is not active; its callback gets ERROR_INVALID_HANDLE"),
    ]),
    scell!(SendCommand "send-command", NormallyTerminated "normally-terminated", Inferred, [SP]),
    scell!(SendCommand "send-command", AbnormallyTerminated "abnormally-terminated", Inferred, [
        so(ABORT, None, "rejected; callback gets ERROR_OPERATION_ABORTED"),
    ]),
    // ---- CloseDevice --------------------------------------------------------
    scell!(CloseDevice "close-device", Dne "dne", Documented, [SP]),
    scell!(CloseDevice "close-device", Connected "connected", Inferred, [SP]),
    scell!(CloseDevice "close-device", Configurable "configurable", Documented, [SP]),
    scell!(CloseDevice "close-device", Initializing "initializing", Documented, [SP]),
    scell!(CloseDevice "close-device", Active "active", Inferred, [
        so(NOERROR, None, "device closed; the client's GetCommand returns VD_E_CLOSE"),
        so(NOERROR, Some(S::NormallyTerminated), "the last open device closed"),
        so(Hresult::VD_E_CLOSE, None, "this device is already closed"),
    ]),
    scell!(CloseDevice "close-device", NormallyTerminated "normally-terminated", Inferred, [SP]),
    scell!(CloseDevice "close-device", AbnormallyTerminated "abnormally-terminated", Inferred, [
        so(ABORT, None, "no effect after SignalAbort"),
    ]),
    // ---- SignalAbort --------------------------------------------------------
    scell!(SignalAbort "signal-abort", Dne "dne", Documented, [SP]),
    scell!(SignalAbort "signal-abort", Connected "connected", Inferred, [
        so(NOERROR, Some(S::AbnormallyTerminated), "abort posted"),
    ]),
    scell!(SignalAbort "signal-abort", Configurable "configurable", Documented, [
        so(NOERROR, Some(S::AbnormallyTerminated), "abort posted"),
    ]),
    scell!(SignalAbort "signal-abort", Initializing "initializing", Documented, [
        so(NOERROR, Some(S::AbnormallyTerminated), "abort posted"),
    ]),
    scell!(SignalAbort "signal-abort", Active "active", Inferred, [
        so(NOERROR, Some(S::AbnormallyTerminated), "abort posted; outstanding commands complete with ERROR_OPERATION_ABORTED"),
    ]),
    scell!(SignalAbort "signal-abort", NormallyTerminated "normally-terminated", Inferred, [
        so(NOERROR, Some(S::AbnormallyTerminated), "abort posted"),
    ]),
    scell!(SignalAbort "signal-abort", AbnormallyTerminated "abnormally-terminated", Inferred, [
        so(NOERROR, None, "already aborting; idempotent"),
    ]),
    // ---- Close --------------------------------------------------------------
    scell!(Close "close", Dne "dne", Documented, [SP]),
    scell!(Close "close", Connected "connected", Inferred, [
        so(NOERROR, Some(S::Dne), "resources released"),
    ]),
    scell!(Close "close", Configurable "configurable", Documented, [
        so(NOERROR, Some(S::Dne), "resources released"),
    ]),
    scell!(Close "close", Initializing "initializing", Documented, [
        so(NOERROR, Some(S::Dne), "resources released"),
    ]),
    scell!(Close "close", Active "active", Inferred, [
        so(PROTOCOL, Some(S::Dne), "devices still open: shared memory unmapped, SignalAbort processing, resources released"),
        so(NOERROR, Some(S::Dne), "no device open"),
    ]),
    scell!(Close "close", NormallyTerminated "normally-terminated", Inferred, [
        so(NOERROR, Some(S::Dne), "resources released"),
    ]),
    scell!(Close "close", AbnormallyTerminated "abnormally-terminated", Inferred, [
        so(NOERROR, Some(S::Dne), "resources released"),
    ]),
];

/// The server cell for `m` in state `s`.
pub fn server_cell(m: ServerMethod, s: ServerState) -> &'static ServerCell {
    let mi = ServerMethod::ALL.iter().position(|x| *x == m).unwrap_or(0);
    let si = ServerState::ALL.iter().position(|x| *x == s).unwrap_or(0);
    &SERVER_TABLE[mi * ServerState::ALL.len() + si]
}

fn code_name(c: Hresult) -> String {
    c.name().map_or_else(|| c.to_string(), str::to_string)
}

fn outcome_text(code: Hresult, next: Option<&str>, when: &str) -> String {
    let mut s = code_name(code);
    if let Some(n) = next {
        s.push_str(" → ");
        s.push_str(n);
    }
    if !when.is_empty() {
        s.push_str(" (");
        s.push_str(when);
        s.push(')');
    }
    s
}

impl ClientCell {
    /// One-line normative summary, e.g. `GetCommand in Active: NOERROR
    /// (command fetched); VD_E_CLOSE → NormallyTerminated (...); ...`.
    pub fn summary(&self) -> String {
        let outs: Vec<String> = self
            .outcomes
            .iter()
            .map(|o| outcome_text(o.code, o.next.map(ClientState::name), o.when))
            .collect();
        format!(
            "{} in {}: {}",
            self.method.name(),
            self.state.name(),
            outs.join("; ")
        )
    }

    /// Whether `code` is one of this cell's outcomes.
    pub fn allows(&self, code: Hresult) -> bool {
        self.outcomes.iter().any(|o| o.code == code)
    }
}

fn server_method_name(m: ServerMethod) -> &'static str {
    match m {
        ServerMethod::Open => "Open",
        ServerMethod::GetConfiguration => "GetConfiguration",
        ServerMethod::BeginConfiguration => "BeginConfiguration",
        ServerMethod::RequestBuffers => "RequestBuffers",
        ServerMethod::QueryAvailableBuffers => "QueryAvailableBuffers",
        ServerMethod::EndConfiguration => "EndConfiguration",
        ServerMethod::OpenDevice => "OpenDevice",
        ServerMethod::ExecuteCompletionAgent => "ExecuteCompletionAgent",
        ServerMethod::AllocateBuffer => "AllocateBuffer",
        ServerMethod::FreeBuffer => "FreeBuffer",
        ServerMethod::SendCommand => "SendCommand",
        ServerMethod::CloseDevice => "CloseDevice",
        ServerMethod::SignalAbort => "SignalAbort",
        ServerMethod::Close => "Close",
    }
}

fn server_state_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Dne => "DNE",
        ServerState::Connected => "Connected",
        ServerState::Configurable => "Configurable",
        ServerState::Initializing => "Initializing",
        ServerState::Active => "Active",
        ServerState::NormallyTerminated => "NormallyTerminated",
        ServerState::AbnormallyTerminated => "AbnormallyTerminated",
    }
}

impl ServerCell {
    /// One-line normative summary, e.g. `server EndConfiguration in
    /// Configurable: NOERROR → Initializing (...); VD_E_MEMORY (...)`.
    pub fn summary(&self) -> String {
        let outs: Vec<String> = self
            .outcomes
            .iter()
            .map(|o| outcome_text(o.code, o.next.map(server_state_name), o.when))
            .collect();
        format!(
            "server {} in {}: {}",
            server_method_name(self.method),
            server_state_name(self.state),
            outs.join("; ")
        )
    }

    /// Whether `code` is one of this cell's outcomes.
    pub fn allows(&self, code: Hresult) -> bool {
        self.outcomes.iter().any(|o| o.code == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn codes(c: &ClientCell) -> Vec<Hresult> {
        c.outcomes.iter().map(|o| o.code).collect()
    }

    #[test]
    fn table_client_has_42_cells_row_major() {
        assert_eq!(CLIENT_TABLE.len(), 42);
        let mut seen = BTreeSet::new();
        for (i, cell) in CLIENT_TABLE.iter().enumerate() {
            assert_eq!(cell.method, TableMethod::ALL[i / 6], "cell {i}");
            assert_eq!(cell.state, ClientState::ALL[i % 6], "cell {i}");
            assert!(seen.insert((cell.method, cell.state)), "duplicate cell {i}");
            assert!(std::ptr::eq(client_cell(cell.method, cell.state), cell));
            assert!(!cell.outcomes.is_empty(), "{}", cell.clause);
        }
        assert_eq!(seen.len(), 42);
    }

    #[test]
    fn table_client_clause_ids_follow_slugs() {
        for cell in &CLIENT_TABLE {
            assert_eq!(
                cell.clause,
                format!("table.{}.{}", cell.method.slug(), cell.state.slug())
            );
        }
    }

    #[test]
    fn table_client_codes_are_vd_e_or_noerror() {
        for cell in &CLIENT_TABLE {
            for o in cell.outcomes {
                let name = o.code.name().unwrap_or("");
                assert!(
                    o.code == Hresult::NOERROR || name.starts_with("VD_E_"),
                    "{}: {}",
                    cell.clause,
                    o.code
                );
            }
        }
    }

    #[test]
    fn table_client_matrix_entry_first() {
        // §4.1 documented matrix: the first outcome of each cell is the matrix
        // entry (code, next).
        use ClientState::*;
        let p = (PROTOCOL, None);
        let a = (ABORT, None);
        let matrix: [[(Hresult, Option<ClientState>); 6]; 7] = [
            [(NOERROR, Some(Configurable)), p, p, p, p, p],
            [
                p,
                (NOERROR, Some(Initializing)),
                (NOERROR, None),
                (NOERROR, None),
                (NOERROR, None),
                a,
            ],
            [p, p, (NOERROR, Some(Active)), p, p, a],
            [p, p, p, (NOERROR, None), p, a],
            [p, p, p, (NOERROR, None), p, a],
            [
                p,
                (NOERROR, Some(Abort)),
                (NOERROR, Some(Abort)),
                (NOERROR, Some(Abort)),
                (NOERROR, Some(Abort)),
                (NOERROR, None),
            ],
            [
                p,
                (NOERROR, Some(Dne)),
                (NOERROR, Some(Dne)),
                (NOERROR, Some(Dne)),
                (NOERROR, Some(Dne)),
                (NOERROR, Some(Dne)),
            ],
        ];
        for (mi, m) in TableMethod::ALL.iter().enumerate() {
            for (si, s) in ClientState::ALL.iter().enumerate() {
                let cell = client_cell(*m, *s);
                let want = matrix[mi][si];
                // Close/Active lists the VD_E_OPEN refinement after NOERROR;
                // OpenDevice/Active lists the matrix PROTOCOL first.
                let first = cell.outcomes[0];
                assert_eq!((first.code, first.next), want, "{}", cell.clause);
            }
        }
    }

    #[test]
    fn table_client_spot_checks() {
        use ClientState::*;
        use TableMethod::*;
        let close_dne = client_cell(Close, Dne);
        assert_eq!(codes(close_dne), [PROTOCOL]);
        assert_eq!(close_dne.outcomes[0].next, None);

        let abort_abort = client_cell(SignalAbort, Abort);
        assert_eq!(codes(abort_abort), [NOERROR]);
        assert_eq!(abort_abort.outcomes[0].next, None);

        assert_eq!(
            codes(client_cell(GetCommand, NormallyTerminated)),
            [PROTOCOL]
        );

        let gc = client_cell(GetConfiguration, Configurable);
        let got: Vec<_> = gc.outcomes.iter().map(|o| (o.code, o.next)).collect();
        assert_eq!(
            got,
            [
                (NOERROR, Some(Initializing)),
                (Hresult::VD_E_TIMEOUT, None),
                (ABORT, Some(Abort)),
            ]
        );

        let cmd = client_cell(GetCommand, Active);
        assert!(cmd.allows(Hresult::VD_E_TIMEOUT));
        assert!(
            cmd.outcomes
                .iter()
                .any(|o| o.code == Hresult::VD_E_CLOSE && o.next == Some(NormallyTerminated))
        );
        assert!(
            cmd.outcomes
                .iter()
                .any(|o| o.code == ABORT && o.next == Some(Abort))
        );

        let od = client_cell(OpenDevice, Initializing);
        for c in [NOERROR, Hresult::VD_E_INVALID, Hresult::VD_E_OPEN, PROTOCOL] {
            assert!(od.allows(c), "{c}");
        }
        assert_eq!(od.outcomes[0].next, Some(Active));

        let ca = client_cell(Close, Active);
        let got: Vec<_> = ca.outcomes.iter().map(|o| (o.code, o.next)).collect();
        assert_eq!(got, [(NOERROR, Some(Dne)), (Hresult::VD_E_OPEN, Some(Dne))]);
        assert_eq!(ca.basis, Basis::Inferred);
        assert_eq!(
            client_cell_profile(Close, Active),
            Some("close-with-open-devices")
        );

        for s in [Configurable, Initializing, NormallyTerminated, Abort] {
            let c = client_cell(Close, s);
            assert_eq!(codes(c), [NOERROR], "{}", c.clause);
            assert_eq!(c.outcomes[0].next, Some(Dne));
        }
        assert_eq!(client_cell(CompleteCommand, Abort).outcomes[0].code, ABORT);
    }

    #[test]
    fn table_when_texts_are_plain() {
        // Summaries wrap each condition in parentheses; conditions must not
        // nest them.
        let whens = CLIENT_TABLE
            .iter()
            .flat_map(|c| c.outcomes.iter().map(move |o| (c.clause, o.when)))
            .chain(
                SERVER_TABLE
                    .iter()
                    .flat_map(|c| c.outcomes.iter().map(move |o| (c.clause, o.when))),
            );
        for (clause, when) in whens {
            assert!(
                !when.contains('(') && !when.contains(')'),
                "{clause}: {when}"
            );
        }
    }

    #[test]
    fn table_client_summary_text() {
        let s = client_cell(TableMethod::GetCommand, ClientState::Active).summary();
        assert!(
            s.starts_with("GetCommand in Active: NOERROR (command fetched); VD_E_CLOSE"),
            "{s}"
        );
        assert!(s.contains("VD_E_CLOSE → NormallyTerminated"), "{s}");
    }

    #[test]
    fn table_server_has_98_cells_row_major() {
        assert_eq!(
            SERVER_TABLE.len(),
            ServerMethod::ALL.len() * ServerState::ALL.len()
        );
        for (i, cell) in SERVER_TABLE.iter().enumerate() {
            assert_eq!(cell.method, ServerMethod::ALL[i / 7], "cell {i}");
            assert_eq!(cell.state, ServerState::ALL[i % 7], "cell {i}");
            assert!(std::ptr::eq(server_cell(cell.method, cell.state), cell));
            assert_eq!(
                cell.clause,
                format!("table.server.{}.{}", cell.method.slug(), cell.state.slug())
            );
            assert!(!cell.outcomes.is_empty(), "{}", cell.clause);
        }
    }

    #[test]
    fn table_server_documented_half() {
        use ServerMethod as M;
        use ServerState as St;
        // The recovered rows (Open .. QueryAvailableBuffers) are documented in
        // every shown column; the later rows only in DNE, Configurable and
        // Initializing; the Connected column is inferred except
        // BeginConfiguration (its method page: legal only in Connected).
        for cell in &SERVER_TABLE {
            let early = matches!(
                cell.method,
                M::Open
                    | M::GetConfiguration
                    | M::BeginConfiguration
                    | M::RequestBuffers
                    | M::QueryAvailableBuffers
            );
            let want = if cell.state == St::Connected {
                cell.method == M::BeginConfiguration
            } else {
                early || matches!(cell.state, St::Dne | St::Configurable | St::Initializing)
            };
            let want = if want {
                Basis::Documented
            } else {
                Basis::Inferred
            };
            assert_eq!(cell.basis, want, "{}", cell.clause);
        }
    }

    #[test]
    fn table_server_spot_checks() {
        use ServerMethod as M;
        use ServerState as St;
        let open = server_cell(M::Open, St::Dne);
        assert_eq!(open.outcomes[0].next, Some(St::Connected));
        assert!(open.allows(Hresult::VD_E_INVALID));
        let end = server_cell(M::EndConfiguration, St::Configurable);
        assert_eq!(end.outcomes[0].next, Some(St::Initializing));
        assert!(
            end.outcomes
                .iter()
                .any(|o| o.code == Hresult::VD_E_MEMORY && o.next.is_none())
        );
        assert_eq!(
            server_cell(M::BeginConfiguration, St::Connected).outcomes[0].next,
            Some(St::Configurable)
        );
        assert_eq!(
            server_cell(M::GetConfiguration, St::AbnormallyTerminated).outcomes[0].code,
            ABORT
        );
        // Documented PROTOCOL stays PROTOCOL even in AbnormallyTerminated.
        assert_eq!(
            server_cell(M::RequestBuffers, St::AbnormallyTerminated).outcomes[0].code,
            PROTOCOL
        );
        for m in ServerMethod::ALL {
            let c = server_cell(m, St::Dne);
            let want = if m == M::Open { NOERROR } else { PROTOCOL };
            assert_eq!(c.outcomes[0].code, want, "{}", c.clause);
        }
        // Completed half, AbnormallyTerminated: VD_E_ABORT except SignalAbort,
        // Close (and the documented PROTOCOL rows).
        assert_eq!(
            server_cell(M::SignalAbort, St::AbnormallyTerminated).outcomes[0].code,
            NOERROR
        );
        assert_eq!(
            server_cell(M::Close, St::AbnormallyTerminated).outcomes[0].next,
            Some(St::Dne)
        );
        for m in [
            M::EndConfiguration,
            M::OpenDevice,
            M::AllocateBuffer,
            M::SendCommand,
            M::CloseDevice,
        ] {
            assert_eq!(
                server_cell(m, St::AbnormallyTerminated).outcomes[0].code,
                ABORT,
                "{m:?}"
            );
        }
        // NormallyTerminated: everything but GetConfiguration/SignalAbort/Close → PROTOCOL.
        for m in ServerMethod::ALL {
            let c = server_cell(m, St::NormallyTerminated);
            let legal = matches!(m, M::GetConfiguration | M::SignalAbort | M::Close);
            assert_eq!(c.outcomes[0].code == PROTOCOL, !legal, "{}", c.clause);
        }
        let close = server_cell(M::Close, St::Active);
        assert_eq!(close.outcomes[0].code, PROTOCOL);
        assert!(close.outcomes.iter().all(|o| o.next == Some(St::Dne)));
    }
}

/// Every code a method's own reference page documents (vdi-spec.md §2.1,
/// §2.2), whatever the state. With [`ClientCell::allows`], this is what the
/// invariant "every call returns a code documented for that method and
/// state" accepts; profile-chosen codes (illegal names, names in use, use
/// after Close) are accepted separately by whoever knows the profile.
pub fn documented_codes(m: TableMethod) -> &'static [Hresult] {
    use Hresult as H;
    match m {
        TableMethod::Create => &[
            H::NOERROR,
            H::VD_E_NOTSUPPORTED,
            H::VD_E_PROTOCOL,
            H::VD_E_INSTANCE_NAME,
            H::VD_E_SECURITY,
            H::E_ACCESSDENIED,
        ],
        TableMethod::GetConfiguration => {
            &[H::NOERROR, H::VD_E_ABORT, H::VD_E_TIMEOUT, H::VD_E_PROTOCOL]
        }
        TableMethod::OpenDevice => &[
            H::NOERROR,
            H::VD_E_ABORT,
            H::VD_E_OPEN,
            H::VD_E_PROTOCOL,
            H::VD_E_INVALID,
        ],
        TableMethod::GetCommand => &[
            H::NOERROR,
            H::VD_E_CLOSE,
            H::VD_E_TIMEOUT,
            H::VD_E_ABORT,
            H::VD_E_PROTOCOL,
        ],
        TableMethod::CompleteCommand => {
            &[H::NOERROR, H::VD_E_INVALID, H::VD_E_ABORT, H::VD_E_PROTOCOL]
        }
        TableMethod::SignalAbort => &[H::NOERROR, H::VD_E_PROTOCOL],
        TableMethod::Close => &[H::NOERROR, H::VD_E_PROTOCOL, H::VD_E_OPEN],
    }
}

#[cfg(test)]
mod documented_tests {
    use super::*;

    #[test]
    fn table_cells_use_documented_codes() {
        for cell in CLIENT_TABLE.iter() {
            for o in cell.outcomes {
                assert!(
                    documented_codes(cell.method).contains(&o.code),
                    "{} {:?}",
                    cell.clause,
                    o.code
                );
            }
        }
    }
}
