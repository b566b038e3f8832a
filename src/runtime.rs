//! The runtime snapshot: everything a request needs, built from one validated
//! config and swapped in whole (`ArcSwap`) on reload. A request loads it once
//! and finishes on it, whatever reloads happen meanwhile.
//!
//! Building a snapshot reuses the previous one's pools (endpoints with their
//! health and latency state, keep-alive connections) when they did not change.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::burst::SpillDecision;
use crate::config::{Config, ListenerConfig, LoadedConfig, RouteConfig};
use crate::gate::{Gates, PoolGate};
use crate::request::host;
use crate::telemetry::catalog;
use crate::tls::{self, TlsError};
use crate::upstream::{Pool, PoolError};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("listener {listener}: {source}")]
    Tls { listener: String, source: TlsError },
    #[error(transparent)]
    Pool(#[from] PoolError),
}

pub(crate) struct Runtime {
    pub(crate) config: Arc<Config>,
    pub(crate) routes: Vec<Route>,
    pub(crate) pools: BTreeMap<String, Arc<Pool>>,
    /// Live gate state per pool (shared with every other snapshot).
    pub(crate) gates: BTreeMap<String, Arc<PoolGate>>,
    pub(crate) listeners: BTreeMap<String, ListenerRuntime>,
    /// `spillway_requests_total` of requests no route matched (and readiness).
    pub(crate) unrouted: ClassCounters,
}

pub(crate) struct ListenerRuntime {
    /// Shared so each accepted connection takes a reference, not a copy
    /// (the config holds the certificate and key PEM bytes).
    pub(crate) config: Arc<ListenerConfig>,
    pub(crate) tls: Option<TlsAcceptor>,
}

pub(crate) struct Route {
    /// The route's name, shared with the access log's entries.
    pub(crate) name: Arc<str>,
    pub(crate) config: RouteConfig,
    pub(crate) primary: Arc<Pool>,
    pub(crate) primary_gate: Arc<PoolGate>,
    pub(crate) overflow: Option<(Arc<Pool>, Arc<PoolGate>)>,
    pub(crate) decisions: DecisionCounters,
    /// `spillway_shed_total` of this route, by `ShedReason` (in `ShedReason::ALL` order).
    pub(crate) shed: [metrics::Counter; crate::burst::ShedReason::ALL.len()],
    /// `spillway_requests_total` of this route: [primary, overflow].
    pub(crate) requests: [ClassCounters; 2],
}

/// `spillway_requests_total` handles of one (route, pool), one per status class.
pub(crate) struct ClassCounters([metrics::Counter; 5]);

impl ClassCounters {
    fn new(route: &str, pool: &str) -> Self {
        ClassCounters(["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| {
            metrics::counter!(catalog::REQUESTS, "route" => route.to_string(), "pool" => pool.to_string(), "code_class" => class)
        }))
    }

    #[inline]
    pub(crate) fn count(&self, status: http::StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.0[class].increment(1);
    }
}

/// Pre-registered counters of gate decisions for one route, so the request
/// path increments a handle instead of formatting labels.
pub(crate) struct DecisionCounters {
    counters: Vec<(SpillDecision, metrics::Counter)>,
}

impl DecisionCounters {
    fn new(route: &RouteConfig) -> Self {
        let all = SpillDecision::ALL;
        let counters = all
            .into_iter()
            .map(|d| {
                let pool = match d {
                    SpillDecision::Cloud(_) => route.overflow.clone().unwrap_or_default(),
                    _ => route.primary.clone(),
                };
                let c = metrics::counter!(catalog::GATE_DECISIONS,
                    "route" => route.name.clone(),
                    "pool" => pool,
                    "target" => d.target(),
                    "reason" => d.reason()
                );
                (d, c)
            })
            .collect();
        DecisionCounters { counters }
    }

    #[inline]
    pub(crate) fn count(&self, decision: SpillDecision) {
        if let Some((_, c)) = self.counters.iter().find(|(d, _)| *d == decision) {
            c.increment(1);
        }
    }
}

impl Route {
    /// Whether `path` (normal form, `request::path::normalize`) is one this
    /// route never spills (`never_spill` prefixes, without ASCII case when
    /// `ignore_case`).
    #[inline]
    pub(crate) fn never_spills(&self, path: &str, ignore_case: bool) -> bool {
        self.config.never_spill.iter().any(|p| crate::request::path::has_prefix(path, p, ignore_case))
    }
}

impl Runtime {
    /// Builds a snapshot; pools of `previous` with the same name carry over.
    pub(crate) fn build(
        loaded: &LoadedConfig,
        previous: Option<&Runtime>,
        shared: &Gates,
    ) -> Result<Runtime, BuildError> {
        let config = Arc::new(loaded.config.clone());
        let mut pools = BTreeMap::new();
        for (name, pc) in &config.pools {
            let prev = previous.and_then(|r| r.pools.get(name)).map(Arc::as_ref);
            pools.insert(name.clone(), Arc::new(Pool::build(pc, prev)?));
        }
        let gates: BTreeMap<String, Arc<PoolGate>> =
            config.pools.keys().map(|name| (name.clone(), shared.get(name, &config.spill))).collect();
        let mut routes: Vec<Route> = config
            .routes
            .iter()
            .map(|rc| Route {
                name: Arc::from(rc.name.as_str()),
                config: rc.clone(),
                primary: pools[&rc.primary].clone(),
                primary_gate: gates[&rc.primary].clone(),
                overflow: rc.overflow.as_ref().map(|o| (pools[o].clone(), gates[o].clone())),
                decisions: DecisionCounters::new(rc),
                shed: crate::burst::ShedReason::ALL.map(|reason| {
                    metrics::counter!(catalog::SHED, "route" => rc.name.clone(), "pool" => rc.primary.clone(),
                        "reason" => reason.as_str(), "priority" => rc.priority.as_str())
                }),
                requests: [
                    ClassCounters::new(&rc.name, &rc.primary),
                    ClassCounters::new(&rc.name, rc.overflow.as_deref().unwrap_or("-")),
                ],
            })
            .collect();
        // Most specific first: exact hosts before wildcards, then longer prefixes.
        routes.sort_by(|a, b| {
            b.config
                .host
                .is_some()
                .cmp(&a.config.host.is_some())
                .then(b.config.path_prefix.len().cmp(&a.config.path_prefix.len()))
        });
        let mut listeners = BTreeMap::new();
        for lc in &config.listeners {
            let tls = match &lc.tls {
                None => None,
                Some(t) => Some(TlsAcceptor::from(Arc::new(
                    tls::server_config(t).map_err(|source| BuildError::Tls { listener: lc.name.clone(), source })?,
                ))),
            };
            listeners.insert(lc.name.clone(), ListenerRuntime { config: Arc::new(lc.clone()), tls });
        }
        Ok(Runtime { config, routes, pools, gates, listeners, unrouted: ClassCounters::new("-", "-") })
    }

    /// The route for a request: `authority` as `request::host::authority`
    /// chose it (compared without case, port or trailing dot), `path` in
    /// normal form (`request::path::normalize`).
    pub(crate) fn route(&self, authority: Option<&str>, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| {
            let host_ok = match (&r.config.host, authority) {
                (None, _) => true,
                (Some(want), Some(h)) => host::route_key_eq(h, want),
                (Some(_), None) => false,
            };
            host_ok && path.starts_with(r.config.path_prefix.as_str())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(text: &str) -> Runtime {
        let loaded = crate::config::from_str(text, "t.toml".as_ref(), ".".as_ref()).unwrap();
        Runtime::build(&loaded, None, &Gates::new(&loaded.config.spill)).unwrap()
    }

    const ROUTES: &str = r#"
[[listener]]
name = "l"
listen = "127.0.0.1:0"
[pools.a]
endpoints = ["127.0.0.1:1"]
[pools.b]
endpoints = ["127.0.0.1:2"]
[[route]]
name = "any"
primary = "a"
[[route]]
name = "api"
host = "www.example.com"
path_prefix = "/api"
primary = "b"
[[route]]
name = "www"
host = "www.example.com"
primary = "a"
"#;

    #[test]
    fn most_specific_route_wins() {
        let rt = runtime(ROUTES);
        assert_eq!(rt.route(Some("www.example.com:8080"), "/api/x").unwrap().config.name, "api");
        assert_eq!(rt.route(Some("WWW.example.com"), "/home").unwrap().config.name, "www");
        assert_eq!(rt.route(Some("other"), "/api").unwrap().config.name, "any");
        assert_eq!(rt.route(None, "/").unwrap().config.name, "any");
    }

    #[test]
    fn pools_carry_over_unchanged_endpoints() {
        let loaded = crate::config::from_str(ROUTES, "t.toml".as_ref(), ".".as_ref()).unwrap();
        let gates = Gates::new(&loaded.config.spill);
        let first = Runtime::build(&loaded, None, &gates).unwrap();
        let edited = ROUTES.replace("endpoints = [\"127.0.0.1:2\"]", "endpoints = [\"127.0.0.1:2\", \"127.0.0.1:3\"]");
        let loaded2 = crate::config::from_str(&edited, "t.toml".as_ref(), ".".as_ref()).unwrap();
        let second = Runtime::build(&loaded2, Some(&first), &gates).unwrap();
        assert!(Arc::ptr_eq(&first.gates["b"], &second.gates["b"]), "gate state survives reloads");
        assert!(Arc::ptr_eq(&first.pools["b"].endpoints[0], &second.pools["b"].endpoints[0]));
        assert_eq!(second.pools["b"].endpoints.len(), 2);
    }

    #[test]
    fn strips_ports() {
        assert_eq!(host::route_key("a.b:80"), "a.b");
        assert_eq!(host::route_key("a.b"), "a.b");
        assert_eq!(host::route_key("[::1]:80"), "::1");
    }
}
