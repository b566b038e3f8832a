//! Covered sites (`[[coordination.cover]]`): every heartbeat, the holder of
//! its own site reads each covered site's partition and asks the pure
//! [`policy::cover_step`] whether that site is lost. Taking it over is a
//! conditional lease write in lost mode (version + 1); then, while the lease
//! is ours and within its margin, both of the site's records go to AWS in one
//! change batch (onprem 0 / aws 255, keeping the health checks they carry),
//! its group to `dr_capacity` (within the group's bounds), and one critical
//! `site_lost` notification is queued.
//! The site is handed back (lease released) once it has heartbeated again
//! for `handback_after`; its own holder's controllers take over from there.
//!
//! Invariants: a covered site is written only while this instance holds its
//! lease (`act_until`, checked right before each write); the writes are
//! retried at every heartbeat until both succeeded; `site_lost` is sent
//! once per loss (not again when another taker's lost-mode lease is taken
//! over after that taker died).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::api::{CoordApi, LeaseCondition};
use super::controller::{at_json, once, timing, wall_ms, CoordReport};
use super::policy::{self, CoverStep, Lease, LeaseMode, SiteView, WatchReason};
use crate::aws::AwsError;
use crate::config::Severity;
use crate::config::{CoordinationConfig, CoverConfig};
use crate::control::runner::Context;
use crate::dns::records::{self, HealthChecks};
use crate::dns::weights::Weights;
use crate::dns::DnsApi;
use crate::notifications::{Event, Kind, Notifier};
use crate::scale::ScalingApi;
use crate::telemetry::catalog;

/// What this instance knows about one covered site.
#[derive(Debug, Clone, Default)]
pub(crate) struct CoverState {
    /// The last step's reason, for status.
    pub(crate) step: &'static str,
    /// While ours in lost mode: the version and until when we may act.
    pub(crate) held: Option<(u64, Instant)>,
    pub(crate) records_written: bool,
    pub(crate) group_written: bool,
    pub(crate) taken_at: Option<SystemTime>,
}

impl CoverState {
    pub(crate) fn held(&self) -> bool {
        self.held.is_some()
    }

    fn may_write(&self, now: Instant) -> bool {
        self.held.is_some_and(|(_, until)| now < until)
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "step": self.step, "version": self.held.map(|h| h.0), "records_to_aws": self.records_written,
            "group_at_dr_capacity": self.group_written, "taken_at": self.taken_at.map(at_json),
        })
    }
}

/// The AWS clients a takeover writes with, and the notifier.
pub(crate) struct Takeover {
    scaling: Arc<dyn ScalingApi>,
    dns: Arc<dyn DnsApi>,
    notifier: Option<Notifier>,
    states: BTreeMap<String, CoverState>,
}

type Cx = Context<CoordReport>;

impl Takeover {
    pub(crate) fn new(scaling: Arc<dyn ScalingApi>, dns: Arc<dyn DnsApi>, notifier: Option<Notifier>) -> Self {
        Self { scaling, dns, notifier, states: BTreeMap::new() }
    }

    /// One pass over the covered sites; the first error is returned after all were tried.
    pub(super) async fn tick(
        &mut self,
        cfg: &CoordinationConfig,
        me: &str,
        own_holder: bool,
        api: &dyn CoordApi,
        cx: &mut Cx,
    ) -> Result<(), AwsError> {
        self.states.retain(|site, _| cfg.cover.iter().any(|c| &c.site == site));
        let mut result = Ok(());
        for cover in &cfg.cover {
            let r = self.site(cfg, cover, me, own_holder, api, cx).await;
            result = result.and(r);
        }
        self.publish(cx);
        result
    }

    /// Shows the covered sites' states in `/status`.
    fn publish(&self, cx: &mut Cx) {
        let states = self.states.clone();
        cx.report(|s| s.covers = states);
    }

    async fn site(
        &mut self,
        cfg: &CoordinationConfig,
        cover: &CoverConfig,
        me: &str,
        own_holder: bool,
        api: &dyn CoordApi,
        cx: &mut Cx,
    ) -> Result<(), AwsError> {
        let view = once(api.query_site(&cfg.table, &cover.site)).await?;
        let now_ms = wall_ms(cx.wall_time(Instant::now()));
        let step = policy::cover_step(me, own_holder, &view, &timing(cfg), now_ms);
        let state = self.states.entry(cover.site.clone()).or_default();
        match step {
            CoverStep::Watch(reason) => {
                state.step = reason.as_str();
                if state.held.take().is_some() {
                    tracing::warn!(site = cover.site.as_str(), "coordination: no longer holding the lost site's lease");
                }
                Ok(())
            }
            CoverStep::TakeOver { seen } => self.take_over(cfg, cover, me, &view, seen, api, cx).await,
            CoverStep::KeepLost { version } => {
                let lease = lost_lease(cfg, me, version, now_ms, carried(&view));
                let cond = LeaseCondition::Held { holder: me.to_owned(), version };
                let sent = Instant::now();
                let kept = once(api.put_lease(&cfg.table, &cover.site, &lease, &cond)).await?;
                let state = self.states.entry(cover.site.clone()).or_default();
                state.step = "holding_lost";
                state.held = kept.then(|| (version, sent + cfg.lease_duration - timing(cfg).margin()));
                self.apply(cover, cx).await
            }
            CoverStep::HandBack { version } => {
                let lease = Lease { expires_ms: 0, ..lost_lease(cfg, me, version, now_ms, carried(&view)) };
                let cond = LeaseCondition::Held { holder: me.to_owned(), version };
                once(api.put_lease(&cfg.table, &cover.site, &lease, &cond)).await?;
                tracing::info!(
                    site = cover.site.as_str(),
                    version,
                    "coordination: the lost site heartbeats again; handed back"
                );
                *state = CoverState { step: "handed_back", ..CoverState::default() };
                Ok(())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn take_over(
        &mut self,
        cfg: &CoordinationConfig,
        cover: &CoverConfig,
        me: &str,
        view: &SiteView,
        seen: u64,
        api: &dyn CoordApi,
        cx: &mut Cx,
    ) -> Result<(), AwsError> {
        let sent = Instant::now();
        let now_ms = wall_ms(cx.wall_time(sent));
        let lease = lost_lease(cfg, me, seen + 1, now_ms, carried(view));
        let cond = LeaseCondition::Expired { seen, now_ms };
        if !once(api.put_lease(&cfg.table, &cover.site, &lease, &cond)).await? {
            self.states.entry(cover.site.clone()).or_default().step = WatchReason::LeaseLive.as_str();
            return Ok(());
        }
        let last = view.heartbeats.iter().map(|h| h.at_ms).max();
        let state = self.states.entry(cover.site.clone()).or_default();
        *state = CoverState {
            step: "taken_over",
            held: Some((seen + 1, sent + cfg.lease_duration - timing(cfg).margin())),
            taken_at: Some(cx.wall_time(sent)),
            ..CoverState::default()
        };
        // Seen as taken over before the records and the group move, not a
        // tick later: whoever watches `/status` sees the takeover first.
        self.publish(cx);
        metrics::counter!(catalog::COORD_TAKEOVERS, "site" => cover.site.clone()).increment(1);
        // An expired lost-mode lease (not handed back): another taker died; the loss is not new.
        let continued = view.lease.as_ref().is_some_and(|l| l.mode == LeaseMode::Lost && l.expires_ms > 0);
        tracing::error!(
            site = cover.site.as_str(),
            version = seen + 1,
            ?last,
            continued,
            "coordination: site lost; taken over"
        );
        if let Some(n) = self.notifier.as_ref().filter(|_| !continued) {
            let summary = format!(
                "site {} lost: taken over by {me} ({}); DNS to AWS, group to DR capacity",
                cover.site, cfg.site
            );
            let details = json!({ "site": cover.site, "taken_by": me, "taker_site": cfg.site, "version": seen + 1,
                                  "auto_scaling_group": cover.auto_scaling_group, "dr_capacity": cover.dr_capacity });
            let event = Event::trigger(Kind::SiteLost, Severity::Critical, &cover.site, summary, SystemTime::now());
            n.send(event.with_details(details));
        }
        self.apply(cover, cx).await
    }

    /// Both records to AWS and the group to DR capacity, each while the lease is ours.
    async fn apply(&mut self, cover: &CoverConfig, cx: &mut Cx) -> Result<(), AwsError> {
        let state = self.states.entry(cover.site.clone()).or_default();
        if !state.records_written && state.may_write(Instant::now()) {
            // UPSERT replaces the whole set: keep the health checks the records carry.
            let d = &cover.dns;
            let (zone, name, rtype) = (d.hosted_zone_id.as_str(), d.record.as_str(), d.record_type.as_str());
            let observed = cx.call(|| self.dns.list_records(zone, name, rtype)).await?;
            let batch = records::batch(d, Weights::CLOUD_ONLY, &HealthChecks::observed(d, &observed));
            let comment = format!("spillway: site {} lost (onprem 0, aws 255)", cover.site);
            let still = self.states.get(&cover.site).is_some_and(|s| s.may_write(Instant::now()));
            if !still {
                return Ok(());
            }
            cx.call(|| self.dns.upsert(zone, &batch, &comment)).await?;
            tracing::warn!(
                site = cover.site.as_str(),
                record = cover.dns.record.as_str(),
                "lost site's records set to AWS"
            );
            self.states.entry(cover.site.clone()).or_default().records_written = true;
        }
        let state = self.states.entry(cover.site.clone()).or_default();
        if !state.group_written && state.may_write(Instant::now()) {
            let group = cover.auto_scaling_group.as_str();
            let g = cx.call(|| self.scaling.describe_group(group)).await?;
            let desired = cover.dr_capacity.clamp(g.min, g.max.max(g.min));
            let still = self.states.get(&cover.site).is_some_and(|s| s.may_write(Instant::now()));
            if still && desired != g.desired {
                cx.call(|| self.scaling.set_desired_capacity(group, desired)).await?;
            }
            tracing::warn!(site = cover.site.as_str(), group, desired, "lost site's group at DR capacity");
            self.states.entry(cover.site.clone()).or_default().group_written = still;
        }
        Ok(())
    }
}

/// The lost site's DR state as its lease carries it: every lost-mode write
/// keeps it, so the site's instances follow it and its next holder
/// continues from it.
fn carried(view: &SiteView) -> Option<crate::burst::DrState> {
    view.lease.as_ref().and_then(|l| l.dr_state)
}

fn lost_lease(
    cfg: &CoordinationConfig,
    me: &str,
    version: u64,
    now_ms: u64,
    dr_state: Option<crate::burst::DrState>,
) -> Lease {
    Lease {
        holder: me.to_owned(),
        holder_site: cfg.site.clone(),
        version,
        renewed_ms: now_ms,
        expires_ms: now_ms + u64::try_from(cfg.lease_duration.as_millis()).unwrap_or(u64::MAX),
        mode: LeaseMode::Lost,
        dr_state,
    }
}
