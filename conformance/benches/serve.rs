//! `vdisim serve` across the process boundary (issue: a simulated SQL Server
//! process, Performance).
//!
//! - `backup_stream`: a BACKUP streamed from a `vdisim serve` child process
//!   through the stand-in library (socket for commands, shared memory for
//!   buffers) to a client that discards the data, over 1 and 4 devices,
//!   MAXTRANSFERSIZE 4 MiB, [`DB_BYTES`] per backup.
//! - `memcpy`: copying the same volume in 4 MiB pieces from a source region
//!   to a destination region, each as large as the backup's buffer pool for
//!   that device count (so both touch the same amount of memory), in the
//!   same run: the yardstick (goal: the backup stream ≥ 50% of it).
//!
//! divan reports bytes per second for each. Before divan runs, one
//! instrumented backup whose commands are zero-byte Flushes (a harness case
//! on the server, 2000 mid-stream Flushes) prints the p50/p99 latency of one
//! GetCommand + CompleteCommand round trip across the boundary, to stderr.
//!
//! Run: `cargo bench -p vdi-conformance --bench serve`.

#[cfg(unix)]
#[path = "../tests/support/remote_client.rs"]
mod remote_client;

#[cfg(unix)]
mod imp {
    use super::remote_client;

    use divan::counter::BytesCount;
    use remote_client::*;
    use std::path::PathBuf;
    use std::process::{Child, Command};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::{Duration, Instant};
    use vdi_host::contract::CaseSetup;
    use vdi_host::remote::control::Control;
    use vdi_host::remote::wire::{Request, Response};
    use vdi_model::msg::Timeout;
    use vdi_model::statement::{ServerPlan, Statement, StatementKind};
    use vdi_spec::{Hresult, TransferOptions};

    /// Bytes per backup (the `big` database).
    const DB_BYTES: u64 = 1 << 30;
    /// MAXTRANSFERSIZE.
    const MTS: u64 = 4 << 20;
    /// Mid-stream Flushes of the latency run.
    const FLUSHES: u32 = 2000;

    struct Serve {
        child: Mutex<Child>,
        path: PathBuf,
    }

    impl Drop for Serve {
        fn drop(&mut self) {
            let _ = self.child.lock().unwrap().kill();
        }
    }

    static SERVE: OnceLock<Serve> = OnceLock::new();

    fn serve() -> &'static Serve {
        SERVE.get_or_init(|| {
            let path =
                std::env::temp_dir().join(format!("vdisim-bench-{}.sock", std::process::id()));
            let child = Command::new(env!("CARGO_BIN_EXE_vdisim"))
                .args(["serve", "--ephemeral", "--listen"])
                .arg(&path)
                .args(["--database", &format!("big={DB_BYTES}")])
                // Gone with the bench, even one that panics.
                .args(["--exit-with", &std::process::id().to_string()])
                .spawn()
                .expect("vdisim serve starts");
            wait_listening(&path);
            Serve {
                child: Mutex::new(child),
                path,
            }
        })
    }

    fn backup(devices: u32, n: u64) -> u64 {
        let s = serve();
        let name = format!("bench-{devices}-{n}");
        let set = set_at(&s.path);
        assert_eq!(create(&set, &name, devices), Hresult::NOERROR);
        let list = device_names(&name, devices)
            .iter()
            .map(|d| format!("VIRTUAL_DEVICE='{d}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            "BACKUP DATABASE big TO {list} WITH MAXTRANSFERSIZE={MTS}, BUFFERCOUNT={}",
            2 * devices
        );
        let path = s.path.clone();
        let stmt = std::thread::spawn(move || {
            let mut c = Control::connect(&path, "bench").unwrap();
            c.request(Request::Sql {
                text,
                database: None,
                first_line: 1,
            })
            .unwrap()
        });
        let devs = open_all(&set, &name, devices).expect("configured");
        let media: Vec<Arc<Mutex<Vec<u8>>>> = (0..devices).map(|_| Arc::default()).collect();
        let (ends, bytes) = run_devices(&devs, &media, Sink::Discard);
        assert!(ends.iter().all(|e| *e == Hresult::VD_E_CLOSE), "{ends:?}");
        assert_eq!(set.close().code(), Hresult::NOERROR);
        match stmt.join().unwrap() {
            Response::Sql { messages, .. } => assert_eq!(
                messages.last().map(|m| m.message.number),
                Some(3014),
                "{messages:?}"
            ),
            other => panic!("{other:?}"),
        }
        bytes
    }

    fn stop_serve() {
        if let Some(s) = SERVE.get() {
            let mut c = s.child.lock().unwrap();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    #[divan::bench(args = [1, 4], sample_count = 5, sample_size = 1)]
    fn backup_stream(bencher: divan::Bencher, devices: u32) {
        bencher.counter(BytesCount::new(DB_BYTES)).bench(|| {
            let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The database, and a 64 KiB media header per family; the
            // counter counts the database's bytes alone.
            let headers = u64::from(devices) * vdi_model::media::HEADER_BYTES;
            assert_eq!(backup(devices, n), DB_BYTES + headers);
        });
    }

    #[divan::bench(args = [1, 4], sample_count = 5, sample_size = 1)]
    fn memcpy(bencher: divan::Bencher, devices: usize) {
        // Source and destination each as large as the backup's buffer pool
        // (BUFFERCOUNT = 2 per device, 4 MiB each): the same memory footprint.
        let pool = 2 * devices * MTS as usize;
        let src: Vec<u8> = (0..pool).map(|i| (i * 31 % 251) as u8).collect();
        let mut dst = vec![0u8; pool];
        bencher.counter(BytesCount::new(DB_BYTES)).bench_local(|| {
            let mut done = 0u64;
            let mut at = 0usize;
            while done < DB_BYTES {
                let n = MTS as usize;
                dst[at..at + n].copy_from_slice(&src[at..at + n]);
                divan::black_box(&dst[at]);
                at = (at + n) % pool;
                done += n as u64;
            }
        });
    }

    /// One backup whose commands are zero-byte Flushes, through a harness case
    /// on the server: per-round-trip latencies.
    fn latencies() -> Vec<Duration> {
        let s = serve();
        let mut c = Control::connect(&s.path, "bench-latency").unwrap();
        c.request(Request::Reset {
            setup: CaseSetup::default(),
        })
        .unwrap();
        let set = set_at(&s.path);
        assert_eq!(create(&set, "lat", 1), Hresult::NOERROR);
        let stmt = Statement {
            kind: StatementKind::BackupDatabase,
            database: "big".into(),
            devices: vec!["lat".into()],
            options: TransferOptions::default(),
            plan: ServerPlan {
                data_bytes: 65536,
                mid_flushes: FLUSHES,
                ..ServerPlan::default()
            },
        };
        match c.request(Request::Statement { stmt }).unwrap() {
            Response::Ok => {}
            other => panic!("{other:?}"),
        }
        let devs = open_all(&set, "lat", 1).unwrap();
        let mut v = Vec::new();
        let mut last: Option<Instant> = None;
        while let Ok(cmd) = devs[0].get_command(Timeout::Ms(30_000)) {
            if let Some(t) = last {
                v.push(t.elapsed());
            }
            let t = Instant::now();
            let r = devs[0].complete(&cmd, vdi_spec::Win32::ERROR_SUCCESS, u64::from(cmd.size));
            assert_eq!(r, Hresult::NOERROR);
            last = Some(t);
        }
        set.close();
        let _ = c.request(Request::Wait {
            timeout_ms: Some(10_000),
        });
        let _ = c.request(Request::Finish { settle_ms: 1000 });
        v
    }

    pub fn main() {
        let _ = latencies();
        let mut v = latencies();
        v.sort_unstable();
        if v.is_empty() {
            eprintln!("serve latency: no round trips");
        } else {
            let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
            let total: Duration = v.iter().sum();
            eprintln!(
                "serve round trip (GetCommand+CompleteCommand, zero-byte Flush, across processes): {} round trips, {:.0}/s, p50 {:?}, p99 {:?}",
                v.len(),
                v.len() as f64 / total.as_secs_f64(),
                p(0.50),
                p(0.99)
            );
        }
        divan::main();
        // Statics are not dropped at exit: stop the child explicitly.
        stop_serve();
    }
}

fn main() {
    #[cfg(unix)]
    imp::main();
    #[cfg(not(unix))]
    eprintln!("SKIPPED: the serve benchmark needs vdisim serve (Unix sockets and mmap)");
}
