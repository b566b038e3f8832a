//! Seeded simulation of the whole policy against a prefork-like pool.
//!
//! The pool has `C` workers and an unbounded accept queue; service time is
//! 20 ms ± 20 % and grows by up to 25 % with the queue (contention), so the
//! latency seen by the proxy is flat up to `C` in flight and rises beyond.
//! Arrivals (Poisson, 1 ms steps) ramp from 0.3× to 3× the pool's capacity
//! and back; 5 % are writes from a large population of sessions, which pin
//! their session. Every 100 ms the signals are drained and the limit and the
//! hysteresis updated, exactly as the controller tick will do.
//!
//! Every assertion prints the seed; replay one with
//! `SPILLWAY_SIM_SEED=<seed> cargo test burst::sim`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::*;

const WORKERS: u32 = 32;
const SERVICE_MS: f64 = 20.0;
const CAPACITY_RPS: f64 = WORKERS as f64 * 1000.0 / SERVICE_MS;
const MAX_IN_FLIGHT: u32 = 4 * WORKERS;
const TICK_MS: u64 = 100;
const END_MS: u64 = 110_000;

/// Offered load as a multiple of capacity at `t` ms: calm, ramp to 3×, hold, ramp down, calm.
fn load_factor(t: u64) -> f64 {
    let s = t as f64 / 1000.0;
    match s {
        s if s < 5.0 => 0.3,
        s if s < 35.0 => 0.3 + 2.7 * (s - 5.0) / 30.0,
        s if s < 55.0 => 3.0,
        s if s < 70.0 => 3.0 - 2.7 * (s - 55.0) / 15.0,
        _ => 0.3,
    }
}

/// The on-prem pool: busy workers (finish ms, arrival ms) and the accept queue.
struct Pool {
    busy: Vec<(f64, f64)>,
    queue: VecDeque<f64>,
}

impl Pool {
    fn admit(&mut self, arrival: f64, now: f64, rng: &mut fastrand::Rng) {
        self.queue.push_back(arrival);
        self.start_waiting(now, rng);
    }

    fn start_waiting(&mut self, now: f64, rng: &mut fastrand::Rng) {
        while self.busy.len() < WORKERS as usize {
            let Some(arrival) = self.queue.pop_front() else {
                return;
            };
            let contention = 1.0 + 0.25 * (self.queue.len() as f64 / WORKERS as f64).min(1.0);
            let service = SERVICE_MS * (0.8 + 0.4 * rng.f64()) * contention;
            self.busy.push((now + service, arrival));
        }
    }

    /// Finish due requests, returning their latencies (ms) through `done`.
    fn complete(&mut self, now: f64, rng: &mut fastrand::Rng, mut done: impl FnMut(f64)) {
        let mut i = 0;
        while i < self.busy.len() {
            if self.busy[i].0 <= now {
                let (finish, arrival) = self.busy.swap_remove(i);
                done(finish - arrival);
            } else {
                i += 1;
            }
        }
        self.start_waiting(now, rng);
    }
}

fn poisson(rng: &mut fastrand::Rng, mean: f64) -> u32 {
    let (limit, mut product, mut n) = ((-mean).exp(), rng.f64(), 0);
    while product > limit {
        product *= rng.f64();
        n += 1;
    }
    n
}

/// One tick's view, kept for the assertions.
#[derive(Debug, Clone, Copy)]
struct TickLog {
    t_ms: u64,
    limit: u32,
    phase: SpillPhase,
    primary: u64,
    cloud: u64,
    p99: Duration,
}

fn run(seed: u64) -> Vec<TickLog> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let t0 = Instant::now();
    let at = |ms: f64| t0 + Duration::from_secs_f64(ms / 1000.0);
    let signals = LoadSignals::new();
    let mut limit = ConcurrencyLimit::new(LimitParams::new(8, MAX_IN_FLIGHT, MAX_IN_FLIGHT / 2));
    let mut spill = SpillController::new(Duration::from_secs(1), Duration::from_secs(10));
    let pins = WritePins::new(50_000, Duration::from_secs(90));
    let mut pool = Pool { busy: Vec::new(), queue: VecDeque::new() };
    let (mut current_limit, mut log, mut primary, mut cloud) = (limit.limit(), Vec::new(), 0, 0);
    for t in 0..END_MS {
        let now = t as f64;
        pool.complete(now, &mut rng, |latency_ms| {
            signals.record(Duration::from_secs_f64(latency_ms / 1000.0), Outcome::Ok);
            signals.end();
        });
        for _ in 0..poisson(&mut rng, load_factor(t) * CAPACITY_RPS / 1000.0) {
            let write = rng.f64() < 0.05;
            let key = client_key(Some(&rng.u64(..).to_le_bytes()[..3]), [127, 0, 0, 1].into());
            if write {
                pins.pin(key, at(now));
            }
            let inputs = GateInputs {
                phase: spill.phase(),
                in_flight: signals.begin(),
                limit: current_limit,
                max_in_flight: MAX_IN_FLIGHT,
                method_may_spill: !write,
                path_never_spills: false,
                pinned: !write && pins.is_pinned(key, at(now)),
                has_overflow: true,
                cloud_healthy: true,
                replica_lag_ok: true,
                cloud_room: true,
                queue_ahead: false,
                hard_queue_ahead: false,
                primary_healthy: true,
                dr: super::DrState::Normal,
                writes_held: false,
                write,
                method_known: true,
                shed_when_cloud_unavailable: true,
            };
            match decide(&inputs) {
                SpillDecision::Primary(_) => {
                    primary += 1;
                    pool.admit(now, now, &mut rng);
                }
                SpillDecision::Cloud(_) => {
                    cloud += 1;
                    signals.end();
                }
                // A write over the hard cap is shed (the sim's queue gives no slot back in time).
                SpillDecision::Queue(QueueReason::OverHardLimit) if write => signals.end(),
                SpillDecision::Queue(reason) => {
                    panic!("seed {seed}: queued ({reason:?}) with a healthy cloud")
                }
                SpillDecision::ReadOnly => panic!("seed {seed}: read-only outside DR"),
            }
        }
        if t % TICK_MS == 0 {
            let w = signals.take_window(at(now));
            current_limit = limit.update(&w, at(now)).min(MAX_IN_FLIGHT);
            let phase = spill.observe(pressure(&w, current_limit, Duration::from_millis(250)), at(now));
            log.push(TickLog { t_ms: t, limit: current_limit, phase, primary, cloud, p99: w.p99 });
            (primary, cloud) = (0, 0);
        }
    }
    log
}

fn seeds() -> Vec<u64> {
    match std::env::var("SPILLWAY_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("SPILLWAY_SIM_SEED is a u64")],
        Err(_) => vec![1, 2, 3],
    }
}

#[test]
fn ramp_to_three_times_capacity_settles_and_does_not_flap() {
    for seed in seeds() {
        let log = run(seed);
        let between =
            |from_s: u64, to_s: u64| log.iter().filter(move |l| (from_s * 1000..to_s * 1000).contains(&l.t_ms));
        eprintln!(
            "seed {seed}: limit {:?}..{:?} changes {:?}",
            between(40, 55).map(|l| l.limit).min(),
            between(40, 55).map(|l| l.limit).max(),
            log.windows(2).filter(|p| p[0].phase != p[1].phase).map(|p| p[1].t_ms).collect::<Vec<_>>()
        );
        // Settled during the 3× hold: the limit stays in a band around capacity.
        let (lo, hi) = (WORKERS * 3 / 4, WORKERS * 7 / 4);
        for l in between(40, 55) {
            assert!((lo..=hi).contains(&l.limit), "seed {seed}: limit {} outside [{lo}, {hi}] at {l:?}", l.limit);
            assert_eq!(l.phase, SpillPhase::Spilling, "seed {seed}: not spilling at {l:?}");
        }
        let overflow: u64 = between(40, 55).map(|l| l.cloud).sum();
        let onprem: u64 = between(40, 55).map(|l| l.primary).sum();
        let share = overflow as f64 / (overflow + onprem) as f64;
        assert!((0.45..0.75).contains(&share), "seed {seed}: cloud share {share:.2} during the 3× hold");
        let p99_max = between(40, 55).map(|l| l.p99).max().unwrap();
        assert!(p99_max < Duration::from_millis(60), "seed {seed}: on-prem p99 reached {p99_max:?}");
        // Hysteresis: one entry during the ramp, one exit after it, no flapping.
        let changes: Vec<_> = log.windows(2).filter(|p| p[0].phase != p[1].phase).map(|p| p[1]).collect();
        assert_eq!(changes.len(), 2, "seed {seed}: phase changes {changes:?}");
        assert!((10_000..35_000).contains(&changes[0].t_ms), "seed {seed}: entered at {:?}", changes[0]);
        assert!((65_000..100_000).contains(&changes[1].t_ms), "seed {seed}: left at {:?}", changes[1]);
        // After the burst, everything is back on-prem.
        assert_eq!(between(100, 110).map(|l| l.cloud).sum::<u64>(), 0, "seed {seed}: still spilling at the end");
    }
}
