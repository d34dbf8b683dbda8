//! Client metadata (RFC 7591 §2), as a client registers it or publishes it in a Client ID
//! Metadata Document: checked once here, for both. Unknown scopes are dropped (RFC 7591 §3.2.1
//! lets the server substitute); everything else that is wrong is an `invalid_client_metadata`
//! or `invalid_redirect_uri` error.
//!
//! Every field that is stored has a size limit, and so has the whole record: a refusal names
//! the field and the limit.

use super::clients::{ClientKind, ClientRecord, DEFAULT_SCOPE, GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN};
use super::error::{ErrorCode, OAuthError};
use super::redirect_uri::validate_for_registration;
use serde::Deserialize;
use serde_json::{Map, Value};

const MAX_REDIRECT_URIS: usize = 10;
const MAX_REDIRECT_URI_BYTES: usize = 1024;
const MAX_CLIENT_NAME_BYTES: usize = 200;
const MAX_SCOPE_BYTES: usize = 1024;
/// Each echoed string (a `logo_uri`, one of the `contacts`, …).
const MAX_ECHOED_STRING_BYTES: usize = 512;
/// Items of an echoed list (`contacts`).
const MAX_ECHOED_LIST_ITEMS: usize = 5;
/// The stored record as JSON, `client_id` and secret hash included.
pub const MAX_RECORD_BYTES: usize = 8 * 1024;
/// The longest `client_id` (a metadata document's URL; a registered id is far shorter).
pub const MAX_CLIENT_ID_BYTES: usize = 1024;
/// Room kept in [`MAX_RECORD_BYTES`] for what is added after the check: the `client_id`, the
/// secret hash (`"client_secret_hash":"<64 hex>",`) and the issue time.
const RESERVED_RECORD_BYTES: usize = MAX_CLIENT_ID_BYTES + 128;
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
        if redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                format!("redirect_uris: at most {MAX_REDIRECT_URIS} are allowed"),
            ));
        }
        if redirect_uris.iter().any(|u| u.len() > MAX_REDIRECT_URI_BYTES) {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                format!("redirect_uris: each must be at most {MAX_REDIRECT_URI_BYTES} bytes"),
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
        // Only two values pass the checks below; a repeated one is stored once.
        let mut grant_types: Vec<String> = Vec::new();
        for grant in self
            .grant_types
            .unwrap_or_else(|| vec![GRANT_AUTHORIZATION_CODE.into()])
        {
            if !grant_types.contains(&grant) {
                grant_types.push(grant);
            }
        }
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
        check_len("client_name", self.client_name.as_deref(), MAX_CLIENT_NAME_BYTES)?;
        check_len("scope", self.scope.as_deref(), MAX_SCOPE_BYTES)?;
        let record = ClientRecord {
            client_id: String::new(),
            client_secret_hash: None,
            client_name: self.client_name,
            redirect_uris,
            grant_types,
            response_types,
            token_endpoint_auth_method: auth_method,
            scopes: registrable_scopes(supported_scopes, self.scope.as_deref()),
            client_id_issued_at: 0,
            extra: echoed_metadata(self.other)?,
            kind: ClientKind::Dynamic,
        };
        let size = serde_json::to_vec(&record).map_or(usize::MAX, |json| json.len());
        if size + RESERVED_RECORD_BYTES > MAX_RECORD_BYTES {
            return Err(metadata_error(format!(
                "the client metadata is too large: at most {} bytes of it are kept",
                MAX_RECORD_BYTES - RESERVED_RECORD_BYTES
            )));
        }
        Ok(record)
    }
}

/// Refuses a string field longer than `max` bytes, naming the field and the limit.
fn check_len(field: &str, value: Option<&str>, max: usize) -> Result<(), OAuthError> {
    match value {
        Some(v) if v.len() > max => Err(metadata_error(format!("{field}: at most {max} bytes are allowed"))),
        _ => Ok(()),
    }
}

/// Requested scopes the client may hold; the default when none remain (or all it may hold, when
/// it may not hold the default), all when none asked.
fn registrable_scopes(supported: &[String], requested: Option<&str>) -> Vec<String> {
    let known: Vec<String> = requested
        .unwrap_or_default()
        .split_whitespace()
        .filter(|s| supported.iter().any(|k| k == s))
        .map(str::to_string)
        .collect();
    match (known.is_empty(), requested.is_some()) {
        (false, _) => known,
        // Only scopes this client may not hold were asked for: the default, if it may hold that.
        (true, true) if supported.iter().any(|s| s == DEFAULT_SCOPE) => vec![DEFAULT_SCOPE.to_string()],
        (true, _) => supported.to_vec(),
    }
}

/// The [`ECHOED`] metadata that are strings or lists of strings (others are dropped), each
/// within its limits; a longer one is refused.
fn echoed_metadata(other: Map<String, Value>) -> Result<Map<String, Value>, OAuthError> {
    let mut kept = Map::new();
    for (key, value) in other {
        if !ECHOED.contains(&key.as_str()) {
            continue;
        }
        match &value {
            Value::String(s) => check_len(&key, Some(s), MAX_ECHOED_STRING_BYTES)?,
            Value::Array(items) if items.iter().all(Value::is_string) => {
                if items.len() > MAX_ECHOED_LIST_ITEMS {
                    return Err(metadata_error(format!(
                        "{key}: at most {MAX_ECHOED_LIST_ITEMS} items are allowed"
                    )));
                }
                for item in items {
                    check_len(&key, item.as_str(), MAX_ECHOED_STRING_BYTES)?;
                }
            }
            _ => continue,
        }
        kept.insert(key, value);
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn register(metadata: Value) -> Result<ClientRecord, OAuthError> {
        let metadata: ClientMetadata = serde_json::from_value(metadata).unwrap();
        metadata.into_record(&["mxcp:access".to_string()], "none", &["none"])
    }

    fn uri_of_len(len: usize) -> String {
        let base = "https://app.example/";
        format!("{base}{}", "a".repeat(len - base.len()))
    }

    /// Registers `{redirect_uris: [..], field: value}`; the error's code and description if refused.
    fn refusal(field: &str, value: Value) -> Option<(ErrorCode, String)> {
        let mut metadata = json!({"redirect_uris": ["https://app.example/cb"]});
        metadata[field] = value;
        register(metadata).err().map(|e| (e.code, e.description))
    }

    #[test]
    fn at_most_ten_redirect_uris_of_1024_bytes_each() {
        let uris = |n: usize| json!((0..n).map(|i| format!("https://app.example/cb{i}")).collect::<Vec<_>>());
        assert!(refusal("redirect_uris", uris(MAX_REDIRECT_URIS)).is_none());
        let (code, description) = refusal("redirect_uris", uris(MAX_REDIRECT_URIS + 1)).unwrap();
        assert_eq!(code, ErrorCode::InvalidRedirectUri);
        assert_eq!(description, "redirect_uris: at most 10 are allowed");

        assert!(refusal("redirect_uris", json!([uri_of_len(MAX_REDIRECT_URI_BYTES)])).is_none());
        let (code, description) = refusal("redirect_uris", json!([uri_of_len(MAX_REDIRECT_URI_BYTES + 1)])).unwrap();
        assert_eq!(code, ErrorCode::InvalidRedirectUri);
        assert_eq!(description, "redirect_uris: each must be at most 1024 bytes");
    }

    #[test]
    fn client_name_and_scope_have_limits() {
        for (field, max) in [("client_name", MAX_CLIENT_NAME_BYTES), ("scope", MAX_SCOPE_BYTES)] {
            assert!(refusal(field, json!("a".repeat(max))).is_none(), "{field}");
            let (code, description) = refusal(field, json!("a".repeat(max + 1))).unwrap();
            assert_eq!(code, ErrorCode::InvalidClientMetadata);
            assert_eq!(description, format!("{field}: at most {max} bytes are allowed"));
        }
    }

    #[test]
    fn echoed_metadata_have_limits_on_strings_and_lists() {
        let long = "a".repeat(MAX_ECHOED_STRING_BYTES + 1);
        for field in ECHOED {
            assert!(
                refusal(field, json!("a".repeat(MAX_ECHOED_STRING_BYTES))).is_none(),
                "{field}"
            );
            let (code, description) = refusal(field, json!(long)).unwrap();
            assert_eq!(code, ErrorCode::InvalidClientMetadata);
            assert_eq!(description, format!("{field}: at most 512 bytes are allowed"));
            assert!(
                refusal(field, json!(["a", long])).is_some(),
                "{field}: a long list item"
            );
            assert!(
                refusal(field, json!(vec!["a"; MAX_ECHOED_LIST_ITEMS])).is_none(),
                "{field}"
            );
            let (_, description) = refusal(field, json!(vec!["a"; MAX_ECHOED_LIST_ITEMS + 1])).unwrap();
            assert_eq!(description, format!("{field}: at most 5 items are allowed"));
        }
        // Neither strings nor lists of strings: not kept, as before.
        let record = register(json!({"redirect_uris": ["https://app.example/cb"], "logo_uri": {"a": 1}})).unwrap();
        assert!(record.extra.is_empty());
    }

    #[test]
    fn repeated_grant_types_are_stored_once() {
        let grants = [GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN].repeat(1000);
        let record = register(json!({"redirect_uris": ["https://app.example/cb"], "grant_types": grants})).unwrap();
        assert_eq!(record.grant_types, [GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN]);
    }

    #[test]
    fn the_stored_record_fits_in_8_kib_with_its_id_and_secret() {
        // Each field within its own limit, together too much.
        let uris: Vec<String> = (0..MAX_REDIRECT_URIS)
            .map(|_| uri_of_len(MAX_REDIRECT_URI_BYTES))
            .collect();
        let (code, description) = refusal("redirect_uris", json!(uris)).unwrap();
        assert_eq!(code, ErrorCode::InvalidClientMetadata);
        assert!(description.contains("too large"), "{description}");

        // The largest record accepted still fits once it gets the longest id and a secret hash.
        let mut largest = None;
        for len in 100..=MAX_REDIRECT_URI_BYTES {
            let uris: Vec<String> = (0..MAX_REDIRECT_URIS).map(|_| uri_of_len(len)).collect();
            let metadata = json!({
                "redirect_uris": uris,
                "client_name": "n".repeat(MAX_CLIENT_NAME_BYTES),
                "contacts": vec!["c".repeat(MAX_ECHOED_STRING_BYTES); MAX_ECHOED_LIST_ITEMS],
            });
            match register(metadata) {
                Ok(record) => largest = Some(record),
                Err(_) => break,
            }
        }
        let mut record = largest.unwrap();
        record.client_id = "i".repeat(MAX_CLIENT_ID_BYTES);
        record.client_secret_hash = Some("h".repeat(64));
        record.client_id_issued_at = u64::MAX;
        let size = serde_json::to_vec(&record).unwrap().len();
        assert!(size <= MAX_RECORD_BYTES, "{size}");
        assert!(
            size > MAX_RECORD_BYTES - 100,
            "the search found a record near the limit: {size}"
        );
    }
}
