//! Benchmarks of the pure burst policy, the code every proxied request runs.
//!
//! Why: the gate sits on the hot path, and the target is well under 1 µs of
//! policy per request. What each group compares:
//! - `request_path`: one request's full policy cost (`begin` + `decide` +
//!   `record` + `end`) against its parts, so a regression points at its cause.
//! - `record_contention`: `record` alone and a whole `begin`+`record`+`end`,
//!   from 1 thread and from 2 threads hammering one pool's signals, against
//!   the naive design (the same counters behind one `Mutex`): what the
//!   atomics buy, and cost, when the proxy's worker threads hit one pool.
//!   The 2-thread loops are a worst case (no work between requests), so
//!   they measure cache-line ping-pong, not a real proxy's load.
//! - `tick`: the once-per-tick work (`take_window`, the limit update, the
//!   hysteresis), which runs every 100 ms off the request path: it only has
//!   to stay in microseconds.
//! - `pins`: `pin` (every write) and `is_pinned` (every read that would
//!   spill) on a full 100 000-client table, the sharded-mutex path.
//! - `pin_token`: the signed pin cookie (`[spill.pin_token]`): `verify`
//!   (base64url decode, key-id lookup, constant-time HMAC-SHA256 check) of
//!   a genuine token, and `judge` (verify + age), against a forged token
//!   (same work, the tag fails) and a malformed one (refused before any
//!   HMAC), since hostile cookies must not cost more than genuine ones;
//!   `sign` is what each successful write pays. Target: verify under 1 µs.

use std::hint::black_box;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use spillway::burst::*;

fn inputs(in_flight: u32) -> GateInputs {
    GateInputs {
        phase: SpillPhase::Spilling,
        in_flight,
        limit: 64,
        max_in_flight: 256,
        method_may_spill: true,
        path_never_spills: false,
        pinned: false,
        has_overflow: true,
        cloud_healthy: true,
        replica_lag_ok: true,
        cloud_room: true,
        queue_ahead: false,
        hard_queue_ahead: false,
        primary_healthy: true,
        dr: DrState::Normal,
        writes_held: false,
        write: false,
        method_known: true,
        shed_when_cloud_unavailable: true,
    }
}

fn request_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("request_path");
    let signals = LoadSignals::new();
    let latency = Duration::from_micros(12_345);
    g.bench_function("begin_decide_record_end", |b| {
        b.iter(|| {
            let in_flight = signals.begin();
            let decision = decide(black_box(&inputs(in_flight)));
            signals.record(black_box(latency), Outcome::Ok);
            signals.end();
            decision
        })
    });
    g.bench_function("begin_record_end", |b| {
        b.iter(|| {
            signals.begin();
            signals.record(black_box(latency), Outcome::Ok);
            signals.end();
        })
    });
    for (name, in_flight) in [("decide_under_limit", 10), ("decide_spill", 100), ("decide_hard_cap", 300)] {
        let i = inputs(in_flight);
        g.bench_function(name, |b| b.iter(|| decide(black_box(&i))));
    }
    g.finish();
}

/// The naive alternative: the same counters and buckets behind one mutex.
struct MutexSignals(Mutex<(u32, u64, Vec<u64>)>);

impl MutexSignals {
    fn begin(&self) -> u32 {
        let mut s = self.0.lock().unwrap();
        s.0 += 1;
        s.1 += 1;
        s.0
    }

    fn record(&self, latency: Duration) {
        let us = latency.as_micros() as u64;
        let index = (64 - us.leading_zeros() as usize) * 32 + (us & 31) as usize;
        self.0.lock().unwrap().2[index % 704] += 1;
    }

    fn end(&self) {
        self.0.lock().unwrap().0 -= 1;
    }
}

/// Per-operation time of `op` run `iters` times on each of `threads` threads at once.
fn contended(threads: usize, iters: u64, op: &(impl Fn() + Sync)) -> Duration {
    let barrier = Barrier::new(threads);
    let times: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let start = Instant::now();
                    (0..iters).for_each(|_| op());
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    times.into_iter().max().unwrap_or_default()
}

fn record_contention(c: &mut Criterion) {
    let mut g = c.benchmark_group("record_contention");
    let signals = LoadSignals::new();
    let naive = MutexSignals(Mutex::new((0, 0, vec![0; 704])));
    let latency = Duration::from_micros(12_345);
    let atomic_record = || signals.record(black_box(latency), Outcome::Ok);
    let naive_record = || naive.record(black_box(latency));
    let atomic_request = || {
        signals.begin();
        signals.record(black_box(latency), Outcome::Ok);
        signals.end();
    };
    let naive_request = || {
        naive.begin();
        naive.record(black_box(latency));
        naive.end();
    };
    for threads in [1, 2] {
        g.bench_function(format!("record/atomic/{threads}_thread"), |b| {
            b.iter_custom(|iters| contended(threads, iters, &atomic_record))
        });
        g.bench_function(format!("record/mutex/{threads}_thread"), |b| {
            b.iter_custom(|iters| contended(threads, iters, &naive_record))
        });
        g.bench_function(format!("begin_record_end/atomic/{threads}_thread"), |b| {
            b.iter_custom(|iters| contended(threads, iters, &atomic_request))
        });
        g.bench_function(format!("begin_record_end/mutex/{threads}_thread"), |b| {
            b.iter_custom(|iters| contended(threads, iters, &naive_request))
        });
    }
    g.finish();
}

fn tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("tick");
    let signals = LoadSignals::new();
    let t0 = Instant::now();
    let mut now = t0;
    let mut rng = fastrand::Rng::with_seed(1);
    g.bench_function("record_100_then_take_window", |b| {
        b.iter(|| {
            for _ in 0..100 {
                signals.record(Duration::from_micros(rng.u64(1_000..100_000)), Outcome::Ok);
            }
            now += Duration::from_millis(100);
            signals.take_window(now)
        })
    });
    let window = signals.take_window(now + Duration::from_millis(100));
    let mut limit = ConcurrencyLimit::new(LimitParams::new(8, 512, 64));
    let mut spill = SpillController::new(Duration::from_secs(1), Duration::from_secs(30));
    g.bench_function("limit_update_pressure_observe", |b| {
        b.iter(|| {
            now += Duration::from_millis(100);
            let l = limit.update(black_box(&window), now);
            spill.observe(pressure(&window, l, Duration::from_millis(250)), now)
        })
    });
    g.finish();
}

fn pins(c: &mut Criterion) {
    let mut g = c.benchmark_group("pins");
    let pins = WritePins::new(100_000, Duration::from_secs(90));
    let mut rng = fastrand::Rng::with_seed(2);
    let t0 = Instant::now();
    let keys: Vec<u64> = (0..200_000).map(|_| rng.u64(..)).collect();
    keys.iter().for_each(|k| pins.pin(*k, t0));
    let mut i = 0;
    g.bench_function("pin_full_table", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            pins.pin(keys[i], t0 + Duration::from_secs(1));
        })
    });
    g.bench_function("is_pinned", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            pins.is_pinned(keys[i], t0 + Duration::from_secs(2))
        })
    });
    g.bench_function("client_key_cookie", |b| {
        b.iter(|| client_key(black_box(Some(b"3f9a0c2e-session-value")), [10, 0, 0, 1].into()))
    });
    g.finish();
}

fn pin_token(c: &mut Criterion) {
    let mut g = c.benchmark_group("pin_token");
    let keys = PinKeys::new(b"0123456789abcdef0123456789abcdef-current", Some(b"0123456789abcdef0123456789abcdef-old"))
        .expect("keys of 32 bytes or more");
    let written = 1_764_700_000_000u64;
    let token = keys.sign(written, b"dc1");
    let mut forged = token.clone().into_bytes();
    let n = forged.len() - 2;
    forged[n] = if forged[n] == b'A' { b'B' } else { b'A' };
    let pin = Duration::from_secs(90);
    let window = pin_window(pin, Some(Duration::from_secs(5)), Duration::from_secs(5), true);
    g.bench_function("verify", |b| b.iter(|| keys.verify(black_box(token.as_bytes()))));
    g.bench_function("judge", |b| b.iter(|| keys.judge(black_box(token.as_bytes()), written + 3_000, pin, window)));
    g.bench_function("verify_forged", |b| b.iter(|| keys.verify(black_box(&forged))));
    g.bench_function("verify_malformed", |b| b.iter(|| keys.verify(black_box(b"not-a-token!"))));
    g.bench_function("sign", |b| b.iter(|| keys.sign(black_box(written), b"dc1")));
    g.finish();
}

criterion_group!(benches, request_path, record_contention, tick, pins, pin_token);
criterion_main!(benches);
