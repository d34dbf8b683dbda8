//! The one owner of a session's life: created at login, given tokens, its provider tokens kept
//! fresh ([`super::provider_refresh`]), its refresh tokens rotated ([`super::rotation`]), and
//! ended — one session, every session of a user, or one access token. Only `session/` writes
//! the `sessions`, `tokens` and `user_sessions` tables; the OAuth endpoints, the admission
//! pipeline and the admin socket ask [`Sessions`].
//!
//! Revocation reaches the request cache ([`BearerAuthenticator`]) before the store, so a lookup
//! under way cannot cache a session that is being revoked. Expired sessions and tokens are
//! removed by the store's periodic purge, with every other expired record.

use super::bearer::BearerAuthenticator;
use super::tokens::{IssuePolicy, IssuedTokens, TokenKind, TokenRecord};
use super::{idp_session_prefix, user_session_key, SessionRecord, INDEX_SEPARATOR};
use crate::identity::user::UserIdentity;
use crate::providers::ProviderSet;
use crate::store::{ReplicaEvent, Store, StoreError, Table, WriteBatch};
use crate::support::token_hash;
use std::sync::Arc;

/// Creates, renews, rotates and revokes sessions and their tokens (cheap to clone).
#[derive(Clone)]
pub struct Sessions {
    store: Store,
    bearer: Arc<BearerAuthenticator>,
    /// The providers sessions were signed in with, whose tokens are refreshed.
    providers: Arc<ProviderSet>,
}

/// What `/revoke` did with a token.
#[derive(Debug, PartialEq)]
pub enum TokenRevocation {
    /// A refresh token: its whole session ended (RFC 7009 §2.1). `user`: whose it was.
    SessionEnded {
        session_id: String,
        user: Option<UserIdentity>,
    },
    /// An access token: only it; its session goes on.
    AccessToken {
        session_id: String,
        user: Option<UserIdentity>,
    },
    /// Another client's token: nothing was revoked.
    OtherClients,
    /// Unknown, expired or already revoked.
    Unknown,
}

// === impl Sessions ===

impl Sessions {
    pub fn new(store: Store, bearer: Arc<BearerAuthenticator>, providers: Arc<ProviderSet>) -> Self {
        Self {
            store,
            bearer,
            providers,
        }
    }

    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    pub(super) fn providers(&self) -> &ProviderSet {
        &self.providers
    }

    /// The request-path check of bearer tokens, which revocations update.
    pub fn bearer(&self) -> &Arc<BearerAuthenticator> {
        &self.bearer
    }

    /// Stores a new session (sealed), its entry in its user's index and, when the provider
    /// named its own session, in the provider-session index (for back-channel logout): in one
    /// write, so one durable commit (redb) and never a session without its index entries.
    pub async fn create(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        self.store
            .batch_put_sealed(&mut batch, Table::Sessions, &session.id, session, session.expires_at)?;
        let entry = user_session_key(&session.user.key(), &session.id);
        self.store.batch_put(
            &mut batch,
            Table::UserSessions,
            &entry,
            &session.expires_at,
            session.expires_at,
        );
        if let Some(idp_session) = &session.idp_session {
            let entry = idp_session_prefix(&session.user.provider, idp_session) + &session.id;
            self.store.batch_put(
                &mut batch,
                Table::IdpSessions,
                &entry,
                &session.expires_at,
                session.expires_at,
            );
        }
        self.store.put_all(batch).await
    }

    /// Stores a session's changed record, only while it lives: a session revoked meanwhile is
    /// not brought back. Returns whether it was stored.
    pub(super) async fn update(&self, session: &SessionRecord) -> Result<bool, StoreError> {
        self.store
            .replace_sealed(Table::Sessions, &session.id, session, session.expires_at)
            .await
    }

    /// A stored session, expired or not.
    pub async fn load(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        SessionRecord::load(&self.store, session_id).await
    }

    /// A session that has not ended by `now`.
    pub async fn live(&self, session_id: &str, now: u64) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.load(session_id).await?.filter(|s| s.expires_at > now))
    }

    /// `(user, session id)` of a user's (not yet expired) sessions; `user` is `provider:user id`,
    /// or every user's sessions when `None`. Entries of sessions revoked meanwhile may remain;
    /// loading tells.
    pub async fn indexed(&self, user: Option<&str>) -> Result<Vec<(String, String)>, StoreError> {
        let prefix = user.map(|u| format!("{u}{INDEX_SEPARATOR}")).unwrap_or_default();
        let entries: Vec<(String, u64)> = self.store.list_prefix(Table::UserSessions, &prefix).await?;
        Ok(entries
            .into_iter()
            .filter_map(|(key, _)| {
                key.rsplit_once(INDEX_SEPARATOR)
                    .map(|(u, s)| (u.to_string(), s.to_string()))
            })
            .collect())
    }

    /// Issues a new access token (and refresh token when the policy says so) for a session.
    pub async fn issue_tokens(
        &self,
        session: &SessionRecord,
        policy: IssuePolicy,
        now: u64,
    ) -> Result<IssuedTokens, StoreError> {
        super::tokens::issue_tokens(&self.store, session, policy, now).await
    }

    /// Ends a session: its tokens stop working at once, here and in the request cache (and, with
    /// a shared store, in the other replicas' caches once the record is gone). Returns whether
    /// there was such a session.
    pub async fn revoke_session(&self, session_id: &str) -> bool {
        self.bearer.forget_session(session_id);
        let existed = match self.store.delete(Table::Sessions, session_id).await {
            Ok(existed) => existed,
            Err(e) => {
                tracing::error!(error = %e, session = %session_id, "could not revoke a session");
                false
            }
        };
        self.bearer
            .announce(ReplicaEvent::SessionRevoked(session_id.to_string()))
            .await;
        if existed {
            crate::metrics::metrics().revoked(crate::metrics::Revoked::Session);
        }
        existed
    }

    /// Ends a session like [`Self::revoke_session`], and says whose it was (read just before,
    /// for the audit record); `None` when there was no such session.
    pub async fn revoke_session_of_user(&self, session_id: &str) -> Option<UserIdentity> {
        let user = self.user_of(session_id).await;
        self.revoke_session(session_id).await.then_some(user).flatten()
    }

    /// The user of a stored session, if it can be read.
    async fn user_of(&self, session_id: &str) -> Option<UserIdentity> {
        self.load(session_id).await.ok().flatten().map(|s| s.user)
    }

    /// Ends every session of a user (`provider:user id`); returns how many there were.
    pub async fn revoke_user_sessions(&self, user: &str) -> Result<usize, StoreError> {
        let prefix = format!("{user}{INDEX_SEPARATOR}");
        Ok(self.revoke_indexed(Table::UserSessions, &prefix).await?.len())
    }

    /// Ends every session signed in within the provider's session `idp_session` (OpenID
    /// Connect `sid`, named by a back-channel logout); returns their users, one per session.
    pub async fn revoke_idp_session(&self, provider: &str, idp_session: &str) -> Result<Vec<UserIdentity>, StoreError> {
        self.revoke_indexed(Table::IdpSessions, &idp_session_prefix(provider, idp_session))
            .await
    }

    /// Ends the sessions an index lists under `prefix` (keys end with the session id) and
    /// removes their entries; returns the users of the sessions that were still there.
    async fn revoke_indexed(&self, index: Table, prefix: &str) -> Result<Vec<UserIdentity>, StoreError> {
        let entries: Vec<(String, u64)> = self.store.list_prefix(index, prefix).await?;
        let mut ended = Vec::new();
        for (key, _) in entries {
            let Some((_, session_id)) = key.rsplit_once(INDEX_SEPARATOR) else {
                continue;
            };
            let user = self.load(session_id).await.ok().flatten().map(|s| s.user);
            if self.revoke_session(session_id).await {
                ended.push(user.unwrap_or_default());
            }
            self.store.delete(index, &key).await?;
        }
        Ok(ended)
    }

    /// Ends one access token (by hash), here and in the request cache; its session goes on.
    pub async fn revoke_access_token(&self, hash: &str) -> Result<(), StoreError> {
        if self.store.delete(Table::Tokens, hash).await? {
            crate::metrics::metrics().revoked(crate::metrics::Revoked::AccessToken);
        }
        self.bearer.forget_token(hash);
        self.bearer.announce(ReplicaEvent::TokenRevoked(hash.to_string())).await;
        Ok(())
    }

    /// Revokes a token `client_id` holds (RFC 7009): a refresh token ends its session, an access
    /// token only itself. Another client's token is left alone.
    pub async fn revoke_token(&self, token: &str, client_id: &str) -> Result<TokenRevocation, StoreError> {
        let hash = token_hash(token);
        let Some(record) = self.store.get::<TokenRecord>(Table::Tokens, &hash).await? else {
            return Ok(TokenRevocation::Unknown);
        };
        if record.client_id != client_id {
            return Ok(TokenRevocation::OtherClients);
        }
        Ok(match record.kind {
            TokenKind::Refresh => TokenRevocation::SessionEnded {
                user: self.revoke_session_of_user(&record.session_id).await,
                session_id: record.session_id,
            },
            TokenKind::Access => {
                self.revoke_access_token(&hash).await?;
                TokenRevocation::AccessToken {
                    user: self.user_of(&record.session_id).await,
                    session_id: record.session_id,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::test_support::{record, record_of, Fixture, POLICY};
    use crate::support::now;

    #[tokio::test]
    async fn a_created_session_is_indexed_under_its_user_and_its_tokens_work() {
        let f = Fixture::new();
        let session = record("sid", now() + 3600);
        f.sessions.create(&session).await.unwrap();
        assert_eq!(
            f.sessions.indexed(Some(&session.user.key())).await.unwrap(),
            vec![(session.user.key(), "sid".to_string())]
        );
        let issued = f.sessions.issue_tokens(&session, POLICY, now()).await.unwrap();
        assert_eq!(issued.expires_in, 60);
        let active = f.bearer.authenticate(&issued.access_token, now()).await.unwrap();
        assert_eq!(active.id(), "sid");
        assert!(
            f.sessions.live("sid", now() + 3600).await.unwrap().is_none(),
            "ended by then"
        );
    }

    #[tokio::test]
    async fn revoking_a_users_sessions_ends_all_of_them_and_no_one_elses() {
        let f = Fixture::new();
        let alice = [record_of("a1", "alice"), record_of("a2", "alice")];
        let bob = record_of("b1", "bob");
        let mut tokens = Vec::new();
        for session in alice.iter().chain([&bob]) {
            f.sessions.create(session).await.unwrap();
            let issued = f.sessions.issue_tokens(session, POLICY, now()).await.unwrap();
            f.bearer.authenticate(&issued.access_token, now()).await.unwrap(); // cached
            tokens.push(issued.access_token);
        }
        let user = alice[0].user.key();
        assert_eq!(f.sessions.revoke_user_sessions(&user).await.unwrap(), 2);
        assert!(f.sessions.indexed(Some(&user)).await.unwrap().is_empty());
        for token in &tokens[..2] {
            assert!(f.bearer.authenticate(token, now()).await.is_err());
        }
        assert!(
            f.bearer.authenticate(&tokens[2], now()).await.is_ok(),
            "bob's session goes on"
        );
        assert_eq!(f.sessions.revoke_user_sessions(&user).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn revoking_a_provider_session_ends_the_logins_made_in_it_and_no_others() {
        let f = Fixture::new();
        let in_session = |id: &str, user: &str, idp_session: Option<&str>| SessionRecord {
            idp_session: idp_session.map(str::to_string),
            ..record_of(id, user)
        };
        let sessions = [
            in_session("a1", "alice", Some("idp-1")),
            in_session("a2", "alice", Some("idp-1")),
            in_session("a3", "alice", Some("idp-2")),
            in_session("b1", "bob", Some("idp-3")),
            in_session("n1", "alice", None),
        ];
        let mut tokens = Vec::new();
        for session in &sessions {
            f.sessions.create(session).await.unwrap();
            let issued = f.sessions.issue_tokens(session, POLICY, now()).await.unwrap();
            f.bearer.authenticate(&issued.access_token, now()).await.unwrap(); // cached
            tokens.push(issued.access_token);
        }
        let provider = &sessions[0].user.provider;
        let ended = f.sessions.revoke_idp_session(provider, "idp-1").await.unwrap();
        assert_eq!(ended.len(), 2);
        assert!(ended.iter().all(|u| u.user_id == "alice"));
        for (token, alive) in tokens.iter().zip([false, false, true, true, true]) {
            assert_eq!(f.bearer.authenticate(token, now()).await.is_ok(), alive);
        }
        assert!(f
            .sessions
            .revoke_idp_session(provider, "idp-1")
            .await
            .unwrap()
            .is_empty());
        assert!(f
            .sessions
            .revoke_idp_session("other", "idp-2")
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn revoking_a_token_ends_its_session_or_only_itself_and_never_another_clients() {
        let f = Fixture::new();
        let session = record("sid", now() + 3600);
        f.sessions.create(&session).await.unwrap();
        let first = f.sessions.issue_tokens(&session, POLICY, now()).await.unwrap();
        let second = f.sessions.issue_tokens(&session, POLICY, now()).await.unwrap();
        let refresh = first.refresh_token.unwrap();

        assert_eq!(
            f.sessions.revoke_token(&refresh, "other").await.unwrap(),
            TokenRevocation::OtherClients
        );
        assert_eq!(
            f.sessions.revoke_token(&first.access_token, "c").await.unwrap(),
            TokenRevocation::AccessToken {
                session_id: "sid".into(),
                user: Some(session.user.clone())
            }
        );
        assert!(f.bearer.authenticate(&first.access_token, now()).await.is_err());
        assert!(f.bearer.authenticate(&second.access_token, now()).await.is_ok());
        assert_eq!(
            f.sessions.revoke_token(&refresh, "c").await.unwrap(),
            TokenRevocation::SessionEnded {
                session_id: "sid".into(),
                user: Some(session.user.clone())
            }
        );
        assert!(f.bearer.authenticate(&second.access_token, now()).await.is_err());
        assert_eq!(
            f.sessions.revoke_token("mxg_rt_unknown", "c").await.unwrap(),
            TokenRevocation::Unknown
        );
    }

    #[tokio::test]
    async fn an_update_does_not_bring_back_a_revoked_session() {
        let f = Fixture::new();
        let mut session = record("sid", now() + 3600);
        f.sessions.create(&session).await.unwrap();
        session.scope = vec!["changed".into()];
        assert!(f.sessions.update(&session).await.unwrap());
        assert_eq!(f.sessions.load("sid").await.unwrap().unwrap().scope, ["changed"]);
        assert!(f.sessions.revoke_session("sid").await);
        assert!(!f.sessions.update(&session).await.unwrap());
        assert!(f.sessions.load("sid").await.unwrap().is_none());
    }
}
