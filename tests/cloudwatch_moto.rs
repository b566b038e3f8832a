//! CloudWatch through the real binary and moto: a spill episode (slow
//! writes hold on-prem at its ceiling of two and its p99 over the SLO, and
//! the reads beside them spill; no read-after-write pins) is published
//! with `PutMetricData`; `GetMetricStatistics` then returns datapoints with
//! `site = dc1` showing the spill (`Mode` 1, `SpillShare` above 0), and
//! `ListMetrics` has every contract name. Never real AWS: the binary's
//! CloudWatch endpoint is moto on loopback, the credentials are dummies.
//! Run `scripts/moto-env` first.

#[path = "support/moto.rs"]
mod moto;
mod support;

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use http::Method;
use moto::{sdk_config, Moto, ThrottleProxy};
use support::{Origin, Spillway, ADMIN};

const NAMES: [&str; 7] = [
    "ArrivalsPerSecond",
    "SpilledPerSecond",
    "SpillShare",
    "OnPremInFlight",
    "OnPremLimit",
    "Mode",
    "DisasterRecovery",
];

/// The maximum of `name` for `site = dc1` (and `pool`, if given) over the last 10 minutes.
async fn maximum(cw: &aws_sdk_cloudwatch::Client, name: &str, pool: Option<&str>) -> Option<f64> {
    let now = SystemTime::now();
    let mut dims = vec![Dimension::builder().name("site").value("dc1").build()];
    dims.extend(pool.map(|p| Dimension::builder().name("pool").value(p).build()));
    let out = cw
        .get_metric_statistics()
        .namespace("Spillway/Test")
        .metric_name(name)
        .set_dimensions(Some(dims))
        .start_time(DateTime::from(now - Duration::from_secs(600)))
        .end_time(DateTime::from(now + Duration::from_secs(60)))
        .period(60)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .unwrap();
    out.datapoints().iter().filter_map(|d| d.maximum()).reduce(f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spill_episode_reaches_cloudwatch_with_the_site_dimension() {
    let moto = Moto::start().await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk_config(&moto.url()).await);
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let config = format!(
        "{ADMIN}\n[runtime]\nsite = \"dc1\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [pools.onprem]\nendpoints = [\"{}\"]\n\n[pools.aws]\nrole = \"cloud\"\nendpoints = [\"{}\"]\n\n\
         [[route]]\nprimary = \"onprem\"\noverflow = \"aws\"\n\n\
         [spill]\ntick = \"50ms\"\nmode = \"static\"\nmax_in_flight = 2\nmin_limit = 1\nlatency_slo = \"40ms\"\nenter_after = \"150ms\"\nexit_after = \"2s\"\npin_after_write = \"0s\"\n\n\
         [notify.cloudwatch]\nnamespace = \"Spillway/Test\"\ninterval = \"1s\"\n",
        onprem.endpoint(),
        cloud.endpoint()
    );
    let env = [
        ("AWS_ENDPOINT_URL_CLOUDWATCH", moto.url()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    let sw = Spillway::start_in_env(tempfile::tempdir().unwrap(), &config, &env).await;
    let (save, read) = (sw.url("web", "/save?delay_ms=300"), sw.url("web", "/read?delay_ms=20"));
    // Two slow writes (never spilled) fill on-prem to its ceiling and push
    // the p99 over the SLO; the reads beside them spill.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let write = futures_util::future::join_all((0..2).map(|_| support::request(Method::POST, &save, vec![], b"x")));
        let reads = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            futures_util::future::join_all((0..4).map(|_| support::get(&read))).await
        };
        let (_, replies) = tokio::join!(write, reads);
        let spilled = replies.iter().flatten().any(|r| r.origin() == Some("cloud"));
        if spilled && maximum(&cw, "SpillShare", None).await.is_some_and(|m| m > 0.0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no spill reached CloudWatch; log:\n{}", sw.log());
    }
    assert_eq!(maximum(&cw, "Mode", None).await, Some(1.0), "the site spilled");
    assert_eq!(maximum(&cw, "Mode", Some("onprem")).await, Some(1.0), "and so did its pool");
    assert_eq!(maximum(&cw, "DisasterRecovery", None).await, Some(0.0));
    assert!(maximum(&cw, "ArrivalsPerSecond", None).await.is_some_and(|m| m > 0.0));
    assert!(maximum(&cw, "OnPremLimit", Some("onprem")).await.is_some_and(|m| m > 0.0));

    let listed = cw
        .list_metrics()
        .namespace("Spillway/Test")
        .dimensions(aws_sdk_cloudwatch::types::DimensionFilter::builder().name("site").value("dc1").build())
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = listed.metrics().iter().filter_map(|m| m.metric_name()).collect();
    for name in NAMES {
        assert!(names.contains(&name), "{name} not listed: {names:?}");
    }
    assert!(!names.contains(&"ReplicaLagSeconds"), "no cloud endpoint reports lag: nothing published");
    assert!(sw.metric("spillway_cloudwatch_datums_total").await > 0.0);
}

/// CloudWatch throttles every call: the proxy keeps serving, each batch is
/// retried a bounded number of times and then dropped and counted; when the
/// throttling ends, datums flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_costs_datapoints_never_the_data_plane() {
    let moto = Moto::start().await;
    let throttle = ThrottleProxy::start(moto.addr).await;
    throttle.set_throttling(true);
    let origin = Origin::start("onprem").await;
    let config = format!(
        "{}\n[notify.cloudwatch]\nnamespace = \"Spillway/Test\"\ninterval = \"1s\"\n",
        support::simple_config(&[&origin], "", "").replace("[runtime]\n", "[runtime]\nsite = \"dc1\"\n")
    );
    let env = [
        ("AWS_ENDPOINT_URL_CLOUDWATCH", throttle.url()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    let sw = Spillway::start_in_env(tempfile::tempdir().unwrap(), &config, &env).await;
    let url = sw.url("web", "/");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sw.metric("spillway_cloudwatch_failures_total").await < 1.0 {
        let resp = support::get(&url).await.expect("the proxy answers while CloudWatch throttles");
        assert_eq!(resp.status, 200);
        assert!(tokio::time::Instant::now() < deadline, "no batch was given up; log:\n{}", sw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sw.metric("spillway_aws_errors_total").await >= 4.0, "every attempt counted");
    assert_eq!(sw.metric("spillway_cloudwatch_datums_total").await, 0.0);
    assert!(sw.log().contains("CloudWatch batch dropped"), "{}", sw.log());
    throttle.set_throttling(false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sw.metric("spillway_cloudwatch_datums_total").await == 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "datums did not flow again; log:\n{}", sw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn check_refuses_a_namespace_cloudwatch_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    for (bad, words) in [("AWS/EC2", "reserved"), ("bad|name", "letters")] {
        let text = format!(
            "{ADMIN}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n[pools.p]\nendpoints = [\"127.0.0.1:1\"]\n[[route]]\nprimary = \"p\"\n[notify.cloudwatch]\nnamespace = \"{bad}\"\n"
        );
        std::fs::write(&path, text).unwrap();
        let (code, _, stderr) = support::spillway::check(&path);
        assert_eq!(code, 1, "{bad}");
        assert!(stderr.contains("notify.cloudwatch.namespace") && stderr.contains(words), "{stderr}");
    }
}
