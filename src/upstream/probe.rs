//! Active health checks: one task per pool probes every endpoint each
//! `interval` with `GET path`, within `timeout`. 2xx/3xx is healthy. When the
//! pool has a `lag_header`, its value (seconds behind the primary database)
//! is recorded on the endpoint for the spill gate.
//!
//! The task holds only a `Weak` to its pool and ends when the snapshot that
//! owns the pool is gone (after a reload), so probes never outlive their pool.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use http::{header, Request};

use crate::config::HealthConfig;

use crate::telemetry::catalog;
use crate::telemetry::error_chain;

use super::client::{RequestBody, Timeouts};
use super::endpoint::Endpoint;
use super::h1;
use super::health::Probe;
use super::pool::Pool;

/// Starts probing the pool if it has health checks configured.
pub(crate) fn spawn(pool: &Arc<Pool>) {
    let Some(health) = pool.config.health.clone() else { return };
    let weak = Arc::downgrade(pool);
    tokio::spawn(async move { run(weak, health).await });
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
    let (ok, detail, lag) = match result {
        Ok(Ok((status, lag))) => (status.is_success() || status.is_redirection(), status.to_string(), lag),
        Ok(Err(e)) => (false, e, None),
        Err(_) => (false, format!("timed out after {:?}", health.timeout), None),
    };
    if health.lag_header.is_some() {
        endpoint.set_lag(lag);
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
) -> Result<(http::StatusCode, Option<Duration>), String> {
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
        )
        .await
        .map_err(|e| error_chain(e.error()))?;
    let lag = health
        .lag_header
        .as_ref()
        .and_then(|name| resp.headers().get(name.as_str()))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map(Duration::from_secs_f64);
    let status = resp.status();
    let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
    Ok((status, lag))
}
