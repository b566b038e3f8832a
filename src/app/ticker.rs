//! The gate ticker: every `spill.tick`, one pass over the snapshot's pools
//! turns each pool's load window into a limit, a spill phase and a mode
//! (`gate::PoolGate::tick_*`, over the pure policy in `burst/`), reports
//! mode changes (log line, metric, notification), steps the site's
//! disaster-recovery state (`app/dr.rs`) and publishes the signals the AWS
//! controllers read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::burst::{DrState, DrTransition};
use crate::config::Severity;
use crate::config::{PoolRole, SpillConfig};
use crate::control::ControlSignals;
use crate::gate::{DrCell, PoolMode};
use crate::notifications::{Event, Kind};
use crate::runtime::Runtime;
use crate::telemetry::catalog;
use crate::upstream::Pool;

use super::server::Server;

/// What one tick saw: mode changes and the signals for the controllers.
pub(crate) struct TickReport {
    pub(crate) changes: Vec<(String, PoolMode, PoolMode)>,
    pub(crate) control: ControlSignals,
    /// Each cloud pool: (has an available endpoint, replicas within the lag bound).
    pub(crate) cloud: BTreeMap<String, (bool, bool)>,
    pub(crate) dr: Option<DrTransition>,
    /// Cloud pools whose RPO guard changed: (pool, at risk, worst lag).
    pub(crate) rpo: Vec<(String, bool, Duration)>,
    /// Primary pools that began or stopped shedding: (pool, shedding, rate).
    pub(crate) shedding: Vec<(String, bool, f64)>,
}

/// What coordination says of the site's DR to this instance (see
/// `ControlPlane::site_dr`); the default: decide alone, no fence.
#[derive(Debug, Clone)]
pub(crate) struct SiteDr {
    pub(crate) source: crate::burst::DrSource,
    /// The site's lease holder as last read.
    pub(crate) holder: Option<String>,
    /// How long writes are refused after a move of writes became known (`None`: alone).
    pub(crate) fence: Option<Duration>,
    /// Past this the source no longer holds: the request path refuses
    /// writes from then on even if no tick came (`None`: never).
    pub(crate) valid_until: Option<Instant>,
}

impl Default for SiteDr {
    fn default() -> Self {
        SiteDr { source: crate::burst::DrSource::Alone, holder: None, fence: None, valid_until: None }
    }
}

/// One tick over every pool of the snapshot.
pub(crate) fn tick(rt: &Runtime, dr: &DrCell, site: &SiteDr, now: Instant, warm_rps: Option<f64>) -> TickReport {
    let spill = &rt.config.spill;
    let cloud_ok = rt.pools.values().any(|p| p.role() == PoolRole::Cloud && p.has_available(now));
    let mut changes = Vec::new();
    let mut cloud = BTreeMap::new();
    let mut control = ControlSignals { cloud_healthy: cloud_ok, ..ControlSignals::default() };
    let mut capacity = 0.0;
    let mut rpo = Vec::new();
    let mut shedding = Vec::new();
    for (name, pool) in &rt.pools {
        let gate = &rt.gates[name];
        match pool.role() {
            PoolRole::Primary => {
                if let Some((from, to)) = gate.tick_primary(now, spill, pool.any_probe_healthy(), cloud_ok) {
                    changes.push((name.clone(), from, to));
                }
                let view = gate.view();
                control.arrival_rps += view.window.arrival_rps;
                control.shed_rps += view.shed_rps;
                if let Some((on, rate)) = gate.observe_shedding(now) {
                    shedding.push((name.clone(), on, rate));
                }
                // Little's law: a pool holding `limit` requests for `ewma` each serves limit/ewma per second.
                let ewma = view.window.ewma.as_secs_f64();
                if ewma > 0.0 {
                    capacity += f64::from(view.limit) / ewma;
                }
            }
            PoolRole::Cloud => {
                let lag_ok = replica_lag_ok(pool, spill, now);
                gate.tick_cloud(now, spill, warm_rps, lag_ok);
                gate.set_pin_lag(pin_lag(pool, now));
                cloud.insert(name.clone(), (pool.has_available(now), lag_ok));
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
    let policy = rt.config.dr.policy;
    let transition =
        dr.observe(super::dr::observation(rt, now), policy, site.source, site.fence, site.valid_until, now);
    let state = dr.state();
    control.dr = state.writes_in_cloud();
    control.dr_capacity = state == DrState::DrPending || dr.drilling();
    (control.dr_state, control.dr_synced) = dr.machine_state();
    TickReport { changes, control, cloud, dr: transition, rpo, shedding }
}

/// The ticker task: every `spill.tick`, update every pool's gate, report
/// mode changes (log line, metric) and publish signals for the controllers.
pub(crate) async fn run(server: Arc<Server>) {
    let mut interval = tokio::time::interval(server.data.runtime.load().config.spill.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cloud: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    let mut rates = crate::control::smooth::RateWindow::default();
    loop {
        interval.tick().await;
        let rt = server.data.runtime.load_full();
        if interval.period() != rt.config.spill.tick {
            interval = tokio::time::interval(rt.config.spill.tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let site = server.control.site_dr(&rt.config);
        let now = Instant::now();
        let mut report = tick(&rt, &server.data.gates.dr, &site, now, server.control.warm_rps());
        rates.smooth(&mut report.control, crate::control::smooth::window_for(&rt.config), now);
        if let Some(t) = report.dr {
            let by = match (&site.source, &site.holder) {
                (crate::burst::DrSource::Lease { .. }, Some(h)) => format!("holder {h}"),
                (crate::burst::DrSource::Holder { .. }, _) if t.reason == crate::burst::DrReason::SiteHolder => {
                    "lease".to_string()
                }
                _ => "tick".to_string(),
            };
            super::dr::report(&server, t, &by);
        }
        let dr = server.data.gates.dr.now();
        metrics::gauge!(catalog::DR_STATE).set(f64::from(dr.state as u8));
        metrics::gauge!(catalog::DR_WRITES_HELD).set(f64::from(u8::from(dr.writes_held)));
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
            let details = serde_json::json!({
                "pool": pool, "from": from.as_str(), "to": to.as_str(),
                "in_flight": view.in_flight, "limit": view.limit, "pressure": view.pressure,
                "p99_ms": view.window.p99_sliding.as_secs_f64() * 1e3,
            });
            for event in mode_events(&pool, from, to, SystemTime::now()) {
                server.notify(event.with_details(details.clone()));
            }
        }
        for (pool, on, rate) in report.shedding {
            server.notify(shedding_event(&pool, on, rate, SystemTime::now()));
        }
        for (pool, now) in &report.cloud {
            let before = cloud.insert(pool.clone(), *now).unwrap_or((true, true));
            for event in cloud_events(pool, before, *now, SystemTime::now()) {
                server.notify(event);
            }
        }
        server.control.signals.send_replace(report.control);
        for (name, gate) in &rt.gates {
            let v = gate.view();
            metrics::gauge!(catalog::POOL_IN_FLIGHT, "pool" => name.clone()).set(v.in_flight as f64);
            metrics::gauge!(catalog::POOL_LIMIT, "pool" => name.clone()).set(v.limit as f64);
            metrics::gauge!(catalog::POOL_MODE, "pool" => name.clone()).set(f64::from(v.mode as u8));
            metrics::gauge!(catalog::POOL_SHED_RATE, "pool" => name.clone()).set(v.shed_rps);
        }
        metrics::gauge!(catalog::PINS).set(server.data.gates.pins.len() as f64);
        metrics::gauge!(catalog::PIN_EVICTIONS).set(server.data.gates.pins.evictions() as f64);
    }
}

/// A mode change as notifications: `spilling` is a spill episode. A pool's
/// `disaster_recovery` is informational (`dr`, warning on entry, info at
/// the end): the site's DR episodes (`dr_pending`, `dr_engaged`, see
/// `app::dr`) are the pages, so one disaster is one incident, not two.
fn mode_events(pool: &str, from: PoolMode, to: PoolMode, at: SystemTime) -> Vec<Event> {
    let mut out = Vec::new();
    let spill = PoolMode::Spilling;
    let dr = PoolMode::DisasterRecovery;
    if from == spill && to != spill {
        out.push(Event::resolve(Kind::Spill, pool, format!("pool {pool}: spilling ended ({})", to.as_str()), at));
    }
    if from == dr && to != dr {
        let summary = format!("pool {pool}: disaster_recovery ended ({})", to.as_str());
        out.push(Event::info(Kind::Dr, pool, summary, at));
    }
    if to == spill && from != spill {
        let summary = format!("pool {pool}: {} -> {}", from.as_str(), to.as_str());
        out.push(Event::trigger(Kind::Spill, Severity::Warning, pool, summary, at));
    }
    if to == dr && from != dr {
        let summary = format!("pool {pool}: {} -> {} (outage declared)", from.as_str(), to.as_str());
        out.push(Event::info(Kind::Dr, pool, summary, at).with_severity(Severity::Warning));
    }
    out
}

/// A primary pool that sheds (or stopped): one episode, with the rate.
fn shedding_event(pool: &str, on: bool, rate: f64, at: SystemTime) -> Event {
    let details = serde_json::json!({ "pool": pool, "shed_rps": rate });
    if on {
        tracing::warn!(%pool, shed_rps = rate, "pool sheds requests: demand beyond on-prem and the cloud");
        let summary = format!("pool {pool}: shedding {rate:.0} req/s (demand beyond on-prem and the cloud)");
        Event::trigger(Kind::Shedding, Severity::Warning, pool, summary, at).with_details(details)
    } else {
        tracing::info!(%pool, "pool stopped shedding");
        Event::resolve(Kind::Shedding, pool, format!("pool {pool}: no longer shedding"), at).with_details(details)
    }
}

/// A cloud pool's health and replica lag, before and now, as episodes.
fn cloud_events(pool: &str, before: (bool, bool), now: (bool, bool), at: SystemTime) -> Vec<Event> {
    let mut out = Vec::new();
    let what = [
        (before.0, now.0, Kind::CloudUnhealthy, Severity::Error, "has no available endpoint"),
        (before.1, now.1, Kind::ReplicaLag, Severity::Warning, "replicas lag beyond spill.max_replica_lag"),
    ];
    for (was_ok, is_ok, kind, severity, bad) in what {
        match (was_ok, is_ok) {
            (true, false) => out.push(Event::trigger(kind, severity, pool, format!("cloud pool {pool} {bad}"), at)),
            (false, true) => out.push(Event::resolve(kind, pool, format!("cloud pool {pool} is healthy again"), at)),
            _ => {}
        }
    }
    out
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

/// The lag a pin token waits out: the worst of the available endpoints'
/// lags, `None` (pin for the whole pin time) when the pool has no
/// `lag_header`, no available endpoint, or one whose lag is unknown.
fn pin_lag(pool: &Pool, now: Instant) -> Option<Duration> {
    pool.config.health.as_ref().and_then(|h| h.lag_header.as_ref())?;
    let mut available = pool.endpoints.iter().filter(|e| e.available(now)).peekable();
    available.peek()?;
    available.try_fold(Duration::ZERO, |worst, e| e.lag().map(|l| worst.max(l)))
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
        tick(&rt, &gates.dr, &SiteDr::default(), now, Some(10.0));
        assert_eq!(
            rt.gates["aws"].spill_cap(),
            2000,
            "the cloud's own limit, at its maximum, and no warm cap by default"
        );
        loaded.config.spill.cloud_limit = false;
        let rt = Runtime::build(&loaded, Some(&rt), &gates).unwrap();
        tick(&rt, &gates.dr, &SiteDr::default(), now + Duration::from_millis(50), Some(10.0));
        assert_eq!(rt.gates["aws"].spill_cap(), u32::MAX, "no limit, no cap");
        loaded.config.spill.cap_by_warm_capacity = true;
        let rt = Runtime::build(&loaded, Some(&rt), &gates).unwrap();
        tick(&rt, &gates.dr, &SiteDr::default(), now + Duration::from_millis(100), Some(10.0));
        assert_eq!(rt.gates["aws"].spill_cap(), 1, "10 req/s × 100 ms");
        for _ in 0..2 {
            rt.gates["aws"].signals.begin();
        }
        assert!(!rt.gates["aws"].has_spill_room());
        tick(&rt, &gates.dr, &SiteDr::default(), now + Duration::from_millis(200), None);
        assert!(rt.gates["aws"].has_spill_room(), "no capacity report: no cap");
    }

    #[test]
    fn mode_changes_become_a_spill_episode_and_dr_information() {
        use crate::notifications::event::Action;
        let at = SystemTime::UNIX_EPOCH;
        let names = |events: Vec<Event>| -> Vec<(Kind, Action)> { events.iter().map(|e| (e.kind, e.action)).collect() };
        assert_eq!(names(mode_events("p", PoolMode::Normal, PoolMode::Spilling, at)), [(Kind::Spill, Action::Trigger)]);
        assert_eq!(names(mode_events("p", PoolMode::Spilling, PoolMode::Normal, at)), [(Kind::Spill, Action::Resolve)]);
        assert_eq!(
            names(mode_events("p", PoolMode::Spilling, PoolMode::DisasterRecovery, at)),
            [(Kind::Spill, Action::Resolve), (Kind::Dr, Action::Info)],
            "the spill ends before DR begins"
        );
        assert_eq!(
            names(mode_events("p", PoolMode::DisasterRecovery, PoolMode::Normal, at)),
            [(Kind::Dr, Action::Info)]
        );
        let dr = mode_events("p", PoolMode::Normal, PoolMode::DisasterRecovery, at);
        assert_eq!(dr[0].severity, Severity::Warning, "the site's DR episode pages, not the pool's mode");
    }

    #[test]
    fn cloud_health_and_lag_changes_become_episodes() {
        use crate::notifications::event::Action;
        let at = SystemTime::UNIX_EPOCH;
        assert!(cloud_events("aws", (true, true), (true, true), at).is_empty());
        let down = cloud_events("aws", (true, true), (false, true), at);
        assert_eq!((down[0].kind, down[0].action, down.len()), (Kind::CloudUnhealthy, Action::Trigger, 1));
        let lag = cloud_events("aws", (false, true), (true, false), at);
        let got: Vec<_> = lag.iter().map(|e| (e.kind, e.action)).collect();
        assert_eq!(got, [(Kind::CloudUnhealthy, Action::Resolve), (Kind::ReplicaLag, Action::Trigger)]);
    }
}
