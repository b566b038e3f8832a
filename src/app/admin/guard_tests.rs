use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    h
}

fn check(method: Method, uri: &str, pairs: &[(&str, &str)], token: Option<&str>) -> Result<(), Refusal> {
    let uri: Uri = uri.parse().unwrap();
    let headers = headers(pairs);
    admit(&Head { method: &method, uri: &uri, headers: &headers }, token)
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[test]
fn without_a_token_reads_pass_whatever_they_carry() {
    assert_eq!(check(Method::GET, "/status", &[("host", "evil.example")], None), Ok(()));
    assert_eq!(check(Method::HEAD, "/healthz", &[], None), Ok(()));
}

#[test]
fn without_a_token_a_reload_needs_a_loopback_host_and_json() {
    for host in ["127.0.0.1:9901", "127.0.0.2", "localhost:9901", "LOCALHOST", "[::1]:9901", "[::1]"] {
        assert_eq!(check(Method::POST, "/reload", &[("host", host), JSON], None), Ok(()), "{host}");
    }
    for host in ["evil.example", "evil.example:9901", "10.0.0.1:9901", "127.0.0.1.evil.example", "[::2]:1", ""] {
        assert_eq!(check(Method::POST, "/reload", &[("host", host), JSON], None), Err(Refusal::ForeignHost), "{host}");
    }
    assert_eq!(check(Method::POST, "/reload", &[JSON], None), Err(Refusal::ForeignHost), "no Host at all");
    let absolute = check(Method::POST, "http://evil.example/reload", &[("host", "127.0.0.1"), JSON], None);
    assert_eq!(absolute, Err(Refusal::ForeignHost), "an absolute-form target names the host");
    let both = check(Method::POST, "http://127.0.0.1/reload", &[("host", "evil.example"), JSON], None);
    assert_eq!(both, Err(Refusal::ForeignHost), "a loopback target does not excuse a foreign Host");
    let loopback = check(Method::POST, "http://127.0.0.1:9901/reload", &[("host", "localhost"), JSON], None);
    assert_eq!(loopback, Ok(()), "both loopback");
    assert_eq!(check(Method::POST, "http://[::1]/reload", &[JSON], None), Ok(()), "absolute form alone");
}

#[test]
fn without_a_token_a_reload_with_two_host_fields_is_malformed() {
    let two = [("host", "127.0.0.1"), ("host", "evil.example"), JSON];
    assert_eq!(check(Method::POST, "/reload", &two, None), Err(Refusal::MalformedHost));
    let same = [("host", "127.0.0.1"), ("host", "127.0.0.1"), JSON];
    assert_eq!(check(Method::POST, "/reload", &same, None), Err(Refusal::MalformedHost), "even the same one twice");
}

#[test]
fn without_a_token_a_reload_a_browser_could_send_simply_is_refused() {
    let host = ("host", "127.0.0.1:9901");
    for ct in
        ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx"]
    {
        let got = check(Method::POST, "/reload", &[host, ("content-type", ct)], None);
        assert_eq!(got, Err(Refusal::SimpleRequest), "{ct}");
    }
    assert_eq!(check(Method::POST, "/reload", &[host], None), Err(Refusal::SimpleRequest), "no Content-Type");
    let with_charset = [host, ("content-type", "Application/JSON; charset=utf-8")];
    assert_eq!(check(Method::POST, "/reload", &with_charset, None), Ok(()));
    assert_eq!(check(Method::PUT, "/reload", &[host], None), Err(Refusal::SimpleRequest), "any write method");
}

#[test]
fn without_a_token_a_foreign_origin_is_refused() {
    let host = ("host", "127.0.0.1:9901");
    for origin in ["https://evil.example", "null", "http://127.0.0.1.evil.example"] {
        let got = check(Method::POST, "/reload", &[host, JSON, ("origin", origin)], None);
        assert_eq!(got, Err(Refusal::ForeignHost), "{origin}");
    }
    let same = check(Method::POST, "/reload", &[host, JSON, ("origin", "http://127.0.0.1:9901")], None);
    assert_eq!(same, Ok(()));
}

#[test]
fn with_a_token_every_request_needs_the_bearer_and_nothing_else() {
    let token = Some("s3cret");
    assert_eq!(check(Method::GET, "/healthz", &[], token), Err(Refusal::Unauthorized));
    assert_eq!(check(Method::GET, "/status", &[("authorization", "Bearer s3cre")], token), Err(Refusal::Unauthorized));
    assert_eq!(check(Method::GET, "/status", &[("authorization", "Basic s3cret")], token), Err(Refusal::Unauthorized));
    let auth = ("authorization", "Bearer s3cret");
    assert_eq!(check(Method::GET, "/status", &[auth], token), Ok(()));
    let remote = [auth, ("host", "spillway-dc1.internal:9901")];
    assert_eq!(check(Method::POST, "/reload", &remote, token), Ok(()), "a token proves the caller");
}

#[test]
fn reloads_spend_a_bucket_of_burst_refilled_one_per_interval() {
    // 8 s: a rate of 1/8 per second, exact in binary, so waits are exact.
    let every = Duration::from_secs(8);
    let t0 = Instant::now();
    let at = |secs| t0 + Duration::from_secs(secs);
    let mut limit = ReloadLimit::new(2, every);
    assert_eq!(limit.admit(2, every, t0), Ok(()));
    assert_eq!(limit.admit(2, every, t0), Ok(()));
    assert_eq!(limit.admit(2, every, t0), Err(Refusal::RateLimited(every)), "the burst is spent");
    let Err(Refusal::RateLimited(wait)) = limit.admit(2, every, at(2)) else { panic!("allowed too early") };
    assert_eq!(wait, Duration::from_secs(6));
    assert_eq!(limit.admit(2, every, at(8)), Ok(()), "one earned back per interval");
    assert!(limit.admit(2, every, at(8)).is_err());
    // New settings (a reload changed them): a fresh, full bucket.
    let minute = Duration::from_secs(60);
    assert_eq!(limit.admit(1, minute, at(8)), Ok(()));
    assert!(limit.admit(1, minute, at(9)).is_err());
}

#[test]
fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
    assert_eq!(retry_after_secs(Duration::ZERO), 1);
    assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
    assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
    assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
}
