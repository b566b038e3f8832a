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
    let fence = Some(Duration::from_secs(10));
    let at = |s| t0 + Duration::from_secs(s);
    assert_eq!(m.writes_held(fence, at(1)), Some(WriteHold::Fence), "a follower fences a move too: read = published");
    assert_eq!(m.writes_held(fence, at(11)), None);
    assert_eq!(m.writes_held(None, at(1)), None, "alone: no fence");
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

fn ack(state: DrState, sent: Instant, received: Instant) -> LeaseAck {
    LeaseAck { state, sent, received }
}

#[test]
fn a_holders_move_of_writes_is_held_until_a_lease_write_carrying_it_is_acknowledged_then_fenced() {
    let t0 = Instant::now();
    let fence = Some(Duration::from_secs(5));
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let lost = DrObservation { onprem_lost: true, cloud_ok: true, ..Default::default() };
    // Confirm: dr_pending refuses writes anyway and moves none; the engage that moves them holds them.
    let mut m = DrMachine::new(t0);
    m.observe(&lost, &policy(EngageMode::Confirm), t0).unwrap();
    assert_eq!(m.writes_held(fence, t0), None, "entering dr_pending moves no write");
    m.command(DrCommand::Engage, &lost, at(20_000)).unwrap().unwrap();
    assert_eq!(m.writes_held(fence, at(20_000)), Some(WriteHold::Unpublished));
    // A renewal sent before the engage carried the old state: it publishes nothing.
    m.note_published(ack(DrState::DrPending, at(19_900), at(20_100)));
    assert_eq!(m.writes_held(fence, at(60_000)), Some(WriteHold::Unpublished), "held however long it takes");
    // One sent after it but still carrying the old side publishes nothing either.
    m.note_published(ack(DrState::Normal, at(20_050), at(20_200)));
    assert_eq!(m.writes_held(fence, at(60_000)), Some(WriteHold::Unpublished));
    // The first one carrying it starts the fence at its acknowledgement; later ones do not move it.
    m.note_published(ack(DrState::DrActive, at(60_000), at(60_300)));
    m.note_published(ack(DrState::DrActive, at(62_000), at(62_100)));
    assert_eq!(m.writes_held(fence, at(65_299)), Some(WriteHold::Fence));
    assert_eq!(m.writes_held(fence, at(65_300)), None, "then writes go to the cloud");
    assert_eq!(m.writes_held(None, at(20_000)), None, "no hold without coordination");
    // The failback that brings writes home is held the same way.
    let back = DrObservation { onprem_reachable: true, cloud_ok: true, ..Default::default() };
    m.command(DrCommand::Failback, &back, at(100_000)).unwrap().unwrap();
    assert_eq!(m.writes_held(fence, at(100_000)), Some(WriteHold::Unpublished));
    m.note_published(ack(DrState::Normal, at(100_010), at(100_020)));
    assert_eq!(m.writes_held(fence, at(105_019)), Some(WriteHold::Fence));
    assert_eq!(m.writes_held(fence, at(105_020)), None);
    // Auto: the outage moves writes at once, held the same way.
    let mut m = DrMachine::new(t0);
    m.observe(&lost, &policy(EngageMode::Auto), t0).unwrap();
    assert_eq!((m.state(), m.writes_held(fence, t0)), (DrState::DrActive, Some(WriteHold::Unpublished)));
    // failback_pending keeps writes in the cloud: nothing held at its start.
    let mut m = DrMachine::resume(DrState::DrActive, t0, t0);
    let signal = DrObservation { onprem_reachable: true, onprem_primary: true, cloud_ok: true, ..Default::default() };
    assert_eq!(m.observe(&signal, &policy(EngageMode::Confirm), t0).map(|t| t.to), Some(DrState::FailbackPending));
    assert_eq!(m.writes_held(fence, t0), None);
}

#[test]
fn only_alone_or_as_the_holder_does_the_machine_decide() {
    let t0 = Instant::now();
    let lost = DrObservation { onprem_lost: true, cloud_ok: true, ..Default::default() };
    let auto = policy(EngageMode::Auto);
    let holder = |version| DrSource::Holder { version, inherited: None, published: None };
    for source in [DrSource::Alone, holder(1)] {
        let mut m = DrMachine::new(t0);
        assert_eq!(m.tick(&source, &lost, &auto, t0).map(|t| t.to), Some(DrState::DrActive), "{source:?}");
        assert!(source.decides());
    }
    // Without the lease, the own probes decide nothing: the lease's state, else the own one kept.
    for source in [DrSource::Lease { state: None }, DrSource::Stale] {
        let mut m = DrMachine::new(t0);
        assert_eq!(m.tick(&source, &lost, &auto, t0), None, "{source:?}");
        assert_eq!(m.state(), DrState::Normal);
        assert!(!source.decides());
    }
    let mut m = DrMachine::resume(DrState::DrActive, t0, t0);
    let t = m.tick(&DrSource::Lease { state: Some(DrState::FailbackPending) }, &lost, &auto, t0).unwrap();
    assert_eq!((t.to, t.reason), (DrState::FailbackPending, DrReason::SiteHolder));
    assert_eq!(m.tick(&DrSource::Stale, &DrObservation::default(), &auto, t0), None, "stale: kept");
    assert_eq!(m.state(), DrState::FailbackPending);
}

#[test]
fn a_new_holder_continues_from_the_state_the_lease_carried_and_then_decides() {
    let t0 = Instant::now();
    let at = |s| t0 + Duration::from_secs(s);
    let healthy = DrObservation { onprem_reachable: true, onprem_primary: true, cloud_ok: true, ..Default::default() };
    let confirm = DrPolicy { engage: EngageMode::Confirm, failback_after: Duration::from_secs(60) };
    // A restarted process (fresh `normal`) acquires a lease that carried dr_active: it takes it first.
    let mut m = DrMachine::new(t0);
    let acquired = DrSource::Holder { version: 7, inherited: Some(DrState::DrActive), published: None };
    let t = m.tick(&acquired, &healthy, &confirm, t0).unwrap();
    assert_eq!((t.from, t.to, t.reason), (DrState::Normal, DrState::DrActive, DrReason::SiteHolder));
    assert_eq!(
        m.writes_held(Some(Duration::from_secs(5)), t0),
        Some(WriteHold::Fence),
        "taken from the lease: published"
    );
    // Then, under the same version, it decides: the failback signal starts the latch (writes stay in the cloud).
    let t = m.tick(&acquired, &healthy, &confirm, at(1)).unwrap();
    assert_eq!(t.to, DrState::FailbackPending);
    // The inherited state is taken once per version: the latch runs on, it is not reset to dr_active.
    assert_eq!(m.tick(&acquired, &healthy, &confirm, at(2)), None);
    assert_eq!(m.state(), DrState::FailbackPending);
    // Losing the authority for a moment and renewing the same version does
    // not take the acquisition's state again (the latch is not reset).
    m.tick(&DrSource::Stale, &healthy, &confirm, at(2));
    m.tick(&DrSource::Lease { state: Some(DrState::FailbackPending) }, &healthy, &confirm, at(2));
    assert_eq!(m.tick(&acquired, &healthy, &confirm, at(2)), None);
    assert_eq!((m.state(), m.synced()), (DrState::FailbackPending, Some(7)));
    // A later acquisition (another version) takes what that lease carried.
    let again = DrSource::Holder { version: 9, inherited: Some(DrState::DrActive), published: None };
    assert_eq!(m.tick(&again, &healthy, &confirm, at(3)).map(|t| t.to), Some(DrState::DrActive));
    // A lease without a state (a new site, an older version's item) changes nothing.
    let mut m = DrMachine::resume(DrState::DrActive, t0, t0);
    let bare = DrSource::Holder { version: 1, inherited: None, published: None };
    assert_eq!(m.tick(&bare, &DrObservation { cloud_ok: true, ..Default::default() }, &confirm, t0), None);
    assert_eq!(m.state(), DrState::DrActive);
}
