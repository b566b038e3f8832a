//! Pure facts about a request's method and cookies that the gate and the
//! forward loop ask: is it a write (it pins), a method RFC 9110 knows, one
//! that may be sent twice, and the session cookie's value. No I/O.

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

/// Methods that may be sent twice without changing the outcome (RFC 9110 §9.2.2).
pub(crate) fn idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}
