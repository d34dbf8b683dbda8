//! Signing key administration — what `mxgate keys list|rotate` asks a running mxgate over its
//! admin socket. Handlers work on plain values; the key ring itself is `identity`'s.

use crate::identity::signing_key::KeyError;
use crate::identity::signing_keys::SigningKeys;
use http::StatusCode;
use serde_json::json;
use std::sync::Arc;

pub const KEYS_PATH: &str = "/keys";
pub const ROTATE_PATH: &str = "/keys/rotate";

pub struct KeyAdmin {
    keys: Arc<SigningKeys>,
}

// === impl KeyAdmin ===

impl KeyAdmin {
    pub fn new(keys: Arc<SigningKeys>) -> Self {
        Self { keys }
    }

    /// Whether `path` is one of the key requests.
    pub fn owns(path: &str) -> bool {
        path == KEYS_PATH || path.starts_with("/keys/")
    }

    /// Answers `GET /keys` or `POST /keys/rotate?now=true|false`.
    pub async fn handle(&self, method: &http::Method, path: &str, query: &str) -> (StatusCode, serde_json::Value) {
        let result = match (method.as_str(), path) {
            ("GET", KEYS_PATH) => self.keys.list().await.map(|keys| json!({ "keys": keys })),
            ("POST", ROTATE_PATH) => match parse_immediate(query) {
                Ok(immediate) => self
                    .keys
                    .rotate(immediate)
                    .await
                    .map(|added| json!({ "kid": added.kid, "activate_at": added.activate_at })),
                Err(e) => return (StatusCode::BAD_REQUEST, json!({ "error": e })),
            },
            _ => return (StatusCode::NOT_FOUND, json!({"error": "unknown admin request"})),
        };
        match result {
            Ok(body) => (StatusCode::OK, body),
            Err(e) => (status_of(&e), json!({ "error": e.to_string() })),
        }
    }
}

/// Refusals (HS256, a rotation under way, a full ring) are the caller's to resolve: 409.
fn status_of(error: &KeyError) -> StatusCode {
    match error {
        KeyError::NotRotatable(_) | KeyError::Rotate(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `now=true|false` (default false).
pub fn parse_immediate(query: &str) -> Result<bool, String> {
    let mut immediate = false;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match (key.as_ref(), value.as_ref()) {
            ("now", "true") => immediate = true,
            ("now", "false") => immediate = false,
            ("now", other) => return Err(format!("`now` is true or false, not `{other}`")),
            (other, _) => return Err(format!("unknown parameter `{other}` (now)")),
        }
    }
    Ok(immediate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::signing_key::AssertionSigner;

    #[test]
    fn the_rotation_query_is_checked() {
        assert_eq!(parse_immediate(""), Ok(false));
        assert_eq!(parse_immediate("now=true"), Ok(true));
        assert!(parse_immediate("now=yes").unwrap_err().contains("true or false"));
        assert!(parse_immediate("force=1").unwrap_err().contains("unknown parameter"));
    }

    #[tokio::test]
    async fn an_hs256_key_is_not_rotated_and_says_why() {
        let keys = SigningKeys::fixed(
            AssertionSigner::hs256(&[1; 32]).unwrap(),
            "HS256: change the secret".into(),
            None,
        );
        let admin = KeyAdmin::new(Arc::new(keys));
        let (status, body) = admin.handle(&http::Method::POST, ROTATE_PATH, "").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(body["error"].as_str().unwrap().contains("HS256"));
        let (status, body) = admin.handle(&http::Method::GET, KEYS_PATH, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["keys"][0]["state"], "current");
    }
}
