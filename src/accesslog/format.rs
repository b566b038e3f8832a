//! An [`Entry`] as one line of text, JSON or combined; run by the writer,
//! never on the data plane. Pure: bytes in, bytes out, unit-tested.
//!
//! Client-supplied bytes are escaped: in JSON as `\u00XX` for control
//! characters and bytes above 0x7e (a header value may hold obs-text that
//! is not UTF-8, so every line stays valid JSON); in combined as `\xXX`,
//! as nginx does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::entry::Entry;
use crate::config::LogFormat;

/// Appends `e` as one line (no newline) in `format`.
pub(crate) fn line(e: &Entry, format: LogFormat, out: &mut Vec<u8>) {
    match format {
        LogFormat::Json => json(e, out),
        LogFormat::Combined => combined(e, out),
    }
}

fn path(e: &Entry) -> &str {
    match (e.include_query, e.uri.path_and_query()) {
        (true, Some(pq)) => pq.as_str(),
        _ => e.uri.path(),
    }
}

fn json(e: &Entry, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    rfc3339(e.time, out);
    out.push(b'"');
    let mut id = [0; 32];
    field_str(out, "request_id", Some(e.request_id.bytes(&mut id)));
    field_str(out, "client", Some(ip(e).as_bytes()));
    field_str(out, "method", Some(e.method.as_str().as_bytes()));
    field_str(out, "host", e.host.as_ref().map(|h| h.as_bytes()));
    field_str(out, "path", Some(path(e).as_bytes()));
    field_str(out, "protocol", Some(version(e.version).as_bytes()));
    field_num(out, "status", Some(u64::from(e.status)));
    field_num(out, "bytes_in", e.bytes_in);
    field_num(out, "bytes_out", Some(e.bytes_out));
    field_ms(out, "duration_ms", Some(e.duration));
    field_ms(out, "upstream_ms", e.trace.upstream_time);
    field_str(out, "route", e.trace.route.as_deref().map(str::as_bytes));
    field_str(out, "pool", e.trace.pool.as_ref().map(|p| p.name.as_bytes()));
    field_str(out, "endpoint", e.trace.endpoint.as_ref().map(|p| p.addr.as_bytes()));
    let decision = e.decision();
    field_str(out, "decision", decision.map(|d| d.0.as_bytes()));
    field_str(out, "reason", decision.map(|d| d.1.as_bytes()));
    out.extend_from_slice(if e.pinned() { b",\"pinned\":true" } else { b",\"pinned\":false" });
    field_num(out, "retries", Some(u64::from(e.trace.retries)));
    out.extend_from_slice(if e.completed { b",\"completed\":true}" } else { b",\"completed\":false}" });
}

fn ip(e: &Entry) -> String {
    match e.client.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        v4 => v4.to_string(),
    }
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `,"key":"value"`, or `,"key":null`.
fn field_str(out: &mut Vec<u8>, key: &str, value: Option<&[u8]>) {
    key_of(out, key);
    match value {
        Some(v) => {
            out.push(b'"');
            json_escape(v, out);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn key_of(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn field_num(out: &mut Vec<u8>, key: &str, value: Option<u64>) {
    key_of(out, key);
    match value {
        Some(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

/// Milliseconds with three decimals (microseconds).
fn field_ms(out: &mut Vec<u8>, key: &str, value: Option<Duration>) {
    key_of(out, key);
    match value {
        Some(d) => millis(d, out),
        None => out.extend_from_slice(b"null"),
    }
}

fn millis(d: Duration, out: &mut Vec<u8>) {
    let us = d.as_micros();
    out.extend_from_slice(itoa::Buffer::new().format(us / 1000).as_bytes());
    out.push(b'.');
    let frac = (us % 1000) as u16;
    out.extend_from_slice(&[b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8]);
}

fn json_escape(v: &[u8], out: &mut Vec<u8>) {
    for &b in v {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(b),
            _ => {
                out.extend_from_slice(b"\\u00");
                out.extend_from_slice(&hex_byte(b));
            }
        }
    }
}

fn hex_byte(b: u8) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]
}

/// `IP - - [02/Dec/2026:16:30:01 +0000] "GET /p HTTP/1.1" 200 512 "ref" "ua"`
/// then Spillway's fields as `key=value`.
fn combined(e: &Entry, out: &mut Vec<u8>) {
    out.extend_from_slice(ip(e).as_bytes());
    out.extend_from_slice(b" - - [");
    clf_time(e.time, out);
    out.extend_from_slice(b"] \"");
    out.extend_from_slice(e.method.as_str().as_bytes());
    out.push(b' ');
    clf_escape(path(e).as_bytes(), out);
    out.push(b' ');
    out.extend_from_slice(version(e.version).as_bytes());
    out.extend_from_slice(b"\" ");
    out.extend_from_slice(itoa::Buffer::new().format(e.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(e.bytes_out).as_bytes());
    for h in [&e.referer, &e.user_agent] {
        out.extend_from_slice(b" \"");
        clf_escape(h.as_ref().map_or(&b"-"[..], |v| v.as_bytes()), out);
        out.push(b'"');
    }
    combined_extra(e, out);
}

fn combined_extra(e: &Entry, out: &mut Vec<u8>) {
    let mut id = [0; 32];
    kv(out, "request_id", Some(e.request_id.bytes(&mut id)));
    kv(out, "host", e.host.as_ref().map(|h| h.as_bytes()));
    kv(out, "route", e.trace.route.as_deref().map(str::as_bytes));
    kv(out, "pool", e.trace.pool.as_ref().map(|p| p.name.as_bytes()));
    kv(out, "endpoint", e.trace.endpoint.as_ref().map(|p| p.addr.as_bytes()));
    let decision = e.decision();
    kv(out, "decision", decision.map(|d| d.0.as_bytes()));
    kv(out, "reason", decision.map(|d| d.1.as_bytes()));
    kv(out, "pinned", Some(if e.pinned() { b"true" } else { b"false" }));
    kv(out, "retries", Some(itoa::Buffer::new().format(e.trace.retries).as_bytes()));
    kv(out, "bytes_in", e.bytes_in.map(|n| itoa::Buffer::new().format(n).as_bytes().to_vec()).as_deref());
    out.extend_from_slice(b" duration_ms=");
    millis(e.duration, out);
    out.extend_from_slice(b" upstream_ms=");
    match e.trace.upstream_time {
        Some(d) => millis(d, out),
        None => out.push(b'-'),
    }
    kv(out, "completed", Some(if e.completed { b"true" } else { b"false" }));
}

fn kv(out: &mut Vec<u8>, key: &str, value: Option<&[u8]>) {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    clf_escape(value.unwrap_or(b"-"), out);
}

fn clf_escape(v: &[u8], out: &mut Vec<u8>) {
    for &b in v {
        match b {
            b'"' | b'\\' | 0..=0x1f | 0x7f..=0xff => {
                out.extend_from_slice(b"\\x");
                out.extend_from_slice(&hex_byte(b));
            }
            _ => out.push(b),
        }
    }
}

/// UTC calendar fields of a time: (year, month, day, h, m, s, millis).
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem / 60 % 60, rem % 60, d.subsec_millis())
}

fn two(n: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&[b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]);
}

/// `2026-12-02T16:30:01.123Z` (RFC 3339, as RFC 5424's TIMESTAMP takes it).
pub(crate) fn rfc3339(t: SystemTime, out: &mut Vec<u8>) {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    out.extend_from_slice(itoa::Buffer::new().format(y).as_bytes());
    for (sep, n) in [(b'-', mo), (b'-', d), (b'T', h), (b':', mi), (b':', s)] {
        out.push(sep);
        two(n, out);
    }
    out.push(b'.');
    out.extend_from_slice(&[b'0' + (ms / 100) as u8, b'0' + (ms / 10 % 10) as u8, b'0' + (ms % 10) as u8, b'Z']);
}

/// `02/Dec/2026:16:30:01 +0000`.
fn clf_time(t: SystemTime, out: &mut Vec<u8>) {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, mo, d, h, mi, s, _) = civil(t);
    two(d, out);
    out.push(b'/');
    out.extend_from_slice(MONTHS[(mo - 1) as usize].as_bytes());
    out.push(b'/');
    out.extend_from_slice(itoa::Buffer::new().format(y).as_bytes());
    for n in [h, mi, s] {
        out.push(b':');
        two(n, out);
    }
    out.extend_from_slice(b" +0000");
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
