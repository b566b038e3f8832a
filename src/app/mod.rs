//! Wiring: builds the server from a config, starts the listeners, the
//! admin API, the gate ticker, the AWS controllers and the reload triggers.
//! Everything below `app/` is handed the handle it needs; only this layer
//! sees the whole.

pub(crate) mod activation;
pub(crate) mod admin;
pub(crate) mod cloudwatch;
pub mod control;
pub(crate) mod dr;
pub mod drill;
pub(crate) mod events;
pub(crate) mod reload;
pub(crate) mod sentinel;
pub(crate) mod server;
pub(crate) mod ticker;
pub mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{self, LoadedConfig};
use crate::sync::lock;
use crate::telemetry::catalog;
use crate::{aws, coord, dns, runtime, scale};

use reload::Trigger;
pub use sentinel::{sentinel, Sentinel, SentinelError};
use server::Server;

/// Errors that stop the process from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Build(#[from] runtime::BuildError),
    #[error(transparent)]
    Listen(#[from] server::ReloadError),
    #[error("admin listener {addr}: {source}")]
    Admin { addr: SocketAddr, source: std::io::Error },
    #[error("config watch: {0}")]
    Watch(String),
    #[error(transparent)]
    Upgrade(#[from] upgrade::UpgradeError),
}

/// Starts the Auto Scaling and Route 53 controllers when the config has a
/// `[scale]` or `[dns]` section. Credentials and endpoints come from the
/// standard AWS chain; the region is set from `[scale]` so nothing queries
/// instance metadata for it.
async fn start_controllers(server: &Arc<Server>, config: &config::Config, apis: ControllerApis) {
    let _ = server.controller_apis.set(apis.clone());
    let coordination = config.coordination.as_ref().filter(|c| c.enabled);
    if config.scale.is_none() && config.dns.is_none() && coordination.is_none() {
        return;
    }
    let handle = match (apis, coordination) {
        (ControllerApis::Custom(scaling, dns), None) => control::start_with_apis(server.control.inputs(), scaling, dns),
        (apis, _) => {
            let region = config.scale.as_ref().map(|s| s.region.clone()).or(coordination.map(|c| c.region.clone()));
            let options = aws::ClientOptions { region: region.or(Some("us-east-1".into())), endpoint_url: None };
            let sdk = aws::load_sdk_config(&options).await;
            let (scaling, dns): (Arc<dyn scale::ScalingApi>, Arc<dyn dns::DnsApi>) = match apis {
                ControllerApis::Custom(scaling, dns) => (scaling, dns),
                ControllerApis::Sdk => {
                    (Arc::new(scale::AutoScalingApi::new(&sdk)), Arc::new(dns::Route53Api::new(&sdk)))
                }
            };
            let coord = coordination.map(|_| control::CoordInputs {
                api: Arc::new(coord::DynamoApi::new(&sdk)),
                config: server.control.coordination.subscribe(),
                notifier: server.notifier.get().cloned(),
            });
            control::start_coordinated(server.control.inputs(), scaling, dns, coord)
        }
    };
    tracing::info!(
        scale = config.scale.is_some(),
        dns = config.dns.is_some(),
        coordination = coordination.is_some(),
        "AWS controllers started"
    );
    *lock(&server.control.capacity) = Some(handle.cloud_capacity());
    *lock(&server.control.handle) = Some(handle);
    tokio::spawn(events::watch(server.clone()));
}

/// After a reload: a config that gained its first `[scale]`, `[dns]` or
/// enabled `[coordination]` section starts the controllers, as a start
/// with it would have. Once running they take later changes as they come
/// (see `ControlPlane::reconfigure`); they are never started twice.
pub(crate) async fn start_controllers_after_reload(server: &Arc<Server>) {
    if lock(&server.control.handle).is_some() {
        return;
    }
    let Some(apis) = server.controller_apis.get().cloned() else { return };
    let config = server.data.runtime.load().config.clone();
    start_controllers(server, &config, apis).await;
}

/// A started Spillway: listeners bound, probes and reload triggers running.
pub struct Running {
    pub(crate) server: Arc<Server>,
    pub admin_addr: SocketAddr,
    /// The predecessor's pid, when this process took its listeners over.
    pub took_over_from: Option<u32>,
    upgrader: Option<Arc<upgrade::Upgrader>>,
    _watcher: Option<notify::RecommendedWatcher>,
}

/// How a process starts: from scratch or from a predecessor, and how it
/// starts its own successor.
#[derive(Default)]
pub struct StartOptions {
    /// What a predecessor handed over (`spillway run --upgrade-from`).
    pub takeover: Option<upgrade::Takeover>,
    /// How to start a successor on SIGUSR2 or `spillway upgrade`.
    pub relaunch: Option<upgrade::Relaunch>,
}

impl Running {
    /// Resolves once a successor has taken the listeners over (never
    /// without `runtime.upgrade_socket`); then [`Running::shutdown`] drains.
    pub async fn handed_over(&self) {
        match &self.upgrader {
            Some(u) => u.handed_over().cancelled().await,
            None => std::future::pending().await,
        }
    }

    /// Starts reporting not ready (readiness endpoint and `/readyz` 503)
    /// while the listeners keep serving; [`Running::shutdown`] drains.
    pub fn begin_shutdown(&self) {
        self.server.data.begin_shutdown();
    }

    /// Stops accepting, lets requests in flight finish for up to `timeout`,
    /// then closes what is left; returns how many connections were left.
    pub async fn shutdown(&self, timeout: Duration) -> usize {
        self.server.shutdown(timeout).await
    }
}

/// Which AWS APIs the controllers talk to.
#[derive(Clone)]
pub(crate) enum ControllerApis {
    /// The real SDK clients, from the standard AWS chain (`AWS_ENDPOINT_URL` etc.).
    Sdk,
    /// Given implementations (the demo's simulated AWS, tests' fakes).
    Custom(Arc<dyn scale::ScalingApi>, Arc<dyn dns::DnsApi>),
}

/// Starts everything a config asks for. Must run inside a tokio runtime.
pub async fn start(
    loaded: LoadedConfig,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> Result<Running, StartError> {
    start_with(loaded, metrics, ControllerApis::Sdk, StartOptions::default()).await
}

/// `start`, taking the listeners over from a predecessor and able to start
/// a successor (see [`upgrade`]).
pub async fn start_process(
    loaded: LoadedConfig,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    options: StartOptions,
) -> Result<Running, StartError> {
    start_with(loaded, metrics, ControllerApis::Sdk, options).await
}

/// `start`, with the controllers' APIs chosen by the caller.
pub(crate) async fn start_with(
    loaded: LoadedConfig,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    apis: ControllerApis,
    options: StartOptions,
) -> Result<Running, StartError> {
    let StartOptions { mut takeover, relaunch } = options;
    let server = Server::new(&loaded)?;
    if let Some(t) = &takeover {
        let resumed = upgrade::state::resume(&server, &t.carried, std::time::Instant::now());
        tracing::info!(
            gates = resumed.gates,
            endpoints = resumed.endpoints,
            dr = resumed.dr,
            "resumed the predecessor's state"
        );
    }
    server.start(takeover.as_mut()).await?;
    let admin_cfg = loaded.config.admin.listen;
    let admin = Arc::new(admin::Admin::new(server.clone(), metrics, &loaded.config.admin));
    let inherited = takeover.as_mut().and_then(|t| t.take_admin(admin_cfg));
    let admin_listener = admin::start(admin, admin_cfg, inherited)
        .await
        .map_err(|source| StartError::Admin { addr: admin_cfg, source })?;
    let admin_addr = admin_listener.local;
    println!("listening admin {admin_addr}");
    start_controllers(&server, &loaded.config, apis).await;
    cloudwatch::start(&server, &loaded.config);
    let (tx, mut rx) = mpsc::channel::<Trigger>(8);
    let watcher = reload::watch_file(&loaded.path, Duration::from_millis(300), tx.clone())
        .map_err(|e| StartError::Watch(e.to_string()))?;
    reload::watch_sighup(tx.clone()).map_err(|e| StartError::Watch(e.to_string()))?;
    let reloader = server.clone();
    tokio::spawn(async move {
        let mut certificates = reload::CertificateWatch::new(tx);
        certificates.follow(&reloader.data.runtime.load().config);
        while let Some(trigger) = rx.recv().await {
            let result = reloader.reload(trigger.as_str()).await;
            if trigger == Trigger::Certificate {
                let result = if result.is_ok() { "applied" } else { "failed" };
                metrics::counter!(catalog::CERTIFICATE_RELOADS, "result" => result).increment(1);
            }
            certificates.follow(&reloader.data.runtime.load().config);
        }
    });
    // Everything runs: the predecessor may stop accepting now.
    let took_over_from = match takeover {
        Some(t) => Some(
            tokio::task::spawn_blocking(move || t.confirm())
                .await
                .map_err(|e| StartError::Watch(format!("takeover confirmation: {e}")))??,
        ),
        None => None,
    };
    if let Some(from) = took_over_from {
        tracing::info!(predecessor = from, "took the listeners over");
        println!("took over from {from}");
    }
    let upgrader = match &loaded.config.runtime.upgrade_socket {
        Some(path) => {
            let u = upgrade::Upgrader::new(
                server.clone(),
                path.clone(),
                relaunch,
                Some((admin_cfg, admin_listener.socket)),
                Some(admin_listener.accepting),
            );
            let listening = u.listen().and_then(|()| {
                u.watch_sigusr2().map_err(|e| upgrade::UpgradeError::Socket { path: path.clone(), source: e })
            });
            match listening {
                Ok(()) => {}
                // Serving already (the predecessor has stepped down): the
                // next upgrade is what fails, not this process.
                Err(e) if took_over_from.is_some() => {
                    tracing::error!(error = %e, "upgrade socket unavailable: no further upgrades")
                }
                Err(e) => return Err(e.into()),
            }
            Some(u)
        }
        None => None,
    };
    Ok(Running { server, admin_addr, took_over_from, upgrader, _watcher: Some(watcher) })
}
