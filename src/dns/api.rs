//! What the DNS controller needs of Route 53: the calls it makes behind a
//! trait (the real SDK in `sdk.rs`, the demo's simulation and tests'
//! fakes) and the state of a submitted change.

use crate::aws::error::ApiFuture;

use super::records::{ObservedRecord, WeightedRecord};

/// The state of a submitted change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeStatus {
    Pending,
    InSync,
}

impl ChangeStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::InSync => "INSYNC",
        }
    }
}

/// A submitted change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangeInfo {
    pub(crate) id: String,
    pub(crate) status: ChangeStatus,
}

/// The three Route 53 calls the controller makes (real SDK or a test fake).
pub(crate) trait DnsApi: Send + Sync {
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
