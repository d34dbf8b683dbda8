//! OAuth clients: static ones from the MXCP config (`auth.clients`) and dynamically registered
//! ones from the store, looked up the same way; and how a client authenticates at the token
//! endpoint (`client_secret_basic`, `client_secret_post`, or `none` for public clients).
//! Secrets are kept only as SHA-256 hashes and compared in constant time.

use super::error::{ErrorCode, OAuthError};
use super::metadata_document::MetadataDocuments;
use crate::config::limits::DynamicClients;
use crate::config::mxcp_user::StaticClientConfig;
use crate::store::{Store, StoreError, Table};
use crate::support::token_hash;
use base64::{engine::general_purpose::STANDARD, Engine};
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use subtle::ConstantTimeEq;

pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub use crate::config::limits::DEFAULT_SCOPE;

/// Where a client's description comes from, and so how far a person may trust its name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// From the MXCP config (`auth.clients`): named by the administrator.
    Static,
    /// Registered itself (RFC 7591): its name is its own claim. Stored records without a kind
    /// are these.
    #[default]
    Dynamic,
    /// A Client ID Metadata Document: the client id is an https URL whose host vouches for the
    /// document; the name in it is still the client's own claim.
    MetadataDocument,
}

/// A registered client, as stored and as returned by registration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    /// Scopes this client may be granted.
    pub scopes: Vec<String>,
    pub client_id_issued_at: u64,
    /// Other registered metadata (client_uri, logo_uri, software_id, …), echoed back.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Set by [`ClientRegistry::get`] from where the client was found.
    #[serde(default)]
    pub kind: ClientKind,
}

// === impl ClientRecord ===

impl ClientRecord {
    pub fn is_confidential(&self) -> bool {
        self.client_secret_hash.is_some()
    }

    pub fn may_use_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// The name to show a person: the registered name, else the client id.
    pub fn display_name(&self) -> &str {
        self.client_name.as_deref().unwrap_or(&self.client_id)
    }

    fn from_static(config: &StaticClientConfig) -> Self {
        let grant_types = if config.grant_types.is_empty() {
            vec![GRANT_AUTHORIZATION_CODE.to_string()]
        } else {
            config.grant_types.clone()
        };
        let scopes = if config.scopes.is_empty() {
            vec![DEFAULT_SCOPE.to_string()]
        } else {
            config.scopes.clone()
        };
        let secret = config.client_secret.as_ref().filter(|s| !s.is_empty());
        Self {
            client_id: config.client_id.clone(),
            client_secret_hash: secret.map(|s| token_hash(s.expose())),
            client_name: Some(config.name.clone()),
            redirect_uris: config.redirect_uris.clone(),
            grant_types,
            response_types: vec!["code".into()],
            token_endpoint_auth_method: if secret.is_some() {
                "client_secret_basic"
            } else {
                "none"
            }
            .into(),
            scopes,
            client_id_issued_at: 0,
            extra: Default::default(),
            kind: ClientKind::Static,
        }
    }
}

/// How often a registered client's expiry is pushed back when it is used: at most once a day
/// (more often only with an idle lifetime under two days).
const RENEW_EVERY_SECS: u64 = 86_400;

/// A registered client as stored: the record, and when its expiry was last pushed back.
#[derive(Serialize, Deserialize)]
struct StoredClient {
    #[serde(flatten)]
    record: ClientRecord,
    #[serde(default)]
    renewed_at: u64,
}

/// Looks up clients: static first, then registered ones, then metadata documents. Registered
/// clients are bounded in number (`dynamic_clients.max_clients`) and removed when unused for
/// `dynamic_clients.idle_ttl` (each use renews them, at most once a day).
pub struct ClientRegistry {
    statics: HashMap<String, ClientRecord>,
    store: Store,
    documents: MetadataDocuments,
    max_registered: u64,
    idle_ttl: u64,
}

// === impl ClientRegistry ===

impl ClientRegistry {
    pub fn new(
        statics: &[StaticClientConfig],
        store: Store,
        documents: MetadataDocuments,
        dynamic: &DynamicClients,
    ) -> Self {
        Self {
            statics: statics
                .iter()
                .map(|c| (c.client_id.clone(), ClientRecord::from_static(c)))
                .collect(),
            store,
            documents,
            max_registered: dynamic.max_clients,
            idle_ttl: dynamic.idle_ttl.as_secs(),
        }
    }

    pub fn documents_enabled(&self) -> bool {
        self.documents.enabled()
    }

    /// The client, or `None` when no such client exists. A metadata document that cannot be
    /// used is an error that says why.
    pub async fn get(&self, client_id: &str) -> Result<Option<ClientRecord>, OAuthError> {
        if let Some(c) = self.statics.get(client_id) {
            return Ok(Some(c.clone()));
        }
        if self.documents.is_document_url(client_id) {
            let document = self.documents.client(client_id).await?;
            return Ok(Some(ClientRecord {
                kind: ClientKind::MetadataDocument,
                ..document
            }));
        }
        let Some(stored) = self.store.get::<StoredClient>(Table::Clients, client_id).await? else {
            return Ok(None);
        };
        let now = crate::support::now();
        if now.saturating_sub(stored.renewed_at) >= RENEW_EVERY_SECS.min(self.idle_ttl / 2) {
            if let Err(e) = self.store_client(&stored.record, now).await {
                tracing::warn!(error = %e, client_id, "could not renew a registered client");
            }
        }
        Ok(Some(ClientRecord {
            kind: ClientKind::Dynamic,
            ..stored.record
        }))
    }

    /// Stores a newly registered client, unless as many as allowed are stored already.
    pub async fn register(&self, record: &ClientRecord) -> Result<(), OAuthError> {
        let registered = self.store.kv().stored_entries(Table::Clients).await?;
        if registered >= self.max_registered {
            tracing::warn!(
                registered,
                limit = self.max_registered,
                "registration refused: dynamic_clients.max_clients reached"
            );
            return Err(OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "this server holds as many registered clients as it may; try again later",
            ));
        }
        Ok(self.store_client(record, crate::support::now()).await?)
    }

    async fn store_client(&self, record: &ClientRecord, now: u64) -> Result<(), StoreError> {
        let stored = StoredClient {
            record: record.clone(),
            renewed_at: now,
        };
        self.store
            .put(Table::Clients, &record.client_id, &stored, now + self.idle_ttl)
            .await
    }

    /// Authenticates the client of a token request (RFC 6749 §2.3.1).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        body_client_id: Option<&str>,
        body_secret: Option<&str>,
    ) -> Result<ClientRecord, OAuthError> {
        let basic = basic_credentials(headers)?;
        if basic.is_some() && body_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not two",
            ));
        }
        let (client_id, secret) = match (&basic, body_client_id) {
            (Some((id, _)), Some(body_id)) if id != body_id => {
                return Err(OAuthError::invalid_request(
                    "client_id differs from the authenticated client",
                ))
            }
            (Some((id, secret)), _) => (id.as_str(), Some(secret.as_str())),
            (None, Some(id)) => (id, body_secret),
            (None, None) => return Err(invalid_client("client authentication is missing (no client_id)")),
        };
        let client = self
            .get(client_id)
            .await?
            .ok_or_else(|| invalid_client("unknown client"))?;
        match (&client.client_secret_hash, secret) {
            (Some(expected), Some(given)) if bool::from(token_hash(given).as_bytes().ct_eq(expected.as_bytes())) => {
                Ok(client)
            }
            (Some(_), _) => Err(invalid_client("client authentication failed")),
            (None, None) => Ok(client),
            (None, Some(_)) => Err(invalid_client("this is a public client; it has no secret")),
        }
    }
}

/// The client id a token or revocation request names (Basic credentials, else the form), before
/// it is authenticated — what per-client rate limits count.
pub fn presented_client_id(headers: &HeaderMap, body_client_id: Option<&str>) -> Option<String> {
    match basic_credentials(headers) {
        Ok(Some((id, _))) => Some(id),
        _ => body_client_id.map(str::to_string),
    }
}

fn invalid_client(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, description)
}

/// `Authorization: Basic` with form-urlencoded id and secret.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || invalid_client("malformed Basic credentials");
    let text = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = text.split_once(' ') else {
        return Err(malformed());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid_client("unsupported client authentication scheme"));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let unescape = |s: &str| {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::store::{cipher::RecordCipher, RedbStore};
    use std::sync::Arc;

    fn registry(dir: &tempfile::TempDir) -> ClientRegistry {
        let store = Store::new(
            Arc::new(RedbStore::open(&dir.path().join("s.redb")).unwrap()),
            RecordCipher::from_secret(b"k"),
        );
        let statics = vec![
            StaticClientConfig {
                client_id: "confidential".into(),
                name: "My App".into(),
                client_secret: Some(Secret::new("s3cr:et")),
                redirect_uris: vec!["https://app.example/cb".into()],
                grant_types: vec![],
                scopes: vec![],
            },
            StaticClientConfig {
                client_id: "public".into(),
                name: "CLI".into(),
                client_secret: None,
                redirect_uris: vec![],
                grant_types: vec!["authorization_code".into(), "refresh_token".into()],
                scopes: vec!["mxcp:access".into(), "mxcp:admin".into()],
            },
        ];
        let documents = MetadataDocuments::new(
            crate::config::ClientDocumentSettings {
                enabled: true,
                allow_private_addresses: false,
            },
            vec![],
        );
        ClientRegistry::new(
            &statics,
            store,
            documents,
            &crate::config::limits::DynamicClientsFile::default()
                .validate(&[])
                .unwrap(),
        )
    }

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let mut h = HeaderMap::new();
        let value = format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(id), enc(secret))));
        h.insert("authorization", value.parse().unwrap());
        h
    }

    fn public_record(client_id: &str) -> ClientRecord {
        ClientRecord {
            client_id: client_id.into(),
            client_secret_hash: None,
            client_name: None,
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            grant_types: vec![GRANT_AUTHORIZATION_CODE.into()],
            response_types: vec!["code".into()],
            token_endpoint_auth_method: "none".into(),
            scopes: vec![DEFAULT_SCOPE.into()],
            client_id_issued_at: 0,
            extra: Default::default(),
            kind: ClientKind::Dynamic,
        }
    }

    #[tokio::test]
    async fn unused_registered_clients_expire_and_use_renews_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = registry(&dir);
        r.idle_ttl = 4; // renewed when used 2 s (half of it) after the last renewal
        r.register(&public_record("used")).await.unwrap();
        r.register(&public_record("unused")).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        assert!(r.get("used").await.unwrap().is_some(), "a use renews it");
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        assert!(r.get("unused").await.unwrap().is_none(), "unused for idle_ttl: gone");
        assert!(
            r.get("used").await.unwrap().is_some(),
            "renewed one idle_ttl after its use"
        );
    }

    #[tokio::test]
    async fn static_client_defaults_follow_the_mxcp_docs() {
        let dir = tempfile::tempdir().unwrap();
        let c = registry(&dir).get("confidential").await.unwrap().unwrap();
        assert_eq!(c.grant_types, vec!["authorization_code"]);
        assert_eq!(c.scopes, vec!["mxcp:access"]);
        assert!(c.is_confidential());
        assert_eq!(c.display_name(), "My App");
        assert_eq!(c.kind, ClientKind::Static);
    }

    #[tokio::test]
    async fn a_stored_record_without_a_kind_reads_as_self_registered() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(&dir);
        let old = serde_json::json!({
            "client_id": "mxc_old", "client_name": "Claude Desktop", "redirect_uris": ["http://127.0.0.1/cb"],
            "grant_types": ["authorization_code"], "response_types": ["code"],
            "token_endpoint_auth_method": "none", "scopes": ["mxcp:access"], "client_id_issued_at": 1,
        });
        r.store.put(Table::Clients, "mxc_old", &old, 0).await.unwrap();
        let c = r.get("mxc_old").await.unwrap().unwrap();
        assert_eq!(c.kind, ClientKind::Dynamic);
    }

    #[tokio::test]
    async fn confidential_client_authenticates_by_basic_or_post_only_with_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(&dir);
        assert!(r
            .authenticate(&basic("confidential", "s3cr:et"), None, None)
            .await
            .is_ok());
        assert!(r
            .authenticate(&HeaderMap::new(), Some("confidential"), Some("s3cr:et"))
            .await
            .is_ok());
        let wrong = r
            .authenticate(&basic("confidential", "nope"), None, None)
            .await
            .unwrap_err();
        assert_eq!(wrong.code, ErrorCode::InvalidClient);
        let missing = r
            .authenticate(&HeaderMap::new(), Some("confidential"), None)
            .await
            .unwrap_err();
        assert_eq!(missing.code, ErrorCode::InvalidClient);
        let mismatch = r
            .authenticate(&basic("confidential", "s3cr:et"), Some("public"), None)
            .await
            .unwrap_err();
        assert_eq!(mismatch.code, ErrorCode::InvalidRequest);
    }

    #[tokio::test]
    async fn public_client_needs_only_its_id_and_unknown_clients_fail() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(&dir);
        assert!(r.authenticate(&HeaderMap::new(), Some("public"), None).await.is_ok());
        assert_eq!(
            r.authenticate(&HeaderMap::new(), Some("public"), Some("x"))
                .await
                .unwrap_err()
                .code,
            ErrorCode::InvalidClient
        );
        assert_eq!(
            r.authenticate(&HeaderMap::new(), Some("nobody"), None)
                .await
                .unwrap_err()
                .code,
            ErrorCode::InvalidClient
        );
    }
}
