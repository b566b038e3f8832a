//! The readiness endpoint on the proxy listeners, end to end through the
//! real binary: answered by Spillway for any Host, never proxied; 200 while
//! the primary pool serves, 503 once its probes fail (and once disaster is
//! declared), 503 from the moment shutdown begins (`runtime.drain_delay`
//! keeps the listener serving meanwhile), and proxied like any path when
//! `readiness_path = ""`.

mod support;

use std::time::Duration;

use http::Method;
use support::tls::TestCa;
use support::{curl, endpoints, eventually, request, Origin, Resp, Spillway, ADMIN};

const READY: &str = "/.spillway/ready";
const PROBES: &str =
    r#"health = { path = "/health", interval = "100ms", timeout = "100ms", unhealthy_after = 2, healthy_after = 1 }"#;

/// One plain listener, primary `onprem` (probed) spilling to a probed `aws`.
fn config(onprem: &Origin, cloud: &Origin, runtime_extra: &str, listener_extra: &str) -> String {
    format!(
        r#"{ADMIN}
[runtime]
drain_timeout = "10s"
{runtime_extra}

[[listener]]
name = "web"
listen = "127.0.0.1:0"
{listener_extra}

[pools.onprem]
endpoints = {onprem}
{PROBES}
connect_timeout = "200ms"

[pools.aws]
role = "cloud"
endpoints = {cloud}
{PROBES}
connect_timeout = "200ms"

[[route]]
name = "www"
host = "www.sportchat.test"
primary = "onprem"
overflow = "aws"

[spill]
tick = "50ms"
disaster_after = "1s"
"#,
        onprem = endpoints(&[onprem]),
        cloud = endpoints(&[cloud]),
    )
}

async fn ask(sw: &Spillway, method: Method, host: &str) -> Resp {
    let url = sw.url("web", READY);
    request(method, &url, vec![("host", host.to_string())], &[]).await.expect("readiness answers")
}

async fn status_of(sw: &Spillway) -> (u16, String) {
    let r = ask(sw, Method::GET, "health-checker.route53.test").await;
    (r.status, r.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_while_the_primary_serves_503_when_it_is_down_and_never_proxied() {
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let sw = Spillway::start(&config(&onprem, &cloud, "", "")).await;
    eventually(Duration::from_secs(5), "ready once the probes pass", || async { status_of(&sw).await.0 == 200 }).await;
    assert_eq!(status_of(&sw).await, (200, "ready\n".to_string()));
    for host in ["www.sportchat.test", "no-route.example", "203.0.113.7:8080"] {
        let r = ask(&sw, Method::GET, host).await;
        assert_eq!(r.status, 200, "any Host: {host}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    let head = ask(&sw, Method::HEAD, "x").await;
    assert_eq!((head.status, head.text().as_str()), (200, ""), "HEAD: the status, no body");
    let post = ask(&sw, Method::POST, "x").await;
    assert_eq!((post.status, post.header("allow")), (405, Some("GET, HEAD")));
    let routed =
        request(Method::GET, &sw.url("web", "/page"), vec![("host", "www.sportchat.test".into())], &[]).await.unwrap();
    assert_eq!((routed.status, routed.origin()), (200, Some("onprem")), "other paths are proxied");

    onprem.kill();
    eventually(Duration::from_secs(5), "503 once the probes notice", || async { status_of(&sw).await.0 == 503 }).await;
    let (_, why) = status_of(&sw).await;
    assert_eq!(why, "not ready: no healthy primary endpoint\n", "the public answer names no pool");
    eventually(Duration::from_secs(5), "and in disaster recovery once declared", || async {
        status_of(&sw).await.1.contains("disaster recovery")
    })
    .await;
    assert_eq!(onprem.hits() + cloud.hits(), 1, "only /page reached an origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_from_sigterm_while_the_listener_still_serves_then_drains() {
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let mut sw = Spillway::start(&config(&onprem, &cloud, r#"drain_delay = "2s""#, "")).await;
    eventually(Duration::from_secs(5), "ready", || async { status_of(&sw).await.0 == 200 }).await;
    let host = vec![("host", "www.sportchat.test".to_string())];
    let slow = sw.url("web", "/slow?delay_ms=4000");
    let in_flight = tokio::spawn({
        let host = host.clone();
        async move { request(Method::GET, &slow, host, &[]).await }
    });
    eventually(Duration::from_secs(5), "the slow request reached the origin", || async { onprem.in_flight() == 1 })
        .await;
    sw.signal("TERM");
    eventually(Duration::from_secs(2), "503 once shutdown began", || async { status_of(&sw).await.0 == 503 }).await;
    assert_eq!(status_of(&sw).await.1, "not ready: shutting down\n");
    let admin = support::get(&sw.admin_url("/readyz")).await.unwrap();
    assert_eq!(admin.status, 503, "the admin /readyz agrees");
    let page = request(Method::GET, &sw.url("web", "/page"), host, &[]).await.unwrap();
    assert_eq!((page.status, page.origin()), (200, Some("onprem")), "still serving during drain_delay");
    // Then the drain: no new connection (a health checker sees it refused),
    // while the request in flight finishes.
    let web = sw.addr("web");
    eventually(Duration::from_secs(4), "stopped accepting after the delay", || async {
        tokio::net::TcpStream::connect(web).await.is_err()
    })
    .await;
    let slow = in_flight.await.unwrap().expect("the request in flight completes");
    assert_eq!((slow.status, slow.origin()), (200, Some("onprem")));
    let status = sw.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "drained and exited: {status}");
    assert_eq!(onprem.hits() + cloud.hits(), 2, "/slow and /page only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_readiness_path_proxies_it_like_any_other() {
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let sw = Spillway::start(&config(&onprem, &cloud, "", r#"readiness_path = """#)).await;
    let r = ask(&sw, Method::GET, "www.sportchat.test").await;
    assert_eq!((r.status, r.origin()), (200, Some("onprem")));
    assert_eq!(r.json()["path"], READY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_over_tls_by_alpn_as_a_route53_https_check_asks() {
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let ca = TestCa::new("spillway test CA");
    let dir = tempfile::tempdir().unwrap();
    ca.issue("dc1-edge.sportchat.test", &["dc1-edge.sportchat.test"]).write(dir.path(), "web");
    let ca_path = ca.write(dir.path(), "ca.pem");
    let tls = r#"tls = { cert = "web.crt", key = "web.key" }"#;
    let sw = Spillway::start_in(dir, &config(&onprem, &cloud, "", tls)).await;
    let port = sw.addr("web").port();
    let resolve = format!("dc1-edge.sportchat.test:{port}:127.0.0.1");
    let url = format!("https://dc1-edge.sportchat.test:{port}{READY}");
    let ca_arg = ca_path.to_str().unwrap();
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let args = [flag, "--cacert", ca_arg, "--resolve", &resolve, &url];
        eventually(Duration::from_secs(5), "ready over TLS", || async { curl(&args).await.status == 200 }).await;
        let out = curl(&args).await;
        assert_eq!((out.exit, out.http_version.as_str(), out.body.as_str()), (0, version, "ready\n"), "{out:?}");
    }
    assert_eq!(onprem.hits() + cloud.hits(), 0, "never proxied");
}
