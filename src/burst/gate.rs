//! The spill gate: window → [`Pressure`], pressure over time → [`SpillPhase`]
//! (hysteresis), and the per-request [`decide`].
//!
//! # Hysteresis
//! [`SpillController`] integrates pressure over time. In `Calm`, each
//! pressured observation adds the time since the previous observation to a
//! score and each calm one takes away twice that; `Spilling` starts when the
//! score reaches `enter_after`. In `Spilling` the roles swap: calm adds, pressure
//! takes away twice, and `Calm` returns when the score reaches `exit_after`.
//! So a phase never changes before `enter_after` (resp. `exit_after`) has
//! passed; strictly alternating pressure never enters; and a signal pressured
//! less than two thirds of the time drifts back toward zero, entering only on
//! a rare net run of `enter_after` of pressure, after which it stays until
//! calm clearly dominates (the same holds in reverse for leaving).
//! One observation counts for at most [`MAX_STEP`] (a stalled ticker does not
//! turn one window into a long pressure).
//!
//! # The decision, in order
//! 0. **Writes held** (`writes_held`, see `burst::WriteHold`): a write gets
//!    `ReadOnly`; a read goes on to the rules below.
//! 1. **Disaster recovery** (`dr`, the site's [`DrState`], see `burst::dr`).
//!    `DrPending`: a write gets `ReadOnly` (503, nothing moves before an
//!    engage); a read goes to a healthy cloud (`Cloud(DrPending)`).
//!    `DrActive`: every request goes to the cloud (`Cloud(DisasterRecovery)`),
//!    writes even when the cloud has no healthy endpoint (a 503 there, never
//!    the old primary). `FailbackPending`: writes as in `DrActive`; a read
//!    returns on-prem by the ordinary rules when on-prem serves and the
//!    client is not pinned (its writes went to the cloud). Without a healthy
//!    cloud, reads follow the ordinary rules below; writes never do.
//! 2. **Primary down, DR not declared** (no endpoint serving, e.g. during
//!    the `disaster_after` hold): a request that may spill, to an available
//!    cloud, goes there (`Cloud(PrimaryDown)`); any other stays
//!    (`Primary(PrimaryDown)`: a 503 from the empty pool). A write never
//!    reaches the cloud's database before DR is declared.
//! 3. **Under the limit** (`in_flight ≤ min(limit, max_in_flight)`) with
//!    nobody queued for the pool who ranks at least as high (`queue_ahead`:
//!    a newcomer does not take a slot ahead of the queue, `burst::shed`) →
//!    `Primary(UnderLimit)`. `in_flight` includes this request. **Behind
//!    the queue**: wherever a later rule would admit the request to the
//!    primary (rules 4, 5 and 6's "on-prem anyway") while a waiter ranking
//!    at least as high could take that slot — under the limit any waiter,
//!    over it a *hard* one (`hard_queue_ahead`: queued over the hard cap or
//!    behind the queue, so it may go up to `max_in_flight`) — it queues
//!    instead (`Queue(QueueAhead)`): no newcomer overtakes a waiter.
//! 4. Over the limit but not over the hard cap while the phase is `Calm` →
//!    `Primary(NotSpilling)`: pressure has not lasted `enter_after` yet.
//!    Over the hard cap (`in_flight > max_in_flight`) the request is treated as
//!    if spilling at once, whatever the phase.
//! 5. **Request eligibility**, checked in this order: the method may spill,
//!    the path is not `never_spill`, the client is not pinned after a write.
//!    An ineligible request stays (`Primary(MethodNotSpillable |
//!    NeverSpillPath | PinnedAfterWrite)`) while the pool is under its hard
//!    cap: writes and read-after-write reads belong on-prem. Two exceptions:
//!    over the hard cap it queues (`Queue(OverHardLimit)`: the cap is an
//!    admission ceiling no request bypasses, writes included), and a method
//!    outside RFC 9110's set queues too (`Queue(UnknownMethod)`: nobody
//!    relies on it, so it is the first shed).
//! 6. **Cloud availability**, in order: an overflow pool exists, it has a
//!    healthy endpoint, its replica lag is acceptable, it has room under
//!    its own limit (`cloud_room`: its adaptive limit and warm capacity,
//!    nobody queued for it). If one fails, the request *would have
//!    spilled* but cannot: with `shed_when_cloud_unavailable`, or over the
//!    hard cap, it is queued (`Queue(NoOverflowPool | CloudUnavailable |
//!    ReplicaLag | CloudFull)`: wait briefly for a primary slot — or, when
//!    the cloud is only full, a cloud slot — then 503 + Retry-After) rather
//!    than piling onto a drowning origin; otherwise it goes on-prem anyway
//!    (`Primary(` same reason `)`).
//! 7. Otherwise → `Cloud(OverHardLimit)` if over the hard cap, else
//!    `Cloud(OverLimit)`.
//!
//! Properties (tested): nothing spills or queues at or under the limit
//! with the primary up and outside DR; more in-flight never turns a `Cloud`
//! or `Queue` back into `Primary`; pinned clients, never-spill paths and
//! non-spillable methods are never sent to the cloud outside DR; nothing
//! is admitted to the primary over the hard cap.

use std::time::{Duration, Instant};

use super::dr::DrState;
use super::signals::WindowStats;

/// Longest time one observation counts for in the hysteresis score.
pub const MAX_STEP: Duration = Duration::from_secs(1);

/// What a window says about the primary pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pressure {
    Calm,
    /// Demand exceeded the limit during the window.
    OverLimit,
    /// The sliding p99 exceeded the latency SLO.
    OverSlo,
}

impl Pressure {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Calm => "calm",
            Self::OverLimit => "over_limit",
            Self::OverSlo => "over_slo",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpillPhase {
    Calm,
    Spilling,
}

impl SpillPhase {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Calm => "calm",
            Self::Spilling => "spilling",
        }
    }
}

/// Classify a window: `OverLimit` when the peak (or current) in-flight went
/// above `limit`, else `OverSlo` when the sliding p99 is above the SLO, else
/// `Calm`. The gate admits `limit` requests, so a peak of `limit + 1` means
/// at least one arrival found the pool full.
pub fn pressure(window: &WindowStats, limit: u32, latency_slo: Duration) -> Pressure {
    if window.max_in_flight.max(window.in_flight) > limit {
        Pressure::OverLimit
    } else if window.p99_sliding > latency_slo {
        Pressure::OverSlo
    } else {
        Pressure::Calm
    }
}

/// Spill hysteresis: see the module doc.
#[derive(Clone, Debug)]
pub struct SpillController {
    enter_after: Duration,
    exit_after: Duration,
    phase: SpillPhase,
    score: Duration,
    last: Option<Instant>,
    since: Option<Instant>,
}

impl SpillController {
    pub fn new(enter_after: Duration, exit_after: Duration) -> Self {
        Self { enter_after, exit_after, phase: SpillPhase::Calm, score: Duration::ZERO, last: None, since: None }
    }

    /// New thresholds (config reload); the phase and score are kept.
    pub fn set_thresholds(&mut self, enter_after: Duration, exit_after: Duration) {
        self.enter_after = enter_after;
        self.exit_after = exit_after;
    }

    /// Called once per tick with that window's pressure.
    pub fn observe(&mut self, pressure: Pressure, now: Instant) -> SpillPhase {
        let step = self.last.map_or(Duration::ZERO, |t| now.saturating_duration_since(t)).min(MAX_STEP);
        self.last = Some(now);
        let pressed = pressure != Pressure::Calm;
        let (toward, threshold, next) = match self.phase {
            SpillPhase::Calm => (pressed, self.enter_after, SpillPhase::Spilling),
            SpillPhase::Spilling => (!pressed, self.exit_after, SpillPhase::Calm),
        };
        if toward {
            self.score += step;
            if self.score >= threshold {
                self.phase = next;
                self.score = Duration::ZERO;
                self.since = Some(now);
            }
        } else {
            self.score = self.score.saturating_sub(step * 2);
        }
        self.phase
    }

    pub fn phase(&self) -> SpillPhase {
        self.phase
    }

    /// Continues in a predecessor's phase (a process upgrade), from `now`.
    pub fn resume(&mut self, phase: SpillPhase, now: Instant) {
        if phase != self.phase {
            self.phase = phase;
            self.score = Duration::ZERO;
            self.since = Some(now);
        }
    }

    /// When the current phase began (`None` before the first change).
    pub fn phase_since(&self) -> Option<Instant> {
        self.since
    }
}

/// When a primary pool's outage becomes disaster recovery: once its
/// active probes have found no endpoint reachable for `after` without a
/// break. A probe that answers again resets the clock. Passive failures
/// (answers from the application) never feed this.
#[derive(Clone, Debug, Default)]
pub struct OutageTimer {
    since: Option<Instant>,
}

impl OutageTimer {
    /// One observation; true when the outage has lasted `after`.
    pub fn observe(&mut self, reachable: bool, now: Instant, after: Duration) -> bool {
        if reachable {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(now);
        now.saturating_duration_since(since) >= after
    }

    /// Since when no endpoint has been reachable, if that is the case.
    pub fn since(&self) -> Option<Instant> {
        self.since
    }
}

/// Everything [`decide`] needs about one request; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateInputs {
    pub phase: SpillPhase,
    /// Primary pool in-flight including this request (what `begin()` returned).
    pub in_flight: u32,
    /// Current concurrency limit: `ConcurrencyLimit` (adaptive) or `SloLimit` (static).
    pub limit: u32,
    /// Hard cap: over it a request spills at once, whatever the phase.
    pub max_in_flight: u32,
    pub method_may_spill: bool,
    pub path_never_spills: bool,
    /// The client wrote within `pin_after_write`.
    pub pinned: bool,
    pub has_overflow: bool,
    /// The overflow pool has a healthy endpoint.
    pub cloud_healthy: bool,
    /// Replica lag known and under `max_replica_lag`, or no lag probe.
    pub replica_lag_ok: bool,
    /// The overflow pool is under its limit and warm-capacity cap with
    /// nobody queued for it (ignored in DR and with the primary down).
    pub cloud_room: bool,
    /// Requests ranking at least this one's are queued for a primary slot.
    pub queue_ahead: bool,
    /// Of them, some may take a slot up to the hard cap (they would have
    /// been admitted there had nobody been waiting): a newcomer that would
    /// take such a slot waits behind them (`QueueReason::QueueAhead`).
    pub hard_queue_ahead: bool,
    /// The primary pool has an endpoint serving now.
    pub primary_healthy: bool,
    /// The site's disaster-recovery state (`burst::dr`).
    pub dr: DrState,
    /// Writes are refused although `dr` would let them through
    /// (`burst::WriteHold`: a move of writes not yet known to the site's
    /// other instances, or no recent read of the site's lease).
    pub writes_held: bool,
    /// The request may change state (any method but GET, HEAD, OPTIONS, TRACE).
    pub write: bool,
    /// The method is one of RFC 9110's (GET, HEAD, POST, PUT, DELETE,
    /// CONNECT, OPTIONS, TRACE) or PATCH.
    pub method_known: bool,
    pub shed_when_cloud_unavailable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpillDecision {
    Primary(StayReason),
    Cloud(SpillReason),
    /// Wait briefly for a primary slot, then 503 + Retry-After.
    Queue(QueueReason),
    /// A write while DR waits for an engage (`dr_pending`): 503 with the
    /// read-only body and `Retry-After`.
    ReadOnly,
}

impl SpillDecision {
    /// Every decision [`decide`] can return (counters are registered for each).
    pub const ALL: [SpillDecision; 23] = [
        SpillDecision::Primary(StayReason::UnderLimit),
        SpillDecision::Cloud(SpillReason::OverLimit),
        SpillDecision::Primary(StayReason::NotSpilling),
        SpillDecision::Primary(StayReason::MethodNotSpillable),
        SpillDecision::Primary(StayReason::PinnedAfterWrite),
        SpillDecision::Cloud(SpillReason::OverHardLimit),
        SpillDecision::Cloud(SpillReason::DisasterRecovery),
        SpillDecision::Cloud(SpillReason::PrimaryDown),
        SpillDecision::Primary(StayReason::NeverSpillPath),
        SpillDecision::Primary(StayReason::NoOverflowPool),
        SpillDecision::Primary(StayReason::ReplicaLag),
        SpillDecision::Primary(StayReason::CloudUnavailable),
        SpillDecision::Primary(StayReason::PrimaryDown),
        SpillDecision::Queue(QueueReason::NoOverflowPool),
        SpillDecision::Queue(QueueReason::CloudUnavailable),
        SpillDecision::Queue(QueueReason::ReplicaLag),
        SpillDecision::Queue(QueueReason::OverHardLimit),
        SpillDecision::Queue(QueueReason::UnknownMethod),
        SpillDecision::Cloud(SpillReason::DrPending),
        SpillDecision::ReadOnly,
        SpillDecision::Primary(StayReason::CloudFull),
        SpillDecision::Queue(QueueReason::CloudFull),
        SpillDecision::Queue(QueueReason::QueueAhead),
    ];

    /// The target, as a metrics label: `primary`, `cloud` or `queue`.
    pub fn target(&self) -> &'static str {
        match self {
            Self::Primary(_) => "primary",
            Self::Cloud(_) => "cloud",
            Self::Queue(_) => "queue",
            Self::ReadOnly => "read_only",
        }
    }

    /// The reason, as a metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Primary(r) => r.as_str(),
            Self::Cloud(r) => r.as_str(),
            Self::Queue(r) => r.as_str(),
            Self::ReadOnly => "dr_pending",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StayReason {
    UnderLimit,
    /// Over the limit, but pressure has not lasted `enter_after` yet.
    NotSpilling,
    MethodNotSpillable,
    NeverSpillPath,
    PinnedAfterWrite,
    NoOverflowPool,
    ReplicaLag,
    /// Shedding disabled: the request overloads the primary.
    CloudUnavailable,
    /// No primary endpoint serves and the request may not leave (503).
    PrimaryDown,
    /// Shedding disabled and the cloud at its limit: the primary takes it.
    CloudFull,
}

impl StayReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::UnderLimit => "under_limit",
            Self::NotSpilling => "not_spilling",
            Self::MethodNotSpillable => "method_not_spillable",
            Self::NeverSpillPath => "never_spill_path",
            Self::PinnedAfterWrite => "pinned_after_write",
            Self::NoOverflowPool => "no_overflow_pool",
            Self::ReplicaLag => "replica_lag",
            Self::CloudUnavailable => "cloud_unavailable",
            Self::PrimaryDown => "primary_down",
            Self::CloudFull => "cloud_full",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpillReason {
    OverLimit,
    OverHardLimit,
    DisasterRecovery,
    /// No primary endpoint serves (DR not declared yet): a read leaves.
    PrimaryDown,
    /// DR waits for an engage: reads go to the cloud.
    DrPending,
}

impl SpillReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::OverLimit => "over_limit",
            Self::OverHardLimit => "over_hard_limit",
            Self::DisasterRecovery => "disaster_recovery",
            Self::PrimaryDown => "primary_down",
            Self::DrPending => "dr_pending",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueReason {
    NoOverflowPool,
    CloudUnavailable,
    ReplicaLag,
    /// Over the hard cap and not allowed to spill.
    OverHardLimit,
    /// A method outside RFC 9110's set, over the limit.
    UnknownMethod,
    /// The cloud is at its limit: wait for a slot on either side.
    CloudFull,
    /// It would take a primary slot that a request already waiting may
    /// have: it waits behind (no newcomer overtakes the queue).
    QueueAhead,
}

impl QueueReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NoOverflowPool => "no_overflow_pool",
            Self::CloudUnavailable => "cloud_unavailable",
            Self::ReplicaLag => "replica_lag",
            Self::OverHardLimit => "over_hard_limit",
            Self::UnknownMethod => "unknown_method",
            Self::CloudFull => "cloud_full",
            Self::QueueAhead => "queue_ahead",
        }
    }

    /// Whether a waiter queued for this reason may take a primary slot up
    /// to the hard cap (`max_in_flight`), as it would have been admitted
    /// had nobody been waiting, rather than only under the limit.
    pub fn waits_to_hard_cap(self) -> bool {
        matches!(self, Self::OverHardLimit | Self::QueueAhead)
    }
}

/// The per-request decision; pure and allocation-free. See the module doc.
pub fn decide(i: &GateInputs) -> SpillDecision {
    if i.writes_held && i.write {
        return SpillDecision::ReadOnly;
    }
    if i.dr != DrState::Normal {
        if let Some(d) = disaster(i) {
            return d;
        }
    }
    if !i.primary_healthy {
        return match (ineligible(i), unavailable(i)) {
            (None, None) => SpillDecision::Cloud(SpillReason::PrimaryDown),
            _ => SpillDecision::Primary(StayReason::PrimaryDown),
        };
    }
    let over_hard = i.in_flight > i.max_in_flight;
    let under = i.in_flight <= i.limit.min(i.max_in_flight);
    if under && !i.queue_ahead {
        return SpillDecision::Primary(StayReason::UnderLimit);
    }
    // A primary slot now would be one a waiter may have: behind them.
    let behind = (under && i.queue_ahead) || i.hard_queue_ahead;
    let primary = |reason| match behind {
        true => SpillDecision::Queue(QueueReason::QueueAhead),
        false => SpillDecision::Primary(reason),
    };
    if !over_hard && i.phase == SpillPhase::Calm {
        return primary(StayReason::NotSpilling);
    }
    if let Some(reason) = ineligible(i) {
        return if over_hard {
            SpillDecision::Queue(QueueReason::OverHardLimit)
        } else if !i.method_known {
            SpillDecision::Queue(QueueReason::UnknownMethod)
        } else {
            primary(reason)
        };
    }
    match unavailable(i) {
        Some((_, queue)) if i.shed_when_cloud_unavailable || over_hard => SpillDecision::Queue(queue),
        Some((stay, _)) => primary(stay),
        None if over_hard => SpillDecision::Cloud(SpillReason::OverHardLimit),
        None => SpillDecision::Cloud(SpillReason::OverLimit),
    }
}

/// The decision the DR state forces, if it forces one (rule 1).
fn disaster(i: &GateInputs) -> Option<SpillDecision> {
    let cloud = i.has_overflow && i.cloud_healthy;
    match i.dr {
        DrState::Normal => None,
        DrState::DrPending if i.write => Some(SpillDecision::ReadOnly),
        DrState::DrPending => cloud.then_some(SpillDecision::Cloud(SpillReason::DrPending)),
        // Writes follow the promoted database even to an empty cloud pool (a 503).
        DrState::DrActive if i.write || cloud => Some(SpillDecision::Cloud(SpillReason::DisasterRecovery)),
        DrState::FailbackPending if i.write || (cloud && (i.pinned || !i.primary_healthy)) => {
            Some(SpillDecision::Cloud(SpillReason::DisasterRecovery))
        }
        DrState::DrActive | DrState::FailbackPending => None,
    }
}

/// Why this request may not leave the primary, if it may not.
fn ineligible(i: &GateInputs) -> Option<StayReason> {
    if !i.method_may_spill {
        Some(StayReason::MethodNotSpillable)
    } else if i.path_never_spills {
        Some(StayReason::NeverSpillPath)
    } else if i.pinned {
        Some(StayReason::PinnedAfterWrite)
    } else {
        None
    }
}

/// Why the cloud cannot take a request that would spill, if it cannot.
fn unavailable(i: &GateInputs) -> Option<(StayReason, QueueReason)> {
    if !i.has_overflow {
        Some((StayReason::NoOverflowPool, QueueReason::NoOverflowPool))
    } else if !i.cloud_healthy {
        Some((StayReason::CloudUnavailable, QueueReason::CloudUnavailable))
    } else if !i.replica_lag_ok {
        Some((StayReason::ReplicaLag, QueueReason::ReplicaLag))
    } else if !i.cloud_room && i.primary_healthy && i.dr == DrState::Normal {
        Some((StayReason::CloudFull, QueueReason::CloudFull))
    } else {
        None
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
