//! The signed pin cookie on the request path (`[spill.pin_token]`, over
//! the pure `burst::pin_token`): a request's pin cookies judged once, when
//! the gate asks or the origin is told (`forward_header`), and counted; the
//! `Set-Cookie` of a write that succeeded. The wall clock is read here,
//! only when a token is judged or signed.

use std::cell::OnceCell;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Request};

use crate::burst::{pin_token, pin_window, PinVerdict};
use crate::config::{Config, PinTokenConfig};
use crate::request::method::cookie_values;
use crate::telemetry::catalog;

/// One request's pin cookies, judged at most once.
pub(super) struct TokenCheck<'c, 'q, B> {
    config: &'c PinTokenConfig,
    pin_time: Duration,
    req: &'q Request<B>,
    /// The overflow pool's replica lag as published by the last tick.
    lag: Option<Duration>,
    verdict: OnceCell<Option<PinVerdict>>,
}

impl<'c, 'q, B> TokenCheck<'c, 'q, B> {
    /// `None` without `[spill.pin_token]` or with pinning off.
    /// `lag` is asked only then.
    pub(super) fn new(config: &'c Config, req: &'q Request<B>, lag: impl FnOnce() -> Option<Duration>) -> Option<Self> {
        let spill = &config.spill;
        let config = config.pin_token.as_ref().filter(|_| !spill.pin_after_write.is_zero())?;
        Some(TokenCheck { config, pin_time: spill.pin_after_write, req, lag: lag(), verdict: OnceCell::new() })
    }

    /// The best verdict over the request's pin cookies (`None`: it sent
    /// none); the first call judges and counts it.
    pub(super) fn verdict(&self) -> Option<PinVerdict> {
        *self.verdict.get_or_init(|| {
            let c = self.config;
            let window = pin_window(self.pin_time, self.lag, c.lag_margin, c.lag_aware);
            let texts = cookie_values(self.req, &c.cookie_name);
            let verdict = c.keys.judge_all(texts, unix_ms(SystemTime::now()), self.pin_time, window)?;
            metrics::counter!(catalog::PIN_TOKENS, "result" => verdict.as_str()).increment(1);
            Some(verdict)
        })
    }

    /// Whether a genuine, fresh token keeps the read on-prem.
    pub(super) fn pins(&self) -> bool {
        self.verdict().is_some_and(|v| v.pins())
    }

    /// The header to the origin: its name, and the pin's end when a token pins.
    pub(super) fn forward(&self) -> Option<(&'c http::HeaderName, Option<u64>)> {
        let name = self.config.forward_header.as_ref()?;
        let until = match self.verdict() {
            Some(PinVerdict::Pinned { until_ms }) => Some(until_ms),
            _ => None,
        };
        Some((name, until))
    }
}

/// The `Set-Cookie` value for a write answered at `now` on `site`.
pub(super) fn set_cookie(config: &Config, tls: bool, now: SystemTime) -> Option<HeaderValue> {
    let spill = &config.spill;
    let c = config.pin_token.as_ref().filter(|_| !spill.pin_after_write.is_zero())?;
    let token = c.keys.sign(unix_ms(now), config.runtime.site.as_bytes());
    let cookie = pin_token::set_cookie(&c.cookie_name, &token, spill.pin_after_write, tls);
    // The name is a validated token and the value base64url: always a valid field.
    HeaderValue::try_from(cookie).ok()
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
