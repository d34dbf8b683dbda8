//! The `salesforce` provider, as MXCP's: Salesforce's OAuth 2.0 web server flow and Identity
//! URLs. Production (`login.salesforce.com`), sandboxes (`test.salesforce.com`) and My Domain
//! hosts all work from the configured `auth_url` / `token_url` alone.
//!
//! * Authorization at `auth_url` with `scope` (when configured; else the connected app's),
//!   mxgate's state and PKCE S256, and the client's `login_hint`.
//! * The token request is a form (`client_secret_post`); errors are 400
//!   `{"error", "error_description"}`. The answer carries `id` (the user's identity URL),
//!   `instance_url`, `issued_at`, `signature` and no `expires_in` (the access token lives as long
//!   as the Salesforce session: `expires_at: None`). `refresh_token` comes with the
//!   `refresh_token` scope; refreshing uses `grant_type=refresh_token`.
//! * The user comes from the identity URL of the token response (GET with the bearer token):
//!   `user_id`, `username`, `display_name`, `photos.thumbnail`, and `email` when
//!   `email_verified` says it is verified (a missing flag counts as `assume_email_verified`
//!   says; default: not verified); `claim_mappings` read that JSON. The token response is remote input, so the identity URL is only followed to the
//!   token endpoint's own origin or an https `*.salesforce.com` / `*.force.com` host.

use super::email_verified::{verified_email, WithoutFlag};
use super::http_client::get_json;
use super::oauth_client::{clip, keep_refresh_token, TokenEncoding};
use super::web_flow::{WebFlow, WebFlowConfig};
use super::{LoginCallback, LoginOutcome, LoginRequest, Provider, ProviderError};
use crate::config::mxcp_user::{ClaimMappings, SalesforceConfig};
use crate::config::ProviderEndpoints;
use crate::identity::capabilities::derive_capabilities;
use crate::identity::user::{ProviderTokens, UserIdentity};
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use url::{Host, Url};

const NAME: &str = "salesforce";
/// Hosts (and their subdomains) Salesforce serves identity URLs from.
const SALESFORCE_DOMAINS: &[&str] = &["salesforce.com", "force.com"];

pub fn build(
    config: &SalesforceConfig,
    http: reqwest::Client,
    _endpoints: &ProviderEndpoints,
    email_without_flag: WithoutFlag,
) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(Arc::new(SalesforceProvider::new(config, http, email_without_flag)?))
}

pub struct SalesforceProvider {
    flow: WebFlow,
    claim_mappings: ClaimMappings,
    email_without_flag: WithoutFlag,
}

// === impl SalesforceProvider ===

impl SalesforceProvider {
    pub fn new(
        config: &SalesforceConfig,
        http: reqwest::Client,
        email_without_flag: WithoutFlag,
    ) -> Result<Self, ProviderError> {
        let flow = WebFlow::new(
            WebFlowConfig {
                provider: NAME,
                client_id: &config.client_id,
                client_secret: &config.client_secret,
                auth_url: &config.auth_url,
                token_url: &config.token_url,
                scope: config.scope.clone().unwrap_or_default(),
                encoding: TokenEncoding::Form,
            },
            http,
        )?;
        Ok(Self {
            flow,
            claim_mappings: config.claim_mappings.clone(),
            email_without_flag,
        })
    }

    fn invalid(message: impl Into<String>) -> ProviderError {
        ProviderError::Invalid {
            provider: NAME.into(),
            message: message.into(),
        }
    }

    async fn token_request(
        &self,
        params: &[(&str, &str)],
    ) -> Result<super::oauth_client::TokenEndpointResponse, ProviderError> {
        self.flow.token_request(params).await
    }
}

#[async_trait]
impl Provider for SalesforceProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn authorization_url(&self, request: &LoginRequest<'_>) -> Result<Url, ProviderError> {
        let mut extra = Vec::new();
        if let Some(hint) = request.login_hint {
            extra.push(("login_hint", hint));
        }
        self.flow.authorization_url(request, &extra)
    }

    async fn complete_login(&self, callback: &LoginCallback<'_>) -> Result<LoginOutcome, ProviderError> {
        self.flow.check_issuer(callback.iss)?;
        let response = self
            .token_request(&[
                ("grant_type", "authorization_code"),
                ("code", callback.code),
                ("redirect_uri", callback.redirect_uri),
                ("code_verifier", callback.pkce_verifier),
            ])
            .await?;
        let identity = response
            .fields
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| Self::invalid("the token response has no `id` (identity URL)"))?;
        let identity_url = identity_url(self.flow.token_url(), identity).map_err(Self::invalid)?;
        let tokens = response.tokens;
        let profile: Value = get_json(
            &self.flow.http,
            NAME,
            "the identity URL",
            identity_url.as_str(),
            Some(&tokens.access_token),
        )
        .await?;
        let mut user = user_from_identity(&profile, self.email_without_flag)?;
        user.capabilities = derive_capabilities(&self.claim_mappings, &profile);
        Ok(LoginOutcome {
            user,
            tokens,
            profile,
            idp_session: None,
        })
    }

    async fn refresh(&self, refresh_token: &str) -> Result<ProviderTokens, ProviderError> {
        let response = self
            .token_request(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
            .await?;
        Ok(keep_refresh_token(response.tokens, refresh_token))
    }
}

/// The identity URL of a token response, if mxgate may follow it: the token endpoint's own
/// origin, or https on the default port at a `*.salesforce.com` / `*.force.com` host (which
/// covers `login.`, `test.`, `*.my.salesforce.com` and `*.sandbox.my.salesforce.com`).
fn identity_url(token_url: &Url, id: &str) -> Result<Url, String> {
    let shown = clip(id, 200);
    let url = Url::parse(id).map_err(|e| format!("the identity URL `{shown}` is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("the identity URL `{shown}` carries credentials; refused"));
    }
    if url.origin() == token_url.origin() {
        return Ok(url);
    }
    let salesforce_host = match url.host() {
        Some(Host::Domain(host)) => SALESFORCE_DOMAINS.iter().any(|domain| {
            host.strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1)
        }),
        _ => false,
    };
    if url.scheme() == "https" && url.port().is_none() && salesforce_host {
        return Ok(url);
    }
    Err(format!(
        "the token response names the identity URL `{shown}`, which is neither on the token endpoint's \
         host nor an https Salesforce host; refused"
    ))
}

/// The user from the identity URL's JSON.
fn user_from_identity(profile: &Value, email_without_flag: WithoutFlag) -> Result<UserIdentity, ProviderError> {
    let text = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let user_id =
        text(profile.get("user_id")).ok_or_else(|| SalesforceProvider::invalid("the identity has no `user_id`"))?;
    let username =
        text(profile.get("username")).ok_or_else(|| SalesforceProvider::invalid("the identity has no `username`"))?;
    let photos = profile.get("photos");
    Ok(UserIdentity {
        provider: NAME.into(),
        user_id,
        username,
        email: verified_email(NAME, profile, text(profile.get("email")), email_without_flag),
        name: text(profile.get("display_name")),
        avatar_url: text(photos.and_then(|p| p.get("thumbnail")))
            .or_else(|| text(photos.and_then(|p| p.get("picture")))),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn identity_urls_on_salesforce_hosts_or_the_token_host_are_followed() {
        let production = url("https://login.salesforce.com/services/oauth2/token");
        for ok in [
            "https://login.salesforce.com/id/00Dxx0000001gPL/005xx000001Sv6e",
            "https://test.salesforce.com/id/00Dxx0000001gPL/005xx000001Sv6e",
            "https://acme.my.salesforce.com/id/00D/005",
            "https://acme--dev.sandbox.my.salesforce.com/id/00D/005",
            "https://acme.lightning.force.com/id/00D/005",
            "https://LOGIN.SALESFORCE.COM/id/00D/005",
        ] {
            assert!(identity_url(&production, ok).is_ok(), "{ok}");
        }
        let local = url("http://127.0.0.1:9300/services/oauth2/token");
        assert!(identity_url(&local, "http://127.0.0.1:9300/id/00D/005").is_ok());
    }

    #[test]
    fn foreign_identity_urls_are_refused() {
        let production = url("https://login.salesforce.com/services/oauth2/token");
        for bad in [
            "https://attacker.example/id/00D/005",
            "https://salesforce.com.attacker.example/id/00D/005",
            "https://evilsalesforce.com/id/00D/005",
            "https://salesforce.com/id/00D/005",
            "http://login.salesforce.com/id/00D/005",
            "https://login.salesforce.com:8443/id/00D/005",
            "https://user:pw@login.salesforce.com/id/00D/005",
            "https://169.254.169.254/latest/meta-data",
            "file:///etc/passwd",
            "/id/00D/005",
        ] {
            assert!(identity_url(&production, bad).is_err(), "{bad}");
        }
        let local = url("http://127.0.0.1:9300/services/oauth2/token");
        for bad in [
            "http://localhost:9300/id/00D/005",
            "http://127.0.0.1:9301/id/00D/005",
            "https://127.0.0.1:9300/id/00D/005",
        ] {
            assert!(identity_url(&local, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_maps_identity_fields() {
        let identity = json!({
            "id": "https://login.salesforce.com/id/00D5e000000abcdEAA/0055e000001XyZaAAK",
            "user_id": "0055e000001XyZaAAK", "organization_id": "00D5e000000abcdEAA",
            "username": "alice@acme.example", "nick_name": "alice1.2345", "display_name": "Alice Liddell",
            "email": "alice@acme.example", "email_verified": true,
            "photos": {"picture": "https://c.example/profilephoto/005/F", "thumbnail": "https://c.example/profilephoto/005/T"},
            "user_type": "STANDARD", "active": true
        });
        let user = user_from_identity(&identity, WithoutFlag::default()).unwrap();
        assert_eq!(user.provider, "salesforce");
        assert_eq!(user.user_id, "0055e000001XyZaAAK");
        assert_eq!(user.username, "alice@acme.example");
        assert_eq!(user.name.as_deref(), Some("Alice Liddell"));
        assert_eq!(user.email.as_deref(), Some("alice@acme.example"));
        assert_eq!(user.avatar_url.as_deref(), Some("https://c.example/profilephoto/005/T"));
        assert!(user_from_identity(&json!({"username": "x"}), WithoutFlag::default()).is_err());
        assert!(user_from_identity(&json!({"user_id": "005"}), WithoutFlag::default()).is_err());
    }

    #[test]
    fn only_an_email_salesforce_marks_verified_is_the_users_email() {
        let cases = [
            (json!(true), WithoutFlag::Unverified, Some("alice@acme.example")),
            (json!(false), WithoutFlag::Unverified, None),
            (json!("false"), WithoutFlag::Unverified, None),
            (Value::Null, WithoutFlag::Unverified, None),
            (json!(true), WithoutFlag::Verified, Some("alice@acme.example")),
            (json!(false), WithoutFlag::Verified, None),
            (json!("false"), WithoutFlag::Verified, None),
            (Value::Null, WithoutFlag::Verified, Some("alice@acme.example")),
        ];
        for (flag, without_flag, expected) in cases {
            let mut identity =
                json!({"user_id": "005", "username": "alice@acme.example.dev", "email": "alice@acme.example"});
            if !flag.is_null() {
                identity["email_verified"] = flag.clone();
            }
            let user = user_from_identity(&identity, without_flag).unwrap();
            assert_eq!(
                user.email.as_deref(),
                expected,
                "email_verified {flag} {without_flag:?}"
            );
            assert_eq!(
                user.username, "alice@acme.example.dev",
                "the Salesforce username, verified or not"
            );
        }
    }

    #[tokio::test]
    async fn authorization_url_without_scope_leaves_it_to_the_connected_app() {
        let config: SalesforceConfig = serde_yaml::from_str(
            "client_id: cid\nclient_secret: s\ncallback_path: /callback\n\
             auth_url: https://test.salesforce.com/services/oauth2/authorize\n\
             token_url: https://test.salesforce.com/services/oauth2/token\n",
        )
        .unwrap();
        let provider = SalesforceProvider::new(&config, reqwest::Client::new(), WithoutFlag::default()).unwrap();
        let url = provider
            .authorization_url(&LoginRequest {
                state: "st",
                pkce_verifier: "v".repeat(43).as_str(),
                nonce: "n",
                redirect_uri: "https://gw.example/callback",
                login_hint: Some("alice@acme.example.dev"),
            })
            .await
            .unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(url.host_str(), Some("test.salesforce.com"));
        assert!(!q.contains_key("scope"));
        assert_eq!(q["login_hint"], "alice@acme.example.dev");
        assert_eq!(q["code_challenge_method"], "S256");
    }
}
