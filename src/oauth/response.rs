//! Building the responses the authorization server writes itself: JSON (no-store; the public
//! documents CORS-open), HTML pages (not frameable, no scripts) and redirects.
//! Every response has a body length, which Pingora needs to finish locally written responses.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde::Serialize;

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Bytes> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = bytes_response(status, "application/json", Bytes::from(bytes));
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// A public, cacheable JSON document (metadata, JWKS).
pub fn public_json(body: Bytes) -> Response<Bytes> {
    public_json_cached(body, "public, max-age=300")
}

/// The JWKS: as [`public_json`], but cached for a minute at most, so a key published ahead of
/// a rotation reaches every verifier well within `assertion.key_rotation.publish_before`.
pub fn jwks_json(body: Bytes) -> Response<Bytes> {
    public_json_cached(body, "public, max-age=60")
}

fn public_json_cached(body: Bytes, cache_control: &'static str) -> Response<Bytes> {
    let mut resp = bytes_response(StatusCode::OK, "application/json", body);
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    allow_cors(h);
    resp
}

/// The public documents may be read from any origin (the gateway answers preflights, and adds
/// CORS headers for allowed origins to every other response).
fn allow_cors(h: &mut http::HeaderMap) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
}

pub fn html(status: StatusCode, page: String) -> Response<Bytes> {
    let mut resp = bytes_response(status, "text/html; charset=utf-8", Bytes::from(page));
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// A 302 to `location` (already a valid URL).
pub fn redirect(location: &str) -> Response<Bytes> {
    let mut resp = bytes_response(StatusCode::FOUND, "text/plain", Bytes::new());
    let h = resp.headers_mut();
    match HeaderValue::from_str(location) {
        Ok(v) => {
            h.insert(header::LOCATION, v);
        }
        Err(_) => return html(StatusCode::INTERNAL_SERVER_ERROR, "invalid redirect".into()),
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

pub fn bytes_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Bytes> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Adds a `Set-Cookie` header.
pub fn set_cookie(resp: &mut Response<Bytes>, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}
