//! The lexer: a batch's text cut into tokens (words, delimited
//! identifiers, string literals, numbers, variables, punctuation), with
//! comments and whitespace skipped and each token's line and column kept.

use super::error::{
    MSG_EMPTY_IDENT, MSG_IDENT_TOO_LONG, MSG_NOT_SERVED, MSG_SYNTAX, MSG_SYNTAX_KEYWORD,
    MSG_UNCLOSED_COMMENT, MSG_UNCLOSED_QUOTE, MSG_UNDECLARED_VARIABLE, SqlError,
};
use super::keywords::{RESERVED_KEYWORDS, is_in};

/// Longest identifier SQL Server accepts (`sysname`), in characters.
pub const IDENT_LEN_MAX: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tok {
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
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) line: u32,
    pub(super) col: u32,
}

impl Token {
    pub(super) fn near(&self) -> String {
        match &self.tok {
            Tok::Word(s) | Tok::Quoted(s) | Tok::Str(s) | Tok::Number(s) | Tok::Variable(s) => {
                s.clone()
            }
            Tok::Punct(c) => c.to_string(),
        }
    }
    pub(super) fn is_punct_semicolon(&self) -> bool {
        self.tok == Tok::Punct(';')
    }
    pub(super) fn is_word(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
    pub(super) fn error(&self, number: u32, level: u8, state: u8, text: String) -> SqlError {
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

/// Cuts a batch into tokens.
pub(super) fn lex(text: &str) -> Result<Vec<Token>, SqlError> {
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

/// Msg 102 or 156 near `t`; Msg 137 for a variable.
pub(super) fn syntax(t: &Token) -> SqlError {
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

pub(super) fn not_served(t: &Token, text: String) -> SqlError {
    t.error(MSG_NOT_SERVED, 16, 1, text)
}
