//! The DNS loop shell: wait for a tick, a reload or shutdown → sample the
//! signals → read back the records when due → plan (pure) → UPSERT both
//! records in one batch → poll `GetChange` to INSYNC → read back → record.
//!
//! Invariants: every Route 53 call spends a token of the 5 req/s bucket and
//! is retried only for retryable errors; an outage delays the next attempt
//! (jittered backoff, visible in status); `dry_run` logs instead of writing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::records::{self, ReadBack};
use super::weights::{WeightPlan, WeightPlanner, WeightReason, Weights};
use super::{ChangeInfo, ChangeStatus, DnsApi};
use crate::aws::{AwsError, Backoff, RateLimiter, Retry};
use crate::clock::WallClock;
use crate::config::{DnsConfig, ExternalEdit};
use crate::control::{rfc3339, ControlSignals, ErrorRecord};

/// How often `GetChange` is polled while a change is PENDING.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
const MAX_TICK_BACKOFF: Duration = Duration::from_secs(300);

/// What `/status` shows about the DNS controller.
#[derive(Debug, Clone, Default)]
pub struct DnsStatus {
    pub enabled: bool,
    pub dry_run: bool,
    /// Weights as last read or written.
    pub weights: Option<Weights>,
    /// Weights an external edit set and that are being respected.
    pub respected: Option<Weights>,
    pub last_plan: Option<(SystemTime, WeightPlan)>,
    pub last_change: Option<(SystemTime, Weights, WeightReason, String, ChangeStatus)>,
    pub changes: u64,
    pub external_edit: Option<(SystemTime, String)>,
    pub last_error: Option<ErrorRecord>,
    pub consecutive_failures: u32,
    pub next_attempt: Option<Instant>,
}

fn weights_json(w: Weights) -> Value {
    json!({ "onprem": w.onprem, "aws": w.aws })
}

impl DnsStatus {
    pub fn to_json(&self, now: Instant) -> Value {
        let plan = self.last_plan.map(|(at, p)| match p {
            WeightPlan::Change { weights, reason } => {
                json!({"at": rfc3339(at), "change": weights_json(weights), "reason": reason.as_str()})
            }
            WeightPlan::Hold(r) => json!({"at": rfc3339(at), "hold": r.as_str()}),
        });
        let change = self.last_change.as_ref().map(|(at, w, reason, id, st)| {
            json!({"at": rfc3339(*at), "weights": weights_json(*w), "reason": reason.as_str(), "change_id": id, "status": st.as_str()})
        });
        json!({
            "enabled": self.enabled,
            "dry_run": self.dry_run,
            "weights": self.weights.map(weights_json),
            "cloud_share": self.weights.map(Weights::cloud_share),
            "respected_external_weights": self.respected.map(weights_json),
            "last_decision": plan,
            "last_change": change,
            "changes": self.changes,
            "external_edit": self.external_edit.as_ref().map(|(at, d)| json!({"at": rfc3339(*at), "detail": d})),
            "last_error": self.last_error.as_ref().map(ErrorRecord::to_json),
            "consecutive_failures": self.consecutive_failures,
            "next_attempt_in_ms": self.next_attempt.map(|t| t.saturating_duration_since(now).as_millis() as u64),
        })
    }
}

/// The Route 53 controller. Build with [`DnsController::new`], then `run`/`spawn`.
pub struct DnsController {
    api: Arc<dyn DnsApi>,
    signals: watch::Receiver<ControlSignals>,
    config: watch::Receiver<Option<DnsConfig>>,
    shutdown: CancellationToken,
    status: Arc<Mutex<DnsStatus>>,
    share: watch::Sender<f64>,
    limiter: RateLimiter,
    rng: fastrand::Rng,
    wall_base: SystemTime,
}

/// What the loop carries between ticks.
#[derive(Default)]
struct LoopState {
    planner: WeightPlanner,
    /// Weights in Route 53 as last read or written.
    current: Option<Weights>,
    /// Weights this controller last wrote (to tell an edit from our own change).
    written: Option<Weights>,
    respected: Option<Weights>,
    next_read: Option<Instant>,
    failures: u32,
}

/// What a read-back asks for.
enum ReadOutcome {
    Fine,
    Write(Weights, WeightReason),
}

impl DnsController {
    pub fn new(
        api: Arc<dyn DnsApi>,
        signals: watch::Receiver<ControlSignals>,
        config: watch::Receiver<Option<DnsConfig>>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            api,
            signals,
            config,
            shutdown,
            status: Arc::default(),
            share: watch::channel(0.0).0,
            limiter: RateLimiter::route53(),
            rng: fastrand::Rng::new(),
            wall_base: SystemTime::now(),
        }
    }

    /// Seeds the retry jitter (tests).
    pub fn with_rng(mut self, rng: fastrand::Rng) -> Self {
        self.rng = rng;
        self
    }

    pub fn with_wall_clock(mut self, at_start: SystemTime) -> Self {
        self.wall_base = at_start;
        self
    }

    pub fn status(&self) -> Arc<Mutex<DnsStatus>> {
        self.status.clone()
    }

    /// AWS's current DNS share (0–1), for the scale controller.
    pub fn cloud_share(&self) -> watch::Receiver<f64> {
        self.share.subscribe()
    }

    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }

    /// Runs until shutdown.
    pub async fn run(mut self) {
        let origin = Instant::now();
        let wall = WallClock::new(self.wall_base, origin);
        let mut retry = Retry::new(Backoff::default(), crate::aws::retry::DEFAULT_ATTEMPTS, self.rng.clone());
        let mut st = LoopState::default();
        let mut next_tick = origin;
        let mut config_open = true;
        loop {
            let cfg = self.config.borrow_and_update().clone().filter(|c| c.enabled);
            self.set_status(|s| {
                s.enabled = cfg.is_some();
                s.dry_run = cfg.as_ref().is_some_and(|c| c.dry_run);
            });
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                changed = self.config.changed(), if config_open => {
                    config_open = changed.is_ok();
                    st.next_read = None;
                    st.respected = None;
                    next_tick = Instant::now();
                    continue;
                }
                () = tokio::time::sleep_until(next_tick), if cfg.is_some() => {}
            }
            let Some(cfg) = cfg else { continue };
            let now = Instant::now();
            st.planner.observe(&self.signals.borrow(), now.into_std());
            next_tick = match self.tick(&cfg, &mut st, &mut retry, wall, now).await {
                Ok(()) => {
                    st.failures = 0;
                    now + cfg.interval
                }
                Err(err) => self.failed(&cfg, &mut st, wall.at(now), &err),
            };
            let (failures, respected) = (st.failures, st.respected);
            self.set_status(|s| {
                s.consecutive_failures = failures;
                s.next_attempt = Some(next_tick);
                s.respected = respected;
            });
        }
        tracing::info!("dns controller stopped");
    }

    fn failed(&mut self, cfg: &DnsConfig, st: &mut LoopState, at: SystemTime, err: &AwsError) -> Instant {
        let backoff = Backoff { base: cfg.interval, max: MAX_TICK_BACKOFF.max(cfg.interval) };
        let delay = backoff.delay(st.failures, &mut self.rng);
        st.failures += 1;
        st.next_read = None;
        tracing::warn!(api = err.api(), kind = err.kind(), ?delay, "dns controller: {err}; next attempt later");
        self.set_status(|s| s.last_error = Some(ErrorRecord::new(at, err)));
        Instant::now() + delay
    }

    async fn tick(
        &mut self,
        cfg: &DnsConfig,
        st: &mut LoopState,
        retry: &mut Retry,
        wall: WallClock,
        now: Instant,
    ) -> Result<(), AwsError> {
        if st.next_read.is_none_or(|t| now >= t) {
            if let ReadOutcome::Write(w, reason) = self.read(cfg, st, retry, wall, now).await? {
                return self.write(cfg, st, retry, wall, w, reason).await;
            }
        }
        let Some(current) = st.current else {
            return Ok(());
        };
        let target = st.respected.or(cfg.target_weights.map(|t| Weights { onprem: t.onprem, aws: t.aws }));
        let signals = self.signals.borrow().clone();
        let plan = st.planner.plan(cfg, &signals, current, target, now.into_std());
        let at = wall.at(now);
        self.set_status(|s| s.last_plan = Some((at, plan)));
        match plan {
            WeightPlan::Hold(reason) => {
                tracing::trace!(reason = reason.as_str(), ?current, "dns: hold");
                Ok(())
            }
            WeightPlan::Change { weights, reason } => self.write(cfg, st, retry, wall, weights, reason).await,
        }
    }

    /// Lists the records and compares them with what we know.
    async fn read(
        &mut self,
        cfg: &DnsConfig,
        st: &mut LoopState,
        retry: &mut Retry,
        wall: WallClock,
        now: Instant,
    ) -> Result<ReadOutcome, AwsError> {
        let (api, limiter) = (&*self.api, &self.limiter);
        let (zone, name, rtype) = (cfg.hosted_zone_id.as_str(), cfg.record.as_str(), cfg.record_type.as_str());
        let observed = retry
            .call(&self.shutdown, || async move {
                limiter.acquire().await;
                api.list_records(zone, name, rtype).await
            })
            .await?;
        st.next_read = Some(now + cfg.verify_interval);
        let first = st.written.is_none() && st.current.is_none();
        let outcome = match records::read_back(cfg, &observed) {
            ReadBack::Missing => {
                let w = st.current.unwrap_or(if self.signals.borrow().dr {
                    Weights::CLOUD_ONLY
                } else {
                    Weights::ONPREM_ONLY
                });
                tracing::info!("dns: records missing; creating them");
                ReadOutcome::Write(w, WeightReason::Reconcile)
            }
            ReadBack::Found(w) if first || Some(w) == st.written || cfg.dry_run => {
                st.current = Some(w);
                ReadOutcome::Fine
            }
            ReadBack::Found(w) => {
                self.external_edit(cfg, st, Some(w), format!("weights changed to {w:?}"), wall.at(now))
            }
            ReadBack::Foreign { weights, detail } if first => {
                tracing::info!(detail, "dns: records differ from the config; updating them");
                ReadOutcome::Write(weights.unwrap_or(Weights::ONPREM_ONLY), WeightReason::Reconcile)
            }
            ReadBack::Foreign { weights, detail } => self.external_edit(cfg, st, weights, detail, wall.at(now)),
        };
        let current = st.current;
        self.set_status(|s| s.weights = current);
        self.share.send_replace(current.map_or(0.0, Weights::cloud_share));
        Ok(outcome)
    }

    fn external_edit(
        &mut self,
        cfg: &DnsConfig,
        st: &mut LoopState,
        seen: Option<Weights>,
        detail: String,
        at: SystemTime,
    ) -> ReadOutcome {
        tracing::warn!(detail, policy = ?cfg.on_external_edit, "dns: records were edited outside Spillway");
        metrics::counter!("spillway_dns_external_edits_total").increment(1);
        self.set_status(|s| s.external_edit = Some((at, detail)));
        match (cfg.on_external_edit, seen) {
            (ExternalEdit::Respect, Some(w)) => {
                st.current = Some(w);
                st.written = Some(w);
                st.respected = Some(w);
                ReadOutcome::Fine
            }
            _ => ReadOutcome::Write(
                st.written.or(st.current).unwrap_or(Weights::ONPREM_ONLY),
                WeightReason::CorrectExternalEdit,
            ),
        }
    }

    /// UPSERTs both records in one batch, waits for INSYNC, reads back.
    async fn write(
        &mut self,
        cfg: &DnsConfig,
        st: &mut LoopState,
        retry: &mut Retry,
        wall: WallClock,
        w: Weights,
        reason: WeightReason,
    ) -> Result<(), AwsError> {
        let now = Instant::now();
        let from = st.current;
        if cfg.dry_run {
            tracing::info!(?from, to = ?w, reason = reason.as_str(), record = cfg.record.as_str(), "dry run: would UPSERT both weighted records");
            st.current = Some(w);
            st.planner.changed(now.into_std());
            self.set_status(|s| s.weights = Some(w));
            return Ok(());
        }
        let batch = records::batch(cfg, w);
        let comment = format!("spillway: {} (onprem {}, aws {})", reason.as_str(), w.onprem, w.aws);
        let (api, limiter, zone) = (&*self.api, &self.limiter, cfg.hosted_zone_id.as_str());
        let (batch, comment) = (&batch[..], comment.as_str());
        let info = retry
            .call(&self.shutdown, || async move {
                limiter.acquire().await;
                api.upsert(zone, batch, comment).await
            })
            .await?;
        st.planner.changed(now.into_std());
        st.written = Some(w);
        st.current = Some(w);
        metrics::counter!("spillway_dns_changes_total", "reason" => reason.as_str()).increment(1);
        metrics::gauge!("spillway_dns_weight", "record" => "onprem").set(f64::from(w.onprem));
        metrics::gauge!("spillway_dns_weight", "record" => "aws").set(f64::from(w.aws));
        tracing::info!(?from, to = ?w, reason = reason.as_str(), change = info.id.as_str(), "dns weights changed");
        self.share.send_replace(w.cloud_share());
        let at = wall.at(now);
        self.set_status(|s| {
            s.weights = Some(w);
            s.changes += 1;
            s.last_change = Some((at, w, reason, info.id.clone(), info.status));
        });
        let status = self.wait_insync(cfg, retry, &info).await?;
        self.set_status(|s| {
            if let Some(c) = s.last_change.as_mut() {
                c.4 = status;
            }
        });
        if let ReadOutcome::Write(..) = self.read(cfg, st, retry, wall, Instant::now()).await? {
            st.next_read = None;
        }
        Ok(())
    }

    /// Polls `GetChange` until INSYNC or `insync_timeout`.
    async fn wait_insync(
        &mut self,
        cfg: &DnsConfig,
        retry: &mut Retry,
        info: &ChangeInfo,
    ) -> Result<ChangeStatus, AwsError> {
        let deadline = Instant::now() + cfg.insync_timeout;
        let mut status = info.status;
        let (api, limiter, id) = (&*self.api, &self.limiter, info.id.as_str());
        while status != ChangeStatus::InSync {
            if Instant::now() + POLL_INTERVAL > deadline {
                return Err(AwsError::Unavailable {
                    api: "GetChange",
                    message: format!("change {id} not INSYNC after {:?}", cfg.insync_timeout),
                });
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return Ok(status),
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            status = retry
                .call(&self.shutdown, || async move {
                    limiter.acquire().await;
                    api.get_change(id).await
                })
                .await?;
        }
        Ok(status)
    }

    fn set_status(&self, f: impl FnOnce(&mut DnsStatus)) {
        f(&mut self.status.lock().expect("dns status poisoned"));
    }
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
