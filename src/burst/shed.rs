//! Who waits and who is shed when a request fits neither the primary's nor
//! the cloud's limit: pure.
//!
//! A waiting request has a **rank**: its route's [`Priority`] twice, plus
//! one when it is *protected* (a write, or a client pinned after a write),
//! so a protected request is served before a sheddable read of the same
//! priority and never after one of a lower priority. A freed slot goes to
//! the highest rank, oldest first; a full queue takes a newcomer only by
//! evicting its lowest-ranked, newest waiter, and only if that one ranks
//! lower; a waiter not served within `queue_timeout` is shed. So while a
//! request of rank `r` is shed, no request of a lower rank is admitted
//! from the queue ([`ShedReason`] names which of the three happened).
//!
//! A shed request's `Retry-After` is the time the queue ahead of it would
//! take to drain at the rate the pools complete requests ([`retry_after`]),
//! whole seconds, between [`RETRY_AFTER_MIN`] and [`RETRY_AFTER_MAX`].

use std::time::Duration;

/// A route's standing when capacity runs out (`[[route]] priority`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Priority {
    /// Shed first: static assets, prefetches.
    Low = 0,
    #[default]
    Normal = 1,
    /// Logins, checkout: served before normal traffic.
    High = 2,
    /// Shed last of all.
    Critical = 3,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Priority::Low, Priority::Normal, Priority::High, Priority::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// A waiter's place in the order: `priority × 2 + protected`.
#[inline]
pub fn rank(priority: Priority, protected: bool) -> u8 {
    (priority as u8) * 2 + u8::from(protected)
}

/// A waiting request's rank from what it is. Protected: a write by its
/// method (one RFC 9110 or RFC 5789 defines), or a client pinned after a
/// write. A method-override field alone protects nothing (any client can
/// send one; it still keeps the request off replicas), and a method
/// outside those ranks lowest of all, whatever its route: shed first.
pub fn wait_rank(priority: Priority, write_method: bool, method_known: bool, pinned: bool) -> u8 {
    if !method_known {
        return rank(Priority::Low, false);
    }
    rank(priority, write_method || pinned)
}

/// Why a request that had to wait got 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShedReason {
    /// The queue was full of requests that rank as high or higher.
    QueueFull,
    /// No slot within `queue_timeout`.
    QueueTimeout,
    /// A higher-ranked request took its place in a full queue.
    Evicted,
    /// Its HTTP/1 client closed or reset the connection while it waited:
    /// it leaves the queue and is never sent upstream.
    ClientGone,
}

impl ShedReason {
    pub const ALL: [ShedReason; 4] =
        [ShedReason::QueueFull, ShedReason::QueueTimeout, ShedReason::Evicted, ShedReason::ClientGone];

    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::QueueFull => "queue_full",
            ShedReason::QueueTimeout => "queue_timeout",
            ShedReason::Evicted => "evicted",
            ShedReason::ClientGone => "client_gone",
        }
    }
}

/// Shortest `Retry-After` (a client should not come back at once).
pub const RETRY_AFTER_MIN: Duration = Duration::from_secs(1);
/// Longest `Retry-After` (also when nothing completes at all).
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

/// The expected wait of a request with `ahead` requests before it in the
/// queue, when the pools it may use complete `drain_rps` requests per
/// second: `(ahead + 1) / drain_rps`, rounded up to whole seconds and kept
/// within [`RETRY_AFTER_MIN`], [`RETRY_AFTER_MAX`].
pub fn retry_after(ahead: u32, drain_rps: f64) -> Duration {
    if !drain_rps.is_finite() || drain_rps <= 0.0 {
        return RETRY_AFTER_MAX;
    }
    let secs = (f64::from(ahead) + 1.0) / drain_rps;
    let max = RETRY_AFTER_MAX.as_secs_f64();
    Duration::from_secs(secs.ceil().min(max) as u64).clamp(RETRY_AFTER_MIN, RETRY_AFTER_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_requests_rank_above_reads_of_their_priority_and_below_the_next() {
        for p in Priority::ALL {
            assert!(rank(p, true) > rank(p, false));
        }
        for w in Priority::ALL.windows(2) {
            assert!(rank(w[0], true) < rank(w[1], false), "{:?} protected vs {:?}", w[0], w[1]);
            assert!(rank(w[0], false) < rank(w[1], false));
        }
        assert_eq!(Priority::default(), Priority::Normal);
    }

    #[test]
    fn only_a_real_write_or_a_pin_protects_and_an_unknown_method_ranks_last() {
        assert_eq!(wait_rank(Priority::High, true, true, false), rank(Priority::High, true));
        assert_eq!(wait_rank(Priority::High, false, true, true), rank(Priority::High, true), "pinned");
        assert_eq!(wait_rank(Priority::High, false, true, false), rank(Priority::High, false), "an override header");
        for p in Priority::ALL {
            for (write, pinned) in [(false, false), (true, false), (true, true)] {
                assert_eq!(wait_rank(p, write, false, pinned), 0, "PURGE, FOO: below every read");
            }
        }
    }

    #[test]
    fn priorities_parse_their_own_names_only() {
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert_eq!(Priority::parse("urgent"), None);
        assert_eq!(Priority::parse("High"), None);
    }

    #[test]
    fn retry_after_is_the_queue_ahead_over_the_drain_rate() {
        // 1 999 ahead at 500 req/s: 4 s.
        assert_eq!(retry_after(1_999, 500.0), Duration::from_secs(4));
        // A short queue still says at least one second.
        assert_eq!(retry_after(0, 10_000.0), RETRY_AFTER_MIN);
        // Rounded up: 3 ahead at 2 req/s is 2 s.
        assert_eq!(retry_after(3, 2.0), Duration::from_secs(2));
        // Nothing completes: the longest.
        assert_eq!(retry_after(5, 0.0), RETRY_AFTER_MAX);
        assert_eq!(retry_after(5, f64::NAN), RETRY_AFTER_MAX);
        assert_eq!(retry_after(u32::MAX, 0.001), RETRY_AFTER_MAX);
        // Monotonic in the queue.
        let mut last = Duration::ZERO;
        for ahead in (0..10_000).step_by(97) {
            let r = retry_after(ahead, 300.0);
            assert!(r >= last);
            last = r;
        }
    }
}
