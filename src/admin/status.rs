//! The `/status` document: active config version and reload state,
//! listeners, routes, pools and endpoints with their live state.

use std::time::Instant;

use serde_json::{json, Value};

use crate::server::Server;
use crate::upstream::health::Probe;

pub async fn snapshot(server: &Server) -> Value {
    let rt = server.runtime.load_full();
    let now = Instant::now();
    let reload = server.reload_state.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let listeners: Vec<Value> = server
        .bound()
        .await
        .into_iter()
        .map(|(name, addr)| json!({ "name": name, "addr": addr.to_string() }))
        .collect();
    let pools: serde_json::Map<String, Value> = rt
        .pools
        .iter()
        .map(|(name, pool)| {
            let endpoints: Vec<Value> = pool
                .endpoints
                .iter()
                .map(|e| {
                    json!({
                        "addr": e.addr,
                        "available": e.available(now),
                        "probe": match e.probe() { Probe::Up => "up", Probe::Down => "down", Probe::Unknown => "unknown" },
                        "ejected": e.is_ejected(now),
                        "pending": e.pending(),
                        "rtt_ms": e.rtt_estimate().as_secs_f64() * 1000.0,
                        "replica_lag_s": e.lag().map(|l| l.as_secs_f64()),
                    })
                })
                .collect();
            (name.clone(), json!({ "role": format!("{:?}", pool.role()).to_lowercase(), "endpoints": endpoints }))
        })
        .collect();
    let routes: Vec<Value> = rt
        .routes
        .iter()
        .map(|r| json!({ "name": r.config.name, "host": r.config.host, "path_prefix": r.config.path_prefix, "primary": r.config.primary, "overflow": r.config.overflow }))
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "config": reload,
        "draining": *server.drain.borrow(),
        "connections": server.connections.open(),
        "listeners": listeners,
        "routes": routes,
        "pools": pools,
    })
}
