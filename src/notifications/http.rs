//! One JSON POST over a fresh connection (HTTP/1.1, HTTPS verified against
//! the public web roots), bounded by a timeout: what the webhook and
//! PagerDuty sinks send with. Returns the status and the first bytes of the
//! answer (PagerDuty explains a 400 in its body).

use std::time::Duration;

use http::{header, Method, Request, Uri};
use http_body_util::BodyExt;

use crate::config::UpstreamTls;
use crate::upstream::connector::Connector;

pub(super) const TIMEOUT: Duration = Duration::from_secs(5);
/// The most of an answer's body kept for a log line.
const ANSWER_BYTES: usize = 512;

/// POSTs `body` as JSON; the status and up to 512 bytes of the answer.
pub(super) async fn post_json(url: &str, body: Vec<u8>) -> Result<(http::StatusCode, String), String> {
    match tokio::time::timeout(TIMEOUT, post(url, body)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
    }
}

async fn post(url: &str, body: Vec<u8>) -> Result<(http::StatusCode, String), String> {
    crate::config::check_webhook_url(url)?;
    let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| e.to_string())?;
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().unwrap_or_default().to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tls = https.then(|| UpstreamTls { sni: Some(host.clone()), verify: true, ca_pem: None });
    let connector = Connector::new(TIMEOUT, tls.as_ref()).map_err(|e| e.to_string())?;
    let io = connector.connect(&host, port).await.map_err(|e| e.to_string())?;
    let io = hyper_util::rt::TokioIo::new(io);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or(host);
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, concat!("spillway/", env!("CARGO_PKG_VERSION")))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let answer = http_body_util::Limited::new(resp.into_body(), ANSWER_BYTES).collect().await;
    let answer = answer.map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned()).unwrap_or_default();
    Ok((status, answer))
}
