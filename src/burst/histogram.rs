//! Log-linear latency histogram (HDR-like), fixed size, microsecond units.
//!
//! Values below 32 µs get one bucket each (exact); above, every power-of-two
//! octave is split into 32 linear sub-buckets, so a bucket is at most 1/32 of
//! its lower bound wide: reporting the bucket midpoint gives ≤ ~1.6 % relative
//! error from 32 µs up to the ceiling of 2^26 µs (≈ 67 s), which is where
//! larger values are clamped. 704 buckets in all.
//!
//! [`AtomicHistogram`] is the record side: one relaxed `fetch_add`, no
//! allocation. [`quantile`] reads plain counts drained from it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Linear sub-buckets per octave, as a power of two.
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Largest representable value in microseconds; larger ones are clamped.
pub(super) const MAX_MICROS: u64 = (1 << 26) - 1;
/// Number of buckets.
pub(super) const BUCKETS: usize = bucket_of(MAX_MICROS) + 1;

/// The bucket index of a value in microseconds (clamped to [`MAX_MICROS`]).
#[inline]
pub(super) const fn bucket_of(micros: u64) -> usize {
    let v = if micros > MAX_MICROS { MAX_MICROS } else { micros };
    let msb = 63 - (v | 1).leading_zeros();
    let shift = msb.saturating_sub(SUB_BITS);
    ((shift as usize) << SUB_BITS) + (v >> shift) as usize
}

/// The midpoint of a bucket, in microseconds (the value itself when exact).
pub(super) const fn bucket_mid(index: usize) -> u64 {
    let shift = if index < 2 * SUB { 0 } else { index / SUB - 1 };
    let sub = (index - shift * SUB) as u64;
    let lower = sub << shift;
    lower + ((1u64 << shift) - 1) / 2
}

/// Microseconds in a duration, saturating.
#[inline]
pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The record side: one atomic counter per bucket.
pub(super) struct AtomicHistogram {
    buckets: Box<[AtomicU64]>,
}

impl AtomicHistogram {
    pub(super) fn new() -> Self {
        let buckets = (0..BUCKETS).map(|_| AtomicU64::new(0)).collect();
        Self { buckets }
    }

    /// Count one value (microseconds).
    #[inline]
    pub(super) fn record(&self, micros: u64) {
        self.buckets[bucket_of(micros)].fetch_add(1, Relaxed);
    }

    /// Move every count into `out` (zeroing the atomics) and return the total.
    /// Records racing with the drain land in this window or the next, never lost.
    pub(super) fn drain_into(&self, out: &mut [u64]) -> u64 {
        debug_assert_eq!(out.len(), BUCKETS);
        let mut total = 0;
        for (slot, bucket) in out.iter_mut().zip(self.buckets.iter()) {
            *slot = bucket.swap(0, Relaxed);
            total += *slot;
        }
        total
    }
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// The value at quantile `q` (0..=1) of `total` samples spread over `counts`,
/// as a bucket midpoint; zero when there are no samples.
pub(super) fn quantile<C: Copy + Into<u64>>(counts: &[C], total: u64, q: f64) -> Duration {
    if total == 0 {
        return Duration::ZERO;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0u64;
    for (index, count) in counts.iter().enumerate() {
        seen += (*count).into();
        if seen >= rank {
            return Duration::from_micros(bucket_mid(index));
        }
    }
    Duration::from_micros(bucket_mid(counts.len() - 1))
}

/// The mean of `total` samples from bucket midpoints (within the bucket error).
pub(super) fn mean(counts: &[u64], total: u64) -> Duration {
    if total == 0 {
        return Duration::ZERO;
    }
    let sum: u128 = counts.iter().enumerate().map(|(i, c)| u128::from(*c) * u128::from(bucket_mid(i))).sum();
    Duration::from_micros((sum / u128::from(total)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact_and_buckets_are_contiguous() {
        for v in 0..64 {
            assert_eq!(bucket_of(v), v as usize);
            assert_eq!(bucket_mid(v as usize), v);
        }
        assert_eq!(BUCKETS, 704);
        let mut previous = 0;
        for v in 1..200_000u64 {
            let b = bucket_of(v);
            assert!(b == previous || b == previous + 1, "gap at {v}");
            previous = b;
        }
    }

    #[test]
    fn bucket_midpoint_is_within_two_percent_from_10us_to_60s() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100_000 {
            let v = (10.0 * 6_000_000f64.powf(rng.f64())) as u64;
            let mid = bucket_mid(bucket_of(v)) as f64;
            let err = (mid - v as f64).abs() / v as f64;
            assert!(err <= 0.02, "value {v} reported {mid} ({:.3})", err);
        }
    }

    #[test]
    fn clamps_above_the_ceiling() {
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(micros(Duration::MAX), u64::MAX);
    }

    #[test]
    fn quantiles_match_the_sorted_samples() {
        let seed = 11;
        let mut rng = fastrand::Rng::with_seed(seed);
        let hist = AtomicHistogram::new();
        let mut values: Vec<u64> = (0..20_000).map(|_| (100.0 * 10_000f64.powf(rng.f64())) as u64).collect();
        values.iter().for_each(|v| hist.record(*v));
        values.sort_unstable();
        let mut counts = vec![0u64; BUCKETS];
        let total = hist.drain_into(&mut counts);
        assert_eq!(total, values.len() as u64);
        for q in [0.5, 0.9, 0.99, 0.999] {
            let exact = values[(q * values.len() as f64).ceil() as usize - 1] as f64;
            let got = quantile(&counts, total, q).as_micros() as f64;
            let err = (got - exact).abs() / exact;
            assert!(err <= 0.02, "seed {seed}: q{q} exact {exact} got {got}");
        }
        assert_eq!(hist.drain_into(&mut counts), 0, "drain zeroes the window");
        assert_eq!(quantile(&counts, 0, 0.5), Duration::ZERO);
    }
}
