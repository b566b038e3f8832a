//! Coordination of several Spillways per site and across sites, on one
//! DynamoDB table: every instance heartbeats its signals; one instance per
//! site holds the site's lease (a conditional write whose version is the
//! fencing token) and only it runs the site's scale and DNS controllers,
//! fed with the sum of the site's fresh heartbeats; the holder of a site
//! may take over another site that is lost (`takeover.rs`).
//!
//! Pure parts: `policy.rs` (every decision) and `api.rs` (the DynamoDB calls
//! as a trait). I/O: `sdk.rs`, `controller.rs`, `takeover.rs` and the
//! combiner below, which adds the local signals (live) to the peers' sum
//! (as of the last heartbeat read) for the controllers.
//!
//! Invariants: without `[coordination]` nothing here runs; the authority
//! published is never wider than what the last successful lease write
//! granted; shutdown ends both tasks.

pub(crate) mod api;
pub(crate) mod controller;
pub(crate) mod policy;
mod sdk;
pub(crate) mod takeover;

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) use api::CoordApi;
pub(crate) use controller::{CoordController, CoordStatus, LeaseDr};
pub(crate) use sdk::DynamoApi;
pub(crate) use takeover::Takeover;

use crate::config::CoordinationConfig;
use crate::control::runner::Runner;
use crate::control::{Authority, ControlSignals};

/// A started coordination loop: what the controllers and `/status` read.
pub(crate) struct Coordination {
    pub(crate) authority: watch::Receiver<Authority>,
    /// The site's summed signals (local + fresh peers).
    pub(crate) signals: watch::Receiver<ControlSignals>,
    pub(crate) status: Arc<Mutex<CoordStatus>>,
    /// What the DR machine needs of the site's lease: its state as last
    /// read, and this instance's acknowledged lease writes.
    pub(crate) lease_dr: watch::Receiver<LeaseDr>,
    pub(crate) tasks: Vec<JoinHandle<()>>,
}

/// Spawns the coordination loop and the signal combiner.
pub(crate) fn start(
    api: Arc<dyn CoordApi>,
    takeover: Takeover,
    local: watch::Receiver<ControlSignals>,
    config: watch::Receiver<Option<CoordinationConfig>>,
    shutdown: CancellationToken,
) -> Coordination {
    let (authority_tx, authority) = watch::channel(Authority::Follower);
    let (peers_tx, peers) = watch::channel((ControlSignals::default(), 0));
    let (summed_tx, signals) = watch::channel(local.borrow().clone());
    let (lease_dr_tx, lease_dr) = watch::channel(LeaseDr::default());
    let controller = CoordController::new(api, takeover, local.clone(), authority_tx, peers_tx, lease_dr_tx);
    let runner = Runner::new(controller, config, shutdown.clone());
    let status = runner.status();
    let combiner = tokio::spawn(combine(local, peers, summed_tx, shutdown));
    Coordination { authority, signals, status, lease_dr, tasks: vec![runner.spawn(), combiner] }
}

/// Republishes local + peers whenever either changes.
async fn combine(
    mut local: watch::Receiver<ControlSignals>,
    mut peers: watch::Receiver<(ControlSignals, usize)>,
    out: watch::Sender<ControlSignals>,
    shutdown: CancellationToken,
) {
    loop {
        let sum = {
            let (p, n) = &*peers.borrow_and_update();
            policy::combine(&local.borrow_and_update(), p, *n)
        };
        out.send_replace(sum);
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = local.changed() => if r.is_err() { return },
            r = peers.changed() => if r.is_err() { return },
        }
    }
}
