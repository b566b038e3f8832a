//! Endpoint health as a pure state machine, fed by active probes and by
//! passive observations of proxied requests.
//!
//! Active: `unhealthy_after` consecutive failed probes mark an endpoint down,
//! `healthy_after` consecutive successes bring it back. Passive: `eject_after`
//! consecutive connect failures or 5xx eject it for a backoff that doubles on
//! each ejection (`eject_base` … `eject_max`) and resets after a clean run.

use std::time::{Duration, Instant};

/// Probe-driven state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// New endpoint, no probe answered yet: not used until the first success.
    Unknown,
    Up,
    Down,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeState {
    pub(crate) state: Probe,
    successes: u32,
    failures: u32,
}

impl ProbeState {
    pub(crate) fn new() -> Self {
        ProbeState { state: Probe::Unknown, successes: 0, failures: 0 }
    }

    /// Records one probe; returns the new state if it changed.
    pub(crate) fn observe(&mut self, ok: bool, healthy_after: u32, unhealthy_after: u32) -> Option<Probe> {
        let before = self.state;
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            // An unknown endpoint needs one success; a down one, healthy_after.
            if before == Probe::Unknown || (before == Probe::Down && self.successes >= healthy_after) {
                self.state = Probe::Up;
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if before == Probe::Unknown || (before == Probe::Up && self.failures >= unhealthy_after) {
                self.state = Probe::Down;
            }
        }
        (self.state != before).then_some(self.state)
    }
}

impl Default for ProbeState {
    fn default() -> Self {
        Self::new()
    }
}

/// Backoff for the `n`th consecutive ejection (n starts at 1).
pub(crate) fn ejection_backoff(n: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(n.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

/// Whether an ejected endpoint may take traffic again at `now`.
pub(crate) fn readmitted(ejected_until: Option<Instant>, now: Instant) -> bool {
    ejected_until.is_none_or(|until| now >= until)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_needs_one_success() {
        let mut s = ProbeState::new();
        assert_eq!(s.observe(true, 2, 3), Some(Probe::Up));
    }

    #[test]
    fn thresholds_apply_between_up_and_down() {
        let mut s = ProbeState::new();
        s.observe(true, 2, 3);
        assert_eq!(s.observe(false, 2, 3), None);
        assert_eq!(s.observe(false, 2, 3), None);
        assert_eq!(s.observe(false, 2, 3), Some(Probe::Down));
        assert_eq!(s.observe(true, 2, 3), None);
        assert_eq!(s.observe(false, 2, 3), None, "a failure resets the success run");
        assert_eq!(s.observe(true, 2, 3), None);
        assert_eq!(s.observe(true, 2, 3), Some(Probe::Up));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_secs(5);
        let max = Duration::from_secs(60);
        assert_eq!(ejection_backoff(1, base, max), Duration::from_secs(5));
        assert_eq!(ejection_backoff(2, base, max), Duration::from_secs(10));
        assert_eq!(ejection_backoff(4, base, max), Duration::from_secs(40));
        assert_eq!(ejection_backoff(5, base, max), max);
        assert_eq!(ejection_backoff(500, base, max), max);
    }

    #[test]
    fn readmission_waits_for_the_deadline() {
        let t = Instant::now();
        assert!(readmitted(None, t));
        assert!(!readmitted(Some(t + Duration::from_secs(1)), t));
        assert!(readmitted(Some(t), t));
    }
}
