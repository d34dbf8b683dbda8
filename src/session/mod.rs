//! Sessions: one per completed login of a user for a client. A session holds the user, the
//! provider's tokens (sealed at rest), what the client was granted, and when it ends; access
//! and refresh tokens point at it. Revoking a session ends every token issued for it.
//!
//! [`lifecycle::Sessions`] is the one owner of a session's life — create, issue tokens, renew
//! the provider's tokens, rotate refresh tokens, revoke — and the only writer of the
//! `sessions`, `tokens` and `user_sessions` tables. [`bearer`] is the hot-path check of a
//! bearer token (reads only), [`stateless`] the self-contained access tokens of stateless mode.

pub mod bearer;
pub mod lifecycle;
pub mod provider_refresh;
pub mod replica_events;
pub mod rotation;
pub mod stateless;
#[cfg(test)]
pub(crate) mod test_support;
pub mod tokens;

pub use lifecycle::Sessions;

use crate::audit::{AuditEvent, AuditRecord};
use crate::identity::assertion::{AssertionMinter, AssertionSlot, AssertionSubject};
use crate::identity::signing_key::KeyError;
use crate::identity::user::{ProviderTokens, UserIdentity};
use crate::store::{Store, StoreError, Table};
use http::HeaderValue;
use serde::{Deserialize, Serialize};
use std::sync::RwLock;

/// A session as stored (sealed) in the `sessions` table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub user: UserIdentity,
    pub provider_tokens: ProviderTokens,
    pub client_id: String,
    pub scope: Vec<String>,
    pub resource: String,
    pub created_at: u64,
    /// Absolute end of the session: no token outlives it.
    pub expires_at: u64,
    /// The provider's session this login belongs to (OpenID Connect `sid`), by which a
    /// back-channel logout ends it; bounded in size by the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_session: Option<String>,
}

// === impl SessionRecord ===

impl SessionRecord {
    /// An audit record of `event` for this session: its user, client and id.
    pub fn audit(&self, event: AuditEvent) -> AuditRecord {
        AuditRecord::new(event)
            .user(&self.user)
            .client_id(&self.client_id)
            .session_id(&self.id)
    }

    /// A stored session (stored only by [`Sessions`]).
    async fn load(store: &Store, id: &str) -> Result<Option<Self>, StoreError> {
        store.get_sealed(Table::Sessions, id).await
    }
}

/// Separates the user from the session id in a `user_sessions` key.
const INDEX_SEPARATOR: char = '\u{1f}';

/// The key of a session in the `user_sessions` index.
fn user_session_key(user: &str, session_id: &str) -> String {
    format!("{user}{INDEX_SEPARATOR}{session_id}")
}

/// The key prefix of a provider's session in the `idp_sessions` index.
fn idp_session_prefix(provider: &str, idp_session: &str) -> String {
    format!("{provider}{INDEX_SEPARATOR}{idp_session}{INDEX_SEPARATOR}")
}

/// A session in memory, on the request path: the record, the provider's access token (which a
/// refresh replaces), and the cached assertion. One per session, shared by all its tokens.
///
/// Lean on purpose — the token cache holds one per active session: the provider's refresh and ID
/// tokens are not kept here (a refresh reads them from the store, where they stay sealed).
pub struct ActiveSession {
    /// The session as loaded, without its `provider_tokens` (see [`ProviderAccess`]).
    pub record: SessionRecord,
    provider_access: RwLock<ProviderAccess>,
    /// Held while the provider tokens are being refreshed (single flight).
    pub(crate) refreshing: tokio::sync::Mutex<()>,
    /// A snapshot from a stateless access token: nothing about it may be written back.
    pub stateless: bool,
    assertion: AssertionSlot,
}

/// What the request path needs of the provider's tokens: the access token (the assertion's
/// external token) and when it expires, whether it can be refreshed, and when it was obtained.
#[derive(Clone, Default)]
struct ProviderAccess {
    access_token: Box<str>,
    expires_at: Option<u64>,
    refreshable: bool,
    obtained_at: u64,
}

impl From<ProviderTokens> for ProviderAccess {
    fn from(tokens: ProviderTokens) -> Self {
        Self {
            access_token: tokens.access_token.into_boxed_str(),
            expires_at: tokens.expires_at,
            refreshable: tokens.refresh_token.is_some(),
            obtained_at: tokens.obtained_at,
        }
    }
}

/// Bytes a minted assertion adds beyond its claims' values: the JWT header, the claim names and
/// fixed claims (iss, aud, iat, exp, jti), the signature (RS256's 256 bytes at most), all base64.
const ASSERTION_FRAME_BYTES: usize = 1024;

// === impl ActiveSession ===

impl ActiveSession {
    pub fn new(mut record: SessionRecord) -> Self {
        let tokens = std::mem::take(&mut record.provider_tokens);
        Self {
            record,
            provider_access: RwLock::new(tokens.into()),
            refreshing: tokio::sync::Mutex::new(()),
            stateless: false,
            assertion: AssertionSlot::default(),
        }
    }

    /// The session carried by a stateless access token.
    pub fn snapshot(record: SessionRecord) -> Self {
        Self {
            stateless: true,
            ..Self::new(record)
        }
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The provider's current access token.
    pub fn provider_access_token(&self) -> String {
        self.provider_access
            .read()
            .map(|t| t.access_token.to_string())
            .unwrap_or_default()
    }

    /// When the provider's access token expires, whether it can be refreshed, and when it was
    /// obtained (read on every request, so nothing is cloned).
    pub fn provider_expiry(&self) -> (Option<u64>, bool, u64) {
        self.provider_access
            .read()
            .map(|t| (t.expires_at, t.refreshable, t.obtained_at))
            .unwrap_or((None, false, 0))
    }

    /// Installs refreshed provider tokens (the access token and its expiry are kept); the next
    /// request gets a new assertion.
    pub fn install_provider_tokens(&self, tokens: ProviderTokens) {
        if let Ok(mut current) = self.provider_access.write() {
            *current = tokens.into();
        }
        self.assertion.clear();
    }

    /// About how many bytes of memory this session holds once its assertion is minted (the
    /// token cache's budget counts it): the strings of the record and the provider's access
    /// token, and the assertion, which carries them again base64-encoded. An overestimate rather
    /// than an under-: it bounds memory.
    pub fn approx_bytes(&self) -> usize {
        let r = &self.record;
        let u = &r.user;
        let strings = |v: &[String]| v.iter().map(|s| s.len() + std::mem::size_of::<String>()).sum::<usize>();
        let optional = |o: &Option<String>| o.as_ref().map_or(0, String::len);
        let user = u.provider.len()
            + u.user_id.len()
            + u.username.len()
            + optional(&u.email)
            + optional(&u.name)
            + optional(&u.avatar_url)
            + optional(&u.role)
            + strings(&u.groups)
            + strings(&u.permissions)
            + strings(&u.capabilities);
        let access_token = self.provider_access.read().map_or(0, |t| t.access_token.len());
        let record = r.id.len()
            + r.client_id.len()
            + r.resource.len()
            + strings(&r.scope)
            + r.idp_session.as_ref().map_or(0, String::len);
        let claims = user + access_token + r.id.len() + r.client_id.len() + strings(&r.scope);
        std::mem::size_of::<Self>() + user + access_token + record + ASSERTION_FRAME_BYTES + claims * 4 / 3
    }

    /// The session's assertion for the core, minted only when the cached one is due.
    pub fn assertion(&self, minter: &AssertionMinter, now: u64) -> Result<HeaderValue, KeyError> {
        if let Some(value) = minter.cached(&self.assertion, now) {
            return Ok(value);
        }
        let access = self
            .provider_access
            .read()
            .map(|t| t.access_token.clone())
            .unwrap_or_default();
        let subject = AssertionSubject {
            session_id: &self.record.id,
            user: &self.record.user,
            client_id: &self.record.client_id,
            scope: &self.record.scope,
            external_token: Some(&*access).filter(|t| !t.is_empty()),
        };
        minter.assertion(&self.assertion, &subject, now)
    }
}
