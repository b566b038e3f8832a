use super::*;

const KEY_A: &[u8] = b"0123456789abcdef0123456789abcdef-a";
const KEY_B: &[u8] = b"0123456789abcdef0123456789abcdef-b";
const KEY_C: &[u8] = b"0123456789abcdef0123456789abcdef-c";
const PIN: Duration = Duration::from_secs(90);
const T0: u64 = 1_764_700_000_000;

fn keys(current: &[u8], previous: Option<&[u8]>) -> PinKeys {
    PinKeys::new(current, previous).unwrap()
}

fn secs(s: u64) -> u64 {
    s * 1000
}

#[test]
fn a_token_round_trips_with_its_time_and_site() {
    let k = keys(KEY_A, None);
    let text = k.sign(T0, b"dc1");
    assert!(text.len() <= MAX_TOKEN_CHARS);
    assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "a cookie-safe value");
    let token = k.verify(text.as_bytes()).unwrap();
    assert_eq!((token.written_ms, token.site()), (T0, &b"dc1"[..]));
    let long = k.sign(T0, &[b'x'; 40]);
    assert_eq!(k.verify(long.as_bytes()).unwrap().site(), &[b'x'; 32][..], "the site is cut to 32 bytes");
    assert!(long.len() <= MAX_TOKEN_CHARS);
}

#[test]
fn every_single_bit_flip_is_refused() {
    let k = keys(KEY_A, None);
    let text = k.sign(T0, b"dc1");
    let raw = URL_SAFE_NO_PAD.decode(&text).unwrap();
    for bit in 0..raw.len() * 8 {
        let mut bad = raw.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let verdict = k.verify(URL_SAFE_NO_PAD.encode(&bad).as_bytes()).unwrap_err();
        // Version and length bits make it malformed; key-id bits an unknown key; the rest a forgery.
        let expect = match bit / 8 {
            0 | 13 => PinVerdict::Malformed,
            1..=4 => PinVerdict::UnknownKey,
            _ => PinVerdict::Forged,
        };
        assert_eq!(verdict, expect, "bit {bit}");
    }
}

#[test]
fn wrong_and_retired_keys_are_unknown_and_rotation_keeps_the_last_one() {
    let a = keys(KEY_A, None);
    let old = a.sign(T0, b"dc1");
    let rotated = keys(KEY_B, Some(KEY_A));
    assert!(rotated.verify(old.as_bytes()).is_ok(), "one rotation: the previous key verifies");
    let new = rotated.sign(T0, b"dc1");
    assert_eq!(a.verify(new.as_bytes()).unwrap_err(), PinVerdict::UnknownKey, "signed with the new key");
    let twice = keys(KEY_C, Some(KEY_B));
    assert_eq!(twice.verify(old.as_bytes()).unwrap_err(), PinVerdict::UnknownKey, "two rotations old");
    assert!(twice.verify(new.as_bytes()).is_ok());
}

#[test]
fn a_forged_tag_under_a_known_key_id_is_a_forgery() {
    let k = keys(KEY_A, None);
    let mut raw = URL_SAFE_NO_PAD.decode(k.sign(T0, b"dc1")).unwrap();
    // A later write time, the tag kept: what a client would try.
    raw[5..13].copy_from_slice(&(T0 + secs(3600)).to_be_bytes());
    assert_eq!(k.verify(URL_SAFE_NO_PAD.encode(&raw).as_bytes()).unwrap_err(), PinVerdict::Forged);
}

#[test]
fn malformed_texts_are_refused_without_panicking() {
    let k = keys(KEY_A, None);
    let good = k.sign(T0, b"dc1");
    let huge = "A".repeat(1 << 16);
    let padded = format!("{good}=");
    let cut = &good[..good.len() - 1];
    let mut bad_site_len = URL_SAFE_NO_PAD.decode(&good).unwrap();
    bad_site_len[13] = 0;
    let zero_site = URL_SAFE_NO_PAD.encode(&bad_site_len);
    for text in ["", "x", "!!!!", &huge, &padded, cut, &zero_site, &good[1..], " "] {
        assert_eq!(k.verify(text.as_bytes()).unwrap_err(), PinVerdict::Malformed, "{:.40}", text);
    }
    let mut v2 = URL_SAFE_NO_PAD.decode(&good).unwrap();
    v2[0] = 2;
    assert_eq!(k.verify(URL_SAFE_NO_PAD.encode(&v2).as_bytes()).unwrap_err(), PinVerdict::Malformed);
}

#[test]
fn keys_shorter_than_32_bytes_and_a_repeated_key_are_refused() {
    assert_eq!(PinKeys::new(&[7; 31], None).unwrap_err(), (false, PinKeyError::TooShort(31)));
    assert_eq!(PinKeys::new(KEY_A, Some(&[7; 8])).unwrap_err(), (true, PinKeyError::TooShort(8)));
    assert_eq!(PinKeys::new(KEY_A, Some(KEY_A)).unwrap_err(), (true, PinKeyError::SameAsCurrent));
    assert!(PinKeys::new(&[7; 32], None).is_ok());
    assert_eq!(keys(KEY_A, Some(KEY_B)), keys(KEY_A, Some(KEY_B)));
    assert_ne!(keys(KEY_A, Some(KEY_B)), keys(KEY_A, None));
    assert!(!format!("{:?}", keys(KEY_A, None)).contains("0123"), "Debug shows ids, not keys");
}

#[test]
fn the_window_is_the_lag_plus_the_margin_capped_by_the_pin_time() {
    let margin = Duration::from_secs(5);
    let lag = |s| Some(Duration::from_secs(s));
    assert_eq!(pin_window(PIN, lag(5), margin, true), Duration::from_secs(10));
    assert_eq!(pin_window(PIN, lag(120), margin, true), PIN, "capped by the pin time");
    assert_eq!(pin_window(PIN, None, margin, true), PIN, "unknown lag: the whole pin time");
    assert_eq!(pin_window(PIN, lag(5), margin, false), PIN, "lag_aware off");
    assert_eq!(pin_window(PIN, Some(Duration::MAX), margin, true), PIN, "no overflow");
}

#[test]
fn five_seconds_of_lag_release_a_read_eleven_seconds_after_the_write() {
    let k = keys(KEY_A, None);
    let token = k.sign(T0, b"dc1");
    let window = pin_window(PIN, Some(Duration::from_secs(5)), Duration::from_secs(5), true);
    let at = |s: u64| k.judge(token.as_bytes(), T0 + secs(s), PIN, window);
    assert_eq!(at(0), PinVerdict::Pinned { until_ms: T0 + secs(10) });
    assert!(at(9).pins());
    assert_eq!(at(11), PinVerdict::LagReleased);
    assert_eq!(at(90), PinVerdict::Expired);
}

#[test]
fn a_hundred_and_twenty_seconds_of_lag_pin_for_the_whole_pin_time() {
    let k = keys(KEY_A, None);
    let token = k.sign(T0, b"dc1");
    let window = pin_window(PIN, Some(Duration::from_secs(120)), Duration::from_secs(5), true);
    for s in [0, 11, 60, 89] {
        assert!(k.judge(token.as_bytes(), T0 + secs(s), PIN, window).pins(), "{s} s");
    }
    assert_eq!(k.judge(token.as_bytes(), T0 + secs(90), PIN, window), PinVerdict::Expired);
    assert_eq!(
        k.judge(token.as_bytes(), T0 + secs(90) - 1, PIN, window),
        PinVerdict::Pinned { until_ms: T0 + secs(90) }
    );
}

#[test]
fn clock_skew_within_a_pin_time_pins_and_beyond_it_is_refused() {
    assert_eq!(judge_age(T0 + secs(3), T0, PIN, PIN), PinVerdict::Pinned { until_ms: T0 + secs(93) });
    assert_eq!(judge_age(T0 + secs(90), T0, PIN, PIN), PinVerdict::Pinned { until_ms: T0 + secs(180) });
    assert_eq!(judge_age(T0 + secs(90) + 1, T0, PIN, PIN), PinVerdict::Future);
    assert_eq!(judge_age(u64::MAX, T0, PIN, PIN), PinVerdict::Future);
    assert_eq!(judge_age(0, T0, PIN, PIN), PinVerdict::Expired);
    assert_eq!(judge_age(T0, T0, Duration::ZERO, Duration::ZERO), PinVerdict::Expired, "pinning off");
}

#[test]
fn a_fresh_token_wins_over_stale_duplicates_and_only_four_are_read() {
    let k = keys(KEY_A, None);
    let old = k.sign(T0 - secs(100), b"dc1");
    let fresh = k.sign(T0, b"dc1");
    let texts = [old.as_bytes(), b"junk", fresh.as_bytes()];
    assert!(k.judge_all(texts, T0, PIN, PIN).unwrap().pins());
    assert_eq!(k.judge_all(std::iter::empty(), T0, PIN, PIN), None);
    let late = [b"a".as_slice(), b"b", b"c", b"d", fresh.as_bytes()];
    assert_eq!(k.judge_all(late, T0, PIN, PIN), Some(PinVerdict::Malformed), "the fifth is not looked at");
}

#[test]
fn every_verdict_has_its_label() {
    let all = [
        PinVerdict::Malformed,
        PinVerdict::Forged,
        PinVerdict::UnknownKey,
        PinVerdict::Future,
        PinVerdict::Expired,
        PinVerdict::LagReleased,
        PinVerdict::Pinned { until_ms: 0 },
    ];
    let labels: Vec<_> = all.iter().map(PinVerdict::as_str).collect();
    assert_eq!(labels, PinVerdict::LABELS);
    assert!(all.iter().filter(|v| v.pins()).count() == 1, "only a fresh genuine token pins");
}

#[test]
fn the_cookie_has_the_attributes_of_the_issue() {
    let c = set_cookie("spillway_pin", "tok", PIN, true);
    assert_eq!(c, "spillway_pin=tok; Path=/; Max-Age=90; HttpOnly; SameSite=Lax; Secure");
    let plain = set_cookie("p", "t", Duration::from_millis(1500), false);
    assert_eq!(plain, "p=t; Path=/; Max-Age=2; HttpOnly; SameSite=Lax");
}
