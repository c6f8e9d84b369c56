use super::*;
use crate::tsql::{ParsedStatement, parse_batch_located};
use std::io::Cursor;
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
    refuse_connect: bool,
    lose_after: Option<usize>,
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
        if self.refuse_connect {
            return Err(ExecError::Connect {
                server: "localhost".into(),
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
    ) -> Result<BatchResult, ExecError> {
        if self.lose_after == Some(self.calls.len()) {
            return Err(ExecError::Lost("connection reset by peer".into()));
        }
        self.calls
            .push((batch.to_string(), database.map(String::from), first_line));
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
                        ParsedStatement::Run(s) => messages.extend(outcome(&s, st.line)),
                    }
                }
            }
        }
        Ok(BatchResult { messages })
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
        "-C", "-l", "30", "-t60", "-h", "-1", "-W", "-s", ",", "-w", "200", "-x", "-X", "-X1",
        "-N", "-Nm", "-m", "1", "-V", "16", "-I", "-e", "-H", "ws", "-a", "4096", "-u", "-k2",
    ]);
    assert_eq!(
        a.ignored,
        vec![
            "-C", "-l 30", "-t 60", "-h -1", "-W", "-s ,", "-w 200", "-x", "-X", "-X1", "-N",
            "-Nm", "-m 1", "-V 16", "-I", "-e", "-H ws", "-a 4096", "-u", "-k2",
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
        refuse_connect: true,
        ..Fake::default()
    };
    let r = run_with(&["-Q", OK_BACKUP], "", fake);
    assert_eq!(r.code, 1);
    assert_eq!(r.out, "");
    assert!(r.err.starts_with("Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : cannot connect to server 'localhost': connection refused.\n"), "{}", r.err);
    assert!(r.err.contains("start `vdisim serve`, or set VDISIM_SERVER"));
    assert!(r.fake.calls.is_empty());
    let fake = Fake {
        lose_after: Some(1),
        ..Fake::default()
    };
    let r = run_with(
        &[
            "-Q",
            &format!("{OK_BACKUP}\nGO\n{OK_BACKUP}\nGO\n{OK_BACKUP}"),
        ],
        "",
        fake,
    );
    assert_eq!(r.code, 1);
    assert_eq!(r.fake.calls.len(), 1);
    assert!(
        r.err
            .contains("the connection to the server was lost: connection reset by peer.")
    );
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
