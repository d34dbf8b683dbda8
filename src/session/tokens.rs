//! mxgate's own tokens: what the `tokens` table holds for each (by hash only, never the token),
//! and how an access/refresh pair is issued for a session. Where a refresh token is in its
//! rotation is a [`RotationState`] (see [`super::rotation`]).

use super::rotation::RotationState;
use super::SessionRecord;
use crate::config::Settings;
use crate::store::{Store, StoreError, Table, WriteBatch};
use crate::support::{new_opaque_token, token_hash};
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const ACCESS_TOKEN_PREFIX: &str = "mxg_at_";
pub const REFRESH_TOKEN_PREFIX: &str = "mxg_rt_";
pub const AUTHORIZATION_CODE_PREFIX: &str = "mxg_ac_";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Access,
    Refresh,
}

/// What the `tokens` table holds for a token hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredTokenRecord")]
pub struct TokenRecord {
    pub kind: TokenKind,
    pub session_id: String,
    pub client_id: String,
    pub expires_at: u64,
    /// For a refresh token: the hash of the access token issued with it.
    pub paired_access_hash: Option<String>,
    /// For a refresh token: whether it was exchanged already. An access token stays `Active`.
    pub rotation: RotationState,
}

// === impl TokenRecord ===

impl TokenRecord {
    fn new(kind: TokenKind, session: &SessionRecord, expires_at: u64, paired_access_hash: Option<String>) -> Self {
        Self {
            kind,
            session_id: session.id.clone(),
            client_id: session.client_id.clone(),
            expires_at,
            paired_access_hash,
            rotation: RotationState::Active,
        }
    }

    /// A refresh token issued to `client_id`.
    pub fn is_refresh_token_of(&self, client_id: &str) -> bool {
        self.kind == TokenKind::Refresh && self.client_id == client_id
    }
}

/// A token record as read from the store, in either layout: today's `rotation` state, or the
/// flags that records written before it carry (`rotated`, `rotated_at`, `grace_used`). Records
/// are always written in today's layout.
#[derive(Deserialize)]
struct StoredTokenRecord {
    kind: TokenKind,
    session_id: String,
    client_id: String,
    expires_at: u64,
    #[serde(default)]
    paired_access_hash: Option<String>,
    #[serde(default)]
    rotation: Option<RotationState>,
    #[serde(default)]
    rotated: bool,
    #[serde(default)]
    rotated_at: u64,
    #[serde(default)]
    grace_used: bool,
}

impl From<StoredTokenRecord> for TokenRecord {
    fn from(stored: StoredTokenRecord) -> Self {
        let rotation = stored.rotation.unwrap_or(match (stored.rotated, stored.grace_used) {
            (false, _) => RotationState::Active,
            (true, false) => RotationState::Rotated { at: stored.rotated_at },
            (true, true) => RotationState::GraceUsed { at: stored.rotated_at },
        });
        Self {
            kind: stored.kind,
            session_id: stored.session_id,
            client_id: stored.client_id,
            expires_at: stored.expires_at,
            paired_access_hash: stored.paired_access_hash,
            rotation,
        }
    }
}

/// A freshly issued pair, as the token endpoint returns it.
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: Option<String>,
}

/// Lifetimes applied when issuing.
#[derive(Clone, Copy)]
pub struct IssuePolicy {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub with_refresh_token: bool,
    /// Self-contained access tokens (see [`super::stateless`]), stored nowhere.
    pub stateless: bool,
}

// === impl IssuePolicy ===

impl IssuePolicy {
    /// What the token endpoint issues under `settings` to a client that may (or may not) use
    /// the refresh grant.
    pub fn from_settings(settings: &Settings, with_refresh_token: bool) -> Self {
        Self {
            access_ttl: settings.tokens.access_token,
            refresh_ttl: settings.tokens.refresh_token,
            with_refresh_token,
            stateless: settings.transport.stateless,
        }
    }
}

/// Issues a new access token (and refresh token when the client may refresh) for a session.
/// No token outlives its session. (Outside `session/` this is `Sessions::issue_tokens`.)
pub(super) async fn issue_tokens(
    store: &Store,
    session: &SessionRecord,
    policy: IssuePolicy,
    now: u64,
) -> Result<IssuedTokens, StoreError> {
    let mut access_expires = (now + policy.access_ttl.as_secs()).min(session.expires_at);
    if policy.stateless {
        // The token carries the provider token: it must not outlive it while a refresh could
        // renew it (the refresh grant does, in stateless mode).
        let provider = &session.provider_tokens;
        if let (Some(provider_expiry), Some(_)) = (provider.expires_at, &provider.refresh_token) {
            access_expires = access_expires.min(provider_expiry.max(now + 1));
        }
    }
    let mut batch = WriteBatch::default();
    let (access_token, access_hash) = if policy.stateless {
        (
            super::stateless::seal_access_token(store.cipher(), session, access_expires)?,
            None,
        )
    } else {
        let token = new_opaque_token(ACCESS_TOKEN_PREFIX);
        let hash = token_hash(&token);
        let record = TokenRecord::new(TokenKind::Access, session, access_expires, None);
        store.batch_put(&mut batch, Table::Tokens, &hash, &record, access_expires);
        (token, Some(hash))
    };
    let refresh_token = if policy.with_refresh_token {
        let token = new_opaque_token(REFRESH_TOKEN_PREFIX);
        let expires = (now + policy.refresh_ttl.as_secs()).min(session.expires_at);
        let record = TokenRecord::new(TokenKind::Refresh, session, expires, access_hash);
        store.batch_put(&mut batch, Table::Tokens, &token_hash(&token), &record, expires);
        Some(token)
    } else {
        None
    };
    // Both tokens in one write: one durable commit (redb), and never one without the other.
    store.put_all(batch).await?;
    Ok(IssuedTokens {
        access_token,
        expires_in: access_expires.saturating_sub(now),
        refresh_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD_LAYOUT: &str = r#"{"kind":"refresh","session_id":"sid","client_id":"c","expires_at":900,
        "paired_access_hash":"ah","rotated":ROTATED,"rotated_at":AT,"grace_used":GRACE}"#;

    fn old_record(rotated: bool, at: u64, grace_used: bool) -> TokenRecord {
        let json = OLD_LAYOUT
            .replace("ROTATED", &rotated.to_string())
            .replace("AT", &at.to_string())
            .replace("GRACE", &grace_used.to_string());
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn records_written_with_rotation_flags_read_as_their_state() {
        assert_eq!(old_record(false, 0, false).rotation, RotationState::Active);
        assert_eq!(
            old_record(true, 500, false).rotation,
            RotationState::Rotated { at: 500 }
        );
        assert_eq!(
            old_record(true, 500, true).rotation,
            RotationState::GraceUsed { at: 500 }
        );
        let record = old_record(true, 500, false);
        assert_eq!(
            (record.session_id.as_str(), record.paired_access_hash.as_deref()),
            ("sid", Some("ah"))
        );
        // An access token of the old layout had no rotation flags at all.
        let access: TokenRecord =
            serde_json::from_str(r#"{"kind":"access","session_id":"s","client_id":"c","expires_at":9}"#).unwrap();
        assert_eq!(
            (access.kind, access.rotation),
            (TokenKind::Access, RotationState::Active)
        );
    }

    #[test]
    fn records_are_written_with_the_state_and_read_back_unchanged() {
        let record = TokenRecord {
            rotation: RotationState::GraceUsed { at: 77 },
            ..old_record(false, 0, false)
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["rotation"], serde_json::json!({"state": "grace_used", "at": 77}));
        assert!(json.get("rotated").is_none(), "the old flags are not written");
        assert_eq!(serde_json::from_value::<TokenRecord>(json).unwrap(), record);
    }
}
