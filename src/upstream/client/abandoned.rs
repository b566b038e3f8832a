//! An exchange whose client went away (an HTTP/2 reset, a closed
//! connection) after its request reached the upstream: the origin is
//! working on it either way, so it is finished in the background instead of
//! being cut.
//!
//! - The request's in-flight slot (`Abandon::hand_over`) goes with it and is
//!   given back when the response head arrives, or the exchange fails or
//!   times out (`response_timeout`): cancelling cannot hand the origin more
//!   work than the gate admits, and the slot is not held a moment longer
//!   than the origin works.
//! - The response body is read and thrown away, up to `DRAIN_LIMIT` bytes
//!   and within `response_timeout`; read to its end, the connection goes
//!   back to its idle list as after any exchange (`State::can_reuse`), so a
//!   run of cancelled requests does not cost the origin a new connection
//!   each. Larger or slower bodies, and a request whose body was still
//!   coming from the client, close the connection.
//! - Without a runtime (the process is shutting down), nothing is spawned:
//!   the connection closes and the slot is given back at once.

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use http::Method;
use http_body::Body as _;

use crate::telemetry::catalog;
use crate::upstream::h1::ResponseFraming;

use super::body::UpstreamBody;
use super::exchange::{Live, Pending};
use super::state::Writing;
use super::Timeouts;

/// Whoever sends a request says what its exchange keeps if it is dropped
/// before the response head: the request's in-flight slot.
pub(crate) trait Abandon: Sync {
    /// Hands over what the request holds while it is at the upstream; the
    /// request itself then no longer holds it.
    fn hand_over(&self) -> Box<dyn Send>;
}

/// The most of a response body a cancelled exchange reads (and throws
/// away) to keep its connection; a longer body closes it.
pub(super) const DRAIN_LIMIT: u64 = 256 * 1024;

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let Some(live) = self.live.take() else { return };
        let Some(abandon) = self.abandon else { return };
        // A request body still coming from a client that is gone cannot be
        // finished: closing tells the origin the request is cut.
        if matches!(&live.state.writing, Writing::Body(up) if up.body.is_some()) {
            outcome("closed");
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let slot = abandon.hand_over();
        rt.spawn(finish(live, slot, self.method.clone(), self.timeouts));
    }
}

/// Waits for the answer, gives the slot back, then drains the body.
async fn finish(mut live: Live, slot: Box<dyn Send>, method: Method, timeouts: Timeouts) {
    let head = poll_fn(|cx| live.poll_head(cx, &method, timeouts)).await;
    live.conn.wire.timer.disarm();
    drop(slot);
    let head = match head {
        Ok(head) if head.framing != ResponseFraming::Upgrade => head,
        Ok(_) => return outcome("closed"),
        Err(e) => {
            tracing::debug!(error = %e, "a cancelled request's exchange failed");
            return outcome("failed");
        }
    };
    let Live { conn, state, .. } = live;
    let body = UpstreamBody::new(conn, state.answered(head.keep_alive, head.framing), timeouts.response);
    let drained = tokio::time::timeout(timeouts.response.max(Duration::from_millis(1)), drain(body)).await;
    outcome(match drained {
        Ok(Ok(())) => "answered",
        Ok(Err(Cut::TooLong)) | Err(_) => "closed",
        Ok(Err(Cut::Failed)) => "failed",
    });
}

enum Cut {
    TooLong,
    Failed,
}

/// Reads the body to its end (the connection then goes back to its idle
/// list), or gives up past `DRAIN_LIMIT` bytes.
async fn drain(mut body: UpstreamBody) -> Result<(), Cut> {
    if body.size_hint().exact().is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(Cut::TooLong);
    }
    let mut left = DRAIN_LIMIT;
    loop {
        match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => return Ok(()),
            Some(Ok(frame)) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                left = left.checked_sub(n).ok_or(Cut::TooLong)?;
            }
            Some(Err(_)) => return Err(Cut::Failed),
        }
    }
}

fn outcome(outcome: &'static str) {
    metrics::counter!(catalog::UPSTREAM_ABANDONED, "outcome" => outcome).increment(1);
}
