//! The request header as the core receives it, in one place: client-sent identity headers and
//! proxy information removed, the client's bearer token and mxgate's cookies removed (when
//! mxgate authenticates), `Host` and the forwarded headers set by mxgate, and the assertion
//! added. Invariant (fuzzed in `fuzz/`): no client-sent identity header, `Authorization` or
//! forwarding header survives.

use super::forwarded::{apply_forwarded, ForwardedFacts};
use super::strip_gateway_cookies::strip_gateway_cookies;
use super::strip_identity_headers::strip_identity_headers;
use crate::identity::assertion::ASSERTION_HEADER;
use http::HeaderValue;
use pingora::http::RequestHeader;
use std::borrow::Cow;

/// A header name as the core's frameworks may read it: lower-case, `_` as `-` (CGI/WSGI-style
/// environments map both to the same variable).
pub fn canonical_name(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b == b'_' || b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase().replace('_', "-"))
    } else {
        Cow::Borrowed(name)
    }
}

/// Removes every header whose name matches `unwanted`; returns the names removed.
pub fn remove_headers_where(request: &mut RequestHeader, unwanted: impl Fn(&str) -> bool) -> Vec<http::HeaderName> {
    let names: Vec<http::HeaderName> = request
        .headers
        .keys()
        .filter(|n| unwanted(n.as_str()))
        .cloned()
        .collect();
    for name in &names {
        request.remove_header(name);
    }
    names
}

/// A header map from name/value pairs (tests).
#[cfg(test)]
pub fn header_map(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    h
}

/// Cleans a request for the core. `authenticated` is false with `provider: none`, where the
/// client's own `Authorization` and cookies pass through.
pub fn clean_for_upstream(
    request: &mut RequestHeader,
    authenticated: bool,
    facts: &ForwardedFacts<'_>,
    assertion: Option<HeaderValue>,
) -> pingora::Result<()> {
    strip_identity_headers(request);
    if authenticated {
        // The client's token is for mxgate, never for the core.
        request.remove_header(&http::header::AUTHORIZATION);
        strip_gateway_cookies(request)?;
    }
    apply_forwarded(request, facts)?;
    if let Some(assertion) = assertion {
        request.insert_header(ASSERTION_HEADER, assertion)?;
    }
    Ok(())
}
