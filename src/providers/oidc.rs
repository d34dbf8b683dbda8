//! OpenID Connect providers. One engine, [`OidcProvider`], serves `oidc` (any provider, by its
//! discovery URL, as MXCP's `oidc`), `google` and `keycloak`; each of those turns its MXCP block
//! into [`OidcSettings`] and adds its specifics through a [`ProfileMapping`].
//!
//! The flow: authorization code with mxgate's own PKCE and nonce; the code exchanged at the token
//! endpoint; the ID token verified against the provider's JWKS (`iss`, `aud`, `exp`, `nonce`);
//! claims completed from userinfo. The discovery document is fetched on first use and kept; a
//! failed fetch is retried on the next login. Endpoints given in the configuration (Google's
//! `auth_url`/`token_url`, Keycloak's URLs built from `server_url` and `realm`) win over the
//! discovered ones; issuer and JWKS always come from discovery.
//!
//! The raw profile that `claim_mappings` read is, as in MXCP 0.12.3, the access token's claims
//! (when it is a JWT: Keycloak puts `realm_access` only there by default) overlaid by the ID
//! token's, overlaid by userinfo's — but the access token must verify against the provider's
//! keys, where MXCP merely decodes it.

use super::email_verified::{verified_email, WithoutFlag};
use super::id_token::{Expected, JwksCache};
use super::logout_token::{LogoutToken, MAX_CLAIM_LEN, MAX_TOKEN_LEN};
use super::oauth_client::{CodeExchange, OAuthClient};
use super::{http_client::get_json, LoginCallback, LoginOutcome, LoginRequest, Provider, ProviderError};
use crate::config::mxcp_user::{ClaimMappings, OidcConfig};
use crate::config::{ProviderEndpoints, Secret};
use crate::identity::capabilities::derive_capabilities;
use crate::identity::user::{ProviderTokens, UserIdentity};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use tokio::sync::RwLock;
use url::Url;

/// What one OpenID provider is, after its MXCP block and provider-specific defaults are applied.
pub struct OidcSettings {
    /// The provider name the core sees (`get_user_provider()`).
    pub name: String,
    /// The discovery document (`…/.well-known/openid-configuration`).
    pub discovery_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Scopes asked of the provider (space separated).
    pub scope: String,
    /// Endpoints from the configuration; each one given wins over the discovered one.
    pub endpoints: ConfiguredEndpoints,
    /// Sent with every authorization request (after the standard parameters).
    pub extra_authorize_params: Vec<(String, String)>,
    /// `audience`, sent to the authorization and token endpoints (Auth0-style APIs).
    pub audience: Option<String>,
    pub claim_mappings: ClaimMappings,
    pub profile: Arc<dyn ProfileMapping>,
    /// What an email without an `email_verified` claim counts as (`assume_email_verified`).
    pub email_without_flag: WithoutFlag,
}

/// Endpoints fixed by the configuration rather than discovered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfiguredEndpoints {
    pub authorization: Option<String>,
    pub token: Option<String>,
    pub userinfo: Option<String>,
}

/// What a provider adds to the plain OpenID Connect behaviour.
pub trait ProfileMapping: Send + Sync {
    /// Further spellings of `issuer` the provider documents for its ID tokens and authorization
    /// responses (Google: `accounts.google.com` next to `https://accounts.google.com`).
    fn issuer_aliases(&self, _issuer: &str) -> Vec<String> {
        Vec::new()
    }

    /// Adds claims to the raw profile before `claim_mappings` read it.
    fn extend_profile(&self, _profile: &mut Map<String, Value>) {}

    /// Fills the provider-specific parts of the user (groups, permissions, role).
    fn complete_user(&self, _profile: &Value, _user: &mut UserIdentity) {}
}

/// Plain OpenID Connect: nothing to add.
pub struct StandardProfile;

impl ProfileMapping for StandardProfile {}

/// The parts of an OpenID Provider's discovery document mxgate uses.
#[derive(Debug, Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    #[serde(default)]
    authorization_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint: Option<String>,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

/// Discovery and configuration combined: what a login talks to.
struct Discovered {
    /// Accepted `iss` values; the discovered issuer first.
    issuers: Vec<String>,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
    iss_parameter_supported: bool,
    jwks: JwksCache,
    client: OAuthClient,
}

pub struct OidcProvider {
    settings: OidcSettings,
    http: reqwest::Client,
    discovered: RwLock<Option<Arc<Discovered>>>,
}

/// The `oidc` provider from its MXCP block (a bad `config_url` is a start-up error).
pub fn build(
    config: &OidcConfig,
    http: reqwest::Client,
    _endpoints: &ProviderEndpoints,
    email_without_flag: WithoutFlag,
) -> Result<Arc<dyn Provider>, ProviderError> {
    let settings = OidcSettings {
        email_without_flag,
        ..OidcSettings::from_oidc_config(config.clone())
    };
    settings.check_urls()?;
    Ok(Arc::new(OidcProvider::with_settings(settings, http)))
}

// === impl OidcSettings ===

impl OidcSettings {
    /// MXCP's `oidc` block: everything from discovery; `provider_name` (default `oidc`) names it.
    pub fn from_oidc_config(config: OidcConfig) -> Self {
        let mut extra: Vec<(String, String)> = config.extra_authorize_params.into_iter().flatten().collect();
        // mxgate sets these itself; a configured copy would be sent twice.
        extra.retain(|(k, _)| !RESERVED_AUTHORIZE_PARAMS.contains(&k.as_str()));
        Self {
            name: config.provider_name.unwrap_or_else(|| "oidc".into()),
            discovery_url: config.config_url,
            client_id: config.client_id,
            client_secret: config.client_secret,
            scope: config.scope,
            endpoints: ConfiguredEndpoints::default(),
            extra_authorize_params: extra,
            audience: config.audience,
            claim_mappings: config.claim_mappings,
            profile: Arc::new(StandardProfile),
            email_without_flag: WithoutFlag::default(),
        }
    }

    /// Every configured endpoint, checked to be an http(s) URL (a start-up error otherwise).
    pub fn check_urls(&self) -> Result<(), ProviderError> {
        let configured = [
            ("the discovery URL", Some(&self.discovery_url)),
            ("the authorization URL", self.endpoints.authorization.as_ref()),
            ("the token URL", self.endpoints.token.as_ref()),
            ("the userinfo URL", self.endpoints.userinfo.as_ref()),
        ];
        for (what, value) in configured {
            if let Some(value) = value {
                check_http_url(&self.name, what, value)?;
            }
        }
        Ok(())
    }
}

/// Authorization parameters mxgate always sets itself.
const RESERVED_AUTHORIZE_PARAMS: [&str; 8] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
];

/// `value` as an http(s) URL, or an error naming the provider and the setting.
pub fn check_http_url(provider: &str, what: &str, value: &str) -> Result<Url, ProviderError> {
    let invalid = |message: String| ProviderError::Invalid {
        provider: provider.to_string(),
        message,
    };
    let url = Url::parse(value).map_err(|e| invalid(format!("{what} `{value}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(format!("{what} `{value}` must be an http(s) URL with a host")));
    }
    Ok(url)
}

/// `scope` with `openid` first when it is missing: Google and Keycloak answer without an ID
/// token (and Keycloak's userinfo refuses the token) unless `openid` is asked for.
pub fn with_openid(scope: &str) -> String {
    if scope.split_whitespace().any(|s| s == "openid") {
        scope.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        std::iter::once("openid")
            .chain(scope.split_whitespace())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The endpoint to use: the configured one, else the discovered one.
fn choose_endpoint(
    provider: &str,
    field: &str,
    configured: Option<&str>,
    discovered: Option<&str>,
) -> Result<String, ProviderError> {
    let invalid = |message: String| ProviderError::Invalid {
        provider: provider.to_string(),
        message,
    };
    match (configured, discovered) {
        (Some(url), _) => Ok(url.to_string()),
        (None, Some(url)) => {
            Url::parse(url).map_err(|e| invalid(format!("discovery `{field}` is not a URL: {e}")))?;
            Ok(url.to_string())
        }
        (None, None) => Err(invalid(format!("the discovery document has no `{field}`"))),
    }
}

/// The user from a raw profile, as MXCP's OIDC providers read it: `sub`; `username` is
/// `preferred_username`, else the email's local part, else `sub`; `groups` from a `groups`
/// claim. Only an email the provider marks verified (`email_verified`; without the claim:
/// `email_without_flag`) is `email` (and may give `username`): policies on `user.email` trust
/// it. Any other stays only in the raw profile.
pub fn user_from_profile(
    provider: &str,
    profile: &Value,
    claim_mappings: &ClaimMappings,
    mapping: &dyn ProfileMapping,
    email_without_flag: WithoutFlag,
) -> Result<UserIdentity, ProviderError> {
    let text = |key: &str| profile.get(key).and_then(Value::as_str).map(str::to_string);
    let user_id = text("sub").ok_or_else(|| ProviderError::Invalid {
        provider: provider.to_string(),
        message: "the profile has no `sub`".into(),
    })?;
    let email = verified_email(provider, profile, text("email"), email_without_flag);
    let username = text("preferred_username")
        .or_else(|| email.as_deref().and_then(|e| e.split('@').next()).map(str::to_string))
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| user_id.clone());
    let groups = profile
        .get("groups")
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let mut user = UserIdentity {
        provider: provider.to_string(),
        user_id,
        username,
        email,
        name: text("name"),
        avatar_url: text("picture"),
        groups,
        role: None,
        permissions: Vec::new(),
        capabilities: derive_capabilities(claim_mappings, profile),
    };
    mapping.complete_user(profile, &mut user);
    Ok(user)
}

// === impl OidcProvider ===

impl OidcProvider {
    /// The `oidc` provider (MXCP's `oidc` block).
    pub fn new(config: OidcConfig, http: reqwest::Client) -> Self {
        Self::with_settings(OidcSettings::from_oidc_config(config), http)
    }

    /// Any OpenID provider; call [`OidcSettings::check_urls`] first for a start-up error on bad URLs.
    pub fn with_settings(settings: OidcSettings, http: reqwest::Client) -> Self {
        Self {
            settings,
            http,
            discovered: RwLock::new(None),
        }
    }

    fn invalid(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::Invalid {
            provider: self.settings.name.clone(),
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
        let name = &self.settings.name;
        let document: DiscoveryDocument = get_json(
            &self.http,
            name,
            "the discovery document",
            &self.settings.discovery_url,
            None,
        )
        .await?;
        let configured = &self.settings.endpoints;
        let authorization_endpoint = choose_endpoint(
            name,
            "authorization_endpoint",
            configured.authorization.as_deref(),
            document.authorization_endpoint.as_deref(),
        )?;
        let token_endpoint = choose_endpoint(
            name,
            "token_endpoint",
            configured.token.as_deref(),
            document.token_endpoint.as_deref(),
        )?;
        let userinfo_endpoint = match (&configured.userinfo, &document.userinfo_endpoint) {
            (None, None) => None,
            (configured, discovered) => Some(choose_endpoint(
                name,
                "userinfo_endpoint",
                configured.as_deref(),
                discovered.as_deref(),
            )?),
        };
        Url::parse(&document.jwks_uri).map_err(|e| self.invalid(format!("discovery `jwks_uri` is not a URL: {e}")))?;
        // RFC 6749 §2.3.1: Basic is the default; use the request body only when Basic is not offered.
        let basic_auth = document
            .token_endpoint_auth_methods_supported
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == "client_secret_basic"));
        let mut issuers = vec![document.issuer.clone()];
        issuers.extend(self.settings.profile.issuer_aliases(&document.issuer));
        let discovered = Arc::new(Discovered {
            issuers,
            authorization_endpoint,
            token_endpoint,
            userinfo_endpoint,
            iss_parameter_supported: document.authorization_response_iss_parameter_supported,
            jwks: JwksCache::new(name, &document.jwks_uri),
            client: OAuthClient {
                provider: name.clone(),
                client_id: self.settings.client_id.clone(),
                client_secret: self.settings.client_secret.expose().to_string(),
                basic_auth,
            },
        });
        *slot = Some(discovered.clone());
        Ok(discovered)
    }

    fn audience_param(&self) -> Vec<(&str, &str)> {
        self.settings
            .audience
            .iter()
            .map(|a| ("audience", a.as_str()))
            .collect()
    }

    /// RFC 9207: the response must come from the issuer the user was sent to (mix-up defence).
    fn check_response_issuer(&self, d: &Discovered, iss: Option<&str>) -> Result<(), ProviderError> {
        match iss {
            Some(iss) if !d.issuers.iter().any(|i| i == iss) => Err(self.invalid(format!(
                "the authorization response came from issuer `{iss}`, not this provider"
            ))),
            None if d.iss_parameter_supported => {
                Err(self.invalid("the authorization response has no `iss` although the provider sends one"))
            }
            _ => Ok(()),
        }
    }

    /// The raw profile: verified access-token claims < verified ID token claims < userinfo; and
    /// the provider's session id (`sid` of the ID token, when it has a usable one).
    async fn profile(
        &self,
        d: &Discovered,
        tokens: &ProviderTokens,
        nonce: &str,
    ) -> Result<(Value, Option<String>), ProviderError> {
        let id_token = tokens
            .id_token
            .as_deref()
            .ok_or_else(|| self.invalid("the token response has no id_token (is `openid` in the scope?)"))?;
        let expected = Expected {
            issuers: &d.issuers,
            client_id: &self.settings.client_id,
            nonce,
        };
        let Value::Object(id_claims) = d.jwks.verify(&self.http, id_token, &expected).await? else {
            return Err(self.invalid("the ID token's claims are not a JSON object"));
        };
        let idp_session = id_claims
            .get("sid")
            .and_then(Value::as_str)
            .filter(|sid| !sid.is_empty() && sid.len() <= MAX_CLAIM_LEN)
            .map(str::to_string);
        let mut profile = match d
            .jwks
            .access_token_claims(&self.http, &tokens.access_token, &d.issuers, &self.settings.client_id)
            .await
        {
            Ok(Some(Value::Object(claims))) => claims,
            Ok(_) => Map::new(),
            Err(e) => {
                tracing::debug!(provider = %self.settings.name, reason = %e, "access token claims not used");
                Map::new()
            }
        };
        profile.extend(id_claims);
        if let Some(userinfo_url) = &d.userinfo_endpoint {
            let userinfo: Value = get_json(
                &self.http,
                &self.settings.name,
                "userinfo",
                userinfo_url,
                Some(&tokens.access_token),
            )
            .await?;
            let Value::Object(userinfo) = userinfo else {
                return Err(self.invalid("userinfo is not a JSON object"));
            };
            if userinfo.get("sub") != profile.get("sub") {
                return Err(self.invalid("userinfo `sub` differs from the ID token's"));
            }
            profile.extend(userinfo);
        }
        self.settings.profile.extend_profile(&mut profile);
        Ok((Value::Object(profile), idp_session))
    }
}

#[async_trait]
impl Provider for OidcProvider {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn authorization_url(&self, request: &LoginRequest<'_>) -> Result<Url, ProviderError> {
        let d = self.discovered().await?;
        let mut extra: Vec<(&str, &str)> = self
            .settings
            .extra_authorize_params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        extra.extend(self.audience_param());
        extra.push(("nonce", request.nonce));
        if let Some(hint) = request.login_hint {
            extra.push(("login_hint", hint));
        }
        d.client.authorization_url(
            &d.authorization_endpoint,
            request.redirect_uri,
            &self.settings.scope,
            request.state,
            request.pkce_verifier,
            &extra,
        )
    }

    async fn complete_login(&self, callback: &LoginCallback<'_>) -> Result<LoginOutcome, ProviderError> {
        let d = self.discovered().await?;
        self.check_response_issuer(&d, callback.iss)?;
        let audience = self.audience_param();
        let tokens = d
            .client
            .exchange_code(
                &self.http,
                &CodeExchange {
                    token_url: &d.token_endpoint,
                    redirect_uri: callback.redirect_uri,
                    code: callback.code,
                    pkce_verifier: callback.pkce_verifier,
                    extra: &audience,
                },
                crate::support::now(),
            )
            .await?;
        let (profile, idp_session) = self.profile(&d, &tokens, callback.nonce).await?;
        let user = user_from_profile(
            &self.settings.name,
            &profile,
            &self.settings.claim_mappings,
            self.settings.profile.as_ref(),
            self.settings.email_without_flag,
        )?;
        Ok(LoginOutcome {
            user,
            tokens,
            profile,
            idp_session,
        })
    }

    async fn refresh(&self, refresh_token: &str) -> Result<ProviderTokens, ProviderError> {
        let d = self.discovered().await?;
        d.client
            .refresh(
                &self.http,
                &d.token_endpoint,
                refresh_token,
                &self.audience_param(),
                crate::support::now(),
            )
            .await
    }

    async fn verify_logout_token(&self, token: &str, now: u64) -> Result<LogoutToken, ProviderError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(self.invalid(format!("the logout token is larger than {MAX_TOKEN_LEN} bytes")));
        }
        let d = self.discovered().await?;
        let claims = d
            .jwks
            .logout_token_claims(&self.http, token, &d.issuers, &self.settings.client_id)
            .await?;
        LogoutToken::from_claims(&claims, now).map_err(|rule| self.invalid(format!("logout token rejected: {rule}")))
    }

    async fn ready(&self) -> Result<(), ProviderError> {
        self.discovered().await.map(|_| ())
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A scripted identity provider on a loopback port (discovery, JWKS, token, userinfo) and
    //! ID tokens signed with a fixed Ed25519 key, for the providers' unit tests.

    use crate::identity::signing_key::AssertionSigner;
    use ed25519_dalek::SigningKey;
    use serde_json::Value;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// One request the server saw.
    #[derive(Debug, Clone)]
    pub struct Seen {
        pub method: String,
        pub path: String,
        pub authorization: Option<String>,
        pub body: String,
    }

    pub struct ScriptedIdp {
        pub base: String,
        routes: Arc<Mutex<HashMap<String, (u16, String)>>>,
        pub seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl ScriptedIdp {
        pub async fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let routes: Arc<Mutex<HashMap<String, (u16, String)>>> = Arc::default();
            let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
            let (r, s) = (routes.clone(), seen.clone());
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let (r, s) = (r.clone(), s.clone());
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 4096];
                        let head_end = loop {
                            let n = stream.read(&mut chunk).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                        let header = |name: &str| {
                            head.lines().find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                            })
                        };
                        let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                        while buf.len() < head_end + length {
                            let n = stream.read(&mut chunk).await.unwrap_or(0);
                            if n == 0 {
                                break;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        let mut request_line = head.lines().next().unwrap_or("").split(' ');
                        let method = request_line.next().unwrap_or("").to_string();
                        let path = request_line.next().unwrap_or("").to_string();
                        let path = path.split('?').next().unwrap_or("").to_string();
                        s.lock().unwrap().push(Seen {
                            method: method.clone(),
                            path: path.clone(),
                            authorization: header("authorization"),
                            body: String::from_utf8_lossy(&buf[head_end..]).to_string(),
                        });
                        let (status, body) = r
                            .lock()
                            .unwrap()
                            .get(&format!("{method} {path}"))
                            .cloned()
                            .unwrap_or((404, "{}".into()));
                        let response = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(response.as_bytes()).await;
                    });
                }
            });
            Self { base, routes, seen }
        }

        pub fn route(&self, method: &str, path: &str, status: u16, body: &Value) {
            self.routes
                .lock()
                .unwrap()
                .insert(format!("{method} {path}"), (status, body.to_string()));
        }

        pub fn seen(&self, method: &str, path: &str) -> Vec<Seen> {
            let seen = self.seen.lock().unwrap();
            seen.iter()
                .filter(|s| s.method == method && s.path == path)
                .cloned()
                .collect()
        }
    }

    /// Signs tokens with a fixed Ed25519 key; `jwks()` is its public JWKS.
    pub fn signer() -> AssertionSigner {
        AssertionSigner::ed25519(&SigningKey::from_bytes(&[7; 32])).unwrap()
    }

    /// A key the scripted provider does not publish.
    pub fn other_signer() -> AssertionSigner {
        AssertionSigner::ed25519(&SigningKey::from_bytes(&[9; 32])).unwrap()
    }

    pub fn jwks() -> Value {
        serde_json::from_slice(signer().jwks()).unwrap()
    }

    pub fn now() -> u64 {
        crate::support::now()
    }

    /// The error of a result whose success type has no `Debug` (a login outcome holds tokens).
    pub fn error_of<T>(result: Result<T, crate::providers::ProviderError>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{error_of, jwks, now, other_signer, signer, ScriptedIdp};
    use super::*;
    use serde_json::json;

    /// Only discovery defines the issuer; it need not be the server's own address.
    const ISSUER: &str = "https://idp.example";

    fn oidc_config(config_url: &str) -> OidcConfig {
        serde_yaml::from_str(&format!(
            "config_url: {config_url}\nclient_id: mxgate\nclient_secret: s3cret\nscope: openid email\n\
             callback_path: /callback\nclaim_mappings: {{groups: {{engineering: [eng]}}}}\n\
             extra_authorize_params: {{prompt: login, nonce: theirs}}\n"
        ))
        .unwrap()
    }

    /// An IdP whose discovery names `issuer`, with a token endpoint answering `id_claims`.
    async fn idp(issuer: &str, id_claims: Value, access_token: &str) -> ScriptedIdp {
        let idp = ScriptedIdp::start().await;
        let base = idp.base.clone();
        idp.route(
            "GET",
            "/.well-known/openid-configuration",
            200,
            &json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{base}/auth"),
                "token_endpoint": format!("{base}/token"),
                "userinfo_endpoint": format!("{base}/userinfo"),
                "jwks_uri": format!("{base}/jwks"),
                "authorization_response_iss_parameter_supported": true,
            }),
        );
        idp.route("GET", "/jwks", 200, &jwks());
        let id_token = signer().sign(&id_claims).unwrap();
        idp.route(
            "POST",
            "/token",
            200,
            &json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 60,
                    "refresh_token": "rt-1", "id_token": id_token}),
        );
        idp.route(
            "GET",
            "/userinfo",
            200,
            &json!({"sub": "u1", "email": "u1@example.test", "groups": ["engineering"]}),
        );
        idp
    }

    fn id_claims(iss: &str) -> Value {
        json!({"iss": iss, "sub": "u1", "aud": "mxgate", "exp": now() + 300, "iat": now(), "nonce": "n-1",
               "name": "User One", "email_verified": true})
    }

    fn callback<'a>(iss: Option<&'a str>) -> LoginCallback<'a> {
        LoginCallback {
            code: "code-1",
            iss,
            pkce_verifier: "verifier-verifier-verifier-verifier-verifier-1",
            nonce: "n-1",
            redirect_uri: "http://127.0.0.1:1/callback",
        }
    }

    fn http() -> reqwest::Client {
        super::super::provider_http_client().unwrap()
    }

    #[tokio::test]
    async fn oidc_login_verifies_the_id_token_and_merges_userinfo() {
        let issuer = ISSUER.to_string();
        let idp = self::idp(&issuer, id_claims(&issuer), "opaque-at").await;
        let provider = OidcProvider::new(
            oidc_config(&format!("{}/.well-known/openid-configuration", idp.base)),
            http(),
        );
        let outcome = provider.complete_login(&callback(Some(&issuer))).await.unwrap();
        assert_eq!(outcome.user.provider, "oidc");
        assert_eq!(outcome.user.user_id, "u1");
        assert_eq!(outcome.user.username, "u1");
        assert_eq!(outcome.user.email.as_deref(), Some("u1@example.test"));
        assert_eq!(outcome.user.name.as_deref(), Some("User One"));
        assert_eq!(outcome.user.groups, vec!["engineering"]);
        assert_eq!(outcome.user.capabilities, vec!["eng"]);
        assert_eq!(outcome.tokens.refresh_token.as_deref(), Some("rt-1"));
        let [userinfo] = idp.seen("GET", "/userinfo").try_into().unwrap();
        assert_eq!(userinfo.authorization.as_deref(), Some("Bearer opaque-at"));
    }

    #[tokio::test]
    async fn authorization_url_has_nonce_hint_and_configured_params_once() {
        let issuer = ISSUER.to_string();
        let idp = self::idp(&issuer, id_claims(&issuer), "at").await;
        let provider = OidcProvider::new(
            oidc_config(&format!("{}/.well-known/openid-configuration", idp.base)),
            http(),
        );
        let url = provider
            .authorization_url(&LoginRequest {
                state: "st",
                pkce_verifier: "verifier-verifier-verifier-verifier-verifier-1",
                nonce: "n-1",
                redirect_uri: "http://127.0.0.1:1/callback",
                login_hint: Some("bob"),
            })
            .await
            .unwrap();
        assert!(url.as_str().starts_with(&format!("{}/auth?", idp.base)), "{url}");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| {
            pairs
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("nonce"), vec!["n-1"], "a configured nonce is not sent");
        assert_eq!(get("prompt"), vec!["login"]);
        assert_eq!(get("login_hint"), vec!["bob"]);
        assert_eq!(get("code_challenge_method"), vec!["S256"]);
    }

    #[tokio::test]
    async fn a_foreign_or_missing_response_issuer_is_refused_before_the_code_is_spent() {
        let issuer = ISSUER.to_string();
        let idp = self::idp(&issuer, id_claims(&issuer), "at").await;
        let provider = OidcProvider::new(
            oidc_config(&format!("{}/.well-known/openid-configuration", idp.base)),
            http(),
        );
        let err = error_of(provider.complete_login(&callback(Some("https://evil.example"))).await);
        assert!(err.contains("evil.example"), "{err}");
        let err = error_of(provider.complete_login(&callback(None)).await);
        assert!(err.contains("no `iss`"), "{err}");
        assert!(idp.seen("POST", "/token").is_empty(), "the code must not be redeemed");
    }

    #[tokio::test]
    async fn id_token_from_another_issuer_or_nonce_is_refused() {
        let issuer = ISSUER.to_string();
        let idp = self::idp(&issuer, id_claims("https://other.example"), "at").await;
        let provider = OidcProvider::new(
            oidc_config(&format!("{}/.well-known/openid-configuration", idp.base)),
            http(),
        );
        let err = error_of(provider.complete_login(&callback(Some(&issuer))).await);
        assert!(err.contains("ID token rejected"), "{err}");

        let mut claims = id_claims(&issuer);
        claims["nonce"] = json!("another");
        let idp = self::idp(&issuer, claims, "at").await;
        let provider = OidcProvider::new(
            oidc_config(&format!("{}/.well-known/openid-configuration", idp.base)),
            http(),
        );
        let err = error_of(provider.complete_login(&callback(Some(&issuer))).await);
        assert!(err.contains("nonce"), "{err}");
    }

    #[tokio::test]
    async fn verified_jwt_access_token_claims_are_the_lowest_layer_of_the_profile() {
        let issuer = ISSUER.to_string();
        let access = signer()
            .sign(
                &json!({"iss": issuer, "sub": "u1", "azp": "mxgate", "aud": "account", "exp": now() + 60,
                          "realm_access": {"roles": ["admin"]}, "name": "From the access token"}),
            )
            .unwrap();
        let idp = self::idp(&issuer, id_claims(&issuer), &access).await;
        let mut config = oidc_config(&format!("{}/.well-known/openid-configuration", idp.base));
        config.claim_mappings = serde_yaml::from_str("realm_access.roles: {admin: [tools.admin]}").unwrap();
        let provider = OidcProvider::new(config, http());
        let user = provider.complete_login(&callback(Some(&issuer))).await.unwrap().user;
        assert_eq!(user.capabilities, vec!["tools.admin"]);
        assert_eq!(
            user.name.as_deref(),
            Some("User One"),
            "the ID token wins over the access token"
        );
    }

    #[tokio::test]
    async fn unverifiable_jwt_access_token_claims_are_ignored() {
        let issuer = ISSUER.to_string();
        let other_key = other_signer();
        let cases = [
            // signed by a key the provider does not have
            other_key
                .sign(&json!({"iss": issuer, "azp": "mxgate", "exp": now() + 60, "realm_access": {"roles": ["admin"]}}))
                .unwrap(),
            // issued to another client
            signer()
                .sign(
                    &json!({"iss": issuer, "azp": "other", "aud": "account", "exp": now() + 60,
                              "realm_access": {"roles": ["admin"]}}),
                )
                .unwrap(),
            // another issuer
            signer()
                .sign(
                    &json!({"iss": "https://other.example", "azp": "mxgate", "exp": now() + 60,
                              "realm_access": {"roles": ["admin"]}}),
                )
                .unwrap(),
        ];
        for access in cases {
            let idp = self::idp(&issuer, id_claims(&issuer), &access).await;
            let mut config = oidc_config(&format!("{}/.well-known/openid-configuration", idp.base));
            config.claim_mappings = serde_yaml::from_str("realm_access.roles: {admin: [tools.admin]}").unwrap();
            let user = OidcProvider::new(config, http())
                .complete_login(&callback(Some(&issuer)))
                .await
                .unwrap()
                .user;
            assert!(user.capabilities.is_empty(), "{:?}", user.capabilities);
        }
    }

    #[tokio::test]
    async fn refresh_uses_the_token_endpoint_and_keeps_an_unrotated_refresh_token() {
        let issuer = ISSUER.to_string();
        let idp = self::idp(&issuer, id_claims(&issuer), "at").await;
        idp.route(
            "POST",
            "/token",
            200,
            &json!({"access_token": "at-2", "token_type": "Bearer", "expires_in": 60}),
        );
        let provider = OidcProvider::new(
            oidc_config(&format!("{}/.well-known/openid-configuration", idp.base)),
            http(),
        );
        let tokens = provider.refresh("rt-1").await.unwrap();
        assert_eq!(tokens.access_token, "at-2");
        assert_eq!(tokens.refresh_token.as_deref(), Some("rt-1"));
        let [request] = idp.seen("POST", "/token").try_into().unwrap();
        assert!(request.body.contains("grant_type=refresh_token"), "{}", request.body);
    }

    /// `email` and `username` of a profile with `email_verified` set to `flag` (`None`: absent).
    fn email_and_username(flag: Option<Value>, without_flag: WithoutFlag) -> (Option<String>, String) {
        let mut profile = json!({"sub": "u1", "email": "ceo@corp.example"});
        if let Some(flag) = flag {
            profile["email_verified"] = flag;
        }
        let user = user_from_profile("oidc", &profile, &ClaimMappings::new(), &StandardProfile, without_flag).unwrap();
        (user.email, user.username)
    }

    #[test]
    fn only_a_verified_email_is_the_users_email() {
        let verified = (Some("ceo@corp.example".to_string()), "ceo".to_string());
        let dropped = (None, "u1".to_string());
        for without_flag in [WithoutFlag::Unverified, WithoutFlag::Verified] {
            assert_eq!(email_and_username(Some(json!(true)), without_flag), verified);
            assert_eq!(email_and_username(Some(json!("true")), without_flag), verified);
            assert_eq!(email_and_username(Some(json!(false)), without_flag), dropped);
            assert_eq!(email_and_username(Some(json!("false")), without_flag), dropped);
        }
        assert_eq!(
            email_and_username(None, WithoutFlag::Unverified),
            dropped,
            "a missing claim is not verified by default"
        );
        assert_eq!(email_and_username(None, WithoutFlag::Verified), verified);
    }

    #[tokio::test]
    async fn a_login_without_email_verified_gives_no_email_unless_the_provider_is_trusted() {
        let issuer = ISSUER.to_string();
        let mut claims = id_claims(&issuer);
        claims.as_object_mut().unwrap().remove("email_verified");
        let idp = self::idp(&issuer, claims, "opaque-at").await;
        let config = oidc_config(&format!("{}/.well-known/openid-configuration", idp.base));
        let login = |without_flag| {
            let provider = build(&config, http(), &ProviderEndpoints::default(), without_flag).unwrap();
            async move { provider.complete_login(&callback(Some(ISSUER))).await.unwrap().user }
        };
        let user = login(WithoutFlag::default()).await;
        assert_eq!((user.email, user.username.as_str()), (None, "u1"));
        let user = login(WithoutFlag::Verified).await;
        assert_eq!(user.email.as_deref(), Some("u1@example.test"));
    }

    #[test]
    fn configured_endpoints_win_over_discovered_ones() {
        assert_eq!(
            choose_endpoint("p", "token_endpoint", Some("https://c/token"), Some("https://d/token")).unwrap(),
            "https://c/token"
        );
        assert_eq!(
            choose_endpoint("p", "token_endpoint", None, Some("https://d/token")).unwrap(),
            "https://d/token"
        );
        assert!(choose_endpoint("p", "token_endpoint", None, None).is_err());
        assert!(choose_endpoint("p", "token_endpoint", None, Some("not a url")).is_err());
    }

    #[test]
    fn build_refuses_a_config_url_that_is_not_http() {
        let config = oidc_config("file:///etc/passwd");
        let err = error_of(build(
            &config,
            http(),
            &ProviderEndpoints::default(),
            WithoutFlag::default(),
        ));
        assert!(err.contains("discovery URL"), "{err}");
        assert!(build(
            &oidc_config("https://idp.example/.well-known/openid-configuration"),
            http(),
            &ProviderEndpoints::default(),
            WithoutFlag::default()
        )
        .is_ok());
    }

    #[test]
    fn openid_is_added_to_the_scope_once() {
        assert_eq!(with_openid("email profile"), "openid email profile");
        assert_eq!(with_openid("email  openid"), "email openid");
        assert_eq!(with_openid(""), "openid");
    }
    fn logout_claims() -> Value {
        json!({"iss": ISSUER, "aud": "mxgate", "iat": now(), "exp": now() + 120, "jti": "j-1",
               "sub": "u1", "sid": "idp-s1",
               "events": {"http://schemas.openid.net/event/backchannel-logout": {}}})
    }

    async fn logout_provider() -> (ScriptedIdp, OidcProvider) {
        let idp = self::idp(ISSUER, id_claims(ISSUER), "at").await;
        let provider = OidcProvider::new(
            oidc_config(&format!("{}/.well-known/openid-configuration", idp.base)),
            http(),
        );
        (idp, provider)
    }

    #[tokio::test]
    async fn the_login_keeps_the_id_tokens_sid_for_back_channel_logout() {
        let mut claims = id_claims(ISSUER);
        claims["sid"] = json!("idp-s1");
        let idp = self::idp(ISSUER, claims, "at").await;
        let provider = OidcProvider::new(
            oidc_config(&format!("{}/.well-known/openid-configuration", idp.base)),
            http(),
        );
        let outcome = provider.complete_login(&callback(Some(ISSUER))).await.unwrap();
        assert_eq!(outcome.idp_session.as_deref(), Some("idp-s1"));

        let mut claims = id_claims(ISSUER);
        claims["sid"] = json!("s".repeat(MAX_CLAIM_LEN + 1));
        let idp = self::idp(ISSUER, claims, "at").await;
        let provider = OidcProvider::new(
            oidc_config(&format!("{}/.well-known/openid-configuration", idp.base)),
            http(),
        );
        let outcome = provider.complete_login(&callback(Some(ISSUER))).await.unwrap();
        assert_eq!(outcome.idp_session, None, "an oversized sid is not kept");
    }

    #[tokio::test]
    async fn a_logout_token_signed_by_the_provider_for_this_client_verifies() {
        let (_idp, provider) = logout_provider().await;
        let token = signer().sign(&logout_claims()).unwrap();
        let logout = provider.verify_logout_token(&token, now()).await.unwrap();
        assert_eq!(logout.subject.as_deref(), Some("u1"));
        assert_eq!(logout.session.as_deref(), Some("idp-s1"));
        assert_eq!(logout.jti, "j-1");
    }

    #[tokio::test]
    async fn a_logout_token_breaking_any_rule_is_refused_with_the_reason() {
        let (_idp, provider) = logout_provider().await;
        let changed = |change: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut claims = logout_claims();
            change(claims.as_object_mut().unwrap());
            signer().sign(&claims).unwrap()
        };
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "bad signature",
                other_signer().sign(&logout_claims()).unwrap(),
                "no key",
            ),
            (
                "tampered payload",
                {
                    let token = signer().sign(&logout_claims()).unwrap();
                    let forged = other_signer().sign(&json!({"sub": "bob"})).unwrap();
                    let parts: Vec<&str> = token.split('.').collect();
                    let forged_payload = forged.split('.').nth(1).unwrap();
                    format!("{}.{forged_payload}.{}", parts[0], parts[2])
                },
                "rejected",
            ),
            (
                "wrong issuer",
                changed(&|c| {
                    c.insert("iss".into(), json!("https://evil.example"));
                }),
                "rejected",
            ),
            (
                "wrong audience",
                changed(&|c| {
                    c.insert("aud".into(), json!("another-client"));
                }),
                "rejected",
            ),
            (
                "expired",
                changed(&|c| {
                    c.insert("exp".into(), json!(now() - 3600));
                }),
                "rejected",
            ),
            (
                "nonce present",
                changed(&|c| {
                    c.insert("nonce".into(), json!("n-1"));
                }),
                "nonce",
            ),
            (
                "events missing",
                changed(&|c| {
                    c.remove("events");
                }),
                "events",
            ),
            (
                "neither sub nor sid",
                changed(&|c| {
                    c.remove("sub");
                    c.remove("sid");
                }),
                "neither `sub` nor `sid`",
            ),
            (
                "no jti",
                changed(&|c| {
                    c.remove("jti");
                }),
                "jti",
            ),
            (
                "no iat",
                changed(&|c| {
                    c.remove("iat");
                }),
                "iat",
            ),
            ("too large", "a".repeat(MAX_TOKEN_LEN + 1), "larger than"),
            ("not a JWT", "not-a-jwt".into(), "malformed"),
        ];
        for (case, token, expected) in cases {
            let err = error_of(provider.verify_logout_token(&token, now()).await);
            assert!(err.contains(expected), "{case}: {err}");
        }
    }
}
