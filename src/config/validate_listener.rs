//! Validation of the readiness keys: each listener's `readiness_path` and
//! `runtime.drain_delay` (how long readiness says 503 before the drain).
//! Same rules as `validate.rs`: every problem reported with its dotted key.

use std::sync::Arc;
use std::time::Duration;

use super::duration::Dur;
use super::raw::{DEFAULT_DRAIN_DELAY, DEFAULT_READINESS_PATH};
use super::validate::Checker;

/// Longer than this is a typo, not a plan: nothing waits that long to stop.
const MAX_DRAIN_DELAY: Duration = Duration::from_secs(600);

/// `""` disables the endpoint; anything else is an absolute path of plain
/// characters, compared byte for byte with the request's raw path (so no
/// percent-encoding, query or fragment, and not the site's root).
pub(super) fn readiness_path(c: &mut Checker, key: &str, raw: Option<String>) -> Option<Arc<str>> {
    let path = raw.unwrap_or_else(|| DEFAULT_READINESS_PATH.to_string());
    if path.is_empty() {
        return None;
    }
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b);
    if !path.starts_with('/') || path == "/" || path.len() > 256 || !path.bytes().all(plain) {
        c.fail(
            format!("{key}.readiness_path"),
            format!(
                "{path:?} is not a usable readiness path: an absolute path other than \"/\", at most 256 \
                 letters, digits and -._~/!$&'()*+,;=:@ (no %-escapes, query or fragment), or \"\" to disable it"
            ),
        );
    }
    Some(Arc::from(path))
}

pub(super) fn drain_delay(c: &mut Checker, raw: Option<Dur>) -> Duration {
    let d = c.dur("runtime.drain_delay", raw, DEFAULT_DRAIN_DELAY, true);
    if d > MAX_DRAIN_DELAY {
        c.fail("runtime.drain_delay", format!("{d:?} is over the {MAX_DRAIN_DELAY:?} limit"));
    }
    d
}
