//! Refresh-token rotation: a refresh token works once. Within `refresh_token_reuse_grace` of
//! that use one retry is allowed (a client that lost the response gets a new pair); any other
//! reuse means the token was stolen, and its session is revoked. The first use also retires the
//! access token issued with the refresh token; a grace retry leaves the first use's pair alone.

use super::lifecycle::Sessions;
use super::tokens::TokenRecord;
use crate::store::{StoreError, Table, Update};
use serde::{Deserialize, Serialize};

/// Where a refresh token is in its rotation (stored in its [`TokenRecord`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RotationState {
    /// Not exchanged yet.
    #[default]
    Active,
    /// Exchanged at `at` (Unix seconds); one retry is allowed within the grace window.
    Rotated { at: u64 },
    /// Exchanged at `at`, and retried once since: presenting it again is reuse.
    GraceUsed { at: u64 },
}

// === impl RotationState ===

impl RotationState {
    /// The state after the token is presented at `now`, or `None` when presenting it is reuse.
    pub fn presented(self, now: u64, grace_secs: u64) -> Option<Self> {
        match self {
            RotationState::Active => Some(RotationState::Rotated { at: now }),
            RotationState::Rotated { at } if grace_secs > 0 && now <= at + grace_secs => {
                Some(RotationState::GraceUsed { at })
            }
            RotationState::Rotated { .. } | RotationState::GraceUsed { .. } => None,
        }
    }
}

/// What presenting a refresh token came to.
#[derive(Debug, PartialEq)]
pub enum RotationOutcome {
    /// Its first use: the token is spent, and the access token issued with it is revoked.
    Rotated { session_id: String },
    /// The one retry within the grace window.
    GraceRetry { session_id: String },
    /// A spent token presented again: the session was revoked. `user`: whose it was.
    Reused {
        session_id: String,
        user: Option<Box<crate::identity::user::UserIdentity>>,
    },
    /// Unknown, expired, revoked, not a refresh token, or another client's.
    Invalid,
}

// === impl Sessions (rotation) ===

impl Sessions {
    /// Presents the refresh token with hash `hash` for `client_id` at `now`, atomically (two
    /// replicas cannot both take its first use).
    pub async fn rotate_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: u64,
        grace_secs: u64,
    ) -> Result<RotationOutcome, StoreError> {
        let update = self
            .store()
            .update(
                Table::Tokens,
                hash,
                |t: &TokenRecord| t.expires_at,
                |t: &TokenRecord| {
                    if !t.is_refresh_token_of(client_id) {
                        return None;
                    }
                    let rotation = t.rotation.presented(now, grace_secs)?;
                    Some(TokenRecord { rotation, ..t.clone() })
                },
            )
            .await?;
        match update {
            Update::Missing => Ok(RotationOutcome::Invalid),
            Update::Unchanged(t) if !t.is_refresh_token_of(client_id) => Ok(RotationOutcome::Invalid),
            Update::Unchanged(t) => {
                let user = self.revoke_session_of_user(&t.session_id).await.map(Box::new);
                tracing::warn!(client_id, session = %t.session_id, "a spent refresh token was presented again; its session is revoked");
                Ok(RotationOutcome::Reused {
                    session_id: t.session_id,
                    user,
                })
            }
            Update::Changed { from, .. } if from.rotation == RotationState::Active => {
                if let Some(access_hash) = &from.paired_access_hash {
                    self.revoke_access_token(access_hash).await?;
                }
                Ok(RotationOutcome::Rotated {
                    session_id: from.session_id,
                })
            }
            Update::Changed { from, .. } => {
                tracing::info!(client_id, session = %from.session_id, "a refresh token was retried within the grace window");
                Ok(RotationOutcome::GraceRetry {
                    session_id: from.session_id,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::test_support::{record, Fixture, POLICY};
    use crate::support::{now, token_hash};

    const GRACE: u64 = 30;

    #[test]
    fn a_token_rotates_once_then_allows_one_retry_within_the_grace_window() {
        let rotated = RotationState::Active.presented(100, GRACE).unwrap();
        assert_eq!(rotated, RotationState::Rotated { at: 100 });
        assert_eq!(
            rotated.presented(130, GRACE),
            Some(RotationState::GraceUsed { at: 100 })
        );
        assert_eq!(rotated.presented(131, GRACE), None, "after the grace window");
        assert_eq!(rotated.presented(101, 0), None, "without a grace window");
        assert_eq!(RotationState::GraceUsed { at: 100 }.presented(101, GRACE), None);
    }

    /// A session with one issued pair: (fixture, access token, refresh token hash).
    async fn issued() -> (Fixture, String, String) {
        let f = Fixture::new();
        let session = record("sid", now() + 3600);
        f.sessions.create(&session).await.unwrap();
        let issued = f.sessions.issue_tokens(&session, POLICY, now()).await.unwrap();
        let refresh_hash = token_hash(&issued.refresh_token.unwrap());
        (f, issued.access_token, refresh_hash)
    }

    #[tokio::test]
    async fn first_use_retires_the_paired_access_token_and_a_grace_retry_keeps_the_session() {
        let (f, access, refresh) = issued().await;
        let sid = || "sid".to_string();
        assert!(f.bearer.authenticate(&access, now()).await.is_ok());
        let first = f.sessions.rotate_refresh_token(&refresh, "c", now(), GRACE).await;
        assert_eq!(first.unwrap(), RotationOutcome::Rotated { session_id: sid() });
        assert!(
            f.bearer.authenticate(&access, now()).await.is_err(),
            "the access token issued with it is revoked, cached or not"
        );
        let retry = f.sessions.rotate_refresh_token(&refresh, "c", now(), GRACE).await;
        assert_eq!(retry.unwrap(), RotationOutcome::GraceRetry { session_id: sid() });
        assert!(f.sessions.live("sid", now()).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn reuse_revokes_the_session() {
        let (f, _access, refresh) = issued().await;
        let later = f
            .sessions
            .issue_tokens(&record("sid", now() + 3600), POLICY, now())
            .await
            .unwrap();
        f.sessions.rotate_refresh_token(&refresh, "c", now(), 0).await.unwrap();
        let reuse = f.sessions.rotate_refresh_token(&refresh, "c", now(), 0).await.unwrap();
        assert_eq!(
            reuse,
            RotationOutcome::Reused {
                session_id: "sid".into(),
                user: Some(Box::new(record("sid", 0).user))
            }
        );
        assert!(f.sessions.load("sid").await.unwrap().is_none());
        assert!(
            f.bearer.authenticate(&later.access_token, now()).await.is_err(),
            "every token of the session stops working"
        );
    }

    #[tokio::test]
    async fn another_clients_unknown_or_access_tokens_are_invalid_and_spend_nothing() {
        let (f, access, refresh) = issued().await;
        let invalid = [
            (refresh.as_str(), "other-client"),
            ("unknown-hash", "c"),
            (&token_hash(&access), "c"),
        ];
        for (hash, client) in invalid {
            let outcome = f.sessions.rotate_refresh_token(hash, client, now(), GRACE).await;
            assert_eq!(outcome.unwrap(), RotationOutcome::Invalid);
        }
        let first = f.sessions.rotate_refresh_token(&refresh, "c", now(), GRACE).await;
        assert!(
            matches!(first.unwrap(), RotationOutcome::Rotated { .. }),
            "still unspent"
        );
    }

    #[tokio::test]
    async fn a_token_stored_with_the_old_flags_rotates_as_its_state_says() {
        let f = Fixture::new();
        f.sessions.create(&record("sid", now() + 3600)).await.unwrap();
        let sid = || "sid".to_string();
        let cases = [
            ("retry", false, RotationOutcome::GraceRetry { session_id: sid() }),
            (
                "spent",
                true,
                RotationOutcome::Reused {
                    session_id: sid(),
                    user: Some(Box::new(record("sid", 0).user)),
                },
            ),
        ];
        for (hash, grace_used, expected) in cases {
            let stored = format!(
                r#"{{"kind":"refresh","session_id":"sid","client_id":"c","expires_at":{},"paired_access_hash":null,"rotated":true,"rotated_at":{},"grace_used":{grace_used}}}"#,
                now() + 600,
                now()
            );
            f.store
                .kv()
                .put(Table::Tokens, hash, stored.into_bytes(), now() + 600)
                .await
                .unwrap();
            let outcome = f.sessions.rotate_refresh_token(hash, "c", now(), GRACE).await;
            assert_eq!(outcome.unwrap(), expected, "{hash}");
        }
    }
}
