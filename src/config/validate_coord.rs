//! Validation of `[coordination]` and its `[[coordination.cover]]` sites:
//! the names DynamoDB, Auto Scaling and Route 53 would refuse are refused
//! here (moto accepts most of them), and the timings must make a lease safe:
//! a holder renews at least three times per lease, a site is taken over only
//! after its lease has expired, and handed back only after it heartbeated
//! again for a while.

use super::raw::{RawCoordination, RawCover, RawDns};
use super::types::{CoordinationConfig, CoverConfig, ScaleConfig};
use super::validate::{site_name, Checker};
use super::validate_control as control;

/// Heartbeats per lease, at least: one lost write must not cost the lease.
const MIN_HEARTBEATS_PER_LEASE: u32 = 3;

pub(super) fn coordination(
    c: &mut Checker,
    k: RawCoordination,
    site: &str,
    scale: Option<&ScaleConfig>,
) -> CoordinationConfig {
    table_name(c, &k.table);
    if let Some(id) = &k.instance_id {
        instance_id(c, id);
    }
    let heartbeat_interval = c.dur("coordination.heartbeat_interval", k.heartbeat_interval, "2s", false);
    let lease_duration = c.dur("coordination.lease_duration", k.lease_duration, "10s", false);
    let takeover_after = c.dur("coordination.takeover_after", k.takeover_after, "30s", false);
    let handback_after = c.dur("coordination.handback_after", k.handback_after, "60s", false);
    if lease_duration < heartbeat_interval * MIN_HEARTBEATS_PER_LEASE {
        c.fail("coordination.lease_duration", "must be at least three heartbeat_intervals (renewals are heartbeats)");
    }
    if takeover_after < lease_duration {
        c.fail("coordination.takeover_after", "must be at least lease_duration: a live holder is never taken over");
    }
    if handback_after < heartbeat_interval * MIN_HEARTBEATS_PER_LEASE {
        c.fail("coordination.handback_after", "must be at least three heartbeat_intervals");
    }
    let region = k.region.or_else(|| scale.map(|s| s.region.clone())).unwrap_or_else(|| "us-east-1".into());
    if region.is_empty() {
        c.fail("coordination.region", "must not be empty");
    }
    let cover = covers(c, k.cover, site);
    CoordinationConfig {
        enabled: k.enabled.unwrap_or(true),
        table: k.table,
        region,
        instance_id: k.instance_id,
        site: site.to_string(),
        heartbeat_interval,
        lease_duration,
        takeover_after,
        handback_after,
        refuse_writes_when_stale: k.refuse_writes_when_stale.unwrap_or(true),
        cover,
    }
}

/// DynamoDB: 3–255 characters of `[A-Za-z0-9_.-]`.
fn table_name(c: &mut Checker, table: &str) {
    let ok = (3..=255).contains(&table.len())
        && table.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        c.fail("coordination.table", format!("{table:?} is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)"));
    }
}

/// Part of a sort key and of log lines: 1–64 characters of `[A-Za-z0-9_.-]`.
fn instance_id(c: &mut Checker, id: &str) {
    let ok = (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        c.fail("coordination.instance_id", format!("{id:?} is not 1 to 64 letters, digits, '_', '.' or '-'"));
    }
}

fn covers(c: &mut Checker, raw: Vec<RawCover>, own: &str) -> Vec<CoverConfig> {
    let mut out: Vec<CoverConfig> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let key = format!("coordination.cover[{i}]");
        let site = c.rekeyed("runtime.site", &format!("{key}.site"), |c| site_name(c, Some(r.site.clone())));
        if site == own {
            c.fail(format!("{key}.site"), "an instance does not take over its own site");
        }
        if out.iter().any(|o| o.site == site) {
            c.fail(format!("{key}.site"), format!("site {site:?} is covered twice"));
        }
        out.push(cover(c, &key, site, r));
    }
    out
}

fn cover(c: &mut Checker, key: &str, site: String, r: RawCover) -> CoverConfig {
    // Auto Scaling: a group name is 1–255 characters.
    if !(1..=255).contains(&r.auto_scaling_group.len()) {
        c.fail(format!("{key}.auto_scaling_group"), "must be 1 to 255 characters");
    }
    let raw_dns = RawDns {
        enabled: None,
        dry_run: None,
        hosted_zone_id: r.hosted_zone_id,
        record: r.record,
        record_type: r.record_type,
        ttl: r.ttl,
        onprem: r.onprem,
        aws: r.aws,
        shift_after: None,
        min_change_interval: None,
        max_step: None,
        interval: None,
        hysteresis: None,
        insync_timeout: None,
        on_external_edit: None,
        target_weights: None,
        verify_interval: None,
    };
    let dns = c.rekeyed("dns", key, |c| control::dns(c, raw_dns));
    CoverConfig { site, auto_scaling_group: r.auto_scaling_group, dr_capacity: r.dr_capacity, dns }
}
