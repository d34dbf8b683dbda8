//! The user assertion: the signed JWT mxgate puts in `x-mxcp-user-assertion` on every request
//! it forwards, from which the core adapter sets MXCP's user context.
//!
//! Minted once per session and kept until shortly before it expires; never per request.

use super::signing_key::{AssertionSigner, KeyError};
use super::user::UserIdentity;
use crate::config::Settings;
use http::HeaderValue;
use serde::Serialize;
use std::sync::{Arc, RwLock};

/// The header that carries the assertion to the core.
pub const ASSERTION_HEADER: &str = "x-mxcp-user-assertion";

/// What the assertion says about a session (the session's side of minting).
pub struct AssertionSubject<'a> {
    pub session_id: &'a str,
    pub user: &'a UserIdentity,
    pub client_id: &'a str,
    pub scope: &'a [String],
    pub external_token: Option<&'a str>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
    sub: &'a str,
    provider: &'a str,
    username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar_url: Option<&'a str>,
    groups: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    permissions: &'a [String],
    capabilities: &'a [String],
    scope: String,
    client_id: &'a str,
    sid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ext: Option<&'a str>,
}

/// A minted assertion and when to mint the next one.
#[derive(Clone)]
pub struct CachedAssertion {
    pub value: HeaderValue,
    pub renew_at: u64,
}

/// Per-session slot for the current assertion.
#[derive(Default)]
pub struct AssertionSlot(RwLock<Option<CachedAssertion>>);

// === impl AssertionSlot ===

impl AssertionSlot {
    /// The cached assertion, if it is not due for renewal.
    pub fn current(&self, now: u64) -> Option<HeaderValue> {
        let guard = self.0.read().ok()?;
        guard.as_ref().filter(|c| now < c.renew_at).map(|c| c.value.clone())
    }

    /// Forgets the cached assertion (its claims changed).
    pub fn clear(&self) {
        if let Ok(mut guard) = self.0.write() {
            *guard = None;
        }
    }
}

pub struct AssertionMinter {
    signer: Arc<AssertionSigner>,
    issuer: String,
    audience: String,
    ttl_secs: u64,
    include_external_token: bool,
}

// === impl AssertionMinter ===

impl AssertionMinter {
    pub fn new(signer: Arc<AssertionSigner>, settings: &Settings) -> Self {
        Self {
            signer,
            issuer: settings.public_url.clone(),
            audience: settings.assertion.audience.clone(),
            ttl_secs: settings.assertion.ttl.as_secs(),
            include_external_token: settings.assertion.include_external_token,
        }
    }

    /// The session's assertion, minted now only when there is none or it is near expiry.
    pub fn assertion(
        &self,
        slot: &AssertionSlot,
        subject: &AssertionSubject<'_>,
        now: u64,
    ) -> Result<HeaderValue, KeyError> {
        if let Some(value) = slot.current(now) {
            return Ok(value);
        }
        let minted = self.mint(subject, now)?;
        crate::metrics::metrics().assertion_minted();
        if let Ok(mut guard) = slot.0.write() {
            *guard = Some(minted.clone());
        }
        Ok(minted.value)
    }

    fn mint(&self, subject: &AssertionSubject<'_>, now: u64) -> Result<CachedAssertion, KeyError> {
        let user = subject.user;
        let claims = Claims {
            iss: &self.issuer,
            aud: &self.audience,
            iat: now,
            exp: now + self.ttl_secs,
            jti: crate::support::random_id(),
            sub: &user.user_id,
            provider: &user.provider,
            username: &user.username,
            email: user.email.as_deref(),
            name: user.name.as_deref(),
            avatar_url: user.avatar_url.as_deref(),
            groups: &user.groups,
            role: user.role.as_deref(),
            permissions: &user.permissions,
            capabilities: &user.capabilities,
            scope: subject.scope.join(" "),
            client_id: subject.client_id,
            sid: subject.session_id,
            ext: subject.external_token.filter(|_| self.include_external_token),
        };
        let jwt = self.signer.sign(&claims)?;
        let mut value = HeaderValue::from_str(&jwt).map_err(|e| KeyError::Key {
            path: Default::default(),
            message: format!("assertion is not a header value: {e}"),
        })?;
        // It carries the provider token (`ext`): `Debug` (and so Pingora's debug logs) must not show it.
        value.set_sensitive(true);
        // Renew a minute early (or a fifth of the lifetime, if that is shorter).
        let margin = (self.ttl_secs / 5).min(60);
        Ok(CachedAssertion {
            value,
            renew_at: now + self.ttl_secs - margin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};

    fn minter(ttl: u64, include_ext: bool) -> AssertionMinter {
        AssertionMinter {
            signer: Arc::new(AssertionSigner::hs256(b"0123456789abcdef0123456789abcdef").unwrap()),
            issuer: "http://127.0.0.1:8000".into(),
            audience: "mxcp-core".into(),
            ttl_secs: ttl,
            include_external_token: include_ext,
        }
    }

    fn alice() -> UserIdentity {
        UserIdentity {
            provider: "oidc".into(),
            user_id: "alice".into(),
            username: "alice".into(),
            email: Some("alice@example.test".into()),
            groups: vec!["engineering".into()],
            ..Default::default()
        }
    }

    fn claims_of(value: &HeaderValue) -> serde_json::Value {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&["mxcp-core"]);
        v.set_issuer(&["http://127.0.0.1:8000"]);
        decode::<serde_json::Value>(
            value.to_str().unwrap(),
            &DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef").unwrap(),
            &v,
        )
        .unwrap()
        .claims
    }

    #[test]
    fn assertion_carries_the_design_claims() {
        let user = alice();
        let scope = vec!["mxcp:access".to_string()];
        let subject = AssertionSubject {
            session_id: "sid1",
            user: &user,
            client_id: "client-1",
            scope: &scope,
            external_token: Some("gho_provider"),
        };
        let now = crate::support::now();
        let claims = claims_of(
            &minter(300, true)
                .assertion(&AssertionSlot::default(), &subject, now)
                .unwrap(),
        );
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["email"], "alice@example.test");
        assert_eq!(claims["provider"], "oidc");
        assert_eq!(claims["groups"][0], "engineering");
        assert_eq!(claims["scope"], "mxcp:access");
        assert_eq!(claims["client_id"], "client-1");
        assert_eq!(claims["sid"], "sid1");
        assert_eq!(claims["ext"], "gho_provider");
        assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 300);

        let without = claims_of(
            &minter(300, false)
                .assertion(&AssertionSlot::default(), &subject, now)
                .unwrap(),
        );
        assert!(without.get("ext").is_none(), "ext can be turned off");
    }

    #[test]
    fn assertion_is_cached_until_near_expiry() {
        let user = alice();
        let subject = AssertionSubject {
            session_id: "s",
            user: &user,
            client_id: "c",
            scope: &[],
            external_token: None,
        };
        let m = minter(300, true);
        let slot = AssertionSlot::default();
        let now = crate::support::now();
        let first = m.assertion(&slot, &subject, now).unwrap();
        assert_eq!(
            m.assertion(&slot, &subject, now + 200).unwrap(),
            first,
            "reused within its life"
        );
        assert_ne!(
            m.assertion(&slot, &subject, now + 241).unwrap(),
            first,
            "re-minted a minute early"
        );
    }
}
