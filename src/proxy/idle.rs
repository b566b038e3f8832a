//! An I/O wrapper that counts reads and writes, and notes since when a
//! write has been refused (the peer's receive window is full), so a
//! watchdog can close a connection after `idle_timeout` of silence or
//! after `client_send_timeout` of a peer that takes nothing. Counting
//! instead of stamping keeps the clock off the per-read path; the clock is
//! read only when a write is refused.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the I/O did, as the watchdog reads it.
#[derive(Debug)]
pub(crate) struct Activity {
    /// Reads and writes that moved bytes (a count, not a time).
    moves: AtomicU64,
    /// Milliseconds after `epoch` at which writing was first refused since
    /// the last accepted write; 0: not blocked.
    blocked_since: AtomicU64,
    epoch: Instant,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity { moves: AtomicU64::new(0), blocked_since: AtomicU64::new(0), epoch: Instant::now() })
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
}

impl<T> IdleIo<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Self {
        IdleIo { inner, activity }
    }

    fn after_write(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.wrote(),
            Poll::Pending => self.activity.refused(),
            _ => {}
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.moved();
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
