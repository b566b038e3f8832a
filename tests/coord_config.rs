//! The `[coordination]` keys: defaults, and every problem reported with its
//! dotted key (names DynamoDB, Auto Scaling and Route 53 would refuse, and
//! timings that would make a lease unsafe).

use std::path::Path;
use std::time::Duration;

use spillway::config::{from_str, ConfigError};

const BASE: &str = r#"
[runtime]
site = "dc1"

[[listener]]
name = "public"
listen = "127.0.0.1:0"

[pools.onprem]
endpoints = ["127.0.0.1:8081"]

[[route]]
primary = "onprem"
"#;

const COVER: &str = "hosted_zone_id = \"Z1\"\nrecord = \"www.example.com.\"\n\
    onprem = { set_identifier = \"dc2\", value = \"dc2.example.com.\" }\n\
    aws = { set_identifier = \"aws-dc2\", value = \"elb.example.com.\" }\n";

fn problems(text: &str) -> Vec<String> {
    match from_str(text, Path::new("t.toml"), Path::new(".")) {
        Err(ConfigError::Invalid { problems, .. }) => problems.into_iter().map(|p| p.key).collect(),
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn coordination_keys_get_defaults() {
    let text = format!(
        "{BASE}\n[coordination]\ntable = \"spillway-coordination\"\n\n\
         [[coordination.cover]]\nsite = \"dc2\"\nauto_scaling_group = \"sportchat-burst-dc2\"\ndr_capacity = 60\n{COVER}"
    );
    let c = from_str(&text, Path::new("t.toml"), Path::new(".")).unwrap().config.coordination.unwrap();
    assert_eq!((c.site.as_str(), c.region.as_str(), c.instance_id.as_deref()), ("dc1", "us-east-1", None));
    let secs = |s| Duration::from_secs(s);
    assert_eq!(
        (c.heartbeat_interval, c.lease_duration, c.takeover_after, c.handback_after),
        (secs(2), secs(10), secs(30), secs(60))
    );
    let cover = &c.cover[0];
    assert_eq!((cover.site.as_str(), cover.dr_capacity), ("dc2", 60));
    assert_eq!(
        (cover.dns.record_type.as_str(), cover.dns.ttl, cover.dns.aws.set_identifier.as_str()),
        ("CNAME", 60, "aws-dc2")
    );
}

#[test]
fn every_coordination_problem_is_reported_with_its_key() {
    let text = format!(
        "{BASE}\n[coordination]\ntable = \"x\"\ninstance_id = \"has space\"\nheartbeat_interval = \"2s\"\n\
         lease_duration = \"5s\"\ntakeover_after = \"4s\"\nhandback_after = \"1s\"\n\n\
         [[coordination.cover]]\nsite = \"dc1\"\nauto_scaling_group = \"\"\ndr_capacity = 1\n{COVER}\n\
         [[coordination.cover]]\nsite = \"dc/2\"\nauto_scaling_group = \"g\"\ndr_capacity = 1\n\
         hosted_zone_id = \"Z1\"\nrecord = \"www.example.com.\"\nttl = 0\n\
         onprem = {{ set_identifier = \"dc2\" }}\naws = {{ set_identifier = \"dc2\", value = \"elb.\" }}\n\n\
         [[coordination.cover]]\nsite = \"dc1\"\nauto_scaling_group = \"g\"\ndr_capacity = 1\n{COVER}"
    );
    let keys = problems(&text);
    for key in [
        "coordination.table",
        "coordination.instance_id",
        "coordination.lease_duration",
        "coordination.takeover_after",
        "coordination.handback_after",
        "coordination.cover[0].site",
        "coordination.cover[0].auto_scaling_group",
        "coordination.cover[1].site",
        "coordination.cover[1].ttl",
        "coordination.cover[1].onprem.value",
        "coordination.cover[1].aws.set_identifier",
        "coordination.cover[2].site",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
    }
    assert!(!keys.iter().any(|k| k.starts_with("dns.") || k == "runtime.site"), "keys renamed: {keys:?}");
}

#[test]
fn a_config_without_coordination_has_none() {
    let c = from_str(BASE, Path::new("t.toml"), Path::new(".")).unwrap().config;
    assert!(c.coordination.is_none());
}
