//! Ending sessions: `/revoke` (RFC 7009) for clients, `/logout` for people and API callers. Both
//! only speak HTTP and OAuth; the revocation itself (store and request cache at once) is done by
//! [`crate::session::Sessions`].
//!
//! `/revoke`: the client authenticates as at `/token`; revoking a refresh token ends its whole
//! session (RFC 7009 §2.1), an access token only itself. Unknown tokens, or tokens of another
//! client, are answered 200 with nothing revoked, as the RFC asks.
//!
//! `/logout` with a bearer token: that token's session ends, or every session of its user with
//! `all=true` ("cleared on logout", as the MXCP docs promise). Without a token (a browser):
//! mxgate's cookies are cleared — its sign-in and every remembered approval — and a signed-out
//! page is shown.

use super::cookies;
use super::error::{ErrorCode, OAuthError};
use super::metadata::LOGOUT_PATH;
use super::params::Params;
use super::{pages, response, AuthorizationServer, ClientAddress};
use crate::audit::{AuditEvent, AuditRecord};
use crate::identity::user::UserIdentity;
use crate::session::bearer::{bearer_token, BearerError};
use crate::session::lifecycle::TokenRevocation;
use crate::session::SessionRecord;
use crate::support::{new_opaque_token, now};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::json;
use std::net::IpAddr;
use subtle::ConstantTimeEq;

impl AuthorizationServer {
    /// `POST /revoke` (RFC 7009).
    pub(super) async fn revoke(&self, req: Request<Bytes>) -> Result<Response<Bytes>, OAuthError> {
        let params = Params::parse(req.body())
            .map_err(|name| OAuthError::invalid_request(format!("parameter `{name}` appears more than once")))?;
        if let Some(client_id) = super::clients::presented_client_id(req.headers(), params.get("client_id")) {
            self.check_client_rate(super::Route::Revoke, &client_id)?;
        }
        let client = self
            .clients
            .authenticate(req.headers(), params.get("client_id"), params.get("client_secret"))
            .await?;
        let token = params
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        if let Some(hint) = params.get("token_type_hint") {
            if hint != "access_token" && hint != "refresh_token" {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedTokenType,
                    format!("token_type_hint `{hint}` is not supported"),
                ));
            }
        }
        let address = ClientAddress::of(&req);
        match self.sessions.revoke_token(token, &client.client_id).await? {
            TokenRevocation::SessionEnded { session_id, user } => {
                tracing::info!(client_id = %client.client_id, session = %session_id, "refresh token revoked; session ended");
                let record = revoked(user.as_ref(), &client.client_id, &session_id, address);
                crate::audit::record(record.reason("refresh token revoked (/revoke); the session ended"));
            }
            TokenRevocation::AccessToken { session_id, user } => {
                tracing::info!(client_id = %client.client_id, "access token revoked");
                let record = revoked(user.as_ref(), &client.client_id, &session_id, address);
                crate::audit::record(record.reason("access token revoked (/revoke)"));
            }
            TokenRevocation::OtherClients => {
                tracing::warn!(client_id = %client.client_id, "a client tried to revoke another client's token")
            }
            TokenRevocation::Unknown => {}
        }
        Ok(response::json(StatusCode::OK, &json!({})))
    }

    /// `GET|POST /logout`.
    pub(super) async fn logout(&self, req: Request<Bytes>) -> Response<Bytes> {
        let origin = self.origin_of(&req).to_string();
        let Some(token) = bearer_token(req.headers()) else {
            return self.browser_logout(&origin, &req).await;
        };
        let session = match self.sessions.bearer().authenticate(token, now()).await {
            Ok(session) => session,
            Err(BearerError::Invalid(reason)) => {
                return OAuthError::new(ErrorCode::InvalidToken, reason).into_response();
            }
            Err(BearerError::Missing) => return self.browser_logout(&origin, &req).await,
            Err(BearerError::Store(e)) => return OAuthError::from(e).into_response(),
        };
        let query = Params::parse(req.uri().query().unwrap_or_default().as_bytes());
        let form = Params::parse(req.body());
        let all = [query, form]
            .into_iter()
            .flatten()
            .any(|p| matches!(p.get("all"), Some("true") | Some("1")));
        let address = ClientAddress::of(&req);
        let revoked = if all {
            match self.sessions.revoke_user_sessions(&session.record.user.key()).await {
                Ok(n) => n,
                Err(e) => return OAuthError::from(e).into_response(),
            }
        } else {
            self.sessions.revoke_session(session.id()).await;
            1
        };
        tracing::info!(user = %session.record.user.username, all, revoked, "logout");
        let reason = match all {
            true => format!("every session of the user ended ({revoked})"),
            false => "this session ended".to_string(),
        };
        audit_logout(&session.record, address, &reason);
        response::json(StatusCode::OK, &json!({"revoked_sessions": revoked}))
    }

    /// A browser. With a session, a GET shows a confirmation form and only its POST (carrying
    /// the browser's CSRF token, so another site cannot sign a person out) ends the session.
    /// Either way mxgate then forgets everything it remembers in the browser.
    async fn browser_logout(&self, origin: &str, req: &Request<Bytes>) -> Response<Bytes> {
        let policy = Self::cookies_for(origin);
        let headers = req.headers();
        if let Some(token) = policy.get(headers, cookies::SESSION) {
            let csrf = policy.get(headers, cookies::CSRF);
            if req.method() != http::Method::POST {
                let csrf = csrf
                    .filter(|c| c.len() == 43)
                    .map(str::to_string)
                    .unwrap_or_else(|| new_opaque_token(""));
                let mut resp = response::html(StatusCode::OK, pages::logout_confirmation(LOGOUT_PATH, &csrf));
                let ttl = self.settings.tokens.login.as_secs();
                response::set_cookie(&mut resp, &policy.set(cookies::CSRF, &csrf, ttl));
                return resp;
            }
            let form = Params::parse(req.body()).ok();
            let sent = form.as_ref().and_then(|f| f.get("csrf_token"));
            let matches = matches!((csrf, sent), (Some(c), Some(s)) if bool::from(c.as_bytes().ct_eq(s.as_bytes())));
            if !matches {
                return super::authorize::error_page(
                    StatusCode::FORBIDDEN,
                    "Sign-out not accepted",
                    "This sign-out did not come from mxgate's own page. Open /logout to sign out.",
                );
            }
            let address = ClientAddress::of(req);
            if let Ok(session) = self.sessions.bearer().authenticate(token, now()).await {
                self.sessions.revoke_session(session.id()).await;
                tracing::info!(user = %session.record.user.username, "browser logout");
                audit_logout(&session.record, address, "browser sign-out");
            } else if let Ok((snapshot, _)) = crate::session::stateless::open_sealed(self.store.cipher(), token) {
                // A stateless browser token past its short life still names a session that could
                // be renewed: end it too.
                if snapshot.client_id == super::browser_login::BROWSER_CLIENT_ID {
                    self.sessions.revoke_session(&snapshot.id).await;
                    tracing::info!(user = %snapshot.user.username, "browser logout");
                    audit_logout(&snapshot, address, "browser sign-out");
                }
            }
        }
        let mut resp = response::html(
            StatusCode::OK,
            pages::error(
                "Signed out",
                "mxgate has forgotten this browser's sign-in and approvals.",
            ),
        );
        for name in [cookies::CSRF, cookies::LOGIN, cookies::SESSION] {
            response::set_cookie(&mut resp, &policy.clear(name));
        }
        for name in policy.consent_cookies(headers) {
            response::set_cookie(&mut resp, &policy.clear(&name));
        }
        resp
    }
}

/// A `token_revoked` record for a token of `client_id` in session `session_id`.
fn revoked(user: Option<&UserIdentity>, client_id: &str, session_id: &str, address: Option<IpAddr>) -> AuditRecord {
    AuditRecord::new(AuditEvent::TokenRevoked)
        .user_if_known(user)
        .client_id(client_id)
        .session_id(session_id)
        .client_addr(address)
}

/// A logout of `session`'s user: the tokens it ended (`token_revoked`), then the `logout`.
fn audit_logout(session: &SessionRecord, address: Option<IpAddr>, reason: &str) {
    crate::audit::record(
        session
            .audit(AuditEvent::TokenRevoked)
            .client_addr(address)
            .reason(format!("logout: {reason}")),
    );
    crate::audit::record(session.audit(AuditEvent::Logout).client_addr(address).reason(reason));
}
