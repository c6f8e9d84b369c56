//! Real SQL Server drivers against `vdisim serve --tds`, with and without
//! encryption (TLS inside PRELOGIN): Microsoft ODBC Driver 18 (PyPI
//! `mssql-python`, which bundles it), FreeTDS (PyPI `pymssql`),
//! python-tds, Node's tedious, and tiberius (feature `tds`).
//!
//! For each driver and encryption mode the in-repo C++ VDI client
//! (`clients/vdi_client.cpp`, sqlcmd mode) backs `sales` up to a virtual
//! device and restores it, running as its `sqlcmd` a small script over the
//! driver (`clients/tds/`) that sends the statement parameterized
//! (`VIRTUAL_DEVICE = @dev`, an RPC through the driver's own parameter
//! mechanism) and prints the messages; the client believes it succeeded
//! only when the script exited 0 and its devices ended cleanly. Then a
//! failing BACKUP must raise the driver's error carrying SQL Server's
//! number (3201/3013). A driver that is not installed makes its test print
//! `SKIPPED: <why>` and pass (`.ci/run` installs them all under target/).

#![cfg(unix)]

#[path = "support/clients.rs"]
mod clients;
#[path = "support/scratch.rs"]
mod scratch;
#[path = "support/tds_drivers.rs"]
mod tds_drivers;

use clients::{BuildError, Lang, Op};
use scratch::Scratch;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use vdi_sqlserver::serve::{ServeConfig, Server};

const PASSWORD: &str = "Secr3t!";
/// The longest one client program or driver run may take.
const BOUND: Duration = Duration::from_secs(90);

/// A server with TDS on a free port, its certificate in `cert.pem`.
struct World {
    /// Dropped first: it stops through its socket, inside `d`.
    server: Server,
    addr: SocketAddr,
    d: Scratch,
}

impl World {
    fn start(tag: &str) -> World {
        World::start_with(tag, |_| {})
    }

    fn start_with(tag: &str, tune: impl FnOnce(&mut ServeConfig)) -> World {
        let d = Scratch::new(tag);
        let mut cfg = ServeConfig::new(d.path("s.sock"));
        cfg.databases = vec![("sales".into(), 1 << 20)];
        cfg.tds = Some("127.0.0.1:0".parse().unwrap());
        cfg.logins = vec![("sa".into(), PASSWORD.into())];
        tune(&mut cfg);
        let server = Server::start(cfg).expect("the server starts");
        let addr = server.tds_addr().expect("TDS is served");
        let pem = server.tds_certificate_pem().expect("TLS is on by default");
        std::fs::write(d.path("cert.pem"), pem).unwrap();
        World { d, server, addr }
    }

    fn server_arg(&self) -> String {
        format!("127.0.0.1,{}", self.addr.port())
    }
}

/// How a driver is run as `sqlcmd`.
struct Driver {
    name: &'static str,
    /// The program and its first arguments (the script).
    program: Vec<String>,
    /// Environment for the script.
    env: Vec<(&'static str, String)>,
    /// Whether the driver's error carries SQL Server's message number
    /// (mssql-python's exceptions keep only SQLSTATE and the text).
    numbers: bool,
    /// Whether the driver shows the messages of a parameterized statement
    /// (mssql-python 1.16 loses the diagnostics of SQLExecute with
    /// parameters, whatever the token order: checked against a minimal
    /// mock server with five orders; its SQL batches show them).
    rpc_messages: bool,
}

impl Driver {
    fn python(name: &'static str) -> Driver {
        Driver {
            name,
            program: vec![
                tds_drivers::python(),
                tds_drivers::scripts_dir()
                    .join("sqlcmd_driver.py")
                    .display()
                    .to_string(),
            ],
            env: vec![("VDISIM_DRIVER", name.into())],
            numbers: name != "mssql_python",
            rpc_messages: name != "mssql_python",
        }
    }

    fn tedious() -> Driver {
        Driver {
            name: "tedious",
            program: vec![
                "node".into(),
                tds_drivers::scripts_dir()
                    .join("sqlcmd_tedious.js")
                    .display()
                    .to_string(),
            ],
            env: vec![("NODE_PATH", tds_drivers::node_path())],
            numbers: true,
            rpc_messages: true,
        }
    }

    /// A `bin/sqlcmd` that runs the driver script (what the C++ client
    /// finds on PATH).
    fn shim(&self, w: &World, mode: &str) -> PathBuf {
        let dir = w.d.path(&format!("bin-{}-{mode}", self.name));
        std::fs::create_dir_all(&dir).unwrap();
        let quoted: Vec<String> = self
            .program
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let path = dir.join("sqlcmd");
        std::fs::write(
            &path,
            format!("#!/bin/sh\nexec {} \"$@\"\n", quoted.join(" ")),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn envs(&self, c: &mut Command, w: &World, mode: &str) {
        c.env("VDISIM_DRIVER_ENCRYPT", mode)
            .env("VDISIM_DRIVER_USER", "sa")
            .env("VDISIM_DRIVER_PASSWORD", PASSWORD)
            .env("VDISIM_DRIVER_CAFILE", w.d.path("cert.pem"));
        for (k, v) in &self.env {
            c.env(k, v);
        }
    }
}

/// Runs `c` to its end within [`BOUND`] (killed past it): exit status and
/// everything it printed.
fn run(mut c: Command, what: &str) -> (ExitStatus, String) {
    let mut child: Child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} starts: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {BOUND:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, o.join().unwrap() + &e.join().unwrap())
}

/// The C++ client, or `None` after printing SKIPPED (no g++).
fn cpp_client() -> Option<PathBuf> {
    match clients::build(Lang::Cpp, None) {
        Ok(p) => Some(p),
        Err(BuildError::Unavailable(why)) => {
            println!("SKIPPED: {why}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// The C++ client backs `sales` up and restores it through `driver` in
/// encryption `mode`, the statement parameterized (or, `params` false, as
/// a SQL batch); then a failing BACKUP raises SQL Server's error.
fn roundtrip(w: &World, exe: &Path, driver: &Driver, mode: &str, params: bool) {
    let bin = driver.shim(w, mode);
    let file = w.d.path(&format!("media-{}-{mode}", driver.name));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for op in [Op::Backup, Op::Restore] {
        let backups = w.server.status().backups;
        let set = format!("{}-{mode}-{}", driver.name, op.as_str());
        let mut c = Command::new(exe);
        c.args(clients::args(op, "sales", &set, 1, &file, &w.server_arg()))
            .env("VDISIM_SERVER", w.server.path())
            .env("PATH", &path)
            .env_remove("VDISIM_PLAN")
            .env_remove("LD_LIBRARY_PATH")
            .env("VDISIM_DRIVER_PARAMS", if params { "1" } else { "0" });
        driver.envs(&mut c, w, mode);
        let what = format!(
            "{} {} ({mode}, {})",
            driver.name,
            op.as_str(),
            if params { "parameterized" } else { "SQL batch" }
        );
        let (st, out) = run(c, &what);
        println!("{what}: {st}");
        assert!(st.success(), "{what}: {st}\n{out}");
        assert!(out.contains(&format!("{} succeeded", op.as_str())), "{out}");
        assert!(out.contains("VERSION Microsoft SQL Server"), "{out}");
        if params && !driver.rpc_messages && out.contains("successfully processed") {
            // A newer driver release (pip takes the latest) shows them.
            println!(
                "NOTE: {} now shows the messages of a parameterized statement: set rpc_messages",
                driver.name
            );
        }
        assert!(
            (params && !driver.rpc_messages)
                || out.contains(&format!(
                    "{} DATABASE successfully processed",
                    op.as_str().to_uppercase()
                )),
            "the 3014 message reached the driver: {out}"
        );
        if op == Op::Backup {
            assert_eq!(w.server.status().backups, backups + 1, "{out}");
        }
    }
    // A failing statement: the driver's error carries SQL Server's number.
    let mut c = Command::new(&driver.program[0]);
    c.args(&driver.program[1..]).args([
        "-S",
        &w.server_arg(),
        "-E",
        "-b",
        "-Q",
        "BACKUP DATABASE [sales] TO VIRTUAL_DEVICE='no-such-set'",
    ]);
    driver.envs(&mut c, w, mode);
    let what = format!("{} failing BACKUP ({mode})", driver.name);
    let (st, out) = run(c, &what);
    assert_eq!(st.code(), Some(1), "{what}: {out}");
    if driver.numbers {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ERROR 3201") || l.starts_with("ERROR 3013")),
            "{what}: SQL Server's number in the driver's error: {out}"
        );
    } else {
        // Msg 3201's text, as SQL Server words it.
        assert!(
            out.lines()
                .any(|l| l.starts_with("ERROR")
                    && l.contains("Cannot open backup device 'no-such-set'")),
            "{what}: SQL Server's error in the driver's: {out}"
        );
    }
}

fn drive(tag: &str, driver: Driver, modes: &[&str]) {
    let Some(exe) = cpp_client() else {
        return;
    };
    let w = World::start(tag);
    for mode in modes {
        roundtrip(&w, &exe, &driver, mode, true);
        if !driver.rpc_messages {
            // The messages, through the same driver and encryption.
            roundtrip(&w, &exe, &driver, mode, false);
        }
    }
}

/// Microsoft ODBC Driver 18 (mssql-python): `Encrypt=yes;
/// TrustServerCertificate=yes` (TLS throughout; ODBC 18's default is
/// encryption on), `Encrypt=no` (ENCRYPT_OFF: the login only is
/// encrypted) and `Encrypt=strict` (TDS 8: TLS first, the certificate
/// checked against the server's). Parameters go through sp_prepexec.
#[test]
fn odbc_driver_18_backs_up_and_restores() {
    if tds_drivers::have_python_module("odbc_driver_18", "mssql_python", "mssql-python") {
        drive(
            "odbc",
            Driver::python("mssql_python"),
            &["full", "login", "strict"],
        );
    }
}

/// FreeTDS (pymssql's bundled libtds): `encryption="off"` (plaintext),
/// `"request"` (login only), `"require"` (TLS throughout); the statement
/// goes as an RPC to sp_executesql.
#[test]
fn freetds_backs_up_and_restores() {
    if tds_drivers::have_python_module("freetds", "pymssql", "pymssql") {
        drive(
            "freetds",
            Driver::python("pymssql"),
            &["plain", "login", "full"],
        );
    }
}

/// python-tds: plaintext, and TLS with the server's certificate as its
/// CA file, for the login only and throughout.
#[test]
fn python_tds_backs_up_and_restores() {
    if tds_drivers::have_python_module("python_tds", "pytds", "python-tds pyOpenSSL")
        && tds_drivers::have_python_module("python_tds", "OpenSSL", "pyOpenSSL")
    {
        drive(
            "pytds",
            Driver::python("pytds"),
            &["plain", "login", "full"],
        );
        let Some(exe) = cpp_client() else {
            return;
        };
        // --tls-required: the login-only offer gets the whole session
        // encrypted; a client without encryption is refused at login.
        let w = World::start_with("pytds-required", |cfg| {
            cfg.tls = Some(vdi_sqlserver::tds::tls::TlsOptions {
                cert_key: None,
                required: true,
            })
        });
        let driver = Driver::python("pytds");
        roundtrip(&w, &exe, &driver, "login", true);
        let mut c = Command::new(&driver.program[0]);
        c.args(&driver.program[1..])
            .args(["-S", &w.server_arg(), "-E", "-b", "-Q", "USE sales"]);
        driver.envs(&mut c, &w, "plain");
        let (st, out) = run(c, "pytds without encryption against --tls-required");
        assert!(!st.success(), "{out}");
        assert!(out.to_lowercase().contains("encrypt"), "says why: {out}");
    }
}

/// tedious: `encrypt: false` (plaintext) and `encrypt: true` with
/// `trustServerCertificate` (TLS throughout); parameters go through
/// sp_executesql.
#[test]
fn tedious_backs_up_and_restores() {
    if tds_drivers::have_tedious("tedious") {
        drive("tedious", Driver::tedious(), &["plain", "full"]);
    }
}

/// tiberius (feature `tds`) with `EncryptionLevel::NotSupported`
/// (plaintext), `Off` (login only) and `Required` (TLS throughout), the
/// certificate trusted (`trust_cert`): the in-repo C client (ready-line
/// mode) creates its set, tiberius sends the BACKUP and then the RESTORE
/// parameterized (`execute`: an RPC to sp_executesql) while the client
/// streams. tiberius 0.13 hands INFO tokens to no caller, so the messages
/// are not read here; a failing BACKUP's error carries 3201/3013.
#[cfg(feature = "tds")]
#[test]
fn tiberius_backs_up_and_restores() {
    use std::io::{BufRead, BufReader};
    use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
    use tokio_util::compat::TokioAsyncWriteCompatExt;
    let exe = match clients::build(Lang::C, None) {
        Ok(p) => p,
        Err(BuildError::Unavailable(why)) => {
            println!("SKIPPED: {why}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let w = World::start("tiberius");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for level in [
        EncryptionLevel::NotSupported,
        EncryptionLevel::Off,
        EncryptionLevel::Required,
    ] {
        let mut cfg = Config::new();
        cfg.host("127.0.0.1");
        cfg.port(w.addr.port());
        cfg.authentication(AuthMethod::sql_server("sa", PASSWORD));
        cfg.encryption(level);
        cfg.trust_cert();
        let mut client = rt
            .block_on(async {
                let tcp = tokio::net::TcpStream::connect(w.addr).await?;
                tcp.set_nodelay(true)?;
                Client::connect(cfg, tcp.compat_write()).await
            })
            .unwrap_or_else(|e| panic!("tiberius {level:?} logs in: {e}"));
        let file = w.d.path(&format!("media-tiberius-{level:?}"));
        for op in [Op::Backup, Op::Restore] {
            let backups = w.server.status().backups;
            let set = format!("tiberius-{level:?}-{}", op.as_str());
            let mut child = Command::new(&exe)
                .args(clients::args(op, "sales", &set, 1, &file, &w.server_arg()))
                .env("VDISIM_SERVER", w.server.path())
                .env_remove("VDISIM_PLAN")
                .env_remove("LD_LIBRARY_PATH")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("READY"));
            let sql = match op {
                Op::Backup => "BACKUP DATABASE [sales] TO VIRTUAL_DEVICE = @P1",
                Op::Restore => "RESTORE DATABASE [sales] FROM VIRTUAL_DEVICE = @P1",
            };
            let r = rt.block_on(client.execute(sql, &[&set.as_str()]));
            let st = child.wait().unwrap();
            r.unwrap_or_else(|e| panic!("tiberius {level:?} {}: {e}", op.as_str()));
            assert!(st.success(), "the C client {level:?} {}: {st}", op.as_str());
            if op == Op::Backup {
                assert_eq!(w.server.status().backups, backups + 1);
            }
        }
        let err = rt
            .block_on(client.execute(
                "BACKUP DATABASE [sales] TO VIRTUAL_DEVICE = @P1",
                &[&"no-such-set"],
            ))
            .expect_err("a BACKUP to a set nobody made fails");
        match &err {
            tiberius::error::Error::Server(t) => {
                assert!([3201, 3013].contains(&t.code()), "{err}")
            }
            other => panic!("tiberius {level:?}: not SQL Server's error: {other}"),
        }
        println!("tiberius {level:?}: backup, restore and a failing backup");
    }
}
