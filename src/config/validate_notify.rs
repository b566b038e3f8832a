//! Validation of `[notify]` and its sinks (`webhook`, `sns_topic_arn`,
//! `[notify.pagerduty]`) and of `[notify.cloudwatch]`: the same rules as
//! `validate.rs` (every problem reported with its dotted key).
//!
//! What real AWS or PagerDuty would refuse is refused here, at `spillway
//! check`, because the emulators the tests use accept almost anything: an
//! SNS ARN that is not `arn:PARTITION:sns:REGION:ACCOUNT:NAME`, a FIFO topic
//! (Publish would need a message group), a routing key that is not 32
//! characters, a CloudWatch namespace outside its alphabet or under `AWS/`.

use super::raw::*;
use super::types::*;
use super::validate::{check_webhook_url, Checker};

/// PagerDuty's Events API v2 integration keys are 32 characters.
const ROUTING_KEY_LEN: usize = 32;

pub(super) fn notify(c: &mut Checker, raw: RawNotify) -> NotifyConfig {
    if let Some(url) = &raw.webhook {
        if let Err(e) = check_webhook_url(url) {
            c.fail("notify.webhook", e);
        }
    }
    let sns_topic_arn = raw.sns_topic_arn.as_deref().and_then(|arn| match sns_topic(arn) {
        Ok(topic) => Some(topic),
        Err(e) => {
            c.fail("notify.sns_topic_arn", e);
            None
        }
    });
    NotifyConfig {
        sns_topic_arn,
        webhook: raw.webhook,
        resolve_after: c.dur("notify.resolve_after", raw.resolve_after, DEFAULT_RESOLVE_AFTER, true),
        burst: at_least_one(c, "notify.burst", raw.burst.unwrap_or(DEFAULT_NOTIFY_BURST)),
        refill_every: c.dur("notify.refill_every", raw.refill_every, DEFAULT_NOTIFY_REFILL_EVERY, false),
        controller_failing_after: at_least_one(
            c,
            "notify.controller_failing_after",
            raw.controller_failing_after.unwrap_or(DEFAULT_CONTROLLER_FAILING_AFTER),
        ),
        pagerduty: raw.pagerduty.map(|p| pagerduty(c, p)),
        cloudwatch: raw.cloudwatch.map(|cw| cloudwatch(c, cw)),
    }
}

fn at_least_one(c: &mut Checker, key: &str, n: u32) -> u32 {
    if n == 0 {
        c.fail(key, "must be greater than zero");
    }
    n
}

/// `arn:PARTITION:sns:REGION:ACCOUNT:NAME`, a standard (not FIFO) topic.
pub(super) fn sns_topic(arn: &str) -> Result<SnsTopic, String> {
    let parts: Vec<&str> = arn.split(':').collect();
    let [prefix, partition, service, region, account, name] = parts[..] else {
        return Err(format!("{arn:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"));
    };
    if prefix != "arn" || !["aws", "aws-cn", "aws-us-gov"].contains(&partition) || service != "sns" {
        return Err(format!("{arn:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"));
    }
    if !is_region(region) {
        return Err(format!("{region:?} in {arn:?} is not an AWS region name"));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{account:?} in {arn:?} is not a 12-digit account id"));
    }
    let valid_name = (1..=256).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid_name {
        return Err(format!("{name:?} is not a topic name (1 to 256 letters, digits, '-' or '_')"));
    }
    if name.ends_with(".fifo") {
        return Err(format!("{name:?} is a FIFO topic: Spillway publishes to standard topics only"));
    }
    Ok(SnsTopic { arn: arn.to_string(), region: region.to_string() })
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`: lowercase words and a number.
pub(super) fn is_region(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

fn pagerduty(c: &mut Checker, raw: RawPagerDuty) -> PagerDutyConfig {
    let before = c.count();
    let (full, bytes) = c.read_file("notify.pagerduty.routing_key_file", &raw.routing_key_file);
    let key = String::from_utf8_lossy(&bytes).trim().to_string();
    if c.count() == before {
        if key.is_empty() {
            c.fail(
                "notify.pagerduty.routing_key_file",
                format!("{} is empty: write the routing key into it", full.display()),
            );
        } else if key.len() != ROUTING_KEY_LEN || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            // The key itself is a secret: never part of a message.
            c.fail(
                "notify.pagerduty.routing_key_file",
                format!(
                    "{} does not hold a routing key: PagerDuty's are {ROUTING_KEY_LEN} letters and digits",
                    full.display()
                ),
            );
        }
    }
    let url = raw.url.unwrap_or_else(|| DEFAULT_PAGERDUTY_URL.to_string());
    if let Err(e) = check_webhook_url(&url) {
        c.fail("notify.pagerduty.url", e);
    }
    let min_severity = match raw.min_severity.as_deref() {
        None => Severity::Warning,
        Some(text) => Severity::parse(text).unwrap_or_else(|| {
            c.fail(
                "notify.pagerduty.min_severity",
                format!("unknown severity {text:?}: expected \"info\", \"warning\", \"error\" or \"critical\""),
            );
            Severity::Warning
        }),
    };
    PagerDutyConfig { routing_key: Secret(key), url, min_severity }
}

fn cloudwatch(c: &mut Checker, raw: RawCloudWatch) -> CloudWatchConfig {
    let namespace = raw.namespace.unwrap_or_else(|| DEFAULT_CLOUDWATCH_NAMESPACE.to_string());
    let alphabet = |b: u8| b.is_ascii_alphanumeric() || b".-_/#: ".contains(&b);
    if namespace.is_empty() || namespace.len() > 255 || !namespace.bytes().all(alphabet) {
        c.fail(
            "notify.cloudwatch.namespace",
            format!("{namespace:?} is not 1 to 255 letters, digits, spaces or . - _ / # :"),
        );
    } else if namespace.starts_with("AWS/") {
        c.fail("notify.cloudwatch.namespace", "namespaces starting with \"AWS/\" are reserved for AWS services");
    }
    let interval = c.dur("notify.cloudwatch.interval", raw.interval, DEFAULT_CLOUDWATCH_INTERVAL, false);
    if interval < std::time::Duration::from_secs(1) || interval > std::time::Duration::from_secs(3600) {
        c.fail("notify.cloudwatch.interval", "must be between 1s and 1h");
    }
    let region = raw.region.unwrap_or_else(|| "us-east-1".to_string());
    if !is_region(&region) {
        c.fail("notify.cloudwatch.region", format!("{region:?} is not an AWS region name"));
    }
    CloudWatchConfig { enabled: raw.enabled.unwrap_or(true), namespace, interval, region }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sns_topic_arns_are_checked_as_aws_would() {
        let ok = sns_topic("arn:aws:sns:eu-west-1:123456789012:spillway-events").unwrap();
        assert_eq!(ok.region, "eu-west-1");
        for bad in [
            "spillway-events",
            "arn:aws:sqs:eu-west-1:123456789012:q",
            "arn:aws:sns:Europe:123456789012:t",
            "arn:aws:sns:eu-west-1:1234:t",
            "arn:aws:sns:eu-west-1:123456789012:",
            "arn:aws:sns:eu-west-1:123456789012:bad name",
            "arn:aws:sns:eu-west-1:123456789012:orders.fifo",
            "arn:aws:sns:eu-west-1:123456789012:t:extra",
        ] {
            assert!(sns_topic(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn region_names() {
        assert!(is_region("us-east-1") && is_region("us-gov-west-1") && is_region("ap-southeast-4"));
        assert!(!is_region("us-east") && !is_region("US-EAST-1") && !is_region("") && !is_region("us--1"));
    }

    fn problems(notify: &str) -> Vec<String> {
        let text = format!(
            "[[listener]]\nname='l'\nlisten='127.0.0.1:0'\n[pools.p]\nendpoints=['127.0.0.1:1']\n[[route]]\nprimary='p'\n{notify}"
        );
        match crate::config::from_str(&text, "t.toml".as_ref(), ".".as_ref()) {
            Ok(_) => Vec::new(),
            Err(crate::config::ConfigError::Invalid { problems, .. }) => problems.into_iter().map(|p| p.key).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn limits_severities_and_cloudwatch_bounds_are_checked() {
        assert!(problems("[notify]\nresolve_after = '0s'\nburst = 1\n[notify.cloudwatch]\n").is_empty());
        assert_eq!(problems("[notify]\nburst = 0"), ["notify.burst"]);
        assert_eq!(problems("[notify]\nrefill_every = '0s'"), ["notify.refill_every"]);
        assert_eq!(problems("[notify]\ncontroller_failing_after = 0"), ["notify.controller_failing_after"]);
        let pd = "[notify.pagerduty]\nrouting_key_file = 'nowhere.key'\nmin_severity = 'loud'\nurl = 'ftp://x/'";
        assert_eq!(
            problems(pd),
            ["notify.pagerduty.routing_key_file", "notify.pagerduty.url", "notify.pagerduty.min_severity"]
        );
        assert_eq!(problems("[notify.cloudwatch]\ninterval = '500ms'"), ["notify.cloudwatch.interval"]);
        assert_eq!(problems("[notify.cloudwatch]\ninterval = '2h'"), ["notify.cloudwatch.interval"]);
        assert_eq!(problems("[notify.cloudwatch]\nregion = 'moon'"), ["notify.cloudwatch.region"]);
        assert_eq!(problems("[notify.cloudwatch]\nnamespace = ''"), ["notify.cloudwatch.namespace"]);
    }

    #[test]
    fn a_routing_key_file_holds_one_key_and_it_is_never_shown() {
        let dir = std::env::temp_dir().join(format!("spillway-pd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = "0123456789abcdef0123456789ABCDEF";
        std::fs::write(dir.join("pd.key"), format!("{key}\n")).unwrap();
        let text = "[[listener]]\nname='l'\nlisten='127.0.0.1:0'\n[pools.p]\nendpoints=['127.0.0.1:1']\n[[route]]\nprimary='p'\n[notify.pagerduty]\nrouting_key_file='pd.key'";
        let loaded = crate::config::from_str(text, "t.toml".as_ref(), &dir).unwrap();
        let pd = loaded.config.notify.pagerduty.unwrap();
        assert_eq!(pd.routing_key.0, key);
        assert_eq!(pd.min_severity, Severity::Warning);
        assert!(!format!("{pd:?}").contains(key), "Debug redacts the key");
        std::fs::write(dir.join("pd.key"), "not-a-key-but-32-characters-long").unwrap();
        let err = crate::config::from_str(text, "t.toml".as_ref(), &dir).unwrap_err().to_string();
        assert!(err.contains("32 letters and digits") && !err.contains("not-a-key"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
