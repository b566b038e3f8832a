//! A client-side token bucket: Route 53 allows 5 requests per second per
//! account, so the DNS controller spends a token before every call.
//!
//! [`TokenBucket`] is pure (time is an argument); [`RateLimiter`] is the thin
//! async shell that sleeps until a token is available.
//! Invariant: `0 ≤ tokens ≤ burst`.

use crate::sync::lock;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Route 53's documented rate, in requests per second.
pub(crate) const ROUTE53_RPS: f64 = 5.0;

#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket refilling at `rate_per_sec`, holding at most `burst` tokens.
    pub(crate) fn new(rate_per_sec: f64, burst: f64) -> Self {
        debug_assert!(rate_per_sec > 0.0 && burst >= 1.0);
        Self { rate_per_sec, burst, tokens: burst, last: None }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        }
        self.last = Some(now);
    }

    /// Takes a token at `now`, or says how long to wait for one.
    pub(crate) fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate_per_sec))
        }
    }
}

/// Shares a bucket between the calls of one controller.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    bucket: Mutex<TokenBucket>,
}

impl RateLimiter {
    pub(crate) fn new(bucket: TokenBucket) -> Self {
        Self { bucket: Mutex::new(bucket) }
    }

    /// The Route 53 limit: 5 requests/s, burst 5.
    pub(crate) fn route53() -> Self {
        Self::new(TokenBucket::new(ROUTE53_RPS, ROUTE53_RPS))
    }

    /// Waits (on tokio's clock) until a token is available and takes it.
    pub(crate) async fn acquire(&self) {
        loop {
            let now = tokio::time::Instant::now().into_std();
            let wait = lock(&self.bucket).try_take(now);
            match wait {
                Ok(()) => return,
                Err(d) => tokio::time::sleep(d.max(Duration::from_millis(1))).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5.0, 5.0);
        for _ in 0..5 {
            assert!(b.try_take(t0).is_ok());
        }
        let wait = b.try_take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.2).abs() < 1e-9, "{wait:?}");
        assert!(b.try_take(t0 + Duration::from_millis(200)).is_ok());
        assert!(b.try_take(t0 + Duration::from_millis(200)).is_err());
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert!(b.try_take(later).is_ok());
        }
        assert!(b.try_take(later).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_spaces_calls_at_the_rate() {
        let limiter = RateLimiter::route53();
        let start = tokio::time::Instant::now();
        for _ in 0..15 {
            limiter.acquire().await;
        }
        // 5 at once, then 10 more at 5/s: about 2 s.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(1990) && elapsed < Duration::from_millis(2100), "{elapsed:?}");
    }
}
