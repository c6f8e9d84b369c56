//! The synchronisation primitives the runtime blocks on, in one place so
//! loom models can swap them: under `--cfg loom` they are loom's, otherwise
//! std's. Only the runtime's own lock and condition variable go through
//! here; process-wide registries (statics) always use std.

#[cfg(loom)]
pub use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub use std::sync::{Condvar, Mutex, MutexGuard};

/// Locks `m`, recovering the data from a poisoned lock (a panic elsewhere
/// must not turn every later VDI call into a panic).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `c` without a timeout.
pub fn wait<'a, T>(c: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    c.wait(g).unwrap_or_else(|e| e.into_inner())
}

/// Waits on `c` for at most `d` (may wake early: callers re-check).
pub fn wait_timeout<'a, T>(
    c: &Condvar,
    g: MutexGuard<'a, T>,
    d: std::time::Duration,
) -> MutexGuard<'a, T> {
    match c.wait_timeout(g, d) {
        Ok((g, _)) => g,
        Err(e) => e.into_inner().0,
    }
}
