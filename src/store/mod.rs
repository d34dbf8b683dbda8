//! Where state is kept: OAuth clients, consent and login transactions, authorization codes,
//! sessions and tokens. One trait ([`KvStore`]) with an embedded redb implementation; the typed
//! [`Store`] on top of it encodes records as JSON and seals sessions (which hold provider
//! tokens) with [`cipher::RecordCipher`].
//!
//! The store knows tables and bytes, not what the records mean: `session/` owns the session,
//! token and user-index records, `oauth/` the clients, transactions and codes. Tokens and codes
//! are never stored themselves, only their SHA-256 hashes (the caller hashes, with
//! [`crate::support::token_hash`]). Nothing here is called on the proxied hot path except on a
//! session-cache miss (a read).

pub mod cipher;
mod redb_store;
mod redis_connection;
mod redis_store;
mod timed;

#[cfg(test)]
pub(crate) mod test_redis;
#[cfg(test)]
mod tests;

pub use redb_store::RedbStore;
pub use redis_connection::redact as redact_url;
pub use redis_store::RedisStore;

use async_trait::async_trait;
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;
use thiserror::Error;

/// The tables (namespaces) of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Dynamically registered clients, by client_id.
    Clients,
    /// Authorization requests waiting for the user's consent, by transaction id.
    ConsentTransactions,
    /// Logins under way at the upstream provider, by mxgate's `state`.
    LoginStates,
    /// Authorization codes, by hash.
    Codes,
    /// Logged-in sessions (sealed), by session id.
    Sessions,
    /// Access and refresh tokens, by hash.
    Tokens,
    /// Which sessions a user has: `<provider:user id>\u{1f}<session id>` → expiry (for logout of
    /// every session, and the admin listing).
    UserSessions,
    /// Which sessions belong to a provider's session (OpenID Connect `sid`), for back-channel
    /// logout: `<provider>\u{1f}<sid>\u{1f}<session id>` → expiry.
    IdpSessions,
    /// `jti`s of back-channel logout tokens already used (by hash), until they are too old to
    /// be accepted anyway.
    LogoutTokens,
    /// Short locks between replicas (a session's provider refresh), by session id.
    Locks,
    /// MCP session ids and who may use them (shared store only): id → `provider:user id`.
    McpSessions,
    /// Keys every replica must share (sealed), e.g. the assertion signing key when no key file
    /// is mounted.
    Keys,
}

// === impl Table ===

impl Table {
    pub const ALL: [Table; 12] = [
        Table::Clients,
        Table::ConsentTransactions,
        Table::LoginStates,
        Table::Codes,
        Table::Sessions,
        Table::Tokens,
        Table::UserSessions,
        Table::IdpSessions,
        Table::LogoutTokens,
        Table::Locks,
        Table::McpSessions,
        Table::Keys,
    ];

    /// Tables read by key prefix ([`KvStore::list_prefix`]); a shared store keeps an ordered
    /// index of their keys.
    pub fn is_listed(self) -> bool {
        matches!(self, Table::UserSessions | Table::IdpSessions)
    }

    /// Short-lived records of logins in progress, which a crash may lose (see `redb_store`).
    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            Table::ConsentTransactions | Table::LoginStates | Table::Codes | Table::Locks | Table::LogoutTokens
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Clients => "clients",
            Table::ConsentTransactions => "consent_transactions",
            Table::LoginStates => "login_states",
            Table::Codes => "codes",
            Table::Sessions => "sessions",
            Table::Tokens => "tokens",
            Table::UserSessions => "user_sessions",
            Table::IdpSessions => "idp_sessions",
            Table::LogoutTokens => "logout_tokens",
            Table::Locks => "locks",
            Table::McpSessions => "mcp_sessions",
            Table::Keys => "keys",
        }
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Backend(String),
    /// The store cannot be reached (a shared store's server is down or too slow): answered
    /// `503` with `Retry-After`, and `/readyz` fails.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    // The causes below are in the message and not also a `source`, so `{:#}` says them once.
    #[error("store: cannot decode a `{table}` record: {cause}")]
    Decode {
        table: &'static str,
        cause: serde_json::Error,
    },
    #[error("store: a sealed `{0}` record cannot be opened (wrong encryption key?)")]
    Unseal(&'static str),
    #[error("store: {context}: {cause}")]
    Io { context: String, cause: std::io::Error },
}

/// What one purge of expired entries removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Expired entries removed, all tables together.
    pub removed: usize,
    /// The ids of the registered clients among them (the first [`MAX_REPORTED_CLIENTS`]), for
    /// the audit log's `client_expired`.
    pub expired_clients: Vec<String>,
}

/// The most expired client ids one purge reports.
pub const MAX_REPORTED_CLIENTS: usize = 1000;

/// A key-value store with per-entry expiry. Expired entries read as absent.
/// `expires_at` is Unix seconds; 0 means never.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn put(&self, table: Table, key: &str, value: Vec<u8>, expires_at: u64) -> Result<(), StoreError>;
    /// Stores every entry of `batch`, in one write where the backend has transactions (redb:
    /// one transaction, so one durable commit and one `fsync` for the lot instead of one each,
    /// and all or nothing). The default stores them one after another.
    async fn put_all(&self, batch: WriteBatch) -> Result<(), StoreError> {
        for entry in batch.entries {
            self.put(entry.table, &entry.key, entry.value, entry.expires_at).await?;
        }
        Ok(())
    }
    /// Stores an entry only if there is no live one under `key`; true when stored.
    async fn insert_new(&self, table: Table, key: &str, value: Vec<u8>, expires_at: u64) -> Result<bool, StoreError>;
    async fn delete(&self, table: Table, key: &str) -> Result<bool, StoreError>;
    /// Removes an entry and returns it, atomically (single-use values).
    async fn take(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Atomically replaces a live entry and returns what was there; writes nothing when absent.
    async fn replace(
        &self,
        table: Table,
        key: &str,
        value: Vec<u8>,
        expires_at: u64,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// Atomically replaces a live entry whose value is exactly `expected`; false when it was
    /// changed, removed or expired meanwhile.
    async fn compare_and_swap(
        &self,
        table: Table,
        key: &str,
        expected: &[u8],
        value: Vec<u8>,
        expires_at: u64,
    ) -> Result<bool, StoreError>;
    /// How many entries a table holds: every live one, and possibly expired ones not yet
    /// purged (the embedded store counts those until the purge).
    async fn stored_entries(&self, table: Table) -> Result<u64, StoreError>;
    /// Live entries whose key starts with `prefix`, in key order.
    async fn list_prefix(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Removes expired entries; says how many, and which registered clients expired.
    async fn purge_expired(&self, now: u64) -> Result<Purged, StoreError>;

    /// Whether other replicas share this store (and so must hear of revocations).
    fn is_shared(&self) -> bool {
        false
    }

    /// The runtime this store's connections live on, when it has one of its own (Redis).
    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        None
    }

    /// Tells every replica (this one included) about `event`; nothing to do for a store only
    /// this process uses.
    async fn publish(&self, _event: &ReplicaEvent) -> Result<(), StoreError> {
        Ok(())
    }

    /// Calls `heard` with what the replicas publish, for as long as the process runs
    /// (resubscribing after a lost connection). A store only this process uses hears nothing.
    async fn listen(&self, _heard: &(dyn Fn(Heard) + Send + Sync)) {
        std::future::pending::<()>().await
    }
}

/// Entries written together by [`KvStore::put_all`] (built with [`Store::batch`]).
#[derive(Debug, Default)]
pub struct WriteBatch {
    entries: Vec<BatchEntry>,
}

#[derive(Debug)]
struct BatchEntry {
    table: Table,
    key: String,
    value: Vec<u8>,
    expires_at: u64,
}

// === impl WriteBatch ===

impl WriteBatch {
    /// Adds an entry, as [`KvStore::put`] would store it.
    pub fn put_raw(&mut self, table: Table, key: &str, value: Vec<u8>, expires_at: u64) {
        self.entries.push(BatchEntry {
            table,
            key: key.to_string(),
            value,
            expires_at,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What one replica tells the others through a shared store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaEvent {
    /// A session ended: forget it and every token of it.
    SessionRevoked(String),
    /// An access token (by hash) was revoked.
    TokenRevoked(String),
    /// The assertion signing key ring changed (a rotation): read it again.
    SigningKeysChanged,
}

/// The id part of the [`ReplicaEvent::SigningKeysChanged`] message (`keys ring`).
const SIGNING_KEYS_EVENT_ID: &str = "ring";

/// What [`KvStore::listen`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heard {
    Event(ReplicaEvent),
    /// Subscribed (again): events published meanwhile may have been missed.
    Subscribed,
    /// The subscription is down until the next `Subscribed`.
    Unsubscribed,
}

// === impl ReplicaEvent ===

impl ReplicaEvent {
    /// `session <id>` / `token <hash>`: ids and hashes are hex, so a space separates safely.
    pub fn encode(&self) -> String {
        match self {
            ReplicaEvent::SessionRevoked(id) => format!("session {id}"),
            ReplicaEvent::TokenRevoked(hash) => format!("token {hash}"),
            ReplicaEvent::SigningKeysChanged => format!("keys {SIGNING_KEYS_EVENT_ID}"),
        }
    }

    /// The event of a message, or `None` for anything else (the channel is not trusted to be
    /// well-formed: ids are bounded and plain).
    pub fn decode(message: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(message).ok()?;
        let (kind, id) = text.split_once(' ')?;
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return None;
        }
        match kind {
            "session" => Some(ReplicaEvent::SessionRevoked(id.to_string())),
            "token" => Some(ReplicaEvent::TokenRevoked(id.to_string())),
            "keys" if id == SIGNING_KEYS_EVENT_ID => Some(ReplicaEvent::SigningKeysChanged),
            _ => None,
        }
    }
}

/// Typed access to a [`KvStore`].
#[derive(Clone)]
pub struct Store {
    kv: Arc<dyn KvStore>,
    cipher: Arc<cipher::RecordCipher>,
}

// === impl Store ===

impl Store {
    /// Runs start-up work that uses the store, from outside any runtime: on the store's own
    /// runtime when it has one, so a connection the work opens lives on after it (a redis-rs
    /// connection's task runs on the runtime that first used it; one left on a temporary runtime
    /// dies with it, and the next command failed with a broken pipe); else on a temporary one.
    pub fn block_on<F: std::future::Future>(&self, work: F) -> std::io::Result<F::Output> {
        match self.kv.runtime() {
            Some(runtime) => Ok(runtime.block_on(work)),
            None => Ok(tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(work)),
        }
    }

    /// A typed store over `kv`, whose every operation is timed (see [`timed`]).
    pub fn new(kv: Arc<dyn KvStore>, cipher: cipher::RecordCipher) -> Self {
        Self {
            kv: Arc::new(timed::TimedKvStore(kv)),
            cipher: Arc::new(cipher),
        }
    }

    pub fn kv(&self) -> &Arc<dyn KvStore> {
        &self.kv
    }

    pub fn cipher(&self) -> &cipher::RecordCipher {
        &self.cipher
    }

    pub async fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>, StoreError> {
        self.kv.get(table, key).await?.map(|b| decode(table, &b)).transpose()
    }

    pub async fn put<T: Serialize>(
        &self,
        table: Table,
        key: &str,
        value: &T,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        self.kv.put(table, key, encode(value), expires_at).await
    }

    /// Stores a record unless a live one exists; true when stored.
    pub async fn insert_new<T: Serialize>(
        &self,
        table: Table,
        key: &str,
        value: &T,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        self.kv.insert_new(table, key, encode(value), expires_at).await
    }

    pub async fn take<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>, StoreError> {
        self.kv.take(table, key).await?.map(|b| decode(table, &b)).transpose()
    }

    pub async fn replace<T: Serialize, U: DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
        value: &T,
        expires_at: u64,
    ) -> Result<Option<U>, StoreError> {
        self.kv
            .replace(table, key, encode(value), expires_at)
            .await?
            .map(|b| decode(table, &b))
            .transpose()
    }

    /// Changes a record with `change` (which sees the current value and returns the next one,
    /// or `None` to leave it), atomically: retried when another writer got there first.
    pub async fn update<T: Serialize + DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
        expires_at: impl Fn(&T) -> u64,
        change: impl FnMut(&T) -> Option<T>,
    ) -> Result<Update<T>, StoreError> {
        let open = |raw: &[u8]| decode(table, raw);
        let close = |value: &T| Ok(encode(value));
        self.update_with(table, key, expires_at, change, open, close).await
    }

    /// As [`Self::update`], for a record stored sealed (see [`Self::put_sealed`]).
    pub async fn update_sealed<T: Serialize + DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
        expires_at: impl Fn(&T) -> u64,
        change: impl FnMut(&T) -> Option<T>,
    ) -> Result<Update<T>, StoreError> {
        let open = |sealed: &[u8]| {
            let plain = self
                .cipher
                .open(&associated_data(table, key), sealed)
                .ok_or(StoreError::Unseal(table.name()))?;
            decode(table, &plain)
        };
        let close = |value: &T| self.seal(table, key, value);
        self.update_with(table, key, expires_at, change, open, close).await
    }

    /// The compare-and-swap loop of [`Self::update`], with how a record is read and written.
    async fn update_with<T>(
        &self,
        table: Table,
        key: &str,
        expires_at: impl Fn(&T) -> u64,
        mut change: impl FnMut(&T) -> Option<T>,
        open: impl Fn(&[u8]) -> Result<T, StoreError>,
        close: impl Fn(&T) -> Result<Vec<u8>, StoreError>,
    ) -> Result<Update<T>, StoreError> {
        for attempt in 0..UPDATE_ATTEMPTS {
            if attempt > 0 {
                // Another writer won the last round: step aside for a random moment, so a crowd
                // of writers spreads out instead of colliding again.
                tokio::time::sleep(update_backoff(attempt)).await;
            }
            let Some(raw) = self.kv.get(table, key).await? else {
                return Ok(Update::Missing);
            };
            let current = open(&raw)?;
            let Some(next) = change(&current) else {
                return Ok(Update::Unchanged(current));
            };
            let bytes = close(&next)?;
            if self
                .kv
                .compare_and_swap(table, key, &raw, bytes, expires_at(&next))
                .await?
            {
                return Ok(Update::Changed {
                    from: current,
                    to: next,
                });
            }
        }
        Err(StoreError::Backend(format!(
            "`{}` record kept changing under an update",
            table.name()
        )))
    }

    /// Replaces a record whose value is exactly `expected`; false when it is something else or
    /// gone.
    pub async fn compare_and_swap_value<T: Serialize, U: Serialize>(
        &self,
        table: Table,
        key: &str,
        expected: &T,
        value: &U,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        self.kv
            .compare_and_swap(table, key, &encode(expected), encode(value), expires_at)
            .await
    }

    pub async fn list_prefix<T: DeserializeOwned>(
        &self,
        table: Table,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        self.kv
            .list_prefix(table, prefix)
            .await?
            .into_iter()
            .map(|(k, v)| decode(table, &v).map(|t| (k, t)))
            .collect()
    }

    pub async fn delete(&self, table: Table, key: &str) -> Result<bool, StoreError> {
        self.kv.delete(table, key).await
    }

    /// A record encrypted, bound to its table and key.
    fn seal<T: Serialize>(&self, table: Table, key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
        self.cipher.seal(&associated_data(table, key), &encode(value))
    }

    /// Adds a record to `batch`, encoded as [`Self::put`] stores it.
    pub fn batch_put<T: Serialize>(&self, batch: &mut WriteBatch, table: Table, key: &str, value: &T, expires_at: u64) {
        batch.put_raw(table, key, encode(value), expires_at);
    }

    /// Adds a record to `batch`, encrypted as [`Self::put_sealed`] stores it.
    pub fn batch_put_sealed<T: Serialize>(
        &self,
        batch: &mut WriteBatch,
        table: Table,
        key: &str,
        value: &T,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        batch.put_raw(table, key, self.seal(table, key, value)?, expires_at);
        Ok(())
    }

    /// Stores every record of `batch` together (see [`KvStore::put_all`]).
    pub async fn put_all(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.kv.put_all(batch).await
    }

    /// Stores a record encrypted, bound to its table and key.
    pub async fn put_sealed<T: Serialize>(
        &self,
        table: Table,
        key: &str,
        value: &T,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let sealed = self.seal(table, key, value)?;
        self.kv.put(table, key, sealed, expires_at).await
    }

    /// Replaces a live record with `value`, encrypted; writes nothing when there is none.
    /// Returns whether it replaced one.
    pub async fn replace_sealed<T: Serialize>(
        &self,
        table: Table,
        key: &str,
        value: &T,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let sealed = self.seal(table, key, value)?;
        Ok(self.kv.replace(table, key, sealed, expires_at).await?.is_some())
    }

    /// Stores a record encrypted unless a live one exists; true when stored.
    pub async fn insert_new_sealed<T: Serialize>(
        &self,
        table: Table,
        key: &str,
        value: &T,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let sealed = self.seal(table, key, value)?;
        self.kv.insert_new(table, key, sealed, expires_at).await
    }

    pub async fn get_sealed<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>, StoreError> {
        let Some(sealed) = self.kv.get(table, key).await? else {
            return Ok(None);
        };
        let plain = self
            .cipher
            .open(&associated_data(table, key), &sealed)
            .ok_or(StoreError::Unseal(table.name()))?;
        decode(table, &plain).map(Some)
    }
}

fn associated_data(table: Table, key: &str) -> Vec<u8> {
    format!("mxgate/{}/{key}", table.name()).into_bytes()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Records are plain structs of strings, numbers and lists: serializing cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(table: Table, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|cause| StoreError::Decode {
        table: table.name(),
        cause,
    })
}

/// How often [`Store::update`] tries before it reports contention.
const UPDATE_ATTEMPTS: u32 = 32;

/// A random pause of up to 2^attempt ms (at most 64 ms) before retrying an update.
fn update_backoff(attempt: u32) -> std::time::Duration {
    let ceiling = 1u64 << attempt.min(6);
    let random = u64::from(u16::from_le_bytes(crate::support::random_bytes::<2>()));
    std::time::Duration::from_millis(random % ceiling + 1)
}

/// What [`Store::update`] did.
#[derive(Debug)]
pub enum Update<T> {
    Missing,
    Unchanged(T),
    Changed { from: T, to: T },
}
