//! What coordination needs of DynamoDB, behind a trait (the real SDK in
//! `sdk.rs`, tests' fakes): one Query for a site's partition, one PutItem
//! for a heartbeat, one conditional PutItem for a lease. Nothing else is
//! called (the IAM policy grants GetItem, PutItem, UpdateItem, Query and
//! DeleteItem on the table).

use super::policy::{Heartbeat, Lease, SiteView};
use crate::aws::error::ApiFuture;

/// The condition a lease write is made on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaseCondition {
    /// No lease item yet: `attribute_not_exists(pk)`.
    Absent,
    /// The item read at `seen` has expired at `now_ms`: `version = :seen AND expires_ms <= :now`.
    Expired { seen: u64, now_ms: u64 },
    /// Still ours: `holder = :me AND version = :v`.
    Held { holder: String, version: u64 },
}

/// The three DynamoDB calls coordination makes.
pub(crate) trait CoordApi: Send + Sync {
    /// `Query` on `pk = "site#<site>"` (strongly consistent): the lease and the heartbeats.
    fn query_site<'a>(&'a self, table: &'a str, site: &'a str) -> ApiFuture<'a, SiteView>;
    /// `PutItem` of `sk = "hb#<instance>"`, expiring (TTL) `ttl_secs` after its time.
    fn put_heartbeat<'a>(
        &'a self,
        table: &'a str,
        site: &'a str,
        hb: &'a Heartbeat,
        ttl_secs: u64,
    ) -> ApiFuture<'a, ()>;
    /// Conditional `PutItem` of `sk = "lease"`: `Ok(false)` when the condition failed.
    fn put_lease<'a>(
        &'a self,
        table: &'a str,
        site: &'a str,
        lease: &'a Lease,
        condition: &'a LeaseCondition,
    ) -> ApiFuture<'a, bool>;
}
