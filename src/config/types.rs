//! The validated configuration: every value checked, every default applied,
//! every cross-reference resolved. Code outside `config/` only sees these types.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

pub use crate::tls::{ServerTls, UpstreamTls};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub runtime: RuntimeSettings,
    pub admin: AdminSettings,
    pub listeners: Vec<ListenerConfig>,
    pub pools: BTreeMap<String, PoolConfig>,
    pub routes: Vec<RouteConfig>,
    pub spill: SpillConfig,
    pub scale: Option<ScaleConfig>,
    pub dns: Option<DnsConfig>,
    pub notify: NotifyConfig,
    /// `[spill.pin_token]`: the signed pin cookie (`burst::pin_token`).
    /// Not part of `SpillConfig`, whose changes retune the gates: a key
    /// rotation must not reset a learnt limit.
    pub pin_token: Option<PinTokenConfig>,
    pub coordination: Option<CoordinationConfig>,
    pub dr: DrConfig,
    /// `None`: no `[access_log]` section.
    pub access_log: Option<AccessLogConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeSettings {
    /// `None`: one worker per core.
    pub worker_threads: Option<usize>,
    pub drain_timeout: Duration,
    /// From SIGTERM until the drain starts: readiness answers 503 while
    /// the listeners still accept and serve.
    pub drain_delay: Duration,
    /// This datacenter's name: `[A-Za-z0-9_-]{1,32}`, `"local"` by default.
    pub site: String,
    /// The Unix socket this process hands its listeners and state over on
    /// to a successor (`spillway upgrade`, SIGUSR2); `None`: no upgrades.
    pub upgrade_socket: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// The bearer token, never empty (validation refuses a blank file).
    pub token: Option<String>,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// `POST /reload`s allowed at once; one more is earned every `reload_interval`.
    pub reload_burst: u32,
    pub reload_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub tls: Option<ServerTls>,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// Longest a client may take to send a request body, once its headers
    /// are in (slow-upload guard for the workers behind).
    pub request_body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// Peers whose `X-Forwarded-For`, `Forwarded` and `X-Real-IP` are kept
    /// (ours appended); from any other peer they are replaced or dropped.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Longest the client may go without taking a byte of a response it is
    /// being sent (or of a tunnel) before it is aborted.
    pub client_send_timeout: Duration,
    /// A connection older than this is closed gracefully (`None`: no limit).
    pub max_connection_age: Option<Duration>,
    pub max_concurrent_streams: u32,
    /// HTTP/2 streams a connection may cancel (reset, or close unfinished)
    /// before it gets GOAWAY `ENHANCE_YOUR_CALM`; refills at a tenth per second.
    pub max_cancelled_streams: u32,
    /// Upgraded (WebSocket) tunnels open at once on this listener.
    pub max_tunnels: usize,
    pub tunnel_idle_timeout: Duration,
    /// The path answered with this edge's readiness, before routing and for
    /// any Host (`None`: disabled). Shared, so a connection takes no copy.
    pub readiness_path: Option<std::sync::Arc<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolRole {
    Primary,
    Cloud,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub role: PoolRole,
    /// `host:port` as written; resolved by the connector at connect time.
    pub endpoints: Vec<String>,
    pub tls: Option<UpstreamTls>,
    pub health: Option<HealthConfig>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle_per_endpoint: usize,
    pub eject_after: u32,
    pub eject_base: Duration,
    pub eject_max: Duration,
    /// Response statuses that count against the endpoint (passive health).
    pub passive_fault_statuses: Vec<u16>,
    /// Passive ejection never takes out more than this share of the pool.
    pub max_ejection_percent: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
    pub lag_header: Option<String>,
    /// Header naming the database's role, and the value meaning primary.
    pub role_header: Option<String>,
    pub primary_role: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    /// Lower-cased host without port; `None` matches any host.
    pub host: Option<String>,
    pub path_prefix: String,
    pub primary: String,
    pub overflow: Option<String>,
    pub spill_methods: Vec<http::Method>,
    pub never_spill: Vec<String>,
    /// Who waits and who is shed first when capacity runs out (`burst::shed`).
    pub priority: crate::burst::Priority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpillMode {
    /// Spill only over `max_in_flight` or when p99 exceeds the SLO.
    Static,
    /// A gradient concurrency limit, capped by `max_in_flight`.
    Adaptive,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpillConfig {
    pub mode: SpillMode,
    pub max_in_flight: u32,
    pub min_limit: u32,
    pub latency_slo: Duration,
    pub enter_after: Duration,
    pub exit_after: Duration,
    pub pin_after_write: Duration,
    pub pin_capacity: usize,
    pub session_cookie: Option<String>,
    pub shed_when_cloud_unavailable: bool,
    /// Spill no more than the cloud's in-service instances can take (needs `[scale]`).
    pub cap_by_warm_capacity: bool,
    pub queue_timeout: Duration,
    pub max_queue: u32,
    /// Cloud pools get an adaptive limit too (bounds below): spill only within it.
    pub cloud_limit: bool,
    pub cloud_min_limit: u32,
    pub cloud_max_in_flight: u32,
    pub max_replica_lag: Duration,
    pub tick: Duration,
    /// `never_spill` prefixes compare without ASCII case.
    pub never_spill_ignore_case: bool,
    /// Session pins one client address may make per `pin_after_write`.
    pub pins_per_address: u32,
    /// How long the active probes must agree that no primary endpoint is
    /// reachable before the pool is in disaster recovery.
    pub disaster_after: Duration,
}

/// `[spill.pin_token]`: every successful write sets a signed cookie that
/// pins the client's reads on-prem at any instance holding the key.
#[derive(Debug, Clone, PartialEq)]
pub struct PinTokenConfig {
    pub cookie_name: String,
    /// `key_file` signs and verifies, `previous_key_file` verifies (both read at load).
    pub keys: crate::burst::PinKeys,
    /// Pin for the cloud's observed replica lag plus `lag_margin` (capped
    /// by `pin_after_write`) instead of the whole `pin_after_write`.
    pub lag_aware: bool,
    pub lag_margin: Duration,
    /// Header telling the origin until when (Unix ms) the client is pinned.
    pub forward_header: Option<http::HeaderName>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScaleConfig {
    pub enabled: bool,
    pub dry_run: bool,
    pub region: String,
    pub auto_scaling_group: String,
    pub per_instance_rps: u32,
    pub warmup: Duration,
    pub headroom: f64,
    pub min: u32,
    pub max: u32,
    pub dr_capacity: u32,
    pub scale_in_cooldown: Duration,
    pub onprem_capacity_rps: Option<u32>,
    pub events: Vec<ScheduledEvent>,
    pub interval: Duration,
    pub forecast_alpha: f64,
    pub forecast_beta: f64,
    pub scale_in_step: u32,
    pub scale_in_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledEvent {
    pub name: String,
    pub start: std::time::SystemTime,
    pub end: std::time::SystemTime,
    pub expected_rps: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    pub enabled: bool,
    pub dry_run: bool,
    pub hosted_zone_id: String,
    pub record: String,
    pub record_type: String,
    pub ttl: u32,
    pub onprem: DnsTarget,
    pub aws: DnsTarget,
    pub shift_after: Duration,
    pub min_change_interval: Duration,
    pub max_step: u8,
    pub interval: Duration,
    pub hysteresis: u8,
    pub insync_timeout: Duration,
    pub on_external_edit: ExternalEdit,
    pub target_weights: Option<TargetWeights>,
    pub verify_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsTarget {
    pub set_identifier: String,
    /// The plain record value; for an alias, the alias's DNS name.
    pub value: String,
    pub alias: Option<AliasTarget>,
    /// The Route 53 health check every UPSERT attaches (a UUID); `None`:
    /// the one the record carries in Route 53 is kept.
    pub health_check_id: Option<String>,
}

/// An alias record's target (e.g. an ELB: its DNS name and its hosted zone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasTarget {
    pub dns_name: String,
    pub hosted_zone_id: String,
    pub evaluate_health: bool,
}

/// What the DNS controller does when someone else changed its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalEdit {
    /// Keep the edited weights, report them, and stop shifting until reload (DR still acts).
    Respect,
    /// Report the edit and write the controller's weights back.
    Correct,
}

/// Operator-set weights (0–255 each) for a planned migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetWeights {
    pub onprem: u8,
    pub aws: u8,
}

/// `[dr]`: how writes move between the sites (`burst::dr`).
#[derive(Debug, Clone, PartialEq)]
pub struct DrConfig {
    pub policy: crate::burst::DrPolicy,
    pub retry_after: Duration,
    pub read_only_body: std::sync::Arc<str>,
    /// `None`: the RPO guard is off.
    pub rpo_budget: Option<Duration>,
    pub drill_timeout: Duration,
    pub drill_record: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    pub sns_topic_arn: Option<SnsTopic>,
    pub webhook: Option<String>,
    /// A bad state must stay over this long before its resolve is sent.
    pub resolve_after: Duration,
    /// Per sink: notifications at once, and one more earned every `refill_every`.
    pub burst: u32,
    pub refill_every: Duration,
    pub controller_failing_after: u32,
    pub pagerduty: Option<PagerDutyConfig>,
    pub cloudwatch: Option<CloudWatchConfig>,
}

impl Default for NotifyConfig {
    /// What an absent `[notify]` means (the defaults of `raw.rs`).
    fn default() -> Self {
        use super::raw::{DEFAULT_CONTROLLER_FAILING_AFTER, DEFAULT_NOTIFY_BURST};
        let dur = |text| super::duration::parse(text).expect("default duration parses");
        NotifyConfig {
            sns_topic_arn: None,
            webhook: None,
            resolve_after: dur(super::raw::DEFAULT_RESOLVE_AFTER),
            burst: DEFAULT_NOTIFY_BURST,
            refill_every: dur(super::raw::DEFAULT_NOTIFY_REFILL_EVERY),
            controller_failing_after: DEFAULT_CONTROLLER_FAILING_AFTER,
            pagerduty: None,
            cloudwatch: None,
        }
    }
}

/// An SNS topic ARN, checked: `arn:PARTITION:sns:REGION:ACCOUNT:NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsTopic {
    pub arn: String,
    /// The region the ARN names (the client is built for it).
    pub region: String,
}

/// PagerDuty's severities, least first (the order `min_severity` compares).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Error, Severity::Critical]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A secret read from a file: shown as `[redacted]` by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PagerDutyConfig {
    pub routing_key: Secret,
    pub url: String,
    pub min_severity: Severity,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CloudWatchConfig {
    pub enabled: bool,
    pub namespace: String,
    pub interval: Duration,
    pub region: String,
}

/// `[coordination]`: one lease per site on DynamoDB, heartbeats, takeover.
#[derive(Debug, Clone, PartialEq)]
pub struct CoordinationConfig {
    pub enabled: bool,
    pub table: String,
    pub region: String,
    /// `None`: the host name, resolved when the loop starts.
    pub instance_id: Option<String>,
    /// This instance's site (`runtime.site`).
    pub site: String,
    pub heartbeat_interval: Duration,
    pub lease_duration: Duration,
    pub takeover_after: Duration,
    pub handback_after: Duration,
    /// A non-holder without a recent read of the site's lease refuses
    /// writes (`burst::WriteHold::NoLeaseRead`); `false`: it keeps writing
    /// where its last state sends them.
    pub refuse_writes_when_stale: bool,
    pub cover: Vec<CoverConfig>,
}

/// A site this instance may take over when it is lost.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverConfig {
    pub site: String,
    pub auto_scaling_group: String,
    pub dr_capacity: u32,
    /// The site's weighted pair (only the record keys are set; the rest are defaults).
    pub dns: DnsConfig,
}

impl Config {
    /// The cloud pool a route spills to, if it has one.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.get(name)
    }
}

/// `[access_log]`: one line per request, written off the data plane.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogConfig {
    pub enabled: bool,
    pub format: LogFormat,
    pub sink: LogSink,
    /// Capacity of the queue between the data plane and the writer (read at start).
    pub queue: usize,
    /// The share of requests logged, 0..=1; 5xx answers are always logged.
    pub sample: f64,
    pub include_query: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    /// The Apache/nginx combined format, Spillway's fields appended as `key=value`.
    Combined,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LogSink {
    Stdout,
    File(std::path::PathBuf),
    Syslog(SyslogConfig),
}

/// RFC 5424 over TLS with octet counting (RFC 6587), as Papertrail takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogConfig {
    /// `host:port` as written (the host is the TLS server name).
    pub address: String,
    pub host: String,
    pub port: u16,
    pub ca_pem: Option<Vec<u8>>,
    pub app_name: String,
}
