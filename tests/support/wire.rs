//! An origin that speaks raw bytes, for what a well-behaved hyper origin
//! never does: chunked bodies with extensions and trailers, bodies delimited
//! by close, 1xx interim answers, malformed heads, connections dropped at
//! the worst moment. Each request's head is recorded, its answer comes from
//! the test's script.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the origin does with one request.
pub struct Reply {
    /// Bytes written back (may be empty).
    pub bytes: Vec<u8>,
    /// Read the request's body (by Content-Length or chunked) before answering.
    pub read_body: bool,
    pub then: Then,
}

pub enum Then {
    /// Wait for the next request on this connection.
    KeepOpen,
    /// Close the connection at once.
    Close,
    /// Stop sending, but read (and discard) what still comes for a while
    /// before closing, as servers do after an early answer.
    LingerClose,
}

impl Reply {
    pub fn keep(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply { bytes: bytes.into(), read_body: true, then: Then::KeepOpen }
    }

    pub fn close(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply { bytes: bytes.into(), read_body: true, then: Then::Close }
    }
}

/// A request as the origin saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub connection: usize,
    pub head: String,
    pub body: Vec<u8>,
}

type Script = dyn Fn(usize, &str) -> Reply + Send + Sync;

pub struct WireOrigin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl WireOrigin {
    /// `script(n, head)` answers the n-th request (from 0, over all connections).
    pub async fn start(script: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> WireOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let (s, c) = (seen.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let id = c.fetch_add(1, SeqCst);
                tokio::spawn(serve(tcp, id, s.clone(), script.clone()));
            }
        });
        WireOrigin { addr, seen, connections, task }
    }

    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(SeqCst)
    }
}

impl Drop for WireOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut tcp: TcpStream, id: usize, seen: Arc<Mutex<Vec<Seen>>>, script: Arc<Script>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_until(&mut tcp, &mut buf, b"\r\n\r\n").await else { return };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let n = {
            let mut s = seen.lock().unwrap();
            s.push(Seen { connection: id, head: head.clone(), body: Vec::new() });
            s.len() - 1
        };
        let reply = script(n, &head);
        if reply.read_body {
            let body = read_body(&mut tcp, &mut buf, &head).await;
            seen.lock().unwrap()[n].body = body;
        }
        if tcp.write_all(&reply.bytes).await.is_err() {
            return;
        }
        match reply.then {
            Then::KeepOpen => {}
            Then::Close => return,
            Then::LingerClose => {
                let _ = tcp.shutdown().await;
                let mut sink = [0u8; 64 * 1024];
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while tcp.read(&mut sink).await.is_ok_and(|n| n > 0) {}
                })
                .await;
                return;
            }
        }
    }
}

/// Reads until `pat` is in `buf`; returns the index just past it.
async fn read_until(tcp: &mut TcpStream, buf: &mut Vec<u8>, pat: &[u8]) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(pat.len()).position(|w| w == pat) {
            return Some(i + pat.len());
        }
        let mut chunk = [0u8; 16 * 1024];
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn read_body(tcp: &mut TcpStream, buf: &mut Vec<u8>, head: &str) -> Vec<u8> {
    let lower = head.to_ascii_lowercase();
    let header = |name: &str| {
        lower.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')).map(|v| v.trim().to_string()))
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let Some(eol) = read_until(tcp, buf, b"\r\n").await else { return body };
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&buf[..eol - 2]).split(';').next().unwrap().trim(), 16)
                    .unwrap_or(0);
            buf.drain(..eol);
            if size == 0 {
                let _ = read_until(tcp, buf, b"\r\n").await;
                buf.clear();
                return body;
            }
            while buf.len() < size + 2 {
                let mut chunk = [0u8; 16 * 1024];
                match tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => return body,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
    }
    let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < len {
        let mut chunk = [0u8; 16 * 1024];
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf.drain(..len.min(buf.len())).collect()
}
