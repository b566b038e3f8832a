//! Header rewriting between client and upstream (RFC 9110 §7.6.1): hop-by-hop
//! headers out, `X-Forwarded-*` and `Via` in, `Host` set to the authority
//! routing used (`request::host`).
//!
//! Client-address headers are ours to set at the edge: from a peer that is
//! not a `trusted_proxies` address, a client's `X-Forwarded-For`,
//! `Forwarded` and `X-Real-IP` are dropped and `X-Forwarded-For` is the peer
//! alone; from a trusted proxy they pass and ours is appended. Header names
//! with an underscore are dropped from every request (as nginx does): a CGI
//! or PHP back end reads `X_Forwarded_For` and `X-Forwarded-For` as the same
//! variable. HTTP/2 cookie crumbs are joined into one `Cookie` line with
//! `; ` (RFC 9113 §8.2.3).
//!
//! The request side never touches the client's `HeaderMap`: its lines are
//! written straight into the upstream request head in one pass, with the
//! forwarding headers appended (hashing and growing a map for four inserts
//! cost more than the rest of the rewrite). The response side gets a map
//! the upstream client already stripped of hop-by-hop headers
//! (`upstream::h1::parse_response_head`); only `Via` is added.

use std::net::IpAddr;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

use crate::upstream::h1::{is_hop_by_hop, write_header};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// RFC 9113 §3.2.1 (h2c): hop-by-hop by definition.
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Is this a WebSocket opening handshake (RFC 6455 §4.1: HTTP/1.1 `GET`
/// with `Connection: upgrade` and `Upgrade: websocket`)? Only these are
/// tunnelled; any other `Upgrade` (h2c, TLS, …) is removed as hop-by-hop
/// and the request is proxied as a plain one.
pub(crate) fn is_websocket_upgrade(version: Version, method: &http::Method, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && method == http::Method::GET
        && headers.contains_key(header::UPGRADE)
        && connection_has(headers, "upgrade")
        && headers
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token))
}

/// The comma-separated tokens of every `Connection` header, trimmed.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers.get_all(header::CONNECTION).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// Header names a `Connection` header lists besides `keep-alive`, `close`
/// and `upgrade`: they are hop-by-hop too. Empty (no allocation) in the
/// common case.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    connection_tokens(headers)
        .filter(|t| {
            !(t.is_empty()
                || t.eq_ignore_ascii_case("keep-alive")
                || t.eq_ignore_ascii_case("close")
                || t.eq_ignore_ascii_case("upgrade"))
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect()
}

/// What the proxy knows about the client side of a request.
pub(crate) struct ClientSide<'a> {
    /// The client's address as an `X-Forwarded-For` element, formatted once
    /// per connection (`forwarded_for_value`).
    pub(crate) forwarded_for: &'a HeaderValue,
    /// The peer is a `trusted_proxies` address: its forwarding headers are kept.
    pub(crate) trusted: bool,
    pub(crate) tls: bool,
    pub(crate) version: Version,
    /// The request target's authority (absolute form, HTTP/2 `:authority`;
    /// no userinfo), which routing used; without one, the request's one
    /// `Host` line is. Written as `Host` and `X-Forwarded-Host`.
    pub(crate) authority: Option<&'a [u8]>,
    /// Our `X-Request-Id` (access log on): replaces any the client sent.
    /// `None`: the client's (a trusted peer's, or with the log off) passes.
    pub(crate) request_id: Option<&'a [u8]>,
    /// `spill.pin_token.forward_header` (any the client sent is dropped)
    /// and, when the client's token pins it, until when (Unix ms).
    pub(crate) pin_header: Option<(&'a HeaderName, Option<u64>)>,
}

/// Writes a request's header lines for the upstream hop: the client's
/// headers minus hop-by-hop ones (`Upgrade` kept for an upgrade), minus the
/// body framing (the caller writes it), minus client-address headers from
/// an untrusted peer and names with `_`, then `Host` and
/// `X-Forwarded-Host` (the routed authority), `X-Forwarded-For` (the peer,
/// appended to a trusted proxy's), `X-Forwarded-Proto`, `Via` (appended),
/// our `X-Request-Id` if any, the joined HTTP/2 cookie, and `Connection:
/// upgrade` for an upgrade.
pub(crate) fn write_request_headers(out: &mut BytesMut, headers: &HeaderMap, client: &ClientSide<'_>, upgrade: bool) {
    let named = if headers.contains_key(header::CONNECTION) { connection_named(headers) } else { Vec::new() };
    let join_cookies = client.version == Version::HTTP_2;
    let mut prior_for: Vec<&HeaderValue> = Vec::new();
    let mut prior_via: Vec<&HeaderValue> = Vec::new();
    let mut cookies: Vec<&HeaderValue> = Vec::new();
    let mut host_line: Option<&[u8]> = None;
    for (name, value) in headers {
        if *name == header::HOST {
            host_line.get_or_insert(value.as_bytes());
            continue;
        } else if *name == header::CONTENT_LENGTH {
            continue;
        } else if *name == header::VIA {
            prior_via.push(value);
            continue;
        } else if is_hop_by_hop(name) || *name == HTTP2_SETTINGS {
            // An upgrade is written below as `websocket` alone: no other
            // protocol (h2c) can ride along.
            continue;
        } else if *name == X_FORWARDED_FOR {
            if client.trusted {
                prior_for.push(value);
            }
            continue;
        } else if *name == X_FORWARDED_PROTO
            || *name == X_FORWARDED_HOST
            || named.contains(name)
            || ((*name == header::FORWARDED || *name == X_REAL_IP) && !client.trusted)
        {
            continue;
        } else if *name == header::COOKIE && join_cookies {
            cookies.push(value);
            continue;
        } else if name.as_str().as_bytes().contains(&b'_')
            || (client.request_id.is_some() && *name == super::access::X_REQUEST_ID)
            || client.pin_header.is_some_and(|(pin, _)| pin == name)
        {
            continue;
        }
        write_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    match client.authority.or(host_line).filter(|h| !h.is_empty()) {
        Some(h) => {
            write_header(out, b"host", h);
            write_header(out, b"x-forwarded-host", h);
        }
        // HTTP/1.0 without Host goes upstream as HTTP/1.1, which needs the
        // field: empty, as for a target without authority (RFC 9112 §3.2).
        None => write_header(out, b"host", b""),
    }
    write_joined(out, b"x-forwarded-for", &prior_for, b", ", client.forwarded_for.as_bytes());
    write_header(out, b"x-forwarded-proto", if client.tls { b"https" } else { b"http" });
    write_joined(out, b"via", &prior_via, b", ", via_of(client.version).as_bytes());
    if let Some(id) = client.request_id {
        write_header(out, b"x-request-id", id);
    }
    if let Some((name, Some(until_ms))) = client.pin_header {
        write_header(out, name.as_str().as_bytes(), itoa::Buffer::new().format(until_ms).as_bytes());
    }
    if let Some((last, crumbs)) = cookies.split_last() {
        write_joined(out, b"cookie", crumbs, b"; ", last.as_bytes());
    }
    if upgrade {
        write_header(out, b"upgrade", b"websocket");
        write_header(out, b"connection", b"upgrade");
    }
}

/// Does an upstream's 101 switch to WebSocket (the only upgrade tunnelled)?
pub(crate) fn switches_to_websocket(headers: &HeaderMap) -> bool {
    let mut tokens = headers.get_all(header::UPGRADE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
    tokens.next().is_some_and(|t| t.trim().eq_ignore_ascii_case("websocket")) && tokens.next().is_none()
}

/// `name: prior1<sep>prior2<sep>last`.
fn write_joined(out: &mut BytesMut, name: &[u8], prior: &[&HeaderValue], sep: &[u8], ours: &[u8]) {
    if prior.is_empty() {
        return write_header(out, name, ours);
    }
    let mut value = Vec::with_capacity(64);
    for p in prior {
        value.extend_from_slice(p.as_bytes());
        value.extend_from_slice(sep);
    }
    value.extend_from_slice(ours);
    write_header(out, name, &value);
}

/// Rewrites a response's headers for the client hop. The upstream client
/// left hop-by-hop headers out already; an upgrade gets `Connection:
/// upgrade` back.
pub(crate) fn prepare_response(headers: &mut HeaderMap, version: Version, upgrade: bool) {
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    append_via(headers, version);
}

/// A client address as an `X-Forwarded-For` element (IPv4-mapped IPv6
/// addresses as plain IPv4).
pub(crate) fn forwarded_for_value(ip: IpAddr) -> HeaderValue {
    let text = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    };
    HeaderValue::from_str(&text).expect("an IP address is a valid header value")
}

fn via_of(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "2 spillway",
        Version::HTTP_10 => "1.0 spillway",
        _ => "1.1 spillway",
    }
}

fn append_via(headers: &mut HeaderMap, version: Version) {
    let ours = via_of(version);
    match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) => {
            if let Ok(v) = HeaderValue::from_str(&format!("{prev}, {ours}")) {
                headers.insert(header::VIA, v);
            }
        }
        None => {
            headers.insert(header::VIA, HeaderValue::from_static(ours));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    static CLIENT_IP: HeaderValue = HeaderValue::from_static("192.0.2.7");

    fn client() -> ClientSide<'static> {
        ClientSide {
            forwarded_for: &CLIENT_IP,
            trusted: false,
            tls: true,
            version: Version::HTTP_11,
            authority: Some(b"www.example.com"),
            request_id: None,
            pin_header: None,
        }
    }

    /// The header lines written for the upstream, read back into a map
    /// (in order, duplicates kept).
    fn written(h: &HeaderMap, client: &ClientSide<'_>, upgrade: bool) -> HeaderMap {
        let mut out = BytesMut::new();
        write_request_headers(&mut out, h, client, upgrade);
        let text = String::from_utf8(out.to_vec()).unwrap();
        let mut back = HeaderMap::new();
        for line in text.split_terminator("\r\n") {
            let (k, v) = line.split_once(": ").unwrap();
            back.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        back
    }

    #[test]
    fn the_pin_header_is_ours_alone() {
        let name = HeaderName::from_static("x-spillway-pinned-until");
        let h = map(&[("x-spillway-pinned-until", "99999999999999"), ("accept", "*/*")]);
        let pinned = written(&h, &ClientSide { pin_header: Some((&name, Some(1_764_700_090_000))), ..client() }, false);
        let got: Vec<_> = pinned.get_all(&name).iter().collect();
        assert_eq!(got, ["1764700090000"], "the client's value is dropped, ours written");
        let unpinned = written(&h, &ClientSide { pin_header: Some((&name, None)), ..client() }, false);
        assert!(unpinned.get(&name).is_none(), "no token that pins: no header, and the client's dropped");
        assert_eq!(written(&h, &client(), false).get(&name).unwrap(), "99999999999999", "without the key: passed on");
    }

    #[test]
    fn hop_by_hop_headers_and_connection_tokens_are_removed() {
        let h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("upgrade", "websocket"),
            ("content-length", "3"),
            ("host", "www.example.com"),
            ("accept", "*/*"),
        ]);
        let w = written(&h, &client(), false);
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "te",
            "transfer-encoding",
            "proxy-authorization",
            "proxy-connection",
            "upgrade",
            "content-length",
        ] {
            assert!(!w.contains_key(gone), "{gone} should be removed");
        }
        assert_eq!(w["host"], "www.example.com");
        assert_eq!(w["accept"], "*/*");
    }

    #[test]
    fn forwarding_headers_are_added_or_appended_to() {
        let h = map(&[
            ("host", "www.example.com"),
            ("x-forwarded-for", "203.0.113.1"),
            ("x-forwarded-for", "198.51.100.2"),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "spoofed"),
            ("via", "1.1 cdn"),
        ]);
        let w = written(&h, &ClientSide { trusted: true, ..client() }, false);
        assert_eq!(w.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), ["203.0.113.1, 198.51.100.2, 192.0.2.7"]);
        assert_eq!(w.get_all("x-forwarded-proto").iter().collect::<Vec<_>>(), ["https"]);
        assert_eq!(w.get_all("x-forwarded-host").iter().collect::<Vec<_>>(), ["www.example.com"]);
        assert_eq!(w.get_all("via").iter().collect::<Vec<_>>(), ["1.1 cdn, 1.1 spillway"]);
        let edge = written(&h, &client(), false);
        assert_eq!(
            edge.get_all("x-forwarded-for").iter().collect::<Vec<_>>(),
            ["192.0.2.7"],
            "at the edge: the peer alone"
        );
        let plain = written(&map(&[("host", "h")]), &ClientSide { tls: false, ..client() }, false);
        assert_eq!(plain["x-forwarded-for"], "192.0.2.7");
        assert_eq!(plain["x-forwarded-proto"], "http");
        assert_eq!(plain["via"], "1.1 spillway");
    }

    #[test]
    fn upgrades_keep_upgrade_and_connection() {
        let h = map(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("host", "chat")]);
        assert!(is_websocket_upgrade(Version::HTTP_11, &http::Method::GET, &h));
        assert!(!is_websocket_upgrade(Version::HTTP_11, &http::Method::POST, &h), "only GET");
        assert!(!is_websocket_upgrade(Version::HTTP_10, &http::Method::GET, &h));
        let h2c = map(&[("connection", "Upgrade, HTTP2-Settings"), ("upgrade", "h2c"), ("host", "chat")]);
        assert!(!is_websocket_upgrade(Version::HTTP_11, &http::Method::GET, &h2c), "only websocket");
        assert!(!written(&h2c, &client(), false).contains_key("upgrade"));
        // A websocket upgrade that also names h2c goes upstream as websocket alone.
        let both = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "h2c, websocket"),
            ("http2-settings", "AAMAAABk"),
            ("host", "c"),
        ]);
        assert!(is_websocket_upgrade(Version::HTTP_11, &http::Method::GET, &both));
        let w = written(&both, &client(), true);
        assert_eq!(w.get_all("upgrade").iter().collect::<Vec<_>>(), ["websocket"]);
        assert!(!w.contains_key("http2-settings"));
        assert!(switches_to_websocket(&map(&[("upgrade", "WebSocket")])));
        assert!(!switches_to_websocket(&map(&[("upgrade", "h2c")])));
        assert!(!switches_to_websocket(&map(&[("upgrade", "websocket, h2c")])));
        assert!(!switches_to_websocket(&HeaderMap::new()));
        let w = written(&h, &client(), true);
        assert_eq!(w["upgrade"], "websocket");
        assert_eq!(w.get_all("connection").iter().collect::<Vec<_>>(), ["upgrade"]);
    }

    #[test]
    fn http2_authority_becomes_host() {
        let c = ClientSide { authority: Some(b"www.example.com"), version: Version::HTTP_2, ..client() };
        let w = written(&map(&[("host", "other.example")]), &c, false);
        assert_eq!(w.get_all("host").iter().collect::<Vec<_>>(), ["www.example.com"], "one Host: the routed one");
        assert_eq!(w["x-forwarded-host"], "www.example.com");
        assert_eq!(w["via"], "2 spillway");
    }

    #[test]
    fn client_address_headers_and_underscore_names_are_dropped_at_the_edge() {
        let h = map(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x-forwarded_for", "6.6.6.6"),
            ("client_ip", "6.6.6.6"),
            ("x-ok", "1"),
        ]);
        let w = written(&h, &client(), false);
        for gone in ["forwarded", "x-real-ip", "x_forwarded_for", "x-forwarded_for", "client_ip"] {
            assert!(!w.contains_key(gone), "{gone} should be removed");
        }
        assert_eq!(w["x-ok"], "1");
        let trusted = written(&h, &ClientSide { trusted: true, ..client() }, false);
        assert_eq!(trusted["forwarded"], "for=6.6.6.6", "a trusted proxy's Forwarded passes");
        assert_eq!(trusted["x-real-ip"], "6.6.6.6");
        assert!(!trusted.contains_key("x_forwarded_for"), "underscores never pass");
    }

    #[test]
    fn http2_cookie_crumbs_are_joined() {
        let h = map(&[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]);
        let w = written(&h, &ClientSide { version: Version::HTTP_2, ..client() }, false);
        assert_eq!(w.get_all("cookie").iter().collect::<Vec<_>>(), ["a=1; b=2; c=3"]);
        let one = written(&map(&[("cookie", "a=1")]), &ClientSide { version: Version::HTTP_2, ..client() }, false);
        assert_eq!(one.get_all("cookie").iter().collect::<Vec<_>>(), ["a=1"]);
    }

    #[test]
    fn responses_get_via_and_upgrades_their_connection_header() {
        let mut h = map(&[("via", "1.1 origin")]);
        prepare_response(&mut h, Version::HTTP_11, false);
        assert_eq!(h["via"], "1.1 origin, 1.1 spillway");
        let mut h = map(&[("upgrade", "websocket")]);
        prepare_response(&mut h, Version::HTTP_11, true);
        assert_eq!(h["connection"], "upgrade");
    }
}
