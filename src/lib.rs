//! Spillway: a hybrid burst-routing edge proxy.
//!
//! Requests go to the on-prem pool first; when a burst pushes the pool past
//! its concurrency limit or latency SLO, the overflow that may safely leave
//! (reads, from clients that did not just write) spills to the cloud pool.
//! See DESIGN.md for the three loops (gate, DNS, scale) and the module map.

pub mod admin;
pub mod aws;
pub mod body;
pub mod burst;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod dns;
pub mod proxy;
pub mod runtime;
pub mod scale;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use config::reload::{self, Trigger};
use config::LoadedConfig;
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
}

/// A started Spillway: listeners bound, probes and reload triggers running.
pub struct Running {
    pub server: Arc<Server>,
    pub admin_addr: SocketAddr,
    _watcher: Option<notify::RecommendedWatcher>,
}

/// Starts everything a config asks for. Must run inside a tokio runtime.
pub async fn start(
    loaded: LoadedConfig,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> Result<Running, StartError> {
    let server = Server::new(&loaded)?;
    server.start().await?;
    let admin_cfg = loaded.config.admin.listen;
    let admin = Arc::new(admin::Admin { server: server.clone(), metrics });
    let admin_addr =
        admin::start(admin, admin_cfg).await.map_err(|source| StartError::Admin { addr: admin_cfg, source })?;
    println!("listening admin {admin_addr}");
    let (tx, mut rx) = mpsc::channel::<Trigger>(8);
    let watcher = reload::watch_file(&loaded.path, Duration::from_millis(300), tx.clone())
        .map_err(|e| StartError::Watch(e.to_string()))?;
    reload::watch_sighup(tx).map_err(|e| StartError::Watch(e.to_string()))?;
    let reloader = server.clone();
    tokio::spawn(async move {
        while let Some(trigger) = rx.recv().await {
            let _ = reloader.reload(trigger.as_str()).await;
        }
    });
    Ok(Running { server, admin_addr, _watcher: Some(watcher) })
}
