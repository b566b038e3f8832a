//! Notifications: every mode change (spill on/off, DR engaged/cleared) and
//! every failed reload is POSTed as JSON to `[notify] webhook`, so the
//! on-call engineer hears about it without watching a dashboard.
//!
//! Delivery never touches the data plane: events go through a bounded queue
//! (full: the event is dropped and counted) to one sender task, which retries
//! each event three times with backoff and gives up (counted, logged). The
//! webhook URL is read from the running config at send time, so a reload
//! changes it. HTTPS webhooks are verified against the public web roots.
//! The URL is a secret (its path or query often carries a routing key): a
//! log line shows it only through `telemetry::redacted_url`.

use std::time::{Duration, SystemTime};

use http::{header, Method, Request, Uri};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::UpstreamTls;
use crate::telemetry::catalog;
use crate::upstream::connector::Connector;

const QUEUE: usize = 256;
const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(5);

/// One notification.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Event {
    pub(crate) source: &'static str,
    pub(crate) kind: &'static str,
    /// `info`, `warning`, `error` or `critical` (PagerDuty's severities).
    pub(crate) severity: &'static str,
    pub(crate) summary: String,
    pub(crate) at: String,
    pub(crate) details: serde_json::Value,
}

impl Event {
    pub(crate) fn new(
        kind: &'static str,
        severity: &'static str,
        summary: String,
        details: serde_json::Value,
    ) -> Event {
        Event {
            source: "spillway",
            kind,
            severity,
            summary,
            at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            details,
        }
    }
}

/// The sending side, shared by whoever has something to say.
#[derive(Clone)]
pub(crate) struct Notifier {
    tx: mpsc::Sender<Event>,
}

impl Notifier {
    /// Starts the sender task; `webhook` returns the current URL (if any).
    pub(crate) fn spawn(webhook: impl Fn() -> Option<String> + Send + 'static) -> Notifier {
        let (tx, mut rx) = mpsc::channel::<Event>(QUEUE);
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let Some(url) = webhook() else { continue };
                deliver(&url, &event).await;
            }
        });
        Notifier { tx }
    }

    /// Queues an event; never waits.
    pub(crate) fn send(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            metrics::counter!(catalog::NOTIFICATIONS_DROPPED).increment(1);
        }
    }
}

async fn deliver(url: &str, event: &Event) {
    // The URL's path may be its secret (a routing key): logs get it redacted.
    let webhook = crate::telemetry::redacted_url(url);
    let body = serde_json::to_vec(event).unwrap_or_default();
    let mut backoff = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        match tokio::time::timeout(TIMEOUT, post(url, body.clone())).await {
            Ok(Ok(status)) if status.is_success() => {
                metrics::counter!(catalog::NOTIFICATIONS_SENT).increment(1);
                return;
            }
            Ok(Ok(status)) => {
                tracing::warn!(%webhook, %status, attempt, kind = event.kind, "webhook refused the notification")
            }
            Ok(Err(e)) => tracing::warn!(%webhook, error = %e, attempt, kind = event.kind, "webhook unreachable"),
            Err(_) => tracing::warn!(%webhook, attempt, kind = event.kind, "webhook timed out"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    metrics::counter!(catalog::NOTIFICATIONS_FAILED).increment(1);
    tracing::warn!(%webhook, attempts = ATTEMPTS, kind = event.kind, "notification given up");
}

async fn post(url: &str, body: Vec<u8>) -> Result<http::StatusCode, String> {
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
    Ok(resp.status())
}
