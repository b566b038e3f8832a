//! Starts the CloudWatch publisher when the config has `[notify.cloudwatch]`
//! and hands it its sampler: the signals the AWS controllers read (arrivals,
//! spilled, DR; `control::ControlSignals` as the ticker last published them),
//! each primary pool's gate, and the worst replica lag of the cloud pools.
//! The sampler only reads snapshots and atomics.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::server::Server;
use crate::cloudwatch::stats::{PoolSample, SiteSample};
use crate::cloudwatch::{self, Sampler};
use crate::config::{Config, PoolRole};

/// Spawns the publisher if the section is present at start (adding it later needs a restart).
pub(crate) fn start(server: &Arc<Server>, config: &Config) {
    let Some(cw) = &config.notify.cloudwatch else { return };
    tracing::info!(namespace = %cw.namespace, region = %cw.region, interval = ?cw.interval, "CloudWatch publisher started");
    let sampler = sampler(Arc::downgrade(server));
    tokio::spawn(cloudwatch::run(cw.region.clone(), sampler, server.control.shutdown.clone()));
}

fn sampler(server: Weak<Server>) -> Sampler {
    Box::new(move || {
        let server = server.upgrade()?;
        let rt = server.data.runtime.load();
        let cw = rt.config.notify.cloudwatch.clone()?;
        let signals = server.control.signals.borrow().clone();
        let now = Instant::now();
        let mut pools = Vec::new();
        let mut lag: Option<Duration> = None;
        for (name, pool) in &rt.pools {
            match pool.role() {
                PoolRole::Primary => {
                    let v = rt.gates[name].view();
                    pools.push(PoolSample {
                        name: name.clone(),
                        in_flight: v.in_flight,
                        limit: v.limit,
                        mode: v.mode as u8,
                    });
                }
                PoolRole::Cloud => {
                    let worst = pool.endpoints.iter().filter(|e| e.available(now)).filter_map(|e| e.lag()).max();
                    lag = lag.max(worst);
                }
            }
        }
        let sample = SiteSample {
            arrivals_rps: signals.arrival_rps,
            spilled_rps: signals.spilled_rps,
            dr: signals.dr,
            pools,
            replica_lag_secs: lag.map(|l| l.as_secs_f64()),
        };
        Some((cw, rt.config.runtime.site.clone(), sample))
    })
}
