//! CORS, answered by mxgate itself: an `OPTIONS` request never reaches the core (the MXCP core
//! opens a new MCP session for each one, and nothing unauthenticated may reach it).
//!
//! - The public documents (protected-resource and authorization-server metadata, JWKS) may be
//!   read from any origin (`*`; they carry no credentials).
//! - Everything else — the MCP endpoint, `/register`, `/token`, `/revoke` — only from the public
//!   URL's own origin and `allowed_origins` (none by default): a preflight from another origin
//!   is refused with 403, and responses to allowed origins carry `Access-Control-Allow-Origin`
//!   with that origin and expose `mcp-session-id` and `www-authenticate`, so browser-based MCP
//!   clients can follow a session and the 401 challenge.
//! - An `OPTIONS` that is not a preflight gets `204` with `Allow`.

use super::local_response::json_error;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};

const ALLOWED_METHODS: &str = "GET, POST, DELETE, OPTIONS";
const PUBLIC_METHODS: &str = "GET, OPTIONS";
const ALLOWED_REQUEST_HEADERS: &str =
    "authorization, content-type, mcp-session-id, mcp-protocol-version, last-event-id";
const EXPOSED_HEADERS: &str = "mcp-session-id, www-authenticate";
const PREFLIGHT_MAX_AGE: &str = "600";

/// Whether a request is a CORS preflight.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to any `OPTIONS` request. `public` for the metadata documents; `allowed` is the
/// request's `Origin` when it may call this path.
pub fn answer_options(headers: &HeaderMap, public: bool, allowed: Option<&HeaderValue>) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    if !is_preflight(&Method::OPTIONS, headers) {
        h.insert(
            header::ALLOW,
            HeaderValue::from_static(if public { PUBLIC_METHODS } else { ALLOWED_METHODS }),
        );
        return resp;
    }
    if public {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(PUBLIC_METHODS),
        );
    } else if let Some(origin) = allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOWED_METHODS),
        );
    } else {
        return json_error(
            StatusCode::FORBIDDEN,
            "invalid_origin",
            "cross-origin requests from this origin are not allowed (see allowed_origins)",
        );
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOWED_REQUEST_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    resp
}

/// The headers that let a page at an allowed `origin` read a response.
pub fn response_headers(origin: &HeaderValue) -> [(HeaderName, HeaderValue); 3] {
    [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
        (
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        ),
        (header::VARY, HeaderValue::from_static("Origin")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preflight_headers(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, origin.parse().unwrap());
        h.insert(header::ACCESS_CONTROL_REQUEST_METHOD, "POST".parse().unwrap());
        h
    }

    #[test]
    fn preflights_from_allowed_origins_get_the_mcp_headers() {
        let origin = HeaderValue::from_static("https://app.example");
        let resp = answer_options(&preflight_headers("https://app.example"), false, Some(&origin));
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let h = resp.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
        for name in [
            "authorization",
            "content-type",
            "mcp-session-id",
            "mcp-protocol-version",
            "last-event-id",
        ] {
            assert!(
                h[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap().contains(name),
                "{name}"
            );
        }
    }

    #[test]
    fn other_origins_are_refused_and_public_documents_are_open() {
        let refused = answer_options(&preflight_headers("https://evil.example"), false, None);
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(refused.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        let public = answer_options(&preflight_headers("https://evil.example"), true, None);
        assert_eq!(public.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let plain = answer_options(&HeaderMap::new(), false, None);
        assert_eq!(plain.status(), StatusCode::NO_CONTENT);
        assert_eq!(plain.headers()[header::ALLOW], ALLOWED_METHODS);
    }
}
