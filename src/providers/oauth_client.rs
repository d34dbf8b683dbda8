//! The OAuth 2.0 client side shared by every provider: the authorization URL with PKCE S256
//! and the code-for-token exchange via the `oauth2` crate, and [`OAuthClient::token_request`]
//! for token endpoints that do not answer as RFC 6749 says (GitHub reports errors with HTTP 200,
//! Atlassian takes JSON, Salesforce adds `id` and `instance_url`).

use super::ProviderError;
use crate::identity::user::ProviderTokens;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, ExtraTokenFields, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse,
    TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

/// Token responses may carry an OpenID Connect `id_token`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenField {}

type TokenResponseWithId = StandardTokenResponse<IdTokenField, BasicTokenType>;
type Client = oauth2::Client<
    BasicErrorResponse,
    TokenResponseWithId,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

/// A code-for-token exchange at a provider's token endpoint.
pub struct CodeExchange<'a> {
    pub token_url: &'a str,
    pub redirect_uri: &'a str,
    pub code: &'a str,
    pub pkce_verifier: &'a str,
    /// Extra form parameters (e.g. `audience`).
    pub extra: &'a [(&'a str, &'a str)],
}

/// One provider's OAuth client settings.
pub struct OAuthClient {
    pub provider: String,
    pub client_id: String,
    pub client_secret: String,
    /// `client_secret_basic` (true) or `client_secret_post` (false) at the token endpoint.
    pub basic_auth: bool,
}

// === impl OAuthClient ===

impl OAuthClient {
    fn invalid(&self, message: String) -> ProviderError {
        ProviderError::Invalid {
            provider: self.provider.clone(),
            message,
        }
    }

    /// The URL that sends the browser to the provider's authorization endpoint.
    pub fn authorization_url(
        &self,
        auth_url: &str,
        redirect_uri: &str,
        scope: &str,
        state: &str,
        pkce_verifier: &str,
        extra: &[(&str, &str)],
    ) -> Result<Url, ProviderError> {
        let client = oauth2::Client::<
            BasicErrorResponse,
            TokenResponseWithId,
            BasicTokenIntrospectionResponse,
            StandardRevocableToken,
            BasicRevocationErrorResponse,
        >::new(ClientId::new(self.client_id.clone()))
        .set_auth_uri(AuthUrl::new(auth_url.to_string()).map_err(|e| self.invalid(format!("auth_url: {e}")))?)
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri.to_string()).map_err(|e| self.invalid(format!("redirect URL: {e}")))?,
        );
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(pkce_verifier.to_string()));
        let mut request = client
            .authorize_url(|| CsrfToken::new(state.to_string()))
            .add_scopes(scope.split_whitespace().map(|s| Scope::new(s.to_string())))
            .set_pkce_challenge(challenge);
        for (name, value) in extra {
            request = request.add_extra_param(*name, *value);
        }
        Ok(request.url().0)
    }

    fn token_client(&self, token_url: &str, redirect_uri: Option<&str>) -> Result<Client, ProviderError> {
        let auth_type = if self.basic_auth {
            AuthType::BasicAuth
        } else {
            AuthType::RequestBody
        };
        let mut client = oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.client_secret.clone()))
            .set_auth_type(auth_type)
            .set_token_uri(TokenUrl::new(token_url.to_string()).map_err(|e| self.invalid(format!("token_url: {e}")))?);
        if let Some(uri) = redirect_uri {
            let uri = RedirectUrl::new(uri.to_string()).map_err(|e| self.invalid(format!("redirect URL: {e}")))?;
            client = client.set_redirect_uri(uri);
        }
        Ok(client)
    }

    /// Exchanges an authorization code (with mxgate's PKCE verifier) for the provider's tokens.
    pub async fn exchange_code(
        &self,
        http: &reqwest::Client,
        exchange: &CodeExchange<'_>,
        now: u64,
    ) -> Result<ProviderTokens, ProviderError> {
        let client = self.token_client(exchange.token_url, Some(exchange.redirect_uri))?;
        let mut request = client
            .exchange_code(AuthorizationCode::new(exchange.code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(exchange.pkce_verifier.to_string()));
        for (name, value) in exchange.extra {
            request = request.add_extra_param(*name, *value);
        }
        let response = request.request_async(http).await.map_err(|e| self.token_error(e))?;
        Ok(provider_tokens(&response, now))
    }

    /// Exchanges a provider refresh token for new tokens (keeping the old refresh token when the
    /// provider does not rotate it).
    pub async fn refresh(
        &self,
        http: &reqwest::Client,
        token_url: &str,
        refresh_token: &str,
        extra: &[(&str, &str)],
        now: u64,
    ) -> Result<ProviderTokens, ProviderError> {
        let client = self.token_client(token_url, None)?;
        let token = oauth2::RefreshToken::new(refresh_token.to_string());
        let mut request = client.exchange_refresh_token(&token);
        for (name, value) in extra {
            request = request.add_extra_param(*name, *value);
        }
        let response = request.request_async(http).await.map_err(|e| self.token_error(e))?;
        let mut tokens = provider_tokens(&response, now);
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = Some(refresh_token.to_string());
        }
        Ok(tokens)
    }

    fn token_error<E: std::error::Error>(&self, error: RequestTokenError<E, BasicErrorResponse>) -> ProviderError {
        match error {
            RequestTokenError::ServerResponse(response) => ProviderError::Rejected {
                provider: self.provider.clone(),
                error: response.error().to_string(),
                description: response.error_description().cloned(),
            },
            RequestTokenError::Request(e) => ProviderError::Unreachable {
                provider: self.provider.clone(),
                what: "the token endpoint",
                message: error_chain(&e),
            },
            RequestTokenError::Parse(e, _body) => self.invalid(format!("unreadable token response: {e}")),
            RequestTokenError::Other(message) => self.invalid(message),
        }
    }
}

/// How a token endpoint wants its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenEncoding {
    /// `application/x-www-form-urlencoded` (RFC 6749).
    Form,
    /// A JSON object of strings (Atlassian).
    Json,
}

/// A token endpoint's successful answer, read by [`OAuthClient::token_request`]: the tokens, and
/// every field of the response for the provider's own (Salesforce `id`, GitHub
/// `refresh_token_expires_in`). Deliberately not `Debug`: it holds tokens.
pub struct TokenEndpointResponse {
    pub tokens: ProviderTokens,
    pub fields: Map<String, Value>,
}

/// Token responses larger than this are refused.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
/// A provider's `error` / `error_description` is cut to this many characters (it is logged).
const MAX_ERROR_TEXT: usize = 200;

impl OAuthClient {
    /// POSTs `params` and the client's credentials (Basic or in the body, as `basic_auth` says) to
    /// a token endpoint with `Accept: application/json`, and reads the answer as providers really
    /// send it: a JSON object with an `error` is a refusal whatever the HTTP status (GitHub answers
    /// errors with 200); a 5xx or 429 means the provider is unavailable; a success must carry a
    /// bearer `access_token`. `expires_in` may be a number or a numeric string; absent (GitHub OAuth
    /// apps, Salesforce) means the token has no known expiry.
    pub async fn token_request(
        &self,
        http: &reqwest::Client,
        token_url: &str,
        params: &[(&str, &str)],
        encoding: TokenEncoding,
        now: u64,
    ) -> Result<TokenEndpointResponse, ProviderError> {
        let unreachable = |message: String| ProviderError::Unreachable {
            provider: self.provider.clone(),
            what: "the token endpoint",
            message,
        };
        let mut all: Vec<(&str, &str)> = params.to_vec();
        let mut request = http.post(token_url).header(reqwest::header::ACCEPT, "application/json");
        if self.basic_auth {
            // RFC 6749 §2.3.1: both parts form-urlencoded before Basic encoding.
            let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request = request.basic_auth(encode(&self.client_id), Some(encode(&self.client_secret)));
        } else {
            all.push(("client_id", &self.client_id));
            all.push(("client_secret", &self.client_secret));
        }
        request = match encoding {
            TokenEncoding::Form => request.form(&all),
            TokenEncoding::Json => request.json(
                &all.iter()
                    .map(|(k, v)| (k.to_string(), Value::from(*v)))
                    .collect::<Map<String, Value>>(),
            ),
        };
        let response = request.send().await.map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        let body = read_bounded(response, MAX_TOKEN_RESPONSE_BYTES)
            .await
            .map_err(|e| unreachable(format!("reading the answer of {token_url}: {e}")))?;
        let parsed: Option<Map<String, Value>> = serde_json::from_slice(&body).ok();
        let text = |key: &str| {
            parsed
                .as_ref()
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .map(|s| clip(s, MAX_ERROR_TEXT))
        };
        let error = text("error");
        let unavailable = status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || matches!(error.as_deref(), Some("server_error" | "temporarily_unavailable"));
        if unavailable {
            let code = error.map(|e| format!(" ({e})")).unwrap_or_default();
            return Err(unreachable(format!("{token_url} answered {status}{code}")));
        }
        if let Some(error) = error {
            return Err(ProviderError::Rejected {
                provider: self.provider.clone(),
                error,
                description: text("error_description"),
            });
        }
        if !status.is_success() {
            return Err(self.invalid(format!("{token_url} answered {status} without an OAuth error")));
        }
        let fields = parsed.ok_or_else(|| self.invalid(format!("the answer of {token_url} is not a JSON object")))?;
        let tokens = tokens_from_fields(&fields, now).map_err(|e| self.invalid(format!("token response: {e}")))?;
        Ok(TokenEndpointResponse { tokens, fields })
    }
}

/// The tokens in a token endpoint's JSON answer (RFC 6749 §5.1, leniently: `expires_in` as a
/// number or a numeric string).
pub fn tokens_from_fields(fields: &Map<String, Value>, now: u64) -> Result<ProviderTokens, String> {
    let text = |key: &str| fields.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    let access_token = text("access_token").ok_or("no `access_token`")?.to_string();
    if let Some(kind) = fields.get("token_type").filter(|v| !v.is_null()) {
        match kind.as_str() {
            Some(kind) if kind.eq_ignore_ascii_case("bearer") => {}
            _ => return Err(format!("`token_type` is {}, not bearer", clip(&kind.to_string(), 40))),
        }
    }
    let expires_in = match fields.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    if fields.get("expires_in").is_some_and(|v| !v.is_null()) && expires_in.is_none() {
        return Err("`expires_in` is not a number of seconds".into());
    }
    Ok(ProviderTokens {
        access_token,
        refresh_token: text("refresh_token").map(str::to_string),
        id_token: text("id_token").map(str::to_string),
        expires_at: expires_in.filter(|s| *s > 0).map(|s| now.saturating_add(s)),
        obtained_at: now,
        scope: fields.get("scope").and_then(Value::as_str).map(str::to_string),
    })
}

/// Refreshed tokens keep the refresh token they were obtained with when the provider sent none.
pub fn keep_refresh_token(mut tokens: ProviderTokens, used: &str) -> ProviderTokens {
    if tokens.refresh_token.is_none() {
        tokens.refresh_token = Some(used.to_string());
    }
    tokens
}

/// A configured provider endpoint, checked once at start-up: an absolute http(s) URL.
pub fn endpoint_url(provider: &str, key: &str, value: &str) -> Result<Url, ProviderError> {
    let invalid = |message: String| ProviderError::Invalid {
        provider: provider.to_string(),
        message,
    };
    let url = Url::parse(value).map_err(|e| invalid(format!("`{key}` is not a URL ({value}): {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(format!("`{key}` must be an http(s) URL with a host ({value})")));
    }
    Ok(url)
}

/// RFC 9207 for providers without discovery metadata (GitHub, Atlassian, Salesforce send no
/// `iss`): when the authorization response does carry one, it must name the origin of the
/// authorization endpoint the user was sent to (mix-up defence).
pub fn check_response_issuer(provider: &str, auth_url: &Url, iss: Option<&str>) -> Result<(), ProviderError> {
    let Some(iss) = iss else {
        return Ok(());
    };
    let expected = auth_url.origin().ascii_serialization();
    if iss.trim_end_matches('/') == expected {
        return Ok(());
    }
    Err(ProviderError::Invalid {
        provider: provider.to_string(),
        message: format!(
            "the authorization response came from issuer `{}`, not {expected}",
            clip(iss, MAX_ERROR_TEXT)
        ),
    })
}

/// Reads a response body, refusing more than `limit` bytes without buffering them.
pub async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!("more than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(format!("more than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// At most `max` characters of remote text, for messages that get logged.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn provider_tokens(response: &TokenResponseWithId, now: u64) -> ProviderTokens {
    ProviderTokens {
        access_token: response.access_token().secret().clone(),
        refresh_token: response.refresh_token().map(|t| t.secret().clone()),
        id_token: response.extra_fields().id_token.clone(),
        expires_at: response.expires_in().map(|d| now + d.as_secs()),
        obtained_at: now,
        scope: response
            .scopes()
            .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")),
    }
}

/// An error and its sources, on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers one HTTP request with `status` and the JSON `body`; returns the URL and the raw request.
    async fn one_shot(status: u16, body: &str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let body = body.to_string();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if raw.len() >= end + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&raw).to_string()
        });
        (url, task)
    }

    fn client(basic_auth: bool) -> OAuthClient {
        OAuthClient {
            provider: "p".into(),
            client_id: "cid".into(),
            client_secret: "s3cret&x".into(),
            basic_auth,
        }
    }

    #[tokio::test]
    async fn an_error_in_a_200_answer_is_a_refusal() {
        let (url, task) = one_shot(
            200,
            r#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired.","error_uri":"https://docs.github.com/"}"#,
        )
        .await;
        let err = client(false)
            .token_request(
                &reqwest::Client::new(),
                &url,
                &[("code", "c1")],
                TokenEncoding::Form,
                100,
            )
            .await
            .err()
            .unwrap();
        match err {
            ProviderError::Rejected { error, description, .. } => {
                assert_eq!(error, "bad_verification_code");
                assert_eq!(description.as_deref(), Some("The code passed is incorrect or expired."));
            }
            other => panic!("{other:?}"),
        }
        let request = task.await.unwrap();
        assert!(
            request.to_ascii_lowercase().contains("accept: application/json"),
            "{request}"
        );
        assert!(
            request.ends_with("code=c1&client_id=cid&client_secret=s3cret%26x"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn json_bodies_basic_auth_and_a_successful_answer() {
        let (url, task) = one_shot(
            200,
            r#"{"access_token":"at","token_type":"Bearer","expires_in":"3600","refresh_token":"rt","scope":"a b","id":"https://x/id/1"}"#,
        )
        .await;
        let answer = client(true)
            .token_request(
                &reqwest::Client::new(),
                &url,
                &[("grant_type", "refresh_token")],
                TokenEncoding::Json,
                100,
            )
            .await
            .unwrap();
        assert_eq!(answer.tokens.access_token, "at");
        assert_eq!(answer.tokens.refresh_token.as_deref(), Some("rt"));
        assert_eq!(answer.tokens.expires_at, Some(3700));
        assert_eq!(answer.tokens.scope.as_deref(), Some("a b"));
        assert_eq!(answer.fields["id"], "https://x/id/1");
        let request = task.await.unwrap();
        let lower = request.to_ascii_lowercase();
        assert!(lower.contains("content-type: application/json"), "{request}");
        // Basic base64("cid:s3cret%26x")
        assert!(request.contains("Basic Y2lkOnMzY3JldCUyNng="), "{request}");
        assert!(request.ends_with(r#"{"grant_type":"refresh_token"}"#), "{request}");
    }

    #[tokio::test]
    async fn http_errors_without_an_oauth_error_and_unavailable_providers() {
        let (url, _task) = one_shot(400, r#"{"error":"invalid_grant","error_description":"expired"}"#).await;
        let err = client(false)
            .token_request(&reqwest::Client::new(), &url, &[], TokenEncoding::Form, 0)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, ProviderError::Rejected { ref error, .. } if error == "invalid_grant"),
            "{err:?}"
        );
        let (url, _task) = one_shot(503, r#"{"error":"temporarily_unavailable"}"#).await;
        let err = client(false)
            .token_request(&reqwest::Client::new(), &url, &[], TokenEncoding::Form, 0)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, ProviderError::Unreachable { .. }), "{err:?}");
        let (url, _task) = one_shot(401, "<html>no</html>").await;
        let err = client(false)
            .token_request(&reqwest::Client::new(), &url, &[], TokenEncoding::Form, 0)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, ProviderError::Invalid { .. }), "{err:?}");
        let (url, _task) = one_shot(200, r#"{"token_type":"bearer"}"#).await;
        let err = client(false)
            .token_request(&reqwest::Client::new(), &url, &[], TokenEncoding::Form, 0)
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("access_token"), "{err}");
    }

    #[test]
    fn token_fields_are_read_leniently_but_checked() {
        let fields = |v: Value| v.as_object().cloned().unwrap();
        let t = tokens_from_fields(
            &fields(json!({"access_token": "a", "token_type": "bearer", "scope": ""})),
            5,
        )
        .unwrap();
        assert_eq!((t.expires_at, t.refresh_token, t.obtained_at), (None, None, 5));
        let t = tokens_from_fields(
            &fields(json!({"access_token": "a", "expires_in": 28800, "refresh_token": "r"})),
            5,
        )
        .unwrap();
        assert_eq!(t.expires_at, Some(28805));
        assert!(tokens_from_fields(&fields(json!({"access_token": "a", "token_type": "mac"})), 0).is_err());
        assert!(tokens_from_fields(&fields(json!({"access_token": "a", "expires_in": "soon"})), 0).is_err());
        assert!(tokens_from_fields(&fields(json!({"access_token": ""})), 0).is_err());
        let kept = keep_refresh_token(t.clone(), "old");
        assert_eq!(kept.refresh_token.as_deref(), Some("r"));
        let mut none = t;
        none.refresh_token = None;
        assert_eq!(keep_refresh_token(none, "old").refresh_token.as_deref(), Some("old"));
    }

    #[test]
    fn a_response_iss_must_name_the_authorization_endpoint_origin() {
        let auth = Url::parse("https://github.com/login/oauth/authorize").unwrap();
        assert!(check_response_issuer("p", &auth, None).is_ok());
        assert!(check_response_issuer("p", &auth, Some("https://github.com")).is_ok());
        assert!(check_response_issuer("p", &auth, Some("https://github.com/")).is_ok());
        assert!(check_response_issuer("p", &auth, Some("https://evil.example")).is_err());
    }

    #[test]
    fn endpoints_must_be_http_urls_and_remote_text_is_clipped() {
        assert!(endpoint_url("p", "token_url", "https://x.example/t").is_ok());
        assert!(endpoint_url("p", "token_url", "ftp://x.example/t").is_err());
        assert!(endpoint_url("p", "token_url", "/relative").is_err());
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("ab", 3), "ab");
    }
}
