//! A stand-in for AWS in the demo: an in-memory Auto Scaling group and
//! Route 53 zone behind the controllers' API traits. Nothing leaves the
//! machine; every mutating call is printed, so the demo shows what the
//! controllers would call on the real APIs. Instances go in service at once.

use std::sync::Mutex;

use crate::aws::ApiFuture;
use crate::dns::{ChangeInfo, ChangeStatus, DnsApi, ObservedRecord, WeightedRecord};
use crate::scale::{GroupState, ScalingApi};
use crate::sync::lock;

pub(crate) struct SimAws {
    group: Mutex<GroupState>,
    records: Mutex<Vec<ObservedRecord>>,
}

impl SimAws {
    pub(crate) fn new(min: u32, max: u32) -> Self {
        SimAws {
            group: Mutex::new(GroupState { desired: min, min, max, in_service: min, pending: 0 }),
            records: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn desired(&self) -> u32 {
        lock(&self.group).desired
    }

    /// `(set_identifier, weight)` of every record.
    pub(crate) fn weights(&self) -> Vec<(String, i64)> {
        let records = lock(&self.records);
        records.iter().map(|r| (r.set_identifier.clone(), r.weight.unwrap_or(0))).collect()
    }
}

impl ScalingApi for SimAws {
    fn describe_group<'a>(&'a self, _group: &'a str) -> ApiFuture<'a, GroupState> {
        let g = lock(&self.group).clone();
        Box::pin(async move { Ok(g) })
    }

    fn set_desired_capacity<'a>(&'a self, group: &'a str, desired: u32) -> ApiFuture<'a, ()> {
        let mut g = lock(&self.group);
        println!(
            "      aws> SetDesiredCapacity(AutoScalingGroupName={group}, DesiredCapacity={desired})  [was {}]",
            g.desired
        );
        g.desired = desired;
        g.in_service = desired;
        Box::pin(async { Ok(()) })
    }
}

impl DnsApi for SimAws {
    fn list_records<'a>(
        &'a self,
        _zone: &'a str,
        _name: &'a str,
        _record_type: &'a str,
    ) -> ApiFuture<'a, Vec<ObservedRecord>> {
        let r = lock(&self.records).clone();
        Box::pin(async move { Ok(r) })
    }

    fn upsert<'a>(
        &'a self,
        zone: &'a str,
        records: &'a [WeightedRecord],
        _comment: &'a str,
    ) -> ApiFuture<'a, ChangeInfo> {
        let mut stored = lock(&self.records);
        let summary: Vec<String> = records.iter().map(|r| format!("{}={}", r.set_identifier, r.weight)).collect();
        println!(
            "      aws> ChangeResourceRecordSets(HostedZoneId={zone}, UPSERT {} weights {})",
            records[0].name,
            summary.join(" ")
        );
        for r in records {
            let observed = ObservedRecord::from(r);
            match stored.iter_mut().find(|o| o.set_identifier == r.set_identifier) {
                Some(o) => *o = observed,
                None => stored.push(observed),
            }
        }
        Box::pin(async { Ok(ChangeInfo { id: "/change/DEMO".into(), status: ChangeStatus::InSync }) })
    }

    fn get_change<'a>(&'a self, _id: &'a str) -> ApiFuture<'a, ChangeStatus> {
        Box::pin(async { Ok(ChangeStatus::InSync) })
    }
}
