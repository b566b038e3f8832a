//! Issue 10, the upstream side: every broken upstream and every odd answer
//! gets a defined, bounded outcome. Passive health counts only the
//! endpoint's own faults and never empties a pool; health probes survive
//! any answer; the upstream framing corner cases (an announced body that
//! never comes, chunked HTTP/1.0, a list of lengths, request codings other
//! than chunked) and request trailers. The proxy is the real binary; the
//! origins write exact bytes where it matters, and each test checks what
//! the client got and what the origin received.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::client::raw;
use support::wire::{Reply, WireOrigin};
use support::{eventually, get, request, simple_config, Origin, Spillway, ADMIN};

/// One pool `app` over `endpoints` (written as TOML), with `pool_extra`.
fn config(endpoints: &[String], pool_extra: &str) -> String {
    let list: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "{ADMIN}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n[pools.app]\nendpoints = [{}]\nconnect_timeout = \"300ms\"\nresponse_timeout = \"3s\"\n{pool_extra}\n\n[[route]]\nname = \"all\"\nprimary = \"app\"\n",
        list.join(", ")
    )
}

/// A field of endpoint `addr` of pool `app` in `/status`.
async fn endpoint_field(sw: &Spillway, addr: &str, field: &str) -> serde_json::Value {
    let status = sw.status().await;
    let endpoints = status["pools"]["app"]["endpoints"].as_array().unwrap().clone();
    endpoints.into_iter().find(|e| e["addr"] == addr).unwrap_or_else(|| panic!("no endpoint {addr}"))[field].clone()
}

// ---- Item 1: passive health ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_500_never_ejects_its_endpoint() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "", "")).await;
    for i in 0..20 {
        let r = get(&sw.url("web", &format!("/boom?status=500&i={i}"))).await.unwrap();
        assert_eq!((r.status, r.origin()), (500, Some("a")), "request {i} was answered by the origin");
        assert_eq!(r.header("x-spillway-error"), None, "request {i}");
    }
    assert_eq!(a.hits(), 20, "every /boom reached the origin");
    let home = get(&sw.url("web", "/")).await.unwrap();
    assert_eq!((home.status, home.origin()), (200, Some("a")));
    assert_eq!(a.hits(), 21);
    assert_eq!(endpoint_field(&sw, &a.endpoint(), "ejected").await, false);
    assert_eq!(endpoint_field(&sw, &a.endpoint(), "available").await, true);
    assert_eq!(sw.metric("spillway_endpoint_ejections_total").await, 0.0);
    assert_eq!(sw.metric("spillway_endpoint_ejections_refused_total").await, 0.0, "a 500 is no fault at all");
}

/// An origin that accepts connections and resets them (RST) once the
/// request has started to arrive; counts the connections.
struct Resetter {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Resetter {
    async fn start() -> Resetter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                count.fetch_add(1, SeqCst);
                tokio::spawn(async move {
                    let mut one = [0u8; 1];
                    let _ = tcp.read(&mut one).await;
                    socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO)).unwrap();
                    drop(tcp);
                });
            }
        });
        Resetter { addr, connections, task }
    }
}

impl Drop for Resetter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resetting_endpoint_is_ejected_and_the_last_one_up_never_is() {
    let bad = Resetter::start().await;
    let b = Origin::start("b").await;
    let pool = "eject_after = 2\neject_base = \"60s\"\neject_max = \"60s\"";
    let sw = Spillway::start(&config(&[bad.addr.to_string(), b.endpoint()], pool)).await;
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while endpoint_field(&sw, &bad.addr.to_string(), "ejected").await != true {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the resetting endpoint not ejected after {} answers: {:?}",
            answers.len(),
            &answers[answers.len().saturating_sub(5)..]
        );
        // Several at once: with `b` busy, the balancer also picks the endpoint
        // whose last answer was a failure (one at a time it may never again).
        let url = sw.url("web", "/x?delay_ms=20");
        let batch = futures_util::future::join_all((0..8).map(|_| get(&url))).await;
        for r in batch {
            let r = r.unwrap();
            answers.push((r.status, r.origin().map(str::to_string)));
        }
    }
    assert!(bad.connections.load(SeqCst) >= 2, "the resets were real connections");
    for (status, origin) in &answers {
        assert!(
            (*status, origin.as_deref()) == (502, None) || (*status, origin.as_deref()) == (200, Some("b")),
            "{answers:?}"
        );
    }
    assert_eq!(sw.metric("spillway_endpoint_ejections_total").await, 1.0);

    // Now b fails too, with a status that counts against it: it is the
    // last endpoint up (and the share is spent), so it stays in.
    b.set_failing(Some(503));
    let before = b.hits();
    for i in 0..20 {
        let r = get(&sw.url("web", &format!("/failing/{i}"))).await.unwrap();
        assert_eq!((r.status, r.origin()), (503, Some("b")), "request {i}");
    }
    assert_eq!(b.hits(), before + 20, "every request still reached b");
    assert_eq!(endpoint_field(&sw, &b.endpoint(), "ejected").await, false);
    assert_eq!(endpoint_field(&sw, &b.endpoint(), "available").await, true);
    assert_eq!(endpoint_field(&sw, &bad.addr.to_string(), "ejected").await, true);
    assert_eq!(sw.metric("spillway_endpoint_ejections_total").await, 1.0, "b was never ejected");
    // eject_after = 2: every fault of b from its second on was a refused ejection.
    assert_eq!(sw.metric("spillway_endpoint_ejections_refused_total").await, 19.0);
    b.set_failing(None);
    let healed = get(&sw.url("web", "/healed")).await.unwrap();
    assert_eq!((healed.status, healed.origin()), (200, Some("b")));
}

// ---- Item 11: health probes -------------------------------------------------

/// How the probe origin answers, switched by the test.
#[derive(Clone, Debug, PartialEq)]
enum ProbeAnswer {
    /// 200 with this lag header value.
    Lag(&'static str),
    /// 200 announcing 1 GiB, written until the reader goes away.
    Huge,
    /// Bytes that are not HTTP.
    Garbage,
}

/// A health-probe origin: every connection gets the current answer and is
/// closed. Counts probes per answer and the body bytes it managed to write.
struct ProbeOrigin {
    addr: SocketAddr,
    answer: Arc<Mutex<ProbeAnswer>>,
    served: Arc<Mutex<Vec<ProbeAnswer>>>,
    most_written: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ProbeOrigin {
    async fn start(first: ProbeAnswer) -> ProbeOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(first));
        let served = Arc::new(Mutex::new(Vec::new()));
        let most_written = Arc::new(AtomicU64::new(0));
        let (a, s, w) = (answer.clone(), served.clone(), most_written.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let now = a.lock().unwrap().clone();
                tokio::spawn(probe_answer(tcp, now, s.clone(), w.clone()));
            }
        });
        ProbeOrigin { addr, answer, served, most_written, task }
    }

    fn set(&self, answer: ProbeAnswer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn served(&self, answer: &ProbeAnswer) -> usize {
        self.served.lock().unwrap().iter().filter(|a| *a == answer).count()
    }
}

impl Drop for ProbeOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn probe_answer(
    mut tcp: TcpStream,
    answer: ProbeAnswer,
    served: Arc<Mutex<Vec<ProbeAnswer>>>,
    most: Arc<AtomicU64>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut byte).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&byte[..n]),
        }
    }
    served.lock().unwrap().push(answer.clone());
    match answer {
        ProbeAnswer::Lag(v) => {
            let reply =
                format!("HTTP/1.1 200 OK\r\nX-Replica-Lag: {v}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            let _ = tcp.write_all(reply.as_bytes()).await;
        }
        ProbeAnswer::Huge => {
            let head = b"HTTP/1.1 200 OK\r\nX-Replica-Lag: 1\r\nContent-Length: 1073741824\r\n\r\n";
            if tcp.write_all(head).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 1 << 20];
            let mut written = 0u64;
            // Until the prober stops reading and closes (or 1 GiB).
            while written < 1 << 30 {
                match tokio::time::timeout(Duration::from_secs(2), tcp.write_all(&chunk)).await {
                    Ok(Ok(())) => written += chunk.len() as u64,
                    _ => break,
                }
            }
            most.fetch_max(written, SeqCst);
        }
        ProbeAnswer::Garbage => {
            let _ = tcp.write_all(b"\x00\x01\x02 not http at all\r\n\r\n").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_survive_any_answer_and_follow_the_origin_when_it_recovers() {
    let origin = ProbeOrigin::start(ProbeAnswer::Lag("1e20")).await;
    let health = "health = { path = \"/health\", interval = \"200ms\", timeout = \"150ms\", unhealthy_after = 2, healthy_after = 2, lag_header = \"x-replica-lag\" }";
    let sw = Spillway::start(&config(&[origin.addr.to_string()], health)).await;
    let ep = origin.addr.to_string();
    let field = |f: &'static str| {
        let (sw, ep) = (&sw, ep.clone());
        async move { endpoint_field(sw, &ep, f).await }
    };

    // A lag too large for any duration is clamped, not a panic.
    eventually(Duration::from_secs(10), "up with the clamped lag", || async {
        field("probe").await == "up" && field("replica_lag_s").await == f64::from(u32::MAX)
    })
    .await;
    // Each odd value, with a sane one between so every change shows.
    for odd in ["NaN", "-1", "soon"] {
        origin.set(ProbeAnswer::Lag("5"));
        eventually(Duration::from_secs(10), "lag 5", || async { field("replica_lag_s").await == 5.0 }).await;
        origin.set(ProbeAnswer::Lag(odd));
        let what = format!("lag {odd:?} read as unknown");
        eventually(Duration::from_secs(10), &what, || async { field("replica_lag_s").await.is_null() }).await;
        assert_eq!(field("probe").await, "up", "a 200 with an odd lag is still healthy ({odd})");
    }
    let probes_before = sw.metric("spillway_health_probes_total").await;

    // A body that never ends is read up to the cap and dropped.
    origin.set(ProbeAnswer::Huge);
    eventually(Duration::from_secs(10), "three huge answers", || async { origin.served(&ProbeAnswer::Huge) >= 3 })
        .await;
    assert_eq!(field("probe").await, "up", "the status decides, not the body");
    eventually(Duration::from_secs(10), "lag 1 from the huge answers", || async {
        field("replica_lag_s").await == 1.0
    })
    .await;

    // Garbage fails the probes: down after unhealthy_after.
    origin.set(ProbeAnswer::Garbage);
    eventually(Duration::from_secs(10), "down on garbage", || async { field("probe").await == "down" }).await;

    // The origin recovers: probing never stopped, so health follows.
    origin.set(ProbeAnswer::Lag("3"));
    eventually(Duration::from_secs(10), "up again with lag 3", || async {
        field("probe").await == "up" && field("replica_lag_s").await == 3.0
    })
    .await;
    let most = origin.most_written.load(SeqCst);
    assert!(most < 32 << 20, "the prober read {most} bytes of a 1 GiB body: not capped");
    assert!(sw.metric("spillway_health_probes_total").await > probes_before + 4.0);
    assert_eq!(sw.metric("spillway_health_probe_restarts_total").await, 0.0, "no probe loop failed");
}

// ---- Item 12: upstream framing ---------------------------------------------

/// A complete response hidden as the announced body of a bodiless answer.
const SMUGGLED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled";

/// An origin that answers `/empty` (204), `HEAD /head` (200) and
/// `/cached` (304) with a head announcing a body, and sends that body
/// late: just before its answer to the next request on the same
/// connection. Any other path gets `fresh`.
async fn late_body_origin() -> (SocketAddr, Arc<Mutex<Vec<(usize, String)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        let mut id = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(late_body_connection(tcp, id, s.clone()));
            id += 1;
        }
    });
    (addr, seen)
}

async fn late_body_connection(mut tcp: TcpStream, id: usize, seen: Arc<Mutex<Vec<(usize, String)>>>) {
    let mut buf = Vec::new();
    let mut owed = false;
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let line = String::from_utf8_lossy(&buf[..end]).lines().next().unwrap_or("").to_string();
        buf.drain(..end);
        seen.lock().unwrap().push((id, line.clone()));
        let status = if line.starts_with("GET /empty") {
            Some("204 No Content")
        } else if line.starts_with("HEAD /head") {
            Some("200 OK")
        } else if line.starts_with("GET /cached") {
            Some("304 Not Modified")
        } else {
            None
        };
        let mut out = Vec::new();
        match status {
            Some(status) => {
                out.extend_from_slice(
                    format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n", SMUGGLED.len()).as_bytes(),
                );
                owed = true;
            }
            None => {
                if std::mem::take(&mut owed) {
                    out.extend_from_slice(SMUGGLED);
                }
                out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh");
            }
        }
        if tcp.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_body_that_never_came_retires_the_connection() {
    let (addr, seen) = late_body_origin().await;
    let sw = Spillway::start(&config(&[addr.to_string()], "")).await;
    for (method, path, status) in
        [(Method::GET, "/empty", 204), (Method::HEAD, "/head", 200), (Method::GET, "/cached", 304)]
    {
        let r = request(method.clone(), &sw.url("web", path), Vec::new(), b"").await.unwrap();
        assert_eq!((r.status, r.body.len()), (status, 0), "{method} {path}");
        let next = get(&sw.url("web", "/next")).await.unwrap();
        assert_eq!((next.status, next.text()), (200, "fresh".to_string()), "the request after {method} {path}");
    }
    let seen = seen.lock().unwrap().clone();
    let conns: Vec<usize> = seen.iter().map(|(c, _)| *c).collect();
    assert_eq!(conns, [0, 1, 1, 2, 2, 3], "each /next on a new connection: {seen:?}");
    // The client of a 204 or 304 gets no announced length with it.
    let nc = raw(sw.addr("web"), b"GET /empty HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(nc.starts_with("HTTP/1.1 204"), "{nc:?}");
    assert!(!nc.to_ascii_lowercase().contains("smuggled"), "{nc:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_http_1_0_response_is_a_502() {
    let origin = WireOrigin::start(|n, _| match n {
        0 => Reply::close(&b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..]),
        _ => Reply::close(&b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nafter"[..]),
    })
    .await;
    let sw = Spillway::start(&config(&[origin.endpoint()], "")).await;
    let r = raw(sw.addr("web"), b"GET /chunked10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 502"), "{r:?}");
    assert!(r.contains("x-spillway-error: upstream"), "{r:?}");
    assert!(!r.contains("hello"), "no chunk framing reached the client: {r:?}");
    let after = get(&sw.url("web", "/after")).await.unwrap();
    assert_eq!((after.status, after.text()), (200, "after".to_string()));
    assert_eq!(origin.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_equal_lengths_reaches_the_client_as_one() {
    let origin = WireOrigin::start(|n, _| match n {
        0 => Reply::keep(&b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello"[..]),
        _ => Reply::keep(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nContent-Length: 5\r\n\r\nagain"[..]),
    })
    .await;
    let sw = Spillway::start(&config(&[origin.endpoint()], "")).await;
    for (path, body) in [("/list", "hello"), ("/twice", "again")] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let r = raw(sw.addr("web"), req.as_bytes()).await;
        let (head, got) = r.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{path}: {r:?}"));
        let lengths: Vec<&str> =
            head.lines().filter(|l| l.to_ascii_lowercase().starts_with("content-length:")).collect();
        assert_eq!(lengths, ["content-length: 5"], "{path}: {head}");
        assert_eq!(got, body, "{path}");
    }
    let conns: Vec<usize> = origin.seen().iter().map(|s| s.connection).collect();
    assert_eq!(conns, [0, 0], "a normalised length keeps the connection reusable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_codings_other_than_chunked_are_refused_before_the_origin() {
    let origin = WireOrigin::start(|_, _| Reply::keep(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..])).await;
    let sw = Spillway::start(&config(&[origin.endpoint()], "")).await;
    let body = "5\r\nhello\r\n0\r\n\r\n";
    // (Transfer-Encoding lines, version, status, who answers, x-spillway-error)
    let cases: [(&str, &str, &str, Option<&str>); 5] = [
        // Spillway: a coding it would have to drop.
        ("Transfer-Encoding: gzip, chunked\r\n", "1.1", "501", Some("unsupported_transfer_coding")),
        (
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            "1.1",
            "501",
            Some("unsupported_transfer_coding"),
        ),
        // Spillway: chunked twice is malformed framing.
        ("Transfer-Encoding: chunked, chunked\r\n", "1.1", "400", Some("bad_request_framing")),
        // hyper, before Spillway sees the request: not ending in chunked,
        // and any transfer coding on HTTP/1.0.
        ("Transfer-Encoding: gzip\r\n", "1.1", "400", None),
        ("Transfer-Encoding: chunked\r\n", "1.0", "400", None),
    ];
    for (te, version, status, kind) in cases {
        let req = format!("POST /up HTTP/{version}\r\nHost: x\r\n{te}Connection: close\r\n\r\n{body}");
        let r = raw(sw.addr("web"), req.as_bytes()).await;
        assert!(r.starts_with(&format!("HTTP/1.1 {status}")), "{te:?} {version}: {r:?}");
        if let Some(kind) = kind {
            assert!(r.contains(&format!("x-spillway-error: {kind}")), "{te:?}: {r:?}");
        }
    }
    assert!(origin.seen().is_empty(), "none reached the origin: {:?}", origin.seen());
    // Plain chunked still goes through, on the connection the refusals left idle.
    let ok = format!("POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}");
    let r = raw(sw.addr("web"), ok.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r:?}");
    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, b"hello");
    assert_eq!(origin.connections(), 1, "a refusal sends nothing and keeps its connection for the next request");
    assert_eq!(sw.metric("spillway_endpoint_ejections_total").await, 0.0);
}

// ---- Item 13: request trailers ---------------------------------------------

/// An origin that records every byte of one chunked request (head, body
/// and trailer section) and answers 200.
async fn recording_origin() -> (SocketAddr, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut tcp, _)) = listener.accept().await else { return };
        let mut got = Vec::new();
        let done = |b: &[u8]| {
            let Some(head) = b.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
            let body = &b[head + 4..];
            (body.starts_with(b"0\r\n") || body.windows(5).any(|w| w == b"\r\n0\r\n")) && body.ends_with(b"\r\n\r\n")
        };
        while !done(&got) {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
        let _ = tx.send(got);
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_trailers_are_filtered_like_response_trailers() {
    let (addr, received) = recording_origin().await;
    let sw = Spillway::start(&config(&[addr.to_string()], "")).await;
    let req = b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\nConnection: close\r\n\r\n\
                5\r\nhello\r\n0\r\nHost: evil.test\r\nContent-Length: 99\r\nX-Forwarded-For: 6.6.6.6\r\n\
                Authorization: Basic eA==\r\nX-Checksum: 42\r\n\r\n";
    let r = raw(sw.addr("web"), req).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r:?}");
    let got = String::from_utf8_lossy(&tokio::time::timeout(Duration::from_secs(5), received).await.unwrap().unwrap())
        .to_ascii_lowercase();
    let (head, body) = got.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{got:?}"));
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(body.contains("hello"), "{body:?}");
    let trailers = body.rsplit_once("0\r\n").map(|(_, t)| t).unwrap_or_default();
    assert!(trailers.contains("x-checksum: 42"), "an ordinary trailer goes on: {body:?}");
    for barred in ["evil.test", "content-length", "6.6.6.6", "authorization"] {
        assert!(!trailers.contains(barred), "{barred} in the trailers the origin got: {body:?}");
    }
}
