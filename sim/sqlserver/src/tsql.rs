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
//! ```
//!
//! A batch holds any number of these, separated by whitespace or `;`; an
//! empty batch (or one holding only comments) is fine. Keywords are
//! case-insensitive; `<db>` is a regular identifier, a `[bracketed]` one
//! (`]]` escapes `]`) or a `"quoted"` one (`""` escapes `"`); device names are
//! `'...'` or `N'...'` literals (`''` escapes `'`). Comments are `-- ...` to the
//! end of the line and `/* ... */`, nested as in T-SQL.
//!
//! `WITH BLOCKSIZE`, `MAXTRANSFERSIZE` and `BUFFERCOUNT` are honoured (the last
//! one given wins) and checked with [`TransferOptions::validate`]; every
//! other option in [`KNOWN_OPTIONS`] is accepted and ignored; an option in
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

use thiserror::Error;
use vdi_model::outcome::SqlMessage;
use vdi_model::server::messages;
use vdi_model::statement::{ServerPlan, Statement, StatementKind};
use vdi_spec::TransferOptions;
use vdi_spec::layout::limits;
use vdi_spec::options::OptionError;

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
pub const MSG_BAD_OPTION: u32 = 3217;
/// Model choice: a backup device other than VIRTUAL_DEVICE (`DISK`, `TAPE`,
/// `URL`, a logical device name). Level 16. SQL Server would run it; vdisim
/// serves only virtual devices.
pub const MSG_NOT_VIRTUAL_DEVICE: u32 = 50001;
/// Model choice: valid T-SQL that vdisim does not serve (`SELECT`, `BACKUP
/// CERTIFICATE`, `RESTORE LABELONLY`, `WITH SNAPSHOT`, ...). Level 16.
pub const MSG_NOT_SERVED: u32 = 50002;

/// WITH options accepted and ignored, on BACKUP and RESTORE alike (one list
/// for both: vdisim does not check which statement an option belongs to).
/// BLOCKSIZE, MAXTRANSFERSIZE and BUFFERCOUNT are honoured, not ignored.
pub const KNOWN_OPTIONS: &[&str] = &[
    "BLOCKSIZE",
    "BUFFERCOUNT",
    "MAXTRANSFERSIZE",
    "CHECKSUM",
    "NO_CHECKSUM",
    "COMPRESSION",
    "NO_COMPRESSION",
    "CONTINUE_AFTER_ERROR",
    "STOP_ON_ERROR",
    "COPY_ONLY",
    "CREDENTIAL",
    "DBO_ONLY",
    "DESCRIPTION",
    "DIFFERENTIAL",
    "ENABLE_BROKER",
    "ENCRYPTION",
    "ERROR_BROKER_CONVERSATIONS",
    "EXPIREDATE",
    "FILE",
    "FILESTREAM",
    "FORMAT",
    "NOFORMAT",
    "INIT",
    "NOINIT",
    "KEEP_CDC",
    "KEEP_REPLICATION",
    "LOADHISTORY",
    "MEDIADESCRIPTION",
    "MEDIANAME",
    "MEDIAPASSWORD",
    "MOVE",
    "NAME",
    "NEW_BROKER",
    "NORECOVERY",
    "NO_TRUNCATE",
    "PARTIAL",
    "PASSWORD",
    "RECOVERY",
    "REPLACE",
    "RESTART",
    "RESTRICTED_USER",
    "RETAINDAYS",
    "REWIND",
    "NOREWIND",
    "SKIP",
    "NOSKIP",
    "STANDBY",
    "STATS",
    "STOPAT",
    "STOPATMARK",
    "STOPBEFOREMARK",
    "UNLOAD",
    "NOUNLOAD",
];

/// WITH options SQL Server accepts but vdisim refuses ([`MSG_NOT_SERVED`]):
/// they change what the VDI stream is, and the model does not know how.
pub const UNMODELLED_OPTIONS: &[&str] = &["SNAPSHOT", "METADATA_ONLY"];

/// Words that start T-SQL statements vdisim does not serve
/// ([`MSG_NOT_SERVED`] rather than a syntax error).
pub const UNSERVED_STATEMENTS: &[&str] = &[
    "ALTER",
    "BEGIN",
    "BULK",
    "CHECKPOINT",
    "CLOSE",
    "COMMIT",
    "CREATE",
    "DBCC",
    "DEALLOCATE",
    "DECLARE",
    "DELETE",
    "DENY",
    "DROP",
    "DUMP",
    "EXEC",
    "EXECUTE",
    "FETCH",
    "GOTO",
    "GRANT",
    "IF",
    "INSERT",
    "KILL",
    "LOAD",
    "MERGE",
    "OPEN",
    "PRINT",
    "RAISERROR",
    "READTEXT",
    "RECONFIGURE",
    "RETURN",
    "REVERT",
    "REVOKE",
    "ROLLBACK",
    "SAVE",
    "SELECT",
    "SET",
    "SETUSER",
    "SHUTDOWN",
    "THROW",
    "TRUNCATE",
    "UPDATE",
    "UPDATETEXT",
    "WAITFOR",
    "WHILE",
    "WRITETEXT",
];

/// T-SQL reserved keywords: a syntax error near one of these is Msg 156,
/// and one cannot be a regular-identifier database name.
pub const RESERVED_KEYWORDS: &[&str] = &[
    "ADD",
    "ALL",
    "ALTER",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "AUTHORIZATION",
    "BACKUP",
    "BEGIN",
    "BETWEEN",
    "BREAK",
    "BROWSE",
    "BULK",
    "BY",
    "CASCADE",
    "CASE",
    "CHECK",
    "CHECKPOINT",
    "CLOSE",
    "CLUSTERED",
    "COALESCE",
    "COLLATE",
    "COLUMN",
    "COMMIT",
    "COMPUTE",
    "CONSTRAINT",
    "CONTAINS",
    "CONTAINSTABLE",
    "CONTINUE",
    "CONVERT",
    "CREATE",
    "CROSS",
    "CURRENT",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURRENT_USER",
    "CURSOR",
    "DATABASE",
    "DBCC",
    "DEALLOCATE",
    "DECLARE",
    "DEFAULT",
    "DELETE",
    "DENY",
    "DESC",
    "DISK",
    "DISTINCT",
    "DISTRIBUTED",
    "DOUBLE",
    "DROP",
    "DUMP",
    "ELSE",
    "END",
    "ERRLVL",
    "ESCAPE",
    "EXCEPT",
    "EXEC",
    "EXECUTE",
    "EXISTS",
    "EXIT",
    "EXTERNAL",
    "FETCH",
    "FILE",
    "FILLFACTOR",
    "FOR",
    "FOREIGN",
    "FREETEXT",
    "FREETEXTTABLE",
    "FROM",
    "FULL",
    "FUNCTION",
    "GOTO",
    "GRANT",
    "GROUP",
    "HAVING",
    "HOLDLOCK",
    "IDENTITY",
    "IDENTITY_INSERT",
    "IDENTITYCOL",
    "IF",
    "IN",
    "INDEX",
    "INNER",
    "INSERT",
    "INTERSECT",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "KILL",
    "LEFT",
    "LIKE",
    "LINENO",
    "LOAD",
    "MERGE",
    "NATIONAL",
    "NOCHECK",
    "NONCLUSTERED",
    "NOT",
    "NULL",
    "NULLIF",
    "OF",
    "OFF",
    "OFFSETS",
    "ON",
    "OPEN",
    "OPENDATASOURCE",
    "OPENQUERY",
    "OPENROWSET",
    "OPENXML",
    "OPTION",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PERCENT",
    "PIVOT",
    "PLAN",
    "PRECISION",
    "PRIMARY",
    "PRINT",
    "PROC",
    "PROCEDURE",
    "PUBLIC",
    "RAISERROR",
    "READ",
    "READTEXT",
    "RECONFIGURE",
    "REFERENCES",
    "REPLICATION",
    "RESTORE",
    "RESTRICT",
    "RETURN",
    "REVERT",
    "REVOKE",
    "RIGHT",
    "ROLLBACK",
    "ROWCOUNT",
    "ROWGUIDCOL",
    "RULE",
    "SAVE",
    "SCHEMA",
    "SECURITYAUDIT",
    "SELECT",
    "SEMANTICKEYPHRASETABLE",
    "SEMANTICSIMILARITYDETAILSTABLE",
    "SEMANTICSIMILARITYTABLE",
    "SESSION_USER",
    "SET",
    "SETUSER",
    "SHUTDOWN",
    "SOME",
    "STATISTICS",
    "SYSTEM_USER",
    "TABLE",
    "TABLESAMPLE",
    "TEXTSIZE",
    "THEN",
    "TO",
    "TOP",
    "TRAN",
    "TRANSACTION",
    "TRIGGER",
    "TRUNCATE",
    "TRY_CONVERT",
    "TSEQUAL",
    "UNION",
    "UNIQUE",
    "UNPIVOT",
    "UPDATE",
    "UPDATETEXT",
    "USE",
    "USER",
    "VALUES",
    "VARYING",
    "VIEW",
    "WAITFOR",
    "WHEN",
    "WHERE",
    "WHILE",
    "WITH",
    "WITHIN",
    "WRITETEXT",
];

/// Longest identifier SQL Server accepts (`sysname`), in characters.
pub const IDENT_LEN_MAX: usize = 128;

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

/// One statement of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedStatement {
    /// BACKUP or RESTORE. `database` is empty for HEADERONLY, FILELISTONLY
    /// and VERIFYONLY; `plan` is [`ServerPlan::default`] (the server fills it).
    Run(Statement),
    /// `USE <db>`: the database name, unquoted.
    Use(String),
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
    let toks = lex(text)?;
    let mut p = Parser { toks, pos: 0 };
    let mut out = Vec::new();
    loop {
        while p.peek_punct(';') {
            p.pos += 1;
        }
        let Some(t) = p.peek().cloned() else { break };
        let statement = match &t.tok {
            Tok::Word(w) if w.eq_ignore_ascii_case("BACKUP") => p.backup()?,
            Tok::Word(w) if w.eq_ignore_ascii_case("RESTORE") => p.restore()?,
            Tok::Word(w) if w.eq_ignore_ascii_case("USE") => {
                p.pos += 1;
                ParsedStatement::Use(p.ident()?)
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("WITH") => {
                return Err(t.error(
                    MSG_WITH_START,
                    15,
                    1,
                    format!(
                        "Incorrect syntax near the keyword '{}'. If this statement is a common table expression, an xmlnamespaces clause or a change tracking context clause, the previous statement must be terminated with a semicolon.",
                        t.near()
                    ),
                ));
            }
            Tok::Word(w) if is_in(w, UNSERVED_STATEMENTS) => {
                return Err(not_served(
                    &t,
                    format!(
                        "vdisim serves only BACKUP, RESTORE and USE statements; '{}' is not served.",
                        w.to_ascii_uppercase()
                    ),
                ));
            }
            _ => return Err(syntax(&t)),
        };
        out.push(LocatedStatement {
            line: t.line,
            position: t.col,
            statement,
        });
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

fn is_in(word: &str, list: &[&str]) -> bool {
    list.iter().any(|k| k.eq_ignore_ascii_case(word))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// A regular identifier or keyword, as written.
    Word(String),
    /// A delimited identifier, unescaped.
    Quoted(String),
    /// A string literal, unescaped.
    Str(String),
    /// Digits, possibly with one `.`.
    Number(String),
    /// `@name`.
    Variable(String),
    Punct(char),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: u32,
    col: u32,
}

impl Token {
    fn near(&self) -> String {
        match &self.tok {
            Tok::Word(s) | Tok::Quoted(s) | Tok::Str(s) | Tok::Number(s) | Tok::Variable(s) => {
                s.clone()
            }
            Tok::Punct(c) => c.to_string(),
        }
    }
    fn is_word(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
    fn error(&self, number: u32, level: u8, state: u8, text: String) -> SqlError {
        SqlError {
            number,
            level,
            state,
            line: self.line,
            position: self.col,
            near: self.near(),
            text,
        }
    }
}

/// Msg 102 or 156 near `t`; Msg 137 for a variable.
fn syntax(t: &Token) -> SqlError {
    match &t.tok {
        Tok::Word(w) if is_in(w, RESERVED_KEYWORDS) => t.error(
            MSG_SYNTAX_KEYWORD,
            15,
            1,
            format!("Incorrect syntax near the keyword '{w}'."),
        ),
        Tok::Variable(v) => t.error(
            MSG_UNDECLARED_VARIABLE,
            15,
            2,
            format!("Must declare the scalar variable \"{v}\"."),
        ),
        _ => t.error(
            MSG_SYNTAX,
            15,
            1,
            format!("Incorrect syntax near '{}'.", t.near()),
        ),
    }
}

fn not_served(t: &Token, text: String) -> SqlError {
    t.error(MSG_NOT_SERVED, 16, 1, text)
}

struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: u32,
    col: u32,
}

impl Lexer {
    fn peek(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }
    /// Reads a delimited run closed by `close`, where `close` twice is an
    /// escaped `close`. The opening delimiter is already consumed.
    fn delimited(&mut self, close: char, line: u32, col: u32) -> Result<String, SqlError> {
        let start = self.i;
        let mut s = String::new();
        loop {
            match self.bump() {
                None => {
                    let rest: String = self.chars[start..].iter().collect();
                    return Err(SqlError {
                        number: MSG_UNCLOSED_QUOTE,
                        level: 15,
                        state: 1,
                        line,
                        position: col,
                        text: format!(
                            "Unclosed quotation mark after the character string '{rest}'."
                        ),
                        near: rest,
                    });
                }
                Some(c) if c == close => {
                    if self.peek(0) == Some(close) {
                        self.bump();
                        s.push(close);
                    } else {
                        return Ok(s);
                    }
                }
                Some(c) => s.push(c),
            }
        }
    }
}

fn ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '#'
}

fn ident_continue(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '@' | '$' | '#')
}

fn check_ident(s: &str, line: u32, col: u32) -> Result<(), SqlError> {
    let err = |number, text: String| SqlError {
        number,
        level: 15,
        state: 4,
        line,
        position: col,
        near: s.to_string(),
        text,
    };
    if s.is_empty() {
        return Err(err(
            MSG_EMPTY_IDENT,
            "An object or column name is missing or empty. For SELECT INTO statements, verify each column has a name. For other statements, look for empty alias names. Aliases defined as \"\" or [] are not allowed. Change the alias to a valid name.".to_string(),
        ));
    }
    if s.chars().count() > IDENT_LEN_MAX {
        let head: String = s.chars().take(IDENT_LEN_MAX).collect();
        return Err(err(
            MSG_IDENT_TOO_LONG,
            format!(
                "The identifier that starts with '{head}' is too long. Maximum length is {IDENT_LEN_MAX}."
            ),
        ));
    }
    Ok(())
}

fn lex(text: &str) -> Result<Vec<Token>, SqlError> {
    let mut lx = Lexer {
        chars: text.chars().collect(),
        i: 0,
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    while let Some(c) = lx.peek(0) {
        let (line, col) = (lx.line, lx.col);
        if c.is_whitespace() {
            lx.bump();
            continue;
        }
        if c == '-' && lx.peek(1) == Some('-') {
            while lx.peek(0).is_some_and(|c| c != '\n') {
                lx.bump();
            }
            continue;
        }
        if c == '/' && lx.peek(1) == Some('*') {
            let mut depth = 0u32;
            loop {
                match (lx.peek(0), lx.peek(1)) {
                    (Some('/'), Some('*')) => {
                        lx.bump();
                        lx.bump();
                        depth += 1;
                    }
                    (Some('*'), Some('/')) => {
                        lx.bump();
                        lx.bump();
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    (Some(_), _) => {
                        lx.bump();
                    }
                    (None, _) => {
                        return Err(SqlError {
                            number: MSG_UNCLOSED_COMMENT,
                            level: 15,
                            state: 1,
                            line,
                            position: col,
                            near: "/*".into(),
                            text: "Missing end comment mark '*/'.".into(),
                        });
                    }
                }
            }
            continue;
        }
        let tok = if c == '\'' || (matches!(c, 'N' | 'n') && lx.peek(1) == Some('\'')) {
            if c != '\'' {
                lx.bump();
            }
            lx.bump();
            Tok::Str(lx.delimited('\'', line, col)?)
        } else if c == '[' || c == '"' {
            lx.bump();
            let s = lx.delimited(if c == '[' { ']' } else { '"' }, line, col)?;
            check_ident(&s, line, col)?;
            Tok::Quoted(s)
        } else if c == '@' {
            let mut s = String::new();
            while lx.peek(0).is_some_and(|c| c == '@' || ident_continue(c)) {
                s.push(lx.bump().unwrap_or_default());
            }
            Tok::Variable(s)
        } else if c.is_ascii_digit() {
            let mut s = String::new();
            let mut dot = false;
            while let Some(d) = lx.peek(0) {
                if d.is_ascii_digit() || (d == '.' && !dot) {
                    dot |= d == '.';
                    s.push(d);
                    lx.bump();
                } else {
                    break;
                }
            }
            Tok::Number(s)
        } else if ident_start(c) {
            let mut s = String::new();
            while lx.peek(0).is_some_and(ident_continue) {
                s.push(lx.bump().unwrap_or_default());
            }
            check_ident(&s, line, col)?;
            Tok::Word(s)
        } else {
            lx.bump();
            Tok::Punct(c)
        };
        out.push(Token { tok, line, col });
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

/// Where each honoured option was last set, to point an error at it.
#[derive(Default)]
struct OptionSites {
    block_size: Option<Token>,
    max_transfer_size: Option<Token>,
    buffer_count: Option<Token>,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }
    fn peek_punct(&self, c: char) -> bool {
        self.peek().is_some_and(|t| t.tok == Tok::Punct(c))
    }
    fn peek_word(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| t.is_word(kw))
    }
    /// The next token; at the end of the batch, a syntax error near the
    /// last token (SQL Server's "Incorrect syntax near 'TO'.").
    fn next(&mut self) -> Result<Token, SqlError> {
        match self.toks.get(self.pos) {
            Some(t) => {
                self.pos += 1;
                Ok(t.clone())
            }
            None => Err(self.eof()),
        }
    }
    fn eof(&self) -> SqlError {
        // A batch with no token never asks for one: statements start on a
        // peeked token.
        let last = self.toks.last().expect("the batch has a token");
        syntax(last)
    }
    fn expect_word(&mut self, kw: &str) -> Result<Token, SqlError> {
        let t = self.next()?;
        if t.is_word(kw) {
            Ok(t)
        } else {
            Err(syntax(&t))
        }
    }
    fn expect_punct(&mut self, c: char) -> Result<(), SqlError> {
        let t = self.next()?;
        if t.tok == Tok::Punct(c) {
            Ok(())
        } else {
            Err(syntax(&t))
        }
    }
    /// A database name: a regular identifier that is not a reserved
    /// keyword, or a delimited one.
    fn ident(&mut self) -> Result<String, SqlError> {
        let t = self.next()?;
        match t.tok {
            Tok::Word(w) if !is_in(&w, RESERVED_KEYWORDS) => Ok(w),
            Tok::Quoted(q) => Ok(q),
            _ => Err(syntax(&t)),
        }
    }

    fn backup(&mut self) -> Result<ParsedStatement, SqlError> {
        let verb = self.next()?;
        let what = self.next()?;
        let kind = if what.is_word("DATABASE") {
            StatementKind::BackupDatabase
        } else if what.is_word("LOG") {
            StatementKind::BackupLog
        } else if ["CERTIFICATE", "MASTER", "SERVICE", "SYMMETRIC"]
            .iter()
            .any(|w| what.is_word(w))
        {
            return Err(not_served(
                &what,
                format!(
                    "vdisim serves only BACKUP DATABASE and BACKUP LOG; 'BACKUP {}' is not served.",
                    what.near().to_ascii_uppercase()
                ),
            ));
        } else {
            return Err(syntax(&what));
        };
        let database = self.ident()?;
        self.expect_word("TO")?;
        self.finish(&verb, kind, database)
    }

    fn restore(&mut self) -> Result<ParsedStatement, SqlError> {
        let verb = self.next()?;
        let what = self.next()?;
        let only = |w: &str| what.is_word(w);
        let (kind, database) = if only("DATABASE") || only("LOG") {
            let kind = if only("LOG") {
                StatementKind::RestoreLog
            } else {
                StatementKind::RestoreDatabase
            };
            let db = self.ident()?;
            if let Some(t) = self.peek().filter(|t| t.is_word("WITH")).cloned() {
                return Err(not_served(
                    &t,
                    "vdisim serves only RESTORE from VIRTUAL_DEVICE; a RESTORE without FROM is not served.".into(),
                ));
            }
            (kind, db)
        } else if only("HEADERONLY") {
            (StatementKind::RestoreHeaderOnly, String::new())
        } else if only("FILELISTONLY") {
            (StatementKind::RestoreFilelistOnly, String::new())
        } else if only("VERIFYONLY") {
            (StatementKind::RestoreVerifyOnly, String::new())
        } else if ["LABELONLY", "REWINDONLY", "MASTER", "SERVICE", "SYMMETRIC"]
            .iter()
            .any(|w| only(w))
        {
            return Err(not_served(
                &what,
                format!(
                    "vdisim serves only RESTORE DATABASE, LOG, HEADERONLY, FILELISTONLY and VERIFYONLY; 'RESTORE {}' is not served.",
                    what.near().to_ascii_uppercase()
                ),
            ));
        } else {
            return Err(syntax(&what));
        };
        self.expect_word("FROM")?;
        self.finish(&verb, kind, database)
    }

    /// The device list and the WITH clause, after TO or FROM.
    fn finish(
        &mut self,
        verb: &Token,
        kind: StatementKind,
        database: String,
    ) -> Result<ParsedStatement, SqlError> {
        let devices = self.devices()?;
        let verb_word = verb.near().to_ascii_uppercase();
        let (options, sites) = self.with_clause(&verb_word)?;
        if let Err(e) = options.validate() {
            let site = match e {
                OptionError::BlockSize(_) => sites.block_size,
                OptionError::MaxTransfer(_) => sites.max_transfer_size,
                OptionError::BufferCount(_) => sites.buffer_count,
            };
            // The defaults are valid, so a failing option was given.
            let site = site.unwrap_or_else(|| verb.clone());
            let m = messages::bad_option(&e.to_string());
            return Err(site.error(m.number, m.level, m.state, m.text));
        }
        Ok(ParsedStatement::Run(Statement {
            kind,
            database,
            devices,
            options,
            plan: ServerPlan::default(),
        }))
    }

    fn devices(&mut self) -> Result<Vec<String>, SqlError> {
        let mut devices = Vec::new();
        loop {
            let t = self.next()?;
            if !t.is_word("VIRTUAL_DEVICE") {
                return Err(match &t.tok {
                    Tok::Word(w) if !is_in(w, RESERVED_KEYWORDS) || w.eq_ignore_ascii_case("DISK") => {
                        t.error(
                            MSG_NOT_VIRTUAL_DEVICE,
                            16,
                            1,
                            format!(
                                "vdisim serves only VIRTUAL_DEVICE backup devices, not '{}'; name the client's virtual device set: VIRTUAL_DEVICE = '<set name>'.",
                                w
                            ),
                        )
                    }
                    _ => syntax(&t),
                });
            }
            self.expect_punct('=')?;
            let name = self.next()?;
            match name.tok {
                Tok::Str(s) => devices.push(s),
                _ => return Err(syntax(&name)),
            }
            if devices.len() > limits::DEVICE_COUNT_MAX as usize {
                return Err(t.error(
                    MSG_TOO_MANY_DEVICES,
                    16,
                    1,
                    format!(
                        "Too many backup devices specified for backup or restore; only {} are allowed.",
                        limits::DEVICE_COUNT_MAX
                    ),
                ));
            }
            if self.peek_punct(',') {
                self.pos += 1;
            } else {
                return Ok(devices);
            }
        }
    }

    fn with_clause(&mut self, verb: &str) -> Result<(TransferOptions, OptionSites), SqlError> {
        let mut o = TransferOptions::default();
        let mut sites = OptionSites::default();
        if !self.peek_word("WITH") {
            return Ok((o, sites));
        }
        self.pos += 1;
        loop {
            let t = self.next()?;
            let Tok::Word(name) = &t.tok else {
                return Err(syntax(&t));
            };
            let upper = name.to_ascii_uppercase();
            match upper.as_str() {
                "BLOCKSIZE" => {
                    o.block_size = self.int_value()?;
                    sites.block_size = Some(t.clone());
                }
                "MAXTRANSFERSIZE" => {
                    o.max_transfer_size = self.int_value()?;
                    sites.max_transfer_size = Some(t.clone());
                }
                "BUFFERCOUNT" => {
                    o.buffer_count = Some(self.int_value()?);
                    sites.buffer_count = Some(t.clone());
                }
                "MOVE" => {
                    self.value()?;
                    self.expect_word("TO")?;
                    self.value()?;
                }
                _ if is_in(&upper, KNOWN_OPTIONS) => {
                    if self.peek_punct('=') {
                        self.pos += 1;
                        self.value()?;
                        if matches!(upper.as_str(), "STOPATMARK" | "STOPBEFOREMARK")
                            && self.peek_word("AFTER")
                        {
                            self.pos += 1;
                            self.value()?;
                        }
                    } else if self.peek_punct('(') {
                        self.parens()?;
                    }
                }
                _ if is_in(&upper, UNMODELLED_OPTIONS) => {
                    return Err(not_served(
                        &t,
                        format!("vdisim does not model WITH {upper}; leave the option out."),
                    ));
                }
                _ => {
                    return Err(t.error(
                        MSG_UNKNOWN_OPTION,
                        15,
                        1,
                        format!("'{name}' is not a recognized {verb} option."),
                    ));
                }
            }
            if self.peek_punct(',') {
                self.pos += 1;
            } else {
                return Ok((o, sites));
            }
        }
    }

    /// `= n` for an honoured option: a whole number that fits an `int`.
    fn int_value(&mut self) -> Result<u32, SqlError> {
        self.expect_punct('=')?;
        let t = self.next()?;
        let Tok::Number(n) = &t.tok else {
            return Err(syntax(&t));
        };
        if n.contains('.') {
            return Err(syntax(&t));
        }
        match n.parse::<u32>() {
            Ok(v) if i32::try_from(v).is_ok() => Ok(v),
            _ => Err(t.error(
                MSG_OVERFLOW,
                16,
                2,
                "Arithmetic overflow error converting expression to data type int.".into(),
            )),
        }
    }

    /// An ignored option's value: a number (optionally signed), a string, an
    /// identifier.
    fn value(&mut self) -> Result<(), SqlError> {
        let mut t = self.next()?;
        if matches!(t.tok, Tok::Punct('-' | '+')) {
            t = self.next()?;
            if matches!(t.tok, Tok::Number(_)) {
                return Ok(());
            }
            return Err(syntax(&t));
        }
        match t.tok {
            Tok::Number(_) | Tok::Str(_) | Tok::Word(_) | Tok::Quoted(_) => Ok(()),
            _ => Err(syntax(&t)),
        }
    }

    /// A balanced parenthesised group, e.g. `ENCRYPTION (ALGORITHM = AES_256,
    /// SERVER CERTIFICATE = c)`; its content is not checked beyond variables.
    fn parens(&mut self) -> Result<(), SqlError> {
        let mut depth = 0u32;
        loop {
            let t = self.next()?;
            match t.tok {
                Tok::Punct('(') => depth += 1,
                Tok::Punct(')') => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                Tok::Variable(_) => return Err(syntax(&t)),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
