//! OpenID Connect Back-Channel Logout 1.0, the RP side: an identity provider POSTs
//! `logout_token=<JWT>` (a form) to the endpoint configured for it (`backchannel_logout` in
//! mxgate.yml), and every mxgate session of that provider's session (`sid`) — or, with only
//! `sub`, every session of that user at that provider — ends at once, on every replica
//! ([`crate::session::Sessions`] announces revocations).
//!
//! The endpoint is unauthenticated by nature, so: it is rate-limited per address, the body is
//! bounded (by the gateway) and so is the token, the token is verified by the provider
//! ([`crate::providers::logout_token`]) before anything is stored, and only then is its `jti`
//! remembered (until the token is too old to be accepted anyway) so it cannot be replayed.
//! Answers (§2.8): 200 with `Cache-Control: no-store`; 400 `invalid_request` (JSON) for a token
//! that does not verify; 503 only when the provider's keys or the store cannot be reached.
//! Nothing here is advertised to MCP clients.

use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use super::{response, AuthorizationServer, ClientAddress};
use crate::audit::{AuditEvent, AuditRecord};
use crate::providers::logout_token::{LogoutToken, MAX_TOKEN_LEN};
use crate::providers::ProviderError;
use crate::store::Table;
use crate::support::{now, token_hash};
use bytes::Bytes;
use http::{Request, Response, StatusCode};

impl AuthorizationServer {
    /// `POST <backchannel_logout path>`.
    pub(super) async fn backchannel_logout(&self, req: Request<Bytes>) -> Response<Bytes> {
        self.end_provider_session(&req)
            .await
            .unwrap_or_else(OAuthError::into_response)
    }

    async fn end_provider_session(&self, req: &Request<Bytes>) -> Result<Response<Bytes>, OAuthError> {
        let provider_name = self
            .settings
            .backchannel_logout
            .iter()
            .find(|endpoint| endpoint.path == req.uri().path())
            .map(|endpoint| endpoint.provider.as_str())
            .ok_or_else(|| OAuthError::invalid_request("no back-channel logout endpoint here"))?;
        let entry = self
            .providers
            .by_name(provider_name)
            .ok_or_else(|| OAuthError::server_error(format!("provider `{provider_name}` is not configured")))?;
        let params = Params::parse(req.body())
            .map_err(|name| OAuthError::invalid_request(format!("parameter `{name}` appears more than once")))?;
        let token = params
            .get("logout_token")
            .ok_or_else(|| OAuthError::invalid_request("logout_token is required"))?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(OAuthError::invalid_request(format!(
                "logout_token is larger than {MAX_TOKEN_LEN} bytes"
            )));
        }
        let logout = match entry.provider.verify_logout_token(token, now()).await {
            Ok(logout) => logout,
            Err(e @ ProviderError::Unreachable { .. }) => {
                tracing::warn!(provider = %provider_name, error = %e, "back-channel logout: cannot verify now");
                return Err(OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the provider's keys cannot be fetched now",
                ));
            }
            Err(e) => {
                tracing::info!(provider = %provider_name, reason = %e, "back-channel logout token refused");
                return Err(OAuthError::invalid_request(e.to_string()));
            }
        };
        if !self.remember_jti(provider_name, &logout).await? {
            tracing::info!(provider = %provider_name, "back-channel logout token replayed");
            return Err(OAuthError::invalid_request(
                "this logout token was already used (`jti`)",
            ));
        }
        // With `sid`, the sessions of that provider session (spec §2.7); with only `sub`, all of
        // the user's sessions at this provider.
        let (count, user, matched_by) = match (&logout.session, &logout.subject) {
            (Some(sid), _) => {
                let users = self.sessions.revoke_idp_session(provider_name, sid).await?;
                (users.len(), users.into_iter().next(), "sid")
            }
            (None, Some(sub)) => {
                let user_key = format!("{provider_name}:{sub}");
                (self.sessions.revoke_user_sessions(&user_key).await?, None, "sub")
            }
            (None, None) => return Err(OAuthError::invalid_request("neither `sub` nor `sid` is present")),
        };
        tracing::info!(provider = %provider_name, sessions = count, matched_by, "back-channel logout");
        let mut record = AuditRecord::new(AuditEvent::BackchannelLogout)
            .provider(provider_name)
            .client_addr(req.extensions().get::<ClientAddress>().map(|a| a.0))
            .reason(format!("{count} session(s) ended (matched by {matched_by})"));
        record = match (&user, &logout.subject) {
            (Some(user), _) => record.user(user),
            (None, Some(sub)) => record.user_key(format!("{provider_name}:{sub}")),
            (None, None) => record,
        };
        crate::audit::record(record);
        Ok(response::json(StatusCode::OK, &serde_json::json!({})))
    }

    /// Stores the token's `jti` (hashed with the provider name, so its size is fixed) until the
    /// token would be refused by age; `false` when it was already there (a replay).
    async fn remember_jti(&self, provider: &str, logout: &LogoutToken) -> Result<bool, OAuthError> {
        let key = token_hash(&format!("{provider}\u{1f}{}", logout.jti));
        Ok(self
            .store
            .insert_new(Table::LogoutTokens, &key, &logout.issued_at, logout.replay_window_end())
            .await?)
    }
}
