//! One client connection's shared state: what its requests, their
//! response bodies, an upgraded tunnel and its watchdog all see.
//!
//! - The connection's permit (`max_connections`) and its place in the open
//!   connection count live here, so they are held until the last user of
//!   the connection is gone: an upgraded WebSocket tunnel keeps them.
//! - [`ActiveRequest`] counts a request from the moment hyper hands it over
//!   until its response body ended or was dropped. A request that ends any
//!   other way (HTTP/2 `RST_STREAM`, the client closing) spends one unit of
//!   the connection's [`CancelBudget`]; an empty budget closes the
//!   connection. When it drops, its access-log entry (if any) goes to the
//!   log's queue: the line is written after the response ended.
//! - For HTTP/2, each response body says since when it has been waiting
//!   for the client to take its next frame (a zero flow-control window);
//!   the watchdog closes a connection on which one waits longer than
//!   `client_send_timeout`.
//! - [`CloseSignal`] carries the watchdog's (or the budget's) request to
//!   close: graceful (finish in-flight requests, HTTP/2 `GOAWAY`) or
//!   abortive (drop the connection now).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Acquire, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use tokio::sync::OwnedSemaphorePermit;

use super::headers;
use super::DataPlane;
use crate::accesslog::Entry;
use crate::config::ListenerConfig;
use crate::sync::lock;
use crate::telemetry::catalog;

/// What the service knows about the client connection a request came on.
pub(crate) struct ConnInfo {
    pub(crate) remote: SocketAddr,
    pub(crate) tls: bool,
    /// The client address as an `X-Forwarded-For` element, formatted once
    /// per connection rather than per request.
    pub(crate) forwarded_for: http::HeaderValue,
    /// The listener's `request_body_timeout`.
    pub(crate) body_timeout: Duration,
    /// The peer is one of the listener's `trusted_proxies`.
    pub(crate) trusted: bool,
    /// Requests (and their response bodies) not finished yet.
    active: AtomicU32,
    /// Requests started on the connection so far (the watchdog compares
    /// two looks: an HTTP/2 connection serving requests between its looks
    /// is not idle, though none may be open at the instant it looks).
    started: AtomicU64,
    h2: AtomicBool,
    cancels: Mutex<CancelBudget>,
    /// HTTP/2 response bodies: milliseconds since `epoch` at which each
    /// started waiting for the client (0: not waiting).
    waiting: Mutex<Vec<Weak<AtomicU64>>>,
    epoch: Instant,
    pub(crate) close: CloseSignal,
    /// What the connection's I/O did (`idle::IdleIo` writes it).
    pub(crate) activity: Arc<super::idle::Activity>,
    /// Upgraded tunnels open on this listener (`max_tunnels`).
    pub(crate) tunnels: Arc<tokio::sync::Semaphore>,
    pub(crate) tunnel_idle_timeout: Duration,
    pub(crate) send_timeout: Duration,
    /// The listener's `readiness_path` (shared, not copied).
    pub(crate) readiness_path: Option<Arc<str>>,
    /// The client's TCP socket (-1: none), peeked at while one of its
    /// requests waits in a queue ([`ConnInfo::client_gone`]). Valid for as
    /// long as a request of the connection runs: the connection owns it.
    fd: std::os::fd::RawFd,
    hold: Hold,
}

/// The connection's permit and its place in the open-connection count.
struct Hold {
    plane: Arc<DataPlane>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Hold {
    /// Counts the connection open; the count is given back when it drops.
    fn new(plane: Arc<DataPlane>, permit: Option<OwnedSemaphorePermit>) -> Self {
        plane.connections.join();
        Hold { plane, _permit: permit }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.plane.connections.leave();
    }
}

impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnInfo").field("remote", &self.remote).field("tls", &self.tls).finish_non_exhaustive()
    }
}

impl ConnInfo {
    pub(crate) fn new(
        plane: Arc<DataPlane>,
        permit: Option<OwnedSemaphorePermit>,
        remote: SocketAddr,
        tls: bool,
        listener: &ListenerConfig,
        tunnels: Arc<tokio::sync::Semaphore>,
        fd: std::os::fd::RawFd,
    ) -> Self {
        let hold = Hold::new(plane, permit);
        let forwarded_for = headers::forwarded_for_value(remote.ip());
        let ip = canonical_ip(remote.ip());
        let trusted = listener.trusted_proxies.iter().any(|net| net.contains(&ip));
        ConnInfo {
            remote,
            tls,
            forwarded_for,
            body_timeout: listener.request_body_timeout,
            trusted,
            active: AtomicU32::new(0),
            started: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            cancels: Mutex::new(CancelBudget::new(listener.max_cancelled_streams)),
            waiting: Mutex::new(Vec::new()),
            epoch: Instant::now(),
            close: CloseSignal::default(),
            activity: super::idle::Activity::new(),
            tunnels,
            tunnel_idle_timeout: listener.tunnel_idle_timeout,
            send_timeout: listener.client_send_timeout,
            readiness_path: listener.readiness_path.clone(),
            fd,
            hold,
        }
    }

    /// Resolves once the client of this HTTP/1.x connection has closed or
    /// reset it (a look every [`GONE_EVERY`]); never for HTTP/2, whose
    /// resets and closes cancel the request themselves. The listener runs
    /// HTTP/1 with half-close on (no read probe per request), so hyper
    /// learns of a client gone mid-request only when it writes; a request
    /// waiting in a queue asks here instead, as nginx does on a client
    /// abort: a FIN or a reset while waiting means nobody takes the answer.
    pub(crate) async fn client_gone(&self) {
        if self.fd < 0 {
            return std::future::pending().await;
        }
        let mut every = tokio::time::interval(GONE_EVERY);
        loop {
            every.tick().await;
            if self.h2.load(Relaxed) {
                return std::future::pending().await;
            }
            let mut byte = [0u8; 1];
            let flags = nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT;
            match nix::sys::socket::recv(self.fd, &mut byte, flags) {
                // Closed (FIN), or gone (a reset, any other error).
                Ok(0) => return,
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) | Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    /// Requests on this connection whose response has not ended.
    pub(crate) fn active(&self) -> u32 {
        self.active.load(Relaxed)
    }

    /// Requests started on this connection so far.
    pub(crate) fn started(&self) -> u64 {
        self.started.load(Relaxed)
    }

    pub(crate) fn is_h2(&self) -> bool {
        self.h2.load(Relaxed)
    }

    /// Whether an HTTP/2 response has waited for the client longer than
    /// `limit` at `now`; forgets bodies that are gone.
    pub(crate) fn send_stalled(&self, limit: Duration, now: Instant) -> bool {
        let now_ms = self.millis(now);
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let mut list = lock(&self.waiting);
        let mut stalled = false;
        list.retain(|w| match w.upgrade() {
            Some(since) => {
                let s = since.load(Relaxed);
                stalled |= s != 0 && now_ms.saturating_sub(s) > limit_ms;
                true
            }
            None => false,
        });
        stalled
    }

    fn millis(&self, t: Instant) -> u64 {
        // +1: 0 means "not waiting".
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// A request ended before its response did (reset, closed): spends the
    /// budget; over it, the connection is asked to close.
    fn cancelled(&self) {
        if !self.is_h2() {
            return;
        }
        if !lock(&self.cancels).spend(Instant::now()) && !self.activity.calm_requested() {
            tracing::info!(client = %self.remote, "HTTP/2 client over its cancelled-stream budget: GOAWAY ENHANCE_YOUR_CALM");
            metrics::counter!(catalog::PROXY_ERRORS, "kind" => "reset_flood").increment(1);
            self.activity.request_calm();
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// How often a queued request looks whether its HTTP/1 client is still there.
const GONE_EVERY: Duration = Duration::from_millis(50);

/// One request on a connection, from hyper's call to the end of its
/// response body. Dropped without [`ActiveRequest::finish`]: cancelled.
pub(crate) struct ActiveRequest {
    conn: Arc<ConnInfo>,
    /// HTTP/2 only: since when the body has waited for the client.
    waiting: Option<Arc<AtomicU64>>,
    finished: bool,
    /// Its access-log entry, handed to the log when the request drops.
    log: Option<Box<Entry>>,
}

impl ActiveRequest {
    pub(crate) fn start(conn: &Arc<ConnInfo>, version: http::Version) -> Self {
        conn.started.fetch_add(1, Relaxed);
        if conn.active.fetch_add(1, Relaxed) == 0 {
            conn.activity.request_opened();
        }
        // The guard exists before anything else can fail: the counts are its.
        let mut active = ActiveRequest { conn: conn.clone(), waiting: None, finished: false, log: None };
        if version == http::Version::HTTP_2 {
            conn.h2.store(true, Relaxed);
            let w = Arc::new(AtomicU64::new(0));
            let mut list = lock(&conn.waiting);
            // Finished requests leave dead entries; drop them before the
            // list outgrows what can be open at once.
            if list.len() >= 256 && list.len().is_power_of_two() {
                list.retain(|w| w.strong_count() > 0);
            }
            list.push(Arc::downgrade(&w));
            active.waiting = Some(w);
        }
        active
    }

    /// Logs this request when it ends.
    pub(crate) fn log(&mut self, entry: Box<Entry>) {
        self.log = Some(entry);
    }

    /// Response body bytes handed to the client (for the access log).
    #[inline]
    pub(crate) fn sent(&mut self, bytes: usize) {
        if let Some(e) = &mut self.log {
            e.bytes_out += bytes as u64;
        }
    }

    /// The response ended as it should (its last frame was taken).
    pub(crate) fn finish(&mut self) {
        self.finished = true;
        self.not_waiting();
    }

    /// The body just handed a frame over: the client has to take it.
    #[inline]
    pub(crate) fn waiting_for_client(&self) {
        if let Some(w) = &self.waiting {
            w.store(self.conn.millis(Instant::now()), Relaxed);
        }
    }

    /// The body is being polled again: the client took what it had.
    #[inline]
    pub(crate) fn not_waiting(&self) {
        if let Some(w) = &self.waiting {
            w.store(0, Relaxed);
        }
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        if self.conn.active.fetch_sub(1, Relaxed) == 1 {
            self.conn.activity.requests_closed();
        }
        if !self.finished {
            self.conn.cancelled();
        }
        if let Some(mut entry) = self.log.take() {
            entry.duration = entry.started.elapsed();
            entry.completed = self.finished;
            if let Some(seen) = entry.upload.take() {
                entry.bytes_in = Some(seen.load(Relaxed));
            }
            self.conn.hold.plane.access_log.submit(*entry);
        }
    }
}

/// Cancelled streams a connection may have: `max` at first, refilled at a
/// tenth of `max` per second (pure; `now` is passed in).
#[derive(Debug)]
pub(crate) struct CancelBudget {
    max: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl CancelBudget {
    pub(crate) fn new(max: u32) -> Self {
        CancelBudget { max: f64::from(max), tokens: f64::from(max), last: None }
    }

    /// Spends one; false when the budget is empty.
    pub(crate) fn spend(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.max / 10.0;
            self.tokens = (self.tokens + refill).min(self.max);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How a connection is to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Close {
    /// Finish the requests in flight (HTTP/2: `GOAWAY`), then close.
    Graceful = 1,
    /// Close now: a stalled client, or the grace period is over.
    Abort = 2,
}

/// A request, to the connection's task, to close it.
#[derive(Default)]
pub(crate) struct CloseSignal {
    requested: AtomicU8,
    pub(crate) waker: AtomicWaker,
}

impl CloseSignal {
    /// Asks for `how` (an abort is never downgraded to graceful).
    pub(crate) fn request(&self, how: Close) {
        self.requested.fetch_max(how as u8, Relaxed);
        self.waker.wake();
    }

    /// The strongest close asked for so far.
    pub(crate) fn requested(&self) -> Option<Close> {
        match self.requested.load(Acquire) {
            0 => None,
            1 => Some(Close::Graceful),
            _ => Some(Close::Abort),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cancel_budget_refills_at_a_tenth_per_second() {
        let t0 = Instant::now();
        let mut b = CancelBudget::new(10);
        for n in 0..10 {
            assert!(b.spend(t0), "cancel {n} is within the budget");
        }
        assert!(!b.spend(t0), "the eleventh at once is over it");
        assert!(!b.spend(t0 + Duration::from_millis(500)), "half a token is not one");
        assert!(b.spend(t0 + Duration::from_millis(1100)), "one per second comes back");
        assert!(!b.spend(t0 + Duration::from_millis(1100)));
        let mut slow = CancelBudget::new(10);
        for s in 0..1000 {
            assert!(slow.spend(t0 + Duration::from_secs(s)), "one a second forever is fine");
        }
    }

    #[test]
    fn an_abort_is_never_downgraded() {
        let s = CloseSignal::default();
        assert_eq!(s.requested(), None);
        s.request(Close::Graceful);
        assert_eq!(s.requested(), Some(Close::Graceful));
        s.request(Close::Abort);
        s.request(Close::Graceful);
        assert_eq!(s.requested(), Some(Close::Abort));
    }
}
