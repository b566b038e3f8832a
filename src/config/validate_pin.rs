//! Validation of `[spill.pin_token]`, the signed read-after-write pin: the
//! key files are read here (the validated reader: regular files of at most
//! 1 MiB), so a reload re-reads them and a short or unreadable key refuses
//! the whole config, naming the key.

use super::raw::*;
use super::types::PinTokenConfig;
use super::validate::Checker;
use crate::burst::PinKeys;

/// Header names the forwarding code writes or drops itself: a pin header
/// by one of these names would be overwritten or lost.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "cookie",
    "set-cookie",
    "via",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
];

/// `None` when something is wrong (the problems are recorded).
pub(super) fn pin_token(c: &mut Checker, raw: RawPinToken, session_cookie: Option<&str>) -> Option<PinTokenConfig> {
    const KEY: &str = "spill.pin_token";
    let before = c.count();
    let cookie_name = raw.cookie_name.unwrap_or_else(|| DEFAULT_PIN_COOKIE.to_string());
    if !is_cookie_name(&cookie_name) {
        c.fail(format!("{KEY}.cookie_name"), format!("{cookie_name:?} is not a cookie name (RFC 6265 token)"));
    } else if session_cookie == Some(cookie_name.as_str()) {
        c.fail(format!("{KEY}.cookie_name"), "must differ from spill.session_cookie");
    }
    let current = key_bytes(c, &format!("{KEY}.key_file"), &raw.key_file);
    let previous = raw.previous_key_file.map(|p| (p.clone(), key_bytes(c, &format!("{KEY}.previous_key_file"), &p)));
    let lag_margin = c.dur(&format!("{KEY}.lag_margin"), raw.lag_margin, DEFAULT_PIN_LAG_MARGIN, true);
    let forward_header = raw.forward_header.and_then(|name| forward_header(c, &format!("{KEY}.forward_header"), &name));
    if c.count() > before {
        return None;
    }
    let keys = match PinKeys::new(&current.1, previous.as_ref().map(|p| p.1 .1.as_slice())) {
        Ok(keys) => keys,
        Err((is_previous, e)) => {
            let (field, path) = match (is_previous, &previous) {
                (true, Some((_, (path, _)))) => ("previous_key_file", path),
                _ => ("key_file", &current.0),
            };
            c.fail(format!("{KEY}.{field}"), format!("{} {e}", path.display()));
            return None;
        }
    };
    Some(PinTokenConfig { cookie_name, keys, lag_aware: raw.lag_aware.unwrap_or(false), lag_margin, forward_header })
}

/// A key file's bytes without surrounding whitespace (a trailing newline
/// from `openssl rand -hex 32 > key` is not part of the key).
fn key_bytes(c: &mut Checker, key: &str, path: &str) -> (std::path::PathBuf, Vec<u8>) {
    let (full, bytes) = c.read_file(key, path);
    let trimmed = bytes.trim_ascii().to_vec();
    (full, trimmed)
}

/// RFC 6265 `cookie-name`: an RFC 2616 token.
fn is_cookie_name(name: &str) -> bool {
    const SEPARATORS: &[u8] = b"()<>@,;:\\\"/[]?={} \t";
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && !SEPARATORS.contains(&b))
}

fn forward_header(c: &mut Checker, key: &str, name: &str) -> Option<http::HeaderName> {
    let lower = name.to_ascii_lowercase();
    match http::HeaderName::from_bytes(lower.as_bytes()) {
        Err(_) => c.fail(key, format!("{name:?} is not a valid header name")),
        Ok(_) if lower.contains('_') => c.fail(key, "names with '_' are dropped on the way upstream"),
        Ok(_) if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-forwarded-") => {
            c.fail(key, format!("{name:?} is a header Spillway writes or drops itself"))
        }
        Ok(h) => return Some(h),
    }
    None
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    fn config(pin: &str, files: &[(&str, &[u8])]) -> Result<crate::config::LoadedConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::File::create(dir.path().join(name)).unwrap().write_all(bytes).unwrap();
        }
        let text = format!(
            "[[listener]]\nname='l'\nlisten='127.0.0.1:0'\n[pools.p]\nendpoints=['127.0.0.1:1']\n[[route]]\nprimary='p'\n[spill]\nsession_cookie='sid'\n[spill.pin_token]\n{pin}\n"
        );
        crate::config::from_str(&text, "t.toml".as_ref(), dir.path()).map_err(|e| e.to_string())
    }

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef\n";

    #[test]
    fn a_key_file_loads_with_defaults() {
        let loaded = config("key_file='k'", &[("k", KEY)]).unwrap();
        let pin = loaded.config.pin_token.unwrap();
        assert_eq!(pin.cookie_name, "spillway_pin");
        assert!(!pin.lag_aware);
        assert_eq!(pin.lag_margin, std::time::Duration::from_secs(5));
        assert_eq!(pin.forward_header, None);
        let same = config("key_file='k'", &[("k", b"  0123456789abcdef0123456789abcdef  ")]).unwrap();
        assert_eq!(same.config.pin_token.unwrap().keys, pin.keys, "surrounding whitespace is not key");
    }

    #[test]
    fn a_short_key_is_refused_naming_the_key() {
        let err = config("key_file='k'", &[("k", b"short\n")]).unwrap_err();
        assert!(err.contains("spill.pin_token.key_file") && err.contains("5 bytes long"), "{err}");
        let err = config("key_file='k'\nprevious_key_file='old'", &[("k", KEY), ("old", &[b'x'; 31])]).unwrap_err();
        assert!(err.contains("spill.pin_token.previous_key_file") && err.contains("31 bytes"), "{err}");
        let err = config("key_file='k'\nprevious_key_file='k'", &[("k", KEY)]).unwrap_err();
        assert!(err.contains("previous_key_file") && err.contains("same key id"), "{err}");
    }

    #[test]
    fn a_missing_key_file_and_bad_names_are_each_reported() {
        let err = config("key_file='absent'\ncookie_name='a b'\nforward_header='x-forwarded-pin'\nlag_margin='x'", &[])
            .unwrap_err();
        assert!(err.contains("lag_margin") || err.contains("duration"), "{err}");
        let err = config("key_file='absent'\ncookie_name='a b'\nforward_header='Via'", &[]).unwrap_err();
        for part in ["key_file", "cannot read", "cookie_name", "forward_header"] {
            assert!(err.contains(part), "{part}: {err}");
        }
        let err = config("key_file='k'\ncookie_name='sid'", &[("k", KEY)]).unwrap_err();
        assert!(err.contains("must differ from spill.session_cookie"), "{err}");
        let err = config("key_file='k'\nforward_header='x_pin'", &[("k", KEY)]).unwrap_err();
        assert!(err.contains("'_'"), "{err}");
        let err = config("key_file='k'\nkey='x'", &[("k", KEY)]).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn a_forward_header_and_lag_awareness_are_read() {
        let text = "key_file='k'\nlag_aware=true\nlag_margin='2s'\nforward_header='X-Spillway-Pinned-Until'";
        let pin = config(text, &[("k", KEY)]).unwrap().config.pin_token.unwrap();
        assert!(pin.lag_aware);
        assert_eq!(pin.lag_margin, std::time::Duration::from_secs(2));
        assert_eq!(pin.forward_header.unwrap().as_str(), "x-spillway-pinned-until");
    }
}
