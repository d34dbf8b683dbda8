//! The embedded store: one redb file (created with mode 0600), one redb table per [`Table`].
//! Each value is the entry's expiry (8 bytes, big-endian Unix seconds; 0 = never) followed by
//! the payload.
//!
//! Where each operation runs (a hop to tokio's blocking pool and back costs two thread
//! wake-ups, about 35 µs of CPU, measured on the login flow: BENCHMARKS.md, "Login cost"):
//! - **Durable writes** (sessions, tokens, clients) on the blocking pool: their commit waits for
//!   an `fsync`, which must never stall a Pingora worker and every connection on it.
//! - **Writes that need no flush** (below) and **reads by key** on the calling thread: they take
//!   microseconds of CPU and wait for no disk. A read takes no writer lock (redb is MVCC). Writers
//!   queue on an async lock first ([`RedbStore::write`]), so a write on a worker never waits
//!   inside redb for a durable commit's `fsync` on the pool: it waits as a parked task.
//! - `list_prefix` and the purge, which may read many entries, on the blocking pool.
//!
//! At most [`MAX_BLOCKING_CALLS`] operations are on the blocking pool at once: a burst of them
//! (`list_prefix` calls, the purge) must not grow the pool to a thread per request, each with
//! its own stack and allocator heap (80 threads and +30 MiB were measured when token lookups
//! still ran there, 32 connections missing the token cache).
//!
//! Writes to the short-lived tables ([`Table::is_ephemeral`]: consent and login transactions,
//! codes) and the purge are not flushed to disk on their own (redb's `Durability::None`): a flood
//! of unauthenticated writes costs no `fsync` each, and real logins are not slowed by it. The next
//! durable write (a session, a token, a client) flushes them; a crash loses at most logins in
//! progress, never a session or a token.

use super::{KvStore, Purged, StoreError, Table, WriteBatch, MAX_REPORTED_CLIENTS};
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
    /// One writer at a time, waited for without blocking a thread (see the module doc).
    writer: Arc<tokio::sync::Mutex<()>>,
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
            writer: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// A read, on the calling thread (see the module doc).
    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let txn = self.db.begin_read().map_err(|e| backend("read", e))?;
        f(&txn)
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

    /// A write transaction running `f`, then committed: flushed to disk by its commit when
    /// `durable`, else by the next durable commit. Waits for the writer lock without blocking
    /// the thread; then a durable write runs on the blocking pool (its `fsync`), one that needs
    /// no flush on the calling thread.
    async fn write<T, F>(&self, durable: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_on(durable, durable, f).await
    }

    /// As [`Self::write`], on the blocking pool when `on_pool`.
    async fn write_on<T, F>(&self, durable: bool, on_pool: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        // Owned, and moved into the work: a request dropped while its write runs on the pool
        // does not let the next writer in (and block its thread on redb's lock) before it ends.
        let writer = self.writer.clone().lock_owned().await;
        let work = move |db: &Database| {
            let mut txn = db.begin_write().map_err(|e| backend("write", e))?;
            if !durable {
                txn.set_durability(Durability::None)
                    .map_err(|e| backend("durability", e))?;
            }
            let out = f(&txn)?;
            txn.commit().map_err(|e| backend("commit", e))?;
            drop(writer);
            Ok(out)
        };
        if on_pool {
            self.blocking(work).await
        } else {
            work(&self.db)
        }
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
        self.write(!table.is_ephemeral(), move |txn| {
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
            Ok(answer)
        })
        .await
    }
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
        self.read(|txn| {
            let t = txn
                .open_table(definition(table))
                .map_err(|e| backend("open table", e))?;
            let value = t.get(key).map_err(|e| backend("get", e))?;
            Ok(value.and_then(|v| unframe(v.value(), now())))
        })
    }

    async fn put(&self, table: Table, key: &str, value: Vec<u8>, expires_at: u64) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(!table.is_ephemeral(), move |txn| {
            let mut t = txn
                .open_table(definition(table))
                .map_err(|e| backend("open table", e))?;
            t.insert(key.as_str(), frame(&value, expires_at).as_slice())
                .map_err(|e| backend("insert", e))?;
            Ok(())
        })
        .await
    }

    /// One transaction for the lot: one commit, durable unless every entry is ephemeral.
    async fn put_all(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let durable = batch.entries.iter().any(|e| !e.table.is_ephemeral());
        self.write(durable, move |txn| {
            for entry in &batch.entries {
                let mut t = txn
                    .open_table(definition(entry.table))
                    .map_err(|e| backend("open table", e))?;
                t.insert(entry.key.as_str(), frame(&entry.value, entry.expires_at).as_slice())
                    .map_err(|e| backend("insert", e))?;
            }
            Ok(())
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
        self.write(!table.is_ephemeral(), move |txn| {
            let mut t = txn
                .open_table(definition(table))
                .map_err(|e| backend("open table", e))?;
            let removed = t.remove(key.as_str()).map_err(|e| backend("remove", e))?;
            Ok(removed.is_some())
        })
        .await
    }

    async fn take(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.write(!table.is_ephemeral(), move |txn| {
            let mut t = txn
                .open_table(definition(table))
                .map_err(|e| backend("open table", e))?;
            let removed = t.remove(key.as_str()).map_err(|e| backend("remove", e))?;
            Ok(removed.and_then(|v| unframe(v.value(), now())))
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
        self.read(|txn| {
            let t = txn
                .open_table(definition(table))
                .map_err(|e| backend("open table", e))?;
            t.len().map_err(|e| backend("len", e))
        })
    }

    /// On the blocking pool, unlike the other reads: a prefix can match many entries (every
    /// session of every user, for the admin listing).
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

    /// Not flushed on its own, but on the blocking pool: it reads every record.
    async fn purge_expired(&self, now: u64) -> Result<Purged, StoreError> {
        self.write_on(false, true, move |txn| {
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
            calls.spawn(async move { store.list_prefix(Table::Tokens, "t").await });
        }
        while let Some(got) = calls.join_next().await {
            assert_eq!(got.unwrap().unwrap().len(), 1);
        }
        let peak = store.probe.peak.load(std::sync::atomic::Ordering::SeqCst);
        assert!(peak <= MAX_BLOCKING_CALLS, "{peak} calls ran at once");
        assert!(peak > 1, "calls still run in parallel");
    }

    /// What a crash leaves: the file as the store wrote it so far (without closing it: nothing
    /// flushed on the way out), opened by the next start (a copy: the running store holds
    /// the file's lock).
    fn after_a_crash(path: &Path, n: u32) -> RedbStore {
        let copy = path.with_extension(format!("crashed{n}"));
        std::fs::copy(path, &copy).unwrap();
        RedbStore::open(&copy).unwrap()
    }

    /// A Pingora worker is a current-thread runtime: writes of both kinds from many tasks on it
    /// queue for the writer lock, none blocks the thread the others need, and none is lost.
    #[tokio::test(flavor = "current_thread")]
    async fn durable_and_unflushed_writes_interleave_on_one_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(&dir.path().join("mxgate.redb")).unwrap());
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let table = if i % 2 == 0 { Table::Tokens } else { Table::Codes };
                    store.put(table, &format!("k{i}"), vec![i as u8], 0).await.unwrap();
                    assert!(store.take(Table::Codes, &format!("k{}", i | 1)).await.is_ok());
                })
            })
            .collect();
        let done = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            for task in tasks {
                task.await.unwrap();
            }
        });
        done.await.expect("no write waits forever");
        for i in (0..40).step_by(2) {
            assert_eq!(
                store.get(Table::Tokens, &format!("k{i}")).await.unwrap(),
                Some(vec![i as u8])
            );
        }
    }

    #[tokio::test]
    async fn a_crash_loses_only_unflushed_logins_in_progress_never_a_session_or_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mxgate.redb");
        let store = RedbStore::open(&path).unwrap();
        // A login in progress (ephemeral: not flushed on its own)...
        store
            .put(Table::LoginStates, "state", b"login".to_vec(), 0)
            .await
            .unwrap();
        let crashed = after_a_crash(&path, 1);
        assert_eq!(
            crashed.get(Table::LoginStates, "state").await.unwrap(),
            None,
            "not flushed"
        );

        // ...is flushed by the next durable write, as is a batch holding a durable table.
        store.put(Table::Codes, "code", b"code".to_vec(), 0).await.unwrap();
        let mut batch = WriteBatch::default();
        batch.put_raw(Table::Tokens, "access", b"a".to_vec(), 0);
        batch.put_raw(Table::Tokens, "refresh", b"r".to_vec(), 0);
        store.put_all(batch).await.unwrap();
        let crashed = after_a_crash(&path, 2);
        assert_eq!(crashed.get(Table::Tokens, "access").await.unwrap().unwrap(), b"a");
        assert_eq!(crashed.get(Table::Tokens, "refresh").await.unwrap().unwrap(), b"r");
        assert_eq!(crashed.get(Table::Codes, "code").await.unwrap().unwrap(), b"code");
        assert_eq!(
            crashed.get(Table::LoginStates, "state").await.unwrap().unwrap(),
            b"login"
        );

        // A batch of ephemeral records only is not flushed either.
        let mut batch = WriteBatch::default();
        batch.put_raw(Table::ConsentTransactions, "t", b"t".to_vec(), 0);
        store.put_all(batch).await.unwrap();
        let crashed = after_a_crash(&path, 3);
        assert_eq!(crashed.get(Table::ConsentTransactions, "t").await.unwrap(), None);
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
