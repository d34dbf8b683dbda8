//! Handler tests: the authorization server driven with `http` requests, no socket. The upstream
//! provider is a stand-in here (the real OpenID provider is exercised in `tests/e2e`).

use super::*;
use crate::identity::user::{ProviderTokens, UserIdentity};
use crate::policy::PolicySet;
use crate::providers::{LoginCallback, LoginOutcome, LoginRequest, Provider, ProviderEntry, ProviderError};
use crate::session::bearer::{BearerAuthenticator, BearerError};
use crate::store::{cipher::RecordCipher, RedbStore};
use async_trait::async_trait;
use http::header::{LOCATION, SET_COOKIE};
use serde_json::Value;
use std::collections::HashMap;

const PUBLIC: &str = "http://127.0.0.1:18000";
const REDIRECT: &str = "http://127.0.0.1:9999/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// Stands in for the upstream IdP: the code `good-code` logs in alice, `bob-code` bob.
struct StandInProvider(&'static str);

#[async_trait]
impl Provider for StandInProvider {
    fn name(&self) -> &str {
        self.0
    }
    async fn authorization_url(&self, request: &LoginRequest<'_>) -> Result<url::Url, ProviderError> {
        let host = if self.0 == "oidc" {
            "idp".to_string()
        } else {
            self.0.to_string()
        };
        Ok(url::Url::parse(&format!("https://{host}.test/auth?state={}", request.state)).unwrap())
    }
    async fn refresh(&self, _refresh_token: &str) -> Result<ProviderTokens, ProviderError> {
        Err(ProviderError::Unsupported("stand-in"))
    }
    /// `logout;<sub>;<sid>;<jti>` (empty for absent) stands for a verified logout token;
    /// `unreachable` for keys that cannot be fetched; anything else does not verify.
    async fn verify_logout_token(
        &self,
        token: &str,
        now: u64,
    ) -> Result<crate::providers::logout_token::LogoutToken, ProviderError> {
        let some = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
        match token.split(';').collect::<Vec<_>>().as_slice() {
            ["logout", sub, sid, jti] => Ok(crate::providers::logout_token::LogoutToken {
                subject: some(sub),
                session: some(sid),
                jti: jti.to_string(),
                issued_at: now,
            }),
            ["unreachable"] => Err(ProviderError::Unreachable {
                provider: self.0.into(),
                what: "the JWKS",
                message: "connection refused".into(),
            }),
            _ => Err(ProviderError::Invalid {
                provider: self.0.into(),
                message: "logout token rejected: bad signature".into(),
            }),
        }
    }
    async fn complete_login(&self, callback: &LoginCallback<'_>) -> Result<LoginOutcome, ProviderError> {
        let user = match callback.code {
            "good-code" => "alice",
            "bob-code" => "bob",
            _ => {
                return Err(ProviderError::Rejected {
                    provider: "oidc".into(),
                    error: "invalid_grant".into(),
                    description: None,
                })
            }
        };
        Ok(LoginOutcome {
            user: UserIdentity {
                provider: self.0.into(),
                user_id: user.into(),
                username: user.into(),
                email: Some(format!("{user}@example.test")),
                ..Default::default()
            },
            tokens: ProviderTokens {
                access_token: "idp-access".into(),
                ..Default::default()
            },
            profile: serde_json::json!({"sub": user, "email": format!("{user}@example.test"),
                                        "groups": if user == "alice" { vec!["engineering"] } else { vec![] }}),
            idp_session: Some(format!("idp-session-{user}")),
        })
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    server: AuthorizationServer,
    bearer: Arc<BearerAuthenticator>,
}

fn harness() -> Harness {
    harness_with("")
}

/// A harness whose mxgate.yml has `gateway_extra` appended.
fn harness_with(gateway_extra: &str) -> Harness {
    harness_with_providers(gateway_extra, &[])
}

/// A harness with stand-in providers: `oidc` at /callback, then each of `extra` at /callback/<name>.
fn harness_with_providers(gateway_extra: &str, extra: &[&'static str]) -> Harness {
    build_harness(gateway_extra, extra, "")
}

/// A harness whose MXCP config also has the public client `scoped-app` (redirect URI
/// [`REDIRECT`], scopes `mxcp:access mxcp:admin`).
fn harness_with_scoped_client() -> Harness {
    build_harness(
        "",
        &[],
        "            - client_id: scoped-app\n              name: Scoped App\n              redirect_uris: [\"http://127.0.0.1:9999/cb\"]\n              scopes: [mxcp:access, mxcp:admin]\n",
    )
}

/// `more_clients` is appended to the MXCP config's `auth.clients` list.
fn build_harness(gateway_extra: &str, extra: &[&'static str], more_clients: &str) -> Harness {
    std::env::set_var("MXGATE_OAUTH_TEST_SECRET", "static-secret");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mxcp.yml"),
        format!("mxcp: 1\nprojects:\n  p:\n    profiles:\n      default:\n        auth:\n          provider: oidc\n          oidc:\n            config_url: https://idp.test/.well-known/openid-configuration\n            client_id: mxgate\n            client_secret: s\n            scope: openid email\n            callback_path: /callback\n          clients:\n            - client_id: static-app\n              name: Static App\n              client_secret: ${{MXGATE_OAUTH_TEST_SECRET}}\n              redirect_uris: [\"https://app.example/cb\"]\n              grant_types: [authorization_code, refresh_token]\n{more_clients}"),
    )
    .unwrap();
    let gateway = dir.path().join("mxgate.yml");
    std::fs::write(
        &gateway,
        format!(
            "listen: 127.0.0.1:18000\nupstream: http://127.0.0.1:18001\npublic_url: {PUBLIC}\nmxcp_config: mxcp.yml\n{gateway_extra}"
        ),
    )
    .unwrap();
    let settings = Arc::new(crate::config::load(&gateway).unwrap());
    let policies = SharedPolicies::new(PolicySet::from_settings(&settings).unwrap());
    let store = Store::new(
        Arc::new(RedbStore::open(&dir.path().join("s.redb")).unwrap()),
        RecordCipher::from_secret(b"test"),
    );
    let bearer = Arc::new(BearerAuthenticator::new(store.clone(), 10_000, 3600));
    let providers = Arc::new(ProviderSet::new(
        ProviderEntry {
            provider: Arc::new(StandInProvider("oidc")),
            callback_path: "/callback".into(),
            display_name: "Stand-in IdP".into(),
        },
        extra
            .iter()
            .map(|name| ProviderEntry {
                provider: Arc::new(StandInProvider(name)),
                callback_path: format!("/callback/{name}"),
                display_name: format!("The {name} IdP"),
            })
            .collect(),
    ));
    let sessions = Sessions::new(store.clone(), bearer.clone(), providers.clone());
    let server = AuthorizationServer::new(
        settings,
        store,
        providers,
        sessions,
        Arc::new(crate::identity::signing_keys::SigningKeys::fixed(
            crate::identity::signing_key::AssertionSigner::hs256(&[7; 32]).unwrap(),
            "test".into(),
            None,
        )),
        policies,
    );
    Harness {
        _dir: dir,
        server,
        bearer,
    }
}

fn get(uri: &str, cookies: &str) -> Request<Bytes> {
    let mut b = Request::builder().method(Method::GET).uri(uri);
    if !cookies.is_empty() {
        b = b.header("cookie", cookies);
    }
    b.body(Bytes::new()).unwrap()
}

/// A POST with the content type its endpoint reads (JSON for /register, a form elsewhere),
/// unless `headers` name one.
fn post(uri: &str, body: &str, headers: &[(&str, &str)]) -> Request<Bytes> {
    let mut b = Request::builder().method(Method::POST).uri(uri);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        let content_type = if uri.starts_with("/register") {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        b = b.header("content-type", content_type);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Bytes::from(body.to_string())).unwrap()
}

fn json(resp: &Response<Bytes>) -> Value {
    serde_json::from_slice(resp.body()).unwrap_or(Value::Null)
}

fn location(resp: &Response<Bytes>) -> url::Url {
    url::Url::parse(resp.headers()[LOCATION].to_str().unwrap()).unwrap()
}

fn query(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// `name=value` of every Set-Cookie, joined as a Cookie header.
fn cookies_of(resp: &Response<Bytes>) -> String {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap() + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

impl Harness {
    async fn call(&self, req: Request<Bytes>) -> Response<Bytes> {
        let route = self.server.route(req.uri().path()).expect("a local route");
        self.server.handle(route, req).await
    }

    async fn register_public(&self) -> String {
        let body = format!(
            "{{\"redirect_uris\":[\"{REDIRECT}\"],\"token_endpoint_auth_method\":\"none\",\"grant_types\":[\"authorization_code\",\"refresh_token\"],\"client_name\":\"Test\"}}"
        );
        let resp = self
            .call(post("/register", &body, &[("content-type", "application/json")]))
            .await;
        assert_eq!(resp.status(), 201, "{:?}", resp.body());
        json(&resp)["client_id"].as_str().unwrap().to_string()
    }

    fn authorize_uri(client_id: &str, extra: &str) -> String {
        format!(
            "/authorize?response_type=code&client_id={client_id}&redirect_uri={}&state=client-state&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
            urlencode(REDIRECT)
        )
    }

    /// /authorize → consent page → approve; returns the provider redirect and the browser's cookies.
    async fn approve(&self, client_id: &str) -> (Response<Bytes>, String) {
        let page = self.call(get(&Self::authorize_uri(client_id, ""), "")).await;
        assert_eq!(page.status(), 200, "consent page");
        let html = String::from_utf8(page.body().to_vec()).unwrap();
        let jar = cookies_of(&page);
        let form = format!(
            "transaction={}&csrf_token={}&decision=approve",
            hidden(&html, "transaction"),
            hidden(&html, "csrf_token")
        );
        let resp = self
            .call(post(
                "/consent",
                &form,
                &[("cookie", &jar), ("content-type", "application/x-www-form-urlencoded")],
            ))
            .await;
        let all = format!("{jar}; {}", cookies_of(&resp));
        (resp, all)
    }

    /// The whole browser part; returns the authorization code.
    async fn code_for(&self, client_id: &str) -> String {
        self.code_for_user(client_id, "good-code").await
    }

    /// The whole browser part, signing in at the IdP with `idp_code` (`good-code`: alice,
    /// `bob-code`: bob); returns the authorization code.
    async fn code_for_user(&self, client_id: &str, idp_code: &str) -> String {
        let (to_idp, jar) = self.approve(client_id).await;
        assert_eq!(to_idp.status(), 302);
        let state = query(&location(&to_idp))["state"].clone();
        let back = self
            .call(get(&format!("/callback?code={idp_code}&state={state}"), &jar))
            .await;
        assert_eq!(back.status(), 302, "{:?}", back.body());
        let q = query(&location(&back));
        assert_eq!(q["state"], "client-state");
        assert_eq!(q["iss"], PUBLIC);
        q["code"].clone()
    }

    async fn exchange(&self, client_id: &str, code: &str, verifier: &str) -> Response<Bytes> {
        let form = format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}&client_id={client_id}&code_verifier={verifier}",
            urlencode(REDIRECT)
        );
        self.call(post("/token", &form, &[])).await
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn routes_cover_the_endpoints_and_nothing_else() {
    let h = harness();
    let s = &h.server;
    assert_eq!(
        s.route("/.well-known/oauth-protected-resource"),
        Some(Route::ProtectedResourceMetadata)
    );
    assert_eq!(
        s.route("/.well-known/oauth-protected-resource/mcp"),
        Some(Route::ProtectedResourceMetadata)
    );
    assert_eq!(s.route("/.well-known/oauth-protected-resource/other"), None);
    assert_eq!(
        s.route("/.well-known/openid-configuration"),
        Some(Route::AuthorizationServerMetadata)
    );
    assert_eq!(s.route("/callback"), Some(Route::Callback));
    assert_eq!(s.route("/mcp"), None);
    let wrong_method = h.call(get("/token", "")).await;
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(json(&wrong_method)["error"], "invalid_request");
    assert!(
        wrong_method.headers().get("access-control-allow-origin").is_none(),
        "only the public documents are open to every origin (the gateway adds CORS for allowed ones)"
    );
    let metadata = h.call(get("/.well-known/oauth-authorization-server", "")).await;
    assert_eq!(metadata.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn metadata_issuer_is_the_protected_resource_authorization_server() {
    let h = harness();
    let prm = json(&h.call(get("/.well-known/oauth-protected-resource/mcp", "")).await);
    let asm = json(&h.call(get("/.well-known/oauth-authorization-server", "")).await);
    assert_eq!(prm["resource"], format!("{PUBLIC}/mcp"));
    assert_eq!(prm["authorization_servers"][0], asm["issuer"]);
    assert_eq!(asm["issuer"], PUBLIC);
    assert_eq!(asm["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(asm["authorization_response_iss_parameter_supported"], true);
    assert_eq!(asm["registration_endpoint"], format!("{PUBLIC}/register"));
}

#[tokio::test]
async fn registration_validates_metadata() {
    let h = harness();
    let cases = [
        ("{}", "invalid_redirect_uri"),
        (
            "{\"redirect_uris\":[\"http://app.example/cb\"]}",
            "invalid_redirect_uri",
        ),
        ("{\"redirect_uris\":[\"javascript:alert(1)\"]}", "invalid_redirect_uri"),
        (
            "{\"redirect_uris\":[\"https://a.example/cb\"],\"token_endpoint_auth_method\":\"private_key_jwt\"}",
            "invalid_client_metadata",
        ),
        (
            "{\"redirect_uris\":[\"https://a.example/cb\"],\"grant_types\":[\"implicit\"]}",
            "invalid_client_metadata",
        ),
        ("not json", "invalid_client_metadata"),
    ];
    for (body, error) in cases {
        let resp = h.call(post("/register", body, &[])).await;
        assert_eq!(resp.status(), 400, "{body}");
        assert_eq!(json(&resp)["error"], error, "{body}");
    }
    let ok = h
        .call(post("/register", "{\"redirect_uris\":[\"https://a.example/cb\"],\"scope\":\"mxcp:access bogus\",\"logo_uri\":\"https://a.example/l.png\"}", &[]))
        .await;
    assert_eq!(ok.status(), 201);
    let body = json(&ok);
    assert!(
        body["client_secret"].as_str().unwrap().starts_with("mxs_"),
        "confidential by default"
    );
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(body["scope"], "mxcp:access", "unknown scopes are dropped");
    assert_eq!(body["logo_uri"], "https://a.example/l.png");
}

#[tokio::test]
async fn bad_client_or_redirect_uri_gets_a_page_never_a_redirect() {
    let h = harness();
    let client = h.register_public().await;
    let unknown = h.call(get(&Harness::authorize_uri("nobody", ""), "")).await;
    assert_eq!(unknown.status(), 400);
    assert!(unknown.headers().get(LOCATION).is_none());
    let evil = format!(
        "/authorize?response_type=code&client_id={client}&redirect_uri={}&code_challenge={CHALLENGE}&code_challenge_method=S256",
        urlencode("https://evil.example/cb")
    );
    let resp = h.call(get(&evil, "")).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get(LOCATION).is_none());
    assert!(String::from_utf8_lossy(resp.body()).contains("not registered"));
}

#[tokio::test]
async fn request_errors_after_the_redirect_check_go_back_to_the_client() {
    let h = harness();
    let client = h.register_public().await;
    let no_pkce = format!(
        "/authorize?response_type=code&client_id={client}&redirect_uri={}&state=s1",
        urlencode(REDIRECT)
    );
    let cases = [
        (no_pkce, "invalid_request"),
        (
            Harness::authorize_uri(&client, "").replace("S256", "plain"),
            "invalid_request",
        ),
        (
            Harness::authorize_uri(&client, "").replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            Harness::authorize_uri(&client, "&resource=https%3A%2F%2Fother.example%2Fmcp"),
            "invalid_target",
        ),
        (Harness::authorize_uri(&client, "&scope=admin"), "invalid_scope"),
    ];
    for (uri, error) in cases {
        let resp = h.call(get(&uri, "")).await;
        assert_eq!(resp.status(), 302, "{uri}");
        let to = location(&resp);
        assert!(to.as_str().starts_with(REDIRECT), "{to}");
        let q = query(&to);
        assert_eq!(q["error"], error, "{uri}");
        assert_eq!(q["iss"], PUBLIC);
    }
}

#[tokio::test]
async fn consent_page_is_protected_and_csrf_checked() {
    let h = harness();
    let client = h.register_public().await;
    let page = h
        .call(get(
            &Harness::authorize_uri(&client, &format!("&resource={}", urlencode(&format!("{PUBLIC}/mcp")))),
            "",
        ))
        .await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    let html = String::from_utf8(page.body().to_vec()).unwrap();
    let (txn, csrf) = (hidden(&html, "transaction"), hidden(&html, "csrf_token"));
    let form = format!("transaction={txn}&csrf_token={csrf}&decision=approve");

    let no_cookie = h.call(post("/consent", &form, &[])).await;
    assert_eq!(no_cookie.status(), 403);
    assert!(no_cookie.headers().get(LOCATION).is_none());
    let wrong_cookie = h
        .call(post(
            "/consent",
            &form,
            &[("cookie", "mxgate-csrf=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
        ))
        .await;
    assert_eq!(wrong_cookie.status(), 403);

    let jar = cookies_of(&page);
    let deny = format!("transaction={txn}&csrf_token={csrf}&decision=deny");
    let denied = h.call(post("/consent", &deny, &[("cookie", &jar)])).await;
    let q = query(&location(&denied));
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "client-state");
    let again = h.call(post("/consent", &form, &[("cookie", &jar)])).await;
    assert_eq!(again.status(), 400, "a transaction is answered once");
}

/// The `name=value` a response sets for a cookie whose name starts with `prefix` (empty when it
/// clears it), if it sets one.
fn set_cookie_named(resp: &Response<Bytes>, prefix: &str) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with(prefix))
}

impl Harness {
    /// Consent page → approve → provider → callback with `code`, in a browser holding `jar`;
    /// returns the callback's response and the approval cookie it set.
    async fn approve_and_sign_in(&self, authorize: &str, jar: &str, code: &str) -> (Response<Bytes>, String) {
        let page = self.call(get(authorize, jar)).await;
        assert_eq!(page.status(), 200, "consent page");
        let html = String::from_utf8(page.body().to_vec()).unwrap();
        let form = format!(
            "transaction={}&csrf_token={}&decision=approve",
            hidden(&html, "transaction"),
            hidden(&html, "csrf_token")
        );
        let jar = format!("{jar}; {}", cookies_of(&page));
        let to_idp = self.call(post("/consent", &form, &[("cookie", &jar)])).await;
        assert!(
            set_cookie_named(&to_idp, "mxgate-consent-").is_none(),
            "nothing is remembered before the person is known"
        );
        self.sign_in_at_idp(&to_idp, &jar, code).await
    }

    /// From the redirect to the provider, back through the callback with `code`.
    async fn sign_in_at_idp(&self, to_idp: &Response<Bytes>, jar: &str, code: &str) -> (Response<Bytes>, String) {
        assert_eq!(to_idp.status(), 302, "{:?}", to_idp.body());
        assert!(location(to_idp).as_str().starts_with("https://idp.test/auth"));
        let state = query(&location(to_idp))["state"].clone();
        let jar = format!("{jar}; {}", cookies_of(to_idp));
        let back = self
            .call(get(&format!("/callback?code={code}&state={state}"), &jar))
            .await;
        let approval = set_cookie_named(&back, "mxgate-consent-").unwrap_or_default();
        (back, approval)
    }
}

#[tokio::test]
async fn approval_is_remembered_for_that_client_and_redirect_uri() {
    let h = harness();
    let client = h.register_public().await;
    let (back, approval) = h
        .approve_and_sign_in(&Harness::authorize_uri(&client, ""), "", "good-code")
        .await;
    assert!(query(&location(&back)).contains_key("code"));
    let cookie = back
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("mxgate-consent-"))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let second = h.call(get(&Harness::authorize_uri(&client, ""), &approval)).await;
    assert_eq!(second.status(), 302, "no second consent page");
    assert!(location(&second).as_str().starts_with("https://idp.test/auth"));
    // Another loopback port of the same redirect URI is the same redirect URI (RFC 8252).
    let other_port = Harness::authorize_uri(&client, "").replace("9999", "4242");
    assert_eq!(h.call(get(&other_port, &approval)).await.status(), 302);
    let other = h.register_public().await;
    assert_eq!(
        h.call(get(&Harness::authorize_uri(&other, ""), &approval))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_remembered_approval_is_only_for_the_person_who_gave_it() {
    let h = harness();
    let client = h.register_public().await;
    let authorize = Harness::authorize_uri(&client, "");
    let (_, alices) = h.approve_and_sign_in(&authorize, "", "good-code").await;
    assert!(!alices.is_empty());

    // The page is skipped for alice's approval, but bob signs in at the provider.
    let skipped = h.call(get(&authorize, &alices)).await;
    let (refused, cleared) = h.sign_in_at_idp(&skipped, &alices, "bob-code").await;
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get(LOCATION).is_none(), "no code for bob");
    let page = String::from_utf8_lossy(refused.body()).to_string();
    assert!(page.contains("you signed in as bob"), "{page}");
    assert!(cleared.ends_with('='), "the approval is forgotten: {cleared}");

    // Bob is asked; once he approves, his approval is remembered for him.
    let (back, bobs) = h.approve_and_sign_in(&authorize, "", "bob-code").await;
    assert!(query(&location(&back)).contains_key("code"));
    let skipped = h.call(get(&authorize, &bobs)).await;
    let (back, _) = h.sign_in_at_idp(&skipped, &bobs, "bob-code").await;
    assert!(query(&location(&back)).contains_key("code"));
}

#[tokio::test]
async fn a_remembered_approval_covers_no_more_scopes_than_were_approved() {
    let h = harness_with_scoped_client();
    let access = Harness::authorize_uri("scoped-app", "&scope=mxcp%3Aaccess");
    let both = Harness::authorize_uri("scoped-app", "&scope=mxcp%3Aaccess%20mxcp%3Aadmin");
    let admin = Harness::authorize_uri("scoped-app", "&scope=mxcp%3Aadmin");
    let (_, approval) = h.approve_and_sign_in(&access, "", "good-code").await;
    assert_eq!(h.call(get(&access, &approval)).await.status(), 302);
    assert_eq!(
        h.call(get(&both, &approval)).await.status(),
        200,
        "more scopes: asked again"
    );
    assert_eq!(
        h.call(get(&admin, &approval)).await.status(),
        200,
        "other scopes: asked again"
    );

    // Approving the wider request remembers both, and a narrower request keeps both remembered.
    let (_, wider) = h.approve_and_sign_in(&both, "", "good-code").await;
    assert_eq!(h.call(get(&admin, &wider)).await.status(), 302);
    let skipped = h.call(get(&access, &wider)).await;
    let (_, refreshed) = h.sign_in_at_idp(&skipped, &wider, "good-code").await;
    assert_eq!(h.call(get(&both, &refreshed)).await.status(), 302);
}

#[tokio::test]
async fn approvals_from_before_the_person_was_bound_are_not_used() {
    let h = harness();
    let client = h.register_public().await;
    let old_claims = serde_json::json!({
        "cid": client, "ruri": REDIRECT, "prv": "oidc", "exp": crate::support::now() + 3600,
    });
    let key = jsonwebtoken::EncodingKey::from_secret(h.server.store.cipher().mac_key()).unwrap();
    let old = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &old_claims, &key).unwrap();
    let jar = format!("{}={old}", cookies::consent(&client));
    assert_eq!(
        h.call(get(&Harness::authorize_uri(&client, ""), &jar)).await.status(),
        200
    );
}

#[tokio::test]
async fn callback_must_come_back_to_the_browser_that_started_it() {
    let h = harness();
    let client = h.register_public().await;
    let (to_idp, _jar) = h.approve(&client).await;
    let state = query(&location(&to_idp))["state"].clone();
    let other_browser = h
        .call(get(&format!("/callback?code=good-code&state={state}"), ""))
        .await;
    assert_eq!(other_browser.status(), 403);
    assert!(other_browser.headers().get(LOCATION).is_none());
}

#[tokio::test]
async fn provider_errors_go_back_to_the_client_and_states_are_single_use() {
    let h = harness();
    let client = h.register_public().await;
    let (to_idp, jar) = h.approve(&client).await;
    let state = query(&location(&to_idp))["state"].clone();
    let refused = h
        .call(get(&format!("/callback?error=access_denied&state={state}"), &jar))
        .await;
    assert_eq!(query(&location(&refused))["error"], "access_denied");
    let replay = h
        .call(get(&format!("/callback?code=good-code&state={state}"), &jar))
        .await;
    assert_eq!(replay.status(), 400);

    let (to_idp, jar) = h.approve(&client).await;
    let state = query(&location(&to_idp))["state"].clone();
    let bad_code = h
        .call(get(&format!("/callback?code=bad-code&state={state}"), &jar))
        .await;
    assert_eq!(query(&location(&bad_code))["error"], "access_denied");
}

#[tokio::test]
async fn code_exchange_checks_pkce_and_a_replay_revokes_the_session() {
    let h = harness();
    let client = h.register_public().await;
    let stranger = h.register_public().await;

    // Whoever holds a leaked code but not the verifier or the client can neither use nor burn it.
    let code = h.code_for(&client).await;
    let wrong = h.exchange(&client, &code, &"x".repeat(43)).await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(json(&wrong)["error"], "invalid_grant");
    let other_client = h.exchange(&stranger, &code, VERIFIER).await;
    assert_eq!(json(&other_client)["error"], "invalid_grant");
    let ok = h.exchange(&client, &code, VERIFIER).await;
    assert_eq!(
        ok.status(),
        200,
        "failed attempts do not spend the code: {:?}",
        ok.body()
    );
    assert_eq!(ok.headers()["cache-control"], "no-store");
    let tokens = json(&ok);
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "mxcp:access");
    let access = tokens["access_token"].as_str().unwrap();
    let session = h.bearer.authenticate(access, crate::support::now()).await.unwrap();
    assert_eq!(session.record.user.email.as_deref(), Some("alice@example.test"));
    assert_eq!(session.provider_access_token(), "idp-access");

    // A stranger replaying the spent code does not get the real login revoked…
    let guess = h.exchange(&stranger, &code, &"y".repeat(43)).await;
    assert_eq!(json(&guess)["error"], "invalid_grant");
    assert!(h.bearer.authenticate(access, crate::support::now()).await.is_ok());
    // …the code's holder replaying it does (RFC 6749 §4.1.2).
    let replay = h.exchange(&client, &code, VERIFIER).await;
    assert_eq!(json(&replay)["error"], "invalid_grant");
    assert!(matches!(
        h.bearer.authenticate(access, crate::support::now()).await,
        Err(BearerError::Invalid(_))
    ));
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes() {
    let h = harness();
    let client = h.register_public().await;
    let code = h.code_for(&client).await;
    let first = json(&h.exchange(&client, &code, VERIFIER).await);
    let refresh = |token: &str| format!("grant_type=refresh_token&refresh_token={token}&client_id={client}");

    let second = h
        .call(post("/token", &refresh(first["refresh_token"].as_str().unwrap()), &[]))
        .await;
    assert_eq!(second.status(), 200);
    let second = json(&second);
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let now = crate::support::now();
    assert!(
        h.bearer
            .authenticate(first["access_token"].as_str().unwrap(), now)
            .await
            .is_err(),
        "old access token retired"
    );
    let newest = second["access_token"].as_str().unwrap();
    assert!(h.bearer.authenticate(newest, now).await.is_ok());

    // One retry within the grace window (the client lost the response): a new pair, and the
    // pair of the first use stays valid.
    let retry = json(
        &h.call(post("/token", &refresh(first["refresh_token"].as_str().unwrap()), &[]))
            .await,
    );
    assert!(retry["access_token"].is_string(), "{retry}");
    assert!(h.bearer.authenticate(newest, now).await.is_ok());

    let reuse = h
        .call(post("/token", &refresh(first["refresh_token"].as_str().unwrap()), &[]))
        .await;
    assert_eq!(json(&reuse)["error"], "invalid_grant");
    assert!(
        h.bearer.authenticate(newest, now).await.is_err(),
        "reuse revokes the session"
    );
    let after = h
        .call(post("/token", &refresh(second["refresh_token"].as_str().unwrap()), &[]))
        .await;
    assert_eq!(json(&after)["error"], "invalid_grant");
}

#[tokio::test]
async fn without_a_grace_window_the_first_reuse_revokes() {
    let h = harness_with("tokens: {refresh_token_reuse_grace: 0s}\n");
    let client = h.register_public().await;
    let code = h.code_for(&client).await;
    let first = json(&h.exchange(&client, &code, VERIFIER).await);
    let refresh = format!(
        "grant_type=refresh_token&refresh_token={}&client_id={client}",
        first["refresh_token"].as_str().unwrap()
    );
    let second = json(&h.call(post("/token", &refresh, &[])).await);
    let reuse = h.call(post("/token", &refresh, &[])).await;
    assert_eq!(json(&reuse)["error"], "invalid_grant");
    assert!(h
        .bearer
        .authenticate(second["access_token"].as_str().unwrap(), crate::support::now())
        .await
        .is_err());
}

#[tokio::test]
async fn token_endpoint_authenticates_clients_and_checks_the_grant() {
    let h = harness();
    let client = h.register_public().await;
    let code = h.code_for(&client).await;
    let other = h.register_public().await;
    let stolen = h.exchange(&other, &code, VERIFIER).await;
    assert_eq!(
        json(&stolen)["error"],
        "invalid_grant",
        "a code works only for its client"
    );

    let unsupported = h
        .call(post("/token", &format!("grant_type=password&client_id={client}"), &[]))
        .await;
    assert_eq!(json(&unsupported)["error"], "unsupported_grant_type");
    let no_client = h
        .call(post("/token", "grant_type=authorization_code&code=x", &[]))
        .await;
    assert_eq!(no_client.status(), 401);
    assert_eq!(json(&no_client)["error"], "invalid_client");
    let wrong_secret = h
        .call(post(
            "/token",
            "grant_type=refresh_token&refresh_token=x",
            &[("authorization", "Basic c3RhdGljLWFwcDpub3Bl")],
        ))
        .await;
    assert_eq!(wrong_secret.status(), 401);
    assert!(wrong_secret.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    for wrong in ["text/plain", "application/json", "multipart/form-data; boundary=x"] {
        let resp = h
            .call(post(
                "/token",
                "grant_type=authorization_code&code=x",
                &[("content-type", wrong)],
            ))
            .await;
        assert_eq!(resp.status(), 400, "{wrong}");
        assert!(json(&resp)["error_description"]
            .as_str()
            .unwrap()
            .contains("x-www-form-urlencoded"));
    }
    let charset = h
        .call(post(
            "/token",
            "grant_type=authorization_code&code=x",
            &[("content-type", "application/x-www-form-urlencoded; charset=UTF-8")],
        ))
        .await;
    assert_ne!(
        json(&charset)["error_description"].as_str(),
        Some("the request body must be application/x-www-form-urlencoded (Content-Type)")
    );
    let register_form = h.call(post("/register", "{}", &[("content-type", "text/plain")])).await;
    assert_eq!(register_form.status(), 400);
    let dup = h.call(post("/token", "grant_type=a&grant_type=b", &[])).await;
    assert_eq!(json(&dup)["error"], "invalid_request");
}

#[tokio::test]
async fn a_public_origin_from_a_trusted_proxy_names_issuer_resource_and_callback() {
    let h = harness();
    let origin = PublicOrigin("https://mcp.example.com".into());
    let with_origin = |mut req: Request<Bytes>| {
        req.extensions_mut().insert(origin.clone());
        req
    };
    let asm = json(
        &h.call(with_origin(get("/.well-known/oauth-authorization-server", "")))
            .await,
    );
    assert_eq!(asm["issuer"], "https://mcp.example.com");
    assert_eq!(asm["token_endpoint"], "https://mcp.example.com/token");
    let prm = json(
        &h.call(with_origin(get("/.well-known/oauth-protected-resource/mcp", "")))
            .await,
    );
    assert_eq!(prm["resource"], "https://mcp.example.com/mcp");
    assert_eq!(prm["authorization_servers"][0], "https://mcp.example.com");
    let challenge = h.server.unauthorized(Some(&origin), challenge::Challenge::NoToken);
    assert!(challenge.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("https://mcp.example.com/.well-known/oauth-protected-resource/mcp"));

    let client = h.register_public().await;
    let uri = Harness::authorize_uri(
        &client,
        &format!("&resource={}", urlencode("https://mcp.example.com/mcp")),
    );
    let page = h.call(with_origin(get(&uri, ""))).await;
    assert_eq!(page.status(), 200, "the resource of this origin is accepted");
    assert!(
        page.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .starts_with("__Host-mxgate-csrf="),
        "https origin: __Host- cookies"
    );
    let html = String::from_utf8(page.body().to_vec()).unwrap();
    let form = format!(
        "transaction={}&csrf_token={}&decision=deny",
        hidden(&html, "transaction"),
        hidden(&html, "csrf_token")
    );
    let jar = cookies_of(&page);
    let denied = h.call(with_origin(post("/consent", &form, &[("cookie", &jar)]))).await;
    assert_eq!(query(&location(&denied))["iss"], "https://mcp.example.com");

    let wrong_resource = Harness::authorize_uri(&client, &format!("&resource={}", urlencode(&format!("{PUBLIC}/mcp"))));
    let refused = h.call(with_origin(get(&wrong_resource, ""))).await;
    assert_eq!(query(&location(&refused))["error"], "invalid_target");
}

impl Harness {
    /// A logged-in public client: (client id, token response).
    async fn logged_in(&self) -> (String, Value) {
        self.logged_in_as("good-code").await
    }

    /// A new client's tokens for the user `idp_code` signs in (see [`Self::code_for_user`]).
    async fn logged_in_as(&self, idp_code: &str) -> (String, Value) {
        let client = self.register_public().await;
        let code = self.code_for_user(&client, idp_code).await;
        let tokens = json(&self.exchange(&client, &code, VERIFIER).await);
        (client, tokens)
    }

    async fn works(&self, access_token: &Value) -> bool {
        self.bearer
            .authenticate(access_token.as_str().unwrap(), crate::support::now())
            .await
            .is_ok()
    }
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_the_session_and_an_access_token_only_itself() {
    let h = harness();
    let (client, tokens) = h.logged_in().await;
    let revoke = |token: &Value| format!("token={}&client_id={client}", token.as_str().unwrap());
    let resp = h.call(post("/revoke", &revoke(&tokens["access_token"]), &[])).await;
    assert_eq!(resp.status(), 200);
    assert!(!h.works(&tokens["access_token"]).await);
    let refreshed = h
        .call(post(
            "/token",
            &format!(
                "grant_type=refresh_token&refresh_token={}&client_id={client}",
                tokens["refresh_token"].as_str().unwrap()
            ),
            &[],
        ))
        .await;
    assert_eq!(
        refreshed.status(),
        200,
        "the session lives on after an access token is revoked"
    );
    let refreshed = json(&refreshed);

    assert_eq!(
        h.call(post("/revoke", &revoke(&refreshed["refresh_token"]), &[]))
            .await
            .status(),
        200
    );
    assert!(!h.works(&refreshed["access_token"]).await, "the whole session ended");
}

#[tokio::test]
async fn revoke_answers_200_for_unknown_or_foreign_tokens_and_checks_the_client() {
    let h = harness();
    let (_client, tokens) = h.logged_in().await;
    let other = h.register_public().await;
    let foreign = format!("token={}&client_id={other}", tokens["refresh_token"].as_str().unwrap());
    assert_eq!(h.call(post("/revoke", &foreign, &[])).await.status(), 200);
    assert!(
        h.works(&tokens["access_token"]).await,
        "another client cannot revoke it"
    );
    assert_eq!(
        h.call(post("/revoke", &format!("token=nope&client_id={other}"), &[]))
            .await
            .status(),
        200
    );
    let unauthenticated = h.call(post("/revoke", "token=nope", &[])).await;
    assert_eq!(json(&unauthenticated)["error"], "invalid_client");
    let hint = h
        .call(post(
            "/revoke",
            &format!("token=x&client_id={other}&token_type_hint=id_token"),
            &[],
        ))
        .await;
    assert_eq!(json(&hint)["error"], "unsupported_token_type");
}

#[tokio::test]
async fn logout_ends_the_token_session_or_every_session_of_the_user() {
    let h = harness();
    let (_c1, first) = h.logged_in().await;
    let (_c2, second) = h.logged_in().await;
    let (_c3, third) = h.logged_in().await;
    let bearer = |t: &Value| format!("Bearer {}", t["access_token"].as_str().unwrap());

    let one = h.call(post("/logout", "", &[("authorization", &bearer(&first))])).await;
    assert_eq!(json(&one)["revoked_sessions"], 1);
    assert!(!h.works(&first["access_token"]).await);
    assert!(h.works(&second["access_token"]).await);

    let all = h
        .call(post("/logout", "all=true", &[("authorization", &bearer(&second))]))
        .await;
    assert_eq!(json(&all)["revoked_sessions"], 2, "alice's two remaining sessions");
    assert!(!h.works(&second["access_token"]).await);
    assert!(!h.works(&third["access_token"]).await);

    let stale = h.call(post("/logout", "", &[("authorization", &bearer(&third))])).await;
    assert_eq!(stale.status(), 401);
}

#[tokio::test]
async fn browser_logout_clears_the_cookies() {
    let h = harness();
    let approval = cookies::consent("some-client");
    let resp = h
        .call(get(
            "/logout",
            &format!("mxgate-csrf=x; {approval}=v; mxgate-consent-other=w"),
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let cleared: Vec<_> = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("mxgate-csrf=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    assert!(cleared.iter().any(|c| c.starts_with("mxgate-login=;")), "{cleared:?}");
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with(&format!("{approval}=;")) && c.contains("Max-Age=0")),
        "remembered approvals are forgotten: {cleared:?}"
    );
    assert!(
        !cleared.iter().any(|c| c.starts_with("mxgate-consent-other")),
        "only names mxgate makes are echoed: {cleared:?}"
    );
}

#[tokio::test]
async fn a_browser_signs_in_and_gets_a_session_cookie_for_its_requests() {
    let h = harness();
    let to_idp = h.call(get("/login?return_to=%2Fmcp%2Fpage%3Fx%3D1", "")).await;
    assert_eq!(to_idp.status(), 302);
    assert!(location(&to_idp).as_str().starts_with("https://idp.test/auth"));
    let jar = cookies_of(&to_idp);
    let state = query(&location(&to_idp))["state"].clone();
    let back = h
        .call(get(&format!("/callback?code=good-code&state={state}"), &jar))
        .await;
    assert_eq!(back.status(), 302);
    assert_eq!(back.headers()[LOCATION], "/mcp/page?x=1");
    let cookies: Vec<String> = back
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session_cookie = cookies
        .iter()
        .find(|c| c.starts_with("mxgate-session="))
        .expect("a session cookie");
    assert!(
        session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"),
        "{session_cookie}"
    );
    let token = session_cookie
        .trim_start_matches("mxgate-session=")
        .split(';')
        .next()
        .unwrap();
    let session = h.bearer.authenticate(token, crate::support::now()).await.unwrap();
    assert_eq!(session.record.client_id, browser_login::BROWSER_CLIENT_ID);
    assert_eq!(session.record.user.email.as_deref(), Some("alice@example.test"));

    let headers = {
        let mut m = http::HeaderMap::new();
        m.insert("cookie", format!("mxgate-session={token}").parse().unwrap());
        m
    };
    assert_eq!(h.server.browser_session(None, &headers), Some(token));
    // A GET only asks; a cross-site POST without the browser's CSRF token is refused.
    let ask = h.call(get("/logout", &format!("mxgate-session={token}"))).await;
    assert_eq!(ask.status(), 200);
    let html = String::from_utf8(ask.body().to_vec()).unwrap();
    assert!(
        h.bearer.authenticate(token, crate::support::now()).await.is_ok(),
        "a GET ends nothing"
    );
    let csrf = hidden(&html, "csrf_token");
    let approval = cookies::consent("some-client");
    let jar = format!("mxgate-session={token}; {approval}=v; {}", cookies_of(&ask));
    let forged = h.call(post("/logout", "csrf_token=forged", &[("cookie", &jar)])).await;
    assert_eq!(forged.status(), 403);
    assert!(h.bearer.authenticate(token, crate::support::now()).await.is_ok());
    let out = h
        .call(post("/logout", &format!("csrf_token={csrf}"), &[("cookie", &jar)]))
        .await;
    assert_eq!(out.status(), 200);
    assert!(String::from_utf8_lossy(out.body()).contains("Signed out"));
    assert_eq!(
        set_cookie_named(&out, &approval),
        Some(format!("{approval}=")),
        "the sign-out forgets remembered approvals"
    );
    assert!(
        h.bearer.authenticate(token, crate::support::now()).await.is_err(),
        "logout ended the session"
    );
}

#[tokio::test]
async fn browser_sign_in_returns_only_to_local_paths_and_needs_https_off_loopback() {
    let h = harness();
    let to_idp = h.call(get("/login?return_to=https%3A%2F%2Fevil.example%2F", "")).await;
    let jar = cookies_of(&to_idp);
    let state = query(&location(&to_idp))["state"].clone();
    let back = h
        .call(get(&format!("/callback?code=good-code&state={state}"), &jar))
        .await;
    assert_eq!(back.headers()[LOCATION], "/");

    let mut plain_remote = get("/login", "");
    plain_remote
        .extensions_mut()
        .insert(PublicOrigin("http://mcp.example.com".into()));
    assert_eq!(h.call(plain_remote).await.status(), 403);
}

#[tokio::test]
async fn several_providers_are_offered_and_each_login_stays_with_its_provider() {
    let h = harness_with_providers("", &["second"]);
    let choice = h.call(get("/login?return_to=%2Fx", "")).await;
    assert_eq!(choice.status(), 200);
    let html = String::from_utf8(choice.body().to_vec()).unwrap();
    assert!(
        html.contains("Sign in with Stand-in IdP") && html.contains("Sign in with The second IdP"),
        "{html}"
    );
    assert!(
        html.contains("provider=second&amp;"),
        "the link names the provider: {html}"
    );
    let picked = h.call(get("/login?provider=second&return_to=%2Fx", "")).await;
    assert!(location(&picked).as_str().starts_with("https://second.test/auth"));

    let client = h.register_public().await;
    let page = h.call(get(&Harness::authorize_uri(&client, ""), "")).await;
    let html = String::from_utf8(page.body().to_vec()).unwrap();
    assert!(
        html.contains("name=\"provider\" value=\"second\">Allow and sign in with The second IdP<"),
        "{html}"
    );
    let form = format!(
        "transaction={}&csrf_token={}&provider=second",
        hidden(&html, "transaction"),
        hidden(&html, "csrf_token")
    );
    let jar = cookies_of(&page);
    let to_idp = h.call(post("/consent", &form, &[("cookie", &jar)])).await;
    assert!(location(&to_idp).as_str().starts_with("https://second.test/auth"));
    let state = query(&location(&to_idp))["state"].clone();
    let jar = format!("{jar}; {}", cookies_of(&to_idp));

    let wrong_path = h
        .call(get(&format!("/callback?code=good-code&state={state}"), &jar))
        .await;
    assert_eq!(
        wrong_path.status(),
        400,
        "the primary provider's callback cannot finish a login at `second`"
    );
    let back = h
        .call(get(&format!("/callback/second?code=good-code&state={state}"), &jar))
        .await;
    assert_eq!(back.status(), 302);
    let jar = format!("{jar}; {}", cookies_of(&back));
    let code = query(&location(&back))["code"].clone();
    let tokens = json(&h.exchange(&client, &code, VERIFIER).await);
    let session = h
        .bearer
        .authenticate(tokens["access_token"].as_str().unwrap(), crate::support::now())
        .await
        .unwrap();
    assert_eq!(
        session.record.user.provider, "second",
        "the session remembers its provider"
    );

    let again = h.call(get(&Harness::authorize_uri(&client, ""), &jar)).await;
    assert!(
        location(&again).as_str().starts_with("https://second.test/auth"),
        "remembered consent also remembers the provider"
    );
}

#[tokio::test]
async fn a_self_registered_client_cannot_obtain_a_static_clients_scope() {
    let h = harness_with_scoped_client();
    // Asking for the static client's scope at registration gets the dynamic default instead.
    let body = format!(
        "{{\"redirect_uris\":[\"{REDIRECT}\"],\"token_endpoint_auth_method\":\"none\",\"scope\":\"mxcp:admin\"}}"
    );
    let registered = json(&h.call(post("/register", &body, &[])).await);
    assert_eq!(registered["scope"], "mxcp:access");
    let client = registered["client_id"].as_str().unwrap().to_string();
    // Asking for nothing gets the dynamic default, not every scope the server knows.
    let silent = h.register_public().await;
    let code = h.code_for(&silent).await;
    assert_eq!(
        json(&h.exchange(&silent, &code, VERIFIER).await)["scope"],
        "mxcp:access"
    );
    // Asking for it at /authorize is refused.
    let admin = h
        .call(get(&Harness::authorize_uri(&client, "&scope=mxcp%3Aadmin"), ""))
        .await;
    assert_eq!(query(&location(&admin))["error"], "invalid_scope");
    // The static client may have it.
    let page = h
        .call(get(&Harness::authorize_uri("scoped-app", "&scope=mxcp%3Aadmin"), ""))
        .await;
    assert_eq!(page.status(), 200, "consent page for the static client's own scope");
    // It is still advertised (the metadata lists every scope some client may hold).
    let asm = json(&h.call(get("/.well-known/oauth-authorization-server", "")).await);
    assert!(asm["scopes_supported"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "mxcp:admin"));
}

#[tokio::test]
async fn too_long_free_form_parameters_are_refused_before_anything_is_stored() {
    let h = harness();
    let client = h.register_public().await;
    for (name, len) in [
        ("state", 2049),
        ("login_hint", 257),
        ("scope", 1025),
        ("resource", 2049),
    ] {
        let uri = Harness::authorize_uri(&client, &format!("&{name}={}", "a".repeat(len)));
        let resp = h.call(get(&uri, "")).await;
        assert_eq!(resp.status(), 400, "{name}");
        assert!(resp.headers().get(LOCATION).is_none(), "{name}: a page, not a redirect");
        assert!(String::from_utf8_lossy(resp.body()).contains(name));
    }
    let stored = h
        .server
        .store
        .kv()
        .stored_entries(crate::store::Table::ConsentTransactions)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn pending_logins_are_bounded() {
    let h = harness_with("limits:\n  max_pending_logins: 3\n");
    let client = h.register_public().await;
    for _ in 0..3 {
        assert_eq!(
            h.call(get(&Harness::authorize_uri(&client, ""), "")).await.status(),
            200
        );
    }
    let full = h.call(get(&Harness::authorize_uri(&client, ""), "")).await;
    assert_eq!(query(&location(&full))["error"], "temporarily_unavailable");
    let browser = h.call(get("/login?return_to=/mcp", "")).await;
    assert_eq!(browser.status(), 503);
}

#[tokio::test]
async fn registered_clients_are_bounded_in_number() {
    let h = harness_with("dynamic_clients:\n  max_clients: 2\n");
    h.register_public().await;
    h.register_public().await;
    let body = format!("{{\"redirect_uris\":[\"{REDIRECT}\"],\"token_endpoint_auth_method\":\"none\"}}");
    let full = h.call(post("/register", &body, &[])).await;
    assert_eq!(full.status(), 503);
    assert_eq!(json(&full)["error"], "temporarily_unavailable");
}

#[tokio::test]
async fn the_audit_trail_follows_a_client_from_registration_to_revocation_and_holds_no_secret() {
    use crate::audit::{captured, AuditEvent};
    captured::start();
    let h = harness();
    let client = h.register_public().await;
    // Denied at the consent page, then refused by the provider, then signed in.
    let page = h.call(get(&Harness::authorize_uri(&client, ""), "")).await;
    let html = String::from_utf8(page.body().to_vec()).unwrap();
    let form = format!(
        "transaction={}&csrf_token={}&decision=deny",
        hidden(&html, "transaction"),
        hidden(&html, "csrf_token")
    );
    let headers = [
        ("cookie", cookies_of(&page)),
        ("content-type", "application/x-www-form-urlencoded".into()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    h.call(post("/consent", &form, &headers)).await;
    let (to_idp, jar) = h.approve(&client).await;
    let state = query(&location(&to_idp))["state"].clone();
    h.call(get(&format!("/callback?code=bad-code&state={state}"), &jar))
        .await;
    let code = h.code_for(&client).await;
    let mut exchange = post(
        "/token",
        &format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}&client_id={client}&code_verifier={VERIFIER}",
            urlencode(REDIRECT)
        ),
        &[],
    );
    let address: std::net::IpAddr = "203.0.113.9".parse().unwrap();
    exchange.extensions_mut().insert(ClientAddress(address));
    let tokens = json(&h.call(exchange).await);
    let refresh = |token: &Value| {
        format!(
            "grant_type=refresh_token&refresh_token={}&client_id={client}",
            token.as_str().unwrap()
        )
    };
    let refreshed = json(&h.call(post("/token", &refresh(&tokens["refresh_token"]), &[])).await);
    // Past the grace retry: the third use of the first refresh token is a reuse.
    h.call(post("/token", &refresh(&tokens["refresh_token"]), &[])).await;
    h.call(post("/token", &refresh(&tokens["refresh_token"]), &[])).await;
    let revoke = format!(
        "token={}&client_id={client}",
        refreshed["access_token"].as_str().unwrap()
    );
    h.call(post("/revoke", &revoke, &[])).await;

    let records = captured::of_client(&client);
    let events: Vec<&str> = records.iter().map(|r| r.event.name()).collect();
    assert_eq!(
        events,
        [
            "client_registered",
            "consent_denied",
            "consent_given",
            "login_failed",
            "consent_given",
            "login_succeeded",
            "token_issued",
            "token_refreshed",
            "token_refreshed",
            "refresh_token_reuse",
            "token_revoked",
        ]
    );
    let failed = &records[3];
    assert!(
        failed.reason.as_deref().unwrap().contains("invalid_grant"),
        "{failed:?}"
    );
    let issued = records.iter().find(|r| r.event == AuditEvent::TokenIssued).unwrap();
    assert_eq!(
        (issued.user.as_deref(), issued.username.as_deref()),
        (Some("oidc:alice"), Some("alice"))
    );
    assert_eq!(issued.client_addr, Some(address));
    assert!(issued.session_id.is_some());
    let reuse = records
        .iter()
        .find(|r| r.event == AuditEvent::RefreshTokenReuse)
        .unwrap();
    assert_eq!(
        reuse.user.as_deref(),
        Some("oidc:alice"),
        "the user of the revoked session"
    );
    let text = serde_json::to_string(&records).unwrap();
    for secret in [
        &tokens["access_token"],
        &tokens["refresh_token"],
        &refreshed["refresh_token"],
    ] {
        assert!(!text.contains(secret.as_str().unwrap()), "a token in the audit trail");
    }
    for secret in [code.as_str(), VERIFIER, "idp-access", &state] {
        assert!(!text.contains(secret), "`{secret}` in the audit trail");
    }
}

#[tokio::test]
async fn back_channel_logout_ends_the_provider_sessions_once_per_token() {
    let h = harness_with("backchannel_logout:\n  oidc: {}\n");
    const PATH: &str = "/backchannel-logout/oidc";
    assert_eq!(h.server.route(PATH), Some(Route::BackchannelLogout));
    let (_, alice_1) = h.logged_in().await;
    let (_, alice_2) = h.logged_in().await;
    let (_, bob) = h.logged_in_as("bob-code").await;
    let logout = |token: &str| post(PATH, &format!("logout_token={}", urlencode(token)), &[]);

    let ended = h.call(logout("logout;;idp-session-alice;j-1")).await;
    assert_eq!(ended.status(), 200, "{:?}", ended.body());
    assert_eq!(ended.headers()["cache-control"], "no-store");
    assert!(!h.works(&alice_1["access_token"]).await);
    assert!(!h.works(&alice_2["access_token"]).await);
    assert!(h.works(&bob["access_token"]).await, "bob's session goes on");

    let replayed = h.call(logout("logout;bob;;j-1")).await;
    assert_eq!(replayed.status(), 400);
    assert_eq!(json(&replayed)["error"], "invalid_request");
    assert!(json(&replayed)["error_description"].as_str().unwrap().contains("jti"));
    assert!(h.works(&bob["access_token"]).await, "a replayed token ends nothing");

    let by_subject = h.call(logout("logout;bob;;j-2")).await;
    assert_eq!(by_subject.status(), 200);
    assert!(
        !h.works(&bob["access_token"]).await,
        "only `sub`: every session of the user"
    );
}

#[tokio::test]
async fn back_channel_logout_answers_400_to_bad_input_and_503_when_keys_are_out_of_reach() {
    let h = harness_with("backchannel_logout:\n  oidc: {path: /idp/logout}\n");
    assert_eq!(
        h.server.route("/backchannel-logout/oidc"),
        None,
        "the configured path only"
    );
    let (_, alice) = h.logged_in().await;
    for (body, expected) in [
        ("logout_token=forged", "bad signature"),
        ("", "logout_token is required"),
        ("logout_token=a&logout_token=b", "more than once"),
        (&*format!("logout_token={}", "a".repeat(9 * 1024)), "larger than"),
    ] {
        let resp = h.call(post("/idp/logout", body, &[])).await;
        assert_eq!(resp.status(), 400, "{body:.40}");
        assert_eq!(json(&resp)["error"], "invalid_request");
        let description = json(&resp)["error_description"].as_str().unwrap().to_string();
        assert!(description.contains(expected), "{description}");
    }
    let wrong_method = h.call(get("/idp/logout", "")).await;
    assert_eq!(wrong_method.status(), 405);
    let unreachable = h.call(post("/idp/logout", "logout_token=unreachable", &[])).await;
    assert_eq!(unreachable.status(), 503);
    assert!(h.works(&alice["access_token"]).await);
}

#[tokio::test]
async fn back_channel_logout_is_rate_limited_per_address() {
    let h = harness_with("backchannel_logout:\n  oidc: {}\nrate_limits: {per_address: {backchannel_logout: 2}}\n");
    let address: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    assert!(h.server.check_address_rate(Route::BackchannelLogout, address).is_ok());
    assert!(h.server.check_address_rate(Route::BackchannelLogout, address).is_ok());
    assert!(h.server.check_address_rate(Route::BackchannelLogout, address).is_err());
    let other: std::net::IpAddr = "192.0.2.8".parse().unwrap();
    assert!(h.server.check_address_rate(Route::BackchannelLogout, other).is_ok());
}
