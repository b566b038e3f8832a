//! Putting a runtime snapshot to work: start its pools' health probes and
//! idle sweepers, mark endpoints a reload removed as draining, and (at
//! start) wait, bounded, for the first probe answers.

use std::time::Duration;

use crate::runtime::Runtime;
use crate::upstream::health::Probe;
use crate::upstream::probe;

/// Starts health probes for `rt`'s pools and marks endpoints that the
/// previous snapshot had and this one dropped as draining.
pub(crate) fn activate(rt: &Runtime, previous: Option<&Runtime>) {
    for pool in rt.pools.values() {
        probe::spawn(pool);
        probe::spawn_sweeper(pool);
    }
    if let Some(prev) = previous {
        for (name, old) in &prev.pools {
            match rt.pools.get(name) {
                Some(new) => old.drain_removed(new),
                None => old.endpoints.iter().for_each(|e| e.set_draining()),
            }
        }
    }
}

/// Waits (bounded) until every probed endpoint has had its first probe
/// answered, so the first requests after start do not find every
/// endpoint "unknown".
pub(crate) async fn initial_probes(rt: &Runtime, max_wait: Duration) {
    let deadline = tokio::time::Instant::now() + max_wait;
    let settled = || rt.pools.values().flat_map(|p| p.endpoints.iter()).all(|e| e.probe() != Probe::Unknown);
    while !settled() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
