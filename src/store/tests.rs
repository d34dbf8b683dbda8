//! The [`KvStore`] contract, run against every backend: the embedded redb file and real Redis
//! deployments — one server, a server found through Sentinel, and a 3-node Redis Cluster. What the rest of mxgate relies on (expiry, single-use `take`, atomic
//! compare-and-swap under contention, prefix listing, the live-entry counts the caps use) must
//! hold for both.

use super::test_redis::TestRedis;
use super::{Heard, KvStore, RedbStore, RedisStore, ReplicaEvent, Store, Table, Update, WriteBatch};
use crate::support::now;
use std::sync::Arc;

/// A backend under test and what keeps it alive.
struct Backend {
    kv: Arc<dyn KvStore>,
    _guard: Box<dyn std::any::Any + Send>,
}

fn redb() -> Option<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let kv = RedbStore::open(&dir.path().join("sub/mxgate.redb")).unwrap();
    Some(Backend {
        kv: Arc::new(kv),
        _guard: Box::new(dir),
    })
}

fn redis() -> Option<Backend> {
    on(TestRedis::start()?)
}

fn redis_sentinel() -> Option<Backend> {
    on(TestRedis::start_with_sentinel()?)
}

fn redis_cluster() -> Option<Backend> {
    on(TestRedis::start_cluster()?)
}

fn on(server: TestRedis) -> Option<Backend> {
    let kv = RedisStore::open(&server.settings("test:")).unwrap();
    Some(Backend {
        kv: Arc::new(kv),
        _guard: Box::new(server),
    })
}

/// One test module per backend, with a test for each contract check.
macro_rules! backend_tests {
    ($module:ident, $backend:ident; $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(backend) = super::$backend() else { return };
                    super::$name(backend.kv.clone()).await;
                }
            )*
        }
    };
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        backend_tests!(on_redb, redb; $($name),*);
        backend_tests!(on_redis, redis; $($name),*);
        backend_tests!(on_redis_sentinel, redis_sentinel; $($name),*);
        backend_tests!(on_redis_cluster, redis_cluster; $($name),*);
    };
}

on_every_backend!(
    put_get_delete_and_expiry,
    insert_new_only_when_absent,
    take_is_single_use_under_contention,
    replace_only_touches_live_entries,
    compare_and_swap_needs_the_expected_value,
    updates_under_contention_lose_nothing,
    list_prefix_returns_live_entries_under_the_prefix_in_order,
    counts_and_purge_see_only_live_entries,
    binary_values_round_trip,
    put_all_stores_every_entry_of_a_batch,
);

async fn put_get_delete_and_expiry(store: Arc<dyn KvStore>) {
    store.put(Table::Clients, "a", b"one".to_vec(), 0).await.unwrap();
    store
        .put(Table::Clients, "old", b"gone".to_vec(), now() - 1)
        .await
        .unwrap();
    // Expiry is in whole seconds: at least two seconds of margin before the checks below.
    let soon = now() + 3;
    store
        .put(Table::Clients, "soon", b"brief".to_vec(), soon)
        .await
        .unwrap();
    assert_eq!(store.get(Table::Clients, "a").await.unwrap().unwrap(), b"one");
    assert_eq!(store.get(Table::Clients, "old").await.unwrap(), None);
    assert_eq!(
        store.get(Table::Tokens, "a").await.unwrap(),
        None,
        "tables are separate"
    );
    assert_eq!(store.get(Table::Clients, "soon").await.unwrap().unwrap(), b"brief");
    wait_past(soon).await;
    assert_eq!(
        store.get(Table::Clients, "soon").await.unwrap(),
        None,
        "expired by its own deadline"
    );
    assert!(store.delete(Table::Clients, "a").await.unwrap());
    assert!(!store.delete(Table::Clients, "a").await.unwrap());
}

async fn put_all_stores_every_entry_of_a_batch(store: Arc<dyn KvStore>) {
    store
        .put(Table::Tokens, "replaced", b"before".to_vec(), 0)
        .await
        .unwrap();
    let mut batch = WriteBatch::default();
    batch.put_raw(Table::Sessions, "s1", b"session".to_vec(), now() + 3600);
    batch.put_raw(Table::UserSessions, "u\u{1f}s1", b"index".to_vec(), now() + 3600);
    batch.put_raw(Table::Tokens, "replaced", b"after".to_vec(), 0);
    batch.put_raw(Table::Codes, "expired", b"never seen".to_vec(), now() - 1);
    store.put_all(batch).await.unwrap();
    assert_eq!(store.get(Table::Sessions, "s1").await.unwrap().unwrap(), b"session");
    assert_eq!(
        store.get(Table::UserSessions, "u\u{1f}s1").await.unwrap().unwrap(),
        b"index"
    );
    assert_eq!(store.get(Table::Tokens, "replaced").await.unwrap().unwrap(), b"after");
    assert_eq!(
        store.get(Table::Codes, "expired").await.unwrap(),
        None,
        "expired on arrival"
    );
    assert_eq!(
        store.list_prefix(Table::UserSessions, "u\u{1f}").await.unwrap().len(),
        1,
        "indexed like a put"
    );
    store.put_all(WriteBatch::default()).await.unwrap();
}

async fn insert_new_only_when_absent(store: Arc<dyn KvStore>) {
    assert!(store
        .insert_new(Table::Clients, "k", b"first".to_vec(), 0)
        .await
        .unwrap());
    assert!(!store
        .insert_new(Table::Clients, "k", b"second".to_vec(), 0)
        .await
        .unwrap());
    assert_eq!(store.get(Table::Clients, "k").await.unwrap().unwrap(), b"first");
    store
        .put(Table::Clients, "dead", b"x".to_vec(), now() - 1)
        .await
        .unwrap();
    assert!(
        store
            .insert_new(Table::Clients, "dead", b"y".to_vec(), 0)
            .await
            .unwrap(),
        "an expired entry is absent"
    );
    let winners = race(16, |i| {
        let store = store.clone();
        async move {
            store
                .insert_new(Table::Codes, "lock", vec![i], now() + 60)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(winners.iter().filter(|w| **w).count(), 1, "exactly one insert wins");
}

async fn take_is_single_use_under_contention(store: Arc<dyn KvStore>) {
    store
        .put(Table::LoginStates, "s", b"x".to_vec(), now() + 60)
        .await
        .unwrap();
    let taken = race(16, |_| {
        let store = store.clone();
        async move { store.take(Table::LoginStates, "s").await.unwrap() }
    })
    .await;
    let got: Vec<_> = taken.into_iter().flatten().collect();
    assert_eq!(got, vec![b"x".to_vec()], "one taker gets it, the others nothing");
    assert_eq!(store.get(Table::LoginStates, "s").await.unwrap(), None);
}

async fn replace_only_touches_live_entries(store: Arc<dyn KvStore>) {
    assert_eq!(
        store.replace(Table::Codes, "c", b"new".to_vec(), 0).await.unwrap(),
        None
    );
    assert_eq!(store.get(Table::Codes, "c").await.unwrap(), None, "absent stays absent");
    store
        .put(Table::Codes, "c", b"issued".to_vec(), now() + 60)
        .await
        .unwrap();
    let prev = store
        .replace(Table::Codes, "c", b"redeemed".to_vec(), now() + 60)
        .await
        .unwrap();
    assert_eq!(prev.unwrap(), b"issued");
    let again = store
        .replace(Table::Codes, "c", b"redeemed".to_vec(), now() + 60)
        .await
        .unwrap();
    assert_eq!(again.unwrap(), b"redeemed");
}

async fn compare_and_swap_needs_the_expected_value(store: Arc<dyn KvStore>) {
    assert!(!store
        .compare_and_swap(Table::Tokens, "t", b"a", b"b".to_vec(), 0)
        .await
        .unwrap());
    assert_eq!(store.get(Table::Tokens, "t").await.unwrap(), None);
    store.put(Table::Tokens, "t", b"a".to_vec(), 0).await.unwrap();
    assert!(!store
        .compare_and_swap(Table::Tokens, "t", b"x", b"b".to_vec(), 0)
        .await
        .unwrap());
    assert!(store
        .compare_and_swap(Table::Tokens, "t", b"a", b"b".to_vec(), now() + 60)
        .await
        .unwrap());
    assert_eq!(store.get(Table::Tokens, "t").await.unwrap().unwrap(), b"b");
}

/// Many concurrent read-modify-write updates (as refresh-token rotation does): none is lost.
async fn updates_under_contention_lose_nothing(kv: Arc<dyn KvStore>) {
    let store = Store::new(kv, super::cipher::RecordCipher::from_secret(b"k"));
    store.put(Table::Sessions, "n", &0u32, 0).await.unwrap();
    race(8, |_| {
        let store = store.clone();
        async move {
            for _ in 0..5 {
                let update = store
                    .update(Table::Sessions, "n", |_| 0, |n: &u32| Some(n + 1))
                    .await
                    .unwrap();
                assert!(matches!(update, Update::Changed { .. }));
            }
        }
    })
    .await;
    assert_eq!(store.get::<u32>(Table::Sessions, "n").await.unwrap(), Some(40));
}

async fn list_prefix_returns_live_entries_under_the_prefix_in_order(store: Arc<dyn KvStore>) {
    for k in ["alice\u{1f}s2", "alice\u{1f}s1", "alicia\u{1f}s3", "bob\u{1f}s4"] {
        store.put(Table::UserSessions, k, b"x".to_vec(), 0).await.unwrap();
    }
    store
        .put(Table::UserSessions, "alice\u{1f}old", b"x".to_vec(), now() - 1)
        .await
        .unwrap();
    store
        .put(Table::UserSessions, "alice\u{1f}deleted", b"x".to_vec(), 0)
        .await
        .unwrap();
    store.delete(Table::UserSessions, "alice\u{1f}deleted").await.unwrap();
    let keys: Vec<String> = store
        .list_prefix(Table::UserSessions, "alice\u{1f}")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["alice\u{1f}s1", "alice\u{1f}s2"]);
    assert_eq!(store.list_prefix(Table::UserSessions, "").await.unwrap().len(), 4);
}

async fn counts_and_purge_see_only_live_entries(store: Arc<dyn KvStore>) {
    store
        .put(Table::Sessions, "live", b"1".to_vec(), now() + 600)
        .await
        .unwrap();
    store.put(Table::Sessions, "forever", b"1".to_vec(), 0).await.unwrap();
    let dying = now() + 3;
    store.put(Table::Tokens, "dying", b"1".to_vec(), dying).await.unwrap();
    store.put(Table::Tokens, "gone", b"1".to_vec(), 0).await.unwrap();
    assert!(store.take(Table::Tokens, "gone").await.unwrap().is_some());
    assert_eq!(store.stored_entries(Table::Sessions).await.unwrap(), 2);
    assert_eq!(
        store.stored_entries(Table::Tokens).await.unwrap(),
        1,
        "taken entries are not counted"
    );
    store
        .put(Table::Clients, "mxc_dying", b"1".to_vec(), dying)
        .await
        .unwrap();
    store
        .put(Table::Clients, "mxc_live", b"1".to_vec(), now() + 600)
        .await
        .unwrap();
    wait_past(dying).await;
    let purged = store.purge_expired(now()).await.unwrap();
    assert_eq!(
        purged.expired_clients,
        ["mxc_dying"],
        "expired clients are named for the audit log"
    );
    assert!(purged.removed >= 2, "the token and the client: {purged:?}");
    assert_eq!(
        store.purge_expired(now()).await.unwrap().expired_clients,
        Vec::<String>::new(),
        "named once"
    );
    assert_eq!(store.stored_entries(Table::Tokens).await.unwrap(), 0);
    assert_eq!(store.stored_entries(Table::Sessions).await.unwrap(), 2);
    assert!(store.get(Table::Sessions, "live").await.unwrap().is_some());
    assert!(store.get(Table::Sessions, "forever").await.unwrap().is_some());
}

async fn binary_values_round_trip(store: Arc<dyn KvStore>) {
    let value: Vec<u8> = (0..=255u8).collect();
    store.put(Table::Sessions, "bin", value.clone(), 0).await.unwrap();
    assert_eq!(store.get(Table::Sessions, "bin").await.unwrap().unwrap(), value);
    assert!(store
        .compare_and_swap(Table::Sessions, "bin", &value, b"next".to_vec(), 0)
        .await
        .unwrap());
}

/// Waits until the Unix second `deadline` has passed.
async fn wait_past(deadline: u64) {
    while now() <= deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Runs `n` copies of a task at once and returns their results.
async fn race<T, F, Fut>(n: u8, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(u8) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(task(i))).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_replicas_hear_each_others_events_and_key_prefixes_separate_deployments() {
    let Some(server) = TestRedis::start() else { return };
    replicas_hear_each_other(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_a_cluster_hear_each_other() {
    let Some(server) = TestRedis::start_cluster() else {
        return;
    };
    replicas_hear_each_other(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_behind_sentinel_hear_each_other() {
    let Some(server) = TestRedis::start_with_sentinel() else {
        return;
    };
    replicas_hear_each_other(server).await;
}

async fn replicas_hear_each_other(server: TestRedis) {
    let one = Arc::new(RedisStore::open(&server.settings("a:")).unwrap());
    let two = Arc::new(RedisStore::open(&server.settings("a:")).unwrap());
    let other = RedisStore::open(&server.settings("b:")).unwrap();
    one.put(Table::Clients, "c", b"1".to_vec(), 0).await.unwrap();
    assert!(
        two.get(Table::Clients, "c").await.unwrap().is_some(),
        "same prefix: shared"
    );
    assert!(
        other.get(Table::Clients, "c").await.unwrap().is_none(),
        "other prefix: separate"
    );
    assert!(one.is_shared());

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = two.clone();
    tokio::spawn(async move {
        listener
            .listen(&move |heard| {
                let _ = tx.send(heard);
            })
            .await
    });
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .unwrap();
    assert_eq!(first, Some(Heard::Subscribed));
    let event = ReplicaEvent::SessionRevoked("0123abcd".into());
    one.publish(&event).await.unwrap();
    let heard = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .unwrap();
    assert_eq!(heard, Some(Heard::Event(event)));
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_quickly() {
    let settings = crate::config::RedisSettings {
        topology: crate::config::RedisTopology::Single {
            // Nothing listens on port 1.
            url: "redis://127.0.0.1:1/0".into(),
        },
        key_prefix: "x:".into(),
        password: None,
        ca_file: None,
        outage_grace: std::time::Duration::from_secs(60),
    };
    let store = RedisStore::open(&settings).expect("opening does not connect");
    let started = std::time::Instant::now();
    let err = store.get(Table::Clients, "c").await.unwrap_err();
    assert!(
        matches!(err, super::StoreError::Unavailable(_)),
        "connection refused is `Unavailable`: {err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_trusts_the_configured_ca_and_only_it() {
    let Some((server, ca)) = TestRedis::start_tls() else {
        return;
    };
    let mut settings = server.settings("tls:");
    settings.ca_file = Some(ca);
    let store = RedisStore::open(&settings).unwrap();
    store.put(Table::Clients, "c", b"over tls".to_vec(), 0).await.unwrap();
    assert_eq!(store.get(Table::Clients, "c").await.unwrap().unwrap(), b"over tls");

    let untrusting = RedisStore::open(&server.settings("tls:")).unwrap();
    assert!(
        untrusting.get(Table::Clients, "c").await.is_err(),
        "a certificate the system does not trust is refused without store.ca_file"
    );
}

#[test]
fn replica_events_round_trip_and_junk_is_refused() {
    for event in [
        ReplicaEvent::SessionRevoked("abc123".into()),
        ReplicaEvent::TokenRevoked("ff00".into()),
        ReplicaEvent::SigningKeysChanged,
    ] {
        assert_eq!(ReplicaEvent::decode(event.encode().as_bytes()), Some(event));
    }
    for junk in [
        &b"session"[..],
        b"session ",
        b"kill abc",
        b"session a b",
        b"token \xff\xfe",
        b"keys other",
        "session ".repeat(40).as_bytes(),
    ] {
        assert_eq!(ReplicaEvent::decode(junk), None, "{junk:?}");
    }
}

/// Start-up reads the shared store before Pingora's runtimes exist (the signing keys). The
/// connection that work opens must outlive it: run on a temporary runtime instead, its task
/// died with that runtime and the next command failed with a broken pipe.
#[test]
fn a_connection_opened_by_start_up_work_outlives_it() {
    let Some(server) = TestRedis::start() else { return };
    let kv: Arc<dyn KvStore> = Arc::new(RedisStore::open(&server.settings("startup:")).unwrap());
    let store = Store::new(kv, super::cipher::RecordCipher::from_secret(b"start-up test key"));
    let first = store.block_on(store.kv().put(Table::Locks, "k", b"v".to_vec(), now() + 60));
    assert!(first.unwrap().is_ok());
    let later = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(store.kv().get(Table::Locks, "k"));
    assert_eq!(later.unwrap(), Some(b"v".to_vec()), "the first connection still works");
}
