//! The DNS controller: moves sustained overflow off the DMZ by shifting the
//! weights of this datacenter's and AWS's weighted Route 53 records.
//!
//! `weights.rs` (planning) and `records.rs` (building and comparing the two
//! records) are pure; `controller.rs` is the loop shell; `sdk.rs` is the
//! real [`DnsApi`]. Invariants: both records change in one batch; every
//! Route 53 call spends a token of a 5 req/s bucket; an edit made by someone
//! else is reported, then respected or corrected as configured.

pub mod controller;
pub mod records;
mod sdk;
pub mod weights;

pub use controller::{DnsController, DnsStatus};
pub use records::{ObservedRecord, RecordTarget, WeightedRecord};
pub use sdk::Route53Api;
pub use weights::{WeightPlan, WeightPlanner, WeightReason, Weights};

use crate::aws::ApiFuture;

/// The state of a submitted change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeStatus {
    Pending,
    InSync,
}

impl ChangeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::InSync => "INSYNC",
        }
    }
}

/// A submitted change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeInfo {
    pub id: String,
    pub status: ChangeStatus,
}

/// The three Route 53 calls the controller makes (real SDK or a test fake).
pub trait DnsApi: Send + Sync {
    /// `ListResourceRecordSets` from `name`/`record_type`: the records of that name and type.
    fn list_records<'a>(
        &'a self,
        zone: &'a str,
        name: &'a str,
        record_type: &'a str,
    ) -> ApiFuture<'a, Vec<ObservedRecord>>;
    /// One `ChangeResourceRecordSets` batch UPSERTing every record given.
    fn upsert<'a>(
        &'a self,
        zone: &'a str,
        records: &'a [WeightedRecord],
        comment: &'a str,
    ) -> ApiFuture<'a, ChangeInfo>;
    /// `GetChange`.
    fn get_change<'a>(&'a self, id: &'a str) -> ApiFuture<'a, ChangeStatus>;
}
