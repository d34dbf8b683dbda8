//! The `google` provider: Google's OpenID Connect, configured as in MXCP (`client_id`,
//! `client_secret`, `scope`, `callback_path`, `auth_url`, `token_url`, `claim_mappings`).
//!
//! * The configured `auth_url` and `token_url` are used (MXCP documents
//!   `https://accounts.google.com/o/oauth2/v2/auth` and `https://oauth2.googleapis.com/token`);
//!   issuer, JWKS and userinfo come from Google's discovery document (`config_url` under
//!   `provider_overrides.google` in mxgate.yml, by default
//!   `https://accounts.google.com/.well-known/openid-configuration`).
//! * `access_type=offline` and `prompt=consent` are sent, as MXCP does, so Google issues a refresh
//!   token on every login (without `prompt=consent` it does so only at the first consent). Google
//!   does not rotate refresh tokens: a refresh answer without one keeps the old one.
//! * ID tokens are verified; `iss` may be `https://accounts.google.com` or `accounts.google.com`,
//!   both of which Google documents.
//! * `openid` is added to the scope when missing (Google sends no ID token without it).
//! * The raw profile for `claim_mappings` holds the ID token's and userinfo's claims: `hd` (the
//!   Workspace domain, absent for consumer accounts), `email`, `email_verified`, … and, for
//!   mappings written against MXCP (which reads Google's v2 userinfo), `id` (= `sub`) and
//!   `verified_email` (= `email_verified`). An email Google marks unverified is not the user's
//!   `email`.

use super::email_verified::WithoutFlag;
use super::oidc::{check_http_url, with_openid, ConfiguredEndpoints, OidcProvider, OidcSettings, ProfileMapping};
use super::{Provider, ProviderError};
use crate::config::mxcp_user::GoogleConfig;
use crate::config::ProviderEndpoints;
use serde_json::{Map, Value};
use std::sync::Arc;

const NAME: &str = "google";
/// The issuer in Google's discovery document, and its scheme-less spelling in some ID tokens.
const ISSUER: &str = "https://accounts.google.com";
const ISSUER_ALIAS: &str = "accounts.google.com";

pub fn build(
    config: &GoogleConfig,
    http: reqwest::Client,
    endpoints: &ProviderEndpoints,
    email_without_flag: WithoutFlag,
) -> Result<Arc<dyn Provider>, ProviderError> {
    let config_url = endpoints.get("config_url").ok_or_else(|| ProviderError::Invalid {
        provider: NAME.into(),
        message: "no discovery URL (`config_url`) is known".into(),
    })?;
    Ok(Arc::new(provider(config, http, config_url, email_without_flag)?))
}

fn provider(
    config: &GoogleConfig,
    http: reqwest::Client,
    config_url: &str,
    email_without_flag: WithoutFlag,
) -> Result<OidcProvider, ProviderError> {
    check_http_url(NAME, "`auth_url`", &config.auth_url)?;
    check_http_url(NAME, "`token_url`", &config.token_url)?;
    check_http_url(NAME, "`provider_overrides.google.config_url`", config_url)?;
    Ok(OidcProvider::with_settings(
        settings(config, config_url, email_without_flag),
        http,
    ))
}

fn settings(config: &GoogleConfig, config_url: &str, email_without_flag: WithoutFlag) -> OidcSettings {
    OidcSettings {
        name: NAME.into(),
        discovery_url: config_url.to_string(),
        client_id: config.client_id.clone(),
        client_secret: config.client_secret.clone(),
        scope: with_openid(&config.scope),
        endpoints: ConfiguredEndpoints {
            authorization: Some(config.auth_url.clone()),
            token: Some(config.token_url.clone()),
            userinfo: None,
        },
        extra_authorize_params: vec![
            ("access_type".into(), "offline".into()),
            ("prompt".into(), "consent".into()),
        ],
        audience: None,
        claim_mappings: config.claim_mappings.clone(),
        profile: Arc::new(GoogleProfile),
        email_without_flag,
    }
}

struct GoogleProfile;

impl ProfileMapping for GoogleProfile {
    fn issuer_aliases(&self, issuer: &str) -> Vec<String> {
        if issuer == ISSUER {
            vec![ISSUER_ALIAS.to_string()]
        } else {
            Vec::new()
        }
    }

    fn extend_profile(&self, profile: &mut Map<String, Value>) {
        // The names of Google's v2 userinfo, which MXCP's claim_mappings see.
        for (alias, claim) in [("id", "sub"), ("verified_email", "email_verified")] {
            if !profile.contains_key(alias) {
                if let Some(value) = profile.get(claim).cloned() {
                    profile.insert(alias.to_string(), value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::oidc::test_support::{error_of, jwks, now, signer, ScriptedIdp};
    use super::super::{LoginCallback, LoginRequest};
    use super::*;
    use serde_json::json;

    fn config(base: &str) -> GoogleConfig {
        serde_yaml::from_str(&format!(
            "client_id: mxgate.apps.googleusercontent.com\nclient_secret: s3cret\nscope: email profile\n\
             callback_path: /callback\nauth_url: {base}/o/oauth2/v2/auth\ntoken_url: {base}/oauth2-token\n\
             claim_mappings: {{hd: {{example.com: [company]}}, verified_email: {{'true': [verified]}}}}\n"
        ))
        .unwrap()
    }

    /// A Google look-alike whose discovery says `https://accounts.google.com` and whose token
    /// endpoint (not the configured one) would answer nothing useful.
    async fn google(id_token_iss: &str) -> ScriptedIdp {
        google_saying(id_token_iss, Some(json!(true))).await
    }

    /// [`google`] whose ID token and userinfo carry `email_verified: flag` (`None`: no such claim).
    async fn google_saying(id_token_iss: &str, flag: Option<Value>) -> ScriptedIdp {
        let idp = ScriptedIdp::start().await;
        let base = idp.base.clone();
        idp.route(
            "GET",
            "/.well-known/openid-configuration",
            200,
            &json!({
                "issuer": ISSUER,
                "authorization_endpoint": format!("{base}/discovered-auth"),
                "token_endpoint": format!("{base}/discovered-token"),
                "userinfo_endpoint": format!("{base}/v1/userinfo"),
                "jwks_uri": format!("{base}/oauth2/v3/certs"),
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            }),
        );
        idp.route("GET", "/oauth2/v3/certs", 200, &jwks());
        let mut id_claims = json!({"iss": id_token_iss, "sub": "1234567890", "aud": "mxgate.apps.googleusercontent.com",
                                   "azp": "mxgate.apps.googleusercontent.com", "exp": now() + 300, "iat": now(),
                                   "nonce": "n-1", "hd": "example.com", "email": "alice@example.com"});
        let mut userinfo = json!({"sub": "1234567890", "name": "Alice Example", "picture": "https://lh3.example/a.png",
                                  "email": "alice@example.com", "hd": "example.com"});
        if let Some(flag) = flag {
            id_claims["email_verified"] = flag.clone();
            userinfo["email_verified"] = flag;
        }
        let id_token = signer().sign(&id_claims).unwrap();
        idp.route(
            "POST",
            "/oauth2-token",
            200,
            &json!({"access_token": "ya29.opaque", "token_type": "Bearer", "expires_in": 3599,
                    "refresh_token": "1//refresh", "id_token": id_token, "scope": "openid email profile"}),
        );
        idp.route("GET", "/v1/userinfo", 200, &userinfo);
        idp
    }

    fn provider(idp: &ScriptedIdp) -> OidcProvider {
        provider_trusting(idp, WithoutFlag::default())
    }

    fn provider_trusting(idp: &ScriptedIdp, email_without_flag: WithoutFlag) -> OidcProvider {
        super::provider(
            &config(&idp.base),
            super::super::provider_http_client().unwrap(),
            &format!("{}/.well-known/openid-configuration", idp.base),
            email_without_flag,
        )
        .unwrap()
    }

    fn callback(iss: Option<&str>) -> LoginCallback<'_> {
        LoginCallback {
            code: "4/code",
            iss,
            pkce_verifier: "verifier-verifier-verifier-verifier-verifier-1",
            nonce: "n-1",
            redirect_uri: "http://127.0.0.1:1/callback",
        }
    }

    #[tokio::test]
    async fn both_documented_issuer_spellings_are_accepted() {
        for iss in [ISSUER, ISSUER_ALIAS] {
            let idp = google(iss).await;
            let outcome = provider(&idp).complete_login(&callback(Some(ISSUER))).await.unwrap();
            let user = outcome.user;
            assert_eq!(user.provider, "google");
            assert_eq!(user.user_id, "1234567890");
            assert_eq!(user.username, "alice");
            assert_eq!(user.email.as_deref(), Some("alice@example.com"));
            assert_eq!(user.avatar_url.as_deref(), Some("https://lh3.example/a.png"));
            assert_eq!(user.capabilities, vec!["company", "verified"]);
            assert_eq!(outcome.tokens.refresh_token.as_deref(), Some("1//refresh"));
            // The configured token URL, never the discovered one.
            assert_eq!(idp.seen("POST", "/oauth2-token").len(), 1);
            assert!(idp.seen("POST", "/discovered-token").is_empty());
        }
    }

    #[tokio::test]
    async fn only_an_email_google_marks_verified_reaches_the_user() {
        let cases = [
            (Some(json!(true)), WithoutFlag::Unverified, Some("alice@example.com")),
            (Some(json!(false)), WithoutFlag::Unverified, None),
            (Some(json!("false")), WithoutFlag::Unverified, None),
            (None, WithoutFlag::Unverified, None),
            (Some(json!(false)), WithoutFlag::Verified, None),
            (Some(json!("false")), WithoutFlag::Verified, None),
            (None, WithoutFlag::Verified, Some("alice@example.com")),
        ];
        for (flag, without_flag, expected) in cases {
            let idp = google_saying(ISSUER, flag.clone()).await;
            let user = provider_trusting(&idp, without_flag)
                .complete_login(&callback(Some(ISSUER)))
                .await
                .unwrap()
                .user;
            assert_eq!(user.email.as_deref(), expected, "{flag:?} {without_flag:?}");
            let username = if expected.is_some() { "alice" } else { "1234567890" };
            assert_eq!(
                user.username, username,
                "an unverified address gives no username either"
            );
        }
    }

    #[tokio::test]
    async fn other_issuers_are_refused() {
        let idp = google("https://accounts.google.com.evil.example").await;
        let err = error_of(provider(&idp).complete_login(&callback(None)).await);
        assert!(err.contains("ID token rejected"), "{err}");
        let idp = google(ISSUER).await;
        let err = error_of(
            provider(&idp)
                .complete_login(&callback(Some("https://evil.example")))
                .await,
        );
        assert!(err.contains("evil.example"), "{err}");
    }

    #[tokio::test]
    async fn authorization_url_is_the_configured_one_with_offline_access_and_consent() {
        let idp = google(ISSUER).await;
        let url = provider(&idp)
            .authorization_url(&LoginRequest {
                state: "st",
                pkce_verifier: "verifier-verifier-verifier-verifier-verifier-1",
                nonce: "n-1",
                redirect_uri: "http://127.0.0.1:1/callback",
                login_hint: None,
            })
            .await
            .unwrap();
        assert!(
            url.as_str().starts_with(&format!("{}/o/oauth2/v2/auth?", idp.base)),
            "{url}"
        );
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["access_type"], "offline");
        assert_eq!(q["prompt"], "consent");
        assert_eq!(q["scope"], "openid email profile");
        assert_eq!(q["client_id"], "mxgate.apps.googleusercontent.com");
    }

    #[tokio::test]
    async fn refresh_keeps_the_refresh_token_google_does_not_return() {
        let idp = google(ISSUER).await;
        idp.route(
            "POST",
            "/oauth2-token",
            200,
            &json!({"access_token": "ya29.new", "token_type": "Bearer", "expires_in": 3599}),
        );
        let tokens = provider(&idp).refresh("1//refresh").await.unwrap();
        assert_eq!(tokens.access_token, "ya29.new");
        assert_eq!(tokens.refresh_token.as_deref(), Some("1//refresh"));
    }

    #[test]
    fn mxcp_v2_userinfo_names_are_added_without_overwriting() {
        let mut profile = json!({"sub": "1", "email_verified": false, "id": "kept"});
        let Value::Object(map) = &mut profile else {
            unreachable!()
        };
        GoogleProfile.extend_profile(map);
        assert_eq!(
            profile,
            json!({"sub": "1", "email_verified": false, "id": "kept", "verified_email": false})
        );
        assert_eq!(GoogleProfile.issuer_aliases(ISSUER), vec![ISSUER_ALIAS]);
        assert!(GoogleProfile.issuer_aliases("http://127.0.0.1:9400").is_empty());
    }

    #[test]
    fn bad_configured_urls_are_start_up_errors() {
        let good = config("http://127.0.0.1:1");
        let err = |config: &GoogleConfig, config_url: &str| match super::provider(
            config,
            reqwest::Client::new(),
            config_url,
            WithoutFlag::default(),
        ) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("built"),
        };
        let mut bad = good.clone();
        bad.token_url = "oauth2.googleapis.com/token".into();
        assert!(err(&bad, "https://accounts.google.com/x").contains("`token_url`"));
        let mut bad = good.clone();
        bad.auth_url = "ftp://accounts.google.com/auth".into();
        assert!(err(&bad, "https://accounts.google.com/x").contains("`auth_url`"));
        assert!(err(&good, "nope").contains("config_url"));
        let no_endpoints = build(
            &good,
            reqwest::Client::new(),
            &ProviderEndpoints::default(),
            WithoutFlag::default(),
        );
        assert!(no_endpoints.is_err_and(|e| e.to_string().contains("config_url")));
    }
}
