//! `spillway sentinel`: the coordination role with no listeners, for an
//! instance in AWS that covers the datacenters (`[[coordination.cover]]`)
//! when they are all lost. It heartbeats and holds its own site's lease
//! (`runtime.site`, e.g. "aws") and takes over a covered site exactly as a
//! datacenter's holder would; it runs no proxy, no admin API, and neither
//! its own scale nor DNS controller. The config file is a full Spillway
//! config (validated as such); a reload needs a restart.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::control::{self, ControlHandle, CoordInputs};
use crate::config::LoadedConfig;
use crate::control::{ControlInputs, ControlSignals};
use crate::notifications::Notifier;
use crate::{aws, coord, dns, scale};

/// Why a sentinel cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    #[error("the config has no [coordination] section: a sentinel has nothing to do")]
    NoCoordination,
}

/// A running sentinel; [`Sentinel::shutdown`] stops it.
pub struct Sentinel {
    handle: ControlHandle,
    shutdown: CancellationToken,
    _signals: watch::Sender<ControlSignals>,
}

impl Sentinel {
    /// The `/status`-style coordination document.
    pub fn status(&self) -> serde_json::Value {
        self.handle.coordination_status()
    }

    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.handle.join().await;
    }
}

/// Starts the coordination loop of `loaded` and nothing else.
pub async fn sentinel(loaded: LoadedConfig) -> Result<Sentinel, SentinelError> {
    let config = loaded.config;
    let coordination = config.coordination.clone().ok_or(SentinelError::NoCoordination)?;
    let settings = crate::notifications::Settings { site: config.runtime.site.clone(), notify: config.notify.clone() };
    let notifier = Notifier::spawn(move || Some(settings.clone()));
    let options = aws::ClientOptions { region: Some(coordination.region.clone()), endpoint_url: None };
    let sdk = aws::load_sdk_config(&options).await;
    // No proxy: the sentinel's own signals stay at rest.
    let (signals_tx, signals) = watch::channel(ControlSignals::default());
    let shutdown = CancellationToken::new();
    let inputs = ControlInputs {
        signals,
        scale: watch::channel(None).1,
        dns: watch::channel(None).1,
        shutdown: shutdown.clone(),
    };
    let coord = CoordInputs {
        api: Arc::new(coord::DynamoApi::new(&sdk)),
        config: watch::channel(Some(coordination)).1,
        notifier: Some(notifier),
    };
    let handle = control::start_coordinated(
        inputs,
        Arc::new(scale::AutoScalingApi::new(&sdk)),
        Arc::new(dns::Route53Api::new(&sdk)),
        Some(coord),
    );
    Ok(Sentinel { handle, shutdown, _signals: signals_tx })
}
