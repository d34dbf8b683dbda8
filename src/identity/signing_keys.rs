//! The signing keys a running mxgate uses: which key signs now and the JWKS it serves, read
//! from the key ring and swapped in whole when the ring changes (a rotation here, an event
//! from another replica, a periodic re-read, or a key reaching its next state).
//!
//! The request path only loads the current view (no lock, no I/O); [`SigningKeys::run`]
//! keeps it fresh. HS256, and an Ed25519 key file mounted beside a shared store, are a single
//! fixed key that `mxgate keys rotate` refuses to rotate, saying why.

use super::key_ring::{signing_at, KeyRing, KeyState, RingKey, RotationTiming};
use super::key_ring_home::KeyRingHome;
use super::signing_key::{jwks_document, legacy_key_file, write_jwks_file, AssertionSigner, KeyError};
use crate::config::gateway_file::AssertionAlgorithm;
use crate::config::AssertionSettings;
use crate::store::Store;
use arc_swap::{ArcSwap, Guard};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often the ring is read again even when nothing announced a change (a rotation made
/// while this replica missed the event, or made by the offline command beside a running one).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// How long the core adapter keeps a fetched JWKS before fetching it again
/// (`JWKS_MAX_AGE` in deploy/mxcp-core), plus the JWKS response's HTTP cache lifetime (1 min):
/// a new key must be published longer than this plus [`RELOAD_INTERVAL`] before it signs, so
/// every core knows it first.
pub const JWKS_CACHE_LIFETIME: Duration = Duration::from_secs(300 + 60);

/// Clock skew between mxgate and the core allowed for in the overlap advice.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// One key as listed by `mxgate keys list` (no key material).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySummary {
    pub kid: String,
    pub state: KeyState,
    pub created_at: u64,
    pub activate_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<u64>,
}

/// One key as the request path uses it.
struct LiveKey {
    activate_at: u64,
    signer: AssertionSigner,
}

/// The keys at one moment: every published key (in the order they activate) and the JWKS.
pub struct KeyView {
    keys: Vec<LiveKey>,
    ring: Option<KeyRing>,
    jwks: Bytes,
}

/// Where the keys come from.
enum Source {
    /// A ring mxgate keeps and rotates.
    Ring { home: KeyRingHome, timing: RotationTiming },
    /// One key that is not mxgate's to rotate, and why.
    Fixed { why: String },
}

pub struct SigningKeys {
    view: ArcSwap<KeyView>,
    source: Source,
    /// Where `jwks.json` is written for cores that read a file (EdDSA only).
    jwks_dir: Option<PathBuf>,
    changed: tokio::sync::Notify,
    /// One rotation at a time in this process (the data dir file has no compare-and-swap).
    rotating: tokio::sync::Mutex<()>,
}

// === impl KeyView ===

impl KeyView {
    fn of_ring(ring: KeyRing, now: u64, home: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        let mut jwks = Vec::new();
        for key in ring.published(now) {
            let signer = AssertionSigner::from_pem(&key.private_key_pem, Path::new(home))?;
            jwks.extend(signer.jwk().cloned());
            keys.push(LiveKey {
                activate_at: key.activate_at,
                signer,
            });
        }
        if keys.is_empty() {
            // Only when the clock jumped far ahead: keep signing with the newest key.
            if let Some(key) = ring.keys().last() {
                let signer = AssertionSigner::from_pem(&key.private_key_pem, Path::new(home))?;
                jwks.extend(signer.jwk().cloned());
                keys.push(LiveKey { activate_at: 0, signer });
            }
        }
        Ok(Self {
            keys,
            jwks: jwks_document(&jwks),
            ring: Some(ring),
        })
    }

    fn fixed(signer: AssertionSigner) -> Self {
        Self {
            jwks: signer.jwks().clone(),
            keys: vec![LiveKey { activate_at: 0, signer }],
            ring: None,
        }
    }

    /// The key that signs at `now`: the newest one already activated.
    pub fn signer_at(&self, now: u64) -> Option<&AssertionSigner> {
        signing_at(&self.keys, |k| k.activate_at, now).map(|k| &k.signer)
    }

    /// The JWKS document of the published keys.
    pub fn jwks(&self) -> &Bytes {
        &self.jwks
    }

    /// When a key changes state next (the view must then be rebuilt for the JWKS).
    fn next_change(&self, now: u64) -> Option<u64> {
        self.ring.as_ref().and_then(|r| r.next_change(now))
    }
}

// === impl SigningKeys ===

impl SigningKeys {
    /// Reads (or makes, on first start) the keys the settings ask for. `store` is the store
    /// when authentication is on: a shared one keeps the ring for every replica.
    pub async fn load(settings: &AssertionSettings, data_dir: &Path, store: Option<&Store>) -> Result<Self, KeyError> {
        if let (AssertionAlgorithm::HS256, Some(secret)) = (settings.algorithm, &settings.secret) {
            let why = "the assertion algorithm is HS256: its key is the shared secret `assertion.secret`; \
                       rotate it by changing the secret in mxgate's config and the core's MXGATE_ASSERTION_SECRET together";
            return Ok(Self::fixed(
                AssertionSigner::hs256(secret.expose().as_bytes())?,
                why.into(),
                None,
            ));
        }
        if settings.algorithm == AssertionAlgorithm::HS256 {
            return Err(KeyError::NotRotatable("HS256 needs `assertion.secret`".into()));
        }
        let shared = store.is_some_and(|s| s.kv().is_shared());
        let mounted = legacy_key_file(data_dir);
        if shared && mounted.exists() {
            // A key file mounted into every replica (a Secret): it is the key, as before the ring.
            let pem = std::fs::read_to_string(&mounted).map_err(|e| KeyError::Key {
                path: mounted.clone(),
                message: format!("cannot read: {e}"),
            })?;
            let why = format!(
                "the signing key is the file {} beside a shared store: rotate it by replacing that file in every \
                 replica (or remove it to let mxgate keep a key ring in the store)",
                mounted.display()
            );
            let signer = AssertionSigner::from_pem(&pem, &mounted)?;
            create_data_dir(data_dir)?;
            return Ok(Self::fixed(signer, why, Some(data_dir.to_path_buf())));
        }
        warn_about_short_timings(settings);
        let home = KeyRingHome::new(data_dir, store);
        let now = crate::support::now();
        let ring = home.load_or_create(now).await?;
        let view = KeyView::of_ring(ring, now, &home.describe())?;
        create_data_dir(data_dir)?;
        let keys = Self {
            view: ArcSwap::from_pointee(view),
            source: Source::Ring {
                home,
                timing: settings.key_rotation.timing(),
            },
            jwks_dir: Some(data_dir.to_path_buf()),
            changed: tokio::sync::Notify::new(),
            rotating: tokio::sync::Mutex::new(()),
        };
        keys.write_jwks_file()?;
        Ok(keys)
    }

    /// One key that never rotates (HS256, a mounted key file, tests).
    pub fn fixed(signer: AssertionSigner, why: String, jwks_dir: Option<PathBuf>) -> Self {
        let keys = Self {
            view: ArcSwap::from_pointee(KeyView::fixed(signer)),
            source: Source::Fixed { why },
            jwks_dir,
            changed: tokio::sync::Notify::new(),
            rotating: tokio::sync::Mutex::new(()),
        };
        if let Err(e) = keys.write_jwks_file() {
            tracing::warn!(error = %e, "cannot write the JWKS file");
        }
        keys
    }

    /// The keys now (cheap: no lock, no I/O).
    pub fn view(&self) -> Guard<Arc<KeyView>> {
        self.view.load()
    }

    /// The JWKS document of the published keys.
    pub fn jwks(&self) -> Bytes {
        self.view.load().jwks.clone()
    }

    /// Asks [`Self::run`] to read the ring again now (another replica changed it).
    pub fn reload_soon(&self) {
        self.changed.notify_one();
    }

    /// Reads the ring again and swaps in what it says at `now`.
    pub async fn reload(&self, now: u64) -> Result<(), KeyError> {
        let Source::Ring { home, .. } = &self.source else {
            return Ok(());
        };
        let Some(ring) = home.load().await? else {
            return Ok(()); // removed behind our back: keep signing with what we have
        };
        let view = KeyView::of_ring(ring, now, &home.describe())?;
        let old = self.view.swap(Arc::new(view));
        if old.jwks != self.view.load().jwks {
            self.write_jwks_file()?;
            tracing::info!(keys = self.view.load().keys.len(), "published signing keys changed");
        }
        Ok(())
    }

    /// Rotates the key (see [`KeyRing::rotate`]); the new key is in this process's JWKS
    /// before this returns.
    pub async fn rotate(&self, immediate: bool) -> Result<RingKey, KeyError> {
        let (home, timing) = match &self.source {
            Source::Ring { home, timing } => (home, timing),
            Source::Fixed { why } => return Err(KeyError::NotRotatable(why.clone())),
        };
        let _one_at_a_time = self.rotating.lock().await;
        let now = crate::support::now();
        let added = home.rotate(now, *timing, immediate).await?;
        self.reload(now).await?;
        // `run` waits for the next state change of the keys it knew: there is a new one.
        self.changed.notify_one();
        Ok(added)
    }

    /// The keys and their states, read from where the ring is kept.
    pub async fn list(&self) -> Result<Vec<KeySummary>, KeyError> {
        let now = crate::support::now();
        self.reload(now).await?;
        let view = self.view.load();
        Ok(match &view.ring {
            Some(ring) => summaries(ring, now),
            None => view
                .keys
                .iter()
                .map(|k| KeySummary {
                    kid: k.signer.kid().unwrap_or("(HS256 shared secret)").to_string(),
                    state: KeyState::Current,
                    created_at: 0,
                    activate_at: 0,
                    retire_at: None,
                })
                .collect(),
        })
    }

    /// Keeps the view fresh for as long as the process runs: at each key's next state change,
    /// when told of a change, and every [`RELOAD_INTERVAL`].
    pub async fn run(&self) {
        if matches!(self.source, Source::Fixed { .. }) {
            return std::future::pending().await;
        }
        loop {
            // To the millisecond, so that replicas change their JWKS together.
            let now_ms = crate::support::now_ms();
            let wait = self
                .view
                .load()
                .next_change(now_ms / 1000)
                .map(|at| Duration::from_millis((at * 1000).saturating_sub(now_ms)))
                .unwrap_or(RELOAD_INTERVAL)
                .min(RELOAD_INTERVAL);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.changed.notified() => {}
            }
            if let Err(e) = self.reload(crate::support::now()).await {
                tracing::warn!(error = %e, "reading the signing key ring failed; keeping the keys in use");
            }
        }
    }

    fn write_jwks_file(&self) -> Result<(), KeyError> {
        match (&self.jwks_dir, self.view.load().keys.first()) {
            (Some(dir), Some(key)) if key.signer.jwk().is_some() => write_jwks_file(dir, &self.view.load().jwks),
            _ => Ok(()),
        }
    }
}

/// The keys of `ring` and their states at `now`, removed ones left out.
pub fn summaries(ring: &KeyRing, now: u64) -> Vec<KeySummary> {
    ring.keys()
        .iter()
        .map(|k| KeySummary {
            kid: k.kid.clone(),
            state: ring.state(k, now),
            created_at: k.created_at,
            activate_at: k.activate_at,
            retire_at: k.retire_at,
        })
        .filter(|s| s.state != KeyState::Removed)
        .collect()
}

/// Timings shorter than what keeps every request verifying are allowed (tests use seconds),
/// but said at start-up.
fn warn_about_short_timings(settings: &AssertionSettings) {
    let rotation = &settings.key_rotation;
    if rotation.publish_before < JWKS_CACHE_LIFETIME + RELOAD_INTERVAL {
        tracing::warn!(
            publish_before = ?rotation.publish_before,
            "assertion.key_rotation.publish_before is shorter than the JWKS cache lifetimes plus the ring \
             re-read (6m30s): a core may see a new kid before it fetched the JWKS that has it"
        );
    }
    if rotation.overlap < settings.ttl + CLOCK_SKEW {
        tracing::warn!(
            overlap = ?rotation.overlap,
            "assertion.key_rotation.overlap is shorter than the assertion lifetime plus a minute of clock skew"
        );
    }
}

fn create_data_dir(data_dir: &Path) -> Result<(), KeyError> {
    std::fs::create_dir_all(data_dir).map_err(|e| KeyError::Key {
        path: data_dir.to_path_buf(),
        message: format!("cannot create the data dir: {e}"),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::KeyRotationSettings;
    use jsonwebtoken::jwk::JwkSet;

    pub(crate) fn eddsa_settings(publish_before: u64) -> AssertionSettings {
        AssertionSettings {
            algorithm: AssertionAlgorithm::EdDSA,
            secret: None,
            audience: "mxcp-core".into(),
            ttl: Duration::from_secs(300),
            include_external_token: true,
            key_rotation: KeyRotationSettings {
                publish_before: Duration::from_secs(publish_before),
                overlap: Duration::from_secs(600),
            },
        }
    }

    fn kids(jwks: &[u8]) -> Vec<String> {
        let set: JwkSet = serde_json::from_slice(jwks).unwrap();
        set.keys.into_iter().filter_map(|k| k.common.key_id).collect()
    }

    #[tokio::test]
    async fn a_new_key_is_published_before_it_signs_and_the_jwks_file_follows() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SigningKeys::load(&eddsa_settings(60), dir.path(), None).await.unwrap();
        let now = crate::support::now();
        let first = keys.view().signer_at(now).unwrap().kid().unwrap().to_string();
        assert_eq!(kids(&keys.jwks()), vec![first.clone()]);

        let added = keys.rotate(false).await.unwrap();
        assert_eq!(
            kids(&keys.jwks()),
            [first.clone(), added.kid.clone()],
            "published at once"
        );
        let file = std::fs::read(dir.path().join("jwks.json")).unwrap();
        assert_eq!(kids(&file), [first.clone(), added.kid.clone()], "and in the JWKS file");
        let view = keys.view();
        assert_eq!(
            view.signer_at(now).unwrap().kid(),
            Some(first.as_str()),
            "not signing yet"
        );
        assert_eq!(
            view.signer_at(added.activate_at).unwrap().kid(),
            Some(added.kid.as_str())
        );

        let listed = keys.list().await.unwrap();
        let states: Vec<_> = listed.iter().map(|k| (k.kid.clone(), k.state)).collect();
        assert_eq!(states, [(first, KeyState::Current), (added.kid, KeyState::Next)]);

        // Another process (the offline command) sees the same ring.
        let again = SigningKeys::load(&eddsa_settings(60), dir.path(), None).await.unwrap();
        assert_eq!(again.jwks(), keys.jwks());
    }

    #[tokio::test]
    async fn concurrent_rotations_add_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SigningKeys::load(&eddsa_settings(60), dir.path(), None).await.unwrap();
        let (a, b) = tokio::join!(keys.rotate(false), keys.rotate(false));
        assert_eq!(
            a.is_ok() as u8 + b.is_ok() as u8,
            1,
            "one wins, the other is told one is under way"
        );
        assert_eq!(kids(&keys.jwks()).len(), 2);
    }

    #[tokio::test]
    async fn an_hs256_secret_is_not_rotated_here() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = eddsa_settings(60);
        settings.algorithm = AssertionAlgorithm::HS256;
        settings.secret = Some(crate::config::Secret::new("0123456789abcdef0123456789abcdef"));
        let keys = SigningKeys::load(&settings, dir.path(), None).await.unwrap();
        let err = keys.rotate(false).await.unwrap_err();
        assert!(err.to_string().contains("assertion.secret"), "{err}");
        assert_eq!(kids(&keys.jwks()), Vec::<String>::new());
        assert!(!dir.path().join("signing-keys.json").exists());
    }
}
