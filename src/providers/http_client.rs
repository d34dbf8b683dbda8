//! The HTTP client mxgate uses to talk to identity providers: no redirects followed (a token
//! or userinfo endpoint that redirects is a misconfiguration or an attack), bounded timeouts.

use std::time::Duration;

pub const USER_AGENT: &str = concat!("mxgate/", env!("CARGO_PKG_VERSION"));

pub fn provider_http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .user_agent(USER_AGENT)
        .build()
}

/// Responses larger than this are refused (discovery documents, JWKS, userinfo).
const MAX_JSON_BYTES: usize = 1024 * 1024;

/// GETs a JSON document from a provider (optionally with a bearer token), with a clear error
/// naming the provider and what was asked for.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    provider: &str,
    what: &'static str,
    url: &str,
    bearer: Option<&str>,
) -> Result<T, super::ProviderError> {
    let unreachable = |message: String| super::ProviderError::Unreachable {
        provider: provider.to_string(),
        what,
        message,
    };
    let mut request = http.get(url).header(reqwest::header::ACCEPT, "application/json");
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| unreachable(super::oauth_client::error_chain(&e)))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| unreachable(super::oauth_client::error_chain(&e)))?;
    if !status.is_success() {
        return Err(unreachable(format!("{url} answered {status}")));
    }
    if body.len() > MAX_JSON_BYTES {
        return Err(unreachable(format!("{url} answered more than {MAX_JSON_BYTES} bytes")));
    }
    serde_json::from_slice(&body).map_err(|e| super::ProviderError::Invalid {
        provider: provider.to_string(),
        message: format!("{what} at {url} is not the expected JSON: {e}"),
    })
}
