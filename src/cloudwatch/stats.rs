//! The site's signals as CloudWatch metrics, pure: one [`SiteSample`] a
//! second goes into an [`Aggregate`], which keeps a statistic set (minimum,
//! maximum, sum, count) per metric and dimension set; [`Aggregate::drain`]
//! hands them out as [`Datum`]s for one `PutMetricData` interval.
//!
//! The names are a contract (the CloudFormation alarms use them):
//! `ArrivalsPerSecond`, `SpilledPerSecond`, `SpillShare` (0 to 1),
//! `OnPremInFlight`, `OnPremLimit`, `Mode` (0 normal, 1 spilling, 2 DR),
//! `DisasterRecovery` (0 or 1), `ReplicaLagSeconds` (only when known). Every
//! metric has the dimension `site`; `OnPremInFlight`, `OnPremLimit` and
//! `Mode` also come per primary pool with `site` and `pool`.
//!
//! Invariants: a datum's `min ≤ max`, `count ≥ 1`; drained datums are in a
//! stable order (metric, then dimensions).

use std::collections::BTreeMap;

/// One look at the site (taken every 100 ms by the shell).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SiteSample {
    pub(crate) arrivals_rps: f64,
    pub(crate) spilled_rps: f64,
    pub(crate) dr: bool,
    pub(crate) pools: Vec<PoolSample>,
    /// The worst replica lag of the cloud pools' available endpoints, if any reports one.
    pub(crate) replica_lag_secs: Option<f64>,
}

/// One primary pool's gate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PoolSample {
    pub(crate) name: String,
    pub(crate) in_flight: u32,
    pub(crate) limit: u32,
    /// 0 normal, 1 spilling, 2 disaster recovery.
    pub(crate) mode: u8,
}

/// CloudWatch's units for these metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Unit {
    CountPerSecond,
    Count,
    Seconds,
    None,
}

/// A statistic set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stats {
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) sum: f64,
    pub(crate) count: f64,
}

impl Stats {
    fn of(v: f64) -> Self {
        Stats { min: v, max: v, sum: v, count: 1.0 }
    }

    fn add(&mut self, v: f64) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        self.count += 1.0;
    }
}

/// One metric datum for `PutMetricData`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Datum {
    pub(crate) name: &'static str,
    /// `site`, and `pool` for per-pool metrics.
    pub(crate) dimensions: Vec<(&'static str, String)>,
    pub(crate) unit: Unit,
    pub(crate) stats: Stats,
}

type Series = (&'static str, Option<String>);

/// Statistic sets since the last drain.
#[derive(Debug, Default)]
pub(crate) struct Aggregate {
    series: BTreeMap<Series, (Unit, Stats)>,
}

impl Aggregate {
    fn put(&mut self, name: &'static str, pool: Option<&str>, unit: Unit, v: f64) {
        debug_assert!(v.is_finite());
        if !v.is_finite() {
            return;
        }
        self.series
            .entry((name, pool.map(str::to_owned)))
            .and_modify(|(_, s)| s.add(v))
            .or_insert((unit, Stats::of(v)));
    }

    /// Adds one look at the site.
    pub(crate) fn add(&mut self, s: &SiteSample) {
        let share = if s.arrivals_rps > 0.0 { (s.spilled_rps / s.arrivals_rps).clamp(0.0, 1.0) } else { 0.0 };
        self.put("ArrivalsPerSecond", None, Unit::CountPerSecond, s.arrivals_rps);
        self.put("SpilledPerSecond", None, Unit::CountPerSecond, s.spilled_rps);
        self.put("SpillShare", None, Unit::None, share);
        self.put("DisasterRecovery", None, Unit::None, if s.dr { 1.0 } else { 0.0 });
        let worst = s.pools.iter().map(|p| p.mode).max().unwrap_or(0).max(if s.dr { 2 } else { 0 });
        self.put("Mode", None, Unit::None, f64::from(worst));
        self.put("OnPremInFlight", None, Unit::Count, s.pools.iter().map(|p| f64::from(p.in_flight)).sum());
        self.put("OnPremLimit", None, Unit::Count, s.pools.iter().map(|p| f64::from(p.limit)).sum());
        for p in &s.pools {
            self.put("OnPremInFlight", Some(&p.name), Unit::Count, f64::from(p.in_flight));
            self.put("OnPremLimit", Some(&p.name), Unit::Count, f64::from(p.limit));
            self.put("Mode", Some(&p.name), Unit::None, f64::from(p.mode));
        }
        if let Some(lag) = s.replica_lag_secs {
            self.put("ReplicaLagSeconds", None, Unit::Seconds, lag);
        }
    }

    /// The interval's datums for `site`; the aggregate starts over.
    pub(crate) fn drain(&mut self, site: &str) -> Vec<Datum> {
        std::mem::take(&mut self.series)
            .into_iter()
            .map(|((name, pool), (unit, stats))| {
                let mut dimensions = vec![("site", site.to_string())];
                dimensions.extend(pool.map(|p| ("pool", p)));
                Datum { name, dimensions, unit, stats }
            })
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(arrivals: f64, spilled: f64, mode: u8, dr: bool) -> SiteSample {
        SiteSample {
            arrivals_rps: arrivals,
            spilled_rps: spilled,
            dr,
            pools: vec![PoolSample { name: "onprem".into(), in_flight: 10, limit: 40, mode }],
            replica_lag_secs: None,
        }
    }

    fn find<'a>(d: &'a [Datum], name: &str, pool: Option<&str>) -> &'a Datum {
        d.iter()
            .find(|x| {
                x.name == name && x.dimensions.iter().find(|(k, _)| *k == "pool").map(|(_, v)| v.as_str()) == pool
            })
            .unwrap_or_else(|| panic!("{name} {pool:?} missing"))
    }

    #[test]
    fn an_interval_is_one_statistic_set_per_metric_and_dimension() {
        let mut agg = Aggregate::default();
        agg.add(&sample(100.0, 0.0, 0, false));
        agg.add(&sample(300.0, 150.0, 1, false));
        agg.add(&sample(0.0, 0.0, 0, false));
        let d = agg.drain("dc1");
        assert!(agg.is_empty(), "drained");
        let share = find(&d, "SpillShare", None);
        assert_eq!((share.stats.min, share.stats.max, share.stats.count), (0.0, 0.5, 3.0), "no arrivals: share 0");
        let arrivals = find(&d, "ArrivalsPerSecond", None);
        assert_eq!((arrivals.stats.sum, arrivals.unit), (400.0, Unit::CountPerSecond));
        assert_eq!(find(&d, "Mode", Some("onprem")).stats.max, 1.0);
        assert_eq!(
            find(&d, "OnPremLimit", Some("onprem")).dimensions,
            [("site", "dc1".into()), ("pool", "onprem".into())]
        );
        assert_eq!(find(&d, "DisasterRecovery", None).stats.max, 0.0);
        assert!(d.iter().all(|x| x.dimensions[0] == ("site", "dc1".to_string())));
        assert!(!d.iter().any(|x| x.name == "ReplicaLagSeconds"), "unknown lag is not published as 0");
    }

    #[test]
    fn dr_lag_and_the_site_totals() {
        let mut agg = Aggregate::default();
        let mut s = sample(50.0, 50.0, 2, true);
        s.pools.push(PoolSample { name: "b".into(), in_flight: 5, limit: 20, mode: 0 });
        s.replica_lag_secs = Some(12.5);
        agg.add(&s);
        let d = agg.drain("dc2");
        assert_eq!(find(&d, "DisasterRecovery", None).stats.max, 1.0);
        assert_eq!(find(&d, "Mode", None).stats.max, 2.0);
        assert_eq!(find(&d, "OnPremInFlight", None).stats.sum, 15.0);
        assert_eq!(find(&d, "ReplicaLagSeconds", None).stats.max, 12.5);
        let names: Vec<&str> = d.iter().map(|x| x.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "stable order");
    }
}
