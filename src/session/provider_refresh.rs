//! Keeping the provider's access token (what `get_user_external_token()` returns) alive.
//!
//! Checked on each request, which costs a read of the token's expiry. Shortly before the token
//! expires one background task refreshes it (single flight per session) while requests go on
//! with the still-valid token; only a request that finds it already expired waits for the
//! refresh. The newest tokens are stored in one write. If the provider refuses the refresh
//! token, the provider login is over and so is the session. Tokens without an expiry (GitHub
//! OAuth apps) or without a refresh token are left as they are; mxgate's own session lifetime
//! governs those.

use super::ActiveSession;
use crate::providers::{ProviderError, ProviderSet};
use crate::store::Store;
use std::sync::Arc;

/// Refresh this long before expiry, or a fifth of the token's lifetime if that is shorter.
const LEAD_SECS: u64 = 60;

/// What a request should do after the check.
#[derive(Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Go on (the token is valid, or cannot be refreshed, or the provider is unreachable).
    Usable,
    /// The provider refused the refresh: the provider login is over, so the caller ends the session.
    SessionEnded,
}

#[derive(Clone)]
pub struct ProviderRefresher {
    providers: Arc<ProviderSet>,
    store: Store,
}

// === impl ProviderRefresher ===

impl ProviderRefresher {
    pub fn new(providers: Arc<ProviderSet>, store: Store) -> Self {
        Self { providers, store }
    }

    pub async fn ensure_fresh(&self, session: &Arc<ActiveSession>, now: u64) -> Freshness {
        let (Some(expires_at), true, obtained_at) = session.provider_expiry() else {
            return Freshness::Usable;
        };
        let lead = LEAD_SECS.min(expires_at.saturating_sub(obtained_at) / 5);
        if now + lead < expires_at {
            return Freshness::Usable;
        }
        if now < expires_at {
            // Still valid: refresh in the background unless a refresh is already running.
            let this = self.clone();
            let session = session.clone();
            tokio::spawn(async move {
                if let Ok(_guard) = session.refreshing.try_lock() {
                    this.refresh_if_due(&session, expires_at).await;
                }
            });
            return Freshness::Usable;
        }
        let _guard = session.refreshing.lock().await;
        self.refresh_if_due(&session.clone(), expires_at).await
    }

    /// Refreshes unless another task already replaced the tokens that expire at `expires_at`.
    async fn refresh_if_due(&self, session: &Arc<ActiveSession>, expires_at: u64) -> Freshness {
        let current = session.provider_tokens();
        if current.expires_at != Some(expires_at) {
            return Freshness::Usable;
        }
        let Some(refresh_token) = current.refresh_token.as_deref() else {
            return Freshness::Usable;
        };
        // The session's own provider (it remembers which one the person signed in with).
        let entry = self
            .providers
            .by_name(&session.record.user.provider)
            .unwrap_or(self.providers.primary());
        match entry.provider.refresh(refresh_token).await {
            Ok(tokens) => {
                let record = session.replace_provider_tokens(tokens);
                if let Err(e) = record.save(&self.store).await {
                    tracing::error!(error = %e, session = %session.id(), "refreshed provider tokens could not be stored");
                }
                tracing::debug!(session = %session.id(), "provider tokens refreshed");
                Freshness::Usable
            }
            Err(ProviderError::Rejected { error, .. }) => {
                tracing::info!(session = %session.id(), provider_error = %error, "the provider refused the refresh");
                Freshness::SessionEnded
            }
            Err(e) => {
                tracing::warn!(error = %e, session = %session.id(), "provider token refresh failed; keeping the current token");
                Freshness::Usable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::user::{ProviderTokens, UserIdentity};
    use crate::providers::{LoginCallback, LoginOutcome, LoginRequest, Provider};
    use crate::session::SessionRecord;
    use crate::store::{cipher::RecordCipher, now, RedbStore};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts refreshes; answers with `outcome`.
    struct CountingProvider {
        calls: AtomicUsize,
        outcome: fn() -> Result<ProviderTokens, ProviderError>,
    }

    #[async_trait]
    impl Provider for CountingProvider {
        fn name(&self) -> &str {
            "counting"
        }
        async fn authorization_url(&self, _: &LoginRequest<'_>) -> Result<url::Url, ProviderError> {
            Err(ProviderError::Unsupported("counting"))
        }
        async fn complete_login(&self, _: &LoginCallback<'_>) -> Result<LoginOutcome, ProviderError> {
            Err(ProviderError::Unsupported("counting"))
        }
        async fn refresh(&self, refresh_token: &str) -> Result<ProviderTokens, ProviderError> {
            assert_eq!(refresh_token, "rt-1");
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            (self.outcome)()
        }
    }

    fn fresh_tokens() -> Result<ProviderTokens, ProviderError> {
        Ok(ProviderTokens {
            access_token: "at-2".into(),
            refresh_token: Some("rt-2".into()),
            expires_at: Some(now() + 3600),
            obtained_at: now(),
            ..Default::default()
        })
    }

    fn setup(
        expires_at: Option<u64>,
        outcome: fn() -> Result<ProviderTokens, ProviderError>,
    ) -> (
        tempfile::TempDir,
        Store,
        Arc<CountingProvider>,
        ProviderRefresher,
        Arc<ActiveSession>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(
            Arc::new(RedbStore::open(&dir.path().join("s.redb")).unwrap()),
            RecordCipher::from_secret(b"k"),
        );
        let provider = Arc::new(CountingProvider {
            calls: AtomicUsize::new(0),
            outcome,
        });
        let entry = crate::providers::ProviderEntry {
            provider: provider.clone(),
            callback_path: "/callback".into(),
            display_name: "Counting IdP".into(),
        };
        let refresher = ProviderRefresher::new(Arc::new(ProviderSet::new(entry, vec![])), store.clone());
        let session = Arc::new(ActiveSession::new(SessionRecord {
            id: "sid".into(),
            user: UserIdentity::default(),
            provider_tokens: ProviderTokens {
                access_token: "at-1".into(),
                refresh_token: Some("rt-1".into()),
                expires_at,
                obtained_at: now() - 3600,
                ..Default::default()
            },
            client_id: "c".into(),
            scope: vec![],
            resource: "r".into(),
            created_at: now(),
            expires_at: now() + 86400,
        }));
        (dir, store, provider, refresher, session)
    }

    #[tokio::test]
    async fn a_valid_token_or_one_without_expiry_is_left_alone() {
        let (_d, _s, provider, refresher, session) = setup(Some(now() + 3600), fresh_tokens);
        assert_eq!(refresher.ensure_fresh(&session, now()).await, Freshness::Usable);
        let (_d2, _s2, provider2, refresher2, session2) = setup(None, fresh_tokens);
        assert_eq!(refresher2.ensure_fresh(&session2, now()).await, Freshness::Usable);
        assert_eq!(
            provider.calls.load(Ordering::SeqCst) + provider2.calls.load(Ordering::SeqCst),
            0
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_token_is_refreshed_once_for_concurrent_requests_and_stored() {
        let (_d, store, provider, refresher, session) = setup(Some(now() - 1), fresh_tokens);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (refresher, session) = (refresher.clone(), session.clone());
            tasks.spawn(async move { refresher.ensure_fresh(&session, now()).await });
        }
        while let Some(result) = tasks.join_next().await {
            assert_eq!(result.unwrap(), Freshness::Usable);
        }
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1, "single flight");
        assert_eq!(session.provider_tokens().access_token, "at-2");
        let stored = SessionRecord::load(&store, "sid").await.unwrap().unwrap();
        assert_eq!(
            stored.provider_tokens.refresh_token.as_deref(),
            Some("rt-2"),
            "the newest refresh token is kept"
        );
    }

    #[tokio::test]
    async fn a_token_near_expiry_is_refreshed_in_the_background() {
        let (_d, _s, provider, refresher, session) = setup(Some(now() + 30), fresh_tokens);
        assert_eq!(refresher.ensure_fresh(&session, now()).await, Freshness::Usable);
        assert_eq!(
            session.provider_tokens().access_token,
            "at-1",
            "the request did not wait"
        );
        for _ in 0..500 {
            if session.provider_tokens().access_token == "at-2" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(session.provider_tokens().access_token, "at-2");
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refused_refresh_ends_the_session_and_an_unreachable_provider_does_not() {
        let (_d, _s, _p, refresher, session) = setup(Some(now() - 1), || {
            Err(ProviderError::Rejected {
                provider: "p".into(),
                error: "invalid_grant".into(),
                description: None,
            })
        });
        assert_eq!(refresher.ensure_fresh(&session, now()).await, Freshness::SessionEnded);

        let (_d, _s, _p, refresher, session) = setup(Some(now() - 1), || {
            Err(ProviderError::Unreachable {
                provider: "p".into(),
                what: "the token endpoint",
                message: "connection refused".into(),
            })
        });
        assert_eq!(refresher.ensure_fresh(&session, now()).await, Freshness::Usable);
        assert_eq!(session.provider_tokens().access_token, "at-1");
    }
}
