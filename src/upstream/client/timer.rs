//! A connection's one timer, moved lazily (the idle-state handler's trick).
//!
//! Every exchange waits under a deadline (the upload's, then the
//! response's). A new `Sleep` per exchange cost a timer-wheel insertion
//! and removal, each under the driver's lock: about 500 instructions per
//! request. Here the connection keeps one registered sleep across its
//! exchanges. Arming sets the deadline that counts; the sleep is moved only
//! when it would fire *after* that deadline. One that fires before it is
//! re-armed to the real deadline and keeps waiting, so on a busy kept-alive
//! connection (each deadline a little later than the last) the wheel is
//! touched about once per timeout, not once per request.
//!
//! Invariant: `poll_expired` is `Ready` only once `now` has reached the
//! armed deadline; an early fire never counts as expiry.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

#[derive(Debug, Default)]
pub(super) struct ConnTimer {
    /// Registered with the timer driver at `sleep.deadline()`, which is at
    /// or before `deadline` while armed.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The deadline that counts; `None`: disarmed.
    deadline: Option<Instant>,
}

impl ConnTimer {
    /// From now on, waiting past `deadline` is expiry.
    pub(super) fn arm(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
        match self.sleep.as_mut() {
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            // It would fire too late: move it earlier.
            Some(sleep) if sleep.deadline() > deadline => sleep.as_mut().reset(deadline),
            // Firing early is fine: `poll_expired` re-arms it then.
            Some(_) => {}
        }
    }

    /// No deadline counts any more (the sleep stays registered: it fires at
    /// most once more, and the next `arm` reuses it).
    pub(super) fn disarm(&mut self) {
        self.deadline = None;
    }

    /// Ready once the armed deadline has passed; `Pending` while disarmed.
    pub(super) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (Some(deadline), Some(sleep)) = (self.deadline, self.sleep.as_mut()) else { return Poll::Pending };
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if sleep.deadline() >= deadline {
                return Poll::Ready(());
            }
            // An earlier exchange's deadline: wait on for this one's.
            sleep.as_mut().reset(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use super::*;

    fn expired(t: &mut ConnTimer) -> bool {
        t.poll_expired(&mut Context::from_waker(std::task::Waker::noop())).is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn expires_at_the_armed_deadline_and_not_before() {
        let mut t = ConnTimer::default();
        let start = Instant::now();
        t.arm(start + Duration::from_secs(10));
        poll_fn(|cx| t.poll_expired(cx)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_exchanges_sleep_firing_is_not_expiry() {
        let mut t = ConnTimer::default();
        let start = Instant::now();
        t.arm(start + Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(6)).await;
        // The next exchange on the connection: its deadline is later.
        t.arm(Instant::now() + Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!expired(&mut t), "the first deadline passed, the one that counts did not");
        poll_fn(|cx| t.poll_expired(cx)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(16));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_sleep() {
        let mut t = ConnTimer::default();
        let start = Instant::now();
        t.arm(start + Duration::from_secs(30));
        t.arm(start + Duration::from_secs(2));
        poll_fn(|cx| t.poll_expired(cx)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn disarmed_never_expires() {
        let mut t = ConnTimer::default();
        assert!(!expired(&mut t), "never armed");
        t.arm(Instant::now() + Duration::from_secs(1));
        t.disarm();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!expired(&mut t), "disarmed");
        t.arm(Instant::now() + Duration::from_secs(1));
        assert!(!expired(&mut t), "armed again from now");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(expired(&mut t));
    }
}
