//! Verifying an OpenID Connect ID token: signature against the provider's JWKS (refetched once
//! when a new `kid` appears, at most every 30 s), `iss` (one of the provider's accepted issuer
//! spellings), `aud`, `exp`, `nonce`, and `azp` when there are several audiences. Symmetric and
//! `none` algorithms are refused.
//!
//! Also: the signature and registered claims of a back-channel logout token (the logout rules
//! themselves are in `logout_token`), and reading the claims of a JWT access token the provider issued to this client (Keycloak's
//! `realm_access`, Auth0's custom claims), verified the same way, never merely decoded.

use super::ProviderError;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Clock skew allowed on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 60;
const ALLOWED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The provider's signing keys, cached.
pub struct JwksCache {
    provider: String,
    jwks_uri: String,
    keys: RwLock<Option<(JwkSet, Instant)>>,
}

/// What an ID token must say.
pub struct Expected<'a> {
    /// Accepted `iss` values (the discovered issuer, and any documented alias such as Google's
    /// `accounts.google.com`).
    pub issuers: &'a [String],
    pub client_id: &'a str,
    pub nonce: &'a str,
}

// === impl JwksCache ===

impl JwksCache {
    pub fn new(provider: &str, jwks_uri: &str) -> Self {
        Self {
            provider: provider.to_string(),
            jwks_uri: jwks_uri.to_string(),
            keys: RwLock::new(None),
        }
    }

    fn invalid(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::Invalid {
            provider: self.provider.clone(),
            message: message.into(),
        }
    }

    /// Verifies the ID token and returns its claims.
    pub async fn verify(
        &self,
        http: &reqwest::Client,
        id_token: &str,
        expected: &Expected<'_>,
    ) -> Result<Value, ProviderError> {
        let claims = self
            .decode_signed(http, id_token, "ID token", |validation| {
                validation.set_issuer(expected.issuers);
                validation.set_audience(&[expected.client_id]);
                validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            })
            .await?;
        if claims.get("nonce").and_then(Value::as_str) != Some(expected.nonce) {
            return Err(self.invalid("ID token nonce does not match this login"));
        }
        if let Some(Value::Array(audiences)) = claims.get("aud") {
            if audiences.len() > 1 && claims.get("azp").and_then(Value::as_str) != Some(expected.client_id) {
                return Err(self.invalid("ID token has several audiences but `azp` is not this client"));
            }
        }
        Ok(claims)
    }

    /// The claims of a back-channel logout token whose signature, `iss`, `aud` and (when
    /// present) `exp` verify; the logout-specific rules are [`super::logout_token`]'s.
    pub async fn logout_token_claims(
        &self,
        http: &reqwest::Client,
        logout_token: &str,
        issuers: &[String],
        client_id: &str,
    ) -> Result<Value, ProviderError> {
        self.decode_signed(http, logout_token, "logout token", |validation| {
            validation.set_issuer(issuers);
            validation.set_audience(&[client_id]);
            // `exp` is optional in Back-Channel Logout 1.0 (checked when present); `iat` is
            // required and checked for recency by the caller.
            validation.set_required_spec_claims(&["iss", "aud"]);
        })
        .await
    }

    /// A JWT's claims after its algorithm (asymmetric only), signature (the provider's JWKS) and
    /// the registered claims `configure` asks for are checked; `what` names it in errors.
    async fn decode_signed(
        &self,
        http: &reqwest::Client,
        token: &str,
        what: &str,
        configure: impl FnOnce(&mut Validation),
    ) -> Result<Value, ProviderError> {
        let header = decode_header(token).map_err(|e| self.invalid(format!("{what} is malformed: {e}")))?;
        if !ALLOWED.contains(&header.alg) {
            return Err(self.invalid(format!("{what} algorithm {:?} is not accepted", header.alg)));
        }
        let key = self.key_for(http, header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        configure(&mut validation);
        Ok(decode::<Value>(token, &key, &validation)
            .map_err(|e| self.invalid(format!("{what} rejected: {e}")))?
            .claims)
    }

    /// The claims of an access token, when it is a JWT signed with the provider's keys by one of
    /// `issuers`, unexpired, and issued to `client_id` (`azp`, `client_id`, `cid` or `aud`).
    /// `Ok(None)` when the token is opaque (not a JWT at all); an error says why a JWT is not
    /// accepted. The token came straight from the token endpoint; the check keeps a claim that
    /// policies rely on from resting on an unverified token.
    pub async fn access_token_claims(
        &self,
        http: &reqwest::Client,
        access_token: &str,
        issuers: &[String],
        client_id: &str,
    ) -> Result<Option<Value>, ProviderError> {
        if access_token.split('.').count() != 3 {
            return Ok(None);
        }
        if decode_header(access_token).is_err() {
            return Ok(None);
        }
        let claims = self
            .decode_signed(http, access_token, "access token", |validation| {
                validation.set_issuer(issuers);
                validation.validate_aud = false; // Keycloak: `account`; Auth0: the API; checked below instead
                validation.set_required_spec_claims(&["exp", "iss"]);
            })
            .await?;
        if !issued_to(&claims, client_id) {
            return Err(self.invalid("access token was not issued to this client"));
        }
        Ok(Some(claims))
    }

    async fn key_for(
        &self,
        http: &reqwest::Client,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, ProviderError> {
        if let Some(key) = self.find(kid, alg).await {
            return key;
        }
        self.refetch(http).await?;
        self.find(kid, alg)
            .await
            .unwrap_or_else(|| Err(self.invalid(format!("no key {kid:?} in the provider's JWKS"))))
    }

    async fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Result<DecodingKey, ProviderError>> {
        let guard = self.keys.read().await;
        let (set, _) = guard.as_ref()?;
        let jwk = match kid {
            Some(kid) => set.find(kid)?,
            None => {
                let family = alg.family();
                let mut candidates = set.keys.iter().filter(|k| {
                    k.common
                        .key_algorithm
                        .and_then(|a| a.to_string().parse::<Algorithm>().ok())
                        .is_none_or(|a| a.family() == family)
                });
                let only = candidates.next()?;
                if candidates.next().is_some() {
                    return Some(Err(self.invalid("the token has no `kid` and the JWKS has several keys")));
                }
                only
            }
        };
        Some(DecodingKey::from_jwk(jwk).map_err(|e| self.invalid(format!("unusable JWKS key: {e}"))))
    }

    async fn refetch(&self, http: &reqwest::Client) -> Result<(), ProviderError> {
        let mut guard = self.keys.write().await;
        if let Some((_, fetched)) = guard.as_ref() {
            if fetched.elapsed() < REFETCH_INTERVAL {
                return Ok(());
            }
        }
        let set: JwkSet = super::http_client::get_json(http, &self.provider, "the JWKS", &self.jwks_uri, None).await?;
        *guard = Some((set, Instant::now()));
        Ok(())
    }
}

/// Whether an access token names `client_id` as the party it was issued to.
fn issued_to(claims: &Value, client_id: &str) -> bool {
    let named = |key: &str| claims.get(key).and_then(Value::as_str) == Some(client_id);
    let in_aud = match claims.get("aud") {
        Some(Value::String(aud)) => aud == client_id,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    };
    named("azp") || named("client_id") || named("cid") || in_aud
}
