//! How tokens, codes, states and client secrets are kept: only their SHA-256 hash, in hex.

use sha2::{Digest, Sha256};

/// How a token or code is stored: hex SHA-256.
pub fn token_hash(token: &str) -> String {
    hex(&token_digest(token))
}

/// The SHA-256 of a token: the request path's cache key (no allocation), hex of it the store's.
pub fn token_digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// A token's SHA-256.
pub type TokenDigest = [u8; 32];

/// Hashes a [`TokenDigest`] for a hash map by taking 8 of its bytes: a SHA-256 is already
/// uniform, and no one can choose it (a preimage), so SipHash's protection against chosen keys
/// buys nothing here and costs a few hundred instructions per request.
#[derive(Clone, Copy, Default)]
pub struct DigestKeyed;

impl std::hash::BuildHasher for DigestKeyed {
    type Hasher = DigestKeyHasher;
    fn build_hasher(&self) -> DigestKeyHasher {
        DigestKeyHasher(0)
    }
}

/// See [`DigestKeyed`]; other input (the slice length a `[u8; 32]` writes first) is mixed in.
pub struct DigestKeyHasher(u64);

impl std::hash::Hasher for DigestKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        match bytes.first_chunk::<8>() {
            Some(first) => self.0 ^= u64::from_le_bytes(*first),
            None => {
                for b in bytes {
                    self.0 = self.0.rotate_left(8) ^ u64::from(*b);
                }
            }
        }
    }
}

/// The digest a [`token_hash`] stands for; `None` if `hash` is not 64 hex digits.
pub fn digest_of_hash(hash: &str) -> Option<TokenDigest> {
    let bytes = hash.as_bytes();
    if bytes.len() != 64 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut digest = [0u8; 32];
    for (out, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *out = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(digest)
}

/// Lower-case hex of `bytes` (on every authenticated request: the token's cache key).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]])
        .collect();
    // Only ASCII hex digits: always UTF-8.
    String::from_utf8(digits).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_as_hex_sha256() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn digests_key_a_map_by_their_own_bits() {
        use std::hash::BuildHasher;
        let (a, b) = (token_digest("a"), token_digest("b"));
        assert_ne!(DigestKeyed.hash_one(a), DigestKeyed.hash_one(b));
        assert_eq!(DigestKeyed.hash_one(a), DigestKeyed.hash_one(token_digest("a")));
        let mut map: std::collections::HashMap<TokenDigest, u32, DigestKeyed> = Default::default();
        for i in 0..1000 {
            map.insert(token_digest(&i.to_string()), i);
        }
        assert!((0..1000).all(|i| map.get(&token_digest(&i.to_string())) == Some(&i)));
    }

    #[test]
    fn a_hash_turns_back_into_its_digest_and_nothing_else_does() {
        let hash = token_hash("abc");
        assert_eq!(digest_of_hash(&hash), Some(token_digest("abc")));
        assert_eq!(digest_of_hash(&hash.to_uppercase()), Some(token_digest("abc")));
        assert_eq!(digest_of_hash(&hash[..62]), None, "too short");
        assert_eq!(digest_of_hash(&format!("{hash}00")), None, "too long");
        assert_eq!(digest_of_hash(&hash.replacen('b', "g", 1)), None, "not hex");
        assert_eq!(digest_of_hash(&"é".repeat(32)), None, "not ASCII");
        assert_eq!(digest_of_hash(&"+f".repeat(32)), None, "a sign is not a digit");
    }
}
