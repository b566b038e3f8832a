use super::*;

const S: u64 = 1000;
const NOW: u64 = 1_000_000 * S;

fn timing() -> Timing {
    Timing {
        heartbeat: Duration::from_secs(2),
        lease: Duration::from_secs(10),
        takeover_after: Duration::from_secs(30),
        handback_after: Duration::from_secs(60),
    }
}

fn lease(holder: &str, site: &str, version: u64, renewed_ms: u64, mode: LeaseMode) -> Lease {
    Lease {
        holder: holder.into(),
        holder_site: site.into(),
        version,
        renewed_ms,
        expires_ms: renewed_ms + 10 * S,
        mode,
        dr_state: None,
    }
}

fn hb(instance: &str, at_ms: u64, streak_since_ms: u64, arrival: f64, spilled: f64) -> Heartbeat {
    Heartbeat {
        instance: instance.into(),
        at_ms,
        streak_since_ms,
        signals: ControlSignals {
            arrival_rps: arrival,
            spilled_rps: spilled,
            shed_rps: 0.0,
            onprem_capacity_rps: Some(1000.0),
            dr: false,
            dr_capacity: false,
            cloud_healthy: true,
            dr_state: Default::default(),
            dr_synced: None,
        },
    }
}

fn view(lease: Option<Lease>, heartbeats: Vec<Heartbeat>) -> SiteView {
    SiteView { lease, heartbeats }
}

#[test]
fn own_lease_is_acquired_renewed_or_followed() {
    assert_eq!(own_step("a", &view(None, vec![]), NOW), OwnStep::Acquire { seen: None });
    let mine = lease("a", "dc1", 4, NOW - S, LeaseMode::Normal);
    assert_eq!(own_step("a", &view(Some(mine.clone()), vec![]), NOW), OwnStep::Renew { version: 4 });
    // Ours even past expiry: the conditional renew (holder and version) decides.
    assert_eq!(own_step("a", &view(Some(mine.clone()), vec![]), NOW + 20 * S), OwnStep::Renew { version: 4 });
    assert_eq!(own_step("b", &view(Some(mine.clone()), vec![]), NOW), OwnStep::Follow);
    assert_eq!(own_step("b", &view(Some(mine.clone()), vec![]), NOW + 9 * S - 1), OwnStep::Follow);
    assert_eq!(own_step("b", &view(Some(mine), vec![]), NOW + 9 * S), OwnStep::Acquire { seen: Some(4) });
}

#[test]
fn a_lease_held_in_lost_mode_or_released_is_not_renewed_by_its_site() {
    let lost = lease("x", "dc2", 7, NOW - S, LeaseMode::Lost);
    assert_eq!(own_step("a", &view(Some(lost.clone()), vec![]), NOW), OwnStep::Follow);
    let released = Lease { expires_ms: 0, ..lost };
    assert_eq!(own_step("a", &view(Some(released.clone()), vec![]), NOW), OwnStep::Acquire { seen: Some(7) });
    let mine_released = Lease { holder: "a".into(), mode: LeaseMode::Normal, ..released };
    assert_eq!(own_step("a", &view(Some(mine_released), vec![]), NOW), OwnStep::Acquire { seen: Some(7) });
}

#[test]
fn a_site_is_taken_over_only_when_lease_and_heartbeats_are_stale_for_takeover_after() {
    let t = timing();
    let dead_at = NOW - 30 * S;
    let stale = view(Some(lease("a", "dc1", 3, dead_at, LeaseMode::Normal)), vec![hb("a", dead_at, 0, 1.0, 0.0)]);
    assert_eq!(cover_step("x", true, &stale, &t, NOW), CoverStep::TakeOver { seen: 3 });
    assert_eq!(cover_step("x", true, &stale, &t, NOW - 1), CoverStep::Watch(WatchReason::RecentlyAlive));
    // One fresh heartbeat of any instance: not lost, even with the lease expired.
    let mut alive = stale.clone();
    alive.heartbeats.push(hb("b", NOW - 29 * S, 0, 1.0, 0.0));
    assert_eq!(cover_step("x", true, &alive, &t, NOW), CoverStep::Watch(WatchReason::RecentlyAlive));
    // Only the holder of its own site takes over.
    assert_eq!(cover_step("x", false, &stale, &t, NOW), CoverStep::Watch(WatchReason::NotOwnHolder));
}

#[test]
fn a_live_lease_or_an_unknown_site_is_never_taken_over() {
    let t = timing();
    // Heartbeats stopped but the holder still renews (heartbeat write throttled): live.
    let renewing =
        view(Some(lease("a", "dc1", 3, NOW - S, LeaseMode::Normal)), vec![hb("a", NOW - 40 * S, 0, 1.0, 0.0)]);
    assert_eq!(cover_step("x", true, &renewing, &t, NOW), CoverStep::Watch(WatchReason::LeaseLive));
    assert_eq!(cover_step("x", true, &view(None, vec![]), &t, NOW), CoverStep::Watch(WatchReason::NeverSeen));
    let only_heartbeats = view(None, vec![hb("a", NOW - 100 * S, 0, 1.0, 0.0)]);
    assert_eq!(cover_step("x", true, &only_heartbeats, &t, NOW), CoverStep::Watch(WatchReason::NeverSeen));
    // Another taker holds it in lost mode: live.
    let other_taker = view(Some(lease("y", "aws", 4, NOW - S, LeaseMode::Lost)), vec![]);
    assert_eq!(cover_step("x", true, &other_taker, &t, NOW), CoverStep::Watch(WatchReason::LeaseLive));
}

#[test]
fn a_taken_site_is_kept_until_it_heartbeats_again_for_handback_after() {
    let t = timing();
    let ours = lease("x", "dc2", 5, NOW - S, LeaseMode::Lost);
    let kept = view(Some(ours.clone()), vec![hb("a", NOW - 100 * S, NOW - 200 * S, 0.0, 0.0)]);
    assert_eq!(cover_step("x", true, &kept, &t, NOW), CoverStep::KeepLost { version: 5 });
    // Back, but for less than handback_after.
    let back = view(Some(ours.clone()), vec![hb("a", NOW - S, NOW - 59 * S, 0.0, 0.0)]);
    assert_eq!(cover_step("x", true, &back, &t, NOW), CoverStep::KeepLost { version: 5 });
    assert_eq!(cover_step("x", true, &back, &t, NOW + S), CoverStep::HandBack { version: 5 });
    // Back for long enough with its DR latch holding the writes in the
    // cloud: handed back too. The lease carries the site's DR state (the
    // taker copied it), so the site's own holder continues it; its
    // followers cannot fail back while another site holds their lease.
    let mut latched = back.clone();
    latched.heartbeats.push(hb("b", NOW - S, NOW - 10 * S, 0.0, 0.0));
    latched.heartbeats[1].signals.dr = true;
    assert_eq!(cover_step("x", true, &latched, &t, NOW + S), CoverStep::HandBack { version: 5 });
    // Kept even when this instance no longer holds its own site.
    assert_eq!(cover_step("x", false, &kept, &t, NOW), CoverStep::KeepLost { version: 5 });
    // Released by us: the site's lease is the site's again; lost again only after takeover_after.
    let released = Lease { expires_ms: 0, ..ours };
    let after = view(Some(released.clone()), vec![hb("a", NOW - S, NOW - 70 * S, 0.0, 0.0)]);
    assert_eq!(cover_step("x", true, &after, &t, NOW), CoverStep::Watch(WatchReason::RecentlyAlive));
    let gone = view(Some(released), vec![hb("a", NOW - 31 * S, NOW - 70 * S, 0.0, 0.0)]);
    assert_eq!(cover_step("x", true, &gone, &t, NOW), CoverStep::TakeOver { seen: 5 });
}

#[test]
fn a_streak_survives_short_gaps_only() {
    let lease = Duration::from_secs(10);
    assert_eq!(streak_start(None, NOW, lease), NOW);
    assert_eq!(streak_start(Some((NOW - 2 * S, NOW - 100 * S)), NOW, lease), NOW - 100 * S);
    assert_eq!(streak_start(Some((NOW - 10 * S, NOW - 100 * S)), NOW, lease), NOW);
}

#[test]
fn peers_sum_counts_fresh_heartbeats_once_and_skips_me_and_stale_ones() {
    let t = timing();
    let v = view(
        None,
        vec![
            hb("me", NOW, 0, 500.0, 100.0),
            hb("b", NOW - 3 * S, 0, 300.0, 50.0),
            hb("c", NOW - 4 * S, 0, 9000.0, 9000.0),
            hb("d", NOW - S, 0, f64::NAN, -5.0),
        ],
    );
    let (sum, n) = peers_sum(&v, "me", &t, NOW);
    assert_eq!(n, 2, "b and d are fresh; c is stale");
    assert_eq!((sum.arrival_rps, sum.spilled_rps), (300.0, 50.0), "NaN and negatives add nothing");
    assert_eq!(sum.onprem_capacity_rps, Some(2000.0));
    let local = ControlSignals {
        arrival_rps: 500.0,
        spilled_rps: 100.0,
        shed_rps: 0.0,
        onprem_capacity_rps: None,
        dr: false,
        dr_capacity: true,
        cloud_healthy: false,
        dr_state: Default::default(),
        dr_synced: None,
    };
    let all = combine(&local, &sum, n);
    assert_eq!((all.arrival_rps, all.spilled_rps, all.onprem_capacity_rps), (800.0, 150.0, Some(2000.0)));
    assert!(all.cloud_healthy && !all.dr);
    assert!(all.dr_capacity, "one instance asking for DR capacity is enough");
    assert_eq!(combine(&local, &ControlSignals::default(), 0), local, "alone: my own signals");
}

#[test]
fn dr_holds_only_when_every_fresh_instance_reports_it() {
    let t = timing();
    let mut a = hb("a", NOW, 0, 0.0, 0.0);
    a.signals.dr = true;
    let mut b = hb("b", NOW, 0, 0.0, 0.0);
    b.signals.dr = true;
    let (sum, n) = peers_sum(&view(None, vec![a.clone(), b.clone()]), "me", &t, NOW);
    assert!(sum.dr);
    let me_dr = ControlSignals { dr: true, ..ControlSignals::default() };
    assert!(combine(&me_dr, &sum, n).dr);
    assert!(!combine(&ControlSignals::default(), &sum, n).dr, "one instance still reaches on-prem");
    b.signals.dr = false;
    assert!(!peers_sum(&view(None, vec![a, b]), "me", &t, NOW).0.dr);
    assert!(!peers_sum(&view(None, vec![]), "me", &t, NOW).0.dr, "nobody: no DR");
}

#[test]
fn modes_and_margins() {
    assert_eq!(LeaseMode::parse(LeaseMode::Lost.as_str()), Some(LeaseMode::Lost));
    assert_eq!(LeaseMode::parse("other"), None);
    assert_eq!(mode_of(&ControlSignals { dr: true, ..ControlSignals::default() }), "dr");
    assert_eq!(mode_of(&ControlSignals { spilled_rps: 1.0, ..ControlSignals::default() }), "spilling");
    assert_eq!(mode_of(&ControlSignals::default()), "normal");
    let t = timing();
    assert_eq!(t.margin(), Duration::from_secs(10) / 3);
    assert_eq!(t.fresh_ms(), 4000);
}
