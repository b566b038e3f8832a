//! Pure demand forecast for the scale controller.
//!
//! Arrival and spill rates are sampled into bounded rings ([`History`]);
//! Holt's double exponential smoothing ([`Holt::fit`]) turns a ring into a
//! level and a slope, which is projected `warmup` ahead ([`confirmed`]:
//! only as far as a fast fit of the same ring agrees, so the end of a ramp
//! stops the projection within a few samples instead of carrying the slow
//! fit's trend past the plateau). Scheduled events
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

    #[cfg(test)]
    pub(crate) fn last(&self) -> Option<Sample> {
        self.samples.back().copied()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Sample> + '_ {
        self.samples.iter().copied()
    }
}

/// Holt's smoothing factors: `alpha` for the level, `beta` for the slope,
/// both in (0, 1], applied once per sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Holt {
    pub(crate) alpha: f64,
    pub(crate) beta: f64,
}

/// A fitted level (rps) and slope (rps per second).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Trend {
    pub(crate) level: f64,
    pub(crate) slope: f64,
}

impl Trend {
    /// The rate projected `ahead`, never negative.
    pub(crate) fn at(&self, ahead: Duration) -> f64 {
        (self.level + self.slope * ahead.as_secs_f64()).max(0.0)
    }
}

impl Holt {
    /// Fits the samples in order; `None` without any sample. Uneven spacing
    /// is handled by projecting the slope over each gap.
    pub(crate) fn fit(&self, samples: impl IntoIterator<Item = Sample>) -> Option<Trend> {
        let mut it = samples.into_iter();
        let first = it.next()?;
        let (mut level, mut slope, mut t) = (first.rps, 0.0, first.at_secs);
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
        }
        debug_assert!(level.is_finite() && slope.is_finite());
        Some(Trend { level: level.max(0.0), slope })
    }
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
/// shed too) — without a known capacity, the spilled rate's own trend plus
/// the shed rate's, so a cloud too small for the overflow grows out of it
/// instead of being sized for what it managed to serve — plus the arrivals' DNS-direct counterpart
/// `arrivals × share / (1 − share)`, which on-prem never sees (so on-prem
/// room does not reduce it). A scheduled event raises the overflow to
/// `expected_rps − capacity` (capacity unknown: what on-prem serves now).
pub(crate) fn demand(inp: &DemandInputs) -> Demand {
    let share = inp.dns_cloud_share.clamp(0.0, MAX_DNS_SHARE);
    let direct_per_gate = share / (1.0 - share);
    let (arrival_now, arrival_ahead) = project(inp.holt, inp.arrivals, inp.warmup);
    let (spill_now, spill_ahead) = project(inp.holt, inp.spilled, inp.warmup);
    let (shed_now, shed_ahead) = project(inp.holt, inp.shed, inp.warmup);
    let (gate_ahead, direct) = match inp.totals.filter(|t| t.iter().next().is_some()) {
        Some(totals) => {
            let (total_now, total_ahead) = project(inp.holt, totals, inp.warmup);
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
        Some(cap) => gate_ahead - cap,
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

/// The slope factor of the fast fit [`confirmed`] checks the trend against.
pub(crate) const FAST_BETA: f64 = 0.5;

/// The trend a ring supports: the configured (slow) fit's, as far as a fast
/// fit (`beta = FAST_BETA`) of the same samples agrees. While demand keeps
/// ramping both fits rise alike and the projection leads it by `warmup`;
/// once it levels off the fast slope falls to zero within a few samples
/// while the slow one decays over `1/beta` of them, and the slow level,
/// which carries its trend, overshoots the plateau. So: the slope is the
/// smaller of the two when they have the same sign (none otherwise), and
/// the level is the lower of the two while it rises, else the higher.
pub(crate) fn confirmed(holt: Holt, history: &History) -> Option<Trend> {
    let slow = holt.fit(history.iter())?;
    let fast = Holt { beta: FAST_BETA.max(holt.beta), ..holt }.fit(history.iter())?;
    let slope = match (slow.slope, fast.slope) {
        (a, b) if a > 0.0 && b > 0.0 => a.min(b),
        (a, b) if a < 0.0 && b < 0.0 => a.max(b),
        _ => 0.0,
    };
    // Rising: the lower level (the slow one carries its trend past a
    // plateau); otherwise the higher (the same lag undershoots after a fall).
    let level = if slope > 0.0 { slow.level.min(fast.level) } else { slow.level.max(fast.level) };
    Some(Trend { level, slope })
}

/// (level now, projection ahead) of a ring; zeros without history.
fn project(holt: Holt, history: &History, ahead: Duration) -> (f64, f64) {
    confirmed(holt, history).map_or((0.0, 0.0), |t| (t.level, t.at(ahead)))
}

#[cfg(test)]
#[path = "forecast_tests.rs"]
mod tests;
