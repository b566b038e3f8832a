//! Issue 3, end to end: hot reload of the running binary by file change,
//! SIGHUP and `POST /reload`; bad and half-written files; reload under load;
//! certificate rotation; endpoint drain; listener address changes.

mod support;

#[path = "support/moto.rs"]
mod moto;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use support::tls::TestCa;
use support::{endpoints, eventually, get, Origin, Spillway, ADMIN};

/// Listener `web`, pools `pa` (over `pa`) and `pb` (over `pb`), one route
/// whose primary is `primary`; `pool_extra` goes into both pools.
fn two_pools(primary: &str, pa: &[&Origin], pb: &[&Origin], pool_extra: &str) -> String {
    format!(
        "{ADMIN}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n[pools.pa]\nendpoints = {}\nconnect_timeout = \"300ms\"\n{pool_extra}\n\n[pools.pb]\nendpoints = {}\nconnect_timeout = \"300ms\"\n{pool_extra}\n\n[[route]]\nname = \"main\"\nprimary = \"{primary}\"\n",
        endpoints(pa),
        endpoints(pb)
    )
}

async fn origin_of(sw: &Spillway, path: &str) -> String {
    let resp = get(&sw.url("web", path)).await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.origin().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_change_reloads_and_the_next_request_sees_the_new_route() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let sw = Spillway::start(&two_pools("pa", &[&a], &[&b], "")).await;
    assert_eq!(origin_of(&sw, "/before").await, "a");
    let old = sw.version().await;
    let next = two_pools("pb", &[&a], &[&b], "");
    let want = sw.version_of(&next);
    assert_ne!(old, want);
    sw.write_config(&next);
    sw.wait_version(&want).await;
    assert_eq!(origin_of(&sw, "/after").await, "b", "the first request after the swap uses the new route");
    let status = sw.status().await;
    assert_eq!(status["config"]["last_error"], serde_json::Value::Null);
    assert!(status["config"]["reloads"].as_u64().unwrap() >= 1);
    assert!(sw.log().contains("trigger=file"), "{}", sw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let sw = Spillway::start_linked(&two_pools("pa", &[&a], &[&b], "")).await;
    let next = two_pools("pb", &[&a], &[&b], "");
    let want = sw.version_of(&next);
    sw.write_unwatched(&next);
    assert_eq!(origin_of(&sw, "/not-yet").await, "a", "nothing reloads without a trigger");
    sw.signal("HUP");
    sw.wait_version(&want).await;
    assert_eq!(origin_of(&sw, "/after").await, "b");
    assert!(sw.log().contains("trigger=sighup"), "{}", sw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_applies_and_answers_the_version() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let sw = Spillway::start_linked(&two_pools("pa", &[&a], &[&b], "")).await;
    let next = two_pools("pb", &[&a], &[&b], "");
    let want = sw.version_of(&next);
    sw.write_unwatched(&next);
    let (code, answer) = sw.reload().await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["version"], want.as_str());
    assert_eq!(origin_of(&sw, "/after").await, "b", "POST /reload returns after the swap");
    assert_eq!(sw.version().await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_file_is_rejected_and_the_old_config_keeps_serving() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let good = two_pools("pa", &[&a], &[&b], "");
    let sw = Spillway::start_linked(&good).await;
    let active = sw.version().await;
    let bad = two_pools("missing", &[&a], &[&b], "");
    let bad_line = bad.lines().position(|l| l == "primary = \"missing\"").unwrap() + 1;
    sw.write_unwatched(&bad);

    let (code, answer) = sw.reload().await;
    assert_eq!(code, 422, "{answer}");
    assert_eq!(answer["ok"], false);
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains(&format!("line {bad_line}: route[0].primary")), "key and line in {error:?}");
    assert!(error.contains("unknown pool"), "{error}");

    let status = sw.status().await;
    assert_eq!(status["config"]["version"], active.as_str(), "the active version is still the old one");
    assert!(status["config"]["last_error"].as_str().unwrap().contains("route[0].primary"), "{status}");
    assert_eq!(status["config"]["failures"], 1);
    assert_eq!(sw.metric("config_reload_failures_total").await, 1.0);
    assert_eq!(origin_of(&sw, "/still").await, "a", "old config keeps serving");
    assert!(sw.log().contains("route[0].primary"), "the error is logged with its key");

    // A syntax error (unknown key) by SIGHUP: also refused, counter rises.
    sw.write_unwatched(&good.replace("[pools.pa]", "[pools.pa]\nendpionts = []"));
    sw.signal("HUP");
    eventually(Duration::from_secs(10), "second failure counted", || async {
        sw.metric("config_reload_failures_total").await == 2.0
    })
    .await;
    assert!(sw.status().await["config"]["last_error"].as_str().unwrap().contains("endpionts"));
    assert_eq!(origin_of(&sw, "/still").await, "a");

    // Fixing the file clears the error.
    sw.write_unwatched(&two_pools("pb", &[&a], &[&b], ""));
    let (code, answer) = sw.reload().await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(sw.status().await["config"]["last_error"], serde_json::Value::Null);
    assert_eq!(origin_of(&sw, "/fixed").await, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_file_change_is_rejected_without_a_restart() {
    let a = Origin::start("a").await;
    let good = two_pools("pa", &[&a], &[&a], "");
    let sw = Spillway::start(&good).await;
    let active = sw.version().await;
    sw.write_config("[[listener]\nthis is not toml");
    eventually(Duration::from_secs(10), "reload failure counted", || async {
        sw.metric("config_reload_failures_total").await >= 1.0
    })
    .await;
    let status = sw.status().await;
    assert_eq!(status["config"]["version"], active.as_str());
    assert!(status["config"]["last_error"].as_str().unwrap().contains("line 1"), "{status}");
    assert_eq!(origin_of(&sw, "/still").await, "a");
}

/// Runs a request loop until `stop`; counts successes, records failures.
fn client_loop(
    url: String,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(SeqCst) {
            match get(&url).await {
                Ok(r) if r.status == 200 => {
                    ok.fetch_add(1, SeqCst);
                }
                Ok(r) => failures.lock().unwrap().push(format!("{} {}", r.status, r.text())),
                Err(e) => failures.lock().unwrap().push(e),
            }
        }
    })
}

/// Stops the client loops and fails the test on any failed request.
async fn stop_and_expect_no_failure(
    stop: &AtomicBool,
    loops: Vec<tokio::task::JoinHandle<()>>,
    ok: &AtomicUsize,
    failures: &std::sync::Mutex<Vec<String>>,
) {
    stop.store(true, SeqCst);
    for l in loops {
        l.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed requests out of {}: {:?}",
        failures.len(),
        ok.load(SeqCst),
        &failures[..failures.len().min(10)]
    );
}

/// A keep-alive client (hyper's pooled client): its connections stay open
/// across reloads.
fn keepalive_loop(
    url: String,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    use http_body_util::{BodyExt, Empty};
    tokio::spawn(async move {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Empty<bytes::Bytes>>();
        while !stop.load(SeqCst) {
            let result = tokio::time::timeout(Duration::from_secs(10), async {
                let resp = client.get(url.parse().unwrap()).await.map_err(|e| e.to_string())?;
                let status = resp.status();
                resp.into_body().collect().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(status)
            })
            .await;
            match result {
                Ok(Ok(s)) if s == 200 => {
                    ok.fetch_add(1, SeqCst);
                }
                Ok(Ok(s)) => failures.lock().unwrap().push(format!("keep-alive: {s}")),
                Ok(Err(e)) => failures.lock().unwrap().push(format!("keep-alive: {e}")),
                Err(_) => failures.lock().unwrap().push("keep-alive: timeout".into()),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_written_file_is_not_applied_half_way() {
    use std::io::Write;
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let sw = Spillway::start(&two_pools("pa", &[&a], &[&b], "")).await;
    let next = two_pools("pb", &[&a], &[&b], "response_timeout = \"5s\"");
    let want = sw.version_of(&next);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load = client_loop(sw.url("web", "/load"), stop.clone(), ok.clone(), failures.clone());

    // An editor saving in place, in two writes 100 ms apart (inside the
    // debounce window): the first half alone has no route and would not
    // validate.
    let cut = next.find("[pools.pb]").unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&sw.config_path).unwrap();
    f.write_all(&next.as_bytes()[..cut]).unwrap();
    f.sync_all().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    f.write_all(&next.as_bytes()[cut..]).unwrap();
    f.sync_all().unwrap();
    drop(f);

    sw.wait_version(&want).await;
    stop.store(true, SeqCst);
    load.await.unwrap();
    assert_eq!(origin_of(&sw, "/after").await, "b");
    assert_eq!(sw.metric("config_reload_failures_total").await, 0.0, "the half file was never tried");
    assert_eq!(sw.status().await["config"]["failures"], 0);
    assert!(failures.lock().unwrap().is_empty(), "{:?}", failures.lock().unwrap());
    assert!(ok.load(SeqCst) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_no_request() {
    let (a, b, c) = (Origin::start("a").await, Origin::start("b").await, Origin::start("c").await);
    let configs = [
        two_pools("pa", &[&a], &[&b], ""),
        two_pools("pb", &[&a], &[&b, &c], ""),
        two_pools("pa", &[&a, &c], &[&b], ""),
        two_pools("pa", &[&c], &[&b], "response_timeout = \"5s\""),
        two_pools("pa", &[&a, &b], &[&c], ""),
        two_pools("pb", &[&a], &[&b], ""),
    ];
    let sw = Spillway::start(&configs[0]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let loops = vec![
        client_loop(sw.url("web", "/fresh"), stop.clone(), ok.clone(), failures.clone()),
        client_loop(sw.url("web", "/fresh2"), stop.clone(), ok.clone(), failures.clone()),
        keepalive_loop(sw.url("web", "/kept"), stop.clone(), ok.clone(), failures.clone()),
    ];
    for round in 0..3 {
        for (i, config) in configs.iter().enumerate().skip(1).chain(configs.iter().enumerate().take(1)) {
            let before = ok.load(SeqCst);
            if (round + i) % 2 == 0 {
                sw.write_config(config);
                sw.wait_version(&sw.version_of(config)).await;
            } else {
                std::fs::write(sw.dir().join("conf-next.toml"), config).unwrap();
                // Through the file (renamed into place) and POST: both paths.
                std::fs::rename(sw.dir().join("conf-next.toml"), &sw.config_path).unwrap();
                let (code, answer) = sw.reload().await;
                assert_eq!(code, 200, "{answer}");
            }
            eventually(Duration::from_secs(10), "traffic flows after the reload", || async {
                ok.load(SeqCst) > before + 5
            })
            .await;
        }
    }
    stop_and_expect_no_failure(&stop, loops, &ok, &failures).await;
    eprintln!("{} requests across 18 reloads, none failed", ok.load(SeqCst));
    assert!(ok.load(SeqCst) > 100, "only {} requests ran", ok.load(SeqCst));
    assert!(a.hits() > 0 && b.hits() > 0 && c.hits() > 0, "a={} b={} c={}", a.hits(), b.hits(), c.hits());
    assert_eq!(sw.metric("config_reload_failures_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_timeout_change_applies_to_the_next_request() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&two_pools("pa", &[&a], &[&a], "response_timeout = \"10s\"")).await;
    assert_eq!(get(&sw.url("web", "/slow?delay_ms=800")).await.unwrap().status, 200);
    let next = two_pools("pa", &[&a], &[&a], "response_timeout = \"200ms\"");
    sw.write_config(&next);
    sw.wait_version(&sw.version_of(&next)).await;
    let resp = get(&sw.url("web", "/slow?delay_ms=800")).await.unwrap();
    assert_eq!(resp.status, 504, "{}", resp.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificate_rotation_is_seen_by_a_new_handshake() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;

    let a = Origin::start("a").await;
    let ca = TestCa::new("rotation CA");
    let first = ca.issue("first", &["spillway.test"]);
    let second = ca.issue("second", &["spillway.test"]);
    let dir = tempfile::tempdir().unwrap();
    first.write(dir.path(), "web");
    let config = format!(
        "{ADMIN}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = \"web.crt\", key = \"web.key\" }}\n\n[pools.pa]\nendpoints = {}\n\n[[route]]\nprimary = \"pa\"\n",
        endpoints(&[&a])
    );
    let sw = Spillway::start_in(dir, &config).await;
    let addr = sw.addr("web");
    let client = ca.client_config(&[b"http/1.1"]);
    let (cert, alpn) = support::tls::handshake(addr, "spillway.test", client.clone()).await.unwrap();
    assert_eq!(cert, first.der());
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));

    // A connection opened before the rotation.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("spillway.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(client.clone()).connect(name, tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let send = |sender: &mut hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>| {
        let req = http::Request::get("/kept").header("host", "spillway.test").body(Empty::new()).unwrap();
        sender.send_request(req)
    };
    let resp = send(&mut sender).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();

    second.write(sw.dir(), "web");
    let (code, answer) = sw.reload().await;
    assert_eq!(code, 200, "{answer}");
    let (cert, _) = support::tls::handshake(addr, "spillway.test", client.clone()).await.unwrap();
    assert_eq!(cert, second.der(), "a new handshake sees the rotated certificate");

    let resp = send(&mut sender).await.expect("the connection from before the rotation still works");
    assert_eq!(resp.status(), 200);

    // A broken certificate file is refused; the rotated one keeps serving.
    std::fs::write(sw.dir().join("web.crt"), "not a certificate").unwrap();
    let (code, answer) = sw.reload().await;
    assert_eq!(code, 422, "{answer}");
    let (cert, _) = support::tls::handshake(addr, "spillway.test", client).await.unwrap();
    assert_eq!(cert, second.der());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_endpoint_drains_its_in_flight_request() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let sw = Spillway::start(&two_pools("pa", &[&a], &[&b], "")).await;
    let url = sw.url("web", "/long?delay_ms=2000");
    let slow = tokio::spawn(async move { get(&url).await });
    eventually(Duration::from_secs(5), "slow request reached a", || async { a.in_flight() == 1 }).await;

    let next = two_pools("pa", &[&b], &[&b], "");
    sw.write_config(&next);
    sw.wait_version(&sw.version_of(&next)).await;
    for i in 0..10 {
        assert_eq!(origin_of(&sw, &format!("/new/{i}")).await, "b", "new requests avoid the removed endpoint");
    }
    assert_eq!(a.in_flight(), 1, "the in-flight request is still running on the removed endpoint");
    let status = sw.status().await;
    let listed: Vec<&str> =
        status["pools"]["pa"]["endpoints"].as_array().unwrap().iter().map(|e| e["addr"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![b.endpoint()]);

    let resp = slow.await.unwrap().expect("the drained request completes");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.origin(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_endpoints_are_probed_before_use() {
    let (a, c) = (Origin::start("a").await, Origin::start("c").await);
    let health = "health = { path = \"/health\", interval = \"100ms\", timeout = \"80ms\", unhealthy_after = 2, healthy_after = 2 }";
    let sw = Spillway::start(&two_pools("pa", &[&a], &[&a], health)).await;
    c.set_healthy(false);
    let next = two_pools("pa", &[&a, &c], &[&a], health);
    sw.write_config(&next);
    sw.wait_version(&sw.version_of(&next)).await;
    eventually(Duration::from_secs(5), "c probed", || async { c.probes() >= 2 }).await;
    for _ in 0..20 {
        assert_eq!(origin_of(&sw, "/x").await, "a");
    }
    assert_eq!(c.hits(), 0, "an endpoint that never passed a probe takes no traffic");
    c.set_healthy(true);
    // A slow answer from a makes it look expensive, so P2C tries c.
    eventually(Duration::from_secs(5), "c takes traffic once healthy", || async {
        origin_of(&sw, "/y?delay_ms=20").await;
        c.hits() > 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_survives_a_reload() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let sw = Spillway::start(&two_pools("pa", &[&a], &[&b], "")).await;
    let tcp = tokio::net::TcpStream::connect(sw.addr("web")).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/chat", sw.addr("web")), tcp).await.unwrap();
    let greeting = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(greeting, Message::text("hello from a"));

    let next = two_pools("pb", &[&b], &[&b], "");
    sw.write_config(&next);
    sw.wait_version(&sw.version_of(&next)).await;
    assert_eq!(origin_of(&sw, "/new").await, "b");
    ws.send(Message::text("still there?")).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(reply, Message::text("echo: still there?"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_address_change_opens_the_new_and_closes_the_old() {
    let a = Origin::start("a").await;
    let config = two_pools("pa", &[&a], &[&a], "");
    let sw = Spillway::start(&config).await;
    let old = sw.addr("web");
    // The whole of 127.0.0.0/8 is loopback on Linux: a different address
    // with an ephemeral port.
    let moved = config.replacen("listen = \"127.0.0.1:0\"\n\n[pools", "listen = \"127.0.0.2:0\"\n\n[pools", 1);
    assert_ne!(moved, config);
    sw.write_config(&moved);
    sw.wait_version(&sw.version_of(&moved)).await;
    let new = sw.wait_listening("web", Some(old)).await;
    assert_ne!(new, old);
    assert_eq!(new.ip().to_string(), "127.0.0.2");
    let resp = get(&format!("http://{new}/moved")).await.unwrap();
    assert_eq!(resp.status, 200);
    eventually(Duration::from_secs(5), "old address closed", || async {
        tokio::net::TcpStream::connect(old).await.is_err()
    })
    .await;
    let status = sw.status().await;
    assert_eq!(status["listeners"][0]["addr"], new.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_state_and_upstream_connections_survive_a_reload() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let pool = "eject_after = 2\neject_base = \"60s\"\neject_max = \"60s\"";
    let sw = Spillway::start(&two_pools("pa", &[&a, &b], &[&b], pool)).await;
    a.set_failing(Some(503));
    // b answers slowly, a fails fast: a looks cheaper and keeps being picked.
    eventually(Duration::from_secs(10), "a ejected", || async {
        get(&sw.url("web", "/x?delay_ms=50")).await.unwrap();
        endpoint_field(&sw, "pa", &a.endpoint(), "ejected").await == true
    })
    .await;
    a.set_failing(None);
    for i in 0..5 {
        assert_eq!(origin_of(&sw, &format!("/warm/{i}")).await, "b");
    }
    let b_connections = b.connections();

    // A reload that changes something else: the route's name.
    let next = two_pools("pa", &[&a, &b], &[&b], pool).replace("name = \"main\"", "name = \"renamed\"");
    sw.write_config(&next);
    sw.wait_version(&sw.version_of(&next)).await;
    assert_eq!(endpoint_field(&sw, "pa", &a.endpoint(), "ejected").await, true, "ejection survives the reload");
    for i in 0..10 {
        assert_eq!(origin_of(&sw, &format!("/after/{i}")).await, "b");
    }
    assert_eq!(b.connections(), b_connections, "keep-alive connections to b were reused, not reopened");
}

/// A field of endpoint `addr` in pool `pool` in `/status`.
async fn endpoint_field(sw: &Spillway, pool: &str, addr: &str, field: &str) -> serde_json::Value {
    let status = sw.status().await;
    let endpoints = status["pools"][pool]["endpoints"].as_array().unwrap().clone();
    endpoints.into_iter().find(|e| e["addr"] == addr).unwrap()[field].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_can_be_added_and_removed_by_reload() {
    let a = Origin::start("a").await;
    let config = two_pools("pa", &[&a], &[&a], "");
    let sw = Spillway::start(&config).await;
    let extra = "[[listener]]\nname = \"extra\"\nlisten = \"127.0.0.1:0\"\n\n[pools.pa]";
    let with_extra = config.replacen("[pools.pa]", extra, 1);
    sw.write_config(&with_extra);
    sw.wait_version(&sw.version_of(&with_extra)).await;
    let extra_addr = sw.wait_listening("extra", None).await;
    assert_eq!(get(&format!("http://{extra_addr}/extra")).await.unwrap().status, 200);
    assert_eq!(get(&sw.url("web", "/web")).await.unwrap().status, 200, "the untouched listener keeps serving");

    sw.write_config(&config);
    sw.wait_version(&sw.version_of(&config)).await;
    eventually(Duration::from_secs(5), "removed listener closed", || async {
        tokio::net::TcpStream::connect(extra_addr).await.is_err()
    })
    .await;
    assert_eq!(get(&sw.url("web", "/web")).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_queued_on_the_old_snapshot_is_served_after_its_endpoint_is_removed() {
    // One request at a time (no overflow: the second waits in the gate's
    // queue), holding the snapshot it started on while a reload removes the
    // pool's only endpoint. It must still be served, not failed with 503.
    // A read waits at most the SLO less the pool's latency: an SLO of 20 s
    // lets it wait out the slow first request.
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let spill = "\n[spill]\nmode = \"static\"\nmax_in_flight = 1\nqueue_timeout = \"10s\"\nlatency_slo = \"20s\"\n";
    let sw = Spillway::start(&format!("{}{spill}", two_pools("pa", &[&a], &[&b], ""))).await;
    let slow_url = sw.url("web", "/first?delay_ms=1500");
    let first = tokio::spawn(async move { get(&slow_url).await });
    eventually(Duration::from_secs(5), "first request at a", || async { a.in_flight() == 1 }).await;
    let queued_url = sw.url("web", "/queued");
    let queued = tokio::spawn(async move { get(&queued_url).await });
    // Nothing shows a queued request from outside; give it time to reach
    // the queue. (Were it late, it would start on the new snapshot and
    // pass without exercising the old one: never a false failure.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.hits(), 1, "the second request is waiting, not forwarded");

    let next = format!("{}{spill}", two_pools("pa", &[&b], &[&b], ""));
    sw.write_config(&next);
    sw.wait_version(&sw.version_of(&next)).await;

    assert_eq!(first.await.unwrap().unwrap().status, 200);
    let resp = queued.await.unwrap().unwrap();
    assert_eq!(resp.status, 200, "queued request failed after the reload: {} {:?}", resp.text(), resp.headers);
}

/// A free loopback port (bound, then released) for a listener whose
/// address must stay the same across reloads.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Opens a connection and proxies one keep-alive request on it: the
/// stream, and the status (`503` when over the cap: then it is closed).
async fn open_and_request(addr: std::net::SocketAddr) -> (tokio::net::TcpStream, u16) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let status = request_on(&mut tcp).await;
    (tcp, status)
}

/// One `GET` on an open connection; the response's status (0 when the
/// connection closed before a status line).
async fn request_on(tcp: &mut tokio::net::TcpStream) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.write_all(b"GET /cap HTTP/1.1\r\nhost: t\r\n\r\n").await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0usize);
            if got.len() >= end + 4 + length {
                return text[9..12].parse().unwrap();
            }
        }
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return 0,
        }
    }
}

/// Issue 13: `max_connections` on a listener that keeps its address
/// applies on reload. Raised, the connections it now allows are admitted
/// at once; lowered below what is open, no open connection is cut and
/// nothing new is admitted until enough of them have closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_change_applies_on_reload_without_cutting_a_connection() {
    let a = Origin::start("a").await;
    let with_cap = |n: usize| support::simple_config(&[&a], &format!("max_connections = {n}\n"), "");
    let sw = Spillway::start(&with_cap(2)).await;
    let addr = sw.addr("web");
    let mut open = Vec::new();
    for _ in 0..2 {
        let (tcp, status) = open_and_request(addr).await;
        assert_eq!(status, 200);
        open.push(tcp);
    }
    assert_eq!(open_and_request(addr).await.1, 503, "a third connection over max_connections = 2");

    let raised = with_cap(4);
    sw.write_config(&raised);
    sw.wait_version(&sw.version_of(&raised)).await;
    assert_eq!(sw.status().await["listeners"][0]["max_connections"], 4, "the cap in effect, in /status");
    for _ in 0..2 {
        let (tcp, status) = open_and_request(addr).await;
        assert_eq!(status, 200, "raised to 4: admitted");
        open.push(tcp);
    }
    assert_eq!(open_and_request(addr).await.1, 503, "a fifth over max_connections = 4");

    let lowered = with_cap(1);
    sw.write_config(&lowered);
    sw.wait_version(&sw.version_of(&lowered)).await;
    for tcp in open.iter_mut() {
        assert_eq!(request_on(tcp).await, 200, "an open connection keeps serving after the cap is lowered");
    }
    assert_eq!(open_and_request(addr).await.1, 503, "four open, cap 1: refused");
    open.truncate(1);
    // The three closed connections pay the cap back down; one is open.
    eventually(Duration::from_secs(5), "closed connections released", || async {
        sw.status().await["connections"] == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(open_and_request(addr).await.1, 503, "one open, cap 1: still refused");
    open.clear();
    let mut admitted = false;
    for _ in 0..50 {
        let (tcp, status) = open_and_request(addr).await;
        if status == 200 {
            admitted = true;
            open.push(tcp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "all closed: one connection is admitted again");
    assert_eq!(open_and_request(addr).await.1, 503, "and only one");
    assert_eq!(sw.metric("config_reload_failures_total").await, 0.0);
}

/// Issue 13: renaming a listener that keeps its address, and swapping two
/// listeners' addresses, apply on reload (the socket passes from the old
/// name to the new one, it is never closed): under a client loop of new
/// and kept-alive connections, no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_and_swapping_listeners_on_reload_refuses_no_connection() {
    let a = Origin::start("a").await;
    let (p, q) = (free_port(), free_port());
    let config = |first: (&str, u16), second: (&str, u16)| {
        format!(
            "{ADMIN}\n[[listener]]\nname = \"{}\"\nlisten = \"127.0.0.1:{}\"\n\n[[listener]]\nname = \"{}\"\nlisten = \"127.0.0.1:{}\"\n\n[pools.app]\nendpoints = {}\n\n[[route]]\nprimary = \"app\"\n",
            first.0, first.1, second.0, second.1, endpoints(&[&a])
        )
    };
    let start = config(("web", p), ("api", q));
    let sw = Spillway::start(&start).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let loops = vec![
        client_loop(format!("http://127.0.0.1:{p}/p"), stop.clone(), ok.clone(), failures.clone()),
        client_loop(format!("http://127.0.0.1:{q}/q"), stop.clone(), ok.clone(), failures.clone()),
        keepalive_loop(format!("http://127.0.0.1:{p}/kept"), stop.clone(), ok.clone(), failures.clone()),
    ];
    let steps = [
        config(("www", p), ("api", q)),  // rename, same address
        config(("www", q), ("api", p)),  // swap the two addresses
        config(("web", p), ("api2", q)), // rename both back and forth
        start.clone(),
    ];
    for next in &steps {
        let before = ok.load(SeqCst);
        sw.write_config(next);
        sw.wait_version(&sw.version_of(next)).await;
        eventually(Duration::from_secs(10), "traffic flows after the reload", || async {
            ok.load(SeqCst) > before + 20
        })
        .await;
    }
    let status = sw.status().await;
    let names: Vec<_> = status["listeners"].as_array().unwrap().iter().map(|l| l["name"].clone()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    stop_and_expect_no_failure(&stop, loops, &ok, &failures).await;
    assert_eq!(sw.metric("config_reload_failures_total").await, 0.0);
    eprintln!("{} requests across {} listener renames and swaps, none failed", ok.load(SeqCst), steps.len());
}

/// Issue 13: a reload that adds the first `[scale]` section starts the
/// controllers a start with it would have (moto's Auto Scaling group goes
/// to the section's `min`); a second reload does not start them twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_adds_the_first_scale_section_starts_the_controller() {
    let moto = moto::Moto::start().await;
    let sdk = moto::sdk_config(&moto.url()).await;
    moto::create_group(&sdk, "reload-burst", 0, 0, 10).await;
    let a = Origin::start("a").await;
    let config = support::simple_config(&[&a], "", "");
    let sw = Spillway::start_env(&config, &moto.binary_env()).await;
    assert_eq!(sw.status().await["controllers"]["running"], false);
    let scale = "\n[scale]\nregion = \"us-east-1\"\nauto_scaling_group = \"reload-burst\"\nper_instance_rps = 100\nmin = 2\nmax = 10\ninterval = \"200ms\"\n";
    let with_scale = format!("{config}{scale}");
    sw.write_config(&with_scale);
    sw.wait_version(&sw.version_of(&with_scale)).await;
    moto::eventually(Duration::from_secs(10), "the group raised to scale.min", || async {
        moto::desired(&sdk, "reload-burst").await == 2
    })
    .await;
    let min3 = with_scale.replace("min = 2", "min = 3");
    sw.write_config(&min3);
    sw.wait_version(&sw.version_of(&min3)).await;
    moto::eventually(Duration::from_secs(10), "the running controller took the new min", || async {
        moto::desired(&sdk, "reload-burst").await == 3
    })
    .await;
    let log = sw.log();
    assert_eq!(log.matches("AWS controllers started").count(), 1, "started once:\n{log}");
    assert_ne!(sw.status().await["controllers"]["running"], false);
}
