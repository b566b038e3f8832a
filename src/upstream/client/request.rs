//! The request body the client sends upstream, its own type so the client
//! depends on no body type of the proxy: nothing, bytes in memory (probes),
//! or a client's streamed body (hyper's `Incoming`), its data bytes
//! optionally counted into a shared counter (the access log's `bytes_in`
//! of a body with no length: chunked, or HTTP/2 without `content-length`).
//!
//! Invariants: no boxing and no allocation of its own; size hints are
//! passed on as they are, so the request keeps its framing (a length stays
//! a `Content-Length`, an unknown length becomes chunked).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use super::BoxError;

#[derive(Default)]
pub(crate) enum RequestBody {
    #[default]
    Empty,
    /// Bytes in memory, sent in one frame.
    Full(Bytes),
    /// A client's request body, streamed as it comes.
    Client(Incoming),
    /// The same, adding each data frame's length to the counter.
    Counted(Incoming, Arc<AtomicU64>),
}

impl From<Incoming> for RequestBody {
    fn from(body: Incoming) -> RequestBody {
        RequestBody::Client(body)
    }
}

impl From<Bytes> for RequestBody {
    fn from(bytes: Bytes) -> RequestBody {
        if bytes.is_empty() {
            RequestBody::Empty
        } else {
            RequestBody::Full(bytes)
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this {
            RequestBody::Client(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            RequestBody::Counted(body, seen) => {
                let frame = Pin::new(body).poll_frame(cx).map_err(Into::into);
                if let Poll::Ready(Some(Ok(f))) = &frame {
                    if let Some(data) = f.data_ref() {
                        seen.fetch_add(data.len() as u64, Relaxed);
                    }
                }
                frame
            }
            RequestBody::Full(bytes) => {
                let data = std::mem::take(bytes);
                *this = RequestBody::Empty;
                Poll::Ready((!data.is_empty()).then(|| Ok(Frame::data(data))))
            }
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client(body) | RequestBody::Counted(body, _) => body.is_end_stream(),
            RequestBody::Full(bytes) => bytes.is_empty(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client(body) | RequestBody::Counted(body, _) => body.size_hint(),
            RequestBody::Full(bytes) => SizeHint::with_exact(bytes.len() as u64),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RequestBody::Empty => "RequestBody::Empty",
            RequestBody::Full(_) => "RequestBody::Full",
            RequestBody::Client(_) => "RequestBody::Client",
            RequestBody::Counted(..) => "RequestBody::Counted",
        })
    }
}
