//! The in-process server through the Rust API ([`SetCore`] over a runtime
//! connected to an [`PlanConnector`]): a round trip, a corrupted restore
//! the server catches byte for byte, a server abort after N commands, the
//! watchdog, an Open failure, buffer handles, and plan parsing.

use sqlvdi::SetCore;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use vdi_host::plan::{Board, PlanConnector, PlanFile};
use vdi_host::runtime::{CreateKind, SetRuntime};
use vdi_model::msg::Timeout;
use vdi_model::outcome::{FailReason, Status};
use vdi_spec::{CommandCode, Features, Hresult, VdConfig, Win32};

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

fn unique(p: &str) -> String {
    format!(
        "{p}-{}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::SeqCst)
    )
}

fn host(plan: &str) -> (Arc<SetCore>, Arc<Board>) {
    let plan = PlanFile::from_toml(plan).expect("plan");
    let c = PlanConnector::new(plan, 3);
    let board = c.board();
    let rt = SetRuntime::new(c.profile(), Arc::new(c));
    (SetCore::with_runtime(rt), board)
}

/// Bytes a device holds (the client's media).
type Media = Vec<Vec<u8>>;

/// Serves one device until its GetCommand or CompleteCommand fails;
/// returns that code. `corrupt` flips one byte of the first Read.
fn serve_device(d: &sqlvdi::DevCore, media: &mut Vec<u8>, corrupt: bool) -> Hresult {
    let mut cursor = 0usize;
    let mut first_read = true;
    loop {
        let p = match d.get_command(Timeout::Ms(10_000)) {
            Ok(p) => p,
            Err(e) => return e,
        };
        // SAFETY: a block the library handed out, alive until completed.
        let c = unsafe { p.read() };
        let code = CommandCode::from_u32(c.command_code).expect("code");
        let size = c.size as usize;
        let (status, bytes) = match code {
            CommandCode::Write => {
                // SAFETY: the command's buffer holds `size` bytes, ours
                // until CompleteCommand.
                let s = unsafe { std::slice::from_raw_parts(c.buffer, size) };
                media.extend_from_slice(s);
                (Win32::ERROR_SUCCESS, size)
            }
            CommandCode::Read => {
                let k = size.min(media.len() - cursor);
                // SAFETY: as above, writable.
                let s = unsafe { std::slice::from_raw_parts_mut(c.buffer, k) };
                s.copy_from_slice(&media[cursor..cursor + k]);
                if corrupt && first_read && k > 100 {
                    s[100] ^= 0x5a;
                }
                first_read = false;
                cursor += k;
                let st = if k == 0 {
                    Win32::ERROR_HANDLE_EOF
                } else {
                    Win32::ERROR_SUCCESS
                };
                (st, k)
            }
            _ => (Win32::ERROR_SUCCESS, 0),
        };
        let r = d.complete_command(p as usize, status.0, bytes as u64, 0);
        if r != Hresult::NOERROR {
            return r;
        }
    }
}

/// Runs one statement from the client side over `n` devices, one thread
/// each; `corrupt` corrupts device 0's first Read. Returns the code that
/// ended each device's loop.
fn serve(
    set: &Arc<SetCore>,
    name: &str,
    n: usize,
    media: &mut Media,
    corrupt: bool,
) -> Vec<Hresult> {
    let cfg = VdConfig::client(n as u32, Features::LikePipe);
    assert_eq!(set.create(CreateKind::Create, name, &cfg), Hresult::NOERROR);
    set.get_configuration(Timeout::Ms(10_000))
        .expect("configured");
    let names: Vec<String> = (0..n)
        .map(|i| {
            if i == 0 {
                name.to_string()
            } else {
                format!("{name}-dev{i}")
            }
        })
        .collect();
    let devs: Vec<_> = names
        .iter()
        .map(|d| set.open_device(d).expect("open"))
        .collect();
    let ends = std::thread::scope(|s| {
        let hs: Vec<_> = devs
            .iter()
            .zip(media.iter_mut())
            .enumerate()
            .map(|(i, (d, m))| s.spawn(move || serve_device(d, m, corrupt && i == 0)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("device thread"))
            .collect()
    });
    set.close();
    ends
}

const ROUNDTRIP: &str = r#"
[[statement]]
kind = "backup-database"
database = "db"
data-bytes = 300000
max-transfer-size = 131072

[[statement]]
kind = "restore-database"
database = "db"
read-sizes = { seeded = 11 }
max-transfer-size = 131072
"#;

/// restore.byte-identical through real buffers: BACKUP then RESTORE over 3
/// devices succeed; a RESTORE fed one wrong byte fails (BadMedia).
#[test]
fn roundtrip_then_corrupted_restore_fails() {
    let (set, board) = host(&format!(
        "{ROUNDTRIP}\n[[statement]]\nkind = \"restore-database\"\ndatabase = \"db\"\nmax-transfer-size = 131072\n"
    ));
    let name = unique("rs");
    let mut media: Media = vec![Vec::new(); 3];
    let ends = serve(&set, &name, 3, &mut media, false);
    assert_eq!(ends, vec![Hresult::VD_E_CLOSE; 3]);
    let b = board.wait_latest(None).unwrap();
    assert_eq!(b.outcome.status, Status::Succeeded, "{:?}", b.outcome);
    assert_eq!(
        b.outcome.bytes,
        300_032 + 3 * vdi_model::media::HEADER_BYTES,
        "300000 rounded up to 512, and a media header per family"
    );
    let ends = serve(&set, &name, 3, &mut media, false);
    assert_eq!(ends, vec![Hresult::VD_E_CLOSE; 3]);
    let r = board.wait_latest(None).unwrap();
    assert_eq!(r.outcome.status, Status::Succeeded, "{:?}", r.outcome);
    // The third statement reads the same media with one byte flipped.
    let _ = serve(&set, &name, 3, &mut media, true);
    let r = board.wait_latest(None).unwrap();
    assert_eq!(r.outcome.status, Status::Failed, "{:?}", r.outcome);
    assert_eq!(r.outcome.reason, Some(FailReason::BadMedia));
    assert_eq!(board.runs().len(), 3);
}

/// abort.server-signal: the plan's server abort once the client has
/// completed 3 commands reaches the client mid-stream as VD_E_ABORT; the statement fails with ServerAbort.
#[test]
fn server_abort_after_commands() {
    let (set, board) = host(
        r#"
[[statement]]
kind = "backup-database"
data-bytes = 1048576
abort-after-commands = 3
"#,
    );
    let name = unique("abort");
    let mut media: Media = vec![Vec::new(); 1];
    let ends = serve(&set, &name, 1, &mut media, false);
    assert_eq!(ends, vec![Hresult::VD_E_ABORT]);
    let r = board.wait_latest(None).unwrap();
    assert_eq!(r.outcome.status, Status::Failed);
    assert_eq!(r.outcome.reason, Some(FailReason::ServerAbort));
}

/// watchdog.fires: with serverTimeOut = 50 ms and a client that never
/// completes, the server thread's timer aborts the set; the blocked
/// GetCommand returns VD_E_ABORT.
#[test]
fn watchdog_fires_on_real_time() {
    let (set, board) = host("[[statement]]\nkind = \"backup-database\"\n");
    let name = unique("wd");
    let mut cfg = VdConfig::client(1, Features::LikePipe);
    cfg.server_time_out = 50;
    assert_eq!(
        set.create(CreateKind::Create, &name, &cfg),
        Hresult::NOERROR
    );
    set.get_configuration(Timeout::Ms(10_000)).unwrap();
    let d = set.open_device(&name).unwrap();
    // Take commands, never complete them.
    let mut got = 0;
    let end = loop {
        match d.get_command(Timeout::Infinite) {
            Ok(_) => got += 1,
            Err(e) => break e,
        }
    };
    assert!(got > 0);
    assert_eq!(end, Hresult::VD_E_ABORT);
    let r = board.wait_latest(None).unwrap();
    assert_eq!(r.outcome.reason, Some(FailReason::Watchdog));
    assert_eq!(set.close(), Hresult::NOERROR);
}

/// server.open-missing-set: the server cannot open the set; the client's
/// GetConfiguration times out (field notes row 6).
#[test]
fn open_failure_means_configuration_times_out() {
    let (set, board) = host("[[statement]]\nkind = \"backup-database\"\nopen-fails = true\n");
    let name = unique("of");
    let cfg = VdConfig::client(1, Features::LikePipe);
    assert_eq!(
        set.create(CreateKind::Create, &name, &cfg),
        Hresult::NOERROR
    );
    assert_eq!(
        set.get_configuration(Timeout::Ms(100)).unwrap_err(),
        Hresult::VD_E_TIMEOUT
    );
    let r = board.wait_latest(None).unwrap();
    assert_eq!(r.outcome.reason, Some(FailReason::OpenFailed));
    assert_eq!(set.close(), Hresult::NOERROR);
}

/// buffer-handle.roundtrip: a buffer address maps to a handle and back.
#[test]
fn buffer_handles_roundtrip() {
    let (set, _board) = host("[[statement]]\nkind = \"backup-database\"\n");
    let name = unique("bh");
    let cfg = VdConfig::client(1, Features::LikePipe);
    assert_eq!(
        set.create(CreateKind::Create, &name, &cfg),
        Hresult::NOERROR
    );
    set.get_configuration(Timeout::Ms(10_000)).unwrap();
    let d = set.open_device(&name).unwrap();
    let p = d.get_command(Timeout::Ms(10_000)).unwrap();
    // SAFETY: a live block handed out by the library.
    let buf = unsafe { p.read() }.buffer as usize;
    assert_ne!(buf, 0);
    let h = set.get_buffer_handle(buf).unwrap();
    assert_eq!(set.map_buffer_handle(h), Ok(buf));
    assert_eq!(set.get_buffer_handle(buf + 1), Err(Hresult::VD_E_INVALID));
    assert_eq!(set.map_buffer_handle(0xdead), Err(Hresult::VD_E_INVALID));
    assert_eq!(set.close(), Hresult::VD_E_OPEN, "device still open");
}

/// The plan format rejects unknown keys and reads every documented one.
#[test]
fn plan_format() {
    let p = PlanFile::from_toml(
        r#"
[profile]
completion-order = "in-order"

[[statement]]
kind = "restore-header-only"
database = "x"
devices = ["a", "b"]
block-size = 4096
max-transfer-size = 1048576
buffer-count = 6
data-bytes = 10
mid-flushes = 2
read-sizes = { cycle = [4096, 8192] }
metadata-bytes = 8192
extra-commands = [{ dev = 0, after_data_commands = 1, code = "GetPosition" }]
abort-after-commands = 5
abort-after-ms = 100
open-fails = false
"#,
    )
    .expect("full plan");
    assert_eq!(p.statements.len(), 1);
    assert_eq!(p.statements[0].spec.buffer_count, Some(6));
    assert_eq!(p.statements[0].abort_after_commands, Some(5));
    assert!(PlanFile::from_toml("[[statement]]\nkind = \"backup-database\"\nbogus = 1\n").is_err());
    assert!(PlanFile::from_toml("[[statement]]\nkind = \"nonsense\"\n").is_err());
    // Beyond the bounds: refused at load, naming the statement and the bound.
    let e = PlanFile::from_toml("[[statement]]\ndata-bytes = 4611686018427387904\n").unwrap_err();
    assert!(
        e.contains("statement #1") && e.contains("data-bytes"),
        "{e}"
    );
    assert_eq!(vdi_host::plan::parse_seed("0x10").unwrap(), 16);
    assert!(vdi_host::plan::parse_seed("ten").is_err());
}
