//! End-to-end: several real `spillway` binaries coordinating on moto's
//! DynamoDB (with moto's Auto Scaling and Route 53), each with its own
//! access key id through a counting loopback proxy, so the calls of every
//! instance are told apart. Intervals are shortened: heartbeat 500 ms,
//! lease 2 s, takeover after 6 s, hand-back after 3 s.

#[path = "support/moto.rs"]
mod moto;
mod support;

use http::Method;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moto::{create_group, create_table, create_zone, desired, eventually, sdk_config, Moto, ThrottleProxy};
use support::webhook::{receiver, Events};
use support::{webhook, Origin, Spillway, ADMIN};

const TABLE: &str = "spillway-coordination";
const LEASE: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_millis(500);
/// Each test runs several binaries against one moto with second-scale
/// deadlines: run one at a time, so a loaded machine does not stretch them.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TAKEOVER_AFTER: Duration = Duration::from_secs(6);
const DR_CAPACITY: i32 = 8;

struct World {
    _moto: Moto,
    sdk: aws_config::SdkConfig,
    proxy: ThrottleProxy,
    zone: String,
    onprem: Origin,
    cloud: Origin,
}

async fn world() -> World {
    let moto = Moto::start().await;
    let sdk = sdk_config(&moto.url()).await;
    create_table(&sdk, TABLE).await;
    for site in ["dc1", "dc2"] {
        create_group(&sdk, &format!("sportchat-burst-{site}"), 1, 0, 20).await;
    }
    let zone = create_zone(&sdk, "sportchat.example.").await;
    let proxy = ThrottleProxy::start(moto.addr).await;
    World { _moto: moto, sdk, proxy, zone, onprem: Origin::start("onprem").await, cloud: Origin::start("cloud").await }
}

fn records(site: &str, zone: &str) -> String {
    format!(
        "hosted_zone_id = \"{zone}\"\nrecord = \"www.sportchat.example.\"\n\
         onprem = {{ set_identifier = \"{site}\", value = \"{site}-edge.sportchat.example.\" }}\n\
         aws = {{ set_identifier = \"aws-{site}\", value = \"elb.sportchat.example.\" }}\n"
    )
}

/// `[[coordination.cover]]` for site `c`.
fn cover_section(w: &World, c: &str) -> String {
    format!(
        "[[coordination.cover]]\nsite = \"{c}\"\nauto_scaling_group = \"sportchat-burst-{c}\"\n\
         dr_capacity = {DR_CAPACITY}\n{}\n",
        records(c, &w.zone)
    )
}

/// A site's instance; `cover`: the other site it may take over.
fn config(w: &World, site: &str, instance: &str, cover: Option<&str>, webhook: Option<SocketAddr>) -> String {
    let cover = cover.map_or(String::new(), |c| cover_section(w, c));
    let notify = webhook.map_or(String::new(), |h| format!("[notify]\nwebhook = \"http://{h}/hook\"\n"));
    format!(
        "{ADMIN}\n[runtime]\nsite = \"{site}\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [pools.onprem]\nendpoints = [\"{}\"]\n\n[pools.aws]\nrole = \"cloud\"\nendpoints = [\"{}\"]\n\n\
         [[route]]\nprimary = \"onprem\"\noverflow = \"aws\"\n\n\
         [scale]\nauto_scaling_group = \"sportchat-burst-{site}\"\nper_instance_rps = 100\nmin = 1\nmax = 20\n\
         dr_capacity = {DR_CAPACITY}\ninterval = \"500ms\"\nwarmup = \"2s\"\nscale_in_cooldown = \"60s\"\n\n\
         [dns]\n{}interval = \"500ms\"\nmin_change_interval = \"1s\"\nverify_interval = \"2s\"\n\n\
         [coordination]\ntable = \"{TABLE}\"\ninstance_id = \"{instance}\"\nheartbeat_interval = \"500ms\"\n\
         lease_duration = \"2s\"\ntakeover_after = \"6s\"\nhandback_after = \"3s\"\n\n{cover}\n{notify}",
        w.onprem.endpoint(),
        w.cloud.endpoint(),
        records(site, &w.zone),
    )
}

/// Each instance signs with its own access key id, so the proxy tells them apart.
fn env(w: &World, key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", w.proxy.url()),
        ("AWS_ACCESS_KEY_ID", key.to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", moto::REGION.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

async fn start(w: &World, site: &str, instance: &str, cover: Option<&str>, hook: Option<SocketAddr>) -> Spillway {
    Spillway::start_with_env(&config(w, site, instance, cover, hook), &["run", "--threads", "2"], &env(w, instance))
        .await
}

async fn role(sw: &Spillway) -> String {
    sw.status().await["coordination"]["role"].as_str().unwrap_or_default().to_string()
}

fn writes_by(w: &World, key: &str) -> usize {
    w.proxy.calls_by(key).iter().filter(|c| c.is_write()).count()
}

/// The weights of `site`'s pair as moto has them: (onprem, aws).
async fn weights(w: &World, site: &str) -> Option<(i64, i64)> {
    let out = aws_sdk_route53::Client::new(&w.sdk).list_resource_record_sets().hosted_zone_id(&w.zone).send().await;
    let sets = out.ok()?.resource_record_sets().to_vec();
    let weight = |id: &str| sets.iter().find(|r| r.set_identifier() == Some(id)).and_then(|r| r.weight());
    Some((weight(site)?, weight(&format!("aws-{site}"))?))
}

async fn health_check(w: &World, fqdn: &str) -> String {
    use aws_sdk_route53::types::{HealthCheckConfig, HealthCheckType};
    let config = HealthCheckConfig::builder()
        .r#type(HealthCheckType::Http)
        .fully_qualified_domain_name(fqdn)
        .port(8080)
        .resource_path("/.spillway/ready")
        .build()
        .unwrap();
    let out = aws_sdk_route53::Client::new(&w.sdk)
        .create_health_check()
        .caller_reference(format!("spillway-coordination-{fqdn}"))
        .health_check_config(config)
        .send()
        .await
        .expect("create health check");
    out.health_check().unwrap().id().to_string()
}

/// The health check ids of `site`'s pair: [onprem, aws].
async fn record_checks(w: &World, site: &str) -> [Option<String>; 2] {
    let out = aws_sdk_route53::Client::new(&w.sdk).list_resource_record_sets().hosted_zone_id(&w.zone).send().await;
    let sets = out.unwrap().resource_record_sets().to_vec();
    let check = |id: &str| {
        sets.iter().find(|r| r.set_identifier() == Some(id)).and_then(|r| r.health_check_id().map(str::to_owned))
    };
    [check(site), check(&format!("aws-{site}"))]
}

async fn lease_version(w: &World, site: &str) -> u64 {
    use aws_sdk_dynamodb::types::AttributeValue;
    let out = aws_sdk_dynamodb::Client::new(&w.sdk)
        .get_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S(format!("site#{site}")))
        .key("sk", AttributeValue::S("lease".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.item().and_then(|i| i.get("version")).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn site_lost(events: &Events) -> usize {
    webhook::count(events, "site_lost", None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_elect_one_holder_only_it_writes_and_kill_9_hands_over_once() {
    let _one_at_a_time = SERIAL.lock().await;
    let w = world().await;
    let begun = Instant::now();
    let a = start(&w, "dc1", "dc1-a", None, None).await;
    let b = start(&w, "dc1", "dc1-b", None, None).await;
    eventually(Duration::from_secs(5), "exactly one holder", || async {
        let roles = [role(&a).await, role(&b).await];
        roles.iter().filter(|r| *r == "holder").count() == 1 && roles.iter().any(|r| r == "follower")
    })
    .await;
    let roles = [role(&a).await, role(&b).await];
    eprintln!("one holder {:?} after {:?}", roles, begun.elapsed());
    let (holder, follower, holder_key, follower_key) =
        if roles[0] == "holder" { (a, b, "dc1-a", "dc1-b") } else { (b, a, "dc1-b", "dc1-a") };
    // The holder creates the missing records; the follower writes nothing.
    eventually(Duration::from_secs(10), "records created by the holder", || async {
        weights(&w, "dc1").await == Some((255, 0))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(writes_by(&w, holder_key) >= 1, "{:?}", w.proxy.calls_by(holder_key));
    assert_eq!(writes_by(&w, follower_key), 0, "{:?}", w.proxy.calls_by(follower_key));
    let st = follower.status().await;
    assert_eq!(st["coordination"]["holder"], holder_key, "{st}");
    assert_eq!(
        (st["coordination"]["site"].as_str(), st["coordination"]["instance_id"].as_str()),
        (Some("dc1"), Some(follower_key))
    );
    assert_eq!(st["controllers"]["scale"]["follower"], true, "{st}");
    assert_eq!(st["coordination"]["peers"][0]["instance"], holder_key, "{st}");
    let url = follower.admin_url("/");
    let dom = tokio::task::spawn_blocking(move || support::browser::dump_dom(&url)).await.unwrap();
    assert!(dom.contains(&format!("follower · site dc1 · holder {holder_key}")), "dashboard:\n{dom}");
    let version = lease_version(&w, "dc1").await;

    holder.signal("KILL");
    let killed = Instant::now();
    eventually(LEASE + HEARTBEAT + Duration::from_secs(2), "the follower takes the lease", || async {
        role(&follower).await == "holder"
    })
    .await;
    let took = killed.elapsed();
    eprintln!("kill -9 → new holder in {took:?}");
    assert!(took <= LEASE + HEARTBEAT + Duration::from_millis(700), "took {took:?}");
    // No flapping over the next 60 s: the survivor keeps the lease, at one version more.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let st = follower.status().await;
    assert_eq!(st["coordination"]["role"], "holder", "{st}");
    assert_eq!(st["coordination"]["holder_changes"], 1, "{st}");
    assert_eq!(lease_version(&w, "dc1").await, version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_site_is_taken_over_once_and_handed_back_when_it_returns() {
    let _one_at_a_time = SERIAL.lock().await;
    let w = world().await;
    let (hook, events) = receiver().await;
    // dc1's records carry health checks (its own config names them; dc2's cover does not).
    let checks =
        [health_check(&w, "dc1-edge.sportchat.example").await, health_check(&w, "elb.sportchat.example").await];
    let dc1_config = config(&w, "dc1", "dc1-a", None, None)
        .replace(
            "value = \"dc1-edge.sportchat.example.\" }",
            &format!("value = \"dc1-edge.sportchat.example.\", health_check_id = \"{}\" }}", checks[0]),
        )
        .replace(
            "value = \"elb.sportchat.example.\" }",
            &format!("value = \"elb.sportchat.example.\", health_check_id = \"{}\" }}", checks[1]),
        );
    let dc1 = Spillway::start_with_env(&dc1_config, &["run", "--threads", "2"], &env(&w, "dc1-a")).await;
    let dc2 = start(&w, "dc2", "dc2-a", Some("dc1"), Some(hook)).await;
    eventually(Duration::from_secs(10), "both hold their sites, dc1's records exist", || async {
        role(&dc1).await == "holder" && role(&dc2).await == "holder" && weights(&w, "dc1").await == Some((255, 0))
    })
    .await;
    dc1.signal("KILL");
    let killed = Instant::now();
    eventually(TAKEOVER_AFTER + Duration::from_secs(10), "dc1 taken over", || async {
        weights(&w, "dc1").await == Some((0, 255)) && desired(&w.sdk, "sportchat-burst-dc1").await == DR_CAPACITY
    })
    .await;
    eprintln!("kill -9 of dc1 → records at AWS and group at DR capacity in {:?}", killed.elapsed());
    eventually(Duration::from_secs(5), "a site_lost notification", || async { site_lost(&events) == 1 }).await;
    let lost = events.lock().unwrap().iter().find(|e| e["kind"] == "site_lost").cloned().unwrap();
    assert_eq!((lost["severity"].as_str(), lost["details"]["site"].as_str()), (Some("critical"), Some("dc1")));
    let step = dc2.status().await["coordination"]["covers"]["dc1"]["step"].clone();
    assert!(step == "taken_over" || step == "holding_lost", "{step}");
    assert_eq!(weights(&w, "dc2").await, Some((255, 0)), "dc2's own pair untouched");
    assert_eq!(
        record_checks(&w, "dc1").await,
        [Some(checks[0].clone()), Some(checks[1].clone())],
        "health checks kept"
    );

    // dc1 comes back: handed back after handback_after; no second site_lost.
    let back = start(&w, "dc1", "dc1-a", None, None).await;
    eventually(Duration::from_secs(15), "dc1 holds its own lease again", || async { role(&back).await == "holder" })
        .await;
    eventually(Duration::from_secs(3), "dc2 sees dc1's lease live", || async {
        dc2.status().await["coordination"]["covers"]["dc1"]["step"] == "lease_live"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(site_lost(&events), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_that_heartbeats_is_never_taken_over() {
    let _one_at_a_time = SERIAL.lock().await;
    let w = world().await;
    let (hook, events) = receiver().await;
    // dc1 reaches DynamoDB, but its Route 53 and Auto Scaling calls go nowhere.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut dc1_env = env(&w, "dc1-a");
    dc1_env.push(("AWS_ENDPOINT_URL_ROUTE_53", format!("http://{dead}")));
    dc1_env.push(("AWS_ENDPOINT_URL_AUTO_SCALING", format!("http://{dead}")));
    let dc1 =
        Spillway::start_with_env(&config(&w, "dc1", "dc1-a", None, None), &["run", "--threads", "2"], &dc1_env).await;
    let dc2 = start(&w, "dc2", "dc2-a", Some("dc1"), Some(hook)).await;
    eventually(Duration::from_secs(10), "both hold", || async {
        role(&dc1).await == "holder" && role(&dc2).await == "holder"
    })
    .await;
    tokio::time::sleep(TAKEOVER_AFTER + Duration::from_secs(4)).await;
    let st = dc2.status().await;
    assert_eq!(st["coordination"]["covers"]["dc1"]["step"], "lease_live", "{st}");
    assert_eq!(site_lost(&events), 0);
    assert_eq!(desired(&w.sdk, "sportchat-burst-dc1").await, 1);
    assert!(writes_by(&w, "dc2-a") > 0, "dc2 manages its own pair");
    assert!(w.proxy.calls_by("dc2-a").iter().all(|c| c.api != "SetDesiredCapacity"), "nothing for dc1's group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_throttling_keeps_serving_and_the_holder_steps_down_before_expiry() {
    let _one_at_a_time = SERIAL.lock().await;
    let w = world().await;
    let sw = start(&w, "dc1", "dc1-a", None, None).await;
    eventually(Duration::from_secs(5), "holder", || async { role(&sw).await == "holder" }).await;
    w.proxy.set_throttling_dynamodb(true);
    let throttled = Instant::now();
    eventually(LEASE, "stepped down", || async { role(&sw).await == "follower" }).await;
    let stepped = throttled.elapsed();
    eprintln!("DynamoDB throttled → stepped down after {stepped:?} (lease {LEASE:?})");
    assert!(stepped < LEASE, "before the lease expired");
    let st = sw.status().await;
    assert_eq!(st["coordination"]["aws_error"]["kind"], "throttled", "{st}");
    let resp = support::get(&sw.url("web", "/")).await.expect("the proxy serves");
    assert_eq!(resp.status, 200);
    let writes = writes_by(&w, "dc1-a");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(writes_by(&w, "dc1-a"), writes, "a follower makes no AWS write");
    w.proxy.set_throttling_dynamodb(false);
    eventually(LEASE + Duration::from_secs(3), "holder again", || async { role(&sw).await == "holder" }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_takes_over_both_datacenters_when_both_are_lost() {
    let _one_at_a_time = SERIAL.lock().await;
    let w = world().await;
    let (hook, events) = receiver().await;
    let dc1 = start(&w, "dc1", "dc1-a", None, None).await;
    let dc2 = start(&w, "dc2", "dc2-a", None, None).await;
    // The sentinel's file is a full config; it starts none of its listeners.
    let sentinel_config = format!(
        "{ADMIN}\n[runtime]\nsite = \"aws\"\n\n[[listener]]\nname = \"unused\"\nlisten = \"127.0.0.1:0\"\n\n\
         [pools.p]\nendpoints = [\"{}\"]\n\n[[route]]\nprimary = \"p\"\n\n\
         [coordination]\ntable = \"{TABLE}\"\ninstance_id = \"sentinel\"\nheartbeat_interval = \"500ms\"\n\
         lease_duration = \"2s\"\ntakeover_after = \"6s\"\nhandback_after = \"3s\"\n\n{}{}\
         [notify]\nwebhook = \"http://{hook}/hook\"\n",
        w.onprem.endpoint(),
        cover_section(&w, "dc1"),
        cover_section(&w, "dc2"),
    );
    let sentinel = Spillway::start_with_env(&sentinel_config, &["sentinel"], &env(&w, "sentinel")).await;
    assert!(sentinel.stdout_lines().iter().all(|l| !l.starts_with("listening")), "{:?}", sentinel.stdout_lines());
    eventually(Duration::from_secs(10), "both sites hold, records exist", || async {
        role(&dc1).await == "holder"
            && role(&dc2).await == "holder"
            && weights(&w, "dc1").await == Some((255, 0))
            && weights(&w, "dc2").await == Some((255, 0))
    })
    .await;
    tokio::time::sleep(TAKEOVER_AFTER).await;
    assert_eq!(site_lost(&events), 0, "both alive: nothing taken");
    dc1.signal("KILL");
    dc2.signal("KILL");
    let killed = Instant::now();
    eventually(TAKEOVER_AFTER + Duration::from_secs(10), "both sites taken over", || async {
        let mut done = true;
        for site in ["dc1", "dc2"] {
            done &= weights(&w, site).await == Some((0, 255))
                && desired(&w.sdk, &format!("sportchat-burst-{site}")).await == DR_CAPACITY;
        }
        done
    })
    .await;
    eprintln!("both datacenters killed → taken over by the sentinel in {:?}", killed.elapsed());
    eventually(Duration::from_secs(5), "one site_lost per site", || async { site_lost(&events) == 2 }).await;
    let sites: Vec<String> = events.lock().unwrap().iter().map(|e| e["details"]["site"].to_string()).collect();
    assert!(sites.contains(&"\"dc1\"".to_string()) && sites.contains(&"\"dc2\"".to_string()), "{sites:?}");
    // The IAM policy grants the table GetItem, PutItem, UpdateItem, Query and DeleteItem only.
    let calls = w.proxy.calls.lock().unwrap().clone();
    let dynamodb: Vec<_> = calls.iter().filter(|c| c.service == "dynamodb").collect();
    assert!(dynamodb.iter().all(|c| c.api == "Query" || c.api == "PutItem"), "{dynamodb:?}");
}

/// Production intervals (heartbeat 2 s, lease 10 s; scale every 10 s, DNS
/// every 5 s with a read-back every 60 s) instead of the shortened ones.
fn production(config: &str) -> String {
    config
        .replace("heartbeat_interval = \"500ms\"", "heartbeat_interval = \"2s\"")
        .replace("lease_duration = \"2s\"", "lease_duration = \"10s\"")
        .replace("takeover_after = \"6s\"", "takeover_after = \"30s\"")
        .replace("handback_after = \"3s\"", "handback_after = \"60s\"")
        .replacen("interval = \"500ms\"", "interval = \"10s\"", 1)
        .replacen("interval = \"500ms\"", "interval = \"5s\"", 1)
        .replace("verify_interval = \"2s\"", "verify_interval = \"60s\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_aws_calls_per_minute_are_bounded() {
    let _one_at_a_time = SERIAL.lock().await;
    let w = world().await;
    let mut instances = Vec::new();
    for id in ["dc1-a", "dc1-b"] {
        let text = production(&config(&w, "dc1", id, None, None));
        instances.push(Spillway::start_with_env(&text, &["run", "--threads", "2"], &env(&w, id)).await);
    }
    eventually(Duration::from_secs(10), "one holder, records created", || async {
        let mut holders = 0;
        for sw in &instances {
            holders += usize::from(role(sw).await == "holder");
        }
        holders == 1 && weights(&w, "dc1").await == Some((255, 0))
    })
    .await;
    let holder = if role(&instances[0]).await == "holder" { "dc1-a" } else { "dc1-b" };
    let follower = if holder == "dc1-a" { "dc1-b" } else { "dc1-a" };
    let count = |key: &str, service: &str| w.proxy.calls_by(key).iter().filter(|c| c.service == service).count();
    let services = ["dynamodb", "autoscaling", "route53"];
    let before: Vec<Vec<usize>> =
        [holder, follower].iter().map(|k| services.iter().map(|s| count(k, s)).collect()).collect();
    let window = Duration::from_secs(30);
    tokio::time::sleep(window).await;
    let per_min = |i: usize, key: &str, j: usize| (count(key, services[j]) - before[i][j]) as f64 * 60.0 / 30.0;
    for (i, key) in [holder, follower].iter().enumerate() {
        let rates: Vec<String> = (0..3).map(|j| format!("{} {:.0}/min", services[j], per_min(i, key, j))).collect();
        eprintln!("{key} ({}): {}", if i == 0 { "holder" } else { "follower" }, rates.join(", "));
    }
    // A heartbeat is one Query and two PutItems: 90 a minute at 2 s.
    for (i, key) in [holder, follower].iter().enumerate() {
        assert!(per_min(i, key, 0) <= 100.0, "{key}: DynamoDB {}/min", per_min(i, key, 0));
    }
    assert!(per_min(0, holder, 1) <= 8.0, "one DescribeAutoScalingGroups per 10 s");
    assert!(per_min(0, holder, 2) <= 4.0, "a read-back a minute");
    assert_eq!((per_min(1, follower, 1), per_min(1, follower, 2)), (0.0, 0.0), "a follower calls neither");
}

/// Sends `rps` GETs a second to `url` until `stop` is set.
fn paced_load(url: String, rps: f64, stop: Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rps));
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            tick.tick().await;
            let url = url.clone();
            tokio::spawn(async move { support::get(&url).await });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_decides_on_the_sum_of_both_instances_arrivals() {
    let _one_at_a_time = SERIAL.lock().await;
    let w = world().await;
    let (a, b) = (start(&w, "dc1", "dc1-a", None, None).await, start(&w, "dc1", "dc1-b", None, None).await);
    eventually(Duration::from_secs(5), "one holder", || async {
        (role(&a).await == "holder") != (role(&b).await == "holder")
    })
    .await;
    let holder = if role(&a).await == "holder" { &a } else { &b };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loads = [paced_load(a.url("web", "/"), 40.0, stop.clone()), paced_load(b.url("web", "/"), 40.0, stop.clone())];
    // Both instances see 40 rps; the holder's scale controller must see ~80.
    let mut seen = 0.0;
    let within = |x: f64| (72.0..=88.0).contains(&x);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !within(seen) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        seen = holder.status().await["controllers"]["scale"]["last_decision"]["arrival_rps"].as_f64().unwrap_or(0.0);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in loads {
        let _ = l.await;
    }
    assert!(within(seen), "the holder's decision saw {seen} rps, not the site's 80 (±10 %)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dynamodb_an_instance_serves_and_never_writes() {
    let _one_at_a_time = SERIAL.lock().await;
    let w = world().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut outage = env(&w, "dc1-a");
    outage.push(("AWS_ENDPOINT_URL_DYNAMODB", format!("http://{dead}")));
    let sw =
        Spillway::start_with_env(&config(&w, "dc1", "dc1-a", None, None), &["run", "--threads", "2"], &outage).await;
    eventually(Duration::from_secs(10), "the outage reported", || async {
        let st = sw.status().await;
        st["coordination"]["aws_error"]["kind"] == "unavailable"
            && st["coordination"]["failed_ticks"].as_u64() >= Some(2)
    })
    .await;
    let resp = support::get(&sw.url("web", "/")).await.expect("the proxy serves");
    assert_eq!(resp.status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(role(&sw).await, "follower");
    assert_eq!(writes_by(&w, "dc1-a"), 0, "no lease, no write: {:?}", w.proxy.calls_by("dc1-a"));
    assert_eq!(weights(&w, "dc1").await, None, "the records were not created");
}

/// dc1's instance `instance` in `engage = "confirm"` DR, with probes on both
/// pools (no `[scale]`/`[dns]`: only the DR state is shared here).
fn dr_config(w: &World, instance: &str) -> String {
    let probe =
        "{ path = \"/health\", interval = \"100ms\", timeout = \"90ms\", unhealthy_after = 1, healthy_after = 1 }";
    format!(
        "{ADMIN}\n[runtime]\nsite = \"dc1\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [pools.onprem]\nendpoints = [\"{}\"]\nconnect_timeout = \"200ms\"\nhealth = {probe}\n\n\
         [pools.aws]\nrole = \"cloud\"\nendpoints = [\"{}\"]\nhealth = {probe}\n\n\
         [[route]]\nprimary = \"onprem\"\noverflow = \"aws\"\n\n\
         [spill]\ntick = \"50ms\"\ndisaster_after = \"300ms\"\n\n\
         [dr]\nengage = \"confirm\"\nfailback_after = \"1h\"\n\n\
         [coordination]\ntable = \"{TABLE}\"\ninstance_id = \"{instance}\"\nheartbeat_interval = \"500ms\"\n\
         lease_duration = \"2s\"\ntakeover_after = \"6s\"\nhandback_after = \"3s\"\n",
        w.onprem.endpoint(),
        w.cloud.endpoint(),
    )
}

async fn dr_of(sw: &Spillway) -> serde_json::Value {
    sw.status().await["dr"].clone()
}

/// `/status` `dr`'s fields `keys`, as strings (`None`: absent or null).
async fn dr_fields<const N: usize>(sw: &Spillway, keys: [&str; N]) -> [Option<String>; N] {
    let dr = dr_of(sw).await;
    keys.map(|k| dr[k].as_str().map(str::to_owned))
}

fn some<const N: usize>(values: [&str; N]) -> [Option<String>; N] {
    values.map(|v| Some(v.to_owned()))
}

async fn dr_call(sw: &Spillway, what: &str) -> support::Resp {
    let json = vec![("content-type", "application/json".to_string())];
    support::request(Method::POST, &sw.admin_url(&format!("/dr/{what}")), json, b"{}").await.expect("admin call")
}

/// Sends writes through both instances, one at a time, for `how_long`, and
/// checks after each that no write reached the cloud once one reached
/// on-prem (`to_onprem`) or the other way round: writes never go to two
/// databases. Returns the number of writes each side took meanwhile.
async fn writes_through_both(w: &World, both: [&Spillway; 2], to_onprem: bool, how_long: Duration) -> (usize, usize) {
    let (old, new) = if to_onprem { (&w.cloud, &w.onprem) } else { (&w.onprem, &w.cloud) };
    let (old0, new0) = (old.writes(), new.writes());
    let mut old_at_first_new = None;
    let end = Instant::now() + how_long;
    while Instant::now() < end {
        for sw in both {
            let _ = support::request(Method::POST, &sw.url("web", "/save"), vec![], b"x").await;
            if new.writes() > new0 && old_at_first_new.is_none() {
                old_at_first_new = Some(old.writes());
            }
            if let Some(frozen) = old_at_first_new {
                assert_eq!(old.writes(), frozen, "a write reached the old database after one reached the new");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (old.writes() - old0, new.writes() - new0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_owns_the_sites_dr_state_and_writes_never_reach_two_databases() {
    let _one_at_a_time = SERIAL.lock().await;
    let w = world().await;
    let env_a = env(&w, "dc1-a");
    let env_b = env(&w, "dc1-b");
    let args = ["run", "--threads", "2"];
    let a = Spillway::start_with_env(&dr_config(&w, "dc1-a"), &args, &env_a).await;
    let b = Spillway::start_with_env(&dr_config(&w, "dc1-b"), &args, &env_b).await;
    eventually(Duration::from_secs(5), "one holder", || async {
        (role(&a).await == "holder") != (role(&b).await == "holder")
    })
    .await;
    let (holder, follower, holder_id) = if role(&a).await == "holder" { (&a, &b, "dc1-a") } else { (&b, &a, "dc1-b") };
    eventually(Duration::from_secs(5), "the follower follows", || async {
        dr_of(follower).await["following"] == holder_id
    })
    .await;

    // On-prem lost: the holder enters dr_pending; the follower takes its state.
    w.onprem.set_healthy(false);
    for sw in [holder, follower] {
        eventually(Duration::from_secs(10), "dr_pending", || async { dr_of(sw).await["state"] == "dr_pending" }).await;
    }
    // The follower's machine is not the site's: its calls are refused and name the holder.
    let refused = dr_call(follower, "engage").await;
    assert_eq!((refused.status, refused.json()["reason"].as_str()), (409, Some("not_holder")), "{}", refused.text());
    assert_eq!(refused.json()["holder"], holder_id);
    assert_eq!(dr_of(follower).await["state"], "dr_pending");

    // The holder engages: writes refused on both until the follower has the state, then all in the cloud.
    let engaged = dr_call(holder, "engage").await;
    assert_eq!(engaged.status, 200, "{}", engaged.text());
    assert_eq!(dr_of(holder).await["writes"], "refused", "the write fence holds writes first");
    let (onprem, cloud) = writes_through_both(&w, [holder, follower], false, Duration::from_secs(4)).await;
    assert_eq!(onprem, 0);
    assert!(cloud > 0, "writes reach the cloud after the fence");
    assert_eq!(dr_of(follower).await["state"], "dr_active");
    assert_eq!(dr_of(follower).await["reason"], "site_holder");

    // On-prem back and failed back at the holder: writes come home on both, never split.
    w.onprem.set_healthy(true);
    eventually(Duration::from_secs(10), "on-prem reachable", || async {
        dr_of(holder).await["observed"]["onprem_reachable"] == true
    })
    .await;
    let back = dr_call(holder, "failback").await;
    assert_eq!(back.status, 200, "{}", back.text());
    let (cloud, onprem) = writes_through_both(&w, [holder, follower], true, Duration::from_secs(4)).await;
    eprintln!("after failback: {cloud} writes to the cloud during the fence's end, {onprem} on-prem");
    assert!(onprem > 0, "writes are back on-prem");
    for sw in [holder, follower] {
        assert_eq!(dr_of(sw).await["state"], "normal");
    }

    // The holder dies in dr_active: the survivor keeps the latch (writes stay in the cloud).
    w.onprem.set_healthy(false);
    eventually(Duration::from_secs(10), "dr_pending again", || async { dr_of(holder).await["state"] == "dr_pending" })
        .await;
    assert_eq!(dr_call(holder, "engage").await.status, 200);
    eventually(Duration::from_secs(5), "the follower in dr_active", || async {
        dr_of(follower).await["state"] == "dr_active"
    })
    .await;
    w.onprem.set_healthy(true);
    holder.signal("KILL");
    eventually(Duration::from_secs(6), "the follower holds the lease", || async { role(follower).await == "holder" })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = dr_of(follower).await;
    assert_eq!((st["state"].as_str(), st["following"].as_str()), (Some("dr_active"), None), "{st}");
    let (onprem, _) = writes_through_both(&w, [follower, follower], false, Duration::from_secs(1)).await;
    assert_eq!(onprem, 0, "the latch survived the holder: writes stay in the cloud");

    // Every process is gone past the lease (a power cut): a fresh one
    // acquires the expired lease and continues dr_active from it, never a
    // fresh `normal` that would send writes back to the demoted database.
    follower.signal("KILL");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fresh = Spillway::start_with_env(&dr_config(&w, holder_id), &args, &env(&w, holder_id)).await;
    eventually(Duration::from_secs(5), "the fresh process holds the lease", || async {
        role(&fresh).await == "holder"
    })
    .await;
    let seen = dr_fields(&fresh, ["state", "reason", "source"]).await;
    assert_eq!(seen, some(["dr_active", "site_holder", "holder"]));
    let (onprem, cloud) = writes_through_both(&w, [&fresh, &fresh], false, Duration::from_secs(2)).await;
    assert_eq!(onprem, 0, "the restarted site keeps its writes in the cloud");
    assert!(cloud > 0, "after the fence");

    // DynamoDB unreachable: nobody may hold the lease, so the instance keeps
    // dr_active and refuses writes (the holder could be moving them); reads
    // are served. When DynamoDB answers again, writes flow where they were.
    w.proxy.set_throttling_dynamodb(true);
    eventually(Duration::from_secs(5), "writes held without a lease read", || async {
        dr_of(&fresh).await["writes_held"] == "no_lease_read"
    })
    .await;
    let seen = dr_fields(&fresh, ["state", "source", "writes"]).await;
    assert_eq!(seen, some(["dr_active", "stale", "refused"]));
    let (onprem0, cloud0) = (w.onprem.writes(), w.cloud.writes());
    let write = support::request(Method::POST, &fresh.url("web", "/save"), vec![], b"x").await.expect("answered");
    assert_eq!(write.status, 503, "{}", write.text());
    assert_eq!((w.onprem.writes(), w.cloud.writes()), (onprem0, cloud0), "no write reached either database");
    let read = support::get(&fresh.url("web", "/")).await.expect("answered");
    assert_eq!(read.status, 200, "reads go on");
    let refused = dr_call(&fresh, "failback").await;
    assert_eq!((refused.status, refused.json()["reason"].as_str()), (409, Some("not_holder")), "{}", refused.text());
    // The operator's escape hatch, hot-reloaded: keep writing where the
    // last state sends them (the cloud), then back to refusing.
    let config = dr_config(&w, holder_id);
    // (Written, not POSTed: the file watcher reloads it.)
    fresh.write_config(&format!("{config}refuse_writes_when_stale = false\n"));
    eventually(Duration::from_secs(3), "writes allowed while stale", || async {
        dr_fields(&fresh, ["source", "writes"]).await == some(["lease", "cloud"])
    })
    .await;
    let write = support::request(Method::POST, &fresh.url("web", "/save"), vec![], b"x").await.expect("answered");
    assert_eq!(write.status, 200, "{}", write.text());
    assert_eq!((w.onprem.writes(), w.cloud.writes()), (onprem0, cloud0 + 1), "to the cloud, where dr_active sends it");
    fresh.write_config(&config);
    eventually(Duration::from_secs(3), "refusing again", || async {
        dr_fields(&fresh, ["writes_held"]).await == some(["no_lease_read"])
    })
    .await;
    w.proxy.set_throttling_dynamodb(false);
    eventually(Duration::from_secs(6), "holder again, writes flowing", || async {
        role(&fresh).await == "holder" && dr_of(&fresh).await["writes"] == "cloud"
    })
    .await;
    let (onprem, cloud) = writes_through_both(&w, [&fresh, &fresh], false, Duration::from_secs(1)).await;
    assert_eq!((onprem, cloud > 0), (0, true));
}

/// dc1's instance with a static on-prem limit of 2 in front of a 100 ms
/// origin (~20 req/s each), spilling the rest; `[scale]` only (no DNS share).
fn spill_config(w: &World, instance: &str) -> String {
    format!(
        "{ADMIN}\n[runtime]\nsite = \"dc1\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [pools.onprem]\nendpoints = [\"{}\"]\n\n[pools.aws]\nrole = \"cloud\"\nendpoints = [\"{}\"]\n\n\
         [[route]]\nprimary = \"onprem\"\noverflow = \"aws\"\n\n\
         [spill]\nmode = \"static\"\nmax_in_flight = 2\ntick = \"100ms\"\n\n\
         [scale]\nauto_scaling_group = \"sportchat-burst-dc1\"\nper_instance_rps = 10\nmin = 1\nmax = 20\n\
         headroom = 0.0\ninterval = \"500ms\"\nwarmup = \"2s\"\nscale_in_cooldown = \"60s\"\n\n\
         [coordination]\ntable = \"{TABLE}\"\ninstance_id = \"{instance}\"\nheartbeat_interval = \"500ms\"\n\
         lease_duration = \"2s\"\ntakeover_after = \"6s\"\nhandback_after = \"3s\"\n",
        w.onprem.endpoint(),
        w.cloud.endpoint(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_sustained_spill_the_group_follows_both_instances_overflow() {
    let _one_at_a_time = SERIAL.lock().await;
    let w = world().await;
    let args = ["run", "--threads", "2"];
    let a = Spillway::start_with_env(&spill_config(&w, "dc1-a"), &args, &env(&w, "dc1-a")).await;
    let b = Spillway::start_with_env(&spill_config(&w, "dc1-b"), &args, &env(&w, "dc1-b")).await;
    eventually(Duration::from_secs(5), "one holder", || async {
        (role(&a).await == "holder") != (role(&b).await == "holder")
    })
    .await;
    let (holder, follower) = if role(&a).await == "holder" { (&a, &b) } else { (&b, &a) };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loads =
        [a.url("web", "/?delay_ms=100"), b.url("web", "/?delay_ms=100")].map(|u| paced_load(u, 50.0, stop.clone()));
    // The forecast's trend needs the ramp behind it: sample after 15 s of steady load.
    tokio::time::sleep(Duration::from_secs(15)).await;
    // Over 6 s of sustained spill: the holder's overflow against what both instances spilled.
    let (mut overflow, mut spilled, mut n) = (0.0, 0.0, 0.0);
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let h = holder.status().await;
        let f = follower.status().await;
        overflow += h["controllers"]["scale"]["last_decision"]["overflow_rps"].as_f64().unwrap_or(0.0);
        spilled += h["gates"]["aws"]["arrival_rps"].as_f64().unwrap_or(0.0)
            + f["gates"]["aws"]["arrival_rps"].as_f64().unwrap_or(0.0);
        n += 1.0;
    }
    let (overflow, spilled) = (overflow / n, spilled / n);
    let decision = holder.status().await["controllers"]["scale"]["last_decision"].clone();
    let (target, decided) = (decision["target"].as_i64().unwrap_or(0), decision["desired"].as_i64().unwrap_or(0));
    let in_moto = desired(&w.sdk, "sportchat-burst-dc1").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in loads {
        let _ = l.await;
    }
    eprintln!(
        "both spilled {spilled:.1} req/s; the holder's overflow {overflow:.1}; target {target}, desired {decided}, moto {in_moto}"
    );
    assert!(spilled > 30.0, "both instances spill: {spilled:.1} req/s");
    assert!(
        (overflow / spilled - 1.0).abs() <= 0.10,
        "overflow {overflow:.1} vs the site's spill {spilled:.1} (±10 %)"
    );
    // 10 req/s per instance, no headroom: the site's spill needs ceil(spilled / 10).
    let site = (spilled / 10.0).ceil() as i64;
    assert!((target - site).abs() <= 1, "the target ({target}) is sized for the site's spill ({site})");
    assert!(target > (spilled / 2.0 / 10.0).ceil() as i64, "not one instance's share");
    // The desired capacity may stay above the target (the ramp's forecast, scale_in_cooldown), never below.
    assert!(decided >= target && (i64::from(in_moto) - decided).abs() <= 1, "moto {in_moto}, decided {decided}");
    // scale_in_cooldown (60 s) outlasts the run, so `decided` is the peak: the
    // load's step (0 to 100 req/s) is not projected as a ramp (issue 11: within 1.2×).
    assert!(decided as f64 <= 1.2 * site as f64, "peak desired {decided} for a need of {site}");
}
