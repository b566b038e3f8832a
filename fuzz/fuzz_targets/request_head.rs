//! The upstream request head: `upstream::h1::encode_request_head` with the
//! header rewrite of `proxy::headers::write_request_headers`, for any
//! request hyper or h2 could hand the proxy. What goes upstream must parse
//! back as exactly one request with the client's method and target, carry
//! no header line the client did not send (bar the proxy's own), and no
//! hop-by-hop header (bar `Upgrade`/`Connection: upgrade` on an upgrade).
#![no_main]

use std::net::IpAddr;

use arbitrary::Arbitrary;
use http::{HeaderName, HeaderValue, Method, Request, Uri, Version};
use libfuzzer_sys::fuzz_target;
use spillway::fuzzing::{self, BodyFraming};

#[derive(Arbitrary, Debug)]
struct Input {
    method: Vec<u8>,
    uri: String,
    version: u8,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    framing: (u8, u64),
    ip: [u8; 16],
    v4: bool,
    tls: bool,
}

/// Headers the proxy writes itself.
const OURS: [&str; 9] = [
    "host",
    "x-forwarded-host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "via",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
];

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fuzz_target!(|input: Input| {
    // Only what the http types accept: hyper and h2 build requests from them.
    let Ok(method) = Method::from_bytes(&input.method) else { return };
    let Ok(uri) = input.uri.parse::<Uri>() else { return };
    let version = [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2][usize::from(input.version % 3)];
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    for (name, value) in &input.headers {
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) else { continue };
        req.headers_mut().append(name, value);
    }
    let framing = match input.framing.0 % 3 {
        0 => BodyFraming::Empty,
        1 => BodyFraming::Length(input.framing.1),
        _ => BodyFraming::Chunked,
    };
    let ip = if input.v4 {
        IpAddr::from([input.ip[0], input.ip[1], input.ip[2], input.ip[3]])
    } else {
        IpAddr::from(input.ip)
    };

    let head = fuzzing::write_request_head(&req, framing, ip, input.tls);

    let mut parsed = [httparse::EMPTY_HEADER; 512];
    let mut back = httparse::Request::new(&mut parsed);
    let len = match back.parse(&head) {
        Ok(httparse::Status::Complete(len)) => len,
        other => panic!("the head does not parse: {other:?}\n{:?}", String::from_utf8_lossy(&head)),
    };
    assert_eq!(len, head.len(), "one request, nothing after it: {:?}", String::from_utf8_lossy(&head));
    assert_eq!(back.method, Some(req.method().as_str()));
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    assert_eq!(back.path, Some(target));
    assert_eq!(back.version, Some(1));

    // As many header lines as the parser saw: none was split or injected.
    let lines = head.windows(2).filter(|w| w == b"\r\n").count();
    assert_eq!(back.headers.len() + 2, lines, "header lines: {:?}", String::from_utf8_lossy(&head));

    let upgrade = req.version() == Version::HTTP_11
        && req.headers().contains_key(http::header::UPGRADE)
        && req
            .headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
    let mut framing_lines = 0;
    for h in back.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).expect("a header name the http crate accepts");
        let name_s = name.as_str();
        if name_s == "content-length" || name_s == "transfer-encoding" {
            framing_lines += 1;
        }
        if fuzzing::is_hop_by_hop(&name) {
            let allowed = match name_s {
                "upgrade" => upgrade,
                "connection" => upgrade && h.value == b"upgrade",
                "transfer-encoding" => framing == BodyFraming::Chunked && h.value == b"chunked",
                _ => false,
            };
            assert!(allowed, "hop-by-hop {name_s}: {:?} went upstream", String::from_utf8_lossy(h.value));
        }
        if !OURS.contains(&name_s) {
            // The parser drops the whitespace around a value.
            let sent = req.headers().get_all(&name).iter().any(|v| trim_ows(v.as_bytes()) == h.value);
            assert!(sent, "{name_s}: {:?} was not sent by the client", String::from_utf8_lossy(h.value));
        }
    }
    let want_framing = match framing {
        BodyFraming::Empty => usize::from(matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH)),
        _ => 1,
    };
    assert_eq!(framing_lines, want_framing, "exactly one body framing header");
});
