use super::*;

const MODES: [EngageMode; 2] = [EngageMode::Auto, EngageMode::Confirm];

fn policy(engage: EngageMode) -> DrPolicy {
    DrPolicy { engage, failback_after: Duration::from_secs(60) }
}

/// Every one of the 32 observations.
fn all_observations() -> impl Iterator<Item = DrObservation> {
    (0u8..32).map(|bits| DrObservation {
        onprem_lost: bits & 1 != 0,
        onprem_reachable: bits & 2 != 0,
        onprem_primary: bits & 4 != 0,
        cloud_ok: bits & 8 != 0,
        cloud_promoted: bits & 16 != 0,
    })
}

/// A machine in `state`, entered at `t0` (failback hold started then).
fn machine_in(state: DrState, t0: Instant) -> DrMachine {
    let mut m = DrMachine::new(t0);
    if state != DrState::Normal {
        m.state = state;
        m.reason = DrReason::OperatorEngage;
        m.failback_since = (state == DrState::FailbackPending).then_some(t0);
    }
    m
}

#[test]
fn one_state_encoding() {
    for s in DrState::ALL {
        assert_eq!(DrState::from_code(s as u8), s);
    }
    assert_eq!(DrState::from_code(200), DrState::Normal);
}

#[test]
fn writes_move_to_the_cloud_only_by_an_engage() {
    let t0 = Instant::now();
    for engage in MODES {
        for state in DrState::ALL.into_iter().filter(|s| !s.writes_in_cloud()) {
            for obs in all_observations() {
                let mut m = machine_in(state, t0);
                let Some(t) = m.observe(&obs, &policy(engage), t0 + Duration::from_secs(1)) else { continue };
                if !t.to.writes_in_cloud() {
                    continue;
                }
                let allowed = match t.reason {
                    DrReason::CloudPromoted => state == DrState::DrPending && obs.cloud_promoted,
                    DrReason::OnpremLost => engage == EngageMode::Auto && obs.onprem_lost && obs.cloud_ok,
                    _ => false,
                };
                assert!(allowed, "{engage:?} {state:?} {obs:?} moved writes: {t:?}");
            }
        }
    }
}

#[test]
fn writes_come_back_only_through_the_latch() {
    let t0 = Instant::now();
    for engage in MODES {
        for state in [DrState::DrActive, DrState::FailbackPending] {
            for obs in all_observations() {
                for later in [Duration::from_secs(1), Duration::from_secs(59), Duration::from_secs(60)] {
                    let mut m = machine_in(state, t0);
                    let Some(t) = m.observe(&obs, &policy(engage), t0 + later) else { continue };
                    if t.to.writes_in_cloud() {
                        continue;
                    }
                    assert_eq!(
                        (t.from, t.to, t.reason),
                        (DrState::FailbackPending, DrState::Normal, DrReason::FailbackHeld)
                    );
                    assert!(later >= Duration::from_secs(60), "{engage:?} {obs:?}: released before failback_after");
                    let signal = if engage == EngageMode::Auto { obs.onprem_reachable } else { obs.onprem_primary };
                    assert!(signal, "{engage:?} {obs:?}: released without the failback signal");
                }
            }
        }
    }
}

#[test]
fn confirm_mode_waits_in_pending_and_recovers_without_moving_writes() {
    let (t0, p) = (Instant::now(), policy(EngageMode::Confirm));
    let mut m = DrMachine::new(t0);
    let lost = DrObservation { onprem_lost: true, cloud_ok: true, ..Default::default() };
    let t = m.observe(&lost, &p, t0).unwrap();
    assert_eq!((t.to, t.reason), (DrState::DrPending, DrReason::OnpremLost));
    assert_eq!(m.observe(&lost, &p, t0 + Duration::from_secs(600)), None, "pending waits for an engage");
    let back = DrObservation { onprem_reachable: true, cloud_ok: true, ..Default::default() };
    let t = m.observe(&back, &p, t0 + Duration::from_secs(601)).unwrap();
    assert_eq!((t.to, t.reason), (DrState::Normal, DrReason::OnpremRecovered));
}

#[test]
fn without_a_cloud_the_outage_declares_nothing() {
    let t0 = Instant::now();
    for engage in MODES {
        let mut m = DrMachine::new(t0);
        let lost = DrObservation { onprem_lost: true, ..Default::default() };
        assert_eq!(m.observe(&lost, &policy(engage), t0), None);
    }
}

#[test]
fn the_cloud_reporting_promotion_engages_a_pending_site() {
    let (t0, p) = (Instant::now(), policy(EngageMode::Confirm));
    let mut m = machine_in(DrState::DrPending, t0);
    let promoted = DrObservation { onprem_lost: true, cloud_ok: true, cloud_promoted: true, ..Default::default() };
    let t = m.observe(&promoted, &p, t0).unwrap();
    assert_eq!((t.to, t.reason), (DrState::DrActive, DrReason::CloudPromoted));
    let mut normal = DrMachine::new(t0);
    let healthy = DrObservation { onprem_reachable: true, cloud_ok: true, cloud_promoted: true, ..Default::default() };
    assert_eq!(
        normal.observe(&healthy, &p, t0),
        None,
        "a promoted cloud alone does not take writes from a healthy site"
    );
}

#[test]
fn failback_signal_must_hold_without_a_break() {
    let (t0, p) = (Instant::now(), policy(EngageMode::Confirm));
    let s = Duration::from_secs;
    let mut m = machine_in(DrState::DrActive, t0);
    let primary = DrObservation { onprem_reachable: true, onprem_primary: true, cloud_ok: true, ..Default::default() };
    let replica = DrObservation { onprem_primary: false, ..primary };
    assert_eq!(m.observe(&primary, &p, t0).map(|t| t.to), Some(DrState::FailbackPending));
    assert_eq!(m.failback_in(&p, t0 + s(20)), Some(s(40)));
    assert_eq!(m.observe(&primary, &p, t0 + s(59)), None);
    let t = m.observe(&replica, &p, t0 + s(59)).unwrap();
    assert_eq!((t.to, t.reason), (DrState::DrActive, DrReason::FailbackInterrupted));
    assert_eq!(m.failback_in(&p, t0 + s(59)), None);
    assert_eq!(m.observe(&primary, &p, t0 + s(60)).map(|t| t.to), Some(DrState::FailbackPending));
    assert_eq!(m.observe(&primary, &p, t0 + s(119)), None, "the hold restarted at 60 s");
    let t = m.observe(&primary, &p, t0 + s(120)).unwrap();
    assert_eq!((t.to, t.reason), (DrState::Normal, DrReason::FailbackHeld));
}

#[test]
fn in_confirm_mode_healthy_probes_alone_never_fail_back() {
    let (t0, p) = (Instant::now(), policy(EngageMode::Confirm));
    let mut m = machine_in(DrState::DrActive, t0);
    for i in 0..1000u64 {
        // On-prem flapping every 3 s, never reporting itself primary.
        let up = (i / 3) % 2 == 0;
        let obs = DrObservation { onprem_reachable: up, onprem_lost: !up, cloud_ok: true, ..Default::default() };
        assert_eq!(m.observe(&obs, &p, t0 + Duration::from_secs(i)), None);
    }
    assert_eq!(m.state(), DrState::DrActive);
}

#[test]
fn auto_mode_engages_at_once_and_fails_back_after_held_health() {
    let (t0, p) = (Instant::now(), policy(EngageMode::Auto));
    let s = Duration::from_secs;
    let mut m = DrMachine::new(t0);
    let lost = DrObservation { onprem_lost: true, cloud_ok: true, ..Default::default() };
    assert_eq!(m.observe(&lost, &p, t0).map(|t| t.to), Some(DrState::DrActive));
    let up = DrObservation { onprem_reachable: true, cloud_ok: true, ..Default::default() };
    assert_eq!(m.observe(&up, &p, t0 + s(1)).map(|t| t.to), Some(DrState::FailbackPending));
    // Flapping: each break restarts the hold, so writes stay in the cloud.
    for i in 0..21u64 {
        let obs = if i % 2 == 0 { lost } else { up };
        m.observe(&obs, &p, t0 + s(2 + i * 3));
        assert!(m.state().writes_in_cloud());
    }
    let start = t0 + s(100);
    m.observe(&up, &p, start);
    assert_eq!(m.observe(&up, &p, start + s(59)), None);
    assert_eq!(m.observe(&up, &p, start + s(60)).map(|t| t.to), Some(DrState::Normal));
}

#[test]
fn engage_works_from_any_state_with_a_cloud() {
    let t0 = Instant::now();
    let healthy = DrObservation { onprem_reachable: true, cloud_ok: true, ..Default::default() };
    for state in DrState::ALL {
        let mut m = machine_in(state, t0);
        let r = m.command(DrCommand::Engage, &healthy, t0);
        assert!(r.is_ok(), "{state:?}");
        assert_eq!(m.state(), DrState::DrActive);
        assert_eq!(r.unwrap().is_none(), state == DrState::DrActive, "engaging twice is one transition");
        if state != DrState::DrActive {
            assert_eq!(m.reason(), DrReason::OperatorEngage);
        }
        let mut m = machine_in(state, t0);
        let no_cloud = DrObservation { cloud_ok: false, ..healthy };
        let r = m.command(DrCommand::Engage, &no_cloud, t0);
        if state == DrState::DrActive {
            assert_eq!(r, Ok(None));
        } else {
            assert_eq!(r, Err(DrRefusal::CloudUnavailable));
            assert_eq!(m.state(), state, "a refusal changes nothing");
        }
    }
}

#[test]
fn failback_needs_writes_in_the_cloud_and_a_reachable_onprem() {
    let t0 = Instant::now();
    let up = DrObservation { onprem_reachable: true, cloud_ok: true, ..Default::default() };
    let down = DrObservation { onprem_reachable: false, onprem_lost: true, cloud_ok: true, ..Default::default() };
    for state in DrState::ALL {
        let mut m = machine_in(state, t0);
        let r = m.command(DrCommand::Failback, &up, t0 + Duration::from_secs(1));
        if state.writes_in_cloud() {
            assert_eq!(r.unwrap().map(|t| (t.to, t.reason)), Some((DrState::Normal, DrReason::OperatorFailback)));
            assert_eq!(m.since(), t0 + Duration::from_secs(1));
        } else {
            assert_eq!(r, Err(DrRefusal::NotEngaged));
        }
        let mut m = machine_in(state, t0);
        let r = m.command(DrCommand::Failback, &down, t0);
        let expected = if state.writes_in_cloud() { DrRefusal::OnpremUnreachable } else { DrRefusal::NotEngaged };
        assert_eq!(r, Err(expected));
        assert_eq!(m.state(), state);
    }
}

#[test]
fn every_transition_changes_the_state_and_names_a_reason() {
    let t0 = Instant::now();
    for engage in MODES {
        for state in DrState::ALL {
            for obs in all_observations() {
                let mut m = machine_in(state, t0);
                if let Some(t) = m.observe(&obs, &policy(engage), t0 + Duration::from_secs(61)) {
                    assert_eq!(t.from, state);
                    assert_ne!(t.to, t.from);
                    assert_eq!((m.state(), m.reason()), (t.to, t.reason));
                    assert_ne!(t.reason, DrReason::Start);
                }
            }
        }
    }
}

#[test]
fn the_rpo_guard_fires_once_and_resolves_once() {
    let budget = Duration::from_secs(25 * 60);
    let mut g = RpoGuard::default();
    let min = |m: u64| Some(Duration::from_secs(m * 60));
    assert_eq!(g.observe(min(10), budget), None);
    assert_eq!(g.observe(min(25), budget), None, "at the budget is within it");
    assert_eq!(g.observe(min(26), budget), Some(true));
    for lag in [min(30), None, min(40)] {
        assert_eq!(g.observe(lag, budget), None, "still at risk: no second event");
    }
    assert!(g.at_risk());
    assert_eq!(g.observe(None, budget), None, "an unknown lag resolves nothing");
    assert_eq!(g.observe(min(5), budget), Some(false));
    assert_eq!(g.observe(min(1), budget), None);
}

#[test]
fn a_resumed_machine_keeps_its_state_and_waits_the_whole_failback_latch_again() {
    let t0 = Instant::now();
    let now = t0 + Duration::from_secs(600);
    let held = DrObservation { onprem_reachable: true, onprem_primary: true, cloud_ok: true, ..Default::default() };
    for mode in MODES {
        for state in DrState::ALL {
            assert_eq!(DrMachine::resume(state, t0, now).state(), state);
        }
        // In failback_pending since t0 (ten minutes, past the 60 s latch):
        // the successor still holds the signal a full latch from `now`.
        let mut m = DrMachine::resume(DrState::FailbackPending, t0, now);
        assert_eq!(m.observe(&held, &policy(mode), now + Duration::from_secs(59)), None, "{mode:?}");
        let done = m.observe(&held, &policy(mode), now + Duration::from_secs(60)).map(|t| t.to);
        assert_eq!(done, Some(DrState::Normal), "{mode:?}");
    }
}

#[test]
fn a_follower_takes_the_holders_state_and_fences_a_move_of_writes() {
    let t0 = Instant::now();
    let mut m = DrMachine::new(t0);
    assert_eq!(m.follow(DrState::Normal, t0), None, "the same state is no transition");
    let t = m.follow(DrState::DrActive, t0 + Duration::from_secs(1)).unwrap();
    assert_eq!((t.from, t.to, t.reason), (DrState::Normal, DrState::DrActive, DrReason::SiteHolder));
    assert_eq!(m.since(), t0 + Duration::from_secs(1));
    let fence = Duration::from_secs(10);
    assert_eq!(m.effective(fence, t0 + Duration::from_secs(1)), DrState::DrPending, "a follower fences a move too");
    assert_eq!(m.effective(fence, t0 + Duration::from_secs(11)), DrState::DrActive);
    // Every state can be followed from every state, in one transition.
    for from in DrState::ALL {
        for to in DrState::ALL {
            let mut m = DrMachine::resume(from, t0, t0);
            assert_eq!(m.follow(to, t0).map(|t| (t.from, t.to)), (from != to).then_some((from, to)));
            assert_eq!(m.state(), to);
            assert_eq!(m.failback_in(&policy(EngageMode::Confirm), t0).is_some(), to == DrState::FailbackPending);
        }
    }
}

#[test]
fn writes_that_change_site_are_fenced_for_the_fence_then_flow() {
    let t0 = Instant::now();
    let fence = Duration::from_secs(5);
    let lost = DrObservation { onprem_lost: true, cloud_ok: true, ..Default::default() };
    // Confirm: dr_pending refuses writes anyway; the engage that moves them starts the fence.
    let mut m = DrMachine::new(t0);
    m.observe(&lost, &policy(EngageMode::Confirm), t0).unwrap();
    assert_eq!(m.effective(fence, t0), DrState::DrPending);
    assert!(!m.writes_fenced(fence, t0), "entering dr_pending moves no write");
    let at = t0 + Duration::from_secs(20);
    m.command(DrCommand::Engage, &lost, at).unwrap().unwrap();
    assert_eq!(m.effective(fence, at + Duration::from_secs(4)), DrState::DrPending, "fenced: still read-only");
    assert_eq!(m.effective(fence, at + fence), DrState::DrActive, "then writes go to the cloud");
    assert_eq!(m.effective(Duration::ZERO, at), DrState::DrActive, "no fence without coordination");
    // The failback that brings writes home is fenced too.
    let back = DrObservation { onprem_reachable: true, cloud_ok: true, ..Default::default() };
    let home = at + Duration::from_secs(100);
    m.command(DrCommand::Failback, &back, home).unwrap().unwrap();
    assert_eq!(m.effective(fence, home), DrState::DrPending);
    assert_eq!(m.effective(fence, home + fence), DrState::Normal);
    // Auto: the outage moves writes at once, fenced the same way.
    let mut m = DrMachine::new(t0);
    m.observe(&lost, &policy(EngageMode::Auto), t0).unwrap();
    assert_eq!((m.state(), m.effective(fence, t0)), (DrState::DrActive, DrState::DrPending));
    // failback_pending keeps writes in the cloud: no fence at its start.
    let mut m = DrMachine::resume(DrState::DrActive, t0, t0);
    let signal = DrObservation { onprem_reachable: true, onprem_primary: true, cloud_ok: true, ..Default::default() };
    assert_eq!(m.observe(&signal, &policy(EngageMode::Confirm), t0).map(|t| t.to), Some(DrState::FailbackPending));
    assert!(!m.writes_fenced(fence, t0));
}
