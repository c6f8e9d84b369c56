//! A built-in program's secondary client process on the ABI backends
//! (issue 17; vdi-spec.md §1.5, Process Model): on the `serve` backend it
//! runs as a real second OS process (`vdisim __abi-secondary`) that loaded
//! the stand-in and joined the set by name, and the catalog's
//! `secondary-process` cases get the model's verdicts; on `linux-abi` and
//! `com`, whose server runs inside the test process, they stay
//! unimplemented for that reason.
#![cfg(unix)]

use std::io::Write;
use std::process::{Command, Stdio};
use vdi_conformance::backend::Backend;
use vdi_conformance::backends::serve::ServeBackend;
use vdi_conformance::commands::load_catalog;
use vdi_conformance::oracle::{self, CaseOptions};
use vdi_conformance::runner::{self, RunConfig};
use vdi_conformance::scenario::{self, Scenario};
use vdi_reports::schema::Verdict;
use vdi_spec::id;

fn secondary_cases() -> Vec<Scenario> {
    load_catalog(&scenario::default_dir())
        .expect("catalog")
        .into_iter()
        .filter(|c| c.requires.iter().any(|r| r == "secondary-process"))
        .collect()
}

#[test]
fn secondary_process_cases_get_the_models_verdicts_on_serve() {
    let cases = secondary_cases();
    assert!(
        cases.len() >= 2,
        "the catalog's secondary-process cases: {}",
        cases.len()
    );
    let plan = RunConfig {
        backends: vec![
            "model".into(),
            "serve".into(),
            "linux-abi".into(),
            "com".into(),
        ],
        extra_seeds: 0,
        workers: 2,
        case: CaseOptions::default(),
        deviations_dir: None,
        recording: None,
    };
    let report = runner::run(&cases, &plan).expect("runner");
    let mut served = 0;
    for c in report.cases.iter().filter(|c| c.backend != "model") {
        let m = report
            .cases
            .iter()
            .find(|m| m.backend == "model" && m.file == c.file && m.seed == c.seed)
            .expect("model result");
        assert_eq!(m.verdict, Verdict::Pass, "model {}: {}", m.case, m.detail);
        if c.backend == "serve" {
            served += 1;
            assert_eq!(
                c.verdict,
                Verdict::Pass,
                "serve {} seed {}: {}",
                c.case,
                c.seed,
                c.detail
            );
        } else {
            assert_eq!(
                c.verdict,
                Verdict::Unimplemented,
                "{} {}",
                c.backend,
                c.case
            );
            assert!(
                c.detail.contains("it needs secondary-process"),
                "{} {}: {}",
                c.backend,
                c.case,
                c.detail
            );
        }
    }
    let seeds: usize = cases.iter().map(|c| c.seeds.len().max(1)).sum();
    assert_eq!(served, seeds, "every case and seed ran on serve");
}

/// The pid a trace event of the secondary names (`-> CODE (secondary PID)`).
fn secondary_pid(detail: &str) -> Option<u32> {
    let (_, rest) = detail.split_once("(secondary ")?;
    rest.strip_suffix(')')?.parse().ok()
}

fn case(stem: &str) -> Scenario {
    secondary_cases()
        .into_iter()
        .find(|c| c.path.file_stem().and_then(|s| s.to_str()) == Some(stem))
        .unwrap_or_else(|| panic!("no case {stem}"))
}

#[test]
fn the_secondary_threads_call_the_library_in_another_process() {
    let sc = case("open-in-secondary.ok.2");
    let mut b = ServeBackend::new();
    let r = b
        .run_program(&oracle::setup(&sc, 1, true), &sc.client_spec(1))
        .expect("run");
    let me = std::process::id();
    let events = r.trace.events();
    // The secondary's OpenInSecondary, OpenDevice and its device thread's
    // GetCommand/CompleteCommand were all answered by one other process;
    // the primary's own calls by this one.
    let mut pids: Vec<(String, String, u32)> = events
        .iter()
        .filter_map(|e| secondary_pid(&e.detail).map(|p| (e.who.clone(), e.what.clone(), p)))
        .collect();
    for what in [
        "OpenInSecondary",
        "OpenDevice",
        "GetCommand",
        "CompleteCommand",
    ] {
        assert!(
            pids.iter().any(|(_, w, _)| w == what),
            "no {what} in a secondary process: {pids:?}"
        );
    }
    assert!(pids.iter().all(|(_, _, p)| *p != me));
    // The roundtrip starts a secondary for the backup and another for the
    // restore: two processes, each for its own phase.
    pids.sort_by_key(|(_, _, p)| *p);
    pids.dedup_by_key(|(_, _, p)| *p);
    assert_eq!(pids.len(), 2, "one secondary process per phase: {pids:?}");
    assert!(
        events
            .iter()
            .any(|e| e.what == "OpenInSecondary" && e.clause == Some(id::OPEN_IN_SECONDARY_OK))
    );
    assert!(
        events
            .iter()
            .filter(|e| e.who == "dev0")
            .all(|e| secondary_pid(&e.detail).is_none()),
        "device 0 is the primary's"
    );
    let outcomes: Vec<_> = r.statements.iter().map(|(_, o)| o.succeeded()).collect();
    assert_eq!(outcomes, [true, true], "backup and restore succeeded");
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

#[test]
fn a_killed_secondary_is_not_noticed_by_vdi() {
    let sc = case("abort.secondary-death-undetected.2");
    let mut b = ServeBackend::new();
    let r = b
        .run_program(&oracle::setup(&sc, 2, true), &sc.client_spec(2))
        .expect("run");
    let died = r
        .trace
        .events()
        .iter()
        .find(|e| e.what == "SecondaryDied")
        .expect("the secondary died");
    assert_eq!(died.clause, Some(id::ABORT_SECONDARY_DEATH_UNDETECTED));
    // The server learnt nothing from the death: its watchdog ended the
    // backup, which failed.
    let (_, o) = r.statements.last().expect("a statement");
    assert!(!o.succeeded(), "{o:?}");
    assert!(
        r.clauses.contains_key(id::WATCHDOG_FIRES.as_str()),
        "{:?}",
        r.clauses
    );
}

fn secondary_child(input: &[u8]) -> (Option<i32>, String, String) {
    let lib = vdi_conformance::backends::abi::library_path().expect("stand-in");
    let mut c = Command::new(env!("CARGO_BIN_EXE_vdisim"))
        .args(["__abi-secondary", "--library"])
        .arg(lib)
        .env("VDISIM_SERVER", "/nonexistent/vdisim.sock")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut w = c.stdin.take().expect("stdin");
    // The child may exit before reading everything: a broken pipe is fine.
    let _ = w.write_all(input);
    drop(w);
    let out = c.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The child's first line: ready (thread `u32::MAX`).
const READY_LINE: &str = "{\"thread\":4294967295}\n";

#[test]
fn the_secondary_child_refuses_bad_requests_clearly() {
    let (code, out, err) = secondary_child(b"{\"thread\": \"one\"}\n");
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(out, READY_LINE, "nothing but the ready line");
    assert!(err.contains("a request that is not understood"), "{err}");
    // A request with neither a call nor a buffer access gets an error line.
    let (code, out, err) = secondary_child(b"{\"thread\": 1, \"who\": \"x\"}\n");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("exactly one of call and buffer"), "{out}");
    let mut long = vec![b'x'; (1 << 20) + 10];
    long.push(b'\n');
    let (code, _, err) = secondary_child(&long);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("longer than 1048576 bytes"), "{err}");
    // A call is answered as one line; the end of input ends the process.
    let (code, out, err) = secondary_child(
        b"{\"thread\": 3, \"who\": \"dev9\", \"call\": {\"op\": \"signal-abort\"}}\n",
    );
    assert_eq!(code, Some(0), "{err}");
    let answer = out.strip_prefix(READY_LINE).expect("ready first");
    assert!(
        answer.starts_with("{\"thread\":3,\"reply\":{\"code\":"),
        "{out}"
    );
    assert_eq!(answer.lines().count(), 1, "{out}");
}

#[test]
fn the_secondary_subcommand_is_hidden() {
    let out = Command::new(env!("CARGO_BIN_EXE_vdisim"))
        .arg("--help")
        .output()
        .expect("vdisim --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(!help.contains("__abi-secondary"), "{help}");
}

// ----- buffer handles across processes ------------------------------------------------------

use std::io::{BufRead, BufReader};
use vdi_conformance::backend::CaseSetup;
use vdi_conformance::backends::abi::secondary::wire::{BufferOp, Request, Response};
use vdi_model::call::{Call, Reply, Value};
use vdi_model::content::Content;
use vdi_model::msg::{BufId, Timeout};
use vdi_model::statement::StatementSpec;
use vdi_spec::{CommandCode, Hresult, VdConfig, Win32};

/// A `vdisim __abi-secondary` joined to the serve backend's server, driven
/// line by line.
struct Secondary {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: BufReader<std::process::ChildStdout>,
}

impl Secondary {
    fn start() -> Secondary {
        let lib = vdi_conformance::backends::abi::library_path().expect("stand-in");
        let sock = vdi_conformance::backends::serve::server_socket().expect("vdisim serve");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vdisim"))
            .args(["__abi-secondary", "--library"])
            .arg(lib)
            .env("VDISIM_SERVER", sock)
            .env("VDISIM_TIME_SCALE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        let input = child.stdin.take().expect("stdin");
        let mut output = BufReader::new(child.stdout.take().expect("stdout"));
        let mut ready = String::new();
        output.read_line(&mut ready).expect("ready");
        assert_eq!(ready, READY_LINE);
        Secondary {
            child,
            input,
            output,
        }
    }

    fn ask(&mut self, call: Option<Call>, buffer: Option<BufferOp>) -> Response {
        let req = Request {
            thread: 1,
            who: "worker".into(),
            call,
            buffer,
        };
        let line = serde_json::to_string(&req).expect("json");
        writeln!(self.input, "{line}").expect("send");
        self.input.flush().expect("flush");
        let mut answer = String::new();
        self.output.read_line(&mut answer).expect("answer");
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
    }

    fn call(&mut self, call: Call) -> Reply {
        let r = self.ask(Some(call), None);
        Reply::from(r.reply.unwrap_or_else(|| panic!("{:?}", r.error)))
    }

    fn read(&mut self, buf: BufId, len: u32) -> Content {
        let r = self.ask(None, Some(BufferOp::Read { buf, len }));
        r.data.unwrap_or_else(|| panic!("{:?}", r.error))
    }

    fn fill(&mut self, buf: BufId, data: &Content) {
        let r = self.ask(
            None,
            Some(BufferOp::Fill {
                buf,
                data: data.clone(),
            }),
        );
        assert!(r.error.is_none(), "{:?}", r.error);
    }

    /// Joins the set `name` and maps `handle`: this process's buffer id.
    fn map(&mut self, id: u32, name: &str, handle: u32) -> BufId {
        let r = self.call(Call::OpenInSecondary {
            secondary: id,
            name: name.into(),
        });
        assert_eq!(r.code, Hresult::NOERROR, "OpenInSecondary");
        // At once: OpenInSecondary returned after the set's replay.
        let r = self.call(Call::MapBufferHandle { handle });
        assert_eq!(r.code, Hresult::NOERROR, "MapBufferHandle");
        match r.value {
            Value::Buffer(b) => b,
            v => panic!("MapBufferHandle gave {v:?}"),
        }
    }
}

impl Drop for Secondary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn primary(b: &mut ServeBackend, call: Call) -> Reply {
    let t = b.start("ctl", call).expect("start");
    b.join(t).expect("join")
}

/// Clause `buffer-handle.roundtrip` across processes: a handle the primary
/// got from GetBufferHandle maps, in a secondary process of the set, to
/// the same bytes (at another address): the secondary reads what the
/// server wrote, and what one secondary writes another one reads.
#[test]
fn a_buffer_handle_maps_to_the_same_bytes_in_another_process() {
    let mut b = ServeBackend::new();
    let setup = CaseSetup {
        seed: 1,
        budget_ms: 60_000,
        time_scale: 1,
        ..CaseSetup::default()
    };
    b.reset(&setup).expect("reset");
    let name = "buffer-handle-across";
    let cfg = VdConfig {
        device_count: 1,
        ..VdConfig::default()
    };
    let create = primary(
        &mut b,
        Call::Create {
            name: name.into(),
            cfg,
        },
    );
    assert_eq!(create.code, Hresult::NOERROR);
    let stmt = StatementSpec::default().resolve(name, 1, 1).expect("stmt");
    b.start_statement(&stmt).expect("BACKUP");
    let conf = primary(
        &mut b,
        Call::GetConfiguration {
            timeout: Timeout::Ms(10_000),
        },
    );
    assert_eq!(conf.code, Hresult::NOERROR);
    let Value::Device(dev) = primary(&mut b, Call::OpenDevice { name: name.into() }).value else {
        panic!("OpenDevice");
    };
    let cmd = loop {
        let r = primary(
            &mut b,
            Call::GetCommand {
                dev,
                timeout: Timeout::Ms(10_000),
            },
        );
        let Value::Command(c) = r.value else {
            panic!("GetCommand: {}", r.code)
        };
        if c.code == CommandCode::Write && !c.data.is_empty() {
            break c;
        }
        let done = primary(
            &mut b,
            Call::CompleteCommand {
                dev,
                position: c.position,
                bytes: 0,
                code: Win32::ERROR_SUCCESS,
                data: Content::Empty,
                cmd: c,
            },
        );
        assert_eq!(done.code, Hresult::NOERROR);
    };
    let r = primary(&mut b, Call::GetBufferHandle { buf: cmd.buffer });
    assert_eq!(r.code, Hresult::NOERROR, "GetBufferHandle");
    let Value::Handle(handle) = r.value else {
        panic!("no handle")
    };
    let mut one = Secondary::start();
    let mut two = Secondary::start();
    let b1 = one.map(1, name, handle);
    let b2 = two.map(2, name, handle);
    // What the server wrote, as the primary fetched it.
    assert_eq!(one.read(b1, cmd.size), cmd.data);
    assert_eq!(two.read(b2, cmd.size), cmd.data);
    // One secondary writes, the other reads the same bytes; then the
    // buffer gets its bytes back before the primary completes the Write.
    let other = Content::stream(0x5ec0_abcd, 0, u64::from(cmd.size));
    assert_ne!(other, cmd.data);
    one.fill(b1, &other);
    assert_eq!(two.read(b2, cmd.size), other);
    two.fill(b2, &cmd.data);
    assert_eq!(one.read(b1, cmd.size), cmd.data);
    // Clause buffer-handle.invalid in the secondary too.
    let bad = one.call(Call::MapBufferHandle {
        handle: handle ^ 0x4000_0000,
    });
    assert_eq!(bad.code, Hresult::VD_E_INVALID);
    drop((one, two));
    let size = u64::from(cmd.size);
    let done = primary(
        &mut b,
        Call::CompleteCommand {
            dev,
            position: cmd.position,
            bytes: size,
            code: Win32::ERROR_SUCCESS,
            data: Content::Empty,
            cmd,
        },
    );
    assert_eq!(done.code, Hresult::NOERROR);
    let t = b
        .start_drain("dev0", dev, Timeout::Ms(10_000))
        .expect("drain");
    assert_eq!(b.join(t).expect("drain").code, Hresult::VD_E_CLOSE);
    assert_eq!(primary(&mut b, Call::Close).code, Hresult::NOERROR);
    let o = b
        .wait_statement(Timeout::Ms(10_000))
        .expect("wait")
        .expect("outcome");
    assert!(o.succeeded(), "{o:?}");
    b.finish().expect("finish");
}
