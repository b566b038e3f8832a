//! The socket of one upstream connection and its read and write buffers,
//! kept across requests so their memory is reused.
//!
//! Invariant: `rbuf` holds only bytes of the exchange in progress; a
//! connection with bytes left in it is never reused (`State::can_reuse`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};

use crate::upstream::connector::UpstreamIo;

/// The socket of one upstream connection and its buffers (kept across
/// requests so their memory is reused).
pub(super) struct Wire {
    pub(super) io: UpstreamIo,
    pub(super) rbuf: BytesMut,
    pub(super) wbuf: BytesMut,
    /// The exchanges' deadlines, on one timer for the connection's life
    /// (it goes back to the idle list with the connection).
    pub(super) timer: super::timer::ConnTimer,
}

/// Smallest free space a read is given; below it the buffer grows.
const READ_MIN: usize = 2 * 1024;
const READ_CHUNK: usize = 16 * 1024;

impl Wire {
    pub(super) fn new(io: UpstreamIo) -> Wire {
        Wire {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(1024),
            timer: Default::default(),
        }
    }

    /// Whether an idle connection is still usable: a read must find nothing.
    /// End of stream, an error or unexpected bytes all retire it.
    pub(super) fn idle_ok(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        Pin::new(&mut self.io).poll_read(&mut cx, &mut buf).is_pending()
    }

    /// Reads what the socket has into `rbuf`; `Ok(0)` is end of stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
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
