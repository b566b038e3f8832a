//! Which host a request is for: one answer that both routing and the
//! upstream's `Host` header use, so the two can never disagree.
//!
//! - Several `Host` header lines: 400 (RFC 9112 §3.2).
//! - HTTP/1.1 without `Host` and without an absolute-form target: 400.
//! - An absolute-form target (HTTP/1.1) or `:authority` (HTTP/2) decides
//!   the host; a `Host` header is ignored for HTTP/1.1 (RFC 9112 §3.2.2)
//!   and must name the same authority for HTTP/2, or the request is
//!   malformed: 400 (RFC 9113 §8.3.1). Userinfo is never forwarded.
//! - A host that is not a valid authority (characters outside RFC 3986's
//!   `authority`): 400.
//!
//! Routing compares hosts without case, without the port and without a
//! trailing dot ([`route_key_eq`]).

use http::header::{GetAll, HeaderValue};
use http::{Uri, Version};

/// Why a request's host is unacceptable (each is a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostError {
    #[error("several Host headers")]
    Several,
    #[error("HTTP/1.1 request without a Host header")]
    Missing,
    #[error("Host header differs from the request's :authority")]
    Mismatch,
    #[error("invalid Host")]
    Invalid,
}

/// The request's authority (`host[:port]`, no userinfo), or `None` when it
/// has none (HTTP/1.0 without `Host`, an empty `Host`, HTTP/2 without
/// `:authority` or `host`).
pub(crate) fn authority<'a>(
    version: Version,
    uri: &'a Uri,
    hosts: GetAll<'a, HeaderValue>,
) -> Result<Option<&'a str>, HostError> {
    let mut it = hosts.iter();
    let header = it.next();
    if it.next().is_some() {
        return Err(HostError::Several);
    }
    let header = match header {
        Some(v) => Some(v.to_str().map_err(|_| HostError::Invalid)?),
        None => None,
    };
    let target = uri.authority().map(|a| without_userinfo(a.as_str()));
    let chosen = match (target, header) {
        (Some(t), Some(h)) if version == Version::HTTP_2 && !same_authority(t, h) => return Err(HostError::Mismatch),
        (Some(t), _) => t,
        (None, Some(h)) => h,
        (None, None) if version == Version::HTTP_11 => return Err(HostError::Missing),
        (None, None) => return Ok(None),
    };
    if chosen.is_empty() {
        return Ok(None);
    }
    if !valid_authority(chosen) {
        return Err(HostError::Invalid);
    }
    Ok(Some(chosen))
}

/// The target's authority without userinfo, which [`authority`] prefers
/// to the `Host` line (the upstream head falls back to that line itself).
pub(crate) fn target_authority(uri: &Uri) -> Option<&[u8]> {
    uri.authority().map(|a| without_userinfo(a.as_str()).as_bytes())
}

pub(crate) fn without_userinfo(authority: &str) -> &str {
    authority.rsplit_once('@').map_or(authority, |(_, host)| host)
}

fn same_authority(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || route_key(a).eq_ignore_ascii_case(route_key(b)) && port(a) == port(b)
}

fn port(authority: &str) -> Option<&str> {
    let after_literal = authority.rsplit_once(']').map_or(authority, |(_, rest)| rest);
    after_literal.rsplit_once(':').map(|(_, p)| p)
}

/// RFC 3986 `host [":" port]` (userinfo already removed): an IPv6 literal
/// in brackets, or a reg-name / IPv4 address of unreserved, sub-delims and
/// percent-encoded characters; the port all digits.
fn valid_authority(s: &str) -> bool {
    let (host_ok, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((literal, after)) = rest.split_once(']') else { return false };
        let port = match after {
            "" => None,
            a => match a.strip_prefix(':') {
                Some(p) => Some(p),
                None => return false,
            },
        };
        (literal.parse::<std::net::Ipv6Addr>().is_ok(), port)
    } else {
        // One pass: reg-name bytes up to an optional `:port`.
        let end = s.bytes().position(|b| !REG_NAME_BYTE[usize::from(b)]).unwrap_or(s.len());
        match s.as_bytes().get(end) {
            None => (end > 0, None),
            Some(b':') => (end > 0, Some(&s[end + 1..])),
            Some(_) => return false,
        }
    };
    host_ok && port.is_none_or(|p| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// RFC 3986 reg-name bytes: unreserved, sub-delims, `%`.
static REG_NAME_BYTE: [bool; 256] = byte_set(b"-._~!$&'()*+,;=%");

/// ASCII letters and digits plus `extra`, as a lookup table.
const fn byte_set(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// The host as routing compares it: no port, no brackets, no trailing dot
/// (case is compared by [`route_key_eq`]).
pub(crate) fn route_key(authority: &str) -> &str {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        }
    };
    host.strip_suffix('.').unwrap_or(host)
}

/// Does the request's authority name the configured route host?
#[inline]
pub(crate) fn route_key_eq(authority: &str, route_host: &str) -> bool {
    route_key(authority).eq_ignore_ascii_case(route_host.strip_suffix('.').unwrap_or(route_host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HOST;
    use http::HeaderMap;

    fn host_of(version: Version, target: &str, hosts: &[&str]) -> Result<Option<String>, HostError> {
        let uri: Uri = target.parse().unwrap();
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(HOST, HeaderValue::from_str(v).unwrap());
        }
        authority(version, &uri, h.get_all(HOST)).map(|o| o.map(str::to_string))
    }

    #[test]
    fn one_host_header_decides_an_origin_form_request() {
        assert_eq!(host_of(Version::HTTP_11, "/x", &["www.example.com"]), Ok(Some("www.example.com".into())));
        assert_eq!(host_of(Version::HTTP_11, "/x", &["a", "b"]), Err(HostError::Several));
        assert_eq!(host_of(Version::HTTP_11, "/x", &["a", "a"]), Err(HostError::Several));
        assert_eq!(host_of(Version::HTTP_11, "/x", &[]), Err(HostError::Missing));
        assert_eq!(host_of(Version::HTTP_10, "/x", &[]), Ok(None));
        assert_eq!(host_of(Version::HTTP_11, "/x", &[""]), Ok(None), "an empty Host is allowed");
        assert_eq!(host_of(Version::HTTP_11, "/x", &["a b"]), Err(HostError::Invalid));
        assert_eq!(host_of(Version::HTTP_11, "/x", &["a/b"]), Err(HostError::Invalid));
        for bad in [
            "[public.example]admin.internal",
            "[public.example",
            "[public.example]:80",
            "[::1]x",
            "a:b:c",
            "a:123456",
            "a]b",
        ] {
            assert_eq!(host_of(Version::HTTP_11, "/x", &[bad]), Err(HostError::Invalid), "{bad}");
        }
        for good in ["[::1]", "[::1]:8080", "a.example:", "10.0.0.1:80", "xn--bcher-kva.example"] {
            assert!(host_of(Version::HTTP_11, "/x", &[good]).is_ok(), "{good}");
        }
    }

    #[test]
    fn the_target_authority_wins_and_loses_its_userinfo() {
        let r = host_of(Version::HTTP_11, "http://user:pw@api.example.com:8080/x", &["www.example.com"]);
        assert_eq!(r, Ok(Some("api.example.com:8080".into())), "HTTP/1.1 ignores Host for an absolute-form target");
        assert_eq!(host_of(Version::HTTP_2, "https://a.example/x", &[]), Ok(Some("a.example".into())));
        assert_eq!(host_of(Version::HTTP_2, "https://a.example/x", &["A.EXAMPLE"]), Ok(Some("a.example".into())));
        assert_eq!(host_of(Version::HTTP_2, "https://a.example/x", &["a.example."]), Ok(Some("a.example".into())));
        assert_eq!(host_of(Version::HTTP_2, "https://a.example/x", &["b.example"]), Err(HostError::Mismatch));
        assert_eq!(host_of(Version::HTTP_2, "https://a.example/x", &["a.example:81"]), Err(HostError::Mismatch));
        assert_eq!(host_of(Version::HTTP_2, "/x", &["b.example"]), Ok(Some("b.example".into())));
        assert_eq!(host_of(Version::HTTP_2, "/x", &[]), Ok(None));
    }

    #[test]
    fn routing_compares_without_case_port_or_trailing_dot() {
        assert!(route_key_eq("WWW.Example.COM.:443", "www.example.com"));
        assert!(route_key_eq("www.example.com", "www.example.com."));
        assert!(route_key_eq("[::1]:8080", "::1"));
        assert!(!route_key_eq("www.example.com.evil", "www.example.com"));
        assert_eq!(route_key("a.example:x"), "a.example:x", "not a port");
    }
}
