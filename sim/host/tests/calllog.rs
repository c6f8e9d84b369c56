//! The call log through the runtime: a scripted session's calls are
//! written as documented (arguments, values, codes, order, times on the
//! scaled clock); concurrent threads and concurrent processes appending to
//! one file produce whole lines, numbered without gaps per process.
#![cfg(not(loom))]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use vdi_host::calllog::{CallLog, parse_log};
use vdi_host::runtime::{
    Connection, Connector, CreateKind, NewSet, RuntimeConfig, SetRuntime, Wait,
};
use vdi_model::calllog::{Api, CallRecord, Produced};
use vdi_model::checks::obligations::{self, Context, ProgramEnd, StatementEnd};
use vdi_model::content::Content;
use vdi_model::msg::{Cmd, CmdId, Timeout, ToClient};
use vdi_model::outcome::{Outcome, SqlMessage, Status};
use vdi_spec::{CommandCode, Features, Hresult, Profile, VdConfig, Win32, id};

/// Sets with no server: the test delivers the server's messages itself.
struct Nowhere;
impl Connector for Nowhere {
    fn connect(&self, _rt: Weak<SetRuntime>, _set: &NewSet) -> Connection {
        Connection::none()
    }
}

fn temp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("vdisim-calllog-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn runtime(log: &Arc<CallLog>, scale: u32) -> Arc<SetRuntime> {
    SetRuntime::with_config(RuntimeConfig {
        profile: Arc::new(Profile::default()),
        connector: Arc::new(Nowhere),
        scale,
        tally: None,
        log: Some(log.clone()),
    })
}

fn cmd(id: u64, code: CommandCode, size: u32) -> Cmd {
    Cmd {
        id: CmdId(id),
        dev: 0,
        code,
        size,
        position: 0,
        buffer: None,
        data: Content::Empty,
    }
}

fn read(path: &Path) -> Vec<CallRecord> {
    let text = std::fs::read_to_string(path).expect("the log");
    let (procs, calls) = parse_log(&text).expect("a well-formed log");
    assert_eq!(procs.len(), 1, "one process line");
    calls
}

/// Create, a GetConfiguration that times out, the configuration, a device,
/// a command completed with a written block, VD_E_CLOSE, Close: each call
/// one record, as documented.
#[test]
fn a_scripted_session_is_logged_call_by_call() {
    let path = temp("session.jsonl");
    let log = CallLog::open(&path, 100, "test", "default").unwrap();
    let rt = runtime(&log, 100);
    let name = format!("calllog-{}", std::process::id());
    let mut cfg = VdConfig::client(1, Features::RequestComplete);
    cfg.server_time_out = 60_000;
    assert_eq!(
        rt.create(CreateKind::CreateEx(None), &name, &cfg).code(),
        Hresult::NOERROR
    );
    // 2 s of virtual time at 100 virtual ms per real ms: about 20 ms.
    let t0 = Instant::now();
    let r = rt.get_configuration(Wait::linux(2000));
    assert_eq!(r.code(), Hresult::VD_E_TIMEOUT);
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    let mut granted = cfg;
    granted.features |= Features::WriteMedia.0 | Features::CompleteEnabled.0;
    granted.block_size = 512;
    rt.deliver(ToClient::Configured {
        cfg: granted,
        devices: vec![name.clone()],
    });
    rt.get_configuration(Wait::linux(-1)).result.unwrap();
    let h = rt.open_device(&name).result.unwrap();
    rt.deliver(ToClient::Command(cmd(7, CommandCode::Write, 65536)));
    let c = rt.get_command(h, Wait::dword(u32::MAX)).result.unwrap();
    let mut seen = c.clone();
    seen.size = 512; // the program wrote into the block
    rt.complete_command(h, &seen, Win32::ERROR_SUCCESS, 65536, 0);
    rt.deliver(ToClient::CloseDevice { dev: 0 });
    assert_eq!(
        rt.get_command(h, Timeout::Ms(0)).code(),
        Hresult::VD_E_CLOSE
    );
    rt.close();
    assert_eq!(rt.close().code(), Hresult::VD_E_PROTOCOL);

    let calls = read(&path);
    let methods: Vec<Api> = calls.iter().map(|c| c.method).collect();
    use Api::*;
    assert_eq!(
        methods,
        [
            CreateEx,
            GetConfiguration,
            GetConfiguration,
            OpenDevice,
            GetCommand,
            CompleteCommand,
            GetCommand,
            Close,
            Close
        ]
    );
    for (k, c) in calls.iter().enumerate() {
        assert_eq!(c.seq, k as u64 + 1);
        assert_eq!(
            c.after, k as u64,
            "one thread: each call began after the last returned"
        );
        assert_eq!(c.pid, std::process::id());
        assert_eq!(c.incarnation, 1);
        assert!(c.start_ms <= c.end_ms);
        assert_eq!(c.thread, calls[0].thread);
    }
    let create = &calls[0];
    assert_eq!(create.args.name.as_deref(), Some(name.as_str()));
    assert_eq!(create.args.instance, None);
    assert_eq!(
        create.args.config.as_ref().unwrap().feature_names,
        ["VDF_RequestComplete"]
    );
    assert_eq!(create.clause.as_deref(), Some(id::CREATE_OK.as_str()));
    let timeout = &calls[1];
    assert_eq!(timeout.ret.name, "VD_E_TIMEOUT");
    let t = timeout.args.timeout.unwrap();
    assert_eq!((t.ms, t.raw), (Some(2000), 2000));
    assert!(timeout.end_ms - timeout.start_ms >= 2000, "{timeout:?}");
    let forever = calls[2].args.timeout.unwrap();
    assert_eq!((forever.ms, forever.raw), (None, -1));
    let v = calls[2].config().unwrap();
    assert!(
        v.feature_names.iter().any(|f| f == "VDF_CompleteEnabled"),
        "{v:?}"
    );
    assert_eq!(calls[3].value, Some(Produced::Device(0)));
    let got = calls[4].fetched().unwrap();
    assert_eq!(
        (got.id, got.name.as_str(), got.size),
        (7, "VDC_Write", 65536)
    );
    assert_eq!(calls[4].args.timeout.unwrap().raw, i64::from(u32::MAX));
    let done = &calls[5];
    assert_eq!(done.block_modified, Some(true));
    assert_eq!(
        done.args.command.as_ref().unwrap().size,
        65536,
        "the command as delivered"
    );
    assert_eq!(done.args.handed_back.unwrap().size, 512);
    let k = done.args.completion.as_ref().unwrap();
    assert_eq!(
        (k.code, k.name.as_deref(), k.bytes),
        (0, Some("ERROR_SUCCESS"), 65536)
    );
    assert_eq!(calls[6].ret.name, "VD_E_CLOSE");
    assert_eq!(calls[8].ret.name, "VD_E_PROTOCOL");

    // Graded: the written block and the second Close are the program's.
    let cx = Context {
        statements: vec![StatementEnd {
            set: Some(name),
            kind: None,
            outcome: Outcome {
                status: Status::Succeeded,
                reason: None,
                messages: vec![SqlMessage::info(
                    3014,
                    "BACKUP DATABASE successfully processed.",
                )],
                bytes: 65536,
                ended_ms: None,
                media: None,
            },
            ended_ms: None,
            mid_stream_flushes: 0,
        }],
        end: ProgramEnd::Exited { code: 0 },
        unimplemented_code: None,
    };
    let found: Vec<String> = obligations::check(&calls, &cx)
        .into_iter()
        .map(|v| v.clause)
        .collect();
    assert_eq!(
        found,
        [
            id::COMPLETE_COMMAND_READ_ONLY_BLOCK.as_str(),
            id::CLOSE_EXACTLY_ONCE.as_str()
        ]
    );
    std::fs::remove_file(&path).unwrap();
}

/// A set object destroyed with a live set is logged as `Destroy`; a
/// runtime without a log writes nothing.
#[test]
fn destruction_is_logged_and_no_log_writes_nothing() {
    let path = temp("destroy.jsonl");
    let log = CallLog::open(&path, 1, "test", "default").unwrap();
    let rt = runtime(&log, 1);
    let name = format!("calllog-destroy-{}", std::process::id());
    rt.create(
        CreateKind::Create,
        &name,
        &VdConfig::client(1, Features::LikePipe),
    );
    assert!(rt.close_if_open().is_some());
    assert!(
        rt.close_if_open().is_none(),
        "nothing left to close: nothing logged"
    );
    let calls = read(&path);
    assert_eq!(
        calls.iter().map(|c| c.method).collect::<Vec<_>>(),
        [Api::Create, Api::Destroy]
    );
    let plain = SetRuntime::new(Arc::new(Profile::default()), Arc::new(Nowhere));
    plain.create(
        CreateKind::Create,
        &format!("{name}-2"),
        &VdConfig::client(1, Features::LikePipe),
    );
    plain.close();
    assert_eq!(read(&path).len(), 2, "a runtime without a log adds nothing");
    std::fs::remove_file(&path).unwrap();
}

/// Calls made by `threads` threads on their own sets, `per` each.
fn hammer(log: &Arc<CallLog>, threads: usize, per: usize) {
    let ts: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let rt = runtime(&log, 1);
                let name = format!("calllog-h-{}-{t}-{:?}", std::process::id(), Instant::now());
                rt.create(
                    CreateKind::Create,
                    &name,
                    &VdConfig::client(1, Features::LikePipe),
                );
                for _ in 0..per {
                    rt.get_configuration(Timeout::Ms(0));
                }
                rt.close();
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
}

/// Every line is whole and parses; seq numbers each call exactly once, in
/// file order; each thread has its own number.
fn check_whole(path: &Path, processes: usize, calls_each: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'));
    let (procs, calls) = parse_log(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(procs.len(), processes);
    assert_eq!(calls.len(), processes * calls_each);
    for p in &procs {
        let seqs: Vec<u64> = calls
            .iter()
            .filter(|c| c.pid == p.pid)
            .map(|c| c.seq)
            .collect();
        let want: Vec<u64> = (1..=calls_each as u64).collect();
        assert_eq!(
            seqs, want,
            "pid {}: the file holds its calls in seq order",
            p.pid
        );
    }
}

#[test]
fn concurrent_threads_write_whole_lines() {
    let path = temp("threads.jsonl");
    let log = CallLog::open(&path, 1, "test", "default").unwrap();
    hammer(&log, 8, 200);
    check_whole(&path, 1, 8 * 202);
    let calls = read(&path);
    let threads: std::collections::BTreeSet<u64> = calls.iter().map(|c| c.thread).collect();
    assert_eq!(threads.len(), 8);
    std::fs::remove_file(&path).unwrap();
}

/// Child side of [`concurrent_processes_write_whole_lines`]: appends to the
/// file the parent names.
#[test]
fn child_writer() {
    let Some(path) = std::env::var_os("VDISIM_CALLLOG_CHILD") else {
        return;
    };
    let log = CallLog::open(Path::new(&path), 1, "child", "default").unwrap();
    hammer(&log, 4, 150);
}

#[test]
fn concurrent_processes_write_whole_lines() {
    let path = temp("processes.jsonl");
    let exe = std::env::current_exe().unwrap();
    let kids: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["--exact", "child_writer", "--test-threads", "1"])
                .env("VDISIM_CALLLOG_CHILD", &path)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    check_whole(&path, 3, 4 * 152);
    std::fs::remove_file(&path).unwrap();
}
