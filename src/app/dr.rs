//! Disaster-recovery wiring: what each tick tells the site's `DrCell`
//! (from the snapshot's pools), how a transition is made visible (a log
//! line, a metric, a notification) and the admin calls `POST /dr/engage`
//! and `POST /dr/failback`. The state machine is pure (`burst::dr`); the
//! state lives in `gate::DrCell`.

use std::time::{Instant, SystemTime};

use serde_json::{json, Value};

use crate::burst::{DrCommand, DrObservation, DrRefusal, DrState, DrTransition};
use crate::config::{PoolRole, Severity};
use crate::gate::{DrView, PoolMode};
use crate::notifications::{Event, Kind};
use crate::runtime::Runtime;
use crate::telemetry::catalog;

use super::server::Server;

/// What this tick saw of both sites (after the pools' gates ticked).
pub(crate) fn observation(rt: &Runtime, now: Instant) -> DrObservation {
    let role = |r| rt.pools.iter().filter(move |(_, p)| p.role() == r);
    let primaries: Vec<_> = role(PoolRole::Primary).collect();
    let watched: Vec<_> =
        primaries.iter().filter(|(_, p)| p.config.health.as_ref().is_some_and(|h| h.role_header.is_some())).collect();
    DrObservation {
        onprem_lost: primaries.iter().any(|(name, _)| rt.gates[*name].mode() == PoolMode::DisasterRecovery),
        onprem_reachable: !primaries.is_empty() && primaries.iter().all(|(_, p)| p.any_probe_healthy()),
        onprem_primary: !watched.is_empty() && watched.iter().all(|(_, p)| p.reports_primary()),
        cloud_ok: role(PoolRole::Cloud).any(|(_, p)| p.has_available(now)),
        cloud_promoted: role(PoolRole::Cloud).any(|(_, p)| p.reports_primary()),
    }
}

/// The notifications of a transition. Two episodes per site: `dr_pending`
/// (on-prem lost, writes refused until confirmed) and `dr_engaged` (writes
/// in the cloud), each triggered when it begins and resolved when it ends;
/// the failback's steps are informational.
fn events(t: &DrTransition, site: &str, summary: &str, at: SystemTime) -> Vec<Event> {
    let trigger = |kind| Event::trigger(kind, Severity::Critical, site, summary.to_string(), at);
    let resolve = |kind| Event::resolve(kind, site, summary.to_string(), at);
    let info = |kind| Event::info(kind, site, summary.to_string(), at);
    let mut out = Vec::new();
    if t.from == DrState::DrPending {
        out.push(resolve(Kind::DrPending));
    }
    match t.to {
        DrState::DrPending => out.push(trigger(Kind::DrPending)),
        DrState::DrActive if t.from != DrState::FailbackPending => out.push(trigger(Kind::DrEngaged)),
        DrState::DrActive => {}
        DrState::FailbackPending => out.push(info(Kind::DrFailback)),
        DrState::Normal if t.from != DrState::DrPending => {
            out.push(resolve(Kind::DrEngaged));
            out.push(info(Kind::DrFailback));
        }
        DrState::Normal => {}
    }
    out
}

/// A transition, made visible: log line, metric, notification.
pub(crate) fn report(server: &Server, t: DrTransition, by: &str) {
    let (from, to, reason) = (t.from.as_str(), t.to.as_str(), t.reason.as_str());
    tracing::warn!(from, to, reason, by, "disaster-recovery state changed");
    metrics::counter!(catalog::DR_TRANSITIONS, "to" => to, "reason" => reason).increment(1);
    metrics::gauge!(catalog::DR_STATE).set(f64::from(t.to as u8));
    let site = server.data.runtime.load().config.runtime.site.clone();
    let summary = format!("site {site}: DR {from} -> {to} ({reason})");
    let details = json!({ "from": from, "to": to, "reason": reason, "by": by });
    for event in events(&t, &site, &summary, SystemTime::now()) {
        server.notify(event.with_details(details.clone()));
    }
}

/// The RPO guard of a cloud pool changed: a critical
/// `replica_lag_rpo_at_risk` event when its lag went over the budget, an
/// info one (the resolve) when it came back under.
pub(crate) fn report_rpo(
    server: &Server,
    pool: &str,
    at_risk: bool,
    lag: std::time::Duration,
    budget: std::time::Duration,
) {
    let (lag_s, budget_s) = (lag.as_secs_f64(), budget.as_secs_f64());
    if at_risk {
        tracing::error!(
            pool,
            lag_s,
            budget_s,
            "replica lag over the RPO budget: a DR now would lose more than it allows"
        );
    } else {
        tracing::info!(pool, lag_s, budget_s, "replica lag back within the RPO budget");
    }
    let word = if at_risk { "over" } else { "back within" };
    let summary = format!("pool {pool}: replica lag {lag_s:.0} s {word} the RPO budget of {budget_s:.0} s");
    let details = json!({ "pool": pool, "lag_s": lag_s, "budget_s": budget_s, "at_risk": at_risk });
    let at = SystemTime::now();
    let event = match at_risk {
        true => Event::trigger(Kind::ReplicaLagRpo, Severity::Critical, pool, summary, at),
        false => Event::resolve(Kind::ReplicaLagRpo, pool, summary, at),
    };
    server.notify(event.with_details(details));
}

/// `POST /dr/engage` or `/dr/failback`: 200 with the new state (also when
/// nothing changed), or 409 with the refusal.
pub(crate) fn command(server: &Server, cmd: DrCommand, now: Instant) -> Result<Value, DrRefusal> {
    let cell = &server.data.gates.dr;
    // Only the site's lease holder decides its DR state: the call belongs there.
    let site = server.control.site_dr(&server.data.runtime.load().config);
    if !site.source.decides() {
        tracing::warn!(?cmd, holder = ?site.holder, "disaster-recovery call refused: this instance does not hold the site's lease");
        return Err(DrRefusal::NotHolder);
    }
    match cell.command(cmd, now) {
        Ok(t) => {
            if let Some(t) = t {
                report(server, t, "admin");
            }
            Ok(json!({ "ok": true, "changed": t.is_some(), "dr": to_json(&cell.view(now)) }))
        }
        Err(refusal) => {
            tracing::warn!(?cmd, reason = refusal.as_str(), "disaster-recovery call refused");
            Err(refusal)
        }
    }
}

/// The `dr` object of `/status`.
pub(crate) fn to_json(v: &DrView) -> Value {
    json!({
        "state": v.state.as_str(),
        "reason": v.reason.as_str(),
        "for_secs": v.for_.as_secs(),
        "engage": match v.engage { crate::burst::EngageMode::Auto => "auto", crate::burst::EngageMode::Confirm => "confirm" },
        "writes": match v.state {
            _ if v.writes_held.is_some() || v.state == DrState::DrPending => "refused",
            s if s.writes_in_cloud() => "cloud",
            _ => "onprem",
        },
        "failback_in_secs": v.failback_in.map(|d| d.as_secs()),
        "writes_fenced": v.writes_held.is_some(),
        "writes_held": v.writes_held.map(|h| h.as_str()),
        "source": v.source,
        "drilling": v.drilling,
        "last_drill": v.last_drill,
        "observed": {
            "onprem_lost": v.observed.onprem_lost,
            "onprem_reachable": v.observed.onprem_reachable,
            "onprem_primary": v.observed.onprem_primary,
            "cloud_ok": v.observed.cloud_ok,
            "cloud_promoted": v.observed.cloud_promoted,
        },
    })
}
