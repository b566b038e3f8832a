//! Episodes, de-duplication and per-sink rate limits: the pure policy
//! between "something changed" and "a sink sends something". Time is an
//! argument; nothing here sends, sleeps or reads a clock.
//!
//! [`Episodes`] (one for all sinks) turns raw state changes into episodes: a
//! trigger for a key that is not open opens it and goes out; a trigger for an
//! open key is a duplicate and goes nowhere; a resolve does not go out at
//! once but is held for `resolve_after`, and a trigger of the same key in that
//! time cancels it (a flap: the episode goes on, one incident). A resolve for
//! a key that is not open goes nowhere.
//!
//! [`SinkGate`] (one per sink) applies the sink's severity floor and its
//! token buckets (`burst` at once, one more every `refill_every`; one bucket
//! for triggers, one for informational events) to triggers and
//! informational events. A resolve spends no token and goes out exactly
//! when this sink sent the trigger it ends: so ten flaps cost at most `burst`
//! triggers, and every trigger sent is followed by its resolve (no orphan).
//!
//! Invariants: `open` and `sent` hold only keys whose trigger went out;
//! `0 ≤ tokens ≤ burst` in each bucket.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::event::{Action, Event, Kind, Severity};

/// An episode's identity (the dedup key without the site).
pub(crate) type Key = (Kind, String);

fn key(e: &Event) -> Key {
    (e.kind, e.subject.clone())
}

/// One open episode.
#[derive(Debug)]
struct Open {
    /// The resolve waiting for `resolve_after` to pass, and when it goes out.
    pending: Option<(Instant, Event)>,
    flaps: u32,
}

/// Turns state changes into episode events, for every sink at once.
#[derive(Debug)]
pub(crate) struct Episodes {
    resolve_after: Duration,
    open: HashMap<Key, Open>,
}

impl Episodes {
    pub(crate) fn new(resolve_after: Duration) -> Self {
        Self { resolve_after, open: HashMap::new() }
    }

    /// A reload may change the hold time; open episodes keep their due time.
    pub(crate) fn set_resolve_after(&mut self, resolve_after: Duration) {
        self.resolve_after = resolve_after;
    }

    /// What to deliver now for `event` (at most one event).
    pub(crate) fn observe(&mut self, event: Event, now: Instant) -> Option<Event> {
        match event.action {
            Action::Info => Some(event),
            Action::Trigger => match self.open.get_mut(&key(&event)) {
                Some(open) => {
                    if open.pending.take().is_some() {
                        open.flaps += 1;
                    }
                    None
                }
                None => {
                    self.open.insert(key(&event), Open { pending: None, flaps: 0 });
                    Some(event)
                }
            },
            Action::Resolve => {
                let open = self.open.get_mut(&key(&event))?;
                if self.resolve_after.is_zero() {
                    self.open.remove(&key(&event));
                    return Some(event);
                }
                if open.pending.is_none() {
                    open.pending = Some((now + self.resolve_after, event));
                }
                None
            }
        }
    }

    /// The held resolves whose time has come, with the flaps each absorbed.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Event> {
        let keys: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, o)| o.pending.as_ref().is_some_and(|(at, _)| *at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<Event> = keys
            .into_iter()
            .filter_map(|k| self.open.remove(&k))
            .filter_map(|o| {
                let (_, mut event) = o.pending?;
                if let serde_json::Value::Object(d) = &mut event.details {
                    d.insert("flaps".into(), o.flaps.into());
                }
                Some(event)
            })
            .collect();
        out.sort_by_key(|e| e.at);
        out
    }

    /// When the next held resolve is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.open.values().filter_map(|o| o.pending.as_ref().map(|(at, _)| *at)).min()
    }

    /// Episodes open now (for tests and status).
    #[cfg(test)]
    pub(crate) fn open_count(&self) -> usize {
        self.open.len()
    }
}

/// Why a sink did not send an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suppressed {
    BelowSeverity,
    RateLimited,
    /// A resolve whose trigger this sink did not send.
    NotTriggered,
    /// The sink takes only episodes (PagerDuty): an informational event.
    NotAnEpisode,
}

impl Suppressed {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Suppressed::BelowSeverity => "below_severity",
            Suppressed::RateLimited => "rate_limited",
            Suppressed::NotTriggered => "not_triggered",
            Suppressed::NotAnEpisode => "not_an_episode",
        }
    }
}

/// A token bucket: `burst` at once, one more every `refill_every`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    fn take(&mut self, burst: f64, refill_every: Duration, now: Instant) -> Result<(), Suppressed> {
        if let Some(last) = self.last {
            let earned = now.saturating_duration_since(last).as_secs_f64() / refill_every.as_secs_f64();
            self.tokens = (self.tokens + earned).min(burst);
        }
        self.last = Some(now);
        if self.tokens < 1.0 {
            return Err(Suppressed::RateLimited);
        }
        self.tokens -= 1.0;
        Ok(())
    }
}

/// What one sink may send: severity floor, token buckets (one for triggers,
/// one for informational events, so a run of scale actions never uses up a
/// DR page), and the triggers it sent.
#[derive(Debug)]
pub(crate) struct SinkGate {
    min_severity: Severity,
    episodes_only: bool,
    burst: f64,
    refill_every: Duration,
    triggers: Bucket,
    infos: Bucket,
    sent: HashSet<Key>,
}

impl SinkGate {
    pub(crate) fn new(min_severity: Severity, episodes_only: bool, burst: u32, refill_every: Duration) -> Self {
        debug_assert!(burst >= 1 && !refill_every.is_zero());
        let burst = f64::from(burst.max(1));
        let full = || Bucket { tokens: burst, last: None };
        Self { min_severity, episodes_only, burst, refill_every, triggers: full(), infos: full(), sent: HashSet::new() }
    }

    /// A reload's new limits; the triggers sent are kept (their resolves are owed).
    pub(crate) fn reconfigure(&mut self, min_severity: Severity, burst: u32, refill_every: Duration) {
        self.min_severity = min_severity;
        self.burst = f64::from(burst.max(1));
        self.refill_every = refill_every.max(Duration::from_millis(1));
        for b in [&mut self.triggers, &mut self.infos] {
            b.tokens = b.tokens.min(self.burst);
        }
    }

    /// Whether this sink sends `event` at `now`; a send is recorded.
    pub(crate) fn admit(&mut self, event: &Event, now: Instant) -> Result<(), Suppressed> {
        let (burst, every) = (self.burst, self.refill_every);
        match event.action {
            Action::Resolve => self.sent.remove(&key(event)).then_some(()).ok_or(Suppressed::NotTriggered),
            Action::Info if self.episodes_only => Err(Suppressed::NotAnEpisode),
            _ if event.severity < self.min_severity => Err(Suppressed::BelowSeverity),
            Action::Info => self.infos.take(burst, every, now),
            Action::Trigger => {
                self.triggers.take(burst, every, now)?;
                self.sent.insert(key(event));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
#[path = "episode_tests.rs"]
mod tests;
