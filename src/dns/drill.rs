//! A drill's DNS leg: UPSERT the drill record (a weighted TXT record of
//! weight 0 under its own set identifier, so no client is ever sent by it)
//! and time how long Route 53 takes to report the change `INSYNC`. The
//! only I/O is the `DnsApi` and tokio's clock.

use std::time::Duration;

use super::api::{ChangeStatus, DnsApi};
use super::records::{RecordTarget, WeightedRecord};
use crate::aws::error::AwsError;

/// The set identifier of the drill record.
pub(crate) const DRILL_SET_IDENTIFIER: &str = "spillway-drill";

/// The record a drill writes under `name`, carrying `stamp` (e.g. the time).
pub(crate) fn drill_record(name: &str, stamp: &str) -> WeightedRecord {
    WeightedRecord {
        name: name.to_string(),
        record_type: "TXT".to_string(),
        set_identifier: DRILL_SET_IDENTIFIER.to_string(),
        weight: 0,
        ttl: Some(60),
        target: RecordTarget::Value(format!("\"spillway drill {stamp}\"")),
        health_check_id: None,
    }
}

/// Writes the drill record and waits for `INSYNC`: `Some(time)`, or `None`
/// after `timeout`.
pub(crate) async fn time_change(
    api: &dyn DnsApi,
    zone: &str,
    record: &WeightedRecord,
    poll: Duration,
    timeout: Duration,
) -> Result<Option<Duration>, AwsError> {
    let began = tokio::time::Instant::now();
    let change = api.upsert(zone, std::slice::from_ref(record), "spillway DR drill").await?;
    let mut status = change.status;
    loop {
        if status == ChangeStatus::InSync {
            return Ok(Some(began.elapsed()));
        }
        if began.elapsed() >= timeout {
            return Ok(None);
        }
        tokio::time::sleep(poll.min(timeout.saturating_sub(began.elapsed()))).await;
        status = api.get_change(&change.id).await?;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::aws::error::ApiFuture;
    use crate::dns::api::ChangeInfo;
    use crate::dns::records::ObservedRecord;

    /// A zone whose changes are INSYNC `after` the UPSERT.
    struct Zone {
        after: Duration,
        written: Mutex<Option<(tokio::time::Instant, WeightedRecord)>>,
    }

    impl DnsApi for Zone {
        fn list_records<'a>(&'a self, _: &'a str, _: &'a str, _: &'a str) -> ApiFuture<'a, Vec<ObservedRecord>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn upsert<'a>(&'a self, _: &'a str, r: &'a [WeightedRecord], _: &'a str) -> ApiFuture<'a, ChangeInfo> {
            Box::pin(async move {
                *self.written.lock().unwrap() = Some((tokio::time::Instant::now(), r[0].clone()));
                Ok(ChangeInfo { id: "c1".into(), status: ChangeStatus::Pending })
            })
        }
        fn get_change<'a>(&'a self, _: &'a str) -> ApiFuture<'a, ChangeStatus> {
            Box::pin(async move {
                let at = self.written.lock().unwrap().as_ref().unwrap().0;
                Ok(if at.elapsed() >= self.after { ChangeStatus::InSync } else { ChangeStatus::Pending })
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_change_is_timed_until_insync_and_moves_no_client() {
        let zone = Zone { after: Duration::from_secs(40), written: Mutex::new(None) };
        let record = drill_record("drill.example.", "t0");
        let took = time_change(&zone, "Z1", &record, Duration::from_secs(5), Duration::from_secs(600)).await;
        assert_eq!(took.unwrap(), Some(Duration::from_secs(40)));
        let written = zone.written.lock().unwrap().clone().unwrap().1;
        assert_eq!((written.weight, written.record_type.as_str()), (0, "TXT"), "weight 0: nobody is sent by it");
        assert_eq!(written.set_identifier, DRILL_SET_IDENTIFIER);
        let slow = Zone { after: Duration::from_secs(900), written: Mutex::new(None) };
        let took = time_change(&slow, "Z1", &record, Duration::from_secs(5), Duration::from_secs(60)).await;
        assert_eq!(took.unwrap(), None, "not INSYNC within the timeout");
    }
}
