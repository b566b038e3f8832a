//! The signed read-after-write pin that travels with the client: a cookie
//! any Spillway holding the key honours, across restarts, instances and
//! sites (issue 13).
//!
//! A token is base64url (no padding) of
//! `version (1) | key id (4) | write time, Unix ms (8, big-endian) |
//! site length (1) | site (1..=32) | HMAC-SHA256 over all of the above (32)`.
//! The key id is the first four bytes of SHA-256 over a domain tag and the
//! key, so a token signed with a key this instance no longer holds is told
//! apart from a forged one; the tag is checked in constant time
//! (`aws_lc_rs::hmac::verify`).
//!
//! Invariants: a token is decoded only when its text is at most
//! [`MAX_TOKEN_CHARS`] long (a hostile cookie costs no decode); a request
//! has at most [`MAX_TOKENS_PER_REQUEST`] of them looked at; what a token
//! decides can only keep a read on-prem ([`PinVerdict::pins`]), never send
//! one away. Time is an argument (`now_ms`); nothing here reads a clock.

use std::time::Duration;

use aws_lc_rs::{digest, hmac};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The token format this code writes and reads.
pub const VERSION: u8 = 1;
/// Shortest key accepted from `key_file` (and `previous_key_file`).
pub const MIN_KEY_BYTES: usize = 32;
/// Longest site name a token carries (as `runtime.site` allows).
pub const MAX_SITE_BYTES: usize = 32;
/// Longest token text looked at; anything longer is malformed unread.
pub const MAX_TOKEN_CHARS: usize = (MAX_TOKEN_BYTES * 4).div_ceil(3);
/// Pin cookies of one request looked at (duplicates, hostile headers).
pub const MAX_TOKENS_PER_REQUEST: usize = 4;

const TAG_BYTES: usize = 32;
const HEAD_BYTES: usize = 1 + 4 + 8 + 1;
const MIN_TOKEN_BYTES: usize = HEAD_BYTES + 1 + TAG_BYTES;
const MAX_TOKEN_BYTES: usize = HEAD_BYTES + MAX_SITE_BYTES + TAG_BYTES;
const KEY_ID_TAG: &[u8] = b"spillway pin key id v1\0";

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinKeyError {
    #[error("is {0} bytes long: a pin key needs at least {MIN_KEY_BYTES} (e.g. `openssl rand -hex 32`)")]
    TooShort(usize),
    #[error("has the same key id as key_file: rotate to a different key")]
    SameAsCurrent,
}

/// One HMAC key with its id.
#[derive(Clone)]
struct PinKey {
    id: [u8; 4],
    /// SHA-256 of the key: equality without keeping the bytes around.
    fingerprint: [u8; 32],
    key: hmac::Key,
}

impl PinKey {
    fn new(bytes: &[u8]) -> Result<Self, PinKeyError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(PinKeyError::TooShort(bytes.len()));
        }
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(KEY_ID_TAG);
        ctx.update(bytes);
        let id_digest = ctx.finish();
        let mut fingerprint = [0; 32];
        fingerprint.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
        let mut id = [0; 4];
        id.copy_from_slice(&id_digest.as_ref()[..4]);
        Ok(PinKey { id, fingerprint, key: hmac::Key::new(hmac::HMAC_SHA256, bytes) })
    }
}

/// The signing key and the one before it (accepted, never used to sign),
/// for rotation: deploy the new key as `key_file` with the old one as
/// `previous_key_file` everywhere, and tokens of both verify meanwhile.
#[derive(Clone)]
pub struct PinKeys {
    current: PinKey,
    previous: Option<PinKey>,
}

impl std::fmt::Debug for PinKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = |id: &[u8; 4]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
        f.debug_struct("PinKeys")
            .field("current_id", &hex(&self.current.id))
            .field("previous_id", &self.previous.as_ref().map(|k| hex(&k.id)))
            .finish()
    }
}

impl PartialEq for PinKeys {
    fn eq(&self, other: &Self) -> bool {
        self.current.fingerprint == other.current.fingerprint
            && self.previous.as_ref().map(|k| k.fingerprint) == other.previous.as_ref().map(|k| k.fingerprint)
    }
}

/// A token whose tag verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinToken {
    /// When the write was answered, Unix milliseconds.
    pub written_ms: u64,
    site: [u8; MAX_SITE_BYTES],
    site_len: u8,
}

impl PinToken {
    /// The site that took the write.
    pub fn site(&self) -> &[u8] {
        &self.site[..usize::from(self.site_len)]
    }
}

/// Why a token is not honoured, or that it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PinVerdict {
    /// Not base64url, the wrong length or version, a bad site.
    Malformed,
    /// A known key id, but the tag does not verify.
    Forged,
    /// Signed with a key this instance does not hold (two rotations old,
    /// another deployment's key).
    UnknownKey,
    /// Written more than one pin time in the future: a clock far off.
    Future,
    /// Older than the pin time.
    Expired,
    /// Genuine and within the pin time, but older than the cloud's lag plus
    /// the margin (`lag_aware`): the replicas have it already.
    LagReleased,
    /// Genuine and fresh: the read stays on-prem until `until_ms`.
    Pinned { until_ms: u64 },
}

impl PinVerdict {
    /// Every label [`as_str`](Self::as_str) returns.
    pub const LABELS: [&'static str; 7] =
        ["malformed", "forged", "unknown_key", "future", "expired", "lag_released", "pinned"];

    /// The `result` label of `spillway_pin_tokens_total`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Forged => "forged",
            Self::UnknownKey => "unknown_key",
            Self::Future => "future",
            Self::Expired => "expired",
            Self::LagReleased => "lag_released",
            Self::Pinned { .. } => "pinned",
        }
    }

    /// Whether the token keeps the read on-prem.
    pub fn pins(&self) -> bool {
        matches!(self, Self::Pinned { .. })
    }
}

/// How long a write pins its reads: the pin time, or with `lag_aware` and a
/// known lag, the lag plus `margin` capped by the pin time. An unknown lag
/// pins for the whole pin time.
pub fn pin_window(pin_time: Duration, lag: Option<Duration>, margin: Duration, lag_aware: bool) -> Duration {
    match lag.filter(|_| lag_aware) {
        Some(lag) => lag.saturating_add(margin).min(pin_time),
        None => pin_time,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl PinKeys {
    /// `current` signs and verifies; `previous` only verifies.
    pub fn new(current: &[u8], previous: Option<&[u8]>) -> Result<Self, (bool, PinKeyError)> {
        let current = PinKey::new(current).map_err(|e| (false, e))?;
        let previous = previous.map(PinKey::new).transpose().map_err(|e| (true, e))?;
        if previous.as_ref().is_some_and(|p| p.id == current.id) {
            return Err((true, PinKeyError::SameAsCurrent));
        }
        Ok(PinKeys { current, previous })
    }

    /// The token of a write answered at `written_ms` on `site` (1 to 32
    /// bytes, longer is cut).
    pub fn sign(&self, written_ms: u64, site: &[u8]) -> String {
        let site = &site[..site.len().min(MAX_SITE_BYTES)];
        debug_assert!(!site.is_empty(), "runtime.site is never empty");
        let mut raw = [0u8; MAX_TOKEN_BYTES];
        raw[0] = VERSION;
        raw[1..5].copy_from_slice(&self.current.id);
        raw[5..13].copy_from_slice(&written_ms.to_be_bytes());
        raw[13] = site.len() as u8;
        let body = HEAD_BYTES + site.len();
        raw[HEAD_BYTES..body].copy_from_slice(site);
        let tag = hmac::sign(&self.current.key, &raw[..body]);
        raw[body..body + TAG_BYTES].copy_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(&raw[..body + TAG_BYTES])
    }

    /// Decodes and verifies a token's text; allocation-free.
    pub fn verify(&self, text: &[u8]) -> Result<PinToken, PinVerdict> {
        if text.len() > MAX_TOKEN_CHARS {
            return Err(PinVerdict::Malformed);
        }
        let mut raw = [0u8; MAX_TOKEN_BYTES];
        let len = URL_SAFE_NO_PAD.decode_slice(text, &mut raw).map_err(|_| PinVerdict::Malformed)?;
        if !(MIN_TOKEN_BYTES..=MAX_TOKEN_BYTES).contains(&len) || raw[0] != VERSION {
            return Err(PinVerdict::Malformed);
        }
        let site_len = usize::from(raw[13]);
        let body = HEAD_BYTES + site_len;
        if site_len == 0 || site_len > MAX_SITE_BYTES || body + TAG_BYTES != len {
            return Err(PinVerdict::Malformed);
        }
        let key = self.key(&raw[1..5]).ok_or(PinVerdict::UnknownKey)?;
        hmac::verify(key, &raw[..body], &raw[body..len]).map_err(|_| PinVerdict::Forged)?;
        let mut site = [0u8; MAX_SITE_BYTES];
        site[..site_len].copy_from_slice(&raw[HEAD_BYTES..body]);
        let written_ms = u64::from_be_bytes(raw[5..13].try_into().expect("8 bytes"));
        Ok(PinToken { written_ms, site, site_len: site_len as u8 })
    }

    fn key(&self, id: &[u8]) -> Option<&hmac::Key> {
        std::iter::once(&self.current).chain(&self.previous).find(|k| k.id == id).map(|k| &k.key)
    }

    /// What a token says about a read at `now_ms`: verified, then judged
    /// against the pin time and the (lag-aware) `window`.
    pub fn judge(&self, text: &[u8], now_ms: u64, pin_time: Duration, window: Duration) -> PinVerdict {
        match self.verify(text) {
            Ok(token) => judge_age(token.written_ms, now_ms, pin_time, window),
            Err(verdict) => verdict,
        }
    }

    /// The best verdict over a request's pin cookies (at most
    /// [`MAX_TOKENS_PER_REQUEST`] looked at), `None` without any: one that
    /// pins wins, so a stale duplicate cannot undo a fresh token.
    pub fn judge_all<'a>(
        &self,
        texts: impl IntoIterator<Item = &'a [u8]>,
        now_ms: u64,
        pin_time: Duration,
        window: Duration,
    ) -> Option<PinVerdict> {
        texts.into_iter().take(MAX_TOKENS_PER_REQUEST).map(|t| self.judge(t, now_ms, pin_time, window)).max()
    }
}

/// A genuine token written at `written_ms`, read at `now_ms`.
pub fn judge_age(written_ms: u64, now_ms: u64, pin_time: Duration, window: Duration) -> PinVerdict {
    let (pin_ms, window_ms) = (millis(pin_time), millis(window.min(pin_time)));
    if written_ms > now_ms.saturating_add(pin_ms) {
        return PinVerdict::Future;
    }
    let age = now_ms.saturating_sub(written_ms);
    if age >= pin_ms {
        PinVerdict::Expired
    } else if age >= window_ms {
        PinVerdict::LagReleased
    } else {
        PinVerdict::Pinned { until_ms: written_ms.saturating_add(window_ms) }
    }
}

/// The `Set-Cookie` value of a token: host-only, the whole site, not for
/// scripts, sent on top-level navigations, `Secure` on TLS listeners,
/// alive for the pin time.
pub fn set_cookie(name: &str, token: &str, pin_time: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    let max_age = pin_time.as_millis().div_ceil(1000).max(1);
    format!("{name}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

#[cfg(test)]
#[path = "pin_token_tests.rs"]
mod tests;
