//! The upstream response-head parser (`upstream::h1::parse_response_head`):
//! any bytes from an upstream give a head, "read more" or an error, never a
//! panic, and a head that comes out is safe to forward.
#![no_main]

use http::{header, Method};
use libfuzzer_sys::fuzz_target;
use spillway::fuzzing::{self, Framing};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the request method the response answers.
    let Some((&pick, wire)) = data.split_first() else { return };
    let method = [Method::GET, Method::HEAD, Method::POST, Method::CONNECT][usize::from(pick & 3)].clone();
    let Ok(parsed) = fuzzing::parse_response_head(wire, &method) else { return };
    let Some(head) = parsed else {
        // "Read more" only while the head may still fit.
        assert!(wire.len() <= 64 * 1024, "an incomplete head of {} bytes was not refused", wire.len());
        return;
    };
    assert!(head.consumed <= wire.len());
    assert_eq!(&wire[head.consumed..], &head.rest[..], "bytes after the head must stay in the buffer");
    assert!(head.consumed <= 64 * 1024);
    assert!(wire[..head.consumed].ends_with(b"\n"), "a head ends with its empty line");

    let switching = head.status == 101;
    for (name, _) in &head.headers {
        let upgrade_on_101 = switching && *name == header::UPGRADE;
        assert!(!fuzzing::is_hop_by_hop(name) || upgrade_on_101, "hop-by-hop {name} came out");
    }
    // Names listed in Connection are hop-by-hop too.
    let text = String::from_utf8_lossy(&wire[..head.consumed]).to_ascii_lowercase();
    for line in text.split('\n').skip(1) {
        let Some((name, value)) = line.split_once(':') else { continue };
        if name.trim() == "connection" {
            for token in value.split(',').map(|t| t.trim_matches([' ', '\t', '\r'])) {
                if !token.is_empty() && token != "upgrade" {
                    assert!(!head.headers.contains_key(token), "{token} listed in Connection came out");
                }
            }
        }
    }
    // A length is never passed on beside Transfer-Encoding, and the framing agrees with the headers.
    match head.framing {
        Framing::Chunked => {
            assert!(!head.headers.contains_key(header::CONTENT_LENGTH));
            assert_eq!(head.version, http::Version::HTTP_11);
        }
        Framing::Length(n) => {
            assert!(n > 0);
            // (It may be gone: `Connection: content-length` makes it hop-by-hop.)
            for cl in head.headers.get_all(header::CONTENT_LENGTH) {
                let values = cl.to_str().unwrap().split(',').map(|v| v.trim_matches([' ', '\t']).parse::<u64>());
                assert!(values.into_iter().all(|v| v == Ok(n)), "{cl:?} beside framing {n}");
            }
        }
        Framing::Upgrade => assert!(switching && !head.keep_alive),
        Framing::UntilClose => assert!(!head.keep_alive, "a close-delimited body cannot leave the connection reusable"),
        Framing::Empty => {}
    }
    // A 101 is an upgrade whatever the method; otherwise these have no body.
    let bodyless = method == Method::HEAD || head.status.is_informational() || head.status == 204 || head.status == 304;
    if bodyless && !switching {
        assert_eq!(head.framing, Framing::Empty);
    }
});
