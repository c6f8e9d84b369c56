//! `vdisim serve`'s T-SQL beyond the VDI stream: recovery models, the log
//! chain (full → log → log, a differential's base), NORECOVERY then
//! RECOVERY, REPLACE, FILE, STATS, HEADERONLY reading real media, CREATE /
//! DROP / ALTER DATABASE and variables — each rule with SQL Server's
//! message number, and a snapshot of what `sqlcmd` prints for a whole full
//! → log → restore sequence.

#![cfg(unix)]

#[path = "support/remote_client.rs"]
mod remote_client;

use remote_client::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use vdi_spec::Hresult;
use vdi_sqlserver::serve::{ServeConfig, Server};

type Media = Vec<Arc<Mutex<Vec<u8>>>>;

fn server(tag: &str) -> Server {
    let sock = std::env::temp_dir().join(format!("vdisim-tsql-{}-{tag}.sock", std::process::id()));
    let mut cfg = ServeConfig::new(sock);
    cfg.databases = vec![("sales".into(), 4 * 65536)];
    Server::start(cfg).expect("server starts")
}

/// Message numbers of a batch that needs no client (it fails before any
/// set is opened, or touches no device).
fn sql(s: &Server, text: &str) -> Vec<u32> {
    sql_at(s.path(), text)
        .iter()
        .map(|m| m.message.number)
        .collect()
}

/// Runs `text` (its `{dev}` the set's one VIRTUAL_DEVICE) through
/// `vdisim sqlcmd`, the client serving `media`: what sqlcmd printed.
fn sqlcmd(s: &Server, tag: &str, media: &Media, text: &str) -> String {
    let set = set_at(s.path());
    assert_eq!(create(&set, tag, 1), Hresult::NOERROR);
    let text = text.replace("{dev}", &format!("VIRTUAL_DEVICE = N'{tag}'"));
    let path: PathBuf = s.path().to_path_buf();
    let run = std::thread::spawn(move || {
        Command::new(env!("CARGO_BIN_EXE_vdisim"))
            .args(["sqlcmd", "-S"])
            .arg(path)
            .args(["-Q", &text])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    });
    if let Ok(devs) = open_all(&set, tag, 1) {
        run_devices(&devs, media, Sink::Keep);
    }
    set.close();
    let out = run.join().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The numbers of the `Msg N,` lines and of the success lines sqlcmd
/// printed (3014 for "successfully processed", 4035 for "Processed").
fn numbers(out: &str) -> Vec<u32> {
    out.lines()
        .filter_map(|l| {
            if let Some(rest) = l.strip_prefix("Msg ") {
                return rest.split(',').next()?.parse().ok();
            }
            if l.contains("successfully processed") {
                return Some(3014);
            }
            l.starts_with("Processed ").then_some(4035)
        })
        .collect()
}

fn fresh() -> Media {
    vec![Arc::default()]
}

fn state_of(s: &Server, db: &str) -> (String, String) {
    let st = s.status();
    let d = st
        .databases
        .iter()
        .find(|d| d.name == db)
        .expect("database");
    (d.state.clone(), d.content.clone())
}

/// Timings and identities that change from run to run, masked.
fn redact(out: &str) -> String {
    out.lines()
        .map(|l| {
            let mut l = l.to_string();
            if let Some(i) = l.find(" pages in ") {
                let head = l[..i].to_string();
                l = format!("{head} pages in <t> seconds (<r> MB/sec).");
            }
            if let Some(i) = l.find("BackupSetGUID: ") {
                let j = l[i..].find(" |").map_or(l.len(), |j| i + j);
                l.replace_range(i + 15..j, "<guid>");
            }
            l
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Msgs 4208, 4214, 3035, 3117, 3159, 4038, 1801, 3701: each rule before
/// any device moves.
#[test]
fn each_rule_has_sql_servers_message() {
    let s = server("rules");
    let backup_log = "BACKUP LOG sales TO VIRTUAL_DEVICE = N'never'";
    assert_eq!(
        sql(&s, backup_log),
        vec![4208, 3013],
        "SIMPLE: no log backups"
    );
    assert_eq!(
        sql(&s, "ALTER DATABASE sales SET RECOVERY FULL"),
        Vec::<u32>::new()
    );
    assert_eq!(sql(&s, backup_log), vec![4214, 3013], "no full backup yet");
    let restore_log = "RESTORE LOG sales FROM VIRTUAL_DEVICE = N'never'";
    assert_eq!(sql(&s, restore_log), vec![3117, 3013], "an online database");
    let full = fresh();
    let out = sqlcmd(&s, "r-full", &full, "BACKUP DATABASE sales TO {dev}");
    assert_eq!(numbers(&out), vec![4035, 3014], "{out}");
    // Work since the full backup, the tail not backed up.
    let restore = "RESTORE DATABASE sales FROM VIRTUAL_DEVICE = N'never'";
    assert_eq!(sql(&s, restore), vec![3159, 3013]);
    let file2 = "RESTORE DATABASE sales FROM VIRTUAL_DEVICE = N'x' WITH REPLACE, FILE = 2";
    assert_eq!(sql(&s, file2), vec![4038, 3013]);
    assert_eq!(sql(&s, "CREATE DATABASE sales"), vec![1801]);
    assert_eq!(sql(&s, "DROP DATABASE nope"), vec![3701]);
    assert_eq!(sql(&s, "DROP DATABASE IF EXISTS nope"), Vec::<u32>::new());
    assert_eq!(sql(&s, "CREATE DATABASE scratch"), Vec::<u32>::new());
    let diff = "BACKUP DATABASE scratch TO VIRTUAL_DEVICE = N'x' WITH DIFFERENTIAL";
    assert_eq!(
        sql(&s, diff),
        vec![3035, 3013],
        "no base for a differential"
    );
    assert_eq!(sql(&s, "DROP DATABASE scratch"), Vec::<u32>::new());
    // REPLACE overwrites the log's tail.
    let out = sqlcmd(
        &s,
        "r-replace",
        &full,
        "RESTORE DATABASE sales FROM {dev} WITH REPLACE",
    );
    assert_eq!(numbers(&out), vec![4035, 3014], "{out}");
}

/// The log chain through sqlcmd: a full backup and two log backups of a
/// FULL-recovery database; a restore of the full backup WITH NORECOVERY;
/// the second log first (too recent: Msg 4305); the first, then the
/// second WITH RECOVERY: the database is online with the content it had at
/// the second log backup. HEADERONLY reads a log backup's real media.
#[test]
fn full_then_logs_then_restore_in_order() {
    let s = server("chain");
    let mut transcript = String::new();
    let mut step = |tag: &str, media: &Media, text: &str| {
        let out = sqlcmd(&s, tag, media, text);
        transcript.push_str(&format!("1> {text}\n{}\n", redact(&out)));
        numbers(&out)
    };
    let (full, log1, log2, head) = (fresh(), fresh(), fresh(), fresh());
    let setup = "CREATE DATABASE shop; ALTER DATABASE shop SET RECOVERY FULL";
    assert_eq!(sql(&s, setup), Vec::<u32>::new());
    let b = "DECLARE @db sysname = N'shop'; BACKUP DATABASE @db TO {dev} WITH CHECKSUM, STATS = 50";
    assert_eq!(step("c-full", &full, b), vec![4035, 3014]);
    assert_eq!(
        step("c-log1", &log1, "BACKUP LOG shop TO {dev}"),
        vec![4035, 3014]
    );
    let at_log2 = state_of(&s, "shop").1;
    assert_eq!(
        step("c-log2", &log2, "BACKUP LOG shop TO {dev}"),
        vec![4035, 3014]
    );
    assert_ne!(state_of(&s, "shop").1, at_log2, "the database lived on");
    let r = "RESTORE DATABASE shop FROM {dev} WITH REPLACE, NORECOVERY";
    assert_eq!(step("c-r-full", &full, r), vec![4035, 3014]);
    assert_eq!(state_of(&s, "shop").0, "restoring");
    let too_recent = step(
        "c-r-log2",
        &log2,
        "RESTORE LOG shop FROM {dev} WITH NORECOVERY",
    );
    assert_eq!(too_recent, vec![4305, 3013]);
    let r1 = "RESTORE LOG shop FROM {dev} WITH NORECOVERY";
    assert_eq!(step("c-r-log1", &log1, r1), vec![4035, 3014]);
    assert_eq!(
        step(
            "c-r-log2b",
            &log2,
            "RESTORE LOG shop FROM {dev} WITH RECOVERY"
        ),
        vec![4035, 3014]
    );
    assert_eq!(state_of(&s, "shop"), ("online".into(), at_log2));
    assert_eq!(
        s.status().restores,
        3,
        "msdb's restore history: the full and the two logs"
    );
    *head[0].lock().unwrap() = log1[0].lock().unwrap().clone();
    assert_eq!(
        step("c-head", &head, "RESTORE HEADERONLY FROM {dev}"),
        Vec::<u32>::new()
    );
    insta::assert_snapshot!(transcript);
}

/// NORECOVERY, then `RESTORE DATABASE … WITH RECOVERY` alone brings the
/// database online; a BACKUP of a restoring database is Msg 927.
#[test]
fn norecovery_then_recovery() {
    let s = server("recover");
    let full = fresh();
    assert_eq!(
        numbers(&sqlcmd(
            &s,
            "n-full",
            &full,
            "BACKUP DATABASE sales TO {dev}"
        )),
        vec![4035, 3014]
    );
    let before = state_of(&s, "sales");
    let r = "RESTORE DATABASE sales FROM {dev} WITH NORECOVERY";
    assert_eq!(numbers(&sqlcmd(&s, "n-r", &full, r)), vec![4035, 3014]);
    assert_eq!(state_of(&s, "sales").0, "restoring");
    assert_eq!(
        sql(&s, "BACKUP DATABASE sales TO VIRTUAL_DEVICE = N'x'"),
        vec![927, 3013]
    );
    assert_eq!(sql(&s, "RESTORE DATABASE sales WITH RECOVERY"), vec![3014]);
    let after = state_of(&s, "sales");
    assert_eq!(after.0, "online");
    assert_ne!(
        after.1, before.1,
        "the content is the backup's, not the later one"
    );
}

/// A differential restores on the full backup it is based on (after it,
/// WITH NORECOVERY); on a database not restoring from that base it is
/// Msg 3136.
#[test]
fn differential_on_its_base() {
    let s = server("diff");
    let (full, diff) = (fresh(), fresh());
    let ok = vec![4035, 3014];
    assert_eq!(
        numbers(&sqlcmd(
            &s,
            "d-full",
            &full,
            "BACKUP DATABASE sales TO {dev}"
        )),
        ok
    );
    let at_diff = state_of(&s, "sales").1;
    let d = "BACKUP DATABASE sales TO {dev} WITH DIFFERENTIAL";
    assert_eq!(numbers(&sqlcmd(&s, "d-diff", &diff, d)), ok);
    let r = "RESTORE DATABASE sales FROM {dev} WITH REPLACE";
    let out = sqlcmd(&s, "d-r0", &diff, r);
    assert_eq!(numbers(&out), vec![3136, 3013], "{out}");
    let r = "RESTORE DATABASE sales FROM {dev} WITH REPLACE, NORECOVERY";
    assert_eq!(numbers(&sqlcmd(&s, "d-r1", &full, r)), ok);
    let r = "RESTORE DATABASE sales FROM {dev} WITH RECOVERY";
    assert_eq!(numbers(&sqlcmd(&s, "d-r2", &diff, r)), ok);
    assert_eq!(state_of(&s, "sales"), ("online".into(), at_diff));
}
