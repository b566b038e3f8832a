//! The two weighted records as Route 53 sees them, built from the config and
//! compared with what `ListResourceRecordSets` returned.
//!
//! Invariants: both records of a batch share name, type and TTL (differing
//! TTLs skew the weights) and differ in `SetIdentifier`; weights are `u8`,
//! so 0–255 holds by construction; an observed weight outside 0–255 is
//! reported, never used. An UPSERT replaces the whole record set, so every
//! record of a batch carries its health check: the configured id, else the
//! one last read back ([`HealthChecks`]); a read-back whose health check is
//! missing or different from that is a foreign edit.

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
    pub(crate) health_check_id: Option<String>,
}

/// One record as read back from Route 53.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObservedRecord {
    pub(crate) set_identifier: String,
    pub(crate) weight: Option<i64>,
    pub(crate) ttl: Option<i64>,
    pub(crate) target: Option<RecordTarget>,
    pub(crate) health_check_id: Option<String>,
}

impl From<&WeightedRecord> for ObservedRecord {
    /// The record as Route 53 holds it once the UPSERT went through (for fakes).
    fn from(r: &WeightedRecord) -> Self {
        ObservedRecord {
            set_identifier: r.set_identifier.clone(),
            weight: Some(i64::from(r.weight)),
            ttl: r.ttl.map(i64::from),
            target: Some(r.target.clone()),
            health_check_id: r.health_check_id.clone(),
        }
    }
}

/// The health check id of each of our two records (`None`: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HealthChecks {
    pub(crate) onprem: Option<String>,
    pub(crate) aws: Option<String>,
}

impl HealthChecks {
    /// The ids the records carry in `observed` (`None` for a missing record).
    pub(crate) fn observed(cfg: &DnsConfig, observed: &[ObservedRecord]) -> Self {
        let of = |t: &DnsTarget| {
            observed.iter().find(|r| r.set_identifier == t.set_identifier).and_then(|r| r.health_check_id.clone())
        };
        HealthChecks { onprem: of(&cfg.onprem), aws: of(&cfg.aws) }
    }

    /// What a record must carry: its configured id, else the one in `known`
    /// (as last read back; `None` before the first read).
    fn wanted<'a>(t: &'a DnsTarget, known: Option<&'a Option<String>>) -> Option<&'a String> {
        t.health_check_id.as_ref().or(known.and_then(Option::as_ref))
    }
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

fn record(cfg: &DnsConfig, t: &DnsTarget, weight: u8, known: Option<&String>) -> WeightedRecord {
    WeightedRecord {
        name: cfg.record.clone(),
        record_type: cfg.record_type.clone(),
        set_identifier: t.set_identifier.clone(),
        weight,
        ttl: t.alias.is_none().then_some(cfg.ttl),
        target: target_of(t),
        health_check_id: t.health_check_id.as_ref().or(known).cloned(),
    }
}

/// The batch that sets both weights: on-prem first, then AWS; each record
/// with its configured health check, else the one in `known`.
pub(crate) fn batch(cfg: &DnsConfig, w: Weights, known: &HealthChecks) -> [WeightedRecord; 2] {
    [record(cfg, &cfg.onprem, w.onprem, known.onprem.as_ref()), record(cfg, &cfg.aws, w.aws, known.aws.as_ref())]
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

/// Compares the read-back with the config and, for a record whose health
/// check is not configured, with the id `known` holds (`None`: nothing read
/// yet, any id is accepted). A record that gained a health check is no edit.
pub(crate) fn read_back(cfg: &DnsConfig, observed: &[ObservedRecord], known: Option<&HealthChecks>) -> ReadBack {
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
    let (known_on, known_aws) = (known.map(|k| &k.onprem), known.map(|k| &k.aws));
    for (r, t, known) in [(on, &cfg.onprem, known_on), (aws, &cfg.aws, known_aws)] {
        if let Some(want) = HealthChecks::wanted(t, known) {
            if r.health_check_id.as_ref() != Some(want) {
                problems.push(format!("{}: health check {:?}, expected {want:?}", r.set_identifier, r.health_check_id));
            }
        }
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

    fn target(id: &str, value: &str) -> DnsTarget {
        DnsTarget { set_identifier: id.into(), value: value.into(), alias: None, health_check_id: None }
    }

    pub(crate) fn cfg() -> DnsConfig {
        DnsConfig {
            enabled: true,
            dry_run: false,
            hosted_zone_id: "Z1".into(),
            record: "www.example.com.".into(),
            record_type: "CNAME".into(),
            ttl: 60,
            onprem: target("dc1", "dc1.example.com."),
            aws: target("aws", "elb.example.com."),
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
        batch(cfg, w, &HealthChecks::default()).iter().map(ObservedRecord::from).collect()
    }

    #[test]
    fn batch_shares_name_type_and_ttl() {
        let c = cfg();
        let [a, b] = batch(&c, Weights { onprem: 200, aws: 55 }, &HealthChecks::default());
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
        let [_, aws] = batch(&c, Weights::ONPREM_ONLY, &HealthChecks::default());
        assert_eq!(aws.ttl, None);
        assert!(matches!(aws.target, RecordTarget::Alias { .. }));
        assert_eq!(read_back(&c, &observed(&c, Weights::ONPREM_ONLY), None), ReadBack::Found(Weights::ONPREM_ONLY));
    }

    #[test]
    fn read_back_finds_missing_and_foreign() {
        let c = cfg();
        let w = Weights { onprem: 100, aws: 155 };
        assert_eq!(read_back(&c, &observed(&c, w), None), ReadBack::Found(w));
        assert_eq!(read_back(&c, &observed(&c, w)[..1], None), ReadBack::Missing);
        let mut edited = observed(&c, w);
        edited[1].weight = Some(300);
        assert!(matches!(read_back(&c, &edited, None), ReadBack::Foreign { weights: None, .. }));
        let mut edited = observed(&c, w);
        edited[0].ttl = Some(300);
        assert!(matches!(read_back(&c, &edited, None), ReadBack::Foreign { weights: Some(_), .. }));
        let mut edited = observed(&c, w);
        edited[0].target = Some(RecordTarget::Value("DC1.example.com".into()));
        assert_eq!(read_back(&c, &edited, None), ReadBack::Found(w), "names compare without case and trailing dot");
    }

    const CHECK_A: &str = "6f1f5c1e-0b4d-4a52-9a5e-2f8d6c3b7a10";
    const CHECK_B: &str = "0c9a7f3e-1d2b-4e6f-8a0b-3c5d7e9f1a2b";

    #[test]
    fn every_record_carries_its_configured_or_known_health_check() {
        let mut c = cfg();
        c.onprem.health_check_id = Some(CHECK_A.into());
        let known = HealthChecks { onprem: Some(CHECK_B.into()), aws: Some(CHECK_B.into()) };
        let [on, aws] = batch(&c, Weights::ONPREM_ONLY, &known);
        assert_eq!(on.health_check_id.as_deref(), Some(CHECK_A), "the config wins");
        assert_eq!(aws.health_check_id.as_deref(), Some(CHECK_B), "kept from the read-back");
        let [on, aws] = batch(&cfg(), Weights::ONPREM_ONLY, &HealthChecks::default());
        assert_eq!((on.health_check_id, aws.health_check_id), (None, None));
    }

    #[test]
    fn a_missing_or_different_health_check_is_a_foreign_edit() {
        let c = cfg();
        let w = Weights { onprem: 100, aws: 155 };
        let known = HealthChecks { onprem: Some(CHECK_A.into()), aws: None };
        let with = batch(&c, w, &known).iter().map(ObservedRecord::from).collect::<Vec<_>>();
        assert_eq!(HealthChecks::observed(&c, &with), known);
        assert_eq!(read_back(&c, &with, Some(&known)), ReadBack::Found(w));
        assert_eq!(read_back(&c, &observed(&c, w), None), ReadBack::Found(w), "nothing known yet: accepted");
        let dropped = read_back(&c, &observed(&c, w), Some(&known));
        assert!(
            matches!(&dropped, ReadBack::Foreign { weights: Some(x), detail } if *x == w && detail.contains("health check")),
            "{dropped:?}"
        );
        let mut other = with.clone();
        other[0].health_check_id = Some(CHECK_B.into());
        assert!(matches!(read_back(&c, &other, Some(&known)), ReadBack::Foreign { .. }));
        let mut gained = with.clone();
        gained[1].health_check_id = Some(CHECK_B.into());
        assert_eq!(
            read_back(&c, &gained, Some(&known)),
            ReadBack::Found(w),
            "a health check added elsewhere is kept, not fought"
        );
        let mut configured = cfg();
        configured.aws.health_check_id = Some(CHECK_B.into());
        assert!(
            matches!(read_back(&configured, &with, None), ReadBack::Foreign { .. }),
            "the config is checked from the first read"
        );
    }
}
