//! Fixtures for the tests of `session/`: a store in a temporary folder, a provider whose token
//! refresh is scripted, and the services over them.

use super::bearer::BearerAuthenticator;
use super::tokens::IssuePolicy;
use super::{SessionRecord, Sessions};
use crate::identity::user::{ProviderTokens, UserIdentity};
use crate::providers::{
    LoginCallback, LoginOutcome, LoginRequest, Provider, ProviderEntry, ProviderError, ProviderSet,
};
use crate::store::{cipher::RecordCipher, RedbStore, Store, Table};
use crate::support::now;
use async_trait::async_trait;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const PROVIDER: &str = "scripted";

/// Opaque tokens: a minute's access token and a ten minutes' refresh token.
pub const POLICY: IssuePolicy = IssuePolicy {
    access_ttl: Duration::from_secs(60),
    refresh_ttl: Duration::from_secs(600),
    with_refresh_token: true,
    stateless: false,
};

/// An empty store in a temporary folder (kept as long as the `TempDir`).
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let kv = RedbStore::open(&dir.path().join("s.redb")).unwrap();
    (dir, Store::new(Arc::new(kv), RecordCipher::from_secret(b"k")))
}

/// Stores a session record as [`Sessions::create`] does, without its index entry.
pub async fn save(store: &Store, session: &SessionRecord) {
    store
        .put_sealed(Table::Sessions, &session.id, session, session.expires_at)
        .await
        .unwrap();
}

/// Alice's session `id` for client `c`, ending at `expires_at`.
pub fn record(id: &str, expires_at: u64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        user: UserIdentity {
            provider: PROVIDER.into(),
            user_id: "alice".into(),
            username: "alice".into(),
            ..Default::default()
        },
        provider_tokens: Default::default(),
        client_id: "c".into(),
        scope: vec![],
        resource: "r".into(),
        created_at: now(),
        expires_at,
        idp_session: None,
    }
}

/// `user`'s session `id`, ending in an hour.
pub fn record_of(id: &str, user: &str) -> SessionRecord {
    let mut session = record(id, now() + 3600);
    session.user.user_id = user.into();
    session.user.username = user.into();
    session
}

/// Counts refreshes, remembers the refresh token presented, answers with `outcome` (after a
/// moment, so concurrent callers overlap).
pub struct ScriptedProvider {
    pub calls: AtomicUsize,
    pub presented: Mutex<Option<String>>,
    outcome: fn() -> Result<ProviderTokens, ProviderError>,
}

#[async_trait]
impl Provider for ScriptedProvider {
    fn name(&self) -> &str {
        PROVIDER
    }
    async fn authorization_url(&self, _: &LoginRequest<'_>) -> Result<url::Url, ProviderError> {
        Err(ProviderError::Unsupported("scripted"))
    }
    async fn complete_login(&self, _: &LoginCallback<'_>) -> Result<LoginOutcome, ProviderError> {
        Err(ProviderError::Unsupported("scripted"))
    }
    async fn refresh(&self, refresh_token: &str) -> Result<ProviderTokens, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self.presented.lock().unwrap() = Some(refresh_token.to_string());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        (self.outcome)()
    }
}

/// What a provider answers to a refresh: new tokens `at-2`/`rt-2`, valid for an hour.
pub fn fresh_tokens() -> Result<ProviderTokens, ProviderError> {
    Ok(ProviderTokens {
        access_token: "at-2".into(),
        refresh_token: Some("rt-2".into()),
        expires_at: Some(now() + 3600),
        obtained_at: now(),
        ..Default::default()
    })
}

/// A store, the request cache, the scripted provider and [`Sessions`] over them.
pub struct Fixture {
    _dir: Box<dyn std::any::Any + Send + Sync>,
    pub store: Store,
    pub bearer: Arc<BearerAuthenticator>,
    pub provider: Arc<ScriptedProvider>,
    pub sessions: Sessions,
}

// === impl Fixture ===

impl Fixture {
    /// Provider refreshes succeed ([`fresh_tokens`]).
    pub fn new() -> Self {
        Self::with_refresh(fresh_tokens)
    }

    pub fn with_refresh(outcome: fn() -> Result<ProviderTokens, ProviderError>) -> Self {
        let (dir, store) = temp_store();
        Self::on_store(Box::new(dir), store, outcome)
    }

    /// Replicas sharing a real Redis: each its own request cache and [`Sessions`], one provider
    /// (so its refreshes are counted across them). `None` when Redis tests are skipped.
    pub fn replicas_on_redis(n: usize) -> Option<(crate::store::test_redis::TestRedis, Vec<Self>)> {
        let redis = crate::store::test_redis::TestRedis::start()?;
        let first = Self::on_redis(&redis, fresh_tokens);
        let provider = first.provider.clone();
        let mut replicas = vec![first];
        for _ in 1..n {
            let mut next = Self::on_redis(&redis, fresh_tokens);
            next.provider = provider.clone();
            let entry = ProviderEntry {
                provider: provider.clone(),
                callback_path: "/callback".into(),
                display_name: "Scripted IdP".into(),
            };
            next.sessions = Sessions::new(
                next.store.clone(),
                next.bearer.clone(),
                Arc::new(ProviderSet::new(entry, vec![])),
            );
            replicas.push(next);
        }
        Some((redis, replicas))
    }

    fn on_redis(
        redis: &crate::store::test_redis::TestRedis,
        outcome: fn() -> Result<ProviderTokens, ProviderError>,
    ) -> Self {
        let kv = crate::store::RedisStore::open(&redis.settings("replicas:")).unwrap();
        let store = Store::new(Arc::new(kv), RecordCipher::from_secret(b"k"));
        Self::on_store(Box::new(()), store, outcome)
    }

    fn on_store(
        guard: Box<dyn std::any::Any + Send + Sync>,
        store: Store,
        outcome: fn() -> Result<ProviderTokens, ProviderError>,
    ) -> Self {
        let bearer = Arc::new(BearerAuthenticator::new(store.clone(), 1000, 3600));
        let provider = Arc::new(ScriptedProvider {
            calls: AtomicUsize::new(0),
            presented: Mutex::new(None),
            outcome,
        });
        let entry = ProviderEntry {
            provider: provider.clone(),
            callback_path: "/callback".into(),
            display_name: "Scripted IdP".into(),
        };
        let providers = Arc::new(ProviderSet::new(entry, vec![]));
        Self {
            _dir: guard,
            sessions: Sessions::new(store.clone(), bearer.clone(), providers),
            store,
            bearer,
            provider,
        }
    }

    pub fn refreshes(&self) -> usize {
        self.provider.calls.load(Ordering::SeqCst)
    }
}
