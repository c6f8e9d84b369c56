//! The statements around a backup: `CREATE DATABASE`, `DROP DATABASE`,
//! `ALTER DATABASE … SET RECOVERY`, `RESTORE DATABASE … WITH RECOVERY`
//! (no FROM: bring a restoring database online), and the batch's string
//! and integer variables (`DECLARE`, `SET`), which BACKUP and RESTORE may
//! use for the database name, a device name or an option's value.
//!
//! Variables hold literals only (no expressions), so the parser resolves
//! them as it reads the batch: `DECLARE @d nvarchar(200) = N'x'; BACKUP
//! DATABASE @db TO VIRTUAL_DEVICE = @d` is read as if the literals had been
//! written. A variable used before its DECLARE, or never declared, is SQL
//! Server's Msg 137; one declared twice is Msg 134.

use super::error::SqlError;
use super::keywords::{RESERVED_KEYWORDS, is_in};
use super::lexer::{Tok, Token, not_served, syntax};
use super::parser::{Parser, Value};
use super::{DatabaseStatement, ParsedStatement, RecoveryModel};

/// Msg 134: a variable declared twice in a batch.
pub const MSG_VARIABLE_DECLARED: u32 = 134;
/// Longest string a variable holds (nvarchar(4000)), in characters.
pub const VARIABLE_CHARS_MAX: usize = 4000;
/// Variables a batch may declare.
pub const VARIABLES_MAX: usize = 1000;

impl Parser {
    /// `CREATE DATABASE <db>` (any further clauses are refused).
    pub(super) fn create(&mut self) -> Result<ParsedStatement, SqlError> {
        self.pos += 1;
        self.expect_database("CREATE DATABASE", "CREATE")?;
        let db = self.ident()?;
        if let Some(t) = self.peek().filter(|t| !t.is_punct_semicolon()).cloned()
            && !self.starts_statement(&t)
        {
            return Err(not_served(
                &t,
                format!(
                    "vdisim serves CREATE DATABASE with a name only; '{}' is not served.",
                    t.near()
                ),
            ));
        }
        Ok(ParsedStatement::Database(DatabaseStatement::Create(db)))
    }

    /// `DROP DATABASE [IF EXISTS] <db>`.
    pub(super) fn drop_database(&mut self) -> Result<ParsedStatement, SqlError> {
        self.pos += 1;
        self.expect_database("DROP DATABASE", "DROP")?;
        let if_exists = if self.peek_word("IF") {
            self.pos += 1;
            self.expect_word("EXISTS")?;
            true
        } else {
            false
        };
        let db = self.ident()?;
        Ok(ParsedStatement::Database(DatabaseStatement::Drop {
            database: db,
            if_exists,
        }))
    }

    /// `ALTER DATABASE <db> SET RECOVERY FULL | SIMPLE | BULK_LOGGED`.
    pub(super) fn alter(&mut self) -> Result<ParsedStatement, SqlError> {
        self.pos += 1;
        self.expect_database("ALTER DATABASE … SET RECOVERY", "ALTER")?;
        let db = self.ident()?;
        self.expect_word("SET")?;
        let opt = self.next()?;
        if !opt.is_word("RECOVERY") {
            return Err(not_served(
                &opt,
                format!(
                    "vdisim serves only ALTER DATABASE … SET RECOVERY; 'SET {}' is not served.",
                    opt.near().to_ascii_uppercase()
                ),
            ));
        }
        let m = self.next()?;
        let model = if m.is_word("FULL") {
            RecoveryModel::Full
        } else if m.is_word("SIMPLE") {
            RecoveryModel::Simple
        } else if m.is_word("BULK_LOGGED") {
            RecoveryModel::BulkLogged
        } else {
            return Err(syntax(&m));
        };
        Ok(ParsedStatement::Database(DatabaseStatement::SetRecovery {
            database: db,
            model,
        }))
    }

    /// The word DATABASE after `verb` (CREATE, DROP, ALTER): any other
    /// object is not served (`served` names what is).
    fn expect_database(&mut self, served: &str, verb: &str) -> Result<(), SqlError> {
        let what = self.next()?;
        if what.is_word("DATABASE") {
            return Ok(());
        }
        Err(not_served(
            &what,
            format!(
                "vdisim serves only {served}; '{verb} {}' is not served.",
                what.near().to_ascii_uppercase()
            ),
        ))
    }

    /// `DECLARE @a <type> [= value] [, @b <type> [= value]] …`: the
    /// variables are the batch's from here on.
    pub(super) fn declare(&mut self) -> Result<(), SqlError> {
        self.pos += 1;
        loop {
            let t = self.next()?;
            let Tok::Variable(name) = &t.tok else {
                return Err(syntax(&t));
            };
            let key = name.to_ascii_lowercase();
            if self.vars.contains_key(&key) {
                return Err(t.error(
                    MSG_VARIABLE_DECLARED,
                    15,
                    1,
                    format!(
                        "The variable name '{name}' has already been declared. Variable names must be unique within a query batch or stored procedure."
                    ),
                ));
            }
            if self.vars.len() >= VARIABLES_MAX {
                return Err(not_served(
                    &t,
                    format!("vdisim keeps at most {VARIABLES_MAX} variables in a batch."),
                ));
            }
            if self.peek_word("AS") {
                self.pos += 1;
            }
            let string = self.data_type()?;
            let value = if self.peek_punct('=') {
                self.pos += 1;
                self.literal(string)?
            } else {
                Value::Null
            };
            self.vars.insert(key, value);
            if self.peek_punct(',') {
                self.pos += 1;
            } else {
                return Ok(());
            }
        }
    }

    /// `SET @a = value`. Other SET statements (`SET NOCOUNT ON`, ...) are
    /// session options: accepted and ignored up to the end of the batch's
    /// line of words they take.
    pub(super) fn set(&mut self) -> Result<(), SqlError> {
        self.pos += 1;
        let t = self.next()?;
        let Tok::Variable(name) = &t.tok else {
            // SET <option> ON|OFF|value: nothing vdisim serves depends on it.
            while let Some(n) = self.peek().cloned() {
                if n.is_punct_semicolon() || self.starts_statement(&n) {
                    break;
                }
                self.pos += 1;
            }
            return Ok(());
        };
        let key = name.to_ascii_lowercase();
        let Some(old) = self.vars.get(&key).cloned() else {
            return Err(syntax(&t));
        };
        self.expect_punct('=')?;
        let string = !matches!(old, Value::Int(_));
        let v = self.literal(string)?;
        self.vars.insert(key, v);
        Ok(())
    }

    /// A data type: `nvarchar(n|max)`, `varchar(…)`, `sysname`, `nchar(n)`,
    /// `char(n)` (strings: `true`), or `int`, `bigint`, `smallint`,
    /// `tinyint` (`false`).
    fn data_type(&mut self) -> Result<bool, SqlError> {
        let t = self.next()?;
        let Tok::Word(w) = &t.tok else {
            return Err(syntax(&t));
        };
        let w = w.to_ascii_lowercase();
        let string = match w.as_str() {
            "nvarchar" | "varchar" | "nchar" | "char" | "sysname" => true,
            "int" | "bigint" | "smallint" | "tinyint" => false,
            _ => {
                return Err(not_served(
                    &t,
                    format!(
                        "vdisim serves string and integer variables; type '{w}' is not served."
                    ),
                ));
            }
        };
        if self.peek_punct('(') {
            self.pos += 1;
            let n = self.next()?;
            if !matches!(n.tok, Tok::Number(_)) && !n.is_word("MAX") {
                return Err(syntax(&n));
            }
            self.expect_punct(')')?;
        }
        Ok(string)
    }

    /// A literal for a variable of string (`string`) or integer type: a
    /// string, a number, NULL, or another variable's value.
    fn literal(&mut self, string: bool) -> Result<Value, SqlError> {
        let mut t = self.next()?;
        let negative = t.tok == Tok::Punct('-');
        if negative {
            t = self.next()?;
        }
        let v = match &t.tok {
            Tok::Str(s) if !negative => Value::Str(s.clone()),
            Tok::Number(n) if !n.contains('.') => match n.parse::<i64>() {
                Ok(v) => Value::Int(if negative { -v } else { v }),
                Err(_) => return Err(syntax(&t)),
            },
            Tok::Word(w) if w.eq_ignore_ascii_case("NULL") && !negative => Value::Null,
            Tok::Variable(_) if !negative => self.variable(&t)?,
            _ => return Err(syntax(&t)),
        };
        Ok(match (string, v) {
            (true, Value::Int(i)) => Value::Str(i.to_string()),
            (true, Value::Str(s)) => {
                if s.chars().count() > VARIABLE_CHARS_MAX {
                    return Err(not_served(
                        &t,
                        format!(
                            "vdisim keeps strings of at most {VARIABLE_CHARS_MAX} characters in a variable."
                        ),
                    ));
                }
                Value::Str(s)
            }
            (false, Value::Str(s)) => match s.trim().parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => {
                    return Err(t.error(
                        245,
                        16,
                        1,
                        format!("Conversion failed when converting the nvarchar value '{s}' to data type int."),
                    ));
                }
            },
            (_, v) => v,
        })
    }

    /// The value of the variable token `t` (Msg 137 if undeclared).
    pub(super) fn variable(&self, t: &Token) -> Result<Value, SqlError> {
        let Tok::Variable(name) = &t.tok else {
            return Err(syntax(t));
        };
        self.vars
            .get(&name.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| syntax(t))
    }

    /// `KILL <session id>` (a whole number or an integer variable); `KILL
    /// 'uow'` and `WITH STATUSONLY` are not served.
    pub(super) fn kill(&mut self) -> Result<ParsedStatement, SqlError> {
        self.pos += 1;
        let t = self.next()?;
        let id = match &t.tok {
            Tok::Number(n) if !n.contains('.') => n.parse::<i64>().ok(),
            Tok::Variable(_) => match self.variable(&t)? {
                Value::Int(v) => Some(v),
                _ => None,
            },
            Tok::Str(_) => {
                return Err(not_served(
                    &t,
                    "vdisim serves KILL with a session id; KILL of a unit of work is not served."
                        .into(),
                ));
            }
            _ => return Err(syntax(&t)),
        };
        let Some(id) = id.filter(|v| (0..=i64::from(i32::MAX)).contains(v)) else {
            return Err(syntax(&t));
        };
        if let Some(w) = self.peek().filter(|w| w.is_word("WITH")).cloned() {
            return Err(not_served(
                &w,
                "vdisim serves KILL <session id> alone; KILL … WITH STATUSONLY is not served."
                    .into(),
            ));
        }
        Ok(ParsedStatement::Kill(id as u32))
    }

    /// Whether `t` begins a statement (the end of a statement that takes no
    /// terminator).
    pub(super) fn starts_statement(&self, t: &Token) -> bool {
        matches!(&t.tok, Tok::Word(w) if is_in(w, RESERVED_KEYWORDS) && is_in(w, STATEMENT_WORDS))
    }
}

/// Words that begin a statement vdisim reads.
const STATEMENT_WORDS: &[&str] = &[
    "ALTER", "BACKUP", "CREATE", "DECLARE", "DROP", "KILL", "RESTORE", "SET", "USE",
];
