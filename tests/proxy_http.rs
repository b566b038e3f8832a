//! Issue 2, end to end: the real `spillway` binary between real clients
//! (curl, hyper, tungstenite) and in-process origins, over real sockets.

mod support;

use std::time::{Duration, Instant};

use http::Method;
use support::tls::TestCa;
use support::{curl, endpoints, eventually, get, request, simple_config, Origin, Spillway, ADMIN};

/// The echo document's header `name` as one string (values joined by ", ").
fn seen(echo: &serde_json::Value, name: &str) -> Option<String> {
    echo["headers"][name].as_array().map(|vs| vs.iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>().join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http11_is_proxied_to_the_origin() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "", "")).await;
    let out = curl(&["--http1.1", "-H", "X-Test: 1", &sw.url("web", "/hello?x=1")]).await;
    assert_eq!((out.exit, out.status, out.http_version.as_str()), (0, 200, "1.1"), "{out:?}");
    let echo = out.json();
    assert_eq!(echo["origin"], "a");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/hello?x=1");
    assert_eq!(seen(&echo, "x-test").as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_h2_prior_knowledge_on_a_plain_listener() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "", "")).await;
    let out = curl(&["--http2-prior-knowledge", &sw.url("web", "/h2c")]).await;
    assert_eq!((out.exit, out.status, out.http_version.as_str()), (0, 200, "2"), "{out:?}");
    let echo = out.json();
    assert_eq!(echo["path"], "/h2c");
    assert_eq!(echo["version"], "HTTP/1.1", "upstream is HTTP/1.1");
    assert_eq!(seen(&echo, "host"), Some(sw.addr("web").to_string()), "the :authority becomes Host");
    assert_eq!(seen(&echo, "via").as_deref(), Some("2 spillway"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_tls_negotiates_h2_and_http11_by_alpn() {
    let a = Origin::start("a").await;
    let ca = TestCa::new("spillway test CA");
    let dir = tempfile::tempdir().unwrap();
    ca.issue("spillway.test", &["spillway.test"]).write(dir.path(), "web");
    let ca_path = ca.write(dir.path(), "ca.pem");
    let config = simple_config(&[&a], "tls = { cert = \"web.crt\", key = \"web.key\" }", "");
    let sw = Spillway::start_in(dir, &config).await;
    let port = sw.addr("web").port();
    let resolve = format!("spillway.test:{port}:127.0.0.1");
    let url = format!("https://spillway.test:{port}/secure");
    let ca_arg = ca_path.to_str().unwrap();

    let h2 = curl(&["--http2", "--cacert", ca_arg, "--resolve", &resolve, &url]).await;
    assert_eq!((h2.exit, h2.status, h2.http_version.as_str()), (0, 200, "2"), "{h2:?}");
    let echo = h2.json();
    assert_eq!(seen(&echo, "x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(seen(&echo, "host"), Some(format!("spillway.test:{port}")));

    let h1 = curl(&["--http1.1", "--cacert", ca_arg, "--resolve", &resolve, &url]).await;
    assert_eq!((h1.exit, h1.status, h1.http_version.as_str()), (0, 200, "1.1"), "{h1:?}");

    // A client that does not trust the CA is refused by curl itself.
    let untrusted = curl(&["--http2", "--resolve", &resolve, &url]).await;
    assert_ne!(untrusted.exit, 0, "{untrusted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_rewritten_as_seen_by_the_origin() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "", "")).await;
    let headers = vec![
        ("host", "www.example.com".to_string()),
        ("connection", "keep-alive, x-secret".to_string()),
        ("x-secret", "hop".to_string()),
        ("keep-alive", "timeout=5".to_string()),
        ("te", "trailers".to_string()),
        ("proxy-authorization", "Basic Zm9vOmJhcg==".to_string()),
        ("x-forwarded-for", "203.0.113.9".to_string()),
        ("via", "1.1 cdn".to_string()),
        ("x-keep", "yes".to_string()),
    ];
    let resp = request(Method::GET, &sw.url("web", "/headers"), headers, &[]).await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let echo = resp.json();
    for gone in ["connection", "x-secret", "keep-alive", "te", "proxy-authorization", "upgrade"] {
        assert_eq!(seen(&echo, gone), None, "{gone} must not reach the origin: {echo}");
    }
    assert_eq!(seen(&echo, "host").as_deref(), Some("www.example.com"), "Host is preserved");
    assert_eq!(seen(&echo, "x-forwarded-for").as_deref(), Some("127.0.0.1"), "at the edge: the peer alone");
    assert_eq!(seen(&echo, "x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(seen(&echo, "x-forwarded-host").as_deref(), Some("www.example.com"));
    assert_eq!(seen(&echo, "via").as_deref(), Some("1.1 cdn, 1.1 spillway"));
    assert_eq!(seen(&echo, "x-keep").as_deref(), Some("yes"));
    assert!(resp.header("via").is_some_and(|v| v.contains("spillway")), "response Via: {:?}", resp.headers);
    assert_eq!(resp.origin(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_address_headers_are_ours_unless_the_peer_is_a_trusted_proxy() {
    let a = Origin::start("a").await;
    let spoofed = || {
        vec![
            ("host", "www.example.com".to_string()),
            ("x-forwarded-for", "203.0.113.9".to_string()),
            ("forwarded", "for=203.0.113.9".to_string()),
            ("x-real-ip", "203.0.113.9".to_string()),
            ("x_forwarded_for", "203.0.113.9".to_string()),
            ("x-forwarded-proto", "https".to_string()),
        ]
    };
    let edge = Spillway::start(&simple_config(&[&a], "", "")).await;
    let echo = request(Method::GET, &edge.url("web", "/headers"), spoofed(), &[]).await.unwrap().json();
    assert_eq!(seen(&echo, "x-forwarded-for").as_deref(), Some("127.0.0.1"), "{echo}");
    for gone in ["forwarded", "x-real-ip", "x_forwarded_for"] {
        assert_eq!(seen(&echo, gone), None, "{gone} must not reach the origin: {echo}");
    }
    assert_eq!(seen(&echo, "x-forwarded-proto").as_deref(), Some("http"));

    let behind_lb = Spillway::start(&simple_config(&[&a], "trusted_proxies = [\"127.0.0.0/8\"]", "")).await;
    let echo = request(Method::GET, &behind_lb.url("web", "/headers"), spoofed(), &[]).await.unwrap().json();
    assert_eq!(seen(&echo, "x-forwarded-for").as_deref(), Some("203.0.113.9, 127.0.0.1"), "{echo}");
    assert_eq!(seen(&echo, "forwarded").as_deref(), Some("for=203.0.113.9"));
    assert_eq!(seen(&echo, "x-real-ip").as_deref(), Some("203.0.113.9"));
    assert_eq!(seen(&echo, "x_forwarded_for"), None, "underscored names never pass");
    assert_eq!(seen(&echo, "x-forwarded-proto").as_deref(), Some("http"), "the scheme is always ours");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_alive_and_reused() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "", "")).await;
    for i in 0..30 {
        let resp = get(&sw.url("web", &format!("/ka/{i}"))).await.unwrap();
        assert_eq!(resp.status, 200);
    }
    assert_eq!(a.hits(), 30);
    assert!(a.connections() <= 3, "30 sequential requests opened {} upstream connections", a.connections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_is_tunnelled_both_ways() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "", "")).await;
    let tcp = tokio::net::TcpStream::connect(sw.addr("web")).await.unwrap();
    let url = format!("ws://{}/chat", sw.addr("web"));
    let (mut ws, resp) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::client_async(url, tcp))
        .await
        .expect("handshake in time")
        .expect("websocket handshake through the proxy");
    assert_eq!(resp.status(), 101);

    let greeting = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(greeting, Message::text("hello from a"), "server → client");
    for i in 0..5 {
        ws.send(Message::text(format!("msg {i}"))).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(reply, Message::text(format!("echo: msg {i}")));
    }
    let blob: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    ws.send(Message::binary(blob.clone())).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(reply.into_data().as_ref(), blob.as_slice());
    ws.close(None).await.unwrap();
}

// P2C over PeakEWMA picks the cheaper of the two endpoints. A request that
// waits `delay_ms` at the origin raises that endpoint's latency estimate, so
// the tests below steer the balancer with it instead of relying on luck.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_origin_gets_are_retried_on_the_other_endpoint() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let sw = Spillway::start(&simple_config(&[&a, &b], "", "eject_after = 1000")).await;
    // Warm both endpoints so the proxy holds keep-alive connections to each
    // (a slow answer makes an endpoint look expensive: the next goes elsewhere).
    eventually(Duration::from_secs(10), "both origins served", || async {
        get(&sw.url("web", "/warm?delay_ms=20")).await.unwrap();
        a.hits() > 0 && b.hits() > 0
    })
    .await;
    a.kill();
    let b_before = b.hits();
    // b answers slowly (200 ms, far above anything a measured while warming),
    // so the dead a, which never gets a latency sample again, keeps looking
    // cheaper and is tried first every time.
    let mut stale = 0;
    for i in 0..10 {
        let resp = get(&sw.url("web", &format!("/after-kill/{i}?delay_ms=200"))).await.expect("an answer, not a hang");
        if resp.status == 502 && resp.header("x-spillway-error") == Some("upstream") && stale == 0 {
            // The keep-alive race: a request written on a pooled connection
            // the dead origin had closed, before the proxy saw the close.
            // Bytes went upstream, so it is not retried; at most once.
            stale += 1;
            continue;
        }
        assert_eq!(resp.status, 200, "request {i}: {} {:?}", resp.text(), resp.headers);
        assert_eq!(resp.origin(), Some("b"));
    }
    assert_eq!(b.hits() - b_before, 10 - stale, "each GET reached b at most once");
    let retries = sw.metric("spillway_retries_total").await;
    assert!(retries >= 5.0, "GETs that met the dead endpoint were retried: {retries}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_origins_dead_gives_502_quickly() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "", "")).await;
    assert_eq!(get(&sw.url("web", "/")).await.unwrap().status, 200);
    a.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let resp = get(&sw.url("web", "/dead")).await.expect("an answer, not a hang");
        assert_eq!(resp.status, 502, "{}", resp.text());
        // "upstream" when a pooled connection the origin closed was reused.
        assert!(matches!(resp.header("x-spillway-error"), Some("connect" | "upstream")), "{:?}", resp.headers);
        assert!(started.elapsed() < Duration::from_secs(5), "502 took {:?}", started.elapsed());
    }
    // A pool that is down fails every request: the log gets a bounded
    // number of lines a second (and a count of the rest), the metric all.
    let burst = 300;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..burst {
        let url = sw.url("web", &format!("/dead/{i}"));
        tasks.push(tokio::spawn(async move { get(&url).await.map(|r| r.status) }));
    }
    for t in tasks {
        // 502 until the endpoint is ejected, 503 (no healthy endpoint) after.
        let status = t.await.unwrap().expect("an answer");
        assert!(status == 502 || status == 503, "{status}");
    }
    let seconds = started.elapsed().as_secs() + 2;
    let errors = sw.metric("spillway_proxy_errors_total").await;
    assert!(errors >= f64::from(burst), "every failure counted: {errors}");
    let lines = sw.log().lines().filter(|l| l.contains("request failed")).count();
    assert!(lines as u64 <= 20 * seconds, "{lines} log lines for {burst} failures in about {seconds} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_are_not_retried_on_connect_failure() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let sw = Spillway::start(&simple_config(&[&a, &b], "", "eject_after = 1000")).await;
    a.kill();
    // b answers slowly: the dead a looks cheaper and is picked first.
    let (mut ok, mut bad) = (0, 0);
    for i in 0..20 {
        let url = sw.url("web", &format!("/post/{i}?delay_ms=30"));
        let resp = request(Method::POST, &url, Vec::new(), b"payload").await.unwrap();
        match resp.status {
            200 => {
                ok += 1;
                assert_eq!(resp.json()["body_len"], 7);
            }
            502 => bad += 1,
            other => panic!("unexpected {other}: {}", resp.text()),
        }
    }
    assert!(bad >= 10, "POSTs that met the dead endpoint fail with 502 (ok={ok}, 502={bad})");
    assert_eq!(b.hits(), ok, "every POST reached at most one origin");
    // A GET in the same situation is retried and never fails.
    for _ in 0..10 {
        assert_eq!(get(&sw.url("web", "/get?delay_ms=30")).await.unwrap().status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_origin_gets_504_after_response_timeout() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "", "response_timeout = \"300ms\"")).await;
    let started = Instant::now();
    let resp = get(&sw.url("web", "/slow?delay_ms=5000")).await.unwrap();
    assert_eq!(resp.status, 504, "{}", resp.text());
    assert_eq!(resp.header("x-spillway-error"), Some("upstream_timeout"));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "504 after {took:?}");
    assert_eq!(get(&sw.url("web", "/fast?delay_ms=10")).await.unwrap().status, 200);
    let log = sw.log();
    assert!(log.contains("request failed") && log.contains("status=504"), "a log line for the timeout:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_too_many_headers_get_431() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "max_header_bytes = 8192\nmax_headers = 20", "")).await;
    let addr = sw.addr("web");

    let big = format!("GET /big HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(20_000));
    let answer = support::client::raw(addr, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "oversized headers: {answer:?}");

    let mut many = String::from("GET /many HTTP/1.1\r\nhost: x\r\n");
    for i in 0..40 {
        many.push_str(&format!("x-h{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let answer = support::client::raw(addr, many.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "too many headers: {answer:?}");

    assert_eq!(a.hits(), 0, "neither reached the origin");
    let ok = request(Method::GET, &sw.url("web", "/fine"), vec![("x-small", "1".into())], &[]).await.unwrap();
    assert_eq!(ok.status, 200, "the proxy still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_headers_are_cut_after_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "header_read_timeout = \"500ms\"", "")).await;
    let tcp = tokio::net::TcpStream::connect(sw.addr("web")).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let started = Instant::now();
    // One byte every 50 ms: a request that would take 20 s to finish.
    let writer = tokio::spawn(async move {
        let request = format!("GET /slowloris HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n", "p".repeat(400));
        for b in request.bytes() {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut buf)).await;
    let took = started.elapsed();
    writer.abort();
    assert!(read.is_ok(), "connection still open after 10 s");
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "closed after {took:?}");
    let answer = String::from_utf8_lossy(&buf);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "answer: {answer:?}");
    assert_eq!(a.hits(), 0);
}

/// Reads one response with a `Content-Length` body from a kept-alive connection.
async fn read_response(tcp: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
        let n =
            tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await.expect("answer in time").unwrap();
        if n == 0 {
            return String::from_utf8_lossy(&buf).into_owned();
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_waits_idle_timeout_not_header_read_timeout() {
    use tokio::io::AsyncWriteExt;

    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "header_read_timeout = \"300ms\"\nidle_timeout = \"5s\"", "")).await;
    let mut tcp = tokio::net::TcpStream::connect(sw.addr("web")).await.unwrap();
    tcp.write_all(b"GET /first HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    assert!(read_response(&mut tcp).await.starts_with("HTTP/1.1 200"));
    // Four header read timeouts of keep-alive silence: idle_timeout governs it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    tcp.write_all(b"GET /second HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let second = read_response(&mut tcp).await;
    assert!(second.starts_with("HTTP/1.1 200"), "the kept-alive connection was closed: {second:?}");
    assert_eq!(a.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_started_on_a_kept_alive_connection_is_cut_at_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let a = Origin::start("a").await;
    let sw =
        Spillway::start(&simple_config(&[&a], "header_read_timeout = \"400ms\"\nidle_timeout = \"30s\"", "")).await;
    let mut tcp = tokio::net::TcpStream::connect(sw.addr("web")).await.unwrap();
    tcp.write_all(b"GET /first HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    assert!(read_response(&mut tcp).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(900)).await;
    // Half a head, then nothing: timed from its first byte, not from the last response.
    let started = Instant::now();
    tcp.write_all(b"GET /second HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    let took = started.elapsed();
    assert!(read.is_ok(), "connection still open after 10 s");
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(3), "closed after {took:?}");
    assert!(rest.is_empty(), "answer: {:?}", String::from_utf8_lossy(&rest));
    assert_eq!(a.hits(), 1, "the half head never reached the origin");
}

/// A partial head pipelined behind a whole request (both in one write)
/// arrives while that request is open, so no head timer sees its first
/// byte: the connection is then an idle kept-alive one, and `idle_timeout`
/// closes it. It holds no more than an idle client could.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_head_pipelined_behind_a_request_is_closed_at_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let a = Origin::start("a").await;
    let sw =
        Spillway::start(&simple_config(&[&a], "header_read_timeout = \"400ms\"\nidle_timeout = \"1500ms\"", "")).await;
    let mut tcp = tokio::net::TcpStream::connect(sw.addr("web")).await.unwrap();
    let started = Instant::now();
    tcp.write_all(b"GET /first HTTP/1.1\r\nhost: x\r\n\r\nGET /second HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    let took = started.elapsed();
    assert!(read.is_ok(), "connection still open after 10 s");
    assert!(took < Duration::from_secs(5), "closed after {took:?}, idle_timeout is 1.5 s");
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 200") && text.matches("HTTP/1.1 ").count() == 1, "answers: {text:?}");
    assert_eq!(a.hits(), 1, "the half head never reached the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_max_connections_get_503() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "max_connections = 2", "")).await;
    let addr = sw.addr("web");
    let hold1 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let hold2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answer = support::client::raw(addr, b"GET /third HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "third connection: {answer:?}");
    assert_eq!(a.hits(), 0);
    drop((hold1, hold2));
    eventually(Duration::from_secs(5), "capacity frees up once connections close", || async {
        get(&sw.url("web", "/again")).await.is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(sw.metric("spillway_connections_rejected_total").await >= 1.0);
}

const HEALTH: &str =
    "health = { path = \"/health\", interval = \"100ms\", timeout = \"80ms\", unhealthy_after = 2, healthy_after = 2 }";

/// `/status` for endpoint `addr` of pool `app`.
async fn endpoint_status(sw: &Spillway, addr: &str) -> serde_json::Value {
    let status = sw.status().await;
    status["pools"]["app"]["endpoints"].as_array().unwrap().iter().find(|e| e["addr"] == addr).cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_take_a_failing_endpoint_out_and_back() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let sw = Spillway::start(&simple_config(&[&a, &b], "", HEALTH)).await;
    assert!(a.probes() > 0 && b.probes() > 0, "probed before ready");
    a.set_healthy(false);
    eventually(Duration::from_secs(5), "a marked down", || async {
        let e = endpoint_status(&sw, &a.endpoint()).await;
        e["probe"] == "down" && e["available"] == false
    })
    .await;
    let a_before = a.hits();
    for _ in 0..20 {
        let resp = get(&sw.url("web", "/avoid")).await.unwrap();
        assert_eq!((resp.status, resp.origin()), (200, Some("b")));
    }
    assert_eq!(a.hits(), a_before, "no request went to the endpoint marked down");
    a.set_healthy(true);
    eventually(Duration::from_secs(5), "a back up and taking traffic", || async {
        get(&sw.url("web", "/back?delay_ms=100")).await.unwrap();
        endpoint_status(&sw, &a.endpoint()).await["probe"] == "up" && a.hits() > a_before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_after_consecutive_5xx() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let pool = "eject_after = 3\neject_base = \"4s\"\neject_max = \"4s\"";
    let sw = Spillway::start(&simple_config(&[&a, &b], "", pool)).await;
    // 503 is one of the default passive_fault_statuses (500 is not).
    a.set_failing(Some(503));
    // b answers slowly, a fails fast: a looks cheaper and keeps being picked.
    eventually(Duration::from_secs(10), "a ejected after 3 consecutive 503s", || async {
        get(&sw.url("web", "/x?delay_ms=50")).await.unwrap();
        endpoint_status(&sw, &a.endpoint()).await["ejected"] == true
    })
    .await;
    let a_before = a.hits();
    for _ in 0..20 {
        let resp = get(&sw.url("web", "/while-ejected")).await.unwrap();
        assert_eq!((resp.status, resp.origin()), (200, Some("b")));
    }
    assert_eq!(endpoint_status(&sw, &a.endpoint()).await["ejected"], true, "still inside the ejection window");
    assert_eq!(a.hits(), a_before, "an ejected endpoint takes no traffic");
    assert!(sw.metric("spillway_endpoint_ejections_total").await >= 1.0);
    a.set_failing(None);
    eventually(Duration::from_secs(15), "a readmitted after the backoff", || async {
        get(&sw.url("web", "/later?delay_ms=100")).await.unwrap();
        a.hits() > a_before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_and_exits_0() {
    let a = Origin::start("a").await;
    let mut sw = Spillway::start(&simple_config(&[&a], "", "")).await;
    let url = sw.url("web", "/in-flight?delay_ms=3000");
    let in_flight = tokio::spawn(async move { get(&url).await });
    eventually(Duration::from_secs(5), "request reached the origin", || async { a.in_flight() == 1 }).await;
    sw.signal("TERM");
    eventually(Duration::from_secs(5), "readyz reports draining", || async {
        support::get(&sw.admin_url("/readyz")).await.is_ok_and(|r| r.status == 503)
    })
    .await;
    let web = sw.addr("web");
    eventually(Duration::from_secs(2), "stopped accepting", || async {
        tokio::net::TcpStream::connect(web).await.is_err()
    })
    .await;
    let resp = in_flight.await.unwrap().expect("in-flight request completes");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["path"], "/in-flight?delay_ms=3000");
    let status = sw.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_sni_and_private_ca() {
    let ca = TestCa::new("origin CA");
    let other_ca = TestCa::new("some other CA");
    let leaf = ca.issue("origin.test", &["origin.test"]);
    let secure = Origin::start_tls("secure", leaf.server_config()).await;
    let dir = tempfile::tempdir().unwrap();
    ca.write(dir.path(), "ca.pem");
    other_ca.write(dir.path(), "other-ca.pem");
    let ep = endpoints(&[&secure]);
    let config = format!(
        r#"{ADMIN}
[[listener]]
name = "web"
listen = "127.0.0.1:0"

[pools.good]
endpoints = {ep}
tls = {{ sni = "origin.test", ca = "ca.pem" }}

[pools.wrong_ca]
endpoints = {ep}
tls = {{ sni = "origin.test", ca = "other-ca.pem" }}
eject_after = 1000

[pools.unverified]
endpoints = {ep}
tls = {{ sni = "origin.test", ca = "other-ca.pem", verify = false }}

[pools.wrong_name]
endpoints = {ep}
tls = {{ sni = "elsewhere.test", ca = "ca.pem" }}
eject_after = 1000

[[route]]
path_prefix = "/bad-ca"
primary = "wrong_ca"

[[route]]
path_prefix = "/unverified"
primary = "unverified"

[[route]]
path_prefix = "/bad-name"
primary = "wrong_name"

[[route]]
primary = "good"
"#
    );
    let sw = Spillway::start_in(dir, &config).await;
    let resp = get(&sw.url("web", "/tls")).await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let echo = resp.json();
    assert_eq!(echo["sni"], "origin.test", "the configured SNI is sent");
    assert_eq!(echo["origin"], "secure");
    assert_eq!(secure.connections(), 1);

    let wrong_ca = get(&sw.url("web", "/bad-ca")).await.unwrap();
    assert_eq!(wrong_ca.status, 502, "a certificate from an untrusted CA is refused: {}", wrong_ca.text());
    let wrong_name = get(&sw.url("web", "/bad-name")).await.unwrap();
    assert_eq!(wrong_name.status, 502, "a certificate for another name is refused: {}", wrong_name.text());
    assert_eq!(secure.hits(), 1, "no request went over an unverified connection");
    let lab = get(&sw.url("web", "/unverified")).await.unwrap();
    assert_eq!(lab.status, 200, "verify = false accepts any certificate: {}", lab.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_are_removed() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "", "")).await;
    let direct_url = format!("http://{}/resp?hop=1", a.addr);
    let direct = curl(&["-D", "-", "-o", "/dev/null", &direct_url]).await.body.to_ascii_lowercase();
    assert!(direct.contains("x-hop: 1") && direct.contains("keep-alive:"), "the origin sends them: {direct}");
    for args in [vec!["--http1.1"], vec!["--http2-prior-knowledge"]] {
        let url = sw.url("web", "/resp?hop=1");
        let mut all = args.clone();
        all.extend(["-D", "-", "-o", "/dev/null", url.as_str()]);
        let out = curl(&all).await;
        assert_eq!(out.status, 200, "{out:?}");
        let headers = out.body.to_ascii_lowercase();
        for gone in ["x-hop:", "keep-alive:", "proxy-authenticate:"] {
            assert!(!headers.contains(gone), "{gone} must not reach the client ({args:?}):\n{headers}");
        }
        assert!(!headers.contains("connection: x-hop"), "{headers}");
        assert!(headers.contains("x-end-to-end: 1"), "{headers}");
        assert!(headers.contains("via: ") && headers.contains("spillway"), "{headers}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connections_are_closed_after_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "idle_timeout = \"400ms\"", "")).await;
    let mut tcp = tokio::net::TcpStream::connect(sw.addr("web")).await.unwrap();
    tcp.write_all(b"GET /once HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    let idle = answered.elapsed();
    assert!(closed.is_ok(), "an idle keep-alive connection stayed open for 10 s");
    assert!(idle >= Duration::from_millis(300) && idle < Duration::from_secs(5), "closed after {idle:?} idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_answer() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "", "")).await;
    assert_eq!(get(&sw.url("web", "/count")).await.unwrap().status, 200);
    assert_eq!(get(&sw.admin_url("/healthz")).await.unwrap().status, 200);
    assert_eq!(get(&sw.admin_url("/readyz")).await.unwrap().status, 200);
    assert_eq!(get(&sw.admin_url("/nope")).await.unwrap().status, 404);
    assert_eq!(get(&sw.admin_url("/reload")).await.unwrap().status, 405, "reload is POST only");
    let metrics = get(&sw.admin_url("/metrics")).await.unwrap();
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").is_some_and(|v| v.starts_with("text/plain")));
    let status = sw.status().await;
    assert_eq!(status["listeners"][0]["name"], "web");
    assert_eq!(status["listeners"][0]["addr"], sw.addr("web").to_string());
    let ep = &status["pools"]["app"]["endpoints"][0];
    assert_eq!(ep["addr"], a.endpoint());
    assert_eq!(ep["available"], true);
    assert_eq!(ep["ejected"], false);
    assert_eq!(ep["pending"], 0);
    assert!(status["config"]["version"].as_str().is_some_and(|v| !v.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_also_shuts_down_cleanly() {
    let a = Origin::start("a").await;
    let mut sw = Spillway::start(&simple_config(&[&a], "", "")).await;
    assert_eq!(get(&sw.url("web", "/")).await.unwrap().status, 200);
    sw.signal("INT");
    let status = sw.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_over_h2_are_refused_without_reaching_the_origin() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "max_header_bytes = 8192", "")).await;
    let big = format!("x-big: {}", "a".repeat(20_000));
    let out = curl(&["--http2-prior-knowledge", "-H", &big, &sw.url("web", "/big")]).await;
    // hyper answers 431 or resets the stream; either way no origin request.
    assert!(out.status == 431 || out.exit != 0, "{out:?}");
    assert_eq!(a.hits(), 0);
    let ok = curl(&["--http2-prior-knowledge", &sw.url("web", "/fine")]).await;
    assert_eq!(ok.status, 200, "the proxy still serves: {ok:?}");
}

// A client that half-closes (shuts its write side after the request, as
// some HTTP/1.0-era tools do) still gets its answer: the exchange upstream
// is not cancelled by the client's end of stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_client_still_gets_its_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "", "")).await;
    let mut tcp = tokio::net::TcpStream::connect(sw.addr("web")).await.unwrap();
    tcp.write_all(b"GET /slow?delay_ms=300 HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(a.hits(), 1);
}
