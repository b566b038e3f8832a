//! The `/status` document: active config version and reload state,
//! listeners, routes, pools and endpoints with their live state, and the
//! site's disaster-recovery state (`dr`).

use std::time::Instant;

use serde_json::{json, Value};

use crate::app::server::Server;
use crate::gate::PoolGate;
use crate::sync::lock;
use crate::upstream::health::Probe;
use crate::upstream::Pool;

pub(super) async fn snapshot(server: &Server) -> Value {
    let rt = server.data.runtime.load_full();
    let now = Instant::now();
    let reload = lock(&server.reload_state).clone();
    let listeners: Vec<Value> = server
        .listener_caps()
        .await
        .into_iter()
        .map(|(name, addr, (connections, tunnels))| {
            json!({ "name": name, "addr": addr.to_string(), "max_connections": connections, "max_tunnels": tunnels })
        })
        .collect();
    let pools: serde_json::Map<String, Value> =
        rt.pools.iter().map(|(name, pool)| (name.clone(), pool_json(pool, now))).collect();
    let routes: Vec<Value> = rt
        .routes
        .iter()
        .map(|r| json!({ "name": r.config.name, "host": r.config.host, "path_prefix": r.config.path_prefix, "primary": r.config.primary, "overflow": r.config.overflow }))
        .collect();
    let gates: serde_json::Map<String, Value> =
        rt.gates.iter().map(|(name, gate)| (name.clone(), gate_json(gate))).collect();
    let mut dr = crate::app::dr::to_json(&server.data.gates.dr.view(now));
    // The holder whose state this instance takes from the lease (null: it decides itself, or holds none).
    let site = server.control.site_dr(&rt.config);
    let following = matches!(site.source, crate::burst::DrSource::Lease { .. }).then_some(site.holder).flatten();
    dr["following"] = following.into();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "spill": {
            "mode": format!("{:?}", rt.config.spill.mode).to_lowercase(),
            "max_in_flight": rt.config.spill.max_in_flight,
            "pins": server.data.gates.pins.len(),
            "pin_evictions": server.data.gates.pins.evictions(),
        },
        "dr": dr,
        "gates": gates,
        "controllers": server.control.status(),
        "coordination": server.control.coordination_status(),
        "config": reload,
        "draining": server.data.draining(),
        "connections": server.data.connections.open(),
        "listeners": listeners,
        "routes": routes,
        "pools": pools,
        "dashboard": dashboard_json(server, &rt),
    })
}

/// What only the dashboard reads: the SLO its p99 chart draws and the last events.
fn dashboard_json(server: &Server, rt: &crate::runtime::Runtime) -> Value {
    let events: Vec<Value> = lock(&server.recent_events).iter().rev().cloned().collect();
    json!({
        "latency_slo_ms": rt.config.spill.latency_slo.as_secs_f64() * 1e3,
        "events": events,
    })
}

fn pool_json(pool: &Pool, now: Instant) -> Value {
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
    json!({ "role": format!("{:?}", pool.role()).to_lowercase(), "endpoints": endpoints })
}

fn gate_json(gate: &PoolGate) -> Value {
    let v = gate.view();
    let w = &v.window;
    json!({
        "mode": v.mode,
        "in_flight": v.in_flight,
        // A cloud pool with neither its own limit nor a warm-capacity cap has none.
        "limit": (v.limit != u32::MAX).then_some(v.limit),
        "queued": v.queued,
        "shed_rps": v.shed_rps,
        "pressure": v.pressure,
        "replica_lag_ok": v.replica_lag_ok,
        "rpo_at_risk": v.rpo_at_risk,
        "rtt_baseline_ms": v.rtt_baseline_ms,
        "arrival_rps": w.arrival_rps,
        "completion_rps": w.completion_rps,
        "error_rate": w.error_rate,
        "p50_ms": w.p50_sliding.as_secs_f64() * 1e3,
        "p99_ms": w.p99_sliding.as_secs_f64() * 1e3,
        "ewma_ms": w.ewma.as_secs_f64() * 1e3,
    })
}
