//! WITH options: which are honoured, ignored or refused, and the parser of
//! a statement's WITH clause.

use vdi_model::media::BackupType;
use vdi_model::statement::{ServerPlan, StatementKind, TapeOptions};
use vdi_spec::TransferOptions;

use super::error::{MSG_OVERFLOW, MSG_UNKNOWN_OPTION, SqlError};
use super::keywords::is_in;
use super::lexer::{Tok, Token, not_served, syntax};
use super::parser::{Parser, Value};

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
/// they would change what the VDI stream is in a way the model does not
/// know. None today: SNAPSHOT and METADATA_ONLY, once listed here, are
/// modelled (clauses `snapshot.*`).
///
/// [`MSG_NOT_SERVED`]: super::MSG_NOT_SERVED
pub const UNMODELLED_OPTIONS: &[&str] = &[];

/// What a RESTORE leaves the database as (`WITH RECOVERY`, the default;
/// `NORECOVERY`; `STANDBY = 'file'`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recovery {
    #[default]
    Recovery,
    NoRecovery,
    Standby,
}

/// The WITH options that change what the server does with a statement
/// (besides the transfer options): the database's state after a RESTORE,
/// the backup's type and flags, progress messages, the backup set's
/// position. The last one given wins, as in SQL Server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct With {
    pub recovery: Recovery,
    pub replace: bool,
    pub copy_only: bool,
    pub differential: bool,
    pub checksum: bool,
    /// `STATS [= n]`: a progress message every n percent (10 without n).
    pub stats: Option<u32>,
    /// `FILE = n`: the backup set's position on the media.
    pub file: Option<u32>,
    /// `FORMAT` / `INIT`: accepted; a VDI stream always holds one backup set.
    pub format: bool,
    pub init: bool,
    /// `MEDIANAME = name`, `REWIND | NOREWIND`, `UNLOAD | NOUNLOAD`: what a
    /// statement does on tape-like devices (clause `tape.end-rewind`).
    pub tape: TapeOptions,
    /// `SNAPSHOT` or `METADATA_ONLY` (the same for VDI): a snapshot BACKUP
    /// or RESTORE (clauses `snapshot.*`).
    pub snapshot: bool,
}

impl With {
    /// What the media headers of a BACKUP with these options say.
    pub fn apply(&self, kind: StatementKind, plan: &mut ServerPlan) {
        *plan.tape = self.tape.clone();
        plan.snapshot = self.snapshot;
        if kind.is_backup() {
            let m = &mut plan.media;
            m.copy_only = self.copy_only;
            m.checksum = self.checksum;
            // BACKUP LOG's type is the statement's own (the server half
            // writes it); DIFFERENTIAL is an option of BACKUP DATABASE.
            if kind == StatementKind::BackupDatabase && self.differential {
                m.backup_type = BackupType::Differential;
            }
        }
    }
}

/// Where each honoured option was last set, to point an error at it.
#[derive(Default)]
pub(super) struct OptionSites {
    pub(super) block_size: Option<Token>,
    pub(super) max_transfer_size: Option<Token>,
    pub(super) buffer_count: Option<Token>,
}

impl Parser {
    /// The WITH clause, if any: the honoured options and where each was
    /// set, and the options that change the statement ([`With`]); `verb`
    /// (BACKUP or RESTORE) names the statement in Msg 155.
    pub(super) fn with_clause(
        &mut self,
        verb: &str,
        _kind: StatementKind,
    ) -> Result<(TransferOptions, OptionSites, With), SqlError> {
        let mut o = TransferOptions::default();
        let mut sites = OptionSites::default();
        let mut w = With::default();
        if !self.peek_word("WITH") {
            return Ok((o, sites, w));
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
                "STATS" => {
                    w.stats = Some(if self.peek_punct('=') {
                        self.int_value()?.clamp(1, 100)
                    } else {
                        10
                    });
                }
                "FILE" => w.file = Some(self.int_value()?),
                "RECOVERY" => w.recovery = Recovery::Recovery,
                "NORECOVERY" => w.recovery = Recovery::NoRecovery,
                "STANDBY" => {
                    self.expect_punct('=')?;
                    self.value()?;
                    w.recovery = Recovery::Standby;
                }
                "REPLACE" => w.replace = true,
                "COPY_ONLY" => w.copy_only = true,
                "DIFFERENTIAL" => w.differential = true,
                "CHECKSUM" => w.checksum = true,
                "NO_CHECKSUM" => w.checksum = false,
                "FORMAT" => w.format = true,
                "NOFORMAT" => w.format = false,
                "INIT" => w.init = true,
                "NOINIT" => w.init = false,
                "REWIND" => w.tape.rewind = true,
                "NOREWIND" => w.tape.rewind = false,
                "UNLOAD" => w.tape.unload = true,
                "NOUNLOAD" => w.tape.unload = false,
                "MEDIANAME" => w.tape.media_name = Some(self.text_value()?),
                "SNAPSHOT" | "METADATA_ONLY" => w.snapshot = true,
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
                return Ok((o, sites, w));
            }
        }
    }

    /// `= n` for an honoured option: a whole number that fits an `int`, or
    /// an integer variable holding one.
    fn int_value(&mut self) -> Result<u32, SqlError> {
        self.expect_punct('=')?;
        let t = self.next()?;
        if let Tok::Variable(_) = &t.tok {
            return match self.variable(&t)? {
                Value::Int(v) if (0..=i64::from(i32::MAX)).contains(&v) => Ok(v as u32),
                _ => Err(syntax(&t)),
            };
        }
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
            Tok::Variable(_) => self.variable(&t).map(|_| ()),
            _ => Err(syntax(&t)),
        }
    }

    /// `= name` for MEDIANAME: a string literal, a word or a variable
    /// holding a string.
    fn text_value(&mut self) -> Result<String, SqlError> {
        self.expect_punct('=')?;
        let t = self.next()?;
        match &t.tok {
            Tok::Str(s) | Tok::Word(s) | Tok::Quoted(s) => Ok(s.clone()),
            Tok::Variable(_) => match self.variable(&t)? {
                Value::Str(s) => Ok(s),
                _ => Err(syntax(&t)),
            },
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
