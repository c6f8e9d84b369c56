//! The TDS listener (`--tds ADDR`): accepts TCP connections and serves
//! each with a `crate::tds` session on the server's T-SQL. TDS connections
//! count toward the same limit as the socket's (`max_connections`).

use super::*;
use crate::tds::session::{self, Engine, Settings};
use crate::tds::tables::{BackupRow, DbRow, Tables};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Binds the TDS address.
pub(super) fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr).map_err(|err| match err.kind() {
        io::ErrorKind::AddrInUse => ServeError::TdsInUse(addr),
        _ => ServeError::TdsListen { addr, err },
    })
}

impl ServeConfig {
    /// The logins: at least one when TDS is served; names 1..=128
    /// characters, passwords at most 128.
    pub(super) fn check_logins(&self) -> Result<(), vdi_spec::bounds::BoundError> {
        use vdi_spec::bounds::{BoundError, at_most};
        if self.tds.is_some() && self.logins.is_empty() {
            return Err(BoundError::new(
                "--login",
                0,
                "at least 1",
                "give at least one login NAME:PASSWORD to serve TDS",
            ));
        }
        for (name, password) in &self.logins {
            if name.is_empty() {
                return Err(BoundError::new(
                    "--login name length",
                    0,
                    "1..=128",
                    "give the login a name",
                ));
            }
            at_most(
                &format!("login '{name}' name length"),
                name.chars().count(),
                crate::tds::login7::FIELD_CHARS_MAX,
                "use a login name of at most 128 characters",
            )?;
            at_most(
                &format!("login '{name}' password length"),
                password.chars().count(),
                crate::tds::login7::FIELD_CHARS_MAX,
                "use a password of at most 128 characters",
            )?;
        }
        Ok(())
    }
}

impl Engine for Inner {
    fn run_batch(
        &self,
        text: &str,
        database: &mut Option<String>,
        attention: &Attention,
        emit: Emit<'_>,
    ) -> Batch {
        Inner::run_batch(self, text, database, attention, emit)
    }

    fn has_database(&self, name: &str) -> bool {
        lock(&self.catalog).databases.contains_key(name)
    }

    fn session_attention(&self, spid: u16) -> Arc<Attention> {
        self.sessions.attention(u32::from(spid)).unwrap_or_default()
    }
}

impl Tables for Inner {
    /// The databases by name, numbered from 5 in that order (a model
    /// choice: see `crate::tds::tables`).
    fn databases(&self) -> Vec<DbRow> {
        lock(&self.catalog)
            .databases
            .iter()
            .enumerate()
            .map(|(k, (name, db))| DbRow {
                name: name.clone(),
                id: 5 + i32::try_from(k).unwrap_or(i32::MAX - 5),
                state_desc: db.state.to_ascii_uppercase(),
                recovery_model_desc: db.recovery.to_ascii_uppercase(),
            })
            .collect()
    }

    fn backups(&self) -> Vec<BackupRow> {
        lock(&self.catalog)
            .history
            .entries()
            .map(|(r, f)| {
                let m = &r.meta;
                BackupRow {
                    number: r.number,
                    database_name: r.database.clone(),
                    kind: m.backup_type.code(),
                    start_unix_ms: m.started_unix_ms,
                    finish_unix_ms: if f.unix_ms == 0 {
                        m.started_unix_ms
                    } else {
                        f.unix_ms
                    },
                    first_lsn: m.first_lsn,
                    last_lsn: m.last_lsn,
                    checkpoint_lsn: m.checkpoint_lsn,
                    database_backup_lsn: m.database_backup_lsn,
                    copy_only: m.copy_only,
                    checksums: m.checksum,
                    size: r.total_bytes(),
                    server_name: m.server.clone(),
                    devices: (0..r.families.len())
                        .map(|k| f.devices.get(k).cloned())
                        .collect(),
                }
            })
            .collect()
    }
}

impl Inner {
    /// Serves one TDS connection as session `spid`, registered for KILL
    /// while it lives (`super::sessions`).
    fn tds_session(self: &Arc<Self>, s: TcpStream, set: Arc<Settings>, spid: u16) {
        let closer: sessions::Closer = match s.try_clone() {
            Ok(c) => Box::new(move || {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }),
            Err(_) => return,
        };
        let attention = Arc::new(Attention::for_session(u32::from(spid)));
        let _registered = self.sessions.register(u32::from(spid), attention, closer);
        let engine: Arc<dyn Engine> = self.clone();
        session::serve(engine, s, set, spid);
    }

    /// Starts the TDS accept loop.
    pub(super) fn start_tds(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<Arc<crate::tds::tls::ServerTls>>,
    ) -> Result<std::thread::JoinHandle<()>, ServeError> {
        let addr = self
            .tds_addr
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        std::thread::Builder::new()
            .name("vdisim-tds-accept".into())
            .spawn(move || self.tds_accept_loop(listener, tls))
            .map_err(|err| ServeError::TdsListen { addr, err })
    }

    /// Wakes the TDS accept loop (after `stop` is set).
    pub(super) fn wake_tds(&self) {
        let Some(mut addr) = self.tds_addr else {
            return;
        };
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    }

    fn tds_accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<Arc<crate::tds::tls::ServerTls>>,
    ) {
        let settings = Arc::new(Settings {
            server_name: self.cfg.server_name.clone(),
            logins: self.cfg.logins.clone(),
            frame_deadline: self.cfg.frame_deadline,
            tls,
        });
        while !self.stop.load(Ordering::SeqCst) {
            let (s, peer) = match listener.accept() {
                Ok(x) => x,
                Err(_) => {
                    // Out of descriptors, or the like: try again shortly.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let max = self.max_connections;
            if self.live.fetch_add(1, Ordering::SeqCst) >= max {
                self.live.fetch_sub(1, Ordering::SeqCst);
                eprintln!(
                    "vdisim serve: tds client {peer}: refused: serving {max} connections, the limit (--max-connections)"
                );
                continue;
            }
            let spid = self.new_spid();
            let (me, set) = (self.clone(), settings.clone());
            let spawned = std::thread::Builder::new()
                .name("vdisim-tds-conn".into())
                .spawn(move || {
                    me.tds_session(s, set, spid);
                    me.live.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                self.live.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}
