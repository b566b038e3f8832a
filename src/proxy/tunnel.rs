//! Upgraded connections (WebSocket): the client and upstream halves joined,
//! bytes copied both ways until either side closes. A tunnel stays inside
//! the listener's limits:
//! - it holds its client connection's `ConnInfo`, so the connection permit
//!   (`max_connections`) and the open-connection count (drain waits for it)
//!   are kept until it ends, and a tunnel permit (`max_tunnels`);
//! - it is closed after `tunnel_idle_timeout` with no byte either way, when
//!   one side has taken nothing for `client_send_timeout` while the other
//!   had bytes for it, and at the drain deadline on shutdown;
//! - both sockets have TCP keep-alive (set at accept and at connect), so a
//!   peer that vanished without a FIN is found.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::{watch, OwnedSemaphorePermit};

use super::idle::{Activity, IdleIo};
use super::ConnInfo;
use crate::telemetry::catalog;
use crate::upstream::client::Upgraded;

/// A client's accepted upgrade request, with what its tunnel will hold.
pub(crate) struct Upgrade {
    pub(crate) on: OnUpgrade,
    pub(crate) conn: Arc<ConnInfo>,
    pub(crate) permit: OwnedSemaphorePermit,
    pub(crate) limits: Limits,
}

/// When a tunnel is closed.
pub(crate) struct Limits {
    pub(crate) idle: Duration,
    pub(crate) send: Duration,
    /// The server's drain signal and how long draining may take.
    pub(crate) drain: watch::Receiver<bool>,
    pub(crate) grace: Duration,
}

/// Starts the tunnel's task.
pub(crate) fn spawn(up: Upgrade, upstream: Upgraded, pool: String) {
    tokio::spawn(run(up, upstream, pool));
}

async fn run(up: Upgrade, upstream: Upgraded, pool: String) {
    let Upgrade { on, conn, permit, limits } = up;
    let client = match on.await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%pool, error = %e, "upgrade failed");
            return;
        }
    };
    let _open = Open::new();
    let (to_client, to_upstream) = (Activity::new(), Activity::new());
    let mut client = IdleIo::new(TokioIo::new(client), to_client.clone());
    let Upgraded { io, buffered } = upstream;
    let mut upstream = IdleIo::new(io, to_upstream.clone());
    // Bytes of the new protocol that came with the 101 go first.
    if !buffered.is_empty() {
        let first = tokio::io::AsyncWriteExt::write_all(&mut client, &buffered);
        match tokio::time::timeout(limits.send, first).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return tracing::debug!(%pool, error = %e, "upgraded connection ended with an error"),
            Err(_) => return tracing::debug!(%pool, "upgraded client took nothing: closed"),
        }
    }
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match copied {
            Ok((up, down)) => tracing::debug!(%pool, up, down, "upgraded connection closed"),
            Err(e) => tracing::debug!(%pool, error = %e, "upgraded connection ended with an error"),
        },
        why = watch(&to_client, &to_upstream, limits) => {
            tracing::debug!(%pool, client = %conn.remote, reason = why, "upgraded connection closed by Spillway");
            metrics::counter!(catalog::TUNNELS_CLOSED, "reason" => why).increment(1);
        }
    }
    drop(permit);
    drop(conn);
}

/// Waits for a reason to close the tunnel.
async fn watch(to_client: &Activity, to_upstream: &Activity, mut limits: Limits) -> &'static str {
    let every = (limits.idle.min(limits.send) / 3).max(Duration::from_millis(20));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut seen = (to_client.moves(), to_upstream.moves());
    let mut quiet_since: Option<Instant> = None;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if deadline.is_none() && *limits.drain.borrow_and_update() {
            deadline = Some(tokio::time::Instant::now() + limits.grace);
        }
        let drained = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = drained => return "drain",
            changed = limits.drain.changed(), if deadline.is_none() => {
                if changed.is_err() {
                    deadline = Some(tokio::time::Instant::now() + limits.grace);
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        if to_client.blocked_for(now) > limits.send || to_upstream.blocked_for(now) > limits.send {
            return "send_timeout";
        }
        let moves = (to_client.moves(), to_upstream.moves());
        quiet_since = if moves == seen { quiet_since.or(Some(now)) } else { None };
        seen = moves;
        if quiet_since.is_some_and(|since| now - since >= limits.idle) {
            return "idle";
        }
    }
}

/// One open tunnel in the `spillway_upgraded_connections` gauge.
struct Open;

impl Open {
    fn new() -> Self {
        metrics::gauge!(catalog::UPGRADED_CONNECTIONS).increment(1.0);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!(catalog::UPGRADED_CONNECTIONS).decrement(1.0);
    }
}
