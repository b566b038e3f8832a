//! The named state of one exchange, after hyper's `proto/h1/conn.rs`: where
//! the response is (`Reading`), where the request is (`Writing`) and what
//! the response said about the connection (`KeepAlive`).
//!
//! `State::can_reuse` is the one place that decides whether a connection
//! goes back to its idle list; everything else only records facts. The
//! upload in progress is held inline while the response head is awaited
//! (`State<Upload>`) and boxed once the head is in (`State<Box<Upload>>`,
//! rare: an early answer or a full-duplex stream), so the response body
//! stays small to move.

use http::HeaderMap;

use crate::upstream::decode::Decoder;
use crate::upstream::h1::ResponseFraming;

use super::upload::Upload;

pub(super) struct State<U> {
    pub(super) reading: Reading,
    pub(super) writing: Writing<U>,
    pub(super) keep_alive: KeepAlive,
}

/// Where the response is.
pub(super) enum Reading {
    /// Not one byte of the response yet.
    Init,
    /// Part of the response head, or an interim (1xx) one, has come.
    Head,
    /// The body, as its framing delimits it.
    Body(Decoder),
    /// The chunked body's trailer fields, still to be handed on.
    Trailers(Box<HeaderMap>),
    /// After `101 Switching Protocols`: the bytes belong to the new protocol.
    Upgrade,
    /// Read to its end, or given up (the connection is then gone).
    Done,
}

/// Where the request is.
pub(super) enum Writing<U> {
    /// Going out: the head, then the body.
    Body(U),
    /// Sent whole.
    Done,
    /// The upstream stopped reading before the request was sent whole (it
    /// may still answer: a 413, a 401).
    Closed,
}

/// What the response allows for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeepAlive {
    /// No response head yet.
    Unknown,
    /// The response head allows another request on this connection.
    Allowed,
    /// The head, its version, its framing, or the upstream closing, says no.
    Refused,
    /// The upstream answered before the request was sent whole: its
    /// parser's state is unknown.
    AnsweredEarly,
}

impl State<Upload> {
    pub(super) fn new(upload: Upload) -> State<Upload> {
        State { reading: Reading::Init, writing: Writing::Body(upload), keep_alive: KeepAlive::Unknown }
    }

    /// At least one byte of the request reached the upstream.
    pub(super) fn written_any(&self) -> bool {
        match &self.writing {
            Writing::Body(up) => up.written_any,
            // Done and Closed both come after bytes were accepted.
            Writing::Done | Writing::Closed => true,
        }
    }

    /// The final response head is in: the state its body starts from.
    pub(super) fn answered(self, head_keep_alive: bool, framing: ResponseFraming) -> State<Box<Upload>> {
        let keep_alive = match self.writing {
            Writing::Body(_) | Writing::Closed => KeepAlive::AnsweredEarly,
            Writing::Done if head_keep_alive => KeepAlive::Allowed,
            Writing::Done => KeepAlive::Refused,
        };
        let writing = match self.writing {
            Writing::Body(up) => Writing::Body(Box::new(up)),
            Writing::Done => Writing::Done,
            Writing::Closed => Writing::Closed,
        };
        State { reading: Reading::for_framing(framing), writing, keep_alive }
    }
}

impl<U> State<U> {
    /// Bytes of the response (or of an interim one) have come.
    pub(super) fn read_any(&self) -> bool {
        !matches!(self.reading, Reading::Init)
    }

    /// Whether the connection may carry the next request: the response read
    /// to its end with nothing after it (`unread` bytes would be taken for
    /// the next response), the request sent whole before the answer, and
    /// the response allowing it.
    #[inline]
    pub(super) fn can_reuse(&self, unread: usize) -> bool {
        self.keep_alive == KeepAlive::Allowed
            && matches!(self.writing, Writing::Done)
            && matches!(self.reading, Reading::Done)
            && unread == 0
    }

    /// The response (head and body) is not over yet.
    pub(super) fn is_mid_message(&self) -> bool {
        !matches!(self.reading, Reading::Done | Reading::Upgrade)
    }
}

impl Reading {
    fn for_framing(framing: ResponseFraming) -> Reading {
        match framing {
            ResponseFraming::Empty => Reading::Done,
            ResponseFraming::Length(n) => Reading::Body(Decoder::Length(n)),
            ResponseFraming::Chunked => Reading::Body(Decoder::chunked()),
            ResponseFraming::UntilClose => Reading::Body(Decoder::Eof),
            ResponseFraming::Upgrade => Reading::Upgrade,
        }
    }
}
