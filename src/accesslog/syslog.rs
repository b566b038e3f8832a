//! The syslog sink: RFC 5424 messages over TCP with TLS, framed by octet
//! counting (RFC 6587 §3.4.1: `MSG-LEN SP SYSLOG-MSG`), which is how
//! Papertrail takes TLS syslog. The server certificate is checked against
//! the public roots and the configured `ca_file`; the server name is the
//! address's host.
//!
//! Each line is one message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID
//! access - MSG`, facility local0, severity info (notice for 4xx, warning
//! for 5xx). A lost connection is retried with a doubling backoff (1 s up
//! to 30 s); lines written while it is down are lost and counted. This runs
//! on the writer thread with blocking sockets and write timeouts, so a slow
//! receiver only ever delays the writer, never a request.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use super::sink::Sink;
use super::Entry;
use crate::config::{SyslogConfig, UpstreamTls};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// local0 (16) × 8.
const FACILITY: u16 = 16 * 8;

type Stream = StreamOwned<ClientConnection, TcpStream>;

pub(super) struct Syslog {
    cfg: SyslogConfig,
    hostname: String,
    procid: String,
    stream: Option<Stream>,
    /// No connection attempt before this.
    retry_at: Option<Instant>,
    backoff: Duration,
    buf: Vec<u8>,
    pending: u64,
}

impl Syslog {
    pub(super) fn new(cfg: SyslogConfig) -> Self {
        Syslog {
            cfg,
            hostname: hostname(),
            procid: std::process::id().to_string(),
            stream: None,
            retry_at: None,
            backoff: BACKOFF_MIN,
            buf: Vec::with_capacity(64 * 1024),
            pending: 0,
        }
    }

    fn connect(&self) -> Result<Stream, String> {
        let tls = UpstreamTls { sni: Some(self.cfg.host.clone()), verify: true, ca_pem: self.cfg.ca_pem.clone() };
        let mut config = crate::tls::client_config(&tls).map_err(|e| e.to_string())?;
        config.alpn_protocols.clear();
        let name = ServerName::try_from(self.cfg.host.clone()).map_err(|e| e.to_string())?;
        let conn = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let addrs = (self.cfg.host.as_str(), self.cfg.port).to_socket_addrs().map_err(|e| e.to_string())?;
        let mut last = String::from("no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(tcp) => {
                    tcp.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(|e| e.to_string())?;
                    tcp.set_read_timeout(Some(WRITE_TIMEOUT)).map_err(|e| e.to_string())?;
                    let _ = tcp.set_nodelay(true);
                    return Ok(StreamOwned::new(conn, tcp));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    fn failed(&mut self, now: Instant, error: &str) {
        tracing::warn!(address = %self.cfg.address, error, retry_in = ?self.backoff, "access log syslog receiver unreachable");
        self.stream = None;
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

impl Sink for Syslog {
    fn push(&mut self, entry: &Entry, line: &[u8]) {
        let mut head = Vec::with_capacity(128);
        head.push(b'<');
        head.extend_from_slice(itoa::Buffer::new().format(FACILITY + severity(entry.status)).as_bytes());
        head.extend_from_slice(b">1 ");
        super::format::rfc3339(entry.time, &mut head);
        for part in [&self.hostname, &self.cfg.app_name, &self.procid] {
            head.push(b' ');
            head.extend_from_slice(part.as_bytes());
        }
        head.extend_from_slice(b" access - ");
        let len = head.len() + line.len();
        self.buf.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        self.buf.push(b' ');
        self.buf.extend_from_slice(&head);
        self.buf.extend_from_slice(line);
        self.pending += 1;
    }

    fn flush(&mut self) -> u64 {
        if self.buf.is_empty() {
            return 0;
        }
        let pending = std::mem::take(&mut self.pending);
        let result = match &mut self.stream {
            Some(s) => s.write_all(&self.buf).and_then(|()| s.flush()),
            None => Err(std::io::Error::other("not connected")),
        };
        self.buf.clear();
        match result {
            Ok(()) => 0,
            Err(e) => {
                if self.stream.is_some() {
                    self.failed(Instant::now(), &e.to_string());
                }
                pending
            }
        }
    }

    fn maintain(&mut self, now: Instant, _reopen: bool) {
        if self.stream.is_some() || self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        match self.connect() {
            Ok(s) => {
                tracing::info!(address = %self.cfg.address, "access log connected to the syslog receiver");
                self.stream = Some(s);
                self.retry_at = None;
                self.backoff = BACKOFF_MIN;
            }
            Err(e) => self.failed(now, &e),
        }
    }
}

/// info, notice for 4xx, warning for 5xx (RFC 5424 §6.2.1).
fn severity(status: u16) -> u16 {
    match status {
        500.. => 4,
        400..=499 => 5,
        _ => 6,
    }
}

/// This host's name as RFC 5424 HOSTNAME (printable ASCII, else `-`).
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    if name.is_empty() || name.len() > 255 || !name.bytes().all(|b| (33..=126).contains(&b)) {
        "-".to_string()
    } else {
        name.to_string()
    }
}
