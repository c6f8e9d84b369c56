//! The `--program` template: a command line split like a shell word list
//! (no shell runs it), with placeholders the runner fills in per case.

use std::collections::BTreeMap;
use std::path::PathBuf;
use thiserror::Error;

/// The placeholders a template may use.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("op", "`backup` or `restore` (renamed by --op-words)"),
    ("database", "the case's database"),
    ("device", "the set name, also the first device's name"),
    ("devices", "the number of devices"),
    (
        "file",
        "the case's media path: written by the backup, read by the restore that follows it",
    ),
    ("server", "what to pass as `sqlcmd -S` (the case's server)"),
];

/// The longest template accepted (bytes).
pub const TEMPLATE_BYTES_MAX: usize = 64 * 1024;

/// A bad template, with how to fix it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error(
        "--program is empty: give the command that runs your backup program, e.g. --program './my-backup {{op}} {{database}} {{device}}'"
    )]
    Empty,
    #[error("--program: an unterminated {0} quote; close it")]
    Unterminated(char),
    #[error("--program: a `\\` at the end has nothing to escape; remove it or escape a character")]
    TrailingEscape,
    #[error(
        "--program: unknown placeholder {{{name}}} in word {word}; use {known} (write {{{{ and }}}} for literal braces)"
    )]
    Unknown {
        name: String,
        word: usize,
        known: String,
    },
    #[error(
        "--program: a `{{` without its `}}` in word {0}; close it, or write {{{{ for a literal brace"
    )]
    Unclosed(usize),
    #[error("--program is {0} bytes; the limit is {TEMPLATE_BYTES_MAX}")]
    TooLong(usize),
    #[error(
        "--ready-line needs {{device}} in --program: the program must be told the set name, since the runner sends the statement that names it"
    )]
    NoDevice,
    #[error("--program: the program `{0}` is not found: give a path, or a name on PATH")]
    NotFound(String),
    #[error(
        "--program: `{0}` is not an executable file: check the path and its permissions (chmod +x)"
    )]
    NotExecutable(String),
}

/// One word of a template: literal text and placeholders in turn.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Hole(String),
}

/// A parsed `--program` template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    words: Vec<Vec<Piece>>,
    /// The template as given (for repro lines).
    pub text: String,
}

impl Template {
    /// Parses `text`: words split on unquoted whitespace; `'…'` keeps
    /// everything literally, `"…"` allows `\"` and `\\`, a `\` outside
    /// quotes escapes the next character; `{name}` is a placeholder (see
    /// [`PLACEHOLDERS`]), `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if text.len() > TEMPLATE_BYTES_MAX {
            return Err(TemplateError::TooLong(text.len()));
        }
        let raw = split(text)?;
        if raw.is_empty() {
            return Err(TemplateError::Empty);
        }
        let known = PLACEHOLDERS
            .iter()
            .map(|(n, _)| format!("{{{n}}}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut words = Vec::with_capacity(raw.len());
        for (i, w) in raw.iter().enumerate() {
            let pieces = pieces(w, i + 1)?;
            for p in &pieces {
                if let Piece::Hole(name) = p
                    && !PLACEHOLDERS.iter().any(|(n, _)| n == name)
                {
                    return Err(TemplateError::Unknown {
                        name: name.clone(),
                        word: i + 1,
                        known: known.clone(),
                    });
                }
            }
            words.push(pieces);
        }
        Ok(Template {
            words,
            text: text.to_string(),
        })
    }

    /// Whether the template uses placeholder `name`.
    pub fn uses(&self, name: &str) -> bool {
        self.words
            .iter()
            .flatten()
            .any(|p| matches!(p, Piece::Hole(n) if n == name))
    }

    /// The command line with every placeholder replaced from `values`.
    pub fn fill(&self, values: &BTreeMap<&str, String>) -> Vec<String> {
        self.words
            .iter()
            .map(|w| {
                w.iter()
                    .map(|p| match p {
                        Piece::Text(t) => t.clone(),
                        Piece::Hole(n) => values.get(n.as_str()).cloned().unwrap_or_default(),
                    })
                    .collect()
            })
            .collect()
    }

    /// The program (the first word) as a path: as given if it has a `/`,
    /// else found on `PATH`. It must be an executable file.
    pub fn program(&self, path_var: Option<&std::ffi::OsStr>) -> Result<PathBuf, TemplateError> {
        let first = self.fill(&BTreeMap::new()).remove(0);
        if self.words[0].iter().any(|p| matches!(p, Piece::Hole(_))) {
            // A program chosen per case cannot be checked up front.
            return Ok(PathBuf::from(first));
        }
        let found = if first.contains('/') {
            Some(PathBuf::from(&first))
        } else {
            path_var.and_then(|p| {
                std::env::split_paths(p)
                    .map(|d| d.join(&first))
                    .find(|c| c.is_file())
            })
        };
        let Some(p) = found.filter(|p| p.exists()) else {
            return Err(TemplateError::NotFound(first));
        };
        if !is_executable(&p) {
            return Err(TemplateError::NotExecutable(p.display().to_string()));
        }
        Ok(p)
    }
}

#[cfg(unix)]
fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &std::path::Path) -> bool {
    p.is_file()
}

/// Splits `text` into words as a POSIX shell would, without expansions.
fn split(text: &str) -> Result<Vec<String>, TemplateError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(TemplateError::Unterminated('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(TemplateError::Unterminated('"')),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(TemplateError::Unterminated('"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err(TemplateError::TrailingEscape),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Cuts a word into text and `{placeholder}` pieces.
fn pieces(w: &str, word: usize) -> Result<Vec<Piece>, TemplateError> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut it = w.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '{' if it.peek() == Some(&'{') => {
                it.next();
                text.push('{');
            }
            '}' if it.peek() == Some(&'}') => {
                it.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match it.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(TemplateError::Unclosed(word)),
                    }
                }
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                out.push(Piece::Hole(name));
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() || out.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<&'static str, String> {
        [
            ("op", "backup"),
            ("database", "ct1"),
            ("device", "vdi-1"),
            ("devices", "2"),
            ("file", "/tmp/x y/media"),
            ("server", "/tmp/s.sock"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect()
    }

    #[test]
    fn words_quotes_and_placeholders() {
        let t = Template::parse(
            r#"./client {op} --db={database} 'a b' "c \"d\"" e\ f --file {file} x{{y}}"#,
        )
        .unwrap();
        assert_eq!(
            t.fill(&values()),
            vec![
                "./client",
                "backup",
                "--db=ct1",
                "a b",
                "c \"d\"",
                "e f",
                "--file",
                "/tmp/x y/media",
                "x{y}"
            ]
        );
        assert!(t.uses("file") && !t.uses("device"));
    }

    #[test]
    fn bad_templates_say_what_and_how() {
        assert_eq!(Template::parse("  "), Err(TemplateError::Empty));
        assert_eq!(
            Template::parse("./c 'x"),
            Err(TemplateError::Unterminated('\''))
        );
        assert_eq!(
            Template::parse("./c x\\"),
            Err(TemplateError::TrailingEscape)
        );
        let e = Template::parse("./c {dev}").unwrap_err();
        assert!(
            matches!(&e, TemplateError::Unknown { name, word: 2, .. } if name == "dev"),
            "{e}"
        );
        assert!(e.to_string().contains("{device}"), "{e}");
        assert_eq!(Template::parse("./c {op"), Err(TemplateError::Unclosed(2)));
    }

    #[test]
    fn the_program_must_exist_and_be_executable() {
        let t = Template::parse("/nonexistent/prog {op}").unwrap();
        assert!(matches!(t.program(None), Err(TemplateError::NotFound(_))));
        let t = Template::parse("sh -c true").unwrap();
        let path = std::env::var_os("PATH");
        assert!(t.program(path.as_deref()).is_ok());
        let t = Template::parse("Cargo.toml").unwrap();
        let here = std::ffi::OsString::from(env!("CARGO_MANIFEST_DIR"));
        assert!(matches!(
            t.program(Some(&here)),
            Err(TemplateError::NotExecutable(_))
        ));
    }

    proptest::proptest! {
        /// Any words, quoted the way a shell user would, split back to
        /// themselves; the splitter never panics on any input.
        #[test]
        fn quoting_round_trips(words in proptest::collection::vec("[a-z0-9 '\"\\\\$]{0,8}", 1..6)) {
            let quoted: Vec<String> = words
                .iter()
                .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
                .collect();
            let back = split(&quoted.join(" ")).unwrap();
            proptest::prop_assert_eq!(back, words);
        }

        #[test]
        fn never_panics(s in "\\PC{0,64}") {
            let _ = Template::parse(&s);
        }
    }
}
