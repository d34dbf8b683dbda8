//! Where the signing key ring is kept, and the one way it changes (a rotation).
//!
//! - Embedded store (one process): `<data_dir>/signing-keys.json`, mode 0600, replaced
//!   atomically. A `signing-key.pem` from before the ring becomes its first, current key (the
//!   file is left in place and no longer read once the ring exists).
//! - Shared store (several replicas): sealed in the store (`keys` table,
//!   `assertion-signing-keys`), changed with compare-and-swap, so every replica signs with the
//!   same current key; a rotation is announced on the replica channel. The single key of
//!   before (`assertion-signing-key`) becomes the ring's first key.
//!
//! Never holds a key in the log: only `kid`s are logged.

use super::key_ring::{KeyRing, RingKey, RotationTiming};
use super::signing_key::{legacy_key_file, new_ed25519_pem, AssertionSigner, KeyError};
use crate::audit::{AuditEvent, AuditRecord};
use crate::store::{ReplicaEvent, Store, Table, Update};
use crate::support::write_private_atomically;
use std::path::{Path, PathBuf};

/// The ring's file in the data dir (embedded store).
pub const RING_FILE: &str = "signing-keys.json";

/// The ring's record in the shared store's `keys` table.
const RING_RECORD: &str = "assertion-signing-keys";

/// The single shared key of before the ring, in the `keys` table.
const LEGACY_RECORD: &str = "assertion-signing-key";

/// Where the ring lives.
pub enum KeyRingHome {
    DataDir(PathBuf),
    Store(Store),
}

// === impl KeyRingHome ===

impl KeyRingHome {
    /// The shared store when there is one (every replica must see the same ring), else the
    /// data dir.
    pub fn new(data_dir: &Path, store: Option<&Store>) -> Self {
        match store {
            Some(store) if store.kv().is_shared() => KeyRingHome::Store(store.clone()),
            _ => KeyRingHome::DataDir(data_dir.to_path_buf()),
        }
    }

    /// Where the ring is, for messages.
    pub fn describe(&self) -> String {
        match self {
            KeyRingHome::DataDir(dir) => dir.join(RING_FILE).display().to_string(),
            KeyRingHome::Store(_) => format!("store:{}/{RING_RECORD}", Table::Keys.name()),
        }
    }

    /// The stored ring, if there is one yet.
    pub async fn load(&self) -> Result<Option<KeyRing>, KeyError> {
        let ring = match self {
            KeyRingHome::DataDir(dir) => {
                let path = dir.join(RING_FILE);
                match std::fs::read(&path) {
                    Ok(bytes) => Some(serde_json::from_slice::<KeyRing>(&bytes).map_err(|e| KeyError::Key {
                        path: path.clone(),
                        message: format!("not a key ring: {e}"),
                    })?),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => {
                        return Err(KeyError::Key {
                            path,
                            message: format!("cannot read: {e}"),
                        })
                    }
                }
            }
            KeyRingHome::Store(store) => store.get_sealed::<KeyRing>(Table::Keys, RING_RECORD).await?,
        };
        match ring {
            Some(ring) => ring.validate().map(|_| Some(ring)).map_err(|cause| KeyError::Ring {
                home: self.describe(),
                cause,
            }),
            None => Ok(None),
        }
    }

    /// The ring, made on first start: from the single key of before when there is one, else
    /// with a new key.
    pub async fn load_or_create(&self, now: u64) -> Result<KeyRing, KeyError> {
        if let Some(ring) = self.load().await? {
            return Ok(ring);
        }
        let (first, origin) = match self.legacy_key().await? {
            Some(pem) => {
                let signer = AssertionSigner::from_pem(&pem, Path::new(&self.describe()))?;
                let kid = signer.kid().unwrap_or_default().to_string();
                (RingKey::signing_from(kid, pem, now), "the existing signing key")
            }
            None => {
                let (kid, pem) = new_ed25519_pem()?;
                (RingKey::signing_from(kid, pem, now), "a new signing key")
            }
        };
        let ring = KeyRing::starting_with(first);
        match self {
            KeyRingHome::DataDir(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| KeyError::Key {
                    path: dir.clone(),
                    message: format!("cannot create the data dir: {e}"),
                })?;
                self.write_file(dir, &ring)?;
            }
            KeyRingHome::Store(store) => {
                if !store.insert_new_sealed(Table::Keys, RING_RECORD, &ring, 0).await? {
                    // Another replica made the ring first: use that one.
                    return self.load().await?.ok_or_else(|| KeyError::Key {
                        path: PathBuf::from(self.describe()),
                        message: "vanished from the store while being created".into(),
                    });
                }
            }
        }
        let kid = ring.keys().first().map(|k| k.kid.as_str()).unwrap_or_default();
        tracing::info!(%kid, home = %self.describe(), "signing key ring started with {origin}");
        Ok(ring)
    }

    /// Adds a new key (see [`KeyRing::rotate`]) where the ring is kept; records the audit event
    /// and tells the other replicas. Returns the new key.
    pub async fn rotate(&self, now: u64, timing: RotationTiming, immediate: bool) -> Result<RingKey, KeyError> {
        self.load_or_create(now).await?;
        let (kid, pem) = new_ed25519_pem()?;
        let added = match self {
            KeyRingHome::DataDir(dir) => {
                let mut ring = self.load().await?.unwrap_or_default();
                let added = ring.rotate(kid, pem, now, timing, immediate)?;
                self.write_file(dir, &ring)?;
                added
            }
            KeyRingHome::Store(store) => {
                let mut outcome = None;
                let update = store
                    .update_sealed(
                        Table::Keys,
                        RING_RECORD,
                        |_| 0,
                        |ring: &KeyRing| {
                            let mut next = ring.clone();
                            let result = next.rotate(kid.clone(), pem.clone(), now, timing, immediate);
                            let changed = result.is_ok();
                            outcome = Some(result);
                            changed.then_some(next)
                        },
                    )
                    .await?;
                if matches!(update, Update::Missing) {
                    return Err(KeyError::Key {
                        path: PathBuf::from(self.describe()),
                        message: "removed from the store during the rotation".into(),
                    });
                }
                let added = outcome.ok_or_else(|| KeyError::Key {
                    path: PathBuf::from(self.describe()),
                    message: "the rotation did not run".into(),
                })??;
                if let Err(e) = store.kv().publish(&ReplicaEvent::SigningKeysChanged).await {
                    // Replicas re-read the ring periodically: they learn of it a little later.
                    tracing::warn!(error = %e, "could not tell the other replicas of the key rotation");
                }
                added
            }
        };
        tracing::info!(
            kid = %added.kid,
            activate_at = added.activate_at,
            immediate,
            "assertion signing key rotated: the new key is published and signs from activate_at"
        );
        crate::audit::record(AuditRecord::new(AuditEvent::SigningKeyRotated).reason(&added.kid));
        Ok(added)
    }

    /// The single key of before the ring, if one is kept here.
    async fn legacy_key(&self) -> Result<Option<String>, KeyError> {
        match self {
            KeyRingHome::DataDir(dir) => {
                let path = legacy_key_file(dir);
                match std::fs::read_to_string(&path) {
                    Ok(pem) => Ok(Some(pem)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(KeyError::Key {
                        path,
                        message: format!("cannot read: {e}"),
                    }),
                }
            }
            KeyRingHome::Store(store) => Ok(store.get_sealed::<String>(Table::Keys, LEGACY_RECORD).await?),
        }
    }

    fn write_file(&self, dir: &Path, ring: &KeyRing) -> Result<(), KeyError> {
        let path = dir.join(RING_FILE);
        let json = serde_json::to_vec_pretty(ring).map_err(|e| KeyError::Key {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_private_atomically(&path, &json).map_err(|e| KeyError::Key {
            path,
            message: format!("cannot write: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::key_ring::KeyState;
    use crate::store::{cipher::RecordCipher, RedbStore};
    use std::sync::Arc;
    use std::time::Duration;

    const T0: u64 = 1_700_000_000;

    fn timing() -> RotationTiming {
        RotationTiming {
            publish_before: Duration::from_secs(60),
            overlap: Duration::from_secs(120),
        }
    }

    fn store(dir: &Path) -> Store {
        Store::new(
            Arc::new(RedbStore::open(&dir.join("store.redb")).unwrap()),
            RecordCipher::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
    }

    #[tokio::test]
    async fn the_data_dir_ring_is_created_once_private_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let home = KeyRingHome::DataDir(dir.path().to_path_buf());
        assert!(home.load().await.unwrap().is_none());
        let ring = home.load_or_create(T0).await.unwrap();
        assert_eq!(home.load_or_create(T0 + 5).await.unwrap(), ring, "made once, then read");
        assert!(!legacy_key_file(dir.path()).exists(), "no single key file any more");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(RING_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let added = home.rotate(T0 + 10, timing(), false).await.unwrap();
        let stored = home.load().await.unwrap().unwrap();
        assert_eq!(stored.keys().len(), 2);
        assert_eq!(stored.state(&stored.keys()[1], T0 + 10), KeyState::Next);
        assert_eq!(stored.keys()[1].kid, added.kid);
        assert_eq!(stored.current(T0 + 70).unwrap().kid, added.kid);
        let err = home.rotate(T0 + 11, timing(), false).await.unwrap_err();
        assert!(err.to_string().contains("already under way"), "{err}");
    }

    #[tokio::test]
    async fn the_single_key_file_of_before_becomes_the_current_key() {
        let dir = tempfile::tempdir().unwrap();
        let (kid, pem) = new_ed25519_pem().unwrap();
        std::fs::write(legacy_key_file(dir.path()), &pem).unwrap();
        let home = KeyRingHome::DataDir(dir.path().to_path_buf());
        let ring = home.load_or_create(T0).await.unwrap();
        assert_eq!(ring.keys().len(), 1);
        assert_eq!(ring.current(T0).unwrap().kid, kid, "the same kid keeps signing");
        assert_eq!(ring.current(T0).unwrap().private_key_pem, pem);
    }

    #[tokio::test]
    async fn the_single_store_record_of_before_becomes_the_current_key_and_rotation_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let (kid, pem) = new_ed25519_pem().unwrap();
        store
            .insert_new_sealed(Table::Keys, LEGACY_RECORD, &pem, 0)
            .await
            .unwrap();
        let home = KeyRingHome::Store(store.clone());
        let ring = home.load_or_create(T0).await.unwrap();
        assert_eq!(ring.current(T0).unwrap().kid, kid);

        let added = home.rotate(T0, timing(), true).await.unwrap();
        let stored = home.load().await.unwrap().unwrap();
        assert_eq!(stored.current(T0).unwrap().kid, added.kid);
        assert_eq!(stored.state(&stored.keys()[0], T0), KeyState::Retiring);
        let raw = store.kv().get(Table::Keys, RING_RECORD).await.unwrap().unwrap();
        assert!(
            !String::from_utf8_lossy(&raw).contains("PRIVATE KEY"),
            "the ring is sealed in the store"
        );
    }

    #[tokio::test]
    async fn a_damaged_ring_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RING_FILE), br#"{"keys":[]}"#).unwrap();
        let err = KeyRingHome::DataDir(dir.path().to_path_buf())
            .load_or_create(T0)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("holds no key"), "{err}");
    }
}
