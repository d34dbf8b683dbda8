//! The OAuth 2.0 client side shared by every provider (via the `oauth2` crate): the
//! authorization URL with PKCE S256, and the code-for-token exchange.

use super::ProviderError;
use crate::identity::user::ProviderTokens;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, ExtraTokenFields, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse,
    TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use url::Url;

/// Token responses may carry an OpenID Connect `id_token`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenField {}

type TokenResponseWithId = StandardTokenResponse<IdTokenField, BasicTokenType>;
type Client = oauth2::Client<
    BasicErrorResponse,
    TokenResponseWithId,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

/// A code-for-token exchange at a provider's token endpoint.
pub struct CodeExchange<'a> {
    pub token_url: &'a str,
    pub redirect_uri: &'a str,
    pub code: &'a str,
    pub pkce_verifier: &'a str,
    /// Extra form parameters (e.g. `audience`).
    pub extra: &'a [(&'a str, &'a str)],
}

/// One provider's OAuth client settings.
pub struct OAuthClient {
    pub provider: String,
    pub client_id: String,
    pub client_secret: String,
    /// `client_secret_basic` (true) or `client_secret_post` (false) at the token endpoint.
    pub basic_auth: bool,
}

// === impl OAuthClient ===

impl OAuthClient {
    fn invalid(&self, message: String) -> ProviderError {
        ProviderError::Invalid {
            provider: self.provider.clone(),
            message,
        }
    }

    /// The URL that sends the browser to the provider's authorization endpoint.
    pub fn authorization_url(
        &self,
        auth_url: &str,
        redirect_uri: &str,
        scope: &str,
        state: &str,
        pkce_verifier: &str,
        extra: &[(&str, &str)],
    ) -> Result<Url, ProviderError> {
        let client = oauth2::Client::<
            BasicErrorResponse,
            TokenResponseWithId,
            BasicTokenIntrospectionResponse,
            StandardRevocableToken,
            BasicRevocationErrorResponse,
        >::new(ClientId::new(self.client_id.clone()))
        .set_auth_uri(AuthUrl::new(auth_url.to_string()).map_err(|e| self.invalid(format!("auth_url: {e}")))?)
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri.to_string()).map_err(|e| self.invalid(format!("redirect URL: {e}")))?,
        );
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(pkce_verifier.to_string()));
        let mut request = client
            .authorize_url(|| CsrfToken::new(state.to_string()))
            .add_scopes(scope.split_whitespace().map(|s| Scope::new(s.to_string())))
            .set_pkce_challenge(challenge);
        for (name, value) in extra {
            request = request.add_extra_param(*name, *value);
        }
        Ok(request.url().0)
    }

    fn token_client(&self, token_url: &str, redirect_uri: Option<&str>) -> Result<Client, ProviderError> {
        let auth_type = if self.basic_auth {
            AuthType::BasicAuth
        } else {
            AuthType::RequestBody
        };
        let mut client = oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.client_secret.clone()))
            .set_auth_type(auth_type)
            .set_token_uri(TokenUrl::new(token_url.to_string()).map_err(|e| self.invalid(format!("token_url: {e}")))?);
        if let Some(uri) = redirect_uri {
            let uri = RedirectUrl::new(uri.to_string()).map_err(|e| self.invalid(format!("redirect URL: {e}")))?;
            client = client.set_redirect_uri(uri);
        }
        Ok(client)
    }

    /// Exchanges an authorization code (with mxgate's PKCE verifier) for the provider's tokens.
    pub async fn exchange_code(
        &self,
        http: &reqwest::Client,
        exchange: &CodeExchange<'_>,
        now: u64,
    ) -> Result<ProviderTokens, ProviderError> {
        let client = self.token_client(exchange.token_url, Some(exchange.redirect_uri))?;
        let mut request = client
            .exchange_code(AuthorizationCode::new(exchange.code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(exchange.pkce_verifier.to_string()));
        for (name, value) in exchange.extra {
            request = request.add_extra_param(*name, *value);
        }
        let response = request.request_async(http).await.map_err(|e| self.token_error(e))?;
        Ok(provider_tokens(&response, now))
    }

    /// Exchanges a provider refresh token for new tokens (keeping the old refresh token when the
    /// provider does not rotate it).
    pub async fn refresh(
        &self,
        http: &reqwest::Client,
        token_url: &str,
        refresh_token: &str,
        extra: &[(&str, &str)],
        now: u64,
    ) -> Result<ProviderTokens, ProviderError> {
        let client = self.token_client(token_url, None)?;
        let token = oauth2::RefreshToken::new(refresh_token.to_string());
        let mut request = client.exchange_refresh_token(&token);
        for (name, value) in extra {
            request = request.add_extra_param(*name, *value);
        }
        let response = request.request_async(http).await.map_err(|e| self.token_error(e))?;
        let mut tokens = provider_tokens(&response, now);
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = Some(refresh_token.to_string());
        }
        Ok(tokens)
    }

    fn token_error<E: std::error::Error>(&self, error: RequestTokenError<E, BasicErrorResponse>) -> ProviderError {
        match error {
            RequestTokenError::ServerResponse(response) => ProviderError::Rejected {
                provider: self.provider.clone(),
                error: response.error().to_string(),
                description: response.error_description().cloned(),
            },
            RequestTokenError::Request(e) => ProviderError::Unreachable {
                provider: self.provider.clone(),
                what: "the token endpoint",
                message: error_chain(&e),
            },
            RequestTokenError::Parse(e, _body) => self.invalid(format!("unreadable token response: {e}")),
            RequestTokenError::Other(message) => self.invalid(message),
        }
    }
}

fn provider_tokens(response: &TokenResponseWithId, now: u64) -> ProviderTokens {
    ProviderTokens {
        access_token: response.access_token().secret().clone(),
        refresh_token: response.refresh_token().map(|t| t.secret().clone()),
        id_token: response.extra_fields().id_token.clone(),
        expires_at: response.expires_in().map(|d| now + d.as_secs()),
        obtained_at: now,
        scope: response
            .scopes()
            .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")),
    }
}

/// An error and its sources, on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}
