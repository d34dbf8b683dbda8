//! Sessions: one per completed login of a user for a client. A session holds the user, the
//! provider's tokens (sealed at rest), what the client was granted, and when it ends; access
//! and refresh tokens point at it. Revoking a session ends every token issued for it.

pub mod bearer;
pub mod tokens;

use crate::identity::assertion::{AssertionSlot, AssertionSubject};
use crate::identity::user::{ProviderTokens, UserIdentity};
use crate::store::{Store, StoreError, Table};
use serde::{Deserialize, Serialize};

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
}

// === impl SessionRecord ===

impl SessionRecord {
    pub async fn save(&self, store: &Store) -> Result<(), StoreError> {
        store.put_sealed(Table::Sessions, &self.id, self, self.expires_at).await
    }

    pub async fn load(store: &Store, id: &str) -> Result<Option<Self>, StoreError> {
        store.get_sealed(Table::Sessions, id).await
    }
}

/// A session in memory, on the request path: the record plus its cached assertion.
pub struct ActiveSession {
    pub record: SessionRecord,
    pub assertion: AssertionSlot,
}

// === impl ActiveSession ===

impl ActiveSession {
    pub fn new(record: SessionRecord) -> Self {
        Self {
            record,
            assertion: AssertionSlot::default(),
        }
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn subject(&self) -> AssertionSubject<'_> {
        AssertionSubject {
            session_id: &self.record.id,
            user: &self.record.user,
            client_id: &self.record.client_id,
            scope: &self.record.scope,
            external_token: Some(self.record.provider_tokens.access_token.as_str()).filter(|t| !t.is_empty()),
        }
    }
}
