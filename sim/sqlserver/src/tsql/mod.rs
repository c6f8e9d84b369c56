//! The T-SQL a backup program sends, parsed into [`Statement`]s: what a
//! process playing SQL Server (`vdisim serve`) needs to understand of a
//! batch.
//!
//! Served statements:
//!
//! ```text
//! BACKUP  DATABASE|LOG <db> TO   VIRTUAL_DEVICE = '<name>' [, ...] [WITH opt [, ...]]
//! RESTORE DATABASE|LOG <db> FROM VIRTUAL_DEVICE = '<name>' [, ...] [WITH opt [, ...]]
//! RESTORE HEADERONLY|FILELISTONLY|VERIFYONLY FROM VIRTUAL_DEVICE = ... [WITH ...]
//! USE <db>
//! CREATE DATABASE <db>
//! DROP DATABASE [IF EXISTS] <db>
//! ALTER DATABASE <db> SET RECOVERY FULL|SIMPLE|BULK_LOGGED
//! RESTORE DATABASE <db> WITH RECOVERY            -- no FROM: bring it online
//! KILL <session id>                               -- a number or an integer variable
//! DECLARE @v <string or integer type> [= literal] [, ...]
//! SET @v = literal                                -- other SETs are ignored
//! ```
//!
//! Variables hold literals and stand for a database name, a device name or
//! an option's value; the parser resolves them as it reads (see `ddl`).
//!
//! A batch holds any number of these, separated by whitespace or `;`; an
//! empty batch (or one holding only comments) is fine. Keywords are
//! case-insensitive; `<db>` is a regular identifier, a `[bracketed]` one
//! (`]]` escapes `]`) or a `"quoted"` one (`""` escapes `"`); device names are
//! `'...'` or `N'...'` literals (`''` escapes `'`). Comments are `-- ...` to the
//! end of the line and `/* ... */`, nested as in T-SQL.
//!
//! `WITH BLOCKSIZE`, `MAXTRANSFERSIZE` and `BUFFERCOUNT` are honoured (the last
//! one given wins) and checked with [`TransferOptions::validate`];
//! `RECOVERY`, `NORECOVERY`, `STANDBY`, `REPLACE`, `COPY_ONLY`,
//! `DIFFERENTIAL`, `CHECKSUM`, `STATS`, `FILE`, `FORMAT`, `INIT`,
//! `MEDIANAME`, `REWIND`/`NOREWIND`, `UNLOAD`/`NOUNLOAD` (they act on
//! tape-like devices) and `SNAPSHOT`/`METADATA_ONLY` (a snapshot backup or
//! restore) are read into [`With`] for the server; every other option in [`KNOWN_OPTIONS`] is
//! accepted and ignored; an option in
//! [`UNMODELLED_OPTIONS`] is refused ([`MSG_NOT_SERVED`]); any other word is
//! SQL Server's Msg 155.
//!
//! Errors follow SQL Server's shape ([`SqlError`]): number, level, state, the
//! 1-based line within the batch and — an addition SQL Server does not
//! report — the 1-based column and the token the error is near. The batch is
//! parsed whole before anything runs, so any error means no statement of the
//! batch runs. That is SQL Server's rule for syntax errors; for an
//! out-of-range BLOCKSIZE (a run-time error in SQL Server, which would still
//! run the statements before it) it is a simplification.
//!
//! Scripts for `sqlcmd -i` are cut into batches on `GO` lines by
//! [`split_batches`].
//!
//! The parser's parts: `lexer` cuts a batch into tokens, `parser` reads
//! the statements and their device lists, `options` their WITH clauses,
//! `keywords` holds the word lists, `error` the message numbers and
//! [`SqlError`].
//!
//! [`TransferOptions::validate`]: vdi_spec::TransferOptions::validate

mod ddl;
mod error;
mod keywords;
mod lexer;
mod options;
mod parser;

pub use ddl::{MSG_VARIABLE_DECLARED, VARIABLE_CHARS_MAX, VARIABLES_MAX};
pub use error::{
    MSG_BAD_OPTION, MSG_EMPTY_IDENT, MSG_IDENT_TOO_LONG, MSG_NOT_SERVED, MSG_NOT_VIRTUAL_DEVICE,
    MSG_OVERFLOW, MSG_SYNTAX, MSG_SYNTAX_KEYWORD, MSG_TOO_MANY_DEVICES, MSG_UNCLOSED_COMMENT,
    MSG_UNCLOSED_QUOTE, MSG_UNDECLARED_VARIABLE, MSG_UNKNOWN_OPTION, MSG_WITH_START, SqlError,
};
pub use keywords::{RESERVED_KEYWORDS, UNSERVED_STATEMENTS};
pub use lexer::IDENT_LEN_MAX;
pub use options::{KNOWN_OPTIONS, Recovery, UNMODELLED_OPTIONS, With};

use parser::Parser;
use vdi_model::statement::Statement;
// The tests name these through `use super::*`.
#[cfg(test)]
use vdi_model::statement::{ServerPlan, StatementKind};
#[cfg(test)]
use vdi_spec::TransferOptions;

/// One statement of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedStatement {
    /// BACKUP or RESTORE, and its WITH options beyond the transfer options.
    /// `database` is empty for HEADERONLY, FILELISTONLY and VERIFYONLY;
    /// `plan` is [`ServerPlan::default`] but for what a BACKUP's media
    /// headers say of its options (type, COPY_ONLY, CHECKSUM); the server
    /// fills the rest.
    ///
    /// [`ServerPlan::default`]: vdi_model::statement::ServerPlan::default
    Run(Statement, With),
    /// `USE <db>`: the database name, unquoted.
    Use(String),
    /// A statement on a database itself (no virtual device).
    Database(DatabaseStatement),
    /// `KILL <session id>`: ends that session, aborting its running
    /// BACKUP or RESTORE (the server decides what the id names).
    Kill(u32),
}

/// A database's recovery model (`ALTER DATABASE … SET RECOVERY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryModel {
    Full,
    Simple,
    BulkLogged,
}

impl RecoveryModel {
    /// As `sys.databases.recovery_model_desc` shows it.
    pub fn desc(self) -> &'static str {
        match self {
            RecoveryModel::Full => "FULL",
            RecoveryModel::Simple => "SIMPLE",
            RecoveryModel::BulkLogged => "BULK_LOGGED",
        }
    }
}

/// `CREATE DATABASE`, `DROP DATABASE`, `ALTER DATABASE … SET RECOVERY`,
/// `RESTORE DATABASE … WITH RECOVERY` (no FROM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseStatement {
    Create(String),
    Drop {
        database: String,
        if_exists: bool,
    },
    SetRecovery {
        database: String,
        model: RecoveryModel,
    },
    Recover(String),
}

/// A statement with where it starts in its batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocatedStatement {
    /// 1-based line within the batch of the statement's first token: the
    /// line SQL Server reports in the statement's run-time messages.
    pub line: u32,
    /// 1-based column of the statement's first token.
    pub position: u32,
    /// The statement.
    pub statement: ParsedStatement,
}

/// Parses a batch into its statements; see the module doc for the grammar.
pub fn parse_batch(text: &str) -> Result<Vec<ParsedStatement>, SqlError> {
    Ok(parse_batch_located(text)?
        .into_iter()
        .map(|s| s.statement)
        .collect())
}

/// [`parse_batch`], keeping where each statement starts.
pub fn parse_batch_located(text: &str) -> Result<Vec<LocatedStatement>, SqlError> {
    let mut p = Parser::new(lexer::lex(text)?);
    let mut out = Vec::new();
    while let Some(statement) = p.statement()? {
        out.push(statement);
    }
    Ok(out)
}

/// A batch of a script: the text between `GO` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The batch's text, lines as in the script (the `GO` line excluded).
    pub text: String,
    /// 1-based line of the script where the batch's text starts.
    pub first_line: u32,
    /// How many times to run it: the count of `GO n`, else 1.
    pub repeat: u32,
}

/// Cuts a script (`sqlcmd -i` file) into batches on lines that hold only
/// `GO` (any case, optionally followed by a count, surrounding whitespace
/// allowed). The cut is line-based, as sqlcmd's is: a `GO` line inside a
/// comment or string still ends the batch. Batches holding only whitespace
/// are dropped.
pub fn split_batches(script: &str) -> Vec<Batch> {
    split_batches_with(script, "GO")
}

/// [`split_batches`] with another batch terminator (`sqlcmd -c`).
pub fn split_batches_with(script: &str, terminator: &str) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut first_line = 1u32;
    let mut line_no = 0u32;
    let mut push = |text: &mut String, first_line: u32, repeat: u32| {
        if !text.trim().is_empty() {
            out.push(Batch {
                text: std::mem::take(text),
                first_line,
                repeat,
            });
        }
        text.clear();
    };
    for line in script.split_inclusive('\n') {
        line_no += 1;
        if let Some(repeat) = terminator_count(line, terminator) {
            push(&mut text, first_line, repeat);
            first_line = line_no + 1;
        } else {
            text.push_str(line);
        }
    }
    push(&mut text, first_line, 1);
    out
}

/// Whether `line` is a batch terminator line (`GO`, `go 3`, ...): the
/// repeat count if so (at least 1).
pub fn terminator_count(line: &str, terminator: &str) -> Option<u32> {
    let t = line.trim();
    let head = t.get(..terminator.len())?;
    if !head.eq_ignore_ascii_case(terminator) {
        return None;
    }
    let rest = &t[terminator.len()..];
    if rest.is_empty() {
        return Some(1);
    }
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    rest.trim().parse::<u32>().ok().map(|n| n.max(1))
}

#[cfg(test)]
mod tests;
