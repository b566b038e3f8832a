//! Starts the AWS controllers (scale, DNS) over real SDK clients or given
//! APIs, with coordination when `[coordination]` is set (the controllers
//! then act only while this instance holds its site's lease, fed with the
//! site's summed signals), and the handle `/status` reads them through.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ticker::SiteDr;
use crate::burst::DrSource;
use crate::config::CoordinationConfig;
use crate::control::runner::{LoopStatus, Report, Runner};
use crate::control::{Authority, ControlInputs, Fence};
use crate::coord::{self, CoordApi, CoordStatus, Takeover};
use crate::dns::{DnsApi, DnsController, DnsStatus, Route53Api};
use crate::notifications::Notifier;
use crate::scale::{AutoScalingApi, CloudCapacity, ScaleController, ScaleStatus, ScalingApi};
use crate::sync::lock;

/// The running controllers.
pub struct ControlHandle {
    scale: Arc<Mutex<ScaleStatus>>,
    dns: Arc<Mutex<DnsStatus>>,
    capacity: watch::Receiver<Option<CloudCapacity>>,
    coordination: Option<Arc<Mutex<CoordStatus>>>,
    /// With coordination: the lease's authority and what the DR machine needs of the lease.
    lease: Option<(watch::Receiver<Authority>, watch::Receiver<coord::LeaseDr>)>,
    tasks: Vec<JoinHandle<()>>,
}

/// What coordination runs on: DynamoDB, its config section, the notifier.
pub(crate) struct CoordInputs {
    pub(crate) api: Arc<dyn CoordApi>,
    pub(crate) config: watch::Receiver<Option<CoordinationConfig>>,
    pub(crate) notifier: Option<Notifier>,
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

    /// The `/status` coordination document (`null` without `[coordination]`).
    pub fn coordination_status(&self) -> Value {
        let now = tokio::time::Instant::now();
        self.coordination.as_ref().map_or(Value::Null, |c| lock(c).to_json(now))
    }

    /// Where this instance's DR state comes from (`burst::DrSource`), the
    /// lease's holder as last read, and until when that source is valid:
    /// alone without coordination (always); the holder while the lease's
    /// authority lasts (`act_until`); otherwise the lease's state as read
    /// less than `fresh` ago (until the read is `fresh` old), else stale.
    /// The fence is the caller's (`ControlPlane::site_dr`).
    pub(crate) fn dr_source(&self, fresh: std::time::Duration) -> SiteDr {
        let Some((authority, lease)) = &self.lease else { return SiteDr::default() };
        let lease = lease.borrow();
        let holder = lease.read.as_ref().and_then(|r| r.holder.clone());
        if let Authority::Holder { version, act_until } = *authority.borrow() {
            if tokio::time::Instant::now() < act_until {
                let written = lease.written.filter(|w| w.version == version);
                let inherited = written.and_then(|w| w.inherited);
                let source = DrSource::Holder { version, inherited, published: written.map(|w| w.ack) };
                return SiteDr { source, holder, fence: None, valid_until: Some(act_until.into_std()) };
            }
        }
        let now = std::time::Instant::now();
        let (source, valid_until) =
            match lease.read.as_ref().filter(|r| now.saturating_duration_since(r.read_at) < fresh) {
                Some(r) => (DrSource::Lease { state: r.state }, r.read_at + fresh),
                None => (DrSource::Stale, now),
            };
        SiteDr { source, holder, fence: None, valid_until: Some(valid_until) }
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

/// Starts both controllers over SDK clients built from an `SdkConfig` the caller built (tests add dummy
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
    start_coordinated(inputs, scaling, dns, None)
}

/// Spawns coordination (if given) and both controllers; with coordination
/// the controllers read the site's summed signals and are fenced by the lease.
pub(crate) fn start_coordinated(
    mut inputs: ControlInputs,
    scaling: Arc<dyn ScalingApi>,
    dns: Arc<dyn DnsApi>,
    coordination: Option<CoordInputs>,
) -> ControlHandle {
    let (mut tasks, mut fence, mut coord_status, mut lease) = (Vec::new(), Fence::default(), None, None);
    if let Some(c) = coordination {
        let takeover = Takeover::new(scaling.clone(), dns.clone(), c.notifier);
        let co = coord::start(c.api, takeover, inputs.signals.clone(), c.config, inputs.shutdown.clone());
        inputs.signals = co.signals;
        lease = Some((co.authority.clone(), co.lease_dr));
        fence = Fence::new(co.authority);
        coord_status = Some(co.status);
        tasks.extend(co.tasks);
    }
    let dns = DnsController::new(dns, inputs.signals.clone()).with_fence(fence.clone());
    let scale = ScaleController::new(scaling, inputs.signals)
        .with_dns_share(dns.cloud_share(), inputs.dns.clone())
        .with_fence(fence);
    let capacity = scale.capacity();
    let dns = Runner::new(dns, inputs.dns, inputs.shutdown.clone());
    let scale = Runner::new(scale, inputs.scale, inputs.shutdown);
    let (scale_status, dns_status) = (scale.status(), dns.status());
    tasks.extend([scale.spawn(), dns.spawn()]);
    ControlHandle { scale: scale_status, dns: dns_status, capacity, coordination: coord_status, lease, tasks }
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
