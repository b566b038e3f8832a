use std::time::{Duration, Instant};

use super::*;
use crate::config::TargetWeights;
use crate::dns::records::tests::cfg;

fn sig(arrival: f64, spilled: f64) -> ControlSignals {
    ControlSignals {
        arrival_rps: arrival,
        spilled_rps: spilled,
        shed_rps: 0.0,
        onprem_capacity_rps: None,
        dr: false,
        dr_capacity: false,
        cloud_healthy: true,
        dr_state: Default::default(),
        dr_synced: None,
    }
}

/// Drives the planner once per `tick` for `secs`, applying every change.
fn run(
    p: &mut WeightPlanner,
    c: &DnsConfig,
    s: &ControlSignals,
    mut w: Weights,
    t0: Instant,
    secs: u64,
) -> (Weights, Vec<Weights>) {
    let mut history = Vec::new();
    for t in (0..=secs).step_by(5) {
        let now = t0 + Duration::from_secs(t);
        p.observe(s, now);
        if let WeightPlan::Change { weights, .. } = p.plan(c, s, w, None, now) {
            p.changed(now);
            w = weights;
            history.push(w);
        }
    }
    (w, history)
}

#[test]
fn share_and_weights_round_trip() {
    assert_eq!(Weights::from_cloud_share(0.0), Weights::ONPREM_ONLY);
    assert_eq!(Weights::from_cloud_share(1.0), Weights::CLOUD_ONLY);
    assert_eq!(Weights::from_cloud_share(7.0), Weights::CLOUD_ONLY, "clamped");
    assert_eq!(Weights::from_cloud_share(0.5), Weights { onprem: 127, aws: 128 });
    assert_eq!(Weights { onprem: 0, aws: 0 }.cloud_share(), 0.5);
    assert!((Weights { onprem: 100, aws: 155 }.cloud_share() - 155.0 / 255.0).abs() < 1e-12);
}

#[test]
fn step_is_bounded_and_never_overshoots() {
    assert_eq!(step(0, 255, 64), 64);
    assert_eq!(step(250, 255, 64), 255);
    assert_eq!(step(255, 0, 64), 191);
    assert_eq!(step(10, 0, 64), 0);
    assert_eq!(step(7, 7, 64), 7);
}

#[test]
fn dr_and_cloud_failure_act_at_once() {
    let c = cfg();
    let p = WeightPlanner::default();
    let now = Instant::now();
    let mut s = sig(0.0, 0.0);
    s.dr = true;
    assert_eq!(
        p.plan(&c, &s, Weights::ONPREM_ONLY, None, now),
        WeightPlan::Change { weights: Weights::CLOUD_ONLY, reason: WeightReason::DisasterRecovery }
    );
    assert_eq!(p.plan(&c, &s, Weights::CLOUD_ONLY, None, now), WeightPlan::Hold(HoldReason::Steady));
    s.cloud_healthy = false;
    assert_eq!(p.plan(&c, &s, Weights::ONPREM_ONLY, None, now), WeightPlan::Hold(HoldReason::NoHealthyTarget));
    s.dr = false;
    assert_eq!(
        p.plan(&c, &s, Weights { onprem: 100, aws: 155 }, None, now),
        WeightPlan::Change { weights: Weights::ONPREM_ONLY, reason: WeightReason::CloudUnhealthy }
    );
}

#[test]
fn spill_must_be_sustained_before_dns_moves() {
    let c = cfg();
    let mut p = WeightPlanner::default();
    let t0 = Instant::now();
    let s = sig(1000.0, 500.0);
    let (w, history) = run(&mut p, &c, &s, Weights::ONPREM_ONLY, t0, 295);
    assert!(history.is_empty());
    assert_eq!(w, Weights::ONPREM_ONLY);
    assert_eq!(p.plan(&c, &s, w, None, t0 + Duration::from_secs(295)), WeightPlan::Hold(HoldReason::NotSustained));
    // Interrupted spill restarts the clock.
    p.observe(&sig(1000.0, 0.0), t0 + Duration::from_secs(297));
    let (_, history) = run(&mut p, &c, &s, w, t0 + Duration::from_secs(300), 295);
    assert!(history.is_empty());
}

#[test]
fn sustained_spill_shifts_in_bounded_monotone_steps() {
    let c = cfg();
    let mut p = WeightPlanner::default();
    let t0 = Instant::now();
    // The gate keeps seeing half of its arrivals spill (a fake that does not
    // react to DNS): AWS's share grows step by step up to full.
    let (w, history) = run(&mut p, &c, &sig(1000.0, 500.0), Weights::ONPREM_ONLY, t0, 1200);
    // The goal nears full asymptotically; the last few points are within hysteresis.
    assert!(w.aws >= FULL - c.hysteresis && u16::from(w.aws) + u16::from(w.onprem) == 255, "{w:?}");
    let mut prev = Weights::ONPREM_ONLY;
    for h in &history {
        assert!(h.aws > prev.aws && h.onprem < prev.onprem, "monotone: {history:?}");
        assert!(h.aws - prev.aws <= c.max_step && prev.onprem - h.onprem <= c.max_step, "bounded: {history:?}");
        prev = *h;
    }
}

#[test]
fn changes_respect_min_change_interval() {
    let c = cfg();
    let mut p = WeightPlanner::default();
    let t0 = Instant::now();
    let (_, history) = run(&mut p, &c, &sig(1000.0, 500.0), Weights::ONPREM_ONLY, t0, 1200);
    // First change at 300 s, then one per 60 s at most.
    assert!(history.len() <= 1 + (1200 - 300) / 60, "{history:?}");
    p.changed(t0 + Duration::from_secs(1200));
    let plan = p.plan(&c, &sig(1000.0, 900.0), Weights { onprem: 191, aws: 64 }, None, t0 + Duration::from_secs(1259));
    assert_eq!(plan, WeightPlan::Hold(HoldReason::MinChangeInterval));
    let plan = p.plan(&c, &sig(1000.0, 900.0), Weights { onprem: 191, aws: 64 }, None, t0 + Duration::from_secs(1260));
    assert!(matches!(plan, WeightPlan::Change { .. }));
}

#[test]
fn the_goal_composes_with_the_current_share() {
    let c = cfg();
    let mut p = WeightPlanner::default();
    let t0 = Instant::now();
    let current = Weights::from_cloud_share(0.5);
    let s = sig(1000.0, 200.0);
    p.observe(&s, t0);
    // 1 - (1 - 0.2)(1 - 0.5) = 0.6 → aws 153; bounded step of 64 from 128 is more than needed.
    let plan = p.plan(&c, &s, current, None, t0 + Duration::from_secs(300));
    assert_eq!(
        plan,
        WeightPlan::Change { weights: Weights { onprem: 102, aws: 153 }, reason: WeightReason::SustainedSpill }
    );
}

#[test]
fn small_moves_are_held_by_hysteresis() {
    let c = cfg();
    let mut p = WeightPlanner::default();
    let t0 = Instant::now();
    let s = sig(1000.0, 30.0); // 3 % spill → aws 8 < hysteresis 16
    p.observe(&s, t0);
    assert_eq!(
        p.plan(&c, &s, Weights::ONPREM_ONLY, None, t0 + Duration::from_secs(300)),
        WeightPlan::Hold(HoldReason::Hysteresis)
    );
}

#[test]
fn calm_shifts_back_gradually_to_zero() {
    let c = cfg();
    let mut p = WeightPlanner::default();
    let t0 = Instant::now();
    let (w, history) = run(&mut p, &c, &sig(500.0, 0.0), Weights::CLOUD_ONLY, t0, 1200);
    assert_eq!(w, Weights::ONPREM_ONLY);
    assert_eq!(history.first(), Some(&Weights { onprem: 64, aws: 191 }), "first step is bounded");
    assert!(history.windows(2).all(|p| p[1].aws < p[0].aws), "monotone back: {history:?}");
}

#[test]
fn calm_with_known_capacity_refills_on_prem_to_its_margin() {
    let c = cfg();
    let mut p = WeightPlanner::default();
    let t0 = Instant::now();
    let current = Weights::from_cloud_share(0.5);
    let mut s = sig(500.0, 0.0);
    s.onprem_capacity_rps = Some(1000.0);
    p.observe(&s, t0);
    // Total 1000 rps; on-prem may take 800 → cloud share 0.2 → aws 51: from 128 one step of 64 → 64? no: goal 51, step to max(128-64, 51) = 64.
    let plan = p.plan(&c, &s, current, None, t0 + Duration::from_secs(300));
    assert_eq!(plan, WeightPlan::Change { weights: Weights { onprem: 191, aws: 64 }, reason: WeightReason::Recovery });
}

#[test]
fn operator_targets_move_in_steps_without_waiting_for_spill() {
    let mut c = cfg();
    c.target_weights = Some(TargetWeights { onprem: 0, aws: 255 });
    let p = WeightPlanner::default();
    let t = Weights { onprem: 0, aws: 255 };
    let plan = p.plan(&c, &sig(0.0, 0.0), Weights::ONPREM_ONLY, Some(t), Instant::now());
    assert_eq!(
        plan,
        WeightPlan::Change { weights: Weights { onprem: 191, aws: 64 }, reason: WeightReason::OperatorTarget }
    );
    // Small operator moves are not held by hysteresis.
    let plan = p.plan(
        &c,
        &sig(0.0, 0.0),
        Weights { onprem: 250, aws: 5 },
        Some(Weights { onprem: 245, aws: 10 }),
        Instant::now(),
    );
    assert_eq!(
        plan,
        WeightPlan::Change { weights: Weights { onprem: 245, aws: 10 }, reason: WeightReason::OperatorTarget }
    );
}

#[test]
fn no_arrivals_count_as_calm_and_steady_at_home() {
    let c = cfg();
    let mut p = WeightPlanner::default();
    let t0 = Instant::now();
    p.observe(&sig(0.0, 0.0), t0);
    assert_eq!(
        p.plan(&c, &sig(0.0, 0.0), Weights::ONPREM_ONLY, None, t0 + Duration::from_secs(900)),
        WeightPlan::Hold(HoldReason::Steady)
    );
}
