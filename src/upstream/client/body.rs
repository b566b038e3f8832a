//! The response body, read from the upstream connection as it is polled,
//! and the connection after a `101` (`Upgraded`).
//!
//! Invariants: the connection goes back to its idle list only at the end of
//! the body and only when it can be reused; on any error it is dropped
//! (closed). A body that gets no byte for the stall timeout is cut.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::upstream::connector::UpstreamIo;
use crate::upstream::decode::{Decoded, Decoder};
use crate::upstream::h1::ResponseFraming;

use super::upload::{Upload, UploadError};
use super::{Conn, UpstreamError};

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
    Body(Decoder),
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
    pub(super) fn new(
        conn: Conn,
        framing: ResponseFraming,
        keep_alive: bool,
        upload: Option<Box<Upload>>,
        stall_timeout: Duration,
    ) -> UpstreamBody {
        let read = match framing {
            ResponseFraming::Empty => Read::Done,
            ResponseFraming::Length(n) => Read::Body(Decoder::Length(n)),
            ResponseFraming::Chunked => Read::Body(Decoder::chunked()),
            ResponseFraming::UntilClose => Read::Body(Decoder::Eof),
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
                Read::Body(dec) => match dec.decode(&mut wire.rbuf) {
                    Ok(Decoded::Data(data)) => {
                        // Read the end if it is already here, so it is seen
                        // with the last data (and the connection released
                        // without another poll).
                        if let Ok(true) = dec.at_end(&mut wire.rbuf) {
                            let trailers = dec.take_trailers();
                            this.finish();
                            if let Some(t) = trailers {
                                this.read = Read::Trailers(t);
                            }
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(Decoded::End) => {
                        let trailers = dec.take_trailers();
                        this.finish();
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(*t))));
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => {
                        this.conn = None;
                        this.read = Read::Done;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
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
                    let closed = match &this.read {
                        Read::Body(dec) => dec.at_close(),
                        _ => Err(0),
                    };
                    let Err(missing) = closed else {
                        this.keep_alive = false;
                        this.finish();
                        return Poll::Ready(None);
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
        match &self.read {
            Read::Body(dec) => dec.remaining().map_or_else(SizeHint::default, SizeHint::with_exact),
            Read::Done | Read::Upgrade => SizeHint::with_exact(0),
            Read::Trailers(_) => SizeHint::default(),
        }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamBody")
    }
}
