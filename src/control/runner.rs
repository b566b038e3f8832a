//! The one loop every controller runs: wait for the next wake, a config
//! change or shutdown → (sample between attempts) → attempt a tick → pace
//! the next attempt → record. A controller supplies only the tick (read,
//! decide with its pure policy, act) through [`ControlLoop`]; the [`Runner`]
//! owns shutdown, the config channel, the interval, the backoff after
//! failures and the status fields every loop shares ([`LoopStatus`]).
//!
//! Invariants: shutdown ends the loop at any wait (between ticks, in a tick
//! backoff, in a retry backoff); a config change wakes the loop at once; an
//! absent or disabled section (`None`) makes no attempt; after `n`
//! consecutive failures the next attempt waits a jittered delay in
//! `[d/2, d]`, `d = min(interval · 2ⁿ, max(MAX_TICK_BACKOFF, interval))`,
//! and one success resets the count; the clock is tokio's, so paused-time
//! tests drive it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ErrorRecord;
use crate::aws::retry::DEFAULT_ATTEMPTS;
use crate::aws::{AwsError, Backoff, Retry};
use crate::clock::WallClock;
use crate::sync::lock;

/// Longest wait between failed ticks (or the interval, if longer).
const MAX_TICK_BACKOFF: Duration = Duration::from_secs(300);

/// What the runner reads from a loop's config section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) enabled: bool,
    pub(crate) dry_run: bool,
    /// Between two successful ticks; the base of the failure backoff.
    pub(crate) interval: Duration,
    /// Sample signals this often between ticks (`None`: never).
    pub(crate) sample_every: Option<Duration>,
}

/// A controller's part of the loop: everything but the skeleton.
pub(crate) trait ControlLoop: Send + 'static {
    /// The config section; `None` on the channel means absent (disabled).
    type Config: Clone + Send + Sync + 'static;
    /// The controller's own status fields.
    type Report: Report;

    fn settings(cfg: &Self::Config) -> Settings;

    /// One attempt: read, decide, act. An error delays the next attempt.
    fn tick(
        &mut self,
        cfg: &Self::Config,
        cx: &mut Context<Self::Report>,
        now: Instant,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// The tick failed and the next waits `delay`: log it, forget what it made stale.
    fn failed(&mut self, err: &AwsError, delay: Duration);

    /// Shutdown: the runner returns after this.
    fn stopped(&self);

    /// The config changed (or its channel closed); the next tick runs at once.
    fn reconfigured(&mut self) {}

    /// Every `Settings::sample_every`, before the tick when both are due.
    fn sample(&mut self, _cfg: &Self::Config, _cx: &Context<Self::Report>, _now: Instant) {}
}

/// A controller's own status fields, as `/status` shows them.
pub(crate) trait Report: Default + Send + 'static {
    /// A JSON object; its fields go between `dry_run` and `last_error`.
    fn to_json(&self) -> Value;
}

/// What `/status` shows about one loop: the runner's fields and the controller's `detail`.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoopStatus<R> {
    pub(crate) enabled: bool,
    pub(crate) dry_run: bool,
    pub(crate) detail: R,
    pub(crate) last_error: Option<ErrorRecord>,
    pub(crate) consecutive_failures: u32,
    pub(crate) next_attempt: Option<Instant>,
}

impl<R: Report> LoopStatus<R> {
    pub(crate) fn to_json(&self, now: Instant) -> Value {
        let mut out = json!({ "enabled": self.enabled, "dry_run": self.dry_run });
        extend(&mut out, self.detail.to_json());
        extend(
            &mut out,
            json!({
                "last_error": self.last_error.as_ref().map(ErrorRecord::to_json),
                "consecutive_failures": self.consecutive_failures,
                "next_attempt_in_ms": self.next_attempt.map(|t| t.saturating_duration_since(now).as_millis() as u64),
            }),
        );
        out
    }
}

fn extend(out: &mut Value, more: Value) {
    debug_assert!(out.is_object() && more.is_object());
    if let (Value::Object(out), Value::Object(more)) = (out, more) {
        out.extend(more);
    }
}

/// What a tick is handed: AWS calls with retries, wall time, and its status.
pub(crate) struct Context<R> {
    shutdown: CancellationToken,
    retry: Retry,
    wall: WallClock,
    origin: Instant,
    status: Arc<Mutex<LoopStatus<R>>>,
}

impl<R> Context<R> {
    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// One AWS call, retried while retryable; ends early on shutdown.
    pub(crate) async fn call<T, Fut>(&mut self, op: impl FnMut() -> Fut) -> Result<T, AwsError>
    where
        Fut: Future<Output = Result<T, AwsError>>,
    {
        self.retry.call(&self.shutdown, op).await
    }

    /// Wall time at `now` (follows tokio's clock from the loop's start).
    pub(crate) fn wall_time(&self, now: Instant) -> SystemTime {
        self.wall.at(now)
    }

    /// Time since the loop started.
    pub(crate) fn since_start(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.origin)
    }

    /// Updates the controller's status fields.
    pub(crate) fn report(&self, f: impl FnOnce(&mut R)) {
        f(&mut lock(&self.status).detail);
    }

    fn update(&self, f: impl FnOnce(&mut LoopStatus<R>)) {
        f(&mut lock(&self.status));
    }
}

/// When the next tick and sample are due, and how many ticks failed in a row.
#[derive(Debug)]
struct Pace {
    next_tick: Instant,
    next_sample: Instant,
    failures: u32,
}

impl Pace {
    fn new(origin: Instant) -> Self {
        Self { next_tick: origin, next_sample: origin, failures: 0 }
    }

    fn wake(&self, s: &Settings) -> Instant {
        debug_assert!(!s.interval.is_zero());
        match s.sample_every {
            Some(_) => self.next_tick.min(self.next_sample),
            None => self.next_tick,
        }
    }

    fn succeeded(&mut self, started: Instant, interval: Duration) {
        self.failures = 0;
        self.next_tick = started + interval;
    }

    /// Schedules the retry `delay` after `now`; returns the delay.
    fn failed(&mut self, interval: Duration, rng: &mut fastrand::Rng, now: Instant) -> Duration {
        let backoff = Backoff { base: interval, max: MAX_TICK_BACKOFF.max(interval) };
        let delay = backoff.delay(self.failures, rng);
        self.failures += 1;
        self.next_tick = now + delay;
        delay
    }
}

/// Drives one [`ControlLoop`]. Build with [`Runner::new`], then `run`/`spawn`.
pub(crate) struct Runner<L: ControlLoop> {
    control: L,
    config: watch::Receiver<Option<L::Config>>,
    shutdown: CancellationToken,
    status: Arc<Mutex<LoopStatus<L::Report>>>,
    rng: fastrand::Rng,
    wall_base: SystemTime,
}

impl<L: ControlLoop> Runner<L> {
    pub(crate) fn new(control: L, config: watch::Receiver<Option<L::Config>>, shutdown: CancellationToken) -> Self {
        let (status, rng, wall_base) = (Arc::default(), fastrand::Rng::new(), SystemTime::now());
        Self { control, config, shutdown, status, rng, wall_base }
    }

    /// Seeds the jitter of retries and of the tick backoff (tests).
    #[cfg(test)]
    pub(crate) fn with_rng(mut self, rng: fastrand::Rng) -> Self {
        self.rng = rng;
        self
    }

    /// The wall time at loop start; later wall times follow tokio's clock.
    #[cfg(test)]
    pub(crate) fn with_wall_clock(mut self, at_start: SystemTime) -> Self {
        self.wall_base = at_start;
        self
    }

    pub(crate) fn status(&self) -> Arc<Mutex<LoopStatus<L::Report>>> {
        self.status.clone()
    }

    pub(crate) fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }

    /// Runs until shutdown.
    pub(crate) async fn run(mut self) {
        let origin = Instant::now();
        let mut cx = self.context(origin);
        let mut pace = Pace::new(origin);
        let mut config_open = true;
        loop {
            let cfg = self.current_config();
            let wake = cfg.as_ref().map(|c| pace.wake(&L::settings(c)));
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                changed = self.config.changed(), if config_open => {
                    config_open = changed.is_ok();
                    self.control.reconfigured();
                    pace.next_tick = Instant::now();
                    continue;
                }
                () = sleep_until_opt(wake) => {}
            }
            if let Some(cfg) = cfg {
                self.woke(&cfg, &mut cx, &mut pace).await;
            }
        }
        self.control.stopped();
    }

    fn context(&self, origin: Instant) -> Context<L::Report> {
        Context {
            shutdown: self.shutdown.clone(),
            retry: Retry::new(Backoff::default(), DEFAULT_ATTEMPTS, self.rng.clone()),
            wall: WallClock::new(self.wall_base, origin),
            origin,
            status: self.status.clone(),
        }
    }

    /// The section if present and enabled; shows both in status.
    fn current_config(&mut self) -> Option<L::Config> {
        let cfg = self.config.borrow_and_update().clone().filter(|c| L::settings(c).enabled);
        let dry_run = cfg.as_ref().is_some_and(|c| L::settings(c).dry_run);
        let mut status = lock(&self.status);
        status.enabled = cfg.is_some();
        status.dry_run = dry_run;
        cfg
    }

    async fn woke(&mut self, cfg: &L::Config, cx: &mut Context<L::Report>, pace: &mut Pace) {
        let now = Instant::now();
        let settings = L::settings(cfg);
        if let Some(every) = settings.sample_every.filter(|_| now >= pace.next_sample) {
            self.control.sample(cfg, cx, now);
            pace.next_sample = now + every;
        }
        if now < pace.next_tick {
            return;
        }
        match self.control.tick(cfg, cx, now).await {
            Ok(()) => pace.succeeded(now, settings.interval),
            Err(err) => {
                let delay = pace.failed(settings.interval, &mut self.rng, Instant::now());
                self.control.failed(&err, delay);
                let at = cx.wall_time(now);
                cx.update(|s| s.last_error = Some(ErrorRecord::new(at, &err)));
            }
        }
        let (failures, next) = (pace.failures, pace.next_tick);
        cx.update(|s| {
            s.consecutive_failures = failures;
            s.next_attempt = Some(next);
        });
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
