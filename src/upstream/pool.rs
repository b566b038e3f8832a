//! A pool of upstream endpoints with its pooled HTTP/1.1 client.
//!
//! Built as part of a runtime snapshot; a reload builds a new `Pool` that
//! carries over the endpoints (health, latency estimate) and the client
//! (keep-alive connections) of the pool it replaces when they did not change.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::StatusCode;

use crate::config::{PoolConfig, PoolRole};
use crate::sync::lock;
use crate::telemetry::{self, catalog, LogBudget};
use crate::tls::TlsError;

use super::balance;
use super::client::Transport;
use super::connector::Connector;
use super::endpoint::Endpoint;
use super::health::{self, Probe};

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
    /// Held while an ejection is decided and made, so two endpoints
    /// reaching their threshold at once cannot both pass the share check.
    /// Taken only at a threshold, never on the request path otherwise.
    ejecting: Mutex<()>,
    /// Handles registered once per snapshot: the request path formats no label.
    pub(crate) metrics: PoolMetrics,
}

/// A pool's per-request metric handles.
pub(crate) struct PoolMetrics {
    pub(crate) duration: metrics::Histogram,
    pub(crate) connect: metrics::Histogram,
    pub(crate) first_byte: metrics::Histogram,
    pub(crate) reused: metrics::Counter,
    pub(crate) new_connection: metrics::Counter,
}

impl PoolMetrics {
    fn new(pool: &str) -> Self {
        let on = |connection: &'static str| metrics::counter!(catalog::UPSTREAM_REQUESTS, "pool" => pool.to_string(), "connection" => connection);
        PoolMetrics {
            duration: metrics::histogram!(catalog::REQUEST_DURATION, "pool" => pool.to_string()),
            connect: metrics::histogram!(catalog::UPSTREAM_CONNECT, "pool" => pool.to_string()),
            first_byte: metrics::histogram!(catalog::UPSTREAM_FIRST_BYTE, "pool" => pool.to_string()),
            reused: on("reused"),
            new_connection: on("new"),
        }
    }
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
        Ok(Pool {
            name: config.name.clone(),
            config: config.clone(),
            endpoints,
            transport,
            ejecting: Mutex::new(()),
            metrics: PoolMetrics::new(&config.name),
        })
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

    /// Whether an answer with `status` counts against the endpoint that
    /// gave it (the pool's `passive_fault_statuses`).
    pub(crate) fn is_endpoint_fault(&self, status: StatusCode) -> bool {
        health::is_endpoint_fault(status, &self.config.passive_fault_statuses)
    }

    /// Passive health: the result of a request to `endpoint` (`ok` false: a
    /// fault of the endpoint). Returns true when this call ejected it. An
    /// ejection is refused when it would take out more than
    /// `max_ejection_percent` of the pool or its last endpoint that is up.
    pub(crate) fn record_result(&self, endpoint: &Endpoint, ok: bool, now: Instant) -> bool {
        if ok {
            endpoint.observe_success(now);
            return false;
        }
        if !endpoint.observe_failure(now, self.config.eject_after) {
            return false;
        }
        let _one_at_a_time = lock(&self.ejecting);
        if endpoint.is_ejected(now) {
            return false;
        }
        let others = || self.endpoints.iter().filter(|e| !std::ptr::eq(&***e, endpoint));
        let ejected = others().filter(|e| e.is_ejected(now)).count();
        let others_up = others().filter(|e| e.serving(now)).count();
        if !health::may_eject(self.endpoints.len(), ejected, others_up, self.config.max_ejection_percent) {
            self.note_refused(endpoint, now);
            return false;
        }
        endpoint.eject(now, &self.config);
        true
    }

    /// An ejection held back: visible, since the endpoint keeps failing.
    fn note_refused(&self, endpoint: &Endpoint, now: Instant) {
        static REFUSED: LogBudget = LogBudget::new(5);
        if let Some(suppressed) = REFUSED.admit(telemetry::secs(now)) {
            tracing::warn!(pool = %self.name, endpoint = %endpoint.addr, suppressed, max_ejection_percent = self.config.max_ejection_percent, "endpoint kept in rotation despite consecutive failures: ejecting it would exceed the pool's ejection share or leave no endpoint up");
        }
        metrics::counter!(catalog::EJECTIONS_REFUSED, "pool" => self.name.clone()).increment(1);
    }

    /// Whether at least one endpoint's active probes say it is healthy,
    /// whatever passive ejection says; a pool without `health` counts as
    /// healthy. Passive ejection follows real traffic and may take a pool's
    /// endpoints out for seconds; this asks the probes only, for decisions
    /// that must not follow a burst of failed requests (declaring disaster
    /// recovery).
    /// The gate ticker's disaster-recovery decision is its caller.
    pub(crate) fn any_probe_healthy(&self) -> bool {
        self.config.health.is_none() || self.endpoints.iter().any(|e| e.probe() == Probe::Up)
    }

    /// Whether an endpoint whose probes pass reports its database primary
    /// (false when the pool has no `role_header`).
    pub(crate) fn reports_primary(&self) -> bool {
        self.config.health.as_ref().is_some_and(|h| h.role_header.is_some())
            && self.endpoints.iter().any(|e| e.probe() == Probe::Up && e.reports_primary())
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config;

    /// A pool over `n` endpoints with `extra` pool keys (eject_after = 2).
    fn pool(n: usize, extra: &str) -> Pool {
        let endpoints: Vec<String> = (1..=n).map(|i| format!("'127.0.0.1:{i}'")).collect();
        let text = format!(
            "[[listener]]\nname='a'\nlisten='127.0.0.1:0'\n[pools.p]\nendpoints=[{}]\neject_after=2\n{extra}\n[[route]]\nprimary='p'\n",
            endpoints.join(",")
        );
        let cfg = config::from_str(&text, "t".as_ref(), ".".as_ref()).unwrap().config.pools["p"].clone();
        Pool::build(&cfg, None).unwrap()
    }

    /// Fails `e` until it is ejected or `tries` faults were refused.
    fn fail(p: &Pool, i: usize, tries: usize, now: Instant) -> bool {
        (0..tries).any(|_| p.record_result(&p.endpoints[i], false, now))
    }

    #[test]
    fn the_last_endpoint_up_is_never_ejected() {
        let now = Instant::now();
        let p = pool(2, "");
        assert!(fail(&p, 0, 2, now), "the first endpoint goes");
        assert!(!fail(&p, 1, 50, now), "the second stays, however often it fails");
        assert!(p.endpoints[1].available(now));
        assert!(p.has_available(now));
        let one = pool(1, "max_ejection_percent = 100");
        assert!(!fail(&one, 0, 50, now));
        assert!(one.endpoints[0].available(now));
    }

    #[test]
    fn ejection_stops_at_the_configured_share() {
        let now = Instant::now();
        let p = pool(4, "max_ejection_percent = 50");
        let ejected: Vec<bool> = (0..4).map(|i| fail(&p, i, 10, now)).collect();
        assert_eq!(ejected, [true, true, false, false]);
        // Once one comes back, another may go.
        let later = now + Duration::from_secs(5);
        assert!(p.endpoints[0].available(later));
        assert!(fail(&p, 2, 10, later));
        let off = pool(4, "max_ejection_percent = 0");
        assert!((0..4).all(|i| !fail(&off, i, 10, now)), "0 turns passive ejection off");
    }

    #[test]
    fn only_the_pools_fault_statuses_count() {
        let p = pool(2, "passive_fault_statuses = [503]");
        assert!(p.is_endpoint_fault(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!p.is_endpoint_fault(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!p.is_endpoint_fault(StatusCode::BAD_GATEWAY));
        let default = pool(2, "");
        let faults: Vec<u16> =
            (500..=504).filter(|s| default.is_endpoint_fault(StatusCode::from_u16(*s).unwrap())).collect();
        assert_eq!(faults, [502, 503, 504]);
    }

    #[test]
    fn probe_health_ignores_passive_ejection() {
        let now = Instant::now();
        let unprobed = pool(2, "");
        assert!(unprobed.any_probe_healthy(), "without probes a pool counts as healthy");
        let p = pool(2, "health = { path = '/h' }");
        assert!(!p.any_probe_healthy(), "no probe answered yet");
        p.endpoints[1].observe_probe(true, 2, 3);
        assert!(p.any_probe_healthy());
        p.endpoints[0].observe_probe(true, 2, 3);
        assert!(fail(&p, 1, 2, now));
        assert!(p.any_probe_healthy(), "an ejected endpoint's probes still count");
        for _ in 0..3 {
            p.endpoints[0].observe_probe(false, 2, 3);
            p.endpoints[1].observe_probe(false, 2, 3);
        }
        assert!(!p.any_probe_healthy());
    }
}
