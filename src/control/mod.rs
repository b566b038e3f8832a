//! The control plane's contract with the rest of Spillway: the signals the
//! gate publishes for the controllers, the channels they read, the status
//! helpers they share and ([`runner`]) the one loop that drives every
//! controller. Apart from the runner's waits, nothing here does I/O.
//!
//! Invariants: controllers only read the signals and config channels; a
//! controller failure never reaches the data plane (no panics, no blocking:
//! status is a short `Mutex` snapshot); shutdown is one `CancellationToken`.

pub(crate) mod runner;
pub(crate) mod smooth;

use std::time::SystemTime;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use tokio::time::Instant;

use crate::aws::error::AwsError;
use crate::config::{DnsConfig, ScaleConfig};
use crate::telemetry::catalog;

/// What the gate publishes once per tick (≈100 ms) for the controllers; the
/// rates are means over the scale controller's interval ([`smooth`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ControlSignals {
    /// Requests/s arriving for on-prem-primary routes (spilled ones included).
    pub arrival_rps: f64,
    /// Of which sent to the cloud pool.
    pub spilled_rps: f64,
    /// Of which shed (503 after waiting for a slot): demand no pool served.
    pub shed_rps: f64,
    /// Learned from the gate's limit and latency (limit / mean latency); `None` if unknown.
    pub onprem_capacity_rps: Option<f64>,
    /// Writes are in the cloud (`dr_active`, `failback_pending`): DNS to the
    /// cloud, the group at `dr_capacity`.
    pub dr: bool,
    /// The group goes to `dr_capacity` at once but DNS stays: DR waits for
    /// an engage (`dr_pending`: the cloud must not take writes yet), or a
    /// drill runs (no user moves).
    pub dr_capacity: bool,
    pub cloud_healthy: bool,
    /// The site's DR state as this instance's machine holds it (the lease
    /// holder writes it into the lease for its followers).
    pub dr_state: crate::burst::DrState,
    /// The lease version whose inherited DR state this instance's machine
    /// has taken (`burst::DrMachine::synced`): until it has, a new holder
    /// writes the inherited state into the lease, not `dr_state`.
    pub dr_synced: Option<u64>,
}

/// The channels the controllers read; the caller keeps the senders.
pub struct ControlInputs {
    pub signals: watch::Receiver<ControlSignals>,
    /// A reload sends the new section; `None`: the section is absent.
    pub scale: watch::Receiver<Option<ScaleConfig>>,
    pub dns: watch::Receiver<Option<DnsConfig>>,
    pub shutdown: CancellationToken,
}

/// Whether this instance may make its site's AWS writes, as the
/// coordination loop last established it (`tokio::sync::watch`). Without
/// `[coordination]` the controllers get none and write as the only instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Authority {
    /// Holds the site's lease, `version` being the fencing token, and may act
    /// until `act_until` (the lease's expiry, as seen locally, less a margin).
    Holder { version: u64, act_until: Instant },
    /// Another instance holds the lease, or none is known yet.
    Follower,
}

impl Authority {
    /// The question every controller asks right before an AWS write.
    pub(crate) fn may_write(&self, now: Instant) -> bool {
        matches!(self, Self::Holder { act_until, .. } if now < *act_until)
    }

    /// The fencing token, when holding.
    pub(crate) fn version(&self) -> Option<u64> {
        match self {
            Self::Holder { version, .. } => Some(*version),
            Self::Follower => None,
        }
    }
}

/// A controller's view of [`Authority`]; `None`: no coordination, always allowed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Fence(Option<watch::Receiver<Authority>>);

impl Fence {
    pub(crate) fn new(rx: watch::Receiver<Authority>) -> Self {
        Self(Some(rx))
    }

    /// `Some(version)` while holding (or `Some(0)` without coordination); `None`: a follower.
    pub(crate) fn holder(&self, now: Instant) -> Option<u64> {
        match &self.0 {
            None => Some(0),
            Some(rx) => {
                let a = *rx.borrow();
                a.may_write(now).then(|| a.version().unwrap_or(0))
            }
        }
    }

    /// Whether a write may go out now; counts and logs a fenced one.
    pub(crate) fn allows(&self, api: &'static str, now: Instant) -> bool {
        let ok = self.holder(now).is_some();
        if !ok {
            metrics::counter!(catalog::COORD_FENCED_WRITES, "api" => api).increment(1);
            tracing::warn!(api, "not the lease holder (or past its lease): write skipped");
        }
        ok
    }
}

/// The last failure, as status shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorRecord {
    pub(crate) at: SystemTime,
    pub(crate) api: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl ErrorRecord {
    pub(crate) fn new(at: SystemTime, err: &AwsError) -> Self {
        Self { at, api: err.api(), kind: err.kind(), message: err.to_string() }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({ "at": rfc3339(self.at), "api": self.api, "kind": self.kind, "message": self.message })
    }
}

/// RFC 3339 with seconds, for status.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
