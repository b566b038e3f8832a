//! The rates the controllers read, averaged over the scale controller's
//! sampling period. The gate's window is one tick (`spill.tick`, 100 ms):
//! the scale controller, which samples the signals once a second, took one
//! such window in ten, and the noise of a 100 ms count (±30 % at 100 req/s)
//! went into the forecast, whose level and cooldown turn noise into bias
//! (the lower of two noisy levels while rising, the peak held for
//! `scale_in_cooldown`). Pure: `now` is an argument.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::ControlSignals;

/// Ticks kept at most, whatever the window and tick (a 1 s window at
/// 100 ms holds 10).
const MAX_TICKS: usize = 4096;
/// How often the scale controller samples the signals at most
/// (`scale::controller::MAX_SAMPLE_PERIOD`).
pub(crate) const SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// One tick's rates and how long it lasted.
#[derive(Debug, Clone, Copy)]
struct Tick {
    at: Instant,
    secs: f64,
    arrival: f64,
    spilled: f64,
    shed: f64,
}

/// A sliding, time-weighted mean of the per-tick rates over `window`.
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    ticks: VecDeque<Tick>,
    last: Option<Instant>,
}

impl RateWindow {
    /// Replaces the rates of `s` (one tick's) with their mean over the last
    /// `window` (at least this tick). Non-finite or negative rates count as 0.
    pub(crate) fn smooth(&mut self, s: &mut ControlSignals, window: Duration, now: Instant) {
        let secs = self.last.map_or(0.0, |l| now.saturating_duration_since(l).as_secs_f64());
        self.last = Some(now);
        let clean = |r: f64| if r.is_finite() { r.max(0.0) } else { 0.0 };
        self.ticks.push_back(Tick {
            at: now,
            secs,
            arrival: clean(s.arrival_rps),
            spilled: clean(s.spilled_rps),
            shed: clean(s.shed_rps),
        });
        while self.ticks.len() > MAX_TICKS
            || (self.ticks.len() > 1
                && self.ticks.front().is_some_and(|t| now.saturating_duration_since(t.at) >= window))
        {
            self.ticks.pop_front();
        }
        let total: f64 = self.ticks.iter().map(|t| t.secs).sum();
        if total <= 0.0 {
            return; // the first tick: its own rates
        }
        let mean = |f: fn(&Tick) -> f64| self.ticks.iter().map(|t| f(t) * t.secs).sum::<f64>() / total;
        s.arrival_rps = mean(|t| t.arrival);
        s.spilled_rps = mean(|t| t.spilled);
        s.shed_rps = mean(|t| t.shed);
    }
}

/// The window for a config: the scale controller's sampling period (its
/// interval, at most [`SAMPLE_PERIOD`]: it samples the signals that often
/// whatever its interval), else the DNS controller's interval, else 1 s;
/// never under one tick nor over [`SAMPLE_PERIOD`]. Longer would lag: the
/// forecast divides each arrival sample by the DNS share in effect at the
/// sample's time, and a mean `W` long is `W / 2` behind it.
pub(crate) fn window_for(cfg: &crate::config::Config) -> Duration {
    let w = cfg
        .scale
        .as_ref()
        .map(|s| s.interval)
        .or_else(|| cfg.dns.as_ref().map(|d| d.interval))
        .unwrap_or(SAMPLE_PERIOD);
    w.min(SAMPLE_PERIOD).max(cfg.spill.tick)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(arrival: f64, spilled: f64) -> ControlSignals {
        ControlSignals { arrival_rps: arrival, spilled_rps: spilled, ..ControlSignals::default() }
    }

    #[test]
    fn the_first_tick_passes_through_and_later_ones_are_averaged_over_the_window() {
        let t0 = Instant::now();
        let mut w = RateWindow::default();
        let mut s = signals(130.0, 40.0);
        w.smooth(&mut s, Duration::from_secs(1), t0);
        assert_eq!((s.arrival_rps, s.spilled_rps), (130.0, 40.0));
        // Ten 100 ms ticks alternating 50 and 150 req/s: the mean is 100.
        let mut last = s.clone();
        for i in 1..=10u32 {
            let mut s = signals(if i % 2 == 0 { 150.0 } else { 50.0 }, 10.0);
            w.smooth(&mut s, Duration::from_secs(1), t0 + Duration::from_millis(100 * u64::from(i)));
            last = s;
        }
        assert!((last.arrival_rps - 100.0).abs() < 1e-9, "{}", last.arrival_rps);
        assert!((last.spilled_rps - 10.0).abs() < 1e-9);
    }

    #[test]
    fn old_ticks_leave_the_window_and_uneven_ticks_weigh_by_their_length() {
        let t0 = Instant::now();
        let mut w = RateWindow::default();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        w.smooth(&mut signals(0.0, 0.0), Duration::from_secs(1), at(0));
        // 900 ms at 1000 req/s, then 100 ms at 0: weighted 900.
        w.smooth(&mut signals(1000.0, 0.0), Duration::from_secs(1), at(900));
        let mut s = signals(0.0, 0.0);
        w.smooth(&mut s, Duration::from_secs(1), at(1000));
        assert!((s.arrival_rps - 900.0).abs() < 1e-9, "{}", s.arrival_rps);
        // 2 s later only the newest tick is left in a 1 s window.
        let mut s = signals(7.0, f64::NAN);
        w.smooth(&mut s, Duration::from_secs(1), at(3000));
        assert_eq!((s.arrival_rps, s.spilled_rps), (7.0, 0.0), "bad rates count as 0");
        assert_eq!(w.ticks.len(), 1);
    }

    #[test]
    fn the_kept_ticks_are_bounded() {
        let t0 = Instant::now();
        let mut w = RateWindow::default();
        for i in 0..(MAX_TICKS as u64 + 100) {
            w.smooth(&mut signals(1.0, 0.0), Duration::from_secs(3600), t0 + Duration::from_millis(i));
        }
        assert!(w.ticks.len() <= MAX_TICKS);
    }
}
