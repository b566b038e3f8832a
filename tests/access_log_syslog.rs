//! Issue 14, item 1: the access log's syslog sink as Papertrail takes it —
//! RFC 5424 messages over TLS, octet-counted (RFC 6587) — received by a
//! loopback TLS server whose certificate (rcgen) is trusted only through
//! the configured `ca_file`. Proxied, spilled, pinned and shed requests
//! each arrive as one frame with every field.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use support::tls::TestCa;
use support::{endpoints, eventually, request, Origin, Spillway, ADMIN};
use tokio::io::AsyncReadExt;

/// A TLS syslog receiver: every octet-counted frame it read, as text.
struct Receiver {
    port: u16,
    frames: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(ca: &TestCa) -> Receiver {
        let leaf = ca.issue("syslog receiver", &["localhost"]);
        let acceptor = tokio_rustls::TlsAcceptor::from(leaf.server_config());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let sink = frames.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, sink) = (acceptor.clone(), sink.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    while let Some(frame) = read_frame(&mut tls).await {
                        sink.lock().unwrap().push(frame);
                    }
                });
            }
        });
        Receiver { port, frames }
    }

    fn frames(&self) -> Vec<String> {
        self.frames.lock().unwrap().clone()
    }
}

/// `MSG-LEN SP SYSLOG-MSG` (RFC 6587 §3.4.1).
async fn read_frame(r: &mut (impl AsyncReadExt + Unpin)) -> Option<String> {
    let mut len = 0usize;
    loop {
        let b = r.read_u8().await.ok()?;
        match b {
            b'0'..=b'9' => len = len * 10 + usize::from(b - b'0'),
            b' ' => break,
            other => panic!("not an octet count: byte {other}"),
        }
    }
    let mut msg = vec![0; len];
    r.read_exact(&mut msg).await.ok()?;
    Some(String::from_utf8(msg).expect("UTF-8 message"))
}

/// An RFC 5424 message: (PRI, the header fields, the JSON line).
fn parse(frame: &str) -> (u16, Vec<&str>, serde_json::Value) {
    let rest = frame.strip_prefix('<').expect("<PRI>");
    let (pri, rest) = rest.split_once('>').unwrap();
    // VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
    let parts: Vec<&str> = rest.splitn(8, ' ').collect();
    assert_eq!(parts.len(), 8, "{frame}");
    let json = serde_json::from_str(parts[7]).unwrap_or_else(|e| panic!("{e}: {frame}"));
    (pri.parse().unwrap(), parts[..7].to_vec(), json)
}

fn config(onprem: &Origin, cloud: &Origin, port: u16) -> String {
    format!(
        r#"{ADMIN}
[[listener]]
name = "web"
listen = "127.0.0.1:0"

[pools.onprem]
endpoints = {onprem}
response_timeout = "10s"

[pools.aws]
role = "cloud"
endpoints = {cloud}

[[route]]
name = "www"
primary = "onprem"
overflow = "aws"
spill_methods = ["GET"]

[spill]
mode = "static"
max_in_flight = 1
queue_timeout = "300ms"
session_cookie = "S"

[access_log]
sink = "syslog"
syslog = {{ address = "localhost:{port}", ca_file = "ca.pem", app_name = "sportchat-edge" }}
"#,
        onprem = endpoints(&[onprem]),
        cloud = endpoints(&[cloud]),
    )
}

fn cookie(session: &str) -> Vec<(&'static str, String)> {
    vec![("cookie", format!("S={session}"))]
}

#[tokio::test]
async fn proxied_spilled_pinned_and_shed_requests_arrive_as_rfc5424_frames() {
    let ca = TestCa::new("syslog test CA");
    let receiver = Receiver::start(&ca).await;
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let dir = tempfile::tempdir().unwrap();
    ca.write(dir.path(), "ca.pem");
    let sw = Spillway::start_in(dir, &config(&onprem, &cloud, receiver.port)).await;
    let url = |path: &str| sw.url("web", path);

    // Under the limit: proxied on-prem; a write that pins session "a".
    assert_eq!(request(Method::POST, &url("/proxied"), cookie("a"), b"x").await.unwrap().status, 200);
    // One slow request holds the only on-prem slot.
    let hold_url = url("/hold?delay_ms=1500");
    let hold = tokio::spawn(async move { request(Method::GET, &hold_url, cookie("b"), b"").await });
    eventually(Duration::from_secs(5), "the slot held", || async { onprem.in_flight() == 1 }).await;
    let spilled = request(Method::GET, &url("/spilled"), cookie("c"), b"").await.unwrap();
    assert_eq!(spilled.origin(), Some("cloud"));
    let pinned = request(Method::GET, &url("/pinned"), cookie("a"), b"").await.unwrap();
    let shed = request(Method::POST, &url("/shed"), cookie("c"), b"").await.unwrap();
    assert_eq!((pinned.status, shed.status), (503, 503), "over the ceiling they wait, then 503");
    hold.await.unwrap().unwrap();

    eventually(Duration::from_secs(10), "five frames", || async { receiver.frames().len() >= 5 }).await;
    let frames = receiver.frames();
    let find = |path: &str| {
        let frame = frames.iter().find(|f| f.contains(&format!("\"path\":\"{path}\""))).unwrap_or_else(|| {
            panic!("no frame for {path} in {frames:#?}");
        });
        parse(frame)
    };
    let expect = [
        ("/proxied", 134, "onprem", "primary", "under_limit", false, 200),
        ("/spilled", 134, "aws", "cloud", "over_hard_limit", false, 200),
        ("/pinned", 132, "onprem", "shed", "over_hard_limit", true, 503),
        ("/shed", 132, "onprem", "shed", "over_hard_limit", false, 503),
    ];
    for (path, pri, pool, decision, reason, is_pinned, status) in expect {
        let (got_pri, header, line) = find(path);
        assert_eq!(got_pri, pri, "local0 and the severity of {path}");
        assert_eq!(header[0], "1", "RFC 5424 VERSION");
        assert!(header[1].ends_with('Z') && header[1].len() == 24, "TIMESTAMP {}", header[1]);
        assert_eq!(&header[3..], ["sportchat-edge", &sw.pid().to_string(), "access", "-"]);
        assert_eq!(line["pool"], pool, "{path}: {line}");
        assert_eq!(line["decision"], decision, "{path}: {line}");
        assert_eq!(line["reason"], reason, "{path}: {line}");
        assert_eq!(line["pinned"], is_pinned, "{path}: {line}");
        assert_eq!(line["status"], status, "{path}: {line}");
        for key in [
            "time",
            "request_id",
            "client",
            "method",
            "host",
            "path",
            "bytes_in",
            "bytes_out",
            "duration_ms",
            "upstream_ms",
            "route",
            "endpoint",
            "retries",
            "completed",
        ] {
            assert!(line.get(key).is_some(), "{path}: {key} in {line}");
        }
        assert_eq!(line["route"], "www");
    }
    let (_, _, spilled_line) = find("/spilled");
    assert_eq!(spilled_line["endpoint"], cloud.endpoint());
    assert_eq!(spilled_line["request_id"], spilled.header("x-request-id").unwrap());
}
