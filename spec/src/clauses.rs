//! The clause catalog: every normative statement of the reference that the
//! model implements or the harness judges, with a stable id.
//!
//! Ids are kebab-case `area.rule` (`close.devices-open`). Each clause cites
//! the section of `vdi-spec.md` (`§n.m`), the original source tags the
//! reference gives, whether the rule is documented or inferred, the profile
//! parameter that decides it when the reference leaves it open, and the
//! field-problem rows (Part 2 of `vdi-abi-and-field-notes.md`) it covers.
//!
//! [`CATALOG`] holds the hand-written clauses; [`all`] adds one clause per
//! cell of the client and server transition tables ([`crate::tables`]), with
//! ids `table.<method>.<state>` and `table.server.<method>.<state>`.

use crate::clause_id::{ClauseId, id};
use crate::tables::{CLIENT_TABLE, SERVER_TABLE, client_cell_profile};
use serde::Serialize;
use std::sync::OnceLock;

/// Whether a clause is stated by a source or deduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// Stated by a public source ([SPEC], [LINUX], [HDR], [SAMPLE], [KB], [3P]).
    Documented,
    /// Marked INFERRED by the reference, or decided by a profile parameter
    /// where the reference is silent or contradicts itself.
    Inferred,
}

/// One normative statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Clause {
    /// Stable id, kebab-case `area.rule`, e.g. `close.devices-open`.
    pub id: &'static str,
    /// One normative line.
    pub summary: &'static str,
    /// Section of vdi-spec.md, e.g. `§2.1 Close` or `§4.1`.
    pub section: &'static str,
    /// The original reference tags as vdi-spec.md gives them.
    pub source: &'static str,
    /// Documented or inferred.
    pub basis: Basis,
    /// The profile parameter key (see `Profile::describe()`) that decides
    /// this behaviour, if any.
    pub profile: Option<&'static str>,
    /// Rows of Part 2 of vdi-abi-and-field-notes.md this clause covers.
    pub field_rows: &'static [u8],
}

const D: Basis = Basis::Documented;
const I: Basis = Basis::Inferred;

const fn c(
    id: ClauseId,
    summary: &'static str,
    section: &'static str,
    source: &'static str,
    basis: Basis,
    profile: Option<&'static str>,
    field_rows: &'static [u8],
) -> Clause {
    Clause {
        id: id.as_str(),
        summary,
        section,
        source,
        basis,
        profile,
        field_rows,
    }
}

/// The hand-written clauses, grouped by area.
pub static CATALOG: &[Clause] = &[
    // ---- Close ----------------------------------------------------------------
    c(
        id::CLOSE_NOT_OPEN,
        "Close on an object with no set open (DNE, including a second Close) returns VD_E_PROTOCOL and takes no action.",
        "§2.1 Close",
        "[SPEC Close]; [SPEC Client Transitions]",
        D,
        None,
        &[14],
    ),
    c(
        id::CLOSE_ALL_FINISHED,
        "Close when no device is still open (every device saw VD_E_CLOSE, or none was opened, or the set is aborted) returns NOERROR, releases every VDI resource of the set and returns the object to DNE.",
        "§2.1 Close",
        "[SPEC Close]; [SPEC Client Transitions]",
        D,
        None,
        &[],
    ),
    c(
        id::CLOSE_DEVICES_OPEN,
        "Close with devices still open returns VD_E_OPEN, internally triggers SignalAbort so the server shuts down cleanly (its outstanding commands complete with ERROR_OPERATION_ABORTED), and still releases the resources (→ DNE); the matrix says NOERROR instead, so the code is a profile choice.",
        "§2.1 Close; §4.2",
        "[SPEC Close]; [SPEC Client Transitions]",
        I,
        Some("close-with-open-devices"),
        &[14],
    ),
    c(
        id::CLOSE_INVALIDATES_DEVICES,
        "Every device interface returned by OpenDevice is invalid after Close; using one is undefined in the reference (the model returns the use-after-close code) and must never crash.",
        "§2.1 Close; §4.3",
        "[SPEC Close]",
        I,
        Some("use-after-close-code"),
        &[14],
    ),
    c(
        id::CLOSE_RELEASE_AFTER_CLOSE,
        "Releasing the set object or any device interface after Close (COM Release, Linux delete) must not crash or disturb a new set created on another object.",
        "§1.4; §4.6",
        "[SPEC Normal Termination]; [3P Bareos]",
        I,
        None,
        &[14],
    ),
    c(
        id::CLOSE_REUSE,
        "After Close returns, Create/CreateEx may be called again on the same object for a new operation.",
        "§2.1 Close; §4.6",
        "[SPEC CreateEx]; [SPEC Close]; [SPEC Normal Termination]",
        D,
        None,
        &[15],
    ),
    c(
        id::CLOSE_WAIT_FOR_CLOSE,
        "The client should stop all buffer and device use and wait for VD_E_CLOSE from GetCommand on every device before Close; when the set is already abnormally terminated no VD_E_CLOSE will come and Close may follow as soon as buffer activity has stopped.",
        "§2.1 Close; §4.6",
        "[SPEC Close]; [SPEC Normal Termination]",
        D,
        None,
        &[7],
    ),
    c(
        id::CLOSE_BEFORE_SERVER_OPEN,
        "A client Close before the server opened the set makes the server's later Open fail with VD_E_INVALID, so the statement fails.",
        "§4.2 item 5",
        "[SPEC IServerVirtualDeviceSet2::Open]; INFERRED",
        I,
        None,
        &[6],
    ),
    c(
        id::CLOSE_EXACTLY_ONCE,
        "A client calls Close exactly once for each set it created — when every device has returned VD_E_CLOSE, or after an abort — and then makes no call on that set or its device interfaces (Create/CreateEx on the same object starts a new set); exiting or destroying the object without Close, a second Close, or a call after Close is a client violation.",
        "§2.1 Close; §4.3; §4.6",
        "[SPEC Close]; [SPEC Normal Termination]; [3P Bareos]; INFERRED: exactly once",
        I,
        None,
        &[14],
    ),
    // ---- Create / CreateEx ----------------------------------------------------
    c(
        id::CREATE_OK,
        "Create/CreateEx on an object with no set (DNE) creates the named set with the client half of the configuration and returns NOERROR (→ Configurable); it should be called once per BACKUP/RESTORE.",
        "§2.1 CreateEx",
        "[SPEC CreateEx]; [SPEC Client Transitions]",
        D,
        None,
        &[],
    ),
    c(
        id::CREATE_CONFIG_INVALID,
        "Create/CreateEx returns VD_E_NOTSUPPORTED and creates no set when a VDConfig field is invalid or unsupported: deviceCount outside 1..64, an unsupported feature combination, server-only feature bits, a bad alignment, etc.",
        "§2.1 CreateEx; §3.3; §3.4",
        "[SPEC CreateEx]; [SPEC VDConfig]; [SPEC Feature Bits]",
        D,
        None,
        &[],
    ),
    c(
        id::CREATE_ALREADY_EXISTS,
        "Create/CreateEx on an object that already has a set (any state but DNE) returns VD_E_PROTOCOL and changes nothing.",
        "§2.1 CreateEx; §4.1",
        "[SPEC CreateEx]; [SPEC Client Transitions]",
        D,
        None,
        &[],
    ),
    c(
        id::CREATE_ILLEGAL_NAME,
        "The set name follows CreateFileMapping naming rules (any character but backslash): an empty name or one containing a backslash is refused and no set is created; the code is undocumented.",
        "§1.2; §2.1 CreateEx",
        "[SPEC CreateEx]; [SPEC Initialization]",
        I,
        Some("create-illegal-name-code"),
        &[17],
    ),
    c(
        id::CREATE_NAME_IN_USE,
        "Create/CreateEx with the name of another live set is refused (a GUID name is recommended to be system-wide unique); the code is undocumented.",
        "§1.2",
        "[SPEC CreateEx, Initialization, Normal Termination]",
        I,
        Some("create-name-in-use-code"),
        &[],
    ),
    c(
        id::CREATE_EX_INSTANCE_NAME,
        "CreateEx with an instance name that is not recognised returns VD_E_INSTANCE_NAME and creates no set; a machine\\ prefix is not accepted.",
        "§2.1 CreateEx",
        "[SPEC CreateEx]; [SAMPLE error handling]; [HDR vdierror.h]",
        D,
        None,
        &[16],
    ),
    c(
        id::CREATE_EX_NULL_INSTANCE,
        "CreateEx (and OpenInSecondaryEx) with a NULL instance name targets the default instance.",
        "§2.1 CreateEx",
        "[SPEC CreateEx]",
        D,
        None,
        &[16],
    ),
    c(
        id::CREATE_EX_NAMED_INSTANCE,
        "CreateEx accepts the name of an installed SQL Server instance (no machine\\ prefix); which names exist is an input of the model.",
        "§2.1 CreateEx",
        "[SPEC CreateEx]; INFERRED",
        I,
        Some("instances"),
        &[16],
    ),
    c(
        id::CREATE_EX_EMPTY_INSTANCE,
        "CreateEx with an empty instance name \"\" is undocumented: it either means the default instance or is refused with VD_E_INSTANCE_NAME.",
        "§2.1 CreateEx",
        "[SPEC CreateEx]; INFERRED",
        I,
        Some("empty-instance-is-default"),
        &[16],
    ),
    c(
        id::CREATE_ACCESS_DENIED,
        "Creation can fail outside the protocol: CoCreateInstance with CLASS_E_CLASSNOTAVAILABLE 0x80040111 or REGDB_E_CLASSNOTREG 0x80040154 (registration, bitness), CreateEx with E_ACCESSDENIED (not an administrator) or VD_E_SECURITY (security environment, INFERRED from the DACL step); the client reports the code and exits cleanly.",
        "§2.1 CreateEx; §3.1; §7 item 10",
        "[SAMPLE]; [HDR vdierror.h]; [3P mssqlPipe #1]",
        I,
        None,
        &[5],
    ),
    c(
        id::CREATE_LEGACY_ENV,
        "The legacy Create emulates instance support through the environment variable _VIRTUAL_SERVER_NAME_: when it is set, Create calls CreateEx with that value as the instance name.",
        "§2.1 CreateEx",
        "[SPEC CreateEx]",
        D,
        None,
        &[],
    ),
    c(
        id::CREATE_DACL,
        "CreateEx modifies the DACL of the client process handle to grant the SQL Server service account access; CreateEx calls serialise among themselves but not with other code changing the process DACL.",
        "§2.1 CreateEx",
        "[SPEC CreateEx]",
        D,
        None,
        &[],
    ),
    // ---- GetConfiguration -----------------------------------------------------
    c(
        id::GET_CONFIGURATION_WAITS,
        "In Configurable, GetConfiguration waits (alertably) up to dwTimeOut ms until the server has configured the set, then copies the final configuration (client inputs + server outputs) into *pCfg and returns NOERROR (→ Initializing).",
        "§2.1 GetConfiguration",
        "[SPEC GetConfiguration]; [SPEC Client Transitions]",
        D,
        None,
        &[],
    ),
    c(
        id::GET_CONFIGURATION_TIMEOUT,
        "When no configuration arrives within the timeout GetConfiguration returns VD_E_TIMEOUT and the set stays Configurable (INFERRED); the client may call again but must give up, not hang, once the statement has failed.",
        "§2.1 GetConfiguration; §7 item 1",
        "[SPEC GetConfiguration]; [SAMPLE]; [3P Bareos]",
        I,
        None,
        &[6],
    ),
    c(
        id::GET_CONFIGURATION_ABORT,
        "GetConfiguration returns VD_E_ABORT when either side has signalled abort (a waiting call included; → Abort) and in the Abort state.",
        "§2.1 GetConfiguration; §4.1",
        "[SPEC GetConfiguration]; [SPEC Client Transitions]",
        D,
        None,
        &[],
    ),
    c(
        id::GET_CONFIGURATION_REPEAT,
        "In Initializing, Active and NormallyTerminated GetConfiguration returns NOERROR with the configuration again, without a state change; in DNE it returns VD_E_PROTOCOL.",
        "§2.1 GetConfiguration; §4.1",
        "[SPEC Client Transitions]",
        D,
        None,
        &[],
    ),
    c(
        id::GET_CONFIGURATION_SERVER_OUTPUTS,
        "The configuration GetConfiguration returns has the server outputs filled: blockSize (BLOCKSIZE), maxIODepth (deprecated, always 4), maxTransferSize (MAXTRANSFERSIZE) and bufferAreaSize.",
        "§3.4",
        "[SPEC VDConfig]",
        D,
        None,
        &[],
    ),
    c(
        id::GET_CONFIGURATION_FEATURES_RETURNED,
        "The features GetConfiguration returns are the requested client bits | VDF_WriteMedia (BACKUP) or VDF_ReadMedia (RESTORE) | VDF_CompleteEnabled when VDF_RequestComplete was requested and the server supports it (INFERRED from 0x10000 observed for a pipe BACKUP).",
        "§3.3; §8 #12",
        "[KB CU15/CU28]; [KB3188454]; INFERRED",
        I,
        Some("server-supports-complete"),
        &[3],
    ),
    // ---- OpenDevice -----------------------------------------------------------
    c(
        id::OPEN_DEVICE_OK,
        "In Initializing, OpenDevice with the name of an unopened device of the set returns NOERROR and a device interface; that device is usable at once (→ Active), while OpenDevice stays legal until every device is open.",
        "§2.1 OpenDevice; §4.2 item 1",
        "[SPEC OpenDevice]; [SPEC Client Transitions]",
        D,
        None,
        &[],
    ),
    c(
        id::OPEN_DEVICE_INVALID_NAME,
        "OpenDevice with a name that is not one of the set's devices returns VD_E_INVALID and changes nothing.",
        "§2.1 OpenDevice",
        "[SPEC OpenDevice]",
        D,
        None,
        &[],
    ),
    c(
        id::OPEN_DEVICE_ALREADY_OPEN,
        "OpenDevice on a device that is already open returns VD_E_PROTOCOL; when every device is open as well, whether VD_E_PROTOCOL or VD_E_OPEN is returned is undocumented.",
        "§2.1 OpenDevice; §4.2 item 1; §8 #2",
        "[SPEC OpenDevice]; [SPEC Client Transitions]",
        I,
        Some("open-device-precedence"),
        &[],
    ),
    c(
        id::OPEN_DEVICE_ALL_OPEN,
        "Once every device of the set is open OpenDevice returns VD_E_OPEN; this may be returned without problem and clients may loop calling OpenDevice until they see it (the matrix says VD_E_PROTOCOL in Active).",
        "§2.1 OpenDevice; §4.2 item 1",
        "[SPEC OpenDevice]",
        D,
        None,
        &[],
    ),
    c(
        id::OPEN_DEVICE_ABORT,
        "OpenDevice returns VD_E_ABORT when an abort was requested, e.g. the server failed (buffer allocation, OS error 995) between configuration and device open; the client must not hang and must Close.",
        "§2.1 OpenDevice; §6.4",
        "[SPEC OpenDevice]; [KB CU15/CU28]; [3P issue #752]",
        D,
        None,
        &[1],
    ),
    c(
        id::OPEN_DEVICE_WRONG_STATE,
        "OpenDevice in DNE, Configurable (before GetConfiguration succeeded) or NormallyTerminated returns VD_E_PROTOCOL; in Abort it returns VD_E_ABORT.",
        "§2.1 OpenDevice; §4.1",
        "[SPEC OpenDevice]; [SPEC Client Transitions]",
        D,
        None,
        &[],
    ),
    c(
        id::OPEN_DEVICE_NULL_ON_FAILURE,
        "On every failure OpenDevice sets *ppVirtualDevice to NULL.",
        "§2.1 OpenDevice",
        "[SPEC OpenDevice]",
        D,
        None,
        &[],
    ),
    c(
        id::OPEN_DEVICE_FIRST_IS_SET_NAME,
        "The first device has the set's name; the other devices are named by the statement's further VIRTUAL_DEVICE clauses; names are unique within the set and must match the statement's list exactly.",
        "§1.2",
        "[SPEC Initialization]; [SPEC OpenDevice]",
        D,
        None,
        &[8],
    ),
    // ---- GetCommand -----------------------------------------------------------
    c(
        id::GET_COMMAND_OK,
        "In Active, GetCommand returns NOERROR and the next command queued to this device in *ppCmd; the VDC_Command is read-only memory owned by VDI that must later be passed to CompleteCommand.",
        "§2.2 GetCommand",
        "[SPEC GetCommand]; [SPEC Client Transitions]",
        D,
        None,
        &[],
    ),
    c(
        id::GET_COMMAND_TIMEOUT,
        "When nothing is queued within dwTimeOut ms GetCommand returns VD_E_TIMEOUT and the device stays usable; the client decides what to do, and a timeout is not fatal: a conformant client keeps polling.",
        "§2.2 GetCommand",
        "[SPEC GetCommand]",
        D,
        None,
        &[2],
    ),
    c(
        id::GET_COMMAND_POLL,
        "dwTimeOut 0 polls: GetCommand returns a queued command, or VD_E_TIMEOUT at once without waiting.",
        "§2.2 GetCommand",
        "[SPEC GetCommand]",
        D,
        None,
        &[19],
    ),
    c(
        id::GET_COMMAND_INFINITE,
        "dwTimeOut INFINITE (0xFFFFFFFF) waits until a command, VD_E_CLOSE or VD_E_ABORT arrives; the Linux header defines no INFINITE, so there 0xFFFFFFFF is a finite wait of about 49.7 days.",
        "§2.2 GetCommand; §3.8",
        "[SPEC GetCommand]; [LINUX]",
        D,
        None,
        &[19],
    ),
    c(
        id::GET_COMMAND_LINUX_NEGATIVE,
        "On Linux timeouts are time_t milliseconds and any negative value waits forever (GetCommand and GetConfiguration).",
        "§3.8; §6.2",
        "[LINUX]",
        D,
        None,
        &[19],
    ),
    c(
        id::GET_COMMAND_CLOSE,
        "After the server closed this device (CloseDevice) GetCommand returns VD_E_CLOSE, the normal end for that device; the set becomes NormallyTerminated only when every device is closed.",
        "§2.2 GetCommand; §4.2 item 2",
        "[SPEC GetCommand]; [SPEC Normal Termination]",
        D,
        None,
        &[],
    ),
    c(
        id::GET_COMMAND_ABORT,
        "When either side has signalled abort (or the watchdog fired, the server died, or the client closed with open devices) GetCommand returns VD_E_ABORT, a blocked call included (→ Abort).",
        "§2.2 GetCommand; §4.8",
        "[SPEC GetCommand]; [SPEC Abnormal Termination]",
        D,
        None,
        &[7],
    ),
    c(
        id::GET_COMMAND_WRONG_STATE,
        "GetCommand in DNE, Configurable, Initializing or NormallyTerminated returns VD_E_PROTOCOL; in Abort it returns VD_E_ABORT.",
        "§2.2 GetCommand; §4.1",
        "[SPEC Client Transitions]",
        D,
        None,
        &[],
    ),
    c(
        id::GET_COMMAND_AFTER_DEVICE_CLOSED,
        "GetCommand on a device the server already closed while other devices are still active is undocumented: VD_E_CLOSE again or VD_E_PROTOCOL; a harness judging a real implementation accepts either.",
        "§4.2 item 3; §8 #4",
        "[SPEC Client Transitions]; INFERRED",
        I,
        Some("get-command-after-device-closed"),
        &[],
    ),
    c(
        id::GET_COMMAND_SEVERAL_OUTSTANDING,
        "GetCommand may be called again before earlier commands are completed: several commands can be outstanding on one device, and an asynchronous client must keep completing them while blocked in GetCommand.",
        "§4.3",
        "[SPEC Active]; [SPEC VDConfig]; [SPEC SendCommand]",
        D,
        None,
        &[],
    ),
    // ---- CompleteCommand ------------------------------------------------------
    c(
        id::COMPLETE_COMMAND_OK,
        "In Active, CompleteCommand records the completion and returns NOERROR; a Win32 completion code (ERROR_SUCCESS = success) is mandatory for every command, bytesTransferred matters only for Read/Write and position only for GetPosition/SetPosition.",
        "§2.2 CompleteCommand; §5.0",
        "[SPEC CompleteCommand]; [SPEC Command General Rules]",
        D,
        None,
        &[],
    ),
    c(
        id::COMPLETE_COMMAND_INVALID,
        "CompleteCommand with a pCmd that is not an active command of the device (never returned by GetCommand, from another device or set, stale, or already completed: INFERRED examples) returns VD_E_INVALID and changes nothing.",
        "§2.2 CompleteCommand",
        "[SPEC CompleteCommand]; INFERRED",
        I,
        None,
        &[],
    ),
    c(
        id::COMPLETE_COMMAND_ABORT,
        "After an abort CompleteCommand returns VD_E_ABORT; the server ignores completions reported after it aborted.",
        "§2.2 CompleteCommand; §4.5",
        "[SPEC CompleteCommand]; [SPEC SignalAbort]",
        D,
        None,
        &[],
    ),
    c(
        id::COMPLETE_COMMAND_WRONG_STATE,
        "CompleteCommand in DNE, Configurable, Initializing or NormallyTerminated returns VD_E_PROTOCOL (device not open); in Abort it returns VD_E_ABORT.",
        "§2.2 CompleteCommand; §4.1",
        "[SPEC CompleteCommand]; [SPEC Client Transitions]",
        D,
        None,
        &[],
    ),
    c(
        id::COMPLETE_COMMAND_READ_ONLY_BLOCK,
        "The client must not modify the VDC_Command block GetCommand returned (e.g. cmd->size = n); a change between GetCommand and CompleteCommand is a client violation the harness detects.",
        "§2.2 GetCommand",
        "[SPEC GetCommand]; [HDR vdi.h]",
        D,
        None,
        &[10],
    ),
    c(
        id::COMPLETE_COMMAND_ORDER,
        "The completion order of several outstanding commands is unspecified: each has its own callback so out-of-order completion is mechanically possible (INFERRED), while Microsoft's samples always complete in order.",
        "§4.3; §8 #10",
        "[SPEC SendCommand]; [SAMPLE]; INFERRED",
        I,
        Some("completion-order"),
        &[],
    ),
    c(
        id::COMPLETE_COMMAND_RETURNS_BUFFER,
        "Completing a Read or Write returns its buffer to the server; the client may touch a command's buffer only between GetCommand and CompleteCommand.",
        "§2.2 CompleteCommand; §4.3",
        "[SPEC CompleteCommand]; [SPEC Glossary]",
        D,
        None,
        &[],
    ),
    // ---- SignalAbort ----------------------------------------------------------
    c(
        id::SIGNAL_ABORT_OK,
        "SignalAbort in Configurable, Initializing, Active or NormallyTerminated returns NOERROR (abort notification posted) and moves the set to Abort; in Abort it returns NOERROR again (idempotent).",
        "§2.1 SignalAbort",
        "[SPEC SignalAbort]; [SPEC Client Transitions]",
        D,
        None,
        &[],
    ),
    c(
        id::SIGNAL_ABORT_DNE,
        "SignalAbort with no set (DNE) returns VD_E_PROTOCOL.",
        "§2.1 SignalAbort",
        "[SPEC Client Transitions]",
        D,
        None,
        &[],
    ),
    c(
        id::SIGNAL_ABORT_EFFECTS,
        "After SignalAbort no further commands are delivered on any device and every uncompleted command is auto-completed to the server with ERROR_OPERATION_ABORTED; the client then calls Close once it has stopped touching buffers.",
        "§2.1 SignalAbort",
        "[SPEC SignalAbort]",
        D,
        None,
        &[7],
    ),
    // ---- OpenInSecondary ------------------------------------------------------
    c(
        id::OPEN_IN_SECONDARY_OK,
        "OpenInSecondary[Ex] in a secondary process opens, by its exact case-sensitive name, a set the primary has created and configured (CreateEx + successful GetConfiguration) and returns NOERROR; the secondary then uses OpenDevice, GetCommand, CompleteCommand and buffer handles as usual.",
        "§2.1 OpenInSecondary; §1.5",
        "[SPEC OpenInSecondaryEx]; [SPEC Process Model]",
        D,
        None,
        &[],
    ),
    c(
        id::OPEN_IN_SECONDARY_PROTOCOL,
        "OpenInSecondary[Ex] returns VD_E_PROTOCOL when the set is already opened in this client, has not been created, or is not yet ready to accept secondaries (not configured).",
        "§2.1 OpenInSecondary; §4.1",
        "[SPEC OpenInSecondaryEx]; [LINUX]",
        D,
        None,
        &[],
    ),
    c(
        id::OPEN_IN_SECONDARY_ABORT,
        "OpenInSecondary[Ex] returns VD_E_ABORT when the operation is being aborted.",
        "§2.1 OpenInSecondary",
        "[SPEC OpenInSecondaryEx]",
        D,
        None,
        &[],
    ),
    // ---- Buffer handles -------------------------------------------------------
    c(
        id::BUFFER_HANDLE_ROUNDTRIP,
        "GetBufferHandle turns a command buffer's address into a process-independent 32-bit handle and MapBufferHandle, in any process with the same set open, maps it back to that process's address of the same buffer; handles are meaningful only within their set, and the process that called GetBufferHandle stays responsible for CompleteCommand.",
        "§2.1 GetBufferHandle / MapBufferHandle",
        "[SPEC GetBufferHandle]; [SPEC MapBufferHandle]",
        D,
        None,
        &[],
    ),
    c(
        id::BUFFER_HANDLE_PROTOCOL,
        "GetBufferHandle and MapBufferHandle return VD_E_PROTOCOL when the set is not currently open.",
        "§2.1 GetBufferHandle / MapBufferHandle",
        "[SPEC GetBufferHandle]; [SPEC MapBufferHandle]",
        D,
        None,
        &[],
    ),
    c(
        id::BUFFER_HANDLE_INVALID,
        "GetBufferHandle with an address that is not a buffer of the set, and MapBufferHandle with a value that is not a valid handle, return VD_E_INVALID.",
        "§2.1 GetBufferHandle / MapBufferHandle",
        "[SPEC GetBufferHandle]; [SPEC MapBufferHandle]",
        D,
        None,
        &[],
    ),
    // ---- Abort semantics (§4.5) -----------------------------------------------
    c(
        id::ABORT_CLIENT_SIGNAL,
        "When the client signals abort the server sees every outstanding command complete with ERROR_OPERATION_ABORTED (995), further SendCommand is rejected and the statement fails.",
        "§4.5",
        "[SPEC Abnormal Termination]; [SPEC SignalAbort]",
        D,
        None,
        &[7],
    ),
    c(
        id::ABORT_SERVER_SIGNAL,
        "When the server signals abort the client's GetConfiguration, GetCommand, CompleteCommand and OpenDevice return VD_E_ABORT (blocked calls included); completions the client reports later are ignored, and the completion agent completes all outstanding commands with ERROR_OPERATION_ABORTED and returns.",
        "§4.5; §2.3",
        "[SPEC Abnormal Termination]; [SPEC IServerVirtualDeviceSet2::SignalAbort]",
        D,
        None,
        &[1],
    ),
    c(
        id::ABORT_NO_COMMANDS_AFTER,
        "Once the set is aborted no new SendCommand is accepted, GetCommand delivers nothing new and no new buffers are handed out; buffers already held stay under their holder's control until it calls Close.",
        "§4.5",
        "[SPEC Abnormal Termination]",
        D,
        None,
        &[],
    ),
    c(
        id::ABORT_CLIENT_DEATH,
        "Death of the primary client process is detected by VDI and aborts the set: the server's outstanding I/O completes with ERROR_OPERATION_ABORTED and the statement fails (effects INFERRED).",
        "§1.5; §4.5",
        "[SPEC Process Model]; INFERRED",
        I,
        None,
        &[7],
    ),
    c(
        id::ABORT_SERVER_DEATH,
        "Death of the SQL Server process aborts the set: the client sees VD_E_ABORT (INFERRED: on its next blocking or any call).",
        "§1.5; §4.5",
        "[SPEC Process Model]; INFERRED",
        I,
        None,
        &[],
    ),
    c(
        id::ABORT_ATTENTION,
        "A TDS attention on the connection running a BACKUP or RESTORE (the client's cancel: a query timeout, Ctrl-C in sqlcmd, a driver's command timeout) aborts the statement as KILL does: the set is aborted (the client's calls return VD_E_ABORT, outstanding commands complete with ERROR_OPERATION_ABORTED), the statement fails with Msg 3204 and 3013, and no backup is recorded.",
        "§4.5; §7 #2",
        "[MS-TDS 2.2.1.7 Attention]; [SPEC Abnormal Termination]; INFERRED: the VDI effects are those of a server SignalAbort",
        I,
        None,
        &[1],
    ),
    c(
        id::ABORT_DISCONNECT,
        "When the connection running a BACKUP or RESTORE ends without an attention, the reference does not say when SQL Server notices: the profile decides whether the statement runs to its end (its result reaching no one) or is aborted as by an attention.",
        "§4.5",
        "[MS-TDS 2.2.1.7 Attention]; INFERRED: SQL Server notices a dead client connection when it next writes to it",
        I,
        Some("disconnect-without-attention"),
        &[],
    ),
    c(
        id::ABORT_DURING_SERVER_STALL,
        "A client's SignalAbort, Close or death while the server is stalled (busy, not taking completions) ends the statement at once: the abort is state of the set that the server's wait observes (§4.5: the client's SignalAbort makes the server's outstanding commands complete with ERROR_OPERATION_ABORTED; Close with devices open and the client's death act as SignalAbort), not a completion queued behind the stall. The statement fails as for the client's abort (18210, 3013); the completions the stall held are not taken, no command is sent after it, and the stall ends with the statement.",
        "§4.5; §1.5",
        "[SPEC Abnormal Termination]; [SPEC Process Model]; INFERRED: the stall is the simulator's fault; the abort is shared state of the set",
        I,
        None,
        &[],
    ),
    c(
        id::ABORT_ONLY_CLOSE,
        "In the Abort state only Close is useful: GetConfiguration, OpenDevice, GetCommand and CompleteCommand return VD_E_ABORT, SignalAbort NOERROR, Create VD_E_PROTOCOL; the client must not wait for VD_E_CLOSE.",
        "§4.1; §7 item 2",
        "[SPEC Client Transitions]; [3P issue #752]",
        D,
        None,
        &[7],
    ),
    c(
        id::ABORT_STATEMENT_FAILS,
        "An aborted operation fails its T-SQL statement with the 18210 / 3013 / 3041 family of messages citing operating system error 995 (ERROR_OPERATION_ABORTED).",
        "§4.5; §7 item 3",
        "[KB]; [3P blogs]",
        D,
        None,
        &[7],
    ),
    c(
        id::ABORT_SECONDARY_DEATH_UNDETECTED,
        "Death of a secondary client process is not detected by VDI on either side; the primary must detect it and act itself.",
        "§1.5; §4.5",
        "[SPEC Process Model]; [SPEC OpenInSecondaryEx]",
        D,
        None,
        &[],
    ),
    // ---- Normal termination (§4.6) --------------------------------------------
    c(
        id::TERM_CLOSE_DEVICE,
        "Server CloseDevice on a device makes that device's next GetCommand return VD_E_CLOSE; the device's client thread leaves its loop.",
        "§4.6",
        "[SPEC Normal Termination]; [SPEC CloseDevice]",
        D,
        None,
        &[],
    ),
    c(
        id::TERM_NORMALLY_TERMINATED,
        "The set enters NormallyTerminated only when all devices have been closed by the server; the completion agent then returns.",
        "§4.6; §4.2 item 2",
        "[SPEC Normal Termination]",
        D,
        None,
        &[],
    ),
    c(
        id::TERM_OUTCOME_DECIDES,
        "A clean VD_E_CLOSE on every device does not mean the BACKUP/RESTORE succeeded: the server can close devices normally yet fail the statement; only the T-SQL outcome decides and the client must check it.",
        "§1.4; §7 item 9",
        "[SAMPLE]",
        D,
        None,
        &[20],
    ),
    c(
        id::TERM_BACKUP_SEQUENCE,
        "A pipe BACKUP stream is Write* … Flush (several with FILESTREAM) … [Complete if negotiated], then CloseDevice on every device.",
        "§4.6; §5.19",
        "[SPEC Normal Termination]; [SAMPLE]; INFERRED",
        I,
        None,
        &[3],
    ),
    c(
        id::TERM_EXITS,
        "Once its statement has ended (and its set is closed) the client program finishes and exits: a program still running a bound after the statement ended — waiting for a configuration, a command or a VD_E_CLOSE that will never come — hangs, and one that dies of a signal crashes; the harness kills a hung program and grades either as a violation.",
        "§1.4; §4.6; §7 items 1, 2",
        "[SAMPLE]; [3P Bareos]; INFERRED: the harness's exit bound",
        I,
        None,
        &[],
    ),
    // ---- IO-ERROR (§4.7) ------------------------------------------------------
    c(
        id::IO_ERROR_ENTER,
        "A completion code other than ERROR_SUCCESS puts the device (server side) into IO-ERROR; the client sees nothing immediately.",
        "§4.7",
        "[SPEC Command Error Handling]",
        D,
        None,
        &[],
    ),
    c(
        id::IO_ERROR_REJECT_NEW,
        "In IO-ERROR every new SendCommand except ClearError is rejected synchronously with ERROR_IO_DEVICE, and commands queued but not yet handed to the client are auto-completed with ERROR_IO_DEVICE; the client never sees them.",
        "§4.7",
        "[SPEC Command Error Handling]; [SPEC SendCommand]",
        D,
        None,
        &[],
    ),
    c(
        id::IO_ERROR_CLEAR_ERROR_AFTER_OUTSTANDING,
        "VDC_ClearError is delivered by GetCommand only after the client has completed every command that was outstanding when the error happened.",
        "§4.7; §5.3",
        "[SPEC Command Error Handling]",
        D,
        None,
        &[],
    ),
    c(
        id::IO_ERROR_CLEAR_ERROR_SUCCESS,
        "The client does its cleanup and completes VDC_ClearError with ERROR_SUCCESS; the device is Active again.",
        "§4.7; §5.3",
        "[SPEC Command Error Handling]",
        D,
        None,
        &[],
    ),
    c(
        id::IO_ERROR_CLOSE_OR_ABORT,
        "Instead of ClearError the server may CloseDevice (the client sees VD_E_CLOSE) or SignalAbort (VD_E_ABORT); which the server does after a fatal device error is not specified.",
        "§4.7; §4.5",
        "[SPEC Command Error Handling]; INFERRED",
        I,
        Some("error-termination"),
        &[],
    ),
    c(
        id::IO_ERROR_EOF,
        "Whether an expected ERROR_HANDLE_EOF on the last restore read puts the device into IO-ERROR (so VDC_ClearError follows) is not specified: §4.7 says any non-success code does, §5.1 treats EOF as the normal end of the stream.",
        "§4.7; §5.1",
        "[SPEC Command Error Handling]; [SPEC VDC_Read]; INFERRED",
        I,
        Some("eof-enters-io-error"),
        &[11],
    ),
    c(
        id::IO_ERROR_NOT_SUPPORTED,
        "Whether completing a command with ERROR_NOT_SUPPORTED puts the device into IO-ERROR is not specified: §4.7 says any non-success code does, §5.0 makes ERROR_NOT_SUPPORTED the ordinary answer to a command the client lacks.",
        "§4.7; §5.0",
        "[SPEC Command Error Handling]; [SPEC Command General Rules]; INFERRED",
        I,
        Some("not-supported-enters-io-error"),
        &[13],
    ),
    c(
        id::IO_ERROR_DISK_FULL,
        "A Write completed with ERROR_DISK_FULL or ERROR_EOM_OVERFLOW means the device has no more space: the server aborts the BACKUP.",
        "§5.2",
        "[SPEC VDC_Write]; [SPEC End of Media]",
        D,
        None,
        &[],
    ),
    c(
        id::IO_ERROR_END_OF_MEDIA,
        "A Write completed with ERROR_END_OF_MEDIA is a warning (removable media): I/O pending at that moment must still be stored, the server reissues the remainder when bytesTransferred < size, and aborts the BACKUP if queued data cannot be stored; non-removable devices have no end-of-media recovery.",
        "§5.2",
        "[SPEC VDC_Write]; [SPEC End of Media]",
        D,
        None,
        &[],
    ),
    c(
        id::IO_ERROR_ONE_DEVICE_FAILS,
        "With N devices, when one device fails the statement fails and the other devices see VD_E_ABORT (the reference also says the server usually drains I/O and closes devices instead).",
        "§4.5; §4.7",
        "[SPEC Command Error Handling]; INFERRED",
        I,
        Some("error-termination"),
        &[8],
    ),
    // ---- Watchdog -------------------------------------------------------------
    c(
        id::WATCHDOG_FIRES,
        "When requests are pending and none completes for 2 × serverTimeOut (the watchdog factor) the server aborts the set automatically; the client sees VD_E_ABORT.",
        "§3.4; §4.5",
        "[SPEC VDConfig]; [SPEC Abnormal Termination]",
        D,
        Some("watchdog-factor"),
        &[9, 13],
    ),
    c(
        id::WATCHDOG_DISABLED,
        "serverTimeOut 0 disables the watchdog (infinite timeout); it is a debugging aid.",
        "§3.4; §4.5",
        "[SPEC VDConfig]",
        D,
        None,
        &[13],
    ),
    c(
        id::WATCHDOG_RESET_ON_COMPLETION,
        "The watchdog measures time with nothing completing: any completion restarts the interval, so slow completions do not abort the set as long as something completes within each interval, and nothing fires while no request is pending.",
        "§4.5",
        "[SPEC VDConfig]; [SPEC Abnormal Termination]",
        D,
        None,
        &[9],
    ),
    // ---- VDC_Complete / VDC_Flush ---------------------------------------------
    c(
        id::COMPLETE_NEGOTIATION,
        "A client that wants VDC_Complete requests VDF_RequestComplete in CreateEx; if the server supports it GetConfiguration returns VDF_CompleteEnabled for a BACKUP (the flag says the server will send VDC_Complete; a RESTORE never does, so it never returns it), otherwise the bit is absent and VDC_Complete never comes; the client must check the returned bit.",
        "§5.17",
        "[KB3188454]; [HDR README]; [3P Bareos]",
        D,
        Some("server-supports-complete"),
        &[3],
    ),
    c(
        id::COMPLETE_NEVER_UNREQUESTED,
        "The server never sends VDC_Complete to a client that did not request VDF_RequestComplete: clients built from the 2004 header cannot even name it.",
        "§5.17; §3.5",
        "[KB3188454]; [HDR vdi.h]",
        D,
        None,
        &[3],
    ),
    c(
        id::COMPLETE_VETO,
        "On VDC_Complete the client hardens its media and completes with ERROR_SUCCESS, or with an error to fail the backup (which also prevents log truncation); the server then reports the BACKUP as failed.",
        "§5.17",
        "[KB3188454]",
        D,
        None,
        &[4],
    ),
    c(
        id::FLUSH_SEVERAL,
        "VDC_Flush can arrive several times in one backup (FILESTREAM): each makes every previous write durable, but the client must not finalise the backup at a mid-stream Flush; with VDC_Complete negotiated a Flush can be acknowledged without finalising.",
        "§5.12; §7 item 6",
        "[SPEC VDC_Flush]; [KB3188454]; [3P Bareos]",
        D,
        None,
        &[3],
    ),
    c(
        id::FLUSH_FINAL_VETO,
        "Without VDC_Complete the final VDC_Flush is the client's point of confirmation: completing it with an error fails the backup.",
        "§5.12",
        "[SPEC VDC_Flush]; [KB3188454]",
        D,
        None,
        &[4],
    ),
    c(
        id::FLUSH_RESTORE_NOT_SUPPORTED_MISUSE,
        "VDC_Flush is required in every device mode: answering it with ERROR_NOT_SUPPORTED (e.g. during a restore) is a client violation the harness grades.",
        "§5.0; §5.12",
        "[SPEC Client Supported Commands]; [SPEC VDC_Flush]",
        D,
        None,
        &[18],
    ),
    c(
        id::FLUSH_DISK_SETS_EOF,
        "With VDF_LikeDisk a Flush also sets end-of-file at the last written position (SetEndOfFile), which matters when overwriting a longer file: what lay beyond the backup's last byte is gone. Where that position is after a seek back the reference is silent; the model's clients take the furthest byte written on the device since it was opened, so a server that rewrites an earlier block (`disk-header-order = last`) does not cut its own backup.",
        "§5.12",
        "[SPEC VDC_Flush]",
        D,
        None,
        &[],
    ),
    // ---- Disk-like devices ------------------------------------------------------
    c(
        id::DISK_POSITIONED_IO,
        "With VDF_RandomAccess every VDC_Read and VDC_Write carries its byte position (a zero-origin offset from the beginning of the data): the client stores each Write's bytes at that position and answers each Read from it, not from a running cursor; positioned writes need no stream order, so under `short-transfer = reissue` the server writes a short Write's remainder again at its position even after later Writes went out.",
        "§3.6; §5.1; §5.2; §5.9; §5.19",
        "[SPEC VDC_Read]; [SPEC VDC_Write]; [SPEC VDC_GetPosition]; [SPEC Command Inputs]",
        D,
        None,
        &[],
    ),
    c(
        id::DISK_HEADER_ORDER,
        "On a disk-like device the server writes each family in sequence from position 0, media header first (the reference: sequential positioned Read/Write); the reference is silent on rewrites, so `disk-header-order = last` models a server that writes the data first and seeks back to write the media header at position 0 last: only a client that stores Writes at their positions keeps a restorable family.",
        "§5.19",
        "[SPEC VDC_Write]; INFERRED",
        I,
        Some("disk-header-order"),
        &[],
    ),
    c(
        id::MEDIA_NEXT_VOLUME,
        "On a removable pipe-like device (VDF_Removable) a family may span volumes: a BACKUP Write answered ERROR_END_OF_MEDIA keeps the bytes it reports, the server clears the IO-ERROR, sends VDC_Load for the next medium and writes the remainder and what follows on it; a RESTORE read that meets the end of a volume (EOF before the family's end) is followed by VDC_Load and the reads go on. The order ClearError, Load is the model's (the client half is in IO-ERROR after the error completion).",
        "§5.1; §5.2; §5.8",
        "[SPEC VDC_Write]; [SPEC VDC_Read]; [SPEC VDC_Load]; [SPEC End of Media]; INFERRED",
        I,
        None,
        &[],
    ),
    c(
        id::TAPE_MEDIA_NAME,
        "BACKUP WITH MEDIANAME names the media set: the name is written into every family's media header; RESTORE WITH MEDIANAME checks it, and media with another name (or none) fail the RESTORE after their headers are read. The reference does not give SQL Server's message: the model's is Msg 3264 with its own text.",
        "§1.3",
        "[SPEC Configuration]; INFERRED",
        I,
        None,
        &[],
    ),
    // ---- Snapshot backups ---------------------------------------------------------
    c(
        id::SNAPSHOT_SEQUENCE,
        "BACKUP DATABASE ... WITH SNAPSHOT (or METADATA_ONLY): the server writes the media header, freezes the database's writes, writes the metadata of the frozen state, then sends VDC_Snapshot; the client takes its snapshot and completes it; the metadata stream is complete when VDC_Snapshot arrives, so no Flush follows and the next GetCommand returns VD_E_CLOSE.",
        "§5.13",
        "[SPEC VDC_Snapshot]; [SPEC Creation of a Snapshot]; [SAMPLE snapshot.cpp]",
        D,
        None,
        &[],
    ),
    c(
        id::SNAPSHOT_ONE_DEVICE,
        "A snapshot BACKUP or RESTORE uses exactly one virtual device; a statement naming more fails before the set is configured (Msg 3217).",
        "§5.13; §5.14",
        "[SPEC Creation of a Snapshot]; [SPEC RESTORE Statement]",
        D,
        None,
        &[],
    ),
    c(
        id::SNAPSHOT_PREPARE_TO_FREEZE,
        "Only a client that set VDF_SnapshotPrepare gets VDC_PrepareToFreeze, after the media header and before the freeze: acknowledging it causes the freeze, so the client controls its timing.",
        "§3.3; §5.15",
        "[SPEC VDF_SnapshotPrepare]; [SAMPLE snapshot.cpp]",
        D,
        None,
        &[],
    ),
    c(
        id::SNAPSHOT_FREEZE_TIME,
        "From the freeze until the client completes VDC_Snapshot the database's writes are suspended: a slow client holds the database frozen. The model reports that time (the freeze time, in ms) in its trace and in the statement's outcome.",
        "§5.13",
        "[SPEC VDC_Snapshot]",
        D,
        None,
        &[],
    ),
    c(
        id::SNAPSHOT_ABORT,
        "A client completes VDC_Snapshot with ERROR_OPERATION_ABORTED (995) to abort: the freeze ends, writes resume and the BACKUP fails; any other error fails it too.",
        "§5.13",
        "[SPEC VDC_Snapshot]",
        D,
        None,
        &[],
    ),
    c(
        id::SNAPSHOT_FREEZE_TIMEOUT,
        "The reference names no limit on how long a snapshot may hold the database frozen; under `snapshot-freeze-timeout-ms` (0: none, the default) a freeze that lasts longer ends with the server aborting the set and the BACKUP failing, writes resumed.",
        "§5.13",
        "[SPEC VDC_Snapshot]; INFERRED",
        I,
        Some("snapshot-freeze-timeout-ms"),
        &[],
    ),
    c(
        id::SNAPSHOT_MOUNT,
        "RESTORE ... WITH SNAPSHOT reads the metadata over VDI, then sends VDC_MountSnapshot: the client makes the snapshot's files available and completes it; success tells the server the files are in place (no data laydown) and the RESTORE succeeds; an error fails it.",
        "§5.14",
        "[SPEC RESTORE Statement]; [SPEC Media Recovery Using the Snapshot]",
        D,
        None,
        &[],
    ),
    // ---- Tape-like devices ------------------------------------------------------
    c(
        id::TAPE_SEQUENCE,
        "On tape-like (VDF_LikeTape) devices the server positions the tape around each family: VDC_Rewind and VDC_GetPosition first; a BACKUP writes the media header, a VDC_WriteMark, the data and a closing VDC_WriteMark before the final Flush; a RESTORE reads the header, skips the mark after it (VDC_SkipMarks 1) and reads the data. The reference names the commands, not their order: the order is the model's.",
        "§5.4; §5.5; §5.6; §5.9; §5.19",
        "[SPEC VDC_Rewind]; [SPEC VDF_FileMarks]; [SPEC VDC_GetPosition]; INFERRED",
        I,
        None,
        &[],
    ),
    c(
        id::TAPE_FILEMARKS,
        "With VDF_FileMarks the client writes a filemark for each VDC_WriteMark, skips `size` filemarks for each VDC_SkipMarks, and answers a Read that reaches a filemark with ERROR_FILEMARK_DETECTED (and the bytes before it); a positioning command answered with anything but ERROR_SUCCESS fails the statement.",
        "§3.3; §5.1; §5.5; §5.6",
        "[SPEC VDF_FileMarks]; [SPEC VDC_Read]; [SPEC VDC_WriteMark]; [SPEC VDC_SkipMarks]",
        D,
        None,
        &[],
    ),
    c(
        id::TAPE_POSITION,
        "Without VDF_RandomAccess, VDC_GetPosition returns a block address in the completion's position (SQL Server needs block addresses for MTF and does not support tapes without them) and VDC_SetPosition is given only values GetPosition returned; right after VDC_Rewind the address is 0, and a client that reports another one fails the statement.",
        "§5.9; §5.10",
        "[SPEC VDC_GetPosition]; [SPEC VDC_SetPosition]",
        D,
        None,
        &[],
    ),
    c(
        id::TAPE_END_REWIND,
        "REWIND (the default) / NOREWIND on a BACKUP and UNLOAD (the default) / NOUNLOAD on a RESTORE decide whether a statement that succeeded on tape-like devices ends with VDC_Rewind on each of them; NOREWIND implies NOUNLOAD; VDI has no command that unloads a medium, so UNLOAD shows as the rewind alone.",
        "§1.3; §5.4",
        "[SPEC VDC_Rewind]; [SPEC Configuration]; INFERRED",
        I,
        None,
        &[],
    ),
    c(
        id::TAPE_SET_POSITION,
        "Under `tape-restore-positioning = address` a tape BACKUP sends VDC_GetPosition right after the filemark that follows the media header (the data set's block address, which MTF records: the header's blocks plus one address for the mark) and fails when the client reports another; the RESTORE, after reading the header, sends VDC_SetPosition to that address instead of VDC_SkipMarks, and the client must move there and report the resulting address (a client that reports another fails the statement; one that does not move reads the filemark). When SQL Server positions by address rather than by marks the reference does not say: the default `marks` keeps VDC_SkipMarks.",
        "§5.9; §5.10; §5.19",
        "[SPEC VDC_GetPosition]; [SPEC VDC_SetPosition]; INFERRED",
        I,
        Some("tape-restore-positioning"),
        &[],
    ),
    c(
        id::TAPE_SKIP_BLOCKS,
        "Under `tape-restore-positioning = blocks`, on a tape-like device that announces VDF_SkipBlocks, a RESTORE reads only the first blocks of the media header (the identifying part: 4 KiB, or one block when BLOCKSIZE is larger, which holds the longest encoded header), then sends VDC_SkipBlocks with size = the header's remaining blocks at the statement's BLOCKSIZE (forward, INFERRED meaning of size), which the client answers with ERROR_SUCCESS alone (the command has no bytes or position output) and leaves its head on the filemark after the header without passing it (a skip stops at a filemark); the server then asks VDC_GetPosition and requires the filemark's block address (the header's blocks: 128 at BLOCKSIZE 512), else the statement fails as bad media (a client that claims the skip without making it is caught there), and crosses the mark with VDC_SkipMarks 1. A header of one block leaves nothing to skip (positioned as under `marks`). Whether and when SQL Server skips blocks the reference does not say: INFERRED; the default `marks` sends no VDC_SkipBlocks.",
        "§5.7; §5.9; §5.19",
        "[SPEC VDC_SkipBlocks]; [SPEC VDC_GetPosition]; INFERRED",
        I,
        Some("tape-restore-positioning"),
        &[],
    ),
    c(
        id::TAPE_NEXT_VOLUME,
        "A tape-like device is removable (VDF_LikeTape includes VDF_Removable), so a family may span tapes: a BACKUP Write answered ERROR_END_OF_MEDIA keeps the bytes it reports, the server clears the IO-ERROR, sends VDC_Load for the next tape and writes the remainder and what follows on it from its first block (no new media header or positioning), the closing VDC_WriteMark on the last tape; a RESTORE read that meets the end of a tape's data (ERROR_NO_DATA_DETECTED with no filemark, before the family's end) is followed by VDC_Load and the reads go on; a VDC_Load answered with an error (no next tape) fails the statement. The reference names VDC_Load for media changes on tape, not the order around it: the order is the model's, the same as on a removable pipe.",
        "§5.1; §5.2; §5.8; §5.19",
        "[SPEC VDC_Write]; [SPEC VDC_Load]; [SPEC End of Media]; INFERRED",
        I,
        None,
        &[],
    ),
    // ---- Restore --------------------------------------------------------------
    c(
        id::RESTORE_READ_SIZES,
        "RESTORE may request reads of any multiple of BLOCKSIZE between BLOCKSIZE and MAXTRANSFERSIZE, and the sequence of sizes need not match the backup's writes; the client treats the data as an opaque byte stream.",
        "§1.3; §5.19",
        "[SPEC Active]",
        D,
        None,
        &[],
    ),
    c(
        id::RESTORE_EOF,
        "A Read completed with ERROR_HANDLE_EOF or ERROR_NO_DATA_DETECTED (handled identically) and the partial byte count ends the stream; whether the server's last read asks past the end is not specified.",
        "§5.1; §5.19",
        "[SPEC VDC_Read]; [SAMPLE]",
        I,
        Some("restore-overread"),
        &[11],
    ),
    c(
        id::RESTORE_TRUNCATED,
        "Restoring a stream shorter than the server expects fails the RESTORE: a conformant client completes the read with ERROR_HANDLE_EOF instead of waiting for more, and the harness bounds the run (times out) rather than hanging.",
        "§5.1",
        "[SPEC VDC_Read]; [SPEC End of Media]; INFERRED",
        I,
        None,
        &[11],
    ),
    c(
        id::RESTORE_BYTE_IDENTICAL,
        "The stream read back by RESTORE must be byte-identical to what BACKUP wrote.",
        "§1.1",
        "[SPEC Overview]; [SPEC Active]",
        D,
        None,
        &[],
    ),
    c(
        id::MEDIA_HEADER,
        "Media are self-describing: a BACKUP's first transfer on each device is that family's 64 KiB media header (backup set, database, family k of n, backup type, LSNs, sizes), and a RESTORE reads each device's header before any data and takes the backup to restore from the headers, not from the server's history. An empty device fails the RESTORE with Msg 3254, a header that is not one (or a family of another media set) with Msg 3241, a missing family with Msg 3132, a family given twice with Msg 3227, too many devices with Msg 3231, and a backup of the wrong type for the RESTORE with Msg 3135; families may be given in any device order.",
        "§1.1; §5.1",
        "[SPEC Overview]; [SPEC VDC_Read]; INFERRED (the simulator's media format, docs/MEDIA.md; SQL Server writes Microsoft Tape Format)",
        I,
        None,
        &[],
    ),
    c(
        id::RESTORE_EARLY_CLOSE,
        "Metadata restores (HEADERONLY, FILELISTONLY, VERIFYONLY passes) may read only a prefix and then close the device: the client accepts VD_E_CLOSE before EOF as a normal end and may create a new set on the same object for the real restore.",
        "§5.19; §4.6",
        "[SPEC Normal Termination]; [SAMPLE]; INFERRED",
        I,
        None,
        &[15],
    ),
    c(
        id::RESTORE_REPORT_ACTUAL_BYTES,
        "A Read completion reports the bytes actually transferred; reporting the full size regardless of what was read is a client violation.",
        "§2.2 CompleteCommand; §5.1",
        "[SPEC CompleteCommand]; [SPEC VDC_Read]",
        D,
        None,
        &[18],
    ),
    // ---- Striping -------------------------------------------------------------
    c(
        id::STRIPE_SHARED_BUFFERS,
        "BUFFERCOUNT is the total number of MAXTRANSFERSIZE buffers for the whole operation, shared by all devices (not per device); small metadata buffers are extra.",
        "§1.3",
        "[SPEC Configuration]; [BOL BACKUP]",
        D,
        None,
        &[],
    ),
    c(
        id::STRIPE_DEFAULT_BUFFER_COUNT,
        "Without BUFFERCOUNT in the statement the server chooses the number of buffers dynamically; the model's choice per device is a profile parameter.",
        "§1.3",
        "[SPEC Configuration]; [3P]; INFERRED",
        I,
        Some("default-buffer-count-per-device"),
        &[],
    ),
    c(
        id::STRIPE_DEVICE_COUNT_MISMATCH,
        "The number of VIRTUAL_DEVICE clauses must equal deviceCount (INFERRED); the effect of a mismatch is undocumented (probably a statement error).",
        "§1.3; §8 #14",
        "[SPEC Initialization]; INFERRED",
        I,
        Some("device-count-mismatch-fails"),
        &[8],
    ),
    c(
        id::STRIPE_DISTRIBUTION,
        "With several devices the data is distributed over the devices as for any striped media set; a stripe set keeps its number of devices, and a restore usually uses the same number.",
        "§1.3",
        "[SPEC Configuration]; [SPEC Initialization]; [BOL BACKUP]",
        D,
        None,
        &[8],
    ),
    // ---- Commands -------------------------------------------------------------
    c(
        id::COMMAND_NOT_SUPPORTED,
        "Every command must be completed: one the client cannot perform (outside its mode, or unknown such as VDC_GetError or VDC_FileInfoBegin/End) is completed with ERROR_NOT_SUPPORTED and the server carries on; ignoring it stalls the server.",
        "§5.0; §7 item 7",
        "[SPEC Command General Rules]; [SPEC Client Supported Commands]; [SAMPLE]",
        D,
        None,
        &[13],
    ),
    c(
        id::COMMAND_UNANSWERED,
        "A command the client never completes stalls the device: the watchdog aborts the set after 2 × serverTimeOut, or with serverTimeOut 0 the statement hangs and the harness must bound it.",
        "§5.0; §4.5; §7 item 7",
        "[SPEC Command General Rules]; [SPEC VDConfig]",
        D,
        None,
        &[13],
    ),
    c(
        id::COMMAND_SHORT_TRANSFER,
        "A Read or Write completed with ERROR_SUCCESS but bytesTransferred < size is a short transfer the reference does not define; the model either fails the statement or reissues the remainder, and the verdict flags it.",
        "§5.1; §5.2",
        "[SPEC VDC_Read]; [SPEC VDC_Write]; INFERRED",
        I,
        Some("short-transfer"),
        &[12],
    ),
    c(
        id::COMMAND_PIPE_ONLY,
        "A client is sent only the commands its declared mode requires (a pipe-like client: Read, Write, ClearError, Flush) plus those it negotiated (VDC_Complete with VDF_RequestComplete, VDC_PrepareToFreeze with VDF_SnapshotPrepare, VDC_Discard with VDF_Discard, snapshot commands WITH SNAPSHOT).",
        "§5.0; §5.11; §5.15; §5.17",
        "[SPEC Client Supported Commands]; [KB3188454]; INFERRED",
        I,
        None,
        &[],
    ),
    // ---- Configuration --------------------------------------------------------
    c(
        id::CONFIG_DEVICE_COUNT,
        "VDConfig.deviceCount is 1..64, one device per VIRTUAL_DEVICE clause.",
        "§1.2; §3.4",
        "[SPEC VDConfig]",
        D,
        None,
        &[],
    ),
    c(
        id::CONFIG_FEATURES,
        "Only pipe-like (0, optionally + Removable), tape-like (LikeTape) and disk-like (LikeDisk, optionally + Removable) modes are supported, each optionally + Discard; anything else is undefined in the reference and refused by the model; server-only bits must not be requested.",
        "§3.3",
        "[SPEC Feature Bits]",
        I,
        None,
        &[],
    ),
    c(
        id::CONFIG_ALIGNMENT,
        "VDConfig.alignment is the minimum data-zone alignment the client requires; the server's alignment is 0 (= blockSize) or a power of 2, at least blockSize and at most 64 KiB; prefixZoneSize bytes are reserved before each data buffer for the client.",
        "§3.4; §2.3",
        "[SPEC VDConfig]; [SPEC BeginConfiguration]",
        D,
        None,
        &[],
    ),
    c(
        id::CONFIG_BUFFER_AREA,
        "VDConfig.bufferAreaSize (server output) is INFERRED to be the total size of the shared buffer area (its definition was lost); memory is about BUFFERCOUNT × MAXTRANSFERSIZE in the SQL Server process.",
        "§3.4; §8 #9",
        "[SPEC VDConfig]; INFERRED",
        I,
        None,
        &[],
    ),
    // ---- Server ---------------------------------------------------------------
    c(
        id::SERVER_OPEN_MISSING_SET,
        "The server opens the set named by the first VIRTUAL_DEVICE clause; when no accessible set of that name exists, server Open returns VD_E_INVALID and the statement fails, while the client's GetConfiguration times out.",
        "§1.3; §2.3",
        "[SPEC Configuration]; [SPEC IServerVirtualDeviceSet2::Open]",
        D,
        None,
        &[6],
    ),
    c(
        id::SERVER_OUTCOME_MESSAGES,
        "The statement's outcome is reported in T-SQL messages: success prints the processed-pages lines and a 3014-style 'successfully processed' line; failure ends with 3013 'terminating abnormally' after the cause (e.g. operating system error 995).",
        "§1.4; §4.5; §7 item 9",
        "[SAMPLE]; [KB]; INFERRED",
        I,
        None,
        &[20],
    ),
    c(
        id::SERVER_SEND_COMMAND_REJECTED,
        "When SendCommand fails its callback is still invoked, with ERROR_NO_SYSTEM_RESOURCES (queue full), ERROR_IO_DEVICE (IO-ERROR), ERROR_INVALID_HANDLE (device not active) or ERROR_OPERATION_ABORTED (abort); VD_E_QUEUE_FULL and VD_E_IO_ERROR have no published numeric value.",
        "§2.3",
        "[SPEC SendCommand]",
        D,
        None,
        &[],
    ),
    c(
        id::SERVER_QUEUE_DEPTH,
        "The server keeps several commands in flight per device (maxIODepth, deprecated, is reported as 4, and a device queue can be full); how many is not specified.",
        "§3.4; §4.3",
        "[SPEC VDConfig]; [SPEC SendCommand]; INFERRED",
        I,
        Some("queue-depth-per-device"),
        &[],
    ),
    c(
        id::SERVER_BEGIN_CONFIGURATION_ORDER,
        "BeginConfiguration takes features, blockSize, alignment, maxTransferSize, timeout in the header's order (the doc page lists alignment before blockSize; the header wins).",
        "§2.3; §8 #6",
        "[HDR vdi.h]; [SPEC BeginConfiguration]",
        D,
        None,
        &[],
    ),
    // ---- Timeouts -------------------------------------------------------------
    c(
        id::TIMEOUT_MILLISECONDS,
        "GetConfiguration and GetCommand timeouts are milliseconds; the Linux sample's values commented as seconds (GetCommand 90) are flagged, and the harness assumes milliseconds.",
        "§6.4; §8 #11",
        "[SPEC GetCommand]; [LINUX]; [SAMPLE]; [3P issue #1135]",
        D,
        None,
        &[2, 19],
    ),
    // ---- The harness ----------------------------------------------------------
    c(
        id::WORLD_BOUNDED,
        "Every simulated run ends within its bounds: a run that reaches the scheduler's step bound, without finishing, hanging or spending its virtual-time budget, has something acting forever without progress (a livelock) and is a violation.",
        "§8 (the harness's bounds)",
        "[vdisim harness rule: every run is bounded]",
        I,
        None,
        &[],
    ),
    // ---- ABI ------------------------------------------------------------------
    c(
        id::ABI_COM_VTABLES,
        "The COM interfaces keep the header's vtable order: IUnknown in slots 0-2, IClientVirtualDeviceSet2 adds CreateEx (11) and OpenInSecondaryEx (12) after the IClientVirtualDeviceSet methods; CLSID_MSSQL_ClientVirtualDeviceSet equals IID_IClientVirtualDeviceSet.",
        "§3.7",
        "[HDR vdi.h]; [HDR vdiguid.h]",
        D,
        None,
        &[],
    ),
    c(
        id::ABI_LINUX_CLASSES,
        "The Linux library exports two plain C++ classes (ClientVirtualDeviceSet, ClientVirtualDevice) with non-virtual members returning int; VD_E_* codes are negative ints; there are no instance names (Create, OpenInSecondary only).",
        "§6.1; §6.2",
        "[LINUX]; [HDR vdi.h]",
        D,
        None,
        &[],
    ),
    c(
        id::ABI_LAYOUTS,
        "VDConfig is 11 consecutive 32-bit fields (44 bytes, 4-byte aligned); VDC_Command is commandCode@0, size@4, position@8, buffer@16 (24 bytes on x64 and Linux x86-64).",
        "§3.4; §3.6",
        "[HDR vdi.h]",
        D,
        None,
        &[],
    ),
];

static CELL_SUMMARIES: OnceLock<Vec<String>> = OnceLock::new();
static ALL: OnceLock<Vec<Clause>> = OnceLock::new();

fn cell_summaries() -> &'static [String] {
    CELL_SUMMARIES.get_or_init(|| {
        CLIENT_TABLE
            .iter()
            .map(|c| c.summary())
            .chain(SERVER_TABLE.iter().map(|c| c.summary()))
            .collect()
    })
}

/// Every clause the model implements: [`CATALOG`], then one clause per
/// client table cell (row major). The server table's cells are in
/// [`server_cells`]: the server half runs SQL Server's side as an engine and
/// does not expose the server interface method by method, so those cells
/// are reference data rather than clauses a conformance case can call.
pub fn all() -> &'static [Clause] {
    ALL.get_or_init(|| {
        let summaries = cell_summaries();
        let mut v = CATALOG.to_vec();
        for (cell, summary) in CLIENT_TABLE.iter().zip(summaries) {
            v.push(Clause {
                id: cell.clause.as_str(),
                summary: summary.as_str(),
                section: "§4.1",
                source: "[SPEC Client Transitions]",
                basis: cell.basis,
                profile: client_cell_profile(cell.method, cell.state),
                field_rows: &[],
            });
        }
        v
    })
}

static SERVER_CELLS: OnceLock<Vec<Clause>> = OnceLock::new();

/// One clause per server table cell (row major; §4.4, the second half
/// INFERRED).
pub fn server_cells() -> &'static [Clause] {
    SERVER_CELLS.get_or_init(|| {
        let summaries = cell_summaries();
        SERVER_TABLE
            .iter()
            .zip(&summaries[CLIENT_TABLE.len()..])
            .map(|(cell, summary)| Clause {
                id: cell.clause.as_str(),
                summary: summary.as_str(),
                section: "§4.4",
                source: "[SPEC Server Transitions]",
                basis: cell.basis,
                profile: None,
                field_rows: &[],
            })
            .collect()
    })
}

/// The clause with this id, table cells (client and server) included.
pub fn clause(id: &str) -> Option<&'static Clause> {
    all().iter().chain(server_cells()).find(|c| c.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::{Hresult, Win32};
    use crate::profile::Profile;
    use crate::tables::{client_cell, server_cell};
    use std::collections::BTreeSet;

    /// The ids the brief requires, at least.
    const REQUIRED: &[&str] = &[
        "close.not-open",
        "close.all-finished",
        "close.devices-open",
        "close.invalidates-devices",
        "close.reuse",
        "close.wait-for-close",
        "create.ok",
        "create.config-invalid",
        "create.already-exists",
        "create.illegal-name",
        "create.name-in-use",
        "create-ex.instance-name",
        "create-ex.null-instance",
        "create-ex.empty-instance",
        "create.access-denied",
        "create.legacy-env",
        "get-configuration.waits",
        "get-configuration.timeout",
        "get-configuration.abort",
        "get-configuration.repeat",
        "get-configuration.server-outputs",
        "get-configuration.features-returned",
        "open-device.ok",
        "open-device.invalid-name",
        "open-device.already-open",
        "open-device.all-open",
        "open-device.abort",
        "open-device.wrong-state",
        "open-device.null-on-failure",
        "open-device.first-is-set-name",
        "get-command.ok",
        "get-command.timeout",
        "get-command.poll",
        "get-command.infinite",
        "get-command.linux-negative",
        "get-command.close",
        "get-command.abort",
        "get-command.wrong-state",
        "get-command.after-device-closed",
        "get-command.several-outstanding",
        "complete-command.ok",
        "complete-command.invalid",
        "complete-command.abort",
        "complete-command.wrong-state",
        "complete-command.read-only-block",
        "complete-command.order",
        "complete-command.returns-buffer",
        "signal-abort.ok",
        "signal-abort.dne",
        "signal-abort.effects",
        "open-in-secondary.ok",
        "open-in-secondary.protocol",
        "open-in-secondary.abort",
        "buffer-handle.roundtrip",
        "buffer-handle.protocol",
        "buffer-handle.invalid",
        "abort.client-signal",
        "abort.server-signal",
        "abort.no-commands-after",
        "abort.client-death",
        "abort.server-death",
        "abort.only-close",
        "abort.statement-fails",
        "abort.secondary-death-undetected",
        "term.close-device",
        "term.normally-terminated",
        "term.outcome-decides",
        "term.backup-sequence",
        "io-error.enter",
        "io-error.reject-new",
        "io-error.clear-error-after-outstanding",
        "io-error.clear-error-success",
        "io-error.close-or-abort",
        "io-error.disk-full",
        "io-error.end-of-media",
        "io-error.one-device-fails",
        "watchdog.fires",
        "watchdog.disabled",
        "watchdog.reset-on-completion",
        "complete.negotiation",
        "complete.never-unrequested",
        "complete.veto",
        "flush.several",
        "flush.final-veto",
        "flush.restore-not-supported-misuse",
        "restore.read-sizes",
        "restore.eof",
        "restore.truncated",
        "restore.byte-identical",
        "media.header",
        "restore.early-close",
        "restore.report-actual-bytes",
        "stripe.shared-buffers",
        "stripe.device-count-mismatch",
        "stripe.distribution",
        "command.not-supported",
        "command.unanswered",
        "command.short-transfer",
        "command.pipe-only",
        "config.device-count",
        "config.features",
        "config.alignment",
        "config.buffer-area",
        "server.open-missing-set",
        "server.outcome-messages",
        "timeout.milliseconds",
    ];

    /// `^[a-z0-9-]+(\.[a-z0-9-]+)+$`
    fn id_ok(id: &str) -> bool {
        let parts: Vec<&str> = id.split('.').collect();
        parts.len() >= 2
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
    }

    #[test]
    fn clauses_id_syntax_checker_rejects_bad_ids() {
        for good in ["close.not-open", "table.server.close.dne", "a.b", "x1.y-2"] {
            assert!(id_ok(good), "{good}");
        }
        for bad in [
            "close",
            "Close.not-open",
            "close..x",
            ".close",
            "close.",
            "close.not_open",
            "close.not open",
        ] {
            assert!(!id_ok(bad), "{bad}");
        }
    }

    #[test]
    fn clauses_ids_unique_and_well_formed() {
        let mut seen = BTreeSet::new();
        for c in all().iter().chain(server_cells()) {
            assert!(id_ok(c.id), "bad id {:?}", c.id);
            assert!(seen.insert(c.id), "duplicate id {}", c.id);
        }
        assert_eq!(all().len(), CATALOG.len() + 42);
        assert_eq!(server_cells().len(), 98);
    }

    #[test]
    fn clauses_required_ids_present() {
        for id in REQUIRED {
            assert!(CATALOG.iter().any(|c| c.id == *id), "missing clause {id}");
        }
    }

    #[test]
    fn clauses_fields_are_filled() {
        for c in all() {
            assert!(!c.summary.trim().is_empty(), "{}", c.id);
            assert!(c.section.starts_with('§'), "{}: {}", c.id, c.section);
            assert!(c.source.starts_with('['), "{}: {}", c.id, c.source);
            if c.source.contains("INFERRED") {
                assert_eq!(c.basis, Basis::Inferred, "{}", c.id);
            }
            if c.summary.contains("(INFERRED") || c.summary.contains("INFERRED)") {
                assert_eq!(c.basis, Basis::Inferred, "{}", c.id);
            }
        }
    }

    #[test]
    fn clauses_profile_keys_exist() {
        let keys: Vec<&str> = Profile::describe().iter().map(|d| d.key).collect();
        for c in all() {
            if let Some(p) = c.profile {
                assert!(keys.contains(&p), "{}: unknown profile key {p}", c.id);
            }
        }
    }

    #[test]
    fn clauses_profile_inferred_params_make_inferred_clauses() {
        let docs = Profile::describe();
        for c in all() {
            let Some(p) = c.profile else { continue };
            let d = docs.iter().find(|d| d.key == p).unwrap();
            if !d.basis.starts_with("DOCUMENTED") || d.basis.contains(" vs ") {
                assert_eq!(
                    c.basis,
                    Basis::Inferred,
                    "{} (profile {p}: {})",
                    c.id,
                    d.basis
                );
            }
        }
    }

    #[test]
    fn clauses_field_rows_1_to_20_covered() {
        let mut covered = BTreeSet::new();
        for c in all() {
            for r in c.field_rows {
                assert!((1..=20).contains(r), "{}: row {r}", c.id);
                covered.insert(*r);
            }
        }
        let missing: Vec<u8> = (1..=20).filter(|r| !covered.contains(r)).collect();
        assert!(missing.is_empty(), "field rows not covered: {missing:?}");
        // Row 14 (Release after Close, double Close) in particular.
        let c14: Vec<_> = all()
            .iter()
            .filter(|c| c.field_rows.contains(&14))
            .map(|c| c.id)
            .collect();
        assert!(
            c14.contains(&"close.not-open") && c14.contains(&"close.devices-open"),
            "{c14:?}"
        );
    }

    #[test]
    fn clauses_table_cells_in_all() {
        for cell in &CLIENT_TABLE {
            let c =
                clause(cell.clause.as_str()).unwrap_or_else(|| panic!("{} missing", cell.clause));
            assert_eq!(c.section, "§4.1");
            assert_eq!(c.basis, cell.basis);
            assert_eq!(c.summary, cell.summary());
        }
        for cell in &SERVER_TABLE {
            let c =
                clause(cell.clause.as_str()).unwrap_or_else(|| panic!("{} missing", cell.clause));
            assert_eq!(c.section, "§4.4");
            assert_eq!(c.source, "[SPEC Server Transitions]");
            assert_eq!(c.basis, cell.basis);
        }
        // Catalog first, then client cells; server cells apart: stable order.
        assert_eq!(all()[0].id, CATALOG[0].id);
        assert_eq!(all()[CATALOG.len()].id, "table.create.dne");
        assert_eq!(server_cells()[0].id, "table.server.open.dne");
        assert_eq!(
            server_cells().last().unwrap().id,
            "table.server.close.abnormally-terminated"
        );
        assert!(std::ptr::eq(all(), all()));
    }

    #[test]
    fn clauses_table_summary_text() {
        use crate::states::{ClientState, ServerMethod, ServerState, TableMethod};
        let c = clause("table.get-command.active").unwrap();
        assert!(
            c.summary.starts_with("GetCommand in Active: NOERROR"),
            "{}",
            c.summary
        );
        assert!(
            c.summary.contains("VD_E_CLOSE → NormallyTerminated"),
            "{}",
            c.summary
        );
        let c = clause("table.close.dne").unwrap();
        assert!(
            c.summary.starts_with("Close in DNE: VD_E_PROTOCOL"),
            "{}",
            c.summary
        );
        assert_eq!(
            clause("table.close.active").unwrap().profile,
            Some("close-with-open-devices")
        );
        let s = clause("table.server.end-configuration.configurable").unwrap();
        assert!(
            s.summary.contains("NOERROR → Initializing"),
            "{}",
            s.summary
        );
        assert_eq!(
            s.basis,
            server_cell(ServerMethod::EndConfiguration, ServerState::Configurable).basis
        );
        assert_eq!(
            clause("table.signal-abort.abort").unwrap().basis,
            client_cell(TableMethod::SignalAbort, ClientState::Abort).basis
        );
    }

    #[test]
    fn clauses_close_summaries_name_their_codes() {
        let want = [
            ("close.not-open", "VD_E_PROTOCOL"),
            ("close.all-finished", "NOERROR"),
            ("close.devices-open", "VD_E_OPEN"),
            ("close.devices-open", "SignalAbort"),
            ("close.reuse", "CreateEx"),
            ("close.wait-for-close", "VD_E_CLOSE"),
            ("create.already-exists", "VD_E_PROTOCOL"),
            ("create.config-invalid", "VD_E_NOTSUPPORTED"),
            ("create-ex.instance-name", "VD_E_INSTANCE_NAME"),
            ("get-configuration.timeout", "VD_E_TIMEOUT"),
            ("open-device.all-open", "VD_E_OPEN"),
            ("complete-command.invalid", "VD_E_INVALID"),
            ("signal-abort.effects", "ERROR_OPERATION_ABORTED"),
            ("io-error.reject-new", "ERROR_IO_DEVICE"),
            ("restore.eof", "ERROR_HANDLE_EOF"),
            ("command.not-supported", "ERROR_NOT_SUPPORTED"),
        ];
        for (id, text) in want {
            let c = clause(id).unwrap_or_else(|| panic!("{id}"));
            assert!(c.summary.contains(text), "{id}: {}", c.summary);
        }
        let c = clause("close.devices-open").unwrap();
        assert_eq!(c.profile, Some("close-with-open-devices"));
        assert_eq!(c.basis, Basis::Inferred);
        assert_eq!(clause("close.not-open").unwrap().basis, Basis::Documented);
        assert!(clause("no.such-clause").is_none());
    }

    #[test]
    fn clauses_named_codes_exist() {
        // Every VD_E_* / ERROR_* token in a summary is a known code, except the
        // two the reference says have no published value.
        let unnumbered = ["VD_E_QUEUE_FULL", "VD_E_IO_ERROR"];
        for c in all() {
            for tok in c
                .summary
                .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            {
                if tok.ends_with('_') {
                    // A family such as "VD_E_*".
                    continue;
                }
                if tok.starts_with("VD_E_") {
                    assert!(
                        Hresult::from_name(tok).is_some() || unnumbered.contains(&tok),
                        "{}: {tok}",
                        c.id
                    );
                } else if tok.starts_with("ERROR_") {
                    assert!(Win32::from_name(tok).is_some(), "{}: {tok}", c.id);
                }
            }
        }
    }

    #[test]
    fn clauses_serialize_kebab_basis() {
        let v = serde_json::to_value(clause("close.devices-open").unwrap()).unwrap();
        assert_eq!(v["basis"], "inferred");
        assert_eq!(v["profile"], "close-with-open-devices");
        assert_eq!(v["field_rows"][0], 14);
    }
}
