//! Upstream HTTP/1.1 exchanges, hand-written on the socket, with a small
//! keep-alive pool per endpoint (LIFO, so the warmest connection goes first).
//!
//! Why not hyper's client: it runs each connection as its own task and
//! talks to it through channels, so every proxied request paid for two task
//! wake-ups, a oneshot, an mpsc and a second HTTP/1 state machine. Here the
//! request's own task writes the head, reads the response head (`h1.rs`) and
//! the response body is read straight from the socket by whoever polls it
//! (hyper's server, writing to the client). Nothing is spawned per request.
//!
//! - A request body is streamed while the response head is awaited and,
//!   if the upstream answers early, while the response body streams (full
//!   duplex, as hyper does).
//! - The two ways an exchange can fail with the request safe to send again
//!   are told apart from the rest (`SendFailure`).
//! - A connection goes back to its endpoint's idle list only when the
//!   response was read to its end, the request body was sent whole, nothing
//!   extra was buffered and neither side asked to close (`State::can_reuse`,
//!   the one place that decides). One abandoned halfway is closed.
//! - A request whose transfer codings cannot be forwarded
//!   (`h1::check_request_codings`: anything but one `chunked`) is refused
//!   before a byte is sent; its connection goes back to the idle list.
//! - An idle connection is checked before reuse by a read that must find
//!   nothing: the upstream's FIN or stray bytes retire it. With tokio's
//!   readiness tracking that read costs no system call when the socket is quiet.
//!
//! - An exchange whose client goes away after the request reached the
//!   upstream is finished in the background (`abandoned.rs`).
//!
//! Files: `wire.rs` the socket and its buffers, `idle.rs` the idle list,
//! `upload.rs` the request on its way out, `exchange.rs` the request and the
//! response head, `state.rs` the named reading/writing state, `body.rs` the
//! response body (decoded by `upstream/decode.rs`), `abandoned.rs` an
//! exchange finished after its client went away.

mod abandoned;
mod body;
mod exchange;
mod idle;
mod request;
mod state;
mod timer;
mod upload;
mod wire;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::Body as _;

use super::connector::{ConnectError, Connector};
use super::endpoint::Endpoint;
use super::h1::{self, RequestCodingError, RequestFraming, WireError};
use super::retry::Failure;

pub(crate) use abandoned::Abandon;
pub(crate) use body::{Upgraded, UpstreamBody};
pub(crate) use idle::IdleConns;
pub(crate) use request::RequestBody;

/// A boxed error from the client's request body.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

use crate::telemetry::catalog;
use idle::Idle;
use upload::Upload;
use wire::Wire;

/// How a pool reaches its endpoints: connector and keep-alive settings.
/// Reused across reloads while the pool's transport settings do not change.
pub(crate) struct Transport {
    id: u64,
    connector: Connector,
    max_idle: usize,
    idle_timeout: Duration,
}

/// A connection checked out for one exchange.
pub(crate) struct Conn {
    wire: Wire,
    transport: u64,
    max_idle: usize,
    endpoint: Arc<Endpoint>,
    /// Taken from the idle list (the upstream may have closed it meanwhile).
    pub(crate) reused: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("endpoint", &self.endpoint.addr).field("reused", &self.reused).finish()
    }
}

/// What went wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("writing the request: {0}")]
    Write(io::Error),
    #[error("reading the response: {0}")]
    Read(io::Error),
    #[error("connection closed before the response head")]
    ClosedBeforeHead,
    #[error("connection closed {0} bytes before the end of the response body")]
    ClosedInBody(u64),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("reading the client's request body: {0}")]
    ClientBody(BoxError),
    #[error("no response head within {0:?} of the request being sent")]
    ResponseTimeout(Duration),
    #[error("the client did not send its request body within {0:?}")]
    ClientBodyTimeout(Duration),
    #[error("response body stalled: no byte for {0:?}")]
    BodyStalled(Duration),
    /// The client's request cannot be framed for the upstream; nothing was sent.
    #[error("request framing: {0}")]
    RequestCoding(#[from] RequestCodingError),
}

/// The limits of one exchange.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// For the request body to be sent whole (the client's pace).
    pub(crate) upload: Duration,
    /// For the response head, from when the request is out; also the
    /// longest a response body may stall.
    pub(crate) response: Duration,
}

/// A request that may be sent again (`Conn::resend`): its head as it was
/// encoded (it had no body).
#[derive(Debug)]
pub(crate) struct Resend {
    head: Bytes,
    method: http::Method,
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum SendFailure {
    /// Not one byte reached the upstream: the request comes back and may be
    /// sent again, whatever its method.
    NotSent(Resend, UpstreamError),
    /// The request (which had no body) was written on a reused connection
    /// that closed without a byte of response: the keep-alive race. It comes
    /// back; resending is safe for idempotent methods.
    NoResponse(Resend, UpstreamError),
    /// The request may have been processed.
    Failed(UpstreamError),
}

impl SendFailure {
    pub(crate) fn error(&self) -> &UpstreamError {
        match self {
            SendFailure::NotSent(_, e) | SendFailure::NoResponse(_, e) | SendFailure::Failed(e) => e,
        }
    }

    /// The failure as the retry rule sees it.
    pub(crate) fn kind(&self) -> Failure {
        match self {
            SendFailure::NotSent(..) => Failure::NotSent,
            SendFailure::NoResponse(..) => Failure::NoResponse,
            SendFailure::Failed(_) => Failure::Failed,
        }
    }
}

impl Transport {
    pub(crate) fn new(connector: Connector, max_idle: usize, idle_timeout: Duration) -> Transport {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Transport { id: NEXT_ID.fetch_add(1, Relaxed), connector, max_idle, idle_timeout }
    }

    /// A ready connection to `endpoint`: the most recently used idle one, or
    /// a new one.
    pub(crate) async fn checkout(&self, endpoint: &Arc<Endpoint>, now: Instant) -> Result<Conn, ConnectError> {
        while let Some(mut idle) = endpoint.idle.pop() {
            let fresh = now.saturating_duration_since(idle.since) < self.idle_timeout;
            if idle.transport == self.id && fresh && idle.wire.idle_ok() {
                return Ok(self.conn(idle.wire, endpoint, true));
            }
        }
        // Boxed: a new connection is the rare path, and its future (DNS,
        // TCP, the TLS handshake: 1.4 KB) inline would grow every request's
        // future, and with it the box hyper keeps per client connection.
        Box::pin(self.connect(endpoint)).await
    }

    /// A new connection, never a pooled one.
    pub(crate) async fn connect(&self, endpoint: &Arc<Endpoint>) -> Result<Conn, ConnectError> {
        let host = endpoint.authority.host();
        let port = endpoint.authority.port_u16().unwrap_or(80);
        let io = self.connector.connect(host, port).await?;
        metrics::counter!(catalog::UPSTREAM_CONNECTIONS_OPENED).increment(1);
        Ok(self.conn(Wire::new(io), endpoint, false))
    }

    fn conn(&self, wire: Wire, endpoint: &Arc<Endpoint>, reused: bool) -> Conn {
        Conn { wire, transport: self.id, max_idle: self.max_idle, endpoint: endpoint.clone(), reused }
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
}

impl Conn {
    /// Sends one request and waits for the response head. The request's
    /// target is its path and query (an absolute URI is reduced to that).
    ///
    /// `write_headers` writes the header lines for this hop (all but the
    /// body framing, which is written here); see `h1::write_plain_headers`.
    ///
    /// `timeout` bounds the wait for the response head; it starts when the
    /// request has been sent whole, so a slow uploader is not taken for a
    /// slow upstream.
    ///
    /// With `abandon`, an exchange dropped before its response head (the
    /// client went away) finishes in the background and keeps what
    /// `abandon` hands over until the upstream answers (`abandoned.rs`);
    /// without, dropping it closes the connection.
    pub(crate) async fn send(
        mut self,
        req: Request<RequestBody>,
        timeouts: Timeouts,
        write_headers: impl FnOnce(&http::request::Parts, &mut BytesMut),
        abandon: Option<&dyn Abandon>,
    ) -> Result<Response<UpstreamBody>, SendFailure> {
        let (parts, body) = req.into_parts();
        let framing = match body.size_hint().exact() {
            _ if http_body::Body::is_end_stream(&body) => RequestFraming::Empty,
            Some(0) => RequestFraming::Empty,
            Some(n) => RequestFraming::Length(n),
            None => RequestFraming::Chunked,
        };
        // A bodiless request forwards no Transfer-Encoding (it is
        // hop-by-hop and no body follows): it skips the lookup.
        if framing != RequestFraming::Empty {
            if let Err(e) = h1::check_request_codings(&parts.headers) {
                // Not one byte went out: the connection is as good as it was.
                self.release(Instant::now());
                return Err(SendFailure::Failed(e.into()));
            }
        }
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        h1::encode_request_head(&mut self.wire.wbuf, &parts.method, target, framing, |out| write_headers(&parts, out));
        let head = self.wire.wbuf.split().freeze();
        // The client's request is let go of here: its header values share
        // hyper's read buffer, which hyper can then reuse for the next
        // request instead of allocating a new one. A retry resends the
        // bytes just encoded.
        let method = parts.method.clone();
        drop(parts);
        let body = (framing != RequestFraming::Empty).then_some(body);
        self.exchange(Upload::new(head, body, framing == RequestFraming::Chunked), method, timeouts, abandon).await
    }

    /// Sends again, on this (fresh) connection, a request that failed in a
    /// way that allows it (`SendFailure::NotSent` / `NoResponse`).
    pub(crate) async fn resend(
        self,
        again: Resend,
        timeouts: Timeouts,
        abandon: Option<&dyn Abandon>,
    ) -> Result<Response<UpstreamBody>, SendFailure> {
        self.exchange(Upload::new(again.head, None, false), again.method, timeouts, abandon).await
    }

    /// The exchange ended cleanly: keep the connection for the next request
    /// (unless the idle list is full).
    fn release(self, now: Instant) {
        let idle = Idle { wire: self.wire, transport: self.transport, since: now };
        self.endpoint.idle.push(idle, self.max_idle);
    }
}

#[cfg(test)]
mod tests;
