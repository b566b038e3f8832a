//! Notifications: every episode (spill, DR, a failing controller, an
//! unhealthy cloud pool, a failed reload, …) and every informational event
//! (a DNS change, a scale action) goes to the configured sinks — the
//! `[notify] webhook` (JSON), PagerDuty's Events API v2 (`[notify.pagerduty]`)
//! and an SNS topic (`notify.sns_topic_arn`).
//!
//! Delivery never touches the data plane: [`Notifier::send`] only queues
//! (bounded; a full queue drops and counts). One dispatcher task runs the
//! pure policy of `episode.rs` — episodes with held resolves, then each
//! sink's severity floor and token bucket — and hands what passes to the
//! sink's own bounded queue and task, so a slow PagerDuty never delays SNS.
//! The config is read from the running snapshot at each event, so a reload
//! changes sinks and limits. URLs and keys are secrets: logs show them only
//! through `telemetry::redacted_url`, never the routing key.

pub(crate) mod episode;
pub(crate) mod event;
mod http;
mod pagerduty;
mod sns;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{NotifyConfig, Severity};
use crate::telemetry::catalog;
use episode::{Episodes, SinkGate};
pub(crate) use event::{Event, Kind};

const QUEUE: usize = 256;
const SINK_QUEUE: usize = 64;

/// What the dispatcher reads from the running config at each event.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) site: String,
    pub(crate) notify: NotifyConfig,
}

/// One event on its way to one sink, with what the sink needs to send it.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) event: Event,
    pub(crate) site: Arc<str>,
    pub(crate) host: Arc<str>,
    pub(crate) notify: Arc<NotifyConfig>,
}

/// The sinks there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkKind {
    Webhook,
    PagerDuty,
    Sns,
}

impl SinkKind {
    const ALL: [SinkKind; 3] = [SinkKind::Webhook, SinkKind::PagerDuty, SinkKind::Sns];

    fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::PagerDuty => "pagerduty",
            SinkKind::Sns => "sns",
        }
    }

    fn configured(self, n: &NotifyConfig) -> bool {
        match self {
            SinkKind::Webhook => n.webhook.is_some(),
            SinkKind::PagerDuty => n.pagerduty.is_some(),
            SinkKind::Sns => n.sns_topic_arn.is_some(),
        }
    }

    /// PagerDuty pages for episodes only, from its `min_severity` up.
    fn floor(self, n: &NotifyConfig) -> (Severity, bool) {
        match (self, &n.pagerduty) {
            (SinkKind::PagerDuty, Some(pd)) => (pd.min_severity, true),
            _ => (Severity::Info, false),
        }
    }

    fn spawn(self) -> mpsc::Sender<Delivery> {
        let (tx, rx) = mpsc::channel(SINK_QUEUE);
        match self {
            SinkKind::Webhook => tokio::spawn(webhook::run(rx)),
            SinkKind::PagerDuty => tokio::spawn(pagerduty::run(rx)),
            SinkKind::Sns => tokio::spawn(sns::run(rx)),
        };
        tx
    }
}

struct Sink {
    kind: SinkKind,
    gate: SinkGate,
    tx: mpsc::Sender<Delivery>,
}

/// The sending side, shared by whoever has something to say.
#[derive(Clone)]
pub(crate) struct Notifier {
    tx: mpsc::Sender<Event>,
}

impl Notifier {
    /// Starts the dispatcher; `settings` reads the running config (`None`: stopped).
    pub(crate) fn spawn(settings: impl Fn() -> Option<Settings> + Send + 'static) -> Notifier {
        let (tx, rx) = mpsc::channel::<Event>(QUEUE);
        tokio::spawn(dispatch(rx, settings));
        Notifier { tx }
    }

    /// Queues an event; never waits.
    pub(crate) fn send(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            metrics::counter!(catalog::NOTIFICATIONS_DROPPED, "sink" => "queue").increment(1);
        }
    }
}

/// The dispatcher: events and due resolves in, deliveries to the sinks out.
async fn dispatch(mut rx: mpsc::Receiver<Event>, settings: impl Fn() -> Option<Settings>) {
    let host: Arc<str> = host_name().into();
    let mut episodes = Episodes::new(NotifyConfig::default().resolve_after);
    let mut sinks: Vec<Sink> = Vec::new();
    loop {
        let due = episodes.next_due().map(Instant::from_std);
        let event = tokio::select! {
            event = rx.recv() => match event {
                Some(e) => Some(e),
                None => return,
            },
            () = sleep_until_opt(due) => None,
        };
        let Some(settings) = settings() else { return };
        let now = Instant::now().into_std();
        episodes.set_resolve_after(settings.notify.resolve_after);
        sync_sinks(&mut sinks, &settings.notify);
        let mut out = episodes.due(now);
        out.extend(event.and_then(|e| episodes.observe(e, now)));
        let (site, notify): (Arc<str>, _) = (settings.site.into(), Arc::new(settings.notify));
        for event in out {
            tracing::info!(kind = event.kind.as_str(), action = event.action.as_str(), subject = %event.subject, summary = %event.summary, "notification");
            for sink in &mut sinks {
                let name = sink.kind.as_str();
                if let Err(why) = sink.gate.admit(&event, now) {
                    metrics::counter!(catalog::NOTIFICATIONS_SUPPRESSED, "sink" => name, "reason" => why.as_str())
                        .increment(1);
                    continue;
                }
                let delivery =
                    Delivery { event: event.clone(), site: site.clone(), host: host.clone(), notify: notify.clone() };
                if sink.tx.try_send(delivery).is_err() {
                    metrics::counter!(catalog::NOTIFICATIONS_DROPPED, "sink" => name).increment(1);
                }
            }
        }
    }
}

/// Starts the sinks a config names, stops those it no longer names, and
/// hands the others their new limits.
fn sync_sinks(sinks: &mut Vec<Sink>, n: &NotifyConfig) {
    sinks.retain(|s| s.kind.configured(n));
    for kind in SinkKind::ALL.into_iter().filter(|k| k.configured(n)) {
        let (floor, episodes_only) = kind.floor(n);
        match sinks.iter_mut().find(|s| s.kind == kind) {
            Some(s) => s.gate.reconfigure(floor, n.burst, n.refill_every),
            None => sinks.push(Sink {
                kind,
                gate: SinkGate::new(floor, episodes_only, n.burst, n.refill_every),
                tx: kind.spawn(),
            }),
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// This machine's name (PagerDuty's `payload.source`).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "spillway".to_string())
}

/// Delivery attempts per event and sink, and the first backoff (doubling).
pub(crate) const ATTEMPTS: u32 = 5;
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Whether a failed attempt may succeed later.
#[derive(Debug)]
pub(crate) enum Failure {
    Retry(String),
    GiveUp(String),
}

/// Runs `attempt` until it succeeds, fails for good or runs out of attempts;
/// counts the outcome for `sink`.
pub(crate) async fn with_retries<F, Fut>(sink: &'static str, event: &Event, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let mut backoff = FIRST_BACKOFF;
    for n in 1..=ATTEMPTS {
        let error = match attempt().await {
            Ok(()) => {
                metrics::counter!(catalog::NOTIFICATIONS_SENT, "sink" => sink).increment(1);
                return;
            }
            Err(Failure::GiveUp(e)) => {
                tracing::warn!(sink, kind = event.kind.as_str(), error = %e, "notification refused; not retried");
                break;
            }
            Err(Failure::Retry(e)) => e,
        };
        tracing::warn!(sink, attempt = n, kind = event.kind.as_str(), %error, "notification failed");
        if n < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    metrics::counter!(catalog::NOTIFICATIONS_FAILED, "sink" => sink).increment(1);
    tracing::warn!(sink, kind = event.kind.as_str(), "notification given up");
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::SystemTime;

    use super::*;

    fn event() -> Event {
        Event::trigger(Kind::Dr, Severity::Critical, "onprem", "dr".into(), SystemTime::UNIX_EPOCH)
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_failures_back_off_and_are_bounded() {
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        with_retries("test", &event(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure::Retry("503".into()))
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), ATTEMPTS);
        // 0.5 + 1 + 2 + 4 s between five attempts.
        assert_eq!(start.elapsed(), Duration::from_millis(7500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_not_retried_and_a_late_success_counts() {
        let calls = AtomicU32::new(0);
        with_retries("test", &event(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure::GiveUp("400 invalid event".into()))
        })
        .await;
        assert_eq!(calls.swap(0, Ordering::SeqCst), 1);
        with_retries("test", &event(), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(Failure::Retry("429".into())),
                _ => Ok(()),
            }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
