use super::*;
use crate::tsql::{ParsedStatement, parse_batch_located};
use std::io::Cursor;
use std::time::Duration;
use vdi_model::server::messages;
use vdi_model::statement::Statement;
use vdi_spec::Win32;

fn args(list: &[&str]) -> Result<SqlcmdArgs, UsageError> {
    parse_args(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

fn ok(list: &[&str]) -> SqlcmdArgs {
    args(list).unwrap()
}

/// A server in miniature: parses each batch with the tsql module and
/// answers from the device name: `missing` fails to open, `abort` fails
/// with operating system error 995, anything else succeeds.
#[derive(Default)]
struct Fake {
    calls: Vec<(String, Option<String>, u32)>,
    /// The timeout each call was given.
    timeouts: Vec<Option<Duration>>,
    /// Refuses to connect, as the server named here.
    refuse_connect: Option<&'static str>,
    /// The call (0-based) that fails, and how: the batch counts as sent.
    fail_at: Option<(usize, ExecError)>,
}

impl Fake {
    fn failing(at: usize, e: ExecError) -> Fake {
        Fake {
            fail_at: Some((at, e)),
            ..Fake::default()
        }
    }
}

fn outcome(s: &Statement, line: u32) -> Vec<ServerMessage> {
    let at = |msg| ServerMessage { msg, line };
    let dev = s.devices[0].as_str();
    match dev {
        "missing" => vec![
            at(messages::cannot_open(dev)),
            at(messages::terminating(s.kind)),
        ],
        // The 995 variant of Msg 3201 (a client that aborted before the
        // server opened the set) has no function in messages.rs.
        "abort" => vec![
            at(SqlMessage::error(
                3201,
                format!(
                    "Cannot open backup device '{dev}'. Operating system error {}({}).",
                    Win32::ERROR_OPERATION_ABORTED.0,
                    Win32::ERROR_OPERATION_ABORTED.message()
                ),
            )),
            at(messages::terminating(s.kind)),
        ],
        _ => {
            let bytes = 4 << 20;
            let pages = messages::pages(bytes);
            vec![
                at(messages::processed(pages, &s.database, 1)),
                at(messages::success(s.kind.verb(), pages, bytes, 1250)),
            ]
        }
    }
}

impl Executor for Fake {
    fn connect(&mut self, _database: Option<&str>) -> Result<(), ExecError> {
        if let Some(server) = self.refuse_connect {
            return Err(ExecError::Connect {
                server: server.into(),
                reason: "connection refused".into(),
            });
        }
        Ok(())
    }

    fn execute(
        &mut self,
        batch: &str,
        database: Option<&str>,
        first_line: u32,
        timeout: Option<Duration>,
    ) -> Result<BatchResult, ExecError> {
        self.calls
            .push((batch.to_string(), database.map(String::from), first_line));
        self.timeouts.push(timeout);
        if let Some((at, e)) = &self.fail_at
            && *at + 1 == self.calls.len()
        {
            return Err(e.clone());
        }
        let mut messages = Vec::new();
        match parse_batch_located(batch) {
            Err(e) => messages.push(ServerMessage {
                msg: e.to_message(),
                line: e.line,
            }),
            Ok(list) => {
                for st in list {
                    match st.statement {
                        ParsedStatement::Use(db) => messages.push(ServerMessage {
                            msg: SqlMessage::info(
                                5701,
                                format!("Changed database context to '{db}'."),
                            ),
                            line: st.line,
                        }),
                        ParsedStatement::Run(s, _) => messages.extend(outcome(&s, st.line)),
                        ParsedStatement::Database(_) | ParsedStatement::Kill(_) => {}
                    }
                }
            }
        }
        Ok(BatchResult {
            messages,
            ..BatchResult::default()
        })
    }
}

struct Run {
    code: i32,
    out: String,
    err: String,
    fake: Fake,
}

fn run_with(list: &[&str], stdin: &str, fake: Fake) -> Run {
    let a = ok(list);
    let mut fake = fake;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(
        &a,
        &mut fake,
        &mut Cursor::new(stdin.as_bytes().to_vec()),
        &mut out,
        &mut err,
        "vdisim",
    );
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
        fake,
    }
}

fn run_q(list: &[&str]) -> Run {
    run_with(list, "", Fake::default())
}

const OK_BACKUP: &str = "BACKUP DATABASE sales TO VIRTUAL_DEVICE='set1' WITH BLOCKSIZE=4096";
const FAIL_BACKUP: &str = "BACKUP DATABASE sales TO VIRTUAL_DEVICE='missing'";

/// A unique file under the temp dir, removed on drop.
struct TempScript(PathBuf);

impl TempScript {
    fn new(tag: &str, text: &str) -> TempScript {
        let p = std::env::temp_dir().join(format!(
            "vdisim-sqlcmd-{tag}-{}-{:?}.sql",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&p, text).unwrap();
        TempScript(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempScript {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn value_options_both_spellings() {
    let a = ok(&[
        "-S",
        "host,1433",
        "-Ualice",
        "-P",
        "pw",
        "-d",
        "sales",
        "-Q",
        "x",
    ]);
    assert_eq!(a.server.as_deref(), Some("host,1433"));
    assert_eq!(a.user.as_deref(), Some("alice"));
    assert_eq!(a.password.as_deref(), Some("pw"));
    assert_eq!(a.database.as_deref(), Some("sales"));
    assert_eq!(a.query, Some(Query::RunAndExit("x".into())));
    let b = ok(&["-Shost,1433", "-U", "alice", "-Ppw", "-dsales", "-Qx"]);
    assert_eq!(
        (b.server, b.user, b.password, b.database, b.query),
        (a.server, a.user, a.password, a.database, a.query)
    );
    let a = ok(&["-q", "select 1", "-o", "out.txt", "-c", "RUN"]);
    assert_eq!(a.query, Some(Query::RunThenInteractive("select 1".into())));
    assert_eq!(a.output_file, Some(PathBuf::from("out.txt")));
    assert_eq!(a.batch_terminator, "RUN");
    assert_eq!(
        ok(&["-qx"]).query,
        Some(Query::RunThenInteractive("x".into()))
    );
}

#[test]
fn flags_and_defaults() {
    let d = ok(&[]);
    assert_eq!(d, SqlcmdArgs::default());
    assert_eq!(d.batch_terminator, "GO");
    let a = ok(&["-E", "-b"]);
    assert!(a.trusted && a.abort_on_error);
    assert!(ok(&["-?"]).help);
    assert!(ok(&["-S", "x", "/?", "-Z"]).help);
}

#[test]
fn input_files_repeat_and_comma() {
    let a = ok(&["-i", "a.sql,b.sql", "-ic.sql", "-i", "d e.sql"]);
    let want: Vec<PathBuf> = ["a.sql", "b.sql", "c.sql", "d e.sql"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(a.input_files, want);
}

#[test]
fn redirect_forms() {
    assert_eq!(ok(&["-r"]).redirect, Some(Redirect::Errors));
    assert_eq!(ok(&["-r0"]).redirect, Some(Redirect::Errors));
    assert_eq!(ok(&["-r1"]).redirect, Some(Redirect::All));
    assert_eq!(ok(&["-r", "1", "-b"]).redirect, Some(Redirect::All));
    assert_eq!(ok(&["-r", "-b"]).redirect, Some(Redirect::Errors));
    assert_eq!(args(&["-r2"]), Err(UsageError::UnknownOption("-r2".into())));
}

#[test]
fn ignored_options() {
    let a = ok(&[
        "-C", "-l", "30", "-h", "-1", "-W", "-s", ",", "-w", "200", "-x", "-X", "-X1", "-N", "-Nm",
        "-m", "1", "-V", "16", "-I", "-e", "-H", "ws", "-a", "4096", "-u", "-k2",
    ]);
    assert_eq!(
        a.ignored,
        vec![
            "-C", "-l 30", "-h -1", "-W", "-s ,", "-w 200", "-x", "-X", "-X1", "-N", "-Nm", "-m 1",
            "-V 16", "-I", "-e", "-H ws", "-a 4096", "-u", "-k2",
        ]
    );
    assert_eq!(
        SqlcmdArgs {
            ignored: vec![],
            ..a
        },
        SqlcmdArgs::default()
    );
}

#[test]
fn usage_errors() {
    let e = args(&["-Z"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Sqlcmd: '-Z': Unknown Option. Enter '-?' for help."
    );
    assert_eq!(e.exit_code(), 1);
    assert_eq!(
        args(&["backup"]),
        Err(UsageError::UnknownOption("backup".into()))
    );
    assert_eq!(args(&["-"]), Err(UsageError::UnknownOption("-".into())));
    assert_eq!(args(&["-Ex"]), Err(UsageError::UnknownOption("-Ex".into())));
    let e = args(&["-E", "-S"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Sqlcmd: '-S': Missing argument. Enter '-?' for help."
    );
    let e = args(&["-l", "soon"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Sqlcmd: '-l soon': Invalid argument. Enter '-?' for help."
    );
    assert!(matches!(
        args(&["-c", " "]),
        Err(UsageError::InvalidArgument { .. })
    ));
    let e = args(&["-E", "-U", "sa"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Sqlcmd: The -E and the -U/-P options are mutually exclusive."
    );
    assert_eq!(
        args(&["-Q", "a", "-q", "b"]),
        Err(UsageError::Exclusive("-Q", "-q"))
    );
    assert_eq!(
        args(&["-i", "f", "-Q", "b"]),
        Err(UsageError::Exclusive("-i", "-Q/-q"))
    );
}

#[test]
fn sqlcmd_by_name() {
    for yes in [
        "sqlcmd",
        "SQLCMD.EXE",
        "/opt/mssql-tools18/bin/sqlcmd",
        r"C:\Tools\SqlCmd.exe",
        "sqlcmd.exe",
    ] {
        assert!(invoked_as_sqlcmd(yes), "{yes}");
    }
    for no in [
        "vdisim",
        "sqlcmd2",
        "/usr/bin/sqlcmd.sh",
        "",
        ".exe",
        "sqlcmd/vdisim",
        "é.exe",
    ] {
        assert!(!invoked_as_sqlcmd(no), "{no}");
    }
}

#[test]
fn success_output_and_exit_code() {
    let r = run_q(&[
        "-S",
        "localhost",
        "-E",
        "-d",
        "sales",
        "-b",
        "-Q",
        OK_BACKUP,
    ]);
    assert_eq!(r.code, 0);
    assert_eq!(r.err, "");
    assert_eq!(
        r.fake.calls,
        vec![(OK_BACKUP.to_string(), Some("sales".into()), 1)]
    );
    insta::assert_snapshot!("success_stdout", r.out);
}

#[test]
fn failure_output() {
    let q = format!("{FAIL_BACKUP}\nGO\nBACKUP LOG sales\n  TO VIRTUAL_DEVICE='abort'");
    let r = run_q(&["-Q", &q]);
    assert_eq!(r.code, 0, "without -b sqlcmd exits 0 after errors");
    assert_eq!(r.err, "");
    assert_eq!(r.fake.calls.len(), 2);
    insta::assert_snapshot!("failure_stdout", r.out);
}

#[test]
fn abort_on_error_stops_the_run() {
    let q = format!("{FAIL_BACKUP}\nGO\n{OK_BACKUP}");
    let r = run_q(&["-b", "-Q", &q]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.fake.calls.len(),
        1,
        "the batch after the error does not run"
    );
    let r = run_q(&["-Q", &q]);
    assert_eq!((r.code, r.fake.calls.len()), (0, 2));
}

#[test]
fn syntax_error_reports_its_line() {
    let r = run_q(&["-Q", "USE sales\nBACKUP DATABASE sales TO DISK='x'"]);
    assert_eq!(r.code, 0);
    assert!(
        r.out.starts_with(
            "Msg 50001, Level 16, State 1, Server vdisim, Line 2\nvdisim serves only VIRTUAL_DEVICE"
        ),
        "{}",
        r.out
    );
    let r = run_q(&["-b", "-Q", "BACKUP DATABASE"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.out,
        "Msg 156, Level 15, State 1, Server vdisim, Line 1\nIncorrect syntax near the keyword 'DATABASE'.\n"
    );
}

#[test]
fn redirect_sends_messages_to_stderr() {
    let q = format!("{OK_BACKUP}\nGO\n{FAIL_BACKUP}");
    let r = run_q(&["-r0", "-Q", &q]);
    assert!(
        r.out.contains("successfully processed") && !r.out.contains("Msg "),
        "{}",
        r.out
    );
    assert!(
        r.err.starts_with("Msg 3201, Level 16") && !r.err.contains("successfully"),
        "{}",
        r.err
    );
    let r = run_q(&["-r1", "-Q", &q]);
    assert_eq!(r.out, "");
    assert!(r.err.contains("successfully processed") && r.err.contains("Msg 3013"));
}

#[test]
fn connection_errors() {
    let fake = Fake {
        refuse_connect: Some("localhost"),
        ..Fake::default()
    };
    let r = run_with(&["-Q", OK_BACKUP], "", fake);
    assert_eq!(r.code, 1);
    assert_eq!(r.out, "");
    assert!(r.err.starts_with("Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : cannot connect to server 'localhost': connection refused.\n"), "{}", r.err);
    assert!(r.err.contains("start `vdisim serve`, or set VDISIM_SERVER"));
    assert!(r.fake.calls.is_empty());
    // A TDS server refused for itself (a failed login): no hint about
    // vdisim's socket.
    for server in ["tcp:127.0.0.1,1433", "db.example,1433"] {
        let fake = Fake {
            refuse_connect: Some(server),
            ..Fake::default()
        };
        let r = run_with(&["-Q", OK_BACKUP], "", fake);
        assert_eq!(r.code, 1);
        assert!(
            r.err
                .contains(&format!("cannot connect to server '{server}'")),
            "{}",
            r.err
        );
        assert!(!r.err.contains("vdisim serve"), "{}", r.err);
    }
}

const LOST_LINES: &str = "Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : TCP Provider: An existing connection was forcibly closed by the remote host.\n\
Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : Communication link failure.\n";

#[test]
fn a_lost_connection_prints_sqlcmds_lines_and_exits_1_even_without_b() {
    for b in [&[][..], &["-b"]] {
        let fake = Fake::failing(1, ExecError::Lost("connection reset by peer".into()));
        let q = format!("{OK_BACKUP}\nGO\n{OK_BACKUP}\nGO\n{OK_BACKUP}");
        let mut list = vec!["-Q", &q];
        list.extend_from_slice(b);
        let r = run_with(&list, "", fake);
        assert_eq!(r.code, 1, "{b:?}");
        assert_eq!(r.fake.calls.len(), 2, "nothing runs after the loss");
        assert_eq!(r.err, LOST_LINES, "no hint to start a server");
        assert_eq!(r.out.matches("successfully processed").count(), 1);
    }
}

#[test]
fn a_timeout_is_an_error_the_run_survives_without_b() {
    let q = format!("{OK_BACKUP}\nGO\n{OK_BACKUP}");
    let r = run_with(
        &["-t", "5", "-Q", &q],
        "",
        Fake::failing(0, ExecError::Timeout),
    );
    assert_eq!(r.code, 0);
    assert_eq!(
        r.err,
        "Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : Query timeout expired.\n"
    );
    assert_eq!(r.fake.calls.len(), 2, "the next batch runs");
    assert_eq!(r.fake.timeouts, vec![Some(Duration::from_secs(5)); 2]);
    assert_eq!(r.out.matches("successfully processed").count(), 1);
    let r = run_with(
        &["-b", "-t", "5", "-Q", &q],
        "",
        Fake::failing(0, ExecError::Timeout),
    );
    assert_eq!((r.code, r.fake.calls.len()), (1, 1));
    assert_eq!(r.out, "", "the cancelled batch prints nothing");
}

#[test]
fn ctrl_c_warns_and_ends_the_run() {
    let q = format!("{OK_BACKUP}\nGO\n{OK_BACKUP}");
    let r = run_with(&["-Q", &q], "", Fake::failing(0, ExecError::Cancelled));
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        "Sqlcmd: Warning: The last operation was terminated because the user pressed CTRL+C.\n"
    );
    assert_eq!(r.fake.calls.len(), 1);
}

#[test]
fn a_refused_batch_says_why() {
    let r = run_with(
        &["-Q", OK_BACKUP],
        "",
        Fake::failing(
            0,
            ExecError::Refused("protocol 9 is not this server's (2)".into()),
        ),
    );
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        "Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : the server refused the batch: protocol 9 is not this server's (2).\n"
    );
}

#[test]
fn query_timeout_option() {
    assert_eq!(ok(&["-t", "30"]).query_timeout, Some(30));
    assert_eq!(ok(&["-t65534"]).query_timeout, Some(65534));
    assert_eq!(ok(&["-t", "0"]).query_timeout, None);
    assert_eq!(ok(&[]).query_timeout, None);
    for bad in ["65535", "-1", "9223372036854775807"] {
        let e = args(&["-t", bad]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "Sqlcmd: '-t {bad}': value must be greater than or equal to 0 and less than or equal to 65534."
            )
        );
        assert_eq!(e.exit_code(), 1);
    }
    for bad in ["soon", "99999999999999999999", "1.5"] {
        assert!(
            matches!(args(&["-t", bad]), Err(UsageError::InvalidArgument { .. })),
            "{bad}"
        );
    }
    assert_eq!(args(&["-t"]), Err(UsageError::MissingArgument("-t".into())));
    let r = run_q(&["-Q", OK_BACKUP]);
    assert_eq!(r.fake.timeouts, vec![None]);
}

#[test]
fn help_in_both_spellings() {
    assert!(ok(&["--help"]).help);
    assert!(ok(&["-S", "x", "--help"]).help);
    let r = run_q(&["--help"]);
    assert_eq!(r.code, 0);
    assert!(r.out.contains("[-t query timeout]"), "{}", r.out);
    assert!(!r.out.contains("ignored: -C -l -t"), "{}", r.out);
}

#[test]
fn input_files_split_on_go() {
    let a = TempScript::new(
        "a",
        "USE sales\ngo\n\n-- the backup\nBACKUP DATABASE sales\n TO VIRTUAL_DEVICE='v'\r\nGO 2\n",
    );
    let b = TempScript::new("b", "BACKUP LOG sales TO VIRTUAL_DEVICE='w'");
    let r = run_q(&["-i", &format!("{},{}", a.path(), b.path())]);
    assert_eq!(r.code, 0, "{}", r.err);
    let lines: Vec<u32> = r.fake.calls.iter().map(|c| c.2).collect();
    assert_eq!(lines, vec![1, 3, 3, 1]);
    assert_eq!(
        r.fake.calls[1].0,
        "\n-- the backup\nBACKUP DATABASE sales\n TO VIRTUAL_DEVICE='v'\r\n"
    );
    assert_eq!(r.out.matches("BACKUP DATABASE successfully").count(), 2);
    assert!(r.out.starts_with("Changed database context to 'sales'.\n"));
}

#[test]
fn missing_input_file() {
    let a = TempScript::new("present", OK_BACKUP);
    let missing =
        std::env::temp_dir().join(format!("vdisim-sqlcmd-absent-{}.sql", std::process::id()));
    let m = missing.to_str().unwrap();
    let r = run_q(&["-i", a.path(), "-i", m]);
    assert_eq!(r.code, 1);
    assert_eq!(r.err, format!("Sqlcmd: '{m}': Invalid filename.\n"));
    assert!(
        r.fake.calls.is_empty(),
        "nothing runs when a file is missing"
    );
}

#[test]
fn stdin_batches_until_exit() {
    let input =
        format!("USE sales\n{OK_BACKUP}\ngo\n\nGO\n{FAIL_BACKUP}\nGO\nEXIT\n{OK_BACKUP}\nGO\n");
    let r = run_with(&[], &input, Fake::default());
    assert_eq!(r.code, 0);
    assert_eq!(r.fake.calls.len(), 2);
    assert_eq!(r.fake.calls[0].0, format!("USE sales\n{OK_BACKUP}\n"));
    assert_eq!(r.fake.calls[1].2, 6);
    insta::assert_snapshot!("stdin_stdout", r.out);
}

#[test]
fn stdin_end_runs_the_pending_batch_and_quit_drops_it() {
    let r = run_with(&[], OK_BACKUP, Fake::default());
    assert_eq!(r.fake.calls.len(), 1);
    let r = run_with(&[], &format!("{OK_BACKUP}\nQUIT\n"), Fake::default());
    assert_eq!(r.fake.calls.len(), 0);
    let r = run_with(&[], &format!("{OK_BACKUP}\n:exit\n"), Fake::default());
    assert_eq!(r.fake.calls.len(), 0);
    let r = run_with(&[], &format!("{OK_BACKUP}\nEXIT()\nGO\n"), Fake::default());
    assert_eq!(r.fake.calls.len(), 1);
    let r = run_with(
        &[],
        &format!("junk\n:RESET\n{OK_BACKUP}\n"),
        Fake::default(),
    );
    assert_eq!(r.fake.calls, vec![(format!("{OK_BACKUP}\n"), None, 3)]);
    let r = run_with(
        &["-b"],
        &format!("{FAIL_BACKUP}\nGO\n{OK_BACKUP}\nGO\n"),
        Fake::default(),
    );
    assert_eq!((r.code, r.fake.calls.len()), (1, 1));
}

#[test]
fn query_then_interactive_and_terminator() {
    let r = run_with(
        &["-q", "USE sales", "-c", "RUN"],
        &format!("{OK_BACKUP}\nrun\n"),
        Fake::default(),
    );
    assert_eq!(r.code, 0);
    let batches: Vec<&str> = r.fake.calls.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        batches,
        vec!["USE sales".to_string(), format!("{OK_BACKUP}\n")]
    );
    // -Q does not read standard input.
    let r = run_with(&["-Q", "USE a"], OK_BACKUP, Fake::default());
    assert_eq!(r.fake.calls.len(), 1);
}

#[test]
fn help_prints_usage() {
    let r = run_q(&["-?"]);
    assert_eq!(r.code, 0);
    assert!(
        r.out
            .starts_with("Microsoft (R) SQL Server Command Line Tool")
    );
    assert!(r.fake.calls.is_empty());
}

// ----- input: encodings, sizes, standard input ---------------------------------------------

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let mut b = if big_endian {
        vec![0xFE, 0xFF]
    } else {
        vec![0xFF, 0xFE]
    };
    for u in text.encode_utf16() {
        b.extend_from_slice(&if big_endian {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        });
    }
    b
}

#[test]
fn scripts_decode_from_every_encoding_sqlcmd_reads() {
    use input::decode;
    let text = "USE [ventes–été]\r\nGO\nBACKUP DATABASE x TO VIRTUAL_DEVICE='😀'\n";
    assert_eq!(decode(text.as_bytes()).unwrap(), text);
    let bom8 = [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat();
    assert_eq!(decode(&bom8).unwrap(), text);
    assert_eq!(decode(&utf16(text, false)).unwrap(), text);
    assert_eq!(decode(&utf16(text, true)).unwrap(), text);
    assert_eq!(decode(b"").unwrap(), "");
    assert_eq!(decode(&[0xFF, 0xFE]).unwrap(), "");
}

#[test]
fn scripts_in_other_encodings_say_what_is_wrong_and_where() {
    use input::{EncodingError, decode};
    assert_eq!(
        decode(b"USE caf\xe9"),
        Err(EncodingError::NotUtf8 {
            offset: 7,
            byte: 0xE9
        })
    );
    // A UTF-8 mark then Latin-1: the offset counts the mark.
    assert_eq!(
        decode(b"\xEF\xBB\xBFab\xff"),
        Err(EncodingError::NotUtf8 {
            offset: 5,
            byte: 0xFF
        })
    );
    // UTF-16 saved without a mark.
    let no_mark = &utf16("GO", false)[2..];
    assert_eq!(decode(no_mark), Err(EncodingError::Nul { offset: 1 }));
    assert_eq!(
        decode(&[0xFF, 0xFE, b'a']),
        Err(EncodingError::OddUtf16 {
            encoding: "UTF-16LE"
        })
    );
    // 'a', then a lone high surrogate, then 'b'.
    assert_eq!(
        decode(&[0xFE, 0xFF, 0, b'a', 0xD8, 0x00, 0, b'b']),
        Err(EncodingError::UnpairedSurrogate {
            encoding: "UTF-16BE",
            offset: 4
        })
    );
    let e = decode(b"\x00").unwrap_err();
    assert!(e.to_string().contains("without a byte order mark"), "{e}");
}

/// A file under the temp dir holding `bytes`, removed on drop.
fn temp_bytes(tag: &str, bytes: &[u8]) -> TempScript {
    let t = TempScript::new(tag, "");
    std::fs::write(&t.0, bytes).unwrap();
    t
}

#[test]
fn input_files_in_utf16_run_and_bad_ones_are_named() {
    let le = temp_bytes("le", &utf16(&format!("{OK_BACKUP}\r\nGO\r\n"), false));
    let r = run_q(&["-i", le.path()]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.fake.calls[0].0, format!("{OK_BACKUP}\r\n"));
    let bad = temp_bytes("latin1", b"BACKUP DATABASE caf\xe9 TO VIRTUAL_DEVICE='v'");
    let r = run_q(&["-i", le.path(), "-i", bad.path()]);
    assert_eq!(r.code, 1);
    assert!(r.fake.calls.is_empty(), "nothing runs");
    assert_eq!(
        r.err,
        format!(
            "Sqlcmd: '{}': the file is not UTF-8 (byte 0xE9 at offset 19) and has no UTF-16 byte order mark; save it as UTF-8 (with or without a byte order mark) or as UTF-16 with a byte order mark.\n",
            bad.path()
        )
    );
}

#[test]
fn an_input_file_that_cannot_be_read_names_the_os_error() {
    let dir = std::env::temp_dir();
    let r = run_q(&["-i", dir.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.err.starts_with(&format!(
            "Sqlcmd: '{}': cannot read the file: ",
            dir.display()
        )),
        "{}",
        r.err
    );
}

#[test]
fn a_batch_over_the_bound_is_not_sent() {
    let big = format!("{OK_BACKUP}\n--{}", "x".repeat(BATCH_BYTES_MAX));
    let a = SqlcmdArgs {
        query: Some(Query::RunAndExit(format!("USE sales\nGO\n{big}"))),
        ..SqlcmdArgs::default()
    };
    let mut fake = Fake::default();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(
        &a,
        &mut fake,
        &mut Cursor::new(Vec::new()),
        &mut out,
        &mut err,
        "vdisim",
    );
    assert_eq!(code, 1);
    assert_eq!(fake.calls.len(), 1, "only the first batch is sent");
    assert_eq!(
        String::from_utf8(err).unwrap(),
        format!(
            "Sqlcmd: Error: the batch starting at line 3 is {} bytes; vdisim serve takes batches of at most {BATCH_BYTES_MAX} bytes (vdi_spec::bounds::BATCH_BYTES_MAX): split it with GO.\n",
            big.len()
        )
    );
}

#[test]
fn standard_input_over_the_bound_stops_reading() {
    // One line longer than a batch may be: read no further than the bound.
    let mut input = vec![b'-'; BATCH_BYTES_MAX + 10];
    input.extend_from_slice(b"\nGO\n");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut fake = Fake::default();
    let code = run(
        &SqlcmdArgs::default(),
        &mut fake,
        &mut Cursor::new(input),
        &mut out,
        &mut err,
        "vdisim",
    );
    assert_eq!(code, 1);
    assert!(fake.calls.is_empty());
    let err = String::from_utf8(err).unwrap();
    assert!(
        err.starts_with(&format!(
            "Sqlcmd: Error: the batch starting at line 1 is {} bytes",
            BATCH_BYTES_MAX + 2
        )),
        "{err}"
    );
}

#[test]
fn standard_input_must_be_utf8() {
    let r = run_with(&[], "", Fake::default());
    assert_eq!(r.code, 0);
    let a = SqlcmdArgs::default();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut fake = Fake::default();
    let bad = b"USE sales\nGO\nBACKUP \xff\n".to_vec();
    let code = run(
        &a,
        &mut fake,
        &mut Cursor::new(bad),
        &mut out,
        &mut err,
        "vdisim",
    );
    assert_eq!(code, 1);
    assert_eq!(fake.calls.len(), 1, "the batch before the bad line ran");
    assert_eq!(
        String::from_utf8(err).unwrap(),
        "Sqlcmd: Error: standard input is not UTF-8 text (line 3); pipe T-SQL as UTF-8, or save it to a file and pass it with -i (which also reads UTF-16 with a byte order mark).\n"
    );
    // A byte order mark before the first line is not part of the batch.
    let r = run_with(&[], &format!("\u{feff}{OK_BACKUP}\nGO\n"), Fake::default());
    assert_eq!(r.fake.calls[0].0, format!("{OK_BACKUP}\n"));
}

// ----- the transport: ServeExecutor against a fake vdisim serve --------------------------------

#[cfg(unix)]
mod transport {
    use super::super::{BatchResult, ExecError, Executor, ServeExecutor};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::PathBuf;
    use std::sync::atomic::AtomicBool;
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};
    use vdi_host::remote::wire::{self, Frame, LineMessage, Request, Response};
    use vdi_model::outcome::SqlMessage;

    /// Longest the fake waits for the client (a broken client fails the
    /// test rather than hanging it).
    const BOUND: Duration = Duration::from_secs(10);

    /// A fake `vdisim serve` for one connection: reads the client's hello,
    /// then runs `script` on the stream; the join handle gives what the
    /// script returns.
    fn fake<T: Send + 'static>(
        tag: &str,
        script: impl FnOnce(&mut UnixStream) -> T + Send + 'static,
    ) -> (PathBuf, JoinHandle<T>) {
        let path =
            std::env::temp_dir().join(format!("vdisim-sqlcmd-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let socket = path.clone();
        let h = std::thread::spawn(move || {
            let t0 = Instant::now();
            let accepted = loop {
                match listener.accept() {
                    Ok((s, _)) => break Ok(s),
                    Err(_) if t0.elapsed() < BOUND => std::thread::sleep(Duration::from_millis(2)),
                    Err(e) => break Err(e),
                }
            };
            // The socket's file is not needed once the client is in.
            let _ = std::fs::remove_file(&socket);
            let mut s = accepted.expect("a client connects");
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(BOUND)).unwrap();
            match wire::read_frame(&mut s) {
                Ok(Some(Frame::HelloControl { .. })) => {}
                other => panic!("expected a hello, got {other:?}"),
            }
            script(&mut s)
        });
        (path, h)
    }

    /// The next request, by name (`sql`, `cancel`, ...), or `end`.
    fn next(s: &mut UnixStream) -> String {
        match wire::read_frame(s) {
            Ok(Some(Frame::Request(Request::Sql { .. }))) => "sql".into(),
            Ok(Some(Frame::Request(Request::Cancel))) => "cancel".into(),
            Ok(Some(Frame::Request(Request::Status))) => "status".into(),
            Ok(Some(other)) => format!("{other:?}"),
            Ok(None) | Err(_) => "end".into(),
        }
    }

    fn answer(s: &mut UnixStream, r: Response) {
        wire::write_frame(s, &Frame::Response(r)).unwrap();
    }

    fn msg(number: u32, text: &str) -> LineMessage {
        LineMessage {
            message: if number == 3014 {
                SqlMessage::info(number, text)
            } else {
                SqlMessage::error(number, text)
            },
            line: 1,
        }
    }

    fn cancelled() -> Response {
        Response::Sql {
            messages: vec![
                msg(3204, "The backup or restore was aborted."),
                msg(3013, "BACKUP DATABASE is terminating abnormally."),
            ],
            cancelled: true,
        }
    }

    fn done() -> Response {
        Response::Sql {
            messages: vec![msg(3014, "BACKUP DATABASE successfully processed.")],
            cancelled: false,
        }
    }

    fn exec(path: &std::path::Path) -> ServeExecutor {
        let mut e = ServeExecutor::new(Some(path.to_str().unwrap()));
        e.set_cancel_grace(Duration::from_millis(200));
        e
    }

    fn batch(e: &mut ServeExecutor, timeout: Option<Duration>) -> Result<BatchResult, ExecError> {
        e.execute(
            "BACKUP DATABASE sales TO VIRTUAL_DEVICE='v'",
            None,
            1,
            timeout,
        )
    }

    #[test]
    fn a_connection_closed_before_the_answer_is_lost() {
        let (path, h) = fake("closed", next);
        let mut e = exec(&path);
        let r = batch(&mut e, None);
        assert!(matches!(r, Err(ExecError::Lost(_))), "{r:?}");
        assert_eq!(h.join().unwrap(), "sql");
    }

    #[test]
    fn a_connection_closed_inside_the_answer_is_lost() {
        let (path, h) = fake("half", |s| {
            let got = next(s);
            // A length announcing 100 bytes, then 3 of them.
            std::io::Write::write_all(s, &[100, 0, 0, 0, b'{', b'"', b't']).unwrap();
            got
        });
        let mut e = exec(&path);
        let r = batch(&mut e, None);
        assert!(matches!(r, Err(ExecError::Lost(_))), "{r:?}");
        assert_eq!(h.join().unwrap(), "sql");
    }

    #[test]
    fn a_connection_reset_with_the_batch_unread_is_lost() {
        // The server goes away without reading the request: the kernel
        // resets the connection.
        let (path, h) = fake("reset", |s| {
            let mut one = [0u8; 1];
            std::io::Read::read_exact(s, &mut one).unwrap();
        });
        let mut e = exec(&path);
        let r = batch(&mut e, None);
        assert!(matches!(r, Err(ExecError::Lost(_))), "{r:?}");
        h.join().unwrap();
    }

    #[test]
    fn a_timeout_sends_a_cancel_and_takes_the_cancelled_answer() {
        let (path, h) = fake("timeout", |s| {
            let mut seen = vec![next(s), next(s)];
            answer(s, cancelled());
            seen.push(next(s));
            answer(s, done());
            seen
        });
        let mut e = exec(&path);
        let r = batch(&mut e, Some(Duration::from_millis(50)));
        assert_eq!(r, Err(ExecError::Timeout));
        // The connection is still in step: the next batch gets its answer.
        let r = batch(&mut e, None).unwrap();
        assert_eq!(r.messages.len(), 1);
        assert_eq!(r.messages[0].msg.number, 3014);
        assert_eq!(h.join().unwrap(), ["sql", "cancel", "sql"]);
    }

    #[test]
    fn no_answer_after_the_cancel_is_a_lost_connection() {
        let (path, h) = fake("grace", |s| {
            let seen = vec![next(s), next(s)];
            // Holds the connection without answering, until the client
            // gives up and closes it.
            assert_eq!(next(s), "end");
            seen
        });
        let mut e = exec(&path);
        let r = batch(&mut e, Some(Duration::from_millis(50)));
        match r {
            Err(ExecError::Lost(why)) => assert!(why.contains("of the cancel"), "{why}"),
            other => panic!("{other:?}"),
        }
        drop(e);
        assert_eq!(h.join().unwrap(), ["sql", "cancel"]);
    }

    #[test]
    fn the_interrupt_flag_cancels_the_batch() {
        static FLAG: AtomicBool = AtomicBool::new(true);
        let (path, h) = fake("interrupt", |s| {
            let seen = vec![next(s), next(s)];
            answer(s, cancelled());
            seen
        });
        let mut e = exec(&path);
        e.watch_interrupt(&FLAG);
        assert_eq!(batch(&mut e, None), Err(ExecError::Cancelled));
        assert_eq!(h.join().unwrap(), ["sql", "cancel"]);
    }

    #[test]
    fn an_answer_in_time_is_not_cancelled() {
        let (path, h) = fake("intime", |s| {
            let got = next(s);
            answer(s, done());
            // Nothing more arrives: no cancel follows the answer.
            (got, next(s))
        });
        let mut e = exec(&path);
        let r = batch(&mut e, Some(Duration::from_secs(30))).unwrap();
        assert_eq!(r.messages[0].msg.number, 3014);
        drop(e);
        assert_eq!(h.join().unwrap(), ("sql".to_string(), "end".to_string()));
    }

    #[test]
    fn a_refusal_is_not_a_lost_connection() {
        let (path, h) = fake("refused", |s| {
            let got = next(s);
            answer(
                s,
                Response::Error {
                    message: "no such thing".into(),
                },
            );
            got
        });
        let mut e = exec(&path);
        assert_eq!(
            batch(&mut e, None),
            Err(ExecError::Refused("no such thing".into()))
        );
        assert_eq!(h.join().unwrap(), "sql");
    }

    #[test]
    fn the_server_name_comes_from_its_status() {
        let (path, h) = fake("status", |s| {
            let got = next(s);
            let status = vdi_host::remote::wire::ServerStatus {
                server: "PROD01".into(),
                ..Default::default()
            };
            answer(s, Response::Status { status });
            got
        });
        let mut e = exec(&path);
        assert_eq!(e.server_name().as_deref(), Some("PROD01"));
        assert_eq!(h.join().unwrap(), "status");
    }

    #[test]
    fn no_server_is_a_connect_error() {
        let path =
            std::env::temp_dir().join(format!("vdisim-sqlcmd-nobody-{}.sock", std::process::id()));
        let mut e = exec(&path);
        assert!(matches!(e.connect(None), Err(ExecError::Connect { .. })));
        assert_eq!(e.server_name(), None);
    }
}
