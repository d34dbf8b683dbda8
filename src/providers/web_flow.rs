//! The authorization-code web flow of a provider configured, as in MXCP, by `auth_url`,
//! `token_url`, `scope` and client credentials (GitHub, Atlassian, Salesforce): their common part,
//! so that each provider file holds only what is its own (user API, extra parameters).

use super::oauth_client::{check_response_issuer, endpoint_url, OAuthClient, TokenEncoding, TokenEndpointResponse};
use super::{LoginRequest, ProviderError};
use crate::config::Secret;
use url::Url;

pub struct WebFlow {
    provider: &'static str,
    client: OAuthClient,
    auth_url: Url,
    token_url: Url,
    scope: String,
    encoding: TokenEncoding,
    pub http: reqwest::Client,
}

/// How a provider's web flow is configured.
pub struct WebFlowConfig<'a> {
    pub provider: &'static str,
    pub client_id: &'a str,
    pub client_secret: &'a Secret,
    pub auth_url: &'a str,
    pub token_url: &'a str,
    pub scope: String,
    /// How the token endpoint takes its parameters (client credentials go in the body).
    pub encoding: TokenEncoding,
}

// === impl WebFlow ===

impl WebFlow {
    /// Checks the URLs (a bad one is a start-up error) and sets the flow up.
    pub fn new(config: WebFlowConfig<'_>, http: reqwest::Client) -> Result<Self, ProviderError> {
        Ok(Self {
            provider: config.provider,
            auth_url: endpoint_url(config.provider, "auth_url", config.auth_url)?,
            token_url: endpoint_url(config.provider, "token_url", config.token_url)?,
            client: OAuthClient {
                provider: config.provider.into(),
                client_id: config.client_id.to_string(),
                client_secret: config.client_secret.expose().to_string(),
                basic_auth: false,
            },
            scope: config.scope,
            encoding: config.encoding,
            http,
        })
    }

    /// The URL that sends the browser to the provider, with mxgate's state and PKCE and `extra`.
    pub fn authorization_url(&self, request: &LoginRequest<'_>, extra: &[(&str, &str)]) -> Result<Url, ProviderError> {
        self.client.authorization_url(
            self.auth_url.as_str(),
            request.redirect_uri,
            &self.scope,
            request.state,
            request.pkce_verifier,
            extra,
        )
    }

    /// RFC 9207: an `iss` in the callback must be the authorization server's origin.
    pub fn check_issuer(&self, iss: Option<&str>) -> Result<(), ProviderError> {
        check_response_issuer(self.provider, &self.auth_url, iss)
    }

    /// A token request (`grant_type` and its parameters), credentials added.
    pub async fn token_request(&self, params: &[(&str, &str)]) -> Result<TokenEndpointResponse, ProviderError> {
        self.client
            .token_request(
                &self.http,
                self.token_url.as_str(),
                params,
                self.encoding,
                crate::support::now(),
            )
            .await
    }

    pub fn token_url(&self) -> &Url {
        &self.token_url
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }
}
