//! Upstream identity providers, one file each, behind the [`Provider`] trait. A provider turns
//! a login request into the URL the browser goes to, and the callback's code into a user and
//! the provider's tokens. It never sees mxgate's own tokens.

pub mod atlassian;
mod email_verified;
pub mod github;
pub mod google;
mod http_client;
mod id_token;
pub mod keycloak;
mod oauth_client;
pub mod oidc;
pub mod salesforce;
mod web_flow;

use crate::config::{AuthSettings, ProviderEndpoints, ProviderSettings};
use crate::identity::user::{ProviderTokens, UserIdentity};
use async_trait::async_trait;
use email_verified::WithoutFlag;
use std::sync::Arc;
use thiserror::Error;
use url::Url;

pub use http_client::provider_http_client;

/// Sending the browser to the provider.
pub struct LoginRequest<'a> {
    pub state: &'a str,
    /// mxgate's own PKCE verifier for this login (the provider sees only its S256 challenge).
    pub pkce_verifier: &'a str,
    pub nonce: &'a str,
    pub redirect_uri: &'a str,
    /// The client's `login_hint`, passed on to providers that understand it (OIDC).
    pub login_hint: Option<&'a str>,
}

/// The provider redirected back with a code.
pub struct LoginCallback<'a> {
    pub code: &'a str,
    /// The `iss` of the authorization response (RFC 9207), when the provider sent one.
    pub iss: Option<&'a str>,
    pub pkce_verifier: &'a str,
    pub nonce: &'a str,
    pub redirect_uri: &'a str,
}

pub struct LoginOutcome {
    pub user: UserIdentity,
    pub tokens: ProviderTokens,
}

#[derive(Debug, Error)]
pub enum ProviderError {
    #[error("{provider}: cannot reach {what}: {message}")]
    Unreachable {
        provider: String,
        what: &'static str,
        message: String,
    },
    #[error("{provider}: the provider refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        provider: String,
        error: String,
        description: Option<String>,
    },
    #[error("{provider}: {message}")]
    Invalid { provider: String, message: String },
    #[error("provider `{0}` is configured but not supported yet by this mxgate version")]
    Unsupported(&'static str),
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// The provider name the core sees (`get_user_provider()`).
    fn name(&self) -> &str;
    async fn authorization_url(&self, request: &LoginRequest<'_>) -> Result<Url, ProviderError>;
    async fn complete_login(&self, callback: &LoginCallback<'_>) -> Result<LoginOutcome, ProviderError>;
    /// New tokens for a refresh token. A response without a refresh token keeps the old one.
    async fn refresh(&self, refresh_token: &str) -> Result<ProviderTokens, ProviderError>;
}

/// A configured provider and the path it redirects back to.
pub struct ProviderEntry {
    pub provider: Arc<dyn Provider>,
    pub callback_path: String,
}

/// Every configured provider: the MXCP config's, then `extra_providers`.
pub struct ProviderSet {
    primary: ProviderEntry,
    extra: Vec<ProviderEntry>,
}

// === impl ProviderSet ===

impl ProviderSet {
    /// The providers of the configuration; `None` with `provider: none`.
    pub fn build(auth: &AuthSettings) -> Result<Option<Self>, ProviderError> {
        let email_without_flag =
            |settings: &ProviderSettings| WithoutFlag::assumed_verified(auth.assumes_email_verified(&settings.name()));
        let Some(primary) = build(&auth.provider, &auth.endpoints, email_without_flag(&auth.provider))? else {
            return Ok(None);
        };
        let primary = ProviderEntry {
            provider: primary,
            callback_path: auth.provider.callback_path().unwrap_or("/callback").to_string(),
        };
        let mut extra = Vec::new();
        for (settings, endpoints) in &auth.extra_providers {
            if let Some(provider) = build(settings, endpoints, email_without_flag(settings))? {
                extra.push(ProviderEntry {
                    provider,
                    callback_path: settings.callback_path().unwrap_or_default().to_string(),
                });
            }
        }
        Ok(Some(Self { primary, extra }))
    }

    pub fn new(primary: ProviderEntry, extra: Vec<ProviderEntry>) -> Self {
        Self { primary, extra }
    }

    /// The MXCP config's provider.
    pub fn primary(&self) -> &ProviderEntry {
        &self.primary
    }

    pub fn by_name(&self, name: &str) -> Option<&ProviderEntry> {
        self.iter().find(|e| e.provider.name() == name)
    }

    pub fn by_callback_path(&self, path: &str) -> Option<&ProviderEntry> {
        self.iter().find(|e| e.callback_path == path)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ProviderEntry> {
        std::iter::once(&self.primary).chain(self.extra.iter())
    }

    /// Whether people choose between several providers.
    pub fn several(&self) -> bool {
        !self.extra.is_empty()
    }
}

/// Builds the configured provider; `None` for `provider: none`. `email_without_flag` is what an
/// email without an `email_verified` flag counts as (GitHub flags every address).
pub fn build(
    settings: &ProviderSettings,
    endpoints: &ProviderEndpoints,
    email_without_flag: WithoutFlag,
) -> Result<Option<Arc<dyn Provider>>, ProviderError> {
    let http = provider_http_client().map_err(|e| ProviderError::Invalid {
        provider: settings.kind().as_str().into(),
        message: format!("cannot build the HTTP client: {e}"),
    })?;
    Ok(Some(match settings {
        ProviderSettings::None => return Ok(None),
        ProviderSettings::Oidc(config) => oidc::build(config, http, endpoints, email_without_flag)?,
        ProviderSettings::Github(config) => github::build(config, http, endpoints)?,
        ProviderSettings::Atlassian(config) => atlassian::build(config, http, endpoints, email_without_flag)?,
        ProviderSettings::Salesforce(config) => salesforce::build(config, http, endpoints, email_without_flag)?,
        ProviderSettings::Google(config) => google::build(config, http, endpoints, email_without_flag)?,
        ProviderSettings::Keycloak(config) => keycloak::build(config, http, endpoints, email_without_flag)?,
    }))
}
