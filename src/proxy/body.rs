//! The body of every response Spillway sends: an upstream response body
//! (`upstream::client`), a small in-memory body (error pages, admin), or
//! nothing. (Request bodies go upstream as `upstream::client::RequestBody`.)
//!
//! It never buffers a streamed body; it forwards frames as they come and
//! keeps the size hints so framing (Content-Length vs chunked) survives.
//! An optional in-flight guard rides along and is dropped when the stream
//! ends, so "request finished" is observed at the last byte, not at the
//! headers.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::ActiveRequest;
use crate::gate::InFlight;
use crate::upstream::client::UpstreamBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct Body {
    kind: Kind,
    guard: Option<InFlight>,
    /// The client request this body answers, until its last frame.
    request: Option<ActiveRequest>,
}

// Lives in the response; boxing the upstream body would allocate per request.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Upstream(UpstreamBody),
    Full(Option<Bytes>),
}

impl Body {
    pub fn empty() -> Self {
        Body { kind: Kind::Full(None), guard: None, request: None }
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Body { kind: Kind::Full((!bytes.is_empty()).then_some(bytes)), guard: None, request: None }
    }

    /// An upstream's response body, on its way to the client.
    pub(crate) fn upstream(body: UpstreamBody) -> Self {
        Body { kind: Kind::Upstream(body), guard: None, request: None }
    }

    /// Attaches a guard that is released when the body ends or is dropped.
    pub(crate) fn with_guard(mut self, guard: InFlight) -> Self {
        if !self.is_end_stream_inner() {
            self.guard = Some(guard);
        }
        self
    }

    /// Ties the body to its client request: the request ends with the
    /// body's last frame (or with an error), and while the client has not
    /// taken a frame (HTTP/2) the request says so. A body dropped before
    /// its end cancels the request.
    pub(crate) fn attach_request(&mut self, mut request: ActiveRequest) {
        if self.is_end_stream_inner() {
            request.finish();
        } else {
            self.request = Some(request);
        }
    }

    fn is_end_stream_inner(&self) -> bool {
        match &self.kind {
            Kind::Upstream(b) => http_body::Body::is_end_stream(b),
            Kind::Full(b) => b.is_none(),
        }
    }
}

impl Body {
    /// The last frame (or an error) is out: the in-flight slot and the
    /// request end here, not when hyper drops the body.
    fn end(&mut self) {
        self.guard = None;
        if let Some(mut r) = self.request.take() {
            r.finish();
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(r) = &this.request {
            r.not_waiting();
        }
        let polled: Poll<Option<Result<Frame<Bytes>, BoxError>>> = match &mut this.kind {
            Kind::Upstream(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Kind::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
        };
        if let (Poll::Ready(Some(Ok(frame))), Some(r)) = (&polled, &mut this.request) {
            r.sent(frame.data_ref().map_or(0, Bytes::len));
        }
        match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.end(),
            Poll::Ready(Some(Ok(_))) if this.is_end_stream_inner() => this.end(),
            Poll::Ready(Some(Ok(_))) => {
                if let Some(r) = &this.request {
                    r.waiting_for_client();
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.is_end_stream_inner()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream(b) => b.size_hint(),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            Kind::Upstream(_) => "Body::Upstream",
            Kind::Full(_) => "Body::Full",
        })
    }
}
