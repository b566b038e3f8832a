//! The idle keep-alive connections of one endpoint (LIFO, so the warmest
//! connection goes first) and their sweep.
//!
//! Invariants: the list never holds more than the transport's `max_idle`;
//! each entry remembers its transport, so a connection made with other
//! settings (before a reload) is never handed out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::wire::Wire;
use crate::sync::lock;

/// Idle keep-alive connections of one endpoint.
#[derive(Default)]
pub(crate) struct IdleConns {
    list: Mutex<Vec<Idle>>,
}

pub(super) struct Idle {
    pub(super) wire: Wire,
    pub(super) transport: u64,
    pub(super) since: Instant,
}

impl IdleConns {
    pub(super) fn pop(&self) -> Option<Idle> {
        lock(&self.list).pop()
    }

    pub(super) fn push(&self, idle: Idle, max: usize) {
        let mut list = lock(&self.list);
        if list.len() < max {
            list.push(idle);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.list).len()
    }

    /// Closes connections idle for longer than `max_age` or closed by the upstream.
    pub(crate) fn sweep(&self, now: Instant, max_age: Duration) {
        let mut list = lock(&self.list);
        list.retain_mut(|i| now.saturating_duration_since(i.since) < max_age && i.wire.idle_ok());
    }
}
