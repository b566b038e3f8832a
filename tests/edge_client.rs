//! The client-facing edge against hostile clients, through the real binary:
//! Host ambiguity, spoofed paths, the admission ceiling and pins, HTTP/2
//! cookie crumbs, clients that stop reading, idle HTTP/2 connections kept
//! up with PINGs, rapid stream resets, and tunnels inside their limits.
//! Each test checks what the client got and what the origin received.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use support::{eventually, request, Origin, Spillway, ADMIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The JSON document of a raw HTTP/1.1 answer (everything after the head).
fn body_json(raw: &str) -> serde_json::Value {
    let (_, body) = raw.split_once("\r\n\r\n").unwrap_or(("", ""));
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

fn header_of(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_decides_routing_and_the_upstream_host() {
    let api = Origin::start("api").await;
    let www = Origin::start("www").await;
    let config = format!(
        "{ADMIN}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [pools.api]\nendpoints = [\"{}\"]\n\n[pools.www]\nendpoints = [\"{}\"]\n\n\
         [[route]]\nname = \"api\"\nhost = \"api.example\"\nprimary = \"api\"\n\n\
         [[route]]\nname = \"www\"\nprimary = \"www\"\n",
        api.endpoint(),
        www.endpoint()
    );
    let sw = Spillway::start(&config).await;
    let addr = sw.addr("web");
    let raw = |bytes: &'static str| support::client::raw(addr, bytes.as_bytes());

    let two = raw("GET /headers HTTP/1.1\r\nHost: api.example\r\nHost: www.example\r\nConnection: close\r\n\r\n").await;
    assert!(two.starts_with("HTTP/1.1 400"), "two Host headers: {two}");
    assert_eq!(header_of(&two, "x-spillway-error").as_deref(), Some("bad_host"));
    let none = raw("GET /headers HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(none.starts_with("HTTP/1.1 400"), "HTTP/1.1 without Host: {none}");
    let bad = raw("GET /headers HTTP/1.1\r\nHost: api.example/../x\r\nConnection: close\r\n\r\n").await;
    assert!(bad.starts_with("HTTP/1.1 400"), "a Host that is no authority: {bad}");
    let old = raw("GET /headers HTTP/1.0\r\n\r\n").await;
    assert!(old.starts_with("HTTP/1.1 200") || old.starts_with("HTTP/1.0 200"), "HTTP/1.0 may omit Host: {old}");
    assert_eq!(header_of(&old, "x-origin").as_deref(), Some("www"));
    assert_eq!(api.hits() + www.hits(), 1, "the refused requests reached no origin");

    // An absolute-form target decides, its userinfo is dropped, and the
    // origin sees the same host the route matched.
    let absolute = raw(
        "GET http://user:secret@api.example:8080/headers HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(header_of(&absolute, "x-origin").as_deref(), Some("api"), "{absolute}");
    let seen = body_json(&absolute);
    assert_eq!(seen["headers"]["host"][0], "api.example:8080", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-host"][0], "api.example:8080");
    assert!(!absolute.contains("secret") && !seen.to_string().contains("secret"));

    // Case and a trailing dot do not escape a host route.
    let dotted = raw("GET /headers HTTP/1.1\r\nHost: API.Example.\r\nConnection: close\r\n\r\n").await;
    assert_eq!(header_of(&dotted, "x-origin").as_deref(), Some("api"), "{dotted}");
    assert_eq!(body_json(&dotted)["headers"]["host"][0], "API.Example.");
}

/// An HTTP/2 prior-knowledge connection to `addr`, driven in the background.
async fn h2_client(addr: std::net::SocketAddr, builder: h2::client::Builder) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = builder.handshake::<_, Bytes>(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

async fn h2_get(send: &mut h2::client::SendRequest<Bytes>, req: Request<()>) -> (StatusCode, serde_json::Value) {
    let mut ready = send.clone().ready().await.unwrap();
    let (resp, _) = ready.send_request(req, true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status();
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    *send = ready;
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_authority_must_agree_with_host_and_cookie_crumbs_are_joined() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&support::simple_config(&[&a], "", "")).await;
    let mut send = h2_client(sw.addr("web"), h2::client::Builder::new()).await;

    let mismatch = Request::get("http://a.example/headers").header("host", "b.example").body(()).unwrap();
    let (status, _) = h2_get(&mut send, mismatch).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, ":authority a.example with host b.example");
    assert_eq!(a.hits(), 0);

    let crumbs = Request::get("http://a.example/headers")
        .header("cookie", "session=1")
        .header("cookie", "theme=dark")
        .header("cookie", "x=y")
        .body(())
        .unwrap();
    let (status, seen) = h2_get(&mut send, crumbs).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["headers"]["cookie"], serde_json::json!(["session=1; theme=dark; x=y"]), "one line: {seen}");
    assert_eq!(seen["headers"]["host"][0], "a.example");
}

/// A primary that takes one request at a time, a cloud that takes the rest.
fn ceiling_config(onprem: &Origin, cloud: &Origin) -> String {
    format!(
        "{ADMIN}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [pools.onprem]\nendpoints = [\"{}\"]\n\n\
         [pools.aws]\nrole = \"cloud\"\nendpoints = [\"{}\"]\n\n\
         [[route]]\nprimary = \"onprem\"\noverflow = \"aws\"\nnever_spill = [\"/login\"]\n\n\
         [spill]\nmode = \"static\"\nmax_in_flight = 1\nmin_limit = 1\nenter_after = \"0s\"\n\
         queue_timeout = \"300ms\"\nsession_cookie = \"S\"\npins_per_address = 2\ntick = \"50ms\"\n",
        onprem.endpoint(),
        cloud.endpoint()
    )
}

/// Holds the primary's one slot for `ms` milliseconds.
fn hold(sw: &Spillway, ms: u64) -> tokio::task::JoinHandle<()> {
    let url = sw.url("web", &format!("/hold?delay_ms={ms}"));
    tokio::spawn(async move {
        let r = request(Method::GET, &url, vec![], &[]).await.unwrap();
        assert_eq!(r.origin(), Some("onprem"), "the holding request is on-prem");
    })
}

async fn send(sw: &Spillway, method: &str, path: &str, cookie: &str) -> (u16, Option<String>, bool) {
    let m = Method::from_bytes(method.as_bytes()).unwrap();
    let headers = vec![("cookie", format!("S={cookie}"))];
    let r = request(m, &sw.url("web", path), headers, b"").await.unwrap();
    (r.status, r.origin().map(str::to_string), r.header("retry-after").is_some())
}

async fn wait_in_flight(sw: &Spillway, n: u64) {
    eventually(Duration::from_secs(5), "the primary's slot to be taken", || async {
        sw.status().await["gates"]["onprem"]["in_flight"] == n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_bypasses_the_ceiling_and_spoofed_paths_stay_on_prem() {
    let onprem = Origin::start("onprem").await;
    let cloud = Origin::start("cloud").await;
    let sw = Spillway::start(&ceiling_config(&onprem, &cloud)).await;
    let holder = hold(&sw, 4000);
    wait_in_flight(&sw, 1).await;

    // Over the hard cap a plain read spills...
    assert_eq!(send(&sw, "GET", "/news", "r").await, (200, Some("cloud".into()), false));
    // ...while every spelling of the never_spill path, a write and an
    // unknown method wait for a slot and then get 503 + Retry-After: none
    // reaches the cloud, none pushes the primary past its cap.
    for path in
        ["/login", "//login", "/%6Cogin", "/./login", "/a/../login", "/;x/login", "/LOGIN", "/login;jsessionid=1"]
    {
        assert_eq!(send(&sw, "GET", path, "r").await, (503, None, true), "{path}");
    }
    assert_eq!(send(&sw, "POST", "/api/post", "w").await, (503, None, true), "a write over the cap");
    assert_eq!(send(&sw, "PURGE", "/news", "w").await, (503, None, true), "an unknown method over the cap");
    assert_eq!(cloud.hits(), 1, "only /news reached the cloud");
    assert_eq!(onprem.hits(), 1, "only the holding request reached on-prem");
    holder.await.unwrap();
    let queued = sw.metric("spillway_gate_decisions_total").await;
    assert!(queued >= 12.0, "decisions counted: {queued}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_write_that_succeeded_pins_and_one_address_cannot_flood_the_pins() {
    let onprem = Origin::start("onprem").await;
    let cloud = Origin::start("cloud").await;
    let sw = Spillway::start(&ceiling_config(&onprem, &cloud)).await;

    // A refused write pins nothing; an accepted one does.
    assert_eq!(send(&sw, "POST", "/api/post?status=500", "failed").await.0, 500);
    assert_eq!(send(&sw, "POST", "/api/post", "wrote").await.0, 200);
    let holder = hold(&sw, 3000);
    wait_in_flight(&sw, 1).await;
    assert_eq!(send(&sw, "GET", "/news", "failed").await, (200, Some("cloud".into()), false));
    assert_eq!(send(&sw, "GET", "/news", "wrote").await, (503, None, true), "a pinned reader stays on-prem");
    holder.await.unwrap();

    // pins_per_address = 2: the second session of this address already
    // pinned ("wrote"), so a third pins the whole address, and a session
    // that never wrote is then kept on-prem too.
    assert_eq!(send(&sw, "POST", "/api/post", "third").await.0, 200);
    assert_eq!(send(&sw, "POST", "/api/post", "fourth").await.0, 200);
    assert!(sw.metric("spillway_address_pins_total").await >= 1.0);
    let holder = hold(&sw, 3000);
    wait_in_flight(&sw, 1).await;
    assert_eq!(send(&sw, "GET", "/news", "never-wrote").await, (503, None, true));
    holder.await.unwrap();
    assert_eq!(cloud.hits(), 1, "only the unpinned reader spilled");
}

/// A client socket with a small receive buffer, so the kernel stops
/// taking bytes for it soon.
async fn small_window_client(addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

/// The stalled response is seen in flight, then aborted: slot and connection released.
async fn in_flight_then_released(sw: &Spillway) {
    eventually(Duration::from_secs(3), "the response to be in flight", || async {
        sw.status().await["gates"]["app"]["in_flight"] == 1
    })
    .await;
    eventually(Duration::from_secs(6), "the stalled response to be aborted", || async {
        let s = sw.status().await;
        s["gates"]["app"]["in_flight"] == 0 && s["connections"] == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_and_its_slot_released() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&support::simple_config(&[&a], "client_send_timeout = \"1s\"", "")).await;
    let mut tcp = small_window_client(sw.addr("web")).await;
    tcp.write_all(b"GET /big?bytes=200000000 HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut first = [0u8; 512];
    let n = tcp.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    // The client reads nothing more. Within the timeout plus the
    // watchdog's tick the connection is aborted and everything released.
    in_flight_then_released(&sw).await;
    let m = reqwest_free_metrics(&sw).await;
    assert!(m.contains("kind=\"client_send_timeout\""), "no client_send_timeout counted");
    // What the client still finds in its buffers ends; the socket is closed.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was not closed");
    assert!(rest.len() < 200_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_with_a_zero_window_is_cut_off() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&support::simple_config(&[&a], "client_send_timeout = \"1s\"", "")).await;
    // A window of 0: the client accepts headers but no body byte.
    let mut builder = h2::client::Builder::new();
    builder.initial_window_size(0);
    let send = h2_client(sw.addr("web"), builder).await;
    let mut ready = send.ready().await.unwrap();
    let (resp, _) = ready.send_request(Request::get("http://a/big?bytes=1000000").body(()).unwrap(), true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    in_flight_then_released(&sw).await;
    let mut body = resp.into_body();
    let end = tokio::time::timeout(Duration::from_secs(3), body.data()).await.expect("the stream ended");
    assert!(!matches!(end, Some(Ok(ref d)) if d.len() > 1000), "no body was sent: {end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_closes_although_the_client_pings() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&support::simple_config(&[&a], "idle_timeout = \"1s\"", "")).await;
    let tcp = TcpStream::connect(sw.addr("web")).await.unwrap();
    let (send, mut conn) = h2::client::handshake(tcp).await.unwrap();
    let mut pings = conn.ping_pong().expect("a ping handle");
    let mut ready = send.ready().await.unwrap();
    let (resp, _) = ready.send_request(Request::get("http://a/").body(()).unwrap(), true).unwrap();
    let driver = tokio::spawn(conn);
    assert_eq!(resp.await.unwrap().status(), StatusCode::OK);
    let pinger = tokio::spawn(async move {
        loop {
            if pings.ping(h2::Ping::opaque()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let closed = tokio::time::timeout(Duration::from_secs(5), driver).await;
    assert!(closed.is_ok(), "PINGs every 200 ms kept an idle connection open past idle_timeout");
    pinger.abort();
    eventually(Duration::from_secs(3), "no connection left", || async { sw.status().await["connections"] == 0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_resets_spend_the_budget_and_get_goaway() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&support::simple_config(&[&a], "max_cancelled_streams = 10", "")).await;
    let tcp = TcpStream::connect(sw.addr("web")).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(conn);
    let mut send = send;
    let mut reset = 0;
    for _ in 0..200 {
        let Ok(ready) = send.clone().ready().await else { break };
        send = ready;
        let Ok((resp, _)) = send.send_request(Request::get("http://a/?delay_ms=300").body(()).unwrap(), true) else {
            break;
        };
        // Let it reach the origin, then cancel it.
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(resp);
        reset += 1;
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), driver).await;
    let ended = ended.unwrap_or_else(|_| panic!("the connection was never closed after {reset} cancelled streams"));
    let err = ended.unwrap().expect_err("the connection ended with a GOAWAY error");
    assert!(err.is_go_away(), "{err:?}");
    assert_eq!(err.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{err:?}");
    assert!(reset < 200, "all 200 cancels were accepted");
    assert!(a.hits() <= 40, "the origin got {} cancelled requests", a.hits());
    let m = reqwest_free_metrics(&sw).await;
    assert!(m.contains("kind=\"reset_flood\""), "no reset_flood error counted");
}

async fn reqwest_free_metrics(sw: &Spillway) -> String {
    support::get(&sw.admin_url("/metrics")).await.unwrap().text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_keep_their_permits_and_close_when_idle() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let a = Origin::start("a").await;
    let sw = Spillway::start(&support::simple_config(
        &[&a],
        "max_tunnels = 1\ntunnel_idle_timeout = \"1s\"\nidle_timeout = \"60s\"",
        "",
    ))
    .await;
    let url = format!("ws://{}/ws", sw.addr("web"));
    let (mut ws, resp) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello from a"));
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("echo: hi"));
    // The tunnel still counts as an open connection, and holds the only tunnel permit.
    assert_eq!(sw.status().await["connections"], 1);
    let second = tokio_tungstenite::connect_async(url.as_str()).await;
    match second {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("a second tunnel over max_tunnels: {other:?}"),
    }
    // Silent for tunnel_idle_timeout: closed by Spillway.
    let ended = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("the idle tunnel was not closed");
    assert!(!matches!(ended, Some(Ok(Message::Text(_)))), "{ended:?}");
    eventually(Duration::from_secs(3), "the tunnel's connection to be released", || async {
        sw.status().await["connections"] == 0
    })
    .await;
    let m = reqwest_free_metrics(&sw).await;
    assert!(m.contains("spillway_tunnels_closed_total{reason=\"idle\"} 1"), "{m}");
    // A permit came back: a new tunnel opens.
    let (mut again, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    assert_eq!(again.next().await.unwrap().unwrap(), Message::text("hello from a"));
    again.send(Message::text("again")).await.unwrap();
    assert_eq!(again.next().await.unwrap().unwrap(), Message::text("echo: again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_websocket_get_is_tunnelled() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&support::simple_config(&[&a], "", "")).await;
    let h2c = support::client::raw(
        sw.addr("web"),
        b"GET /headers HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(h2c.starts_with("HTTP/1.1 200"), "{h2c}");
    let seen = body_json(&h2c);
    assert_eq!(seen["headers"]["upgrade"], serde_json::Value::Null, "an h2c upgrade token reached the origin: {seen}");
    assert_eq!(seen["headers"]["http2-settings"], serde_json::Value::Null);
    let post = support::client::raw(
        sw.addr("web"),
        b"POST /headers HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 200"), "a POST is not a WebSocket handshake: {post}");
    assert_eq!(body_json(&post)["headers"]["upgrade"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_handshake_cannot_smuggle_h2c() {
    use support::wire::{Reply, WireOrigin};
    // An origin that would happily switch to h2c.
    let origin = WireOrigin::start(|_, _| {
        Reply::keep(&b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"[..])
    })
    .await;
    let config = format!(
        "{ADMIN}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n[pools.app]\nendpoints = [\"{}\"]\n\n[[route]]\nprimary = \"app\"\n",
        origin.endpoint()
    );
    let sw = Spillway::start(&config).await;
    let answer = support::client::raw(
        sw.addr("web"),
        b"GET /h2c HTTP/1.1\r\nHost: x\r\nUpgrade: h2c, websocket\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 502"), "a 101 to h2c was followed: {answer}");
    let head = origin.seen()[0].head.to_ascii_lowercase();
    assert!(head.contains("upgrade: websocket\r\n"), "{head}");
    assert!(!head.contains("upgrade: h2c") && !head.contains("http2-settings"), "h2c reached the origin: {head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_that_never_asks_still_idles_out() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&support::simple_config(&[&a], "idle_timeout = \"1s\"", "")).await;
    let mut tcp = TcpStream::connect(sw.addr("web")).await.unwrap();
    // The preface and an empty SETTINGS, then only PINGs: no request ever.
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let pinger = async {
        loop {
            let ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00spillway";
            if tcp.write_all(ping).await.is_err() {
                return;
            }
            let mut sink = [0u8; 4096];
            match tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut sink)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    };
    let closed = tokio::time::timeout(Duration::from_secs(6), pinger).await;
    assert!(closed.is_ok(), "a request-less HTTP/2 connection kept open by PINGs");
    eventually(Duration::from_secs(3), "no connection left", || async { sw.status().await["connections"] == 0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reset_at_the_upstream_keeps_its_slot_while_the_origin_works() {
    let a = Origin::start("a").await;
    let spill =
        "\n[spill]\nmode = \"static\"\nmax_in_flight = 2\nmin_limit = 1\nqueue_timeout = \"0s\"\ntick = \"50ms\"\n";
    let sw = Spillway::start(&(support::simple_config(&[&a], "", "") + spill)).await;
    // Warm: the pool learns that requests take about 800 ms.
    let url = sw.url("web", "/slow?delay_ms=800");
    let warm = futures_util::future::join_all((0..2).map(|_| request(Method::GET, &url, vec![], b""))).await;
    assert!(warm.iter().all(|r| r.as_ref().is_ok_and(|r| r.status == 200)));
    tokio::time::sleep(Duration::from_millis(200)).await; // a gate tick takes the window in
                                                          // Now reset requests right after they reached the origin, faster than it answers.
    let tcp = TcpStream::connect(sw.addr("web")).await.unwrap();
    let (mut send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watch = {
        let (peak, state) = (peak.clone(), a.state.clone());
        tokio::spawn(async move {
            loop {
                let now = state.in_flight.load(std::sync::atomic::Ordering::SeqCst);
                peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut refused = 0;
    for _ in 0..8 {
        send = send.ready().await.unwrap();
        let (resp, _) = send.send_request(Request::get("http://a/slow?delay_ms=800").body(()).unwrap(), true).unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        // A 503 (over the ceiling) comes back at once; anything else is reset.
        match tokio::time::timeout(Duration::from_millis(1), resp).await {
            Ok(Ok(r)) if r.status() == StatusCode::SERVICE_UNAVAILABLE => refused += 1,
            _ => {}
        }
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    watch.abort();
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!(peak <= 2, "cancelled requests pushed the origin to {peak} at once past max_in_flight = 2");
    assert!(refused >= 4, "only {refused} of 8 were refused at the ceiling");
    let m = reqwest_free_metrics(&sw).await;
    assert!(m.contains("spillway_cancelled_at_upstream_total{pool=\"app\"}"), "not counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reset_at_the_upstream_finishes_there_and_gives_back_its_slot_and_connection() {
    use std::sync::atomic::Ordering::SeqCst;
    let a = Origin::start("a").await;
    let spill =
        "\n[spill]\nmode = \"static\"\nmax_in_flight = 1\nmin_limit = 1\nqueue_timeout = \"0s\"\ntick = \"50ms\"\n";
    let sw = Spillway::start(&(support::simple_config(&[&a], "", "") + spill)).await;
    let warm = request(Method::GET, &sw.url("web", "/"), vec![], b"").await.unwrap();
    assert_eq!(warm.status, 200);
    let tcp = TcpStream::connect(sw.addr("web")).await.unwrap();
    let (mut send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let (conns0, probes0) = (a.state.connections.load(SeqCst), a.state.probes.load(SeqCst));
    let in_flight = || async { sw.status().await["gates"]["app"]["in_flight"].as_u64() };
    for n in 0..6 {
        send = send.ready().await.unwrap();
        let (resp, _) = send.send_request(Request::get("http://a/slow?delay_ms=400").body(()).unwrap(), true).unwrap();
        eventually(Duration::from_secs(3), "the request at the origin", || async {
            a.state.in_flight.load(SeqCst) == 1
        })
        .await;
        drop(resp); // RST_STREAM(CANCEL)
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(in_flight().await, Some(1), "request {n}: the slot was given back while the origin still worked");
        eventually(Duration::from_secs(3), "the origin answered", || async { a.state.in_flight.load(SeqCst) == 0 })
            .await;
        // Given back at the answer, not after a guessed time.
        eventually(Duration::from_millis(300), "the slot given back", || async { in_flight().await == Some(0) }).await;
    }
    // Each answer was read to its end and its connection pooled again: no
    // new connection per cancelled request (health probes open their own).
    let new = a.state.connections.load(SeqCst) - conns0 - (a.state.probes.load(SeqCst) - probes0);
    assert!(new <= 1, "{new} new upstream connections for 6 cancelled requests");
    let m = reqwest_free_metrics(&sw).await;
    assert!(m.contains("spillway_upstream_abandoned_total{outcome=\"reused\"} 6"), "{m}");
    assert!(m.contains("spillway_cancelled_at_upstream_total{pool=\"app\"} 6"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_older_than_max_connection_age_is_closed_between_requests() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&support::simple_config(&[&a], "max_connection_age = \"1s\"", "")).await;
    let mut tcp = TcpStream::connect(sw.addr("web")).await.unwrap();
    let opened = tokio::time::Instant::now();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Keep-alive, no idle timeout near: only the age closes it.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a connection past max_connection_age stayed open");
    assert!(opened.elapsed() >= Duration::from_secs(1), "closed before its age");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_serving_a_few_requests_a_second_is_not_idle() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&support::simple_config(&[&a], "idle_timeout = \"1s\"", "")).await;
    let mut send = h2_client(sw.addr("web"), h2::client::Builder::new()).await;
    // A request every 150 ms for 4 s (four idle timeouts): each takes a few
    // milliseconds, so at almost every instant no stream is open.
    let until = std::time::Instant::now() + Duration::from_secs(4);
    let mut served = 0;
    while std::time::Instant::now() < until {
        let (status, _) = h2_get(&mut send, Request::get("http://a/headers").body(()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "request {served} on the same connection");
        served += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(served >= 20, "{served}");
    assert_eq!(sw.status().await["connections"], 1, "one connection carried them all");
}
