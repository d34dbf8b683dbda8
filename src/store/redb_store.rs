//! The embedded store: one redb file (created with mode 0600), one redb table per [`Table`].
//! Each value is the entry's expiry (8 bytes, big-endian Unix seconds; 0 = never) followed by
//! the payload. redb calls block, so they run on tokio's blocking pool — at most
//! [`MAX_BLOCKING_CALLS`] at once: redb runs one write at a time anyway, and a burst of token
//! lookups that miss the cache must not grow the pool to a thread per request (each thread with
//! its own stack and allocator heap: 80 threads and +30 MiB were measured with 32 connections).
//!
//! Writes to the short-lived tables ([`Table::is_ephemeral`]: consent and login transactions,
//! codes) and the purge are not flushed to disk on their own (redb's `Durability::None`): a flood
//! of unauthenticated writes costs no `fsync` each, and real logins are not slowed by it. The next
//! durable write (a session, a token, a client) flushes them; a crash loses at most logins in
//! progress, never a session or a token.

use super::{KvStore, Purged, StoreError, Table, MAX_REPORTED_CLIENTS};
use crate::support::{create_private_dir, create_private_file, now, restrict_permissions};
use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;
use std::sync::Arc;

type Def = TableDefinition<'static, &'static str, &'static [u8]>;

fn definition(table: Table) -> Def {
    TableDefinition::new(table.name())
}

pub struct RedbStore {
    db: Arc<Database>,
    /// Store calls on the blocking pool at once.
    calls: Arc<tokio::sync::Semaphore>,
    /// Tests only: how many calls ran at once.
    #[cfg(test)]
    probe: Arc<CallProbe>,
}

/// Tests only: counts the calls running at once (and can make each last a moment, so that calls
/// which may overlap do).
#[cfg(test)]
#[derive(Default)]
struct CallProbe {
    running: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
    linger: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
impl CallProbe {
    fn run<T>(&self, call: impl FnOnce() -> T) -> T {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        if self.linger.load(SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let result = call();
        self.running.fetch_sub(1, SeqCst);
        result
    }
}

/// Store calls running on tokio's blocking pool at once (the others wait their turn, in order).
pub const MAX_BLOCKING_CALLS: usize = 4;

// === impl RedbStore ===

/// redb's page cache. Its default (1 GiB) grows with the file as the purge reads every record: a
/// store of 100k sessions (400 MB) took 550 MiB of the sidecar's memory (16 MiB: 64 MiB at
/// start-up, 4 MiB: 32 MiB, with the same cost per cache miss, BENCHMARKS.md). Reads past this
/// cache come from the kernel's page cache, which is not the process's memory.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

impl RedbStore {
    /// Opens (or creates) the store file; its folder is created with mode 0700.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let io = |context: String| move |cause| StoreError::Io { context, cause };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        if !path.exists() {
            drop(create_private_file(path).map_err(io(format!("creating {}", path.display())))?);
        }
        if restrict_permissions(path).map_err(io(format!("restricting the permissions of {}", path.display())))? {
            tracing::warn!(path = %path.display(), "store file was readable by others; setting mode 0600");
        }
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| backend(format!("opening {}", path.display()), e))?;
        let txn = db.begin_write().map_err(|e| backend("begin", e))?;
        for table in Table::ALL {
            txn.open_table(definition(table))
                .map_err(|e| backend("creating tables", e))?;
        }
        txn.commit().map_err(|e| backend("commit", e))?;
        Ok(Self {
            db: Arc::new(db),
            calls: Arc::new(tokio::sync::Semaphore::new(MAX_BLOCKING_CALLS)),
            #[cfg(test)]
            probe: Default::default(),
        })
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        // Never closed, so acquiring only fails if it were.
        let permit = self
            .calls
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Backend(format!("store calls: {e}")))?;
        #[cfg(test)]
        let probe = self.probe.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            #[cfg(test)]
            return probe.run(|| f(&db));
            #[cfg(not(test))]
            f(&db)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }
}

// === impl RedbStore (conditional writes) ===

impl RedbStore {
    /// In one write transaction: reads the live value under `key`, asks `decide` whether to
    /// write `value` there, and returns what `decide` returned beside that.
    async fn write_when<R, F>(
        &self,
        table: Table,
        key: &str,
        value: Vec<u8>,
        expires_at: u64,
        decide: F,
    ) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(Option<Vec<u8>>) -> (bool, R) + Send + 'static,
    {
        let key = key.to_owned();
        self.blocking(move |db| {
            let txn = write_txn(db, Some(table))?;
            let answer = {
                let mut t = txn
                    .open_table(definition(table))
                    .map_err(|e| backend("open table", e))?;
                let live = t
                    .get(key.as_str())
                    .map_err(|e| backend("get", e))?
                    .and_then(|v| unframe(v.value(), now()));
                let (write, answer) = decide(live);
                if write {
                    t.insert(key.as_str(), frame(&value, expires_at).as_slice())
                        .map_err(|e| backend("insert", e))?;
                }
                answer
            };
            txn.commit().map_err(|e| backend("commit", e))?;
            Ok(answer)
        })
        .await
    }
}

/// A write transaction, durable unless `table` is ephemeral.
fn write_txn(db: &Database, table: Option<Table>) -> Result<redb::WriteTransaction, StoreError> {
    let mut txn = db.begin_write().map_err(|e| backend("write", e))?;
    if table.is_none_or(Table::is_ephemeral) {
        txn.set_durability(Durability::None)
            .map_err(|e| backend("durability", e))?;
    }
    Ok(txn)
}

fn backend(context: impl std::fmt::Display, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("redb {context}: {e}"))
}

fn frame(value: &[u8], expires_at: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// The payload of a stored value, or `None` if it has expired (or is malformed).
fn unframe(stored: &[u8], now: u64) -> Option<Vec<u8>> {
    let (head, payload) = stored.split_at_checked(8)?;
    let expires_at = u64::from_be_bytes(head.try_into().ok()?);
    (expires_at == 0 || expires_at > now).then(|| payload.to_vec())
}

fn is_expired(stored: &[u8], now: u64) -> bool {
    unframe_expiry(stored).is_some_and(|e| e != 0 && e <= now)
}

fn unframe_expiry(stored: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(stored.get(..8)?.try_into().ok()?))
}

#[async_trait]
impl KvStore for RedbStore {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| backend("read", e))?;
            let t = txn
                .open_table(definition(table))
                .map_err(|e| backend("open table", e))?;
            let value = t.get(key.as_str()).map_err(|e| backend("get", e))?;
            Ok(value.and_then(|v| unframe(v.value(), now())))
        })
        .await
    }

    async fn put(&self, table: Table, key: &str, value: Vec<u8>, expires_at: u64) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let txn = write_txn(db, Some(table))?;
            {
                let mut t = txn
                    .open_table(definition(table))
                    .map_err(|e| backend("open table", e))?;
                t.insert(key.as_str(), frame(&value, expires_at).as_slice())
                    .map_err(|e| backend("insert", e))?;
            }
            txn.commit().map_err(|e| backend("commit", e))
        })
        .await
    }

    async fn insert_new(&self, table: Table, key: &str, value: Vec<u8>, expires_at: u64) -> Result<bool, StoreError> {
        self.write_when(table, key, value, expires_at, |live| {
            let absent = live.is_none();
            (absent, absent)
        })
        .await
    }

    async fn delete(&self, table: Table, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let txn = write_txn(db, Some(table))?;
            let existed = {
                let mut t = txn
                    .open_table(definition(table))
                    .map_err(|e| backend("open table", e))?;
                let removed = t.remove(key.as_str()).map_err(|e| backend("remove", e))?;
                removed.is_some()
            };
            txn.commit().map_err(|e| backend("commit", e))?;
            Ok(existed)
        })
        .await
    }

    async fn take(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let txn = write_txn(db, Some(table))?;
            let taken = {
                let mut t = txn
                    .open_table(definition(table))
                    .map_err(|e| backend("open table", e))?;
                let removed = t.remove(key.as_str()).map_err(|e| backend("remove", e))?;
                removed.and_then(|v| unframe(v.value(), now()))
            };
            txn.commit().map_err(|e| backend("commit", e))?;
            Ok(taken)
        })
        .await
    }

    async fn replace(
        &self,
        table: Table,
        key: &str,
        value: Vec<u8>,
        expires_at: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.write_when(table, key, value, expires_at, |live| (live.is_some(), live))
            .await
    }

    async fn compare_and_swap(
        &self,
        table: Table,
        key: &str,
        expected: &[u8],
        value: Vec<u8>,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let expected = expected.to_vec();
        self.write_when(table, key, value, expires_at, move |live| {
            let matches = live.as_deref() == Some(expected.as_slice());
            (matches, matches)
        })
        .await
    }

    async fn stored_entries(&self, table: Table) -> Result<u64, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| backend("read", e))?;
            let t = txn
                .open_table(definition(table))
                .map_err(|e| backend("open table", e))?;
            t.len().map_err(|e| backend("len", e))
        })
        .await
    }

    async fn list_prefix(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = prefix.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| backend("read", e))?;
            let t = txn
                .open_table(definition(table))
                .map_err(|e| backend("open table", e))?;
            let now = now();
            let mut out = Vec::new();
            for entry in t.range(prefix.as_str()..).map_err(|e| backend("range", e))? {
                let (key, value) = entry.map_err(|e| backend("range", e))?;
                if !key.value().starts_with(prefix.as_str()) {
                    break;
                }
                if let Some(payload) = unframe(value.value(), now) {
                    out.push((key.value().to_string(), payload));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn purge_expired(&self, now: u64) -> Result<Purged, StoreError> {
        self.blocking(move |db| {
            let txn = write_txn(db, None)?;
            let mut purged = Purged::default();
            for table in Table::ALL {
                let mut t = txn
                    .open_table(definition(table))
                    .map_err(|e| backend("open table", e))?;
                t.retain(|key, v| {
                    let keep = !is_expired(v, now);
                    if !keep {
                        purged.removed += 1;
                        if table == Table::Clients && purged.expired_clients.len() < MAX_REPORTED_CLIENTS {
                            purged.expired_clients.push(key.to_string());
                        }
                    }
                    keep
                })
                .map_err(|e| backend("retain", e))?;
            }
            txn.commit().map_err(|e| backend("commit", e))?;
            Ok(purged)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_of_calls_runs_a_few_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(&dir.path().join("mxgate.redb")).unwrap());
        store.put(Table::Tokens, "t", b"v".to_vec(), 0).await.unwrap();
        store.probe.linger.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let store = store.clone();
            calls.spawn(async move { store.get(Table::Tokens, "t").await });
        }
        while let Some(got) = calls.join_next().await {
            assert_eq!(got.unwrap().unwrap().as_deref(), Some(&b"v"[..]));
        }
        let peak = store.probe.peak.load(std::sync::atomic::Ordering::SeqCst);
        assert!(peak <= MAX_BLOCKING_CALLS, "{peak} calls ran at once");
        assert!(peak > 1, "calls still run in parallel");
    }

    #[tokio::test]
    async fn data_survives_reopening_and_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mxgate.redb");
        {
            let store = RedbStore::open(&path).unwrap();
            store.put(Table::Sessions, "s", b"kept".to_vec(), 0).await.unwrap();
        }
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.get(Table::Sessions, "s").await.unwrap().unwrap(), b"kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
