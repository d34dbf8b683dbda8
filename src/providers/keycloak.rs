//! The `keycloak` provider, configured as in MXCP (`client_id`, `client_secret`, `realm`,
//! `server_url`, `scope`, `callback_path`, `claim_mappings`).
//!
//! * Endpoints are built as MXCP builds them: `{server_url}/realms/{realm}/protocol/openid-connect/`
//!   followed by `auth`, `token`, `userinfo` (a trailing `/` on `server_url` is dropped; the realm
//!   is one path segment, percent-encoded if it has to be). Issuer and JWKS come from the realm's
//!   discovery document, `{server_url}/realms/{realm}/.well-known/openid-configuration`.
//! * `scope` defaults to `openid profile email`; `openid` is added when missing.
//! * The raw profile for `claim_mappings` is the verified access token's claims (a default realm
//!   puts `realm_access` only there), overlaid by the ID token's and userinfo's — so
//!   `realm_access.roles: {admin: [...]}` and `resource_access.<client>.roles` work as in MXCP.
//! * The user's `permissions` are the realm roles (`realm_access.roles`): CEL in MXCP 0.12.3 has
//!   no `user.groups`, so `'admin' in user.permissions` (or a capability from `claim_mappings`)
//!   is how a policy sees a role.
//! * The user's `groups` are Keycloak's `groups` claim exactly as Keycloak sends it (with the
//!   group mapper's "full group path" on, `/engineering` and `/org/team`: the path is kept, as
//!   stripping the `/` would make `/a/b` and a top-level group named `a/b` look alike), followed
//!   by the realm roles as `role:<name>` (the convention of oauth2-proxy's keycloak-oidc
//!   provider), so that a group and a role of the same name stay apart.

use super::email_verified::WithoutFlag;
use super::oidc::{with_openid, ConfiguredEndpoints, OidcProvider, OidcSettings, ProfileMapping};
use super::{Provider, ProviderError};
use crate::config::mxcp_user::KeycloakConfig;
use crate::config::ProviderEndpoints;
use crate::identity::user::UserIdentity;
use serde_json::Value;
use std::sync::Arc;
use url::Url;

const NAME: &str = "keycloak";
const DEFAULT_SCOPE: &str = "openid profile email";

pub fn build(
    config: &KeycloakConfig,
    http: reqwest::Client,
    _endpoints: &ProviderEndpoints,
    email_without_flag: WithoutFlag,
) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(Arc::new(provider(config, http, email_without_flag)?))
}

fn provider(
    config: &KeycloakConfig,
    http: reqwest::Client,
    email_without_flag: WithoutFlag,
) -> Result<OidcProvider, ProviderError> {
    let urls = RealmUrls::new(&config.server_url, &config.realm)?;
    let settings = OidcSettings {
        name: NAME.into(),
        discovery_url: urls.discovery,
        client_id: config.client_id.clone(),
        client_secret: config.client_secret.clone(),
        scope: with_openid(config.scope.as_deref().unwrap_or(DEFAULT_SCOPE)),
        endpoints: ConfiguredEndpoints {
            authorization: Some(urls.auth),
            token: Some(urls.token),
            userinfo: Some(urls.userinfo),
        },
        extra_authorize_params: Vec::new(),
        audience: None,
        claim_mappings: config.claim_mappings.clone(),
        profile: Arc::new(KeycloakProfile),
        email_without_flag,
    };
    settings.check_urls()?;
    Ok(OidcProvider::with_settings(settings, http))
}

/// A realm's endpoints.
#[derive(Debug, PartialEq, Eq)]
struct RealmUrls {
    discovery: String,
    auth: String,
    token: String,
    userinfo: String,
}

// === impl RealmUrls ===

impl RealmUrls {
    fn new(server_url: &str, realm: &str) -> Result<Self, ProviderError> {
        let invalid = |message: String| ProviderError::Invalid {
            provider: NAME.into(),
            message,
        };
        if realm.trim().is_empty() {
            return Err(invalid("`realm` is empty".into()));
        }
        let base = Url::parse(server_url).map_err(|e| invalid(format!("`server_url` `{server_url}`: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(invalid(format!("`server_url` `{server_url}` must be an http(s) URL")));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid(format!(
                "`server_url` `{server_url}` must not have a query or fragment"
            )));
        }
        let url = |segments: &[&str]| -> Result<String, ProviderError> {
            let mut url = base.clone();
            url.path_segments_mut()
                .map_err(|()| invalid(format!("`server_url` `{server_url}` cannot take a path")))?
                .pop_if_empty()
                .push("realms")
                .push(realm)
                .extend(segments);
            Ok(url.into())
        };
        Ok(Self {
            discovery: url(&[".well-known", "openid-configuration"])?,
            auth: url(&["protocol", "openid-connect", "auth"])?,
            token: url(&["protocol", "openid-connect", "token"])?,
            userinfo: url(&["protocol", "openid-connect", "userinfo"])?,
        })
    }
}

/// `realm_access.roles`, in order, without repeats.
fn realm_roles(profile: &Value) -> Vec<String> {
    let mut roles: Vec<String> = Vec::new();
    let listed = profile
        .get("realm_access")
        .and_then(|r| r.get("roles"))
        .and_then(Value::as_array);
    for role in listed.into_iter().flatten().filter_map(Value::as_str) {
        if !roles.iter().any(|r| r == role) {
            roles.push(role.to_string());
        }
    }
    roles
}

struct KeycloakProfile;

impl ProfileMapping for KeycloakProfile {
    fn complete_user(&self, profile: &Value, user: &mut UserIdentity) {
        let roles = realm_roles(profile);
        for role in &roles {
            let group = format!("role:{role}");
            if !user.groups.contains(&group) {
                user.groups.push(group);
            }
        }
        user.permissions = roles;
    }
}

#[cfg(test)]
mod tests {
    use super::super::oidc::test_support::{jwks, now, signer, ScriptedIdp};
    use super::super::{LoginCallback, LoginRequest};
    use super::*;
    use serde_json::json;

    fn config(server_url: &str, scope: Option<&str>) -> KeycloakConfig {
        let mut yaml = format!(
            "client_id: mxgate\nclient_secret: s3cret\nrealm: myrealm\nserver_url: '{server_url}'\n\
             callback_path: /callback\n\
             claim_mappings: {{realm_access.roles: {{admin: [tools.admin], mcp-user: [tools.read]}}}}\n"
        );
        if let Some(scope) = scope {
            yaml.push_str(&format!("scope: '{scope}'\n"));
        }
        serde_yaml::from_str(&yaml).unwrap()
    }

    #[test]
    fn urls_are_built_as_mxcp_documents_them() {
        let expected = RealmUrls {
            discovery: "https://kc.example/realms/myrealm/.well-known/openid-configuration".into(),
            auth: "https://kc.example/realms/myrealm/protocol/openid-connect/auth".into(),
            token: "https://kc.example/realms/myrealm/protocol/openid-connect/token".into(),
            userinfo: "https://kc.example/realms/myrealm/protocol/openid-connect/userinfo".into(),
        };
        assert_eq!(RealmUrls::new("https://kc.example", "myrealm").unwrap(), expected);
        assert_eq!(RealmUrls::new("https://kc.example/", "myrealm").unwrap(), expected);
        // Keycloak before 17 (and some deployments) serve under a path.
        let legacy = RealmUrls::new("https://sso.example:8443/auth/", "myrealm").unwrap();
        assert_eq!(
            legacy.auth,
            "https://sso.example:8443/auth/realms/myrealm/protocol/openid-connect/auth"
        );
        assert_eq!(
            legacy.discovery,
            "https://sso.example:8443/auth/realms/myrealm/.well-known/openid-configuration"
        );
        // A realm is one path segment.
        let odd = RealmUrls::new("http://127.0.0.1:8080", "my realm/x").unwrap();
        assert_eq!(
            odd.token,
            "http://127.0.0.1:8080/realms/my%20realm%2Fx/protocol/openid-connect/token"
        );
    }

    #[test]
    fn bad_server_urls_and_realms_are_start_up_errors() {
        for (server_url, realm) in [
            ("kc.example", "r"),
            ("ftp://kc.example", "r"),
            ("https://kc.example/?x=1", "r"),
            ("https://kc.example", " "),
        ] {
            let err = RealmUrls::new(server_url, realm).unwrap_err().to_string();
            assert!(err.starts_with("keycloak: "), "{err}");
        }
    }

    #[test]
    fn scope_defaults_and_gets_openid() {
        let http = reqwest::Client::new;
        assert!(provider(&config("https://kc.example", None), http(), WithoutFlag::default()).is_ok());
        for (scope, expected) in [(None, DEFAULT_SCOPE), (Some("profile roles"), "openid profile roles")] {
            let c = config("https://kc.example", scope);
            assert_eq!(with_openid(c.scope.as_deref().unwrap_or(DEFAULT_SCOPE)), expected);
        }
    }

    #[test]
    fn realm_roles_become_permissions_and_prefixed_groups() {
        let profile = json!({"sub": "a", "groups": ["/engineering", "admin"],
                             "realm_access": {"roles": ["mcp-user", "admin", "admin"]}});
        let mut user = UserIdentity {
            groups: vec!["/engineering".into(), "admin".into()],
            ..Default::default()
        };
        KeycloakProfile.complete_user(&profile, &mut user);
        assert_eq!(user.permissions, vec!["mcp-user", "admin"]);
        assert_eq!(
            user.groups,
            vec!["/engineering", "admin", "role:mcp-user", "role:admin"]
        );

        let mut user = UserIdentity::default();
        KeycloakProfile.complete_user(&json!({"realm_access": {"roles": "admin"}}), &mut user);
        assert!(user.permissions.is_empty() && user.groups.is_empty());
    }

    /// A realm on a scripted server, with opaque access tokens; `id_extra` is added to (`null`:
    /// taken out of) alice's ID token claims.
    async fn realm(id_extra: Value) -> (ScriptedIdp, String) {
        let idp = ScriptedIdp::start().await;
        let issuer = format!("{}/realms/myrealm", idp.base);
        let oidc = format!("{issuer}/protocol/openid-connect");
        idp.route(
            "GET",
            "/realms/myrealm/.well-known/openid-configuration",
            200,
            &json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{oidc}/auth"),
                "token_endpoint": format!("{oidc}/token"),
                "userinfo_endpoint": format!("{oidc}/userinfo"),
                "jwks_uri": format!("{oidc}/certs"),
                "authorization_response_iss_parameter_supported": true,
            }),
        );
        idp.route("GET", "/realms/myrealm/protocol/openid-connect/certs", 200, &jwks());
        let mut id_claims = json!({"iss": issuer, "sub": "f:1", "aud": "mxgate", "azp": "mxgate",
                                   "exp": now() + 300, "iat": now(), "nonce": "n-1",
                                   "preferred_username": "alice", "email": "alice@example.test",
                                   "email_verified": true});
        if let (Value::Object(base), Value::Object(extra)) = (&mut id_claims, id_extra) {
            for (claim, value) in extra {
                // `null` takes the claim out.
                if value.is_null() {
                    base.remove(&claim);
                } else {
                    base.insert(claim, value);
                }
            }
        }
        idp.route(
            "POST",
            "/realms/myrealm/protocol/openid-connect/token",
            200,
            &json!({"access_token": "opaque", "token_type": "Bearer", "expires_in": 300, "refresh_token": "rt",
                    "id_token": signer().sign(&id_claims).unwrap()}),
        );
        idp.route(
            "GET",
            "/realms/myrealm/protocol/openid-connect/userinfo",
            200,
            &json!({"sub": "f:1", "preferred_username": "alice", "groups": ["/engineering"]}),
        );
        (idp, issuer)
    }

    fn callback(iss: &str) -> LoginCallback<'_> {
        LoginCallback {
            code: "c",
            iss: Some(iss),
            pkce_verifier: "verifier-verifier-verifier-verifier-verifier-1",
            nonce: "n-1",
            redirect_uri: "http://127.0.0.1:1/callback",
        }
    }

    #[tokio::test]
    async fn roles_only_in_the_access_token_reach_permissions_groups_and_capabilities() {
        // The access token names the realm's issuer, known once the server runs.
        let (probe, issuer) = realm(json!({})).await;
        let at = signer()
            .sign(
                &json!({"iss": issuer, "sub": "f:1", "typ": "Bearer", "azp": "mxgate", "aud": "account",
                          "exp": now() + 300, "realm_access": {"roles": ["mcp-user", "admin"]}}),
            )
            .unwrap();
        probe.route(
            "POST",
            "/realms/myrealm/protocol/openid-connect/token",
            200,
            &json!({"access_token": at, "token_type": "Bearer", "expires_in": 300, "refresh_token": "rt",
                    "id_token": signer().sign(&json!({"iss": issuer, "sub": "f:1", "aud": "mxgate",
                        "exp": now() + 300, "nonce": "n-1", "preferred_username": "alice"})).unwrap()}),
        );
        let keycloak = provider(
            &config(&format!("{}/", probe.base), None),
            super::super::provider_http_client().unwrap(),
            WithoutFlag::default(),
        )
        .unwrap();
        let url = keycloak
            .authorization_url(&LoginRequest {
                state: "s",
                pkce_verifier: "verifier-verifier-verifier-verifier-verifier-1",
                nonce: "n-1",
                redirect_uri: "http://127.0.0.1:1/callback",
                login_hint: None,
            })
            .await
            .unwrap();
        assert!(
            url.as_str()
                .starts_with(&format!("{issuer}/protocol/openid-connect/auth?")),
            "{url}"
        );
        let user = keycloak.complete_login(&callback(&issuer)).await.unwrap().user;
        assert_eq!(user.provider, "keycloak");
        assert_eq!(user.username, "alice");
        assert_eq!(user.permissions, vec!["mcp-user", "admin"]);
        assert_eq!(user.groups, vec!["/engineering", "role:mcp-user", "role:admin"]);
        assert_eq!(user.capabilities, vec!["tools.admin", "tools.read"]);
        let [token_request] = probe
            .seen("POST", "/realms/myrealm/protocol/openid-connect/token")
            .try_into()
            .unwrap();
        assert!(token_request.body.contains("grant_type=authorization_code"));
    }

    #[tokio::test]
    async fn roles_in_the_id_token_work_with_opaque_access_tokens() {
        let (idp, issuer) = realm(json!({"realm_access": {"roles": ["admin"]}})).await;
        let keycloak = provider(
            &config(&idp.base, None),
            super::super::provider_http_client().unwrap(),
            WithoutFlag::default(),
        )
        .unwrap();
        let user = keycloak.complete_login(&callback(&issuer)).await.unwrap().user;
        assert_eq!(user.permissions, vec!["admin"]);
        assert_eq!(user.capabilities, vec!["tools.admin"]);
        assert_eq!(user.email.as_deref(), Some("alice@example.test"));
    }

    #[tokio::test]
    async fn only_an_email_keycloak_marks_verified_reaches_the_user() {
        let cases = [
            (json!(true), WithoutFlag::Unverified, Some("alice@example.test")),
            (json!(false), WithoutFlag::Unverified, None),
            (json!("false"), WithoutFlag::Unverified, None),
            (Value::Null, WithoutFlag::Unverified, None),
            (json!(false), WithoutFlag::Verified, None),
            (json!("false"), WithoutFlag::Verified, None),
            (Value::Null, WithoutFlag::Verified, Some("alice@example.test")),
        ];
        for (flag, without_flag, expected) in cases {
            let (idp, issuer) = realm(json!({"email_verified": flag.clone()})).await;
            let keycloak = provider(
                &config(&idp.base, None),
                super::super::provider_http_client().unwrap(),
                without_flag,
            )
            .unwrap();
            let user = keycloak.complete_login(&callback(&issuer)).await.unwrap().user;
            assert_eq!(
                user.email.as_deref(),
                expected,
                "email_verified {flag} {without_flag:?}"
            );
            assert_eq!(user.username, "alice");
        }
    }
}
