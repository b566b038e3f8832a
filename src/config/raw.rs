//! The configuration file as written: plain serde structs that mirror the TOML.
//!
//! Every struct denies unknown fields, so a typo is an error rather than a
//! silently ignored key. Defaults live here as named constants; nothing in this
//! file checks meaning (that is `validate.rs`'s job), so every field a user may
//! omit is an `Option` or carries a `serde(default)`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::duration::Dur;

pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_HEADER_READ_TIMEOUT: &str = "10s";
pub const DEFAULT_REQUEST_BODY_TIMEOUT: &str = "120s";
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: &str = "60s";
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
pub const DEFAULT_MAX_HEADERS: usize = 100;
pub const DEFAULT_CONNECT_TIMEOUT: &str = "500ms";
pub const DEFAULT_RESPONSE_TIMEOUT: &str = "30s";
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: &str = "60s";
pub const DEFAULT_MAX_IDLE_PER_ENDPOINT: usize = 64;
pub const DEFAULT_EJECT_AFTER: u32 = 5;
pub const DEFAULT_EJECT_BASE: &str = "5s";
pub const DEFAULT_EJECT_MAX: &str = "60s";
pub const DEFAULT_DRAIN_TIMEOUT: &str = "30s";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub runtime: RawRuntime,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub pools: BTreeMap<String, RawPool>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub spill: RawSpill,
    pub scale: Option<RawScale>,
    pub dns: Option<RawDns>,
    #[serde(default)]
    pub notify: RawNotify,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    /// 0 or absent: one worker per core.
    pub worker_threads: Option<usize>,
    pub drain_timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    pub listen: String,
    pub tls: Option<RawServerTls>,
    pub max_connections: Option<usize>,
    pub header_read_timeout: Option<Dur>,
    pub request_body_timeout: Option<Dur>,
    pub idle_timeout: Option<Dur>,
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub role: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<String>,
    pub tls: Option<RawUpstreamTls>,
    pub health: Option<RawHealth>,
    pub connect_timeout: Option<Dur>,
    pub response_timeout: Option<Dur>,
    pub idle_timeout: Option<Dur>,
    pub max_idle_per_endpoint: Option<usize>,
    pub eject_after: Option<u32>,
    pub eject_base: Option<Dur>,
    pub eject_max: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    pub sni: Option<String>,
    pub verify: Option<bool>,
    /// Extra PEM roots (a private CA); the public web roots are always trusted.
    pub ca: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub path: String,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    pub unhealthy_after: Option<u32>,
    pub healthy_after: Option<u32>,
    /// Response header of the probe carrying the replica lag in seconds.
    pub lag_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<String>,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub primary: String,
    pub overflow: Option<String>,
    pub spill_methods: Option<Vec<String>>,
    #[serde(default)]
    pub never_spill: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpill {
    pub mode: Option<String>,
    pub max_in_flight: Option<u32>,
    pub min_limit: Option<u32>,
    pub latency_slo: Option<Dur>,
    pub enter_after: Option<Dur>,
    pub exit_after: Option<Dur>,
    pub pin_after_write: Option<Dur>,
    pub pin_capacity: Option<usize>,
    pub session_cookie: Option<String>,
    pub shed_when_cloud_unavailable: Option<bool>,
    pub cap_by_warm_capacity: Option<bool>,
    pub queue_timeout: Option<Dur>,
    pub max_queue: Option<u32>,
    pub max_replica_lag: Option<Dur>,
    pub tick: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScale {
    pub enabled: Option<bool>,
    pub dry_run: Option<bool>,
    pub region: Option<String>,
    pub auto_scaling_group: String,
    pub per_instance_rps: u32,
    pub warmup: Option<Dur>,
    pub headroom: Option<f64>,
    pub min: u32,
    pub max: u32,
    pub dr_capacity: Option<u32>,
    pub scale_in_cooldown: Option<Dur>,
    pub onprem_capacity_rps: Option<u32>,
    /// How often the controller decides (it samples signals at least once a second).
    pub interval: Option<Dur>,
    /// Holt smoothing factors for the level and the trend, in (0, 1].
    pub forecast_alpha: Option<f64>,
    pub forecast_beta: Option<f64>,
    /// At most this many instances removed per scale-in action.
    pub scale_in_step: Option<u32>,
    /// Time between two scale-in steps once the cooldown has passed.
    pub scale_in_interval: Option<Dur>,
    #[serde(default, rename = "event")]
    pub events: Vec<RawEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvent {
    pub name: String,
    pub start: String,
    pub end: String,
    pub expected_rps: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub enabled: Option<bool>,
    pub dry_run: Option<bool>,
    pub hosted_zone_id: String,
    pub record: String,
    #[serde(rename = "type")]
    pub record_type: Option<String>,
    pub ttl: Option<u32>,
    pub onprem: RawDnsTarget,
    pub aws: RawDnsTarget,
    pub shift_after: Option<Dur>,
    pub min_change_interval: Option<Dur>,
    pub max_step: Option<u8>,
    /// How often the controller looks at the signals and decides.
    pub interval: Option<Dur>,
    /// Smallest weight move worth a change (moves to 0 or full always count).
    pub hysteresis: Option<u8>,
    /// How long to poll `GetChange` for INSYNC before reporting a timeout.
    pub insync_timeout: Option<Dur>,
    /// What to do when the records were edited by someone else: "respect" or "correct".
    pub on_external_edit: Option<String>,
    /// Operator-set target weights (planned migration); moved to in bounded steps.
    pub target_weights: Option<RawTargetWeights>,
    /// How often the records are read back to notice edits made elsewhere.
    pub verify_interval: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsTarget {
    pub set_identifier: String,
    /// A plain record value (CNAME target or IP address).
    pub value: Option<String>,
    /// Or an alias to an AWS resource such as an ELB.
    pub alias: Option<RawAlias>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlias {
    pub dns_name: String,
    pub hosted_zone_id: String,
    pub evaluate_health: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargetWeights {
    pub onprem: u32,
    pub aws: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    pub sns_topic_arn: Option<String>,
    pub webhook: Option<String>,
}
