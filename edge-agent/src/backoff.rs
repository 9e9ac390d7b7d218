//! [`Backoff`]: jittered exponential back-off for everything that reconnects (camera sources,
//! the MQTT tag reader): `min · 2^failures`, capped at `max`, then jittered down by up to half,
//! so devices that fail together (a switch reboot, a broker restart) do not come back in
//! lockstep.

use std::hash::BuildHasher;
use std::time::Duration;

/// Jittered exponential back-off: `min · 2^failures`, capped at `max`, then jittered down by
/// up to half so cameras failing together (a switch reboot) do not reconnect in lockstep.
#[derive(Debug)]
pub(crate) struct Backoff {
    min_ms: u64,
    max_ms: u64,
    failures: u32,
    rng: u64,
}

impl Backoff {
    /// `seed` spreads different cameras; the process-random hasher keys spread restarts of the
    /// same camera across agent restarts.
    pub(crate) fn new(seed: &str, min_ms: u64, max_ms: u64) -> Self {
        Self {
            min_ms,
            max_ms,
            failures: 0,
            rng: std::collections::hash_map::RandomState::new().hash_one(seed) | 1,
        }
    }

    /// The delay before the next attempt; counts one more consecutive failure.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let min = self.min_ms;
        let max = self.max_ms.max(min);
        let base = min.saturating_mul(1 << self.failures.min(30)).min(max);
        let half = base / 2;
        let jitter = self.next_random() % (half + 1);
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(base - jitter)
    }

    /// Consecutive failures since the last reset.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets past failures: the next delay is back to `min`.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// xorshift64*: plenty for spreading retries, and no dependency.
    pub(crate) fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
impl Backoff {
    /// Sets the failure count, to look at the delay at a given depth.
    fn set_failures(&mut self, n: u32) {
        self.failures = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_with_jitter_within_bounds_and_resets() {
        let mut b = Backoff::new("cam", 100, 1_000);
        let bases = [100, 200, 400, 800, 1000, 1000];
        for base in bases {
            let d = b.next_delay().as_millis() as u64;
            assert!(d >= base / 2 && d <= base, "{d} for base {base}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
        let spread: std::collections::HashSet<_> = (0..20)
            .map(|_| {
                b.set_failures(6);
                b.next_delay()
            })
            .collect();
        assert!(spread.len() > 1, "no jitter: {spread:?}");
    }
}
