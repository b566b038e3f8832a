//! Pure facts about a request's method and cookies that the gate and the
//! forward loop ask: is it a write (it pins), a method RFC 9110 knows, one
//! that may be sent twice, and the values of a cookie (the session's, the
//! pin token's). No I/O.

use http::{HeaderMap, Method, Request};

/// Anything that is not a read: every method but GET, HEAD, OPTIONS and
/// TRACE, extension methods included (they may change state).
pub(crate) fn is_write(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// Whether the request writes: by its method, or by a method-override
/// field naming a write. Frameworks behind the proxy (Symfony, Laravel,
/// ASP.NET, Google's APIs) let a `GET` or `POST` carry the method the
/// application then acts on in `X-HTTP-Method-Override`, `X-HTTP-Method` or
/// `X-Method-Override`; a `GET` that says `DELETE` must neither spill to a
/// replica nor escape read-only DR, and it pins like the write it is.
pub(crate) fn writes<B>(req: &Request<B>) -> bool {
    is_write(req.method()) || overrides_to_a_write(req.headers())
}

/// Some method-override field names anything but a read method (an
/// unreadable value counts as a write: the stricter reading).
pub(crate) fn overrides_to_a_write(headers: &HeaderMap) -> bool {
    // One pass over the names, comparing lengths and a first byte before
    // any text: the common request carries none of them.
    headers.keys().any(|name| is_override(name.as_str()))
        && headers
            .iter()
            .filter(|(name, _)| is_override(name.as_str()))
            .any(|(_, value)| !names_a_read(value.as_bytes()))
}

fn is_override(name: &str) -> bool {
    matches!(name.len(), 13 | 17 | 22)
        && name.as_bytes()[0] == b'x'
        && matches!(name, "x-http-method" | "x-method-override" | "x-http-method-override")
}

fn names_a_read(value: &[u8]) -> bool {
    let value = value.trim_ascii();
    [&b"GET"[..], b"HEAD", b"OPTIONS", b"TRACE"].iter().any(|m| value.eq_ignore_ascii_case(m))
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

    fn request(method: Method, fields: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::builder().method(method);
        for (k, v) in fields {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap()
    }

    #[test]
    fn a_read_that_names_a_write_in_an_override_field_writes() {
        for field in ["x-http-method-override", "X-HTTP-Method", "x-method-override"] {
            for write in ["DELETE", "put", " PATCH ", "PURGE", "", "\u{e9}"] {
                let req = request(Method::GET, &[("accept", "*/*"), (field, write)]);
                assert!(writes(&req), "GET with {field}: {write:?}");
            }
            for read in ["GET", "head", " OPTIONS", "Trace"] {
                assert!(!writes(&request(Method::GET, &[(field, read)])), "GET with {field}: {read}");
            }
        }
    }

    #[test]
    fn any_override_field_naming_a_write_is_enough() {
        let two = request(Method::GET, &[("x-http-method-override", "GET"), ("x-http-method-override", "DELETE")]);
        assert!(writes(&two));
        let other = request(Method::GET, &[("x-http-method", "GET"), ("x-method-override", "POST")]);
        assert!(writes(&other));
    }

    #[test]
    fn a_write_stays_a_write_and_a_plain_read_a_read() {
        assert!(writes(&request(Method::POST, &[("x-http-method-override", "GET")])), "never more eligible to spill");
        assert!(!writes(&request(Method::GET, &[("x-http-methods", "DELETE"), ("x-forwarded-method", "DELETE")])));
        assert!(!writes(&request(Method::HEAD, &[])));
    }

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
