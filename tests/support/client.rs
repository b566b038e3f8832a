//! Test clients: a minimal hyper HTTP/1.1 client (one fresh connection per
//! request, bounded by a timeout so a test never hangs) and `curl`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Upper bound for any single test request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `x-origin` header: which origin answered.
    pub fn origin(&self) -> Option<&str> {
        self.header("x-origin")
    }
}

pub async fn get(url: &str) -> Result<Resp, String> {
    request(Method::GET, url, Vec::new(), &[]).await
}

/// Sends one request on a new connection and reads the whole response.
pub async fn request(method: Method, url: &str, headers: Vec<(&str, String)>, body: &[u8]) -> Result<Resp, String> {
    tokio::time::timeout(REQUEST_TIMEOUT, request_inner(method, url, headers, Bytes::copy_from_slice(body)))
        .await
        .map_err(|_| format!("{url}: no response within {REQUEST_TIMEOUT:?}"))?
}

async fn request_inner(method: Method, url: &str, headers: Vec<(&str, String)>, body: Bytes) -> Result<Resp, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let authority = uri.authority().ok_or("no authority")?.clone();
    let tcp =
        tokio::net::TcpStream::connect(authority.as_str()).await.map_err(|e| format!("connect {authority}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut builder = Request::builder().method(method).uri(uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut has_host = false;
    for (k, v) in headers {
        has_host |= k.eq_ignore_ascii_case("host");
        builder = builder.header(k, v);
    }
    if !has_host {
        builder = builder.header("host", authority.as_str());
    }
    let req = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| format!("send: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    Ok(Resp { status: parts.status.as_u16(), headers: parts.headers, body })
}

/// What `curl` printed and how it ended.
#[derive(Debug)]
pub struct Curl {
    pub exit: i32,
    pub status: u16,
    pub http_version: String,
    pub size_download: u64,
    pub body: String,
    pub stderr: String,
}

impl Curl {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

const MARK: &str = "\n@@curl@@ ";

/// Runs curl with `args` (silent, bounded by --max-time; a later
/// `--max-time` in `args` wins). Do not pass `-w`: it is used here.
pub async fn curl(args: &[&str]) -> Curl {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w"])
        .arg(format!("{MARK}%{{http_code}} %{{http_version}} %{{size_download}}"))
        .args(args)
        .output()
        .await
        .expect("curl is installed");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = stdout.rsplit_once(MARK).unwrap_or((&stdout, "000 0 0"));
    let mut words = tail.split_whitespace();
    Curl {
        exit: out.status.code().unwrap_or(-1),
        status: words.next().and_then(|s| s.parse().ok()).unwrap_or(0),
        http_version: words.next().unwrap_or("").to_string(),
        size_download: words.next().and_then(|s| s.parse().ok()).unwrap_or(0),
        body: body.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes `bytes` on a new connection and reads until the peer closes (or
/// `REQUEST_TIMEOUT`); returns what came back.
pub async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The peer may answer and close before it has read everything we send.
    let _ = tcp.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
