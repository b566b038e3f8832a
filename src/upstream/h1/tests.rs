//! The HTTP/1.1 wire codec on in-memory bytes: request heads, response
//! heads and their framing, request codings, trailers.

use super::*;

fn parse(raw: &str, method: Method) -> Result<Option<ResponseHead>, WireError> {
    let mut buf = BytesMut::from(raw);
    parse_response_head(&mut buf, &method)
}

#[test]
fn request_head_is_written_with_its_framing() {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("example.test"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    headers.append("x-a", HeaderValue::from_static("1"));
    headers.append("x-a", HeaderValue::from_static("2"));
    let mut out = BytesMut::new();
    encode_request_head(&mut out, &Method::POST, "/p?q=1", RequestFraming::Length(5), |o| {
        write_plain_headers(o, &headers)
    });
    assert_eq!(
        &out[..],
        b"POST /p?q=1 HTTP/1.1\r\nhost: example.test\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 5\r\n\r\n"
    );
    out.clear();
    let none = HeaderMap::new();
    encode_request_head(&mut out, &Method::PUT, "/", RequestFraming::Chunked, |o| write_plain_headers(o, &none));
    assert_eq!(&out[..], b"PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
    out.clear();
    encode_request_head(&mut out, &Method::POST, "/", RequestFraming::Empty, |o| write_plain_headers(o, &none));
    assert_eq!(&out[..], b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
    out.clear();
    encode_request_head(&mut out, &Method::GET, "/", RequestFraming::Empty, |o| write_plain_headers(o, &none));
    assert_eq!(&out[..], b"GET / HTTP/1.1\r\n\r\n");
}

#[test]
fn hop_by_hop_response_headers_are_read_then_left_out() {
    let mut buf = BytesMut::from(
        "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n\
         Transfer-Encoding: chunked\r\nTrailer: x-sum\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\n\
         Content-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
    );
    let head = parse_response_head(&mut buf, &Method::GET).unwrap().unwrap();
    let names: Vec<&str> = head.headers.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["content-type", "set-cookie"]);
    assert_eq!(head.headers.get_all("set-cookie").iter().count(), 2);
    assert_eq!((head.framing, head.keep_alive), (ResponseFraming::Chunked, true));
    // A 101 keeps its Upgrade header: the client needs it.
    let mut buf =
        BytesMut::from("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    let head = parse_response_head(&mut buf, &Method::GET).unwrap().unwrap();
    assert_eq!(head.headers["upgrade"], "websocket");
    assert!(!head.headers.contains_key("connection"));
    // A bare `Proxy-` is hop-by-hop too (fuzz finding: the parser's rule
    // wanted a longer name than `is_hop_by_hop`'s).
    let head = parse("HTTP/1.1 200 OK\r\nProxy-: x\r\nContent-Length: 0\r\n\r\n", Method::GET).unwrap().unwrap();
    assert!(!head.headers.contains_key("proxy-"));
}

#[test]
fn response_head_is_parsed_and_taken_out_of_the_buffer() {
    let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabcREST");
    let head = parse_response_head(&mut buf, &Method::GET).unwrap().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["x-a"], "b");
    assert_eq!(head.framing, ResponseFraming::Length(3));
    assert!(head.keep_alive);
    assert_eq!(&buf[..], b"abcREST");
}

#[test]
fn a_partial_head_asks_for_more_and_a_huge_one_is_refused() {
    assert!(parse("HTTP/1.1 200 OK\r\nContent-Le", Method::GET).unwrap().is_none());
    let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_RESPONSE_HEAD + 1));
    assert_eq!(parse(&huge, Method::GET).unwrap_err(), WireError::HeadTooLarge);
    assert!(matches!(parse("HTTP/1.1 abc\r\n\r\n", Method::GET), Err(WireError::Head(_))));
    let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "X: y\r\n".repeat(MAX_RESPONSE_HEADERS + 1));
    assert!(matches!(parse(&many, Method::GET), Err(WireError::Head("too many headers"))));
}

#[test]
fn framing_follows_rfc_9112() {
    let f = |raw: &str, m: Method| {
        let h = parse(raw, m).unwrap().unwrap();
        (h.framing, h.keep_alive)
    };
    use ResponseFraming::*;
    // No body follows; a head that announces one retires the connection.
    assert_eq!(f("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", Method::HEAD), (Empty, false));
    assert_eq!(f("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Method::HEAD), (Empty, true));
    assert_eq!(f("HTTP/1.1 200 OK\r\n\r\n", Method::HEAD), (Empty, true));
    assert_eq!(f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Method::HEAD), (Empty, false));
    assert_eq!(f("HTTP/1.1 204 No Content\r\n\r\n", Method::GET), (Empty, true));
    assert_eq!(f("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", Method::GET), (Empty, false));
    assert_eq!(f("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", Method::GET), (Empty, false));
    assert_eq!(f("HTTP/1.1 304 Not Modified\r\n\r\n", Method::GET), (Empty, true));
    assert_eq!(f("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", Method::GET), (Empty, false));
    assert_eq!(f("HTTP/1.1 100 Continue\r\n\r\n", Method::GET), (Empty, true));
    assert_eq!(f("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", Method::GET), (Upgrade, false));
    // Only chunked is decoded: another coding would reach the client unmarked.
    assert!(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Method::GET).is_err());
    assert_eq!(
        f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", Method::GET),
        (Chunked, false)
    );
    assert!(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", Method::GET).is_err());
    assert_eq!(f("HTTP/1.1 200 OK\r\n\r\n", Method::GET), (UntilClose, false));
    assert_eq!(f("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Method::GET), (Empty, true));
    assert_eq!(f("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n", Method::GET), (Length(7), true));
    assert_eq!(f("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\n", Method::GET), (Length(7), false));
    assert_eq!(f("HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\n", Method::GET), (Length(7), false));
    assert_eq!(
        f("HTTP/1.0 200 OK\r\nContent-Length: 7\r\nConnection: Keep-Alive\r\n\r\n", Method::GET),
        (Length(7), true)
    );
    for bad in ["7, 8", "-1", "+7", "", "0x10", "99999999999999999999999"] {
        let raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
        assert_eq!(parse(&raw, Method::GET).unwrap_err(), WireError::ContentLength, "{bad:?}");
    }
}

#[test]
fn a_list_of_equal_lengths_goes_on_as_one_value() {
    for raw in [
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nX-A: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5 ,5, 5\r\nX-A: 1\r\n\r\n",
    ] {
        let head = parse(raw, Method::GET).unwrap().unwrap();
        let lengths: Vec<_> = head.headers.get_all("content-length").iter().collect();
        assert_eq!(lengths, ["5"], "{raw:?}");
        assert_eq!((head.framing, head.keep_alive), (ResponseFraming::Length(5), true));
    }
    // A single value is passed on as the origin wrote it.
    let head = parse("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", Method::GET).unwrap().unwrap();
    assert_eq!(head.headers.get_all("content-length").iter().collect::<Vec<_>>(), ["7"]);
}

#[test]
fn a_response_transfer_coding_other_than_chunked_is_refused() {
    for te in ["gzip, chunked", "gzip", "chunked\r\nTransfer-Encoding: deflate"] {
        let raw = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
        assert!(parse(&raw, Method::GET).is_err(), "{te}");
    }
    assert!(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n", Method::GET).is_ok());
}

#[test]
fn an_http_1_0_response_with_a_transfer_coding_is_refused() {
    for te in ["chunked", "gzip, chunked", "gzip"] {
        let raw = format!("HTTP/1.0 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
        assert!(matches!(parse(&raw, Method::GET), Err(WireError::Head(_))), "{te}");
    }
}

#[test]
fn request_codings_other_than_one_chunked_are_refused() {
    let check = |values: &[&str]| {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::TRANSFER_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        check_request_codings(&h)
    };
    assert_eq!(check(&[]), Ok(()));
    assert_eq!(check(&["chunked"]), Ok(()));
    assert_eq!(check(&["Chunked"]), Ok(()));
    assert_eq!(check(&[" , chunked"]), Ok(()), "empty list elements are allowed");
    assert_eq!(check(&["gzip, chunked"]), Err(RequestCodingError::Unsupported("gzip".into())));
    assert_eq!(check(&["gzip", "chunked"]), Err(RequestCodingError::Unsupported("gzip".into())));
    assert_eq!(check(&["identity, chunked"]), Err(RequestCodingError::Unsupported("identity".into())));
    assert_eq!(check(&["x;q=1, chunked"]), Err(RequestCodingError::Unsupported("x".into())));
    assert_eq!(check(&["chunked, chunked"]), Err(RequestCodingError::ChunkedTwice));
    assert_eq!(check(&["chunked", "chunked"]), Err(RequestCodingError::ChunkedTwice));
}

#[test]
fn trailers_that_must_precede_the_content_are_not_written() {
    let mut t = HeaderMap::new();
    for (n, v) in [
        ("host", "evil.test"),
        ("content-length", "1"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-proto", "https"),
        ("authorization", "Basic eA=="),
        ("transfer-encoding", "chunked"),
        ("if-match", "*"),
        ("x-checksum", "42"),
        ("grpc-status", "0"),
    ] {
        t.append(HeaderName::from_static(n), HeaderValue::from_static(v));
    }
    assert_eq!(&chunked_end(Some(&t))[..], b"0\r\nx-checksum: 42\r\ngrpc-status: 0\r\n\r\n");
    assert_eq!(&chunked_end(Some(&HeaderMap::new()))[..], b"0\r\n\r\n");
}

#[test]
fn a_length_beside_transfer_encoding_is_not_passed_on() {
    let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    let head = parse_response_head(&mut buf, &Method::GET).unwrap().unwrap();
    assert!(!head.headers.contains_key("content-length"));
    assert_eq!((head.framing, head.keep_alive), (ResponseFraming::Chunked, false));
    let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n");
    assert!(parse_response_head(&mut buf, &Method::GET).is_err(), "a coding Spillway does not decode");
}

#[test]
fn a_head_at_the_size_limit_keeps_every_value_whole() {
    // Offsets into the head are kept as u16: the last header of a head just
    // under 64 KiB must come out intact.
    let filler = "f".repeat(MAX_RESPONSE_HEAD - 200);
    let raw = format!("HTTP/1.1 200 OK\r\nX-Filler: {filler}\r\nX-Last: tail-value\r\nContent-Length: 0\r\n\r\n");
    assert!(raw.len() <= MAX_RESPONSE_HEAD && raw.len() > u16::MAX as usize - 300, "{}", raw.len());
    let head = parse(&raw, Method::GET).unwrap().unwrap();
    assert_eq!(head.headers["x-filler"].as_bytes(), filler.as_bytes());
    assert_eq!(head.headers["x-last"], "tail-value");
    let over = format!("HTTP/1.1 200 OK\r\nX-Filler: {}\r\n\r\n", "f".repeat(MAX_RESPONSE_HEAD));
    assert_eq!(parse(&over, Method::GET).unwrap_err(), WireError::HeadTooLarge);
}
