use super::*;
use proptest::prelude::*;

fn one(text: &str) -> Statement {
    match parse_batch(text).unwrap().as_slice() {
        [ParsedStatement::Run(s, _)] => s.clone(),
        other => panic!("expected one BACKUP/RESTORE, got {other:?}"),
    }
}

fn err(text: &str) -> SqlError {
    parse_batch(text).expect_err(text)
}

fn opts(block_size: u32, max_transfer_size: u32, buffer_count: Option<u32>) -> TransferOptions {
    TransferOptions {
        block_size,
        max_transfer_size,
        buffer_count,
    }
}

#[test]
fn backup_database_one_device_defaults() {
    let s = one("BACKUP DATABASE sales TO VIRTUAL_DEVICE = 'set1'");
    assert_eq!(s.kind, StatementKind::BackupDatabase);
    assert_eq!(s.database, "sales");
    assert_eq!(s.devices, vec!["set1"]);
    assert_eq!(s.options, TransferOptions::default());
    assert_eq!(s.plan, ServerPlan::default());
}

#[test]
fn every_statement_kind() {
    let cases = [
        (
            "BACKUP LOG d TO VIRTUAL_DEVICE='v'",
            StatementKind::BackupLog,
            "d",
        ),
        (
            "RESTORE DATABASE d FROM VIRTUAL_DEVICE='v'",
            StatementKind::RestoreDatabase,
            "d",
        ),
        (
            "RESTORE LOG d FROM VIRTUAL_DEVICE='v'",
            StatementKind::RestoreLog,
            "d",
        ),
        (
            "RESTORE HEADERONLY FROM VIRTUAL_DEVICE='v'",
            StatementKind::RestoreHeaderOnly,
            "",
        ),
        (
            "RESTORE FILELISTONLY FROM VIRTUAL_DEVICE='v'",
            StatementKind::RestoreFilelistOnly,
            "",
        ),
        (
            "RESTORE VERIFYONLY FROM VIRTUAL_DEVICE='v'",
            StatementKind::RestoreVerifyOnly,
            "",
        ),
    ];
    for (text, kind, db) in cases {
        let s = one(text);
        assert_eq!((s.kind, s.database.as_str()), (kind, db), "{text}");
        assert_eq!(s.devices, vec!["v"]);
    }
}

#[test]
fn keywords_any_case_and_national_literals() {
    let s = one(
        "backup Database [x] to virtual_device = n'a', Virtual_Device=N'b' with blocksize=4096, BufferCount = 20, maxtransfersize=524288",
    );
    assert_eq!(s.devices, vec!["a", "b"]);
    assert_eq!(s.options, opts(4096, 524288, Some(20)));
}

#[test]
fn identifier_forms() {
    assert_eq!(
        one("BACKUP DATABASE My_Db#1$ TO VIRTUAL_DEVICE='v'").database,
        "My_Db#1$"
    );
    assert_eq!(
        one("BACKUP DATABASE _x TO VIRTUAL_DEVICE='v'").database,
        "_x"
    );
    assert_eq!(
        one("BACKUP DATABASE [a]]b c] TO VIRTUAL_DEVICE='v'").database,
        "a]b c"
    );
    assert_eq!(
        one("BACKUP DATABASE \"q\"\"d\" TO VIRTUAL_DEVICE='v'").database,
        "q\"d"
    );
    assert_eq!(
        one("BACKUP DATABASE [select] TO VIRTUAL_DEVICE='v'").database,
        "select"
    );
    assert_eq!(
        one("BACKUP DATABASE ünïcødé TO VIRTUAL_DEVICE='v'").database,
        "ünïcødé"
    );
    assert_eq!(
        one("BACKUP DATABASE d TO VIRTUAL_DEVICE='it''s [x]'").devices,
        vec!["it's [x]"]
    );
}

#[test]
fn whitespace_newlines_and_comments() {
    let text = "/* header /* nested */ still comment */\n  BACKUP -- trailing\n\tDATABASE\r\n  d /* c */ TO\n VIRTUAL_DEVICE\n=\n'v' -- done";
    assert_eq!(one(text).database, "d");
    assert_eq!(
        parse_batch("-- only a comment\n/* and\nanother */  ").unwrap(),
        vec![]
    );
    assert_eq!(parse_batch("").unwrap(), vec![]);
    assert_eq!(parse_batch(" ;; ; ").unwrap(), vec![]);
    // Comment markers inside literals and identifiers are text.
    let s = one("BACKUP DATABASE [a--b] TO VIRTUAL_DEVICE='/*x*/'");
    assert_eq!(
        (s.database.as_str(), s.devices[0].as_str()),
        ("a--b", "/*x*/")
    );
}

#[test]
fn several_statements_and_use() {
    let text = "USE [master];\nBACKUP DATABASE a TO VIRTUAL_DEVICE='1' WITH INIT\nBACKUP LOG a TO VIRTUAL_DEVICE='2';;\n  use b";
    let got = parse_batch_located(text).unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].statement, ParsedStatement::Use("master".into()));
    assert_eq!((got[1].line, got[1].position), (2, 1));
    assert!(
        matches!(&got[2].statement, ParsedStatement::Run(s, _) if s.kind == StatementKind::BackupLog)
    );
    assert_eq!(got[3].statement, ParsedStatement::Use("b".into()));
    assert_eq!((got[3].line, got[3].position), (4, 3));
}

#[test]
fn ignored_options_are_accepted() {
    for o in KNOWN_OPTIONS {
        let text = format!("BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH {o}");
        // Honoured or read options that need a value are tested below.
        if [
            "BLOCKSIZE",
            "BUFFERCOUNT",
            "MAXTRANSFERSIZE",
            "MOVE",
            "FILE",
            "STANDBY",
            "MEDIANAME",
        ]
        .contains(o)
        {
            continue;
        }
        assert_eq!(one(&text).options, TransferOptions::default(), "{o}");
    }
    let s = one(
        "RESTORE DATABASE d FROM VIRTUAL_DEVICE='v' WITH REPLACE, NORECOVERY, STATS = 10, FILE = 1, \
         MOVE N'd' TO N'/var/opt/d.mdf', MOVE 'd_log' TO '/l.ldf', DESCRIPTION = N'nightly', NAME = 'n', \
         STANDBY = 'x', STOPATMARK = 'lsn:15000000040000037' AFTER '2024-01-01', RETAINDAYS = -1, \
         MEDIANAME = media1, ENCRYPTION (ALGORITHM = AES_256, SERVER CERTIFICATE = c), \
         COMPRESSION (ALGORITHM = ZSTD), CONTINUE_AFTER_ERROR, STATS, BLOCKSIZE = 65536",
    );
    assert_eq!(s.options, opts(65536, 65536, None));
    let s = one(
        "BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH FORMAT, INIT, COPY_ONLY, CHECKSUM, COMPRESSION, NOUNLOAD, SKIP, MAXTRANSFERSIZE=1048576",
    );
    assert_eq!(s.options, opts(512, 1 << 20, None));
}

fn with(text: &str) -> With {
    match parse_batch(text).unwrap().as_slice() {
        [ParsedStatement::Run(_, w)] => w.clone(),
        other => panic!("expected one BACKUP/RESTORE, got {other:?}"),
    }
}

/// The WITH options the server acts on are read; the last one wins.
#[test]
fn with_options_the_server_acts_on() {
    let w = with(
        "RESTORE DATABASE d FROM VIRTUAL_DEVICE='v' WITH REPLACE, NORECOVERY, STATS = 5, FILE = 2",
    );
    assert_eq!(
        w,
        With {
            recovery: Recovery::NoRecovery,
            replace: true,
            stats: Some(5),
            file: Some(2),
            ..With::default()
        }
    );
    assert_eq!(
        with("RESTORE LOG d FROM VIRTUAL_DEVICE='v' WITH NORECOVERY, RECOVERY, STATS").stats,
        Some(10)
    );
    assert_eq!(
        with("RESTORE LOG d FROM VIRTUAL_DEVICE='v' WITH STANDBY = N'/u.bak'").recovery,
        Recovery::Standby
    );
    let s = one("BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH DIFFERENTIAL, COPY_ONLY, CHECKSUM");
    assert_eq!(
        s.plan.media.backup_type,
        vdi_model::media::BackupType::Differential
    );
    assert!(s.plan.media.copy_only && s.plan.media.checksum);
    // FILE needs a value, as in SQL Server.
    let e = err("RESTORE DATABASE d FROM VIRTUAL_DEVICE='v' WITH FILE");
    assert_eq!(e.number, MSG_SYNTAX_KEYWORD);
}

/// The tape options are modelled (clause `tape.end-rewind`): MEDIANAME
/// (a literal, a word or a variable), REWIND | NOREWIND and UNLOAD |
/// NOUNLOAD reach the statement's plan, the last one given winning, and
/// the statement's text carries them back.
#[test]
fn tape_options_reach_the_plan() {
    let s = one(
        "BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH MEDIANAME = N'weekly', REWIND, NOREWIND, NOUNLOAD",
    );
    assert_eq!(s.plan.tape.media_name.as_deref(), Some("weekly"));
    assert!(!s.plan.tape.rewind && !s.plan.tape.unload);
    let again = one(&s.to_tsql());
    assert_eq!(again.plan.tape, s.plan.tape);
    let s = one("RESTORE DATABASE d FROM VIRTUAL_DEVICE='v' WITH NOUNLOAD, UNLOAD, MEDIANAME = m2");
    assert_eq!(s.plan.tape.media_name.as_deref(), Some("m2"));
    assert!(s.plan.tape.rewind && s.plan.tape.unload);
    let s = one(
        "DECLARE @m nvarchar(128) = N'x''y'; BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH MEDIANAME = @m",
    );
    assert_eq!(s.plan.tape.media_name.as_deref(), Some("x'y"));
    assert!(
        one("BACKUP DATABASE d TO VIRTUAL_DEVICE='v'")
            .plan
            .tape
            .is_default()
    );
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH MEDIANAME = 5");
    assert_eq!(e.number, MSG_SYNTAX);
}

/// SNAPSHOT and METADATA_ONLY are modelled (clause `snapshot.sequence`):
/// either makes the statement a snapshot one, and its text says SNAPSHOT.
#[test]
fn snapshot_options_reach_the_plan() {
    for o in ["SNAPSHOT", "METADATA_ONLY", "metadata_only"] {
        let s = one(&format!(
            "BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH {o}, BLOCKSIZE = 4096"
        ));
        assert!(s.plan.snapshot, "{o}");
        assert!(one(&s.to_tsql()).plan.snapshot);
    }
    assert!(
        one("RESTORE DATABASE d FROM VIRTUAL_DEVICE='v' WITH SNAPSHOT, NORECOVERY")
            .plan
            .snapshot
    );
    assert!(!one("BACKUP DATABASE d TO VIRTUAL_DEVICE='v'").plan.snapshot);
}

/// DECLARE and SET: string and integer variables stand for a database
/// name, a device name or an option's value.
#[test]
fn variables_stand_for_names_and_values() {
    let s = one(
        "DECLARE @db sysname = N'sales', @dev nvarchar(200), @bs int = 4096;\n         SET @dev = N'set-' ; SET @dev = N'set-1'\n         BACKUP DATABASE @db TO VIRTUAL_DEVICE = @dev WITH BLOCKSIZE = @bs",
    );
    assert_eq!(s.database, "sales");
    assert_eq!(s.devices, vec!["set-1"]);
    assert_eq!(s.options.block_size, 4096);
    // Undeclared, declared twice, used while NULL.
    assert_eq!(
        err("BACKUP DATABASE d TO VIRTUAL_DEVICE = @x").number,
        MSG_UNDECLARED_VARIABLE
    );
    assert_eq!(err("DECLARE @a int, @A int").number, MSG_VARIABLE_DECLARED);
    assert_eq!(
        err("DECLARE @d nvarchar(9); BACKUP DATABASE d TO VIRTUAL_DEVICE = @d").number,
        MSG_NOT_SERVED
    );
    assert_eq!(err("DECLARE @i int = N'x'").number, 245);
    // Session SETs are accepted and ignored.
    assert_eq!(
        parse_batch("SET NOCOUNT ON; SET XACT_ABORT ON").unwrap(),
        vec![]
    );
}

/// CREATE / DROP / ALTER DATABASE and RESTORE … WITH RECOVERY.
#[test]
fn database_statements() {
    let p = |t: &str| parse_batch(t).unwrap();
    assert_eq!(
        p(
            "CREATE DATABASE [new db]; DROP DATABASE IF EXISTS x; ALTER DATABASE d SET RECOVERY FULL; RESTORE DATABASE d WITH RECOVERY"
        ),
        vec![
            ParsedStatement::Database(DatabaseStatement::Create("new db".into())),
            ParsedStatement::Database(DatabaseStatement::Drop {
                database: "x".into(),
                if_exists: true
            }),
            ParsedStatement::Database(DatabaseStatement::SetRecovery {
                database: "d".into(),
                model: RecoveryModel::Full
            }),
            ParsedStatement::Database(DatabaseStatement::Recover("d".into())),
        ]
    );
    assert_eq!(err("CREATE TABLE t (a int)").number, MSG_NOT_SERVED);
    assert_eq!(err("CREATE DATABASE d ON PRIMARY").number, MSG_NOT_SERVED);
    assert_eq!(
        err("ALTER DATABASE d SET RECOVERY SOMETIMES").number,
        MSG_SYNTAX
    );
}

#[test]
fn last_honoured_option_wins() {
    let s = one("BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH BLOCKSIZE=1024, BLOCKSIZE=2048");
    assert_eq!(s.options.block_size, 2048);
}

#[test]
fn batch_splitting_on_go() {
    let script =
        "USE a\nGO\n\nBACKUP DATABASE a\n  TO VIRTUAL_DEVICE='v'\ngo 3\n  Go  \r\nGOTO x\nGOx\n";
    let b = split_batches(script);
    assert_eq!(b.len(), 3);
    assert_eq!(
        (b[0].text.as_str(), b[0].first_line, b[0].repeat),
        ("USE a\n", 1, 1)
    );
    assert_eq!(b[1].first_line, 3);
    assert_eq!(b[1].repeat, 3);
    assert_eq!(b[1].text, "\nBACKUP DATABASE a\n  TO VIRTUAL_DEVICE='v'\n");
    // Line 2 of batch 2 is line 4 of the script.
    let located = parse_batch_located(&b[1].text).unwrap();
    assert_eq!(located[0].line + b[1].first_line - 1, 4);
    assert_eq!((b[2].text.as_str(), b[2].first_line), ("GOTO x\nGOx\n", 8));
    assert_eq!(split_batches("GO\n  \nGO\n"), vec![]);
    assert_eq!(split_batches("x").len(), 1);
    assert_eq!(split_batches_with("a\n;;\nb", ";;").len(), 2);
    assert_eq!(terminator_count("go 0", "GO"), Some(1));
    assert_eq!(terminator_count("go x", "GO"), None);
    assert_eq!(terminator_count("g", "GO"), None);
}

fn check(e: &SqlError, number: u32, level: u8, line: u32, position: u32, near: &str) {
    assert_eq!(
        (e.number, e.level, e.line, e.position, e.near.as_str()),
        (number, level, line, position, near),
        "{e}"
    );
}

#[test]
fn error_incorrect_syntax() {
    let e = err("BACKUP DATABSE d TO VIRTUAL_DEVICE='v'");
    check(&e, 102, 15, 1, 8, "DATABSE");
    assert_eq!(e.text, "Incorrect syntax near 'DATABSE'.");
    // At the end of the batch the error is near the last token.
    let e = err("BACKUP DATABASE d\n  ");
    check(&e, 102, 15, 1, 17, "d");
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH BLOCKSIZE = x");
    check(&e, 102, 15, 1, 58, "x");
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH BLOCKSIZE = 1.5");
    check(&e, 102, 15, 1, 58, "1.5");
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE=v");
    check(&e, 102, 15, 1, 37, "v");
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE='v' junk");
    check(&e, 102, 15, 1, 41, "junk");
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE='v'\nWITH INIT,\n  FORMAT STATS");
    check(&e, 102, 15, 3, 10, "STATS");
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE 'v'");
    check(&e, 102, 15, 1, 37, "v");
    let e = err("RESTORE DATABASE d FROM VIRTUAL_DEVICE='v' WITH STATS = ,");
    check(&e, 102, 15, 1, 57, ",");
}

#[test]
fn error_keyword() {
    let e = err("BACKUP DATABASE d FROM VIRTUAL_DEVICE='v'");
    check(&e, 156, 15, 1, 19, "FROM");
    assert_eq!(e.text, "Incorrect syntax near the keyword 'FROM'.");
    let e = err("BACKUP DATABASE TO VIRTUAL_DEVICE='v'");
    check(&e, 156, 15, 1, 17, "TO");
    let e = err("RESTORE DATABASE d\nFROM");
    check(&e, 156, 15, 2, 1, "FROM");
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE='v' with");
    check(&e, 156, 15, 1, 41, "with");
    let e = err("BACKUP DATABASE select TO VIRTUAL_DEVICE='v'");
    check(&e, 156, 15, 1, 17, "select");
}

#[test]
fn error_unclosed_quote_and_comment() {
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE='abc\ndef");
    check(&e, 105, 15, 1, 37, "abc\ndef");
    assert_eq!(
        e.text,
        "Unclosed quotation mark after the character string 'abc\ndef'."
    );
    let e = err("BACKUP DATABASE [d TO VIRTUAL_DEVICE='v'");
    check(&e, 105, 15, 1, 17, "d TO VIRTUAL_DEVICE='v'");
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE=N'it''s");
    check(&e, 105, 15, 1, 37, "it''s");
    let e = err("BACKUP /* a /* b */ DATABASE");
    check(&e, 113, 15, 1, 8, "/*");
    assert_eq!(e.text, "Missing end comment mark '*/'.");
}

#[test]
fn error_unknown_option() {
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH INIT, FROBNICATE");
    check(&e, 155, 15, 1, 52, "FROBNICATE");
    assert_eq!(e.text, "'FROBNICATE' is not a recognized BACKUP option.");
    let e = err("restore headeronly from virtual_device='v' with Frob");
    assert_eq!(e.text, "'Frob' is not a recognized RESTORE option.");
}

#[test]
fn error_with_at_statement_start() {
    let e = err("WITH x AS (SELECT 1) SELECT 2");
    check(&e, 319, 15, 1, 1, "WITH");
    assert!(
        e.text
            .starts_with("Incorrect syntax near the keyword 'WITH'. If this statement")
    );
}

#[test]
fn error_variable_identifier_limits() {
    let e = err("BACKUP DATABASE @db TO VIRTUAL_DEVICE='v'");
    check(&e, 137, 15, 1, 17, "@db");
    assert_eq!(e.text, "Must declare the scalar variable \"@db\".");
    let e = err("BACKUP DATABASE [] TO VIRTUAL_DEVICE='v'");
    check(&e, 1038, 15, 1, 17, "");
    let long = "x".repeat(129);
    let e = err(&format!("USE {long}"));
    check(&e, 103, 15, 1, 5, &long);
    assert!(e.text.ends_with("is too long. Maximum length is 128."));
    parse_batch(&format!("USE [{}]", "é".repeat(128))).unwrap();
}

#[test]
fn error_option_values() {
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH INIT,\n BLOCKSIZE = 1000");
    check(&e, 3217, 16, 2, 2, "BLOCKSIZE");
    assert_eq!(
        e.text,
        "Invalid value specified for a WITH option: BLOCKSIZE = 1000: must be a power of 2 from 512 to 65536."
    );
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH MAXTRANSFERSIZE = 100000");
    check(&e, 3217, 16, 1, 46, "MAXTRANSFERSIZE");
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH BUFFERCOUNT=0");
    check(&e, 3217, 16, 1, 46, "BUFFERCOUNT");
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH BUFFERCOUNT=2147483648");
    check(&e, 8115, 16, 1, 58, "2147483648");
    assert_eq!(
        e.text,
        "Arithmetic overflow error converting expression to data type int."
    );
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE='v' WITH BLOCKSIZE 512");
    check(&e, 102, 15, 1, 56, "512");
}

#[test]
fn error_other_devices() {
    let e = err("BACKUP DATABASE d TO DISK = '/tmp/d.bak'");
    check(&e, 50001, 16, 1, 22, "DISK");
    assert!(e.text.contains("only VIRTUAL_DEVICE"), "{}", e.text);
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE='v', URL = 'https://x'");
    check(&e, 50001, 16, 1, 42, "URL");
    let e = err("RESTORE DATABASE d FROM mydevice");
    check(&e, 50001, 16, 1, 25, "mydevice");
    let e = err("RESTORE DATABASE d FROM 'v'");
    check(&e, 102, 15, 1, 25, "v");
    let devs: Vec<String> = (0..65).map(|i| format!("VIRTUAL_DEVICE='{i}'")).collect();
    let e = err(&format!("BACKUP DATABASE d TO {}", devs.join(",")));
    assert_eq!((e.number, e.level), (3205, 16));
    let devs: Vec<String> = (0..64).map(|i| format!("VIRTUAL_DEVICE='{i}'")).collect();
    assert_eq!(
        one(&format!("BACKUP DATABASE d TO {}", devs.join(",")))
            .devices
            .len(),
        64
    );
}

#[test]
fn error_not_served() {
    let e = err("SELECT 1");
    check(&e, 50002, 16, 1, 1, "SELECT");
    let e = err("BACKUP DATABASE d TO VIRTUAL_DEVICE='v'\nselect @@version");
    check(&e, 50002, 16, 2, 1, "select");
    let e = err("RESTORE LABELONLY FROM VIRTUAL_DEVICE='v'");
    check(&e, 50002, 16, 1, 9, "LABELONLY");
    let e = err("BACKUP CERTIFICATE c TO FILE = 'x'");
    check(&e, 50002, 16, 1, 8, "CERTIFICATE");
    let e = err("RESTORE DATABASE d WITH NORECOVERY");
    check(&e, 50002, 16, 1, 20, "WITH");
    // A word that starts no statement is a syntax error.
    let e = err("BAKUP DATABASE d");
    check(&e, 102, 15, 1, 1, "BAKUP");
}

#[test]
fn error_as_message_and_display() {
    let e = err("BACKUP DATABASE d TO DISK='x'");
    let m = e.to_message();
    assert_eq!((m.number, m.level, m.state), (50001, 16, 1));
    assert_eq!(m.text, e.text);
    assert!(m.is_error());
    let e = err("\n\nSELEC");
    assert_eq!(
        e.to_string(),
        "Msg 102, Level 15, State 1, Line 3: Incorrect syntax near 'SELEC'."
    );
}

#[test]
fn to_tsql_examples_parse_back() {
    let s = Statement {
        kind: StatementKind::RestoreDatabase,
        database: "we]ird 'name' \"x\"".into(),
        devices: vec!["a'b".into(), "--c".into(), "".into()],
        options: opts(4096, 4 << 20, Some(3)),
        plan: ServerPlan::default(),
    };
    assert_eq!(one(&s.to_tsql()), s);
}

fn kind_strategy() -> impl Strategy<Value = StatementKind> {
    prop_oneof![
        Just(StatementKind::BackupDatabase),
        Just(StatementKind::BackupLog),
        Just(StatementKind::RestoreDatabase),
        Just(StatementKind::RestoreLog),
        Just(StatementKind::RestoreHeaderOnly),
        Just(StatementKind::RestoreFilelistOnly),
        Just(StatementKind::RestoreVerifyOnly),
    ]
}

/// Names from characters that stress quoting, plus arbitrary ones.
fn name_strategy(min: usize, max: usize) -> impl Strategy<Value = String> {
    let tricky = prop_oneof![
        Just('\''),
        Just(']'),
        Just('['),
        Just('"'),
        Just(' '),
        Just('\n'),
        Just('-'),
        Just('/'),
        Just('*'),
        Just(';'),
        Just('é'),
        Just('名'),
        any::<char>(),
    ];
    proptest::collection::vec(tricky, min..=max).prop_map(|v| v.into_iter().collect())
}

fn statement_strategy() -> impl Strategy<Value = Statement> {
    (
        kind_strategy(),
        name_strategy(1, IDENT_LEN_MAX),
        proptest::collection::vec(name_strategy(0, 40), 1..=8),
        0u32..=7,
        1u32..=64,
        proptest::option::of(1u32..=i32::MAX as u32),
    )
        .prop_map(|(kind, database, devices, bs, mt, buffer_count)| {
            let database = match kind {
                StatementKind::RestoreHeaderOnly
                | StatementKind::RestoreFilelistOnly
                | StatementKind::RestoreVerifyOnly => String::new(),
                _ => database,
            };
            Statement {
                kind,
                database,
                devices,
                options: opts(512 << bs, 65536 * mt, buffer_count),
                plan: ServerPlan::default(),
            }
        })
}

proptest! {
    #[test]
    fn to_tsql_round_trips(s in statement_strategy()) {
        prop_assert!(s.options.validate().is_ok());
        let text = s.to_tsql();
        let parsed = parse_batch(&text).map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;
        prop_assert_eq!(parsed, vec![ParsedStatement::Run(s, With::default())]);
    }

    #[test]
    fn statements_in_a_batch_round_trip(a in statement_strategy(), b in statement_strategy()) {
        let text = format!("{};\n-- next\n{}", a.to_tsql(), b.to_tsql());
        prop_assert_eq!(parse_batch(&text).unwrap(), vec![ParsedStatement::Run(a, With::default()), ParsedStatement::Run(b, With::default())]);
    }

    #[test]
    fn parser_never_panics(text in "\\PC{0,80}") {
        let _ = parse_batch(&text);
    }
}

#[test]
fn kill_takes_a_session_id() {
    assert_eq!(parse_batch("KILL 57").unwrap(), [ParsedStatement::Kill(57)]);
    assert_eq!(
        parse_batch("DECLARE @s int = 61; kill @s;").unwrap(),
        [ParsedStatement::Kill(61)]
    );
    assert_eq!(
        parse_batch("KILL 52 BACKUP DATABASE sales TO VIRTUAL_DEVICE='v'")
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        err("KILL 'D5499C66-E398-45CA-BF7E-DC9C194B48CF'").number,
        MSG_NOT_SERVED
    );
    assert_eq!(err("KILL 57 WITH STATUSONLY").number, MSG_NOT_SERVED);
    for bad in ["KILL", "KILL x", "KILL 1.5", "KILL 99999999999"] {
        let n = err(bad).number;
        assert!(matches!(n, MSG_SYNTAX | MSG_SYNTAX_KEYWORD), "{bad}: {n}");
    }
}
