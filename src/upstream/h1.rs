//! HTTP/1.1 wire format for the upstream hop, without I/O: the request head
//! written in one pass, the response head parsed with `httparse` into
//! shared slices of the read buffer (no copy per header), the body framing
//! of RFC 9112 §6.3, the chunk framing of request bodies, the check of a
//! request's transfer codings before it is sent, and the one rule for
//! which fields may travel as trailers (`may_trail`), both ways. Response
//! bodies are decoded in `decode.rs`.
//!
//! Everything here is pure: `client/` owns the sockets and calls in.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// Most headers accepted in an upstream response (as hyper's client).
pub(crate) const MAX_RESPONSE_HEADERS: usize = 100;
/// Largest upstream response head; a bigger one is a bad response (502).
pub(crate) const MAX_RESPONSE_HEAD: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum WireError {
    #[error("malformed response head: {0}")]
    Head(&'static str),
    #[error("response head larger than {MAX_RESPONSE_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid Content-Length")]
    ContentLength,
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
}

/// Why a request's `Transfer-Encoding` cannot be forwarded as it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum RequestCodingError {
    /// A coding other than `chunked` (`gzip, chunked`): the upstream hop
    /// re-frames the body as plain chunked and would lose it (RFC 9112 §6.1: 501).
    #[error("transfer coding {0:?} is not supported")]
    Unsupported(String),
    /// `chunked` more than once: the framing is malformed (400).
    #[error("chunked transfer coding applied more than once")]
    ChunkedTwice,
}

/// How the request body is framed on the upstream hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestFraming {
    /// No body: nothing follows the head.
    Empty,
    /// Exactly this many bytes follow (the client's `Content-Length`).
    Length(u64),
    /// Length unknown (client sent chunked, or HTTP/2 without a length).
    Chunked,
}

/// Writes `METHOD target HTTP/1.1`, the header lines `write_headers` adds
/// (which must leave out `Content-Length` and `Transfer-Encoding`), and the
/// framing header for `framing`.
pub(crate) fn encode_request_head(
    out: &mut BytesMut,
    method: &Method,
    target: &str,
    framing: RequestFraming,
    write_headers: impl FnOnce(&mut BytesMut),
) {
    out.reserve(512);
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    write_headers(out);
    match framing {
        RequestFraming::Length(n) => {
            let mut buf = itoa::Buffer::new();
            write_header(out, b"content-length", buf.format(n).as_bytes());
        }
        RequestFraming::Chunked => write_header(out, b"transfer-encoding", b"chunked"),
        // A POST or PUT without a body says so, or some servers wait for one.
        RequestFraming::Empty if body_expected(method) => write_header(out, b"content-length", b"0"),
        RequestFraming::Empty => {}
    }
    out.put_slice(b"\r\n");
}

/// One header line.
#[inline]
pub(crate) fn write_header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Every header as it is, but the hop-by-hop ones and the body framing
/// (which `encode_request_head` writes). For requests Spillway makes
/// itself (health probes); proxied ones go through `proxy::headers`.
pub(crate) fn write_plain_headers(out: &mut BytesMut, headers: &HeaderMap) {
    for (name, value) in headers {
        if *name != header::CONTENT_LENGTH && !is_hop_by_hop(name) {
            write_header(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
}

/// Checks a request's transfer codings before it is sent: only `chunked`,
/// once, can be forwarded (hyper has already refused a list that does not
/// end in `chunked`, and any on HTTP/1.0, with 400). Every
/// `Transfer-Encoding` field counts, in order.
pub(crate) fn check_request_codings(headers: &HeaderMap) -> Result<(), RequestCodingError> {
    let mut chunked = 0;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        for coding in value.as_bytes().split(|&b| b == b',') {
            let name = trim_ows(coding.split(|&b| b == b';').next().unwrap_or_default());
            if name.is_empty() {
                continue;
            }
            if !name.eq_ignore_ascii_case(b"chunked") {
                let shown = String::from_utf8_lossy(&name[..name.len().min(32)]).to_ascii_lowercase();
                return Err(RequestCodingError::Unsupported(shown));
            }
            chunked += 1;
        }
    }
    if chunked > 1 {
        return Err(RequestCodingError::ChunkedTwice);
    }
    Ok(())
}

fn body_expected(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// The prefix of one chunk of `len` bytes: `<hex len>\r\n`.
pub(crate) fn chunk_prefix(len: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(18);
    b.put_slice(format!("{len:x}\r\n").as_bytes());
    b.freeze()
}

/// The end of a chunked body, with the trailers `may_trail` allows.
pub(crate) fn chunked_end(trailers: Option<&HeaderMap>) -> Bytes {
    match trailers {
        None => Bytes::from_static(b"0\r\n\r\n"),
        Some(t) => {
            let mut b = BytesMut::with_capacity(64);
            b.put_slice(b"0\r\n");
            for (name, value) in t.iter().filter(|(name, _)| may_trail(name)) {
                b.put_slice(name.as_str().as_bytes());
                b.put_slice(b": ");
                b.put_slice(value.as_bytes());
                b.put_slice(b"\r\n");
            }
            b.put_slice(b"\r\n");
            b.freeze()
        }
    }
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) framing: ResponseFraming,
    /// The connection may carry another request after this response.
    pub(crate) keep_alive: bool,
}

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseFraming {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
    /// `101 Switching Protocols`: the bytes that follow belong to the new protocol.
    Upgrade,
}

/// Parses a response head from the front of `buf`. `Ok(None)`: incomplete,
/// read more. On success the head's bytes are taken out of `buf` and the
/// header values point into them.
///
/// The headers come back ready for the next hop: hop-by-hop headers
/// (RFC 9110 §7.6.1: `Connection` and the names it lists, `Keep-Alive`,
/// `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade` except on a 101,
/// `Proxy-*`) are read for framing and keep-alive, then left out. One pass
/// over the raw headers finds the framing; the map is built once.
pub(crate) fn parse_response_head(buf: &mut BytesMut, method: &Method) -> Result<Option<ResponseHead>, WireError> {
    let mut raw = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut raw) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => return Err(WireError::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(WireError::Head("too many headers")),
        Err(_) => return Err(WireError::Head("invalid syntax")),
    };
    if len > MAX_RESPONSE_HEAD {
        return Err(WireError::HeadTooLarge);
    }
    let code = resp.code.ok_or(WireError::Head("no status"))?;
    let status = StatusCode::from_u16(code).map_err(|_| WireError::Head("invalid status code"))?;
    let version = if resp.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;

    // One pass: what framing needs, and where the forwarded headers are (the
    // head is frozen below and values become slices of it).
    let base = buf.as_ptr() as usize;
    const _: () = assert!(MAX_RESPONSE_HEAD <= 1 << 16);
    let mut facts = Facts::default();
    // u16: the head is at most MAX_RESPONSE_HEAD (64 KiB) long; the array is
    // zeroed per response, so it is kept small.
    let mut spans = [(0u16, 0u16, 0u16, 0u16); MAX_RESPONSE_HEADERS];
    let mut kept = 0;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if facts.observe(name, h.value)? && !(switching && name.eq_ignore_ascii_case(b"upgrade")) {
            continue;
        }
        let n = name.as_ptr() as usize - base;
        let v = h.value.as_ptr() as usize - base;
        spans[kept] = (n as u16, (n + name.len()) as u16, v as u16, (v + h.value.len()) as u16);
        kept += 1;
    }
    let head = buf.split_to(len).freeze();
    // Room for what the proxy adds (`Via`, `X-Request-Id`) without a rehash.
    let mut headers = HeaderMap::with_capacity(kept + 2);
    for &(ns, ne, vs, ve) in &spans[..kept] {
        let raw_name = &head[ns as usize..ne as usize];
        // The rare `Connection: x-foo`: that header is hop-by-hop too.
        if !facts.connection_named.is_empty()
            && facts.connection_named.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(raw_name))
        {
            continue;
        }
        // With Transfer-Encoding the length is not the body's: an
        // intermediary must not pass it on (RFC 9112 §6.3), or the client
        // would frame the re-encoded body by it. A list of lengths
        // (`5, 5`, or the field twice) goes on as one value, below.
        if (facts.transfer_encoding || facts.length_is_list()) && raw_name.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        let name = HeaderName::from_bytes(raw_name).map_err(|_| WireError::Head("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize))
            .map_err(|_| WireError::Head("invalid header value"))?;
        headers.append(name, value);
    }
    if let (false, true, Some(n)) = (facts.transfer_encoding, facts.length_is_list(), facts.content_length) {
        headers.append(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    // RFC 9112 §6.1: an HTTP/1.0 message cannot be chunked; whatever framing
    // the origin meant, the client would get raw chunk framing as the body.
    if facts.transfer_encoding && version == Version::HTTP_10 {
        return Err(WireError::Head("Transfer-Encoding in an HTTP/1.0 response"));
    }
    // Spillway decodes only `chunked`; passed on without the other coding,
    // the client would take gzip bytes for the content itself.
    if facts.other_coding {
        return Err(WireError::Head("a response transfer coding other than chunked"));
    }
    let (framing, reusable) = facts.framing(status, version, method);
    let keep_alive = reusable
        && match version {
            Version::HTTP_10 => facts.connection_keep_alive,
            _ => !facts.connection_close,
        };
    Ok(Some(ResponseHead { status, version, headers, framing, keep_alive }))
}

/// What the framing and keep-alive decisions need from a response head.
#[derive(Default)]
struct Facts {
    transfer_encoding: bool,
    chunked_last: bool,
    /// A transfer coding other than `chunked` (gzip, deflate, …) was named.
    other_coding: bool,
    content_length: Option<u64>,
    /// Lengths seen, over every `Content-Length` field and list element.
    lengths: u32,
    connection_close: bool,
    connection_keep_alive: bool,
    /// Lower-cased header names listed in `Connection` (rare).
    connection_named: Vec<String>,
}

impl Facts {
    /// Notes a header; true when it is hop-by-hop (not forwarded).
    fn observe(&mut self, name: &[u8], value: &[u8]) -> Result<bool, WireError> {
        // Dispatch on length first: most names are not hop-by-hop.
        match name.len() {
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in value.split(|&b| b == b',') {
                    let token = trim_ows(token);
                    if token.eq_ignore_ascii_case(b"close") {
                        self.connection_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        self.connection_keep_alive = true;
                    } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"upgrade") {
                        self.connection_named.push(String::from_utf8_lossy(token).to_ascii_lowercase());
                    }
                }
                Ok(true)
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // A list of identical values is allowed; different ones are not.
                for part in value.split(|&b| b == b',') {
                    let part = trim_ows(part);
                    if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                        return Err(WireError::ContentLength);
                    }
                    let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                    if self.content_length.is_some_and(|l| l != n) {
                        return Err(WireError::ContentLength);
                    }
                    self.content_length = Some(n);
                    self.lengths += 1;
                }
                Ok(false)
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                self.transfer_encoding = true;
                let last = value.rsplit(|&b| b == b',').next().map(trim_ows).unwrap_or_default();
                self.chunked_last = last.eq_ignore_ascii_case(b"chunked");
                self.other_coding |= value
                    .split(|&b| b == b',')
                    .map(trim_ows)
                    .any(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"chunked"));
                Ok(true)
            }
            2 if name.eq_ignore_ascii_case(b"te") => Ok(true),
            7 if name.eq_ignore_ascii_case(b"trailer") || name.eq_ignore_ascii_case(b"upgrade") => Ok(true),
            10 if name.eq_ignore_ascii_case(b"keep-alive") => Ok(true),
            n if n >= 6 && name[..6].eq_ignore_ascii_case(b"proxy-") => Ok(true),
            _ => Ok(false),
        }
    }

    /// The `Content-Length` came as several (equal) values.
    fn length_is_list(&self) -> bool {
        self.lengths > 1
    }

    /// The head announces a body (a length above 0, or a transfer coding).
    fn declares_body(&self) -> bool {
        self.transfer_encoding || self.content_length.is_some_and(|n| n > 0)
    }

    /// The body framing (RFC 9112 §6.3) and whether it allows reuse at all.
    fn framing(&self, status: StatusCode, version: Version, method: &Method) -> (ResponseFraming, bool) {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return (ResponseFraming::Upgrade, false);
        }
        if status.is_informational() {
            return (ResponseFraming::Empty, true);
        }
        // No body follows, whatever the head says. If it announces one, an
        // origin that sends it anyway would have those bytes read as the
        // next request's response: the connection is not reused.
        if method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return (ResponseFraming::Empty, !self.declares_body());
        }
        if self.transfer_encoding {
            // With both headers the length is ignored and the connection not
            // reused (RFC 9112 §6.3 item 3): a smuggling vector otherwise.
            return if self.chunked_last && version == Version::HTTP_11 {
                (ResponseFraming::Chunked, self.content_length.is_none())
            } else {
                (ResponseFraming::UntilClose, false)
            };
        }
        match self.content_length {
            Some(0) => (ResponseFraming::Empty, true),
            Some(n) => (ResponseFraming::Length(n), true),
            None => (ResponseFraming::UntilClose, false),
        }
    }
}

/// May a field travel as a trailer, on requests and responses alike? Not
/// the hop-by-hop ones, and not those a recipient must see before the
/// content (RFC 9110 §6.5.1: framing, routing, authentication, request
/// modifiers, response controls, content format), nor the forwarding
/// fields this proxy writes itself: a server that merges trailers into
/// its headers would otherwise take a client's `Host`, `Content-Length` or
/// `X-Forwarded-For` from them.
pub(crate) fn may_trail(name: &HeaderName) -> bool {
    const BARRED: &[&str] = &[
        "age",
        "authorization",
        "cache-control",
        "content-encoding",
        "content-length",
        "content-location",
        "content-range",
        "content-type",
        "cookie",
        "date",
        "expect",
        "expires",
        "forwarded",
        "host",
        "location",
        "max-forwards",
        "pragma",
        "range",
        "retry-after",
        "set-cookie",
        "vary",
        "via",
        "www-authenticate",
        "x-real-ip",
    ];
    let n = name.as_str();
    !is_hop_by_hop(name)
        && !BARRED.contains(&n)
        && !n.starts_with("x-forwarded-")
        && !n.starts_with("if-")
        // As in the head: CGI reads `X_Forwarded_For` as `X-Forwarded-For`.
        && !n.contains('_')
}

/// Is `name` a hop-by-hop header (RFC 9110 §7.6.1), never forwarded as is?
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::TRANSFER_ENCODING
        || *name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str().starts_with("proxy-")
}

pub(super) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests;
