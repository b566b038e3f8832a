//! Issue 14, item 1: the access log through the real binary. One JSON line
//! per request in a file after the response ended, with every field; the
//! request id generated (or a trusted peer's kept), forwarded upstream and
//! returned; the file reopened after logrotate moved it away; nothing added
//! to a request with the log off; `spillway check` refusing what the
//! writer could not use.

mod support;

use std::path::Path;
use std::time::Duration;

use http::Method;
use support::spillway::check;
use support::{eventually, request, simple_config, Origin, Resp, Spillway};

const FILE_LOG: &str = "\n[access_log]\nsink = \"file\"\npath = \"access.log\"\ninclude_query = true\n";

/// The JSON lines of the log file so far.
fn lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

async fn wait_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    eventually(Duration::from_secs(5), &format!("{n} access log line(s) in {}", path.display()), || async {
        lines(path).len() >= n
    })
    .await;
    lines(path)
}

/// What the origin saw of one header (the echo document).
fn echoed(resp: &Resp, name: &str) -> Vec<String> {
    let doc = resp.json();
    doc["headers"][name]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_request_is_one_json_line_with_every_field_and_our_request_id() {
    let origin = Origin::start("o1").await;
    let sw = Spillway::start(&(simple_config(&[&origin], "", "") + FILE_LOG)).await;
    let log = sw.dir().join("access.log");
    let sent = vec![("x-request-id", "forged-by-client".to_string()), ("content-length", "5".to_string())];
    let resp = request(Method::POST, &sw.url("web", "/chat/send?room=final"), sent, b"hello").await.unwrap();
    assert_eq!(resp.status, 200);
    let id = resp.header("x-request-id").expect("the client gets the request id").to_string();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "ours, not the client's: {id}");
    assert_eq!(echoed(&resp, "x-request-id"), vec![id.clone()], "forwarded upstream, the client's dropped");

    let line = wait_lines(&log, 1).await.remove(0);
    let expect = [
        ("request_id", serde_json::json!(id)),
        ("client", "127.0.0.1".into()),
        ("method", "POST".into()),
        ("path", "/chat/send?room=final".into()),
        ("protocol", "HTTP/1.1".into()),
        ("status", 200.into()),
        ("bytes_in", 5.into()),
        ("bytes_out", resp.body.len().into()),
        ("route", "all".into()),
        ("pool", "app".into()),
        ("endpoint", origin.endpoint().into()),
        ("decision", "primary".into()),
        ("reason", "under_limit".into()),
        ("pinned", false.into()),
        ("retries", 0.into()),
        ("completed", true.into()),
    ];
    for (key, value) in expect {
        assert_eq!(line[key], value, "{key} in {line}");
    }
    assert_eq!(line["host"].as_str(), Some(sw.addr("web").to_string().as_str()));
    assert!(line["time"].as_str().is_some_and(|t| t.len() == 24 && t.ends_with('Z')), "{line}");
    let (total, upstream) = (line["duration_ms"].as_f64().unwrap(), line["upstream_ms"].as_f64().unwrap());
    assert!(upstream > 0.0 && total >= upstream, "{line}");
}

/// A chunked upload has no length in its head: `bytes_in` is what was read
/// from the client and forwarded (it used to be `null`).
#[tokio::test]
async fn a_chunked_upload_logs_the_bytes_it_carried() {
    let origin = Origin::start("o1").await;
    let sw = Spillway::start(&(simple_config(&[&origin], "", "") + FILE_LOG)).await;
    let log = sw.dir().join("access.log");
    let head = "POST /upload HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    let body = "5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n3\r\n!!!\r\n0\r\n\r\n";
    let answer = support::client::raw(sw.addr("web"), format!("{head}{body}").as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let line = wait_lines(&log, 1).await.remove(0);
    assert_eq!(line["bytes_in"], 5 + 26 + 3, "{line}");
    assert_eq!(line["completed"], true, "{line}");
}

#[tokio::test]
async fn a_trusted_peers_request_id_is_kept() {
    let origin = Origin::start("o1").await;
    let listener = "trusted_proxies = [\"127.0.0.1/32\"]";
    let sw = Spillway::start(&(simple_config(&[&origin], listener, "") + FILE_LOG)).await;
    let sent = vec![("x-request-id", "lb-4711".to_string())];
    let resp = request(Method::GET, &sw.url("web", "/"), sent, b"").await.unwrap();
    assert_eq!(resp.header("x-request-id"), Some("lb-4711"));
    assert_eq!(echoed(&resp, "x-request-id"), vec!["lb-4711".to_string()]);
    let line = wait_lines(&sw.dir().join("access.log"), 1).await.remove(0);
    assert_eq!(line["request_id"], "lb-4711");
    assert_eq!(line["path"], "/");
}

#[tokio::test]
async fn errors_are_logged_when_sampled_out_and_the_rest_are_not() {
    let origin = Origin::start("o1").await;
    let sampled = FILE_LOG.to_string() + "sample = 0.0\n";
    let sw = Spillway::start(&(simple_config(&[&origin], "", "") + &sampled)).await;
    for path in ["/ok-1", "/fail?status=503", "/ok-2"] {
        request(Method::GET, &sw.url("web", path), Vec::new(), b"").await.unwrap();
    }
    let log = sw.dir().join("access.log");
    let got = wait_lines(&log, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = if lines(&log).len() > got.len() { lines(&log) } else { got };
    assert_eq!(got.len(), 1, "only the 5xx: {got:?}");
    assert_eq!(got[0]["status"], 503);
}

#[tokio::test]
async fn the_file_is_reopened_after_rotation() {
    let origin = Origin::start("o1").await;
    let sw = Spillway::start(&(simple_config(&[&origin], "", "") + FILE_LOG)).await;
    let log = sw.dir().join("access.log");
    request(Method::GET, &sw.url("web", "/before"), Vec::new(), b"").await.unwrap();
    wait_lines(&log, 1).await;
    let rotated = sw.dir().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // Within the rotation check (a second), the writer finds the path gone.
    eventually(Duration::from_secs(5), "a line in a new access.log", || async {
        request(Method::GET, &sw.url("web", "/after"), Vec::new(), b"").await.unwrap();
        lines(&log).iter().any(|l| l["path"] == "/after")
    })
    .await;
    let old = lines(&rotated);
    assert_eq!(old[0]["path"], "/before");
    assert!(lines(&log).iter().all(|l| l["path"] == "/after"), "nothing old in the new file");
}

#[tokio::test]
async fn with_the_log_off_no_request_id_is_made() {
    let origin = Origin::start("o1").await;
    let sw = Spillway::start(&simple_config(&[&origin], "", "")).await;
    let sent = vec![("x-request-id", "client-1".to_string())];
    let resp = request(Method::GET, &sw.url("web", "/"), sent, b"").await.unwrap();
    assert_eq!(resp.header("x-request-id"), None, "nothing added to the response");
    assert_eq!(echoed(&resp, "x-request-id"), vec!["client-1".to_string()], "the header passes as any other");
}

#[test]
fn check_refuses_what_the_writer_could_not_use() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n[pools.app]\nendpoints = [\"127.0.0.1:1\"]\n[[route]]\nprimary = \"app\"\n";
    std::fs::write(dir.path().join("not-a-cert.pem"), "hello").unwrap();
    let cases = [
        ("syslog = { address = \"logs1.papertrailapp.com\" }", "access_log.syslog.address", "has no port"),
        (
            "syslog = { address = \"logs1.papertrailapp.com:1234\", ca_file = \"missing.pem\" }",
            "access_log.syslog.ca_file",
            "cannot read",
        ),
        (
            "syslog = { address = \"logs1.papertrailapp.com:1234\", ca_file = \"not-a-cert.pem\" }",
            "access_log.syslog.ca_file",
            "no PEM certificate",
        ),
    ];
    for (syslog, key, message) in cases {
        let path = dir.path().join("spillway.toml");
        std::fs::write(&path, format!("{base}[access_log]\nsink = \"syslog\"\n{syslog}\n")).unwrap();
        let (code, _out, err) = check(&path);
        assert_ne!(code, 0, "{syslog} is refused");
        assert!(err.contains(key) && err.contains(message), "{key}: {message} in {err}");
    }
    let path = dir.path().join("spillway.toml");
    std::fs::write(&path, format!("{base}[access_log]\nsink = \"file\"\nsample = 1.5\n")).unwrap();
    let (code, _out, err) = check(&path);
    assert_ne!(code, 0);
    assert!(err.contains("access_log.path") && err.contains("access_log.sample"), "{err}");
}

/// A SIGTERM right after a burst of requests: the writer takes what is
/// queued before the process exits (it used to be given 10 ms, half a
/// batch interval).
#[tokio::test]
async fn every_line_is_written_before_the_process_exits() {
    let origin = Origin::start("o1").await;
    let mut sw = Spillway::start(&(simple_config(&[&origin], "", "") + FILE_LOG)).await;
    let log = sw.dir().join("access.log");
    for round in 0..5 {
        let url = sw.url("web", &format!("/last?round={round}"));
        let sent = futures_util::future::join_all((0..20).map(|_| request(Method::GET, &url, vec![], b""))).await;
        assert!(sent.iter().all(|r| r.as_ref().is_ok_and(|r| r.status == 200)));
    }
    sw.signal("TERM");
    assert!(sw.wait_exit(Duration::from_secs(10)).await.success());
    assert_eq!(lines(&log).len(), 100, "lines lost at exit");
}
