//! The shared store: Redis (or Valkey), for several replicas. Every record is one Redis string
//! `<prefix><table>/<key>` whose Redis TTL is the record's expiry (`EXAT`), so Redis removes
//! expired records itself. Single-use reads are `GETDEL`; replace and compare-and-swap are Lua
//! scripts over one key, which a Redis Cluster runs on that key's node (no multi-key script,
//! so no hash tags are needed for correctness).
//!
//! Two small indexes per table (sorted sets, maintained beside each write, not atomically with
//! it): `<prefix>expiry/<table>` (member = key, score = expiry) answers how many live entries a
//! table has (the registration and pending-login caps count with it), and for the tables read
//! by prefix ([`Table::is_listed`]) `<prefix>keys/<table>` (score 0, ordered by key) answers
//! the prefix listing. The purge only trims these indexes; a stale index member (its record
//! deleted or expired) is never returned, because records are read back and checked.
//!
//! Replicas tell each other about revocations on the channel `<prefix>events`
//! ([`KvStore::publish`], [`KvStore::listen`]).

use super::redis_connection::{redis_error, RedisConnection, RedisRuntime, SubscriptionTarget};
use super::{Heard, KvStore, Purged, ReplicaEvent, StoreError, Table, MAX_REPORTED_CLIENTS};
use crate::config::RedisSettings;
use crate::support::now;
use async_trait::async_trait;
use futures_util::StreamExt;
use redis::{AsyncCommands, Script};
use std::time::Duration;

/// Replaces a live record; returns the old value (nil when absent, nothing written).
const REPLACE: &str = r"
local old = redis.call('GET', KEYS[1])
if not old then return false end
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
else redis.call('SET', KEYS[1], ARGV[1]) end
return old";

/// Replaces a record whose value is exactly ARGV[1]; 1 when swapped.
const COMPARE_AND_SWAP: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'EXAT', ARGV[3])
else redis.call('SET', KEYS[1], ARGV[2]) end
return 1";

/// How long to wait before subscribing again after the subscription broke.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);

pub struct RedisStore {
    connection: RedisConnection,
    subscription: SubscriptionTarget,
    prefix: String,
    replace: Script,
    compare_and_swap: Script,
    /// Dropped last: the connections' tasks run on it.
    runtime: RedisRuntime,
}

// === impl RedisStore ===

impl RedisStore {
    /// Prepares the store; nothing connects until the first command.
    pub fn open(settings: &RedisSettings) -> Result<Self, StoreError> {
        let password = settings.password.as_ref().map(|p| p.expose());
        let runtime = RedisRuntime::new()?;
        let handle = runtime
            .handle()
            .ok_or_else(|| StoreError::Backend("the Redis runtime is gone".into()))?;
        let ca = match &settings.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|cause| StoreError::Io {
                context: format!("reading store.ca_file {}", path.display()),
                cause,
            })?),
            None => None,
        };
        let (connection, subscription) = RedisConnection::open(&settings.topology, password, ca.as_deref(), &handle)?;
        Ok(Self {
            connection,
            subscription,
            prefix: settings.key_prefix.clone(),
            replace: Script::new(REPLACE),
            compare_and_swap: Script::new(COMPARE_AND_SWAP),
            runtime,
        })
    }

    fn record_key(&self, table: Table, key: &str) -> String {
        format!("{}{}/{key}", self.prefix, table.name())
    }

    fn expiry_index(&self, table: Table) -> String {
        format!("{}expiry/{}", self.prefix, table.name())
    }

    fn key_index(&self, table: Table) -> String {
        format!("{}keys/{}", self.prefix, table.name())
    }

    fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }

    fn conn(&self) -> RedisConnection {
        self.connection.clone()
    }

    /// Records `key` in the table's indexes.
    async fn index(&self, table: Table, key: &str, expires_at: u64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let _: () = conn
            .zadd(self.expiry_index(table), key, expiry_score(expires_at))
            .await
            .map_err(|e| redis_error("indexing", e))?;
        if table.is_listed() {
            let _: () = conn
                .zadd(self.key_index(table), key, 0)
                .await
                .map_err(|e| redis_error("indexing", e))?;
        }
        Ok(())
    }

    async fn unindex(&self, table: Table, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let _: () = conn
            .zrem(self.expiry_index(table), keys)
            .await
            .map_err(|e| redis_error("unindexing", e))?;
        if table.is_listed() {
            let _: () = conn
                .zrem(self.key_index(table), keys)
                .await
                .map_err(|e| redis_error("unindexing", e))?;
        }
        Ok(())
    }
}

// === impl RedisStore (replica channel) ===

impl RedisStore {
    /// Subscribes to the replica channel and reports what arrives until the connection ends.
    async fn subscribe_until_lost(&self, heard: &(dyn Fn(Heard) + Send + Sync)) -> Result<(), StoreError> {
        let client = self.subscription.client().await?;
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .map_err(|e| redis_error("opening a pub/sub connection", e))?;
        pubsub
            .subscribe(self.channel())
            .await
            .map_err(|e| redis_error("SUBSCRIBE", e))?;
        // Anything published while this replica was not subscribed was missed: the caller
        // forgets what it cached.
        heard(Heard::Subscribed);
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            match ReplicaEvent::decode(message.get_payload_bytes()) {
                Some(event) => heard(Heard::Event(event)),
                None => tracing::warn!("ignoring an unreadable message on the replica channel"),
            }
        }
        Ok(())
    }
}

/// An index score: the expiry, or +inf for records that never expire.
fn expiry_score(expires_at: u64) -> f64 {
    if expires_at == 0 {
        f64::INFINITY
    } else {
        expires_at as f64
    }
}

/// `SET key value [EXAT expires_at]`, and with `NX` when `only_new`.
fn set_command(key: &str, value: &[u8], expires_at: u64, only_new: bool) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(value);
    if expires_at > 0 {
        cmd.arg("EXAT").arg(expires_at);
    }
    if only_new {
        cmd.arg("NX");
    }
    cmd
}

#[async_trait]
impl KvStore for RedisStore {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn()
            .get(self.record_key(table, key))
            .await
            .map_err(|e| redis_error("GET", e))
    }

    async fn put(&self, table: Table, key: &str, value: Vec<u8>, expires_at: u64) -> Result<(), StoreError> {
        if expires_at != 0 && expires_at <= now() {
            // Already expired: what a read would see.
            self.delete(table, key).await?;
            return Ok(());
        }
        let _: () = set_command(&self.record_key(table, key), &value, expires_at, false)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("SET", e))?;
        self.index(table, key, expires_at).await
    }

    async fn insert_new(&self, table: Table, key: &str, value: Vec<u8>, expires_at: u64) -> Result<bool, StoreError> {
        let inserted: Option<String> = set_command(&self.record_key(table, key), &value, expires_at, true)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("SET NX", e))?;
        if inserted.is_some() {
            self.index(table, key, expires_at).await?;
        }
        Ok(inserted.is_some())
    }

    async fn delete(&self, table: Table, key: &str) -> Result<bool, StoreError> {
        let removed: u64 = self
            .conn()
            .del(self.record_key(table, key))
            .await
            .map_err(|e| redis_error("DEL", e))?;
        self.unindex(table, &[key.to_string()]).await?;
        Ok(removed > 0)
    }

    async fn take(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let taken: Option<Vec<u8>> = self
            .conn()
            .get_del(self.record_key(table, key))
            .await
            .map_err(|e| redis_error("GETDEL", e))?;
        self.unindex(table, &[key.to_string()]).await?;
        Ok(taken)
    }

    async fn replace(
        &self,
        table: Table,
        key: &str,
        value: Vec<u8>,
        expires_at: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let previous: Option<Vec<u8>> = self
            .replace
            .key(self.record_key(table, key))
            .arg(value)
            .arg(expires_at)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("replace script", e))?;
        if previous.is_some() {
            self.index(table, key, expires_at).await?;
        }
        Ok(previous)
    }

    async fn compare_and_swap(
        &self,
        table: Table,
        key: &str,
        expected: &[u8],
        value: Vec<u8>,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let swapped: i64 = self
            .compare_and_swap
            .key(self.record_key(table, key))
            .arg(expected)
            .arg(value)
            .arg(expires_at)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("compare-and-swap script", e))?;
        if swapped == 1 {
            self.index(table, key, expires_at).await?;
        }
        Ok(swapped == 1)
    }

    async fn stored_entries(&self, table: Table) -> Result<u64, StoreError> {
        let live: u64 = self
            .conn()
            .zcount(self.expiry_index(table), format!("({}", now()), "+inf")
            .await
            .map_err(|e| redis_error("ZCOUNT", e))?;
        Ok(live)
    }

    async fn list_prefix(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        if !table.is_listed() {
            return Err(StoreError::Backend(format!(
                "the `{}` table is not listed by prefix",
                table.name()
            )));
        }
        let mut conn = self.conn();
        let keys: Vec<String> = if prefix.is_empty() {
            conn.zrangebylex(self.key_index(table), "-", "+").await
        } else {
            let mut upper = format!("({prefix}").into_bytes();
            upper.push(0xff);
            conn.zrangebylex(self.key_index(table), format!("[{prefix}"), upper)
                .await
        }
        .map_err(|e| redis_error("ZRANGEBYLEX", e))?;
        let mut out = Vec::with_capacity(keys.len());
        let mut gone = Vec::new();
        for key in keys {
            let value: Option<Vec<u8>> = conn
                .get(self.record_key(table, &key))
                .await
                .map_err(|e| redis_error("GET", e))?;
            match value {
                Some(value) => out.push((key, value)),
                None => gone.push(key),
            }
        }
        self.unindex(table, &gone).await?;
        Ok(out)
    }

    async fn purge_expired(&self, now: u64) -> Result<Purged, StoreError> {
        // Redis expires the records; only the indexes need trimming.
        let mut conn = self.conn();
        let mut purged = Purged::default();
        for table in Table::ALL {
            let index = self.expiry_index(table);
            if table == Table::Clients {
                // Taken one by one: of replicas purging at once, only the one whose ZREM
                // removed a client reports it.
                let expired: Vec<String> = conn
                    .zrangebyscore_limit(&index, "-inf", now, 0, MAX_REPORTED_CLIENTS as isize)
                    .await
                    .map_err(|e| redis_error("ZRANGEBYSCORE", e))?;
                for client_id in expired {
                    let removed: usize = conn
                        .zrem(&index, &client_id)
                        .await
                        .map_err(|e| redis_error("ZREM", e))?;
                    if removed == 1 {
                        purged.removed += 1;
                        purged.expired_clients.push(client_id);
                    }
                }
            }
            if table.is_listed() {
                let expired: Vec<String> = conn
                    .zrangebyscore(&index, "-inf", now)
                    .await
                    .map_err(|e| redis_error("ZRANGEBYSCORE", e))?;
                if !expired.is_empty() {
                    let _: () = conn
                        .zrem(self.key_index(table), &expired)
                        .await
                        .map_err(|e| redis_error("ZREM", e))?;
                }
            }
            let removed: usize = conn
                .zrembyscore(&index, "-inf", now)
                .await
                .map_err(|e| redis_error("ZREMRANGEBYSCORE", e))?;
            purged.removed += removed;
        }
        Ok(purged)
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.handle()
    }

    async fn publish(&self, event: &ReplicaEvent) -> Result<(), StoreError> {
        let _: () = self
            .conn()
            .publish(self.channel(), event.encode())
            .await
            .map_err(|e| redis_error("PUBLISH", e))?;
        Ok(())
    }

    async fn listen(&self, heard: &(dyn Fn(Heard) + Send + Sync)) {
        loop {
            match self.subscribe_until_lost(heard).await {
                Ok(()) => tracing::warn!("the replica channel subscription ended; subscribing again"),
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to the replica channel"),
            }
            heard(Heard::Unsubscribed);
            tokio::time::sleep(RESUBSCRIBE_DELAY).await;
        }
    }
}
