//! Remembered approvals: after a person approved a client on the consent page and signed in,
//! this browser may skip the page for that client next time — but only for the same person,
//! the same redirect URI (any port on loopback, as at `/authorize`) and no more scopes than
//! were approved.
//!
//! Who approved is only known after the provider login, so the approval is written at the
//! callback, into a cookie per client (`mxgate-consent-<client digest>`, `__Host-` and `Secure`
//! on https, `HttpOnly`, `SameSite=Lax`): a JWT signed with the store's MAC key holding digests
//! of the client id, redirect URI and approver's user key (`provider:user id`, keyed so the
//! cookie does not say who it is), the approved scopes and the provider, for `consent.remember`.
//! Each use refreshes it; a new approval by the same person adds its scopes.
//!
//! At `/authorize` a matching cookie that covers the requested scopes sends the browser
//! straight to the provider, and the login state records whose approval that was. If someone
//! else signs in at the provider, no session is made and no code issued: the cookie is cleared
//! and a page says so, and starting again shows the consent page. Requested scopes beyond the
//! remembered ones also show the page. Browser logout clears every consent cookie.
//!
//! This module never decides on its own that a request is approved: it only answers whether a
//! person's earlier approval covers it.

use super::authorize::error_page;
use super::cookies;
use super::redirect_uri;
use super::transactions::{AuthorizationRequest, LoginConsent, LoginState};
use super::AuthorizationServer;
use crate::identity::user::UserIdentity;
use crate::support::{hex, now};
use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

/// A remembered approval longer than this is not kept (browsers keep about 4 KiB a cookie).
const MAX_COOKIE_LEN: usize = 3500;
/// Hex digits kept of each digest (128 bits).
const DIGEST_LEN: usize = 32;

/// What a remembered-approval cookie says.
#[derive(Serialize, Deserialize)]
struct RememberedApproval {
    /// Digest of the client id.
    cid: String,
    /// Digest of the redirect URI's [`redirect_key`].
    ruri: String,
    /// Keyed digest of the approver's user key.
    usr: String,
    /// The scopes approved.
    scp: Vec<String>,
    /// The provider the approver signed in with.
    prv: String,
    exp: u64,
}

/// An approval that lets `/authorize` skip the consent page: where to sign in, and whose it is.
pub(super) struct RememberedLogin {
    pub provider: String,
    pub consent: LoginConsent,
}

/// The redirect URI as approvals compare it: on loopback without its port, since any port
/// matches there (what [`redirect_uri::matches`] decides); otherwise exactly as sent.
fn redirect_key(uri: &str) -> String {
    if let Ok(mut url) = Url::parse(uri) {
        if url.port().is_some() && url.set_port(None).is_ok() && redirect_uri::matches(url.as_str(), uri) {
            return url.into();
        }
    }
    uri.to_string()
}

impl AuthorizationServer {
    /// A short keyed digest: bounded in size, and it does not say what it was made from.
    fn approval_digest(&self, purpose: &str, value: &str) -> String {
        let digest = Sha256::new()
            .chain_update(self.store.cipher().mac_key())
            .chain_update(purpose.as_bytes())
            .chain_update([0])
            .chain_update(value.as_bytes())
            .finalize();
        hex(&digest)[..DIGEST_LEN].to_string()
    }

    fn approver_digest(&self, user: &UserIdentity) -> String {
        self.approval_digest("approver", &user.key())
    }

    /// This browser's remembered approval of the request's client and redirect URI, if valid.
    fn approval_in(&self, headers: &HeaderMap, request: &AuthorizationRequest) -> Option<RememberedApproval> {
        if self.settings.consent_memory.is_zero() {
            return None;
        }
        let value = Self::cookies_for(&request.issuer).get(headers, &cookies::consent(&request.client_id))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_aud = false;
        let key = DecodingKey::from_secret(self.store.cipher().mac_key()).ok()?;
        let claims = jsonwebtoken::decode::<RememberedApproval>(value, &key, &validation)
            .ok()?
            .claims;
        let same_client = claims.cid == self.approval_digest("client", &request.client_id)
            && claims.ruri == self.approval_digest("redirect_uri", &redirect_key(&request.redirect_uri));
        same_client.then_some(claims)
    }

    /// Whether the consent page may be skipped: an approval of this client and redirect URI,
    /// covering every requested scope, with a provider that is still configured.
    pub(super) fn remembered_login(
        &self,
        headers: &HeaderMap,
        request: &AuthorizationRequest,
    ) -> Option<RememberedLogin> {
        let approval = self.approval_in(headers, request)?;
        let covered = request.scope.iter().all(|s| approval.scp.contains(s));
        if !covered || self.providers.by_name(&approval.prv).is_none() {
            return None;
        }
        Some(RememberedLogin {
            provider: approval.prv,
            consent: LoginConsent::Remembered {
                approver_hash: approval.usr,
            },
        })
    }

    /// At the callback: the page for a login that skipped consent on someone else's approval
    /// (clearing that approval), or `None` when the login may go on.
    pub(super) fn approver_mismatch(&self, login: &LoginState, user: &UserIdentity) -> Option<Response<Bytes>> {
        let LoginConsent::Remembered { approver_hash } = &login.consent else {
            return None;
        };
        if *approver_hash == self.approver_digest(user) {
            return None;
        }
        tracing::warn!(
            client_id = %login.request.client_id,
            user = %user.username,
            "a remembered approval of another user was presented; no code issued"
        );
        let mut resp = error_page(
            StatusCode::FORBIDDEN,
            "Approval needed",
            &format!(
                "This browser remembered an approval of this application given by another account, \
                 but you signed in as {}. Nothing was shared with the application. Start again from \
                 your application to review its request.",
                user.username
            ),
        );
        let policy = Self::cookies_for(&login.request.issuer);
        super::response::set_cookie(&mut resp, &policy.clear(&cookies::consent(&login.request.client_id)));
        Some(resp)
    }

    /// At the callback, once `user` signed in: the `Set-Cookie` that remembers (or refreshes)
    /// their approval, when the login went through the consent step and remembering is on.
    pub(super) fn remember_approval(
        &self,
        headers: &HeaderMap,
        login: &LoginState,
        user: &UserIdentity,
    ) -> Option<String> {
        let ttl = self.settings.consent_memory.as_secs();
        if ttl == 0 || login.consent == LoginConsent::NotAsked {
            return None;
        }
        let request = &login.request;
        let approver = self.approver_digest(user);
        let mut scopes = request.scope.clone();
        if let Some(earlier) = self.approval_in(headers, request).filter(|a| a.usr == approver) {
            for scope in earlier.scp {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
        }
        let claims = RememberedApproval {
            cid: self.approval_digest("client", &request.client_id),
            ruri: self.approval_digest("redirect_uri", &redirect_key(&request.redirect_uri)),
            usr: approver,
            scp: scopes,
            prv: login.provider.clone(),
            exp: now() + ttl,
        };
        let key = EncodingKey::from_secret(self.store.cipher().mac_key()).ok()?;
        let value = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).ok()?;
        let cookie = Self::cookies_for(&request.issuer).set(&cookies::consent(&request.client_id), &value, ttl);
        if cookie.len() > MAX_COOKIE_LEN {
            tracing::debug!(client_id = %request.client_id, "approval too large to remember in a cookie");
            return None;
        }
        Some(cookie)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirect_uris_are_compared_without_their_port() {
        assert_eq!(redirect_key("http://127.0.0.1:9/cb?x=1"), "http://127.0.0.1/cb?x=1");
        assert_eq!(redirect_key("http://localhost:51234/cb"), "http://localhost/cb");
        assert_eq!(redirect_key("http://127.0.0.1/cb"), "http://127.0.0.1/cb");
        assert_eq!(
            redirect_key("https://app.example:8443/cb"),
            "https://app.example:8443/cb"
        );
        assert_eq!(redirect_key("http://app.example:81/cb"), "http://app.example:81/cb");
        assert_eq!(redirect_key("com.example.app:/oauth"), "com.example.app:/oauth");
    }
}
