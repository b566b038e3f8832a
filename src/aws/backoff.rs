//! Exponential backoff with "equal jitter": attempt `n` waits a uniform
//! random time in `[d/2, d]` where `d = min(max, base · 2ⁿ)`.
//!
//! Pure: the random generator is an argument, so tests replay from a seed.
//! Invariant: every delay lies in `[base/2, max]`.

use std::time::Duration;

/// Backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base: Duration::from_millis(500), max: Duration::from_secs(60) }
    }
}

impl Backoff {
    /// The un-jittered ceiling for attempt `n` (0-based).
    pub(crate) fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry `attempt` (0-based), jittered with `rng`.
    pub(crate) fn delay(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let jitter_ms = rng.u64(0..=(ceiling - half).as_millis() as u64);
        let d = half + Duration::from_millis(jitter_ms);
        debug_assert!(d <= self.max.max(self.base));
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_bounded() {
        let b = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(5) };
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 0..40 {
            let d = b.delay(attempt, &mut rng);
            assert!(d >= b.ceiling(attempt) / 2, "attempt {attempt}: {d:?}");
            assert!(d <= b.ceiling(attempt));
            assert!(d <= b.max);
        }
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(30), Duration::from_secs(5));
    }

    #[test]
    fn same_seed_same_delays() {
        let b = Backoff::default();
        let a: Vec<_> = (0..5).map(|n| b.delay(n, &mut fastrand::Rng::with_seed(1))).collect();
        let c: Vec<_> = (0..5).map(|n| b.delay(n, &mut fastrand::Rng::with_seed(1))).collect();
        assert_eq!(a, c);
    }
}
