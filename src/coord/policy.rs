//! Pure coordination policy: given what one Query on a site's partition
//! returned (its lease item and its instances' heartbeats) and `now` (wall
//! milliseconds since the epoch, the unit the table stores), decide what to
//! do with the lease, whether a lost site may be taken over or handed back,
//! and what the site's fresh heartbeats add up to.
//!
//! Invariants: nothing here reads a clock or does I/O; a lease is acquired
//! only when absent or expired, renewed only by its holder with its version
//! (the fencing token, which grows by one at every change of holder); a site
//! that never wrote to the table, or that heartbeated within
//! `takeover_after`, is never taken over; a stale heartbeat adds nothing.

use std::time::Duration;

use crate::burst::DrState;
use crate::control::ControlSignals;

/// Whether a lease is held by its own site or by a taker in lost mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseMode {
    Normal,
    Lost,
}

impl LeaseMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Lost => "lost",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "normal" => Some(Self::Normal),
            "lost" => Some(Self::Lost),
            _ => None,
        }
    }
}

/// The lease item (`sk = "lease"`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lease {
    pub(crate) holder: String,
    pub(crate) holder_site: String,
    /// The fencing token.
    pub(crate) version: u64,
    /// When the holder last wrote it.
    pub(crate) renewed_ms: u64,
    /// Past this, anyone may acquire it (0: released).
    pub(crate) expires_ms: u64,
    pub(crate) mode: LeaseMode,
    /// The site's DR state as its holder last wrote it (the holder owns
    /// it; the site's other instances take it). In lost mode, the state the
    /// lost site's lease carried when it was taken over, kept unchanged: a
    /// taker does not decide the lost site's DR, it only carries it.
    pub(crate) dr_state: Option<DrState>,
}

/// One instance's heartbeat item (`sk = "hb#<instance>"`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Heartbeat {
    pub(crate) instance: String,
    pub(crate) at_ms: u64,
    /// Since when this instance has heartbeated without a gap (for hand-back).
    pub(crate) streak_since_ms: u64,
    pub(crate) signals: ControlSignals,
}

/// One site's partition as a Query returned it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SiteView {
    pub(crate) lease: Option<Lease>,
    pub(crate) heartbeats: Vec<Heartbeat>,
}

/// The intervals of `[coordination]` the policy needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Timing {
    pub(crate) heartbeat: Duration,
    pub(crate) lease: Duration,
    pub(crate) takeover_after: Duration,
    pub(crate) handback_after: Duration,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Timing {
    /// A heartbeat younger than this counts in the site's sum.
    pub(crate) fn fresh_ms(&self) -> u64 {
        ms(self.heartbeat).saturating_mul(2)
    }

    /// How long before expiry a holder stops acting (a third of the lease).
    pub(crate) fn margin(&self) -> Duration {
        self.lease / 3
    }
}

/// What to do with one's own site's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnStep {
    /// Absent (`seen: None`) or expired: try to take it with version `seen + 1`.
    Acquire { seen: Option<u64> },
    /// Ours: extend it, on condition that it still is ours at `version`.
    Renew { version: u64 },
    /// Someone else holds it and it has not expired.
    Follow,
}

/// The own site's lease step.
pub(crate) fn own_step(me: &str, view: &SiteView, now_ms: u64) -> OwnStep {
    match &view.lease {
        None => OwnStep::Acquire { seen: None },
        Some(l) if l.holder == me && l.mode == LeaseMode::Normal && l.expires_ms > 0 => {
            OwnStep::Renew { version: l.version }
        }
        Some(l) if l.expires_ms <= now_ms => OwnStep::Acquire { seen: Some(l.version) },
        Some(_) => OwnStep::Follow,
    }
}

/// Why a covered site is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchReason {
    /// This instance does not hold its own site's lease: its holder covers.
    NotOwnHolder,
    /// The site never wrote a lease: not known to be lost.
    NeverSeen,
    /// The site's lease is held and not expired.
    LeaseLive,
    /// The site heartbeated or renewed within `takeover_after`.
    RecentlyAlive,
}

impl WatchReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::NotOwnHolder => "not_own_holder",
            Self::NeverSeen => "never_seen",
            Self::LeaseLive => "lease_live",
            Self::RecentlyAlive => "recently_alive",
        }
    }
}

/// What to do about a site this instance may take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CoverStep {
    Watch(WatchReason),
    /// Lost for `takeover_after`: acquire its lease in lost mode (`seen + 1`).
    TakeOver {
        seen: u64,
    },
    /// Held by us in lost mode and the site is not back yet: renew.
    KeepLost {
        version: u64,
    },
    /// Held by us, and the site has heartbeated again for `handback_after`
    /// with its DR latch back to on-prem writes: release.
    HandBack {
        version: u64,
    },
}

/// The newest sign of life of a site: a heartbeat or its holder's renewal.
fn last_sign_ms(view: &SiteView) -> Option<u64> {
    let lease = view.lease.as_ref().filter(|l| l.mode == LeaseMode::Normal).map(|l| l.renewed_ms);
    view.heartbeats.iter().map(|h| h.at_ms).chain(lease).max()
}

/// Whether the site is back: one of its instances is heartbeating and has
/// been for `handback_after`. Its DR state does not matter: the lost-mode
/// lease carries it (copied at the takeover), the site's instances follow
/// it meanwhile, and its own next holder continues from it.
fn back_for(view: &SiteView, t: &Timing, now_ms: u64) -> bool {
    let fresh = || view.heartbeats.iter().filter(|h| now_ms.saturating_sub(h.at_ms) < t.fresh_ms());
    fresh().any(|h| now_ms.saturating_sub(h.streak_since_ms) >= ms(t.handback_after))
}

/// The step for a covered site. `own_holder`: this instance holds its own site's lease.
pub(crate) fn cover_step(me: &str, own_holder: bool, view: &SiteView, t: &Timing, now_ms: u64) -> CoverStep {
    let Some(lease) = &view.lease else {
        return CoverStep::Watch(if own_holder { WatchReason::NeverSeen } else { WatchReason::NotOwnHolder });
    };
    if lease.holder == me && lease.mode == LeaseMode::Lost && lease.expires_ms > 0 {
        return if back_for(view, t, now_ms) {
            CoverStep::HandBack { version: lease.version }
        } else {
            CoverStep::KeepLost { version: lease.version }
        };
    }
    if !own_holder {
        return CoverStep::Watch(WatchReason::NotOwnHolder);
    }
    if lease.expires_ms > now_ms {
        return CoverStep::Watch(WatchReason::LeaseLive);
    }
    match last_sign_ms(view) {
        // A lease handed back (lost mode, released) is no sign of life: the
        // site is lost again once its heartbeats are stale for takeover_after.
        Some(at) if now_ms.saturating_sub(at) < ms(t.takeover_after) => CoverStep::Watch(WatchReason::RecentlyAlive),
        _ => CoverStep::TakeOver { seen: lease.version },
    }
}

/// The start of an instance's heartbeat streak after a successful write at
/// `now_ms`: unchanged while the previous success is less than `lease` ago.
pub(crate) fn streak_start(previous: Option<(u64, u64)>, now_ms: u64, lease: Duration) -> u64 {
    match previous {
        Some((last_ok, since)) if now_ms.saturating_sub(last_ok) < ms(lease) => since,
        _ => now_ms,
    }
}

/// The sum of the fresh heartbeats of the site's other instances (`me` excluded).
pub(crate) fn peers_sum(view: &SiteView, me: &str, t: &Timing, now_ms: u64) -> (ControlSignals, usize) {
    let fresh = view.heartbeats.iter().filter(|h| h.instance != me && now_ms.saturating_sub(h.at_ms) < t.fresh_ms());
    let mut sum = ControlSignals { dr: true, ..ControlSignals::default() };
    let mut n = 0;
    for h in fresh {
        n += 1;
        add(&mut sum, &h.signals);
    }
    if n == 0 {
        sum.dr = false;
    }
    (sum, n)
}

/// `local` plus the peers' sum (`peers` instances): rates add up, capacities
/// add up where known, DR holds only when every instance reports it, DR
/// capacity is asked when any instance asks it, the cloud is healthy when
/// any instance finds it so.
pub(crate) fn combine(local: &ControlSignals, peers: &ControlSignals, n_peers: usize) -> ControlSignals {
    if n_peers == 0 {
        return local.clone();
    }
    let mut out = peers.clone();
    add(&mut out, local);
    out
}

fn add(sum: &mut ControlSignals, s: &ControlSignals) {
    sum.arrival_rps += finite(s.arrival_rps);
    sum.spilled_rps += finite(s.spilled_rps);
    sum.shed_rps += finite(s.shed_rps);
    sum.onprem_capacity_rps = match (sum.onprem_capacity_rps, s.onprem_capacity_rps.filter(|c| c.is_finite())) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
    sum.dr &= s.dr;
    // Raising the group early is safe: any instance's dr_pending or drill asks.
    sum.dr_capacity |= s.dr_capacity;
    sum.cloud_healthy |= s.cloud_healthy;
}

fn finite(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        0.0
    }
}

/// The mode a heartbeat reports.
pub(crate) fn mode_of(s: &ControlSignals) -> &'static str {
    match () {
        _ if s.dr => "dr",
        _ if s.spilled_rps > 0.0 => "spilling",
        _ => "normal",
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
