use std::path::Path;

use super::*;

const GOOD: &str = r#"
[[listener]]
name = "public"
listen = "127.0.0.1:0"

[pools.onprem]
endpoints = ["127.0.0.1:8081"]

[pools.aws]
role = "cloud"
endpoints = ["burst.example.com:443"]
tls = { sni = "www.example.com" }

[[route]]
primary = "onprem"
overflow = "aws"
"#;

fn parse(text: &str) -> Result<LoadedConfig, ConfigError> {
    from_str(text, Path::new("test.toml"), Path::new("."))
}

fn problems(text: &str) -> Vec<LocatedProblem> {
    match parse(text) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected validation problems, got {other:?}"),
    }
}

#[test]
fn minimal_file_gets_defaults() {
    let c = parse(GOOD).unwrap().config;
    assert_eq!(c.spill.max_in_flight, 400);
    assert_eq!(c.spill.pin_after_write, std::time::Duration::from_secs(90));
    assert_eq!(c.routes[0].spill_methods, vec![http::Method::GET, http::Method::HEAD]);
    assert_eq!(c.pools["aws"].role, PoolRole::Cloud);
    assert!(c.pools["aws"].tls.as_ref().unwrap().verify);
}

#[test]
fn unknown_keys_are_errors_with_a_line() {
    let text = GOOD.replace("[pools.onprem]", "[pools.onprem]\nendpionts = []");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("endpionts"), "{err}");
    assert!(err.contains("line 7"), "{err}");
}

#[test]
fn every_problem_is_reported_with_key_and_line() {
    let text = format!(
        "{GOOD}\n[[route]]\nprimary = \"missing\"\n\n[spill]\nenter_after = \"10s\"\nexit_after = \"1s\"\n\n[scale]\nauto_scaling_group = \"g\"\nper_instance_rps = 100\nmin = 5\nmax = 2\n"
    );
    let p = problems(&text);
    let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"route[1].primary"), "{keys:?}");
    assert!(keys.contains(&"spill.exit_after"), "{keys:?}");
    assert!(keys.contains(&"scale.min"), "{keys:?}");
    let route = p.iter().find(|p| p.key == "route[1].primary").unwrap();
    let want = text.lines().position(|l| l == "primary = \"missing\"").map(|i| i + 1);
    assert_eq!(route.line, want);
    assert!(route.message.contains("unknown pool"));
}

#[test]
fn bad_values_are_refused() {
    let text = GOOD
        .replace(
            "127.0.0.1:8081\"]",
            "127.0.0.1:8081\", \"300.1.1.1:80\", \"\"]\nhealth = { path = \"/h\", interval = \"0s\" }",
        )
        .replace("listen = \"127.0.0.1:0\"", "listen = \"nowhere\"");
    let keys: Vec<_> = problems(&text).into_iter().map(|p| p.key).collect();
    for want in
        ["pools.onprem.endpoints[1]", "pools.onprem.endpoints[2]", "pools.onprem.health.interval", "listener[0].listen"]
    {
        assert!(keys.iter().any(|k| k == want), "missing {want} in {keys:?}");
    }
}

#[test]
fn duplicate_listener_addresses_and_empty_pools_are_refused() {
    let text = GOOD.replace(
        "[pools.onprem]\nendpoints = [\"127.0.0.1:8081\"]",
        "[[listener]]\nname = \"again\"\nlisten = \"127.0.0.1:8080\"\n\n[[listener]]\nname = \"twice\"\nlisten = \"127.0.0.1:8080\"\n\n[pools.onprem]\nendpoints = []",
    );
    let keys: Vec<_> = problems(&text).into_iter().map(|p| p.key).collect();
    assert!(keys.contains(&"listener[2].listen".to_string()), "{keys:?}");
    assert!(keys.contains(&"pools.onprem.endpoints".to_string()), "{keys:?}");
}

#[test]
fn unreadable_cert_files_are_refused() {
    let text = GOOD.replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\ntls = { cert = \"/nonexistent/cert.pem\", key = \"/nonexistent/key.pem\" }",
    );
    let p = problems(&text);
    assert!(p.iter().any(|p| p.key == "listener[0].tls.cert" && p.message.contains("cannot read")));
}

#[test]
fn syntax_errors_name_the_line() {
    let err = parse("[spill\nmax_in_flight = 3").unwrap_err().to_string();
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn version_is_a_stable_digest() {
    assert_eq!(parse(GOOD).unwrap().version, parse(GOOD).unwrap().version);
    assert_ne!(parse(GOOD).unwrap().version, parse(&format!("{GOOD}\n# edit")).unwrap().version);
}

#[test]
fn webhook_urls_are_checked() {
    assert!(super::check_webhook_url("https://events.pagerduty.example/v2/enqueue").is_ok());
    assert!(super::check_webhook_url("http://127.0.0.1:9000/hook").is_ok());
    assert!(super::check_webhook_url("ftp://example.com/").is_err());
    assert!(super::check_webhook_url("not a url").is_err());
}

#[test]
fn passive_health_keys_have_defaults_and_bounds() {
    let c = parse(GOOD).unwrap().config;
    assert_eq!(c.pools["onprem"].passive_fault_statuses, [502, 503, 504]);
    assert_eq!(c.pools["onprem"].max_ejection_percent, 50);
    let set = GOOD.replace(
        "endpoints = [\"127.0.0.1:8081\"]",
        "endpoints = [\"127.0.0.1:8081\"]\npassive_fault_statuses = [500, 429]\nmax_ejection_percent = 100",
    );
    let c = parse(&set).unwrap().config;
    assert_eq!(
        (c.pools["onprem"].passive_fault_statuses.as_slice(), c.pools["onprem"].max_ejection_percent),
        (&[500, 429][..], 100)
    );
    let bad = GOOD.replace(
        "endpoints = [\"127.0.0.1:8081\"]",
        "endpoints = [\"127.0.0.1:8081\"]\npassive_fault_statuses = [503, 200, 503]\nmax_ejection_percent = 101",
    );
    let keys: Vec<_> = problems(&bad).into_iter().map(|p| p.key).collect();
    for want in [
        "pools.onprem.passive_fault_statuses[1]",
        "pools.onprem.passive_fault_statuses[2]",
        "pools.onprem.max_ejection_percent",
    ] {
        assert!(keys.iter().any(|k| k == want), "missing {want} in {keys:?}");
    }
}

#[test]
fn admin_limits_have_safe_defaults_and_refuse_zero() {
    let a = parse(GOOD).unwrap().config.admin;
    assert_eq!((a.max_connections, a.reload_burst), (64, 10));
    assert_eq!(a.header_read_timeout, std::time::Duration::from_secs(10));
    assert_eq!(a.idle_timeout, std::time::Duration::from_secs(60));
    assert_eq!(a.reload_interval, std::time::Duration::from_secs(1));
    let zero = format!(
        "[admin]\nmax_connections = 0\nheader_read_timeout = \"0s\"\nidle_timeout = \"0s\"\nreload_burst = 0\nreload_interval = \"0s\"\n{GOOD}"
    );
    let keys: Vec<String> = problems(&zero).into_iter().map(|p| p.key).collect();
    for key in ["max_connections", "header_read_timeout", "idle_timeout", "reload_burst", "reload_interval"] {
        assert!(keys.contains(&format!("admin.{key}")), "admin.{key} = 0 accepted: {keys:?}");
    }
}

#[test]
fn the_site_name_defaults_to_local_and_keeps_to_its_alphabet() {
    assert_eq!(parse(GOOD).unwrap().config.runtime.site, "local");
    let named = format!("[runtime]\nsite = \"dc-1_a\"\n{GOOD}");
    assert_eq!(parse(&named).unwrap().config.runtime.site, "dc-1_a");
    for bad in ["", "dc 1", "dc1\\\"x", "ä", &"x".repeat(33)] {
        let text = format!("[runtime]\nsite = \"{bad}\"\n{GOOD}");
        let keys: Vec<_> = problems(&text).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["runtime.site"], "{bad:?}");
    }
}

#[test]
fn dns_health_check_ids_must_be_uuids() {
    let dns = |onprem_check: &str| {
        format!(
            "{GOOD}\n[dns]\nhosted_zone_id = \"Z1\"\nrecord = \"www.example.com.\"\n\
             onprem = {{ set_identifier = \"dc1\", value = \"dc1.example.com.\"{onprem_check} }}\n\
             aws = {{ set_identifier = \"aws-dc1\", value = \"elb.example.com.\" }}\n"
        )
    };
    let id = "6f1f5c1e-0b4d-4a52-9a5e-2f8d6c3b7a10";
    let c = parse(&dns(&format!(", health_check_id = \"{id}\""))).unwrap().config.dns.unwrap();
    assert_eq!(c.onprem.health_check_id.as_deref(), Some(id));
    assert_eq!(c.aws.health_check_id, None, "not configured: kept from Route 53");
    for bad in ["", "dc1-check", "6f1f5c1e0b4d4a529a5e2f8d6c3b7a10", "6f1f5c1e-0b4d-4a52-9a5e-2f8d6c3b7a1g"] {
        let p = problems(&dns(&format!(", health_check_id = \"{bad}\"")));
        assert!(p.iter().any(|p| p.key == "dns.onprem.health_check_id"), "{bad:?}: {p:?}");
    }
}

#[test]
fn readiness_path_defaults_disables_and_refuses_what_never_matches() {
    let c = parse(GOOD).unwrap().config;
    assert_eq!(c.listeners[0].readiness_path.as_deref(), Some("/.spillway/ready"));
    assert_eq!(c.runtime.drain_delay, std::time::Duration::ZERO);
    let with = |path: &str| {
        GOOD.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:0\"\nreadiness_path = {path:?}"))
    };
    assert_eq!(parse(&with("")).unwrap().config.listeners[0].readiness_path, None, "\"\" disables it");
    assert_eq!(parse(&with("/_ready")).unwrap().config.listeners[0].readiness_path.as_deref(), Some("/_ready"));
    for bad in ["ready", "/", "/ready?x=1", "/re%41dy", "/re ady", &format!("/{}", "a".repeat(256))] {
        let p = problems(&with(bad));
        assert!(p.iter().any(|p| p.key == "listener[0].readiness_path"), "{bad:?}: {p:?}");
    }
    let delay = |d: &str| format!("[runtime]\ndrain_delay = {d:?}\n{GOOD}");
    assert_eq!(parse(&delay("40s")).unwrap().config.runtime.drain_delay, std::time::Duration::from_secs(40));
    assert!(problems(&delay("11m")).iter().any(|p| p.key == "runtime.drain_delay"));
}

#[cfg(unix)]
#[test]
fn a_key_file_that_is_a_fifo_or_endless_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("token.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let big = dir.path().join("big.token");
    std::fs::write(&big, vec![b'a'; (1 << 20) + 1]).unwrap();
    for (name, path) in
        [("fifo", fifo.display().to_string()), ("/dev/zero", "/dev/zero".into()), ("big", big.display().to_string())]
    {
        let text = GOOD.replace("[admin]", &format!("[admin]\ntoken_file = {path:?}"));
        let text = if text.contains("token_file") { text } else { format!("[admin]\ntoken_file = {path:?}\n{GOOD}") };
        let keys: Vec<_> = problems(&text).into_iter().map(|p| p.key).collect();
        assert!(keys.iter().any(|k| k == "admin.token_file"), "{name}: {keys:?}");
    }
}

#[test]
fn listener_caps_are_bounded() {
    let text = |conns: &str, tunnels: &str| {
        GOOD.replace(
            "listen = \"127.0.0.1:0\"\n",
            &format!("listen = \"127.0.0.1:0\"\nmax_connections = {conns}\nmax_tunnels = {tunnels}\n"),
        )
    };
    let l = parse(&text("10000000", "10000000")).unwrap().config.listeners.remove(0);
    assert_eq!((l.max_connections, l.max_tunnels), (10_000_000, 10_000_000));
    let keys: Vec<String> = problems(&text("10000001", "18446744073709551615")).into_iter().map(|p| p.key).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[0].ends_with("max_connections") && keys[1].ends_with("max_tunnels"), "{keys:?}");
}
