//! Process-relative time for atomics: an `Instant` becomes nanoseconds since
//! a fixed process epoch so it fits in an `AtomicU64`. Only the I/O shell
//! reads the clock; policy receives `Instant`s as arguments. `WallClock`
//! maps tokio's clock to wall time for status and scheduled events.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds from the process epoch to `t` (0 for instants before it).
pub(crate) fn to_nanos(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// The `Instant` that `to_nanos` mapped to `nanos`.
pub(crate) fn from_nanos(nanos: u64) -> Instant {
    epoch() + Duration::from_nanos(nanos)
}

/// Wall time that follows tokio's clock from a base, so scheduled events and
/// paused-time tests agree.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    base_wall: SystemTime,
    base: tokio::time::Instant,
}

impl WallClock {
    pub(crate) fn new(base_wall: SystemTime, base: tokio::time::Instant) -> Self {
        Self { base_wall, base }
    }

    pub(crate) fn at(&self, now: tokio::time::Instant) -> SystemTime {
        self.base_wall + now.saturating_duration_since(self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = Instant::now() + Duration::from_millis(5);
        let back = from_nanos(to_nanos(t));
        assert!(back.max(t) - back.min(t) < Duration::from_micros(1));
    }
}
