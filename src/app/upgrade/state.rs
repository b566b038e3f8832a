//! The live state a successor process takes over, as one small JSON
//! document sent with the listening sockets: each pool's learnt gate
//! (adaptive limit, baseline, SLO limit, spill phase), each endpoint's
//! probe state and latency estimate, and the site's DR state. Matched by
//! name (pool, endpoint address); what the new config does not have is
//! ignored, what it adds starts fresh.

use std::time::{Duration, Instant};

use crate::gate::{DrCarry, GateCarry};
use crate::upstream::health::Probe;

use super::super::server::Server;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Carried {
    pub(crate) gates: Vec<GateCarry>,
    pub(crate) endpoints: Vec<EndpointCarry>,
    pub(crate) dr: Option<DrCarry>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct EndpointCarry {
    pub(crate) pool: String,
    pub(crate) addr: String,
    pub(crate) probe: Probe,
    pub(crate) rtt_us: u64,
}

/// What was resumed, for the log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Resumed {
    pub(crate) gates: usize,
    pub(crate) endpoints: usize,
    pub(crate) dr: bool,
}

/// Everything `server` has learnt, now.
pub(crate) fn collect(server: &Server, now: Instant) -> Carried {
    let rt = server.data.runtime.load();
    let endpoints = rt
        .pools
        .iter()
        .flat_map(|(pool, p)| {
            p.endpoints.iter().map(move |e| EndpointCarry {
                pool: pool.clone(),
                addr: e.addr.clone(),
                probe: e.probe(),
                rtt_us: e.rtt_estimate().as_micros() as u64,
            })
        })
        .filter(|e| e.probe != Probe::Unknown)
        .collect();
    Carried { gates: server.data.gates.carry(), endpoints, dr: Some(server.data.gates.dr.carry(now)) }
}

/// Continues `carried` in `server` (before its listeners accept).
pub(crate) fn resume(server: &Server, carried: &Carried, now: Instant) -> Resumed {
    let rt = server.data.runtime.load();
    let gates = server.data.gates.resume(&carried.gates, &rt.config.spill, now);
    let mut endpoints = 0;
    for c in &carried.endpoints {
        let endpoint = rt.pools.get(&c.pool).and_then(|p| p.endpoints.iter().find(|e| e.addr == c.addr));
        if let Some(e) = endpoint {
            e.resume(c.probe, Duration::from_micros(c.rtt_us));
            endpoints += 1;
        }
    }
    let dr = carried.dr.as_ref().and_then(|d| server.data.gates.dr.resume(d, now)).is_some();
    Resumed { gates, endpoints, dr }
}
