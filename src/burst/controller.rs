//! The I/O shell around the pure burst policy: per-pool live gate state
//! (atomics the request path reads), the ticker that turns load signals into
//! a limit and a spill phase every `spill.tick`, and the in-flight guard.
//!
//! Gate state is keyed by pool name and survives reloads; a reload that
//! changes thresholds reconfigures the limit and hysteresis in place, keeping
//! what they learnt.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::{PoolRole, SpillConfig, SpillMode};
use crate::control::ControlSignals;
use crate::upstream::Pool;

use super::SloLimit;

use super::{
    pressure, ConcurrencyLimit, LimitParams, LoadSignals, Outcome, Pressure, SpillController, SpillPhase, WindowStats,
    WritePins,
};

/// What the pool as a whole is doing, for status, logs and notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    Normal,
    Spilling,
    /// Every primary endpoint is down: traffic goes to the cloud.
    DisasterRecovery,
}

/// Live gate state of one pool.
pub struct PoolGate {
    pub name: String,
    pub signals: LoadSignals,
    limit: AtomicU32,
    spilling: AtomicBool,
    mode: AtomicU8,
    replica_lag_ok: AtomicBool,
    /// Most requests in flight this pool may take as a spill target
    /// (`u32::MAX`: no cap); set from the cloud's warm capacity.
    spill_cap: AtomicU32,
    queued: AtomicU32,
    slot: Notify,
    tick: Mutex<TickState>,
}

struct TickState {
    limit: ConcurrencyLimit,
    slo_limit: SloLimit,
    spill: SpillController,
    applied: SpillConfig,
    last: WindowStats,
    pressure: Pressure,
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
            spill_cap: AtomicU32::new(u32::MAX),
            queued: AtomicU32::new(0),
            slot: Notify::new(),
            tick: Mutex::new(TickState {
                limit: ConcurrencyLimit::new(limit_params(spill)),
                slo_limit: SloLimit::new(spill.min_limit, spill.max_in_flight, spill.latency_slo),
                spill: SpillController::new(spill.enter_after, spill.exit_after),
                applied: spill.clone(),
                last: WindowStats::default(),
                pressure: Pressure::Calm,
            }),
        }
    }

    #[inline]
    pub fn limit(&self) -> u32 {
        self.limit.load(Relaxed)
    }

    #[inline]
    pub fn phase(&self) -> SpillPhase {
        if self.spilling.load(Relaxed) {
            SpillPhase::Spilling
        } else {
            SpillPhase::Calm
        }
    }

    #[inline]
    pub fn replica_lag_ok(&self) -> bool {
        self.replica_lag_ok.load(Relaxed)
    }

    /// Whether this pool, as a spill target, has room under its warm-capacity cap.
    #[inline]
    pub fn has_spill_room(&self) -> bool {
        self.signals.in_flight() < self.spill_cap.load(Relaxed)
    }

    pub fn mode(&self) -> PoolMode {
        match self.mode.load(Relaxed) {
            1 => PoolMode::Spilling,
            2 => PoolMode::DisasterRecovery,
            _ => PoolMode::Normal,
        }
    }

    pub fn queued(&self) -> u32 {
        self.queued.load(Relaxed)
    }

    /// Starts tracking a request on this pool.
    pub fn enter(self: &Arc<Self>, started: Instant) -> InFlight {
        self.signals.begin();
        InFlight { gate: self.clone(), started }
    }

    /// Takes over a request already counted by `signals.begin()`.
    pub fn adopt(self: &Arc<Self>, started: Instant) -> InFlight {
        InFlight { gate: self.clone(), started }
    }

    /// Ends a request counted by `signals.begin()` without a guard.
    pub fn leave(&self) {
        self.signals.end();
        self.wake_one();
    }

    fn wake_one(&self) {
        if self.queued.load(Relaxed) > 0 {
            self.slot.notify_one();
        }
    }

    /// Waits up to `timeout` for an in-flight slot under the limit (bounded
    /// by `max_queue` waiters). On success the request is counted in-flight.
    pub async fn wait_for_slot(self: &Arc<Self>, spill: &SpillConfig, started: Instant) -> Option<InFlight> {
        if self.queued.fetch_add(1, Relaxed) >= spill.max_queue {
            self.queued.fetch_sub(1, Relaxed);
            return None;
        }
        let deadline = tokio::time::Instant::now() + spill.queue_timeout;
        let result = loop {
            let notified = self.slot.notified();
            let cap = self.limit().min(spill.max_in_flight);
            if self.signals.in_flight() < cap {
                if self.signals.begin() <= cap {
                    break Some(InFlight { gate: self.clone(), started });
                }
                self.signals.end();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break None;
            }
        };
        self.queued.fetch_sub(1, Relaxed);
        result
    }

    /// One tick of a primary pool: window → limit → pressure → phase.
    fn tick_primary(
        &self,
        now: Instant,
        spill: &SpillConfig,
        healthy: bool,
        cloud_ok: bool,
    ) -> Option<(PoolMode, PoolMode)> {
        let mut st = self.tick.lock().unwrap_or_else(|e| e.into_inner());
        if st.applied != *spill {
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
        st.last = window;
        st.pressure = pressure;
        self.limit.store(limit, Relaxed);
        self.spilling.store(phase == SpillPhase::Spilling, Relaxed);
        let mode = match (healthy, phase) {
            (false, _) if cloud_ok => PoolMode::DisasterRecovery,
            (_, SpillPhase::Spilling) => PoolMode::Spilling,
            _ => PoolMode::Normal,
        };
        self.swap_mode(mode)
    }

    fn tick_cloud(&self, now: Instant, pool: &Pool, spill: &SpillConfig, warm_rps: Option<f64>) {
        let window = self.signals.take_window(now);
        let cap = match warm_rps.filter(|_| spill.cap_by_warm_capacity) {
            Some(rps) => warm_cap(rps, window.ewma),
            None => u32::MAX,
        };
        self.spill_cap.store(cap, Relaxed);
        let lag_ok = pool.config.health.as_ref().and_then(|h| h.lag_header.as_ref()).is_none() || {
            let mut lags = pool.endpoints.iter().filter(|e| e.available(now)).map(|e| e.lag());
            let worst = lags.try_fold(Duration::ZERO, |acc, l| l.map(|b| acc.max(b)));
            worst.is_some_and(|w| w <= spill.max_replica_lag)
        };
        if self.replica_lag_ok.swap(lag_ok, Relaxed) != lag_ok {
            if lag_ok {
                tracing::info!(pool = %self.name, "replica lag back under the limit: reads may spill again");
            } else {
                tracing::warn!(pool = %self.name, max = ?spill.max_replica_lag, "replica lag over the limit or unknown: reads stop spilling");
            }
        }
        let mut st = self.tick.lock().unwrap_or_else(|e| e.into_inner());
        st.last = window;
    }

    fn swap_mode(&self, mode: PoolMode) -> Option<(PoolMode, PoolMode)> {
        let code = match mode {
            PoolMode::Normal => 0,
            PoolMode::Spilling => 1,
            PoolMode::DisasterRecovery => 2,
        };
        let before = self.mode();
        (self.mode.swap(code, Relaxed) != code).then_some((before, mode))
    }

    /// The last window and controller state, for status and the demo.
    pub fn view(&self) -> GateView {
        let st = self.tick.lock().unwrap_or_else(|e| e.into_inner());
        GateView {
            mode: self.mode(),
            in_flight: self.signals.in_flight(),
            limit: self.limit(),
            queued: self.queued(),
            pressure: st.pressure.as_str(),
            replica_lag_ok: self.replica_lag_ok(),
            rtt_baseline_ms: st.limit.rtt_baseline().map(|d| d.as_secs_f64() * 1e3),
            window: st.last,
        }
    }
}

/// A snapshot of one pool's gate.
#[derive(Debug, Clone)]
pub struct GateView {
    pub mode: PoolMode,
    pub in_flight: u32,
    pub limit: u32,
    pub queued: u32,
    pub pressure: &'static str,
    pub replica_lag_ok: bool,
    pub rtt_baseline_ms: Option<f64>,
    pub window: WindowStats,
}

/// Little's law: a cloud serving `warm_rps` at latency `rtt` holds
/// `warm_rps × rtt` requests; before any latency is known, 100 ms is assumed.
pub fn warm_cap(warm_rps: f64, rtt: Duration) -> u32 {
    let rtt = if rtt.is_zero() { Duration::from_millis(100) } else { rtt };
    (warm_rps * rtt.as_secs_f64()).ceil().clamp(1.0, f64::from(u32::MAX - 1)) as u32
}

fn limit_params(spill: &SpillConfig) -> LimitParams {
    LimitParams::new(spill.min_limit, spill.max_in_flight, spill.max_in_flight)
}

/// A request counted in a pool's in-flight; ends when dropped (at the last
/// byte of the response body, or when the request fails).
pub struct InFlight {
    gate: Arc<PoolGate>,
    started: Instant,
}

impl InFlight {
    /// Response headers arrived (or the exchange failed) at `now`.
    pub fn record(&self, outcome: Outcome, now: Instant) {
        self.gate.signals.record(now.saturating_duration_since(self.started), outcome);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gate.leave();
    }
}

/// All gates plus the read-after-write pins; lives as long as the server.
pub struct Gates {
    by_pool: Mutex<HashMap<String, Arc<PoolGate>>>,
    pub pins: WritePins,
}

impl Gates {
    pub fn new(spill: &SpillConfig) -> Self {
        Gates { by_pool: Mutex::new(HashMap::new()), pins: WritePins::new(spill.pin_capacity, spill.pin_after_write) }
    }

    /// The gate of a pool, created on first use.
    pub fn get(&self, pool: &str, spill: &SpillConfig) -> Arc<PoolGate> {
        let mut map = self.by_pool.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(pool.to_string()).or_insert_with(|| Arc::new(PoolGate::new(pool, spill))).clone()
    }

    /// Applies reloadable settings (the pin TTL).
    pub fn reconfigure(&self, spill: &SpillConfig) {
        if self.pins.ttl() != spill.pin_after_write {
            self.pins.set_ttl(spill.pin_after_write);
        }
    }
}

/// What one tick saw: mode changes and the signals for the controllers.
pub struct TickReport {
    pub changes: Vec<(String, PoolMode, PoolMode)>,
    pub control: ControlSignals,
}

/// One tick over every pool of the snapshot.
pub fn tick(rt: &crate::runtime::Runtime, now: Instant, warm_rps: Option<f64>) -> TickReport {
    let spill = &rt.config.spill;
    let cloud_ok = rt.pools.values().any(|p| p.role() == PoolRole::Cloud && p.has_available(now));
    let mut changes = Vec::new();
    let mut control = ControlSignals { cloud_healthy: cloud_ok, ..ControlSignals::default() };
    let mut capacity = 0.0;
    for (name, pool) in &rt.pools {
        let gate = &rt.gates[name];
        match pool.role() {
            PoolRole::Primary => {
                if let Some((from, to)) = gate.tick_primary(now, spill, pool.has_available(now), cloud_ok) {
                    changes.push((name.clone(), from, to));
                }
                let view = gate.view();
                control.arrival_rps += view.window.arrival_rps;
                control.dr |= view.mode == PoolMode::DisasterRecovery;
                // Little's law: a pool holding `limit` requests for `ewma` each serves limit/ewma per second.
                let ewma = view.window.ewma.as_secs_f64();
                if ewma > 0.0 {
                    capacity += f64::from(view.limit) / ewma;
                }
            }
            PoolRole::Cloud => {
                gate.tick_cloud(now, pool, spill, warm_rps);
                control.spilled_rps += gate.view().window.arrival_rps;
            }
        }
    }
    control.onprem_capacity_rps = (capacity > 0.0).then_some(capacity);
    TickReport { changes, control }
}

/// The ticker task: every `spill.tick`, update every pool's gate, report
/// mode changes (log line, metric) and publish signals for the controllers.
pub async fn run(server: Arc<crate::server::Server>) {
    let mut interval = tokio::time::interval(server.runtime.load().config.spill.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let rt = server.runtime.load_full();
        if interval.period() != rt.config.spill.tick {
            interval = tokio::time::interval(rt.config.spill.tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let report = tick(&rt, Instant::now(), server.control.warm_rps());
        for (pool, from, to) in report.changes {
            let view = rt.gates[&pool].view();
            tracing::warn!(
                %pool, from = mode_label(from), to = mode_label(to), in_flight = view.in_flight, limit = view.limit,
                p99_ms = view.window.p99_sliding.as_secs_f64() * 1e3, pressure = view.pressure,
                "pool mode changed"
            );
            metrics::counter!("spillway_mode_changes_total", "pool" => pool.clone(), "to" => mode_label(to))
                .increment(1);
            let severity = match to {
                PoolMode::DisasterRecovery => "critical",
                PoolMode::Spilling => "warning",
                PoolMode::Normal => "info",
            };
            server.notify(crate::notifications::Event::new(
                "pool_mode_changed",
                severity,
                format!("pool {pool}: {} -> {}", mode_label(from), mode_label(to)),
                serde_json::json!({
                    "pool": pool, "from": mode_label(from), "to": mode_label(to),
                    "in_flight": view.in_flight, "limit": view.limit, "pressure": view.pressure,
                    "p99_ms": view.window.p99_sliding.as_secs_f64() * 1e3,
                }),
            ));
        }
        server.control.signals.send_replace(report.control);
        for (name, gate) in &rt.gates {
            let v = gate.view();
            metrics::gauge!("spillway_pool_in_flight", "pool" => name.clone()).set(v.in_flight as f64);
            metrics::gauge!("spillway_pool_limit", "pool" => name.clone()).set(v.limit as f64);
            metrics::gauge!("spillway_pool_mode", "pool" => name.clone()).set(v.mode as u8 as f64);
        }
        metrics::gauge!("spillway_pins").set(server.gates.pins.len() as f64);
        metrics::gauge!("spillway_pin_evictions").set(server.gates.pins.evictions() as f64);
    }
}

pub fn mode_label(mode: PoolMode) -> &'static str {
    match mode {
        PoolMode::Normal => "normal",
        PoolMode::Spilling => "spilling",
        PoolMode::DisasterRecovery => "disaster_recovery",
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

    #[test]
    fn the_cap_only_applies_when_configured() {
        let text = "[[listener]]\nname='l'\nlisten='127.0.0.1:0'\n[pools.onprem]\nendpoints=['127.0.0.1:1']\n[pools.aws]\nrole='cloud'\nendpoints=['127.0.0.1:2']\n[[route]]\nprimary='onprem'\noverflow='aws'\n";
        let mut loaded = crate::config::from_str(text, "t".as_ref(), ".".as_ref()).unwrap();
        let gates = Gates::new(&loaded.config.spill);
        let rt = crate::runtime::Runtime::build(&loaded, None, &gates).unwrap();
        let now = Instant::now();
        tick(&rt, now, Some(10.0));
        assert_eq!(rt.gates["aws"].spill_cap.load(Relaxed), u32::MAX, "off by default");
        loaded.config.spill.cap_by_warm_capacity = true;
        let rt = crate::runtime::Runtime::build(&loaded, Some(&rt), &gates).unwrap();
        tick(&rt, now + Duration::from_millis(100), Some(10.0));
        assert_eq!(rt.gates["aws"].spill_cap.load(Relaxed), 1, "10 req/s × 100 ms");
        for _ in 0..2 {
            rt.gates["aws"].signals.begin();
        }
        assert!(!rt.gates["aws"].has_spill_room());
        tick(&rt, now + Duration::from_millis(200), None);
        assert!(rt.gates["aws"].has_spill_room(), "no capacity report: no cap");
    }
}
