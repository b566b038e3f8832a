//! The admin listener: `/healthz` (process alive), `/readyz` (listeners
//! bound, not draining), `/status` (JSON), `/metrics` (Prometheus),
//! `POST /reload`, `POST /dr/engage`, `POST /dr/failback` and
//! `POST /dr/drill` (the disaster-recovery calls, `app/dr.rs`,
//! `app/drill.rs`), and a live dashboard at `/` (a static page polling
//! `/status`). Loopback by default; a bearer token is required when a token
//! file is configured (and validation requires one off loopback). Without a
//! token, a reload must come from a loopback host as JSON (`guard.rs`), and
//! reloads asked here are rate-limited whoever asks. The accept loop and its
//! limits are in `listener.rs`.

mod guard;
mod listener;
mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::app::server::Server;
use crate::config::AdminSettings;
use crate::proxy::body::Body;
use crate::sync::lock;
use crate::telemetry::catalog;

use guard::{Head, Refusal, ReloadLimit};

/// The live dashboard: one static page that polls `/status` every second.
const DASHBOARD: &str = include_str!("dashboard.html");

pub(crate) struct Admin {
    server: Arc<Server>,
    metrics: PrometheusHandle,
    reloads: Mutex<ReloadLimit>,
}

impl Admin {
    pub(crate) fn new(server: Arc<Server>, metrics: PrometheusHandle, settings: &AdminSettings) -> Admin {
        let reloads = Mutex::new(ReloadLimit::new(settings.reload_burst, settings.reload_interval));
        Admin { server, metrics, reloads }
    }
}

/// The running admin listener.
pub(crate) struct AdminListener {
    pub(crate) local: SocketAddr,
    /// A duplicate of the listening socket, for a successor process.
    pub(crate) socket: socket2::Socket,
    /// Stops accepting (a successor took the socket over).
    pub(crate) accepting: tokio::task::AbortHandle,
}

/// Binds the admin listener (or adopts the one a predecessor process
/// handed over) and serves it until the process exits or hands it over.
pub(crate) async fn start(
    admin: Arc<Admin>,
    addr: SocketAddr,
    inherited: Option<std::net::TcpListener>,
) -> std::io::Result<AdminListener> {
    let listener = match inherited {
        Some(socket) => crate::proxy::listener::adopt(socket)?,
        None => crate::proxy::listener::bind(addr)?,
    };
    let local = listener.local_addr()?;
    let socket = socket2::SockRef::from(&listener).try_clone()?;
    let accepting = tokio::spawn(listener::accept_loop(admin, listener)).abort_handle();
    Ok(AdminListener { local, socket, accepting })
}

async fn handle(admin: Arc<Admin>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let settings = admin.server.data.runtime.load().config.admin.clone();
    let head = Head { method: req.method(), uri: req.uri(), headers: req.headers() };
    if let Err(refusal) = guard::admit(&head, settings.token.as_deref()) {
        return Ok(refused(refusal));
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
        (&Method::POST, "/reload") => reload(&admin, &settings).await,
        (&Method::POST, "/dr/engage") => dr(&admin, crate::burst::DrCommand::Engage),
        (&Method::POST, "/dr/failback") => dr(&admin, crate::burst::DrCommand::Failback),
        (&Method::POST, "/dr/drill") => drill(&admin).await,
        (
            _,
            "/healthz" | "/readyz" | "/status" | "/metrics" | "/reload" | "/dr/engage" | "/dr/failback" | "/dr/drill",
        ) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(resp)
}

async fn reload(admin: &Admin, settings: &AdminSettings) -> Response<Body> {
    let now = tokio::time::Instant::now().into_std();
    let admitted = lock(&admin.reloads).admit(settings.reload_burst, settings.reload_interval, now);
    if let Err(refusal) = admitted {
        return refused(refusal);
    }
    match admin.server.reload("admin").await {
        Ok(version) => json(StatusCode::OK, &serde_json::json!({ "ok": true, "version": version })),
        Err(e) => json(StatusCode::UNPROCESSABLE_ENTITY, &serde_json::json!({ "ok": false, "error": e.to_string() })),
    }
}

/// A disaster-recovery call: 200 with the state, 409 when refused.
fn dr(admin: &Admin, cmd: crate::burst::DrCommand) -> Response<Body> {
    match crate::app::dr::command(&admin.server, cmd, Instant::now()) {
        Ok(body) => json(StatusCode::OK, &body),
        Err(refusal) => {
            let mut body = serde_json::json!({ "ok": false, "reason": refusal.as_str(), "error": refusal.to_string() });
            if refusal == crate::burst::DrRefusal::NotHolder {
                body["holder"] = admin.server.control.coordination_status()["holder"].clone();
            }
            json(StatusCode::CONFLICT, &body)
        }
    }
}

/// `POST /dr/drill`: 202 once the drill runs (its report lands in
/// `/status` `dr.last_drill`), 409 without a group or while one runs.
async fn drill(admin: &Admin) -> Response<Body> {
    match crate::app::drill::start(&admin.server).await {
        Ok(()) => json(StatusCode::ACCEPTED, &serde_json::json!({ "ok": true, "started": true })),
        Err(e) => json(
            StatusCode::CONFLICT,
            &serde_json::json!({ "ok": false, "reason": e.reason(), "error": e.to_string() }),
        ),
    }
}

/// The one place a refusal becomes a response (and is counted).
fn refused(refusal: Refusal) -> Response<Body> {
    metrics::counter!(catalog::ADMIN_REFUSED, "reason" => refusal.reason()).increment(1);
    match refusal {
        Refusal::Unauthorized => text(StatusCode::UNAUTHORIZED, "admin token required\n"),
        Refusal::ForeignHost => text(
            StatusCode::FORBIDDEN,
            "without an admin token, a state-changing call must name a loopback Host (and no foreign Origin)\n",
        ),
        Refusal::SimpleRequest => text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "without an admin token, a state-changing call must be sent with Content-Type: application/json\n",
        ),
        Refusal::MalformedHost => text(StatusCode::BAD_REQUEST, "a request carries exactly one Host field\n"),
        Refusal::RateLimited(wait) => {
            let mut r = text(StatusCode::TOO_MANY_REQUESTS, "too many reloads; retry later\n");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(guard::retry_after_secs(wait)));
            r
        }
    }
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
