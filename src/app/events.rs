//! The controllers' events, seen from outside: once a second the watcher
//! looks at each control loop's status (as `/status` shows it) and turns what
//! changed into notifications — `controller_failing` when a loop has failed
//! `notify.controller_failing_after` ticks in a row (resolved by its next
//! success), `scale_action` when the scale controller set a new desired
//! capacity, `dns_change` when the DNS controller changed the records. The
//! controllers themselves know nothing of notifications.
//!
//! [`diff`] is pure (two looks and the threshold in, events out); the task
//! around it only samples, and ends with the controllers' shutdown token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::control::LoopView;
use super::server::Server;
use crate::config::Severity;
use crate::notifications::{Event, Kind};
use crate::sync::lock;

const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Watches the controllers until shutdown.
pub(crate) async fn watch(server: Arc<Server>) {
    let mut before: [LoopView; 2] = Default::default();
    let mut every = tokio::time::interval(LOOK_EVERY);
    loop {
        tokio::select! {
            () = server.control.shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let Some(now) = lock(&server.control.handle).as_ref().map(|h| h.observe()) else { continue };
        let failing_after = server.data.runtime.load().config.notify.controller_failing_after;
        for (was, is) in before.iter().zip(&now) {
            for event in diff(was, is, failing_after, SystemTime::now()) {
                server.notify(event);
            }
        }
        before = now;
    }
}

/// The events between two looks at one loop.
pub(crate) fn diff(was: &LoopView, is: &LoopView, failing_after: u32, at: SystemTime) -> Vec<Event> {
    let mut out = Vec::new();
    let name = is.name;
    if was.failures < failing_after && is.failures >= failing_after {
        let summary =
            format!("the {name} controller failed {} times in a row; its AWS calls are backing off", is.failures);
        let details = json!({ "consecutive_failures": is.failures, "last_error": is.last_error });
        out.push(Event::trigger(Kind::ControllerFailing, Severity::Error, name, summary, at).with_details(details));
    } else if was.failures >= failing_after && is.failures < failing_after {
        out.push(Event::resolve(Kind::ControllerFailing, name, format!("the {name} controller works again"), at));
    }
    if identity(&is.action) != identity(&was.action) && !is.action.is_null() {
        out.push(action_event(name, &is.action, at));
    }
    out
}

/// An action without its progress (a DNS change's `status` moves from
/// PENDING to INSYNC: still the same change).
fn identity(action: &Value) -> Value {
    let mut a = action.clone();
    if let Value::Object(m) = &mut a {
        m.remove("status");
    }
    a
}

fn action_event(name: &str, action: &Value, at: SystemTime) -> Event {
    if name == "scale" {
        let summary = format!("Auto Scaling desired capacity set to {}", action["desired"]);
        Event::info(Kind::ScaleAction, name, summary, at).with_details(action.clone())
    } else {
        let w = &action["weights"];
        let summary = format!(
            "Route 53 weights set to on-prem {} / AWS {} ({})",
            w["onprem"],
            w["aws"],
            action["reason"].as_str().unwrap_or("?")
        );
        Event::info(Kind::DnsChange, name, summary, at).with_details(action.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifications::event::Action;

    fn look(name: &'static str, failures: u32, action: Value) -> LoopView {
        LoopView { name, failures, last_error: Some("Throttling".into()), action }
    }

    #[test]
    fn failing_is_reported_once_at_the_threshold_and_resolved_on_success() {
        let at = SystemTime::UNIX_EPOCH;
        let steps = [0, 1, 2, 3, 4, 5, 0, 0];
        let mut out = Vec::new();
        for pair in steps.windows(2) {
            out.extend(diff(&look("scale", pair[0], Value::Null), &look("scale", pair[1], Value::Null), 3, at));
        }
        let got: Vec<_> = out.iter().map(|e| (e.kind, e.action)).collect();
        assert_eq!(got, [(Kind::ControllerFailing, Action::Trigger), (Kind::ControllerFailing, Action::Resolve)]);
        assert_eq!(out[0].details["last_error"], "Throttling");
        assert_eq!(out[0].subject, "scale");
    }

    #[test]
    fn a_new_action_is_one_informational_event() {
        let at = SystemTime::UNIX_EPOCH;
        let first = json!({ "at": "t1", "desired": 4 });
        let none = look("scale", 0, Value::Null);
        let one = look("scale", 0, first.clone());
        let events = diff(&none, &one, 3, at);
        assert_eq!((events.len(), events[0].kind, events[0].action), (1, Kind::ScaleAction, Action::Info));
        assert!(events[0].summary.contains('4'), "{}", events[0].summary);
        assert!(diff(&one, &one, 3, at).is_empty(), "the same action is not news");
        let change = json!({ "at": "t2", "weights": { "onprem": 128, "aws": 127 }, "reason": "spill" });
        let dns = diff(&look("dns", 0, Value::Null), &look("dns", 0, change), 3, at);
        assert_eq!(dns[0].kind, Kind::DnsChange);
        assert!(dns[0].summary.contains("128"), "{}", dns[0].summary);
        let pending = json!({ "at": "t2", "weights": { "onprem": 128, "aws": 127 }, "status": "PENDING" });
        let insync = json!({ "at": "t2", "weights": { "onprem": 128, "aws": 127 }, "status": "INSYNC" });
        assert!(diff(&look("dns", 0, pending), &look("dns", 0, insync), 3, at).is_empty(), "progress is not news");
    }
}
