//! The hot path: from a request's bearer token to its session.
//!
//! Token hash → session comes from an in-memory cache; only a miss reads the store (never a
//! write, never a network call). The cache is bounded (`limits.max_cached_tokens`).
//!
//! Revocation wins every race: [`BearerAuthenticator::forget_session`] drops the session's
//! entries and remembers the session as revoked (for an access token's lifetime, bounded in
//! count), so a lookup that read the session from the store just before it was deleted cannot
//! put it back into the cache — and a stateless token of a revoked session is refused on this
//! replica until it would have expired anyway.
//!
//! With a shared store (several replicas) a revocation is published to every replica
//! ([`crate::store::ReplicaEvent`]) and each forgets the session or token at once
//! ([`BearerAuthenticator::heard`]). A replica that loses its subscription may miss revocations:
//! it drops its cache when it subscribes again, and while unsubscribed it trusts its cache for
//! at most `store.outage_grace` — after that every request reads the store (and is refused with
//! `503` while the store is unreachable too).

use super::stateless::{is_stateless_token, open_access_token};
use super::tokens::{TokenKind, TokenRecord};
use super::{ActiveSession, SessionRecord};
use crate::store::{Heard, ReplicaEvent, Store, StoreError, Table};
use crate::support::token_hash;
use http::HeaderMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use thiserror::Error;

/// Revoked sessions remembered at most (the oldest are forgotten first).
const MAX_REVOKED: usize = 100_000;

/// The reason an access token past its expiry is refused (stateful or stateless).
pub const TOKEN_EXPIRED: &str = "the access token has expired";

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
    /// Sessions revoked on this replica, until when they are remembered.
    revoked: HashMap<String, u64>,
}

/// Validates bearer tokens against the store, through a cache.
pub struct BearerAuthenticator {
    store: Store,
    cache: RwLock<Cache>,
    capacity: usize,
    /// How long a revocation is remembered: the longest an access token lives.
    revoked_for: u64,
    /// Shared store: since when (Unix seconds) this replica has not been subscribed to the other
    /// replicas' revocations; 0 while subscribed (or with a store no one else uses).
    deaf_since: AtomicU64,
    /// How long the cache is trusted while not subscribed.
    outage_grace: u64,
}

// === impl BearerAuthenticator ===

impl BearerAuthenticator {
    /// A cache of at most `capacity` tokens; revocations remembered for `revoked_for` seconds
    /// (the access-token lifetime).
    pub fn new(store: Store, capacity: usize, revoked_for: u64) -> Self {
        Self {
            store,
            cache: RwLock::new(Cache::default()),
            capacity: capacity.max(1),
            revoked_for,
            deaf_since: AtomicU64::new(0),
            outage_grace: u64::MAX,
        }
    }

    /// How long the cache is trusted while this replica hears no revocations from the others
    /// (see the module doc); only matters with a shared store.
    pub fn with_outage_grace(mut self, grace: std::time::Duration) -> Self {
        self.outage_grace = grace.as_secs();
        self
    }

    /// What the other replicas said (or that the subscription changed).
    pub fn heard(&self, heard: Heard) {
        match heard {
            Heard::Event(ReplicaEvent::SessionRevoked(id)) => self.forget_session(&id),
            Heard::Event(ReplicaEvent::TokenRevoked(hash)) => self.forget_token(&hash),
            Heard::Event(ReplicaEvent::SigningKeysChanged) => {} // for the signing keys, not here
            Heard::Subscribed => {
                // Revocations published while unsubscribed were missed: start over from the store.
                if let Ok(mut cache) = self.cache.write() {
                    cache.by_token.clear();
                    cache.by_session.clear();
                }
                self.deaf_since.store(0, Ordering::Release);
            }
            Heard::Unsubscribed => {
                let _ = self
                    .deaf_since
                    .compare_exchange(0, crate::support::now(), Ordering::AcqRel, Ordering::Acquire);
            }
        }
    }

    /// Whether cached entries may be used: always, unless this replica has been deaf to the
    /// others' revocations for longer than the grace.
    fn cache_trusted(&self, now: u64) -> bool {
        let deaf_since = self.deaf_since.load(Ordering::Acquire);
        deaf_since == 0 || now.saturating_sub(deaf_since) <= self.outage_grace
    }

    pub async fn authenticate(&self, token: &str, now: u64) -> Result<Arc<ActiveSession>, BearerError> {
        let hash = token_hash(token);
        if let Some(session) = self.cached(&hash, now) {
            return Ok(session);
        }
        if is_stateless_token(token) {
            let (session, exp) = open_access_token(self.store.cipher(), token, now).map_err(BearerError::Invalid)?;
            let active = Arc::new(ActiveSession::snapshot(session));
            return self.remember(hash, active, exp, now);
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
            return Err(BearerError::Invalid(TOKEN_EXPIRED));
        }
        let active = match self.live_session(&record.session_id, now) {
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
        self.remember(hash, active, valid_until, now)
    }

    fn cached(&self, hash: &str, now: u64) -> Option<Arc<ActiveSession>> {
        if !self.cache_trusted(now) {
            return None;
        }
        let cache = self.cache.read().ok()?;
        cache
            .by_token
            .get(hash)
            .filter(|e| e.valid_until > now)
            .map(|e| e.session.clone())
    }

    fn live_session(&self, session_id: &str, now: u64) -> Option<Arc<ActiveSession>> {
        if !self.cache_trusted(now) {
            return None;
        }
        self.cache.read().ok()?.by_session.get(session_id)?.upgrade()
    }

    /// Caches the token; if another task loaded the same session meanwhile, that one wins. A
    /// session revoked meanwhile is refused, not cached.
    fn remember(
        &self,
        hash: String,
        session: Arc<ActiveSession>,
        valid_until: u64,
        now: u64,
    ) -> Result<Arc<ActiveSession>, BearerError> {
        let Ok(mut cache) = self.cache.write() else {
            return Ok(session);
        };
        if cache.revoked.get(session.id()).is_some_and(|until| *until > now) {
            return Err(BearerError::Invalid("the session of this token has ended"));
        }
        if cache.by_token.len() >= self.capacity {
            cache.by_token.retain(|_, e| e.valid_until > now);
            // Still full: half of the entries go, arbitrary ones (the map's hash order is
            // random per process), so that a working set larger than the cache keeps hitting
            // about half the time instead of the whole cache emptying at once.
            let excess = cache.by_token.len().saturating_sub(self.capacity / 2);
            if cache.by_token.len() >= self.capacity && excess > 0 {
                let victims: Vec<String> = cache.by_token.keys().take(excess).cloned().collect();
                for victim in &victims {
                    cache.by_token.remove(victim);
                }
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
        Ok(session)
    }

    /// Drops every cached token of a revoked session, and remembers the revocation so that no
    /// lookup under way caches the session again.
    pub fn forget_session(&self, session_id: &str) {
        let now = crate::support::now();
        if let Ok(mut cache) = self.cache.write() {
            cache.by_token.retain(|_, e| e.session.id() != session_id);
            cache.by_session.remove(session_id);
            if cache.revoked.len() >= MAX_REVOKED {
                cache.revoked.retain(|_, until| *until > now);
                if cache.revoked.len() >= MAX_REVOKED {
                    // Keep the newest half: the oldest revocations are the least likely to race.
                    let mut untils: Vec<u64> = cache.revoked.values().copied().collect();
                    untils.sort_unstable();
                    let cutoff = untils.get(untils.len() / 2).copied().unwrap_or(0);
                    cache.revoked.retain(|_, until| *until > cutoff);
                }
            }
            cache
                .revoked
                .insert(session_id.to_string(), now + self.revoked_for.max(1));
        }
    }

    /// Tells the other replicas (shared store only) to forget what this one just revoked.
    pub async fn announce(&self, event: ReplicaEvent) {
        if let Err(e) = self.store.kv().publish(&event).await {
            // The record is gone from the store, but replicas that cached it keep serving it until
            // its token expires or they resubscribe: make it visible.
            tracing::warn!(error = %e, "could not tell the other replicas about a revocation");
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
    use crate::session::test_support::{record, save, temp_store, POLICY};
    use crate::session::tokens::issue_tokens;
    use crate::store::{cipher::RecordCipher, RedbStore};
    use crate::support::now;

    fn session(expires_at: u64) -> SessionRecord {
        record("sid", expires_at)
    }

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
        let (_d, store) = temp_store();
        let s = session(now() + 3600);
        save(&store, &s).await;
        let issued = issue_tokens(&store, &s, POLICY, now()).await.unwrap();
        let auth = BearerAuthenticator::new(store.clone(), 1000, 3600);
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
        let (_d, store) = temp_store();
        let s = session(now() + 3600);
        save(&store, &s).await;
        let first = issue_tokens(&store, &s, POLICY, now()).await.unwrap();
        let second = issue_tokens(&store, &s, POLICY, now()).await.unwrap();
        let auth = BearerAuthenticator::new(store.clone(), 1000, 3600);
        let a = auth.authenticate(&first.access_token, now()).await.unwrap();
        let b = auth.authenticate(&second.access_token, now()).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    /// A store that, once armed, pauses a session read after reading it (as a slow disk would),
    /// so a revocation can run in between.
    struct PausingStore {
        inner: RedbStore,
        armed: std::sync::atomic::AtomicBool,
        paused: tokio::sync::Notify,
        release: tokio::sync::Notify,
    }

    #[async_trait::async_trait]
    impl crate::store::KvStore for PausingStore {
        async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            let value = self.inner.get(table, key).await?;
            if table == Table::Sessions && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                self.paused.notify_one();
                self.release.notified().await;
            }
            Ok(value)
        }
        async fn put(&self, table: Table, key: &str, value: Vec<u8>, expires_at: u64) -> Result<(), StoreError> {
            self.inner.put(table, key, value, expires_at).await
        }
        async fn insert_new(
            &self,
            table: Table,
            key: &str,
            value: Vec<u8>,
            expires_at: u64,
        ) -> Result<bool, StoreError> {
            self.inner.insert_new(table, key, value, expires_at).await
        }
        async fn delete(&self, table: Table, key: &str) -> Result<bool, StoreError> {
            self.inner.delete(table, key).await
        }
        async fn take(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.take(table, key).await
        }
        async fn replace(
            &self,
            table: Table,
            key: &str,
            value: Vec<u8>,
            expires_at: u64,
        ) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.replace(table, key, value, expires_at).await
        }
        async fn compare_and_swap(
            &self,
            table: Table,
            key: &str,
            expected: &[u8],
            value: Vec<u8>,
            expires_at: u64,
        ) -> Result<bool, StoreError> {
            self.inner
                .compare_and_swap(table, key, expected, value, expires_at)
                .await
        }
        async fn stored_entries(&self, table: Table) -> Result<u64, StoreError> {
            self.inner.stored_entries(table).await
        }
        async fn list_prefix(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            self.inner.list_prefix(table, prefix).await
        }
        async fn purge_expired(&self, now: u64) -> Result<crate::store::Purged, StoreError> {
            self.inner.purge_expired(now).await
        }
    }

    #[tokio::test]
    async fn a_revocation_during_a_lookup_wins() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Arc::new(PausingStore {
            inner: RedbStore::open(&dir.path().join("s.redb")).unwrap(),
            armed: Default::default(),
            paused: Default::default(),
            release: Default::default(),
        });
        let store = Store::new(kv.clone(), RecordCipher::from_secret(b"k"));
        let s = session(now() + 3600);
        save(&store, &s).await;
        let issued = issue_tokens(&store, &s, POLICY, now()).await.unwrap();
        let auth = Arc::new(BearerAuthenticator::new(store.clone(), 1000, 3600));

        kv.armed.store(true, std::sync::atomic::Ordering::SeqCst);
        let lookup = tokio::spawn({
            let (auth, token) = (auth.clone(), issued.access_token.clone());
            async move { auth.authenticate(&token, now()).await.map(|_| ()) }
        });
        kv.paused.notified().await; // the lookup has read the session, not yet cached it
        auth.forget_session("sid"); // what revocation does: forget, then delete
        store.delete(Table::Sessions, "sid").await.unwrap();
        kv.release.notify_one();

        assert!(matches!(lookup.await.unwrap(), Err(BearerError::Invalid(_))));
        assert!(
            matches!(
                auth.authenticate(&issued.access_token, now()).await,
                Err(BearerError::Invalid(_))
            ),
            "the revoked session was not cached again"
        );
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let (_d, store) = temp_store();
        let s = session(now() + 3600);
        save(&store, &s).await;
        let auth = BearerAuthenticator::new(store.clone(), 10, 3600);
        for i in 0..25 {
            let issued = issue_tokens(&store, &s, POLICY, now()).await.unwrap();
            auth.authenticate(&issued.access_token, now()).await.unwrap();
            let cached = auth.cache.read().unwrap().by_token.len();
            assert!(cached <= 10, "{cached} cached");
            // A full cache sheds half, not everything: what was just used stays warm.
            assert!(cached >= 6 || i < 6, "only {cached} cached after {} tokens", i + 1);
        }
    }

    #[tokio::test]
    async fn expired_token_and_revoked_session_are_refused() {
        let (_d, store) = temp_store();
        let s = session(now() + 3600);
        save(&store, &s).await;
        let issued = issue_tokens(&store, &s, POLICY, now()).await.unwrap();
        let auth = BearerAuthenticator::new(store.clone(), 1000, 3600);
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
