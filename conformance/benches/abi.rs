//! ABI call overhead (issue: real ABIs, Performance): GetCommand +
//! CompleteCommand round trips of a BACKUP through one device, in-process
//! server mode, through
//!
//! - `model`: the model backend (client and server halves in the driven
//!   deterministic world, one thread);
//! - `standin_rust`: the stand-in library's Rust API (`SetCore` / runtime,
//!   the harness's in-process server thread);
//! - `linux_abi`: the Linux class ABI (mangled symbols, dlopen'ed);
//! - `com`: the COM vtable of the stand-in's factory.
//!
//! Each iteration runs a whole backup whose commands are almost all
//! zero-byte transfers: `N` mid-stream Flushes (the server half's
//! `mid_flushes`) around one 64 KiB Write (the smallest data command a
//! server sends is MAXTRANSFERSIZE-sized, at least 64 KiB, so Flushes are
//! the way to measure the call path without memory copies). divan reports the time per backup; besides, one
//! instrumented run per path prints round trips per second and the p50/p99
//! latency of one GetCommand+CompleteCommand (std::time::Instant), to stderr.
//!
//! Run: `cargo bench -p vdi-conformance --bench abi`.

use std::time::{Duration, Instant};
use vdi_conformance::backend::{Backend, CaseSetup};
use vdi_conformance::backends::{com::ComBackend, linux_abi::LinuxAbiBackend, model::ModelBackend};
use vdi_model::call::{Call, Value};
use vdi_model::fault::FaultPlan;
use vdi_model::msg::Timeout;
use vdi_model::statement::{ServerPlan, Statement, StatementKind};
use vdi_spec::{CommandCode, Features, Hresult, Profile, TransferOptions, VdConfig, Win32};

/// Mid-stream Flushes per backup (each a zero-byte round trip).
const N: u64 = 1000;

fn main() {
    for (name, f) in [
        ("model", run_model as fn() -> Vec<Duration>),
        ("standin_rust", run_standin),
        ("linux_abi", run_linux),
        ("com", run_com),
    ] {
        let _ = f();
        report(name, f());
    }
    divan::main();
}

fn report(name: &str, mut v: Vec<Duration>) {
    if v.is_empty() {
        eprintln!("{name}: no round trips");
        return;
    }
    v.sort_unstable();
    let total: Duration = v.iter().sum();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    eprintln!(
        "{name:>13}: {} round trips, {:.0}/s, p50 {:?}, p99 {:?}",
        v.len(),
        v.len() as f64 / total.as_secs_f64(),
        p(0.50),
        p(0.99)
    );
}

fn statement(set: &str) -> Statement {
    Statement {
        kind: StatementKind::BackupDatabase,
        database: "bench".into(),
        devices: vec![set.to_string()],
        options: TransferOptions {
            block_size: 512,
            max_transfer_size: 65536,
            buffer_count: None,
        },
        plan: ServerPlan {
            data_bytes: 65536,
            mid_flushes: N as u32,
            ..ServerPlan::default()
        },
    }
}

fn setup() -> CaseSetup {
    CaseSetup {
        seed: 1,
        profile: Profile::default(),
        budget_ms: 3_600_000,
        seed_backups: Vec::new(),
        faults: FaultPlan::default(),
        record_trace: false,
        time_scale: 1,
        max_steps: None,
    }
}

/// One backup through a [`Backend`]; the time of each round trip.
fn through_backend(b: &mut dyn Backend, set: &str) -> Vec<Duration> {
    let mut times = Vec::with_capacity(N as usize + 8);
    b.reset(&setup()).expect("reset");
    let cfg = VdConfig::client(1, Features::LikePipe);
    let r = b
        .call(
            "ctl",
            Call::Create {
                name: set.into(),
                cfg,
            },
        )
        .expect("create");
    assert_eq!(r.code, Hresult::NOERROR);
    b.start_statement(&statement(set)).expect("statement");
    let t = Timeout::Ms(10_000);
    b.call("ctl", Call::GetConfiguration { timeout: t })
        .expect("cfg");
    let r = b
        .call("ctl", Call::OpenDevice { name: set.into() })
        .expect("open");
    let Value::Device(dev) = r.value else {
        panic!("no device: {}", r.code)
    };
    loop {
        let t0 = Instant::now();
        let r = b
            .call("dev0", Call::GetCommand { dev, timeout: t })
            .expect("get");
        let Value::Command(cmd) = r.value else { break };
        let bytes = if cmd.code == CommandCode::Write {
            u64::from(cmd.size)
        } else {
            0
        };
        let c = b
            .call(
                "dev0",
                Call::CompleteCommand {
                    dev,
                    position: cmd.position,
                    cmd,
                    code: Win32::ERROR_SUCCESS,
                    bytes,
                    data: vdi_model::content::Content::Empty,
                },
            )
            .expect("complete");
        times.push(t0.elapsed());
        assert_eq!(c.code, Hresult::NOERROR);
    }
    b.call("ctl", Call::Close).expect("close");
    b.finish().expect("finish");
    times
}

fn run_model() -> Vec<Duration> {
    through_backend(&mut ModelBackend::default(), "bench-model")
}

fn run_linux() -> Vec<Duration> {
    through_backend(&mut LinuxAbiBackend::new(), "bench-linux")
}

fn run_com() -> Vec<Duration> {
    through_backend(&mut ComBackend::new(), "bench-com")
}

/// The client host (`vdi_host::runtime`, what the stand-in library's
/// objects run on) in this process, with an in-process case's server host.
fn run_standin() -> Vec<Duration> {
    use vdi_host::contract::CaseSetup;
    use vdi_host::runtime::{CreateKind, SetRuntime};
    let cases = vdi_host::mode::cases().expect("in-process cases");
    cases.reset(CaseSetup::default()).expect("reset");
    let name = "bench-rust";
    let set = SetRuntime::with_config(vdi_host::mode::current().runtime_config());
    let cfg = VdConfig::client(1, Features::LikePipe);
    assert_eq!(
        set.create(CreateKind::Create, name, &cfg).code(),
        Hresult::NOERROR
    );
    cases.start_statement(statement(name)).expect("statement");
    set.get_configuration(Timeout::Ms(10_000))
        .result
        .expect("cfg");
    let dev = set.open_device(name).result.expect("open");
    let mut times = Vec::with_capacity(N as usize + 8);
    loop {
        let t0 = Instant::now();
        let Ok(c) = set.get_command(dev, Timeout::Ms(10_000)).result else {
            break;
        };
        let bytes = if c.code == CommandCode::Write {
            u64::from(c.size)
        } else {
            0
        };
        let r = set.complete_command(dev, &c, Win32::ERROR_SUCCESS, bytes, c.position);
        times.push(t0.elapsed());
        assert_eq!(r.code(), Hresult::NOERROR);
    }
    set.close();
    let _ = cases.finish(Duration::from_secs(1));
    times
}

#[divan::bench(sample_count = 10)]
fn model() -> usize {
    run_model().len()
}

#[divan::bench(sample_count = 10)]
fn standin_rust() -> usize {
    run_standin().len()
}

#[divan::bench(sample_count = 10)]
fn linux_abi() -> usize {
    run_linux().len()
}

#[divan::bench(sample_count = 10)]
fn com() -> usize {
    run_com().len()
}
