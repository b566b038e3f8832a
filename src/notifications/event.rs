//! The event model: what happened ([`Kind`]), how bad it is
//! ([`Severity`], PagerDuty's four), whether it begins a bad state, ends one
//! or only informs ([`Action`]), and what it is about (`subject`: a pool, a
//! controller, `config`). The dedup key is the episode's name,
//! `spillway/SITE/KIND/SUBJECT`: a trigger and the resolve that ends it carry
//! the same key, and two sites never share one.
//!
//! Pure data: no clock is read here (the caller stamps `at`), nothing is sent.

use std::time::SystemTime;

use serde_json::{json, Value};

pub(crate) use crate::config::Severity;

/// What an event is about. A new kind is one variant here and one name in
/// [`Kind::as_str`]; whether it is an episode follows from the actions its
/// emitter uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A primary pool spills overflow to the cloud.
    Spill,
    /// A primary pool's outage is declared or over (informational: the
    /// site's `DrPending`/`DrEngaged` episodes are the pages).
    Dr,
    /// Another site stopped heartbeating and was taken over (coordination).
    SiteLost,
    /// A controller failed `controller_failing_after` ticks in a row.
    ControllerFailing,
    /// A cloud pool has no available endpoint.
    CloudUnhealthy,
    /// A cloud pool's replicas lag more than `spill.max_replica_lag`.
    ReplicaLag,
    /// The DNS controller changed the weighted records.
    DnsChange,
    /// The scale controller set the group's desired capacity.
    ScaleAction,
    /// A reload failed: the running config is not the file's.
    ReloadFailed,
    /// On-prem is lost and DR waits for confirmation (reads in the cloud, writes refused).
    DrPending,
    /// Writes moved to the cloud (DR engaged).
    DrEngaged,
    /// Writes are on their way back on-prem, or are back.
    DrFailback,
    /// A DR drill finished.
    DrDrill,
    /// A cloud pool's replicas lag more than `dr.rpo_budget`.
    ReplicaLagRpo,
    /// A primary pool's queue has shed requests for a while: demand beyond
    /// on-prem and the cloud together.
    Shedding,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Spill => "spill",
            Kind::Dr => "dr",
            Kind::SiteLost => "site_lost",
            Kind::ControllerFailing => "controller_failing",
            Kind::CloudUnhealthy => "cloud_unhealthy",
            Kind::ReplicaLag => "replica_lag",
            Kind::DnsChange => "dns_change",
            Kind::ScaleAction => "scale_action",
            Kind::ReloadFailed => "reload_failed",
            Kind::DrPending => "dr_pending",
            Kind::DrEngaged => "dr_engaged",
            Kind::DrFailback => "dr_failback",
            Kind::DrDrill => "dr_drill",
            Kind::ReplicaLagRpo => "replica_lag_rpo_at_risk",
            Kind::Shedding => "shedding",
        }
    }
}

/// An event's place in an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Action {
    /// A bad state begins.
    Trigger,
    /// The bad state of the same key ends.
    Resolve,
    /// Something worth knowing; no state begins or ends.
    Info,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Trigger => "trigger",
            Action::Resolve => "resolve",
            Action::Info => "info",
        }
    }
}

/// One notification.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub(crate) kind: Kind,
    pub(crate) action: Action,
    pub(crate) severity: Severity,
    /// The pool, controller or `config` the event is about.
    pub(crate) subject: String,
    pub(crate) summary: String,
    pub(crate) at: SystemTime,
    pub(crate) details: Value,
}

impl Event {
    pub(crate) fn trigger(kind: Kind, severity: Severity, subject: &str, summary: String, at: SystemTime) -> Event {
        Event::new(kind, Action::Trigger, severity, subject, summary, at)
    }

    pub(crate) fn resolve(kind: Kind, subject: &str, summary: String, at: SystemTime) -> Event {
        Event::new(kind, Action::Resolve, Severity::Info, subject, summary, at)
    }

    pub(crate) fn info(kind: Kind, subject: &str, summary: String, at: SystemTime) -> Event {
        Event::new(kind, Action::Info, Severity::Info, subject, summary, at)
    }

    fn new(kind: Kind, action: Action, severity: Severity, subject: &str, summary: String, at: SystemTime) -> Event {
        Event { kind, action, severity, subject: subject.to_string(), summary, at, details: json!({}) }
    }

    pub(crate) fn with_severity(mut self, severity: Severity) -> Event {
        self.severity = severity;
        self
    }

    pub(crate) fn with_details(mut self, details: Value) -> Event {
        self.details = details;
        self
    }

    /// The episode's name: the same for a trigger and its resolve, unique per site.
    pub(crate) fn dedup_key(&self, site: &str) -> String {
        format!("spillway/{site}/{}/{}", self.kind.as_str(), self.subject)
    }

    /// The event as JSON: the webhook's body and the SNS message.
    pub(crate) fn to_json(&self, site: &str) -> Value {
        json!({
            "source": "spillway",
            "site": site,
            "kind": self.kind.as_str(),
            "action": self.action.as_str(),
            "severity": self.severity.as_str(),
            "subject": self.subject,
            "dedup_key": self.dedup_key(site),
            "summary": self.summary,
            "at": rfc3339(self.at),
            "details": self.details,
        })
    }
}

/// RFC 3339 with milliseconds (PagerDuty's `timestamp` and the JSON's `at`).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_and_its_resolve_share_a_key_that_names_the_site() {
        let at = SystemTime::UNIX_EPOCH;
        let on = Event::trigger(Kind::Spill, Severity::Warning, "onprem", "on".into(), at);
        let off = Event::resolve(Kind::Spill, "onprem", "off".into(), at);
        assert_eq!(on.dedup_key("dc1"), off.dedup_key("dc1"));
        assert_eq!(on.dedup_key("dc1"), "spillway/dc1/spill/onprem");
        assert_ne!(on.dedup_key("dc1"), on.dedup_key("dc2"));
        let dr = Event::trigger(Kind::Dr, Severity::Critical, "onprem", "dr".into(), at);
        assert_ne!(on.dedup_key("dc1"), dr.dedup_key("dc1"));
        let json = on.to_json("dc1");
        assert_eq!(json["kind"], "spill");
        assert_eq!(json["action"], "trigger");
        assert_eq!(json["severity"], "warning");
        assert_eq!(json["at"], "1970-01-01T00:00:00.000Z");
    }
}
