//! The webhook sink: each event's JSON (`Event::to_json`) POSTed to
//! `[notify] webhook`. A 2xx is success; anything else is retried with
//! backoff (`super::with_retries`). The URL is read from the running config
//! at send time and shown in logs only redacted.

use tokio::sync::mpsc;

use super::{http, with_retries, Delivery, Failure};

pub(super) async fn run(mut rx: mpsc::Receiver<Delivery>) {
    while let Some(d) = rx.recv().await {
        let Some(url) = d.notify.webhook.clone() else { continue };
        let webhook = crate::telemetry::redacted_url(&url);
        let body = serde_json::to_vec(&d.event.to_json(&d.site)).unwrap_or_default();
        with_retries("webhook", &d.event, || async {
            match http::post_json(&url, body.clone()).await {
                Ok((status, _)) if status.is_success() => Ok(()),
                Ok((status, _)) => Err(Failure::Retry(format!("{webhook} answered {status}"))),
                Err(e) => Err(Failure::Retry(format!("{webhook}: {e}"))),
            }
        })
        .await;
    }
}
