//! The coordination tick, driven by [`crate::control::runner`] every
//! `heartbeat_interval`: Query the own site's partition → write this
//! instance's heartbeat → acquire, renew or follow the site's lease
//! (conditional PutItem; pure decision in `policy.rs`) → publish the
//! [`Authority`], the peers' summed signals and what the DR machine needs
//! of the lease ([`LeaseDr`]: the site's DR state as last read, and this
//! instance's acknowledged lease writes) → look after the covered sites
//! (`takeover.rs`). The holder writes its DR state into every lease write
//! (a new holder first the state the lease carried: it continues the
//! site's), so a change reaches the followers within about two heartbeats;
//! the lease's condition fences it like every holder write.
//!
//! Invariants: a DynamoDB failure never ends the loop nor delays it past
//! the next heartbeat (each call is made once per tick; the next tick is
//! the retry), and it never extends the authority: a holder that cannot
//! renew is a follower from `act_until` on (the lease's local expiry less a
//! third), whether or not a tick runs, because the controllers compare
//! `act_until` with the clock themselves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::api::{CoordApi, LeaseCondition};
use super::policy::{self, Heartbeat, Lease, LeaseMode, OwnStep, SiteView, Timing};
use super::takeover::{CoverState, Takeover};
use crate::aws::AwsError;
use crate::burst::{DrState, LeaseAck};
use crate::config::CoordinationConfig;
use crate::control::runner::{Context, ControlLoop, LoopStatus, Report, Settings};
use crate::control::{rfc3339, Authority, ControlSignals, ErrorRecord};
use crate::telemetry::catalog;

/// Heartbeat items outlive their last write by this many `takeover_after`s (TTL).
const HEARTBEAT_TTL_FACTOR: u32 = 10;

/// What `/status` shows about coordination.
pub(crate) type CoordStatus = LoopStatus<CoordReport>;

/// One peer as its last heartbeat showed it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Peer {
    pub(crate) instance: String,
    pub(crate) age_ms: u64,
    pub(crate) signals: ControlSignals,
}

/// Coordination's own status fields.
#[derive(Debug, Clone, Default)]
pub(crate) struct CoordReport {
    pub(crate) site: String,
    pub(crate) instance: String,
    /// While holding: until when this instance may act (the controllers' fence).
    pub(crate) act_until: Option<Instant>,
    pub(crate) holder: Option<String>,
    pub(crate) version: Option<u64>,
    pub(crate) peers: Vec<Peer>,
    pub(crate) covers: BTreeMap<String, CoverState>,
    pub(crate) holder_changes: u64,
    /// The last failed call (DynamoDB, or a takeover's Route 53 / Auto Scaling call).
    pub(crate) aws_error: Option<ErrorRecord>,
    /// Ticks in a row with a failed call.
    pub(crate) failed_ticks: u32,
}

impl CoordReport {
    /// `holder`, `follower`, or `lost-site holder` (a follower at home holding another site).
    pub(crate) fn role(&self, now: Instant) -> &'static str {
        match () {
            _ if self.act_until.is_some_and(|t| now < t) => "holder",
            _ if self.covers.values().any(CoverState::held) => "lost-site holder",
            _ => "follower",
        }
    }
}

impl Report for CoordReport {
    fn to_json(&self) -> Value {
        let peers: Vec<Value> = self
            .peers
            .iter()
            .map(|p| {
                json!({"instance": p.instance, "age_ms": p.age_ms, "arrival_rps": p.signals.arrival_rps,
                       "spilled_rps": p.signals.spilled_rps, "dr": p.signals.dr, "mode": policy::mode_of(&p.signals),
                       "dr_state": p.signals.dr_state.as_str()})
            })
            .collect();
        let covers: serde_json::Map<String, Value> =
            self.covers.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
        json!({
            "role": self.role(Instant::now()), "site": self.site, "instance_id": self.instance, "holder": self.holder,
            "version": self.version, "holder_changes": self.holder_changes, "peers": peers, "covers": covers,
            "aws_error": self.aws_error.as_ref().map(ErrorRecord::to_json),
            "failed_ticks": self.failed_ticks,
        })
    }
}

/// The coordination loop's state. Build with [`CoordController::new`].
pub(crate) struct CoordController {
    api: Arc<dyn CoordApi>,
    takeover: Takeover,
    local: watch::Receiver<ControlSignals>,
    authority: watch::Sender<Authority>,
    peers: watch::Sender<(ControlSignals, usize)>,
    lease_dr: watch::Sender<LeaseDr>,
    hostname: String,
    /// `(last successful heartbeat, streak start)`, wall ms.
    streak: Option<(u64, u64)>,
    /// The version this instance holds and the DR state its lease carried when acquired.
    inherited: Option<(u64, Option<DrState>)>,
}

type Cx = Context<CoordReport>;

/// What the DR machine needs of the site's lease (`burst::DrSource`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LeaseDr {
    /// The lease as last read (every successful Query).
    pub(crate) read: Option<LeaseRead>,
    /// This instance's latest lease write that DynamoDB acknowledged.
    pub(crate) written: Option<LeaseWrite>,
}

/// The site's lease as one Query returned it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LeaseRead {
    /// The DR state it carries (`None`: no lease, or one without a state).
    pub(crate) state: Option<DrState>,
    pub(crate) holder: Option<String>,
    /// When the Query was asked (a slow answer is not fresher than its question).
    pub(crate) read_at: std::time::Instant,
}

/// One acknowledged write of the own site's lease.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LeaseWrite {
    pub(crate) version: u64,
    /// The DR state the lease carried when this version was acquired.
    pub(crate) inherited: Option<DrState>,
    pub(crate) ack: LeaseAck,
}

pub(crate) fn timing(cfg: &CoordinationConfig) -> Timing {
    Timing {
        heartbeat: cfg.heartbeat_interval,
        lease: cfg.lease_duration,
        takeover_after: cfg.takeover_after,
        handback_after: cfg.handback_after,
    }
}

pub(crate) fn wall_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ControlLoop for CoordController {
    type Config = CoordinationConfig;
    type Report = CoordReport;

    fn settings(cfg: &CoordinationConfig) -> Settings {
        Settings { enabled: cfg.enabled, dry_run: false, interval: cfg.heartbeat_interval, sample_every: None }
    }

    async fn tick(&mut self, cfg: &CoordinationConfig, cx: &mut Cx, now: Instant) -> Result<(), AwsError> {
        let me = self.instance(cfg).to_owned();
        cx.report(|s| (s.site, s.instance) = (cfg.site.clone(), me.clone()));
        let result = self.own_site(cfg, &me, cx, now).await;
        self.step_down_if_expired(cfg, cx, Instant::now());
        let holding = self.authority.borrow().may_write(Instant::now());
        // Covered sites get a third of a lease per tick at most (a stalled
        // Route 53 must not hold back the next renewal); unfinished writes
        // are retried at the next heartbeat.
        let budget = timing(cfg).margin();
        let cover =
            tokio::time::timeout(budget, self.takeover.tick(cfg, &me, holding, &*self.api, cx)).await.unwrap_or_else(
                |_| Err(AwsError::Unavailable { api: "takeover", message: format!("not done within {budget:?}") }),
            );
        let result = result.and(cover);
        let at = cx.wall_time(now);
        cx.report(|s| match &result {
            Ok(()) => s.failed_ticks = 0,
            Err(e) => {
                s.failed_ticks += 1;
                s.aws_error = Some(ErrorRecord::new(at, e));
            }
        });
        if let Err(e) = &result {
            tracing::warn!(api = e.api(), kind = e.kind(), "coordination: {e}; next attempt at the next heartbeat");
        }
        // The next heartbeat is the retry: no backoff past the interval.
        Ok(())
    }

    fn failed(&mut self, err: &AwsError, delay: Duration) {
        tracing::warn!(api = err.api(), kind = err.kind(), ?delay, "coordination: {err}");
    }

    fn stopped(&self) {
        // A process handing over to its successor (same instance id) or
        // shutting down acts no longer: the successor renews the lease.
        self.authority.send_replace(Authority::Follower);
        tracing::info!("coordination stopped");
    }
}

impl CoordController {
    pub(crate) fn new(
        api: Arc<dyn CoordApi>,
        takeover: Takeover,
        local: watch::Receiver<ControlSignals>,
        authority: watch::Sender<Authority>,
        peers: watch::Sender<(ControlSignals, usize)>,
        lease_dr: watch::Sender<LeaseDr>,
    ) -> Self {
        Self { api, takeover, local, authority, peers, lease_dr, hostname: hostname(), streak: None, inherited: None }
    }

    fn instance<'a>(&'a self, cfg: &'a CoordinationConfig) -> &'a str {
        cfg.instance_id.as_deref().unwrap_or(&self.hostname)
    }

    /// Query, heartbeat, lease step, publish.
    async fn own_site(
        &mut self,
        cfg: &CoordinationConfig,
        me: &str,
        cx: &mut Cx,
        now: Instant,
    ) -> Result<(), AwsError> {
        let t = timing(cfg);
        let (table, site) = (cfg.table.as_str(), cfg.site.as_str());
        // Stamped before the call: a slow answer is not fresher than its question.
        let asked = std::time::Instant::now();
        let view = once(self.api.query_site(table, site)).await?;
        let now_ms = wall_ms(cx.wall_time(now));
        self.publish_peers(cx, &view, me, &t, now_ms);
        let read = LeaseRead {
            state: view.lease.as_ref().and_then(|l| l.dr_state),
            holder: view.lease.as_ref().map(|l| l.holder.clone()),
            read_at: asked,
        };
        self.lease_dr.send_modify(|d| d.read = Some(read));
        let heartbeat = self.heartbeat(cfg, me, cx).await;
        self.lease_step(cfg, me, &view, cx).await?;
        heartbeat
    }

    async fn heartbeat(&mut self, cfg: &CoordinationConfig, me: &str, cx: &mut Cx) -> Result<(), AwsError> {
        let now_ms = wall_ms(cx.wall_time(Instant::now()));
        let streak_since_ms = policy::streak_start(self.streak, now_ms, cfg.lease_duration);
        let signals = self.local.borrow().clone();
        let hb = Heartbeat { instance: me.to_owned(), at_ms: now_ms, streak_since_ms, signals };
        let ttl = cfg.takeover_after.saturating_mul(HEARTBEAT_TTL_FACTOR).as_secs().max(3600);
        once(self.api.put_heartbeat(&cfg.table, &cfg.site, &hb, ttl)).await?;
        self.streak = Some((now_ms, streak_since_ms));
        Ok(())
    }

    /// Acquires, renews or follows the own site's lease, and publishes the authority.
    async fn lease_step(
        &mut self,
        cfg: &CoordinationConfig,
        me: &str,
        view: &SiteView,
        cx: &mut Cx,
    ) -> Result<(), AwsError> {
        let sent = Instant::now();
        let now_ms = wall_ms(cx.wall_time(sent));
        let step = policy::own_step(me, view, now_ms);
        let (version, condition) = match step {
            OwnStep::Follow => {
                let holder = view.lease.as_ref().map(|l| l.holder.clone());
                self.become_follower(cfg, cx, holder);
                return Ok(());
            }
            OwnStep::Acquire { seen: None } => (1, LeaseCondition::Absent),
            OwnStep::Acquire { seen: Some(v) } => (v + 1, LeaseCondition::Expired { seen: v, now_ms }),
            OwnStep::Renew { version } => (version, LeaseCondition::Held { holder: me.to_owned(), version }),
        };
        // A new holder continues the site's DR state (the lease's, when it
        // carries one) and writes it until its own machine has taken it
        // (`dr_synced`); from then on, its machine's state. A restarted
        // process that finds its own unexpired lease (same instance id) is
        // a new holder too.
        let (local, synced) = {
            let l = self.local.borrow();
            (l.dr_state, l.dr_synced == Some(version))
        };
        let inherited = match (step, self.inherited) {
            (OwnStep::Renew { .. }, Some((v, state))) if v == version => state,
            _ => view.lease.as_ref().and_then(|l| l.dr_state),
        };
        let dr_state = match inherited {
            Some(s) if !synced => s,
            _ => local,
        };
        let lease = Lease {
            holder: me.to_owned(),
            holder_site: cfg.site.clone(),
            version,
            renewed_ms: now_ms,
            expires_ms: now_ms + ms(cfg.lease_duration),
            mode: LeaseMode::Normal,
            dr_state: Some(dr_state),
        };
        let sent_at = std::time::Instant::now();
        if once(self.api.put_lease(&cfg.table, &cfg.site, &lease, &condition)).await? {
            let act_until = sent + cfg.lease_duration - timing(cfg).margin();
            self.inherited = Some((version, inherited));
            let ack = LeaseAck { state: dr_state, sent: sent_at, received: std::time::Instant::now() };
            // Before the authority: the DR machine's first tick as holder sees what it inherits.
            self.lease_dr.send_modify(|d| d.written = Some(LeaseWrite { version, inherited, ack }));
            self.become_holder(cfg, cx, me, version, act_until);
        } else {
            tracing::info!(site = cfg.site.as_str(), ?step, "coordination: lease write refused (another instance won)");
            self.become_follower(cfg, cx, None);
        }
        Ok(())
    }

    fn become_holder(&mut self, cfg: &CoordinationConfig, cx: &Cx, me: &str, version: u64, act_until: Instant) {
        let was = self.authority.borrow().version();
        self.authority.send_replace(Authority::Holder { version, act_until });
        metrics::gauge!(catalog::COORD_IS_HOLDER).set(1.0);
        let changed = was != Some(version);
        if changed {
            metrics::counter!(catalog::COORD_HOLDER_CHANGES, "site" => cfg.site.clone()).increment(1);
            tracing::info!(site = cfg.site.as_str(), version, instance = me, "coordination: holding the site's lease");
        }
        cx.report(|s| {
            s.act_until = Some(act_until);
            s.holder = Some(me.to_owned());
            s.version = Some(version);
            s.holder_changes += u64::from(changed);
        });
    }

    fn become_follower(&mut self, cfg: &CoordinationConfig, cx: &Cx, holder: Option<String>) {
        let was_holder = self.authority.borrow().version().is_some();
        self.authority.send_replace(Authority::Follower);
        metrics::gauge!(catalog::COORD_IS_HOLDER).set(0.0);
        if was_holder {
            metrics::counter!(catalog::COORD_HOLDER_CHANGES, "site" => cfg.site.clone()).increment(1);
            tracing::warn!(site = cfg.site.as_str(), ?holder, "coordination: lost the site's lease; following");
        }
        cx.report(|s| {
            s.act_until = None;
            s.holder_changes += u64::from(was_holder);
            if holder.is_some() {
                s.holder = holder;
            }
        });
    }

    /// A holder past `act_until` (renewals failing) is a follower.
    fn step_down_if_expired(&mut self, cfg: &CoordinationConfig, cx: &Cx, now: Instant) {
        let a = *self.authority.borrow();
        if a.version().is_some() && !a.may_write(now) {
            tracing::warn!(
                site = cfg.site.as_str(),
                "coordination: could not renew before the lease's margin; stepping down"
            );
            self.become_follower(cfg, cx, None);
        }
    }

    fn publish_peers(&self, cx: &Cx, view: &SiteView, me: &str, t: &Timing, now_ms: u64) {
        let (sum, n) = policy::peers_sum(view, me, t, now_ms);
        self.peers.send_replace((sum, n));
        let peers: Vec<Peer> = view
            .heartbeats
            .iter()
            .filter(|h| h.instance != me)
            .map(|h| Peer {
                instance: h.instance.clone(),
                age_ms: now_ms.saturating_sub(h.at_ms),
                signals: h.signals.clone(),
            })
            .collect();
        let (holder, version) = match &view.lease {
            Some(l) => (Some(l.holder.clone()), Some(l.version)),
            None => (None, None),
        };
        cx.report(|s| {
            s.peers = peers;
            s.holder = holder;
            s.version = version;
        });
    }
}

/// One attempt of a DynamoDB call, counted when it fails.
pub(super) async fn once<T>(call: crate::aws::ApiFuture<'_, T>) -> Result<T, AwsError> {
    call.await.inspect_err(crate::aws::retry::record)
}

/// The host name (Linux), else `spillway-<pid>`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| format!("spillway-{}", std::process::id()))
}

/// Status time for a wall instant.
pub(super) fn at_json(t: SystemTime) -> String {
    rfc3339(t)
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
