//! `/token`: the `authorization_code` grant (client, redirect URI and PKCE verified; a code works
//! once, and a replayed code revokes the session it created) and the `refresh_token` grant
//! (rotation: each refresh token works once; presenting a spent one revokes the session).

use super::clients::{ClientRecord, GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN};
use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use super::pkce::verify_s256;
use super::transactions::{AuthorizationRequest, CodeRecord};
use super::{response, AuthorizationServer};
use crate::session::tokens::{issue_tokens, token_hash, IssuePolicy, IssuedTokens, TokenKind, TokenRecord};
use crate::session::SessionRecord;
use crate::store::{now, Table, Update};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::json;

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
        let (session, issued) = match params.get("grant_type") {
            Some(GRANT_AUTHORIZATION_CODE) => self.redeem_code(&params, &client).await?,
            Some(GRANT_REFRESH_TOKEN) => self.refresh(&params, &client).await?,
            Some(other) => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedGrantType,
                    format!("grant_type `{other}` is not supported"),
                ))
            }
            None => return Err(OAuthError::invalid_request("grant_type is required")),
        };
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
        IssuePolicy {
            access_ttl: self.settings.tokens.access_token,
            refresh_ttl: self.settings.tokens.refresh_token,
            with_refresh_token: client.may_use_grant(GRANT_REFRESH_TOKEN),
            stateless: self.settings.transport.stateless,
        }
    }

    async fn redeem_code(
        &self,
        params: &Params,
        client: &ClientRecord,
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
                    .code_replayed(request.as_ref(), &session_id, params, client, verifier)
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
                    .code_replayed(Some(&request), &session_id, params, client, verifier)
                    .await)
            }
        }
        let session = self.live_session(&session_id).await?;
        let issued = issue_tokens(&self.store, &session, self.issue_policy(client), now()).await?;
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
    ) -> OAuthError {
        let by_holder = request.is_none_or(|r| self.check_code_holder(r, params, client, verifier).is_ok());
        if !by_holder {
            return OAuthError::invalid_grant("the authorization code is invalid or expired");
        }
        self.revoke_session(session_id).await;
        tracing::warn!(client_id = %client.client_id, "authorization code replayed; its session is revoked");
        OAuthError::invalid_grant("the authorization code was already used; the tokens it issued are revoked")
    }

    async fn refresh(
        &self,
        params: &Params,
        client: &ClientRecord,
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
        let hash = token_hash(token);
        let invalid = || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
        let now = now();
        let grace = self.settings.tokens.refresh_reuse_grace.as_secs();
        // Rotation: a refresh token works once; within `refresh_token_reuse_grace` of that one
        // retry is allowed (a client that lost the response); any other reuse is theft.
        let update = self
            .store
            .update(
                Table::Tokens,
                &hash,
                |t: &TokenRecord| t.expires_at,
                |t: &TokenRecord| {
                    if t.kind != TokenKind::Refresh || t.client_id != client.client_id {
                        None
                    } else if !t.rotated {
                        Some(TokenRecord {
                            rotated: true,
                            rotated_at: now,
                            ..t.clone()
                        })
                    } else if grace > 0 && !t.grace_used && now <= t.rotated_at + grace {
                        Some(TokenRecord {
                            grace_used: true,
                            ..t.clone()
                        })
                    } else {
                        None
                    }
                },
            )
            .await?;
        let previous = match update {
            Update::Changed { from, .. } => from,
            Update::Missing => return Err(invalid()),
            Update::Unchanged(t) if t.kind != TokenKind::Refresh || t.client_id != client.client_id => {
                return Err(invalid())
            }
            Update::Unchanged(t) => {
                self.revoke_session(&t.session_id).await;
                tracing::warn!(client_id = %client.client_id, "a spent refresh token was presented again; its session is revoked");
                return Err(OAuthError::invalid_grant(
                    "the refresh token was already used; the session is revoked",
                ));
            }
        };
        if !previous.rotated {
            // A first use retires the access token issued with it; a grace retry leaves the
            // pair of the first use alone.
            if let Some(access_hash) = &previous.paired_access_hash {
                self.store.delete(Table::Tokens, access_hash).await?;
                self.bearer.revoke_token_everywhere(access_hash).await;
            }
        }
        let mut session = self.live_session(&previous.session_id).await?;
        if self.settings.transport.stateless {
            self.renew_provider_tokens(&mut session, now).await?;
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
        let issued = issue_tokens(&self.store, &session, self.issue_policy(client), now).await?;
        Ok((session, issued))
    }

    /// Stateless mode: access tokens carry the provider token and nothing renews it on the
    /// request path, so a refresh renews it when it would expire within the new token's life.
    async fn renew_provider_tokens(&self, session: &mut SessionRecord, now: u64) -> Result<(), OAuthError> {
        let tokens = &session.provider_tokens;
        let horizon = now + self.settings.tokens.access_token.as_secs();
        let (Some(expires_at), Some(refresh_token)) = (tokens.expires_at, tokens.refresh_token.clone()) else {
            return Ok(());
        };
        if expires_at > horizon {
            return Ok(());
        }
        let entry = self
            .providers
            .by_name(&session.user.provider)
            .unwrap_or(self.providers.primary());
        match entry.provider.refresh(&refresh_token).await {
            Ok(fresh) => {
                session.provider_tokens = fresh;
                session.save(&self.store).await?;
                Ok(())
            }
            Err(crate::providers::ProviderError::Rejected { .. }) => {
                self.revoke_session(&session.id).await;
                Err(OAuthError::invalid_grant(
                    "the sign-in at the identity provider has ended; sign in again",
                ))
            }
            Err(e) => {
                tracing::warn!(error = %e, "provider token refresh failed; keeping the current token");
                Ok(())
            }
        }
    }

    async fn live_session(&self, session_id: &str) -> Result<SessionRecord, OAuthError> {
        SessionRecord::load(&self.store, session_id)
            .await?
            .filter(|s| s.expires_at > now())
            .ok_or_else(|| OAuthError::invalid_grant("the session has ended; sign in again"))
    }
}
