//! Per-pool load signals: in-flight, arrivals, latency, errors.
//!
//! The request path (`begin`, `end`, `record`) touches only relaxed atomics:
//! no lock, no allocation. One ticker task calls [`LoadSignals::take_window`]
//! every tick (≈100 ms); it drains the current window with atomic swaps into
//! [`WindowStats`], keeps a ring of recent windows for sliding p50/p99 (the
//! last [`SignalsConfig::sliding`], at most [`RING`] windows) and updates a
//! time-based latency EWMA. The tick-side state sits behind a mutex that only
//! the ticker takes.
//!
//! Latency samples are the time to the upstream's response headers for `Ok`
//! and `ServerError` outcomes. `Failed` (connect error, timeout, reset) counts
//! as a completion and an error but adds no latency sample: a refused connect
//! is fast and would drag the percentiles down.
//!
//! Invariants: in-flight never underflows (debug-asserted); every recorded
//! sample lands in exactly one window.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::histogram::{self, AtomicHistogram, BUCKETS};
use crate::sync::lock;

/// Most windows kept for the sliding percentiles.
pub const RING: usize = 16;

/// How one upstream exchange ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The upstream answered 5xx.
    ServerError,
    /// Connect error, timeout or reset: no response headers.
    Failed,
}

/// Tuning of the tick side, with documented defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SignalsConfig {
    /// Horizon of the sliding percentiles (default 1 s, at most [`RING`] windows).
    pub sliding: Duration,
    /// Time constant of the latency EWMA (default 2 s).
    pub ewma_window: Duration,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        Self { sliding: Duration::from_secs(1), ewma_window: Duration::from_secs(2) }
    }
}

/// One drained window, as seen by the limit, the gate and the dashboard.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WindowStats {
    /// Since the previous take (zero on the first take).
    pub elapsed: Duration,
    /// Latency samples (Ok and ServerError completions).
    pub samples: u64,
    pub arrivals: u64,
    /// ServerError and Failed completions.
    pub errors: u64,
    /// In-flight when the window was taken.
    pub in_flight: u32,
    /// Peak in-flight during the window.
    pub max_in_flight: u32,
    /// From histogram bucket midpoints (≤ ~1.6 % error), like the percentiles.
    pub mean: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub p50_sliding: Duration,
    pub p99_sliding: Duration,
    pub ewma: Duration,
    pub arrival_rps: f64,
    pub completion_rps: f64,
    /// errors / completions in this window (0 when none completed).
    pub error_rate: f64,
}

/// One unit of the high half of a packed counter pair.
const HIGH: u64 = 1 << 32;

/// Load signals of one pool; `Send + Sync`, shared by every request.
///
/// Counters that change together share one atomic word, so a request costs
/// three atomic read-modify-writes in the common case (`begin`, the latency
/// bucket, `end`).
pub struct LoadSignals {
    /// Low half: in-flight; high half: arrivals since the last take.
    gauge: AtomicU64,
    peak: AtomicU32,
    /// Low half: errors; high half: failed (no latency sample).
    errors: AtomicU64,
    hist: AtomicHistogram,
    config: SignalsConfig,
    tick: Mutex<TickState>,
}

/// Owned by the ticker: scratch space, the ring and the running sums.
struct TickState {
    current: Vec<u64>,
    ring: Vec<Vec<u32>>,
    ring_end: [Option<Instant>; RING],
    next: usize,
    sliding: Vec<u64>,
    sliding_total: u64,
    last_take: Option<Instant>,
    ewma: Option<Duration>,
}

impl LoadSignals {
    pub fn new() -> Self {
        Self::with_config(SignalsConfig::default())
    }

    pub fn with_config(config: SignalsConfig) -> Self {
        Self {
            gauge: AtomicU64::new(0),
            peak: AtomicU32::new(0),
            errors: AtomicU64::new(0),
            hist: AtomicHistogram::new(),
            config,
            tick: Mutex::new(TickState::new()),
        }
    }

    /// A request starts: returns in-flight after the increment.
    #[inline]
    pub fn begin(&self) -> u32 {
        let now = (self.gauge.fetch_add(HIGH + 1, Relaxed) as u32).wrapping_add(1);
        if now > self.peak.load(Relaxed) {
            self.peak.fetch_max(now, Relaxed);
        }
        now
    }

    /// A slot is taken for a request already counted as an arrival (one
    /// handed a slot from a queue).
    #[inline]
    pub fn take_slot(&self) -> u32 {
        let now = (self.gauge.fetch_add(1, Relaxed) as u32).wrapping_add(1);
        self.peak.fetch_max(now, Relaxed);
        now
    }

    /// An arrival that takes a slot handed over by a request that ended
    /// (in-flight does not move).
    #[inline]
    pub fn count_arrival(&self) {
        self.gauge.fetch_add(HIGH, Relaxed);
    }

    /// A request ends (whatever its outcome). Saturates at zero.
    #[inline]
    pub fn end(&self) {
        let before = self.gauge.fetch_sub(1, Relaxed) as u32;
        if before == 0 {
            debug_assert!(false, "LoadSignals::end without begin");
            // Undo the borrow from the arrivals half.
            self.gauge.fetch_add(1, Relaxed);
        }
    }

    #[inline]
    pub fn in_flight(&self) -> u32 {
        self.gauge.load(Relaxed) as u32
    }

    /// Record a completion: `latency` is the time to upstream response headers.
    #[inline]
    pub fn record(&self, latency: Duration, outcome: Outcome) {
        match outcome {
            Outcome::Failed => {
                self.errors.fetch_add(HIGH + 1, Relaxed);
                return;
            }
            Outcome::ServerError => {
                self.errors.fetch_add(1, Relaxed);
            }
            Outcome::Ok => {}
        }
        self.hist.record(histogram::micros(latency));
    }

    /// Drain the current window (called by one ticker task every tick).
    pub fn take_window(&self, now: Instant) -> WindowStats {
        let mut tick = lock(&self.tick);
        let gauge = self.gauge.load(Relaxed);
        let arrivals = gauge >> 32;
        // Take only the arrivals read; later ones stay for the next window.
        self.gauge.fetch_sub(arrivals << 32, Relaxed);
        let in_flight = gauge as u32;
        let peak = self.peak.swap(in_flight, Relaxed).max(in_flight);
        let error_pair = self.errors.swap(0, Relaxed);
        let (errors, failed) = (error_pair & (HIGH - 1), error_pair >> 32);
        let samples = {
            let TickState { current, .. } = &mut *tick;
            self.hist.drain_into(current)
        };
        let elapsed = tick.last_take.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        tick.last_take = Some(now);
        let mean = histogram::mean(&tick.current, samples);
        let ewma = tick.update_ewma(mean, samples, elapsed, self.config.ewma_window);
        tick.push(now, self.config.sliding);
        let completions = samples + failed;
        WindowStats {
            elapsed,
            samples,
            arrivals,
            errors,
            in_flight,
            max_in_flight: peak,
            mean,
            p50: histogram::quantile(&tick.current, samples, 0.50),
            p99: histogram::quantile(&tick.current, samples, 0.99),
            p50_sliding: histogram::quantile(&tick.sliding, tick.sliding_total, 0.50),
            p99_sliding: histogram::quantile(&tick.sliding, tick.sliding_total, 0.99),
            ewma,
            arrival_rps: per_second(arrivals, elapsed),
            completion_rps: per_second(completions, elapsed),
            error_rate: if completions == 0 { 0.0 } else { errors as f64 / completions as f64 },
        }
    }
}

impl Default for LoadSignals {
    fn default() -> Self {
        Self::new()
    }
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        count as f64 / elapsed.as_secs_f64()
    }
}

impl TickState {
    fn new() -> Self {
        Self {
            current: vec![0; BUCKETS],
            ring: vec![vec![0; BUCKETS]; RING],
            ring_end: [None; RING],
            next: 0,
            sliding: vec![0; BUCKETS],
            sliding_total: 0,
            last_take: None,
            ewma: None,
        }
    }

    /// Time-based EWMA of window means: weight 1 - e^(-elapsed/window).
    fn update_ewma(&mut self, mean: Duration, samples: u64, elapsed: Duration, window: Duration) -> Duration {
        if samples == 0 {
            return self.ewma.unwrap_or_default();
        }
        let next = match self.ewma {
            None => mean,
            Some(old) => {
                let alpha = 1.0 - (-elapsed.as_secs_f64() / window.as_secs_f64().max(1e-9)).exp();
                let secs = old.as_secs_f64() + alpha * (mean.as_secs_f64() - old.as_secs_f64());
                Duration::from_secs_f64(secs.max(0.0))
            }
        };
        self.ewma = Some(next);
        next
    }

    /// Add the current window to the ring and drop windows older than `horizon`.
    fn push(&mut self, now: Instant, horizon: Duration) {
        let slot = self.next;
        self.next = (slot + 1) % RING;
        self.evict(slot);
        let Self { current, ring, sliding, .. } = self;
        for ((kept, add), sum) in ring[slot].iter_mut().zip(current.iter()).zip(sliding.iter_mut()) {
            *kept = u32::try_from(*add).unwrap_or(u32::MAX);
            *sum += u64::from(*kept);
        }
        self.sliding_total += ring[slot].iter().map(|c| u64::from(*c)).sum::<u64>();
        self.ring_end[slot] = Some(now);
        for old in 0..RING {
            if matches!(self.ring_end[old], Some(end) if now.saturating_duration_since(end) >= horizon) {
                self.evict(old);
            }
        }
    }

    fn evict(&mut self, slot: usize) {
        if self.ring_end[slot].take().is_none() {
            return;
        }
        let mut removed = 0;
        for (sum, kept) in self.sliding.iter_mut().zip(self.ring[slot].iter_mut()) {
            debug_assert!(*sum >= u64::from(*kept));
            *sum -= u64::from(*kept);
            removed += u64::from(*kept);
            *kept = 0;
        }
        self.sliding_total -= removed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn in_flight_counts_and_peak() {
        let s = LoadSignals::new();
        let t0 = Instant::now();
        assert_eq!(s.begin(), 1);
        assert_eq!(s.begin(), 2);
        assert_eq!(s.begin(), 3);
        s.end();
        s.end();
        assert_eq!(s.in_flight(), 1);
        let w = s.take_window(t0);
        assert_eq!((w.in_flight, w.max_in_flight, w.arrivals), (1, 3, 3));
        assert_eq!(w.elapsed, Duration::ZERO);
        assert_eq!(w.arrival_rps, 0.0, "no rate without elapsed time");
        let w = s.take_window(t0 + ms(100));
        assert_eq!((w.max_in_flight, w.arrivals), (1, 0), "peak restarts from current");
    }

    #[test]
    fn outcomes_rates_and_percentiles() {
        let s = LoadSignals::new();
        let t0 = Instant::now();
        s.take_window(t0);
        for i in 1..=100u64 {
            s.begin();
            s.record(ms(i), Outcome::Ok);
            s.end();
        }
        s.record(ms(5), Outcome::ServerError);
        s.record(ms(30_000), Outcome::Failed);
        let w = s.take_window(t0 + ms(500));
        assert_eq!((w.samples, w.errors, w.arrivals), (101, 2, 100));
        assert!((w.arrival_rps - 200.0).abs() < 1e-9);
        assert!((w.completion_rps - 204.0).abs() < 1e-9);
        assert!((w.error_rate - 2.0 / 102.0).abs() < 1e-9);
        let close = |d: Duration, want: u64| (d.as_secs_f64() * 1e3 - want as f64).abs() <= want as f64 * 0.02;
        assert!(close(w.p50, 50), "p50 {:?}", w.p50);
        assert!(close(w.p99, 99), "p99 {:?}", w.p99);
        assert!(close(w.mean, 50), "mean {:?}", w.mean);
        assert_eq!(w.p99_sliding, w.p99);
        assert_eq!(w.ewma, w.mean, "the first EWMA is the first mean");
    }

    #[test]
    fn sliding_window_forgets_after_its_horizon_and_ewma_follows() {
        let s = LoadSignals::new();
        let t0 = Instant::now();
        s.take_window(t0);
        s.record(ms(200), Outcome::Ok);
        let first = s.take_window(t0 + ms(100));
        for tick in 2..=10 {
            s.record(ms(10), Outcome::Ok);
            let last = s.take_window(t0 + ms(100 * tick));
            assert!(last.p99_sliding >= ms(190), "tick {tick}: slow sample still in the ring");
            assert!(last.ewma < first.ewma && last.ewma > ms(10));
        }
        s.record(ms(10), Outcome::Ok);
        let w = s.take_window(t0 + ms(1100));
        assert!(w.p99_sliding < ms(11), "slow sample left after 1 s: {:?}", w.p99_sliding);
        let idle = s.take_window(t0 + ms(5000));
        assert_eq!((idle.samples, idle.p99_sliding), (0, Duration::ZERO));
        assert_eq!(idle.ewma, w.ewma, "an empty window keeps the EWMA");
    }

    #[test]
    fn concurrent_records_are_not_lost() {
        let s = std::sync::Arc::new(LoadSignals::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        s.begin();
                        s.record(Duration::from_micros(100 + i + t), Outcome::Ok);
                        s.end();
                    }
                })
            })
            .collect();
        let t0 = Instant::now();
        let mut samples = 0;
        for n in 0..50 {
            samples += s.take_window(t0 + ms(n)).samples;
        }
        threads.into_iter().for_each(|t| t.join().unwrap());
        samples += s.take_window(t0 + ms(100)).samples;
        assert_eq!(samples, 40_000);
        assert_eq!(s.in_flight(), 0);
    }
}
