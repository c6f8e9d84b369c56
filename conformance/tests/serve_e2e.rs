//! End to end with real processes: `vdisim serve` running as its own
//! process, the in-project C++ client (sim/standin/samples/cpp_linux_client.cpp)
//! linked against the stand-in `libsqlvdi.so`, starting its BACKUP and
//! RESTORE through `sqlcmd` — a link to `vdisim` on PATH — and the
//! database's content checked afterwards through `vdisim serve --status`.
//! Then the server process is killed mid-stream and the client sees the
//! abort (clause `abort.server-death`).
//!
//! Needs g++; without it the C++ part prints `SKIPPED: <why>`.

#![cfg(unix)]

#[path = "support/remote_client.rs"]
mod remote_client;

use remote_client::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use vdi_conformance::backends::abi::library_path;
use vdi_host::remote::control::Control;
use vdi_host::remote::wire::Request;
use vdi_model::msg::Timeout;
use vdi_spec::Hresult;

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vdisim-e2e-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Serve {
    child: Child,
    sock: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_serve(dir: &Path, databases: &[&str]) -> Serve {
    let sock = dir.join("serve.sock");
    let mut c = Command::new(VDISIM);
    c.args(["serve", "--ephemeral", "--listen"])
        .arg(&sock)
        .arg("--trace")
        .arg(dir.join("trace.jsonl"));
    for d in databases {
        c.args(["--database", d]);
    }
    let child = c
        .stderr(Stdio::null())
        .spawn()
        .expect("vdisim serve starts");
    wait_listening(&sock);
    Serve { child, sock }
}

fn status(sock: &Path) -> serde_json::Value {
    let o = Command::new(VDISIM)
        .args(["serve", "--status", "--listen"])
        .arg(sock)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn database<'a>(st: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    st["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no database {name} in {st}"))
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn cpp_client_backs_up_and_restores_through_sqlcmd_on_path() {
    if !have("g++") {
        println!("SKIPPED: g++ not found: the C++ client was not built");
        return;
    }
    let dir = scratch("cpp");
    let lib = library_path().expect("the stand-in library");
    let libdir = lib.parent().unwrap();
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sim/standin");
    let exe = dir.join("cpp_linux_client");
    let o = Command::new("g++")
        .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("samples/cpp_linux_client.cpp"))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(libdir)
        .args(["-lsqlvdi", "-lpthread"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "g++: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // `sqlcmd` on PATH is a link to vdisim.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(VDISIM, bin.join("sqlcmd")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let serve = start_serve(&dir, &["sales=1MiB", "hr=256KiB"]);
    let before = status(&serve.sock);
    let out = Command::new(&exe)
        .arg("sqlcmd-roundtrip")
        .arg("sales")
        .env("VDISIM_SERVER", &serve.sock)
        .env("LD_LIBRARY_PATH", libdir)
        .env("PATH", &path)
        .env_remove("VDISIM_PLAN")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "backup: sqlcmd: Processed",
        "backup: sqlcmd: BACKUP DATABASE successfully processed",
        "backup: sqlcmd exit status = 0",
        "restore: sqlcmd: RESTORE DATABASE successfully processed",
        "restore: sqlcmd exit status = 0",
        "RESULT sqlcmd-roundtrip SUCCEEDED",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let after = status(&serve.sock);
    let (b, a) = (database(&before, "sales"), database(&after, "sales"));
    assert_eq!(a["state"], "online");
    assert_eq!(a["restored_from"], 1, "{after}");
    assert_eq!(
        a["content"], b["content"],
        "the restored content is the backed-up content"
    );
    assert_eq!(a["size"], 1 << 20);
    assert_eq!(
        database(&after, "hr"),
        database(&before, "hr"),
        "hr untouched"
    );
    assert_eq!(after["backups"], 1);
    assert_eq!(after["sets"].as_array().unwrap().len(), 0);

    // The trace saw both sets come and go and both statements, with the
    // server half's events.
    let trace = std::fs::read_to_string(dir.join("trace.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = trace
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |f: &dyn Fn(&serde_json::Value) -> bool| lines.iter().filter(|l| f(l)).count();
    assert_eq!(count(&|l| l["event"] == "created"), 2, "{trace}");
    assert_eq!(count(&|l| l["event"] == "closed"), 2, "{trace}");
    assert_eq!(
        count(&|l| l["statement"]
            .as_str()
            .is_some_and(|t| t.starts_with("BACKUP DATABASE [sales]"))),
        1
    );
    assert_eq!(
        count(&|l| l["statement"]
            .as_str()
            .is_some_and(|t| t.starts_with("RESTORE DATABASE [sales]"))),
        1
    );
    assert!(
        lines.len() > 20,
        "the server half's events follow each statement"
    );

    // sqlcmd's failure path, as a program on PATH would see it: a syntax
    // error with -b exits 1 and prints SQL Server's Msg 102 lines.
    let o = Command::new("sqlcmd")
        .env("PATH", &path)
        .env("VDISIM_SERVER", &serve.sock)
        .args([
            "-S",
            "localhost",
            "-E",
            "-b",
            "-Q",
            "BACKUP DATABSE sales TO VIRTUAL_DEVICE='x'",
        ])
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("Msg 102, Level 15"), "{t}");
    assert!(t.contains("Incorrect syntax near 'DATABSE'"), "{t}");
}

#[test]
fn killing_the_server_process_aborts_the_client() {
    let dir = scratch("kill");
    let mut serve = start_serve(&dir, &["sales=64MiB"]);
    let set = set_at(&serve.sock);
    assert_eq!(create(&set, "victim", 1), Hresult::NOERROR);
    let sock = serve.sock.clone();
    let stmt = std::thread::spawn(move || {
        let mut c = Control::connect(&sock, "e2e").unwrap();
        c.request(Request::Sql {
            text: "BACKUP DATABASE sales TO VIRTUAL_DEVICE='victim'".into(),
            database: None,
            first_line: 1,
        })
    });
    let devs = open_all(&set, "victim", 1).expect("configured");
    let c = devs[0]
        .get_command(Timeout::Ms(10_000))
        .expect("a first command");
    serve.child.kill().unwrap();
    serve.child.wait().unwrap();
    // The server is gone: once the commands it sent before dying are used
    // up, the client's calls see the abort (never a hang).
    let _ = devs[0].complete(&c, vdi_spec::Win32::ERROR_SUCCESS, u64::from(c.size));
    let mut end = None;
    for _ in 0..64 {
        match devs[0].get_command(Timeout::Ms(10_000)) {
            Ok(c) => {
                let _ = devs[0].complete(&c, vdi_spec::Win32::ERROR_SUCCESS, u64::from(c.size));
            }
            Err(e) => {
                end = Some(e);
                break;
            }
        }
    }
    assert_eq!(end, Some(Hresult::VD_E_ABORT));
    // Close in Abort releases the set (client table, Close × Abort).
    assert_eq!(set.close().code(), Hresult::NOERROR);
    assert!(
        stmt.join().unwrap().is_err(),
        "the SQL connection is lost too"
    );
}
