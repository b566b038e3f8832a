//! Pure weight planning for the two weighted Route 53 records (this
//! datacenter's and AWS's). Share of traffic = weight / sum of weights.
//!
//! - DR (every on-prem endpoint down): on-prem 0, AWS full, at once.
//! - Cloud unhealthy (and not DR): on-prem full, AWS 0, at once.
//! - Operator target weights (planned migration): moved to in bounded steps.
//! - Spill sustained for `shift_after`: AWS gets the share that makes the
//!   gate's residual spill vanish, `1 − (1 − spill)(1 − current share)`.
//! - Calm sustained for `shift_after`: back towards on-prem, gradually.
//!
//! Invariants: no clock is read here; a planned change moves each weight by
//! at most `max_step` (DR and cloud failure excepted), never happens within
//! `min_change_interval` of the last one, and is skipped when smaller than
//! `hysteresis` unless it reaches 0 or full; never both weights 0.

use std::time::Instant;

use crate::config::DnsConfig;
use crate::control::ControlSignals;

/// The largest Route 53 weight; the two weights sum to it when computed.
pub(crate) const FULL: u8 = 255;
/// A spill share at or above this counts as spilling.
pub(crate) const SPILLING_SHARE: f64 = 0.02;
/// A spill share below this counts as calm.
pub(crate) const CALM_SHARE: f64 = 0.005;
/// On-prem is refilled up to this fraction of its learned capacity.
pub(crate) const RECOVERY_UTILISATION: f64 = 0.8;

/// The weights of the two records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Weights {
    pub(crate) onprem: u8,
    pub(crate) aws: u8,
}

impl Weights {
    pub(crate) const ONPREM_ONLY: Self = Self { onprem: FULL, aws: 0 };
    pub(crate) const CLOUD_ONLY: Self = Self { onprem: 0, aws: FULL };

    /// AWS's share of DNS answers (both 0: Route 53 splits evenly).
    pub(crate) fn cloud_share(self) -> f64 {
        let sum = f64::from(self.onprem) + f64::from(self.aws);
        if sum == 0.0 {
            0.5
        } else {
            f64::from(self.aws) / sum
        }
    }

    /// Weights summing to [`FULL`] for a cloud share in [0, 1].
    pub(crate) fn from_cloud_share(share: f64) -> Self {
        let aws = (share.clamp(0.0, 1.0) * f64::from(FULL)).round() as u8;
        Self { onprem: FULL - aws, aws }
    }
}

/// Why weights change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WeightReason {
    DisasterRecovery,
    CloudUnhealthy,
    OperatorTarget,
    SustainedSpill,
    Recovery,
    /// Rewriting the controller's weights over someone else's edit.
    CorrectExternalEdit,
    /// Creating missing records or bringing them in line with the config.
    Reconcile,
}

/// Why weights stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldReason {
    Steady,
    NotSustained,
    MinChangeInterval,
    Hysteresis,
    /// DR but the cloud is unhealthy too: nothing better to do.
    NoHealthyTarget,
}

impl WeightReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::DisasterRecovery => "disaster_recovery",
            Self::CloudUnhealthy => "cloud_unhealthy",
            Self::OperatorTarget => "operator_target",
            Self::SustainedSpill => "sustained_spill",
            Self::Recovery => "recovery",
            Self::CorrectExternalEdit => "correct_external_edit",
            Self::Reconcile => "reconcile",
        }
    }
}

impl HoldReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::NotSustained => "not_sustained",
            Self::MinChangeInterval => "min_change_interval",
            Self::Hysteresis => "hysteresis",
            Self::NoHealthyTarget => "no_healthy_target",
        }
    }
}

/// The planner's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WeightPlan {
    Change { weights: Weights, reason: WeightReason },
    Hold(HoldReason),
}

/// Remembers since when spill or calm has lasted and when weights last changed.
#[derive(Debug, Clone, Default)]
pub(crate) struct WeightPlanner {
    spill_since: Option<Instant>,
    calm_since: Option<Instant>,
    last_change: Option<Instant>,
}

/// The gate's spill share; `None` without arrivals.
fn spill_share(s: &ControlSignals) -> Option<f64> {
    (s.arrival_rps > 0.0 && s.arrival_rps.is_finite()).then(|| (s.spilled_rps / s.arrival_rps).clamp(0.0, 1.0))
}

impl WeightPlanner {
    /// Feeds one sample of the signals (once per controller tick).
    pub(crate) fn observe(&mut self, s: &ControlSignals, now: Instant) {
        let share = spill_share(s);
        let spilling = share.is_some_and(|f| f >= SPILLING_SHARE);
        let calm = share.is_none_or(|f| f < CALM_SHARE);
        self.spill_since = if spilling { Some(self.spill_since.unwrap_or(now)) } else { None };
        self.calm_since = if calm { Some(self.calm_since.unwrap_or(now)) } else { None };
    }

    /// Records that weights were changed at `now`.
    pub(crate) fn changed(&mut self, now: Instant) {
        self.last_change = Some(now);
    }

    /// Plans the next weights. `target` is an operator-set target (from the
    /// config or a respected external edit).
    pub(crate) fn plan(
        &self,
        cfg: &DnsConfig,
        s: &ControlSignals,
        current: Weights,
        target: Option<Weights>,
        now: Instant,
    ) -> WeightPlan {
        if s.dr {
            return if !s.cloud_healthy {
                WeightPlan::Hold(HoldReason::NoHealthyTarget)
            } else {
                immediate(current, Weights::CLOUD_ONLY, WeightReason::DisasterRecovery)
            };
        }
        if !s.cloud_healthy {
            return immediate(current, Weights::ONPREM_ONLY, WeightReason::CloudUnhealthy);
        }
        let (goal, reason) = match target {
            Some(t) => (t, WeightReason::OperatorTarget),
            None => match self.automatic_goal(cfg, s, current, now) {
                Ok(goal) => goal,
                Err(hold) => return WeightPlan::Hold(hold),
            },
        };
        self.bounded(cfg, current, goal, reason, now)
    }

    fn automatic_goal(
        &self,
        cfg: &DnsConfig,
        s: &ControlSignals,
        current: Weights,
        now: Instant,
    ) -> Result<(Weights, WeightReason), HoldReason> {
        let sustained =
            |since: Option<Instant>| since.is_some_and(|t| now.saturating_duration_since(t) >= cfg.shift_after);
        let share = current.cloud_share();
        if sustained(self.spill_since) {
            let f = spill_share(s).unwrap_or(0.0);
            let goal = 1.0 - (1.0 - f) * (1.0 - share);
            return Ok((Weights::from_cloud_share(goal), WeightReason::SustainedSpill));
        }
        if sustained(self.calm_since) && current.aws > 0 {
            let goal = recovery_share(s, share).unwrap_or(0.0).min(share);
            return Ok((Weights::from_cloud_share(goal), WeightReason::Recovery));
        }
        Err(if current.aws == 0 && self.spill_since.is_none() { HoldReason::Steady } else { HoldReason::NotSustained })
    }

    fn bounded(
        &self,
        cfg: &DnsConfig,
        current: Weights,
        goal: Weights,
        reason: WeightReason,
        now: Instant,
    ) -> WeightPlan {
        if goal == current {
            return WeightPlan::Hold(HoldReason::Steady);
        }
        if self.last_change.is_some_and(|t| now.saturating_duration_since(t) < cfg.min_change_interval) {
            return WeightPlan::Hold(HoldReason::MinChangeInterval);
        }
        let extreme = goal.aws == 0 || goal.onprem == 0;
        let moved = current.aws.abs_diff(goal.aws).max(current.onprem.abs_diff(goal.onprem));
        if moved < cfg.hysteresis && !extreme && reason != WeightReason::OperatorTarget {
            return WeightPlan::Hold(HoldReason::Hysteresis);
        }
        let mut next = Weights {
            onprem: step(current.onprem, goal.onprem, cfg.max_step),
            aws: step(current.aws, goal.aws, cfg.max_step),
        };
        if next.onprem == 0 && next.aws == 0 {
            next = goal;
        }
        WeightPlan::Change { weights: next, reason }
    }
}

/// With a known on-prem capacity, the cloud share that refills on-prem to
/// [`RECOVERY_UTILISATION`] of it; `None` if capacity or arrivals are unknown.
fn recovery_share(s: &ControlSignals, current_share: f64) -> Option<f64> {
    let cap = s.onprem_capacity_rps.filter(|c| c.is_finite() && *c > 0.0)?;
    if current_share >= 1.0 || s.arrival_rps <= 0.0 {
        return None;
    }
    let total = s.arrival_rps / (1.0 - current_share);
    Some((1.0 - cap * RECOVERY_UTILISATION / total).clamp(0.0, 1.0))
}

/// One bounded move from `from` towards `to`.
pub(crate) fn step(from: u8, to: u8, max_step: u8) -> u8 {
    if from < to {
        from.saturating_add(max_step).min(to)
    } else {
        from.saturating_sub(max_step).max(to)
    }
}

fn immediate(current: Weights, goal: Weights, reason: WeightReason) -> WeightPlan {
    if current == goal {
        WeightPlan::Hold(HoldReason::Steady)
    } else {
        WeightPlan::Change { weights: goal, reason }
    }
}

#[cfg(test)]
#[path = "weights_tests.rs"]
mod tests;
