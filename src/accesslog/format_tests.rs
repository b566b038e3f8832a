use std::time::{Duration, Instant, UNIX_EPOCH};

use http::HeaderValue;

use super::*;
use crate::accesslog::{RequestId, Trace};
use crate::burst::{SpillDecision, SpillReason};

fn entry() -> Entry {
    Entry {
        // 2026-12-02T16:30:01.250Z
        time: UNIX_EPOCH + Duration::from_millis(1_796_229_001_250),
        started: Instant::now(),
        duration: Duration::from_micros(12_345),
        client: "[::ffff:192.0.2.7]:50000".parse().unwrap(),
        method: http::Method::POST,
        version: http::Version::HTTP_11,
        texts: Texts::new([Some(b"www.sportchat.test"), Some(b"/chat/send?room=final"), None, Some(b"bot \"x\" \xff")]),
        include_query: true,
        status: 201,
        bytes_in: None,
        upload: None,
        bytes_out: 42,
        trace: Trace {
            route: Some("www".into()),
            decision: Some(SpillDecision::Cloud(SpillReason::OverLimit)),
            retries: 1,
            upstream_time: Some(Duration::from_micros(9_001)),
            ..Trace::default()
        },
        request_id: RequestId::Peer(HeaderValue::from_static("lb-7")),
        completed: true,
    }
}

#[test]
fn a_json_line_is_valid_json_with_every_field() {
    let mut out = Vec::new();
    Formatter::default().line(&entry(), LogFormat::Json, &mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
    let expect = serde_json::json!({
        "time": "2026-12-02T16:30:01.250Z", "request_id": "lb-7", "client": "192.0.2.7",
        "method": "POST", "host": "www.sportchat.test", "path": "/chat/send?room=final",
        "protocol": "HTTP/1.1", "status": 201, "bytes_in": null, "bytes_out": 42,
        "duration_ms": 12.345, "upstream_ms": 9.001, "route": "www", "pool": null, "endpoint": null,
        "decision": "cloud", "reason": "over_limit", "pinned": false, "retries": 1, "completed": true,
    });
    assert_eq!(v, expect);
}

#[test]
fn the_query_is_left_out_unless_asked_for() {
    let mut e = entry();
    e.include_query = false;
    let mut out = Vec::new();
    Formatter::default().line(&e, LogFormat::Json, &mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["path"], "/chat/send");
}

#[test]
fn the_word_at_a_time_check_agrees_with_the_table() {
    let table = |v: &[u8]| v.iter().all(|&b| PLAIN[usize::from(b)]);
    for b in 0..=255u8 {
        for at in 0..9 {
            let mut v = b"abcdefghijklmnop".to_vec();
            v[at] = b;
            assert_eq!(plain(&v), table(&v), "byte {b:#x} at {at}");
        }
    }
    let mut rng = fastrand::Rng::with_seed(14);
    for _ in 0..20_000 {
        let n = rng.usize(0..40);
        let v: Vec<u8> = (0..n).map(|_| if rng.u8(0..8) == 0 { rng.u8(..) } else { rng.u8(0x20..0x7f) }).collect();
        assert_eq!(plain(&v), table(&v), "{v:?}");
    }
}

#[test]
fn a_shed_request_says_so() {
    let mut e = entry();
    e.trace.decision = Some(SpillDecision::Queue(crate::burst::QueueReason::NoOverflowPool));
    e.trace.shed = true;
    let mut out = Vec::new();
    Formatter::default().line(&e, LogFormat::Json, &mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!((v["decision"].as_str(), v["reason"].as_str()), (Some("shed"), Some("no_overflow_pool")));
}

#[test]
fn a_combined_line_is_clf_then_our_fields() {
    let mut out = Vec::new();
    Formatter::default().line(&entry(), LogFormat::Combined, &mut out);
    let text = String::from_utf8(out).expect("escaped to ASCII");
    assert!(
        text.starts_with(
            r#"192.0.2.7 - - [02/Dec/2026:16:30:01 +0000] "POST /chat/send?room=final HTTP/1.1" 201 42 "-" "bot \x22x\x22 \xff" "#
        ),
        "{text}"
    );
    for kv in ["request_id=lb-7", "route=www", "pool=-", "decision=cloud", "reason=over_limit", "pinned=false"] {
        assert!(text.contains(kv), "{kv} in {text}");
    }
    assert!(text.contains("retries=1") && text.contains("duration_ms=12.345") && text.contains("upstream_ms=9.001"));
}

#[test]
fn timestamps_are_utc_calendar_dates() {
    let at = |secs: u64| {
        let mut out = Vec::new();
        rfc3339(UNIX_EPOCH + Duration::from_secs(secs), &mut out);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000Z");
    assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59.000Z");
    assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00.000Z");
}

#[test]
fn the_cached_second_moves_on() {
    let mut f = Formatter::default();
    let mut e = entry();
    let mut first = Vec::new();
    f.line(&e, LogFormat::Json, &mut first);
    e.time += Duration::from_millis(1_800);
    let mut second = Vec::new();
    f.line(&e, LogFormat::Json, &mut second);
    let v: serde_json::Value = serde_json::from_slice(&second).unwrap();
    assert_eq!(v["time"], "2026-12-02T16:30:03.050Z");
}

#[test]
fn the_fields_written_unescaped_need_no_escaping() {
    // `opt_plain` writes decisions and reasons as they are.
    for d in SpillDecision::ALL {
        assert!(plain(d.target().as_bytes()) && plain(d.reason().as_bytes()), "{d:?}");
    }
    assert!(plain(b"shed"));
    // An endpoint is a parsed URI authority: no quote, backslash, control byte or space.
    for bad in ["a\"b:80", "a\\b:80", "a b:80", "a\u{1}b:80"] {
        assert!(bad.parse::<http::uri::Authority>().is_err(), "{bad:?} parses as an authority");
    }
}
