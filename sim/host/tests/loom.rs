//! loom models of the stand-in runtime's races (issue 4, section 2).
//!
//! Built only with `--cfg loom`, where the runtime's lock and condition
//! variable are loom's and its clock is virtual (`sync::Clock`): a timeout
//! expires when a model's timer thread calls `SetRuntime::advance_clock`,
//! an explicit event loom interleaves with every other step.
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p vdi-standin --test loom --release
//! ```
//!
//! Every model runs with a preemption bound of at least 2
//! (`LOOM_MAX_PREEMPTIONS`, default 2, raised to 2 if lower) and checks
//! the clauses' results on every interleaving; a lost wakeup shows up as a
//! loom deadlock (every thread blocked), which fails the model.
//! `tests/loom_ci.rs` runs this suite from the normal test run (CI).
#![cfg(loom)]

use loom::thread;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use vdi_host::runtime::{
    Connection, Connector, CreateKind, NewSet, ProcessNamespace, SetRuntime, Transport,
};
use vdi_model::client::DeviceHandle;
use vdi_model::msg::{Cmd, CmdId, DevIx, Timeout, ToClient, ToServer};
use vdi_spec::id;
use vdi_spec::profile::CloseWithOpenDevices;
use vdi_spec::{ClientState, CommandCode, Features, Hresult, Profile, VdConfig, Win32};

// ----- harness ----------------------------------------------------------------------------

/// Runs `f` under loom with a preemption bound of at least 2, and prints
/// the bound, the number of interleavings explored and the time taken.
fn model<F>(name: &str, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut b = loom::model::Builder::new();
    let bound = b.preemption_bound.map_or(2, |p| p.max(2));
    b.preemption_bound = Some(bound);
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let t0 = std::time::Instant::now();
    b.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        f();
    });
    println!(
        "loom model {name}: preemption bound {bound}, {} interleavings, {:.2?}",
        runs.load(Ordering::Relaxed),
        t0.elapsed()
    );
}

/// Records what it is sent; optionally answers each completion of a device
/// with a command for another device, from inside `send` (a re-entrant
/// transport, as a server replying at once).
#[derive(Default)]
struct Server {
    sent: std::sync::Mutex<Vec<ToServer>>,
    rt: std::sync::Mutex<Option<Weak<SetRuntime>>>,
    /// `Some(dev)`: every completion is answered by a Write for `dev`.
    echo_to: Option<DevIx>,
    echoed: AtomicUsize,
}

impl Transport for Server {
    fn send(&self, msg: ToServer) {
        let reply = match (&msg, self.echo_to) {
            (ToServer::Completed(_), Some(dev)) => {
                let n = self.echoed.fetch_add(1, Ordering::SeqCst) as u64;
                Some(cmd(100 + n, dev))
            }
            _ => None,
        };
        self.sent.lock().unwrap().push(msg);
        if let Some(c) = reply {
            let rt = self.rt.lock().unwrap().clone().and_then(|w| w.upgrade());
            if let Some(rt) = rt {
                rt.deliver(ToClient::Command(c));
            }
        }
    }
}

impl Server {
    fn sent(&self) -> Vec<ToServer> {
        self.sent.lock().unwrap().clone()
    }
}

struct Connect(Arc<Server>);

impl Connector for Connect {
    fn connect(&self, rt: Weak<SetRuntime>, _set: &NewSet) -> Connection {
        *self.0.rt.lock().unwrap() = Some(rt);
        Connection {
            transport: self.0.clone(),
            buffers: None,
        }
    }
}

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// A set name no other iteration uses (the namespace is process-wide).
fn unique(prefix: &str) -> String {
    format!(
        "loom-{prefix}-{}-{}",
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

fn device_names(name: &str, n: u32) -> Vec<String> {
    (0..n)
        .map(|i| {
            if i == 0 {
                name.to_string()
            } else {
                format!("{name}-dev{i}")
            }
        })
        .collect()
}

/// A runtime with a created (Configurable) set of `n` devices.
fn created(n: u32, echo_to: Option<DevIx>) -> (Arc<SetRuntime>, Arc<Server>, String, VdConfig) {
    let server = Arc::new(Server {
        echo_to,
        ..Server::default()
    });
    let rt = SetRuntime::new(
        Arc::new(Profile::default()),
        Arc::new(Connect(server.clone())),
    );
    let name = unique("set");
    let cfg = VdConfig::client(n, Features::LikePipe);
    rt.create(CreateKind::Create, &name, &cfg).result.unwrap();
    (rt, server, name, cfg)
}

/// A runtime with an Active set of `n` devices, the first `open` of them
/// opened.
fn active(
    n: u32,
    open: u32,
    echo_to: Option<DevIx>,
) -> (Arc<SetRuntime>, Arc<Server>, Vec<DeviceHandle>, String) {
    let (rt, server, name, cfg) = created(n, echo_to);
    let devices = device_names(&name, n);
    rt.deliver(ToClient::Configured {
        cfg,
        devices: devices.clone(),
    });
    rt.get_configuration(Timeout::Ms(0)).result.unwrap();
    let hs = devices[..open as usize]
        .iter()
        .map(|d| rt.open_device(d).result.unwrap())
        .collect();
    (rt, server, hs, name)
}

/// Ends an iteration: closes the set so its name is free again.
fn close(rt: &SetRuntime) {
    if rt.state() != ClientState::Dne {
        let _ = rt.close();
    }
}

fn close_code() -> Hresult {
    match Profile::default().close_with_open_devices {
        CloseWithOpenDevices::VdEOpen => Hresult::VD_E_OPEN,
        CloseWithOpenDevices::Noerror => Hresult::NOERROR,
    }
}

// ----- Close against a blocked GetCommand ---------------------------------------------------

/// Close from one thread while another is blocked in GetCommand(INFINITE).
///
/// Clauses `close.devices-open` (Close answers the profile's code and tells
/// the server Abort, then Closed) and `close.invalidates-devices` (the
/// blocked GetCommand returns the profile's use-after-close code, whether
/// Close came before its first poll or while it waited); the name is freed.
#[test]
fn close_vs_blocked_get_command_infinite() {
    model("close_vs_blocked_get_command_infinite", || {
        let (rt, server, hs, name) = active(1, 1, None);
        let h = hs[0];
        let rt2 = rt.clone();
        let waiter = thread::spawn(move || rt2.get_command(h, Timeout::Infinite));
        let r = rt.close();
        assert_eq!((r.code(), r.clause), (close_code(), id::CLOSE_DEVICES_OPEN));
        let r = waiter.join().unwrap();
        assert_eq!(
            (r.code(), r.clause),
            (
                Profile::default().use_after_close_code,
                id::CLOSE_INVALIDATES_DEVICES
            )
        );
        assert_eq!(server.sent(), vec![ToServer::Abort, ToServer::Closed]);
        assert!(ProcessNamespace::lookup(&name).is_none(), "name released");
    });
}

/// Close against a GetCommand with a finite timeout (the `wait_timeout`
/// path) that does not expire.
///
/// Clauses `close.devices-open`, `close.invalidates-devices`.
#[test]
fn close_vs_blocked_get_command_finite_timeout() {
    model("close_vs_blocked_get_command_finite_timeout", || {
        let (rt, server, hs, _) = active(1, 1, None);
        let h = hs[0];
        let rt2 = rt.clone();
        let waiter = thread::spawn(move || rt2.get_command(h, Timeout::Ms(60_000)));
        let r = rt.close();
        assert_eq!(r.code(), close_code());
        let r = waiter.join().unwrap();
        assert_eq!(
            (r.code(), r.clause),
            (
                Profile::default().use_after_close_code,
                id::CLOSE_INVALIDATES_DEVICES
            )
        );
        assert_eq!(server.sent(), vec![ToServer::Abort, ToServer::Closed]);
    });
}

/// Close against a GetCommand whose 10 ms timeout may expire meanwhile
/// (waiter, timer, closer).
///
/// Clauses `close.devices-open` and `close.invalidates-devices` (the
/// use-after-close code), or `get-command.timeout` (VD_E_TIMEOUT) only if
/// the timer fired first; never a hang.
#[test]
fn close_vs_get_command_timeout_expiry() {
    model("close_vs_get_command_timeout_expiry", || {
        let (rt, server, hs, _) = active(1, 1, None);
        let h = hs[0];
        let rt2 = rt.clone();
        let waiter = thread::spawn(move || rt2.get_command(h, Timeout::Ms(10)));
        let rt3 = rt.clone();
        let timer = thread::spawn(move || rt3.advance_clock(Duration::from_millis(10)));
        let r = rt.close();
        assert_eq!((r.code(), r.clause), (close_code(), id::CLOSE_DEVICES_OPEN));
        timer.join().unwrap();
        let r = waiter.join().unwrap();
        let uac = Profile::default().use_after_close_code;
        assert!(
            (r.code(), r.clause) == (uac, id::CLOSE_INVALIDATES_DEVICES)
                || (r.code(), r.clause) == (Hresult::VD_E_TIMEOUT, id::GET_COMMAND_TIMEOUT),
            "{r:?}"
        );
        assert_eq!(server.sent(), vec![ToServer::Abort, ToServer::Closed]);
    });
}

// ----- SignalAbort against blocked GetConfiguration / GetCommand ----------------------------

/// SignalAbort while GetConfiguration(INFINITE) waits for a server that has
/// not configured the set.
///
/// Clauses `signal-abort.ok` and `get-configuration.abort` (VD_E_ABORT);
/// the server is told Abort exactly once.
#[test]
fn signal_abort_vs_blocked_get_configuration() {
    model("signal_abort_vs_blocked_get_configuration", || {
        let (rt, server, _, _) = created(1, None);
        let rt2 = rt.clone();
        let waiter = thread::spawn(move || rt2.get_configuration(Timeout::Infinite));
        let r = rt.signal_abort();
        assert_eq!(
            (r.code(), r.clause),
            (Hresult::NOERROR, id::SIGNAL_ABORT_OK)
        );
        let r = waiter.join().unwrap();
        assert_eq!(
            (r.code(), r.clause),
            (Hresult::VD_E_ABORT, id::GET_CONFIGURATION_ABORT)
        );
        assert_eq!(rt.state(), ClientState::Abort);
        assert_eq!(server.sent(), vec![ToServer::Abort]);
        close(&rt);
    });
}

/// SignalAbort and the server's configuration racing a blocked
/// GetConfiguration (three threads).
///
/// Clauses `get-configuration.waits` (the configuration won: NOERROR with
/// the server's config) or `get-configuration.abort` (VD_E_ABORT); either
/// way the set ends in Abort and the server hears Abort once.
#[test]
fn signal_abort_and_configuration_vs_blocked_get_configuration() {
    model(
        "signal_abort_and_configuration_vs_blocked_get_configuration",
        || {
            let (rt, server, name, cfg) = created(1, None);
            let rt2 = rt.clone();
            let waiter = thread::spawn(move || rt2.get_configuration(Timeout::Infinite));
            let rt3 = rt.clone();
            let devices = device_names(&name, 1);
            let srv = thread::spawn(move || rt3.deliver(ToClient::Configured { cfg, devices }));
            rt.signal_abort().result.unwrap();
            srv.join().unwrap();
            let r = waiter.join().unwrap();
            match r.result {
                Ok(c) => {
                    assert_eq!(r.clause, id::GET_CONFIGURATION_WAITS);
                    assert_eq!(c.device_count, cfg.device_count);
                }
                Err(e) => assert_eq!(
                    (e, r.clause),
                    (Hresult::VD_E_ABORT, id::GET_CONFIGURATION_ABORT)
                ),
            }
            assert_eq!(rt.state(), ClientState::Abort);
            assert_eq!(server.sent(), vec![ToServer::Abort]);
            close(&rt);
        },
    );
}

/// SignalAbort while two devices' threads are blocked in GetCommand: both
/// waiters are woken (notify-all, no lost wakeup).
///
/// Clauses `signal-abort.ok` and `get-command.abort` (VD_E_ABORT on each
/// device); the server is told Abort exactly once.
#[test]
fn signal_abort_vs_two_blocked_get_commands() {
    model("signal_abort_vs_two_blocked_get_commands", || {
        let (rt, server, hs, _) = active(2, 2, None);
        let waiters: Vec<_> = hs
            .iter()
            .map(|&h| {
                let rt2 = rt.clone();
                thread::spawn(move || rt2.get_command(h, Timeout::Infinite))
            })
            .collect();
        let r = rt.signal_abort();
        assert_eq!(
            (r.code(), r.clause),
            (Hresult::NOERROR, id::SIGNAL_ABORT_OK)
        );
        for w in waiters {
            let r = w.join().unwrap();
            assert_eq!(
                (r.code(), r.clause),
                (Hresult::VD_E_ABORT, id::GET_COMMAND_ABORT)
            );
        }
        assert_eq!(server.sent(), vec![ToServer::Abort]);
        close(&rt);
    });
}

/// SignalAbort against a GetCommand with a finite timeout whose timer may
/// fire (three threads: waiter, aborter, timer).
///
/// Clauses `get-command.abort` (VD_E_ABORT) or `get-command.timeout`
/// (VD_E_TIMEOUT, only if the timer fired before the abort); never a hang.
#[test]
fn signal_abort_vs_get_command_timeout() {
    model("signal_abort_vs_get_command_timeout", || {
        let (rt, _server, hs, _) = active(1, 1, None);
        let h = hs[0];
        let rt2 = rt.clone();
        let waiter = thread::spawn(move || rt2.get_command(h, Timeout::Ms(10)));
        let rt3 = rt.clone();
        let timer = thread::spawn(move || rt3.advance_clock(Duration::from_millis(10)));
        rt.signal_abort().result.unwrap();
        timer.join().unwrap();
        let r = waiter.join().unwrap();
        assert!(
            matches!(
                (r.code(), r.clause),
                (Hresult::VD_E_ABORT, id::GET_COMMAND_ABORT)
                    | (Hresult::VD_E_TIMEOUT, id::GET_COMMAND_TIMEOUT)
            ),
            "{r:?}"
        );
        close(&rt);
    });
}

// ----- completions on one device while another waits ---------------------------------------

/// Device 0 completes a command while device 1's thread is blocked in
/// GetCommand; the server answers the completion (from inside the
/// transport's `send`, re-entering the runtime) with a command for device 1.
///
/// Clauses `complete-command.ok` and `get-command.ok`: the completion
/// reaches the server, the waiter gets exactly the reply, device 0 gets
/// nothing (`get-command.poll`).
#[test]
fn completion_on_one_device_wakes_other_device_reentrant() {
    model(
        "completion_on_one_device_wakes_other_device_reentrant",
        || {
            let (rt, server, hs, _) = active(2, 2, Some(1));
            let (h0, h1) = (hs[0], hs[1]);
            rt.deliver(ToClient::Command(cmd(1, 0)));
            let c0 = rt.get_command(h0, Timeout::Ms(0)).result.unwrap();
            let rt2 = rt.clone();
            let waiter = thread::spawn(move || rt2.get_command(h1, Timeout::Infinite));
            let r = rt.complete_command(h0, &c0, Win32::ERROR_SUCCESS, 512, 0);
            assert_eq!(
                (r.code(), r.clause),
                (Hresult::NOERROR, id::COMPLETE_COMMAND_OK)
            );
            let r = waiter.join().unwrap();
            assert_eq!(r.clause, id::GET_COMMAND_OK);
            let c = r.result.unwrap();
            assert_eq!((c.id, c.dev), (CmdId(100), 1));
            let r = rt.get_command(h0, Timeout::Ms(0));
            assert_eq!(
                (r.code(), r.clause),
                (Hresult::VD_E_TIMEOUT, id::GET_COMMAND_POLL)
            );
            let sent = server.sent();
            assert_eq!(sent.len(), 1);
            assert!(matches!(&sent[0], ToServer::Completed(c) if c.id == CmdId(1) && c.dev == 0));
            close(&rt);
        },
    );
}

/// Two devices complete concurrently while a third device's thread waits;
/// each completion is answered (re-entrantly) with a command for the
/// waiting device. No completion is stranded in the outbox by the
/// one-flusher-at-a-time rule, and the waiter is woken.
///
/// Clauses `complete-command.ok` (both) and `get-command.ok` (the waiter
/// gets the first reply; the second stays queued for it).
#[test]
fn concurrent_completions_while_another_device_waits() {
    model("concurrent_completions_while_another_device_waits", || {
        let (rt, server, hs, _) = active(3, 3, Some(2));
        let (h0, h1, h2) = (hs[0], hs[1], hs[2]);
        rt.deliver(ToClient::Command(cmd(1, 0)));
        rt.deliver(ToClient::Command(cmd(2, 1)));
        let c0 = rt.get_command(h0, Timeout::Ms(0)).result.unwrap();
        let c1 = rt.get_command(h1, Timeout::Ms(0)).result.unwrap();
        let rt2 = rt.clone();
        let waiter = thread::spawn(move || rt2.get_command(h2, Timeout::Infinite));
        let rt3 = rt.clone();
        let other =
            thread::spawn(move || rt3.complete_command(h1, &c1, Win32::ERROR_SUCCESS, 0, 0));
        let r0 = rt.complete_command(h0, &c0, Win32::ERROR_SUCCESS, 0, 0);
        let r1 = other.join().unwrap();
        assert_eq!(r0.clause, id::COMPLETE_COMMAND_OK);
        assert_eq!(r1.clause, id::COMPLETE_COMMAND_OK);
        let r = waiter.join().unwrap();
        assert_eq!(r.clause, id::GET_COMMAND_OK);
        assert_eq!(r.result.unwrap().dev, 2);
        // Every completion reached the server.
        let mut done: Vec<u64> = server
            .sent()
            .iter()
            .filter_map(|m| match m {
                ToServer::Completed(c) => Some(c.id.0),
                _ => None,
            })
            .collect();
        done.sort_unstable();
        assert_eq!(done, vec![1, 2]);
        // The second reply is queued for device 2 (whose first command is
        // still outstanding).
        let r = rt.get_command(h2, Timeout::Ms(0));
        assert_eq!(r.clause, id::GET_COMMAND_SEVERAL_OUTSTANDING);
        assert_eq!(r.result.unwrap().dev, 2);
        close(&rt);
    });
}

// ----- a server message arriving as a timeout expires ---------------------------------------

/// A command from the server racing the expiry of GetCommand's 10 ms
/// timeout (waiter, timer, server).
///
/// Clauses `get-command.ok` (NOERROR with the command) or
/// `get-command.timeout` (VD_E_TIMEOUT); if it timed out, the command is
/// not lost: the next GetCommand (`get-command.poll` semantics, timeout 0)
/// returns it; if it was returned, the next poll finds nothing.
#[test]
fn server_command_vs_get_command_timeout() {
    model("server_command_vs_get_command_timeout", || {
        let (rt, _server, hs, _) = active(1, 1, None);
        let h = hs[0];
        let rt2 = rt.clone();
        let waiter = thread::spawn(move || rt2.get_command(h, Timeout::Ms(10)));
        let rt3 = rt.clone();
        let timer = thread::spawn(move || rt3.advance_clock(Duration::from_millis(10)));
        rt.deliver(ToClient::Command(cmd(7, 0)));
        timer.join().unwrap();
        let r = waiter.join().unwrap();
        let next = rt.get_command(h, Timeout::Ms(0));
        match r.result {
            Ok(c) => {
                assert_eq!((c.id, r.clause), (CmdId(7), id::GET_COMMAND_OK));
                assert_eq!(
                    (next.code(), next.clause),
                    (Hresult::VD_E_TIMEOUT, id::GET_COMMAND_POLL)
                );
            }
            Err(e) => {
                assert_eq!(
                    (e, r.clause),
                    (Hresult::VD_E_TIMEOUT, id::GET_COMMAND_TIMEOUT)
                );
                assert_eq!(next.clause, id::GET_COMMAND_OK);
                assert_eq!(next.result.unwrap().id, CmdId(7));
            }
        }
        close(&rt);
    });
}

/// The server's configuration racing the expiry of GetConfiguration's
/// 10 ms timeout (waiter, timer, server).
///
/// Clauses `get-configuration.waits` (NOERROR) or
/// `get-configuration.timeout` (VD_E_TIMEOUT, the set stays Configurable
/// and the configuration is fetched by the next call).
#[test]
fn server_configuration_vs_get_configuration_timeout() {
    model("server_configuration_vs_get_configuration_timeout", || {
        let (rt, _server, name, cfg) = created(1, None);
        let rt2 = rt.clone();
        let waiter = thread::spawn(move || rt2.get_configuration(Timeout::Ms(10)));
        let rt3 = rt.clone();
        let timer = thread::spawn(move || rt3.advance_clock(Duration::from_millis(10)));
        rt.deliver(ToClient::Configured {
            cfg,
            devices: device_names(&name, 1),
        });
        timer.join().unwrap();
        let r = waiter.join().unwrap();
        match r.result {
            Ok(_) => {
                assert_eq!(r.clause, id::GET_CONFIGURATION_WAITS);
                assert_eq!(rt.state(), ClientState::Initializing);
            }
            Err(e) => {
                assert_eq!(
                    (e, r.clause),
                    (Hresult::VD_E_TIMEOUT, id::GET_CONFIGURATION_TIMEOUT)
                );
                assert_eq!(rt.state(), ClientState::Configurable);
                let next = rt.get_configuration(Timeout::Ms(0));
                assert_eq!(next.clause, id::GET_CONFIGURATION_WAITS);
                next.result.unwrap();
            }
        }
        close(&rt);
    });
}
