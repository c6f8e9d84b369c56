//! The synchronisation primitives the runtime blocks on, in one place so
//! loom models can swap them: under `--cfg loom` they are loom's, otherwise
//! std's. Only the runtime's own lock and condition variable go through
//! here; process-wide registries (statics) always use std.
//!
//! # Time
//!
//! Timeouts read the clock through [`Clock`]. Outside loom it is
//! [`std::time::Instant`] and a finite wait is `Condvar::wait_timeout`.
//! loom has no time (its `wait_timeout` is a plain `wait`), so under
//! `--cfg loom` [`Clock`] is a *virtual* clock in milliseconds that only
//! moves when a model says so: a model's "timer thread" calls
//! `SetRuntime::advance_clock` (loom only), which advances the clock
//! and wakes every waiter *under the runtime's lock* — what the OS timer
//! behind a real `wait_timeout` does. A waiter whose deadline has then
//! passed answers its timeout, so the expiry of a timeout is an explicit
//! event that loom interleaves with every other.

#[cfg(loom)]
pub use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub use std::sync::{Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub use std::time::Instant;

/// The clock timeouts are measured with: the real monotonic clock.
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub struct Clock;

#[cfg(not(loom))]
impl Clock {
    /// The clock.
    pub fn new() -> Clock {
        Clock
    }

    /// Now.
    pub fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A point of the virtual clock (milliseconds since the runtime was made).
#[cfg(loom)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(u64);

#[cfg(loom)]
impl Instant {
    /// `self + d`, `None` if not representable (as for `std::time::Instant`).
    pub fn checked_add(self, d: std::time::Duration) -> Option<Instant> {
        let ms = u64::try_from(d.as_millis()).ok()?;
        self.0.checked_add(ms).map(Instant)
    }
}

#[cfg(loom)]
impl std::ops::Sub for Instant {
    type Output = std::time::Duration;
    fn sub(self, rhs: Instant) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.saturating_sub(rhs.0))
    }
}

/// The clock timeouts are measured with: under loom, a virtual clock that
/// moves only through [`Clock::advance`].
#[cfg(loom)]
#[derive(Debug, Default)]
pub struct Clock(loom::sync::atomic::AtomicU64);

#[cfg(loom)]
impl Clock {
    /// A virtual clock at 0.
    pub fn new() -> Clock {
        Clock::default()
    }

    /// Now.
    pub fn now(&self) -> Instant {
        Instant(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Moves the clock `d` forward (the runtime does this under its lock and
    /// then wakes every waiter).
    pub fn advance(&self, d: std::time::Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let now = self.0.load(std::sync::atomic::Ordering::SeqCst);
        self.0
            .store(now.saturating_add(ms), std::sync::atomic::Ordering::SeqCst);
    }
}

/// Locks `m`, recovering the data from a poisoned lock (a panic elsewhere
/// must not turn every later VDI call into a panic).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `c` without a timeout.
pub fn wait<'a, T>(c: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    c.wait(g).unwrap_or_else(|e| e.into_inner())
}

/// Waits on `c` for at most `d` (may wake early: callers re-check). Under
/// loom, until notified (a timeout expires through the runtime's
/// `advance_clock`, which notifies).
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
