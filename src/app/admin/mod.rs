//! The admin listener: `/healthz` (process alive), `/readyz` (listeners
//! bound, not draining), `/status` (JSON), `/metrics` (Prometheus),
//! `POST /reload`, and a live dashboard at `/` (a static page polling `/status`). Loopback by default; a bearer token is required when a
//! token file is configured (and validation requires one off loopback).

mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::app::server::Server;
use crate::proxy::body::Body;

/// The live dashboard: one static page that polls `/status` every second.
const DASHBOARD: &str = include_str!("dashboard.html");

pub(crate) struct Admin {
    pub(crate) server: Arc<Server>,
    pub(crate) metrics: PrometheusHandle,
}

/// Binds the admin listener and serves it until the process exits.
pub(crate) async fn start(admin: Arc<Admin>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = crate::proxy::listener::bind(addr)?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let admin = admin.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(admin.clone(), req));
                let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tcp), svc).await;
            });
        }
    });
    Ok(local)
}

async fn handle(admin: Arc<Admin>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if !authorized(&admin, &req) {
        return Ok(text(StatusCode::UNAUTHORIZED, "admin token required\n"));
    }
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/" | "/dashboard") => {
            let mut r = Response::new(Body::full(DASHBOARD));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            r
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => {
            if admin.server.data.draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else {
                text(StatusCode::OK, "ready\n")
            }
        }
        (&Method::GET, "/status") => json(StatusCode::OK, &status::snapshot(&admin.server).await),
        (&Method::GET, "/metrics") => {
            let mut r = text(StatusCode::OK, &admin.metrics.render());
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            r
        }
        (&Method::POST, "/reload") => match admin.server.reload("admin").await {
            Ok(version) => json(StatusCode::OK, &serde_json::json!({ "ok": true, "version": version })),
            Err(e) => {
                json(StatusCode::UNPROCESSABLE_ENTITY, &serde_json::json!({ "ok": false, "error": e.to_string() }))
            }
        },
        (_, "/healthz" | "/readyz" | "/status" | "/metrics" | "/reload") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(resp)
}

fn authorized(admin: &Admin, req: &Request<Incoming>) -> bool {
    let rt = admin.server.data.runtime.load();
    let Some(token) = rt.config.admin.token.as_deref() else { return true };
    let got =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    got.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Body::full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::full(serde_json::to_vec_pretty(value).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
