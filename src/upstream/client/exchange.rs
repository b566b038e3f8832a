//! One exchange on a checked-out connection: the request goes out (its
//! body streamed) while the response head is awaited; interim (1xx) heads
//! are skipped. The result is the response, or a failure that says whether
//! the request may be sent again (`SendFailure`).
//!
//! Invariants: one deadline at a time (`Deadline`, on the connection's
//! one timer, `ConnTimer`): the upload's deadline while the request body
//! goes out, then the response timeout, which starts once the request is
//! out, so a slow uploader is not taken for a slow upstream. A request is handed back only when it had no body, went out
//! on a reused connection and not one byte of response came.

use std::future::poll_fn;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Response};

use crate::upstream::h1::{self, ResponseFraming, ResponseHead};

use super::body::UpstreamBody;
use super::state::{Reading, State, Writing};
use super::timer::ConnTimer;
use super::upload::{Upload, UploadError};
use super::{Abandon, Conn, Resend, SendFailure, Timeouts, UpstreamError};

/// The one deadline an exchange waits under, and which limit it enforces.
#[derive(Default)]
struct Deadline {
    /// A deadline is set on the connection's timer.
    armed: bool,
    /// The armed deadline is the upload's (else the response's).
    timing_upload: bool,
}

/// An exchange waiting for its response head. Dropped before the head
/// (the client reset or went away), it finishes in the background
/// (`abandoned.rs`). It borrows the exchange's state, which stays where the
/// exchange keeps it (moving it in and out cost a few hundred bytes of
/// copying per request).
pub(super) struct Pending<'a> {
    /// Left `Some` while the exchange waits; taken by the background task.
    pub(super) live: &'a mut Option<Live>,
    pub(super) method: &'a Method,
    pub(super) timeouts: Timeouts,
    /// None once the head is in (or the exchange failed): nothing to finish.
    pub(super) abandon: Option<&'a dyn Abandon>,
}

/// What an exchange in progress owns.
pub(super) struct Live {
    pub(super) conn: Conn,
    pub(super) state: State<Upload>,
    deadline: Deadline,
}

impl Pending<'_> {
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<ResponseHead, UpstreamError>> {
        match self.live.as_mut() {
            Some(live) => live.poll_head(cx, self.method, self.timeouts),
            None => Poll::Ready(Err(UpstreamError::ClosedBeforeHead)),
        }
    }
}

impl Live {
    pub(super) fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        method: &Method,
        timeouts: Timeouts,
    ) -> Poll<Result<ResponseHead, UpstreamError>> {
        self.conn.poll_head(cx, &mut self.state, &mut self.deadline, method, timeouts)
    }
}

impl Conn {
    pub(super) async fn exchange(
        self,
        upload: Upload,
        method: Method,
        timeouts: Timeouts,
        abandon: Option<&dyn Abandon>,
    ) -> Result<Response<UpstreamBody>, SendFailure> {
        // Kept only while it could be needed: a bodyless request on a
        // reused connection (the keep-alive race).
        let again = (self.reused && upload.body.is_none()).then(|| upload.out.first.clone()).flatten();
        let mut live = Some(Live { conn: self, state: State::new(upload), deadline: Deadline::default() });
        let mut pending = Pending { live: &mut live, method: &method, timeouts, abandon };
        let result = poll_fn(|cx| pending.poll_head(cx)).await;
        // Ended here: nothing for `Pending`'s drop to finish (it looks at
        // `abandon` before it takes the state).
        pending.abandon = None;
        drop(pending);
        let Some(Live { conn: mut this, state, .. }) = live else {
            unreachable!("only a dropped exchange gives its state away")
        };
        this.wire.timer.disarm();
        match result {
            Ok(head) => {
                let state = state.answered(head.keep_alive, head.framing);
                let body = UpstreamBody::new(this, state, timeouts.response);
                let mut resp = Response::new(body);
                *resp.status_mut() = head.status;
                *resp.version_mut() = head.version;
                *resp.headers_mut() = head.headers;
                Ok(resp)
            }
            Err(e) => Err(failure(e, &state, again, method)),
        }
    }

    /// Writes what it can of the request and reads until the final
    /// response head is in.
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        state: &mut State<Upload>,
        deadline: &mut Deadline,
        method: &Method,
        timeouts: Timeouts,
    ) -> Poll<Result<ResponseHead, UpstreamError>> {
        loop {
            self.poll_upload(cx, state, deadline)?;
            if !self.wire.rbuf.is_empty() {
                if let Some(head) = h1::parse_response_head(&mut self.wire.rbuf, method)? {
                    if head.status.is_informational() && head.framing != ResponseFraming::Upgrade {
                        continue; // 100 Continue, 103 Early Hints: the real answer follows.
                    }
                    return Poll::Ready(Ok(head));
                }
            }
            match self.wire.poll_fill(cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(UpstreamError::ClosedBeforeHead)),
                Poll::Ready(Ok(_)) => state.reading = Reading::Head,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(UpstreamError::Read(e))),
                Poll::Pending => {
                    return deadline.poll_expired(cx, &mut self.wire.timer, &state.writing, timeouts).map(Err)
                }
            }
        }
    }

    /// Sends what the socket takes of the request, if it is still going out.
    fn poll_upload(
        &mut self,
        cx: &mut Context<'_>,
        state: &mut State<Upload>,
        deadline: &mut Deadline,
    ) -> Result<(), UpstreamError> {
        let Writing::Body(up) = &mut state.writing else { return Ok(()) };
        match up.poll(cx, &mut self.wire.io) {
            Poll::Pending => {}
            Poll::Ready(Ok(())) => {
                state.writing = Writing::Done;
                deadline.upload_over();
            }
            Poll::Ready(Err(UploadError::Client(e))) => return Err(UpstreamError::ClientBody(e)),
            Poll::Ready(Err(UploadError::Upstream(e))) if !up.written_any => return Err(UpstreamError::Write(e)),
            // The upstream stopped reading mid-request; it may still have
            // answered (413, 401...): look for that.
            Poll::Ready(Err(UploadError::Upstream(e))) => {
                tracing::debug!(error = %e, "upstream stopped reading the request");
                state.writing = Writing::Closed;
                deadline.upload_over();
            }
        }
        Ok(())
    }
}

impl Deadline {
    /// The request is out (or the upstream stopped taking it): the
    /// upload's deadline, if armed, gives way to the response's.
    fn upload_over(&mut self) {
        if self.timing_upload {
            self.timing_upload = false;
            self.armed = false;
        }
    }

    /// Waiting: for the rest of the upload (its own deadline) or for the
    /// answer (the response timeout, from when the request is out).
    fn poll_expired(
        &mut self,
        cx: &mut Context<'_>,
        timer: &mut ConnTimer,
        writing: &Writing<Upload>,
        timeouts: Timeouts,
    ) -> Poll<UpstreamError> {
        if !self.armed {
            self.armed = true;
            self.timing_upload = matches!(writing, Writing::Body(_));
            let limit = if self.timing_upload { timeouts.upload } else { timeouts.response };
            timer.arm(tokio::time::Instant::now() + limit);
        }
        if timer.poll_expired(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(match writing {
            Writing::Body(up) if self.timing_upload && up.waiting_on_client => {
                UpstreamError::ClientBodyTimeout(timeouts.upload)
            }
            Writing::Body(_) if self.timing_upload => UpstreamError::ResponseTimeout(timeouts.upload),
            _ => UpstreamError::ResponseTimeout(timeouts.response),
        })
    }
}

/// What a failed exchange means for the request: sent again (`NotSent`,
/// `NoResponse`, which hand it back) or not (`Failed`).
fn failure(e: UpstreamError, state: &State<Upload>, again: Option<Bytes>, method: Method) -> SendFailure {
    // Only a request without a body can be handed back whole, and only
    // while not one byte of an answer came.
    let again = again.filter(|_| !state.read_any()).map(|head| Resend { head, method });
    match (e, again) {
        (e @ UpstreamError::Write(_), Some(again)) if !state.written_any() => SendFailure::NotSent(again, e),
        (e @ (UpstreamError::Write(_) | UpstreamError::Read(_) | UpstreamError::ClosedBeforeHead), Some(again)) => {
            SendFailure::NoResponse(again, e)
        }
        (e, _) => SendFailure::Failed(e),
    }
}
