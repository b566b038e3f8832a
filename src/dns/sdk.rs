//! [`DnsApi`] over the real `aws-sdk-route53` client.

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ChangeStatus as SdkStatus, ResourceRecord, ResourceRecordSet,
    RrType,
};
use aws_sdk_route53::Client;

use super::records::{same_name, ObservedRecord, RecordTarget, WeightedRecord};
use super::{ChangeInfo, ChangeStatus, DnsApi};
use crate::aws::{classify, ApiFuture, AwsError};

const LIST: &str = "ListResourceRecordSets";
const CHANGE: &str = "ChangeResourceRecordSets";
const GET_CHANGE: &str = "GetChange";
/// Weighted sets of one name and type come together; this many is plenty.
const LIST_MAX_ITEMS: i32 = 100;

/// The Route 53 API through the SDK.
#[derive(Debug, Clone)]
pub(crate) struct Route53Api {
    client: Client,
}

impl Route53Api {
    pub(crate) fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self { client: Client::new(sdk) }
    }
}

fn invalid(api: &'static str, e: impl std::fmt::Display) -> AwsError {
    AwsError::Invalid { api, message: e.to_string() }
}

fn to_sdk(r: &WeightedRecord) -> Result<ResourceRecordSet, AwsError> {
    let mut b = ResourceRecordSet::builder()
        .name(&r.name)
        .r#type(RrType::from(r.record_type.as_str()))
        .set_identifier(&r.set_identifier)
        .weight(i64::from(r.weight));
    if let Some(ttl) = r.ttl {
        b = b.ttl(i64::from(ttl));
    }
    // An UPSERT without it would drop the record's health check.
    if let Some(id) = &r.health_check_id {
        b = b.health_check_id(id);
    }
    b = match &r.target {
        RecordTarget::Value(v) => {
            b.resource_records(ResourceRecord::builder().value(v).build().map_err(|e| invalid(CHANGE, e))?)
        }
        RecordTarget::Alias { dns_name, hosted_zone_id, evaluate_health } => b.alias_target(
            AliasTarget::builder()
                .dns_name(dns_name)
                .hosted_zone_id(hosted_zone_id)
                .evaluate_target_health(*evaluate_health)
                .build()
                .map_err(|e| invalid(CHANGE, e))?,
        ),
    };
    b.build().map_err(|e| invalid(CHANGE, e))
}

fn from_sdk(r: &ResourceRecordSet) -> ObservedRecord {
    let target = match (r.alias_target(), r.resource_records().first()) {
        (Some(a), _) => Some(RecordTarget::Alias {
            dns_name: a.dns_name().to_owned(),
            hosted_zone_id: a.hosted_zone_id().to_owned(),
            evaluate_health: a.evaluate_target_health(),
        }),
        (None, Some(v)) => Some(RecordTarget::Value(v.value().to_owned())),
        (None, None) => None,
    };
    ObservedRecord {
        set_identifier: r.set_identifier().unwrap_or_default().to_owned(),
        weight: r.weight(),
        ttl: r.ttl(),
        target,
        health_check_id: r.health_check_id().map(str::to_owned),
    }
}

fn status(s: &SdkStatus) -> ChangeStatus {
    if *s == SdkStatus::Insync {
        ChangeStatus::InSync
    } else {
        ChangeStatus::Pending
    }
}

impl DnsApi for Route53Api {
    fn list_records<'a>(
        &'a self,
        zone: &'a str,
        name: &'a str,
        record_type: &'a str,
    ) -> ApiFuture<'a, Vec<ObservedRecord>> {
        Box::pin(async move {
            let out = self
                .client
                .list_resource_record_sets()
                .hosted_zone_id(zone)
                .start_record_name(name)
                .start_record_type(RrType::from(record_type))
                .max_items(LIST_MAX_ITEMS)
                .send()
                .await
                .map_err(|e| classify(LIST, e))?;
            Ok(out
                .resource_record_sets()
                .iter()
                .filter(|r| same_name(r.name(), name) && r.r#type().as_str() == record_type)
                .map(from_sdk)
                .collect())
        })
    }

    fn upsert<'a>(
        &'a self,
        zone: &'a str,
        records: &'a [WeightedRecord],
        comment: &'a str,
    ) -> ApiFuture<'a, ChangeInfo> {
        Box::pin(async move {
            let changes = records
                .iter()
                .map(|r| {
                    Change::builder()
                        .action(ChangeAction::Upsert)
                        .resource_record_set(to_sdk(r)?)
                        .build()
                        .map_err(|e| invalid(CHANGE, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let batch = ChangeBatch::builder()
                .comment(comment)
                .set_changes(Some(changes))
                .build()
                .map_err(|e| invalid(CHANGE, e))?;
            let out = self
                .client
                .change_resource_record_sets()
                .hosted_zone_id(zone)
                .change_batch(batch)
                .send()
                .await
                .map_err(|e| classify(CHANGE, e))?;
            let info = out.change_info().ok_or_else(|| invalid(CHANGE, "answer without ChangeInfo"))?;
            Ok(ChangeInfo { id: info.id().to_owned(), status: status(info.status()) })
        })
    }

    fn get_change<'a>(&'a self, id: &'a str) -> ApiFuture<'a, ChangeStatus> {
        Box::pin(async move {
            let out = self.client.get_change().id(id).send().await.map_err(|e| classify(GET_CHANGE, e))?;
            let info = out.change_info().ok_or_else(|| invalid(GET_CHANGE, "answer without ChangeInfo"))?;
            Ok(status(info.status()))
        })
    }
}
