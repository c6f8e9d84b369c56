//! `vdisim sqlcmd`'s transport to `vdisim serve`.

use std::path::PathBuf;
use vdi_host::remote::wire::{Request, Response};

/// `vdisim sqlcmd`'s transport: each batch goes to a `vdisim serve` over a
/// control connection. `-S` names the server: a value containing `/` (or
/// prefixed `unix:`) is the socket path; any other value (`localhost`,
/// `tcp:host,1433`, `.\INSTANCE`) means the server the environment names
/// (`VDISIM_SERVER`, else the per-user default).
pub struct ServeExecutor {
    server: String,
    path: std::path::PathBuf,
    conn: Option<vdi_host::remote::control::Control>,
}

impl ServeExecutor {
    /// An executor for `-S server` (or none).
    pub fn new(server: Option<&str>) -> ServeExecutor {
        let s = server.unwrap_or("localhost");
        let path = match s.strip_prefix("unix:") {
            Some(p) => PathBuf::from(p),
            None if s.contains('/') => PathBuf::from(s),
            None => vdi_host::remote::address(),
        };
        ServeExecutor {
            server: s.to_string(),
            path,
            conn: None,
        }
    }

    /// The server's name (`@@SERVERNAME`, what its messages show), if it
    /// can be reached.
    pub fn server_name(&mut self) -> Option<String> {
        match self.conn().ok()?.request(Request::Status) {
            Ok(Response::Status { status }) => Some(status.server),
            _ => None,
        }
    }

    fn conn(
        &mut self,
    ) -> Result<&mut vdi_host::remote::control::Control, crate::sqlcmd::ExecError> {
        if self.conn.is_none() {
            let c =
                vdi_host::remote::control::Control::connect(&self.path, "sqlcmd").map_err(|e| {
                    crate::sqlcmd::ExecError::Connect {
                        server: self.server.clone(),
                        reason: format!("no vdisim serve at {} ({e})", self.path.display()),
                    }
                })?;
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| crate::sqlcmd::ExecError::Lost("no connection".into()))
    }
}

impl crate::sqlcmd::Executor for ServeExecutor {
    fn connect(&mut self, _database: Option<&str>) -> Result<(), crate::sqlcmd::ExecError> {
        self.conn().map(|_| ())
    }

    fn execute(
        &mut self,
        batch: &str,
        database: Option<&str>,
        first_line: u32,
    ) -> Result<crate::sqlcmd::BatchResult, crate::sqlcmd::ExecError> {
        let c = self.conn()?;
        let r = c.request(Request::Sql {
            text: batch.to_string(),
            database: database.map(str::to_string),
            first_line,
        });
        match r {
            Ok(Response::Sql { messages, .. }) => Ok(crate::sqlcmd::BatchResult {
                messages: messages
                    .into_iter()
                    .map(|m| crate::sqlcmd::ServerMessage {
                        msg: m.message,
                        line: m.line,
                    })
                    .collect(),
            }),
            Ok(Response::Error { message }) => Err(crate::sqlcmd::ExecError::Lost(message)),
            Ok(other) => Err(crate::sqlcmd::ExecError::Lost(format!(
                "unexpected answer {other:?}"
            ))),
            Err(e) => {
                self.conn = None;
                Err(crate::sqlcmd::ExecError::Lost(e.to_string()))
            }
        }
    }
}
