//! Accept loops: one per configured listener. Each connection is served by
//! hyper's auto builder (HTTP/1.1 with upgrades, HTTP/2 by ALPN or prior
//! knowledge), with header-size/count limits, a header read timeout
//! (slowloris), an idle timeout, and a per-listener connection cap.
//!
//! The TLS acceptor is looked up in the current runtime snapshot at every
//! accept, so a reload rotates certificates without a restart.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::Arc;
use std::time::Duration;

use futures_util::task::AtomicWaker;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::DataPlane;
use crate::config::ListenerConfig;
use crate::telemetry::catalog;

use super::idle::IdleIo;
use super::{service, ConnInfo};

const OVER_CAPACITY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// A running accept loop.
pub(crate) struct ListenerTask {
    pub(crate) name: String,
    pub(crate) configured: SocketAddr,
    pub(crate) local: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ListenerTask {
    /// Stops accepting; connections already accepted carry on.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(true);
        drop(self.task);
    }
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

/// Starts the accept loop of an already bound listener.
pub(crate) fn start(
    plane: Arc<DataPlane>,
    config: &ListenerConfig,
    listener: TcpListener,
) -> std::io::Result<ListenerTask> {
    let local = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let name = config.name.clone();
    let task = tokio::spawn(accept_loop(plane, name.clone(), listener, limit, stop_rx));
    Ok(ListenerTask { name, configured: config.listen, local, stop, task })
}

async fn accept_loop(
    plane: Arc<DataPlane>,
    name: String,
    listener: TcpListener,
    limit: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let rejected = metrics::counter!(catalog::CONNECTIONS_REJECTED, "listener" => name.clone());
    let accepted = metrics::counter!(catalog::CONNECTIONS_ACCEPTED, "listener" => name.clone());
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
        tokio::spawn(connection(plane.clone(), name.clone(), tcp, remote, permit));
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
    _permit: OwnedSemaphorePermit,
) {
    let holder = plane.clone();
    let _active = holder.connections.enter();
    let (config, acceptor) = {
        let rt = plane.runtime.load();
        match rt.listeners.get(&name) {
            Some(l) => (l.config.clone(), l.tls.clone()),
            None => return, // listener removed by a reload between accept and now
        }
    };
    let info = Arc::new(ConnInfo::new(remote, acceptor.is_some(), config.request_body_timeout));
    match acceptor {
        None => serve_io(plane, info, &config, tcp).await,
        Some(acceptor) => match tokio::time::timeout(config.header_read_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => serve_io(plane, info, &config, tls).await,
            Ok(Err(e)) => tracing::debug!(client = %remote, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(client = %remote, "TLS handshake timed out"),
        },
    }
}

fn builder(config: &ListenerConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
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
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

async fn serve_io<I>(plane: Arc<DataPlane>, info: Arc<ConnInfo>, config: &ListenerConfig, io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let last = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(IdleIo::new(io, last.clone()));
    let signal = Arc::new(CloseSignal::default());
    // The watchdog runs as its own task so the connection's task polls only
    // the connection: a timer and a watch channel polled at every wake-up
    // (twice per request) cost more than the rest of the select.
    let watchdog = tokio::spawn(watchdog(plane.drain.subscribe(), last, config.idle_timeout, signal.clone()));
    let svc_server = plane.clone();
    let svc = service_fn(move |req| service::serve(svc_server.clone(), info.clone(), req));
    let b = builder(config);
    let conn = b.serve_connection_with_upgrades(io, svc);
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    let result = std::future::poll_fn(|cx| {
        if !closing {
            signal.waker.register(cx.waker());
            if signal.requested.load(Acquire) {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
        conn.as_mut().poll(cx)
    })
    .await;
    watchdog.abort();
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// A request, from the watchdog to the connection's task, to shut the
/// connection down gracefully (finish the request in flight, then close).
#[derive(Default)]
struct CloseSignal {
    requested: AtomicBool,
    waker: AtomicWaker,
}

/// Closes the connection when the server drains, or after `idle` with no
/// byte read or written: it wakes every `idle` and closes when the I/O count
/// has not moved since its previous wake (idle for one to two timeouts).
async fn watchdog(mut drain: watch::Receiver<bool>, last: Arc<AtomicU64>, idle: Duration, signal: Arc<CloseSignal>) {
    if !*drain.borrow_and_update() {
        let mut seen = last.load(Relaxed);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + idle, idle);
        loop {
            tokio::select! {
                biased;
                _ = drain.changed() => break,
                _ = tick.tick() => {
                    let now = last.load(Relaxed);
                    if now == seen {
                        break;
                    }
                    seen = now;
                }
            }
        }
    }
    signal.requested.store(true, Release);
    signal.waker.wake();
}
