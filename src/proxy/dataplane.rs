//! What the data plane is handed: the runtime snapshot it loads once per
//! request, the live gates and read-after-write pins, the open-connection
//! count, the shutdown flag, the drain signal and the access log's queue. The listeners and the service see nothing
//! else of the server that owns it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use arc_swap::ArcSwap;
use tokio::sync::{watch, Notify};

use crate::accesslog::AccessLog;
use crate::config::raw::DEFAULT_ACCESS_LOG_QUEUE;
use crate::gate::Gates;
use crate::runtime::Runtime;
use crate::telemetry::catalog;

pub(crate) struct DataPlane {
    /// The current snapshot; a reload swaps it whole.
    pub(crate) runtime: ArcSwap<Runtime>,
    /// Gate state per pool and the read-after-write pins (outlive reloads).
    pub(crate) gates: Gates,
    /// The access log's queue (its capacity is read at start).
    pub(crate) access_log: AccessLog,
    pub(crate) connections: Connections,
    /// `true` once the server drains: connections finish and close.
    pub(crate) drain: watch::Sender<bool>,
    /// `true` from the moment shutdown begins, `runtime.drain_delay`
    /// before the drain: readiness answers 503 while requests are served.
    shutting_down: AtomicBool,
    /// `true` once the drain began (as `drain`, for the request path:
    /// HTTP/1.x answers then say `Connection: close`).
    closing: AtomicBool,
}

impl DataPlane {
    pub(crate) fn new(runtime: Runtime, gates: Gates) -> Self {
        let queue = runtime.config.access_log.as_ref().map_or(DEFAULT_ACCESS_LOG_QUEUE, |a| a.queue);
        DataPlane {
            access_log: AccessLog::new(queue),
            runtime: ArcSwap::from_pointee(runtime),
            gates,
            connections: Connections::default(),
            drain: watch::channel(false).0,
            shutting_down: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        }
    }

    /// Shutdown has begun (the drain may not have yet): not ready.
    pub(crate) fn draining(&self) -> bool {
        self.shutting_down.load(SeqCst) || *self.drain.borrow()
    }

    /// Marks shutdown begun; the drain follows ([`DataPlane::begin_drain`]).
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, SeqCst);
    }

    /// Starts the drain: every connection is asked to finish (HTTP/2 at
    /// once with GOAWAY; HTTP/1.x by `Connection: close` on its next
    /// answer, or when it has been quiet a moment).
    pub(crate) fn begin_drain(&self) {
        self.closing.store(true, SeqCst);
        let _ = self.drain.send(true);
    }

    /// The drain has begun (read per HTTP/1.x answer).
    #[inline]
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Counts open client connections so shutdown can wait for them.
#[derive(Default)]
pub(crate) struct Connections {
    open: AtomicUsize,
    idle: Notify,
}

/// One open client connection; dropping it gives the count back.
impl Connections {
    /// One more open connection; [`Connections::leave`] undoes it (the
    /// connection's `ConnInfo` does both).
    pub(crate) fn join(&self) {
        self.open.fetch_add(1, SeqCst);
        metrics::gauge!(catalog::CLIENT_CONNECTIONS).increment(1.0);
    }

    pub(crate) fn leave(&self) {
        metrics::gauge!(catalog::CLIENT_CONNECTIONS).decrement(1.0);
        if self.open.fetch_sub(1, SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    pub(crate) fn open(&self) -> usize {
        self.open.load(SeqCst)
    }

    /// Resolves once no connection is open.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}
