//! Mode changes, failed reloads and a failing controller reach the
//! `[notify] webhook`: a real HTTP receiver on loopback collects what the
//! binary POSTs.

#[path = "support/moto.rs"]
mod moto;
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use support::{eventually, Origin, Spillway, ADMIN};

type Events = Arc<Mutex<Vec<serde_json::Value>>>;

/// A webhook receiver: every POST body is parsed as JSON and kept.
async fn receiver() -> (SocketAddr, Events) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let events: Events = Arc::default();
    let store = events.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let store = store.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let store = store.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        if let Ok(v) = serde_json::from_slice(&body) {
                            store.lock().unwrap().push(v);
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
            });
        }
    });
    (addr, events)
}

fn has(events: &Events, kind: &str, field: &str, value: &str) -> bool {
    events.lock().unwrap().iter().any(|e| e["kind"] == kind && e["details"][field] == value)
}

fn first(events: &Events, kind: &str) -> serde_json::Value {
    events.lock().unwrap().iter().find(|e| e["kind"] == kind).cloned().unwrap()
}

fn config(webhook: SocketAddr, onprem: &str, cloud: &Origin) -> String {
    format!(
        "{ADMIN}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [pools.onprem]\nendpoints = [\"{onprem}\"]\nconnect_timeout = \"200ms\"\n\
         health = {{ path = \"/healthz\", interval = \"200ms\", timeout = \"150ms\", unhealthy_after = 1, healthy_after = 1 }}\n\n\
         [pools.aws]\nrole = \"cloud\"\nendpoints = [\"{}\"]\n\n\
         [[route]]\nprimary = \"onprem\"\noverflow = \"aws\"\n\n\
         [spill]\ntick = \"50ms\"\ndisaster_after = \"1s\"\n\n[notify]\nwebhook = \"http://{webhook}/hook\"\n",
        cloud.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disaster_recovery_and_a_failed_reload_are_notified() {
    let (hook, events) = receiver().await;
    let cloud = Origin::start("cloud").await;
    // The on-prem pool points at a port nobody listens on: every probe fails.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let sw = Spillway::start(&config(hook, &dead.to_string(), &cloud)).await;
    eventually(Duration::from_secs(10), "a DR notification", || async {
        has(&events, "dr", "to", "disaster_recovery")
    })
    .await;
    let dr = first(&events, "dr");
    assert_eq!((&dr["severity"], &dr["action"]), (&"warning".into(), &"info".into()), "the pool's outage informs");
    assert_eq!(dr["details"]["pool"], "onprem");
    eventually(Duration::from_secs(10), "the site's DR page", || async {
        events.lock().unwrap().iter().any(|e| e["kind"] == "dr_engaged")
    })
    .await;
    let site = first(&events, "dr_engaged");
    assert_eq!((&site["severity"], &site["action"]), (&"critical".into(), &"trigger".into()));
    assert_eq!(site["dedup_key"], "spillway/local/dr_engaged/local");

    sw.write_config("[[listener]]\nname = broken");
    eventually(Duration::from_secs(10), "a reload-failure notification", || async {
        events.lock().unwrap().iter().any(|e| e["kind"] == "reload_failed")
    })
    .await;
    let failed = first(&events, "reload_failed");
    assert_eq!((&failed["severity"], &failed["action"]), (&"error".into(), &"trigger".into()));
    assert!(failed["details"]["error"].as_str().unwrap().contains("line"), "{failed}");
}

/// The scale controller's AWS calls are throttled (moto behind a proxy that
/// answers `Throttling`): after `controller_failing_after` failed ticks one
/// `controller_failing` trigger; once the throttling ends, its resolve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_controller_is_notified_once_and_resolved() {
    let (hook, events) = receiver().await;
    let moto = moto::Moto::start().await;
    moto::create_group(&moto::sdk_config(&moto.url()).await, "burst", 1, 0, 4).await;
    let throttle = moto::ThrottleProxy::start(moto.addr).await;
    throttle.set_throttling(true);
    let origin = Origin::start("app").await;
    let config = format!(
        "{}\n[scale]\nauto_scaling_group = \"burst\"\nper_instance_rps = 50\nmin = 0\nmax = 4\ninterval = \"200ms\"\n\n\
         [notify]\nwebhook = \"http://{hook}/hook\"\nresolve_after = \"0s\"\ncontroller_failing_after = 2\n",
        support::simple_config(&[&origin], "", "")
    );
    let env = [
        ("AWS_ENDPOINT_URL", throttle.url()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    let sw = support::Spillway::start_in_env(tempfile::tempdir().unwrap(), &config, &env).await;
    let failing = |action: &'static str| {
        let events = events.clone();
        move || {
            let n = events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e["kind"] == "controller_failing" && e["action"] == action)
                .count();
            async move { n > 0 }
        }
    };
    eventually(Duration::from_secs(30), "a controller_failing trigger", failing("trigger")).await;
    let trigger = first(&events, "controller_failing");
    assert_eq!((&trigger["subject"], &trigger["severity"]), (&"scale".into(), &"error".into()));
    assert!(trigger["details"]["last_error"].as_str().is_some_and(|e| e.contains("hrottl")), "{trigger}");
    throttle.set_throttling(false);
    eventually(Duration::from_secs(60), "its resolve", failing("resolve")).await;
    let n = events.lock().unwrap().iter().filter(|e| e["kind"] == "controller_failing").count();
    assert_eq!(n, 2, "one trigger, one resolve; log:\n{}", sw.log());
}

#[tokio::test]
async fn check_refuses_a_webhook_that_is_not_http() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let cloud_less = format!(
        "{ADMIN}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n[pools.p]\nendpoints = [\"127.0.0.1:1\"]\n[[route]]\nprimary = \"p\"\n[notify]\nwebhook = \"ftp://example.com/\"\n"
    );
    std::fs::write(&path, cloud_less).unwrap();
    let (code, _, stderr) = support::spillway::check(&path);
    assert_eq!(code, 1);
    assert!(stderr.contains("notify.webhook"), "{stderr}");
}
