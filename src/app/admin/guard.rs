//! Who may call the admin API, as pure functions of the request head, the
//! configured token and `now`.
//!
//! With a token, every request needs `Authorization: Bearer <token>`. With
//! none (a loopback-only admin), a state-changing call (`POST /reload`) must
//! still prove it does not come from a web page in a browser on the host: it
//! must name a loopback host (a DNS-rebinding page sends its own name), must
//! carry no foreign `Origin`, and must be a non-simple request
//! (`Content-Type: application/json`), which a page can send cross-origin
//! only after a CORS preflight the admin never grants. Reloads asked over
//! the API spend a token of a bucket (`reload_burst`, one more per
//! `reload_interval`), whoever asks.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use http::{header, HeaderMap, Method, Uri};

use crate::aws::ratelimit::TokenBucket;

/// Why the admin refused a request; each maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// No or a wrong bearer token (401).
    Unauthorized,
    /// A state-changing call naming a host or origin off loopback (403).
    ForeignHost,
    /// A state-changing call a browser could send without a preflight (415).
    SimpleRequest,
    /// Too many reloads asked (429, retry after the duration).
    RateLimited(Duration),
    /// Two `Host` fields, or one that is not text (400, RFC 9112 §3.2).
    MalformedHost,
}

impl Refusal {
    /// The `reason` label of `spillway_admin_refused_total`.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::ForeignHost => "foreign_host",
            Refusal::SimpleRequest => "simple_request",
            Refusal::RateLimited(_) => "rate_limited",
            Refusal::MalformedHost => "malformed_host",
        }
    }
}

/// The part of a request the checks read.
pub(super) struct Head<'a> {
    pub(super) method: &'a Method,
    pub(super) uri: &'a Uri,
    pub(super) headers: &'a HeaderMap,
}

/// Checks the token, and without one the browser rules for calls that
/// change state.
pub(super) fn admit(head: &Head<'_>, token: Option<&str>) -> Result<(), Refusal> {
    match token {
        Some(token) => bearer_matches(head.headers, token).then_some(()).ok_or(Refusal::Unauthorized),
        None if changes_state(head.method) => not_from_a_browser(head),
        None => Ok(()),
    }
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let got = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    got.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn not_from_a_browser(head: &Head<'_>) -> Result<(), Refusal> {
    names_only_loopback(head)?;
    if let Some(origin) = text(head.headers, header::ORIGIN) {
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        if !authority.is_some_and(is_loopback_authority) {
            return Err(Refusal::ForeignHost);
        }
    }
    if !text(head.headers, header::CONTENT_TYPE).is_some_and(is_json) {
        return Err(Refusal::SimpleRequest);
    }
    Ok(())
}

/// The request names a host, and every host it names is loopback: the
/// absolute-form target's authority and the `Host` field alike (a request
/// naming two hosts gets the stricter reading, whichever a server would
/// take). A second `Host` field is malformed.
fn names_only_loopback(head: &Head<'_>) -> Result<(), Refusal> {
    let mut fields = head.headers.get_all(header::HOST).iter();
    let field = fields.next().map(|v| v.to_str().map_err(|_| Refusal::MalformedHost)).transpose()?;
    if fields.next().is_some() {
        return Err(Refusal::MalformedHost);
    }
    let target = head.uri.authority().map(|a| a.as_str());
    let mut named = target.into_iter().chain(field).peekable();
    if named.peek().is_none() || !named.all(is_loopback_authority) {
        return Err(Refusal::ForeignHost);
    }
    Ok(())
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `localhost`, a loopback IPv4 address or `[::1]`, with or without a port.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(h, _)| h),
        None => authority.split_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `application/json`, with any parameters (`; charset=utf-8`).
fn is_json(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json")
}

/// The bucket `POST /reload` spends from. The bucket is rebuilt (full) when
/// a reload changes its settings.
#[derive(Debug)]
pub(super) struct ReloadLimit {
    settings: (u32, Duration),
    bucket: TokenBucket,
}

impl ReloadLimit {
    pub(super) fn new(burst: u32, interval: Duration) -> Self {
        debug_assert!(burst >= 1 && !interval.is_zero());
        let bucket = TokenBucket::new(1.0 / interval.as_secs_f64(), f64::from(burst));
        ReloadLimit { settings: (burst, interval), bucket }
    }

    /// Takes a reload at `now`, or refuses with how long to wait for one.
    pub(super) fn admit(&mut self, burst: u32, interval: Duration, now: Instant) -> Result<(), Refusal> {
        if self.settings != (burst, interval) {
            *self = ReloadLimit::new(burst, interval);
        }
        self.bucket.try_take(now).map_err(Refusal::RateLimited)
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub(super) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
