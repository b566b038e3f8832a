//! The control plane's contract with the rest of Spillway: the signals the
//! gate publishes for the controllers, the channels they read, the status
//! helpers they share and ([`runner`]) the one loop that drives every
//! controller. Apart from the runner's waits, nothing here does I/O.
//!
//! Invariants: controllers only read the signals and config channels; a
//! controller failure never reaches the data plane (no panics, no blocking:
//! status is a short `Mutex` snapshot); shutdown is one `CancellationToken`.

pub(crate) mod runner;

use std::time::SystemTime;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::aws::error::AwsError;
use crate::config::{DnsConfig, ScaleConfig};

/// What the gate publishes once per tick (≈100 ms) for the controllers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ControlSignals {
    /// Requests/s arriving for on-prem-primary routes (spilled ones included).
    pub arrival_rps: f64,
    /// Of which sent to the cloud pool.
    pub spilled_rps: f64,
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
}

/// The channels the controllers read; the caller keeps the senders.
pub struct ControlInputs {
    pub signals: watch::Receiver<ControlSignals>,
    /// A reload sends the new section; `None`: the section is absent.
    pub scale: watch::Receiver<Option<ScaleConfig>>,
    pub dns: watch::Receiver<Option<DnsConfig>>,
    pub shutdown: CancellationToken,
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
