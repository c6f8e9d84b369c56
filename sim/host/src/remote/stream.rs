//! Where a set connection goes, and the stream it travels on.
//!
//! A set connection reaches `vdisim serve` over its Unix socket, or — for a
//! program that cannot open one, such as a Windows program under Wine, whose
//! AF_UNIX support is not reliable — over TCP on loopback to a bridge in
//! front of that socket ([`super::bridge`]). [`ENV_SERVER`] says which:
//! a path, or `tcp:HOST:PORT`. Any local user can reach a loopback port, so
//! a TCP connection first proves it was told the bridge's secret
//! ([`ENV_SECRET`]): one line `vdisim-secret <hex>` before any frame.
//!
//! [`ENV_SERVER`]: super::ENV_SERVER

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// The environment variable holding the bridge's secret (hex) for a
/// `tcp:` server address.
pub const ENV_SECRET: &str = "VDISIM_SERVER_SECRET";

/// What starts the line a TCP connection proves its secret with.
pub const SECRET_PREFIX: &str = "vdisim-secret ";

/// The secret's length in hex digits (32 random bytes).
pub const SECRET_HEX_LEN: usize = 64;

/// How long a TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A server address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A Unix socket path.
    #[cfg(unix)]
    Unix(PathBuf),
    /// A TCP bridge: `host:port` and its secret.
    Tcp { addr: String, secret: String },
    /// An address that cannot be used here, and why.
    Unusable(String),
}

impl Address {
    /// Parses `text`, the value of [`super::ENV_SERVER`] (or `--listen`):
    /// `tcp:HOST:PORT` (the secret from `secret`), or a socket path.
    pub fn parse(text: &str, secret: Option<String>) -> Address {
        if let Some(rest) = text.strip_prefix("tcp:") {
            let Some(secret) = secret.filter(|s| !s.is_empty()) else {
                return Address::Unusable(format!(
                    "the server address {text} is a TCP bridge, but {ENV_SECRET} is not set: set it to the secret the bridge printed"
                ));
            };
            return Address::Tcp {
                addr: rest.to_string(),
                secret,
            };
        }
        #[cfg(unix)]
        {
            Address::Unix(PathBuf::from(text))
        }
        #[cfg(not(unix))]
        {
            let _ = PathBuf::from(text);
            Address::Unusable(format!(
                "the server address {text:?} is not tcp:HOST:PORT; a Windows program reaches vdisim serve through a TCP bridge (vdisim client-test --wine sets one up)"
            ))
        }
    }

    /// Connects; for a TCP bridge, also sends the secret.
    pub fn connect(&self) -> io::Result<Stream> {
        match self {
            #[cfg(unix)]
            Address::Unix(p) => Ok(Stream::Unix(UnixStream::connect(p)?)),
            Address::Tcp { addr, secret } => {
                let mut last = io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{addr}: no address to connect to (give HOST:PORT)"),
                );
                for a in addr.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                        Ok(mut s) => {
                            s.set_nodelay(true)?;
                            s.write_all(format!("{SECRET_PREFIX}{secret}\n").as_bytes())?;
                            return Ok(Stream::Tcp(s));
                        }
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
            Address::Unusable(why) => Err(io::Error::new(io::ErrorKind::InvalidInput, why.clone())),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            #[cfg(unix)]
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Tcp { addr, .. } => write!(f, "tcp:{addr}"),
            Address::Unusable(_) => write!(f, "(no usable address)"),
        }
    }
}

/// A connected stream to the server.
pub enum Stream {
    #[cfg(unix)]
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    /// A second handle on the same stream (one thread reads, another writes).
    pub fn try_clone(&self) -> io::Result<Stream> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
        }
    }

    /// Ends both directions.
    pub fn shutdown(&self) -> io::Result<()> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
        }
    }

    /// Read and write timeouts (`None`: block).
    pub fn set_timeouts(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Stream::Tcp(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_addresses_need_the_secret() {
        match Address::parse("tcp:127.0.0.1:5000", None) {
            Address::Unusable(why) => assert!(why.contains(ENV_SECRET), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Address::parse("tcp:127.0.0.1:5000", Some("ab".into())),
            Address::Tcp {
                addr: "127.0.0.1:5000".into(),
                secret: "ab".into()
            }
        );
        #[cfg(unix)]
        assert_eq!(
            Address::parse("/run/x.sock", None),
            Address::Unix("/run/x.sock".into())
        );
    }
}
