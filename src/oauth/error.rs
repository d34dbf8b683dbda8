//! Every error an OAuth client can see, mapped to one JSON OAuth error response (RFC 6749 §5.2,
//! RFC 7591 §3.2.2, RFC 8707) in one place.

use super::response;
use bytes::Bytes;
use http::{Response, StatusCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    InvalidTarget,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
    InvalidRedirectUri,
    InvalidClientMetadata,
    InvalidToken,
    InsufficientScope,
    UnsupportedTokenType,
}

// === impl ErrorCode ===

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::AccessDenied => "access_denied",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::UnsupportedTokenType => "unsupported_token_type",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::InvalidClient | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::AccessDenied | Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// `Retry-After` when the store is unavailable.
const STORE_RETRY_AFTER_SECS: u64 = 5;

/// Why, and after how many seconds, a refused request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    RateLimited(u64),
    Unavailable(u64),
}

/// An OAuth error with a human-readable description (never containing a secret).
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
    /// Set when the request may be retried later: `Retry-After`, with `429` for a rate limit
    /// or `503` when the store is unavailable.
    pub retry_after: Option<RetryAfter>,
}

// === impl OAuthError ===

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    pub fn server_error(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::ServerError, description)
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": self.code.as_str(), "error_description": self.description})
    }

    /// The JSON response; `invalid_client` carries a Basic challenge (RFC 6749 §5.2), a rate
    /// limit `429` with `Retry-After`.
    pub fn into_response(self) -> Response<Bytes> {
        let status = match self.retry_after {
            Some(RetryAfter::RateLimited(_)) => StatusCode::TOO_MANY_REQUESTS,
            Some(RetryAfter::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            None => self.code.status(),
        };
        let mut resp = response::json(status, &self.body());
        if let Some(RetryAfter::RateLimited(secs) | RetryAfter::Unavailable(secs)) = self.retry_after {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        if self.code == ErrorCode::InvalidClient {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Basic realm=\"mxgate\""),
            );
        }
        resp
    }
}

impl From<crate::rate_limit::Limited> for OAuthError {
    fn from(limited: crate::rate_limit::Limited) -> Self {
        Self {
            retry_after: Some(RetryAfter::RateLimited(limited.retry_after_secs)),
            ..Self::new(
                ErrorCode::TemporarilyUnavailable,
                format!("too many requests; retry in {} seconds", limited.retry_after_secs),
            )
        }
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store failure while handling an OAuth request");
        if let crate::store::StoreError::Unavailable(_) = e {
            // A shared store that is down: the client should retry soon, not give up.
            return Self {
                retry_after: Some(RetryAfter::Unavailable(STORE_RETRY_AFTER_SECS)),
                ..Self::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the authorization server's store is unavailable; retry shortly",
                )
            };
        }
        Self::server_error("the authorization server could not access its store")
    }
}
