//! End-to-end against a real moto server: the DNS controller's UPSERTs keep
//! the health checks of the weighted records (an UPSERT replaces the whole
//! record set, so one without `HealthCheckId` removes it; the first test
//! shows moto does so too, so the second would fail without the fix).
//! Run `scripts/moto-env` first.

#[path = "support/moto.rs"]
mod moto;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HealthCheckConfig, HealthCheckType, ResourceRecord, ResourceRecordSet, RrType,
};
use moto::{create_zone, eventually, sdk_config, Moto};
use spillway::app::control::{start_with_sdk, ControlHandle};
use spillway::config::{DnsConfig, DnsTarget, ExternalEdit};
use spillway::control::{ControlInputs, ControlSignals};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const RECORD: &str = "www.sportchat.test.";
const ONPREM: &str = "dc1-edge.sportchat.test.";
const AWS: &str = "burst-123.us-east-1.elb.amazonaws.com.";

fn target(set_identifier: &str, value: &str) -> DnsTarget {
    DnsTarget { set_identifier: set_identifier.into(), value: value.into(), alias: None, health_check_id: None }
}

fn cfg(zone: &str) -> DnsConfig {
    DnsConfig {
        enabled: true,
        dry_run: false,
        hosted_zone_id: zone.into(),
        record: RECORD.into(),
        record_type: "CNAME".into(),
        ttl: 60,
        onprem: target("dc1", ONPREM),
        aws: target("aws-dc1", AWS),
        shift_after: Duration::from_millis(300),
        min_change_interval: Duration::from_millis(300),
        max_step: 128,
        interval: Duration::from_millis(100),
        hysteresis: 16,
        insync_timeout: Duration::from_secs(10),
        on_external_edit: ExternalEdit::Respect,
        target_weights: None,
        verify_interval: Duration::from_millis(500),
    }
}

fn calm() -> ControlSignals {
    ControlSignals {
        arrival_rps: 1000.0,
        spilled_rps: 0.0,
        shed_rps: 0.0,
        onprem_capacity_rps: None,
        dr: false,
        dr_capacity: false,
        cloud_healthy: true,
        dr_state: Default::default(),
        dr_synced: None,
    }
}

async fn create_health_check(sdk: &aws_config::SdkConfig, fqdn: &str) -> String {
    let config = HealthCheckConfig::builder()
        .r#type(HealthCheckType::Http)
        .fully_qualified_domain_name(fqdn.trim_end_matches('.'))
        .port(8080)
        .resource_path("/.spillway/ready")
        .build()
        .unwrap();
    let out = aws_sdk_route53::Client::new(sdk)
        .create_health_check()
        .caller_reference(format!("spillway-test-{fqdn}"))
        .health_check_config(config)
        .send()
        .await
        .expect("create health check");
    out.health_check().unwrap().id().to_string()
}

/// UPSERTs one record as an operator (or CloudFormation) would.
async fn put(sdk: &aws_config::SdkConfig, zone: &str, id: &str, value: &str, ttl: i64, check: Option<&str>) {
    let set = ResourceRecordSet::builder()
        .name(RECORD)
        .r#type(RrType::Cname)
        .set_identifier(id)
        .weight(if id == "dc1" { 255 } else { 0 })
        .ttl(ttl)
        .set_health_check_id(check.map(str::to_owned))
        .resource_records(ResourceRecord::builder().value(value).build().unwrap())
        .build()
        .unwrap();
    let change = Change::builder().action(ChangeAction::Upsert).resource_record_set(set).build().unwrap();
    aws_sdk_route53::Client::new(sdk)
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
        .send()
        .await
        .expect("upsert");
}

/// Per set identifier: (weight, TTL, health check id), as moto holds them.
async fn records(sdk: &aws_config::SdkConfig, zone: &str) -> Records {
    let out = aws_sdk_route53::Client::new(sdk).list_resource_record_sets().hosted_zone_id(zone).send().await.unwrap();
    out.resource_record_sets()
        .iter()
        .filter(|r| r.name().trim_end_matches('.') == RECORD.trim_end_matches('.'))
        .map(|r| {
            let id = r.set_identifier().unwrap_or_default().to_string();
            (id, (r.weight().unwrap_or(-1), r.ttl(), r.health_check_id().map(str::to_owned)))
        })
        .collect()
}

type Records = BTreeMap<String, (i64, Option<i64>, Option<String>)>;

/// Drives ten weight changes (spill until AWS has most of the weight, then
/// calm until it has none, over and over), checking the records after each
/// change seen; returns how many changes it saw.
async fn ten_changes(
    handle: &ControlHandle,
    signals: &watch::Sender<ControlSignals>,
    sdk: &aws_config::SdkConfig,
    zone: &str,
    want: &impl Fn(&Records) -> bool,
) -> usize {
    let changes = || handle.status()["dns"]["changes"].as_u64().unwrap_or(0);
    let start = changes();
    let first = records(sdk, zone).await;
    let mut last = (first["dc1"].0, first["aws-dc1"].0);
    let mut seen = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while changes() < start + 10 {
        assert!(std::time::Instant::now() < deadline, "ten weight changes took too long: {seen} seen");
        let spilling = if last.1 == 0 {
            500.0
        } else if last.1 >= 192 {
            0.0
        } else {
            signals.borrow().spilled_rps
        };
        signals.send_replace(ControlSignals { spilled_rps: spilling, ..calm() });
        let r = records(sdk, zone).await;
        let now = (r["dc1"].0, r["aws-dc1"].0);
        if now != last {
            assert!(want(&r), "after a change to {now:?}: {r:?}");
            seen += 1;
            last = now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}

#[tokio::test]
async fn moto_drops_the_health_check_of_an_upsert_without_one() {
    let moto = Moto::start().await;
    let sdk = sdk_config(&moto.url()).await;
    let zone = create_zone(&sdk, "sportchat.test.").await;
    let check = create_health_check(&sdk, ONPREM).await;
    put(&sdk, &zone, "dc1", ONPREM, 60, Some(&check)).await;
    assert_eq!(records(&sdk, &zone).await["dc1"].2.as_deref(), Some(check.as_str()));
    put(&sdk, &zone, "dc1", ONPREM, 60, None).await;
    assert_eq!(records(&sdk, &zone).await["dc1"].2, None, "an UPSERT replaces the whole record set");
}

#[tokio::test]
async fn records_keep_their_health_checks_through_reconcile_and_ten_changes() {
    let moto = Moto::start().await;
    let sdk = sdk_config(&moto.url()).await;
    let zone = create_zone(&sdk, "sportchat.test.").await;
    let (on_check, aws_check) = (create_health_check(&sdk, ONPREM).await, create_health_check(&sdk, AWS).await);
    // As the template made them, with a TTL the config does not have: the
    // first start reconciles them (one UPSERT of both).
    put(&sdk, &zone, "dc1", ONPREM, 300, Some(&on_check)).await;
    put(&sdk, &zone, "aws-dc1", AWS, 300, Some(&aws_check)).await;
    let want = |r: &Records| {
        r["dc1"].2.as_deref() == Some(on_check.as_str()) && r["aws-dc1"].2.as_deref() == Some(aws_check.as_str())
    };

    let (signals, signals_rx) = watch::channel(calm());
    let (_scale, scale) = watch::channel(None);
    let (_dns, dns) = watch::channel(Some(cfg(&zone)));
    let shutdown = CancellationToken::new();
    let handle = start_with_sdk(ControlInputs { signals: signals_rx, scale, dns, shutdown: shutdown.clone() }, &sdk);
    eventually(Duration::from_secs(10), "first-start reconcile", || async {
        records(&sdk, &zone).await["dc1"].1 == Some(60)
    })
    .await;
    let after_reconcile = records(&sdk, &zone).await;
    assert!(want(&after_reconcile), "reconcile kept the health checks: {after_reconcile:?}");

    let seen = ten_changes(&handle, &signals, &sdk, &zone, &want).await;
    assert!(seen >= 8, "the weights moved as the controller says: {seen} changes seen");
    let end = records(&sdk, &zone).await;
    assert!(want(&end), "{end:?}");
    assert!(handle.status()["dns"]["external_edit"].is_null(), "{}", handle.status());
    shutdown.cancel();
    handle.join().await;
}
