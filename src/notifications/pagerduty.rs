//! The PagerDuty sink: Events API v2 (`POST /v2/enqueue`). A trigger opens
//! an alert under the episode's `dedup_key`; the resolve that ends the
//! episode carries the same key. The body follows the v2 schema: required
//! `routing_key` and `event_action`; for a trigger, `payload` with
//! `summary` (at most 1024 characters), `source` (this host), `severity`,
//! `timestamp`, `component` (the pool or controller), `group` (the site),
//! `class` (the kind) and `custom_details`; `dedup_key` at most 255.
//!
//! 202 is success; 429, 5xx and network errors are retried with backoff;
//! 400 (an invalid event) is not — PagerDuty's own retry advice. The routing
//! key is never logged, and the URL only redacted.

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::event::{rfc3339, Action};
use super::{http, with_retries, Delivery, Failure};

/// PagerDuty's limits on `payload.summary` and `dedup_key`.
const MAX_SUMMARY: usize = 1024;
const MAX_DEDUP_KEY: usize = 255;

pub(super) async fn run(mut rx: mpsc::Receiver<Delivery>) {
    while let Some(d) = rx.recv().await {
        let Some(pd) = d.notify.pagerduty.clone() else { continue };
        let shown = crate::telemetry::redacted_url(&pd.url);
        let body = serde_json::to_vec(&body(&d, &pd.routing_key.0)).unwrap_or_default();
        with_retries("pagerduty", &d.event, || async {
            match http::post_json(&pd.url, body.clone()).await {
                Ok((status, _)) if status.is_success() => Ok(()),
                Ok((status, _)) if status.as_u16() == 429 || status.is_server_error() => {
                    Err(Failure::Retry(format!("{shown} answered {status}")))
                }
                Ok((status, answer)) => Err(Failure::GiveUp(format!("{shown} answered {status}: {answer}"))),
                Err(e) => Err(Failure::Retry(format!("{shown}: {e}"))),
            }
        })
        .await;
    }
}

/// The Events API v2 body for one delivery.
pub(super) fn body(d: &Delivery, routing_key: &str) -> Value {
    let e = &d.event;
    let dedup_key = truncate(&e.dedup_key(&d.site), MAX_DEDUP_KEY);
    match e.action {
        Action::Resolve => json!({ "routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key }),
        Action::Trigger | Action::Info => json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "client": "Spillway",
            "payload": {
                "summary": truncate(&format!("[{}] {}", d.site, e.summary), MAX_SUMMARY),
                "source": &*d.host,
                "severity": e.severity.as_str(),
                "timestamp": rfc3339(e.at),
                "component": e.subject,
                "group": &*d.site,
                "class": e.kind.as_str(),
                "custom_details": e.details,
            },
        }),
    }
}

/// At most `max` bytes, cut at a character boundary.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::config::{NotifyConfig, Severity};
    use crate::notifications::event::{Event, Kind};

    fn delivery(event: Event) -> Delivery {
        Delivery { event, site: "dc1".into(), host: "dmz-1".into(), notify: Arc::new(NotifyConfig::default()) }
    }

    #[test]
    fn a_trigger_carries_the_v2_payload_and_its_resolve_the_same_key() {
        let at = SystemTime::UNIX_EPOCH;
        let on = Event::trigger(Kind::Spill, Severity::Warning, "onprem", "onprem spills".into(), at)
            .with_details(json!({ "in_flight": 12 }));
        let b = body(&delivery(on), "k");
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["dedup_key"], "spillway/dc1/spill/onprem");
        let p = &b["payload"];
        assert_eq!(p["summary"], "[dc1] onprem spills");
        assert_eq!(
            (&p["source"], &p["severity"], &p["component"]),
            (&json!("dmz-1"), &json!("warning"), &json!("onprem"))
        );
        assert_eq!((&p["group"], &p["class"]), (&json!("dc1"), &json!("spill")));
        assert_eq!(p["custom_details"]["in_flight"], 12);
        assert_eq!(p["timestamp"], "1970-01-01T00:00:00.000Z");
        let off = body(&delivery(Event::resolve(Kind::Spill, "onprem", "back".into(), at)), "k");
        assert_eq!(off["event_action"], "resolve");
        assert_eq!(off["dedup_key"], b["dedup_key"]);
        assert!(off.get("payload").is_none());
    }

    #[test]
    fn long_texts_are_cut_to_the_limits() {
        let long = "é".repeat(2000);
        let e = Event::trigger(Kind::Spill, Severity::Error, &"p".repeat(400), long, SystemTime::UNIX_EPOCH);
        let b = body(&delivery(e), "k");
        assert!(b["payload"]["summary"].as_str().unwrap().len() <= MAX_SUMMARY);
        assert_eq!(b["dedup_key"].as_str().unwrap().len(), MAX_DEDUP_KEY);
    }
}
