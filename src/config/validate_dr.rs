//! Validation of `[dr]` (how writes move between the sites) and of the
//! probes' role keys (`role_header`, `primary_role`) the DR state machine
//! reads: the same rules as `validate.rs`, every problem with its dotted key.

use std::time::Duration;

use super::raw::*;
use super::types::DrConfig;
use super::validate::Checker;
use crate::burst::{DrPolicy, EngageMode};

/// Longest read-only body (it is sent on every refused write).
const MAX_READ_ONLY_BODY: usize = 16 * 1024;

pub(super) fn dr(c: &mut Checker, raw: RawDr) -> DrConfig {
    let engage = match raw.engage.as_deref().unwrap_or(DEFAULT_DR_ENGAGE) {
        "auto" => EngageMode::Auto,
        "confirm" => EngageMode::Confirm,
        other => {
            c.fail("dr.engage", format!("{other:?} is not \"auto\" or \"confirm\""));
            EngageMode::Confirm
        }
    };
    let failback_after = c.dur("dr.failback_after", raw.failback_after, DEFAULT_DR_FAILBACK_AFTER, false);
    let retry_after = c.dur("dr.retry_after", raw.retry_after, DEFAULT_DR_RETRY_AFTER, false);
    if retry_after > Duration::from_secs(24 * 3600) {
        c.fail("dr.retry_after", "must be at most 24h");
    }
    let body = raw.read_only_body.unwrap_or_else(|| DEFAULT_DR_READ_ONLY_BODY.to_string());
    if body.len() > MAX_READ_ONLY_BODY {
        c.fail("dr.read_only_body", format!("{} bytes; at most {MAX_READ_ONLY_BODY}", body.len()));
    }
    let rpo_budget = raw.rpo_budget.map(|d| c.dur("dr.rpo_budget", Some(d), "0s", false));
    let drill_timeout = c.dur("dr.drill_timeout", raw.drill_timeout, DEFAULT_DRILL_TIMEOUT, false);
    let policy = DrPolicy { engage, failback_after };
    if let Some(name) = &raw.drill_record {
        let ok = (1..=253).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !ok {
            c.fail("dr.drill_record", format!("{name:?} is not a DNS name"));
        }
    }
    let drill_record = raw.drill_record;
    DrConfig { policy, retry_after, read_only_body: body.into(), rpo_budget, drill_timeout, drill_record }
}

/// A pool's `health.role_header` (a header name) and `health.primary_role`
/// (a non-empty header value, `primary` by default).
pub(super) fn role(
    c: &mut Checker,
    key: &str,
    header: Option<String>,
    primary: Option<String>,
) -> (Option<String>, String) {
    if let Some(name) = &header {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.fail(format!("{key}.role_header"), format!("{name:?} is not a valid header name"));
        }
    }
    let value = primary.unwrap_or_else(|| DEFAULT_PRIMARY_ROLE.to_string());
    if value.trim().is_empty() || http::HeaderValue::from_str(&value).is_err() {
        c.fail(format!("{key}.primary_role"), format!("{value:?} is not a non-empty header value"));
    }
    if header.is_none() && value != DEFAULT_PRIMARY_ROLE {
        c.fail(format!("{key}.primary_role"), "has no effect without role_header");
    }
    (header, value.trim().to_string())
}

#[cfg(test)]
mod tests {
    fn check(extra: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "[[listener]]\nname='l'\nlisten='127.0.0.1:0'\n[pools.p]\nendpoints=['127.0.0.1:1']\n[pools.p.health]\npath='/h'\n[[route]]\nprimary='p'\n{extra}"
        );
        crate::config::from_str(&text, "t".as_ref(), ".".as_ref()).map(|l| l.config).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_keep_the_old_automatic_behaviour() {
        let cfg = check("").unwrap();
        assert_eq!(cfg.dr.policy.engage, crate::burst::EngageMode::Auto);
        assert_eq!(cfg.dr.policy.failback_after, std::time::Duration::from_secs(300));
        assert!(cfg.pools["p"].health.as_ref().unwrap().role_header.is_none());
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let cases = [
            ("[dr]\nengage='manual'\n", "dr.engage"),
            ("[dr]\nfailback_after='0s'\n", "dr.failback_after"),
            ("[dr]\nretry_after='2d'\n", "dr.retry_after"),
            ("[dr]\nread_only_body='x'\n", ""),
            ("[dr]\nrpo_budget='25m'\n", ""),
            ("[dr]\nrpo_budget='0s'\n", "dr.rpo_budget"),
            ("[dr]\ndrill_timeout='0s'\n", "dr.drill_timeout"),
            ("[dr]\ndrill_record='bad name'\n", "dr.drill_record"),
            ("[dr]\ndrill_record='drill.example.'\n", "needs a [dns] section"),
            ("[dr]\nbogus=1\n", "bogus"),
        ];
        for (extra, key) in cases {
            match check(extra) {
                Ok(_) => assert!(key.is_empty(), "{extra} was accepted"),
                Err(e) => assert!(!key.is_empty() && e.contains(key), "{extra}: {e}"),
            }
        }
        let long = format!("[dr]\nread_only_body='{}'\n", "x".repeat(16 * 1024 + 1));
        assert!(check(&long).unwrap_err().contains("dr.read_only_body"));
    }

    #[test]
    fn role_keys_are_checked() {
        let base = "[[listener]]\nname='l'\nlisten='127.0.0.1:0'\n[[route]]\nprimary='p'\n[pools.p]\nendpoints=['127.0.0.1:1']\n";
        let load = |health: &str| {
            let text = format!("{base}[pools.p.health]\npath='/h'\n{health}");
            crate::config::from_str(&text, "t".as_ref(), ".".as_ref()).map(|l| l.config).map_err(|e| e.to_string())
        };
        let ok = load("role_header='x-db-role'\nprimary_role='master'\n").unwrap();
        let h = ok.pools["p"].health.clone().unwrap();
        assert_eq!((h.role_header.as_deref(), h.primary_role.as_str()), (Some("x-db-role"), "master"));
        assert!(load("role_header='bad header'\n").unwrap_err().contains("role_header"));
        assert!(load("role_header='x-db-role'\nprimary_role=' '\n").unwrap_err().contains("primary_role"));
        assert!(load("primary_role='master'\n").unwrap_err().contains("primary_role"));
    }
}
