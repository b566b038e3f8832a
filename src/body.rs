//! The one body type that flows through the proxy, both ways: a streamed
//! hyper body, a small in-memory body (error pages, admin), or nothing.
//!
//! It never buffers a streamed body; it forwards frames as they come and
//! keeps hyper's size hints so framing (Content-Length vs chunked) survives.
//! An optional guard rides along and is dropped when the stream ends, so
//! "request finished" is observed at the last byte, not at the headers.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

/// What a proxied response body carries until its last byte: the request's
/// in-flight count and the upstream connection. At the end of the stream the
/// connection goes back to its keep-alive pool; a body dropped halfway (the
/// client went away) closes it instead.
pub struct Guard {
    pub in_flight: crate::burst::controller::InFlight,
    pub conn: Option<crate::upstream::client::Conn>,
}

impl Guard {
    fn finish(self) {
        if let Some(conn) = self.conn {
            conn.release(std::time::Instant::now());
        }
    }
}

pub struct Body {
    kind: Kind,
    guard: Option<Guard>,
}

enum Kind {
    Stream(Incoming),
    Full(Option<Bytes>),
}

impl Body {
    pub fn empty() -> Self {
        Body { kind: Kind::Full(None), guard: None }
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Body { kind: Kind::Full((!bytes.is_empty()).then_some(bytes)), guard: None }
    }

    pub fn stream(incoming: Incoming) -> Self {
        Body { kind: Kind::Stream(incoming), guard: None }
    }

    /// Attaches a guard that is released when the body ends or is dropped.
    pub fn with_guard(mut self, guard: Guard) -> Self {
        if self.is_end_stream_inner() {
            guard.finish();
        } else {
            self.guard = Some(guard);
        }
        self
    }

    fn is_end_stream_inner(&self) -> bool {
        match &self.kind {
            Kind::Stream(b) => http_body::Body::is_end_stream(b),
            Kind::Full(b) => b.is_none(),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.kind {
            Kind::Stream(b) => Pin::new(b).poll_frame(cx),
            Kind::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
        };
        match &polled {
            Poll::Ready(None) => {
                if let Some(g) = this.guard.take() {
                    g.finish();
                }
            }
            Poll::Ready(Some(Ok(_))) if this.is_end_stream_inner() => {
                if let Some(g) = this.guard.take() {
                    g.finish();
                }
            }
            // An error mid-body: the connection is not reusable.
            Poll::Ready(Some(Err(_))) => this.guard = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.is_end_stream_inner()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Stream(b) => b.size_hint(),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            Kind::Stream(_) => "Body::Stream",
            Kind::Full(_) => "Body::Full",
        })
    }
}
