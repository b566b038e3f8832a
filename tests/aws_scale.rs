//! End-to-end: the scale controller against a real moto server (real SDK
//! calls), in real time with short intervals. Run `scripts/moto-env` first.

#[path = "support/moto.rs"]
mod moto;

use std::time::{Duration, SystemTime};

use moto::{create_group, desired, eventually, sdk_config, Moto, ThrottleProxy};
use spillway::app::control::{start_with_sdk, ControlHandle};
use spillway::config::{ScaleConfig, ScheduledEvent};
use spillway::control::{ControlInputs, ControlSignals};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const GROUP: &str = "sportchat-burst";

fn cfg() -> ScaleConfig {
    ScaleConfig {
        enabled: true,
        dry_run: false,
        region: "us-east-1".into(),
        auto_scaling_group: GROUP.into(),
        per_instance_rps: 100,
        warmup: Duration::from_secs(5),
        headroom: 0.2,
        min: 1,
        max: 20,
        dr_capacity: 8,
        scale_in_cooldown: Duration::from_secs(2),
        onprem_capacity_rps: Some(1000),
        events: Vec::new(),
        interval: Duration::from_millis(200),
        forecast_alpha: 0.5,
        forecast_beta: 0.3,
        scale_in_step: 3,
        scale_in_interval: Duration::from_millis(400),
    }
}

struct Run {
    handle: ControlHandle,
    signals: watch::Sender<ControlSignals>,
    shutdown: CancellationToken,
    _config: (watch::Sender<Option<ScaleConfig>>, watch::Sender<Option<spillway::config::DnsConfig>>),
}

fn start(sdk: &aws_config::SdkConfig, cfg: ScaleConfig) -> Run {
    let (signals, signals_rx) = watch::channel(ControlSignals { cloud_healthy: true, ..Default::default() });
    let (scale_tx, scale) = watch::channel(Some(cfg));
    let (dns_tx, dns) = watch::channel(None);
    let shutdown = CancellationToken::new();
    let inputs = ControlInputs { signals: signals_rx, scale, dns, shutdown: shutdown.clone() };
    Run { handle: start_with_sdk(inputs, sdk), signals, shutdown, _config: (scale_tx, dns_tx) }
}

/// A moto with the group created (and both services warmed up).
async fn moto_with_group() -> (Moto, aws_config::SdkConfig) {
    let moto = Moto::start().await;
    let sdk = sdk_config(&moto.url()).await;
    create_group(&sdk, GROUP, 1, 0, 20).await;
    (moto, sdk)
}

fn dr() -> ControlSignals {
    ControlSignals { dr: true, cloud_healthy: true, ..Default::default() }
}

#[tokio::test]
async fn a_ramp_raises_desired_capacity_before_spill_begins() {
    let (_moto, sdk) = moto_with_group().await;
    let run = start(&sdk, cfg());
    // 200 rps, then +40 rps per 100 ms (400 rps/s); on-prem holds 1000 rps,
    // so spill begins 2 s (ten samples) into the ramp. A trend is projected
    // only once it has outlasted the samples a step takes to settle (four at
    // alpha 0.5): a ramp that spilled sooner could not be told from a step.
    let mut spill_began_with = None;
    for step in 0..80 {
        let arrival = 200.0 + 40.0 * f64::from(step.max(10) - 10);
        let spilled = (arrival - 1000.0_f64).max(0.0);
        if spilled > 0.0 && spill_began_with.is_none() {
            spill_began_with = Some(desired(&sdk, GROUP).await);
        }
        run.signals.send_replace(ControlSignals {
            arrival_rps: arrival,
            spilled_rps: spilled,
            shed_rps: 0.0,
            onprem_capacity_rps: Some(1000.0),
            dr: false,
            dr_capacity: false,
            cloud_healthy: true,
            dr_state: Default::default(),
            dr_synced: None,
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at_spill = spill_began_with.expect("the ramp spills");
    assert!(at_spill > 1, "desired capacity was raised before spill began: {at_spill}");
    let end = desired(&sdk, GROUP).await;
    assert!(end >= 20, "2960 rps arriving: overflow 1960 × 1.2 / 100 → the max 20, got {end}");
    let st = run.handle.status();
    assert_eq!(st["scale"]["desired_capacity"], 20, "{st}");
    run.shutdown.cancel();
    run.handle.join().await;
}

#[tokio::test]
async fn a_scheduled_event_raises_capacity_ahead_of_its_start() {
    let (_moto, sdk) = moto_with_group().await;
    let mut c = cfg();
    let start_at = SystemTime::now() + Duration::from_secs(8);
    c.events = vec![ScheduledEvent {
        name: "cup final".into(),
        start: start_at,
        end: start_at + Duration::from_secs(60),
        expected_rps: 2000,
    }];
    let run = start(&sdk, c);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(desired(&sdk, GROUP).await, 1, "too early");
    // ceil((2000 - 1000) × 1.2 / 100) = 12, due warmup (5 s) before the start.
    eventually(Duration::from_secs(10), "pre-scaled for the event", || async { desired(&sdk, GROUP).await == 12 })
        .await;
    assert!(SystemTime::now() < start_at, "raised before the event's start");
    assert_eq!(run.handle.status()["scale"]["last_decision"]["event"], "cup final");
    run.shutdown.cancel();
}

#[tokio::test]
async fn dr_raises_at_once_and_calm_lowers_only_after_the_cooldown() {
    let (_moto, sdk) = moto_with_group().await;
    let run = start(&sdk, cfg());
    run.signals.send_replace(dr());
    eventually(Duration::from_secs(3), "DR capacity", || async { desired(&sdk, GROUP).await == 8 }).await;
    run.signals.send_replace(ControlSignals { cloud_healthy: true, ..Default::default() });
    let calm_since = std::time::Instant::now();
    eventually(Duration::from_secs(10), "first scale-in step", || async { desired(&sdk, GROUP).await < 8 }).await;
    assert!(calm_since.elapsed() >= Duration::from_millis(1800), "not before the 2 s cooldown");
    assert_eq!(desired(&sdk, GROUP).await, 5, "a bounded step of 3");
    eventually(Duration::from_secs(10), "back to the pilot light", || async { desired(&sdk, GROUP).await == 1 }).await;
    let st = run.handle.status();
    assert_eq!(st["scale"]["last_action"]["desired"], 1, "{st}");
    run.shutdown.cancel();
}

#[tokio::test]
async fn moto_stopped_mid_test_leaves_the_controller_backing_off() {
    let (mut moto, sdk) = moto_with_group().await;
    let run = start(&sdk, cfg());
    eventually(Duration::from_secs(5), "first read", || async {
        run.handle.status()["scale"]["in_service"].is_number()
    })
    .await;
    moto.stop();
    run.signals.send_replace(dr());
    eventually(Duration::from_secs(20), "failures reported", || async {
        let st = run.handle.status();
        st["scale"]["consecutive_failures"].as_u64() >= Some(2)
    })
    .await;
    let st = run.handle.status();
    assert_eq!(st["scale"]["last_error"]["kind"], "unavailable", "{st}");
    assert!(st["scale"]["next_attempt_in_ms"].is_number());
    // The runtime still serves: the loops are alive and status answers at once.
    tokio::time::timeout(Duration::from_millis(50), async { run.handle.status() }).await.unwrap();
    run.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), run.handle.join()).await.expect("loops stop on shutdown");
}

#[tokio::test]
async fn throttling_backs_off_then_recovers() {
    let (_moto, moto_sdk) = moto_with_group().await;
    let proxy = ThrottleProxy::start(_moto.addr).await;
    let sdk = sdk_config(&proxy.url()).await;
    proxy.set_throttling(true);
    let run = start(&sdk, cfg());
    run.signals.send_replace(dr());
    eventually(Duration::from_secs(10), "throttling reported", || async {
        run.handle.status()["scale"]["last_error"]["kind"] == "throttled"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(desired(&moto_sdk, GROUP).await, 1, "nothing got through");
    let throttled = proxy.throttled.load(std::sync::atomic::Ordering::SeqCst);
    assert!(throttled < 40, "backing off, not hammering: {throttled} calls");
    proxy.set_throttling(false);
    eventually(Duration::from_secs(20), "recovered", || async { desired(&moto_sdk, GROUP).await == 8 }).await;
    run.shutdown.cancel();
}

/// Issue 16: a cold cloud serves 300 req/s of the spill and 400 req/s more
/// are shed. Without a known on-prem capacity the group used to be sized for
/// what the cloud managed to serve; the shed requests are demand too.
#[tokio::test]
async fn shed_demand_raises_desired_capacity() {
    let (_moto, sdk) = moto_with_group().await;
    let run = start(&sdk, ScaleConfig { onprem_capacity_rps: None, ..cfg() });
    let signals = |shed_rps: f64| ControlSignals {
        arrival_rps: 1700.0,
        spilled_rps: 300.0,
        shed_rps,
        onprem_capacity_rps: None,
        dr: false,
        dr_capacity: false,
        cloud_healthy: true,
        dr_state: Default::default(),
        dr_synced: None,
    };
    run.signals.send_replace(signals(0.0));
    // 300 × 1.2 headroom / 100 per instance: 4.
    eventually(Duration::from_secs(10), "desired 4", || async { desired(&sdk, GROUP).await == 4 }).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(desired(&sdk, GROUP).await, 4, "sized for the served spill alone");
    run.signals.send_replace(signals(400.0));
    // (300 + 400) × 1.2 / 100: 9.
    eventually(Duration::from_secs(10), "desired 9", || async { desired(&sdk, GROUP).await >= 9 }).await;
    // The status shows the group as last read back (the tick after the write).
    eventually(Duration::from_secs(5), "the status at 9", || async {
        run.handle.status()["scale"]["desired_capacity"].as_i64() >= Some(9)
    })
    .await;
    run.shutdown.cancel();
    run.handle.join().await;
}
