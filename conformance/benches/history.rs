//! A long-running `vdisim serve` does not slow down as its history grows
//! (issue: harden serve — "the backup history grows without bound and is
//! copied for every statement"): the cost of a BACKUP statement must not
//! depend on how many backups came before it.
//!
//! - `cycles`: 5,000 BACKUP cycles of a 64 KiB database against one
//!   in-process server (Create, BACKUP over the socket and shared memory,
//!   drain, Close), timed one by one. Printed: the median cycle of the first
//!   500 and of the last 500 (and of every 500 between), and their ratio
//!   (goal: within noise of 1.0;
//!   a history copied per statement makes it grow with the cycle count).
//! - divan then times one cycle on a server that has already taken those
//!   backups, against one cycle on a fresh server (`cycle_after`): the
//!   ratio of the two is the same figure measured the other way.
//!
//! Run: `cargo bench -p vdi-conformance --bench history`.

#[cfg(unix)]
#[path = "../tests/support/remote_client.rs"]
mod remote_client;

#[cfg(unix)]
mod imp {
    use super::remote_client::*;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::{Duration, Instant};
    use vdi_host::remote::control::Control;
    use vdi_host::remote::wire::{Request, Response};
    use vdi_sqlserver::serve::{ServeConfig, Server};

    /// Cycles of the growth run.
    const CYCLES: usize = 5000;
    /// Cycles compared at each end.
    const WINDOW: usize = 500;

    fn server(tag: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("vdisim-bench-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = ServeConfig::new(dir.join(format!("{tag}.sock")));
        cfg.databases = vec![("small".into(), 65536)];
        Server::start(cfg).expect("server starts")
    }

    /// One BACKUP through the library; the time it took.
    fn cycle(path: &Path, n: usize) -> Duration {
        let t0 = Instant::now();
        let set = set_at(path);
        let name = format!("h{n}");
        assert_eq!(create(&set, &name, 1), vdi_spec::Hresult::NOERROR);
        let p = path.to_path_buf();
        let text = format!("BACKUP DATABASE small TO VIRTUAL_DEVICE='{name}'");
        let stmt = std::thread::spawn(move || {
            let mut c = Control::connect(&p, "bench").unwrap();
            c.request(Request::Sql {
                text,
                database: None,
                first_line: 1,
            })
        });
        let devs = open_all(&set, &name, 1).expect("configured");
        let media = vec![Arc::new(Mutex::new(Vec::new()))];
        run_devices(&devs, &media, Sink::Discard);
        set.close();
        match stmt.join().unwrap() {
            Ok(Response::Sql { messages, .. }) => {
                assert_eq!(messages.last().map(|m| m.message.number), Some(3014))
            }
            other => panic!("{other:?}"),
        }
        t0.elapsed()
    }

    fn median(v: &[Duration]) -> Duration {
        let mut v = v.to_vec();
        v.sort_unstable();
        v[v.len() / 2]
    }

    static GROWN: OnceLock<(Server, PathBuf)> = OnceLock::new();
    static FRESH: OnceLock<(Server, PathBuf)> = OnceLock::new();

    fn grown() -> &'static Path {
        &GROWN
            .get_or_init(|| {
                let s = server("grown");
                let p = s.path().to_path_buf();
                let times: Vec<Duration> = (0..CYCLES).map(|n| cycle(&p, n)).collect();
                for (i, w) in times.chunks(WINDOW).enumerate() {
                    eprintln!(
                        "history: cycles {}..{}: median {:?}",
                        i * WINDOW,
                        (i + 1) * WINDOW,
                        median(w)
                    );
                }
                let first = median(&times[..WINDOW]);
                let last = median(&times[CYCLES - WINDOW..]);
                eprintln!(
                    "history: {CYCLES} backup cycles; median of the first {WINDOW} {first:?}, of the last {WINDOW} {last:?}; last/first {:.2}; backups held {}",
                    last.as_secs_f64() / first.as_secs_f64(),
                    s.status().backups
                );
                (s, p)
            })
            .1
    }

    fn fresh() -> &'static Path {
        &FRESH
            .get_or_init(|| {
                let s = server("fresh");
                let p = s.path().to_path_buf();
                (s, p)
            })
            .1
    }

    /// One cycle after `backups` earlier ones on the same server.
    #[divan::bench(args = [0, CYCLES], sample_count = 200)]
    fn cycle_after(bencher: divan::Bencher, backups: usize) {
        let path = if backups == 0 { fresh() } else { grown() };
        let mut n = 1_000_000 * (1 + backups);
        bencher.bench_local(|| {
            n += 1;
            cycle(path, n)
        });
    }

    pub fn main() {
        let _ = grown();
        divan::main();
        for s in [&GROWN, &FRESH] {
            if let Some((srv, _)) = s.get() {
                srv.shutdown();
            }
        }
    }
}

fn main() {
    #[cfg(unix)]
    imp::main();
    #[cfg(not(unix))]
    eprintln!("SKIPPED: the history benchmark needs vdisim serve (Unix sockets and mmap)");
}
