//! The cryptography `jsonwebtoken` runs on: RustCrypto's (its `rust_crypto` feature) for every
//! algorithm, except that RSA signatures (`RS*`, `PS*`: how most identity providers sign ID
//! tokens) are checked with `ring`, already in the tree through rustls. RustCrypto's RSA
//! (crypto-bigint, constant-time and portable) took ~800 000 instructions per RS256 check, a
//! fifth of a whole login's CPU; ring's assembly does the same check in a small fraction of that
//! (BENCHMARKS.md, "Login cost"). Only verification changes: nothing here signs.
//!
//! ring accepts RSA moduli of 2048 to 8192 bits; a key outside that range (a 1024-bit key of an
//! old deployment) is still checked by RustCrypto, as before.

use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::Error;
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use ring::signature::{self as ring_sig, RsaParameters, RsaPublicKeyComponents};

/// The smallest and largest RSA moduli ring checks (in bytes).
const RING_MIN_MODULUS_BYTES: usize = 2048 / 8;
const RING_MAX_MODULUS_BYTES: usize = 8192 / 8;

/// RustCrypto's provider with [`verifier`] in place of its verifier factory.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: rust_crypto::DEFAULT_PROVIDER.signer_factory,
    verifier_factory: verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rust_crypto::DEFAULT_PROVIDER
            .key_utils
            .rsa_pub_components_from_private_key,
        rsa_pub_components_from_public_key: rust_crypto::DEFAULT_PROVIDER
            .key_utils
            .rsa_pub_components_from_public_key,
        ec_pub_components_from_private_key: rust_crypto::DEFAULT_PROVIDER
            .key_utils
            .ec_pub_components_from_private_key,
        ed_pub_components_from_private_key: rust_crypto::DEFAULT_PROVIDER
            .key_utils
            .ed_pub_components_from_private_key,
        compute_digest: rust_crypto::DEFAULT_PROVIDER.key_utils.compute_digest,
    },
};

/// Makes [`PROVIDER`] the process's `jsonwebtoken` provider. Call before anything signs or
/// verifies a JWT; a later call (or one after a first use) leaves the provider in place, which
/// checks the same signatures, only slower.
pub fn install() {
    if PROVIDER.install_default().is_err() {
        tracing::debug!("jsonwebtoken's crypto provider was already chosen; RSA checks stay on RustCrypto");
    }
}

/// A verifier for `algorithm` and `key`: ring's for RSA keys ring can check, RustCrypto's
/// otherwise.
fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    match ring_verifier(*algorithm, key) {
        Some(verifier) => Ok(Box::new(verifier)),
        None => (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key),
    }
}

/// ring's verifier, for an RSA algorithm and an RSA key of a size ring checks.
fn ring_verifier(algorithm: Algorithm, key: &DecodingKey) -> Option<RingRsaVerifier> {
    let parameters = ring_parameters(algorithm)?;
    let DecodingKeyKind::RsaModulusExponent { n, e } = key.kind() else {
        return None;
    };
    let modulus = strip_leading_zeros(n);
    (RING_MIN_MODULUS_BYTES..=RING_MAX_MODULUS_BYTES)
        .contains(&modulus.len())
        .then(|| RingRsaVerifier {
            algorithm,
            parameters,
            n: modulus.to_vec(),
            e: e.clone(),
        })
}

fn ring_parameters(algorithm: Algorithm) -> Option<&'static RsaParameters> {
    Some(match algorithm {
        Algorithm::RS256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// An RSA public key (modulus and exponent, big-endian) checked by ring.
struct RingRsaVerifier {
    algorithm: Algorithm,
    parameters: &'static RsaParameters,
    n: Vec<u8>,
    e: Vec<u8>,
}

// === impl RingRsaVerifier ===

impl signature::Verifier<Vec<u8>> for RingRsaVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        RsaPublicKeyComponents { n: &self.n, e: &self.e }
            .verify(self.parameters, message, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingRsaVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

#[cfg(test)]
mod tests;
