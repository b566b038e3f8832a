//! Logging (tracing, to stderr) and metrics (the `metrics` facade with a
//! Prometheus recorder rendered by the admin listener; every metric is
//! listed in `catalog.rs`), and the helpers every layer logs with: a
//! per-call-site line budget (`LogBudget`) and an error with its sources on
//! one line (`error_chain`). A leaf: it imports nothing from the crate.

pub(crate) mod catalog;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the log subscriber; `RUST_LOG` overrides the default level.
pub fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

/// Installs the global Prometheus recorder and returns the render handle.
/// Idempotent: a second call returns a handle to a fresh, uninstalled recorder.
pub fn init_metrics() -> PrometheusHandle {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        .expect("static buckets are valid")
        .build_recorder();
    let handle = recorder.handle();
    let _ = metrics::set_global_recorder(recorder);
    catalog::describe();
    handle
}

/// A per-call-site budget for log lines that can repeat once per request
/// (a failed request, a failed connect). When a pool goes down in a burst,
/// tens of thousands of identical lines a second would make the log writer
/// the bottleneck of the data plane; the metrics count every event anyway.
/// At most `per_second` lines a second get through; the first line of the
/// next second reports how many were left out.
pub(crate) struct LogBudget {
    per_second: u32,
    second: AtomicU64,
    used: AtomicU32,
    suppressed: AtomicU64,
}

impl LogBudget {
    pub(crate) const fn new(per_second: u32) -> LogBudget {
        LogBudget { per_second, second: AtomicU64::new(0), used: AtomicU32::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(n)`: log this one, and say that `n` were left out before it.
    /// `now_secs` is any monotonic count of seconds (policy takes time as input).
    pub(crate) fn admit(&self, now_secs: u64) -> Option<u64> {
        let seen = self.second.load(Relaxed);
        if seen != now_secs && self.second.compare_exchange(seen, now_secs, Relaxed, Relaxed).is_ok() {
            self.used.store(0, Relaxed);
        }
        if self.used.fetch_add(1, Relaxed) < self.per_second {
            Some(self.suppressed.swap(0, Relaxed))
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            None
        }
    }
}

/// Seconds since the process epoch, for `LogBudget::admit`.
pub(crate) fn secs(t: std::time::Instant) -> u64 {
    crate::clock::to_nanos(t) / 1_000_000_000
}

/// The error and its sources on one line, for logs.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// A URL fit for a log line or a status field: its scheme, host and port,
/// with the path and query replaced by `/[redacted]` and any user info
/// dropped. A webhook's path or query often is its secret (a routing key,
/// a Slack hook's token), so a log that prints the whole URL leaks it.
pub(crate) fn redacted_url(url: &str) -> String {
    let Ok(uri) = url.parse::<http::Uri>() else { return format!("[unparsable URL of {} bytes]", url.len()) };
    let Some(host) = uri.host() else { return format!("[URL without a host, {} bytes]", url.len()) };
    let scheme = uri.scheme_str().unwrap_or("?");
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    let path = match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("" | "/") => "/",
        Some(_) => "/[redacted]",
    };
    format!("{scheme}://{host}{port}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redacted_url_keeps_scheme_host_and_port_and_hides_path_query_and_user() {
        let key = "R0UT1NGKEY0123456789abcdef";
        for (url, want) in [
            (
                format!("https://events.pagerduty.example/v2/enqueue/{key}"),
                "https://events.pagerduty.example/[redacted]",
            ),
            (format!("http://127.0.0.1:9000/hook?routing_key={key}"), "http://127.0.0.1:9000/[redacted]"),
            (format!("https://ops:{key}@hooks.example:8443/x"), "https://hooks.example:8443/[redacted]"),
            ("https://hooks.example".to_string(), "https://hooks.example/"),
            ("http://[::1]:8080/".to_string(), "http://[::1]:8080/"),
        ] {
            let got = redacted_url(&url);
            assert_eq!(got, want, "{url}");
            assert!(!got.contains(key));
        }
        assert_eq!(redacted_url(&format!("not a url {key}")), "[unparsable URL of 36 bytes]");
        assert_eq!(redacted_url(&format!("/{key}")), "[URL without a host, 27 bytes]");
    }

    #[test]
    fn a_budget_lets_through_so_many_a_second_and_reports_the_rest() {
        let b = LogBudget::new(3);
        let admitted: Vec<Option<u64>> = (0..5).map(|_| b.admit(7)).collect();
        assert_eq!(admitted, [Some(0), Some(0), Some(0), None, None]);
        // Next second: the first line says two were left out.
        assert_eq!(b.admit(8), Some(2));
        assert_eq!(b.admit(8), Some(0));
    }
}
