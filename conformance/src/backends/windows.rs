//! The `windows` backend: the registered VDI class on Windows, the way a
//! Windows backup program gets it — `CoCreateInstance(CLSID_MSSQL_Client
//! VirtualDeviceSet, CLSCTX_INPROC_SERVER, IID_IClientVirtualDeviceSet2)` —
//! driven through the same vtables as the `com` backend ([`super::com`]).
//!
//! Which DLL answers is the registry's business: SQL Server's `sqlvdi.dll`
//! on a machine with SQL Server, or the stand-in registered with `regsvr32`
//! (under Wine, `conformance/tests/windows_backend.rs` does that).
//!
//! Server control comes from one of two places:
//!
//! - **A SQL Server over TDS**, when one is given (`vdisim run --sql-server
//!   tcp:HOST,PORT [--login NAME:PASSWORD]`, or `$VDISIM_SQLSERVER`): each
//!   statement runs as its T-SQL, KILL stages a server-side abort, outcomes
//!   come from the messages ([`super::tds_control`], the `sqlserver`
//!   backend's statement control, with the same rules for what TDS cannot
//!   stage). The DLL's harness exports, if any, are not used: the stand-in
//!   is then a client of the `vdisim serve` behind the endpoint (through
//!   its TCP bridge, `$VDISIM_SERVER=tcp:HOST:PORT` and
//!   `$VDISIM_SERVER_SECRET`), as `sqlvdi.dll` is of its SQL Server, and
//!   the run's clause hits are the driver's and the stand-in client's
//!   (its `vdisim_client_tally` export, [`super::client_tally`]). Cases run
//!   on the server's clock, `$VDISIM_SQLSERVER_TIME_SCALE` (1, real time,
//!   by default and for a real SQL Server, whose `sqlvdi.dll` runs in real
//!   time too; a `vdisim serve --time-scale N` and the stand-in told
//!   `$VDISIM_TIME_SCALE=N` run N virtual ms per real ms, and the two must
//!   agree): a case whose clock differs is *unimplemented*.
//! - **Otherwise the registered DLL**: the stand-in exports
//!   `vdisim_harness_*` (an in-process server), so every case runs; the
//!   real `sqlvdi.dll` has none, so only the cases that need no statement
//!   run and the others are *unimplemented*.

use super::abi::{self, AbiDriver, Harness};
use super::client_tally::{self, ClientTally};
use super::com::{ComAbi, Creator};
use super::tds_control::{self, Tds, unstageable_setup};
use crate::backend::{Backend, BackendError, BackendInfo, CaseSetup, Ticket};
use std::sync::Arc;
use vdi_model::call::{Call, Reply};
use vdi_model::client::DeviceHandle;
use vdi_model::fault::Fault;
use vdi_model::msg::Timeout;
use vdi_model::outcome::Outcome;
use vdi_model::statement::Statement;
use vdi_sim::world::RunResult;
use vdi_spec::abi::CLSID_MSSQL_CLIENT_VIRTUAL_DEVICE_SET;
use windows_sys::Win32::System::Registry::{HKEY_CLASSES_ROOT, RRF_RT_REG_SZ, RegGetValueW};

/// The DLL that serves the class: its path, its harness exports and its
/// client tally export when it has them (the stand-in).
static MODULE: std::sync::OnceLock<(String, Option<Harness>, Option<ClientTally>)> =
    std::sync::OnceLock::new();

/// The class's in-process server as registered
/// (`HKCR\CLSID\{40700425-...}\InprocServer32`, environment variables
/// expanded): the DLL `CoCreateInstance` loads. Loading it here first gives
/// the same module COM uses, without making an object (which would fix the
/// stand-in's server mode before a harness case could choose it).
fn registered_dll() -> Result<String, BackendError> {
    let key: Vec<u16> = format!(
        "CLSID\\{}\\InprocServer32",
        CLSID_MSSQL_CLIENT_VIRTUAL_DEVICE_SET
            .to_string()
            .to_uppercase()
    )
    .encode_utf16()
    .chain(std::iter::once(0))
    .collect();
    let mut buf = vec![0u16; 32768];
    let mut bytes = (buf.len() * 2) as u32;
    // SAFETY: a NUL-terminated key name, the default value (null name), and
    // a buffer of `bytes` writable bytes.
    let r = unsafe {
        RegGetValueW(
            HKEY_CLASSES_ROOT,
            key.as_ptr(),
            std::ptr::null(),
            // A REG_EXPAND_SZ value is expanded and accepted too.
            RRF_RT_REG_SZ,
            std::ptr::null_mut(),
            buf.as_mut_ptr().cast(),
            &mut bytes,
        )
    };
    if r != 0 {
        return Err(BackendError::Failed(format!(
            "CLSID_MSSQL_ClientVirtualDeviceSet is not registered (HKCR\\{}: error {r}): install SQL Server's client tools, or register the stand-in with `regsvr32 sqlvdi.dll`",
            String::from_utf16_lossy(&key[..key.len() - 1])
        )));
    }
    let n = (bytes as usize / 2).min(buf.len());
    let s = String::from_utf16_lossy(&buf[..n]);
    Ok(s.trim_end_matches('\0').to_string())
}

fn module() -> Result<&'static (String, Option<Harness>, Option<ClientTally>), BackendError> {
    if let Some(m) = MODULE.get() {
        return Ok(m);
    }
    let path = registered_dll()?;
    // The library is never unloaded (objects and threads of it may outlive
    // a backend), as with the other ABI backends.
    let lib = abi::load(std::path::Path::new(&path))?;
    Ok(MODULE.get_or_init(|| (path, Harness::load(lib), ClientTally::load(lib))))
}

/// Checks, before any case runs, that the class can be made (a VDI DLL is
/// registered); its DLL's path.
pub fn check() -> Result<String, String> {
    module().map(|m| m.0.clone()).map_err(|e| e.to_string())
}

/// The class's ABI: set objects from `CoCreateInstance`; the DLL's harness
/// exports unless statements go over TDS (`tds`). Whether the DLL has
/// harness exports (it is the stand-in).
fn load(tds: bool) -> Result<(ComAbi, bool), BackendError> {
    let (_, harness, _) = module()?;
    let standin = harness.is_some();
    let harness = if tds { None } else { *harness };
    Ok((ComAbi::with(Creator::CoCreate, harness), standin))
}

/// Over TDS, the clock the case runs on: the server's
/// (`$VDISIM_SQLSERVER_TIME_SCALE`, 1 by default and for a real SQL
/// Server), which the client's must be — the stand-in's is
/// `$VDISIM_TIME_SCALE` (1 by default); `sqlvdi.dll`'s is real time.
fn client_scale(standin: bool) -> Result<u32, BackendError> {
    let server = tds_control::server_scale()?;
    let client = match std::env::var(vdi_host::calllog::ENV_TIME_SCALE) {
        Ok(v) if standin => vdi_host::calllog::parse_scale(&v).map_err(|e| {
            BackendError::Failed(format!("{}: {e}", vdi_host::calllog::ENV_TIME_SCALE))
        })?,
        _ => 1,
    };
    if client != server {
        return Err(BackendError::Failed(format!(
            "the server's clock runs {server} virtual ms per real ms ({}) and the VDI client's {client} ({}): set them equal (a real SQL Server and sqlvdi.dll run in real time, 1)",
            tds_control::ENV_TIME_SCALE,
            vdi_host::calllog::ENV_TIME_SCALE
        )));
    }
    Ok(server)
}

/// The `windows` backend.
pub struct WindowsBackend {
    driver: Result<AbiDriver, BackendError>,
    library: Option<String>,
    /// Statements over TDS, when a SQL Server is given.
    tds: Option<Arc<Tds>>,
    /// Over TDS, the clock of both the server and the client (virtual ms
    /// per real ms), which the case's must be.
    scale: Result<u32, BackendError>,
    /// Over TDS: the stand-in client's clause tally, when the DLL has one.
    tally: Option<ClientTally>,
}

impl WindowsBackend {
    /// Loads the class's DLL (errors surface at the first case); statements
    /// over TDS when a SQL Server is given.
    pub fn new() -> WindowsBackend {
        let over_tds = tds_control::requested();
        let loaded = load(over_tds);
        let standin = loaded.as_ref().is_ok_and(|l| l.1);
        let tds = over_tds.then(|| Arc::new(Tds::new(standin)));
        let scale = if over_tds {
            client_scale(standin)
        } else {
            Ok(1)
        };
        let driver = loaded.and_then(|(a, _)| {
            let mut d = AbiDriver::new(Arc::new(a));
            if let Some(t) = &tds {
                d.set_statement_control(t.clone());
                d.set_library_scale(scale.clone()?);
            }
            Ok(d)
        });
        WindowsBackend {
            driver,
            library: module().ok().map(|m| m.0.clone()),
            tds,
            scale,
            tally: if over_tds {
                module().ok().and_then(|m| m.2)
            } else {
                None
            },
        }
    }

    /// [`WindowsBackend::new`], or why it cannot run (said before any case
    /// runs): a SQL Server given in a form that does not parse, or that
    /// cannot be reached (every case would be unimplemented, a run that
    /// proves nothing), or clocks that differ.
    pub fn configured() -> Result<WindowsBackend, BackendError> {
        let b = WindowsBackend::new();
        if let Some(t) = &b.tds {
            let e = t.endpoint()?;
            b.scale.clone()?;
            drop(tds_control::connect(&e).map_err(|err| match err {
                BackendError::Failed(m) => BackendError::Failed(format!(
                    "{m} (check --sql-server / {} and --login)",
                    tds_control::ENV_SQLSERVER
                )),
                other => other,
            })?);
        }
        Ok(b)
    }

    fn driver(&mut self) -> Result<&mut AbiDriver, BackendError> {
        self.driver.as_mut().map_err(|e| e.clone())
    }

    /// Over TDS: checks the setup (on the server's clock) and resets the
    /// TDS side and the client's tally.
    fn check_setup(&mut self, setup: &CaseSetup) -> Result<(), BackendError> {
        let Some(tds) = &self.tds else {
            return Ok(());
        };
        tds.reset();
        let scale = self.scale.clone()?;
        if let Some(why) = unstageable_setup(setup, scale) {
            return Err(BackendError::Unsupported(why));
        }
        tds.endpoint()?;
        // What earlier cases left uncounted is not this case's.
        if let Some(t) = &self.tally {
            t.take()?;
        }
        Ok(())
    }

    /// The client's clause tally added to `r`, when there is one.
    fn with_tally(&self, r: Result<RunResult, BackendError>) -> Result<RunResult, BackendError> {
        let mut r = r?;
        if let Some(t) = &self.tally {
            client_tally::merge(&mut r, &t.take()?);
        }
        Ok(r)
    }
}

impl Default for WindowsBackend {
    fn default() -> Self {
        WindowsBackend::new()
    }
}

impl Backend for WindowsBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: "windows".into(),
            description: if self.tds.is_some() {
                "the registered VDI COM class (CoCreateInstance(CLSID_MSSQL_ClientVirtualDeviceSet)), statements, KILL and outcomes over TDS to a SQL Server (or vdisim serve --tds)".into()
            } else {
                "the registered VDI COM class (CoCreateInstance(CLSID_MSSQL_ClientVirtualDeviceSet)): SQL Server's sqlvdi.dll, or the stand-in".into()
            },
            library: self.library.clone(),
        }
    }

    fn capabilities(&self) -> &'static [&'static str] {
        if self.tds.is_some() {
            // A SQL Server stages no device mode or snapshot on request.
            &["abi"]
        } else {
            // As the `com` backend: the built-in programs run unchanged
            // over the ABI, the server half behind the stand-in stages the
            // device modes and snapshots.
            &[
                "abi",
                "disk-mode",
                "tape-mode",
                "removable-media",
                "snapshot",
            ]
        }
    }

    /// Over TDS the server is seen as its clients see it.
    fn observes_server(&self) -> bool {
        self.tds.is_none()
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
        let Some(tds) = self.tds.clone() else {
            return self.driver()?.event(fault);
        };
        match fault {
            Fault::ServerSignalAbort => tds.kill(),
            Fault::Attention => tds.attention(),
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
        let r = self.driver()?.finish();
        self.with_tally(r)
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
        let r = self.driver()?.run_program(setup, spec);
        self.with_tally(r)
    }
}
