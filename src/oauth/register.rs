//! Dynamic client registration (RFC 7591): validates the client's metadata, substitutes
//! defaults where it may (unknown scopes are dropped, as §3.2.1 allows), stores the client and
//! answers 201 with what was registered. The secret is shown once and kept only as a hash.

use super::clients::{ClientRecord, DEFAULT_SCOPE, GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN};
use super::error::{ErrorCode, OAuthError};
use super::redirect_uri::validate_for_registration;
use super::{response, AuthorizationServer};
use crate::session::tokens::{new_opaque_token, random_id, token_hash};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};

const MAX_REDIRECT_URIS: usize = 20;
const MAX_URI_LEN: usize = 2000;
const MAX_NAME_LEN: usize = 200;
/// Metadata echoed back as registered, when they are short strings or lists of them.
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
struct RegistrationRequest {
    #[serde(default)]
    redirect_uris: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

fn metadata_error(description: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

impl AuthorizationServer {
    pub(super) async fn register(&self, req: Request<Bytes>) -> Result<Response<Bytes>, OAuthError> {
        let request: RegistrationRequest = serde_json::from_slice(req.body())
            .map_err(|e| metadata_error(format!("the body must be a JSON object of client metadata: {e}")))?;

        let redirect_uris = request.redirect_uris.unwrap_or_default();
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

        let auth_method = request
            .token_endpoint_auth_method
            .unwrap_or_else(|| "client_secret_basic".into());
        if !matches!(
            auth_method.as_str(),
            "none" | "client_secret_basic" | "client_secret_post"
        ) {
            return Err(metadata_error(format!(
                "token_endpoint_auth_method `{auth_method}` is not supported (none, client_secret_basic, client_secret_post)"
            )));
        }
        let grant_types = request
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
        let response_types = request.response_types.unwrap_or_else(|| vec!["code".into()]);
        if response_types != ["code"] {
            return Err(metadata_error("response_types must be [\"code\"]"));
        }
        if request.client_name.as_ref().is_some_and(|n| n.len() > MAX_NAME_LEN) {
            return Err(metadata_error("client_name is too long"));
        }

        let scopes = self.registrable_scopes(request.scope.as_deref());
        let secret = (auth_method != "none").then(|| new_opaque_token("mxs_"));
        let record = ClientRecord {
            client_id: format!("mxc_{}", random_id()),
            client_secret_hash: secret.as_deref().map(token_hash),
            client_name: request.client_name,
            redirect_uris,
            grant_types,
            response_types,
            token_endpoint_auth_method: auth_method,
            scopes,
            client_id_issued_at: crate::store::now(),
            extra: echoed_metadata(request.other),
        };
        self.clients.register(&record).await?;
        tracing::info!(client_id = %record.client_id, name = record.client_name.as_deref().unwrap_or(""), "client registered");

        let mut body = serde_json::json!({
            "client_id": record.client_id,
            "client_id_issued_at": record.client_id_issued_at,
            "redirect_uris": record.redirect_uris,
            "grant_types": record.grant_types,
            "response_types": record.response_types,
            "token_endpoint_auth_method": record.token_endpoint_auth_method,
            "scope": record.scopes.join(" "),
        });
        if let Value::Object(map) = &mut body {
            if let Some(name) = &record.client_name {
                map.insert("client_name".into(), name.clone().into());
            }
            if let Some(secret) = secret {
                map.insert("client_secret".into(), secret.into());
                map.insert("client_secret_expires_at".into(), 0.into());
            }
            map.extend(record.extra);
        }
        Ok(response::json(StatusCode::CREATED, &body))
    }

    /// Requested scopes that this server knows; the default when none remain.
    fn registrable_scopes(&self, requested: Option<&str>) -> Vec<String> {
        let known: Vec<String> = requested
            .unwrap_or_default()
            .split_whitespace()
            .filter(|s| self.scopes.iter().any(|k| k == s))
            .map(str::to_string)
            .collect();
        if !known.is_empty() {
            return known;
        }
        if requested.is_some() {
            vec![DEFAULT_SCOPE.to_string()]
        } else {
            self.scopes.clone()
        }
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
