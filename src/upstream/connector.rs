//! Opens upstream connections for the HTTP/1.1 client (`client/`): TCP with a connect
//! timeout and `TCP_NODELAY`, then TLS (rustls, SNI, verification against the
//! public web roots plus an optional private CA) for pools that ask for it.
//!

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::config::UpstreamTls;
use crate::tls;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect to {addr} timed out after {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("connect to {addr}: {source}")]
    Io { addr: String, source: io::Error },
    #[error("TLS handshake with {addr}: {source}")]
    Tls { addr: String, source: io::Error },
    #[error("invalid upstream address {0}")]
    BadAddress(String),
}

#[derive(Clone)]
pub(crate) struct Connector {
    inner: Arc<Inner>,
}

struct Inner {
    connect_timeout: Duration,
    tls: Option<(tokio_rustls::TlsConnector, Option<ServerName<'static>>)>,
}

impl Connector {
    pub(crate) fn new(connect_timeout: Duration, tls_cfg: Option<&UpstreamTls>) -> Result<Self, tls::TlsError> {
        let tls = match tls_cfg {
            None => None,
            Some(t) => {
                let config = tls::client_config(t)?;
                let sni = tls::upstream_sni(t)?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(config)), sni))
            }
        };
        Ok(Connector { inner: Arc::new(Inner { connect_timeout, tls }) })
    }
}

impl Connector {
    /// Opens a connection to `host:port`: TCP (with the connect timeout,
    /// `TCP_NODELAY`), then TLS when the pool asks for it.
    pub(crate) async fn connect(&self, host: &str, port: u16) -> Result<UpstreamIo, ConnectError> {
        let inner = &self.inner;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = format!("{host}:{port}");
        let tcp = tokio::time::timeout(inner.connect_timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| ConnectError::Timeout { addr: addr.clone(), timeout: inner.connect_timeout })?
            .map_err(|source| ConnectError::Io { addr: addr.clone(), source })?;
        let _ = tcp.set_nodelay(true);
        // Finds an endpoint that vanished under a long-lived (upgraded) connection.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(std::time::Duration::from_secs(60))
            .with_interval(std::time::Duration::from_secs(10));
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        let io = match &inner.tls {
            None => UpstreamIo::Plain(tcp),
            Some((connector, sni)) => {
                let name = match sni {
                    Some(n) => n.clone(),
                    None => {
                        ServerName::try_from(host.to_string()).map_err(|_| ConnectError::BadAddress(addr.clone()))?
                    }
                };
                let handshake = connector.connect(name, tcp);
                let tls = tokio::time::timeout(inner.connect_timeout, handshake)
                    .await
                    .map_err(|_| ConnectError::Timeout { addr: addr.clone(), timeout: inner.connect_timeout })?
                    .map_err(|source| ConnectError::Tls { addr, source })?;
                UpstreamIo::Tls(Box::new(tls))
            }
        };
        Ok(io)
    }
}

/// A plain or TLS upstream stream.
pub(crate) enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// An in-memory peer, for the client's unit tests (compiled out of the binary).
    #[cfg(test)]
    Duplex(tokio::io::DuplexStream),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(test)]
            UpstreamIo::Duplex(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            #[cfg(test)]
            UpstreamIo::Duplex(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            #[cfg(test)]
            UpstreamIo::Duplex(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
            #[cfg(test)]
            UpstreamIo::Duplex(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(test)]
            UpstreamIo::Duplex(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(test)]
            UpstreamIo::Duplex(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
