//! Issue 2: the upstream HTTP/1.1 client against origins that misbehave or
//! use the less common corners of the protocol, byte for byte: chunked
//! bodies with extensions and trailers, close-delimited bodies, 1xx interim
//! answers, early answers to uploads, malformed heads, connections that die
//! at the worst moment. The proxy is the real binary; clients are curl and
//! hyper.

mod support;

use std::time::Duration;

use http::Method;
use support::wire::{Reply, Then, WireOrigin};
use support::{curl, get, request, Spillway, ADMIN};

fn config(origin: &WireOrigin, pool_extra: &str) -> String {
    let timeout = if pool_extra.contains("response_timeout") { "" } else { "response_timeout = \"3s\"\n" };
    format!(
        "{ADMIN}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n[pools.app]\nendpoints = [\"{}\"]\nconnect_timeout = \"300ms\"\n{timeout}{pool_extra}\n\n[[route]]\nname = \"all\"\nprimary = \"app\"\n",
        origin.endpoint()
    )
}

/// The origin's answer for a GET, kept alive.
fn ok(body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_close_delimited_bodies_arrive_whole() {
    let origin = WireOrigin::start(|n, _| match n {
        // Chunk extensions, a trailer, odd sizes.
        0 => Reply::keep(
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=\"x\"\r\nhello\r\n1\r\n \r\nB\r\nchunked-end\r\n0\r\nX-Trailer: t\r\n\r\n"[..],
        ),
        // No length at all: the body ends when the origin closes.
        1 => Reply::close(&b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the connection closes"[..]),
        _ => Reply::keep(ok("after")),
    })
    .await;
    let sw = Spillway::start(&config(&origin, "")).await;
    let a = get(&sw.url("web", "/chunked")).await.unwrap();
    assert_eq!((a.status, a.text()), (200, "hello chunked-end".to_string()));
    let b = get(&sw.url("web", "/close")).await.unwrap();
    assert_eq!((b.status, b.text()), (200, "until the connection closes".to_string()));
    let c = get(&sw.url("web", "/after")).await.unwrap();
    assert_eq!((c.status, c.text()), (200, "after".to_string()));
    // The chunked exchange left its connection reusable; the close-delimited
    // one could not, so the third request needed a second connection.
    let conns: Vec<usize> = origin.seen().iter().map(|s| s.connection).collect();
    assert_eq!(conns, vec![0, 0, 1], "{:?}", origin.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_1xx_answers_are_skipped_and_head_answers_have_no_body() {
    let origin = WireOrigin::start(|n, _| match n {
        0 => Reply::keep(&b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal"[..]),
        // A HEAD answer announces a length but carries no body.
        1 => Reply::keep(&b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"[..]),
        2 => Reply::keep(&b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"[..]),
        _ => Reply::keep(ok("next")),
    })
    .await;
    let sw = Spillway::start(&config(&origin, "")).await;
    let a = get(&sw.url("web", "/hints")).await.unwrap();
    assert_eq!((a.status, a.text()), (200, "real".to_string()));
    let head = curl(&["-I", &sw.url("web", "/head")]).await;
    assert_eq!(head.status, 200, "{head:?}");
    assert!(head.body.to_ascii_lowercase().contains("content-length: 1234"), "{head:?}");
    let nm = get(&sw.url("web", "/cached")).await.unwrap();
    assert_eq!((nm.status, nm.body.len()), (304, 0));
    let d = get(&sw.url("web", "/next")).await.unwrap();
    assert_eq!((d.status, d.text()), (200, "next".to_string()));
    // A HEAD answer that announces a length retires its connection (an
    // origin that sent the body anyway would have it read as the next
    // response: tests/edge_upstream.rs); the 304 without one does not.
    let conns: Vec<usize> = origin.seen().iter().map(|s| s.connection).collect();
    assert_eq!(conns, [0, 0, 1, 1], "{:?}", origin.seen());
}

/// The keep-alive race, made certain: the origin answers the first request
/// on a connection, then closes the connection when the second arrives,
/// without answering (it had just timed it out). A GET is resent on a new
/// connection; a POST is not (it may have been processed), and gets 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_closed_under_a_request_is_resent_only_when_idempotent() {
    let origin = WireOrigin::start(|n, _| match n {
        // 1: the second GET on connection 0; 3: the POST, on connection 1.
        1 | 3 => Reply { bytes: Vec::new(), read_body: false, then: Then::Close },
        _ => Reply::keep(ok("fine")),
    })
    .await;
    let sw = Spillway::start(&config(&origin, "")).await;
    let first = get(&sw.url("web", "/one")).await.unwrap();
    assert_eq!(first.status, 200);
    let second = get(&sw.url("web", "/two")).await.unwrap();
    assert_eq!((second.status, second.text()), (200, "fine".to_string()), "the GET was resent");
    let retries = sw.metric("spillway_retries_total").await;
    assert_eq!(retries, 1.0, "one stale-connection retry");
    let seen: Vec<(usize, String)> =
        origin.seen().iter().map(|s| (s.connection, s.head.lines().next().unwrap_or("").to_string())).collect();
    assert_eq!(seen[1..3], [(0, "GET /two HTTP/1.1".into()), (1, "GET /two HTTP/1.1".into())], "{seen:?}");

    // Connection 1 is pooled now; the origin closes it under the POST.
    let post = request(Method::POST, &sw.url("web", "/write"), Vec::new(), b"").await.unwrap();
    assert_eq!(post.status, 502, "{}", post.text());
    assert_eq!(post.header("x-spillway-error"), Some("upstream"));
    let posts = origin.seen().iter().filter(|s| s.head.starts_with("POST")).count();
    assert_eq!(posts, 1, "the POST reached the origin once, never twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_to_an_upload_reaches_the_client() {
    let origin = WireOrigin::start(|_, _| Reply {
        bytes: b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large".to_vec(),
        read_body: false,
        then: Then::LingerClose,
    })
    .await;
    let sw = Spillway::start(&config(&origin, "")).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    std::fs::write(&file, vec![b'x'; 8 << 20]).unwrap();
    let data = format!("@{}", file.display());
    let resp = curl(&["-X", "POST", "-H", "Expect:", "--data-binary", &data, &sw.url("web", "/upload")]).await;
    assert_eq!(resp.status, 413, "{resp:?}");
    assert_eq!(resp.body, "too large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upstream_answers_are_502_and_a_body_cut_short_aborts_the_client() {
    let origin = WireOrigin::start(|n, _| match n {
        0 => Reply::close(&b"HTTP/1.1 2xx Whatever\r\n\r\n"[..]),
        1 => Reply::close(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"[..]),
        2 => Reply::close(&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n"[..]),
        // Promises 100 000 bytes, sends 10 and dies.
        3 => Reply::close(&b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789"[..]),
        _ => Reply::keep(ok("still serving")),
    })
    .await;
    let sw = Spillway::start(&config(&origin, "eject_after = 1000")).await;
    for path in ["/bad-status", "/two-lengths"] {
        let r = get(&sw.url("web", path)).await.unwrap();
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        assert_eq!(r.header("x-spillway-error"), Some("upstream"), "{path}");
    }
    // A broken chunked body is found after the head went out: the client's
    // response is cut, not completed.
    let chunked = curl(&[&sw.url("web", "/bad-chunked")]).await;
    assert_ne!(chunked.exit, 0, "{chunked:?}");
    // The head may or may not have left before the cut; the client never
    // sees a complete response either way.
    let cut = curl(&["-o", "/dev/null", &sw.url("web", "/cut")]).await;
    assert_ne!(cut.exit, 0, "curl saw the body end early: {cut:?}");
    assert!(cut.size_download < 100_000, "{cut:?}");
    let after = tokio::time::timeout(Duration::from_secs(5), get(&sw.url("web", "/after"))).await.unwrap().unwrap();
    assert_eq!((after.status, after.text()), (200, "still serving".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_keep_their_framing_upstream() {
    let origin = WireOrigin::start(|_, _| Reply::keep(ok("got it"))).await;
    let sw = Spillway::start(&config(&origin, "")).await;
    // Chunked from the client: chunked upstream, same bytes.
    let chunked = curl(&[
        "-X",
        "POST",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        "a chunked upload",
        &sw.url("web", "/chunked"),
    ])
    .await;
    assert_eq!(chunked.status, 200, "{chunked:?}");
    // A length from the client: the same length upstream.
    let sized = request(Method::PUT, &sw.url("web", "/sized"), Vec::new(), &[7u8; 70_000]).await.unwrap();
    assert_eq!(sized.status, 200);
    // h2 without a length: chunked upstream.
    let h2 =
        curl(&["--http2-prior-knowledge", "-X", "POST", "-H", "Content-Length:", "-T", "-", &sw.url("web", "/h2")])
            .await;
    assert_eq!(h2.status, 200, "{h2:?}");
    let seen = origin.seen();
    let find = |path: &str| seen.iter().find(|s| s.head.contains(path)).unwrap_or_else(|| panic!("{path}: {seen:?}"));
    let c = find("/chunked");
    assert!(c.head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{}", c.head);
    assert_eq!(c.body, b"a chunked upload");
    let s = find("/sized");
    assert!(s.head.to_ascii_lowercase().contains("content-length: 70000"), "{}", s.head);
    assert_eq!(s.body, vec![7u8; 70_000]);
    let h = find("/h2");
    assert!(h.head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{}", h.head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_beside_chunked_is_dropped_and_trailers_reach_http2_clients() {
    let origin = WireOrigin::start(|_, _| {
        Reply::keep(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\nX-Checksum: 42\r\n\r\n"[..],
        )
    })
    .await;
    let sw = Spillway::start(&config(&origin, "")).await;
    // HTTP/1.1: the whole body, framed anew, not cut at the stray length.
    let h1 = get(&sw.url("web", "/both")).await.unwrap();
    assert_eq!((h1.status, h1.text()), (200, "0123456789abcdef".to_string()));
    assert_eq!(h1.header("content-length"), None);
    // HTTP/2 (prior knowledge): the trailer field arrives as a trailer.
    let tcp = tokio::net::TcpStream::connect(sw.addr("web")).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let uri = format!("http://{}/trailers", sw.addr("web"));
    let req = http::Request::get(uri).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(trailers["x-checksum"], "42");
    assert_eq!(&collected.to_bytes()[..], b"0123456789abcdef");
}

/// An answer that comes before the upload is done retires the connection,
/// whether the upload ends before the answer's body (the rule applied when
/// the head arrives) or after it (the body's end finds the upload still
/// going). Which of the two a run takes depends on socket timing; this test
/// checks the outcome both guarantee: the upload's tail is never read as the
/// start of the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_without_close_still_retires_the_connection() {
    let origin = WireOrigin::start(|n, _| match n {
        // Answers before reading the body and keeps the connection: the
        // rest of the upload is then read as the start of a next request.
        0 => Reply {
            bytes: b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope".to_vec(),
            read_body: false,
            then: Then::KeepOpen,
        },
        _ => Reply::keep(ok("fresh")),
    })
    .await;
    let sw = Spillway::start(&config(&origin, "")).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    std::fs::write(&file, vec![b'x'; 4 << 20]).unwrap();
    let data = format!("@{}", file.display());
    let early = curl(&["-X", "POST", "-H", "Expect:", "--data-binary", &data, &sw.url("web", "/upload")]).await;
    assert_eq!((early.status, early.body.as_str()), (401, "nope"), "{early:?}");
    let next = get(&sw.url("web", "/next")).await.unwrap();
    assert_eq!((next.status, next.text()), (200, "fresh".to_string()));
    let seen = origin.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[1].head.starts_with("GET /next"), "the upload's tail was not glued to the next request");
    assert_eq!(seen[1].connection, 1, "the next request went on a new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_upload_is_the_clients_fault_and_a_slow_one_is_not_a_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = WireOrigin::start(|_, _| Reply::keep(ok("stored"))).await;
    // One failure would eject the endpoint: a client's fault must not count.
    let sw = Spillway::start(&config(&origin, "eject_after = 1\nresponse_timeout = \"1s\"")).await;
    let mut tcp = tokio::net::TcpStream::connect(sw.addr("web")).await.unwrap();
    tcp.write_all(b"POST /cut HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nonly a few bytes").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(tcp);
    support::eventually(Duration::from_secs(5), "the aborted upload is counted", || async {
        sw.metric("spillway_proxy_errors_total{kind=\"client_body\"}").await == 1.0
    })
    .await;
    let after = get(&sw.url("web", "/after")).await.unwrap();
    assert_eq!((after.status, after.text()), (200, "stored".to_string()), "the endpoint was not ejected");

    // An upload slower than the response timeout: the timeout starts once
    // the request is sent whole, so this is a 200, not a 504.
    let mut tcp = tokio::net::TcpStream::connect(sw.addr("web")).await.unwrap();
    tcp.write_all(b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\n").await.unwrap();
    for part in [b"a", b"b", b"c"] {
        tokio::time::sleep(Duration::from_millis(600)).await;
        tcp.write_all(part).await.unwrap();
    }
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let slow = origin.seen().into_iter().find(|s| s.head.starts_with("POST /slow")).unwrap();
    assert_eq!(slow.body, b"abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_nobody_asked_for_is_a_502() {
    let origin = WireOrigin::start(|_, _| {
        Reply::close(&b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"[..])
    })
    .await;
    let sw = Spillway::start(&config(&origin, "")).await;
    let r = get(&sw.url("web", "/not-a-websocket")).await.unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_cut_after_the_response_timeout() {
    // 10 of 100 promised bytes, then silence on an open connection.
    let origin = WireOrigin::start(|n, _| match n {
        0 => Reply::keep(&b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"[..]),
        _ => Reply::keep(ok("next")),
    })
    .await;
    let sw = Spillway::start(&config(&origin, "response_timeout = \"700ms\"")).await;
    let started = std::time::Instant::now();
    let cut = curl(&["-o", "/dev/null", &sw.url("web", "/stall")]).await;
    let took = started.elapsed();
    assert_ne!(cut.exit, 0, "the client saw an incomplete response: {cut:?}");
    assert!(took < Duration::from_secs(5), "cut after about the timeout, not curl's own: {took:?}");
    let next = get(&sw.url("web", "/next")).await.unwrap();
    assert_eq!((next.status, next.text()), (200, "next".to_string()));
    assert_eq!(origin.seen()[1].connection, 1, "the stalled connection was not reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_upload_gets_408_past_request_body_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = WireOrigin::start(|_, _| Reply::keep(ok("stored"))).await;
    let config = config(&origin, "eject_after = 1").replace(
        "name = \"web\"\nlisten = \"127.0.0.1:0\"\n",
        "name = \"web\"\nlisten = \"127.0.0.1:0\"\nrequest_body_timeout = \"1s\"\n",
    );
    let sw = Spillway::start(&config).await;
    let mut tcp = tokio::net::TcpStream::connect(sw.addr("web")).await.unwrap();
    tcp.write_all(b"POST /trickle HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let (mut rd, mut wr) = tcp.split();
    let mut answer = String::new();
    let reader = async {
        tokio::time::timeout(Duration::from_secs(10), rd.read_to_string(&mut answer)).await.unwrap().unwrap();
    };
    // One byte every 600 ms would need 3 s; the answer comes at about 1 s.
    let writer = async {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            if wr.write_all(b"x").await.is_err() {
                break; // the proxy answered and closed
            }
        }
    };
    tokio::join!(reader, writer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let after = get(&sw.url("web", "/after")).await.unwrap();
    assert_eq!((after.status, after.text()), (200, "stored".to_string()), "the endpoint was not ejected");
    assert_eq!(sw.metric("spillway_proxy_errors_total{kind=\"client_body_timeout\"}").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_timeout_of_a_reused_connection_counts_from_its_own_request() {
    // The first request is answered; the second, on the same kept-alive
    // connection, never is.
    let origin = WireOrigin::start(|n, _| match n {
        0 => Reply::keep(ok("first")),
        _ => Reply::keep(Vec::new()),
    })
    .await;
    let sw = Spillway::start(&config(&origin, "response_timeout = \"1s\"")).await;
    let first = get(&sw.url("web", "/first")).await.unwrap();
    assert_eq!(first.status, 200);
    // Past most of the first request's deadline: the connection's timer
    // fires before the second request's deadline, which alone counts.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let started = std::time::Instant::now();
    let second = get(&sw.url("web", "/second")).await.unwrap();
    let took = started.elapsed();
    assert_eq!(second.status, 504, "{}", second.text());
    assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(3), "504 after {took:?}");
    let seen = origin.seen();
    assert_eq!((seen.len(), seen[1].connection), (2, 0), "the second went out on the reused connection");
}
