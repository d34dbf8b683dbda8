//! Any OpenID Connect provider, configured by its discovery URL (`config_url`), as MXCP's
//! `oidc` provider: authorization code with PKCE, ID token verified against the provider's
//! JWKS, claims completed from userinfo. The discovery document is fetched on first use and
//! kept; a failed fetch is retried on the next login.

use super::id_token::{Expected, JwksCache};
use super::oauth_client::{CodeExchange, OAuthClient};
use super::{http_client::get_json, LoginCallback, LoginOutcome, LoginRequest, Provider, ProviderError};
use crate::config::mxcp_user::OidcConfig;
use crate::identity::capabilities::derive_capabilities;
use crate::identity::user::{ProviderTokens, UserIdentity};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::RwLock;
use url::Url;

/// The parts of an OpenID Provider's discovery document mxgate uses.
#[derive(Debug, Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

struct Discovered {
    document: DiscoveryDocument,
    jwks: JwksCache,
    client: OAuthClient,
}

pub struct OidcProvider {
    config: OidcConfig,
    name: String,
    http: reqwest::Client,
    discovered: RwLock<Option<Arc<Discovered>>>,
}

// === impl OidcProvider ===

impl OidcProvider {
    pub fn new(config: OidcConfig, http: reqwest::Client) -> Self {
        let name = config.provider_name.clone().unwrap_or_else(|| "oidc".into());
        Self {
            config,
            name,
            http,
            discovered: RwLock::new(None),
        }
    }

    fn invalid(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::Invalid {
            provider: self.name.clone(),
            message: message.into(),
        }
    }

    async fn discovered(&self) -> Result<Arc<Discovered>, ProviderError> {
        if let Some(d) = self.discovered.read().await.as_ref() {
            return Ok(d.clone());
        }
        let mut slot = self.discovered.write().await;
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let document: DiscoveryDocument = get_json(
            &self.http,
            &self.name,
            "the discovery document",
            &self.config.config_url,
            None,
        )
        .await?;
        for (field, value) in [
            ("authorization_endpoint", &document.authorization_endpoint),
            ("token_endpoint", &document.token_endpoint),
            ("jwks_uri", &document.jwks_uri),
        ] {
            Url::parse(value).map_err(|e| self.invalid(format!("discovery `{field}` is not a URL: {e}")))?;
        }
        // RFC 6749 §2.3.1: Basic is the default; use the request body only when Basic is not offered.
        let basic_auth = document
            .token_endpoint_auth_methods_supported
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == "client_secret_basic"));
        let discovered = Arc::new(Discovered {
            jwks: JwksCache::new(&self.name, &document.jwks_uri),
            client: OAuthClient {
                provider: self.name.clone(),
                client_id: self.config.client_id.clone(),
                client_secret: self.config.client_secret.expose().to_string(),
                basic_auth,
            },
            document,
        });
        *slot = Some(discovered.clone());
        Ok(discovered)
    }

    fn extra_authorize_params(&self) -> Vec<(&str, &str)> {
        let mut params: Vec<(&str, &str)> = self
            .config
            .extra_authorize_params
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(audience) = &self.config.audience {
            params.push(("audience", audience));
        }
        params
    }

    fn audience_param(&self) -> Vec<(&str, &str)> {
        self.config.audience.iter().map(|a| ("audience", a.as_str())).collect()
    }

    fn user_from_profile(&self, profile: &Value) -> Result<UserIdentity, ProviderError> {
        let text = |key: &str| profile.get(key).and_then(Value::as_str).map(str::to_string);
        let user_id = text("sub").ok_or_else(|| self.invalid("the profile has no `sub`"))?;
        let email = text("email");
        let username = text("preferred_username")
            .or_else(|| email.as_deref().and_then(|e| e.split('@').next()).map(str::to_string))
            .unwrap_or_else(|| user_id.clone());
        let groups = profile
            .get("groups")
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        Ok(UserIdentity {
            provider: self.name.clone(),
            user_id,
            username,
            email,
            name: text("name"),
            avatar_url: text("picture"),
            groups,
            role: None,
            permissions: Vec::new(),
            capabilities: derive_capabilities(&self.config.claim_mappings, profile),
        })
    }
}

#[async_trait]
impl Provider for OidcProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn authorization_url(&self, request: &LoginRequest<'_>) -> Result<Url, ProviderError> {
        let d = self.discovered().await?;
        let mut extra = self.extra_authorize_params();
        extra.push(("nonce", request.nonce));
        if let Some(hint) = request.login_hint {
            extra.push(("login_hint", hint));
        }
        d.client.authorization_url(
            &d.document.authorization_endpoint,
            request.redirect_uri,
            &self.config.scope,
            request.state,
            request.pkce_verifier,
            &extra,
        )
    }

    async fn complete_login(&self, callback: &LoginCallback<'_>) -> Result<LoginOutcome, ProviderError> {
        let d = self.discovered().await?;
        // RFC 9207: the response must come from the issuer we sent the user to (mix-up defence).
        match callback.iss {
            Some(iss) if iss != d.document.issuer => {
                return Err(self.invalid(format!(
                    "the authorization response came from issuer `{iss}`, not this provider"
                )))
            }
            None if d.document.authorization_response_iss_parameter_supported => {
                return Err(self.invalid("the authorization response has no `iss` although the provider sends one"))
            }
            _ => {}
        }
        let now = crate::store::now();
        let audience = self.audience_param();
        let tokens = d
            .client
            .exchange_code(
                &self.http,
                &CodeExchange {
                    token_url: &d.document.token_endpoint,
                    redirect_uri: callback.redirect_uri,
                    code: callback.code,
                    pkce_verifier: callback.pkce_verifier,
                    extra: &audience,
                },
                now,
            )
            .await?;
        let id_token = tokens
            .id_token
            .as_deref()
            .ok_or_else(|| self.invalid("the token response has no id_token (is `openid` in the scope?)"))?;
        let mut profile = d
            .jwks
            .verify(
                &self.http,
                id_token,
                &Expected {
                    issuer: &d.document.issuer,
                    client_id: &self.config.client_id,
                    nonce: callback.nonce,
                },
            )
            .await?;
        if let Some(userinfo_url) = &d.document.userinfo_endpoint {
            let userinfo: Value = get_json(
                &self.http,
                &self.name,
                "userinfo",
                userinfo_url,
                Some(&tokens.access_token),
            )
            .await?;
            if userinfo.get("sub") != profile.get("sub") {
                return Err(self.invalid("userinfo `sub` differs from the ID token's"));
            }
            if let (Value::Object(base), Value::Object(extra)) = (&mut profile, userinfo) {
                base.extend(extra);
            }
        }
        Ok(LoginOutcome {
            user: self.user_from_profile(&profile)?,
            tokens,
        })
    }

    async fn refresh(&self, refresh_token: &str) -> Result<ProviderTokens, ProviderError> {
        let d = self.discovered().await?;
        d.client
            .refresh(
                &self.http,
                &d.document.token_endpoint,
                refresh_token,
                &self.audience_param(),
                crate::store::now(),
            )
            .await
    }
}
