//! SNS through the real binary and moto: a topic with two SQS queues
//! subscribed (raw message delivery, so SNS message attributes become SQS
//! message attributes), one of them with a filter policy on `severity`. A DR
//! episode (critical) and a failed reload (error) are published; the first
//! queue receives both with their attributes, the filtered one only DR.
//! Never real AWS: the binary's SNS endpoint is moto on loopback and the
//! credentials are dummies. Run `scripts/moto-env` first.

#[path = "support/moto.rs"]
mod moto;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use moto::{sdk_config, Moto};
use serde_json::Value;
use support::{Origin, Spillway, ADMIN};

/// The events a queue received: (body JSON, message attributes as strings).
type Received = Vec<(Value, BTreeMap<String, String>)>;

async fn queue(sqs: &aws_sdk_sqs::Client, name: &str) -> (String, String) {
    let url = sqs.create_queue().queue_name(name).send().await.unwrap().queue_url.unwrap();
    let attrs = sqs.get_queue_attributes().queue_url(&url).attribute_names(QueueAttributeName::QueueArn).send().await;
    let arn = attrs.unwrap().attributes.unwrap()[&QueueAttributeName::QueueArn].clone();
    (url, arn)
}

async fn receive(sqs: &aws_sdk_sqs::Client, url: &str, into: &mut Received) {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    for m in out.messages.unwrap_or_default() {
        let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
        let attrs = m
            .message_attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.string_value.unwrap_or_default()))
            .collect();
        into.push((body, attrs));
        sqs.delete_message().queue_url(url).receipt_handle(m.receipt_handle.unwrap()).send().await.unwrap();
    }
}

fn kinds(received: &Received) -> Vec<String> {
    let mut k: Vec<String> = received.iter().map(|(b, _)| b["kind"].as_str().unwrap().to_string()).collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_sqs_through_sns_with_filterable_attributes() {
    let moto = Moto::start().await;
    let sdk = sdk_config(&moto.url()).await;
    let (sns, sqs) = (aws_sdk_sns::Client::new(&sdk), aws_sdk_sqs::Client::new(&sdk));
    let topic = sns.create_topic().name("spillway-events").send().await.unwrap().topic_arn.unwrap();
    let (all_url, all_arn) = queue(&sqs, "all-events").await;
    let (critical_url, critical_arn) = queue(&sqs, "critical-only").await;
    for (arn, filter) in [(&all_arn, None), (&critical_arn, Some(r#"{"severity": ["critical"]}"#))] {
        let sub =
            sns.subscribe().topic_arn(&topic).protocol("sqs").endpoint(arn).attributes("RawMessageDelivery", "true");
        let sub = match filter {
            Some(f) => sub.attributes("FilterPolicy", f),
            None => sub,
        };
        sub.send().await.unwrap();
    }

    let cloud = Origin::start("cloud").await;
    // The on-prem pool points at a port nobody listens on: DR after 500 ms.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = format!(
        "{ADMIN}\n[runtime]\nsite = \"dc1\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [pools.onprem]\nendpoints = [\"{dead}\"]\nconnect_timeout = \"200ms\"\n\
         health = {{ path = \"/health\", interval = \"100ms\", timeout = \"100ms\", unhealthy_after = 1, healthy_after = 1 }}\n\n\
         [pools.aws]\nrole = \"cloud\"\nendpoints = [\"{}\"]\n\n[[route]]\nprimary = \"onprem\"\noverflow = \"aws\"\n\n\
         [spill]\ntick = \"50ms\"\ndisaster_after = \"500ms\"\n\n[notify]\nsns_topic_arn = \"{topic}\"\n",
        cloud.endpoint()
    );
    let env = [
        ("AWS_ENDPOINT_URL_SNS", moto.url()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    let sw = Spillway::start_in_env(tempfile::tempdir().unwrap(), &config, &env).await;
    let (mut all, mut critical) = (Received::new(), Received::new());
    // Poll until the DR trigger arrived, then fail a reload.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !kinds(&all).contains(&"dr_engaged".to_string()) {
        assert!(tokio::time::Instant::now() < deadline, "no DR event reached SQS; log:\n{}", sw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
        receive(&sqs, &all_url, &mut all).await;
    }
    sw.write_config("[[listener]]\nname = broken");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !kinds(&all).contains(&"reload_failed".to_string()) {
        assert!(tokio::time::Instant::now() < deadline, "no reload_failed event reached SQS; log:\n{}", sw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
        receive(&sqs, &all_url, &mut all).await;
    }
    receive(&sqs, &critical_url, &mut critical).await;

    let (dr, attrs) = all.iter().find(|(b, _)| b["kind"] == "dr_engaged").unwrap();
    assert_eq!((&dr["action"], &dr["site"], &dr["subject"]), (&"trigger".into(), &"dc1".into(), &"dc1".into()));
    assert_eq!(dr["dedup_key"], "spillway/dc1/dr_engaged/dc1");
    assert_eq!(attrs.get("severity").map(String::as_str), Some("critical"));
    assert_eq!(attrs.get("kind").map(String::as_str), Some("dr_engaged"));
    assert_eq!(attrs.get("site").map(String::as_str), Some("dc1"));
    // The pool's outage came too, as information (warning), not a second page.
    let (pool_dr, _) = all.iter().find(|(b, _)| b["kind"] == "dr").expect("the pool's dr information");
    assert_eq!((&pool_dr["action"], &pool_dr["severity"]), (&"info".into(), &"warning".into()));
    let (_, failed) = all.iter().find(|(b, _)| b["kind"] == "reload_failed").unwrap();
    assert_eq!(failed.get("severity").map(String::as_str), Some("error"));
    // The site's `dr_engaged` is critical; the pool's `dr` (warning) and reload_failed (error) are not.
    assert!(
        critical.iter().all(|(b, _)| b["severity"] == "critical"),
        "the filter lets only critical events through: {critical:?}"
    );
    assert!(!kinds(&critical).contains(&"reload_failed".to_string()));
    assert!(kinds(&critical).contains(&"dr_engaged".to_string()));
    assert!(!kinds(&critical).contains(&"dr".to_string()), "the pool's outage is not a second critical event");
    assert!(sw.metric("spillway_notifications_sent_total").await >= 2.0);
}

/// SNS unreachable: the event is retried a bounded number of times, then
/// given up and counted; the proxy answers all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_sns_is_given_up_and_counted() {
    let onprem = Origin::start("onprem").await;
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = format!(
        "{}\n[notify]\nsns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:events\"\n",
        support::simple_config(&[&onprem], "", "")
    );
    let env = [
        ("AWS_ENDPOINT_URL_SNS", format!("http://{nobody}")),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    let sw = Spillway::start_in_env(tempfile::tempdir().unwrap(), &config, &env).await;
    // A failed reload is the event.
    sw.write_config("[[listener]]\nname = broken");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sw.metric("spillway_notifications_failed_total").await < 1.0 {
        let resp = support::get(&sw.url("web", "/")).await.expect("the proxy answers while SNS is down");
        assert_eq!(resp.status, 200);
        assert!(tokio::time::Instant::now() < deadline, "the event was not given up; log:\n{}", sw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sw.metric("spillway_aws_errors_total").await >= 4.0, "each attempt counted");
    assert_eq!(sw.metric("spillway_notifications_sent_total").await, 0.0);
    assert!(sw.log().contains("SNS notification given up"), "{}", sw.log());
}

#[tokio::test]
async fn check_refuses_a_topic_arn_aws_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = format!(
        "{ADMIN}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n[pools.p]\nendpoints = [\"127.0.0.1:1\"]\n[[route]]\nprimary = \"p\"\n[notify]\nsns_topic_arn = \"arn:aws:sns:us-east-1:123:events\"\n"
    );
    std::fs::write(&path, text).unwrap();
    let (code, _, stderr) = support::spillway::check(&path);
    assert_eq!(code, 1);
    assert!(stderr.contains("notify.sns_topic_arn") && stderr.contains("12-digit"), "{stderr}");
}
