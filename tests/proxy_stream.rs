//! Issue 2: bodies stream through the proxy both ways without being
//! buffered — 100 MB up and 100 MB down with the proxy's memory flat.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use support::origin::Repeat;
use support::{curl, simple_config, Origin, Spillway};

const SIZE: u64 = 100 * 1024 * 1024;
/// How much the proxy's peak RSS may grow while moving 2 × 100 MB.
const MAX_GROWTH_KIB: u64 = 60 * 1024;

/// POSTs `SIZE` bytes generated on the fly (never held in memory here
/// either) and returns the echo document.
async fn upload(addr: std::net::SocketAddr) -> serde_json::Value {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("/upload").header("host", addr.to_string()).body(Repeat { left: SIZE }).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_each_way_with_bounded_rss() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "", "")).await;
    // Warm up so lazily allocated buffers count in the baseline.
    let warm = curl(&["-o", "/dev/null", &sw.url("web", "/warm?bytes=1048576")]).await;
    assert_eq!(warm.status, 200, "{warm:?}");
    let (_, hwm_before) = sw.memory_kib();

    let echo = tokio::time::timeout(Duration::from_secs(120), upload(sw.addr("web"))).await.expect("upload in time");
    assert_eq!(echo["body_len"], SIZE, "the origin received every byte");
    let (_, hwm_after_up) = sw.memory_kib();

    let size_arg = format!("/download?bytes={SIZE}");
    let down = curl(&["-o", "/dev/null", "--max-time", "120", &sw.url("web", &size_arg)]).await;
    assert_eq!(down.status, 200, "{down:?}");
    let (rss, hwm_after_down) = sw.memory_kib();
    assert_eq!(down.size_download, SIZE, "the client received every byte");

    let growth = hwm_after_down.saturating_sub(hwm_before);
    eprintln!("proxy VmHWM KiB: before {hwm_before}, after upload {hwm_after_up}, after download {hwm_after_down}; VmRSS now {rss}");
    assert!(
        growth < MAX_GROWTH_KIB,
        "peak RSS grew by {growth} KiB (before {hwm_before}, after upload {hwm_after_up}, after download {hwm_after_down}, rss now {rss})"
    );
}
