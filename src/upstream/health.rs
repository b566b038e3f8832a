//! Endpoint health as a pure state machine, fed by active probes and by
//! passive observations of proxied requests.
//!
//! Active: `unhealthy_after` consecutive failed probes mark an endpoint down,
//! `healthy_after` consecutive successes bring it back. Passive: `eject_after`
//! consecutive faults of the endpoint itself (connect errors, resets,
//! timeouts, and the pool's `passive_fault_statuses`, by default 502/503/504:
//! `is_endpoint_fault`) eject it for a backoff that doubles on each ejection
//! (`eject_base` … `eject_max`) and resets after a clean run.
//!
//! Invariant (`may_eject`): passive ejection never takes out more than
//! `max_ejection_percent` of a pool, nor its last endpoint that is up.

use std::time::{Duration, Instant};

use http::StatusCode;

/// Probe-driven state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// Largest replica lag recorded (about 136 years): a bigger report, or an
/// infinite one, is taken as this, still far above any `max_replica_lag`.
pub(crate) const MAX_REPLICA_LAG: Duration = Duration::from_secs(u32::MAX as u64);

/// A probe's lag header (seconds behind the primary, decimal) as a lag.
/// Clamped to `MAX_REPLICA_LAG`; not a number, NaN or negative: unknown.
pub(crate) fn parse_lag(value: &[u8]) -> Option<Duration> {
    let secs = std::str::from_utf8(value).ok()?.trim().parse::<f64>().ok()?;
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).map_or(MAX_REPLICA_LAG, |lag| lag.min(MAX_REPLICA_LAG)))
}

/// Whether an answer with `status` is the endpoint's own fault (counts
/// towards ejection) rather than the application's answer.
pub(crate) fn is_endpoint_fault(status: StatusCode, fault_statuses: &[u16]) -> bool {
    fault_statuses.contains(&status.as_u16())
}

/// Whether passive ejection may take one more endpoint out of a pool of
/// `total`, of which `ejected` are out already and `others_up` others (not
/// counting the candidate) are up: never past `max_percent` of the pool,
/// never the last endpoint that is up.
pub(crate) fn may_eject(total: usize, ejected: usize, others_up: usize, max_percent: u8) -> bool {
    others_up > 0 && (ejected + 1) * 100 <= total * usize::from(max_percent)
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
    fn only_the_listed_statuses_are_the_endpoints_fault() {
        let faults = [502, 503, 504];
        for (status, fault) in [(500, false), (501, false), (502, true), (503, true), (504, true), (404, false)] {
            let s = StatusCode::from_u16(status).unwrap();
            assert_eq!(is_endpoint_fault(s, &faults), fault, "{status}");
        }
        assert!(!is_endpoint_fault(StatusCode::BAD_GATEWAY, &[]));
        assert!(is_endpoint_fault(StatusCode::INTERNAL_SERVER_ERROR, &[500]));
    }

    #[test]
    fn ejection_stops_at_the_share_and_at_the_last_endpoint_up() {
        // 2 endpoints at 50%: one may go, not the second.
        assert!(may_eject(2, 0, 1, 50));
        assert!(!may_eject(2, 1, 0, 50));
        assert!(!may_eject(2, 1, 1, 50), "the share holds even with another endpoint up");
        // 3 at 50%: one (1.5 rounds down).
        assert!(may_eject(3, 0, 2, 50));
        assert!(!may_eject(3, 1, 1, 50));
        // 10 at 50%: five, never a sixth.
        assert!(may_eject(10, 4, 5, 50));
        assert!(!may_eject(10, 5, 4, 50));
        // A single endpoint is never ejected, whatever the share.
        assert!(!may_eject(1, 0, 0, 100));
        // 100%: all but the last one up.
        assert!(may_eject(3, 1, 1, 100));
        assert!(!may_eject(3, 2, 0, 100));
        // Others down by probe are not up: the candidate is the last one.
        assert!(!may_eject(4, 0, 0, 100));
        // 0% turns passive ejection off.
        assert!(!may_eject(10, 0, 9, 0));
    }

    #[test]
    fn any_lag_header_is_survivable() {
        let lag = |v: &str| parse_lag(v.as_bytes());
        assert_eq!(lag("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(lag(" 0 "), Some(Duration::ZERO));
        assert_eq!(lag("-0"), Some(Duration::ZERO));
        for huge in ["1e20", "1e300", "inf", "18446744073709551616", "4294967296"] {
            assert_eq!(lag(huge), Some(MAX_REPLICA_LAG), "{huge}");
        }
        for unknown in ["NaN", "-1", "-inf", "", "soon", "1,5", "0x10"] {
            assert_eq!(lag(unknown), None, "{unknown:?}");
        }
        assert_eq!(parse_lag(b"\xff\xfe"), None);
    }

    #[test]
    fn readmission_waits_for_the_deadline() {
        let t = Instant::now();
        assert!(readmitted(None, t));
        assert!(!readmitted(Some(t + Duration::from_secs(1)), t));
        assert!(readmitted(Some(t), t));
    }
}
