//! The admission pipeline for a request to the core, in the order it runs: bearer token →
//! session; provider token still usable (refreshed if due); required scopes; MCP session owned
//! by this user; the assertion to forward. Each refusal is the response to send instead. The
//! per-request rules of `policies` decide next (`policy_gate`).
//! Plain `http` types; no Pingora here.

use super::local_response::json_error;
use super::mcp_session_binding::{SessionCheck, MCP_SESSION_HEADER};
use super::mcp_session_registry::McpSessionRegistry;
use crate::audit::AuditEvent;
use crate::identity::assertion::AssertionMinter;
use crate::metrics::{metrics, AuthReason};
use crate::oauth::challenge::Challenge;
use crate::oauth::{AuthorizationServer, PublicOrigin};
use crate::policy::required_scopes::RequiredScopes;
use crate::policy::SharedPolicies;
use crate::session::bearer::{bearer_token, BearerAuthenticator, BearerError, TOKEN_EXPIRED};
use crate::session::provider_refresh::Freshness;
use crate::session::{ActiveSession, Sessions};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use std::sync::Arc;

/// Authentication parts; absent with `provider: none` (plain pass-through). A reload builds a
/// new one that shares the token cache, the assertion minter and the MCP session registry.
pub struct AuthParts {
    pub server: Arc<AuthorizationServer>,
    pub bearer: Arc<BearerAuthenticator>,
    pub minter: Arc<AssertionMinter>,
    pub mcp_sessions: Arc<McpSessionRegistry>,
    pub required_scopes: RequiredScopes,
    /// Keeps the provider tokens of admitted sessions fresh.
    pub sessions: Sessions,
    /// The per-request rules of `policies` (see `policy_gate`).
    pub policies: SharedPolicies,
}

/// What admission looks at in a request.
pub struct RequestHead<'a> {
    pub method: &'a Method,
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub origin: Option<&'a PublicOrigin>,
    pub mode: Admission,
    /// The client's address (see `proxy_trust`), for the audit log.
    pub client_addr: Option<std::net::IpAddr>,
}

/// Who forwards the admitted request to the core, which decides what admission can know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// mxgate forwards it and sees the core's answer: a browser is sent to sign in, and only
    /// MCP session ids the core issued through mxgate are accepted.
    Proxied,
    /// A proxy asked (forward auth) and forwards it itself: no redirects (a proxy's auth check
    /// understands only 2xx, 401 and 403), and as mxgate never sees the core issue an MCP
    /// session id, an id is bound to the first user who presents it (see `forward_auth`).
    ForwardAuth,
}

// === impl RequestHead ===

impl RequestHead<'_> {
    /// `METHOD /path` for the audit log: never the query, which may carry anything.
    fn audit_line(&self) -> String {
        let path = self.path_and_query.split(['?', '#']).next().unwrap_or("/");
        format!("{} {path}", self.method)
    }

    /// A browser loading a page (GET that accepts HTML), as opposed to an MCP or API client.
    fn is_page_navigation(&self) -> bool {
        *self.method == Method::GET
            && self
                .headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|accept| accept.contains("text/html"))
    }
}

/// An admitted request: whose it is, the assertion to add, and a renewed browser session
/// cookie to return with the response.
pub struct Admitted {
    pub session: Arc<ActiveSession>,
    pub assertion: HeaderValue,
    pub set_cookie: Option<HeaderValue>,
}

// === impl AuthParts ===

impl AuthParts {
    pub async fn admit(&self, request: &RequestHead<'_>, now: u64) -> Result<Admitted, Response<Bytes>> {
        let (headers, origin) = (request.headers, request.origin);
        // A person's browser (a page, not an API call) is sent to sign in instead of a 401.
        let refuse = |reason: AuthReason, challenge| {
            metrics().authentication(reason);
            match challenge {
                Challenge::NoToken | Challenge::InvalidToken(_)
                    if request.mode == Admission::Proxied && request.is_page_navigation() =>
                {
                    self.server.login_redirect(origin, request.path_and_query)
                }
                challenge => self.server.unauthorized(origin, challenge),
            }
        };
        let (token, from_cookie) = match bearer_token(headers) {
            Some(token) => (token, false),
            None => (
                self.server
                    .browser_session(origin, headers)
                    .ok_or_else(|| refuse(AuthReason::MissingToken, Challenge::NoToken))?,
                true,
            ),
        };
        let mut set_cookie = None;
        let session = match self.bearer.authenticate(token, now).await {
            Ok(session) => session,
            Err(BearerError::Invalid(reason)) if from_cookie => {
                // A stateless browser session's short-lived token is renewed while its session lasts.
                let Some((renewed, cookie)) = self.server.renew_browser_session(origin, token, now).await else {
                    return Err(refuse(invalid(reason), Challenge::InvalidToken(reason)));
                };
                set_cookie = HeaderValue::from_str(&cookie).ok();
                self.bearer
                    .authenticate(&renewed, now)
                    .await
                    .map_err(|_| refuse(invalid(reason), Challenge::InvalidToken(reason)))?
            }
            Err(BearerError::Invalid(reason)) => {
                return Err(refuse(invalid(reason), Challenge::InvalidToken(reason)));
            }
            Err(BearerError::Missing) => return Err(refuse(AuthReason::MissingToken, Challenge::NoToken)),
            Err(BearerError::Store(e)) => {
                tracing::error!(error = %e, "store failure while checking a token");
                metrics().authentication(AuthReason::StoreUnavailable);
                return Err(json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the token store is not available",
                ));
            }
        };
        // A stateless snapshot cannot be written back; its provider token is renewed at the
        // refresh grant instead. A session whose provider login is over has been revoked.
        if !session.stateless && self.sessions.ensure_fresh(&session, now).await == Freshness::SessionEnded {
            let ended = Challenge::InvalidToken("the sign-in at the identity provider has ended; sign in again");
            return Err(refuse(AuthReason::SessionEnded, ended));
        }
        if !self.required_scopes.satisfied_by(&session.record.scope) {
            crate::audit::record(
                session
                    .record
                    .audit(AuditEvent::RequestDenied)
                    .client_addr(request.client_addr)
                    .reason(format!(
                        "insufficient scope: requires {}, granted {}",
                        self.required_scopes.as_slice().join(" "),
                        session.record.scope.join(" ")
                    ))
                    .request(request.audit_line()),
            );
            return Err(refuse(AuthReason::InsufficientScope, Challenge::InsufficientScope));
        }
        if let Some(mcp_session) = headers.get(MCP_SESSION_HEADER) {
            let user = session.record.user.key();
            let check = match mcp_session.to_str() {
                Ok(id) => {
                    self.mcp_sessions
                        .check(id, &user, request.mode, session.record.expires_at)
                        .await
                }
                Err(_) => SessionCheck::Unknown,
            };
            match check {
                SessionCheck::Allowed => {}
                SessionCheck::OtherUser => {
                    tracing::warn!(user = %user, "refused an MCP session id that belongs to another user");
                    metrics().authentication(AuthReason::UnknownMcpSession);
                    return Err(unknown_mcp_session());
                }
                SessionCheck::Unknown => {
                    tracing::debug!(user = %user, "refused an MCP session id mxgate did not see the core issue");
                    metrics().authentication(AuthReason::UnknownMcpSession);
                    return Err(unknown_mcp_session());
                }
            }
        }
        let assertion = session.assertion(&self.minter, now).map_err(|e| {
            tracing::error!(error = %e, "cannot sign the user assertion");
            metrics().authentication(AuthReason::AssertionFailed);
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "cannot sign the user assertion",
            )
        })?;
        metrics().authentication(AuthReason::Ok);
        Ok(Admitted {
            session,
            assertion,
            set_cookie,
        })
    }
}

/// The reason counted for a token refused as invalid: past its expiry, or anything else.
fn invalid(reason: &str) -> AuthReason {
    if reason == TOKEN_EXPIRED {
        AuthReason::Expired
    } else {
        AuthReason::InvalidToken
    }
}

/// `404` for an MCP session id this user may not use: MCP clients then start a new session.
fn unknown_mcp_session() -> Response<Bytes> {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "unknown MCP session; start a new one",
    )
}
