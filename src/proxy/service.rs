//! The per-request path: route → pool → endpoint → forward → respond.
//!
//! A request loads the runtime snapshot once and finishes on it. Errors are
//! turned into responses in one place (`ProxyError::to_response`). The
//! listener's readiness path is answered here, before routing: one
//! comparison of the raw path, nothing allocated for any other request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{Method, Request, Response, Version};
use hyper::body::Incoming;

use super::DataPlane;
use crate::burst::{
    address_key, client_key, decide, retry_after, wait_rank, DrState, GateInputs, Outcome, Pinned, QueueReason,
    ShedReason, SpillDecision, StayReason, WritePins,
};
use crate::gate::{DrNow, InFlight, PoolGate};
use crate::proxy::body::Body;
use crate::request::method::{idempotent, is_known, is_write, session_cookie, writes};
use crate::request::{host, path};

use super::record::{give_up, note_resend, note_retry_connect, record_answer, record_passive};
use crate::runtime::{Route, Runtime};
use crate::telemetry::{self, catalog, error_chain, LogBudget};
use crate::upstream::client::{Abandon, Conn, RequestBody, Resend, SendFailure, Timeouts, UpstreamBody};
use crate::upstream::retry::{after_failure, Failure, Retry};
use crate::upstream::{Endpoint, Pool};

use super::access::{note_pool, shed, Capture, Upstream};
use super::error::ProxyError;
use super::headers::{self, ClientSide};
use super::pin::TokenCheck;
use super::{tunnel, ActiveRequest, ConnInfo};
use crate::accesslog::entry::IdText;
use crate::accesslog::Trace;

/// hyper's service entry point for one client request.
pub(crate) async fn serve(
    plane: Arc<DataPlane>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let version = req.version();
    let mut active = ActiveRequest::start(&conn, version);
    let method = req.method().clone();
    let rt = plane.runtime.load_full();
    let mut capture = Capture::start(rt.config.access_log.as_ref(), &conn, &req, started);
    let mut served = None;
    let result = match conn.readiness_path.as_deref() {
        Some(ready) if req.uri().path() == ready => {
            Ok(super::ready::respond(&method, super::ready::of(&rt, plane.draining())))
        }
        _ => handle(&rt, &plane, &conn, req, started, (&mut capture, &mut served)).await,
    };
    let mut resp = result.unwrap_or_else(|err| {
        static FAILED: LogBudget = LogBudget::new(20);
        if let Some(suppressed) = FAILED.admit(telemetry::secs(started)) {
            tracing::warn!(client = %conn.remote, %method, error = %err, status = err.status().as_u16(), suppressed, "request failed");
        }
        metrics::counter!(catalog::PROXY_ERRORS, "kind" => err.kind()).increment(1);
        err.to_response()
    });
    count(&rt, served, resp.status(), started);
    if let Some(entry) = capture.finish(&mut resp) {
        active.log(entry);
    }
    // hyper never polls a body these answers cannot have.
    let status = resp.status();
    if method == Method::HEAD || status.is_informational() || status == 204 || status == 304 {
        active.finish();
    }
    // Draining (a shutdown, or an upgrade's predecessor): an HTTP/1.x
    // client opens its next connection elsewhere instead of finding this
    // one closed under its next request. Not on a 101: the tunnel needs it.
    if plane.closing() && version <= http::Version::HTTP_11 && status != http::StatusCode::SWITCHING_PROTOCOLS {
        resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    // In place: moving the whole response costs more than the attach.
    resp.body_mut().attach_request(active);
    Ok(resp)
}

/// `spillway_requests_total` and the duration histogram, through the
/// handles of the route and the pool (`[primary, overflow]` index) that served.
fn count(rt: &Runtime, served: Option<(&Route, usize)>, status: http::StatusCode, started: Instant) {
    match served {
        Some((route, side)) => {
            route.requests[side].count(status);
            let pool =
                if side == 0 { &route.primary } else { route.overflow.as_ref().map_or(&route.primary, |o| &o.0) };
            pool.metrics.duration.record(started.elapsed());
        }
        None => rt.unrouted.count(status),
    }
}

async fn handle<'rt>(
    rt: &'rt Runtime,
    plane: &DataPlane,
    conn: &Arc<ConnInfo>,
    mut req: Request<Incoming>,
    started: Instant,
    (capture, served): (&mut Capture, &mut Option<(&'rt Route, usize)>),
) -> Result<Response<Body>, ProxyError> {
    // hyper marks every request that asked to upgrade (an HTTP/1.1
    // `Upgrade` header, or CONNECT): the header checks run for those only.
    let asked = req.extensions().get::<hyper::upgrade::OnUpgrade>().is_some();
    let on_upgrade = match asked && headers::is_websocket_upgrade(req.version(), req.method(), req.headers()) {
        true => Some(upgrade(rt, plane, conn, &mut req)?),
        false => None,
    };
    let authority = host::authority(req.version(), req.uri(), req.headers().get_all(http::header::HOST))?;
    let path = path::normalize(req.uri().path());
    let Some(route) = rt.route(authority, &path) else {
        return Err(ProxyError::NoRoute { host: authority.unwrap_or("").to_string(), path: path.into_owned() });
    };
    if let Some(t) = capture.trace() {
        t.route = Some(route.name.clone());
    }
    *served = Some((route, 0));
    let (pool, guard, ready, pin, pin_header) =
        gate(rt, plane, route, conn, &req, &path, started, capture.trace()).await?;
    if !std::ptr::eq(pool, &*route.primary) {
        *served = Some((route, 1));
    }
    let id = capture.upstream_id();
    let upload = capture.upload_counter();
    let log = Upstream { id, upload, trace: capture.trace() };
    forward(pool, req, conn, on_upgrade, guard, ready, (pin, pin_header), log).await
}

/// A WebSocket handshake takes a tunnel permit (`max_tunnels`) before it
/// is forwarded: over the cap it gets 503 at once.
fn upgrade(
    rt: &Runtime,
    plane: &DataPlane,
    conn: &Arc<ConnInfo>,
    req: &mut Request<Incoming>,
) -> Result<Box<tunnel::Upgrade>, ProxyError> {
    let Ok(permit) = conn.tunnels.clone().try_acquire_owned() else {
        return Err(ProxyError::Overloaded { reason: "max_tunnels", retry_after: std::time::Duration::from_secs(1) });
    };
    let limits = tunnel::Limits {
        idle: conn.tunnel_idle_timeout,
        send: conn.send_timeout,
        drain: plane.drain.subscribe(),
        grace: rt.config.runtime.drain_timeout,
    };
    // Boxed: the rare case should not grow every request's future.
    Ok(Box::new(tunnel::Upgrade { on: hyper::upgrade::on(req), conn: conn.clone(), permit, limits }))
}

/// What the gate hands the forward loop: the pool, the in-flight guard,
/// when the request left the gate (later than `started` if it queued), the
/// pin a write makes once answered, and the pin header for the origin.
type Gated<'r> = (&'r Pool, InFlight, Instant, Option<PinOnSuccess<'r>>, PinHeader<'r>);

/// `forward_header`'s name and, when a token pins, until when (Unix ms).
type PinHeader<'r> = Option<(&'r http::HeaderName, Option<u64>)>;

/// Asks the spill policy where this request goes and counts it in-flight
/// there. A write comes back with the pin it makes once the upstream has
/// answered it without an error.
#[allow(clippy::too_many_arguments)]
async fn gate<'r>(
    rt: &'r Runtime,
    plane: &'r DataPlane,
    route: &'r Route,
    conn: &ConnInfo,
    req: &Request<Incoming>,
    path: &str,
    started: Instant,
    mut trace: Option<&mut Trace>,
) -> Result<Gated<'r>, ProxyError> {
    let spill = &rt.config.spill;
    let ip = conn.remote.ip();
    let key = || client_key(session_cookie(req, spill.session_cookie.as_deref()), ip);
    let pins = &plane.gates.pins;
    let write = writes(req);
    let pin = write.then(|| PinOnSuccess {
        pins,
        key: key(),
        address: address_key(ip),
        cookie: rt.config.pin_token.as_ref().map(|_| (&*rt.config, conn.tls)),
    });
    let token = TokenCheck::new(&rt.config, req, || route.overflow.as_ref().and_then(|(_, g)| g.pin_lag()));
    let gate = &route.primary_gate;
    let in_flight = gate.signals.begin();
    let limit = gate.limit();
    let primary_healthy = route.primary.has_available(started);
    let dr = plane.gates.dr.now_for(write, started);
    let mut was_pinned = false;
    let decision =
        if in_flight <= limit.min(spill.max_in_flight) && primary_healthy && dr == DrNow::CLEAR && gate.queued() == 0 {
            SpillDecision::Primary(StayReason::UnderLimit)
        } else {
            // A token only ever keeps a read on-prem: not asked where a pin sends it to the cloud.
            let pinned = |tokens_count: bool| {
                let by_token = tokens_count && token.as_ref().is_some_and(TokenCheck::pins);
                was_pinned = by_token || pins.is_client_pinned(key(), address_key(ip), started);
                was_pinned
            };
            let load = Load { in_flight, limit, primary_healthy, dr, write, now: started };
            let d = over_limit(route, spill, req, path, pinned, load);
            if let Some(t) = trace.as_deref_mut() {
                t.pinned = was_pinned;
            }
            d
        };
    route.decisions.count(decision);
    if let Some(t) = trace.as_deref_mut() {
        t.decision = Some(decision);
    }
    let header = token.as_ref().and_then(TokenCheck::forward);
    match decision {
        SpillDecision::Primary(_) => Ok((note_pool(trace, &route.primary), gate.adopt(started), started, pin, header)),
        SpillDecision::Cloud(_) => {
            gate.leave();
            let (pool, cloud_gate) =
                route.overflow.as_ref().ok_or_else(|| ProxyError::NoHealthyEndpoint { pool: "overflow".into() })?;
            Ok((note_pool(trace, pool), cloud_gate.enter(started), started, pin, header))
        }
        SpillDecision::Queue(reason) => {
            gate.leave();
            // Only a cloud that is merely full may serve the waiter too.
            let cloud = route.overflow.as_ref().filter(|_| reason == QueueReason::CloudFull);
            let method = req.method();
            let rank = wait_rank(route.config.priority, is_write(method), is_known(method), was_pinned);
            let hard = reason.waits_to_hard_cap();
            let waited = tokio::select! {
                waited = PoolGate::wait(gate, cloud.map(|(_, g)| g), rank, hard, spill) => waited,
                // Dropping the wait gives its place (or a slot granted just then) back.
                () = conn.client_gone() => Err(ShedReason::ClientGone),
            };
            match waited {
                // DR moved while it waited (or, for a write, writes are
                // held now): the slot it got, on-prem or in the cloud, was
                // granted under a state that no longer holds (a write
                // there could reach the demoted database). The slot goes
                // back; the client retries.
                Ok((guard, _)) if dr_moved(dr, plane.gates.dr.now_for(write, Instant::now()), write) => {
                    drop(guard);
                    let retry_after = std::time::Duration::from_secs(1);
                    Err(shed(trace, &route.primary, ProxyError::Overloaded { reason: "dr_changed", retry_after }))
                }
                Ok((guard, false)) => Ok((note_pool(trace, &route.primary), guard, Instant::now(), pin, header)),
                Ok((guard, true)) => {
                    let pool = cloud.map_or(&route.primary, |(p, _)| p);
                    Ok((note_pool(trace, pool), guard, Instant::now(), pin, header))
                }
                Err(why) => {
                    // A client that left is not demand the pools could not serve.
                    if why != ShedReason::ClientGone {
                        gate.count_shed();
                    }
                    route.shed[why as usize].increment(1);
                    let drain = gate.drain_rps() + cloud.map_or(0.0, |(_, g)| g.drain_rps());
                    let retry_after = retry_after(gate.queued(), drain);
                    Err(shed(trace, &route.primary, ProxyError::Overloaded { reason: why.as_str(), retry_after }))
                }
            }
        }
        SpillDecision::ReadOnly => {
            gate.leave();
            let dr = &rt.config.dr;
            Err(ProxyError::ReadOnly { body: dr.read_only_body.clone(), retry_after: dr.retry_after })
        }
    }
}

/// The read-after-write pin of a write, made only once the upstream
/// answered it with a 1xx–3xx status: a write that failed changed nothing
/// a replica could lag behind, and a client cannot pin itself with writes
/// the application refuses.
struct PinOnSuccess<'a> {
    pins: &'a WritePins,
    key: u64,
    address: u64,
    /// With `[spill.pin_token]`: the config and whether the client came
    /// over TLS, for the signed cookie.
    cookie: Option<(&'a crate::config::Config, bool)>,
}

impl PinOnSuccess<'_> {
    /// Pins the client in this process and returns the pin cookie to set.
    fn after(self, status: http::StatusCode, now: Instant) -> Option<http::HeaderValue> {
        if status.as_u16() >= 400 {
            return None;
        }
        if self.pins.pin_client(self.key, self.address, now) == Pinned::Address {
            metrics::counter!(catalog::ADDRESS_PINS).increment(1);
        }
        let (config, tls) = self.cookie?;
        super::pin::set_cookie(config, tls, SystemTime::now())
    }
}

/// Whether the DR state a waiter was queued under no longer holds for it.
fn dr_moved(queued: DrNow, now: DrNow, write: bool) -> bool {
    now.state != queued.state || (write && now.writes_held && !queued.writes_held)
}

/// The primary pool's state as this request found it.
struct Load {
    in_flight: u32,
    limit: u32,
    primary_healthy: bool,
    /// The site's DR state and whether writes are held (one atomic load).
    dr: DrNow,
    /// The request writes, by its method or a method-override field.
    write: bool,
    now: Instant,
}

/// The spill policy's answer for a request over the primary's limit (or
/// with the primary down); `pinned` is asked only when it can matter.
#[inline]
fn over_limit(
    route: &Route,
    spill: &crate::config::SpillConfig,
    req: &Request<Incoming>,
    path: &str,
    pinned: impl FnOnce(bool) -> bool,
    load: Load,
) -> SpillDecision {
    // A read whose override field names a write may not spill as a read.
    let method_may_spill = route.config.spill_methods.contains(req.method()) && (is_write(req.method()) || !load.write);
    let path_never_spills = route.never_spills(path, spill.never_spill_ignore_case);
    // In failback_pending a pin keeps a reader with its writes, in the cloud:
    // the in-process pins only there (a token never sends a read away).
    let failback = load.dr.state == DrState::FailbackPending;
    let pinned = (failback || method_may_spill && !path_never_spills) && pinned(!failback);
    // Over its limit or warm-capacity cap the cloud takes no spill (the policy ignores that in DR).
    // Only waiters this request would not be served before hold it back.
    let rank = wait_rank(route.config.priority, is_write(req.method()), is_known(req.method()), pinned);
    let (queue_ahead, hard_queue_ahead) = route.primary_gate.queued_ahead_of(rank);
    let (cloud_healthy, cloud_room, replica_lag_ok) = route
        .overflow
        .as_ref()
        .map_or((false, false, false), |(p, g)| (p.has_available(load.now), g.has_spill_room(), g.replica_lag_ok()));
    decide(&GateInputs {
        phase: route.primary_gate.phase(),
        in_flight: load.in_flight,
        limit: load.limit,
        max_in_flight: spill.max_in_flight,
        method_may_spill,
        path_never_spills,
        pinned,
        has_overflow: route.overflow.is_some(),
        cloud_healthy,
        replica_lag_ok,
        cloud_room,
        queue_ahead,
        hard_queue_ahead,
        primary_healthy: load.primary_healthy,
        dr: load.dr.state,
        writes_held: load.dr.writes_held,
        write: load.write,
        method_known: is_known(req.method()),
        shed_when_cloud_unavailable: spill.shed_when_cloud_unavailable,
    })
}

/// Sends the request to an endpoint of `pool`, again when
/// `retry::after_failure` says so: a connect failure of an idempotent
/// request (once, on another endpoint), and a request the client hands back
/// (on a fresh connection to the same endpoint).
#[allow(clippy::too_many_arguments)]
async fn forward(
    pool: &Pool,
    req: Request<Incoming>,
    conn: &ConnInfo,
    on_upgrade: Option<Box<tunnel::Upgrade>>,
    guard: InFlight,
    arrived: Instant,
    (pin, pin_header): (Option<PinOnSuccess<'_>>, PinHeader<'_>),
    mut log: Upstream<'_>,
) -> Result<Response<Body>, ProxyError> {
    let client_version = req.version();
    let upgrade = on_upgrade.is_some();
    let idempotent = !upgrade && idempotent(req.method());
    let timeouts = Timeouts { upload: conn.body_timeout, response: pool.config.response_timeout };
    let mut out = Outgoing::Request(req.map(|body| match log.upload.take() {
        Some(seen) => RequestBody::Counted(body, seen),
        None => RequestBody::Client(body),
    }));
    let mut tries = Tries::default();
    // The clock is read when something may have taken time: the first try
    // starts from the request's arrival (microseconds ago).
    let mut now = arrived;
    loop {
        let Some((endpoint, fresh)) = tries.next(pool, now) else {
            guard.record(Outcome::Failed, now);
            return Err(no_endpoint(pool, tries.moved_from));
        };
        let upstream = match checkout(pool, &endpoint, fresh, now).await {
            Ok(c) => c,
            Err(detail) => {
                tries.after_connect_failure(pool, endpoint, detail, idempotent, &guard, now)?;
                log.retried();
                now = Instant::now();
                continue;
            }
        };
        // Latency is measured from the send; a new connection's connect time is not part of it.
        let started = if upstream.reused {
            pool.metrics.reused.increment(1);
            now
        } else {
            let connected = Instant::now();
            pool.metrics.new_connection.increment(1);
            pool.metrics.connect.record(connected - now);
            connected
        };
        let pending = endpoint.start();
        // Cancelled from here on, the exchange finishes in the background
        // with the slot (the origin works on it either way): `Abandon`.
        let sent = match out {
            Outgoing::Resend(back) => upstream.resend(back, timeouts, Some(&guard)).await,
            Outgoing::Request(req) => {
                let headers = hop_headers(conn, client_version, upgrade, log.id, pin_header);
                upstream.send(req, timeouts, headers, Some(&guard)).await
            }
        };
        let now = Instant::now();
        let failure = match sent {
            Ok(mut resp) => {
                log.answered(&endpoint, started, now);
                record_answer(pool, &endpoint, pending, started, resp.status(), &guard, now);
                if let Some(cookie) = pin.and_then(|pin| pin.after(resp.status(), now)) {
                    resp.headers_mut().append(http::header::SET_COOKIE, cookie);
                }
                return respond(resp, pool, &endpoint, client_version, on_upgrade, guard);
            }
            Err(failure) => failure,
        };
        match (after_failure(failure.kind(), idempotent, tries.moved_from.is_some()), failure) {
            // The upstream closed this pooled connection just now (the
            // keep-alive race; the client hands a request back only then).
            (Retry::ResendFresh, SendFailure::NotSent(back, e) | SendFailure::NoResponse(back, e)) => {
                note_resend(pool, &endpoint, &e);
                drop(pending);
                log.retried();
                out = Outgoing::Resend(back);
                tries.resend_to = Some(endpoint.clone());
            }
            (_, failure) => {
                log.failed(&endpoint);
                return Err(give_up(pool, &endpoint, failure, pending, &guard, now));
            }
        }
    }
}

/// A request cancelled at the upstream hands its slot to the exchange that
/// finishes in the background.
impl Abandon for InFlight {
    fn hand_over(&self) -> Box<dyn Send> {
        Box::new(self.detach())
    }
}

/// What goes to the upstream: the client's request, or the encoded head of
/// one the client handed back.
// Lives in the request's own future; boxing the request would allocate per request.
#[allow(clippy::large_enum_variant)]
enum Outgoing {
    Request(Request<RequestBody>),
    Resend(Resend),
}

/// The retries of one request so far.
#[derive(Default)]
struct Tries {
    /// The endpoint a connect failed on, and why: avoided by the next pick,
    /// and the error if no other endpoint is left.
    moved_from: Option<(Arc<Endpoint>, String)>,
    /// The endpoint to send the request again to, on a fresh connection.
    resend_to: Option<Arc<Endpoint>>,
}

impl Tries {
    /// The endpoint for the next try, and whether it needs a new connection.
    fn next(&mut self, pool: &Pool, now: Instant) -> Option<(Arc<Endpoint>, bool)> {
        if let Some(e) = self.resend_to.take() {
            return Some((e, true));
        }
        pool.pick(now, self.moved_from.as_ref().map(|(e, _)| &**e)).map(|e| (e.clone(), false))
    }

    /// A connect failure: moves on to another endpoint (Ok) or is the answer.
    fn after_connect_failure(
        &mut self,
        pool: &Pool,
        endpoint: Arc<Endpoint>,
        detail: String,
        idempotent: bool,
        guard: &InFlight,
        now: Instant,
    ) -> Result<(), ProxyError> {
        if after_failure(Failure::Connect, idempotent, self.moved_from.is_some()) == Retry::TryAnotherEndpoint {
            note_retry_connect(pool, &endpoint, &detail, now);
            self.moved_from = Some((endpoint, detail));
            return Ok(());
        }
        guard.record(Outcome::Failed, Instant::now());
        Err(ProxyError::Connect { pool: pool.name.clone(), endpoint: endpoint.addr.clone(), detail })
    }
}

/// A retry that finds no other endpoint reports the connect failure it was
/// retrying (502), not "no healthy endpoint" (503).
fn no_endpoint(pool: &Pool, tried: Option<(Arc<Endpoint>, String)>) -> ProxyError {
    match tried {
        Some((ep, detail)) => ProxyError::Connect { pool: pool.name.clone(), endpoint: ep.addr.clone(), detail },
        None => ProxyError::NoHealthyEndpoint { pool: pool.name.clone() },
    }
}

/// A connection to `endpoint` (a new one when resending); a failure counts
/// against the endpoint and comes back as its description.
async fn checkout(pool: &Pool, endpoint: &Arc<Endpoint>, fresh: bool, now: Instant) -> Result<Conn, String> {
    let checkout =
        // A fresh connection's future is boxed, as in `Transport::checkout`
        // (the rare path; inline it would size every request's future).
        if fresh { Box::pin(pool.transport.connect(endpoint)).await } else { pool.transport.checkout(endpoint, now).await };
    checkout.map_err(|e| {
        record_passive(pool, endpoint, false, Instant::now());
        error_chain(&e)
    })
}

/// Writes this hop's request headers into the head.
fn hop_headers<'a>(
    conn: &'a ConnInfo,
    client_version: Version,
    upgrade: bool,
    request_id: Option<IdText>,
    pin_header: PinHeader<'a>,
) -> impl FnOnce(&http::request::Parts, &mut bytes::BytesMut) + 'a {
    move |parts, out| {
        let client = ClientSide {
            forwarded_for: &conn.forwarded_for,
            trusted: conn.trusted,
            tls: conn.tls,
            version: client_version,
            // `handle` checked the host already.
            authority: host::target_authority(&parts.uri),
            request_id: request_id.as_ref().map(|id| &id[..]),
            pin_header,
        };
        headers::write_request_headers(out, &parts.headers, &client, upgrade);
    }
}

/// The upstream's response rewritten for the client; the body carries the
/// in-flight guard and the connection until its last byte.
fn respond(
    resp: Response<UpstreamBody>,
    pool: &Pool,
    endpoint: &Endpoint,
    client_version: Version,
    on_upgrade: Option<Box<tunnel::Upgrade>>,
    guard: InFlight,
) -> Result<Response<Body>, ProxyError> {
    let switching = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    if switching && !headers::switches_to_websocket(resp.headers()) {
        return Err(ProxyError::Upstream {
            pool: pool.name.clone(),
            endpoint: endpoint.addr.clone(),
            detail: "101 Switching Protocols to something other than websocket".into(),
        });
    }
    let (mut parts, body) = resp.into_parts();
    // An upgraded connection leaves the pool's in-flight count at once (a
    // long-lived WebSocket is not load on the web tier) and is never pooled.
    let body = match (switching, on_upgrade) {
        (true, Some(client_upgrade)) => {
            if let Some(upstream) = body.into_upgraded() {
                tunnel::spawn(*client_upgrade, upstream, pool.name.clone());
            }
            Body::empty()
        }
        // A 101 to a request that asked for no upgrade: the client could
        // not follow it.
        (true, None) => {
            return Err(ProxyError::Upstream {
                pool: pool.name.clone(),
                endpoint: endpoint.addr.clone(),
                detail: "101 Switching Protocols to a request that asked for no upgrade".into(),
            })
        }
        (false, _) => Body::upstream(body).with_guard(guard),
    };
    headers::prepare_response(&mut parts.headers, client_version, switching);
    parts.version = client_version;
    Ok(Response::from_parts(parts, body))
}
