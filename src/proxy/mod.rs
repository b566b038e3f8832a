//! The data plane: listeners (TCP, TLS, HTTP/1.1 and HTTP/2), the
//! per-request service, header rewriting and error responses.

pub mod body;
mod dataplane;
pub mod error;
pub mod headers;
mod idle;
pub mod listener;
pub mod service;

use std::net::SocketAddr;

pub use dataplane::{ConnectionGuard, Connections, DataPlane};
pub use error::ProxyError;

/// What the service knows about the client connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub tls: bool,
    /// The client address as an `X-Forwarded-For` element, formatted once
    /// per connection rather than per request.
    pub forwarded_for: http::HeaderValue,
    /// The listener's `request_body_timeout`.
    pub body_timeout: std::time::Duration,
}

impl ConnInfo {
    pub fn new(remote: SocketAddr, tls: bool, body_timeout: std::time::Duration) -> Self {
        let forwarded_for = headers::forwarded_for_value(remote.ip());
        ConnInfo { remote, tls, forwarded_for, body_timeout }
    }
}
