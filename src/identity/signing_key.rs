//! The key mxgate signs user assertions with, and the JWKS that publishes its public half.
//!
//! EdDSA (Ed25519) by default: the private key is created on first start as
//! `<data_dir>/signing-key.pem` (PKCS#8, mode 0600), its `kid` is the RFC 7638 thumbprint, and
//! the public JWKS is served at `/.well-known/jwks.json` and written to `<data_dir>/jwks.json`
//! for cores that read a file. HS256 with a shared secret is the alternative; its JWKS is empty.

use crate::config::gateway_file::AssertionAlgorithm;
use crate::config::AssertionSettings;
use crate::store::{Store, Table};
use crate::support::create_private_file;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use bytes::Bytes;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters,
    OctetKeyPairType, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

const KEY_FILE: &str = "signing-key.pem";
const JWKS_FILE: &str = "jwks.json";

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("signing key {path}: {message}")]
    Key { path: PathBuf, message: String },
    /// The cause is in the message and not also a `source`, so `{:#}` says it once.
    #[error("signing an assertion failed: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

impl From<jsonwebtoken::errors::Error> for KeyError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        Self::Sign(e)
    }
}

/// Signs assertions; knows its `kid` and its public JWKS.
pub struct AssertionSigner {
    header: Header,
    key: EncodingKey,
    jwks: Bytes,
}

// === impl AssertionSigner ===

impl AssertionSigner {
    pub fn from_settings(settings: &AssertionSettings, data_dir: &Path) -> Result<Self, KeyError> {
        match (settings.algorithm, &settings.secret) {
            (AssertionAlgorithm::HS256, Some(secret)) => Self::hs256(secret.expose().as_bytes()),
            (AssertionAlgorithm::HS256, None) => Err(KeyError::Key {
                path: data_dir.to_path_buf(),
                message: "HS256 needs `assertion.secret`".into(),
            }),
            (AssertionAlgorithm::EdDSA, _) => {
                let signer = Self::ed25519(&load_or_create_ed25519(data_dir)?)?;
                signer.write_jwks_file(data_dir)?;
                Ok(signer)
            }
        }
    }

    /// As [`Self::from_settings`], for replicas sharing a store: without a key file in
    /// `data_dir` (mounted from a Secret, say), the EdDSA key is the one kept sealed in the
    /// store — made by whichever replica started first — so every replica signs with the same
    /// key and serves the same JWKS.
    pub async fn shared(settings: &AssertionSettings, data_dir: &Path, store: &Store) -> Result<Self, KeyError> {
        if settings.algorithm != AssertionAlgorithm::EdDSA || data_dir.join(KEY_FILE).exists() {
            return Self::from_settings(settings, data_dir);
        }
        let signer = Self::ed25519(&shared_ed25519(store).await?)?;
        std::fs::create_dir_all(data_dir).map_err(|e| KeyError::Key {
            path: data_dir.to_path_buf(),
            message: format!("cannot create the data dir: {e}"),
        })?;
        signer.write_jwks_file(data_dir)?;
        Ok(signer)
    }

    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".into());
        Ok(Self {
            header,
            key: EncodingKey::from_secret(secret)?,
            jwks: Bytes::from_static(b"{\"keys\":[]}"),
        })
    }

    pub fn ed25519(signing_key: &SigningKey) -> Result<Self, KeyError> {
        let key_error = |message: String| KeyError::Key {
            path: PathBuf::from(KEY_FILE),
            message,
        };
        let der = signing_key
            .to_pkcs8_der()
            .map_err(|e| key_error(format!("cannot encode: {e}")))?;
        let mut jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(signing_key.verifying_key().as_bytes()),
            }),
        };
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| key_error(format!("thumbprint: {e}")))?;
        jwk.common.key_id = Some(kid.clone());
        let jwks = serde_json::to_vec(&JwkSet { keys: vec![jwk] }).map_err(|e| key_error(e.to_string()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("JWT".into());
        header.kid = Some(kid);
        Ok(Self {
            header,
            key: EncodingKey::from_ed_der(der.as_bytes()),
            jwks: Bytes::from(jwks),
        })
    }

    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        Ok(jsonwebtoken::encode(&self.header, claims, &self.key)?)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.header.alg
    }

    pub fn kid(&self) -> Option<&str> {
        self.header.kid.as_deref()
    }

    /// The public JWKS document (JSON).
    pub fn jwks(&self) -> &Bytes {
        &self.jwks
    }

    fn write_jwks_file(&self, data_dir: &Path) -> Result<(), KeyError> {
        let path = data_dir.join(JWKS_FILE);
        let tmp = data_dir.join(format!("{JWKS_FILE}.tmp"));
        std::fs::write(&tmp, &self.jwks)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| KeyError::Key {
                path,
                message: format!("cannot write the public JWKS: {e}"),
            })
    }
}

/// Where the shared key is kept in the store's `keys` table.
const SHARED_KEY: &str = "assertion-signing-key";

async fn shared_ed25519(store: &Store) -> Result<SigningKey, KeyError> {
    let err = |message: String| KeyError::Key {
        path: PathBuf::from(format!("store:keys/{SHARED_KEY}")),
        message,
    };
    let parse =
        |pem: String| SigningKey::from_pkcs8_pem(&pem).map_err(|e| err(format!("not a PKCS#8 Ed25519 key: {e}")));
    if let Some(pem) = store
        .get_sealed::<String>(Table::Keys, SHARED_KEY)
        .await
        .map_err(|e| err(e.to_string()))?
    {
        return parse(pem);
    }
    let key = new_ed25519().map_err(err)?;
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| err(format!("cannot encode: {e}")))?;
    if store
        .insert_new_sealed(Table::Keys, SHARED_KEY, &pem.as_str(), 0)
        .await
        .map_err(|e| err(e.to_string()))?
    {
        tracing::info!("created a new assertion signing key in the shared store");
        return Ok(key);
    }
    // Another replica made one first: use that one.
    let pem = store
        .get_sealed::<String>(Table::Keys, SHARED_KEY)
        .await
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("vanished from the store while being created".into()))?;
    parse(pem)
}

fn new_ed25519() -> Result<SigningKey, String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn load_or_create_ed25519(data_dir: &Path) -> Result<SigningKey, KeyError> {
    let path = data_dir.join(KEY_FILE);
    let err = |message: String| KeyError::Key {
        path: path.clone(),
        message,
    };
    match std::fs::read_to_string(&path) {
        Ok(pem) => SigningKey::from_pkcs8_pem(&pem).map_err(|e| err(format!("not a PKCS#8 Ed25519 key: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(|e| err(format!("cannot create data dir: {e}")))?;
            let key = new_ed25519().map_err(err)?;
            let pem = key
                .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                .map_err(|e| err(format!("cannot encode: {e}")))?;
            let mut file = create_private_file(&path).map_err(|e| err(format!("cannot create: {e}")))?;
            file.write_all(pem.as_bytes())
                .and_then(|_| file.sync_all())
                .map_err(|e| err(format!("cannot write: {e}")))?;
            tracing::info!(path = %path.display(), "created a new assertion signing key");
            Ok(key)
        }
        Err(e) => Err(err(format!("cannot read: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};

    #[test]
    fn ed25519_key_is_created_once_and_verifies_against_its_jwks() {
        let dir = tempfile::tempdir().unwrap();
        let settings = AssertionSettings {
            algorithm: AssertionAlgorithm::EdDSA,
            secret: None,
            audience: "mxcp-core".into(),
            ttl: std::time::Duration::from_secs(300),
            include_external_token: true,
        };
        let signer = AssertionSigner::from_settings(&settings, dir.path()).unwrap();
        let again = AssertionSigner::from_settings(&settings, dir.path()).unwrap();
        assert_eq!(signer.kid(), again.kid(), "the key is kept in the data dir");

        let token = signer
            .sign(&serde_json::json!({"sub": "alice", "aud": "mxcp-core", "exp": 4102444800u64}))
            .unwrap();
        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        let jwks: JwkSet = serde_json::from_slice(signer.jwks()).unwrap();
        let file_jwks: JwkSet = serde_json::from_slice(&std::fs::read(dir.path().join(JWKS_FILE)).unwrap()).unwrap();
        assert_eq!(jwks, file_jwks);
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["mxcp-core"]);
        let data = decode::<serde_json::Value>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &validation).unwrap();
        assert_eq!(data.claims["sub"], "alice");

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
