//! The `github` provider, as MXCP's: GitHub's OAuth web flow ("Authorizing OAuth apps") for
//! OAuth apps and GitHub Apps, and the user from the REST API.
//!
//! * Authorization at `auth_url` with `scope` (default `read:user user:email`), mxgate's state
//!   and PKCE S256 (GitHub verifies it when sent), and the client's `login_hint` as `login`.
//! * Token request at `token_url` as a form with `Accept: application/json`. GitHub answers
//!   errors with HTTP 200 and an `error` field; those are refusals. Granted scopes come back
//!   comma-separated.
//! * OAuth-app tokens never expire and have no refresh token (`expires_at: None`: mxgate's own
//!   session lifetime governs). GitHub-App user tokens carry `expires_in` and a rotating
//!   `refresh_token`, refreshed with `grant_type=refresh_token` at `token_url`.
//! * `GET {api_url}/user` gives the user (`user_id` = numeric `id`, `username` = `login`);
//!   `/user/emails` (with `user:email` or `user`) the primary verified email, else any verified
//!   one — never an address it marks unverified; only when that list cannot be read (a 403/404
//!   there does not fail the login) `/user`'s public email, which GitHub lets a user pick only
//!   among their verified addresses. GitHub flags every address, so `assume_email_verified`
//!   does not apply to it. `/user/orgs`
//!   and `/user/teams` (with `read:org`) the `groups`: org logins and `org/team-slug`.
//!   The scopes are the granted ones (the configured ones for GitHub Apps, which grant none).
//!   Any other failure of these calls fails the login rather than give a partial identity.
//! * `claim_mappings` read the `/user` JSON plus `groups`.

use super::oauth_client::{clip, endpoint_url, error_chain, keep_refresh_token, read_bounded, TokenEncoding};
use super::web_flow::{WebFlow, WebFlowConfig};
use super::{LoginCallback, LoginOutcome, LoginRequest, Provider, ProviderError};
use crate::config::mxcp_user::GithubConfig;
use crate::config::ProviderEndpoints;
use crate::identity::capabilities::derive_capabilities;
use crate::identity::user::{ProviderTokens, UserIdentity};
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use url::Url;

const NAME: &str = "github";
/// The scope MXCP asks for when none is configured.
pub const DEFAULT_SCOPE: &str = "read:user user:email";
const DEFAULT_API_URL: &str = "https://api.github.com";
const API_VERSION: &str = "2022-11-28";
const PER_PAGE: usize = 100;
/// Orgs and teams are read up to this many pages of `PER_PAGE`.
const MAX_PAGES: usize = 5;
const MAX_API_BYTES: usize = 1024 * 1024;

pub fn build(
    config: &GithubConfig,
    http: reqwest::Client,
    endpoints: &ProviderEndpoints,
) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(Arc::new(GithubProvider::new(config, http, endpoints)?))
}

pub struct GithubProvider {
    flow: WebFlow,
    api_url: String,
    claim_mappings: crate::config::mxcp_user::ClaimMappings,
}

/// What a GitHub API call answered.
enum ApiAnswer {
    Json(Value),
    /// 403 or 404: the token may not read this (missing scope or app permission).
    Denied(reqwest::StatusCode),
}

// === impl GithubProvider ===

impl GithubProvider {
    pub fn new(
        config: &GithubConfig,
        http: reqwest::Client,
        endpoints: &ProviderEndpoints,
    ) -> Result<Self, ProviderError> {
        let api_url = endpoints.get("api_url").unwrap_or(DEFAULT_API_URL);
        endpoint_url(NAME, "api_url", api_url)?;
        let scope = config
            .scope
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SCOPE)
            .to_string();
        let flow = WebFlow::new(
            WebFlowConfig {
                provider: NAME,
                client_id: &config.client_id,
                client_secret: &config.client_secret,
                auth_url: &config.auth_url,
                token_url: &config.token_url,
                scope,
                encoding: TokenEncoding::Form,
            },
            http,
        )?;
        Ok(Self {
            flow,
            api_url: api_url.trim_end_matches('/').to_string(),
            claim_mappings: config.claim_mappings.clone(),
        })
    }

    fn invalid(message: impl Into<String>) -> ProviderError {
        ProviderError::Invalid {
            provider: NAME.into(),
            message: message.into(),
        }
    }

    /// GitHub's token answers, with the granted scopes made space-separated.
    async fn token_request(&self, params: &[(&str, &str)]) -> Result<ProviderTokens, ProviderError> {
        let mut tokens = self.flow.token_request(params).await?.tokens;
        tokens.scope = tokens.scope.as_deref().map(normalize_scope);
        Ok(tokens)
    }

    /// `GET {api_url}{path}` as GitHub's REST API asks to be called.
    async fn api_get(&self, path: &str, token: &str, what: &'static str) -> Result<ApiAnswer, ProviderError> {
        let url = format!("{}{path}", self.api_url);
        let unreachable = |message: String| ProviderError::Unreachable {
            provider: NAME.into(),
            what,
            message,
        };
        let response = self
            .flow
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::FORBIDDEN || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(ApiAnswer::Denied(status));
        }
        let body = read_bounded(response, MAX_API_BYTES)
            .await
            .map_err(|e| unreachable(format!("reading {url}: {e}")))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .and_then(Value::as_str)
                        .map(|m| format!(" ({})", clip(m, 200)))
                })
                .unwrap_or_default();
            let message = format!("{url} answered {status}{message}");
            return Err(
                if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    unreachable(message)
                } else {
                    Self::invalid(message)
                },
            );
        }
        serde_json::from_slice(&body)
            .map(ApiAnswer::Json)
            .map_err(|e| Self::invalid(format!("{what} at {url} is not JSON: {e}")))
    }

    /// Every item of a paginated list endpoint, up to `MAX_PAGES` pages; `None` when denied.
    async fn api_list(&self, path: &str, token: &str, what: &'static str) -> Result<Option<Vec<Value>>, ProviderError> {
        let mut items = Vec::new();
        for page in 1..=MAX_PAGES {
            let answer = self
                .api_get(&format!("{path}?per_page={PER_PAGE}&page={page}"), token, what)
                .await?;
            let batch = match answer {
                ApiAnswer::Denied(status) => {
                    tracing::debug!(%status, endpoint = path, "github: not allowed to read; left out");
                    return Ok(None);
                }
                ApiAnswer::Json(Value::Array(batch)) => batch,
                ApiAnswer::Json(_) => return Err(Self::invalid(format!("{what} ({path}) is not a JSON list"))),
            };
            let last = batch.len() < PER_PAGE;
            items.extend(batch);
            if last {
                return Ok(Some(items));
            }
        }
        tracing::warn!(
            endpoint = path,
            pages = MAX_PAGES,
            "github: list truncated after the page limit"
        );
        Ok(Some(items))
    }

    async fn groups(&self, token: &str) -> Result<Vec<String>, ProviderError> {
        let orgs = self.api_list("/user/orgs", token, "the user's organizations").await?;
        let teams = self.api_list("/user/teams", token, "the user's teams").await?;
        Ok(groups_from(
            orgs.as_deref().unwrap_or_default(),
            teams.as_deref().unwrap_or_default(),
        ))
    }
}

#[async_trait]
impl Provider for GithubProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn authorization_url(&self, request: &LoginRequest<'_>) -> Result<Url, ProviderError> {
        let mut extra = Vec::new();
        if let Some(hint) = request.login_hint {
            extra.push(("login", hint));
        }
        self.flow.authorization_url(request, &extra)
    }

    async fn complete_login(&self, callback: &LoginCallback<'_>) -> Result<LoginOutcome, ProviderError> {
        self.flow.check_issuer(callback.iss)?;
        let tokens = self
            .token_request(&[
                ("code", callback.code),
                ("redirect_uri", callback.redirect_uri),
                ("code_verifier", callback.pkce_verifier),
            ])
            .await?;
        let token = tokens.access_token.as_str();
        let granted = Scopes::new(
            tokens
                .scope
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or(self.flow.scope()),
        );

        let mut profile = match self.api_get("/user", token, "the user (/user)").await? {
            ApiAnswer::Json(user @ Value::Object(_)) => user,
            ApiAnswer::Json(_) => return Err(Self::invalid("/user is not a JSON object")),
            ApiAnswer::Denied(status) => {
                return Err(ProviderError::Unreachable {
                    provider: NAME.into(),
                    what: "the user (/user)",
                    message: format!("{}/user answered {status}", self.api_url),
                })
            }
        };
        let emails = if granted.allows_emails() {
            self.api_list("/user/emails", token, "the user's emails").await?
        } else {
            None
        };
        let groups = if granted.allows_orgs() {
            self.groups(token).await?
        } else {
            Vec::new()
        };
        if let Value::Object(map) = &mut profile {
            map.insert("groups".into(), Value::from(groups.clone()));
        }
        let mut user = user_from_profile(&profile, emails.as_deref())?;
        user.groups = groups;
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

/// GitHub's granted scopes (`read:org,user:email`) as a space-separated scope string.
fn normalize_scope(scope: &str) -> String {
    scope
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which API calls a set of OAuth scopes permits (a parent scope includes its children).
struct Scopes(Vec<String>);

impl Scopes {
    fn new(scope: &str) -> Self {
        Self(
            scope
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    fn has(&self, any: &[&str]) -> bool {
        self.0.iter().any(|s| any.contains(&s.as_str()))
    }

    fn allows_emails(&self) -> bool {
        self.has(&["user:email", "user"])
    }

    fn allows_orgs(&self) -> bool {
        self.has(&["read:org", "write:org", "admin:org"])
    }
}

/// The email to use: primary and verified, else any verified; `/user`'s public one only when the
/// list of addresses could not be read (when it could, it says whether that address is verified).
fn choose_email(emails: Option<&[Value]>, public: Option<&str>) -> Option<String> {
    let verified = |e: &&Value| e.get("verified").and_then(Value::as_bool) == Some(true);
    let address = |e: &Value| {
        e.get("email")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let Some(emails) = emails else {
        return public.filter(|s| !s.is_empty()).map(str::to_string);
    };
    emails
        .iter()
        .filter(verified)
        .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
        .and_then(address)
        .or_else(|| emails.iter().filter(verified).find_map(address))
}

/// Org logins, then `org/team-slug`, without repeats.
fn groups_from(orgs: &[Value], teams: &[Value]) -> Vec<String> {
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let mut out: Vec<String> = Vec::new();
    let org_logins = orgs.iter().filter_map(|o| text(o, "login"));
    let team_names = teams.iter().filter_map(|t| {
        let org = t.get("organization").and_then(|o| text(o, "login"))?;
        Some(format!("{org}/{}", text(t, "slug")?))
    });
    for group in org_logins.chain(team_names) {
        if !out.contains(&group) {
            out.push(group);
        }
    }
    out
}

/// The user from `/user` (and `/user/emails` when it could be read); groups and capabilities are
/// filled in by the caller.
fn user_from_profile(profile: &Value, emails: Option<&[Value]>) -> Result<UserIdentity, ProviderError> {
    let text = |key: &str| {
        profile
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let user_id = match profile.get("id") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(GithubProvider::invalid("/user has no `id`")),
    };
    let username = text("login").ok_or_else(|| GithubProvider::invalid("/user has no `login`"))?;
    Ok(UserIdentity {
        provider: NAME.into(),
        user_id,
        username,
        email: choose_email(emails, text("email").as_deref()),
        name: text("name"),
        avatar_url: text("avatar_url"),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn email_prefers_primary_verified_then_any_verified_then_public_when_unlisted() {
        let emails = [
            json!({"email": "old@x.test", "primary": false, "verified": true}),
            json!({"email": "primary@x.test", "primary": true, "verified": true}),
        ];
        assert_eq!(
            choose_email(Some(&emails), Some("pub@x.test")).as_deref(),
            Some("primary@x.test")
        );
        let emails = [
            json!({"email": "unverified-primary@x.test", "primary": true, "verified": false}),
            json!({"email": "verified@x.test", "primary": false, "verified": true}),
        ];
        assert_eq!(choose_email(Some(&emails), None).as_deref(), Some("verified@x.test"));
        assert_eq!(choose_email(None, Some("pub@x.test")).as_deref(), Some("pub@x.test"));
        assert_eq!(choose_email(Some(&[]), Some("pub@x.test")), None);
        assert_eq!(choose_email(None, None), None);
        assert_eq!(choose_email(Some(&[]), Some("")), None);
    }

    #[test]
    fn an_address_github_lists_as_unverified_is_never_the_email() {
        // The public address has become unverified (GitHub unverifies bouncing addresses).
        let emails = [
            json!({"email": "u@x.test", "primary": true, "verified": false}),
            json!({"email": "pub@x.test", "primary": false, "verified": false, "visibility": "public"}),
        ];
        assert_eq!(choose_email(Some(&emails), Some("pub@x.test")), None);
        let emails = [json!({"email": "pub@x.test", "primary": true})];
        assert_eq!(
            choose_email(Some(&emails), Some("pub@x.test")),
            None,
            "no `verified`: not verified"
        );
    }

    #[test]
    fn scopes_gate_the_email_and_org_calls() {
        assert!(Scopes::new("read:user user:email").allows_emails());
        assert!(Scopes::new("read:org,user").allows_emails());
        assert!(!Scopes::new("read:user").allows_emails());
        assert!(Scopes::new("read:user,read:org").allows_orgs());
        assert!(Scopes::new("admin:org").allows_orgs());
        assert!(!Scopes::new("read:user user:email").allows_orgs());
        assert!(!Scopes::new("").allows_emails());
    }

    #[test]
    fn granted_scopes_become_space_separated() {
        assert_eq!(normalize_scope("read:org,user:email"), "read:org user:email");
        assert_eq!(normalize_scope(""), "");
        assert_eq!(normalize_scope("repo, user"), "repo user");
    }

    #[test]
    fn user_maps_numeric_id_login_and_nulls() {
        let profile = json!({
            "login": "octocat", "id": 583231, "name": null, "email": null,
            "avatar_url": "https://avatars.githubusercontent.com/u/583231?v=4"
        });
        let user = user_from_profile(&profile, None).unwrap();
        assert_eq!(user.provider, "github");
        assert_eq!(user.user_id, "583231");
        assert_eq!(user.username, "octocat");
        assert_eq!(user.name, None);
        assert_eq!(user.email, None);
        assert_eq!(
            user.avatar_url.as_deref(),
            Some("https://avatars.githubusercontent.com/u/583231?v=4")
        );
        assert!(user_from_profile(&json!({"id": 1}), None).is_err());
        assert!(user_from_profile(&json!({"login": "x"}), None).is_err());
    }

    #[test]
    fn groups_are_org_logins_and_org_slash_team_slug() {
        let orgs = [
            json!({"login": "acme"}),
            json!({"login": "wonderland"}),
            json!({"id": 3}),
        ];
        let teams = [
            json!({"slug": "engineering", "name": "Engineering", "organization": {"login": "acme"}}),
            json!({"slug": "engineering", "organization": {"login": "acme"}}),
            json!({"slug": "orphan"}),
        ];
        assert_eq!(
            groups_from(&orgs, &teams),
            vec!["acme", "wonderland", "acme/engineering"]
        );
    }

    #[test]
    fn default_scope_and_endpoints() {
        let config: GithubConfig = serde_yaml::from_str(
            "client_id: c\nclient_secret: s\ncallback_path: /callback\n\
             auth_url: https://github.com/login/oauth/authorize\n\
             token_url: https://github.com/login/oauth/access_token\n",
        )
        .unwrap();
        let provider = GithubProvider::new(&config, reqwest::Client::new(), &ProviderEndpoints::default()).unwrap();
        assert_eq!(provider.flow.scope(), DEFAULT_SCOPE);
        assert_eq!(provider.api_url, DEFAULT_API_URL);
        let mut bad = config.clone();
        bad.token_url = "not a url".into();
        assert!(GithubProvider::new(&bad, reqwest::Client::new(), &ProviderEndpoints::default()).is_err());
    }

    #[tokio::test]
    async fn authorization_url_carries_scope_state_pkce_and_login_hint() {
        let config: GithubConfig = serde_yaml::from_str(
            "client_id: cid\nclient_secret: s\ncallback_path: /callback\nscope: read:user read:org\n\
             auth_url: https://github.com/login/oauth/authorize\n\
             token_url: https://github.com/login/oauth/access_token\n",
        )
        .unwrap();
        let provider = GithubProvider::new(&config, reqwest::Client::new(), &ProviderEndpoints::default()).unwrap();
        let url = provider
            .authorization_url(&LoginRequest {
                state: "st",
                pkce_verifier: "v".repeat(43).as_str(),
                nonce: "n",
                redirect_uri: "https://gw.example/callback",
                login_hint: Some("octocat"),
            })
            .await
            .unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(url.host_str(), Some("github.com"));
        assert_eq!(q["client_id"], "cid");
        assert_eq!(q["scope"], "read:user read:org");
        assert_eq!(q["state"], "st");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["login"], "octocat");
        assert_eq!(q["redirect_uri"], "https://gw.example/callback");
    }
}
