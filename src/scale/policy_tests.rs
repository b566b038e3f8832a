use std::time::{Duration, Instant, UNIX_EPOCH};

use super::*;

fn cfg() -> ScaleConfig {
    ScaleConfig {
        enabled: true,
        dry_run: false,
        region: "us-east-1".into(),
        auto_scaling_group: "g".into(),
        per_instance_rps: 150,
        warmup: Duration::from_secs(180),
        headroom: 0.2,
        min: 2,
        max: 200,
        dr_capacity: 60,
        scale_in_cooldown: Duration::from_secs(600),
        onprem_capacity_rps: None,
        events: Vec::new(),
        interval: Duration::from_secs(10),
        forecast_alpha: 0.3,
        forecast_beta: 0.05,
        scale_in_step: 10,
        scale_in_interval: Duration::from_secs(60),
    }
}

fn inputs(overflow_rps: f64, current: u32) -> ScaleInputs {
    ScaleInputs {
        overflow_rps,
        event: false,
        dr: false,
        current,
        group_min: 0,
        group_max: 1000,
    }
}

#[test]
fn instances_round_up_with_headroom() {
    assert_eq!(instances_for(0.0, 0.2, 150), 0);
    assert_eq!(instances_for(-500.0, 0.2, 150), 0, "negative overflow");
    assert_eq!(instances_for(f64::NAN, 0.2, 150), 0);
    assert_eq!(instances_for(1.0, 0.0, 150), 1);
    assert_eq!(instances_for(150.0, 0.0, 150), 1, "exact fit");
    assert_eq!(instances_for(150.0 + 1e-12, 0.0, 150), 1, "float noise");
    assert_eq!(instances_for(151.0, 0.0, 150), 2);
    assert_eq!(instances_for(1000.0, 0.2, 150), 8, "1200/150");
    assert_eq!(instances_for(1001.0, 0.2, 150), 9);
    assert_eq!(instances_for(1e30, 0.2, 1), u32::MAX);
    assert_eq!(instances_for(100.0, 0.2, 0), 0);
}

#[test]
fn target_is_clamped_to_config_and_group() {
    let c = cfg();
    let mut p = ScalePolicy::default();
    let now = Instant::now();
    assert_eq!(p.decide(&c, &inputs(0.0, 2), now).desired, 2, "pilot light");
    let d = p.decide(&c, &inputs(1e9, 2), now);
    assert_eq!((d.desired, d.reason), (200, ScaleReason::ScaleOut));
    let mut small = inputs(1e9, 2);
    small.group_max = 50;
    assert_eq!(p.decide(&c, &small, now).desired, 50, "the group's own max");
    let mut raised_min = inputs(0.0, 5);
    raised_min.group_min = 5;
    assert_eq!(
        p.decide(&c, &raised_min, now).desired,
        5,
        "the group's own min"
    );
    assert_eq!(
        effective_range(&c, 300, 400),
        (300, 400),
        "disjoint ranges: the group wins"
    );
}

#[test]
fn out_of_range_current_is_brought_back() {
    let mut p = ScalePolicy::default();
    let d = p.decide(&cfg(), &inputs(0.0, 500), Instant::now());
    assert_eq!((d.desired, d.reason), (200, ScaleReason::OutOfRange));
}

#[test]
fn scale_out_is_immediate_and_in_one_step() {
    let mut p = ScalePolicy::default();
    let d = p.decide(&cfg(), &inputs(6_000.0, 2), Instant::now());
    assert_eq!((d.desired, d.reason), (48, ScaleReason::ScaleOut));
    let mut ev = inputs(6_000.0, 2);
    ev.event = true;
    assert_eq!(
        p.decide(&cfg(), &ev, Instant::now()).reason,
        ScaleReason::ScheduledEvent
    );
}

#[test]
fn dr_asks_for_dr_capacity_at_once_and_never_scales_in() {
    let c = cfg();
    let mut p = ScalePolicy::default();
    let t0 = Instant::now();
    let mut dr = inputs(0.0, 2);
    dr.dr = true;
    let d = p.decide(&c, &dr, t0);
    assert_eq!((d.desired, d.reason), (60, ScaleReason::DisasterRecovery));
    dr.current = 100;
    let d = p.decide(&c, &dr, t0 + Duration::from_secs(3600));
    assert_eq!(d.desired, 100, "no scale-in during DR");
}

#[test]
fn scale_in_waits_for_the_cooldown_then_steps() {
    let c = cfg();
    let mut p = ScalePolicy::default();
    let t0 = Instant::now();
    let low = inputs(0.0, 48);
    let at = |s| t0 + Duration::from_secs(s);
    assert_eq!(p.decide(&c, &low, at(0)).reason, ScaleReason::Cooldown);
    assert_eq!(p.decide(&c, &low, at(599)).desired, 48);
    let d = p.decide(&c, &low, at(600));
    assert_eq!((d.desired, d.reason), (38, ScaleReason::ScaleIn));
    let d = p.decide(&c, &inputs(0.0, 38), at(630));
    assert_eq!(
        (d.desired, d.reason),
        (38, ScaleReason::Cooldown),
        "step interval"
    );
    let mut current = 38;
    let mut t = 660;
    let mut seen = vec![48, 38];
    while current > 2 {
        let d = p.decide(&c, &inputs(0.0, current), at(t));
        assert!(
            d.desired <= current && current - d.desired <= c.scale_in_step,
            "bounded monotone steps"
        );
        current = d.desired;
        seen.push(current);
        t += 60;
    }
    assert_eq!(seen, vec![48, 38, 28, 18, 8, 2]);
}

#[test]
fn a_new_rise_resets_the_cooldown() {
    let c = cfg();
    let mut p = ScalePolicy::default();
    let t0 = Instant::now();
    p.decide(&c, &inputs(0.0, 48), t0);
    assert!(p.below_since().is_some());
    assert_eq!(
        p.decide(&c, &inputs(6_000.0, 48), t0 + Duration::from_secs(300))
            .reason,
        ScaleReason::Steady
    );
    assert!(p.below_since().is_none());
    let d = p.decide(&c, &inputs(0.0, 48), t0 + Duration::from_secs(700));
    assert_eq!(
        d.reason,
        ScaleReason::Cooldown,
        "cooldown restarts at 700 s"
    );
    assert_eq!(
        p.cooldown_left(c.scale_in_cooldown, t0 + Duration::from_secs(1000)),
        Some(Duration::from_secs(300))
    );
    let _ = UNIX_EPOCH;
}

#[test]
fn partial_scale_in_stops_at_the_target() {
    let c = cfg();
    let mut p = ScalePolicy::default();
    let t0 = Instant::now();
    p.decide(&c, &inputs(1_000.0, 12), t0);
    let d = p.decide(&c, &inputs(1_000.0, 12), t0 + Duration::from_secs(600));
    assert_eq!(d.desired, 8, "target 8 is above current - step");
}
