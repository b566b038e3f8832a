//! Fixtures for the burst scenarios (`tests/burst_spill.rs`), on top of the
//! shared `support` ones: the scenario config, the admin calls the scenarios
//! wait on, an open-loop load generator with a pooled client that keeps every
//! reply, a watcher of the on-prem tier's exact in-flight high-water mark,
//! and a labelled Prometheus sample reader.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use spillway::demo::tier::Tier;
use spillway::proxy::body::Body;
use tokio::time::Instant;

use crate::support::{get, Spillway};

/// `[spill] max_in_flight` of the scenario config.
pub const MAX_IN_FLIGHT: u32 = 10;
/// The on-prem tier's capacity: 8 workers / (40 ms × 2 at full load).
pub const ONPREM_CAPACITY_RPS: f64 = 100.0;

/// The scenario config; the knobs are what the scenarios vary.
pub struct Knobs {
    pub onprem: SocketAddr,
    pub cloud: SocketAddr,
    pub shed_when_cloud_unavailable: bool,
}

impl Knobs {
    pub fn new(onprem: SocketAddr, cloud: SocketAddr) -> Self {
        Knobs { onprem, cloud, shed_when_cloud_unavailable: true }
    }

    /// Probes every 250 ms (down after 2 failures, up after 2 successes), a
    /// 50 ms gate tick, spilling after 300 ms of pressure and back after 1 s.
    pub fn render(&self) -> String {
        let health =
            r#"path = "/healthz", interval = "250ms", timeout = "250ms", unhealthy_after = 2, healthy_after = 2"#;
        format!(
            r#"
[admin]
listen = "127.0.0.1:0"

[[listener]]
name = "public"
listen = "127.0.0.1:0"

[pools.onprem]
endpoints = ["{onprem}"]
health = {{ {health} }}
connect_timeout = "200ms"
response_timeout = "10s"

[pools.aws]
role = "cloud"
endpoints = ["{cloud}"]
health = {{ {health}, lag_header = "x-replica-lag" }}
connect_timeout = "200ms"
response_timeout = "10s"

[[route]]
name = "www"
path_prefix = "/"
primary = "onprem"
overflow = "aws"
spill_methods = ["GET", "HEAD"]
never_spill = ["/login", "/admin"]

[spill]
mode = "adaptive"
max_in_flight = {MAX_IN_FLIGHT}
min_limit = 6
latency_slo = "250ms"
enter_after = "300ms"
exit_after = "1s"
pin_after_write = "90s"
session_cookie = "SPORTCHAT_SESSION"
shed_when_cloud_unavailable = {shed}
queue_timeout = "200ms"
max_queue = 1000
max_replica_lag = "90s"
tick = "50ms"
disaster_after = "2s"

[dr]
engage = "auto"
failback_after = "1s"
"#,
            onprem = self.onprem,
            cloud = self.cloud,
            shed = self.shed_when_cloud_unavailable,
        )
    }
}

/// The admin API of a running proxy (`crate::support::Spillway`), as the
/// burst scenarios use it.
pub struct Admin<'a>(pub &'a Spillway);

impl Admin<'_> {
    pub async fn metrics(&self) -> String {
        get(&self.0.admin_url("/metrics")).await.expect("GET /metrics").text()
    }

    /// Until every endpoint of every pool is available (probed up).
    pub async fn wait_healthy(&self) {
        self.wait_status("every endpoint available", |s| {
            let pools = s["pools"].as_object().into_iter().flat_map(|p| p.values());
            let mut endpoints = pools.flat_map(|p| p["endpoints"].as_array().cloned().unwrap_or_default()).peekable();
            endpoints.peek().is_some() && endpoints.all(|e| e["available"] == true)
        })
        .await;
    }

    /// Until `/status` shows `gates.<pool>.<field> == value`.
    pub async fn wait_gate(&self, pool: &str, field: &str, value: serde_json::Value) {
        self.wait_status(&format!("gates.{pool}.{field} == {value}"), |s| s["gates"][pool][field] == value).await;
    }

    async fn wait_status(&self, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.0.status().await;
            if ok(&status) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; /status:\n{status:#}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The sum of the samples of `name` whose labels include all of `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One request's fate. `at` is when it was sent, from the start of the load.
#[derive(Debug, Clone)]
pub struct Reply {
    pub at: Duration,
    #[allow(dead_code)] // read through Debug, in failure messages
    pub method: Method,
    pub path: String,
    pub status: Option<StatusCode>,
    pub served_by: Option<String>,
    pub retry_after: bool,
    pub latency: Duration,
    pub error: Option<String>,
}

#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Body>,
    target: SocketAddr,
}

impl HttpClient {
    pub fn new(target: SocketAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build(connector);
        HttpClient { client, target }
    }

    /// One request with the session cookie; never panics (failures are replies).
    pub async fn send(&self, method: Method, path: &str, session: &str) -> Reply {
        let sent = Instant::now();
        let body = if method == Method::POST { Body::full("{\"text\":\"what a goal\"}") } else { Body::empty() };
        let req = Request::builder()
            .method(method.clone())
            .uri(format!("http://{}{path}", self.target))
            .header(header::COOKIE, format!("SPORTCHAT_SESSION={session}"))
            .body(body)
            .expect("valid request");
        let mut reply = Reply {
            at: Duration::ZERO,
            method,
            path: path.to_string(),
            status: None,
            served_by: None,
            retry_after: false,
            latency: Duration::ZERO,
            error: None,
        };
        match tokio::time::timeout(Duration::from_secs(10), self.client.request(req)).await {
            Ok(Ok(resp)) => {
                reply.status = Some(resp.status());
                reply.served_by =
                    resp.headers().get("x-served-by").and_then(|v| v.to_str().ok()).map(|v| v.to_string());
                reply.retry_after = resp.headers().contains_key(header::RETRY_AFTER);
                if let Err(e) = resp.into_body().collect().await {
                    reply.error = Some(format!("body: {e}"));
                    reply.status = None;
                }
            }
            Ok(Err(e)) => reply.error = Some(e.to_string()),
            Err(_) => reply.error = Some("timed out after 10 s".into()),
        }
        reply.latency = sent.elapsed();
        reply
    }
}

/// A piecewise-linear offered rate: segments of (seconds, rps at start, rps at end).
pub struct Schedule {
    segments: Vec<(f64, f64, f64)>,
}

impl Schedule {
    pub fn new(segments: &[(f64, f64, f64)]) -> Self {
        Schedule { segments: segments.to_vec() }
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.segments.iter().map(|s| s.0).sum())
    }

    /// Requests due by `t`: the integral of the rate from 0 to `t`.
    pub fn due_by(&self, t: Duration) -> u64 {
        let mut left = t.as_secs_f64();
        let mut total = 0.0;
        for &(len, from, to) in &self.segments {
            let x = left.min(len);
            total += from * x + (to - from) * x * x / (2.0 * len);
            left -= x;
            if left <= 0.0 {
                break;
            }
        }
        total.floor() as u64
    }
}

/// Open loop: request n starts when the integral of the rate reaches n,
/// whatever the latency of the others (a stall of the generator sends the
/// requests it owes at once, as clients arriving meanwhile would). GETs of
/// `/match/<n mod 50>` from 5000 sessions; returns every reply.
pub async fn open_loop(client: &HttpClient, schedule: &Schedule, start: Instant) -> Vec<Reply> {
    open_loop_with(client, schedule, start, |n| (Method::GET, format!("/match/{}", n % 50), format!("s{}", n % 5000)))
        .await
}

/// [`open_loop`] with request n's method, path and session chosen by `pick(n)`.
pub async fn open_loop_with(
    client: &HttpClient,
    schedule: &Schedule,
    start: Instant,
    pick: impl Fn(u64) -> (Method, String, String),
) -> Vec<Reply> {
    let replies = Arc::new(Mutex::new(Vec::new()));
    let mut tick = tokio::time::interval_at(start, Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = Vec::new();
    let mut sent = 0;
    let end = schedule.duration();
    loop {
        tick.tick().await;
        let t = start.elapsed();
        let due = schedule.due_by(t.min(end));
        while sent < due {
            let (client, replies) = (client.clone(), replies.clone());
            let (method, path, session) = pick(sent);
            tasks.push(tokio::spawn(async move {
                let mut r = client.send(method, &path, &session).await;
                r.at = t;
                replies.lock().unwrap_or_else(|e| e.into_inner()).push(r);
            }));
            sent += 1;
        }
        if t >= end {
            break;
        }
    }
    for t in tasks {
        t.await.expect("request task");
    }
    let mut out = std::mem::take(&mut *replies.lock().unwrap_or_else(|e| e.into_inner()));
    out.sort_by_key(|r| r.at);
    out
}

/// Reads a tier's exact in-flight high-water mark every 50 ms.
pub struct PeakWatch {
    task: tokio::task::JoinHandle<()>,
    samples: Arc<Mutex<Vec<(Duration, u32)>>>,
    tier: Arc<Tier>,
    start: Instant,
}

impl PeakWatch {
    pub fn start(tier: Arc<Tier>, start: Instant) -> Self {
        tier.take_peak();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (t, s) = (tier.clone(), samples.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                let peak = t.take_peak();
                s.lock().unwrap_or_else(|e| e.into_inner()).push((start.elapsed(), peak));
            }
        });
        PeakWatch { task, samples, tier, start }
    }

    /// (time, highest in-flight since the previous sample).
    pub fn stop(self) -> Vec<(Duration, u32)> {
        self.task.abort();
        let mut s = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()));
        s.push((self.start.elapsed(), self.tier.take_peak()));
        s
    }
}

/// One line per second: sent, on-prem, cloud, other, p50/p99, on-prem peak.
pub fn timeline(replies: &[Reply], peaks: &[(Duration, u32)]) -> String {
    let secs = replies.iter().map(|r| r.at.as_secs()).max().unwrap_or(0);
    let mut out = String::from("   t   sent onprem  cloud  other    p50    p99  onprem-peak\n");
    for s in 0..=secs {
        let rs: Vec<&Reply> = replies.iter().filter(|r| r.at.as_secs() == s).collect();
        let by = |who: &str| rs.iter().filter(|r| r.served_by.as_deref() == Some(who)).count();
        let (on, cl) = (by("onprem"), by("cloud"));
        let mut lat: Vec<Duration> = rs.iter().map(|r| r.latency).collect();
        lat.sort();
        let q = |q: f64| lat.get(((lat.len() as f64 - 1.0) * q).round() as usize).map_or(0, |d| d.as_millis());
        let peak = peaks.iter().filter(|p| p.0.as_secs() == s).map(|p| p.1).max().unwrap_or(0);
        out.push_str(&format!(
            "{s:>3}s {:>6} {on:>6} {cl:>6} {:>6} {:>4}ms {:>4}ms {peak:>12}\n",
            rs.len(),
            rs.len() - on - cl,
            q(0.5),
            q(0.99)
        ));
    }
    out
}
