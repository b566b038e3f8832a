//! The scale tick, driven by [`crate::control::runner`] (which waits for the
//! interval, a reload or shutdown, samples between ticks and paces retries):
//! read the group → forecast and decide (pure) → set the desired capacity if
//! it changed → record (log, metrics, status).
//!
//! Invariants: an AWS failure only delays the next attempt (jittered
//! backoff, visible in status); nothing here panics on bad answers; time
//! comes from the runner (`tokio::time::Instant`, so paused-time tests drive
//! it), and wall time for scheduled events is derived from it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::forecast::{self, Demand, DemandInputs, History, Holt, HISTORY_SAMPLES};

/// The DNS controller's cloud share as written, and its config (for the TTL).
type DnsShare = (watch::Receiver<f64>, watch::Receiver<Option<DnsConfig>>);
use super::policy::{ScaleDecision, ScaleInputs, ScalePolicy};
use super::{GroupState, ScalingApi};
use crate::aws::AwsError;
use crate::config::{DnsConfig, ScaleConfig};
use crate::control::runner::{Context, ControlLoop, LoopStatus, Report, Settings};
use crate::control::{rfc3339, ControlSignals, Fence};
use crate::telemetry::catalog;

/// Signals are sampled at least this often (the forecast's resolution).
const MAX_SAMPLE_PERIOD: Duration = crate::control::smooth::SAMPLE_PERIOD;

/// Warm cloud capacity, published for the gate (to cap spill if configured).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CloudCapacity {
    pub desired: u32,
    pub in_service: u32,
    /// `in_service × per_instance_rps`.
    pub warm_rps: f64,
}

/// What `/status` shows about the scale controller.
pub(crate) type ScaleStatus = LoopStatus<ScaleReport>;

/// The scale controller's own status fields.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScaleReport {
    pub(crate) group: Option<GroupState>,
    pub(crate) last_decision: Option<(SystemTime, ScaleDecision, Demand)>,
    pub(crate) last_action: Option<(SystemTime, u32)>,
    /// Another instance holds the site's lease: this one makes no call.
    pub(crate) follower: bool,
}

impl Report for ScaleReport {
    fn to_json(&self) -> Value {
        let decision = self.last_decision.as_ref().map(|(at, d, demand)| {
            json!({
                "at": rfc3339(*at), "reason": d.reason.as_str(), "desired": d.desired, "target": d.target,
                "arrival_rps": demand.arrival_rps, "forecast_rps": demand.forecast_rps,
                "overflow_rps": demand.overflow_rps, "event": demand.event,
            })
        });
        json!({
            "desired_capacity": self.group.as_ref().map(|g| g.desired),
            "in_service": self.group.as_ref().map(|g| g.in_service),
            "pending": self.group.as_ref().map(|g| g.pending),
            "group_min": self.group.as_ref().map(|g| g.min),
            "group_max": self.group.as_ref().map(|g| g.max),
            "last_decision": decision,
            "last_action": self.last_action.map(|(at, d)| json!({"at": rfc3339(at), "desired": d})),
            "follower": self.follower,
        })
    }
}

/// The Auto Scaling controller: the scale tick and what it carries between
/// ticks. Build with [`ScaleController::new`], run it with a
/// [`crate::control::runner::Runner`].
pub(crate) struct ScaleController {
    api: Arc<dyn ScalingApi>,
    signals: watch::Receiver<ControlSignals>,
    capacity: watch::Sender<Option<CloudCapacity>>,
    dns_share: Option<DnsShare>,
    fence: Fence,
    state: LoopState,
}

type Cx = Context<ScaleReport>;

impl ControlLoop for ScaleController {
    type Config = ScaleConfig;
    type Report = ScaleReport;

    fn settings(cfg: &ScaleConfig) -> Settings {
        let sample_every = Some(cfg.interval.min(MAX_SAMPLE_PERIOD));
        Settings { enabled: cfg.enabled, dry_run: cfg.dry_run, interval: cfg.interval, sample_every }
    }

    async fn tick(&mut self, cfg: &ScaleConfig, cx: &mut Cx, now: Instant) -> Result<(), AwsError> {
        let follower = self.fence.holder(now).is_none();
        cx.report(|s| s.follower = follower);
        if follower {
            return Ok(());
        }
        let (api, name) = (&*self.api, cfg.auto_scaling_group.as_str());
        let group = cx.call(|| api.describe_group(name)).await?;
        self.publish_group(cfg, cx, &group);
        let decision = self.decide(cfg, cx, &group, now);
        if decision.desired == group.desired {
            return Ok(());
        }
        self.act(cfg, cx, &group, decision, now).await
    }

    fn sample(&mut self, _cfg: &ScaleConfig, cx: &Cx, now: Instant) {
        let share = self.dns_share.as_ref().map_or(0.0, |(r, _)| *r.borrow());
        let ttl = self.dns_ttl();
        self.state.sample(&self.signals.borrow(), share, ttl, cx.since_start(now));
    }

    fn failed(&mut self, err: &AwsError, delay: Duration) {
        tracing::warn!(api = err.api(), kind = err.kind(), ?delay, "scale controller: {err}; next attempt later");
    }

    fn stopped(&self) {
        tracing::info!("scale controller stopped");
    }
}

impl ScaleController {
    /// The `[dns]` records' TTL (zero without DNS).
    fn dns_ttl(&self) -> Duration {
        let ttl = self.dns_share.as_ref().and_then(|(_, d)| d.borrow().as_ref().map(|d| d.ttl)).unwrap_or(0);
        Duration::from_secs(u64::from(ttl))
    }

    pub(crate) fn new(api: Arc<dyn ScalingApi>, signals: watch::Receiver<ControlSignals>) -> Self {
        let capacity = watch::channel(None).0;
        Self { api, signals, capacity, dns_share: None, fence: Fence::default(), state: LoopState::new() }
    }

    /// Acts only while this instance holds the site's lease.
    pub(crate) fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    /// The DNS controller's cloud share (and the `[dns]` TTL), so DNS-direct
    /// traffic counts as demand once it is in effect.
    pub(crate) fn with_dns_share(
        mut self,
        share: watch::Receiver<f64>,
        dns: watch::Receiver<Option<DnsConfig>>,
    ) -> Self {
        self.dns_share = Some((share, dns));
        self
    }

    pub(crate) fn capacity(&self) -> watch::Receiver<Option<CloudCapacity>> {
        self.capacity.subscribe()
    }

    /// Forecasts and decides (pure), then records the decision.
    fn decide(&mut self, cfg: &ScaleConfig, cx: &Cx, group: &GroupState, now: Instant) -> ScaleDecision {
        let signals = self.signals.borrow().clone();
        let since = cx.since_start(now).as_secs_f64();
        let dns_share = forecast::effective_share(&self.state.shares, since, self.dns_ttl());
        let at = cx.wall_time(now);
        let demand = self.state.demand(cfg, &signals, dns_share, at);
        let inputs = ScaleInputs {
            overflow_rps: demand.overflow_rps,
            event: demand.event.is_some(),
            dr: signals.dr || signals.dr_capacity,
            current: group.desired,
            group_min: group.min,
            group_max: group.max,
        };
        let decision = self.state.policy.decide(cfg, &inputs, now.into_std());
        record_decision(cfg, group, &decision, &demand);
        cx.report(|s| s.last_decision = Some((at, decision, demand)));
        decision
    }

    /// Sets the desired capacity the decision asks for (inside the group's bounds).
    async fn act(
        &self,
        cfg: &ScaleConfig,
        cx: &mut Cx,
        group: &GroupState,
        decision: ScaleDecision,
        now: Instant,
    ) -> Result<(), AwsError> {
        if !(group.min..=group.max).contains(&decision.desired) {
            return Err(AwsError::Invalid {
                api: "SetDesiredCapacity",
                message: format!("{} is outside the group's [{}, {}]", decision.desired, group.min, group.max),
            });
        }
        let (api, name) = (&*self.api, cfg.auto_scaling_group.as_str());
        if cfg.dry_run {
            tracing::info!(group = name, desired = decision.desired, "dry run: would call SetDesiredCapacity");
            return Ok(());
        }
        if !self.fence.allows("SetDesiredCapacity", Instant::now()) {
            return Ok(());
        }
        cx.call(|| api.set_desired_capacity(name, decision.desired)).await?;
        metrics::counter!(catalog::SCALE_ACTIONS, "reason" => decision.reason.as_str()).increment(1);
        metrics::gauge!(catalog::SCALE_DESIRED_CAPACITY).set(f64::from(decision.desired));
        tracing::info!(
            group = name,
            from = group.desired,
            to = decision.desired,
            reason = decision.reason.as_str(),
            "desired capacity set"
        );
        let at = cx.wall_time(now);
        cx.report(|s| {
            s.last_action = Some((at, decision.desired));
            if let Some(g) = s.group.as_mut() {
                g.desired = decision.desired;
            }
        });
        Ok(())
    }

    fn publish_group(&self, cfg: &ScaleConfig, cx: &Cx, group: &GroupState) {
        metrics::gauge!(catalog::SCALE_DESIRED_CAPACITY).set(f64::from(group.desired));
        metrics::gauge!(catalog::SCALE_IN_SERVICE).set(f64::from(group.in_service));
        let warm_rps = f64::from(group.in_service) * f64::from(cfg.per_instance_rps);
        let cap = CloudCapacity { desired: group.desired, in_service: group.in_service, warm_rps };
        self.capacity.send_if_modified(|c| {
            let changed = *c != Some(cap);
            *c = Some(cap);
            changed
        });
        let group = group.clone();
        cx.report(|s| s.group = Some(group));
    }
}

fn record_decision(cfg: &ScaleConfig, group: &GroupState, d: &ScaleDecision, demand: &Demand) {
    metrics::counter!(catalog::SCALE_DECISIONS, "reason" => d.reason.as_str()).increment(1);
    tracing::debug!(
        group = cfg.auto_scaling_group.as_str(),
        reason = d.reason.as_str(),
        current = group.desired,
        desired = d.desired,
        target = d.target,
        in_service = group.in_service,
        arrival_rps = demand.arrival_rps,
        forecast_rps = demand.forecast_rps,
        overflow_rps = demand.overflow_rps,
        event = demand.event.as_deref(),
        "scale decision"
    );
}

/// What the loop carries from tick to tick (survives reloads).
struct LoopState {
    arrivals: History,
    /// The site's total demand (`forecast::pooled_total`), sampled with the arrivals.
    totals: History,
    /// Arrival samples the newest total pooled.
    pooled: usize,
    spilled: History,
    shed: History,
    /// The DNS cloud share as written, sampled with the signals.
    shares: History,
    learned_capacity: Option<f64>,
    policy: ScalePolicy,
}

impl LoopState {
    fn new() -> Self {
        Self {
            arrivals: History::new(HISTORY_SAMPLES),
            totals: History::new(HISTORY_SAMPLES),
            pooled: 1,
            spilled: History::new(HISTORY_SAMPLES),
            shed: History::new(HISTORY_SAMPLES),
            shares: History::new(HISTORY_SAMPLES),
            learned_capacity: None,
            policy: ScalePolicy::default(),
        }
    }

    /// Records the signals `since_start` the loop began; `dns_share` as
    /// written, in effect after `ttl`.
    fn sample(&mut self, s: &ControlSignals, dns_share: f64, ttl: Duration, since_start: Duration) {
        let at = since_start.as_secs_f64();
        self.arrivals.push(at, s.arrival_rps);
        self.spilled.push(at, s.spilled_rps);
        self.shed.push(at, s.shed_rps);
        self.shares.push(at, dns_share);
        if let Some((total, pooled)) = forecast::pooled_total(&self.arrivals, &self.shares, ttl) {
            self.totals.push(at, total);
            self.pooled = pooled;
        }
        if let Some(c) = s.onprem_capacity_rps.filter(|c| c.is_finite() && *c > 0.0) {
            self.learned_capacity = Some(c);
        }
    }

    fn demand(&self, cfg: &ScaleConfig, s: &ControlSignals, dns_share: f64, now: SystemTime) -> Demand {
        let capacity = s
            .onprem_capacity_rps
            .filter(|c| c.is_finite() && *c > 0.0)
            .or(self.learned_capacity)
            .or(cfg.onprem_capacity_rps.map(f64::from));
        forecast::demand(&DemandInputs {
            arrivals: &self.arrivals,
            totals: Some(&self.totals),
            pooled: self.pooled,
            spilled: &self.spilled,
            shed: &self.shed,
            holt: Holt { alpha: cfg.forecast_alpha, beta: cfg.forecast_beta },
            warmup: cfg.warmup,
            lead: cfg.warmup + cfg.interval,
            events: &cfg.events,
            now,
            onprem_capacity_rps: capacity,
            dns_cloud_share: dns_share,
        })
    }
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
