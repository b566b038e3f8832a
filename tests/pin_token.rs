//! End-to-end proof of issue 13 §1 (a signed, lag-aware read-after-write
//! pin) through the real binary over loopback: a write through one
//! Spillway pins the client's reads at another one holding the key, and at
//! the first one after a restart; `lag_aware` pins for the cloud's observed
//! lag plus the margin; tampered tokens are ignored and counted.
//!
//! Every instance is forced to spill the same way: a static limit with a
//! 1 ms SLO that every on-prem answer breaches (the test's reads ask the
//! origin for 3 ms), cut to 1 by a run of such answers, and two long
//! requests on a `never_spill` path keep the pool over it. A read then
//! spills unless something pins it; a pinned read is served on-prem.

mod support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use http::Method;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use support::{endpoints, eventually, get, request, Origin, Spillway, ADMIN};

const KEY_1: &str = "pin-key-one-0123456789abcdef0123456789";
const KEY_2: &str = "pin-key-two-0123456789abcdef0123456789";
const KEY_3: &str = "pin-key-three-0123456789abcdef01234567";
/// The path every test read takes: slower than the SLO, so on-prem answers never raise the limit.
const READ: &str = "/read?delay_ms=3";

/// The instances share two cores: one scenario at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Setup<'a> {
    onprem: &'a Origin,
    cloud: &'a Origin,
    keys: &'a Path,
    pin_after_write: &'a str,
    pin_token: &'a str,
    cloud_pool: &'a str,
}

fn config(s: &Setup) -> String {
    format!(
        r#"{ADMIN}
[runtime]
site = "dc1"

[[listener]]
name = "web"
listen = "127.0.0.1:0"

[pools.onprem]
endpoints = {onprem}

[pools.aws]
role = "cloud"
endpoints = {cloud}
{cloud_pool}

[[route]]
name = "www"
primary = "onprem"
overflow = "aws"
never_spill = ["/hold"]

[spill]
mode = "static"
max_in_flight = 1000
min_limit = 1
latency_slo = "1ms"
enter_after = "0s"
exit_after = "10m"
tick = "50ms"
max_replica_lag = "300s"
pin_after_write = "{pin}"
session_cookie = "sid"

[spill.pin_token]
key_file = "{keys}/current"
{pin_token}
"#,
        onprem = endpoints(&[s.onprem]),
        cloud = endpoints(&[s.cloud]),
        cloud_pool = s.cloud_pool,
        pin = s.pin_after_write,
        keys = s.keys.display(),
        pin_token = s.pin_token,
    )
}

/// The admin API of an instance, as these scenarios read it.
struct Admin<'a>(&'a Spillway);

impl Admin<'_> {
    async fn metrics(&self) -> String {
        get(&self.0.admin_url("/metrics")).await.expect("GET /metrics").text()
    }

    /// Until `/status` shows `gates.<pool>.<field> == value`.
    async fn wait_gate(&self, pool: &str, field: &str, value: serde_json::Value) {
        let what = format!("gates.{pool}.{field} == {value}");
        eventually(Duration::from_secs(10), &what, || async { self.0.status().await["gates"][pool][field] == value })
            .await;
    }

    async fn wait_healthy(&self) {
        eventually(Duration::from_secs(10), "every endpoint available", || async {
            let status = self.0.status().await;
            let pools = status["pools"].as_object().cloned().unwrap_or_default();
            pools
                .values()
                .flat_map(|p| p["endpoints"].as_array().cloned().unwrap_or_default())
                .all(|e| e["available"] == true)
        })
        .await;
    }
}

/// The sum of the samples of `name` whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Cuts the on-prem limit to 1 with a run of answers slower than the SLO,
/// then keeps two never-spill requests in flight: the pool spills from here on.
async fn force_spill(sw: &Spillway) -> Vec<JoinHandle<()>> {
    let admin = Admin(sw);
    for _ in 0..40 {
        let r = request(Method::GET, &sw.url("web", "/hold?delay_ms=3"), vec![], b"").await.unwrap();
        assert_eq!(r.origin(), Some("onprem"));
    }
    admin.wait_gate("onprem", "limit", 1.into()).await;
    let holds = (0..2)
        .map(|_| {
            let url = sw.url("web", "/hold?delay_ms=60000");
            tokio::spawn(async move {
                let _ = request(Method::GET, &url, vec![], b"").await;
            })
        })
        .collect();
    admin.wait_gate("onprem", "in_flight", 2.into()).await;
    admin.wait_gate("onprem", "mode", "spilling".into()).await;
    holds
}

/// Where a read with `cookie` (a whole `Cookie` field, or none) was served.
async fn read(sw: &Spillway, cookie: Option<&str>) -> String {
    let headers = cookie.map(|c| vec![("cookie", c.to_string())]).unwrap_or_default();
    let r = request(Method::GET, &sw.url("web", READ), headers, b"").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.origin().unwrap().to_string()
}

/// A POST through `sw`: its `Set-Cookie` line and the pin cookie
/// (`name=value`). The writer has a session of its own, so the in-process
/// pin it makes keeps that session on-prem, not the test's other reads.
async fn write(sw: &Spillway) -> (String, String) {
    let session = vec![("cookie", "sid=writer".to_string())];
    let r = request(Method::POST, &sw.url("web", "/post"), session, b"x").await.unwrap();
    assert_eq!((r.status, r.origin()), (200, Some("onprem")));
    let set = r.header("set-cookie").expect("a write that succeeded sets the pin cookie").to_string();
    let pair = set.split(';').next().unwrap().to_string();
    (set, pair)
}

fn keys_dir(current: &str, previous: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("current"), format!("{current}\n")).unwrap();
    if let Some(p) = previous {
        std::fs::write(dir.path().join("previous"), p).unwrap();
    }
    dir
}

async fn tokens(sw: &Spillway, result: &str) -> f64 {
    metric(&Admin(sw).metrics().await, "spillway_pin_tokens_total", &[("result", result)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_instance_pins_reads_at_another_and_after_a_restart() {
    let _serial = SERIAL.lock().await;
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let keys = keys_dir(KEY_1, None);
    let setup = Setup {
        onprem: &onprem,
        cloud: &cloud,
        keys: keys.path(),
        pin_after_write: "8s",
        pin_token: "",
        cloud_pool: "",
    };
    let text = config(&setup);
    let a = Spillway::start(&text).await;
    let b = Spillway::start(&text).await;
    let _holds_b = force_spill(&b).await;
    assert_eq!(read(&b, None).await, "cloud", "B spills a read nobody pinned");

    let (set, cookie) = write(&a).await;
    let written = Instant::now();
    assert!(cookie.starts_with("spillway_pin="), "{set}");
    for attr in ["Path=/", "Max-Age=8", "HttpOnly", "SameSite=Lax"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    assert!(!set.contains("Secure"), "not a TLS listener: {set}");

    let reads: Vec<_> = (0..10)
        .map(|_| {
            let (url, cookie) = (b.url("web", READ), cookie.clone());
            tokio::spawn(async move {
                let mut served = Vec::new();
                for _ in 0..10 {
                    let r = request(Method::GET, &url, vec![("cookie", cookie.clone())], b"").await.unwrap();
                    served.push(r.origin().unwrap().to_string());
                }
                served
            })
        })
        .collect();
    for task in reads {
        let served = task.await.unwrap();
        assert!(served.iter().all(|o| o == "onprem"), "{served:?}");
    }
    assert!(written.elapsed() < Duration::from_secs(8), "the reads ran within the pin time");
    assert_eq!(tokens(&b, "pinned").await, 100.0);
    assert_eq!(read(&b, None).await, "cloud", "the pin is the cookie's, not B's");

    drop(a);
    let a = Spillway::start(&text).await;
    let _holds_a = force_spill(&a).await;
    assert_eq!(read(&a, None).await, "cloud", "the restarted A has no pin of its own");
    for _ in 0..10 {
        assert_eq!(read(&a, Some(&cookie)).await, "onprem", "the restarted A honours the cookie");
    }
    assert!(written.elapsed() < Duration::from_secs(8), "the restart fitted in the pin time");

    tokio::time::sleep_until(written + Duration::from_millis(8200)).await;
    assert_eq!(read(&b, Some(&cookie)).await, "cloud", "after the pin time the read spills");
    assert_eq!(read(&a, Some(&cookie)).await, "cloud");
    assert_eq!(tokens(&b, "expired").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_aware_pins_for_the_observed_lag_plus_the_margin_capped_by_the_pin_time() {
    let _serial = SERIAL.lock().await;
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    cloud.set_lag(Some(0.5));
    let keys = keys_dir(KEY_1, None);
    let health = "[pools.aws.health]\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nhealthy_after = 1\nlag_header = \"x-replica-lag\"";
    let setup = Setup {
        onprem: &onprem,
        cloud: &cloud,
        keys: keys.path(),
        pin_after_write: "5s",
        pin_token: "lag_aware = true\nlag_margin = \"500ms\"\nforward_header = \"X-Spillway-Pinned-Until\"",
        cloud_pool: health,
    };
    let sw = Spillway::start(&config(&setup)).await;
    Admin(&sw).wait_healthy().await;
    let _holds = force_spill(&sw).await;
    let lag_is = |secs: f64| {
        let sw = &sw;
        async move { metric(&Admin(sw).metrics().await, "spillway_replica_lag_seconds", &[("pool", "aws")]) == secs }
    };
    eventually(Duration::from_secs(5), "the cloud's lag observed", || lag_is(0.5)).await;

    // 0.5 s of lag + 0.5 s of margin: pinned for 1 s, not 5.
    let (_, cookie) = write(&sw).await;
    let written = Instant::now();
    let written_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64;
    let r = request(Method::GET, &sw.url("web", READ), vec![("cookie", cookie.clone())], b"").await.unwrap();
    assert_eq!(r.origin(), Some("onprem"));
    assert!(written.elapsed() < Duration::from_millis(900), "the read came within the window");
    let until: u64 = r.json()["headers"]["x-spillway-pinned-until"][0].as_str().unwrap().parse().unwrap();
    assert!(until.abs_diff(written_ms + 1000) < 500, "the origin is told until when: {until} vs {written_ms}");
    tokio::time::sleep_until(written + Duration::from_millis(1500)).await;
    assert_eq!(read(&sw, Some(&cookie)).await, "cloud", "past the lag and its margin the read spills");
    assert_eq!(tokens(&sw, "lag_released").await, 1.0);

    // 120 s of lag: capped by the pin time, pinned for all of it.
    cloud.set_lag(Some(120.0));
    eventually(Duration::from_secs(5), "the new lag observed", || lag_is(120.0)).await;
    let (_, cookie) = write(&sw).await;
    let written = Instant::now();
    for at in [200, 1500, 3000, 4500] {
        tokio::time::sleep_until(written + Duration::from_millis(at)).await;
        assert_eq!(read(&sw, Some(&cookie)).await, "onprem", "{at} ms after the write");
    }
    assert!(written.elapsed() < Duration::from_millis(4900), "the last read came within the pin time");
    tokio::time::sleep_until(written + Duration::from_millis(5200)).await;
    assert_eq!(read(&sw, Some(&cookie)).await, "cloud", "after the pin time");
}

/// A token signed in the test with `key`, for a write at `written`.
fn token(key: &str, written: SystemTime) -> String {
    let keys = spillway::burst::PinKeys::new(key.as_bytes(), None).unwrap();
    let ms = written.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64;
    format!("spillway_pin={}", keys.sign(ms, b"dc1"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_tokens_are_ignored_and_counted_and_a_reload_rotates_the_key() {
    let _serial = SERIAL.lock().await;
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    // Rotated twice: KEY_1, then KEY_2, now KEY_3 with KEY_2 as the previous one.
    let keys = keys_dir(KEY_3, Some(KEY_2));
    let setup = Setup {
        onprem: &onprem,
        cloud: &cloud,
        keys: keys.path(),
        pin_after_write: "60s",
        pin_token: &format!("previous_key_file = \"{}/previous\"", keys.path().display()),
        cloud_pool: "",
    };
    let sw = Spillway::start(&config(&setup)).await;
    let _holds = force_spill(&sw).await;
    let now = SystemTime::now();

    let (_, genuine) = write(&sw).await;
    assert_eq!(read(&sw, Some(&genuine)).await, "onprem");
    assert_eq!(read(&sw, Some(&token(KEY_2, now))).await, "onprem", "one rotation old: still honoured");
    let flipped = {
        let (name, value) = genuine.split_once('=').unwrap();
        let mut bytes = value.as_bytes().to_vec();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        format!("{name}={}", String::from_utf8(bytes).unwrap())
    };
    let expired = token(KEY_3, now - Duration::from_secs(61));
    let tampered = [
        (flipped.as_str(), "forged"),
        (&token("a-key-from-somewhere-else-0123456789abcdef", now), "unknown_key"),
        (&token(KEY_1, now), "unknown_key"),
        (&expired, "expired"),
        ("spillway_pin=bm90IGEgdG9rZW4", "malformed"),
    ];
    for (cookie, _) in &tampered {
        assert_eq!(read(&sw, Some(cookie)).await, "cloud", "{cookie} is ignored");
    }
    for (result, n) in [("forged", 1.0), ("unknown_key", 2.0), ("expired", 1.0), ("malformed", 1.0), ("pinned", 2.0)] {
        assert_eq!(tokens(&sw, result).await, n, "{result}");
    }

    // Hostile headers: a huge value, and a genuine token behind four bad duplicates.
    let huge = format!("spillway_pin={}", "A".repeat(8000));
    assert_eq!(read(&sw, Some(&huge)).await, "cloud");
    let buried = format!("spillway_pin=a; spillway_pin=b; spillway_pin=c; spillway_pin=d; {genuine}");
    assert_eq!(read(&sw, Some(&buried)).await, "cloud", "only four pin cookies are looked at");
    let first = format!("{genuine}; spillway_pin=a; other=1");
    assert_eq!(read(&sw, Some(&first)).await, "onprem", "a genuine token among duplicates pins");
    assert_eq!(tokens(&sw, "malformed").await, 3.0);

    // Rotate once more: KEY_3's tokens stay, KEY_2's are now two rotations old.
    std::fs::write(keys.path().join("previous"), KEY_3).unwrap();
    std::fs::write(keys.path().join("current"), "pin-key-four-0123456789abcdef0123456789").unwrap();
    let (status, body) = sw.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(read(&sw, Some(&genuine)).await, "onprem", "a reload re-reads the keys");
    assert_eq!(read(&sw, Some(&token(KEY_2, now))).await, "cloud");
    std::fs::write(keys.path().join("current"), "too-short").unwrap();
    let (status, body) = sw.reload().await;
    assert_ne!(status, 200, "a short key refuses the reload: {body}");
    assert!(body.to_string().contains("spill.pin_token.key_file"), "{body}");
    assert_eq!(read(&sw, Some(&genuine)).await, "onprem", "the running keys stay");
}

/// Issue 13: the demo's own load generator (sessions with cookies, 3 %
/// POSTs, GETs), spread round-robin over two Spillways sharing the pin key
/// during a 3× burst: no GET sent after its session's write was answered,
/// and answered within `pin_after_write` of it, is served by the cloud. The
/// same run with pins in each instance's memory only breaks some: that is
/// what the signed cookie fixes. The demo prints the count itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_over_two_instances_serves_no_pinned_read_from_the_cloud() {
    let _one = SERIAL.lock().await;
    let run = |extra: &'static [&'static str]| {
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(support::spillway::BIN)
                .args([
                    "demo",
                    "--duration",
                    "15s",
                    "--instances",
                    "2",
                    "--sessions",
                    "2000",
                    "--listen",
                    "127.0.0.1:0",
                ])
                .args(extra)
                .output()
                .expect("run spillway demo");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "demo failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
            let line = stdout.lines().find(|l| l.starts_with("pin violations: ")).unwrap_or_else(|| panic!("{stdout}"));
            let words: Vec<&str> = line.split_whitespace().collect();
            let (violations, pinned): (u64, u64) = (words[2].parse().unwrap(), words[4].parse().unwrap());
            (violations, pinned, stdout)
        })
    };
    let (violations, pinned, stdout) = run(&[]).await.unwrap();
    assert!(stdout.contains("2 instances"), "{stdout}");
    assert!(pinned >= 50, "only {pinned} reads after a write: the run proves nothing\n{stdout}");
    assert_eq!(violations, 0, "{violations} of {pinned} pinned reads served by the cloud\n{stdout}");
    let (violations, pinned, stdout) = run(&["--without-pin-token"]).await.unwrap();
    assert!(
        violations > 0,
        "in-memory pins over two instances broke none of {pinned}: the burst never spilled?\n{stdout}"
    );
    eprintln!("signed pin cookie: 0 violations; in-memory pins only: {violations} of {pinned}");
}
