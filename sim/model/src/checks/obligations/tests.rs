//! Synthetic logs, one passing and at least one violating per obligation,
//! and a property: the logs of a correct client never violate.

use super::*;
use crate::calllog::{Args, BlockView, Code, CompletionArg, ConfigView, Produced, TimeoutArg};
use crate::msg::Timeout;
use crate::outcome::{Outcome, SqlMessage, Status};
use crate::statement::StatementKind;
use proptest::prelude::*;
use vdi_spec::VdConfig;

/// Builds a log the way the library writes one: each call returns before
/// the next begins (unless a test says otherwise), 10 ms apart.
struct B {
    recs: Vec<CallRecord>,
    t: u64,
    inc: u32,
    name: String,
    next_id: u64,
}

impl B {
    fn new() -> B {
        B {
            recs: Vec::new(),
            t: 0,
            inc: 0,
            name: "set1".into(),
            next_id: 1,
        }
    }

    fn push(
        &mut self,
        thread: u64,
        method: Api,
        args: Args,
        ret: Hresult,
        value: Option<Produced>,
    ) -> &mut CallRecord {
        let seq = self.recs.len() as u64 + 1;
        self.t += 10;
        self.recs.push(CallRecord {
            pid: 100,
            seq,
            after: seq - 1,
            thread,
            object: 1,
            incarnation: self.inc,
            start_ms: self.t - 5,
            end_ms: self.t,
            method,
            args,
            ret: Code::of(ret),
            value,
            block_modified: (method == Api::CompleteCommand).then_some(false),
            clause: None,
        });
        self.recs.last_mut().unwrap()
    }

    fn create(&mut self, features: Features) -> &mut B {
        self.inc += 1;
        let cfg = VdConfig::client(1, features);
        let args = Args {
            name: Some(self.name.clone()),
            config: Some(ConfigView::of(&cfg)),
            ..Args::default()
        };
        self.push(1, Api::CreateEx, args, Hresult::NOERROR, None);
        self
    }

    fn config(&mut self, granted: Features) -> &mut B {
        let mut cfg = VdConfig::client(1, granted);
        cfg.block_size = 512;
        let args = Args {
            timeout: Some(TimeoutArg::new(Timeout::Ms(1000), 1000)),
            ..Args::default()
        };
        let v = Some(Produced::Config(ConfigView::of(&cfg)));
        self.push(1, Api::GetConfiguration, args, Hresult::NOERROR, v);
        self
    }

    fn config_timeout(&mut self, raw: i64) -> &mut B {
        let args = Args {
            timeout: Some(TimeoutArg::new(Timeout::from_linux(raw), raw)),
            ..Args::default()
        };
        self.push(1, Api::GetConfiguration, args, Hresult::VD_E_TIMEOUT, None);
        self
    }

    fn open(&mut self, d: u16) -> &mut B {
        let args = Args {
            name: Some(format!("{}-{d}", self.name)),
            ..Args::default()
        };
        self.push(
            1,
            Api::OpenDevice,
            args,
            Hresult::NOERROR,
            Some(Produced::Device(d)),
        );
        self
    }

    /// A GetCommand on device `d` that fetched nothing.
    fn get(&mut self, d: u16, ret: Hresult, raw: i64) -> &mut CallRecord {
        let args = Args {
            device: Some(d),
            timeout: Some(TimeoutArg::new(Timeout::from_linux(raw), raw)),
            ..Args::default()
        };
        self.push(u64::from(d) + 2, Api::GetCommand, args, ret, None)
    }

    fn fetch(&mut self, d: u16, code: CommandCode, size: u32) -> CommandView {
        let c = CommandView {
            id: self.next_id,
            code: code as u32,
            name: code.name().to_string(),
            size,
            position: 0,
        };
        self.next_id += 1;
        let args = Args {
            device: Some(d),
            timeout: Some(TimeoutArg::new(Timeout::Infinite, -1)),
            ..Args::default()
        };
        let v = Some(Produced::Command(c.clone()));
        self.push(u64::from(d) + 2, Api::GetCommand, args, Hresult::NOERROR, v);
        c
    }

    fn complete(&mut self, d: u16, c: &CommandView, code: Win32, bytes: u64) -> &mut CallRecord {
        let args = Args {
            device: Some(d),
            command: Some(c.clone()),
            completion: Some(CompletionArg::new(code, bytes, 0)),
            ..Args::default()
        };
        self.push(
            u64::from(d) + 2,
            Api::CompleteCommand,
            args,
            Hresult::NOERROR,
            None,
        )
    }

    /// Fetches and completes one command as a correct client does.
    fn serve(&mut self, d: u16, code: CommandCode, size: u32) -> &mut B {
        let c = self.fetch(d, code, size);
        let bytes = if code.has_buffer() {
            u64::from(size)
        } else {
            0
        };
        let w = if matches!(
            code,
            CommandCode::Read
                | CommandCode::Write
                | CommandCode::Flush
                | CommandCode::ClearError
                | CommandCode::Complete
        ) {
            Win32::ERROR_SUCCESS
        } else {
            Win32::ERROR_NOT_SUPPORTED
        };
        self.complete(d, &c, w, bytes);
        self
    }

    fn call(&mut self, method: Api, ret: Hresult) -> &mut B {
        self.push(1, method, Args::default(), ret, None);
        self
    }

    fn close(&mut self) -> &mut B {
        self.call(Api::Close, Hresult::NOERROR)
    }

    /// A whole correct backup over `devices`, with `mid` mid-stream
    /// Flushes per device, and VDC_Complete when `complete`.
    fn backup(&mut self, devices: u16, mid: u32, complete: bool) -> &mut B {
        let (req, got) = if complete {
            (
                Features::RequestComplete,
                Features(
                    Features::RequestComplete.0
                        | Features::WriteMedia.0
                        | Features::CompleteEnabled.0,
                ),
            )
        } else {
            (Features::LikePipe, Features::WriteMedia)
        };
        self.create(req).config_timeout(1000).config(got);
        for d in 0..devices {
            self.open(d);
        }
        for d in 0..devices {
            self.serve(d, CommandCode::Write, 65536);
            for _ in 0..mid {
                self.serve(d, CommandCode::Flush, 0)
                    .serve(d, CommandCode::Write, 65536);
            }
            self.serve(d, CommandCode::Flush, 0);
            if complete {
                self.serve(d, CommandCode::Complete, 0);
            }
            self.get(d, Hresult::VD_E_CLOSE, -1);
        }
        self.close()
    }
}

fn success() -> Outcome {
    Outcome {
        status: Status::Succeeded,
        reason: None,
        messages: vec![SqlMessage::info(
            3014,
            "BACKUP DATABASE successfully processed 520 pages in 0.100 seconds.",
        )],
        bytes: 1 << 20,
        ended_ms: None,
        media: None,
    }
}

fn failure(reason: FailReason) -> Outcome {
    Outcome {
        status: Status::Failed,
        reason: Some(reason),
        messages: vec![SqlMessage::error(
            3013,
            "BACKUP DATABASE is terminating abnormally.",
        )],
        bytes: 0,
        ended_ms: None,
        media: None,
    }
}

fn cx(outcome: Outcome, end: ProgramEnd) -> Context {
    Context {
        statements: vec![StatementEnd {
            set: Some("set1".into()),
            kind: Some(StatementKind::BackupDatabase),
            outcome,
            ended_ms: None,
            mid_stream_flushes: 0,
        }],
        end,
        unimplemented_code: Some(3),
    }
}

const EXIT0: ProgramEnd = ProgramEnd::Exited { code: 0 };
const EXIT1: ProgramEnd = ProgramEnd::Exited { code: 1 };

fn clauses(v: &[Violation]) -> Vec<&str> {
    v.iter().map(|v| v.clause.as_str()).collect()
}

fn only(v: &[Violation], clause: ClauseId) -> Vec<&Violation> {
    v.iter().filter(|x| clause == x.clause).collect()
}

#[test]
fn a_correct_backup_passes() {
    for (devices, mid, complete) in [(1, 0, false), (3, 2, false), (2, 1, true)] {
        let mut b = B::new();
        b.backup(devices, mid, complete);
        let mut c = cx(success(), EXIT0);
        c.statements[0].mid_stream_flushes = mid;
        let v = check(&b.recs, &c);
        assert!(v.is_empty(), "{devices} {mid} {complete}: {v:#?}");
    }
}

// ----- term.outcome-decides ----------------------------------------------------------------

#[test]
fn success_for_a_failed_backup_is_the_first_finding() {
    let mut b = B::new();
    b.backup(1, 0, false);
    // Also a read-only block violation, which must come after.
    assert_eq!(b.recs[5].method, Api::CompleteCommand);
    b.recs[5].block_modified = Some(true);
    let v = check(&b.recs, &cx(failure(FailReason::DeviceError), EXIT0));
    assert_eq!(id::TERM_OUTCOME_DECIDES, v[0].clause, "{v:#?}");
    assert!(
        v[0].what
            .contains("reported success (exit code 0) for a BACKUP DATABASE that failed")
            && v[0].what.contains("Msg 3013"),
        "{}",
        v[0].what
    );
    let mut running = cx(success(), EXIT0);
    running.statements[0].outcome.status = Status::Running;
    let v = check(&b.recs, &running);
    assert!(v[0].what.contains("had not finished"), "{v:#?}");
}

#[test]
fn failure_for_a_successful_backup_is_a_violation() {
    let mut b = B::new();
    b.backup(1, 0, false);
    let v = check(&b.recs, &cx(success(), EXIT1));
    assert_eq!(clauses(&v), [id::TERM_OUTCOME_DECIDES.as_str()]);
    assert!(
        v[0].what.contains("reported failure (exit code 1)"),
        "{v:#?}"
    );
    // Failure for a failure is right.
    let v = check(&b.recs, &cx(failure(FailReason::DeviceError), EXIT1));
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn the_unimplemented_exit_is_not_graded() {
    let mut b = B::new();
    b.create(Features::LikePipe);
    let v = check(
        &b.recs,
        &cx(
            failure(FailReason::OpenFailed),
            ProgramEnd::Exited { code: 3 },
        ),
    );
    assert!(v.is_empty(), "{v:#?}");
    let v = check(
        &b.recs,
        &cx(
            failure(FailReason::OpenFailed),
            ProgramEnd::Exited { code: 4 },
        ),
    );
    assert!(!v.is_empty());
}

// ----- get-command.timeout, timeout.milliseconds ---------------------------------------------

#[test]
fn a_timeout_treated_as_fatal_is_a_violation() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0);
    b.serve(0, CommandCode::Write, 65536);
    b.get(0, Hresult::VD_E_TIMEOUT, 90);
    let timeout = b.recs.len() - 1;
    b.call(Api::SignalAbort, Hresult::NOERROR).close();
    let v = check(&b.recs, &cx(failure(FailReason::ClientAbort), EXIT1));
    assert_eq!(
        clauses(&v),
        [
            id::GET_COMMAND_TIMEOUT.as_str(),
            id::TIMEOUT_MILLISECONDS.as_str()
        ],
        "{v:#?}"
    );
    assert!(
        v[0].what.contains("device 0 of set 'set1'"),
        "{}",
        v[0].what
    );
    assert!(v[0].what.contains("called SignalAbort"), "{}", v[0].what);
    assert!(v[1].what.contains("90 looks like seconds"), "{}", v[1].what);
    // A timeout of 5000 ms: no hint about units.
    b.recs[timeout].args.timeout = Some(TimeoutArg::new(Timeout::Ms(5000), 5000));
    let v = check(&b.recs, &cx(failure(FailReason::ClientAbort), EXIT1));
    assert_eq!(clauses(&v), [id::GET_COMMAND_TIMEOUT.as_str()]);
}

#[test]
fn a_timeout_followed_by_more_calls_or_after_the_end_is_fine() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0);
    b.get(0, Hresult::VD_E_TIMEOUT, 90);
    b.serve(0, CommandCode::Write, 65536)
        .serve(0, CommandCode::Flush, 0);
    b.get(0, Hresult::VD_E_CLOSE, 90);
    b.close();
    assert!(check(&b.recs, &cx(success(), EXIT0)).is_empty());
    // Gave up after a timeout, but the statement had already ended (the
    // program learned it from its statement).
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0);
    b.get(0, Hresult::VD_E_TIMEOUT, 5000);
    let t = b.recs.last().unwrap().end_ms;
    b.call(Api::SignalAbort, Hresult::NOERROR).close();
    let mut c = cx(failure(FailReason::ServerAbort), EXIT1);
    c.statements[0].ended_ms = Some(t - 1);
    let v = check(&b.recs, &c);
    assert!(only(&v, id::GET_COMMAND_TIMEOUT).is_empty(), "{v:#?}");
    // ... and with the end after the timeout, it is a violation.
    c.statements[0].ended_ms = Some(t + 100);
    let v = check(&b.recs, &c);
    assert_eq!(only(&v, id::GET_COMMAND_TIMEOUT).len(), 1, "{v:#?}");
}

/// A statement the program's own SignalAbort failed (ClientAbort) was
/// running when the timeout before that abort returned, even when the
/// server's clock puts its end in the same millisecond or earlier (two
/// processes' clocks).
#[test]
fn a_timeout_then_the_programs_own_abort_is_graded_whatever_the_clocks() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0);
    b.get(0, Hresult::VD_E_TIMEOUT, 90);
    let t = b.recs.last().unwrap().end_ms;
    b.call(Api::SignalAbort, Hresult::NOERROR).close();
    for ended in [t - 1, t, t + 1] {
        let mut c = cx(failure(FailReason::ClientAbort), EXIT1);
        c.statements[0].ended_ms = Some(ended);
        let v = check(&b.recs, &c);
        assert_eq!(
            clauses(&v),
            [
                id::GET_COMMAND_TIMEOUT.as_str(),
                id::TIMEOUT_MILLISECONDS.as_str()
            ],
            "ended at {ended}, timeout at {t}: {v:#?}"
        );
    }
}

// ----- get-configuration.timeout -------------------------------------------------------------

#[test]
fn waiting_for_a_configuration_after_the_statement_failed() {
    let mut b = B::new();
    b.create(Features::LikePipe);
    for _ in 0..5 {
        b.config_timeout(1000);
    }
    let hung = ProgramEnd::Hung { bound_ms: 30_000 };
    let v = check(&b.recs, &cx(failure(FailReason::OpenFailed), hung));
    assert_eq!(
        clauses(&v),
        [
            id::GET_CONFIGURATION_TIMEOUT.as_str(),
            id::TERM_EXITS.as_str()
        ],
        "{v:#?}"
    );
    assert!(v[0].what.contains("kept waiting"), "{}", v[0].what);
    // Giving up once the statement failed is right.
    b.close();
    let v = check(&b.recs, &cx(failure(FailReason::OpenFailed), EXIT1));
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn giving_up_on_a_running_statement() {
    let mut b = B::new();
    b.create(Features::LikePipe).config_timeout(10);
    let t = b.recs.last().unwrap().end_ms;
    b.close();
    let mut c = cx(failure(FailReason::OpenFailed), EXIT1);
    c.statements[0].ended_ms = Some(t + 500);
    let v = check(&b.recs, &c);
    assert_eq!(
        clauses(&v),
        [
            id::GET_CONFIGURATION_TIMEOUT.as_str(),
            id::TIMEOUT_MILLISECONDS.as_str()
        ],
        "{v:#?}"
    );
    c.statements[0].ended_ms = Some(t - 1);
    assert!(check(&b.recs, &c).is_empty());
    // A minute's wait that gives up is the program's choice.
    c.statements[0].ended_ms = Some(t + 500);
    b.recs[1].args.timeout = Some(TimeoutArg::new(Timeout::Ms(60_000), 60_000));
    assert!(check(&b.recs, &c).is_empty());
}

#[test]
fn a_thread_stopping_for_another_threads_abort_is_fine() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0)
        .open(1);
    // Device 0's thread hits a media error and aborts; device 1's thread
    // times out meanwhile and leaves its loop.
    let w = b.fetch(0, CommandCode::Write, 65536);
    b.push(2, Api::SignalAbort, Args::default(), Hresult::NOERROR, None);
    b.get(1, Hresult::VD_E_TIMEOUT, 5000);
    b.complete(0, &w, Win32::ERROR_DISK_FULL, 0).ret = Code::of(Hresult::VD_E_ABORT);
    b.close();
    let v = check(&b.recs, &cx(failure(FailReason::ClientAbort), EXIT1));
    assert!(v.is_empty(), "{v:#?}");
    // The same timeout on the aborting thread itself is the flaw.
    let k = b
        .recs
        .iter()
        .position(|r| r.method == Api::SignalAbort)
        .unwrap();
    b.recs[k].thread = 3;
    let v = check(&b.recs, &cx(failure(FailReason::ClientAbort), EXIT1));
    assert_eq!(clauses(&v), [id::GET_COMMAND_TIMEOUT.as_str()], "{v:#?}");
}

// ----- close.wait-for-close ------------------------------------------------------------------

#[test]
fn close_before_every_device_closed() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0)
        .open(1);
    b.serve(0, CommandCode::Write, 65536)
        .serve(0, CommandCode::Flush, 0);
    b.get(0, Hresult::VD_E_CLOSE, -1);
    b.serve(1, CommandCode::Write, 65536);
    b.call(Api::Close, Hresult::VD_E_OPEN);
    let v = check(&b.recs, &cx(failure(FailReason::ClientAbort), EXIT1));
    assert_eq!(clauses(&v), [id::CLOSE_WAIT_FOR_CLOSE.as_str()], "{v:#?}");
    assert!(
        v[0].what
            .contains("device 1 had not yet returned VD_E_CLOSE")
            && v[0].what.contains("VDC_Write id 3"),
        "{}",
        v[0].what
    );
}

#[test]
fn close_after_an_abort_need_not_wait() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0)
        .open(1);
    b.serve(0, CommandCode::Write, 65536);
    b.get(0, Hresult::VD_E_ABORT, -1);
    b.get(1, Hresult::VD_E_ABORT, -1);
    b.close();
    let v = check(&b.recs, &cx(failure(FailReason::ServerAbort), EXIT1));
    assert!(v.is_empty(), "{v:#?}");
}

// ----- abort.only-close ----------------------------------------------------------------------

#[test]
fn waiting_after_an_abort_until_killed() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0);
    for _ in 0..50 {
        b.get(0, Hresult::VD_E_ABORT, 1000);
    }
    let v = check(
        &b.recs,
        &cx(
            failure(FailReason::ServerAbort),
            ProgramEnd::Hung { bound_ms: 30_000 },
        ),
    );
    let a = only(&v, id::ABORT_ONLY_CLOSE);
    assert_eq!(a.len(), 2, "{v:#?}");
    assert!(
        a[0].what.contains("49 more calls, until it was killed"),
        "{}",
        a[0].what
    );
    assert!(a[1].what.contains("without calling Close"), "{}", a[1].what);
    assert_eq!(only(&v, id::TERM_EXITS).len(), 1);
    assert!(
        only(&v, id::CLOSE_EXACTLY_ONCE).is_empty(),
        "reported once, as abort.only-close"
    );
}

#[test]
fn exiting_without_close_after_an_abort() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0);
    b.get(0, Hresult::VD_E_ABORT, -1);
    let v = check(&b.recs, &cx(failure(FailReason::ServerAbort), EXIT1));
    assert_eq!(clauses(&v), [id::ABORT_ONLY_CLOSE.as_str()], "{v:#?}");
    assert!(
        v[0].what
            .contains("GetCommand on device 0 returned VD_E_ABORT"),
        "{}",
        v[0].what
    );
    // One more GetCommand after the abort (a drain) and a Close: fine.
    b.get(0, Hresult::VD_E_ABORT, -1);
    b.close();
    assert!(check(&b.recs, &cx(failure(FailReason::ServerAbort), EXIT1)).is_empty());
    // Killed on purpose: what it would have done is not graded.
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0);
    b.get(0, Hresult::VD_E_ABORT, -1);
    let v = check(
        &b.recs,
        &cx(failure(FailReason::ClientAbort), ProgramEnd::Killed),
    );
    assert!(v.is_empty(), "{v:#?}");
}

// ----- command.unanswered, command.not-supported -----------------------------------------------

#[test]
fn commands_never_completed() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0);
    b.serve(0, CommandCode::Write, 65536);
    b.fetch(0, CommandCode::GetError, 0);
    b.fetch(0, CommandCode::FileInfoBegin, 0);
    b.get(0, Hresult::VD_E_ABORT, -1);
    b.close();
    let v = check(&b.recs, &cx(failure(FailReason::Watchdog), EXIT1));
    assert_eq!(clauses(&v), [id::COMMAND_NOT_SUPPORTED.as_str()], "{v:#?}");
    assert!(
        v[0].what.contains("VDC_GetError id 2")
            && v[0].what.contains("and 1 more command")
            && v[0].what.contains("ERROR_NOT_SUPPORTED"),
        "{}",
        v[0].what
    );
    // A required command left unanswered before Close.
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0);
    let w = b.fetch(0, CommandCode::Write, 65536);
    b.call(Api::Close, Hresult::VD_E_OPEN);
    b.complete(0, &w, Win32::ERROR_SUCCESS, 65536).ret = Code::of(Hresult::VD_E_PROTOCOL);
    let v = check(&b.recs, &cx(failure(FailReason::ClientAbort), EXIT1));
    assert_eq!(only(&v, id::COMMAND_UNANSWERED).len(), 1, "{v:#?}");
    assert!(
        only(&v, id::COMMAND_UNANSWERED)[0]
            .what
            .contains("before the program closed the set")
    );
}

#[test]
fn an_abort_the_client_did_not_cause_excuses_unanswered_commands() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0);
    b.fetch(0, CommandCode::Write, 65536);
    b.get(0, Hresult::VD_E_ABORT, -1);
    b.close();
    let v = check(&b.recs, &cx(failure(FailReason::ServerAbort), EXIT1));
    assert!(v.is_empty(), "{v:#?}");
}

// ----- completions ---------------------------------------------------------------------------

#[test]
fn a_written_command_block() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0);
    for _ in 0..3 {
        let c = b.fetch(0, CommandCode::Write, 65536);
        let r = b.complete(0, &c, Win32::ERROR_SUCCESS, 65536);
        r.block_modified = Some(true);
        r.args.handed_back = Some(BlockView {
            code: 2,
            size: 512,
            position: 0,
            buffer_changed: false,
        });
    }
    b.serve(0, CommandCode::Flush, 0);
    b.get(0, Hresult::VD_E_CLOSE, -1);
    b.close();
    let v = check(&b.recs, &cx(success(), EXIT0));
    assert_eq!(
        clauses(&v),
        [id::COMPLETE_COMMAND_READ_ONLY_BLOCK.as_str()],
        "{v:#?}"
    );
    assert!(
        v[0].what.contains("size 65536 → 512") && v[0].what.contains("2 more blocks"),
        "{}",
        v[0].what
    );
    // The finding points at the first modified completion (reports
    // highlight that call).
    let first = b
        .recs
        .iter()
        .find(|r| r.block_modified == Some(true))
        .unwrap();
    assert_eq!(v[0].at, Some(first.seq));
}

#[test]
fn short_transfers_reported_as_success() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0);
    let c = b.fetch(0, CommandCode::Write, 65536);
    b.complete(0, &c, Win32::ERROR_SUCCESS, 32768);
    b.serve(0, CommandCode::Flush, 0);
    b.get(0, Hresult::VD_E_CLOSE, -1);
    b.close();
    let v = check(&b.recs, &cx(failure(FailReason::ShortTransfer), EXIT1));
    assert_eq!(clauses(&v), [id::COMMAND_SHORT_TRANSFER.as_str()], "{v:#?}");
    assert!(
        v[0].what.contains("with ERROR_SUCCESS and 32768 bytes"),
        "{}",
        v[0].what
    );
    // A restore whose last Read reaches the end: ERROR_HANDLE_EOF with the
    // bytes read is right; ERROR_SUCCESS with them is not.
    for (code, bad) in [
        (Win32::ERROR_HANDLE_EOF, false),
        (Win32::ERROR_SUCCESS, true),
    ] {
        let mut b = B::new();
        b.create(Features::LikePipe)
            .config(Features::ReadMedia)
            .open(0);
        b.serve(0, CommandCode::Read, 65536);
        let c = b.fetch(0, CommandCode::Read, 65536);
        b.complete(0, &c, code, 1000);
        b.get(0, Hresult::VD_E_CLOSE, -1);
        b.close();
        let mut x = cx(success(), EXIT0);
        x.statements[0].kind = Some(StatementKind::RestoreDatabase);
        let v = check(&b.recs, &x);
        assert_eq!(!v.is_empty(), bad, "{code}: {v:#?}");
        if bad {
            assert!(
                v[0].what
                    .contains("ERROR_HANDLE_EOF with the bytes it read")
            );
        }
    }
}

#[test]
fn flush_answered_not_supported() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0);
    b.serve(0, CommandCode::Write, 65536);
    let f = b.fetch(0, CommandCode::Flush, 0);
    b.complete(0, &f, Win32::ERROR_NOT_SUPPORTED, 0);
    b.get(0, Hresult::VD_E_CLOSE, -1);
    b.close();
    let v = check(&b.recs, &cx(failure(FailReason::DeviceError), EXIT1));
    assert_eq!(
        clauses(&v),
        [id::FLUSH_RESTORE_NOT_SUPPORTED_MISUSE.as_str()],
        "{v:#?}"
    );
}

// ----- flush.several, complete.negotiation ---------------------------------------------------

#[test]
fn finishing_at_a_mid_stream_flush() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0);
    b.serve(0, CommandCode::Write, 65536)
        .serve(0, CommandCode::Flush, 0);
    b.call(Api::Close, Hresult::VD_E_OPEN);
    let mut c = cx(failure(FailReason::ClientAbort), EXIT1);
    c.statements[0].mid_stream_flushes = 2;
    let v = check(&b.recs, &c);
    assert_eq!(
        clauses(&v),
        [
            id::CLOSE_WAIT_FOR_CLOSE.as_str(),
            id::FLUSH_SEVERAL.as_str()
        ],
        "{v:#?}"
    );
    assert!(v[1].what.contains("Flush 1 of the 2"), "{}", v[1].what);
    // Without mid-stream Flushes in the plan, the same log is only an
    // early Close.
    c.statements[0].mid_stream_flushes = 0;
    let v = check(&b.recs, &c);
    assert_eq!(clauses(&v), [id::CLOSE_WAIT_FOR_CLOSE.as_str()], "{v:#?}");
}

/// Found by client-test (`backup.devices-3.flushes-1.abort`): device 1
/// had just answered a mid-stream Flush when the server aborted the set;
/// device 0 saw VD_E_ABORT and the program closed. Not a finish at the
/// Flush: stopping after an abort is the obligation.
#[test]
fn closing_after_an_abort_seen_on_another_device_at_a_flush() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0)
        .open(1);
    b.serve(1, CommandCode::Write, 65536)
        .serve(1, CommandCode::Flush, 0);
    b.get(0, Hresult::VD_E_ABORT, -1);
    b.call(Api::Close, Hresult::NOERROR);
    let mut c = cx(failure(FailReason::ServerAbort), EXIT1);
    c.statements[0].mid_stream_flushes = 1;
    let v = check(&b.recs, &c);
    assert_eq!(clauses(&v), [] as [&str; 0], "{v:#?}");
    // The same log without the abort is a finish at the Flush.
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0)
        .open(1);
    b.serve(1, CommandCode::Write, 65536)
        .serve(1, CommandCode::Flush, 0);
    b.call(Api::Close, Hresult::VD_E_OPEN);
    let mut c = cx(failure(FailReason::ClientAbort), EXIT1);
    c.statements[0].mid_stream_flushes = 1;
    let v = check(&b.recs, &c);
    assert!(clauses(&v).contains(&id::FLUSH_SEVERAL.as_str()), "{v:#?}");
}

#[test]
fn finishing_at_the_flush_when_complete_was_negotiated() {
    let granted = Features(
        Features::RequestComplete.0 | Features::WriteMedia.0 | Features::CompleteEnabled.0,
    );
    let mut b = B::new();
    b.create(Features::RequestComplete).config(granted).open(0);
    b.serve(0, CommandCode::Write, 65536)
        .serve(0, CommandCode::Flush, 0);
    b.call(Api::Close, Hresult::VD_E_OPEN);
    let v = check(&b.recs, &cx(failure(FailReason::ClientAbort), EXIT1));
    assert_eq!(
        clauses(&v),
        [
            id::CLOSE_WAIT_FOR_CLOSE.as_str(),
            id::COMPLETE_NEGOTIATION.as_str()
        ],
        "{v:#?}"
    );
}

#[test]
fn expecting_complete_that_was_not_granted() {
    let mut b = B::new();
    b.create(Features::RequestComplete)
        .config(Features::WriteMedia)
        .open(0);
    b.serve(0, CommandCode::Write, 65536)
        .serve(0, CommandCode::Flush, 0);
    b.get(0, Hresult::VD_E_CLOSE, -1);
    b.close();
    let v = check(&b.recs, &cx(success(), EXIT1));
    assert_eq!(
        clauses(&v),
        [
            id::TERM_OUTCOME_DECIDES.as_str(),
            id::COMPLETE_NEGOTIATION.as_str()
        ],
        "{v:#?}"
    );
    assert!(
        v[1].what.contains("no VDF_CompleteEnabled"),
        "{}",
        v[1].what
    );
    assert!(check(&b.recs, &cx(success(), EXIT0)).is_empty());
}

// ----- close.exactly-once ---------------------------------------------------------------------

#[test]
fn never_closed_closed_twice_used_after_close() {
    let mut b = B::new();
    b.backup(1, 0, false);
    b.recs.pop();
    let v = check(&b.recs, &cx(success(), EXIT0));
    assert_eq!(clauses(&v), [id::CLOSE_EXACTLY_ONCE.as_str()], "{v:#?}");
    assert!(
        v[0].what
            .contains("was never closed: the program exited with code 0")
    );
    b.call(Api::Destroy, Hresult::NOERROR);
    let v = check(&b.recs, &cx(success(), EXIT0));
    assert!(v[0].what.contains("destroyed the set object"), "{v:#?}");

    let mut b = B::new();
    b.backup(1, 0, false);
    b.call(Api::Close, Hresult::VD_E_PROTOCOL);
    b.get(0, Hresult::VD_E_PROTOCOL, -1);
    b.call(Api::GetConfiguration, Hresult::VD_E_PROTOCOL);
    let v = check(&b.recs, &cx(success(), EXIT0));
    assert_eq!(
        clauses(&v),
        [
            id::CLOSE_EXACTLY_ONCE.as_str(),
            id::CLOSE_EXACTLY_ONCE.as_str()
        ],
        "{v:#?}"
    );
    assert!(
        v[0].what.contains("Close was called 2 times"),
        "{}",
        v[0].what
    );
    assert!(
        v[1].what.contains("GetCommand on device 0") && v[1].what.contains("GetConfiguration"),
        "{}",
        v[1].what
    );
}

#[test]
fn a_call_that_began_before_close_returned_is_not_after_it() {
    let mut b = B::new();
    b.create(Features::LikePipe)
        .config(Features::WriteMedia)
        .open(0);
    b.serve(0, CommandCode::Write, 65536)
        .serve(0, CommandCode::Flush, 0);
    b.get(0, Hresult::VD_E_CLOSE, -1);
    b.close();
    let close_seq = b.recs.last().unwrap().seq;
    // SignalAbort from another thread, begun before Close returned.
    b.call(Api::SignalAbort, Hresult::VD_E_PROTOCOL)
        .recs
        .last_mut()
        .unwrap()
        .after = close_seq - 1;
    assert!(check(&b.recs, &cx(success(), EXIT0)).is_empty());
    b.recs.last_mut().unwrap().after = close_seq;
    assert_eq!(
        clauses(&check(&b.recs, &cx(success(), EXIT0))),
        [id::CLOSE_EXACTLY_ONCE.as_str()]
    );
}

#[test]
fn reuse_of_the_object_is_a_new_set() {
    let mut b = B::new();
    b.backup(1, 0, false);
    b.name = "set2".into();
    b.backup(1, 0, false);
    let mut c = cx(success(), EXIT0);
    let mut second = c.statements[0].clone();
    second.set = Some("set2".into());
    c.statements.push(second);
    assert!(check(&b.recs, &c).is_empty());
    // The second set's statement failed: the finding names it.
    c.statements[1].outcome = failure(FailReason::DeviceError);
    let v = check(&b.recs, &c);
    assert_eq!(clauses(&v), [id::TERM_OUTCOME_DECIDES.as_str()]);
}

// ----- term.exits ----------------------------------------------------------------------------

#[test]
fn hangs_and_crashes() {
    let mut b = B::new();
    b.backup(1, 0, false);
    let v = check(
        &b.recs,
        &cx(success(), ProgramEnd::Hung { bound_ms: 30_000 }),
    );
    assert_eq!(clauses(&v), [id::TERM_EXITS.as_str()], "{v:#?}");
    assert!(
        v[0].what
            .contains("still running 30000 ms after its statement ended")
            && v[0].what.contains("thread 1 Close → NOERROR"),
        "{}",
        v[0].what
    );
    let v = check(&b.recs, &cx(success(), ProgramEnd::Crashed { signal: 11 }));
    assert_eq!(clauses(&v), [id::TERM_EXITS.as_str()]);
    assert!(v[0].what.contains("signal 11"));
}

// ----- robustness --------------------------------------------------------------------------

#[test]
fn an_empty_log_and_failed_creates() {
    assert!(check(&[], &cx(success(), EXIT0)).is_empty());
    let mut b = B::new();
    b.push(
        1,
        Api::CreateEx,
        Args::default(),
        Hresult::VD_E_INSTANCE_NAME,
        None,
    );
    let v = check(&b.recs, &cx(failure(FailReason::OpenFailed), EXIT1));
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn context_round_trips() {
    let c = cx(
        failure(FailReason::Watchdog),
        ProgramEnd::Hung { bound_ms: 5 },
    );
    let s = serde_json::to_string(&c).unwrap();
    assert!(s.contains(r#""end":{"how":"hung","bound_ms":5}"#), "{s}");
    let back: Context = serde_json::from_str(&s).unwrap();
    assert_eq!(back, c);
}

// ----- the property --------------------------------------------------------------------------

/// One step a correct device thread takes.
#[derive(Clone, Copy, Debug)]
enum Step {
    Timeout(i64),
    Write,
    MidFlush,
    Unknown,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0i64..100_000).prop_map(Step::Timeout),
        Just(Step::Write),
        Just(Step::MidFlush),
        Just(Step::Unknown),
    ]
}

fn mid_flushes(steps: &[Step]) -> u32 {
    steps.iter().filter(|s| matches!(s, Step::MidFlush)).count() as u32
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever order the threads' calls interleave in, however many
    /// timeouts and unknown commands a correct client meets, its log never
    /// violates an obligation; and dropping its Close always does.
    #[test]
    fn a_correct_client_never_violates(
        devices in prop::collection::vec(prop::collection::vec(step(), 0..12), 1..4),
        order in prop::collection::vec(0usize..4, 0..64),
        complete in any::<bool>(),
    ) {
        let n = devices.len() as u16;
        let mut b = B::new();
        let (req, got) = if complete {
            (Features::RequestComplete, Features(Features::RequestComplete.0 | Features::WriteMedia.0 | Features::CompleteEnabled.0))
        } else {
            (Features::LikePipe, Features::WriteMedia)
        };
        b.create(req).config(got);
        for d in 0..n {
            b.open(d);
        }
        // The same number of mid-stream Flushes on every device (the
        // server's plan): the most any device's steps ask for.
        let mid = devices.iter().map(|s| mid_flushes(s)).max().unwrap_or(0);
        let mut scripts: Vec<Vec<Step>> = devices
            .iter()
            .map(|s| {
                let mut v = s.clone();
                v.extend((mid_flushes(s)..mid).map(|_| Step::MidFlush));
                v
            })
            .collect();
        let mut cursor = vec![0usize; scripts.len()];
        let mut turns = order.into_iter().map(|k| k % scripts.len()).collect::<Vec<_>>();
        turns.extend((0..scripts.len()).flat_map(|d| std::iter::repeat_n(d, 64)));
        for d in turns {
            let Some(s) = scripts[d].get(cursor[d]).copied() else { continue };
            cursor[d] += 1;
            let dv = d as u16;
            match s {
                Step::Timeout(ms) => { b.get(dv, Hresult::VD_E_TIMEOUT, ms); }
                Step::Write => { b.serve(dv, CommandCode::Write, 65536); }
                Step::MidFlush => { b.serve(dv, CommandCode::Flush, 0); }
                Step::Unknown => { b.serve(dv, CommandCode::GetError, 0); }
            }
        }
        for (d, s) in scripts.iter_mut().enumerate() {
            prop_assert!(cursor[d] >= s.len());
            let dv = d as u16;
            b.serve(dv, CommandCode::Flush, 0);
            if complete {
                b.serve(dv, CommandCode::Complete, 0);
            }
            b.get(dv, Hresult::VD_E_CLOSE, -1);
        }
        b.close();
        let mut c = cx(success(), EXIT0);
        c.statements[0].mid_stream_flushes = mid;
        let v = check(&b.recs, &c);
        prop_assert!(v.is_empty(), "{:#?}", v);
        b.recs.pop();
        let v = check(&b.recs, &c);
        prop_assert_eq!(clauses(&v), vec![id::CLOSE_EXACTLY_ONCE.as_str()]);
    }
}
