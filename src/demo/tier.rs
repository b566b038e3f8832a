//! Simulated web tiers for the demo and the burst benchmark.
//!
//! A tier behaves like an Apache prefork pool: `workers` requests are served
//! at once, the rest wait for a worker, and service time grows with the number
//! of busy workers (CPU contention). The cloud tier adds network latency and
//! reports a replica lag on its health check.
//!
//! For tests and the burst benchmark a tier also keeps an exact high-water
//! mark of its in-flight requests (arrived, waiting or busy; probes excluded),
//! and can be stopped cleanly and started again on the same address (an
//! origin going down for DR).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::proxy::body::Body;

#[derive(Debug, Clone)]
pub struct TierSpec {
    pub name: &'static str,
    pub workers: usize,
    /// Service time of one request on an idle tier.
    pub base: Duration,
    /// Extra service time at full load, as a multiple of `base`.
    pub slowdown: f64,
    /// Round-trip network latency added to every request (not to probes).
    pub network: Duration,
    /// Replica lag reported by `/healthz` in `x-replica-lag`, in seconds.
    pub replica_lag: Option<f64>,
}

impl TierSpec {
    /// Requests per second the tier sustains with every worker busy.
    pub fn capacity_rps(&self) -> f64 {
        let full = self.base.as_secs_f64() * (1.0 + self.slowdown);
        self.workers as f64 / full
    }

    /// Pure: service time with `busy` workers (this request included).
    pub fn service_time(&self, busy: u32) -> Duration {
        let load = (busy as f64 / self.workers as f64).min(1.0);
        self.base.mul_f64(1.0 + self.slowdown * load)
    }
}

/// A running tier and its counters.
pub struct Tier {
    pub spec: TierSpec,
    pub addr: SocketAddr,
    pub served: AtomicU64,
    pub busy: AtomicU32,
    pub waiting: AtomicU32,
    workers: Semaphore,
    /// Requests between arrival and the end of their service.
    in_flight: AtomicU32,
    /// Highest `in_flight` since the last [`Tier::take_peak`].
    peak: AtomicU32,
    stop: CancellationToken,
}

impl Tier {
    pub async fn start(spec: TierSpec) -> std::io::Result<Arc<Tier>> {
        Self::start_at(spec, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a tier on `addr` (port 0: any free port), e.g. again on the
    /// address of a tier that was stopped.
    pub async fn start_at(spec: TierSpec, addr: SocketAddr) -> std::io::Result<Arc<Tier>> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let tier = Arc::new(Tier {
            addr: listener.local_addr()?,
            served: AtomicU64::new(0),
            busy: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            workers: Semaphore::new(spec.workers),
            in_flight: AtomicU32::new(0),
            peak: AtomicU32::new(0),
            stop: CancellationToken::new(),
            spec,
        });
        tokio::spawn(tier.clone().accept(listener));
        Ok(tier)
    }

    async fn accept(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let tcp = tokio::select! {
                _ = self.stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(_) => continue,
                },
            };
            let _ = tcp.set_nodelay(true);
            let t = self.clone();
            tokio::spawn(async move {
                let stop = t.stop.clone();
                let svc = service_fn(move |req| t.clone().handle(req));
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(tcp), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = stop.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
    }

    /// Stops the tier: no new connection is accepted (the port is released),
    /// requests in progress finish, and every connection is then closed.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Requests in the tier now: arrived and not yet served (waiting or busy).
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    /// The highest in-flight count since the previous call (exact, not sampled).
    pub fn take_peak(&self) -> u32 {
        self.peak.swap(self.in_flight.load(Relaxed), Relaxed)
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        if req.uri().path() == "/healthz" {
            let mut resp = Response::new(Body::full("ok\n"));
            if let Some(lag) = self.spec.replica_lag {
                resp.headers_mut().insert("x-replica-lag", lag.to_string().parse().expect("number is a valid header"));
            }
            return Ok(resp);
        }
        let half = self.spec.network / 2;
        tokio::time::sleep(half).await;
        let now_in = self.in_flight.fetch_add(1, Relaxed) + 1;
        self.peak.fetch_max(now_in, Relaxed);
        self.waiting.fetch_add(1, Relaxed);
        let permit = self.workers.acquire().await.expect("semaphore never closes");
        self.waiting.fetch_sub(1, Relaxed);
        let busy = self.busy.fetch_add(1, Relaxed) + 1;
        tokio::time::sleep(self.spec.service_time(busy)).await;
        self.busy.fetch_sub(1, Relaxed);
        self.in_flight.fetch_sub(1, Relaxed);
        drop(permit);
        // Drain the request body (writes carry one).
        let _ = http_body_util::BodyExt::collect(req.into_body()).await;
        tokio::time::sleep(half).await;
        self.served.fetch_add(1, Relaxed);
        let mut resp = Response::new(Body::full(format!("served by {}\n", self.spec.name)));
        resp.headers_mut().insert("x-served-by", self.spec.name.parse().expect("static name is a valid header"));
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TierSpec {
        TierSpec {
            name: "t",
            workers: 10,
            base: Duration::from_millis(20),
            slowdown: 1.0,
            network: Duration::ZERO,
            replica_lag: None,
        }
    }

    #[test]
    fn service_time_rises_with_load_and_caps() {
        let s = spec();
        assert_eq!(s.service_time(1), Duration::from_millis(22));
        assert_eq!(s.service_time(10), Duration::from_millis(40));
        assert_eq!(s.service_time(50), Duration::from_millis(40));
    }

    #[test]
    fn capacity_is_workers_over_full_load_service_time() {
        assert!((spec().capacity_rps() - 250.0).abs() < 1e-9);
    }
}
