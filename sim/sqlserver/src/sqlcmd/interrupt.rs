//! Ctrl-C while a batch runs, for a front end that asks for it.
//!
//! Nothing here happens on its own: the `vdisim sqlcmd` front end wraps its
//! executor in [`CtrlCDuringBatch`], which installs a SIGINT handler for
//! the duration of each batch and restores the previous disposition after
//! it. The handler only sets [`flag`]; an executor watching the flag
//! (`ServeExecutor::watch_interrupt`) sends the server a cancel and
//! answers [`super::ExecError::Cancelled`]. Outside
//! a batch (reading standard input, printing) SIGINT does what it did
//! before: by default, it ends the process. A SIGINT that was ignored when
//! the batch began (a job started with `nohup`) stays ignored.

use super::{BatchResult, ExecError, Executor};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Set by the handler when SIGINT arrives during a batch; cleared when the
/// handler is installed.
pub fn flag() -> &'static AtomicBool {
    &INTERRUPTED
}

extern "C" fn on_sigint(_signal: libc::c_int) {
    // An atomic store is async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// The SIGINT handler while it lives; the previous disposition again when
/// dropped.
pub struct SigintGuard {
    previous: Option<libc::sigaction>,
}

impl SigintGuard {
    /// Clears [`flag`] and installs the handler, unless SIGINT is ignored.
    pub fn install() -> io::Result<SigintGuard> {
        INTERRUPTED.store(false, Ordering::SeqCst);
        // SAFETY: `sigaction` is a plain C struct for which all-zero bytes
        // are a valid value (no handler, empty mask, no flags).
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only queries; `current` is a valid,
        // writable sigaction.
        if unsafe { libc::sigaction(libc::SIGINT, std::ptr::null(), &mut current) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if current.sa_sigaction == libc::SIG_IGN {
            return Ok(SigintGuard { previous: None });
        }
        // SAFETY: as above, all-zero bytes are a valid sigaction.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // Reads and writes interrupted by the signal resume: the executor
        // notices the flag on its own schedule.
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `sa_mask` is a valid sigset_t owned by `action`.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        let mut previous = current;
        // SAFETY: both pointers are valid for the call; the handler only
        // stores to an atomic, which is async-signal-safe.
        if unsafe { libc::sigaction(libc::SIGINT, &action, &mut previous) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SigintGuard {
            previous: Some(previous),
        })
    }
}

impl Drop for SigintGuard {
    fn drop(&mut self) {
        if let Some(previous) = &self.previous {
            // SAFETY: `previous` is the disposition sigaction returned when
            // the handler was installed; a null old-action pointer is allowed.
            unsafe { libc::sigaction(libc::SIGINT, previous, std::ptr::null_mut()) };
        }
    }
}

/// An executor whose batches run with the SIGINT handler installed (see
/// the module docs). The inner executor must watch [`flag`] for Ctrl-C to
/// cancel anything.
pub struct CtrlCDuringBatch<E> {
    inner: E,
}

impl<E: Executor> CtrlCDuringBatch<E> {
    /// Wraps `inner`.
    pub fn new(inner: E) -> CtrlCDuringBatch<E> {
        CtrlCDuringBatch { inner }
    }
}

impl<E: Executor> Executor for CtrlCDuringBatch<E> {
    fn connect(&mut self, database: Option<&str>) -> Result<(), ExecError> {
        self.inner.connect(database)
    }

    fn execute(
        &mut self,
        batch: &str,
        database: Option<&str>,
        first_line: u32,
        timeout: Option<Duration>,
    ) -> Result<BatchResult, ExecError> {
        // Without the handler, Ctrl-C ends the process as it always did.
        let _guard = SigintGuard::install().ok();
        self.inner.execute(batch, database, first_line, timeout)
    }
}
