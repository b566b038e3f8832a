//! What an upstream's answer or failure changes, in one place for the
//! forward loop: the endpoint's passive health (and ejection), the gate's
//! outcome and latency sample, the retry counters, and the error the
//! client gets for a request that is not sent again.

use std::time::Instant;

use super::error::ProxyError;
use crate::burst::Outcome;
use crate::gate::InFlight;
use crate::telemetry::{self, catalog, error_chain, LogBudget};
use crate::upstream::client::{SendFailure, UpstreamError};
use crate::upstream::endpoint::Pending;
use crate::upstream::{Endpoint, Pool};

pub(super) fn note_resend(pool: &Pool, endpoint: &Endpoint, e: &UpstreamError) {
    tracing::debug!(pool = %pool.name, endpoint = %endpoint.addr, error = %e, "pooled connection was closed; resending");
    metrics::counter!(catalog::RETRIES, "reason" => "stale_connection").increment(1);
}

/// An answer came: its latency and whether it counts as a success for the
/// endpoint's passive health and the gate.
pub(super) fn record_answer(
    pool: &Pool,
    endpoint: &Endpoint,
    pending: Pending<'_>,
    started: Instant,
    status: http::StatusCode,
    guard: &InFlight,
    now: Instant,
) {
    let first_byte = now.saturating_duration_since(started);
    pending.finish(first_byte, now);
    pool.metrics.first_byte.record(first_byte);
    let ok = !status.is_server_error();
    record_passive(pool, endpoint, !pool.is_endpoint_fault(status), now);
    guard.record(if ok { Outcome::Ok } else { Outcome::ServerError }, now);
}

pub(super) fn note_retry_connect(pool: &Pool, endpoint: &Endpoint, detail: &str, now: Instant) {
    static RETRYING: LogBudget = LogBudget::new(20);
    if let Some(suppressed) = RETRYING.admit(telemetry::secs(now)) {
        tracing::info!(pool = %pool.name, endpoint = %endpoint.addr, error = %detail, suppressed, "connect failed; retrying on another endpoint");
    }
    metrics::counter!(catalog::RETRIES, "reason" => "connect").increment(1);
}

/// The error for a request that is not sent again. The client's upload
/// failing (it went away, sent a broken body, or too slowly) or its
/// framing being unforwardable (a transfer coding other than chunked) is
/// not the upstream's fault: no passive failure and no latency sample.
/// Anything else counts against the endpoint.
pub(super) fn give_up(
    pool: &Pool,
    endpoint: &Endpoint,
    failure: SendFailure,
    pending: Pending<'_>,
    guard: &InFlight,
    now: Instant,
) -> ProxyError {
    let err = match failure.error() {
        UpstreamError::ClientBody(e) => return ProxyError::ClientBody { detail: error_chain(&**e) },
        UpstreamError::ClientBodyTimeout(timeout) => return ProxyError::ClientBodyTimeout { timeout: *timeout },
        UpstreamError::RequestCoding(e) => return ProxyError::from(e),
        UpstreamError::ResponseTimeout(timeout) => {
            ProxyError::UpstreamTimeout { pool: pool.name.clone(), endpoint: endpoint.addr.clone(), timeout: *timeout }
        }
        e => ProxyError::Upstream { pool: pool.name.clone(), endpoint: endpoint.addr.clone(), detail: error_chain(e) },
    };
    drop(pending);
    record_passive(pool, endpoint, false, now);
    guard.record(Outcome::Failed, now);
    err
}

pub(super) fn record_passive(pool: &Pool, endpoint: &Endpoint, ok: bool, now: Instant) {
    if pool.record_result(endpoint, ok, now) {
        tracing::warn!(pool = %pool.name, endpoint = %endpoint.addr, "endpoint ejected after consecutive failures");
        metrics::counter!(catalog::ENDPOINT_EJECTIONS, "pool" => pool.name.clone()).increment(1);
    }
}
