//! Listening to the other replicas (shared store only): revocations they publish reach this
//! replica's bearer cache at once, and a lost subscription is reported to it (see
//! [`super::bearer`] for what the cache does then).

use super::bearer::BearerAuthenticator;
use crate::store::Store;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;

pub struct ReplicaEvents {
    store: Store,
    bearer: Arc<BearerAuthenticator>,
}

// === impl ReplicaEvents ===

impl ReplicaEvents {
    /// The listener, when the store is shared with other replicas.
    pub fn for_shared_store(store: &Store, bearer: &Arc<BearerAuthenticator>) -> Option<Self> {
        store.kv().is_shared().then(|| Self {
            store: store.clone(),
            bearer: bearer.clone(),
        })
    }
}

#[async_trait]
impl BackgroundService for ReplicaEvents {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let bearer = self.bearer.clone();
        let heard = move |heard| bearer.heard(heard);
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = self.store.kv().listen(&heard) => {}
        }
    }
}
