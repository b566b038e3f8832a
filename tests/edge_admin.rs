//! Issue 10, the admin edge and secrets in logs, through the real binary
//! over raw sockets: the admin listener's header and idle timeouts and its
//! connection cap; `POST /reload` refused when a browser could have sent it
//! (no token: a simple content type, a foreign Host or Origin); reloads
//! rate-limited with 429 and `Retry-After`; `spillway check` refusing a
//! blank token file; and a failing webhook logged without its secret path.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::client::raw;
use support::spillway::check;
use support::{eventually, get, Origin, Spillway};

/// `simple_config` with `admin_extra` lines added to `[admin]`.
fn config(origin: &Origin, admin_extra: &str) -> String {
    let text = support::simple_config(&[origin], "", "");
    text.replacen(support::ADMIN, &format!("{}{admin_extra}\n", support::ADMIN), 1)
}

/// The status code of a raw HTTP/1.1 answer (0 when there was none).
fn status_of(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// `POST /reload` as raw bytes with `headers` (each line ending in CRLF).
async fn post_reload(admin: SocketAddr, headers: &str) -> String {
    let request = format!("POST /reload HTTP/1.1\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n");
    raw(admin, request.as_bytes()).await
}

async fn reloads(sw: &Spillway) -> u64 {
    sw.status().await["config"]["reloads"].as_u64().unwrap()
}

/// A kept-alive admin connection that has had one `GET /healthz` answered
/// (so it holds its place under the cap), or the answer it got instead.
async fn held_connection(admin: SocketAddr) -> Result<TcpStream, String> {
    let mut tcp = TcpStream::connect(admin).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nok\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await.expect("an answer").unwrap();
        if n == 0 {
            return Err(String::from_utf8_lossy(&got).into_owned());
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(tcp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_on_the_admin_port_is_closed_after_the_header_timeout() {
    let origin = Origin::start("a").await;
    let sw = Spillway::start(&config(&origin, "header_read_timeout = \"500ms\"")).await;
    let (mut rd, mut wr) = TcpStream::connect(sw.admin).await.unwrap().into_split();
    let started = Instant::now();
    // One byte every 50 ms: a reload whose head would take 8 s to arrive.
    let writer = tokio::spawn(async move {
        let head = format!(
            "POST /reload HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nx-pad: {}\r\n\r\n",
            "p".repeat(60)
        );
        for b in head.bytes() {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut answer)).await;
    let took = started.elapsed();
    writer.abort();
    assert!(read.is_ok(), "the admin kept a trickling client for 10 s");
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "closed after {took:?}");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "answer: {answer:?}");
    assert_eq!(reloads(&sw).await, 0, "the trickled reload never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_admin_connection_is_closed_after_the_idle_timeout() {
    let origin = Origin::start("a").await;
    let sw = Spillway::start(&config(&origin, "idle_timeout = \"500ms\"")).await;
    let mut tcp = held_connection(sw.admin).await.expect("a first answer");
    let answered = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    let idle = answered.elapsed();
    assert!(closed.is_ok(), "an idle admin connection stayed open for 10 s");
    assert!(idle >= Duration::from_millis(400) && idle < Duration::from_secs(3), "closed after {idle:?}");
    assert!(rest.is_empty(), "nothing more was sent: {:?}", String::from_utf8_lossy(&rest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_over_the_cap_are_refused() {
    let origin = Origin::start("a").await;
    let sw = Spillway::start(&config(&origin, "max_connections = 2")).await;
    let first = held_connection(sw.admin).await.expect("connection 1 of 2");
    let second = held_connection(sw.admin).await.expect("connection 2 of 2: at the cap is allowed");
    let third = raw(sw.admin, b"GET /status HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").await;
    assert_eq!(status_of(&third), 503, "connection 3 of 2: {third:?}");
    assert!(third.to_ascii_lowercase().contains("retry-after: 1"), "{third:?}");
    assert!(!third.contains("\"config\""), "the refused connection was not served: {third:?}");
    drop(first);
    eventually(Duration::from_secs(5), "a place under the cap once a connection closes", || async {
        get(&sw.admin_url("/healthz")).await.is_ok_and(|r| r.status == 200)
    })
    .await;
    drop(second);
    // The probes above may themselves have met a full house (a closed
    // connection's place is given back when the server sees the close).
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        match get(&sw.admin_url("/metrics")).await {
            Ok(r) if r.status == 200 => break r.text(),
            other => assert!(Instant::now() < deadline, "no /metrics: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let refused = support::spillway::metric_value(&metrics, "spillway_admin_refused_total");
    assert!(refused >= 1.0, "the refused connection is counted: {refused}");
}

/// utime + stime of process `pid`, in clock ticks (all its threads).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Sets the soft limit on open files of process `pid` (util-linux prlimit).
fn set_nofile(pid: u32, soft: usize) {
    let hard = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let hard = hard.lines().find(|l| l.starts_with("Max open files")).unwrap().split_whitespace().nth(4).unwrap();
    let ok = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:{hard}")])
        .status()
        .expect("prlimit is installed");
    assert!(ok.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_back_off_instead_of_spinning() {
    let origin = Origin::start("a").await;
    let sw = Spillway::start(&config(&origin, "max_connections = 1000")).await;
    let pid = sw.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    // Room for four more descriptors: the fifth connection cannot be
    // accepted (EMFILE) and stays in the backlog, so every accept fails.
    set_nofile(pid, open + 4);
    let mut held = Vec::new();
    for _ in 0..12 {
        held.push(TcpStream::connect(sw.admin).await.unwrap());
    }
    eventually(Duration::from_secs(10), "a failed accept in the log", || async { sw.log().contains("accept failed") })
        .await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_ticks(pid) - before;
    // A spinning accept loop burns a core (200 ticks in 2 s at 100 Hz; 48
    // measured on a busy machine); backing off, it wakes 20 times a second.
    assert!(spent < 20, "{spent} ticks of CPU in 2 s while accept fails");
    let failures = sw.log().matches("accept failed").count();
    assert!(failures < 200, "{failures} failed accepts logged: no back-off");
    set_nofile(pid, 1024);
    drop(held);
    eventually(Duration::from_secs(10), "the admin answers once descriptors are free", || async {
        get(&sw.admin_url("/healthz")).await.is_ok_and(|r| r.status == 200)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_a_reload_a_browser_could_send_is_refused() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let sw = Spillway::start_linked(&config(&a, "")).await;
    let before = sw.version().await;
    // A new file that only a reload applies: a refused call must not.
    let next = config(&b, "");
    sw.write_unwatched(&next);
    let local = "host: 127.0.0.1\r\n";
    for (headers, want) in [
        (format!("{local}content-type: text/plain\r\n"), 415),
        (format!("{local}content-type: application/x-www-form-urlencoded\r\n"), 415),
        (format!("{local}content-type: multipart/form-data; boundary=x\r\n"), 415),
        (local.to_string(), 415),
        ("host: evil.example\r\ncontent-type: application/json\r\n".to_string(), 403),
        (format!("host: evil.example:{}\r\ncontent-type: application/json\r\n", sw.admin.port()), 403),
        (format!("{local}origin: https://evil.example\r\ncontent-type: application/json\r\n"), 403),
    ] {
        let answer = post_reload(sw.admin, &headers).await;
        assert_eq!(status_of(&answer), want, "{headers:?} -> {answer:?}");
    }
    assert_eq!(reloads(&sw).await, 0, "no refused call reloaded");
    assert_eq!(sw.version().await, before);
    assert_eq!(get(&sw.url("web", "/")).await.unwrap().origin(), Some("a"));
    let answer = post_reload(sw.admin, &format!("{local}content-type: application/json; charset=utf-8\r\n")).await;
    assert_eq!(status_of(&answer), 200, "{answer:?}");
    assert_eq!(sw.version().await, sw.version_of(&next));
    assert_eq!(get(&sw.url("web", "/")).await.unwrap().origin(), Some("b"), "the accepted reload applied");
    assert_eq!(a.hits(), 1);
    assert_eq!(sw.metric("spillway_admin_refused_total").await, 7.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_a_reload_needs_the_bearer_and_nothing_more() {
    let origin = Origin::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "  s3cret-t0ken\n").unwrap();
    let sw = Spillway::start_in(dir, &config(&origin, "token_file = \"admin.token\"")).await;
    let status = "GET /status HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n";
    assert_eq!(status_of(&raw(sw.admin, format!("{status}\r\n").as_bytes()).await), 401);
    assert_eq!(status_of(&post_reload(sw.admin, "host: 127.0.0.1\r\ncontent-type: application/json\r\n").await), 401);
    let bearer = "authorization: Bearer s3cret-t0ken\r\n";
    let answer = post_reload(sw.admin, &format!("host: spillway-dc1.internal\r\n{bearer}")).await;
    assert_eq!(status_of(&answer), 200, "the token proves the caller: {answer:?}");
    let answer = raw(sw.admin, format!("{status}{bearer}\r\n").as_bytes()).await;
    assert_eq!(status_of(&answer), 200, "{answer:?}");
    assert!(answer.contains("\"reloads\": 1"), "exactly the authorised reload ran: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_reloads_gets_429_with_retry_after() {
    let origin = Origin::start("a").await;
    let sw = Spillway::start(&config(&origin, "reload_burst = 2\nreload_interval = \"60s\"")).await;
    let json = "host: 127.0.0.1\r\ncontent-type: application/json\r\n";
    let mut codes = Vec::new();
    for _ in 0..5 {
        let answer = post_reload(sw.admin, json).await;
        let code = status_of(&answer);
        if code == 429 {
            let retry = answer
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("retry-after: ").map(str::to_string))
                .unwrap_or_else(|| panic!("429 without Retry-After: {answer:?}"));
            let secs: u64 = retry.trim().parse().unwrap();
            assert!((1..=60).contains(&secs), "Retry-After: {secs}");
        }
        codes.push(code);
    }
    assert_eq!(codes, [200, 200, 429, 429, 429]);
    assert_eq!(reloads(&sw).await, 2, "a limited reload does not run");
    // The limit is on the API: SIGHUP still reloads.
    sw.signal("HUP");
    eventually(Duration::from_secs(10), "SIGHUP reloads", || async { reloads(&sw).await == 3 }).await;
    assert_eq!(status_of(&post_reload(sw.admin, json).await), 429);
}

#[test]
fn check_refuses_a_blank_admin_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n[pools.app]\nendpoints = [\"127.0.0.1:1\"]\n\n[[route]]\nprimary = \"app\"\n";
    let path = dir.path().join("spillway.toml");
    std::fs::write(&path, text).unwrap();
    for (token, why) in [("  \n\t \r\n", "holds only whitespace"), ("", "is empty")] {
        std::fs::write(dir.path().join("admin.token"), token).unwrap();
        let (code, _, stderr) = check(&path);
        assert_eq!(code, 1, "{token:?} accepted: {stderr}");
        assert!(stderr.contains("admin.token_file") && stderr.contains(why), "{stderr}");
        assert!(stderr.contains("empty admin token is refused"), "{stderr}");
    }
    std::fs::write(dir.path().join("admin.token"), " t0ken \n").unwrap();
    let (code, _, stderr) = check(&path);
    assert_eq!(code, 0, "{stderr}");
}

/// The secret part of the test webhook's URL.
const ROUTING_KEY: &str = "R0UT1NG-KEY-d41d8cd98f00b204e980";

/// A webhook that answers every POST with 500 and records the paths asked.
async fn failing_webhook() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let paths: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = paths.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    seen.lock().unwrap().push(req.uri().to_string());
                    async move {
                        let mut r = Response::new(Full::new(Bytes::from_static(b"down")));
                        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
            });
        }
    });
    (addr, paths)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_is_logged_without_its_routing_key() {
    let (hook, paths) = failing_webhook().await;
    let origin = Origin::start("a").await;
    let path = format!("/v2/enqueue/{ROUTING_KEY}?routing_key={ROUTING_KEY}");
    let good = format!("{}\n[notify]\nwebhook = \"http://{hook}{path}\"\n", config(&origin, ""));
    let sw = Spillway::start(&good).await;
    sw.write_config("[[listener]]\nname = broken");
    eventually(Duration::from_secs(15), "the notification given up after its attempts", || async {
        sw.log().contains("notification given up")
    })
    .await;
    assert_eq!(paths.lock().unwrap().len(), 5, "five attempts reached the webhook");
    assert!(paths.lock().unwrap().iter().all(|p| *p == path), "delivery uses the whole URL: {paths:?}");
    let log = sw.log();
    assert!(log.contains("notification failed") && log.contains("answered 500"), "{log}");
    assert!(log.contains(&format!("http://{hook}/[redacted]")), "the log names the webhook's host: {log}");
    assert!(!log.contains(ROUTING_KEY), "the routing key leaked into the log:\n{log}");
    assert!(!sw.status().await.to_string().contains(ROUTING_KEY), "the routing key leaked into /status");
    assert_eq!(sw.metric("spillway_notifications_failed_total").await, 1.0);
}

#[test]
fn check_shows_a_bad_webhook_without_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spillway.toml");
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n[pools.app]\nendpoints = [\"127.0.0.1:1\"]\n\n[[route]]\nprimary = \"app\"\n\n[notify]\nwebhook = \"ftp://hooks.example/services/{ROUTING_KEY}\"\n"
    );
    std::fs::write(&path, text).unwrap();
    let (code, _, stderr) = check(&path);
    assert_eq!(code, 1);
    assert!(stderr.contains("notify.webhook") && stderr.contains("ftp://hooks.example/[redacted]"), "{stderr}");
    assert!(!stderr.contains(ROUTING_KEY), "{stderr}");
}
