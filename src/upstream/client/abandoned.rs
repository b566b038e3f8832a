//! An exchange whose client went away (an HTTP/2 reset, a closed
//! connection) after its request reached the upstream: the origin is
//! working on it either way, so it is finished in the background instead of
//! being cut.
//!
//! - The request's in-flight slot (`Abandon::hand_over`) goes with it and
//!   is given back when the exchange ends, as a request's slot is at the
//!   last byte of its body: the origin works on the body too. A run of
//!   resets therefore cannot hand the origin more work than the gate admits.
//! - The response head is awaited within `response_timeout`; the body is
//!   then read and thrown away, up to `DRAIN_LIMIT` bytes and within
//!   `DRAIN_TIME`. Read to its end, the connection goes back to its idle
//!   list by the usual rule (`State::can_reuse`), so a run of cancelled
//!   requests does not cost the origin a new connection each. Longer or
//!   slower bodies, an upgrade, and a request whose body was still coming
//!   from the gone client close the connection (the last gives its slot
//!   back at once: the origin sees the request cut).
//! - At most `MAX_BACKGROUND` exchanges finish in the background at once
//!   (a pool the gate does not bound, such as the cloud in DR, cannot pile
//!   them up); over it a cancelled exchange closes its connection.
//! - Without a runtime (the process is shutting down), or while unwinding
//!   from a panic, nothing is spawned: the connection closes and the slot is
//!   given back at once.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
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

/// How long a cancelled exchange's body may take to arrive whole.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Exchanges finishing in the background at most, process-wide.
const MAX_BACKGROUND: usize = 1024;

static BACKGROUND: AtomicUsize = AtomicUsize::new(0);

/// One of the `MAX_BACKGROUND` places, given back when dropped.
struct Place;

impl Place {
    fn take() -> Option<Place> {
        BACKGROUND.fetch_update(Relaxed, Relaxed, |n| (n < MAX_BACKGROUND).then_some(n + 1)).ok().map(|_| Place)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        BACKGROUND.fetch_sub(1, Relaxed);
    }
}

// The exchange's normal end clears `abandon` before this runs (exchange.rs):
// `abandon` is checked first, and only then is the state taken.
impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let Some(abandon) = self.abandon else { return };
        if std::thread::panicking() {
            return;
        }
        let Some(live) = self.live.take() else { return };
        // A request body still coming from a client that is gone cannot be
        // finished: closing tells the origin the request is cut.
        if matches!(&live.state.writing, Writing::Body(up) if up.body.is_some()) {
            drop(abandon.hand_over());
            return outcome("closed");
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let Some(place) = Place::take() else {
            drop(abandon.hand_over());
            return outcome("overflow");
        };
        let slot = abandon.hand_over();
        rt.spawn(finish(live, (slot, place), self.method.clone(), self.timeouts));
    }
}

/// Waits for the answer and drains the body; the slot and the place are
/// given back when it ends.
async fn finish(mut live: Live, held: (Box<dyn Send>, Place), method: Method, timeouts: Timeouts) {
    let head = poll_fn(|cx| live.poll_head(cx, &method, timeouts)).await;
    live.conn.wire.timer.disarm();
    let head = match head {
        Ok(head) if head.framing != ResponseFraming::Upgrade => head,
        Ok(_) => return outcome("closed"),
        Err(e) => {
            tracing::debug!(error = %e, "a cancelled request's exchange failed");
            return outcome("failed");
        }
    };
    let Live { conn, state, .. } = live;
    let mut body = UpstreamBody::new(conn, state.answered(head.keep_alive, head.framing), timeouts.response);
    let drained = tokio::time::timeout(DRAIN_TIME.min(timeouts.response), drain(&mut body)).await;
    drop(held);
    outcome(match drained {
        Ok(Ok(())) if body.pooled() => "reused",
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
/// list if it may), or gives up past `DRAIN_LIMIT` bytes.
async fn drain(body: &mut UpstreamBody) -> Result<(), Cut> {
    if body.size_hint().exact().is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(Cut::TooLong);
    }
    let mut left = DRAIN_LIMIT;
    loop {
        match poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
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
