//! The recording library's overhead (docs/RECORDING.md): a 1-device
//! BACKUP streamed from a `vdisim serve` child process through the Linux
//! class ABI, once through the stand-in `libsqlvdi.so` directly
//! (`standin`) and once through the recording library in front of it
//! (`recorded`), in the same process, in pairs (standin then recorded,
//! recorded then standin, alternately), at MAXTRANSFERSIZE 64 KiB (many
//! small commands: the per-call cost) and 4 MiB (the serve bench's size:
//! the digest's cost). Printed per size: the median wall time of each, the
//! throughput, and the median of the per-pair ratios recorded/standin — a
//! ratio of two backups run back to back holds on a shared, drifting
//! machine where absolute times do not — and the same for this process's
//! CPU time (`CLOCK_PROCESS_CPUTIME_ID`: the client side, where the
//! recorder runs; the server is another process), which waiting for a busy
//! core does not inflate.
//!
//! The process re-runs itself once per digest mode (`full`, `sample`,
//! `none`; `VDISIM_RECORD_DIGEST`) with the recorder's variables set
//! (`VDISIM_RECORD_REAL`, `VDISIM_RECORD_FILE` in a private directory,
//! `VDISIM_SERVER`). `VDISIM_RECORD_BENCH_PAIRS` sets the pairs per size
//! (default 15).
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it is a
//! smoke run: one pair at 4 MiB on a 16 MiB database, `sample` only.
//!
//! Run: `cargo bench -p vdi-conformance --bench record` (builds
//! `vdi-recorder` and `vdi-standin` in release first:
//! `cargo build --release -p vdi-standin -p vdi-recorder`).

#[cfg(unix)]
mod imp {
    use std::ffi::{CString, c_char, c_int, c_long, c_ulong, c_void};
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::OnceLock;
    use std::time::Instant;
    use vdi_conformance::backends::abi::{library_path, profile_dir};
    use vdi_host::remote::control::Control;
    use vdi_host::remote::wire::{Request, Response};
    use vdi_spec::{Features, VdConfig, VdcCommand};

    /// Bytes per backup (the `big` database).
    const DB_BYTES: u64 = 256 << 20;
    /// Bytes per backup in a smoke run (`cargo test --all-targets` runs
    /// this bench without `--bench`: one pair, one size, one mode).
    const SMOKE_BYTES: u64 = 16 << 20;

    /// Whether this is a smoke run (not `cargo bench`).
    fn smoke() -> bool {
        !std::env::args().any(|a| a == "--bench")
    }

    fn db_bytes() -> u64 {
        if smoke() { SMOKE_BYTES } else { DB_BYTES }
    }

    type This = *mut c_void;

    /// The class members of one loaded library.
    struct Lib {
        ctor: unsafe extern "C" fn(This),
        dtor: unsafe extern "C" fn(This),
        create: unsafe extern "C" fn(This, *const c_char, *mut VdConfig) -> c_int,
        get_configuration: unsafe extern "C" fn(This, c_long, *mut VdConfig) -> c_int,
        open_device: unsafe extern "C" fn(This, *const c_char, *mut This) -> c_int,
        close: unsafe extern "C" fn(This) -> c_int,
        get_command: unsafe extern "C" fn(This, c_long, *mut *mut VdcCommand) -> c_int,
        complete_command: unsafe extern "C" fn(This, *mut VdcCommand, c_int, c_ulong, i64) -> c_int,
    }

    fn load(path: &Path) -> Lib {
        // SAFETY: a VDI library (the stand-in or the recorder); its
        // initialisers have no preconditions. Leaked: never unloaded.
        let lib: &'static libloading::Library =
            Box::leak(Box::new(unsafe { libloading::Library::new(path) }.unwrap()));
        macro_rules! sym {
            ($n:literal) => {
                // SAFETY: the member's signature in Microsoft's Linux vdi.h.
                unsafe { *lib.get($n.as_bytes()).unwrap() }
            };
        }
        Lib {
            ctor: sym!("_ZN22ClientVirtualDeviceSetC1Ev"),
            dtor: sym!("_ZN22ClientVirtualDeviceSetD1Ev"),
            create: sym!("_ZN22ClientVirtualDeviceSet6CreateEPcP8VDConfig"),
            get_configuration: sym!("_ZN22ClientVirtualDeviceSet16GetConfigurationElP8VDConfig"),
            open_device: sym!("_ZN22ClientVirtualDeviceSet10OpenDeviceEPcPP19ClientVirtualDevice"),
            close: sym!("_ZN22ClientVirtualDeviceSet5CloseEv"),
            get_command: sym!("_ZN19ClientVirtualDevice10GetCommandElPP11VDC_Command"),
            complete_command: sym!("_ZN19ClientVirtualDevice15CompleteCommandEP11VDC_Commandiml"),
        }
    }

    struct Libs {
        standin: Lib,
        recorded: Lib,
        server: PathBuf,
    }

    fn libs() -> &'static Libs {
        static L: OnceLock<Libs> = OnceLock::new();
        L.get_or_init(|| Libs {
            standin: load(&PathBuf::from(
                std::env::var_os("VDISIM_RECORD_REAL").unwrap(),
            )),
            recorded: load(&recorder_path()),
            server: PathBuf::from(std::env::var_os("VDISIM_SERVER").unwrap()),
        })
    }

    fn recorder_path() -> PathBuf {
        let dir = profile_dir().unwrap();
        [
            dir.join("libsqlvdi_record.so"),
            dir.join("deps/libsqlvdi_record.so"),
        ]
        .into_iter()
        .find(|p| p.exists())
        .expect("libsqlvdi_record.so: cargo build --release -p vdi-recorder")
    }

    /// One backup through `lib`; the bytes moved.
    fn backup(lib: &Lib, mts: u64, n: u64) -> u64 {
        let name = format!("rec-bench-{mts}-{n}-{}", std::process::id());
        let cname = CString::new(name.clone()).unwrap();
        let mut obj: Box<u64> = Box::new(0);
        let this: This = (&mut *obj as *mut u64).cast();
        let mut cfg = VdConfig::client(1, Features::RequestComplete);
        // SAFETY: an 8-byte object to construct; a NUL-terminated name and
        // a VDConfig, as the header describes.
        unsafe {
            (lib.ctor)(this);
            assert_eq!((lib.create)(this, cname.as_ptr(), &mut cfg), 0);
        }
        let server = libs().server.clone();
        let text = format!(
            "BACKUP DATABASE big TO VIRTUAL_DEVICE='{name}' WITH MAXTRANSFERSIZE={mts}, BUFFERCOUNT=2"
        );
        let stmt = std::thread::spawn(move || {
            let mut c = Control::connect(&server, "bench").unwrap();
            c.request(Request::Sql {
                text,
                database: None,
                first_line: 1,
            })
            .unwrap()
        });
        let mut got = VdConfig::default();
        let mut dev: This = std::ptr::null_mut();
        let mut bytes = 0u64;
        // SAFETY: the set object constructed above; out-pointers to
        // locals; each command block is completed once, as delivered.
        unsafe {
            assert_eq!((lib.get_configuration)(this, 30_000, &mut got), 0);
            assert_eq!((lib.open_device)(this, cname.as_ptr(), &mut dev), 0);
            loop {
                let mut cmd: *mut VdcCommand = std::ptr::null_mut();
                if (lib.get_command)(dev, 30_000, &mut cmd) != 0 {
                    break;
                }
                let size = (*cmd).size;
                bytes += u64::from(size);
                (lib.complete_command)(dev, cmd, 0, c_ulong::from(size), 0);
            }
            assert_eq!((lib.close)(this), 0);
            (lib.dtor)(this);
        }
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

    /// This process's CPU time (every thread, user and system), seconds.
    fn cpu() -> f64 {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: an out-pointer to a local timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
        t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
    }

    fn median(v: &mut [f64]) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// The child: pairs of backups per size, and the figures.
    fn child() {
        let pairs: usize = if smoke() {
            1
        } else {
            std::env::var("VDISIM_RECORD_BENCH_PAIRS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(15)
        };
        let sizes: &[u64] = if smoke() {
            &[4 << 20]
        } else {
            &[64 << 10, 4 << 20]
        };
        let mode = std::env::var("VDISIM_RECORD_DIGEST").unwrap_or_default();
        let l = libs();
        let mut n = 0;
        // (wall seconds, this process's CPU seconds) of one backup.
        let mut time = |lib: &Lib, mts: u64| {
            n += 1;
            let (t, c) = (Instant::now(), cpu());
            assert!(backup(lib, mts, n) >= db_bytes());
            (t.elapsed().as_secs_f64(), cpu() - c)
        };
        for &mts in sizes {
            // Warm-up: one of each.
            time(&l.standin, mts);
            time(&l.recorded, mts);
            let (mut a, mut b, mut r, mut ca, mut cb, mut cr) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            for i in 0..pairs {
                let (x, y) = if i % 2 == 0 {
                    let x = time(&l.standin, mts);
                    (x, time(&l.recorded, mts))
                } else {
                    let y = time(&l.recorded, mts);
                    (time(&l.standin, mts), y)
                };
                a.push(x.0);
                b.push(y.0);
                r.push(y.0 / x.0);
                ca.push(x.1);
                cb.push(y.1);
                cr.push(y.1 / x.1);
            }
            let gbs = |s: f64| db_bytes() as f64 / s / 1e9;
            let (ma, mb) = (median(&mut a), median(&mut b));
            println!(
                "digest={mode:<6} MAXTRANSFERSIZE={:>4} KiB, {pairs} pairs: wall standin {:.1} ms ({:.2} GB/s), recorded {:.1} ms ({:.2} GB/s), ratio median {:.3}; client CPU standin {:.1} ms, recorded {:.1} ms, ratio median {:.3}",
                mts >> 10,
                ma * 1e3,
                gbs(ma),
                mb * 1e3,
                gbs(mb),
                median(&mut r),
                median(&mut ca) * 1e3,
                median(&mut cb) * 1e3,
                median(&mut cr),
            );
        }
    }

    /// The parent: starts `vdisim serve`, re-runs this bench with the
    /// recorder's variables, stops the server, removes its directory.
    fn parent() -> i32 {
        let dir = std::env::temp_dir().join(format!("vdisim-record-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("serve.sock");
        let mut serve = Command::new(env!("CARGO_BIN_EXE_vdisim"))
            .args(["serve", "--ephemeral", "--listen"])
            .arg(&sock)
            .args(["--database", &format!("big={}", db_bytes())])
            .args(["--exit-with", &std::process::id().to_string()])
            .spawn()
            .expect("vdisim serve starts");
        let t0 = std::time::Instant::now();
        while Control::connect(&sock, "wait").is_err() {
            assert!(t0.elapsed().as_secs() < 30, "vdisim serve never listened");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut code = 0;
        let modes: &[&str] = if smoke() {
            &["sample"]
        } else {
            &["full", "sample", "none"]
        };
        for mode in modes {
            let file = dir.join(format!("bench-{mode}.jsonl"));
            let st = Command::new(std::env::current_exe().unwrap())
                .args(std::env::args_os().skip(1))
                .env("VDISIM_RECORD_REAL", library_path().unwrap())
                .env("VDISIM_RECORD_FILE", &file)
                .env("VDISIM_RECORD_DIGEST", mode)
                .env("VDISIM_SERVER", &sock)
                .status()
                .unwrap();
            if let Ok(m) = std::fs::metadata(&file) {
                println!("digest={mode}: the recording has {} bytes", m.len());
                let _ = std::fs::remove_file(&file);
            }
            code = code.max(st.code().unwrap_or(1));
        }
        let _ = serve.kill();
        let _ = serve.wait();
        let _ = std::fs::remove_dir_all(&dir);
        code
    }

    pub fn main() {
        if std::env::var_os("VDISIM_RECORD_FILE").is_none() {
            std::process::exit(parent());
        }
        child();
    }
}

fn main() {
    #[cfg(unix)]
    imp::main();
    #[cfg(not(unix))]
    eprintln!("SKIPPED: the record benchmark needs vdisim serve (Unix sockets and mmap)");
}
