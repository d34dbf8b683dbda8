//! Stateless mode (MXCP's `transport.http.stateless: true`): access tokens carry their session.
//!
//! An access token is the session snapshot (user, client, scope, the provider's access token)
//! and its expiry, sealed with the store key (XChaCha20-Poly1305, so the provider token stays
//! secret and nothing can be forged or altered). Checking one reads no store: any replica with
//! the same key (`persistence.auth_encryption_key`) accepts it. What this cannot do: revoke an
//! access token before it expires — `/revoke` and `/logout` end the session, so it cannot be
//! refreshed, but tokens already issued live out their (short) lifetime. Refresh tokens stay
//! opaque and stored, so rotation and reuse detection work as in stateful mode.

use super::SessionRecord;
use crate::store::cipher::RecordCipher;
use crate::store::StoreError;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::{Deserialize, Serialize};

pub const STATELESS_ACCESS_PREFIX: &str = "mxg_st_";
const ASSOCIATED_DATA: &[u8] = b"mxgate stateless access token v1";

#[derive(Serialize, Deserialize)]
struct Sealed {
    exp: u64,
    session: SessionRecord,
}

pub fn is_stateless_token(token: &str) -> bool {
    token.starts_with(STATELESS_ACCESS_PREFIX)
}

/// A self-contained access token for `session`, valid until `exp`.
pub fn seal_access_token(cipher: &RecordCipher, session: &SessionRecord, exp: u64) -> Result<String, StoreError> {
    let plain = serde_json::to_vec(&Sealed {
        exp,
        session: session.clone(),
    })
    .map_err(|e| StoreError::Backend(format!("cannot encode a stateless token: {e}")))?;
    let sealed = cipher.seal(ASSOCIATED_DATA, &plain)?;
    Ok(format!("{STATELESS_ACCESS_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed)))
}

/// The session a stateless access token carries, and its expiry; `Err` says why it is refused.
pub fn open_access_token(cipher: &RecordCipher, token: &str, now: u64) -> Result<(SessionRecord, u64), &'static str> {
    let (session, exp) = open_sealed(cipher, token)?;
    if exp <= now || session.expires_at <= now {
        return Err(super::bearer::TOKEN_EXPIRED);
    }
    Ok((session, exp))
}

/// The session a genuine stateless token carries, whether or not the token has expired (for
/// renewing a browser session cookie; the caller checks the session itself).
pub fn open_sealed(cipher: &RecordCipher, token: &str) -> Result<(SessionRecord, u64), &'static str> {
    let encoded = token
        .strip_prefix(STATELESS_ACCESS_PREFIX)
        .ok_or("not a stateless access token")?;
    let sealed = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| "the access token is malformed")?;
    let plain = cipher
        .open(ASSOCIATED_DATA, &sealed)
        .ok_or("the access token is not valid here")?;
    let Sealed { exp, session } = serde_json::from_slice(&plain).map_err(|_| "the access token is malformed")?;
    Ok((session, exp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::user::UserIdentity;

    fn session() -> SessionRecord {
        SessionRecord {
            id: "sid".into(),
            user: UserIdentity {
                user_id: "alice".into(),
                ..Default::default()
            },
            provider_tokens: crate::identity::user::ProviderTokens {
                access_token: "provider-secret-token".into(),
                ..Default::default()
            },
            client_id: "c".into(),
            scope: vec!["mxcp:access".into()],
            resource: "r".into(),
            created_at: 100,
            expires_at: 10_000,
            idp_session: None,
        }
    }

    #[test]
    fn tokens_open_only_with_the_key_and_before_expiry() {
        let cipher = RecordCipher::from_secret(b"k1");
        let token = seal_access_token(&cipher, &session(), 500).unwrap();
        assert!(is_stateless_token(&token));
        assert!(!token.contains("provider-secret-token"));
        let (opened, exp) = open_access_token(&cipher, &token, 400).unwrap();
        assert_eq!((opened.user.user_id.as_str(), exp), ("alice", 500));
        assert_eq!(opened.provider_tokens.access_token, "provider-secret-token");
        assert_eq!(
            open_access_token(&cipher, &token, 500).unwrap_err(),
            "the access token has expired"
        );
        let other = RecordCipher::from_secret(b"k2");
        assert_eq!(
            open_access_token(&other, &token, 400).unwrap_err(),
            "the access token is not valid here"
        );
        let mut tampered = token.clone();
        tampered.push('A');
        assert!(open_access_token(&cipher, &tampered, 400).is_err());
        assert!(open_access_token(&cipher, "mxg_st_@@@", 400).is_err());
    }
}
