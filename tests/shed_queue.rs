//! End-to-end: the bounded, ranked queue in front of a full pool (issue 16's
//! attack review). Through the real binary and raw sockets: a client that
//! leaves while its request waits takes it out of the queue (it never
//! reaches the origin), a waiting write is not overtaken by newer writes,
//! and neither a method-override header nor an unknown method buys a
//! place ahead of a real write.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use http::Method;
use support::{eventually, request, Origin, Spillway, ADMIN};

/// One on-prem pool of `origin` behind a static hard cap of `max`, no cloud.
fn config(origin: &Origin, max: u32, extra: &str) -> String {
    format!(
        "{ADMIN}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [pools.onprem]\nendpoints = [\"{}\"]\n\n[[route]]\nprimary = \"onprem\"\n\n\
         [spill]\nmode = \"static\"\nmax_in_flight = {max}\ntick = \"50ms\"\nqueue_timeout = \"8s\"\n{extra}",
        origin.endpoint()
    )
}

async fn queued(sw: &Spillway) -> u64 {
    sw.status().await["gates"]["onprem"]["queued"].as_u64().unwrap_or(u64::MAX)
}

async fn shed_by(sw: &Spillway, reason: &str) -> f64 {
    let text = support::get(&sw.admin_url("/metrics")).await.unwrap().text();
    let label = format!("reason=\"{reason}\"");
    text.lines()
        .filter(|l| l.starts_with("spillway_shed_total") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An origin and a Spillway (hard cap `max`, `extra` in `[spill]`) with
/// `n` slow writes (`ms` each) in flight at the origin: the pool is full.
async fn full(max: u32, extra: &str, n: usize, ms: u64) -> (Origin, Spillway, Vec<tokio::task::JoinHandle<u16>>) {
    let origin = Origin::start("onprem").await;
    let sw = Spillway::start(&config(&origin, max, extra)).await;
    let held = hold(&sw, n, ms);
    eventually(Duration::from_secs(5), "the pool full", || async { origin.in_flight() == n }).await;
    (origin, sw, held)
}

/// A POST to `path`, sent after `after`: its status (0: no answer).
fn post(sw: &Spillway, path: &str, after: Duration) -> tokio::task::JoinHandle<u16> {
    let url = sw.url("web", path);
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        request(Method::POST, &url, vec![], b"x").await.map_or(0, |r| r.status)
    })
}

/// Keeps `n` slow POSTs in flight for about `ms`.
fn hold(sw: &Spillway, n: usize, ms: u64) -> Vec<tokio::task::JoinHandle<u16>> {
    (0..n).map(|_| post(sw, &format!("/hold?delay_ms={ms}"), Duration::ZERO)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_while_queued_is_dropped_from_the_queue_and_never_forwarded() {
    let (origin, sw, held) = full(2, "", 2, 1500).await;
    // Six writes over the cap queue (a write waits the whole queue_timeout);
    // three clients then close (FIN), three reset (RST).
    let addr = sw.addr("web");
    let mut socks = Vec::new();
    for i in 0..6 {
        let mut s = TcpStream::connect(addr).unwrap();
        let head = format!("POST /ghost/{i} HTTP/1.1\r\nHost: app\r\nContent-Length: 1\r\n\r\nx");
        s.write_all(head.as_bytes()).unwrap();
        socks.push(s);
    }
    eventually(Duration::from_secs(5), "six queued", || async { queued(&sw).await == 6 }).await;
    for (i, s) in socks.into_iter().enumerate() {
        if i % 2 == 1 {
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        }
        drop(s);
    }
    eventually(Duration::from_secs(2), "the queue empty", || async { queued(&sw).await == 0 }).await;
    assert_eq!(shed_by(&sw, "client_gone").await, 6.0);
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(origin.writes(), 2, "no abandoned write reached the origin");
    assert_eq!(sw.status().await["gates"]["onprem"]["in_flight"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_write_is_served_before_newer_writes() {
    // Slow writes breach the 50 ms SLO: the static limit falls under the
    // cap, so a slot freed over the limit must still go to the waiter.
    let (_origin, sw, held) = full(2, "latency_slo = \"50ms\"\n", 2, 700).await;
    let url = sw.url("web", "/first?delay_ms=10");
    let waiter = tokio::spawn(async move {
        let t = Instant::now();
        (request(Method::POST, &url, vec![], b"x").await.map_or(0, |r| r.status), t.elapsed())
    });
    eventually(Duration::from_secs(5), "the write queued", || async { queued(&sw).await == 1 }).await;
    // Newer writes keep arriving every 20 ms while it waits.
    let newer: Vec<_> = (0..40).map(|i| post(&sw, "/newer?delay_ms=700", Duration::from_millis(20 * i))).collect();
    let (status, waited) = waiter.await.unwrap();
    assert_eq!(status, 200, "the queued write was served");
    assert!(waited < Duration::from_millis(1500), "served at the first freed slot, not overtaken: {waited:?}");
    for h in held.into_iter().chain(newer) {
        let _ = h.await;
    }
    eventually(Duration::from_secs(10), "all done", || async {
        let g = sw.status().await["gates"]["onprem"].clone();
        g["in_flight"] == 0 && g["queued"] == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_header_or_an_unknown_method_buys_no_place_ahead_of_a_write() {
    let (_origin, sw, held) = full(1, "max_queue = 1\n", 1, 1200).await;
    let legit = post(&sw, "/legit", Duration::ZERO);
    eventually(Duration::from_secs(5), "the write queued", || async { queued(&sw).await == 1 }).await;
    // A GET that claims to be a DELETE, and a made-up method: neither may
    // evict the queued write from the full queue (one place).
    let addr = sw.addr("web");
    for head in [
        "GET /x HTTP/1.1\r\nHost: app\r\nX-HTTP-Method-Override: DELETE\r\nConnection: close\r\n\r\n",
        "FOO /x HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 503"), "{head:?} got: {answer}");
        assert!(answer.to_ascii_lowercase().contains("retry-after:"), "{answer}");
    }
    assert_eq!(shed_by(&sw, "evicted").await, 0.0, "nobody was evicted");
    assert_eq!(legit.await.unwrap(), 200, "the real write kept its place and was served");
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_queue_zero_queues_nobody() {
    let (_origin, sw, held) = full(1, "max_queue = 0\n", 1, 800).await;
    let t = Instant::now();
    let r = request(Method::POST, &sw.url("web", "/x"), vec![], b"x").await.unwrap();
    assert_eq!(r.status, 503);
    assert!(t.elapsed() < Duration::from_millis(300), "refused at once: {:?}", t.elapsed());
    assert_eq!(shed_by(&sw, "queue_full").await, 1.0);
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
}
