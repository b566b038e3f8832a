use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

const HOLT: Holt = Holt { alpha: 0.3, beta: 0.05 };

fn ring(rates: impl IntoIterator<Item = f64>) -> History {
    let mut h = History::new(HISTORY_SAMPLES);
    for (i, r) in rates.into_iter().enumerate() {
        h.push(i as f64, r);
    }
    h
}

fn event(name: &str, start_secs: u64, end_secs: u64, rps: u32) -> ScheduledEvent {
    ScheduledEvent {
        name: name.into(),
        start: UNIX_EPOCH + Duration::from_secs(start_secs),
        end: UNIX_EPOCH + Duration::from_secs(end_secs),
        expected_rps: rps,
    }
}

fn inputs<'a>(
    arrivals: &'a History,
    spilled: &'a History,
    events: &'a [ScheduledEvent],
    cap: Option<f64>,
) -> DemandInputs<'a> {
    static NO_SHED: std::sync::LazyLock<History> = std::sync::LazyLock::new(|| History::new(HISTORY_SAMPLES));
    DemandInputs {
        arrivals,
        totals: None,
        pooled: 1,
        spilled,
        shed: &NO_SHED,
        holt: HOLT,
        warmup: Duration::from_secs(180),
        lead: Duration::from_secs(190),
        events,
        now: UNIX_EPOCH + Duration::from_secs(1_000),
        onprem_capacity_rps: cap,
        dns_cloud_share: 0.0,
    }
}

#[test]
fn no_history_no_forecast() {
    assert_eq!(HOLT.fit(std::iter::empty()), None);
    let empty = History::new(10);
    let d = demand(&inputs(&empty, &empty, &[], Some(1000.0)));
    assert_eq!(d.arrival_rps, 0.0);
    assert_eq!(d.forecast_rps, 0.0);
    assert_eq!(d.overflow_rps, -1000.0, "negative overflow: on-prem has room");
    assert_eq!(d.event, None);
}

#[test]
fn flat_demand_has_no_trend() {
    let t = HOLT.fit(ring(std::iter::repeat_n(500.0, 300)).iter()).unwrap();
    assert!((t.level - 500.0).abs() < 1e-9);
    assert!(t.slope.abs() < 1e-9);
    assert!((t.at(Duration::from_secs(180)) - 500.0).abs() < 1e-6);
}

#[test]
fn a_ramp_is_projected_ahead() {
    // 10 rps more every second.
    let h = ring((0..300).map(|i| 1000.0 + 10.0 * i as f64));
    let t = HOLT.fit(h.iter()).unwrap();
    assert!((t.slope - 10.0).abs() < 0.5, "slope {}", t.slope);
    let ahead = t.at(Duration::from_secs(180));
    assert!(ahead > 5500.0, "forecast {ahead} should be ~5790");
    let d = demand(&inputs(&h, &ring([0.0]), &[], Some(3000.0)));
    assert!(d.forecast_rps > d.arrival_rps);
    assert!(d.overflow_rps > 2000.0);
}

#[test]
fn a_ramp_keeps_its_lead_and_stops_projecting_soon_after_it_levels_off() {
    let ahead = Duration::from_secs(180);
    // 600 s from 0 to 1000 rps, then flat: during the ramp the projection
    // leads by about slope × warmup, as the slow fit alone would.
    let ramp: Vec<f64> = (0..600).map(|i| f64::from(i) * 1000.0 / 600.0).collect();
    let h = ring(ramp.iter().copied());
    let (slow, both) = (HOLT.fit(h.iter()).unwrap(), confirmed(HOLT, &h).unwrap());
    assert!((both.at(ahead) - slow.at(ahead)).abs() < 0.02 * slow.at(ahead), "{both:?} vs {slow:?}");
    assert!(both.at(ahead) > 1200.0, "leads the ramp: {}", both.at(ahead));
    // 20 s after the plateau the slow fit still projects well past it; the confirmed trend does not.
    let h = ring(ramp.iter().copied().chain(std::iter::repeat_n(1000.0, 20)));
    let (slow, both) = (HOLT.fit(h.iter()).unwrap(), confirmed(HOLT, &h).unwrap());
    assert!(slow.at(ahead) > 1100.0, "the slow fit overshoots: {}", slow.at(ahead));
    assert!(both.at(ahead) < 1010.0, "{both:?}");
    // A step (measured as a short ramp, one sample a second) overshoots the plateau by 20 % at most at any point.
    let mut rates: Vec<f64> = vec![0.0; 10];
    rates.extend((1..=6).map(|i| f64::from(i) * 100.0 / 6.0));
    let mut h = ring(rates.iter().copied());
    let mut worst = 0.0_f64;
    for _ in 0..60 {
        h.push(h.last().unwrap().at_secs + 1.0, 100.0);
        worst = worst.max(confirmed(HOLT, &h).unwrap().at(Duration::from_secs(2)));
    }
    assert!(worst <= 120.0, "worst projection after the step {worst}");
}

#[test]
fn noise_on_flat_demand_projects_less_than_the_slow_fit() {
    let mut rng = fastrand::Rng::with_seed(7);
    let h = ring((0..300).map(|_| 500.0 * (1.0 + 0.1 * (rng.f64() - 0.5))));
    let (slow, both) = (HOLT.fit(h.iter()).unwrap(), confirmed(HOLT, &h).unwrap());
    assert!(both.slope.abs() <= slow.slope.abs());
    assert!((both.level - 500.0).abs() < 30.0);
}

#[test]
fn a_single_spike_moves_the_level_not_the_projection_much() {
    let mut rates = vec![1000.0; 200];
    rates.push(10_000.0);
    rates.extend([1000.0; 5]);
    let t = HOLT.fit(ring(rates).iter()).unwrap();
    assert!(t.level < 2000.0, "level {}", t.level);
    assert!(t.at(Duration::from_secs(180)) < 5000.0, "projection {}", t.at(Duration::from_secs(180)));
}

#[test]
fn falling_demand_never_projects_below_zero_nor_below_now() {
    let h = ring((0..100).map(|i| 1000.0 - 10.0 * i as f64));
    let t = HOLT.fit(h.iter()).unwrap();
    assert_eq!(t.at(Duration::from_secs(3600)), 0.0);
    let d = demand(&inputs(&h, &ring([0.0]), &[], Some(0.0)));
    assert!(d.forecast_rps >= d.arrival_rps, "provision for now at least");
}

#[test]
fn ring_is_bounded_and_sanitised() {
    let mut h = History::new(3);
    for i in 0..10 {
        h.push(f64::from(i), f64::from(i));
    }
    assert_eq!(h.len(), 3);
    assert_eq!(h.iter().next().unwrap().at_secs, 7.0);
    h.push(20.0, f64::NAN);
    h.push(21.0, -5.0);
    assert!(h.iter().all(|s| s.rps >= 0.0 && s.rps.is_finite()));
    h.push(21.0, 7.0);
    assert_eq!(h.last().unwrap().rps, 7.0, "same time replaces");
    assert_eq!(h.len(), 3);
}

#[test]
fn unknown_capacity_uses_the_spill_trend() {
    let arrivals = ring(std::iter::repeat_n(2000.0, 60));
    let spilled = ring(std::iter::repeat_n(300.0, 60));
    let d = demand(&inputs(&arrivals, &spilled, &[], None));
    assert!((d.overflow_rps - 300.0).abs() < 1e-6);
}

#[test]
fn dns_share_counts_traffic_the_gate_does_not_see() {
    let arrivals = ring(std::iter::repeat_n(1000.0, 60));
    let none = ring([0.0]);
    let mut inp = inputs(&arrivals, &none, &[], Some(800.0));
    inp.dns_cloud_share = 0.5;
    let d = demand(&inp);
    assert!((d.forecast_rps - 2000.0).abs() < 1e-6);
    assert!((d.overflow_rps - 1200.0).abs() < 1e-6);
}

#[test]
fn events_count_from_lead_before_start_until_end() {
    let events = [event("final", 1_100, 1_300, 9_000), event("small", 900, 1_200, 2_000)];
    let now = |s| UNIX_EPOCH + Duration::from_secs(s);
    let lead = Duration::from_secs(190);
    assert_eq!(scheduled_demand(&events, now(800), lead).unwrap().name, "small");
    assert_eq!(scheduled_demand(&events, now(910), lead).unwrap().name, "final", "within lead of kickoff");
    assert_eq!(scheduled_demand(&events, now(1_250), lead).unwrap().name, "final");
    assert!(scheduled_demand(&events, now(1_300), lead).is_none(), "ended");
    assert!(scheduled_demand(&events, now(600), lead).is_none(), "too early");
    assert!(scheduled_demand(&[], SystemTime::now(), lead).is_none());
}

#[test]
fn an_event_raises_overflow_above_the_trend() {
    let arrivals = ring(std::iter::repeat_n(1000.0, 60));
    let spilled = ring([0.0]);
    let events = [event("final", 1_100, 1_300, 9_000)];
    let d = demand(&inputs(&arrivals, &spilled, &events, Some(4_000.0)));
    assert_eq!(d.event.as_deref(), Some("final"));
    assert!((d.overflow_rps - 5_000.0).abs() < 1e-6);
    // Unknown capacity: what on-prem serves now (1000) stands in.
    let d = demand(&inputs(&arrivals, &spilled, &events, None));
    assert!((d.overflow_rps - 8_000.0).abs() < 1e-6);
}

#[test]
fn the_share_in_effect_follows_the_written_one_over_a_ttl() {
    let ttl = Duration::from_secs(60);
    assert_eq!(effective_share(&History::new(8), 10.0, ttl), 0.0, "no samples: nothing shifted");
    let mut h = History::new(HISTORY_SAMPLES);
    for t in 0..=200 {
        h.push(f64::from(t), if t < 100 { 0.0 } else { 1.0 });
    }
    let at = |now: f64| effective_share(&h, now, ttl);
    assert!(at(100.0).abs() < 1e-9, "just written: no resolver has it yet");
    assert!((at(130.0) - 0.5).abs() < 1e-9);
    assert!((at(160.0) - 1.0).abs() < 1e-9, "a TTL later: fully in effect");
    assert_eq!(effective_share(&h, 150.0, Duration::ZERO), 1.0, "TTL 0: as written");
    let mut late = History::new(8);
    late.push(50.0, 0.4);
    assert!((effective_share(&late, 60.0, ttl) - 0.4).abs() < 1e-9, "before the first sample: as first read");
}

/// What the cloud serves in a site with `total` rps, on-prem capacity `cap`
/// and `in_effect` of all traffic sent to the cloud by DNS.
fn cloud_load(total: f64, cap: f64, in_effect: f64) -> f64 {
    let gate = total * (1.0 - in_effect);
    (gate - cap).max(0.0) + total * in_effect
}

#[test]
fn spill_and_dns_direct_are_each_counted_once() {
    let case = |gate: f64, spilled: f64, cap: f64, share: f64| {
        let (arrivals, spilled) = (ring(std::iter::repeat_n(gate, 60)), ring(std::iter::repeat_n(spilled, 60)));
        let mut inp = inputs(&arrivals, &spilled, &[], Some(cap));
        inp.dns_cloud_share = share;
        demand(&inp).overflow_rps
    };
    // 3000 rps, on-prem 1000. Just after DNS was set to 60 % cloud, resolvers
    // still use the old weights (share in effect 0): the gate spills 2000.
    // Counting the written share at once gave 3000 / 0.4 − 1000 = 6500.
    assert!((case(3000.0, 2000.0, 1000.0, 0.0) - cloud_load(3000.0, 1000.0, 0.0)).abs() < 1e-6);
    // A TTL later: 60 % in effect, the gate sees 1200 and spills 200; DNS sends 1800 direct.
    assert!((case(1200.0, 200.0, 1000.0, 0.6) - cloud_load(3000.0, 1000.0, 0.6)).abs() < 1e-6);
    // On-prem has room: 1000 rps, capacity 800, half by DNS: the cloud serves 500
    // (total − capacity said 200, too few: on-prem's room takes no DNS-direct request).
    assert!((case(500.0, 0.0, 800.0, 0.5) - cloud_load(1000.0, 800.0, 0.5)).abs() < 1e-6);
    // No shift, room on-prem: negative overflow (room), as before.
    assert!((case(500.0, 0.0, 800.0, 0.0) + 300.0).abs() < 1e-6);
}

#[test]
fn without_a_known_capacity_shed_demand_counts_as_overflow() {
    // The cloud serves 300 req/s of spill and 200 req/s more are shed: it
    // must be sized for 500, not for what it managed to serve.
    let arrivals = ring(std::iter::repeat_n(1_500.0, 300));
    let spilled = ring(std::iter::repeat_n(300.0, 300));
    let shed = ring(std::iter::repeat_n(200.0, 300));
    let served_only = demand(&inputs(&arrivals, &spilled, &[], None));
    let with_shed = demand(&DemandInputs { shed: &shed, ..inputs(&arrivals, &spilled, &[], None) });
    assert!((served_only.overflow_rps - 300.0).abs() < 1e-6, "{served_only:?}");
    assert!((with_shed.overflow_rps - 500.0).abs() < 1e-6, "{with_shed:?}");
    // With a known capacity the arrivals already hold the shed requests.
    let known = demand(&DemandInputs { shed: &shed, ..inputs(&arrivals, &spilled, &[], Some(1_000.0)) });
    assert!((known.overflow_rps - 500.0).abs() < 1e-6, "{known:?}");
}

#[test]
fn a_dns_shift_of_a_steady_total_is_not_mistaken_for_more_demand() {
    // 3000 rps in all, on-prem 1000; at t = 100 s DNS is set to 60 % cloud
    // (TTL 10 s): the gate's arrivals fall to 1200 as resolvers follow.
    let (total, cap, ttl) = (3000.0, 1000.0, Duration::from_secs(10));
    let (mut shares, mut arrivals, mut totals, mut spilled) = (ring([]), ring([]), ring([]), ring([]));
    let (mut worst_totals, mut worst_gate) = (0.0_f64, 0.0_f64);
    for t in 0..200 {
        let at = f64::from(t);
        shares.push(at, if t < 100 { 0.0 } else { 0.6 });
        let in_effect = effective_share(&shares, at, ttl);
        let gate = total * (1.0 - in_effect);
        arrivals.push(at, gate);
        spilled.push(at, (gate - cap).max(0.0));
        totals.push(at, total_sample(gate, in_effect).unwrap());
        let truth = cloud_load(total, cap, in_effect);
        let mut inp = inputs(&arrivals, &spilled, &[], Some(cap));
        inp.warmup = Duration::from_secs(5);
        inp.dns_cloud_share = in_effect;
        let by_gate = demand(&inp).overflow_rps;
        inp.totals = Some(&totals);
        let by_totals = demand(&inp).overflow_rps;
        worst_totals = worst_totals.max(by_totals / truth);
        worst_gate = worst_gate.max(by_gate / truth);
    }
    assert!(worst_totals < 1.05, "the total's projection: at most {worst_totals:.2}× the cloud's load");
    assert!(worst_gate > 1.3, "projecting the gate's falling arrivals overshot ({worst_gate:.2}×)");
}

#[test]
fn a_noisy_ramp_keeps_most_of_its_lead() {
    // 1000 rps more over 600 s (1.67 rps/s) with ±15 rps of noise on each sample.
    let mut rng = fastrand::Rng::with_seed(11);
    let ahead = Duration::from_secs(180);
    let mut h = ring([]);
    let (mut led, mut n) = (0, 0);
    for i in 0..600 {
        let truth = f64::from(i) * 1000.0 / 600.0;
        h.push(f64::from(i), truth + 30.0 * (rng.f64() - 0.5));
        if i >= 300 {
            n += 1;
            // Half the true lead (300 rps) at least.
            led += usize::from(confirmed(HOLT, &h).unwrap().at(ahead) >= truth + 150.0);
        }
    }
    // The fast fit's slope is noisy: where it reads low or flips sign the
    // lead shrinks or goes (the cooldown keeps what earlier samples asked
    // for). Measured: 184 of 300 with this seed (199 with the fast fit's
    // alpha at 0.3, which rang after a step: `a_step_is_not_projected…`);
    // a slower fast fit (beta 0.2) led on 254 but overshot a DNS shift's
    // steady total (`controller_tests::a_dns_shift_is_counted_once…`: 29 for 24).
    assert!(led * 10 >= n * 6, "led on {led} of {n} samples");
}

/// The worst projection `ahead` while `steps` samples `dt` apart follow a
/// step from 0 to 100 rps (ten samples of 0 before it).
fn worst_after_a_step(dt: f64, ahead: Duration, steps: usize) -> f64 {
    let mut h = ring([]);
    for i in 0..10 {
        h.push(f64::from(i) * dt, 0.0);
    }
    let mut worst = 0.0_f64;
    for i in 10..10 + steps {
        h.push(i as f64 * dt, 100.0);
        worst = worst.max(confirmed(HOLT, &h).unwrap().at(ahead));
    }
    worst
}

#[test]
fn a_step_is_not_projected_as_a_steep_ramp() {
    // Production's shape: one sample a second, three minutes' warm-up. The
    // smoothed step climbs for about seven samples; projected 180 s ahead
    // that climb asked for 8.2 times the step before the reach check.
    let prod = worst_after_a_step(1.0, Duration::from_secs(180), 600);
    // Measured: 105.7 here and for the short warm-up below.
    assert!(prod <= 108.0, "a step of 100 rps projected to {prod:.1}");
    // A short warm-up, sampled twice a second (the moto runs): within 8 % too (was 17 %).
    let short = worst_after_a_step(0.5, Duration::from_secs(2), 120);
    assert!(short <= 108.0, "{short:.1}");
    assert_eq!((settle_samples(0.3), settle_samples(1.0), settle_samples(0.9)), (7, 0, 1));
}

#[test]
fn a_sustained_ramp_gets_its_whole_lead_once_it_has_lasted_the_warmup() {
    let ahead = Duration::from_secs(180);
    let mut h = ring([0.0; 10]);
    let (mut early, mut late) = (None, None);
    for i in 0..400 {
        let at = f64::from(10 + i);
        h.push(at, f64::from(i) * 2.0);
        let t = confirmed(HOLT, &h).unwrap();
        let lead = t.at(ahead) - t.level;
        if i == 60 {
            early = Some(lead);
        }
        if i == 399 {
            late = Some(lead);
        }
    }
    // One minute in: as far ahead as it has lasted past the settling samples.
    let early = early.unwrap();
    assert!((early / 2.0 - (60.0 - 7.0)).abs() < 8.0, "lead {early:.0} rps one minute into a 2 rps/s ramp");
    // Past 7 s + 180 s: the whole warm-up's lead (2 rps/s × 180 s).
    let late = late.unwrap();
    assert!((late - 360.0).abs() < 0.05 * 360.0, "lead {late:.0}");
}

#[test]
fn a_second_step_after_a_long_plateau_is_not_projected_as_a_ramp_either() {
    // 0 → 100 and, after ten minutes of plateau (the slow slope decays
    // towards 0 without changing sign), 100 → 200: the second step starts a
    // new run, so its climb is not projected 180 s ahead either.
    let ahead = Duration::from_secs(180);
    let mut h = ring([]);
    let mut worst = 0.0_f64;
    for i in 0..1200u32 {
        let rps = match i {
            0..10 => 0.0,
            10..600 => 100.0,
            _ => 200.0,
        };
        h.push(f64::from(i), rps);
        if i >= 600 {
            worst = worst.max(confirmed(HOLT, &h).unwrap().at(ahead));
        }
    }
    // Measured: 205.7 (887.5 without the flat slope ending the first run).
    assert!(worst <= 216.0, "a second step to 200 rps projected to {worst:.1}");
}

#[test]
fn the_pooled_total_is_the_sample_without_dns_and_exact_across_a_shift() {
    let ttl = Duration::from_secs(10);
    let (mut arrivals, mut shares) = (ring([]), ring([]));
    // No DNS: the newest arrival sample itself.
    for t in 0..5 {
        arrivals.push(f64::from(t), 100.0 + f64::from(t));
        shares.push(f64::from(t), 0.0);
    }
    assert_eq!(pooled_total(&arrivals, &shares, ttl), Some((104.0, 1)));
    // A steady 3000 rps total while DNS moves to 90 % cloud: each sample is
    // divided by the share in effect at its own time, so the pooled total
    // stays 3000 although it averages samples taken at different shares.
    for t in 5..60 {
        let at = f64::from(t);
        shares.push(at, if t < 20 { 0.0 } else { 0.9 });
        arrivals.push(at, 3000.0 * (1.0 - effective_share(&shares, at, ttl)));
        if t >= 5 {
            let total = pooled_total(&arrivals, &shares, ttl).unwrap().0;
            assert!((total - 3000.0).abs() < 1e-6, "t={t}: {total}");
        }
    }
    // Over MAX_DNS_SHARE: no total (the projection bridges the gap).
    shares.push(60.0, 1.0);
    arrivals.push(60.0, 0.0);
    let mut later = arrivals.clone();
    later.push(75.0, 0.0);
    shares.push(75.0, 1.0);
    assert_eq!(pooled_total(&later, &shares, ttl), None);
    assert_eq!(pooled_total(&ring([]), &shares, ttl), None);
}

#[test]
fn at_a_high_dns_share_the_gates_noise_is_pooled_not_multiplied() {
    // 1142 rps in all, 87 % to the cloud by DNS: the gate sees about 148 rps,
    // with ±30 % of noise on each one-second sample (the demo's worst was +50 %).
    let ttl = Duration::from_secs(10);
    let mut rng = fastrand::Rng::with_seed(7);
    let (mut arrivals, mut shares) = (ring([]), ring([]));
    let (mut sq_single, mut sq_pooled, mut n) = (0.0_f64, 0.0_f64, 0.0_f64);
    for t in 0..300 {
        let at = f64::from(t);
        shares.push(at, 0.87);
        let gate = 1142.0 * 0.13 * (1.0 + 0.3 * (2.0 * rng.f64() - 1.0));
        arrivals.push(at, gate);
        if t >= 20 {
            let s = effective_share(&shares, at, ttl);
            let single = total_sample(gate, s).unwrap() / 1142.0 - 1.0;
            let pooled = pooled_total(&arrivals, &shares, ttl).unwrap().0 / 1142.0 - 1.0;
            (sq_single, sq_pooled, n) = (sq_single + single * single, sq_pooled + pooled * pooled, n + 1.0);
        }
    }
    // k = 8 samples: the total's error shrinks by about √8 (17 % to 6 % rms).
    let (single, pooled) = ((sq_single / n).sqrt(), (sq_pooled / n).sqrt());
    assert!(single > 0.15 && pooled < 0.45 * single, "rms error: one sample {single:.3}, pooled {pooled:.3}");
}

#[test]
fn the_pooled_count_follows_the_share_and_leaving_dr_waits_for_half_of_it() {
    let ttl = Duration::from_secs(60);
    let at_share = |w: f64| {
        let (mut arrivals, mut shares) = (ring([]), ring([]));
        for t in 0..100 {
            shares.push(f64::from(t), w / 255.0);
            arrivals.push(f64::from(t), 100.0);
        }
        pooled_total(&arrivals, &shares, ttl).unwrap().1
    };
    assert_eq!((at_share(0.0), at_share(1.0), at_share(128.0), at_share(242.0)), (1, 2, 3, 20));
    // Leaving DR: the share in effect falls under MAX_DNS_SHARE three seconds
    // after the records go back, when one sample of the twenty wanted exists.
    let (mut arrivals, mut shares) = (ring([]), ring([]));
    let mut first = None;
    for t in 0..120 {
        let at = f64::from(t);
        shares.push(at, if t < 60 { 1.0 } else { 0.0 });
        arrivals.push(at, 50.0);
        let s = effective_share(&shares, at, ttl);
        match pooled_total(&arrivals, &shares, ttl) {
            Some((_, k)) if first.is_none() => first = Some((t, k, s)),
            None if t > 60 && s <= 0.95 => assert!(first.is_none(), "t={t}: a total was given, then none"),
            _ => {}
        }
    }
    let (t, k, s) = first.expect("a total once DR has ended");
    // The share keeps falling (1/60 a second), so k does too: the first
    // total comes once half of the k of then exist (measured: t = 67, k = 9,
    // five samples from t = 63), not from one sample at t = 63.
    assert!((65..=70).contains(&t) && t - 63 + 1 >= k.div_ceil(2) as u32, "first total at t={t} (k {k}, share {s:.3})");
}

#[test]
fn at_a_high_dns_share_a_step_of_the_total_is_not_projected_as_a_ramp() {
    // The total steps 100 → 200 rps while DNS sends 242/255 to the cloud:
    // pooled over k = 20 samples, the step reaches the totals as a 20 s ramp.
    let (ttl, ahead) = (Duration::from_secs(60), Duration::from_secs(180));
    let (mut arrivals, mut shares, mut totals) = (ring([]), ring([]), ring([]));
    let (mut plain, mut aware) = (0.0_f64, 0.0_f64);
    for t in 0..400u32 {
        let at = f64::from(t);
        shares.push(at, 242.0 / 255.0);
        let total = if t < 200 { 100.0 } else { 200.0 };
        arrivals.push(at, total * (1.0 - effective_share(&shares, at, ttl)));
        if let Some((p, k)) = pooled_total(&arrivals, &shares, ttl) {
            totals.push(at, p);
            if t >= 200 {
                plain = plain.max(confirmed(HOLT, &totals).unwrap().at(ahead));
                aware = aware.max(confirmed_after(HOLT, &totals, k).unwrap().at(ahead));
            }
        }
    }
    assert!(plain > 220.0, "the pooled step, settled as a raw one, projected to {plain:.1}");
    assert!(aware <= 212.0, "a step to 200 rps projected to {aware:.1} (settled as {plain:.1})");
}

#[test]
fn a_noisy_ramp_at_a_high_level_keeps_its_lead() {
    // 1000 rps rising 2 rps/s, with the counting noise of a one-second
    // sample (about ±32 rps): the slope dips into the flat band (0.5 rps/s
    // at this level) now and then; a dip must not end the ramp's run.
    let mut rng = fastrand::Rng::with_seed(5);
    let ahead = Duration::from_secs(180);
    let mut h = ring([]);
    let mut leads = Vec::new();
    for i in 0..600u32 {
        let truth = 1000.0 + 2.0 * f64::from(i);
        h.push(f64::from(i), truth + 55.0 * (2.0 * rng.f64() - 1.0));
        if i >= 300 {
            let t = confirmed(HOLT, &h).unwrap();
            leads.push(t.at(ahead) - t.level);
        }
    }
    leads.sort_by(f64::total_cmp);
    let median = leads[leads.len() / 2];
    // Measured: 273 (0 when one flat sample ended the run).
    assert!(median >= 200.0, "median lead {median:.0} rps of the 360 a 180 s warm-up asks");
}
