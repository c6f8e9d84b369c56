//! One test per catalog clause the simulator implements, named after the
//! clause (dots and dashes → underscores), its doc comment naming the clause
//! id verbatim. Each asserts the clause's behaviour through the client half
//! (`ClientSet` with a small `Namespace`) and/or the deterministic world.
//!
//! `client_table_cells` drives a `ClientSet` into each of the six states and
//! calls each of the seven table methods there, checking every result
//! against its cell of the transition table; `every_implemented_clause_has_a_test`
//! keeps this file complete as the catalog grows.

mod common;

use common::{CHUNK, Driver, Ns, device_names, handle, pipe, statement};
use std::sync::Arc;
use vdi_model::call::{Call, Reply, Value};
use vdi_model::calllog::{
    Api, Args, CallRecord, Code, CommandView, CompletionArg, ConfigView, Produced, TimeoutArg,
};
use vdi_model::checks::obligations::{self, Context, ProgramEnd, StatementEnd};
use vdi_model::client::{Blocking, ClientSet, DeviceHandle, Ret};
use vdi_model::content::{Content, Extent};
use vdi_model::fault::{Fault, FaultPlan, Phase, PlannedFault, Trigger};
use vdi_model::msg::Timeout;
use vdi_model::msg::{BufId, Cmd, CmdId, Completion, DevIx, ToClient, ToServer};
use vdi_model::outcome::{FailReason, Outcome, Status};
use vdi_model::programs::{ClientSpec, Flaw, Operation};
use vdi_model::server::DevState;
use vdi_model::statement::{ExtraCommand, ReadSizes, ServerPlan, StatementKind};
use vdi_model::trace::{Event, Trace};
use vdi_sim::simulate;
use vdi_sim::world::{End, RunResult, WorldConfig};
use vdi_spec::ClauseId;
use vdi_spec::id;
use vdi_spec::profile::{
    AfterDeviceClosed, CloseWithOpenDevices, CompletionOrder, DiskHeaderOrder, ErrorTermination,
    ShortTransfer, TapeRestorePositioning,
};
use vdi_spec::{
    ClientState, CommandCode, Features, Hresult, Profile, TableMethod, VdConfig, Win32,
};

// ----------------------------------------------------------------------
// client-half helpers
// ----------------------------------------------------------------------

const SET: &str = "set";

fn with_profile(p: Profile) -> ClientSet {
    ClientSet::new(Arc::new(p))
}

fn fresh() -> (ClientSet, Ns) {
    (with_profile(Profile::default()), Ns::default())
}

fn created_with(p: Profile, n: u32) -> (ClientSet, Ns) {
    let mut c = with_profile(p);
    let mut ns = Ns::default();
    let r = c.create(SET, &pipe(n), &mut ns);
    assert_eq!(r.code(), Hresult::NOERROR);
    (c, ns)
}

fn created(n: u32) -> (ClientSet, Ns) {
    created_with(Profile::default(), n)
}

fn server_cfg(n: u32) -> VdConfig {
    let mut cfg = pipe(n);
    cfg.features = Features::WriteMedia.0;
    cfg.block_size = 512;
    cfg.max_transfer_size = 65536;
    cfg.max_io_depth = 4;
    cfg
}

fn configure(c: &mut ClientSet, n: u32) {
    c.deliver(ToClient::Configured {
        cfg: server_cfg(n),
        devices: device_names(SET, n as u16),
    });
}

fn initializing_with(p: Profile, n: u32) -> (ClientSet, Ns) {
    let (mut c, ns) = created_with(p, n);
    configure(&mut c, n);
    assert_eq!(ready(c.get_configuration()).code(), Hresult::NOERROR);
    assert_eq!(c.state(), ClientState::Initializing);
    (c, ns)
}

fn initializing(n: u32) -> (ClientSet, Ns) {
    initializing_with(Profile::default(), n)
}

fn active_with(p: Profile, n: u32) -> (ClientSet, Ns, Vec<DeviceHandle>) {
    let (mut c, ns) = initializing_with(p, n);
    let hs = device_names(SET, n as u16)
        .iter()
        .map(|name| c.open_device(name).result.expect("opens"))
        .collect();
    assert_eq!(c.state(), ClientState::Active);
    (c, ns, hs)
}

fn active(n: u32) -> (ClientSet, Ns, Vec<DeviceHandle>) {
    active_with(Profile::default(), n)
}

fn normally_terminated(n: u32) -> (ClientSet, Ns, Vec<DeviceHandle>) {
    let (mut c, ns, hs) = active(n);
    for (i, h) in hs.iter().enumerate() {
        c.deliver(ToClient::CloseDevice { dev: i as DevIx });
        assert_eq!(ready(c.get_command(*h)).code(), Hresult::VD_E_CLOSE);
    }
    assert_eq!(c.state(), ClientState::NormallyTerminated);
    (c, ns, hs)
}

fn aborted(n: u32) -> (ClientSet, Ns, Vec<DeviceHandle>) {
    let (mut c, ns, hs) = active(n);
    assert_eq!(c.signal_abort().code(), Hresult::NOERROR);
    assert_eq!(c.state(), ClientState::Abort);
    (c, ns, hs)
}

fn ready<T: std::fmt::Debug>(p: Blocking<Ret<T>>) -> Ret<T> {
    match p {
        Blocking::Ready(r) => r,
        Blocking::Pending => panic!("the call would wait"),
    }
}

fn cmd(id: u64, dev: DevIx, code: CommandCode) -> Cmd {
    let buffer = matches!(code, CommandCode::Read | CommandCode::Write).then_some(BufId(id as u32));
    Cmd {
        id: CmdId(id),
        dev,
        code,
        size: 512,
        position: 0,
        buffer,
        data: Content::Empty,
    }
}

fn complete(c: &mut ClientSet, h: DeviceHandle, k: &Cmd, code: Win32) -> Ret<()> {
    let bytes = if code == Win32::ERROR_SUCCESS && k.buffer.is_some() {
        u64::from(k.size)
    } else {
        0
    };
    c.complete_command(h, k, code, bytes, 0, Content::Empty)
}

fn completions(c: &ClientSet) -> Vec<Completion> {
    c.out
        .iter()
        .filter_map(|m| match m {
            ToServer::Completed(x) => Some(x.clone()),
            _ => None,
        })
        .collect()
}

// ----------------------------------------------------------------------
// world helpers
// ----------------------------------------------------------------------

fn spec(operation: Operation, devices: u16, chunks: u64) -> ClientSpec {
    ClientSpec {
        operation,
        devices,
        plan: ServerPlan {
            data_bytes: chunks * CHUNK,
            ..ServerPlan::default()
        },
        ..ClientSpec::default()
    }
}

fn run(spec: &ClientSpec, cfg: WorldConfig) -> RunResult {
    simulate::simulate(spec, cfg, Trace::recording())
}

fn run_plan(spec: &ClientSpec, plan: &str, seed: u64) -> RunResult {
    let mut cfg = WorldConfig::new(seed);
    cfg.faults = simulate::fault_plan(plan, spec, seed).expect("a named plan");
    run(spec, cfg)
}

fn run_faults(spec: &ClientSpec, faults: Vec<PlannedFault>, seed: u64) -> RunResult {
    let mut cfg = WorldConfig::new(seed);
    cfg.faults = FaultPlan {
        name: "test".into(),
        faults,
    };
    run(spec, cfg)
}

/// The default profile but `error-termination = clear-error-then-abort`:
/// a failed statement ends by SignalAbort without waiting for the
/// commands still outstanding (under the default, drain-then-close, it
/// waits for them).
fn clear_then_abort() -> Profile {
    Profile {
        error_termination: ErrorTermination::ClearErrorThenAbort,
        ..Profile::default()
    }
}

fn run_profile(spec: &ClientSpec, profile: Profile, plan: &str, seed: u64) -> RunResult {
    let mut cfg = WorldConfig::new(seed);
    cfg.profile = profile;
    cfg.faults = simulate::fault_plan(plan, spec, seed).expect("a named plan");
    run(spec, cfg)
}

fn on(dev: DevIx, nth: u64, code: Option<CommandCode>, phase: Phase, fault: Fault) -> PlannedFault {
    PlannedFault {
        phase,
        trigger: Trigger::OnCommand { dev, nth, code },
        fault,
    }
}

fn cites(r: &RunResult, id: ClauseId) -> bool {
    r.trace.events().iter().any(|e| e.clause == Some(id)) || r.clauses.contains_key(id.as_str())
}

fn events<'a>(r: &'a RunResult, who: &str, what: &str) -> Vec<&'a Event> {
    r.trace
        .events()
        .iter()
        .filter(|e| (who.is_empty() || e.who == who) && e.what == what)
        .collect()
}

fn outcome(r: &RunResult, i: usize) -> &Outcome {
    &r.statements[i].1
}

fn msgs(o: &Outcome) -> String {
    o.messages
        .iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn has_msg(o: &Outcome, number: u32, text: &str) -> bool {
    o.messages
        .iter()
        .any(|m| m.number == number && m.text.contains(text))
}

fn all_succeeded(r: &RunResult) -> bool {
    !r.statements.is_empty() && r.statements.iter().all(|(_, o)| o.succeeded())
}

fn assert_clean(r: &RunResult) {
    assert_eq!(r.end, End::Finished);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

fn device_ends(r: &RunResult) -> Vec<Option<Hresult>> {
    r.client.devices.iter().map(|d| d.end).collect()
}

/// The command names device `dev` fetched, in order (from the trace).
fn fetched(r: &RunResult, dev: &str) -> Vec<String> {
    events(r, dev, "GetCommand")
        .iter()
        .filter_map(|e| {
            let i = e.detail.find("VDC_")?;
            Some(e.detail[i..].split(' ').next()?.to_string())
        })
        .collect()
}

/// `key=<n>` from a trace detail.
fn field(detail: &str, key: &str) -> Option<u64> {
    let i = detail.find(&format!("{key}="))?;
    detail[i + key.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A driven world with a 1..n device backup configured and every device
/// open: (driver, ctl thread, device threads, handles).
fn driven_backup(
    cfg: WorldConfig,
    n: u16,
    chunks: u64,
    set_cfg: VdConfig,
) -> (Driver, usize, Vec<usize>, Vec<DeviceHandle>) {
    let mut d = Driver::new(cfg, Trace::recording());
    let ctl = d.w.add_thread("ctl", None);
    let ts: Vec<usize> = (0..n)
        .map(|i| d.w.add_thread(&format!("dev{i}"), Some(i)))
        .collect();
    assert_eq!(d.create(ctl, SET, set_cfg).code, Hresult::NOERROR);
    d.w.send_statement(statement(
        StatementKind::BackupDatabase,
        SET,
        n,
        chunks * CHUNK,
    ));
    assert_eq!(d.get_configuration(ctl).code, Hresult::NOERROR);
    let hs = device_names(SET, n)
        .iter()
        .map(|name| handle(&d.open(ctl, name)))
        .collect();
    (d, ctl, ts, hs)
}

/// Fetches every command queued on `h` without completing any.
fn drain(d: &mut Driver, t: usize, h: DeviceHandle) -> Vec<Cmd> {
    let mut v = Vec::new();
    loop {
        let r = d.call(
            t,
            Call::GetCommand {
                dev: h,
                timeout: Timeout::Ms(0),
            },
        );
        match r.value {
            Value::Command(c) => v.push(c),
            _ => {
                assert_eq!(r.code, Hresult::VD_E_TIMEOUT);
                return v;
            }
        }
    }
}

// ======================================================================
// Close
// ======================================================================

/// `close.not-open`: Close with no set (DNE, a second Close included)
/// returns VD_E_PROTOCOL and does nothing.
#[test]
fn close_not_open() {
    let (mut c, mut ns) = fresh();
    let r = c.close(&mut ns);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_PROTOCOL, id::CLOSE_NOT_OPEN)
    );
    assert!(c.out.is_empty(), "no action");
    let (mut c, mut ns, _) = normally_terminated(1);
    assert_eq!(c.close(&mut ns).code(), Hresult::NOERROR);
    c.out.clear();
    let r = c.close(&mut ns);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_PROTOCOL, id::CLOSE_NOT_OPEN)
    );
    assert!(c.out.is_empty());
    assert_eq!(c.state(), ClientState::Dne);
}

/// `close.all-finished`: Close after every device saw VD_E_CLOSE returns
/// NOERROR, releases the set (its name is free again) and returns to DNE;
/// Close of an aborted set or of one with no device open is NOERROR too.
#[test]
fn close_all_finished() {
    let (mut c, mut ns, _) = normally_terminated(2);
    c.out.clear();
    let r = c.close(&mut ns);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::NOERROR, id::CLOSE_ALL_FINISHED)
    );
    assert_eq!(c.state(), ClientState::Dne);
    assert_eq!(c.out, vec![ToServer::Closed], "no abort");
    assert!(ns.0.is_empty(), "resources released");
    let (mut c, mut ns, _) = aborted(2);
    assert_eq!(c.close(&mut ns).code(), Hresult::NOERROR);
    let (mut c, mut ns) = initializing(2);
    assert_eq!(c.close(&mut ns).code(), Hresult::NOERROR);
    // In the world: the reference client closes after VD_E_CLOSE everywhere.
    let r = run(&spec(Operation::Backup, 2, 4), WorldConfig::new(1));
    assert_clean(&r);
    let close = events(&r, "ctl", "Close");
    assert_eq!(close.len(), 1);
    assert_eq!(close[0].clause, Some(id::CLOSE_ALL_FINISHED));
}

/// `close.devices-open`: Close with a device still open returns VD_E_OPEN
/// (the profile's choice; the matrix's NOERROR otherwise), signals abort to
/// the server, and still releases the set (→ DNE).
#[test]
fn close_devices_open() {
    let (mut c, mut ns, _) = active(2);
    c.out.clear();
    let r = c.close(&mut ns);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_OPEN, id::CLOSE_DEVICES_OPEN)
    );
    assert_eq!(c.out, vec![ToServer::Abort, ToServer::Closed]);
    assert_eq!(c.state(), ClientState::Dne);
    assert!(ns.0.is_empty(), "released anyway");
    let p = Profile {
        close_with_open_devices: CloseWithOpenDevices::Noerror,
        ..Profile::default()
    };
    let (mut c, mut ns, _) = active_with(p, 1);
    c.out.clear();
    let r = c.close(&mut ns);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::NOERROR, id::CLOSE_DEVICES_OPEN)
    );
    assert_eq!(
        c.out,
        vec![ToServer::Abort, ToServer::Closed],
        "still aborts"
    );
}

/// `close.invalidates-devices`: a device handle used after Close gets the
/// profile's use-after-close code, also once a new set exists on the
/// object, and nothing crashes.
#[test]
fn close_invalidates_devices() {
    let (mut c, mut ns, hs) = normally_terminated(1);
    c.close(&mut ns);
    let r = ready(c.get_command(hs[0]));
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_PROTOCOL, id::CLOSE_INVALIDATES_DEVICES)
    );
    let k = cmd(1, 0, CommandCode::Write);
    let r = complete(&mut c, hs[0], &k, Win32::ERROR_SUCCESS);
    assert_eq!(r.clause, id::CLOSE_INVALIDATES_DEVICES);
    // A new set with a device of the same index: the old handle stays dead.
    c.create(SET, &pipe(1), &mut ns);
    configure(&mut c, 1);
    ready(c.get_configuration());
    let h_new = c.open_device(SET).result.unwrap();
    assert_eq!(h_new.index, hs[0].index);
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    let r = ready(c.get_command(hs[0]));
    assert_eq!(r.clause, id::CLOSE_INVALIDATES_DEVICES);
    assert_eq!(ready(c.get_command(h_new)).code(), Hresult::NOERROR);
    // The code is a profile parameter.
    let p = Profile {
        use_after_close_code: Hresult::VD_E_INVALID,
        ..Profile::default()
    };
    let (mut c, mut ns, hs) = active_with(p, 1);
    c.close(&mut ns);
    assert_eq!(ready(c.get_command(hs[0])).code(), Hresult::VD_E_INVALID);
}

/// `close.reuse`: after Close, Create on the same object succeeds (a new
/// incarnation); in the world a roundtrip runs BACKUP then RESTORE on one
/// object, and messages of the closed set never reach its successor.
#[test]
fn close_reuse() {
    let (mut c, mut ns, _) = normally_terminated(1);
    assert_eq!(c.incarnation(), 1);
    c.close(&mut ns);
    let r = c.create(SET, &pipe(3), &mut ns);
    assert_eq!((r.code(), r.clause), (Hresult::NOERROR, id::CLOSE_REUSE));
    assert_eq!(c.incarnation(), 2);
    assert_eq!(c.state(), ClientState::Configurable);
    assert!(
        c.device_names().is_empty(),
        "nothing of the old set is left"
    );
    let r = run(&spec(Operation::Roundtrip, 2, 4), WorldConfig::new(2));
    assert_clean(&r);
    assert!(all_succeeded(&r));
    let creates = events(&r, "ctl", "CreateEx");
    assert_eq!(creates.len(), 2);
    assert_eq!(creates[1].clause, Some(id::CLOSE_REUSE));
}

/// `close.wait-for-close`: a client that closes before VD_E_CLOSE (flaw
/// closes-before-close) gets VD_E_OPEN from Close; in Abort, Close may
/// follow at once and returns NOERROR.
#[test]
fn close_wait_for_close() {
    let mut s = spec(Operation::Backup, 2, 4);
    s.flaws.insert(Flaw::ClosesBeforeClose);
    let r = run(&s, WorldConfig::new(3));
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let close = events(&r, "ctl", "Close");
    assert_eq!(
        close[0].clause,
        Some(id::CLOSE_DEVICES_OPEN),
        "{}",
        close[0].detail
    );
    assert!(close[0].detail.contains("VD_E_OPEN"));
    let (mut c, mut ns, _) = aborted(2);
    let r = c.close(&mut ns);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::NOERROR, id::CLOSE_WAIT_FOR_CLOSE)
    );
}

/// `close.exactly-once`: a driven session logged as the library logs a
/// program's calls (`vdi_model::calllog`) and graded
/// (`vdi_model::checks::obligations`): one Close after VD_E_CLOSE keeps the
/// obligation; a second Close (VD_E_PROTOCOL, `close.not-open`) and a
/// GetCommand on the closed set's device break it.
#[test]
fn close_exactly_once() {
    let mut l = Logged::new(WorldConfig::new(5));
    let ctl = l.d.w.add_thread("ctl", None);
    let t = l.d.w.add_thread("dev0", Some(0));
    let create = Call::Create {
        name: SET.into(),
        cfg: pipe(1),
    };
    assert_eq!(l.call(ctl, create).code, Hresult::NOERROR);
    l.d.w
        .send_statement(statement(StatementKind::BackupDatabase, SET, 1, 3 * CHUNK));
    let timeout = Timeout::Ms(10_000);
    l.call(ctl, Call::GetConfiguration { timeout });
    let dev = handle(&l.call(ctl, Call::OpenDevice { name: SET.into() }));
    assert_eq!(l.serve(t, dev), Hresult::VD_E_CLOSE);
    assert_eq!(l.call(ctl, Call::Close).code, Hresult::NOERROR);
    let o = l.d.w.wait_statement(Timeout::Infinite).unwrap().unwrap();
    assert!(o.succeeded());
    let cx = graded_context(vec![o], ProgramEnd::Exited { code: 0 });
    assert_eq!(obligations::check(&l.recs, &cx), []);
    let again = l.call(ctl, Call::Close);
    assert_eq!(
        (again.code, again.clause),
        (Hresult::VD_E_PROTOCOL, Some(id::CLOSE_NOT_OPEN))
    );
    l.call(t, Call::GetCommand { dev, timeout });
    let found = obligations::check(&l.recs, &cx);
    let clauses: Vec<&str> = found.iter().map(|v| v.clause.as_str()).collect();
    assert_eq!(
        clauses,
        [
            id::CLOSE_EXACTLY_ONCE.as_str(),
            id::CLOSE_EXACTLY_ONCE.as_str()
        ],
        "{found:#?}"
    );
    assert!(found[0].what.contains("Close was called 2 times"));
    assert!(found[1].what.contains("GetCommand on device 0"));
}

/// `close.before-server-open`: a client that closes before the server
/// opened the set makes the server's Open fail (VD_E_INVALID), so the
/// statement fails.
#[test]
fn close_before_server_open() {
    let mut d = Driver::new(WorldConfig::new(4), Trace::recording());
    let ctl = d.w.add_thread("ctl", None);
    d.create(ctl, SET, pipe(1));
    d.w.send_statement(statement(StatementKind::BackupDatabase, SET, 1, CHUNK));
    assert_eq!(d.call(ctl, Call::Close).code, Hresult::NOERROR);
    let o = d.w.wait_statement(Timeout::Infinite).unwrap().unwrap();
    assert_eq!(o.status, Status::Failed);
    assert_eq!(o.reason, Some(FailReason::OpenFailed));
    assert!(
        has_msg(&o, 3201, "Cannot open backup device 'set'"),
        "{}",
        msgs(&o)
    );
    let r = d.w.finish_driven();
    assert!(cites(&r, id::SERVER_OPEN_MISSING_SET));
    assert!(
        events(&r, "server", "Open")[0]
            .detail
            .contains("VD_E_INVALID")
    );
}

// ======================================================================
// Create / CreateEx
// ======================================================================

/// `create.ok`: Create in DNE creates the set (→ Configurable) with the
/// client's configuration and claims its name.
#[test]
fn create_ok() {
    let (mut c, mut ns) = fresh();
    let cfg = pipe(3);
    let r = c.create("a-set", &cfg, &mut ns);
    assert_eq!((r.code(), r.clause), (Hresult::NOERROR, id::CREATE_OK));
    assert_eq!(c.state(), ClientState::Configurable);
    assert_eq!(c.name(), "a-set");
    assert_eq!(c.client_config(), &cfg);
    assert_eq!(ns.0.get("a-set"), Some(&cfg));
}

/// `create.config-invalid`: an invalid VDConfig (deviceCount, features,
/// server-only bits, alignment) gets VD_E_NOTSUPPORTED and no set.
#[test]
fn create_config_invalid() {
    let mut bad = vec![
        VdConfig::client(0, Features::LikePipe),
        VdConfig::client(65, Features::LikePipe),
        VdConfig::client(1, Features::WriteMedia),
        VdConfig::client(1, Features(0x4)),
    ];
    let mut a = pipe(1);
    a.alignment = 3;
    bad.push(a);
    for cfg in bad {
        let (mut c, mut ns) = fresh();
        let r = c.create(SET, &cfg, &mut ns);
        assert_eq!(
            (r.code(), r.clause),
            (Hresult::VD_E_NOTSUPPORTED, id::CREATE_CONFIG_INVALID),
            "{cfg:?}"
        );
        assert_eq!(c.state(), ClientState::Dne);
        assert!(ns.0.is_empty());
    }
}

/// `create.already-exists`: Create in any state but DNE returns
/// VD_E_PROTOCOL and changes nothing.
#[test]
fn create_already_exists() {
    let mut sets = vec![created(1).0, initializing(1).0, active(1).0];
    sets.push(normally_terminated(1).0);
    sets.push(aborted(1).0);
    for mut c in sets {
        let before = c.state();
        let mut ns = Ns::default();
        let r = c.create("other", &pipe(1), &mut ns);
        assert_eq!(
            (r.code(), r.clause),
            (Hresult::VD_E_PROTOCOL, id::CREATE_ALREADY_EXISTS)
        );
        assert_eq!(c.state(), before);
        assert_eq!(c.name(), SET);
        assert!(ns.0.is_empty());
    }
}

/// `create.illegal-name`: an empty name or one with a backslash is refused
/// with the profile's code; no set is created.
#[test]
fn create_illegal_name() {
    for name in ["", "a\\b"] {
        let (mut c, mut ns) = fresh();
        let r = c.create(name, &pipe(1), &mut ns);
        assert_eq!(
            (r.code(), r.clause),
            (Hresult::VD_E_INVALID, id::CREATE_ILLEGAL_NAME)
        );
        assert_eq!(c.state(), ClientState::Dne);
    }
    let mut c = with_profile(Profile {
        create_illegal_name_code: Hresult::VD_E_NOTSUPPORTED,
        ..Profile::default()
    });
    assert_eq!(
        c.create("", &pipe(1), &mut Ns::default()).code(),
        Hresult::VD_E_NOTSUPPORTED
    );
    assert!(vdi_model::client::legal_set_name("Global-7f3c"));
}

/// `create.name-in-use`: a second live set with the same name is refused
/// (profile code, VD_E_BUSY by default); once the first is closed the name
/// is free.
#[test]
fn create_name_in_use() {
    let mut ns = Ns::default();
    let mut a = with_profile(Profile::default());
    let mut b = with_profile(Profile::default());
    a.create(SET, &pipe(1), &mut ns);
    let r = b.create(SET, &pipe(1), &mut ns);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_BUSY, id::CREATE_NAME_IN_USE)
    );
    assert_eq!(b.state(), ClientState::Dne);
    a.close(&mut ns);
    assert_eq!(b.create(SET, &pipe(1), &mut ns).code(), Hresult::NOERROR);
}

/// `create-ex.instance-name`: an unknown instance, or one with a machine\
/// prefix, gets VD_E_INSTANCE_NAME and no set.
#[test]
fn create_ex_instance_name() {
    for inst in ["NOPE", "HOST\\MSSQLSERVER"] {
        let (mut c, mut ns) = fresh();
        let r = c.create_ex(Some(inst), SET, &pipe(1), &mut ns);
        assert_eq!(
            (r.code(), r.clause),
            (Hresult::VD_E_INSTANCE_NAME, id::CREATE_EX_INSTANCE_NAME)
        );
        assert_eq!(c.state(), ClientState::Dne);
        assert!(ns.0.is_empty());
    }
}

/// `create-ex.null-instance`: a NULL instance targets the default instance;
/// in the world the reference client (instance None) backs up normally.
#[test]
fn create_ex_null_instance() {
    let (mut c, mut ns) = fresh();
    let r = c.create_ex(None, SET, &pipe(1), &mut ns);
    assert_eq!((r.code(), r.clause), (Hresult::NOERROR, id::CREATE_OK));
    let r = run(&spec(Operation::Backup, 1, 2), WorldConfig::new(5));
    assert!(
        events(&r, "ctl", "CreateEx")[0]
            .detail
            .contains("instance=None")
    );
    assert!(all_succeeded(&r));
}

/// `create-ex.named-instance`: the name of an installed instance (the
/// profile's list, matched case-insensitively) is accepted.
#[test]
fn create_ex_named_instance() {
    let (mut c, mut ns) = fresh();
    assert_eq!(
        c.create_ex(Some("mssqlserver"), SET, &pipe(1), &mut ns)
            .code(),
        Hresult::NOERROR
    );
    let mut c = with_profile(Profile {
        instances: vec!["SQL2022".into()],
        ..Profile::default()
    });
    let mut ns = Ns::default();
    assert_eq!(
        c.create_ex(Some("MSSQLSERVER"), SET, &pipe(1), &mut ns)
            .code(),
        Hresult::VD_E_INSTANCE_NAME
    );
    assert_eq!(
        c.create_ex(Some("SQL2022"), SET, &pipe(1), &mut ns).code(),
        Hresult::NOERROR
    );
    let mut s = spec(Operation::Backup, 1, 2);
    s.instance = Some("MSSQLSERVER".into());
    assert!(all_succeeded(&run(&s, WorldConfig::new(6))));
}

/// `create-ex.empty-instance`: "" is refused with VD_E_INSTANCE_NAME, or
/// names the default instance, as the profile says.
#[test]
fn create_ex_empty_instance() {
    let (mut c, mut ns) = fresh();
    let r = c.create_ex(Some(""), SET, &pipe(1), &mut ns);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_INSTANCE_NAME, id::CREATE_EX_EMPTY_INSTANCE)
    );
    let mut c = with_profile(Profile {
        empty_instance_is_default: true,
        ..Profile::default()
    });
    assert_eq!(
        c.create_ex(Some(""), SET, &pipe(1), &mut Ns::default())
            .code(),
        Hresult::NOERROR
    );
}

// ======================================================================
// GetConfiguration
// ======================================================================

/// `get-configuration.waits`: in Configurable, GetConfiguration waits until
/// the server configures the set, then returns NOERROR (→ Initializing);
/// in the world it returns when the statement has opened the set.
#[test]
fn get_configuration_waits() {
    let (mut c, _ns) = created(1);
    assert_eq!(c.get_configuration(), Blocking::Pending);
    assert_eq!(c.state(), ClientState::Configurable);
    configure(&mut c, 1);
    let r = ready(c.get_configuration());
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::NOERROR, id::GET_CONFIGURATION_WAITS)
    );
    assert_eq!(r.result.unwrap(), server_cfg(1));
    assert_eq!(c.state(), ClientState::Initializing);

    let mut cfg = WorldConfig::new(7);
    cfg.statement_delay_ms = 700;
    let mut d = Driver::new(cfg, Trace::hashing());
    let ctl = d.w.add_thread("ctl", None);
    d.create(ctl, SET, pipe(1));
    d.w.send_statement(statement(StatementKind::BackupDatabase, SET, 1, CHUNK));
    let r = d.get_configuration(ctl);
    assert_eq!(r.code, Hresult::NOERROR);
    assert_eq!(
        d.w.now(),
        700,
        "returned when the server configured the set"
    );
}

/// `get-configuration.timeout`: with no configuration within the timeout
/// GetConfiguration returns VD_E_TIMEOUT after exactly that long and the
/// set stays Configurable; a client whose statement failed gives up.
#[test]
fn get_configuration_timeout() {
    let mut d = Driver::new(WorldConfig::new(8), Trace::hashing());
    let ctl = d.w.add_thread("ctl", None);
    d.create(ctl, SET, pipe(1));
    let r = d.call(
        ctl,
        Call::GetConfiguration {
            timeout: Timeout::Ms(1500),
        },
    );
    assert_eq!(
        (r.code, r.clause),
        (Hresult::VD_E_TIMEOUT, Some(id::GET_CONFIGURATION_TIMEOUT))
    );
    assert_eq!(d.w.now(), 1500);
    // Still Configurable: a later statement configures it.
    d.w.send_statement(statement(StatementKind::BackupDatabase, SET, 1, CHUNK));
    assert_eq!(d.get_configuration(ctl).code, Hresult::NOERROR);

    // The reference client gives up when the statement never opens the set
    // (bad WITH options fail before Open).
    let mut s = spec(Operation::Backup, 1, 2);
    s.options.block_size = 1000;
    s.get_configuration_attempts = 3;
    let r = run(&s, WorldConfig::new(8));
    assert_clean(&r);
    assert_eq!(outcome(&r, 0).reason, Some(FailReason::BadOptions));
    assert_eq!(
        events(&r, "ctl", "GetConfiguration")
            .iter()
            .filter(|e| e.clause == Some(id::GET_CONFIGURATION_TIMEOUT))
            .count(),
        3
    );
    assert_eq!(r.client.believes_success, Some(false));
}

/// `get-configuration.abort`: in Abort GetConfiguration returns VD_E_ABORT,
/// and a waiting call is woken with VD_E_ABORT when the server aborts
/// before configuration (e.g. a deviceCount mismatch).
#[test]
fn get_configuration_abort() {
    let (mut c, _ns, _) = aborted(1);
    let r = ready(c.get_configuration());
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_ABORT, id::GET_CONFIGURATION_ABORT)
    );
    let (mut c, _ns) = created(1);
    assert_eq!(c.get_configuration(), Blocking::Pending);
    c.deliver(ToClient::Abort);
    assert_eq!(ready(c.get_configuration()).code(), Hresult::VD_E_ABORT);
    assert_eq!(c.state(), ClientState::Abort);

    let mut d = Driver::new(WorldConfig::new(9), Trace::hashing());
    let ctl = d.w.add_thread("ctl", None);
    d.create(ctl, SET, pipe(2));
    d.w.send_statement(statement(StatementKind::BackupDatabase, SET, 3, CHUNK));
    let r = d.call(
        ctl,
        Call::GetConfiguration {
            timeout: Timeout::Infinite,
        },
    );
    assert_eq!(
        (r.code, r.clause),
        (Hresult::VD_E_ABORT, Some(id::GET_CONFIGURATION_ABORT))
    );
}

/// `get-configuration.repeat`: in Initializing, Active and
/// NormallyTerminated GetConfiguration returns the configuration again
/// without a state change; in DNE VD_E_PROTOCOL.
#[test]
fn get_configuration_repeat() {
    let (mut c, _) = initializing(1);
    let mut sets = vec![c];
    sets.push(active(1).0);
    sets.push(normally_terminated(1).0);
    for mut s in sets {
        let before = s.state();
        let r = ready(s.get_configuration());
        assert_eq!(r.code(), Hresult::NOERROR, "{before:?}");
        assert_eq!(r.result.unwrap(), server_cfg(1));
        assert_eq!(s.state(), before);
    }
    c = fresh().0;
    assert_eq!(ready(c.get_configuration()).code(), Hresult::VD_E_PROTOCOL);
}

/// `get-configuration.server-outputs`: the configuration returned carries
/// blockSize = BLOCKSIZE, maxIODepth = 4, maxTransferSize =
/// MAXTRANSFERSIZE and bufferAreaSize.
#[test]
fn get_configuration_server_outputs() {
    let mut s = spec(Operation::Backup, 2, 8);
    s.options.block_size = 4096;
    s.options.max_transfer_size = 128 * 1024;
    s.options.buffer_count = Some(5);
    let r = run(&s, WorldConfig::new(10));
    assert!(all_succeeded(&r));
    let cfg = r.client.config.expect("GetConfiguration succeeded");
    assert_eq!(cfg.block_size, 4096);
    assert_eq!(cfg.max_io_depth, 4);
    assert_eq!(cfg.max_transfer_size, 128 * 1024);
    assert_eq!(cfg.buffer_area_size, 5 * 128 * 1024);
    assert_eq!(cfg.device_count, 2, "client inputs kept");
    assert!(cites(&r, id::GET_CONFIGURATION_SERVER_OUTPUTS));
}

/// `get-configuration.features-returned`: client bits | VDF_WriteMedia
/// (BACKUP) or VDF_ReadMedia (RESTORE) | VDF_CompleteEnabled when asked and
/// supported.
#[test]
fn get_configuration_features_returned() {
    let r = run(&spec(Operation::Backup, 1, 2), WorldConfig::new(11));
    assert_eq!(r.client.config.unwrap().features, Features::WriteMedia.0);
    let r = run(&spec(Operation::Restore, 1, 2), WorldConfig::new(11));
    assert_eq!(r.client.config.unwrap().features, Features::ReadMedia.0);
    let mut s = spec(Operation::Backup, 1, 2);
    s.request_complete = true;
    let r = run(&s, WorldConfig::new(11));
    let f = Features(r.client.config.unwrap().features);
    assert_eq!(
        f,
        Features::RequestComplete
            .union(Features::WriteMedia)
            .union(Features::CompleteEnabled)
    );
}

// ======================================================================
// OpenDevice
// ======================================================================

/// `open-device.ok`: in Initializing OpenDevice of an unopened device
/// returns a handle (→ Active); the device is usable at once while
/// OpenDevice stays legal until every device is open.
#[test]
fn open_device_ok() {
    let (mut c, _ns) = initializing(3);
    let h0 = c.open_device(SET).result.unwrap();
    assert_eq!(c.state(), ClientState::Active);
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    assert_eq!(
        ready(c.get_command(h0)).code(),
        Hresult::NOERROR,
        "usable at once"
    );
    let r = c.open_device("set-dev2");
    assert_eq!((r.code(), r.clause), (Hresult::NOERROR, id::OPEN_DEVICE_OK));
    assert_eq!(
        r.cell,
        Some((TableMethod::OpenDevice, ClientState::Initializing))
    );
    assert_eq!(r.result.unwrap().index, 2);
    assert_eq!(c.open_device("set-dev1").code(), Hresult::NOERROR);
}

/// `open-device.invalid-name`: a name that is not a device of the set gets
/// VD_E_INVALID and changes nothing.
#[test]
fn open_device_invalid_name() {
    let (mut c, _ns) = initializing(2);
    let r = c.open_device("nope");
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_INVALID, id::OPEN_DEVICE_INVALID_NAME)
    );
    assert_eq!(c.state(), ClientState::Initializing);
    assert_eq!(
        c.open_device("SET").code(),
        Hresult::VD_E_INVALID,
        "case-sensitive"
    );
}

/// `open-device.already-open`: reopening an open device is VD_E_PROTOCOL;
/// once every device is open the profile's precedence decides.
#[test]
fn open_device_already_open() {
    let (mut c, _ns) = initializing(2);
    c.open_device(SET).result.unwrap();
    let r = c.open_device(SET);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_PROTOCOL, id::OPEN_DEVICE_ALREADY_OPEN)
    );
    c.open_device("set-dev1").result.unwrap();
    assert_eq!(
        c.open_device(SET).code(),
        Hresult::VD_E_OPEN,
        "all-open-first"
    );
    let p = Profile {
        open_device_precedence: vdi_spec::profile::OpenDevicePrecedence::ThisDeviceFirst,
        ..Profile::default()
    };
    let (mut c, _ns, _) = active_with(p, 2);
    assert_eq!(
        c.open_device(SET).code(),
        Hresult::VD_E_PROTOCOL,
        "this-device-first"
    );
    assert_eq!(c.open_device("nope").code(), Hresult::VD_E_INVALID);
}

/// `open-device.all-open`: once every device is open OpenDevice returns
/// VD_E_OPEN, harmlessly: a client may loop until it sees it.
#[test]
fn open_device_all_open() {
    let (mut c, _ns) = initializing(3);
    let mut opened = 0;
    for name in device_names(SET, 3).iter().cycle() {
        let r = c.open_device(name);
        if r.code() == Hresult::VD_E_OPEN {
            assert_eq!(r.clause, id::OPEN_DEVICE_ALL_OPEN);
            break;
        }
        opened += 1;
    }
    assert_eq!(opened, 3);
    assert_eq!(c.state(), ClientState::Active);
    assert_eq!(c.open_device("nope").code(), Hresult::VD_E_OPEN);
}

/// `open-device.abort`: after an abort OpenDevice returns VD_E_ABORT, e.g.
/// when the server aborted between configuration and device open; the
/// reference client then closes instead of hanging.
#[test]
fn open_device_abort() {
    let (mut c, _ns) = initializing(2);
    c.deliver(ToClient::Abort);
    let r = c.open_device(SET);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_ABORT, id::OPEN_DEVICE_ABORT)
    );
    // The world: the server aborts right after configuration, before the
    // client opens its devices; the client closes instead of hanging.
    let mut d = Driver::new(WorldConfig::new(12), Trace::hashing());
    let ctl = d.w.add_thread("ctl", None);
    d.create(ctl, SET, pipe(2));
    d.w.send_statement(statement(StatementKind::BackupDatabase, SET, 2, 4 * CHUNK));
    assert_eq!(d.get_configuration(ctl).code, Hresult::NOERROR);
    d.w.inject(Fault::ServerSignalAbort);
    d.w.sleep(1).unwrap();
    let r = d.open(ctl, SET);
    assert_eq!(
        (r.code, r.clause),
        (Hresult::VD_E_ABORT, Some(id::OPEN_DEVICE_ABORT))
    );
    assert_eq!(d.call(ctl, Call::Close).code, Hresult::NOERROR);
    let o = d.w.wait_statement(Timeout::Infinite).unwrap().unwrap();
    assert_eq!(o.reason, Some(FailReason::ServerAbort));
}

/// `open-device.wrong-state`: OpenDevice in DNE, Configurable or
/// NormallyTerminated returns VD_E_PROTOCOL; in Abort VD_E_ABORT.
#[test]
fn open_device_wrong_state() {
    let mut sets = vec![fresh().0, created(1).0];
    sets.push(normally_terminated(1).0);
    for mut c in sets {
        let r = c.open_device(SET);
        assert_eq!(
            (r.code(), r.clause),
            (Hresult::VD_E_PROTOCOL, id::OPEN_DEVICE_WRONG_STATE)
        );
    }
    assert_eq!(aborted(1).0.open_device(SET).code(), Hresult::VD_E_ABORT);
}

/// `open-device.null-on-failure`: a failed OpenDevice hands out no device
/// interface (the reply carries no handle; the process records none).
#[test]
fn open_device_null_on_failure() {
    let mut d = Driver::new(WorldConfig::new(13), Trace::hashing());
    let ctl = d.w.add_thread("ctl", None);
    d.create(ctl, SET, pipe(1));
    let r = d.open(ctl, SET);
    assert_eq!(r.code, Hresult::VD_E_PROTOCOL);
    assert_eq!(r.value, Value::None);
    d.w.send_statement(statement(StatementKind::BackupDatabase, SET, 1, CHUNK));
    d.get_configuration(ctl);
    let r = d.open(ctl, "nope");
    assert_eq!((r.code, r.value), (Hresult::VD_E_INVALID, Value::None));
    assert!(d.w.process().handles.iter().all(Option::is_none));
    assert!(matches!(d.open(ctl, SET).value, Value::Device(_)));
}

/// `open-device.first-is-set-name`: the first device has the set's name;
/// the others are the statement's further VIRTUAL_DEVICE names, in order.
#[test]
fn open_device_first_is_set_name() {
    let (mut c, _ns) = initializing(3);
    assert_eq!(c.device_names(), vec!["set", "set-dev1", "set-dev2"]);
    let r = c.open_device(SET);
    assert_eq!(r.clause, id::OPEN_DEVICE_FIRST_IS_SET_NAME);
    assert_eq!(r.result.unwrap().index, 0);
    let r = run(&spec(Operation::Backup, 3, 3), WorldConfig::new(14));
    let configured = events(&r, "link", "ToClient")[0];
    assert!(
        configured.detail.contains(
            "devices=[\"vdisim-set-backup\", \"vdisim-set-backup-dev1\", \"vdisim-set-backup-dev2\"]"
        ),
        "{}",
        configured.detail
    );
}

// ======================================================================
// GetCommand
// ======================================================================

/// `get-command.ok`: in Active GetCommand returns the next queued command,
/// in order, which is then outstanding until completed.
#[test]
fn get_command_ok() {
    let (mut c, _ns, hs) = active(1);
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    c.deliver(ToClient::Command(cmd(2, 0, CommandCode::Flush)));
    let r = ready(c.get_command(hs[0]));
    assert_eq!((r.code(), r.clause), (Hresult::NOERROR, id::GET_COMMAND_OK));
    assert_eq!(r.result.unwrap(), cmd(1, 0, CommandCode::Write));
    assert_eq!(c.outstanding(0), 1);
    assert_eq!(c.get_command(hs[0]).map_ready_id(), Some(2));
}

trait ReadyId {
    fn map_ready_id(self) -> Option<u64>;
}
impl ReadyId for Blocking<Ret<Cmd>> {
    fn map_ready_id(self) -> Option<u64> {
        match self {
            Blocking::Ready(Ret { result: Ok(c), .. }) => Some(c.id.0),
            _ => None,
        }
    }
}

/// `get-command.timeout`: with nothing queued GetCommand returns
/// VD_E_TIMEOUT after its timeout and the device stays usable; the
/// reference client keeps polling through a long server stall and succeeds,
/// a client that treats the timeout as fatal aborts.
#[test]
fn get_command_timeout() {
    let (c, _ns, _) = active(1);
    let r = c.get_command_timeout(false);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_TIMEOUT, id::GET_COMMAND_TIMEOUT)
    );
    assert_eq!(c.state(), ClientState::Active);
    let s = ClientSpec {
        get_command_timeout_ms: 1_000,
        get_configuration_timeout_ms: 1_000,
        ..spec(Operation::Backup, 2, 4)
    };
    let r = run_plan(&s, "server-stall", 15);
    assert_clean(&r);
    assert!(all_succeeded(&r), "{}", msgs(outcome(&r, 0)));
    assert!(r.client.devices.iter().any(|d| d.timeouts > 0));
    let mut s2 = s.clone();
    s2.flaws.insert(Flaw::TimeoutIsFatal);
    let r = run_plan(&s2, "server-stall", 15);
    assert_eq!(outcome(&r, 0).reason, Some(FailReason::ClientAbort));
}

/// `abort.during-server-stall`: a client's SignalAbort (a client that
/// takes a GetCommand timeout as fatal) or its death during a long server
/// stall ends the statement at once, not when the stall ends: the abort is
/// taken ahead of the held completions and nothing is sent after it.
#[test]
fn abort_during_server_stall() {
    const STALL: u64 = 1_000_000;
    let stall = on(0, 2, None, Phase::Any, Fault::ServerStall { ms: STALL });
    let mut s = ClientSpec {
        get_command_timeout_ms: 1_000,
        get_configuration_timeout_ms: 1_000,
        ..spec(Operation::Backup, 2, 16)
    };
    s.flaws.insert(Flaw::TimeoutIsFatal);
    let death = on(0, 3, None, Phase::Any, Fault::ClientDeath);
    for (flawed, faults) in [(true, vec![stall.clone()]), (false, vec![stall, death])] {
        let mut s = s.clone();
        if !flawed {
            s.flaws.clear();
        }
        let r = run_faults(&s, faults, 61);
        assert_clean(&r);
        let o = outcome(&r, 0);
        assert_eq!(o.reason, Some(FailReason::ClientAbort), "{}", msgs(o));
        assert!(has_msg(o, 3013, ""), "{}", msgs(o));
        let began = events(&r, "world", "Fault")
            .into_iter()
            .find(|e| e.detail.contains("ServerStall"))
            .expect("the stall fired")
            .t;
        let ended = o.ended_ms.expect("ended");
        assert!(
            ended < began + STALL / 100,
            "the statement ended at {ended} ms, the stall began at {began} ms"
        );
        assert!(cites(&r, id::ABORT_DURING_SERVER_STALL), "flawed {flawed}");
        let interrupted = events(&r, "server", "StallInterrupted");
        assert_eq!(interrupted.len(), 1);
        // Nothing is sent to the client after the interruption.
        assert!(
            events(&r, "server", "SendCommand")
                .iter()
                .all(|e| e.seq < interrupted[0].seq),
            "a command after the abort"
        );
    }
}

/// `get-command.poll`: timeout 0 returns a queued command, or VD_E_TIMEOUT
/// at once without virtual time passing.
#[test]
fn get_command_poll() {
    let (mut d, _ctl, ts, hs) = driven_backup(WorldConfig::new(16), 1, 2, pipe(1));
    d.w.sleep(10).unwrap();
    let got = drain(&mut d, ts[0], hs[0]);
    assert_eq!(got.len(), 3, "the header and both data Writes were queued");
    let t = d.w.now();
    let r = d.call(
        ts[0],
        Call::GetCommand {
            dev: hs[0],
            timeout: Timeout::Ms(0),
        },
    );
    assert_eq!(
        (r.code, r.clause),
        (Hresult::VD_E_TIMEOUT, Some(id::GET_COMMAND_POLL))
    );
    assert_eq!(d.w.now(), t, "no waiting");
}

/// `get-command.infinite`: 0xFFFFFFFF is INFINITE on Windows: GetCommand
/// waits until a command, VD_E_CLOSE or VD_E_ABORT arrives (here the
/// watchdog's abort, long after any finite default).
#[test]
fn get_command_infinite() {
    assert_eq!(Timeout::from_dword(0xFFFF_FFFF), Timeout::Infinite);
    assert_eq!(Timeout::from_dword(0xFFFF_FFFE), Timeout::Ms(0xFFFF_FFFE));
    let mut set_cfg = pipe(1);
    set_cfg.server_time_out = 3_600_000;
    let (mut d, _ctl, ts, hs) = driven_backup(WorldConfig::new(17), 1, 2, set_cfg);
    d.w.sleep(10).unwrap();
    drain(&mut d, ts[0], hs[0]);
    let r = d.call(
        ts[0],
        Call::GetCommand {
            dev: hs[0],
            timeout: Timeout::from_dword(0xFFFF_FFFF),
        },
    );
    assert_eq!(
        (r.code, r.clause),
        (Hresult::VD_E_ABORT, Some(id::GET_COMMAND_ABORT))
    );
    assert!(d.w.now() >= 2 * 3_600_000, "waited for the watchdog");
}

/// `get-command.linux-negative`: on Linux any negative timeout waits
/// forever, and 0xFFFFFFFF is a finite wait (about 49.7 days).
#[test]
fn get_command_linux_negative() {
    assert_eq!(Timeout::from_linux(-1), Timeout::Infinite);
    assert_eq!(Timeout::from_linux(i64::MIN), Timeout::Infinite);
    assert_eq!(Timeout::from_linux(0xFFFF_FFFF), Timeout::Ms(0xFFFF_FFFF));
    assert_eq!(Timeout::from_linux(0), Timeout::Ms(0));
}

/// `get-command.close`: after CloseDevice the device's next GetCommand (its
/// queue drained first) returns VD_E_CLOSE; the set stays Active while
/// other devices are open.
#[test]
fn get_command_close() {
    let (mut c, _ns, hs) = active(2);
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Flush)));
    c.deliver(ToClient::CloseDevice { dev: 0 });
    assert_eq!(
        ready(c.get_command(hs[0])).code(),
        Hresult::NOERROR,
        "queue first"
    );
    let r = ready(c.get_command(hs[0]));
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_CLOSE, id::GET_COMMAND_CLOSE)
    );
    assert_eq!(c.state(), ClientState::Active);
    assert_eq!(c.get_command(hs[1]), Blocking::Pending, "dev1 still open");
}

/// `get-command.abort`: after either side aborts GetCommand returns
/// VD_E_ABORT, a blocked call included (→ Abort).
#[test]
fn get_command_abort() {
    let (mut c, _ns, hs) = active(1);
    assert_eq!(c.get_command(hs[0]), Blocking::Pending);
    c.deliver(ToClient::Abort);
    let r = ready(c.get_command(hs[0]));
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_ABORT, id::GET_COMMAND_ABORT)
    );
    assert_eq!(c.state(), ClientState::Abort);
    // A blocked call in the world, woken by a client-side SignalAbort.
    let (mut d, ctl, ts, hs) = driven_backup(WorldConfig::new(18), 1, 1, pipe(1));
    d.w.sleep(10).unwrap();
    drain(&mut d, ts[0], hs[0]);
    d.w.start_call(
        ts[0],
        Call::GetCommand {
            dev: hs[0],
            timeout: Timeout::Infinite,
        },
    );
    assert_eq!(d.call(ctl, Call::SignalAbort).code, Hresult::NOERROR);
    let r = d.w.wait_call(ts[0]).unwrap();
    assert_eq!(
        (r.code, r.clause),
        (Hresult::VD_E_ABORT, Some(id::GET_COMMAND_ABORT))
    );
}

/// `get-command.wrong-state`: GetCommand outside Active returns
/// VD_E_PROTOCOL (NormallyTerminated; before Open no handle exists) and in
/// Abort VD_E_ABORT.
#[test]
fn get_command_wrong_state() {
    let (mut c, _ns, hs) = normally_terminated(2);
    let r = ready(c.get_command(hs[0]));
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_PROTOCOL, id::GET_COMMAND_WRONG_STATE)
    );
    let fake = DeviceHandle {
        incarnation: 1,
        index: 0,
    };
    let (mut c, _) = initializing(1);
    assert_eq!(ready(c.get_command(fake)).code(), Hresult::VD_E_PROTOCOL);
    let (mut c, _) = created(1);
    assert_eq!(ready(c.get_command(fake)).code(), Hresult::VD_E_PROTOCOL);
    let (mut c, _, hs) = aborted(1);
    assert_eq!(ready(c.get_command(hs[0])).code(), Hresult::VD_E_ABORT);
}

/// `get-command.after-device-closed`: GetCommand again on a device already
/// closed while others are open returns VD_E_CLOSE or VD_E_PROTOCOL, as the
/// profile says.
#[test]
fn get_command_after_device_closed() {
    for (p, want) in [
        (AfterDeviceClosed::Close, Hresult::VD_E_CLOSE),
        (AfterDeviceClosed::Protocol, Hresult::VD_E_PROTOCOL),
    ] {
        let profile = Profile {
            get_command_after_device_closed: p,
            ..Profile::default()
        };
        let (mut c, _ns, hs) = active_with(profile, 2);
        c.deliver(ToClient::CloseDevice { dev: 0 });
        assert_eq!(ready(c.get_command(hs[0])).code(), Hresult::VD_E_CLOSE);
        let r = ready(c.get_command(hs[0]));
        assert_eq!(
            (r.code(), r.clause),
            (want, id::GET_COMMAND_AFTER_DEVICE_CLOSED)
        );
        assert_eq!(c.state(), ClientState::Active);
    }
}

/// `get-command.several-outstanding`: GetCommand may be called again before
/// earlier commands are completed; the server keeps several in flight.
#[test]
fn get_command_several_outstanding() {
    let (mut c, _ns, hs) = active(1);
    for id in 1..=3 {
        c.deliver(ToClient::Command(cmd(id, 0, CommandCode::Write)));
    }
    ready(c.get_command(hs[0]));
    let r = ready(c.get_command(hs[0]));
    assert_eq!(r.clause, id::GET_COMMAND_SEVERAL_OUTSTANDING);
    ready(c.get_command(hs[0]));
    assert_eq!(c.outstanding(0), 3);
    let (mut d, _ctl, ts, hs) = driven_backup(WorldConfig::new(19), 1, 8, pipe(1));
    d.w.sleep(10).unwrap();
    assert_eq!(drain(&mut d, ts[0], hs[0]).len(), 4, "queue depth 4");
}

// ======================================================================
// CompleteCommand
// ======================================================================

/// `complete-command.ok`: completing an outstanding command returns
/// NOERROR and reports code, bytes and (for a Read) the data to the server.
#[test]
fn complete_command_ok() {
    let (mut c, _ns, hs) = active(1);
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Read)));
    let k = ready(c.get_command(hs[0])).result.unwrap();
    c.out.clear();
    let data = Content::stream(7, 0, 512);
    let r = c.complete_command(hs[0], &k, Win32::ERROR_SUCCESS, 512, 0, data.clone());
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::NOERROR, id::COMPLETE_COMMAND_OK)
    );
    let done = completions(&c);
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].id, done[0].code, done[0].bytes),
        (CmdId(1), Win32::ERROR_SUCCESS, 512)
    );
    assert_eq!(done[0].data, data);
    assert_eq!(c.outstanding(0), 0);
}

/// `complete-command.invalid`: completing a command that is not active on
/// the device (never fetched, already completed, another device's) returns
/// VD_E_INVALID and changes nothing.
#[test]
fn complete_command_invalid() {
    let (mut c, _ns, hs) = active(2);
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    c.deliver(ToClient::Command(cmd(2, 1, CommandCode::Write)));
    let never = cmd(9, 0, CommandCode::Write);
    let r = complete(&mut c, hs[0], &never, Win32::ERROR_SUCCESS);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_INVALID, id::COMPLETE_COMMAND_INVALID)
    );
    let k1 = ready(c.get_command(hs[1])).result.unwrap();
    assert_eq!(
        complete(&mut c, hs[0], &k1, Win32::ERROR_SUCCESS).code(),
        Hresult::VD_E_INVALID,
        "another device's command"
    );
    let k0 = ready(c.get_command(hs[0])).result.unwrap();
    assert_eq!(
        complete(&mut c, hs[0], &k0, Win32::ERROR_SUCCESS).code(),
        Hresult::NOERROR
    );
    c.out.clear();
    assert_eq!(
        complete(&mut c, hs[0], &k0, Win32::ERROR_SUCCESS).code(),
        Hresult::VD_E_INVALID,
        "already completed"
    );
    assert!(c.out.is_empty());
}

/// `complete-command.abort`: after an abort CompleteCommand returns
/// VD_E_ABORT; the server ignores later completions.
#[test]
fn complete_command_abort() {
    let (mut c, _ns, hs) = active(1);
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    let k = ready(c.get_command(hs[0])).result.unwrap();
    c.deliver(ToClient::Abort);
    c.out.clear();
    let r = complete(&mut c, hs[0], &k, Win32::ERROR_SUCCESS);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_ABORT, id::COMPLETE_COMMAND_ABORT)
    );
    assert!(c.out.is_empty(), "nothing reaches the server");
}

/// `complete-command.wrong-state`: CompleteCommand in NormallyTerminated
/// (and before a device is open) returns VD_E_PROTOCOL.
#[test]
fn complete_command_wrong_state() {
    let (mut c, _ns, hs) = normally_terminated(1);
    let k = cmd(1, 0, CommandCode::Write);
    let r = complete(&mut c, hs[0], &k, Win32::ERROR_SUCCESS);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_PROTOCOL, id::COMPLETE_COMMAND_WRONG_STATE)
    );
    let (mut c, _) = initializing(1);
    let fake = DeviceHandle {
        incarnation: 1,
        index: 0,
    };
    assert_eq!(
        complete(&mut c, fake, &k, Win32::ERROR_SUCCESS).code(),
        Hresult::VD_E_PROTOCOL
    );
}

/// `complete-command.read-only-block`: a command block changed between
/// GetCommand and CompleteCommand is detected and traced; the flaw
/// tampers-command-block shows up in the world's trace.
#[test]
fn complete_command_read_only_block() {
    let (mut c, _ns, hs) = active(1);
    c.tracing = true;
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    let k = ready(c.get_command(hs[0])).result.unwrap();
    let mut seen = k.clone();
    seen.size = 100;
    let r = c.complete_command(hs[0], &seen, Win32::ERROR_SUCCESS, 100, 0, Content::Empty);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::NOERROR, id::COMPLETE_COMMAND_READ_ONLY_BLOCK)
    );
    assert!(c.notes.iter().any(|n| n.what == "CommandBlockModified"));
    // The flaw writes the byte count into the block: visible on the short
    // last read of a restore that over-reads.
    let mut s = spec(Operation::Roundtrip, 1, 2);
    s.plan.data_bytes = 2 * CHUNK - 4096;
    s.flaws.insert(Flaw::TampersCommandBlock);
    let mut cfg = WorldConfig::new(20);
    cfg.profile.restore_overread = true;
    let r = run(&s, cfg);
    assert!(!events(&r, "client", "CommandBlockModified").is_empty());
}

/// `complete-command.order`: with several commands outstanding, completion
/// in any order is accepted (profile `any`), or only the oldest
/// (`in-order`, others VD_E_INVALID).
#[test]
fn complete_command_order() {
    for (order, want) in [
        (CompletionOrder::Any, Hresult::NOERROR),
        (CompletionOrder::InOrder, Hresult::VD_E_INVALID),
    ] {
        let p = Profile {
            completion_order: order,
            ..Profile::default()
        };
        let (mut c, _ns, hs) = active_with(p, 1);
        c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
        c.deliver(ToClient::Command(cmd(2, 0, CommandCode::Write)));
        let _a = ready(c.get_command(hs[0])).result.unwrap();
        let b = ready(c.get_command(hs[0])).result.unwrap();
        let r = complete(&mut c, hs[0], &b, Win32::ERROR_SUCCESS);
        assert_eq!(r.code(), want, "{order:?}");
        if want != Hresult::NOERROR {
            assert_eq!(r.clause, id::COMPLETE_COMMAND_ORDER);
        }
    }
}

/// `complete-command.returns-buffer`: completing a Write returns its buffer
/// to the server: with BUFFERCOUNT = 1 every Write reuses buffer 0.
#[test]
fn complete_command_returns_buffer() {
    let mut s = spec(Operation::Backup, 2, 6);
    s.options.buffer_count = Some(1);
    let r = run(&s, WorldConfig::new(21));
    assert_clean(&r);
    assert!(all_succeeded(&r));
    let sends = events(&r, "server", "SendCommand");
    let writes: Vec<_> = sends
        .iter()
        .filter(|e| e.detail.contains("VDC_Write"))
        .collect();
    assert_eq!(
        writes.len(),
        8,
        "a media header and 3 data Writes per device"
    );
    assert!(
        writes.iter().all(|e| e.detail.contains(" buf=0 ")),
        "one buffer, reused"
    );
    assert!(cites(&r, id::COMPLETE_COMMAND_RETURNS_BUFFER));
}

// ======================================================================
// SignalAbort
// ======================================================================

/// `signal-abort.ok`: SignalAbort in Configurable, Initializing, Active or
/// NormallyTerminated returns NOERROR (→ Abort) and tells the server once;
/// again in Abort it is NOERROR (idempotent).
#[test]
fn signal_abort_ok() {
    let mut sets = vec![created(1).0, initializing(1).0, active(1).0];
    sets.push(normally_terminated(1).0);
    for mut c in sets {
        c.out.clear();
        let r = c.signal_abort();
        assert_eq!(
            (r.code(), r.clause),
            (Hresult::NOERROR, id::SIGNAL_ABORT_OK)
        );
        assert_eq!(c.state(), ClientState::Abort);
        assert_eq!(c.signal_abort().code(), Hresult::NOERROR, "idempotent");
        assert_eq!(c.out, vec![ToServer::Abort], "the server is told once");
    }
}

/// `signal-abort.dne`: SignalAbort with no set returns VD_E_PROTOCOL.
#[test]
fn signal_abort_dne() {
    let (mut c, _) = fresh();
    let r = c.signal_abort();
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_PROTOCOL, id::SIGNAL_ABORT_DNE)
    );
    assert!(c.out.is_empty());
    assert_eq!(c.state(), ClientState::Dne);
}

/// `signal-abort.effects`: after SignalAbort no command is delivered on any
/// device and every uncompleted command is completed to the server with
/// ERROR_OPERATION_ABORTED; later completions are ignored.
#[test]
fn signal_abort_effects() {
    let (mut c, _ns, hs) = active(2);
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    c.deliver(ToClient::Command(cmd(2, 1, CommandCode::Write)));
    c.signal_abort();
    c.deliver(ToClient::Command(cmd(3, 0, CommandCode::Write)));
    for h in &hs {
        assert_eq!(ready(c.get_command(*h)).code(), Hresult::VD_E_ABORT);
    }
    let (mut d, ctl, ts, hs) = driven_backup(WorldConfig::new(22), 2, 8, pipe(2));
    d.w.sleep(10).unwrap();
    let held: usize = (0..2).map(|i| drain(&mut d, ts[i], hs[i]).len()).sum();
    assert_eq!(held, 8);
    d.call(ctl, Call::SignalAbort);
    let o = d.w.wait_statement(Timeout::Infinite).unwrap().unwrap();
    assert_eq!(o.reason, Some(FailReason::ClientAbort));
    let r = d.w.finish_driven();
    let aborted: Vec<_> = events(&r, "server", "Completion")
        .into_iter()
        .filter(|e| e.clause == Some(id::SIGNAL_ABORT_EFFECTS))
        .collect();
    assert_eq!(aborted.len(), 8, "every outstanding command");
    assert!(
        aborted
            .iter()
            .all(|e| e.detail.contains("ERROR_OPERATION_ABORTED (995)"))
    );
    assert!(
        r.server_devices
            .iter()
            .all(|s| s.state == DevState::Aborted)
    );
}

// ======================================================================
// OpenInSecondary, buffer handles
// ======================================================================

/// `open-in-secondary.ok`: a secondary opens a created and configured set
/// by its exact name and returns NOERROR.
#[test]
fn open_in_secondary_ok() {
    let (mut c, _ns) = initializing(1);
    let r = c.open_in_secondary(1, SET);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::NOERROR, id::OPEN_IN_SECONDARY_OK)
    );
    assert_eq!(
        c.open_in_secondary(2, SET).code(),
        Hresult::NOERROR,
        "another secondary"
    );
    let (mut c, _ns, _) = active(1);
    assert_eq!(c.open_in_secondary(1, SET).code(), Hresult::NOERROR);
}

/// `open-in-secondary.protocol`: VD_E_PROTOCOL when already opened by this
/// secondary, when the set does not exist, is not configured yet, or the
/// name differs (case-sensitive).
#[test]
fn open_in_secondary_protocol() {
    let (mut c, _ns) = initializing(1);
    c.open_in_secondary(1, SET);
    let r = c.open_in_secondary(1, SET);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_PROTOCOL, id::OPEN_IN_SECONDARY_PROTOCOL)
    );
    assert_eq!(c.open_in_secondary(2, "SET").code(), Hresult::VD_E_PROTOCOL);
    assert_eq!(
        fresh().0.open_in_secondary(1, SET).code(),
        Hresult::VD_E_PROTOCOL
    );
    assert_eq!(
        created(1).0.open_in_secondary(1, SET).code(),
        Hresult::VD_E_PROTOCOL
    );
}

/// `open-in-secondary.abort`: VD_E_ABORT while the operation is aborted.
#[test]
fn open_in_secondary_abort() {
    let (mut c, _, _) = aborted(1);
    let r = c.open_in_secondary(1, SET);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_ABORT, id::OPEN_IN_SECONDARY_ABORT)
    );
}

/// `buffer-handle.roundtrip`: GetBufferHandle of a command's buffer gives a
/// 32-bit handle MapBufferHandle turns back into the same buffer.
#[test]
fn buffer_handle_roundtrip() {
    let (mut c, _ns, hs) = active(1);
    c.deliver(ToClient::Command(cmd(7, 0, CommandCode::Write)));
    let k = ready(c.get_command(hs[0])).result.unwrap();
    let r = c.get_buffer_handle(k.buffer);
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::NOERROR, id::BUFFER_HANDLE_ROUNDTRIP)
    );
    let handle = r.result.unwrap();
    let back = c.map_buffer_handle(handle);
    assert_eq!(back.result, Ok(BufId(7)));
    assert_eq!(back.clause, id::BUFFER_HANDLE_ROUNDTRIP);
}

/// `buffer-handle.protocol`: with no set open both calls return
/// VD_E_PROTOCOL.
#[test]
fn buffer_handle_protocol() {
    let (c, _) = fresh();
    let r = c.get_buffer_handle(Some(BufId(0)));
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_PROTOCOL, id::BUFFER_HANDLE_PROTOCOL)
    );
    assert_eq!(c.map_buffer_handle(1).code(), Hresult::VD_E_PROTOCOL);
}

/// `buffer-handle.invalid`: an address that is no buffer of the set, or a
/// value that is no handle, gets VD_E_INVALID.
#[test]
fn buffer_handle_invalid() {
    let (mut c, _ns, hs) = active(1);
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    ready(c.get_command(hs[0]));
    let r = c.get_buffer_handle(Some(BufId(99)));
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_INVALID, id::BUFFER_HANDLE_INVALID)
    );
    assert_eq!(c.get_buffer_handle(None).code(), Hresult::VD_E_INVALID);
    assert_eq!(c.map_buffer_handle(0).code(), Hresult::VD_E_INVALID);
    assert_eq!(c.map_buffer_handle(12345).code(), Hresult::VD_E_INVALID);
}

// ======================================================================
// Abort
// ======================================================================

/// `abort.client-signal`: a client SignalAbort mid-backup: the server sees
/// its outstanding commands complete with ERROR_OPERATION_ABORTED (995),
/// sends nothing more, and the statement fails.
#[test]
fn abort_client_signal() {
    let r = run_plan(&spec(Operation::Backup, 2, 8), "client-abort", 23);
    assert_clean(&r);
    let o = outcome(&r, 0);
    assert_eq!(
        (o.status, o.reason),
        (Status::Failed, Some(FailReason::ClientAbort))
    );
    assert!(
        has_msg(o, 18210, "Operating system error 995"),
        "{}",
        msgs(o)
    );
    assert!(cites(&r, id::ABORT_CLIENT_SIGNAL));
    assert_eq!(device_ends(&r), vec![Some(Hresult::VD_E_ABORT); 2]);
}

/// `abort.server-signal`: a server abort (KILL) mid-stream: the client's
/// calls return VD_E_ABORT, its later completions are ignored, and the
/// server completes its outstanding commands with ERROR_OPERATION_ABORTED.
#[test]
fn abort_server_signal() {
    let r = run_plan(&spec(Operation::Backup, 2, 8), "server-abort", 24);
    assert_clean(&r);
    let o = outcome(&r, 0);
    assert_eq!(o.reason, Some(FailReason::ServerAbort));
    assert!(has_msg(o, 3204, "aborted"), "{}", msgs(o));
    assert_eq!(device_ends(&r), vec![Some(Hresult::VD_E_ABORT); 2]);
    assert!(events(&r, "client", "ServerAbort").len() == 1);
    // Nothing the client reported afterwards was counted.
    let abort_seq = events(&r, "server", "Abort")[0].seq;
    assert!(
        events(&r, "server", "Completion")
            .iter()
            .filter(|e| e.seq > abort_seq)
            .all(|e| e.detail.contains("995"))
    );
}

/// `abort.no-commands-after`: once the set is aborted the server sends no
/// command and the client's GetCommand delivers nothing new.
#[test]
fn abort_no_commands_after() {
    let (mut c, _ns, hs) = aborted(1);
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    assert_eq!(ready(c.get_command(hs[0])).code(), Hresult::VD_E_ABORT);
    for plan in ["server-abort", "client-abort", "slow-client"] {
        let r = run_plan(&spec(Operation::Backup, 2, 8), plan, 25);
        assert!(r.violations.is_empty(), "{plan}: {:?}", r.violations);
        let ev = r.trace.events();
        let first_abort = ev
            .iter()
            .position(|e| {
                e.who == "server" && (e.what == "SignalAbort" || e.what.starts_with("Client"))
            })
            .expect("an abort");
        assert!(
            !ev[first_abort..]
                .iter()
                .any(|e| e.who == "server" && e.what == "SendCommand"),
            "{plan}: a command after the abort"
        );
    }
}

/// `abort.secondary-death-undetected`: a primary that serves device 0 and
/// starts a secondary process for device 1 backs up and restores; when
/// the secondary dies holding its 2nd command, VDI is not told (no message
/// reaches the server, no abort): with the watchdog off the primary waits
/// until the run's budget ends, the statement still running; with
/// serverTimeOut 1000 ms only the server's watchdog ends it (failed, the
/// primary's device sees VD_E_ABORT).
#[test]
fn abort_secondary_death_undetected() {
    let mut s = spec(Operation::Roundtrip, 2, 6);
    s.secondary_devices = 1;
    let r = run(&s, WorldConfig::new(95));
    assert_clean(&r);
    assert!(all_succeeded(&r));
    let opened = events(&r, "secondary", "OpenInSecondary");
    assert_eq!(opened.len(), 2, "one secondary per phase");

    s.operation = Operation::Backup;
    s.secondary_dies_after = 2;
    s.server_timeout_ms = 0;
    let mut cfg = WorldConfig::new(95);
    cfg.budget_ms = 120_000;
    let r = run(&s, cfg);
    assert_ne!(r.end, End::Finished);
    assert_eq!(events(&r, "world", "SecondaryDied").len(), 1);
    assert!(cites(&r, id::ABORT_SECONDARY_DEATH_UNDETECTED));
    assert!(!cites(&r, id::ABORT_CLIENT_DEATH));
    let fired = |r: &RunResult| {
        events(r, "server", "Watchdog")
            .iter()
            .any(|e| e.detail.contains("SignalAbort"))
    };
    assert!(!fired(&r), "the watchdog is off");
    assert_eq!(outcome(&r, 0).status, Status::Running);

    s.server_timeout_ms = 1000;
    let r = run(&s, WorldConfig::new(95));
    assert_eq!(r.end, End::Finished);
    let o = outcome(&r, 0);
    assert_eq!(o.reason, Some(FailReason::Watchdog), "{}", msgs(o));
    assert!(fired(&r));
    assert_eq!(r.client.devices[0].end, Some(Hresult::VD_E_ABORT));
    assert!(!cites(&r, id::ABORT_CLIENT_DEATH));
}

/// `abort.client-death`: the death of the client process aborts the set:
/// the server's outstanding I/O completes with ERROR_OPERATION_ABORTED and
/// the statement fails.
#[test]
fn abort_client_death() {
    let r = run_plan(&spec(Operation::Backup, 2, 8), "client-death", 26);
    assert_clean(&r);
    let o = outcome(&r, 0);
    assert_eq!(o.reason, Some(FailReason::ClientAbort));
    assert!(has_msg(o, 18210, "995"), "{}", msgs(o));
    assert!(
        r.server_devices
            .iter()
            .all(|d| d.state == DevState::Aborted)
    );
    assert!(cites(&r, id::ABORT_CLIENT_DEATH));
}

/// `abort.server-death`: the death of SQL Server aborts the set: the client
/// sees VD_E_ABORT, the statement fails (the connection is gone).
#[test]
fn abort_server_death() {
    let r = run_plan(&spec(Operation::Backup, 2, 8), "server-death", 27);
    assert_clean(&r);
    assert_eq!(outcome(&r, 0).reason, Some(FailReason::ServerDied));
    assert_eq!(device_ends(&r), vec![Some(Hresult::VD_E_ABORT); 2]);
    assert_eq!(r.client.believes_success, Some(false));
    let (mut c, _ns, hs) = active(1);
    c.deliver(ToClient::Died);
    assert!(c.server_gone());
    assert_eq!(ready(c.get_command(hs[0])).code(), Hresult::VD_E_ABORT);
}

/// `abort.attention`: a cancel on the statement's connection aborts it as
/// KILL does: every device sees VD_E_ABORT, the statement fails with 3204
/// and 3013, no backup is recorded.
#[test]
fn abort_attention() {
    let r = run_plan(&spec(Operation::Backup, 2, 8), "cancel", 5);
    assert_clean(&r);
    let o = outcome(&r, 0);
    assert_eq!(o.reason, Some(FailReason::Cancelled));
    assert_eq!(
        o.messages.iter().map(|m| m.number).collect::<Vec<_>>(),
        vec![3204, 3013],
        "{}",
        msgs(o)
    );
    assert_eq!(device_ends(&r), vec![Some(Hresult::VD_E_ABORT); 2]);
    assert_eq!(r.client.believes_success, Some(false));
}

/// `abort.disconnect`: the statement's connection ends without a cancel;
/// by default the statement runs to its end, under `abort` it is
/// cancelled.
#[test]
fn abort_disconnect() {
    let s = spec(Operation::Backup, 2, 8);
    let r = run_plan(&s, "disconnect", 5);
    assert_clean(&r);
    assert!(outcome(&r, 0).succeeded(), "{:?}", outcome(&r, 0));
    assert_eq!(device_ends(&r), vec![Some(Hresult::VD_E_CLOSE); 2]);
    let mut cfg = WorldConfig::new(5);
    cfg.faults = simulate::fault_plan("disconnect", &s, 5).unwrap();
    cfg.profile.disconnect_without_attention = vdi_spec::profile::Disconnect::Abort;
    let r = run(&s, cfg);
    assert_clean(&r);
    assert_eq!(outcome(&r, 0).reason, Some(FailReason::Cancelled));
    assert_eq!(device_ends(&r), vec![Some(Hresult::VD_E_ABORT); 2]);
}

/// `abort.only-close`: in Abort GetConfiguration, OpenDevice, GetCommand
/// and CompleteCommand return VD_E_ABORT, SignalAbort NOERROR, Create
/// VD_E_PROTOCOL, and Close works.
#[test]
fn abort_only_close() {
    let (mut c, mut ns) = initializing(2);
    let h = c.open_device(SET).result.unwrap();
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    let k = ready(c.get_command(h)).result.unwrap();
    c.deliver(ToClient::Abort);
    assert_eq!(ready(c.get_configuration()).code(), Hresult::VD_E_ABORT);
    assert_eq!(c.open_device("set-dev1").code(), Hresult::VD_E_ABORT);
    assert_eq!(ready(c.get_command(h)).code(), Hresult::VD_E_ABORT);
    assert_eq!(
        complete(&mut c, h, &k, Win32::ERROR_SUCCESS).code(),
        Hresult::VD_E_ABORT
    );
    assert_eq!(c.signal_abort().code(), Hresult::NOERROR);
    assert_eq!(
        c.create("x", &pipe(1), &mut ns).code(),
        Hresult::VD_E_PROTOCOL
    );
    assert_eq!(c.close(&mut ns).code(), Hresult::NOERROR);
    assert_eq!(c.state(), ClientState::Dne);
}

/// `abort.statement-fails`: an aborted operation fails its statement with
/// 18210 lines citing operating system error 995, then 3013.
#[test]
fn abort_statement_fails() {
    let r = run_plan(&spec(Operation::Restore, 2, 8), "client-abort", 28);
    let o = outcome(&r, 0);
    assert_eq!(o.status, Status::Failed);
    assert!(has_msg(o, 18210, "read failure"), "{}", msgs(o));
    assert!(has_msg(o, 18210, "Operating system error 995"));
    let last = o.messages.last().unwrap();
    assert_eq!(
        (last.number, last.text.as_str()),
        (3013, "RESTORE DATABASE is terminating abnormally.")
    );
    assert!(cites(&r, id::ABORT_STATEMENT_FAILS));
}

// ======================================================================
// Termination
// ======================================================================

/// `term.close-device`: the server closes every device at the end; each
/// device's next GetCommand returns VD_E_CLOSE and its thread leaves the
/// loop.
#[test]
fn term_close_device() {
    let r = run(&spec(Operation::Roundtrip, 3, 6), WorldConfig::new(29));
    assert_clean(&r);
    assert!(all_succeeded(&r));
    assert_eq!(device_ends(&r), vec![Some(Hresult::VD_E_CLOSE); 3]);
    assert_eq!(events(&r, "server", "CloseDevice").len(), 6);
    assert_eq!(
        events(&r, "", "Exit")
            .iter()
            .filter(|e| e.who.starts_with("dev"))
            .count(),
        6
    );
}

/// `term.normally-terminated`: the set becomes NormallyTerminated only when
/// every device has been closed.
#[test]
fn term_normally_terminated() {
    let (mut c, _ns, hs) = active(3);
    for (i, h) in hs.iter().enumerate() {
        c.deliver(ToClient::CloseDevice { dev: i as DevIx });
        let r = ready(c.get_command(*h));
        assert_eq!(r.code(), Hresult::VD_E_CLOSE);
        if i < 2 {
            assert_eq!(c.state(), ClientState::Active);
        } else {
            assert_eq!(r.clause, id::TERM_NORMALLY_TERMINATED);
            assert_eq!(c.state(), ClientState::NormallyTerminated);
        }
    }
}

/// `term.outcome-decides`: devices can all close normally while the
/// statement fails; only the T-SQL outcome decides, and a client that looks
/// at VD_E_CLOSE alone (flaw ignores-outcome) believes a failed backup
/// succeeded.
#[test]
fn term_outcome_decides() {
    let p = Profile {
        error_termination: ErrorTermination::ClearErrorThenClose,
        ..Profile::default()
    };
    let mut s = spec(Operation::Backup, 2, 8);
    let r = run_profile(&s, p.clone(), "disk-full", 30);
    assert_clean(&r);
    assert_eq!(device_ends(&r), vec![Some(Hresult::VD_E_CLOSE); 2]);
    assert_eq!(outcome(&r, 0).status, Status::Failed);
    assert_eq!(
        r.client.believes_success,
        Some(false),
        "the reference client reads the outcome"
    );
    s.flaws.insert(Flaw::IgnoresOutcome);
    let r = run_profile(&s, p, "disk-full", 30);
    assert_eq!(outcome(&r, 0).status, Status::Failed);
    assert_eq!(
        r.client.believes_success,
        Some(true),
        "fooled by VD_E_CLOSE"
    );
}

/// `term.exits`: the reference client ends once its statement has; a
/// client that waits for data that never comes (flaw reads-until-full,
/// truncated media) is still running after its RESTORE failed — what the
/// runner kills after its bound — and grading says so.
#[test]
fn term_exits() {
    let s = spec(Operation::Roundtrip, 1, 6);
    let r = run(&s, WorldConfig::new(52));
    assert_clean(&r);
    let ok = graded_context(outcomes(&r), ProgramEnd::Exited { code: 0 });
    assert_eq!(obligations::check(&[], &ok), []);
    let mut s = s.clone();
    s.server_timeout_ms = 2_000;
    s.flaws.insert(Flaw::ReadsUntilFull);
    let r = run_plan(&s, "truncated-media", 50);
    assert_eq!(outcome(&r, 1).status, Status::Failed);
    assert_ne!(r.end, End::Finished, "the program never ends");
    let hung = graded_context(outcomes(&r), ProgramEnd::Hung { bound_ms: 30_000 });
    let found = obligations::check(&[], &hung);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].clause, id::TERM_EXITS.as_str());
    assert!(found[0].what.contains("30000 ms after its statement ended"));
}

/// `term.backup-sequence`: a pipe BACKUP stream is Write* … Flush …
/// [Complete], then VD_E_CLOSE, on every device.
#[test]
fn term_backup_sequence() {
    let mut s = spec(Operation::Backup, 2, 6);
    s.request_complete = true;
    let r = run(&s, WorldConfig::new(31));
    assert!(all_succeeded(&r));
    for dev in ["dev0", "dev1"] {
        let cmds = fetched(&r, dev);
        let n = cmds.len();
        assert!(n >= 3, "{cmds:?}");
        assert!(cmds[..n - 2].iter().all(|c| c == "VDC_Write"), "{cmds:?}");
        assert_eq!(&cmds[n - 2..], ["VDC_Flush", "VDC_Complete"]);
        let last = events(&r, dev, "GetCommand").last().unwrap().detail.clone();
        assert!(last.contains("VD_E_CLOSE"), "{last}");
    }
    let s = spec(Operation::Backup, 1, 3);
    let r = run(&s, WorldConfig::new(31));
    assert_eq!(
        fetched(&r, "dev0"),
        [
            "VDC_Write",
            "VDC_Write",
            "VDC_Write",
            "VDC_Write",
            "VDC_Flush"
        ]
    );
}

// ======================================================================
// IO-ERROR
// ======================================================================

/// `io-error.enter`: a non-success completion puts the device in IO-ERROR;
/// the client sees nothing immediately.
#[test]
fn io_error_enter() {
    let (mut c, _ns, hs) = active(1);
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    let k = ready(c.get_command(hs[0])).result.unwrap();
    let r = complete(&mut c, hs[0], &k, Win32::ERROR_WRITE_FAULT);
    assert_eq!(r.code(), Hresult::NOERROR, "nothing immediate");
    assert!(c.io_error(0));
    assert_eq!(c.get_command(hs[0]), Blocking::Pending);
    let r = run_plan(&spec(Operation::Backup, 1, 6), "write-fault", 32);
    assert!(cites(&r, id::IO_ERROR_ENTER));
    assert_eq!(r.server_devices[0].errors, vec![Win32::ERROR_WRITE_FAULT]);
}

/// `io-error.reject-new`: in IO-ERROR commands queued but not handed out,
/// and new ones, are auto-completed with ERROR_IO_DEVICE; the client never
/// sees them (ClearError excepted).
#[test]
fn io_error_reject_new() {
    let (mut c, _ns, hs) = active(1);
    for id in 1..=3 {
        c.deliver(ToClient::Command(cmd(id, 0, CommandCode::Write)));
    }
    let k = ready(c.get_command(hs[0])).result.unwrap();
    c.out.clear();
    complete(&mut c, hs[0], &k, Win32::ERROR_DISK_FULL);
    c.deliver(ToClient::Command(cmd(4, 0, CommandCode::Write)));
    let done = completions(&c);
    let auto: Vec<u64> = done.iter().filter(|x| x.auto).map(|x| x.id.0).collect();
    assert_eq!(auto, vec![2, 3, 4]);
    assert!(
        done.iter()
            .filter(|x| x.auto)
            .all(|x| x.code == Win32::ERROR_IO_DEVICE)
    );
    c.deliver(ToClient::Command(cmd(5, 0, CommandCode::ClearError)));
    assert_eq!(
        c.get_command(hs[0]).map_ready_id(),
        Some(5),
        "only ClearError"
    );
}

/// `io-error.clear-error-after-outstanding`: VDC_ClearError is delivered
/// only after every command outstanding at the error is completed.
#[test]
fn io_error_clear_error_after_outstanding() {
    let (mut c, _ns, hs) = active(1);
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    c.deliver(ToClient::Command(cmd(2, 0, CommandCode::Write)));
    let a = ready(c.get_command(hs[0])).result.unwrap();
    let b = ready(c.get_command(hs[0])).result.unwrap();
    complete(&mut c, hs[0], &a, Win32::ERROR_DISK_FULL);
    c.deliver(ToClient::Command(cmd(3, 0, CommandCode::ClearError)));
    assert_eq!(
        c.get_command(hs[0]),
        Blocking::Pending,
        "b still outstanding"
    );
    complete(&mut c, hs[0], &b, Win32::ERROR_SUCCESS);
    let r = ready(c.get_command(hs[0]));
    assert_eq!(r.clause, id::IO_ERROR_CLEAR_ERROR_AFTER_OUTSTANDING);
    assert_eq!(r.result.unwrap().code, CommandCode::ClearError);
}

/// `io-error.clear-error-success`: completing VDC_ClearError with
/// ERROR_SUCCESS makes the device Active again: commands are delivered.
#[test]
fn io_error_clear_error_success() {
    let (mut c, _ns, hs) = active(1);
    c.tracing = true;
    c.deliver(ToClient::Command(cmd(1, 0, CommandCode::Write)));
    let a = ready(c.get_command(hs[0])).result.unwrap();
    complete(&mut c, hs[0], &a, Win32::ERROR_DISK_FULL);
    c.deliver(ToClient::Command(cmd(2, 0, CommandCode::ClearError)));
    let ce = ready(c.get_command(hs[0])).result.unwrap();
    complete(&mut c, hs[0], &ce, Win32::ERROR_SUCCESS);
    assert!(!c.io_error(0));
    assert!(
        c.notes
            .iter()
            .any(|n| n.clause == id::IO_ERROR_CLEAR_ERROR_SUCCESS)
    );
    c.deliver(ToClient::Command(cmd(3, 0, CommandCode::Write)));
    assert_eq!(c.get_command(hs[0]).map_ready_id(), Some(3));
}

/// `io-error.close-or-abort`: after a fatal device error the server ends
/// the statement per the profile: ClearError then SignalAbort, SignalAbort
/// at once (devices see VD_E_ABORT), ClearError then CloseDevice
/// (VD_E_CLOSE), or (the default) drain then CloseDevice without a
/// ClearError (VD_E_CLOSE); the statement fails every way.
#[test]
fn io_error_close_or_abort() {
    let s = spec(Operation::Backup, 2, 8);
    for (term, end, clear) in [
        (
            ErrorTermination::ClearErrorThenAbort,
            Hresult::VD_E_ABORT,
            true,
        ),
        (ErrorTermination::Abort, Hresult::VD_E_ABORT, false),
        (
            ErrorTermination::ClearErrorThenClose,
            Hresult::VD_E_CLOSE,
            true,
        ),
        (ErrorTermination::DrainThenClose, Hresult::VD_E_CLOSE, false),
    ] {
        let p = Profile {
            error_termination: term,
            ..Profile::default()
        };
        let r = run_profile(&s, p, "disk-full", 33);
        assert_clean(&r);
        let o = outcome(&r, 0);
        assert_eq!(
            (o.status, o.reason),
            (Status::Failed, Some(FailReason::DeviceError)),
            "{term:?}"
        );
        assert_eq!(device_ends(&r), vec![Some(end); 2], "{term:?}");
        let cleared = r.client.devices[0].commands.contains_key("VDC_ClearError");
        assert_eq!(cleared, clear, "{term:?}");
        assert!(cites(&r, id::IO_ERROR_CLOSE_OR_ABORT));
    }
}

/// `io-error.eof`: with `eof-enters-io-error` the EOF of the last restore
/// read puts the device in IO-ERROR, VDC_ClearError follows, and the
/// restore still succeeds; without it no ClearError is sent.
#[test]
fn io_error_eof() {
    let mut s = spec(Operation::Roundtrip, 1, 3);
    s.plan.data_bytes = 3 * CHUNK - 4096;
    for eof_io in [false, true] {
        let p = Profile {
            eof_enters_io_error: eof_io,
            restore_overread: true,
            ..Profile::default()
        };
        let mut cfg = WorldConfig::new(34);
        cfg.profile = p;
        let r = run(&s, cfg);
        assert_clean(&r);
        assert!(all_succeeded(&r), "{}", msgs(outcome(&r, 1)));
        assert_eq!(
            r.client.devices[0].commands.contains_key("VDC_ClearError"),
            eof_io
        );
        if eof_io {
            assert!(cites(&r, id::IO_ERROR_EOF));
        }
    }
}

/// `io-error.not-supported`: with `not-supported-enters-io-error` a probe
/// answered ERROR_NOT_SUPPORTED puts the device in IO-ERROR; the server
/// clears it, redoes what was auto-completed, and the backup succeeds.
#[test]
fn io_error_not_supported() {
    let mut s = spec(Operation::Roundtrip, 1, 8);
    s.plan.extra_commands = vec![ExtraCommand {
        dev: 0,
        after_data_commands: 1,
        code: CommandCode::GetError,
    }];
    for enters in [false, true] {
        let mut cfg = WorldConfig::new(35);
        cfg.profile.not_supported_enters_io_error = enters;
        let r = run(&s, cfg);
        assert_clean(&r);
        assert!(all_succeeded(&r), "{}", msgs(outcome(&r, 0)));
        assert_eq!(
            r.client.devices[0].commands.contains_key("VDC_ClearError"),
            enters
        );
        assert_eq!(cites(&r, id::IO_ERROR_NOT_SUPPORTED), enters);
    }
}

/// `io-error.disk-full`: ERROR_DISK_FULL on a Write fails the BACKUP
/// (Msg 3202 citing 112, then 3013).
#[test]
fn io_error_disk_full() {
    let r = run_plan(&spec(Operation::Backup, 1, 6), "disk-full", 36);
    assert_clean(&r);
    let o = outcome(&r, 0);
    assert_eq!(o.reason, Some(FailReason::DeviceError));
    assert!(
        has_msg(o, 3202, "112(There is not enough space on the disk.)"),
        "{}",
        msgs(o)
    );
    assert!(cites(&r, id::IO_ERROR_DISK_FULL));
}

/// `io-error.end-of-media`: ERROR_END_OF_MEDIA on a non-removable device
/// has no recovery: the BACKUP fails.
#[test]
fn io_error_end_of_media() {
    let r = run_plan(&spec(Operation::Backup, 1, 6), "end-of-media", 37);
    assert_clean(&r);
    let o = outcome(&r, 0);
    assert_eq!(o.reason, Some(FailReason::DeviceError));
    assert!(has_msg(o, 3202, "1100"), "{}", msgs(o));
    assert!(!events(&r, "server", "EndOfMedia").is_empty());
}

/// `io-error.one-device-fails`: with three devices, one failing device
/// fails the statement and, under an error termination that aborts, the
/// other devices see VD_E_ABORT.
#[test]
fn io_error_one_device_fails() {
    let r = run_profile(
        &spec(Operation::Backup, 3, 9),
        clear_then_abort(),
        "write-fault",
        38,
    );
    assert_clean(&r);
    let o = outcome(&r, 0);
    assert_eq!(o.reason, Some(FailReason::DeviceError));
    assert!(has_msg(o, 3202, "vdisim-set-backup-dev2"), "{}", msgs(o));
    assert_eq!(device_ends(&r)[..2], [Some(Hresult::VD_E_ABORT); 2]);
    assert!(cites(&r, id::IO_ERROR_ONE_DEVICE_FAILS));
}

// ======================================================================
// Watchdog
// ======================================================================

/// `watchdog.fires`: requests pending and none completing for 2 ×
/// serverTimeOut aborts the set; the client sees VD_E_ABORT.
#[test]
fn watchdog_fires() {
    let mut s = spec(Operation::Backup, 2, 8);
    s.server_timeout_ms = 5_000;
    let r = run_plan(&s, "slow-client", 39);
    assert_clean(&r);
    let o = outcome(&r, 0);
    assert_eq!(o.reason, Some(FailReason::Watchdog));
    assert!(has_msg(o, 18210, "995"), "{}", msgs(o));
    assert_eq!(device_ends(&r), vec![Some(Hresult::VD_E_ABORT); 2]);
    let fired = events(&r, "server", "Watchdog")
        .into_iter()
        .find(|e| e.detail.contains("SignalAbort"))
        .expect("fired");
    // The stall began at 5 ms (statement start); it fires 2 × 5000 ms after
    // the last completion.
    assert!(fired.t >= 10_000 && fired.t < 15_000, "{}", fired.t);
}

/// `watchdog.disabled`: serverTimeOut 0 (or watchdog factor 0) disables the
/// watchdog: a client that stalls for ten minutes still succeeds.
#[test]
fn watchdog_disabled() {
    let stall = vec![on(
        0,
        2,
        None,
        Phase::Any,
        Fault::ClientStall { ms: 600_000 },
    )];
    let mut s = spec(Operation::Backup, 1, 4);
    s.server_timeout_ms = 0;
    let r = run_faults(&s, stall.clone(), 40);
    assert_clean(&r);
    assert!(all_succeeded(&r));
    assert!(r.now_ms >= 600_000);
    assert!(cites(&r, id::WATCHDOG_DISABLED));
    let mut s = spec(Operation::Backup, 1, 4);
    s.server_timeout_ms = 1_000;
    let mut cfg = WorldConfig::new(40);
    cfg.profile.watchdog_factor = 0;
    cfg.faults = FaultPlan {
        name: "stall".into(),
        faults: stall,
    };
    let r = run(&s, cfg);
    assert!(all_succeeded(&r));
}

/// `watchdog.reset-on-completion`: any completion restarts the interval, so
/// slow completions (1.5 × serverTimeOut apart, 6 × in total) do not abort.
#[test]
fn watchdog_reset_on_completion() {
    let mut set_cfg = pipe(1);
    set_cfg.server_time_out = 1_000;
    let (mut d, ctl, ts, hs) = driven_backup(WorldConfig::new(41), 1, 4, set_cfg);
    loop {
        let r = d.get_command(ts[0], hs[0]);
        let Value::Command(c) = r.value else {
            assert_eq!(r.code, Hresult::VD_E_CLOSE);
            break;
        };
        d.w.sleep(1_500).unwrap();
        assert_eq!(d.perform(ts[0], hs[0], c).code, Hresult::NOERROR);
    }
    assert!(d.w.now() >= 6_000);
    d.call(ctl, Call::Close);
    let o = d.w.wait_statement(Timeout::Infinite).unwrap().unwrap();
    assert!(o.succeeded(), "{}", msgs(&o));
    let r = d.w.finish_driven();
    assert!(cites(&r, id::WATCHDOG_RESET_ON_COMPLETION));
}

// ======================================================================
// VDC_Complete and Flush
// ======================================================================

/// `complete.negotiation`: VDF_RequestComplete on a supporting server gives
/// VDF_CompleteEnabled and a VDC_Complete per device; on a server without
/// support neither comes and the backup still succeeds.
#[test]
fn complete_negotiation() {
    let mut s = spec(Operation::Backup, 2, 4);
    s.request_complete = true;
    let r = run(&s, WorldConfig::new(42));
    assert!(all_succeeded(&r));
    assert!(Features(r.client.config.unwrap().features).contains(Features::CompleteEnabled));
    assert!(
        r.client
            .devices
            .iter()
            .all(|d| d.commands.get("VDC_Complete") == Some(&1))
    );
    let mut cfg = WorldConfig::new(42);
    cfg.profile.server_supports_complete = false;
    let r = run(&s, cfg);
    assert!(all_succeeded(&r));
    assert!(!Features(r.client.config.unwrap().features).contains(Features::CompleteEnabled));
    assert!(
        r.client
            .devices
            .iter()
            .all(|d| !d.commands.contains_key("VDC_Complete"))
    );
}

/// `complete.never-unrequested`: without VDF_RequestComplete no VDC_Complete
/// is ever sent, not even a planned probe.
#[test]
fn complete_never_unrequested() {
    let mut s = spec(Operation::Backup, 1, 4);
    s.plan.extra_commands = vec![ExtraCommand {
        dev: 0,
        after_data_commands: 1,
        code: CommandCode::Complete,
    }];
    let r = run(&s, WorldConfig::new(43));
    assert!(all_succeeded(&r));
    assert!(!r.client.devices[0].commands.contains_key("VDC_Complete"));
    assert!(cites(&r, id::COMPLETE_NEVER_UNREQUESTED));
}

/// `complete.veto`: completing VDC_Complete with an error fails the BACKUP.
#[test]
fn complete_veto() {
    let mut s = spec(Operation::Backup, 1, 2);
    s.request_complete = true;
    let veto = Fault::CompleteWithError {
        code: Win32::ERROR_WRITE_FAULT,
    };
    let r = run_faults(
        &s,
        vec![on(0, 1, Some(CommandCode::Complete), Phase::Backup, veto)],
        44,
    );
    assert_clean(&r);
    assert_eq!(outcome(&r, 0).reason, Some(FailReason::Vetoed));
    assert!(cites(&r, id::COMPLETE_VETO));
}

/// `flush.several`: mid-stream Flushes arrive several times per device and
/// the client must not finalise at them: the backup ends with the final
/// Flush (and VDC_Complete when negotiated).
#[test]
fn flush_several() {
    let mut s = spec(Operation::Roundtrip, 2, 8);
    s.plan.mid_flushes = 3;
    s.request_complete = true;
    let r = run(&s, WorldConfig::new(45));
    assert_clean(&r);
    assert!(all_succeeded(&r));
    for dev in ["dev0", "dev1"] {
        let cmds = fetched(&r, dev);
        let flushes = cmds.iter().filter(|c| *c == "VDC_Flush").count();
        assert_eq!(flushes, 4, "{cmds:?}");
        let first_flush = cmds.iter().position(|c| c == "VDC_Flush").unwrap();
        assert!(
            cmds[first_flush..].iter().any(|c| c == "VDC_Write"),
            "mid-stream"
        );
        assert_eq!(cmds.iter().filter(|c| *c == "VDC_Complete").count(), 1);
    }
    assert!(cites(&r, id::FLUSH_SEVERAL));
}

/// `flush.final-veto`: without VDC_Complete an error on the final Flush
/// vetoes (fails) the BACKUP.
#[test]
fn flush_final_veto() {
    let s = spec(Operation::Backup, 1, 2);
    let veto = Fault::CompleteWithError {
        code: Win32::ERROR_WRITE_FAULT,
    };
    let r = run_faults(
        &s,
        vec![on(0, 1, Some(CommandCode::Flush), Phase::Backup, veto)],
        46,
    );
    assert_clean(&r);
    let o = outcome(&r, 0);
    assert_eq!(o.reason, Some(FailReason::Vetoed));
    assert!(has_msg(o, 3202, "29("), "{}", msgs(o));
    assert!(cites(&r, id::FLUSH_FINAL_VETO));
}

/// `flush.restore-not-supported-misuse`: VDC_Flush is required: a client
/// answering it with ERROR_NOT_SUPPORTED (flaw flush-not-supported) fails
/// the BACKUP, which cites the code.
#[test]
fn flush_restore_not_supported_misuse() {
    let mut s = spec(Operation::Backup, 1, 2);
    s.flaws.insert(Flaw::FlushNotSupported);
    let r = run(&s, WorldConfig::new(47));
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let o = outcome(&r, 0);
    assert_eq!(o.status, Status::Failed);
    assert!(has_msg(o, 3202, "50("), "{}", msgs(o));
}

/// `flush.disk-sets-eof`: a disk-like backup over a file that held an
/// older, longer backup: each acknowledged VDC_Flush sets end-of-file at
/// the furthest byte written, so the device holds exactly the new family;
/// a client whose Flush leaves the old tail (flaw no-end-of-file) holds
/// more than the family, which the backup check reports.
#[test]
fn flush_disk_sets_eof() {
    for mid_flushes in [0, 2] {
        let mut s = spec(Operation::Backup, 1, 4);
        s.features = Features::LikeDisk.0;
        s.plan.mid_flushes = mid_flushes;
        let old = spec(Operation::Backup, 1, 12).backup_layout();
        let mut cfg = WorldConfig::new(48);
        cfg.seed_backups.push(old.clone());
        let r = run(&s, cfg.clone());
        assert_clean(&r);
        assert!(all_succeeded(&r));
        let eofs = events(&r, "server", "EndOfFile");
        assert_eq!(eofs.len(), mid_flushes as usize + 1, "{eofs:?}");
        // No violation: the device holds exactly the new family, which is
        // shorter than the old one.
        let len = r.client.media[0].len();
        assert!(len < old.families[0].media_len());
        assert!(
            eofs.last()
                .unwrap()
                .detail
                .ends_with(&format!("end-of-file at byte {len}")),
            "{eofs:?}"
        );
        assert!(cites(&r, id::FLUSH_DISK_SETS_EOF));

        s.flaws.insert(Flaw::NoEndOfFile);
        let r = run(&s, cfg);
        assert!(all_succeeded(&r));
        assert_eq!(r.client.media[0].len(), old.families[0].media_len());
        assert!(
            r.violations
                .iter()
                .any(|v| id::RESTORE_BYTE_IDENTICAL == v.clause),
            "{:?}",
            r.violations
        );
    }
}

// ======================================================================
// Disk-like devices
// ======================================================================

/// The server's profile with `disk-header-order = last`.
fn header_last() -> Profile {
    Profile {
        disk_header_order: DiskHeaderOrder::Last,
        ..Profile::default()
    }
}

/// The positions of the Writes the server sent on device `dev`, in order.
fn write_positions(r: &RunResult, dev: u64) -> Vec<(u64, u64)> {
    events(r, "server", "SendCommand")
        .iter()
        .filter(|e| e.detail.contains("VDC_Write") && field(&e.detail, "dev") == Some(dev))
        .filter_map(|e| Some((field(&e.detail, "pos")?, field(&e.detail, "size")?)))
        .collect()
}

/// `disk.positioned-io`: a disk-like client stores each Write at its
/// position and answers each Read from its position: under
/// `disk-header-order = last` (the header written after the data) and
/// with short transfers reissued out of stream order, a backup and its
/// restore still succeed byte for byte; a client that ignores the
/// positions (flaw ignores-position) appends the header after the data,
/// which the backup check reports.
#[test]
fn disk_positioned_io() {
    let mut s = spec(Operation::Roundtrip, 2, 8);
    s.features = Features::LikeDisk.0;
    s.plan.mid_flushes = 1;
    let mut cfg = WorldConfig::new(49);
    cfg.profile = header_last();
    let r = run(&s, cfg.clone());
    assert_clean(&r);
    assert!(all_succeeded(&r));
    assert!(cites(&r, id::DISK_POSITIONED_IO));
    assert!(cites(&r, id::RESTORE_BYTE_IDENTICAL));

    // A short Write under `reissue` while later Writes are outstanding (on
    // a pipe that fails, see command_short_transfer): the remainder goes
    // out at its position and the backup is byte-exact.
    let mut reissue = WorldConfig::new(50);
    reissue.profile.short_transfer = ShortTransfer::Reissue;
    let disk = VdConfig::client(1, Features::LikeDisk);
    let (mut d, ctl, ts, hs) = driven_backup(reissue, 1, 3, disk);
    let k = common::command(&d.get_command(ts[0], hs[0]));
    d.w.process().media = vec![Content::Empty];
    d.w.process().media[0].write_at(k.position, &k.data.slice(0, 32768));
    let r = d.call(
        ts[0],
        Call::CompleteCommand {
            dev: hs[0],
            position: k.position,
            code: Win32::ERROR_SUCCESS,
            bytes: 32768,
            data: Content::Empty,
            cmd: k.clone(),
        },
    );
    assert_eq!(r.code, Hresult::NOERROR);
    assert_eq!(d.serve(ts[0], hs[0]), Hresult::VD_E_CLOSE);
    d.call(ctl, Call::Close);
    let o = d.w.wait_statement(Timeout::Infinite).unwrap().unwrap();
    assert!(o.succeeded(), "{}", msgs(&o));
    let r = d.w.finish_driven();
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let w = write_positions(&r, 0);
    let rest = w
        .iter()
        .position(|p| *p == (k.position + 32768, 32768))
        .expect("the remainder at its position");
    assert!(
        w[..rest].iter().any(|p| p.0 > k.position + 32768),
        "later Writes went out before the remainder: {w:?}"
    );

    let mut flawed = s.clone();
    flawed.flaws.insert(Flaw::IgnoresPosition);
    let r = run(&flawed, cfg);
    assert!(
        r.violations
            .iter()
            .any(|v| id::RESTORE_BYTE_IDENTICAL == v.clause),
        "{:?}",
        r.violations
    );
}

/// `disk.header-order`: on a disk-like device the default order is the
/// sequential one (header at 0 first, then ascending); under
/// `disk-header-order = last` the data goes first from just after the
/// header and the header is the last Write, at position 0, sent once every
/// data Write was acknowledged. A pipe-like device ignores the parameter.
#[test]
fn disk_header_order() {
    let mut s = spec(Operation::Backup, 1, 6);
    s.features = Features::LikeDisk.0;
    let r = run(&s, WorldConfig::new(51));
    assert_clean(&r);
    let w = write_positions(&r, 0);
    assert_eq!(w[0], (0, 65536));
    assert!(w.windows(2).all(|p| p[1].0 == p[0].0 + p[0].1), "{w:?}");
    assert!(!cites(&r, id::DISK_HEADER_ORDER));

    let mut cfg = WorldConfig::new(51);
    cfg.profile = header_last();
    let r = run(&s, cfg.clone());
    assert_clean(&r);
    assert!(all_succeeded(&r));
    let w = write_positions(&r, 0);
    assert_eq!(*w.last().unwrap(), (0, 65536), "{w:?}");
    assert_eq!(w[0].0, 65536);
    assert!(cites(&r, id::DISK_HEADER_ORDER));
    // Sent only when nothing else was outstanding on the device.
    let ev = r.trace.events();
    let header = ev
        .iter()
        .position(|e| e.what == "SendCommand" && e.clause == Some(id::DISK_HEADER_ORDER))
        .unwrap();
    let sent = ev[..header]
        .iter()
        .filter(|e| e.who == "server" && e.what == "SendCommand")
        .count();
    let done = ev[..header]
        .iter()
        .filter(|e| e.who == "server" && e.what == "Completion")
        .count();
    assert_eq!(sent, done, "the header waits for every data Write");

    s.features = 0;
    let r = run(&s, cfg);
    assert_eq!(write_positions(&r, 0)[0], (0, 65536));
    assert!(!cites(&r, id::DISK_HEADER_ORDER));
}

/// `media.next-volume`: a removable pipe-like client whose volumes hold
/// 100 KiB backs up and restores a family of several volumes: each full
/// volume answers ERROR_END_OF_MEDIA, the server clears the error, sends
/// VDC_Load and writes the rest; the restore meets each volume's end
/// (EOF), sends VDC_Load and reads on; both succeed byte for byte. Without
/// VDF_Removable the client has one medium (no volumes), and a pipe that
/// answers ERROR_END_OF_MEDIA (plan end-of-media) has no recovery: its
/// BACKUP fails.
#[test]
fn media_next_volume() {
    let mut s = spec(Operation::Roundtrip, 2, 6);
    s.features = Features::Removable.0;
    s.volume_bytes = 100 * 1024;
    let r = run(&s, WorldConfig::new(90));
    assert_clean(&r);
    assert!(all_succeeded(&r), "{}", msgs(outcome(&r, 0)));
    let family = s.backup_layout().families[0].media_len();
    let volumes = family.div_ceil(100 * 1024);
    for dev in ["dev0", "dev1"] {
        let cmds = fetched(&r, dev);
        let loads = cmds.iter().filter(|c| *c == "VDC_Load").count() as u64;
        assert_eq!(loads, 2 * (volumes - 1), "{dev}: {cmds:?}");
    }
    assert_eq!(r.client.volumes[0].len() as u64, volumes - 1);
    assert!(cites(&r, id::MEDIA_NEXT_VOLUME));
    assert!(cites(&r, id::RESTORE_BYTE_IDENTICAL));

    let mut fixed = s.clone();
    fixed.features = 0;
    fixed.operation = Operation::Backup;
    let r = run(&fixed, WorldConfig::new(90));
    assert!(
        all_succeeded(&r),
        "a pipe without VDF_Removable has no volumes"
    );
    let mut full = spec(Operation::Backup, 1, 6);
    full.features = 0;
    let r = run_plan(&full, "end-of-media", 90);
    assert!(!outcome(&r, 0).succeeded());
}

// ======================================================================
// Snapshot backups
// ======================================================================

fn snapshot_spec(operation: Operation) -> ClientSpec {
    let mut s = spec(operation, 1, 2);
    s.plan.snapshot = true;
    s
}

/// The freeze time a run traced (`Thaw frozen_ms=`).
fn frozen_ms(r: &RunResult) -> Option<u64> {
    events(r, "server", "Thaw")
        .first()
        .and_then(|e| field(&e.detail, "frozen_ms"))
}

/// `snapshot.sequence`: BACKUP WITH SNAPSHOT writes the header and the
/// metadata, then sends VDC_Snapshot; no Flush follows, the device closes,
/// the backup is on the media whole, and the outcome reports the freeze
/// (3197, 3198) before 4035 and 3014.
#[test]
fn snapshot_sequence() {
    let r = run(&snapshot_spec(Operation::Backup), WorldConfig::new(80));
    assert_clean(&r);
    let o = outcome(&r, 0);
    assert!(o.succeeded(), "{}", msgs(o));
    let numbers: Vec<u32> = o.messages.iter().map(|m| m.number).collect();
    assert_eq!(numbers, vec![3197, 3198, 4035, 3014]);
    let cmds = fetched(&r, "dev0");
    assert_eq!(
        cmds.last().map(String::as_str),
        Some("VDC_Snapshot"),
        "{cmds:?}"
    );
    assert!(
        cmds[..cmds.len() - 1].iter().all(|c| c == "VDC_Write"),
        "{cmds:?}"
    );
    assert_eq!(device_ends(&r), vec![Some(Hresult::VD_E_CLOSE)]);
    assert!(cites(&r, id::SNAPSHOT_SEQUENCE));
}

/// `snapshot.one-device`: a snapshot statement over two devices fails
/// before configuration (Msg 3217).
#[test]
fn snapshot_one_device() {
    let mut s = snapshot_spec(Operation::Backup);
    s.devices = 2;
    s.get_configuration_attempts = 2;
    let r = run(&s, WorldConfig::new(81));
    let o = outcome(&r, 0);
    assert_eq!(o.reason, Some(FailReason::BadOptions));
    assert!(
        has_msg(o, 3217, "SNAPSHOT needs exactly one"),
        "{}",
        msgs(o)
    );
    assert!(cites(&r, id::SNAPSHOT_ONE_DEVICE));
}

/// `snapshot.prepare-to-freeze`: with VDF_SnapshotPrepare the header is
/// followed by VDC_PrepareToFreeze, and the freeze begins when the client
/// acknowledges it, before the frozen-state metadata; without the flag no
/// VDC_PrepareToFreeze is sent.
#[test]
fn snapshot_prepare_to_freeze() {
    let mut s = snapshot_spec(Operation::Backup);
    s.features = Features::SnapshotPrepare.0;
    let r = run(&s, WorldConfig::new(82));
    assert_clean(&r);
    assert!(all_succeeded(&r));
    let cmds = fetched(&r, "dev0");
    assert_eq!(cmds[0], "VDC_Write");
    assert_eq!(cmds[1], "VDC_PrepareToFreeze", "{cmds:?}");
    assert!(cmds[2..cmds.len() - 1].iter().all(|c| c == "VDC_Write"));
    let ev = r.trace.events();
    let freeze = ev.iter().position(|e| e.what == "Freeze").unwrap();
    let prepared = ev
        .iter()
        .position(|e| e.what == "Completion" && e.detail.contains("VDC_PrepareToFreeze"))
        .unwrap();
    assert!(prepared < freeze);
    assert!(cites(&r, id::SNAPSHOT_PREPARE_TO_FREEZE));
    let r = run(&snapshot_spec(Operation::Backup), WorldConfig::new(82));
    assert!(
        !fetched(&r, "dev0")
            .iter()
            .any(|c| c == "VDC_PrepareToFreeze")
    );
}

/// `snapshot.freeze-time`: a client that takes 5 s to take its snapshot
/// holds the database frozen at least that long; the freeze time is in the
/// trace and in Msg 3198 of the outcome; a quick client's is shorter.
#[test]
fn snapshot_freeze_time() {
    let mut s = snapshot_spec(Operation::Backup);
    s.snapshot_ms = 5000;
    let r = run(&s, WorldConfig::new(83));
    assert_clean(&r);
    assert!(all_succeeded(&r));
    let slow = frozen_ms(&r).expect("a Thaw event");
    assert!(slow >= 5000, "{slow}");
    assert!(
        has_msg(outcome(&r, 0), 3198, &format!("Frozen for {slow} ms")),
        "{}",
        msgs(outcome(&r, 0))
    );
    let quick = frozen_ms(&run(
        &snapshot_spec(Operation::Backup),
        WorldConfig::new(83),
    ))
    .unwrap();
    assert!(quick < slow, "{quick} vs {slow}");
    assert!(cites(&r, id::SNAPSHOT_FREEZE_TIME));
}

/// `snapshot.abort`: a client that completes VDC_Snapshot with
/// ERROR_OPERATION_ABORTED ends the freeze (3198) and the BACKUP fails
/// (ClientAbort, Msg 18210, 3013).
#[test]
fn snapshot_abort() {
    let mut s = snapshot_spec(Operation::Backup);
    s.flaws.insert(Flaw::AbortsSnapshot);
    let r = run(&s, WorldConfig::new(84));
    assert_clean(&r);
    let o = outcome(&r, 0);
    assert_eq!(o.reason, Some(FailReason::ClientAbort), "{}", msgs(o));
    assert!(has_msg(o, 3198, "resumed"), "{}", msgs(o));
    assert!(has_msg(o, 18210, "995("), "{}", msgs(o));
    assert!(has_msg(o, 3013, ""), "{}", msgs(o));
    assert!(frozen_ms(&r).is_some());
    assert!(cites(&r, id::SNAPSHOT_ABORT));
}

/// `snapshot.freeze-timeout`: under `snapshot-freeze-timeout-ms = 1000` a
/// client that needs 10 s for its snapshot is cut off: the freeze ends at
/// 1000 ms, the server aborts the set, the device sees VD_E_ABORT and the
/// BACKUP fails; with no limit (the default) the same client succeeds.
#[test]
fn snapshot_freeze_timeout() {
    let mut s = snapshot_spec(Operation::Backup);
    s.snapshot_ms = 10_000;
    let mut cfg = WorldConfig::new(85);
    cfg.profile.snapshot_freeze_timeout_ms = 1000;
    let r = run(&s, cfg);
    assert_clean(&r);
    let o = outcome(&r, 0);
    assert_eq!(o.reason, Some(FailReason::ServerAbort), "{}", msgs(o));
    assert_eq!(frozen_ms(&r), Some(1000));
    assert_eq!(device_ends(&r), vec![Some(Hresult::VD_E_ABORT)]);
    assert!(cites(&r, id::SNAPSHOT_FREEZE_TIMEOUT));
    let r = run(&s, WorldConfig::new(85));
    assert!(all_succeeded(&r));
}

/// `snapshot.mount`: RESTORE WITH SNAPSHOT reads the metadata, then sends
/// VDC_MountSnapshot; success ends the RESTORE successfully, an error fails
/// it.
#[test]
fn snapshot_mount() {
    let s = snapshot_spec(Operation::Roundtrip);
    let r = run(&s, WorldConfig::new(86));
    assert_clean(&r);
    assert!(all_succeeded(&r));
    let cmds = fetched(&r, "dev0");
    let snap = cmds.iter().position(|c| c == "VDC_Snapshot").unwrap();
    let restore = &cmds[snap + 1..];
    assert_eq!(
        restore.last().map(String::as_str),
        Some("VDC_MountSnapshot")
    );
    assert!(restore[..restore.len() - 1].iter().all(|c| c == "VDC_Read"));
    assert_eq!(events(&r, "server", "Mounted").len(), 1);
    assert!(cites(&r, id::SNAPSHOT_MOUNT));
    let fault = Fault::CompleteWithError {
        code: Win32::ERROR_IO_DEVICE,
    };
    let r = run_faults(
        &s,
        vec![on(
            0,
            1,
            Some(CommandCode::MountSnapshot),
            Phase::Restore,
            fault,
        )],
        86,
    );
    assert!(outcome(&r, 0).succeeded());
    assert!(!outcome(&r, 1).succeeded());
}

// ======================================================================
// Tape-like devices
// ======================================================================

/// The commands device `dev` fetched, in order, without the data stream's
/// Reads and Writes runs collapsed: each run of Reads or Writes is one
/// entry.
fn tape_script(r: &RunResult, dev: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for c in fetched(r, dev) {
        if (c == "VDC_Write" || c == "VDC_Read") && v.last() == Some(&c) {
            continue;
        }
        v.push(c);
    }
    v
}

fn tape_spec(operation: Operation, devices: u16) -> ClientSpec {
    let mut s = spec(operation, devices, 6);
    s.features = Features::LikeTape.0;
    s
}

/// `tape.sequence`: on tape-like devices a BACKUP goes Rewind,
/// GetPosition, header Write, WriteMark, data Writes, WriteMark, Flush,
/// Rewind; a RESTORE Rewind, GetPosition, header Read, SkipMarks, data
/// Reads, Rewind; the roundtrip is byte-exact on every device.
#[test]
fn tape_sequence() {
    let r = run(&tape_spec(Operation::Roundtrip, 2), WorldConfig::new(70));
    assert_clean(&r);
    assert!(all_succeeded(&r));
    for dev in ["dev0", "dev1"] {
        let cmds = tape_script(&r, dev);
        let backup = [
            "VDC_Rewind",
            "VDC_GetPosition",
            "VDC_Write",
            "VDC_WriteMark",
            "VDC_Write",
            "VDC_WriteMark",
            "VDC_Flush",
            "VDC_Rewind",
        ];
        let restore = [
            "VDC_Rewind",
            "VDC_GetPosition",
            "VDC_Read",
            "VDC_SkipMarks",
            "VDC_Read",
            "VDC_Rewind",
        ];
        let want: Vec<&str> = backup.iter().chain(&restore).copied().collect();
        assert_eq!(cmds, want, "{dev}");
    }
    assert!(cites(&r, id::TAPE_SEQUENCE));
    assert!(cites(&r, id::RESTORE_BYTE_IDENTICAL));
    // A restore of media seeded without filemarks: the client lays them
    // where the tape BACKUP puts them.
    let r = run(&tape_spec(Operation::Restore, 1), WorldConfig::new(71));
    assert_clean(&r);
    assert!(all_succeeded(&r), "{}", msgs(outcome(&r, 0)));
}

/// `tape.filemarks`: the client keeps a filemark per VDC_WriteMark (after
/// the header and at the end of the data) and SkipMarks passes it; a
/// pipe-like client is sent no tape command; a SkipMarks answered with an
/// error fails the RESTORE with Msg 18210.
#[test]
fn tape_filemarks() {
    let s = tape_spec(Operation::Roundtrip, 1);
    let r = run(&s, WorldConfig::new(72));
    assert!(all_succeeded(&r));
    let rec = s.backup_layout();
    assert_eq!(
        r.client.marks[0],
        vec![65536, rec.families[0].media_len()],
        "after the header and at the end"
    );
    assert!(cites(&r, id::TAPE_FILEMARKS));
    let fault = Fault::CompleteWithError {
        code: Win32::ERROR_NO_DATA_DETECTED,
    };
    let r = run_faults(
        &s,
        vec![on(
            0,
            1,
            Some(CommandCode::SkipMarks),
            Phase::Restore,
            fault,
        )],
        72,
    );
    assert!(outcome(&r, 0).succeeded());
    let o = outcome(&r, 1);
    assert_eq!(o.reason, Some(FailReason::DeviceError));
    assert!(has_msg(o, 18210, "SkipMarks"), "{}", msgs(o));
    // Pipe-like: no tape command at all.
    let r = run(&spec(Operation::Roundtrip, 1, 6), WorldConfig::new(72));
    assert!(r.client.marks.is_empty());
    assert!(
        !fetched(&r, "dev0")
            .iter()
            .any(|c| c == "VDC_WriteMark" || c == "VDC_Rewind")
    );
}

/// `tape.position`: GetPosition after Rewind reports block address 0 and
/// the server traces it; positions count BLOCKSIZE blocks (module
/// `vdi_model::tape`).
#[test]
fn tape_position() {
    let r = run(&tape_spec(Operation::Backup, 1), WorldConfig::new(73));
    assert_clean(&r);
    let p = events(&r, "server", "Position");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].detail.contains("block address 0"), "{p:?}");
    assert!(cites(&r, id::TAPE_POSITION));
}

/// `tape.media-name`: BACKUP WITH MEDIANAME writes the name into the media
/// header and a RESTORE WITH the same MEDIANAME succeeds; a RESTORE naming
/// another (here of media made without a name) fails with Msg 3264 once
/// the header is read.
#[test]
fn tape_media_name() {
    let mut s = spec(Operation::Roundtrip, 1, 4);
    s.plan.tape.media_name = Some("weekly".into());
    let r = run(&s, WorldConfig::new(75));
    assert_clean(&r);
    assert!(all_succeeded(&r));
    let header = r.client.media[0].extents()[0].clone();
    let Extent::Header { header, .. } = header else {
        panic!("the media begin with a header: {header:?}");
    };
    assert_eq!(header.media_name, "weekly");
    let mut other = spec(Operation::Restore, 1, 4);
    other.plan.tape.media_name = Some("monthly".into());
    let r = run(&other, WorldConfig::new(75));
    let o = outcome(&r, 0);
    assert_eq!(o.reason, Some(FailReason::BadMedia));
    assert!(has_msg(o, 3264, "MEDIANAME 'monthly'"), "{}", msgs(o));
    assert!(cites(&r, id::MEDIA_HEADER));
}

/// `tape.end-rewind`: REWIND / UNLOAD (the defaults) end a statement
/// with VDC_Rewind on each tape device; NOREWIND on the BACKUP and
/// NOUNLOAD on the RESTORE leave the tapes where they are.
#[test]
fn tape_end_rewind() {
    let mut s = tape_spec(Operation::Roundtrip, 1);
    s.plan.tape.rewind = false;
    s.plan.tape.unload = false;
    let r = run(&s, WorldConfig::new(74));
    assert_clean(&r);
    assert!(all_succeeded(&r));
    let cmds = tape_script(&r, "dev0");
    assert_eq!(
        cmds.iter().filter(|c| *c == "VDC_Rewind").count(),
        2,
        "{cmds:?}"
    );
    assert_eq!(events(&r, "server", "NoRewind").len(), 2);
    assert!(cites(&r, id::TAPE_END_REWIND));
}

/// The server's profile with `tape-restore-positioning = address`.
fn by_address() -> Profile {
    Profile {
        tape_restore_positioning: TapeRestorePositioning::Address,
        ..Profile::default()
    }
}

/// `tape.set-position`: under `tape-restore-positioning = address` a tape
/// BACKUP asks VDC_GetPosition after the header's filemark (the data set's
/// block address, 65536 / 512 + 1 = 129) and the RESTORE goes there with
/// VDC_SetPosition instead of VDC_SkipMarks, byte for byte; a client that
/// claims the move without making it (flaw ignores-set-position) reads the
/// filemark and the RESTORE fails. The default profile sends no
/// SetPosition.
#[test]
fn tape_set_position() {
    let s = tape_spec(Operation::Roundtrip, 2);
    let mut cfg = WorldConfig::new(76);
    cfg.profile = by_address();
    let r = run(&s, cfg.clone());
    assert_clean(&r);
    assert!(all_succeeded(&r));
    let cmds = tape_script(&r, "dev1");
    let want = [
        "VDC_Rewind",
        "VDC_GetPosition",
        "VDC_Write",
        "VDC_WriteMark",
        "VDC_GetPosition",
        "VDC_Write",
        "VDC_WriteMark",
        "VDC_Flush",
        "VDC_Rewind",
        "VDC_Rewind",
        "VDC_GetPosition",
        "VDC_Read",
        "VDC_SetPosition",
        "VDC_Read",
        "VDC_Rewind",
    ];
    assert_eq!(cmds, want, "{cmds:?}");
    let p = events(&r, "server", "Position");
    assert!(
        p.iter()
            .any(|e| e.detail.contains("block address 129 after VDC_SetPosition")),
        "{p:?}"
    );
    assert!(cites(&r, id::TAPE_SET_POSITION));
    // A client that does not move reads the filemark after the header.
    let mut flawed = s.clone();
    flawed.flaws.insert(Flaw::IgnoresSetPosition);
    let r = run(&flawed, cfg.clone());
    assert!(outcome(&r, 0).succeeded());
    let o = outcome(&r, 1);
    assert!(!o.succeeded(), "{}", msgs(o));
    // The default positions by marks.
    let r = run(&s, WorldConfig::new(76));
    assert!(all_succeeded(&r));
    assert!(!fetched(&r, "dev0").iter().any(|c| c == "VDC_SetPosition"));
    assert!(!cites(&r, id::TAPE_SET_POSITION));
}

/// `tape.next-volume`: a tape client whose tapes hold 100 KiB backs up and
/// restores over two devices: each full tape answers ERROR_END_OF_MEDIA,
/// the server clears the error, sends VDC_Load and writes on; the closing
/// filemark is on the last tape; the RESTORE reads each tape to its end
/// (ERROR_NO_DATA_DETECTED), sends VDC_Load and reads on; byte for byte.
/// A VDC_Load answered with an error (no next tape) fails the RESTORE, and
/// a tape without a capacity has one volume.
#[test]
fn tape_next_volume() {
    let mut s = tape_spec(Operation::Roundtrip, 2);
    s.volume_bytes = 100 * 1024;
    let r = run(&s, WorldConfig::new(77));
    assert_clean(&r);
    assert!(all_succeeded(&r), "{}", msgs(outcome(&r, 1)));
    let family = s.backup_layout().families[0].media_len();
    let volumes = family.div_ceil(100 * 1024);
    assert!(volumes > 1);
    for dev in ["dev0", "dev1"] {
        let cmds = tape_script(&r, dev);
        let loads = cmds.iter().filter(|c| *c == "VDC_Load").count() as u64;
        assert_eq!(loads, 2 * (volumes - 1), "{dev}: {cmds:?}");
        let backup = &cmds[..cmds.iter().position(|c| c == "VDC_Flush").unwrap()];
        let eom = backup.iter().position(|c| c == "VDC_ClearError").unwrap();
        assert_eq!(backup[eom + 1], "VDC_Load", "{backup:?}");
    }
    assert_eq!(r.client.volumes[0].len() as u64, volumes - 1);
    assert_eq!(
        r.client.marks[0],
        vec![65536, family],
        "{:?}",
        r.client.marks
    );
    assert!(cites(&r, id::TAPE_NEXT_VOLUME));
    assert!(!cites(&r, id::MEDIA_NEXT_VOLUME));
    assert!(cites(&r, id::RESTORE_BYTE_IDENTICAL));
    let fault = Fault::CompleteWithError {
        code: Win32::ERROR_NO_DATA_DETECTED,
    };
    // (Fetches are counted over both statements: the RESTORE's first Load
    // follows the BACKUP's volumes - 1.)
    let r = run_faults(
        &s,
        vec![on(
            0,
            volumes,
            Some(CommandCode::Load),
            Phase::Restore,
            fault,
        )],
        77,
    );
    assert!(outcome(&r, 0).succeeded());
    let o = outcome(&r, 1);
    assert_eq!(o.reason, Some(FailReason::DeviceError), "{}", msgs(o));
    let r = run(&tape_spec(Operation::Roundtrip, 1), WorldConfig::new(77));
    assert!(all_succeeded(&r));
    assert!(!fetched(&r, "dev0").iter().any(|c| c == "VDC_Load"));
}

/// `tape.skip-blocks`: under `tape-restore-positioning = blocks` a tape
/// RESTORE reads the header's identifying 4 KiB, skips its other 120 blocks
/// (BLOCKSIZE 512) with VDC_SkipBlocks, requires the header's filemark
/// address (128) from VDC_GetPosition and crosses the mark with
/// VDC_SkipMarks 1, byte for byte; a client that claims the skip and stays
/// put (flaw ignores-skip-blocks) reports address 8 and the RESTORE fails
/// as bad media. The BACKUP is the one of the default profile, which sends
/// no VDC_SkipBlocks.
#[test]
fn tape_skip_blocks() {
    let s = tape_spec(Operation::Roundtrip, 2);
    let mut cfg = WorldConfig::new(77);
    cfg.profile = Profile {
        tape_restore_positioning: TapeRestorePositioning::Blocks,
        ..Profile::default()
    };
    let r = run(&s, cfg.clone());
    assert_clean(&r);
    assert!(all_succeeded(&r));
    let cmds = tape_script(&r, "dev1");
    let want = [
        "VDC_Rewind",
        "VDC_GetPosition",
        "VDC_Write",
        "VDC_WriteMark",
        "VDC_Write",
        "VDC_WriteMark",
        "VDC_Flush",
        "VDC_Rewind",
        "VDC_Rewind",
        "VDC_GetPosition",
        "VDC_Read",
        "VDC_SkipBlocks",
        "VDC_GetPosition",
        "VDC_SkipMarks",
        "VDC_Read",
        "VDC_Rewind",
    ];
    assert_eq!(cmds, want, "{cmds:?}");
    let p = events(&r, "server", "Position");
    assert!(
        p.iter()
            .any(|e| e.detail.contains("block address 128 after VDC_SkipBlocks")),
        "{p:?}"
    );
    assert!(cites(&r, id::TAPE_SKIP_BLOCKS));
    // A client that does not move is caught by the address.
    let mut flawed = s.clone();
    flawed.flaws.insert(Flaw::IgnoresSkipBlocks);
    let r = run(&flawed, cfg.clone());
    assert!(outcome(&r, 0).succeeded());
    let o = outcome(&r, 1);
    assert!(!o.succeeded(), "{}", msgs(o));
    assert_eq!(o.reason, Some(FailReason::BadMedia), "{}", msgs(o));
    let p = events(&r, "server", "Position");
    assert!(
        p.iter()
            .any(|e| e.detail.contains("block address 8 after VDC_SkipBlocks")),
        "{p:?}"
    );
    // The default positions by marks.
    let r = run(&s, WorldConfig::new(77));
    assert!(all_succeeded(&r));
    assert!(!fetched(&r, "dev0").iter().any(|c| c == "VDC_SkipBlocks"));
    assert!(!cites(&r, id::TAPE_SKIP_BLOCKS));
}

// ======================================================================
// RESTORE
// ======================================================================

/// `restore.read-sizes`: reads are multiples of BLOCKSIZE within
/// BLOCKSIZE..=MAXTRANSFERSIZE, need not match the backup's writes, and the
/// restore still verifies.
#[test]
fn restore_read_sizes() {
    let mut s = spec(Operation::Roundtrip, 2, 16);
    s.options.block_size = 4096;
    s.options.max_transfer_size = 256 * 1024;
    s.plan.read_sizes = ReadSizes::Seeded(9);
    let r = run(&s, WorldConfig::new(48));
    assert_clean(&r);
    assert!(all_succeeded(&r), "{}", msgs(outcome(&r, 1)));
    let sizes: Vec<u64> = events(&r, "server", "SendCommand")
        .iter()
        .filter(|e| e.detail.contains("VDC_Read"))
        .map(|e| field(&e.detail, "size").unwrap())
        .collect();
    assert!(sizes.len() > 4);
    assert!(
        sizes
            .iter()
            .all(|&n| n % 4096 == 0 && (4096..=256 * 1024).contains(&n))
    );
    assert!(
        sizes
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1,
        "{sizes:?}"
    );
    for ix in 0..50 {
        let n = vdi_model::server::read_size(&ReadSizes::Fixed(1000), 512, 65536, 0, ix);
        assert_eq!(n, 512, "clamped and rounded down to a block");
    }
}

/// `restore.eof`: a Read completed with ERROR_HANDLE_EOF (or
/// ERROR_NO_DATA_DETECTED) and a short count ends the family normally.
#[test]
fn restore_eof() {
    let mut s = spec(Operation::Roundtrip, 2, 5);
    s.plan.data_bytes = 5 * CHUNK + 1024;
    let mut cfg = WorldConfig::new(49);
    cfg.profile.restore_overread = true;
    let r = run(&s, cfg);
    assert_clean(&r);
    assert!(all_succeeded(&r), "{}", msgs(outcome(&r, 1)));
    assert!(!events(&r, "server", "EndOfStream").is_empty());
    let eofs = events(&r, "", "CompleteCommand")
        .iter()
        .filter(|e| e.detail.contains("ERROR_HANDLE_EOF"))
        .count();
    assert!(eofs >= 1);
}

/// `restore.truncated`: a stream shorter than the backup fails the RESTORE
/// (Msg 3203 "38"); a client that waits for more data instead of answering
/// EOF is bounded by the watchdog, not left hanging.
#[test]
fn restore_truncated() {
    let s = spec(Operation::Roundtrip, 1, 6);
    let r = run_plan(&s, "truncated-media", 50);
    assert_clean(&r);
    let o = outcome(&r, 1);
    assert_eq!(o.reason, Some(FailReason::BadMedia));
    assert!(
        has_msg(o, 3203, "38(Reached the end of the file.)"),
        "{}",
        msgs(o)
    );
    assert!(cites(&r, id::RESTORE_TRUNCATED));
    let mut s = s.clone();
    s.server_timeout_ms = 2_000;
    s.flaws.insert(Flaw::ReadsUntilFull);
    let r = run_plan(&s, "truncated-media", 50);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(outcome(&r, 1).status, Status::Failed);
    assert!(r.now_ms <= WorldConfig::new(0).budget_ms);
}

/// `media.header`: every family begins with its media header; a RESTORE
/// reads the headers first and restores what they describe, even media no
/// backup of this server made; an empty device fails with Msg 3254.
#[test]
fn media_header() {
    let s = spec(Operation::Roundtrip, 2, 5);
    let r = run(&s, WorldConfig::new(47));
    assert_clean(&r);
    assert!(all_succeeded(&r), "{}", msgs(outcome(&r, 1)));
    assert!(cites(&r, id::MEDIA_HEADER));
    assert_eq!(events(&r, "server", "MediaFound").len(), 1);
    assert_eq!(outcome(&r, 1).media.as_deref(), Some(&s.backup_layout()));

    // Media another server made (its own number and set); this world's
    // history is empty.
    let restore_from = |media: Vec<Content>| {
        let mut d = Driver::new(WorldConfig::new(47), Trace::recording());
        d.w.process().media = media;
        let ctl = d.w.add_thread("ctl", None);
        let t = d.w.add_thread("dev0", Some(0));
        d.create(ctl, SET, pipe(1));
        d.w.send_statement(statement(StatementKind::RestoreDatabase, SET, 1, 0));
        d.get_configuration(ctl);
        let h = handle(&d.open(ctl, SET));
        let end = d.serve(t, h);
        d.call(ctl, Call::Close);
        (end, d.w.wait_statement(Timeout::Infinite).unwrap().unwrap())
    };
    let mut rec = vdi_model::statement::BackupRecord::plan(
        "elsewhere",
        StatementKind::BackupDatabase,
        9,
        1,
        3 * CHUNK,
        &vdi_spec::TransferOptions::default(),
    );
    rec.meta.server = "OTHER".into();
    let (end, o) = restore_from(rec.media());
    assert_eq!(end, Hresult::VD_E_CLOSE);
    assert!(o.succeeded(), "{}", msgs(&o));
    assert_eq!(o.media.as_deref(), Some(&rec));
    let (_, o) = restore_from(Vec::new());
    assert_eq!(o.reason, Some(FailReason::NoBackup));
    assert_eq!(o.messages[0].number, 3254, "{}", msgs(&o));
}

/// `restore.byte-identical`: what RESTORE reads back must be what BACKUP
/// wrote; wrong bytes fail it (Msg 3241).
#[test]
fn restore_byte_identical() {
    let s = spec(Operation::Roundtrip, 3, 9);
    let r = run(&s, WorldConfig::new(51));
    assert!(all_succeeded(&r));
    let rec = s.backup_layout();
    for (k, m) in r.client.media.iter().enumerate() {
        assert_eq!(*m, rec.family_media(k));
    }
    assert_eq!(outcome(&r, 1).bytes, rec.media_bytes());
    // Garbage instead of the family.
    let one = spec(Operation::Restore, 1, 2);
    let mut cfg = WorldConfig::new(51);
    cfg.profile = clear_then_abort();
    cfg.seed_backups.push(one.backup_layout());
    let mut d = Driver::new(cfg, Trace::hashing());
    let ctl = d.w.add_thread("ctl", None);
    let t = d.w.add_thread("dev0", Some(0));
    d.create(ctl, SET, pipe(1));
    d.w.send_statement(statement(StatementKind::RestoreDatabase, SET, 1, 0));
    assert_eq!(d.get_configuration(ctl).code, Hresult::NOERROR);
    let h = handle(&d.open(ctl, SET));
    let k = common::command(&d.get_command(t, h));
    let garbage = Content::from(vec![vdi_model::content::Extent::Garbage {
        len: u64::from(k.size),
    }]);
    d.call(
        t,
        Call::CompleteCommand {
            dev: h,
            position: 0,
            code: Win32::ERROR_SUCCESS,
            bytes: u64::from(k.size),
            data: garbage,
            cmd: k,
        },
    );
    let o = d.w.wait_statement(Timeout::Infinite).unwrap().unwrap();
    assert_eq!(o.reason, Some(FailReason::BadMedia));
    assert!(has_msg(&o, 3241, "incorrectly formed"), "{}", msgs(&o));
}

/// `restore.early-close`: RESTORE HEADERONLY reads a prefix of device 0 and
/// closes every device before EOF: the client accepts VD_E_CLOSE as a
/// normal end, and the object is reused afterwards.
#[test]
fn restore_early_close() {
    let mut s = spec(Operation::Roundtrip, 2, 8);
    s.restore_kind = StatementKind::RestoreHeaderOnly;
    let r = run(&s, WorldConfig::new(52));
    assert_clean(&r);
    assert!(all_succeeded(&r), "{}", msgs(outcome(&r, 1)));
    assert_eq!(device_ends(&r), vec![Some(Hresult::VD_E_CLOSE); 2]);
    assert_eq!(outcome(&r, 1).bytes, 64 * 1024, "the metadata prefix");
    assert!(cites(&r, id::RESTORE_EARLY_CLOSE));
}

/// `restore.report-actual-bytes`: a Read completion must report the bytes
/// actually transferred; claiming a full read with fewer bytes is flagged
/// and fails the restore.
#[test]
fn restore_report_actual_bytes() {
    let s = spec(Operation::Restore, 1, 2);
    let mut cfg = WorldConfig::new(53);
    cfg.profile = clear_then_abort();
    cfg.seed_backups.push(s.backup_layout());
    let mut d = Driver::new(cfg, Trace::recording());
    let ctl = d.w.add_thread("ctl", None);
    let t = d.w.add_thread("dev0", Some(0));
    d.create(ctl, SET, pipe(1));
    d.w.send_statement(statement(StatementKind::RestoreDatabase, SET, 1, 0));
    d.get_configuration(ctl);
    let h = handle(&d.open(ctl, SET));
    let k = common::command(&d.get_command(t, h));
    let fam = s.backup_layout().families[0];
    d.call(
        t,
        Call::CompleteCommand {
            dev: h,
            position: 0,
            code: Win32::ERROR_SUCCESS,
            bytes: u64::from(k.size),
            data: Content::stream(fam.origin, 0, 512),
            cmd: k,
        },
    );
    let o = d.w.wait_statement(Timeout::Infinite).unwrap().unwrap();
    assert_eq!(o.status, Status::Failed);
    let r = d.w.finish_driven();
    assert!(cites(&r, id::RESTORE_REPORT_ACTUAL_BYTES));
}

// ======================================================================
// Striping
// ======================================================================

/// `stripe.shared-buffers`: BUFFERCOUNT buffers are shared by all devices:
/// with 3 buffers over 4 devices no command ever holds a 4th buffer.
#[test]
fn stripe_shared_buffers() {
    let mut s = spec(Operation::Roundtrip, 4, 12);
    s.options.buffer_count = Some(3);
    let r = run(&s, WorldConfig::new(54));
    assert_clean(&r);
    assert!(all_succeeded(&r));
    let bufs: std::collections::BTreeSet<u64> = events(&r, "server", "SendCommand")
        .iter()
        .filter_map(|e| field(&e.detail, "buf"))
        .collect();
    assert_eq!(bufs.into_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
    let req = events(&r, "server", "RequestBuffers")[0];
    assert!(
        req.detail
            .contains("count=3 size=65536 shared by 4 devices"),
        "{}",
        req.detail
    );
}

/// `stripe.default-buffer-count`: without BUFFERCOUNT the server uses the
/// profile's count per device.
#[test]
fn stripe_default_buffer_count() {
    let s = spec(Operation::Backup, 3, 6);
    let mut cfg = WorldConfig::new(55);
    cfg.profile.default_buffer_count_per_device = 2;
    let r = run(&s, cfg);
    assert!(all_succeeded(&r));
    assert_eq!(r.client.config.unwrap().buffer_area_size, 6 * 65536);
    assert!(cites(&r, id::STRIPE_DEFAULT_BUFFER_COUNT));
}

/// `stripe.device-count-mismatch`: VIRTUAL_DEVICE clauses ≠ deviceCount
/// fails the statement and aborts the set before configuration (the client
/// is not left waiting); a tolerant profile uses the devices both know.
#[test]
fn stripe_device_count_mismatch() {
    let mut d = Driver::new(WorldConfig::new(56), Trace::recording());
    let ctl = d.w.add_thread("ctl", None);
    d.create(ctl, SET, pipe(2));
    d.w.send_statement(statement(StatementKind::BackupDatabase, SET, 3, 4 * CHUNK));
    assert_eq!(d.get_configuration(ctl).code, Hresult::VD_E_ABORT);
    let o = d.w.wait_statement(Timeout::Infinite).unwrap().unwrap();
    assert_eq!(o.reason, Some(FailReason::DeviceCountMismatch));
    let mut cfg = WorldConfig::new(56);
    cfg.profile.device_count_mismatch_fails = false;
    let mut d = Driver::new(cfg, Trace::recording());
    let ctl = d.w.add_thread("ctl", None);
    d.create(ctl, SET, pipe(2));
    d.w.send_statement(statement(StatementKind::BackupDatabase, SET, 3, 4 * CHUNK));
    assert_eq!(d.get_configuration(ctl).code, Hresult::NOERROR);
    assert_eq!(d.w.process().config.unwrap().device_count, 2);
}

/// `stripe.distribution`: the stream is dealt round-robin over the devices
/// in MAXTRANSFERSIZE chunks; each family is what its device received.
#[test]
fn stripe_distribution() {
    let mut s = spec(Operation::Backup, 3, 7);
    s.plan.data_bytes = 7 * CHUNK + 1024;
    let r = run(&s, WorldConfig::new(57));
    assert!(all_succeeded(&r));
    let rec = s.backup_layout();
    let lens: Vec<u64> = rec.families.iter().map(|f| f.len).collect();
    assert_eq!(lens, vec![3 * CHUNK, 2 * CHUNK + 1024, 2 * CHUNK]);
    for (k, (m, f)) in r.client.media.iter().zip(&rec.families).enumerate() {
        assert_eq!(*m, rec.family_media(k), "dev{k}");
        assert_eq!(r.client.devices[k].bytes, f.media_len());
    }
}

// ======================================================================
// Commands
// ======================================================================

/// `command.not-supported`: a command the client cannot perform is
/// completed with ERROR_NOT_SUPPORTED and the server carries on.
#[test]
fn command_not_supported() {
    let mut s = spec(Operation::Backup, 2, 4);
    s.plan.extra_commands = vec![
        ExtraCommand {
            dev: 0,
            after_data_commands: 1,
            code: CommandCode::FileInfoBegin,
        },
        ExtraCommand {
            dev: 1,
            after_data_commands: 0,
            code: CommandCode::GetError,
        },
    ];
    let r = run(&s, WorldConfig::new(58));
    assert_clean(&r);
    assert!(all_succeeded(&r), "{}", msgs(outcome(&r, 0)));
    let answered = events(&r, "", "CompleteCommand")
        .iter()
        .filter(|e| e.detail.contains("ERROR_NOT_SUPPORTED"))
        .count();
    assert_eq!(answered, 2);
    assert!(cites(&r, id::COMMAND_NOT_SUPPORTED));
}

/// `command.unanswered`: a command never completed (flaw
/// ignores-unknown-commands) stalls the device: the watchdog aborts after
/// 2 × serverTimeOut; with serverTimeOut 0 the run is bounded as a hang.
#[test]
fn command_unanswered() {
    let mut s = spec(Operation::Backup, 1, 4);
    s.server_timeout_ms = 3_000;
    s.flaws.insert(Flaw::IgnoresUnknownCommands);
    s.plan.extra_commands = vec![ExtraCommand {
        dev: 0,
        after_data_commands: 1,
        code: CommandCode::GetError,
    }];
    let r = run(&s, WorldConfig::new(59));
    assert_eq!(outcome(&r, 0).reason, Some(FailReason::Watchdog));
    assert!(cites(&r, id::COMMAND_UNANSWERED));
    s.server_timeout_ms = 0;
    let mut cfg = WorldConfig::new(59);
    cfg.budget_ms = 3_600_000;
    let r = run(&s, cfg);
    assert_ne!(r.end, End::Finished, "never finishes on its own");
    assert!(r.now_ms <= 3_600_000);
    assert!(!outcome(&r, 0).succeeded());
}

/// `command.short-transfer`: ERROR_SUCCESS with fewer bytes than asked
/// fails the statement (profile `fail`) or is reissued (`reissue`) when that
/// keeps the pipe's stream in order, which stays byte-exact; with later
/// writes already sent, `reissue` cannot keep the order and fails.
#[test]
fn command_short_transfer() {
    let mut s = spec(Operation::Roundtrip, 1, 4);
    s.flaws.insert(Flaw::ShortTransfers);
    let r = run(&s, WorldConfig::new(60));
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(outcome(&r, 0).reason, Some(FailReason::ShortTransfer));
    assert!(
        has_msg(outcome(&r, 0), 3202, "Only 32768 of 65536 bytes"),
        "{}",
        msgs(outcome(&r, 0))
    );
    // Under `reissue` with later writes already on the pipe, the remainder
    // could only land after them: the statement fails instead.
    let mut cfg = WorldConfig::new(60);
    cfg.profile.short_transfer = ShortTransfer::Reissue;
    let (mut d, ctl, ts, hs) = driven_backup(cfg, 1, 2, pipe(1));
    let k = common::command(&d.get_command(ts[0], hs[0]));
    d.w.process().media = vec![k.data.slice(0, 32768)];
    let r = d.call(
        ts[0],
        Call::CompleteCommand {
            dev: hs[0],
            position: 0,
            code: Win32::ERROR_SUCCESS,
            bytes: 32768,
            data: Content::Empty,
            cmd: k,
        },
    );
    assert_eq!(r.code, Hresult::NOERROR);
    d.call(ctl, Call::Close);
    let o = d.w.wait_statement(Timeout::Infinite).unwrap().unwrap();
    assert_eq!(o.reason, Some(FailReason::ShortTransfer), "{}", msgs(&o));

    // With one write in flight at a time the server writes the remainder again.
    let mut cfg = WorldConfig::new(60);
    cfg.profile.short_transfer = ShortTransfer::Reissue;
    cfg.profile.queue_depth_per_device = 1;
    let (mut d, ctl, ts, hs) = driven_backup(cfg, 1, 2, pipe(1));
    let k = common::command(&d.get_command(ts[0], hs[0]));
    assert_eq!(k.size, 65536);
    d.w.process().media = vec![k.data.slice(0, 32768)];
    let r = d.call(
        ts[0],
        Call::CompleteCommand {
            dev: hs[0],
            position: 0,
            code: Win32::ERROR_SUCCESS,
            bytes: 32768,
            data: Content::Empty,
            cmd: k,
        },
    );
    assert_eq!(r.code, Hresult::NOERROR);
    assert_eq!(d.serve(ts[0], hs[0]), Hresult::VD_E_CLOSE);
    d.call(ctl, Call::Close);
    let o = d.w.wait_statement(Timeout::Infinite).unwrap().unwrap();
    assert!(o.succeeded(), "{}", msgs(&o));
    // A pipe-like device is a sequential stream (position matters only with
    // VDF_RandomAccess, vdi-spec.md §5.2): the successful backup must have
    // left the family on it in order.
    let rec = spec(Operation::Backup, 1, 2).backup_layout();
    let media = d.w.process().media[0].clone();
    let r = d.w.finish_driven();
    assert!(cites(&r, id::COMMAND_SHORT_TRANSFER));
    assert_eq!(media.len(), rec.families[0].media_len());
    assert!(
        media == rec.family_media(0),
        "the reissued remainder must precede later data on a pipe: {media:?}"
    );
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

/// `command.pipe-only`: a pipe-like client is sent only Read, Write,
/// ClearError, Flush (and Complete when negotiated).
#[test]
fn command_pipe_only() {
    let mut s = spec(Operation::Roundtrip, 2, 6);
    s.request_complete = true;
    s.plan.mid_flushes = 1;
    let allowed = [
        "VDC_Read",
        "VDC_Write",
        "VDC_ClearError",
        "VDC_Flush",
        "VDC_Complete",
    ];
    for plan in ["none", "disk-full", "read-fault"] {
        let r = run_plan(&s, plan, 61);
        for d in &r.client.devices {
            for k in d.commands.keys() {
                assert!(allowed.contains(&k.as_str()), "{plan}: {k}");
            }
        }
    }
}

// ======================================================================
// VDConfig
// ======================================================================

/// `config.device-count`: deviceCount is 1..64.
#[test]
fn config_device_count() {
    for (n, ok) in [(0, false), (1, true), (64, true), (65, false)] {
        let (mut c, mut ns) = fresh();
        let r = c.create(SET, &VdConfig::client(n, Features::LikePipe), &mut ns);
        assert_eq!(r.code() == Hresult::NOERROR, ok, "deviceCount {n}");
    }
}

/// `config.features`: pipe, tape and disk modes (each optionally with
/// Removable where allowed, Discard, RequestComplete) are accepted; other
/// combinations and server-only bits are refused.
#[test]
fn config_features() {
    let ok = [
        Features::LikePipe,
        Features::Removable,
        Features::LikeTape,
        Features::LikeDisk,
        Features::LikeDisk.union(Features::Removable),
        Features::LikePipe.union(Features::Discard),
        Features::LikePipe.union(Features::RequestComplete),
    ];
    for f in ok {
        let (mut c, mut ns) = fresh();
        assert_eq!(
            c.create(SET, &VdConfig::client(1, f), &mut ns).code(),
            Hresult::NOERROR,
            "{f}"
        );
    }
    for f in [
        Features(0x2),
        Features::ReadMedia,
        Features::CompleteEnabled,
        Features(0x0400_0000),
    ] {
        let (mut c, mut ns) = fresh();
        assert_eq!(
            c.create(SET, &VdConfig::client(1, f), &mut ns).code(),
            Hresult::VD_E_NOTSUPPORTED,
            "{f}"
        );
    }
}

/// `config.alignment`: the client's alignment is 0 or a power of two up to
/// 64 KiB; the server's alignment is at least the block size.
#[test]
fn config_alignment() {
    for (a, ok) in [
        (0, true),
        (512, true),
        (65536, true),
        (3, false),
        (131072, false),
    ] {
        let mut cfg = pipe(1);
        cfg.alignment = a;
        let (mut c, mut ns) = fresh();
        assert_eq!(
            c.create(SET, &cfg, &mut ns).code() == Hresult::NOERROR,
            ok,
            "alignment {a}"
        );
    }
    let mut s = spec(Operation::Backup, 1, 2);
    s.options.block_size = 4096;
    let r = run(&s, WorldConfig::new(62));
    let begin = events(&r, "server", "BeginConfiguration")[0];
    assert!(begin.detail.contains("alignment=4096"), "{}", begin.detail);
}

/// `config.buffer-area`: bufferAreaSize is the whole shared area:
/// BUFFERCOUNT × (MAXTRANSFERSIZE + prefixZoneSize).
#[test]
fn config_buffer_area() {
    let mut set_cfg = pipe(2);
    set_cfg.prefix_zone_size = 512;
    let mut d = Driver::new(WorldConfig::new(63), Trace::hashing());
    let ctl = d.w.add_thread("ctl", None);
    d.create(ctl, SET, set_cfg);
    let mut stmt = statement(StatementKind::BackupDatabase, SET, 2, 4 * CHUNK);
    stmt.options.buffer_count = Some(6);
    stmt.options.max_transfer_size = 4 * 65536;
    d.w.send_statement(stmt);
    let r = d.get_configuration(ctl);
    let Value::Config(cfg) = r.value else {
        panic!("no configuration")
    };
    assert_eq!(cfg.buffer_area_size, 6 * (4 * 65536 + 512));
    assert_eq!(cfg.prefix_zone_size, 512);
}

// ======================================================================
// Server
// ======================================================================

/// `server.open-missing-set`: no set under the first VIRTUAL_DEVICE name:
/// the server's Open fails, the statement fails (Msg 3201), and the
/// client's GetConfiguration times out.
#[test]
fn server_open_missing_set() {
    let mut d = Driver::new(WorldConfig::new(64), Trace::recording());
    let ctl = d.w.add_thread("ctl", None);
    d.create(ctl, SET, pipe(1));
    d.w.send_statement(statement(
        StatementKind::BackupDatabase,
        "no-such-set",
        1,
        CHUNK,
    ));
    let r = d.call(
        ctl,
        Call::GetConfiguration {
            timeout: Timeout::Ms(2_000),
        },
    );
    assert_eq!(r.code, Hresult::VD_E_TIMEOUT);
    let o = d.w.wait_statement(Timeout::Infinite).unwrap().unwrap();
    assert_eq!(o.reason, Some(FailReason::OpenFailed));
    assert!(has_msg(&o, 3201, "'no-such-set'"), "{}", msgs(&o));
    let r = d.w.finish_driven();
    assert!(cites(&r, id::SERVER_OPEN_MISSING_SET));
}

/// `server.outcome-messages`: success prints 4035 and the 3014 line;
/// failure ends with 3013 after the cause.
#[test]
fn server_outcome_messages() {
    let r = run(&spec(Operation::Roundtrip, 1, 4), WorldConfig::new(65));
    for (stmt, o) in &r.statements {
        let verb = stmt.kind.verb();
        assert!(
            has_msg(o, 4035, "Processed 32 pages for database 'sales'"),
            "{}",
            msgs(o)
        );
        assert!(
            has_msg(o, 3014, &format!("{verb} successfully processed 32 pages")),
            "{}",
            msgs(o)
        );
        assert!(o.messages.iter().all(|m| !m.is_error()));
    }
    let r = run_plan(&spec(Operation::Backup, 1, 4), "disk-full", 65);
    let o = outcome(&r, 0);
    assert!(o.messages.len() >= 2);
    assert_eq!(o.messages.last().unwrap().number, 3013);
    assert!(o.messages.iter().all(|m| m.is_error()));
}

/// `server.send-command-rejected`: a device closed early while it still
/// had work: the next SendCommand would fail with ERROR_INVALID_HANDLE, and
/// the statement fails citing it.
#[test]
fn server_send_command_rejected() {
    let r = run_plan(&spec(Operation::Roundtrip, 2, 8), "early-close", 66);
    assert_clean(&r);
    let o = outcome(&r, 1);
    assert_eq!(o.reason, Some(FailReason::DeviceError));
    assert!(has_msg(o, 3203, "6(The handle is invalid.)"), "{}", msgs(o));
    assert!(cites(&r, id::SERVER_SEND_COMMAND_REJECTED));
}

/// `server.queue-depth`: the server keeps several commands in flight per
/// device: 4 by default, the profile's number otherwise.
#[test]
fn server_queue_depth() {
    for qd in [4u32, 2, 1] {
        let mut cfg = WorldConfig::new(67);
        cfg.profile.queue_depth_per_device = qd;
        let (mut d, _ctl, ts, hs) = driven_backup(cfg, 1, 8, pipe(1));
        d.w.sleep(10).unwrap();
        assert_eq!(drain(&mut d, ts[0], hs[0]).len(), qd as usize);
    }
}

/// `server.begin-configuration-order`: BeginConfiguration takes features,
/// blockSize, alignment, maxTransferSize, timeout in the header's order.
#[test]
fn server_begin_configuration_order() {
    let r = run(&spec(Operation::Backup, 1, 1), WorldConfig::new(68));
    let begin = events(&r, "server", "BeginConfiguration")[0];
    let keys: Vec<&str> = begin
        .detail
        .split(' ')
        .map(|kv| kv.split('=').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "features",
            "blockSize",
            "alignment",
            "maxTransferSize",
            "timeout"
        ]
    );
    assert_eq!(begin.clause, Some(id::SERVER_BEGIN_CONFIGURATION_ORDER));
}

/// `timeout.milliseconds`: GetConfiguration and GetCommand timeouts are
/// milliseconds of (virtual) time.
#[test]
fn timeout_milliseconds() {
    let (mut d, _ctl, ts, hs) = driven_backup(WorldConfig::new(69), 1, 1, pipe(1));
    d.w.sleep(10).unwrap();
    drain(&mut d, ts[0], hs[0]);
    let t = d.w.now();
    let r = d.call(
        ts[0],
        Call::GetCommand {
            dev: hs[0],
            timeout: Timeout::Ms(90),
        },
    );
    assert_eq!(r.code, Hresult::VD_E_TIMEOUT);
    assert_eq!(d.w.now() - t, 90, "90 ms, not 90 s");
}

// ======================================================================
// The client transition table
// ======================================================================

/// Drives a fresh object into `s`; `n` devices.
fn in_state(s: ClientState, n: u32) -> (ClientSet, Ns, Vec<DeviceHandle>) {
    match s {
        ClientState::Dne => {
            let (c, ns) = fresh();
            (c, ns, Vec::new())
        }
        ClientState::Configurable => {
            let (c, ns) = created(n);
            (c, ns, Vec::new())
        }
        ClientState::Initializing => {
            let (c, ns) = initializing(n);
            (c, ns, Vec::new())
        }
        ClientState::Active => active(n),
        ClientState::NormallyTerminated => normally_terminated(n),
        ClientState::Abort => aborted(n),
    }
}

/// Calls `m` on `c` as a client would in that state; returns (code, the
/// cell the call reports, state after).
fn call_method(
    c: &mut ClientSet,
    ns: &mut Ns,
    hs: &[DeviceHandle],
    m: TableMethod,
) -> (Hresult, Option<(TableMethod, ClientState)>) {
    let h = hs.first().copied().unwrap_or(DeviceHandle {
        incarnation: c.incarnation().max(1),
        index: 0,
    });
    match m {
        TableMethod::Create => {
            let r = c.create("table-set", &pipe(1), ns);
            (r.code(), r.cell)
        }
        TableMethod::GetConfiguration => match c.get_configuration() {
            Blocking::Ready(r) => (r.code(), r.cell),
            Blocking::Pending => {
                let r = c.get_configuration_timeout();
                (r.code(), r.cell)
            }
        },
        TableMethod::OpenDevice => {
            let r = c.open_device(SET);
            (r.code(), r.cell)
        }
        TableMethod::GetCommand => {
            if c.state() == ClientState::Active {
                c.deliver(ToClient::Command(cmd(100, 0, CommandCode::Write)));
            }
            match c.get_command(h) {
                Blocking::Ready(r) => (r.code(), r.cell),
                Blocking::Pending => {
                    let r = c.get_command_timeout(false);
                    (r.code(), r.cell)
                }
            }
        }
        TableMethod::CompleteCommand => {
            let k = if c.state() == ClientState::Active {
                c.deliver(ToClient::Command(cmd(100, 0, CommandCode::Write)));
                ready(c.get_command(h)).result.unwrap()
            } else {
                cmd(100, 0, CommandCode::Write)
            };
            let r = complete(c, h, &k, Win32::ERROR_SUCCESS);
            (r.code(), r.cell)
        }
        TableMethod::SignalAbort => {
            let r = c.signal_abort();
            (r.code(), r.cell)
        }
        TableMethod::Close => {
            let r = c.close(ns);
            (r.code(), r.cell)
        }
    }
}

/// The 42 `table.*` cells (`table.create.dne` … `table.close.abort`): each of
/// the seven methods in each of the six states returns a code its cell
/// allows and moves to a state the cell allows with that code. The profile's
/// reconciliations of §4.2 are honoured: OpenDevice in Active with unopened
/// devices counts as Initializing (a 2-device set with one device open).
#[test]
fn client_table_cells() {
    let mut seen = std::collections::BTreeSet::new();
    for s in ClientState::ALL {
        for m in TableMethod::ALL {
            let (mut c, mut ns, hs) = in_state(s, 1);
            let (code, cell) = call_method(&mut c, &mut ns, &hs, m);
            let after = c.state();
            let want = vdi_spec::tables::client_cell(m, s);
            let (cm, cs) = cell.unwrap_or_else(|| panic!("{}: no cell reported", want.clause));
            assert_eq!(
                (cm, cs),
                (m, s),
                "{}: the call reports another cell",
                want.clause
            );
            assert!(
                want.allows(code),
                "{}: {} returned {code}, not allowed: {}",
                want.clause,
                m.name(),
                want.summary()
            );
            assert!(
                want.outcomes
                    .iter()
                    .any(|o| o.code == code && o.next.unwrap_or(s) == after),
                "{}: {code} left the set in {after:?}: {}",
                want.clause,
                want.summary()
            );
            seen.insert(want.clause);
        }
    }
    assert_eq!(seen.len(), 42);
    // §4.2.1: in Active with a device not yet open, OpenDevice is judged by
    // the Initializing cell.
    let (mut c, _ns) = initializing(2);
    c.open_device(SET).result.unwrap();
    let r = c.open_device("set-dev1");
    let cell = vdi_spec::tables::client_cell(TableMethod::OpenDevice, ClientState::Initializing);
    assert_eq!(
        r.cell,
        Some((TableMethod::OpenDevice, ClientState::Initializing)),
        "{}",
        cell.clause
    );
    assert!(cell.allows(r.code()), "{}", cell.clause);
    // And once all are open, the Active cell (VD_E_OPEN).
    let r = c.open_device(SET);
    let cell = vdi_spec::tables::client_cell(TableMethod::OpenDevice, ClientState::Active);
    assert_eq!(r.cell, Some((TableMethod::OpenDevice, ClientState::Active)));
    assert!(cell.allows(r.code()), "{}", cell.clause);
    // §4.2.2: VD_E_CLOSE is per device: GetCommand in Active on a closed
    // device of a 2-device set stays in Active.
    let (mut c, _ns, hs) = active(2);
    c.deliver(ToClient::CloseDevice { dev: 0 });
    let r = ready(c.get_command(hs[0]));
    let cell = vdi_spec::tables::client_cell(TableMethod::GetCommand, ClientState::Active);
    assert!(cell.allows(r.code()), "{}", cell.clause);
    assert_eq!(c.state(), ClientState::Active, "{}", cell.clause);
    // §4.2.4: Close in Active with open devices: VD_E_OPEN → DNE.
    let (mut c, mut ns, _) = active(2);
    let r = c.close(&mut ns);
    let cell = vdi_spec::tables::client_cell(TableMethod::Close, ClientState::Active);
    assert!(cell.allows(r.code()), "{}", cell.clause);
}

// ----------------------------------------------------------------------
// graded sessions (client obligations)
// ----------------------------------------------------------------------

/// A driven session whose calls are recorded as the library logs a
/// program's calls, for grading.
struct Logged {
    d: Driver,
    recs: Vec<CallRecord>,
    incarnation: u32,
}

impl Logged {
    fn new(cfg: WorldConfig) -> Logged {
        Logged {
            d: Driver::new(cfg, Trace::hashing()),
            recs: Vec::new(),
            incarnation: 0,
        }
    }

    /// Makes `call` on thread `t` and records it.
    fn call(&mut self, t: usize, call: Call) -> Reply {
        let start_ms = self.d.w.now();
        let (method, args, on_device) = described(&call);
        let r = self.d.call(t, call);
        if matches!(method, Api::Create) && r.code == Hresult::NOERROR {
            self.incarnation += 1;
        }
        let value = match &r.value {
            Value::Command(c) => Some(Produced::Command(CommandView::of(c))),
            Value::Config(c) => Some(Produced::Config(ConfigView::of(c))),
            Value::Device(h) => Some(Produced::Device(h.index)),
            _ => None,
        };
        let seq = self.recs.len() as u64 + 1;
        self.recs.push(CallRecord {
            pid: 1,
            seq,
            after: seq - 1,
            thread: t as u64 + 1,
            object: 1,
            incarnation: on_device.unwrap_or(self.incarnation),
            start_ms,
            end_ms: self.d.w.now(),
            method,
            args,
            ret: Code::of(r.code),
            value,
            block_modified: (method == Api::CompleteCommand)
                .then_some(r.clause == Some(id::COMPLETE_COMMAND_READ_ONLY_BLOCK)),
            clause: r.clause.map(String::from),
        });
        r
    }

    /// Serves `dev` until GetCommand returns no command, as the driver's
    /// perfect client does; returns that code.
    fn serve(&mut self, t: usize, dev: DeviceHandle) -> Hresult {
        loop {
            let r = self.call(
                t,
                Call::GetCommand {
                    dev,
                    timeout: Timeout::Ms(10_000),
                },
            );
            let Value::Command(c) = r.value else {
                return r.code;
            };
            let bytes = if c.code.has_buffer() {
                u64::from(c.size)
            } else {
                0
            };
            self.d.w.process().media.resize(1, Content::Empty);
            self.d.w.process().media[0].append(&c.data);
            let done = Call::CompleteCommand {
                dev,
                position: c.position,
                cmd: c,
                code: Win32::ERROR_SUCCESS,
                bytes,
                data: Content::Empty,
            };
            assert_eq!(self.call(t, done).code, Hresult::NOERROR);
        }
    }
}

/// The log's method, arguments and (for a device call) the device's
/// incarnation of `call`.
fn described(call: &Call) -> (Api, Args, Option<u32>) {
    let mut a = Args::default();
    let wait = |t: &Timeout| {
        let raw = match t {
            Timeout::Ms(ms) => *ms as i64,
            Timeout::Infinite => -1,
        };
        Some(TimeoutArg::new(*t, raw))
    };
    let (m, dev) = match call {
        Call::Create { name, cfg } => {
            a.name = Some(name.clone());
            a.config = Some(ConfigView::of(cfg));
            (Api::Create, None)
        }
        Call::GetConfiguration { timeout } => {
            a.timeout = wait(timeout);
            (Api::GetConfiguration, None)
        }
        Call::OpenDevice { name } => {
            a.name = Some(name.clone());
            (Api::OpenDevice, None)
        }
        Call::Close => (Api::Close, None),
        Call::SignalAbort => (Api::SignalAbort, None),
        Call::GetCommand { dev, timeout } => {
            a.device = Some(dev.index);
            a.timeout = wait(timeout);
            (Api::GetCommand, Some(dev.incarnation))
        }
        Call::CompleteCommand {
            dev,
            cmd,
            code,
            bytes,
            position,
            ..
        } => {
            a.device = Some(dev.index);
            a.command = Some(CommandView::of(cmd));
            a.completion = Some(CompletionArg::new(*code, *bytes, *position));
            (Api::CompleteCommand, Some(dev.incarnation))
        }
        other => panic!("not logged by this test: {other:?}"),
    };
    (m, a, dev)
}

fn outcomes(r: &RunResult) -> Vec<Outcome> {
    r.statements.iter().map(|(_, o)| o.clone()).collect()
}

/// What the runner knows: these statements' outcomes and the program's end.
fn graded_context(outcomes: Vec<Outcome>, end: ProgramEnd) -> Context {
    Context {
        statements: outcomes
            .into_iter()
            .map(|outcome| StatementEnd {
                set: None,
                kind: None,
                outcome,
                ended_ms: None,
                mid_stream_flushes: 0,
            })
            .collect(),
        end,
        unimplemented_code: None,
    }
}

// ======================================================================
// Completeness of this file
// ======================================================================

/// Clauses of `vdi_spec::clauses::all()` the simulator does not stage, each
/// with the reason. Every other clause (the 42 `table.*` cells aside, which
/// `client_table_cells` covers) must appear verbatim in some test's doc
/// comment here or in `sim/model/src` or `sim/world/src`.
const NOT_STAGED: &[ClauseId] = &[
    // ABI facts: vtable slots, Linux symbols and struct layouts are checked
    // by the spec crate's layout tests and the stand-in library, not by a
    // model of the protocol.
    id::ABI_COM_VTABLES,
    id::ABI_LINUX_CLASSES,
    id::ABI_LAYOUTS,
    // The model has no OS security: no process DACL is modified.
    id::CREATE_DACL,
    // COM registration and administrator rights are outside the model: no
    // staged failure returns E_ACCESSDENIED or VD_E_SECURITY.
    id::CREATE_ACCESS_DENIED,
    // The model's Create does not read the process environment
    // (_VIRTUAL_SERVER_NAME_).
    id::CREATE_LEGACY_ENV,
    // COM Release / C++ delete of interfaces is not modelled: handles are
    // plain values.
    id::CLOSE_RELEASE_AFTER_CLOSE,
];

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'
}

/// Whether `id` appears as a whole token in `text`.
fn mentions(text: &str, id: &str) -> bool {
    text.match_indices(id).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + id.len()..].chars().next();
        before.is_none_or(|c| !is_id_char(c))
            && after.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    })
}

/// The doc comments of every `#[test]` function in `src`.
fn test_docs(src: &str) -> Vec<String> {
    let mut docs = Vec::new();
    let mut block = String::new();
    for line in src.lines() {
        let l = line.trim();
        if let Some(d) = l.strip_prefix("///") {
            block.push_str(d);
            block.push('\n');
        } else if l == "#[test]" {
            docs.push(std::mem::take(&mut block));
        } else if l.starts_with("#[") {
            // Other attributes keep the block.
        } else {
            block.clear();
        }
    }
    docs
}

fn rust_sources(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("the model's and the world's sources are readable")
        .map(|e| e.expect("an entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&p).expect("a source file");
            out.push((p.display().to_string(), text));
        }
    }
}

/// Every clause the simulator implements has a test naming it in its doc
/// comment; every clause this file covers has a test function named after
/// it; the not-staged list holds only real, non-table clause ids.
#[test]
fn every_implemented_clause_has_a_test() {
    let own = include_str!("clauses.rs");
    let mut sources = vec![("sim/world/tests/clauses.rs".to_string(), own.to_string())];
    let sim = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    rust_sources(&sim.join("model/src"), &mut sources);
    rust_sources(&sim.join("world/src"), &mut sources);
    let docs: Vec<String> = sources.iter().flat_map(|(_, s)| test_docs(s)).collect();
    assert!(docs.len() > 100, "test doc comments found: {}", docs.len());
    let own_fns: Vec<&str> = own
        .lines()
        .filter_map(|l| l.trim().strip_prefix("fn "))
        .filter_map(|l| l.split('(').next())
        .collect();
    let catalog = vdi_spec::clauses::all();
    for id in NOT_STAGED {
        assert!(
            catalog.iter().any(|c| c.id == id.as_str()),
            "{id} is not a clause"
        );
        assert!(!id.as_str().starts_with("table."));
    }
    let mut missing = Vec::new();
    let mut unnamed = Vec::new();
    for c in catalog {
        if c.id.starts_with("table.") || NOT_STAGED.iter().any(|n| n.as_str() == c.id) {
            continue;
        }
        if !docs.iter().any(|d| mentions(d, c.id)) {
            missing.push(c.id);
        }
        let name = c.id.replace(['.', '-'], "_");
        if !own_fns.contains(&name.as_str()) {
            unnamed.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "clauses without a test doc comment: {missing:?}"
    );
    assert!(
        unnamed.is_empty(),
        "clauses without a test function here: {unnamed:?}"
    );
    // The table cells are covered by one table-driven test.
    let cells = catalog
        .iter()
        .filter(|c| c.id.starts_with("table."))
        .count();
    assert_eq!(cells, 42);
    assert!(own_fns.contains(&"client_table_cells"));
}

/// world.bounded: a run that reaches the scheduler's step bound without
/// finishing, hanging or spending its budget is reported as a violation
/// (the world never runs unbounded).
#[test]
fn world_bounded() {
    let mut cfg = WorldConfig::new(1);
    cfg.max_steps = 25;
    let r = run(&spec(Operation::Backup, 1, 8), cfg);
    assert_eq!(r.end, End::StepLimit);
    assert_eq!(r.steps, 25);
    assert!(
        r.violations.iter().any(|v| id::WORLD_BOUNDED == v.clause),
        "{:?}",
        r.violations
    );
}
