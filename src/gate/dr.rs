//! The site's live disaster-recovery state: the one place that holds it.
//!
//! The request path reads [`DrCell::state`], one relaxed atomic load. The
//! ticker feeds [`DrCell::observe`] once per tick and the admin API calls
//! [`DrCell::command`]; both go through the pure `burst::DrMachine` under a
//! short mutex and publish the state to the atomic before they return. The
//! cell lives in `Gates`, so it survives config reloads. A later change can
//! make a coordination lease holder the only writer (it would call
//! `observe`/`command` and the other instances would mirror its state)
//! without touching the request path.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::burst::{
    DrCommand, DrMachine, DrObservation, DrPolicy, DrReason, DrRefusal, DrState, DrTransition, EngageMode,
};
use crate::sync::lock;

pub(crate) struct DrCell {
    state: AtomicU8,
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
    /// The write fence (`DrMachine::writes_fenced`): zero without coordination.
    fence: Duration,
}

/// The state as `/status` and the dashboard show it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DrView {
    pub(crate) state: DrState,
    pub(crate) reason: DrReason,
    pub(crate) for_: Duration,
    pub(crate) failback_in: Option<Duration>,
    /// Writes are refused for the write fence after they changed site.
    pub(crate) writes_fenced: bool,
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
        let inner =
            Inner { machine: DrMachine::new(now), last: DrObservation::default(), policy, fence: Duration::ZERO };
        DrCell {
            state: AtomicU8::new(DrState::Normal as u8),
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

    /// The state the request path acts on: the machine's, or `DrPending`
    /// while writes are fenced.
    #[inline]
    pub(crate) fn state(&self) -> DrState {
        DrState::from_code(self.state.load(Relaxed))
    }

    /// The machine's own state (what a holder tells its followers).
    pub(crate) fn machine_state(&self) -> DrState {
        lock(&self.inner).machine.state()
    }

    /// One tick: the observation, under the current config's policy and
    /// write fence; with `holder` (this instance follows the site's lease
    /// holder, whose state that is) the holder's state instead of this
    /// instance's own decision.
    pub(crate) fn observe(
        &self,
        obs: DrObservation,
        policy: DrPolicy,
        fence: Duration,
        holder: Option<DrState>,
        now: Instant,
    ) -> Option<DrTransition> {
        let mut inner = lock(&self.inner);
        inner.last = obs;
        inner.policy = policy;
        inner.fence = fence;
        let t = match holder {
            Some(state) => inner.machine.follow(state, now),
            None => inner.machine.observe(&obs, &policy, now),
        };
        self.publish(&inner, now);
        t
    }

    /// An operator's call, judged against the latest observation.
    pub(crate) fn command(&self, cmd: DrCommand, now: Instant) -> Result<Option<DrTransition>, DrRefusal> {
        let mut inner = lock(&self.inner);
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
            writes_fenced: m.writes_fenced(inner.fence, now),
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

    fn publish(&self, inner: &Inner, now: Instant) {
        self.state.store(inner.machine.effective(inner.fence, now) as u8, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_judged_against_the_last_tick_and_published() {
        let t0 = Instant::now();
        let cell = DrCell::new(t0);
        let policy = DrPolicy { engage: EngageMode::Confirm, failback_after: Duration::from_secs(60) };
        assert_eq!(cell.command(DrCommand::Engage, t0), Err(DrRefusal::CloudUnavailable), "no tick yet: no cloud seen");
        let obs = DrObservation { onprem_lost: true, cloud_ok: true, ..Default::default() };
        assert_eq!(cell.observe(obs, policy, Duration::ZERO, None, t0).map(|t| t.to), Some(DrState::DrPending));
        assert_eq!(cell.state(), DrState::DrPending);
        let t = cell.command(DrCommand::Engage, t0 + Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!((t.from, t.to), (DrState::DrPending, DrState::DrActive));
        assert_eq!(cell.state(), DrState::DrActive);
        let view = cell.view(t0 + Duration::from_secs(7));
        assert_eq!(
            (view.reason, view.for_, view.engage),
            (DrReason::OperatorEngage, Duration::from_secs(2), policy.engage)
        );
    }

    #[test]
    fn the_request_path_sees_the_fence_and_a_follower_the_holders_state() {
        let t0 = Instant::now();
        let cell = DrCell::new(t0);
        let policy = DrPolicy { engage: EngageMode::Auto, failback_after: Duration::from_secs(60) };
        let lost = DrObservation { onprem_lost: true, cloud_ok: true, ..Default::default() };
        let fence = Duration::from_secs(2);
        let t = cell.observe(lost, policy, fence, None, t0).unwrap();
        assert_eq!((t.to, cell.machine_state()), (DrState::DrActive, DrState::DrActive));
        assert_eq!(cell.state(), DrState::DrPending, "fenced: the request path refuses writes");
        assert!(cell.view(t0).writes_fenced);
        cell.observe(lost, policy, fence, None, t0 + fence);
        assert_eq!(cell.state(), DrState::DrActive, "the next tick after the fence lets writes go");
        // Following: the holder's state whatever this instance observes.
        let healthy =
            DrObservation { onprem_reachable: true, onprem_primary: true, cloud_ok: true, ..Default::default() };
        let later = t0 + Duration::from_secs(10);
        let t = cell.observe(healthy, policy, fence, Some(DrState::Normal), later).unwrap();
        assert_eq!((t.to, t.reason), (DrState::Normal, DrReason::SiteHolder));
        assert_eq!(cell.state(), DrState::DrPending, "a follower fences the move back too");
        cell.observe(healthy, policy, fence, Some(DrState::Normal), later + fence);
        assert_eq!(cell.state(), DrState::Normal);
        assert_eq!(
            cell.observe(lost, policy, fence, Some(DrState::Normal), later),
            None,
            "its own probes decide nothing"
        );
    }
}
