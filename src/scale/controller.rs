//! The scale loop shell: wait for a tick, a reload or shutdown → sample the
//! signals → read the group → forecast and decide (pure) → set the desired
//! capacity if it changed → record (log, metrics, status).
//!
//! Invariants: an AWS failure only delays the next attempt (jittered
//! backoff, visible in status); nothing here panics on bad answers; the
//! clock is read only here (`tokio::time::Instant`, so paused-time tests
//! drive it), and wall time for scheduled events is derived from it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::forecast::{self, Demand, DemandInputs, History, Holt, HISTORY_SAMPLES};
use super::policy::{ScaleDecision, ScaleInputs, ScalePolicy};
use super::{GroupState, ScalingApi};
use crate::aws::{AwsError, Backoff, Retry};
use crate::clock::WallClock;
use crate::config::ScaleConfig;
use crate::control::{rfc3339, ControlSignals, ErrorRecord};

/// Longest wait between failed ticks.
const MAX_TICK_BACKOFF: Duration = Duration::from_secs(300);
/// Signals are sampled at least this often (the forecast's resolution).
const MAX_SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// Warm cloud capacity, published for the gate (to cap spill if configured).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CloudCapacity {
    pub desired: u32,
    pub in_service: u32,
    /// `in_service × per_instance_rps`.
    pub warm_rps: f64,
}

/// What `/status` shows about the scale controller.
#[derive(Debug, Clone, Default)]
pub struct ScaleStatus {
    pub enabled: bool,
    pub dry_run: bool,
    pub group: Option<GroupState>,
    pub last_decision: Option<(SystemTime, ScaleDecision, Demand)>,
    pub last_action: Option<(SystemTime, u32)>,
    pub last_error: Option<ErrorRecord>,
    pub consecutive_failures: u32,
    pub next_attempt: Option<Instant>,
}

impl ScaleStatus {
    pub fn to_json(&self, now: Instant) -> Value {
        let decision = self.last_decision.as_ref().map(|(at, d, demand)| {
            json!({
                "at": rfc3339(*at), "reason": d.reason.as_str(), "desired": d.desired, "target": d.target,
                "arrival_rps": demand.arrival_rps, "forecast_rps": demand.forecast_rps,
                "overflow_rps": demand.overflow_rps, "event": demand.event,
            })
        });
        json!({
            "enabled": self.enabled,
            "dry_run": self.dry_run,
            "desired_capacity": self.group.as_ref().map(|g| g.desired),
            "in_service": self.group.as_ref().map(|g| g.in_service),
            "pending": self.group.as_ref().map(|g| g.pending),
            "group_min": self.group.as_ref().map(|g| g.min),
            "group_max": self.group.as_ref().map(|g| g.max),
            "last_decision": decision,
            "last_action": self.last_action.map(|(at, d)| json!({"at": rfc3339(at), "desired": d})),
            "last_error": self.last_error.as_ref().map(ErrorRecord::to_json),
            "consecutive_failures": self.consecutive_failures,
            "next_attempt_in_ms": self.next_attempt.map(|t| t.saturating_duration_since(now).as_millis() as u64),
        })
    }
}

/// The Auto Scaling controller. Build with [`ScaleController::new`], then `run`/`spawn`.
pub struct ScaleController {
    api: Arc<dyn ScalingApi>,
    signals: watch::Receiver<ControlSignals>,
    config: watch::Receiver<Option<ScaleConfig>>,
    shutdown: CancellationToken,
    status: Arc<Mutex<ScaleStatus>>,
    capacity: watch::Sender<Option<CloudCapacity>>,
    dns_share: Option<watch::Receiver<f64>>,
    rng: fastrand::Rng,
    wall_base: SystemTime,
}

impl ScaleController {
    pub fn new(
        api: Arc<dyn ScalingApi>,
        signals: watch::Receiver<ControlSignals>,
        config: watch::Receiver<Option<ScaleConfig>>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            api,
            signals,
            config,
            shutdown,
            status: Arc::default(),
            capacity: watch::channel(None).0,
            dns_share: None,
            rng: fastrand::Rng::new(),
            wall_base: SystemTime::now(),
        }
    }

    /// Seeds the backoff jitter (tests).
    pub fn with_rng(mut self, rng: fastrand::Rng) -> Self {
        self.rng = rng;
        self
    }

    /// The wall time at loop start; later wall times follow tokio's clock.
    pub fn with_wall_clock(mut self, at_start: SystemTime) -> Self {
        self.wall_base = at_start;
        self
    }

    /// The DNS controller's cloud share, so DNS-direct traffic counts as demand.
    pub fn with_dns_share(mut self, share: watch::Receiver<f64>) -> Self {
        self.dns_share = Some(share);
        self
    }

    pub fn status(&self) -> Arc<Mutex<ScaleStatus>> {
        self.status.clone()
    }

    pub fn capacity(&self) -> watch::Receiver<Option<CloudCapacity>> {
        self.capacity.subscribe()
    }

    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }

    /// Runs until shutdown.
    pub async fn run(mut self) {
        let origin = Instant::now();
        let mut state = LoopState::new(origin, WallClock::new(self.wall_base, origin));
        let mut retry = Retry::new(Backoff::default(), crate::aws::retry::DEFAULT_ATTEMPTS, self.rng.clone());
        let mut config_open = true;
        loop {
            let cfg = self.config.borrow_and_update().clone().filter(|c| c.enabled);
            self.set_status(|s| {
                s.enabled = cfg.is_some();
                s.dry_run = cfg.as_ref().is_some_and(|c| c.dry_run);
            });
            let wake = cfg.as_ref().map(|c| state.next_wake(c));
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                changed = self.config.changed(), if config_open => {
                    config_open = changed.is_ok();
                    state.next_decide = Instant::now();
                    continue;
                }
                () = sleep_until_opt(wake) => {}
            }
            let Some(cfg) = cfg else { continue };
            let now = Instant::now();
            if now >= state.next_sample {
                state.sample(&self.signals.borrow(), &cfg, now);
            }
            if now >= state.next_decide {
                self.decide_tick(&cfg, &mut state, &mut retry, now).await;
            }
        }
        tracing::info!("scale controller stopped");
    }

    async fn decide_tick(&mut self, cfg: &ScaleConfig, state: &mut LoopState, retry: &mut Retry, now: Instant) {
        match self.tick(cfg, state, retry, now).await {
            Ok(()) => {
                state.failures = 0;
                state.next_decide = now + cfg.interval;
            }
            Err(err) => {
                let backoff = Backoff { base: cfg.interval, max: MAX_TICK_BACKOFF.max(cfg.interval) };
                let delay = backoff.delay(state.failures, &mut self.rng);
                state.failures += 1;
                state.next_decide = Instant::now() + delay;
                tracing::warn!(
                    api = err.api(),
                    kind = err.kind(),
                    ?delay,
                    "scale controller: {err}; next attempt later"
                );
                let at = state.wall.at(now);
                self.set_status(|s| s.last_error = Some(ErrorRecord::new(at, &err)));
            }
        }
        let (failures, next) = (state.failures, state.next_decide);
        self.set_status(|s| {
            s.consecutive_failures = failures;
            s.next_attempt = Some(next);
        });
    }

    async fn tick(
        &mut self,
        cfg: &ScaleConfig,
        state: &mut LoopState,
        retry: &mut Retry,
        now: Instant,
    ) -> Result<(), AwsError> {
        let name = cfg.auto_scaling_group.as_str();
        let api = &*self.api;
        let group = retry.call(&self.shutdown, || api.describe_group(name)).await?;
        self.publish_group(cfg, &group);
        let signals = self.signals.borrow().clone();
        let demand = state.demand(cfg, &signals, self.dns_share.as_ref().map_or(0.0, |r| *r.borrow()), now);
        let inputs = ScaleInputs {
            overflow_rps: demand.overflow_rps,
            event: demand.event.is_some(),
            dr: signals.dr,
            current: group.desired,
            group_min: group.min,
            group_max: group.max,
        };
        let decision = state.policy.decide(cfg, &inputs, now.into_std());
        let at = state.wall.at(now);
        record_decision(cfg, &group, &decision, &demand);
        self.set_status(|s| s.last_decision = Some((at, decision, demand)));
        if decision.desired == group.desired {
            return Ok(());
        }
        if !(group.min..=group.max).contains(&decision.desired) {
            return Err(AwsError::Invalid {
                api: "SetDesiredCapacity",
                message: format!("{} is outside the group's [{}, {}]", decision.desired, group.min, group.max),
            });
        }
        if cfg.dry_run {
            tracing::info!(group = name, desired = decision.desired, "dry run: would call SetDesiredCapacity");
            return Ok(());
        }
        retry.call(&self.shutdown, || api.set_desired_capacity(name, decision.desired)).await?;
        metrics::counter!("spillway_scale_actions_total", "reason" => decision.reason.as_str()).increment(1);
        metrics::gauge!("spillway_scale_desired_capacity").set(f64::from(decision.desired));
        tracing::info!(
            group = name,
            from = group.desired,
            to = decision.desired,
            reason = decision.reason.as_str(),
            "desired capacity set"
        );
        self.set_status(|s| {
            s.last_action = Some((at, decision.desired));
            if let Some(g) = s.group.as_mut() {
                g.desired = decision.desired;
            }
        });
        Ok(())
    }

    fn publish_group(&self, cfg: &ScaleConfig, group: &GroupState) {
        metrics::gauge!("spillway_scale_desired_capacity").set(f64::from(group.desired));
        metrics::gauge!("spillway_scale_in_service").set(f64::from(group.in_service));
        let warm_rps = f64::from(group.in_service) * f64::from(cfg.per_instance_rps);
        let cap = CloudCapacity { desired: group.desired, in_service: group.in_service, warm_rps };
        self.capacity.send_if_modified(|c| {
            let changed = *c != Some(cap);
            *c = Some(cap);
            changed
        });
        let group = group.clone();
        self.set_status(|s| s.group = Some(group));
    }

    fn set_status(&self, f: impl FnOnce(&mut ScaleStatus)) {
        f(&mut self.status.lock().expect("scale status poisoned"));
    }
}

fn record_decision(cfg: &ScaleConfig, group: &GroupState, d: &ScaleDecision, demand: &Demand) {
    metrics::counter!("spillway_scale_decisions_total", "reason" => d.reason.as_str()).increment(1);
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

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What the loop carries from tick to tick (survives reloads).
struct LoopState {
    origin: Instant,
    wall: WallClock,
    arrivals: History,
    spilled: History,
    learned_capacity: Option<f64>,
    policy: ScalePolicy,
    failures: u32,
    next_sample: Instant,
    next_decide: Instant,
}

impl LoopState {
    fn new(origin: Instant, wall: WallClock) -> Self {
        Self {
            origin,
            wall,
            arrivals: History::new(HISTORY_SAMPLES),
            spilled: History::new(HISTORY_SAMPLES),
            learned_capacity: None,
            policy: ScalePolicy::default(),
            failures: 0,
            next_sample: origin,
            next_decide: origin,
        }
    }

    fn next_wake(&self, cfg: &ScaleConfig) -> Instant {
        debug_assert!(!cfg.interval.is_zero());
        self.next_sample.min(self.next_decide)
    }

    fn sample(&mut self, s: &ControlSignals, cfg: &ScaleConfig, now: Instant) {
        let at = now.duration_since(self.origin).as_secs_f64();
        self.arrivals.push(at, s.arrival_rps);
        self.spilled.push(at, s.spilled_rps);
        if let Some(c) = s.onprem_capacity_rps.filter(|c| c.is_finite() && *c > 0.0) {
            self.learned_capacity = Some(c);
        }
        self.next_sample = now + cfg.interval.min(MAX_SAMPLE_PERIOD);
    }

    fn demand(&self, cfg: &ScaleConfig, s: &ControlSignals, dns_share: f64, now: Instant) -> Demand {
        let capacity = s
            .onprem_capacity_rps
            .filter(|c| c.is_finite() && *c > 0.0)
            .or(self.learned_capacity)
            .or(cfg.onprem_capacity_rps.map(f64::from));
        forecast::demand(&DemandInputs {
            arrivals: &self.arrivals,
            spilled: &self.spilled,
            holt: Holt { alpha: cfg.forecast_alpha, beta: cfg.forecast_beta },
            warmup: cfg.warmup,
            lead: cfg.warmup + cfg.interval,
            events: &cfg.events,
            now: self.wall.at(now),
            onprem_capacity_rps: capacity,
            dns_cloud_share: dns_share,
        })
    }
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
