//! End-to-end: the DNS controller against a real moto server (real Route 53
//! SDK calls), in real time with short intervals. Run `scripts/moto-env` first.

#[path = "support/moto.rs"]
mod moto;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
use moto::{create_zone, eventually, sdk_config, Moto, ThrottleProxy};
use spillway::app::control::{start_with_sdk, ControlHandle};
use spillway::config::{AliasTarget, DnsConfig, DnsTarget, ExternalEdit, ScaleConfig};
use spillway::control::{ControlInputs, ControlSignals};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const RECORD: &str = "www.sportchat.test.";

fn cfg(zone: &str) -> DnsConfig {
    DnsConfig {
        enabled: true,
        dry_run: false,
        hosted_zone_id: zone.into(),
        record: RECORD.into(),
        record_type: "CNAME".into(),
        ttl: 60,
        onprem: DnsTarget {
            set_identifier: "dc1".into(),
            value: "dc1-edge.sportchat.test.".into(),
            alias: None,
            health_check_id: None,
        },
        aws: DnsTarget {
            set_identifier: "aws".into(),
            value: "burst-123.us-east-1.elb.amazonaws.com.".into(),
            alias: None,
            health_check_id: None,
        },
        shift_after: Duration::from_millis(600),
        min_change_interval: Duration::from_millis(400),
        max_step: 64,
        interval: Duration::from_millis(100),
        hysteresis: 16,
        insync_timeout: Duration::from_secs(10),
        on_external_edit: ExternalEdit::Respect,
        target_weights: None,
        verify_interval: Duration::from_millis(500),
    }
}

struct Run {
    handle: ControlHandle,
    signals: watch::Sender<ControlSignals>,
    shutdown: CancellationToken,
    _config: (watch::Sender<Option<ScaleConfig>>, watch::Sender<Option<DnsConfig>>),
}

fn start(sdk: &aws_config::SdkConfig, cfg: DnsConfig) -> Run {
    let (signals, signals_rx) = watch::channel(calm());
    let (scale_tx, scale) = watch::channel(None);
    let (dns_tx, dns) = watch::channel(Some(cfg));
    let shutdown = CancellationToken::new();
    let inputs = ControlInputs { signals: signals_rx, scale, dns, shutdown: shutdown.clone() };
    Run { handle: start_with_sdk(inputs, sdk), signals, shutdown, _config: (scale_tx, dns_tx) }
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

async fn moto_with_zone() -> (Moto, aws_config::SdkConfig, String) {
    let moto = Moto::start().await;
    let sdk = sdk_config(&moto.url()).await;
    let zone = create_zone(&sdk, "sportchat.test.").await;
    (moto, sdk, zone)
}

/// Weights by set identifier, as Route 53 (moto) holds them.
async fn weights(sdk: &aws_config::SdkConfig, zone: &str) -> BTreeMap<String, (i64, Option<i64>)> {
    let out = aws_sdk_route53::Client::new(sdk).list_resource_record_sets().hosted_zone_id(zone).send().await.unwrap();
    out.resource_record_sets()
        .iter()
        .filter(|r| r.name().trim_end_matches('.') == RECORD.trim_end_matches('.'))
        .map(|r| (r.set_identifier().unwrap_or_default().to_string(), (r.weight().unwrap_or(-1), r.ttl())))
        .collect()
}

async fn pair(sdk: &aws_config::SdkConfig, zone: &str) -> Option<(i64, i64)> {
    let w = weights(sdk, zone).await;
    Some((w.get("dc1")?.0, w.get("aws")?.0))
}

#[tokio::test]
async fn sustained_spill_shifts_weights_in_bounded_steps_and_back() {
    let (_moto, sdk, zone) = moto_with_zone().await;
    let run = start(&sdk, cfg(&zone));
    eventually(Duration::from_secs(10), "records created", || async { pair(&sdk, &zone).await == Some((255, 0)) })
        .await;
    let w = weights(&sdk, &zone).await;
    assert_eq!(w["dc1"].1, w["aws"].1, "same TTL on both records");
    run.signals.send_replace(ControlSignals { spilled_rps: 500.0, ..calm() });
    let mut seen = vec![(255, 0)];
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while seen.last().unwrap().1 < 192 {
        assert!(std::time::Instant::now() < deadline, "shift did not progress: {seen:?}");
        let p = pair(&sdk, &zone).await.unwrap();
        if p != *seen.last().unwrap() {
            seen.push(p);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in seen.windows(2) {
        assert!(w[1].1 > w[0].1 && w[1].1 - w[0].1 <= 64, "bounded monotone steps: {seen:?}");
        assert_eq!(w[1].0 + w[1].1, 255, "{seen:?}");
    }
    run.signals.send_replace(calm());
    eventually(Duration::from_secs(20), "shifted back", || async { pair(&sdk, &zone).await == Some((255, 0)) }).await;
    let st = run.handle.status();
    assert_eq!(st["dns"]["last_change"]["status"], "INSYNC", "{st}");
    assert_eq!(st["dns"]["last_change"]["reason"], "recovery");
    run.shutdown.cancel();
    run.handle.join().await;
}

#[tokio::test]
async fn dr_sends_everything_to_an_alias_target_at_once() {
    let (_moto, sdk, zone) = moto_with_zone().await;
    let mut c = cfg(&zone);
    c.record_type = "A".into();
    c.onprem.value = "203.0.113.10".into();
    c.aws.alias = Some(AliasTarget {
        dns_name: "burst-123.us-east-1.elb.amazonaws.com.".into(),
        hosted_zone_id: "Z35SXDOTRQ7X7K".into(),
        evaluate_health: true,
    });
    let run = start(&sdk, c);
    eventually(Duration::from_secs(10), "records created", || async { pair(&sdk, &zone).await == Some((255, 0)) })
        .await;
    run.signals.send_replace(ControlSignals { dr: true, ..calm() });
    eventually(Duration::from_secs(3), "DR weights", || async { pair(&sdk, &zone).await == Some((0, 255)) }).await;
    let out =
        aws_sdk_route53::Client::new(&sdk).list_resource_record_sets().hosted_zone_id(&zone).send().await.unwrap();
    let aws = out.resource_record_sets().iter().find(|r| r.set_identifier() == Some("aws")).unwrap();
    let alias = aws.alias_target().expect("an alias record");
    assert_eq!(alias.hosted_zone_id(), "Z35SXDOTRQ7X7K");
    assert!(run.handle.status()["dns"]["external_edit"].is_null(), "our own change is no edit");
    run.shutdown.cancel();
}

#[tokio::test]
async fn an_operator_edit_is_noticed_and_respected() {
    let (_moto, sdk, zone) = moto_with_zone().await;
    let run = start(&sdk, cfg(&zone));
    eventually(Duration::from_secs(10), "records created", || async { pair(&sdk, &zone).await == Some((255, 0)) })
        .await;
    let edit = ResourceRecordSet::builder()
        .name(RECORD)
        .r#type(RrType::Cname)
        .set_identifier("aws")
        .weight(77)
        .ttl(60)
        .resource_records(ResourceRecord::builder().value("burst-123.us-east-1.elb.amazonaws.com.").build().unwrap())
        .build()
        .unwrap();
    let change = Change::builder().action(ChangeAction::Upsert).resource_record_set(edit).build().unwrap();
    aws_sdk_route53::Client::new(&sdk)
        .change_resource_record_sets()
        .hosted_zone_id(&zone)
        .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
        .send()
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "edit reported", || async {
        run.handle.status()["dns"]["external_edit"].is_object()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pair(&sdk, &zone).await, Some((255, 77)), "respected, not overwritten");
    assert_eq!(run.handle.status()["dns"]["respected_external_weights"]["aws"], 77);
    run.shutdown.cancel();
}

#[tokio::test]
async fn throttled_route53_is_retried_with_backoff() {
    let (moto, moto_sdk, zone) = moto_with_zone().await;
    let proxy = ThrottleProxy::start(moto.addr).await;
    let sdk = sdk_config(&proxy.url()).await;
    proxy.set_throttling(true);
    let run = start(&sdk, cfg(&zone));
    run.signals.send_replace(ControlSignals { dr: true, ..calm() });
    eventually(Duration::from_secs(10), "throttling reported", || async {
        run.handle.status()["dns"]["last_error"]["kind"] == "throttled"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let throttled = proxy.throttled.load(std::sync::atomic::Ordering::SeqCst);
    assert!(throttled <= 5 * 4, "within the 5 req/s bucket and backing off: {throttled}");
    assert_eq!(pair(&moto_sdk, &zone).await, None, "nothing written while throttled");
    proxy.set_throttling(false);
    eventually(Duration::from_secs(20), "written after throttling", || async {
        pair(&moto_sdk, &zone).await == Some((0, 255))
    })
    .await;
    run.shutdown.cancel();
}
