//! The `sqlserver` backend: the catalog against a SQL Server reached over
//! TDS — a real one, or `vdisim serve --tds` — with the client's calls
//! through a VDI library next to it.
//!
//! - **Client calls**: through the Linux class ABI of the library at
//!   `$VDISIM_LIBSQLVDI` (default: the stand-in), with its harness control
//!   hidden (server control is TDS here). The stand-in is loaded as a
//!   private copy and pointed at the `vdisim serve` behind the TDS
//!   endpoint (`vdisim_use_server` with `$VDISIM_SERVER`, else the
//!   per-user default socket); a real `libsqlvdi.so` talks to its own
//!   server.
//! - **Statements**: each BACKUP or RESTORE runs as its T-SQL
//!   ([`crate::sqlserver::statement_text`]) on a connection of its own,
//!   whose session id is learnt first (`SELECT @@SPID`).
//! - **Server-side abort** (the script's `server-signal-abort` event):
//!   `KILL <spid>` from a second connection. An attention event sends a
//!   TDS ATTENTION on the statement's connection.
//! - **Outcomes**: from the answer's INFO and ERROR messages
//!   ([`crate::sqlserver::outcome_of_messages`]): a success carries its
//!   3014 text.
//!
//! The endpoint: [`configure`] (`vdisim run --sql-server tcp:HOST,PORT
//! [--login NAME:PASSWORD]`), else `$VDISIM_SQLSERVER`: `tcp:HOST,PORT`,
//! `HOST,PORT`, or an ADO.NET string (`server=tcp:HOST,PORT;user
//! id=..;password=..;database=..`). The login defaults to `sa` / `vdisim`,
//! `vdisim serve`'s default. The TDS client speaks plaintext only.
//!
//! ## What it cannot stage (graded *unimplemented*, never wrong)
//!
//! A TDS server runs the T-SQL it is sent and nothing else, so a case is
//! answered [`BackendError::Unsupported`] with the reason when it needs:
//! a profile other than the default, a clock other than the server's
//! (`$VDISIM_SQLSERVER_TIME_SCALE`: `vdisim serve --time-scale`; 1, real
//! time, for a real server), server-side faults other than KILL and an
//! attention (stalls, deaths, early closes, disconnects), a server plan T-SQL cannot ask for (mid-stream Flushes, restore read
//! sizes, probe commands, a HEADERONLY read size other than the server's),
//! a BACKUP of a size other than its database's or of a database that is
//! not online, a RESTORE LOG onto a database that is not restoring (both
//! known from the `vdisim serve` socket; unknown on a real server, so those
//! cases are not run there), a RESTORE on a real server (the client serves
//! the case's seed backup, media in vdisim's format, which `vdisim serve`
//! restores by its headers — clause `media.header` — and a real server
//! cannot read). Server-side observations (the server half's trace, its
//! clause hits, its failure reasons beyond what the messages say) are not
//! available over TDS: the run carries the client's, and the backend says
//! so (`observes_server` false), so an end decided by those alone is
//! graded *unimplemented*.
//!
//! The server's state carries over from case to case (a RESTORE sets a
//! database's size and state), so which BACKUP cases can be staged depends
//! on the order cases run in.

pub use super::tds_control::{
    DEFAULT_LOGIN, ENV_SQLSERVER, ENV_TIME_SCALE, Endpoint, configure, parse_endpoint,
};

use super::abi::{self, AbiDriver};
use super::linux_abi::LinuxAbi;
use super::tds_control::{Tds, connect, server_scale, unstageable_setup};
use crate::backend::{Backend, BackendError, BackendInfo, CaseSetup, Ticket};
use std::ffi::{CString, c_char};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use vdi_model::call::{Call, Reply};
use vdi_model::client::DeviceHandle;
use vdi_model::fault::Fault;
use vdi_model::msg::Timeout;
use vdi_model::outcome::Outcome;
use vdi_model::statement::Statement;
use vdi_sim::world::RunResult;

/// The `vdisim serve` socket the stand-in is pointed at.
fn serve_socket() -> PathBuf {
    vdi_host::remote::address()
}

/// The library: a private copy of it (so its process-wide choice of server
/// stays its own), the stand-in pointed at the serve socket. Whether it is
/// the stand-in.
fn load() -> Result<(LinuxAbi, bool), BackendError> {
    static COPY: OnceLock<Result<(PathBuf, bool), BackendError>> = OnceLock::new();
    let (copy, standin) = COPY
        .get_or_init(|| {
            let src = abi::library_path()?;
            let dir = std::env::temp_dir()
                .join(format!("vdisim-sqlserver-backend-{}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| BackendError::Failed(e.to_string()))?;
            let copy = dir.join("libsqlvdi.so");
            let partial = dir.join("libsqlvdi.so.partial");
            let fail = |e: std::io::Error| {
                BackendError::Failed(format!("cannot copy {}: {e}", src.display()))
            };
            std::fs::copy(&src, &partial).map_err(fail)?;
            std::fs::rename(&partial, &copy).map_err(fail)?;
            let lib = abi::load(&copy);
            let _ = std::fs::remove_file(&copy);
            let _ = std::fs::remove_dir(&dir);
            let lib = lib?;
            type UseServer = unsafe extern "C" fn(*const c_char) -> i32;
            // SAFETY: `vdisim_use_server` has this signature
            // (sim/standin/src/remote/forward.rs).
            let f: Option<UseServer> = unsafe { abi::symbol(lib, "vdisim_use_server") };
            if let Some(f) = f {
                let path = CString::new(serve_socket().display().to_string())
                    .map_err(|_| BackendError::Failed("socket path with a NUL byte".into()))?;
                // SAFETY: a NUL-terminated string that outlives the call.
                unsafe { f(path.as_ptr()) };
            }
            Ok((copy, f.is_some()))
        })
        .clone()?;
    Ok((LinuxAbi::load_from(&copy)?, standin))
}

/// The `sqlserver` backend.
pub struct SqlServerBackend {
    driver: Result<AbiDriver, BackendError>,
    library: Option<String>,
    tds: Arc<Tds>,
    /// The server's clock (virtual ms per real ms), which the case's must be.
    scale: Result<u32, BackendError>,
}

impl SqlServerBackend {
    /// Loads the library (errors surface at the first case).
    pub fn new() -> SqlServerBackend {
        let loaded = load();
        let tds = Arc::new(Tds::new(loaded.as_ref().is_ok_and(|l| l.1)));
        let driver = loaded.map(|(a, _)| {
            let mut d = AbiDriver::new(Arc::new(a));
            d.set_statement_control(tds.clone());
            d
        });
        SqlServerBackend {
            driver,
            library: abi::library_path().ok().map(|p| p.display().to_string()),
            tds,
            scale: server_scale(),
        }
    }

    /// [`SqlServerBackend::new`], or why it cannot run: no endpoint, or a
    /// bad `$VDISIM_SQLSERVER_TIME_SCALE` (said before any case runs).
    ///
    /// The server is reached once here, too: one that cannot be reached (or
    /// a stand-in with no `vdisim serve` behind it) would leave every case
    /// unimplemented, a run that proves nothing, so it is an error.
    pub fn configured() -> Result<SqlServerBackend, BackendError> {
        let b = SqlServerBackend::new();
        let e = b.tds.endpoint()?;
        b.scale.clone()?;
        drop(connect(&e).map_err(|err| match err {
            BackendError::Failed(m) => BackendError::Failed(format!(
                "{m} (check --sql-server / {ENV_SQLSERVER} and --login)"
            )),
            other => other,
        })?);
        if b.tds.standin {
            let sock = serve_socket();
            vdi_host::remote::control::Control::connect(&sock, "sqlserver backend").map_err(
                |err| {
                    BackendError::Failed(format!(
                        "the stand-in libsqlvdi.so finds no vdisim serve at {} ({err}): set VDISIM_SERVER to the socket of the vdisim serve behind the TDS endpoint (it prints it at start), or VDISIM_LIBSQLVDI to the server's own library",
                        sock.display()
                    ))
                },
            )?;
        }
        Ok(b)
    }

    fn driver(&mut self) -> Result<&mut AbiDriver, BackendError> {
        self.driver.as_mut().map_err(|e| e.clone())
    }

    /// Checks the setup and resets the TDS side.
    fn check_setup(&mut self, setup: &CaseSetup) -> Result<(), BackendError> {
        self.tds.reset();
        let scale = self.scale.clone()?;
        if let Some(why) = unstageable_setup(setup, scale) {
            return Err(BackendError::Unsupported(why));
        }
        self.tds.endpoint().map(|_| ())
    }
}

impl Default for SqlServerBackend {
    fn default() -> Self {
        SqlServerBackend::new()
    }
}

impl Backend for SqlServerBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: "sqlserver".into(),
            description: "a libsqlvdi.so through the Linux class ABI, statements, KILL and outcomes over TDS to a SQL Server (or vdisim serve --tds)".into(),
            library: self.library.clone(),
        }
    }

    fn capabilities(&self) -> &'static [&'static str] {
        &["abi"]
    }

    /// Over TDS the server is seen as its clients see it.
    fn observes_server(&self) -> bool {
        false
    }

    fn reset(&mut self, setup: &CaseSetup) -> Result<(), BackendError> {
        self.check_setup(setup)?;
        self.driver()?.reset(setup)
    }

    fn start(&mut self, thread: &str, call: Call) -> Result<Ticket, BackendError> {
        self.driver()?.start(thread, call)
    }

    fn join(&mut self, t: Ticket) -> Result<Reply, BackendError> {
        self.driver()?.join(t)
    }

    fn start_statement(&mut self, stmt: &Statement) -> Result<(), BackendError> {
        self.driver()?.start_statement(stmt)
    }

    fn event(&mut self, fault: Fault) -> Result<(), BackendError> {
        match fault {
            Fault::ServerSignalAbort => self.tds.kill(),
            Fault::Attention => self.tds.attention(),
            Fault::ClientSignalAbort | Fault::ClientDeath => self.driver()?.event(fault),
            f => Err(BackendError::Unsupported(format!(
                "the event {}: over TDS only KILL (server-signal-abort), an attention and the client's own SignalAbort or death are staged",
                f.kind()
            ))),
        }
    }

    fn sleep(&mut self, ms: u64) -> Result<(), BackendError> {
        self.driver()?.sleep(ms)
    }

    fn wait_statement(&mut self, timeout: Timeout) -> Result<Option<Outcome>, BackendError> {
        self.driver()?.wait_statement(timeout)
    }

    fn finish(&mut self) -> Result<RunResult, BackendError> {
        // Closing the client's set (the driver's teardown) ends a statement
        // still waiting for it; its answer is then taken.
        self.driver()?.finish()
    }

    fn start_drain(
        &mut self,
        thread: &str,
        dev: DeviceHandle,
        timeout: Timeout,
    ) -> Result<Ticket, BackendError> {
        self.driver()?.start_drain(thread, dev, timeout)
    }

    fn run_program(
        &mut self,
        setup: &CaseSetup,
        spec: &vdi_model::programs::ClientSpec,
    ) -> Result<RunResult, BackendError> {
        self.check_setup(setup)?;
        self.driver()?.run_program(setup, spec)
    }
}
