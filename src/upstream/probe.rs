//! Active health checks: one task per pool probes every endpoint each
//! `interval` with `GET path`, within `timeout`. 2xx/3xx is healthy. When the
//! pool has a `lag_header`, its value (seconds behind the primary database)
//! is recorded on the endpoint for the spill gate; with a `role_header`,
//! whether the answer names the endpoint's database `primary_role` (for the
//! disaster-recovery state machine: a promoted cloud, an on-prem that
//! reports itself primary again).
//!
//! The task holds only a `Weak` to its pool and ends when the snapshot that
//! owns the pool is gone (after a reload), so probes never outlive their pool.
//!
//! Any answer is survivable: the lag is parsed by `health::parse_lag`
//! (clamped; NaN, negative or garbage is unknown), at most
//! `MAX_PROBE_BODY` bytes of a body are read (and thrown away), and a
//! probe loop that panics anyway is counted
//! (`spillway_health_probe_restarts_total`) and started again after one
//! interval (`supervise`), so health and lag never freeze.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use http::{header, Request};
use http_body_util::BodyExt;

use crate::config::HealthConfig;

use crate::telemetry::catalog;
use crate::telemetry::error_chain;

use super::client::{RequestBody, Timeouts};
use super::endpoint::Endpoint;
use super::h1;
use super::health::{self, Probe};
use super::pool::Pool;

/// Most bytes of a probe's response body read; the rest is not read and
/// the connection (a probe's own) is closed.
const MAX_PROBE_BODY: usize = 64 * 1024;

/// Starts probing the pool if it has health checks configured.
pub(crate) fn spawn(pool: &Arc<Pool>) {
    let Some(health) = pool.config.health.clone() else { return };
    let weak = Arc::downgrade(pool);
    let name = pool.name.clone();
    let pause = health.interval;
    tokio::spawn(supervise(name, pause, move || run(weak.clone(), health.clone())));
}

/// Runs the loop `start` makes until it returns (its pool is gone). A loop
/// that panics is counted, logged and started again after `pause`.
/// Returns how many restarts it took.
async fn supervise<F, Fut>(pool: String, pause: Duration, mut start: F) -> u32
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut restarts = 0;
    loop {
        match tokio::spawn(start()).await {
            Err(e) if e.is_panic() => {
                let panic = e.into_panic();
                let why = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("unknown panic");
                tracing::error!(%pool, panic = why, ?pause, "health probe loop failed; restarting it");
                metrics::counter!(catalog::HEALTH_PROBE_RESTARTS, "pool" => pool.clone()).increment(1);
                restarts += 1;
                tokio::time::sleep(pause).await;
            }
            // Ended (the pool is gone), or cancelled with the runtime.
            Ok(()) | Err(_) => return restarts,
        }
    }
}

/// Closes keep-alive connections idle past the pool's `idle_timeout`, so
/// quiet pools do not hold sockets the upstream has long forgotten.
pub(crate) fn spawn_sweeper(pool: &Arc<Pool>) {
    let weak = Arc::downgrade(pool);
    let every = (pool.transport.idle_timeout() / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(p) = weak.upgrade() else { return };
            let now = Instant::now();
            for e in &p.endpoints {
                e.idle.sweep(now, p.transport.idle_timeout());
            }
        }
    });
}

async fn run(pool: Weak<Pool>, health: HealthConfig) {
    loop {
        let Some(p) = pool.upgrade() else { return };
        let probes = p.endpoints.iter().map(|e| probe_one(&p, e, &health));
        futures_util::future::join_all(probes).await;
        drop(p);
        tokio::time::sleep(health.interval).await;
    }
}

async fn probe_one(pool: &Pool, endpoint: &Arc<Endpoint>, health: &HealthConfig) {
    let started = Instant::now();
    let result = tokio::time::timeout(health.timeout, send(pool, endpoint, health)).await;
    let (ok, detail, answer) = match result {
        Ok(Ok((status, answer))) => (status.is_success() || status.is_redirection(), status.to_string(), answer),
        Ok(Err(e)) => (false, e, Answer::default()),
        Err(_) => (false, format!("timed out after {:?}", health.timeout), Answer::default()),
    };
    if health.lag_header.is_some() {
        endpoint.set_lag(answer.lag);
    }
    if health.role_header.is_some() {
        endpoint.set_reports_primary(ok && answer.primary);
    }
    let elapsed = started.elapsed();
    metrics::counter!(catalog::HEALTH_PROBES, "pool" => pool.name.clone(), "ok" => if ok { "true" } else { "false" })
        .increment(1);
    if let Some(state) = endpoint.observe_probe(ok, health.healthy_after, health.unhealthy_after) {
        let up = state == Probe::Up;
        if up {
            tracing::info!(pool = %pool.name, endpoint = %endpoint.addr, ?elapsed, "endpoint healthy");
        } else {
            tracing::warn!(pool = %pool.name, endpoint = %endpoint.addr, %detail, "endpoint unhealthy");
        }
    }
}

/// One probe on a fresh connection (a pooled one could hide that new
/// connections fail), closed afterwards.
async fn send(
    pool: &Pool,
    endpoint: &Arc<Endpoint>,
    health: &HealthConfig,
) -> Result<(http::StatusCode, Answer), String> {
    let host = pool.config.tls.as_ref().and_then(|t| t.sni.clone()).unwrap_or_else(|| endpoint.addr.clone());
    let req = Request::get(health.path.as_str())
        .header(header::HOST, host)
        .header(header::USER_AGENT, "spillway-health")
        .body(RequestBody::Empty)
        .map_err(|e| e.to_string())?;
    let conn = pool.transport.connect(endpoint).await.map_err(|e| error_chain(&e))?;
    let resp = conn
        .send(
            req,
            Timeouts { upload: health.timeout, response: health.timeout },
            |parts: &http::request::Parts, out: &mut bytes::BytesMut| {
                h1::write_plain_headers(out, &parts.headers);
                // A probe's connection is its own: closed after, never pooled.
                h1::write_header(out, b"connection", b"close");
            },
            None,
        )
        .await
        .map_err(|e| error_chain(e.error()))?;
    let lag = health
        .lag_header
        .as_ref()
        .and_then(|name| resp.headers().get(name.as_str()))
        .and_then(|v| health::parse_lag(v.as_bytes()));
    let primary = health
        .role_header
        .as_ref()
        .and_then(|name| resp.headers().get(name.as_str()))
        .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(health.primary_role.as_bytes()));
    let status = resp.status();
    drain(resp.into_body(), MAX_PROBE_BODY).await;
    Ok((status, Answer { lag, primary }))
}

/// What a probe's headers said besides its status.
#[derive(Default)]
struct Answer {
    /// The replica lag (`lag_header`), if reported and readable.
    lag: Option<Duration>,
    /// The database names itself primary (`role_header` = `primary_role`).
    primary: bool,
}

/// Reads and drops at most about `limit` bytes of `body`; returns how many
/// it read. A broken body is not the probe's verdict (the status is).
async fn drain<B: http_body::Body + Unpin>(mut body: B, limit: usize) -> usize {
    let mut read = 0;
    while read < limit {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, bytes::Buf::remaining),
            Some(Err(_)) | None => break,
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

    use bytes::Bytes;
    use http_body::Frame;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_panics_is_restarted_after_a_pause_and_counted() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let started = tokio::time::Instant::now();
        let restarts = supervise("p".into(), Duration::from_secs(2), move || {
            let n = c.fetch_add(1, SeqCst);
            async move {
                assert!(n >= 2, "probe loop failure {n}");
            }
        })
        .await;
        assert_eq!((restarts, calls.load(SeqCst)), (2, 3));
        assert_eq!(started.elapsed(), Duration::from_secs(4), "one pause per restart");
        let ended = supervise("p".into(), Duration::from_secs(2), || async {}).await;
        assert_eq!(ended, 0, "a loop that ends is not restarted");
    }

    /// A body of `frames` frames of 16 KiB, counting what was polled.
    struct Endless {
        frames: usize,
        polled: Arc<AtomicU32>,
    }

    impl http_body::Body for Endless {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if self.frames == 0 {
                return std::task::Poll::Ready(None);
            }
            self.frames -= 1;
            self.polled.fetch_add(1, SeqCst);
            std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; 16 * 1024])))))
        }
    }

    #[tokio::test]
    async fn a_probe_body_is_read_up_to_its_cap_only() {
        let polled = Arc::new(AtomicU32::new(0));
        let read = drain(Endless { frames: 1_000_000, polled: polled.clone() }, MAX_PROBE_BODY).await;
        assert_eq!(read, MAX_PROBE_BODY);
        assert_eq!(polled.load(SeqCst), 4, "64 KiB in 16 KiB frames, nothing more");
        let small = drain(Endless { frames: 1, polled }, MAX_PROBE_BODY).await;
        assert_eq!(small, 16 * 1024, "a short body is read to its end");
    }
}
