//! Sending the browser to the upstream provider: mxgate's own `state`, PKCE verifier and nonce
//! for this login, stored single-use and bound to the browser by a cookie, so that a callback
//! arriving in another browser (a forwarded login link) is refused.

use super::cookies;
use super::error::{ErrorCode, OAuthError};
use super::transactions::{AuthorizationRequest, LoginConsent, LoginState};
use super::{response, AuthorizationServer};
use crate::providers::LoginRequest;
use crate::store::Table;
use crate::support::{new_opaque_token, now, random_id, token_hash};
use bytes::Bytes;
use http::Response;

impl AuthorizationServer {
    /// Refuses a new sign-in while `limits.max_pending_logins` are in progress (consent pages
    /// shown and logins at the provider not yet back), so a flood cannot grow the store.
    pub(super) async fn check_pending_logins(&self) -> Result<(), OAuthError> {
        let kv = self.store.kv();
        let pending =
            kv.stored_entries(Table::ConsentTransactions).await? + kv.stored_entries(Table::LoginStates).await?;
        if pending >= self.settings.limits.max_pending_logins {
            tracing::warn!(
                pending,
                limit = self.settings.limits.max_pending_logins,
                "sign-in refused: too many in progress"
            );
            return Err(OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "too many sign-ins are in progress; try again in a few minutes",
            ));
        }
        Ok(())
    }

    /// Sends the browser to the provider named `provider` (the primary one when `None` or
    /// unknown). `consent` is how the login got past the consent step; `return_to` marks a
    /// person's own sign-in to the gateway.
    pub(super) async fn start_login(
        &self,
        request: AuthorizationRequest,
        provider: Option<&str>,
        consent: LoginConsent,
        return_to: Option<String>,
    ) -> Response<Bytes> {
        let entry = provider
            .and_then(|name| self.providers.by_name(name))
            .unwrap_or(self.providers.primary());
        let state = new_opaque_token("");
        let pkce_verifier = new_opaque_token("");
        let nonce = random_id();
        let binding = new_opaque_token("");
        let url = match entry
            .provider
            .authorization_url(&LoginRequest {
                state: &state,
                pkce_verifier: &pkce_verifier,
                nonce: &nonce,
                redirect_uri: &Self::callback_url(&request.issuer, entry),
                login_hint: request.login_hint.as_deref(),
            })
            .await
        {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a login at the provider");
                return request.redirect_error(&OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the identity provider is not reachable",
                ));
            }
        };
        let ttl = self.settings.tokens.login.as_secs();
        let login = LoginState {
            request: request.clone(),
            provider: entry.provider.name().to_string(),
            return_to,
            pkce_verifier,
            nonce,
            browser_binding_hash: token_hash(&binding),
            consent,
        };
        if let Err(e) = self
            .store
            .put(Table::LoginStates, &token_hash(&state), &login, now() + ttl)
            .await
        {
            return request.redirect_error(&OAuthError::from(e));
        }
        let mut resp = response::redirect(url.as_str());
        response::set_cookie(
            &mut resp,
            &Self::cookies_for(&request.issuer).set(cookies::LOGIN, &binding, ttl),
        );
        resp
    }
}
