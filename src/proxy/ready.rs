//! The readiness endpoint on the proxy listeners (`listener.readiness_path`,
//! `/.spillway/ready` by default), for Route 53 health checks: answered by
//! Spillway itself for any Host, before routing, never proxied.
//!
//! Ready means this edge can serve its primary pools: shutdown has not
//! begun, and the primary pool of every route (routes apply to every
//! listener) is out of disaster recovery and has an endpoint its active
//! probes call healthy (a pool without probes counts as healthy). Passive
//! ejection is not asked: it follows a burst of failed requests, and DNS
//! should not. The verdict ([`verdict`]) is a pure function of those facts.

use http::{header, HeaderValue, Method, Response, StatusCode};

use super::body::Body;
use crate::gate::PoolMode;
use crate::runtime::Runtime;

/// What readiness says, and why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness<'a> {
    Ready,
    /// Shutdown has begun (`runtime.drain_delay`, then the drain).
    Draining,
    /// Disaster declared for this primary pool: its traffic is the cloud's.
    DisasterRecovery(&'a str),
    /// No endpoint of this primary pool passes its probes.
    NoHealthyEndpoint(&'a str),
    /// No route, so no primary pool to serve.
    NoRoute,
}

/// One primary pool as readiness sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Primary<'a> {
    pub(crate) pool: &'a str,
    pub(crate) mode: PoolMode,
    pub(crate) probe_healthy: bool,
}

/// The verdict: the first reason found, draining first.
pub(crate) fn verdict<'a>(draining: bool, mut primaries: impl Iterator<Item = Primary<'a>>) -> Readiness<'a> {
    if draining {
        return Readiness::Draining;
    }
    let mut any = false;
    let problem = primaries.find_map(|p| {
        any = true;
        match (p.mode, p.probe_healthy) {
            (PoolMode::DisasterRecovery, _) => Some(Readiness::DisasterRecovery(p.pool)),
            (_, false) => Some(Readiness::NoHealthyEndpoint(p.pool)),
            _ => None,
        }
    });
    problem.unwrap_or(if any { Readiness::Ready } else { Readiness::NoRoute })
}

/// This snapshot's verdict.
pub(crate) fn of(rt: &Runtime, draining: bool) -> Readiness<'_> {
    let primaries = rt.routes.iter().map(|r| Primary {
        pool: &r.primary.name,
        mode: r.primary_gate.mode(),
        probe_healthy: r.primary.any_probe_healthy(),
    });
    verdict(draining, primaries)
}

/// The answer to a request for the readiness path: GET and HEAD get the
/// verdict (200 or 503, a one-line reason), anything else 405.
pub(crate) fn respond(method: &Method, readiness: Readiness<'_>) -> Response<Body> {
    let (status, text) = answer(method, readiness);
    let mut resp = Response::new(Body::full(text));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    resp
}

/// The status and the one line: the public listener names no pool (its
/// topology is the admin API's `/status`), only the kind of reason.
fn answer(method: &Method, readiness: Readiness<'_>) -> (StatusCode, &'static str) {
    let not_ready = StatusCode::SERVICE_UNAVAILABLE;
    match readiness {
        _ if method != Method::GET && method != Method::HEAD => {
            (StatusCode::METHOD_NOT_ALLOWED, "method not allowed: GET or HEAD\n")
        }
        Readiness::Ready => (StatusCode::OK, "ready\n"),
        Readiness::Draining => (not_ready, "not ready: shutting down\n"),
        Readiness::DisasterRecovery(_) => (not_ready, "not ready: disaster recovery\n"),
        Readiness::NoHealthyEndpoint(_) => (not_ready, "not ready: no healthy primary endpoint\n"),
        Readiness::NoRoute => (not_ready, "not ready: no route\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pool: &str, mode: PoolMode, probe_healthy: bool) -> Primary<'_> {
        Primary { pool, mode, probe_healthy }
    }

    #[test]
    fn ready_only_when_every_primary_serves_and_no_shutdown() {
        let fine = [p("onprem", PoolMode::Normal, true), p("chat", PoolMode::Spilling, true)];
        assert_eq!(verdict(false, fine.into_iter()), Readiness::Ready, "spilling is still serving");
        assert_eq!(verdict(true, fine.into_iter()), Readiness::Draining);
        let dr = [p("onprem", PoolMode::Normal, true), p("chat", PoolMode::DisasterRecovery, false)];
        assert_eq!(verdict(false, dr.into_iter()), Readiness::DisasterRecovery("chat"));
        assert_eq!(verdict(true, dr.into_iter()), Readiness::Draining, "draining comes first");
        let down = [p("onprem", PoolMode::Normal, false)];
        assert_eq!(verdict(false, down.into_iter()), Readiness::NoHealthyEndpoint("onprem"));
        assert_eq!(verdict(false, std::iter::empty()), Readiness::NoRoute);
    }

    #[test]
    fn answers_say_why_and_refuse_other_methods() {
        assert_eq!(respond(&Method::GET, Readiness::Ready).status(), 200);
        assert_eq!(respond(&Method::HEAD, Readiness::Ready).status(), 200);
        let r = respond(&Method::GET, Readiness::NoHealthyEndpoint("onprem-secret-name"));
        assert_eq!(r.status(), 503);
        for verdict in
            [Readiness::NoHealthyEndpoint("onprem-secret-name"), Readiness::DisasterRecovery("onprem-secret-name")]
        {
            let (_, text) = answer(&Method::GET, verdict);
            assert!(!text.contains("onprem-secret-name"), "the public answer names no pool: {text}");
        }
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        let r = respond(&Method::POST, Readiness::Ready);
        assert_eq!((r.status().as_u16(), &r.headers()[header::ALLOW]), (405, &HeaderValue::from_static("GET, HEAD")));
    }
}
