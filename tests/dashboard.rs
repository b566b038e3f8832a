//! The live dashboard, rendered by a real browser: headless Chromium loads
//! the admin page, its script polls `/status`, and the DOM it dumps shows
//! the pools and their gate state. (`scripts/test` installs Chromium.)

mod support;

use support::browser::dump_dom;
use support::{simple_config, Origin, Spillway};

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
