//! [`CoordApi`] over the real `aws-sdk-dynamodb` client. The item layout
//! (the contract with `deploy/aws`): `pk = "site#<site>"` (S), `sk` (S) =
//! `"lease"` or `"hb#<instance>"`; heartbeats carry the TTL attribute
//! `expires_at` (N, epoch seconds); the lease has none, so a lost site's
//! last lease stays readable however long it is gone. The lease carries
//! the site's DR state (`dr_state`, S: `normal`, `dr_pending`, `dr_active`,
//! `failback_pending`), written by its holder and taken by its followers.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::api::{CoordApi, LeaseCondition};
use super::policy::{Heartbeat, Lease, LeaseMode, SiteView};
use crate::aws::{classify, ApiFuture};
use crate::burst::DrState;
use crate::control::ControlSignals;

const QUERY: &str = "Query";
const PUT: &str = "PutItem";
/// Pages read per Query at most (a page is 1 MB: thousands of heartbeats).
const MAX_PAGES: usize = 4;

type Item = HashMap<String, AttributeValue>;

/// DynamoDB through the SDK.
#[derive(Debug, Clone)]
pub(crate) struct DynamoApi {
    client: Client,
}

impl DynamoApi {
    pub(crate) fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self { client: Client::new(sdk) }
    }
}

fn pk(site: &str) -> AttributeValue {
    AttributeValue::S(format!("site#{site}"))
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n<T: std::str::FromStr>(item: &Item, key: &str) -> Option<T> {
    item.get(key).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn get_bool(item: &Item, key: &str) -> bool {
    item.get(key).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false)
}

fn lease_item(site: &str, l: &Lease) -> Item {
    [
        ("pk".into(), pk(site)),
        ("sk".into(), s("lease")),
        ("holder".into(), s(&l.holder)),
        ("holder_site".into(), s(&l.holder_site)),
        ("version".into(), n(l.version)),
        ("renewed_ms".into(), n(l.renewed_ms)),
        ("expires_ms".into(), n(l.expires_ms)),
        ("mode".into(), s(l.mode.as_str())),
    ]
    .into_iter()
    .chain(l.dr_state.map(|d| ("dr_state".into(), s(d.as_str()))))
    .collect()
}

fn heartbeat_item(site: &str, h: &Heartbeat, ttl_secs: u64) -> Item {
    let sig = &h.signals;
    let mut item = HashMap::from([
        ("pk".into(), pk(site)),
        ("sk".into(), s(&format!("hb#{}", h.instance))),
        ("instance".into(), s(&h.instance)),
        ("at_ms".into(), n(h.at_ms)),
        ("streak_since_ms".into(), n(h.streak_since_ms)),
        ("arrival_rps".into(), n(sig.arrival_rps)),
        ("spilled_rps".into(), n(sig.spilled_rps)),
        ("shed_rps".into(), n(sig.shed_rps)),
        ("served_rps".into(), n((sig.arrival_rps - sig.spilled_rps - sig.shed_rps).max(0.0))),
        ("dr".into(), AttributeValue::Bool(sig.dr)),
        ("dr_capacity".into(), AttributeValue::Bool(sig.dr_capacity)),
        ("cloud_healthy".into(), AttributeValue::Bool(sig.cloud_healthy)),
        ("dr_state".into(), s(sig.dr_state.as_str())),
        ("mode".into(), s(super::policy::mode_of(sig))),
        ("expires_at".into(), n(h.at_ms / 1000 + ttl_secs)),
    ]);
    if let Some(c) = sig.onprem_capacity_rps.filter(|c| c.is_finite()) {
        item.insert("onprem_capacity_rps".into(), n(c));
    }
    item
}

fn parse_lease(item: &Item) -> Option<Lease> {
    Some(Lease {
        holder: get_s(item, "holder")?.to_owned(),
        holder_site: get_s(item, "holder_site").unwrap_or_default().to_owned(),
        version: get_n(item, "version")?,
        renewed_ms: get_n(item, "renewed_ms").unwrap_or(0),
        expires_ms: get_n(item, "expires_ms")?,
        mode: LeaseMode::parse(get_s(item, "mode").unwrap_or("normal"))?,
        dr_state: dr_state(item),
    })
}

fn parse_heartbeat(item: &Item) -> Option<Heartbeat> {
    let finite = |key| get_n::<f64>(item, key).filter(|v| v.is_finite());
    Some(Heartbeat {
        instance: get_s(item, "instance")?.to_owned(),
        at_ms: get_n(item, "at_ms")?,
        streak_since_ms: get_n(item, "streak_since_ms").unwrap_or(u64::MAX),
        signals: ControlSignals {
            arrival_rps: finite("arrival_rps").unwrap_or(0.0),
            spilled_rps: finite("spilled_rps").unwrap_or(0.0),
            shed_rps: finite("shed_rps").unwrap_or(0.0),
            onprem_capacity_rps: finite("onprem_capacity_rps"),
            dr: get_bool(item, "dr"),
            dr_capacity: get_bool(item, "dr_capacity"),
            cloud_healthy: get_bool(item, "cloud_healthy"),
            dr_state: dr_state(item).unwrap_or_default(),
            dr_synced: None,
        },
    })
}

fn dr_state(item: &Item) -> Option<DrState> {
    let text = get_s(item, "dr_state")?;
    DrState::ALL.into_iter().find(|d| d.as_str() == text)
}

/// Items that do not parse are skipped (another version's, or edited by hand).
fn site_view(items: &[Item]) -> SiteView {
    let mut view = SiteView::default();
    for item in items {
        match get_s(item, "sk") {
            Some("lease") => view.lease = parse_lease(item),
            Some(sk) if sk.starts_with("hb#") => view.heartbeats.extend(parse_heartbeat(item)),
            _ => {}
        }
    }
    view
}

impl CoordApi for DynamoApi {
    fn query_site<'a>(&'a self, table: &'a str, site: &'a str) -> ApiFuture<'a, SiteView> {
        Box::pin(async move {
            let mut items = Vec::new();
            let mut start: Option<Item> = None;
            for _ in 0..MAX_PAGES {
                let out = self
                    .client
                    .query()
                    .table_name(table)
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", pk(site))
                    .consistent_read(true)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| classify(QUERY, e))?;
                items.extend_from_slice(out.items());
                match out.last_evaluated_key() {
                    Some(k) => start = Some(k.clone()),
                    None => break,
                }
            }
            Ok(site_view(&items))
        })
    }

    fn put_heartbeat<'a>(
        &'a self,
        table: &'a str,
        site: &'a str,
        hb: &'a Heartbeat,
        ttl_secs: u64,
    ) -> ApiFuture<'a, ()> {
        Box::pin(async move {
            let put = self.client.put_item().table_name(table).set_item(Some(heartbeat_item(site, hb, ttl_secs)));
            put.send().await.map_err(|e| classify(PUT, e))?;
            Ok(())
        })
    }

    fn put_lease<'a>(
        &'a self,
        table: &'a str,
        site: &'a str,
        lease: &'a Lease,
        condition: &'a LeaseCondition,
    ) -> ApiFuture<'a, bool> {
        Box::pin(async move {
            let put = self.client.put_item().table_name(table).set_item(Some(lease_item(site, lease)));
            let put = match condition {
                LeaseCondition::Absent => put.condition_expression("attribute_not_exists(pk)"),
                LeaseCondition::Expired { seen, now_ms } => put
                    .condition_expression("version = :seen AND expires_ms <= :now")
                    .expression_attribute_values(":seen", n(seen))
                    .expression_attribute_values(":now", n(now_ms)),
                LeaseCondition::Held { holder, version } => put
                    .condition_expression("holder = :me AND version = :v")
                    .expression_attribute_values(":me", s(holder))
                    .expression_attribute_values(":v", n(version)),
            };
            match put.send().await {
                Ok(_) => Ok(true),
                Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
                Err(e) => Err(classify(PUT, e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip() {
        let lease = Lease {
            holder: "a".into(),
            holder_site: "dc1".into(),
            version: 3,
            renewed_ms: 10,
            expires_ms: 20,
            mode: LeaseMode::Lost,
            dr_state: Some(DrState::FailbackPending),
        };
        let signals = ControlSignals {
            arrival_rps: 10.5,
            spilled_rps: 2.0,
            shed_rps: 0.0,
            onprem_capacity_rps: Some(100.0),
            dr: true,
            dr_capacity: true,
            cloud_healthy: true,
            dr_state: DrState::DrActive,
            dr_synced: None,
        };
        let hb = Heartbeat { instance: "a".into(), at_ms: 5_000, streak_since_ms: 1_000, signals };
        let item = heartbeat_item("dc1", &hb, 60);
        assert_eq!(get_n::<u64>(&item, "expires_at"), Some(65));
        assert_eq!(get_s(&item, "sk"), Some("hb#a"));
        let junk = HashMap::from([("sk".to_string(), s("hb#x"))]);
        let view = site_view(&[lease_item("dc1", &lease), item, junk]);
        assert_eq!(view, SiteView { lease: Some(lease), heartbeats: vec![hb] });
    }
}
