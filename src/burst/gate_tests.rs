//! Unit and property tests of the gate and the hysteresis.

use super::*;
use crate::burst::dr::DrState;

const TICK: Duration = Duration::from_millis(100);

fn base() -> GateInputs {
    GateInputs {
        phase: SpillPhase::Spilling,
        in_flight: 1,
        limit: 10,
        max_in_flight: 20,
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
        shed_when_cloud_unavailable: false,
    }
}

fn random_inputs(rng: &mut fastrand::Rng) -> GateInputs {
    GateInputs {
        phase: if rng.bool() { SpillPhase::Spilling } else { SpillPhase::Calm },
        in_flight: rng.u32(0..60),
        limit: rng.u32(0..40),
        max_in_flight: rng.u32(0..50),
        method_may_spill: rng.bool(),
        path_never_spills: rng.u8(0..4) == 0,
        pinned: rng.u8(0..4) == 0,
        has_overflow: rng.u8(0..5) != 0,
        cloud_healthy: rng.u8(0..5) != 0,
        replica_lag_ok: rng.u8(0..5) != 0,
        cloud_room: rng.u8(0..4) != 0,
        queue_ahead: rng.u8(0..4) == 0,
        hard_queue_ahead: rng.u8(0..8) == 0,
        primary_healthy: rng.u8(0..6) != 0,
        dr: match rng.u8(0..9) {
            0 => DrState::DrPending,
            1 => DrState::DrActive,
            2 => DrState::FailbackPending,
            _ => DrState::Normal,
        },
        writes_held: rng.u8(0..8) == 0,
        write: rng.u8(0..4) == 0,
        method_known: rng.u8(0..5) != 0,
        shed_when_cloud_unavailable: rng.bool(),
    }
}

const SEED: u64 = 0x6a7e;
const CASES: usize = 50_000;

#[test]
fn table_of_reasons() {
    use SpillDecision::*;
    let over = GateInputs { in_flight: 11, ..base() };
    let hard = GateInputs { in_flight: 21, phase: SpillPhase::Calm, ..base() };
    let cases = [
        (GateInputs { in_flight: 10, ..base() }, Primary(StayReason::UnderLimit)),
        (over, Cloud(SpillReason::OverLimit)),
        (GateInputs { phase: SpillPhase::Calm, ..over }, Primary(StayReason::NotSpilling)),
        (hard, Cloud(SpillReason::OverHardLimit)),
        (GateInputs { method_may_spill: false, ..over }, Primary(StayReason::MethodNotSpillable)),
        (GateInputs { path_never_spills: true, ..over }, Primary(StayReason::NeverSpillPath)),
        (GateInputs { pinned: true, ..hard }, Queue(QueueReason::OverHardLimit)),
        (GateInputs { method_may_spill: false, ..hard }, Queue(QueueReason::OverHardLimit)),
        (GateInputs { has_overflow: false, ..hard }, Queue(QueueReason::NoOverflowPool)),
        (GateInputs { method_may_spill: false, method_known: false, ..over }, Queue(QueueReason::UnknownMethod)),
        (
            GateInputs { method_may_spill: false, method_known: false, phase: SpillPhase::Calm, ..over },
            Primary(StayReason::NotSpilling),
        ),
        (GateInputs { has_overflow: false, ..over }, Primary(StayReason::NoOverflowPool)),
        (GateInputs { cloud_healthy: false, ..over }, Primary(StayReason::CloudUnavailable)),
        (GateInputs { replica_lag_ok: false, ..over }, Primary(StayReason::ReplicaLag)),
        (
            GateInputs { cloud_healthy: false, shed_when_cloud_unavailable: true, ..over },
            Queue(QueueReason::CloudUnavailable),
        ),
        (
            GateInputs { replica_lag_ok: false, shed_when_cloud_unavailable: true, ..over },
            Queue(QueueReason::ReplicaLag),
        ),
        (
            GateInputs { has_overflow: false, shed_when_cloud_unavailable: true, ..over },
            Queue(QueueReason::NoOverflowPool),
        ),
        (
            GateInputs { pinned: true, cloud_healthy: false, shed_when_cloud_unavailable: true, ..over },
            Primary(StayReason::PinnedAfterWrite),
        ),
        (GateInputs { in_flight: 20, limit: 50, ..base() }, Primary(StayReason::UnderLimit)),
        (GateInputs { in_flight: 21, limit: 50, ..base() }, Cloud(SpillReason::OverHardLimit)),
        (
            GateInputs {
                primary_healthy: false,
                dr: DrState::DrActive,
                method_may_spill: false,
                pinned: true,
                phase: SpillPhase::Calm,
                ..base()
            },
            Cloud(SpillReason::DisasterRecovery),
        ),
        (GateInputs { primary_healthy: false, cloud_healthy: false, ..base() }, Primary(StayReason::PrimaryDown)),
        (GateInputs { primary_healthy: false, ..base() }, Cloud(SpillReason::PrimaryDown)),
        (GateInputs { primary_healthy: false, pinned: true, ..base() }, Primary(StayReason::PrimaryDown)),
        (GateInputs { primary_healthy: false, method_may_spill: false, ..base() }, Primary(StayReason::PrimaryDown)),
        (GateInputs { primary_healthy: false, replica_lag_ok: false, ..base() }, Primary(StayReason::PrimaryDown)),
        (
            GateInputs { primary_healthy: false, dr: DrState::DrActive, cloud_healthy: false, ..base() },
            Primary(StayReason::PrimaryDown),
        ),
        (GateInputs { cloud_room: false, ..over }, Primary(StayReason::CloudFull)),
        (GateInputs { cloud_room: false, shed_when_cloud_unavailable: true, ..over }, Queue(QueueReason::CloudFull)),
        (GateInputs { cloud_room: false, ..hard }, Queue(QueueReason::CloudFull)),
        // The cap does not hold in DR nor with the primary down.
        (GateInputs { cloud_room: false, primary_healthy: false, ..base() }, Cloud(SpillReason::PrimaryDown)),
        (
            GateInputs { cloud_room: false, dr: DrState::DrActive, shed_when_cloud_unavailable: true, ..over },
            Cloud(SpillReason::DisasterRecovery),
        ),
        // Under the limit, but others queue: no slot ahead of them.
        (GateInputs { queue_ahead: true, in_flight: 5, ..base() }, Cloud(SpillReason::OverLimit)),
        (
            GateInputs {
                queue_ahead: true,
                in_flight: 5,
                cloud_room: false,
                shed_when_cloud_unavailable: true,
                ..base()
            },
            Queue(QueueReason::CloudFull),
        ),
        // A write under the limit while others queue waits behind them (it ranks among them).
        (
            GateInputs { queue_ahead: true, in_flight: 5, write: true, method_may_spill: false, ..base() },
            Queue(QueueReason::QueueAhead),
        ),
        // Over the limit, under the hard cap: admitted, unless a hard waiter waits for just such a slot.
        (
            GateInputs { in_flight: 15, write: true, method_may_spill: false, ..base() },
            Primary(StayReason::MethodNotSpillable),
        ),
        (
            GateInputs {
                in_flight: 15,
                write: true,
                method_may_spill: false,
                queue_ahead: true,
                hard_queue_ahead: true,
                ..base()
            },
            Queue(QueueReason::QueueAhead),
        ),
        (
            GateInputs { in_flight: 15, phase: SpillPhase::Calm, queue_ahead: true, ..base() },
            Primary(StayReason::NotSpilling),
        ),
        (
            GateInputs { in_flight: 15, phase: SpillPhase::Calm, queue_ahead: true, hard_queue_ahead: true, ..base() },
            Queue(QueueReason::QueueAhead),
        ),
        // An eligible read still spills past the hard waiters (it takes no primary slot).
        (
            GateInputs { in_flight: 15, queue_ahead: true, hard_queue_ahead: true, ..base() },
            Cloud(SpillReason::OverLimit),
        ),
    ];
    for (inputs, want) in cases {
        assert_eq!(decide(&inputs), want, "{inputs:?}");
    }
}

#[test]
fn every_decision_is_listed_in_all() {
    let mut rng = fastrand::Rng::with_seed(SEED + 5);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..CASES {
        let d = decide(&random_inputs(&mut rng));
        assert!(SpillDecision::ALL.contains(&d), "{d:?} is missing from SpillDecision::ALL");
        seen.insert(d);
    }
    assert_eq!(seen.len(), SpillDecision::ALL.len(), "every listed decision is reachable");
}

#[test]
fn labels_are_snake_case() {
    let labels = [
        StayReason::MethodNotSpillable.as_str(),
        SpillReason::DisasterRecovery.as_str(),
        QueueReason::CloudUnavailable.as_str(),
        SpillDecision::Cloud(SpillReason::OverHardLimit).reason(),
        SpillDecision::Queue(QueueReason::ReplicaLag).target(),
        Pressure::OverSlo.as_str(),
        SpillPhase::Spilling.as_str(),
    ];
    for label in labels {
        assert!(label.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{label}");
    }
}

#[test]
fn property_nothing_leaves_primary_at_or_under_the_limit_outside_dr() {
    let mut rng = fastrand::Rng::with_seed(SEED);
    for _ in 0..CASES {
        let mut i = random_inputs(&mut rng);
        i.primary_healthy = true;
        i.dr = DrState::Normal;
        i.writes_held = false;
        i.queue_ahead = false;
        i.in_flight = i.in_flight.min(i.limit).min(i.max_in_flight);
        assert_eq!(decide(&i), SpillDecision::Primary(StayReason::UnderLimit), "seed {SEED}: {i:?}");
    }
}

#[test]
fn property_more_in_flight_never_returns_to_primary() {
    let mut rng = fastrand::Rng::with_seed(SEED + 1);
    for _ in 0..CASES {
        let i = random_inputs(&mut rng);
        let more = GateInputs { in_flight: i.in_flight + rng.u32(1..30), ..i };
        // Waiting behind a queue whose waiters may use only slots under the
        // limit: over it, nobody is overtaken (the one non-monotone case).
        let behind_under_limit = decide(&i) == SpillDecision::Queue(QueueReason::QueueAhead) && !i.hard_queue_ahead;
        if !matches!(decide(&i), SpillDecision::Primary(_)) && !behind_under_limit {
            assert!(!matches!(decide(&more), SpillDecision::Primary(_)), "seed {SEED}: {i:?} then {more:?}");
        }
    }
}

#[test]
fn property_pinned_and_writes_stay_on_primary_outside_dr() {
    let mut rng = fastrand::Rng::with_seed(SEED + 2);
    for _ in 0..CASES {
        let mut i = random_inputs(&mut rng);
        if !matches!(i.dr, DrState::Normal | DrState::DrActive) || i.writes_held {
            continue; // the DR properties below cover these
        }
        let dr = i.dr == DrState::DrActive && (i.write || i.has_overflow && i.cloud_healthy);
        match rng.u8(0..3) {
            0 => i.pinned = true,
            1 => i.method_may_spill = false,
            _ => i.path_never_spills = true,
        }
        let got = decide(&i);
        if dr {
            assert_eq!(got, SpillDecision::Cloud(SpillReason::DisasterRecovery), "seed {SEED}: {i:?}");
        } else {
            assert!(!matches!(got, SpillDecision::Cloud(_)), "seed {SEED}: {i:?} -> {got:?}");
            if matches!(got, SpillDecision::Queue(_)) {
                let behind =
                    got == SpillDecision::Queue(QueueReason::QueueAhead) && (i.queue_ahead || i.hard_queue_ahead);
                assert!(i.primary_healthy && (i.in_flight > i.max_in_flight || !i.method_known || behind), "{i:?}");
            }
        }
    }
}

#[test]
fn property_cloud_only_when_eligible_and_available() {
    let mut rng = fastrand::Rng::with_seed(SEED + 3);
    for _ in 0..CASES {
        let i = random_inputs(&mut rng);
        if let SpillDecision::Cloud(reason) = decide(&i) {
            if i.write && i.dr != DrState::Normal {
                assert!(i.dr.writes_in_cloud() && reason == SpillReason::DisasterRecovery, "seed {SEED}: {i:?}");
                continue;
            }
            assert!(i.has_overflow && i.cloud_healthy, "seed {SEED}: {i:?}");
            if !matches!(reason, SpillReason::DisasterRecovery | SpillReason::DrPending) {
                assert!(i.replica_lag_ok && i.method_may_spill && !i.pinned && !i.path_never_spills);
                let uncapped = !i.primary_healthy || i.dr != DrState::Normal;
                assert!(i.cloud_room || uncapped, "a full cloud takes no spill: {i:?}");
                let pressed = i.phase == SpillPhase::Spilling || i.in_flight > i.max_in_flight;
                assert!(pressed || !i.primary_healthy, "{i:?}");
            }
        }
        if matches!(decide(&i), SpillDecision::Queue(_)) {
            assert!(i.primary_healthy && (i.in_flight > i.limit.min(i.max_in_flight) || i.queue_ahead), "{i:?}");
            let eligible = i.method_may_spill && !i.pinned && !i.path_never_spills;
            let over_hard = i.in_flight > i.max_in_flight;
            let behind = decide(&i) == SpillDecision::Queue(QueueReason::QueueAhead);
            assert!(over_hard || (eligible && i.shed_when_cloud_unavailable) || !i.method_known || behind, "{i:?}");
            if behind {
                assert!(i.queue_ahead || i.hard_queue_ahead, "behind nobody: {i:?}");
            }
        }
    }
}

#[test]
fn property_nothing_is_admitted_to_a_serving_primary_over_the_hard_cap() {
    let mut rng = fastrand::Rng::with_seed(SEED + 4);
    for _ in 0..CASES {
        let i = random_inputs(&mut rng);
        if i.primary_healthy && i.in_flight > i.max_in_flight {
            assert!(!matches!(decide(&i), SpillDecision::Primary(_)), "seed {SEED}: {i:?}");
        }
    }
}

#[test]
fn property_writes_follow_the_dr_state() {
    let mut rng = fastrand::Rng::with_seed(SEED + 6);
    for _ in 0..CASES {
        let i = GateInputs { write: true, ..random_inputs(&mut rng) };
        let got = decide(&i);
        match i.dr {
            _ if i.writes_held => assert_eq!(got, SpillDecision::ReadOnly, "held: {i:?}"),
            DrState::DrPending => assert_eq!(got, SpillDecision::ReadOnly, "seed {SEED}: {i:?}"),
            DrState::DrActive | DrState::FailbackPending => {
                assert_eq!(got, SpillDecision::Cloud(SpillReason::DisasterRecovery), "seed {SEED}: {i:?}")
            }
            DrState::Normal => assert_ne!(got, SpillDecision::ReadOnly, "{i:?}"),
        }
    }
}

#[test]
fn held_writes_are_refused_and_reads_go_on_by_the_state() {
    let mut rng = fastrand::Rng::with_seed(SEED + 9);
    for _ in 0..CASES {
        let i = random_inputs(&mut rng);
        let held = GateInputs { writes_held: true, ..i };
        if i.write {
            assert_eq!(decide(&held), SpillDecision::ReadOnly, "{i:?}");
        } else {
            assert_eq!(decide(&held), decide(&GateInputs { writes_held: false, ..i }), "a read is not held: {i:?}");
        }
    }
}

#[test]
fn dr_reads() {
    use SpillDecision::*;
    let read = |dr, pinned, primary_healthy, cloud_healthy| {
        decide(&GateInputs { dr, pinned, primary_healthy, cloud_healthy, ..base() })
    };
    assert_eq!(
        read(DrState::DrPending, true, false, true),
        Cloud(SpillReason::DrPending),
        "pins cannot hold a lost site"
    );
    assert_eq!(read(DrState::DrPending, false, false, false), Primary(StayReason::PrimaryDown));
    assert_eq!(read(DrState::DrActive, false, true, true), Cloud(SpillReason::DisasterRecovery), "manual engage");
    assert_eq!(read(DrState::DrActive, false, true, false), Primary(StayReason::UnderLimit));
    assert_eq!(
        read(DrState::FailbackPending, false, true, true),
        Primary(StayReason::UnderLimit),
        "reads return early"
    );
    assert_eq!(read(DrState::FailbackPending, true, true, true), Cloud(SpillReason::DisasterRecovery), "pinned stay");
    assert_eq!(read(DrState::FailbackPending, false, false, true), Cloud(SpillReason::DisasterRecovery));
}

#[test]
fn an_outage_becomes_dr_only_after_it_has_lasted() {
    let after = Duration::from_secs(10);
    let t0 = Instant::now();
    let mut o = OutageTimer::default();
    assert!(!o.observe(true, t0, after));
    assert!(!o.observe(false, t0, after));
    assert!(!o.observe(false, t0 + Duration::from_millis(9_999), after));
    assert!(o.observe(false, t0 + after, after));
    assert!(!o.observe(true, t0 + after, after), "one reachable probe ends it");
    assert!(!o.observe(false, t0 + after * 2, after), "and the clock starts again");
    assert!(o.observe(false, t0 + after * 3, after));
    assert!(OutageTimer::default().observe(false, t0, Duration::ZERO), "disaster_after = 0: at once");
}

#[test]
fn pressure_classification() {
    let w =
        WindowStats { max_in_flight: 10, in_flight: 3, p99_sliding: Duration::from_millis(100), ..Default::default() };
    let slo = Duration::from_millis(250);
    assert_eq!(pressure(&w, 10, slo), Pressure::Calm);
    assert_eq!(pressure(&w, 9, slo), Pressure::OverLimit);
    assert_eq!(pressure(&WindowStats { p99_sliding: slo * 2, ..w }, 10, slo), Pressure::OverSlo);
    assert_eq!(pressure(&WindowStats { in_flight: 12, ..w }, 10, slo), Pressure::OverLimit);
}

#[test]
fn hysteresis_waits_enter_after_and_exit_after() {
    let t0 = Instant::now();
    let mut c = SpillController::new(Duration::from_secs(1), Duration::from_secs(3));
    for tick in 0..10 {
        assert_eq!(c.observe(Pressure::OverLimit, t0 + TICK * tick), SpillPhase::Calm, "tick {tick}");
    }
    assert_eq!(c.observe(Pressure::OverSlo, t0 + TICK * 10), SpillPhase::Spilling);
    assert_eq!(c.phase_since(), Some(t0 + TICK * 10));
    for tick in 11..40 {
        assert_eq!(c.observe(Pressure::Calm, t0 + TICK * tick), SpillPhase::Spilling, "tick {tick}");
    }
    assert_eq!(c.observe(Pressure::Calm, t0 + TICK * 40), SpillPhase::Calm);
    assert_eq!(c.phase(), SpillPhase::Calm);
}

#[test]
fn hysteresis_a_stalled_ticker_counts_one_step_at_most() {
    let t0 = Instant::now();
    let mut c = SpillController::new(Duration::from_secs(2), Duration::from_secs(30));
    c.observe(Pressure::Calm, t0);
    assert_eq!(c.observe(Pressure::OverLimit, t0 + Duration::from_secs(60)), SpillPhase::Calm);
    assert_eq!(c.observe(Pressure::OverLimit, t0 + Duration::from_secs(61)), SpillPhase::Spilling);
}

#[test]
fn hysteresis_alternating_pressure_does_not_flap() {
    let t0 = Instant::now();
    let mut c = SpillController::new(Duration::from_secs(1), Duration::from_secs(30));
    for tick in 0..10_000 {
        let p = if tick % 2 == 0 { Pressure::OverLimit } else { Pressure::Calm };
        assert_eq!(c.observe(p, t0 + TICK * tick), SpillPhase::Calm, "tick {tick}");
    }
}

/// Random pressure at several duty cycles: every phase change is preceded by
/// at least `enter_after` (`exit_after`) of time in the previous phase and of
/// pressured (calm) observations; sparse noise never enters, mostly
/// pressured signals enter once and stay.
#[test]
fn property_hysteresis_holds_under_noise() {
    let t0 = Instant::now();
    let (enter, exit) = (Duration::from_secs(1), Duration::from_secs(5));
    for (k, duty) in [0.3, 0.5, 0.6, 0.8, 0.95].into_iter().enumerate() {
        let seed = SEED + 10 + k as u64;
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut c = SpillController::new(enter, exit);
        let (mut changed_at, mut toward, mut changes) = (t0, Duration::ZERO, 0);
        let mut now = t0;
        for _ in 0..20_000 {
            now += TICK;
            let pressed = rng.f64() < duty;
            let before = c.phase();
            if pressed == (before == SpillPhase::Calm) {
                toward += TICK;
            }
            let after = c.observe(if pressed { Pressure::OverLimit } else { Pressure::Calm }, now);
            if after != before {
                let need = if before == SpillPhase::Calm { enter } else { exit };
                assert!(now - changed_at >= need, "seed {seed} duty {duty}: changed after {:?}", now - changed_at);
                assert!(toward >= need, "seed {seed} duty {duty}: only {toward:?} of signal");
                (changed_at, toward, changes) = (now, Duration::ZERO, changes + 1);
            }
        }
        if duty < 0.5 {
            assert_eq!(changes, 0, "seed {seed}: {duty} noise entered spilling");
        } else if duty > 0.5 {
            assert_eq!(changes, 1, "seed {seed}: {duty} pressure did not enter, or left");
        }
        assert!(changes <= 2, "seed {seed} duty {duty}: {changes} phase changes (flapping)");
    }
}
