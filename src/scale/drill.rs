//! A DR drill against the Auto Scaling group: raise it to `dr_capacity`
//! without moving any user, time how long until that many instances are in
//! service, and put the previous desired capacity back, whatever happened in
//! between. The loop is the only I/O (a `ScalingApi` and tokio's clock), so
//! paused-time tests drive it over a fake group.
//!
//! Invariant: once the drill has raised the group, it always tries to
//! restore the previous desired capacity, and the report says whether that
//! worked.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::api::ScalingApi;
use crate::aws::error::AwsError;

/// What a drill needs to know.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DrillPlan {
    pub(crate) group: String,
    pub(crate) dr_capacity: u32,
    /// Between two reads of the group.
    pub(crate) poll: Duration,
    /// Longest wait for the capacity to be in service.
    pub(crate) timeout: Duration,
}

/// How a drill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DrillOutcome {
    /// `dr_capacity` was in service and the group was restored.
    Passed,
    /// The capacity was not in service within the timeout.
    TimedOut,
    /// An Auto Scaling call failed.
    Failed,
}

impl DrillOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DrillOutcome::Passed => "passed",
            DrillOutcome::TimedOut => "timed_out",
            DrillOutcome::Failed => "failed",
        }
    }
}

/// What a drill found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DrillReport {
    pub(crate) started_at: SystemTime,
    pub(crate) outcome: DrillOutcome,
    pub(crate) previous_desired: Option<u32>,
    /// What was asked for (`dr_capacity` within the group's maximum).
    pub(crate) target: Option<u32>,
    pub(crate) to_in_service: Option<Duration>,
    pub(crate) restored: bool,
    pub(crate) error: Option<String>,
}

impl DrillReport {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "started_at": crate::control::rfc3339(self.started_at),
            "outcome": self.outcome.as_str(),
            "previous_desired": self.previous_desired,
            "target": self.target,
            "to_in_service_secs": self.to_in_service.map(|d| d.as_secs_f64()),
            "restored": self.restored,
            "error": self.error,
        })
    }
}

/// Runs one drill (see the module doc). Before the restore, `release` is
/// called and `settle` waited: a running scale controller that was told
/// to hold `dr_capacity` for the drill hears it is over first, so it does
/// not raise the group again after the restore.
pub(crate) async fn run(
    api: &dyn ScalingApi,
    plan: &DrillPlan,
    release: &(dyn Fn() + Send + Sync),
    settle: Duration,
) -> DrillReport {
    let started_at = SystemTime::now();
    let mut report = DrillReport {
        started_at,
        outcome: DrillOutcome::Failed,
        previous_desired: None,
        target: None,
        to_in_service: None,
        restored: false,
        error: None,
    };
    let group = match api.describe_group(&plan.group).await {
        Ok(g) => g,
        Err(e) => return failed(report, &e),
    };
    let target = plan.dr_capacity.min(group.max).max(group.min);
    (report.previous_desired, report.target) = (Some(group.desired), Some(target));
    let began = tokio::time::Instant::now();
    if let Err(e) = api.set_desired_capacity(&plan.group, target).await {
        return failed(report, &e);
    }
    tracing::warn!(group = %plan.group, from = group.desired, to = target, "drill: group raised to dr_capacity");
    match wait_in_service(api, plan, target, began).await {
        Ok(Some(took)) => (report.outcome, report.to_in_service) = (DrillOutcome::Passed, Some(took)),
        Ok(None) => report.outcome = DrillOutcome::TimedOut,
        Err(e) => report.error = Some(e.to_string()),
    }
    release();
    tokio::time::sleep(settle).await;
    match api.set_desired_capacity(&plan.group, group.desired).await {
        Ok(()) => report.restored = true,
        Err(e) => {
            tracing::error!(group = %plan.group, error = %e, "drill: restoring the desired capacity failed");
            report.outcome = DrillOutcome::Failed;
            report.error.get_or_insert_with(|| e.to_string());
        }
    }
    report
}

/// Polls until `target` instances are in service: `Some(time)`, or `None`
/// at the timeout.
async fn wait_in_service(
    api: &dyn ScalingApi,
    plan: &DrillPlan,
    target: u32,
    began: tokio::time::Instant,
) -> Result<Option<Duration>, AwsError> {
    loop {
        if api.describe_group(&plan.group).await?.in_service >= target {
            return Ok(Some(began.elapsed()));
        }
        if began.elapsed() >= plan.timeout {
            return Ok(None);
        }
        tokio::time::sleep(plan.poll.min(plan.timeout.saturating_sub(began.elapsed()))).await;
    }
}

fn failed(mut report: DrillReport, e: &AwsError) -> DrillReport {
    report.error = Some(e.to_string());
    report
}

#[cfg(test)]
#[path = "drill_tests.rs"]
mod tests;
