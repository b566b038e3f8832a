//! The response body, read from the upstream connection as it is polled,
//! and the connection after a `101` (`Upgraded`).
//!
//! Invariants: the connection goes back to its idle list only at the end of
//! the body and only when `State::can_reuse` says so; on any error it is
//! dropped (closed). A request body the upstream answered early keeps going
//! out while the body is read. A body that gets no byte for the stall
//! timeout is cut.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

use crate::telemetry::catalog;
use crate::upstream::connector::UpstreamIo;
use crate::upstream::decode::Decoded;

use super::state::{KeepAlive, Reading, State, Writing};
use super::upload::{Upload, UploadError};
use super::{Conn, UpstreamError};

/// A response body read from the upstream connection as it is polled. At
/// its end the connection goes back to the idle list when it can be reused.
pub(crate) struct UpstreamBody {
    conn: Option<Conn>,
    state: State<Box<Upload>>,
    stall: Stall,
    /// The connection went back to its idle list at the end of the body.
    pooled: bool,
}

/// The stall timer: armed the first time a read has to wait (most bodies
/// come with their head and never need it); pushed back whenever bytes came
/// since.
struct Stall {
    /// How long the body may go without a byte from the upstream.
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    read_since_armed: bool,
}

/// An upstream connection after `101 Switching Protocols`, with the bytes
/// of the new protocol already read.
pub(crate) struct Upgraded {
    pub(crate) io: UpstreamIo,
    pub(crate) buffered: Bytes,
}

type Polled = Poll<Option<Result<Frame<Bytes>, UpstreamError>>>;

impl UpstreamBody {
    pub(super) fn new(conn: Conn, state: State<Box<Upload>>, stall_timeout: Duration) -> UpstreamBody {
        let stall = Stall { timeout: stall_timeout, timer: None, read_since_armed: false };
        let mut body = UpstreamBody { conn: Some(conn), state, stall, pooled: false };
        if matches!(body.state.reading, Reading::Done) {
            body.finish();
        }
        body
    }

    /// The connection after a `101`: it now carries the upgraded protocol.
    pub(crate) fn into_upgraded(mut self) -> Option<Upgraded> {
        if !matches!(self.state.reading, Reading::Upgrade) {
            return None;
        }
        let mut conn = self.conn.take()?;
        Some(Upgraded { io: conn.wire.io, buffered: conn.wire.rbuf.split().freeze() })
    }

    /// The body was read to its end.
    fn finish(&mut self) {
        self.state.reading = Reading::Done;
        let Some(conn) = self.conn.take() else { return };
        if self.state.can_reuse(conn.wire.rbuf.len()) {
            conn.release(Instant::now());
            self.pooled = true;
        }
    }

    /// The body ended and its connection went back to the idle list.
    pub(super) fn pooled(&self) -> bool {
        self.pooled
    }

    /// The body is given up: the connection is closed.
    fn fail(&mut self, e: UpstreamError) -> Polled {
        self.conn = None;
        self.state.reading = Reading::Done;
        Poll::Ready(Some(Err(e)))
    }

    fn poll_upload(&mut self, cx: &mut Context<'_>) -> Result<(), UpstreamError> {
        let (Writing::Body(up), Some(conn)) = (&mut self.state.writing, self.conn.as_mut()) else { return Ok(()) };
        match up.poll(cx, &mut conn.wire.io) {
            Poll::Pending => {}
            Poll::Ready(Ok(())) => self.state.writing = Writing::Done,
            Poll::Ready(Err(UploadError::Upstream(e))) => {
                tracing::debug!(error = %e, "upstream stopped reading the request body after answering");
                self.state.writing = Writing::Closed;
            }
            Poll::Ready(Err(UploadError::Client(e))) => {
                self.conn = None;
                return Err(UpstreamError::ClientBody(e));
            }
        }
        Ok(())
    }

    /// A frame from what is buffered, or None: read more.
    fn poll_buffered(&mut self) -> Option<Polled> {
        let Some(conn) = self.conn.as_mut() else { return Some(Poll::Ready(None)) };
        let Reading::Body(dec) = &mut self.state.reading else { return Some(Poll::Ready(None)) };
        let rbuf = &mut conn.wire.rbuf;
        match dec.decode(rbuf) {
            Ok(Decoded::Data(data)) => {
                // Read the end if it is already here, so it is seen with the
                // last data (and the connection released without another poll).
                if let Ok(true) = dec.at_end(rbuf) {
                    let trailers = dec.take_trailers();
                    self.finish();
                    if let Some(t) = trailers {
                        self.state.reading = Reading::Trailers(t);
                    }
                }
                Some(Poll::Ready(Some(Ok(Frame::data(data)))))
            }
            Ok(Decoded::End) => {
                let trailers = dec.take_trailers();
                self.finish();
                Some(Poll::Ready(trailers.map(|t| Ok(Frame::trailers(*t)))))
            }
            Ok(Decoded::NeedMore) => None,
            Err(e) => Some(self.fail(e.into())),
        }
    }

    /// Reads from the socket; None when bytes came (decode them).
    fn poll_socket(&mut self, cx: &mut Context<'_>) -> Option<Polled> {
        let Some(conn) = self.conn.as_mut() else { return Some(Poll::Ready(None)) };
        let filled = match conn.wire.poll_fill(cx) {
            Poll::Ready(r) => r,
            Poll::Pending => return Some(self.poll_stall(cx)),
        };
        self.stall.read_since_armed = true;
        match filled {
            Ok(0) => Some(self.closed()),
            Ok(_) => None,
            Err(e) => Some(self.fail(UpstreamError::Read(e))),
        }
    }

    /// The upstream closed the connection: the end of a close-delimited
    /// body, or a body cut short.
    fn closed(&mut self) -> Polled {
        let closed = match &self.state.reading {
            Reading::Body(dec) => dec.at_close(),
            _ => Err(0),
        };
        match closed {
            Ok(()) => {
                self.state.keep_alive = KeepAlive::Refused;
                self.finish();
                Poll::Ready(None)
            }
            Err(missing) => self.fail(UpstreamError::ClosedInBody(missing)),
        }
    }

    /// Nothing from the upstream: a body that stalls for the stall timeout
    /// is cut, instead of holding the client, the connection and the
    /// in-flight count forever.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Polled {
        if self.stall.poll(cx).is_pending() {
            return Poll::Pending;
        }
        if let Some(conn) = &self.conn {
            tracing::warn!(endpoint = %conn.endpoint.addr, timeout = ?self.stall.timeout, "upstream response body stalled; cutting it");
        }
        metrics::counter!(catalog::PROXY_ERRORS, "kind" => "upstream_body_stalled").increment(1);
        self.fail(UpstreamError::BodyStalled(self.stall.timeout))
    }
}

impl Stall {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.timer.as_mut() {
            None => self.timer = Some(Box::pin(tokio::time::sleep(self.timeout))),
            Some(t) if self.read_since_armed => t.as_mut().reset(tokio::time::Instant::now() + self.timeout),
            Some(_) => {}
        }
        self.read_since_armed = false;
        match self.timer.as_mut() {
            Some(t) => t.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        if let Err(e) = this.poll_upload(cx) {
            this.state.reading = Reading::Done;
            return Poll::Ready(Some(Err(e)));
        }
        if let Reading::Trailers(_) = this.state.reading {
            let Reading::Trailers(t) = std::mem::replace(&mut this.state.reading, Reading::Done) else {
                unreachable!()
            };
            return Poll::Ready(Some(Ok(Frame::trailers(*t))));
        }
        loop {
            if let Some(polled) = this.poll_buffered() {
                return polled;
            }
            if let Some(polled) = this.poll_socket(cx) {
                return polled;
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.state.is_mid_message()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state.reading {
            Reading::Body(dec) => dec.remaining().map_or_else(SizeHint::default, SizeHint::with_exact),
            Reading::Done | Reading::Upgrade => SizeHint::with_exact(0),
            Reading::Init | Reading::Head | Reading::Trailers(_) => SizeHint::default(),
        }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamBody")
    }
}
