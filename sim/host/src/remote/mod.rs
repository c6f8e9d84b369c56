//! The channel across processes: the stand-in library in the backup
//! program, the simulated SQL Server in a `vdisim serve` process.
//!
//! As in real VDI, control travels separately from data:
//!
//! - **Control** goes over a local (Unix domain) socket as length-prefixed
//!   JSON frames ([`wire`]). Each set incarnation a client creates opens its
//!   own connection ([`connector::RemoteConnector`]) and says hello with the
//!   set's name and configuration; the server half's messages
//!   (configuration, commands, CloseDevice, abort) come back on it and the
//!   client half's (completions, abort, Close) go out on it. The same two
//!   model halves run on both sides as in the simulator; only this channel
//!   differs.
//! - **Data** lives in shared memory ([`shm`]): the server maps buffer
//!   chunks in files under `/dev/shm`, tells the client to map the same
//!   file, and a command carries the buffer's address in the client's
//!   mapping. No byte of a transfer crosses the socket.
//! - **Liveness** is the socket: a connection that ends without the set
//!   having been closed is a client that died (the server aborts the set,
//!   clause `abort.client-death`); a server connection that ends is a server
//!   that died (the client sees an abort, clause `abort.server-death`).
//!
//! Control connections ([`wire::Request`]) carry T-SQL from `vdisim sqlcmd`
//! and case control from the conformance harness.
//!
//! Where the server listens is a socket path: `--listen` for `vdisim
//! serve`, [`ENV_SERVER`] for both sides, else a per-user default
//! ([`default_address`]). A program that cannot open a Unix socket (a
//! Windows program under Wine) reaches it through a TCP bridge on loopback
//! ([`bridge`], [`stream`]): [`ENV_SERVER`] is then `tcp:HOST:PORT` and
//! [`stream::ENV_SECRET`] the bridge's secret; its buffers are the same
//! shared-memory files, mapped through Wine's view of the Unix file system
//! ([`shm`], `winmap`).

pub mod stream;
pub mod wire;

#[cfg(unix)]
pub mod bridge;
#[cfg(any(unix, windows))]
pub mod connector;
#[cfg(unix)]
pub mod control;
#[cfg(unix)]
pub mod forward;
#[cfg(any(unix, windows))]
pub mod shm;
#[cfg(windows)]
mod winmap;

use std::path::PathBuf;

/// The environment variable naming the server's socket path, read by the
/// library at each Create and by `vdisim serve` / `vdisim sqlcmd`.
pub const ENV_SERVER: &str = "VDISIM_SERVER";

/// The per-user default socket path: `$XDG_RUNTIME_DIR/vdisim/serve.sock`
/// when that directory is set, else `<temp>/vdisim-<uid>/serve.sock`.
pub fn default_address() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("vdisim").join("serve.sock");
    }
    std::env::temp_dir()
        .join(format!("vdisim-{}", user_id()))
        .join("serve.sock")
}

/// The socket path to use: [`ENV_SERVER`] if set and not empty, else
/// [`default_address`].
pub fn address() -> PathBuf {
    match std::env::var_os(ENV_SERVER).filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => default_address(),
    }
}

/// The address set connections go to: [`ENV_SERVER`] (a socket path or
/// `tcp:HOST:PORT` with [`stream::ENV_SECRET`]) if set and not empty, else
/// the socket at [`default_address`] (where there are Unix sockets).
pub fn server_address() -> stream::Address {
    match std::env::var(ENV_SERVER).ok().filter(|v| !v.is_empty()) {
        Some(v) => stream::Address::parse(&v, std::env::var(stream::ENV_SECRET).ok()),
        #[cfg(unix)]
        None => stream::Address::Unix(default_address()),
        #[cfg(not(unix))]
        None => stream::Address::Unusable(format!(
            "{ENV_SERVER} is not set: a Windows program reaches vdisim serve through a TCP bridge, {ENV_SERVER}=tcp:HOST:PORT and {}=<secret> (vdisim client-test --wine sets them)",
            stream::ENV_SECRET
        )),
    }
}

/// The user's id (Unix uid; elsewhere the user name), for per-user paths.
pub fn user_id() -> String {
    #[cfg(unix)]
    {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        uid.to_string()
    }
    #[cfg(not(unix))]
    {
        std::env::var("USERNAME").unwrap_or_else(|_| "user".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_per_user() {
        let a = default_address();
        assert!(a.ends_with("serve.sock"), "{}", a.display());
        let s = a.display().to_string();
        assert!(s.contains("vdisim"), "the default path names the tool: {s}");
    }
}
