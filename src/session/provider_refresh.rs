//! Keeping the provider's access token (what `get_user_external_token()` returns) alive. One
//! renewal serves both modes:
//!
//! - **Request path** ([`Sessions::ensure_fresh`]): checked on each request, which costs a read
//!   of the token's expiry. Shortly before the token expires one background task refreshes it
//!   (single flight per session) while requests go on with the still-valid token; only a
//!   request that finds it already expired waits for the refresh.
//! - **Stateless mode** ([`Sessions::renew_provider_tokens_before`]): access tokens carry the
//!   provider token and the request path writes nothing back, so the refresh grant renews it
//!   when it would expire within the new access token's life.
//!
//! With a store shared by several replicas the single flight spans them: the replica that takes
//! the session's refresh lock in the store (insert-if-absent, expiring after [`LOCK_SECS`], well
//! past the provider call's timeout; its random value is the fence: only its holder releases it)
//! refreshes; the others wait and read its result from the store. Providers that rotate refresh
//! tokens would otherwise see the spent one again and end the sign-in.
//!
//! The newest tokens are stored in one write (never bringing back a session revoked meanwhile).
//! If the provider refuses the refresh token, the provider login is over and so is the session:
//! it is revoked here. An unreachable provider leaves the current token in use. Tokens without
//! an expiry (GitHub OAuth apps) or without a refresh token are left as they are; mxgate's own
//! session lifetime governs those.

use super::{ActiveSession, SessionRecord, Sessions};
use crate::audit::AuditEvent;
use crate::metrics::RefreshResult;
use crate::providers::ProviderError;
use crate::store::Table;
use std::sync::Arc;

/// Refresh this long before expiry, or a fifth of the token's lifetime if that is shorter.
const LEAD_SECS: u64 = 60;

/// How long a replica's refresh lock holds (the provider call times out after 15 s).
const LOCK_SECS: u64 = 45;

/// How often a replica waiting for another's refresh looks at the store.
const WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(100);

/// What a request should do after the check.
#[derive(Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Go on (the token is valid, or cannot be refreshed, or the provider is unreachable).
    Usable,
    /// The provider login is over and the session has been revoked: refuse the request.
    SessionEnded,
}

/// What renewing a session's provider tokens came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The record holds new tokens (stored; a store failure is logged, not fatal).
    Renewed,
    /// Nothing to renew, or the provider could not be reached: the current tokens stay.
    Kept,
    /// The provider refused the refresh (the session is revoked now), or the session was
    /// revoked meanwhile.
    Ended,
}

// === impl Sessions (provider tokens) ===

impl Sessions {
    /// The request path: keeps `session`'s provider token usable.
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
        self.refresh_if_due(session, expires_at).await
    }

    /// Refreshes unless another task already replaced the tokens that expire at `expires_at`.
    /// The refresh token is read from the store (memory holds only the access token): the
    /// stored session is the current one, as every renewal writes it before installing it.
    async fn refresh_if_due(&self, session: &ActiveSession, expires_at: u64) -> Freshness {
        if session.provider_expiry().0 != Some(expires_at) {
            return Freshness::Usable;
        }
        let mut record = match self.load(session.id()).await {
            Ok(Some(record)) => record,
            Ok(None) => return Freshness::SessionEnded,
            Err(e) => {
                tracing::warn!(error = %e, session = %session.id(), "cannot read the session to refresh its provider tokens");
                return Freshness::Usable;
            }
        };
        if record.provider_tokens.expires_at != Some(expires_at) {
            // Renewed meanwhile (by another replica, or before this replica loaded the session).
            session.install_provider_tokens(record.provider_tokens);
            return Freshness::Usable;
        }
        match self.renew(&mut record).await {
            Renewal::Renewed => {
                session.install_provider_tokens(record.provider_tokens);
                Freshness::Usable
            }
            Renewal::Kept => Freshness::Usable,
            Renewal::Ended => Freshness::SessionEnded,
        }
    }

    /// Stateless mode: renews `session`'s provider tokens if they expire by `horizon` (the end
    /// of the access token about to be issued).
    pub async fn renew_provider_tokens_before(&self, session: &mut SessionRecord, horizon: u64) -> Renewal {
        match session.provider_tokens.expires_at {
            Some(expires_at) if expires_at <= horizon => self.renew(session).await,
            _ => Renewal::Kept,
        }
    }

    /// The renewal both paths use: once across replicas when they share the store.
    async fn renew(&self, session: &mut SessionRecord) -> Renewal {
        if self.store().kv().is_shared() {
            self.renew_once_across_replicas(session).await
        } else {
            self.renew_here(session).await
        }
    }

    /// Takes the session's refresh lock and renews, or waits for the replica holding it and
    /// adopts what it stored.
    async fn renew_once_across_replicas(&self, session: &mut SessionRecord) -> Renewal {
        let fence = crate::support::random_id();
        let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(LOCK_SECS);
        loop {
            match self.load(&session.id).await {
                Ok(Some(stored)) if renewed_elsewhere(&stored, session) => {
                    // Another replica renewed them already.
                    *session = stored;
                    return Renewal::Renewed;
                }
                Ok(Some(_)) => {}
                Ok(None) => return Renewal::Ended,
                Err(e) => {
                    tracing::warn!(error = %e, session = %session.id, "cannot read the session to refresh its provider tokens");
                    return Renewal::Kept;
                }
            }
            let lock = self
                .store()
                .insert_new(Table::Locks, &session.id, &fence, crate::support::now() + LOCK_SECS)
                .await;
            match lock {
                Ok(true) => {
                    let renewal = self.renew_here(session).await;
                    self.release_lock(&session.id, &fence).await;
                    return renewal;
                }
                Ok(false) if tokio::time::Instant::now() < give_up => tokio::time::sleep(WAIT_STEP).await,
                Ok(false) => {
                    tracing::warn!(session = %session.id, "another replica's provider refresh did not finish; keeping the current token");
                    return Renewal::Kept;
                }
                Err(e) => {
                    tracing::warn!(error = %e, session = %session.id, "cannot take the provider refresh lock");
                    return Renewal::Kept;
                }
            }
        }
    }

    /// Releases the refresh lock if it is still this replica's (it may have expired and been
    /// taken by another).
    async fn release_lock(&self, session_id: &str, fence: &str) {
        let released = self
            .store()
            .compare_and_swap_value(Table::Locks, session_id, &fence, &"", 1)
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, session = %session_id, "cannot release the provider refresh lock; it expires by itself");
        }
    }

    /// Refreshes at the provider the session was signed in with, and stores the session with
    /// the new tokens.
    async fn renew_here(&self, session: &mut SessionRecord) -> Renewal {
        let Some(refresh_token) = session.provider_tokens.refresh_token.clone() else {
            return Renewal::Kept;
        };
        let providers = self.providers();
        let entry = providers.by_name(&session.user.provider).unwrap_or(providers.primary());
        let counted = |result| crate::metrics::metrics().provider_refresh(entry.provider.name(), result);
        match entry.provider.refresh(&refresh_token).await {
            Ok(tokens) => {
                counted(RefreshResult::Ok);
                session.provider_tokens = tokens;
                match self.update(session).await {
                    Ok(true) => {
                        tracing::debug!(session = %session.id, "provider tokens refreshed");
                        Renewal::Renewed
                    }
                    Ok(false) => {
                        tracing::info!(session = %session.id, "the session was revoked while its provider tokens were refreshed");
                        Renewal::Ended
                    }
                    Err(e) => {
                        tracing::error!(error = %e, session = %session.id, "refreshed provider tokens could not be stored");
                        Renewal::Renewed
                    }
                }
            }
            Err(ProviderError::Rejected { error, .. }) => {
                counted(RefreshResult::Rejected);
                tracing::info!(session = %session.id, provider_error = %error, "the provider refused the refresh; the session ends");
                let reason = format!("the provider refused the refresh (`{error}`); the session ends");
                crate::audit::record(session.audit(AuditEvent::ProviderRefreshFailed).reason(reason));
                self.revoke_session(&session.id).await;
                Renewal::Ended
            }
            Err(e) => {
                counted(RefreshResult::Failed);
                tracing::warn!(error = %e, session = %session.id, "provider token refresh failed; keeping the current token");
                let reason = format!("{e}; the current provider token is kept");
                crate::audit::record(session.audit(AuditEvent::ProviderRefreshFailed).reason(reason));
                Renewal::Kept
            }
        }
    }
}

/// Whether the stored session holds other provider tokens than the ones about to be renewed.
fn renewed_elsewhere(stored: &SessionRecord, ours: &SessionRecord) -> bool {
    let (a, b) = (&stored.provider_tokens, &ours.provider_tokens);
    a.access_token != b.access_token || a.expires_at != b.expires_at || a.refresh_token != b.refresh_token
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::user::ProviderTokens;
    use crate::session::test_support::{fresh_tokens, record, Fixture, PROVIDER};
    use crate::support::now;

    /// A stored session whose provider tokens `at-1`/`rt-1` expire at `expires_at`.
    async fn stored_session(f: &Fixture, expires_at: Option<u64>) -> SessionRecord {
        let mut session = record("sid", now() + 86400);
        session.provider_tokens = ProviderTokens {
            access_token: "at-1".into(),
            refresh_token: Some("rt-1".into()),
            expires_at,
            obtained_at: now() - 3600,
            ..Default::default()
        };
        f.sessions.create(&session).await.unwrap();
        session
    }

    /// A fixture whose provider answers `outcome`, and the session on the request path.
    async fn setup(
        expires_at: Option<u64>,
        outcome: fn() -> Result<ProviderTokens, ProviderError>,
    ) -> (Fixture, Arc<ActiveSession>) {
        let f = Fixture::with_refresh(outcome);
        let session = stored_session(&f, expires_at).await;
        (f, Arc::new(ActiveSession::new(session)))
    }

    fn refused() -> Result<ProviderTokens, ProviderError> {
        Err(ProviderError::Rejected {
            provider: "p".into(),
            error: "invalid_grant".into(),
            description: None,
        })
    }

    fn unreachable() -> Result<ProviderTokens, ProviderError> {
        Err(ProviderError::Unreachable {
            provider: "p".into(),
            what: "the token endpoint",
            message: "connection refused".into(),
        })
    }

    async fn stored_refresh_token(f: &Fixture) -> Option<String> {
        let stored = f.sessions.load("sid").await.unwrap()?;
        stored.provider_tokens.refresh_token
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_sharing_a_store_refresh_once_and_all_get_the_result() {
        let Some((_redis, replicas)) = Fixture::replicas_on_redis(3) else {
            return;
        };
        let stored = stored_session(&replicas[0], Some(now() - 1)).await;
        let mut tasks = tokio::task::JoinSet::new();
        let mut actives = Vec::new();
        for replica in &replicas {
            // Each replica has the session in its own memory, with the expired token.
            let active = Arc::new(ActiveSession::new(stored.clone()));
            actives.push(active.clone());
            for _ in 0..3 {
                let (sessions, active) = (replica.sessions.clone(), active.clone());
                tasks.spawn(async move { sessions.ensure_fresh(&active, now()).await });
            }
        }
        while let Some(result) = tasks.join_next().await {
            assert_eq!(result.unwrap(), Freshness::Usable);
        }
        assert_eq!(replicas[0].refreshes(), 1, "one provider refresh for every replica");
        for active in actives {
            assert_eq!(active.provider_access_token(), "at-2");
        }
        assert_eq!(stored_refresh_token(&replicas[2]).await.as_deref(), Some("rt-2"));
        assert!(
            replicas[0]
                .store
                .get::<String>(Table::Locks, "sid")
                .await
                .unwrap()
                .is_none(),
            "the lock is released"
        );
    }

    #[tokio::test]
    async fn a_valid_token_or_one_without_expiry_is_left_alone() {
        let (f, session) = setup(Some(now() + 3600), fresh_tokens).await;
        assert_eq!(f.sessions.ensure_fresh(&session, now()).await, Freshness::Usable);
        let (f2, session2) = setup(None, fresh_tokens).await;
        assert_eq!(f2.sessions.ensure_fresh(&session2, now()).await, Freshness::Usable);
        assert_eq!(f.refreshes() + f2.refreshes(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_token_is_refreshed_once_for_concurrent_requests_and_stored() {
        let (f, session) = setup(Some(now() - 1), fresh_tokens).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (sessions, session) = (f.sessions.clone(), session.clone());
            tasks.spawn(async move { sessions.ensure_fresh(&session, now()).await });
        }
        while let Some(result) = tasks.join_next().await {
            assert_eq!(result.unwrap(), Freshness::Usable);
        }
        assert_eq!(f.refreshes(), 1, "single flight");
        assert_eq!(f.provider.presented.lock().unwrap().as_deref(), Some("rt-1"));
        assert_eq!(session.provider_access_token(), "at-2");
        assert_eq!(
            stored_refresh_token(&f).await.as_deref(),
            Some("rt-2"),
            "the newest refresh token is kept"
        );
    }

    #[tokio::test]
    async fn a_token_near_expiry_is_refreshed_in_the_background() {
        let (f, session) = setup(Some(now() + 30), fresh_tokens).await;
        assert_eq!(f.sessions.ensure_fresh(&session, now()).await, Freshness::Usable);
        assert_eq!(session.provider_access_token(), "at-1", "the request did not wait");
        for _ in 0..500 {
            if session.provider_access_token() == "at-2" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(session.provider_access_token(), "at-2");
        assert_eq!(f.refreshes(), 1);
    }

    #[tokio::test]
    async fn a_refused_refresh_ends_the_session_and_an_unreachable_provider_does_not() {
        let counted = |result| crate::metrics::metrics().provider_refreshes(PROVIDER, result);
        let rejected = counted(RefreshResult::Rejected);
        let (f, session) = setup(Some(now() - 1), refused).await;
        assert_eq!(f.sessions.ensure_fresh(&session, now()).await, Freshness::SessionEnded);
        assert!(f.sessions.load("sid").await.unwrap().is_none(), "revoked");
        assert!(counted(RefreshResult::Rejected) > rejected, "counted as rejected");

        let failed = counted(RefreshResult::Failed);
        let (f, session) = setup(Some(now() - 1), unreachable).await;
        assert_eq!(f.sessions.ensure_fresh(&session, now()).await, Freshness::Usable);
        assert!(counted(RefreshResult::Failed) > failed, "counted as failed");
        assert_eq!(session.provider_access_token(), "at-1");
        assert_eq!(stored_refresh_token(&f).await.as_deref(), Some("rt-1"));
    }

    #[tokio::test]
    async fn a_session_revoked_during_the_refresh_is_not_brought_back() {
        let (f, session) = setup(Some(now() - 1), fresh_tokens).await;
        let check = tokio::spawn({
            let (sessions, session) = (f.sessions.clone(), session.clone());
            async move { sessions.ensure_fresh(&session, now()).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await; // the provider is answering
        f.sessions.revoke_session("sid").await;
        assert_eq!(check.await.unwrap(), Freshness::SessionEnded);
        assert!(f.sessions.load("sid").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn stateless_renewal_is_the_same_refresh_as_the_request_path() {
        let f = Fixture::new();
        let mut session = stored_session(&f, Some(now() + 600)).await;
        let horizon = now() + 300;
        assert_eq!(
            f.sessions.renew_provider_tokens_before(&mut session, horizon).await,
            Renewal::Kept,
            "valid beyond the new access token's life"
        );
        assert_eq!(f.refreshes(), 0);

        let horizon = now() + 900;
        assert_eq!(
            f.sessions.renew_provider_tokens_before(&mut session, horizon).await,
            Renewal::Renewed
        );
        assert_eq!(f.refreshes(), 1);
        assert_eq!(session.provider_tokens.access_token, "at-2");
        assert_eq!(stored_refresh_token(&f).await.as_deref(), Some("rt-2"));

        let f = Fixture::with_refresh(refused);
        let mut session = stored_session(&f, Some(now() - 1)).await;
        assert_eq!(
            f.sessions.renew_provider_tokens_before(&mut session, now()).await,
            Renewal::Ended
        );
        assert!(
            f.sessions.load("sid").await.unwrap().is_none(),
            "revoked, as on the request path"
        );

        let f = Fixture::with_refresh(unreachable);
        let mut session = stored_session(&f, Some(now() - 1)).await;
        assert_eq!(
            f.sessions.renew_provider_tokens_before(&mut session, now()).await,
            Renewal::Kept
        );
        assert_eq!(session.provider_tokens.access_token, "at-1");
    }
}
