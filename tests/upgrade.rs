//! Zero-downtime upgrades through the real binary: SIGUSR2 starts a
//! successor that takes the listening sockets over `runtime.upgrade_socket`;
//! the predecessor drains and exits 0. Clients at steady load (HTTP/1.1
//! keep-alive and new connections, HTTP/2, TLS) see no failure across five
//! upgrades; a WebSocket on the predecessor ends cleanly; the learnt limit
//! survives an upgrade in a burst; a successor that fails leaves the
//! predecessor serving. Certificates rotate when their files change.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::tls::TestCa;
use support::{endpoints, eventually, Origin, Spillway, ADMIN};

/// One client loop's tally.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failures: Mutex<Vec<String>>,
    /// HTTP/2 requests sent again after a GOAWAY refused them unprocessed.
    goaway_retries: AtomicU64,
}

/// The error h2 gives a stream above a remote graceful GOAWAY's last stream
/// id: the server never saw it.
fn refused_by_goaway(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
        }
        source = s.source();
    }
    false
}

impl Tally {
    fn ok(&self) -> u64 {
        self.ok.load(SeqCst)
    }

    fn record(&self, what: &str, result: Result<u16, String>) {
        match result {
            Ok(200) => {
                self.ok.fetch_add(1, SeqCst);
            }
            Ok(status) => self.failures.lock().unwrap().push(format!("{what}: status {status}")),
            Err(e) => self.failures.lock().unwrap().push(format!("{what}: {e}")),
        }
    }
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between one loop's requests (steady, not flat out, on 2 cores).
const PACE: Duration = Duration::from_millis(5);

fn config(
    dir: &std::path::Path,
    origin: &Origin,
    tls: Option<(&std::path::Path, &std::path::Path)>,
    drain: &str,
) -> String {
    let tls = tls.map_or(String::new(), |(cert, key)| {
        format!(
            "\n[[listener]]\nname = \"secure\"\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n",
            cert.display(),
            key.display()
        )
    });
    format!(
        "{ADMIN}\n[runtime]\ndrain_timeout = \"{drain}\"\nupgrade_socket = \"{}\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n{tls}\n[pools.app]\nendpoints = {}\nconnect_timeout = \"300ms\"\n\n[[route]]\nname = \"all\"\nprimary = \"app\"\n",
        dir.join("upgrade.sock").display(),
        endpoints(&[origin])
    )
}

/// HTTP/1.1 through a pooled client (keep-alive; a connection the server
/// closes is replaced, as any browser does) or HTTP/2 with prior knowledge.
async fn pooled_loop(url: String, h2: bool, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(h2);
    let client = builder.build_http::<Full<Bytes>>();
    let what = if h2 { "h2" } else { "keep-alive" };
    while !stop.load(SeqCst) {
        let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
            // A stream opened in the round trip before the final GOAWAY is
            // refused by it, unprocessed (RFC 9113 §6.8): a browser sends it
            // again, hyper's pooled client does not (hyper#2500), so this
            // loop does, once, and counts it. Any other error is a failure.
            for attempt in 0..2 {
                let req = Request::get(url.as_str()).body(Full::new(Bytes::new())).unwrap();
                let resp = match client.request(req).await {
                    Ok(resp) => resp,
                    Err(e) if h2 && attempt == 0 && refused_by_goaway(&e) => {
                        tally.goaway_retries.fetch_add(1, SeqCst);
                        continue;
                    }
                    Err(e) => return Err(format!("{e:?}")),
                };
                let status = resp.status().as_u16();
                resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
                return Ok(status);
            }
            Err("refused by GOAWAY twice".into())
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        tally.record(what, result);
        tokio::time::sleep(PACE).await;
    }
}

/// One new connection per request.
async fn fresh_loop(url: String, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    while !stop.load(SeqCst) {
        tally.record("new connection", support::get(&url).await.map(|r| r.status));
        tokio::time::sleep(PACE).await;
    }
}

/// HTTP/1.1 keep-alive over TLS: a connection is replaced when the server
/// said `Connection: close` or closed it between requests.
async fn tls_loop(addr: std::net::SocketAddr, ca: Arc<rustls::ClientConfig>, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let connector = tokio_rustls::TlsConnector::from(ca);
    let mut sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
    while !stop.load(SeqCst) {
        let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
            if let Some(s) = sender.as_mut() {
                if s.ready().await.is_err() {
                    sender = None;
                }
            }
            if sender.is_none() {
                let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
                let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .map_err(|e| format!("handshake: {e}"))?;
                tokio::spawn(conn);
                sender = Some(s);
            }
            let s = sender.as_mut().unwrap();
            let req = Request::get("/tls").header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
            let resp = s.send_request(req).await.map_err(|e| format!("send: {e:?}"))?;
            let close = resp.headers().get("connection").is_some_and(|v| v == "close");
            let status = resp.status().as_u16();
            resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
            if close {
                sender = None;
            }
            Ok(status)
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        tally.record("tls", result);
        tokio::time::sleep(PACE).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_upgrades_under_steady_load_fail_no_request() {
    let origin = Origin::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("upgrade test CA");
    let (cert, key) = ca.issue("localhost", &["localhost"]).write(dir.path(), "leaf");
    let text = config(dir.path(), &origin, Some((&cert, &key)), "10s");
    let mut sw = Spillway::start_in(dir, &text).await;
    let (web, secure) = (sw.addr("web"), sw.addr("secure"));
    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Vec<(&str, Arc<Tally>)> =
        ["keep-alive", "h2", "new connection", "tls"].into_iter().map(|n| (n, Arc::new(Tally::default()))).collect();
    let url = format!("http://{web}/steady");
    let loops = vec![
        tokio::spawn(pooled_loop(url.clone(), false, stop.clone(), tallies[0].1.clone())),
        tokio::spawn(pooled_loop(url.clone(), true, stop.clone(), tallies[1].1.clone())),
        tokio::spawn(fresh_loop(url.clone(), stop.clone(), tallies[2].1.clone())),
        tokio::spawn(tls_loop(secure, ca.client_config(&[b"http/1.1"]), stop.clone(), tallies[3].1.clone())),
    ];
    let progressed = |counts: &[u64]| tallies.iter().zip(counts).all(|((_, t), before)| t.ok() >= before + 50);
    let mut pids = vec![sw.pid()];
    for round in 1..=5 {
        let before: Vec<u64> = tallies.iter().map(|(_, t)| t.ok()).collect();
        eventually(Duration::from_secs(30), "every client loop to make progress", || async { progressed(&before) })
            .await;
        let up = sw.upgrade().await;
        eprintln!("upgrade {round}: {up:?}");
        assert_eq!(up.exit_code, Some(0), "the predecessor exits 0\n{}", sw.log());
        assert!(!pids.contains(&up.successor));
        pids.push(up.successor);
        assert_eq!(sw.latest_addr("web"), Some(web), "the same sockets, the same ports");
    }
    let before: Vec<u64> = tallies.iter().map(|(_, t)| t.ok()).collect();
    eventually(Duration::from_secs(30), "progress after the last upgrade", || async { progressed(&before) }).await;
    stop.store(true, SeqCst);
    for l in loops {
        l.await.unwrap();
    }
    let status = sw.status().await;
    assert_eq!(status["pid"], *pids.last().unwrap(), "the last successor serves");
    for (name, tally) in &tallies {
        let failures = tally.failures.lock().unwrap();
        eprintln!(
            "{name}: {} ok, {} failed, {} sent again after a GOAWAY",
            tally.ok(),
            failures.len(),
            tally.goaway_retries.load(SeqCst)
        );
        assert!(
            failures.is_empty(),
            "{name}: {} failed requests: {:?}\n{}",
            failures.len(),
            &failures[..failures.len().min(10)],
            sw.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_on_the_predecessor_ends_cleanly_within_drain_timeout() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let origin = Origin::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let drain = Duration::from_secs(3);
    let text = config(dir.path(), &origin, None, "3s");
    let mut sw = Spillway::start_in(dir, &text).await;
    let url = format!("ws://{}/chat", sw.addr("web"));
    let (mut finishing, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    let (mut lingering, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    for ws in [&mut finishing, &mut lingering] {
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello from app"));
    }
    let old = sw.pid();
    sw.signal("USR2");
    eventually(Duration::from_secs(30), "the handover", || async { !sw.handed_over().is_empty() }).await;
    let handed_over = tokio::time::Instant::now();
    // While the predecessor drains, its tunnels still carry messages, and
    // one the client closes ends with the closing handshake.
    finishing.send(Message::text("still there?")).await.unwrap();
    assert_eq!(finishing.next().await.unwrap().unwrap(), Message::text("echo: still there?"));
    finishing.close(None).await.unwrap();
    // Ends with the close reply or the end of the stream (a FIN: tungstenite
    // names it `ResetWithoutClosingHandshake`), never a reset or an error.
    while let Some(msg) = finishing.next().await {
        use tokio_tungstenite::tungstenite::error::{Error, ProtocolError};
        match msg {
            Ok(Message::Close(_)) | Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {}
            other => panic!("the finishing WebSocket ended with {other:?}"),
        }
    }
    // The lingering one is closed at the drain deadline: an end of stream
    // (a FIN), never a reset; the predecessor exits 0 right after.
    let ended =
        tokio::time::timeout(drain + Duration::from_secs(10), lingering.next()).await.expect("the tunnel ended");
    let took = handed_over.elapsed();
    match ended {
        None | Some(Ok(Message::Close(_))) => {}
        // A FIN without a close frame.
        Some(Err(tokio_tungstenite::tungstenite::Error::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ))) => {}
        other => panic!("the lingering WebSocket ended with {other:?}"),
    }
    assert!(
        took >= drain - Duration::from_millis(500),
        "kept open until the drain deadline, not cut at once: {took:?}"
    );
    assert_eq!(sw.wait_pid(old, Duration::from_secs(10)).await, Some(0));
    let successor = sw.handed_over()[0];
    sw.adopt(successor);
    // New WebSockets go to the successor.
    let (mut again, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    assert_eq!(again.next().await.unwrap().unwrap(), Message::text("hello from app"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_fails_leaves_the_predecessor_serving() {
    let origin = Origin::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &origin, None, "5s");
    let mut sw = Spillway::start_linked(&text).await;
    std::fs::write(sw.dir().join("upgrade-ok.toml.txt"), &text).unwrap();
    let url = sw.url("web", "/");
    let first = sw.pid();
    // 1. The successor's config does not validate: it never connects.
    sw.write_unwatched(&text.replace("[pools.app]", "[pools.app]\nbogus_key = 1"));
    sw.signal("USR2");
    eventually(Duration::from_secs(30), "the failed upgrade counted", || async {
        sw.metric("spillway_upgrades_total").await >= 1.0
    })
    .await;
    // 2. Its config validates but a new listener cannot be bound (the
    // address is taken): it received the sockets, then died before `ready`.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let extra = format!("\n[[listener]]\nname = \"extra\"\nlisten = \"{}\"\n", taken.local_addr().unwrap());
    sw.write_unwatched(&text.replace("\n[pools.app]", &format!("{extra}\n[pools.app]")));
    sw.signal("USR2");
    eventually(Duration::from_secs(30), "the second failed upgrade counted", || async {
        sw.metric("spillway_upgrades_total").await >= 2.0
    })
    .await;
    assert!(sw.handed_over().is_empty(), "nobody took over");
    assert_eq!(sw.status().await["pid"], first);
    for _ in 0..20 {
        assert_eq!(support::get(&url).await.unwrap().status, 200, "the predecessor keeps serving");
    }
    let log = sw.log();
    assert!(log.contains("upgrade failed"), "{log}");
    // 3. Fixed: the next upgrade goes through.
    sw.write_unwatched(&text);
    let up = sw.upgrade().await;
    assert_eq!(up.exit_code, Some(0));
    assert_eq!(sw.status().await["pid"], up.successor);
    assert_eq!(support::get(&url).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spillway_upgrade_reports_the_successor() {
    let origin = Origin::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &origin, None, "5s");
    let mut sw = Spillway::start_in(dir, &text).await;
    let old = sw.pid();
    let out = tokio::process::Command::new(support::spillway::BIN)
        .args(["upgrade", "--config"])
        .arg(&sw.config_path)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // The predecessor prints its line after the successor answered the CLI: it may come a moment later.
    eventually(Duration::from_secs(10), "the handover line", || async { !sw.handed_over().is_empty() }).await;
    let successor: u32 = sw.handed_over()[0];
    assert!(stdout.contains(&format!("pid {successor} took over")), "{stdout}");
    assert_eq!(sw.wait_pid(old, Duration::from_secs(30)).await, Some(0));
    sw.adopt(successor);
    assert_eq!(support::get(&sw.url("web", "/")).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_certificate_files_rotates_the_certificate_and_a_broken_pair_keeps_the_old_one() {
    let origin = Origin::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("rotation test CA");
    let first = ca.issue("first", &["localhost"]);
    let (cert, key) = first.write(dir.path(), "leaf");
    let text = config(dir.path(), &origin, Some((&cert, &key)), "5s");
    let sw = Spillway::start_in(dir, &text).await;
    let secure = sw.addr("secure");
    let client = ca.client_config(&[b"http/1.1"]);
    let served = || async { support::tls::handshake(secure, "localhost", client.clone()).await.unwrap().0 };
    assert_eq!(served().await, first.der());
    // A new pair replaces the files: the next handshakes get it, no signal.
    let second = ca.issue("second", &["localhost"]);
    second.write(sw.dir(), "leaf");
    eventually(Duration::from_secs(10), "the new certificate served", || async { served().await == second.der() })
        .await;
    let applied = support::spillway::metric_value(
        &support::get(&sw.admin_url("/metrics")).await.unwrap().text(),
        "spillway_certificate_reloads_total",
    );
    assert!(applied >= 1.0, "the rotation is counted");
    // A certificate whose key is not the one beside it: refused, the
    // second pair keeps serving, the error is logged and counted.
    let third = ca.issue("third", &["localhost"]);
    support::tls::write_atomic(&cert, third.cert_pem.as_bytes());
    eventually(Duration::from_secs(10), "the broken pair refused", || async {
        sw.log().contains("configuration reload failed") && sw.metric("config_reload_failures_total").await >= 1.0
    })
    .await;
    let metrics = support::get(&sw.admin_url("/metrics")).await.unwrap().text();
    assert!(
        metrics.lines().any(|l| l.starts_with("spillway_certificate_reloads_total{result=\"failed\"}")),
        "{metrics}"
    );
    for _ in 0..5 {
        assert_eq!(served().await, second.der(), "the old certificate keeps serving");
    }
    assert!(sw.log().contains("trigger=certificate"), "{}", sw.log());
    // The pair made whole again (its key follows) is taken.
    support::tls::write_atomic(&key, third.key_pem.as_bytes());
    eventually(Duration::from_secs(10), "the third certificate served", || async { served().await == third.der() })
        .await;
}

/// The burst scenario's tiers: on-prem 8 workers at 40 ms, a roomy cloud.
fn tiers() -> (spillway::demo::tier::TierSpec, spillway::demo::tier::TierSpec) {
    use spillway::demo::tier::TierSpec;
    let onprem = TierSpec {
        name: "onprem",
        workers: 8,
        base: Duration::from_millis(40),
        slowdown: 1.0,
        network: Duration::ZERO,
        replica_lag: None,
    };
    let cloud = TierSpec {
        name: "cloud",
        workers: 128,
        base: Duration::from_millis(20),
        slowdown: 0.5,
        network: Duration::from_millis(20),
        replica_lag: Some(1.0),
    };
    (onprem, cloud)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_during_a_burst_keeps_the_learnt_limit() {
    use spillway::demo::tier::Tier;
    let (onprem_spec, cloud_spec) = tiers();
    let onprem = Tier::start(onprem_spec).await.unwrap();
    let cloud = Tier::start(cloud_spec).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let max_in_flight = 400;
    let text = format!(
        "{ADMIN}\n[runtime]\ndrain_timeout = \"5s\"\nupgrade_socket = \"{sock}\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n[pools.onprem]\nendpoints = [\"{onprem}\"]\nconnect_timeout = \"300ms\"\nresponse_timeout = \"10s\"\n\n[pools.aws]\nrole = \"cloud\"\nendpoints = [\"{cloud}\"]\nconnect_timeout = \"300ms\"\nresponse_timeout = \"10s\"\n\n[[route]]\nname = \"www\"\nprimary = \"onprem\"\noverflow = \"aws\"\nspill_methods = [\"GET\"]\n\n[spill]\nmode = \"adaptive\"\nmax_in_flight = {max_in_flight}\nmin_limit = 2\ntick = \"50ms\"\nenter_after = \"300ms\"\nexit_after = \"5s\"\n",
        sock = dir.path().join("upgrade.sock").display(),
        onprem = onprem.addr,
        cloud = cloud.addr,
    );
    let mut sw = Spillway::start_in(dir, &text).await;
    let url = sw.url("web", "/burst");
    // 40 clients back to back: five times what 8 workers at 40 ms carry.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let loops: Vec<_> = (0..40).map(|_| tokio::spawn(fresh_loop(url.clone(), stop.clone(), tally.clone()))).collect();
    let limit = |status: &serde_json::Value| status["gates"]["onprem"]["limit"].as_u64().unwrap_or(u64::MAX);
    eventually(Duration::from_secs(30), "the limit to learn the pool's capacity", || async {
        limit(&sw.status().await) < 60
    })
    .await;
    // A few ticks more: the learnt value, not a point on the way down.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let learnt = limit(&sw.status().await);
    // Read the successor's limit the moment it took over (a fresh limit
    // would start at max_in_flight and need about a second to come down).
    let old = sw.pid();
    sw.signal("USR2");
    eventually(Duration::from_secs(60), "the handover", || async { !sw.handed_over().is_empty() }).await;
    let successor = sw.handed_over()[0];
    let status = sw.status().await;
    assert_eq!(status["pid"], successor, "the admin socket went over too");
    let resumed = limit(&status);
    eprintln!("learnt {learnt}, the successor's {resumed} at once (max_in_flight {max_in_flight})");
    assert!(resumed * 2 >= learnt && resumed <= learnt * 2, "within 2× of the learnt {learnt}: {resumed}");
    assert_eq!(sw.wait_pid(old, Duration::from_secs(30)).await, Some(0));
    sw.adopt(successor);
    stop.store(true, SeqCst);
    for l in loops {
        l.await.unwrap();
    }
    let failures = tally.failures.lock().unwrap();
    assert!(failures.is_empty(), "{} failed: {:?}", failures.len(), &failures[..failures.len().min(10)]);
}

/// The upgrade socket against a hostile local peer of the same user: a
/// takeover naming another process's pid gets no socket, bytes after the
/// first line and an over-long line are refused, a peer dribbling bytes
/// holds no blocking thread (a `localhost` endpoint, resolved on that
/// pool, keeps answering while 200 of them drip), and more than four at
/// once are closed at once. A real upgrade works afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_socket_refuses_impostors_and_dribblers() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let origin = Origin::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("upgrade.sock");
    let port = origin.endpoint().rsplit(':').next().unwrap().to_string();
    let by_name = config(dir.path(), &origin, None, "5s").replace(&origin.endpoint(), &format!("localhost:{port}"));
    let mut sw = Spillway::start_in(dir, &by_name).await;
    let closed_without_answer = |mut s: UnixStream| {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        matches!(s.read(&mut buf), Ok(0) | Err(_))
    };
    // An impostor: our user, but naming pid 1.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(b"{\"kind\":\"takeover\",\"pid\":1}\n").unwrap();
    assert!(closed_without_answer(s), "a takeover naming another pid got an answer");
    // Bytes after the first line; a first line over 1 KiB.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(format!("{{\"kind\":\"takeover\",\"pid\":{}}}\nmore", std::process::id()).as_bytes()).unwrap();
    assert!(closed_without_answer(s));
    let mut s = UnixStream::connect(&sock).unwrap();
    let _ = s.write_all(&[b' '; 4096]);
    assert!(closed_without_answer(s));
    // Dribblers: four are served (and time out), the rest closed at once.
    let mut dribblers: Vec<UnixStream> = (0..200).filter_map(|_| UnixStream::connect(&sock).ok()).collect();
    let mut closed = 0;
    for s in dribblers.iter_mut() {
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        closed += usize::from(matches!(s.read(&mut [0u8; 8]), Ok(0)));
    }
    assert!(closed >= 190, "only {closed} of 200 extra peers were closed at once");
    let threads = std::fs::read_to_string(format!("/proc/{}/status", sw.pid())).unwrap();
    let threads: usize = threads.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap();
    assert!(threads < 40, "{threads} threads: dribbling peers hold blocking threads");
    for round in 0..5 {
        for d in dribblers.iter_mut() {
            let _ = d.write_all(b" ");
        }
        // A fresh upstream connection to a name each time (the origin keeps none idle for long).
        let resp = support::request(
            http::Method::GET,
            &sw.url("web", &format!("/r{round}")),
            vec![("connection", "close".to_string())],
            b"",
        )
        .await
        .unwrap();
        assert_eq!(resp.status, 200, "round {round}: {}", resp.text());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(dribblers);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let up = sw.upgrade().await;
    assert_eq!(up.exit_code, Some(0), "the real upgrade after the abuse");
    assert_eq!(support::get(&sw.url("web", "/after")).await.unwrap().status, 200);
}
