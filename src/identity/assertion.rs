//! The user assertion: the signed JWT mxgate puts in `x-mxcp-user-assertion` on every request
//! it forwards, from which the core adapter sets MXCP's user context.
//!
//! Minted once per session and kept until shortly before it expires, or until another key
//! signs (a rotation): a cached assertion is only served while its key is the one signing, so
//! none outlives its key's place in the JWKS; never minted per request.

use super::signing_key::{AssertionSigner, KeyError};
use super::signing_keys::SigningKeys;
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

/// A minted assertion, the key that signed it and when to mint the next one.
#[derive(Clone)]
pub struct CachedAssertion {
    pub value: HeaderValue,
    pub renew_at: u64,
    /// The `kid` it was signed with (none for HS256).
    pub kid: Option<Arc<str>>,
}

/// Per-session slot for the current assertion.
#[derive(Default)]
pub struct AssertionSlot(RwLock<Option<CachedAssertion>>);

// === impl AssertionSlot ===

impl AssertionSlot {
    /// The cached assertion, if it is not due for renewal and was signed by `signing_kid`
    /// (the key signing now).
    pub fn current(&self, now: u64, signing_kid: Option<&str>) -> Option<HeaderValue> {
        let guard = self.0.read().ok()?;
        guard
            .as_ref()
            .filter(|c| now < c.renew_at && c.kid.as_deref() == signing_kid)
            .map(|c| c.value.clone())
    }

    /// Forgets the cached assertion (its claims changed).
    pub fn clear(&self) {
        if let Ok(mut guard) = self.0.write() {
            *guard = None;
        }
    }
}

pub struct AssertionMinter {
    keys: Arc<SigningKeys>,
    issuer: String,
    audience: String,
    ttl_secs: u64,
    include_external_token: bool,
}

// === impl AssertionMinter ===

impl AssertionMinter {
    pub fn new(keys: Arc<SigningKeys>, settings: &Settings) -> Self {
        Self {
            keys,
            issuer: settings.public_url.clone(),
            audience: settings.assertion.audience.clone(),
            ttl_secs: settings.assertion.ttl.as_secs(),
            include_external_token: settings.assertion.include_external_token,
        }
    }

    /// The slot's assertion if it can be served at `now`: not due for renewal, and signed by
    /// the key that signs now.
    pub fn cached(&self, slot: &AssertionSlot, now: u64) -> Option<HeaderValue> {
        let view = self.keys.view();
        slot.current(now, view.signer_at(now)?.kid())
    }

    /// The session's assertion, minted now only when there is none, it is near expiry, or
    /// another key signs now.
    pub fn assertion(
        &self,
        slot: &AssertionSlot,
        subject: &AssertionSubject<'_>,
        now: u64,
    ) -> Result<HeaderValue, KeyError> {
        let view = self.keys.view();
        let signer = view.signer_at(now).ok_or_else(|| KeyError::Key {
            path: Default::default(),
            message: "no signing key".into(),
        })?;
        if let Some(value) = slot.current(now, signer.kid()) {
            return Ok(value);
        }
        let minted = self.mint(signer, subject, now)?;
        crate::metrics::metrics().assertion_minted();
        if let Ok(mut guard) = slot.0.write() {
            *guard = Some(minted.clone());
        }
        Ok(minted.value)
    }

    fn mint(
        &self,
        signer: &AssertionSigner,
        subject: &AssertionSubject<'_>,
        now: u64,
    ) -> Result<CachedAssertion, KeyError> {
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
        let jwt = signer.sign(&claims)?;
        tracing::debug!(kid = %signer.kid().unwrap_or("-"), "assertion minted");
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
            kid: signer.kid().map(Arc::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};

    fn minter(ttl: u64, include_ext: bool) -> AssertionMinter {
        AssertionMinter {
            keys: Arc::new(SigningKeys::fixed(
                AssertionSigner::hs256(b"0123456789abcdef0123456789abcdef").unwrap(),
                "test".into(),
                None,
            )),
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

    /// A session with no scope and no provider token.
    fn bare_subject(user: &UserIdentity) -> AssertionSubject<'_> {
        AssertionSubject {
            session_id: "s",
            user,
            client_id: "c",
            scope: &[],
            external_token: None,
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
    fn a_sessions_memory_estimate_covers_what_it_holds_once_its_assertion_is_minted() {
        use crate::session::{ActiveSession, SessionRecord};
        let mut m = minter(300, true);
        // Ed25519, as `mxgate keys` generates: the estimate allows for RS256's longer signature.
        m.keys = Arc::new(SigningKeys::fixed(
            AssertionSigner::ed25519(&ed25519_dalek::SigningKey::from_bytes(&[9; 32])).unwrap(),
            "test".into(),
            None,
        ));
        let mut user = alice();
        user.name = Some("Alice Example-Longname".into());
        user.groups = (0..12).map(|i| format!("team-{i}-with-a-long-name")).collect();
        user.permissions = (0..8).map(|i| format!("read:dataset-{i}")).collect();
        user.role = Some("admin".into());
        let record = SessionRecord {
            id: crate::support::random_id(),
            user,
            provider_tokens: crate::identity::user::ProviderTokens {
                access_token: "a".repeat(1200), // a JWT access token (Keycloak, Entra ID)
                refresh_token: Some("r".repeat(800)),
                id_token: Some("i".repeat(1000)),
                ..Default::default()
            },
            client_id: "https://client.example.test/oauth/metadata.json".into(),
            scope: vec!["mxcp:access".into(), "offline_access".into()],
            resource: "https://mcp.example.test/mcp".into(),
            created_at: 0,
            expires_at: u64::MAX,
            idp_session: Some("sid-at-the-idp".into()),
        };
        let r = &record;
        let u = &r.user;
        let held_strings = [&r.id, &r.client_id, &r.resource, &u.provider, &u.user_id, &u.username]
            .iter()
            .map(|s| s.len())
            .sum::<usize>()
            + [&u.email, &u.name, &u.role, &r.idp_session]
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len))
                .sum::<usize>()
            + [&u.groups, &u.permissions, &r.scope]
                .iter()
                .map(|v| v.iter().map(String::len).sum::<usize>())
                .sum::<usize>()
            + 1200; // the provider's access token (refresh and ID tokens are not kept)
        let session = ActiveSession::new(record);
        let estimate = session.approx_bytes();
        let assertion = session.assertion(&m, 1_000).unwrap();
        assert!(
            assertion.len() > 2 * 1200,
            "the assertion carries the provider token: {}",
            assertion.len()
        );
        let held = std::mem::size_of::<ActiveSession>() + held_strings + assertion.len();
        assert!(estimate >= held, "estimate {estimate} < {held} held");
        assert!(estimate <= 2 * held, "estimate {estimate} is far above the {held} held");
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
        let subject = bare_subject(&user);
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

    #[tokio::test]
    async fn a_cached_assertion_is_minted_again_when_another_key_signs() {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::identity::signing_keys::tests::eddsa_settings(60);
        let keys = Arc::new(SigningKeys::load(&settings, dir.path(), None).await.unwrap());
        let mut m = minter(300, true);
        m.keys = keys.clone();
        let user = alice();
        let subject = bare_subject(&user);
        let kid_of = |v: &HeaderValue| jsonwebtoken::decode_header(v.to_str().unwrap()).unwrap().kid.unwrap();
        let slot = AssertionSlot::default();
        let now = crate::support::now();
        let first = m.assertion(&slot, &subject, now).unwrap();

        let added = keys.rotate(false).await.unwrap();
        assert_eq!(
            m.assertion(&slot, &subject, now).unwrap(),
            first,
            "the next key does not sign yet"
        );
        let switched = m.assertion(&slot, &subject, added.activate_at).unwrap();
        assert_ne!(switched, first, "not served from the cache once another key signs");
        assert_eq!(kid_of(&switched), added.kid);
        assert_eq!(m.cached(&slot, added.activate_at), Some(switched));
        assert_ne!(kid_of(&first), added.kid);
    }
}
