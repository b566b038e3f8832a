//! One upstream endpoint and its live state, shared by the request path,
//! the health prober and the status API. Everything the request path reads
//! or writes is an atomic; the probe state machine sits behind a mutex that
//! only the prober touches.
//!
//! Invariant: `pending` counts requests sent and not yet answered with
//! headers; it is decremented exactly once per increment (see `Pending`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::clock;
use crate::config::PoolConfig;
use crate::sync::lock;

use super::balance;
use super::client::IdleConns;
use super::health::{self, Probe, ProbeState};

const DEFAULT_RTT: Duration = Duration::from_millis(5);
const EWMA_DECAY: Duration = Duration::from_secs(10);

const PROBE_UNKNOWN: u8 = 0;
const PROBE_UP: u8 = 1;
const PROBE_DOWN: u8 = 2;

pub(crate) struct Endpoint {
    /// `host:port` as configured.
    pub(crate) addr: String,
    pub(crate) authority: http::uri::Authority,
    pending: AtomicU32,
    ewma_ns: AtomicU64,
    ewma_at: AtomicU64,
    probe: AtomicU8,
    probe_state: Mutex<ProbeState>,
    failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until: AtomicU64,
    draining: AtomicBool,
    /// Replica lag reported by the last probe, in milliseconds (u64::MAX: unknown).
    lag_ms: AtomicU64,
    /// The last probe named this endpoint's database the primary (`role_header`).
    reports_primary: AtomicBool,
    /// Keep-alive connections waiting for the next request.
    pub(crate) idle: IdleConns,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("addr", &self.addr).finish()
    }
}

impl Endpoint {
    /// A new endpoint; with active health checks it waits for its first
    /// successful probe before taking traffic.
    pub(crate) fn new(addr: &str, probed: bool) -> Result<Self, http::uri::InvalidUri> {
        Ok(Endpoint {
            addr: addr.to_string(),
            authority: addr.parse()?,
            pending: AtomicU32::new(0),
            ewma_ns: AtomicU64::new((DEFAULT_RTT.as_nanos() as f64).to_bits()),
            ewma_at: AtomicU64::new(0),
            probe: AtomicU8::new(if probed { PROBE_UNKNOWN } else { PROBE_UP }),
            probe_state: Mutex::new(ProbeState::new()),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            lag_ms: AtomicU64::new(u64::MAX),
            reports_primary: AtomicBool::new(false),
            idle: IdleConns::default(),
        })
    }

    /// May this endpoint take a new request at `now`?
    pub(crate) fn available(&self, now: Instant) -> bool {
        self.serving(now) && !self.draining.load(Relaxed)
    }

    /// Healthy and not ejected, draining or not. A removed (draining)
    /// endpoint still serves the requests that began on a snapshot that had
    /// it, including those that had not yet picked an endpoint.
    pub(crate) fn serving(&self, now: Instant) -> bool {
        self.probe.load(Relaxed) == PROBE_UP && !self.is_ejected(now)
    }

    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Relaxed);
        !health::readmitted((until != 0).then(|| clock::from_nanos(until)), now)
    }

    pub(crate) fn cost(&self) -> f64 {
        balance::cost(f64::from_bits(self.ewma_ns.load(Relaxed)), self.pending.load(Relaxed))
    }

    /// Marks a request as sent; the returned token ends it.
    pub(crate) fn start(&self) -> Pending<'_> {
        self.pending.fetch_add(1, Relaxed);
        Pending { endpoint: self, done: false }
    }

    pub(crate) fn pending(&self) -> u32 {
        self.pending.load(Relaxed)
    }

    pub(crate) fn rtt_estimate(&self) -> Duration {
        Duration::from_nanos(f64::from_bits(self.ewma_ns.load(Relaxed)) as u64)
    }

    /// Folds a latency sample into the PeakEWMA estimate. Racing updates may
    /// lose one sample; the estimate stays valid.
    fn observe_rtt(&self, rtt: Duration, now: Instant) {
        let now_ns = clock::to_nanos(now);
        let prev_at = self.ewma_at.swap(now_ns, Relaxed);
        let elapsed = Duration::from_nanos(now_ns.saturating_sub(prev_at));
        let prev = f64::from_bits(self.ewma_ns.load(Relaxed));
        let next = balance::peak_ewma(prev, elapsed, rtt.as_nanos() as f64, EWMA_DECAY);
        self.ewma_ns.store(next.to_bits(), Relaxed);
    }

    /// Passive health: a proxied request the endpoint answered well. Ends
    /// the failure run, and the backoff once the endpoint is back.
    pub(crate) fn observe_success(&self, now: Instant) {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
        if self.ejections.load(Relaxed) != 0 && !self.is_ejected(now) {
            self.ejections.store(0, Relaxed);
        }
    }

    /// Passive health: a fault of the endpoint. True when its failure run
    /// has reached `eject_after` and it is not ejected yet: a candidate
    /// for `eject`, which the pool may refuse (the run then stays at the
    /// threshold, so the next fault asks again).
    pub(crate) fn observe_failure(&self, now: Instant, eject_after: u32) -> bool {
        let failures = self.failures.fetch_add(1, Relaxed).saturating_add(1);
        if failures > eject_after {
            // Held at the threshold: a long run of refused ejections never wraps.
            self.failures.store(eject_after, Relaxed);
        }
        failures >= eject_after && !self.is_ejected(now)
    }

    /// Takes the endpoint out of rotation for the next backoff.
    pub(crate) fn eject(&self, now: Instant, cfg: &PoolConfig) {
        self.failures.store(0, Relaxed);
        let n = self.ejections.fetch_add(1, Relaxed).saturating_add(1);
        let until = now + health::ejection_backoff(n, cfg.eject_base, cfg.eject_max);
        self.ejected_until.store(clock::to_nanos(until).max(1), Relaxed);
    }

    /// Active health: one probe result. Returns the new state if it changed.
    pub(crate) fn observe_probe(&self, ok: bool, healthy_after: u32, unhealthy_after: u32) -> Option<Probe> {
        let mut st = lock(&self.probe_state);
        let changed = st.observe(ok, healthy_after, unhealthy_after);
        self.probe.store(probe_code(st.state), Relaxed);
        changed
    }

    /// Continues a predecessor process's view of this endpoint: its probe
    /// state and latency estimate (the next probes go on from there).
    pub(crate) fn resume(&self, probe: Probe, rtt: Duration) {
        let mut st = lock(&self.probe_state);
        st.state = probe;
        self.probe.store(probe_code(probe), Relaxed);
        if !rtt.is_zero() {
            self.ewma_ns.store((rtt.as_nanos() as f64).to_bits(), Relaxed);
        }
    }

    pub(crate) fn probe(&self) -> Probe {
        match self.probe.load(Relaxed) {
            PROBE_UP => Probe::Up,
            PROBE_DOWN => Probe::Down,
            _ => Probe::Unknown,
        }
    }

    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    pub(crate) fn set_reports_primary(&self, primary: bool) {
        self.reports_primary.store(primary, Relaxed);
    }

    pub(crate) fn reports_primary(&self) -> bool {
        self.reports_primary.load(Relaxed)
    }

    pub(crate) fn set_lag(&self, lag: Option<Duration>) {
        self.lag_ms.store(lag.map_or(u64::MAX, |l| l.as_millis() as u64), Relaxed);
    }

    pub(crate) fn lag(&self) -> Option<Duration> {
        let ms = self.lag_ms.load(Relaxed);
        (ms != u64::MAX).then(|| Duration::from_millis(ms))
    }
}

fn probe_code(probe: Probe) -> u8 {
    match probe {
        Probe::Unknown => PROBE_UNKNOWN,
        Probe::Up => PROBE_UP,
        Probe::Down => PROBE_DOWN,
    }
}

/// A request in flight to an endpoint: ends on `finish` or drop.
pub(crate) struct Pending<'a> {
    endpoint: &'a Endpoint,
    done: bool,
}

impl Pending<'_> {
    /// Headers arrived after `rtt`: record the latency.
    pub(crate) fn finish(mut self, rtt: Duration, now: Instant) {
        self.endpoint.observe_rtt(rtt, now);
        self.end();
    }

    fn end(&mut self) {
        if !self.done {
            self.done = true;
            let prev = self.endpoint.pending.fetch_sub(1, Relaxed);
            debug_assert!(prev > 0, "pending underflow");
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn pool_cfg() -> PoolConfig {
        let text = "[[listener]]\nname='a'\nlisten='127.0.0.1:0'\n[pools.p]\nendpoints=['127.0.0.1:1']\neject_after=2\neject_base='1s'\neject_max='4s'\n[[route]]\nprimary='p'\n";
        config::from_str(text, "t".as_ref(), ".".as_ref()).unwrap().config.pools["p"].clone()
    }

    #[test]
    fn probed_endpoints_wait_for_a_probe() {
        let now = Instant::now();
        let e = Endpoint::new("127.0.0.1:80", true).unwrap();
        assert!(!e.available(now));
        e.observe_probe(true, 2, 3);
        assert!(e.available(now));
        assert!(Endpoint::new("127.0.0.1:80", false).unwrap().available(now));
    }

    #[test]
    fn consecutive_failures_eject_with_doubling_backoff() {
        let cfg = pool_cfg();
        let t0 = Instant::now();
        let e = Endpoint::new("127.0.0.1:80", false).unwrap();
        assert!(!e.observe_failure(t0, cfg.eject_after));
        assert!(e.observe_failure(t0, cfg.eject_after));
        e.eject(t0, &cfg);
        assert!(!e.observe_failure(t0, cfg.eject_after), "an ejected endpoint is no candidate");
        assert!(!e.available(t0 + Duration::from_millis(999)));
        assert!(e.available(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        e.observe_failure(t1, cfg.eject_after);
        assert!(e.observe_failure(t1, cfg.eject_after));
        e.eject(t1, &cfg);
        assert!(!e.available(t1 + Duration::from_millis(1999)), "second ejection lasts twice as long");
        let t2 = t1 + Duration::from_secs(2);
        e.observe_success(t2);
        assert_eq!(e.ejections.load(Relaxed), 0, "a success after readmission resets the backoff");
    }

    #[test]
    fn a_refused_candidate_stays_one_at_every_further_failure() {
        let t = Instant::now();
        let e = Endpoint::new("127.0.0.1:80", false).unwrap();
        assert!(!e.observe_failure(t, 2));
        for _ in 0..5 {
            assert!(e.observe_failure(t, 2), "still at the threshold");
        }
        e.observe_success(t);
        assert!(!e.observe_failure(t, 2), "a success ends the run");
    }

    #[test]
    fn pending_is_released_once() {
        let e = Endpoint::new("127.0.0.1:80", false).unwrap();
        let p = e.start();
        assert_eq!(e.pending(), 1);
        p.finish(Duration::from_millis(20), Instant::now());
        assert_eq!(e.pending(), 0);
        drop(e.start());
        assert_eq!(e.pending(), 0);
        assert!(e.rtt_estimate() >= Duration::from_millis(20));
    }
}
