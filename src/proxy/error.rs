//! Proxy errors and the one place they become HTTP responses.
//!
//! Each variant says whose fault it is (client, upstream, or us under load),
//! which decides the status: 4xx for the client, 502/504 for the upstream,
//! 503 + `Retry-After` for overload and for a write while disaster
//! recovery waits for an engage (with the configured read-only body).

use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};

use crate::proxy::body::Body;
use crate::request::host::HostError;
use crate::upstream::h1::RequestCodingError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("no route for host {host:?} path {path:?}")]
    NoRoute { host: String, path: String },
    #[error("pool {pool}: no healthy endpoint")]
    NoHealthyEndpoint { pool: String },
    #[error("pool {pool}: connect to {endpoint} failed: {detail}")]
    Connect { pool: String, endpoint: String, detail: String },
    #[error("pool {pool}: {endpoint} sent no response headers within {timeout:?}")]
    UpstreamTimeout { pool: String, endpoint: String, timeout: Duration },
    #[error("pool {pool}: {endpoint} failed: {detail}")]
    Upstream { pool: String, endpoint: String, detail: String },
    #[error("overloaded: {reason}")]
    Overloaded { reason: &'static str, retry_after: Duration },
    #[error("read-only: disaster recovery waits for an engage")]
    ReadOnly { body: std::sync::Arc<str>, retry_after: Duration },
    #[error("client request body: {detail}")]
    ClientBody { detail: String },
    #[error("client request body not received within {timeout:?}")]
    ClientBodyTimeout { timeout: Duration },
    #[error("bad request: {0}")]
    BadHost(#[from] HostError),
    #[error("client request: transfer coding {coding:?} is not supported")]
    UnsupportedTransferCoding { coding: String },
    #[error("client request: {detail}")]
    BadFraming { detail: String },
}

impl ProxyError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::ClientBody { .. } | ProxyError::BadHost(_) | ProxyError::BadFraming { .. } => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::UnsupportedTransferCoding { .. } => StatusCode::NOT_IMPLEMENTED,
            ProxyError::ClientBodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ProxyError::NoHealthyEndpoint { .. } | ProxyError::Overloaded { .. } | ProxyError::ReadOnly { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Connect { .. } | ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// A short machine-readable kind, for metrics labels and logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. } => "no_route",
            ProxyError::NoHealthyEndpoint { .. } => "no_healthy_endpoint",
            ProxyError::Connect { .. } => "connect",
            ProxyError::UpstreamTimeout { .. } => "upstream_timeout",
            ProxyError::Upstream { .. } => "upstream",
            ProxyError::Overloaded { .. } => "overloaded",
            ProxyError::ReadOnly { .. } => "read_only",
            ProxyError::ClientBody { .. } => "client_body",
            ProxyError::ClientBodyTimeout { .. } => "client_body_timeout",
            ProxyError::BadHost(_) => "bad_host",
            ProxyError::UnsupportedTransferCoding { .. } => "unsupported_transfer_coding",
            ProxyError::BadFraming { .. } => "bad_request_framing",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ProxyError::Overloaded { retry_after, .. } | ProxyError::ReadOnly { retry_after, .. } => Some(*retry_after),
            ProxyError::NoHealthyEndpoint { .. } => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// The response the client gets for this error.
    pub(crate) fn to_response(&self) -> Response<Body> {
        let status = self.status();
        let text = match self {
            ProxyError::ReadOnly { body, .. } => body.to_string(),
            _ => format!("{} {}\n", status.as_u16(), status.canonical_reason().unwrap_or("")),
        };
        let mut resp = Response::new(Body::full(text));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert("x-spillway-error", HeaderValue::from_static(self.kind()));
        if let Some(after) = self.retry_after() {
            h.insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs().max(1)));
        }
        resp
    }
}

/// A request whose transfer codings cannot go upstream: the client's fault.
impl From<&RequestCodingError> for ProxyError {
    fn from(e: &RequestCodingError) -> ProxyError {
        match e {
            RequestCodingError::Unsupported(coding) => ProxyError::UnsupportedTransferCoding { coding: coding.clone() },
            RequestCodingError::ChunkedTwice => ProxyError::BadFraming { detail: e.to_string() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_fault() {
        let to =
            ProxyError::UpstreamTimeout { pool: "p".into(), endpoint: "e".into(), timeout: Duration::from_secs(1) };
        assert_eq!(to.status(), StatusCode::GATEWAY_TIMEOUT);
        let c = ProxyError::Connect { pool: "p".into(), endpoint: "e".into(), detail: "refused".into() };
        assert_eq!(c.status(), StatusCode::BAD_GATEWAY);
        let o = ProxyError::Overloaded { reason: "cloud_unavailable", retry_after: Duration::from_secs(2) };
        let r = o.to_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let ro = ProxyError::ReadOnly { body: "read only\n".into(), retry_after: Duration::from_secs(30) };
        let r = ro.to_response();
        assert_eq!(
            (r.status(), r.headers()[header::RETRY_AFTER].to_str().unwrap()),
            (StatusCode::SERVICE_UNAVAILABLE, "30")
        );
        assert_eq!(r.headers()["x-spillway-error"], "read_only");
        let gzip = ProxyError::from(&RequestCodingError::Unsupported("gzip".into()));
        assert_eq!((gzip.status(), gzip.kind()), (StatusCode::NOT_IMPLEMENTED, "unsupported_transfer_coding"));
        let twice = ProxyError::from(&RequestCodingError::ChunkedTwice);
        assert_eq!(twice.status(), StatusCode::BAD_REQUEST);
    }
}
