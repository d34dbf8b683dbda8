//! Encryption at rest for records that hold provider tokens (XChaCha20-Poly1305, a random
//! nonce per record, the table and key as associated data so a record cannot be moved).
//!
//! The key is MXCP's `persistence.auth_encryption_key` when set (hashed to 32 bytes), else a
//! random key that mxgate creates once in its data directory with mode 0600.

use super::StoreError;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

const NONCE_LEN: usize = 24;
const KEY_FILE: &str = "store.key";

pub struct RecordCipher {
    aead: XChaCha20Poly1305,
    /// A separate key for MACs (consent cookies), derived from the same secret.
    mac_key: [u8; 32],
}

// === impl RecordCipher ===

impl RecordCipher {
    pub fn from_secret(secret: &[u8]) -> Self {
        let key: [u8; 32] = Sha256::digest(secret).into();
        Self::from_key(key)
    }

    fn from_key(key: [u8; 32]) -> Self {
        let mut mac = Sha256::new();
        mac.update(b"mxgate mac key");
        mac.update(key);
        Self {
            aead: XChaCha20Poly1305::new(&key.into()),
            mac_key: mac.finalize().into(),
        }
    }

    /// Loads `<data_dir>/store.key`, creating it (0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(KEY_FILE);
        let io = |context: String| move |source| StoreError::Io { context, source };
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                Ok(Self::from_key(key))
            }
            Ok(_) => Err(StoreError::Backend(format!(
                "{} is not a 32-byte key; remove it only if the store may be discarded",
                path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| StoreError::Backend(format!("no randomness: {e}")))?;
                let mut file = create_private_file(&path).map_err(io(format!("creating {}", path.display())))?;
                file.write_all(&key)
                    .map_err(io(format!("writing {}", path.display())))?;
                file.sync_all().map_err(io(format!("syncing {}", path.display())))?;
                Ok(Self::from_key(key))
            }
            Err(e) => Err(StoreError::Io {
                context: format!("reading {}", path.display()),
                source: e,
            }),
        }
    }

    pub fn seal(&self, associated: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| StoreError::Backend(format!("no randomness: {e}")))?;
        let ciphertext = self
            .aead
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: associated,
                },
            )
            .map_err(|_| StoreError::Backend("encryption failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    pub fn open(&self, associated: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: associated,
                },
            )
            .ok()
    }

    /// Key for HMAC-style signatures of browser cookies.
    pub fn mac_key(&self) -> &[u8; 32] {
        &self.mac_key
    }
}

/// Creates a file readable only by its owner (0600), failing if it exists.
pub fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_records_open_only_with_the_same_key_and_binding() {
        let cipher = RecordCipher::from_secret(b"k1");
        let sealed = cipher.seal(b"sessions/a", b"provider-token").unwrap();
        assert!(!sealed.windows(14).any(|w| w == b"provider-token"));
        assert_eq!(cipher.open(b"sessions/a", &sealed).unwrap(), b"provider-token");
        assert!(cipher.open(b"sessions/b", &sealed).is_none());
        assert!(RecordCipher::from_secret(b"k2").open(b"sessions/a", &sealed).is_none());
        assert!(cipher.open(b"sessions/a", &sealed[..10]).is_none());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = RecordCipher::load_or_create(dir.path()).unwrap();
        let sealed = first.seal(b"x", b"y").unwrap();
        let second = RecordCipher::load_or_create(dir.path()).unwrap();
        assert_eq!(second.open(b"x", &sealed).unwrap(), b"y");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
