//! `spillway-burstbench`: the burst benchmark's moving parts as standalone
//! processes, so that `benches/burst/run` can put Spillway (spill on or off)
//! or HAProxy between the same origins and the same load.
//!
//! - `tier --role onprem|cloud`: a simulated tier (`spillway::demo::tier`),
//!   defaults from `spillway demo`; prints `listening <addr>`, and on SIGTERM
//!   or SIGINT `served <n> peak_in_flight <n>` (the exact high-water mark of
//!   requests in the tier) before it exits.
//! - `load --target ADDR`: the demo's open-loop game-time burst
//!   (`spillway::demo::load`) against ADDR; prints one summary line (TSV with
//!   a header, or JSON).
//!
//! A bench tool, not part of the proxy: it never runs in production.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use spillway::demo::load::{self, LoadPlan, Results};
use spillway::demo::tier::{Tier, TierSpec};
use spillway::sync::lock;

#[derive(Parser)]
#[command(name = "spillway-burstbench", about = "Simulated tiers and an open-loop burst, for benches/burst/run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a simulated web tier until SIGTERM/SIGINT.
    Tier(TierArgs),
    /// Drive a game-time burst (base, ramp, peak, ramp, base) and summarise it.
    Load(LoadArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Role {
    Onprem,
    Cloud,
}

#[derive(clap::Args)]
struct TierArgs {
    #[arg(long, value_enum)]
    role: Role,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Concurrent workers (default: the demo's, 16 on-prem, 256 cloud).
    #[arg(long)]
    workers: Option<usize>,
    /// Service time on an idle tier (default 20ms).
    #[arg(long, value_parser = parse_duration)]
    base: Option<Duration>,
    /// Extra service time at full load, as a multiple of base (default 1.0 on-prem, 0.5 cloud).
    #[arg(long)]
    slowdown: Option<f64>,
    /// Round-trip network latency added to each request (default 0 on-prem, 30ms cloud).
    #[arg(long, value_parser = parse_duration)]
    network: Option<Duration>,
    /// Replica lag reported on /healthz in x-replica-lag, seconds (default: none on-prem, 2 cloud).
    #[arg(long)]
    replica_lag: Option<f64>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Tsv,
    Json,
}

#[derive(clap::Args)]
struct LoadArgs {
    #[arg(long)]
    target: SocketAddr,
    /// Length of the burst: 15 % base, 20 % ramp up, 30 % peak, 20 % ramp down, 15 % base.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long)]
    peak_rps: f64,
    /// Offered load before and after the burst (default: a sixth of the peak).
    #[arg(long)]
    base_rps: Option<f64>,
    /// Share of POSTs (the rest are GETs).
    #[arg(long, default_value_t = 0.03)]
    write_share: f64,
    #[arg(long, default_value_t = 50_000)]
    sessions: u32,
    /// Latency SLO for the over-SLO count.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    slo: Duration,
    #[arg(long, value_enum, default_value = "tsv")]
    format: Format,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    spillway::config::parse_duration(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spillway-burstbench: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Tier(args) => tier(args).await,
            Command::Load(args) => load(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spillway-burstbench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn spec(args: &TierArgs) -> TierSpec {
    let mut spec = match args.role {
        Role::Onprem => spillway::demo::onprem_spec(),
        Role::Cloud => spillway::demo::cloud_spec(),
    };
    spec.workers = args.workers.unwrap_or(spec.workers);
    spec.base = args.base.unwrap_or(spec.base);
    spec.slowdown = args.slowdown.unwrap_or(spec.slowdown);
    spec.network = args.network.unwrap_or(spec.network);
    spec.replica_lag = args.replica_lag.or(spec.replica_lag);
    spec
}

async fn tier(args: TierArgs) -> Result<(), String> {
    let spec = spec(&args);
    if spec.workers == 0 || spec.slowdown.is_nan() || spec.slowdown < 0.0 {
        return Err("--workers must be > 0 and --slowdown >= 0".into());
    }
    let tier: Arc<Tier> = Tier::start_at(spec, args.listen).await.map_err(|e| format!("bind {}: {e}", args.listen))?;
    println!("listening {}", tier.addr);
    eprintln!(
        "tier {}: {} workers, {:?} base, x{:.1} at full load, +{:?} network, ~{:.0} req/s capacity",
        tier.spec.name,
        tier.spec.workers,
        tier.spec.base,
        1.0 + tier.spec.slowdown,
        tier.spec.network,
        tier.spec.capacity_rps()
    );
    wait_for_signal().await?;
    tier.stop();
    println!("served {} peak_in_flight {}", tier.served.load(Relaxed), tier.take_peak());
    Ok(())
}

async fn wait_for_signal() -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn load(args: LoadArgs) -> Result<(), String> {
    if args.peak_rps.is_nan() || args.peak_rps <= 0.0 || !(0.0..=1.0).contains(&args.write_share) {
        return Err("--peak-rps must be > 0 and --write-share within [0, 1]".into());
    }
    let plan = LoadPlan {
        duration: args.duration,
        base_rps: args.base_rps.unwrap_or(args.peak_rps / 6.0),
        peak_rps: args.peak_rps,
        write_share: args.write_share,
        sessions: args.sessions,
    };
    let results = Arc::new(Results::default());
    load::run(plan, args.target, results.clone()).await;
    let seconds = lock(&results.seconds).clone();
    let s = load::summarize(&seconds, args.slo);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&s).map_err(|e| e.to_string())?),
        Format::Tsv => {
            println!("requests\tonprem\tcloud\terrors\tp50_ms\tp99_ms\tp999_ms\tmax_ms\tover_slo");
            println!(
                "{}\t{}\t{}\t{}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{}",
                s.requests, s.onprem, s.cloud, s.errors, s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms, s.over_slo
            );
        }
    }
    Ok(())
}
