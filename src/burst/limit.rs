//! Adaptive concurrency limit: a gradient controller in the family of
//! Netflix's Gradient2 and Envoy's adaptive concurrency filter.
//!
//! Once per window (tick), with `sample` = the window's p50 latency:
//!
//! ```text
//! gradient = clamp(tolerance × baseline / sample, 0.5, 1.0)
//! target   = limit × gradient + queue_allowance(limit)
//! limit    = limit × (1 − smoothing) + target × smoothing      (clamped to [min, max])
//! ```
//!
//! For a pool of C workers, latency is flat up to C in flight and grows as
//! N/C beyond (requests wait in the accept queue), so the limit settles near
//! `tolerance × C + queue_allowance`, whatever the offered load.
//!
//! The baseline is the pool's no-load latency. It falls quickly toward a
//! lower sample (weight `baseline_fall` per window) and rises slowly, with a
//! time constant of `baseline_rise` while the pool is not saturated and the
//! much longer `baseline_rise_saturated` while it is, so a sustained overload
//! does not teach the controller that queueing is normal (Gradient2's drift)
//! while a lasting change of the backend's speed is still learnt.
//!
//! Safeguards: windows with fewer than `min_samples` latency samples change
//! nothing; the gradient floor of 0.5 and the smoothing mean one noisy window
//! moves the limit by at most `smoothing / 2` (10 % by default); the limit
//! only grows when the window's peak in-flight reached `app_limited_below ×
//! limit`, so an idle pool does not accumulate an unbounded limit.
//! While the pool is not saturated the limit also drifts down (time
//! constant `calm_decay`) toward `calm_headroom × peak in-flight + queue
//! allowance`, so a calm pool's limit stays near what it really carries and a
//! burst's leading edge meets a limit close to capacity rather than
//! `max_in_flight` (measured: the first burst was otherwise admitted up to
//! the cap before latency brought the limit down).
//! Known limit: a controller started in the middle of an overload takes the
//! loaded latency as its baseline until the load drops (Envoy solves this by
//! probing at low concurrency; not done here).
//!
//! Invariant: `limit()` is always within `[min, max]`.

use std::time::{Duration, Instant};

use super::signals::WindowStats;

/// How much queueing the limit allows on top of `limit × gradient`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QueueAllowance {
    /// A constant number of requests (Gradient2's default is 4).
    Fixed(u32),
    /// √limit, at least 1 (Envoy's headroom): scales with the pool.
    SquareRoot,
}

impl QueueAllowance {
    fn at(self, limit: f64) -> f64 {
        match self {
            Self::Fixed(n) => f64::from(n),
            Self::SquareRoot => limit.sqrt().max(1.0),
        }
    }
}

/// Parameters of [`ConcurrencyLimit`]; `LimitParams::new(min, max, initial)`
/// fills the rest with the defaults below.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LimitParams {
    pub min: u32,
    pub max: u32,
    pub initial: u32,
    /// Weight of the new target per window (default 0.2).
    pub smoothing: f64,
    /// Weight of a *lower* target per window (default 0.3): the limit comes
    /// down faster than it goes up, so a burst's leading edge is not admitted
    /// at the old, calm limit for long.
    pub smoothing_down: f64,
    /// Latency ratio over the baseline still counted as no queueing (default 1.1).
    pub tolerance: f64,
    /// Default √limit.
    pub queue: QueueAllowance,
    /// Baseline rise time constant while not saturated (default 10 s).
    pub baseline_rise: Duration,
    /// Baseline rise time constant while saturated (default 300 s).
    pub baseline_rise_saturated: Duration,
    /// Weight of a lower sample in the baseline, per window (default 0.1).
    pub baseline_fall: f64,
    /// Windows with fewer latency samples are ignored (default 5).
    pub min_samples: u64,
    /// Calm limit: `calm_headroom × peak in-flight` (+ queue allowance) (default 2.0).
    pub calm_headroom: f64,
    /// Time constant of the drift down to the calm limit (default 10 s).
    pub calm_decay: Duration,
    /// The pool is saturated when its peak in-flight reached this share of the limit (default 0.5).
    pub app_limited_below: f64,
    /// When latency shows queueing, shrink from the window's peak in-flight
    /// if that is below the limit, not from the limit (default false). For
    /// a pool whose limit starts far above what it carries (a cloud pool at
    /// its maximum): the first congested window brings the limit down to
    /// what the pool holds instead of a few per cent of an unused maximum.
    pub shrink_from_in_flight: bool,
}

impl LimitParams {
    pub fn new(min: u32, max: u32, initial: u32) -> Self {
        Self {
            min,
            max,
            initial,
            smoothing: 0.2,
            smoothing_down: 0.3,
            tolerance: 1.1,
            queue: QueueAllowance::SquareRoot,
            baseline_rise: Duration::from_secs(10),
            baseline_rise_saturated: Duration::from_secs(300),
            baseline_fall: 0.1,
            min_samples: 5,
            app_limited_below: 0.5,
            calm_headroom: 2.0,
            calm_decay: Duration::from_secs(10),
            shrink_from_in_flight: false,
        }
    }

    /// `min` at least 1, `max` at least `min`.
    fn bounds(&self) -> (f64, f64) {
        let min = self.min.max(1);
        (f64::from(min), f64::from(self.max.max(min)))
    }
}

/// The state of a [`ConcurrencyLimit`] that a process upgrade hands over.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LearntLimit {
    pub estimate: f64,
    /// No-load latency, seconds.
    pub baseline_secs: Option<f64>,
}

/// The adaptive limit of one pool; owned by its ticker.
#[derive(Clone, Debug)]
pub struct ConcurrencyLimit {
    params: LimitParams,
    estimate: f64,
    /// No-load latency, seconds.
    baseline: Option<f64>,
    last_update: Option<Instant>,
}

impl ConcurrencyLimit {
    pub fn new(params: LimitParams) -> Self {
        let (min, max) = params.bounds();
        let estimate = f64::from(params.initial).clamp(min, max);
        Self { params, estimate, baseline: None, last_update: None }
    }

    /// Take new parameters (config reload), keeping the learnt state.
    pub fn reconfigure(&mut self, params: LimitParams) {
        let (min, max) = params.bounds();
        self.params = params;
        self.estimate = self.estimate.clamp(min, max);
    }

    /// Feed one window; returns the new limit, within `[min, max]`.
    pub fn update(&mut self, window: &WindowStats, now: Instant) -> u32 {
        let dt = self.last_update.map_or(window.elapsed, |t| now.saturating_duration_since(t));
        self.last_update = Some(now);
        if window.samples == 0 || window.samples < self.params.min_samples {
            return self.limit();
        }
        let sample = window.p50.as_secs_f64().max(1e-6);
        let saturated = f64::from(window.max_in_flight) >= self.estimate * self.params.app_limited_below;
        let baseline = self.track_baseline(sample, saturated, dt);
        let gradient = (self.params.tolerance * baseline / sample).clamp(0.5, 1.0);
        let base = match self.params.shrink_from_in_flight && gradient < 1.0 {
            true => self.estimate.min(f64::from(window.max_in_flight).max(1.0)),
            false => self.estimate,
        };
        let target = base * gradient + self.params.queue.at(base);
        let (min, max) = self.params.bounds();
        if target < self.estimate {
            let s = self.params.smoothing_down.clamp(0.0, 1.0);
            self.estimate = (base * (1.0 - s) + target * s).clamp(min, max);
        } else if saturated {
            let s = self.params.smoothing.clamp(0.0, 1.0);
            self.estimate = (self.estimate * (1.0 - s) + target * s).clamp(min, max);
        }
        if !saturated {
            self.drift_to_calm(window, dt);
        }
        self.limit()
    }

    /// Not saturated: move toward what the pool carries, with headroom.
    fn drift_to_calm(&mut self, window: &WindowStats, dt: Duration) {
        let ceiling = self.params.calm_headroom * f64::from(window.max_in_flight)
            + self.params.queue.at(f64::from(window.max_in_flight).max(1.0));
        if self.estimate > ceiling && !self.params.calm_decay.is_zero() {
            let w = 1.0 - (-dt.as_secs_f64() / self.params.calm_decay.as_secs_f64()).exp();
            let (min, max) = self.params.bounds();
            self.estimate = (self.estimate - (self.estimate - ceiling) * w).clamp(min, max);
        }
    }

    pub fn limit(&self) -> u32 {
        let (min, max) = self.params.bounds();
        let limit = self.estimate.round().clamp(min, max) as u32;
        debug_assert!((self.params.min.max(1)..=self.params.max.max(self.params.min.max(1))).contains(&limit));
        limit
    }

    /// What this limit has learnt, for a successor process.
    pub fn learnt(&self) -> LearntLimit {
        LearntLimit { estimate: self.estimate, baseline_secs: self.baseline }
    }

    /// Continues from what a predecessor learnt (clamped to this limit's
    /// bounds; a non-finite or non-positive value is ignored).
    pub fn resume(&mut self, learnt: &LearntLimit) {
        let (min, max) = self.params.bounds();
        if learnt.estimate.is_finite() {
            self.estimate = learnt.estimate.clamp(min, max);
        }
        self.baseline = learnt.baseline_secs.filter(|b| b.is_finite() && *b > 0.0).or(self.baseline);
    }

    /// The learnt no-load latency, once a window had enough samples.
    pub fn rtt_baseline(&self) -> Option<Duration> {
        self.baseline.map(Duration::from_secs_f64)
    }

    pub fn params(&self) -> &LimitParams {
        &self.params
    }

    /// Move the baseline toward `sample`: fast down, slow up.
    fn track_baseline(&mut self, sample: f64, saturated: bool, dt: Duration) -> f64 {
        let next = match self.baseline {
            None => sample,
            Some(old) if sample < old => old + (sample - old) * self.params.baseline_fall.clamp(0.0, 1.0),
            Some(old) => {
                let tau = if saturated { self.params.baseline_rise_saturated } else { self.params.baseline_rise };
                let alpha = 1.0 - (-dt.as_secs_f64() / tau.as_secs_f64().max(1e-9)).exp();
                old + (sample - old) * alpha
            }
        };
        self.baseline = Some(next);
        next
    }
}

/// Static mode's limit: `max` while the pool meets its latency SLO. A window
/// whose p99 exceeds the SLO (with at least `MIN_SLO_SAMPLES` samples) cuts
/// the limit to 90 % of the lower of the limit and the window's peak
/// in-flight; a window with samples within the SLO raises it by 5 % (at
/// least 1) back toward `max`. This gives static mode's "spill when p99 exceeds the
/// SLO" a concurrency to spill above; pass `max_in_flight` as `max`.
#[derive(Clone, Debug)]
pub struct SloLimit {
    min: f64,
    max: f64,
    slo: Duration,
    estimate: f64,
}

/// Fewest samples for a window's p99 to cut the static limit.
pub const MIN_SLO_SAMPLES: u64 = 5;

impl SloLimit {
    pub fn new(min: u32, max: u32, slo: Duration) -> Self {
        let (min, max) = LimitParams::new(min, max, max).bounds();
        Self { min, max, slo, estimate: max }
    }

    /// Feed one window; returns the new limit, within `[min, max]`.
    pub fn update(&mut self, window: &WindowStats) -> u32 {
        if window.p99 > self.slo {
            if window.samples >= MIN_SLO_SAMPLES {
                self.estimate = self.estimate.min(f64::from(window.max_in_flight)) * 0.9;
            }
        } else if window.samples > 0 {
            self.estimate += (self.estimate * 0.05).max(1.0);
        }
        self.estimate = self.estimate.clamp(self.min, self.max);
        self.limit()
    }

    pub fn limit(&self) -> u32 {
        self.estimate.round() as u32
    }

    /// The estimate, for a successor process.
    pub fn estimate(&self) -> f64 {
        self.estimate
    }

    /// Continues from a predecessor's estimate (clamped; non-finite ignored).
    pub fn resume(&mut self, estimate: f64) {
        if estimate.is_finite() {
            self.estimate = estimate.clamp(self.min, self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(100);

    fn window(p50_ms: f64, samples: u64, peak: u32) -> WindowStats {
        WindowStats {
            elapsed: TICK,
            samples,
            max_in_flight: peak,
            p50: Duration::from_secs_f64(p50_ms / 1e3),
            ..WindowStats::default()
        }
    }

    /// Latency of a pool of `c` workers with `n` in flight and 20 ms service time.
    fn pool_p50(n: u32, c: u32) -> f64 {
        20.0 * (f64::from(n) / f64::from(c)).max(1.0)
    }

    #[test]
    fn a_calm_pool_drifts_down_to_what_it_carries() {
        let t0 = Instant::now();
        let mut l = ConcurrencyLimit::new(LimitParams::new(4, 400, 400));
        // 8 in flight at baseline latency for a minute: not saturated.
        for i in 1..=600 {
            l.update(&window(20.0, 100, 8), t0 + TICK * i);
        }
        let calm = l.limit();
        assert!((18..=25).contains(&calm), "2 × 8 + √8 ≈ 19, got {calm}");
        // Load rises with latency flat: the pool saturates and the limit grows again.
        for i in 601..=700 {
            let limit = l.limit();
            l.update(&window(20.0, 100, limit), t0 + TICK * i);
        }
        assert!(l.limit() > calm + 10, "grew from {calm} to {}", l.limit());
    }

    #[test]
    fn a_limit_far_above_its_load_shrinks_to_the_load_at_the_first_queueing() {
        let t0 = Instant::now();
        let mut params = LimitParams::new(4, 2000, 2000);
        params.calm_decay = Duration::ZERO;
        let mut plain = ConcurrencyLimit::new(params);
        params.shrink_from_in_flight = true;
        let mut cloud = ConcurrencyLimit::new(params);
        // Light load teaches the baseline; no calm drift: both stay at 2000.
        for i in 1..=20 {
            plain.update(&window(20.0, 100, 6), t0 + TICK * i);
            cloud.update(&window(20.0, 100, 6), t0 + TICK * i);
        }
        assert_eq!((plain.limit(), cloud.limit()), (2000, 2000));
        // 12 workers, 40 in flight: latency triples.
        let at = t0 + TICK * 21;
        plain.update(&window(pool_p50(40, 12), 100, 40), at);
        cloud.update(&window(pool_p50(40, 12), 100, 40), at);
        assert!(plain.limit() > 1500, "a few per cent of the maximum: {}", plain.limit());
        assert!(cloud.limit() <= 40, "down to what it holds at once: {}", cloud.limit());
        // Then it settles near the workers, as the plain one does from any start.
        for i in 22..=200 {
            let n = cloud.limit();
            cloud.update(&window(pool_p50(n, 12), 100, n), t0 + TICK * i);
        }
        assert!((12..=20).contains(&cloud.limit()), "{}", cloud.limit());
    }

    #[test]
    fn empty_or_thin_windows_change_nothing() {
        let t0 = Instant::now();
        let mut l = ConcurrencyLimit::new(LimitParams::new(4, 100, 20));
        assert_eq!(l.update(&window(500.0, 0, 20), t0), 20);
        assert_eq!(l.update(&window(500.0, 4, 20), t0 + TICK), 20);
        assert_eq!(l.rtt_baseline(), None);
    }

    #[test]
    fn grows_while_latency_holds_and_saturated_but_not_when_app_limited() {
        let t0 = Instant::now();
        let mut l = ConcurrencyLimit::new(LimitParams::new(4, 1000, 20));
        for i in 1..=50 {
            l.update(&window(20.0, 100, 5), t0 + TICK * i);
        }
        // App-limited: no growth; it drifts down toward 2 × 5 + √5 ≈ 12.
        assert!((12..20).contains(&l.limit()), "app-limited: {}", l.limit());
        for i in 51..=100 {
            let limit = l.limit();
            l.update(&window(20.0, 100, limit), t0 + TICK * i);
        }
        assert!(l.limit() > 60, "saturated at baseline latency: grows, got {}", l.limit());
    }

    #[test]
    fn converges_near_capacity_from_above_and_below() {
        let t0 = Instant::now();
        for (initial, c) in [(10, 50), (400, 50), (5, 200), (900, 200)] {
            let mut l = ConcurrencyLimit::new(LimitParams::new(2, 1000, initial));
            l.update(&window(20.0, 100, 1), t0);
            for i in 1..=600 {
                let n = l.limit();
                l.update(&window(pool_p50(n, c), 100, n), t0 + TICK * i);
            }
            let (lo, hi) = (c, c + c / 2);
            assert!((lo..=hi).contains(&l.limit()), "C={c} from {initial}: limit {}", l.limit());
            let baseline = l.rtt_baseline().unwrap().as_secs_f64() * 1e3;
            assert!((19.0..=23.0).contains(&baseline), "baseline {baseline} ms");
        }
    }

    #[test]
    fn one_noisy_window_does_not_collapse_and_it_recovers() {
        let t0 = Instant::now();
        let mut l = ConcurrencyLimit::new(LimitParams::new(2, 1000, 100));
        l.update(&window(20.0, 100, 100), t0);
        let before = l.limit();
        l.update(&window(2000.0, 100, 100), t0 + TICK);
        assert!(l.limit() >= before * 85 / 100, "{before} -> {}", l.limit());
        l.update(&window(0.5, 100, 100), t0 + TICK * 2);
        for i in 3..=30 {
            l.update(&window(20.0, 100, l.limit()), t0 + TICK * i);
        }
        assert!(l.limit() >= before, "recovered to {} (was {before})", l.limit());
    }

    #[test]
    fn stays_within_bounds_under_random_windows() {
        let seed = 0x5eed;
        let mut rng = fastrand::Rng::with_seed(seed);
        let t0 = Instant::now();
        for _ in 0..200 {
            let min = rng.u32(1..20);
            let max = rng.u32(min..500);
            let mut l = ConcurrencyLimit::new(LimitParams::new(min, max, rng.u32(0..1000)));
            for i in 0..100 {
                let w = window(rng.f64() * 5000.0, rng.u64(0..200), rng.u32(0..1000));
                let got = l.update(&w, t0 + TICK * i);
                assert!((min..=max).contains(&got), "seed {seed}: {got} outside [{min}, {max}]");
            }
        }
    }

    #[test]
    fn slo_limit_cuts_over_the_slo_and_recovers_to_max() {
        let slo = Duration::from_millis(250);
        let mut l = SloLimit::new(4, 200, slo);
        let slow = WindowStats { samples: 50, max_in_flight: 120, p99: slo * 2, ..WindowStats::default() };
        assert_eq!(l.update(&slow), 108);
        assert_eq!(l.update(&slow), 97);
        assert_eq!(l.update(&WindowStats { samples: 2, ..slow }), 97, "too few samples to cut");
        for _ in 0..100 {
            l.update(&slow);
        }
        assert_eq!(l.limit(), 4);
        let fast = WindowStats { p99: slo / 2, ..slow };
        for _ in 0..200 {
            l.update(&fast);
        }
        assert_eq!(l.limit(), 200);
        assert_eq!(l.update(&WindowStats::default()), 200);
    }

    #[test]
    fn reconfigure_keeps_state_and_clamps() {
        let mut l = ConcurrencyLimit::new(LimitParams::new(1, 100, 80));
        l.reconfigure(LimitParams::new(1, 50, 10));
        assert_eq!(l.limit(), 50);
        let degenerate = ConcurrencyLimit::new(LimitParams::new(0, 0, 0));
        assert_eq!(degenerate.limit(), 1);
    }
}
