//! The `atlassian` provider, as MXCP's: Atlassian's OAuth 2.0 (3LO) apps.
//!
//! * Authorization at `auth_url` with `audience=api.atlassian.com`, `prompt=consent`, `scope`,
//!   mxgate's state (and PKCE S256, which Atlassian ignores).
//! * Token requests at `token_url` are JSON (`{grant_type, client_id, client_secret, code,
//!   redirect_uri}`; refresh: `{grant_type: refresh_token, client_id, client_secret,
//!   refresh_token}`); errors are `{"error", "error_description"}`.
//! * Access tokens live an hour; a refresh token comes only with `offline_access` in the scope,
//!   and Atlassian rotates it on every refresh (the new one is kept).
//! * `GET {api_url}/me` gives the user: `user_id` = `account_id`, `email` when `email_verified`
//!   says it is verified (a missing flag counts as `assume_email_verified` says; default: not
//!   verified), `username` = `nickname`, else that email's local part, else `account_id`;
//!   `claim_mappings` read that JSON.

use super::email_verified::{verified_email, WithoutFlag};
use super::http_client::get_json;
use super::oauth_client::{endpoint_url, keep_refresh_token, TokenEncoding};
use super::web_flow::{WebFlow, WebFlowConfig};
use super::{LoginCallback, LoginOutcome, LoginRequest, Provider, ProviderError};
use crate::config::mxcp_user::{AtlassianConfig, ClaimMappings};
use crate::config::ProviderEndpoints;
use crate::identity::capabilities::derive_capabilities;
use crate::identity::user::{ProviderTokens, UserIdentity};
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use url::Url;

const NAME: &str = "atlassian";
const DEFAULT_API_URL: &str = "https://api.atlassian.com";
/// The API audience Atlassian's authorization server issues tokens for.
const AUDIENCE: &str = "api.atlassian.com";

pub fn build(
    config: &AtlassianConfig,
    http: reqwest::Client,
    endpoints: &ProviderEndpoints,
    email_without_flag: WithoutFlag,
) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(Arc::new(AtlassianProvider::new(
        config,
        http,
        endpoints,
        email_without_flag,
    )?))
}

pub struct AtlassianProvider {
    flow: WebFlow,
    api_url: String,
    claim_mappings: ClaimMappings,
    email_without_flag: WithoutFlag,
}

// === impl AtlassianProvider ===

impl AtlassianProvider {
    pub fn new(
        config: &AtlassianConfig,
        http: reqwest::Client,
        endpoints: &ProviderEndpoints,
        email_without_flag: WithoutFlag,
    ) -> Result<Self, ProviderError> {
        let api_url = endpoints.get("api_url").unwrap_or(DEFAULT_API_URL);
        endpoint_url(NAME, "api_url", api_url)?;
        if !config.scope.split_whitespace().any(|s| s == "offline_access") {
            tracing::info!(
                "atlassian: the scope has no `offline_access`, so the provider token (what \
                 get_user_external_token() returns) cannot be refreshed and stops working after its hour"
            );
        }
        let flow = WebFlow::new(
            WebFlowConfig {
                provider: NAME,
                client_id: &config.client_id,
                client_secret: &config.client_secret,
                auth_url: &config.auth_url,
                token_url: &config.token_url,
                scope: config.scope.clone(),
                encoding: TokenEncoding::Json,
            },
            http,
        )?;
        Ok(Self {
            flow,
            api_url: api_url.trim_end_matches('/').to_string(),
            claim_mappings: config.claim_mappings.clone(),
            email_without_flag,
        })
    }

    async fn token_request(&self, params: &[(&str, &str)]) -> Result<ProviderTokens, ProviderError> {
        Ok(self.flow.token_request(params).await?.tokens)
    }
}

#[async_trait]
impl Provider for AtlassianProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn authorization_url(&self, request: &LoginRequest<'_>) -> Result<Url, ProviderError> {
        self.flow
            .authorization_url(request, &[("audience", AUDIENCE), ("prompt", "consent")])
    }

    async fn complete_login(&self, callback: &LoginCallback<'_>) -> Result<LoginOutcome, ProviderError> {
        self.flow.check_issuer(callback.iss)?;
        let tokens = self
            .token_request(&[
                ("grant_type", "authorization_code"),
                ("code", callback.code),
                ("redirect_uri", callback.redirect_uri),
            ])
            .await?;
        let me_url = format!("{}/me", self.api_url);
        let profile: Value = get_json(
            &self.flow.http,
            NAME,
            "the user (/me)",
            &me_url,
            Some(&tokens.access_token),
        )
        .await?;
        let mut user = user_from_profile(&profile, self.email_without_flag)?;
        user.capabilities = derive_capabilities(&self.claim_mappings, &profile);
        Ok(LoginOutcome {
            user,
            tokens,
            profile,
            idp_session: None,
        })
    }

    async fn refresh(&self, refresh_token: &str) -> Result<ProviderTokens, ProviderError> {
        let tokens = self
            .token_request(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
            .await?;
        Ok(keep_refresh_token(tokens, refresh_token))
    }
}

/// The user from `/me`.
fn user_from_profile(profile: &Value, email_without_flag: WithoutFlag) -> Result<UserIdentity, ProviderError> {
    let text = |key: &str| {
        profile
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let user_id = text("account_id").ok_or_else(|| ProviderError::Invalid {
        provider: NAME.into(),
        message: "/me has no `account_id`".into(),
    })?;
    let email = verified_email(NAME, profile, text("email"), email_without_flag);
    let username = text("nickname")
        .or_else(|| {
            email
                .as_deref()
                .and_then(|e| e.split('@').next())
                .filter(|local| !local.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| user_id.clone());
    Ok(UserIdentity {
        provider: NAME.into(),
        user_id,
        username,
        email,
        name: text("name"),
        avatar_url: text("picture"),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user_from_profile(profile: &Value) -> Result<UserIdentity, ProviderError> {
        super::user_from_profile(profile, WithoutFlag::default())
    }

    #[test]
    fn username_is_nickname_else_email_local_part_else_account_id() {
        let full = json!({
            "account_id": "5b10a2844c20165700ede21g", "email": "alice@acme.example", "email_verified": true,
            "name": "Alice Liddell", "nickname": "alice", "picture": "https://avatar.example/a.png",
            "account_status": "active", "account_type": "atlassian"
        });
        let user = user_from_profile(&full).unwrap();
        assert_eq!(
            (user.provider.as_str(), user.user_id.as_str(), user.username.as_str()),
            ("atlassian", "5b10a2844c20165700ede21g", "alice")
        );
        assert_eq!(user.email.as_deref(), Some("alice@acme.example"));
        assert_eq!(user.name.as_deref(), Some("Alice Liddell"));
        assert_eq!(user.avatar_url.as_deref(), Some("https://avatar.example/a.png"));

        let no_nickname =
            json!({"account_id": "id-2", "email": "bob.b@acme.example", "email_verified": true, "nickname": ""});
        assert_eq!(user_from_profile(&no_nickname).unwrap().username, "bob.b");
        let nothing = json!({"account_id": "id-3", "nickname": null});
        let user = user_from_profile(&nothing).unwrap();
        assert_eq!((user.username.as_str(), user.email), ("id-3", None));
        assert!(user_from_profile(&json!({"email": "x@y"})).is_err());
    }

    #[test]
    fn only_an_email_atlassian_marks_verified_is_the_users_email() {
        let cases = [
            (json!(true), WithoutFlag::Unverified, Some("bob.b@acme.example")),
            (json!(false), WithoutFlag::Unverified, None),
            (json!("false"), WithoutFlag::Unverified, None),
            (Value::Null, WithoutFlag::Unverified, None),
            (json!(true), WithoutFlag::Verified, Some("bob.b@acme.example")),
            (json!(false), WithoutFlag::Verified, None),
            (json!("false"), WithoutFlag::Verified, None),
            (Value::Null, WithoutFlag::Verified, Some("bob.b@acme.example")),
        ];
        for (flag, without_flag, expected) in cases {
            let mut profile = json!({"account_id": "id-2", "email": "bob.b@acme.example"});
            if !flag.is_null() {
                profile["email_verified"] = flag.clone();
            }
            let user = super::user_from_profile(&profile, without_flag).unwrap();
            assert_eq!(
                user.email.as_deref(),
                expected,
                "email_verified {flag} {without_flag:?}"
            );
            let username = if expected.is_some() { "bob.b" } else { "id-2" };
            assert_eq!(
                user.username, username,
                "an unverified address gives no username either"
            );
        }
    }

    fn config(scope: &str) -> AtlassianConfig {
        serde_yaml::from_str(&format!(
            "client_id: cid\nclient_secret: s\ncallback_path: /callback\nscope: '{scope}'\n\
             auth_url: https://auth.atlassian.com/authorize\ntoken_url: https://auth.atlassian.com/oauth/token\n"
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn authorization_url_has_audience_and_consent_prompt() {
        let provider = AtlassianProvider::new(
            &config("read:me offline_access"),
            reqwest::Client::new(),
            &ProviderEndpoints::default(),
            WithoutFlag::default(),
        )
        .unwrap();
        assert_eq!(provider.api_url, DEFAULT_API_URL);
        let url = provider
            .authorization_url(&LoginRequest {
                state: "st",
                pkce_verifier: "v".repeat(43).as_str(),
                nonce: "n",
                redirect_uri: "https://gw.example/callback",
                login_hint: None,
            })
            .await
            .unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["audience"], "api.atlassian.com");
        assert_eq!(q["prompt"], "consent");
        assert_eq!(q["scope"], "read:me offline_access");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["state"], "st");
        assert_eq!(q["client_id"], "cid");
    }
}
