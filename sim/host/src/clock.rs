//! The scaled clock of real-time hosts. A harness case runs on a clock S
//! times faster than real time (S virtual ms per real ms, chosen per case
//! so that minutes of virtual time take under a second): the server host
//! reads real elapsed time × S, and every wait of T virtual ms takes T / S
//! real ms, rounded up.

use std::time::{Duration, Instant};

/// Virtual ms since `started` at `scale` virtual ms per real ms.
pub fn scaled_now(started: Instant, scale: u32) -> u64 {
    let real = started.elapsed().as_micros();
    u64::try_from(real.saturating_mul(u128::from(scale.max(1))) / 1000).unwrap_or(u64::MAX)
}

/// The real wait for a timeout of `ms` virtual milliseconds under `scale`
/// virtual ms per real ms (0 or 1: real time): `ms / scale` rounded up, at
/// least 1 ms for any `ms > 0`; 0 stays 0 (a poll).
pub fn scaled_wait(ms: u64, scale: u32) -> Duration {
    if scale <= 1 || ms == 0 {
        return Duration::from_millis(ms);
    }
    Duration::from_millis(ms.div_ceil(u64::from(scale)).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_waits() {
        assert_eq!(scaled_wait(0, 1000), Duration::ZERO);
        assert_eq!(scaled_wait(1, 1000), Duration::from_millis(1));
        assert_eq!(scaled_wait(1001, 1000), Duration::from_millis(2));
        assert_eq!(scaled_wait(60_000, 300), Duration::from_millis(200));
        assert_eq!(scaled_wait(7, 0), Duration::from_millis(7));
        assert_eq!(scaled_wait(7, 1), Duration::from_millis(7));
        assert_eq!(scaled_wait(120_000, 300), Duration::from_millis(400));
    }
}
