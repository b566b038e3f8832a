//! The data plane: listeners (TCP, TLS, HTTP/1.1 and HTTP/2), the
//! per-request service, header rewriting and error responses.

pub mod body;
mod dataplane;
pub(crate) mod error;
pub(crate) mod headers;
pub(crate) mod idle;
pub(crate) mod listener;
pub(crate) mod service;

use std::net::SocketAddr;

pub(crate) use dataplane::DataPlane;

/// What the service knows about the client connection a request came on.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) remote: SocketAddr,
    pub(crate) tls: bool,
    /// The client address as an `X-Forwarded-For` element, formatted once
    /// per connection rather than per request.
    pub(crate) forwarded_for: http::HeaderValue,
    /// The listener's `request_body_timeout`.
    pub(crate) body_timeout: std::time::Duration,
}

impl ConnInfo {
    pub(crate) fn new(remote: SocketAddr, tls: bool, body_timeout: std::time::Duration) -> Self {
        let forwarded_for = headers::forwarded_for_value(remote.ip());
        ConnInfo { remote, tls, forwarded_for, body_timeout }
    }
}
