//! The two weighted records as Route 53 sees them, built from the config and
//! compared with what `ListResourceRecordSets` returned.
//!
//! Invariants: both records of a batch share name, type and TTL (differing
//! TTLs skew the weights) and differ in `SetIdentifier`; weights are `u8`,
//! so 0–255 holds by construction; an observed weight outside 0–255 is
//! reported, never used.

use crate::config::{DnsConfig, DnsTarget};

use super::weights::Weights;

/// A record's data: a plain value or an alias to an AWS resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordTarget {
    Value(String),
    Alias { dns_name: String, hosted_zone_id: String, evaluate_health: bool },
}

/// One weighted record to UPSERT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WeightedRecord {
    pub(crate) name: String,
    pub(crate) record_type: String,
    pub(crate) set_identifier: String,
    pub(crate) weight: u8,
    /// `None` for an alias (Route 53 takes the target's TTL).
    pub(crate) ttl: Option<u32>,
    pub(crate) target: RecordTarget,
}

/// One record as read back from Route 53.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObservedRecord {
    pub(crate) set_identifier: String,
    pub(crate) weight: Option<i64>,
    pub(crate) ttl: Option<i64>,
    pub(crate) target: Option<RecordTarget>,
}

/// What the read-back says about our two records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadBack {
    /// Both records exist and match the config (weights as read).
    Found(Weights),
    /// One or both records are missing.
    Missing,
    /// Both exist but differ from the config beyond their weights (value,
    /// TTL, an out-of-range weight): someone else edited them.
    Foreign { weights: Option<Weights>, detail: String },
}

fn target_of(t: &DnsTarget) -> RecordTarget {
    match &t.alias {
        Some(a) => RecordTarget::Alias {
            dns_name: a.dns_name.clone(),
            hosted_zone_id: a.hosted_zone_id.clone(),
            evaluate_health: a.evaluate_health,
        },
        None => RecordTarget::Value(t.value.clone()),
    }
}

fn record(cfg: &DnsConfig, t: &DnsTarget, weight: u8) -> WeightedRecord {
    WeightedRecord {
        name: cfg.record.clone(),
        record_type: cfg.record_type.clone(),
        set_identifier: t.set_identifier.clone(),
        weight,
        ttl: t.alias.is_none().then_some(cfg.ttl),
        target: target_of(t),
    }
}

/// The batch that sets both weights: on-prem first, then AWS.
pub(crate) fn batch(cfg: &DnsConfig, w: Weights) -> [WeightedRecord; 2] {
    [record(cfg, &cfg.onprem, w.onprem), record(cfg, &cfg.aws, w.aws)]
}

/// DNS names compare case-insensitively and without the trailing dot.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.').eq_ignore_ascii_case(b.trim_end_matches('.'))
}

fn same_target(a: &RecordTarget, b: &RecordTarget) -> bool {
    match (a, b) {
        (RecordTarget::Value(x), RecordTarget::Value(y)) => same_name(x, y),
        (
            RecordTarget::Alias { dns_name: d1, hosted_zone_id: z1, evaluate_health: e1 },
            RecordTarget::Alias { dns_name: d2, hosted_zone_id: z2, evaluate_health: e2 },
        ) => same_name(d1, d2) && z1 == z2 && e1 == e2,
        _ => false,
    }
}

/// Compares the read-back with the config.
pub(crate) fn read_back(cfg: &DnsConfig, observed: &[ObservedRecord]) -> ReadBack {
    let find = |id: &str| observed.iter().find(|r| r.set_identifier == id);
    let (Some(on), Some(aws)) = (find(&cfg.onprem.set_identifier), find(&cfg.aws.set_identifier)) else {
        return ReadBack::Missing;
    };
    let mut problems = Vec::new();
    let mut weight = |r: &ObservedRecord| match r.weight.map(u8::try_from) {
        Some(Ok(w)) => Some(w),
        other => {
            problems.push(format!("{}: weight {:?} is not 0-255", r.set_identifier, other.map(|_| r.weight)));
            None
        }
    };
    let weights = match (weight(on), weight(aws)) {
        (Some(onprem), Some(aws)) => Some(Weights { onprem, aws }),
        _ => None,
    };
    for (r, t) in [(on, &cfg.onprem), (aws, &cfg.aws)] {
        let want = target_of(t);
        if !r.target.as_ref().is_some_and(|got| same_target(got, &want)) {
            problems.push(format!("{}: target {:?}, config says {:?}", r.set_identifier, r.target, want));
        }
        let want_ttl = t.alias.is_none().then_some(i64::from(cfg.ttl));
        if r.ttl != want_ttl {
            problems.push(format!("{}: TTL {:?}, config says {:?}", r.set_identifier, r.ttl, want_ttl));
        }
    }
    match weights {
        Some(w) if problems.is_empty() => ReadBack::Found(w),
        _ => ReadBack::Foreign { weights, detail: problems.join("; ") },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{AliasTarget, ExternalEdit};
    use std::time::Duration;

    pub(crate) fn cfg() -> DnsConfig {
        DnsConfig {
            enabled: true,
            dry_run: false,
            hosted_zone_id: "Z1".into(),
            record: "www.example.com.".into(),
            record_type: "CNAME".into(),
            ttl: 60,
            onprem: DnsTarget { set_identifier: "dc1".into(), value: "dc1.example.com.".into(), alias: None },
            aws: DnsTarget { set_identifier: "aws".into(), value: "elb.example.com.".into(), alias: None },
            shift_after: Duration::from_secs(300),
            min_change_interval: Duration::from_secs(60),
            max_step: 64,
            interval: Duration::from_secs(5),
            hysteresis: 16,
            insync_timeout: Duration::from_secs(120),
            on_external_edit: ExternalEdit::Respect,
            target_weights: None,
            verify_interval: Duration::from_secs(60),
        }
    }

    fn observed(cfg: &DnsConfig, w: Weights) -> Vec<ObservedRecord> {
        batch(cfg, w)
            .into_iter()
            .map(|r| ObservedRecord {
                set_identifier: r.set_identifier,
                weight: Some(i64::from(r.weight)),
                ttl: r.ttl.map(i64::from),
                target: Some(r.target),
            })
            .collect()
    }

    #[test]
    fn batch_shares_name_type_and_ttl() {
        let c = cfg();
        let [a, b] = batch(&c, Weights { onprem: 200, aws: 55 });
        assert_eq!((a.name.as_str(), a.record_type.as_str(), a.ttl), (b.name.as_str(), b.record_type.as_str(), b.ttl));
        assert_ne!(a.set_identifier, b.set_identifier);
        assert_eq!((a.weight, b.weight), (200, 55));
    }

    #[test]
    fn alias_records_have_no_ttl() {
        let mut c = cfg();
        c.record_type = "A".into();
        c.aws.alias =
            Some(AliasTarget { dns_name: "elb.aws.".into(), hosted_zone_id: "Z35".into(), evaluate_health: true });
        let [_, aws] = batch(&c, Weights::ONPREM_ONLY);
        assert_eq!(aws.ttl, None);
        assert!(matches!(aws.target, RecordTarget::Alias { .. }));
        assert_eq!(read_back(&c, &observed(&c, Weights::ONPREM_ONLY)), ReadBack::Found(Weights::ONPREM_ONLY));
    }

    #[test]
    fn read_back_finds_missing_and_foreign() {
        let c = cfg();
        let w = Weights { onprem: 100, aws: 155 };
        assert_eq!(read_back(&c, &observed(&c, w)), ReadBack::Found(w));
        assert_eq!(read_back(&c, &observed(&c, w)[..1]), ReadBack::Missing);
        let mut edited = observed(&c, w);
        edited[1].weight = Some(300);
        assert!(matches!(read_back(&c, &edited), ReadBack::Foreign { weights: None, .. }));
        let mut edited = observed(&c, w);
        edited[0].ttl = Some(300);
        assert!(matches!(read_back(&c, &edited), ReadBack::Foreign { weights: Some(_), .. }));
        let mut edited = observed(&c, w);
        edited[0].target = Some(RecordTarget::Value("DC1.example.com".into()));
        assert_eq!(read_back(&c, &edited), ReadBack::Found(w), "names compare without case and trailing dot");
    }
}
