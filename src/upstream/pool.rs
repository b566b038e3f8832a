//! A pool of upstream endpoints with its pooled HTTP/1.1 client.
//!
//! Built as part of a runtime snapshot; a reload builds a new `Pool` that
//! carries over the endpoints (health, latency estimate) and the client
//! (keep-alive connections) of the pool it replaces when they did not change.

use std::sync::Arc;
use std::time::Instant;

use crate::config::{PoolConfig, PoolRole};
use crate::tls::TlsError;

use super::balance;
use super::client::Transport;
use super::connector::Connector;
use super::endpoint::Endpoint;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("pool {pool}: {source}")]
    Tls { pool: String, source: TlsError },
    #[error("pool {pool}: invalid endpoint {addr:?}")]
    Endpoint { pool: String, addr: String },
}

pub(crate) struct Pool {
    pub(crate) name: String,
    pub(crate) config: PoolConfig,
    pub(crate) endpoints: Vec<Arc<Endpoint>>,
    pub(crate) transport: Arc<Transport>,
}

impl Pool {
    /// Builds a pool, reusing what `previous` (same name, older snapshot) had.
    pub(crate) fn build(config: &PoolConfig, previous: Option<&Pool>) -> Result<Pool, PoolError> {
        let probed = config.health.is_some();
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for addr in &config.endpoints {
            let reused = previous
                .filter(|p| p.config.health.is_some() == probed)
                .and_then(|p| p.endpoints.iter().find(|e| &e.addr == addr).cloned());
            let endpoint = match reused {
                Some(e) => e,
                None => Arc::new(
                    Endpoint::new(addr, probed)
                        .map_err(|_| PoolError::Endpoint { pool: config.name.clone(), addr: addr.clone() })?,
                ),
            };
            endpoints.push(endpoint);
        }
        let transport = match previous.filter(|p| same_transport(&p.config, config)) {
            Some(p) => p.transport.clone(),
            None => Arc::new(new_transport(config)?),
        };
        Ok(Pool { name: config.name.clone(), config: config.clone(), endpoints, transport })
    }

    pub(crate) fn role(&self) -> PoolRole {
        self.config.role
    }

    /// Power of two choices over PeakEWMA cost among available endpoints,
    /// skipping `avoid` (the endpoint a retry is moving away from).
    pub(crate) fn pick(&self, now: Instant, avoid: Option<&Endpoint>) -> Option<&Arc<Endpoint>> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let usable = |e: &Endpoint| e.available(now) && !avoid.is_some_and(|a| std::ptr::eq(a, e));
        let (i, j) = balance::pair(n, fastrand::u64(..), fastrand::u64(..));
        let (a, b) = (&self.endpoints[i], &self.endpoints[j]);
        match (usable(a), usable(b)) {
            (true, true) => Some(if a.cost() <= b.cost() { a } else { b }),
            (true, false) => Some(a),
            (false, true) => Some(b),
            (false, false) => {
                let start = fastrand::usize(..n);
                let ring = || (0..n).map(|k| &self.endpoints[(start + k) % n]);
                // Only a snapshot older than the current one has draining
                // endpoints: a request that began on it is served by them
                // rather than failed with 503 because a reload removed them.
                let serving = |e: &Endpoint| e.serving(now) && !avoid.is_some_and(|a| std::ptr::eq(a, e));
                ring().find(|e| usable(e)).or_else(|| ring().find(|e| serving(e)))
            }
        }
    }

    /// Whether any endpoint can take a request at `now` (draining ones
    /// count: see `pick`).
    pub(crate) fn has_available(&self, now: Instant) -> bool {
        self.endpoints.iter().any(|e| e.serving(now))
    }

    /// Marks endpoints that the next snapshot no longer has as draining.
    pub(crate) fn drain_removed(&self, next: &Pool) {
        for e in &self.endpoints {
            if !next.endpoints.iter().any(|n| Arc::ptr_eq(n, e)) {
                e.set_draining();
            }
        }
    }
}

fn same_transport(a: &PoolConfig, b: &PoolConfig) -> bool {
    a.tls == b.tls
        && a.connect_timeout == b.connect_timeout
        && a.idle_timeout == b.idle_timeout
        && a.max_idle_per_endpoint == b.max_idle_per_endpoint
}

fn new_transport(config: &PoolConfig) -> Result<Transport, PoolError> {
    let connector = Connector::new(config.connect_timeout, config.tls.as_ref())
        .map_err(|source| PoolError::Tls { pool: config.name.clone(), source })?;
    Ok(Transport::new(connector, config.max_idle_per_endpoint, config.idle_timeout))
}
