//! Opaque tokens: how they are made, how they are stored (only as SHA-256 hashes), and how an
//! access/refresh pair is issued for a session.

use super::SessionRecord;
use crate::store::{Store, StoreError, Table};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

pub const ACCESS_TOKEN_PREFIX: &str = "mxg_at_";
pub const REFRESH_TOKEN_PREFIX: &str = "mxg_rt_";
pub const AUTHORIZATION_CODE_PREFIX: &str = "mxg_ac_";

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

/// How a token or code is stored: hex SHA-256.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Access,
    Refresh,
}

/// What the `tokens` table holds for a token hash.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenRecord {
    pub kind: TokenKind,
    pub session_id: String,
    pub client_id: String,
    pub expires_at: u64,
    /// For a refresh token: the hash of the access token issued with it.
    #[serde(default)]
    pub paired_access_hash: Option<String>,
    /// A refresh token that was already exchanged; presenting it again means theft (after one
    /// retry within the grace window).
    #[serde(default)]
    pub rotated: bool,
    /// When it was exchanged (Unix seconds).
    #[serde(default)]
    pub rotated_at: u64,
    /// The one retry within the grace window was used.
    #[serde(default)]
    pub grace_used: bool,
}

/// A freshly issued pair, as the token endpoint returns it.
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: Option<String>,
}

/// Lifetimes applied when issuing.
#[derive(Clone, Copy)]
pub struct IssuePolicy {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub with_refresh_token: bool,
    /// Self-contained access tokens (see [`super::stateless`]), stored nowhere.
    pub stateless: bool,
}

/// Issues a new access token (and refresh token when the client may refresh) for a session.
/// No token outlives its session.
pub async fn issue_tokens(
    store: &Store,
    session: &SessionRecord,
    policy: IssuePolicy,
    now: u64,
) -> Result<IssuedTokens, StoreError> {
    let mut access_expires = (now + policy.access_ttl.as_secs()).min(session.expires_at);
    if policy.stateless {
        // The token carries the provider token: it must not outlive it while a refresh could
        // renew it (the refresh grant does, in stateless mode).
        let provider = &session.provider_tokens;
        if let (Some(provider_expiry), Some(_)) = (provider.expires_at, &provider.refresh_token) {
            access_expires = access_expires.min(provider_expiry.max(now + 1));
        }
    }
    let (access_token, access_hash) = if policy.stateless {
        (
            super::stateless::seal_access_token(store.cipher(), session, access_expires)?,
            None,
        )
    } else {
        let token = new_opaque_token(ACCESS_TOKEN_PREFIX);
        let hash = token_hash(&token);
        store
            .put(
                Table::Tokens,
                &hash,
                &TokenRecord {
                    kind: TokenKind::Access,
                    session_id: session.id.clone(),
                    client_id: session.client_id.clone(),
                    expires_at: access_expires,
                    paired_access_hash: None,
                    rotated: false,
                    rotated_at: 0,
                    grace_used: false,
                },
                access_expires,
            )
            .await?;
        (token, Some(hash))
    };
    let refresh_token = if policy.with_refresh_token {
        let token = new_opaque_token(REFRESH_TOKEN_PREFIX);
        let expires = (now + policy.refresh_ttl.as_secs()).min(session.expires_at);
        store
            .put(
                Table::Tokens,
                &token_hash(&token),
                &TokenRecord {
                    kind: TokenKind::Refresh,
                    session_id: session.id.clone(),
                    client_id: session.client_id.clone(),
                    expires_at: expires,
                    paired_access_hash: access_hash,
                    rotated: false,
                    rotated_at: 0,
                    grace_used: false,
                },
                expires,
            )
            .await?;
        Some(token)
    } else {
        None
    };
    Ok(IssuedTokens {
        access_token,
        expires_in: access_expires.saturating_sub(now),
        refresh_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let a = new_opaque_token(ACCESS_TOKEN_PREFIX);
        let b = new_opaque_token(ACCESS_TOKEN_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with(ACCESS_TOKEN_PREFIX));
        assert_eq!(a.len(), ACCESS_TOKEN_PREFIX.len() + 43);
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(random_id().len(), 32);
    }
}
