//! Pure scaling policy: overflow → desired capacity, asymmetric in time.
//!
//! `target = ceil(overflow × (1 + headroom) / per_instance_rps)`, clamped to
//! the config's and the group's own `[min, max]`; DR asks for `dr_capacity`
//! at once. Scale-out happens immediately and in one step; scale-in only
//! after the target stayed below the current capacity for
//! `scale_in_cooldown`, then at most `scale_in_step` instances every
//! `scale_in_interval`.
//!
//! Invariants: the decided capacity always lies within the effective range;
//! `decide` never moves away from the target; no clock is read here.

use std::time::Instant;

use crate::config::ScaleConfig;

/// Why the policy chose its capacity (also the `reason` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScaleReason {
    /// Forecast overflow needs more instances.
    ScaleOut,
    /// A scheduled event is about to start (or running).
    ScheduledEvent,
    /// Every on-prem endpoint is down: DR capacity at once.
    DisasterRecovery,
    /// Demand stayed low past the cooldown: one bounded step in.
    ScaleIn,
    /// Demand is lower, but the cooldown or step interval has not passed.
    Cooldown,
    /// Already at the target.
    Steady,
    /// The current capacity is outside the allowed range: brought back into it.
    OutOfRange,
}

impl ScaleReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::ScaleOut => "scale_out",
            Self::ScheduledEvent => "scheduled_event",
            Self::DisasterRecovery => "disaster_recovery",
            Self::ScaleIn => "scale_in",
            Self::Cooldown => "cooldown",
            Self::Steady => "steady",
            Self::OutOfRange => "out_of_range",
        }
    }
}

/// What the loop knows at decision time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ScaleInputs {
    pub(crate) overflow_rps: f64,
    pub(crate) event: bool,
    pub(crate) dr: bool,
    /// The group's desired capacity as just read.
    pub(crate) current: u32,
    pub(crate) group_min: u32,
    pub(crate) group_max: u32,
}

/// The capacity to ask for; `desired == current` means: make no call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScaleDecision {
    pub(crate) desired: u32,
    pub(crate) target: u32,
    pub(crate) reason: ScaleReason,
}

/// Instances for an overflow: `ceil(overflow × (1 + headroom) / per_instance)`,
/// 0 for no or negative overflow. A tiny epsilon keeps float noise
/// (300.000000001 / 150) from adding an instance.
pub(crate) fn instances_for(overflow_rps: f64, headroom: f64, per_instance_rps: u32) -> u32 {
    if overflow_rps.is_nan() || overflow_rps <= 0.0 || per_instance_rps == 0 {
        return 0;
    }
    let needed = overflow_rps * (1.0 + headroom.max(0.0)) / f64::from(per_instance_rps);
    let n = (needed - 1e-9).ceil();
    if n >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        n.max(0.0) as u32
    }
}

/// The range both the config and the group allow. When they do not overlap
/// (a misconfiguration), the group's own range wins: the API refuses others.
pub(crate) fn effective_range(cfg: &ScaleConfig, group_min: u32, group_max: u32) -> (u32, u32) {
    let lo = cfg.min.max(group_min);
    let hi = cfg.max.min(group_max);
    if lo <= hi {
        (lo, hi)
    } else {
        (group_min, group_max.max(group_min))
    }
}

/// The time-dependent half of the policy: remembers since when demand is low.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScalePolicy {
    below_since: Option<Instant>,
    last_scale_in: Option<Instant>,
}

impl ScalePolicy {
    /// Since when the target has been below the current capacity.
    #[cfg(test)]
    pub(crate) fn below_since(&self) -> Option<Instant> {
        self.below_since
    }

    pub(crate) fn decide(&mut self, cfg: &ScaleConfig, inp: &ScaleInputs, now: Instant) -> ScaleDecision {
        let (lo, hi) = effective_range(cfg, inp.group_min, inp.group_max);
        let mut target = instances_for(inp.overflow_rps, cfg.headroom, cfg.per_instance_rps);
        if inp.dr {
            target = target.max(cfg.dr_capacity);
        }
        let target = target.clamp(lo, hi);
        let decision = self.step(cfg, inp, target, (lo, hi), now);
        debug_assert!((lo..=hi).contains(&decision.desired));
        decision
    }

    fn step(
        &mut self,
        cfg: &ScaleConfig,
        inp: &ScaleInputs,
        target: u32,
        (lo, hi): (u32, u32),
        now: Instant,
    ) -> ScaleDecision {
        let current = inp.current;
        let decision = |desired, reason| ScaleDecision { desired, target, reason };
        if current < lo || current > hi {
            self.below_since = None;
            return decision(current.clamp(lo, hi), ScaleReason::OutOfRange);
        }
        if target >= current {
            self.below_since = None;
            let reason = match () {
                _ if target == current => ScaleReason::Steady,
                _ if inp.dr => ScaleReason::DisasterRecovery,
                _ if inp.event => ScaleReason::ScheduledEvent,
                _ => ScaleReason::ScaleOut,
            };
            return decision(target, reason);
        }
        let since = *self.below_since.get_or_insert(now);
        let cooled = now.saturating_duration_since(since) >= cfg.scale_in_cooldown;
        let stepped = self.last_scale_in.is_none_or(|t| now.saturating_duration_since(t) >= cfg.scale_in_interval);
        if inp.dr || !cooled || !stepped {
            return decision(current, ScaleReason::Cooldown);
        }
        self.last_scale_in = Some(now);
        let desired = target.max(current.saturating_sub(cfg.scale_in_step)).max(lo);
        decision(desired, ScaleReason::ScaleIn)
    }

    /// Time left before a scale-in may happen (for status), if demand is low.
    #[cfg(test)]
    pub(crate) fn cooldown_left(&self, cooldown: std::time::Duration, now: Instant) -> Option<std::time::Duration> {
        self.below_since.map(|s| cooldown.saturating_sub(now.saturating_duration_since(s)))
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
