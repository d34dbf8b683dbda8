//! The rule for MXCP's `persistence.auth_encryption_key`: it must be a random key, not a
//! password. mxgate derives its record-sealing and cookie-MAC keys from it with HKDF
//! (`store::cipher`), and HKDF adds no strength to a guessable input.

use super::Secret;

/// The shortest accepted key, in characters: 32 random bytes written as unpadded base64 (43).
/// The same 32 bytes as padded base64 (44: a Fernet key, what MXCP users usually set), url-safe
/// base64 (43 or 44) or hex (64) are at least as long, so this one length accepts every encoding
/// of a 32-byte key, and a raw random string of 43 characters or more.
pub(super) const MIN_KEY_CHARS: usize = 43;

/// Refuses a key too short to hold 256 random bits, saying how to make one.
pub(super) fn check(key: &Secret) -> Result<(), String> {
    if key.expose().chars().count() >= MIN_KEY_CHARS {
        return Ok(());
    }
    Err(format!(
        "too short to be a random key: use 32 random bytes, base64- or hex-encoded (a Fernet key \
         works), or a random string of at least {MIN_KEY_CHARS} characters; generate one with \
         `openssl rand -base64 32`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(key: &str) -> bool {
        check(&Secret::new(key)).is_ok()
    }

    #[test]
    fn every_encoding_of_32_random_bytes_is_accepted() {
        // A Fernet key (url-safe base64, padded), `openssl rand -base64 32`, unpadded base64, hex.
        assert!(accepted("x3Q9vV1m8o0vJp2sQmR5cY2rS7Jc6w3aQ2nH3J4kL5M="));
        assert!(accepted("Fq3r+9Zk0a/8hW1yTn2LmXo4pQ7sVb6cEd5uJg3iKh0="));
        assert!(accepted("Fq3r-9Zk0a_8hW1yTn2LmXo4pQ7sVb6cEd5uJg3iKh0"));
        assert!(accepted(&"a1".repeat(32)));
        assert!(accepted("a random passphrase of forty-three characters"));
    }

    #[test]
    fn short_keys_are_refused_with_how_to_make_one() {
        // A password, 16 bytes as hex and as base64, one character short.
        let short = [
            "stateless-e2e-shared-encryption-key",
            &"ab".repeat(16),
            "AAECAwQFBgcICQoLDA0ODw==",
            &"x".repeat(42),
        ];
        for key in short {
            let message = check(&Secret::new(key)).unwrap_err();
            assert!(message.contains("openssl rand -base64 32"), "{message}");
            assert!(!message.contains(key), "the key must not be echoed: {message}");
        }
        assert!(!accepted("k"));
    }
}
