//! Endpoint choice: power of two choices over a PeakEWMA cost, as in
//! linkerd2-proxy and tower's `PeakEwma`. Pure functions; the caller passes
//! the RNG draw and the clock reading.
//!
//! Cost = latency estimate × (pending + 1): an endpoint that is slow or busy
//! looks expensive, and the "peak" rule makes a latency spike count at once
//! while improvements decay in over `decay`.

use std::time::Duration;

/// Picks two distinct indices out of `len` from two random draws; with one
/// candidate both are the same.
pub(crate) fn pair(len: usize, a: u64, b: u64) -> (usize, usize) {
    debug_assert!(len > 0);
    if len == 1 {
        return (0, 0);
    }
    let i = (a % len as u64) as usize;
    // Draw j from the other len-1 slots so i != j without a retry loop.
    let mut j = (b % (len as u64 - 1)) as usize;
    if j >= i {
        j += 1;
    }
    (i, j)
}

/// PeakEWMA update: a sample above the estimate replaces it (peak); below,
/// the estimate decays toward it with weight depending on elapsed time.
pub(crate) fn peak_ewma(estimate_ns: f64, elapsed: Duration, sample_ns: f64, decay: Duration) -> f64 {
    if sample_ns > estimate_ns {
        return sample_ns;
    }
    let w = (-(elapsed.as_secs_f64()) / decay.as_secs_f64()).exp();
    estimate_ns * w + sample_ns * (1.0 - w)
}

/// The load-balancing cost of an endpoint.
pub(crate) fn cost(estimate_ns: f64, pending: u32) -> f64 {
    estimate_ns.max(1.0) * (pending as f64 + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_is_distinct_and_in_range() {
        let mut rng = fastrand::Rng::with_seed(7);
        for len in 2..20 {
            for _ in 0..200 {
                let (i, j) = pair(len, rng.u64(..), rng.u64(..));
                assert!(i < len && j < len && i != j, "len={len} i={i} j={j}");
            }
        }
        assert_eq!(pair(1, 5, 9), (0, 0));
    }

    #[test]
    fn pair_covers_every_index() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut seen = [0u32; 5];
        for _ in 0..1000 {
            let (i, j) = pair(5, rng.u64(..), rng.u64(..));
            seen[i] += 1;
            seen[j] += 1;
        }
        assert!(seen.iter().all(|n| *n > 250), "{seen:?}");
    }

    #[test]
    fn peaks_jump_and_decay() {
        let d = Duration::from_secs(10);
        assert_eq!(peak_ewma(100.0, Duration::ZERO, 500.0, d), 500.0);
        let decayed = peak_ewma(500.0, Duration::from_secs(10), 100.0, d);
        assert!(decayed < 500.0 && decayed > 100.0);
        let later = peak_ewma(500.0, Duration::from_secs(100), 100.0, d);
        assert!(later < decayed);
    }

    #[test]
    fn busy_endpoints_cost_more() {
        assert!(cost(1000.0, 3) > cost(1000.0, 0));
        assert!(cost(2000.0, 0) > cost(1000.0, 0));
    }
}
