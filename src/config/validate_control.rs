//! Validation of the controller sections, `[scale]` (with its scheduled
//! events) and `[dns]`: the same rules as `validate.rs` (every problem
//! reported with its dotted key), kept apart so each file stays readable.

use super::raw::*;
use super::types::*;
use super::validate::Checker;

pub(super) fn scale(c: &mut Checker, s: RawScale) -> ScaleConfig {
    if s.min > s.max {
        c.fail("scale.min", format!("min ({}) is greater than max ({})", s.min, s.max));
    }
    let dr_capacity = s.dr_capacity.unwrap_or(s.max);
    if dr_capacity < s.min || dr_capacity > s.max {
        c.fail("scale.dr_capacity", format!("must be within [min, max] = [{}, {}]", s.min, s.max));
    }
    if s.per_instance_rps == 0 {
        c.fail("scale.per_instance_rps", "must be greater than zero");
    }
    let headroom = s.headroom.unwrap_or(0.2);
    if !(0.0..=10.0).contains(&headroom) {
        c.fail("scale.headroom", "must be between 0 and 10");
    }
    if s.auto_scaling_group.is_empty() {
        c.fail("scale.auto_scaling_group", "must not be empty");
    }
    let events = s
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let key = format!("scale.event[{i}]");
            let start = timestamp(c, &format!("{key}.start"), &e.start);
            let end = timestamp(c, &format!("{key}.end"), &e.end);
            if end <= start {
                c.fail(format!("{key}.end"), "must be after start");
            }
            ScheduledEvent { name: e.name, start, end, expected_rps: e.expected_rps }
        })
        .collect();
    ScaleConfig {
        enabled: s.enabled.unwrap_or(true),
        dry_run: s.dry_run.unwrap_or(false),
        region: s.region.unwrap_or_else(|| "us-east-1".into()),
        auto_scaling_group: s.auto_scaling_group,
        per_instance_rps: s.per_instance_rps,
        warmup: c.dur("scale.warmup", s.warmup, "180s", true),
        headroom,
        min: s.min,
        max: s.max,
        dr_capacity,
        scale_in_cooldown: c.dur("scale.scale_in_cooldown", s.scale_in_cooldown, "10m", true),
        onprem_capacity_rps: s.onprem_capacity_rps,
        events,
        interval: c.dur("scale.interval", s.interval, "10s", false),
        forecast_alpha: unit_fraction(c, "scale.forecast_alpha", s.forecast_alpha, 0.3),
        forecast_beta: unit_fraction(c, "scale.forecast_beta", s.forecast_beta, 0.05),
        scale_in_step: positive(c, "scale.scale_in_step", s.scale_in_step, 10),
        scale_in_interval: c.dur("scale.scale_in_interval", s.scale_in_interval, "60s", true),
    }
}

/// A smoothing factor: in (0, 1].
fn unit_fraction(c: &mut Checker, key: &str, value: Option<f64>, default: f64) -> f64 {
    let v = value.unwrap_or(default);
    if !(v > 0.0 && v <= 1.0) {
        c.fail(key, "must be greater than 0 and at most 1");
    }
    v
}

fn positive(c: &mut Checker, key: &str, value: Option<u32>, default: u32) -> u32 {
    let v = value.unwrap_or(default);
    if v == 0 {
        c.fail(key, "must be greater than zero");
    }
    v
}

fn timestamp(c: &mut Checker, key: &str, text: &str) -> std::time::SystemTime {
    humantime::parse_rfc3339(text).unwrap_or_else(|e| {
        c.fail(key, format!("invalid RFC 3339 time {text:?}: {e}"));
        std::time::UNIX_EPOCH
    })
}

pub(super) fn dns(c: &mut Checker, d: RawDns) -> DnsConfig {
    let record_type = d.record_type.clone().unwrap_or_else(|| "CNAME".into()).to_ascii_uppercase();
    if !["CNAME", "A", "AAAA"].contains(&record_type.as_str()) {
        c.fail("dns.type", format!("unsupported record type {record_type:?}: expected CNAME, A or AAAA"));
    }
    let ttl = d.ttl.unwrap_or(60);
    if ttl == 0 {
        c.fail("dns.ttl", "must be greater than zero");
    }
    dns_names(c, &d);
    let on_external_edit = match d.on_external_edit.as_deref() {
        None | Some("respect") => ExternalEdit::Respect,
        Some("correct") => ExternalEdit::Correct,
        Some(other) => {
            c.fail("dns.on_external_edit", format!("unknown value {other:?}: expected \"respect\" or \"correct\""));
            ExternalEdit::Respect
        }
    };
    let target_weights = d.target_weights.map(|t| TargetWeights {
        onprem: weight(c, "dns.target_weights.onprem", t.onprem),
        aws: weight(c, "dns.target_weights.aws", t.aws),
    });
    if target_weights.is_some_and(|t| t.onprem == 0 && t.aws == 0) {
        c.fail("dns.target_weights", "both weights are 0: Route 53 would split evenly; set at least one above 0");
    }
    let onprem = dns_target(c, "dns.onprem", d.onprem);
    let aws = dns_target(c, "dns.aws", d.aws);
    if (onprem.alias.is_some() || aws.alias.is_some()) && record_type == "CNAME" {
        c.fail("dns.type", "an alias record must be of type A or AAAA");
    }
    let max_step = d.max_step.unwrap_or(64);
    if max_step == 0 {
        c.fail("dns.max_step", "must be greater than zero");
    }
    DnsConfig {
        enabled: d.enabled.unwrap_or(true),
        dry_run: d.dry_run.unwrap_or(false),
        hosted_zone_id: d.hosted_zone_id,
        record: d.record,
        record_type,
        ttl,
        onprem,
        aws,
        shift_after: c.dur("dns.shift_after", d.shift_after, "5m", true),
        min_change_interval: c.dur("dns.min_change_interval", d.min_change_interval, "60s", false),
        max_step,
        interval: c.dur("dns.interval", d.interval, "5s", false),
        hysteresis: d.hysteresis.unwrap_or(16),
        insync_timeout: c.dur("dns.insync_timeout", d.insync_timeout, "120s", false),
        on_external_edit,
        target_weights,
        verify_interval: c.dur("dns.verify_interval", d.verify_interval, "60s", false),
    }
}

/// The zone, the record and the two set identifiers are given and distinct.
fn dns_names(c: &mut Checker, d: &RawDns) {
    if d.onprem.set_identifier == d.aws.set_identifier {
        c.fail("dns.aws.set_identifier", "must differ from dns.onprem.set_identifier");
    }
    for (key, value) in [
        ("dns.hosted_zone_id", &d.hosted_zone_id),
        ("dns.record", &d.record),
        ("dns.onprem.set_identifier", &d.onprem.set_identifier),
        ("dns.aws.set_identifier", &d.aws.set_identifier),
    ] {
        if value.is_empty() {
            c.fail(key, "must not be empty");
        }
    }
}

/// A Route 53 weight: 0–255.
fn weight(c: &mut Checker, key: &str, value: u32) -> u8 {
    u8::try_from(value).unwrap_or_else(|_| {
        c.fail(key, format!("weight {value} is out of range: Route 53 weights are 0-255"));
        u8::MAX
    })
}

/// Exactly one of `value` and `alias`.
fn dns_target(c: &mut Checker, key: &str, t: RawDnsTarget) -> DnsTarget {
    let alias = t.alias.map(|a| {
        if a.dns_name.is_empty() {
            c.fail(format!("{key}.alias.dns_name"), "must not be empty");
        }
        if a.hosted_zone_id.is_empty() {
            c.fail(format!("{key}.alias.hosted_zone_id"), "must not be empty");
        }
        AliasTarget {
            dns_name: a.dns_name,
            hosted_zone_id: a.hosted_zone_id,
            evaluate_health: a.evaluate_health.unwrap_or(true),
        }
    });
    let value = match (t.value, &alias) {
        (Some(_), Some(_)) => {
            c.fail(format!("{key}.alias"), "set either value or alias, not both");
            String::new()
        }
        (None, None) => {
            c.fail(format!("{key}.value"), "set value (a record value) or alias (an AWS resource)");
            String::new()
        }
        (Some(v), None) if v.is_empty() => {
            c.fail(format!("{key}.value"), "must not be empty");
            v
        }
        (Some(v), None) => v,
        (None, Some(a)) => a.dns_name.clone(),
    };
    if let Some(id) = &t.health_check_id {
        if !is_uuid(id) {
            c.fail(
                format!("{key}.health_check_id"),
                format!(
                    "{id:?} is not a Route 53 health check id (a UUID such as 0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d)"
                ),
            );
        }
    }
    DnsTarget { set_identifier: t.set_identifier, value, alias, health_check_id: t.health_check_id }
}

/// The canonical UUID text form, 8-4-4-4-12 hexadecimal digits: what
/// `CreateHealthCheck` returns as the id.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}
