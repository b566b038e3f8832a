//! One access-log entry as the data plane captures it: copies of numbers
//! and reference-counted clones of what the request already holds (`Uri`,
//! `HeaderValue`, `Arc` names), nothing formatted. The writer formats it.
//!
//! Request ids: a trusted peer's `X-Request-Id` is kept as it came; ours
//! are a per-process random prefix and a counter, 32 hex digits written
//! only when a head or a line needs them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Method, Uri, Version};

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
    pub(crate) uri: Uri,
    pub(crate) host: Option<HeaderValue>,
    pub(crate) referer: Option<HeaderValue>,
    pub(crate) user_agent: Option<HeaderValue>,
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
