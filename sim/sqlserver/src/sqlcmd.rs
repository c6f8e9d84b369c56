//! The front end of a `sqlcmd` look-alike: option parsing, batches (from
//! `-Q`/`-q`, `-i` files or standard input), printing the server's messages
//! the way sqlcmd does, and sqlcmd's exit codes. The transport is someone
//! else's: batches go to an [`Executor`], which talks to `vdisim serve`
//! (its control socket, or TDS to any TDS server).
//!
//! Backup programs start `sqlcmd -S server -E -b -Q "BACKUP DATABASE ..."`
//! and read its output and exit code; installing vdisim under the name
//! `sqlcmd` ([`invoked_as_sqlcmd`]) lets them run unchanged.
//!
//! ## Options
//!
//! Honoured: `-S server` (`tcp:HOST[,PORT]` or `HOST,PORT`: TDS to any
//! TDS server, see [`tds_executor`]; anything else: a `vdisim serve`
//! socket), `-U user`, `-P password`, `-E` (trusted),
//! `-d database`, `-Q text` (run, then exit), `-q text` (run, then read
//! standard input), `-i file[,file...]` (may repeat), `-o file` (recorded in
//! [`SqlcmdArgs::output_file`]; the caller opens it and passes it as `out`),
//! `-b` (exit 1 on the first error), `-r[0|1]` (error messages, or all
//! messages, to standard error), `-c terminator` (instead of `GO`),
//! `-t seconds` (query timeout: 0, the default, waits forever; 1 to 65534
//! as with sqlcmd, anything else is a usage error), `-?` or `--help`.
//! A value may follow its option as the next argument (`-S host`) or be
//! attached (`-Shost`).
//!
//! Accepted and ignored ([`IGNORED_OPTIONS`]): `-C`, `-l n`, `-h n`,
//! `-W`, `-s x`, `-w n`, `-x`, `-X[1]`, `-N[s|m|o]`, `-m n`, `-V n`, `-I`,
//! `-e`, `-H name`, `-a n`, `-u`, `-k[1|2]`. Numeric values are checked.
//!
//! Anything else is sqlcmd's "Unknown Option" error, exit code 1.
//!
//! ## Input
//!
//! `-i` files are read as sqlcmd reads them: UTF-8 with or without a byte
//! order mark, or UTF-16 (little- or big-endian) with one ([`input`]).
//! Anything else — bytes that are not UTF-8 without a mark, NUL bytes
//! (UTF-16 saved without a mark), a broken UTF-16 file — is refused
//! before anything runs, with the file, the offset and how to save it; a
//! file that does not exist is sqlcmd's "Invalid filename.". Standard
//! input must be UTF-8 (a leading byte order mark is dropped); other bytes
//! end the run with a message and exit code 1.
//!
//! A batch (or `-i` file) larger than
//! [`vdi_spec::bounds::BATCH_BYTES_MAX`] is not sent: a message gives its
//! size and the limit, and the run ends with exit code 1 (a simulator
//! limit, not sqlcmd's: failing loudly beats a partial script).
//!
//! ## Output
//!
//! Informational messages (severity 10 or less) print as their text, one
//! per line; errors as sqlcmd's two lines:
//!
//! ```text
//! Msg 3201, Level 16, State 1, Server vdisim, Line 1
//! Cannot open backup device 'x'. ...
//! ```
//!
//! Both go to `out` (standard output), as with sqlcmd, unless `-r` is given.
//! sqlcmd's own errors (an invalid `-i` file, no connection) go to `err`.
//! In interactive mode the prompts (`1> `, `2> `, ...) go to `out`, as sqlcmd
//! prints them even when standard input is not a terminal.
//!
//! ## A lost connection, a timeout, Ctrl-C
//!
//! - **The connection ends** (end of stream or reset — the server process
//!   died, or dropped the connection) while a batch's answer is awaited:
//!   `err` gets what sqlcmd prints when its connection is lost,
//!
//!   ```text
//!   Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : TCP Provider: An existing connection was forcibly closed by the remote host.
//!   Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : Communication link failure.
//!   ```
//!
//!   and the run ends with exit code 1, with or without `-b`: a program
//!   that trusts the exit code never sees 0 for a backup that did not
//!   happen. (The hint to start `vdisim serve` is only for a server that
//!   cannot be reached at all.)
//! - **`-t` expires**: the executor cancels the batch (the server ends it,
//!   a BACKUP or RESTORE with Msg 3204 and 3013) and `err` gets
//!   `Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : Query
//!   timeout expired.` The timeout is an error like a server error: with
//!   `-b` the run ends with exit code 1; without it sqlcmd goes on with
//!   the next batch (and ends with 0, as after any error without `-b`).
//!   The cancelled batch's own messages are not printed: sqlcmd discards
//!   a batch's results once it has cancelled it.
//! - **Ctrl-C** while a batch runs (when the front end installs
//!   [`interrupt::CtrlCDuringBatch`]): the batch is cancelled the same
//!   way, `err` gets `Sqlcmd: Warning: The last operation was terminated
//!   because the user pressed CTRL+C.` and the run ends with exit code 1
//!   (inferred: sqlcmd's documentation gives no code for Ctrl-C; 1 is its
//!   failure code, what backup programs test). Ctrl-C outside a batch ends
//!   the process as the signal's default does.
//!
//! If no answer comes within 10 s of a cancel, the connection counts as
//! lost (above).
//!
//! ## Exit codes
//!
//! 0 when the run ends, even after server errors and timeouts, unless `-b`
//! is given: then the first error of severity above 10 (or timeout) ends
//! the run with 1. No connection, a lost connection, Ctrl-C, a bad option,
//! an unreadable `-i` file or standard input, a batch too large: 1.
//! `-?`: 0.

use crate::tsql;
use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;
use vdi_model::outcome::SqlMessage;
use vdi_spec::bounds::BATCH_BYTES_MAX;

/// What `-Q` or `-q` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// `-Q text`: run the text, then exit.
    RunAndExit(String),
    /// `-q text`: run the text, then read batches from standard input.
    RunThenInteractive(String),
}

/// Which messages `-r` sends to standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redirect {
    /// `-r` or `-r0`: error messages (severity above 10).
    Errors,
    /// `-r1`: every message.
    All,
}

/// A sqlcmd command line, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlcmdArgs {
    /// `-S`: the server to connect to.
    pub server: Option<String>,
    /// `-U`: login name.
    pub user: Option<String>,
    /// `-P`: password.
    pub password: Option<String>,
    /// `-E`: trusted connection.
    pub trusted: bool,
    /// `-d`: the database the session starts in.
    pub database: Option<String>,
    /// `-b`: end the run with exit code 1 on the first error.
    pub abort_on_error: bool,
    /// `-Q` or `-q`.
    pub query: Option<Query>,
    /// `-i`: scripts to run, in order.
    pub input_files: Vec<PathBuf>,
    /// `-o`: where output should go; [`run`] writes to the `out` it is
    /// given, so the caller opens this file.
    pub output_file: Option<PathBuf>,
    /// `-r`: messages to standard error.
    pub redirect: Option<Redirect>,
    /// `-c`: the batch terminator, `GO` by default.
    pub batch_terminator: String,
    /// `-t`: seconds a batch may run before it is cancelled (`-t 0`, or
    /// no `-t`: no limit).
    pub query_timeout: Option<u32>,
    /// `-?` or `--help`: print usage and exit 0.
    pub help: bool,
    /// Ignored options as given (`-C`, `-l 30`, ...), for diagnostics.
    pub ignored: Vec<String>,
}

impl Default for SqlcmdArgs {
    fn default() -> Self {
        SqlcmdArgs {
            server: None,
            user: None,
            password: None,
            trusted: false,
            database: None,
            abort_on_error: false,
            query: None,
            input_files: Vec::new(),
            output_file: None,
            redirect: None,
            batch_terminator: "GO".to_string(),
            query_timeout: None,
            help: false,
            ignored: Vec::new(),
        }
    }
}

/// A bad command line, worded as sqlcmd words it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum UsageError {
    /// An option sqlcmd (or this look-alike) does not know, or a stray word.
    #[error("Sqlcmd: '{0}': Unknown Option. Enter '-?' for help.")]
    UnknownOption(String),
    /// An option that needs a value came last.
    #[error("Sqlcmd: '{0}': Missing argument. Enter '-?' for help.")]
    MissingArgument(String),
    /// A value of the wrong form (`-l abc`).
    #[error("Sqlcmd: '{option} {value}': Invalid argument. Enter '-?' for help.")]
    InvalidArgument {
        /// The option, with its dash.
        option: String,
        /// The value given.
        value: String,
    },
    /// A number outside the option's range (`-t 70000`).
    #[error(
        "Sqlcmd: '{option} {value}': value must be greater than or equal to {min} and less than or equal to {max}."
    )]
    OutOfRange {
        /// The option, with its dash.
        option: String,
        /// The value given.
        value: String,
        /// The smallest value allowed.
        min: i64,
        /// The largest value allowed.
        max: i64,
    },
    /// Two options that cannot go together.
    #[error("Sqlcmd: The {0} and the {1} options are mutually exclusive.")]
    Exclusive(&'static str, &'static str),
}

/// The largest `-t` sqlcmd accepts, in seconds.
pub const QUERY_TIMEOUT_MAX: u32 = 65534;

impl UsageError {
    /// sqlcmd's exit code for a bad command line.
    pub fn exit_code(&self) -> i32 {
        1
    }
}

/// Options accepted and ignored, with the form of their value.
pub const IGNORED_OPTIONS: &[(char, ValueForm)] = &[
    ('C', ValueForm::None),
    ('l', ValueForm::Number),
    ('h', ValueForm::Number),
    ('W', ValueForm::None),
    ('s', ValueForm::Text),
    ('w', ValueForm::Number),
    ('x', ValueForm::None),
    ('X', ValueForm::Attached),
    ('N', ValueForm::Attached),
    ('m', ValueForm::Number),
    ('V', ValueForm::Number),
    ('I', ValueForm::None),
    ('e', ValueForm::None),
    ('H', ValueForm::Text),
    ('a', ValueForm::Number),
    ('u', ValueForm::None),
    ('k', ValueForm::Attached),
];

/// The value an option takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueForm {
    /// A flag.
    None,
    /// Any text, attached or as the next argument.
    Text,
    /// An integer, attached or as the next argument.
    Number,
    /// An optional value, attached only (`-X1`, `-Ns`).
    Attached,
}

/// Parses sqlcmd's arguments (without the program name).
pub fn parse_args(args: &[String]) -> Result<SqlcmdArgs, UsageError> {
    let mut a = SqlcmdArgs::default();
    let mut i = 0;
    let (mut saw_q, mut saw_big_q) = (false, false);
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "-?" || arg == "/?" || arg == "--help" {
            a.help = true;
            return Ok(a);
        }
        let mut chars = arg.chars();
        let (Some('-'), Some(opt)) = (chars.next(), chars.next()) else {
            return Err(UsageError::UnknownOption(arg.clone()));
        };
        let attached = chars.as_str();
        let name = format!("-{opt}");
        let form = match opt {
            'S' | 'U' | 'P' | 'd' | 'Q' | 'q' | 'i' | 'o' | 'c' => ValueForm::Text,
            't' => ValueForm::Number,
            'E' | 'b' => ValueForm::None,
            'r' => ValueForm::Attached,
            _ => match IGNORED_OPTIONS.iter().find(|(c, _)| *c == opt) {
                Some((_, form)) => *form,
                None => return Err(UsageError::UnknownOption(arg.clone())),
            },
        };
        let value = match form {
            ValueForm::None if !attached.is_empty() => {
                return Err(UsageError::UnknownOption(arg.clone()));
            }
            ValueForm::None => String::new(),
            ValueForm::Attached => attached.to_string(),
            ValueForm::Text | ValueForm::Number if !attached.is_empty() => attached.to_string(),
            ValueForm::Text | ValueForm::Number => match args.get(i) {
                Some(v) => {
                    i += 1;
                    v.clone()
                }
                None => return Err(UsageError::MissingArgument(name)),
            },
        };
        let invalid = || UsageError::InvalidArgument {
            option: name.clone(),
            value: value.clone(),
        };
        if form == ValueForm::Number && value.parse::<i64>().is_err() {
            return Err(invalid());
        }
        match opt {
            'S' => a.server = Some(value),
            'U' => a.user = Some(value),
            'P' => a.password = Some(value),
            'E' => a.trusted = true,
            'd' => a.database = Some(value),
            'b' => a.abort_on_error = true,
            'Q' => {
                saw_big_q = true;
                a.query = Some(Query::RunAndExit(value));
            }
            'q' => {
                saw_q = true;
                a.query = Some(Query::RunThenInteractive(value));
            }
            'i' => a.input_files.extend(
                value
                    .split(',')
                    .filter(|f| !f.is_empty())
                    .map(PathBuf::from),
            ),
            'o' => a.output_file = Some(PathBuf::from(value)),
            't' => {
                let secs = value.parse::<i64>().map_err(|_| invalid())?;
                let max = i64::from(QUERY_TIMEOUT_MAX);
                if !(0..=max).contains(&secs) {
                    return Err(UsageError::OutOfRange {
                        option: name,
                        value,
                        min: 0,
                        max,
                    });
                }
                a.query_timeout = u32::try_from(secs).ok().filter(|s| *s > 0);
            }
            'c' if value.trim().is_empty() => return Err(invalid()),
            'c' => a.batch_terminator = value,
            'r' => {
                // `-r 1`: sqlcmd also takes the level as the next argument.
                let mut level = value.clone();
                if level.is_empty() && matches!(args.get(i).map(String::as_str), Some("0" | "1")) {
                    level = args[i].clone();
                    i += 1;
                }
                a.redirect = Some(match level.as_str() {
                    "" | "0" => Redirect::Errors,
                    "1" => Redirect::All,
                    _ => return Err(UsageError::UnknownOption(arg.clone())),
                });
            }
            _ => {
                a.ignored
                    .push(if form == ValueForm::None || form == ValueForm::Attached {
                        arg.clone()
                    } else {
                        format!("{name} {value}")
                    });
            }
        }
    }
    if a.trusted && (a.user.is_some() || a.password.is_some()) {
        return Err(UsageError::Exclusive("-E", "-U/-P"));
    }
    if saw_q && saw_big_q {
        return Err(UsageError::Exclusive("-Q", "-q"));
    }
    if !a.input_files.is_empty() && a.query.is_some() {
        return Err(UsageError::Exclusive("-i", "-Q/-q"));
    }
    Ok(a)
}

/// sqlcmd's usage text for `-?`, limited to what this look-alike serves.
pub const USAGE: &str = "\
Microsoft (R) SQL Server Command Line Tool, as played by vdisim
usage: sqlcmd [-S server] [-U login id] [-P password] [-E trusted connection]
  [-d use database name] [-Q \"cmdline query\" and exit] [-q \"cmdline query\"]
  [-i inputfile[,inputfile...]] [-o outputfile] [-b On error batch abort]
  [-r[0|1] msgs to stderr] [-c cmdend] [-t query timeout]
  [-? show syntax summary]
Accepted and ignored: -C -l -h -W -s -w -x -X -N -m -V -I -e -H -a -u -k
-S tcp:HOST[,PORT] or -S HOST,PORT: TDS to any SQL Server or vdisim serve --tds
  (no TLS: the server must allow unencrypted connections; -U defaults to sa,
  -P to $SQLCMDPASSWORD, else vdisim); any other -S: a vdisim serve socket.
Only BACKUP and RESTORE to or from VIRTUAL_DEVICE, and USE, are served.
";

/// A server message with the line SQL Server reports it at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerMessage {
    /// The message.
    pub msg: SqlMessage,
    /// 1-based line within the batch.
    pub line: u32,
}

/// What the server returned for a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchResult {
    /// Messages in the order the server sent them.
    pub messages: Vec<ServerMessage>,
    /// Result sets (a TDS server's answer to a SELECT), printed before the
    /// messages.
    pub result_sets: Vec<crate::tds::client::ResultSet>,
}

/// Why a batch could not reach the server.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ExecError {
    /// No connection could be made.
    #[error("cannot connect to server '{server}': {reason}")]
    Connect {
        /// The server asked for.
        server: String,
        /// What went wrong (connection refused, ...).
        reason: String,
    },
    /// The connection ended (end of stream, reset) or stopped answering
    /// while a batch's answer was awaited.
    #[error("the connection to the server was lost: {0}")]
    Lost(String),
    /// The batch ran past its `-t` timeout and was cancelled.
    #[error("Query timeout expired")]
    Timeout,
    /// The batch was cancelled by Ctrl-C.
    #[error("The last operation was terminated because the user pressed CTRL+C")]
    Cancelled,
    /// The server answered the batch with a refusal (the text says why).
    #[error("the server refused the batch: {0}")]
    Refused(String),
}

/// Sends batches to the server; the transport belongs to the implementor.
pub trait Executor {
    /// Connects before the first batch, as sqlcmd does at start-up, so a
    /// missing server is reported even when there is nothing to run.
    /// `database` is `-d`. The default does nothing (connect lazily).
    fn connect(&mut self, database: Option<&str>) -> Result<(), ExecError> {
        let _ = database;
        Ok(())
    }
    /// Runs one batch. `database` is `-d`, the session's starting database,
    /// passed with every batch: the session applies it once, at login, and
    /// keeps its current database (USE) across batches itself.
    /// `first_line` is the 1-based line of the batch within its script (1
    /// for `-Q`/`-q` text); SQL Server's line numbers stay batch-relative.
    ///
    /// `timeout` is `-t`: when it passes, the executor cancels the batch
    /// (the server ends it), waits for the batch's end and answers
    /// [`ExecError::Timeout`]. An executor that can be interrupted (Ctrl-C)
    /// answers [`ExecError::Cancelled`] the same way. A connection that
    /// ends while the answer is awaited, or gives no answer within a
    /// bounded time of a cancel, is [`ExecError::Lost`].
    fn execute(
        &mut self,
        batch: &str,
        database: Option<&str>,
        first_line: u32,
        timeout: Option<Duration>,
    ) -> Result<BatchResult, ExecError>;
}

/// Whether the program was started under the name `sqlcmd` (any case, with
/// or without `.exe`, any directory, `/` or `\` separators).
pub fn invoked_as_sqlcmd(argv0: &str) -> bool {
    let file = argv0.rsplit(['/', '\\']).next().unwrap_or(argv0);
    let stem = match file.len().checked_sub(4) {
        Some(cut) if file.is_char_boundary(cut) && file[cut..].eq_ignore_ascii_case(".exe") => {
            &file[..cut]
        }
        _ => file,
    };
    stem.eq_ignore_ascii_case("sqlcmd")
}

/// Whether the run goes on after a batch.
enum Flow {
    Continue,
    Exit(i32),
}

/// What sqlcmd prints before its own errors.
const ODBC: &str = "Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : ";

struct Session<'a> {
    args: &'a SqlcmdArgs,
    exec: &'a mut dyn Executor,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    server_name: &'a str,
}

impl Session<'_> {
    fn print(&mut self, m: &ServerMessage) -> io::Result<()> {
        let to_err = match self.args.redirect {
            None => false,
            Some(Redirect::Errors) => m.msg.is_error(),
            Some(Redirect::All) => true,
        };
        let w: &mut dyn Write = if to_err { self.err } else { self.out };
        if m.msg.is_error() {
            writeln!(
                w,
                "Msg {}, Level {}, State {}, Server {}, Line {}",
                m.msg.number, m.msg.level, m.msg.state, self.server_name, m.line
            )?;
        }
        writeln!(w, "{}", m.msg.text)
    }

    /// Reports `e` as sqlcmd does; says whether the run goes on.
    fn exec_error(&mut self, e: &ExecError) -> Flow {
        let lines: &[&str] = match e {
            ExecError::Connect { server, .. } => {
                let _ = writeln!(self.err, "{ODBC}{e}.");
                // The hint is for vdisim's own socket; a TDS server (-S
                // tcp:HOST,PORT or HOST,PORT) answered or refused for itself.
                if server.starts_with("tcp:") || server.contains(',') {
                    &[]
                } else {
                    &[
                        "vdisim plays the server: start `vdisim serve`, or set VDISIM_SERVER to the address of a running one.",
                    ]
                }
            }
            ExecError::Lost(_) => &[
                "TCP Provider: An existing connection was forcibly closed by the remote host.",
                "Communication link failure.",
            ],
            ExecError::Timeout => &["Query timeout expired."],
            ExecError::Cancelled => {
                let _ = writeln!(
                    self.err,
                    "Sqlcmd: Warning: The last operation was terminated because the user pressed CTRL+C."
                );
                &[]
            }
            ExecError::Refused(_) => {
                let _ = writeln!(self.err, "{ODBC}{e}.");
                &[]
            }
        };
        for l in lines {
            let _ = writeln!(self.err, "{ODBC}{l}");
        }
        match e {
            ExecError::Timeout if !self.args.abort_on_error => Flow::Continue,
            _ => Flow::Exit(1),
        }
    }

    /// Refuses a batch over [`BATCH_BYTES_MAX`].
    fn too_large(&mut self, first_line: u32, bytes: usize) -> Flow {
        let _ = writeln!(
            self.err,
            "Sqlcmd: Error: the batch starting at line {first_line} is {bytes} bytes; vdisim serve takes batches of at most {BATCH_BYTES_MAX} bytes (vdi_spec::bounds::BATCH_BYTES_MAX): split it with {}.",
            self.args.batch_terminator
        );
        Flow::Exit(1)
    }

    fn batch(&mut self, text: &str, first_line: u32, repeat: u32) -> Flow {
        if text.len() > BATCH_BYTES_MAX {
            return self.too_large(first_line, text.len());
        }
        let timeout = self
            .args
            .query_timeout
            .map(|s| Duration::from_secs(u64::from(s)));
        for _ in 0..repeat.max(1) {
            let db = self.args.database.as_deref();
            let result = match self.exec.execute(text, db, first_line, timeout) {
                Ok(r) => r,
                Err(e) => match self.exec_error(&e) {
                    Flow::Continue => continue,
                    exit => return exit,
                },
            };
            for rs in &result.result_sets {
                if print_rows(self.out, rs).is_err() {
                    return Flow::Exit(1);
                }
            }
            let mut failed = false;
            for m in &result.messages {
                failed |= m.msg.is_error();
                if self.print(m).is_err() {
                    return Flow::Exit(1);
                }
            }
            if failed && self.args.abort_on_error {
                return Flow::Exit(1);
            }
        }
        Flow::Continue
    }

    fn script(&mut self, text: &str) -> Flow {
        for b in tsql::split_batches_with(text, &self.args.batch_terminator) {
            if let Flow::Exit(code) = self.batch(&b.text, b.first_line, b.repeat) {
                return Flow::Exit(code);
            }
        }
        Flow::Continue
    }

    /// Reads one line of standard input into `line`: `Ok(false)` at its
    /// end; a message and `Err` when it is not UTF-8 or cannot be read.
    fn read_line(
        &mut self,
        stdin: &mut dyn BufRead,
        line: &mut String,
        line_no: u32,
    ) -> Result<bool, ()> {
        // A line longer than a batch may be is cut there (and refused as
        // the batch's), so a stream without newlines holds bounded memory.
        let limit = BATCH_BYTES_MAX as u64 + 1;
        match Read::take(&mut *stdin, limit).read_line(line) {
            Ok(0) => Ok(false),
            Ok(_) => {
                if line_no == 1
                    && let Some(rest) = line.strip_prefix('\u{feff}')
                {
                    *line = rest.to_string();
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let _ = writeln!(
                    self.err,
                    "Sqlcmd: Error: standard input is not UTF-8 text (line {line_no}); pipe T-SQL as UTF-8, or save it to a file and pass it with -i (which also reads UTF-16 with a byte order mark)."
                );
                Err(())
            }
            Err(e) => {
                let _ = writeln!(
                    self.err,
                    "Sqlcmd: Error: cannot read standard input (line {line_no}): {e}."
                );
                Err(())
            }
        }
    }

    /// Reads batches from `stdin` until EOF, `EXIT` or `QUIT`.
    fn interactive(&mut self, stdin: &mut dyn BufRead) -> Flow {
        let mut text = String::new();
        let mut first_line = 1u32;
        let mut line_no = 0u32;
        let mut prompt = 1u32;
        loop {
            if write!(self.out, "{prompt}> ").is_err() {
                return Flow::Exit(1);
            }
            let _ = self.out.flush();
            let mut line = String::new();
            match self.read_line(stdin, &mut line, line_no + 1) {
                Ok(true) => {}
                Ok(false) => break,
                Err(()) => return Flow::Exit(1),
            }
            line_no += 1;
            let word = line.trim();
            let command = word.strip_prefix(':').unwrap_or(word);
            if command.eq_ignore_ascii_case("EXIT") || command.eq_ignore_ascii_case("QUIT") {
                return Flow::Continue;
            }
            if command.eq_ignore_ascii_case("EXIT()") {
                return self.flush_pending(&text, first_line, 1);
            }
            if command.eq_ignore_ascii_case("RESET") {
                text.clear();
                prompt = 1;
                first_line = line_no + 1;
                continue;
            }
            if let Some(repeat) = tsql::terminator_count(&line, &self.args.batch_terminator) {
                if let Flow::Exit(code) = self.flush_pending(&text, first_line, repeat) {
                    return Flow::Exit(code);
                }
                text.clear();
                prompt = 1;
                first_line = line_no + 1;
                continue;
            }
            text.push_str(&line);
            if !line.ends_with('\n') {
                text.push('\n');
            }
            if text.len() > BATCH_BYTES_MAX {
                return self.too_large(first_line, text.len());
            }
            prompt += 1;
        }
        self.flush_pending(&text, first_line, 1)
    }

    fn flush_pending(&mut self, text: &str, first_line: u32, repeat: u32) -> Flow {
        if text.trim().is_empty() {
            Flow::Continue
        } else {
            self.batch(text, first_line, repeat)
        }
    }
}

/// Runs sqlcmd: `-Q`/`-q` text, or each `-i` file, or batches read from
/// `stdin`; returns sqlcmd's exit code. `server_name` is what the error
/// header names (`Msg ..., Server <server_name>, Line n`).
pub fn run(
    args: &SqlcmdArgs,
    exec: &mut dyn Executor,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
    server_name: &str,
) -> i32 {
    if args.help {
        return match out.write_all(USAGE.as_bytes()) {
            Ok(()) => 0,
            Err(_) => 1,
        };
    }
    // sqlcmd checks every input file before it runs anything.
    let mut scripts = Vec::with_capacity(args.input_files.len());
    for path in &args.input_files {
        match input::read_script(path) {
            Ok(text) => scripts.push(text),
            Err(e) => {
                let _ = writeln!(err, "{}", e.message(path));
                return 1;
            }
        }
    }
    let mut s = Session {
        args,
        exec,
        out,
        err,
        server_name,
    };
    if let Err(e) = s.exec.connect(args.database.as_deref()) {
        s.exec_error(&e);
        return 1;
    }
    let flow = match &args.query {
        Some(Query::RunAndExit(q)) => s.script(q),
        Some(Query::RunThenInteractive(q)) => match s.script(q) {
            Flow::Continue => s.interactive(stdin),
            exit => exit,
        },
        None if !scripts.is_empty() => {
            let mut flow = Flow::Continue;
            for text in &scripts {
                flow = s.script(text);
                if matches!(flow, Flow::Exit(_)) {
                    break;
                }
            }
            flow
        }
        None => s.interactive(stdin),
    };
    let _ = s.out.flush();
    match flow {
        Flow::Continue => 0,
        Flow::Exit(code) => code,
    }
}

/// Prints a result set as sqlcmd does: the column names, a line of
/// dashes, the rows (NULL as `NULL`), a blank line, `(N rows affected)`.
/// Columns are as wide as their widest value or name.
fn print_rows(w: &mut dyn Write, rs: &crate::tds::client::ResultSet) -> io::Result<()> {
    let cell = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".into());
    let widths: Vec<usize> = (0..rs.columns.len())
        .map(|i| {
            rs.rows
                .iter()
                .map(|r| r.get(i).map_or(0, |v| cell(v).chars().count()))
                .chain([rs.columns[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<String>| -> String {
        vals.iter()
            .zip(&widths)
            .map(|(v, n)| format!("{v:<n$}"))
            .collect::<Vec<_>>()
            .join(" ")
            .trim_end()
            .to_string()
    };
    writeln!(w, "{}", line(rs.columns.clone()))?;
    writeln!(
        w,
        "{}",
        line(widths.iter().map(|n| "-".repeat(*n)).collect())
    )?;
    for r in &rs.rows {
        writeln!(w, "{}", line(r.iter().map(cell).collect()))?;
    }
    writeln!(w)?;
    let n = rs.rows.len();
    writeln!(w, "({n} {} affected)", if n == 1 { "row" } else { "rows" })
}

pub mod input;
#[cfg(unix)]
pub mod interrupt;
#[cfg(unix)]
mod serve_executor;
#[cfg(unix)]
pub use serve_executor::{CANCEL_GRACE, STATUS_WAIT, ServeExecutor};
#[cfg(unix)]
pub mod tds_executor;
#[cfg(unix)]
pub use tds_executor::TdsExecutor;

#[cfg(test)]
mod tests;
