//! Live gate state: per pool, the atomics the request path reads (limit,
//! phase, mode, spill cap), the controller state one tick updates, the
//! bounded, ranked wait for a slot (`queue.rs`), and the in-flight guard; plus the
//! read-after-write pins and the site's disaster-recovery state
//! ([`DrCell`]). The policy itself is pure, in `burst/`; the task
//! that ticks every `spill.tick` is wiring, in `app/ticker.rs`.
//!
//! Gate state is keyed by pool name and survives reloads; a reload that
//! changes thresholds reconfigures the limit and hysteresis in place, keeping
//! what they learnt. Every in-flight count is owned by an [`InFlight`] guard
//! or released by [`PoolGate::leave`] right after the decision that took it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod dr;
mod queue;
pub(crate) use dr::{DrCarry, DrCell, DrNow, DrView};
use queue::{SlotSource, Waiters, Waiting};

use crate::burst::{
    pressure, ConcurrencyLimit, LearntLimit, LimitParams, LoadSignals, OutageTimer, Outcome, Pressure, RpoGuard,
    ShedReason, SloLimit, SpillController, SpillPhase, WindowStats, WritePins,
};
use crate::config::{SpillConfig, SpillMode};
use crate::sync::lock;
use crate::telemetry::catalog;

/// What the pool as a whole is doing, for status, logs and notifications.
/// One encoding: the discriminant is what the atomic and the
/// `spillway_pool_mode` gauge hold, `as_str` what logs, JSON and labels say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum PoolMode {
    Normal = 0,
    Spilling = 1,
    /// Every primary endpoint is down: traffic goes to the cloud.
    DisasterRecovery = 2,
}

impl PoolMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PoolMode::Normal => "normal",
            PoolMode::Spilling => "spilling",
            PoolMode::DisasterRecovery => "disaster_recovery",
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => PoolMode::Spilling,
            2 => PoolMode::DisasterRecovery,
            _ => PoolMode::Normal,
        }
    }
}

impl serde::Serialize for PoolMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Live gate state of one pool.
pub(crate) struct PoolGate {
    pub(crate) name: String,
    pub(crate) signals: LoadSignals,
    limit: AtomicU32,
    spilling: AtomicBool,
    mode: AtomicU8,
    replica_lag_ok: AtomicBool,
    /// The replicas' lag a pin token waits out (`lag_aware`), in
    /// milliseconds; `u64::MAX`: unknown (pin for the whole pin time).
    pin_lag_ms: AtomicU64,
    /// Most requests in flight this pool may take as a spill target
    /// (`u32::MAX`: no cap): its own adaptive limit, and the cloud's warm
    /// capacity when known.
    spill_cap: AtomicU32,
    /// Most requests in flight a freed slot is handed to a waiter under:
    /// `min(limit, max_in_flight)` on a primary, `spill_cap` on a cloud pool.
    grant_cap: AtomicU32,
    /// The cap under which a freed slot goes to a *hard* waiter (one that
    /// would have been admitted up to the hard cap): `max_in_flight` on a
    /// primary, 0 on a cloud pool (it has none).
    hard_cap: AtomicU32,
    /// Requests completed per second (smoothed), for `Retry-After`.
    drain_rps: AtomicU32,
    /// The pool's sliding p50 latency, in milliseconds: what a waiter
    /// granted a slot will still take.
    service_ms: AtomicU32,
    /// Requests shed from this pool's queue, ever (the tick takes rates).
    shed: AtomicU64,
    waiters: Waiters,
    tick: Mutex<TickState>,
}

struct TickState {
    limit: ConcurrencyLimit,
    slo_limit: SloLimit,
    spill: SpillController,
    applied: SpillConfig,
    last: WindowStats,
    pressure: Pressure,
    outage: OutageTimer,
    rpo: RpoGuard,
    /// The limit has a cloud pool's parameters (`cloud_limit_params`).
    cloud_limit: bool,
    /// Whether the pool sheds for a while: the hysteresis of the spill
    /// phase over "shed at least one request per second".
    shedding: SpillController,
    drain_rps: f64,
    shed_seen: u64,
    shed_rps: f64,
}

impl PoolGate {
    fn new(name: &str, spill: &SpillConfig) -> Self {
        PoolGate {
            name: name.to_string(),
            signals: LoadSignals::new(),
            limit: AtomicU32::new(spill.max_in_flight),
            spilling: AtomicBool::new(false),
            mode: AtomicU8::new(0),
            replica_lag_ok: AtomicBool::new(true),
            pin_lag_ms: AtomicU64::new(u64::MAX),
            spill_cap: AtomicU32::new(u32::MAX),
            grant_cap: AtomicU32::new(spill.max_in_flight),
            hard_cap: AtomicU32::new(spill.max_in_flight),
            drain_rps: AtomicU32::new(0),
            service_ms: AtomicU32::new(0),
            shed: AtomicU64::new(0),
            waiters: Waiters::default(),
            tick: Mutex::new(TickState {
                limit: ConcurrencyLimit::new(limit_params(spill)),
                slo_limit: SloLimit::new(spill.min_limit, spill.max_in_flight, spill.latency_slo),
                spill: SpillController::new(spill.enter_after, spill.exit_after),
                applied: spill.clone(),
                last: WindowStats::default(),
                pressure: Pressure::Calm,
                outage: OutageTimer::default(),
                rpo: RpoGuard::default(),
                cloud_limit: false,
                shedding: SpillController::new(SHEDDING_AFTER, SHEDDING_ENDS_AFTER),
                drain_rps: 0.0,
                shed_seen: 0,
                shed_rps: 0.0,
            }),
        }
    }

    #[inline]
    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Relaxed)
    }

    #[inline]
    pub(crate) fn phase(&self) -> SpillPhase {
        if self.spilling.load(Relaxed) {
            SpillPhase::Spilling
        } else {
            SpillPhase::Calm
        }
    }

    #[inline]
    pub(crate) fn replica_lag_ok(&self) -> bool {
        self.replica_lag_ok.load(Relaxed)
    }

    /// The cloud's replica lag as a pin token sees it (`None`: unknown).
    #[inline]
    pub(crate) fn pin_lag(&self) -> Option<Duration> {
        let ms = self.pin_lag_ms.load(Relaxed);
        (ms != u64::MAX).then(|| Duration::from_millis(ms))
    }

    /// Publishes a cloud pool's replica lag for pin tokens (each tick).
    pub(crate) fn set_pin_lag(&self, lag: Option<Duration>) {
        let ms = lag.map_or(u64::MAX, |l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX - 1).min(u64::MAX - 1));
        self.pin_lag_ms.store(ms, Relaxed);
    }

    /// Whether this pool, as a spill target, has room under its limit and
    /// warm-capacity cap, with nobody waiting for it.
    #[inline]
    pub(crate) fn has_spill_room(&self) -> bool {
        self.waiters.len() == 0 && self.signals.in_flight() < self.spill_cap.load(Relaxed)
    }

    pub(crate) fn mode(&self) -> PoolMode {
        PoolMode::from_code(self.mode.load(Relaxed))
    }

    /// The in-flight cap as a spill target (`u32::MAX`: none).
    #[cfg(test)]
    pub(crate) fn spill_cap(&self) -> u32 {
        self.spill_cap.load(Relaxed)
    }

    /// Requests waiting for one of this pool's slots.
    #[inline]
    pub(crate) fn queued(&self) -> u32 {
        self.waiters.len()
    }

    /// Requests this pool completes per second (smoothed over ticks).
    pub(crate) fn drain_rps(&self) -> f64 {
        f64::from(self.drain_rps.load(Relaxed))
    }

    /// Counts a request shed from this pool's queue.
    pub(crate) fn count_shed(&self) {
        self.shed.fetch_add(1, Relaxed);
    }

    /// Starts tracking a request on this pool.
    pub(crate) fn enter(self: &Arc<Self>, started: Instant) -> InFlight {
        self.signals.begin();
        InFlight::new(self.clone(), started)
    }

    /// Takes over a request already counted by `signals.begin()`.
    pub(crate) fn adopt(self: &Arc<Self>, started: Instant) -> InFlight {
        InFlight::new(self.clone(), started)
    }

    /// Ends a request counted by `signals.begin()` without a guard. Under
    /// the grant cap its slot goes straight to the first waiter instead;
    /// over it but under the hard cap, to the first hard waiter.
    pub(crate) fn leave(&self) {
        if self.waiters.len() > 0 {
            let in_flight = self.signals.in_flight();
            if in_flight <= self.grant_cap.load(Relaxed) && self.waiters.grant(false) {
                return;
            }
            let hard = self.waiters.hard_len() > 0 && in_flight <= self.hard_cap.load(Relaxed);
            if hard && self.waiters.grant(true) {
                return;
            }
        }
        self.signals.end();
    }

    /// Hands the slots free under the grant cap (or, to hard waiters, the
    /// hard cap) to waiters: after a cap grew, a release that raced a newcomer.
    fn dispatch(&self) {
        while self.waiters.len() > 0 {
            let in_flight = self.signals.in_flight();
            let hard_only = if in_flight < self.grant_cap.load(Relaxed) {
                false
            } else if self.waiters.hard_len() > 0 && in_flight < self.hard_cap.load(Relaxed) {
                true
            } else {
                break;
            };
            self.signals.take_slot();
            if !self.waiters.grant(hard_only) {
                self.signals.end();
                break;
            }
        }
    }

    /// Whether requests ranking at least `rank` wait for this pool: (any,
    /// one a slot up to the hard cap would serve). A newcomer that would
    /// take a slot such a waiter may have queues behind it instead.
    #[inline]
    pub(crate) fn queued_ahead_of(&self, rank: u8) -> (bool, bool) {
        self.waiters.ahead_of(rank)
    }

    /// Waits up to `spill.queue_timeout` for a slot of `primary` or, when
    /// given, of `cloud`, ranked by `rank` (`burst::shed`), at most
    /// `spill.max_queue` waiting for `primary`; `hard`: a primary slot up
    /// to the hard cap serves it (`burst::waits_to_hard_cap`). On success
    /// the request is counted in-flight where it was granted (`true`: in
    /// the cloud).
    pub(crate) async fn wait(
        primary: &Arc<PoolGate>,
        cloud: Option<&Arc<PoolGate>>,
        rank: u8,
        hard: bool,
        spill: &SpillConfig,
    ) -> Result<(InFlight, bool), ShedReason> {
        // A write or a pinned reader (rank's low bit) waits out the whole
        // queue_timeout: late is better than refused for them.
        let wait = if rank & 1 == 1 { spill.queue_timeout } else { max_wait(primary, cloud, spill) };
        // No time to wait: only a slot free right now serves it, and it
        // takes nobody's place in a full queue (no eviction).
        if wait.is_zero() && primary.queued() >= spill.max_queue {
            return Err(ShedReason::QueueTimeout);
        }
        // The wait is a guard: a request cancelled while it waits (an
        // HTTP/2 reset, a closed connection) leaves the queues, and a slot
        // granted to it just then goes on to the next waiter.
        let mut waiting = Waiting::join(&**primary, cloud.map(|c| &**c), rank, spill.max_queue, hard)?;
        // A slot freed between this request's decision and its joining
        // found nobody to hand it to: it goes to the queue now.
        primary.dispatch();
        if let Some(c) = cloud {
            c.dispatch();
        }
        let deadline = tokio::time::Instant::now() + wait;
        let side = waiting.granted(deadline).await?;
        // The pool's latency counts from here: the wait is not the origin's.
        let now = Instant::now();
        match (side, cloud) {
            (queue::CLOUD, Some(cloud)) => {
                cloud.signals.count_arrival();
                Ok((InFlight::new(cloud.clone(), now), true))
            }
            _ => Ok((InFlight::new(primary.clone(), now), false)),
        }
    }

    /// One tick of a primary pool: window → limit → pressure → phase, and
    /// the mode: disaster recovery once `reachable` (its active probes
    /// find an endpoint) has been false for `spill.disaster_after` and the
    /// cloud is healthy.
    pub(crate) fn tick_primary(
        &self,
        now: Instant,
        spill: &SpillConfig,
        reachable: bool,
        cloud_ok: bool,
    ) -> Option<(PoolMode, PoolMode)> {
        let mut st = lock(&self.tick);
        if st.applied != *spill || st.cloud_limit {
            st.cloud_limit = false;
            st.limit.reconfigure(limit_params(spill));
            st.slo_limit = SloLimit::new(spill.min_limit, spill.max_in_flight, spill.latency_slo);
            st.spill.set_thresholds(spill.enter_after, spill.exit_after);
            st.applied = spill.clone();
        }
        let window = self.signals.take_window(now);
        let limit = match spill.mode {
            SpillMode::Adaptive => st.limit.update(&window, now).min(spill.max_in_flight),
            SpillMode::Static => st.slo_limit.update(&window),
        };
        let pressure = pressure(&window, limit, spill.latency_slo);
        let phase = st.spill.observe(pressure, now);
        st.pressure = pressure;
        self.limit.store(limit, Relaxed);
        self.spilling.store(phase == SpillPhase::Spilling, Relaxed);
        self.grant_cap.store(limit.min(spill.max_in_flight), Relaxed);
        self.hard_cap.store(spill.max_in_flight, Relaxed);
        self.after_tick(&mut st, window);
        let outage = st.outage.observe(reachable, now, spill.disaster_after);
        let mode = match (outage, phase) {
            (true, _) if cloud_ok => PoolMode::DisasterRecovery,
            (_, SpillPhase::Spilling) => PoolMode::Spilling,
            _ => PoolMode::Normal,
        };
        self.swap_mode(mode)
    }

    /// One tick of a cloud pool: window → its adaptive limit (with
    /// `spill.cloud_limit`) and warm-capacity cap, the most it takes as a
    /// spill target; `lag_ok` says whether its replicas are within
    /// `max_replica_lag` (or unwatched).
    pub(crate) fn tick_cloud(&self, now: Instant, spill: &SpillConfig, warm_rps: Option<f64>, lag_ok: bool) {
        let window = self.signals.take_window(now);
        let mut st = lock(&self.tick);
        let params = cloud_limit_params(spill);
        if !st.cloud_limit {
            // First tick as a cloud pool: start at its own maximum.
            st.limit = ConcurrencyLimit::new(params);
            st.cloud_limit = true;
        } else if *st.limit.params() != params {
            st.limit.reconfigure(params);
        }
        let limit = st.limit.update(&window, now);
        let own = if spill.cloud_limit { limit } else { u32::MAX };
        let warm = match warm_rps.filter(|_| spill.cap_by_warm_capacity) {
            Some(rps) => warm_cap(rps, st.limit.rtt_baseline().unwrap_or(window.ewma)),
            None => u32::MAX,
        };
        let cap = own.min(warm);
        self.spill_cap.store(cap, Relaxed);
        self.grant_cap.store(cap, Relaxed);
        self.hard_cap.store(0, Relaxed);
        self.limit.store(cap, Relaxed);
        self.after_tick(&mut st, window);
        drop(st);
        if self.replica_lag_ok.swap(lag_ok, Relaxed) != lag_ok {
            if lag_ok {
                tracing::info!(pool = %self.name, "replica lag back under the limit: reads may spill again");
            } else {
                tracing::warn!(pool = %self.name, max = ?spill.max_replica_lag, "replica lag over the limit or unknown: reads stop spilling");
            }
        }
    }

    /// What every tick does last: the drain and shed rates, the window
    /// kept for status, and the slots free under the cap handed to waiters.
    fn after_tick(&self, st: &mut TickState, window: WindowStats) {
        if !window.elapsed.is_zero() {
            let secs = window.elapsed.as_secs_f64();
            let shed = self.shed.load(Relaxed);
            let rate = (shed - st.shed_seen.min(shed)) as f64 / secs;
            st.shed_seen = shed;
            // About a second's memory at the default 100 ms tick.
            let w = (secs / 1.0).min(1.0);
            st.shed_rps += (rate - st.shed_rps) * w;
            // Until something completed, the first window's rate is the
            // estimate (a cold start's Retry-After is not the 60 s maximum).
            let w_drain = if st.drain_rps <= 0.0 { 1.0 } else { w };
            st.drain_rps += (window.completion_rps - st.drain_rps) * w_drain;
            self.drain_rps.store(st.drain_rps.round().clamp(0.0, f64::from(u32::MAX)) as u32, Relaxed);
        }
        self.service_ms.store(u32::try_from(window.p50_sliding.as_millis()).unwrap_or(u32::MAX), Relaxed);
        st.last = window;
        self.dispatch();
    }

    /// Whether the pool has shed at least a request a second for
    /// [`SHEDDING_AFTER`] (`Some(true)`), or stopped for
    /// [`SHEDDING_ENDS_AFTER`] (`Some(false)`), with the smoothed rate.
    pub(crate) fn observe_shedding(&self, now: Instant) -> Option<(bool, f64)> {
        let mut st = lock(&self.tick);
        let before = st.shedding.phase();
        let pressed = if st.shed_rps >= 1.0 { Pressure::OverLimit } else { Pressure::Calm };
        let after = st.shedding.observe(pressed, now);
        (before != after).then_some((after == SpillPhase::Spilling, st.shed_rps))
    }

    /// A cloud pool's worst replica lag against `dr.rpo_budget`:
    /// `Some(at_risk)` when that changed (see `burst::RpoGuard`).
    pub(crate) fn observe_rpo(&self, lag: Option<Duration>, budget: Duration) -> Option<bool> {
        lock(&self.tick).rpo.observe(lag, budget)
    }

    fn swap_mode(&self, mode: PoolMode) -> Option<(PoolMode, PoolMode)> {
        let before = PoolMode::from_code(self.mode.swap(mode as u8, Relaxed));
        (before != mode).then_some((before, mode))
    }

    /// The last window and controller state, for status and the demo.
    pub(crate) fn view(&self) -> GateView {
        let st = lock(&self.tick);
        GateView {
            mode: self.mode(),
            in_flight: self.signals.in_flight(),
            limit: self.limit(),
            queued: self.queued(),
            shed_rps: st.shed_rps,
            pressure: st.pressure.as_str(),
            replica_lag_ok: self.replica_lag_ok(),
            rpo_at_risk: st.rpo.at_risk(),
            rtt_baseline_ms: st.limit.rtt_baseline().map(|d| d.as_secs_f64() * 1e3),
            window: st.last,
        }
    }
}

impl SlotSource for PoolGate {
    fn waiters(&self) -> &Waiters {
        &self.waiters
    }

    fn release(&self) {
        self.leave();
    }
}

/// A snapshot of one pool's gate.
#[derive(Debug, Clone)]
pub(crate) struct GateView {
    pub(crate) mode: PoolMode,
    pub(crate) in_flight: u32,
    pub(crate) limit: u32,
    pub(crate) queued: u32,
    /// Requests shed from its queue per second (smoothed).
    pub(crate) shed_rps: f64,
    pub(crate) pressure: &'static str,
    pub(crate) replica_lag_ok: bool,
    /// The replicas' lag is over `dr.rpo_budget` (cloud pools).
    pub(crate) rpo_at_risk: bool,
    pub(crate) rtt_baseline_ms: Option<f64>,
    pub(crate) window: WindowStats,
}

/// How long a sheddable read may wait for a slot: `queue_timeout`, and no
/// longer than what leaves it within `latency_slo` once served — the SLO
/// less the typical (sliding p50) latency of the slower pool it may be
/// served by. A read that could only be served late is shed early instead.
fn max_wait(primary: &PoolGate, cloud: Option<&Arc<PoolGate>>, spill: &SpillConfig) -> Duration {
    let service = |g: &PoolGate| Duration::from_millis(u64::from(g.service_ms.load(Relaxed)));
    let slowest = cloud.map_or(service(primary), |c| service(primary).max(service(c)));
    spill.queue_timeout.min(spill.latency_slo.saturating_sub(slowest))
}

/// Little's law: a cloud serving `warm_rps` at latency `rtt` holds
/// `warm_rps × rtt` requests; before any latency is known, 100 ms is assumed.
pub(crate) fn warm_cap(warm_rps: f64, rtt: Duration) -> u32 {
    let rtt = if rtt.is_zero() { Duration::from_millis(100) } else { rtt };
    (warm_rps * rtt.as_secs_f64()).ceil().clamp(1.0, f64::from(u32::MAX - 1)) as u32
}

fn limit_params(spill: &SpillConfig) -> LimitParams {
    LimitParams::new(spill.min_limit, spill.max_in_flight, spill.max_in_flight)
}

/// A cloud pool's limit: the same gradient, its own bounds, starting at
/// its maximum and without the calm drift (an elastic tier that carried
/// little is not therefore small; it comes down only when its latency says so).
fn cloud_limit_params(spill: &SpillConfig) -> LimitParams {
    let mut p = LimitParams::new(spill.cloud_min_limit, spill.cloud_max_in_flight, spill.cloud_max_in_flight);
    p.calm_decay = Duration::ZERO;
    p.shrink_from_in_flight = true;
    p
}

/// A request counted in a pool's in-flight; ends when dropped (at the last
/// byte of the response body, or when the request fails), unless its slot
/// was handed to an exchange that finishes without it (`detach`).
pub(crate) struct InFlight {
    gate: Arc<PoolGate>,
    started: Instant,
    detached: std::sync::atomic::AtomicBool,
}

impl InFlight {
    fn new(gate: Arc<PoolGate>, started: Instant) -> Self {
        InFlight { gate, started, detached: std::sync::atomic::AtomicBool::new(false) }
    }

    /// Response headers arrived (or the exchange failed) at `now`.
    pub(crate) fn record(&self, outcome: Outcome, now: Instant) {
        self.gate.signals.record(now.saturating_duration_since(self.started), outcome);
    }

    /// The request was cancelled while the upstream works on it: its slot
    /// moves to the returned guard, which the exchange finishing in the
    /// background drops when the upstream answers. Cancelling therefore
    /// cannot hand the origin more work than the ceiling admits. Once only:
    /// a second call hands over nothing.
    pub(crate) fn detach(&self) -> Option<Slot> {
        if self.detached.swap(true, Relaxed) {
            return None;
        }
        metrics::counter!(catalog::CANCELLED_AT_UPSTREAM, "pool" => self.gate.name.clone()).increment(1);
        Some(Slot { gate: self.gate.clone() })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !*self.detached.get_mut() {
            self.gate.leave();
        }
    }
}

/// A pool slot taken from its request (`InFlight::detach`); given back when dropped.
pub(crate) struct Slot {
    gate: Arc<PoolGate>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.leave();
    }
}

/// What a successor process takes over of one pool's gate, so an upgrade
/// in the middle of a burst does not start the limit again at
/// `max_in_flight` (nor the hysteresis in calm).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct GateCarry {
    pub(crate) pool: String,
    pub(crate) limit: LearntLimit,
    /// Static mode's SLO limit.
    pub(crate) slo_estimate: f64,
    pub(crate) spilling: bool,
}

impl PoolGate {
    /// What this gate has learnt, for a successor process.
    pub(crate) fn carry(&self) -> GateCarry {
        let st = lock(&self.tick);
        GateCarry {
            pool: self.name.clone(),
            limit: st.limit.learnt(),
            slo_estimate: st.slo_limit.estimate(),
            spilling: st.spill.phase() == SpillPhase::Spilling,
        }
    }

    /// Continues from a predecessor's gate (the request path sees the
    /// limit and phase at once, before the first tick).
    pub(crate) fn resume(&self, carry: &GateCarry, spill: &SpillConfig, now: Instant) {
        let mut st = lock(&self.tick);
        st.limit.resume(&carry.limit);
        st.slo_limit.resume(carry.slo_estimate);
        let phase = if carry.spilling { SpillPhase::Spilling } else { SpillPhase::Calm };
        st.spill.resume(phase, now);
        let limit = match spill.mode {
            SpillMode::Adaptive => st.limit.limit().min(spill.max_in_flight),
            SpillMode::Static => st.slo_limit.limit(),
        };
        self.limit.store(limit, Relaxed);
        self.spilling.store(carry.spilling, Relaxed);
    }
}

/// How long a pool sheds before the `shedding` notification, and how long
/// it must stop for its resolve.
const SHEDDING_AFTER: Duration = Duration::from_secs(10);
const SHEDDING_ENDS_AFTER: Duration = Duration::from_secs(30);

/// All gates plus the read-after-write pins; lives as long as the server.
pub(crate) struct Gates {
    by_pool: Mutex<HashMap<String, Arc<PoolGate>>>,
    pub(crate) pins: WritePins,
    /// The site's DR state; here so it outlives every snapshot.
    pub(crate) dr: DrCell,
}

impl Gates {
    pub(crate) fn new(spill: &SpillConfig) -> Self {
        let pins = WritePins::new(spill.pin_capacity, spill.pin_after_write);
        pins.set_per_address(spill.pins_per_address);
        Gates { by_pool: Mutex::new(HashMap::new()), pins, dr: DrCell::new(Instant::now()) }
    }

    /// The gate of a pool, created on first use.
    pub(crate) fn get(&self, pool: &str, spill: &SpillConfig) -> Arc<PoolGate> {
        let mut map = lock(&self.by_pool);
        map.entry(pool.to_string()).or_insert_with(|| Arc::new(PoolGate::new(pool, spill))).clone()
    }

    /// Every gate's learnt state, for a successor process.
    pub(crate) fn carry(&self) -> Vec<GateCarry> {
        let gates: Vec<Arc<PoolGate>> = lock(&self.by_pool).values().cloned().collect();
        gates.iter().map(|g| g.carry()).collect()
    }

    /// Continues the gates a predecessor had, for the pools this process
    /// also has (matched by name); returns how many it continued.
    pub(crate) fn resume(&self, carried: &[GateCarry], spill: &SpillConfig, now: Instant) -> usize {
        let gates = lock(&self.by_pool).clone();
        let mut resumed = 0;
        for carry in carried {
            if let Some(gate) = gates.get(&carry.pool) {
                gate.resume(carry, spill, now);
                resumed += 1;
            }
        }
        resumed
    }

    /// Applies reloadable settings (the pin TTL).
    pub(crate) fn reconfigure(&self, spill: &SpillConfig) {
        self.pins.set_per_address(spill.pins_per_address);
        if self.pins.ttl() != spill.pin_after_write {
            self.pins.set_ttl(spill.pin_after_write);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_cap_follows_littles_law() {
        // 2 instances × 150 req/s at 50 ms hold 15 requests.
        assert_eq!(warm_cap(300.0, Duration::from_millis(50)), 15);
        // No latency sample yet: 100 ms assumed.
        assert_eq!(warm_cap(300.0, Duration::ZERO), 30);
        // Never below one request, so a cold group still takes a trickle.
        assert_eq!(warm_cap(0.0, Duration::from_millis(50)), 1);
    }

    fn spill(max_queue: u32) -> SpillConfig {
        let text = "[[listener]]\nname='l'\nlisten='127.0.0.1:0'\n[pools.p]\nendpoints=['127.0.0.1:1']\n[[route]]\nprimary='p'\n";
        let loaded = crate::config::from_str(text, "t".as_ref(), ".".as_ref()).unwrap();
        SpillConfig { max_queue, queue_timeout: Duration::from_secs(5), ..loaded.config.spill }
    }

    fn full_gate(spill: &SpillConfig) -> Arc<PoolGate> {
        let gate = Arc::new(PoolGate::new("p", spill));
        gate.limit.store(1, Relaxed);
        gate.grant_cap.store(1, Relaxed);
        gate.signals.begin();
        gate
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_cancelled_in_the_queue_gives_its_place_back() {
        let spill = spill(2);
        let gate = full_gate(&spill);
        for _ in 0..10 {
            let wait = PoolGate::wait(&gate, None, 2, false, &spill);
            // Dropped at its await, as an HTTP/2 reset drops the request's future.
            assert!(tokio::time::timeout(Duration::from_millis(10), wait).await.is_err());
            assert_eq!(gate.queued(), 0, "a cancelled waiter leaked its queue place");
        }
        let refused = PoolGate::wait(&gate, None, 2, false, &spill);
        assert_eq!(refused.await.err(), Some(ShedReason::QueueTimeout), "times out after queue_timeout");
        assert_eq!(gate.queued(), 0);
        assert_eq!(gate.signals.in_flight(), 1, "only the slot the test holds");
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_holds_at_most_max_queue() {
        let spill = spill(1);
        let gate = full_gate(&spill);
        let first = tokio::spawn({
            let (gate, spill) = (gate.clone(), spill.clone());
            async move { PoolGate::wait(&gate, None, 2, false, &spill).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert_eq!(gate.queued(), 1);
        let refused = PoolGate::wait(&gate, None, 2, false, &spill).await;
        assert_eq!(refused.err(), Some(ShedReason::QueueFull), "over max_queue: refused at once");
        assert_eq!(gate.queued(), 1, "a refused request gives its place back");
        gate.leave();
        assert!(first.await.unwrap(), "the waiter gets the freed slot");
        assert_eq!(gate.queued(), 0);
        assert_eq!(gate.signals.in_flight(), 0, "the handed-over slot ended with its request");
    }

    #[tokio::test(start_paused = true)]
    async fn a_freed_slot_is_handed_over_not_left_for_a_newcomer() {
        let spill = spill(10);
        let gate = full_gate(&spill);
        let waiter = tokio::spawn({
            let (gate, spill) = (gate.clone(), spill.clone());
            async move { PoolGate::wait(&gate, None, 2, false, &spill).await }
        });
        tokio::task::yield_now().await;
        gate.leave();
        assert_eq!(gate.signals.in_flight(), 1, "the slot moved to the waiter: nothing free for a newcomer");
        let (guard, cloud) = waiter.await.unwrap().expect("granted");
        assert!(!cloud);
        drop(guard);
        assert_eq!(gate.signals.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cloud_serves_a_waiter_when_its_slot_frees_first() {
        let spill = spill(10);
        let primary = full_gate(&spill);
        let cloud = full_gate(&spill);
        cloud.grant_cap.store(1, Relaxed);
        let waiter = tokio::spawn({
            let (p, c, spill) = (primary.clone(), cloud.clone(), spill.clone());
            async move { PoolGate::wait(&p, Some(&c), 2, false, &spill).await }
        });
        tokio::task::yield_now().await;
        assert_eq!((primary.queued(), cloud.queued()), (1, 1));
        cloud.leave();
        let (guard, in_cloud) = waiter.await.unwrap().expect("granted");
        assert!(in_cloud);
        assert_eq!((primary.queued(), cloud.queued()), (0, 0), "left both queues");
        primary.leave();
        assert_eq!(primary.signals.in_flight(), 0, "the primary's slot was not handed to a request already served");
        drop(guard);
        assert_eq!(cloud.signals.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tick_hands_slots_freed_by_a_higher_limit_to_the_waiters() {
        let spill = spill(10);
        let gate = full_gate(&spill);
        gate.grant_cap.store(1, Relaxed);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (gate, spill) = (gate.clone(), spill.clone());
                tokio::spawn(async move { PoolGate::wait(&gate, None, 2, false, &spill).await.map(|(g, _)| g) })
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(gate.queued(), 3);
        gate.grant_cap.store(3, Relaxed);
        gate.dispatch();
        assert_eq!((gate.queued(), gate.signals.in_flight()), (1, 3));
        let mut served = Vec::new();
        for w in waiters {
            if let Ok(Ok(Ok(g))) = tokio::time::timeout(Duration::from_millis(1), w).await {
                served.push(g);
            }
        }
        assert_eq!(served.len(), 2);
        drop(served);
        assert_eq!(gate.queued(), 0, "the last waiter got a slot one of them freed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_waits_no_longer_than_the_slo_leaves_a_write_the_whole_timeout() {
        let spill = spill(10);
        let gate = full_gate(&spill);
        // The pool's typical latency is 200 ms of the 250 ms SLO.
        gate.service_ms.store(200, Relaxed);
        let t0 = tokio::time::Instant::now();
        assert_eq!(PoolGate::wait(&gate, None, 2, false, &spill).await.err(), Some(ShedReason::QueueTimeout));
        assert_eq!(t0.elapsed(), Duration::from_millis(50), "a read served later would miss the SLO");
        let t1 = tokio::time::Instant::now();
        assert_eq!(PoolGate::wait(&gate, None, 3, false, &spill).await.err(), Some(ShedReason::QueueTimeout));
        assert_eq!(t1.elapsed(), spill.queue_timeout, "a write waits the whole queue_timeout");
        // A pool slower than the SLO: a read is shed at once.
        gate.service_ms.store(400, Relaxed);
        let t2 = tokio::time::Instant::now();
        assert_eq!(PoolGate::wait(&gate, None, 2, false, &spill).await.err(), Some(ShedReason::QueueTimeout));
        assert_eq!(t2.elapsed(), Duration::ZERO);
        assert_eq!((gate.queued(), gate.signals.in_flight()), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_freed_over_the_limit_goes_to_a_hard_waiter_and_a_read_without_time_takes_no_place() {
        let spill = spill(1);
        // Limit 1, hard cap max_in_flight: three in flight.
        let gate = full_gate(&spill);
        gate.signals.begin();
        gate.signals.begin();
        let read = tokio::spawn({
            let (gate, spill) = (gate.clone(), spill.clone());
            async move { PoolGate::wait(&gate, None, 2, false, &spill).await.map(|(g, _)| g) }
        });
        tokio::task::yield_now().await;
        // A pool slower than the SLO leaves a read no time: it is shed at
        // once and evicts nobody, though it ranks higher than the waiter.
        gate.service_ms.store(10_000, Relaxed);
        assert_eq!(PoolGate::wait(&gate, None, 6, false, &spill).await.err(), Some(ShedReason::QueueTimeout));
        assert_eq!(gate.queued(), 1, "the waiting read kept its place");
        gate.service_ms.store(0, Relaxed);
        // A write over the hard cap evicts the read (full queue of one) and waits as a hard waiter.
        let write = tokio::spawn({
            let (gate, spill) = (gate.clone(), spill.clone());
            async move { PoolGate::wait(&gate, None, 3, true, &spill).await.map(|(g, _)| g) }
        });
        tokio::task::yield_now().await;
        assert_eq!(read.await.unwrap().err(), Some(ShedReason::Evicted));
        // 3 in flight, limit 1: a slot freed at 3 → 2 is over the limit but under the hard cap.
        gate.leave();
        let guard = write.await.unwrap().expect("the hard waiter got the slot freed over the limit");
        assert_eq!((gate.signals.in_flight(), gate.queued()), (3, 0), "handed over, not freed");
        drop(guard);
        gate.leave();
        gate.leave();
        assert_eq!(gate.signals.in_flight(), 0);
    }

    #[test]
    fn one_mode_encoding() {
        for mode in [PoolMode::Normal, PoolMode::Spilling, PoolMode::DisasterRecovery] {
            assert_eq!(PoolMode::from_code(mode as u8), mode);
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
        }
    }
}
