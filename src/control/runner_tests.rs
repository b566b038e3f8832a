//! Paused-time tests of the runner over a tiny fake loop that logs when it
//! ticks and samples and fails on demand (at once, or through retried calls).

use std::sync::Mutex;

use super::*;

#[derive(Clone, Debug)]
struct Cfg {
    enabled: bool,
    dry_run: bool,
    interval: Duration,
    sample_every: Option<Duration>,
}

fn cfg(interval_secs: u64) -> Cfg {
    Cfg { enabled: true, dry_run: false, interval: Duration::from_secs(interval_secs), sample_every: None }
}

/// How the next ticks end.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Succeed,
    /// A permanent error, returned at once.
    Fail,
    /// A throttled call, retried with backoff inside the tick.
    Throttle,
}

#[derive(Default)]
struct Log {
    /// (when, "tick" | "sample").
    events: Vec<(Instant, &'static str)>,
    delays: Vec<Duration>,
    reconfigured: u32,
    stopped: bool,
}

struct Fake {
    log: Arc<Mutex<Log>>,
    mode: Arc<Mutex<Mode>>,
}

#[derive(Debug, Default)]
struct Ticks(u32);

impl Report for Ticks {
    fn to_json(&self) -> Value {
        json!({ "ticks": self.0 })
    }
}

impl ControlLoop for Fake {
    type Config = Cfg;
    type Report = Ticks;

    fn settings(c: &Cfg) -> Settings {
        Settings { enabled: c.enabled, dry_run: c.dry_run, interval: c.interval, sample_every: c.sample_every }
    }

    async fn tick(&mut self, _cfg: &Cfg, cx: &mut Context<Ticks>, now: Instant) -> Result<(), AwsError> {
        self.log.lock().unwrap().events.push((now, "tick"));
        cx.report(|r| r.0 += 1);
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Succeed => Ok(()),
            Mode::Fail => Err(AwsError::Invalid { api: "Fake", message: "no".into() }),
            Mode::Throttle => {
                cx.call(|| async { Err(AwsError::Throttled { api: "Fake", code: "Throttling".into() }) }).await
            }
        }
    }

    fn failed(&mut self, _err: &AwsError, delay: Duration) {
        self.log.lock().unwrap().delays.push(delay);
    }

    fn stopped(&self) {
        self.log.lock().unwrap().stopped = true;
    }

    fn reconfigured(&mut self) {
        self.log.lock().unwrap().reconfigured += 1;
    }

    fn sample(&mut self, _cfg: &Cfg, _cx: &Context<Ticks>, now: Instant) {
        self.log.lock().unwrap().events.push((now, "sample"));
    }
}

struct Rig {
    start: Instant,
    log: Arc<Mutex<Log>>,
    mode: Arc<Mutex<Mode>>,
    config: watch::Sender<Option<Cfg>>,
    status: Arc<Mutex<LoopStatus<Ticks>>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn rig(cfg: Option<Cfg>, mode: Mode) -> Rig {
    let (log, mode) = (Arc::default(), Arc::new(Mutex::new(mode)));
    let (config, config_rx) = watch::channel(cfg);
    let shutdown = CancellationToken::new();
    let fake = Fake { log: Arc::clone(&log), mode: Arc::clone(&mode) };
    let runner = Runner::new(fake, config_rx, shutdown.clone()).with_rng(fastrand::Rng::with_seed(5));
    let status = runner.status();
    Rig { start: Instant::now(), log, mode, config, status, shutdown, task: runner.spawn() }
}

impl Rig {
    /// When each "tick" (or "sample") happened, from the start.
    fn times(&self, what: &str) -> Vec<Duration> {
        let log = self.log.lock().unwrap();
        log.events.iter().filter(|e| e.1 == what).map(|e| e.0 - self.start).collect()
    }

    /// Cancels and checks that the loop ends without time passing.
    async fn stops_at_once(self) {
        self.shutdown.cancel();
        let ended = tokio::time::timeout(Duration::from_millis(1), self.task).await;
        assert!(ended.is_ok(), "the loop did not end at once");
        assert!(self.log.lock().unwrap().stopped);
    }
}

async fn secs(n: u64) {
    tokio::time::sleep(Duration::from_secs(n)).await;
}

/// Lets the loop run without moving the clock by more than a millisecond.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test(start_paused = true)]
async fn ticks_at_once_then_every_interval() {
    let r = rig(Some(cfg(10)), Mode::Succeed);
    secs(35).await;
    assert_eq!(r.times("tick"), [s(0), s(10), s(20), s(30)]);
    assert!(r.times("sample").is_empty(), "no sampling unless asked for");
    r.stops_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_the_loop_between_ticks() {
    let r = rig(Some(cfg(60)), Mode::Succeed);
    secs(5).await;
    r.stops_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_the_loop_in_a_tick_backoff() {
    let r = rig(Some(cfg(60)), Mode::Fail);
    secs(200).await;
    assert_eq!(r.times("tick").len(), 3, "{:?}", r.times("tick"));
    r.stops_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_the_loop_in_a_retry_backoff() {
    let r = rig(Some(cfg(60)), Mode::Throttle);
    settle().await;
    assert_eq!(r.times("tick"), [s(0)], "inside the tick, waiting to retry the call");
    r.stops_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn a_config_change_wakes_the_loop_at_once() {
    let r = rig(Some(cfg(60)), Mode::Succeed);
    secs(5).await;
    r.config.send_replace(Some(cfg(60)));
    settle().await;
    assert_eq!(r.times("tick"), [s(0), s(5)]);
    assert_eq!(r.log.lock().unwrap().reconfigured, 1);
    secs(60).await;
    assert_eq!(r.times("tick"), [s(0), s(5), s(65)], "the interval counts from the new tick");
    r.stops_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn a_closed_config_channel_is_one_last_change_and_the_section_stays() {
    let Rig { start, log, mode, config, status, shutdown, task } = rig(Some(cfg(10)), Mode::Succeed);
    secs(5).await;
    drop(config);
    secs(21).await;
    let ticks: Vec<_> = log.lock().unwrap().events.iter().map(|e| e.0 - start).collect();
    assert_eq!(ticks, [s(0), s(5), s(15), s(25)]);
    assert_eq!(log.lock().unwrap().reconfigured, 1);
    let (config, _) = watch::channel(None);
    Rig { start, log, mode, config, status, shutdown, task }.stops_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn an_absent_or_disabled_section_makes_no_attempt() {
    let r = rig(None, Mode::Succeed);
    secs(3600).await;
    assert!(r.times("tick").is_empty());
    assert_eq!(r.status.lock().unwrap().to_json(Instant::now())["enabled"], false);
    r.config.send_replace(Some(Cfg { dry_run: true, ..cfg(10) }));
    settle().await;
    assert_eq!(r.times("tick"), [s(3600)], "enabled by a reload: ticks at once");
    {
        let st = r.status.lock().unwrap().to_json(Instant::now());
        assert_eq!((st["enabled"].as_bool(), st["dry_run"].as_bool()), (Some(true), Some(true)), "{st}");
    }
    r.config.send_replace(Some(Cfg { enabled: false, ..cfg(10) }));
    secs(3600).await;
    assert_eq!(r.times("tick"), [s(3600)], "disabled: no more ticks");
    assert_eq!(r.status.lock().unwrap().to_json(Instant::now())["enabled"], false);
    r.stops_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_jittered_up_to_the_cap_and_a_success_resets() {
    let r = rig(Some(cfg(10)), Mode::Fail);
    secs(3 * 3600).await;
    let ticks = r.times("tick");
    let gaps: Vec<Duration> = ticks.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, r.log.lock().unwrap().delays[..gaps.len()], "each wait is the delay the loop was told");
    for (n, gap) in gaps.iter().enumerate() {
        let ceiling = (s(10) * 2u32.pow(n.min(10) as u32)).min(MAX_TICK_BACKOFF);
        assert!(*gap >= ceiling / 2 && *gap <= ceiling, "failure {n}: waited {gap:?}, ceiling {ceiling:?}");
    }
    let capped = &gaps[5..];
    assert!(capped.len() > 10, "{gaps:?}");
    assert!(capped.iter().any(|g| *g != capped[0]), "jittered: {capped:?}");
    *r.mode.lock().unwrap() = Mode::Succeed;
    secs(300).await;
    let after = r.times("tick");
    let recovered = after.len() - 1;
    secs(30).await;
    let ticks = r.times("tick");
    assert_eq!(ticks[recovered + 1] - ticks[recovered], s(10), "back to the interval");
    assert_eq!(r.status.lock().unwrap().consecutive_failures, 0);
    r.stops_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn status_shows_failures_and_the_next_attempt() {
    let r = rig(Some(cfg(10)), Mode::Fail);
    secs(20).await;
    let ticks = r.times("tick");
    let n = ticks.len() as u32;
    assert!(n >= 2, "{ticks:?}");
    let next = *ticks.last().unwrap() + *r.log.lock().unwrap().delays.last().unwrap();
    {
        let st = r.status.lock().unwrap();
        assert_eq!(st.consecutive_failures, n);
        assert_eq!(st.next_attempt, Some(r.start + next));
        assert_eq!(st.detail.0, n);
        let json = st.to_json(r.start + s(20));
        assert_eq!(json["consecutive_failures"], n, "{json}");
        assert_eq!(json["next_attempt_in_ms"], (next - s(20)).as_millis() as u64);
        assert_eq!(json["last_error"]["api"], "Fake");
        assert_eq!(json["last_error"]["kind"], "invalid");
        assert_eq!(json["ticks"], n, "the loop's own fields are shown too");
        assert_eq!(json["enabled"], true);
    }
    *r.mode.lock().unwrap() = Mode::Succeed;
    secs(60).await;
    let st = r.status.lock().unwrap().to_json(Instant::now());
    assert_eq!(st["consecutive_failures"], 0, "{st}");
    assert!(st["next_attempt_in_ms"].as_u64().unwrap() <= 10_000);
    drop(st);
    r.stops_at_once().await;
}

#[tokio::test(start_paused = true)]
async fn samples_between_ticks_and_before_a_tick_due_at_the_same_time() {
    let r = rig(Some(Cfg { sample_every: Some(s(1)), ..cfg(3) }), Mode::Succeed);
    secs(4).await;
    settle().await;
    assert_eq!(r.times("sample"), [s(0), s(1), s(2), s(3), s(4)]);
    assert_eq!(r.times("tick"), [s(0), s(3)]);
    let order: Vec<&str> = r.log.lock().unwrap().events.iter().map(|e| e.1).take(2).collect();
    assert_eq!(order, ["sample", "tick"]);
    r.stops_at_once().await;
}
