//! The SNS sink: each event published to `notify.sns_topic_arn` through
//! `aws-sdk-sns`. The message is the event's JSON (`Event::to_json`), the
//! subject a short line, and the message attributes `severity`, `kind`,
//! `action` and `site` (String) let subscriptions filter without parsing.
//!
//! The client is built like the controllers' (`aws::load_sdk_config`: the
//! standard credential and endpoint chain, Spillway's timeouts, SDK retries
//! off) for the region the ARN names, once per region. Throttling and
//! outages are retried by `aws::Retry` (jittered backoff, bounded attempts,
//! counted in `spillway_aws_errors_total`); then the event is given up and
//! counted. Nothing here can block the data plane: it runs in its own task
//! behind a bounded queue.

use std::collections::HashMap;

use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Delivery;
use crate::aws::retry::DEFAULT_ATTEMPTS;
use crate::aws::{classify, AwsError, Backoff, ClientOptions, Retry};
use crate::telemetry::catalog;

const PUBLISH: &str = "Publish";
/// SNS subjects: at most 100 printable ASCII characters.
const MAX_SUBJECT: usize = 100;

pub(super) async fn run(mut rx: mpsc::Receiver<Delivery>) {
    let mut clients: HashMap<String, Client> = HashMap::new();
    let mut retry = Retry::new(Backoff::default(), DEFAULT_ATTEMPTS, fastrand::Rng::new());
    let never = CancellationToken::new();
    while let Some(d) = rx.recv().await {
        let Some(topic) = d.notify.sns_topic_arn.clone() else { continue };
        if !clients.contains_key(&topic.region) {
            let options = ClientOptions { region: Some(topic.region.clone()), endpoint_url: None };
            clients.insert(topic.region.clone(), Client::new(&crate::aws::load_sdk_config(&options).await));
        }
        let client = &clients[&topic.region];
        let result = retry.call(&never, || publish(client, &topic.arn, &d)).await;
        match result {
            Ok(()) => metrics::counter!(catalog::NOTIFICATIONS_SENT, "sink" => "sns").increment(1),
            Err(e) => {
                metrics::counter!(catalog::NOTIFICATIONS_FAILED, "sink" => "sns").increment(1);
                tracing::warn!(kind = d.event.kind.as_str(), error = %e, "SNS notification given up");
            }
        }
    }
}

async fn publish(client: &Client, arn: &str, d: &Delivery) -> Result<(), AwsError> {
    let e = &d.event;
    let attribute = |v: &str| MessageAttributeValue::builder().data_type("String").string_value(v).build();
    let mut request = client.publish().topic_arn(arn).message(e.to_json(&d.site).to_string()).subject(subject(
        &d.site,
        e.kind.as_str(),
        e.action.as_str(),
        &e.subject,
    ));
    for (name, value) in
        [("severity", e.severity.as_str()), ("kind", e.kind.as_str()), ("action", e.action.as_str()), ("site", &d.site)]
    {
        let value = attribute(value).map_err(|err| AwsError::Invalid { api: PUBLISH, message: err.to_string() })?;
        request = request.message_attributes(name, value);
    }
    request.send().await.map_err(|err| classify(PUBLISH, err))?;
    Ok(())
}

/// `Spillway dc1: spill trigger onprem`, printable ASCII, at most 100 characters.
fn subject(site: &str, kind: &str, action: &str, subject: &str) -> String {
    let text = format!("Spillway {site}: {kind} {action} {subject}");
    text.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).take(MAX_SUBJECT).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn subjects_are_short_printable_ascii() {
        assert_eq!(super::subject("dc1", "spill", "trigger", "onprem"), "Spillway dc1: spill trigger onprem");
        let s = super::subject("dc1", "dr", "trigger", &"ü\n".repeat(80));
        assert!(s.len() <= 100 && s.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{s}");
    }
}
