//! Every metric Spillway exports, in one place: its name (what dashboards
//! and alerts scrape, so a name never changes), its kind, its HELP text and
//! its label set. Call sites use the constants; `describe` hands the HELP
//! texts to the recorder once at start. Label values are bounded sets
//! (pool, route, listener names from the config; reasons and kinds from
//! enums): never a path or a client address.
//!
//! `tests/metrics_catalog.rs` fails when a call site names a metric with a
//! string literal, uses a constant this table does not list, or a label key
//! its entry does not declare.

/// What a metric is, as Prometheus types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric family.
#[derive(Debug)]
pub(crate) struct Metric {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// Read by the catalogue's tests (and `tests/metrics_catalog.rs` reads the source).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) labels: &'static [&'static str],
    pub(crate) help: &'static str,
}

macro_rules! catalog {
    ($($id:ident: $kind:ident $name:literal [$($label:literal),*] $help:literal;)*) => {
        $(pub(crate) const $id: &str = $name;)*
        /// The whole catalogue, in the order below.
        pub(crate) const ALL: &[Metric] = &[$(Metric { name: $name, kind: Kind::$kind, labels: &[$($label),*], help: $help }),*];
    };
}

catalog! {
    // Client side.
    CLIENT_CONNECTIONS: Gauge "spillway_client_connections" []
        "Client connections open now, on every listener.";
    CONNECTIONS_ACCEPTED: Counter "spillway_connections_accepted_total" ["listener"]
        "Client connections accepted, by listener.";
    CONNECTIONS_REJECTED: Counter "spillway_connections_rejected_total" ["listener"]
        "Client connections refused with 503 because the listener was at max_connections.";
    UPGRADED_CONNECTIONS: Gauge "spillway_upgraded_connections" []
        "Upgraded (WebSocket) tunnels open now.";
    CANCELLED_AT_UPSTREAM: Counter "spillway_cancelled_at_upstream_total" ["pool"]
        "Requests the client cancelled (HTTP/2 reset, closed connection) while the upstream was working on them; each keeps its in-flight slot until the upstream answers (at most response_timeout), since the origin's worker goes on with it.";
    UPSTREAM_ABANDONED: Counter "spillway_upstream_abandoned_total" ["outcome"]
        "Exchanges whose client went away after the request reached the upstream, by how they ended: reused (finished in the background, body read, connection back in the idle list), answered (finished, but the connection could not be kept), closed (a request body still coming, an upgrade, a body over 256 KiB or slower than 5 s: closed), failed (the upstream failed or timed out), overflow (1024 already finishing: closed at once).";
    TUNNELS_CLOSED: Counter "spillway_tunnels_closed_total" ["reason"]
        "Upgraded tunnels Spillway closed itself: idle (tunnel_idle_timeout), send_timeout (a side took nothing for client_send_timeout), drain (the drain deadline).";
    PROXY_ERRORS: Counter "spillway_proxy_errors_total" ["kind"]
        "Requests answered with an error by Spillway itself, or cut short, by kind of failure.";
    RETRIES: Counter "spillway_retries_total" ["reason"]
        "Requests sent again: after a connect failure (connect) or on a pooled connection the upstream had closed (stale_connection).";
    // Requests (RED), through handles registered per route and pool at each snapshot.
    REQUESTS: Counter "spillway_requests_total" ["route", "pool", "code_class"]
        "Requests answered, by route, the pool that served (or refused) them and status class (1xx to 5xx); route and pool are - for a request no route matched.";
    REQUEST_DURATION: Histogram "spillway_request_duration_seconds" ["pool"]
        "Time from a request's arrival to its response head, by pool (the body's streaming time is in the access log's duration_ms).";
    UPSTREAM_CONNECT: Histogram "spillway_upstream_connect_seconds" ["pool"]
        "Time to open a new upstream connection (TCP, and TLS where configured), by pool.";
    UPSTREAM_FIRST_BYTE: Histogram "spillway_upstream_first_byte_seconds" ["pool"]
        "Time from a request's send to the upstream's response head, by pool.";
    UPSTREAM_REQUESTS: Counter "spillway_upstream_requests_total" ["pool", "connection"]
        "Requests sent upstream, by pool and whether the connection was reused from the keep-alive pool (reused) or opened for it (new).";
    CLIENT_BYTES: Counter "spillway_client_bytes_total" ["listener", "direction"]
        "Bytes read from (in) and written to (out) client connections, after TLS, by listener.";
    TLS_HANDSHAKES: Counter "spillway_tls_handshakes_total" ["listener", "result"]
        "TLS handshakes with clients, by listener and result: ok, failed, timeout (header_read_timeout).";
    // Gate.
    GATE_DECISIONS: Counter "spillway_gate_decisions_total" ["route", "pool", "target", "reason"]
        "Gate decisions per request: where it went (primary, cloud, queue) and why.";
    SHED: Counter "spillway_shed_total" ["route", "pool", "reason", "priority"]
        "Requests that waited for a slot and got 503 with Retry-After, by route, its primary pool and priority: queue_full (the queue held only requests of an equal or higher rank), queue_timeout (no slot within queue_timeout), evicted (a higher-ranked request took its place).";
    POOL_SHED_RATE: Gauge "spillway_pool_shed_per_second" ["pool"]
        "Requests shed from the pool's queue per second (smoothed), at the last gate tick: demand no pool served.";
    POOL_IN_FLIGHT: Gauge "spillway_pool_in_flight" ["pool"]
        "Requests in flight to a pool, at the last gate tick.";
    POOL_LIMIT: Gauge "spillway_pool_limit" ["pool"]
        "The pool's concurrency limit (adaptive or static), at the last gate tick.";
    POOL_MODE: Gauge "spillway_pool_mode" ["pool"]
        "The pool's mode: 0 normal, 1 spilling, 2 disaster recovery.";
    MODE_CHANGES: Counter "spillway_mode_changes_total" ["pool", "to"]
        "Pool mode changes, by the mode entered.";
    DR_STATE: Gauge "spillway_dr_state" []
        "The site's disaster-recovery state: 0 normal, 1 dr_pending, 2 dr_active, 3 failback_pending.";
    DR_WRITES_HELD: Gauge "spillway_dr_writes_held" []
        "1 while writes are refused although the DR state lets them through (a move of writes not yet published or fenced, or no recent read of the site's lease), else 0.";
    DR_TRANSITIONS: Counter "spillway_dr_transitions_total" ["to", "reason"]
        "Disaster-recovery state changes, by the state entered and why.";
    REPLICA_LAG: Gauge "spillway_replica_lag_seconds" ["pool"]
        "Worst replica lag a cloud pool's available endpoints report (lag_header), in seconds.";
    PINS: Gauge "spillway_pins" []
        "Clients pinned on-prem after a write (read-after-write), now.";
    ADDRESS_PINS: Counter "spillway_address_pins_total" []
        "Writes that pinned their whole client address, because it had made spill.pins_per_address session pins within pin_after_write already.";
    PIN_EVICTIONS: Gauge "spillway_pin_evictions" []
        "Pins evicted before their time because the pin table was full, since start.";
    PIN_TOKENS: Counter "spillway_pin_tokens_total" ["result"]
        "Signed pin cookies ([spill.pin_token]) looked at, one result per request: pinned (kept on-prem), lag_released (genuine, older than the cloud's lag plus lag_margin), expired, future (written more than a pin time ahead), unknown_key, forged, malformed; only pinned changes a decision.";
    // Upstream.
    UPSTREAM_CONNECTIONS_OPENED: Counter "spillway_upstream_connections_opened_total" []
        "Upstream connections opened (not taken from the keep-alive pool).";
    ENDPOINT_EJECTIONS: Counter "spillway_endpoint_ejections_total" ["pool"]
        "Endpoints ejected after consecutive failures, by pool.";
    EJECTIONS_REFUSED: Counter "spillway_endpoint_ejections_refused_total" ["pool"]
        "Faults at the ejection threshold that ejected nothing because of max_ejection_percent or the pool's last endpoint up, by pool.";
    HEALTH_PROBES: Counter "spillway_health_probes_total" ["pool", "ok"]
        "Active health probes sent, by pool and outcome.";
    HEALTH_PROBE_RESTARTS: Counter "spillway_health_probe_restarts_total" ["pool"]
        "Health probe loops that failed (panicked) and were started again, by pool.";
    // Access log.
    ACCESS_LOG_LINES: Counter "spillway_access_log_lines_total" []
        "Access log lines written to the sink.";
    ACCESS_LOG_DROPPED: Counter "spillway_access_log_dropped_total" ["reason"]
        "Access log lines lost: queue_full (the writer fell behind; the request was never held up) or sink (the file or syslog receiver could not take them).";
    // Configuration.
    CONFIG_RELOADS: Counter "spillway_config_reloads_total" []
        "Configuration reloads that were applied.";
    CONFIG_RELOAD_FAILURES: Counter "config_reload_failures_total" []
        "Configuration reloads refused (the previous configuration kept serving). Name kept without the spillway_ prefix for existing alerts.";
    CERTIFICATE_RELOADS: Counter "spillway_certificate_reloads_total" ["result"]
        "Reloads started by a listener's certificate or key file changing on disk: applied, or failed (the previous certificate keeps serving; the error is logged and counted in config_reload_failures_total too).";
    // Upgrades.
    UPGRADES: Counter "spillway_upgrades_total" ["result"]
        "Process upgrades seen by the running process: handed_over (a successor took the listeners; this process drains and exits 0) or failed (the successor did not take over; this process keeps serving).";
    // Admin API.
    ADMIN_REFUSED: Counter "spillway_admin_refused_total" ["reason"]
        "Admin connections and calls refused: over_capacity (503), unauthorized (401), foreign_host (403), malformed_host (400), simple_request (415), rate_limited (429).";
    // Notifications.
    NOTIFICATIONS_SENT: Counter "spillway_notifications_sent_total" ["sink"]
        "Notifications delivered, per sink (webhook, pagerduty, sns).";
    NOTIFICATIONS_FAILED: Counter "spillway_notifications_failed_total" ["sink"]
        "Notifications a sink refused or could not be reached for, after retries.";
    NOTIFICATIONS_DROPPED: Counter "spillway_notifications_dropped_total" ["sink"]
        "Notifications dropped because a queue was full (sink=queue: the dispatcher's).";
    NOTIFICATIONS_SUPPRESSED: Counter "spillway_notifications_suppressed_total" ["sink", "reason"]
        "Notifications a sink did not send: below_severity, rate_limited, not_triggered, not_an_episode.";
    // CloudWatch.
    CLOUDWATCH_DATUMS: Counter "spillway_cloudwatch_datums_total" []
        "Metric datums CloudWatch accepted (PutMetricData).";
    CLOUDWATCH_FAILURES: Counter "spillway_cloudwatch_failures_total" []
        "PutMetricData batches given up after retries (their datums are dropped).";
    // AWS controllers.
    AWS_ERRORS: Counter "spillway_aws_errors_total" ["api", "kind"]
        "Failed AWS API calls, by API and kind of error (throttled, timeout, ...).";
    SCALE_DECISIONS: Counter "spillway_scale_decisions_total" ["reason"]
        "Scale controller decisions, by reason.";
    SCALE_ACTIONS: Counter "spillway_scale_actions_total" ["reason"]
        "SetDesiredCapacity calls made, by reason.";
    SCALE_DESIRED_CAPACITY: Gauge "spillway_scale_desired_capacity" []
        "The Auto Scaling group's desired capacity, as last read or set.";
    SCALE_IN_SERVICE: Gauge "spillway_scale_in_service" []
        "Instances of the Auto Scaling group in service, as last read.";
    DNS_CHANGES: Counter "spillway_dns_changes_total" ["reason"]
        "Route 53 weight changes submitted, by reason.";
    DNS_EXTERNAL_EDITS: Counter "spillway_dns_external_edits_total" []
        "Route 53 records found changed by someone else.";
    COORD_FENCED_WRITES: Counter "spillway_coordination_fenced_writes_total" ["api"]
        "AWS writes a controller skipped because this instance did not hold the site's lease (or was past it).";
    COORD_HOLDER_CHANGES: Counter "spillway_coordination_holder_changes_total" ["site"]
        "Times this instance acquired or lost a site's lease.";
    COORD_IS_HOLDER: Gauge "spillway_coordination_holder" []
        "1 while this instance holds its own site's lease, else 0.";
    COORD_TAKEOVERS: Counter "spillway_coordination_takeovers_total" ["site"]
        "Sites this instance took over in lost mode.";
    DNS_WEIGHT: Gauge "spillway_dns_weight" ["record"]
        "The weight of this datacenter's (onprem) and AWS's (aws) record, as last read or written.";
}

/// Hands every HELP text to the installed recorder.
pub(crate) fn describe() {
    for m in ALL {
        match m.kind {
            Kind::Counter => ::metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => ::metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => ::metrics::describe_histogram!(m.name, ::metrics::Unit::Seconds, m.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prometheus_shaped() {
        let mut seen = std::collections::HashSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", m.name);
            assert!(m.kind != Kind::Histogram || m.name.ends_with("_seconds"), "{}: histograms are in seconds", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
            assert!(!m.help.is_empty() && m.help.ends_with('.'), "{}: HELP is a sentence", m.name);
            assert!(
                !m.labels.iter().any(|l| ["path", "client", "addr", "ip"].contains(l)),
                "{}: unbounded label",
                m.name
            );
        }
    }
}
