//! In-process origin servers (hyper, HTTP/1.1) on 127.0.0.1:0.
//!
//! Every origin answers every path the same way, steered by the query:
//! `delay_ms=N` waits before the response headers, `status=N` sets the
//! status, `bytes=N` streams N bytes instead of the echo document, `hop=1`
//! adds hop-by-hop response headers. The echo
//! document (JSON) says what arrived: method, path, version, headers, body
//! length, TLS server name. `/health` answers 200 or 503 as set by the test,
//! with `x-db-role` and `x-replica-lag` when set, and an `Upgrade: websocket` request
//! becomes a WebSocket echo. Writes (methods other than GET/HEAD) are counted.
//! An origin can be killed mid-test: it stops accepting and drops every
//! open connection.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role, Message};
use tokio_tungstenite::WebSocketStream;

pub type OriginBody = BoxBody<Bytes, Infallible>;

/// What an origin has seen, shared with its connection tasks.
#[derive(Default)]
pub struct OriginState {
    pub name: String,
    /// Requests other than health probes.
    pub hits: AtomicUsize,
    pub probes: AtomicUsize,
    pub connections: AtomicUsize,
    pub healthy: AtomicBool,
    /// When non-zero, every request other than a probe gets this status.
    pub fail_with: AtomicU16,
    /// Requests whose handler is running (headers not yet sent).
    pub in_flight: AtomicUsize,
    /// Sent as `x-db-role` on `/health` answers when set.
    pub role: std::sync::Mutex<Option<&'static str>>,
    /// Non-probe requests by method (`POST`: the writes that reached it).
    pub writes: AtomicUsize,
    /// Sent as `x-replica-lag` (seconds) on `/health` answers when set.
    pub lag: std::sync::Mutex<Option<String>>,
}

pub struct Origin {
    pub addr: SocketAddr,
    pub state: Arc<OriginState>,
    stop: watch::Sender<bool>,
}

impl Origin {
    /// A plain HTTP/1.1 origin.
    pub async fn start(name: &str) -> Origin {
        Origin::start_with(name, None).await
    }

    /// An HTTPS origin presenting the certificate of `tls`.
    pub async fn start_tls(name: &str, tls: Arc<rustls::ServerConfig>) -> Origin {
        Origin::start_with(name, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_with(name: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state =
            Arc::new(OriginState { name: name.to_string(), healthy: AtomicBool::new(true), ..Default::default() });
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(accept_loop(listener, state.clone(), tls, stop_rx));
        Origin { addr, state, stop }
    }

    /// `127.0.0.1:port`, as written in a pool's endpoints.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(SeqCst)
    }

    pub fn probes(&self) -> usize {
        self.state.probes.load(SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(SeqCst)
    }

    /// The database role `/health` reports in `x-db-role` (`None`: no header).
    pub fn set_role(&self, role: Option<&'static str>) {
        *self.state.role.lock().unwrap() = role;
    }

    /// The replica lag `/health` reports in `x-replica-lag` (`None`: no header).
    pub fn set_lag(&self, secs: Option<f64>) {
        *self.state.lag.lock().unwrap() = secs.map(|s| s.to_string());
    }

    /// Requests other than GET/HEAD that reached this origin.
    pub fn writes(&self) -> usize {
        self.state.writes.load(SeqCst)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, SeqCst);
    }

    /// Makes every request (not probes) fail with `status`; `None` heals.
    pub fn set_failing(&self, status: Option<u16>) {
        self.state.fail_with.store(status.unwrap_or(0), SeqCst);
    }

    /// Stops accepting and drops every open connection (as a crash would).
    pub fn kill(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<OriginState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r { Ok(pair) => pair, Err(_) => continue },
        };
        state.connections.fetch_add(1, SeqCst);
        let state = state.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(tcp, state, None, stop).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        let sni = stream.get_ref().1.server_name().map(str::to_string);
                        serve(stream, state, sni, stop).await;
                    }
                }
            }
        });
    }
}

async fn serve<I>(io: I, state: Arc<OriginState>, sni: Option<String>, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let sni = Arc::new(sni);
    let svc = service_fn(move |req| handle(state.clone(), sni.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc).with_upgrades();
    tokio::select! {
        _ = conn => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// Decrements `in_flight` when the handler finishes or is dropped.
struct InFlight(Arc<OriginState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, SeqCst);
    }
}

async fn handle(
    state: Arc<OriginState>,
    sni: Arc<Option<String>>,
    req: Request<Incoming>,
) -> Result<Response<OriginBody>, Infallible> {
    if req.uri().path() == "/health" {
        state.probes.fetch_add(1, SeqCst);
        let status = if state.healthy.load(SeqCst) { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        let mut resp = respond(status, &state, Full::new(Bytes::from_static(b"health\n")).boxed());
        if let Some(role) = *state.role.lock().unwrap() {
            resp.headers_mut().insert("x-db-role", http::HeaderValue::from_static(role));
        }
        if let Some(lag) = state.lag.lock().unwrap().as_deref() {
            resp.headers_mut().insert("x-replica-lag", lag.parse().unwrap());
        }
        return Ok(resp);
    }
    state.hits.fetch_add(1, SeqCst);
    if !matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
        state.writes.fetch_add(1, SeqCst);
    }
    if let Ok(status) = StatusCode::from_u16(state.fail_with.load(SeqCst)) {
        return Ok(respond(status, &state, Full::new(Bytes::from_static(b"failing\n")).boxed()));
    }
    if is_websocket(&req) {
        return Ok(websocket(state, req));
    }
    state.in_flight.fetch_add(1, SeqCst);
    let _in_flight = InFlight(state.clone());
    let q = Query::parse(req.uri().query());
    if let Some(ms) = q.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = q.status.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK);
    if let Some(n) = q.bytes {
        drain(req.into_body()).await;
        return Ok(respond(status, &state, Repeat { left: n }.boxed()));
    }
    let echo = echo(&state, &sni, req).await;
    let mut resp = respond(status, &state, Full::new(Bytes::from(echo.to_string())).boxed());
    resp.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    if q.hop {
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, "x-hop".parse().unwrap());
        h.insert("x-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::PROXY_AUTHENTICATE, "Basic".parse().unwrap());
        h.insert("x-end-to-end", "1".parse().unwrap());
    }
    Ok(resp)
}

fn respond(status: StatusCode, state: &OriginState, body: OriginBody) -> Response<OriginBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert("x-origin", state.name.parse().unwrap());
    resp
}

/// The echo document: what the origin received.
async fn echo(state: &OriginState, sni: &Option<String>, req: Request<Incoming>) -> serde_json::Value {
    let (parts, body) = req.into_parts();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body_len = drain(body).await;
    serde_json::json!({
        "origin": state.name,
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_len": body_len,
        "sni": sni,
    })
}

/// Reads a body to its end without keeping it; returns its length.
async fn drain(mut body: Incoming) -> u64 {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => break,
        }
    }
    n
}

#[derive(Default)]
struct Query {
    delay_ms: Option<u64>,
    status: Option<u16>,
    bytes: Option<u64>,
    /// Add hop-by-hop headers to the response.
    hop: bool,
}

impl Query {
    fn parse(q: Option<&str>) -> Query {
        let mut out = Query::default();
        for pair in q.unwrap_or("").split('&') {
            let Some((k, v)) = pair.split_once('=') else { continue };
            match k {
                "delay_ms" => out.delay_ms = v.parse().ok(),
                "status" => out.status = v.parse().ok(),
                "bytes" => out.bytes = v.parse().ok(),
                "hop" => out.hop = v == "1",
                _ => {}
            }
        }
        out
    }
}

/// A body of `left` bytes produced on the fly in 64 KiB chunks.
pub struct Repeat {
    pub left: u64,
}

const CHUNK: usize = 64 * 1024;
static ZEROS: [u8; CHUNK] = [b'x'; CHUNK];

impl http_body::Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

fn is_websocket<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Answers 101 and echoes every message, after a greeting from the origin.
fn websocket(state: Arc<OriginState>, mut req: Request<Incoming>) -> Response<OriginBody> {
    let Some(key) = req.headers().get("sec-websocket-key") else {
        return respond(StatusCode::BAD_REQUEST, &state, Full::new(Bytes::from_static(b"no key\n")).boxed());
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let name = state.name.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        if ws.send(Message::text(format!("hello from {name}"))).await.is_err() {
            return;
        }
        while let Some(Ok(msg)) = ws.next().await {
            let reply = match msg {
                Message::Text(t) => Message::text(format!("echo: {}", t.as_str())),
                Message::Binary(b) => Message::binary(b),
                Message::Close(_) => break,
                _ => continue,
            };
            if ws.send(reply).await.is_err() {
                return;
            }
        }
        let _ = ws.close(None).await;
    });
    let mut resp = respond(StatusCode::SWITCHING_PROTOCOLS, &state, Full::new(Bytes::new()).boxed());
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, "websocket".parse().unwrap());
    h.insert(header::CONNECTION, "upgrade".parse().unwrap());
    h.insert("sec-websocket-accept", accept.parse().unwrap());
    resp
}
