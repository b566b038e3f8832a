//! The demo's stand-in for resolvers: clients follow the simulated Route 53
//! weights, but only as resolvers learn them, one TTL at a time. The share
//! of requests sent straight to the cloud is the written cloud share
//! averaged over the last TTL (sampled every 100 ms), the same model the
//! scale controller uses for the share in effect.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::aws_sim::SimAws;
use crate::scale::forecast::{effective_share, History, HISTORY_SAMPLES};
use crate::sync::lock;

const SAMPLE_EVERY: f64 = 0.1;

/// The cloud's DNS share in effect for the demo's clients.
pub(crate) struct InEffect {
    sim: Arc<SimAws>,
    ttl: Duration,
    start: Instant,
    shares: Mutex<(History, f64)>,
}

impl InEffect {
    pub(crate) fn new(sim: Arc<SimAws>, ttl: Duration) -> Self {
        let shares = Mutex::new((History::new(HISTORY_SAMPLES), f64::NEG_INFINITY));
        Self { sim, ttl, start: Instant::now(), shares }
    }

    /// The AWS record's share of the pair's weights, as written now.
    fn written(&self) -> f64 {
        let w = self.sim.weights();
        let weight = |id: &str| w.iter().find(|(i, _)| i == id).map_or(0, |(_, w)| *w) as f64;
        let (onprem, aws) = (weight("dc1"), weight("aws"));
        if onprem + aws > 0.0 {
            aws / (onprem + aws)
        } else {
            0.0
        }
    }

    pub(crate) fn share(&self) -> f64 {
        let now = self.start.elapsed().as_secs_f64();
        let mut guard = lock(&self.shares);
        let (history, last) = &mut *guard;
        if now - *last >= SAMPLE_EVERY {
            history.push(now, self.written());
            *last = now;
        }
        effective_share(history, now, self.ttl)
    }
}
