//! A TCP bridge in front of a `vdisim serve` socket, for programs that
//! cannot open a Unix socket (Windows programs under Wine: Wine 8's AF_UNIX
//! support for Windows programs is not reliable).
//!
//! It listens on a loopback port; each connection first sends one line
//! `vdisim-secret <hex>` with the bridge's secret (any local user can reach
//! a loopback port; only those told the secret, through the environment of
//! the program started, get further), then the bridge connects it to the
//! server's socket and copies bytes both ways until either side ends. The
//! frames are the Unix socket's, unchanged; the end of either stream ends
//! the other, so a program that dies is still a client death to the server
//! (clause `abort.client-death`) and a server that dies a server death to
//! the program.
//!
//! Bounds: the secret line must arrive whole within [`SECRET_DEADLINE`];
//! at most [`MAX_LINKS`] connections are bridged at once (more are closed
//! at once). The server sees every bridged connection as coming from the
//! bridge's process: a set name in use is told apart per bridge, not per
//! program (the server's `name-in-use` check compares process ids).

use super::stream::{SECRET_HEX_LEN, SECRET_PREFIX};
use super::{ENV_SERVER, stream::ENV_SECRET};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a connection may take to send its secret line.
pub const SECRET_DEADLINE: Duration = Duration::from_secs(5);

/// Connections bridged at once, at most.
pub const MAX_LINKS: usize = 256;

/// A running bridge; stopped (its listener closed) when dropped.
/// Connections already bridged run on until either side ends.
pub struct TcpBridge {
    addr: SocketAddr,
    secret: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpBridge {
    /// Starts a bridge to the server socket `socket`, listening on `bind`
    /// (a loopback address; port 0 picks a free one).
    pub fn start(socket: PathBuf, bind: SocketAddr) -> io::Result<TcpBridge> {
        if !bind.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the bridge listens on loopback only, not on {bind}: use 127.0.0.1"),
            ));
        }
        let secret = new_secret()?;
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sec) = (stop.clone(), secret.clone());
        let thread = std::thread::Builder::new()
            .name("vdisim-bridge".into())
            .spawn(move || accept_loop(listener, socket, sec, st))?;
        Ok(TcpBridge {
            addr,
            secret,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its secret (hex).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The environment a program needs to reach the server through it.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            (ENV_SERVER, format!("tcp:{}", self.addr)),
            (ENV_SECRET, self.secret.clone()),
        ]
    }
}

impl Drop for TcpBridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// 32 random bytes from the system, as hex.
fn new_secret() -> io::Result<String> {
    let mut b = [0u8; SECRET_HEX_LEN / 2];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn accept_loop(listener: TcpListener, socket: PathBuf, secret: String, stop: Arc<AtomicBool>) {
    let live = Arc::new(AtomicUsize::new(0));
    let secret = Arc::new(secret);
    for s in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(s) = s else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if live.fetch_add(1, Ordering::SeqCst) >= MAX_LINKS {
            live.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let (socket, secret, l2) = (socket.clone(), secret.clone(), live.clone());
        let spawned = std::thread::Builder::new()
            .name("vdisim-bridge-link".into())
            .spawn(move || {
                let _ = link(s, &socket, &secret);
                l2.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Whether `line` (without its newline) proves `secret`, comparing every
/// byte whatever the first difference.
fn proves(line: &[u8], secret: &str) -> bool {
    let want = format!("{SECRET_PREFIX}{secret}");
    line.len() == want.len()
        && line
            .iter()
            .zip(want.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Checks the secret line, then copies bytes both ways.
fn link(mut tcp: TcpStream, socket: &PathBuf, secret: &str) -> io::Result<()> {
    tcp.set_read_timeout(Some(SECRET_DEADLINE))?;
    let mut line = vec![0u8; SECRET_PREFIX.len() + SECRET_HEX_LEN + 1];
    tcp.read_exact(&mut line)?;
    if line.pop() != Some(b'\n') || !proves(&line, secret) {
        let _ = tcp.shutdown(Shutdown::Both);
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "wrong bridge secret",
        ));
    }
    tcp.set_read_timeout(None)?;
    tcp.set_nodelay(true)?;
    let unix = UnixStream::connect(socket)?;
    let (mut t_in, mut u_out) = (tcp.try_clone()?, unix.try_clone()?);
    let up = std::thread::Builder::new()
        .name("vdisim-bridge-up".into())
        .spawn(move || {
            let _ = io::copy(&mut t_in, &mut u_out);
            let _ = u_out.shutdown(Shutdown::Both);
            let _ = t_in.shutdown(Shutdown::Both);
        })?;
    let (mut u_in, mut t_out) = (unix, tcp);
    let _ = copy_flushing(&mut u_in, &mut t_out);
    let _ = t_out.shutdown(Shutdown::Both);
    let _ = u_in.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}

fn copy_flushing(r: &mut impl Read, w: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        w.write_all(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vdisim-bridge-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Bytes cross both ways after the secret; a wrong secret gets nothing
    /// and the server never sees the connection; the end of the server's
    /// side ends the program's.
    #[test]
    fn bridges_only_with_the_secret() {
        let d = scratch("secret");
        let sock = d.join("s.sock");
        let l = UnixListener::bind(&sock).unwrap();
        let b = TcpBridge::start(sock.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(b.secret().len(), SECRET_HEX_LEN);

        let mut bad = TcpStream::connect(b.addr()).unwrap();
        bad.write_all(format!("{SECRET_PREFIX}{}\n", "0".repeat(SECRET_HEX_LEN)).as_bytes())
            .unwrap();
        let mut got = Vec::new();
        bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(bad.read_to_end(&mut got).map(|_| got.len()).unwrap_or(0), 0);

        let mut good = TcpStream::connect(b.addr()).unwrap();
        good.write_all(format!("{SECRET_PREFIX}{}\nping", b.secret()).as_bytes())
            .unwrap();
        let (mut srv, _) = l.accept().unwrap();
        let mut four = [0u8; 4];
        srv.read_exact(&mut four).unwrap();
        assert_eq!(
            &four, b"ping",
            "the first connection the server sees is the good one"
        );
        srv.write_all(b"pong").unwrap();
        good.read_exact(&mut four).unwrap();
        assert_eq!(&four, b"pong");
        drop(srv);
        let mut rest = Vec::new();
        good.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(
            good.read_to_end(&mut rest).unwrap(),
            0,
            "server end ends the link"
        );
        drop(b);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn refuses_other_than_loopback() {
        let e = TcpBridge::start("/nonexistent".into(), "0.0.0.0:0".parse().unwrap())
            .err()
            .expect("refused");
        assert!(e.to_string().contains("loopback"), "{e}");
    }
}
