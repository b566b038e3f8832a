//! The control plane's boundary with the rest of Spillway: the signals the
//! gate publishes, the entry point that builds the SDK clients and spawns
//! the scale and DNS controllers, and the handle the admin `/status` reads.
//!
//! Invariants: controllers only read the signals and config channels; a
//! controller failure never reaches the data plane (no panics, no blocking:
//! status is a short `Mutex` snapshot); shutdown is one `CancellationToken`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::aws::{self, AwsError, ClientOptions};
use crate::config::{DnsConfig, ScaleConfig};
use crate::dns::{DnsApi, DnsController, DnsStatus, Route53Api};
use crate::scale::{AutoScalingApi, CloudCapacity, ScaleController, ScaleStatus, ScalingApi};

/// What the gate publishes once per tick (≈100 ms) for the controllers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ControlSignals {
    /// Requests/s arriving for on-prem-primary routes (spilled ones included).
    pub arrival_rps: f64,
    /// Of which sent to the cloud pool.
    pub spilled_rps: f64,
    /// Learned from the gate's limit and latency (limit / mean latency); `None` if unknown.
    pub onprem_capacity_rps: Option<f64>,
    /// Every on-prem endpoint unhealthy: DR mode.
    pub dr: bool,
    pub cloud_healthy: bool,
}

/// The channels the controllers read; the caller keeps the senders.
pub struct ControlInputs {
    pub signals: watch::Receiver<ControlSignals>,
    /// A reload sends the new section; `None`: the section is absent.
    pub scale: watch::Receiver<Option<ScaleConfig>>,
    pub dns: watch::Receiver<Option<DnsConfig>>,
    pub shutdown: CancellationToken,
}

/// The running controllers.
pub struct ControlHandle {
    scale: Arc<Mutex<ScaleStatus>>,
    dns: Arc<Mutex<DnsStatus>>,
    capacity: watch::Receiver<Option<CloudCapacity>>,
    tasks: Vec<JoinHandle<()>>,
}

impl ControlHandle {
    /// The `/status` JSON: `{"scale": {...}, "dns": {...}}`.
    pub fn status(&self) -> Value {
        let now = tokio::time::Instant::now();
        let scale = self
            .scale
            .lock()
            .map(|s| s.to_json(now))
            .unwrap_or(Value::Null);
        let dns = self
            .dns
            .lock()
            .map(|s| s.to_json(now))
            .unwrap_or(Value::Null);
        json!({ "scale": scale, "dns": dns })
    }

    /// Warm cloud capacity as last read from the group (for the gate).
    pub fn cloud_capacity(&self) -> watch::Receiver<Option<CloudCapacity>> {
        self.capacity.clone()
    }

    /// Waits for both loops to end (after the shutdown token fires).
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Builds the SDK clients from the standard AWS chain (`AWS_REGION`,
/// `AWS_ENDPOINT_URL`, profiles, instance roles; `options` may override the
/// region and endpoint) and spawns both controllers.
pub async fn start(inputs: ControlInputs, options: ClientOptions) -> ControlHandle {
    let region = options
        .region
        .clone()
        .or_else(|| inputs.scale.borrow().as_ref().map(|c| c.region.clone()));
    let sdk = aws::load_sdk_config(&ClientOptions { region, ..options }).await;
    start_with_sdk(inputs, &sdk)
}

/// Like [`start`], with an `SdkConfig` the caller built (tests add dummy
/// credentials and an emulator endpoint this way).
pub fn start_with_sdk(inputs: ControlInputs, sdk: &aws_config::SdkConfig) -> ControlHandle {
    start_with_apis(
        inputs,
        Arc::new(AutoScalingApi::new(sdk)),
        Arc::new(Route53Api::new(sdk)),
    )
}

/// Spawns both controllers over the given APIs (real or fake).
pub fn start_with_apis(
    inputs: ControlInputs,
    scaling: Arc<dyn ScalingApi>,
    dns: Arc<dyn DnsApi>,
) -> ControlHandle {
    let dns = DnsController::new(
        dns,
        inputs.signals.clone(),
        inputs.dns,
        inputs.shutdown.clone(),
    );
    let scale = ScaleController::new(scaling, inputs.signals, inputs.scale, inputs.shutdown)
        .with_dns_share(dns.cloud_share());
    let handle = ControlHandle {
        scale: scale.status(),
        dns: dns.status(),
        capacity: scale.capacity(),
        tasks: Vec::new(),
    };
    ControlHandle {
        tasks: vec![scale.spawn(), dns.spawn()],
        ..handle
    }
}

/// Wall time that follows tokio's clock from a base, so scheduled events and
/// paused-time tests agree.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    base_wall: SystemTime,
    base: tokio::time::Instant,
}

impl WallClock {
    pub fn new(base_wall: SystemTime, base: tokio::time::Instant) -> Self {
        Self { base_wall, base }
    }

    pub fn at(&self, now: tokio::time::Instant) -> SystemTime {
        self.base_wall + now.saturating_duration_since(self.base)
    }
}

/// The last failure, as status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRecord {
    pub at: SystemTime,
    pub api: &'static str,
    pub kind: &'static str,
    pub message: String,
}

impl ErrorRecord {
    pub fn new(at: SystemTime, err: &AwsError) -> Self {
        Self {
            at,
            api: err.api(),
            kind: err.kind(),
            message: err.to_string(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({ "at": rfc3339(self.at), "api": self.api, "kind": self.kind, "message": self.message })
    }
}

/// RFC 3339 with seconds, for status.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Milliseconds for JSON.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
