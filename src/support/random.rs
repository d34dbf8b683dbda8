//! Randomness from the operating system: identifiers and opaque tokens.

use super::hashing::hex;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

/// 32 random bytes, base64url, after a prefix that says what the token is.
pub fn new_opaque_token(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// A random identifier (128 bits, hex): session ids, transaction ids, `jti`s.
pub fn random_id() -> String {
    hex(&random_bytes::<16>())
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The OS random source failing is unrecoverable for an auth server; getrandom only fails on
    // platforms without one, which we do not build for.
    if let Err(e) = getrandom::fill(&mut out) {
        panic!("operating system randomness unavailable: {e}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_ids_are_random_and_prefixed() {
        let a = new_opaque_token("mxg_at_");
        let b = new_opaque_token("mxg_at_");
        assert_ne!(a, b);
        assert!(a.starts_with("mxg_at_"));
        assert_eq!(a.len(), "mxg_at_".len() + 43);
        assert_eq!(random_id().len(), 32);
        assert_ne!(random_id(), random_id());
    }
}
