//! Accept loops: one per configured listener. Each connection is served by
//! hyper's auto builder (HTTP/1.1 with upgrades, HTTP/2 by ALPN or prior
//! knowledge), with header-size/count limits, a per-listener connection
//! cap, and a watchdog task that closes it: gracefully when idle (no
//! request open, and none started since its last look for HTTP/2 — PINGs do
//! not count; for HTTP/1.1 no byte moving), past `max_connection_age` or on drain; abortively when an
//! HTTP/1.1 request head has not ended `header_read_timeout` after its
//! first byte (or after the connection opened, for the first request:
//! slowloris), when the client has taken no byte for `client_send_timeout`
//! while Spillway had something to send, or when a graceful close has not
//! finished within the drain grace.
//!
//! The header read timeout is the watchdog's, not hyper's: hyper arms its
//! timer as soon as a kept-alive connection waits for the next request, so
//! it closed every idle keep-alive connection at `header_read_timeout`
//! whatever `idle_timeout` said, and it cost a boxed timer per request.
//!
//! The TLS acceptor is looked up in the current runtime snapshot at every
//! accept, so a reload rotates certificates without a restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::DataPlane;
use crate::config::ListenerConfig;
use crate::runtime::ListenerRuntime;
use crate::telemetry::catalog;

use super::conn::Close;
use super::idle::{Activity, ByteCounters, IdleIo};
use super::{service, ConnInfo};

const OVER_CAPACITY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// A running accept loop.
pub(crate) struct ListenerTask {
    pub(crate) name: String,
    pub(crate) configured: SocketAddr,
    pub(crate) local: SocketAddr,
    /// The listening socket (a duplicate), for a successor process and for
    /// a reload that moves the address to another listener name.
    pub(crate) socket: socket2::Socket,
    /// `max_connections` and `max_tunnels`, resized in place by a reload.
    pub(crate) caps: Caps,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A listener's connection and tunnel caps. They belong to the listener's
/// name, not to one accept loop: a reload resizes them in place, and a new
/// address under the same name keeps them, so connections already open
/// keep counting against the cap.
#[derive(Clone)]
pub(crate) struct Caps {
    connections: Arc<Cap>,
    tunnels: Arc<Cap>,
}

impl Caps {
    pub(crate) fn new(config: &ListenerConfig) -> Caps {
        Caps {
            connections: Arc::new(Cap::new(config.max_connections)),
            tunnels: Arc::new(Cap::new(config.max_tunnels)),
        }
    }

    /// Applies a reloaded `max_connections` / `max_tunnels`.
    pub(crate) fn resize(&self, config: &ListenerConfig) {
        self.connections.resize(config.max_connections);
        self.tunnels.resize(config.max_tunnels);
    }

    /// The configured sizes (`max_connections`, `max_tunnels`).
    pub(crate) fn sizes(&self) -> (usize, usize) {
        (*crate::sync::lock(&self.connections.size), *crate::sync::lock(&self.tunnels.size))
    }
}

/// A semaphore whose size a reload changes. Growing adds permits; shrinking
/// takes back the free ones at once and the rest as connections close (a
/// waiter that forgets what it gets): until then nothing new is admitted,
/// and no open connection is cut.
struct Cap {
    sem: Arc<Semaphore>,
    size: std::sync::Mutex<usize>,
}

impl Cap {
    fn new(size: usize) -> Cap {
        Cap { sem: Arc::new(Semaphore::new(size)), size: std::sync::Mutex::new(size) }
    }

    fn resize(&self, next: usize) {
        let mut size = crate::sync::lock(&self.size);
        if next > *size {
            self.sem.add_permits(next - *size);
        } else if next < *size {
            let shrink = *size - next;
            let owed = shrink - self.sem.forget_permits(shrink);
            if owed > 0 {
                let sem = self.sem.clone();
                // Sizes are bounded by validation (`MAX_CONNECTIONS`), so `owed` fits.
                let owed = u32::try_from(owed).unwrap_or(u32::MAX);
                tokio::spawn(async move {
                    if let Ok(permits) = sem.acquire_many_owned(owed).await {
                        permits.forget();
                    }
                });
            }
        }
        *size = next;
    }
}

impl ListenerTask {
    /// Stops accepting; connections already accepted carry on.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(true);
        drop(self.task);
    }
}

/// A listening socket a predecessor process handed over, for tokio.
pub(crate) fn adopt(socket: std::net::TcpListener) -> std::io::Result<TcpListener> {
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket)
}

/// Binds a listener socket (with SO_REUSEADDR, a deep backlog).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

/// Starts the accept loop of an already bound listener, with the caps of
/// the listener it replaces under the same name (resized), or new ones.
pub(crate) fn start(
    plane: Arc<DataPlane>,
    runtime: &ListenerRuntime,
    listener: TcpListener,
    caps: Option<Caps>,
) -> std::io::Result<ListenerTask> {
    let config = &*runtime.config;
    let local = listener.local_addr()?;
    let socket = socket2::SockRef::from(&listener).try_clone()?;
    let (stop, stop_rx) = watch::channel(false);
    let caps = match caps {
        Some(caps) => {
            caps.resize(config);
            caps
        }
        None => Caps::new(config),
    };
    let semaphores = (caps.connections.sem.clone(), caps.tunnels.sem.clone());
    let name = config.name.clone();
    let started = Arc::new(Started { config: runtime.config.clone(), tls: runtime.tls.clone() });
    let task = tokio::spawn(accept_loop(plane, name.clone(), listener, semaphores, stop_rx, started));
    Ok(ListenerTask { name, configured: config.listen, local, socket, caps, stop, task })
}

/// The listener's settings when its loop started: a connection accepted
/// just before a reload removed or renamed the listener (and before the
/// loop saw its stop) is served with them instead of being dropped.
struct Started {
    config: Arc<ListenerConfig>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

async fn accept_loop(
    plane: Arc<DataPlane>,
    name: String,
    listener: TcpListener,
    (limit, tunnels): (Arc<Semaphore>, Arc<Semaphore>),
    mut stop: watch::Receiver<bool>,
    started: Arc<Started>,
) {
    let rejected = metrics::counter!(catalog::CONNECTIONS_REJECTED, "listener" => name.clone());
    let accepted = metrics::counter!(catalog::CONNECTIONS_ACCEPTED, "listener" => name.clone());
    let counters = Arc::new(ListenerCounters::new(&name));
    loop {
        let accept = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = listener.accept() => r,
        };
        let (tcp, remote) = match accept {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            rejected.increment(1);
            tokio::spawn(reject(tcp, plane.clone(), name.clone()));
            continue;
        };
        accepted.increment(1);
        let _ = tcp.set_nodelay(true);
        // Finds a peer that vanished without a FIN, tunnels included.
        let keepalive =
            socket2::TcpKeepalive::new().with_time(Duration::from_secs(60)).with_interval(Duration::from_secs(10));
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        let held = (permit, tunnels.clone(), counters.clone());
        tokio::spawn(connection(plane.clone(), name.clone(), tcp, remote, held, started.clone()));
    }
    tracing::info!(listener = %name, "listener stopped accepting");
}

/// Over the connection cap: a plain listener answers 503, a TLS one closes.
async fn reject(mut tcp: TcpStream, plane: Arc<DataPlane>, name: String) {
    let tls = plane.runtime.load().listeners.get(&name).is_some_and(|l| l.tls.is_some());
    if !tls {
        let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(OVER_CAPACITY)).await;
        let _ = tcp.shutdown().await;
    }
}

async fn connection(
    plane: Arc<DataPlane>,
    name: String,
    tcp: TcpStream,
    remote: SocketAddr,
    (permit, tunnels, counters): (OwnedSemaphorePermit, Arc<Semaphore>, Arc<ListenerCounters>),
    started: Arc<Started>,
) {
    let (config, acceptor, grace) = {
        let rt = plane.runtime.load();
        match rt.listeners.get(&name) {
            Some(l) => (l.config.clone(), l.tls.clone(), rt.config.runtime.drain_timeout),
            // Removed or renamed by a reload between accept and now.
            None => (started.config.clone(), started.tls.clone(), rt.config.runtime.drain_timeout),
        }
    };
    // The connection's permit and count live as long as its ConnInfo: an
    // upgraded tunnel keeps them.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
    let info = Arc::new(ConnInfo::new(plane.clone(), Some(permit), remote, acceptor.is_some(), &config, tunnels, fd));
    let bytes = counters.bytes.clone();
    // Each kind boxed, so a connection holds the state of its own kind
    // only: inline, the larger (the handshake and rustls' stream state, a
    // few kilobytes) sized every connection's task, and a TLS one carried
    // the plain one's too once the handshake was boxed alone (measured
    // with `benches/load/run --idle`).
    match acceptor {
        None => Box::pin(serve_io(plane, info, &config, grace, tcp, bytes, false)).await,
        Some(acceptor) => Box::pin(serve_tls(plane, info, &config, grace, tcp, acceptor, counters)).await,
    }
}

/// The TLS handshake (within `header_read_timeout`), then the connection.
async fn serve_tls(
    plane: Arc<DataPlane>,
    info: Arc<ConnInfo>,
    config: &ListenerConfig,
    grace: Duration,
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    counters: Arc<ListenerCounters>,
) {
    let remote = info.remote;
    match tokio::time::timeout(config.header_read_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => {
            counters.tls_ok.increment(1);
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_io(plane, info, config, grace, tls, counters.bytes.clone(), h2).await
        }
        Ok(Err(e)) => {
            counters.tls_failed.increment(1);
            tracing::debug!(client = %remote, error = %e, "TLS handshake failed")
        }
        Err(_) => {
            counters.tls_timeout.increment(1);
            tracing::debug!(client = %remote, "TLS handshake timed out")
        }
    }
}

/// One listener's handles, registered when it starts: per connection they
/// are cloned, never looked up by name.
struct ListenerCounters {
    bytes: Arc<ByteCounters>,
    tls_ok: metrics::Counter,
    tls_failed: metrics::Counter,
    tls_timeout: metrics::Counter,
}

impl ListenerCounters {
    fn new(name: &str) -> Self {
        let tls = |result: &'static str| metrics::counter!(catalog::TLS_HANDSHAKES, "listener" => name.to_string(), "result" => result);
        ListenerCounters {
            bytes: Arc::new(ByteCounters::new(name)),
            tls_ok: tls("ok"),
            tls_failed: tls("failed"),
            tls_timeout: tls("timeout"),
        }
    }
}

fn builder(config: &ListenerConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // The watchdog times request heads (see the module doc).
        .header_read_timeout(None)
        .max_buf_size(config.max_header_bytes)
        .max_headers(config.max_headers)
        // A client that closes (or half-closes) its side while its request is
        // at the upstream does not cancel the exchange: the backend is busy
        // with it either way (HAProxy's default, `abortonclose` off), and
        // hyper then skips an end-of-stream probe read per request that
        // forced a fresh read buffer while the request's headers still
        // shared the old one.
        .half_close(true)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(config.max_header_bytes as u32)
        .max_concurrent_streams(config.max_concurrent_streams)
        // Streams reset before they are accepted (h2's own rapid-reset
        // guard: GOAWAY ENHANCE_YOUR_CALM); those reset after are counted
        // by the connection's cancel budget.
        .max_pending_accept_reset_streams(Some(20))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// While draining, an HTTP/1.x connection with nothing in flight for this
/// long is closed (one that carries requests closes on its next answer).
const DRAIN_QUIET: Duration = Duration::from_millis(500);
/// How often the watchdog looks while draining.
const DRAIN_TICK: Duration = Duration::from_millis(100);

/// How long the graceful close of an idle (or abusive) connection may take.
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// The watchdog's limits for one connection.
#[derive(Clone, Copy)]
struct Limits {
    idle: Duration,
    /// An HTTP/1.1 request head, from its first byte to its end.
    head: Duration,
    send: Duration,
    max_age: Option<Duration>,
    /// How long a graceful close may take before it becomes an abort.
    grace: Duration,
}

/// Serves one client connection: HTTP/2 when ALPN chose it (`h2`), else
/// HTTP/1.1 with upgrades or HTTP/2 by prior knowledge.
async fn serve_io<I>(
    plane: Arc<DataPlane>,
    info: Arc<ConnInfo>,
    config: &ListenerConfig,
    grace: Duration,
    io: I,
    bytes: Arc<ByteCounters>,
    h2: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = info.activity.clone();
    let io = TokioIo::new(IdleIo::client(io, activity.clone(), bytes));
    let limits = Limits {
        idle: config.idle_timeout,
        head: config.header_read_timeout,
        send: config.client_send_timeout,
        max_age: config.max_connection_age,
        grace,
    };
    // The watchdog runs as its own task so the connection's task polls only
    // the connection: a timer and a watch channel polled at every wake-up
    // (twice per request) cost more than the rest of the select.
    let watchdog = tokio::spawn(watchdog(plane.drain.subscribe(), info.clone(), activity, limits));
    let svc_server = plane.clone();
    let svc_info = info.clone();
    let result = if h2 {
        // hyper spawns each HTTP/2 stream as a task, and a task moves its
        // future whole when it is spawned and again when it ends: a box
        // makes those moves a pointer's, for one allocation the task's own
        // would otherwise hold (an HTTP/1.1 connection keeps the future in
        // place, where a box per request costs more than it saves).
        let svc = service_fn(move |req| Box::pin(service::serve(svc_server.clone(), svc_info.clone(), req)));
        let b = builder(config).http2_only();
        drive(&info, b.serve_connection(io, svc)).await
    } else {
        let svc = service_fn(move |req| service::serve(svc_server.clone(), svc_info.clone(), req));
        let b = builder(config);
        drive(&info, b.serve_connection_with_upgrades(io, svc)).await
    };
    watchdog.abort();
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// Polls a client connection until it ends, closing it as the connection's
/// close signal asks (gracefully once, or at once on an abort).
async fn drive<C: GracefulConnection>(info: &ConnInfo, conn: C) -> Result<(), C::Error>
where
    C::Error: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    std::future::poll_fn(|cx| {
        info.close.waker.register(cx.waker());
        match info.close.requested() {
            Some(Close::Abort) => return std::task::Poll::Ready(Ok(())),
            Some(Close::Graceful) if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ => {}
        }
        conn.as_mut().poll(cx)
    })
    .await
}

/// Watches one connection (see the module doc); wakes every third of the
/// shortest of `idle_timeout`, `header_read_timeout`, `client_send_timeout`
/// and `max_connection_age`.
async fn watchdog(mut drain: watch::Receiver<bool>, conn: Arc<ConnInfo>, activity: Arc<Activity>, limits: Limits) {
    let own = limits.idle.min(limits.send).min(limits.head);
    let shortest = limits.max_age.map_or(own, |age| age.min(own));
    let every = (shortest / 3).max(Duration::from_millis(20));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let opened = Instant::now();
    let mut draining = *drain.borrow_and_update();
    let mut seen = (activity.moves(), conn.started());
    let mut idle_since: Option<Instant> = None;
    let mut abort_at: Option<Instant> = None;
    loop {
        // Draining: HTTP/2 gets its GOAWAY at once; an HTTP/1.x connection
        // is closed by `Connection: close` on its next answer or once it
        // has been quiet for `DRAIN_QUIET` (closing it at once would race
        // the request its client may be sending on it).
        let h2 = conn.is_h2() || activity.is_h2();
        if draining && h2 {
            conn.close.request(Close::Graceful);
        }
        tokio::select! {
            biased;
            changed = drain.changed(), if !draining => {
                draining = changed.is_err() || *drain.borrow();
                if draining && every > DRAIN_TICK {
                    tick = tokio::time::interval(DRAIN_TICK);
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        if activity.blocked_for(now) > limits.send || (conn.is_h2() && conn.send_stalled(limits.send, now)) {
            tracing::debug!(client = %conn.remote, timeout = ?limits.send, "client took no response byte in time: closing");
            metrics::counter!(catalog::PROXY_ERRORS, "kind" => "client_send_timeout").increment(1);
            conn.close.request(Close::Abort);
            return;
        }
        // HTTP/2 (known from the preface, before any request): frames such
        // as PING keep bytes moving, so only open requests count; h2 bounds
        // its own header blocks.
        let h2 = conn.is_h2() || activity.is_h2();
        if !h2 && activity.head_for(now).is_some_and(|took| took >= limits.head) {
            tracing::debug!(client = %conn.remote, timeout = ?limits.head, "request head not received in time: closing");
            metrics::counter!(catalog::PROXY_ERRORS, "kind" => "header_read_timeout").increment(1);
            conn.close.request(Close::Abort);
            return;
        }
        // HTTP/2 connections: no stream open and none started since the
        // last look (at a few requests a second, most instants find none
        // open, and PINGs keep bytes moving). HTTP/1.1: no byte moved.
        let now_seen = (activity.moves(), conn.started());
        let still = if h2 { now_seen.1 == seen.1 } else { now_seen.0 == seen.0 };
        let quiet = conn.active() == 0 && still;
        seen = now_seen;
        idle_since = if quiet { idle_since.or(Some(now)) } else { None };
        // Nothing is in flight on an idle connection: its graceful close
        // gets a short grace (a client that never acknowledges hyper's
        // shutdown PING must not hold it for the drain grace).
        let mut grace = limits.grace;
        let idle_limit = if draining { limits.idle.min(DRAIN_QUIET) } else { limits.idle };
        if idle_since.is_some_and(|since| now - since >= idle_limit) {
            conn.close.request(Close::Graceful);
            grace = IDLE_GRACE;
        }
        if limits.max_age.is_some_and(|age| now - opened >= age) {
            conn.close.request(Close::Graceful);
        }
        if conn.close.requested().is_some() || activity.calm_requested() {
            // h2 closes a connection it sent ENHANCE_YOUR_CALM at once; a
            // second is all the grace an abusive client gets.
            let grace = if activity.calm_requested() { IDLE_GRACE } else { grace };
            let at = *abort_at.get_or_insert(now + grace);
            if now >= at {
                tracing::debug!(client = %conn.remote, "graceful close did not finish in time: closing");
                conn.close.request(Close::Abort);
                return;
            }
        }
    }
}
