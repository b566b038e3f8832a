//! The configuration file as written: plain serde structs that mirror the TOML.
//!
//! Every struct denies unknown fields, so a typo is an error rather than a
//! silently ignored key. Defaults live here as named constants; nothing in this
//! file checks meaning (that is `validate.rs`'s job), so every field a user may
//! omit is an `Option` or carries a `serde(default)`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::duration::Dur;

pub(crate) const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
pub(crate) const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;
pub(crate) const DEFAULT_ADMIN_RELOAD_BURST: u32 = 10;
pub(crate) const DEFAULT_ADMIN_RELOAD_INTERVAL: &str = "1s";
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub(crate) const DEFAULT_HEADER_READ_TIMEOUT: &str = "10s";
pub(crate) const DEFAULT_REQUEST_BODY_TIMEOUT: &str = "120s";
pub(crate) const DEFAULT_CLIENT_IDLE_TIMEOUT: &str = "60s";
pub(crate) const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
pub(crate) const DEFAULT_MAX_HEADERS: usize = 100;
pub(crate) const DEFAULT_CLIENT_SEND_TIMEOUT: &str = "30s";
pub(crate) const DEFAULT_TUNNEL_IDLE_TIMEOUT: &str = "300s";
pub(crate) const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
pub(crate) const DEFAULT_MAX_CANCELLED_STREAMS: u32 = 100;
pub(crate) const DEFAULT_CONNECT_TIMEOUT: &str = "500ms";
pub(crate) const DEFAULT_RESPONSE_TIMEOUT: &str = "30s";
pub(crate) const DEFAULT_UPSTREAM_IDLE_TIMEOUT: &str = "60s";
pub(crate) const DEFAULT_MAX_IDLE_PER_ENDPOINT: usize = 64;
pub(crate) const DEFAULT_EJECT_AFTER: u32 = 5;
pub(crate) const DEFAULT_EJECT_BASE: &str = "5s";
pub(crate) const DEFAULT_EJECT_MAX: &str = "60s";
/// Response statuses that count as the endpoint's own fault (passive health).
pub(crate) const DEFAULT_PASSIVE_FAULT_STATUSES: &[u16] = &[502, 503, 504];
pub(crate) const DEFAULT_MAX_EJECTION_PERCENT: u32 = 50;
pub(crate) const DEFAULT_DRAIN_TIMEOUT: &str = "30s";
pub(crate) const DEFAULT_SITE: &str = "local";
pub(crate) const DEFAULT_RESOLVE_AFTER: &str = "60s";
pub(crate) const DEFAULT_NOTIFY_BURST: u32 = 10;
pub(crate) const DEFAULT_NOTIFY_REFILL_EVERY: &str = "60s";
pub(crate) const DEFAULT_CONTROLLER_FAILING_AFTER: u32 = 3;
pub(crate) const DEFAULT_PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
pub(crate) const DEFAULT_CLOUDWATCH_NAMESPACE: &str = "Spillway";
pub(crate) const DEFAULT_CLOUDWATCH_INTERVAL: &str = "60s";
pub(crate) const DEFAULT_DRAIN_DELAY: &str = "0s";
/// Access log lines the data plane may queue ahead of the writer.
pub(crate) const DEFAULT_ACCESS_LOG_QUEUE: usize = 8192;
pub(crate) const DEFAULT_SYSLOG_APP_NAME: &str = "spillway";
/// Where each listener answers readiness itself (Route 53 health checks).
pub(crate) const DEFAULT_READINESS_PATH: &str = "/.spillway/ready";
/// The signed pin's cookie (`[spill.pin_token]`).
pub(crate) const DEFAULT_PIN_COOKIE: &str = "spillway_pin";
/// What `lag_aware` adds to the cloud's observed replica lag.
pub(crate) const DEFAULT_PIN_LAG_MARGIN: &str = "5s";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) runtime: RawRuntime,
    #[serde(default)]
    pub(crate) admin: RawAdmin,
    #[serde(default, rename = "listener")]
    pub(crate) listeners: Vec<RawListener>,
    #[serde(default)]
    pub(crate) pools: BTreeMap<String, RawPool>,
    #[serde(default, rename = "route")]
    pub(crate) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(crate) spill: RawSpill,
    pub(crate) scale: Option<RawScale>,
    pub(crate) dns: Option<RawDns>,
    #[serde(default)]
    pub(crate) notify: RawNotify,
    pub(crate) coordination: Option<RawCoordination>,
    #[serde(default)]
    pub(crate) dr: RawDr,
    pub(crate) access_log: Option<RawAccessLog>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRuntime {
    /// 0 or absent: one worker per core.
    pub(crate) worker_threads: Option<usize>,
    pub(crate) drain_timeout: Option<Dur>,
    /// How long readiness answers 503 before the drain starts.
    pub(crate) drain_delay: Option<Dur>,
    /// This datacenter's name (coordination, notifications, CloudWatch).
    pub(crate) site: Option<String>,
    /// The Unix socket a successor process takes the listeners over on.
    pub(crate) upgrade_socket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) listen: Option<String>,
    pub(crate) token_file: Option<String>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) header_read_timeout: Option<Dur>,
    pub(crate) idle_timeout: Option<Dur>,
    /// `POST /reload`s allowed at once; one more is earned every `reload_interval`.
    pub(crate) reload_burst: Option<u32>,
    pub(crate) reload_interval: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub(crate) name: String,
    pub(crate) listen: String,
    pub(crate) tls: Option<RawServerTls>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) header_read_timeout: Option<Dur>,
    pub(crate) request_body_timeout: Option<Dur>,
    pub(crate) idle_timeout: Option<Dur>,
    pub(crate) max_header_bytes: Option<usize>,
    pub(crate) max_headers: Option<usize>,
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<String>,
    pub(crate) client_send_timeout: Option<Dur>,
    pub(crate) max_connection_age: Option<Dur>,
    pub(crate) max_concurrent_streams: Option<u32>,
    pub(crate) max_cancelled_streams: Option<u32>,
    pub(crate) max_tunnels: Option<usize>,
    pub(crate) tunnel_idle_timeout: Option<Dur>,
    /// Path Spillway answers itself with its readiness; "" disables it.
    pub(crate) readiness_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServerTls {
    pub(crate) cert: String,
    pub(crate) key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub(crate) role: Option<String>,
    #[serde(default)]
    pub(crate) endpoints: Vec<String>,
    pub(crate) tls: Option<RawUpstreamTls>,
    pub(crate) health: Option<RawHealth>,
    pub(crate) connect_timeout: Option<Dur>,
    pub(crate) response_timeout: Option<Dur>,
    pub(crate) idle_timeout: Option<Dur>,
    pub(crate) max_idle_per_endpoint: Option<usize>,
    pub(crate) eject_after: Option<u32>,
    pub(crate) eject_base: Option<Dur>,
    pub(crate) eject_max: Option<Dur>,
    /// Response statuses counted as endpoint failures (besides connect
    /// errors, resets and timeouts).
    pub(crate) passive_fault_statuses: Option<Vec<u16>>,
    /// Most of the pool's endpoints passive ejection may take out at once, in percent.
    pub(crate) max_ejection_percent: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    pub(crate) sni: Option<String>,
    pub(crate) verify: Option<bool>,
    /// Extra PEM roots (a private CA); the public web roots are always trusted.
    pub(crate) ca: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub(crate) path: String,
    pub(crate) interval: Option<Dur>,
    pub(crate) timeout: Option<Dur>,
    pub(crate) unhealthy_after: Option<u32>,
    pub(crate) healthy_after: Option<u32>,
    /// Response header of the probe carrying the replica lag in seconds.
    pub(crate) lag_header: Option<String>,
    /// Response header of the probe naming the database's role (`[dr]`).
    pub(crate) role_header: Option<String>,
    /// The `role_header` value that means "this database is the primary".
    pub(crate) primary_role: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) name: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) path_prefix: Option<String>,
    pub(crate) primary: String,
    pub(crate) overflow: Option<String>,
    pub(crate) spill_methods: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) never_spill: Vec<String>,
    pub(crate) priority: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSpill {
    pub(crate) mode: Option<String>,
    pub(crate) max_in_flight: Option<u32>,
    pub(crate) min_limit: Option<u32>,
    pub(crate) latency_slo: Option<Dur>,
    pub(crate) enter_after: Option<Dur>,
    pub(crate) exit_after: Option<Dur>,
    pub(crate) pin_after_write: Option<Dur>,
    pub(crate) pin_capacity: Option<usize>,
    pub(crate) session_cookie: Option<String>,
    pub(crate) shed_when_cloud_unavailable: Option<bool>,
    pub(crate) cap_by_warm_capacity: Option<bool>,
    pub(crate) queue_timeout: Option<Dur>,
    pub(crate) max_queue: Option<u32>,
    pub(crate) cloud_limit: Option<bool>,
    pub(crate) cloud_min_limit: Option<u32>,
    pub(crate) cloud_max_in_flight: Option<u32>,
    pub(crate) max_replica_lag: Option<Dur>,
    pub(crate) tick: Option<Dur>,
    pub(crate) never_spill_ignore_case: Option<bool>,
    pub(crate) pins_per_address: Option<u32>,
    pub(crate) disaster_after: Option<Dur>,
    /// `[spill.pin_token]`: the signed read-after-write pin.
    pub(crate) pin_token: Option<RawPinToken>,
}

/// `[spill.pin_token]`: a signed pin cookie set on every successful write.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPinToken {
    pub(crate) cookie_name: Option<String>,
    pub(crate) key_file: String,
    pub(crate) previous_key_file: Option<String>,
    pub(crate) lag_aware: Option<bool>,
    pub(crate) lag_margin: Option<Dur>,
    pub(crate) forward_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScale {
    pub(crate) enabled: Option<bool>,
    pub(crate) dry_run: Option<bool>,
    pub(crate) region: Option<String>,
    pub(crate) auto_scaling_group: String,
    pub(crate) per_instance_rps: u32,
    pub(crate) warmup: Option<Dur>,
    pub(crate) headroom: Option<f64>,
    pub(crate) min: u32,
    pub(crate) max: u32,
    pub(crate) dr_capacity: Option<u32>,
    pub(crate) scale_in_cooldown: Option<Dur>,
    pub(crate) onprem_capacity_rps: Option<u32>,
    /// How often the controller decides (it samples signals at least once a second).
    pub(crate) interval: Option<Dur>,
    /// Holt smoothing factors for the level and the trend, in (0, 1].
    pub(crate) forecast_alpha: Option<f64>,
    pub(crate) forecast_beta: Option<f64>,
    /// At most this many instances removed per scale-in action.
    pub(crate) scale_in_step: Option<u32>,
    /// Time between two scale-in steps once the cooldown has passed.
    pub(crate) scale_in_interval: Option<Dur>,
    #[serde(default, rename = "event")]
    pub(crate) events: Vec<RawEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEvent {
    pub(crate) name: String,
    pub(crate) start: String,
    pub(crate) end: String,
    pub(crate) expected_rps: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    pub(crate) enabled: Option<bool>,
    pub(crate) dry_run: Option<bool>,
    pub(crate) hosted_zone_id: String,
    pub(crate) record: String,
    #[serde(rename = "type")]
    pub(crate) record_type: Option<String>,
    pub(crate) ttl: Option<u32>,
    pub(crate) onprem: RawDnsTarget,
    pub(crate) aws: RawDnsTarget,
    pub(crate) shift_after: Option<Dur>,
    pub(crate) min_change_interval: Option<Dur>,
    pub(crate) max_step: Option<u8>,
    /// How often the controller looks at the signals and decides.
    pub(crate) interval: Option<Dur>,
    /// Smallest weight move worth a change (moves to 0 or full always count).
    pub(crate) hysteresis: Option<u8>,
    /// How long to poll `GetChange` for INSYNC before reporting a timeout.
    pub(crate) insync_timeout: Option<Dur>,
    /// What to do when the records were edited by someone else: "respect" or "correct".
    pub(crate) on_external_edit: Option<String>,
    /// Operator-set target weights (planned migration); moved to in bounded steps.
    pub(crate) target_weights: Option<RawTargetWeights>,
    /// How often the records are read back to notice edits made elsewhere.
    pub(crate) verify_interval: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDnsTarget {
    pub(crate) set_identifier: String,
    /// A plain record value (CNAME target or IP address).
    pub(crate) value: Option<String>,
    /// Or an alias to an AWS resource such as an ELB.
    pub(crate) alias: Option<RawAlias>,
    /// The Route 53 health check the record carries (a UUID).
    pub(crate) health_check_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlias {
    pub(crate) dns_name: String,
    pub(crate) hosted_zone_id: String,
    pub(crate) evaluate_health: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTargetWeights {
    pub(crate) onprem: u32,
    pub(crate) aws: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    pub(crate) sns_topic_arn: Option<String>,
    pub(crate) webhook: Option<String>,
    /// How long a bad state must stay over before its resolve is sent (flap damping).
    pub(crate) resolve_after: Option<Dur>,
    /// Notifications each sink may send at once; one more is earned every `refill_every`.
    pub(crate) burst: Option<u32>,
    pub(crate) refill_every: Option<Dur>,
    /// Consecutive failed controller ticks that make a `controller_failing` event.
    pub(crate) controller_failing_after: Option<u32>,
    pub(crate) pagerduty: Option<RawPagerDuty>,
    pub(crate) cloudwatch: Option<RawCloudWatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPagerDuty {
    /// A file holding the Events API v2 integration (routing) key.
    pub(crate) routing_key_file: String,
    pub(crate) url: Option<String>,
    /// Least severity that pages: "info", "warning", "error" or "critical".
    pub(crate) min_severity: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCloudWatch {
    pub(crate) enabled: Option<bool>,
    pub(crate) namespace: Option<String>,
    pub(crate) interval: Option<Dur>,
    pub(crate) region: Option<String>,
}

/// `[coordination]`: several Spillways per site and across sites, on DynamoDB.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCoordination {
    pub(crate) enabled: Option<bool>,
    /// The DynamoDB table (`pk`/`sk` strings, TTL on `expires_at`).
    pub(crate) table: String,
    /// Region of the table; absent: `[scale] region`, else us-east-1.
    pub(crate) region: Option<String>,
    /// This instance's name in the table; absent: the host name.
    pub(crate) instance_id: Option<String>,
    pub(crate) heartbeat_interval: Option<Dur>,
    pub(crate) lease_duration: Option<Dur>,
    pub(crate) takeover_after: Option<Dur>,
    pub(crate) handback_after: Option<Dur>,
    /// Refuse writes while the site's lease cannot be read (default true).
    pub(crate) refuse_writes_when_stale: Option<bool>,
    /// The sites this instance may take over, with what it writes for each.
    #[serde(default)]
    pub(crate) cover: Vec<RawCover>,
}

/// `[[coordination.cover]]`: another site's Auto Scaling group and Route 53 pair.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCover {
    pub(crate) site: String,
    pub(crate) auto_scaling_group: String,
    pub(crate) dr_capacity: u32,
    pub(crate) hosted_zone_id: String,
    pub(crate) record: String,
    #[serde(rename = "type")]
    pub(crate) record_type: Option<String>,
    pub(crate) ttl: Option<u32>,
    pub(crate) onprem: RawDnsTarget,
    pub(crate) aws: RawDnsTarget,
}

pub(crate) const DEFAULT_DR_ENGAGE: &str = "auto";
pub(crate) const DEFAULT_DR_FAILBACK_AFTER: &str = "5m";
pub(crate) const DEFAULT_DR_RETRY_AFTER: &str = "30s";
pub(crate) const DEFAULT_DR_READ_ONLY_BODY: &str =
    "This site is read-only while disaster recovery is confirmed. Please retry in a few minutes.\n";
pub(crate) const DEFAULT_PRIMARY_ROLE: &str = "primary";
pub(crate) const DEFAULT_DRILL_TIMEOUT: &str = "1h";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDr {
    /// `auto` or `confirm`.
    pub(crate) engage: Option<String>,
    pub(crate) failback_after: Option<Dur>,
    /// `Retry-After` of a write refused in `dr_pending`.
    pub(crate) retry_after: Option<Dur>,
    pub(crate) read_only_body: Option<String>,
    /// Replica lag of the cloud pools above which the recovery point is at risk.
    pub(crate) rpo_budget: Option<Dur>,
    /// Longest a drill waits for `scale.dr_capacity` to be in service.
    pub(crate) drill_timeout: Option<Dur>,
    /// A record name in `[dns]`'s zone a drill writes and times until INSYNC.
    pub(crate) drill_record: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccessLog {
    /// `true` when the section is present.
    pub(crate) enabled: Option<bool>,
    /// `json` (default) or `combined`.
    pub(crate) format: Option<String>,
    /// `stdout` (default), `file` or `syslog`.
    pub(crate) sink: Option<String>,
    /// The file of `sink = "file"`.
    pub(crate) path: Option<String>,
    pub(crate) syslog: Option<RawSyslog>,
    /// Lines queued ahead of the writer; more are dropped and counted.
    pub(crate) queue: Option<usize>,
    /// The share of requests logged (0..=1); errors are always logged.
    pub(crate) sample: Option<f64>,
    /// Whether the logged path keeps its query string.
    pub(crate) include_query: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSyslog {
    /// `host:port` of the TLS syslog receiver (Papertrail: `logsN.papertrailapp.com:PORT`).
    pub(crate) address: String,
    /// PEM CA certificates trusted besides the public roots.
    pub(crate) ca_file: Option<String>,
    /// RFC 5424 APP-NAME.
    pub(crate) app_name: Option<String>,
}
