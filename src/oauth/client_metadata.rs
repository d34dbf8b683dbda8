//! Client metadata (RFC 7591 §2), as a client registers it or publishes it in a Client ID
//! Metadata Document: checked once here, for both. Unknown scopes are dropped (RFC 7591 §3.2.1
//! lets the server substitute); everything else that is wrong is an `invalid_client_metadata`
//! or `invalid_redirect_uri` error.

use super::clients::{ClientKind, ClientRecord, DEFAULT_SCOPE, GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN};
use super::error::{ErrorCode, OAuthError};
use super::redirect_uri::validate_for_registration;
use serde::Deserialize;
use serde_json::{Map, Value};

const MAX_REDIRECT_URIS: usize = 20;
const MAX_URI_LEN: usize = 2000;
const MAX_NAME_LEN: usize = 200;
/// Metadata kept and echoed back, when they are short strings or lists of them.
const ECHOED: [&str; 7] = [
    "client_uri",
    "logo_uri",
    "tos_uri",
    "policy_uri",
    "contacts",
    "software_id",
    "software_version",
];

#[derive(Deserialize)]
pub struct ClientMetadata {
    #[serde(default)]
    pub redirect_uris: Option<Vec<String>>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub response_types: Option<Vec<String>>,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

pub fn metadata_error(description: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

// === impl ClientMetadata ===

impl ClientMetadata {
    /// Checks the metadata and makes the client record (without id, secret or issue time).
    /// `default_auth_method` applies when the metadata names none; `auth_methods` are allowed.
    pub fn into_record(
        self,
        supported_scopes: &[String],
        default_auth_method: &str,
        auth_methods: &[&str],
    ) -> Result<ClientRecord, OAuthError> {
        let redirect_uris = self.redirect_uris.unwrap_or_default();
        if redirect_uris.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                "redirect_uris is required",
            ));
        }
        if redirect_uris.len() > MAX_REDIRECT_URIS || redirect_uris.iter().any(|u| u.len() > MAX_URI_LEN) {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                "too many or too long redirect_uris",
            ));
        }
        for uri in &redirect_uris {
            validate_for_registration(uri).map_err(|e| OAuthError::new(ErrorCode::InvalidRedirectUri, e))?;
        }
        let auth_method = self
            .token_endpoint_auth_method
            .unwrap_or_else(|| default_auth_method.to_string());
        if !auth_methods.contains(&auth_method.as_str()) {
            return Err(metadata_error(format!(
                "token_endpoint_auth_method `{auth_method}` is not supported ({})",
                auth_methods.join(", ")
            )));
        }
        let grant_types = self
            .grant_types
            .unwrap_or_else(|| vec![GRANT_AUTHORIZATION_CODE.into()]);
        if let Some(g) = grant_types
            .iter()
            .find(|g| *g != GRANT_AUTHORIZATION_CODE && *g != GRANT_REFRESH_TOKEN)
        {
            return Err(metadata_error(format!("grant type `{g}` is not supported")));
        }
        if !grant_types.iter().any(|g| g == GRANT_AUTHORIZATION_CODE) {
            return Err(metadata_error("grant_types must include authorization_code"));
        }
        let response_types = self.response_types.unwrap_or_else(|| vec!["code".into()]);
        if response_types != ["code"] {
            return Err(metadata_error("response_types must be [\"code\"]"));
        }
        if self.client_name.as_ref().is_some_and(|n| n.len() > MAX_NAME_LEN) {
            return Err(metadata_error("client_name is too long"));
        }
        Ok(ClientRecord {
            client_id: String::new(),
            client_secret_hash: None,
            client_name: self.client_name,
            redirect_uris,
            grant_types,
            response_types,
            token_endpoint_auth_method: auth_method,
            scopes: registrable_scopes(supported_scopes, self.scope.as_deref()),
            client_id_issued_at: 0,
            extra: echoed_metadata(self.other),
            kind: ClientKind::Dynamic,
        })
    }
}

/// Requested scopes that this server knows; the default when none remain, all when none asked.
fn registrable_scopes(supported: &[String], requested: Option<&str>) -> Vec<String> {
    let known: Vec<String> = requested
        .unwrap_or_default()
        .split_whitespace()
        .filter(|s| supported.iter().any(|k| k == s))
        .map(str::to_string)
        .collect();
    match (known.is_empty(), requested.is_some()) {
        (false, _) => known,
        (true, true) => vec![DEFAULT_SCOPE.to_string()],
        (true, false) => supported.to_vec(),
    }
}

fn echoed_metadata(other: Map<String, Value>) -> Map<String, Value> {
    let short = |v: &Value| matches!(v, Value::String(s) if s.len() <= MAX_URI_LEN);
    other
        .into_iter()
        .filter(|(k, v)| {
            ECHOED.contains(&k.as_str())
                && (short(v) || matches!(v, Value::Array(items) if items.len() <= 10 && items.iter().all(short)))
        })
        .collect()
}
