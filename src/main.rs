//! The `spillway` command: `run`, `upgrade`, `sentinel`, `check`, `demo`, `drill`, `healthcheck`, `--version`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "spillway", version, about = "Hybrid burst-routing edge proxy: on-prem first, overflow to AWS")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy with a config file (hot-reloaded on change and SIGHUP).
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Worker threads (overrides [runtime] worker_threads; 0 = one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Take the listeners and state over from the Spillway serving this
        /// upgrade socket (it drains and exits once this process is ready).
        #[arg(long, value_name = "SOCKET")]
        upgrade_from: Option<PathBuf>,
    },
    /// Upgrade the running Spillway without dropping a connection: it starts its successor (the binary now
    /// installed at its path) on `[runtime] upgrade_socket`, hands it the listeners and its state, drains
    /// and exits. Exit 0 when the successor took over; on failure the running process keeps serving.
    Upgrade {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a self-contained burst demo: simulated on-prem and cloud tiers, Spillway between them, a game-time burst.
    Demo {
        /// How long the burst lasts (e.g. "60s", "2m").
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: Duration,
        /// Peak offered load in requests/s (default: three times the on-prem capacity).
        #[arg(long)]
        peak_rps: Option<f64>,
        /// Proxy listen address (default 127.0.0.1:8080, or a free port if taken).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Spillways sharing the pin key, clients spread round-robin over them (1 to 4).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=4))]
        instances: u8,
        /// No signed pin cookie: each instance knows only the writes it saw (to compare).
        #[arg(long)]
        without_pin_token: bool,
        /// Distinct client sessions (default 50000).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        sessions: Option<u32>,
        /// Workers of the simulated cloud tier (default 256); e.g. 24 for a cold cloud that cannot take the overflow.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
        cloud_workers: Option<u32>,
    },
    /// Run only the coordination role (heartbeat, lease, takeover of lost sites), with no listeners.
    Sentinel {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and exit: 0 when valid, 1 with every problem listed otherwise.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Ask a running Spillway's admin `/healthz` (a container HEALTHCHECK): 0 on 200, 1 otherwise.
    Healthcheck {
        /// The admin listener (`[admin] listen`).
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: std::net::SocketAddr,
        /// The admin token file, when `[admin] token_file` is set.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// How long to wait for the answer.
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Run a DR drill against the config's [scale] group: raise it to dr_capacity, time it, restore it,
    /// print the report (JSON). No proxy runs and no user moves. Exit 0 when the drill passed.
    Drill {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Healthcheck { admin, token_file, timeout } => match healthcheck(admin, token_file, timeout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spillway healthcheck: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Demo { duration, peak_rps, listen, instances, without_pin_token, sessions, cloud_workers } => {
            match demo(spillway::demo::DemoOptions {
                duration,
                peak_rps,
                listen,
                instances: usize::from(instances),
                pin_token: !without_pin_token,
                sessions,
                cloud_workers: cloud_workers.map(|w| w as usize),
            }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("spillway: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sentinel { config } => match sentinel(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spillway: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Drill { config } => match drill(&config) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("spillway: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Upgrade { config } => match upgrade(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spillway upgrade: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config, threads, upgrade_from } => match run(&config, threads, upgrade_from.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spillway: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn drill(config: &std::path::Path) -> anyhow::Result<bool> {
    spillway::telemetry::init_logging("warn");
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("building the tokio runtime")?;
    let (passed, report) = rt.block_on(spillway::app::drill::drill_config(config))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(passed)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    spillway::config::parse_duration(text)
}

fn demo(opts: spillway::demo::DemoOptions) -> anyhow::Result<()> {
    spillway::telemetry::init_logging("warn");
    spillway::tls::install_default_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("building the tokio runtime")?;
    rt.block_on(async move {
        let metrics = spillway::telemetry::init_metrics();
        spillway::demo::run(opts, metrics).await?;
        anyhow::Ok(())
    })
}

/// `GET /healthz` over plain TCP with std only (the image has no shell or
/// curl): succeeds on a `200` status line within `timeout`.
fn healthcheck(admin: std::net::SocketAddr, token_file: Option<PathBuf>, timeout: Duration) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let token = match token_file {
        Some(p) => Some(std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let auth = token.map(|t| format!("Authorization: Bearer {}\r\n", t.trim())).unwrap_or_default();
    let mut tcp =
        std::net::TcpStream::connect_timeout(&admin, timeout).with_context(|| format!("connecting to {admin}"))?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    write!(tcp, "GET /healthz HTTP/1.0\r\nHost: {admin}\r\n{auth}\r\n")?;
    let mut head = Vec::new();
    tcp.take(64).read_to_end(&mut head).context("reading the answer")?;
    let line = String::from_utf8_lossy(&head);
    let status = line.split_whitespace().nth(1).unwrap_or("none");
    anyhow::ensure!(status == "200", "{admin} /healthz answered {status}");
    Ok(())
}

fn check(path: &std::path::Path) -> ExitCode {
    match spillway::config::load(path) {
        Ok(loaded) => {
            let c = &loaded.config;
            println!(
                "{}: ok (version {}): {} listener(s), {} pool(s), {} route(s), spill {:?} max_in_flight={}",
                path.display(),
                loaded.version,
                c.listeners.len(),
                c.pools.len(),
                c.routes.len(),
                c.spill.mode,
                c.spill.max_in_flight
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn upgrade(path: &std::path::Path) -> anyhow::Result<()> {
    let loaded = spillway::config::load(path)?;
    let socket = loaded.config.runtime.upgrade_socket.context("the config has no [runtime] upgrade_socket")?;
    match spillway::app::upgrade::request(&socket)? {
        spillway::app::upgrade::UpgradeOutcome::HandedOver { pid } => {
            println!("upgraded: pid {pid} took over; the previous process drains and exits");
            Ok(())
        }
        spillway::app::upgrade::UpgradeOutcome::Failed { error } => {
            anyhow::bail!("{error} (the running process keeps serving)")
        }
    }
}

/// How this process starts its successor: the same binary path (where a
/// new release is installed), the same config file and thread count.
fn relaunch(path: &std::path::Path, threads: Option<usize>) -> Option<spillway::app::upgrade::Relaunch> {
    let exe = std::env::current_exe().ok()?;
    let mut args: Vec<std::ffi::OsString> = vec!["run".into(), "--config".into(), path.into()];
    if let Some(n) = threads {
        args.extend(["--threads".into(), n.to_string().into()]);
    }
    Some(spillway::app::upgrade::Relaunch { exe, args })
}

fn run(
    path: &std::path::Path,
    threads_arg: Option<usize>,
    upgrade_from: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    spillway::telemetry::init_logging("info");
    spillway::tls::install_default_provider();
    // A config that does not validate never touches the running process.
    let loaded = spillway::config::load(path)?;
    let takeover = match upgrade_from {
        Some(socket) => Some(
            spillway::app::upgrade::take_over(socket)
                .with_context(|| format!("taking over from {}", socket.display()))?,
        ),
        None => None,
    };
    let threads = threads_arg.filter(|n| *n > 0).or(loaded.config.runtime.worker_threads);
    let rt = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
        None => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
    .context("building the tokio runtime")?;
    let options = spillway::StartOptions { takeover, relaunch: relaunch(path, threads_arg) };
    rt.block_on(async move {
        let metrics = spillway::telemetry::init_metrics();
        let (drain_timeout, drain_delay) = (loaded.config.runtime.drain_timeout, loaded.config.runtime.drain_delay);
        let running = spillway::start_process(loaded, metrics, options).await?;
        println!("ready");
        spillway::app::upgrade::systemd::notify_ready();
        let handed_over = tokio::select! {
            r = wait_for_shutdown() => { r?; false }
            () = running.handed_over() => true,
        };
        running.begin_shutdown();
        if !handed_over && !drain_delay.is_zero() {
            // Health checkers take the edge out of rotation meanwhile; a
            // second signal cuts the wait short. (After a handover the
            // successor accepts on the same sockets: no delay needed.)
            tracing::info!(?drain_delay, "shutting down: reporting not ready before draining");
            tokio::select! {
                () = tokio::time::sleep(drain_delay) => {}
                r = wait_for_shutdown() => r?,
            }
        }
        tracing::info!(?drain_timeout, handed_over, "shutting down: draining connections");
        let left = running.shutdown(drain_timeout).await;
        if left > 0 {
            tracing::warn!(left, "drain timeout reached; closing remaining connections");
        } else {
            tracing::info!("drained; bye");
        }
        // Give the log a moment to flush.
        tokio::time::sleep(Duration::from_millis(10)).await;
        anyhow::Ok(())
    })
}

fn sentinel(path: &std::path::Path) -> anyhow::Result<()> {
    spillway::telemetry::init_logging("info");
    spillway::tls::install_default_provider();
    let loaded = spillway::config::load(path)?;
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("building the tokio runtime")?;
    rt.block_on(async move {
        let _metrics = spillway::telemetry::init_metrics();
        let sentinel = spillway::sentinel(loaded).await?;
        println!("ready");
        wait_for_shutdown().await?;
        tracing::info!("sentinel shutting down");
        sentinel.shutdown().await;
        anyhow::Ok(())
    })
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
