//! Upstream HTTP/1.1 exchanges on hyper's low-level client, with a small
//! keep-alive pool per endpoint (LIFO, so the warmest connection goes first).
//!
//! Hand-written rather than hyper-util's pooled client because this is the
//! hot path: a checkout is a pop from a short per-endpoint list (no keyed
//! lookup), the request is never cloned, and the two ways an exchange can
//! fail *before any byte left* are told apart from the rest:
//! - the connect failed: the caller may retry on another endpoint;
//! - a pooled connection turned out closed (the upstream timed it out just
//!   now): hyper hands the request back and it is resent on a fresh one.
//!
//! A connection goes back to its endpoint's idle list only once the response
//! body has been read to its end (see `Conn::release`); one abandoned halfway
//! is closed.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};

use crate::body::Body;

use super::connector::{ConnectError, Connector};
use super::endpoint::Endpoint;

/// How a pool reaches its endpoints: connector and keep-alive settings.
/// Reused across reloads while the pool's transport settings do not change.
pub struct Transport {
    id: u64,
    connector: Connector,
    max_idle: usize,
    idle_timeout: Duration,
}

/// Idle keep-alive connections of one endpoint.
#[derive(Default)]
pub struct IdleConns {
    list: Mutex<Vec<Idle>>,
}

struct Idle {
    sender: SendRequest<Body>,
    transport: u64,
    since: Instant,
}

impl IdleConns {
    fn pop(&self) -> Option<Idle> {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn push(&self, idle: Idle, max: usize) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() < max {
            list.push(idle);
        }
    }

    pub fn len(&self) -> usize {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes connections idle for longer than `max_age`.
    pub fn sweep(&self, now: Instant, max_age: Duration) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|i| !i.sender.is_closed() && now.saturating_duration_since(i.since) < max_age);
    }
}

/// A connection checked out for one exchange.
pub struct Conn {
    sender: SendRequest<Body>,
    transport: u64,
    max_idle: usize,
    endpoint: Arc<Endpoint>,
    /// Taken from the idle list (may have been closed by the upstream).
    pub reused: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("endpoint", &self.endpoint.addr).field("reused", &self.reused).finish()
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum SendFailure {
    /// Nothing was written: the request comes back for another try.
    NotSent(Box<Request<Body>>, hyper::Error),
    /// The request may have reached the upstream.
    Failed(hyper::Error),
}

impl Transport {
    pub fn new(connector: Connector, max_idle: usize, idle_timeout: Duration) -> Transport {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Transport { id: NEXT_ID.fetch_add(1, Relaxed), connector, max_idle, idle_timeout }
    }

    /// A ready connection to `endpoint`: the most recently used idle one, or
    /// a new one.
    pub async fn checkout(&self, endpoint: &Arc<Endpoint>, now: Instant) -> Result<Conn, ConnectError> {
        while let Some(idle) = endpoint.idle.pop() {
            let fresh = now.saturating_duration_since(idle.since) < self.idle_timeout;
            if idle.transport == self.id && fresh && idle.sender.is_ready() {
                return Ok(self.conn(idle.sender, endpoint, true));
            }
        }
        self.connect(endpoint).await
    }

    /// A new connection, never a pooled one.
    pub async fn connect(&self, endpoint: &Arc<Endpoint>) -> Result<Conn, ConnectError> {
        let host = endpoint.authority.host();
        let port = endpoint.authority.port_u16().unwrap_or(80);
        let io = self.connector.connect(host, port).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| ConnectError::Handshake { addr: endpoint.addr.clone(), detail: e.to_string() })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection closed with an error");
            }
        });
        metrics::counter!("spillway_upstream_connections_opened_total").increment(1);
        Ok(self.conn(sender, endpoint, false))
    }

    fn conn(&self, sender: SendRequest<Body>, endpoint: &Arc<Endpoint>, reused: bool) -> Conn {
        Conn { sender, transport: self.id, max_idle: self.max_idle, endpoint: endpoint.clone(), reused }
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
}

impl Conn {
    /// Sends one request and waits for the response headers.
    pub async fn send(&mut self, req: Request<Body>) -> Result<Response<Incoming>, SendFailure> {
        self.sender.try_send_request(req).await.map_err(|mut e| match e.take_message() {
            Some(req) => SendFailure::NotSent(Box::new(req), e.into_error()),
            None => SendFailure::Failed(e.into_error()),
        })
    }

    /// The response was read to its end: keep the connection for the next
    /// request (unless the upstream is closing it, or the list is full).
    pub fn release(self, now: Instant) {
        if !self.sender.is_closed() {
            let idle = Idle { sender: self.sender, transport: self.transport, since: now };
            self.endpoint.idle.push(idle, self.max_idle);
        }
    }
}
