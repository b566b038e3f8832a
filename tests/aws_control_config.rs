//! The `[scale]` and `[dns]` keys the controllers add: defaults, and every
//! problem reported with its dotted key.

use std::path::Path;
use std::time::Duration;

use spillway::config::{from_str, ConfigError, ExternalEdit};

const BASE: &str = r#"
[[listener]]
name = "public"
listen = "127.0.0.1:0"

[pools.onprem]
endpoints = ["127.0.0.1:8081"]

[[route]]
primary = "onprem"
"#;

#[test]
fn controller_keys_get_defaults() {
    let text = format!(
        "{BASE}\n[scale]\nauto_scaling_group = \"g\"\nper_instance_rps = 150\nmin = 2\nmax = 20\n\n\
         [dns]\nhosted_zone_id = \"Z1\"\nrecord = \"www.example.com.\"\n\
         onprem = {{ set_identifier = \"dc1\", value = \"dc1.example.com.\" }}\n\
         aws = {{ set_identifier = \"aws\", value = \"elb.example.com.\" }}\n"
    );
    let c = from_str(&text, Path::new("t.toml"), Path::new("."))
        .unwrap()
        .config;
    let s = c.scale.unwrap();
    assert_eq!(
        (s.interval, s.scale_in_step, s.forecast_alpha),
        (Duration::from_secs(10), 10, 0.3)
    );
    let d = c.dns.unwrap();
    assert_eq!(
        (d.hysteresis, d.on_external_edit, d.target_weights),
        (16, ExternalEdit::Respect, None)
    );
    assert_eq!(d.verify_interval, Duration::from_secs(60));
}

#[test]
fn every_controller_problem_is_reported_with_its_key() {
    let text = format!(
        "{BASE}\n[scale]\nauto_scaling_group = \"g\"\nper_instance_rps = 150\nmin = 2\nmax = 20\n\
         forecast_alpha = 1.5\nscale_in_step = 0\n\n\
         [dns]\nhosted_zone_id = \"Z1\"\nrecord = \"www.example.com.\"\non_external_edit = \"ignore\"\n\
         target_weights = {{ onprem = 300, aws = 0 }}\n\
         onprem = {{ set_identifier = \"dc1\" }}\n\
         aws = {{ set_identifier = \"aws\", value = \"x.\", alias = {{ dns_name = \"elb.\", hosted_zone_id = \"Z35\" }} }}\n"
    );
    let Err(ConfigError::Invalid { problems, .. }) =
        from_str(&text, Path::new("t.toml"), Path::new("."))
    else {
        panic!("expected problems");
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "scale.forecast_alpha",
        "scale.scale_in_step",
        "dns.on_external_edit",
        "dns.target_weights.onprem",
        "dns.onprem.value",
        "dns.aws.alias",
        "dns.type",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
}
