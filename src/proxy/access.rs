//! What a request tells the access log, captured as it goes: the head's
//! facts when it arrives (clones of its `Uri` and header values, a clock
//! read), the gate's and the upstream's answers on the way, the status at
//! the end. With `[access_log]` off or absent nothing is captured and no
//! request id is made: one `Option` test per request.
//!
//! The request id (`X-Request-Id`) is a trusted peer's (`trusted_proxies`)
//! or ours; ours replaces whatever an untrusted client sent, goes into the
//! upstream head (`headers::write_request_headers`) and comes back to the
//! client either way.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{HeaderName, HOST, REFERER, USER_AGENT};
use http::{HeaderValue, Request, Response};

use super::body::Body;
use super::error::ProxyError;
use super::ConnInfo;
use crate::accesslog::entry::{IdText, Texts};
use crate::accesslog::{Entry, RequestId, Trace};
use crate::config::{AccessLogConfig, LogFormat};
use crate::upstream::{Endpoint, Pool};

pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// One request's access-log facts (`None` inside: not logged). Boxed from
/// the start: the capture moves with the request's future (an entry is
/// half a kilobyte; moving it by value cost a dozen copies a request).
pub(crate) struct Capture {
    entry: Option<Box<Entry>>,
    /// Drawn at the start (`sample`); a 5xx is logged either way.
    sampled: bool,
}

impl Capture {
    /// Takes the head's facts when the log is on.
    pub(crate) fn start<B: http_body::Body>(
        cfg: Option<&AccessLogConfig>,
        conn: &ConnInfo,
        req: &Request<B>,
        started: Instant,
    ) -> Capture {
        let Some(cfg) = cfg.filter(|c| c.enabled) else { return Capture { entry: None, sampled: false } };
        let h = req.headers();
        let combined = cfg.format == LogFormat::Combined;
        let peer = if conn.trusted { h.get(&X_REQUEST_ID) } else { None };
        let uri = req.uri();
        let path = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
        let header = |name| if combined { h.get(name).map(HeaderValue::as_bytes) } else { None };
        let texts = Texts::new([
            h.get(HOST).map(HeaderValue::as_bytes),
            Some(path.as_bytes()),
            header(REFERER),
            header(USER_AGENT),
        ]);
        let entry = Box::new(Entry {
            time: SystemTime::now(),
            started,
            duration: Duration::ZERO,
            client: conn.remote,
            method: req.method().clone(),
            version: req.version(),
            texts,
            include_query: cfg.include_query,
            status: 0,
            // Exact for a length-framed or empty body; the rest is counted
            // as it is forwarded (`upload_counter`).
            bytes_in: req.body().size_hint().exact(),
            upload: None,
            bytes_out: 0,
            trace: Trace::default(),
            request_id: RequestId::from_peer(peer),
            completed: false,
        });
        let sampled = cfg.sample >= 1.0 || fastrand::f64() < cfg.sample;
        Capture { entry: Some(entry), sampled }
    }

    /// The gate's and the upstream's facts go here, when logged.
    #[inline]
    pub(crate) fn trace(&mut self) -> Option<&mut Trace> {
        self.entry.as_mut().map(|e| &mut e.trace)
    }

    /// A counter for the bytes of a request body with no length, when this
    /// request is logged (one allocation, only for such bodies).
    pub(crate) fn upload_counter(&mut self) -> Option<Arc<AtomicU64>> {
        let entry = self.entry.as_mut().filter(|e| e.bytes_in.is_none())?;
        Some(entry.upload.get_or_insert_with(Arc::default).clone())
    }

    /// Our id, for the upstream head (a trusted peer's passes as it came).
    pub(crate) fn upstream_id(&self) -> Option<IdText> {
        let id = &self.entry.as_ref()?.request_id;
        let mut buf = [0; 32];
        matches!(id, RequestId::Ours(_)).then(|| {
            id.bytes(&mut buf);
            buf
        })
    }

    /// Answers the client with the id; the entry when this one is logged.
    pub(crate) fn finish(self, resp: &mut Response<Body>) -> Option<Box<Entry>> {
        let mut entry = self.entry?;
        resp.headers_mut().insert(X_REQUEST_ID.clone(), entry.request_id.header_value());
        entry.status = resp.status().as_u16();
        (self.sampled || entry.status >= 500).then_some(entry)
    }
}

/// The pool a request goes to, noted for the access log.
pub(crate) fn note_pool<'r>(trace: Option<&mut Trace>, pool: &'r Arc<Pool>) -> &'r Pool {
    if let Some(t) = trace {
        t.pool = Some(pool.clone());
    }
    pool
}

/// A request the gate refused for `pool`, noted for the access log.
pub(crate) fn shed(trace: Option<&mut Trace>, pool: &Arc<Pool>, err: ProxyError) -> ProxyError {
    if let Some(t) = trace {
        t.shed = true;
        t.pool = Some(pool.clone());
    }
    err
}

/// What `forward` takes for the access log: our request id for the head,
/// and where the endpoint, the retries and the upstream time go.
pub(crate) struct Upstream<'a> {
    pub(crate) id: Option<IdText>,
    pub(crate) trace: Option<&'a mut Trace>,
    /// Counts a request body with no length (`Capture::upload_counter`).
    pub(crate) upload: Option<Arc<AtomicU64>>,
}

impl Upstream<'_> {
    /// One more try (another endpoint, or a resend).
    #[inline]
    pub(crate) fn retried(&mut self) {
        if let Some(t) = self.trace.as_deref_mut() {
            t.retries = t.retries.saturating_add(1);
        }
    }

    /// The endpoint that answered, sent to at `sent` and answering at
    /// `now` (the time is worked out only when the log is on).
    #[inline]
    pub(crate) fn answered(&mut self, endpoint: &Arc<Endpoint>, sent: Instant, now: Instant) {
        if let Some(t) = self.trace.as_deref_mut() {
            t.endpoint = Some(endpoint.clone());
            t.upstream_time = Some(now.saturating_duration_since(sent));
        }
    }

    /// The endpoint that failed last.
    #[inline]
    pub(crate) fn failed(&mut self, endpoint: &Arc<Endpoint>) {
        if let Some(t) = self.trace.as_deref_mut() {
            t.endpoint = Some(endpoint.clone());
            t.upstream_time = None;
        }
    }
}
