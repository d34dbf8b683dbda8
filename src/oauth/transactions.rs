//! The records of one authorization, in the order they exist: the validated request, waiting
//! for consent; the login at the provider; the authorization code. Each is single use and
//! short-lived, and is keyed by a hash when its key travels in URLs.

use super::error::OAuthError;
use super::response;
use bytes::Bytes;
use http::Response;
use serde::{Deserialize, Serialize};
use url::Url;

/// A validated `/authorize` request of an MCP client.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    /// The public URL this request came to (the issuer the client is told, RFC 9207).
    #[serde(default)]
    pub issuer: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// The client sent `redirect_uri` (rather than relying on its only registered one); then the
    /// token request must repeat it (RFC 6749 §4.1.3).
    #[serde(default)]
    pub redirect_uri_sent: bool,
    pub code_challenge: String,
    #[serde(default)]
    pub state: Option<String>,
    pub scope: Vec<String>,
    pub resource: String,
    /// OpenID Connect `login_hint` from the client, forwarded to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_hint: Option<String>,
}

// === impl AuthorizationRequest ===

impl AuthorizationRequest {
    /// Redirects back to the client with `params`, plus its `state` and our `iss` (RFC 9207).
    pub fn redirect_to_client(&self, params: &[(&str, &str)]) -> Response<Bytes> {
        let Ok(mut url) = Url::parse(&self.redirect_uri) else {
            return response::html(
                http::StatusCode::BAD_REQUEST,
                super::pages::error("Invalid redirect URI", "The application's redirect URI is not a URL."),
            );
        };
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in params {
                query.append_pair(name, value);
            }
            if let Some(state) = &self.state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", &self.issuer);
        }
        response::redirect(url.as_str())
    }

    /// Redirects back to the client with an OAuth error.
    pub fn redirect_error(&self, error: &OAuthError) -> Response<Bytes> {
        self.redirect_to_client(&[
            ("error", error.code.as_str()),
            ("error_description", &error.description),
        ])
    }
}

/// An authorization request shown on the consent page, keyed by a random transaction id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConsentTransaction {
    pub request: AuthorizationRequest,
    /// Hash of the CSRF token the page carries (the browser holds it in a cookie too).
    pub csrf_hash: String,
}

/// A login under way at the provider, keyed by the hash of mxgate's `state`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoginState {
    /// For an MCP client: its request. For a person signing in to the gateway itself: a request
    /// of the browser client (see `browser_login`).
    pub request: AuthorizationRequest,
    /// The provider (its name) the person signs in with.
    #[serde(default)]
    pub provider: String,
    /// Set for a browser sign-in: where to send the person afterwards (a local path).
    #[serde(default)]
    pub return_to: Option<String>,
    /// mxgate's own PKCE verifier towards the provider.
    pub pkce_verifier: String,
    pub nonce: String,
    /// Hash of the value in the browser's login cookie: the callback must come to the same browser.
    pub browser_binding_hash: String,
    /// How the consent step let this login through (see `consent_memory`).
    #[serde(default)]
    pub consent: LoginConsent,
}

/// How a login got past the consent step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoginConsent {
    /// There was none: a person signing in to the gateway itself (and logins stored before
    /// this field existed).
    #[default]
    NotAsked,
    /// The person approved on the consent page; the approval is remembered for whoever signs in.
    Approved,
    /// The page was skipped for an approval this browser remembered; only the person who gave
    /// it (this keyed hash of their user key) may finish the login.
    Remembered { approver_hash: String },
}

/// An authorization code, by hash. Redeeming replaces it with `Redeemed` (which keeps the
/// request, to tell a replay by the code's real holder from a stranger's guess), so a second use
/// is recognised.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CodeRecord {
    Issued {
        request: AuthorizationRequest,
        session_id: String,
    },
    Redeemed {
        /// `None` for codes spent by an earlier version, which did not keep it.
        #[serde(default)]
        request: Option<AuthorizationRequest>,
        session_id: String,
    },
}
