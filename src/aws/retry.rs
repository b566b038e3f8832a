//! Retries one AWS call while the failure is retryable (throttling, a prior
//! request in progress, an unreachable service), with jittered exponential
//! backoff on tokio's clock, stopping early on shutdown.
//!
//! Every failed attempt is logged and counted in
//! `spillway_aws_errors_total{api, kind}` (static labels, no formatting).

use std::future::Future;

use tokio_util::sync::CancellationToken;

use super::{AwsError, Backoff};
use crate::telemetry::catalog;

/// Attempts per call before the controller gives up until its next tick.
pub(crate) const DEFAULT_ATTEMPTS: u32 = 4;

#[derive(Debug)]
pub(crate) struct Retry {
    backoff: Backoff,
    attempts: u32,
    rng: fastrand::Rng,
}

impl Retry {
    /// `rng` is injected so tests replay their delays.
    pub(crate) fn new(backoff: Backoff, attempts: u32, rng: fastrand::Rng) -> Self {
        debug_assert!(attempts >= 1);
        Self { backoff, attempts: attempts.max(1), rng }
    }

    /// Runs `op` until it succeeds, fails for good, runs out of attempts, or
    /// `shutdown` fires during a backoff (then the last error is returned).
    pub(crate) async fn call<T, Fut>(
        &mut self,
        shutdown: &CancellationToken,
        mut op: impl FnMut() -> Fut,
    ) -> Result<T, AwsError>
    where
        Fut: Future<Output = Result<T, AwsError>>,
    {
        let mut attempt = 0;
        loop {
            let err = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            record(&err);
            attempt += 1;
            if !err.retryable() || attempt >= self.attempts {
                return Err(err);
            }
            let delay = self.backoff.delay(attempt - 1, &mut self.rng);
            tracing::warn!(api = err.api(), kind = err.kind(), ?delay, attempt, "AWS call failed; retrying: {err}");
            tokio::select! {
                () = shutdown.cancelled() => return Err(err),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// Counts a failed call.
pub(crate) fn record(err: &AwsError) {
    metrics::counter!(catalog::AWS_ERRORS, "api" => err.api(), "kind" => err.kind()).increment(1);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    fn throttled() -> AwsError {
        AwsError::Throttled { api: "Test", code: "Throttling".into() }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_throttling_then_succeeds() {
        let calls = AtomicU32::new(0);
        let mut retry = Retry::new(
            Backoff { base: Duration::from_secs(1), max: Duration::from_secs(8) },
            4,
            fastrand::Rng::with_seed(3),
        );
        let start = tokio::time::Instant::now();
        let out = retry
            .call(&CancellationToken::new(), || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(throttled())
                } else {
                    Ok(42)
                }
            })
            .await;
        assert_eq!(out, Ok(42));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Two backoffs: at least 0.5 s + 1 s.
        assert!(start.elapsed() >= Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_on_permanent_errors_and_after_attempts() {
        let calls = AtomicU32::new(0);
        let mut retry = Retry::new(Backoff::default(), 3, fastrand::Rng::with_seed(3));
        let rejected = AwsError::Rejected { api: "Test", code: "ValidationError".into(), message: String::new() };
        let out: Result<(), _> = retry
            .call(&CancellationToken::new(), || {
                calls.fetch_add(1, Ordering::SeqCst);
                let e = rejected.clone();
                async move { Err(e) }
            })
            .await;
        assert_eq!(out.unwrap_err().kind(), "rejected");
        assert_eq!(calls.swap(0, Ordering::SeqCst), 1);
        let out: Result<(), _> = retry
            .call(&CancellationToken::new(), || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(throttled()) }
            })
            .await;
        assert_eq!(out.unwrap_err().kind(), "throttled");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
