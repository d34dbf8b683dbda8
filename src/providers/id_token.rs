//! Verifying an OpenID Connect ID token: signature against the provider's JWKS (refetched once
//! when a new `kid` appears, at most every 30 s), `iss`, `aud`, `exp`, `nonce`, and `azp` when
//! there are several audiences. Symmetric and `none` algorithms are refused.

use super::ProviderError;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
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
    pub issuer: &'a str,
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

    /// Verifies the token and returns its claims.
    pub async fn verify(
        &self,
        http: &reqwest::Client,
        id_token: &str,
        expected: &Expected<'_>,
    ) -> Result<Value, ProviderError> {
        let header = decode_header(id_token).map_err(|e| self.invalid(format!("ID token is malformed: {e}")))?;
        if !ALLOWED.contains(&header.alg) {
            return Err(self.invalid(format!("ID token algorithm {:?} is not accepted", header.alg)));
        }
        let key = self.key_for(http, header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[expected.issuer]);
        validation.set_audience(&[expected.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 60;
        let claims = decode::<Value>(id_token, &key, &validation)
            .map_err(|e| self.invalid(format!("ID token rejected: {e}")))?
            .claims;
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
                    return Some(Err(self.invalid("ID token has no `kid` and the JWKS has several keys")));
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
