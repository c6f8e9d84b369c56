//! SQL Server-style errors: the message numbers, [`SqlError`], and the
//! syntax errors raised near a token.

use thiserror::Error;
use vdi_model::outcome::SqlMessage;

/// Msg 102: "Incorrect syntax near 'X'." (level 15).
pub const MSG_SYNTAX: u32 = 102;
/// Msg 103: an identifier longer than 128 characters (level 15).
pub const MSG_IDENT_TOO_LONG: u32 = 103;
/// Msg 105: "Unclosed quotation mark after the character string '...'." (level 15).
pub const MSG_UNCLOSED_QUOTE: u32 = 105;
/// Msg 113: "Missing end comment mark '*/'." (level 15).
pub const MSG_UNCLOSED_COMMENT: u32 = 113;
/// Msg 137: "Must declare the scalar variable "@x"." (level 15): variables
/// are not served.
pub const MSG_UNDECLARED_VARIABLE: u32 = 137;
/// Msg 155: "'X' is not a recognized BACKUP option." (level 15).
pub const MSG_UNKNOWN_OPTION: u32 = 155;
/// Msg 156: "Incorrect syntax near the keyword 'X'." (level 15): Msg 102
/// when the token is a reserved keyword ([`RESERVED_KEYWORDS`]).
pub const MSG_SYNTAX_KEYWORD: u32 = 156;
/// Msg 319: a statement that starts with `WITH` (level 15).
pub const MSG_WITH_START: u32 = 319;
/// Msg 1038: an empty delimited identifier, `[]` or `""` (level 15).
pub const MSG_EMPTY_IDENT: u32 = 1038;
/// Msg 3205: more than 64 backup devices (level 16).
pub const MSG_TOO_MANY_DEVICES: u32 = 3205;
/// Msg 8115: a WITH option number that does not fit an `int` (level 16).
pub const MSG_OVERFLOW: u32 = 8115;
/// Msg 3217 ([`messages::bad_option`], a model choice shared with the server
/// half): BLOCKSIZE, MAXTRANSFERSIZE or BUFFERCOUNT out of range (level 16).
///
/// [`messages::bad_option`]: vdi_model::server::messages::bad_option
pub const MSG_BAD_OPTION: u32 = 3217;
/// Model choice: a backup device other than VIRTUAL_DEVICE (`DISK`, `TAPE`,
/// `URL`, a logical device name). Level 16. SQL Server would run it; vdisim
/// serves only virtual devices.
pub const MSG_NOT_VIRTUAL_DEVICE: u32 = 50001;
/// Model choice: valid T-SQL that vdisim does not serve (`SELECT`, `BACKUP
/// CERTIFICATE`, `RESTORE LABELONLY`, `WITH SNAPSHOT`, ...). Level 16.
pub const MSG_NOT_SERVED: u32 = 50002;

/// A T-SQL error in a batch, shaped like the message SQL Server returns.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("Msg {number}, Level {level}, State {state}, Line {line}: {text}")]
pub struct SqlError {
    /// SQL Server message number (the `MSG_*` constants of this module).
    pub number: u32,
    /// Severity: 15 for syntax errors, 16 for the others.
    pub level: u8,
    /// SQL Server's state.
    pub state: u8,
    /// 1-based line within the batch where the offending token starts.
    pub line: u32,
    /// 1-based column (in characters) where the offending token starts.
    pub position: u32,
    /// The offending token as the message names it (a literal's or a
    /// delimited identifier's content, without quotes).
    pub near: String,
    /// The message text.
    pub text: String,
}

impl SqlError {
    /// The message as it travels in a statement's outcome.
    pub fn to_message(&self) -> SqlMessage {
        SqlMessage {
            number: self.number,
            level: self.level,
            state: self.state,
            text: self.text.clone(),
        }
    }
}
