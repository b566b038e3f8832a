//! The client's exchanges against an in-memory upstream (`tokio::io::duplex`):
//! what the upstream received, what the caller got, and whether the
//! connection went back to the idle list. Time is paused where it matters.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::upstream::connector::UpstreamIo;
use crate::upstream::endpoint::Endpoint;
use crate::upstream::h1;

use super::wire::Wire;
use super::{Conn, RequestBody, SendFailure, Timeouts, UpstreamBody, UpstreamError};

const TIMEOUTS: Timeouts = Timeouts { upload: Duration::from_secs(5), response: Duration::from_secs(3) };

/// A connection to an in-memory upstream; `window` is how many bytes the
/// pipe holds before a write has to wait.
fn conn(endpoint: &Arc<Endpoint>, reused: bool, window: usize) -> (Conn, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(window);
    let wire = Wire::new(UpstreamIo::Duplex(ours));
    (Conn { wire, transport: 1, max_idle: 4, endpoint: endpoint.clone(), reused }, theirs)
}

fn endpoint() -> Arc<Endpoint> {
    Arc::new(Endpoint::new("upstream.test:80", false).unwrap())
}

fn get(path: &str) -> Request<RequestBody> {
    Request::get(path).header("host", "upstream.test").body(RequestBody::Empty).unwrap()
}

async fn send(conn: Conn, req: Request<RequestBody>) -> Result<http::Response<UpstreamBody>, SendFailure> {
    conn.send(req, TIMEOUTS, |parts, out| h1::write_plain_headers(out, &parts.headers), None).await
}

/// What the upstream reads of the request: up to the end of its head.
async fn read_head(peer: &mut DuplexStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(peer.read(&mut byte).await.unwrap(), 1, "request head cut short: {got:?}");
        got.push(byte[0]);
    }
    got
}

async fn body_of(body: UpstreamBody) -> Result<Bytes, UpstreamError> {
    Ok(body.collect().await?.to_bytes())
}

#[tokio::test]
async fn a_whole_answer_gives_the_connection_back() {
    let ep = endpoint();
    let (c, mut peer) = conn(&ep, false, 4096);
    let upstream = async {
        assert_eq!(read_head(&mut peer).await, b"GET /a?b HTTP/1.1\r\nhost: upstream.test\r\n\r\n");
        peer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await.unwrap();
        peer
    };
    let (resp, _peer) = tokio::join!(send(c, get("http://upstream.test/a?b")), upstream);
    let resp = resp.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_of(resp.into_body()).await.unwrap(), "hello");
    assert_eq!(ep.idle.len(), 1, "read to its end: reused");
}

#[tokio::test]
async fn a_reused_connection_closed_before_the_request_hands_it_back() {
    let ep = endpoint();
    let (c, peer) = conn(&ep, true, 4096);
    drop(peer); // The upstream's idle timeout fired just now.
    let again = match send(c, get("/race")).await.unwrap_err() {
        SendFailure::NotSent(again, UpstreamError::Write(_)) => again,
        other => panic!("expected NotSent, got {other:?}"),
    };
    // Sent again, byte for byte, on a fresh connection.
    let (c, mut peer) = conn(&ep, false, 4096);
    let upstream = async {
        assert_eq!(read_head(&mut peer).await, b"GET /race HTTP/1.1\r\nhost: upstream.test\r\n\r\n");
        peer.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
        peer
    };
    let (resp, _peer) = tokio::join!(c.resend(again, TIMEOUTS, None), upstream);
    assert_eq!(resp.unwrap().status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_reused_connection_closed_without_an_answer_hands_the_request_back_a_fresh_one_does_not() {
    for reused in [true, false] {
        let ep = endpoint();
        let (c, mut peer) = conn(&ep, reused, 4096);
        let upstream = async move {
            read_head(&mut peer).await;
            drop(peer); // Read the request, closed without a byte of answer.
        };
        let (sent, ()) = tokio::join!(send(c, get("/race")), upstream);
        match (reused, sent.unwrap_err()) {
            (true, SendFailure::NoResponse(_, UpstreamError::ClosedBeforeHead)) => {}
            (false, SendFailure::Failed(UpstreamError::ClosedBeforeHead)) => {}
            (_, other) => panic!("reused {reused}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_answer_mid_upload_is_returned_and_the_connection_is_not_reused() {
    let ep = endpoint();
    // The pipe holds 1 KiB: the 64 KiB upload cannot go out whole before
    // the upstream answers.
    let (c, mut peer) = conn(&ep, false, 1024);
    let req = Request::post("/upload").body(RequestBody::from(Bytes::from(vec![b'x'; 64 * 1024]))).unwrap();
    let upstream = async {
        let head = read_head(&mut peer).await;
        assert!(head.ends_with(b"content-length: 65536\r\n\r\n"), "{:?}", String::from_utf8_lossy(&head));
        peer.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!").await.unwrap();
        peer
    };
    let (resp, peer) = tokio::join!(send(c, req), upstream);
    let resp = resp.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The upload keeps going while the body is read; the upstream drains it.
    let drain = tokio::spawn(async move {
        let mut peer = peer;
        let mut sink = Vec::new();
        let _ = peer.read_to_end(&mut sink).await;
    });
    assert_eq!(body_of(resp.into_body()).await.unwrap(), "big!");
    assert_eq!(ep.idle.len(), 0, "answered before the request was out: never reused");
    drain.abort();
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stalls_is_cut_after_the_response_timeout() {
    let ep = endpoint();
    let (c, mut peer) = conn(&ep, false, 4096);
    let upstream = async {
        read_head(&mut peer).await;
        peer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await.unwrap();
        peer // kept open, silent
    };
    let (resp, _peer) = tokio::join!(send(c, get("/slow")), upstream);
    let mut body = resp.unwrap().into_body();
    assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "abc");
    let started = tokio::time::Instant::now();
    let err = body.frame().await.unwrap().unwrap_err();
    assert!(matches!(err, UpstreamError::BodyStalled(t) if t == TIMEOUTS.response), "{err:?}");
    assert_eq!(started.elapsed(), TIMEOUTS.response);
    assert!(body.is_end_stream());
    assert_eq!(ep.idle.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn no_head_within_the_response_timeout_is_a_timeout() {
    let ep = endpoint();
    let (c, mut peer) = conn(&ep, false, 4096);
    let upstream = async {
        read_head(&mut peer).await;
        peer
    };
    let started = tokio::time::Instant::now();
    let (sent, _peer) = tokio::join!(send(c, get("/silent")), upstream);
    match sent.unwrap_err() {
        SendFailure::Failed(UpstreamError::ResponseTimeout(t)) => assert_eq!(t, TIMEOUTS.response),
        other => panic!("{other:?}"),
    }
    assert_eq!(started.elapsed(), TIMEOUTS.response);
}

#[tokio::test]
async fn a_close_delimited_body_ends_with_the_connection() {
    let ep = endpoint();
    let (c, mut peer) = conn(&ep, false, 4096);
    let upstream = async move {
        read_head(&mut peer).await;
        peer.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello ").await.unwrap();
        tokio::task::yield_now().await;
        peer.write_all(b"world").await.unwrap();
        drop(peer);
    };
    let (resp, ()) = tokio::join!(send(c, get("/stream")), upstream);
    let resp = resp.unwrap();
    assert_eq!(resp.body().size_hint().exact(), None);
    assert_eq!(body_of(resp.into_body()).await.unwrap(), "hello world");
    assert_eq!(ep.idle.len(), 0, "the body ended with the connection");
}

#[tokio::test]
async fn interim_answers_are_skipped_before_the_final_one() {
    let ep = endpoint();
    let (c, mut peer) = conn(&ep, false, 4096);
    let upstream = async {
        read_head(&mut peer).await;
        peer.write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
            .await
            .unwrap();
        tokio::task::yield_now().await;
        peer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: 1\r\n\r\nok").await.unwrap();
        peer
    };
    let (resp, _peer) = tokio::join!(send(c, get("/hints")), upstream);
    let resp = resp.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-final"], "1");
    assert!(!resp.headers().contains_key("link"));
    assert_eq!(body_of(resp.into_body()).await.unwrap(), "ok");
    assert_eq!(ep.idle.len(), 1);
}

#[tokio::test]
async fn a_switch_is_the_final_answer_and_never_pooled() {
    let ep = endpoint();
    let (c, mut peer) = conn(&ep, false, 4096);
    let upstream = async {
        read_head(&mut peer).await;
        peer.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nFRAME")
            .await
            .unwrap();
        peer
    };
    // A request that asked for no upgrade: the caller decides (the proxy
    // answers 502); the client hands over the 101 and its connection.
    let (resp, _peer) = tokio::join!(send(c, get("/no-upgrade")), upstream);
    let resp = resp.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["upgrade"], "websocket");
    let body = resp.into_body();
    assert!(body.is_end_stream());
    let upgraded = body.into_upgraded().expect("the upgraded connection");
    assert_eq!(upgraded.buffered, "FRAME");
    assert_eq!(ep.idle.len(), 0);
    // Dropped without being taken over: closed, not pooled either.
    let (c, mut peer) = conn(&ep, false, 4096);
    let upstream = async {
        read_head(&mut peer).await;
        peer.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n").await.unwrap();
        peer
    };
    let (resp, _peer) = tokio::join!(send(c, get("/no-upgrade")), upstream);
    drop(resp.unwrap());
    assert_eq!(ep.idle.len(), 0);
}

#[tokio::test]
async fn a_coding_that_cannot_be_forwarded_sends_nothing_and_keeps_the_connection() {
    let ep = endpoint();
    let (c, mut peer) = conn(&ep, false, 4096);
    let req = Request::post("/up")
        .header("host", "upstream.test")
        .header("transfer-encoding", "gzip, chunked")
        .body(RequestBody::Full(Bytes::from_static(b"zipped")))
        .unwrap();
    match send(c, req).await.unwrap_err() {
        SendFailure::Failed(UpstreamError::RequestCoding(h1::RequestCodingError::Unsupported(coding))) => {
            assert_eq!(coding, "gzip")
        }
        other => panic!("expected a refused coding, got {other:?}"),
    }
    assert_eq!(ep.idle.len(), 1, "nothing was written: the connection stays usable");
    let mut byte = [0u8; 1];
    let nothing = tokio::time::timeout(Duration::from_millis(50), peer.read(&mut byte)).await;
    assert!(nothing.is_err(), "the upstream received no byte");
}

/// Counts the slots handed over by cancelled exchanges that are still held.
#[derive(Default)]
struct Slots(Arc<std::sync::atomic::AtomicUsize>);

struct Held(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl super::Abandon for Slots {
    fn hand_over(&self) -> Box<dyn Send> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::new(Held(self.0.clone()))
    }
}

impl Slots {
    fn held(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Sends `req` and drops the exchange once the upstream has read its head
/// (the client went away): the upstream's half of the pipe comes back.
async fn send_and_cancel(c: Conn, req: Request<RequestBody>, slots: &Slots, mut peer: DuplexStream) -> DuplexStream {
    let exchange = c.send(req, TIMEOUTS, |parts, out| h1::write_plain_headers(out, &parts.headers), Some(slots));
    tokio::select! {
        _ = exchange => panic!("answered before the upstream said anything"),
        _ = read_head(&mut peer) => {}
    }
    peer
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never: {what}");
}

#[tokio::test]
async fn a_cancelled_exchange_keeps_its_slot_until_the_answer_then_pools_its_connection() {
    let ep = endpoint();
    let slots = Slots::default();
    let (c, peer) = conn(&ep, false, 4096);
    let mut peer = send_and_cancel(c, get("/slow"), &slots, peer).await;
    assert_eq!(slots.held(), 1, "the slot went with the exchange");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(slots.held(), 1, "held while the upstream works");
    peer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(slots.held(), 1, "held while the body comes");
    peer.write_all(b"lo").await.unwrap();
    until("the slot given back", || slots.held() == 0).await;
    until("the connection pooled", || ep.idle.len() == 1).await;
}

#[tokio::test]
async fn a_cancelled_exchange_answered_with_close_gives_its_slot_back_and_keeps_no_connection() {
    let ep = endpoint();
    let slots = Slots::default();
    let (c, peer) = conn(&ep, false, 4096);
    let mut peer = send_and_cancel(c, get("/bye"), &slots, peer).await;
    assert_eq!(slots.held(), 1);
    peer.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok").await.unwrap();
    until("the slot given back", || slots.held() == 0).await;
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(2), peer.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    assert_eq!(ep.idle.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_exchange_with_no_answer_gives_its_slot_back_at_the_response_timeout() {
    let ep = endpoint();
    let slots = Slots::default();
    let (c, peer) = conn(&ep, false, 4096);
    let _peer = send_and_cancel(c, get("/never"), &slots, peer).await;
    tokio::time::sleep(TIMEOUTS.response - Duration::from_millis(100)).await;
    assert_eq!(slots.held(), 1, "held while the upstream may still answer");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(slots.held(), 0, "given back at the response timeout");
    assert_eq!(ep.idle.len(), 0);
}

#[tokio::test]
async fn a_cancelled_exchange_with_a_long_body_closes_its_connection() {
    let ep = endpoint();
    let slots = Slots::default();
    let (c, peer) = conn(&ep, false, 4096);
    let mut peer = send_and_cancel(c, get("/big"), &slots, peer).await;
    assert_eq!(slots.held(), 1, "the slot went with the exchange");
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", super::abandoned::DRAIN_LIMIT + 1);
    peer.write_all(head.as_bytes()).await.unwrap();
    until("the slot given back", || slots.held() == 0).await;
    // Not read: the upstream's side sees the close.
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(2), peer.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    assert_eq!(ep.idle.len(), 0);
}

#[tokio::test]
async fn a_cancelled_exchange_still_uploading_is_closed_and_keeps_no_slot() {
    let ep = endpoint();
    let slots = Slots::default();
    let (c, mut peer) = conn(&ep, false, 1024);
    let req = Request::post("/upload").body(RequestBody::from(Bytes::from(vec![b'x'; 64 * 1024]))).unwrap();
    let exchange = c.send(req, TIMEOUTS, |parts, out| h1::write_plain_headers(out, &parts.headers), Some(&slots));
    tokio::select! {
        _ = exchange => panic!("answered"),
        _ = read_head(&mut peer) => {}
    }
    assert_eq!(slots.held(), 0, "nothing handed over");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), peer.read_to_end(&mut rest)).await;
    assert!(read.is_ok_and(|r| r.is_ok()), "the connection was closed");
    assert!(rest.len() < 64 * 1024, "the upload was cut");
}
