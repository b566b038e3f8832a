//! Header rewriting between client and upstream (RFC 9110 §7.6.1): hop-by-hop
//! headers out, `X-Forwarded-*` and `Via` in, `Host` preserved.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one hop and never travel through a proxy.
const HOP_BY_HOP: [&HeaderName; 5] =
    [&header::TE, &header::TRAILER, &header::TRANSFER_ENCODING, &KEEP_ALIVE, &PROXY_CONNECTION];

/// Is this an HTTP/1.1 upgrade request (`Connection: upgrade` + `Upgrade`)?
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Is `name` a hop-by-hop header (or one that only describes this hop)?
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::UPGRADE
        || HOP_BY_HOP.contains(&name)
        || name.as_str().starts_with("proxy-")
}

/// Removes hop-by-hop headers. With `upgrade`, keeps `Upgrade` and sets
/// `Connection: upgrade` so the next hop sees the upgrade request/response.
///
/// The common cases cost one pass over the names: no hop-by-hop header at
/// all, or only `Connection: keep-alive|close` (as most upstreams send).
/// Only a `Connection` header naming other headers, or `Proxy-*` headers,
/// takes the general path that collects names to remove.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Which of the fixed hop-by-hop headers are present, as a bit set, so
    // only those are looked up again for removal.
    let mut present = 0u8;
    let mut simple = true;
    for name in headers.keys() {
        if name == header::CONNECTION {
            present |= 1 << 5;
        } else if name == header::UPGRADE {
            present |= 1 << 6;
        } else if let Some(i) = HOP_BY_HOP.iter().position(|h| *h == name) {
            present |= 1 << i;
        } else if name.as_str().starts_with("proxy-") {
            simple = false;
        }
    }
    if present != 0 || !simple {
        if present & (1 << 5) != 0 {
            simple &= connection_is_plain(headers);
        }
        if simple {
            if present & (1 << 5) != 0 {
                headers.remove(header::CONNECTION);
            }
            for (i, name) in HOP_BY_HOP.iter().enumerate() {
                if present & (1 << i) != 0 {
                    headers.remove(*name);
                }
            }
            if !upgrade && present & (1 << 6) != 0 {
                headers.remove(header::UPGRADE);
            }
        } else {
            strip_general(headers, upgrade);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// One `Connection` header naming no other header (`keep-alive`, `close`,
/// `upgrade`): removing the fixed set is enough.
fn connection_is_plain(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONNECTION).iter();
    let first = values.next();
    values.next().is_none()
        && first.and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(',').all(|t| {
                let t = t.trim();
                t.eq_ignore_ascii_case("keep-alive")
                    || t.eq_ignore_ascii_case("close")
                    || t.eq_ignore_ascii_case("upgrade")
            })
        })
}

fn strip_general(headers: &mut HeaderMap, upgrade: bool) {
    let mut doomed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    doomed.extend(headers.keys().filter(|n| is_hop_by_hop(n)).cloned());
    for name in doomed {
        if !(upgrade && name == header::UPGRADE) {
            headers.remove(&name);
        }
    }
}

/// What the proxy knows about the client side of a request.
pub struct ClientSide<'a> {
    pub ip: IpAddr,
    /// `ip` already formatted (see `forwarded_for_value`), if the caller has it.
    pub forwarded_for: Option<&'a HeaderValue>,
    pub tls: bool,
    pub version: Version,
    /// The request's authority (HTTP/2 `:authority` or absolute-form URI).
    pub authority: Option<&'a str>,
}

/// Rewrites a request's headers for the upstream hop.
pub fn prepare_request(headers: &mut HeaderMap, client: &ClientSide<'_>, upgrade: bool) {
    strip_hop_by_hop(headers, upgrade);
    // Room for the four headers added below, in one growth at most.
    headers.reserve(4);
    if !headers.contains_key(header::HOST) {
        if let Some(v) = client.authority.and_then(|a| HeaderValue::from_str(a).ok()) {
            headers.insert(header::HOST, v);
        }
    }
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    append_forwarded_for(headers, client);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(if client.tls { "https" } else { "http" }));
    append_via(headers, client.version);
}

/// Rewrites a response's headers for the client hop.
pub fn prepare_response(headers: &mut HeaderMap, version: Version, upgrade: bool) {
    strip_hop_by_hop(headers, upgrade);
    append_via(headers, version);
}

fn append_forwarded_for(headers: &mut HeaderMap, client: &ClientSide<'_>) {
    let ours = match client.forwarded_for {
        Some(v) => v.clone(),
        None => forwarded_for_value(client.ip),
    };
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::from_str(&format!("{prev}, {}", itoa_ip(client.ip))).unwrap_or(ours),
        None => ours,
    };
    headers.insert(X_FORWARDED_FOR.clone(), value);
}

/// A client address as an `X-Forwarded-For` element (IPv4-mapped IPv6
/// addresses as plain IPv4).
pub fn forwarded_for_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&itoa_ip(ip)).expect("an IP address is a valid header value")
}

fn itoa_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

fn append_via(headers: &mut HeaderMap, version: Version) {
    let ours = match version {
        Version::HTTP_2 => "2 spillway",
        Version::HTTP_10 => "1.0 spillway",
        _ => "1.1 spillway",
    };
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

    fn client() -> ClientSide<'static> {
        ClientSide {
            ip: "192.0.2.7".parse().unwrap(),
            forwarded_for: None,
            tls: true,
            version: Version::HTTP_11,
            authority: None,
        }
    }

    #[test]
    fn hop_by_hop_headers_and_connection_tokens_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("upgrade", "websocket"),
            ("host", "www.example.com"),
            ("accept", "*/*"),
        ]);
        prepare_request(&mut h, &client(), false);
        for gone in
            ["connection", "x-secret", "keep-alive", "te", "transfer-encoding", "proxy-authorization", "upgrade"]
        {
            assert!(!h.contains_key(gone), "{gone} should be removed");
        }
        assert_eq!(h["host"], "www.example.com");
        assert_eq!(h["accept"], "*/*");
    }

    #[test]
    fn plain_connection_values_and_lone_proxy_headers_are_removed() {
        let mut h = map(&[("connection", "close"), ("keep-alive", "timeout=5"), ("content-length", "3")]);
        strip_hop_by_hop(&mut h, false);
        assert!(!h.contains_key("connection") && !h.contains_key("keep-alive"));
        assert_eq!(h["content-length"], "3");
        let mut h = map(&[("proxy-authorization", "Basic x"), ("accept", "*/*")]);
        strip_hop_by_hop(&mut h, false);
        assert!(!h.contains_key("proxy-authorization"));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn forwarding_headers_are_added() {
        let mut h = map(&[("host", "www.example.com"), ("x-forwarded-for", "203.0.113.1"), ("via", "1.1 cdn")]);
        prepare_request(&mut h, &client(), false);
        assert_eq!(h["x-forwarded-for"], "203.0.113.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "www.example.com");
        assert_eq!(h["via"], "1.1 cdn, 1.1 spillway");
    }

    #[test]
    fn upgrades_keep_upgrade_and_connection() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("host", "chat")]);
        assert!(is_upgrade(&h));
        prepare_request(&mut h, &client(), true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn http2_authority_becomes_host() {
        let mut h = HeaderMap::new();
        let c = ClientSide { authority: Some("www.example.com"), version: Version::HTTP_2, ..client() };
        prepare_request(&mut h, &c, false);
        assert_eq!(h["host"], "www.example.com");
        assert_eq!(h["via"], "2 spillway");
    }
}
