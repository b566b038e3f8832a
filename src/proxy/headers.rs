//! Header rewriting between client and upstream (RFC 9110 §7.6.1): hop-by-hop
//! headers out, `X-Forwarded-*` and `Via` in, `Host` preserved.
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

/// Is this an HTTP/1.1 upgrade request (`Connection: upgrade` + `Upgrade`)?
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
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
    pub(crate) tls: bool,
    pub(crate) version: Version,
    /// The request's authority (HTTP/2 `:authority` or absolute-form URI).
    pub(crate) authority: Option<&'a str>,
}

/// Writes a request's header lines for the upstream hop: the client's
/// headers minus hop-by-hop ones (`Upgrade` kept for an upgrade), minus the
/// body framing (the caller writes it), then `Host` if the client sent
/// none (HTTP/2), `X-Forwarded-Host`, `X-Forwarded-For` (appended to the
/// client's), `X-Forwarded-Proto`, `Via` (appended), and `Connection:
/// upgrade` for an upgrade.
pub(crate) fn write_request_headers(out: &mut BytesMut, headers: &HeaderMap, client: &ClientSide<'_>, upgrade: bool) {
    let named = if headers.contains_key(header::CONNECTION) { connection_named(headers) } else { Vec::new() };
    let mut host: Option<&[u8]> = None;
    let mut prior_for: Vec<&HeaderValue> = Vec::new();
    let mut prior_via: Vec<&HeaderValue> = Vec::new();
    for (name, value) in headers {
        if *name == header::HOST {
            host.get_or_insert(value.as_bytes());
        } else if *name == header::CONTENT_LENGTH || *name == header::VIA {
            if *name == header::VIA {
                prior_via.push(value);
            }
            continue;
        } else if is_hop_by_hop(name) {
            if !(upgrade && *name == header::UPGRADE) {
                continue;
            }
        } else if *name == X_FORWARDED_FOR {
            prior_for.push(value);
            continue;
        } else if *name == X_FORWARDED_PROTO || *name == X_FORWARDED_HOST || named.contains(name) {
            continue;
        }
        write_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if host.is_none() {
        host = client.authority.map(str::as_bytes);
        if let Some(h) = host {
            write_header(out, b"host", h);
        }
    }
    if let Some(h) = host {
        write_header(out, b"x-forwarded-host", h);
    }
    write_joined(out, b"x-forwarded-for", &prior_for, client.forwarded_for.as_bytes());
    write_header(out, b"x-forwarded-proto", if client.tls { b"https" } else { b"http" });
    write_joined(out, b"via", &prior_via, via_of(client.version).as_bytes());
    if upgrade {
        write_header(out, b"connection", b"upgrade");
    }
}

/// `name: prior1, prior2, ours`.
fn write_joined(out: &mut BytesMut, name: &[u8], prior: &[&HeaderValue], ours: &[u8]) {
    if prior.is_empty() {
        return write_header(out, name, ours);
    }
    let mut value = Vec::with_capacity(64);
    for p in prior {
        value.extend_from_slice(p.as_bytes());
        value.extend_from_slice(b", ");
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
        ClientSide { forwarded_for: &CLIENT_IP, tls: true, version: Version::HTTP_11, authority: None }
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
        let w = written(&h, &client(), false);
        assert_eq!(w.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), ["203.0.113.1, 198.51.100.2, 192.0.2.7"]);
        assert_eq!(w.get_all("x-forwarded-proto").iter().collect::<Vec<_>>(), ["https"]);
        assert_eq!(w.get_all("x-forwarded-host").iter().collect::<Vec<_>>(), ["www.example.com"]);
        assert_eq!(w.get_all("via").iter().collect::<Vec<_>>(), ["1.1 cdn, 1.1 spillway"]);
        let plain = written(&map(&[("host", "h")]), &ClientSide { tls: false, ..client() }, false);
        assert_eq!(plain["x-forwarded-for"], "192.0.2.7");
        assert_eq!(plain["x-forwarded-proto"], "http");
        assert_eq!(plain["via"], "1.1 spillway");
    }

    #[test]
    fn upgrades_keep_upgrade_and_connection() {
        let h = map(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("host", "chat")]);
        assert!(is_upgrade(&h));
        let w = written(&h, &client(), true);
        assert_eq!(w["upgrade"], "websocket");
        assert_eq!(w.get_all("connection").iter().collect::<Vec<_>>(), ["upgrade"]);
    }

    #[test]
    fn http2_authority_becomes_host() {
        let c = ClientSide { authority: Some("www.example.com"), version: Version::HTTP_2, ..client() };
        let w = written(&HeaderMap::new(), &c, false);
        assert_eq!(w["host"], "www.example.com");
        assert_eq!(w["x-forwarded-host"], "www.example.com");
        assert_eq!(w["via"], "2 spillway");
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
