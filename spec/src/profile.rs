//! Profiles: every choice the reference leaves open (vdi-spec.md §4.2, §8) is
//! a named parameter here, with a documented default. A model behaviour that
//! depends on one names it in its trace event and its clause.
//!
//! Profiles load from TOML (`[profile]` tables in scenario files) with unknown
//! keys rejected; omitted keys take the defaults below.

use crate::codes::Hresult;
use serde::{Deserialize, Serialize};

/// OpenDevice error precedence when several errors apply (§4.2 item 1, §8 #2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpenDevicePrecedence {
    /// Once every device is open, any OpenDevice returns VD_E_OPEN (the
    /// OpenDevice page: clients may loop until they see VD_E_OPEN).
    AllOpenFirst,
    /// Reopening one device returns VD_E_PROTOCOL even when all are open.
    ThisDeviceFirst,
}

/// GetCommand on a device the server already closed, while others are
/// active (§4.2 item 3, §8 #4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AfterDeviceClosed {
    /// VD_E_CLOSE again.
    Close,
    /// VD_E_PROTOCOL.
    Protocol,
}

/// Close with devices not yet VD_E_CLOSE'd (§4.2 item 4, §8 #3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CloseWithOpenDevices {
    /// VD_E_OPEN + internal SignalAbort + release (the Close method page).
    VdEOpen,
    /// NOERROR → DNE (the transition matrix), still with the internal abort.
    Noerror,
}

/// Completion order of several outstanding commands on one device (§4.3, §8 #10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompletionOrder {
    /// Any outstanding command may be completed (each has its own callback).
    Any,
    /// Only the oldest outstanding command; others get VD_E_INVALID.
    InOrder,
}

/// What the server does with ERROR_SUCCESS and bytesTransferred < size on a
/// Read or Write (field notes Part 2 row 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShortTransfer {
    /// Treat as an I/O error: the statement fails (and the verdict flags the
    /// client).
    Fail,
    /// Reissue the remainder, as documented for ERROR_END_OF_MEDIA.
    Reissue,
}

/// How the server ends a statement after a fatal device error (§4.5 last
/// row, §4.7).
///
/// The default is [`ErrorTermination::DrainThenClose`], the documented usual
/// path: the Abnormal Termination page says the server "will usually
/// terminate the command by waiting for outstanding commands to complete,
/// and then closing the virtual device(s)", and vdi-spec.md §4.5 (last row
/// of the coupling table) says the same ("server usually finishes the
/// statement by draining I/O and closing devices rather than SignalAbort").
/// The Command Error Handling page lets the server CloseDevice or
/// SignalAbort instead of ClearError; the other choices model those.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorTermination {
    /// The default (DOCUMENTED, Abnormal Termination page; vdi-spec.md
    /// §4.5): wait for the outstanding commands to complete, then
    /// CloseDevice on every device. No VDC_ClearError, no SignalAbort: every
    /// device loop ends with a clean VD_E_CLOSE while the statement fails
    /// with its messages, so only the statement's outcome tells failure
    /// from success (clause `term.outcome-decides`).
    DrainThenClose,
    /// Wait for the outstanding commands, deliver VDC_ClearError, then
    /// SignalAbort the set (other devices see VD_E_ABORT).
    ClearErrorThenAbort,
    /// SignalAbort at once.
    Abort,
    /// Deliver VDC_ClearError, then CloseDevice on every device; the
    /// statement still fails (field notes Part 2 row 20).
    ClearErrorThenClose,
}

/// What the server does when the connection running a BACKUP or RESTORE
/// ends without a TDS attention (clause `abort.disconnect`). The reference
/// does not say: SQL Server may notice a dead client connection only when
/// it next writes to it, which for a BACKUP is at the statement's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disconnect {
    /// The statement runs to its end; its result is recorded (a backup that
    /// completes is in msdb history) but reaches no one.
    RunToEnd,
    /// The statement is aborted as by an attention.
    Abort,
}

/// In which order the server writes a family on a disk-like
/// (VDF_RandomAccess) device (clause `disk.header-order`). The reference
/// says only "sequential positioned Read/Write" (vdi-spec.md §5.19).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskHeaderOrder {
    /// In sequence from position 0: the media header, then the data (the
    /// reference's sequential order; what a pipe receives too).
    First,
    /// The data from just after the header first; once every data Write is
    /// acknowledged, a seek back: the media header at position 0, then the
    /// final Flush.
    Last,
}

/// How a RESTORE on a tape-like device moves from the media header to the
/// data set (clause `tape.set-position`). The reference names the commands
/// (GetPosition/SetPosition/SkipMarks, vdi-spec.md §5.19), not when SQL
/// Server sends which.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TapeRestorePositioning {
    /// VDC_SkipMarks 1 past the filemark after the header (clause
    /// `tape.sequence`).
    Marks,
    /// By block address: the BACKUP asks VDC_GetPosition for the data set's
    /// address after the header's filemark, and the RESTORE sends
    /// VDC_SetPosition to that address after reading the header.
    Address,
    /// By blocks (clause `tape.skip-blocks`): the RESTORE reads only the
    /// header's first blocks (the identifying part), spaces over the rest of
    /// the header with VDC_SkipBlocks, checks the address with
    /// VDC_GetPosition and crosses the header's filemark with one
    /// VDC_SkipMarks. A device that does not announce VDF_SkipBlocks is
    /// positioned as under `marks`.
    Blocks,
}

/// Every open choice of the model. See each field for its clause and default.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct Profile {
    /// Profile name, shown in reports. Default `"default"`.
    pub name: String,
    /// `open-device.precedence` — default `all-open-first`. INFERRED (§4.2.1).
    pub open_device_precedence: OpenDevicePrecedence,
    /// `get-command.after-device-closed` — default `close`. INFERRED (§4.2.3).
    pub get_command_after_device_closed: AfterDeviceClosed,
    /// `close.devices-open` result — default `vd-e-open` (method page). §8 #3.
    pub close_with_open_devices: CloseWithOpenDevices,
    /// `complete-command.order` — default `any`. INFERRED (§4.3).
    pub completion_order: CompletionOrder,
    /// `server.short-transfer` — default `fail`. INFERRED (field row 12).
    pub short_transfer: ShortTransfer,
    /// `server.eof-enters-io-error`: whether an expected ERROR_HANDLE_EOF on
    /// the final restore read puts the device into IO-ERROR (then
    /// VDC_ClearError follows) — default `false`. INFERRED (§4.7 vs §5.1).
    pub eof_enters_io_error: bool,
    /// `device.not-supported-enters-io-error`: whether completing a command
    /// with ERROR_NOT_SUPPORTED puts the device into IO-ERROR (queued
    /// commands auto-completed, VDC_ClearError needed) — default `false`: the
    /// command is simply not performed. INFERRED (§4.7 says any non-success
    /// code; §5.0 makes NOT_SUPPORTED the normal answer to unknown commands).
    pub not_supported_enters_io_error: bool,
    /// `server.error-termination` — default `drain-then-close`. DOCUMENTED
    /// (Abnormal Termination page; vdi-spec.md §4.5).
    pub error_termination: ErrorTermination,
    /// `server.supports-complete`: the server returns VDF_CompleteEnabled when
    /// asked (SQL 2016 CU4 and later) — default `true`. DOCUMENTED (KB3188454).
    pub server_supports_complete: bool,
    /// `server.watchdog-factor`: the watchdog fires after this many
    /// serverTimeOut intervals with nothing completing — default 2. DOCUMENTED.
    pub watchdog_factor: u32,
    /// `server.queue-depth`: commands in flight per device — default 4
    /// (the deprecated maxIODepth). INFERRED.
    pub queue_depth_per_device: u32,
    /// `server.default-buffer-count`: BUFFERCOUNT per device when the
    /// statement gives none — default 4. INFERRED (server chooses dynamically).
    pub default_buffer_count_per_device: u32,
    /// `create.illegal-name` code — default VD_E_INVALID. INFERRED (field row 17).
    pub create_illegal_name_code: Hresult,
    /// `create.name-in-use` code — default VD_E_BUSY. INFERRED.
    pub create_name_in_use_code: Hresult,
    /// `create-ex.empty-instance`: whether `""` names the default instance
    /// (`true`) or is refused with VD_E_INSTANCE_NAME (`false`) — default
    /// `false`. INFERRED (field row 16).
    pub empty_instance_is_default: bool,
    /// Named instances CreateEx accepts besides NULL (the default instance) —
    /// default `["MSSQLSERVER"]`. INFERRED.
    pub instances: Vec<String>,
    /// `server.device-count-mismatch`: the statement fails when the number of
    /// VIRTUAL_DEVICE clauses differs from deviceCount — default `true`. §8 #14.
    pub device_count_mismatch_fails: bool,
    /// `device.use-after-close` code for a device interface used after Close
    /// — default VD_E_PROTOCOL. INFERRED (the reference says undefined).
    pub use_after_close_code: Hresult,
    /// `server.restore-overread`: the final restore read asks for more than
    /// remains, so a conformant client answers ERROR_HANDLE_EOF with a short
    /// count — default `false`. INFERRED (§5.19).
    pub restore_overread: bool,
    /// `abort.disconnect`: a statement whose connection ends without an
    /// attention — default `run-to-end`. INFERRED (SQL Server notices a dead
    /// connection when it next writes to it).
    pub disconnect_without_attention: Disconnect,
    /// `disk.header-order`: where the media header goes on a disk-like
    /// device — default `first` (sequential). INFERRED (§5.19).
    pub disk_header_order: DiskHeaderOrder,
    /// `snapshot.freeze-timeout`: how long a snapshot backup may hold the
    /// database frozen before the server aborts it, in ms — default 0
    /// (no limit: the reference names none). INFERRED (§5.13).
    pub snapshot_freeze_timeout_ms: u64,
    /// `tape.set-position`: how a tape RESTORE reaches the data set after
    /// the media header — default `marks` (VDC_SkipMarks); `address`
    /// (VDC_SetPosition) and `blocks` (VDC_SkipBlocks over the rest of the
    /// header, clause `tape.skip-blocks`) are the alternatives. INFERRED
    /// (§5.7, §5.19).
    pub tape_restore_positioning: TapeRestorePositioning,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            name: "default".to_string(),
            open_device_precedence: OpenDevicePrecedence::AllOpenFirst,
            get_command_after_device_closed: AfterDeviceClosed::Close,
            close_with_open_devices: CloseWithOpenDevices::VdEOpen,
            completion_order: CompletionOrder::Any,
            short_transfer: ShortTransfer::Fail,
            eof_enters_io_error: false,
            not_supported_enters_io_error: false,
            error_termination: ErrorTermination::DrainThenClose,
            server_supports_complete: true,
            watchdog_factor: 2,
            queue_depth_per_device: 4,
            default_buffer_count_per_device: 4,
            create_illegal_name_code: Hresult::VD_E_INVALID,
            create_name_in_use_code: Hresult::VD_E_BUSY,
            empty_instance_is_default: false,
            instances: vec!["MSSQLSERVER".to_string()],
            device_count_mismatch_fails: true,
            use_after_close_code: Hresult::VD_E_PROTOCOL,
            restore_overread: false,
            disconnect_without_attention: Disconnect::RunToEnd,
            disk_header_order: DiskHeaderOrder::First,
            snapshot_freeze_timeout_ms: 0,
            tape_restore_positioning: TapeRestorePositioning::Marks,
        }
    }
}

/// One profile parameter described for documentation and reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParamDoc {
    pub key: &'static str,
    pub default: String,
    pub basis: &'static str,
    pub doc: &'static str,
}

fn json<T: Serialize>(v: &T) -> String {
    // Plain enums, integers, booleans, codes and string lists always serialize.
    serde_json::to_string(v).unwrap_or_default()
}

/// A profile parameter: its key, how to read its value from a profile,
/// the basis of its default and what it decides.
struct Param {
    key: &'static str,
    value: fn(&Profile) -> String,
    basis: &'static str,
    doc: &'static str,
}

/// Every profile parameter, in the order [`Profile::describe`] lists them.
const PARAMS: &[Param] = &[
    Param {
        key: "open-device-precedence",
        value: |d| json(&d.open_device_precedence),
        basis: "INFERRED §4.2.1, §8 #2",
        doc: "OpenDevice when every device is open: VD_E_OPEN (all-open-first) or VD_E_PROTOCOL for the reopened device (this-device-first)",
    },
    Param {
        key: "get-command-after-device-closed",
        value: |d| json(&d.get_command_after_device_closed),
        basis: "INFERRED §4.2.3, §8 #4",
        doc: "GetCommand on a device already closed while others are active: VD_E_CLOSE or VD_E_PROTOCOL",
    },
    Param {
        key: "close-with-open-devices",
        value: |d| json(&d.close_with_open_devices),
        basis: "DOCUMENTED (Close page) vs matrix, §8 #3",
        doc: "Close with devices open returns VD_E_OPEN (method page) or NOERROR (matrix); both abort and release",
    },
    Param {
        key: "completion-order",
        value: |d| json(&d.completion_order),
        basis: "INFERRED §4.3, §8 #10",
        doc: "which outstanding commands CompleteCommand accepts: any, or only the oldest (in-order)",
    },
    Param {
        key: "short-transfer",
        value: |d| json(&d.short_transfer),
        basis: "INFERRED field row 12",
        doc: "ERROR_SUCCESS with fewer bytes than asked: fail the statement, or reissue the remainder",
    },
    Param {
        key: "eof-enters-io-error",
        value: |d| json(&d.eof_enters_io_error),
        basis: "INFERRED §4.7 vs §5.1",
        doc: "an expected ERROR_HANDLE_EOF on the last restore read puts the device in IO-ERROR",
    },
    Param {
        key: "not-supported-enters-io-error",
        value: |d| json(&d.not_supported_enters_io_error),
        basis: "INFERRED §4.7 vs §5.0",
        doc: "completing a command with ERROR_NOT_SUPPORTED puts the device in IO-ERROR",
    },
    Param {
        key: "error-termination",
        value: |d| json(&d.error_termination),
        basis: "DOCUMENTED Abnormal Termination page, §4.5; §4.7",
        doc: "how the server ends a statement after a fatal device error: drain-then-close (wait for outstanding commands, then CloseDevice on every device; the documented usual path), clear-error-then-abort, abort, or clear-error-then-close",
    },
    Param {
        key: "server-supports-complete",
        value: |d| json(&d.server_supports_complete),
        basis: "DOCUMENTED KB3188454",
        doc: "the server grants VDF_RequestComplete with VDF_CompleteEnabled and sends VDC_Complete",
    },
    Param {
        key: "watchdog-factor",
        value: |d| json(&d.watchdog_factor),
        basis: "DOCUMENTED §4.5",
        doc: "the watchdog aborts after factor × serverTimeOut with requests pending and none completing",
    },
    Param {
        key: "queue-depth-per-device",
        value: |d| json(&d.queue_depth_per_device),
        basis: "INFERRED §3.4 maxIODepth",
        doc: "commands the server keeps in flight on one device",
    },
    Param {
        key: "default-buffer-count-per-device",
        value: |d| json(&d.default_buffer_count_per_device),
        basis: "INFERRED §1.3",
        doc: "BUFFERCOUNT per device when the statement names none",
    },
    Param {
        key: "create-illegal-name-code",
        value: |d| json(&d.create_illegal_name_code),
        basis: "INFERRED field row 17",
        doc: "code Create returns for an empty set name or one with a backslash",
    },
    Param {
        key: "create-name-in-use-code",
        value: |d| json(&d.create_name_in_use_code),
        basis: "INFERRED",
        doc: "code Create returns when another live set has the same name",
    },
    Param {
        key: "empty-instance-is-default",
        value: |d| json(&d.empty_instance_is_default),
        basis: "INFERRED field row 16",
        doc: "CreateEx with \"\" as instance name means the default instance",
    },
    Param {
        key: "instances",
        value: |d| json(&d.instances),
        basis: "INFERRED",
        doc: "named instances CreateEx accepts besides NULL",
    },
    Param {
        key: "device-count-mismatch-fails",
        value: |d| json(&d.device_count_mismatch_fails),
        basis: "INFERRED §8 #14",
        doc: "the statement fails when its VIRTUAL_DEVICE count differs from deviceCount",
    },
    Param {
        key: "use-after-close-code",
        value: |d| json(&d.use_after_close_code),
        basis: "INFERRED (undefined in the reference)",
        doc: "code for a device interface used after Close",
    },
    Param {
        key: "restore-overread",
        value: |d| json(&d.restore_overread),
        basis: "INFERRED §5.19",
        doc: "the final restore read asks past the end of the stream",
    },
    Param {
        key: "disconnect-without-attention",
        value: |d| json(&d.disconnect_without_attention),
        basis: "INFERRED (SQL Server notices a dead connection when it next writes)",
        doc: "a BACKUP/RESTORE whose connection ends without a cancel: run-to-end or abort",
    },
    Param {
        key: "disk-header-order",
        value: |d| json(&d.disk_header_order),
        basis: "INFERRED §5.19",
        doc: "on a disk-like device: write the media header first (sequential, the reference's order) or last (data first, then a seek back to position 0)",
    },
    Param {
        key: "snapshot-freeze-timeout-ms",
        value: |d| json(&d.snapshot_freeze_timeout_ms),
        basis: "INFERRED §5.13 (the reference names no limit)",
        doc: "a snapshot backup holding the database frozen longer than this is aborted by the server (0: no limit)",
    },
    Param {
        key: "tape-restore-positioning",
        value: |d| json(&d.tape_restore_positioning),
        basis: "INFERRED §5.19",
        doc: "on a tape-like device, how a RESTORE reaches the data set after the media header: marks (VDC_SkipMarks 1), address (the BACKUP's VDC_GetPosition after the header's filemark, the RESTORE's VDC_SetPosition to it) or blocks (the RESTORE reads the header's first blocks only, VDC_SkipBlocks over the rest, VDC_GetPosition checked, VDC_SkipMarks 1; only on devices announcing VDF_SkipBlocks)",
    },
];

impl Profile {
    /// The parameters, their defaults and what they decide, in one place.
    pub fn describe() -> Vec<ParamDoc> {
        let d = Profile::default();
        PARAMS
            .iter()
            .map(|p| ParamDoc {
                key: p.key,
                default: (p.value)(&d),
                basis: p.basis,
                doc: p.doc,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_defaults_roundtrip_and_reject_unknown_keys() {
        let d = Profile::default();
        let s = serde_json::to_string(&d).unwrap();
        let back: Profile = serde_json::from_str(&s).unwrap();
        assert_eq!(back, d);
        let e = serde_json::from_str::<Profile>(r#"{"no-such-knob": 1}"#).unwrap_err();
        assert!(e.to_string().contains("no-such-knob"), "{e}");
        let partial: Profile = serde_json::from_str(r#"{"completion-order": "in-order"}"#).unwrap();
        assert_eq!(partial.completion_order, CompletionOrder::InOrder);
        assert_eq!(partial.watchdog_factor, 2);
    }

    #[test]
    fn profile_describe_lists_every_field() {
        let docs = Profile::describe();
        let v = serde_json::to_value(Profile::default()).unwrap();
        let keys: Vec<_> = v
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "name")
            .cloned()
            .collect();
        assert_eq!(docs.len(), keys.len());
        for k in keys {
            let d = docs
                .iter()
                .find(|d| d.key == k)
                .unwrap_or_else(|| panic!("{k} undocumented"));
            assert_eq!(d.default, serde_json::to_string(&v[&k]).unwrap(), "{k}");
        }
    }
}
