//! The site's live disaster-recovery state: the one place that holds it.
//!
//! The request path reads [`DrCell::now`], one relaxed atomic load: the
//! state and whether writes are held (`burst::WriteHold`). The ticker feeds
//! [`DrCell::observe`] once per tick with the observation and where the
//! state comes from (`burst::DrSource`: alone, the site's lease holder, or
//! the lease's state) and the admin API calls [`DrCell::command`]; both go
//! through the pure `burst::DrMachine` under a short mutex and publish to
//! the atomic before they return. The cell lives in `Gates`, so it survives
//! config reloads.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::burst::{
    DrCommand, DrMachine, DrObservation, DrPolicy, DrReason, DrRefusal, DrSource, DrState, DrTransition, EngageMode,
    WriteHold,
};

/// The bit of the live atomic that says writes are held.
const HELD: u8 = 0x80;

/// What the request path acts on: the state, and whether writes are
/// refused although the state would let them through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DrNow {
    pub(crate) state: DrState,
    pub(crate) writes_held: bool,
}

impl DrNow {
    /// Nothing to do with DR: the request path's fast case.
    pub(crate) const CLEAR: DrNow = DrNow { state: DrState::Normal, writes_held: false };
}
use crate::sync::lock;

pub(crate) struct DrCell {
    state: AtomicU8,
    /// Until when the latest tick's source holds, in nanoseconds since
    /// `origin` (`u64::MAX`: always): a write after it is held even
    /// when no tick came to say so (a late ticker never extends a read).
    writes_until: AtomicU64,
    /// The clock `writes_until` counts on (the cell's creation).
    origin: Instant,
    inner: Mutex<Inner>,
    /// A drill is running (the scale controller holds `dr_capacity`).
    drilling: AtomicBool,
    /// The last drill's report, as `/status` shows it.
    last_drill: Mutex<Option<serde_json::Value>>,
}

struct Inner {
    machine: DrMachine,
    /// The latest tick's observation, against which commands are judged.
    last: DrObservation,
    policy: DrPolicy,
    /// The write fence (`DrMachine::writes_held`): `None` without coordination.
    fence: Option<Duration>,
    /// Where the latest tick took the state from.
    source: DrSource,
}

/// The state as `/status` and the dashboard show it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DrView {
    pub(crate) state: DrState,
    pub(crate) reason: DrReason,
    pub(crate) for_: Duration,
    pub(crate) failback_in: Option<Duration>,
    /// Why writes are refused although the state would let them through.
    pub(crate) writes_held: Option<WriteHold>,
    /// Where the state comes from (`DrSource::as_str`).
    pub(crate) source: &'static str,
    pub(crate) engage: EngageMode,
    pub(crate) observed: DrObservation,
    pub(crate) drilling: bool,
    pub(crate) last_drill: Option<serde_json::Value>,
}

/// The DR state a successor process takes over.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct DrCarry {
    /// `DrState::as_str`.
    pub(crate) state: String,
    /// How long the state has held.
    pub(crate) for_ms: u64,
}

/// The drill slot of a [`DrCell`]; dropping it ends the drill (the scale
/// controller stops holding `dr_capacity`).
pub(crate) struct DrillSlot<'a>(&'a DrCell);

impl DrillSlot<'_> {
    /// Ends the drill now (before the group is restored).
    pub(crate) fn release(&self) {
        self.0.drilling.store(false, Relaxed);
    }
}

impl Drop for DrillSlot<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

impl DrCell {
    pub(crate) fn new(now: Instant) -> Self {
        let policy = DrPolicy { engage: EngageMode::Auto, failback_after: Duration::from_secs(300) };
        let inner = Inner {
            machine: DrMachine::new(now),
            last: DrObservation::default(),
            policy,
            fence: None,
            source: DrSource::Alone,
        };
        DrCell {
            state: AtomicU8::new(DrState::Normal as u8),
            writes_until: AtomicU64::new(u64::MAX),
            origin: now,
            inner: Mutex::new(inner),
            drilling: AtomicBool::new(false),
            last_drill: Mutex::new(None),
        }
    }

    /// Takes the one drill slot: `None` while a drill runs.
    pub(crate) fn begin_drill(&self) -> Option<DrillSlot<'_>> {
        let free = self.drilling.compare_exchange(false, true, Relaxed, Relaxed).is_ok();
        free.then_some(DrillSlot(self))
    }

    pub(crate) fn drilling(&self) -> bool {
        self.drilling.load(Relaxed)
    }

    pub(crate) fn record_drill(&self, report: serde_json::Value) {
        *lock(&self.last_drill) = Some(report);
    }

    /// What the request path acts on.
    #[inline]
    pub(crate) fn now(&self) -> DrNow {
        let code = self.state.load(Relaxed);
        DrNow { state: DrState::from_code(code & !HELD), writes_held: code & HELD != 0 }
    }

    /// What a request that writes (`write`) acts on at `at`: as [`Self::now`],
    /// with writes held once the latest tick's source has run out.
    #[inline]
    pub(crate) fn now_for(&self, write: bool, at: Instant) -> DrNow {
        let mut now = self.now();
        if write && !now.writes_held {
            let until = self.writes_until.load(Relaxed);
            now.writes_held = until != u64::MAX && self.nanos(at) >= until;
        }
        now
    }

    /// The state (the machine's).
    #[inline]
    pub(crate) fn state(&self) -> DrState {
        self.now().state
    }

    /// The machine's own state (what a holder tells its followers), and
    /// the lease version whose inherited state it has taken.
    pub(crate) fn machine_state(&self) -> (DrState, Option<u64>) {
        let inner = lock(&self.inner);
        (inner.machine.state(), inner.machine.synced())
    }

    /// One tick: the observation, under the current config's policy, from
    /// `source` (`DrMachine::tick`), valid until `valid_until` (`None`:
    /// always), with the write fence (`None` without coordination).
    pub(crate) fn observe(
        &self,
        obs: DrObservation,
        policy: DrPolicy,
        source: DrSource,
        fence: Option<Duration>,
        valid_until: Option<Instant>,
        now: Instant,
    ) -> Option<DrTransition> {
        self.writes_until.store(valid_until.map_or(u64::MAX, |t| self.nanos(t)), Relaxed);
        let mut inner = lock(&self.inner);
        inner.last = obs;
        inner.policy = policy;
        inner.fence = fence;
        inner.source = source;
        let t = inner.machine.tick(&source, &obs, &policy, now);
        self.publish(&inner, now);
        t
    }

    /// An operator's call, judged against the latest observation; refused
    /// unless this instance decides the site's state (alone, or holding
    /// the site's lease at the latest tick).
    pub(crate) fn command(&self, cmd: DrCommand, now: Instant) -> Result<Option<DrTransition>, DrRefusal> {
        let mut inner = lock(&self.inner);
        if !inner.source.decides() {
            return Err(DrRefusal::NotHolder);
        }
        let obs = inner.last;
        let t = inner.machine.command(cmd, &obs, now);
        self.publish(&inner, now);
        t
    }

    pub(crate) fn view(&self, now: Instant) -> DrView {
        let inner = lock(&self.inner);
        let m = &inner.machine;
        DrView {
            state: m.state(),
            reason: m.reason(),
            for_: now.saturating_duration_since(m.since()),
            failback_in: m.failback_in(&inner.policy, now),
            writes_held: hold(&inner, now),
            source: inner.source.as_str(),
            engage: inner.policy.engage,
            observed: inner.last,
            drilling: self.drilling(),
            last_drill: lock(&self.last_drill).clone(),
        }
    }

    /// The state, for a successor process.
    pub(crate) fn carry(&self, now: Instant) -> DrCarry {
        let inner = lock(&self.inner);
        let m = &inner.machine;
        DrCarry {
            state: m.state().as_str().to_string(),
            for_ms: now.saturating_duration_since(m.since()).as_millis() as u64,
        }
    }

    /// Continues a predecessor's state (`DrMachine::resume`): a process
    /// upgrade never moves writes. An unknown state name changes nothing.
    pub(crate) fn resume(&self, carry: &DrCarry, now: Instant) -> Option<DrState> {
        let state = DrState::ALL.into_iter().find(|s| s.as_str() == carry.state)?;
        let since = now.checked_sub(Duration::from_millis(carry.for_ms)).unwrap_or(now);
        let mut inner = lock(&self.inner);
        inner.machine = DrMachine::resume(state, since, now);
        self.publish(&inner, now);
        Some(state)
    }

    /// `at` on the clock [`DrCell::now_for`] compares on (before the origin: 0).
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn publish(&self, inner: &Inner, now: Instant) {
        let held = if hold(inner, now).is_some() { HELD } else { 0 };
        self.state.store(inner.machine.state() as u8 | held, Relaxed);
    }
}

/// Why writes are held: without a recent read of the lease, always; else
/// as the machine says after a move of writes.
fn hold(inner: &Inner, now: Instant) -> Option<WriteHold> {
    match inner.source {
        DrSource::Alone => None,
        DrSource::Stale => Some(WriteHold::NoLeaseRead),
        DrSource::Holder { .. } | DrSource::Lease { .. } => inner.machine.writes_held(inner.fence, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::burst::LeaseAck;

    #[test]
    fn commands_are_judged_against_the_last_tick_and_published() {
        let t0 = Instant::now();
        let cell = DrCell::new(t0);
        let policy = DrPolicy { engage: EngageMode::Confirm, failback_after: Duration::from_secs(60) };
        assert_eq!(cell.command(DrCommand::Engage, t0), Err(DrRefusal::CloudUnavailable), "no tick yet: no cloud seen");
        let obs = DrObservation { onprem_lost: true, cloud_ok: true, ..Default::default() };
        let t = cell.observe(obs, policy, DrSource::Alone, None, None, t0);
        assert_eq!(t.map(|t| t.to), Some(DrState::DrPending));
        assert_eq!(cell.now(), DrNow { state: DrState::DrPending, writes_held: false });
        let t = cell.command(DrCommand::Engage, t0 + Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!((t.from, t.to), (DrState::DrPending, DrState::DrActive));
        assert_eq!(cell.now(), DrNow { state: DrState::DrActive, writes_held: false }, "alone: nothing held");
        let view = cell.view(t0 + Duration::from_secs(7));
        assert_eq!(
            (view.reason, view.for_, view.engage, view.source),
            (DrReason::OperatorEngage, Duration::from_secs(2), policy.engage, "alone")
        );
    }

    #[test]
    fn the_request_path_sees_held_writes_and_a_follower_the_leases_state() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let cell = DrCell::new(t0);
        let policy = DrPolicy { engage: EngageMode::Auto, failback_after: Duration::from_secs(60) };
        let lost = DrObservation { onprem_lost: true, cloud_ok: true, ..Default::default() };
        let fence = Some(Duration::from_secs(2));
        let holder = |published| DrSource::Holder { version: 3, inherited: None, published };
        let t = cell.observe(lost, policy, holder(None), fence, None, t0).unwrap();
        assert_eq!(t.to, DrState::DrActive);
        let held = DrNow { state: DrState::DrActive, writes_held: true };
        assert_eq!(cell.now(), held, "unpublished: the request path refuses writes");
        assert_eq!(cell.view(t0).writes_held, Some(WriteHold::Unpublished));
        let ack = LeaseAck { state: DrState::DrActive, sent: at(100), received: at(300) };
        cell.observe(lost, policy, holder(Some(ack)), fence, None, at(350));
        assert_eq!((cell.now(), cell.view(at(350)).writes_held), (held, Some(WriteHold::Fence)));
        cell.observe(lost, policy, holder(Some(ack)), fence, None, at(2_300));
        assert_eq!(cell.now(), DrNow { state: DrState::DrActive, writes_held: false }, "the tick after the fence");
        // Following: the lease's state whatever this instance observes, fenced from the read.
        let healthy =
            DrObservation { onprem_reachable: true, onprem_primary: true, cloud_ok: true, ..Default::default() };
        let lease = DrSource::Lease { state: Some(DrState::Normal) };
        let t = cell.observe(healthy, policy, lease, fence, None, at(10_000)).unwrap();
        assert_eq!((t.to, t.reason), (DrState::Normal, DrReason::SiteHolder));
        assert_eq!(cell.now(), DrNow { state: DrState::Normal, writes_held: true }, "a follower fences the move too");
        assert_eq!(
            cell.command(DrCommand::Engage, at(10_000)),
            Err(DrRefusal::NotHolder),
            "a follower decides nothing"
        );
        cell.observe(healthy, policy, lease, fence, None, at(12_000));
        assert_eq!(cell.now(), DrNow::CLEAR);
        assert_eq!(cell.observe(lost, policy, lease, fence, None, at(12_050)), None, "its own probes decide nothing");
        // No recent read of the lease: the state is kept and writes are held, reads go on.
        assert_eq!(cell.observe(lost, policy, DrSource::Stale, fence, None, at(13_000)), None);
        assert_eq!(cell.now(), DrNow { state: DrState::Normal, writes_held: true });
        assert_eq!(cell.view(at(13_000)).writes_held, Some(WriteHold::NoLeaseRead));
        assert_eq!(cell.command(DrCommand::Engage, at(13_000)), Err(DrRefusal::NotHolder));
        cell.observe(healthy, policy, lease, fence, None, at(14_000));
        assert_eq!(cell.now(), DrNow::CLEAR, "a read again: writes flow");
        // The read holds until it is too old, tick or no tick: a write after that is held.
        cell.observe(healthy, policy, lease, fence, Some(at(15_000)), at(14_100));
        assert_eq!(cell.now_for(true, at(14_999)), DrNow::CLEAR);
        assert_eq!(cell.now_for(true, at(15_000)), DrNow { state: DrState::Normal, writes_held: true });
        assert_eq!(cell.now_for(false, at(60_000)), DrNow::CLEAR, "reads are not held");
        cell.observe(healthy, policy, DrSource::Alone, None, None, at(14_200));
        assert_eq!(cell.now_for(true, at(60_000)), DrNow::CLEAR, "alone: no deadline");
    }
}
