//! A webhook receiver on loopback: every POST body is parsed as JSON and
//! kept, so a test can count the notifications the binary sent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

pub type Events = Arc<Mutex<Vec<serde_json::Value>>>;

/// Binds 127.0.0.1:0 and collects every event posted to it.
pub async fn receiver() -> (SocketAddr, Events) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let events: Events = Arc::default();
    let store = events.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let store = store.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        if let Ok(v) = serde_json::from_slice(&body) {
                            store.lock().unwrap().push(v);
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
            });
        }
    });
    (addr, events)
}

/// The events of `kind` (and `severity`, when given) received so far.
pub fn count(events: &Events, kind: &str, severity: Option<&str>) -> usize {
    let events = events.lock().unwrap();
    events.iter().filter(|e| e["kind"] == kind && severity.is_none_or(|s| e["severity"] == s)).count()
}
