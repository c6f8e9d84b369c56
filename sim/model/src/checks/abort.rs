//! Invariant: once the server has aborted the set (SignalAbort, the
//! watchdog, its death), no command reaches the client (clause
//! `abort.no-commands-after`).

use super::Violation;
use crate::msg::DevIx;
use vdi_spec::id;
use vdi_spec::{ClientState, CommandCode};

/// The violation of a command `code` fetched by device `dev` while the set
/// is in `state`, after the server aborted (`aborted`), if it is one.
pub fn command_after_abort(
    aborted: bool,
    state: ClientState,
    dev: DevIx,
    code: CommandCode,
) -> Option<Violation> {
    (aborted && state == ClientState::Abort).then(|| Violation {
        clause: id::ABORT_NO_COMMANDS_AFTER.into(),
        what: format!("dev{dev} received {} after abort", code.name()),
        at: None,
    })
}
