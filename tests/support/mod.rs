//! Shared fixtures for the end-to-end tests: the real `spillway` binary as a
//! child process (`spillway`), in-process origins (`origin`), a test CA
//! (`tls`), and clients (`client`). Everything binds 127.0.0.1:0; waits are
//! deadlines with polling, never fixed sleeps.
#![allow(dead_code)]

pub mod browser;
pub mod client;
pub mod origin;
pub mod spillway;
pub mod tls;
pub mod webhook;
pub mod wire;

use std::future::Future;
use std::time::Duration;

#[allow(unused_imports)]
pub use client::{curl, get, request, Resp};
#[allow(unused_imports)]
pub use origin::Origin;
#[allow(unused_imports)]
pub use spillway::Spillway;

/// How long the binary may take to print `ready`.
pub const STARTUP: Duration = Duration::from_secs(20);

/// Polls `check` every 20 ms until it holds; panics with `what` at the deadline.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `["127.0.0.1:a", "127.0.0.1:b"]` for a pool's `endpoints`.
pub fn endpoints(origins: &[&Origin]) -> String {
    let list: Vec<String> = origins.iter().map(|o| format!("\"{}\"", o.endpoint())).collect();
    format!("[{}]", list.join(", "))
}

/// The admin block every test config uses: an ephemeral loopback port.
pub const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

/// A config with one plain listener `web`, one pool `app` over `origins`
/// (`pool_extra` is appended to the pool table), and one catch-all route.
pub fn simple_config(origins: &[&Origin], listener_extra: &str, pool_extra: &str) -> String {
    format!(
        "{ADMIN}\n[runtime]\ndrain_timeout = \"10s\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n{listener_extra}\n\n[pools.app]\nendpoints = {}\nconnect_timeout = \"300ms\"\n{pool_extra}\n\n[[route]]\nname = \"all\"\nprimary = \"app\"\n",
        endpoints(origins)
    )
}
