//! The request on its way out: the head, then the client's body frames,
//! chunk-framed when the length is unknown.
//!
//! Invariants: bytes leave in the order they were queued; a single queued
//! buffer goes out with one `send(2)` (`poll_write`), several with
//! `writev(2)`; `written_any` turns true with the first byte the kernel took
//! and never back.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body::Body as _;
use tokio::io::AsyncWrite;

use crate::upstream::connector::UpstreamIo;
use crate::upstream::h1;

use super::{BoxError, RequestBody};

pub(super) enum UploadError {
    Upstream(io::Error),
    Client(BoxError),
}

/// Bytes queued for the upstream, in order: the head, then body pieces.
/// The head has its own slot so a request without a body (most of them)
/// allocates no queue.
pub(super) struct Segments {
    pub(super) first: Option<Bytes>,
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
pub(super) struct Upload {
    pub(super) out: Segments,
    pub(super) body: Option<RequestBody>,
    chunked: bool,
    /// The kernel accepted at least one byte of this request.
    pub(super) written_any: bool,
    /// The last time the upload had to wait, it waited for the client's
    /// body (not for the upstream to take bytes).
    pub(super) waiting_on_client: bool,
    /// The head has not been written yet: try to send the first body frame with it.
    coalesce: bool,
}

impl Upload {
    pub(super) fn new(head: Bytes, body: Option<RequestBody>, chunked: bool) -> Upload {
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
    pub(super) fn poll(&mut self, cx: &mut Context<'_>, io: &mut UpstreamIo) -> Poll<Result<(), UploadError>> {
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
