//! The statement parser: a batch's tokens read as BACKUP, RESTORE and USE
//! statements, with their database names and device lists (the WITH
//! clause is `options`).

use vdi_model::server::messages;
use vdi_model::statement::{ServerPlan, Statement, StatementKind};
use vdi_spec::layout::limits;
use vdi_spec::options::OptionError;

use std::collections::HashMap;

use super::error::{MSG_NOT_VIRTUAL_DEVICE, MSG_TOO_MANY_DEVICES, MSG_WITH_START, SqlError};
use super::keywords::{RESERVED_KEYWORDS, UNSERVED_STATEMENTS, is_in};
use super::lexer::{Tok, Token, not_served, syntax};
use super::{DatabaseStatement, LocatedStatement, ParsedStatement};

/// A variable's value (see `ddl`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Value {
    Null,
    Str(String),
    Int(i64),
}

/// A batch's tokens, the position of the next one to read, and the batch's
/// variables (see `ddl`).
pub(super) struct Parser {
    toks: Vec<Token>,
    pub(super) pos: usize,
    pub(super) vars: HashMap<String, Value>,
}

impl Parser {
    pub(super) fn new(toks: Vec<Token>) -> Self {
        Parser {
            toks,
            pos: 0,
            vars: HashMap::new(),
        }
    }
    pub(super) fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }
    pub(super) fn peek_punct(&self, c: char) -> bool {
        self.peek().is_some_and(|t| t.tok == Tok::Punct(c))
    }
    pub(super) fn peek_word(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| t.is_word(kw))
    }
    /// The next token; at the end of the batch, a syntax error near the
    /// last token (SQL Server's "Incorrect syntax near 'TO'.").
    pub(super) fn next(&mut self) -> Result<Token, SqlError> {
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
    pub(super) fn expect_word(&mut self, kw: &str) -> Result<Token, SqlError> {
        let t = self.next()?;
        if t.is_word(kw) {
            Ok(t)
        } else {
            Err(syntax(&t))
        }
    }
    pub(super) fn expect_punct(&mut self, c: char) -> Result<(), SqlError> {
        let t = self.next()?;
        if t.tok == Tok::Punct(c) {
            Ok(())
        } else {
            Err(syntax(&t))
        }
    }
    /// A database name: a regular identifier that is not a reserved
    /// keyword, a delimited one, or a string variable holding one.
    pub(super) fn ident(&mut self) -> Result<String, SqlError> {
        let t = self.next()?;
        match &t.tok {
            Tok::Word(w) if !is_in(w, RESERVED_KEYWORDS) => Ok(w.clone()),
            Tok::Quoted(q) => Ok(q.clone()),
            Tok::Variable(_) => self.string_variable(&t),
            _ => Err(syntax(&t)),
        }
    }

    /// A variable that must hold a string: its value (an integer is
    /// converted; NULL is refused, as SQL Server refuses a NULL name).
    pub(super) fn string_variable(&self, t: &Token) -> Result<String, SqlError> {
        match self.variable(t)? {
            Value::Str(s) => Ok(s),
            Value::Int(i) => Ok(i.to_string()),
            Value::Null => Err(not_served(
                t,
                format!(
                    "The variable '{}' is NULL; give it a value with SET before this statement.",
                    t.near()
                ),
            )),
        }
    }

    /// The next statement of the batch after any `;`s, DECLAREs and SETs,
    /// or `None` at the batch's end.
    pub(super) fn statement(&mut self) -> Result<Option<LocatedStatement>, SqlError> {
        let t = loop {
            while self.peek_punct(';') {
                self.pos += 1;
            }
            let Some(t) = self.peek().cloned() else {
                return Ok(None);
            };
            if t.is_word("DECLARE") {
                self.declare()?;
            } else if t.is_word("SET") {
                self.set()?;
            } else {
                break t;
            }
        };
        let statement = match &t.tok {
            Tok::Word(w) if w.eq_ignore_ascii_case("BACKUP") => self.backup()?,
            Tok::Word(w) if w.eq_ignore_ascii_case("RESTORE") => self.restore()?,
            Tok::Word(w) if w.eq_ignore_ascii_case("USE") => {
                self.pos += 1;
                ParsedStatement::Use(self.ident()?)
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("CREATE") => self.create()?,
            Tok::Word(w) if w.eq_ignore_ascii_case("DROP") => self.drop_database()?,
            Tok::Word(w) if w.eq_ignore_ascii_case("ALTER") => self.alter()?,
            Tok::Word(w) if w.eq_ignore_ascii_case("KILL") => self.kill()?,
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
                        "vdisim serves BACKUP, RESTORE, USE, CREATE/DROP/ALTER DATABASE, KILL, DECLARE and SET; '{}' is not served.",
                        w.to_ascii_uppercase()
                    ),
                ));
            }
            _ => return Err(syntax(&t)),
        };
        Ok(Some(LocatedStatement {
            line: t.line,
            position: t.col,
            statement,
        }))
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
                return self.recover_only(&t, kind, db);
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

    /// `RESTORE DATABASE <db> WITH RECOVERY` (no FROM): brings a database
    /// left restoring by a NORECOVERY restore online. Any other RESTORE
    /// without FROM is not served.
    fn recover_only(
        &mut self,
        with: &Token,
        kind: StatementKind,
        database: String,
    ) -> Result<ParsedStatement, SqlError> {
        self.pos += 1;
        let t = self.next()?;
        if kind == StatementKind::RestoreDatabase
            && t.is_word("RECOVERY")
            && self
                .peek()
                .is_none_or(|n| n.is_punct_semicolon() || self.starts_statement(n))
        {
            return Ok(ParsedStatement::Database(DatabaseStatement::Recover(
                database,
            )));
        }
        Err(not_served(
            with,
            "vdisim serves RESTORE from VIRTUAL_DEVICE, and RESTORE DATABASE … WITH RECOVERY alone; this RESTORE without FROM is not served.".into(),
        ))
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
        let (options, sites, with) = self.with_clause(&verb_word, kind)?;
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
        let mut plan = ServerPlan::default();
        with.apply(kind, &mut plan);
        Ok(ParsedStatement::Run(
            Statement {
                kind,
                database,
                devices,
                options,
                plan,
            },
            with,
        ))
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
            match &name.tok {
                Tok::Str(s) => devices.push(s.clone()),
                Tok::Variable(_) => devices.push(self.string_variable(&name)?),
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
}
