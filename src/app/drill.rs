//! DR drills, wired: `POST /dr/drill` runs one in the background against
//! the running config's `[scale]` group (the scale controller holds
//! `dr_capacity` while it runs, no user moves), records the report in
//! `/status` `dr.last_drill` and sends it as a `dr_drill` notification
//! (with `dr.drill_record`, the record's change is timed until INSYNC at the
//! same time);
//! [`drill_config`] runs the same from the command line (`spillway drill`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::aws::{self, ClientOptions};
use crate::config::{self, Config, ConfigError};
use crate::notifications::{Event, Kind};
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

/// Both legs at once: the capacity (always) and the drill record's change
/// (with `dr.drill_record`). True when every leg passed; the report as JSON.
async fn execute(
    cfg: &Config,
    plan: &DrillPlan,
    release: &(dyn Fn() + Send + Sync),
    settle: Duration,
) -> (bool, Value, DrillReport) {
    let region = cfg.scale.as_ref().map(|s| s.region.clone());
    let sdk = aws::load_sdk_config(&ClientOptions { region, endpoint_url: None }).await;
    let scaling = AutoScalingApi::new(&sdk);
    let dns_leg = async {
        let (name, dns) = (cfg.dr.drill_record.as_ref()?, cfg.dns.as_ref()?);
        let stamp = crate::control::rfc3339(std::time::SystemTime::now());
        let record = crate::dns::drill::drill_record(name, &stamp);
        let api = crate::dns::Route53Api::new(&sdk);
        Some(crate::dns::drill::time_change(&api, &dns.hosted_zone_id, &record, plan.poll, plan.timeout).await)
    };
    let (report, dns) = tokio::join!(drill::run(&scaling, plan, release, settle), dns_leg);
    let mut doc = report.to_json();
    let dns_ok = match &dns {
        None => true,
        Some(Ok(took)) => {
            doc["to_dns_insync_secs"] = json!(took.map(|d| d.as_secs_f64()));
            took.is_some()
        }
        Some(Err(e)) => {
            doc["dns_error"] = json!(e.to_string());
            false
        }
    };
    if !dns_ok && report.outcome == DrillOutcome::Passed {
        doc["outcome"] = json!("dns_not_insync");
    }
    (report.outcome == DrillOutcome::Passed && dns_ok, doc, report)
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
        // Two gate ticks: the controller hears the hold is over before the restore.
        let settle = cfg.spill.tick * 2;
        let (passed, doc, report) = execute(&cfg, &plan, &|| slot.release(), settle).await;
        finish(&server, &plan, passed, doc, &report);
    });
    match answer.await {
        Ok(true) => Ok(()),
        _ => Err(DrillError::Running),
    }
}

fn finish(server: &Server, plan: &DrillPlan, passed: bool, doc: Value, report: &DrillReport) {
    tracing::warn!(group = %plan.group, outcome = report.outcome.as_str(), to_in_service = ?report.to_in_service, restored = report.restored, "drill finished");
    server.data.gates.dr.record_drill(doc.clone());
    let took = report.to_in_service.map_or("never".to_string(), |d| format!("{:.0} s", d.as_secs_f64()));
    let summary =
        format!("DR drill of {}: {} (dr_capacity in service after {took})", plan.group, report.outcome.as_str());
    // Informational either way: a failed drill asks for a look, not a page that nothing resolves.
    let event = Event::info(Kind::DrDrill, &plan.group, summary, std::time::SystemTime::now());
    server.notify(event.with_details(json!({ "group": plan.group, "passed": passed, "report": doc })));
}

/// `spillway drill --config F`: one drill against the file's `[scale]`
/// group (no proxy runs, no user moves); the report as JSON.
pub async fn drill_config(path: &Path) -> Result<(bool, Value), DrillError> {
    let loaded = config::load(path)?;
    let plan = plan(&loaded.config)?;
    let (passed, report, _) = execute(&loaded.config, &plan, &|| {}, Duration::ZERO).await;
    let doc = json!({ "group": plan.group, "dr_capacity": plan.dr_capacity, "report": report });
    Ok((passed, doc))
}
