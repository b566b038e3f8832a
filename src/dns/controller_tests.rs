//! Paused-time tests of the DNS loop against a fake Route 53 that keeps the
//! records, reports changes PENDING for a while, throttles on demand, and
//! logs every call's time (to check the 5 req/s bucket).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::control::runner::Runner;
use crate::dns::records::tests::cfg as base_cfg;
use crate::dns::records::{ObservedRecord, WeightedRecord};

#[derive(Default)]
struct State {
    records: BTreeMap<String, ObservedRecord>,
    batches: Vec<Vec<WeightedRecord>>,
    calls: Vec<Instant>,
    /// GetChange answers PENDING this many times per change.
    pending_polls: u32,
    polls_left: u32,
    polls: u32,
    failures: VecDeque<AwsError>,
    fail_always: Option<AwsError>,
}

#[derive(Default)]
struct Fake(Mutex<State>);

impl Fake {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
    fn call(&self) -> Result<(), AwsError> {
        let mut s = self.lock();
        s.calls.push(Instant::now());
        match s.failures.pop_front().or_else(|| s.fail_always.clone()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
    fn weights(&self) -> Vec<Weights> {
        self.lock().batches.iter().map(|b| Weights { onprem: b[0].weight, aws: b[1].weight }).collect()
    }
    fn edit(&self, id: &str, weight: i64) {
        self.lock().records.get_mut(id).unwrap().weight = Some(weight);
    }
}

impl DnsApi for Fake {
    fn list_records<'a>(
        &'a self,
        _z: &'a str,
        _n: &'a str,
        _t: &'a str,
    ) -> crate::aws::ApiFuture<'a, Vec<ObservedRecord>> {
        Box::pin(async move {
            self.call()?;
            Ok(self.lock().records.values().cloned().collect())
        })
    }
    fn upsert<'a>(
        &'a self,
        _z: &'a str,
        records: &'a [WeightedRecord],
        _c: &'a str,
    ) -> crate::aws::ApiFuture<'a, ChangeInfo> {
        Box::pin(async move {
            self.call()?;
            let mut s = self.lock();
            for r in records {
                s.records.insert(r.set_identifier.clone(), ObservedRecord::from(r));
            }
            s.batches.push(records.to_vec());
            s.polls_left = s.pending_polls;
            let status = if s.pending_polls == 0 { ChangeStatus::InSync } else { ChangeStatus::Pending };
            Ok(ChangeInfo { id: format!("/change/C{}", s.batches.len()), status })
        })
    }
    fn get_change<'a>(&'a self, _id: &'a str) -> crate::aws::ApiFuture<'a, ChangeStatus> {
        Box::pin(async move {
            self.call()?;
            let mut s = self.lock();
            s.polls += 1;
            if s.polls_left == 0 {
                Ok(ChangeStatus::InSync)
            } else {
                s.polls_left -= 1;
                Ok(ChangeStatus::Pending)
            }
        })
    }
}

fn cfg() -> DnsConfig {
    DnsConfig { shift_after: Duration::from_secs(60), min_change_interval: Duration::from_secs(30), ..base_cfg() }
}

struct Rig {
    fake: Arc<Fake>,
    signals: watch::Sender<ControlSignals>,
    status: Arc<Mutex<DnsStatus>>,
    shutdown: CancellationToken,
    _config: watch::Sender<Option<DnsConfig>>,
}

fn rig(fake: Arc<Fake>, cfg: DnsConfig) -> Rig {
    let (signals, signals_rx) = watch::channel(calm());
    let (config, config_rx) = watch::channel(Some(cfg));
    let shutdown = CancellationToken::new();
    let c = Runner::new(DnsController::new(fake.clone(), signals_rx), config_rx, shutdown.clone())
        .with_rng(fastrand::Rng::with_seed(9));
    let status = c.status();
    c.spawn();
    Rig { fake, signals, status, shutdown, _config: config }
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

fn spilling() -> ControlSignals {
    ControlSignals { spilled_rps: 500.0, ..calm() }
}

async fn secs(n: u64) {
    tokio::time::sleep(Duration::from_secs(n)).await;
}

#[tokio::test(start_paused = true)]
async fn missing_records_are_created_in_one_batch() {
    let r = rig(Arc::default(), cfg());
    secs(1).await;
    let s = r.fake.lock();
    assert_eq!(s.batches.len(), 1);
    let b = &s.batches[0];
    assert_eq!(b.len(), 2, "both records in one ChangeResourceRecordSets");
    assert_eq!((b[0].weight, b[1].weight), (255, 0));
    assert_eq!(b[0].ttl, b[1].ttl);
    drop(s);
    r.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn sustained_spill_shifts_in_steps_and_calm_shifts_back() {
    let fake = Arc::new(Fake::default());
    fake.lock().pending_polls = 2;
    let r = rig(fake, cfg());
    secs(10).await;
    r.signals.send_replace(spilling());
    secs(50).await;
    assert_eq!(r.fake.weights().len(), 1, "not sustained yet");
    secs(200).await;
    let up = r.fake.weights();
    assert!(up.len() >= 4, "{up:?}");
    assert!(up.windows(2).all(|w| w[1].aws > w[0].aws && w[1].aws - w[0].aws <= 64), "{up:?}");
    {
        let st = r.status.lock().unwrap().to_json(Instant::now());
        assert_eq!(st["last_change"]["status"], "INSYNC", "{st}");
        assert_eq!(st["last_change"]["reason"], "sustained_spill");
    }
    assert!(r.fake.lock().polls >= 2 * 3, "GetChange polled to INSYNC");
    r.signals.send_replace(calm());
    secs(600).await;
    let all = r.fake.weights();
    let down = &all[up.len()..];
    assert!(!down.is_empty());
    assert!(down.windows(2).all(|w| w[1].aws < w[0].aws && w[0].aws - w[1].aws <= 64), "{down:?}");
    assert_eq!(*down.last().unwrap(), Weights::ONPREM_ONLY);
    r.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn dr_sends_everything_to_aws_at_once() {
    let r = rig(Arc::default(), cfg());
    secs(6).await;
    r.signals.send_replace(ControlSignals { dr: true, ..calm() });
    secs(6).await;
    assert_eq!(r.fake.weights().last(), Some(&Weights::CLOUD_ONLY));
    r.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn throttling_and_prior_request_are_retried_within_the_rate() {
    let fake = Arc::new(Fake::default());
    {
        let mut s = fake.lock();
        s.failures.push_back(AwsError::Throttled { api: "ListResourceRecordSets", code: "Throttling".into() });
        s.failures
            .push_back(AwsError::Busy { api: "ChangeResourceRecordSets", code: "PriorRequestNotComplete".into() });
    }
    let r = rig(fake, cfg());
    r.signals.send_replace(ControlSignals { dr: true, ..calm() });
    secs(30).await;
    assert_eq!(r.fake.weights(), vec![Weights::CLOUD_ONLY]);
    let calls = r.fake.lock().calls.clone();
    for (i, t) in calls.iter().enumerate() {
        let in_window = calls[i..].iter().take_while(|u| u.duration_since(*t) < Duration::from_secs(1)).count();
        assert!(in_window <= 5, "more than 5 calls in 1 s");
    }
    r.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn the_bucket_holds_5_per_second_under_a_storm() {
    let fake = Arc::new(Fake::default());
    fake.lock().pending_polls = 1000;
    let mut c = cfg();
    c.insync_timeout = Duration::from_secs(3600);
    let r = rig(fake, c);
    secs(100).await;
    let calls = r.fake.lock().calls.clone();
    let max = calls
        .iter()
        .enumerate()
        .map(|(i, t)| calls[i..].iter().take_while(|u| u.duration_since(*t) < Duration::from_secs(1)).count())
        .max();
    assert!(max <= Some(5), "{max:?}");
    r.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn insync_timeout_is_reported_and_the_loop_goes_on() {
    let fake = Arc::new(Fake::default());
    fake.lock().pending_polls = u32::MAX;
    let mut c = cfg();
    c.insync_timeout = Duration::from_secs(10);
    let r = rig(fake, c);
    secs(15).await;
    {
        let st = r.status.lock().unwrap().to_json(Instant::now());
        assert_eq!(st["last_error"]["api"], "GetChange", "{st}");
        assert_eq!(st["last_change"]["status"], "PENDING");
    }
    r.fake.lock().polls_left = 0;
    r.fake.lock().pending_polls = 0;
    r.signals.send_replace(ControlSignals { dr: true, ..calm() });
    secs(400).await;
    assert_eq!(r.fake.weights().last(), Some(&Weights::CLOUD_ONLY));
    r.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_outage_backs_off_without_panicking() {
    let fake = Arc::new(Fake::default());
    fake.lock().fail_always =
        Some(AwsError::Unavailable { api: "ListResourceRecordSets", message: "connection refused".into() });
    let r = rig(fake, cfg());
    secs(900).await;
    let n = r.fake.lock().calls.len();
    assert!(n < 100, "backing off: {n} calls in 15 min");
    assert!(r.status.lock().unwrap().consecutive_failures >= 3);
    r.fake.lock().fail_always = None;
    secs(400).await;
    assert_eq!(r.fake.weights(), vec![Weights::ONPREM_ONLY]);
    assert_eq!(r.status.lock().unwrap().consecutive_failures, 0);
    r.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn external_edits_are_respected_or_corrected() {
    for (policy, expect_rewrite) in [(ExternalEdit::Respect, false), (ExternalEdit::Correct, true)] {
        let r = rig(Arc::default(), DnsConfig { on_external_edit: policy, ..cfg() });
        secs(5).await;
        r.fake.edit("aws", 100);
        secs(70).await;
        let st = r.status.lock().unwrap().to_json(Instant::now());
        assert!(st["external_edit"]["detail"].is_string(), "{st}");
        let batches = r.fake.weights();
        if expect_rewrite {
            assert_eq!(batches, vec![Weights::ONPREM_ONLY, Weights::ONPREM_ONLY]);
        } else {
            assert_eq!(batches, vec![Weights::ONPREM_ONLY]);
            assert_eq!(st["respected_external_weights"]["aws"], 100);
        }
        r.shutdown.cancel();
    }
}

#[tokio::test(start_paused = true)]
async fn dry_run_writes_nothing() {
    let r = rig(Arc::default(), DnsConfig { dry_run: true, ..cfg() });
    r.signals.send_replace(ControlSignals { dr: true, ..calm() });
    secs(30).await;
    assert!(r.fake.weights().is_empty());
    assert_eq!(r.status.lock().unwrap().detail.weights, Some(Weights::CLOUD_ONLY));
    r.shutdown.cancel();
}

const CHECK_ONPREM: &str = "6f1f5c1e-0b4d-4a52-9a5e-2f8d6c3b7a10";
const CHECK_AWS: &str = "0c9a7f3e-1d2b-4e6f-8a0b-3c5d7e9f1a2b";

/// Records as CloudFormation made them: with health checks and a TTL the
/// config does not have (so the first read reconciles them).
fn seed_with_health_checks(fake: &Fake, c: &DnsConfig) {
    let known = HealthChecks { onprem: Some(CHECK_ONPREM.into()), aws: Some(CHECK_AWS.into()) };
    let mut s = fake.lock();
    for r in records::batch(c, Weights::ONPREM_ONLY, &known) {
        let mut seen = ObservedRecord::from(&r);
        seen.ttl = Some(300);
        s.records.insert(r.set_identifier.clone(), seen);
    }
}

fn batch_checks(fake: &Fake) -> Vec<(Option<String>, Option<String>)> {
    let s = fake.lock();
    s.batches.iter().map(|b| (b[0].health_check_id.clone(), b[1].health_check_id.clone())).collect()
}

#[tokio::test(start_paused = true)]
async fn health_checks_read_back_are_kept_through_reconcile_and_every_change() {
    let fake = Arc::new(Fake::default());
    seed_with_health_checks(&fake, &cfg());
    let r = rig(fake, cfg());
    secs(10).await;
    r.signals.send_replace(spilling());
    secs(250).await;
    r.signals.send_replace(calm());
    secs(600).await;
    let checks = batch_checks(&r.fake);
    assert!(checks.len() >= 6, "the first-start reconcile and the shifts: {checks:?}");
    let both = (Some(CHECK_ONPREM.to_string()), Some(CHECK_AWS.to_string()));
    assert!(checks.iter().all(|c| *c == both), "{checks:?}");
    assert!(r.status.lock().unwrap().detail.external_edit.is_none(), "our own writes are no edit");
    r.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_configured_health_check_replaces_the_one_read_back() {
    let fake = Arc::new(Fake::default());
    seed_with_health_checks(&fake, &cfg());
    let mut c = cfg();
    c.aws.health_check_id = Some(CHECK_ONPREM.into());
    let r = rig(fake, c);
    secs(5).await;
    assert_eq!(batch_checks(&r.fake), vec![(Some(CHECK_ONPREM.into()), Some(CHECK_ONPREM.into()))]);
    r.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_dropped_health_check_is_an_external_edit_and_corrected_back() {
    for (policy, rewrites) in [(ExternalEdit::Respect, 0), (ExternalEdit::Correct, 1)] {
        let fake = Arc::new(Fake::default());
        let c = DnsConfig { on_external_edit: policy, ..cfg() };
        seed_with_health_checks(&fake, &c);
        let r = rig(fake, c);
        secs(5).await;
        assert_eq!(batch_checks(&r.fake).len(), 1, "the first-start reconcile");
        r.fake.lock().records.get_mut("aws").unwrap().health_check_id = None;
        secs(70).await;
        let st = r.status.lock().unwrap().to_json(Instant::now());
        let detail = st["external_edit"]["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains("health check"), "{policy:?}: {st}");
        let checks = batch_checks(&r.fake);
        assert_eq!(checks.len(), 1 + rewrites, "{policy:?}: {checks:?}");
        assert_eq!(checks.last().unwrap().1.as_deref(), Some(CHECK_AWS), "{policy:?}: restored, never dropped");
        r.shutdown.cancel();
    }
}
