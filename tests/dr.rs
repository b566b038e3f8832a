//! Disaster recovery end to end (issue 12): the real binary between a
//! loopback on-prem origin and a loopback cloud origin, a loopback webhook,
//! and moto for the Auto Scaling group. On-prem is "lost" when its health
//! probes fail; a database reports its role in `x-db-role` on `/health`.

mod support;

#[path = "support/moto.rs"]
mod moto;

use std::time::{Duration, Instant};

use http::Method;
use support::webhook::{self, Events};
use support::{eventually, request, Origin, Resp, Spillway, ADMIN};

const GROUP: &str = "dr-burst";
const READ_ONLY: &str = "read only: DR pending\n";

struct Knobs<'a> {
    engage: &'a str,
    failback_after: &'a str,
    cloud_probe: &'a str,
    /// Watch the cloud's replica lag with an RPO budget of 30 s.
    rpo: bool,
    /// More `[dr]` keys.
    dr_extra: String,
    extra: String,
}

impl Default for Knobs<'_> {
    fn default() -> Self {
        Knobs {
            engage: "confirm",
            failback_after: "1h",
            cloud_probe: "100ms",
            rpo: false,
            dr_extra: String::new(),
            extra: String::new(),
        }
    }
}

fn config(onprem: &Origin, cloud: &Origin, hook: std::net::SocketAddr, k: &Knobs) -> String {
    let probe = |interval: &str, extra: &str| {
        format!("{{ path = \"/health\", interval = \"{interval}\", timeout = \"90ms\", unhealthy_after = 1, healthy_after = 1, role_header = \"x-db-role\"{extra} }}")
    };
    let (lag, budget) = if k.rpo { (", lag_header = \"x-replica-lag\"", "rpo_budget = \"30s\"\n") } else { ("", "") };
    format!(
        "{ADMIN}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [pools.onprem]\nendpoints = [\"{}\"]\nconnect_timeout = \"200ms\"\nhealth = {}\n\n\
         [pools.aws]\nrole = \"cloud\"\nendpoints = [\"{}\"]\nhealth = {}\n\n\
         [[route]]\nprimary = \"onprem\"\noverflow = \"aws\"\n\n\
         [spill]\ntick = \"50ms\"\ndisaster_after = \"300ms\"\nsession_cookie = \"sid\"\n\n\
         [dr]\nengage = \"{}\"\nfailback_after = \"{}\"\nretry_after = \"7s\"\nread_only_body = {READ_ONLY:?}\n{budget}{}\n\
         [notify]\nwebhook = \"http://{hook}/hook\"\nresolve_after = \"0s\"\n{}",
        onprem.endpoint(),
        probe("100ms", ""),
        cloud.endpoint(),
        probe(k.cloud_probe, lag),
        k.engage,
        k.failback_after,
        k.dr_extra,
        k.extra
    )
}

async fn start(k: Knobs<'_>) -> (Origin, Origin, Events, Spillway) {
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let (hook, events) = webhook::receiver().await;
    let sw = Spillway::start(&config(&onprem, &cloud, hook, &k)).await;
    wait_dr(&sw, "normal").await;
    (onprem, cloud, events, sw)
}

async fn dr(sw: &Spillway) -> serde_json::Value {
    sw.status().await["dr"].clone()
}

async fn wait_dr(sw: &Spillway, state: &str) {
    eventually(Duration::from_secs(10), &format!("dr.state == {state}"), || async { dr(sw).await["state"] == state })
        .await;
}

/// A proxied request; `sid` is the session cookie (pins follow it).
async fn send(sw: &Spillway, method: Method, sid: &str) -> Resp {
    let cookie = vec![("cookie", format!("sid={sid}"))];
    request(method, &sw.url("web", "/page"), cookie, b"x").await.expect("proxied request")
}

/// `POST /dr/<what>` on the admin API, as JSON (no token configured).
async fn admin(sw: &Spillway, what: &str) -> Resp {
    let json = vec![("content-type", "application/json".to_string())];
    request(Method::POST, &sw.admin_url(&format!("/dr/{what}")), json, b"{}").await.expect("admin call")
}

/// `[scale]` over moto's group: dr_capacity 6, a tick every 500 ms.
fn scale_section() -> String {
    format!(
        "\n[scale]\nregion = \"us-east-1\"\nauto_scaling_group = \"{GROUP}\"\nper_instance_rps = 100\n\
         min = 1\nmax = 10\ndr_capacity = 6\ninterval = \"500ms\"\nwarmup = \"1s\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_mode_losing_onprem_reads_from_the_cloud_refuses_writes_and_raises_the_group() {
    let moto = moto::Moto::start().await;
    let sdk = moto::sdk_config(&moto.url()).await;
    moto::create_group(&sdk, GROUP, 1, 1, 10).await;
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let (hook, events) = webhook::receiver().await;
    let knobs = Knobs { extra: scale_section(), ..Knobs::default() };
    let sw = Spillway::start_env(&config(&onprem, &cloud, hook, &knobs), &moto.binary_env()).await;
    wait_dr(&sw, "normal").await;
    assert_eq!(send(&sw, Method::POST, "w").await.origin(), Some("onprem"));
    let writes_before = onprem.writes();

    onprem.set_healthy(false);
    wait_dr(&sw, "dr_pending").await;
    let pending_at = Instant::now();
    // Two scale ticks (500 ms each) and a little for moto.
    eventually(Duration::from_millis(2_500), "desired capacity = dr_capacity", || async {
        moto::desired(&sdk, GROUP).await == 6
    })
    .await;
    assert!(pending_at.elapsed() < Duration::from_millis(2_500));

    let read = send(&sw, Method::GET, "w").await;
    assert_eq!((read.status, read.origin()), (200, Some("cloud")), "reads go to the cloud, pinned ones too");
    let write = send(&sw, Method::POST, "w").await;
    assert_eq!(write.status, 503);
    assert_eq!(write.header("retry-after"), Some("7"));
    assert_eq!(write.header("x-spillway-error"), Some("read_only"));
    assert_eq!(write.text(), READ_ONLY);
    // A read that asks the application to act as a write is a write.
    let headers = vec![("cookie", "sid=o".to_string()), ("x-http-method-override", "DELETE".to_string())];
    let cloud_hits = cloud.hits();
    let disguised = request(Method::GET, &sw.url("web", "/page"), headers, b"").await.expect("proxied request");
    assert_eq!((disguised.status, disguised.header("x-spillway-error")), (503, Some("read_only")));
    assert_eq!(cloud.hits(), cloud_hits, "the disguised write never reached the cloud");
    assert_eq!((onprem.writes(), cloud.writes()), (writes_before, 0), "no write reached either database");

    let status = dr(&sw).await;
    assert_eq!((status["reason"].as_str(), status["writes"].as_str()), (Some("onprem_lost"), Some("refused")));
    assert_eq!(sw.metric("spillway_dr_state").await, 1.0);
    eventually(Duration::from_secs(5), "a dr_pending notification", || async {
        webhook::count(&events, "dr_pending", Some("critical")) >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(webhook::count(&events, "dr_pending", None), 1, "one notification for one transition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_reporting_its_database_promoted_takes_the_writes_within_one_probe_interval() {
    let (onprem, cloud, events, sw) = start(Knobs { cloud_probe: "1s", ..Knobs::default() }).await;
    onprem.set_healthy(false);
    wait_dr(&sw, "dr_pending").await;
    assert_eq!(send(&sw, Method::POST, "w").await.status, 503);
    cloud.set_role(Some("primary"));
    let promoted = Instant::now();
    eventually(Duration::from_secs(5), "a POST served by the cloud", || async {
        send(&sw, Method::POST, "w").await.origin() == Some("cloud")
    })
    .await;
    // One probe interval (1 s), plus a tick and scheduling on a busy machine.
    let took = promoted.elapsed();
    assert!(took < Duration::from_millis(1_500), "writes moved after {took:?}");
    assert_eq!(dr(&sw).await["reason"], "cloud_promoted");
    assert_eq!(onprem.writes(), 0);
    eventually(Duration::from_secs(5), "a dr_engaged notification", || async {
        webhook::count(&events, "dr_engaged", Some("critical")) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_stay_in_the_cloud_when_onprem_returns_until_failback_and_survive_a_reload() {
    let (onprem, cloud, _events, sw) = start(Knobs::default()).await;
    onprem.set_healthy(false);
    wait_dr(&sw, "dr_pending").await;
    let refused = admin(&sw, "failback").await;
    assert_eq!((refused.status, refused.json()["reason"].as_str()), (409, Some("not_engaged")));
    let engaged = admin(&sw, "engage").await;
    assert_eq!(engaged.status, 200, "{}", engaged.text());
    assert_eq!(engaged.json()["dr"]["state"], "dr_active");
    assert_eq!(send(&sw, Method::POST, "w").await.origin(), Some("cloud"));
    let early = admin(&sw, "failback").await;
    assert_eq!((early.status, early.json()["reason"].as_str()), (409, Some("onprem_unreachable")));

    // A reload keeps the state.
    let text = std::fs::read_to_string(&sw.config_path).unwrap().replace(READ_ONLY.trim_end(), "changed");
    sw.write_config(&text);
    let version = sw.version_of(&text);
    sw.wait_version(&version).await;
    assert_eq!(dr(&sw).await["state"], "dr_active");

    onprem.set_healthy(true);
    eventually(Duration::from_secs(5), "on-prem probed healthy", || async {
        dr(&sw).await["observed"]["onprem_reachable"] == true
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..10 {
        assert_eq!(send(&sw, Method::POST, "w").await.origin(), Some("cloud"), "probes alone never move writes back");
    }
    assert_eq!(onprem.writes(), 0);
    assert_eq!(dr(&sw).await["state"], "dr_active");

    // Without a token, a state-changing admin call must be JSON.
    let plain = request(Method::POST, &sw.admin_url("/dr/failback"), vec![], b"").await.unwrap();
    assert_eq!(plain.status, 415);
    let back = admin(&sw, "failback").await;
    assert_eq!((back.status, back.json()["dr"]["state"].as_str()), (200, Some("normal")));
    assert_eq!(send(&sw, Method::POST, "w").await.origin(), Some("onprem"));
    assert!(cloud.writes() >= 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onprem_flapping_for_a_minute_during_dr_gets_no_write() {
    let (onprem, cloud, _events, sw) = start(Knobs::default()).await;
    assert_eq!(admin(&sw, "engage").await.status, 200, "manual engage with on-prem healthy");
    let start = Instant::now();
    let (mut sent, mut flips, mut was_up) = (0, 0, true);
    while start.elapsed() < Duration::from_secs(60) {
        let up = (start.elapsed().as_secs() / 3) % 2 == 1;
        if up != was_up {
            flips += 1;
            was_up = up;
        }
        onprem.set_healthy(up);
        onprem.set_role(Some(if up { "replica" } else { "unknown" }));
        let r = send(&sw, Method::POST, &format!("s{sent}")).await;
        assert_eq!((r.status, r.origin()), (200, Some("cloud")));
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(flips >= 10, "on-prem flapped {flips} times");
    assert_eq!(onprem.writes(), 0, "zero writes reached on-prem");
    assert_eq!(cloud.writes(), sent);
    assert_eq!(dr(&sw).await["state"], "dr_active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_engages_at_once_and_fails_back_only_after_failback_after() {
    let knobs = Knobs { engage: "auto", failback_after: "3s", ..Knobs::default() };
    let (onprem, _cloud, _events, sw) = start(knobs).await;
    onprem.set_healthy(false);
    wait_dr(&sw, "dr_active").await;
    assert_eq!(dr(&sw).await["reason"], "onprem_lost");
    assert_eq!(send(&sw, Method::POST, "writer").await.origin(), Some("cloud"), "auto: no dr_pending");
    let metrics = support::get(&sw.admin_url("/metrics")).await.unwrap().text();
    assert!(!metrics.contains("to=\"dr_pending\""), "auto mode never enters dr_pending");

    onprem.set_healthy(true);
    wait_dr(&sw, "failback_pending").await;
    let healthy = Instant::now();
    // Reads return early; the pinned writer's reads stay with its writes.
    assert_eq!(send(&sw, Method::GET, "reader").await.origin(), Some("onprem"));
    assert_eq!(send(&sw, Method::GET, "writer").await.origin(), Some("cloud"));
    assert_eq!(send(&sw, Method::POST, "writer").await.origin(), Some("cloud"));
    eventually(Duration::from_secs(10), "writes back on-prem", || async {
        send(&sw, Method::POST, "writer").await.origin() == Some("onprem")
    })
    .await;
    assert!(healthy.elapsed() >= Duration::from_millis(2_800), "failed back after {:?}", healthy.elapsed());
    assert_eq!(dr(&sw).await["reason"], "failback_held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dr_calls_need_the_admin_token() {
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let (hook, events) = webhook::receiver().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
    let text =
        config(&onprem, &cloud, hook, &Knobs::default()).replacen("[admin]\n", "[admin]\ntoken_file = \"token\"\n", 1);
    let sw = Spillway::start_in(dir, &text).await;
    let url = sw.admin_url("/dr/engage");
    assert_eq!(request(Method::POST, &url, vec![], b"").await.unwrap().status, 401);
    let bearer = || vec![("authorization", "Bearer s3cret".to_string())];
    let ok = request(Method::POST, &url, bearer(), b"").await.unwrap();
    assert_eq!((ok.status, ok.json()["dr"]["reason"].as_str()), (200, Some("operator_engage")));
    assert_eq!(send(&sw, Method::GET, "r").await.origin(), Some("cloud"), "engaged: reads move too");
    eventually(Duration::from_secs(5), "a dr_engaged notification", || async {
        webhook::count(&events, "dr_engaged", Some("critical")) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpo_guard_fires_once_and_resolves_once() {
    let (_onprem, cloud, events, sw) = start(Knobs { rpo: true, ..Knobs::default() }).await;
    let at_risk = || webhook::count(&events, "replica_lag_rpo_at_risk", Some("critical"));
    let resolved = || webhook::count(&events, "replica_lag_rpo_at_risk", Some("info"));
    let lag_gauge = || async {
        let m = support::get(&sw.admin_url("/metrics")).await.unwrap().text();
        m.lines().find(|l| l.starts_with("spillway_replica_lag_seconds{pool=\"aws\"}")).map(str::to_string)
    };
    cloud.set_lag(Some(10.0));
    eventually(Duration::from_secs(5), "the lag gauge at 10 s", || async {
        lag_gauge().await.is_some_and(|l| l.ends_with(" 10"))
    })
    .await;
    cloud.set_lag(Some(100.0));
    eventually(Duration::from_secs(5), "an RPO-at-risk event", || async { at_risk() == 1 }).await;
    assert!(lag_gauge().await.unwrap().ends_with(" 100"));
    assert_eq!(sw.status().await["gates"]["aws"]["rpo_at_risk"], true);
    cloud.set_lag(Some(200.0));
    tokio::time::sleep(Duration::from_millis(800)).await;
    cloud.set_lag(Some(5.0));
    eventually(Duration::from_secs(5), "the resolve", || async { resolved() == 1 }).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!((at_risk(), resolved()), (1, 1), "one event, one resolve");
    let event = events.lock().unwrap().iter().find(|e| e["kind"] == "replica_lag_rpo_at_risk").cloned().unwrap();
    assert_eq!((event["details"]["pool"].as_str(), event["details"]["budget_s"].as_f64()), (Some("aws"), Some(30.0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_raises_the_group_times_it_and_restores_it_without_moving_users() {
    let moto = moto::Moto::start().await;
    let sdk = moto::sdk_config(&moto.url()).await;
    moto::create_group(&sdk, GROUP, 2, 1, 10).await;
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let (hook, events) = webhook::receiver().await;
    let knobs = Knobs { extra: scale_section(), ..Knobs::default() };
    let sw = Spillway::start_env(&config(&onprem, &cloud, hook, &knobs), &moto.binary_env()).await;
    eventually(Duration::from_secs(10), "the controller settled at 2", || async {
        moto::desired(&sdk, GROUP).await == 2
    })
    .await;
    let started = admin(&sw, "drill").await;
    assert_eq!(started.status, 202, "{}", started.text());
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while dr(&sw).await["last_drill"].is_null() {
        assert!(Instant::now() < deadline, "no drill report: {}", dr(&sw).await);
        peak = peak.max(moto::desired(&sdk, GROUP).await);
        let r = send(&sw, Method::POST, "u").await;
        assert_eq!(r.origin(), Some("onprem"), "a drill moves no user");
    }
    let report = dr(&sw).await["last_drill"].clone();
    assert_eq!(report["outcome"], "passed", "{report}");
    assert_eq!((report["previous_desired"].as_u64(), report["target"].as_u64()), (Some(2), Some(6)));
    assert!(report["to_in_service_secs"].as_f64().is_some_and(|s| s < 10.0), "{report}");
    assert_eq!(report["restored"], true);
    assert_eq!(peak.max(6), 6);
    assert_eq!(dr(&sw).await["state"], "normal");
    // The controller does not raise the group again once the drill is over.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(moto::desired(&sdk, GROUP).await, 2, "the previous desired capacity is back");
    eventually(Duration::from_secs(5), "a dr_drill notification", || async {
        webhook::count(&events, "dr_drill", Some("info")) == 1
    })
    .await;
    assert_eq!(cloud.writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spillway_drill_runs_against_a_config_and_prints_the_report() {
    let moto = moto::Moto::start().await;
    let sdk = moto::sdk_config(&moto.url()).await;
    moto::create_group(&sdk, GROUP, 3, 1, 10).await;
    let zone = moto::create_zone(&sdk, "drill.example.").await;
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let (hook, _events) = webhook::receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spillway.toml");
    let dns = format!(
        "\n[dns]\nhosted_zone_id = \"{zone}\"\nrecord = \"www.drill.example.\"\ntype = \"CNAME\"\nttl = 60\n\
         onprem = {{ set_identifier = \"dc1\", value = \"dc1.drill.example.\" }}\n\
         aws = {{ set_identifier = \"aws-dc1\", value = \"elb.drill.example.\" }}\n"
    );
    let knobs = Knobs {
        dr_extra: "drill_record = \"check.drill.example.\"\n".into(),
        extra: scale_section() + &dns,
        ..Knobs::default()
    };
    std::fs::write(&path, config(&onprem, &cloud, hook, &knobs)).unwrap();
    let out = tokio::process::Command::new(support::spillway::BIN)
        .args(["drill", "--config"])
        .arg(&path)
        .envs(moto.binary_env())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (doc["report"]["outcome"].as_str(), doc["report"]["previous_desired"].as_u64()),
        (Some("passed"), Some(3))
    );
    assert!(doc["report"]["to_in_service_secs"].is_number());
    assert!(doc["report"]["to_dns_insync_secs"].is_number(), "{doc}");
    assert_eq!(moto::desired(&sdk, GROUP).await, 3, "restored");
    let sets =
        aws_sdk_route53::Client::new(&sdk).list_resource_record_sets().hosted_zone_id(&zone).send().await.unwrap();
    let drill =
        sets.resource_record_sets().iter().find(|r| r.name() == "check.drill.example.").expect("the drill record");
    assert_eq!((drill.weight(), drill.set_identifier()), (Some(0), Some("spillway-drill")), "it sends nobody anywhere");

    // Without a [scale] group there is nothing to drill: a clear error, exit 1.
    std::fs::write(&path, config(&onprem, &cloud, hook, &Knobs::default())).unwrap();
    let out = tokio::process::Command::new(support::spillway::BIN)
        .args(["drill", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("[scale]"));
}
