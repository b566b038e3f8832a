//! The path routing and `never_spill` see: the request target's path in
//! a normal form, so `//login`, `/%6Cogin`, `/./login`, `/a/../login` and
//! `/;x/login` all match a `/login` rule. The upstream still receives the
//! path exactly as the client sent it; only Spillway's own decisions use
//! this form.
//!
//! The normal form, applied segment by segment (RFC 3986 §6.2.2):
//! - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
//!   decoded; other escapes are kept, with upper-case hex digits;
//! - an escaped slash (`%2F`), a backslash and an escaped backslash
//!   (`%5C`) count as `/`: many origins (nginx's merge, PHP front
//!   controllers, IIS) treat them so, and for Spillway's decisions reading
//!   more spellings as a separator is the safe side;
//! - path parameters (`;…` to the end of a segment) are removed;
//! - empty segments (repeated slashes) are removed;
//! - `.` and `..` segments are resolved (§5.2.4), never above the root;
//! - a trailing slash is kept.
//!
//! Case is not folded here: `never_spill` compares without case by default
//! (`spill.never_spill_ignore_case`), route prefixes compare exactly.
//!
//! Pure and allocation-free for a path that is already normal (no `%`,
//! `;`, `//` or dot segment), which is almost every request.

use std::borrow::Cow;

/// The normal form of `path` (see the module doc). `path` is the request
/// target's path, starting with `/` (or `*` for `OPTIONS *`, returned as is).
pub(crate) fn normalize(path: &str) -> Cow<'_, str> {
    if is_normal(path.as_bytes()) {
        return Cow::Borrowed(path);
    }
    Cow::Owned(rewrite(path))
}

/// True when [`normalize`] would return `path` unchanged.
#[inline]
fn is_normal(p: &[u8]) -> bool {
    if p.first() != Some(&b'/') {
        return true; // `*`, or an empty path: nothing to normalise
    }
    let mut prev = 0u8;
    for (i, &b) in p.iter().enumerate() {
        if !SPECIAL[usize::from(b)] {
            prev = b;
            continue;
        }
        match b {
            b'%' | b';' | b'\\' => return false,
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => {
                // `/.` starts a dot segment only if `.` or `..` is the whole segment.
                let rest = &p[i..];
                let seg = rest.split(|&c| c == b'/').next().unwrap_or(rest);
                if seg == b"." || seg == b".." {
                    return false;
                }
            }
            _ => {}
        }
        prev = b;
    }
    true
}

/// Bytes [`is_normal`] has to look at.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'%' as usize] = true;
    t[b';' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'/' as usize] = true;
    t[b'.' as usize] = true;
    t
};

fn rewrite(path: &str) -> String {
    let mut segments: Vec<String> = Vec::new();
    let slashed = separators(path);
    let raw: Vec<&str> = slashed.split('/').skip(1).collect();
    let last = raw.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in raw.iter().enumerate() {
        let seg = seg.split(';').next().unwrap_or("");
        let seg = decode_unreserved(seg);
        match seg.as_str() {
            "" => trailing_slash = i == last,
            "." => trailing_slash = i == last,
            ".." => {
                segments.pop();
                trailing_slash = i == last;
            }
            _ => {
                segments.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

/// `path` with `%2F`, `%5C` and `\\` as `/`.
fn separators(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(i) = rest.find(['%', '\\']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let esc = tail.get(..3).map(str::to_ascii_uppercase);
        if let Some(after) = tail.strip_prefix('\\') {
            out.push('/');
            rest = after;
        } else if matches!(esc.as_deref(), Some("%2F" | "%5C")) {
            out.push('/');
            rest = &tail[3..];
        } else {
            out.push('%');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Decodes `%XX` escapes of unreserved characters; other escapes are kept
/// with upper-case hex, a `%` not followed by two hex digits is kept as is.
fn decode_unreserved(seg: &str) -> String {
    let b = seg.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2])) {
                let c = hi << 4 | lo;
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    out.push(c as char);
                } else {
                    out.push('%');
                    out.push(b[i + 1].to_ascii_uppercase() as char);
                    out.push(b[i + 2].to_ascii_uppercase() as char);
                }
                i += 3;
                continue;
            }
        }
        // Not an escape: copy one UTF-8 character.
        let ch = seg[i..].chars().next().expect("i is on a char boundary");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Does `path` (normal form) fall under `prefix`? With `ignore_case`, ASCII
/// letters compare without case.
#[inline]
pub(crate) fn has_prefix(path: &str, prefix: &str, ignore_case: bool) -> bool {
    match path.as_bytes().get(..prefix.len()) {
        Some(head) if ignore_case => head.eq_ignore_ascii_case(prefix.as_bytes()),
        Some(head) => head == prefix.as_bytes(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evasions_of_a_login_rule_all_normalise_to_it() {
        for p in [
            "/login",
            "//login",
            "/%6Cogin",
            "/%6cogin",
            "/./login",
            "/a/../login",
            "/;x/login",
            "/login;jsessionid=1",
            "/%2e/login",
            "/%2E%2E/login",
            "/../../login",
            "///a/b/../../login",
            "/%2Flogin",
            "/%2flogin",
            "/x/..%2Flogin",
            "/%2e%2e%2flogin",
            "/x%2F..%2Flogin",
            "/\\login",
            "/%5Clogin",
        ] {
            assert_eq!(normalize(p), "/login", "{p}");
        }
    }

    #[test]
    fn a_normal_path_is_borrowed_unchanged() {
        for p in ["/", "/login", "/api/v1/users", "/a.b/c..d/.e", "/x/", "*", "/caf\u{e9}"] {
            assert!(matches!(normalize(p), Cow::Borrowed(_)), "{p}");
            assert_eq!(normalize(p), p);
        }
    }

    #[test]
    fn reserved_escapes_are_kept_and_upper_cased() {
        assert_eq!(normalize("/a%2fb"), "/a/b", "an escaped slash is a separator");
        assert_eq!(normalize("/a%3f"), "/a%3F");
        assert_eq!(normalize("/a%zz"), "/a%zz", "not an escape: kept");
        assert_eq!(normalize("/a%4"), "/a%4");
        assert_eq!(normalize("/%"), "/%");
    }

    #[test]
    fn trailing_slashes_and_the_root() {
        assert_eq!(normalize("/a/"), "/a/");
        assert_eq!(normalize("/a//"), "/a/");
        assert_eq!(normalize("/a/."), "/a/");
        assert_eq!(normalize("/a/b/.."), "/a/");
        assert_eq!(normalize("/.."), "/");
        assert_eq!(normalize("//"), "/");
        assert_eq!(normalize("/;"), "/");
    }

    #[test]
    fn normal_form_is_a_fixed_point() {
        for p in ["//a/./b/../%63;x//", "/%2e%2e/%2E/x", "/a%2F..%2f/b", "/%25%32%65", "/\u{e9}%C3%A9"] {
            let once = normalize(p).into_owned();
            assert_eq!(normalize(&once), once, "{p} -> {once}");
        }
    }

    #[test]
    fn prefixes_compare_with_or_without_case() {
        assert!(has_prefix("/LOGIN", "/login", true));
        assert!(!has_prefix("/LOGIN", "/login", false));
        assert!(has_prefix("/login/x", "/login", false));
        assert!(!has_prefix("/log", "/login", true));
        assert!(has_prefix("/caf\u{c9}", "/caf", true), "a multi-byte tail is never split");
    }
}
