use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;
use vdi_model::msg::{CmdId, DevIx};
use vdi_spec::{CommandCode, Features};

/// Records what it is sent.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<ToServer>>);
impl Transport for Recorder {
    fn send(&self, msg: ToServer) {
        self.0.lock().unwrap().push(msg);
    }
}
struct Fixed(Arc<Recorder>);
impl Connector for Fixed {
    fn connect(&self, _rt: Weak<SetRuntime>, _set: &NewSet) -> Connection {
        Connection {
            transport: self.0.clone(),
            buffers: None,
        }
    }
}

/// A transport that answers every completion by calling back into the
/// runtime on the calling thread (re-entrancy: no deadlock allowed).
struct Echo(std::sync::Mutex<Option<Weak<SetRuntime>>>, AtomicUsize);
impl Transport for Echo {
    fn send(&self, msg: ToServer) {
        if let ToServer::Completed(c) = msg {
            let n = self.1.fetch_add(1, Ordering::SeqCst) as u64;
            let rt = self.0.lock().unwrap().clone().and_then(|w| w.upgrade());
            if let Some(rt) = rt {
                rt.deliver(ToClient::Command(cmd(100 + n, c.dev)));
            }
        }
    }
}

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::SeqCst)
    )
}

fn cmd(id: u64, dev: DevIx) -> Cmd {
    Cmd {
        id: CmdId(id),
        dev,
        code: CommandCode::Write,
        size: 512,
        position: 0,
        buffer: None,
        data: vdi_model::content::Content::Empty,
    }
}

fn runtime() -> (Arc<SetRuntime>, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let rt = SetRuntime::new(Arc::new(Profile::default()), Arc::new(Fixed(rec.clone())));
    (rt, rec)
}

/// A created set, configured with `n` devices, device 0 opened.
fn active(n: u32) -> (Arc<SetRuntime>, Arc<Recorder>, DeviceHandle, String) {
    let (rt, rec) = runtime();
    let name = unique("rt");
    let cfg = VdConfig::client(n, Features::LikePipe);
    rt.create(CreateKind::Create, &name, &cfg).result.unwrap();
    let devices = (0..n)
        .map(|i| {
            if i == 0 {
                name.clone()
            } else {
                format!("{name}-dev{i}")
            }
        })
        .collect();
    rt.deliver(ToClient::Configured { cfg, devices });
    rt.get_configuration(Timeout::Ms(0)).result.unwrap();
    let h = rt.open_device(&name).result.unwrap();
    (rt, rec, h, name)
}

/// get-configuration.timeout, get-command.poll: timeout 0 polls once.
#[test]
fn timeout_zero_polls() {
    let (rt, _) = runtime();
    let name = unique("poll");
    rt.create(
        CreateKind::Create,
        &name,
        &VdConfig::client(1, Features::LikePipe),
    )
    .result
    .unwrap();
    let r = rt.get_configuration(Timeout::Ms(0));
    assert_eq!(r.code(), Hresult::VD_E_TIMEOUT);
    assert_eq!(rt.state(), ClientState::Configurable, "stays Configurable");
    rt.close().result.unwrap();
    let (rt, _, h, _) = active(1);
    let r = rt.get_command(h, Timeout::Ms(0));
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_TIMEOUT, id::GET_COMMAND_POLL)
    );
}

/// get-command.timeout: a 50 ms wait lasts at least 50 ms (no upper
/// bound is asserted: the machine is noisy).
#[test]
fn timeout_50ms_elapses() {
    let (rt, _, h, _) = active(1);
    let t0 = Instant::now();
    let r = rt.get_command(h, Timeout::Ms(50));
    assert!(t0.elapsed() >= Duration::from_millis(50));
    assert_eq!(
        (r.code(), r.clause),
        (Hresult::VD_E_TIMEOUT, id::GET_COMMAND_TIMEOUT)
    );
    let t0 = Instant::now();
    let (rt2, _) = runtime();
    rt2.create(
        CreateKind::Create,
        &unique("cfg50"),
        &VdConfig::client(1, Features::LikePipe),
    )
    .result
    .unwrap();
    let r = rt2.get_configuration(Timeout::Ms(50));
    assert!(t0.elapsed() >= Duration::from_millis(50));
    assert_eq!(r.code(), Hresult::VD_E_TIMEOUT);
}

/// get-command.infinite: an infinite wait is woken by a message.
#[test]
fn infinite_wait_woken_by_message() {
    let (rt, _, h, _) = active(1);
    let rt2 = rt.clone();
    let t = thread::spawn(move || rt2.get_command(h, Timeout::Infinite));
    thread::sleep(Duration::from_millis(20));
    rt.deliver(ToClient::Command(cmd(7, 0)));
    let r = t.join().unwrap();
    assert_eq!(r.result.unwrap().id, CmdId(7));
    // And GetConfiguration, forever, woken by the configuration.
    let (rt, _) = runtime();
    let name = unique("cfginf");
    let cfg = VdConfig::client(1, Features::LikePipe);
    rt.create(CreateKind::Create, &name, &cfg).result.unwrap();
    let rt2 = rt.clone();
    let t = thread::spawn(move || rt2.get_configuration(Timeout::from_linux(-1)));
    thread::sleep(Duration::from_millis(20));
    rt.deliver(ToClient::Configured {
        cfg,
        devices: vec![name],
    });
    t.join().unwrap().result.unwrap();
}

/// get-command.abort: SignalAbort from another thread wakes a blocked
/// GetCommand with VD_E_ABORT; the server is told.
#[test]
fn signal_abort_wakes_blocked_get_command() {
    let (rt, rec, h, _) = active(2);
    let rt2 = rt.clone();
    let t = thread::spawn(move || rt2.get_command(h, Timeout::Infinite));
    thread::sleep(Duration::from_millis(20));
    rt.signal_abort().result.unwrap();
    assert_eq!(t.join().unwrap().code(), Hresult::VD_E_ABORT);
    assert!(rec.0.lock().unwrap().contains(&ToServer::Abort));
}

/// get-configuration.abort: SignalAbort wakes a blocked GetConfiguration.
#[test]
fn signal_abort_wakes_blocked_get_configuration() {
    let (rt, _) = runtime();
    rt.create(
        CreateKind::Create,
        &unique("cfgab"),
        &VdConfig::client(1, Features::LikePipe),
    )
    .result
    .unwrap();
    let rt2 = rt.clone();
    let t = thread::spawn(move || rt2.get_configuration(Timeout::Infinite));
    thread::sleep(Duration::from_millis(20));
    rt.signal_abort().result.unwrap();
    assert_eq!(t.join().unwrap().code(), Hresult::VD_E_ABORT);
}

/// close.invalidates-devices: Close from another thread wakes a blocked
/// GetCommand with the profile's use-after-close code.
#[test]
fn close_wakes_blocked_get_command() {
    let (rt, rec, h, name) = active(1);
    let rt2 = rt.clone();
    let t = thread::spawn(move || rt2.get_command(h, Timeout::Ms(60_000)));
    thread::sleep(Duration::from_millis(20));
    let r = rt.close();
    assert_eq!(r.code(), Hresult::VD_E_OPEN, "device still open");
    let r = t.join().unwrap();
    assert_eq!(r.code(), Profile::default().use_after_close_code);
    assert_eq!(r.clause, id::CLOSE_INVALIDATES_DEVICES);
    let sent = rec.0.lock().unwrap().clone();
    assert_eq!(sent, vec![ToServer::Abort, ToServer::Closed]);
    assert!(ProcessNamespace::lookup(&name).is_none(), "name released");
}

/// A transport that calls back into the runtime from `send` does not
/// deadlock, and many threads completing and fetching concurrently make
/// progress.
#[test]
fn reentrant_transport_and_concurrency_no_deadlock() {
    let echo = Arc::new(Echo(std::sync::Mutex::new(None), AtomicUsize::new(0)));
    struct Conn(Arc<Echo>);
    impl Connector for Conn {
        fn connect(&self, rt: Weak<SetRuntime>, _s: &NewSet) -> Connection {
            *self.0.0.lock().unwrap() = Some(rt);
            Connection {
                transport: self.0.clone(),
                buffers: None,
            }
        }
    }
    let rt = SetRuntime::new(Arc::new(Profile::default()), Arc::new(Conn(echo.clone())));
    let name = unique("echo");
    let n = 4u32;
    let cfg = VdConfig::client(n, Features::LikePipe);
    rt.create(CreateKind::Create, &name, &cfg).result.unwrap();
    let devices: Vec<String> = (0..n)
        .map(|i| {
            if i == 0 {
                name.clone()
            } else {
                format!("{name}-dev{i}")
            }
        })
        .collect();
    rt.deliver(ToClient::Configured {
        cfg,
        devices: devices.clone(),
    });
    rt.get_configuration(Timeout::Infinite).result.unwrap();
    let mut threads = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let h = rt.open_device(d).result.unwrap();
        rt.deliver(ToClient::Command(cmd(i as u64 + 1, i as DevIx)));
        let rt2 = rt.clone();
        threads.push(thread::spawn(move || {
            for _ in 0..200 {
                let c = rt2.get_command(h, Timeout::Infinite).result.unwrap();
                rt2.complete_command(h, &c, Win32::ERROR_SUCCESS, 512, 0)
                    .result
                    .unwrap();
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(echo.1.load(Ordering::SeqCst), 800);
    // Every device still has one command queued; Close with devices open.
    assert_eq!(rt.close().code(), Hresult::VD_E_OPEN);
}

/// Messages from an earlier incarnation are dropped.
#[test]
fn stale_incarnation_messages_dropped() {
    let (rt, _, _, name) = active(1);
    let old = rt.incarnation();
    rt.close();
    rt.create(
        CreateKind::Create,
        &name,
        &VdConfig::client(1, Features::LikePipe),
    )
    .result
    .unwrap();
    rt.deliver_from(
        old,
        ToClient::Configured {
            cfg: VdConfig::client(1, Features::LikePipe),
            devices: vec![name.clone()],
        },
    );
    assert_eq!(
        rt.get_configuration(Timeout::Ms(0)).code(),
        Hresult::VD_E_TIMEOUT
    );
    rt.close();
}
