//! The gate ticker: every `spill.tick`, one pass over the snapshot's pools
//! turns each pool's load window into a limit, a spill phase and a mode
//! (`gate::PoolGate::tick_*`, over the pure policy in `burst/`), reports
//! mode changes (log line, metric, notification), steps the site's
//! disaster-recovery state (`app/dr.rs`) and publishes the signals the AWS
//! controllers read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::burst::{DrState, DrTransition};
use crate::config::{PoolRole, SpillConfig};
use crate::control::ControlSignals;
use crate::gate::{DrCell, PoolMode};
use crate::notifications::Event;
use crate::runtime::Runtime;
use crate::telemetry::catalog;
use crate::upstream::Pool;

use super::server::Server;

/// What one tick saw: mode changes and the signals for the controllers.
pub(crate) struct TickReport {
    pub(crate) changes: Vec<(String, PoolMode, PoolMode)>,
    pub(crate) control: ControlSignals,
    pub(crate) dr: Option<DrTransition>,
    /// Cloud pools whose RPO guard changed: (pool, at risk, worst lag).
    pub(crate) rpo: Vec<(String, bool, Duration)>,
}

/// One tick over every pool of the snapshot.
pub(crate) fn tick(rt: &Runtime, dr: &DrCell, now: Instant, warm_rps: Option<f64>) -> TickReport {
    let spill = &rt.config.spill;
    let cloud_ok = rt.pools.values().any(|p| p.role() == PoolRole::Cloud && p.has_available(now));
    let mut changes = Vec::new();
    let mut control = ControlSignals { cloud_healthy: cloud_ok, ..ControlSignals::default() };
    let mut capacity = 0.0;
    let mut rpo = Vec::new();
    for (name, pool) in &rt.pools {
        let gate = &rt.gates[name];
        match pool.role() {
            PoolRole::Primary => {
                if let Some((from, to)) = gate.tick_primary(now, spill, pool.any_probe_healthy(), cloud_ok) {
                    changes.push((name.clone(), from, to));
                }
                let view = gate.view();
                control.arrival_rps += view.window.arrival_rps;
                // Little's law: a pool holding `limit` requests for `ewma` each serves limit/ewma per second.
                let ewma = view.window.ewma.as_secs_f64();
                if ewma > 0.0 {
                    capacity += f64::from(view.limit) / ewma;
                }
            }
            PoolRole::Cloud => {
                gate.tick_cloud(now, spill, warm_rps, replica_lag_ok(pool, spill, now));
                control.spilled_rps += gate.view().window.arrival_rps;
                let worst = worst_lag(pool, now);
                let change = rt.config.dr.rpo_budget.and_then(|budget| gate.observe_rpo(worst, budget));
                if let (Some(at_risk), Some(lag)) = (change, worst) {
                    rpo.push((name.clone(), at_risk, lag));
                }
            }
        }
    }
    control.onprem_capacity_rps = (capacity > 0.0).then_some(capacity);
    let transition = dr.observe(super::dr::observation(rt, now), rt.config.dr.policy, now);
    let state = dr.state();
    control.dr = state.writes_in_cloud();
    control.dr_capacity = state == DrState::DrPending || dr.drilling();
    TickReport { changes, control, dr: transition, rpo }
}

/// The ticker task: every `spill.tick`, update every pool's gate, report
/// mode changes (log line, metric) and publish signals for the controllers.
pub(crate) async fn run(server: Arc<Server>) {
    let mut interval = tokio::time::interval(server.data.runtime.load().config.spill.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let rt = server.data.runtime.load_full();
        if interval.period() != rt.config.spill.tick {
            interval = tokio::time::interval(rt.config.spill.tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let report = tick(&rt, &server.data.gates.dr, Instant::now(), server.control.warm_rps());
        if let Some(t) = report.dr {
            super::dr::report(&server, t, "tick");
        }
        metrics::gauge!(catalog::DR_STATE).set(f64::from(server.data.gates.dr.state() as u8));
        for (pool, at_risk, lag) in report.rpo {
            super::dr::report_rpo(&server, &pool, at_risk, lag, rt.config.dr.rpo_budget.unwrap_or_default());
        }
        for (name, pool) in rt.pools.iter().filter(|(_, p)| p.role() == PoolRole::Cloud) {
            if let Some(lag) = worst_lag(pool, Instant::now()) {
                metrics::gauge!(catalog::REPLICA_LAG, "pool" => name.clone()).set(lag.as_secs_f64());
            }
        }
        for (pool, from, to) in report.changes {
            let view = rt.gates[&pool].view();
            tracing::warn!(
                %pool, from = from.as_str(), to = to.as_str(), in_flight = view.in_flight, limit = view.limit,
                p99_ms = view.window.p99_sliding.as_secs_f64() * 1e3, pressure = view.pressure,
                "pool mode changed"
            );
            metrics::counter!(catalog::MODE_CHANGES, "pool" => pool.clone(), "to" => to.as_str()).increment(1);
            let severity = match to {
                PoolMode::DisasterRecovery => "critical",
                PoolMode::Spilling => "warning",
                PoolMode::Normal => "info",
            };
            server.notify(Event::new(
                "pool_mode_changed",
                severity,
                format!("pool {pool}: {} -> {}", from.as_str(), to.as_str()),
                serde_json::json!({
                    "pool": pool, "from": from.as_str(), "to": to.as_str(),
                    "in_flight": view.in_flight, "limit": view.limit, "pressure": view.pressure,
                    "p99_ms": view.window.p99_sliding.as_secs_f64() * 1e3,
                }),
            ));
        }
        server.control.signals.send_replace(report.control);
        for (name, gate) in &rt.gates {
            let v = gate.view();
            metrics::gauge!(catalog::POOL_IN_FLIGHT, "pool" => name.clone()).set(v.in_flight as f64);
            metrics::gauge!(catalog::POOL_LIMIT, "pool" => name.clone()).set(v.limit as f64);
            metrics::gauge!(catalog::POOL_MODE, "pool" => name.clone()).set(f64::from(v.mode as u8));
        }
        metrics::gauge!(catalog::PINS).set(server.data.gates.pins.len() as f64);
        metrics::gauge!(catalog::PIN_EVICTIONS).set(server.data.gates.pins.evictions() as f64);
    }
}

/// Whether a cloud pool's replicas are within `max_replica_lag`: true when
/// no lag header is watched, false when any available endpoint's lag is
/// unknown or over it.
fn replica_lag_ok(pool: &Pool, spill: &SpillConfig, now: Instant) -> bool {
    pool.config.health.as_ref().and_then(|h| h.lag_header.as_ref()).is_none() || {
        let mut lags = pool.endpoints.iter().filter(|e| e.available(now)).map(|e| e.lag());
        let worst = lags.try_fold(Duration::ZERO, |acc, l| l.map(|b| acc.max(b)));
        worst.is_some_and(|w| w <= spill.max_replica_lag)
    }
}

/// The worst replica lag the available endpoints of a pool report (known
/// lags only; `None` when none is known or the pool has no `lag_header`).
fn worst_lag(pool: &Pool, now: Instant) -> Option<Duration> {
    pool.config.health.as_ref().and_then(|h| h.lag_header.as_ref())?;
    pool.endpoints.iter().filter(|e| e.available(now)).filter_map(|e| e.lag()).max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::Gates;

    #[test]
    fn the_cap_only_applies_when_configured() {
        let text = "[[listener]]\nname='l'\nlisten='127.0.0.1:0'\n[pools.onprem]\nendpoints=['127.0.0.1:1']\n[pools.aws]\nrole='cloud'\nendpoints=['127.0.0.1:2']\n[[route]]\nprimary='onprem'\noverflow='aws'\n";
        let mut loaded = crate::config::from_str(text, "t".as_ref(), ".".as_ref()).unwrap();
        let gates = Gates::new(&loaded.config.spill);
        let rt = Runtime::build(&loaded, None, &gates).unwrap();
        let now = Instant::now();
        tick(&rt, &gates.dr, now, Some(10.0));
        assert_eq!(rt.gates["aws"].spill_cap(), u32::MAX, "off by default");
        loaded.config.spill.cap_by_warm_capacity = true;
        let rt = Runtime::build(&loaded, Some(&rt), &gates).unwrap();
        tick(&rt, &gates.dr, now + Duration::from_millis(100), Some(10.0));
        assert_eq!(rt.gates["aws"].spill_cap(), 1, "10 req/s × 100 ms");
        for _ in 0..2 {
            rt.gates["aws"].signals.begin();
        }
        assert!(!rt.gates["aws"].has_spill_room());
        tick(&rt, &gates.dr, now + Duration::from_millis(200), None);
        assert!(rt.gates["aws"].has_spill_room(), "no capacity report: no cap");
    }
}
