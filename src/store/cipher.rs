//! Encryption at rest for records that hold provider tokens (XChaCha20-Poly1305, a random
//! nonce per record, the table and key as associated data so a record cannot be moved).
//!
//! The secret is MXCP's `persistence.auth_encryption_key` when set (the configuration refuses
//! one too short to be random), else a random 32-byte key that mxgate creates once in its data
//! directory with mode 0600. Either way the record-sealing key and the cookie-MAC key are derived
//! from it with HKDF-SHA256 (RFC 5869), each with its own `info`, so neither key reveals the other.

use super::StoreError;
use crate::support::create_private_file;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use std::io::Write;
use std::path::Path;

const NONCE_LEN: usize = 24;
const KEY_FILE: &str = "store.key";
/// HKDF `info` of the XChaCha20-Poly1305 key that seals records and stateless tokens.
const SEALING_KEY_INFO: &[u8] = b"mxgate v1 record sealing key";
/// HKDF `info` of the key that signs browser cookies (consent memory).
const MAC_KEY_INFO: &[u8] = b"mxgate v1 cookie mac key";

pub struct RecordCipher {
    aead: XChaCha20Poly1305,
    /// A separate key for MACs (consent cookies), derived from the same secret.
    mac_key: [u8; 32],
}

// === impl RecordCipher ===

impl RecordCipher {
    /// Derives both keys from `secret` (a random key: the configured one or `store.key`).
    pub fn from_secret(secret: &[u8]) -> Self {
        let hkdf = Hkdf::<Sha256>::new(None, secret);
        let derive = |info: &[u8]| {
            let mut key = [0u8; 32];
            hkdf.expand(info, &mut key)
                .expect("32 bytes is far below HKDF-SHA256's 8160-byte output limit");
            key
        };
        Self {
            aead: XChaCha20Poly1305::new(&derive(SEALING_KEY_INFO).into()),
            mac_key: derive(MAC_KEY_INFO),
        }
    }

    /// Loads `<data_dir>/store.key`, creating it (0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(KEY_FILE);
        let io = |context: String| move |cause| StoreError::Io { context, cause };
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => Ok(Self::from_secret(&bytes)),
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
                Ok(Self::from_secret(&key))
            }
            Err(e) => Err(StoreError::Io {
                context: format!("reading {}", path.display()),
                cause: e,
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

    /// HKDF-SHA256 (RFC 5869, empty salt, one block) written out with HMAC, so the keys are
    /// checked independently of how `from_secret` calls the `hkdf` crate.
    fn hkdf_sha256(ikm: &[u8], info: &[u8]) -> [u8; 32] {
        use hkdf::hmac::{Hmac, KeyInit, Mac};
        let mut extract = Hmac::<Sha256>::new_from_slice(&[0u8; 32]).unwrap();
        extract.update(ikm);
        let prk = extract.finalize().into_bytes();
        let mut expand = Hmac::<Sha256>::new_from_slice(&prk).unwrap();
        expand.update(info);
        expand.update(&[1]);
        expand.finalize().into_bytes().into()
    }

    /// Seals with a key given directly, the way `seal` lays out a record (nonce, ciphertext).
    fn seal_with_key(key: [u8; 32], associated: &[u8], plain: &[u8]) -> Vec<u8> {
        let nonce = [7u8; NONCE_LEN];
        let aead = XChaCha20Poly1305::new(&key.into());
        let payload = Payload {
            msg: plain,
            aad: associated,
        };
        let mut out = nonce.to_vec();
        out.extend(aead.encrypt(XNonce::from_slice(&nonce), payload).unwrap());
        out
    }

    #[test]
    fn sealing_and_mac_keys_are_distinct_hkdf_outputs_of_the_secret() {
        let secret = b"Gq2Ck3Kx0m1qYt8G7a1o9vQy3bqj9Yb0kF3s8qk8c2E=";
        let cipher = RecordCipher::from_secret(secret);
        let sealing_key = hkdf_sha256(secret, SEALING_KEY_INFO);
        let sealed = seal_with_key(sealing_key, b"t/k", b"plain");
        assert_eq!(cipher.open(b"t/k", &sealed).unwrap(), b"plain");
        assert_eq!(cipher.mac_key(), &hkdf_sha256(secret, MAC_KEY_INFO));
        assert_ne!(cipher.mac_key(), &sealing_key);
    }

    #[test]
    fn the_key_file_goes_through_hkdf_too() {
        let dir = tempfile::tempdir().unwrap();
        let cipher = RecordCipher::load_or_create(dir.path()).unwrap();
        let raw: [u8; 32] = std::fs::read(dir.path().join(KEY_FILE)).unwrap().try_into().unwrap();
        // The file's bytes are key material, never the sealing key itself.
        assert!(cipher.open(b"x", &seal_with_key(raw, b"x", b"y")).is_none());
        let derived = seal_with_key(hkdf_sha256(&raw, SEALING_KEY_INFO), b"x", b"y");
        assert_eq!(cipher.open(b"x", &derived).unwrap(), b"y");
        assert_eq!(cipher.mac_key(), &hkdf_sha256(&raw, MAC_KEY_INFO));
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
