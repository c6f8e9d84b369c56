//! Typed clause ids: one constant per clause of the catalog ([`crate::clauses`])
//! and per cell of the client and server transition tables, so code names a
//! clause by a constant the compiler checks, never by a string. A test
//! holds the constants and the catalog to each other: every constant names
//! a clause, every clause has a constant.
//!
//! Use: `use vdi_spec::id;` then `id::CLOSE_DEVICES_OPEN`.

use serde::Serialize;
use std::fmt;

/// The id of a clause: `area.rule` (`close.devices-open`), or a table cell
/// (`table.<method>.<state>`, `table.server.<method>.<state>`). Only the
/// constants of [`id`] (and [`ClauseId::parse`]) make one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClauseId(pub(crate) &'static str);

impl ClauseId {
    /// The id as text.
    pub const fn as_str(self) -> &'static str {
        self.0
    }

    /// The clause id `s` names, if it is one.
    pub fn parse(s: &str) -> Option<ClauseId> {
        id::ALL.iter().copied().find(|c| c.0 == s)
    }
}

impl fmt::Debug for ClauseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for ClauseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for ClauseId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl From<ClauseId> for &'static str {
    fn from(c: ClauseId) -> &'static str {
        c.0
    }
}

impl From<ClauseId> for String {
    fn from(c: ClauseId) -> String {
        c.0.to_string()
    }
}

impl PartialEq<str> for ClauseId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<String> for ClauseId {
    fn eq(&self, other: &String) -> bool {
        self.0 == other.as_str()
    }
}

impl PartialEq<&str> for ClauseId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

macro_rules! clause_ids {
    ($($name:ident = $id:literal;)*) => {
        $(
            #[doc = concat!("`", $id, "`")]
            pub const $name: ClauseId = ClauseId($id);
        )*
        /// Every clause id, in catalog order (hand-written clauses, then the
        /// client table's cells, then the server table's).
        pub const ALL: &[ClauseId] = &[$($name),*];
    };
}

/// One constant per clause id.
pub mod id {
    use super::ClauseId;

    clause_ids! {
        CLOSE_NOT_OPEN = "close.not-open";
        CLOSE_ALL_FINISHED = "close.all-finished";
        CLOSE_DEVICES_OPEN = "close.devices-open";
        CLOSE_INVALIDATES_DEVICES = "close.invalidates-devices";
        CLOSE_RELEASE_AFTER_CLOSE = "close.release-after-close";
        CLOSE_REUSE = "close.reuse";
        CLOSE_WAIT_FOR_CLOSE = "close.wait-for-close";
        CLOSE_BEFORE_SERVER_OPEN = "close.before-server-open";
        CLOSE_EXACTLY_ONCE = "close.exactly-once";
        CREATE_OK = "create.ok";
        CREATE_CONFIG_INVALID = "create.config-invalid";
        CREATE_ALREADY_EXISTS = "create.already-exists";
        CREATE_ILLEGAL_NAME = "create.illegal-name";
        CREATE_NAME_IN_USE = "create.name-in-use";
        CREATE_EX_INSTANCE_NAME = "create-ex.instance-name";
        CREATE_EX_NULL_INSTANCE = "create-ex.null-instance";
        CREATE_EX_NAMED_INSTANCE = "create-ex.named-instance";
        CREATE_EX_EMPTY_INSTANCE = "create-ex.empty-instance";
        CREATE_ACCESS_DENIED = "create.access-denied";
        CREATE_LEGACY_ENV = "create.legacy-env";
        CREATE_DACL = "create.dacl";
        GET_CONFIGURATION_WAITS = "get-configuration.waits";
        GET_CONFIGURATION_TIMEOUT = "get-configuration.timeout";
        GET_CONFIGURATION_ABORT = "get-configuration.abort";
        GET_CONFIGURATION_REPEAT = "get-configuration.repeat";
        GET_CONFIGURATION_SERVER_OUTPUTS = "get-configuration.server-outputs";
        GET_CONFIGURATION_FEATURES_RETURNED = "get-configuration.features-returned";
        OPEN_DEVICE_OK = "open-device.ok";
        OPEN_DEVICE_INVALID_NAME = "open-device.invalid-name";
        OPEN_DEVICE_ALREADY_OPEN = "open-device.already-open";
        OPEN_DEVICE_ALL_OPEN = "open-device.all-open";
        OPEN_DEVICE_ABORT = "open-device.abort";
        OPEN_DEVICE_WRONG_STATE = "open-device.wrong-state";
        OPEN_DEVICE_NULL_ON_FAILURE = "open-device.null-on-failure";
        OPEN_DEVICE_FIRST_IS_SET_NAME = "open-device.first-is-set-name";
        GET_COMMAND_OK = "get-command.ok";
        GET_COMMAND_TIMEOUT = "get-command.timeout";
        GET_COMMAND_POLL = "get-command.poll";
        GET_COMMAND_INFINITE = "get-command.infinite";
        GET_COMMAND_LINUX_NEGATIVE = "get-command.linux-negative";
        GET_COMMAND_CLOSE = "get-command.close";
        GET_COMMAND_ABORT = "get-command.abort";
        GET_COMMAND_WRONG_STATE = "get-command.wrong-state";
        GET_COMMAND_AFTER_DEVICE_CLOSED = "get-command.after-device-closed";
        GET_COMMAND_SEVERAL_OUTSTANDING = "get-command.several-outstanding";
        COMPLETE_COMMAND_OK = "complete-command.ok";
        COMPLETE_COMMAND_INVALID = "complete-command.invalid";
        COMPLETE_COMMAND_ABORT = "complete-command.abort";
        COMPLETE_COMMAND_WRONG_STATE = "complete-command.wrong-state";
        COMPLETE_COMMAND_READ_ONLY_BLOCK = "complete-command.read-only-block";
        COMPLETE_COMMAND_ORDER = "complete-command.order";
        COMPLETE_COMMAND_RETURNS_BUFFER = "complete-command.returns-buffer";
        SIGNAL_ABORT_OK = "signal-abort.ok";
        SIGNAL_ABORT_DNE = "signal-abort.dne";
        SIGNAL_ABORT_EFFECTS = "signal-abort.effects";
        OPEN_IN_SECONDARY_OK = "open-in-secondary.ok";
        OPEN_IN_SECONDARY_PROTOCOL = "open-in-secondary.protocol";
        OPEN_IN_SECONDARY_ABORT = "open-in-secondary.abort";
        BUFFER_HANDLE_ROUNDTRIP = "buffer-handle.roundtrip";
        BUFFER_HANDLE_PROTOCOL = "buffer-handle.protocol";
        BUFFER_HANDLE_INVALID = "buffer-handle.invalid";
        ABORT_CLIENT_SIGNAL = "abort.client-signal";
        ABORT_SERVER_SIGNAL = "abort.server-signal";
        ABORT_NO_COMMANDS_AFTER = "abort.no-commands-after";
        ABORT_CLIENT_DEATH = "abort.client-death";
        ABORT_SERVER_DEATH = "abort.server-death";
        ABORT_ATTENTION = "abort.attention";
        ABORT_DISCONNECT = "abort.disconnect";
        ABORT_DURING_SERVER_STALL = "abort.during-server-stall";
        ABORT_ONLY_CLOSE = "abort.only-close";
        ABORT_STATEMENT_FAILS = "abort.statement-fails";
        ABORT_SECONDARY_DEATH_UNDETECTED = "abort.secondary-death-undetected";
        TERM_CLOSE_DEVICE = "term.close-device";
        TERM_NORMALLY_TERMINATED = "term.normally-terminated";
        TERM_OUTCOME_DECIDES = "term.outcome-decides";
        TERM_BACKUP_SEQUENCE = "term.backup-sequence";
        TERM_EXITS = "term.exits";
        IO_ERROR_ENTER = "io-error.enter";
        IO_ERROR_REJECT_NEW = "io-error.reject-new";
        IO_ERROR_CLEAR_ERROR_AFTER_OUTSTANDING = "io-error.clear-error-after-outstanding";
        IO_ERROR_CLEAR_ERROR_SUCCESS = "io-error.clear-error-success";
        IO_ERROR_CLOSE_OR_ABORT = "io-error.close-or-abort";
        IO_ERROR_EOF = "io-error.eof";
        IO_ERROR_NOT_SUPPORTED = "io-error.not-supported";
        IO_ERROR_DISK_FULL = "io-error.disk-full";
        IO_ERROR_END_OF_MEDIA = "io-error.end-of-media";
        IO_ERROR_ONE_DEVICE_FAILS = "io-error.one-device-fails";
        WATCHDOG_FIRES = "watchdog.fires";
        WATCHDOG_DISABLED = "watchdog.disabled";
        WATCHDOG_RESET_ON_COMPLETION = "watchdog.reset-on-completion";
        COMPLETE_NEGOTIATION = "complete.negotiation";
        COMPLETE_NEVER_UNREQUESTED = "complete.never-unrequested";
        COMPLETE_VETO = "complete.veto";
        FLUSH_SEVERAL = "flush.several";
        FLUSH_FINAL_VETO = "flush.final-veto";
        FLUSH_RESTORE_NOT_SUPPORTED_MISUSE = "flush.restore-not-supported-misuse";
        FLUSH_DISK_SETS_EOF = "flush.disk-sets-eof";
        DISK_POSITIONED_IO = "disk.positioned-io";
        DISK_HEADER_ORDER = "disk.header-order";
        TAPE_SEQUENCE = "tape.sequence";
        TAPE_FILEMARKS = "tape.filemarks";
        TAPE_POSITION = "tape.position";
        TAPE_END_REWIND = "tape.end-rewind";
        TAPE_MEDIA_NAME = "tape.media-name";
        TAPE_SET_POSITION = "tape.set-position";
        TAPE_SKIP_BLOCKS = "tape.skip-blocks";
        TAPE_NEXT_VOLUME = "tape.next-volume";
        MEDIA_NEXT_VOLUME = "media.next-volume";
        SNAPSHOT_SEQUENCE = "snapshot.sequence";
        SNAPSHOT_ONE_DEVICE = "snapshot.one-device";
        SNAPSHOT_PREPARE_TO_FREEZE = "snapshot.prepare-to-freeze";
        SNAPSHOT_FREEZE_TIME = "snapshot.freeze-time";
        SNAPSHOT_ABORT = "snapshot.abort";
        SNAPSHOT_FREEZE_TIMEOUT = "snapshot.freeze-timeout";
        SNAPSHOT_MOUNT = "snapshot.mount";
        RESTORE_READ_SIZES = "restore.read-sizes";
        RESTORE_EOF = "restore.eof";
        RESTORE_TRUNCATED = "restore.truncated";
        RESTORE_BYTE_IDENTICAL = "restore.byte-identical";
        MEDIA_HEADER = "media.header";
        RESTORE_EARLY_CLOSE = "restore.early-close";
        RESTORE_REPORT_ACTUAL_BYTES = "restore.report-actual-bytes";
        STRIPE_SHARED_BUFFERS = "stripe.shared-buffers";
        STRIPE_DEFAULT_BUFFER_COUNT = "stripe.default-buffer-count";
        STRIPE_DEVICE_COUNT_MISMATCH = "stripe.device-count-mismatch";
        STRIPE_DISTRIBUTION = "stripe.distribution";
        COMMAND_NOT_SUPPORTED = "command.not-supported";
        COMMAND_UNANSWERED = "command.unanswered";
        COMMAND_SHORT_TRANSFER = "command.short-transfer";
        COMMAND_PIPE_ONLY = "command.pipe-only";
        CONFIG_DEVICE_COUNT = "config.device-count";
        CONFIG_FEATURES = "config.features";
        CONFIG_ALIGNMENT = "config.alignment";
        CONFIG_BUFFER_AREA = "config.buffer-area";
        SERVER_OPEN_MISSING_SET = "server.open-missing-set";
        SERVER_OUTCOME_MESSAGES = "server.outcome-messages";
        SERVER_SEND_COMMAND_REJECTED = "server.send-command-rejected";
        SERVER_QUEUE_DEPTH = "server.queue-depth";
        SERVER_BEGIN_CONFIGURATION_ORDER = "server.begin-configuration-order";
        TIMEOUT_MILLISECONDS = "timeout.milliseconds";
        ABI_COM_VTABLES = "abi.com-vtables";
        ABI_LINUX_CLASSES = "abi.linux-classes";
        ABI_LAYOUTS = "abi.layouts";
        WORLD_BOUNDED = "world.bounded";
        TABLE_CREATE_DNE = "table.create.dne";
        TABLE_CREATE_CONFIGURABLE = "table.create.configurable";
        TABLE_CREATE_INITIALIZING = "table.create.initializing";
        TABLE_CREATE_ACTIVE = "table.create.active";
        TABLE_CREATE_NORMALLY_TERMINATED = "table.create.normally-terminated";
        TABLE_CREATE_ABORT = "table.create.abort";
        TABLE_GET_CONFIGURATION_DNE = "table.get-configuration.dne";
        TABLE_GET_CONFIGURATION_CONFIGURABLE = "table.get-configuration.configurable";
        TABLE_GET_CONFIGURATION_INITIALIZING = "table.get-configuration.initializing";
        TABLE_GET_CONFIGURATION_ACTIVE = "table.get-configuration.active";
        TABLE_GET_CONFIGURATION_NORMALLY_TERMINATED = "table.get-configuration.normally-terminated";
        TABLE_GET_CONFIGURATION_ABORT = "table.get-configuration.abort";
        TABLE_OPEN_DEVICE_DNE = "table.open-device.dne";
        TABLE_OPEN_DEVICE_CONFIGURABLE = "table.open-device.configurable";
        TABLE_OPEN_DEVICE_INITIALIZING = "table.open-device.initializing";
        TABLE_OPEN_DEVICE_ACTIVE = "table.open-device.active";
        TABLE_OPEN_DEVICE_NORMALLY_TERMINATED = "table.open-device.normally-terminated";
        TABLE_OPEN_DEVICE_ABORT = "table.open-device.abort";
        TABLE_GET_COMMAND_DNE = "table.get-command.dne";
        TABLE_GET_COMMAND_CONFIGURABLE = "table.get-command.configurable";
        TABLE_GET_COMMAND_INITIALIZING = "table.get-command.initializing";
        TABLE_GET_COMMAND_ACTIVE = "table.get-command.active";
        TABLE_GET_COMMAND_NORMALLY_TERMINATED = "table.get-command.normally-terminated";
        TABLE_GET_COMMAND_ABORT = "table.get-command.abort";
        TABLE_COMPLETE_COMMAND_DNE = "table.complete-command.dne";
        TABLE_COMPLETE_COMMAND_CONFIGURABLE = "table.complete-command.configurable";
        TABLE_COMPLETE_COMMAND_INITIALIZING = "table.complete-command.initializing";
        TABLE_COMPLETE_COMMAND_ACTIVE = "table.complete-command.active";
        TABLE_COMPLETE_COMMAND_NORMALLY_TERMINATED = "table.complete-command.normally-terminated";
        TABLE_COMPLETE_COMMAND_ABORT = "table.complete-command.abort";
        TABLE_SIGNAL_ABORT_DNE = "table.signal-abort.dne";
        TABLE_SIGNAL_ABORT_CONFIGURABLE = "table.signal-abort.configurable";
        TABLE_SIGNAL_ABORT_INITIALIZING = "table.signal-abort.initializing";
        TABLE_SIGNAL_ABORT_ACTIVE = "table.signal-abort.active";
        TABLE_SIGNAL_ABORT_NORMALLY_TERMINATED = "table.signal-abort.normally-terminated";
        TABLE_SIGNAL_ABORT_ABORT = "table.signal-abort.abort";
        TABLE_CLOSE_DNE = "table.close.dne";
        TABLE_CLOSE_CONFIGURABLE = "table.close.configurable";
        TABLE_CLOSE_INITIALIZING = "table.close.initializing";
        TABLE_CLOSE_ACTIVE = "table.close.active";
        TABLE_CLOSE_NORMALLY_TERMINATED = "table.close.normally-terminated";
        TABLE_CLOSE_ABORT = "table.close.abort";
        TABLE_SERVER_OPEN_DNE = "table.server.open.dne";
        TABLE_SERVER_OPEN_CONNECTED = "table.server.open.connected";
        TABLE_SERVER_OPEN_CONFIGURABLE = "table.server.open.configurable";
        TABLE_SERVER_OPEN_INITIALIZING = "table.server.open.initializing";
        TABLE_SERVER_OPEN_ACTIVE = "table.server.open.active";
        TABLE_SERVER_OPEN_NORMALLY_TERMINATED = "table.server.open.normally-terminated";
        TABLE_SERVER_OPEN_ABNORMALLY_TERMINATED = "table.server.open.abnormally-terminated";
        TABLE_SERVER_GET_CONFIGURATION_DNE = "table.server.get-configuration.dne";
        TABLE_SERVER_GET_CONFIGURATION_CONNECTED = "table.server.get-configuration.connected";
        TABLE_SERVER_GET_CONFIGURATION_CONFIGURABLE = "table.server.get-configuration.configurable";
        TABLE_SERVER_GET_CONFIGURATION_INITIALIZING = "table.server.get-configuration.initializing";
        TABLE_SERVER_GET_CONFIGURATION_ACTIVE = "table.server.get-configuration.active";
        TABLE_SERVER_GET_CONFIGURATION_NORMALLY_TERMINATED = "table.server.get-configuration.normally-terminated";
        TABLE_SERVER_GET_CONFIGURATION_ABNORMALLY_TERMINATED = "table.server.get-configuration.abnormally-terminated";
        TABLE_SERVER_BEGIN_CONFIGURATION_DNE = "table.server.begin-configuration.dne";
        TABLE_SERVER_BEGIN_CONFIGURATION_CONNECTED = "table.server.begin-configuration.connected";
        TABLE_SERVER_BEGIN_CONFIGURATION_CONFIGURABLE = "table.server.begin-configuration.configurable";
        TABLE_SERVER_BEGIN_CONFIGURATION_INITIALIZING = "table.server.begin-configuration.initializing";
        TABLE_SERVER_BEGIN_CONFIGURATION_ACTIVE = "table.server.begin-configuration.active";
        TABLE_SERVER_BEGIN_CONFIGURATION_NORMALLY_TERMINATED = "table.server.begin-configuration.normally-terminated";
        TABLE_SERVER_BEGIN_CONFIGURATION_ABNORMALLY_TERMINATED = "table.server.begin-configuration.abnormally-terminated";
        TABLE_SERVER_REQUEST_BUFFERS_DNE = "table.server.request-buffers.dne";
        TABLE_SERVER_REQUEST_BUFFERS_CONNECTED = "table.server.request-buffers.connected";
        TABLE_SERVER_REQUEST_BUFFERS_CONFIGURABLE = "table.server.request-buffers.configurable";
        TABLE_SERVER_REQUEST_BUFFERS_INITIALIZING = "table.server.request-buffers.initializing";
        TABLE_SERVER_REQUEST_BUFFERS_ACTIVE = "table.server.request-buffers.active";
        TABLE_SERVER_REQUEST_BUFFERS_NORMALLY_TERMINATED = "table.server.request-buffers.normally-terminated";
        TABLE_SERVER_REQUEST_BUFFERS_ABNORMALLY_TERMINATED = "table.server.request-buffers.abnormally-terminated";
        TABLE_SERVER_QUERY_AVAILABLE_BUFFERS_DNE = "table.server.query-available-buffers.dne";
        TABLE_SERVER_QUERY_AVAILABLE_BUFFERS_CONNECTED = "table.server.query-available-buffers.connected";
        TABLE_SERVER_QUERY_AVAILABLE_BUFFERS_CONFIGURABLE = "table.server.query-available-buffers.configurable";
        TABLE_SERVER_QUERY_AVAILABLE_BUFFERS_INITIALIZING = "table.server.query-available-buffers.initializing";
        TABLE_SERVER_QUERY_AVAILABLE_BUFFERS_ACTIVE = "table.server.query-available-buffers.active";
        TABLE_SERVER_QUERY_AVAILABLE_BUFFERS_NORMALLY_TERMINATED = "table.server.query-available-buffers.normally-terminated";
        TABLE_SERVER_QUERY_AVAILABLE_BUFFERS_ABNORMALLY_TERMINATED = "table.server.query-available-buffers.abnormally-terminated";
        TABLE_SERVER_END_CONFIGURATION_DNE = "table.server.end-configuration.dne";
        TABLE_SERVER_END_CONFIGURATION_CONNECTED = "table.server.end-configuration.connected";
        TABLE_SERVER_END_CONFIGURATION_CONFIGURABLE = "table.server.end-configuration.configurable";
        TABLE_SERVER_END_CONFIGURATION_INITIALIZING = "table.server.end-configuration.initializing";
        TABLE_SERVER_END_CONFIGURATION_ACTIVE = "table.server.end-configuration.active";
        TABLE_SERVER_END_CONFIGURATION_NORMALLY_TERMINATED = "table.server.end-configuration.normally-terminated";
        TABLE_SERVER_END_CONFIGURATION_ABNORMALLY_TERMINATED = "table.server.end-configuration.abnormally-terminated";
        TABLE_SERVER_OPEN_DEVICE_DNE = "table.server.open-device.dne";
        TABLE_SERVER_OPEN_DEVICE_CONNECTED = "table.server.open-device.connected";
        TABLE_SERVER_OPEN_DEVICE_CONFIGURABLE = "table.server.open-device.configurable";
        TABLE_SERVER_OPEN_DEVICE_INITIALIZING = "table.server.open-device.initializing";
        TABLE_SERVER_OPEN_DEVICE_ACTIVE = "table.server.open-device.active";
        TABLE_SERVER_OPEN_DEVICE_NORMALLY_TERMINATED = "table.server.open-device.normally-terminated";
        TABLE_SERVER_OPEN_DEVICE_ABNORMALLY_TERMINATED = "table.server.open-device.abnormally-terminated";
        TABLE_SERVER_EXECUTE_COMPLETION_AGENT_DNE = "table.server.execute-completion-agent.dne";
        TABLE_SERVER_EXECUTE_COMPLETION_AGENT_CONNECTED = "table.server.execute-completion-agent.connected";
        TABLE_SERVER_EXECUTE_COMPLETION_AGENT_CONFIGURABLE = "table.server.execute-completion-agent.configurable";
        TABLE_SERVER_EXECUTE_COMPLETION_AGENT_INITIALIZING = "table.server.execute-completion-agent.initializing";
        TABLE_SERVER_EXECUTE_COMPLETION_AGENT_ACTIVE = "table.server.execute-completion-agent.active";
        TABLE_SERVER_EXECUTE_COMPLETION_AGENT_NORMALLY_TERMINATED = "table.server.execute-completion-agent.normally-terminated";
        TABLE_SERVER_EXECUTE_COMPLETION_AGENT_ABNORMALLY_TERMINATED = "table.server.execute-completion-agent.abnormally-terminated";
        TABLE_SERVER_ALLOCATE_BUFFER_DNE = "table.server.allocate-buffer.dne";
        TABLE_SERVER_ALLOCATE_BUFFER_CONNECTED = "table.server.allocate-buffer.connected";
        TABLE_SERVER_ALLOCATE_BUFFER_CONFIGURABLE = "table.server.allocate-buffer.configurable";
        TABLE_SERVER_ALLOCATE_BUFFER_INITIALIZING = "table.server.allocate-buffer.initializing";
        TABLE_SERVER_ALLOCATE_BUFFER_ACTIVE = "table.server.allocate-buffer.active";
        TABLE_SERVER_ALLOCATE_BUFFER_NORMALLY_TERMINATED = "table.server.allocate-buffer.normally-terminated";
        TABLE_SERVER_ALLOCATE_BUFFER_ABNORMALLY_TERMINATED = "table.server.allocate-buffer.abnormally-terminated";
        TABLE_SERVER_FREE_BUFFER_DNE = "table.server.free-buffer.dne";
        TABLE_SERVER_FREE_BUFFER_CONNECTED = "table.server.free-buffer.connected";
        TABLE_SERVER_FREE_BUFFER_CONFIGURABLE = "table.server.free-buffer.configurable";
        TABLE_SERVER_FREE_BUFFER_INITIALIZING = "table.server.free-buffer.initializing";
        TABLE_SERVER_FREE_BUFFER_ACTIVE = "table.server.free-buffer.active";
        TABLE_SERVER_FREE_BUFFER_NORMALLY_TERMINATED = "table.server.free-buffer.normally-terminated";
        TABLE_SERVER_FREE_BUFFER_ABNORMALLY_TERMINATED = "table.server.free-buffer.abnormally-terminated";
        TABLE_SERVER_SEND_COMMAND_DNE = "table.server.send-command.dne";
        TABLE_SERVER_SEND_COMMAND_CONNECTED = "table.server.send-command.connected";
        TABLE_SERVER_SEND_COMMAND_CONFIGURABLE = "table.server.send-command.configurable";
        TABLE_SERVER_SEND_COMMAND_INITIALIZING = "table.server.send-command.initializing";
        TABLE_SERVER_SEND_COMMAND_ACTIVE = "table.server.send-command.active";
        TABLE_SERVER_SEND_COMMAND_NORMALLY_TERMINATED = "table.server.send-command.normally-terminated";
        TABLE_SERVER_SEND_COMMAND_ABNORMALLY_TERMINATED = "table.server.send-command.abnormally-terminated";
        TABLE_SERVER_CLOSE_DEVICE_DNE = "table.server.close-device.dne";
        TABLE_SERVER_CLOSE_DEVICE_CONNECTED = "table.server.close-device.connected";
        TABLE_SERVER_CLOSE_DEVICE_CONFIGURABLE = "table.server.close-device.configurable";
        TABLE_SERVER_CLOSE_DEVICE_INITIALIZING = "table.server.close-device.initializing";
        TABLE_SERVER_CLOSE_DEVICE_ACTIVE = "table.server.close-device.active";
        TABLE_SERVER_CLOSE_DEVICE_NORMALLY_TERMINATED = "table.server.close-device.normally-terminated";
        TABLE_SERVER_CLOSE_DEVICE_ABNORMALLY_TERMINATED = "table.server.close-device.abnormally-terminated";
        TABLE_SERVER_SIGNAL_ABORT_DNE = "table.server.signal-abort.dne";
        TABLE_SERVER_SIGNAL_ABORT_CONNECTED = "table.server.signal-abort.connected";
        TABLE_SERVER_SIGNAL_ABORT_CONFIGURABLE = "table.server.signal-abort.configurable";
        TABLE_SERVER_SIGNAL_ABORT_INITIALIZING = "table.server.signal-abort.initializing";
        TABLE_SERVER_SIGNAL_ABORT_ACTIVE = "table.server.signal-abort.active";
        TABLE_SERVER_SIGNAL_ABORT_NORMALLY_TERMINATED = "table.server.signal-abort.normally-terminated";
        TABLE_SERVER_SIGNAL_ABORT_ABNORMALLY_TERMINATED = "table.server.signal-abort.abnormally-terminated";
        TABLE_SERVER_CLOSE_DNE = "table.server.close.dne";
        TABLE_SERVER_CLOSE_CONNECTED = "table.server.close.connected";
        TABLE_SERVER_CLOSE_CONFIGURABLE = "table.server.close.configurable";
        TABLE_SERVER_CLOSE_INITIALIZING = "table.server.close.initializing";
        TABLE_SERVER_CLOSE_ACTIVE = "table.server.close.active";
        TABLE_SERVER_CLOSE_NORMALLY_TERMINATED = "table.server.close.normally-terminated";
        TABLE_SERVER_CLOSE_ABNORMALLY_TERMINATED = "table.server.close.abnormally-terminated";
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_constant_names_a_clause_and_every_clause_has_one() {
        let consts: BTreeSet<&str> = id::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(consts.len(), id::ALL.len(), "a constant is listed twice");
        let catalog: BTreeSet<&str> = crate::clauses::all()
            .iter()
            .chain(crate::clauses::server_cells())
            .map(|c| c.id)
            .collect();
        let missing: Vec<_> = catalog.difference(&consts).collect();
        let extra: Vec<_> = consts.difference(&catalog).collect();
        assert!(
            missing.is_empty(),
            "clauses without a constant: {missing:?}"
        );
        assert!(extra.is_empty(), "constants naming no clause: {extra:?}");
    }

    #[test]
    fn parse_finds_only_clauses() {
        assert_eq!(
            ClauseId::parse("close.devices-open"),
            Some(id::CLOSE_DEVICES_OPEN)
        );
        assert_eq!(
            ClauseId::parse("table.close.active"),
            Some(id::TABLE_CLOSE_ACTIVE)
        );
        assert_eq!(ClauseId::parse("close.nonsense"), None);
        assert_eq!(id::CLOSE_DEVICES_OPEN.to_string(), "close.devices-open");
    }
}
