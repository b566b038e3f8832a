//! CloudWatch: the site's signals published with `PutMetricData`
//! (`[notify.cloudwatch]`). Every 100 ms the publisher takes a
//! [`stats::SiteSample`] from the caller (the signals the scale and DNS
//! controllers read, and the primary pools' gates) into an aggregate; every
//! `interval` it sends the statistic sets, in batches.
//!
//! Off the data plane: one task, reading snapshots only. An AWS error is
//! retried by `aws::Retry` (jittered backoff, bounded attempts, counted in
//! `spillway_aws_errors_total{api="PutMetricData"}`); a batch that still
//! fails is dropped and counted (`spillway_cloudwatch_failures_total`), and
//! the next interval starts afresh, so an outage costs data points, never
//! memory or the proxy's time. The client is built like the controllers'
//! (`aws::load_sdk_config`) for `region`, once.

pub(crate) mod stats;

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
use aws_sdk_cloudwatch::Client;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::aws::retry::DEFAULT_ATTEMPTS;
use crate::aws::{classify, AwsError, Backoff, ClientOptions, Retry};
use crate::config::CloudWatchConfig;
use crate::telemetry::catalog;
use stats::{Aggregate, Datum, SiteSample, Unit};

const PUT: &str = "PutMetricData";
/// How often the site is looked at: about once per gate window (`spill.tick`,
/// 100 ms by default), so short spills are not missed between looks.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Metric datums per `PutMetricData` request (CloudWatch accepts up to 1000).
const MAX_BATCH: usize = 1000;

/// What the publisher reads every 100 ms: the section as it is now, the site, and a sample.
pub(crate) type Sampler = Box<dyn Fn() -> Option<(CloudWatchConfig, String, SiteSample)> + Send>;

/// Publishes until `shutdown`; `region` is read once (a restart changes it).
pub(crate) async fn run(region: String, sample: Sampler, shutdown: CancellationToken) {
    let options = ClientOptions { region: Some(region), endpoint_url: None };
    let client = Client::new(&crate::aws::load_sdk_config(&options).await);
    let mut retry = Retry::new(Backoff::default(), DEFAULT_ATTEMPTS, fastrand::Rng::new());
    let mut agg = Aggregate::default();
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_put = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let Some((cfg, site, s)) = sample() else { return };
        if !cfg.enabled {
            agg = Aggregate::default();
            continue;
        }
        agg.add(&s);
        let now = Instant::now();
        if now < next_put {
            continue;
        }
        next_put = now + cfg.interval;
        let datums = agg.drain(&site);
        put_all(&client, &mut retry, &shutdown, &cfg.namespace, &datums).await;
    }
}

async fn put_all(client: &Client, retry: &mut Retry, shutdown: &CancellationToken, namespace: &str, d: &[Datum]) {
    let at = DateTime::from(SystemTime::now());
    for batch in d.chunks(MAX_BATCH) {
        let data: Vec<MetricDatum> = batch.iter().map(|x| datum(x, at)).collect();
        let result = retry
            .call(shutdown, || async {
                client
                    .put_metric_data()
                    .namespace(namespace)
                    .set_metric_data(Some(data.clone()))
                    .send()
                    .await
                    .map_err(|e| classify(PUT, e))
            })
            .await;
        match result {
            Ok(_) => metrics::counter!(catalog::CLOUDWATCH_DATUMS).increment(batch.len() as u64),
            Err(e) => failed(&e, batch.len()),
        }
    }
}

fn failed(e: &AwsError, datums: usize) {
    metrics::counter!(catalog::CLOUDWATCH_FAILURES).increment(1);
    tracing::warn!(api = e.api(), kind = e.kind(), datums, "CloudWatch batch dropped: {e}");
}

fn datum(d: &Datum, at: DateTime) -> MetricDatum {
    let dimensions = d.dimensions.iter().map(|(k, v)| Dimension::builder().name(*k).value(v).build()).collect();
    let s = d.stats;
    let stats = StatisticSet::builder().minimum(s.min).maximum(s.max).sum(s.sum).sample_count(s.count).build();
    MetricDatum::builder()
        .metric_name(d.name)
        .set_dimensions(Some(dimensions))
        .statistic_values(stats)
        .unit(unit(d.unit))
        .timestamp(at)
        .build()
}

fn unit(u: Unit) -> StandardUnit {
    match u {
        Unit::CountPerSecond => StandardUnit::CountSecond,
        Unit::Count => StandardUnit::Count,
        Unit::Seconds => StandardUnit::Seconds,
        Unit::None => StandardUnit::None,
    }
}
