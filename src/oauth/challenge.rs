//! The 401 a protected path answers without a valid token (RFC 6750 §3, RFC 9728 §5.1):
//! `WWW-Authenticate: Bearer resource_metadata="…"`, with `error="invalid_token"` when a token
//! was sent but is not valid, and the scopes the resource needs. The body is a JSON OAuth error.

use super::error::{ErrorCode, OAuthError};
use super::response;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

/// Why the request was not admitted.
pub enum Challenge<'a> {
    /// No token: the client should start the authorization flow.
    NoToken,
    /// A token that is unknown, expired or revoked.
    InvalidToken(&'a str),
    /// A valid token without every required scope (403, RFC 6750 §3.1).
    InsufficientScope,
}

/// Quotes a value for an auth-param (RFC 9110 §11.2): backslash-escape `"` and `\`.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

pub fn unauthorized(resource_metadata: &str, scopes: &[String], challenge: Challenge<'_>) -> Response<Bytes> {
    let mut params = Vec::new();
    let mut status = StatusCode::UNAUTHORIZED;
    let error = match challenge {
        Challenge::NoToken => OAuthError::new(ErrorCode::InvalidToken, "authentication required: send a bearer token"),
        Challenge::InvalidToken(description) => {
            params.push(format!(
                "error=\"invalid_token\", error_description={}",
                quoted(description)
            ));
            OAuthError::new(ErrorCode::InvalidToken, description)
        }
        Challenge::InsufficientScope => {
            status = StatusCode::FORBIDDEN;
            let description = "the token lacks a scope this server requires";
            params.push(format!(
                "error=\"insufficient_scope\", error_description={}",
                quoted(description)
            ));
            OAuthError::new(ErrorCode::InsufficientScope, description)
        }
    };
    if !scopes.is_empty() {
        params.push(format!("scope={}", quoted(&scopes.join(" "))));
    }
    params.push(format!("resource_metadata={}", quoted(resource_metadata)));
    let mut resp = response::json(status, &error.body());
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {}", params.join(", "))) {
        resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, value);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_names_the_metadata_and_the_error() {
        let r = unauthorized(
            "http://h/.well-known/oauth-protected-resource/mcp",
            &[],
            Challenge::NoToken,
        );
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer resource_metadata=\"http://h/.well-known/oauth-protected-resource/mcp\""
        );
        let r = unauthorized(
            "http://h/m",
            &["mxcp:access".into()],
            Challenge::InvalidToken("it \"expired\""),
        );
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\", error_description=\"it \\\"expired\\\"\", scope=\"mxcp:access\", resource_metadata=\"http://h/m\""
        );
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["error"], "invalid_token");

        let r = unauthorized("http://h/m", &["a".into(), "b".into()], Challenge::InsufficientScope);
        assert_eq!(r.status(), 403);
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer error=\"insufficient_scope\", error_description=\"the token lacks a scope this server requires\", scope=\"a b\", resource_metadata=\"http://h/m\""
        );
    }
}
