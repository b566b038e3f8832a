//! Starts the AWS controllers (scale, DNS) over real SDK clients or given
//! APIs, and the handle `/status` reads them through.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aws::{self, ClientOptions};
use crate::control::runner::{LoopStatus, Report, Runner};
use crate::control::ControlInputs;
use crate::dns::{DnsApi, DnsController, DnsStatus, Route53Api};
use crate::scale::{AutoScalingApi, CloudCapacity, ScaleController, ScaleStatus, ScalingApi};
use crate::sync::lock;

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
        let scale = lock(&self.scale).to_json(now);
        let dns = lock(&self.dns).to_json(now);
        json!({ "scale": scale, "dns": dns })
    }

    /// What the notification watcher compares between two looks.
    pub(crate) fn observe(&self) -> [LoopView; 2] {
        [view("scale", &lock(&self.scale), "last_action"), view("dns", &lock(&self.dns), "last_change")]
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
pub(crate) async fn start(inputs: ControlInputs, options: ClientOptions) -> ControlHandle {
    let region = options.region.clone().or_else(|| inputs.scale.borrow().as_ref().map(|c| c.region.clone()));
    let sdk = aws::load_sdk_config(&ClientOptions { region, ..options }).await;
    start_with_sdk(inputs, &sdk)
}

/// Like [`start`], with an `SdkConfig` the caller built (tests add dummy
/// credentials and an emulator endpoint this way).
pub fn start_with_sdk(inputs: ControlInputs, sdk: &aws_config::SdkConfig) -> ControlHandle {
    start_with_apis(inputs, Arc::new(AutoScalingApi::new(sdk)), Arc::new(Route53Api::new(sdk)))
}

/// Spawns both controllers over the given APIs (real or fake).
pub(crate) fn start_with_apis(
    inputs: ControlInputs,
    scaling: Arc<dyn ScalingApi>,
    dns: Arc<dyn DnsApi>,
) -> ControlHandle {
    let dns = DnsController::new(dns, inputs.signals.clone());
    let scale = ScaleController::new(scaling, inputs.signals).with_dns_share(dns.cloud_share());
    let capacity = scale.capacity();
    let dns = Runner::new(dns, inputs.dns, inputs.shutdown.clone());
    let scale = Runner::new(scale, inputs.scale, inputs.shutdown);
    let (scale_status, dns_status) = (scale.status(), dns.status());
    ControlHandle { scale: scale_status, dns: dns_status, capacity, tasks: vec![scale.spawn(), dns.spawn()] }
}

/// One controller loop as the notification watcher sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LoopView {
    pub(crate) name: &'static str,
    pub(crate) failures: u32,
    pub(crate) last_error: Option<String>,
    /// The last action taken, as `/status` shows it (`last_action`, `last_change`).
    pub(crate) action: Value,
}

fn view<R: Report>(name: &'static str, status: &LoopStatus<R>, action: &str) -> LoopView {
    LoopView {
        name,
        failures: status.consecutive_failures,
        last_error: status.last_error.as_ref().map(|e| e.message.clone()),
        action: status.detail.to_json()[action].clone(),
    }
}
