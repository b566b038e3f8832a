//! Pure demand forecast for the scale controller.
//!
//! Arrival and spill rates are sampled into bounded rings ([`History`]);
//! Holt's double exponential smoothing ([`Holt::fit`]) turns a ring into a
//! level and a slope, which is projected `warmup` ahead ([`confirmed_after`]:
//! only as far as a fast fit of the same ring agrees, so the end of a ramp
//! stops the projection within a few samples instead of carrying the slow
//! fit's trend past the plateau, and no further ahead than the trend has
//! lasted, so a step is not mistaken for the start of a steep ramp). Scheduled events
//! (`[[scale.event]]`) count once `now + lead` reaches their start, so the
//! instances are in service at kickoff. [`demand`] combines both into the
//! overflow the cloud must absorb: what the gate spills plus what DNS sends
//! the cloud directly, each counted once. The DNS share that counts is the
//! one in effect ([`effective_share`]): resolvers keep the old weights for
//! up to a TTL, so right after a shift the shifted requests still arrive at
//! the gate (and spill) — counting the new weights at once counted them twice.
//!
//! Invariants: no clock is read here; every rate returned is finite and ≥ 0.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use crate::config::ScheduledEvent;

/// Samples kept per ring: ten minutes at one sample a second.
pub(crate) const HISTORY_SAMPLES: usize = 600;

/// One rate sample; `at_secs` counts from an origin the caller chooses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    pub(crate) at_secs: f64,
    pub(crate) rps: f64,
}

/// A bounded ring of samples, oldest first, times strictly increasing.
#[derive(Debug, Clone)]
pub(crate) struct History {
    samples: VecDeque<Sample>,
    capacity: usize,
}

impl History {
    pub(crate) fn new(capacity: usize) -> Self {
        debug_assert!(capacity > 0);
        Self { samples: VecDeque::with_capacity(capacity), capacity: capacity.max(1) }
    }

    /// Adds a sample; non-finite or negative rates count as 0, and a sample
    /// not later than the last one replaces it.
    pub(crate) fn push(&mut self, at_secs: f64, rps: f64) {
        let rps = if rps.is_finite() { rps.max(0.0) } else { 0.0 };
        if self.samples.back().is_some_and(|last| at_secs <= last.at_secs) {
            self.samples.pop_back();
        }
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample { at_secs, rps });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }

    pub(crate) fn last(&self) -> Option<Sample> {
        self.samples.back().copied()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Sample> + '_ {
        self.samples.iter().copied()
    }

    /// Newest first.
    pub(crate) fn recent(&self) -> impl Iterator<Item = Sample> + '_ {
        self.samples.iter().rev().copied()
    }
}

/// Holt's smoothing factors: `alpha` for the level, `beta` for the slope,
/// both in (0, 1], applied once per sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Holt {
    pub(crate) alpha: f64,
    pub(crate) beta: f64,
}

/// A fitted level (rps) and slope (rps per second), projected at most
/// `reach_secs` ahead (infinite for a plain fit; see [`confirmed_after`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Trend {
    pub(crate) level: f64,
    pub(crate) slope: f64,
    pub(crate) reach_secs: f64,
}

impl Trend {
    /// The rate projected `ahead` (no further than the trend reaches), never negative.
    pub(crate) fn at(&self, ahead: Duration) -> f64 {
        (self.level + self.slope * ahead.as_secs_f64().min(self.reach_secs)).max(0.0)
    }
}

/// A fit and how long its slope has kept its sign.
#[derive(Debug, Clone, Copy)]
struct Run {
    trend: Trend,
    /// Seconds from the `settle`-th sample of the slope's current run of
    /// one sign to the newest sample (0 while the run is shorter).
    settled_secs: f64,
}

impl Holt {
    /// Fits the samples in order; `None` without any sample. Uneven spacing
    /// is handled by projecting the slope over each gap.
    pub(crate) fn fit(&self, samples: impl IntoIterator<Item = Sample>) -> Option<Trend> {
        self.fit_run(samples, 0).map(|r| r.trend)
    }

    fn fit_run(&self, samples: impl IntoIterator<Item = Sample>, settle: usize) -> Option<Run> {
        let mut it = samples.into_iter();
        let first = it.next()?;
        let (mut level, mut slope, mut t) = (first.rps, 0.0_f64, first.at_secs);
        // The slope's current run: its sign, its length in samples, when it
        // settled; and how many samples in a row the slope has been flat.
        let (mut sign, mut len, mut settled_at, mut flat_for) = (0.0_f64, 0_usize, None, 0_usize);
        for s in it {
            let dt = s.at_secs - t;
            if dt <= 0.0 {
                continue;
            }
            let predicted = level + slope * dt;
            let next = self.alpha * s.rps + (1.0 - self.alpha) * predicted;
            slope = self.beta * (next - level) / dt + (1.0 - self.beta) * slope;
            level = next;
            t = s.at_secs;
            // A slope this small for longer than a step takes to settle is
            // no trend: a plateau's slope decays towards 0 without changing
            // sign, and without this a later step would count as the old
            // run's continuation. (One flat sample is not enough: a noisy
            // ramp's slope dips into the band, and ending its run there
            // took most of its lead.)
            let flat = slope.abs() <= FLAT_SLOPE * level.abs();
            flat_for = if flat { flat_for + 1 } else { 0 };
            if flat_for > settle {
                (sign, len, settled_at) = (0.0, 0, None);
            } else if !flat && slope.signum() != sign {
                (sign, len, settled_at) = (slope.signum(), 0, None);
            }
            len += 1;
            if len == settle + 1 {
                settled_at = Some(t);
            }
        }
        debug_assert!(level.is_finite() && slope.is_finite());
        let settled_secs = settled_at.map_or(0.0, |at| t - at);
        Some(Run { trend: Trend { level: level.max(0.0), slope, reach_secs: f64::INFINITY }, settled_secs })
    }
}

/// A slope under this share of the level per second (9 % over a 180 s
/// warm-up), for more samples in a row than a step takes to settle, ends a
/// trend's run ([`confirmed_after`]'s reach starts again).
const FLAT_SLOPE: f64 = 5e-4;

/// Samples Holt's level takes to absorb 90 % of a step: `(1 − alpha)^n ≤ 0.1`
/// (7 at alpha 0.3, none at 1). Over these the smoothed step climbs like a
/// ramp, and nothing in the fits tells the two apart.
pub(crate) fn settle_samples(alpha: f64) -> usize {
    if alpha >= 1.0 {
        return 0;
    }
    let n = (0.1_f64.ln() / (1.0 - alpha.max(1e-3)).ln()).ceil();
    n.clamp(0.0, HISTORY_SAMPLES as f64) as usize
}

/// The largest expected rate among events that matter at `now`: those that
/// start within `lead` (instance warm-up plus one decision interval) and
/// have not ended.
pub(crate) fn scheduled_demand(events: &[ScheduledEvent], now: SystemTime, lead: Duration) -> Option<&ScheduledEvent> {
    let horizon = now + lead;
    events.iter().filter(|e| e.start <= horizon && now < e.end).max_by_key(|e| e.expected_rps)
}

/// Everything [`demand`] needs, all as values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DemandInputs<'a> {
    pub(crate) arrivals: &'a History,
    /// The site's total demand, sampled with the arrivals: each arrival
    /// sample scaled by `1 / (1 − share in effect then)` ([`total_sample`]).
    /// Projected instead of the arrivals when given: a DNS shift moves
    /// traffic without changing the total, and projecting the gate's
    /// falling arrivals (whose smoothed level lags the fall) and scaling
    /// them by today's `1 / (1 − share)` multiplied that lag.
    pub(crate) totals: Option<&'a History>,
    /// Arrival samples the newest total pools ([`pooled_total`]; 1: none).
    pub(crate) pooled: usize,
    pub(crate) spilled: &'a History,
    /// Requests shed after waiting for a slot: demand that neither pool served.
    pub(crate) shed: &'a History,
    pub(crate) holt: Holt,
    pub(crate) warmup: Duration,
    pub(crate) lead: Duration,
    pub(crate) events: &'a [ScheduledEvent],
    pub(crate) now: SystemTime,
    /// On-prem capacity learned by the gate, else configured, else unknown.
    pub(crate) onprem_capacity_rps: Option<f64>,
    /// Share of all traffic DNS already sends straight to the cloud (0–1),
    /// as in effect (see [`effective_share`]): the gate sees only the rest.
    pub(crate) dns_cloud_share: f64,
}

/// The forecast the policy acts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Demand {
    /// Arrivals at the gate now (smoothed).
    pub(crate) arrival_rps: f64,
    /// All traffic (gate plus DNS-direct to the cloud) expected `warmup` ahead.
    pub(crate) forecast_rps: f64,
    /// What the cloud must absorb; may be negative (on-prem has room).
    pub(crate) overflow_rps: f64,
    /// The scheduled event that set the overflow, if one did.
    pub(crate) event: Option<String>,
}

/// The most DNS share the arrivals are scaled up by (beyond it the gate's
/// view says too little about total demand).
const MAX_DNS_SHARE: f64 = 0.95;

/// Overflow = spill + DNS-direct: the gate's arrivals (max of now and
/// forecast) beyond the on-prem capacity (the arrivals count the requests
/// shed too), never under the spill last measured — without a known capacity, the spilled rate's own trend plus
/// the shed rate's, so a cloud too small for the overflow grows out of it
/// instead of being sized for what it managed to serve — plus the arrivals' DNS-direct counterpart
/// `arrivals × share / (1 − share)`, which on-prem never sees (so on-prem
/// room does not reduce it). A scheduled event raises the overflow to
/// `expected_rps − capacity` (capacity unknown: what on-prem serves now).
pub(crate) fn demand(inp: &DemandInputs) -> Demand {
    let share = inp.dns_cloud_share.clamp(0.0, MAX_DNS_SHARE);
    let direct_per_gate = share / (1.0 - share);
    let (arrival_now, arrival_ahead) = project(inp.holt, inp.arrivals, inp.warmup, 1);
    let (spill_now, spill_ahead) = project(inp.holt, inp.spilled, inp.warmup, 1);
    let (shed_now, shed_ahead) = project(inp.holt, inp.shed, inp.warmup, 1);
    let (gate_ahead, direct) = match inp.totals.filter(|t| t.iter().next().is_some()) {
        Some(totals) => {
            let (total_now, total_ahead) = project(inp.holt, totals, inp.warmup, inp.pooled);
            let total = total_ahead.max(total_now);
            (total * (1.0 - share), total * share)
        }
        None => {
            let gate = arrival_ahead.max(arrival_now);
            (gate, gate * direct_per_gate)
        }
    };
    let forecast = gate_ahead + direct;
    let served_now = (arrival_now - spill_now).max(0.0);
    let spill = match inp.onprem_capacity_rps {
        // Never under the spill the gate measures now: that is what the
        // cloud serves now, while the capacity is a model (limit over mean
        // latency, which reads high when the pool is not always at its
        // limit: the moto run spilled 67 req/s with `gate − capacity` at 60).
        Some(cap) => match inp.spilled.last().map(|s| s.rps).filter(|&r| r > 0.0) {
            Some(measured) => (gate_ahead - cap).max(measured),
            None => gate_ahead - cap,
        },
        None => spill_ahead.max(spill_now) + shed_ahead.max(shed_now).max(0.0),
    };
    let mut overflow = if direct > 0.0 { spill.max(0.0) + direct } else { spill };
    let mut event = None;
    if let Some(e) = scheduled_demand(inp.events, inp.now, inp.lead) {
        let cap = inp.onprem_capacity_rps.unwrap_or(served_now);
        let event_overflow = f64::from(e.expected_rps) - cap;
        if event_overflow > overflow {
            overflow = event_overflow;
            event = Some(e.name.clone());
        }
    }
    debug_assert!(overflow.is_finite());
    Demand { arrival_rps: arrival_now, forecast_rps: forecast, overflow_rps: overflow, event }
}

/// One sample of the site's total demand: the gate's arrivals over the
/// share of traffic that still reaches the gate (`1 − share in effect`);
/// none while DNS sends nearly everything to the cloud (over
/// `MAX_DNS_SHARE`: DR, an operator's target), when the gate's view says
/// too little about the total (the projection bridges the gap).
pub(crate) fn total_sample(arrival_rps: f64, share_in_effect: f64) -> Option<f64> {
    (share_in_effect <= MAX_DNS_SHARE).then(|| arrival_rps / (1.0 - share_in_effect.max(0.0)))
}

/// Most arrival samples [`pooled_total`] pools.
pub(crate) const MAX_POOLED: usize = 20;

/// The site's total demand at the newest arrival sample, pooled so that its
/// noise does not grow with the DNS share. The gate sees `1 − s` of the
/// traffic, so a sample's count noise reaches [`total_sample`] `1 / (1 − s)`
/// times larger, in rps, than at `s = 0` (the demo, at 87 % cloud: the gate's
/// 340 → 511 → 365 rps read as a total of 1 578 where 1 142 arrived, and the
/// cooldown held the peak). So the newest `k = ceil(1 / (1 − s))` samples
/// (at most [`MAX_POOLED`], none older than `k` seconds), each divided by the
/// share in effect at its own time, are averaged: the total's variance stays
/// what it is without DNS, for a lag of `(k − 1) / 2` samples (k = 1
/// without DNS, 2 up to s = 0.5, 8 at 0.87).
/// `None` as [`total_sample`], and while fewer than half of the `k` samples
/// can be pooled. Returns the total and `k`.
pub(crate) fn pooled_total(arrivals: &History, shares: &History, ttl: Duration) -> Option<(f64, usize)> {
    let newest = arrivals.last()?;
    let s = effective_share(shares, newest.at_secs, ttl);
    total_sample(newest.rps, s)?;
    let k = ((1.0 / (1.0 - s.max(0.0))).ceil() as usize).clamp(1, MAX_POOLED);
    let oldest = newest.at_secs - k as f64;
    let (mut sum, mut n) = (0.0, 0_usize);
    for a in arrivals.recent().take(k).take_while(|a| a.at_secs > oldest) {
        match total_sample(a.rps, effective_share(shares, a.at_secs, ttl)) {
            Some(t) => (sum, n) = (sum + t, n + 1),
            None => break,
        }
    }
    // Fewer than half the samples wanted (leaving DR, or right after a
    // pause): no total yet rather than one as noisy as a single sample.
    (n >= k.div_ceil(2)).then(|| (sum / n as f64, k))
}

/// The DNS share in effect at `now_secs`: the time-weighted mean of the
/// written share over the last `ttl` (a resolver that asked at any moment
/// of the last TTL may still use the weights of then). Samples are steps
/// (each holds until the next); the time before the first sample counts at
/// the first sample's value (the records were as first read). 0 without samples.
pub(crate) fn effective_share(shares: &History, now_secs: f64, ttl: Duration) -> f64 {
    let Some(first) = shares.iter().next() else {
        return 0.0;
    };
    let ttl = ttl.as_secs_f64();
    let from = now_secs - ttl;
    let (mut area, mut value, mut t) = (0.0, first.rps, from);
    for s in shares.iter().filter(|s| s.at_secs <= now_secs) {
        if s.at_secs > t {
            area += value * (s.at_secs - t);
            t = s.at_secs;
        }
        value = s.rps;
    }
    if ttl <= 0.0 {
        return value.clamp(0.0, 1.0);
    }
    area += value * (now_secs - t).max(0.0);
    (area / ttl).clamp(0.0, 1.0)
}

/// The slope factor of the fast fits [`confirmed_after`] checks the trend against.
pub(crate) const FAST_BETA: f64 = 0.5;
/// The level factor (at least) of the fast fit whose slope confirms the
/// trend: damped enough not to ring past a plateau (at the configured alpha
/// 0.3 it dipped under a step and rose again, a second "ramp" 20 samples
/// later). Its level is not used: it follows noise more closely, and taking
/// the higher level on a noisy plateau biased the forecast up (the demo
/// asked for 16–17 instances where 13 serve).
pub(crate) const FAST_ALPHA: f64 = 0.5;

/// The trend a ring supports, three checks on the configured (slow) fit:
/// - **Agreement:** the slope counts only as far as a damped fast fit
///   (`beta = FAST_BETA`, `alpha ≥ FAST_ALPHA`) of the same samples
///   agrees: the smaller of the two when they have the same sign, none
///   otherwise. Once a ramp levels off the fast slope falls to zero within
///   a few samples, while the slow one decays over `1/beta` of them.
/// - **Level:** of the slow fit and a fast one (`beta = FAST_BETA`, the
///   configured alpha), the lower while the slow slope rises (the slow
///   level carries its trend past a plateau, the fast one overshoots a
///   step), else the higher (the same lags undershoot after a fall).
/// - **Reach:** a trend is projected no further ahead than it has lasted
///   beyond its first [`settle_samples`]: a step, smoothed, climbs like a
///   ramp over those, and projecting that climb `warmup` ahead (minutes)
///   asked for several times the step. A sustained ramp gets its whole
///   lead once it has lasted `warmup` more.
///
/// A history whose newest samples each average `pooled` raw ones
/// ([`pooled_total`]; 1 for a plain one) gets a step as a ramp `pooled`
/// samples long, so its trend settles that many samples later.
pub(crate) fn confirmed_after(holt: Holt, history: &History, pooled: usize) -> Option<Trend> {
    let settle = settle_samples(holt.alpha) + pooled.saturating_sub(1);
    let run = holt.fit_run(history.iter(), settle)?;
    let slow = run.trend;
    let beta = FAST_BETA.max(holt.beta);
    let fast = Holt { beta, ..holt }.fit(history.iter())?;
    let damped = Holt { alpha: FAST_ALPHA.max(holt.alpha), beta }.fit(history.iter())?;
    let slope = match (slow.slope, damped.slope) {
        (a, b) if a > 0.0 && b > 0.0 => a.min(b),
        (a, b) if a < 0.0 && b < 0.0 => a.max(b),
        _ => 0.0,
    };
    let level = if slow.slope > 0.0 { slow.level.min(fast.level) } else { slow.level.max(fast.level) };
    Some(Trend { level, slope, reach_secs: run.settled_secs })
}

/// [`confirmed_after`] for a plain history.
#[cfg(test)]
pub(crate) fn confirmed(holt: Holt, history: &History) -> Option<Trend> {
    confirmed_after(holt, history, 1)
}

/// (level now, projection ahead) of a ring whose samples each pool
/// `pooled` raw ones; zeros without history.
fn project(holt: Holt, history: &History, ahead: Duration, pooled: usize) -> (f64, f64) {
    confirmed_after(holt, history, pooled).map_or((0.0, 0.0), |t| (t.level, t.at(ahead)))
}

#[cfg(test)]
#[path = "forecast_tests.rs"]
mod tests;
