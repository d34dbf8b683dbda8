//! The hot path: from a request's bearer token to its session.
//!
//! Token hash → session comes from an in-memory cache; only a miss reads the store (never a
//! write, never a network call). The cache is bounded in entries (`limits.max_cached_tokens`)
//! and in memory (`limits.token_cache_memory`, counted with [`ActiveSession::approx_bytes`]);
//! when full it sheds half its entries, so a working set larger than the cache still hits.
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
use crate::support::{digest_of_hash, token_digest, token_hash, DigestKeyed, TokenDigest};
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
    /// What this entry counts against the memory budget.
    bytes: usize,
}

/// The map and index overhead of one cached token beyond its session: the digest key, the
/// entry, the session index's id and pointer, hash-table slack.
const ENTRY_OVERHEAD_BYTES: usize = 160;

#[derive(Default)]
struct Cache {
    by_token: HashMap<TokenDigest, CacheEntry, DigestKeyed>,
    /// The sum of the entries' `bytes`.
    bytes: usize,
    /// One [`ActiveSession`] per session, whichever of its tokens is presented, so that provider
    /// refreshes and assertions are shared.
    by_session: HashMap<String, Weak<ActiveSession>>,
    /// Sessions revoked on this replica, until when they are remembered.
    revoked: HashMap<String, u64>,
}

// === impl Cache ===

impl Cache {
    /// Exports the cache's size (`mxgate_token_cache_entries`, `mxgate_token_cache_bytes`).
    fn report(&self) {
        crate::metrics::metrics().set_token_cache(self.by_token.len(), self.bytes);
    }
}

/// Validates bearer tokens against the store, through a cache.
pub struct BearerAuthenticator {
    store: Store,
    cache: RwLock<Cache>,
    capacity: usize,
    /// Memory the cached sessions may hold (approximately, see [`ActiveSession::approx_bytes`]).
    memory_budget: usize,
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
            memory_budget: usize::MAX,
            revoked_for,
            deaf_since: AtomicU64::new(0),
            outage_grace: u64::MAX,
        }
    }

    /// Bounds the memory of the cached sessions too (`limits.token_cache_memory`).
    pub fn with_memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = bytes.max(1);
        self
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
                    cache.bytes = 0;
                    cache.report();
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
        let digest = token_digest(token);
        let cached = self.cached(&digest, now);
        crate::metrics::metrics().token_cache_lookup(cached.is_some());
        if let Some(session) = cached {
            return Ok(session);
        }
        if is_stateless_token(token) {
            let (session, exp) = open_access_token(self.store.cipher(), token, now).map_err(BearerError::Invalid)?;
            let active = Arc::new(ActiveSession::snapshot(session));
            return self.remember(digest, active, exp, now);
        }
        let record: TokenRecord = self
            .store
            .get(Table::Tokens, &token_hash(token))
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
        self.remember(digest, active, valid_until, now)
    }

    fn cached(&self, digest: &TokenDigest, now: u64) -> Option<Arc<ActiveSession>> {
        if !self.cache_trusted(now) {
            return None;
        }
        let cache = self.cache.read().ok()?;
        cache
            .by_token
            .get(digest)
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
        digest: TokenDigest,
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
        // Each token counts its whole session: a session with two live tokens is counted twice,
        // which overestimates, never under-.
        let bytes = session.approx_bytes() + ENTRY_OVERHEAD_BYTES;
        if cache.by_token.len() >= self.capacity || cache.bytes + bytes > self.memory_budget {
            self.make_room(&mut cache, bytes, now);
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
        let entry = CacheEntry {
            session: session.clone(),
            valid_until,
            bytes,
        };
        cache.bytes += bytes;
        if let Some(replaced) = cache.by_token.insert(digest, entry) {
            cache.bytes -= replaced.bytes;
        }
        cache.report();
        Ok(session)
    }

    /// Drops expired entries; if the cache is still full (in entries, or in memory for an entry
    /// of `incoming` bytes), half of it goes — arbitrary entries (the map's hash order is random
    /// per process), so that a working set larger than the cache keeps hitting about half the
    /// time instead of the whole cache emptying at once.
    fn make_room(&self, cache: &mut Cache, incoming: usize, now: u64) {
        let full = |c: &Cache| c.by_token.len() >= self.capacity || c.bytes + incoming > self.memory_budget;
        cache.by_token.retain(|_, e| e.valid_until > now);
        cache.bytes = cache.by_token.values().map(|e| e.bytes).sum();
        if full(cache) {
            let (keep_entries, keep_bytes) = (self.capacity / 2, self.memory_budget / 2);
            let mut victims = Vec::new();
            let (mut entries, mut bytes) = (cache.by_token.len(), cache.bytes);
            for (digest, entry) in &cache.by_token {
                if entries <= keep_entries && bytes <= keep_bytes {
                    break;
                }
                victims.push(*digest);
                entries -= 1;
                bytes -= entry.bytes;
            }
            for victim in &victims {
                cache.by_token.remove(victim);
            }
            cache.bytes = bytes;
        }
        cache.by_session.retain(|_, w| w.strong_count() > 0);
    }

    /// Drops every cached token of a revoked session, and remembers the revocation so that no
    /// lookup under way caches the session again.
    pub fn forget_session(&self, session_id: &str) {
        let now = crate::support::now();
        if let Ok(mut cache) = self.cache.write() {
            cache.by_token.retain(|_, e| e.session.id() != session_id);
            cache.bytes = cache.by_token.values().map(|e| e.bytes).sum();
            cache.report();
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

    /// Drops one cached token (after it was rotated out), named by its [`token_hash`].
    pub fn forget_token(&self, hash: &str) {
        let Some(digest) = digest_of_hash(hash) else {
            tracing::warn!(hash, "not a token hash; nothing to forget");
            return;
        };
        if let Ok(mut cache) = self.cache.write() {
            if let Some(removed) = cache.by_token.remove(&digest) {
                cache.bytes -= removed.bytes;
                cache.report();
            }
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

    /// A stored session `id` (for an hour) and an access token of it.
    async fn stored_session_token(store: &Store, id: &str) -> (SessionRecord, String) {
        let mut s = session(now() + 3600);
        s.id = id.into();
        save(store, &s).await;
        let issued = issue_tokens(store, &s, POLICY, now()).await.unwrap();
        (s, issued.access_token)
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_memory_budget() {
        let (_d, store) = temp_store();
        let one = ActiveSession::new(session(now() + 3600)).approx_bytes() + ENTRY_OVERHEAD_BYTES;
        let budget = 10 * one;
        let auth = BearerAuthenticator::new(store.clone(), 1000, 3600).with_memory_budget(budget);
        for i in 0..40 {
            // A session each (tokens of one session share one in memory, but each is counted).
            let (_, token) = stored_session_token(&store, &format!("sid-{i}")).await;
            auth.authenticate(&token, now()).await.unwrap();
            let cache = auth.cache.read().unwrap();
            assert!(cache.bytes <= budget, "{} bytes cached, budget {budget}", cache.bytes);
            assert_eq!(cache.bytes, cache.by_token.values().map(|e| e.bytes).sum::<usize>());
            assert!(cache.by_token.len() <= 10, "{} entries", cache.by_token.len());
            // Shedding half keeps what was used last.
            assert!(
                cache.by_token.len() >= 5 || i < 5,
                "only {} cached",
                cache.by_token.len()
            );
            assert!(
                cache.by_session.len() <= cache.by_token.len(),
                "the session index is pruned too"
            );
        }
        let last = auth.cache.read().unwrap().by_token.len();
        // Forgetting a token gives its bytes back.
        let (s, token) = stored_session_token(&store, "sid-last").await;
        auth.authenticate(&token, now()).await.unwrap();
        let before = auth.cache.read().unwrap().bytes;
        auth.forget_token(&token_hash(&token));
        let cache = auth.cache.read().unwrap();
        let its_bytes = ActiveSession::new(s).approx_bytes() + ENTRY_OVERHEAD_BYTES;
        assert_eq!(cache.bytes, before - its_bytes, "{last} entries before");
    }

    #[tokio::test]
    async fn a_forgotten_token_is_read_from_the_store_again() {
        let (_d, store) = temp_store();
        let (_, access_token) = stored_session_token(&store, "sid").await;
        let auth = BearerAuthenticator::new(store.clone(), 1000, 3600);
        auth.authenticate(&access_token, now()).await.unwrap();
        auth.forget_token("not a hash");
        assert_eq!(
            auth.cache.read().unwrap().by_token.len(),
            1,
            "a malformed hash forgets nothing"
        );
        auth.forget_token(&token_hash(&access_token));
        assert!(auth.cache.read().unwrap().by_token.is_empty());
        store.delete(Table::Tokens, &token_hash(&access_token)).await.unwrap();
        assert!(
            auth.authenticate(&access_token, now()).await.is_err(),
            "not served from the cache once forgotten"
        );
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
