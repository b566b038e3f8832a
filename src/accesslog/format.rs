//! An [`Entry`] as one line of text, JSON or combined; run by the writer,
//! never on the data plane. Pure: bytes in, bytes out, unit-tested.
//!
//! Client-supplied bytes are escaped: in JSON as `\u00XX` for control
//! characters and bytes above 0x7e (a header value may hold obs-text that
//! is not UTF-8, so every line stays valid JSON); in combined as `\xXX`,
//! as nginx does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::entry::{Entry, Texts};
use crate::config::LogFormat;

/// Formats lines; keeps the date and time of the second it last wrote,
/// so a line costs three digits of time, not a calendar computation.
#[derive(Default)]
pub(crate) struct Formatter {
    /// `YYYY-MM-DDTHH:MM:SS.` of `second` (since the epoch), when set.
    stamp: Option<(u64, [u8; 20])>,
}

impl Formatter {
    /// Appends `e` as one line (no newline) in `format`.
    pub(crate) fn line(&mut self, e: &Entry, format: LogFormat, out: &mut Vec<u8>) {
        out.reserve(640);
        match format {
            LogFormat::Json => {
                self.json_request(e, out);
                json_outcome(e, out);
            }
            LogFormat::Combined => combined(e, out),
        }
    }

    /// RFC 3339 with milliseconds, the second's part cached.
    fn time(&mut self, t: SystemTime, out: &mut Vec<u8>) {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = d.as_secs();
        let stamp = match self.stamp {
            Some((s, stamp)) if s == second => stamp,
            _ => {
                let mut full = Vec::with_capacity(32);
                rfc3339(UNIX_EPOCH + Duration::from_secs(second), &mut full);
                match <[u8; 20]>::try_from(&full[..full.len().min(20)]) {
                    Ok(stamp) if full.len() == 24 => {
                        self.stamp = Some((second, stamp));
                        stamp
                    }
                    // A year past 9999: not cached.
                    _ => return rfc3339(t, out),
                }
            }
        };
        out.extend_from_slice(&stamp);
        let ms = d.subsec_millis();
        out.extend_from_slice(&[b'0' + (ms / 100) as u8, b'0' + (ms / 10 % 10) as u8, b'0' + (ms % 10) as u8, b'Z']);
    }

    /// `{"time":…,"request_id":…` up to `protocol`: what the head said.
    fn json_request(&mut self, e: &Entry, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        self.time(e.time, out);
        let mut id = [0; 32];
        out.extend_from_slice(b"\",\"request_id\":\"");
        // Hex, or a peer's id of plain bytes only (`RequestId::from_peer`).
        out.extend_from_slice(e.request_id.bytes(&mut id));
        out.extend_from_slice(b"\",\"client\":\"");
        ip(e.client.ip(), out);
        out.extend_from_slice(b"\",\"method\":\"");
        // A method is a token: nothing to escape.
        out.extend_from_slice(e.method.as_str().as_bytes());
        out.extend_from_slice(b"\",\"host\":");
        opt(e.host(), out);
        out.extend_from_slice(b",\"path\":\"");
        escaped(e.path(), out);
        out.extend_from_slice(b"\",\"protocol\":\"");
        out.extend_from_slice(version(e.version).as_bytes());
        out.push(b'"');
    }
}

/// `,"status":…}`: what came of the request.
fn json_outcome(e: &Entry, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"status\":");
    num(u64::from(e.status), out);
    out.extend_from_slice(b",\"bytes_in\":");
    match e.bytes_in {
        Some(n) => num(n, out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"bytes_out\":");
    num(e.bytes_out, out);
    out.extend_from_slice(b",\"duration_ms\":");
    millis(e.duration, out);
    out.extend_from_slice(b",\"upstream_ms\":");
    match e.trace.upstream_time {
        Some(d) => millis(d, out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"route\":");
    opt(e.trace.route.as_deref().map(str::as_bytes), out);
    out.extend_from_slice(b",\"pool\":");
    opt(e.trace.pool.as_ref().map(|p| p.name.as_bytes()), out);
    // An endpoint is a URI authority (no quote, backslash or control
    // byte can be in one), decisions and reasons are our own words:
    // nothing to escape.
    out.extend_from_slice(b",\"endpoint\":");
    opt_plain(e.trace.endpoint.as_ref().map(|p| p.addr.as_bytes()), out);
    let decision = e.decision();
    out.extend_from_slice(b",\"decision\":");
    opt_plain(decision.map(|d| d.0.as_bytes()), out);
    out.extend_from_slice(b",\"reason\":");
    opt_plain(decision.map(|d| d.1.as_bytes()), out);
    out.extend_from_slice(if e.pinned() { b",\"pinned\":true" } else { b",\"pinned\":false" });
    out.extend_from_slice(b",\"retries\":");
    num(u64::from(e.trace.retries), out);
    out.extend_from_slice(if e.completed { b",\"completed\":true}" } else { b",\"completed\":false}" });
}

/// An IP address, IPv4-mapped IPv6 as IPv4, written digit by digit.
fn ip(ip: std::net::IpAddr, out: &mut Vec<u8>) {
    let v4 = match ip {
        std::net::IpAddr::V4(v4) => v4,
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => return out.extend_from_slice(v6.to_string().as_bytes()),
        },
    };
    for (i, &n) in v4.octets().iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if n >= 100 {
            out.push(b'0' + n / 100);
        }
        if n >= 10 {
            out.push(b'0' + n / 10 % 10);
        }
        out.push(b'0' + n % 10);
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

/// `"value"` (escaped), or `null`.
fn opt(value: Option<&[u8]>, out: &mut Vec<u8>) {
    match value {
        Some(v) => {
            out.push(b'"');
            escaped(v, out);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// `"value"` of bytes known to need no escaping, or `null`.
fn opt_plain(value: Option<&[u8]>, out: &mut Vec<u8>) {
    match value {
        Some(v) => {
            debug_assert!(plain(v), "{v:?} needs escaping");
            out.push(b'"');
            out.extend_from_slice(v);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn num(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Milliseconds with three decimals (microseconds).
fn millis(d: Duration, out: &mut Vec<u8>) {
    let us = d.as_micros();
    out.extend_from_slice(itoa::Buffer::new().format(us / 1000).as_bytes());
    let frac = (us % 1000) as u16;
    out.extend_from_slice(&[b'.', b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8]);
}

/// Bytes a JSON string holds as they are (printable ASCII but `"` and `\`).
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b <= 0x7e {
        t[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    t
};

/// A JSON string's content: copied whole when nothing needs escaping.
fn escaped(v: &[u8], out: &mut Vec<u8>) {
    if plain(v) {
        out.extend_from_slice(v);
    } else {
        json_escape(v, out);
    }
}

/// Whether every byte of `v` is `PLAIN`: eight bytes at a time (a word
/// has a byte below 0x20, of 0x7f or above, or equal to `"` or `\`), the
/// tail through the table. The short strings of a line (host, path,
/// names) cost a few instructions each instead of a few per byte.
fn plain(v: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut words = v.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        // Below 0x20 (the classic "has less than", exact for n ≤ 128),
        // 0x7f or above (the high bit, or 0x7f plus one), a quote, a backslash.
        let low = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let high = (x | (x & !HIGH).wrapping_add(ONES)) & HIGH;
        let quote = has_zero(x ^ (ONES * u64::from(b'"')));
        let backslash = has_zero(x ^ (ONES * u64::from(b'\\')));
        if low | high | quote | backslash != 0 {
            return false;
        }
    }
    words.remainder().iter().all(|&b| PLAIN[usize::from(b)])
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
    ip(e.client.ip(), out);
    out.extend_from_slice(b" - - [");
    clf_time(e.time, out);
    out.extend_from_slice(b"] \"");
    out.extend_from_slice(e.method.as_str().as_bytes());
    out.push(b' ');
    clf_escape(e.path(), out);
    out.push(b' ');
    out.extend_from_slice(version(e.version).as_bytes());
    out.extend_from_slice(b"\" ");
    out.extend_from_slice(itoa::Buffer::new().format(e.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(e.bytes_out).as_bytes());
    for h in [Texts::REFERER, Texts::USER_AGENT] {
        out.extend_from_slice(b" \"");
        clf_escape(e.texts.get(h).unwrap_or(b"-"), out);
        out.push(b'"');
    }
    combined_extra(e, out);
}

fn combined_extra(e: &Entry, out: &mut Vec<u8>) {
    let mut id = [0; 32];
    kv(out, "request_id", Some(e.request_id.bytes(&mut id)));
    kv(out, "host", e.host());
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
