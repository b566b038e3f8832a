//! `RawConfig` → `Config`: applies defaults, checks meaning and cross
//! references, and reports every problem at once (not only the first).
//!
//! Each problem names its key as a dotted path (`pools.onprem.endpoints[1]`);
//! `lines.rs` turns that path into a line of the source file.

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use super::duration::{self, Dur};
use super::raw::*;
use super::types::*;
use super::validate_access_log as access_log;
use super::validate_control as control;
use super::validate_coord as coord;
use super::validate_notify as notify;
use super::validate_pin as pin;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Problem {
    pub key: String,
    pub message: String,
}

/// Collects problems while the config is being checked.
pub(super) struct Checker<'a> {
    base_dir: &'a Path,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    /// How many problems have been found so far.
    pub(super) fn count(&self) -> usize {
        self.problems.len()
    }

    pub(super) fn fail(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { key: key.into(), message: message.into() });
    }

    pub(super) fn dur(&mut self, key: &str, value: Option<Dur>, default: &str, allow_zero: bool) -> Duration {
        let d = value.map(|d| d.0).unwrap_or_else(|| duration::parse(default).expect("default duration parses"));
        if d.is_zero() && !allow_zero {
            self.fail(key, "must be greater than zero");
        }
        d
    }

    /// Runs `check`; the problems it reports under `from.` are renamed to `to.`
    /// (a section validated with another section's rules).
    pub(super) fn rekeyed<T>(&mut self, from: &str, to: &str, check: impl FnOnce(&mut Self) -> T) -> T {
        let start = self.problems.len();
        let out = check(self);
        for p in &mut self.problems[start..] {
            if let Some(rest) = p.key.strip_prefix(from) {
                p.key = format!("{to}{rest}");
            }
        }
        out
    }

    /// A path of the config, relative ones against the config's directory.
    pub(super) fn resolve(&self, path: &str) -> std::path::PathBuf {
        self.base_dir.join(path)
    }

    /// Reads a key, token or certificate file: a regular file of at most
    /// `MAX_CONFIG_FILE` bytes. A FIFO would block the reload (and every
    /// request behind it) until someone writes to it, and `/dev/zero` would
    /// never end: both are refused before they are opened.
    pub(super) fn read_file(&mut self, key: &str, path: &str) -> (std::path::PathBuf, Vec<u8>) {
        use std::io::Read;
        let full = self.base_dir.join(path);
        let read = std::fs::metadata(&full).and_then(|m| {
            if !m.is_file() {
                return Err(std::io::Error::other("not a regular file"));
            }
            if m.len() > MAX_CONFIG_FILE {
                return Err(std::io::Error::other(format!("larger than {MAX_CONFIG_FILE} bytes")));
            }
            let mut bytes = Vec::new();
            std::fs::File::open(&full)?.take(MAX_CONFIG_FILE + 1).read_to_end(&mut bytes)?;
            match bytes.len() as u64 > MAX_CONFIG_FILE {
                true => Err(std::io::Error::other(format!("larger than {MAX_CONFIG_FILE} bytes"))),
                false => Ok(bytes),
            }
        });
        match read {
            Ok(bytes) => (full, bytes),
            Err(e) => {
                self.fail(key, format!("cannot read {}: {e}", full.display()));
                (full, Vec::new())
            }
        }
    }

    fn socket_addr(&mut self, key: &str, text: &str) -> SocketAddr {
        match text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.fail(key, format!("invalid address {text:?}: expected ip:port, e.g. \"0.0.0.0:8080\""));
                SocketAddr::from(([0, 0, 0, 0], 0))
            }
        }
    }
}

/// The largest key, token or certificate file a config may name.
const MAX_CONFIG_FILE: u64 = 1 << 20;

/// Validates a parsed file. Relative file paths resolve against `base_dir`.
pub(super) fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, Vec<Problem>> {
    let mut c = Checker { base_dir, problems: Vec::new() };
    let runtime = runtime(&mut c, raw.runtime);
    let admin = admin(&mut c, raw.admin);
    let listeners = listeners(&mut c, raw.listeners, admin.listen);
    let pools = pools(&mut c, raw.pools);
    let routes = routes(&mut c, raw.routes, &pools);
    let mut raw_spill = raw.spill;
    let raw_pin = raw_spill.pin_token.take();
    let spill = spill(&mut c, raw_spill);
    let pin_token = raw_pin.and_then(|t| pin::pin_token(&mut c, t, spill.session_cookie.as_deref()));
    let scale = raw.scale.map(|s| control::scale(&mut c, s));
    let dns = raw.dns.map(|d| control::dns(&mut c, d));
    let notify = notify::notify(&mut c, raw.notify);
    let coordination = raw.coordination.map(|k| coord::coordination(&mut c, k, &runtime.site, scale.as_ref()));
    let dr = super::validate_dr::dr(&mut c, raw.dr);
    if dr.drill_record.is_some() && dns.is_none() {
        c.fail("dr.drill_record", "needs a [dns] section (the drill record goes into its hosted zone)");
    }
    let access_log = raw.access_log.map(|a| access_log::access_log(&mut c, a));
    if c.problems.is_empty() {
        Ok(Config {
            runtime,
            admin,
            listeners,
            pools,
            routes,
            spill,
            scale,
            dns,
            notify,
            pin_token,
            coordination,
            dr,
            access_log,
        })
    } else {
        Err(c.problems)
    }
}

fn runtime(c: &mut Checker, raw: RawRuntime) -> RuntimeSettings {
    RuntimeSettings {
        worker_threads: raw.worker_threads.filter(|n| *n > 0),
        drain_timeout: c.dur("runtime.drain_timeout", raw.drain_timeout, DEFAULT_DRAIN_TIMEOUT, true),
        drain_delay: super::validate_listener::drain_delay(c, raw.drain_delay),
        site: site_name(c, raw.site),
        upgrade_socket: raw.upgrade_socket.map(|p| upgrade_socket(c, &p)),
    }
}

/// Longest Unix socket path the kernel takes (`sun_path` is 108 bytes, NUL included).
const MAX_SOCKET_PATH: usize = 107;

/// The upgrade socket's path, resolved against the config's directory.
fn upgrade_socket(c: &mut Checker, raw: &str) -> std::path::PathBuf {
    let path = c.resolve(raw);
    if raw.is_empty() {
        c.fail("runtime.upgrade_socket", "must not be empty (leave the key out to disable upgrades)");
    } else if path.as_os_str().len() > MAX_SOCKET_PATH {
        c.fail("runtime.upgrade_socket", format!("{} is longer than {MAX_SOCKET_PATH} bytes", path.display()));
    }
    path
}

/// The site's name goes into DynamoDB keys, CloudWatch dimensions and
/// notification fields, so it is kept to a small, quoting-free alphabet.
pub(super) fn site_name(c: &mut Checker, raw: Option<String>) -> String {
    let site = raw.unwrap_or_else(|| DEFAULT_SITE.to_string());
    let valid =
        (1..=32).contains(&site.len()) && site.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        c.fail("runtime.site", format!("{site:?} is not 1 to 32 letters, digits, '-' or '_'"));
    }
    site
}

fn admin(c: &mut Checker, raw: RawAdmin) -> AdminSettings {
    let text = raw.listen.unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_string());
    let listen = c.socket_addr("admin.listen", &text);
    let token = raw.token_file.map(|path| admin_token(c, &path));
    if !listen.ip().is_loopback() && token.as_deref().is_none_or(str::is_empty) {
        c.fail("admin.listen", "admin listens beyond loopback: set admin.token_file");
    }
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_ADMIN_MAX_CONNECTIONS);
    let reload_burst = raw.reload_burst.unwrap_or(DEFAULT_ADMIN_RELOAD_BURST);
    AdminSettings {
        listen,
        token,
        max_connections: positive(c, "admin.max_connections", max_connections),
        header_read_timeout: c.dur(
            "admin.header_read_timeout",
            raw.header_read_timeout,
            DEFAULT_HEADER_READ_TIMEOUT,
            false,
        ),
        idle_timeout: c.dur("admin.idle_timeout", raw.idle_timeout, DEFAULT_CLIENT_IDLE_TIMEOUT, false),
        reload_burst: positive(c, "admin.reload_burst", reload_burst as usize) as u32,
        reload_interval: c.dur("admin.reload_interval", raw.reload_interval, DEFAULT_ADMIN_RELOAD_INTERVAL, false),
    }
}

/// The token file's text, trimmed; a file with nothing but whitespace is
/// refused (it would make the empty string the admin token).
fn admin_token(c: &mut Checker, path: &str) -> String {
    let before = c.problems.len();
    let (full, bytes) = c.read_file("admin.token_file", path);
    let token = String::from_utf8_lossy(&bytes).trim().to_string();
    if token.is_empty() && c.problems.len() == before {
        let what = if bytes.is_empty() { "is empty" } else { "holds only whitespace" };
        c.fail(
            "admin.token_file",
            format!("{} {what}: an empty admin token is refused; write the token into it", full.display()),
        );
    }
    token
}

fn listeners(c: &mut Checker, raw: Vec<RawListener>, admin: SocketAddr) -> Vec<ListenerConfig> {
    if raw.is_empty() {
        c.fail("listener", "at least one [[listener]] is required");
    }
    let mut seen_addr = HashSet::new();
    let mut seen_name = HashSet::new();
    let mut out = Vec::new();
    for (i, l) in raw.into_iter().enumerate() {
        let key = format!("listener[{i}]");
        let listen = c.socket_addr(&format!("{key}.listen"), &l.listen);
        if listen.port() != 0 && !seen_addr.insert(listen) {
            c.fail(format!("{key}.listen"), format!("duplicate listener address {listen}"));
        }
        if listen.port() != 0 && listen == admin {
            c.fail(format!("{key}.listen"), format!("{listen} is also the admin address"));
        }
        if !seen_name.insert(l.name.clone()) {
            c.fail(format!("{key}.name"), format!("duplicate listener name {:?}", l.name));
        }
        out.push(listener(c, &key, listen, l));
    }
    out
}

/// The largest `max_connections` / `max_tunnels`: far above what one host
/// holds, and small enough for the semaphores behind them.
const MAX_LISTENER_CAP: usize = 10_000_000;

fn listener(c: &mut Checker, key: &str, listen: SocketAddr, l: RawListener) -> ListenerConfig {
    let tls = l.tls.map(|t| listener_tls(c, key, t));
    let max_header_bytes = l.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
    if max_header_bytes < 8192 {
        c.fail(format!("{key}.max_header_bytes"), "must be at least 8192");
    }
    let max_headers = positive(c, &format!("{key}.max_headers"), l.max_headers.unwrap_or(DEFAULT_MAX_HEADERS));
    let max_connections =
        positive(c, &format!("{key}.max_connections"), l.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS));
    let dur = |c: &mut Checker, name: &str, v, default| c.dur(&format!("{key}.{name}"), v, default, false);
    let trusted_proxies = l
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(j, text)| match parse_net(text) {
            Some(net) => Some(net),
            None => {
                c.fail(format!("{key}.trusted_proxies[{j}]"), format!("{text:?} is not an address or CIDR block"));
                None
            }
        })
        .collect();
    let max_concurrent_streams = positive(
        c,
        &format!("{key}.max_concurrent_streams"),
        l.max_concurrent_streams.unwrap_or(DEFAULT_MAX_CONCURRENT_STREAMS),
    );
    let max_cancelled_streams = positive(
        c,
        &format!("{key}.max_cancelled_streams"),
        l.max_cancelled_streams.unwrap_or(DEFAULT_MAX_CANCELLED_STREAMS),
    );
    let max_tunnels = l.max_tunnels.unwrap_or(max_connections);
    for (name, n) in [("max_connections", max_connections), ("max_tunnels", max_tunnels)] {
        if n > MAX_LISTENER_CAP {
            c.fail(format!("{key}.{name}"), format!("must be at most {MAX_LISTENER_CAP}"));
        }
    }
    let max_connection_age =
        l.max_connection_age.map(|v| c.dur(&format!("{key}.max_connection_age"), Some(v), "0s", false));
    ListenerConfig {
        readiness_path: super::validate_listener::readiness_path(c, key, l.readiness_path),
        trusted_proxies,
        client_send_timeout: dur(c, "client_send_timeout", l.client_send_timeout, DEFAULT_CLIENT_SEND_TIMEOUT),
        max_connection_age,
        max_concurrent_streams,
        max_cancelled_streams,
        max_tunnels,
        tunnel_idle_timeout: dur(c, "tunnel_idle_timeout", l.tunnel_idle_timeout, DEFAULT_TUNNEL_IDLE_TIMEOUT),
        header_read_timeout: dur(c, "header_read_timeout", l.header_read_timeout, DEFAULT_HEADER_READ_TIMEOUT),
        request_body_timeout: dur(c, "request_body_timeout", l.request_body_timeout, DEFAULT_REQUEST_BODY_TIMEOUT),
        idle_timeout: dur(c, "idle_timeout", l.idle_timeout, DEFAULT_CLIENT_IDLE_TIMEOUT),
        name: l.name,
        listen,
        tls,
        max_connections,
        max_header_bytes,
        max_headers,
    }
}

/// An address (`10.0.0.1`) or a CIDR block (`10.0.0.0/8`, `2001:db8::/32`).
fn parse_net(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// Reads the certificate and key now, so a reload that points at an
/// unreadable or malformed pair is refused up front.
fn listener_tls(c: &mut Checker, key: &str, t: RawServerTls) -> ServerTls {
    let (cert_path, cert_pem) = c.read_file(&format!("{key}.tls.cert"), &t.cert);
    let (key_path, key_pem) = c.read_file(&format!("{key}.tls.key"), &t.key);
    let tls = ServerTls { cert_path, key_path, cert_pem, key_pem };
    if !tls.cert_pem.is_empty() && !tls.key_pem.is_empty() {
        if let Err(e) = crate::tls::server_config(&tls) {
            c.fail(format!("{key}.tls"), e.to_string());
        }
    }
    tls
}

/// A count that must be greater than zero.
fn positive<N: Copy + Default + PartialEq>(c: &mut Checker, key: &str, n: N) -> N {
    if n == N::default() {
        c.fail(key, "must be greater than zero");
    }
    n
}

fn pools(c: &mut Checker, raw: BTreeMap<String, RawPool>) -> BTreeMap<String, PoolConfig> {
    raw.into_iter()
        .map(|(name, p)| {
            let pool = pool(c, &format!("pools.{name}"), &name, p);
            (name, pool)
        })
        .collect()
}

fn pool(c: &mut Checker, key: &str, name: &str, p: RawPool) -> PoolConfig {
    let role = match p.role.as_deref() {
        None | Some("primary") | Some("onprem") => PoolRole::Primary,
        Some("cloud") => PoolRole::Cloud,
        Some(other) => {
            c.fail(format!("{key}.role"), format!("unknown role {other:?}: expected \"primary\" or \"cloud\""));
            PoolRole::Primary
        }
    };
    pool_endpoints(c, key, &p.endpoints);
    let tls = p.tls.map(|t| upstream_tls(c, key, t));
    let health = p.health.map(|h| health(c, &format!("{key}.health"), h));
    let eject_after = p.eject_after.unwrap_or(DEFAULT_EJECT_AFTER);
    if eject_after == 0 {
        c.fail(format!("{key}.eject_after"), "must be greater than zero");
    }
    let dur = |c: &mut Checker, field: &str, v, default| c.dur(&format!("{key}.{field}"), v, default, false);
    let eject_base = dur(c, "eject_base", p.eject_base, DEFAULT_EJECT_BASE);
    let eject_max = dur(c, "eject_max", p.eject_max, DEFAULT_EJECT_MAX);
    if eject_max < eject_base {
        c.fail(format!("{key}.eject_max"), "must not be shorter than eject_base");
    }
    let passive_fault_statuses = fault_statuses(c, key, p.passive_fault_statuses);
    let max_ejection_percent = p.max_ejection_percent.unwrap_or(DEFAULT_MAX_EJECTION_PERCENT);
    if max_ejection_percent > 100 {
        c.fail(format!("{key}.max_ejection_percent"), "must be between 0 and 100");
    }
    PoolConfig {
        name: name.to_string(),
        role,
        endpoints: p.endpoints,
        tls,
        health,
        connect_timeout: dur(c, "connect_timeout", p.connect_timeout, DEFAULT_CONNECT_TIMEOUT),
        response_timeout: dur(c, "response_timeout", p.response_timeout, DEFAULT_RESPONSE_TIMEOUT),
        idle_timeout: dur(c, "idle_timeout", p.idle_timeout, DEFAULT_UPSTREAM_IDLE_TIMEOUT),
        max_idle_per_endpoint: p.max_idle_per_endpoint.unwrap_or(DEFAULT_MAX_IDLE_PER_ENDPOINT),
        eject_after,
        eject_base,
        eject_max,
        passive_fault_statuses,
        max_ejection_percent: max_ejection_percent.min(100) as u8,
    }
}

/// The statuses passive health counts against an endpoint: 4xx or 5xx,
/// each once.
fn fault_statuses(c: &mut Checker, key: &str, raw: Option<Vec<u16>>) -> Vec<u16> {
    let statuses = raw.unwrap_or_else(|| DEFAULT_PASSIVE_FAULT_STATUSES.to_vec());
    let mut seen = HashSet::new();
    for (i, s) in statuses.iter().enumerate() {
        let field = format!("{key}.passive_fault_statuses[{i}]");
        if !(400..=599).contains(s) {
            c.fail(field, format!("{s} is not a 4xx or 5xx status"));
        } else if !seen.insert(s) {
            c.fail(field, format!("duplicate status {s}"));
        }
    }
    statuses
}

fn pool_endpoints(c: &mut Checker, key: &str, endpoints: &[String]) {
    if endpoints.is_empty() {
        c.fail(format!("{key}.endpoints"), "a pool needs at least one endpoint");
    }
    let mut seen = HashSet::new();
    for (i, e) in endpoints.iter().enumerate() {
        check_endpoint(c, &format!("{key}.endpoints[{i}]"), e);
        if !seen.insert(e) {
            c.fail(format!("{key}.endpoints[{i}]"), format!("duplicate endpoint {e:?}"));
        }
    }
}

fn upstream_tls(c: &mut Checker, key: &str, t: RawUpstreamTls) -> UpstreamTls {
    let tls = UpstreamTls {
        sni: t.sni,
        verify: t.verify.unwrap_or(true),
        ca_pem: t.ca.map(|path| c.read_file(&format!("{key}.tls.ca"), &path).1),
    };
    if let Err(e) = crate::tls::check_upstream(&tls) {
        c.fail(format!("{key}.tls"), e.to_string());
    }
    tls
}

/// An endpoint is `host:port`; IP literals must parse, names must look like
/// DNS names (they are resolved at connect time, not here).
fn check_endpoint(c: &mut Checker, key: &str, text: &str) {
    if text.parse::<SocketAddr>().is_ok() {
        return;
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        c.fail(key, format!("invalid endpoint {text:?}: expected host:port"));
        return;
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|l| !l.is_empty() && l.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-'));
    if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
        c.fail(key, format!("invalid endpoint {text:?}: expected host:port"));
    } else if host.chars().all(|ch| ch.is_ascii_digit() || ch == '.') {
        c.fail(key, format!("invalid IP address in endpoint {text:?}"));
    } else if host == "localhost" && (host, 0).to_socket_addrs().is_err() {
        c.fail(key, "localhost does not resolve on this machine");
    }
}

fn health(c: &mut Checker, key: &str, h: RawHealth) -> HealthConfig {
    if !h.path.starts_with('/') {
        c.fail(format!("{key}.path"), "must start with '/'");
    }
    let interval = c.dur(&format!("{key}.interval"), h.interval, "2s", false);
    let timeout = c.dur(&format!("{key}.timeout"), h.timeout, "1s", false);
    if timeout > interval {
        c.fail(format!("{key}.timeout"), "must not exceed the interval");
    }
    let unhealthy_after = h.unhealthy_after.unwrap_or(3);
    let healthy_after = h.healthy_after.unwrap_or(2);
    if unhealthy_after == 0 {
        c.fail(format!("{key}.unhealthy_after"), "must be greater than zero");
    }
    if healthy_after == 0 {
        c.fail(format!("{key}.healthy_after"), "must be greater than zero");
    }
    if let Some(name) = &h.lag_header {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.fail(format!("{key}.lag_header"), format!("{name:?} is not a valid header name"));
        }
    }
    let (role_header, primary_role) = super::validate_dr::role(c, key, h.role_header, h.primary_role);
    HealthConfig {
        path: h.path,
        interval,
        timeout,
        unhealthy_after,
        healthy_after,
        lag_header: h.lag_header,
        role_header,
        primary_role,
    }
}

fn routes(c: &mut Checker, raw: Vec<RawRoute>, pools: &BTreeMap<String, PoolConfig>) -> Vec<RouteConfig> {
    if raw.is_empty() {
        c.fail("route", "at least one [[route]] is required");
    }
    let mut out = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let key = format!("route[{i}]");
        match pools.get(&r.primary) {
            None => c.fail(format!("{key}.primary"), format!("unknown pool {:?}", r.primary)),
            Some(p) if p.role == PoolRole::Cloud => c.fail(
                format!("{key}.primary"),
                format!("pool {:?} has role \"cloud\"; a primary must be on-prem", r.primary),
            ),
            Some(_) => {}
        }
        if let Some(o) = &r.overflow {
            if !pools.contains_key(o) {
                c.fail(format!("{key}.overflow"), format!("unknown pool {o:?}"));
            } else if o == &r.primary {
                c.fail(format!("{key}.overflow"), "overflow must differ from primary");
            }
        }
        let path_prefix = r.path_prefix.unwrap_or_else(|| "/".to_string());
        if !path_prefix.starts_with('/') {
            c.fail(format!("{key}.path_prefix"), "must start with '/'");
        } else if crate::request::path::normalize(&path_prefix) != path_prefix.as_str() {
            let normal = crate::request::path::normalize(&path_prefix);
            c.fail(format!("{key}.path_prefix"), format!("write it in normal form: {normal:?}"));
        }
        let methods = r.spill_methods.unwrap_or_else(|| vec!["GET".into(), "HEAD".into()]);
        let spill_methods = methods
            .iter()
            .enumerate()
            .filter_map(|(j, m)| match http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => Some(m),
                Err(_) => {
                    c.fail(format!("{key}.spill_methods[{j}]"), format!("invalid method {m:?}"));
                    None
                }
            })
            .collect();
        for (j, p) in r.never_spill.iter().enumerate() {
            if !p.starts_with('/') {
                c.fail(format!("{key}.never_spill[{j}]"), "must start with '/'");
            } else if crate::request::path::normalize(p) != p.as_str() {
                let normal = crate::request::path::normalize(p);
                c.fail(format!("{key}.never_spill[{j}]"), format!("write it in normal form: {normal:?}"));
            }
        }
        let priority = match r.priority.as_deref() {
            None => crate::burst::Priority::Normal,
            Some(p) => crate::burst::Priority::parse(p).unwrap_or_else(|| {
                c.fail(
                    format!("{key}.priority"),
                    format!("unknown priority {p:?}: expected low, normal, high or critical"),
                );
                crate::burst::Priority::Normal
            }),
        };
        let host = r.host.filter(|h| h != "*").map(|h| h.to_ascii_lowercase());
        out.push(RouteConfig {
            name: r.name.unwrap_or_else(|| format!("{}{}", host.as_deref().unwrap_or("*"), path_prefix)),
            host,
            path_prefix,
            primary: r.primary,
            overflow: r.overflow,
            spill_methods,
            never_spill: r.never_spill,
            priority,
        });
    }
    out
}

/// Most requests a cloud pool's limit may admit at once (well past any
/// group's size; a typo of a few zeros is refused).
const MAX_CLOUD_IN_FLIGHT: u32 = 1_000_000;

fn spill(c: &mut Checker, s: RawSpill) -> SpillConfig {
    let mode = match s.mode.as_deref() {
        None | Some("adaptive") => SpillMode::Adaptive,
        Some("static") => SpillMode::Static,
        Some(other) => {
            c.fail("spill.mode", format!("unknown mode {other:?}: expected \"static\" or \"adaptive\""));
            SpillMode::Adaptive
        }
    };
    let max_in_flight = s.max_in_flight.unwrap_or(400);
    if max_in_flight == 0 {
        c.fail("spill.max_in_flight", "must be greater than zero");
    }
    let min_limit = s.min_limit.unwrap_or(max_in_flight.clamp(1, 8));
    if min_limit == 0 || min_limit > max_in_flight {
        c.fail("spill.min_limit", "must be between 1 and max_in_flight");
    }
    let cloud_max_in_flight = s.cloud_max_in_flight.unwrap_or(2000);
    if cloud_max_in_flight == 0 || cloud_max_in_flight > MAX_CLOUD_IN_FLIGHT {
        c.fail("spill.cloud_max_in_flight", format!("must be between 1 and {MAX_CLOUD_IN_FLIGHT}"));
    }
    let cloud_min_limit = s.cloud_min_limit.unwrap_or(cloud_max_in_flight.clamp(1, 8));
    if cloud_min_limit == 0 || cloud_min_limit > cloud_max_in_flight {
        c.fail("spill.cloud_min_limit", "must be between 1 and cloud_max_in_flight");
    }
    let enter_after = c.dur("spill.enter_after", s.enter_after, "1s", true);
    let exit_after = c.dur("spill.exit_after", s.exit_after, "30s", true);
    if exit_after < enter_after {
        c.fail("spill.exit_after", "must not be shorter than enter_after (spilling would flap)");
    }
    let session_cookie = s.session_cookie.filter(|name| !name.is_empty());
    let pin_capacity = s.pin_capacity.unwrap_or(1_000_000);
    if pin_capacity == 0 {
        c.fail("spill.pin_capacity", "must be greater than zero");
    }
    let pins_per_address = s.pins_per_address.unwrap_or(64);
    if pins_per_address == 0 {
        c.fail("spill.pins_per_address", "must be greater than zero");
    }
    SpillConfig {
        mode,
        max_in_flight,
        min_limit,
        latency_slo: c.dur("spill.latency_slo", s.latency_slo, "250ms", false),
        enter_after,
        exit_after,
        pin_after_write: c.dur("spill.pin_after_write", s.pin_after_write, "90s", true),
        pin_capacity,
        shed_when_cloud_unavailable: s.shed_when_cloud_unavailable.unwrap_or(true),
        cap_by_warm_capacity: s.cap_by_warm_capacity.unwrap_or(false),
        queue_timeout: c.dur("spill.queue_timeout", s.queue_timeout, "250ms", true),
        max_queue: s.max_queue.unwrap_or(1000),
        cloud_limit: s.cloud_limit.unwrap_or(true),
        cloud_min_limit,
        cloud_max_in_flight,
        max_replica_lag: c.dur("spill.max_replica_lag", s.max_replica_lag, "90s", false),
        tick: c.dur("spill.tick", s.tick, "100ms", false),
        never_spill_ignore_case: s.never_spill_ignore_case.unwrap_or(true),
        pins_per_address,
        disaster_after: c.dur("spill.disaster_after", s.disaster_after, "10s", true),
        session_cookie,
    }
}

/// A notification webhook must be an absolute http:// or https:// URL with a
/// host. The errors show the URL redacted: its path may be its secret.
pub(crate) fn check_webhook_url(url: &str) -> Result<(), String> {
    let shown = crate::telemetry::redacted_url(url);
    let uri: http::Uri = url.parse().map_err(|e| format!("invalid URL {shown}: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{shown}: the webhook must be an http:// or https:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{shown}: no host"));
    }
    Ok(())
}
