//! An open-loop load generator: requests start on schedule whatever the
//! latency (as real users do), so overload shows as queueing, not as a
//! politely slower client. A mix of reads and writes from many sessions.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{header, Method, Request};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::proxy::body::Body;
use crate::sync::lock;

/// The shape of the burst: base → ramp up → hold peak → ramp down → base.
#[derive(Debug, Clone, Copy)]
pub struct LoadPlan {
    pub duration: Duration,
    pub base_rps: f64,
    pub peak_rps: f64,
    pub write_share: f64,
    pub sessions: u32,
}

impl LoadPlan {
    /// Pure: offered requests per second at `t` into the run. The first and
    /// last 15 % are at base, 20 % ramps each way, 30 % holds the peak.
    pub fn rate_at(&self, t: Duration) -> f64 {
        let x = t.as_secs_f64() / self.duration.as_secs_f64().max(1e-9);
        let ramp = |from: f64, to: f64, a: f64, b: f64| from + (to - from) * ((x - a) / (b - a));
        match x {
            x if x < 0.15 => self.base_rps,
            x if x < 0.35 => ramp(self.base_rps, self.peak_rps, 0.15, 0.35),
            x if x < 0.65 => self.peak_rps,
            x if x < 0.85 => ramp(self.peak_rps, self.base_rps, 0.65, 0.85),
            x if x <= 1.0 => self.base_rps,
            _ => 0.0,
        }
    }
}

/// One second of results.
#[derive(Debug, Default, Clone)]
pub struct Second {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub onprem: u64,
    pub cloud: u64,
    pub latencies_us: Vec<u32>,
}

#[derive(Default)]
pub struct Results {
    pub seconds: Mutex<Vec<Second>>,
    /// GETs through a Spillway less than the pin time after the same
    /// session's successful write through a Spillway.
    pub pinned_reads: AtomicU64,
    /// Of those, the ones the cloud answered: read-after-write broken.
    pub pin_violations: AtomicU64,
}

/// What the clients know of read-after-write: the pin cookie's name (each
/// session keeps the one its last write's answer set and sends it back,
/// as a browser does) and how long a write pins its session.
#[derive(Debug, Clone)]
pub struct PinCheck {
    pub cookie: Option<String>,
    pub pin_after_write: Duration,
}

/// One session's cookie jar and last write.
#[derive(Default)]
struct Session {
    pin_cookie: Option<String>,
    /// The last successful write through a Spillway: when it was sent and
    /// when its answer came. A read sent after the answer (read-after-write,
    /// not a read racing the write) whose own answer came less than the pin
    /// time after the write was *sent* was pinned whatever the fuzz (the
    /// write's time, in its token, lies between the two).
    wrote: Option<(Instant, Instant)>,
}

/// Pure: the pin cookie (`name=value`) among `set-cookie` values, `None`
/// inside when it is cleared (empty or `Max-Age=0`), `None` outside when
/// the answer does not mention it.
pub fn pin_cookie_of<'a>(set_cookies: impl IntoIterator<Item = &'a str>, name: &str) -> Option<Option<String>> {
    set_cookies.into_iter().find_map(|v| {
        let mut parts = v.split(';').map(str::trim);
        let pair = parts.next()?;
        let (n, value) = pair.split_once('=')?;
        if n.trim() != name {
            return None;
        }
        let cleared = value.is_empty() || parts.any(|a| a.eq_ignore_ascii_case("max-age=0"));
        Some((!cleared).then(|| format!("{name}={value}")))
    })
}

impl Results {
    fn record(&self, second: usize, f: impl FnOnce(&mut Second)) {
        let mut s = lock(&self.seconds);
        if s.len() <= second {
            s.resize(second + 1, Second::default());
        }
        f(&mut s[second]);
    }
}

/// Clients that follow DNS: `share()` of the requests (the cloud's DNS share
/// in effect) go straight to `cloud`, bypassing the proxy.
#[derive(Clone)]
pub struct DnsDirect {
    pub cloud: SocketAddr,
    pub share: Arc<dyn Fn() -> f64 + Send + Sync>,
}

/// Distinct client addresses on loopback (see `run_with_dns`).
pub const CLIENT_ADDRESSES: u32 = 256;

/// Pure: the loopback address of client `i` (127.0.1.1 … 127.0.1.254,
/// 127.0.2.1, …): never 127.0.0.1, never a `.0` or `.255` host byte.
pub fn client_address(i: u32) -> std::net::IpAddr {
    let (third, fourth) = (1 + i / 254, 1 + i % 254);
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, (third / 256) as u8, (third % 256) as u8, fourth as u8))
}

/// Runs the plan against `target`; returns when every request has finished.
pub async fn run(plan: LoadPlan, target: SocketAddr, results: Arc<Results>) {
    run_with_dns(plan, vec![target], results, None, None).await;
}

/// [`run`] over several Spillways (round-robin, as a load balancer or DNS
/// spreads the clients), with the share DNS sends to the cloud going there
/// directly, and read-after-write checked when `pins` is given.
pub async fn run_with_dns(
    plan: LoadPlan,
    targets: Vec<SocketAddr>,
    results: Arc<Results>,
    dns: Option<DnsDirect>,
    pins: Option<PinCheck>,
) {
    // Users come from many addresses: a session's connections leave from
    // one of `CLIENT_ADDRESSES` loopback addresses (all of 127/8 is
    // loopback on Linux), so per-address limits (`spill.pins_per_address`)
    // see what they would see in production, not 50 000 users behind one IP.
    let loopback = targets.iter().all(|t| t.ip().is_loopback() && t.is_ipv4());
    let clients: Vec<Client<HttpConnector, Body>> = (0..if loopback { CLIENT_ADDRESSES } else { 1 })
        .map(|i| {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            if loopback {
                connector.set_local_address(Some(client_address(i)));
            }
            Client::builder(TokioExecutor::new()).pool_max_idle_per_host(4096).build(connector)
        })
        .collect();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut owed = 0.0;
    let mut rng = fastrand::Rng::with_seed(42);
    let mut handles = Vec::new();
    let sessions: Arc<Mutex<std::collections::HashMap<u32, Session>>> = Arc::default();
    let pins = pins.map(Arc::new);
    let mut next = 0usize;
    while start.elapsed() < plan.duration {
        tick.tick().await;
        owed += plan.rate_at(start.elapsed()) * 0.005;
        while owed >= 1.0 {
            owed -= 1.0;
            let write = rng.f64() < plan.write_share;
            let session = rng.u32(0..plan.sessions.max(1));
            let (target, proxied) = match &dns {
                Some(d) if rng.f64() < (d.share)() => (d.cloud, false),
                _ => {
                    next = next.wrapping_add(1);
                    (targets[next % targets.len()], true)
                }
            };
            let client = clients[session as usize % clients.len()].clone();
            let results = results.clone();
            let jar = proxied.then(|| (sessions.clone(), pins.clone())).and_then(|(s, p)| Some((s, p?)));
            handles.push(tokio::spawn(async move {
                one(&client, target, write, session, start, &results, jar).await;
            }));
        }
        handles.retain(|h| !h.is_finished());
    }
    for h in handles {
        let _ = h.await;
    }
}

type Jar = (Arc<Mutex<std::collections::HashMap<u32, Session>>>, Arc<PinCheck>);

async fn one(
    client: &Client<HttpConnector, Body>,
    target: SocketAddr,
    write: bool,
    session: u32,
    start: Instant,
    results: &Results,
    jar: Option<Jar>,
) {
    let sent_at = Instant::now();
    let mut cookie = format!("SPORTCHAT_SESSION=s{session}");
    if let Some(pin) = jar.as_ref().and_then(|(j, _)| lock(j).get(&session).and_then(|s| s.pin_cookie.clone())) {
        cookie.push_str("; ");
        cookie.push_str(&pin);
    }
    let second = (sent_at - start).as_secs() as usize;
    let (method, path, body) = if write {
        (Method::POST, "/api/post".to_string(), Body::full("{\"text\":\"what a goal\"}"))
    } else {
        (Method::GET, format!("/match/{}", session % 50), Body::empty())
    };
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{target}{path}"))
        .header(header::COOKIE, cookie)
        .body(body)
        .expect("static request is valid");
    let result = tokio::time::timeout(Duration::from_secs(30), client.request(req)).await;
    let outcome = match result {
        Ok(Ok(resp)) => {
            let status = resp.status();
            let by = resp.headers().get("x-served-by").map(|v| v.as_bytes().to_vec());
            if let Some((jar, check)) = &jar {
                let set = resp.headers().get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok());
                let pin = check.cookie.as_deref().and_then(|name| pin_cookie_of(set, name));
                let mut sessions = lock(jar);
                let s = sessions.entry(session).or_default();
                if let Some(pin) = pin {
                    s.pin_cookie = pin;
                }
                if write && status.is_success() {
                    s.wrote = Some((sent_at, Instant::now()));
                }
            }
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            Some((status, by))
        }
        _ => None,
    };
    if let (false, Some((jar, check)), Some((status, by))) = (write, &jar, &outcome) {
        let wrote = lock(jar).get(&session).and_then(|s| s.wrote);
        let after_write =
            wrote.is_some_and(|(sent, answered)| sent_at > answered && sent.elapsed() < check.pin_after_write);
        if status.is_success() && after_write {
            results.pinned_reads.fetch_add(1, Relaxed);
            if by.as_deref() == Some(b"cloud") {
                results.pin_violations.fetch_add(1, Relaxed);
            }
        }
    }
    let latency = sent_at.elapsed().as_micros().min(u32::MAX as u128) as u32;
    results.record(second, |s| {
        s.sent += 1;
        s.latencies_us.push(latency);
        match outcome {
            Some((status, by)) if status.is_success() => {
                s.ok += 1;
                match by.as_deref() {
                    Some(b"cloud") => s.cloud += 1,
                    _ => s.onprem += 1,
                }
            }
            _ => s.errors += 1,
        }
    });
}

/// Pure: the q-quantile of unsorted samples (sorts in place).
pub fn quantile(samples: &mut [u32], q: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let idx = ((samples.len() as f64 - 1.0) * q).round() as usize;
    Some(Duration::from_micros(samples[idx] as u64))
}

/// Totals of a run, for the burst benchmark's table.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub requests: u64,
    pub onprem: u64,
    pub cloud: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Requests (errors included) slower than the latency SLO.
    pub over_slo: u64,
}

/// Pure: sums the per-second results and takes the latency quantiles.
pub fn summarize(seconds: &[Second], slo: Duration) -> Summary {
    let mut all: Vec<u32> = seconds.iter().flat_map(|s| s.latencies_us.iter().copied()).collect();
    let slo_us = slo.as_micros().min(u32::MAX as u128) as u32;
    let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
    Summary {
        requests: seconds.iter().map(|s| s.sent).sum(),
        onprem: seconds.iter().map(|s| s.onprem).sum(),
        cloud: seconds.iter().map(|s| s.cloud).sum(),
        errors: seconds.iter().map(|s| s.errors).sum(),
        over_slo: all.iter().filter(|l| **l > slo_us).count() as u64,
        p50_ms: ms(quantile(&mut all, 0.5)),
        p99_ms: ms(quantile(&mut all, 0.99)),
        p999_ms: ms(quantile(&mut all, 0.999)),
        max_ms: ms(quantile(&mut all, 1.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> LoadPlan {
        LoadPlan {
            duration: Duration::from_secs(100),
            base_rps: 100.0,
            peak_rps: 400.0,
            write_share: 0.1,
            sessions: 10,
        }
    }

    #[test]
    fn rate_follows_the_burst_shape() {
        let p = plan();
        assert_eq!(p.rate_at(Duration::from_secs(5)), 100.0);
        assert!((p.rate_at(Duration::from_secs(25)) - 250.0).abs() < 1e-9);
        assert_eq!(p.rate_at(Duration::from_secs(50)), 400.0);
        assert!((p.rate_at(Duration::from_secs(75)) - 250.0).abs() < 1e-9);
        assert_eq!(p.rate_at(Duration::from_secs(95)), 100.0);
        assert_eq!(p.rate_at(Duration::from_secs(101)), 0.0);
    }

    #[test]
    fn summary_adds_up_the_seconds() {
        let s = |sent, onprem, cloud, errors, lat: &[u32]| Second {
            sent,
            ok: onprem + cloud,
            errors,
            onprem,
            cloud,
            latencies_us: lat.to_vec(),
        };
        let sum = summarize(
            &[s(2, 2, 0, 0, &[1_000, 300_000]), s(3, 1, 1, 1, &[2_000, 3_000, 251_000])],
            Duration::from_millis(250),
        );
        assert_eq!((sum.requests, sum.onprem, sum.cloud, sum.errors, sum.over_slo), (5, 3, 1, 1, 2));
        assert_eq!(sum.p50_ms, 3.0);
        assert_eq!(sum.max_ms, 300.0);
    }

    #[test]
    fn client_addresses_are_distinct_loopback_hosts() {
        let all: std::collections::BTreeSet<_> = (0..CLIENT_ADDRESSES).map(client_address).collect();
        assert_eq!(all.len(), CLIENT_ADDRESSES as usize);
        assert_eq!(client_address(0).to_string(), "127.0.1.1");
        assert_eq!(client_address(254).to_string(), "127.0.2.1");
        assert!(all.iter().all(|a| a.is_loopback() && a.to_string() != "127.0.0.1"));
    }

    #[test]
    fn the_pin_cookie_is_found_kept_and_cleared() {
        let name = "spillway_pin";
        assert_eq!(
            pin_cookie_of(["other=1; Path=/", "spillway_pin=abc.def; Path=/; HttpOnly; Max-Age=90"], name),
            Some(Some("spillway_pin=abc.def".into()))
        );
        assert_eq!(pin_cookie_of(["spillway_pin=; Max-Age=0"], name), Some(None));
        assert_eq!(pin_cookie_of(["spillway_pin=x; max-age=0"], name), Some(None));
        assert_eq!(pin_cookie_of(["spillway_pinx=1", "garbage"], name), None);
        assert_eq!(pin_cookie_of([], name), None);
    }

    #[test]
    fn quantiles() {
        let mut v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&mut v, 0.5), Some(Duration::from_micros(51)));
        assert_eq!(quantile(&mut v, 0.99), Some(Duration::from_micros(99)));
        assert_eq!(quantile(&mut [], 0.5), None);
    }
}
