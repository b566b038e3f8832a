//! The live dashboard, rendered by a real browser: headless Chromium loads
//! the admin page, its script polls `/status`, and the DOM it dumps shows
//! the pools and their gate state. (`scripts/test` installs Chromium.)

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{simple_config, Origin, Spillway};

fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("Chromium is not installed: run scripts/test, which installs it")
}

/// Loads `url` in headless Chromium and returns the DOM after its scripts ran.
fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_live_pool_state() {
    let origin = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&origin], "", "")).await;
    let url = sw.admin_url("/");
    let dom = tokio::task::spawn_blocking(move || dump_dom(&url)).await.unwrap();
    assert!(dom.contains("id=\"pool-app\""), "no pool section rendered:\n{dom}");
    assert!(dom.contains("in flight / limit"), "gate state not rendered:\n{dom}");
    assert!(dom.contains("0 / 400"), "live in-flight/limit values not rendered:\n{dom}");
    assert!(dom.contains("class=\"mode normal\""), "pool mode not rendered:\n{dom}");
    assert!(dom.contains("<div id=\"error\"></div>"), "the page reported an error:\n{dom}");
}
