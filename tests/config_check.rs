//! Issue 3: `spillway check` on good and bad files, the example configs in
//! `config/`, `--version`, and `run` refusing a bad file at start.

mod support;

use std::path::Path;
use std::process::Command;

use support::spillway::{check, BIN};

const GOOD: &str = r#"[admin]
listen = "127.0.0.1:0"

[[listener]]
name = "public"
listen = "127.0.0.1:0"

[pools.onprem]
endpoints = ["127.0.0.1:8081", "127.0.0.1:8082"]
health = { path = "/health", interval = "2s", timeout = "1s" }

[pools.aws]
role = "cloud"
endpoints = ["burst.example.com:443"]
tls = { sni = "www.example.com" }

[[route]]
primary = "onprem"
overflow = "aws"
"#;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The 1-based line of the first line of `text` equal to `line`.
fn line_of(text: &str, line: &str) -> usize {
    text.lines().position(|l| l == line).unwrap_or_else(|| panic!("no line {line:?}")) + 1
}

#[test]
fn a_good_file_passes_with_a_one_line_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = check(&write(dir.path(), "good.toml", GOOD));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert!(stdout.contains("ok") && stdout.contains("1 listener(s), 2 pool(s), 1 route(s)"), "{stdout}");
}

#[test]
fn a_bad_file_lists_every_problem_with_key_and_line() {
    let bad = r#"[admin]
listen = "127.0.0.1:0"

[[listener]]
name = "public"
listen = "127.0.0.1:8080"
tls = { cert = "/nonexistent/cert.pem", key = "/nonexistent/key.pem" }

[[listener]]
name = "again"
listen = "127.0.0.1:8080"

[[listener]]
name = "nowhere"
listen = "not-an-address"

[pools.onprem]
endpoints = ["127.0.0.1:8081"]
health = { path = "/health", interval = "0s" }

[pools.empty]
endpoints = []

[[route]]
primary = "missing"

[spill]
enter_after = "10s"
exit_after = "1s"

[scale]
auto_scaling_group = "web"
per_instance_rps = 100
min = 5
max = 2
"#;
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = check(&write(dir.path(), "bad.toml", bad));
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    let expect = [
        ("listener[0].tls.cert", "tls = { cert = \"/nonexistent/cert.pem\", key = \"/nonexistent/key.pem\" }"),
        ("listener[1].listen", "listen = \"127.0.0.1:8080\""),
        ("listener[2].listen", "listen = \"not-an-address\""),
        ("pools.onprem.health.interval", "health = { path = \"/health\", interval = \"0s\" }"),
        ("pools.empty.endpoints", "endpoints = []"),
        ("route[0].primary", "primary = \"missing\""),
        ("spill.exit_after", "exit_after = \"1s\""),
        ("scale.min", "min = 5"),
    ];
    for (key, line) in expect {
        let mut n = line_of(bad, line);
        if key == "listener[1].listen" {
            // The duplicate is the second `listen = "127.0.0.1:8080"`.
            n = bad.lines().enumerate().filter(|(_, l)| *l == line).nth(1).unwrap().0 + 1;
        }
        let want = format!("line {n}: {key}: ");
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
    }
    for message in [
        "cannot read",
        "duplicate listener address",
        "invalid address",
        "greater than zero",
        "at least one endpoint",
        "unknown pool",
        "must not be shorter",
        "greater than max",
    ] {
        assert!(stderr.contains(message), "missing {message:?} in:\n{stderr}");
    }
}

#[test]
fn unknown_keys_and_syntax_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let typo = GOOD.replace("[pools.onprem]\n", "[pools.onprem]\nendpionts = []\n");
    let (code, _, stderr) = check(&write(dir.path(), "typo.toml", &typo));
    assert_eq!(code, 1);
    let n = line_of(&typo, "endpionts = []");
    assert!(stderr.contains("endpionts") && stderr.contains(&format!("line {n}")), "{stderr}");

    let (code, _, stderr) = check(&write(dir.path(), "syntax.toml", "[spill\nmax_in_flight = 3\n"));
    assert_eq!(code, 1);
    assert!(stderr.contains("line 1"), "{stderr}");

    let (code, _, stderr) = check(&dir.path().join("absent.toml"));
    assert_eq!(code, 1);
    assert!(stderr.contains("absent.toml"), "{stderr}");
}

#[test]
fn every_example_config_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect()
        })
        .unwrap_or_default();
    files.sort();
    assert!(!files.is_empty(), "no example config (*.toml) in {}", dir.display());
    let mut failed = Vec::new();
    for file in &files {
        let (code, stdout, stderr) = check(file);
        if code != 0 {
            failed.push(format!("{}:\n{stderr}", file.display()));
        } else {
            assert!(stdout.contains("ok"), "{stdout}");
        }
    }
    assert!(failed.is_empty(), "example configs that do not validate:\n{}", failed.join("\n"));
}

#[test]
fn version_flag_prints_the_crate_version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("spillway {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn run_refuses_a_bad_file_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.toml", &GOOD.replace("primary = \"onprem\"", "primary = \"nope\""));
    let out = Command::new(BIN).args(["run", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("route[0].primary") && stderr.contains("unknown pool"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"));
}
