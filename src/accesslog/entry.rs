//! One access-log entry as the data plane captures it: copies of numbers,
//! the request's text (host, path, referer, user agent) copied into the
//! entry itself ([`Texts`]), `Arc`s of the route, pool and endpoint,
//! nothing formatted. The writer formats it.
//!
//! The text is copied, not cloned: a `Uri` or `HeaderValue` clone is a
//! reference into hyper's read buffer, which kept that buffer alive until
//! the writer had formatted the line (so hyper allocated a new one for the
//! next request) and freed it on the writer's thread.
//!
//! Request ids: a trusted peer's `X-Request-Id` is kept as it came; ours
//! are a per-process random prefix and a counter, 32 hex digits written
//! only when a head or a line needs them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Method, Version};

use crate::burst::SpillDecision;
use crate::upstream::{Endpoint, Pool};

/// The longest peer request id kept; a longer or odd one is replaced by ours.
const PEER_ID_MAX: usize = 128;

/// The id a request is logged, forwarded and answered with.
#[derive(Debug, Clone)]
pub(crate) enum RequestId {
    /// Sent by a `trusted_proxies` peer (printable ASCII without `"` and
    /// `\`, at most 128 bytes).
    Peer(HeaderValue),
    /// Ours: the process prefix and this counter value.
    Ours(u64),
}

/// Hex digits of one of our ids.
pub(crate) type IdText = [u8; 32];

impl RequestId {
    /// A peer's id when it is one we keep, else a new one of ours.
    pub(crate) fn from_peer(peer: Option<&HeaderValue>) -> Self {
        match peer {
            Some(v) if (1..=PEER_ID_MAX).contains(&v.len()) && v.as_bytes().iter().all(|&b| plain(b)) => {
                RequestId::Peer(v.clone())
            }
            _ => Self::next(),
        }
    }

    pub(crate) fn next() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        RequestId::Ours(COUNTER.fetch_add(1, Relaxed))
    }

    /// The id's bytes; `buf` holds ours.
    pub(crate) fn bytes<'a>(&'a self, buf: &'a mut IdText) -> &'a [u8] {
        match self {
            RequestId::Peer(v) => v.as_bytes(),
            RequestId::Ours(n) => {
                let (head, tail) = buf.split_at_mut(16);
                head.copy_from_slice(prefix());
                hex(*n, tail.try_into().expect("16 of 32"));
                &buf[..]
            }
        }
    }

    /// The id as a response header value.
    pub(crate) fn header_value(&self) -> HeaderValue {
        match self {
            RequestId::Peer(v) => v.clone(),
            RequestId::Ours(_) => {
                let mut buf = [0; 32];
                HeaderValue::from_bytes(self.bytes(&mut buf)).expect("hex digits are a header value")
            }
        }
    }
}

/// A byte a peer's id may hold: printable ASCII but `"` and `\` (so a
/// line never escapes an id).
fn plain(b: u8) -> bool {
    (33..=126).contains(&b) && b != b'"' && b != b'\\'
}

/// This process's random id prefix, in hex (formatted once).
fn prefix() -> &'static [u8; 16] {
    static PREFIX: OnceLock<[u8; 16]> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let mut out = [0; 16];
        hex(fastrand::u64(..), &mut out);
        out
    })
}

/// `n` as 16 hex digits, a byte (two digits) at a time.
fn hex(n: u64, out: &mut [u8; 16]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in n.to_be_bytes().iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// Bytes kept inline before [`Texts`] moves to the heap (a long URL or
/// user agent): enough for the host and path of nearly every request, and
/// for the referer and user agent of most.
const INLINE: usize = 320;

/// The request text an entry keeps: its host, path (with the query), and
/// for the combined format its referer and user agent, one after another.
pub(crate) struct Texts {
    inline: [u8; INLINE],
    /// Used instead of `inline` when the texts do not fit.
    heap: Vec<u8>,
    /// Where each text ends; `None`: absent.
    ends: [Option<u32>; 4],
}

impl Texts {
    pub(crate) const HOST: usize = 0;
    pub(crate) const PATH: usize = 1;
    pub(crate) const REFERER: usize = 2;
    pub(crate) const USER_AGENT: usize = 3;

    /// Copies `parts` (host, path, referer, user agent).
    pub(crate) fn new(parts: [Option<&[u8]>; 4]) -> Self {
        let total: usize = parts.iter().flatten().map(|p| p.len()).sum();
        let mut t = Texts { inline: [0; INLINE], heap: Vec::new(), ends: [None; 4] };
        if total > INLINE {
            t.heap.reserve_exact(total);
        }
        let mut at = 0;
        for (i, part) in parts.iter().enumerate() {
            let Some(p) = part else { continue };
            if t.heap.capacity() > 0 {
                t.heap.extend_from_slice(p);
            } else {
                t.inline[at..at + p.len()].copy_from_slice(p);
            }
            at += p.len();
            t.ends[i] = u32::try_from(at).ok();
        }
        t
    }

    /// Text `i` (one of the constants above), if the request had it.
    pub(crate) fn get(&self, i: usize) -> Option<&[u8]> {
        let end = self.ends[i]? as usize;
        let start = self.ends[..i].iter().rev().flatten().next().map_or(0, |&e| e as usize);
        let buf = if self.heap.capacity() > 0 { &self.heap[..] } else { &self.inline[..] };
        buf.get(start..end)
    }
}

/// What the request's way through the proxy decided (filled as it goes).
#[derive(Default)]
pub(crate) struct Trace {
    pub(crate) route: Option<Arc<str>>,
    pub(crate) pool: Option<Arc<Pool>>,
    pub(crate) endpoint: Option<Arc<Endpoint>>,
    pub(crate) decision: Option<SpillDecision>,
    /// Refused by the gate (503 after the queue).
    pub(crate) shed: bool,
    /// The gate found the client pinned on-prem after a write, by the
    /// in-process pins or a pin token (asked only
    /// over the limit, where a pin can matter).
    pub(crate) pinned: bool,
    /// Tries after the first (another endpoint, or a resend).
    pub(crate) retries: u8,
    /// From the request's send to the response head.
    pub(crate) upstream_time: Option<Duration>,
}

/// One request, for the access log.
pub(crate) struct Entry {
    pub(crate) time: SystemTime,
    pub(crate) started: Instant,
    pub(crate) duration: Duration,
    pub(crate) client: SocketAddr,
    pub(crate) method: Method,
    pub(crate) version: Version,
    /// Host, path and query, referer, user agent.
    pub(crate) texts: Texts,
    pub(crate) include_query: bool,
    pub(crate) status: u16,
    /// The request body's length when framed by one; for a body with no
    /// length (chunked, HTTP/2 without `content-length`) the bytes read
    /// from the client by the time the request ended (`upload`).
    pub(crate) bytes_in: Option<u64>,
    /// The count of a body with no length, filled as it is forwarded.
    pub(crate) upload: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// Response body bytes handed to the client.
    pub(crate) bytes_out: u64,
    pub(crate) trace: Trace,
    pub(crate) request_id: RequestId,
    /// The response ended with its last frame (not cancelled or aborted).
    pub(crate) completed: bool,
}

impl Entry {
    pub(crate) fn host(&self) -> Option<&[u8]> {
        self.texts.get(Texts::HOST)
    }

    /// The path, with the query when the log includes it.
    pub(crate) fn path(&self) -> &[u8] {
        let full = self.texts.get(Texts::PATH).unwrap_or(b"/");
        match self.include_query {
            true => full,
            false => full.iter().position(|&b| b == b'?').map_or(full, |q| &full[..q]),
        }
    }

    /// The decision as logged: `primary`, `cloud`, `queue`, `shed`, or none.
    pub(crate) fn decision(&self) -> Option<(&'static str, &'static str)> {
        let d = self.trace.decision?;
        Some((if self.trace.shed { "shed" } else { d.target() }, d.reason()))
    }

    /// Whether the gate found the client pinned on-prem after a write.
    pub(crate) fn pinned(&self) -> bool {
        self.trace.pinned
            || self.trace.decision == Some(SpillDecision::Primary(crate::burst::StayReason::PinnedAfterWrite))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_ids_are_a_prefix_and_a_counter_in_hex() {
        let (a, b) = (RequestId::next(), RequestId::next());
        let (mut ba, mut bb) = ([0; 32], [0; 32]);
        let (ta, tb) = (a.bytes(&mut ba).to_vec(), b.bytes(&mut bb).to_vec());
        assert_eq!(ta.len(), 32);
        assert!(ta.iter().all(u8::is_ascii_hexdigit));
        assert_eq!(ta[..16], tb[..16], "one prefix per process");
        assert_ne!(ta, tb);
        assert_eq!(a.header_value().as_bytes(), &ta[..]);
    }

    #[test]
    fn texts_are_kept_inline_or_on_the_heap_and_absent_ones_stay_absent() {
        let t = Texts::new([Some(b"www.example"), Some(b"/a?b=c"), None, Some(b"curl/8")]);
        assert!(t.heap.capacity() == 0, "small texts stay inline");
        assert_eq!(t.get(Texts::HOST), Some(&b"www.example"[..]));
        assert_eq!(t.get(Texts::PATH), Some(&b"/a?b=c"[..]));
        assert_eq!(t.get(Texts::REFERER), None);
        assert_eq!(t.get(Texts::USER_AGENT), Some(&b"curl/8"[..]));
        let long = vec![b'x'; 1000];
        let t = Texts::new([None, Some(&long), Some(b"r"), None]);
        assert_eq!((t.get(Texts::HOST), t.get(Texts::PATH)), (None, Some(&long[..])));
        assert_eq!(t.get(Texts::REFERER), Some(&b"r"[..]));
        let empty = Texts::new([Some(b""), Some(b"/"), None, None]);
        assert_eq!((empty.get(Texts::HOST), empty.get(Texts::PATH)), (Some(&b""[..]), Some(&b"/"[..])));
    }

    #[test]
    fn a_peer_id_is_kept_only_when_printable_and_short() {
        let ok = HeaderValue::from_static("lb-1234");
        assert!(matches!(RequestId::from_peer(Some(&ok)), RequestId::Peer(v) if v == "lb-1234"));
        for bad in ["", "has space", "quo\"te", "back\\slash", &"x".repeat(129)] {
            let v = HeaderValue::from_str(bad).unwrap();
            assert!(matches!(RequestId::from_peer(Some(&v)), RequestId::Ours(_)), "{bad:?} is replaced");
        }
        assert!(matches!(RequestId::from_peer(None), RequestId::Ours(_)));
    }
}
