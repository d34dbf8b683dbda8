//! Times every store operation into `mxgate_store_duration_seconds{op}`: a [`KvStore`] that
//! wraps the real one (redb or Redis) and only measures. The request path reaches the store
//! only on a session-cache miss, so a proxied request with a cached token measures nothing.

use super::{Heard, KvStore, ReplicaEvent, StoreError, Table, WriteBatch};
use crate::metrics::{metrics, StoreOp};
use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// The store `Store` uses, timed.
pub(super) struct TimedKvStore(pub(super) Arc<dyn KvStore>);

async fn timed<T>(op: StoreOp, operation: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let result = operation.await;
    metrics().store_duration(op, started.elapsed());
    result
}

#[async_trait]
impl KvStore for TimedKvStore {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        timed(StoreOp::Get, self.0.get(table, key)).await
    }

    async fn put(&self, table: Table, key: &str, value: Vec<u8>, expires_at: u64) -> Result<(), StoreError> {
        timed(StoreOp::Put, self.0.put(table, key, value, expires_at)).await
    }

    async fn put_all(&self, batch: WriteBatch) -> Result<(), StoreError> {
        timed(StoreOp::PutAll, self.0.put_all(batch)).await
    }

    async fn insert_new(&self, table: Table, key: &str, value: Vec<u8>, expires_at: u64) -> Result<bool, StoreError> {
        timed(StoreOp::InsertNew, self.0.insert_new(table, key, value, expires_at)).await
    }

    async fn delete(&self, table: Table, key: &str) -> Result<bool, StoreError> {
        timed(StoreOp::Delete, self.0.delete(table, key)).await
    }

    async fn take(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        timed(StoreOp::Take, self.0.take(table, key)).await
    }

    async fn replace(
        &self,
        table: Table,
        key: &str,
        value: Vec<u8>,
        expires_at: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        timed(StoreOp::Replace, self.0.replace(table, key, value, expires_at)).await
    }

    async fn compare_and_swap(
        &self,
        table: Table,
        key: &str,
        expected: &[u8],
        value: Vec<u8>,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        timed(
            StoreOp::CompareAndSwap,
            self.0.compare_and_swap(table, key, expected, value, expires_at),
        )
        .await
    }

    async fn stored_entries(&self, table: Table) -> Result<u64, StoreError> {
        timed(StoreOp::Count, self.0.stored_entries(table)).await
    }

    async fn list_prefix(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        timed(StoreOp::ListPrefix, self.0.list_prefix(table, prefix)).await
    }

    async fn purge_expired(&self, now: u64) -> Result<super::Purged, StoreError> {
        timed(StoreOp::Purge, self.0.purge_expired(now)).await
    }

    fn is_shared(&self) -> bool {
        self.0.is_shared()
    }

    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.0.runtime()
    }

    async fn publish(&self, event: &ReplicaEvent) -> Result<(), StoreError> {
        timed(StoreOp::Publish, self.0.publish(event)).await
    }

    async fn listen(&self, heard: &(dyn Fn(Heard) + Send + Sync)) {
        self.0.listen(heard).await
    }
}
