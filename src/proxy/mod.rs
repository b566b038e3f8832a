//! The data plane: listeners (TCP, TLS, HTTP/1.1 and HTTP/2), the
//! per-request service, header rewriting and error responses.

pub mod error;
pub mod headers;
mod idle;
pub mod listener;
pub mod service;

use std::net::SocketAddr;

pub use error::ProxyError;

/// What the service knows about the client connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub tls: bool,
    /// The client address as an `X-Forwarded-For` element, formatted once
    /// per connection rather than per request.
    pub forwarded_for: http::HeaderValue,
}

impl ConnInfo {
    pub fn new(remote: SocketAddr, tls: bool) -> Self {
        let forwarded_for = headers::forwarded_for_value(remote.ip());
        ConnInfo { remote, tls, forwarded_for }
    }
}
