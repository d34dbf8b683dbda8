//! Listening to the other replicas (shared store only): revocations they publish reach this
//! replica's bearer cache at once, and a lost subscription is reported to it (see
//! [`super::bearer`] for what the cache does then); a signing key rotation makes the signing
//! keys re-read the ring (also after a lost subscription, as one may have been missed).

use super::bearer::BearerAuthenticator;
use crate::identity::signing_keys::SigningKeys;
use crate::store::{Heard, ReplicaEvent, Store};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;

pub struct ReplicaEvents {
    store: Store,
    bearer: Arc<BearerAuthenticator>,
    keys: Arc<SigningKeys>,
}

// === impl ReplicaEvents ===

impl ReplicaEvents {
    /// The listener, when the store is shared with other replicas.
    pub fn for_shared_store(store: &Store, bearer: &Arc<BearerAuthenticator>, keys: &Arc<SigningKeys>) -> Option<Self> {
        store.kv().is_shared().then(|| Self {
            store: store.clone(),
            bearer: bearer.clone(),
            keys: keys.clone(),
        })
    }
}

#[async_trait]
impl BackgroundService for ReplicaEvents {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (bearer, keys) = (self.bearer.clone(), self.keys.clone());
        let heard = move |heard: Heard| {
            if matches!(
                heard,
                Heard::Event(ReplicaEvent::SigningKeysChanged) | Heard::Subscribed
            ) {
                keys.reload_soon();
            }
            bearer.heard(heard)
        };
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = self.store.kv().listen(&heard) => {}
        }
    }
}
