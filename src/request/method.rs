//! Pure facts about a request's method and cookies that the gate and the
//! forward loop ask: is it a write (it pins), a method RFC 9110 knows, one
//! that may be sent twice, and the values of a cookie (the session's, the
//! pin token's). No I/O.

use http::{Method, Request};

/// Anything that is not a read: every method but GET, HEAD, OPTIONS and
/// TRACE, extension methods included (they may change state).
pub(crate) fn is_write(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// RFC 9110's methods and PATCH (RFC 5789).
pub(crate) fn is_known(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::DELETE
            | Method::CONNECT
            | Method::OPTIONS
            | Method::TRACE
            | Method::PATCH
    )
}

/// The value of the session cookie, if the request carries it.
pub(crate) fn session_cookie<'a, B>(req: &'a Request<B>, name: Option<&str>) -> Option<&'a [u8]> {
    let name = name?;
    req.headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v.as_bytes())
        })
}

/// The values of every cookie named `name`, in the order sent (all `Cookie`
/// fields, pairs split at `;`). Lazy: a caller that takes a few stops
/// there. A field that is not visible ASCII is skipped whole.
pub(crate) fn cookie_values<'a, B>(req: &'a Request<B>, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    req.headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v.as_bytes())
        })
}

/// Methods that may be sent twice without changing the outcome (RFC 9110 §9.2.2).
pub(crate) fn idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_values_come_from_every_field_in_order() {
        let req = Request::builder()
            .header("cookie", "a=1; pin=x; b=2")
            .header("cookie", "pin=y;pin=z")
            .header("cookie", "pin")
            .body(())
            .unwrap();
        let got: Vec<_> = cookie_values(&req, "pin").collect();
        assert_eq!(got, [&b"x"[..], b"y", b"z"]);
        assert_eq!(session_cookie(&req, Some("b")), Some(&b"2"[..]));
        assert_eq!(session_cookie(&req, None), None);
        assert_eq!(cookie_values(&req, "none").count(), 0);
    }
}
