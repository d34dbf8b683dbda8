//! `/token`: the `authorization_code` grant (client, redirect URI and PKCE verified; a code works
//! once, and a replayed code revokes the session it created) and the `refresh_token` grant
//! (rotation: each refresh token works once; presenting a spent one revokes the session — see
//! `session::rotation`). This file speaks OAuth: it parses, checks the client and the grant, and
//! maps what [`crate::session::Sessions`] did to OAuth errors; it writes no session or token.

use super::clients::{ClientRecord, GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN};
use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use super::pkce::verify_s256;
use super::transactions::{AuthorizationRequest, CodeRecord};
use super::{response, AuthorizationServer, ClientAddress};
use crate::audit::{AuditEvent, AuditRecord};
use crate::metrics::metrics;
use crate::session::provider_refresh::Renewal;
use crate::session::rotation::RotationOutcome;
use crate::session::tokens::{IssuePolicy, IssuedTokens};
use crate::session::SessionRecord;
use crate::store::{Table, Update};
use crate::support::{now, token_hash};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::json;
use std::net::IpAddr;

impl AuthorizationServer {
    pub(super) async fn token(&self, req: Request<Bytes>) -> Result<Response<Bytes>, OAuthError> {
        let params = Params::parse(req.body())
            .map_err(|name| OAuthError::invalid_request(format!("parameter `{name}` appears more than once")))?;
        if let Some(client_id) = super::clients::presented_client_id(req.headers(), params.get("client_id")) {
            self.check_client_rate(super::Route::Token, &client_id)?;
        }
        let client = self
            .clients
            .authenticate(req.headers(), params.get("client_id"), params.get("client_secret"))
            .await?;
        let address = ClientAddress::of(&req);
        let (event, (session, issued)) = match params.get("grant_type") {
            Some(GRANT_AUTHORIZATION_CODE) => {
                let issued = self.redeem_code(&params, &client, address).await?;
                metrics().token_issued();
                (AuditEvent::TokenIssued, issued)
            }
            Some(GRANT_REFRESH_TOKEN) => {
                let refreshed = self.refresh(&params, &client, address).await?;
                metrics().token_refreshed();
                (AuditEvent::TokenRefreshed, refreshed)
            }
            Some(other) => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedGrantType,
                    format!("grant_type `{other}` is not supported"),
                ))
            }
            None => return Err(OAuthError::invalid_request("grant_type is required")),
        };
        crate::audit::record(session.audit(event).client_addr(address).reason(format!(
            "{} grant; scope: {}",
            params.get("grant_type").unwrap_or_default(),
            session.scope.join(" ")
        )));
        let mut body = json!({
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": session.scope.join(" "),
        });
        if let (Some(refresh), Some(map)) = (issued.refresh_token, body.as_object_mut()) {
            map.insert("refresh_token".into(), refresh.into());
        }
        Ok(response::json(StatusCode::OK, &body))
    }

    fn issue_policy(&self, client: &ClientRecord) -> IssuePolicy {
        IssuePolicy::from_settings(&self.settings, client.may_use_grant(GRANT_REFRESH_TOKEN))
    }

    async fn redeem_code(
        &self,
        params: &Params,
        client: &ClientRecord,
        address: Option<IpAddr>,
    ) -> Result<(SessionRecord, IssuedTokens), OAuthError> {
        let code = params
            .get("code")
            .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
        let verifier = params
            .get("code_verifier")
            .ok_or_else(|| OAuthError::invalid_request("code_verifier is required (PKCE)"))?;
        let hash = token_hash(code);
        let unknown = || OAuthError::invalid_grant("the authorization code is invalid or expired");
        // Everything the code's holder must prove is checked before the code is spent: a stranger
        // holding a leaked code can neither use it nor burn it (and so revoke the real login).
        let (request, session_id) = match self.store.get(Table::Codes, &hash).await?.ok_or_else(unknown)? {
            CodeRecord::Issued { request, session_id } => (request, session_id),
            CodeRecord::Redeemed { request, session_id } => {
                return Err(self
                    .code_replayed(request.as_ref(), &session_id, params, client, verifier, address)
                    .await)
            }
        };
        self.check_code_holder(&request, params, client, verifier)?;
        let spent = CodeRecord::Redeemed {
            request: Some(request.clone()),
            session_id: session_id.clone(),
        };
        let expires = now() + self.settings.tokens.authorization_code.as_secs();
        let update = self
            .store
            .update(
                Table::Codes,
                &hash,
                |_| expires,
                |current: &CodeRecord| matches!(current, CodeRecord::Issued { .. }).then(|| spent.clone()),
            )
            .await?;
        match update {
            Update::Changed { .. } => {}
            Update::Missing => return Err(unknown()),
            // Redeemed meanwhile by a request that proved the same: a replay by the code's holder.
            Update::Unchanged(_) => {
                return Err(self
                    .code_replayed(Some(&request), &session_id, params, client, verifier, address)
                    .await)
            }
        }
        let session = self.live_session(&session_id).await?;
        let issued = self
            .sessions
            .issue_tokens(&session, self.issue_policy(client), now())
            .await?;
        Ok((session, issued))
    }

    /// What a code's holder proves at redemption: the client it was issued to, the redirect URI
    /// of the authorization request, the PKCE verifier, and the same resource.
    fn check_code_holder(
        &self,
        request: &AuthorizationRequest,
        params: &Params,
        client: &ClientRecord,
        verifier: &str,
    ) -> Result<(), OAuthError> {
        if request.client_id != client.client_id {
            return Err(OAuthError::invalid_grant(
                "the authorization code was issued to another client",
            ));
        }
        match params.get("redirect_uri") {
            Some(r) if r != request.redirect_uri => {
                return Err(OAuthError::invalid_grant(
                    "redirect_uri differs from the authorization request",
                ))
            }
            None if request.redirect_uri_sent => {
                return Err(OAuthError::invalid_grant(
                    "redirect_uri is required: the authorization request had one",
                ))
            }
            _ => {}
        }
        if !verify_s256(verifier, &request.code_challenge) {
            return Err(OAuthError::invalid_grant(
                "the PKCE code_verifier does not match the code_challenge",
            ));
        }
        if let Some(resource) = params.get("resource") {
            if self.check_resource(&request.issuer, Some(resource))? != request.resource {
                return Err(OAuthError::new(
                    ErrorCode::InvalidTarget,
                    "resource differs from the authorization request",
                ));
            }
        }
        Ok(())
    }

    /// A spent code presented again. Only when the presenter proves to be the code's holder
    /// (client, redirect URI, verifier) is this the replay RFC 6749 §4.1.2 speaks of, and the
    /// tokens the first redemption issued are revoked; anyone else just gets `invalid_grant`.
    async fn code_replayed(
        &self,
        request: Option<&AuthorizationRequest>,
        session_id: &str,
        params: &Params,
        client: &ClientRecord,
        verifier: &str,
        address: Option<IpAddr>,
    ) -> OAuthError {
        let by_holder = request.is_none_or(|r| self.check_code_holder(r, params, client, verifier).is_ok());
        if !by_holder {
            return OAuthError::invalid_grant("the authorization code is invalid or expired");
        }
        let user = self.sessions.revoke_session_of_user(session_id).await;
        tracing::warn!(client_id = %client.client_id, "authorization code replayed; its session is revoked");
        let record = AuditRecord::new(AuditEvent::TokenRevoked)
            .client_id(&client.client_id)
            .session_id(session_id)
            .client_addr(address)
            .reason("authorization code replayed; the tokens it issued are revoked")
            .user_if_known(user.as_ref());
        crate::audit::record(record);
        OAuthError::invalid_grant("the authorization code was already used; the tokens it issued are revoked")
    }

    async fn refresh(
        &self,
        params: &Params,
        client: &ClientRecord,
        address: Option<IpAddr>,
    ) -> Result<(SessionRecord, IssuedTokens), OAuthError> {
        if !client.may_use_grant(GRANT_REFRESH_TOKEN) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client is not registered for the refresh_token grant",
            ));
        }
        let token = params
            .get("refresh_token")
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
        let now = now();
        let grace = self.settings.tokens.refresh_reuse_grace.as_secs();
        let session_id = match self
            .sessions
            .rotate_refresh_token(&token_hash(token), &client.client_id, now, grace)
            .await?
        {
            RotationOutcome::Rotated { session_id } | RotationOutcome::GraceRetry { session_id } => session_id,
            RotationOutcome::Reused { session_id, user } => {
                let record = AuditRecord::new(AuditEvent::RefreshTokenReuse)
                    .client_id(&client.client_id)
                    .session_id(session_id)
                    .client_addr(address)
                    .reason("a spent refresh token was presented again; the session is revoked")
                    .user_if_known(user.as_deref());
                crate::audit::record(record);
                return Err(OAuthError::invalid_grant(
                    "the refresh token was already used; the session is revoked",
                ));
            }
            RotationOutcome::Invalid => {
                return Err(OAuthError::invalid_grant(
                    "the refresh token is invalid, expired or revoked",
                ))
            }
        };
        let mut session = self.live_session(&session_id).await?;
        if self.settings.transport.stateless {
            // The new access token carries the provider token: renew it if it would expire first.
            let horizon = now + self.settings.tokens.access_token.as_secs();
            if self.sessions.renew_provider_tokens_before(&mut session, horizon).await == Renewal::Ended {
                return Err(OAuthError::invalid_grant(
                    "the sign-in at the identity provider has ended; sign in again",
                ));
            }
        }
        // Narrowing is allowed but not recorded: the token keeps the session's scope, which the
        // response reports, so the client sees exactly what it holds.
        if let Some(requested) = params.get("scope") {
            if requested
                .split_whitespace()
                .any(|s| !session.scope.iter().any(|g| g == s))
            {
                return Err(OAuthError::new(ErrorCode::InvalidScope, "a refresh cannot add scopes"));
            }
        }
        let issued = self
            .sessions
            .issue_tokens(&session, self.issue_policy(client), now)
            .await?;
        Ok((session, issued))
    }

    async fn live_session(&self, session_id: &str) -> Result<SessionRecord, OAuthError> {
        self.sessions
            .live(session_id, now())
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("the session has ended; sign in again"))
    }
}
