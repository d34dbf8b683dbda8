//! The hot path: from a request's bearer token to its session.
//!
//! Token hash → session comes from an in-memory cache; only a miss reads the store (never a
//! write, never a network call). Revocation removes the session's entries from the cache.

use super::stateless::{is_stateless_token, open_access_token};
use super::tokens::{token_hash, TokenKind, TokenRecord};
use super::{ActiveSession, SessionRecord};
use crate::store::{Store, StoreError, Table};
use http::HeaderMap;
use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use thiserror::Error;

/// Entries kept before expired ones are swept on insert.
const CACHE_SOFT_CAPACITY: usize = 100_000;

#[derive(Debug, Error)]
pub enum BearerError {
    #[error("no bearer token")]
    Missing,
    #[error("{0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The token of an `Authorization: Bearer …` header (scheme case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

struct CacheEntry {
    session: Arc<ActiveSession>,
    valid_until: u64,
}

#[derive(Default)]
struct Cache {
    by_token: HashMap<String, CacheEntry>,
    /// One [`ActiveSession`] per session, whichever of its tokens is presented, so that provider
    /// refreshes and assertions are shared.
    by_session: HashMap<String, Weak<ActiveSession>>,
}

/// Validates bearer tokens against the store, through a cache.
pub struct BearerAuthenticator {
    store: Store,
    cache: RwLock<Cache>,
}

// === impl BearerAuthenticator ===

impl BearerAuthenticator {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: RwLock::new(Cache::default()),
        }
    }

    pub async fn authenticate(&self, token: &str, now: u64) -> Result<Arc<ActiveSession>, BearerError> {
        let hash = token_hash(token);
        if let Some(session) = self.cached(&hash, now) {
            return Ok(session);
        }
        if is_stateless_token(token) {
            let (session, exp) = open_access_token(self.store.cipher(), token, now).map_err(BearerError::Invalid)?;
            let active = Arc::new(ActiveSession::snapshot(session));
            return Ok(self.remember(hash, active, exp, now));
        }
        let record: TokenRecord = self
            .store
            .get(Table::Tokens, &hash)
            .await?
            .ok_or(BearerError::Invalid("the access token is unknown, expired or revoked"))?;
        if record.kind != TokenKind::Access {
            return Err(BearerError::Invalid("a refresh token is not an access token"));
        }
        if record.expires_at <= now {
            return Err(BearerError::Invalid("the access token has expired"));
        }
        let active = match self.live_session(&record.session_id) {
            Some(active) => active,
            None => {
                let session = SessionRecord::load(&self.store, &record.session_id)
                    .await?
                    .filter(|s| s.expires_at > now)
                    .ok_or(BearerError::Invalid("the session of this token has ended"))?;
                Arc::new(ActiveSession::new(session))
            }
        };
        let valid_until = record.expires_at.min(active.record.expires_at);
        Ok(self.remember(hash, active, valid_until, now))
    }

    fn cached(&self, hash: &str, now: u64) -> Option<Arc<ActiveSession>> {
        let cache = self.cache.read().ok()?;
        cache
            .by_token
            .get(hash)
            .filter(|e| e.valid_until > now)
            .map(|e| e.session.clone())
    }

    fn live_session(&self, session_id: &str) -> Option<Arc<ActiveSession>> {
        self.cache.read().ok()?.by_session.get(session_id)?.upgrade()
    }

    /// Caches the token; if another task loaded the same session meanwhile, that one wins.
    fn remember(&self, hash: String, session: Arc<ActiveSession>, valid_until: u64, now: u64) -> Arc<ActiveSession> {
        let Ok(mut cache) = self.cache.write() else {
            return session;
        };
        if cache.by_token.len() >= CACHE_SOFT_CAPACITY {
            cache.by_token.retain(|_, e| e.valid_until > now);
            if cache.by_token.len() >= CACHE_SOFT_CAPACITY {
                cache.by_token.clear();
            }
            cache.by_session.retain(|_, w| w.strong_count() > 0);
        }
        // Stateless snapshots are never shared: each token carries its own provider token.
        let session = if session.stateless {
            session
        } else if let Some(existing) = cache.by_session.get(session.id()).and_then(Weak::upgrade) {
            existing
        } else {
            cache
                .by_session
                .insert(session.id().to_string(), Arc::downgrade(&session));
            session
        };
        cache.by_token.insert(
            hash,
            CacheEntry {
                session: session.clone(),
                valid_until,
            },
        );
        session
    }

    /// Drops every cached token of a session (after it was revoked).
    pub fn forget_session(&self, session_id: &str) {
        if let Ok(mut cache) = self.cache.write() {
            cache.by_token.retain(|_, e| e.session.id() != session_id);
            cache.by_session.remove(session_id);
        }
    }

    /// Drops one cached token (after it was rotated out).
    pub fn forget_token(&self, hash: &str) {
        if let Ok(mut cache) = self.cache.write() {
            cache.by_token.remove(hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::user::UserIdentity;
    use crate::session::tokens::{issue_tokens, IssuePolicy};
    use crate::store::{cipher::RecordCipher, now, RedbStore};
    use std::time::Duration;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let kv = RedbStore::open(&dir.path().join("s.redb")).unwrap();
        (dir, Store::new(Arc::new(kv), RecordCipher::from_secret(b"k")))
    }

    fn session(expires_at: u64) -> SessionRecord {
        SessionRecord {
            id: "sid".into(),
            user: UserIdentity {
                user_id: "alice".into(),
                ..Default::default()
            },
            provider_tokens: Default::default(),
            client_id: "c".into(),
            scope: vec![],
            resource: "r".into(),
            created_at: now(),
            expires_at,
        }
    }

    const POLICY: IssuePolicy = IssuePolicy {
        access_ttl: Duration::from_secs(60),
        refresh_ttl: Duration::from_secs(600),
        with_refresh_token: true,
        stateless: false,
    };

    #[test]
    fn bearer_header_is_parsed_case_insensitively() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
    }

    #[tokio::test]
    async fn access_token_finds_its_session_and_refresh_token_does_not() {
        let (_d, store) = store();
        let s = session(now() + 3600);
        s.save(&store).await.unwrap();
        let issued = issue_tokens(&store, &s, POLICY, now()).await.unwrap();
        let auth = BearerAuthenticator::new(store.clone());
        let active = auth.authenticate(&issued.access_token, now()).await.unwrap();
        assert_eq!(active.record.user.user_id, "alice");
        assert!(matches!(
            auth.authenticate(issued.refresh_token.as_deref().unwrap(), now()).await,
            Err(BearerError::Invalid(_))
        ));
        assert!(matches!(
            auth.authenticate("mxg_at_forged", now()).await,
            Err(BearerError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn tokens_of_one_session_share_one_active_session() {
        let (_d, store) = store();
        let s = session(now() + 3600);
        s.save(&store).await.unwrap();
        let first = issue_tokens(&store, &s, POLICY, now()).await.unwrap();
        let second = issue_tokens(&store, &s, POLICY, now()).await.unwrap();
        let auth = BearerAuthenticator::new(store.clone());
        let a = auth.authenticate(&first.access_token, now()).await.unwrap();
        let b = auth.authenticate(&second.access_token, now()).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[tokio::test]
    async fn expired_token_and_revoked_session_are_refused() {
        let (_d, store) = store();
        let s = session(now() + 3600);
        s.save(&store).await.unwrap();
        let issued = issue_tokens(&store, &s, POLICY, now()).await.unwrap();
        let auth = BearerAuthenticator::new(store.clone());
        auth.authenticate(&issued.access_token, now()).await.unwrap();
        assert!(
            auth.authenticate(&issued.access_token, now() + 61).await.is_err(),
            "the cache honours the token's expiry"
        );

        store.delete(Table::Sessions, "sid").await.unwrap();
        auth.forget_session("sid");
        assert!(matches!(
            auth.authenticate(&issued.access_token, now()).await,
            Err(BearerError::Invalid(_))
        ));
    }
}
