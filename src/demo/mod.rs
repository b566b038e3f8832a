//! `spillway demo`: a self-contained game-time burst on loopback.
//!
//! Starts a simulated on-prem tier (few workers, service time rising with
//! load, like Apache prefork) and a cloud tier (many workers, added network
//! latency), runs Spillway between them with the demo config, and drives an
//! open-loop burst of reads and writes from many sessions: base load, a ramp
//! to `peak_rps`, a plateau, and back. It prints one line per second and a
//! summary per phase; the proxy stays reachable for curl during the run.

pub(crate) mod aws_sim;
pub mod load;
mod resolvers;
pub mod tier;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::server::Server;
use crate::sync::lock;

use load::{LoadPlan, Results, Second};
use tier::{Tier, TierSpec};

/// `dns.ttl` below: how long simulated resolvers keep the old weights.
const DEMO_TTL: Duration = Duration::from_secs(10);

const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// The controllers' sections for the demo, on a demo time scale (seconds,
/// not minutes) and against the simulated AWS.
const DEMO_CONTROLLERS: &str = r#"
[scale]
auto_scaling_group = "sportchat-burst"
per_instance_rps = 100
warmup = "10s"
headroom = 0.2
min = 2
max = 40
dr_capacity = 20
scale_in_cooldown = "10s"
interval = "1s"

[dns]
hosted_zone_id = "ZDEMO"
record = "www.sportchat.example."
type = "CNAME"
ttl = 10
onprem = { set_identifier = "dc1", value = "dc1-edge.sportchat.example." }
aws = { set_identifier = "aws", value = "sportchat-burst.elb.example." }
shift_after = "5s"
min_change_interval = "3s"
interval = "1s"
"#;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub duration: Duration,
    /// Peak offered load; default three times the on-prem capacity.
    pub peak_rps: Option<f64>,
    /// Where the proxy listens; default 127.0.0.1:8080, or any free port.
    pub listen: Option<SocketAddr>,
    /// Spillways sharing the pin key, the clients spread round-robin over
    /// them (1 to 4; the others listen on free ports, only the first runs
    /// the AWS controllers).
    pub instances: usize,
    /// Sign read-after-write pins into a cookie (`[spill.pin_token]`); off,
    /// each instance knows only the writes it saw itself.
    pub pin_token: bool,
    /// Distinct client sessions (default 50 000).
    pub sessions: Option<u32>,
    /// Workers of the simulated cloud tier (default 256): a few make a
    /// cold cloud that serves less than the overflow, so the excess is shed.
    pub cloud_workers: Option<usize>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            duration: Duration::from_secs(60),
            peak_rps: None,
            listen: None,
            instances: 1,
            pin_token: true,
            sessions: None,
            cloud_workers: None,
        }
    }
}

/// The pin cookie the demo's instances set (`[spill.pin_token]`).
const DEMO_PIN_COOKIE: &str = "sportchat_pin";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo: {0}")]
    Io(#[from] std::io::Error),
    #[error("demo config: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("demo: {0}")]
    Start(#[from] crate::StartError),
}

/// The on-prem tier: 16 workers, 20 ms idle service time, doubling at full load.
pub fn onprem_spec() -> TierSpec {
    TierSpec {
        name: "onprem",
        workers: 16,
        base: Duration::from_millis(20),
        slowdown: 1.0,
        network: Duration::ZERO,
        replica_lag: None,
    }
}

/// The cloud tier: 256 workers, 30 ms round trip away, replicas 2 s behind.
pub fn cloud_spec() -> TierSpec {
    TierSpec {
        name: "cloud",
        workers: 256,
        base: Duration::from_millis(20),
        slowdown: 0.5,
        network: Duration::from_millis(30),
        replica_lag: Some(2.0),
    }
}

/// The demo's config text with its tiers' and its own addresses.
fn demo_config(onprem: &Tier, cloud: &Tier, listen: SocketAddr, admin: SocketAddr) -> String {
    DEMO_CONFIG
        .replace("127.0.0.1:18081", &onprem.addr.to_string())
        .replace("127.0.0.1:18082", &cloud.addr.to_string())
        .replace("127.0.0.1:8080", &listen.to_string())
        .replace("127.0.0.1:9901", &admin.to_string())
}

/// Runs the demo to completion; returns the per-second results.
pub async fn run(
    opts: DemoOptions,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> Result<Vec<Second>, DemoError> {
    let onprem = Tier::start(onprem_spec()).await?;
    let mut cloud_spec = cloud_spec();
    cloud_spec.workers = opts.cloud_workers.unwrap_or(cloud_spec.workers).max(1);
    let cloud = Tier::start(cloud_spec).await?;
    let dir = std::env::temp_dir().join(format!("spillway-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let listen = opts.listen.unwrap_or_else(|| free_or_any("127.0.0.1:8080"));
    let admin = free_or_any("127.0.0.1:9901");
    let text = demo_config(&onprem, &cloud, listen, admin) + DEMO_CONTROLLERS;
    let pins = if opts.pin_token {
        // A fresh key per run, shared by the instances only.
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| std::io::Error::other("no random bytes for the pin key"))?;
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&dir.join("pin.key"), &hex)?;
        format!("\n[spill.pin_token]\nkey_file = \"pin.key\"\ncookie_name = \"{DEMO_PIN_COOKIE}\"\n")
    } else {
        String::new()
    };
    let path = dir.join("demo.toml");
    std::fs::write(&path, format!("{text}{pins}"))?;
    let loaded = crate::config::load(&path)?;
    let pin_after_write = loaded.config.spill.pin_after_write;
    let sim = std::sync::Arc::new(aws_sim::SimAws::new(2, 40));
    let running = crate::app::start_with(
        loaded,
        metrics.clone(),
        crate::app::ControllerApis::Custom(sim.clone(), sim.clone()),
        crate::app::StartOptions::default(),
    )
    .await?;
    let server = running.server.clone();
    let target = server.bound().await.into_iter().next().map(|(_, a)| a).unwrap_or(listen);
    // More instances: the same config on free ports, without controllers.
    let mut others = Vec::new();
    for i in 1..opts.instances.clamp(1, 4) {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let base = demo_config(&onprem, &cloud, any, any);
        let path = dir.join(format!("demo-{i}.toml"));
        std::fs::write(&path, format!("{base}{pins}"))?;
        let loaded = crate::config::load(&path)?;
        let other = crate::app::start_with(
            loaded,
            metrics.clone(),
            crate::app::ControllerApis::Custom(sim.clone(), sim.clone()),
            crate::app::StartOptions::default(),
        )
        .await?;
        others.push(other);
    }
    let mut targets = vec![target];
    for o in &others {
        targets.extend(o.server.bound().await.into_iter().next().map(|(_, a)| a));
    }

    let capacity = onprem.spec.capacity_rps();
    let plan = LoadPlan {
        duration: opts.duration,
        base_rps: capacity * 0.5,
        peak_rps: opts.peak_rps.unwrap_or(capacity * 3.0),
        write_share: 0.03,
        sessions: opts.sessions.unwrap_or(50_000).max(1),
    };
    println!("spillway demo: proxy on http://{target}  admin http://{}  config {}", running.admin_addr, path.display());
    if targets.len() > 1 {
        let all: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        println!(
            "{} instances ({}), clients spread round-robin; read-after-write pins {}",
            targets.len(),
            all.join(", "),
            if opts.pin_token { "signed into a shared-key cookie" } else { "in each instance's memory only" }
        );
    }
    println!(
        "on-prem tier: {} workers, ~{:.0} req/s capacity; cloud tier: {} workers, +{:?} network; burst {:.0} -> {:.0} req/s over {:?}",
        onprem.spec.workers,
        capacity,
        cloud.spec.workers,
        cloud.spec.network,
        plan.base_rps,
        plan.peak_rps,
        plan.duration
    );
    println!(
        "AWS is simulated in memory: the controllers' calls are printed as `aws>` lines, nothing leaves this machine."
    );
    println!("(curl the proxy, edit the config, or watch /status while it runs)\n");
    println!("{}", header());
    let results = Arc::new(Results::default());
    let in_effect = resolvers::InEffect::new(sim.clone(), DEMO_TTL);
    let dns = load::DnsDirect { cloud: cloud.addr, share: Arc::new(move || in_effect.share()) };
    let check = load::PinCheck { cookie: opts.pin_token.then(|| DEMO_PIN_COOKIE.to_string()), pin_after_write };
    let load = tokio::spawn(load::run_with_dns(plan, targets.clone(), results.clone(), Some(dns), Some(check)));
    report_live(&server, &onprem, &cloud, &results, &load, &sim).await;
    let _ = load.await;
    let seconds = lock(&results.seconds).clone();
    println!("\n{}", summary(&plan, &seconds));
    println!(
        "pin violations: {} of {} reads through Spillway within pin_after_write ({:?}) of the same session's write were served by the cloud ({} instance{}, {})",
        results.pin_violations.load(Relaxed),
        results.pinned_reads.load(Relaxed),
        pin_after_write,
        targets.len(),
        if targets.len() == 1 { "" } else { "s" },
        if opts.pin_token { "signed pin cookie" } else { "in-memory pins only" }
    );
    for o in &others {
        o.server.shutdown(Duration::from_secs(2)).await;
    }
    server.shutdown(Duration::from_secs(2)).await;
    // The config watchers go first: removing the files is no reload.
    drop((others, running));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(seconds)
}

/// Writes a secret readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())
}

fn free_or_any(addr: &str) -> SocketAddr {
    let want: SocketAddr = addr.parse().expect("static address");
    match std::net::TcpListener::bind(want) {
        Ok(_) => want,
        Err(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

fn header() -> String {
    format!(
        "{:>4} {:>8} {:>8} {:>8} {:>6} {:>11} {:>7} {:>7}  {:<24} {}",
        "t", "offered", "on-prem", "cloud", "errors", "inflt/limit", "p50", "p99", "mode (pressure)", "aws (simulated)"
    )
}

async fn report_live(
    server: &Server,
    onprem: &Tier,
    cloud: &Tier,
    results: &Results,
    load: &tokio::task::JoinHandle<()>,
    sim: &aws_sim::SimAws,
) {
    let start = Instant::now();
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
    let (mut last_on, mut last_cloud) = (0, 0);
    let mut second = 0usize;
    let (mut peak_desired, mut peak_cloud) = (0, 0);
    while !load.is_finished() {
        tick.tick().await;
        let on = onprem.served.load(Relaxed);
        let cl = cloud.served.load(Relaxed);
        let rt = server.data.runtime.load();
        let view = rt.gates.get("onprem").map(|g| g.view());
        let mut s = lock(&results.seconds).get(second).cloned().unwrap_or_default();
        let p50 = load::quantile(&mut s.latencies_us, 0.5).map_or("-".into(), ms);
        let p99 = load::quantile(&mut s.latencies_us, 0.99).map_or("-".into(), ms);
        let (inflight, mode) = match &view {
            Some(v) => (format!("{}/{}", v.in_flight, v.limit), format!("{} ({})", v.mode.as_str(), v.pressure)),
            None => ("-".into(), "-".into()),
        };
        let weights: Vec<String> = sim.weights().into_iter().map(|(id, w)| format!("{id}={w}")).collect();
        let aws = format!("asg={} dns[{}]", sim.desired(), weights.join(" "));
        println!(
            "{:>3}s {:>6}/s {:>6}/s {:>6}/s {:>6} {:>11} {:>7} {:>7}  {:<24} {}",
            start.elapsed().as_secs(),
            s.sent,
            on - last_on,
            cl - last_cloud,
            s.errors,
            inflight,
            p50,
            p99,
            mode,
            aws
        );
        peak_desired = peak_desired.max(sim.desired());
        peak_cloud = peak_cloud.max(cl - last_cloud);
        (last_on, last_cloud) = (on, cl);
        second += 1;
    }
    // 100 req/s per instance, 20 % headroom: `[scale]` above.
    let needed = (peak_cloud as f64 * 1.2 / 100.0).ceil();
    println!("\npeak desired capacity {peak_desired}; peak cloud load {peak_cloud} req/s needs {needed} instances (100 req/s each, 20 % headroom)");
}

fn ms(d: Duration) -> String {
    format!("{:.0}ms", d.as_secs_f64() * 1e3)
}

/// The summary table: one row per phase of the burst, and a total.
pub fn summary(plan: &LoadPlan, seconds: &[Second]) -> String {
    let total = plan.duration.as_secs_f64();
    let phases = [
        ("base", 0.0, 0.15),
        ("ramp up", 0.15, 0.35),
        ("peak", 0.35, 0.65),
        ("ramp down", 0.65, 0.85),
        ("base", 0.85, 1.01),
        ("total", 0.0, 1.01),
    ];
    let mut out = format!(
        "{:<10} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8}\n",
        "phase", "requests", "on-prem", "cloud", "errors", "p50", "p99", "p99.9"
    );
    for (name, from, to) in phases {
        let rows = seconds.iter().enumerate().filter(|(i, _)| {
            let x = *i as f64 / total;
            x >= from && x < to
        });
        let mut agg = Second::default();
        for (_, s) in rows {
            agg.sent += s.sent;
            agg.errors += s.errors;
            agg.onprem += s.onprem;
            agg.cloud += s.cloud;
            agg.latencies_us.extend_from_slice(&s.latencies_us);
        }
        let q = |v: &mut Vec<u32>, q| load::quantile(v, q).map_or("-".to_string(), ms);
        let mut l = agg.latencies_us;
        out.push_str(&format!(
            "{:<10} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8}\n",
            name,
            agg.sent,
            agg.onprem,
            agg.cloud,
            agg.errors,
            q(&mut l, 0.5),
            q(&mut l, 0.99),
            q(&mut l, 0.999)
        ));
    }
    out
}
