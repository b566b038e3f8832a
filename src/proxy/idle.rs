//! An I/O wrapper that counts reads and writes, notes since when a write
//! has been refused (the peer's receive window is full) and since when a
//! request head has been arriving, so a watchdog can close a connection
//! after `idle_timeout` of silence, after `client_send_timeout` of a peer
//! that takes nothing, or after `header_read_timeout` of a head that does
//! not end. Counting instead of stamping keeps the clock off the per-read
//! path; the clock is read only when a write is refused and at the first
//! byte of each request head.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::calm::FrameTracker;
use crate::telemetry::catalog;

/// Made-up cancelled streams handed to h2 to trip its rapid-reset guard
/// (one more than `max_pending_accept_reset_streams`, see `listener`).
const CALM_RUN: u32 = 21;

/// What the I/O did, as the watchdog reads it.
#[derive(Debug)]
pub(crate) struct Activity {
    /// Reads and writes that moved bytes (a count, not a time).
    moves: AtomicU64,
    /// Milliseconds after `epoch` at which writing was first refused since
    /// the last accepted write; 0: not blocked.
    blocked_since: AtomicU64,
    epoch: Instant,
    /// The connection is over its cancel budget: tell the client to calm down.
    calm: std::sync::atomic::AtomicBool,
    read_waker: AtomicWaker,
    /// The client sent the HTTP/2 preface.
    h2: std::sync::atomic::AtomicBool,
    /// No request is open: the next byte read begins a request head.
    between_requests: std::sync::atomic::AtomicBool,
    /// Milliseconds after `epoch` at which the head now arriving began
    /// (the connection's start for its first); 0: no head is arriving.
    head_since: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity {
            moves: AtomicU64::new(0),
            blocked_since: AtomicU64::new(0),
            epoch: Instant::now(),
            calm: std::sync::atomic::AtomicBool::new(false),
            read_waker: AtomicWaker::new(),
            h2: std::sync::atomic::AtomicBool::new(false),
            between_requests: std::sync::atomic::AtomicBool::new(true),
            // The first head is timed from the connection's start.
            head_since: AtomicU64::new(1),
        })
    }

    /// A request head was read whole and a request opened.
    pub(crate) fn request_opened(&self) {
        self.between_requests.store(false, Relaxed);
        self.head_since.store(0, Relaxed);
    }

    /// The connection's last open request ended.
    pub(crate) fn requests_closed(&self) {
        self.between_requests.store(true, Relaxed);
    }

    /// How long the request head now arriving has taken, at `now` (`None`
    /// while no head is arriving: a request is open, or a kept-alive
    /// connection waits for its next request, which `idle_timeout` bounds).
    pub(crate) fn head_for(&self, now: Instant) -> Option<Duration> {
        match self.head_since.load(Relaxed) {
            0 => None,
            since => Some(Duration::from_millis(self.millis(now).saturating_sub(since))),
        }
    }

    fn read_some(&self) {
        self.moved();
        if self.between_requests.load(Relaxed) && self.head_since.load(Relaxed) == 0 {
            self.head_since.store(self.millis(Instant::now()), Relaxed);
        }
    }

    /// Asks the read side to make h2 send `GOAWAY ENHANCE_YOUR_CALM`
    /// (see `calm`); wakes a read waiting for the client.
    pub(crate) fn request_calm(&self) {
        self.calm.store(true, Relaxed);
        self.read_waker.wake();
    }

    pub(crate) fn calm_requested(&self) -> bool {
        self.calm.load(Relaxed)
    }

    /// Whether the client spoke HTTP/2 (its preface came), request or not.
    pub(crate) fn is_h2(&self) -> bool {
        self.h2.load(Relaxed)
    }

    pub(crate) fn moves(&self) -> u64 {
        self.moves.load(Relaxed)
    }

    /// How long writing has been refused, at `now` (zero if it is not).
    pub(crate) fn blocked_for(&self, now: Instant) -> Duration {
        match self.blocked_since.load(Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_millis(self.millis(now).saturating_sub(since)),
        }
    }

    fn millis(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn moved(&self) {
        self.moves.store(self.moves.load(Relaxed).wrapping_add(1), Relaxed);
    }

    fn wrote(&self) {
        self.moved();
        self.unblocked();
    }

    fn unblocked(&self) {
        if self.blocked_since.load(Relaxed) != 0 {
            self.blocked_since.store(0, Relaxed);
        }
    }

    fn refused(&self) {
        if self.blocked_since.load(Relaxed) == 0 {
            self.blocked_since.store(self.millis(Instant::now()), Relaxed);
        }
    }
}

pub(crate) struct IdleIo<T> {
    inner: T,
    activity: Arc<Activity>,
    /// Client connections only: where the client's HTTP/2 frames begin.
    frames: Option<FrameTracker>,
    /// Made-up frames still to hand to the reader, and how far it got.
    inject: Vec<u8>,
    injected: usize,
    /// Client connections only: the listener's byte counters.
    bytes: Option<Arc<ByteCounters>>,
}

/// `spillway_client_bytes_total` of one listener, in and out.
pub(crate) struct ByteCounters {
    pub(crate) read: metrics::Counter,
    pub(crate) written: metrics::Counter,
}

impl ByteCounters {
    pub(crate) fn new(listener: &str) -> Self {
        let of = |direction: &'static str| metrics::counter!(catalog::CLIENT_BYTES, "listener" => listener.to_string(), "direction" => direction);
        ByteCounters { read: of("in"), written: of("out") }
    }
}

impl<T> IdleIo<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Self {
        IdleIo { inner, activity, frames: None, inject: Vec::new(), injected: 0, bytes: None }
    }

    /// A client connection's I/O: also follows HTTP/2 framing, for `calm`.
    pub(crate) fn client(inner: T, activity: Arc<Activity>, bytes: Arc<ByteCounters>) -> Self {
        IdleIo { frames: Some(FrameTracker::default()), bytes: Some(bytes), ..IdleIo::new(inner, activity) }
    }

    fn after_write(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.activity.wrote();
                if let Some(b) = &self.bytes {
                    b.written.increment(*n as u64);
                }
            }
            Poll::Pending => self.activity.refused(),
            _ => {}
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(frames) = this.frames.as_ref().filter(|f| f.is_on()) {
            if this.inject.is_empty() && frames.at_boundary() && this.activity.calm_requested() {
                this.inject = frames.reset_run(CALM_RUN);
            }
            if this.injected < this.inject.len() {
                let n = buf.remaining().min(this.inject.len() - this.injected);
                buf.put_slice(&this.inject[this.injected..this.injected + n]);
                this.injected += n;
                return Poll::Ready(Ok(()));
            }
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &r {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.activity.read_some();
                if let Some(b) = &this.bytes {
                    b.read.increment((buf.filled().len() - before) as u64);
                }
                if let Some(frames) = this.frames.as_mut().filter(|f| f.is_on()) {
                    frames.feed(&buf.filled()[before..]);
                    if frames.past_preface() && !this.activity.is_h2() {
                        this.activity.h2.store(true, Relaxed);
                    }
                }
            }
            Poll::Pending if this.frames.as_ref().is_some_and(FrameTracker::is_on) => {
                this.activity.read_waker.register(cx.waker());
                // Asked while this read was starting: hand the frames over now.
                if this.activity.calm_requested() && this.inject.is_empty() {
                    cx.waker().wake_by_ref();
                }
            }
            _ => {}
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.after_write(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        match r {
            Poll::Pending => self.activity.refused(),
            Poll::Ready(Ok(())) => self.activity.unblocked(),
            Poll::Ready(Err(_)) => {}
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
