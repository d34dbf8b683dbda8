//! `redirect_uri`: `oauth::redirect_uri::validate_for_registration` and `matches`.
//!
//! Input: a registered URI, a newline, a presented URI (no newline: the same URI twice).
//! Invariants: neither function panics; a URI that validates matches itself; when a presented
//! URI matches a registered one that is not the same string, both are `http` URIs on the same
//! loopback host with the same path and query (only the port may differ, RFC 8252 §7.3), and the
//! presented URI would validate too when the registered one does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxgate::fuzz_api::{matches, validate_for_registration};
use url::{Host, Url};

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (registered, presented) = text.split_once('\n').unwrap_or((text, text));
    let registered_valid = validate_for_registration(registered).is_ok();
    let _ = validate_for_registration(presented);
    if registered_valid {
        assert!(
            matches(registered, registered),
            "a valid URI must match itself: {registered:?}"
        );
    }
    if !matches(registered, presented) || registered == presented {
        return;
    }
    let (Ok(r), Ok(p)) = (Url::parse(registered), Url::parse(presented)) else {
        panic!("matched although one does not parse: {registered:?} / {presented:?}");
    };
    assert!(
        r.scheme() == "http" && p.scheme() == "http",
        "only http may differ: {registered:?} / {presented:?}"
    );
    assert!(
        is_loopback(&r) && is_loopback(&p),
        "only loopback may differ: {registered:?} / {presented:?}"
    );
    assert_eq!(r.host(), p.host(), "{registered:?} / {presented:?}");
    assert_eq!(r.path(), p.path(), "{registered:?} / {presented:?}");
    assert_eq!(r.query(), p.query(), "{registered:?} / {presented:?}");
    if registered_valid {
        assert!(
            validate_for_registration(presented).is_ok(),
            "{presented:?} matched valid {registered:?} but does not validate"
        );
    }
});
