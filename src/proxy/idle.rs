//! An I/O wrapper that counts reads and writes, so a connection's watchdog
//! can close it after `idle_timeout` of silence: the watchdog wakes every
//! `idle_timeout` and closes the connection when the count has not moved
//! since its previous wake (idle for between one and two timeouts). Counting
//! instead of stamping keeps the clock off the per-read path.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub(crate) struct IdleIo<T> {
    inner: T,
    last: Arc<AtomicU64>,
}

impl<T> IdleIo<T> {
    pub(crate) fn new(inner: T, activity: Arc<AtomicU64>) -> Self {
        IdleIo { inner, last: activity }
    }

    /// One writer (this connection's I/O), one reader (its watchdog): a
    /// plain load and store, no locked instruction.
    fn touch(&self) {
        self.last.store(self.last.load(Relaxed).wrapping_add(1), Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    /// Always false, so hyper copies a response's head and small body into
    /// one buffer and writes it with `send(2)`: on Linux a `writev(2)` on a
    /// socket goes through the VFS write path (permission hook, fsnotify,
    /// iovec import) and costs measurably more kernel time per request
    /// than `send(2)` of the same bytes (see benches/README.md).
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
