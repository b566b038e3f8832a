//! PagerDuty Events API v2 through the real binary: a loopback fake of the
//! enqueue endpoint checks every body against the v2 schema (an invalid one
//! gets 400, as PagerDuty answers) and records the valid ones. A spill
//! episode is one trigger and, once it is over, one resolve with the same
//! `dedup_key`; ten DR flaps page a bounded number of times and leave no
//! trigger without its resolve. `spillway check` refuses a routing-key file
//! it cannot read or that is empty.

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use support::{eventually, Origin, Spillway, ADMIN};

const KEY: &str = "0123456789abcdef0123456789abcdef";

#[derive(Default)]
struct Seen {
    events: Vec<Value>,
    invalid: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

/// What the Events API v2 refuses in an alert event (`None`: valid).
fn schema_error(v: &Value) -> Option<String> {
    let text = |field: &Value| field.as_str().map(str::to_owned);
    if text(&v["routing_key"]).is_none_or(|k| k.len() != 32) {
        return Some("routing_key must be 32 characters".into());
    }
    let action = text(&v["event_action"])?;
    if !["trigger", "acknowledge", "resolve"].contains(&action.as_str()) {
        return Some(format!("event_action {action:?}"));
    }
    if let Some(key) = v.get("dedup_key") {
        if text(key).is_none_or(|k| k.is_empty() || k.len() > 255) {
            return Some("dedup_key must be a string of 1 to 255 characters".into());
        }
    } else if action != "trigger" {
        return Some("dedup_key is required unless event_action is trigger".into());
    }
    if action == "trigger" {
        let p = &v["payload"];
        if text(&p["summary"]).is_none_or(|s| s.is_empty() || s.len() > 1024) {
            return Some("payload.summary must be 1 to 1024 characters".into());
        }
        if text(&p["source"]).is_none_or(|s| s.is_empty()) {
            return Some("payload.source is required".into());
        }
        if !["critical", "error", "warning", "info"].contains(&p["severity"].as_str().unwrap_or("")) {
            return Some("payload.severity must be critical, error, warning or info".into());
        }
        for field in ["timestamp", "component", "group", "class"] {
            if p.get(field).is_some_and(|f| !f.is_string()) {
                return Some(format!("payload.{field} must be a string"));
            }
        }
        if p.get("custom_details").is_some_and(|d| !d.is_object()) {
            return Some("payload.custom_details must be an object".into());
        }
    }
    None
}

/// The fake enqueue endpoint: 202 for a valid event, 400 with the reason otherwise.
async fn fake_pagerduty() -> (SocketAddr, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Shared = Arc::default();
    let store = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let store = store.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let store = store.clone();
                    async move { Ok::<_, Infallible>(answer(req, &store).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
            });
        }
    });
    (addr, seen)
}

async fn answer(req: Request<Incoming>, store: &Shared) -> Response<Full<Bytes>> {
    let path_ok = req.uri().path() == "/v2/enqueue" && req.method() == Method::POST;
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let error = match (&parsed, path_ok) {
        (_, false) => Some("not POST /v2/enqueue".to_string()),
        (Err(e), _) => Some(format!("invalid JSON: {e}")),
        (Ok(v), _) => schema_error(v),
    };
    let mut seen = store.lock().unwrap();
    let (status, text) = match error {
        Some(e) => {
            seen.invalid.push(e.clone());
            (StatusCode::BAD_REQUEST, format!("{{\"status\":\"invalid event\",\"errors\":[{e:?}]}}"))
        }
        None => {
            seen.events.push(parsed.unwrap());
            (StatusCode::ACCEPTED, "{\"status\":\"success\",\"message\":\"Event processed\"}".to_string())
        }
    };
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp
}

#[test]
fn the_fake_refuses_what_pagerduty_refuses() {
    let good = serde_json::json!({
        "routing_key": KEY, "event_action": "trigger", "dedup_key": "k",
        "payload": { "summary": "s", "source": "h", "severity": "warning" },
    });
    assert_eq!(schema_error(&good), None);
    for (path, bad) in [
        ("/routing_key", Value::Null),
        ("/payload/summary", Value::Null),
        ("/payload/source", Value::Null),
        ("/payload/severity", Value::from("fatal")),
        ("/payload/summary", Value::from("x".repeat(1025))),
    ] {
        let mut v = good.clone();
        *v.pointer_mut(path).unwrap() = bad;
        assert!(schema_error(&v).is_some(), "{path}");
    }
    let resolve = serde_json::json!({ "routing_key": KEY, "event_action": "resolve" });
    assert!(schema_error(&resolve).is_some(), "a resolve needs its dedup_key");
}

/// One on-prem pool probed every 100 ms and a cloud pool; PagerDuty at `pd`.
fn config(pd: SocketAddr, onprem: &Origin, cloud: &Origin, notify: &str, spill: &str) -> String {
    format!(
        "{ADMIN}\n[runtime]\nsite = \"dc1\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [pools.onprem]\nendpoints = [\"{}\"]\nconnect_timeout = \"200ms\"\n\
         health = {{ path = \"/health\", interval = \"100ms\", timeout = \"100ms\", unhealthy_after = 1, healthy_after = 1 }}\n\n\
         [pools.aws]\nrole = \"cloud\"\nendpoints = [\"{}\"]\n\n\
         [[route]]\nprimary = \"onprem\"\noverflow = \"aws\"\n\n\
         [spill]\ntick = \"50ms\"\n{spill}\n\n\
         [dr]\nfailback_after = \"300ms\"\n\n\
         [notify]\n{notify}\n\n[notify.pagerduty]\nrouting_key_file = \"pd.key\"\nurl = \"http://{pd}/v2/enqueue\"\n",
        onprem.endpoint(),
        cloud.endpoint()
    )
}

async fn start(config: &str) -> Spillway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pd.key"), format!("{KEY}\n")).unwrap();
    Spillway::start_in(dir, config).await
}

fn of_kind(seen: &Shared, kind: &str) -> Vec<Value> {
    let seen = seen.lock().unwrap();
    assert!(seen.invalid.is_empty(), "the fake refused: {:?}", seen.invalid);
    seen.events
        .iter()
        .filter(|e| e["dedup_key"].as_str().is_some_and(|k| k.contains(&format!("/{kind}/"))))
        .cloned()
        .collect()
}

fn actions(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["event_action"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spill_episode_is_one_trigger_and_one_resolve_with_its_key() {
    let (pd, seen) = fake_pagerduty().await;
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let spill = "mode = \"static\"\nlatency_slo = \"40ms\"\nenter_after = \"150ms\"\nexit_after = \"300ms\"";
    let sw = start(&config(pd, &onprem, &cloud, "resolve_after = \"300ms\"", spill)).await;
    // Slow writes (they never spill) keep the on-prem p99 over the SLO.
    let url = sw.url("web", "/save?delay_ms=120");
    eventually(Duration::from_secs(15), "a spill trigger", || async {
        let _ = support::request(Method::POST, &url, vec![], b"x").await;
        !of_kind(&seen, "spill").is_empty()
    })
    .await;
    eventually(Duration::from_secs(15), "the spill's resolve", || async { of_kind(&seen, "spill").len() >= 2 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spill = of_kind(&seen, "spill");
    assert_eq!(actions(&spill), ["trigger", "resolve"], "{spill:#?}");
    let (on, off) = (&spill[0], &spill[1]);
    assert_eq!(on["dedup_key"], "spillway/dc1/spill/onprem");
    assert_eq!(off["dedup_key"], on["dedup_key"]);
    assert_eq!(on["routing_key"], KEY);
    let p = &on["payload"];
    assert_eq!(
        (&p["severity"], &p["component"], &p["group"], &p["class"]),
        (&"warning".into(), &"onprem".into(), &"dc1".into(), &"spill".into())
    );
    assert!(p["source"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(p["custom_details"]["to"], "spilling");
    assert!(!sw.log().contains(KEY), "the routing key is never logged");
    assert_eq!(sw.metric("spillway_notifications_sent_total").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_dr_flaps_page_a_bounded_number_of_times_and_orphan_no_trigger() {
    let (pd, seen) = fake_pagerduty().await;
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    // No hold: every flap is an episode; the bucket (3, no refill in the test)
    // bounds them. Each flap is a site DR episode (`dr_engaged`, the page;
    // the pool's own `dr` is information PagerDuty never gets): its
    // failback latch is short here, so writes come back and it resolves.
    let notify = "resolve_after = \"0s\"\nburst = 3\nrefill_every = \"1h\"";
    let sw = start(&config(pd, &onprem, &cloud, notify, "disaster_after = \"200ms\"")).await;
    let dr_url = sw.admin_url("/status");
    let mode = || async {
        let s = support::get(&dr_url).await.unwrap().json();
        s["gates"]["onprem"]["mode"].as_str().unwrap_or("").to_string()
    };
    for flap in 0..10 {
        onprem.set_healthy(false);
        eventually(Duration::from_secs(10), &format!("DR #{flap}"), || async { mode().await == "disaster_recovery" })
            .await;
        onprem.set_healthy(true);
        eventually(Duration::from_secs(10), &format!("normal #{flap}"), || async { mode().await == "normal" }).await;
    }
    eventually(Duration::from_secs(10), "the last resolve", || async {
        let all = seen.lock().unwrap().events.clone();
        balanced(&all).is_empty()
    })
    .await;
    let all = seen.lock().unwrap().events.clone();
    let triggers = actions(&all).iter().filter(|a| *a == "trigger").count();
    assert!((1..=3).contains(&triggers), "burst 3 bounds the pages: {triggers}");
    assert_eq!(actions(&of_kind(&seen, "dr_engaged")).first().map(String::as_str), Some("trigger"));
    assert!(of_kind(&seen, "dr").is_empty(), "the pool's outage is information: the site's episode is the one page");
    assert!(sw.metric("spillway_notifications_suppressed_total").await >= 7.0, "the other flaps were rate-limited");
}

/// The dedup keys whose last event is a trigger (an open, orphaned alert).
fn balanced(events: &[Value]) -> Vec<String> {
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for e in events {
        last.insert(e["dedup_key"].as_str().unwrap().into(), e["event_action"].as_str().unwrap().into());
    }
    last.into_iter().filter(|(_, a)| a == "trigger").map(|(k, _)| k).collect()
}

#[tokio::test]
async fn check_refuses_an_unreadable_or_empty_routing_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "{ADMIN}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n[pools.p]\nendpoints = [\"127.0.0.1:1\"]\n[[route]]\nprimary = \"p\"\n[notify.pagerduty]\nrouting_key_file = \"pd.key\"\n"
    );
    let path = dir.path().join("spillway.toml");
    std::fs::write(&path, &base).unwrap();
    for key in [None, Some(""), Some("  \n"), Some("too-short")] {
        let key_path = dir.path().join("pd.key");
        let _ = std::fs::remove_file(&key_path);
        if let Some(k) = key {
            std::fs::write(&key_path, k).unwrap();
        }
        let (code, _, stderr) = support::spillway::check(&path);
        assert_eq!(code, 1, "{key:?}: {stderr}");
        assert!(stderr.contains("notify.pagerduty.routing_key_file"), "{key:?}: {stderr}");
    }
    std::fs::write(dir.path().join("pd.key"), KEY).unwrap();
    let (code, _, stderr) = support::spillway::check(&path);
    assert_eq!(code, 0, "{stderr}");
}
