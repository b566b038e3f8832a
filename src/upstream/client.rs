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
//!   extra was buffered and neither side asked to close. One abandoned
//!   halfway is closed.
//! - An idle connection is checked before reuse by a read that must find
//!   nothing: the upstream's FIN or stray bytes retire it. With tokio's
//!   readiness tracking that read costs no system call when the socket is quiet.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::proxy::body::{Body, BoxError};

use super::connector::{ConnectError, Connector, UpstreamIo};
use super::endpoint::Endpoint;
use super::h1::{self, Chunk, ChunkedDecoder, RequestFraming, ResponseFraming, WireError};

/// How a pool reaches its endpoints: connector and keep-alive settings.
/// Reused across reloads while the pool's transport settings do not change.
pub struct Transport {
    id: u64,
    connector: Connector,
    max_idle: usize,
    idle_timeout: Duration,
}

/// The socket of one upstream connection and its buffers (kept across
/// requests so their memory is reused).
struct Wire {
    io: UpstreamIo,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

/// Smallest free space a read is given; below it the buffer grows.
const READ_MIN: usize = 2 * 1024;
const READ_CHUNK: usize = 16 * 1024;

impl Wire {
    fn new(io: UpstreamIo) -> Wire {
        Wire { io, rbuf: BytesMut::with_capacity(READ_CHUNK), wbuf: BytesMut::with_capacity(1024) }
    }

    /// Whether an idle connection is still usable: a read must find nothing.
    /// End of stream, an error or unexpected bytes all retire it.
    fn idle_ok(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        Pin::new(&mut self.io).poll_read(&mut cx, &mut buf).is_pending()
    }

    /// Reads what the socket has into `rbuf`; `Ok(0)` is end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // Read into the front of the same allocation when every slice handed
        // out of it is gone: the kernel then copies into warm cache lines.
        if self.rbuf.is_empty() {
            let _ = self.rbuf.try_reclaim(READ_CHUNK);
        }
        if self.rbuf.capacity() - self.rbuf.len() < READ_MIN {
            self.rbuf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf)
    }
}

/// Idle keep-alive connections of one endpoint.
#[derive(Default)]
pub struct IdleConns {
    list: Mutex<Vec<Idle>>,
}

struct Idle {
    wire: Wire,
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

    /// Closes connections idle for longer than `max_age` or closed by the upstream.
    pub fn sweep(&self, now: Instant, max_age: Duration) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.retain_mut(|i| now.saturating_duration_since(i.since) < max_age && i.wire.idle_ok());
    }
}

/// A connection checked out for one exchange.
pub struct Conn {
    wire: Wire,
    transport: u64,
    max_idle: usize,
    endpoint: Arc<Endpoint>,
    /// Taken from the idle list (the upstream may have closed it meanwhile).
    pub reused: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("endpoint", &self.endpoint.addr).field("reused", &self.reused).finish()
    }
}

/// What went wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
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
}

/// The limits of one exchange.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For the request body to be sent whole (the client's pace).
    pub upload: Duration,
    /// For the response head, from when the request is out; also the
    /// longest a response body may stall.
    pub response: Duration,
}

/// A request that may be sent again (`Conn::resend`): its head as it was
/// encoded (it had no body).
#[derive(Debug)]
pub struct Resend {
    head: Bytes,
    method: http::Method,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum SendFailure {
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
    pub fn error(&self) -> &UpstreamError {
        match self {
            SendFailure::NotSent(_, e) | SendFailure::NoResponse(_, e) | SendFailure::Failed(e) => e,
        }
    }
}

impl Transport {
    pub fn new(connector: Connector, max_idle: usize, idle_timeout: Duration) -> Transport {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Transport { id: NEXT_ID.fetch_add(1, Relaxed), connector, max_idle, idle_timeout }
    }

    /// A ready connection to `endpoint`: the most recently used idle one, or
    /// a new one.
    pub async fn checkout(&self, endpoint: &Arc<Endpoint>, now: Instant) -> Result<Conn, ConnectError> {
        while let Some(mut idle) = endpoint.idle.pop() {
            let fresh = now.saturating_duration_since(idle.since) < self.idle_timeout;
            if idle.transport == self.id && fresh && idle.wire.idle_ok() {
                return Ok(self.conn(idle.wire, endpoint, true));
            }
        }
        self.connect(endpoint).await
    }

    /// A new connection, never a pooled one.
    pub async fn connect(&self, endpoint: &Arc<Endpoint>) -> Result<Conn, ConnectError> {
        let host = endpoint.authority.host();
        let port = endpoint.authority.port_u16().unwrap_or(80);
        let io = self.connector.connect(host, port).await?;
        metrics::counter!("spillway_upstream_connections_opened_total").increment(1);
        Ok(self.conn(Wire::new(io), endpoint, false))
    }

    fn conn(&self, wire: Wire, endpoint: &Arc<Endpoint>, reused: bool) -> Conn {
        Conn { wire, transport: self.id, max_idle: self.max_idle, endpoint: endpoint.clone(), reused }
    }

    pub fn idle_timeout(&self) -> Duration {
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
    pub async fn send(
        mut self,
        req: Request<Body>,
        timeouts: Timeouts,
        write_headers: impl FnOnce(&http::request::Parts, &mut BytesMut),
    ) -> Result<Response<UpstreamBody>, SendFailure> {
        let (parts, body) = req.into_parts();
        let framing = match body.size_hint().exact() {
            _ if http_body::Body::is_end_stream(&body) => RequestFraming::Empty,
            Some(0) => RequestFraming::Empty,
            Some(n) => RequestFraming::Length(n),
            None => RequestFraming::Chunked,
        };
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
        self.exchange(Upload::new(head, body, framing == RequestFraming::Chunked), method, timeouts).await
    }

    /// Sends again, on this (fresh) connection, a request that failed in a
    /// way that allows it (`SendFailure::NotSent` / `NoResponse`).
    pub async fn resend(self, again: Resend, timeouts: Timeouts) -> Result<Response<UpstreamBody>, SendFailure> {
        self.exchange(Upload::new(again.head, None, false), again.method, timeouts).await
    }

    async fn exchange(
        mut self,
        upload: Upload,
        method: http::Method,
        timeouts: Timeouts,
    ) -> Result<Response<UpstreamBody>, SendFailure> {
        let timeout = timeouts.response;
        let had_body = upload.body.is_some();
        // Kept only while it could be needed: a bodyless request on a
        // reused connection (the keep-alive race).
        let again = (self.reused && !had_body).then(|| upload.out.first.clone()).flatten();
        let mut upload = Some(upload);
        let mut upload_failed = false;
        let mut written_any = false;
        let mut read_any = false;
        let method_ref = &method;
        // One timer for both phases: the upload's deadline while the body is
        // going out, then the response's once it is out.
        let mut timer = std::pin::pin!(None::<tokio::time::Sleep>);
        let mut timing_upload = false;

        let result = poll_fn(|cx| {
            loop {
                if let Some(up) = upload.as_mut() {
                    let polled = up.poll(cx, &mut self.wire.io);
                    written_any |= up.written_any;
                    match polled {
                        Poll::Ready(Ok(())) => {
                            upload = None;
                            if timing_upload {
                                timing_upload = false;
                                timer.set(None);
                            }
                        }
                        Poll::Ready(Err(UploadError::Client(e))) => {
                            return Poll::Ready(Err(UpstreamError::ClientBody(e)))
                        }
                        Poll::Ready(Err(UploadError::Upstream(e))) if !written_any => {
                            return Poll::Ready(Err(UpstreamError::Write(e)))
                        }
                        // The upstream stopped reading mid-request; it may
                        // still have answered (413, 401...): look for that.
                        Poll::Ready(Err(UploadError::Upstream(e))) => {
                            tracing::debug!(error = %e, "upstream stopped reading the request");
                            upload = None;
                            upload_failed = true;
                            if timing_upload {
                                timing_upload = false;
                                timer.set(None);
                            }
                        }
                        Poll::Pending => {}
                    }
                }
                if !self.wire.rbuf.is_empty() {
                    if let Some(head) = h1::parse_response_head(&mut self.wire.rbuf, method_ref)? {
                        if head.status.is_informational() && head.framing != ResponseFraming::Upgrade {
                            continue; // 100 Continue, 103 Early Hints: the real answer follows.
                        }
                        return Poll::Ready(Ok(head));
                    }
                }
                match self.wire.poll_fill(cx) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(UpstreamError::ClosedBeforeHead)),
                    Poll::Ready(Ok(_)) => read_any = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(UpstreamError::Read(e))),
                    Poll::Pending => {
                        // Waiting: for the rest of the upload (its own
                        // deadline) or for the answer (the response timeout,
                        // from when the request is out).
                        if timer.is_none() {
                            timing_upload = upload.is_some();
                            let limit = if timing_upload { timeouts.upload } else { timeout };
                            timer.set(Some(tokio::time::sleep(limit)));
                        }
                        if let Some(t) = timer.as_mut().as_pin_mut() {
                            if std::future::Future::poll(t, cx).is_ready() {
                                return Poll::Ready(Err(match &upload {
                                    Some(up) if timing_upload && up.waiting_on_client => {
                                        UpstreamError::ClientBodyTimeout(timeouts.upload)
                                    }
                                    Some(_) if timing_upload => UpstreamError::ResponseTimeout(timeouts.upload),
                                    _ => UpstreamError::ResponseTimeout(timeout),
                                }));
                            }
                        }
                        return Poll::Pending;
                    }
                }
            }
        })
        .await;

        match result {
            Ok(head) => {
                // An answer before the request was sent whole (a 413, or a
                // 400 to a head it could not parse) leaves the upstream's
                // parser state unknown: never reuse that connection.
                let keep_alive = head.keep_alive && !upload_failed && upload.is_none();
                let body = UpstreamBody::new(self, head.framing, keep_alive, upload.map(Box::new), timeout);
                let mut resp = Response::new(body);
                *resp.status_mut() = head.status;
                *resp.version_mut() = head.version;
                *resp.headers_mut() = head.headers;
                Ok(resp)
            }
            Err(e) => {
                // Only a request without a body can be handed back whole.
                let again = again.filter(|_| !read_any).map(|head| Resend { head, method });
                Err(match (e, again) {
                    (e @ UpstreamError::Write(_), Some(again)) if !written_any => SendFailure::NotSent(again, e),
                    (
                        e @ (UpstreamError::Write(_) | UpstreamError::Read(_) | UpstreamError::ClosedBeforeHead),
                        Some(again),
                    ) => SendFailure::NoResponse(again, e),
                    (e, _) => SendFailure::Failed(e),
                })
            }
        }
    }

    /// The exchange ended cleanly: keep the connection for the next request
    /// (unless the idle list is full).
    fn release(self, now: Instant) {
        let idle = Idle { wire: self.wire, transport: self.transport, since: now };
        self.endpoint.idle.push(idle, self.max_idle);
    }
}

enum UploadError {
    Upstream(io::Error),
    Client(BoxError),
}

/// Bytes queued for the upstream, in order: the head, then body pieces.
/// The head has its own slot so a request without a body (most of them)
/// allocates no queue.
struct Segments {
    first: Option<Bytes>,
    rest: VecDeque<Bytes>,
}

impl Segments {
    fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.first.iter().chain(self.rest.iter())
    }

    fn front_mut(&mut self) -> Option<&mut Bytes> {
        match &mut self.first {
            Some(b) => Some(b),
            None => self.rest.front_mut(),
        }
    }

    fn pop_front(&mut self) {
        if self.first.take().is_none() {
            self.rest.pop_front();
        }
    }

    fn push_back(&mut self, b: Bytes) {
        self.rest.push_back(b);
    }
}

/// The request on its way out: the head, then the client's body frames,
/// chunk-framed when its length is unknown.
struct Upload {
    out: Segments,
    body: Option<Body>,
    chunked: bool,
    /// The kernel accepted at least one byte of this request.
    written_any: bool,
    /// The last time the upload had to wait, it waited for the client's
    /// body (not for the upstream to take bytes).
    waiting_on_client: bool,
    /// The head has not been written yet: try to send the first body frame with it.
    coalesce: bool,
}

impl Upload {
    fn new(head: Bytes, body: Option<Body>, chunked: bool) -> Upload {
        let coalesce = body.is_some();
        Upload {
            out: Segments { first: Some(head), rest: VecDeque::new() },
            body,
            chunked,
            written_any: false,
            waiting_on_client: false,
            coalesce,
        }
    }

    /// Writes until everything is out (`Ready(Ok)`), the socket is full or
    /// the client's body has nothing yet (`Pending`).
    fn poll(&mut self, cx: &mut Context<'_>, io: &mut UpstreamIo) -> Poll<Result<(), UploadError>> {
        loop {
            if self.coalesce {
                self.coalesce = false;
                if let Poll::Ready(r) = self.poll_body(cx) {
                    r?;
                }
            }
            if !self.out.is_empty() {
                // One buffer (a request without a body, or one large body
                // chunk) goes out with send(2); several with writev(2),
                // which costs more kernel time per call on a socket.
                let polled = if self.out.len() == 1 {
                    Pin::new(&mut *io).poll_write(cx, self.out.iter().next().expect("one segment"))
                } else {
                    let mut slices = [IoSlice::new(&[]); 8];
                    let n = self.out.iter().zip(slices.iter_mut()).map(|(b, s)| *s = IoSlice::new(b)).count();
                    Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n])
                };
                let written = match polled {
                    Poll::Pending => {
                        self.waiting_on_client = false;
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(UploadError::Upstream(io::ErrorKind::WriteZero.into())))
                    }
                    Poll::Ready(Ok(w)) => w,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(UploadError::Upstream(e))),
                };
                self.written_any = true;
                self.consume(written);
                continue;
            }
            if self.body.is_none() {
                return Pin::new(io).poll_flush(cx).map_err(UploadError::Upstream);
            }
            if self.poll_body(cx)?.is_pending() {
                self.waiting_on_client = true;
                // Whatever a TLS stream still holds goes out while we wait.
                let _ = Pin::new(io).poll_flush(cx).map_err(UploadError::Upstream)?;
                return Poll::Pending;
            }
        }
    }

    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.out.front_mut() else { return };
            if n >= front.len() {
                n -= front.len();
                self.out.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// Queues the client's next body frame, if it has one ready.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UploadError>> {
        let Some(body) = self.body.as_mut() else { return Poll::Ready(Ok(())) };
        match ready!(Pin::new(body).poll_frame(cx)) {
            None => {
                self.body = None;
                if self.chunked {
                    self.out.push_back(h1::chunked_end(None));
                }
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if data.is_empty() => {}
                Ok(data) => {
                    if self.chunked {
                        self.out.push_back(h1::chunk_prefix(data.len()));
                        self.out.push_back(data);
                        self.out.push_back(Bytes::from_static(b"\r\n"));
                    } else {
                        self.out.push_back(data);
                    }
                }
                Err(frame) => {
                    // Trailers end the body; only chunked framing can carry them.
                    self.body = None;
                    if self.chunked {
                        self.out.push_back(h1::chunked_end(frame.trailers_ref()));
                    }
                }
            },
            Some(Err(e)) => {
                self.body = None;
                return Poll::Ready(Err(UploadError::Client(e)));
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// A response body read from the upstream connection as it is polled. At
/// its end the connection goes back to the idle list when it can be reused.
pub struct UpstreamBody {
    conn: Option<Conn>,
    read: Read,
    keep_alive: bool,
    /// A request body still being sent (the upstream answered early).
    upload: Option<Box<Upload>>,
    /// How long the body may go without a byte from the upstream.
    stall_timeout: Duration,
    /// Armed the first time a read has to wait (most bodies come with their
    /// head and never need it); pushed back whenever bytes came since.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    read_since_armed: bool,
}

enum Read {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Upgrade,
    /// The chunked body's trailer fields, still to be handed on.
    Trailers(Box<http::HeaderMap>),
    Done,
}

/// An upstream connection after `101 Switching Protocols`, with the bytes
/// of the new protocol already read.
pub struct Upgraded {
    pub io: UpstreamIo,
    pub buffered: Bytes,
}

impl UpstreamBody {
    fn new(
        conn: Conn,
        framing: ResponseFraming,
        keep_alive: bool,
        upload: Option<Box<Upload>>,
        stall_timeout: Duration,
    ) -> UpstreamBody {
        let read = match framing {
            ResponseFraming::Empty => Read::Done,
            ResponseFraming::Length(n) => Read::Length(n),
            ResponseFraming::Chunked => Read::Chunked(ChunkedDecoder::default()),
            ResponseFraming::UntilClose => Read::UntilClose,
            ResponseFraming::Upgrade => Read::Upgrade,
        };
        let mut body = UpstreamBody {
            conn: Some(conn),
            read,
            keep_alive,
            upload,
            stall_timeout,
            stall: None,
            read_since_armed: false,
        };
        if matches!(body.read, Read::Done) {
            body.finish();
        }
        body
    }

    /// The connection after a `101`: it now carries the upgraded protocol.
    pub fn into_upgraded(mut self) -> Option<Upgraded> {
        if !matches!(self.read, Read::Upgrade) {
            return None;
        }
        let mut conn = self.conn.take()?;
        Some(Upgraded { io: conn.wire.io, buffered: conn.wire.rbuf.split().freeze() })
    }

    /// The body was read to its end.
    fn finish(&mut self) {
        self.read = Read::Done;
        let Some(conn) = self.conn.take() else { return };
        if self.keep_alive && self.upload.is_none() && conn.wire.rbuf.is_empty() {
            conn.release(Instant::now());
        }
    }

    fn poll_upload(&mut self, cx: &mut Context<'_>) -> Result<(), UpstreamError> {
        let (Some(up), Some(conn)) = (self.upload.as_mut(), self.conn.as_mut()) else { return Ok(()) };
        match up.poll(cx, &mut conn.wire.io) {
            Poll::Pending => {}
            Poll::Ready(Ok(())) => self.upload = None,
            Poll::Ready(Err(UploadError::Upstream(e))) => {
                tracing::debug!(error = %e, "upstream stopped reading the request body after answering");
                self.upload = None;
                self.keep_alive = false;
            }
            Poll::Ready(Err(UploadError::Client(e))) => {
                self.conn = None;
                return Err(UpstreamError::ClientBody(e));
            }
        }
        Ok(())
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = self.get_mut();
        if let Err(e) = this.poll_upload(cx) {
            this.read = Read::Done;
            return Poll::Ready(Some(Err(e)));
        }
        if let Read::Trailers(_) = this.read {
            let Read::Trailers(t) = std::mem::replace(&mut this.read, Read::Done) else { unreachable!() };
            return Poll::Ready(Some(Ok(Frame::trailers(*t))));
        }
        loop {
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            let wire = &mut conn.wire;
            match &mut this.read {
                Read::Done | Read::Upgrade | Read::Trailers(_) => return Poll::Ready(None),
                Read::Length(left) => {
                    if !wire.rbuf.is_empty() {
                        let take = (wire.rbuf.len() as u64).min(*left) as usize;
                        let data = wire.rbuf.split_to(take).freeze();
                        *left -= take as u64;
                        if *left == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Read::Chunked(dec) => match dec.decode(&mut wire.rbuf) {
                    Ok(Chunk::Data(data)) => {
                        // Read the terminator if it is already here, so the
                        // end is seen with the last data (and the connection
                        // released without another poll).
                        if let Ok(true) = dec.at_end(&mut wire.rbuf) {
                            let trailers = dec.take_trailers();
                            this.finish();
                            if let Some(t) = trailers {
                                this.read = Read::Trailers(t);
                            }
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(Chunk::End) => {
                        let trailers = dec.take_trailers();
                        this.finish();
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(*t))));
                    }
                    Ok(Chunk::NeedMore) => {}
                    Err(e) => {
                        this.conn = None;
                        this.read = Read::Done;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
                Read::UntilClose => {
                    if !wire.rbuf.is_empty() {
                        let data = wire.rbuf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            let filled = match wire.poll_fill(cx) {
                Poll::Ready(r) => r,
                Poll::Pending => {
                    // Nothing from the upstream: a body that stalls for the
                    // stall timeout is cut, instead of holding the client,
                    // the connection and the in-flight count forever.
                    match this.stall.as_mut() {
                        None => this.stall = Some(Box::pin(tokio::time::sleep(this.stall_timeout))),
                        Some(t) if this.read_since_armed => {
                            t.as_mut().reset(tokio::time::Instant::now() + this.stall_timeout)
                        }
                        Some(_) => {}
                    }
                    this.read_since_armed = false;
                    if let Some(t) = this.stall.as_mut() {
                        if std::future::Future::poll(t.as_mut(), cx).is_ready() {
                            if let Some(conn) = &this.conn {
                                tracing::warn!(endpoint = %conn.endpoint.addr, timeout = ?this.stall_timeout, "upstream response body stalled; cutting it");
                            }
                            metrics::counter!("spillway_proxy_errors_total", "kind" => "upstream_body_stalled")
                                .increment(1);
                            this.conn = None;
                            this.read = Read::Done;
                            return Poll::Ready(Some(Err(UpstreamError::BodyStalled(this.stall_timeout))));
                        }
                    }
                    return Poll::Pending;
                }
            };
            this.read_since_armed = true;
            match filled {
                Ok(0) => {
                    let missing = match this.read {
                        Read::UntilClose => {
                            this.keep_alive = false;
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Read::Length(left) => left,
                        _ => 0,
                    };
                    this.conn = None;
                    this.read = Read::Done;
                    return Poll::Ready(Some(Err(UpstreamError::ClosedInBody(missing))));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    this.read = Read::Done;
                    return Poll::Ready(Some(Err(UpstreamError::Read(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.read, Read::Done | Read::Upgrade)
    }

    fn size_hint(&self) -> SizeHint {
        match self.read {
            Read::Length(n) => SizeHint::with_exact(n),
            Read::Done | Read::Upgrade => SizeHint::with_exact(0),
            Read::Chunked(_) | Read::UntilClose | Read::Trailers(_) => SizeHint::default(),
        }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamBody")
    }
}
