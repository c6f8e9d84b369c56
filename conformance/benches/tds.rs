//! `vdisim serve --tds` against its control socket, same server process,
//! same run (issue: speak TDS):
//!
//! - round trips on a connection kept open: `SELECT 1` over TDS (a
//!   served query: COLMETADATA, ROW, DONE), `USE big` over TDS (a batch
//!   through the server's T-SQL, as a BACKUP goes), and `USE big` and
//!   `SELECT 1` (not served there: its error) as control-socket `Sql`
//!   requests;
//! - a whole `BACKUP DATABASE big` of [`DB_BYTES`] to a VIRTUAL_DEVICE
//!   streamed by the client host's device loop (data discarded), the
//!   statement sent as a TDS SQL batch or as a control-socket `Sql`
//!   request.
//!
//! divan reports each; compare the pairs' medians (a ratio in one run).
//! Run: `cargo bench -p vdi-conformance --bench tds`.

#[cfg(unix)]
#[path = "../tests/support/remote_client.rs"]
mod remote_client;
#[cfg(unix)]
#[path = "../tests/support/tds_client.rs"]
mod tds_client;

#[cfg(unix)]
mod imp {
    use super::{remote_client, tds_client};

    use divan::counter::BytesCount;
    use remote_client::*;
    use std::io::{BufRead, BufReader};
    use std::net::{SocketAddr, TcpStream};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, OnceLock};
    use tds_client::{Tok, batch, logged_in, messages};
    use vdi_host::remote::control::Control;
    use vdi_host::remote::wire::{Request, Response};
    use vdi_spec::Hresult;

    /// Bytes per backup (the `big` database).
    const DB_BYTES: u64 = 256 << 20;
    /// MAXTRANSFERSIZE.
    const MTS: u64 = 4 << 20;

    struct Serve {
        child: Mutex<Child>,
        path: PathBuf,
        tds: SocketAddr,
    }

    static SERVE: OnceLock<Serve> = OnceLock::new();

    fn serve() -> &'static Serve {
        SERVE.get_or_init(|| {
            let path =
                std::env::temp_dir().join(format!("vdisim-tds-bench-{}.sock", std::process::id()));
            let mut child = Command::new(env!("CARGO_BIN_EXE_vdisim"))
                .args(["serve", "--ephemeral", "--tds", "127.0.0.1:0"])
                .args(["--login", "sa:Secr3t!"])
                .args(["--database", &format!("big={DB_BYTES}")])
                .args(["--database", "sales=1MiB"])
                .arg("--listen")
                .arg(&path)
                // Gone with the bench, even one that panics.
                .args(["--exit-with", &std::process::id().to_string()])
                .stderr(Stdio::piped())
                .spawn()
                .expect("vdisim serve starts");
            let mut err = BufReader::new(child.stderr.take().unwrap());
            let mut line = String::new();
            let tds = loop {
                line.clear();
                assert!(err.read_line(&mut line).unwrap() > 0, "vdisim serve ended");
                if let Some(a) = line
                    .split("TDS 7.4 at ")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|a| a.parse().ok())
                {
                    break a;
                }
            };
            // Keep draining its log so that it never blocks on it.
            std::thread::spawn(move || for _ in err.lines() {});
            wait_listening(&path);
            Serve {
                child: Mutex::new(child),
                path,
                tds,
            }
        })
    }

    fn stop_serve() {
        if let Some(s) = SERVE.get() {
            let mut c = s.child.lock().unwrap();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn tds_conn() -> &'static Mutex<TcpStream> {
        static C: OnceLock<Mutex<TcpStream>> = OnceLock::new();
        C.get_or_init(|| Mutex::new(logged_in_big(serve().tds)))
    }

    fn logged_in_big(addr: SocketAddr) -> TcpStream {
        let mut c = logged_in(addr);
        assert_eq!(tds_client::last_done(&batch(&mut c, "USE big")).0, 0);
        c
    }

    fn control_conn() -> &'static Mutex<Control> {
        static C: OnceLock<Mutex<Control>> = OnceLock::new();
        C.get_or_init(|| Mutex::new(Control::connect(&serve().path, "bench").unwrap()))
    }

    fn control_sql(c: &mut Control, text: &str) -> Vec<u32> {
        match c
            .request(Request::Sql {
                text: text.into(),
                database: None,
                first_line: 1,
            })
            .unwrap()
        {
            Response::Sql { messages, .. } => messages.iter().map(|m| m.message.number).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[divan::bench(sample_count = 200, sample_size = 20)]
    fn round_trip_tds_select_1(bencher: divan::Bencher) {
        let mut c = tds_conn().lock().unwrap();
        bencher.bench_local(|| {
            let t = batch(&mut c, "SELECT 1");
            assert!(matches!(t.last(), Some(Tok::Done { rows: 1, .. })));
        });
    }

    #[divan::bench(sample_count = 200, sample_size = 20)]
    fn round_trip_tds_use(bencher: divan::Bencher) {
        let mut c = tds_conn().lock().unwrap();
        bencher.bench_local(|| {
            let t = batch(&mut c, "USE big");
            assert!(messages(&t).is_empty());
        });
    }

    #[divan::bench(sample_count = 200, sample_size = 20)]
    fn round_trip_control_use(bencher: divan::Bencher) {
        let mut c = control_conn().lock().unwrap();
        bencher.bench_local(|| {
            assert!(control_sql(&mut c, "USE big").is_empty());
        });
    }

    #[divan::bench(sample_count = 200, sample_size = 20)]
    fn round_trip_control_select_1(bencher: divan::Bencher) {
        let mut c = control_conn().lock().unwrap();
        bencher.bench_local(|| {
            assert_eq!(control_sql(&mut c, "SELECT 1"), vec![50002]);
        });
    }

    static RUN: AtomicU64 = AtomicU64::new(0);

    /// One BACKUP of `big` to a fresh virtual device, the statement sent
    /// by `send` (on its own thread) while the device loop streams it.
    fn backup(send: impl FnOnce(String) -> Vec<u32> + Send + 'static) {
        let s = serve();
        let name = format!("tds-bench-{}", RUN.fetch_add(1, Ordering::Relaxed));
        let set = set_at(&s.path);
        assert_eq!(create(&set, &name, 1), Hresult::NOERROR);
        let text = format!(
            "BACKUP DATABASE big TO VIRTUAL_DEVICE='{name}' WITH MAXTRANSFERSIZE={MTS}, BUFFERCOUNT=2"
        );
        let stmt = std::thread::spawn(move || send(text));
        let devs = open_all(&set, &name, 1).expect("configured");
        let media: Vec<Arc<Mutex<Vec<u8>>>> = vec![Arc::default()];
        let (ends, _) = run_devices(&devs, &media, Sink::Discard);
        assert_eq!(ends, vec![Hresult::VD_E_CLOSE]);
        assert_eq!(set.close().code(), Hresult::NOERROR);
        let numbers = stmt.join().unwrap();
        assert_eq!(numbers.last(), Some(&3014), "{numbers:?}");
    }

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn backup_over_tds(bencher: divan::Bencher) {
        bencher.counter(BytesCount::new(DB_BYTES)).bench(|| {
            backup(|text| {
                let mut c = tds_conn().lock().unwrap();
                messages(&batch(&mut c, &text))
                    .into_iter()
                    .map(|(_, n)| n)
                    .collect()
            })
        });
    }

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn backup_over_control(bencher: divan::Bencher) {
        bencher.counter(BytesCount::new(DB_BYTES)).bench(|| {
            backup(|text| {
                let mut c = control_conn().lock().unwrap();
                control_sql(&mut c, &text)
            })
        });
    }

    pub fn main() {
        divan::main();
        // Statics are not dropped at exit: stop the child explicitly.
        stop_serve();
    }
}

fn main() {
    #[cfg(unix)]
    imp::main();
    #[cfg(not(unix))]
    eprintln!("SKIPPED: the tds benchmark needs vdisim serve (Unix sockets and mmap)");
}
