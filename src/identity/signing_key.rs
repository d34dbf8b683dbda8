//! One key mxgate signs user assertions with, and the JWK that publishes its public half.
//!
//! EdDSA (Ed25519) by default: a PKCS#8 private key whose `kid` is the RFC 7638 thumbprint;
//! which keys exist and which one signs is the key ring's business (`key_ring`,
//! `key_ring_home`), serving them is `signing_keys`'. The JWKS of the published keys is served
//! at `/.well-known/jwks.json` and written to `<data_dir>/jwks.json` for cores that read a
//! file. HS256 with a shared secret is the alternative; its JWKS is empty.

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
    /// The cause is in the message and not also a `source`, so `{:#}` says it once.
    #[error("the signing key ring in {home}: {cause}")]
    Ring {
        home: String,
        cause: super::key_ring::RingError,
    },
    #[error("{0}")]
    Rotate(#[from] super::key_ring::RotateError),
    #[error("the signing key ring: {0}")]
    Store(#[from] crate::store::StoreError),
    /// This signing key is not mxgate's to rotate (HS256, or a key file mounted beside a shared store).
    #[error("{0}")]
    NotRotatable(String),
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
    /// The public key (EdDSA only).
    jwk: Option<Jwk>,
    jwks: Bytes,
}

// === impl AssertionSigner ===

impl AssertionSigner {
    /// The signer of a PKCS#8 PEM Ed25519 key; `source` names where it came from, for errors.
    pub fn from_pem(pem: &str, source: &Path) -> Result<Self, KeyError> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyError::Key {
            path: source.to_path_buf(),
            message: format!("not a PKCS#8 Ed25519 key: {e}"),
        })?;
        Self::ed25519(&key)
    }

    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".into());
        Ok(Self {
            header,
            key: EncodingKey::from_secret(secret)?,
            jwk: None,
            jwks: jwks_document(&[]),
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
        let jwks = jwks_document(std::slice::from_ref(&jwk));
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("JWT".into());
        header.kid = Some(kid);
        Ok(Self {
            header,
            key: EncodingKey::from_ed_der(der.as_bytes()),
            jwk: Some(jwk),
            jwks,
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

    /// The public key as a JWK (none for HS256).
    pub fn jwk(&self) -> Option<&Jwk> {
        self.jwk.as_ref()
    }

    /// The public JWKS document (JSON) of this key alone.
    pub fn jwks(&self) -> &Bytes {
        &self.jwks
    }
}

/// The JWKS document (JSON) publishing `keys`.
pub fn jwks_document(keys: &[Jwk]) -> Bytes {
    let set = JwkSet { keys: keys.to_vec() };
    // A JwkSet of well-formed keys always serializes; an empty set is the fallback.
    Bytes::from(serde_json::to_vec(&set).unwrap_or_else(|_| b"{\"keys\":[]}".to_vec()))
}

/// Writes the public JWKS to `<data_dir>/jwks.json` (atomically: cores re-read it on change).
pub fn write_jwks_file(data_dir: &Path, jwks: &[u8]) -> Result<(), KeyError> {
    let path = data_dir.join(JWKS_FILE);
    let tmp = data_dir.join(format!("{JWKS_FILE}.tmp"));
    std::fs::write(&tmp, jwks)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| KeyError::Key {
            path,
            message: format!("cannot write the public JWKS: {e}"),
        })
}

/// A new Ed25519 key as PKCS#8 PEM, with its `kid`.
pub fn new_ed25519_pem() -> Result<(String, String), KeyError> {
    let err = |message: String| KeyError::Key {
        path: PathBuf::from("(new key)"),
        message,
    };
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| err(format!("no randomness: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| err(format!("cannot encode: {e}")))?;
    let signer = AssertionSigner::ed25519(&key)?;
    let kid = signer.kid().unwrap_or_default().to_string();
    Ok((kid, pem.to_string()))
}

/// The single key file of mxgate before the key ring (`<data_dir>/signing-key.pem`), if any:
/// read once to become the ring's first key.
pub fn legacy_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};

    #[test]
    fn a_new_key_signs_assertions_that_verify_against_its_jwk() {
        let (kid, pem) = new_ed25519_pem().unwrap();
        let signer = AssertionSigner::from_pem(&pem, Path::new("test")).unwrap();
        assert_eq!(signer.kid(), Some(kid.as_str()), "the kid is the key's thumbprint");
        assert_eq!(kid.len(), 43);

        let token = signer
            .sign(&serde_json::json!({"sub": "alice", "aud": "mxcp-core", "exp": 4102444800u64}))
            .unwrap();
        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
        let jwks: JwkSet = serde_json::from_slice(&jwks_document(&[signer.jwk().unwrap().clone()])).unwrap();
        let jwk = jwks.find(&kid).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["mxcp-core"]);
        let data = decode::<serde_json::Value>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &validation).unwrap();
        assert_eq!(data.claims["sub"], "alice");
    }

    #[test]
    fn a_pem_that_is_no_ed25519_key_is_refused_with_its_source() {
        let err = AssertionSigner::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            Path::new("x.pem"),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("x.pem"), "{err}");
    }
}
