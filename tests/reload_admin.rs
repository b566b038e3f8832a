//! The admin listener is bound once: a reload that moves it is refused with
//! a clear error, and the running configuration keeps serving.

mod support;

use support::{simple_config, Origin, Spillway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_admin_listener_is_refused_on_reload() {
    let origin = Origin::start("a").await;
    let config = simple_config(&[&origin], "", "");
    let sw = Spillway::start_linked(&config).await;
    let before = sw.version().await;
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let moved = config.replace("listen = \"127.0.0.1:0\"\n\n[runtime]", &format!("listen = \"{free}\"\n\n[runtime]"));
    assert_ne!(moved, config, "the test must change admin.listen");
    sw.write_unwatched(&moved);
    let (status, body) = sw.reload().await;
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("admin.listen") && error.contains("restart"), "{error}");
    assert_eq!(sw.version().await, before, "the old configuration keeps serving");
    assert_eq!(support::get(&sw.url("web", "/")).await.unwrap().status, 200);
}
