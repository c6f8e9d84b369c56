//! `vdisim serve --tcp-bridge`: the TCP bridge Windows programs under Wine
//! reach the server through, exercised from Linux: the in-repo C client
//! (ready-line mode) with `VDISIM_SERVER=tcp:…` and the printed secret backs
//! up through the bridge (its set connection over TCP, its buffers in the
//! server's shared memory), the statement sent by `vdisim sqlcmd` over the
//! socket; the same client told a wrong secret never reaches the server.

#![cfg(unix)]

#[path = "support/clients.rs"]
mod clients;
#[path = "support/scratch.rs"]
mod scratch;

use clients::{BuildError, Lang, Op};
use scratch::Scratch;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VDISIM: &str = env!("CARGO_BIN_EXE_vdisim");

/// A child killed and reaped when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `c` at most `bound`.
fn wait(c: &mut Child, bound: Duration) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    while t0.elapsed() < bound {
        if let Some(s) = c.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn a_client_backs_up_through_the_tcp_bridge() {
    let prog = match clients::build(Lang::C, None) {
        Ok(p) => p,
        Err(BuildError::Unavailable(why)) => {
            println!("SKIPPED: {why}");
            return;
        }
        Err(BuildError::Failed(e)) => panic!("{e}"),
    };
    let dir = Scratch::new("bridge");
    let sock = dir.path("s.sock");
    let mut serve = Guard(
        Command::new(VDISIM)
            .args(["serve", "--ephemeral", "--listen"])
            .arg(&sock)
            .args(["--exit-with", &std::process::id().to_string()])
            .args(["--database", "sales=1MiB", "--tcp-bridge"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vdisim serve"),
    );
    // "vdisim serve: TCP bridge for Windows programs at ADDR: VDISIM_SERVER=tcp:ADDR VDISIM_SERVER_SECRET=HEX"
    let mut lines = BufReader::new(serve.0.stderr.take().unwrap()).lines();
    let env: Vec<(String, String)> = loop {
        let line = lines.next().expect("serve printed no bridge line").unwrap();
        if let Some((_, rest)) = line.split_once("TCP bridge for Windows programs at ") {
            let vars = rest.split_once(": ").expect("variables").1;
            break vars
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        }
    };
    assert!(
        env.iter()
            .any(|(k, v)| k == "VDISIM_SERVER" && v.starts_with("tcp:127.0.0.1:"))
    );
    std::thread::spawn(move || for _ in lines {});

    let run = |secret_ok: bool, device: &str| {
        let media = dir.path(&format!("{device}.bak"));
        let mut c = Command::new(&prog);
        c.args(clients::args(
            Op::Backup,
            "sales",
            device,
            1,
            &media,
            "unused",
        ))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("VDICLIENT_CONFIG_WAIT_MS", "3000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if !secret_ok {
            c.env("VDISIM_SERVER_SECRET", "0".repeat(64));
        }
        let mut client = Guard(c.spawn().expect("client"));
        let mut out = BufReader::new(client.0.stdout.take().unwrap());
        let mut ready = String::new();
        out.read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "READY");
        let sql = Command::new(VDISIM)
            .args(["sqlcmd", "-S"])
            .arg(&sock)
            .args([
                "-E",
                "-b",
                "-Q",
                &clients::statement(Op::Backup, "sales", device, 1),
            ])
            .output()
            .unwrap();
        let st = wait(&mut client.0, Duration::from_secs(60)).expect("the client ended");
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(client.0.stderr.as_mut().unwrap(), &mut err);
        (
            sql,
            st,
            err,
            std::fs::metadata(&media).map_or(0, |m| m.len()),
        )
    };

    let (sql, st, err, size) = run(true, "bridged");
    assert!(
        sql.status.success(),
        "sqlcmd: {} client: {err}",
        String::from_utf8_lossy(&sql.stdout)
    );
    assert!(st.success(), "the client failed through the bridge: {err}");
    assert!(size >= 1 << 20, "media of {size} bytes");

    let (sql, st, err, _) = run(false, "refused");
    assert!(
        !sql.status.success(),
        "the statement found a set whose client gave a wrong secret"
    );
    assert!(!st.success(), "{err}");
    assert!(err.contains("no server at tcp:"), "{err}");
    assert!(
        wait(&mut serve.0, Duration::from_millis(1)).is_none(),
        "serve still runs"
    );
}
