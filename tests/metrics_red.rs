//! Issue 14, item 2: the metrics users expect, scraped from the real
//! binary. During a burst (the only on-prem slot held, reads spilling to
//! the cloud) `spillway_requests_total` rises for both pools and the
//! duration, connect and first-byte histograms fill their buckets;
//! upstream connection reuse, client bytes and TLS handshakes (ok and
//! failed) are counted. Label sets stay bounded: no path, no address.

mod support;

use std::time::Duration;

use http::Method;
use support::tls::{handshake, TestCa};
use support::{endpoints, eventually, get, request, Origin, Spillway, ADMIN};
use tokio::io::AsyncWriteExt;

/// The sum of the samples of `name` whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(sw: &Spillway) -> String {
    get(&sw.admin_url("/metrics")).await.unwrap().text()
}

fn config(onprem: &Origin, cloud: &Origin, listener_extra: &str) -> String {
    format!(
        r#"{ADMIN}
[[listener]]
name = "web"
listen = "127.0.0.1:0"
{listener_extra}

[pools.onprem]
endpoints = {onprem}
response_timeout = "10s"

[pools.aws]
role = "cloud"
endpoints = {cloud}

[[route]]
name = "www"
primary = "onprem"
overflow = "aws"

[spill]
mode = "static"
max_in_flight = 1
queue_timeout = "200ms"
"#,
        onprem = endpoints(&[onprem]),
        cloud = endpoints(&[cloud]),
    )
}

const TOTAL: &str = "spillway_requests_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_during_a_burst_shows_both_pools_rising_and_buckets_filling() {
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let sw = Spillway::start(&config(&onprem, &cloud, "")).await;
    for _ in 0..3 {
        assert_eq!(get(&sw.url("web", "/calm")).await.unwrap().status, 200);
    }
    let before = scrape(&sw).await;
    let onprem_2xx = [("route", "www"), ("pool", "onprem"), ("code_class", "2xx")];
    assert_eq!(metric(&before, TOTAL, &onprem_2xx), 3.0, "{before}");

    let hold_url = sw.url("web", "/hold?delay_ms=1500");
    let hold = tokio::spawn(async move { get(&hold_url).await });
    eventually(Duration::from_secs(5), "the slot held", || async { onprem.in_flight() == 1 }).await;
    for _ in 0..5 {
        assert_eq!(get(&sw.url("web", "/burst")).await.unwrap().origin(), Some("cloud"));
    }
    let shed = request(Method::POST, &sw.url("web", "/write"), Vec::new(), b"").await.unwrap();
    assert_eq!(shed.status, 503);
    let during = scrape(&sw).await;
    let aws_2xx = [("route", "www"), ("pool", "aws"), ("code_class", "2xx")];
    assert_eq!(metric(&during, TOTAL, &aws_2xx), 5.0, "{during}");
    assert_eq!(metric(&during, TOTAL, &[("pool", "onprem"), ("code_class", "5xx")]), 1.0, "the shed write");
    hold.await.unwrap().unwrap();
    let after = scrape(&sw).await;
    assert_eq!(metric(&after, TOTAL, &onprem_2xx), 4.0, "the held request, once answered");

    // Buckets: the 1.5 s request lands above 1 s, the fast ones in the lowest.
    let bucket = "spillway_request_duration_seconds_bucket";
    assert_eq!(metric(&after, bucket, &[("pool", "onprem"), ("le", "1")]), 4.0, "{after}");
    assert_eq!(metric(&after, bucket, &[("pool", "onprem"), ("le", "2.5")]), 5.0, "{after}");
    assert_eq!(metric(&after, bucket, &[("pool", "aws"), ("le", "+Inf")]), 5.0);
    assert_eq!(metric(&after, "spillway_upstream_first_byte_seconds_count", &[("pool", "aws")]), 5.0);
    assert!(metric(&after, "spillway_upstream_connect_seconds_count", &[("pool", "aws")]) >= 1.0);
    let reused = metric(&after, "spillway_upstream_requests_total", &[("pool", "aws"), ("connection", "reused")]);
    let new = metric(&after, "spillway_upstream_requests_total", &[("pool", "aws"), ("connection", "new")]);
    assert!(new >= 1.0 && reused >= 1.0 && new + reused == 5.0, "new {new}, reused {reused}");
    let (bytes_in, bytes_out) = (
        metric(&after, "spillway_client_bytes_total", &[("listener", "web"), ("direction", "in")]),
        metric(&after, "spillway_client_bytes_total", &[("listener", "web"), ("direction", "out")]),
    );
    assert!(bytes_in > 0.0 && bytes_out > bytes_in, "in {bytes_in}, out {bytes_out}");
    for line in after.lines().filter(|l| l.starts_with("spillway_requests_total{")) {
        assert!(!line.contains("path=") && !line.contains("/burst") && !line.contains("127.0.0.1"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_are_counted_ok_and_failed() {
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let ca = TestCa::new("metrics test CA");
    let dir = tempfile::tempdir().unwrap();
    ca.issue("edge.sportchat.test", &["edge.sportchat.test"]).write(dir.path(), "web");
    let tls = r#"tls = { cert = "web.crt", key = "web.key" }"#;
    let sw = Spillway::start_in(dir, &config(&onprem, &cloud, tls)).await;
    handshake(sw.addr("web"), "edge.sportchat.test", ca.client_config(&[b"http/1.1"])).await.unwrap();
    let mut garbage = tokio::net::TcpStream::connect(sw.addr("web")).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let ok = [("listener", "web"), ("result", "ok")];
    let failed = [("listener", "web"), ("result", "failed")];
    eventually(Duration::from_secs(5), "one handshake ok, one failed", || async {
        let m = scrape(&sw).await;
        metric(&m, "spillway_tls_handshakes_total", &ok) == 1.0
            && metric(&m, "spillway_tls_handshakes_total", &failed) == 1.0
    })
    .await;
}
