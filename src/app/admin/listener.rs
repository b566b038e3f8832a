//! The admin accept loop, bounded like the proxy's listeners: a connection
//! cap (`admin.max_connections`; over it a connection gets 503 and is
//! closed), a back-off after a failed accept (EMFILE must not spin a core),
//! a header read timeout (slowloris) and an idle timeout. HTTP/1.1 only: the
//! API's clients (curl, Prometheus, a browser) all speak it.
//!
//! The limits are read from the running snapshot at each accept, so a reload
//! changes them for new connections. A connection's place under the cap is
//! an [`AdminSlot`], given back when the connection's task ends, however it
//! ends.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::Admin;
use crate::config::AdminSettings;
use crate::proxy::idle::{Activity, IdleIo};
use crate::telemetry::catalog;

const OVER_CAPACITY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
/// The pause after a failed accept, as on the proxy's listeners.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
const MAX_HEADER_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// Open admin connections, counted against `admin.max_connections`.
#[derive(Debug, Default)]
pub(super) struct AdminConnections {
    open: AtomicUsize,
}

impl AdminConnections {
    /// A place under `max`, or `None` when all are taken.
    pub(super) fn try_enter(self: &Arc<Self>, max: usize) -> Option<AdminSlot> {
        self.open.fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1)).ok()?;
        Some(AdminSlot { of: self.clone() })
    }
}

/// One connection's place under the cap; dropping it gives the place back.
pub(super) struct AdminSlot {
    of: Arc<AdminConnections>,
}

impl Drop for AdminSlot {
    fn drop(&mut self) {
        let before = self.of.open.fetch_sub(1, Relaxed);
        debug_assert!(before > 0, "an admin slot given back twice");
    }
}

pub(super) async fn accept_loop(admin: Arc<Admin>, listener: TcpListener) {
    let conns = Arc::new(AdminConnections::default());
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(listener = "admin", error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let settings = admin.server.data.runtime.load().config.admin.clone();
        match conns.try_enter(settings.max_connections) {
            Some(slot) => {
                tokio::spawn(connection(admin.clone(), tcp, settings, slot));
            }
            None => {
                metrics::counter!(catalog::ADMIN_REFUSED, "reason" => "over_capacity").increment(1);
                tokio::spawn(reject(tcp));
            }
        }
    }
}

async fn reject(mut tcp: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(OVER_CAPACITY)).await;
    let _ = tcp.shutdown().await;
}

/// Serves one connection; closes it after `idle_timeout` without a byte read
/// or written (a request in progress is finished first).
async fn connection(admin: Arc<Admin>, tcp: TcpStream, settings: AdminSettings, _slot: AdminSlot) {
    let activity = Activity::new();
    let io = TokioIo::new(IdleIo::new(tcp, activity.clone()));
    let svc = service_fn(move |req| super::handle(admin.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true)
        .serve_connection(io, svc);
    let mut conn = std::pin::pin!(conn);
    let idle = settings.idle_timeout;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + idle, idle);
    let mut seen = activity.moves();
    let mut closing = false;
    let result = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = tick.tick(), if !closing => {
                let now = activity.moves();
                if now == seen {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                seen = now;
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(listener = "admin", error = %e, "admin connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_admits_max_and_a_dropped_slot_makes_room() {
        let conns = Arc::new(AdminConnections::default());
        let a = conns.try_enter(2).expect("first");
        let b = conns.try_enter(2).expect("second");
        assert!(conns.try_enter(2).is_none(), "over the cap");
        assert_eq!(conns.open.load(Relaxed), 2);
        drop(a);
        let c = conns.try_enter(2).expect("room again");
        assert!(conns.try_enter(3).is_some(), "a reload that raises the cap admits at once");
        drop((b, c));
        assert_eq!(conns.open.load(Relaxed), 0, "every slot given back");
    }
}
