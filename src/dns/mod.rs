//! The DNS controller: moves sustained overflow off the DMZ by shifting the
//! weights of this datacenter's and AWS's weighted Route 53 records.
//!
//! `weights.rs` (planning) and `records.rs` (building and comparing the two
//! records) are pure; `controller.rs` is the loop shell; `sdk.rs` is the
//! real [`DnsApi`]; `drill.rs` is a DR drill's DNS leg (a weight-0 drill
//! record timed until INSYNC). Invariants: both records change in one batch; every
//! Route 53 call spends a token of a 5 req/s bucket; an edit made by someone
//! else is reported, then respected or corrected as configured.

mod api;
pub(crate) mod controller;
pub(crate) mod drill;
pub(crate) mod records;
mod sdk;
pub(crate) mod weights;

pub(crate) use api::{ChangeInfo, ChangeStatus, DnsApi};
pub(crate) use controller::{DnsController, DnsStatus};
pub(crate) use records::{ObservedRecord, WeightedRecord};
pub(crate) use sdk::Route53Api;
