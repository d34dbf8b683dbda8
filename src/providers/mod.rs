//! Upstream identity providers, one file each, behind the [`Provider`] trait. A provider turns
//! a login request into the URL the browser goes to, and the callback's code into a user and
//! the provider's tokens. It never sees mxgate's own tokens.

pub mod atlassian;
mod email_verified;
pub mod github;
pub mod google;
mod http_client;
mod id_token;
pub mod jwt_crypto;
pub mod keycloak;
pub mod logout_token;
mod oauth_client;
pub mod oidc;
pub mod salesforce;
mod web_flow;

use crate::config::{AuthSettings, ProviderEndpoints, ProviderSettings};
use crate::identity::user::{ProviderTokens, UserIdentity};
use async_trait::async_trait;
use email_verified::WithoutFlag;
use logout_token::LogoutToken;
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
    /// The raw profile `claim_mappings` read (the provider's claims; GitHub's `/user` plus
    /// `groups`), for `role_mappings` (see `policy::role_mappings`). Never stored.
    pub profile: serde_json::Value,
    /// The provider's own session (OpenID Connect `sid` of the ID token), which a back-channel
    /// logout names; at most [`logout_token::MAX_CLAIM_LEN`] bytes.
    pub idp_session: Option<String>,
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

    /// Verifies an OpenID Connect back-channel logout token (signature with the provider's keys,
    /// issuer, audience, and the logout rules of [`logout_token`]). Only OpenID providers send
    /// them.
    async fn verify_logout_token(&self, _token: &str, _now: u64) -> Result<LogoutToken, ProviderError> {
        Err(ProviderError::Invalid {
            provider: self.name().to_string(),
            message: "this provider sends no back-channel logout tokens".into(),
        })
    }

    /// Whether logins can start (an OpenID provider: its discovery document is loaded, fetching
    /// it when it is not yet). For `/readyz`; the caller caches the answer.
    async fn ready(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// A configured provider, the path it redirects back to, and the name people see for it.
pub struct ProviderEntry {
    pub provider: Arc<dyn Provider>,
    pub callback_path: String,
    /// What sign-in pages call the provider ("GitHub", an OIDC issuer's host); see [`display_name`].
    pub display_name: String,
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
            display_name: display_name(&auth.provider),
        };
        let mut extra = Vec::new();
        for (settings, endpoints) in &auth.extra_providers {
            if let Some(provider) = build(settings, endpoints, email_without_flag(settings))? {
                extra.push(ProviderEntry {
                    provider,
                    callback_path: settings.callback_path().unwrap_or_default().to_string(),
                    display_name: display_name(settings),
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

/// The name a person recognises the provider by, shown on the consent and sign-in pages (the
/// provider *name* stays the key forms submit): the product for the hosted ones, Keycloak with
/// its realm, and for generic OpenID Connect its `provider_name` when one is configured, else the
/// issuer's host (the host of its discovery URL, which OpenID Connect Discovery places under the
/// issuer).
pub fn display_name(settings: &ProviderSettings) -> String {
    match settings {
        ProviderSettings::None => "no provider".into(),
        ProviderSettings::Github(_) => "GitHub".into(),
        ProviderSettings::Google(_) => "Google".into(),
        ProviderSettings::Atlassian(_) => "Atlassian".into(),
        ProviderSettings::Salesforce(_) => "Salesforce".into(),
        ProviderSettings::Keycloak(c) => format!("Keycloak (realm {})", c.realm),
        ProviderSettings::Oidc(c) => match &c.provider_name {
            Some(name) => name.clone(),
            None => Url::parse(&c.config_url)
                .ok()
                .and_then(|url| {
                    let host = url.host_str()?.to_string();
                    Some(match url.port() {
                        Some(port) => format!("{host}:{port}"),
                        None => host,
                    })
                })
                .unwrap_or_else(|| "OpenID Connect".into()),
        },
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn oidc(extra: serde_json::Value) -> ProviderSettings {
        let mut config = json!({
            "config_url": "https://login.example.com:8443/realms/x/.well-known/openid-configuration",
            "client_id": "c", "client_secret": "s", "scope": "openid",
        });
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ProviderSettings::Oidc(serde_json::from_value(config).unwrap())
    }

    #[test]
    fn providers_are_shown_by_a_name_people_recognise() {
        assert_eq!(display_name(&oidc(json!({}))), "login.example.com:8443");
        assert_eq!(
            display_name(&oidc(json!({"provider_name": "Example SSO"}))),
            "Example SSO"
        );
        let github = serde_json::from_value(json!({
            "client_id": "c", "client_secret": "s", "callback_path": "/cb",
            "auth_url": "https://github.com/login/oauth/authorize",
            "token_url": "https://github.com/login/oauth/access_token",
        }))
        .unwrap();
        assert_eq!(display_name(&ProviderSettings::Github(github)), "GitHub");
        let keycloak = serde_json::from_value(json!({
            "client_id": "c", "client_secret": "s", "realm": "staff",
            "server_url": "https://kc.example.com", "callback_path": "/cb",
        }))
        .unwrap();
        assert_eq!(
            display_name(&ProviderSettings::Keycloak(keycloak)),
            "Keycloak (realm staff)"
        );
    }
}
