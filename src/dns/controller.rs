//! The DNS tick, driven by [`crate::control::runner`] (which waits for the
//! interval, a reload or shutdown and paces retries): sample the signals →
//! read back the records when due → plan (pure) → UPSERT both records in one
//! batch → poll `GetChange` to INSYNC → read back → record.
//!
//! Invariants: every Route 53 call spends a token of the 5 req/s bucket and
//! is retried only for retryable errors; every UPSERT carries each record's
//! health check (configured, else as last read back); an outage delays the next attempt
//! (jittered backoff, visible in status); `dry_run` logs instead of writing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::records::{self, HealthChecks, ReadBack};
use super::weights::{WeightPlan, WeightPlanner, WeightReason, Weights};
use super::{ChangeInfo, ChangeStatus, DnsApi};
use crate::aws::{AwsError, RateLimiter};
use crate::config::{DnsConfig, ExternalEdit};
use crate::control::runner::{Context, ControlLoop, LoopStatus, Report, Settings};
use crate::control::{rfc3339, ControlSignals, Fence};
use crate::telemetry::catalog;

/// How often `GetChange` is polled while a change is PENDING.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What `/status` shows about the DNS controller.
pub(crate) type DnsStatus = LoopStatus<DnsReport>;

/// The DNS controller's own status fields.
#[derive(Debug, Clone, Default)]
pub(crate) struct DnsReport {
    /// Weights as last read or written.
    pub(crate) weights: Option<Weights>,
    /// Weights an external edit set and that are being respected.
    pub(crate) respected: Option<Weights>,
    pub(crate) last_plan: Option<(SystemTime, WeightPlan)>,
    pub(crate) last_change: Option<(SystemTime, Weights, WeightReason, String, ChangeStatus)>,
    pub(crate) changes: u64,
    pub(crate) external_edit: Option<(SystemTime, String)>,
    /// Another instance holds the site's lease: this one makes no call.
    pub(crate) follower: bool,
}

fn weights_json(w: Weights) -> Value {
    json!({ "onprem": w.onprem, "aws": w.aws })
}

impl Report for DnsReport {
    fn to_json(&self) -> Value {
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
            "weights": self.weights.map(weights_json),
            "cloud_share": self.weights.map(Weights::cloud_share),
            "respected_external_weights": self.respected.map(weights_json),
            "last_decision": plan,
            "last_change": change,
            "changes": self.changes,
            "external_edit": self.external_edit.as_ref().map(|(at, d)| json!({"at": rfc3339(*at), "detail": d})),
            "follower": self.follower,
        })
    }
}

/// The Route 53 controller: the DNS tick and what it carries between ticks.
/// Build with [`DnsController::new`], run it with a [`crate::control::runner::Runner`].
pub(crate) struct DnsController {
    api: Arc<dyn DnsApi>,
    signals: watch::Receiver<ControlSignals>,
    share: watch::Sender<f64>,
    limiter: RateLimiter,
    planner: WeightPlanner,
    /// Weights in Route 53 as last read or written.
    current: Option<Weights>,
    /// Weights this controller last wrote (to tell an edit from our own change).
    written: Option<Weights>,
    respected: Option<Weights>,
    /// The records' health checks as last read back (`None` before the
    /// first read): what a record without a configured one keeps.
    checks: Option<HealthChecks>,
    next_read: Option<Instant>,
    fence: Fence,
    /// The lease version the state above was built under.
    term: Option<u64>,
}

/// What a read-back asks for.
enum ReadOutcome {
    Fine,
    Write(Weights, WeightReason),
}

type Cx = Context<DnsReport>;

impl ControlLoop for DnsController {
    type Config = DnsConfig;
    type Report = DnsReport;

    fn settings(cfg: &DnsConfig) -> Settings {
        Settings { enabled: cfg.enabled, dry_run: cfg.dry_run, interval: cfg.interval, sample_every: None }
    }

    async fn tick(&mut self, cfg: &DnsConfig, cx: &mut Cx, now: Instant) -> Result<(), AwsError> {
        self.planner.observe(&self.signals.borrow(), now.into_std());
        let term = self.fence.holder(now);
        cx.report(|s| s.follower = term.is_none());
        if term != self.term {
            // A new lease term: what we knew of the records may be another holder's.
            self.term = term;
            self.forget();
        }
        if term.is_none() {
            return Ok(());
        }
        let result = self.reconcile(cfg, cx, now).await;
        let respected = self.respected;
        cx.report(|s| s.respected = respected);
        result
    }

    fn failed(&mut self, err: &AwsError, delay: Duration) {
        self.next_read = None;
        tracing::warn!(api = err.api(), kind = err.kind(), ?delay, "dns controller: {err}; next attempt later");
    }

    fn stopped(&self) {
        tracing::info!("dns controller stopped");
    }

    fn reconfigured(&mut self) {
        self.next_read = None;
        self.respected = None;
        self.checks = None;
    }
}

impl DnsController {
    /// Acts only while this instance holds the site's lease.
    pub(crate) fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    fn forget(&mut self) {
        self.current = None;
        self.written = None;
        self.respected = None;
        self.next_read = None;
    }
}

impl DnsController {
    pub(crate) fn new(api: Arc<dyn DnsApi>, signals: watch::Receiver<ControlSignals>) -> Self {
        Self {
            api,
            signals,
            share: watch::channel(0.0).0,
            limiter: RateLimiter::route53(),
            planner: WeightPlanner::default(),
            current: None,
            written: None,
            respected: None,
            checks: None,
            next_read: None,
            fence: Fence::default(),
            term: Some(0),
        }
    }

    /// AWS's current DNS share (0–1), for the scale controller.
    pub(crate) fn cloud_share(&self) -> watch::Receiver<f64> {
        self.share.subscribe()
    }

    /// Reads back when due, then plans and writes if the plan says so.
    async fn reconcile(&mut self, cfg: &DnsConfig, cx: &mut Cx, now: Instant) -> Result<(), AwsError> {
        if self.next_read.is_none_or(|t| now >= t) {
            if let ReadOutcome::Write(w, reason) = self.read(cfg, cx, now).await? {
                return self.write(cfg, cx, w, reason).await;
            }
        }
        let Some(current) = self.current else {
            return Ok(());
        };
        let target = self.respected.or(cfg.target_weights.map(|t| Weights { onprem: t.onprem, aws: t.aws }));
        let signals = self.signals.borrow().clone();
        let plan = self.planner.plan(cfg, &signals, current, target, now.into_std());
        let at = cx.wall_time(now);
        cx.report(|s| s.last_plan = Some((at, plan)));
        match plan {
            WeightPlan::Hold(reason) => {
                tracing::trace!(reason = reason.as_str(), ?current, "dns: hold");
                Ok(())
            }
            WeightPlan::Change { weights, reason } => self.write(cfg, cx, weights, reason).await,
        }
    }

    /// Lists the records and compares them with what we know.
    async fn read(&mut self, cfg: &DnsConfig, cx: &mut Cx, now: Instant) -> Result<ReadOutcome, AwsError> {
        let (api, limiter) = (&*self.api, &self.limiter);
        let (zone, name, rtype) = (cfg.hosted_zone_id.as_str(), cfg.record.as_str(), cfg.record_type.as_str());
        let observed = cx
            .call(|| async move {
                limiter.acquire().await;
                api.list_records(zone, name, rtype).await
            })
            .await?;
        self.next_read = Some(now + cfg.verify_interval);
        let seen = records::read_back(cfg, &observed, self.checks.as_ref());
        let outcome = self.compare(cfg, cx, seen, now);
        // A write that corrects an edit restores the health checks we knew.
        if self.checks.is_none() || matches!(outcome, ReadOutcome::Fine) {
            self.checks = Some(HealthChecks::observed(cfg, &observed));
        }
        let current = self.current;
        cx.report(|s| s.weights = current);
        self.share.send_replace(current.map_or(0.0, Weights::cloud_share));
        Ok(outcome)
    }

    /// What the records read back ask for.
    fn compare(&mut self, cfg: &DnsConfig, cx: &Cx, seen: ReadBack, now: Instant) -> ReadOutcome {
        let first = self.written.is_none() && self.current.is_none();
        match seen {
            ReadBack::Missing => {
                let w = self.current.unwrap_or(if self.signals.borrow().dr {
                    Weights::CLOUD_ONLY
                } else {
                    Weights::ONPREM_ONLY
                });
                tracing::info!("dns: records missing; creating them");
                ReadOutcome::Write(w, WeightReason::Reconcile)
            }
            ReadBack::Found(w) if first || Some(w) == self.written || cfg.dry_run => {
                self.current = Some(w);
                ReadOutcome::Fine
            }
            ReadBack::Found(w) => {
                self.external_edit(cfg, cx, Some(w), format!("weights changed to {w:?}"), cx.wall_time(now))
            }
            ReadBack::Foreign { weights, detail } if first => {
                tracing::info!(detail, "dns: records differ from the config; updating them");
                ReadOutcome::Write(weights.unwrap_or(Weights::ONPREM_ONLY), WeightReason::Reconcile)
            }
            ReadBack::Foreign { weights, detail } => self.external_edit(cfg, cx, weights, detail, cx.wall_time(now)),
        }
    }

    fn external_edit(
        &mut self,
        cfg: &DnsConfig,
        cx: &Cx,
        seen: Option<Weights>,
        detail: String,
        at: SystemTime,
    ) -> ReadOutcome {
        tracing::warn!(detail, policy = ?cfg.on_external_edit, "dns: records were edited outside Spillway");
        metrics::counter!(catalog::DNS_EXTERNAL_EDITS).increment(1);
        cx.report(|s| s.external_edit = Some((at, detail)));
        match (cfg.on_external_edit, seen) {
            (ExternalEdit::Respect, Some(w)) => {
                self.current = Some(w);
                self.written = Some(w);
                self.respected = Some(w);
                ReadOutcome::Fine
            }
            _ => ReadOutcome::Write(
                self.written.or(self.current).unwrap_or(Weights::ONPREM_ONLY),
                WeightReason::CorrectExternalEdit,
            ),
        }
    }

    /// UPSERTs both records in one batch, waits for INSYNC, reads back.
    async fn write(&mut self, cfg: &DnsConfig, cx: &mut Cx, w: Weights, reason: WeightReason) -> Result<(), AwsError> {
        let now = Instant::now();
        if cfg.dry_run {
            self.pretend_write(cfg, cx, w, reason, now);
            return Ok(());
        }
        if !self.fence.allows("ChangeResourceRecordSets", now) {
            return Ok(());
        }
        let info = self.upsert(cfg, cx, w, reason).await?;
        self.wrote(cx, w, reason, &info, now);
        let status = self.wait_insync(cfg, cx, &info).await?;
        cx.report(|s| {
            if let Some(c) = s.last_change.as_mut() {
                c.4 = status;
            }
        });
        if let ReadOutcome::Write(..) = self.read(cfg, cx, Instant::now()).await? {
            self.next_read = None;
        }
        Ok(())
    }

    fn pretend_write(&mut self, cfg: &DnsConfig, cx: &Cx, w: Weights, reason: WeightReason, now: Instant) {
        let from = self.current;
        tracing::info!(?from, to = ?w, reason = reason.as_str(), record = cfg.record.as_str(), "dry run: would UPSERT both weighted records");
        self.current = Some(w);
        self.planner.changed(now.into_std());
        cx.report(|s| s.weights = Some(w));
    }

    /// One `ChangeResourceRecordSets` with both records.
    async fn upsert(
        &self,
        cfg: &DnsConfig,
        cx: &mut Cx,
        w: Weights,
        reason: WeightReason,
    ) -> Result<ChangeInfo, AwsError> {
        let batch = records::batch(cfg, w, self.checks.as_ref().unwrap_or(&HealthChecks::default()));
        let comment = format!("spillway: {} (onprem {}, aws {})", reason.as_str(), w.onprem, w.aws);
        let (api, limiter, zone) = (&*self.api, &self.limiter, cfg.hosted_zone_id.as_str());
        let (batch, comment) = (&batch[..], comment.as_str());
        cx.call(|| async move {
            limiter.acquire().await;
            api.upsert(zone, batch, comment).await
        })
        .await
    }

    /// Records a submitted change: state, metrics, log, share, status.
    fn wrote(&mut self, cx: &Cx, w: Weights, reason: WeightReason, info: &ChangeInfo, now: Instant) {
        let from = self.current;
        self.planner.changed(now.into_std());
        self.written = Some(w);
        self.current = Some(w);
        metrics::counter!(catalog::DNS_CHANGES, "reason" => reason.as_str()).increment(1);
        for (record, weight) in [("onprem", w.onprem), ("aws", w.aws)] {
            metrics::gauge!(catalog::DNS_WEIGHT, "record" => record).set(f64::from(weight));
        }
        tracing::info!(?from, to = ?w, reason = reason.as_str(), change = info.id.as_str(), "dns weights changed");
        self.share.send_replace(w.cloud_share());
        let at = cx.wall_time(now);
        cx.report(|s| {
            s.weights = Some(w);
            s.changes += 1;
            s.last_change = Some((at, w, reason, info.id.clone(), info.status));
        });
    }

    /// Polls `GetChange` until INSYNC or `insync_timeout`.
    async fn wait_insync(&self, cfg: &DnsConfig, cx: &mut Cx, info: &ChangeInfo) -> Result<ChangeStatus, AwsError> {
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
                () = cx.shutdown().cancelled() => return Ok(status),
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            status = cx
                .call(|| async move {
                    limiter.acquire().await;
                    api.get_change(id).await
                })
                .await?;
        }
        Ok(status)
    }
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
