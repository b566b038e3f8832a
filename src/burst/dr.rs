//! Disaster recovery as a pure state machine: where the site's writes go.
//!
//! Four states. `Normal`: everything as the spill policy says. `DrPending`
//! (confirm mode, on-prem declared lost): reads go to the cloud, writes are
//! refused read-only, the group is raised to `dr_capacity`, DNS does not
//! move. `DrActive`: everything goes to the cloud (its database is the
//! primary). `FailbackPending`: the failback signal has been seen but not
//! held for `failback_after`; writes stay in the cloud, reads may return
//! on-prem (pinned clients stay with their writes).
//!
//! Invariants (tested exhaustively below): writes move to the cloud only by
//! an engage (an operator's command, the cloud reporting its database
//! promoted, or an outage in `auto` mode), and move back only by the latch
//! (an operator's failback, or the failback signal held for
//! `failback_after`); probes alone never move writes back; every change is
//! one [`DrTransition`] with a [`DrReason`]. Time comes in as `now`.

use std::time::{Duration, Instant};

/// Where the site stands; the discriminant is what the live atomic and the
/// `spillway_dr_state` gauge hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DrState {
    #[default]
    Normal = 0,
    DrPending = 1,
    DrActive = 2,
    FailbackPending = 3,
}

impl DrState {
    pub const ALL: [DrState; 4] = [DrState::Normal, DrState::DrPending, DrState::DrActive, DrState::FailbackPending];

    pub fn as_str(self) -> &'static str {
        match self {
            DrState::Normal => "normal",
            DrState::DrPending => "dr_pending",
            DrState::DrActive => "dr_active",
            DrState::FailbackPending => "failback_pending",
        }
    }

    /// The state an atomic holds (unknown codes read as `Normal`).
    pub fn from_code(code: u8) -> DrState {
        match code {
            1 => DrState::DrPending,
            2 => DrState::DrActive,
            3 => DrState::FailbackPending,
            _ => DrState::Normal,
        }
    }

    /// Whether writes go to the cloud in this state.
    pub fn writes_in_cloud(self) -> bool {
        matches!(self, DrState::DrActive | DrState::FailbackPending)
    }
}

/// How on-prem's loss is handled (`dr.engage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngageMode {
    /// The outage moves writes at once (the old behaviour).
    Auto,
    /// The outage enters `DrPending`; writes wait for an engage.
    Confirm,
}

/// Why the state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrReason {
    /// The process started (no transition yet).
    Start,
    /// On-prem's probes agreed for `disaster_after` that it is unreachable.
    OnpremLost,
    /// On-prem answered its probes again before writes moved.
    OnpremRecovered,
    /// `POST /dr/engage`.
    OperatorEngage,
    /// The cloud's probe reported its database promoted.
    CloudPromoted,
    /// The failback signal (on-prem primary; in `auto`, on-prem healthy) appeared.
    FailbackSignal,
    /// The failback signal went away before `failback_after`.
    FailbackInterrupted,
    /// The failback signal held for `failback_after`.
    FailbackHeld,
    /// `POST /dr/failback`.
    OperatorFailback,
    /// The site's state as its coordination lease carries it, taken over
    /// by this instance (a follower's DR state is the holder's; a new holder
    /// continues from the state the lease carried when it took it).
    SiteHolder,
}

impl DrReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DrReason::Start => "start",
            DrReason::OnpremLost => "onprem_lost",
            DrReason::OnpremRecovered => "onprem_recovered",
            DrReason::OperatorEngage => "operator_engage",
            DrReason::CloudPromoted => "cloud_promoted",
            DrReason::FailbackSignal => "failback_signal",
            DrReason::FailbackInterrupted => "failback_interrupted",
            DrReason::FailbackHeld => "failback_held",
            DrReason::OperatorFailback => "operator_failback",
            DrReason::SiteHolder => "site_holder",
        }
    }
}

/// What one tick saw of both sites.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrObservation {
    /// On-prem's outage is declared (`burst::OutageTimer` over the active probes).
    pub onprem_lost: bool,
    /// On-prem's active probes find every primary pool reachable.
    pub onprem_reachable: bool,
    /// On-prem's probe reports its database primary (`role_header`).
    pub onprem_primary: bool,
    /// The cloud pool has an endpoint that can serve.
    pub cloud_ok: bool,
    /// The cloud's probe reports its database promoted (`role_header`).
    pub cloud_promoted: bool,
}

/// The settings the machine reads (`[dr]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrPolicy {
    pub engage: EngageMode,
    pub failback_after: Duration,
}

/// An operator's call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrCommand {
    Engage,
    Failback,
}

/// Why an operator's call was refused (a 409 with this reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DrRefusal {
    #[error("no cloud endpoint can serve: engaging would send every write to an empty pool")]
    CloudUnavailable,
    #[error("on-prem has no probe-healthy endpoint: failing back would refuse every write")]
    OnpremUnreachable,
    #[error("writes are not in the cloud: there is nothing to fail back")]
    NotEngaged,
    #[error("this instance does not hold the site's coordination lease, whose holder owns the site's DR state: call the holder")]
    NotHolder,
}

impl DrRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            DrRefusal::CloudUnavailable => "cloud_unavailable",
            DrRefusal::OnpremUnreachable => "onprem_unreachable",
            DrRefusal::NotEngaged => "not_engaged",
            DrRefusal::NotHolder => "not_holder",
        }
    }
}

/// Where this instance's DR state comes from, once per tick (see
/// `DrMachine::tick`). Without `[coordination]` the machine decides alone;
/// with it, only the holder of the site's lease decides, and the others
/// take the state the lease carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrSource {
    /// No coordination: this instance is the site.
    Alone,
    /// This instance holds the site's lease at `version`, which carried
    /// `inherited` when it was acquired (`None`: no state, e.g. a new
    /// site); `published`: the latest lease write under this version that
    /// DynamoDB acknowledged.
    Holder { version: u64, inherited: Option<DrState>, published: Option<LeaseAck> },
    /// Not the holder; the lease as this instance last read it (recently
    /// enough to follow): the state it carries (`None`: no lease, or one
    /// written without a state).
    Lease { state: Option<DrState> },
    /// Not the holder, and no read of the lease recent enough to follow:
    /// the state is kept and writes are refused.
    Stale,
}

impl DrSource {
    /// Whether this instance may decide the site's DR state (and take the DR calls).
    pub fn decides(&self) -> bool {
        matches!(self, DrSource::Alone | DrSource::Holder { .. })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            DrSource::Alone => "alone",
            DrSource::Holder { .. } => "holder",
            DrSource::Lease { .. } => "lease",
            DrSource::Stale => "stale",
        }
    }
}

/// A lease write that DynamoDB acknowledged: the DR state it carried, when
/// it was sent and when the acknowledgement came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseAck {
    pub state: DrState,
    pub sent: Instant,
    pub received: Instant,
}

/// Why writes are refused although the state would let them through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteHold {
    /// The holder moved writes and no lease write carrying the move has
    /// been acknowledged yet: the site's other instances cannot know.
    Unpublished,
    /// The write fence after a move: the time the site's other instances
    /// take to see it.
    Fence,
    /// No read of the site's lease recent enough (DynamoDB unreachable):
    /// the holder may have moved writes meanwhile.
    NoLeaseRead,
}

impl WriteHold {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteHold::Unpublished => "unpublished",
            WriteHold::Fence => "fence",
            WriteHold::NoLeaseRead => "no_lease_read",
        }
    }
}

/// One change of state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrTransition {
    pub from: DrState,
    pub to: DrState,
    pub reason: DrReason,
}

/// The machine: its state, why, since when, and the failback hold.
#[derive(Clone, Debug)]
pub struct DrMachine {
    state: DrState,
    reason: DrReason,
    since: Instant,
    failback_since: Option<Instant>,
    /// When writes last changed site (by a decision or by following).
    writes_moved: Option<Instant>,
    /// When that move became known to the site: at once when it was taken
    /// from the lease; for the holder's own decision, when the first lease
    /// write carrying it (sent after it) was acknowledged. The write fence
    /// runs from here.
    published: Option<Instant>,
    /// The lease version whose inherited state this machine took (holder).
    synced: Option<u64>,
}

impl DrMachine {
    pub fn new(now: Instant) -> Self {
        DrMachine {
            state: DrState::Normal,
            reason: DrReason::Start,
            since: now,
            failback_since: None,
            writes_moved: None,
            published: None,
            synced: None,
        }
    }

    pub fn state(&self) -> DrState {
        self.state
    }

    /// The lease version whose inherited state this machine has taken.
    pub fn synced(&self) -> Option<u64> {
        self.synced
    }

    /// A machine that continues a predecessor process's state, in it since
    /// `since`. The failback latch starts over: a failback in progress waits
    /// its full `failback_after` again, never less.
    pub fn resume(state: DrState, since: Instant, now: Instant) -> Self {
        let failback_since = (state == DrState::FailbackPending).then_some(now);
        DrMachine {
            state,
            reason: DrReason::Start,
            since,
            failback_since,
            writes_moved: None,
            published: None,
            synced: None,
        }
    }

    /// Takes the site's state as its lease carries it (this instance
    /// follows, or continues as the new holder): one transition when it
    /// differs, none otherwise. A move of writes taken this way is known to
    /// the site already (it was read from the lease): the fence runs from now.
    pub fn follow(&mut self, state: DrState, now: Instant) -> Option<DrTransition> {
        if state == self.state {
            return None;
        }
        let failback_since = (state == DrState::FailbackPending).then_some(now);
        let moves = state.writes_in_cloud() != self.state.writes_in_cloud();
        let t = self.go(state, DrReason::SiteHolder, now);
        self.failback_since = failback_since;
        if moves {
            self.published = Some(now);
        }
        Some(t)
    }

    /// One tick under `source`, at most one transition: alone or as the
    /// holder the machine decides from `obs` (a new holder first takes the
    /// state the lease carried when it acquired it, so a restarted process
    /// never overwrites the site's state with a fresh `normal`); otherwise
    /// it takes the lease's state, or keeps its own when there is none to
    /// take.
    pub fn tick(
        &mut self,
        source: &DrSource,
        obs: &DrObservation,
        policy: &DrPolicy,
        now: Instant,
    ) -> Option<DrTransition> {
        match *source {
            DrSource::Alone => self.observe(obs, policy, now),
            DrSource::Holder { version, inherited, published } => {
                if let Some(ack) = published {
                    self.note_published(ack);
                }
                if self.synced != Some(version) {
                    self.synced = Some(version);
                    if let Some(t) = inherited.and_then(|s| self.follow(s, now)) {
                        return Some(t);
                    }
                }
                self.observe(obs, policy, now)
            }
            // `synced` stays: a holder that lost its authority for a moment
            // and renews the same version must not take the acquisition's
            // state again (versions only grow; a new one is a new acquisition).
            DrSource::Lease { state } => state.and_then(|s| self.follow(s, now)),
            DrSource::Stale => None,
        }
    }

    /// A lease write was acknowledged: it publishes the last move of writes
    /// if it carried the state's side of the move and was sent after it.
    pub fn note_published(&mut self, ack: LeaseAck) {
        let Some(moved) = self.writes_moved else { return };
        if self.published.is_none() && ack.sent >= moved && ack.state.writes_in_cloud() == self.state.writes_in_cloud()
        {
            self.published = Some(ack.received);
        }
    }

    /// Whether writes are refused now although the state lets them through,
    /// and why. Alone (`fence: None`) never. Coordinated, after writes
    /// changed site: until the move is published, then for `fence` (the
    /// time the site's other instances take to see it, so no write reaches
    /// the new database while another instance still writes to the old one).
    pub fn writes_held(&self, fence: Option<Duration>, now: Instant) -> Option<WriteHold> {
        let fence = fence?;
        self.writes_moved?;
        match self.published {
            None => Some(WriteHold::Unpublished),
            Some(at) if now.saturating_duration_since(at) < fence => Some(WriteHold::Fence),
            Some(_) => None,
        }
    }

    pub fn reason(&self) -> DrReason {
        self.reason
    }

    /// When the current state began.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Time left before the failback signal completes the latch, in `FailbackPending`.
    pub fn failback_in(&self, policy: &DrPolicy, now: Instant) -> Option<Duration> {
        let since = self.failback_since.filter(|_| self.state == DrState::FailbackPending)?;
        Some(policy.failback_after.saturating_sub(now.saturating_duration_since(since)))
    }

    /// One tick's observation; at most one transition.
    pub fn observe(&mut self, obs: &DrObservation, policy: &DrPolicy, now: Instant) -> Option<DrTransition> {
        let signal = match policy.engage {
            EngageMode::Auto => obs.onprem_reachable,
            EngageMode::Confirm => obs.onprem_primary,
        };
        let next = match self.state {
            DrState::Normal if obs.onprem_lost && obs.cloud_ok => match policy.engage {
                EngageMode::Auto => Some((DrState::DrActive, DrReason::OnpremLost)),
                EngageMode::Confirm => Some((DrState::DrPending, DrReason::OnpremLost)),
            },
            DrState::DrPending if obs.cloud_promoted => Some((DrState::DrActive, DrReason::CloudPromoted)),
            DrState::DrPending if obs.onprem_reachable => Some((DrState::Normal, DrReason::OnpremRecovered)),
            DrState::DrActive if signal => {
                self.failback_since = Some(now);
                Some((DrState::FailbackPending, DrReason::FailbackSignal))
            }
            DrState::FailbackPending if !signal => Some((DrState::DrActive, DrReason::FailbackInterrupted)),
            DrState::FailbackPending => {
                let held =
                    self.failback_since.is_none_or(|t| now.saturating_duration_since(t) >= policy.failback_after);
                held.then_some((DrState::Normal, DrReason::FailbackHeld))
            }
            _ => None,
        };
        next.map(|(to, reason)| self.go(to, reason, now))
    }

    /// An operator's call, judged against the latest observation.
    pub fn command(
        &mut self,
        cmd: DrCommand,
        obs: &DrObservation,
        now: Instant,
    ) -> Result<Option<DrTransition>, DrRefusal> {
        match (cmd, self.state) {
            (DrCommand::Engage, DrState::DrActive) => Ok(None),
            (DrCommand::Engage, _) if !obs.cloud_ok => Err(DrRefusal::CloudUnavailable),
            (DrCommand::Engage, _) => Ok(Some(self.go(DrState::DrActive, DrReason::OperatorEngage, now))),
            (DrCommand::Failback, DrState::Normal | DrState::DrPending) => Err(DrRefusal::NotEngaged),
            (DrCommand::Failback, _) if !obs.onprem_reachable => Err(DrRefusal::OnpremUnreachable),
            (DrCommand::Failback, _) => Ok(Some(self.go(DrState::Normal, DrReason::OperatorFailback, now))),
        }
    }

    fn go(&mut self, to: DrState, reason: DrReason, now: Instant) -> DrTransition {
        let from = self.state;
        debug_assert_ne!(from, to, "a transition changes the state");
        if to != DrState::FailbackPending {
            self.failback_since = None;
        }
        if from.writes_in_cloud() != to.writes_in_cloud() {
            self.writes_moved = Some(now);
            self.published = None;
        }
        self.state = to;
        self.reason = reason;
        self.since = now;
        DrTransition { from, to, reason }
    }
}

#[cfg(test)]
#[path = "dr_tests.rs"]
mod tests;

/// The RPO guard of one cloud pool: whether its replicas' lag puts the
/// recovery point at risk (`dr.rpo_budget`). An edge detector, so a lag
/// over the budget is one event and its return under it one resolve; an
/// unknown lag (no answer, no header) changes nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RpoGuard {
    at_risk: bool,
}

impl RpoGuard {
    /// One observation of the worst lag; `Some(at_risk)` when that changed.
    pub fn observe(&mut self, lag: Option<Duration>, budget: Duration) -> Option<bool> {
        let at_risk = lag.map(|l| l > budget)?;
        (at_risk != self.at_risk).then(|| {
            self.at_risk = at_risk;
            at_risk
        })
    }

    pub fn at_risk(&self) -> bool {
        self.at_risk
    }
}
