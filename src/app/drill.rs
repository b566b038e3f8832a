//! DR drills, wired: `POST /dr/drill` runs one in the background against
//! the running config's `[scale]` group (the scale controller holds
//! `dr_capacity` while it runs, no user moves), records the report in
//! `/status` `dr.last_drill` and sends it as a `dr_drill` notification;
//! [`drill_config`] runs the same from the command line (`spillway drill`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::aws::{self, ClientOptions};
use crate::config::{self, Config, ConfigError};
use crate::notifications::Event;
use crate::scale::drill::{self, DrillOutcome, DrillPlan, DrillReport};
use crate::scale::AutoScalingApi;

use super::server::Server;

/// Why a drill did not start.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the config has no enabled [scale] section: there is no group to drill")]
    NoGroup,
    #[error("a drill is already running")]
    Running,
}

impl DrillError {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            DrillError::Config(_) => "config",
            DrillError::NoGroup => "no_group",
            DrillError::Running => "running",
        }
    }
}

fn plan(cfg: &Config) -> Result<DrillPlan, DrillError> {
    let scale = cfg.scale.as_ref().filter(|s| s.enabled).ok_or(DrillError::NoGroup)?;
    Ok(DrillPlan {
        group: scale.auto_scaling_group.clone(),
        dr_capacity: scale.dr_capacity,
        poll: scale.interval.min(Duration::from_secs(10)),
        timeout: cfg.dr.drill_timeout,
    })
}

async fn api(cfg: &Config) -> AutoScalingApi {
    let region = cfg.scale.as_ref().map(|s| s.region.clone());
    AutoScalingApi::new(&aws::load_sdk_config(&ClientOptions { region, endpoint_url: None }).await)
}

/// Starts a drill in the background; refused without a group or while one runs.
pub(crate) async fn start(server: &Arc<Server>) -> Result<(), DrillError> {
    let cfg = server.data.runtime.load().config.clone();
    let plan = plan(&cfg)?;
    let (started, answer) = tokio::sync::oneshot::channel();
    let server = server.clone();
    tokio::spawn(async move {
        let Some(slot) = server.data.gates.dr.begin_drill() else {
            let _ = started.send(false);
            return;
        };
        let _ = started.send(true);
        tracing::warn!(group = %plan.group, dr_capacity = plan.dr_capacity, "drill started");
        let api = api(&cfg).await;
        // Two gate ticks: the controller hears the hold is over before the restore.
        let settle = cfg.spill.tick * 2;
        let report = drill::run(&api, &plan, &|| slot.release(), settle).await;
        finish(&server, &plan, &report);
    });
    match answer.await {
        Ok(true) => Ok(()),
        _ => Err(DrillError::Running),
    }
}

fn finish(server: &Server, plan: &DrillPlan, report: &DrillReport) {
    let doc = report.to_json();
    tracing::warn!(group = %plan.group, outcome = report.outcome.as_str(), to_in_service = ?report.to_in_service, restored = report.restored, "drill finished");
    server.data.gates.dr.record_drill(doc.clone());
    let severity = if report.outcome == DrillOutcome::Passed { "info" } else { "warning" };
    let took = report.to_in_service.map_or("never".to_string(), |d| format!("{:.0} s", d.as_secs_f64()));
    let summary =
        format!("DR drill of {}: {} (dr_capacity in service after {took})", plan.group, report.outcome.as_str());
    server.notify(Event::new("dr_drill", severity, summary, json!({ "group": plan.group, "report": doc })));
}

/// `spillway drill --config F`: one drill against the file's `[scale]`
/// group (no proxy runs, no user moves); the report as JSON.
pub async fn drill_config(path: &Path) -> Result<(bool, Value), DrillError> {
    let loaded = config::load(path)?;
    let plan = plan(&loaded.config)?;
    let api = api(&loaded.config).await;
    let report = drill::run(&api, &plan, &|| {}, Duration::ZERO).await;
    let doc = json!({ "group": plan.group, "dr_capacity": plan.dr_capacity, "report": report.to_json() });
    Ok((report.outcome == DrillOutcome::Passed, doc))
}
